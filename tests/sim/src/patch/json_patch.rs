//! JSON patch (RFC 6902: add, remove, replace, move, copy, test) with RFC 6901 pointers; error
//! messages follow the API server's json-patch library so clients see the same text.

use serde_json::Value;

use super::PatchError;

/// Applies a JSON patch (an array of operations) to `target`, returning the patched document.
/// Malformed patches give `PatchError::BadRequest`; operations that do not apply (missing paths,
/// failed `test`) give `PatchError::Unprocessable`, like the real server (400 / 422).
pub fn json_patch(target: &Value, ops: &Value) -> Result<Value, PatchError> {
    let Value::Array(ops) = ops else {
        return Err(PatchError::BadRequest(format!(
            "json: cannot unmarshal {} into Go value of type jsonpatch.Patch",
            go_type_name(ops)
        )));
    };
    let mut doc = target.clone();
    for op in ops {
        let Value::Object(fields) = op else {
            return Err(PatchError::BadRequest(format!(
                "json: cannot unmarshal {} into Go value of type jsonpatch.Operation",
                go_type_name(op)
            )));
        };
        let kind = fields
            .get("op")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        match kind {
            "add" => {
                let path = op_path(fields, "add")?;
                let value = fields.get("value").cloned().unwrap_or(Value::Null);
                add(&mut doc, &path, value, "add")?;
            }
            "remove" => {
                let path = op_path(fields, "remove")?;
                remove(&mut doc, &path)?;
            }
            "replace" => {
                let path = op_path(fields, "replace")?;
                let value = fields.get("value").cloned().unwrap_or(Value::Null);
                replace(&mut doc, &path, value)?;
            }
            "move" => {
                let from = op_from(fields, "move")?;
                let path = op_path(fields, "move")?;
                let value = take_from(&mut doc, &from, "move", true)?;
                add(&mut doc, &path, value, "move")?;
            }
            "copy" => {
                let from = op_from(fields, "copy")?;
                let path = op_path(fields, "copy")?;
                let value = take_from(&mut doc, &from, "copy", false)?;
                add(&mut doc, &path, value, "copy")?;
            }
            "test" => {
                let path = op_path(fields, "test")?;
                test(&doc, &path, fields.get("value"))?;
            }
            other => {
                return Err(PatchError::Unprocessable(format!(
                    "Unexpected kind: {other}"
                )));
            }
        }
    }
    Ok(doc)
}

fn go_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn op_path(fields: &serde_json::Map<String, Value>, kind: &str) -> Result<String, PatchError> {
    match fields.get("path") {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(PatchError::Unprocessable(format!(
            "{kind} operation failed to decode path: missing value"
        ))),
    }
}

fn op_from(fields: &serde_json::Map<String, Value>, kind: &str) -> Result<String, PatchError> {
    match fields.get("from") {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(PatchError::Unprocessable(format!(
            "{kind} operation failed to decode from: operation, missing from field: missing value"
        ))),
    }
}

/// Splits an RFC 6901 pointer into unescaped reference tokens. `None` when it does not start
/// with `/` (and is not the empty whole-document pointer).
fn tokens(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

/// Parses an array index token: decimal digits without leading zeros.
fn parse_index(token: &str) -> Option<usize> {
    if token.is_empty() || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    if !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok()
}

/// Walks to the container holding the last token. `None` when any intermediate is missing.
fn parent_mut<'a>(doc: &'a mut Value, toks: &[String]) -> Option<&'a mut Value> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get_mut(t)?,
            Value::Array(a) => {
                let i = parse_index(t)?;
                a.get_mut(i)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

fn missing(msg: String) -> PatchError {
    PatchError::Unprocessable(format!("{msg}: missing value"))
}

fn invalid_index(kind: &str, path: &str, token: &str) -> PatchError {
    PatchError::Unprocessable(format!(
        "error in {kind} for path: '{path}': Unable to access invalid index: {token}: invalid index referenced"
    ))
}

fn add(doc: &mut Value, path: &str, value: Value, kind: &str) -> Result<(), PatchError> {
    let not_found = || {
        if kind == "add" {
            missing(format!(
                "add operation does not apply: doc is missing path: \"{path}\""
            ))
        } else {
            missing(format!(
                "{kind} operation does not apply: doc is missing destination path: {path}"
            ))
        }
    };
    let Some(toks) = tokens(path) else {
        return Err(not_found());
    };
    let Some((last, parents)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    let parent = parent_mut(doc, parents).ok_or_else(not_found)?;
    match parent {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let idx = parse_index(last).ok_or_else(|| invalid_index(kind, path, last))?;
            if idx > a.len() {
                return Err(invalid_index(kind, path, last));
            }
            a.insert(idx, value);
            Ok(())
        }
        _ => Err(not_found()),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<(), PatchError> {
    let not_found = || {
        missing(format!(
            "remove operation does not apply: doc is missing path: \"{path}\""
        ))
    };
    let toks = tokens(path).ok_or_else(not_found)?;
    let Some((last, parents)) = toks.split_last() else {
        return Err(not_found());
    };
    let parent = parent_mut(doc, parents).ok_or_else(not_found)?;
    match parent {
        Value::Object(m) => {
            if m.shift_remove(last).is_none() {
                return Err(missing(format!(
                    "error in remove for path: '{path}': Unable to remove nonexistent key: {last}"
                )));
            }
            Ok(())
        }
        Value::Array(a) => {
            let idx = parse_index(last).ok_or_else(|| invalid_index("remove", path, last))?;
            if idx >= a.len() {
                return Err(invalid_index("remove", path, last));
            }
            a.remove(idx);
            Ok(())
        }
        _ => Err(not_found()),
    }
}

fn replace(doc: &mut Value, path: &str, value: Value) -> Result<(), PatchError> {
    let toks = tokens(path).ok_or_else(|| {
        missing(format!(
            "replace operation does not apply: doc is missing path: {path}"
        ))
    })?;
    let Some((last, parents)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    let parent = parent_mut(doc, parents).ok_or_else(|| {
        missing(format!(
            "replace operation does not apply: doc is missing path: {path}"
        ))
    })?;
    let missing_key = || {
        missing(format!(
            "replace operation does not apply: doc is missing key: {path}"
        ))
    };
    match parent {
        Value::Object(m) => {
            let slot = m.get_mut(last).ok_or_else(missing_key)?;
            *slot = value;
            Ok(())
        }
        Value::Array(a) => {
            let idx = parse_index(last).ok_or_else(missing_key)?;
            let slot = a.get_mut(idx).ok_or_else(missing_key)?;
            *slot = value;
            Ok(())
        }
        _ => Err(missing_key()),
    }
}

fn take_from(
    doc: &mut Value,
    from: &str,
    kind: &str,
    remove_it: bool,
) -> Result<Value, PatchError> {
    let not_found = || {
        missing(format!(
            "{kind} operation does not apply: doc is missing from path: {from}"
        ))
    };
    let toks = tokens(from).ok_or_else(not_found)?;
    let Some((last, parents)) = toks.split_last() else {
        if remove_it {
            return Err(not_found());
        }
        return Ok(doc.clone());
    };
    let parent = parent_mut(doc, parents).ok_or_else(not_found)?;
    let gone = || {
        missing(format!(
            "error in {kind} for path: '{last}': Unable to get nonexistent key: {last}"
        ))
    };
    match parent {
        Value::Object(m) => {
            if remove_it {
                m.shift_remove(last).ok_or_else(gone)
            } else {
                m.get(last).cloned().ok_or_else(gone)
            }
        }
        Value::Array(a) => {
            let idx = parse_index(last).ok_or_else(|| invalid_index(kind, from, last))?;
            if idx >= a.len() {
                return Err(invalid_index(kind, from, last));
            }
            if remove_it {
                Ok(a.remove(idx))
            } else {
                Ok(a[idx].clone())
            }
        }
        _ => Err(not_found()),
    }
}

fn test(doc: &Value, path: &str, expected: Option<&Value>) -> Result<(), PatchError> {
    let failed = || PatchError::Unprocessable(format!("testing value {path} failed: test failed"));
    let toks = tokens(path).ok_or_else(|| {
        missing(format!(
            "test operation does not apply: is missing path: {path}"
        ))
    })?;
    let mut cur = doc;
    for (i, t) in toks.iter().enumerate() {
        let next = match cur {
            Value::Object(m) => m.get(t),
            Value::Array(a) => parse_index(t).and_then(|idx| a.get(idx)),
            _ => None,
        };
        match next {
            Some(v) => cur = v,
            None if i + 1 == toks.len() => {
                // A missing member only equals an explicit null / absent value.
                return match expected {
                    None | Some(Value::Null) => Ok(()),
                    Some(_) => Err(failed()),
                };
            }
            None => {
                return Err(missing(format!(
                    "test operation does not apply: is missing path: {path}"
                )));
            }
        }
    }
    match expected {
        Some(want) if json_equal(cur, want) => Ok(()),
        _ => Err(failed()),
    }
}

/// Structural JSON equality where numbers compare by value (`1` equals `1.0`).
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x == y {
                return true;
            }
            match (x.as_f64(), y.as_f64()) {
                (Some(p), Some(q)) => p == q,
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"app": "web", "a/b": "1", "m~n": "2"}},
            "spec": {"containers": [
                {"name": "main", "image": "nginx:1", "env": [{"name": "A", "value": "1"}]},
                {"name": "side", "image": "busybox"}
            ]}
        })
    }

    #[test]
    fn rfc6902_appendix_a_examples() {
        let cases = [
            (
                json!({"foo":"bar"}),
                json!([{"op":"add","path":"/baz","value":"qux"}]),
                json!({"foo":"bar","baz":"qux"}),
            ),
            (
                json!({"foo":["bar","baz"]}),
                json!([{"op":"add","path":"/foo/1","value":"qux"}]),
                json!({"foo":["bar","qux","baz"]}),
            ),
            (
                json!({"baz":"qux","foo":"bar"}),
                json!([{"op":"remove","path":"/baz"}]),
                json!({"foo":"bar"}),
            ),
            (
                json!({"foo":["bar","qux","baz"]}),
                json!([{"op":"remove","path":"/foo/1"}]),
                json!({"foo":["bar","baz"]}),
            ),
            (
                json!({"baz":"qux","foo":"bar"}),
                json!([{"op":"replace","path":"/baz","value":"boo"}]),
                json!({"baz":"boo","foo":"bar"}),
            ),
            (
                json!({"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}}),
                json!([{"op":"move","from":"/foo/waldo","path":"/qux/thud"}]),
                json!({"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}}),
            ),
            (
                json!({"foo":["all","grass","cows","eat"]}),
                json!([{"op":"move","from":"/foo/1","path":"/foo/3"}]),
                json!({"foo":["all","cows","eat","grass"]}),
            ),
            (
                json!({"foo":"bar"}),
                json!([{"op":"add","path":"/child","value":{"grandchild":{}}}]),
                json!({"foo":"bar","child":{"grandchild":{}}}),
            ),
            (
                json!({"foo":["bar"]}),
                json!([{"op":"add","path":"/foo/-","value":["abc","def"]}]),
                json!({"foo":["bar",["abc","def"]]}),
            ),
            (
                json!({"foo":null}),
                json!([{"op":"test","path":"/foo","value":null}]),
                json!({"foo":null}),
            ),
            (
                json!({"/":9,"~1":10}),
                json!([{"op":"test","path":"/~01","value":10}]),
                json!({"/":9,"~1":10}),
            ),
            (
                json!({"a":{"b":1}}),
                json!([{"op":"copy","from":"/a","path":"/c"}]),
                json!({"a":{"b":1},"c":{"b":1}}),
            ),
            (
                json!({"a":1}),
                json!([{"op":"replace","path":"","value":{"b":2}}]),
                json!({"b":2}),
            ),
        ];
        for (doc, patch, want) in cases {
            assert_eq!(json_patch(&doc, &patch), Ok(want), "{doc} {patch}");
        }
    }

    #[test]
    fn pointer_escaping_on_label_keys() {
        let out = json_patch(
            &pod(),
            &json!([
                {"op": "replace", "path": "/metadata/labels/a~1b", "value": "x"},
                {"op": "remove", "path": "/metadata/labels/m~0n"}
            ]),
        )
        .expect("patch applies");
        assert_eq!(out["metadata"]["labels"], json!({"app": "web", "a/b": "x"}));
    }

    #[test]
    fn test_op_guards_following_ops() {
        let ok = json_patch(
            &pod(),
            &json!([
                {"op": "test", "path": "/spec/containers/0/image", "value": "nginx:1"},
                {"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:2"}
            ]),
        )
        .expect("test passes");
        assert_eq!(ok["spec"]["containers"][0]["image"], "nginx:2");

        let err = json_patch(
            &pod(),
            &json!([
                {"op": "test", "path": "/spec/containers/0/image", "value": "nginx:9"},
                {"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:2"}
            ]),
        )
        .expect_err("test fails");
        assert_eq!(err.code(), 422);
        assert_eq!(
            err.message(),
            "testing value /spec/containers/0/image failed: test failed"
        );
    }

    #[test]
    fn numbers_compare_by_value_in_test() {
        let doc = json!({"spec": {"replicas": 3}});
        assert!(
            json_patch(
                &doc,
                &json!([{"op":"test","path":"/spec/replicas","value":3.0}])
            )
            .is_ok()
        );
    }

    #[test]
    fn append_env_with_dash() {
        let out = json_patch(
            &pod(),
            &json!([{"op": "add", "path": "/spec/containers/0/env/-", "value": {"name": "B", "value": "2"}}]),
        )
        .expect("append");
        assert_eq!(out["spec"]["containers"][0]["env"][1]["name"], "B");
    }

    #[test]
    fn error_messages_match_the_api_server() {
        let doc = pod();
        let cases = [
            (
                json!([{"op":"add","path":"/spec/nope/x","value":1}]),
                "add operation does not apply: doc is missing path: \"/spec/nope/x\": missing value",
            ),
            (
                json!([{"op":"remove","path":"/spec/nope/x"}]),
                "remove operation does not apply: doc is missing path: \"/spec/nope/x\": missing value",
            ),
            (
                json!([{"op":"remove","path":"/metadata/labels/zzz"}]),
                "error in remove for path: '/metadata/labels/zzz': Unable to remove nonexistent key: zzz: missing value",
            ),
            (
                json!([{"op":"replace","path":"/spec/nodeName","value":"n"}]),
                "replace operation does not apply: doc is missing key: /spec/nodeName: missing value",
            ),
            (
                json!([{"op":"move","from":"/spec/x/y","path":"/spec/z"}]),
                "move operation does not apply: doc is missing from path: /spec/x/y: missing value",
            ),
            (
                json!([{"op":"add","path":"/spec/containers/5","value":{}}]),
                "error in add for path: '/spec/containers/5': Unable to access invalid index: 5: invalid index referenced",
            ),
            (
                json!([{"op":"frobnicate","path":"/a"}]),
                "Unexpected kind: frobnicate",
            ),
        ];
        for (patch, want) in cases {
            let err = json_patch(&doc, &patch).expect_err("must fail");
            assert_eq!(err.message(), want);
            assert_eq!(err.code(), 422);
        }
    }

    #[test]
    fn non_array_patch_is_bad_request() {
        let err = json_patch(&pod(), &json!({"op": "add"})).expect_err("object is not a patch");
        assert_eq!(err.code(), 400);
        assert!(err.message().contains("cannot unmarshal object"));
    }

    #[test]
    fn failed_patch_leaves_input_untouched() {
        let doc = pod();
        let _ = json_patch(
            &doc,
            &json!([{"op":"replace","path":"/spec/containers/0/image","value":"z"},{"op":"test","path":"/x","value":1}]),
        );
        assert_eq!(doc["spec"]["containers"][0]["image"], "nginx:1");
    }
}

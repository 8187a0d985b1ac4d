//! Strategic merge patch for built-in kinds: lists merged by `patchMergeKey`, scalar-list union,
//! and the directives kubectl and Helm send (`$patch`, `$retainKeys`, `$setElementOrder/`,
//! `$deleteFromPrimitiveList/`, `null` deletes).

use serde_json::{Map, Value};

use super::PatchError;
use super::hints::{HintNode, TypeHints};
use super::json_patch::json_equal;

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";

/// Applies a strategic merge patch to `target` using the kind's merge keys.
pub fn strategic_merge_patch(
    target: &Value,
    patch: &Value,
    hints: &TypeHints,
) -> Result<Value, PatchError> {
    let Value::Object(patch_map) = patch else {
        return Err(PatchError::BadRequest(format!(
            "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
            kind_name(patch)
        )));
    };
    let original = target.as_object().cloned().unwrap_or_default();
    Ok(Value::Object(merge_map(
        original,
        patch_map,
        Some(&hints.root),
    )?))
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Null => "null",
        Value::Object(_) => "object",
    }
}

fn bad(msg: String) -> PatchError {
    PatchError::Unprocessable(msg)
}

fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    node: Option<&HintNode>,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(PATCH) {
        match directive.as_str() {
            Some("replace") => {
                let mut replaced = Map::new();
                for (k, v) in patch {
                    if k != PATCH && !v.is_null() {
                        replaced.insert(k.clone(), strip(v, node.and_then(|n| n.child(k)))?);
                    }
                }
                return Ok(replaced);
            }
            Some("delete") => return Ok(Map::new()),
            Some("merge") => {}
            _ => {
                return Err(bad(format!(
                    "unknown patch type: {} in map: {}",
                    directive_text(directive),
                    Value::Object(patch.clone())
                )));
            }
        }
    }

    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let Value::Array(keys) = retain else {
            return Err(bad(format!("invalid retainKeys directive: {retain}")));
        };
        let keep: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
        for (k, v) in patch {
            if !k.starts_with('$') && !v.is_null() && !keep.contains(&k.as_str()) {
                return Err(bad(format!(
                    "doesn't match retainKeys: field {k} is not present in $retainKeys list {retain}"
                )));
            }
        }
        original.retain(|k, _| keep.contains(&k.as_str()));
    }

    // Live lists whose element order the patch sets, before merging changes them.
    let live_lists: Vec<(String, Vec<Value>)> = patch
        .keys()
        .filter_map(|k| k.strip_prefix(SET_ORDER))
        .map(|field| {
            let live = match original.get(field) {
                Some(Value::Array(items)) => items.clone(),
                _ => Vec::new(),
            };
            (field.to_string(), live)
        })
        .collect();

    for (key, value) in patch {
        if key == PATCH || key == RETAIN_KEYS || key.starts_with(SET_ORDER) {
            continue;
        }
        if let Some(field) = key.strip_prefix(DELETE_PRIMITIVE) {
            let Value::Array(remove) = value else {
                return Err(bad(format!(
                    "invalid type for {key}: expected a list, got {value}"
                )));
            };
            if let Some(Value::Array(items)) = original.get_mut(field) {
                items.retain(|item| !remove.iter().any(|r| json_equal(r, item)));
            }
            continue;
        }
        let child = node.and_then(|n| n.child(key));
        if value.is_null() {
            original.shift_remove(key);
            continue;
        }
        let merged = match original.get(key) {
            Some(existing) => merge_value(existing, value, child, key)?,
            None => strip(value, child)?,
        };
        original.insert(key.clone(), merged);
    }

    for (key, order) in patch {
        let Some(field) = key.strip_prefix(SET_ORDER) else {
            continue;
        };
        let Value::Array(order) = order else {
            return Err(bad(format!(
                "invalid type for {key}: expected a list, got {order}"
            )));
        };
        let child = node.and_then(|n| n.child(field));
        let merge_key = child.and_then(|n| n.smp_key.clone());
        let live: &[Value] = live_lists
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, l)| l.as_slice())
            .unwrap_or(&[]);
        if let Some(Value::Array(items)) = original.get_mut(field) {
            apply_element_order(items, order, live, merge_key.as_deref());
        }
    }
    Ok(original)
}

fn directive_text(v: &Value) -> String {
    v.as_str()
        .map(String::from)
        .unwrap_or_else(|| v.to_string())
}

/// Merges one patch value into the original value of the same field.
fn merge_value(
    original: &Value,
    patch: &Value,
    node: Option<&HintNode>,
    field: &str,
) -> Result<Value, PatchError> {
    match (original, patch) {
        (Value::Object(o), Value::Object(p)) => Ok(Value::Object(merge_map(o.clone(), p, node)?)),
        (Value::Array(o), Value::Array(p)) => Ok(Value::Array(merge_list(o, p, node, field)?)),
        _ => strip(patch, node),
    }
}

/// A patch value that lands where the original has nothing: directives are resolved against
/// an empty original so none of them is stored.
fn strip(patch: &Value, node: Option<&HintNode>) -> Result<Value, PatchError> {
    match patch {
        Value::Object(p) => Ok(Value::Object(merge_map(Map::new(), p, node)?)),
        Value::Array(p) => Ok(Value::Array(merge_list(&[], p, node, "")?)),
        other => Ok(other.clone()),
    }
}

fn merge_list(
    original: &[Value],
    patch: &[Value],
    node: Option<&HintNode>,
    field: &str,
) -> Result<Vec<Value>, PatchError> {
    let merge_key = node.and_then(|n| n.smp_key.clone());
    let merges = node.is_some_and(|n| n.smp_merge);

    // `{"$patch": "replace"}` as an element replaces the whole list with the other elements.
    let replace = patch.iter().any(|item| {
        item.as_object()
            .is_some_and(|m| m.get(PATCH).and_then(Value::as_str) == Some("replace"))
    });
    if replace {
        let mut out = Vec::new();
        for item in patch {
            let is_directive = item
                .as_object()
                .is_some_and(|m| m.get(PATCH).and_then(Value::as_str) == Some("replace"));
            if !is_directive {
                out.push(strip(item, node)?);
            }
        }
        return Ok(out);
    }

    if !merges {
        // No merge strategy: the patch list replaces the original one.
        return patch.iter().map(|item| strip(item, node)).collect();
    }

    let Some(key) = merge_key else {
        // Scalar list with strategy merge (e.g. finalizers): ordered union.
        let mut out: Vec<Value> = original.to_vec();
        for item in patch {
            if item.is_object() {
                return Err(bad(format!(
                    "unable to merge a map into the scalar list {field}: {item}"
                )));
            }
            if !out.iter().any(|o| json_equal(o, item)) {
                out.push(item.clone());
            }
        }
        return Ok(out);
    };

    let mut out: Vec<Value> = original.to_vec();
    for item in patch {
        let Value::Object(item_map) = item else {
            return Err(bad(format!(
                "unable to find api field in struct for the list {field}: expected a map, got {item}"
            )));
        };
        let directive = item_map.get(PATCH).and_then(Value::as_str);
        let Some(key_value) = item_map.get(&key) else {
            return Err(bad(format!(
                "map: {} does not contain declared merge key: {key}",
                go_map(item_map)
            )));
        };
        let position = out.iter().position(|o| {
            o.as_object()
                .and_then(|m| m.get(&key))
                .is_some_and(|v| json_equal(v, key_value))
        });
        match directive {
            Some("delete") => {
                out.retain(|o| {
                    !o.as_object()
                        .and_then(|m| m.get(&key))
                        .is_some_and(|v| json_equal(v, key_value))
                });
            }
            Some("merge") => {
                return Err(bad(
                    "merging lists cannot yet be specified in the patch".to_string()
                ));
            }
            Some("replace") | None => match position {
                Some(i) => {
                    let existing = out[i].as_object().cloned().unwrap_or_default();
                    out[i] = Value::Object(merge_map(existing, item_map, node)?);
                }
                None => out.push(strip(item, node)?),
            },
            Some(other) => {
                return Err(bad(format!(
                    "unknown patch type: {other} in map: {}",
                    go_map(item_map)
                )));
            }
        }
    }
    Ok(out)
}

/// Renders a map roughly as Go's `%v` does, for error messages.
fn go_map(m: &Map<String, Value>) -> String {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    let parts: Vec<String> = keys
        .iter()
        .map(|k| {
            let v = &m[k.as_str()];
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!("{k}:{text}")
        })
        .collect();
    format!("map[{}]", parts.join(" "))
}

/// Applies `$setElementOrder` the way apimachinery does: the elements the order list names are
/// sorted by it, the server-only elements keep their live order, and the two runs are merged,
/// taking a server-only element first when it stood before the next ordered element in the live
/// list.
fn apply_element_order(
    items: &mut Vec<Value>,
    order: &[Value],
    live: &[Value],
    merge_key: Option<&str>,
) {
    let same = |a: &Value, b: &Value| match merge_key {
        Some(k) => match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) => json_equal(x, y),
            _ => false,
        },
        None => json_equal(a, b),
    };
    let position = |list: &[Value], item: &Value| list.iter().position(|o| same(o, item));
    let (mut ordered, mut server_only): (Vec<Value>, Vec<Value>) = items
        .drain(..)
        .partition(|item| position(order, item).is_some());
    ordered.sort_by_key(|item| position(order, item));
    server_only.sort_by_key(|item| position(live, item).unwrap_or(usize::MAX));
    let (mut left, mut right) = (
        server_only.into_iter().peekable(),
        ordered.into_iter().peekable(),
    );
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (position(live, l), position(live, r)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        items.extend(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                         "finalizers": ["a.io/x", "b.io/y"]},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {"name": "main", "image": "nginx:1",
                             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                             "ports": [{"containerPort": 80, "protocol": "TCP"}],
                             "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                            {"name": "sidecar", "image": "envoy:1"}
                        ],
                        "volumes": [{"name": "data", "emptyDir": {}}],
                        "tolerations": [{"key": "gpu", "operator": "Exists"}]
                    }
                }
            }
        })
    }

    fn hints() -> TypeHints {
        TypeHints::for_builtin("apps/v1", "Deployment")
    }

    fn smp(target: &Value, patch: Value) -> Value {
        strategic_merge_patch(target, &patch, &hints()).expect("patch applies")
    }

    #[test]
    fn containers_merge_by_name_and_env_by_name() {
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "main", "image": "nginx:2", "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}]}
            ]}}}}),
        );
        let cs = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs.as_array().map(Vec::len), Some(2), "sidecar kept");
        assert_eq!(cs[0]["image"], "nginx:2");
        assert_eq!(
            cs[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "20"}, {"name": "C", "value": "3"}])
        );
        assert_eq!(
            cs[0]["ports"],
            json!([{"containerPort": 80, "protocol": "TCP"}])
        );
        assert_eq!(cs[1]["image"], "envoy:1");
    }

    #[test]
    fn lists_without_strategy_are_replaced() {
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {"tolerations": [{"key": "tpu", "operator": "Exists"}]}}}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["tolerations"],
            json!([{"key": "tpu", "operator": "Exists"}])
        );
    }

    #[test]
    fn patch_delete_removes_list_element_and_null_removes_field() {
        let out = smp(
            &deployment(),
            json!({"metadata": {"labels": {"app": null}},
            "spec": {"template": {"spec": {"containers": [
                {"name": "sidecar", "$patch": "delete"},
                {"name": "main", "env": [{"name": "A", "$patch": "delete"}]}
            ]}}}}),
        );
        let cs = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs.as_array().map(Vec::len), Some(1));
        assert_eq!(cs[0]["env"], json!([{"name": "B", "value": "2"}]));
        assert_eq!(out["metadata"]["labels"], json!({}));
    }

    #[test]
    fn patch_replace_on_list_and_map() {
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {"containers": [
                {"$patch": "replace"}, {"name": "only", "image": "x"}
            ]}}, "strategy": {"$patch": "replace", "type": "Recreate"}}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "only", "image": "x"}])
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn retain_keys_drops_unlisted_fields_like_kubectl_strategy_switch() {
        // kubectl apply switching RollingUpdate -> Recreate sends this.
        let out = smp(
            &deployment(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        // Volume source switch, per item.
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {"volumes": [
                {"name": "data", "$retainKeys": ["configMap", "name"], "configMap": {"name": "cfg"}}
            ]}}}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["volumes"],
            json!([{"name": "data", "configMap": {"name": "cfg"}}])
        );
    }

    #[test]
    fn retain_keys_rejects_fields_outside_the_list() {
        let err = strategic_merge_patch(
            &deployment(),
            &json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {"maxSurge": 1}}}}),
            &hints(),
        )
        .expect_err("rollingUpdate not retained");
        assert_eq!(err.code(), 422);
    }

    #[test]
    fn set_element_order_reorders_containers() {
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "main"}],
                "containers": [{"name": "sidecar", "image": "envoy:2"}]
            }}}}),
        );
        let cs = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs[0]["name"], "sidecar");
        assert_eq!(cs[0]["image"], "envoy:2");
        assert_eq!(cs[1]["name"], "main");
        assert!(
            out["spec"]["template"]["spec"]
                .get("$setElementOrder/containers")
                .is_none()
        );
    }

    #[test]
    fn finalizers_union_and_delete_from_primitive_list() {
        let out = smp(
            &deployment(),
            json!({"metadata": {"finalizers": ["c.io/z", "a.io/x"]}}),
        );
        assert_eq!(
            out["metadata"]["finalizers"],
            json!(["a.io/x", "b.io/y", "c.io/z"])
        );
        let out = smp(
            &deployment(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.io/x"],
                                "$setElementOrder/finalizers": ["b.io/y"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b.io/y"]));
    }

    #[test]
    fn kubectl_three_way_patch_shape() {
        // Shape of what `kubectl apply` sends after editing an env var and an annotation.
        let patch = json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "main"}, {"name": "sidecar"}],
                "containers": [{
                    "$setElementOrder/env": [{"name": "A"}, {"name": "B"}],
                    "env": [{"name": "B", "value": "22"}],
                    "name": "main"
                }]
            }}}
        });
        let out = smp(&deployment(), patch);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"],
            "22"
        );
        assert_eq!(
            out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            "{}"
        );
        assert!(
            !out.to_string().contains('$'),
            "no directive is stored: {out}"
        );
    }

    #[test]
    fn new_fields_are_stored_without_directives() {
        let target = json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}});
        let out = smp(
            &target,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "env": [
                {"name": "X", "value": "1"}, {"name": "Y", "$patch": "delete"}
            ]}]}}}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([{"name": "X", "value": "1"}])
        );
    }

    #[test]
    fn missing_merge_key_is_an_error() {
        let err = strategic_merge_patch(
            &deployment(),
            &json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
            &hints(),
        )
        .expect_err("no name");
        assert_eq!(
            err.message(),
            "map: map[image:x] does not contain declared merge key: name"
        );
    }

    #[test]
    fn service_ports_merge_by_port_and_pod_conditions_by_type() {
        let svc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
        let out = strategic_merge_patch(
            &svc,
            &json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
            &TypeHints::for_builtin("v1", "Service"),
        )
        .expect("applies");
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "targetPort": 9090}, {"port": 443}])
        );

        let pod = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}});
        let out = strategic_merge_patch(
            &pod,
            &json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            &TypeHints::for_builtin("v1", "Pod"),
        )
        .expect("applies");
        assert_eq!(
            out["status"]["conditions"][0],
            json!({"type": "Ready", "status": "True"})
        );
        assert_eq!(out["status"]["conditions"][1]["type"], "PodScheduled");
    }

    #[test]
    fn unknown_patch_directive_is_rejected() {
        let err = strategic_merge_patch(
            &deployment(),
            &json!({"spec": {"$patch": "explode"}}),
            &hints(),
        )
        .expect_err("bad directive");
        assert!(err.message().starts_with("unknown patch type: explode"));
    }

    #[test]
    fn helm_three_way_patch_removes_and_adds() {
        // Shape of a Helm 3 upgrade patch: an env var dropped, a limit removed, a port added.
        let mut target = deployment();
        target["spec"]["template"]["spec"]["containers"][0]["resources"] =
            json!({"limits": {"cpu": "1", "memory": "1Gi"}});
        let out = smp(
            &target,
            json!({"spec": {"template": {"spec": {"containers": [{
                "$setElementOrder/env": [{"name": "A"}],
                "$setElementOrder/ports": [{"containerPort": 80}, {"containerPort": 9090}],
                "env": [{"$patch": "delete", "name": "B"}],
                "name": "main",
                "ports": [{"containerPort": 9090, "name": "metrics"}],
                "resources": {"limits": {"memory": null}}
            }]}}}}),
        );
        let c = &out["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["env"], json!([{"name": "A", "value": "1"}]));
        assert_eq!(
            c["ports"],
            json!([{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 9090, "name": "metrics"}])
        );
        assert_eq!(c["resources"], json!({"limits": {"cpu": "1"}}));
    }

    #[test]
    fn merge_directive_inside_a_list_is_rejected() {
        let err = strategic_merge_patch(
            &deployment(),
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "$patch": "merge"}]}}}}),
            &hints(),
        )
        .expect_err("not supported");
        assert_eq!(
            err.message(),
            "merging lists cannot yet be specified in the patch"
        );
    }

    #[test]
    fn delete_directive_on_a_map_field_empties_it() {
        let out = smp(
            &deployment(),
            json!({"spec": {"strategy": {"$patch": "delete"}}}),
        );
        assert_eq!(out["spec"]["strategy"], json!({}));
    }

    fn random_doc(rng: &mut rand_chacha::ChaCha8Rng, depth: u32, allow_null: bool) -> Value {
        use rand::Rng;
        let mut m = Map::new();
        for key in ["a", "b", "c", "d"] {
            if !rng.random_bool(0.5) {
                continue;
            }
            let v = match rng.random_range(0..4) {
                0 if depth < 3 => random_doc(rng, depth + 1, allow_null),
                1 if allow_null => Value::Null,
                2 => json!(rng.random_range(0..3)),
                _ => json!(format!("s{}", rng.random_range(0..3))),
            };
            m.insert(key.to_string(), v);
        }
        Value::Object(m)
    }

    #[test]
    fn without_lists_or_directives_smp_equals_merge_patch() {
        use rand::SeedableRng;
        let hints = TypeHints::for_builtin("v1", "ConfigMap");
        for seed in 0..300u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let target = random_doc(&mut rng, 0, false);
            let patch = random_doc(&mut rng, 0, true);
            let mut merged = target.clone();
            crate::patch::merge_patch(&mut merged, &patch);
            let smp = strategic_merge_patch(&target, &patch, &hints).expect("applies");
            assert_eq!(smp, merged, "seed {seed}: {target} + {patch}");
        }
    }

    #[test]
    fn set_element_order_interleaves_server_only_items_by_live_position() {
        let target = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a"}, {"name": "injected"}, {"name": "b"}
        ]}}}});
        let out = smp(
            &target,
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                "containers": [{"name": "b", "image": "y"}]
            }}}}),
        );
        let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .map(|c| c.iter().filter_map(|x| x["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(names, ["injected", "b", "a"]);
    }
}

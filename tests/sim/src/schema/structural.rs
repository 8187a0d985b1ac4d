//! `StructuralSchema`: OpenAPI v3 value validation, list-type invariants, defaulting and pruning of custom objects.

use super::cel::CelRules;
use super::errors::{BadValue, FieldError, FieldErrorKind, go_float, go_quote};
use super::formats::check_format;
use regex::Regex;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Fields every object root keeps through pruning.
const ROOT_KEEP: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Message the apiserver adds when CEL rules are skipped because of blocking schema errors.
pub const CEL_SKIPPED: &str = "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

/// A CRD version's `openAPIV3Schema`, prepared for validation, defaulting and pruning.
#[derive(Debug)]
pub struct StructuralSchema {
    schema: Value,
    patterns: HashMap<String, Result<Regex, String>>,
    cel: CelRules,
}

impl StructuralSchema {
    /// Prepares a schema (patterns compiled, CEL rules compiled through kube-cel).
    pub fn new(openapi_v3_schema: &Value) -> StructuralSchema {
        let mut patterns = HashMap::new();
        collect_patterns(openapi_v3_schema, &mut patterns, 0);
        StructuralSchema {
            schema: openapi_v3_schema.clone(),
            patterns,
            cel: CelRules::compile(openapi_v3_schema),
        }
    }

    /// The schema this was built from.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// Problems that make the schema itself unusable (bad regex patterns, CEL rules that do not
    /// compile); the apiserver would reject such a CRD at registration.
    pub fn compile_errors(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .patterns
            .iter()
            .filter_map(|(p, r)| {
                r.as_ref()
                    .err()
                    .map(|e| format!("failed to compile pattern {p:?}: {e}"))
            })
            .collect();
        out.sort();
        out.extend(self.cel.compile_errors());
        out
    }

    /// Full validation as the apiserver does on create (`old` = None) and update (`old` = Some):
    /// OpenAPI value validation (with update ratcheting), list-type set/map uniqueness, then CEL
    /// `x-kubernetes-validations` rules unless a blocking schema error was found.
    pub fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut errs = Vec::new();
        self.validate_node(&self.schema, obj, old, "", &mut errs, 0);

        let mut list_errs = Vec::new();
        list_type_errors(&self.schema, obj, &mut String::new(), &mut list_errs, 0);
        if !list_errs.is_empty() {
            // Ratcheting: an old object that already broke list invariants does not block updates.
            let old_had = old.is_some_and(|o| {
                let mut v = Vec::new();
                list_type_errors(&self.schema, o, &mut String::new(), &mut v, 0);
                !v.is_empty()
            });
            if !old_had {
                errs.extend(list_errs);
            }
        }

        let blocking = errs.iter().any(|e| {
            matches!(
                e.kind,
                FieldErrorKind::NotSupported
                    | FieldErrorKind::Required
                    | FieldErrorKind::TooLong
                    | FieldErrorKind::TooMany
                    | FieldErrorKind::TypeInvalid
            )
        });
        if blocking {
            if self.cel.has_rules() {
                errs.push(FieldError {
                    field: "<nil>".into(),
                    kind: FieldErrorKind::Invalid,
                    message: CEL_SKIPPED.into(),
                    value: BadValue::Json(Value::Null),
                });
            }
        } else {
            self.cel.validate(&self.schema, obj, old, &mut errs);
        }
        errs
    }

    /// Only the OpenAPI value validations (no list-type, no CEL); errors in kube-openapi order.
    pub fn validate_openapi(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut errs = Vec::new();
        self.validate_node(&self.schema, obj, old, "", &mut errs, 0);
        errs
    }

    fn validate_node(
        &self,
        s: &Value,
        v: &Value,
        old: Option<&Value>,
        path: &str,
        errs: &mut Vec<FieldError>,
        depth: usize,
    ) {
        if depth > MAX_DEPTH || !s.is_object() {
            return;
        }
        // Ratcheting (CRDValidationRatcheting): an unchanged value keeps validating as before.
        if old.is_some_and(|o| o == v) {
            return;
        }
        let name = path;
        if v.is_null() {
            if s.get("nullable").and_then(Value::as_bool) == Some(true) {
                return;
            }
            if let Some(t) = declared_type(s) {
                errs.push(FieldError {
                    field: field_of(path),
                    kind: FieldErrorKind::TypeInvalid,
                    message: format!("{name} in body must be of type {t}"),
                    value: BadValue::Json(Value::String(String::new())),
                });
            }
            return;
        }

        // 1. type
        if let Some(t) = declared_type(s)
            && !type_matches(&t, v)
        {
            let dt = data_type(v);
            errs.push(FieldError {
                field: field_of(path),
                kind: FieldErrorKind::TypeInvalid,
                message: format!("{name} in body must be of type {t}: {}", go_quote(dt)),
                value: BadValue::Json(Value::String(dt.into())),
            });
        }

        // 2. anyOf / oneOf / allOf / not
        self.junctors(s, v, old, path, errs, depth);

        // 3. string validations and format
        if let Some(st) = v.as_str() {
            let len = st.chars().count() as u64;
            if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
                && len > max
            {
                errs.push(FieldError {
                    field: field_of(path),
                    kind: FieldErrorKind::TooLong,
                    message: format!(
                        "may not be more than {max} {}",
                        if max == 1 { "byte" } else { "bytes" }
                    ),
                    value: BadValue::Omit,
                });
            }
            if let Some(min) = s.get("minLength").and_then(Value::as_u64)
                && len < min
            {
                errs.push(FieldError::invalid(
                    field_of(path),
                    v.clone(),
                    format!("{name} in body should be at least {min} chars long"),
                ));
            }
            if let Some(p) = s.get("pattern").and_then(Value::as_str)
                && let Some(Ok(re)) = self.patterns.get(p)
                && !re.is_match(st)
            {
                errs.push(FieldError::invalid(
                    field_of(path),
                    v.clone(),
                    format!("{name} in body should match '{p}'"),
                ));
            }
            if let Some(f) = s.get("format").and_then(Value::as_str)
                && check_format(f, st) == Some(false)
            {
                errs.push(FieldError {
                    field: field_of(path),
                    kind: FieldErrorKind::TypeInvalid,
                    message: format!("{name} in body must be of type {f}: {}", go_quote(st)),
                    value: BadValue::Json(v.clone()),
                });
            }
        }

        // 4. number validations
        if let Some(n) = v.as_f64().filter(|_| v.is_number()) {
            if let Some(m) = s.get("multipleOf").and_then(Value::as_f64)
                && m > 0.0
                && (n / m).fract().abs() > 1e-9
            {
                errs.push(FieldError::invalid(
                    field_of(path),
                    v.clone(),
                    format!(
                        "{name} in body should be a multiple of {}",
                        bound_text(v, m)
                    ),
                ));
            }
            if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
                let excl = s.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
                if n > max || (excl && n == max) {
                    let rel = if excl {
                        "less than"
                    } else {
                        "less than or equal to"
                    };
                    errs.push(FieldError::invalid(
                        field_of(path),
                        v.clone(),
                        format!("{name} in body should be {rel} {}", bound_text(v, max)),
                    ));
                }
            }
            if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
                let excl = s.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
                if n < min || (excl && n == min) {
                    let rel = if excl {
                        "greater than"
                    } else {
                        "greater than or equal to"
                    };
                    errs.push(FieldError::invalid(
                        field_of(path),
                        v.clone(),
                        format!("{name} in body should be {rel} {}", bound_text(v, min)),
                    ));
                }
            }
        }

        // 5. arrays: items first, then minItems/maxItems
        if let Some(arr) = v.as_array() {
            if let Some(items) = s.get("items").filter(|i| i.is_object()) {
                let old_arr = old.and_then(Value::as_array);
                for (i, item) in arr.iter().enumerate() {
                    let old_item = old_arr.and_then(|oa| correlate_item(s, item, oa));
                    self.validate_node(
                        items,
                        item,
                        old_item,
                        &format!("{path}[{i}]"),
                        errs,
                        depth + 1,
                    );
                }
            }
            let size = arr.len() as u64;
            if let Some(min) = s.get("minItems").and_then(Value::as_u64)
                && size < min
            {
                errs.push(FieldError::invalid(
                    field_of(path),
                    Value::from(size),
                    format!("{name} in body should have at least {min} items"),
                ));
            }
            if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
                && size > max
            {
                errs.push(too_many(path, size, max));
            }
        }

        // 6. enum
        if let Some(allowed) = s.get("enum").and_then(Value::as_array)
            && !allowed.iter().any(|a| json_eq(a, v))
        {
            let values: Vec<String> = allowed
                .iter()
                .map(|a| match a {
                    Value::String(s) => go_quote(s),
                    other => go_quote(&super::errors::go_json(other)),
                })
                .collect();
            errs.push(FieldError {
                field: field_of(path),
                kind: FieldErrorKind::NotSupported,
                message: if values.is_empty() {
                    String::new()
                } else {
                    format!("supported values: {}", values.join(", "))
                },
                value: BadValue::Json(v.clone()),
            });
        }

        // 7. objects
        if let Some(obj) = v.as_object() {
            let n = obj.len() as u64;
            if let Some(min) = s.get("minProperties").and_then(Value::as_u64)
                && n < min
            {
                errs.push(FieldError::invalid(
                    field_of(path),
                    Value::from(min),
                    format!("{name} in body should have at least {min} properties"),
                ));
                return;
            }
            if let Some(max) = s.get("maxProperties").and_then(Value::as_u64)
                && n > max
            {
                errs.push(too_many(path, n, max));
                return;
            }
            let props = s.get("properties").and_then(Value::as_object);
            if let Some(add) = s.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, child) in obj {
                    if props.is_some_and(|p| p.contains_key(k)) {
                        continue;
                    }
                    let child_old = old.and_then(|o| o.get(k));
                    self.validate_node(add, child, child_old, &join(path, k), errs, depth + 1);
                }
            }
            if let Some(props) = props {
                for (k, ps) in props {
                    if let Some(child) = obj.get(k) {
                        let child_old = old.and_then(|o| o.get(k));
                        self.validate_node(ps, child, child_old, &join(path, k), errs, depth + 1);
                    }
                }
            }
            if let Some(req) = s.get("required").and_then(Value::as_array) {
                for k in req.iter().filter_map(Value::as_str) {
                    if !obj.contains_key(k) {
                        errs.push(FieldError::required(join(path, k), ""));
                    }
                }
            }
        }
    }

    fn junctors(
        &self,
        s: &Value,
        v: &Value,
        old: Option<&Value>,
        path: &str,
        errs: &mut Vec<FieldError>,
        depth: usize,
    ) {
        let run = |branch: &Value| {
            let mut e = Vec::new();
            self.validate_node(branch, v, old, path, &mut e, depth + 1);
            e
        };
        if let Some(any_of) = s
            .get("anyOf")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
        {
            let results: Vec<Vec<FieldError>> = any_of.iter().map(run).collect();
            if !results.iter().any(Vec::is_empty) {
                errs.push(junctor_error(format!(
                    "{} must validate at least one schema (anyOf)",
                    go_quote(path)
                )));
                if let Some(best) = results.into_iter().min_by_key(Vec::len) {
                    errs.extend(best);
                }
            }
        }
        if let Some(one_of) = s
            .get("oneOf")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
        {
            let results: Vec<Vec<FieldError>> = one_of.iter().map(run).collect();
            let valid = results.iter().filter(|r| r.is_empty()).count();
            if valid != 1 {
                let extra = if valid == 0 {
                    "Found none valid".to_string()
                } else {
                    format!("Found {valid} valid alternatives")
                };
                errs.push(junctor_error(format!(
                    "{} must validate one and only one schema (oneOf). {extra}",
                    go_quote(path)
                )));
                if valid == 0
                    && let Some(best) = results.into_iter().min_by_key(Vec::len)
                {
                    errs.extend(best);
                }
            }
        }
        if let Some(all_of) = s
            .get("allOf")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
        {
            let mut validated = 0;
            for branch in all_of {
                let r = run(branch);
                if r.is_empty() {
                    validated += 1;
                }
                errs.extend(r);
            }
            if validated != all_of.len() {
                let extra = if validated == 0 {
                    ". None validated"
                } else {
                    ""
                };
                errs.push(junctor_error(format!(
                    "{} must validate all the schemas (allOf){extra}",
                    go_quote(path)
                )));
            }
        }
        if let Some(not) = s.get("not").filter(|n| n.is_object())
            && run(not).is_empty()
        {
            errs.push(junctor_error(format!(
                "{} must not validate the schema (not)",
                go_quote(path)
            )));
        }
    }

    /// Applies schema `default`s where a field is absent (recursively, inside arrays and maps), and
    /// drops `null`s of non-nullable fields (replaced by the default when there is one).
    pub fn apply_defaults(&self, obj: &mut Value) {
        default_node(&self.schema, obj, 0);
    }

    /// Drops fields not described by the schema, except under `x-kubernetes-preserve-unknown-fields`;
    /// the root (and embedded resources) keep `apiVersion`, `kind` and `metadata`.
    pub fn prune(&self, obj: &mut Value) {
        let mut removed = Vec::new();
        prune_node(&self.schema, obj, true, &mut String::new(), &mut removed, 0);
    }

    /// Like [`prune`](Self::prune), returning the paths it dropped (`spec.foo`, `spec.ports[0].bogus`)
    /// for `fieldValidation=Strict` (400 `strict decoding error: unknown field "spec.foo"`) or `Warn`.
    pub fn prune_reporting(&self, obj: &mut Value) -> Vec<String> {
        let mut removed = Vec::new();
        prune_node(&self.schema, obj, true, &mut String::new(), &mut removed, 0);
        removed
    }

    /// The unknown fields `prune` would drop, without modifying `obj`.
    pub fn unknown_fields(&self, obj: &Value) -> Vec<String> {
        let mut copy = obj.clone();
        self.prune_reporting(&mut copy)
    }

    /// The schema of version `version` of a CustomResourceDefinition object
    /// (`spec.versions[].schema.openAPIV3Schema`), None when that version has no schema.
    pub fn from_crd(crd: &Value, version: &str) -> Option<StructuralSchema> {
        let v = crd
            .get("spec")?
            .get("versions")?
            .as_array()?
            .iter()
            .find(|v| v.get("name").and_then(Value::as_str) == Some(version))?;
        let schema = v.get("schema")?.get("openAPIV3Schema")?;
        Some(StructuralSchema::new(schema))
    }
}

const MAX_DEPTH: usize = 64;

fn field_of(path: &str) -> String {
    if path.is_empty() {
        "<nil>".into()
    } else {
        path.to_string()
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn junctor_error(message: String) -> FieldError {
    FieldError {
        field: "<nil>".into(),
        kind: FieldErrorKind::Invalid,
        message,
        value: BadValue::Json(Value::String(String::new())),
    }
}

fn too_many(path: &str, actual: u64, max: u64) -> FieldError {
    FieldError {
        field: field_of(path),
        kind: FieldErrorKind::TooMany,
        message: format!(
            "must have at most {max} {}",
            if max == 1 { "item" } else { "items" }
        ),
        value: BadValue::Json(Value::from(actual)),
    }
}

/// A bound printed like kube-openapi: integers as ints when the data is an integer, else Go `%v`.
fn bound_text(data: &Value, bound: f64) -> String {
    if (data.is_i64() || data.is_u64()) && bound.fract() == 0.0 && bound.abs() < 9.0e18 {
        format!("{}", bound as i64)
    } else {
        go_float(bound)
    }
}

/// The declared type list, `integer,string` for int-or-string; None when unconstrained.
fn declared_type(s: &Value) -> Option<String> {
    if s.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        return Some("integer,string".into());
    }
    s.get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

fn data_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(declared: &str, v: &Value) -> bool {
    let dt = data_type(v);
    declared.split(',').any(|t| {
        t == dt
            || (t == "number" && dt == "integer")
            || (t == "integer" && dt == "number" && v.as_f64().is_some_and(|f| f.fract() == 0.0))
    })
}

/// JSON equality treating 1 and 1.0 as equal (Go unstructured compares int64/float64 that way for enums).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// The old list element correlated with `item` (by map keys for `x-kubernetes-list-type: map`).
fn correlate_item<'a>(s: &Value, item: &Value, old: &'a [Value]) -> Option<&'a Value> {
    match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("map") => {
            let keys = map_keys(s);
            let k = key_of(item, &keys);
            old.iter().find(|o| key_of(o, &keys) == k)
        }
        Some("set") => old.iter().find(|o| *o == item),
        _ => None,
    }
}

fn map_keys(s: &Value) -> Vec<String> {
    s.get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn key_of(item: &Value, keys: &[String]) -> Map<String, Value> {
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = item.get(k) {
            m.insert(k.clone(), v.clone());
        }
    }
    m
}

/// `x-kubernetes-list-type` set/map uniqueness (`spec.tags[2]: Duplicate value: "a"`). `path`
/// is a buffer the walk extends and restores: a field path is only copied for an error.
fn list_type_errors(
    s: &Value,
    v: &Value,
    path: &mut String,
    errs: &mut Vec<FieldError>,
    depth: usize,
) {
    if depth > MAX_DEPTH || !s.is_object() {
        return;
    }
    match v {
        Value::Array(arr) => {
            match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("set") => {
                    for (i, x) in arr.iter().enumerate() {
                        if arr[..i].iter().any(|y| y == x) {
                            errs.push(duplicate(format!("{path}[{i}]"), x.clone()));
                        }
                    }
                }
                Some("map") => {
                    let keys = map_keys(s);
                    let ks: Vec<Map<String, Value>> =
                        arr.iter().map(|x| key_of(x, &keys)).collect();
                    for i in 0..ks.len() {
                        if ks[..i].contains(&ks[i]) {
                            errs.push(duplicate(
                                format!("{path}[{i}]"),
                                Value::Object(ks[i].clone()),
                            ));
                        }
                    }
                }
                _ => {}
            }
            if let Some(items) = s.get("items") {
                for (i, x) in arr.iter().enumerate() {
                    let len = path.len();
                    push_index(path, i);
                    list_type_errors(items, x, path, errs, depth + 1);
                    path.truncate(len);
                }
            }
        }
        Value::Object(obj) => {
            let props = s.get("properties").and_then(Value::as_object);
            for (k, child) in obj {
                let len = path.len();
                if let Some(ps) = props.and_then(|p| p.get(k)) {
                    push_field(path, k);
                    list_type_errors(ps, child, path, errs, depth + 1);
                } else if let Some(add) = s.get("additionalProperties").filter(|a| a.is_object()) {
                    path.push('[');
                    path.push_str(k);
                    path.push(']');
                    list_type_errors(add, child, path, errs, depth + 1);
                }
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Appends `.key` to a field path (`key` alone at the root), as `join` writes it.
fn push_field(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

/// Appends `[i]` to a field path.
fn push_index(path: &mut String, i: usize) {
    use std::fmt::Write;
    let _ = write!(path, "[{i}]");
}

fn duplicate(field: String, v: Value) -> FieldError {
    FieldError {
        field,
        kind: FieldErrorKind::Duplicate,
        message: String::new(),
        value: BadValue::Json(v),
    }
}

fn is_nullable(s: &Value) -> bool {
    s.get("nullable").and_then(Value::as_bool) == Some(true)
}

fn default_node(s: &Value, v: &mut Value, depth: usize) {
    if depth > MAX_DEPTH || !s.is_object() {
        return;
    }
    match v {
        Value::Object(obj) => {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (k, ps) in props {
                    let default = ps.get("default");
                    match obj.get(k) {
                        None => {
                            if let Some(d) = default {
                                obj.insert(k.clone(), d.clone());
                            }
                        }
                        Some(Value::Null) if !is_nullable(ps) => match default {
                            Some(d) => {
                                obj.insert(k.clone(), d.clone());
                            }
                            None => {
                                obj.remove(k);
                            }
                        },
                        Some(_) => {}
                    }
                    if let Some(child) = obj.get_mut(k) {
                        default_node(ps, child, depth + 1);
                    }
                }
            }
            if let Some(add) = s.get("additionalProperties").filter(|a| a.is_object()) {
                let props = s.get("properties").and_then(Value::as_object);
                let keys: Vec<String> = obj
                    .keys()
                    .filter(|k| !props.is_some_and(|p| p.contains_key(k.as_str())))
                    .cloned()
                    .collect();
                for k in keys {
                    if obj.get(&k).is_some_and(Value::is_null) && !is_nullable(add) {
                        match add.get("default") {
                            Some(d) => {
                                obj.insert(k.clone(), d.clone());
                            }
                            None => {
                                obj.remove(&k);
                            }
                        }
                    }
                    if let Some(child) = obj.get_mut(&k) {
                        default_node(add, child, depth + 1);
                    }
                }
            }
        }
        Value::Array(arr) => {
            if let Some(items) = s.get("items").filter(|i| i.is_object()) {
                for item in arr.iter_mut() {
                    if item.is_null()
                        && !is_nullable(items)
                        && let Some(d) = items.get("default")
                    {
                        *item = d.clone();
                    }
                    default_node(items, item, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// Drops what the schema does not describe below `v`. `path` is a buffer the walk extends and
/// restores: a field path is only copied for a removed field.
fn prune_node(
    s: &Value,
    v: &mut Value,
    keep_meta: bool,
    path: &mut String,
    removed: &mut Vec<String>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        Value::Object(obj) => {
            let preserve = s
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                == Some(true);
            let embedded = s
                .get("x-kubernetes-embedded-resource")
                .and_then(Value::as_bool)
                == Some(true);
            let keep_meta = keep_meta || embedded;
            let props = s.get("properties").and_then(Value::as_object);
            let add = s.get("additionalProperties");
            let add_schema = add.filter(|a| a.is_object());
            let add_allows_any = add.and_then(Value::as_bool) == Some(true);
            // Unknown fields are removed after the walk, in key order: the same removals (each
            // moving the last key into its place) as removing them as they are met.
            let mut unknown: Vec<String> = Vec::new();
            for (k, child) in obj.iter_mut() {
                let is_meta = keep_meta && ROOT_KEEP.contains(&k.as_str());
                let len = path.len();
                push_field(path, k);
                if let Some(ps) = props.and_then(|p| p.get(k)) {
                    if !(is_meta && k == "metadata") {
                        // metadata is ObjectMeta, not pruned by the CRD schema
                        prune_node(ps, child, false, path, removed, depth + 1);
                    }
                } else if let Some(add) = add_schema {
                    prune_node(add, child, false, path, removed, depth + 1);
                } else if is_meta || preserve || add_allows_any {
                    // kept as is
                } else {
                    unknown.push(k.clone());
                    removed.push(path.clone());
                }
                path.truncate(len);
            }
            for k in unknown {
                obj.remove(&k);
            }
        }
        Value::Array(arr) => {
            if let Some(items) = s.get("items").filter(|i| i.is_object()) {
                for (i, item) in arr.iter_mut().enumerate() {
                    let len = path.len();
                    push_index(path, i);
                    prune_node(items, item, false, path, removed, depth + 1);
                    path.truncate(len);
                }
            }
        }
        _ => {}
    }
}

fn collect_patterns(s: &Value, out: &mut HashMap<String, Result<Regex, String>>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let Some(m) = s.as_object() else { return };
    if let Some(p) = m.get("pattern").and_then(Value::as_str)
        && !out.contains_key(p)
    {
        out.insert(p.to_string(), Regex::new(p).map_err(|e| e.to_string()));
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        for ps in props.values() {
            collect_patterns(ps, out, depth + 1);
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(child) = m.get(key) {
            collect_patterns(child, out, depth + 1);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(arr) = m.get(key).and_then(Value::as_array) {
            for child in arr {
                collect_patterns(child, out, depth + 1);
            }
        }
    }
}

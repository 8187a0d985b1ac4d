//! Adapters between the verb handlers and the pure modules they call (patch, schema, dataplane
//! defaulting): error mapping to `Status` responses and the unknown-field report of pruning.

use super::errors::ApiError;
use crate::patch::{self, PatchError, TypeHints};
use crate::schema::{self, StructuralSchema};
use serde_json::Value;

fn patch_err(e: PatchError) -> ApiError {
    match e {
        PatchError::BadRequest(m) => ApiError::bad_request(m),
        PatchError::Unprocessable(m) => ApiError::new(422, "Invalid", m),
    }
}

/// RFC 7386 merge patch.
pub fn merge_patch(target: &mut Value, p: &Value) {
    patch::merge_patch(target, p);
}

/// RFC 6902 JSON patch.
pub fn json_patch(target: &Value, ops: &Value) -> Result<Value, ApiError> {
    patch::json_patch(target, ops).map_err(patch_err)
}

/// Strategic merge patch (built-in kinds).
pub fn strategic_merge_patch(
    target: &Value,
    p: &Value,
    hints: &TypeHints,
) -> Result<Value, ApiError> {
    patch::strategic_merge_patch(target, p, hints).map_err(patch_err)
}

/// Server-side apply: `Ok((object, changed))`, or the 409/400/422 error.
#[allow(clippy::too_many_arguments)]
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    subresource: Option<&str>,
    hints: &TypeHints,
    now: &str,
    group: &str,
    plural: &str,
    name: &str,
) -> Result<(Value, bool), ApiError> {
    patch::validate_apply(applied, hints).map_err(patch_err)?;
    match patch::server_side_apply(live, applied, manager, force, subresource, hints, now) {
        Ok(r) => Ok((r.object, r.changed)),
        Err(c) => {
            let mut e = ApiError::new(409, "Conflict", c.message());
            e.details = Some(serde_json::json!({
                "name": name, "group": group, "kind": plural, "causes": c.status_causes(),
            }));
            Err(e)
        }
    }
}

/// managedFields bookkeeping for non-apply writes.
pub fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    hints: &TypeHints,
    now: &str,
) {
    patch::track_update(old, new, manager, "Update", subresource, hints, now);
}

/// Outcome of running a CRD schema over an object.
#[derive(Debug, Default)]
pub struct SchemaOutcome {
    /// Paths of fields removed by pruning (unknown fields), like `spec.foo`.
    pub unknown_fields: Vec<String>,
    /// The 422 `Status` when validation failed.
    pub invalid: Option<Value>,
}

fn removed_paths(before: &Value, after: &Value, prefix: &str, out: &mut Vec<String>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for (k, bv) in b {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match a.get(k) {
                    None => out.push(p),
                    Some(av) => removed_paths(bv, av, &p, out),
                }
            }
        }
        (Value::Array(b), Value::Array(a)) => {
            for (i, (bv, av)) in b.iter().zip(a.iter()).enumerate() {
                removed_paths(bv, av, &format!("{prefix}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Prunes unknown fields, applies defaults and validates a custom resource.
pub fn run_crd_schema(
    schema: &StructuralSchema,
    kind: &str,
    group: &str,
    obj: &mut Value,
    old: Option<&Value>,
) -> SchemaOutcome {
    let before = obj.clone();
    schema.prune(obj);
    let mut unknown_fields = Vec::new();
    removed_paths(&before, obj, "", &mut unknown_fields);
    schema.apply_defaults(obj);
    let errors = schema.validate(obj, old);
    let invalid = (!errors.is_empty()).then(|| {
        let name = obj
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("");
        schema::invalid_status(kind, group, name, &errors)
    });
    SchemaOutcome {
        unknown_fields,
        invalid,
    }
}

/// Builds a `Table` for objects when printer columns are known. `None` until the schema module
/// provides printer columns; clients then get the plain list, which kubectl also prints.
pub fn to_table(
    _resource: &str,
    _crd_version: Option<&Value>,
    _objects: &[Value],
    _include_object: &str,
    _list_meta: Value,
) -> Option<Value> {
    None
}

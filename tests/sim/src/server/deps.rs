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
            e.details = Some(Box::new(serde_json::json!({
                "name": name, "group": group, "kind": plural, "causes": c.status_causes(),
            })));
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

/// Prunes unknown fields, applies defaults and validates a custom resource.
pub fn run_crd_schema(
    schema: &StructuralSchema,
    kind: &str,
    group: &str,
    obj: &mut Value,
    old: Option<&Value>,
) -> SchemaOutcome {
    let unknown_fields = schema.prune_reporting(obj);
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

/// Builds a `Table` for objects with the resource's printer columns (CRD `additionalPrinterColumns`,
/// kubectl's built-in column sets, or Name + Created At).
pub fn to_table(
    resource: &str,
    crd_version: Option<&Value>,
    objects: &[Value],
    include_object: &str,
    list_meta: Value,
    table_api_version: &str,
) -> Value {
    let columns = match crd_version {
        Some(v) => schema::printer_columns_from_crd_version(v),
        None => schema::builtin_printer_columns(resource)
            .unwrap_or_else(schema::default_printer_columns),
    };
    let mut t = schema::to_table(
        objects,
        &columns,
        schema::IncludeObject::from_param(Some(include_object)),
        list_meta,
        chrono::Utc::now(),
    );
    if let Some(m) = t.as_object_mut() {
        m.insert(
            "apiVersion".into(),
            Value::String(table_api_version.to_string()),
        );
    }
    t
}

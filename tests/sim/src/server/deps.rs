//! Adapters between the server and the pure modules it calls (patch, schema, dataplane defaulting),
//! in the shapes the verb handlers need. Modules that have not landed yet have a trivial stand-in
//! here, marked as such, replaced when they land.

use serde_json::Value;

/// Where list-type/merge-key hints come from.
pub enum Hints<'a> {
    Builtin { api_version: &'a str, kind: &'a str },
    Schema(&'a Value),
}

/// A failed patch.
#[derive(Debug, thiserror::Error)]
#[error("failed to apply patch: {0}")]
pub struct PatchFailed(pub String);

/// A server-side apply conflict.
#[derive(Debug)]
pub struct ApplyConflicts {
    pub message: String,
    pub conflicts: Vec<(String, String)>,
}

/// RFC 7386 merge patch. Stand-in until `patch::merge_patch` lands.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// RFC 6902 JSON patch. Not available until `patch::json_patch` lands.
pub fn json_patch(_target: &Value, _ops: &Value) -> Result<Value, PatchFailed> {
    Err(PatchFailed(
        "json patch is not supported by this build".into(),
    ))
}

/// Strategic merge patch. Stand-in (merge patch semantics) until `patch::strategic_merge_patch` lands.
pub fn strategic_merge_patch(
    target: &Value,
    patch: &Value,
    _hints: &Hints,
) -> Result<Value, PatchFailed> {
    let mut out = target.clone();
    merge_patch(&mut out, patch);
    Ok(out)
}

/// Server-side apply. Stand-in (merge of the applied config, no ownership) until
/// `patch::server_side_apply` lands.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    _manager: &str,
    _force: bool,
    _subresource: Option<&str>,
    _hints: &Hints,
    _now: &str,
) -> Result<Value, ApplyConflicts> {
    let mut out = live.cloned().unwrap_or(Value::Null);
    merge_patch(&mut out, applied);
    Ok(out)
}

/// managedFields bookkeeping for non-apply writes. Stand-in (no-op) until `patch::track_update` lands.
pub fn track_update(
    _old: Option<&Value>,
    _new: &mut Value,
    _manager: &str,
    _subresource: Option<&str>,
    _hints: &Hints,
    _now: &str,
) {
}

/// A field error from schema validation: (field, cause reason, message).
pub type Cause = (String, String, String);

/// Outcome of running a CRD schema over an object.
#[derive(Debug, Default)]
pub struct SchemaOutcome {
    /// Paths of fields removed by pruning (unknown fields), like `spec.foo`.
    pub unknown_fields: Vec<String>,
    pub causes: Vec<Cause>,
    /// Full `... is invalid: ...` message when causes is non-empty.
    pub message: String,
}

/// Defaults, prunes and validates a custom resource. Stand-in (accepts everything) until `schema`
/// lands.
pub fn run_crd_schema(
    _schema: &Value,
    _kind: &str,
    _group: &str,
    _obj: &mut Value,
    _old: Option<&Value>,
) -> SchemaOutcome {
    SchemaOutcome::default()
}

/// Builds a `Table` for objects when printer columns are known. `None` until `schema` lands.
pub fn to_table(
    _resource: &str,
    _crd_version: Option<&Value>,
    _objects: &[Value],
    _include_object: &str,
    _list_meta: Value,
) -> Option<Value> {
    None
}

/// Built-in defaulting on create. Stand-in (no-op) until `dataplane::default_on_create` lands.
pub fn default_on_create(_group: &str, _version: &str, _resource: &str, _obj: &mut Value) {}

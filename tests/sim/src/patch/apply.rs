//! Server-side apply and Update-operation ownership: merging an applied configuration into the
//! live object, `metadata.managedFields` updates, conflicts and `force`, removal of fields a
//! manager stops applying, and kubectl's client-side to server-side apply upgrade.

use serde_json::{Map, Value};

use super::PatchError;
use super::conflict::{ApplyConflict, ConflictCause};
use super::fieldset::{FieldSet, canonical, path_string};
use super::hints::TypeHints;
use super::managed::{
    Entry, Scope, api_version_of, cap_update_managers, decode_entries, encode_entries,
    managed_fields_of, store_entries, without_managed_fields,
};
use super::walk::{Comparison, compare, merge, prune, to_set, validate_value};

/// The outcome of an apply: the new object (with `metadata.managedFields` updated) and whether
/// anything (object or ownership) changed, so the server can skip a no-op write.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyResult {
    pub object: Value,
    pub changed: bool,
}

/// Metadata the server owns: an apply never changes it.
const SERVER_METADATA: [&str; 8] = [
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
];

/// The part of the applied configuration this operation may change.
fn scoped_config(applied: &Value, scope: Scope) -> Value {
    let mut config = applied.clone();
    match scope {
        Scope::Main {
            exclude_status: true,
        } => {
            if let Value::Object(m) = &mut config {
                m.shift_remove("status");
            }
        }
        Scope::Status => {
            let mut m = Map::new();
            for k in ["apiVersion", "kind", "status"] {
                if let Some(v) = applied.get(k) {
                    m.insert(k.to_string(), v.clone());
                }
            }
            config = Value::Object(m);
        }
        _ => {}
    }
    if let Some(Value::Object(meta)) = config.get_mut("metadata") {
        for k in SERVER_METADATA {
            meta.shift_remove(k);
        }
    }
    config
}

/// Checks an applied configuration the way the real server does before merging: it must be an
/// object with apiVersion and kind, must not set managedFields, and every list-map item must
/// carry its keys with no duplicates. Errors are 422 with the server's wording.
pub fn validate_apply(applied: &Value, hints: &TypeHints) -> Result<(), PatchError> {
    let Value::Object(m) = applied else {
        return Err(PatchError::BadRequest(
            "error decoding YAML: the applied configuration is not an object".into(),
        ));
    };
    for k in ["apiVersion", "kind"] {
        if m.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(PatchError::BadRequest(format!(
                "failed to create typed patch object: {k} must be set"
            )));
        }
    }
    if managed_fields_of(applied).is_some_and(|v| !v.is_null()) {
        return Err(PatchError::BadRequest(
            "metadata.managedFields must be nil".into(),
        ));
    }
    let mut path = Vec::new();
    validate_value(applied, Some(&hints.root), &mut path)
        .map_err(|e| PatchError::Unprocessable(format!("failed to create typed patch object: {e}")))
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Server-side apply of `applied` by `manager`. `live == None` creates the object. `now` is the
/// RFC 3339 timestamp written into the applier's managedFields entry. Call `validate_apply`
/// first to reject malformed configurations with the server's messages.
///
/// As the real server does for the manager `kubectl` only: conflicts on fields whose live
/// values still match the client-side `last-applied-configuration` annotation are taken over
/// (upgrading from client-side apply), and an existing annotation is kept in sync with the
/// applied configuration.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    subresource: Option<&str>,
    hints: &TypeHints,
    now: &str,
) -> Result<ApplyResult, ApplyConflict> {
    let attempt = apply_core(live, applied, manager, force, subresource, hints, now);
    let mut result = match (attempt, live) {
        (Err(conflict), Some(live)) if manager == "kubectl" => {
            let Some(allowed) = allowed_by_last_applied(live, hints) else {
                return Err(conflict);
            };
            let remaining: Vec<ConflictCause> = conflict
                .causes
                .iter()
                .filter(|c| !allowed.iter().any(|a| a == &c.field))
                .cloned()
                .collect();
            if !remaining.is_empty() {
                let conflicts = remaining
                    .iter()
                    .map(|c| (c.manager.clone(), c.field.clone()))
                    .collect();
                return Err(ApplyConflict {
                    conflicts,
                    causes: remaining,
                });
            }
            apply_core(Some(live), applied, manager, true, subresource, hints, now)?
        }
        (attempt, _) => attempt?,
    };
    if manager == "kubectl" {
        sync_last_applied(&mut result, applied);
    }
    Ok(result)
}

fn last_applied_of(obj: &Value) -> Option<&str> {
    obj.get("metadata")?
        .get("annotations")?
        .get(LAST_APPLIED)?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// Paths (as conflict strings) the client-side annotation still vouches for: in the annotation
/// and unchanged in the live object.
fn allowed_by_last_applied(live: &Value, hints: &TypeHints) -> Option<Vec<String>> {
    let last: Value = serde_json::from_str(last_applied_of(live)?).ok()?;
    if api_version_of(&last) != api_version_of(live) {
        return None;
    }
    let root = Some(&hints.root);
    let mut set = FieldSet::new();
    to_set(&last, root, &mut Vec::new(), &mut set);
    let mut cmp = Comparison {
        builtin: hints.is_builtin(),
        ..Comparison::default()
    };
    let live_clean = without_managed_fields(live);
    compare(
        Some(&last),
        Some(&live_clean),
        root,
        &mut Vec::new(),
        &mut cmp,
    );
    let set = set
        .difference(&cmp.modified)
        .difference(&cmp.added)
        .difference(&cmp.removed);
    Some(set.paths().iter().map(|p| path_string(p)).collect())
}

/// Rewrites an existing, non-empty last-applied annotation from the applied configuration.
fn sync_last_applied(result: &mut ApplyResult, applied: &Value) {
    if last_applied_of(&result.object).is_none() {
        return;
    }
    let mut config = applied.clone();
    if let Some(Value::Object(ann)) = config
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
    {
        ann.shift_remove(LAST_APPLIED);
    }
    let text = format!("{}\n", canonical(&config));
    if let Some(Value::Object(ann)) = result
        .object
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        && ann.get(LAST_APPLIED).and_then(Value::as_str) != Some(text.as_str())
    {
        ann.insert(LAST_APPLIED.to_string(), Value::String(text));
        result.changed = true;
    }
}

fn apply_core(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    subresource: Option<&str>,
    hints: &TypeHints,
    now: &str,
) -> Result<ApplyResult, ApplyConflict> {
    let subresource = subresource.filter(|s| !s.is_empty());
    let scope = Scope::new(subresource, hints);
    let root = Some(&hints.root);
    let api_version = {
        let v = api_version_of(applied);
        if v.is_empty() {
            live.map(api_version_of).unwrap_or_default()
        } else {
            v
        }
    };
    let config = scoped_config(applied, scope);
    let live_clean = live.map(without_managed_fields);
    let mut entries = live
        .map(|l| decode_entries(managed_fields_of(l)))
        .unwrap_or_default();
    let original_entries = entries.clone();

    if let (Some(l), true) = (&live_clean, entries.is_empty()) {
        // Objects created without field tracking: every field (status included) belongs to
        // "before-first-apply"; only server-owned metadata is left out.
        let mut set = FieldSet::new();
        to_set(l, root, &mut Vec::new(), &mut set);
        let set = Scope::Other.filter(&set);
        if !set.is_empty() {
            entries.push(Entry {
                manager: "before-first-apply".into(),
                operation: "Update".into(),
                api_version: api_version_of(l),
                time: Some(now.to_string()),
                subresource: None,
                set,
            });
        }
    }

    let mut raw_new_set = FieldSet::new();
    to_set(&config, root, &mut Vec::new(), &mut raw_new_set);
    let new_set = scope.filter(&raw_new_set);

    let me = |e: &Entry| e.is(manager, "Apply", &api_version, subresource);
    let last_set = entries.iter().find(|e| me(e)).map(|e| e.set.clone());

    let base = live_clean
        .clone()
        .unwrap_or_else(|| Value::Object(Map::new()));
    let mut merged = merge(&base, &config, root);

    if let Some(last) = &last_set {
        // The unfiltered set still holds metadata.name etc., which keeps `metadata` alive.
        let mut keep = raw_new_set.clone();
        for e in entries.iter().filter(|e| !me(e)) {
            keep = keep.union(&e.set);
        }
        prune(&mut merged, last, Some(&keep), root);
    }

    let mut cmp = Comparison {
        builtin: hints.is_builtin(),
        ..Comparison::default()
    };
    compare(
        live_clean.as_ref(),
        Some(&merged),
        root,
        &mut Vec::new(),
        &mut cmp,
    );
    let changed_fields = scope.filter(&cmp.modified.union(&cmp.added));
    let removed = cmp.removed;

    let mut causes = Vec::new();
    for e in entries.iter_mut().filter(|e| !me(e)) {
        let clash = e.set.intersection(&changed_fields);
        if clash.is_empty() {
            continue;
        }
        for path in clash.paths() {
            causes.push(ConflictCause {
                manager: e.manager.clone(),
                operation: e.operation.clone(),
                api_version: e.api_version.clone(),
                subresource: e.subresource.clone(),
                field: path_string(&path),
            });
        }
        e.set = e.set.difference(&clash);
    }
    if !force && !causes.is_empty() {
        // Grouped by manager; within a manager, field paths stay in path order.
        causes.sort_by_key(ConflictCause::printed_manager);
        let conflicts = causes
            .iter()
            .map(|c| (c.manager.clone(), c.field.clone()))
            .collect();
        return Err(ApplyConflict { conflicts, causes });
    }

    let object_changed = live_clean.as_ref() != Some(&merged);
    // Removed fields leave the other managers' sets; the applier keeps exactly what it applied
    // (an applied `null` stays owned).
    for e in entries.iter_mut().filter(|e| !me(e)) {
        e.set = e.set.difference(&removed);
    }
    match entries.iter_mut().find(|e| me(e)) {
        Some(e) => {
            if object_changed {
                e.time = Some(now.to_string());
            }
            e.set = new_set;
            e.api_version = api_version;
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version,
            time: Some(now.to_string()),
            subresource: subresource.filter(|s| !s.is_empty()).map(String::from),
            set: new_set,
        }),
    }
    entries.retain(|e| !e.set.is_empty());

    let mut object = merged;
    let before = encode_entries(original_entries);
    store_entries(&mut object, entries);
    let after = managed_fields_of(&object)
        .cloned()
        .unwrap_or(Value::Array(Vec::new()));
    let changed = object_changed || before != after;
    Ok(ApplyResult { object, changed })
}

/// Updates `new.metadata.managedFields` for a non-apply write (create, update, patch) by
/// `manager`: the writer gains the fields it added or changed, other managers lose the fields
/// it changed, and removed fields leave every set. A client may replace managedFields by
/// sending a different non-empty list (`[{}]` clears them), as with the real server.
pub fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    operation: &str,
    subresource: Option<&str>,
    hints: &TypeHints,
    now: &str,
) {
    let subresource = subresource.filter(|s| !s.is_empty());
    let scope = Scope::new(subresource, hints);
    let root = Some(&hints.root);
    let api_version = api_version_of(new);
    let sent = managed_fields_of(new).cloned();
    let old_mf = old.and_then(managed_fields_of).cloned();
    let client_set_fields = subresource.is_none()
        && sent
            .as_ref()
            .is_some_and(|s| s.as_array().is_some_and(|a| !a.is_empty()))
        && sent != old_mf;
    let mut entries = if client_set_fields {
        decode_entries(sent.as_ref())
    } else {
        decode_entries(old_mf.as_ref())
    };

    let old_clean = old
        .map(without_managed_fields)
        .unwrap_or_else(|| Value::Object(Map::new()));
    let new_clean = without_managed_fields(new);
    let mut cmp = Comparison {
        builtin: hints.is_builtin(),
        ..Comparison::default()
    };
    compare(
        Some(&old_clean),
        Some(&new_clean),
        root,
        &mut Vec::new(),
        &mut cmp,
    );
    let modified = scope.filter(&cmp.modified);
    let added = scope.filter(&cmp.added);
    let removed = cmp.removed;

    let me = |e: &Entry| e.is(manager, operation, &api_version, subresource);
    let gained = modified.union(&added);
    for e in entries.iter_mut() {
        if !me(e) {
            e.set = e.set.difference(&gained);
        }
        e.set = e.set.difference(&removed);
    }
    match entries.iter_mut().find(|e| me(e)) {
        Some(e) => {
            let updated = e.set.union(&gained);
            if !gained.is_empty() || updated != e.set {
                e.time = Some(now.to_string());
            }
            e.set = updated;
        }
        None if !gained.is_empty() => entries.push(Entry {
            manager: manager.to_string(),
            operation: operation.to_string(),
            api_version,
            time: Some(now.to_string()),
            subresource: subresource.filter(|s| !s.is_empty()).map(String::from),
            set: gained,
        }),
        None => {}
    }
    cap_update_managers(&mut entries);
    store_entries(new, entries);
}

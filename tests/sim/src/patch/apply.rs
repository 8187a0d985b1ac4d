//! Server-side apply and Update-operation ownership: merging an applied configuration into the
//! live object, `metadata.managedFields` updates, conflicts and `force`, removal of fields a
//! manager stops applying, and kubectl's client-side to server-side apply upgrade.

use serde_json::{Map, Value};

use super::PatchError;
use super::conflict::{ApplyConflict, ConflictCause};
use super::fieldset::{FieldSet, canonical, path_string};
use super::hints::TypeHints;
#[cfg(debug_assertions)]
use super::managed::same_encoding;
use super::managed::{
    Entry, Scope, api_version_of, cap_update_managers, decode_entries, decode_entries_owned,
    equal_without_managed_fields, managed_fields_of, remove_managed_fields, store_entries,
    take_managed_fields, without_managed_fields,
};
use super::walk::{
    Comparison, child, compare, field_set, fresh_owned, map_is_atomic, merge, prune, validate_value,
};

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
    let set = field_set(&last, root);
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
    let raw_new_set = field_set(&config, root);
    // The live object without its managedFields, merged with the configuration (which never
    // carries managedFields: `scoped_config` strips them). Through non-atomic maps the merge
    // copies the live managedFields as they are: they are decoded from that copy, so entries
    // the apply leaves alone are written back without re-encoding.
    let (mut merged, mut entries) = match live {
        Some(l) => {
            let mut m = merge(l, &config, root);
            let copied = remove_managed_fields(&mut m);
            let entries = if copied.is_some()
                && !map_is_atomic(root)
                && !map_is_atomic(child(root, "metadata"))
            {
                decode_entries_owned(copied)
            } else {
                decode_entries(managed_fields_of(l))
            };
            (m, entries)
        }
        // A create: the configuration itself, nulls dropped (no live side to merge with).
        None => (fresh_owned(config, root), Vec::new()),
    };
    // Whether the entries' encoding changes is tracked as they change (copying every entry to
    // compare afterwards cost more than the apply's own work); debug builds check it.
    #[cfg(debug_assertions)]
    let original_entries: Vec<Entry> = entries.iter().map(Entry::without_raw).collect();
    let mut entries_changed = false;

    if let (Some(l), true) = (live, entries.is_empty()) {
        // Objects created without field tracking: every field (status included) belongs to
        // "before-first-apply"; only server-owned metadata is left out.
        let set = Scope::Other.filter_owned(field_set(&without_managed_fields(l), root));
        if !set.is_empty() {
            entries_changed = true;
            entries.push(Entry {
                manager: "before-first-apply".into(),
                operation: "Update".into(),
                api_version: api_version_of(l),
                time: Some(now.to_string()),
                subresource: None,
                set,
                raw: None,
            });
        }
    }

    let me = |e: &Entry| e.is(manager, "Apply", &api_version, subresource);
    let new_set = match entries.iter().find(|e| me(e)) {
        Some(last) => {
            let new_set = scope.filter(&raw_new_set);
            // The unfiltered set still holds metadata.name etc., which keeps `metadata` alive.
            let mut keep = raw_new_set;
            for e in entries.iter().filter(|e| !me(e)) {
                keep.union_with(&e.set);
            }
            prune(&mut merged, &last.set, Some(&keep), root);
            new_set
        }
        None => scope.filter_owned(raw_new_set),
    };

    // With no live object there is nobody to conflict with and nothing to remove: the
    // comparison (every field of the object "added") would be thrown away.
    let (changed_fields, removed) = match live {
        Some(_) => {
            let cmp = compare_objects(live, &merged, hints);
            let mut changed_fields = cmp.modified;
            changed_fields.union_with(&cmp.added);
            (scope.filter_owned(changed_fields), cmp.removed)
        }
        None => (FieldSet::new(), FieldSet::new()),
    };

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
        entries_changed |= e.set.subtract(&clash);
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

    let object_changed = live.is_none_or(|l| !equal_without_managed_fields(l, &merged));
    // Removed fields leave the other managers' sets; the applier keeps exactly what it applied
    // (an applied `null` stays owned).
    for e in entries.iter_mut().filter(|e| !me(e)) {
        entries_changed |= e.set.subtract(&removed);
    }
    match entries.iter_mut().find(|e| me(e)) {
        Some(e) => {
            if object_changed {
                e.time = Some(now.to_string());
            }
            // An entry with an empty set is not written, whatever its apiVersion.
            entries_changed |=
                e.set != new_set || (e.api_version != api_version && !new_set.is_empty());
            e.set = new_set;
            e.api_version = api_version;
        }
        None => {
            entries_changed |= !new_set.is_empty();
            entries.push(Entry {
                manager: manager.to_string(),
                operation: "Apply".into(),
                api_version,
                time: Some(now.to_string()),
                subresource: subresource.filter(|s| !s.is_empty()).map(String::from),
                set: new_set,
                raw: None,
            })
        }
    }
    entries.retain(|e| !e.set.is_empty());

    // (A changed object also gives the applier's entry a new time.)
    let changed = object_changed || entries_changed;
    #[cfg(debug_assertions)]
    debug_assert_eq!(
        changed,
        object_changed || !same_encoding(&original_entries, &entries),
        "tracked change of the managedFields entries"
    );
    let mut object = merged;
    store_entries(&mut object, entries);
    Ok(ApplyResult { object, changed })
}

/// Compares `old` (`None`: no object) with `new` as if neither had `metadata.managedFields`.
fn compare_objects(old: Option<&Value>, new: &Value, hints: &TypeHints) -> Comparison {
    let root = Some(&hints.root);
    let mut cmp = Comparison {
        builtin: hints.is_builtin(),
        skip_managed_fields: true,
        ..Comparison::default()
    };
    if map_is_atomic(root) || map_is_atomic(child(root, "metadata")) {
        // An atomic map is compared whole: compare copies without the bookkeeping.
        cmp.skip_managed_fields = false;
        let old = old.map(without_managed_fields);
        let new = without_managed_fields(new);
        compare(old.as_ref(), Some(&new), root, &mut Vec::new(), &mut cmp);
    } else {
        compare(old, Some(new), root, &mut Vec::new(), &mut cmp);
    }
    cmp
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
    let api_version = api_version_of(new);
    let old_mf = old.and_then(managed_fields_of);
    let sent = managed_fields_of(new);
    let client_set_fields = subresource.is_none()
        && sent.is_some_and(|s| s.as_array().is_some_and(|a| !a.is_empty()))
        && sent != old_mf;
    let mut entries = if client_set_fields || sent == old_mf {
        // `new` carries the list the entries come from (usually the old one, copied): decoded
        // from there, entries the write leaves alone are written back without re-encoding.
        decode_entries_owned(take_managed_fields(new))
    } else {
        decode_entries(old_mf)
    };

    let empty = Value::Object(Map::new());
    let cmp = compare_objects(Some(old.unwrap_or(&empty)), new, hints);
    let mut gained = cmp.modified;
    gained.union_with(&cmp.added);
    let gained = scope.filter_owned(gained);
    let removed = cmp.removed;

    let me = |e: &Entry| e.is(manager, operation, &api_version, subresource);
    for e in entries.iter_mut() {
        if !me(e) {
            e.set.subtract(&gained);
        }
        e.set.subtract(&removed);
    }
    match entries.iter_mut().find(|e| me(e)) {
        Some(e) if !gained.is_empty() => {
            e.time = Some(now.to_string());
            e.set.union_with(&gained);
        }
        Some(_) => {}
        None if !gained.is_empty() => entries.push(Entry {
            manager: manager.to_string(),
            operation: operation.to_string(),
            api_version,
            time: Some(now.to_string()),
            subresource: subresource.filter(|s| !s.is_empty()).map(String::from),
            set: gained,
            raw: None,
        }),
        None => {}
    }
    cap_update_managers(&mut entries);
    store_entries(new, entries);
}

//! `metadata.managedFields` bookkeeping: entries (manager, operation, apiVersion, time,
//! subresource, field set), their wire encoding and ordering, the fields no manager may own,
//! and the cap on Update entries.

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, PathElement};
use super::hints::TypeHints;

/// Which part of the object an operation manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    /// The main resource; `status` excluded when the kind has a status subresource.
    Main { exclude_status: bool },
    /// The status subresource: only `status`.
    Status,
    /// Any other subresource: no filtering.
    Other,
}

impl Scope {
    pub(super) fn new(subresource: Option<&str>, hints: &TypeHints) -> Scope {
        match subresource {
            None | Some("") => Scope::Main {
                exclude_status: hints.has_status_subresource(),
            },
            Some("status") => Scope::Status,
            Some(_) => Scope::Other,
        }
    }

    /// Drops paths the operation never manages (server-owned metadata, reset fields).
    pub(super) fn filter(self, set: &FieldSet) -> FieldSet {
        let mut out = set.clone();
        for top in ["apiVersion", "kind"] {
            out.remove_subtree(&[field(top)]);
        }
        for meta in STRIPPED_METADATA {
            out.remove_subtree(&[field("metadata"), field(meta)]);
        }
        out.unmark(&[field("metadata")]);
        match self {
            Scope::Main {
                exclude_status: true,
            } => out.remove_subtree(&[field("status")]),
            Scope::Status => {
                let status = out.descend(&[field("status")]).cloned();
                out = FieldSet::new();
                if let Some(status) = status {
                    out = out.union(&prefixed(&status, field("status")));
                }
            }
            _ => {}
        }
        out
    }
}

/// Metadata fields the server owns; never part of any manager's set.
pub(super) const STRIPPED_METADATA: [&str; 11] = [
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

pub(super) fn field(name: &str) -> PathElement {
    PathElement::Field(name.to_string())
}

/// `set` re-rooted under `pe`.
pub(super) fn prefixed(set: &FieldSet, pe: PathElement) -> FieldSet {
    let mut out = FieldSet::new();
    for path in set.paths() {
        let mut full = vec![pe.clone()];
        full.extend(path);
        out.insert(&full);
    }
    out
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Entry {
    pub(super) manager: String,
    pub(super) operation: String,
    pub(super) api_version: String,
    pub(super) time: Option<String>,
    pub(super) subresource: Option<String>,
    pub(super) set: FieldSet,
}

impl Entry {
    /// Apply entries are identified without their apiVersion; Update entries with it.
    pub(super) fn is(
        &self,
        manager: &str,
        operation: &str,
        api_version: &str,
        subresource: Option<&str>,
    ) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
            && (operation == "Apply" || self.api_version == api_version)
    }

    pub(super) fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), Value::String(self.manager.clone()));
        m.insert("operation".into(), Value::String(self.operation.clone()));
        m.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        if let Some(t) = &self.time {
            m.insert("time".into(), Value::String(t.clone()));
        }
        m.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        m.insert("fieldsV1".into(), self.set.to_fields_v1());
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), Value::String(s.clone()));
        }
        Value::Object(m)
    }
}

pub(super) fn decode_entries(list: Option<&Value>) -> Vec<Entry> {
    let Some(Value::Array(items)) = list else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|e| {
            let manager = e.get("manager")?.as_str()?.to_string();
            let set = e
                .get("fieldsV1")
                .and_then(|f| FieldSet::from_fields_v1(f).ok())
                .unwrap_or_default();
            Some(Entry {
                manager,
                operation: e
                    .get("operation")
                    .and_then(Value::as_str)
                    .unwrap_or("Update")
                    .into(),
                api_version: e
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .into(),
                time: e.get("time").and_then(Value::as_str).map(String::from),
                subresource: e
                    .get("subresource")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
                set,
            })
        })
        .collect()
}

/// Encodes entries sorted as the API server sorts them: operation, time, manager, apiVersion,
/// subresource.
pub(super) fn encode_entries(mut entries: Vec<Entry>) -> Value {
    entries.retain(|e| !e.set.is_empty());
    entries.sort_by(|a, b| {
        (
            &a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                &b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    Value::Array(entries.iter().map(Entry::to_json).collect())
}

pub(super) fn managed_fields_of(obj: &Value) -> Option<&Value> {
    obj.get("metadata").and_then(|m| m.get("managedFields"))
}

pub(super) fn without_managed_fields(obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(Value::Object(meta)) = out.get_mut("metadata") {
        meta.shift_remove("managedFields");
    }
    out
}

/// Writes entries into `obj.metadata.managedFields` (removing the key when there are none).
pub(super) fn store_entries(obj: &mut Value, entries: Vec<Entry>) {
    let encoded = encode_entries(entries);
    let Value::Object(root) = obj else {
        return;
    };
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(meta) = meta else {
        return;
    };
    if encoded.as_array().is_some_and(Vec::is_empty) {
        meta.shift_remove("managedFields");
    } else {
        meta.insert("managedFields".into(), encoded);
    }
}

pub(super) fn api_version_of(obj: &Value) -> String {
    obj.get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// Most Update entries the real server keeps; older ones merge into per-version
/// `ancient-changes` entries.
pub(super) const MAX_UPDATE_MANAGERS: usize = 10;
pub(super) const ANCIENT_CHANGES: &str = "ancient-changes";

/// Merges the oldest Update entries into `ancient-changes` buckets (one per apiVersion) until
/// at most `MAX_UPDATE_MANAGERS` Update entries remain. Apply entries are never capped.
pub(super) fn cap_update_managers(entries: &mut Vec<Entry>) {
    let mut updaters: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].operation != "Apply")
        .collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    let sort_key = |e: &Entry| {
        (
            e.time.clone().unwrap_or_default(),
            e.manager.clone(),
            e.api_version.clone(),
            e.subresource.clone(),
        )
    };
    updaters.sort_by_key(|&i| sort_key(&entries[i]));
    let mut slots: Vec<Option<Entry>> = entries.drain(..).map(Some).collect();
    let mut first_for_version: Vec<(String, usize)> = Vec::new();
    let mut remaining = updaters.len();
    for &i in &updaters {
        if remaining <= MAX_UPDATE_MANAGERS {
            break;
        }
        let Some(version) = slots[i].as_ref().map(|e| e.api_version.clone()) else {
            continue;
        };
        let Some(&(_, first)) = first_for_version.iter().find(|(v, _)| *v == version) else {
            first_for_version.push((version, i));
            continue;
        };
        let is_bucket = |e: &Entry| {
            e.manager == ANCIENT_CHANGES
                && e.operation == "Update"
                && e.api_version == version
                && e.subresource.is_none()
        };
        let bucket = match slots.iter().position(|e| e.as_ref().is_some_and(is_bucket)) {
            Some(b) => b,
            None => {
                if let Some(e) = slots[first].as_mut() {
                    e.manager = ANCIENT_CHANGES.to_string();
                    e.operation = "Update".to_string();
                    e.subresource = None;
                }
                first
            }
        };
        if bucket == i {
            continue;
        }
        if let Some(merged) = slots[i].take() {
            if let Some(b) = slots[bucket].as_mut() {
                b.set = b.set.union(&merged.set);
                b.time = merged.time;
            }
            remaining -= 1;
        }
    }
    entries.extend(slots.into_iter().flatten());
}

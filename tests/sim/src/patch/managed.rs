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
        self.filter_owned(set.clone())
    }

    /// `filter` on a set the caller gives up (no copy).
    pub(super) fn filter_owned(self, mut out: FieldSet) -> FieldSet {
        if self == Scope::Status {
            let mut only = FieldSet::new();
            if let Some(status) = out.take_child(&field("status")) {
                only.put_child(field("status"), status);
            }
            return only;
        }
        let exclude_status = self
            == Scope::Main {
                exclude_status: true,
            };
        out.retain_children(|pe| match pe {
            PathElement::Field(name) => {
                !(name == "apiVersion" || name == "kind" || (exclude_status && name == "status"))
            }
            _ => true,
        });
        let meta = field("metadata");
        if let Some(mut m) = out.take_child(&meta) {
            m.retain_children(|pe| match pe {
                PathElement::Field(name) => !STRIPPED_METADATA.contains(&name.as_str()),
                _ => true,
            });
            m.unmark(&[]);
            out.put_child(meta, m);
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

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) manager: String,
    pub(super) operation: String,
    pub(super) api_version: String,
    pub(super) time: Option<String>,
    pub(super) subresource: Option<String>,
    pub(super) set: FieldSet,
    /// The wire entry this was decoded from (when the caller gave it up): written back as it is
    /// when it still reads exactly as the entry would encode (see `into_json`).
    pub(super) raw: Option<Value>,
}

/// Entries compare by content, wherever they were decoded from.
impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.sort_key() == other.sort_key() && self.set == other.set
    }
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

    /// The order of entries in `metadata.managedFields`.
    #[allow(clippy::type_complexity)]
    fn sort_key(&self) -> (&String, &Option<String>, &String, &String, &Option<String>) {
        (
            &self.operation,
            &self.time,
            &self.manager,
            &self.api_version,
            &self.subresource,
        )
    }

    /// A copy without the wire form (for comparing contents).
    #[cfg(debug_assertions)]
    pub(super) fn without_raw(&self) -> Entry {
        Entry {
            manager: self.manager.clone(),
            operation: self.operation.clone(),
            api_version: self.api_version.clone(),
            time: self.time.clone(),
            subresource: self.subresource.clone(),
            set: self.set.clone(),
            raw: None,
        }
    }

    /// The wire entry: the one it was decoded from when that reads exactly as `to_json` would
    /// write it (same keys in the same order, same values), else a fresh encoding.
    pub(super) fn into_json(mut self) -> Value {
        match self.raw.take() {
            Some(raw) if self.encodes_as(&raw) => raw,
            _ => self.to_json(),
        }
    }

    /// Whether `to_json()` equals `raw`, key order included (a walk, no allocation).
    fn encodes_as(&self, raw: &Value) -> bool {
        fn next_str(it: &mut serde_json::map::Iter<'_>, key: &str, value: &str) -> bool {
            matches!(it.next(), Some((k, Value::String(v))) if k == key && v == value)
        }
        let Value::Object(m) = raw else {
            return false;
        };
        let mut it = m.iter();
        next_str(&mut it, "manager", &self.manager)
            && next_str(&mut it, "operation", &self.operation)
            && next_str(&mut it, "apiVersion", &self.api_version)
            && self
                .time
                .as_deref()
                .is_none_or(|t| next_str(&mut it, "time", t))
            && next_str(&mut it, "fieldsType", "FieldsV1")
            && matches!(it.next(), Some((k, f)) if k == "fieldsV1" && self.set.encodes_as(f))
            && self
                .subresource
                .as_deref()
                .is_none_or(|s| next_str(&mut it, "subresource", s))
            && it.next().is_none()
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
    items.iter().filter_map(decode_entry).collect()
}

/// `decode_entries` of a list the caller gives up: each entry keeps its wire form, so an entry
/// the write leaves alone is stored again without re-encoding it.
pub(super) fn decode_entries_owned(list: Option<Value>) -> Vec<Entry> {
    let Some(Value::Array(items)) = list else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let mut e = decode_entry(&item)?;
            e.raw = Some(item);
            Some(e)
        })
        .collect()
}

fn decode_entry(e: &Value) -> Option<Entry> {
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
        raw: None,
    })
}

/// Encodes entries sorted as the API server sorts them: operation, time, manager, apiVersion,
/// subresource.
pub(super) fn encode_entries(mut entries: Vec<Entry>) -> Value {
    entries.retain(|e| !e.set.is_empty());
    entries.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    Value::Array(entries.into_iter().map(Entry::into_json).collect())
}

pub(super) fn managed_fields_of(obj: &Value) -> Option<&Value> {
    obj.get("metadata").and_then(|m| m.get("managedFields"))
}

pub(super) fn without_managed_fields(obj: &Value) -> Value {
    let mut out = obj.clone();
    remove_managed_fields(&mut out);
    out
}

pub(super) fn remove_managed_fields(obj: &mut Value) -> Option<Value> {
    match obj.get_mut("metadata") {
        Some(Value::Object(meta)) => meta.shift_remove("managedFields"),
        _ => None,
    }
}

/// Takes `metadata.managedFields` out of `obj`, leaving `null` in its place (the key keeps its
/// position for the list written back).
pub(super) fn take_managed_fields(obj: &mut Value) -> Option<Value> {
    match obj.get_mut("metadata") {
        Some(Value::Object(meta)) => meta.get_mut("managedFields").map(Value::take),
        _ => None,
    }
}

/// `without_managed_fields(a) == without_managed_fields(b)`, without the copies.
pub(super) fn equal_without_managed_fields(a: &Value, b: &Value) -> bool {
    let (Value::Object(ao), Value::Object(bo)) = (a, b) else {
        return a == b;
    };
    if ao.len() != bo.len() {
        return false;
    }
    ao.iter().all(|(k, v)| {
        let Some(w) = bo.get(k) else { return false };
        match (k.as_str(), v, w) {
            ("metadata", Value::Object(am), Value::Object(bm)) => {
                let kept = |(k, _): &(&String, &Value)| k.as_str() != "managedFields";
                am.iter().filter(kept).count() == bm.iter().filter(kept).count()
                    && am
                        .iter()
                        .filter(kept)
                        .all(|(k, v)| bm.get(k).is_some_and(|w| v == w))
            }
            _ => v == w,
        }
    })
}

/// Whether two entry lists have the same `encode_entries` form (empty sets dropped, sorted),
/// without encoding them (debug builds check `apply_core`'s tracking of changes with it).
#[cfg(debug_assertions)]
pub(super) fn same_encoding(a: &[Entry], b: &[Entry]) -> bool {
    sorted_entries(a) == sorted_entries(b)
}

#[cfg(debug_assertions)]
fn sorted_entries(entries: &[Entry]) -> Vec<&Entry> {
    let mut v: Vec<&Entry> = entries.iter().filter(|e| !e.set.is_empty()).collect();
    v.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    v
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
    let cap_key = |e: &Entry| {
        (
            e.time.clone().unwrap_or_default(),
            e.manager.clone(),
            e.api_version.clone(),
            e.subresource.clone(),
        )
    };
    updaters.sort_by_key(|&i| cap_key(&entries[i]));
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Decodes `wire` as a write that gave it up, and encodes it back.
    fn round_trip(wire: &Value) -> Value {
        encode_entries(decode_entries_owned(Some(wire.clone())))
    }

    /// The encoding from scratch (nothing reused).
    fn fresh(wire: &Value) -> Value {
        encode_entries(decode_entries(Some(wire)))
    }

    #[test]
    fn untouched_entries_are_written_back_only_when_they_read_as_encoded() {
        let canonical = json!([{"manager": "kubelet", "operation": "Update", "apiVersion": "v1",
            "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:status": {"f:conditions": {".": {}, "k:{\"type\":\"Ready\"}": {".": {}, "f:status": {}}}}},
            "subresource": "status"}]);
        assert_eq!(round_trip(&canonical).to_string(), canonical.to_string());
        // Each of these reads differently from its encoding (key order, a list-map key's own key
        // order, a `.` without children, an empty subresource, an unknown key): written back as
        // encoded, never as received. Compared as text, as `Value` equality ignores key order.
        for wire in [
            json!([{"operation": "Update", "manager": "m", "apiVersion": "v1", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:a": {}}}]),
            json!([{"manager": "m", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:list": {"k:{\"name\":\"x\",\"idx\":1}": {}}}}]),
            json!([{"manager": "m", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:a": {".": {}}}}]),
            json!([{"manager": "m", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:b": {}, "f:a": {}}}]),
            json!([{"manager": "m", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:a": {}}, "subresource": ""}]),
            json!([{"manager": "m", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:a": {}}, "extra": true}]),
        ] {
            let out = round_trip(&wire);
            assert_eq!(out.to_string(), fresh(&wire).to_string(), "{wire}");
            assert_ne!(out.to_string(), wire.to_string(), "{wire}");
        }
    }

    #[test]
    fn changed_entries_are_encoded_again() {
        let wire = json!([{"manager": "m", "operation": "Update", "apiVersion": "v1",
            "time": "t1", "fieldsType": "FieldsV1", "fieldsV1": {"f:a": {}, "f:b": {}}}]);
        let mut entries = decode_entries_owned(Some(wire.clone()));
        let mut b = FieldSet::new();
        b.insert(&[field("b")]);
        assert!(entries[0].set.subtract(&b));
        let out = encode_entries(entries);
        assert_eq!(out[0]["fieldsV1"], json!({"f:a": {}}));
        let mut entries = decode_entries_owned(Some(wire));
        entries[0].time = Some("t2".into());
        assert_eq!(encode_entries(entries)[0]["time"], "t2");
    }
}

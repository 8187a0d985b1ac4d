//! Server-side apply and Update-operation ownership: merging an applied configuration into the
//! live object per list type, `metadata.managedFields` bookkeeping, conflicts, `force`, and
//! removal of fields a manager stops applying.

use serde_json::{Map, Value, json};

use super::PatchError;
use super::fieldset::{FieldSet, PathElement, canonical, path_string};
use super::hints::{HintNode, ListType, TypeHints};
use super::json_patch::json_equal;

/// The outcome of an apply: the new object (with `metadata.managedFields` updated) and whether
/// anything (object or ownership) changed, so the server can skip a no-op write.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyResult {
    pub object: Value,
    pub changed: bool,
}

/// One conflicting field, with the owning manager's entry identity (for `Status.details.causes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictCause {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub subresource: Option<String>,
    /// Path like `.spec.replicas` or `.spec.template.spec.containers[name="x"].image`.
    pub field: String,
}

impl ConflictCause {
    /// The manager as the API server prints it: `"kubectl"`, or `"kubectl-edit" using apps/v1`
    /// for Update entries, with ` with subresource "status"` when relevant.
    pub fn printed_manager(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s = format!("{s} with subresource {sub:?}");
        }
        if self.operation == "Update" {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
}

/// Apply refused because other managers own fields the apply would change (HTTP 409).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct ApplyConflict {
    /// (manager name, field path) pairs, sorted.
    pub conflicts: Vec<(String, String)>,
    pub causes: Vec<ConflictCause>,
}

impl ApplyConflict {
    /// The `Status.message` the real server sends, e.g.
    /// `Apply failed with 1 conflict: conflict with "kubectl" using apps/v1: .spec.replicas`.
    pub fn message(&self) -> String {
        if let [only] = self.causes.as_slice() {
            return format!(
                "Apply failed with 1 conflict: conflict with {}: {}",
                only.printed_manager(),
                only.field
            );
        }
        let mut managers: Vec<String> = self.causes.iter().map(|c| c.printed_manager()).collect();
        managers.sort();
        managers.dedup();
        let mut lines = Vec::new();
        for m in &managers {
            lines.push(format!("conflicts with {m}:"));
            for c in self.causes.iter().filter(|c| &c.printed_manager() == m) {
                lines.push(format!("- {}", c.field));
            }
        }
        format!(
            "Apply failed with {} conflicts: {}",
            self.causes.len(),
            lines.join("\n")
        )
    }

    /// `Status.details.causes` entries (`reason: FieldManagerConflict`).
    pub fn status_causes(&self) -> Value {
        Value::Array(
            self.causes
                .iter()
                .map(|c| {
                    json!({
                        "reason": "FieldManagerConflict",
                        "message": format!("conflict with {}", c.printed_manager()),
                        "field": c.field,
                    })
                })
                .collect(),
        )
    }
}

/// Which part of the object an operation manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The main resource; `status` excluded when the kind has a status subresource.
    Main { exclude_status: bool },
    /// The status subresource: only `status`.
    Status,
    /// Any other subresource: no filtering.
    Other,
}

impl Scope {
    fn new(subresource: Option<&str>, hints: &TypeHints) -> Scope {
        match subresource {
            None | Some("") => Scope::Main {
                exclude_status: hints.has_status_subresource(),
            },
            Some("status") => Scope::Status,
            Some(_) => Scope::Other,
        }
    }

    /// Drops paths the operation never manages (server-owned metadata, reset fields).
    fn filter(self, set: &FieldSet) -> FieldSet {
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
const STRIPPED_METADATA: [&str; 11] = [
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

fn field(name: &str) -> PathElement {
    PathElement::Field(name.to_string())
}

/// `set` re-rooted under `pe`.
fn prefixed(set: &FieldSet, pe: PathElement) -> FieldSet {
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
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: Option<String>,
    set: FieldSet,
}

impl Entry {
    /// Apply entries are identified without their apiVersion; Update entries with it.
    fn is(
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

    fn to_json(&self) -> Value {
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

fn decode_entries(list: Option<&Value>) -> Vec<Entry> {
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
fn encode_entries(mut entries: Vec<Entry>) -> Value {
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

fn managed_fields_of(obj: &Value) -> Option<&Value> {
    obj.get("metadata").and_then(|m| m.get("managedFields"))
}

fn without_managed_fields(obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(Value::Object(meta)) = out.get_mut("metadata") {
        meta.shift_remove("managedFields");
    }
    out
}

/// Writes entries into `obj.metadata.managedFields` (removing the key when there are none).
fn store_entries(obj: &mut Value, entries: Vec<Entry>) {
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

fn api_version_of(obj: &Value) -> String {
    obj.get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Typed walks over JSON values.

fn child<'a>(node: Option<&'a HintNode>, name: &str) -> Option<&'a HintNode> {
    node.and_then(|n| n.child(name))
}

fn map_is_atomic(node: Option<&HintNode>) -> bool {
    node.is_some_and(|n| n.atomic_map)
}

fn granular_list(node: Option<&HintNode>) -> Option<&ListType> {
    node.and_then(|n| n.list.as_ref())
        .filter(|lt| !matches!(lt, ListType::Atomic))
}

/// The path element identifying a list item, or `None` when the item cannot be keyed.
fn item_pe(item: &Value, list_type: &ListType, node: Option<&HintNode>) -> Option<PathElement> {
    match list_type {
        ListType::Atomic => None,
        ListType::Set => match item {
            Value::Object(_) | Value::Array(_) => None,
            scalar => Some(PathElement::value(scalar)),
        },
        ListType::Map(keys) => {
            let obj = item.as_object()?;
            let mut pairs = Vec::new();
            for k in keys {
                let v = match obj.get(k) {
                    Some(v) => v.clone(),
                    None => node?
                        .key_defaults
                        .iter()
                        .find(|(name, _)| name == k)?
                        .1
                        .clone(),
                };
                pairs.push((k.clone(), v));
            }
            Some(PathElement::key(&pairs))
        }
    }
}

/// Path elements for every item, `None` if any item is unkeyable or duplicated.
fn item_pes(items: &[Value], lt: &ListType, node: Option<&HintNode>) -> Option<Vec<PathElement>> {
    let mut out: Vec<PathElement> = Vec::with_capacity(items.len());
    for item in items {
        let pe = item_pe(item, lt, node)?;
        if out.contains(&pe) {
            return None;
        }
        out.push(pe);
    }
    Some(out)
}

/// The set of fields an applied configuration specifies.
fn to_set(v: &Value, node: Option<&HintNode>, path: &mut Vec<PathElement>, out: &mut FieldSet) {
    match v {
        // Empty granular maps and lists own nothing (as the real typed walk).
        Value::Object(m) if !map_is_atomic(node) => {
            for (k, c) in m {
                path.push(field(k));
                to_set(c, child(node, k), path, out);
                path.pop();
            }
        }
        Value::Array(items) if granular_list(node).is_some() => {
            let pes = granular_list(node).and_then(|lt| item_pes(items, lt, node).map(|p| (lt, p)));
            let Some((lt, pes)) = pes else {
                out.insert(path);
                return;
            };
            for (item, pe) in items.iter().zip(pes) {
                path.push(pe);
                out.insert(path);
                if let (ListType::Map(_), Value::Object(m)) = (lt, item) {
                    for (k, c) in m {
                        path.push(field(k));
                        to_set(c, child(node, k), path, out);
                        path.pop();
                    }
                }
                path.pop();
            }
        }
        _ => out.insert(path),
    }
}

#[derive(Debug, Default)]
struct Comparison {
    added: FieldSet,
    removed: FieldSet,
    modified: FieldSet,
}

/// Whether `path` exists in the zero value of a built-in Go type (non-pointer structs such as
/// `spec`, `spec.template.spec`, `spec.strategy`, and the non-omitempty `containers` list). The
/// real server compares against that zero value, so these never count as newly added nodes.
fn zero_present(path: &[PathElement]) -> bool {
    const STRUCTS: [&str; 7] = [
        "metadata",
        "spec",
        "status",
        "template",
        "strategy",
        "updateStrategy",
        "jobTemplate",
    ];
    let names: Option<Vec<&str>> = path
        .iter()
        .map(|pe| match pe {
            PathElement::Field(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    let Some(names) = names else {
        return false;
    };
    match names.split_last() {
        Some((last, parents)) => {
            parents.iter().all(|n| STRUCTS.contains(n))
                && (STRUCTS.contains(last) || *last == "containers")
        }
        None => true,
    }
}

fn compare(
    l: Option<&Value>,
    r: Option<&Value>,
    node: Option<&HintNode>,
    path: &mut Vec<PathElement>,
    out: &mut Comparison,
) {
    if l.is_none() && r.is_none() {
        return;
    }
    let is_obj = |v: Option<&Value>| v.is_none_or(Value::is_object);
    if !map_is_atomic(node) && is_obj(l) && is_obj(r) {
        let empty = |v: Option<&Value>| v.and_then(Value::as_object).is_none_or(Map::is_empty);
        if !(empty(l) && empty(r)) {
            if l.is_none() {
                if !zero_present(path) {
                    out.added.insert(path);
                }
            } else if r.is_none() {
                out.removed.insert(path);
            }
            let lm = l.and_then(Value::as_object);
            let rm = r.and_then(Value::as_object);
            let mut keys: Vec<&String> = lm.map(|m| m.keys().collect()).unwrap_or_default();
            for k in rm.into_iter().flat_map(|m| m.keys()) {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
            for k in keys {
                path.push(field(k));
                compare(
                    lm.and_then(|m| m.get(k)),
                    rm.and_then(|m| m.get(k)),
                    child(node, k),
                    path,
                    out,
                );
                path.pop();
            }
            return;
        }
    }
    let is_arr = |v: Option<&Value>| v.is_none_or(Value::is_array);
    if let Some(lt) = granular_list(node).filter(|_| is_arr(l) && is_arr(r)) {
        let la: &[Value] = l
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let ra: &[Value] = r
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if let (Some(lp), Some(rp)) = (item_pes(la, lt, node), item_pes(ra, lt, node))
            && !(la.is_empty() && ra.is_empty())
        {
            if l.is_none() {
                if !zero_present(path) {
                    out.added.insert(path);
                }
            } else if r.is_none() {
                out.removed.insert(path);
            }
            let mut order: Vec<&PathElement> = lp.iter().collect();
            for pe in &rp {
                if !order.contains(&pe) {
                    order.push(pe);
                }
            }
            for pe in order {
                let li = lp.iter().position(|p| p == pe).map(|i| &la[i]);
                let ri = rp.iter().position(|p| p == pe).map(|i| &ra[i]);
                path.push(pe.clone());
                match (li, ri) {
                    (None, Some(_)) => out.added.insert(path),
                    (Some(_), None) => out.removed.insert(path),
                    _ => {}
                }
                if matches!(lt, ListType::Map(_)) {
                    compare(li, ri, node, path, out);
                }
                path.pop();
            }
            return;
        }
    }
    match (l, r) {
        (None, Some(_)) => out.added.insert(path),
        (Some(_), None) => out.removed.insert(path),
        (Some(a), Some(b)) if !json_equal(a, b) => out.modified.insert(path),
        _ => {}
    }
}

/// Merges an applied configuration into the live value.
fn merge(live: &Value, config: &Value, node: Option<&HintNode>) -> Value {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) if !map_is_atomic(node) => {
            let mut out = l.clone();
            for (k, cv) in c {
                if cv.is_null() {
                    out.shift_remove(k);
                    continue;
                }
                let merged = match l.get(k) {
                    Some(lv) => merge(lv, cv, child(node, k)),
                    None => fresh(cv, child(node, k)),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(c)) => match granular_list(node) {
            Some(lt) => merge_list(l, c, lt, node),
            None => fresh(config, node),
        },
        _ => fresh(config, node),
    }
}

/// A configured value with no live counterpart (nulls dropped).
fn fresh(config: &Value, node: Option<&HintNode>) -> Value {
    match config {
        Value::Object(_) if !map_is_atomic(node) => merge(&Value::Object(Map::new()), config, node),
        other => other.clone(),
    }
}

/// Merges list items by key (map) or value (set). Order follows the real merge: walk both
/// lists together, keep live-only items where they are, emit configured items in configured
/// order, and place each item present on both sides where the configuration puts it.
fn merge_list(live: &[Value], config: &[Value], lt: &ListType, node: Option<&HintNode>) -> Value {
    let (Some(lp), Some(cp)) = (item_pes(live, lt, node), item_pes(config, lt, node)) else {
        return Value::Array(config.iter().map(|c| fresh(c, node)).collect());
    };
    let live_pos = |pe: &PathElement| lp.iter().position(|p| p == pe);
    let in_config = |pe: &PathElement| cp.contains(pe);
    let merged_item = |li: Option<usize>, ci: usize| -> Value {
        match li {
            Some(i) if matches!(lt, ListType::Map(_)) => merge(&live[i], &config[ci], node),
            _ => fresh(&config[ci], node),
        }
    };
    let mut shared: std::collections::VecDeque<&PathElement> =
        cp.iter().filter(|pe| lp.contains(pe)).collect();
    let mut next_shared = shared.pop_front();
    let mut emitted: Vec<&PathElement> = Vec::new();
    let mut out = Vec::with_capacity(live.len().max(config.len()));
    let (mut li, mut ci) = (0, 0);
    while li < lp.len() || ci < cp.len() {
        if li < lp.len() && ci < cp.len() {
            if lp[li] == cp[ci] {
                out.push(merged_item(Some(li), ci));
                emitted.push(&cp[ci]);
                li += 1;
                ci += 1;
                next_shared = shared.pop_front();
                continue;
            }
            if in_config(&lp[li]) && next_shared.is_some_and(|s| s != &lp[li]) {
                // shared item, but another shared item is due first
                li += 1;
                continue;
            }
        }
        if li < lp.len() {
            if !in_config(&lp[li]) {
                out.push(live[li].clone());
                li += 1;
                continue;
            }
            if emitted.contains(&&lp[li]) {
                li += 1;
            }
        }
        if ci < cp.len() {
            let pe = &cp[ci];
            emitted.push(pe);
            out.push(merged_item(live_pos(pe), ci));
            ci += 1;
            if next_shared == Some(pe) {
                next_shared = shared.pop_front();
            }
        }
    }
    Value::Array(out)
}

/// Removes from `obj` what the applier owned last time (`last`) and nobody owns now (`keep`,
/// which includes the applier's new configuration), as the real updater does: a named field
/// counts as owned when anything below it is; a list item only when it is owned as an item.
/// A removed path goes with everything below it.
fn prune(obj: &mut Value, last: &FieldSet, keep: Option<&FieldSet>, node: Option<&HintNode>) {
    for (pe, sub) in last.children() {
        let keep_sub = keep.and_then(|k| k.child(pe));
        let is_field = matches!(pe, PathElement::Field(_));
        let owned_before = sub.is_member() || is_field;
        let kept = keep_sub.is_some_and(|k| k.is_member() || (is_field && !k.is_empty()));
        if owned_before && !kept {
            remove_child(obj, pe, node);
            continue;
        }
        if sub.children().next().is_none() {
            continue;
        }
        let child_node = match pe {
            PathElement::Field(name) => child(node, name),
            _ => node,
        };
        if let Some(value) = child_mut(obj, pe, node) {
            prune(value, sub, keep_sub, child_node);
        }
    }
}

fn child_index(items: &[Value], pe: &PathElement, node: Option<&HintNode>) -> Option<usize> {
    let lt = node.and_then(|n| n.list.as_ref())?;
    items
        .iter()
        .position(|item| item_pe(item, lt, node).as_ref() == Some(pe))
}

fn child_mut<'a>(
    obj: &'a mut Value,
    pe: &PathElement,
    node: Option<&HintNode>,
) -> Option<&'a mut Value> {
    match (obj, pe) {
        (Value::Object(m), PathElement::Field(name)) => m.get_mut(name),
        (Value::Array(items), PathElement::Key(_) | PathElement::Value(_)) => {
            let i = child_index(items, pe, node)?;
            items.get_mut(i)
        }
        _ => None,
    }
}

fn remove_child(obj: &mut Value, pe: &PathElement, node: Option<&HintNode>) {
    match (obj, pe) {
        (Value::Object(m), PathElement::Field(name)) => {
            m.shift_remove(name);
        }
        (Value::Array(items), PathElement::Key(_) | PathElement::Value(_)) => {
            if let Some(i) = child_index(items, pe, node) {
                items.remove(i);
            }
        }
        _ => {}
    }
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

fn validate_value(
    v: &Value,
    node: Option<&HintNode>,
    path: &mut Vec<PathElement>,
) -> Result<(), String> {
    match v {
        Value::Object(m) if !map_is_atomic(node) => {
            for (k, c) in m {
                path.push(field(k));
                validate_value(c, child(node, k), path)?;
                path.pop();
            }
        }
        Value::Array(items) => {
            let Some(lt) = granular_list(node) else {
                return Ok(());
            };
            let mut seen: Vec<PathElement> = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let pe = match (lt, item) {
                    (ListType::Map(keys), Value::Object(obj)) => {
                        if let Some(k) = keys.iter().find(|k| {
                            !obj.contains_key(*k)
                                && !node
                                    .is_some_and(|n| n.key_defaults.iter().any(|(d, _)| d == *k))
                        }) {
                            return Err(format!(
                                "{}: element {i}: associative list with keys has an element that omits key field {k:?} (and doesn't have default value)",
                                path_string(path)
                            ));
                        }
                        item_pe(item, lt, node)
                    }
                    (ListType::Map(_), _) => {
                        return Err(format!(
                            "{}: element {i}: expected map, got {item}",
                            path_string(path)
                        ));
                    }
                    _ => item_pe(item, lt, node),
                };
                let Some(pe) = pe else {
                    return Err(format!(
                        "{}: element {i}: expected a scalar in a set",
                        path_string(path)
                    ));
                };
                if seen.contains(&pe) {
                    return Err(format!(
                        "{}: duplicate entries for key {}",
                        path_string(path),
                        pe.display()
                    ));
                }
                if let (ListType::Map(_), Value::Object(obj)) = (lt, item) {
                    path.push(pe.clone());
                    for (k, c) in obj {
                        path.push(field(k));
                        validate_value(c, child(node, k), path)?;
                        path.pop();
                    }
                    path.pop();
                }
                seen.push(pe);
            }
        }
        _ => {}
    }
    Ok(())
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
    let mut cmp = Comparison::default();
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
        // Objects created without field tracking: everything belongs to "before-first-apply".
        let mut set = FieldSet::new();
        to_set(l, root, &mut Vec::new(), &mut set);
        let set = scope.filter(&set);
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

    let mut cmp = Comparison::default();
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
    let mut cmp = Comparison::default();
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

/// Most Update entries the real server keeps; older ones merge into per-version
/// `ancient-changes` entries.
const MAX_UPDATE_MANAGERS: usize = 10;
const ANCIENT_CHANGES: &str = "ancient-changes";

/// Merges the oldest Update entries into `ancient-changes` buckets (one per apiVersion) until
/// at most `MAX_UPDATE_MANAGERS` Update entries remain. Apply entries are never capped.
fn cap_update_managers(entries: &mut Vec<Entry>) {
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

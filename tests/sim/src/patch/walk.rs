//! Typed walks over JSON objects guided by `TypeHints`, as structured-merge-diff does them: the
//! field set of a value, the comparison of two values (added/removed/modified), the apply merge
//! per list type, pruning of fields a manager gave up, and applied-configuration validation.

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, PathElement, path_string};
use super::hints::{HintNode, ListType};
use super::json_patch::json_equal;
use super::managed::field;

pub(super) fn child<'a>(node: Option<&'a HintNode>, name: &str) -> Option<&'a HintNode> {
    node.and_then(|n| n.child(name))
}

pub(super) fn map_is_atomic(node: Option<&HintNode>) -> bool {
    node.is_some_and(|n| n.atomic_map)
}

pub(super) fn granular_list(node: Option<&HintNode>) -> Option<&ListType> {
    node.and_then(|n| n.list.as_ref())
        .filter(|lt| !matches!(lt, ListType::Atomic))
}

/// The path element identifying a list item, or `None` when the item cannot be keyed.
pub(super) fn item_pe(
    item: &Value,
    list_type: &ListType,
    node: Option<&HintNode>,
) -> Option<PathElement> {
    match list_type {
        ListType::Atomic => None,
        ListType::Set => match item {
            Value::Object(_) | Value::Array(_) => None,
            scalar => Some(PathElement::value(scalar)),
        },
        ListType::Map(keys) => {
            let obj = item.as_object()?;
            let mut pairs = Vec::with_capacity(keys.len());
            for k in keys {
                let v = match obj.get(k) {
                    Some(v) => v,
                    None => &node?.key_defaults.iter().find(|(name, _)| name == k)?.1,
                };
                pairs.push((k.as_str(), v));
            }
            Some(PathElement::key_of(pairs))
        }
    }
}

/// Path elements for every item, `None` if any item is unkeyable or duplicated.
pub(super) fn item_pes(
    items: &[Value],
    lt: &ListType,
    node: Option<&HintNode>,
) -> Option<Vec<PathElement>> {
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

/// Items grouped by path element in first-seen order (duplicates allowed); `None` if any item
/// cannot be keyed.
pub(super) fn group_items<'v>(
    items: &'v [Value],
    lt: &ListType,
    node: Option<&HintNode>,
) -> Option<Vec<(PathElement, Vec<&'v Value>)>> {
    let mut groups: Vec<(PathElement, Vec<&'v Value>)> = Vec::new();
    for item in items {
        let pe = item_pe(item, lt, node)?;
        match groups.iter_mut().find(|(p, _)| *p == pe) {
            Some((_, members)) => members.push(item),
            None => groups.push((pe, vec![item])),
        }
    }
    Some(groups)
}

/// The set of fields an applied configuration specifies, built bottom-up (each node once, no
/// walk from the root per path): the same set as `to_set` from the root.
pub(super) fn field_set(v: &Value, node: Option<&HintNode>) -> FieldSet {
    match v {
        // Empty granular maps and lists own nothing (as the real typed walk).
        Value::Object(m) if !map_is_atomic(node) => fields_of(m, node),
        Value::Array(items) if granular_list(node).is_some() => {
            let groups =
                granular_list(node).and_then(|lt| group_items(items, lt, node).map(|g| (lt, g)));
            let Some((lt, groups)) = groups else {
                return FieldSet::leaf();
            };
            let mut out = FieldSet::new();
            for (pe, members) in groups {
                // a duplicated key is owned as a unit, without its fields
                let mut item = match (lt, members.as_slice()) {
                    (ListType::Map(_), [Value::Object(m)]) => fields_of(m, node),
                    _ => FieldSet::new(),
                };
                item.mark();
                out.put_child(pe, item);
            }
            out
        }
        _ => FieldSet::leaf(),
    }
}

/// `field_set` of each field of a map (or a list-map item, whose fields' hints are the list's).
fn fields_of(m: &Map<String, Value>, node: Option<&HintNode>) -> FieldSet {
    let mut out = FieldSet::new();
    for (k, c) in m {
        out.put_child(field(k), field_set(c, child(node, k)));
    }
    out
}

/// The set of fields an applied configuration specifies, inserted path by path below `path`
/// (the reference `field_set` is checked against).
#[cfg(test)]
pub(super) fn to_set(
    v: &Value,
    node: Option<&HintNode>,
    path: &mut Vec<PathElement>,
    out: &mut FieldSet,
) {
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
            let groups =
                granular_list(node).and_then(|lt| group_items(items, lt, node).map(|g| (lt, g)));
            let Some((lt, groups)) = groups else {
                out.insert(path);
                return;
            };
            for (pe, members) in groups {
                path.push(pe);
                out.insert(path);
                // a duplicated key is owned as a unit, without its fields
                let single = match members.as_slice() {
                    [only] => Some(*only),
                    _ => None,
                };
                if let (ListType::Map(_), Some(Value::Object(m))) = (lt, single) {
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
pub(super) struct Comparison {
    pub(super) added: FieldSet,
    pub(super) removed: FieldSet,
    pub(super) modified: FieldSet,
    /// Compare against the zero value of a built-in Go type (see `zero_present`); custom
    /// resources compare against an empty object.
    pub(super) builtin: bool,
    /// Compare as if `metadata.managedFields` were absent on both sides (the bookkeeping itself
    /// is never compared), without copying the objects to drop it.
    pub(super) skip_managed_fields: bool,
    /// Tests: insert one-sided subtrees path by path (the reference `one_sided` is checked
    /// against) instead of building them bottom-up.
    #[cfg(test)]
    pub(super) by_path: bool,
}

/// Whether `key` is `metadata.managedFields` of the root (`path` is the map holding it) and the
/// comparison leaves it out.
fn skipped(out: &Comparison, path: &[PathElement], key: &str) -> bool {
    out.skip_managed_fields
        && key == "managedFields"
        && matches!(path, [PathElement::Field(m)] if m == "metadata")
}

/// Whether `path` exists in the zero value of a built-in Go type (non-pointer structs such as
/// `spec`, `spec.template.spec`, `spec.strategy`, and the non-omitempty `containers` list). The
/// real server compares against that zero value, so these never count as newly added nodes.
pub(super) fn zero_present(path: &[PathElement]) -> bool {
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

pub(super) fn compare(
    l: Option<&Value>,
    r: Option<&Value>,
    node: Option<&HintNode>,
    path: &mut Vec<PathElement>,
    out: &mut Comparison,
) {
    #[cfg(test)]
    let by_path = out.by_path;
    #[cfg(not(test))]
    let by_path = false;
    match (l, r) {
        (None, None) => return,
        // Equal values have no added, removed or modified field anywhere below.
        (Some(a), Some(b)) if std::ptr::eq(a, b) || a == b => return,
        // A subtree on one side only is built bottom-up and grafted at `path` (inserting each
        // of its paths from the root cost a walk of the whole path per field).
        (None, Some(b)) if !by_path => {
            let sub = one_sided(b, node, path, true, out);
            out.added.graft(path, sub);
            return;
        }
        (Some(a), None) if !by_path => {
            let sub = one_sided(a, node, path, false, out);
            out.removed.graft(path, sub);
            return;
        }
        _ => {}
    }
    let is_obj = |v: Option<&Value>| v.is_none_or(Value::is_object);
    if !map_is_atomic(node) && is_obj(l) && is_obj(r) {
        let empty = |v: Option<&Value>| {
            v.and_then(Value::as_object)
                .is_none_or(|m| m.keys().all(|k| skipped(out, path, k)))
        };
        if !(empty(l) && empty(r)) {
            if l.is_none() {
                if !(out.builtin && zero_present(path)) {
                    out.added.insert(path);
                }
            } else if r.is_none() {
                out.removed.insert(path);
            }
            let lm = l.and_then(Value::as_object);
            let rm = r.and_then(Value::as_object);
            // The left keys in order, then the right keys the left lacks.
            let right_only = rm
                .into_iter()
                .flat_map(|m| m.keys())
                .filter(|k| lm.is_none_or(|lm| !lm.contains_key(*k)));
            let keys: Vec<&String> = lm
                .into_iter()
                .flat_map(|m| m.keys())
                .chain(right_only)
                .collect();
            for k in keys {
                if skipped(out, path, k) {
                    continue;
                }
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
        if let (Some(lg), Some(rg)) = (group_items(la, lt, node), group_items(ra, lt, node))
            && !(la.is_empty() && ra.is_empty())
        {
            if l.is_none() {
                if !(out.builtin && zero_present(path)) {
                    out.added.insert(path);
                }
            } else if r.is_none() {
                out.removed.insert(path);
            }
            let mut order: Vec<&PathElement> = lg.iter().map(|(pe, _)| pe).collect();
            for (pe, _) in &rg {
                if !order.contains(&pe) {
                    order.push(pe);
                }
            }
            let no_items: Vec<&Value> = Vec::new();
            for pe in order {
                let li = lg
                    .iter()
                    .find(|(p, _)| p == pe)
                    .map_or(&no_items, |(_, v)| v);
                let ri = rg
                    .iter()
                    .find(|(p, _)| p == pe)
                    .map_or(&no_items, |(_, v)| v);
                path.push(pe.clone());
                let descend = matches!(lt, ListType::Map(_));
                match (li.as_slice(), ri.as_slice()) {
                    // one item each side (or none): compare item by item
                    ([], [r0]) => {
                        out.added.insert(path);
                        if descend {
                            compare(None, Some(r0), node, path, out);
                        }
                    }
                    ([l0], []) => {
                        out.removed.insert(path);
                        if descend {
                            compare(Some(l0), None, node, path, out);
                        }
                    }
                    ([l0], [r0]) => {
                        if descend {
                            compare(Some(l0), Some(r0), node, path, out);
                        }
                    }
                    // duplicated keys are compared as one unit
                    (ls, rs) if ls.len() >= 2 && rs.len() >= 2 => {
                        let equal = ls.len() == rs.len()
                            && ls.iter().zip(rs.iter()).all(|(a, b)| json_equal(a, b));
                        if !equal {
                            out.modified.insert(path);
                        }
                    }
                    (ls, rs) if ls.len() >= 2 => {
                        if let (Some(r0), true) = (rs.first(), descend) {
                            compare(None, Some(r0), node, path, out);
                        }
                        out.removed.insert(path);
                    }
                    (ls, _) => {
                        if let (Some(l0), true) = (ls.first(), descend) {
                            compare(Some(l0), None, node, path, out);
                        }
                        out.added.insert(path);
                    }
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

/// What `compare` records below `path` for `v` present on one side only (`added`: the new side,
/// else the old), relative to `path`: the same paths, in one bottom-up pass.
fn one_sided(
    v: &Value,
    node: Option<&HintNode>,
    path: &mut Vec<PathElement>,
    added: bool,
    out: &Comparison,
) -> FieldSet {
    // The real server compares a new built-in struct against its zero value.
    let marked = |path: &[PathElement]| !(added && out.builtin && zero_present(path));
    if let Value::Object(m) = v
        && !map_is_atomic(node)
        && !m.keys().all(|k| skipped(out, path, k))
    {
        let mut set = FieldSet::new();
        if marked(path) {
            set.mark();
        }
        for (k, c) in m {
            if skipped(out, path, k) {
                continue;
            }
            path.push(field(k));
            let sub = one_sided(c, child(node, k), path, added, out);
            path.pop();
            set.put_child(field(k), sub);
        }
        return set;
    }
    if let (Value::Array(items), Some(lt)) = (v, granular_list(node))
        && !items.is_empty()
        && let Some(groups) = group_items(items, lt, node)
    {
        let mut set = FieldSet::new();
        if marked(path) {
            set.mark();
        }
        for (pe, members) in groups {
            // One item is compared field by field (list maps); a duplicated key is one unit.
            let mut item = match (lt, members.as_slice()) {
                (ListType::Map(_), [only]) => {
                    path.push(pe.clone());
                    let sub = one_sided(only, node, path, added, out);
                    path.pop();
                    sub
                }
                _ => FieldSet::new(),
            };
            item.mark();
            set.put_child(pe, item);
        }
        return set;
    }
    FieldSet::leaf()
}

/// Merges an applied configuration into the live value.
pub(super) fn merge(live: &Value, config: &Value, node: Option<&HintNode>) -> Value {
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
pub(super) fn fresh(config: &Value, node: Option<&HintNode>) -> Value {
    match config {
        Value::Object(_) if !map_is_atomic(node) => merge(&Value::Object(Map::new()), config, node),
        other => other.clone(),
    }
}

/// `fresh` of a value the caller gives up: nulls dropped in place, nothing copied.
pub(super) fn fresh_owned(mut config: Value, node: Option<&HintNode>) -> Value {
    if let Value::Object(m) = &mut config
        && !map_is_atomic(node)
    {
        m.retain(|_, v| !v.is_null());
        for (k, v) in m.iter_mut() {
            *v = fresh_owned(v.take(), child(node, k));
        }
    }
    config
}

/// Merges list items by key (map) or value (set). Order follows the real merge: walk both
/// lists together, keep live-only items where they are, emit configured items in configured
/// order, and place each item present on both sides where the configuration puts it.
pub(super) fn merge_list(
    live: &[Value],
    config: &[Value],
    lt: &ListType,
    node: Option<&HintNode>,
) -> Value {
    // Duplicate keys are tolerated on the live side (Update writes can create them); the
    // applied side is validated to have none.
    let live_pes: Option<Vec<PathElement>> =
        live.iter().map(|item| item_pe(item, lt, node)).collect();
    let (Some(lp), Some(cp)) = (live_pes, item_pes(config, lt, node)) else {
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
pub(super) fn prune(
    obj: &mut Value,
    last: &FieldSet,
    keep: Option<&FieldSet>,
    node: Option<&HintNode>,
) {
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

pub(super) fn child_index(
    items: &[Value],
    pe: &PathElement,
    node: Option<&HintNode>,
) -> Option<usize> {
    let lt = node.and_then(|n| n.list.as_ref())?;
    items
        .iter()
        .position(|item| item_pe(item, lt, node).as_ref() == Some(pe))
}

pub(super) fn child_mut<'a>(
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

pub(super) fn remove_child(obj: &mut Value, pe: &PathElement, node: Option<&HintNode>) {
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

pub(super) fn validate_value(
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

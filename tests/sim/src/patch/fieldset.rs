//! Field sets as server-side apply tracks them (paths of field names, list-map keys, set values)
//! and their `FieldsV1` wire encoding (`f:`, `k:`, `v:`, `i:`, `.`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// One step of a field path. Variant order is the wire ordering: fields, keys, values, indices.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A named field: `f:name`.
    Field(String),
    /// A list-map item identified by its key fields, canonical compact JSON with sorted keys:
    /// `k:{"name":"x"}`.
    Key(String),
    /// A set item identified by its value, compact JSON: `v:"x"`.
    Value(String),
    /// A list index: `i:3`.
    Index(usize),
}

impl PathElement {
    /// A key element from key field names and values (sorted by name, canonical JSON).
    pub fn key(pairs: &[(String, Value)]) -> PathElement {
        let refs: Vec<(&str, &Value)> = pairs.iter().map(|(k, v)| (k.as_str(), v)).collect();
        PathElement::key_of(refs)
    }

    /// `key` from borrowed pairs: the canonical JSON object written directly (keys sorted, a
    /// repeated name keeping its last value, as a JSON object built from the pairs would).
    pub(crate) fn key_of(mut pairs: Vec<(&str, &Value)>) -> PathElement {
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = Vec::with_capacity(32);
        out.push(b'{');
        let mut first = true;
        for (i, (k, v)) in pairs.iter().enumerate() {
            if pairs.get(i + 1).is_some_and(|next| next.0 == *k) {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            write_json(&mut out, *k);
            out.push(b':');
            write_canonical(&mut out, v);
        }
        out.push(b'}');
        PathElement::Key(String::from_utf8(out).unwrap_or_default())
    }

    /// A set-value element.
    pub fn value(v: &Value) -> PathElement {
        let mut out = Vec::with_capacity(16);
        write_canonical(&mut out, v);
        PathElement::Value(String::from_utf8(out).unwrap_or_default())
    }

    /// The `FieldsV1` key for this element.
    pub fn encode(&self) -> String {
        let (prefix, text) = match self {
            PathElement::Field(name) => ("f:", name),
            PathElement::Key(json) => ("k:", json),
            PathElement::Value(json) => ("v:", json),
            PathElement::Index(i) => return format!("i:{i}"),
        };
        let mut out = String::with_capacity(prefix.len() + text.len());
        out.push_str(prefix);
        out.push_str(text);
        out
    }

    /// Whether `encode()` equals `key` (no allocation but for indices).
    pub(crate) fn encodes_as(&self, key: &str) -> bool {
        let (prefix, rest) = key.split_at_checked(2).unwrap_or(("", ""));
        match self {
            PathElement::Field(name) => prefix == "f:" && rest == name,
            PathElement::Key(json) => prefix == "k:" && rest == json,
            PathElement::Value(json) => prefix == "v:" && rest == json,
            PathElement::Index(i) => prefix == "i:" && rest == i.to_string(),
        }
    }

    /// Parses a `FieldsV1` key; `None` for `.` and anything malformed. Key and value elements
    /// (JSON to parse and write again canonically) are remembered per thread: the same keys
    /// (`k:{"type":"Ready"}`, `k:{"name":"agent"}`) come back in every entry of their kind.
    pub fn decode(s: &str) -> Option<PathElement> {
        const REMEMBERED: usize = 4096;
        thread_local! {
            static PARSED: std::cell::RefCell<std::collections::HashMap<Box<str>, Option<PathElement>>> =
                std::cell::RefCell::new(std::collections::HashMap::new());
        }
        if s.starts_with("f:") || s.starts_with("i:") {
            return PathElement::parse(s);
        }
        if let Some(known) = PARSED.with(|p| p.borrow().get(s).cloned()) {
            return known;
        }
        let parsed = PathElement::parse(s);
        PARSED.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() >= REMEMBERED {
                p.clear();
            }
            p.insert(s.into(), parsed.clone());
        });
        parsed
    }

    /// `decode` without remembering.
    fn parse(s: &str) -> Option<PathElement> {
        let (prefix, rest) = s.split_at_checked(2)?;
        match prefix {
            "f:" => Some(PathElement::Field(rest.to_string())),
            "k:" => {
                let Value::Object(m) = serde_json::from_str::<Value>(rest).ok()? else {
                    return None;
                };
                let pairs: Vec<(String, Value)> = m.into_iter().collect();
                Some(PathElement::key(&pairs))
            }
            "v:" => {
                let v: Value = serde_json::from_str(rest).ok()?;
                Some(PathElement::value(&v))
            }
            "i:" => rest.parse().ok().map(PathElement::Index),
            _ => None,
        }
    }

    /// The path-string form used in conflict messages: `.name`, `[name="x"]`, `[="v"]`, `[3]`.
    pub fn display(&self) -> String {
        match self {
            PathElement::Field(name) => format!(".{name}"),
            PathElement::Key(json) => {
                let parts: Vec<String> = match serde_json::from_str::<Value>(json) {
                    Ok(Value::Object(m)) => m.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                    _ => vec![json.clone()],
                };
                format!("[{}]", parts.join(","))
            }
            PathElement::Value(json) => format!("[={json}]"),
            PathElement::Index(i) => format!("[{i}]"),
        }
    }
}

/// Appends compact JSON (writing into a Vec cannot fail).
fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    let _ = serde_json::to_writer(&mut *out, v);
}

/// Appends the canonical JSON of `v` (`canonical(v)` serialized; scalars as they are).
fn write_canonical(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Object(_) | Value::Array(_) => write_json(out, &canonical(v)),
        scalar => write_json(out, scalar),
    }
}

/// Recursively sorts object keys so equal values have one JSON spelling.
pub(crate) fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), canonical(&m[k.as_str()]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Renders a path as the API server does in conflict messages: `.spec.containers[name="x"].image`.
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(PathElement::display).collect()
}

/// A set of field paths, stored as a tree. A node is a *member* when the path itself is in the
/// set (`.` in `FieldsV1` when it also has children).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    member: bool,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    /// The set holding only the empty path (a leaf member).
    pub(crate) fn leaf() -> FieldSet {
        FieldSet {
            member: true,
            children: BTreeMap::new(),
        }
    }

    /// Makes the empty path (this node) a member.
    pub(crate) fn mark(&mut self) {
        self.member = true;
    }

    pub fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    /// Adds `path` as a member (the empty path marks the root itself).
    pub fn insert(&mut self, path: &[PathElement]) {
        self.node_at(path).member = true;
    }

    /// Adds the members of `sub` below `path` (`sub` taken whole where nothing was there).
    pub(crate) fn graft(&mut self, path: &[PathElement], sub: FieldSet) {
        if sub.is_empty() {
            return;
        }
        let node = self.node_at(path);
        if node.is_empty() {
            *node = sub;
        } else {
            node.union_with(&sub);
        }
    }

    /// The node at `path`, created (empty) with its parents where missing: the caller makes it
    /// a member or gives it members.
    fn node_at(&mut self, path: &[PathElement]) -> &mut FieldSet {
        let mut cur = self;
        for pe in path {
            // Clone the element only when the node is new (most inserts share a prefix).
            cur = if cur.children.contains_key(pe) {
                cur.children.get_mut(pe).expect("present")
            } else {
                cur.children.entry(pe.clone()).or_default()
            };
        }
        cur
    }

    /// Whether `path` is a member.
    pub fn contains(&self, path: &[PathElement]) -> bool {
        self.descend(path).is_some_and(|n| n.member)
    }

    /// The subtree at `path`, if any path at or below it is present.
    pub fn descend(&self, path: &[PathElement]) -> Option<&FieldSet> {
        let mut cur = self;
        for pe in path {
            cur = cur.children.get(pe)?;
        }
        Some(cur)
    }

    pub(crate) fn child(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.children.get(pe)
    }

    pub(crate) fn is_member(&self) -> bool {
        self.member
    }

    pub(crate) fn children(&self) -> impl Iterator<Item = (&PathElement, &FieldSet)> {
        self.children.iter()
    }

    /// Keeps the children `keep` accepts (with everything below them).
    pub(crate) fn retain_children(&mut self, mut keep: impl FnMut(&PathElement) -> bool) {
        self.children.retain(|pe, _| keep(pe));
    }

    /// Removes and returns the subtree below one child.
    pub(crate) fn take_child(&mut self, pe: &PathElement) -> Option<FieldSet> {
        self.children.remove(pe)
    }

    /// Puts `sub` under the child `pe` (replacing it; nothing when `sub` is empty).
    pub(crate) fn put_child(&mut self, pe: PathElement, sub: FieldSet) {
        if !sub.is_empty() {
            self.children.insert(pe, sub);
        }
    }

    /// Removes `path` and everything below it.
    #[cfg(test)]
    pub(crate) fn remove_subtree(&mut self, path: &[PathElement]) {
        let Some((last, parents)) = path.split_last() else {
            *self = FieldSet::default();
            return;
        };
        self.change_at(parents, |node| {
            node.children.remove(last);
        });
    }

    /// Clears the member flag at `path` (children stay).
    pub(crate) fn unmark(&mut self, path: &[PathElement]) {
        self.change_at(path, |node| node.member = false);
    }

    /// Runs `f` on the node at `path` (nothing when absent), then drops the nodes on the path that
    /// it left empty. Every other node keeps a member below it (no operation leaves an empty node
    /// in a set), so only the path needs pruning.
    fn change_at(&mut self, path: &[PathElement], f: impl FnOnce(&mut FieldSet)) {
        let Some((first, rest)) = path.split_first() else {
            f(self);
            return;
        };
        let Some(child) = self.children.get_mut(first) else {
            return;
        };
        child.change_at(rest, f);
        if child.is_empty() {
            self.children.remove(first);
        }
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.member |= other.member;
        for (pe, sub) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(sub),
                None => sub.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    /// Adds the members of `other` (in place: the work follows `other`, not `self`).
    pub fn union_with(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (pe, sub) in &other.children {
            match self.children.get_mut(pe) {
                Some(mine) => mine.union_with(sub),
                None => {
                    self.children.insert(pe.clone(), sub.clone());
                }
            }
        }
    }

    /// Removes the members of `other` (in place: the work follows `other`, not `self`); whether
    /// anything was removed.
    pub fn subtract(&mut self, other: &FieldSet) -> bool {
        let mut removed = false;
        if self.member && other.member {
            self.member = false;
            removed = true;
        }
        if self.children.len() <= other.children.len() {
            self.children
                .retain(|pe, mine| match other.children.get(pe) {
                    Some(sub) => {
                        removed |= mine.subtract(sub);
                        !mine.is_empty()
                    }
                    None => true,
                });
        } else {
            for (pe, sub) in &other.children {
                if let Some(mine) = self.children.get_mut(pe) {
                    removed |= mine.subtract(sub);
                    if mine.is_empty() {
                        self.children.remove(pe);
                    }
                }
            }
        }
        removed
    }

    /// Members of `self` that are not members of `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (pe, sub) in &self.children {
            let d = match other.children.get(pe) {
                Some(theirs) => sub.difference(theirs),
                None => sub.clone(),
            };
            if !d.is_empty() {
                out.children.insert(pe.clone(), d);
            }
        }
        out
    }

    /// Members of both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (pe, sub) in &self.children {
            if let Some(theirs) = other.children.get(pe) {
                let i = sub.intersection(theirs);
                if !i.is_empty() {
                    out.children.insert(pe.clone(), i);
                }
            }
        }
        out
    }

    /// All member paths, in wire order.
    pub fn paths(&self) -> Vec<Vec<PathElement>> {
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        self.collect_paths(&mut prefix, &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (pe, sub) in &self.children {
            prefix.push(pe.clone());
            sub.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The `fieldsV1` JSON object.
    pub fn to_fields_v1(&self) -> Value {
        let mut m = Map::with_capacity(self.children.len() + 1);
        if self.member && !self.children.is_empty() {
            m.insert(".".to_string(), Value::Object(Map::new()));
        }
        for (pe, sub) in &self.children {
            m.insert(pe.encode(), sub.to_fields_v1());
        }
        Value::Object(m)
    }

    /// Whether `to_fields_v1()` equals `v`, key order included (a walk, no allocation).
    pub(crate) fn encodes_as(&self, v: &Value) -> bool {
        let Value::Object(m) = v else {
            return false;
        };
        if self.children.is_empty() {
            return m.is_empty();
        }
        let mut it = m.iter();
        if self.member
            && !matches!(it.next(), Some((k, Value::Object(dot))) if k == "." && dot.is_empty())
        {
            return false;
        }
        for (pe, sub) in &self.children {
            match it.next() {
                Some((k, sv)) if pe.encodes_as(k) && sub.encodes_as(sv) => {}
                _ => return false,
            }
        }
        it.next().is_none()
    }

    /// Parses a `fieldsV1` JSON object. Leaves (`{}`) are members; `.` marks a member with
    /// children.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, String> {
        let Value::Object(m) = v else {
            return Err(format!(
                "failed to decode fieldsV1: expected an object, got {v}"
            ));
        };
        let mut out = FieldSet::default();
        if m.is_empty() {
            out.member = true;
            return Ok(out);
        }
        for (k, sub) in m {
            if k == "." {
                out.member = true;
                continue;
            }
            let pe = PathElement::decode(k)
                .ok_or_else(|| format!("failed to decode fieldsV1: invalid path element {k:?}"))?;
            out.children.insert(pe, FieldSet::from_fields_v1(sub)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(name: &str) -> PathElement {
        PathElement::Field(name.to_string())
    }

    #[test]
    fn fields_v1_round_trip_with_keys_values_and_dot() {
        let wire = json!({
            "f:metadata": {"f:finalizers": {".": {}, "v:\"a.io/x\"": {}}, "f:labels": {"f:app": {}}},
            "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"main\"}": {".": {}, "f:image": {}, "f:name": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}
            }}}}
        });
        let set = FieldSet::from_fields_v1(&wire).expect("decodes");
        assert_eq!(set.to_fields_v1(), wire);
        let image = vec![
            f("spec"),
            f("template"),
            f("spec"),
            f("containers"),
            PathElement::key(&[("name".into(), json!("main"))]),
            f("image"),
        ];
        assert!(set.contains(&image));
        assert_eq!(
            path_string(&image),
            ".spec.template.spec.containers[name=\"main\"].image"
        );
        let port = PathElement::key(&[
            ("protocol".into(), json!("TCP")),
            ("containerPort".into(), json!(80)),
        ]);
        assert_eq!(
            port.encode(),
            "k:{\"containerPort\":80,\"protocol\":\"TCP\"}"
        );
        assert_eq!(port.display(), "[containerPort=80,protocol=\"TCP\"]");
        assert_eq!(
            PathElement::value(&json!("a.io/x")).display(),
            "[=\"a.io/x\"]"
        );
    }

    #[test]
    fn wire_order_puts_dot_then_fields_then_keys() {
        let mut s = FieldSet::new();
        s.insert(&[f("list"), PathElement::key(&[("name".into(), json!("b"))])]);
        s.insert(&[f("list")]);
        s.insert(&[f("list"), f("zz")]);
        let text = s.to_fields_v1().to_string();
        assert_eq!(
            text,
            r#"{"f:list":{".":{},"f:zz":{},"k:{\"name\":\"b\"}":{}}}"#
        );
    }

    #[test]
    fn set_algebra() {
        let mut a = FieldSet::new();
        a.insert(&[f("spec"), f("replicas")]);
        a.insert(&[f("spec"), f("paused")]);
        let mut b = FieldSet::new();
        b.insert(&[f("spec"), f("replicas")]);
        b.insert(&[f("metadata"), f("labels"), f("x")]);
        assert_eq!(
            a.intersection(&b).paths(),
            vec![vec![f("spec"), f("replicas")]]
        );
        assert_eq!(a.difference(&b).paths(), vec![vec![f("spec"), f("paused")]]);
        assert_eq!(a.union(&b).paths().len(), 3);
        assert!(a.difference(&a).is_empty());
        let mut c = a.union(&b);
        c.remove_subtree(&[f("spec")]);
        assert_eq!(c.paths(), vec![vec![f("metadata"), f("labels"), f("x")]]);
    }

    #[test]
    fn remembered_keys_decode_as_parsed() {
        for _ in 0..2 {
            assert_eq!(
                PathElement::decode(r#"k:{"protocol":"TCP","containerPort":80}"#),
                Some(PathElement::Key(
                    r#"{"containerPort":80,"protocol":"TCP"}"#.into()
                ))
            );
            assert_eq!(
                PathElement::decode(r#"v:"a.io/x""#),
                Some(PathElement::Value(r#""a.io/x""#.into()))
            );
            assert_eq!(PathElement::decode("k:[1]"), None);
            assert_eq!(PathElement::decode("v:{bad"), None);
            assert_eq!(PathElement::decode("f:a"), Some(f("a")));
            assert_eq!(PathElement::decode("i:3"), Some(PathElement::Index(3)));
        }
    }

    #[test]
    fn malformed_fields_v1_is_an_error() {
        assert!(FieldSet::from_fields_v1(&json!({"x:bad": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!([1])).is_err());
    }
}

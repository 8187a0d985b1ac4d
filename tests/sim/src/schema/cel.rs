//! `x-kubernetes-validations` CEL rules: compiled per schema node through kube-cel, evaluated in the
//! apiserver's environment (`cel_env`) with its field paths, `oldSelf` correlation, ratcheting,
//! message/messageExpression, fieldPath and reason.

use super::cel_env::{self, Outcome};
use super::errors::{BadValue, FieldError, FieldErrorKind};
use kube_cel::CompiledSchema;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

const MAX_DEPTH: usize = 64;

/// What the apiserver needs to know about one rule besides its compiled program.
#[derive(Debug, Clone)]
struct RuleMeta {
    rule: String,
    message: Option<String>,
    has_message_expression: bool,
    reason: Option<String>,
    field_path: Option<String>,
    transition: bool,
}

/// The rules of one schema node: a kube-cel tree of that node (children stripped of their own rules,
/// so only this node's rules run) plus their metadata.
#[derive(Debug)]
struct CelNode {
    compiled: CompiledSchema,
    /// The node's schema (children without rules), to convert values as the apiserver does.
    schema: Value,
    rules: Vec<RuleMeta>,
}

/// All CEL rules of a schema, keyed by the node's schema pointer (`/properties/spec/items`).
#[derive(Debug, Default)]
pub(super) struct CelRules {
    nodes: HashMap<String, CelNode>,
    /// Schema pointers with a rule at or below them: the walk skips every other subtree.
    rules_below: HashSet<String>,
    errors: Vec<String>,
}

impl CelRules {
    pub(super) fn compile(schema: &Value) -> Self {
        let mut out = CelRules::default();
        out.collect(schema, String::new(), 0);
        out
    }

    pub(super) fn has_rules(&self) -> bool {
        !self.nodes.is_empty()
    }

    pub(super) fn compile_errors(&self) -> Vec<String> {
        self.errors.clone()
    }

    /// Compiles the rules at `ptr` and below; whether there are any.
    fn collect(&mut self, s: &Value, ptr: String, depth: usize) -> bool {
        if depth > MAX_DEPTH || !s.is_object() {
            return false;
        }
        if let Some(raw) = s
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
        {
            let mut node_schema = s.clone();
            strip_child_rules(&mut node_schema, 0);
            let compiled = kube_cel::compile_schema(&node_schema);
            let mut rules = Vec::new();
            for (i, r) in raw.iter().enumerate() {
                let transition = match compiled.validations.get(i) {
                    Some(Ok(cr)) => cr.is_transition_rule,
                    Some(Err(e)) => {
                        let at = if ptr.is_empty() { "/" } else { ptr.as_str() };
                        self.errors.push(format!(
                            "failed to compile x-kubernetes-validations rule at {at}: {e}"
                        ));
                        false
                    }
                    None => false,
                };
                let text = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
                rules.push(RuleMeta {
                    rule: text("rule").unwrap_or_default(),
                    message: text("message"),
                    has_message_expression: r
                        .get("messageExpression")
                        .is_some_and(|m| m.is_string()),
                    reason: text("reason"),
                    field_path: text("fieldPath"),
                    transition,
                });
            }
            self.nodes.insert(
                ptr.clone(),
                CelNode {
                    compiled,
                    schema: node_schema,
                    rules,
                },
            );
        }
        let mut any = self.nodes.contains_key(&ptr);
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            for (k, ps) in props {
                any |= self.collect(ps, format!("{ptr}/properties/{k}"), depth + 1);
            }
        }
        if let Some(items) = s.get("items") {
            any |= self.collect(items, format!("{ptr}/items"), depth + 1);
        }
        if let Some(add) = s.get("additionalProperties") {
            any |= self.collect(add, format!("{ptr}/additionalProperties"), depth + 1);
        }
        if any {
            self.rules_below.insert(ptr);
        }
        any
    }

    /// Evaluates every rule against `obj` (and `old` for transition rules), appending errors.
    pub(super) fn validate(
        &self,
        schema: &Value,
        obj: &Value,
        old: Option<&Value>,
        errs: &mut Vec<FieldError>,
    ) {
        if self.nodes.is_empty() {
            return;
        }
        // At the root, CEL sees only metadata.name and metadata.generateName. Without rules at
        // the root or anywhere `metadata` could lead, the walk never looks at it: no view needed.
        let meta_seen = self.nodes.contains_key("")
            || self.rules_below.contains("/properties/metadata")
            || self.rules_below.contains("/additionalProperties");
        if !meta_seen {
            self.walk(
                schema,
                &mut String::new(),
                obj,
                old,
                &mut String::new(),
                errs,
                0,
            );
            return;
        }
        let root = root_view(obj);
        let old_root = old.map(root_view);
        self.walk(
            schema,
            &mut String::new(),
            &root,
            old_root.as_ref(),
            &mut String::new(),
            errs,
            0,
        );
    }

    /// `ptr` (the schema pointer) and `path` (the field path) are buffers the walk extends and
    /// restores, so a subtree without rules costs no allocation.
    #[allow(clippy::too_many_arguments)]
    fn walk(
        &self,
        s: &Value,
        ptr: &mut String,
        v: &Value,
        old: Option<&Value>,
        path: &mut String,
        errs: &mut Vec<FieldError>,
        depth: usize,
    ) {
        if depth > MAX_DEPTH
            || !s.is_object()
            || v.is_null()
            || !self.rules_below.contains(ptr.as_str())
        {
            return;
        }
        if let Some(node) = self.nodes.get(ptr.as_str()) {
            // Ratcheting drops every failure of an unchanged value but a transition rule's, so
            // without transition rules an unchanged value is not evaluated at all.
            let needed = node.rules.iter().any(|r| r.transition) || old.is_none_or(|o| o != v);
            if needed {
                let node_type = s.get("type").and_then(Value::as_str).unwrap_or("");
                evaluate(node, node_type, v, old, path, errs);
            }
        }
        let (ptr_len, path_len) = (ptr.len(), path.len());
        match v {
            Value::Object(obj) => {
                let props = s.get("properties").and_then(Value::as_object);
                if let Some(props) = props {
                    for (k, ps) in props {
                        if let Some(child) = obj.get(k) {
                            ptr.push_str("/properties/");
                            ptr.push_str(k);
                            if !path.is_empty() {
                                path.push('.');
                            }
                            path.push_str(k);
                            let child_old = old.and_then(|o| o.get(k));
                            self.walk(ps, ptr, child, child_old, path, errs, depth + 1);
                            ptr.truncate(ptr_len);
                            path.truncate(path_len);
                        }
                    }
                }
                if let Some(add) = s.get("additionalProperties").filter(|a| a.is_object()) {
                    ptr.push_str("/additionalProperties");
                    for (k, child) in obj {
                        if props.is_some_and(|p| p.contains_key(k)) {
                            continue;
                        }
                        path.push('[');
                        path.push_str(k);
                        path.push(']');
                        let child_old = old.and_then(|o| o.get(k));
                        self.walk(add, ptr, child, child_old, path, errs, depth + 1);
                        path.truncate(path_len);
                    }
                    ptr.truncate(ptr_len);
                }
            }
            Value::Array(arr) => {
                if let Some(items) = s.get("items").filter(|i| i.is_object()) {
                    ptr.push_str("/items");
                    let old_arr = old.and_then(Value::as_array);
                    for (i, item) in arr.iter().enumerate() {
                        let old_item = old_arr.and_then(|oa| correlate(s, item, oa));
                        use std::fmt::Write;
                        let _ = write!(path, "[{i}]");
                        self.walk(items, ptr, item, old_item, path, errs, depth + 1);
                        path.truncate(path_len);
                    }
                    ptr.truncate(ptr_len);
                }
            }
            _ => {}
        }
    }
}

fn evaluate(
    node: &CelNode,
    node_type: &str,
    v: &Value,
    old: Option<&Value>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let failures = cel_env::evaluate(&node.compiled.validations, &node.schema, v, old);
    // Ratcheting: an unchanged value does not fail non-transition rules.
    let unchanged = old.is_some_and(|o| o == v);
    for (index, outcome) in failures {
        let Some(m) = node.rules.get(index) else {
            continue;
        };
        if unchanged && !m.transition {
            continue;
        }
        let field = match m.field_path.as_deref() {
            Some(fp) => {
                let fp = fp.strip_prefix('.').unwrap_or(fp);
                if path.is_empty() {
                    fp.to_string()
                } else {
                    format!("{path}.{fp}")
                }
            }
            None => {
                if path.is_empty() {
                    "<nil>".to_string()
                } else {
                    path.to_string()
                }
            }
        };
        let bad = BadValue::Json(Value::String(node_type.to_string()));
        let static_message = m
            .message
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let err = match outcome {
            Outcome::False { message_expression } => {
                let fallback = match static_message {
                    Some(msg) => msg.to_string(),
                    None => format!("failed rule: {}", m.rule.trim()),
                };
                // The apiserver falls back to `message` when messageExpression is empty, spans
                // lines or fails.
                let message = match message_expression {
                    Some(msg)
                        if m.has_message_expression
                            && !msg.trim().is_empty()
                            && !msg.contains('\n') =>
                    {
                        msg
                    }
                    _ => fallback,
                };
                let kind = m
                    .reason
                    .as_deref()
                    .map(FieldErrorKind::from_rule_reason)
                    .unwrap_or(FieldErrorKind::Invalid);
                match kind {
                    FieldErrorKind::Forbidden | FieldErrorKind::Required => FieldError {
                        field,
                        kind,
                        message,
                        value: BadValue::Omit,
                    },
                    FieldErrorKind::Duplicate => FieldError {
                        field,
                        kind,
                        message: String::new(),
                        value: bad,
                    },
                    _ => FieldError {
                        field,
                        kind: FieldErrorKind::Invalid,
                        message,
                        value: bad,
                    },
                }
            }
            Outcome::Error(e) => {
                // apiserver: "<cel error> evaluating rule: <message or rule>"
                let cause = match &e {
                    kube_cel::cel::ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
                    other => lower_first(&other.to_string()),
                };
                let rule_text = static_message.unwrap_or_else(|| m.rule.trim());
                FieldError {
                    field,
                    kind: FieldErrorKind::Invalid,
                    message: format!("{cause} evaluating rule: {rule_text}"),
                    value: bad,
                }
            }
            Outcome::NotBool => FieldError {
                field,
                kind: FieldErrorKind::Invalid,
                message: format!("rule \"{}\" did not evaluate to bool", m.rule),
                value: bad,
            },
        };
        errs.push(err);
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn correlate<'a>(s: &Value, item: &Value, old: &'a [Value]) -> Option<&'a Value> {
    match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("map") => {
            let keys: Vec<&str> = s
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if keys.is_empty() {
                return None;
            }
            old.iter()
                .find(|o| keys.iter().all(|k| o.get(*k) == item.get(*k)))
        }
        Some("set") => old.iter().find(|o| *o == item),
        _ => None,
    }
}

fn root_view(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        let mut kept = Map::new();
        for k in ["name", "generateName"] {
            if let Some(x) = meta.get(k) {
                kept.insert(k.to_string(), x.clone());
            }
        }
        *meta = kept;
    }
    v
}

fn strip_child_rules(s: &mut Value, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let Some(m) = s.as_object_mut() else { return };
    if depth > 0 {
        m.remove("x-kubernetes-validations");
    }
    if let Some(props) = m.get_mut("properties").and_then(Value::as_object_mut) {
        for ps in props.values_mut() {
            strip_child_rules(ps, depth + 1);
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(child) = m.get_mut(key) {
            strip_child_rules(child, depth + 1);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(arr) = m.get_mut(key).and_then(Value::as_array_mut) {
            for child in arr {
                strip_child_rules(child, depth + 1);
            }
        }
    }
}

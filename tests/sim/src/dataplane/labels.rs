//! Matching of `metav1.LabelSelector` objects (matchLabels + matchExpressions) and of node
//! selector requirements (`In`/`NotIn`/`Exists`/`DoesNotExist`/`Gt`/`Lt`) for the data plane.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// A parsed `metav1.LabelSelector`; an empty selector matches everything.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    match_labels: Vec<(String, String)>,
    exprs: Vec<(String, Op, Vec<String>)>,
}

impl Selector {
    pub fn from_object(sel: &Value) -> Result<Self, String> {
        let mut out = Selector::default();
        if sel.is_null() {
            return Ok(out);
        }
        let obj = sel
            .as_object()
            .ok_or_else(|| "failed to read label selector: not an object".to_string())?;
        if let Some(ml) = obj.get("matchLabels").filter(|v| !v.is_null()) {
            let ml = ml
                .as_object()
                .ok_or_else(|| "failed to read matchLabels: not an object".to_string())?;
            for (k, v) in ml {
                let v = v
                    .as_str()
                    .ok_or_else(|| format!("failed to read matchLabels[{k}]: not a string"))?;
                out.match_labels.push((k.clone(), v.to_string()));
            }
        }
        if let Some(me) = obj.get("matchExpressions").filter(|v| !v.is_null()) {
            let me = me
                .as_array()
                .ok_or_else(|| "failed to read matchExpressions: not a list".to_string())?;
            for e in me {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .ok_or_else(|| "failed to read matchExpressions key".to_string())?;
                let op = match e.get("operator").and_then(Value::as_str) {
                    Some("In") => Op::In,
                    Some("NotIn") => Op::NotIn,
                    Some("Exists") => Op::Exists,
                    Some("DoesNotExist") => Op::DoesNotExist,
                    other => {
                        return Err(format!(
                            "failed to read operator {other:?}: not a valid selector operator"
                        ));
                    }
                };
                let values = string_list(e.get("values"));
                if matches!(op, Op::In | Op::NotIn) && values.is_empty() {
                    return Err(format!(
                        "failed to read values for {key}: must be non-empty for In/NotIn"
                    ));
                }
                out.exprs.push((key.to_string(), op, values));
            }
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.exprs.is_empty()
    }

    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.match_labels
            .iter()
            .all(|(k, v)| get(k) == Some(v.as_str()))
            && self.exprs.iter().all(|(k, op, vals)| match op {
                Op::In => get(k).is_some_and(|v| vals.iter().any(|x| x == v)),
                Op::NotIn => get(k).is_none_or(|v| !vals.iter().any(|x| x == v)),
                Op::Exists => get(k).is_some(),
                Op::DoesNotExist => get(k).is_none(),
            })
    }
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// True if every `matchLabels`-style pair in `selector` (a plain map) is in `labels`; an empty
/// map matches nothing (Service semantics are handled by the caller).
pub fn map_matches(selector: &Map<String, Value>, labels: &Map<String, Value>) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.get(k).and_then(Value::as_str) == v.as_str())
}

/// One `NodeSelectorRequirement` against a label map (`Gt`/`Lt` compare integers).
pub fn node_requirement_matches(req: &Value, labels: &Map<String, Value>) -> bool {
    let Some(key) = req.get("key").and_then(Value::as_str) else {
        return false;
    };
    let vals = string_list(req.get("values"));
    let val = labels.get(key).and_then(Value::as_str);
    match req.get("operator").and_then(Value::as_str) {
        Some("In") => val.is_some_and(|v| vals.iter().any(|x| x == v)),
        Some("NotIn") => val.is_none_or(|v| !vals.iter().any(|x| x == v)),
        Some("Exists") => val.is_some(),
        Some("DoesNotExist") => val.is_none(),
        Some(op @ ("Gt" | "Lt")) => {
            let (Some(v), Some(bound)) = (
                val.and_then(|v| v.parse::<i64>().ok()),
                vals.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if op == "Gt" { v > bound } else { v < bound }
        }
        _ => false,
    }
}

/// A `NodeSelectorTerm`: all `matchExpressions` against the labels and all `matchFields`
/// (`metadata.name` only) must hold; an empty term matches nothing.
pub fn node_term_matches(term: &Value, node_name: &str, labels: &Map<String, Value>) -> bool {
    let exprs = term.get("matchExpressions").and_then(Value::as_array);
    let fields = term.get("matchFields").and_then(Value::as_array);
    if exprs.is_none_or(Vec::is_empty) && fields.is_none_or(Vec::is_empty) {
        return false;
    }
    let mut name_labels = Map::new();
    name_labels.insert("metadata.name".into(), Value::String(node_name.into()));
    exprs.is_none_or(|e| e.iter().all(|r| node_requirement_matches(r, labels)))
        && fields.is_none_or(|f| f.iter().all(|r| node_requirement_matches(r, &name_labels)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn l(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn label_selector_match_labels_and_expressions() {
        let s = Selector::from_object(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "canary", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap();
        assert!(s.matches(&l(json!({"app": "web", "tier": "a"}))));
        assert!(!s.matches(&l(json!({"app": "web", "tier": "c"}))));
        assert!(!s.matches(&l(json!({"app": "web", "tier": "a", "canary": "1"}))));
        assert!(!s.matches(&l(json!({"tier": "a"}))));
        assert!(
            Selector::from_object(&json!({}))
                .unwrap()
                .matches(&l(json!({})))
        );
        assert!(
            Selector::from_object(
                &json!({"matchExpressions": [{"key": "a", "operator": "Bogus"}]})
            )
            .is_err()
        );
    }

    #[test]
    fn node_requirements_cover_all_operators() {
        let labels = l(json!({"zone": "a", "gpus": "8"}));
        let r = |op: &str, vals: Value| json!({"key": if op == "Gt" || op == "Lt" {"gpus"} else {"zone"}, "operator": op, "values": vals});
        assert!(node_requirement_matches(&r("In", json!(["a"])), &labels));
        assert!(!node_requirement_matches(
            &r("NotIn", json!(["a"])),
            &labels
        ));
        assert!(node_requirement_matches(&r("Exists", json!(null)), &labels));
        assert!(!node_requirement_matches(
            &r("DoesNotExist", json!(null)),
            &labels
        ));
        assert!(node_requirement_matches(&r("Gt", json!(["4"])), &labels));
        assert!(!node_requirement_matches(&r("Lt", json!(["4"])), &labels));
        let term =
            json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]});
        assert!(node_term_matches(&term, "n1", &labels));
        assert!(!node_term_matches(&term, "n2", &labels));
        assert!(!node_term_matches(&json!({}), "n1", &labels));
    }
}

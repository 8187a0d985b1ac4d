//! Matching for the data plane: Service-style plain selector maps and node selector
//! requirements (`In`/`NotIn`/`Exists`/`DoesNotExist`/`Gt`/`Lt`, `matchFields`).
//! `metav1.LabelSelector` objects go through `crate::selector::LabelSelector`.

use serde_json::{Map, Value};

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

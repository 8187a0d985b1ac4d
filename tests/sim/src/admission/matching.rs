//! Which requests a policy or binding matches: `matchResources` (`resourceRules`,
//! `excludeResourceRules`, `namespaceSelector`, `objectSelector`) against the request's group,
//! version, resource, subresource, operation, scope and name, as the apiserver's rule matcher does.

use crate::selector::LabelSelector;
use serde_json::{Map, Value};

/// An admission operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// What a request is about, as admission sees it.
#[derive(Debug, Clone)]
pub struct RequestAttrs {
    pub group: String,
    pub version: String,
    pub resource: String,
    /// Empty for the main resource.
    pub subresource: String,
    pub kind: String,
    pub operation: Operation,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
    pub namespaced: bool,
}

/// The strings of a JSON array (others skipped); empty when absent.
pub(super) fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn listed(list: &[&str], value: &str) -> bool {
    list.iter().any(|x| *x == "*" || *x == value)
}

/// One `NamedRuleWithOperations`.
pub fn rule_matches(rule: &Value, req: &RequestAttrs) -> bool {
    if !listed(&strings(rule.get("operations")), req.operation.as_str())
        || !listed(&strings(rule.get("apiGroups")), &req.group)
        || !listed(&strings(rule.get("apiVersions")), &req.version)
    {
        return false;
    }
    let resource_ok = strings(rule.get("resources")).iter().any(|r| {
        let (res, sub) = r.split_once('/').unwrap_or((r, ""));
        (res == "*" || res == req.resource) && (sub == "*" || sub == req.subresource)
    });
    if !resource_ok {
        return false;
    }
    let scope_ok = match rule.get("scope").and_then(Value::as_str).unwrap_or("*") {
        "Cluster" => !req.namespaced,
        "Namespaced" => req.namespaced,
        _ => true,
    };
    let names = strings(rule.get("resourceNames"));
    scope_ok && (names.is_empty() || names.contains(&req.name.as_str()))
}

fn labels(obj: Option<&Value>) -> Option<&Map<String, Value>> {
    obj?.get("metadata")?.get("labels")?.as_object()
}

fn selector(m: &Value, key: &str) -> Result<Option<LabelSelector>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(s) => LabelSelector::from_object(s)
            .map(Some)
            .map_err(|e| format!("{key}: {e}")),
    }
}

/// Whether `m` (a `MatchResources`) selects the request. `rules_required`: a policy's
/// `matchConstraints` match nothing without `resourceRules`; a binding's `matchResources` without
/// them do not narrow by resource. `namespace` is the request's Namespace object (or the object
/// itself for requests on namespaces); cluster-scoped requests ignore the namespace selector.
pub fn resources_match(
    m: &Value,
    req: &RequestAttrs,
    object: Option<&Value>,
    old_object: Option<&Value>,
    namespace: Option<&Value>,
    rules_required: bool,
) -> Result<bool, String> {
    if let Some(sel) = selector(m, "namespaceSelector")?
        && !sel.is_empty()
    {
        let is_ns = req.group.is_empty() && req.resource == "namespaces";
        if req.namespaced || is_ns {
            let empty = Map::new();
            let ns_labels = if is_ns {
                labels(object.or(old_object))
            } else {
                labels(namespace)
            };
            if !sel.matches(ns_labels.unwrap_or(&empty)) {
                return Ok(false);
            }
        }
    }
    if let Some(sel) = selector(m, "objectSelector")?
        && !sel.is_empty()
    {
        let empty = Map::new();
        let matched = [object, old_object]
            .into_iter()
            .flatten()
            .any(|o| sel.matches(labels(Some(o)).unwrap_or(&empty)));
        if !matched {
            return Ok(false);
        }
    }
    if let Some(ex) = m.get("excludeResourceRules").and_then(Value::as_array)
        && ex.iter().any(|r| rule_matches(r, req))
    {
        return Ok(false);
    }
    match m.get("resourceRules").and_then(Value::as_array) {
        Some(rules) if !rules.is_empty() => Ok(rules.iter().any(|r| rule_matches(r, req))),
        _ => Ok(!rules_required),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status_patch() -> RequestAttrs {
        RequestAttrs {
            group: "hypersync.io".into(),
            version: "v1alpha1".into(),
            resource: "agentnodes".into(),
            subresource: "status".into(),
            kind: "AgentNode".into(),
            operation: Operation::Update,
            namespace: "ai".into(),
            name: "scout-1".into(),
            namespaced: true,
        }
    }

    fn rule(resources: &[&str]) -> Value {
        json!({"apiGroups": ["hypersync.io"], "apiVersions": ["*"], "operations": ["UPDATE"], "resources": resources})
    }

    #[test]
    fn subresources_match_only_when_named() {
        let req = status_patch();
        assert!(rule_matches(&rule(&["agentnodes/status"]), &req));
        assert!(rule_matches(&rule(&["agentnodes/*"]), &req));
        assert!(rule_matches(&rule(&["*/status"]), &req));
        assert!(rule_matches(&rule(&["*/*"]), &req));
        assert!(!rule_matches(&rule(&["agentnodes"]), &req));
        assert!(!rule_matches(&rule(&["*"]), &req));
        let main = RequestAttrs {
            subresource: String::new(),
            ..status_patch()
        };
        assert!(rule_matches(&rule(&["agentnodes"]), &main));
        assert!(rule_matches(&rule(&["agentnodes/*"]), &main));
        assert!(!rule_matches(&rule(&["agentnodes/status"]), &main));
    }

    #[test]
    fn operations_groups_versions_names_and_scope() {
        let req = status_patch();
        let mut r = rule(&["agentnodes/status"]);
        r["operations"] = json!(["CREATE", "DELETE"]);
        assert!(!rule_matches(&r, &req));
        r["operations"] = json!(["*"]);
        assert!(rule_matches(&r, &req));
        r["apiGroups"] = json!(["apps"]);
        assert!(!rule_matches(&r, &req));
        r["apiGroups"] = json!(["*"]);
        r["apiVersions"] = json!(["v1"]);
        assert!(!rule_matches(&r, &req));
        r["apiVersions"] = json!(["v1alpha1"]);
        r["resourceNames"] = json!(["other"]);
        assert!(!rule_matches(&r, &req));
        r["resourceNames"] = json!(["other", "scout-1"]);
        assert!(rule_matches(&r, &req));
        r["scope"] = json!("Cluster");
        assert!(!rule_matches(&r, &req));
        r["scope"] = json!("Namespaced");
        assert!(rule_matches(&r, &req));
    }

    #[test]
    fn selectors_and_exclusions() {
        let req = status_patch();
        let ns = json!({"metadata": {"name": "ai", "labels": {"team": "a"}}});
        let obj = json!({"metadata": {"labels": {"tier": "1"}}});
        let m = |extra: Value| {
            let mut m = json!({"resourceRules": [rule(&["agentnodes/status"])]});
            for (k, v) in extra.as_object().unwrap() {
                m[k] = v.clone();
            }
            m
        };
        let check = |m: &Value| resources_match(m, &req, Some(&obj), None, Some(&ns), true);
        assert_eq!(check(&m(json!({}))), Ok(true));
        assert_eq!(
            check(&m(
                json!({"namespaceSelector": {"matchLabels": {"team": "a"}}})
            )),
            Ok(true)
        );
        assert_eq!(
            check(&m(
                json!({"namespaceSelector": {"matchLabels": {"team": "b"}}})
            )),
            Ok(false)
        );
        assert_eq!(
            check(&m(
                json!({"objectSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["1"]}]}})
            )),
            Ok(true)
        );
        assert_eq!(
            check(&m(
                json!({"objectSelector": {"matchLabels": {"tier": "2"}}})
            )),
            Ok(false)
        );
        assert_eq!(
            check(&m(json!({"excludeResourceRules": [rule(&["*/*"])]}))),
            Ok(false)
        );
        // Without rules: a policy matches nothing, a binding does not narrow.
        assert_eq!(
            resources_match(&json!({}), &req, None, None, None, true),
            Ok(false)
        );
        assert_eq!(
            resources_match(&json!({}), &req, None, None, None, false),
            Ok(true)
        );
    }
}

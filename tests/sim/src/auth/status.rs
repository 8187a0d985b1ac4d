//! The metav1 Status bodies the apiserver sends for 401 Unauthorized and 403 Forbidden.

use super::Attributes;
use serde_json::{Map, Value, json};

/// The 401 body: `{"kind":"Status",...,"message":"Unauthorized","reason":"Unauthorized","code":401}`.
pub fn unauthorized_status() -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401
    })
}

/// The 403 body for a denied request; `message` is what [`super::authorize`] returned.
/// `details` carries `name`, `group` and `kind` (the resource, without subresource), each left out
/// when empty, as upstream serializes them.
pub fn forbidden_status(attrs: &Attributes, message: &str) -> Value {
    let mut details = Map::new();
    if attrs.is_resource_request() {
        if let Some(name) = attrs.name.as_deref().filter(|n| !n.is_empty()) {
            details.insert("name".into(), Value::String(name.to_string()));
        }
        if !attrs.api_group.is_empty() {
            details.insert("group".into(), Value::String(attrs.api_group.clone()));
        }
        if !attrs.resource.is_empty() {
            details.insert("kind".into(), Value::String(attrs.resource.clone()));
        }
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Forbidden",
        "details": details,
        "code": 403
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_body_shape() {
        let a = Attributes::resource(
            "get",
            "coordination.k8s.io",
            "leases",
            None,
            Some("ns"),
            Some("l1"),
        );
        let s = forbidden_status(&a, "m");
        assert_eq!(
            s,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "m", "reason": "Forbidden",
                   "details": {"name": "l1", "group": "coordination.k8s.io", "kind": "leases"},
                   "code": 403})
        );
        let core = Attributes::resource("list", "", "pods", None, Some("ns"), None);
        assert_eq!(
            forbidden_status(&core, "m")["details"],
            json!({"kind": "pods"})
        );
        let nr = Attributes::non_resource("get", "/version");
        assert_eq!(forbidden_status(&nr, "m")["details"], json!({}));
    }

    #[test]
    fn unauthorized_body_shape() {
        let s = unauthorized_status();
        assert_eq!(s["code"], 401);
        assert_eq!(s["reason"], "Unauthorized");
        assert_eq!(s["message"], "Unauthorized");
    }
}

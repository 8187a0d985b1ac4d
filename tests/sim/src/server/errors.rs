//! API errors as metav1 `Status` objects with the real server's reasons, codes and messages.

use serde_json::{Value, json};

/// One failed request, rendered as a `Status` body with `code` as the HTTP status.
#[derive(Debug, Clone, thiserror::Error)]
#[error("failed to serve request: {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Box<Value>>,
    /// A complete `Status` body to send instead of one built from the fields above.
    pub raw: Option<Box<Value>>,
}

/// `deployments.apps` or `pods` as the real server prints a qualified resource.
pub fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

fn details(group: &str, resource: &str, name: &str) -> Value {
    let mut d = serde_json::Map::new();
    if !name.is_empty() {
        d.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        d.insert("group".into(), json!(group));
    }
    d.insert("kind".into(), json!(resource));
    Value::Object(d)
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            raw: None,
        }
    }

    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("{} \"{name}\" not found", qualified(group, resource)),
            details: Some(Box::new(details(group, resource, name))),
            raw: None,
        }
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        ApiError {
            code: 409,
            reason: "AlreadyExists",
            message: format!("{} \"{name}\" already exists", qualified(group, resource)),
            details: Some(Box::new(details(group, resource, name))),
            raw: None,
        }
    }

    pub fn conflict(group: &str, resource: &str, name: &str) -> Self {
        ApiError {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified(group, resource)
            ),
            details: Some(Box::new(details(group, resource, name))),
            raw: None,
        }
    }

    pub fn conflict_msg(group: &str, resource: &str, name: &str, msg: &str) -> Self {
        ApiError {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": {msg}",
                qualified(group, resource)
            ),
            details: Some(Box::new(details(group, resource, name))),
            raw: None,
        }
    }

    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", msg)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn not_found_path() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn gone(requested: u64, oldest: u64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    pub fn unsupported_patch() -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        )
    }

    pub fn forbidden(msg: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", msg)
    }

    /// `errors.NewForbidden`: `<resource>.<group> "<name>" is forbidden: <reason>`.
    pub fn forbidden_object(group: &str, resource: &str, name: &str, reason: &str) -> Self {
        ApiError {
            code: 403,
            reason: "Forbidden",
            message: format!(
                "{} \"{name}\" is forbidden: {reason}",
                qualified(group, resource)
            ),
            details: Some(Box::new(details(group, resource, name))),
            raw: None,
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(500, "InternalError", msg)
    }

    /// 422 Invalid with causes `(field, cause reason, message)`.
    pub fn invalid(
        group: &str,
        kind: &str,
        name: &str,
        message: String,
        causes: Vec<(String, String, String)>,
    ) -> Self {
        let mut d = details(group, kind, name);
        if let Some(m) = d.as_object_mut() {
            m.insert(
                "causes".into(),
                Value::Array(
                    causes
                        .into_iter()
                        .map(|(field, reason, message)| {
                            json!({"reason": reason, "message": message, "field": field})
                        })
                        .collect(),
                ),
            );
        }
        ApiError {
            code: 422,
            reason: "Invalid",
            message,
            details: Some(Box::new(d)),
            raw: None,
        }
    }

    /// An error whose body is a ready `Status` object (its `code`, `reason`, `message` are read back).
    pub fn from_status(status: Value) -> Self {
        let code = status.get("code").and_then(Value::as_u64).unwrap_or(500) as u16;
        let reason = match status.get("reason").and_then(Value::as_str).unwrap_or("") {
            "Invalid" => "Invalid",
            "Forbidden" => "Forbidden",
            "Unauthorized" => "Unauthorized",
            "Conflict" => "Conflict",
            "BadRequest" => "BadRequest",
            "NotFound" => "NotFound",
            _ => "InternalError",
        };
        ApiError {
            code,
            reason,
            message: status
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            details: status.get("details").cloned().map(Box::new),
            raw: Some(Box::new(status)),
        }
    }

    /// The `Status` object.
    pub fn status(&self) -> Value {
        if let Some(r) = &self.raw {
            return (**r).clone();
        }
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let (Some(d), Some(m)) = (&self.details, s.as_object_mut()) {
            m.insert("details".into(), (**d).clone());
        }
        s
    }
}

//! Validation of built-in kinds the apiserver applies on every write, with its messages: Event
//! field limits (`pkg/apis/core/validation/events.go`), name length
//! (`apimachinery/pkg/util/validation` `IsDNS1123Subdomain` / `IsDNS1123Label`: the length error
//! first, then the character-set error) and the size limits on request bodies and stored objects.

use crate::schema::FieldError;
use serde_json::Value;

/// `ReportingInstanceLengthLimit`, `ActionLengthLimit`, `ReasonLengthLimit`.
const SHORT_LIMIT: usize = 128;
/// `NoteLengthLimit` (the message / note).
const NOTE_LIMIT: usize = 1024;

/// The apiserver's limit on a request body (`MaxRequestBodyBytes`, 3 MiB).
pub const MAX_REQUEST_BODY: usize = 3 * 1024 * 1024;
/// etcd's default `--max-request-bytes` (1.5 MiB): a larger object cannot be stored.
pub const MAX_OBJECT_BYTES: usize = 3 * 512 * 1024;

fn str_at<'a>(obj: &'a Value, path: &str) -> &'a str {
    obj.pointer(path).and_then(Value::as_str).unwrap_or("")
}

fn is_qualified_name_errors(v: &str) -> Vec<String> {
    // IsQualifiedName: [prefix/]name, name <= 63, alphanumerics, '-', '_', '.' inside.
    let (prefix, name) = match v.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, v),
    };
    let mut errs = Vec::new();
    let charset_ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if let Some(p) = prefix
        && (p.is_empty() || !super::handlers::is_dns_subdomain_chars(p) || p.len() > 253)
    {
        errs.push("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string());
    }
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 characters".to_string());
    }
    if !charset_ok {
        errs.push("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_string());
    }
    errs
}

/// Validates a core/v1 Event as stored (core field names). `strict` for writes through
/// events.k8s.io/v1 (`ValidateEventCreate` beyond the legacy checks). Lengths are in bytes, as
/// Go's `len`.
pub fn validate_event(ev: &Value, strict: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let event_time = ev.get("eventTime").is_some_and(|t| !t.is_null());
    let ns = str_at(ev, "/metadata/namespace");
    let involved_ns = str_at(ev, "/involvedObject/namespace");
    let mismatch = || {
        FieldError::invalid(
            "involvedObject.namespace",
            Value::String(involved_ns.to_string()),
            "does not match event.namespace",
        )
    };
    let too_long = |field: &str, limit: usize| {
        FieldError::invalid(
            field,
            Value::String(String::new()),
            format!("can have at most {limit} characters"),
        )
    };
    if !event_time {
        if involved_ns.is_empty() {
            if !ns.is_empty() && ns != "default" {
                errs.push(mismatch());
            }
        } else if ns != involved_ns {
            errs.push(mismatch());
        }
    } else {
        if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(mismatch());
        }
        let controller = str_at(ev, "/reportingComponent");
        if controller.is_empty() {
            errs.push(FieldError::required("reportingController", ""));
        }
        for msg in is_qualified_name_errors(controller) {
            errs.push(FieldError::invalid(
                "reportingController",
                Value::String(controller.to_string()),
                msg,
            ));
        }
        for (field, path) in [
            ("reportingInstance", "/reportingInstance"),
            ("action", "/action"),
            ("reason", "/reason"),
        ] {
            let v = str_at(ev, path);
            if v.is_empty() {
                errs.push(FieldError::required(field, ""));
            }
            if v.len() > SHORT_LIMIT {
                errs.push(too_long(field, SHORT_LIMIT));
            }
        }
        if str_at(ev, "/message").len() > NOTE_LIMIT {
            errs.push(too_long("message", NOTE_LIMIT));
        }
    }
    if !strict {
        return errs;
    }
    if !event_time {
        errs.push(FieldError::required("eventTime", ""));
    }
    let ty = str_at(ev, "/type");
    if ty != "Normal" && ty != "Warning" {
        errs.push(FieldError::invalid(
            "type",
            Value::String(String::new()),
            format!("has invalid value: {ty}"),
        ));
    }
    for field in ["firstTimestamp", "lastTimestamp"] {
        if ev.get(field).is_some_and(|v| !v.is_null()) {
            errs.push(FieldError::invalid(
                field,
                Value::String(String::new()),
                "needs to be unset",
            ));
        }
    }
    if ev.get("count").and_then(Value::as_i64).unwrap_or(0) != 0 {
        errs.push(FieldError::invalid(
            "count",
            Value::String(String::new()),
            "needs to be unset",
        ));
    }
    if !str_at(ev, "/source/component").is_empty() || !str_at(ev, "/source/host").is_empty() {
        errs.push(FieldError::invalid(
            "source",
            Value::String(String::new()),
            "needs to be unset",
        ));
    }
    errs
}

/// The messages of `IsDNS1123Subdomain` (`label` false, at most 253 characters) or
/// `IsDNS1123Label` (`label` true, at most 63): the length error first, then the character set.
pub fn dns1123_name_errors(
    name: &str,
    label: bool,
    charset_ok: bool,
    charset_msg: &str,
) -> Vec<String> {
    let max = if label { 63 } else { 253 };
    let mut out = Vec::new();
    if name.len() > max {
        out.push(format!("must be no more than {max} characters"));
    }
    if !charset_ok {
        out.push(charset_msg.to_string());
    }
    out
}

/// The 413 for an object etcd would refuse (`etcdserver: request is too large`), or `None`.
/// The exact serialized size is only computed when a cheap lower bound (the bytes of keys,
/// strings and numbers without quoting or escapes) is over 1 MiB, so ordinary writes pay a walk.
pub fn object_too_large(obj: &Value) -> Option<super::errors::ApiError> {
    if lower_bound(obj) <= 1024 * 1024 {
        return None;
    }
    let exact = serde_json::to_vec(obj).map(|v| v.len()).unwrap_or(0);
    (exact > MAX_OBJECT_BYTES).then(|| request_entity_too_large("etcdserver: request is too large"))
}

/// `errors.NewRequestEntityTooLargeError`.
pub fn request_entity_too_large(detail: &str) -> super::errors::ApiError {
    super::errors::ApiError::new(
        413,
        "RequestEntityTooLarge",
        format!("Request entity too large: {detail}"),
    )
}

fn lower_bound(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 4,
        Value::Number(_) => 1,
        Value::String(s) => s.len() + 2,
        Value::Array(a) => 2 + a.iter().map(lower_bound).sum::<usize>(),
        Value::Object(m) => {
            2 + m
                .iter()
                .map(|(k, x)| k.len() + 3 + lower_bound(x))
                .sum::<usize>()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::invalid_message;
    use serde_json::json;

    fn new_event(message: &str) -> Value {
        json!({"metadata": {"name": "e", "namespace": "ns"},
               "involvedObject": {"kind": "Pod", "namespace": "ns", "name": "p"},
               "eventTime": "2026-01-01T00:00:00.000000Z", "reportingComponent": "op",
               "reportingInstance": "op-1", "action": "Reconcile", "reason": "Done",
               "type": "Normal", "message": message})
    }

    #[test]
    fn event_limits_are_the_apiservers() {
        assert!(validate_event(&new_event("ok"), true).is_empty());
        let errs = validate_event(&new_event(&"x".repeat(1025)), true);
        assert_eq!(
            invalid_message("Event", "", "e", &errs),
            "Event \"e\" is invalid: message: Invalid value: \"\": can have at most 1024 characters"
        );
        assert!(validate_event(&new_event(&"x".repeat(1024)), true).is_empty());
        let mut ev = new_event("m");
        ev["reason"] = json!("r".repeat(129));
        ev["action"] = json!("");
        let errs = validate_event(&ev, false);
        assert_eq!(
            invalid_message("Event", "", "e", &errs),
            "Event \"e\" is invalid: [action: Required value, reason: Invalid value: \"\": can have at most 128 characters]"
        );
        // Old-style events (no eventTime) only check the namespaces, unless written as events.k8s.io.
        let old = json!({"metadata": {"name": "e", "namespace": "ns"}, "involvedObject": {"namespace": "other"},
                         "message": "x".repeat(5000)});
        let errs = validate_event(&old, false);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "involvedObject.namespace");
        assert!(
            validate_event(&old, true)
                .iter()
                .any(|e| e.field == "eventTime")
        );
    }

    #[test]
    fn objects_over_etcds_limit_are_refused() {
        let ok = json!({"data": {"a": "x".repeat(MAX_OBJECT_BYTES - 100)}});
        assert!(object_too_large(&ok).is_none());
        let big = json!({"data": {"a": "x".repeat(MAX_OBJECT_BYTES)}});
        let e = object_too_large(&big).unwrap();
        assert_eq!(e.code, 413);
        assert_eq!(
            e.message,
            "Request entity too large: etcdserver: request is too large"
        );
    }

    #[test]
    fn long_names_get_the_length_message_first() {
        assert_eq!(
            dns1123_name_errors(&"a".repeat(254), false, true, "charset"),
            ["must be no more than 253 characters"]
        );
        assert_eq!(
            dns1123_name_errors(&"A".repeat(64), true, false, "charset"),
            ["must be no more than 63 characters", "charset"]
        );
        assert!(dns1123_name_errors(&"a".repeat(253), false, true, "c").is_empty());
    }
}

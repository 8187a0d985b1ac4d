//! Field errors shaped like the apiserver's `field.Error`, the 422 `Invalid` message and Status causes.

use serde_json::{Map, Value, json};
use std::fmt;

/// The `field.ErrorType` of an error; `reason()` is the metav1 `StatusCause` type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// `FieldValueRequired`, "Required value".
    Required,
    /// `FieldValueInvalid`, "Invalid value".
    Invalid,
    /// `FieldValueTypeInvalid`, also printed "Invalid value".
    TypeInvalid,
    /// `FieldValueNotSupported`, "Unsupported value".
    NotSupported,
    /// `FieldValueDuplicate`, "Duplicate value".
    Duplicate,
    /// `FieldValueTooLong`, "Too long".
    TooLong,
    /// `FieldValueTooMany`, "Too many".
    TooMany,
    /// `FieldValueForbidden`, "Forbidden".
    Forbidden,
    /// `FieldValueNotFound`, "Not found".
    NotFound,
    /// `InternalError`, "Internal error".
    Internal,
}

impl FieldErrorKind {
    /// The machine-readable cause type (`details.causes[].reason`).
    pub fn reason(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::TypeInvalid => "FieldValueTypeInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Duplicate => "FieldValueDuplicate",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::Forbidden => "FieldValueForbidden",
            Self::NotFound => "FieldValueNotFound",
            Self::Internal => "InternalError",
        }
    }

    /// The human text the apiserver prints for this type.
    pub fn text(self) -> &'static str {
        match self {
            Self::Required => "Required value",
            Self::Invalid | Self::TypeInvalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::Duplicate => "Duplicate value",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
            Self::Forbidden => "Forbidden",
            Self::NotFound => "Not found",
            Self::Internal => "Internal error",
        }
    }

    /// Parses a `reason` as written in an `x-kubernetes-validations` rule.
    pub fn from_rule_reason(reason: &str) -> Self {
        match reason {
            "FieldValueForbidden" => Self::Forbidden,
            "FieldValueRequired" => Self::Required,
            "FieldValueDuplicate" => Self::Duplicate,
            _ => Self::Invalid,
        }
    }
}

/// The offending value of a field error, rendered the way Go's `field.Error.ErrorBody` does.
#[derive(Clone, Debug, PartialEq)]
pub enum BadValue {
    /// No value is printed (`Required`, `Forbidden`, `Too long`, or an omitted value).
    Omit,
    /// A JSON value: strings are Go-quoted, numbers/bools printed bare, others as compact JSON.
    Json(Value),
}

/// One field-level validation error.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// Field path as the apiserver prints it, e.g. `spec.layers[0].name`.
    pub field: String,
    /// Error type.
    pub kind: FieldErrorKind,
    /// The detail text after the value (may be empty).
    pub message: String,
    /// The offending value.
    pub value: BadValue,
}

impl FieldError {
    /// A `Required value` error.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::Required,
            message: detail.into(),
            value: BadValue::Omit,
        }
    }

    /// An `Invalid value` error.
    pub fn invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::Invalid,
            message: detail.into(),
            value: BadValue::Json(value),
        }
    }

    /// The error text without the field (Go `ErrorBody`), used as the Status cause message.
    pub fn body(&self) -> String {
        let mut s = match self.kind {
            FieldErrorKind::Required
            | FieldErrorKind::Forbidden
            | FieldErrorKind::TooLong
            | FieldErrorKind::Internal => self.kind.text().to_string(),
            _ => match &self.value {
                BadValue::Omit => self.kind.text().to_string(),
                BadValue::Json(v) => format!("{}: {}", self.kind.text(), go_value(v)),
            },
        };
        if !self.message.is_empty() {
            s.push_str(": ");
            s.push_str(&self.message);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// Renders a value as Go's `ErrorBody` does: `%q` for strings, `%v` for numbers and bools, JSON otherwise.
pub fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        _ => go_json(v),
    }
}

/// Go `%v` of a JSON number (int64 as decimal, float64 in Go's shortest `%g`-like form).
pub fn go_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        go_float(n.as_f64().unwrap_or(0.0))
    }
}

/// Go `%v` of a float64: shortest digits, exponent form when the exponent is < -4 or >= 21.
pub fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return "0".into();
    }
    // Rust's `{:e}` gives the shortest round-trip mantissa and the decimal exponent.
    let e = format!("{f:e}");
    let (mantissa, exp) = match e.split_once('e') {
        Some((m, x)) => (m.to_string(), x.parse::<i32>().unwrap_or(0)),
        None => return f.to_string(),
    };
    if !(-4..21).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        // Plain decimal; Rust's Display of f64 is shortest round-trip without exponent.
        let s = f.to_string();
        s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
    }
}

/// Go `strconv.Quote` for the characters that appear in practice.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go `json.Marshal` of an unstructured value: sorted object keys, HTML-escaped `<`, `>`, `&`.
pub fn go_json(v: &Value) -> String {
    let mut out = String::new();
    write_go_json(v, &mut out);
    out
}

fn write_go_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&json_string(k));
                out.push(':');
                if let Some(child) = m.get(k.as_str()) {
                    write_go_json(child, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, child) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(child, out);
            }
            out.push(']');
        }
        Value::String(s) => out.push_str(&json_string(s)),
        other => out.push_str(&other.to_string()),
    }
}

fn json_string(s: &str) -> String {
    Value::String(s.to_string())
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// Go's `utilerrors.Aggregate` text: one message bare, several deduplicated inside `[...]`.
pub fn aggregate_message(errors: &[FieldError]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for e in errors {
        let m = e.to_string();
        if !seen.contains(&m) {
            seen.push(m);
        }
    }
    if seen.len() == 1 {
        seen.remove(0)
    } else {
        format!("[{}]", seen.join(", "))
    }
}

/// The 422 message: `ModelEntry.hypersync.io "bad" is invalid: spec.source: Required value`.
/// `group` is empty for the core group (`Pod "x" is invalid: ...`).
pub fn invalid_message(kind: &str, group: &str, name: &str, errors: &[FieldError]) -> String {
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    if errors.is_empty() {
        format!("{qualified} {} is invalid", go_quote(name))
    } else {
        format!(
            "{qualified} {} is invalid: {}",
            go_quote(name),
            aggregate_message(errors)
        )
    }
}

/// The `details.causes` entries of the Status (`reason`, `message` = error body, `field`).
pub fn status_causes(errors: &[FieldError]) -> Vec<Value> {
    errors
        .iter()
        .map(|e| json!({ "reason": e.kind.reason(), "message": e.body(), "field": e.field }))
        .collect()
}

/// The 400 `BadRequest` message for `fieldValidation=Strict` when a custom object carries fields
/// the schema does not declare (paths as returned by `StructuralSchema::unknown_fields`):
/// `ModelEntry in version "v1alpha1" cannot be handled as a ModelEntry: strict decoding error: unknown field "spec.colour"`.
pub fn strict_decoding_message(kind: &str, version: &str, unknown_fields: &[String]) -> String {
    let fields: Vec<String> = unknown_fields
        .iter()
        .map(|f| format!("unknown field {}", go_quote(f)))
        .collect();
    format!(
        "{kind} in version {} cannot be handled as a {kind}: strict decoding error: {}",
        go_quote(version),
        fields.join(", ")
    )
}

/// The `Warning` header text for `fieldValidation=Warn` (one per unknown field): `unknown field "spec.colour"`.
pub fn unknown_field_warning(field: &str) -> String {
    format!("unknown field {}", go_quote(field))
}

/// The full metav1 `Status` for a 422 `Invalid` response.
pub fn invalid_status(kind: &str, group: &str, name: &str, errors: &[FieldError]) -> Value {
    let mut details = Map::new();
    details.insert("name".into(), Value::String(name.to_string()));
    if !group.is_empty() {
        details.insert("group".into(), Value::String(group.to_string()));
    }
    details.insert("kind".into(), Value::String(kind.to_string()));
    details.insert("causes".into(), Value::Array(status_causes(errors)));
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": invalid_message(kind, group, name, errors),
        "reason": "Invalid",
        "details": Value::Object(details),
        "code": 422,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_float_matches_go_percent_v() {
        assert_eq!(go_float(0.5), "0.5");
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(123456789.0), "123456789");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(-2.5), "-2.5");
    }

    #[test]
    fn body_formats_values_like_go() {
        let e = FieldError::invalid(
            "spec.replicas",
            json!(-1),
            "spec.replicas in body should be greater than or equal to 0",
        );
        assert_eq!(
            e.to_string(),
            "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0"
        );
        let d = FieldError {
            field: "spec.ports[1]".into(),
            kind: FieldErrorKind::Duplicate,
            message: String::new(),
            value: BadValue::Json(json!({"port": 80, "name": "a<b"})),
        };
        assert_eq!(
            d.to_string(),
            "spec.ports[1]: Duplicate value: {\"name\":\"a\\u003cb\",\"port\":80}"
        );
        let r = FieldError::required("spec.source", "");
        assert_eq!(r.to_string(), "spec.source: Required value");
        assert_eq!(go_quote("a\"b\n"), "\"a\\\"b\\n\"");
    }

    #[test]
    fn invalid_message_single_and_many() {
        let one = [FieldError::invalid(
            "spec.source",
            json!("object"),
            "exactly one of local or remote must be set",
        )];
        assert_eq!(
            invalid_message("ModelEntry", "hypersync.io", "bad", &one),
            "ModelEntry.hypersync.io \"bad\" is invalid: spec.source: Invalid value: \"object\": exactly one of local or remote must be set"
        );
        let many = [
            FieldError::required("spec.a", ""),
            FieldError {
                field: "spec.b".into(),
                kind: FieldErrorKind::NotSupported,
                message: "supported values: \"A\", \"B\"".into(),
                value: BadValue::Json(json!("X")),
            },
            FieldError::required("spec.a", ""),
        ];
        assert_eq!(
            invalid_message("ModelEntry", "hypersync.io", "bad", &many),
            "ModelEntry.hypersync.io \"bad\" is invalid: [spec.a: Required value, spec.b: Unsupported value: \"X\": supported values: \"A\", \"B\"]"
        );
        assert_eq!(invalid_message("Pod", "", "p", &[]), "Pod \"p\" is invalid");
    }

    #[test]
    fn strict_decoding_text() {
        assert_eq!(
            strict_decoding_message(
                "Widget",
                "v1",
                &["spec.colour".to_string(), "spec.x".to_string()]
            ),
            "Widget in version \"v1\" cannot be handled as a Widget: strict decoding error: unknown field \"spec.colour\", unknown field \"spec.x\""
        );
        assert_eq!(unknown_field_warning("spec.a"), "unknown field \"spec.a\"");
    }

    #[test]
    fn status_has_causes() {
        let errs = [FieldError::required("spec.a", "")];
        let st = invalid_status("ModelEntry", "hypersync.io", "bad", &errs);
        assert_eq!(st["code"], 422);
        assert_eq!(st["reason"], "Invalid");
        assert_eq!(st["details"]["group"], "hypersync.io");
        assert_eq!(
            st["details"]["causes"][0],
            json!({"reason": "FieldValueRequired", "message": "Required value", "field": "spec.a"})
        );
    }
}

//! Patch content types as clients send them, the unsupported-media-type answer for strategic
//! patches on custom resources, and decoding of apply bodies (YAML or JSON).

use serde_json::Value;

use super::PatchError;

/// The four PATCH flavours, by request `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json` (built-in kinds only).
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// Parses a `Content-Type` header value (parameters such as `; charset=utf-8` ignored).
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Strategic => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// The 415 message for a patch type the resource does not accept (strategic merge patch on a
/// custom resource, or an unknown content type).
pub fn unsupported_patch_message(builtin: bool) -> String {
    let mut accepted = vec![
        PatchType::Json.content_type(),
        PatchType::Merge.content_type(),
        PatchType::Apply.content_type(),
    ];
    if builtin {
        accepted.insert(2, PatchType::Strategic.content_type());
    }
    format!(
        "the body of the request was in an unknown format - accepted media types include: {}",
        accepted.join(", ")
    )
}

/// Decodes a server-side apply body: JSON (what kube-rs sends) or YAML (what kubectl may send).
pub fn parse_apply_body(body: &[u8]) -> Result<Value, PatchError> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| PatchError::BadRequest(format!("error decoding YAML: {e}")))?;
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| PatchError::BadRequest(format!("error decoding YAML: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_types_map_to_patch_types() {
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml"),
            Some(PatchType::Apply)
        );
        assert_eq!(
            PatchType::from_content_type("application/strategic-merge-patch+json"),
            Some(PatchType::Strategic)
        );
        assert_eq!(
            PatchType::from_content_type("application/json-patch+json"),
            Some(PatchType::Json)
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
    }

    #[test]
    fn unsupported_message_lists_accepted_types() {
        assert_eq!(
            unsupported_patch_message(false),
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
        );
        assert!(unsupported_patch_message(true).contains("strategic-merge-patch"));
    }

    #[test]
    fn apply_bodies_decode_from_json_or_yaml() {
        let want = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
        assert_eq!(
            parse_apply_body(want.to_string().as_bytes()),
            Ok(want.clone())
        );
        let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"1\"\n";
        assert_eq!(parse_apply_body(yaml.as_bytes()), Ok(want));
        let err = parse_apply_body(b"a: [unclosed").expect_err("bad yaml");
        assert_eq!(err.code(), 400);
    }
}

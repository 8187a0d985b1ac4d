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

/// Decodes a server-side apply body (`application/apply-patch+yaml`). Clients nearly always send
/// JSON in it (kube-rs, kubectl, client-go), and a JSON object is YAML that decodes to the same
/// value, so a body that opens with `{` is read by the JSON parser, several times cheaper; anything
/// else, or JSON that fails, is read as YAML, whose error the answer carries (the apiserver's
/// `error decoding YAML: ...`).
pub fn parse_apply_body(body: &[u8]) -> Result<Value, PatchError> {
    let looks_like_json = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    if looks_like_json && let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    serde_saphyr::from_slice::<Value>(body)
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

    /// The JSON fast path must decode every JSON body to the value the YAML parser gives.
    #[test]
    fn json_apply_bodies_decode_as_yaml_does() {
        let bodies = [
            r#"{"metadata":{"name":"c","labels":{"a":"b"}},"data":{"k":"v"}}"#,
            r#"  {"spec":{"replicas":3,"ratio":1.5,"big":18446744073709551615,"neg":-9223372036854775808}}"#,
            r#"{"a":1e3,"b":-2.5E-3,"c":0,"d":true,"e":false,"f":null,"g":[],"h":{}}"#,
            r#"{"s":"caf\u00e9 \ud83d\ude00 \/ \\ \" \n\t","t":"yes","u":"1.0","v":"~","w":"null"}"#,
            "{\"x\": [1, [2, [3, {\"y\": \"z\"}]]],\n \"k\": \"multi word value: with colon\"}\n",
            r##"{"": "empty key", "#k": "hash", "a b": "space"}"##,
        ];
        for body in bodies {
            let yaml: Value = serde_saphyr::from_slice(body.as_bytes()).expect(body);
            assert_eq!(parse_apply_body(body.as_bytes()), Ok(yaml), "{body}");
        }
    }

    /// A body that looks like JSON but is not falls back to YAML and its error, as before.
    #[test]
    fn broken_json_apply_bodies_answer_the_yaml_error() {
        let bodies: [&[u8]; 4] = [
            b"{\"a\": }",
            b"{\"a\": 1",
            b"{\"a\": [1,}",
            b"{\"a\": \"\xff\"}",
        ];
        for body in bodies {
            let yaml = serde_saphyr::from_slice::<Value>(body).map(|_| ());
            let got = parse_apply_body(body);
            match yaml {
                Err(e) => assert_eq!(
                    got,
                    Err(PatchError::BadRequest(format!("error decoding YAML: {e}")))
                ),
                Ok(()) => assert!(got.is_ok(), "{got:?}"),
            }
        }
        // Duplicate keys: the last wins, as in the apiserver's non-strict decode (saphyr's YAML
        // decode rejects them).
        assert_eq!(
            parse_apply_body(br#"{"a": 1, "a": 2}"#),
            Ok(json!({"a": 2}))
        );
        // YAML flow mappings that are not JSON still decode.
        assert_eq!(
            parse_apply_body(b"{a: 1, b: [x, z]}"),
            Ok(json!({"a": 1, "b": ["x", "z"]}))
        );
    }
}

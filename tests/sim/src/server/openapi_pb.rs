//! `GET /openapi/v2` in protobuf (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, the
//! gnostic `openapi.v2.Document` message), which is all client-go's `OpenAPISchema()` accepts.
//!
//! kubectl reads it when the v3 document has no PATCH operation for a kind (the review kinds:
//! TokenReview, SubjectAccessReview, ...), to learn whether the server takes `fieldValidation`
//! (its legacy query-param verifier walks `paths` for the PATCH operation whose
//! `x-kubernetes-group-version-kind` extension names the kind). So the encoding carries `swagger`,
//! `info` and every path with its operations (tags, description, operationId, consumes, produces,
//! schemes, parameters, vendor extensions); `definitions` and `responses` are left out, which makes
//! kubectl's client-side schema validation skip (it finds no model), as for an unknown kind.

use serde_json::Value;

/// Protobuf wire writer: length-delimited and varint fields.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.varint(u64::from(field) << 3 | 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn str(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn strs(&mut self, field: u32, v: Option<&Value>) {
        for s in v.and_then(Value::as_array).into_iter().flatten() {
            if let Some(s) = s.as_str() {
                self.bytes(field, s.as_bytes());
            }
        }
    }

    fn bool(&mut self, field: u32, b: bool) {
        if b {
            self.varint(u64::from(field) << 3);
            self.varint(1);
        }
    }

    fn msg(&mut self, field: u32, m: Msg) {
        self.bytes(field, &m.0);
    }
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// `NamedAny` entries for the `x-` keys of an object (values as YAML, here their JSON text).
fn vendor_extensions(m: &mut Msg, field: u32, v: &Value) {
    for (k, x) in v.as_object().into_iter().flatten() {
        if k.starts_with("x-") {
            let mut any = Msg::default();
            any.str(2, &x.to_string());
            let mut named = Msg::default();
            named.str(1, k);
            named.msg(2, any);
            m.msg(field, named);
        }
    }
}

/// A `ParametersItem`: a `$ref`, a body parameter, or a non-body (query/path/header) parameter.
fn parameter(p: &Value) -> Msg {
    let mut item = Msg::default();
    if let Some(r) = p.get("$ref").and_then(Value::as_str) {
        let mut jr = Msg::default();
        jr.str(1, r);
        item.msg(2, jr);
        return item;
    }
    let mut param = Msg::default();
    let (required, inn, name, desc) = (
        p.get("required").and_then(Value::as_bool).unwrap_or(false),
        s(p, "in"),
        s(p, "name"),
        s(p, "description"),
    );
    if inn == "body" {
        let mut b = Msg::default();
        b.str(1, desc);
        b.str(2, name);
        b.str(3, inn);
        b.bool(4, required);
        vendor_extensions(&mut b, 6, p);
        param.msg(1, b);
    } else {
        let mut sub = Msg::default();
        sub.bool(1, required);
        sub.str(2, inn);
        sub.str(3, desc);
        sub.str(4, name);
        let (oneof, ext) = match inn {
            "header" => {
                sub.str(5, s(p, "type"));
                (1, 22)
            }
            "formData" => {
                sub.str(6, s(p, "type"));
                (2, 23)
            }
            "path" => {
                sub.str(5, s(p, "type"));
                (4, 22)
            }
            _ => {
                sub.bool(
                    5,
                    p.get("allowEmptyValue")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                );
                sub.str(6, s(p, "type"));
                sub.bool(
                    20,
                    p.get("uniqueItems")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                );
                (3, 23)
            }
        };
        vendor_extensions(&mut sub, ext, p);
        let mut nb = Msg::default();
        nb.msg(oneof, sub);
        param.msg(2, nb);
    }
    item.msg(1, param);
    item
}

/// The `parameters` list of an operation or path item.
fn parameters(v: &Value) -> impl Iterator<Item = &Value> {
    v.get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn operation(op: &Value) -> Msg {
    let mut m = Msg::default();
    m.strs(1, op.get("tags"));
    m.str(2, s(op, "summary"));
    m.str(3, s(op, "description"));
    m.str(5, s(op, "operationId"));
    m.strs(6, op.get("produces"));
    m.strs(7, op.get("consumes"));
    for p in parameters(op) {
        m.msg(8, parameter(p));
    }
    m.strs(10, op.get("schemes"));
    m.bool(
        11,
        op.get("deprecated")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    );
    vendor_extensions(&mut m, 13, op);
    m
}

/// Encodes an OpenAPI v2 (swagger) JSON document as a gnostic `openapi.v2.Document` (see the
/// module doc for what is carried).
pub fn v2_document(doc: &Value) -> Vec<u8> {
    let mut d = Msg::default();
    d.str(1, s(doc, "swagger"));
    if let Some(info) = doc.get("info") {
        let mut i = Msg::default();
        i.str(1, s(info, "title"));
        i.str(2, s(info, "version"));
        d.msg(2, i);
    }
    let mut paths = Msg::default();
    for (path, item) in doc
        .get("paths")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let mut pi = Msg::default();
        for (field, verb) in [
            (2, "get"),
            (3, "put"),
            (4, "post"),
            (5, "delete"),
            (6, "options"),
            (7, "head"),
            (8, "patch"),
        ] {
            if let Some(op) = item.get(verb) {
                pi.msg(field, operation(op));
            }
        }
        for p in parameters(item) {
            pi.msg(9, parameter(p));
        }
        vendor_extensions(&mut pi, 10, item);
        let mut named = Msg::default();
        named.str(1, path);
        named.msg(2, pi);
        paths.msg(2, named);
    }
    d.msg(8, paths);
    d.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Reads one level of a protobuf message: (field, wire type, payload or varint value).
    fn fields(mut b: &[u8]) -> Vec<(u32, Vec<u8>)> {
        fn varint(b: &mut &[u8]) -> u64 {
            let mut v = 0u64;
            let mut shift = 0;
            loop {
                let byte = b[0];
                *b = &b[1..];
                v |= u64::from(byte & 0x7f) << shift;
                if byte < 0x80 {
                    return v;
                }
                shift += 7;
            }
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = varint(&mut b);
            let (field, wire) = ((key >> 3) as u32, key & 7);
            if wire == 2 {
                let len = varint(&mut b) as usize;
                out.push((field, b[..len].to_vec()));
                b = &b[len..];
            } else {
                out.push((field, varint(&mut b).to_le_bytes().to_vec()));
            }
        }
        out
    }

    fn get(b: &[u8], field: u32) -> Vec<Vec<u8>> {
        fields(b)
            .into_iter()
            .filter(|(f, _)| *f == field)
            .map(|(_, v)| v)
            .collect()
    }

    #[test]
    fn encodes_paths_operations_parameters_and_extensions() {
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "paths": {"/api/v1/namespaces/{name}": {
                "patch": {
                    "operationId": "patchCoreV1Namespace",
                    "consumes": ["application/json-patch+json"],
                    "parameters": [
                        {"name": "body", "in": "body", "required": true},
                        {"name": "fieldValidation", "in": "query", "type": "string", "uniqueItems": true},
                        {"$ref": "#/parameters/pretty"}
                    ],
                    "x-kubernetes-group-version-kind": {"group": "", "kind": "Namespace", "version": "v1"}
                },
                "parameters": [{"name": "name", "in": "path", "required": true, "type": "string"}]
            }}
        });
        let pb = v2_document(&doc);
        assert_eq!(get(&pb, 1), vec![b"2.0".to_vec()]);
        let info = &get(&pb, 2)[0];
        assert_eq!(get(info, 2), vec![b"v1.33.0".to_vec()]);
        let paths = &get(&pb, 8)[0];
        let named = &get(paths, 2)[0];
        assert_eq!(get(named, 1), vec![b"/api/v1/namespaces/{name}".to_vec()]);
        let item = &get(named, 2)[0];
        let patch = &get(item, 8)[0];
        assert_eq!(get(patch, 5), vec![b"patchCoreV1Namespace".to_vec()]);
        let params = get(patch, 8);
        assert_eq!(params.len(), 3);
        // Body parameter: ParametersItem.parameter.body_parameter.name
        let body = &get(&get(&params[0], 1)[0], 1)[0];
        assert_eq!(get(body, 2), vec![b"body".to_vec()]);
        // Query parameter: ...parameter.non_body_parameter.query_parameter_sub_schema.name
        let q = &get(&get(&get(&params[1], 1)[0], 2)[0], 3)[0];
        assert_eq!(get(q, 4), vec![b"fieldValidation".to_vec()]);
        assert_eq!(get(q, 2), vec![b"query".to_vec()]);
        // $ref: ParametersItem.json_reference._ref
        assert_eq!(
            get(&get(&params[2], 2)[0], 1),
            vec![b"#/parameters/pretty".to_vec()]
        );
        // The GVK extension, its value as YAML (JSON text).
        let ext = &get(patch, 13)[0];
        assert_eq!(
            get(ext, 1),
            vec![b"x-kubernetes-group-version-kind".to_vec()]
        );
        let yaml = String::from_utf8(get(&get(ext, 2)[0], 2)[0].clone()).unwrap();
        let parsed: Value = serde_json::from_str(&yaml).unwrap();
        assert_eq!(parsed["kind"], "Namespace");
        // Path-level parameters go to PathItem.parameters as path parameters.
        let pp = &get(item, 9)[0];
        let path_sub = &get(&get(&get(pp, 1)[0], 2)[0], 4)[0];
        assert_eq!(get(path_sub, 4), vec![b"name".to_vec()]);
    }
}

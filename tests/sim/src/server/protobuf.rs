//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) into wire JSON,
//! for the kinds client-go's typed clients send that way: Helm 3.19 (client-go 0.34) stores its
//! release records as Secrets (or ConfigMaps) through the typed client, which defaults to protobuf for
//! built-in types and does not fall back to JSON. Covered: the `k8s\0` envelope (`runtime.Unknown`),
//! `v1` Secret, ConfigMap, DeleteOptions and ObjectMeta (with owner references, managed fields, times).

use base64::Engine;
use serde_json::{Map, Value, json};

/// The protobuf media type of Kubernetes objects.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\x00";

/// A body that cannot be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtobufError {
    #[error("failed to decode protobuf: missing the k8s envelope prefix")]
    NoEnvelope,
    #[error("failed to decode protobuf: truncated or malformed message")]
    Malformed,
    #[error("failed to decode protobuf: unsupported wire type {0}")]
    WireType(u8),
    #[error("failed to decode protobuf: no protobuf decoding for {0}")]
    UnsupportedKind(String),
}

/// Whether a Content-Type header names the Kubernetes protobuf encoding.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(PROTOBUF_CONTENT_TYPE))
}

/// One decoded field value.
#[derive(Clone, Copy, Debug)]
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed64,
    Fixed32,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or(ProtobufError::Malformed)?;
            self.pos += 1;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(ProtobufError::Malformed)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtobufError> {
        let end = self.pos.checked_add(n).ok_or(ProtobufError::Malformed)?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(ProtobufError::Malformed)?;
        self.pos = end;
        Ok(s)
    }

    /// The next (field number, value), or `None` at the end.
    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, ProtobufError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = key >> 3;
        let field = match (key & 7) as u8 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed64
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| ProtobufError::Malformed)?;
                Field::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Field::Fixed32
            }
            w => return Err(ProtobufError::WireType(w)),
        };
        Ok(Some((number, field)))
    }
}

fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, ProtobufError> {
    let mut r = Reader::new(buf);
    let mut out = Vec::new();
    while let Some(f) = r.next()? {
        out.push(f);
    }
    Ok(out)
}

fn string(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A `map<string, string|bytes>` entry (key = 1, value = 2).
fn map_entry(b: &[u8]) -> Result<(String, &[u8]), ProtobufError> {
    let mut key = String::new();
    let mut value: &[u8] = &[];
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(k)) => key = string(k),
            (2, Field::Bytes(v)) => value = v,
            _ => {}
        }
    }
    Ok((key, value))
}

/// `metav1.Time` (seconds = 1, nanos = 2) as RFC 3339; `None` for the zero time.
fn time(b: &[u8]) -> Result<Option<Value>, ProtobufError> {
    let mut seconds: i64 = 0;
    for (n, f) in fields(b)? {
        if let (1, Field::Varint(v)) = (n, f) {
            seconds = v as i64;
        }
    }
    if seconds == 0 {
        return Ok(None);
    }
    Ok(chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| Value::String(t.format("%Y-%m-%dT%H:%M:%SZ").to_string())))
}

fn owner_reference(b: &[u8]) -> Result<Value, ProtobufError> {
    let mut o = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(v)) => {
                o.insert("kind".into(), json!(string(v)));
            }
            (3, Field::Bytes(v)) => {
                o.insert("name".into(), json!(string(v)));
            }
            (4, Field::Bytes(v)) => {
                o.insert("uid".into(), json!(string(v)));
            }
            (5, Field::Bytes(v)) => {
                o.insert("apiVersion".into(), json!(string(v)));
            }
            (6, Field::Varint(v)) => {
                o.insert("controller".into(), json!(v != 0));
            }
            (7, Field::Varint(v)) => {
                o.insert("blockOwnerDeletion".into(), json!(v != 0));
            }
            _ => {}
        }
    }
    Ok(Value::Object(o))
}

fn managed_fields_entry(b: &[u8]) -> Result<Value, ProtobufError> {
    let mut o = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(v)) => {
                o.insert("manager".into(), json!(string(v)));
            }
            (2, Field::Bytes(v)) => {
                o.insert("operation".into(), json!(string(v)));
            }
            (3, Field::Bytes(v)) => {
                o.insert("apiVersion".into(), json!(string(v)));
            }
            (4, Field::Bytes(v)) => {
                if let Some(t) = time(v)? {
                    o.insert("time".into(), t);
                }
            }
            (6, Field::Bytes(v)) => {
                o.insert("fieldsType".into(), json!(string(v)));
            }
            (7, Field::Bytes(v)) => {
                // FieldsV1 { raw = 1 } holds the JSON of the field set.
                for (fnum, ff) in fields(v)? {
                    if let (1, Field::Bytes(raw)) = (fnum, ff) {
                        let parsed: Value =
                            serde_json::from_slice(raw).map_err(|_| ProtobufError::Malformed)?;
                        o.insert("fieldsV1".into(), parsed);
                    }
                }
            }
            (8, Field::Bytes(v)) if !v.is_empty() => {
                o.insert("subresource".into(), json!(string(v)));
            }
            _ => {}
        }
    }
    Ok(Value::Object(o))
}

fn object_meta(b: &[u8]) -> Result<Value, ProtobufError> {
    let mut o = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    let mut owners = Vec::new();
    let mut finalizers = Vec::new();
    let mut managed = Vec::new();
    let str_field = |n: u64| match n {
        1 => "name",
        2 => "generateName",
        3 => "namespace",
        4 => "selfLink",
        5 => "uid",
        _ => "resourceVersion",
    };
    for (n, f) in fields(b)? {
        match (n, f) {
            (1..=6, Field::Bytes(v)) if !v.is_empty() => {
                o.insert(str_field(n).into(), json!(string(v)));
            }
            (7, Field::Varint(v)) if v != 0 => {
                o.insert("generation".into(), json!(v as i64));
            }
            (8, Field::Bytes(v)) => {
                if let Some(t) = time(v)? {
                    o.insert("creationTimestamp".into(), t);
                }
            }
            (9, Field::Bytes(v)) => {
                if let Some(t) = time(v)? {
                    o.insert("deletionTimestamp".into(), t);
                }
            }
            (10, Field::Varint(v)) => {
                o.insert("deletionGracePeriodSeconds".into(), json!(v as i64));
            }
            (11, Field::Bytes(v)) => {
                let (k, val) = map_entry(v)?;
                labels.insert(k, json!(string(val)));
            }
            (12, Field::Bytes(v)) => {
                let (k, val) = map_entry(v)?;
                annotations.insert(k, json!(string(val)));
            }
            (13, Field::Bytes(v)) => owners.push(owner_reference(v)?),
            (14, Field::Bytes(v)) => finalizers.push(json!(string(v))),
            (17, Field::Bytes(v)) => managed.push(managed_fields_entry(v)?),
            _ => {}
        }
    }
    if !labels.is_empty() {
        o.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        o.insert("annotations".into(), Value::Object(annotations));
    }
    if !owners.is_empty() {
        o.insert("ownerReferences".into(), Value::Array(owners));
    }
    if !finalizers.is_empty() {
        o.insert("finalizers".into(), Value::Array(finalizers));
    }
    if !managed.is_empty() {
        o.insert("managedFields".into(), Value::Array(managed));
    }
    Ok(Value::Object(o))
}

fn b64(b: &[u8]) -> Value {
    json!(base64::engine::general_purpose::STANDARD.encode(b))
}

fn secret(raw: &[u8]) -> Result<Map<String, Value>, ProtobufError> {
    let mut o = Map::new();
    let mut data = Map::new();
    let mut string_data = Map::new();
    for (n, f) in fields(raw)? {
        match (n, f) {
            (1, Field::Bytes(v)) => {
                o.insert("metadata".into(), object_meta(v)?);
            }
            (2, Field::Bytes(v)) => {
                let (k, val) = map_entry(v)?;
                data.insert(k, b64(val));
            }
            (3, Field::Bytes(v)) if !v.is_empty() => {
                o.insert("type".into(), json!(string(v)));
            }
            (4, Field::Bytes(v)) => {
                let (k, val) = map_entry(v)?;
                string_data.insert(k, json!(string(val)));
            }
            (5, Field::Varint(v)) => {
                o.insert("immutable".into(), json!(v != 0));
            }
            _ => {}
        }
    }
    if !data.is_empty() {
        o.insert("data".into(), Value::Object(data));
    }
    if !string_data.is_empty() {
        o.insert("stringData".into(), Value::Object(string_data));
    }
    Ok(o)
}

fn config_map(raw: &[u8]) -> Result<Map<String, Value>, ProtobufError> {
    let mut o = Map::new();
    let mut data = Map::new();
    let mut binary = Map::new();
    for (n, f) in fields(raw)? {
        match (n, f) {
            (1, Field::Bytes(v)) => {
                o.insert("metadata".into(), object_meta(v)?);
            }
            (2, Field::Bytes(v)) => {
                let (k, val) = map_entry(v)?;
                data.insert(k, json!(string(val)));
            }
            (3, Field::Bytes(v)) => {
                let (k, val) = map_entry(v)?;
                binary.insert(k, b64(val));
            }
            (4, Field::Varint(v)) => {
                o.insert("immutable".into(), json!(v != 0));
            }
            _ => {}
        }
    }
    if !data.is_empty() {
        o.insert("data".into(), Value::Object(data));
    }
    if !binary.is_empty() {
        o.insert("binaryData".into(), Value::Object(binary));
    }
    Ok(o)
}

fn delete_options(raw: &[u8]) -> Result<Map<String, Value>, ProtobufError> {
    let mut o = Map::new();
    let mut dry_run = Vec::new();
    for (n, f) in fields(raw)? {
        match (n, f) {
            (1, Field::Varint(v)) => {
                o.insert("gracePeriodSeconds".into(), json!(v as i64));
            }
            (2, Field::Bytes(v)) => {
                let mut p = Map::new();
                for (pn, pf) in fields(v)? {
                    match (pn, pf) {
                        (1, Field::Bytes(s)) => {
                            p.insert("uid".into(), json!(string(s)));
                        }
                        (2, Field::Bytes(s)) => {
                            p.insert("resourceVersion".into(), json!(string(s)));
                        }
                        _ => {}
                    }
                }
                o.insert("preconditions".into(), Value::Object(p));
            }
            (3, Field::Varint(v)) => {
                o.insert("orphanDependents".into(), json!(v != 0));
            }
            (4, Field::Bytes(v)) if !v.is_empty() => {
                o.insert("propagationPolicy".into(), json!(string(v)));
            }
            (5, Field::Bytes(v)) => dry_run.push(json!(string(v))),
            _ => {}
        }
    }
    if !dry_run.is_empty() {
        o.insert("dryRun".into(), Value::Array(dry_run));
    }
    Ok(o)
}

/// Decodes a `k8s\0`-prefixed protobuf body into the object's wire JSON.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let rest = body.strip_prefix(MAGIC).ok_or(ProtobufError::NoEnvelope)?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (n, f) in fields(rest)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (tn, tf) in fields(tm)? {
                    match (tn, tf) {
                        (1, Field::Bytes(v)) => api_version = string(v),
                        (2, Field::Bytes(v)) => kind = string(v),
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(v)) => raw = v,
            _ => {}
        }
    }
    let mut obj = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Secret") => secret(raw)?,
        ("v1", "ConfigMap") => config_map(raw)?,
        (_, "DeleteOptions") => delete_options(raw)?,
        _ => {
            return Err(ProtobufError::UnsupportedKind(format!(
                "{api_version}, Kind={kind}"
            )));
        }
    };
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!(kind));
    out.append(&mut obj);
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn bytes_field(n: u64, b: &[u8], out: &mut Vec<u8>) {
        varint(n << 3 | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }

    fn varint_field(n: u64, v: u64, out: &mut Vec<u8>) {
        varint(n << 3, out);
        varint(v, out);
    }

    fn entry(k: &str, v: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        bytes_field(1, k.as_bytes(), &mut e);
        bytes_field(2, v, &mut e);
        e
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut tm = Vec::new();
        bytes_field(1, api_version.as_bytes(), &mut tm);
        bytes_field(2, kind.as_bytes(), &mut tm);
        let mut u = MAGIC.to_vec();
        bytes_field(1, &tm, &mut u);
        bytes_field(2, raw, &mut u);
        bytes_field(3, b"", &mut u);
        bytes_field(4, b"", &mut u);
        u
    }

    /// A Secret shaped like Helm's release record, as gogo-protobuf writes it (empty strings included).
    fn helm_secret() -> Vec<u8> {
        let mut meta = Vec::new();
        bytes_field(1, b"sh.helm.release.v1.t1.v1", &mut meta);
        bytes_field(2, b"", &mut meta);
        bytes_field(3, b"default", &mut meta);
        bytes_field(5, b"0b6f", &mut meta);
        bytes_field(6, b"42", &mut meta);
        varint_field(7, 0, &mut meta);
        let mut t = Vec::new();
        varint_field(1, 1_795_705_462, &mut t);
        bytes_field(8, &t, &mut meta);
        bytes_field(11, &entry("owner", b"helm"), &mut meta);
        bytes_field(11, &entry("name", b"t1"), &mut meta);
        let mut mf = Vec::new();
        bytes_field(1, b"helm", &mut mf);
        bytes_field(2, b"Update", &mut mf);
        bytes_field(3, b"v1", &mut mf);
        bytes_field(6, b"FieldsV1", &mut mf);
        let mut fv1 = Vec::new();
        bytes_field(1, br#"{"f:data":{".":{}}}"#, &mut fv1);
        bytes_field(7, &fv1, &mut mf);
        bytes_field(8, b"", &mut mf);
        bytes_field(17, &mf, &mut meta);
        let mut s = Vec::new();
        bytes_field(1, &meta, &mut s);
        bytes_field(2, &entry("release", b"H4sI\x00\xff"), &mut s);
        bytes_field(3, b"helm.sh/release.v1", &mut s);
        envelope("v1", "Secret", &s)
    }

    #[test]
    fn decodes_a_helm_release_secret() {
        let v = decode(&helm_secret()).expect("decodes");
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "Secret");
        assert_eq!(v["type"], "helm.sh/release.v1");
        let m = &v["metadata"];
        assert_eq!(m["name"], "sh.helm.release.v1.t1.v1");
        assert_eq!(m["namespace"], "default");
        assert_eq!(m["resourceVersion"], "42");
        assert!(m.get("generateName").is_none(), "empty strings are omitted");
        assert!(m.get("generation").is_none(), "zero numbers are omitted");
        assert_eq!(m["creationTimestamp"], "2026-11-26T15:04:22Z");
        assert_eq!(m["labels"], json!({ "owner": "helm", "name": "t1" }));
        assert_eq!(m["managedFields"][0]["manager"], "helm");
        assert_eq!(
            m["managedFields"][0]["fieldsV1"],
            json!({ "f:data": { ".": {} } })
        );
        assert!(m["managedFields"][0].get("subresource").is_none());
        assert_eq!(v["data"]["release"], "SDRzSQD/");
    }

    #[test]
    fn decodes_config_maps_and_delete_options() {
        let mut meta = Vec::new();
        bytes_field(1, b"cm", &mut meta);
        let mut owner = Vec::new();
        bytes_field(1, b"Deployment", &mut owner);
        bytes_field(3, b"web", &mut owner);
        bytes_field(4, b"u-1", &mut owner);
        bytes_field(5, b"apps/v1", &mut owner);
        varint_field(6, 1, &mut owner);
        bytes_field(13, &owner, &mut meta);
        bytes_field(14, b"example.com/keep", &mut meta);
        let mut cm = Vec::new();
        bytes_field(1, &meta, &mut cm);
        bytes_field(2, &entry("mode", b"fast"), &mut cm);
        bytes_field(3, &entry("blob", b"\x01\x02"), &mut cm);
        let v = decode(&envelope("v1", "ConfigMap", &cm)).expect("decodes");
        assert_eq!(v["data"]["mode"], "fast");
        assert_eq!(v["binaryData"]["blob"], "AQI=");
        assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "Deployment");
        assert_eq!(v["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(v["metadata"]["finalizers"], json!(["example.com/keep"]));

        let mut d = Vec::new();
        varint_field(1, 0, &mut d);
        bytes_field(4, b"Background", &mut d);
        let v = decode(&envelope("meta.k8s.io/v1", "DeleteOptions", &d)).expect("decodes");
        assert_eq!(v["propagationPolicy"], "Background");
        assert_eq!(v["gracePeriodSeconds"], 0);
    }

    #[test]
    fn rejects_bad_input_without_panicking() {
        assert_eq!(
            decode(b"{\"kind\":\"Secret\"}"),
            Err(ProtobufError::NoEnvelope)
        );
        let full = helm_secret();
        for cut in [5, 20, full.len() / 2, full.len() - 1] {
            assert!(decode(&full[..cut]).is_err(), "truncated at {cut}");
        }
        let mut pod = Vec::new();
        bytes_field(1, b"", &mut pod);
        assert!(matches!(
            decode(&envelope("v1", "Pod", &pod)),
            Err(ProtobufError::UnsupportedKind(_))
        ));
        assert!(is_protobuf("application/vnd.kubernetes.protobuf"));
        assert!(is_protobuf(
            "application/vnd.kubernetes.protobuf; charset=utf-8"
        ));
        assert!(!is_protobuf("application/json"));
    }
}

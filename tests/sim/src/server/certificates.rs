//! `certificates.k8s.io/v1` CertificateSigningRequests: validation on create
//! (`pkg/apis/certificates/validation/validation.go`: the PEM `CERTIFICATE REQUEST` with a valid
//! signature, `signerName`, `usages`, `expirationSeconds`), the requester recorded in the spec
//! (`pkg/registry/certificates/certificates/strategy.go` `PrepareForCreate`), the `/approval`
//! subresource (only `Approved`/`Denied` conditions change; they exclude each other and stay once
//! set) and the signer of kube-controller-manager for the `kubernetes.io/*` signers: an approved
//! request is signed by the cluster signing CA into `status.certificate`, valid for
//! `expirationSeconds` (1 year by default, `--cluster-signing-duration`).

use super::SimState;
use super::errors::ApiError;
use super::handlers::WriteOpts;
use super::registry::ResourceInfo;
use crate::auth::UserInfo;
use crate::schema::FieldError;
use base64::Engine;
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};

/// Key usages the API accepts (`certificates.KeyUsage` values).
const USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// Signers kube-controller-manager signs for.
const BUILTIN_SIGNERS: &[&str] = &[
    "kubernetes.io/kube-apiserver-client",
    "kubernetes.io/kube-apiserver-client-kubelet",
    "kubernetes.io/kubelet-serving",
    "kubernetes.io/legacy-unknown",
];

/// Go's `%#v` of a `[]byte`, as field errors print an invalid `spec.request`.
fn go_bytes(b: &[u8]) -> String {
    let items: Vec<String> = b.iter().map(|x| format!("0x{x:x}")).collect();
    format!("[]byte{{{}}}", items.join(", "))
}

/// The request's PEM (decoded from the base64 of `spec.request`) parsed and its signature checked
/// (`certificates.ParseCSR` + `CheckSignature`).
fn parse_request(pem: &[u8]) -> Result<rcgen::CertificateSigningRequestParams, String> {
    let text = std::str::from_utf8(pem).unwrap_or("");
    let block_type = text
        .split("-----BEGIN ")
        .nth(1)
        .and_then(|rest| rest.split("-----").next());
    if block_type != Some("CERTIFICATE REQUEST") {
        return Err("PEM block type must be CERTIFICATE REQUEST".into());
    }
    rcgen::CertificateSigningRequestParams::from_pem(text).map_err(|e| match e {
        rcgen::Error::InvalidCertificationRequestSignature => {
            "x509: invalid signature: parent certificate cannot sign this kind of certificate"
                .to_string()
        }
        other => format!("x509: {other}"),
    })
}

/// Validation of a new CSR (stored JSON).
pub fn validate_csr(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let request = spec
        .get("request")
        .and_then(Value::as_str)
        .and_then(|r| base64::engine::general_purpose::STANDARD.decode(r).ok())
        .unwrap_or_default();
    if let Err(e) = parse_request(&request) {
        errs.push(FieldError {
            field: "spec.request".into(),
            kind: crate::schema::FieldErrorKind::Invalid,
            message: e,
            value: crate::schema::BadValue::Json(Value::String(String::new())),
        });
        // Go prints the bytes, not a quoted string.
        if let Some(last) = errs.last_mut() {
            last.value = crate::schema::BadValue::Omit;
            last.message = format!(
                "{}: {}",
                go_bytes(&request),
                std::mem::take(&mut last.message)
            );
        }
    }
    let signer = spec.get("signerName").and_then(Value::as_str).unwrap_or("");
    if signer.is_empty() {
        errs.push(FieldError::required("spec.signerName", ""));
    } else if !signer.contains('/') {
        errs.push(FieldError::invalid(
            "spec.signerName",
            json!(signer),
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
    }
    let usages: Vec<&str> = spec
        .get("usages")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if usages.is_empty() {
        errs.push(FieldError::required("spec.usages", ""));
    }
    for (i, u) in usages.iter().enumerate() {
        if !USAGES.contains(u) {
            let supported: Vec<String> = USAGES.iter().map(|s| format!("{s:?}")).collect();
            errs.push(FieldError {
                field: format!("spec.usages[{i}]"),
                kind: crate::schema::FieldErrorKind::NotSupported,
                message: format!("supported values: {}", supported.join(", ")),
                value: crate::schema::BadValue::Json(json!(u)),
            });
        }
    }
    if let Some(secs) = spec.get("expirationSeconds").and_then(Value::as_i64)
        && secs < 600
    {
        errs.push(FieldError::invalid(
            "spec.expirationSeconds",
            json!(secs),
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
    errs
}

/// `PrepareForCreate`: the requester goes into the spec, the status starts empty.
pub fn prepare_create(obj: &mut Value, user: Option<&UserInfo>) {
    if let Some(m) = obj.as_object_mut() {
        m.remove("status");
    }
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for k in ["username", "uid", "groups", "extra"] {
        spec.remove(k);
    }
    if let Some(u) = user {
        spec.insert("username".into(), json!(u.username));
        spec.insert("groups".into(), json!(u.groups));
    }
}

fn condition_types(obj: &Value) -> Vec<String> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("type").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Validation of an approval update (`ValidateCertificateSigningRequestApprovalUpdate`).
pub fn validate_approval(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let types = condition_types(new);
    if types.iter().any(|t| t == "Approved") && types.iter().any(|t| t == "Denied") {
        let i = types.iter().rposition(|t| t == "Approved" || t == "Denied");
        errs.push(FieldError::invalid(
            format!("status.conditions[{}].type", i.unwrap_or(0)),
            json!(types[i.unwrap_or(0)]),
            "Approved and Denied conditions are mutually exclusive",
        ));
    }
    for kept in ["Approved", "Denied"] {
        if condition_types(old).iter().any(|t| t == kept) && !types.iter().any(|t| t == kept) {
            errs.push(FieldError {
                field: "status.conditions".into(),
                kind: crate::schema::FieldErrorKind::Forbidden,
                message: format!("updates may not remove a condition of type {kept:?}"),
                value: crate::schema::BadValue::Omit,
            });
        }
    }
    errs
}

/// The cluster signing CA (kube-controller-manager's `--cluster-signing-*`), made once.
fn signing_ca() -> Option<&'static rcgen::Issuer<'static, rcgen::KeyPair>> {
    static CA: OnceLock<Option<rcgen::Issuer<'static, rcgen::KeyPair>>> = OnceLock::new();
    CA.get_or_init(|| {
        let key = rcgen::KeyPair::generate().ok()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).ok()?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kube-sim-cluster-signer");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        Some(rcgen::Issuer::new(params, key))
    })
    .as_ref()
}

/// Signs an approved request for a built-in signer: the certificate PEM, or `None`.
pub fn sign(obj: &Value) -> Option<String> {
    let signer = obj.pointer("/spec/signerName").and_then(Value::as_str)?;
    if !BUILTIN_SIGNERS.contains(&signer) {
        return None;
    }
    let request = obj.pointer("/spec/request").and_then(Value::as_str)?;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(request)
        .ok()?;
    let mut csr = parse_request(&pem).ok()?;
    let secs = obj
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(365 * 24 * 3600);
    let now = chrono::Utc::now();
    let end = now + chrono::Duration::seconds(secs);
    use chrono::Datelike;
    csr.params.not_before = rcgen::date_time_ymd(now.year(), now.month() as u8, now.day() as u8);
    csr.params.not_after = rcgen::date_time_ymd(end.year(), end.month() as u8, end.day() as u8);
    let usages: Vec<&str> = obj
        .pointer("/spec/usages")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    csr.params.key_usages = usages
        .iter()
        .filter_map(|u| match *u {
            "digital signature" => Some(rcgen::KeyUsagePurpose::DigitalSignature),
            "key encipherment" => Some(rcgen::KeyUsagePurpose::KeyEncipherment),
            _ => None,
        })
        .collect();
    csr.params.extended_key_usages = usages
        .iter()
        .filter_map(|u| match *u {
            "client auth" => Some(rcgen::ExtendedKeyUsagePurpose::ClientAuth),
            "server auth" => Some(rcgen::ExtendedKeyUsagePurpose::ServerAuth),
            _ => None,
        })
        .collect();
    csr.signed_by(signing_ca()?).ok().map(|c| c.pem())
}

impl SimState {
    /// PUT `certificatesigningrequests/{name}/approval`: only the Approved/Denied conditions
    /// change; an approved request for a built-in signer is signed at once.
    pub(super) fn csr_approval(
        &self,
        ri: &Arc<ResourceInfo>,
        version: &str,
        name: &str,
        body: Value,
        opts: &WriteOpts,
    ) -> Result<Value, ApiError> {
        let old = self.get_obj(ri, version, None, name)?;
        let mut new = old.clone();
        let conditions = body
            .pointer("/status/conditions")
            .cloned()
            .unwrap_or(json!([]));
        new["status"]["conditions"] = conditions;
        if let Some(rv) = body.pointer("/metadata/resourceVersion") {
            new["metadata"]["resourceVersion"] = rv.clone();
        }
        let errs = validate_approval(&old, &new);
        if !errs.is_empty() {
            return Err(ApiError::from_status(crate::schema::invalid_status(
                &ri.kind, &ri.group, name, &errs,
            )));
        }
        let out = self.update_obj(ri, version, None, name, new, Some("status"), opts)?;
        let approved = condition_types(&out.object).iter().any(|t| t == "Approved");
        let signed = out
            .object
            .pointer("/status/certificate")
            .is_some_and(|c| !c.is_null());
        if approved
            && !signed
            && let Some(cert) = sign(&out.object)
        {
            let mut with_cert = Value::clone(&out.object);
            with_cert["status"]["certificate"] =
                json!(base64::engine::general_purpose::STANDARD.encode(cert));
            let signer = WriteOpts::system("kube-controller-manager");
            if let Ok(s) =
                self.update_obj(ri, version, None, name, with_cert, Some("status"), &signer)
            {
                return Ok(Arc::unwrap_or_clone(s.object));
            }
        }
        Ok(Arc::unwrap_or_clone(out.object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::invalid_message;

    fn csr_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn csr(pem: &str, signer: &str, usages: Value) -> Value {
        json!({"metadata": {"name": "c"}, "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(pem),
            "signerName": signer, "usages": usages}})
    }

    #[test]
    fn requests_are_validated_as_upstream() {
        let good = csr(
            &csr_pem(),
            "kubernetes.io/kube-apiserver-client",
            json!(["client auth"]),
        );
        assert!(validate_csr(&good).is_empty());
        let bad = csr("hello", "", json!(["client auth", "flying"]));
        let msg = invalid_message(
            "CertificateSigningRequest",
            "certificates.k8s.io",
            "c",
            &validate_csr(&bad),
        );
        assert!(msg.starts_with("CertificateSigningRequest.certificates.k8s.io \"c\" is invalid: [spec.request: Invalid value: []byte{0x68, 0x65, 0x6c, 0x6c, 0x6f}: PEM block type must be CERTIFICATE REQUEST, spec.signerName: Required value, spec.usages[1]: Unsupported value: \"flying\": supported values: \"signing\""), "{msg}");
        // A tampered request fails the signature check.
        let pem = csr_pem();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let mut der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        let n = der.len();
        der[n - 10] ^= 0xff;
        let tampered = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        );
        assert!(parse_request(tampered.as_bytes()).is_err());
    }

    #[test]
    fn approval_conditions_exclude_each_other_and_stay() {
        let old = json!({"status": {"conditions": [{"type": "Approved", "status": "True"}]}});
        let both = json!({"status": {"conditions": [{"type": "Approved"}, {"type": "Denied"}]}});
        assert_eq!(validate_approval(&old, &both).len(), 1);
        let none = json!({"status": {"conditions": []}});
        assert_eq!(validate_approval(&old, &none)[0].field, "status.conditions");
    }

    #[test]
    fn approved_builtin_requests_are_signed() {
        let req = csr(
            &csr_pem(),
            "kubernetes.io/kube-apiserver-client",
            json!(["client auth"]),
        );
        let cert = sign(&req).expect("signed");
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        let other = csr(&csr_pem(), "example.com/custom", json!(["client auth"]));
        assert!(sign(&other).is_none());
    }
}

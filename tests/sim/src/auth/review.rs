//! The review APIs, evaluated on create and never stored (no name needed, none kept):
//!
//! - `TokenReview` (`authentication.k8s.io/v1`): `spec.token` (+ `spec.audiences`) is authenticated
//!   with the simulator's own authenticator; `status.authenticated`, `status.user{username, uid,
//!   groups}`, `status.audiences`, or `status.error`.
//! - `SubjectAccessReview`, `SelfSubjectAccessReview`, `LocalSubjectAccessReview`
//!   (`authorization.k8s.io/v1`): `spec.resourceAttributes` or `spec.nonResourceAttributes` is
//!   decided by RBAC for `spec.user`/`spec.groups` (SAR, LSAR) or the requester (SSAR);
//!   `status.allowed` and `status.reason` as the RBAC authorizer says it (`status.denied` is never
//!   set: RBAC only allows or has no opinion, so like upstream it is omitted).
//!
//! Validation follows the apiserver's: 400 for a TokenReview without a token, 422 for access
//! reviews with both or neither attribute kinds, a SAR without user or groups, or an LSAR whose
//! namespaces disagree.

use super::rbac::{self, strings};
use super::token::{Authenticated, ISSUER};
use super::{Attributes, RbacSource, UserInfo};
use serde_json::{Map, Value, json};

/// Why a review was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// 400 with this message.
    #[error("{0}")]
    BadRequest(String),
    /// 422 with this message.
    #[error("{0}")]
    Invalid(String),
}

/// The audiences the simulated apiserver accepts when a TokenReview names none (the issuer URL,
/// which is also what TokenRequest issues tokens for by default).
pub fn api_audiences() -> Vec<String> {
    vec![ISSUER.to_string()]
}

/// Returns the review with `apiVersion`/`kind` set, `metadata` kept (empty if absent), and `status`.
fn answer(review: &Value, api_version: &str, kind: &str, spec: Value, status: Value) -> Value {
    let mut out = match review {
        Value::Object(o) => o.clone(),
        _ => Map::new(),
    };
    out.insert("apiVersion".into(), api_version.into());
    out.insert("kind".into(), kind.into());
    let meta = out.entry("metadata").or_insert_with(|| json!({}));
    if let Some(m) = meta.as_object_mut() {
        m.entry("creationTimestamp").or_insert(Value::Null);
    }
    out.insert("spec".into(), spec);
    out.insert("status".into(), status);
    Value::Object(out)
}

/// Evaluates a TokenReview. `authenticate` is the simulator's authenticator (revocation included);
/// `service_account_uid(namespace, name)` gives a live service account's uid, reported for tokens
/// that do not carry one (the static `sim-sa:` scheme).
pub fn token_review(
    review: &Value,
    authenticate: &dyn Fn(&str) -> Option<Authenticated>,
    service_account_uid: &dyn Fn(&str, &str) -> Option<String>,
) -> Result<Value, ReviewError> {
    let spec = review.get("spec").cloned().unwrap_or_else(|| json!({}));
    let token = spec.get("token").and_then(Value::as_str).unwrap_or("");
    if token.is_empty() {
        return Err(ReviewError::BadRequest(
            "token is required for TokenReview in authentication".into(),
        ));
    }
    let wanted = {
        let w = strings(spec.get("audiences"));
        if w.is_empty() { api_audiences() } else { w }
    };
    let status = match authenticate(token) {
        None => json!({"user": {}, "error": "invalid bearer token"}),
        Some(a) => {
            // Static tokens are valid for any audience; issued ones for those in their `aud`.
            let audiences: Vec<String> = if a.audiences.is_empty() {
                wanted.clone()
            } else {
                wanted
                    .iter()
                    .filter(|w| a.audiences.contains(w))
                    .cloned()
                    .collect()
            };
            if audiences.is_empty() {
                json!({"user": {}, "error": format!(
                    "[invalid bearer token, token audiences {:?} is invalid for the target audiences {:?}]",
                    a.audiences, wanted
                )})
            } else {
                let uid = a.service_account.as_ref().and_then(|sa| {
                    sa.uid
                        .clone()
                        .or_else(|| service_account_uid(&sa.namespace, &sa.name))
                });
                let mut user = json!({"username": a.user.username, "groups": a.user.groups});
                if let Some(uid) = uid {
                    user["uid"] = Value::String(uid);
                }
                json!({"authenticated": true, "user": user, "audiences": audiences})
            }
        }
    };
    Ok(answer(
        review,
        "authentication.k8s.io/v1",
        "TokenReview",
        spec,
        status,
    ))
}

/// Which access review is being created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessReviewKind {
    /// `SubjectAccessReview`: cluster-scoped, for `spec.user`/`spec.groups`.
    Subject,
    /// `SelfSubjectAccessReview`: for the requester.
    SelfSubject,
    /// `LocalSubjectAccessReview`: namespaced (the request's namespace), for `spec.user`/`spec.groups`.
    Local,
}

impl AccessReviewKind {
    fn kind(self) -> &'static str {
        match self {
            AccessReviewKind::Subject => "SubjectAccessReview",
            AccessReviewKind::SelfSubject => "SelfSubjectAccessReview",
            AccessReviewKind::Local => "LocalSubjectAccessReview",
        }
    }
}

/// Evaluates a (Self/Local)SubjectAccessReview. `requester` is who creates it (the subject of a
/// SelfSubjectAccessReview); `namespace` the request path's namespace (LocalSubjectAccessReview).
pub fn access_review(
    src: &dyn RbacSource,
    kind: AccessReviewKind,
    requester: &UserInfo,
    review: &Value,
    namespace: Option<&str>,
) -> Result<Value, ReviewError> {
    let kind_name = kind.kind();
    let invalid = |field: &str, value: &str, detail: &str| {
        ReviewError::Invalid(format!(
            "{kind_name}.authorization.k8s.io {:?} is invalid: {field}: Invalid value: {value}: {detail}",
            review
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
        ))
    };
    let mut review = review.clone();
    let mut spec = review.get("spec").cloned().unwrap_or_else(|| json!({}));
    let ra = spec.get("resourceAttributes").filter(|v| v.is_object());
    let nra = spec.get("nonResourceAttributes").filter(|v| v.is_object());
    if kind == AccessReviewKind::Local {
        let ns = namespace.unwrap_or("");
        let meta_ns = review
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !meta_ns.is_empty() && meta_ns != ns {
            return Err(ReviewError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request"
                    .into(),
            ));
        }
        if let Some(m) = review
            .as_object_mut()
            .map(|o| o.entry("metadata").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut)
        {
            m.insert("namespace".into(), ns.into());
        }
        if nra.is_some() {
            return Err(invalid(
                "spec.nonResourceAttributes",
                "\"object\"",
                "disallowed on this kind of request",
            ));
        }
        let ra_ns = ra
            .and_then(|r| r.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if ra.is_some() && ra_ns != ns {
            return Err(invalid(
                "spec.resourceAttributes.namespace",
                &format!("{ra_ns:?}"),
                "must match metadata.namespace",
            ));
        }
    }
    match (ra, nra) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "spec.resourceAttributes",
                "\"object\"",
                "cannot be specified in combination with nonResourceAttributes",
            ));
        }
        (None, None) => {
            return Err(invalid(
                "spec.resourceAttributes",
                "\"null\"",
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ));
        }
        _ => {}
    }
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let attrs = match (ra, nra) {
        (Some(ra), _) => Attributes {
            verb: s(ra, "verb"),
            api_group: s(ra, "group"),
            resource: s(ra, "resource"),
            subresource: Some(s(ra, "subresource")).filter(|x| !x.is_empty()),
            namespace: Some(s(ra, "namespace")).filter(|x| !x.is_empty()),
            name: Some(s(ra, "name")).filter(|x| !x.is_empty()),
            path: None,
        },
        (None, Some(nr)) => Attributes::non_resource(&s(nr, "verb"), &s(nr, "path")),
        (None, None) => unreachable!("checked above"),
    };
    let subject = match kind {
        AccessReviewKind::SelfSubject => {
            // The server fills in who asked, as upstream does.
            spec["user"] = Value::String(requester.username.clone());
            spec["groups"] = json!(requester.groups);
            requester.clone()
        }
        AccessReviewKind::Subject | AccessReviewKind::Local => {
            let user = s(&spec, "user");
            let groups = strings(spec.get("groups"));
            if user.is_empty() && groups.is_empty() {
                return Err(invalid(
                    "spec.user",
                    "\"\"",
                    "at least one of user or group must be specified",
                ));
            }
            UserInfo {
                username: user,
                groups,
            }
        }
    };
    let d = rbac::decide(src, &subject, &attrs);
    let mut status = json!({"allowed": d.allowed});
    if !d.reason.is_empty() {
        status["reason"] = Value::String(d.reason);
    }
    Ok(answer(
        &review,
        "authorization.k8s.io/v1",
        kind_name,
        spec,
        status,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::TokenIssuer;
    use chrono::Utc;

    use crate::auth::MemoryRbac as Src;

    fn src() -> Src {
        Src {
            cluster_roles: vec![json!({"metadata": {"name": "deploy-reader"},
                "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list"]}]})],
            cluster_role_bindings: vec![json!({"metadata": {"name": "readers"},
                "roleRef": {"kind": "ClusterRole", "name": "deploy-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}]})],
            roles: vec![
                json!({"metadata": {"name": "pod-getter", "namespace": "ns"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
            ],
            role_bindings: vec![json!({"metadata": {"name": "getters", "namespace": "ns"},
                "roleRef": {"kind": "Role", "name": "pod-getter"},
                "subjects": [{"kind": "User", "name": "alice"}]})],
        }
    }

    fn sa() -> UserInfo {
        UserInfo::service_account("ns", "sa")
    }

    fn ra(verb: &str, group: &str, resource: &str) -> Value {
        json!({"verb": verb, "group": group, "resource": resource, "namespace": "ns"})
    }

    #[test]
    fn self_subject_access_review_evaluates_for_the_requester_with_the_reason() {
        let review =
            |verb: &str| json!({"spec": {"resourceAttributes": ra(verb, "apps", "deployments")}});
        let out = access_review(
            &src(),
            AccessReviewKind::SelfSubject,
            &sa(),
            &review("list"),
            None,
        )
        .unwrap();
        assert_eq!(out["kind"], "SelfSubjectAccessReview");
        assert_eq!(out["status"]["allowed"], true);
        assert_eq!(
            out["status"]["reason"],
            "RBAC: allowed by ClusterRoleBinding \"readers\" of ClusterRole \"deploy-reader\" to ServiceAccount \"sa/ns\""
        );
        assert_eq!(out["spec"]["user"], "system:serviceaccount:ns:sa");
        let out = access_review(
            &src(),
            AccessReviewKind::SelfSubject,
            &sa(),
            &review("delete"),
            None,
        )
        .unwrap();
        assert_eq!(out["status"], json!({"allowed": false}));
        let nr = json!({"spec": {"nonResourceAttributes": {"verb": "get", "path": "/version"}}});
        let out = access_review(&src(), AccessReviewKind::SelfSubject, &sa(), &nr, None).unwrap();
        assert_eq!(out["status"]["allowed"], true);
    }

    /// A SubjectAccessReview created by the admin.
    fn sar(review: &Value) -> Result<Value, ReviewError> {
        access_review(
            &src(),
            AccessReviewKind::Subject,
            &UserInfo::admin(),
            review,
            None,
        )
    }

    #[test]
    fn subject_access_review_evaluates_spec_user_not_the_requester() {
        let review =
            json!({"spec": {"user": "alice", "resourceAttributes": ra("get", "", "pods")}});
        let out = sar(&review).unwrap();
        assert_eq!(out["status"]["allowed"], true);
        assert_eq!(
            out["status"]["reason"],
            "RBAC: allowed by RoleBinding \"getters/ns\" of Role \"pod-getter\" to User \"alice\""
        );
        let review = json!({"spec": {"user": "bob", "groups": ["devs"], "resourceAttributes": ra("get", "", "pods")}});
        let out = sar(&review).unwrap();
        assert_eq!(out["status"]["allowed"], false);
        let err = sar(&json!({"spec": {"resourceAttributes": ra("get", "", "pods")}})).unwrap_err();
        assert!(
            matches!(&err, ReviewError::Invalid(m) if m.contains("spec.user") && m.contains("at least one of user or group")),
            "{err:?}"
        );
        let err = sar(&json!({"spec": {"user": "alice"}})).unwrap_err();
        assert!(
            matches!(&err, ReviewError::Invalid(m) if m.contains("exactly one of nonResourceAttributes or resourceAttributes")),
            "{err:?}"
        );
    }

    #[test]
    fn local_subject_access_review_is_bound_to_its_namespace() {
        let review = json!({"metadata": {"namespace": "ns"},
            "spec": {"user": "alice", "resourceAttributes": ra("get", "", "pods")}});
        let out = access_review(
            &src(),
            AccessReviewKind::Local,
            &UserInfo::admin(),
            &review,
            Some("ns"),
        )
        .unwrap();
        assert_eq!(out["kind"], "LocalSubjectAccessReview");
        assert_eq!(out["status"]["allowed"], true);
        let err = access_review(
            &src(),
            AccessReviewKind::Local,
            &UserInfo::admin(),
            &json!({"spec": {"user": "alice", "resourceAttributes": ra("get", "", "pods")}}),
            Some("other"),
        )
        .unwrap_err();
        assert!(
            matches!(&err, ReviewError::Invalid(m) if m.contains("must match metadata.namespace")),
            "{err:?}"
        );
        let err = access_review(
            &src(),
            AccessReviewKind::Local,
            &UserInfo::admin(),
            &review,
            Some("other"),
        )
        .unwrap_err();
        assert!(matches!(err, ReviewError::BadRequest(_)), "{err:?}");
    }

    #[test]
    fn token_review_authenticates_with_audiences() {
        let issuer = TokenIssuer::new();
        let now = Utc::now();
        let auth = |t: &str| issuer.authenticate_at(t, now);
        let no_sa = |_: &str, _: &str| None;
        let live = |ns: &str, n: &str| (ns == "ns" && n == "sa").then(|| "uid-1".to_string());

        let out = token_review(&json!({"spec": {"token": "sim-sa:ns:sa"}}), &auth, &live).unwrap();
        assert_eq!(out["kind"], "TokenReview");
        assert_eq!(out["status"]["authenticated"], true);
        assert_eq!(
            out["status"]["user"]["username"],
            "system:serviceaccount:ns:sa"
        );
        assert_eq!(out["status"]["user"]["uid"], "uid-1");
        assert_eq!(out["status"]["audiences"], json!([ISSUER]));

        let jwt = issuer.issue_at("ns", "sa", "uid-2", &["aud1".into()], 3600, now);
        let review = |aud: Value| json!({"spec": {"token": jwt, "audiences": aud}});
        let out = token_review(&review(json!(["aud1", "aud2"])), &auth, &no_sa).unwrap();
        assert_eq!(out["status"]["authenticated"], true);
        assert_eq!(out["status"]["audiences"], json!(["aud1"]));
        assert_eq!(out["status"]["user"]["uid"], "uid-2");
        let out = token_review(&review(json!(["other"])), &auth, &no_sa).unwrap();
        assert_eq!(out["status"].get("authenticated"), None);
        assert!(
            out["status"]["error"]
                .as_str()
                .unwrap()
                .contains("invalid for the target audiences"),
            "{out}"
        );

        let out = token_review(&json!({"spec": {"token": "garbage"}}), &auth, &no_sa).unwrap();
        assert_eq!(
            out["status"],
            json!({"user": {}, "error": "invalid bearer token"})
        );
        assert!(matches!(
            token_review(&json!({"spec": {}}), &auth, &no_sa),
            Err(ReviewError::BadRequest(_))
        ));
    }
}

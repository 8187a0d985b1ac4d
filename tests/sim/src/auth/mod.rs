//! Authentication (service-account bearer tokens: TokenRequest-issued and a static scheme) and RBAC
//! authorization against Roles/ClusterRoles/bindings, with the apiserver's 401/403 Status bodies.
//!
//! Pieces:
//! - [`token`]: [`TokenIssuer`] issues HMAC-SHA256-signed JWTs for the TokenRequest subresource and
//!   also accepts static tokens (see that module's doc for the `sim-sa:<ns>:<name>` scheme).
//! - [`rbac`]: [`authorize`], evaluated like the real RBAC authorizer (cluster role bindings, role
//!   bindings that may reference ClusterRoles, aggregated ClusterRoles resolved at authorization
//!   time, the default discovery roles for `system:authenticated`, `system:masters` bypass).
//! - [`review`]: TokenReview and (Self/Local)SubjectAccessReview evaluation: create-only, never
//!   stored, answered with the authenticator's and RBAC's verdict.
//! - [`impersonation`]: `Impersonate-*` headers (`kubectl --as`), authorized with the
//!   `impersonate` verb.
//! - [`status`]: the metav1 Status bodies for 401 and 403.
//!
//! No escalation check is made: a token holder allowed to create Roles/bindings may grant
//! permissions it does not hold itself (the real apiserver refuses that unless the user has the
//! `escalate` / `bind` verbs). Tests of the operator's own RBAC are unaffected.

pub mod escalation;
pub mod impersonation;
pub mod rbac;
pub mod review;
pub mod status;
pub mod subjects;
pub mod token;

pub use rbac::{
    Decision, aggregated_rules, authorize, decide, default_cluster_role_bindings,
    default_cluster_roles,
};
pub use review::{AccessReviewKind, ReviewError, access_review, token_review};
pub use status::{forbidden_status, unauthorized_status};
pub use token::{Authenticated, ServiceAccountRef, TokenError, TokenIssuer};

use serde_json::Value;
use std::sync::Arc;

/// Group every authenticated user carries.
pub const GROUP_AUTHENTICATED: &str = "system:authenticated";
/// Group of requests without credentials.
pub const GROUP_UNAUTHENTICATED: &str = "system:unauthenticated";
/// Group whose members bypass authorization (like the apiserver's privileged group).
pub const GROUP_MASTERS: &str = "system:masters";
/// Group of all service accounts.
pub const GROUP_SERVICE_ACCOUNTS: &str = "system:serviceaccounts";
/// Username of requests without credentials.
pub const USER_ANONYMOUS: &str = "system:anonymous";

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub username: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The identity of a service account: `system:serviceaccount:<ns>:<name>` in the groups
    /// `system:serviceaccounts`, `system:serviceaccounts:<ns>` and `system:authenticated`.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        UserInfo {
            username: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                GROUP_SERVICE_ACCOUNTS.to_string(),
                format!("{GROUP_SERVICE_ACCOUNTS}:{namespace}"),
                GROUP_AUTHENTICATED.to_string(),
            ],
        }
    }

    /// A request without credentials.
    pub fn anonymous() -> Self {
        UserInfo {
            username: USER_ANONYMOUS.to_string(),
            groups: vec![GROUP_UNAUTHENTICATED.to_string()],
        }
    }

    /// The cluster administrator (`system:masters`), allowed everything.
    pub fn admin() -> Self {
        UserInfo {
            username: "kubernetes-admin".to_string(),
            groups: vec![GROUP_MASTERS.to_string(), GROUP_AUTHENTICATED.to_string()],
        }
    }

    /// `(namespace, name)` when the username is a service account's.
    pub fn service_account_parts(&self) -> Option<(&str, &str)> {
        let rest = self.username.strip_prefix("system:serviceaccount:")?;
        let (ns, name) = rest.split_once(':')?;
        (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
    }
}

/// What a request asks to do, as the apiserver's request-info resolver derives it.
///
/// A resource request has a non-empty `resource`; a non-resource request (`/version`, `/api`,
/// `/apis/...`, `/openapi/v3`, `/healthz`) has an empty `resource` and `path: Some(..)` with the
/// verb the lowercase HTTP method (`get`, `post`, ...). For watches or lists narrowed by
/// `fieldSelector=metadata.name=x`, set `name` as the apiserver does. For requests on the
/// `namespaces` resource itself, `namespace` is the namespace's name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    pub verb: String,
    pub api_group: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// The URL path of a non-resource request.
    pub path: Option<String>,
}

impl Attributes {
    /// A resource request.
    pub fn resource(
        verb: &str,
        api_group: &str,
        resource: &str,
        subresource: Option<&str>,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Self {
        Attributes {
            verb: verb.to_string(),
            api_group: api_group.to_string(),
            resource: resource.to_string(),
            subresource: subresource.filter(|s| !s.is_empty()).map(str::to_string),
            namespace: namespace.filter(|s| !s.is_empty()).map(str::to_string),
            name: name.filter(|s| !s.is_empty()).map(str::to_string),
            path: None,
        }
    }

    /// A non-resource request (`verb` is the lowercase HTTP method).
    pub fn non_resource(verb: &str, path: &str) -> Self {
        Attributes {
            verb: verb.to_string(),
            path: Some(path.to_string()),
            ..Attributes::default()
        }
    }

    /// True for requests on API resources (as opposed to plain URL paths).
    pub fn is_resource_request(&self) -> bool {
        !self.resource.is_empty() || self.path.is_none()
    }
}

/// Where RBAC objects come from (the server implements it over its store). Objects are the wire
/// JSON of `rbac.authorization.k8s.io/v1` kinds.
pub trait RbacSource {
    fn roles(&self, ns: &str) -> Vec<Value>;
    fn role_bindings(&self, ns: &str) -> Vec<Value>;
    fn cluster_roles(&self) -> Vec<Value>;
    fn cluster_role_bindings(&self) -> Vec<Value>;

    /// The RoleBindings of `ns` that may name `user` as a subject, in name order: all of them
    /// unless the source keeps an index ([`subjects`] gives its keys). The authorizer checks
    /// each one's subjects, so a superset is fine; a matching binding must not be missing.
    fn role_bindings_for(&self, ns: &str, user: &UserInfo) -> Vec<Arc<Value>> {
        let _ = user;
        self.role_bindings(ns).into_iter().map(Arc::new).collect()
    }

    /// One Role of `ns` by name.
    fn role(&self, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.roles(ns)
            .into_iter()
            .find(|r| r.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
            .map(Arc::new)
    }
}

/// An in-memory [`RbacSource`] for unit tests: the objects as given, namespaced ones filtered by
/// their `metadata.namespace`.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct MemoryRbac {
    pub roles: Vec<Value>,
    pub role_bindings: Vec<Value>,
    pub cluster_roles: Vec<Value>,
    pub cluster_role_bindings: Vec<Value>,
}

#[cfg(test)]
impl RbacSource for MemoryRbac {
    fn roles(&self, ns: &str) -> Vec<Value> {
        in_namespace(&self.roles, ns)
    }
    fn role_bindings(&self, ns: &str) -> Vec<Value> {
        in_namespace(&self.role_bindings, ns)
    }
    fn cluster_roles(&self) -> Vec<Value> {
        self.cluster_roles.clone()
    }
    fn cluster_role_bindings(&self) -> Vec<Value> {
        self.cluster_role_bindings.clone()
    }
}

#[cfg(test)]
fn in_namespace(objects: &[Value], ns: &str) -> Vec<Value> {
    objects
        .iter()
        .filter(|o| {
            o.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("")
                == ns
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_identity() {
        let u = UserInfo::service_account("ns", "sa");
        assert_eq!(u.username, "system:serviceaccount:ns:sa");
        assert_eq!(
            u.groups,
            vec![
                "system:serviceaccounts",
                "system:serviceaccounts:ns",
                "system:authenticated"
            ]
        );
        assert_eq!(u.service_account_parts(), Some(("ns", "sa")));
        assert_eq!(UserInfo::admin().service_account_parts(), None);
    }

    #[test]
    fn attributes_kinds() {
        assert!(
            Attributes::resource("get", "", "pods", None, Some("ns"), None).is_resource_request()
        );
        assert!(!Attributes::non_resource("get", "/version").is_resource_request());
        let a = Attributes::resource("get", "", "pods", Some(""), Some(""), Some(""));
        assert_eq!((a.subresource, a.namespace, a.name), (None, None, None));
    }
}

//! RBAC authorization like the apiserver's RBAC authorizer (with the reason it gives), the
//! forbidden message and the default discovery roles.
//!
//! Evaluation (as `rbac.authorizer.VisitRulesFor`): every ClusterRoleBinding whose subjects match
//! the user grants its ClusterRole's rules everywhere; when the request is namespaced, every
//! RoleBinding in that namespace whose subjects match grants its Role's (same namespace) or
//! ClusterRole's rules. Subjects are `User` (username), `Group` (any of the user's groups) and
//! `ServiceAccount` (namespace defaults to the binding's). A ClusterRole with an
//! `aggregationRule` gets the rules of every other ClusterRole matched by one of its
//! `clusterRoleSelectors` (recursively), resolved at authorization time, replacing its own `rules`
//! as the aggregation controller would. Members of `system:masters` are always allowed.
//!
//! Built-in defaults ([`default_cluster_roles`], [`default_cluster_role_bindings`]) are always in
//! effect, like the apiserver's bootstrap policy: `system:discovery`, `system:basic-user` and
//! `system:public-info-viewer` bound to `system:authenticated` (the last also to
//! `system:unauthenticated`), and `cluster-admin` bound to `system:masters`. An object of the same
//! name in the [`RbacSource`] replaces the default, so the server may seed them into its store.

use super::{Attributes, GROUP_MASTERS, RbacSource, UserInfo};
use crate::selector::LabelSelector;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// One parsed PolicyRule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rule {
    verbs: Vec<String>,
    api_groups: Vec<String>,
    resources: Vec<String>,
    resource_names: Vec<String>,
    non_resource_urls: Vec<String>,
}

/// The strings of a JSON array (non-strings skipped; empty when absent).
pub(super) fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl Rule {
    fn from_json(v: &Value) -> Rule {
        Rule {
            verbs: strings(v.get("verbs")),
            api_groups: strings(v.get("apiGroups")),
            resources: strings(v.get("resources")),
            resource_names: strings(v.get("resourceNames")),
            non_resource_urls: strings(v.get("nonResourceURLs")),
        }
    }

    fn allows(&self, attrs: &Attributes) -> bool {
        if !self.verbs.iter().any(|v| v == "*" || *v == attrs.verb) {
            return false;
        }
        if !attrs.is_resource_request() {
            let path = attrs.path.as_deref().unwrap_or("");
            return self.non_resource_urls.iter().any(|u| {
                u == "*" || u == path || u.strip_suffix('*').is_some_and(|p| path.starts_with(p))
            });
        }
        if !self
            .api_groups
            .iter()
            .any(|g| g == "*" || *g == attrs.api_group)
        {
            return false;
        }
        let sub = attrs.subresource.as_deref().unwrap_or("");
        let combined = if sub.is_empty() {
            attrs.resource.clone()
        } else {
            format!("{}/{}", attrs.resource, sub)
        };
        let resource_ok = self.resources.iter().any(|r| {
            r == "*"
                || *r == combined
                || (!sub.is_empty() && r.strip_prefix("*/").is_some_and(|s| s == sub))
        });
        if !resource_ok {
            return false;
        }
        self.resource_names.is_empty()
            || attrs
                .name
                .as_deref()
                .is_some_and(|n| self.resource_names.iter().any(|r| r == n))
    }
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Does one binding subject denote this user? `binding_ns` is empty for ClusterRoleBindings.
pub(super) fn subject_matches(subject: &Value, user: &UserInfo, binding_ns: &str) -> bool {
    let kind = subject.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = subject.get("name").and_then(Value::as_str).unwrap_or("");
    match kind {
        "User" => !name.is_empty() && user.username == name,
        "Group" => !name.is_empty() && user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = subject
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            !ns.is_empty()
                && !name.is_empty()
                && user.username == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

/// The first subject of the binding that denotes the user.
fn matching_subject<'a>(
    binding: &'a Value,
    user: &UserInfo,
    binding_ns: &str,
) -> Option<&'a Value> {
    binding
        .get("subjects")
        .and_then(Value::as_array)?
        .iter()
        .find(|s| subject_matches(s, user, binding_ns))
}

/// A subject as the RBAC authorizer names it in reasons: `User "x"`, `Group "g"`,
/// `ServiceAccount "name/namespace"`.
fn describe_subject(subject: &Value, binding_ns: &str) -> String {
    let kind = subject.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = subject.get("name").and_then(Value::as_str).unwrap_or("");
    if kind == "ServiceAccount" {
        let ns = subject
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or(binding_ns);
        return format!("{kind} {:?}", format!("{name}/{ns}"));
    }
    format!("{kind} {name:?}")
}

/// ClusterRoles by name: the source's, plus defaults it does not override.
struct ClusterRoles {
    by_name: BTreeMap<String, Value>,
}

impl ClusterRoles {
    fn load(src: &dyn RbacSource) -> Self {
        let mut by_name = BTreeMap::new();
        for r in default_cluster_roles() {
            by_name.insert(name_of(&r).to_string(), r);
        }
        for r in src.cluster_roles() {
            by_name.insert(name_of(&r).to_string(), r);
        }
        ClusterRoles { by_name }
    }

    /// The effective rules of a ClusterRole (aggregation resolved); `None` if it does not exist.
    fn rules(&self, name: &str) -> Option<Vec<Value>> {
        let mut visiting = BTreeSet::new();
        self.rules_inner(name, &mut visiting)
    }

    fn rules_inner(&self, name: &str, visiting: &mut BTreeSet<String>) -> Option<Vec<Value>> {
        let role = self.by_name.get(name)?;
        if !visiting.insert(name.to_string()) {
            return Some(Vec::new());
        }
        let out = match role.get("aggregationRule") {
            Some(agg) if !agg.is_null() => {
                let selectors: Vec<LabelSelector> = agg
                    .get("clusterRoleSelectors")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| LabelSelector::from_object(s).ok())
                            .collect()
                    })
                    .unwrap_or_default();
                let mut rules: Vec<Value> = Vec::new();
                for (other, obj) in &self.by_name {
                    if other == name || !selectors.iter().any(|s| s.matches_object(obj)) {
                        continue;
                    }
                    for r in self.rules_inner(other, visiting).unwrap_or_default() {
                        if !rules.contains(&r) {
                            rules.push(r);
                        }
                    }
                }
                rules
            }
            _ => role
                .get("rules")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        };
        visiting.remove(name);
        Some(out)
    }
}

/// The rules an aggregated ClusterRole has (what the aggregation controller writes into its
/// `rules`), resolved against the source plus defaults. For a non-aggregated role, its own rules.
/// `None` when no ClusterRole of that name exists.
pub fn aggregated_rules(src: &dyn RbacSource, cluster_role: &str) -> Option<Vec<Value>> {
    ClusterRoles::load(src).rules(cluster_role)
}

/// An authorization decision with the reason the RBAC authorizer gives (what SubjectAccessReviews
/// report in `status.reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Allowed: `RBAC: allowed by ClusterRoleBinding "b" of ClusterRole "r" to Group "g"` (empty
    /// for `system:masters`, allowed before RBAC). Denied: empty, or `RBAC: ...` naming bindings
    /// whose roles are missing.
    pub reason: String,
}

/// Authorizes the request. `Err` carries the full 403 message, e.g.
/// `deployments.apps is forbidden: User "system:serviceaccount:ns:sa" cannot list resource
/// "deployments" in API group "apps" in the namespace "ns"`; when a matching binding references a
/// missing role the RBAC reason is appended (`: RBAC: clusterrole.rbac.authorization.k8s.io "x"
/// not found`) as upstream does.
pub fn authorize(src: &dyn RbacSource, user: &UserInfo, attrs: &Attributes) -> Result<(), String> {
    let d = decide(src, user, attrs);
    if d.allowed {
        return Ok(());
    }
    let msg = forbidden_message(user, attrs);
    if d.reason.is_empty() {
        Err(msg)
    } else {
        Err(format!("{msg}: {}", d.reason))
    }
}

/// Evaluates the request against RBAC (see the module doc) and says why.
pub fn decide(src: &dyn RbacSource, user: &UserInfo, attrs: &Attributes) -> Decision {
    if user.groups.iter().any(|g| g == GROUP_MASTERS) {
        return Decision {
            allowed: true,
            reason: String::new(),
        };
    }
    let roles = ClusterRoles::load(src);
    let mut errors: Vec<String> = Vec::new();
    let allowed_by = |rules: &[Value]| rules.iter().any(|r| Rule::from_json(r).allows(attrs));

    let mut crbs = src.cluster_role_bindings();
    let overridden: BTreeSet<String> = crbs.iter().map(|b| name_of(b).to_string()).collect();
    crbs.extend(
        default_cluster_role_bindings()
            .into_iter()
            .filter(|b| !overridden.contains(name_of(b))),
    );
    for b in &crbs {
        let Some(subject) = matching_subject(b, user, "") else {
            continue;
        };
        let role_name = b
            .pointer("/roleRef/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let kind = b
            .pointer("/roleRef/kind")
            .and_then(Value::as_str)
            .unwrap_or("");
        if kind != "ClusterRole" {
            errors.push(format!("unsupported role reference kind: {kind:?}"));
            continue;
        }
        match roles.rules(role_name) {
            Some(rules) if allowed_by(&rules) => {
                return Decision {
                    allowed: true,
                    reason: format!(
                        "RBAC: allowed by ClusterRoleBinding {:?} of ClusterRole {role_name:?} to {}",
                        name_of(b),
                        describe_subject(subject, "")
                    ),
                };
            }
            Some(_) => {}
            None => errors.push(format!("clusterrole.{RBAC_GROUP} {role_name:?} not found")),
        }
    }

    if let Some(ns) = attrs.namespace.as_deref().filter(|n| !n.is_empty()) {
        for b in src.role_bindings_for(ns, user) {
            let Some(subject) = matching_subject(&b, user, ns) else {
                continue;
            };
            let role_name = b
                .pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let kind = b
                .pointer("/roleRef/kind")
                .and_then(Value::as_str)
                .unwrap_or("");
            let rules = match kind {
                "ClusterRole" => match roles.rules(role_name) {
                    Some(r) => r,
                    None => {
                        errors.push(format!("clusterrole.{RBAC_GROUP} {role_name:?} not found"));
                        continue;
                    }
                },
                "Role" => match src.role(ns, role_name) {
                    Some(r) => r
                        .get("rules")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    None => {
                        errors.push(format!("role.{RBAC_GROUP} {role_name:?} not found"));
                        continue;
                    }
                },
                other => {
                    errors.push(format!("unsupported role reference kind: {other:?}"));
                    continue;
                }
            };
            if allowed_by(&rules) {
                return Decision {
                    allowed: true,
                    reason: format!(
                        "RBAC: allowed by RoleBinding {:?} of {kind} {role_name:?} to {}",
                        format!("{}/{ns}", name_of(&b)),
                        describe_subject(subject, ns)
                    ),
                };
            }
        }
    }

    let reason = match errors.len() {
        0 => String::new(),
        1 => format!("RBAC: {}", errors.remove(0)),
        _ => format!("RBAC: [{}]", errors.join(", ")),
    };
    Decision {
        allowed: false,
        reason,
    }
}

/// The apiserver's 403 message without an authorizer reason.
pub fn forbidden_message(user: &UserInfo, attrs: &Attributes) -> String {
    let who = &user.username;
    if !attrs.is_resource_request() {
        let path = attrs.path.as_deref().unwrap_or("");
        return format!(
            "forbidden: User {who:?} cannot {} path {path:?}",
            attrs.verb
        );
    }
    let resource = match attrs.subresource.as_deref().filter(|s| !s.is_empty()) {
        Some(sub) => format!("{}/{sub}", attrs.resource),
        None => attrs.resource.clone(),
    };
    let detail = match attrs.namespace.as_deref().filter(|n| !n.is_empty()) {
        Some(ns) => format!(
            "User {who:?} cannot {} resource {resource:?} in API group {:?} in the namespace {ns:?}",
            attrs.verb, attrs.api_group
        ),
        None => format!(
            "User {who:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
            attrs.verb, attrs.api_group
        ),
    };
    let qualified = if attrs.api_group.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}.{}", attrs.resource, attrs.api_group)
    };
    match attrs.name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => format!("{qualified} {name:?} is forbidden: {detail}"),
        None => format!("{qualified} is forbidden: {detail}"),
    }
}

fn cluster_role(name: &str, rules: Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}
        },
        "rules": rules
    })
}

fn cluster_role_binding(name: &str, role: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> = groups
        .iter()
        .map(|g| json!({"apiGroup": RBAC_GROUP, "kind": "Group", "name": g}))
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}
        },
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
        "subjects": subjects
    })
}

/// The bootstrap ClusterRoles always in effect (the server may also store them for listing).
pub fn default_cluster_roles() -> Vec<Value> {
    vec![
        cluster_role(
            "cluster-admin",
            json!([
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]}
            ]),
        ),
        cluster_role(
            "system:discovery",
            json!([{
                "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez",
                                    "/openapi", "/openapi/*", "/readyz", "/version", "/version/"],
                "verbs": ["get"]
            }]),
        ),
        cluster_role(
            "system:public-info-viewer",
            json!([{
                "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
                "verbs": ["get"]
            }]),
        ),
        cluster_role(
            "system:auth-delegator",
            json!([
                {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
                {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}
            ]),
        ),
        cluster_role(
            "system:basic-user",
            json!([
                {"apiGroups": ["authorization.k8s.io"],
                 "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                 "verbs": ["create"]},
                {"apiGroups": ["authentication.k8s.io"],
                 "resources": ["selfsubjectreviews"],
                 "verbs": ["create"]}
            ]),
        ),
    ]
}

/// The bootstrap ClusterRoleBindings always in effect.
pub fn default_cluster_role_bindings() -> Vec<Value> {
    vec![
        cluster_role_binding("cluster-admin", "cluster-admin", &[GROUP_MASTERS]),
        cluster_role_binding(
            "system:discovery",
            "system:discovery",
            &[super::GROUP_AUTHENTICATED],
        ),
        cluster_role_binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &[super::GROUP_AUTHENTICATED, super::GROUP_UNAUTHENTICATED],
        ),
        cluster_role_binding(
            "system:basic-user",
            "system:basic-user",
            &[super::GROUP_AUTHENTICATED],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::auth::MemoryRbac as Src;

    fn sa() -> UserInfo {
        UserInfo::service_account("ns", "sa")
    }

    fn res(verb: &str, group: &str, resource: &str, ns: Option<&str>) -> Attributes {
        Attributes::resource(verb, group, resource, None, ns, None)
    }

    fn role(ns: &str, name: &str, rules: Value) -> Value {
        json!({"kind": "Role", "metadata": {"name": name, "namespace": ns}, "rules": rules})
    }

    fn crole(name: &str, rules: Value) -> Value {
        json!({"kind": "ClusterRole", "metadata": {"name": name}, "rules": rules})
    }

    fn rb(ns: &str, name: &str, kind: &str, role: &str, subjects: Value) -> Value {
        json!({"kind": "RoleBinding", "metadata": {"name": name, "namespace": ns},
               "roleRef": {"apiGroup": RBAC_GROUP, "kind": kind, "name": role},
               "subjects": subjects})
    }

    fn crb(name: &str, role: &str, subjects: Value) -> Value {
        json!({"kind": "ClusterRoleBinding", "metadata": {"name": name},
               "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
               "subjects": subjects})
    }

    fn sa_subject() -> Value {
        json!([{"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}])
    }

    #[test]
    fn nothing_bound_is_forbidden_with_upstream_message() {
        let src = Src::default();
        assert_eq!(
            authorize(&src, &sa(), &res("list", "apps", "deployments", Some("ns"))).unwrap_err(),
            "deployments.apps is forbidden: User \"system:serviceaccount:ns:sa\" cannot list \
             resource \"deployments\" in API group \"apps\" in the namespace \"ns\""
        );
        assert_eq!(
            authorize(&src, &sa(), &res("list", "", "nodes", None)).unwrap_err(),
            "nodes is forbidden: User \"system:serviceaccount:ns:sa\" cannot list resource \
             \"nodes\" in API group \"\" at the cluster scope"
        );
        let a = Attributes::resource(
            "patch",
            "hypersync.io",
            "agentnodes",
            Some("status"),
            Some("x"),
            Some("n1"),
        );
        assert_eq!(
            authorize(&src, &sa(), &a).unwrap_err(),
            "agentnodes.hypersync.io \"n1\" is forbidden: User \"system:serviceaccount:ns:sa\" \
             cannot patch resource \"agentnodes/status\" in API group \"hypersync.io\" in the \
             namespace \"x\""
        );
        let a = Attributes::resource(
            "get",
            "coordination.k8s.io",
            "leases",
            None,
            Some("ns"),
            Some("leader"),
        );
        assert_eq!(
            authorize(&src, &sa(), &a).unwrap_err(),
            "leases.coordination.k8s.io \"leader\" is forbidden: User \
             \"system:serviceaccount:ns:sa\" cannot get resource \"leases\" in API group \
             \"coordination.k8s.io\" in the namespace \"ns\""
        );
        assert_eq!(
            authorize(&src, &sa(), &Attributes::non_resource("post", "/version")).unwrap_err(),
            "forbidden: User \"system:serviceaccount:ns:sa\" cannot post path \"/version\""
        );
    }

    #[test]
    fn role_binding_grants_only_in_its_namespace() {
        let src = Src {
            roles: vec![role(
                "ns",
                "r",
                json!([{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]}]),
            )],
            role_bindings: vec![rb("ns", "b", "Role", "r", sa_subject())],
            ..Src::default()
        };
        assert!(authorize(&src, &sa(), &res("list", "apps", "deployments", Some("ns"))).is_ok());
        assert!(
            authorize(
                &src,
                &sa(),
                &res("list", "apps", "deployments", Some("other"))
            )
            .is_err()
        );
        assert!(authorize(&src, &sa(), &res("list", "apps", "deployments", None)).is_err());
        assert!(
            authorize(
                &src,
                &sa(),
                &res("delete", "apps", "deployments", Some("ns"))
            )
            .is_err()
        );
        assert!(authorize(&src, &sa(), &res("list", "", "deployments", Some("ns"))).is_err());
        assert!(authorize(&src, &sa(), &res("list", "apps", "replicasets", Some("ns"))).is_err());
        // Another service account with the same name elsewhere gets nothing.
        let other = UserInfo::service_account("other", "sa");
        assert!(
            authorize(
                &src,
                &other,
                &res("list", "apps", "deployments", Some("ns"))
            )
            .is_err()
        );
    }

    #[test]
    fn service_account_subject_namespace_defaults_to_binding() {
        let src = Src {
            cluster_roles: vec![crole(
                "pods",
                json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}]),
            )],
            role_bindings: vec![rb(
                "ns",
                "b",
                "ClusterRole",
                "pods",
                json!([{"kind": "ServiceAccount", "name": "sa"}]),
            )],
            ..Src::default()
        };
        assert!(authorize(&src, &sa(), &res("delete", "", "pods", Some("ns"))).is_ok());
        // A RoleBinding to a ClusterRole grants only in the binding's namespace.
        assert!(authorize(&src, &sa(), &res("delete", "", "pods", Some("kube-system"))).is_err());
        // A ClusterRoleBinding needs an explicit namespace on ServiceAccount subjects.
        let src = Src {
            cluster_roles: src.cluster_roles.clone(),
            cluster_role_bindings: vec![crb(
                "b",
                "pods",
                json!([{"kind": "ServiceAccount", "name": "sa"}]),
            )],
            ..Src::default()
        };
        assert!(authorize(&src, &sa(), &res("get", "", "pods", Some("ns"))).is_err());
    }

    #[test]
    fn cluster_role_binding_grants_everywhere() {
        let src = Src {
            cluster_roles: vec![crole(
                "nodes-reader",
                json!([{"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get", "list", "watch"]}]),
            )],
            cluster_role_bindings: vec![crb("b", "nodes-reader", sa_subject())],
            ..Src::default()
        };
        assert!(authorize(&src, &sa(), &res("watch", "", "nodes", None)).is_ok());
        assert!(authorize(&src, &sa(), &res("list", "", "pods", Some("any"))).is_ok());
        assert!(authorize(&src, &sa(), &res("list", "", "pods", None)).is_ok());
        assert!(authorize(&src, &sa(), &res("create", "", "nodes", None)).is_err());
    }

    #[test]
    fn user_and_group_subjects() {
        let src = Src {
            cluster_roles: vec![crole(
                "r",
                json!([{"apiGroups": ["*"], "resources": ["configmaps"], "verbs": ["get"]}]),
            )],
            cluster_role_bindings: vec![
                crb("u", "r", json!([{"kind": "User", "name": "alice"}])),
                crb(
                    "g",
                    "r",
                    json!([{"kind": "Group", "name": "system:serviceaccounts:team"}]),
                ),
            ],
            ..Src::default()
        };
        let a = res("get", "", "configmaps", Some("x"));
        let alice = UserInfo {
            username: "alice".into(),
            groups: vec![],
        };
        let bob = UserInfo {
            username: "bob".into(),
            groups: vec!["devs".into()],
        };
        assert!(authorize(&src, &alice, &a).is_ok());
        assert!(authorize(&src, &bob, &a).is_err());
        assert!(authorize(&src, &UserInfo::service_account("team", "any"), &a).is_ok());
        assert!(authorize(&src, &sa(), &a).is_err());
    }

    #[test]
    fn subresources_and_wildcards() {
        let src = Src {
            cluster_roles: vec![crole(
                "r",
                json!([
                    {"apiGroups": ["hypersync.io"], "resources": ["agentnodes/status"], "verbs": ["patch", "update"]},
                    {"apiGroups": ["hypersync.io"], "resources": ["agentnodes"], "verbs": ["get"]},
                    {"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["get"]}
                ]),
            )],
            cluster_role_bindings: vec![crb("b", "r", sa_subject())],
            ..Src::default()
        };
        let status = |verb: &str| {
            Attributes::resource(
                verb,
                "hypersync.io",
                "agentnodes",
                Some("status"),
                Some("x"),
                Some("n"),
            )
        };
        assert!(authorize(&src, &sa(), &status("patch")).is_ok());
        assert!(authorize(&src, &sa(), &status("get")).is_err());
        let main =
            Attributes::resource("patch", "hypersync.io", "agentnodes", None, Some("x"), None);
        assert!(authorize(&src, &sa(), &main).is_err());
        let scale =
            Attributes::resource("get", "apps", "deployments", Some("scale"), Some("x"), None);
        assert!(authorize(&src, &sa(), &scale).is_ok());
        let dep = res("get", "apps", "deployments", Some("x"));
        assert!(authorize(&src, &sa(), &dep).is_err());
        // "*" resources covers subresources too.
        let src = Src {
            cluster_roles: vec![crole(
                "all",
                json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
            )],
            cluster_role_bindings: vec![crb("b", "all", sa_subject())],
            ..Src::default()
        };
        assert!(authorize(&src, &sa(), &status("update")).is_ok());
        assert!(authorize(&src, &sa(), &Attributes::non_resource("get", "/metrics")).is_err());
    }

    #[test]
    fn resource_names_restrict() {
        let src = Src {
            roles: vec![role(
                "ns",
                "r",
                json!([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                        "resourceNames": ["leader"], "verbs": ["get", "update"]}]),
            )],
            role_bindings: vec![rb("ns", "b", "Role", "r", sa_subject())],
            ..Src::default()
        };
        let lease = |verb: &str, name: Option<&str>| {
            Attributes::resource(
                verb,
                "coordination.k8s.io",
                "leases",
                None,
                Some("ns"),
                name,
            )
        };
        assert!(authorize(&src, &sa(), &lease("get", Some("leader"))).is_ok());
        assert!(authorize(&src, &sa(), &lease("get", Some("other"))).is_err());
        assert!(authorize(&src, &sa(), &lease("get", None)).is_err());
    }

    #[test]
    fn discovery_is_allowed_for_authenticated_users_by_default() {
        let src = Src::default();
        for path in [
            "/version",
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps/v1",
            "/openapi/v3",
            "/healthz",
        ] {
            assert!(
                authorize(&src, &sa(), &Attributes::non_resource("get", path)).is_ok(),
                "{path}"
            );
        }
        assert!(authorize(&src, &sa(), &Attributes::non_resource("get", "/metrics")).is_err());
        let anon = UserInfo::anonymous();
        assert!(authorize(&src, &anon, &Attributes::non_resource("get", "/version")).is_ok());
        assert!(authorize(&src, &anon, &Attributes::non_resource("get", "/apis")).is_err());
        let ssar = res(
            "create",
            "authorization.k8s.io",
            "selfsubjectaccessreviews",
            None,
        );
        assert!(authorize(&src, &sa(), &ssar).is_ok());
    }

    #[test]
    fn masters_bypass() {
        let src = Src::default();
        assert!(authorize(&src, &UserInfo::admin(), &res("delete", "", "nodes", None)).is_ok());
    }

    #[test]
    fn aggregated_cluster_roles_resolve_at_authorization_time() {
        let mut src = Src {
            cluster_roles: vec![json!({"kind": "ClusterRole", "metadata": {"name": "agg"},
                       "aggregationRule": {"clusterRoleSelectors": [
                           {"matchLabels": {"rbac.example.com/aggregate-to-agg": "true"}}]},
                       "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]})],
            cluster_role_bindings: vec![crb("b", "agg", sa_subject())],
            ..Src::default()
        };
        let cm = res("get", "", "configmaps", Some("ns"));
        assert!(authorize(&src, &sa(), &cm).is_err());
        // The role's own stale rules are replaced by the aggregation.
        assert!(authorize(&src, &sa(), &res("get", "", "secrets", Some("ns"))).is_err());
        src.cluster_roles.push(json!({"kind": "ClusterRole",
            "metadata": {"name": "part", "labels": {"rbac.example.com/aggregate-to-agg": "true"}},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}));
        assert!(authorize(&src, &sa(), &cm).is_ok());
        assert_eq!(aggregated_rules(&src, "agg").unwrap().len(), 1);
        assert!(aggregated_rules(&src, "missing").is_none());
    }

    #[test]
    fn nested_and_cyclic_aggregation() {
        let src = Src {
            cluster_roles: vec![
                json!({"kind": "ClusterRole", "metadata": {"name": "a", "labels": {"agg": "b"}},
                       "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "a"}}]}}),
                json!({"kind": "ClusterRole", "metadata": {"name": "b", "labels": {"agg": "a"}},
                       "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "b"}}]}}),
                json!({"kind": "ClusterRole", "metadata": {"name": "leaf", "labels": {"agg": "b"}},
                       "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
            ],
            cluster_role_bindings: vec![crb("x", "a", sa_subject())],
            ..Src::default()
        };
        // a <- b <- leaf (and b <- a, a cycle): terminates and grants leaf's rule.
        assert!(authorize(&src, &sa(), &res("get", "", "pods", Some("ns"))).is_ok());
    }

    #[test]
    fn missing_role_reason_is_appended() {
        let src = Src {
            role_bindings: vec![rb("ns", "b", "Role", "gone", sa_subject())],
            ..Src::default()
        };
        assert_eq!(
            authorize(&src, &sa(), &res("get", "", "pods", Some("ns"))).unwrap_err(),
            "pods is forbidden: User \"system:serviceaccount:ns:sa\" cannot get resource \"pods\" \
             in API group \"\" in the namespace \"ns\": RBAC: role.rbac.authorization.k8s.io \
             \"gone\" not found"
        );
        let src = Src {
            cluster_role_bindings: vec![crb("b", "gone", sa_subject())],
            role_bindings: vec![rb("ns", "b", "Role", "gone2", sa_subject())],
            ..Src::default()
        };
        let err = authorize(&src, &sa(), &res("get", "", "pods", Some("ns"))).unwrap_err();
        assert!(
            err.ends_with(": RBAC: [clusterrole.rbac.authorization.k8s.io \"gone\" not found, role.rbac.authorization.k8s.io \"gone2\" not found]"),
            "{err}"
        );
    }

    #[test]
    fn source_objects_override_defaults() {
        let src = Src {
            cluster_roles: vec![crole("system:discovery", json!([]))],
            ..Src::default()
        };
        assert!(authorize(&src, &sa(), &Attributes::non_resource("get", "/apis")).is_err());
    }
}

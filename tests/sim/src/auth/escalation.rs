//! RBAC escalation prevention on Role/ClusterRole and RoleBinding/ClusterRoleBinding writes, as
//! the apiserver's policy-based RBAC storage does it (`pkg/registry/rbac/role/policybased`,
//! `.../rolebinding/policybased`, `pkg/registry/rbac/escalation_check.go`,
//! `pkg/registry/rbac/validation/rule.go` `ConfirmNoEscalation` / `Covers`,
//! `pkg/apis/rbac/v1/evaluation_helpers.go` `CompactString`).
//!
//! A user may write a role only if they already hold every permission it grants, unless they are
//! in `system:masters` or are authorized for the `escalate` verb on that role. A user may write a
//! binding only if they hold every permission of the role it refers to, unless they are in
//! `system:masters` or are authorized for `bind` on that role. The permissions a user holds are
//! the rules of their ClusterRoleBindings plus, for a namespaced object, their RoleBindings in its
//! namespace. Refused writes get 403 with
//! `user "u" (groups=["g"]) is attempting to grant RBAC permissions not currently held:\n{...}`.

use super::rbac::{aggregated_rules, default_cluster_role_bindings, strings, subject_matches};
use super::{Attributes, GROUP_MASTERS, RbacSource, UserInfo};
use serde_json::Value;
use std::collections::BTreeSet;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// One policy rule (only the fields escalation compares).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rule {
    api_groups: Vec<String>,
    resources: Vec<String>,
    resource_names: Vec<String>,
    non_resource_urls: Vec<String>,
    verbs: Vec<String>,
}

impl Rule {
    fn from_json(v: &Value) -> Rule {
        Rule {
            api_groups: strings(v.get("apiGroups")),
            resources: strings(v.get("resources")),
            resource_names: strings(v.get("resourceNames")),
            non_resource_urls: strings(v.get("nonResourceURLs")),
            verbs: strings(v.get("verbs")),
        }
    }

    /// `CompactString`: the non-empty fields as Go's `%q` prints string slices.
    fn compact_string(&self) -> String {
        let q = |v: &[String]| {
            let items: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
            format!("[{}]", items.join(" "))
        };
        let mut parts = Vec::new();
        for (name, v) in [
            ("APIGroups", &self.api_groups),
            ("Resources", &self.resources),
            ("NonResourceURLs", &self.non_resource_urls),
            ("ResourceNames", &self.resource_names),
            ("Verbs", &self.verbs),
        ] {
            if !v.is_empty() {
                parts.push(format!("{name}:{}", q(v)));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }
}

/// `BreakdownRule`: one rule per (group, resource, verb[, name]) and per (URL, verb).
fn breakdown(r: &Rule) -> Vec<Rule> {
    let mut out = Vec::new();
    let one = |s: &String| vec![s.clone()];
    for g in &r.api_groups {
        for res in &r.resources {
            for verb in &r.verbs {
                if r.resource_names.is_empty() {
                    out.push(Rule {
                        api_groups: one(g),
                        resources: one(res),
                        verbs: one(verb),
                        ..Rule::default()
                    });
                }
                for n in &r.resource_names {
                    out.push(Rule {
                        api_groups: one(g),
                        resources: one(res),
                        verbs: one(verb),
                        resource_names: one(n),
                        ..Rule::default()
                    });
                }
            }
        }
    }
    for u in &r.non_resource_urls {
        for verb in &r.verbs {
            out.push(Rule {
                non_resource_urls: one(u),
                verbs: one(verb),
                ..Rule::default()
            });
        }
    }
    out
}

fn has(set: &[String], s: &str) -> bool {
    set.iter().any(|x| x == s)
}

fn has_all(set: &[String], subset: &[String]) -> bool {
    subset.iter().all(|s| has(set, s))
}

fn resource_covers_all(owner: &[String], sub: &[String]) -> bool {
    if has(owner, "*") || has_all(owner, sub) {
        return true;
    }
    sub.iter().all(|path| {
        if has(owner, path) {
            return true;
        }
        match path.split_once('/') {
            Some((_, subresource)) => has(owner, &format!("*/{subresource}")),
            None => false,
        }
    })
}

fn non_resource_url_covers(owner: &str, sub: &str) -> bool {
    owner == sub
        || owner
            .strip_suffix('*')
            .is_some_and(|p| sub.starts_with(p.trim_end_matches('*')))
}

/// `ruleCovers`: does the owner rule grant everything the (broken-down) rule grants?
fn rule_covers(owner: &Rule, sub: &Rule) -> bool {
    let verbs = has(&owner.verbs, "*") || has_all(&owner.verbs, &sub.verbs);
    let groups = has(&owner.api_groups, "*") || has_all(&owner.api_groups, &sub.api_groups);
    let resources = resource_covers_all(&owner.resources, &sub.resources);
    let urls = sub.non_resource_urls.iter().all(|u| {
        owner
            .non_resource_urls
            .iter()
            .any(|o| non_resource_url_covers(o, u))
    });
    let names = if sub.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || has_all(&owner.resource_names, &sub.resource_names)
    };
    verbs && groups && resources && names && urls
}

/// `CompactRules`: rules on one group and one resource (at most one name) merge their verbs.
fn compact(rules: Vec<Rule>) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::new();
    let mut simple: Vec<Rule> = Vec::new();
    for r in rules {
        let is_simple = r.resource_names.len() <= 1
            && r.non_resource_urls.is_empty()
            && r.api_groups.len() == 1
            && r.resources.len() == 1;
        if !is_simple {
            out.push(r);
            continue;
        }
        match simple.iter_mut().find(|s| {
            s.api_groups == r.api_groups
                && s.resources == r.resources
                && s.resource_names == r.resource_names
        }) {
            Some(s) => s.verbs.extend(r.verbs),
            None => simple.push(r),
        }
    }
    out.extend(simple);
    out
}

/// The rules a user holds where the object lives (`namespace` empty for cluster-scoped objects):
/// every matching ClusterRoleBinding's ClusterRole, plus every matching RoleBinding of the
/// namespace (its Role or ClusterRole). Bootstrap bindings count unless overridden by name.
fn rules_for(src: &dyn RbacSource, user: &UserInfo, namespace: &str) -> Vec<Rule> {
    let mut rules = Vec::new();
    let mut crbs = src.cluster_role_bindings();
    let stored: BTreeSet<String> = crbs.iter().map(|b| name_of(b).to_string()).collect();
    crbs.extend(
        default_cluster_role_bindings()
            .into_iter()
            .filter(|b| !stored.contains(name_of(b))),
    );
    for b in &crbs {
        if bound(b, user, "")
            && let Some(name) = b.pointer("/roleRef/name").and_then(Value::as_str)
        {
            rules.extend(cluster_role_rules(src, name));
        }
    }
    if !namespace.is_empty() {
        for b in src.role_bindings(namespace) {
            if bound(&b, user, namespace) {
                rules.extend(role_ref_rules(src, &b, namespace).unwrap_or_default());
            }
        }
    }
    rules
}

fn name_of(v: &Value) -> &str {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn bound(binding: &Value, user: &UserInfo, binding_ns: &str) -> bool {
    binding
        .get("subjects")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|s| subject_matches(s, user, binding_ns)))
}

fn cluster_role_rules(src: &dyn RbacSource, name: &str) -> Vec<Rule> {
    aggregated_rules(src, name)
        .unwrap_or_default()
        .iter()
        .map(Rule::from_json)
        .collect()
}

/// `GetRoleReferenceRules`: the rules of a binding's `roleRef`; a missing role is the error
/// upstream reports (`roles.rbac.authorization.k8s.io "x" not found`).
fn role_ref_rules(
    src: &dyn RbacSource,
    binding: &Value,
    namespace: &str,
) -> Result<Vec<Rule>, String> {
    let kind = binding
        .pointer("/roleRef/kind")
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = binding
        .pointer("/roleRef/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    match kind {
        "Role" => {
            let role = src
                .roles(namespace)
                .into_iter()
                .find(|r| name_of(r) == name)
                .ok_or_else(|| format!("roles.{RBAC_GROUP} \"{name}\" not found"))?;
            Ok(role
                .get("rules")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(Rule::from_json).collect())
                .unwrap_or_default())
        }
        "ClusterRole" => match aggregated_rules(src, name) {
            Some(r) => Ok(r.iter().map(Rule::from_json).collect()),
            None => Err(format!("clusterroles.{RBAC_GROUP} \"{name}\" not found")),
        },
        other => Err(format!("unsupported role reference kind: {other:?}")),
    }
}

/// `ConfirmNoEscalation`: `Err` with the message when `rules` grant something the user does not
/// hold where the object lives.
fn confirm_no_escalation(
    src: &dyn RbacSource,
    user: &UserInfo,
    namespace: &str,
    rules: &[Rule],
) -> Result<(), String> {
    let owner = rules_for(src, user, namespace);
    let missing: Vec<Rule> = rules
        .iter()
        .flat_map(breakdown)
        .filter(|sub| !owner.iter().any(|o| rule_covers(o, sub)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let described: BTreeSet<String> = compact(missing).iter().map(Rule::compact_string).collect();
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    Err(format!(
        "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        user.username,
        groups.join(" "),
        described.into_iter().collect::<Vec<_>>().join("\n")
    ))
}

/// Checks a write of a Role/ClusterRole (`resource` `roles` or `clusterroles`) or
/// RoleBinding/ClusterRoleBinding (`rolebindings`, `clusterrolebindings`) by `user`. `obj` is the
/// object as it would be stored, `namespace` empty for cluster-scoped kinds, and `allowed` answers
/// whether the user is authorized for a request (the `escalate` / `bind` checks). `Err` is the
/// reason for a 403 (`<resource>.rbac.authorization.k8s.io "<name>" is forbidden: <reason>`).
pub fn check_write(
    src: &dyn RbacSource,
    allowed: &dyn Fn(&Attributes) -> bool,
    user: &UserInfo,
    resource: &str,
    namespace: &str,
    obj: &Value,
) -> Result<(), String> {
    if user.groups.iter().any(|g| g == GROUP_MASTERS) {
        return Ok(());
    }
    let ns = (!namespace.is_empty()).then_some(namespace);
    let name = name_of(obj);
    match resource {
        "roles" | "clusterroles" => {
            let escalate = Attributes::resource(
                "escalate",
                RBAC_GROUP,
                resource,
                None,
                ns,
                Some(name).filter(|n| !n.is_empty()),
            );
            if allowed(&escalate) {
                return Ok(());
            }
            let rules: Vec<Rule> = obj
                .get("rules")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(Rule::from_json).collect())
                .unwrap_or_default();
            confirm_no_escalation(src, user, namespace, &rules)
        }
        "rolebindings" | "clusterrolebindings" => {
            let kind = obj
                .pointer("/roleRef/kind")
                .and_then(Value::as_str)
                .unwrap_or("");
            let role_name = obj
                .pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let role_resource = if kind == "ClusterRole" {
                "clusterroles"
            } else {
                "roles"
            };
            let bind = Attributes::resource(
                "bind",
                obj.pointer("/roleRef/apiGroup")
                    .and_then(Value::as_str)
                    .unwrap_or(RBAC_GROUP),
                role_resource,
                None,
                ns,
                Some(role_name).filter(|n| !n.is_empty()),
            );
            if allowed(&bind) {
                return Ok(());
            }
            let rules = role_ref_rules(src, obj, namespace)?;
            confirm_no_escalation(src, user, namespace, &rules)
        }
        _ => Ok(()),
    }
}

/// Whether a write of `new` over `old` only changes what the garbage collector needs
/// (`IsOnlyMutatingGCFields`: owner references and finalizers), which skips the check.
pub fn only_gc_fields_change(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in [
                "ownerReferences",
                "finalizers",
                "resourceVersion",
                "managedFields",
                "generation",
            ] {
                m.remove(k);
            }
        }
        v
    };
    strip(old) == strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::auth::MemoryRbac as Src;

    fn src() -> Src {
        Src {
            roles: vec![
                json!({"metadata": {"name": "cm-reader", "namespace": "ns"},
                       "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]}),
                json!({"metadata": {"name": "secrets", "namespace": "ns"},
                       "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]}),
            ],
            role_bindings: vec![json!({"metadata": {"name": "b", "namespace": "ns"},
                 "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "cm-reader"},
                 "subjects": [{"kind": "User", "name": "bob"}]})],
            cluster_roles: vec![],
            cluster_role_bindings: vec![],
        }
    }

    fn bob() -> UserInfo {
        UserInfo {
            username: "bob".into(),
            groups: vec!["system:authenticated".into()],
        }
    }

    #[test]
    fn a_role_may_grant_only_what_the_writer_holds() {
        let s = src();
        let deny = |_: &Attributes| false;
        let ok = json!({"metadata": {"name": "r"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]});
        assert!(check_write(&s, &deny, &bob(), "roles", "ns", &ok).is_ok());
        let more = json!({"metadata": {"name": "r"}, "rules": [
            {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get", "delete"]}]});
        let err = check_write(&s, &deny, &bob(), "roles", "ns", &more).unwrap_err();
        assert_eq!(
            err,
            "user \"bob\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n\
             {APIGroups:[\"\"], Resources:[\"configmaps\"], Verbs:[\"delete\"]}\n\
             {APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"delete\"]}"
        );
        // In another namespace bob holds nothing.
        assert!(check_write(&s, &deny, &bob(), "roles", "", &ok).is_err());
        // `escalate` on roles lifts the check; system:masters never has it.
        let escalate = |a: &Attributes| a.verb == "escalate" && a.resource == "roles";
        assert!(check_write(&s, &escalate, &bob(), "roles", "ns", &more).is_ok());
        assert!(check_write(&s, &deny, &UserInfo::admin(), "roles", "ns", &more).is_ok());
    }

    #[test]
    fn a_binding_may_refer_only_to_a_role_the_writer_covers_or_may_bind() {
        let s = src();
        let deny = |_: &Attributes| false;
        let to = |role: &str| {
            json!({"metadata": {"name": "rb"}, "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": role},
                   "subjects": [{"kind": "User", "name": "eve"}]})
        };
        assert!(check_write(&s, &deny, &bob(), "rolebindings", "ns", &to("cm-reader")).is_ok());
        let err = check_write(&s, &deny, &bob(), "rolebindings", "ns", &to("secrets")).unwrap_err();
        assert!(
            err.ends_with("{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"list\"]}"),
            "{err}"
        );
        assert_eq!(
            check_write(&s, &deny, &bob(), "rolebindings", "ns", &to("nope")).unwrap_err(),
            "roles.rbac.authorization.k8s.io \"nope\" not found"
        );
        let bind = |a: &Attributes| {
            a.verb == "bind" && a.resource == "roles" && a.name.as_deref() == Some("secrets")
        };
        assert!(check_write(&s, &bind, &bob(), "rolebindings", "ns", &to("secrets")).is_ok());
    }

    #[test]
    fn wildcards_subresources_names_and_urls_cover_as_upstream() {
        let owner = Rule {
            api_groups: vec!["*".into()],
            resources: vec!["*/status".into(), "pods".into()],
            verbs: vec!["get".into()],
            ..Rule::default()
        };
        let sub = |r: &str| Rule {
            api_groups: vec!["apps".into()],
            resources: vec![r.into()],
            verbs: vec!["get".into()],
            ..Rule::default()
        };
        assert!(rule_covers(&owner, &sub("deployments/status")));
        assert!(!rule_covers(&owner, &sub("deployments")));
        let named = Rule {
            resource_names: vec!["x".into()],
            ..sub("pods")
        };
        assert!(rule_covers(&owner, &named));
        let owner_named = Rule {
            resource_names: vec!["x".into()],
            ..owner.clone()
        };
        assert!(!rule_covers(&owner_named, &sub("pods")));
        let urls = Rule {
            non_resource_urls: vec!["/api/*".into()],
            verbs: vec!["get".into()],
            ..Rule::default()
        };
        let want = Rule {
            non_resource_urls: vec!["/api/v1".into()],
            verbs: vec!["get".into()],
            ..Rule::default()
        };
        assert!(rule_covers(&urls, &want));
    }
}

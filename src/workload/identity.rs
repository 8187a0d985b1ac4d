//! The per-AgentNode identity: a ServiceAccount `<node>-agent` and a Role and RoleBinding that let the
//! agent read its own AgentNode and read and patch only that node's status.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::labels::{
    AGENT_APP_NAME, COMPONENT_AGENT, LABEL_AGENT_NODE, LABEL_COMPONENT, LABEL_INSTANCE, LABEL_NAME,
    base_labels,
};
use super::meta::object_meta;
use super::names::{child_name, label_value};
use crate::api::GROUP;
use crate::api::agent_node::Spawn;

/// Suffix of the ServiceAccount, Role and RoleBinding names.
pub const IDENTITY_SUFFIX: &str = "agent";

/// Name of the node's ServiceAccount, Role and RoleBinding: `<node>-agent`.
pub fn identity_name(node_name: &str) -> String {
    child_name(node_name, IDENTITY_SUFFIX)
}

/// The labels of an AgentNode's identity objects.
pub fn identity_labels(node_name: &str) -> BTreeMap<String, String> {
    let mut labels = base_labels();
    labels.insert(LABEL_NAME.to_string(), AGENT_APP_NAME.to_string());
    labels.insert(LABEL_INSTANCE.to_string(), label_value(node_name));
    labels.insert(LABEL_COMPONENT.to_string(), COMPONENT_AGENT.to_string());
    labels.insert(LABEL_AGENT_NODE.to_string(), label_value(node_name));
    labels
}

/// The node's ServiceAccount.
pub fn build_service_account(
    node_name: &str,
    namespace: &str,
    owner: &OwnerReference,
) -> ServiceAccount {
    ServiceAccount {
        metadata: object_meta(
            &identity_name(node_name),
            namespace,
            identity_labels(node_name),
            BTreeMap::new(),
            owner,
        ),
        ..ServiceAccount::default()
    }
}

/// The node's Role: `get` on `agentnodes` and `get`, `patch` on `agentnodes/status`, both limited to
/// this node by `resourceNames`.
pub fn build_role(node_name: &str, namespace: &str, owner: &OwnerReference) -> Role {
    let rule = |resource: &str, verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![GROUP.to_string()]),
        resources: Some(vec![resource.to_string()]),
        resource_names: Some(vec![node_name.to_string()]),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        non_resource_urls: None,
    };
    Role {
        metadata: object_meta(
            &identity_name(node_name),
            namespace,
            identity_labels(node_name),
            BTreeMap::new(),
            owner,
        ),
        rules: Some(vec![
            rule("agentnodes", &["get"]),
            rule("agentnodes/status", &["get", "patch"]),
        ]),
    }
}

/// The extra rules of a node with `spec.spawn`: query the registry (ModelEntries by capability
/// labels) and the stacks, and create, read and delete AgentNodes (its children: the spawn admission
/// policy holds it to nodes whose `parentRef` is itself, and deletions to its subtree), plus creating
/// AgentStacks with `createStacks`. RBAC cannot scope these to a subtree; the policy and the operator's
/// caps do.
pub fn spawner_rules(spawn: &Spawn) -> Vec<PolicyRule> {
    let rule = |resource: &str, verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![GROUP.to_string()]),
        resources: Some(vec![resource.to_string()]),
        resource_names: None,
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        non_resource_urls: None,
    };
    vec![
        rule("modelentries", &["get", "list", "watch"]),
        rule(
            "agentstacks",
            if spawn.create_stacks {
                &["get", "list", "watch", "create"]
            } else {
                &["get", "list", "watch"]
            },
        ),
        rule("agentnodes", &["create", "get", "list", "watch", "delete"]),
    ]
}

/// The node's Role: [`build_role`], plus [`spawner_rules`] when the node may spawn.
pub fn build_node_role(
    node_name: &str,
    namespace: &str,
    owner: &OwnerReference,
    spawn: Option<&Spawn>,
) -> Role {
    let mut role = build_role(node_name, namespace, owner);
    if let Some(spawn) = spawn {
        role.rules
            .get_or_insert_with(Vec::new)
            .extend(spawner_rules(spawn));
    }
    role
}

/// The RoleBinding of the node's Role to its ServiceAccount.
pub fn build_role_binding(node_name: &str, namespace: &str, owner: &OwnerReference) -> RoleBinding {
    let name = identity_name(node_name);
    RoleBinding {
        metadata: object_meta(
            &name,
            namespace,
            identity_labels(node_name),
            BTreeMap::new(),
            owner,
        ),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "Role".to_string(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_string(),
            name,
            namespace: Some(namespace.to_string()),
            api_group: None,
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::fixture::assert_fixture;
    use crate::workload::meta::owner_reference;

    fn owner() -> OwnerReference {
        owner_reference("AgentNode", "scout-1", "uid-scout")
    }

    #[test]
    fn role_matches_fixture() {
        assert_fixture("agent-role", &build_role("scout-1", "ai", &owner()));
    }

    #[test]
    fn role_allows_only_this_nodes_status() {
        let role = build_role("scout-1", "ai", &owner());
        let rules = role.rules.unwrap();
        assert_eq!(rules.len(), 2);
        for r in &rules {
            assert_eq!(r.api_groups.as_deref().unwrap(), ["hypersync.io"]);
            assert_eq!(r.resource_names.as_deref().unwrap(), ["scout-1"]);
            assert!(
                !r.verbs
                    .iter()
                    .any(|v| v == "*" || v == "update" || v == "delete")
            );
        }
        assert_eq!(rules[0].resources.as_deref().unwrap(), ["agentnodes"]);
        assert_eq!(rules[0].verbs, ["get"]);
        assert_eq!(
            rules[1].resources.as_deref().unwrap(),
            ["agentnodes/status"]
        );
        assert_eq!(rules[1].verbs, ["get", "patch"]);
    }

    #[test]
    fn binding_ties_the_role_to_the_service_account() {
        let o = owner();
        let sa = build_service_account("scout-1", "ai", &o);
        let rb = build_role_binding("scout-1", "ai", &o);
        let role = build_role("scout-1", "ai", &o);
        assert_eq!(sa.metadata.name.as_deref(), Some("scout-1-agent"));
        assert_eq!(rb.role_ref.name, role.metadata.name.clone().unwrap());
        assert_eq!(rb.role_ref.kind, "Role");
        let subject = &rb.subjects.as_ref().unwrap()[0];
        assert_eq!(subject.kind, "ServiceAccount");
        assert_eq!(Some(subject.name.as_str()), sa.metadata.name.as_deref());
        assert_eq!(subject.namespace.as_deref(), Some("ai"));
        for meta in [&sa.metadata, &rb.metadata, &role.metadata] {
            assert_eq!(
                meta.owner_references.as_deref().unwrap(),
                std::slice::from_ref(&o)
            );
        }
    }

    #[test]
    fn long_node_names_stay_within_limits() {
        let node = "n".repeat(253);
        let name = identity_name(&node);
        assert!(name.len() <= 63 && name.ends_with("-agent"));
        // resourceNames keep the full object name.
        let role = build_role(&node, "ai", &owner());
        assert_eq!(
            role.rules.unwrap()[0].resource_names.as_ref().unwrap()[0],
            node
        );
    }

    #[test]
    fn only_spawners_get_the_spawn_verbs() {
        let plain = build_node_role("scout-1", "ai", &owner(), None);
        assert_eq!(plain, build_role("scout-1", "ai", &owner()));
        let spawn: Spawn =
            serde_json::from_value(serde_json::json!({"maxChildren": 2})).expect("spawn");
        let role = build_node_role("coordinator", "ai", &owner(), Some(&spawn));
        let rules = role.rules.expect("rules");
        let verbs = |resource: &str| -> Vec<String> {
            rules
                .iter()
                .filter(|r| r.resources.as_deref() == Some(&[resource.to_string()][..]))
                .flat_map(|r| r.verbs.clone())
                .collect()
        };
        assert_eq!(
            verbs("agentnodes"),
            ["get", "create", "get", "list", "watch", "delete"]
        );
        assert_eq!(verbs("agentstacks"), ["get", "list", "watch"]);
        assert_eq!(verbs("modelentries"), ["get", "list", "watch"]);
        assert!(
            rules
                .iter()
                .all(|r| r.api_groups.as_deref() == Some(&[GROUP.to_string()][..]))
        );
        let creating = Spawn {
            create_stacks: true,
            ..spawn
        };
        let role = build_node_role("coordinator", "ai", &owner(), Some(&creating));
        assert!(
            role.rules
                .expect("rules")
                .iter()
                .any(
                    |r| r.resources.as_deref() == Some(&["agentstacks".to_string()][..])
                        && r.verbs.contains(&"create".to_string())
                )
        );
    }
}

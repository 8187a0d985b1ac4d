//! The RBAC authorizer over the store's RoleBinding index decides exactly as a scan of every
//! binding does, with many bindings, and follows creates, subject changes and deletes.

use super::SimState;
use super::handlers::{DeleteOpts, WriteOpts};
use crate::auth::{self, Attributes, RbacSource, UserInfo};
use crate::server::SimConfig;
use serde_json::{Value, json};
use std::sync::Arc;

/// The same store read without the index (the trait's scanning defaults).
struct Scan<'a>(&'a SimState);

impl RbacSource for Scan<'_> {
    fn roles(&self, ns: &str) -> Vec<Value> {
        self.0.roles(ns)
    }
    fn role_bindings(&self, ns: &str) -> Vec<Value> {
        self.0.role_bindings(ns)
    }
    fn cluster_roles(&self) -> Vec<Value> {
        self.0.cluster_roles()
    }
    fn cluster_role_bindings(&self) -> Vec<Value> {
        self.0.cluster_role_bindings()
    }
}

const RBAC: &str = "rbac.authorization.k8s.io";

fn write(st: &SimState, plural: &str, ns: &str, body: Value, update: bool) {
    let ri = st.registry_read().get(RBAC, plural).expect("rbac served");
    let opts = WriteOpts::system("test");
    let r = if update {
        let name = body["metadata"]["name"].as_str().unwrap().to_string();
        st.update_obj(&ri, "v1", Some(ns), &name, body, None, &opts)
    } else {
        st.create_obj(&ri, "v1", Some(ns), body, &opts)
    };
    assert!(r.is_ok(), "{plural} write failed");
}

fn role(name: &str, resource: &str) -> Value {
    json!({"metadata": {"name": name}, "rules": [
        {"apiGroups": [""], "resources": [resource], "verbs": ["get", "list"]}]})
}

fn binding(name: &str, kind: &str, role: &str, subjects: Value) -> Value {
    json!({"metadata": {"name": name},
        "roleRef": {"apiGroup": RBAC, "kind": kind, "name": role}, "subjects": subjects})
}

fn users() -> Vec<UserInfo> {
    let mut out: Vec<UserInfo> = [0, 1, 7, 598, 599, 1_000]
        .iter()
        .map(|i| UserInfo::service_account("team", &format!("sa-{i}")))
        .collect();
    out.push(UserInfo::service_account("other", "sa-3"));
    out.push(UserInfo {
        username: "alice".into(),
        groups: vec!["devs".into(), auth::GROUP_AUTHENTICATED.into()],
    });
    out.push(UserInfo {
        username: "devs".into(),
        groups: vec![auth::GROUP_AUTHENTICATED.into()],
    });
    out
}

fn attrs() -> Vec<Attributes> {
    ["configmaps", "secrets", "pods"]
        .iter()
        .flat_map(|r| {
            ["team", "other"].map(|ns| Attributes::resource("get", "", r, None, Some(ns), None))
        })
        .collect()
}

/// (user, attrs) -> (allowed, reason), by the index and by the scan; they must agree.
fn decisions(st: &SimState) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    for u in users() {
        for a in attrs() {
            let indexed = auth::decide(st, &u, &a);
            let scanned = auth::decide(&Scan(st), &u, &a);
            assert_eq!(indexed, scanned, "{} {:?}", u.username, a.resource);
            out.push((indexed.allowed, indexed.reason));
        }
    }
    out
}

#[test]
fn indexed_role_bindings_decide_as_a_scan_of_all_bindings() {
    let st: Arc<SimState> = SimState::new(SimConfig {
        dataplane: false,
        ..SimConfig::default()
    })
    .unwrap();
    let ns_ri = st.registry_read().get("", "namespaces").unwrap();
    for ns in ["team", "other"] {
        let body = json!({"metadata": {"name": ns}});
        st.create_obj(&ns_ri, "v1", None, body, &WriteOpts::system("test"))
            .unwrap();
    }
    write(&st, "roles", "team", role("cm-reader", "configmaps"), false);
    write(&st, "clusterroles", "", role("pod-reader", "pods"), false);
    // 600 service accounts, each bound to its own Role, as the operator's nodes are.
    for i in 0..600 {
        write(
            &st,
            "roles",
            "team",
            role(&format!("r-{i}"), "secrets"),
            false,
        );
        let subject = json!([{"kind": "ServiceAccount", "name": format!("sa-{i}")}]);
        let b = binding(&format!("rb-{i}"), "Role", &format!("r-{i}"), subject);
        write(&st, "rolebindings", "team", b, false);
    }
    // A group, a user, a ClusterRole, a missing Role, a service account of another namespace.
    let others = [
        (
            "devs",
            "Role",
            "cm-reader",
            json!({"kind": "Group", "name": "devs"}),
        ),
        (
            "alice-pods",
            "ClusterRole",
            "pod-reader",
            json!({"kind": "User", "name": "alice"}),
        ),
        (
            "a-missing",
            "Role",
            "nope",
            json!({"kind": "ServiceAccount", "name": "sa-7"}),
        ),
        (
            "foreign",
            "Role",
            "cm-reader",
            json!({"kind": "ServiceAccount", "name": "sa-3", "namespace": "other"}),
        ),
    ];
    for (name, kind, role, subject) in others {
        let b = binding(name, kind, role, json!([subject]));
        write(&st, "rolebindings", "team", b, false);
    }

    let before = decisions(&st);
    let allowed = before.iter().filter(|d| d.0).count();
    assert!(allowed >= 8, "{before:?}");
    let decide = |sa: &str, resource: &str| {
        let attrs = Attributes::resource("get", "", resource, None, Some("team"), None);
        auth::decide(&*st, &UserInfo::service_account("team", sa), &attrs)
    };
    let sa7_secrets = decide("sa-7", "secrets");
    assert!(sa7_secrets.allowed);
    assert!(
        sa7_secrets.reason.contains("\"rb-7/team\""),
        "{}",
        sa7_secrets.reason
    );
    let sa7_pods = decide("sa-7", "pods");
    assert!(!sa7_pods.allowed);
    assert!(
        sa7_pods
            .reason
            .contains("role.rbac.authorization.k8s.io \"nope\" not found")
    );

    // Move sa-7's binding to sa-1000, drop sa-0's: the index follows.
    let moved = json!([{"kind": "ServiceAccount", "name": "sa-1000"}]);
    write(
        &st,
        "rolebindings",
        "team",
        binding("rb-7", "Role", "r-7", moved),
        true,
    );
    let ri = st.registry_read().get(RBAC, "rolebindings").unwrap();
    st.delete_obj(&ri, "v1", Some("team"), "rb-0", &DeleteOpts::default())
        .unwrap();
    let after = decisions(&st);
    assert_ne!(before, after);
    let can = |sa: &str| decide(sa, "secrets").allowed;
    assert!(!can("sa-7"));
    assert!(can("sa-1000"));
    assert!(!can("sa-0"));
    assert!(can("sa-1"));
}

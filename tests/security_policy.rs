//! The trust boundary of an agent's identity, as installed: on an authorizing kube-sim with the
//! shipped ValidatingAdmissionPolicy (manifests/operator/agent-status-policy.yaml, equal to the
//! chart's, see tests/packaging.rs) and each AgentNode's ServiceAccount, Role and RoleBinding built by
//! src/workload/identity.rs, an agent using its own token may write `status.objective.observed` of
//! its node and nothing else; the operator's identity is not limited by the policy.

use std::sync::Arc;

use hypersync_operator::api::AgentNode;
use hypersync_operator::api::generate;
use hypersync_operator::workload::identity::{
    build_role, build_role_binding, build_service_account, identity_name,
};
use hypersync_operator::workload::owner_reference;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Config};
use kube_sim::admission::{self, Input, Operation, PolicySource, RequestAttrs};
use kube_sim::auth::UserInfo;
use kube_sim::{Sim, SimConfig};
use serde_json::{Value, json};

const NS: &str = "agents";
const POLICY_FILE: &str = "manifests/operator/agent-status-policy.yaml";
const POLICY: &str = "hypersync-operator-agent-status";
const OPERATOR: &str = "system:serviceaccount:hypersync-system:hypersync-operator";

fn shipped_policy() -> (Value, Value) {
    let text =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(POLICY_FILE))
            .expect("the shipped policy file");
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("YAML documents");
    let by_kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"] == k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} in {POLICY_FILE}"))
    };
    (
        by_kind("ValidatingAdmissionPolicy"),
        by_kind("ValidatingAdmissionPolicyBinding"),
    )
}

fn node_json(name: &str) -> Value {
    json!({
        "apiVersion": "hypersync.io/v1alpha1",
        "kind": "AgentNode",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "stackRef": {"name": "security-analyst"},
            "task": {"description": "Triage the anomaly", "tags": ["security"]},
            "objective": {"metric": {"name": "findings_triaged", "comparator": "GreaterOrEqual", "target": 10}},
            "lifecycle": {"mode": "Ephemeral"},
        },
    })
}

/// What the operator writes into a running node's status.
fn operator_status() -> Value {
    json!({"status": {
        "phase": "Running",
        "models": [{"layer": "cognitive", "modelEntry": "deepseek-coder-33b", "endpoint": "http://deepseek-coder-33b.agents.svc:8000/v1"}],
        "objective": {"met": false},
        "workload": {"kind": "Job", "name": "scout"},
    }})
}

struct Setup {
    sim: Sim,
    admin: Client,
}

impl Setup {
    fn client_as(&self, token: &str) -> Client {
        let mut config = Config::new(self.sim.url().parse().expect("sim URL parses"));
        config.root_cert = self.sim.ca_der().map(|ca| vec![ca.to_vec()]);
        config.auth_info.token = Some(token.to_string().into());
        Client::try_from(config).expect("client builds")
    }

    fn agent(&self, node: &str) -> Api<AgentNode> {
        Api::namespaced(
            self.client_as(&format!("sim-sa:{NS}:{}", identity_name(node))),
            NS,
        )
    }

    /// An AgentNode with its identity as the operator creates it and the status the operator wrote.
    async fn node(&self, name: &str) {
        let nodes: Api<AgentNode> = Api::namespaced(self.admin.clone(), NS);
        let node: AgentNode = serde_json::from_value(node_json(name)).expect("AgentNode parses");
        let created = nodes
            .create(&PostParams::default(), &node)
            .await
            .expect("AgentNode created");
        let uid = created.metadata.uid.clone().expect("uid");
        let owner = owner_reference("AgentNode", name, &uid);
        Api::<ServiceAccount>::namespaced(self.admin.clone(), NS)
            .create(
                &PostParams::default(),
                &build_service_account(name, NS, &owner),
            )
            .await
            .expect("ServiceAccount created");
        Api::<Role>::namespaced(self.admin.clone(), NS)
            .create(&PostParams::default(), &build_role(name, NS, &owner))
            .await
            .expect("Role created");
        Api::<RoleBinding>::namespaced(self.admin.clone(), NS)
            .create(
                &PostParams::default(),
                &build_role_binding(name, NS, &owner),
            )
            .await
            .expect("RoleBinding created");
        self.operator()
            .patch_status(
                name,
                &PatchParams::apply("hypersync-operator").force(),
                &Patch::Apply(json!({"apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode", "status": operator_status()["status"]})),
            )
            .await
            .expect("the operator writes the node's status");
    }

    fn operator(&self) -> Api<AgentNode> {
        Api::namespaced(
            self.client_as("sim-sa:hypersync-system:hypersync-operator"),
            NS,
        )
    }
}

async fn start() -> Setup {
    let sim = Sim::start(SimConfig {
        authorize: true,
        dataplane: false,
        ..SimConfig::default()
    })
    .await
    .expect("kube-sim starts");
    let mut config = Config::new(sim.url().parse().expect("sim URL parses"));
    config.root_cert = sim.ca_der().map(|ca| vec![ca.to_vec()]);
    config.auth_info.token = Some("sim-admin".to_string().into());
    let admin = Client::try_from(config).expect("client builds");
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for crd in generate::crds() {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("CRD created");
    }
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap();
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
    // The operator's status permission (the chart's rule on agentnodes/status).
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": "operator-status"},
        "rules": [{"apiGroups": ["hypersync.io"], "resources": ["agentnodes/status"], "verbs": ["get", "patch"]}],
    }))
    .unwrap();
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &role)
        .await
        .expect("ClusterRole created");
    let crb: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "operator-status"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "operator-status"},
        "subjects": [{"kind": "ServiceAccount", "name": "hypersync-operator", "namespace": "hypersync-system"}],
    }))
    .unwrap();
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &crb)
        .await
        .expect("ClusterRoleBinding created");
    // The shipped policy and binding, created by the admin as `kubectl apply` would.
    let (policy, binding) = shipped_policy();
    let policy: ValidatingAdmissionPolicy =
        serde_json::from_value(policy).expect("the shipped policy is a ValidatingAdmissionPolicy");
    let binding: ValidatingAdmissionPolicyBinding =
        serde_json::from_value(binding).expect("the shipped binding parses");
    Api::<ValidatingAdmissionPolicy>::all(admin.clone())
        .create(&PostParams::default(), &policy)
        .await
        .expect("kube-sim accepts the shipped policy");
    Api::<ValidatingAdmissionPolicyBinding>::all(admin.clone())
        .create(&PostParams::default(), &binding)
        .await
        .expect("kube-sim accepts the shipped binding");
    Setup { sim, admin }
}

fn denial(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(e) => (e.code, e.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn refused_message(node: &str, fields: &str) -> String {
    format!(
        "agentnodes.hypersync.io \"{node}\" is forbidden: ValidatingAdmissionPolicy '{POLICY}' with binding '{POLICY}' denied request: an agent may write only status.objective.observed and status.usage.tokens of its own AgentNode, not {fields}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_writes_only_its_objective() {
    let s = start().await;
    s.node("scout-1").await;
    s.node("scout-2").await;
    let agent = s.agent("scout-1");
    let merge = |v: Value| Patch::Merge(v);

    // Its metric: allowed, by merge patch and by server-side apply.
    let n = agent
        .patch_status(
            "scout-1",
            &PatchParams::default(),
            &merge(json!({"status": {"objective": {"observed": 7.0}}})),
        )
        .await
        .expect("the agent reports its metric");
    let status = n.status.expect("status");
    assert_eq!(
        status.objective.as_ref().and_then(|o| o.observed),
        Some(7.0)
    );
    assert_eq!(status.models.len(), 1, "nothing else changed");
    agent
        .patch_status(
            "scout-1",
            &PatchParams::apply("agent").force(),
            &Patch::Apply(json!({"apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode", "status": {"objective": {"observed": 8.0}}})),
        )
        .await
        .expect("the agent applies its metric");

    // Adding a model: refused, 403, naming the field.
    let err = agent
        .patch_status(
            "scout-1",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value::<json_patch::Patch>(json!([{"op": "add", "path": "/status/models/-", "value": {"layer": "embedding", "modelEntry": "gpt-4o"}}]))
                    .unwrap(),
            ),
        )
        .await
        .expect_err("an agent may not bind itself a model");
    assert_eq!(
        denial(err),
        (403, refused_message("scout-1", "status.models"))
    );

    // Dissolving itself: refused.
    let err = agent
        .patch_status(
            "scout-1",
            &PatchParams::default(),
            &merge(json!({"status": {"phase": "Dissolving"}})),
        )
        .await
        .expect_err("an agent may not set its phase");
    assert_eq!(
        denial(err),
        (403, refused_message("scout-1", "status.phase"))
    );

    // Declaring its objective met, or writing several fields at once: refused, every field named.
    let err = agent
        .patch_status(
            "scout-1",
            &PatchParams::default(),
            &merge(
                json!({"status": {"objective": {"observed": 9.0, "met": true}, "workload": null}}),
            ),
        )
        .await
        .expect_err("an agent may not declare its objective met");
    assert_eq!(
        denial(err),
        (
            403,
            refused_message("scout-1", "status.workload, status.objective.met")
        )
    );
    let n = Api::<AgentNode>::namespaced(s.admin.clone(), NS)
        .get("scout-1")
        .await
        .expect("node");
    let status = n.status.expect("status");
    assert_eq!(
        (
            status.objective.as_ref().and_then(|o| o.observed),
            status.objective.as_ref().map(|o| o.met)
        ),
        (Some(8.0), Some(false)),
        "refused writes changed nothing"
    );

    // Another node: RBAC refuses before the policy is consulted.
    let err = agent
        .patch_status(
            "scout-2",
            &PatchParams::default(),
            &merge(json!({"status": {"objective": {"observed": 1.0}}})),
        )
        .await
        .expect_err("an agent may not touch another node");
    let (code, message) = denial(err);
    assert_eq!(code, 403);
    assert!(!message.contains("ValidatingAdmissionPolicy"), "{message}");

    // A first report on a node whose status has no objective yet: the server defaults
    // `objective.met: false`, which the policy counts as unchanged.
    Api::<AgentNode>::namespaced(s.admin.clone(), NS)
        .patch_status(
            "scout-2",
            &PatchParams::default(),
            &merge(json!({"status": {"objective": null}})),
        )
        .await
        .expect("the admin clears scout-2's objective");
    let n = s
        .agent("scout-2")
        .patch_status(
            "scout-2",
            &PatchParams::default(),
            &merge(json!({"status": {"objective": {"observed": 1.0}}})),
        )
        .await
        .expect("the first report of scout-2's agent");
    let objective = n.status.and_then(|st| st.objective).expect("objective");
    assert_eq!((objective.observed, objective.met), (Some(1.0), false));

    // The operator's identity is not limited by the policy.
    s.operator()
        .patch_status(
            "scout-1",
            &PatchParams::default(),
            &merge(json!({"status": {"phase": "Dissolving", "objective": {"met": true}}})),
        )
        .await
        .expect("the operator writes any status field");
    s.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_node_name_gets_the_same_boundary() {
    let s = start().await;
    let long = format!("{}.analyst", "a".repeat(70));
    s.node(&long).await;
    let identity = identity_name(&long);
    assert_ne!(identity, format!("{long}-agent"), "the identity is hashed");
    let agent = s.agent(&long);
    agent
        .patch_status(
            &long,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"objective": {"observed": 3.0}}})),
        )
        .await
        .expect("the hashed identity reports its metric");
    let err = agent
        .patch_status(
            &long,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
        )
        .await
        .expect_err("the hashed identity may not set the phase");
    assert_eq!(denial(err), (403, refused_message(&long, "status.phase")));
    s.sim.shutdown().await;
}

/// The policy's CEL recognises exactly the identities `identity_name` creates, without a server.
struct Shipped(Value, Value);

impl PolicySource for Shipped {
    fn policies(&self) -> Vec<Arc<Value>> {
        let mut p = self.0.clone();
        p["metadata"]["uid"] = json!("shipped");
        p["metadata"]["resourceVersion"] = json!("1");
        vec![Arc::new(p)]
    }
    fn bindings(&self) -> Vec<Arc<Value>> {
        vec![Arc::new(self.1.clone())]
    }
    fn params(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
        _: Option<&str>,
        _: Option<&kube_sim::selector::LabelSelector>,
    ) -> Result<Vec<Value>, String> {
        Ok(Vec::new())
    }
    fn kind_namespaced(&self, _: &str, _: &str) -> Option<bool> {
        None
    }
}

fn phase_change_refused(src: &Shipped, node: &str, username: &str) -> bool {
    let attrs = RequestAttrs {
        group: "hypersync.io".into(),
        version: "v1alpha1".into(),
        resource: "agentnodes".into(),
        subresource: "status".into(),
        kind: "AgentNode".into(),
        operation: Operation::Update,
        namespace: NS.into(),
        name: node.into(),
        namespaced: true,
    };
    let old = json!({"metadata": {"name": node, "namespace": NS}, "status": {"phase": "Running"}});
    let new =
        json!({"metadata": {"name": node, "namespace": NS}, "status": {"phase": "Succeeded"}});
    let user = UserInfo {
        username: username.to_string(),
        groups: vec![],
    };
    let verdict = admission::evaluate(
        src,
        &Input {
            attrs: &attrs,
            user: &user,
            object: Some(&new),
            old_object: Some(&old),
            namespace: None,
            dry_run: false,
        },
    );
    verdict.denied.is_some()
}

#[test]
fn the_policy_matches_exactly_the_identities_the_operator_creates() {
    let (p, b) = shipped_policy();
    let src = Shipped(p, b);
    let sa = |name: &str| format!("system:serviceaccount:{NS}:{name}");
    let mut names: Vec<String> = vec![
        "scout-1".into(),
        "a".into(),
        "7b.coder".into(),
        "x.y.z".into(),
        "a--b".into(),
        "c".repeat(57),
        "c".repeat(58),
        "d".repeat(63),
        "e".repeat(253),
        format!("{}.-.{}", "f".repeat(46), "g".repeat(30)),
        format!("{}-{}", "h".repeat(47), "i".repeat(20)),
        format!("9{}", "j".repeat(100)),
    ];
    // A deterministic spread of DNS-subdomain names of every length class.
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789-.";
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..200 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = 1 + (seed % 120) as usize;
        let mut s: String = (0..len)
            .map(|i| {
                let r = seed.rotate_left((i * 7) as u32) ^ (i as u64 * 0x2545_f491);
                alphabet[(r % alphabet.len() as u64) as usize] as char
            })
            .collect();
        // Node names start and end with an alphanumeric character and have no empty labels.
        s = s
            .split('.')
            .map(|l| l.trim_matches('-'))
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(".");
        if !s.is_empty() {
            names.push(s);
        }
    }
    for node in &names {
        let identity = identity_name(node);
        assert!(
            phase_change_refused(&src, node, &sa(&identity)),
            "the identity {identity} of node {node} is not limited"
        );
        // Other identities: other nodes' (RBAC keeps them off this node anyway), the naive
        // `<node>-agent` when the real one is hashed, the operator, an agent of another namespace.
        for other in [identity_name("other-node"), identity_name(&"o".repeat(80))] {
            assert!(
                !phase_change_refused(&src, node, &sa(&other)),
                "{other} is limited on node {node}"
            );
        }
        let naive = format!("{node}-agent");
        if naive != identity {
            assert!(
                !phase_change_refused(&src, node, &sa(&naive)),
                "{naive} is limited on node {node}"
            );
        }
        assert!(!phase_change_refused(&src, node, OPERATOR));
        assert!(!phase_change_refused(
            &src,
            node,
            &format!("system:serviceaccount:elsewhere:{identity}")
        ));
    }
}

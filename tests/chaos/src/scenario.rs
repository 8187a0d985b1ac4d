//! The chaos scenario as objects: the operator's RBAC (the chart's rules), the ModelEntries (local
//! OnDemand, local Always, remote), the AgentStacks, and N AgentNodes drawn from a seeded RNG, plus
//! the default fault spec aimed at the operator's and the agents' users.

use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

/// Namespace of the AgentNodes and models.
pub const NS: &str = "chaos";
/// The operator's namespace and ServiceAccount (the chart's names).
pub const OP_NS: &str = "hypersync-system";
pub const OP_SA: &str = "hypersync-operator";
/// The OnDemand model: back to 0 replicas `IDLE_SECONDS` after its last node.
pub const ON_DEMAND: &str = "od-llm";
pub const IDLE_SECONDS: u64 = 5;
/// Objective target every metric node's agent reports.
pub const TARGET: f64 = 10.0;

/// The chart's cluster rules and leader-election rules, compiled in.
const RULES: &str = include_str!("../../../charts/hypersync-operator/files/rules.yaml");
const LEADER_RULES: &str =
    include_str!("../../../charts/hypersync-operator/files/leader-election-rules.yaml");

/// The authenticated user of the operator in kube-sim with `--authorize`.
pub fn operator_user() -> String {
    format!("system:serviceaccount:{OP_NS}:{OP_SA}")
}

/// kube-sim's token for a ServiceAccount.
pub fn sa_token(namespace: &str, sa: &str) -> String {
    format!("sim-sa:{namespace}:{sa}")
}

/// The default fault mix: 5xx and 409 on the operator's writes, writes applied but answered 504,
/// 410 on resumed watches, watches expired (410) or dropped mid-stream, and 5xx / applied-504 on
/// the agents' status reports.
pub fn default_faults(seed: u64) -> String {
    let op = operator_user();
    let agents = format!("system:serviceaccount:{NS}:*");
    [
        format!("seed={seed}"),
        format!("create{{user={op}}}=0.04:500"),
        format!("create{{user={op}}}=0.03:applied-504"),
        format!("patch{{user={op}}}=0.03:500"),
        format!("patch{{user={op}}}=0.03:409"),
        format!("patch{{user={op}}}=0.03:applied-504"),
        format!("delete{{user={op}}}=0.05:503"),
        format!("delete{{user={op}}}=0.05:applied-504"),
        format!("watch{{user={op}}}=0.2:410"),
        format!("watch-gone{{user={op}}}=0.01"),
        format!("watch-drop{{user={op}}}=0.01"),
        format!("patch/agentnodes/status{{user={agents}}}=0.05:500"),
        format!("patch/agentnodes/status{{user={agents}}}=0.05:applied-504"),
    ]
    .join(",")
}

/// Prefix `seed=<seed>` unless the spec sets its own.
pub fn seeded_faults(spec: &str, seed: u64) -> String {
    if spec.split(',').any(|i| i.trim().starts_with("seed=")) {
        spec.to_string()
    } else {
        format!("seed={seed},{spec}")
    }
}

/// Namespace, ServiceAccount, ClusterRole + binding and the leader-election Role + binding: the
/// operator holds exactly the chart's rules.
pub fn rbac() -> Result<Vec<Value>, serde_saphyr::Error> {
    let rules: Value = serde_saphyr::from_str(RULES)?;
    let leader: Value = serde_saphyr::from_str(LEADER_RULES)?;
    let subject = json!([{"kind": "ServiceAccount", "name": OP_SA, "namespace": OP_NS}]);
    Ok(vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OP_NS}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": OP_SA, "namespace": OP_NS}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": OP_SA}, "rules": rules}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": OP_SA},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": OP_SA},
               "subjects": subject}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": "hypersync-operator-leader-election", "namespace": OP_NS},
               "rules": leader}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "hypersync-operator-leader-election", "namespace": OP_NS},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                           "name": "hypersync-operator-leader-election"},
               "subjects": subject}),
    ])
}

/// The model registry and the stacks, in namespace [`NS`].
pub fn registry() -> Vec<Value> {
    let model = |name: &str, spec: Value| {
        json!({"apiVersion": "hypersync.io/v1alpha1", "kind": "ModelEntry",
               "metadata": {"name": name, "namespace": NS}, "spec": spec})
    };
    let stack = |name: &str, cognitive: &str, embed: bool, run_seconds: u32| {
        let mut layers = json!({"cognitive": {"modelRef": {"name": cognitive}}});
        if embed {
            layers["memory"] = json!({"embedding": {"modelRef": {"name": "embed"}}});
        }
        json!({"apiVersion": "hypersync.io/v1alpha1", "kind": "AgentStack",
               "metadata": {"name": name, "namespace": NS},
               "spec": {"objectiveAlignment": "Strict", "layers": layers,
                        "runtime": {"image": "busybox:1.36",
                                    "podAnnotations": {"sim.hypersync.io/run-seconds": run_seconds.to_string()}}}})
    };
    vec![
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "remote-key", "namespace": NS},
               "stringData": {"apiKey": "sk-chaos"}}),
        model(
            ON_DEMAND,
            json!({"type": "LLM", "capabilities": ["chat"], "specs": {"contextWindow": 8192},
                   "source": {"local": {"engine": "VLLM", "model": "chaos/od-llm", "gpu": {"count": 1},
                              "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
                              "scaling": {"mode": "OnDemand", "replicas": 1, "idleSeconds": IDLE_SECONDS}}}}),
        ),
        model(
            "embed",
            json!({"type": "Embedding", "capabilities": ["embedding"], "specs": {"contextWindow": 8192},
                   "source": {"local": {"engine": "VLLM", "model": "chaos/embed", "gpu": {"count": 1},
                              "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
                              "scaling": {"mode": "Always", "replicas": 1}}}}),
        ),
        model(
            "remote-llm",
            json!({"type": "LLM", "capabilities": ["chat"], "specs": {"contextWindow": 128000},
                   "source": {"remote": {"provider": "OpenAI", "endpoint": "https://api.openai.com/v1",
                              "model": "gpt-4o", "apiKeySecretRef": {"name": "remote-key", "key": "apiKey"}}}}),
        ),
        // Agents that run until they report (the operator stops them), on the OnDemand or the
        // remote model; and quick agents whose Job completion ends their completion objective.
        stack("chaos-ondemand", ON_DEMAND, true, 600),
        stack("chaos-remote", "remote-llm", true, 600),
        stack("chaos-quick", ON_DEMAND, false, 3),
    ]
}

/// What a node is expected to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// Ephemeral with a metric: the agent reports it met, the node dissolves after its TTL.
    Metric,
    /// Ephemeral without a metric: the Job completes, the node dissolves after its TTL.
    Completion,
    /// Persistent with a metric: runs as a Deployment and is kept.
    Persistent,
}

/// One planned AgentNode.
#[derive(Clone, Debug)]
pub struct PlannedNode {
    pub name: String,
    pub kind: NodeKind,
    pub object: Value,
}

/// N nodes: about 10% Persistent, 20% completion objectives, the rest metric objectives split
/// between the OnDemand and the remote stack; random anchor points and TTLs of 1 to 5 s.
pub fn nodes(n: usize, rng: &mut StdRng) -> Vec<PlannedNode> {
    (0..n)
        .map(|i| {
            let name = format!("n-{i:05}");
            let roll: f64 = rng.random();
            let kind = if roll < 0.1 {
                NodeKind::Persistent
            } else if roll < 0.3 {
                NodeKind::Completion
            } else {
                NodeKind::Metric
            };
            let stack = match kind {
                NodeKind::Persistent => "chaos-remote",
                NodeKind::Completion => "chaos-quick",
                NodeKind::Metric if rng.random_bool(0.5) => "chaos-ondemand",
                NodeKind::Metric => "chaos-remote",
            };
            let r: f64 = rng.random_range(0.05..0.85);
            let theta: f64 = rng.random_range(0.0..360.0);
            let ttl: i64 = rng.random_range(1..=5);
            let mut objective = json!({"deadlineSeconds": 1800, "maxRetries": 2});
            if kind != NodeKind::Completion {
                objective["metric"] =
                    json!({"name": "done", "comparator": "GreaterOrEqual", "target": TARGET});
            }
            let lifecycle = match kind {
                NodeKind::Persistent => json!({"mode": "Persistent"}),
                _ => json!({"mode": "Ephemeral", "ttlSecondsAfterObjectiveMet": ttl,
                            "ttlSecondsAfterFailure": 3600}),
            };
            let object = json!({
                "apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"stackRef": {"name": stack},
                         "task": {"description": format!("chaos task {i}"), "tags": ["chaos"]},
                         "placement": {"mode": "Semantic", "near": {"point": {"r": r, "thetaDegrees": theta}}},
                         "objective": objective, "lifecycle": lifecycle}});
            PlannedNode { name, kind, object }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_same_seed_plans_the_same_nodes() {
        let a = nodes(50, &mut StdRng::seed_from_u64(7));
        let b = nodes(50, &mut StdRng::seed_from_u64(7));
        let c = nodes(50, &mut StdRng::seed_from_u64(8));
        let objs = |v: &[PlannedNode]| v.iter().map(|n| n.object.clone()).collect::<Vec<_>>();
        assert_eq!(objs(&a), objs(&b));
        assert_ne!(objs(&a), objs(&c));
    }

    #[test]
    fn the_mix_has_every_kind() {
        let planned = nodes(200, &mut StdRng::seed_from_u64(1));
        for kind in [NodeKind::Metric, NodeKind::Completion, NodeKind::Persistent] {
            assert!(planned.iter().any(|n| n.kind == kind), "{kind:?}");
        }
        let persistent = planned
            .iter()
            .find(|n| n.kind == NodeKind::Persistent)
            .unwrap();
        assert_eq!(persistent.object["spec"]["lifecycle"]["mode"], "Persistent");
        let completion = planned
            .iter()
            .find(|n| n.kind == NodeKind::Completion)
            .unwrap();
        assert!(
            completion.object["spec"]["objective"]
                .get("metric")
                .is_none()
        );
    }

    #[test]
    fn faults_get_the_seed_unless_they_have_one() {
        assert_eq!(seeded_faults("watch-drop=0.1", 3), "seed=3,watch-drop=0.1");
        assert_eq!(
            seeded_faults("seed=9,watch-drop=0.1", 3),
            "seed=9,watch-drop=0.1"
        );
        assert!(default_faults(5).starts_with("seed=5,"));
    }

    #[test]
    fn rbac_holds_the_chart_rules() {
        let objs = rbac().expect("chart rules parse");
        let role = objs.iter().find(|o| o["kind"] == "ClusterRole").unwrap();
        assert!(role["rules"].as_array().is_some_and(|r| !r.is_empty()));
    }
}

//! The scale scenario as API objects and their paths: one namespace, a remote ModelEntry with its
//! API-key Secret, one AgentStack bound to it, and N Ephemeral AgentNodes with a metric objective.

use serde_json::{Value, json};

/// The namespace of the scenario.
pub const NAMESPACE: &str = "scale";
/// The namespace kube-sim's write ceiling is measured in.
pub const CEILING_NAMESPACE: &str = "scale-ceiling";
const MODEL: &str = "scale-remote-llm";
const STACK: &str = "scale-agent";
const SECRET: &str = "scale-openai-credentials";
const METRIC: &str = "tasks_done";
/// The objective's target; the agents report exactly this.
pub const TARGET: f64 = 1.0;
/// Selects every child the operator makes for an AgentNode (Job, Pods, ServiceAccount, Role,
/// RoleBinding).
pub const CHILD_SELECTOR: &str = "hypersync.io/agent-node";

const HYPERSYNC: &str = "/apis/hypersync.io/v1alpha1";

/// The children counted at the end: (name, collection path in the scenario's namespace).
pub fn child_collections() -> [(&'static str, String); 5] {
    let ns = NAMESPACE;
    [
        ("jobs", format!("/apis/batch/v1/namespaces/{ns}/jobs")),
        ("pods", format!("/api/v1/namespaces/{ns}/pods")),
        (
            "serviceaccounts",
            format!("/api/v1/namespaces/{ns}/serviceaccounts"),
        ),
        (
            "roles",
            format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"),
        ),
        (
            "rolebindings",
            format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"),
        ),
    ]
}

/// The AgentNode collection of the scenario's namespace.
pub fn nodes_path() -> String {
    format!("{HYPERSYNC}/namespaces/{NAMESPACE}/agentnodes")
}

/// The status subresource of one AgentNode.
pub fn node_status_path(name: &str) -> String {
    format!("{}/{name}/status", nodes_path())
}

/// The ConfigMap collection of the ceiling namespace.
pub fn ceiling_path() -> String {
    format!("/api/v1/namespaces/{CEILING_NAMESPACE}/configmaps")
}

/// The bearer token kube-sim accepts for node `name`'s ServiceAccount (`<node>-agent`, the name
/// the operator gives it).
pub fn agent_token(name: &str) -> String {
    format!("sim-sa:{NAMESPACE}:{name}-agent")
}

/// `agent-00042` for i = 42 of 10,000: zero-padded to the width of `n` so names sort.
pub fn node_name(i: usize, n: usize) -> String {
    let width = n.saturating_sub(1).max(1).to_string().len();
    format!("agent-{i:0width$}")
}

/// Objects to apply before the nodes, each with the path to server-side apply it at.
pub fn setup_objects() -> Vec<(String, Value)> {
    let ns = NAMESPACE;
    vec![
        namespace(ns),
        namespace(CEILING_NAMESPACE),
        (
            format!("/api/v1/namespaces/{ns}/secrets/{SECRET}"),
            json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": SECRET, "namespace": ns},
                "stringData": {"apiKey": "sk-scale-bench"}}),
        ),
        (
            format!("{HYPERSYNC}/namespaces/{ns}/modelentries/{MODEL}"),
            json!({"apiVersion": "hypersync.io/v1alpha1", "kind": "ModelEntry",
                "metadata": {"name": MODEL, "namespace": ns},
                "spec": {"type": "LLM", "capabilities": ["chat", "general"],
                    "source": {"remote": {"provider": "OpenAI",
                        "endpoint": "https://api.openai.com/v1", "model": "gpt-4o-mini",
                        "apiKeySecretRef": {"name": SECRET, "key": "apiKey"}}}}}),
        ),
        (
            stack_path(),
            json!({"apiVersion": "hypersync.io/v1alpha1", "kind": "AgentStack",
                "metadata": {"name": STACK, "namespace": ns},
                "spec": {"objectiveAlignment": "Strict",
                    "layers": {"cognitive": {"modelRef": {"name": MODEL}}},
                    "runtime": {"image": "busybox:1.36", "command": ["sh", "-c", "sleep 3600"],
                        // kube-sim runs the agent's container this long: until the bench reports.
                        "podAnnotations": {"sim.hypersync.io/run-seconds": "3600"}}}}),
        ),
    ]
}

fn namespace(name: &str) -> (String, Value) {
    (
        format!("/api/v1/namespaces/{name}"),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    )
}

/// The ModelEntry, which must be Ready before the nodes come.
pub fn model_path() -> String {
    format!("{HYPERSYNC}/namespaces/{NAMESPACE}/modelentries/{MODEL}")
}

/// The AgentStack, which must be Resolved before the nodes come.
pub fn stack_path() -> String {
    format!("{HYPERSYNC}/namespaces/{NAMESPACE}/agentstacks/{STACK}")
}

/// AgentNode `name`: Ephemeral, dissolved `ttl` seconds after its metric objective is met.
pub fn node(name: &str, i: usize, ttl: u64) -> Value {
    json!({"apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"stackRef": {"name": STACK},
            "task": {"description": format!("scale bench agent {i}"),
                "tags": ["scale", format!("shard-{}", i % 16)]},
            "objective": {"metric": {"name": METRIC, "comparator": "GreaterOrEqual", "target": TARGET}},
            "lifecycle": {"mode": "Ephemeral", "ttlSecondsAfterObjectiveMet": ttl}}})
}

/// The agent's report: the objective's metric at its target (a JSON merge patch on the status).
pub fn objective_met() -> Value {
    json!({"status": {"objective": {"observed": TARGET}}})
}

/// ConfigMap `i` of the write-ceiling measurement.
pub fn ceiling_config_map(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("ceiling-{i}"), "namespace": CEILING_NAMESPACE,
            "labels": {"app": "hypersync-scale"}},
        "data": {"key": format!("value-{i}")}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_padded_to_sort() {
        assert_eq!(node_name(7, 10_000), "agent-0007");
        assert_eq!(node_name(9_999, 10_000), "agent-9999");
        assert_eq!(node_name(3, 20), "agent-03");
        assert_eq!(node_name(0, 1), "agent-0");
    }

    #[test]
    fn the_agent_reports_what_meets_the_objective() {
        let n = node("agent-1", 1, 5);
        assert_eq!(n["spec"]["objective"]["metric"]["target"], json!(TARGET));
        assert_eq!(
            n["spec"]["objective"]["metric"]["comparator"],
            "GreaterOrEqual"
        );
        assert_eq!(
            objective_met()["status"]["objective"]["observed"],
            json!(TARGET)
        );
        assert_eq!(n["spec"]["lifecycle"]["ttlSecondsAfterObjectiveMet"], 5);
        assert_eq!(agent_token("agent-1"), "sim-sa:scale:agent-1-agent");
    }
}

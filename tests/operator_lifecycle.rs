//! Lifecycle behaviours beyond the seed story: GPU shortage, re-resolution when a better model
//! appears, TTL garbage collection across an operator restart, and Persistent nodes.

mod support;

use std::time::Duration;

use hypersync_operator::api::agent_node::NodePhase;
use hypersync_operator::api::agent_stack::StackPhase;
use hypersync_operator::api::model_entry::ModelPhase;
use hypersync_operator::api::{AgentNode, AgentStack, ModelEntry};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use support::{Cluster, NS};

const REMOTE: &str = r#"
apiVersion: hypersync.io/v1alpha1
kind: ModelEntry
metadata: {name: gpt-4o}
spec:
  type: LLM
  capabilities: [chat, coding]
  source:
    remote: {provider: OpenAI, model: gpt-4o}
"#;

fn stack(name: &str, binding: &str, extra_runtime: &str) -> String {
    format!(
        "apiVersion: hypersync.io/v1alpha1\nkind: AgentStack\nmetadata: {{name: {name}}}\nspec:\n  layers:\n    cognitive: {binding}\n  runtime:\n    image: busybox:1.36\n{extra_runtime}"
    )
}

fn node(name: &str, stack: &str, lifecycle: &str, objective: &str) -> String {
    format!(
        "apiVersion: hypersync.io/v1alpha1\nkind: AgentNode\nmetadata: {{name: {name}}}\nspec:\n  stackRef: {{name: {stack}}}\n  task: {{tags: [ops]}}\n  lifecycle: {lifecycle}\n{objective}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_shortage_is_reported_with_the_scheduler_message() {
    let cluster = Cluster::start().await;
    let operator = cluster.operator();
    cluster
        .apply_yaml(
            "apiVersion: hypersync.io/v1alpha1\nkind: ModelEntry\nmetadata: {name: huge}\nspec:\n  type: LLM\n  source:\n    local:\n      engine: VLLM\n      model: org/huge\n      gpu: {count: 16}\n",
        )
        .await;
    let entries: Api<ModelEntry> = Api::namespaced(cluster.client.clone(), NS);
    let scheduled = cluster
        .wait_for("Scheduled=False", Duration::from_secs(30), || async {
            let s = entries.get("huge").await.ok()?.status?;
            s.conditions
                .into_iter()
                .find(|c| c.type_ == "Scheduled" && c.status == "False")
        })
        .await;
    assert_eq!(scheduled.reason, "Unschedulable");
    assert!(
        scheduled.message.starts_with("0/4 nodes are available:"),
        "{}",
        scheduled.message
    );
    assert!(
        scheduled.message.contains("Insufficient nvidia.com/gpu"),
        "{}",
        scheduled.message
    );
    let status = entries
        .get("huge")
        .await
        .expect("entry")
        .status
        .expect("status");
    assert_eq!(status.phase, Some(ModelPhase::Provisioning));
    let events = cluster.events_for("ModelEntry", "huge").await;
    assert!(
        events.iter().any(|(t, r, n)| t == "Warning"
            && r == "Unschedulable"
            && n.contains("Insufficient nvidia.com/gpu")),
        "{events:?}"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_re_resolves_when_a_better_model_appears() {
    let cluster = Cluster::start().await;
    let operator = cluster.operator();
    cluster.apply_yaml(REMOTE).await;
    cluster
        .apply_yaml(&stack("coder", "{selector: {capabilities: [coding]}}", ""))
        .await;
    let stacks: Api<AgentStack> = Api::namespaced(cluster.client.clone(), NS);
    let bound = |want: &'static str| {
        let stacks = stacks.clone();
        move || {
            let stacks = stacks.clone();
            async move {
                let s = stacks.get("coder").await.ok()?.status?;
                (s.phase == Some(StackPhase::Resolved)
                    && s.bindings.first()?.model_entry.as_deref() == Some(want))
                .then_some(())
            }
        }
    };
    cluster
        .wait_for("bound to gpt-4o", Duration::from_secs(30), bound("gpt-4o"))
        .await;
    // A local coder appears: local beats remote once it is available.
    cluster
        .apply_yaml(
            "apiVersion: hypersync.io/v1alpha1\nkind: ModelEntry\nmetadata: {name: local-coder}\nspec:\n  type: LLM\n  capabilities: [coding]\n  source:\n    local: {engine: Ollama, model: 'qwen2.5-coder:7b'}\n",
        )
        .await;
    cluster
        .wait_for(
            "re-resolved to local-coder",
            Duration::from_secs(30),
            bound("local-coder"),
        )
        .await;
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_garbage_collection_survives_an_operator_restart() {
    let cluster = Cluster::start().await;
    let operator = cluster.operator();
    cluster.apply_yaml(REMOTE).await;
    // The simulated agent Job completes after 1 s: a completion objective.
    cluster
        .apply_yaml(&stack(
            "quick",
            "{modelRef: {name: gpt-4o}}",
            "    podAnnotations: {sim.hypersync.io/run-seconds: \"1\"}\n",
        ))
        .await;
    cluster
        .apply_yaml(&node(
            "once",
            "quick",
            "{mode: Ephemeral, ttlSecondsAfterObjectiveMet: 6}",
            "",
        ))
        .await;
    let nodes: Api<AgentNode> = Api::namespaced(cluster.client.clone(), NS);
    cluster
        .wait_for("node Succeeded", Duration::from_secs(30), || async {
            (nodes.get("once").await.ok()?.status?.phase == Some(NodePhase::Succeeded))
                .then_some(())
        })
        .await;
    // The operator goes away before the TTL ends, and comes back after it.
    operator.stop().await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(
        nodes.get_opt("once").await.expect("get").is_some(),
        "nothing dissolves the node while the operator is down"
    );
    let operator = cluster.operator();
    cluster
        .wait_for(
            "node dissolved after restart",
            Duration::from_secs(15),
            || async { nodes.get_opt("once").await.ok()?.is_none().then_some(()) },
        )
        .await;
    // Its Job went with it (owner reference).
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), NS);
    cluster
        .wait_for("agent Job collected", Duration::from_secs(15), || async {
            jobs.get_opt("once").await.ok()?.is_none().then_some(())
        })
        .await;
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_node_survives_its_objective() {
    let cluster = Cluster::start().await;
    let operator = cluster.operator();
    cluster.apply_yaml(REMOTE).await;
    cluster
        .apply_yaml(&stack("watcher", "{modelRef: {name: gpt-4o}}", ""))
        .await;
    cluster
        .apply_yaml(&node(
            "sentinel",
            "watcher",
            "{mode: Persistent, ttlSecondsAfterObjectiveMet: 0}",
            "  objective: {metric: {name: alerts, comparator: LessOrEqual, target: 0}}\n",
        ))
        .await;
    let nodes: Api<AgentNode> = Api::namespaced(cluster.client.clone(), NS);
    cluster
        .wait_for("node Running", Duration::from_secs(30), || async {
            (nodes.get("sentinel").await.ok()?.status?.phase == Some(NodePhase::Running))
                .then_some(())
        })
        .await;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), NS);
    assert!(
        deployments.get("sentinel").await.is_ok(),
        "a Persistent node runs as a Deployment"
    );
    nodes
        .patch_status(
            "sentinel",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"objective": {"observed": 0}}})),
        )
        .await
        .expect("report");
    cluster
        .wait_for("objective met", Duration::from_secs(20), || async {
            (nodes.get("sentinel").await.ok()?.status?.phase == Some(NodePhase::Succeeded))
                .then_some(())
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let node = nodes
        .get("sentinel")
        .await
        .expect("a Persistent node is never dissolved");
    assert_eq!(
        node.status.and_then(|s| s.phase),
        Some(NodePhase::Succeeded)
    );
    assert!(
        deployments.get("sentinel").await.is_ok(),
        "and keeps running"
    );
    operator.stop().await;
}

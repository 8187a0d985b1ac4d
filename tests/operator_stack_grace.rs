//! A stack resolved moments before its models reach the operator's cache raises no Warning: the
//! primary is not Ready and the fallback, created just after the stack, is Ready a moment later
//! (issue 12: a Warning `Degraded`, "no fallback is available", was emitted in the first second);
//! a stack applied before the model it names (the order `kubectl apply -k` sends them) is Resolved
//! without a Warning, and its node waits for it without one. A model that really is missing is
//! still reported, once, after `agent_stack::MODEL_GRACE`.

mod support;

use std::time::Duration;

use hypersync_operator::api::agent_node::NodePhase;
use hypersync_operator::api::agent_stack::StackPhase;
use hypersync_operator::api::{AgentNode, AgentStack, ModelEntry};
use kube::Api;
use support::{Cluster, NS};

/// A local model no node can hold (16 GPUs; the nodes have 8): Provisioning, Scheduled=False.
const GIANT: &str = "apiVersion: hypersync.io/v1alpha1\nkind: ModelEntry\nmetadata: {name: giant}\nspec:\n  type: LLM\n  capabilities: [coding]\n  source:\n    local:\n      engine: VLLM\n      model: giant/model\n      gpu: {count: 16}\n      scaling: {mode: Always, replicas: 1}\n";

fn remote(name: &str) -> String {
    format!(
        "apiVersion: hypersync.io/v1alpha1\nkind: ModelEntry\nmetadata: {{name: {name}}}\nspec:\n  type: LLM\n  capabilities: [chat]\n  source:\n    remote: {{provider: OpenAI, model: gpt-4o}}\n"
    )
}

fn stack(name: &str, cognitive: &str) -> String {
    format!(
        "apiVersion: hypersync.io/v1alpha1\nkind: AgentStack\nmetadata: {{name: {name}}}\nspec:\n  layers:\n    cognitive: {cognitive}\n  runtime: {{image: busybox:1.36}}\n"
    )
}

async fn warnings(cluster: &Cluster, kind: &str, name: &str) -> Vec<(String, String, String)> {
    cluster
        .events_for(kind, name)
        .await
        .into_iter()
        .filter(|(t, _, _)| t == "Warning")
        .collect()
}

/// Waits until the stack has been resolved once (its first status is written).
async fn first_resolution(cluster: &Cluster, stacks: &Api<AgentStack>, name: &str) {
    cluster
        .wait_for(
            &format!("agentstack/{name} resolved once"),
            Duration::from_secs(30),
            || async { stacks.get(name).await.ok()?.status?.phase.map(|_| ()) },
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_warning_before_the_models_reach_the_cache() {
    let cluster = Cluster::start().await;
    let operator = cluster.operator();
    let models: Api<ModelEntry> = Api::namespaced(cluster.client.clone(), NS);
    let stacks: Api<AgentStack> = Api::namespaced(cluster.client.clone(), NS);

    // The primary: known to the operator, and not available.
    cluster.apply_yaml(GIANT).await;
    cluster
        .wait_for("giant unschedulable", Duration::from_secs(30), || async {
            let s = models.get("giant").await.ok()?.status?;
            s.conditions
                .iter()
                .any(|c| c.type_ == "Scheduled" && c.status == "False")
                .then_some(())
        })
        .await;

    // The stack is resolved before its fallback exists; the fallback comes a moment later.
    cluster
        .apply_yaml(&stack(
            "big",
            "{modelRef: {name: giant}, fallback: [{modelRef: {name: gpt}}]}",
        ))
        .await;
    // And a stack applied before the only model it names, with a node.
    cluster
        .apply_yaml(&stack("early", "{modelRef: {name: late}}"))
        .await;
    cluster
        .apply_yaml("apiVersion: hypersync.io/v1alpha1\nkind: AgentNode\nmetadata: {name: prompt}\nspec:\n  stackRef: {name: early}\n")
        .await;
    // And one whose model never comes.
    cluster
        .apply_yaml(&stack("lost", "{modelRef: {name: absent}}"))
        .await;
    first_resolution(&cluster, &stacks, "big").await;
    first_resolution(&cluster, &stacks, "early").await;
    let nodes: Api<AgentNode> = Api::namespaced(cluster.client.clone(), NS);
    cluster
        .wait_for(
            "node prompt reconciled",
            Duration::from_secs(30),
            || async { nodes.get("prompt").await.ok()?.status?.phase.map(|_| ()) },
        )
        .await;
    cluster.apply_yaml(&remote("gpt")).await;
    cluster.apply_yaml(&remote("late")).await;

    // The fallback in use: Ready, Degraded, and one Warning saying so.
    let status = cluster
        .wait_for("big on its fallback", Duration::from_secs(30), || async {
            let s = stacks.get("big").await.ok()?.status?;
            let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
            (s.phase == Some(StackPhase::Degraded)
                && ready.status == "True"
                && s.bindings.first()?.model_entry.as_deref() == Some("gpt"))
            .then_some(s)
        })
        .await;
    assert_eq!(
        status.bindings[0].reason, "fallback[0] modelRef gpt",
        "{status:?}"
    );
    let big = cluster
        .wait_for("big's Warning", Duration::from_secs(30), || async {
            let w = warnings(&cluster, "AgentStack", "big").await;
            (!w.is_empty()).then_some(w)
        })
        .await;
    cluster
        .wait_for("early Resolved", Duration::from_secs(30), || async {
            let s = stacks.get("early").await.ok()?.status?;
            (s.phase == Some(StackPhase::Resolved)).then_some(())
        })
        .await;
    cluster
        .wait_for("node prompt ran", Duration::from_secs(30), || async {
            // Running, or already done (its Job may finish at once).
            match nodes.get_opt("prompt").await.ok()? {
                None => Some(()),
                Some(n) => matches!(
                    n.status?.phase,
                    Some(NodePhase::Running | NodePhase::Succeeded)
                )
                .then_some(()),
            }
        })
        .await;

    // The missing model is reported once the grace is over.
    let lost = cluster
        .wait_for("lost's Warning", Duration::from_secs(30), || async {
            let w = warnings(&cluster, "AgentStack", "lost").await;
            (!w.is_empty()).then_some(w)
        })
        .await;
    let s = stacks
        .get("lost")
        .await
        .expect("lost")
        .status
        .expect("status");
    let ready = s
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "BindingUnresolved"),
        "{ready:?}"
    );
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(
        lost[0].2.contains("ModelEntry absent not found"),
        "{lost:?}"
    );

    // Time for a late Warning to show: none but the fallback's.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let big_after = warnings(&cluster, "AgentStack", "big").await;
    assert_eq!(big_after, big, "one Warning only");
    assert_eq!(big.len(), 1, "{big:?}");
    assert_eq!(big[0].1, "Degraded", "{big:?}");
    assert!(
        big[0].2.contains("fallback[0] modelRef gpt") && !big[0].2.contains("no fallback"),
        "the Warning names the fallback in use: {big:?}"
    );
    let early = warnings(&cluster, "AgentStack", "early").await;
    assert!(early.is_empty(), "{early:?}");
    let prompt = warnings(&cluster, "AgentNode", "prompt").await;
    assert!(prompt.is_empty(), "{prompt:?}");
    operator.stop().await;
}

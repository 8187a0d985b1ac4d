//! Mistakes users make: each gives a condition naming the object or field, a Warning Event, and no
//! hot loop (kube-sim counts the operator's requests while nothing changes).

mod support;

use std::time::Duration;

use hypersync_operator::api::agent_node::NodePhase;
use hypersync_operator::api::agent_stack::StackPhase;
use hypersync_operator::api::{AgentNode, AgentStack};
use kube::Api;
use serde_json::Value;
use support::{Cluster, NS};

const REMOTE: &str = "apiVersion: hypersync.io/v1alpha1\nkind: ModelEntry\nmetadata: {name: gpt-4o}\nspec:\n  type: LLM\n  capabilities: [chat]\n  source:\n    remote: {provider: OpenAI, model: gpt-4o}\n";

/// A local model that is always on: its reconcile applies a Deployment, a Service and a
/// NetworkPolicy, so a reconcile loop would show up in the request count.
const LOCAL: &str = "apiVersion: hypersync.io/v1alpha1\nkind: ModelEntry\nmetadata: {name: llama}\nspec:\n  type: LLM\n  source:\n    local: {engine: Ollama, model: 'llama3:8b'}\n";

/// Requests the simulator served during `window`, while the test itself sends none.
async fn requests_during(cluster: &Cluster, window: Duration) -> u64 {
    let before = cluster.sim_json("/sim/stats").await;
    tokio::time::sleep(window).await;
    let after = cluster.sim_json("/sim/stats").await;
    let total = |v: &Value| v["total"].as_u64().unwrap_or(0);
    // The two /sim/stats reads are requests too.
    total(&after)
        .saturating_sub(total(&before))
        .saturating_sub(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_stack_is_reported_without_a_hot_loop_and_recovers() {
    let cluster = Cluster::start().await;
    let operator = cluster.operator();
    cluster.apply_yaml(REMOTE).await;
    cluster.apply_yaml(LOCAL).await;
    cluster
        .apply_yaml("apiVersion: hypersync.io/v1alpha1\nkind: AgentNode\nmetadata: {name: orphan}\nspec:\n  stackRef: {name: nope}\n  task: {tags: [ops]}\n")
        .await;
    let nodes: Api<AgentNode> = Api::namespaced(cluster.client.clone(), NS);
    let condition = cluster
        .wait_for(
            "StackNotFound condition",
            Duration::from_secs(20),
            || async {
                let s = nodes.get("orphan").await.ok()?.status?;
                s.conditions
                    .into_iter()
                    .find(|c| c.reason == "StackNotFound")
            },
        )
        .await;
    assert_eq!(condition.status, "False");
    assert_eq!(
        condition.message,
        "spec.stackRef.name: AgentStack nope not found"
    );
    // The Warning Event is published after the status write that carries the condition.
    cluster
        .wait_for(
            "a StackNotFound Warning Event",
            Duration::from_secs(10),
            || async {
                cluster
                    .events_for("AgentNode", "orphan")
                    .await
                    .iter()
                    .any(|(t, r, _)| t == "Warning" && r == "StackNotFound")
                    .then_some(())
            },
        )
        .await;
    let entries: Api<hypersync_operator::api::ModelEntry> =
        Api::namespaced(cluster.client.clone(), NS);
    cluster
        .wait_for("local model Ready", Duration::from_secs(20), || async {
            (entries.get("llama").await.ok()?.status?.phase
                == Some(hypersync_operator::api::model_entry::ModelPhase::Ready))
            .then_some(())
        })
        .await;

    // Nothing changes, so the operator sends (almost) nothing.
    let calls = requests_during(&cluster, Duration::from_secs(4)).await;
    assert!(
        calls <= 4,
        "the operator sent {calls} requests in 4 s while nothing changed"
    );

    // Creating the stack is enough: the node is placed and runs.
    cluster
        .apply_yaml("apiVersion: hypersync.io/v1alpha1\nkind: AgentStack\nmetadata: {name: nope}\nspec:\n  layers:\n    cognitive: {modelRef: {name: gpt-4o}}\n  runtime: {image: busybox:1.36, podAnnotations: {sim.hypersync.io/run-seconds: \"600\"}}\n")
        .await;
    cluster
        .wait_for(
            "node Running once its stack exists",
            Duration::from_secs(30),
            || async {
                (nodes.get("orphan").await.ok()?.status?.phase == Some(NodePhase::Running))
                    .then_some(())
            },
        )
        .await;
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selector_matching_nothing_leaves_the_stack_unresolved() {
    let cluster = Cluster::start().await;
    let operator = cluster.operator();
    cluster.apply_yaml(REMOTE).await;
    cluster
        .apply_yaml("apiVersion: hypersync.io/v1alpha1\nkind: AgentStack\nmetadata: {name: quantum}\nspec:\n  layers:\n    cognitive: {selector: {capabilities: [quantum-chemistry]}}\n  runtime: {image: busybox:1.36}\n")
        .await;
    cluster
        .apply_yaml("apiVersion: hypersync.io/v1alpha1\nkind: AgentNode\nmetadata: {name: chemist}\nspec:\n  stackRef: {name: quantum}\n")
        .await;
    let stacks: Api<AgentStack> = Api::namespaced(cluster.client.clone(), NS);
    let status = cluster
        .wait_for("stack Unresolved", Duration::from_secs(20), || async {
            let s = stacks.get("quantum").await.ok()?.status?;
            (s.phase == Some(StackPhase::Unresolved)).then_some(s)
        })
        .await;
    let resolved = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Resolved")
        .expect("Resolved condition");
    assert_eq!(resolved.reason, "BindingUnresolved");
    assert_eq!(
        resolved.message,
        "cognitive: no ModelEntry matches selector {capabilities=quantum-chemistry}"
    );
    let nodes: Api<AgentNode> = Api::namespaced(cluster.client.clone(), NS);
    let waiting = cluster
        .wait_for(
            "node waits with BindingUnresolved",
            Duration::from_secs(20),
            || async {
                let s = nodes.get("chemist").await.ok()?.status?;
                s.conditions
                    .into_iter()
                    .find(|c| c.reason == "BindingUnresolved")
            },
        )
        .await;
    assert!(
        waiting.message.contains("quantum-chemistry"),
        "{}",
        waiting.message
    );
    // The stack's Warning comes once its grace is over (agent_stack::MODEL_GRACE), published after
    // the status write the node reacts to.
    cluster
        .wait_for(
            "an Unresolved Warning Event",
            Duration::from_secs(10),
            || async {
                cluster
                    .events_for("AgentStack", "quantum")
                    .await
                    .iter()
                    .any(|(t, r, _)| t == "Warning" && r == "Unresolved")
                    .then_some(())
            },
        )
        .await;
    let calls = requests_during(&cluster, Duration::from_secs(4)).await;
    assert!(
        calls <= 4,
        "the operator sent {calls} requests in 4 s while nothing changed"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_pod_failing_on_a_missing_secret_is_reported_on_the_node() {
    let cluster = Cluster::start().await;
    let operator = cluster.operator();
    cluster.apply_yaml(REMOTE).await;
    cluster
        .apply_yaml("apiVersion: hypersync.io/v1alpha1\nkind: AgentStack\nmetadata: {name: keyed}\nspec:\n  layers:\n    cognitive: {modelRef: {name: gpt-4o}}\n  runtime:\n    image: busybox:1.36\n    env:\n      - name: SEARCH_API_KEY\n        valueFrom: {secretKeyRef: {name: search-credentials, key: token}}\n")
        .await;
    cluster
        .apply_yaml("apiVersion: hypersync.io/v1alpha1\nkind: AgentNode\nmetadata: {name: searcher}\nspec:\n  stackRef: {name: keyed}\n")
        .await;
    let nodes: Api<AgentNode> = Api::namespaced(cluster.client.clone(), NS);
    let condition = cluster
        .wait_for(
            "AgentContainerError condition",
            Duration::from_secs(30),
            || async {
                let s = nodes.get("searcher").await.ok()?.status?;
                s.conditions
                    .into_iter()
                    .find(|c| c.type_ == "AgentReady" && c.reason == "AgentContainerError")
            },
        )
        .await;
    assert!(
        condition.message.starts_with("CreateContainerConfigError"),
        "{}",
        condition.message
    );
    assert!(
        condition.message.contains("search-credentials"),
        "{}",
        condition.message
    );
    // The Event follows the status write (same reconcile, after it).
    cluster
        .wait_for(
            "AgentContainerError Warning",
            Duration::from_secs(10),
            || async {
                let events = cluster.events_for("AgentNode", "searcher").await;
                events
                    .iter()
                    .any(|(t, r, _)| t == "Warning" && r == "AgentContainerError")
                    .then_some(())
            },
        )
        .await;
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_object_does_not_stop_the_controller() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Patch, PatchParams, PostParams};
    let cluster = Cluster::start().await;
    // An object stored under an older, looser schema (as after a CRD upgrade) that the operator's
    // types cannot read: spec.stackRef is a number.
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    let real = hypersync_operator::api::generate::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == "AgentNode")
        .expect("AgentNode CRD");
    let mut loose = serde_json::to_value(&real).expect("CRD serializes");
    loose["spec"]["versions"][0]["schema"]["openAPIV3Schema"] =
        serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    crds.patch(
        "agentnodes.hypersync.io",
        &PatchParams::apply("test").force(),
        &Patch::Apply(&loose),
    )
    .await
    .expect("loose CRD applies");
    let dynamic = cluster.dynamic("hypersync.io/v1alpha1", "AgentNode").await;
    let broken: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode",
        "metadata": {"name": "broken", "namespace": NS},
        "spec": {"stackRef": 42}
    }))
    .expect("object parses");
    dynamic
        .create(&PostParams::default(), &broken)
        .await
        .expect("stored under the loose schema");
    crds.patch(
        "agentnodes.hypersync.io",
        &PatchParams::apply("test").force(),
        &Patch::Apply(&real),
    )
    .await
    .expect("real CRD applies again");

    let operator = cluster.operator();
    cluster.apply_yaml(REMOTE).await;
    cluster
        .apply_yaml("apiVersion: hypersync.io/v1alpha1\nkind: AgentStack\nmetadata: {name: ok}\nspec:\n  layers:\n    cognitive: {modelRef: {name: gpt-4o}}\n  runtime: {image: busybox:1.36, podAnnotations: {sim.hypersync.io/run-seconds: \"600\"}}\n")
        .await;
    cluster
        .apply_yaml("apiVersion: hypersync.io/v1alpha1\nkind: AgentNode\nmetadata: {name: fine}\nspec:\n  stackRef: {name: ok}\n")
        .await;
    let nodes: Api<AgentNode> = Api::namespaced(cluster.client.clone(), NS);
    cluster
        .wait_for(
            "the well-formed node runs",
            Duration::from_secs(30),
            || async {
                (nodes.get("fine").await.ok()?.status?.phase == Some(NodePhase::Running))
                    .then_some(())
            },
        )
        .await;
    let events = cluster.events_for("AgentNode", "broken").await;
    assert!(
        events
            .iter()
            .any(|(t, r, n)| t == "Warning" && r == "MalformedObject" && n.contains("cannot read")),
        "{events:?}"
    );
    operator.stop().await;
}

//! The seed story end to end, the real operator against kube-sim: models registered, the stack
//! resolved by tags to deepseek-coder-33b, the node placed near (0.4, 120 deg), the model provisioned
//! on demand with 4 GPUs, the agent Job running, the objective reported by the agent's own identity
//! and met, the node dissolved with a `Dissolved` Event, and the model released back to zero.

mod support;

use std::time::Duration;

use hypersync_operator::api::agent_node::NodePhase;
use hypersync_operator::api::model_entry::ModelPhase;
use hypersync_operator::api::{AgentNode, AgentStack, ModelEntry};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use support::{Cluster, NS, seed_samples};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_story_from_registration_to_release() {
    let cluster = Cluster::start().await;
    let operator = cluster.operator();
    cluster.apply_yaml(&seed_samples(3, 2)).await;
    let c = cluster.client.clone();
    let entries: Api<ModelEntry> = Api::namespaced(c.clone(), NS);
    let stacks: Api<AgentStack> = Api::namespaced(c.clone(), NS);
    let nodes: Api<AgentNode> = Api::namespaced(c.clone(), NS);

    // The stack resolves its cognitive layer by tags to the local coder, its memory by name.
    let bindings = cluster
        .wait_for("stack resolved", Duration::from_secs(30), || async {
            let s = stacks.get("security-analyst").await.ok()?.status?;
            (s.phase == Some(hypersync_operator::api::agent_stack::StackPhase::Resolved))
                .then_some(s.bindings)
        })
        .await;
    assert_eq!(bindings[0].layer, "cognitive");
    assert_eq!(
        bindings[0].model_entry.as_deref(),
        Some("deepseek-coder-33b")
    );
    assert_eq!(bindings[1].model_entry.as_deref(), Some("embedding-v3"));

    // Capability labels are mirrored, so `kubectl get me -l capability.hypersync.io/security` works.
    let labelled = entries
        .list(&ListParams::default().labels("capability.hypersync.io/security=true"))
        .await
        .expect("list");
    assert_eq!(
        labelled
            .items
            .iter()
            .map(|e| e.metadata.name.clone().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["deepseek-coder-33b"]
    );

    // The node is placed near the anomaly and runs as a Job once its models are Ready.
    let node = cluster
        .wait_for("node Running", Duration::from_secs(60), || async {
            let n = nodes.get("security-analyst").await.ok()?;
            (n.status.as_ref()?.phase == Some(NodePhase::Running)).then_some(n)
        })
        .await;
    let status = node.status.clone().expect("status");
    let placement = status.placement.clone().expect("placed");
    assert!(placement.r > 0.0 && placement.r < 1.0);
    assert_eq!(placement.algorithm, "semantic-v1");
    assert_eq!(
        placement.anchor.as_deref(),
        Some("-0.200000000000,0.346410161514"),
        "anchor is the point (0.4, 120 deg)"
    );
    // The placement is in status; the node itself gets no annotation write (it would cost a write
    // per node), the agent's pod template carries it (checked below).
    assert!(
        node.metadata
            .annotations
            .as_ref()
            .is_none_or(|a| !a.contains_key("hypersync.io/tier"))
    );
    assert_eq!(
        status
            .models
            .iter()
            .map(|m| m.model_entry.as_str())
            .collect::<Vec<_>>(),
        ["deepseek-coder-33b", "embedding-v3"]
    );

    // deepseek-coder was provisioned on demand with 4 GPUs.
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), NS);
    let coder = deployments
        .get("deepseek-coder-33b")
        .await
        .expect("inference Deployment");
    let spec = coder.spec.expect("spec");
    assert_eq!(spec.replicas, Some(1));
    let engine = &spec.template.spec.expect("pod spec").containers[0];
    let limits = engine
        .resources
        .clone()
        .and_then(|r| r.limits)
        .unwrap_or_default();
    assert_eq!(
        limits.get("nvidia.com/gpu").map(|q| q.0.as_str()),
        Some("4")
    );
    let entry = entries.get("deepseek-coder-33b").await.expect("entry");
    let entry_status = entry.status.expect("status");
    assert_eq!(entry_status.demand, Some(1));
    assert_eq!(
        entry_status.endpoint.as_deref(),
        Some("http://deepseek-coder-33b.default.svc:8000/v1")
    );

    // Only the agents of stacks bound to the model may reach it.
    let policies: Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
        Api::namespaced(c.clone(), NS);
    let policy = policies
        .get("deepseek-coder-33b")
        .await
        .expect("NetworkPolicy of the engine");
    let ingress = policy.spec.and_then(|s| s.ingress).unwrap_or_default();
    let peers = serde_json::to_string(&ingress).expect("ingress serializes");
    assert!(
        peers.contains("hypersync.io/stack") && peers.contains("security-analyst"),
        "{peers}"
    );

    // The agent's pod carries the placement and the model endpoints.
    let jobs: Api<Job> = Api::namespaced(c.clone(), NS);
    assert!(
        jobs.get("security-analyst").await.is_ok(),
        "agent Job exists"
    );
    // The Job controller makes its pod moments later (the node is Running once its Job exists).
    let pods: Api<Pod> = Api::namespaced(c.clone(), NS);
    let agent_pod = cluster
        .wait_for("agent pod", Duration::from_secs(30), || async {
            pods.list(&ListParams::default().labels("hypersync.io/agent-node=security-analyst"))
                .await
                .ok()?
                .items
                .into_iter()
                .next()
        })
        .await;
    let agent_pod = &agent_pod;
    let pod_annotations = agent_pod.metadata.annotations.clone().unwrap_or_default();
    assert!(pod_annotations.contains_key("hypersync.io/theta-degrees"));
    assert_eq!(
        pod_annotations.get("hypersync.io/tier").map(String::as_str),
        Some(placement.tier.to_string().as_str())
    );
    let env = agent_pod.spec.as_ref().expect("spec").containers[0]
        .env
        .clone()
        .unwrap_or_default();
    let value = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(
        value("HYPERSYNC_COGNITIVE_ENDPOINT").as_deref(),
        Some("http://deepseek-coder-33b.default.svc:8000/v1")
    );
    assert_eq!(
        value("HYPERSYNC_TASK_TAGS").as_deref(),
        Some("security,coding,anomaly")
    );

    // The agent reports progress with its own ServiceAccount; below target nothing happens.
    let agent = agent_client(&cluster).await;
    let report = |v: f64| {
        let agent = agent.clone();
        async move {
            agent
                .patch_status(
                    "security-analyst",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"objective": {"observed": v}}})),
                )
                .await
                .expect("agent reports its metric")
        }
    };
    report(4.0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        nodes
            .get("security-analyst")
            .await
            .expect("node")
            .status
            .and_then(|s| s.phase),
        Some(NodePhase::Running)
    );
    report(12.0).await;
    let met = cluster
        .wait_for("objective met", Duration::from_secs(20), || async {
            let s = nodes.get("security-analyst").await.ok()?.status?;
            (s.phase == Some(NodePhase::Succeeded)).then_some(s)
        })
        .await;
    let objective = met.objective.expect("objective status");
    assert!(objective.met && objective.met_at.is_some());
    assert_eq!(
        objective.observed,
        Some(12.0),
        "the operator keeps the agent's report"
    );
    assert!(met.completion_time.is_some());

    // Two seconds later the node is dissolved, with a Dissolved Event recording the outcome.
    cluster
        .wait_for("node dissolved", Duration::from_secs(20), || async {
            nodes
                .get_opt("security-analyst")
                .await
                .ok()?
                .is_none()
                .then_some(())
        })
        .await;
    let events = cluster.events_for("AgentNode", "security-analyst").await;
    let dissolved = events
        .iter()
        .find(|(_, reason, _)| reason == "Dissolved")
        .expect("Dissolved event");
    assert!(
        dissolved.2.contains("objective met=true") && dissolved.2.contains("observed=12"),
        "{dissolved:?}"
    );
    assert!(
        dissolved.2.contains(&format!("r={:.4}", placement.r)),
        "{dissolved:?}"
    );
    // Waiting for the on-demand model is worth an Event; progress the status shows (placed, running,
    // met) is not: the outcome is recorded once, in the Dissolved Event.
    assert!(
        events.iter().any(|(_, r, _)| r == "Provisioning"),
        "missing Provisioning event in {events:?}"
    );
    for reason in ["Placed", "Running", "ObjectiveMet"] {
        assert!(
            !events.iter().any(|(_, r, _)| r == reason),
            "unexpected {reason} event in {events:?}"
        );
    }

    // With no node left, the coder goes back to zero after idleSeconds (3 s).
    cluster
        .wait_for("model released to 0", Duration::from_secs(30), || async {
            let s = entries.get("deepseek-coder-33b").await.ok()?.status?;
            (s.phase == Some(ModelPhase::Idle) && s.demand == Some(0)).then_some(())
        })
        .await;
    let coder = deployments
        .get("deepseek-coder-33b")
        .await
        .expect("Deployment kept for the next demand");
    assert_eq!(coder.spec.and_then(|s| s.replicas), Some(0));
    // The always-on embedding model is untouched.
    let embedding = entries
        .get("embedding-v3")
        .await
        .expect("entry")
        .status
        .expect("status");
    assert_eq!(embedding.phase, Some(ModelPhase::Ready));
    operator.stop().await;
}

/// A client acting as the agent: the node's ServiceAccount token in kube-sim's static scheme.
async fn agent_client(cluster: &Cluster) -> Api<AgentNode> {
    let config =
        support::client_config(&cluster.sim, Some("sim-sa:default:security-analyst-agent"));
    let client = kube::Client::try_from(config).expect("agent client");
    Api::namespaced(client, NS)
}

//! Many nodes at once, events in unusual orders, and agents that write more than their report:
//! the operator's writes stay bounded per node, nothing is left behind, no controller stalls after
//! dissolutions, a report landing after the Job finished counts, and a forged status changes nothing
//! the operator decides.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use hypersync_operator::api::AgentNode;
use hypersync_operator::api::agent_node::NodePhase;
use hypersync_operator::api::model_entry::ModelEntry;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use support::{Cluster, NS, report};

const ENTRY: &str = "apiVersion: hypersync.io/v1alpha1\nkind: ModelEntry\nmetadata: {name: gpt}\nspec:\n  type: LLM\n  capabilities: [chat]\n  source:\n    remote: {provider: OpenAI, model: gpt-4o, apiKeySecretRef: {name: team-a-key, key: token}}\n";

/// The API keys the entries name (the agents' pods cannot start without them).
const SECRETS: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: team-a-key}\nstringData: {token: a}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: team-b-key}\nstringData: {token: b}\n";

/// The registry and a stack, with the model Ready before any node exists.
async fn setup(cluster: &Cluster, run_seconds: u32) {
    cluster.apply_yaml(SECRETS).await;
    cluster.apply_yaml(ENTRY).await;
    cluster.apply_yaml(&stack(run_seconds)).await;
    let entries: Api<ModelEntry> = Api::namespaced(cluster.client.clone(), NS);
    cluster
        .wait_for("model Ready", Duration::from_secs(30), || async {
            let s = entries.get("gpt").await.ok()?.status?;
            (s.phase == Some(hypersync_operator::api::model_entry::ModelPhase::Ready)).then_some(())
        })
        .await;
}

/// A stack whose agents run until the test says (`run_seconds` in kube-sim's kubelet).
fn stack(run_seconds: u32) -> String {
    format!(
        "apiVersion: hypersync.io/v1alpha1\nkind: AgentStack\nmetadata: {{name: s}}\nspec:\n  layers:\n    cognitive: {{modelRef: {{name: gpt}}}}\n  runtime:\n    image: busybox:1.36\n    podAnnotations:\n      sim.hypersync.io/run-seconds: \"{run_seconds}\"\n"
    )
}

fn node(name: &str, mode: &str, ttl: u32) -> serde_json::Value {
    json!({
        "apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode",
        "metadata": {"name": name},
        "spec": {
            "stackRef": {"name": "s"},
            "task": {"tags": ["ops"]},
            "objective": {"metric": {"name": "score", "comparator": "GreaterOrEqual", "target": 10}},
            "lifecycle": {"mode": mode, "ttlSecondsAfterObjectiveMet": ttl},
        }
    })
}

fn phase_of(n: &AgentNode) -> Option<NodePhase> {
    n.status.as_ref().and_then(|s| s.phase)
}

async fn count<K>(cluster: &Cluster, selector: &str) -> usize
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(cluster.client.clone(), NS);
    api.list(&ListParams::default().labels(selector))
        .await
        .expect("list")
        .items
        .len()
}

fn writes(requests: &BTreeMap<String, u64>) -> u64 {
    requests
        .iter()
        .filter(|(k, _)| {
            ["create ", "update ", "patch ", "delete "]
                .iter()
                .any(|v| k.starts_with(v))
        })
        .map(|(_, c)| c)
        .sum()
}

/// Create `names` at once, wait until all are Running, report them met, and wait until all are gone
/// with their children.
async fn run_round(cluster: &Cluster, names: &[String]) {
    let nodes: Api<AgentNode> = Api::namespaced(cluster.client.clone(), NS);
    join_all(names.iter().map(|n| cluster.apply(node(n, "Ephemeral", 1)))).await;
    cluster
        .wait_for(
            &format!("{} nodes Running", names.len()),
            Duration::from_secs(120),
            || async {
                let list = nodes.list(&ListParams::default()).await.ok()?;
                let running = list
                    .items
                    .iter()
                    .filter(|n| phase_of(n) == Some(NodePhase::Running))
                    .count();
                (running == names.len()).then_some(())
            },
        )
        .await;
    join_all(names.iter().map(|n| report(&nodes, n, 12.0))).await;
    cluster
        .wait_for("every node dissolved", Duration::from_secs(120), || async {
            let list = nodes.list(&ListParams::default()).await.ok()?;
            list.items.is_empty().then_some(())
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_nodes_cost_at_most_eight_writes_each_and_leave_nothing_behind() {
    let cluster = Cluster::start().await;
    let (operator, metrics) = cluster.operator_with_metrics().await;
    setup(&cluster, 600).await;
    // Rounds of nodes created at once; each round starts after the previous one dissolved (the
    // AgentNode controller must keep hearing events after deletions).
    let rounds = std::env::var("SCALE_TEST_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let per_round = std::env::var("SCALE_TEST_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(80);
    for round in 0..rounds {
        let names: Vec<String> = (0..per_round).map(|i| format!("n{round}-{i}")).collect();
        run_round(&cluster, &names).await;
    }
    let total = (rounds * per_round) as u64;
    let agents = "app.kubernetes.io/component=agent";
    cluster
        .wait_for("children collected", Duration::from_secs(60), || async {
            let left = count::<Job>(&cluster, agents).await
                + count::<Pod>(&cluster, agents).await
                + count::<ServiceAccount>(&cluster, agents).await
                + count::<Role>(&cluster, agents).await
                + count::<RoleBinding>(&cluster, agents).await;
            (left == 0).then_some(())
        })
        .await;
    // Let the ModelEntry's demand settle back to 0 before counting.
    let entries: Api<ModelEntry> = Api::namespaced(cluster.client.clone(), NS);
    cluster
        .wait_for("demand back to 0", Duration::from_secs(30), || async {
            let s = entries.get("gpt").await.ok()?.status?;
            (s.demand == Some(0)).then_some(())
        })
        .await;
    let requests = cluster.operator_requests().await;
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(cluster.client.clone(), NS);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut registry_events = 0u64;
    for e in events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
    {
        if e.reporting_controller.as_deref() != Some("hypersync-operator") {
            continue;
        }
        if e.regarding.as_ref().and_then(|r| r.kind.as_deref()) != Some("AgentNode") {
            registry_events += 1;
        }
        *reasons.entry(e.reason.unwrap_or_default()).or_default() += 1;
    }
    // What the nodes cost: every write but the registry's own (the ModelEntry's labels and status,
    // the AgentStack's status, and their Events), which do not grow with the nodes.
    let registry: u64 = requests
        .iter()
        .filter(|(k, _)| k.contains("modelentries") || k.contains("agentstacks"))
        .filter(|(k, _)| {
            !k.starts_with("list ") && !k.starts_with("watch ") && !k.starts_with("get ")
        })
        .map(|(_, c)| c)
        .sum();
    let w = writes(&requests) - registry - registry_events;
    assert!(
        w <= 8 * total,
        "{w} operator writes for {total} nodes (more than 8 each): {requests:#?}\nEvents by reason: {reasons:?}"
    );
    // The ModelEntry's demand moved 2 x {total} times; its status is written far less often.
    let entry_status = requests
        .get("patch modelentries/status")
        .copied()
        .unwrap_or(0);
    assert!(
        entry_status < total,
        "{entry_status} ModelEntry status writes for {total} nodes"
    );
    // No optimistic-lock failures or retries hide in there: one status write per transition.
    let status_writes = requests
        .get("patch agentnodes/status")
        .copied()
        .unwrap_or(0);
    assert!(
        status_writes <= 2 * total,
        "{status_writes} status writes for {total} nodes: {requests:#?}"
    );
    // Reconciles: the events of a node's children (its pod's phases, its Job's counters) wake it
    // only when they change something it reads.
    let reconciles = reconciles_of(&metrics, "agentnode");
    eprintln!("{reconciles} AgentNode reconciles for {total} nodes");
    assert!(
        reconciles <= RECONCILES_PER_NODE * total,
        "{reconciles} AgentNode reconciles for {total} nodes (more than {RECONCILES_PER_NODE} each)"
    );
    operator.stop().await;
}

/// AgentNode reconciles per Ephemeral node from create to dissolve, at most: the create, its Job
/// appearing, the agent's report, the TTL's requeue, the echoes of the two status writes when
/// their watch event beats the write's answer (5.1-5.5 measured), and one to spare for a loaded
/// machine. A fan-out (a node's change waking others) would show far above it; which child events
/// wake a node is tested in `controller::index` (waking the node at each pod and Job event made
/// this test count 6.1).
const RECONCILES_PER_NODE: u64 = 7;

/// Completed reconciles of `controller` (success or error) in the operator's metrics.
fn reconciles_of(metrics: &hypersync_operator::metrics::Metrics, controller: &str) -> u64 {
    let label = format!("controller=\"{controller}\"");
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("hypersync_reconcile_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_keeps_hearing_events_after_many_dissolutions() {
    let cluster = Cluster::start().await;
    let operator = cluster.operator();
    setup(&cluster, 600).await;
    // One node at a time, created and dissolved again and again (20 cycles stalled the controller
    // behind a kube-runtime shared stream).
    for cycle in 0..25 {
        run_round(&cluster, &[format!("cycle-{cycle}")]).await;
    }
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_landing_after_the_job_finished_still_counts() {
    let cluster = Cluster::start().await;
    let operator = cluster.operator();
    // The agent exits at once: the Job completes before the agent's report reaches the operator.
    setup(&cluster, 0).await;
    cluster.apply(node("late", "Ephemeral", 600)).await;
    cluster.apply(node("silent", "Ephemeral", 600)).await;
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), NS);
    for name in ["late", "silent"] {
        cluster
            .wait_for(
                &format!("Job {name} complete"),
                Duration::from_secs(30),
                || async {
                    let job = jobs.get(name).await.ok()?;
                    job.status?
                        .conditions?
                        .iter()
                        .any(|c| c.type_ == "Complete" && c.status == "True")
                        .then_some(())
                },
            )
            .await;
    }
    let nodes: Api<AgentNode> = Api::namespaced(cluster.client.clone(), NS);
    // Seconds later, the report lands.
    tokio::time::sleep(Duration::from_secs(2)).await;
    report(&nodes, "late", 12.0).await;
    let late = cluster
        .wait_for("late report counted", Duration::from_secs(30), || async {
            let n = nodes.get("late").await.ok()?;
            matches!(phase_of(&n), Some(NodePhase::Succeeded | NodePhase::Failed)).then_some(n)
        })
        .await;
    assert_eq!(phase_of(&late), Some(NodePhase::Succeeded), "{late:?}");
    // Without a report, the node fails once the grace has passed, naming the missing report.
    let silent = cluster
        .wait_for("silent node failed", Duration::from_secs(30), || async {
            let n = nodes.get("silent").await.ok()?;
            (phase_of(&n) == Some(NodePhase::Failed)).then_some(n)
        })
        .await;
    let condition = silent
        .status
        .expect("status")
        .conditions
        .into_iter()
        .find(|c| c.type_ == "ObjectiveMet")
        .expect("ObjectiveMet condition");
    assert_eq!(condition.reason, "ObjectiveNotMet");
    assert!(
        condition.message.contains("reported nothing"),
        "{condition:?}"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_status_changes_nothing_the_operator_decides() {
    let cluster = Cluster::start().await;
    let operator = cluster.operator();
    setup(&cluster, 600).await;
    // Another team's model with its own key, bound by no stack of this agent.
    cluster
        .apply_yaml("apiVersion: hypersync.io/v1alpha1\nkind: ModelEntry\nmetadata: {name: other}\nspec:\n  type: LLM\n  source:\n    remote: {provider: OpenAI, model: o1, apiKeySecretRef: {name: team-b-key, key: token}}\n")
        .await;
    cluster.apply(node("keeper", "Persistent", 0)).await;
    cluster.apply(node("quitter", "Ephemeral", 600)).await;
    let nodes: Api<AgentNode> = Api::namespaced(cluster.client.clone(), NS);
    for name in ["keeper", "quitter"] {
        cluster
            .wait_for(
                &format!("{name} Running"),
                Duration::from_secs(30),
                || async {
                    let n = nodes.get(name).await.ok()?;
                    (phase_of(&n) == Some(NodePhase::Running)).then_some(())
                },
            )
            .await;
    }
    // The agents write what they may not: more models, and an early end.
    nodes
        .patch_status(
            "keeper",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"models": [
                {"layer": "cognitive", "modelEntry": "gpt"},
                {"layer": "stolen", "modelEntry": "other"}
            ]}})),
        )
        .await
        .expect("forged models");
    nodes
        .patch_status(
            "quitter",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Dissolving"}})),
        )
        .await
        .expect("forged phase");
    // Give the operator time to react to both.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), NS);
    let keeper = deployments.get("keeper").await.expect("agent Deployment");
    let spec = serde_json::to_string(&keeper.spec).expect("serializes");
    assert!(
        !spec.contains("team-b-key"),
        "another team's key reached the agent: {spec}"
    );
    assert!(spec.contains("team-a-key"), "{spec}");
    let entries: Api<ModelEntry> = Api::namespaced(cluster.client.clone(), NS);
    let other = entries.get("other").await.expect("entry");
    assert_eq!(other.status.and_then(|s| s.demand), Some(0));
    let gpt = entries.get("gpt").await.expect("entry");
    assert_eq!(gpt.status.and_then(|s| s.demand), Some(2));
    // The Ephemeral node is still there: its objective is not met, so no TTL runs.
    let quitter = nodes.get("quitter").await.expect("not deleted");
    assert!(quitter.metadata.deletion_timestamp.is_none());
    operator.stop().await;
}

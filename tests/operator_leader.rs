//! Leader election: with two replicas only the Lease holder reconciles, and a successor takes over
//! when the leader stops.

mod support;

use std::time::Duration;

use hypersync_operator::api::ModelEntry;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use support::{Cluster, NS};

fn remote(name: &str) -> String {
    format!(
        "apiVersion: hypersync.io/v1alpha1\nkind: ModelEntry\nmetadata: {{name: {name}}}\nspec:\n  type: LLM\n  source:\n    remote: {{provider: OpenAI, model: gpt-4o}}\n"
    )
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get("hypersync-operator-leader")
        .await
        .ok()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

/// Identities that published Events about `name`.
async fn reporters(cluster: &Cluster, name: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), NS);
    let mut out: Vec<String> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reporting_instance)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_a_successor_takes_over() {
    let cluster = Cluster::start().await;
    let a = cluster.elected_operator("replica-a");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = cluster.elected_operator("replica-b");
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), NS);
    let leader = cluster
        .wait_for("a leader", Duration::from_secs(15), || holder(&leases))
        .await;
    assert_eq!(
        leader, "replica-a",
        "the first replica to start takes the Lease"
    );

    cluster.apply_yaml(&remote("first")).await;
    let entries: Api<ModelEntry> = Api::namespaced(cluster.client.clone(), NS);
    cluster
        .wait_for("first reconciled", Duration::from_secs(15), || async {
            entries.get("first").await.ok()?.status.map(|_| ())
        })
        .await;
    assert_eq!(
        reporters(&cluster, "first").await,
        ["replica-a"],
        "only the leader reports"
    );

    // The leader stops (releasing the Lease); the standby takes over and reconciles.
    a.stop().await;
    cluster
        .wait_for("replica-b leads", Duration::from_secs(15), || async {
            (holder(&leases).await? == "replica-b").then_some(())
        })
        .await;
    cluster.apply_yaml(&remote("second")).await;
    cluster
        .wait_for("second reconciled", Duration::from_secs(20), || async {
            entries.get("second").await.ok()?.status.map(|_| ())
        })
        .await;
    assert_eq!(reporters(&cluster, "second").await, ["replica-b"]);
    b.stop().await;
}

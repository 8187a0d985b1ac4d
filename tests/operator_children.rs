//! Children the plan no longer contains are deleted (and only those): a ModelEntry switched from
//! `local` to `remote` loses its engine (the weight cache is kept on purpose), a removed `cache` loses
//! its PVC, a node that becomes Persistent loses its Job, and objects of another owner that carry the
//! same labels are never touched.

mod support;

use std::time::Duration;

use hypersync_operator::api::ModelEntry;
use hypersync_operator::api::model_entry::ModelPhase;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use support::{Cluster, NS};

const WAIT: Duration = Duration::from_secs(30);

fn entry(name: &str, source: &str) -> String {
    format!(
        "apiVersion: hypersync.io/v1alpha1\nkind: ModelEntry\nmetadata: {{name: {name}}}\nspec:\n  type: LLM\n  capabilities: [coding]\n  source:\n    {source}\n"
    )
}

const LOCAL_CACHED: &str =
    "local: {engine: Ollama, model: 'qwen2.5-coder:7b', cache: {size: 10Gi}}";
const LOCAL: &str = "local: {engine: Ollama, model: 'qwen2.5-coder:7b'}";
const REMOTE: &str = "remote: {provider: OpenAI, model: gpt-4o}";

fn api<K>(cluster: &Cluster) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    Api::namespaced(cluster.client.clone(), NS)
}

/// Wait until `name` exists; its uid.
async fn uid_when_present<K>(cluster: &Cluster, name: &str) -> String
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api = api::<K>(cluster);
    cluster
        .wait_for(&format!("{} {name}", K::kind(&())), WAIT, || async {
            api.get_opt(name).await.ok()??.uid()
        })
        .await
}

/// Wait until `name` is gone.
async fn gone<K>(cluster: &Cluster, name: &str)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api = api::<K>(cluster);
    cluster
        .wait_for(
            &format!("{} {name} deleted", K::kind(&())),
            WAIT,
            || async { api.get_opt(name).await.ok()?.is_none().then_some(()) },
        )
        .await;
}

async fn uid_of<K>(cluster: &Cluster, name: &str) -> Option<String>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    api::<K>(cluster)
        .get_opt(name)
        .await
        .expect("get answers")
        .and_then(|o| o.uid())
}

/// The `ChildDeleted` Events about an object, as notes.
async fn deletions(cluster: &Cluster, kind: &str, name: &str) -> Vec<String> {
    let mut notes: Vec<String> = cluster
        .events_for(kind, name)
        .await
        .into_iter()
        .filter(|(t, r, _)| t == "Normal" && r == "ChildDeleted")
        .map(|(_, _, n)| n)
        .collect();
    notes.sort();
    notes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_to_remote_deletes_the_engine_and_keeps_the_weight_cache() {
    let cluster = Cluster::start().await;
    let operator = cluster.operator();
    cluster.apply_yaml(&entry("coder", LOCAL_CACHED)).await;
    uid_when_present::<Deployment>(&cluster, "coder").await;
    uid_when_present::<Service>(&cluster, "coder").await;
    uid_when_present::<NetworkPolicy>(&cluster, "coder").await;
    let cache = uid_when_present::<PersistentVolumeClaim>(&cluster, "coder-cache").await;

    cluster.apply_yaml(&entry("coder", REMOTE)).await;
    gone::<Deployment>(&cluster, "coder").await;
    gone::<Service>(&cluster, "coder").await;
    gone::<NetworkPolicy>(&cluster, "coder").await;
    let entries: Api<ModelEntry> = api(&cluster);
    cluster
        .wait_for("entry Ready at the remote endpoint", WAIT, || async {
            let s = entries.get("coder").await.ok()?.status?;
            (s.phase == Some(ModelPhase::Ready)
                && s.endpoint.as_deref() == Some("https://api.openai.com/v1"))
            .then_some(())
        })
        .await;
    assert_eq!(
        uid_of::<PersistentVolumeClaim>(&cluster, "coder-cache").await,
        Some(cache.clone()),
        "the weight cache is kept for a switch back"
    );
    // One Event per removal, naming the object and why, and no more on later reconciles.
    let why = "spec.source is remote: the engine is no longer needed";
    let expected = vec![
        format!("deleted Deployment coder: {why}"),
        format!("deleted NetworkPolicy coder: {why}"),
        format!("deleted Service coder: {why}"),
    ];
    cluster
        .wait_for("three ChildDeleted Events", WAIT, || async {
            (deletions(&cluster, "ModelEntry", "coder").await == expected).then_some(())
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(deletions(&cluster, "ModelEntry", "coder").await, expected);
    // What finding them cost: the uncached kinds were listed once per spec change (a reconcile that
    // ran before the cache showed its own status write may list once more), never per reconcile.
    let requests = cluster.operator_requests().await;
    let count = |k: &str| requests.get(k).copied().unwrap_or(0);
    eprintln!(
        "operator requests after local -> remote: {:?}",
        requests
            .iter()
            .filter(|(k, _)| k.starts_with("list ") || k.starts_with("delete "))
            .collect::<Vec<_>>()
    );
    for kind in ["services", "networkpolicies"] {
        assert!(
            (1..=2).contains(&count(&format!("list {kind}"))),
            "{requests:#?}"
        );
        assert_eq!(count(&format!("delete {kind}")), 1, "{requests:#?}");
    }
    assert_eq!(count("list persistentvolumeclaims"), 0, "{requests:#?}");

    // Back to local: the engine comes back at once (nothing believes it is still applied), on the
    // same cache.
    cluster.apply_yaml(&entry("coder", LOCAL_CACHED)).await;
    uid_when_present::<Deployment>(&cluster, "coder").await;
    uid_when_present::<Service>(&cluster, "coder").await;
    uid_when_present::<NetworkPolicy>(&cluster, "coder").await;
    assert_eq!(
        uid_of::<PersistentVolumeClaim>(&cluster, "coder-cache").await,
        Some(cache)
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_cache_deletes_its_claim() {
    let cluster = Cluster::start().await;
    let operator = cluster.operator();
    cluster.apply_yaml(&entry("coder", LOCAL_CACHED)).await;
    let deployment = uid_when_present::<Deployment>(&cluster, "coder").await;
    let service = uid_when_present::<Service>(&cluster, "coder").await;
    uid_when_present::<PersistentVolumeClaim>(&cluster, "coder-cache").await;

    cluster.apply_yaml(&entry("coder", LOCAL)).await;
    gone::<PersistentVolumeClaim>(&cluster, "coder-cache").await;
    // The engine itself stays (updated in place to an emptyDir for its weights).
    assert_eq!(
        uid_of::<Deployment>(&cluster, "coder").await,
        Some(deployment)
    );
    assert_eq!(uid_of::<Service>(&cluster, "coder").await, Some(service));
    cluster
        .wait_for("one ChildDeleted Event", WAIT, || async {
            (deletions(&cluster, "ModelEntry", "coder").await
                == vec![
                    "deleted PersistentVolumeClaim coder-cache: spec.source.local.cache is not set"
                        .to_string(),
                ])
            .then_some(())
        })
        .await;
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_becomes_persistent_loses_its_job() {
    let cluster = Cluster::start().await;
    let operator = cluster.operator();
    cluster.apply_yaml(&entry("gpt", REMOTE)).await;
    // The simulated agent keeps running, so the Job is live when the mode changes.
    cluster
        .apply_yaml(
            "apiVersion: hypersync.io/v1alpha1\nkind: AgentStack\nmetadata: {name: s}\nspec:\n  layers:\n    cognitive: {modelRef: {name: gpt}}\n  runtime:\n    image: busybox:1.36\n    podAnnotations: {sim.hypersync.io/run-seconds: \"600\"}\n",
        )
        .await;
    // No lifecycle: Ephemeral by default, and the API lets a lifecycle be added later.
    cluster
        .apply_yaml(
            "apiVersion: hypersync.io/v1alpha1\nkind: AgentNode\nmetadata: {name: worker}\nspec:\n  stackRef: {name: s}\n  task: {tags: [ops]}\n",
        )
        .await;
    let job = uid_when_present::<Job>(&cluster, "worker").await;
    assert_eq!(uid_of::<Deployment>(&cluster, "worker").await, None);

    let nodes: Api<hypersync_operator::api::AgentNode> = api(&cluster);
    nodes
        .patch(
            "worker",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"lifecycle": {"mode": "Persistent"}}})),
        )
        .await
        .expect("a lifecycle can be added to a node that had none");
    uid_when_present::<Deployment>(&cluster, "worker").await;
    gone::<Job>(&cluster, "worker").await;
    cluster
        .wait_for("a ChildDeleted Event on the node", WAIT, || async {
            (deletions(&cluster, "AgentNode", "worker").await
                == vec![
                    "deleted Job worker: spec.lifecycle.mode is Persistent: the agent runs as a Deployment"
                        .to_string(),
                ])
            .then_some(())
        })
        .await;
    assert!(uid_of::<Job>(&cluster, "worker").await.is_none(), "{job}");
    // The status names the workload the node runs now.
    cluster
        .wait_for("status.workload is the Deployment", WAIT, || async {
            let w = nodes.get("worker").await.ok()?.status?.workload?;
            (w.kind == "Deployment" && w.name == "worker").then_some(())
        })
        .await;
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_of_another_owner_with_the_same_labels_are_kept() {
    let cluster = Cluster::start().await;
    let operator = cluster.operator();
    cluster.apply_yaml(&entry("coder", LOCAL)).await;
    uid_when_present::<Service>(&cluster, "coder").await;
    uid_when_present::<NetworkPolicy>(&cluster, "coder").await;

    // Objects labelled exactly like the entry's engine: one controlled by another object, one
    // without any owner.
    cluster
        .apply(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "bystander"}, "data": {"k": "v"},
        }))
        .await;
    let owner = uid_of::<ConfigMap>(&cluster, "bystander")
        .await
        .expect("ConfigMap stored");
    let labels = json!({
        "app.kubernetes.io/managed-by": "hypersync-operator",
        "app.kubernetes.io/part-of": "hypersync",
        "app.kubernetes.io/component": "inference",
        "app.kubernetes.io/name": "ollama",
        "hypersync.io/model-entry": "coder",
    });
    cluster
        .apply(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {
                "name": "coder-extra", "labels": labels,
                "ownerReferences": [{
                    "apiVersion": "v1", "kind": "ConfigMap", "name": "bystander",
                    "uid": owner, "controller": true,
                }],
            },
            "spec": {"ports": [{"port": 80}]},
        }))
        .await;
    cluster
        .apply(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "coder-extra", "labels": labels},
            "spec": {"podSelector": {}},
        }))
        .await;
    let service = uid_of::<Service>(&cluster, "coder-extra").await;
    let policy = uid_of::<NetworkPolicy>(&cluster, "coder-extra").await;
    assert!(service.is_some() && policy.is_some());

    cluster.apply_yaml(&entry("coder", REMOTE)).await;
    gone::<Service>(&cluster, "coder").await;
    gone::<NetworkPolicy>(&cluster, "coder").await;
    gone::<Deployment>(&cluster, "coder").await;
    // The prune has run; give a late one time to show, then check the bystanders.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(uid_of::<Service>(&cluster, "coder-extra").await, service);
    assert_eq!(
        uid_of::<NetworkPolicy>(&cluster, "coder-extra").await,
        policy
    );
    assert_eq!(deletions(&cluster, "ModelEntry", "coder").await.len(), 3);
    operator.stop().await;
}

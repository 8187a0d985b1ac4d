//! kube-sim deletion through kube-rs: finalizers and deletionTimestamp, owner-reference garbage
//! collection with background, foreground and orphan propagation, CRD deletion removing its objects.

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Client, Config};
use kube_sim::{Sim, SimConfig};
use serde_json::json;
use std::time::Duration;

async fn start() -> (Sim, Client) {
    let sim = Sim::start(SimConfig {
        dataplane: false,
        ..SimConfig::default()
    })
    .await
    .expect("start sim");
    let mut config = Config::new(sim.url().parse().expect("url"));
    config.root_cert = sim.ca_der().map(|ca| vec![ca.to_vec()]);
    (sim, Client::try_from(config).expect("client"))
}

fn cm(name: &str, owner: Option<(&ConfigMap, bool)>) -> ConfigMap {
    let mut v = json!({"metadata":{"name":name},"data":{"k":"v"}});
    if let Some((o, block)) = owner {
        v["metadata"]["ownerReferences"] = json!([{"apiVersion":"v1","kind":"ConfigMap",
            "name": o.metadata.name, "uid": o.metadata.uid, "blockOwnerDeletion": block}]);
    }
    serde_json::from_value(v).unwrap()
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 5s");
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let (sim, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut c = cm("f", None);
    c.metadata.finalizers = Some(vec!["example.com/x".into()]);
    api.create(&PostParams::default(), &c).await.unwrap();
    api.delete("f", &DeleteParams::default()).await.unwrap();
    let held = api.get("f").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    // No new finalizers while deleting.
    let e = api
        .patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata":{"finalizers":["example.com/x","example.com/y"]}})),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, kube::Error::Api(s) if s.code == 422));
    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata":{"finalizers":[]}})),
    )
    .await
    .unwrap();
    assert!(api.get_opt("f").await.unwrap().is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn background_deletion_collects_dependents() {
    let (sim, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let owner = api
        .create(&PostParams::default(), &cm("owner", None))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("child", Some((&owner, false))))
        .await
        .unwrap();
    api.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    assert!(api.get_opt("owner").await.unwrap().is_none());
    eventually("child collected", || async {
        api.get_opt("child").await.unwrap().is_none()
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn foreground_deletion_waits_for_blocking_dependents() {
    let (sim, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let owner = api
        .create(&PostParams::default(), &cm("owner", None))
        .await
        .unwrap();
    let mut child = cm("child", Some((&owner, true)));
    child.metadata.finalizers = Some(vec!["example.com/slow".into()]);
    api.create(&PostParams::default(), &child).await.unwrap();
    api.delete("owner", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually("child marked for deletion", || async {
        api.get("child")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    })
    .await;
    let o = api.get("owner").await.unwrap();
    assert!(
        o.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"foregroundDeletion".to_string())
    );
    api.patch(
        "child",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata":{"finalizers":null}})),
    )
    .await
    .unwrap();
    eventually("owner removed", || async {
        api.get_opt("owner").await.unwrap().is_none()
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents_and_strips_owner_references() {
    let (sim, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let owner = api
        .create(&PostParams::default(), &cm("owner", None))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("child", Some((&owner, false))))
        .await
        .unwrap();
    api.delete("owner", &DeleteParams::orphan()).await.unwrap();
    eventually("owner removed", || async {
        api.get_opt("owner").await.unwrap().is_none()
    })
    .await;
    let c = api.get("child").await.unwrap();
    assert!(c.metadata.owner_references.unwrap_or_default().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn crd_registration_serves_objects_and_deletion_removes_them() {
    let (sim, client) = start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let got = crds.get("widgets.example.com").await.unwrap();
    let conds = got.status.unwrap().conditions.unwrap();
    assert!(
        conds
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let w: DynamicObject =
        serde_json::from_value(json!({"apiVersion":"example.com/v1","kind":"Widget",
        "metadata":{"name":"w1"},"spec":{"size":1},"status":{"ready":true}}))
        .unwrap();
    let made = widgets.create(&PostParams::default(), &w).await.unwrap();
    assert!(
        made.data.get("status").is_none(),
        "status dropped on create with status subresource"
    );
    assert_eq!(made.metadata.generation, Some(1));
    let d = kube::Discovery::new(client.clone()).run().await.unwrap();
    assert!(d.get("example.com").is_some());
    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    eventually("crd removed", || async {
        crds.get_opt("widgets.example.com").await.unwrap().is_none()
    })
    .await;
    let e = widgets.get("w1").await.unwrap_err();
    assert!(matches!(e, kube::Error::Api(s) if s.code == 404));
    assert_eq!(sim.state().store.count("example.com/widgets"), 0);
    sim.shutdown().await;
}

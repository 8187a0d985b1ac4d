//! kube-sim through kube-rs: CRUD, conflicts, generation, status and scale subresources, selectors,
//! pagination, namespaces, discovery, dry run.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Config};
use kube_sim::{Sim, SimConfig};
use serde_json::json;

async fn start() -> (Sim, Client) {
    let sim = Sim::start(SimConfig {
        dataplane: false,
        ..SimConfig::default()
    })
    .await
    .expect("start sim");
    let mut config = Config::new(sim.url().parse().expect("url"));
    config.root_cert = sim.ca_der().map(|ca| vec![ca.to_vec()]);
    let client = Client::try_from(config).expect("client");
    (sim, client)
}

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"apiVersion":"v1","kind":"ConfigMap",
        "metadata":{"name":name,"labels":labels},"data":{"k":"v"}}))
    .expect("configmap")
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({"apiVersion":"apps/v1","kind":"Deployment",
        "metadata":{"name":name},
        "spec":{"replicas":replicas,"selector":{"matchLabels":{"app":name}},
            "template":{"metadata":{"labels":{"app":name}},"spec":{"containers":[{"name":"c","image":"nginx"}]}}}}))
    .expect("deployment")
}

fn api_err(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn crud_conflict_and_not_found_messages() {
    let (sim, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = api
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    assert!(!uid.is_empty());
    assert!(created.metadata.creation_timestamp.is_some());
    let e = api_err(
        api.create(&PostParams::default(), &cm("a", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(e.message, "configmaps \"a\" already exists");

    let mut stale = created.clone();
    let mut fresh = created.clone();
    fresh.data = Some([("k".to_string(), "2".to_string())].into());
    let updated = api
        .replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );
    stale.data = Some([("k".to_string(), "3".to_string())].into());
    let e = api_err(
        api.replace("a", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 409);
    assert_eq!(
        e.message,
        "Operation cannot be fulfilled on configmaps \"a\": the object has been modified; please apply your changes to the latest version and try again"
    );
    let e = api_err(api.get("missing").await.unwrap_err());
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "configmaps \"missing\" not found")
    );
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let e = api_err(deploys.get("x").await.unwrap_err());
    assert_eq!(e.message, "deployments.apps \"x\" not found");

    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_err(api.get("a").await.unwrap_err()).code, 404);
    let missing_ns: Api<ConfigMap> = Api::namespaced(client, "nope");
    let e = api_err(
        missing_ns
            .create(&PostParams::default(), &cm("a", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "namespaces \"nope\" not found")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn generate_name_and_dry_run() {
    let (sim, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut c = cm("", json!({}));
    c.metadata.name = None;
    c.metadata.generate_name = Some("gen-".into());
    let made = api.create(&PostParams::default(), &c).await.unwrap();
    assert!(made.metadata.name.unwrap().starts_with("gen-"));
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    api.create(&dry, &cm("dry", json!({}))).await.unwrap();
    assert_eq!(api_err(api.get("dry").await.unwrap_err()).code, 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn generation_bumps_on_spec_only_and_status_subresource_is_separate() {
    let (sim, client) = start().await;
    let api: Api<Deployment> = Api::namespaced(client, "default");
    let d = api
        .create(&PostParams::default(), &deployment("web", 1))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    assert!(d.status.is_none() || d.status == Some(Default::default()));
    let pp = PatchParams::default();
    let d = api
        .patch(
            "web",
            &pp,
            &Patch::Merge(json!({"metadata":{"labels":{"x":"y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    let d = api
        .patch("web", &pp, &Patch::Merge(json!({"spec":{"replicas":3}})))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(2));
    // Status through the main resource is ignored.
    let d = api
        .patch("web", &pp, &Patch::Merge(json!({"status":{"replicas":7}})))
        .await
        .unwrap();
    assert_eq!(d.status.and_then(|s| s.replicas), None);
    // Status through /status changes status only, without a generation bump.
    let d = api
        .patch_status(
            "web",
            &pp,
            &Patch::Merge(json!({"spec":{"replicas":9},"status":{"replicas":7}})),
        )
        .await
        .unwrap();
    assert_eq!(d.status.and_then(|s| s.replicas), Some(7));
    assert_eq!(d.spec.and_then(|s| s.replicas), Some(3));
    assert_eq!(d.metadata.generation, Some(2));
    // A no-op write does not bump the resourceVersion.
    let before = api.get("web").await.unwrap();
    let after = api
        .patch("web", &pp, &Patch::Merge(json!({"spec":{"replicas":3}})))
        .await
        .unwrap();
    assert_eq!(
        before.metadata.resource_version,
        after.metadata.resource_version
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn scale_subresource_reads_and_writes_replicas() {
    let (sim, client) = start().await;
    let api: Api<Deployment> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &deployment("web", 2))
        .await
        .unwrap();
    let s = api.get_scale("web").await.unwrap();
    assert_eq!(s.spec.and_then(|s| s.replicas), Some(2));
    assert_eq!(
        s.status.map(|s| s.selector),
        Some(Some("app=web".to_string()))
    );
    api.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec":{"replicas":5}})),
    )
    .await
    .unwrap();
    let d = api.get("web").await.unwrap();
    assert_eq!(d.spec.and_then(|s| s.replicas), Some(5));
    assert_eq!(d.metadata.generation, Some(2));
    sim.shutdown().await;
}

#[tokio::test]
async fn label_and_field_selectors_and_pagination() {
    let (sim, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..25 {
        let tier = if i % 2 == 0 { "even" } else { "odd" };
        api.create(
            &PostParams::default(),
            &cm(&format!("c{i:02}"), json!({"tier": tier})),
        )
        .await
        .unwrap();
    }
    let even = api
        .list(&ListParams::default().labels("tier=even"))
        .await
        .unwrap();
    assert_eq!(even.items.len(), 13);
    let notin = api
        .list(&ListParams::default().labels("tier notin (even)"))
        .await
        .unwrap();
    assert_eq!(notin.items.len(), 12);
    let one = api
        .list(&ListParams::default().fields("metadata.name=c03"))
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
    let e = api_err(
        api.list(&ListParams::default().labels("a in ("))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400);

    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(10).labels("tier");
    let mut pages = 0;
    loop {
        let page = api.list(&lp).await.unwrap();
        pages += 1;
        names.extend(page.items.iter().filter_map(|c| c.metadata.name.clone()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => {
                // Writes between pages must not leak into the consistent snapshot.
                api.create(
                    &PostParams::default(),
                    &cm(&format!("late{pages}"), json!({"tier":"odd"})),
                )
                .await
                .unwrap();
                lp = lp.continue_token(&c);
            }
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 25);
    let all: Api<ConfigMap> = Api::all(client);
    assert!(all.list(&ListParams::default()).await.unwrap().items.len() >= 27);
    sim.shutdown().await;
}

#[tokio::test]
async fn namespace_deletion_terminates_then_removes_contents() {
    let (sim, client) = start().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata":{"name":"team"}})).unwrap(),
    )
    .await
    .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    let mut held = cm("held", json!({}));
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &held).await.unwrap();
    api.create(&PostParams::default(), &cm("free", json!({})))
        .await
        .unwrap();
    nss.delete("team", &DeleteParams::default()).await.unwrap();
    let ns = nss.get("team").await.unwrap();
    assert_eq!(
        ns.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
    let e = api_err(
        api.create(&PostParams::default(), &cm("new", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 403);
    wait_for(|| async { api.get_opt("free").await.unwrap().is_none() }).await;
    let h = api.get("held").await.unwrap();
    assert!(h.metadata.deletion_timestamp.is_some());
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata":{"finalizers":null}})),
    )
    .await
    .unwrap();
    wait_for(|| async { nss.get_opt("team").await.unwrap().is_none() }).await;
    sim.shutdown().await;
}

async fn wait_for<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("condition not reached in 5s");
}

#[tokio::test]
async fn discovery_lists_groups_and_resources() {
    let (sim, client) = start().await;
    let d = kube::Discovery::new(client.clone()).run().await.unwrap();
    let apps = d.get("apps").expect("apps group");
    let (ar, caps) = apps.recommended_kind("Deployment").expect("deployments");
    assert_eq!(ar.plural, "deployments");
    assert!(
        caps.subresources
            .iter()
            .any(|(s, _)| s.plural == "deployments/scale" || s.plural == "scale")
    );
    assert!(d.get("apiextensions.k8s.io").is_some());
    let v = client.apiserver_version().await.unwrap();
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "33"));
    sim.shutdown().await;
}

#[tokio::test]
async fn stats_count_requests_by_verb_and_resource() {
    let (sim, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &cm("s", json!({})))
        .await
        .unwrap();
    api.get("s").await.unwrap();
    api.get("s").await.unwrap();
    let stats = sim.state().stats.to_json();
    let gets = stats["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["verb"] == "get" && r["resource"] == "configmaps")
        .map(|r| r["count"].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(gets, 2);
    sim.state().stats.reset();
    assert_eq!(sim.state().stats.to_json()["total"], 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn events_k8s_io_and_core_events_share_storage() {
    let (sim, client) = start().await;
    let new_api: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "default");
    let ev: k8s_openapi::api::events::v1::Event = serde_json::from_value(json!({
        "metadata": {"name": "e1"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "example.com/ctrl", "reportingInstance": "ctrl-0",
        "action": "Reconcile", "reason": "Synced", "type": "Normal", "note": "all good",
        "regarding": {"kind": "ConfigMap", "name": "x", "namespace": "default", "apiVersion": "v1"}
    }))
    .unwrap();
    new_api.create(&PostParams::default(), &ev).await.unwrap();
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client, "default");
    let got = core.get("e1").await.unwrap();
    assert_eq!(got.message.as_deref(), Some("all good"));
    assert_eq!(got.involved_object.name.as_deref(), Some("x"));
    assert_eq!(got.reporting_component.as_deref(), Some("example.com/ctrl"));
    let back = new_api.get("e1").await.unwrap();
    assert_eq!(back.note.as_deref(), Some("all good"));
    sim.shutdown().await;
}

#[tokio::test]
async fn fault_injection_endpoint_turns_requests_into_errors() {
    let (sim, client) = start().await;
    let req = hyper::Request::post("/sim/faults")
        .body(b"seed=1,get/configmaps=1:500".to_vec())
        .unwrap();
    client.request_text(req).await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &cm("f", json!({})))
        .await
        .unwrap();
    let e = api_err(api.get("f").await.unwrap_err());
    assert_eq!(e.code, 500);
    let req = hyper::Request::post("/sim/faults")
        .body(b"off".to_vec())
        .unwrap();
    client.request_text(req).await.unwrap();
    api.get("f").await.unwrap();
    sim.shutdown().await;
}

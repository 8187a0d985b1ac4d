//! API behaviours of a real kube-apiserver that kubectl has no command for, checked through the
//! kube client crate: PartialObjectMetadata on write responses, Event limits, request and object
//! size limits, reads at a resourceVersion the server has not reached.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, GetParams, ListParams, PostParams};
use kube::{Client, Config};
use kube_sim::{Sim, SimConfig};
use serde_json::{Value, json};

const PARTIAL: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

async fn start() -> (Sim, Client) {
    let sim = Sim::start(SimConfig {
        dataplane: false,
        ..SimConfig::default()
    })
    .await
    .expect("start sim");
    let mut config = Config::new(sim.url().parse().expect("url"));
    config.root_cert = sim.ca_der().map(|ca| vec![ca.to_vec()]);
    // The 504s asserted here are answers, not something to retry.
    config.default_retry = false;
    let client = Client::try_from(config).expect("client");
    (sim, client)
}

fn api_err(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn raw(
    client: &Client,
    method: &str,
    path: &str,
    accept: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Result<Value, kube::Error> {
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("accept", accept)
        .header("content-type", content_type)
        .body(body)
        .expect("request");
    client.request::<Value>(req).await
}

#[tokio::test]
async fn write_responses_honour_partial_object_metadata() {
    let (sim, client) = start().await;
    let path = "/api/v1/namespaces/default/configmaps";
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "c1", "labels": {"a": "b"}}, "data": {"k": "v"}});
    let created = raw(
        &client,
        "POST",
        path,
        PARTIAL,
        "application/json",
        body.to_string().into_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(created["kind"], "PartialObjectMetadata", "{created}");
    assert_eq!(created["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(created["metadata"]["labels"]["a"], "b");
    assert!(created.get("data").is_none(), "{created}");
    let patched = raw(
        &client,
        "PATCH",
        &format!("{path}/c1"),
        PARTIAL,
        "application/merge-patch+json",
        br#"{"metadata":{"labels":{"c":"d"}}}"#.to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(patched["kind"], "PartialObjectMetadata", "{patched}");
    assert_eq!(patched["metadata"]["labels"]["c"], "d");
    let mut put = body.clone();
    put["metadata"]["resourceVersion"] = patched["metadata"]["resourceVersion"].clone();
    let updated = raw(
        &client,
        "PUT",
        &format!("{path}/c1"),
        PARTIAL,
        "application/json",
        put.to_string().into_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(updated["kind"], "PartialObjectMetadata", "{updated}");
    // A delete that removes the object answers a Status, whatever was asked for.
    let deleted = raw(
        &client,
        "DELETE",
        &format!("{path}/c1"),
        PARTIAL,
        "",
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(deleted["kind"], "Status", "{deleted}");
    // A pod's delete answers the pod, so as PartialObjectMetadata.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1"},
                     "spec": {"containers": [{"name": "c", "image": "img"}]}});
    raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/pods",
        "application/json",
        "application/json",
        pod.to_string().into_bytes(),
    )
    .await
    .unwrap();
    // The status subresource too.
    let status = raw(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/pods/p1/status",
        PARTIAL,
        "application/merge-patch+json",
        br#"{"status":{"message":"hi"}}"#.to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(status["kind"], "PartialObjectMetadata", "{status}");
    let deleted = raw(
        &client,
        "DELETE",
        "/api/v1/namespaces/default/pods/p1",
        PARTIAL,
        "",
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(deleted["kind"], "PartialObjectMetadata", "{deleted}");
    sim.shutdown().await;
}

#[tokio::test]
async fn events_are_held_to_the_apiservers_limits() {
    let (sim, client) = start().await;
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "default");
    let event = |name: &str, note: &str| -> k8s_openapi::api::events::v1::Event {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "example.com/ctrl", "reportingInstance": "ctrl-0",
            "action": "Reconcile", "reason": "Synced", "type": "Normal", "note": note,
            "regarding": {"kind": "ConfigMap", "name": "x", "namespace": "default", "apiVersion": "v1"}
        }))
        .unwrap()
    };
    api.create(&PostParams::default(), &event("ok", &"n".repeat(1024)))
        .await
        .unwrap();
    let e = api_err(
        api.create(&PostParams::default(), &event("long", &"n".repeat(1025)))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert_eq!(
        e.message,
        "Event.events.k8s.io \"long\" is invalid: message: Invalid value: \"\": can have at most 1024 characters"
    );
    let mut bad = event("bad", "x");
    bad.type_ = Some("Info".into());
    bad.action = None;
    let e = api_err(api.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(
        e.message,
        "Event.events.k8s.io \"bad\" is invalid: [action: Required value, type: Invalid value: \"\": has invalid value: Info]"
    );
    // core/v1 events without eventTime are not held to the new-style limits.
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client, "default");
    let old: k8s_openapi::api::core::v1::Event = serde_json::from_value(json!({
        "metadata": {"name": "old"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
        "reason": "Pulled", "message": "m".repeat(4000), "type": "Normal"
    }))
    .unwrap();
    core.create(&PostParams::default(), &old).await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn oversized_requests_and_objects_get_413() {
    let (sim, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = |name: &str, size: usize| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v".repeat(size)}}))
            .unwrap()
    };
    api.create(&PostParams::default(), &cm("fits", 1000 * 1024))
        .await
        .unwrap();
    let e = api_err(
        api.create(&PostParams::default(), &cm("etcd", 1600 * 1024))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 413);
    assert_eq!(
        e.message,
        "Request entity too large: etcdserver: request is too large"
    );
    let e = api_err(
        api.create(&PostParams::default(), &cm("body", 3 * 1024 * 1024))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 413);
    assert_eq!(e.message, "Request entity too large: limit is 3145728");
    assert!(api.get_opt("etcd").await.unwrap().is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn reads_at_a_future_resource_version_wait_then_time_out() {
    let (sim, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let c1: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "c1"}})).unwrap();
    let created = api.create(&PostParams::default(), &c1).await.unwrap();
    let rv: u64 = created
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    // Nothing is written: after the apiserver's 3 s, 504 with the cause.
    let far = rv + 1000;
    let started = std::time::Instant::now();
    let e = api_err(
        api.list(&ListParams::default().at(&far.to_string()))
            .await
            .unwrap_err(),
    );
    assert!(started.elapsed() >= std::time::Duration::from_secs(3));
    assert_eq!(e.code, 504);
    assert_eq!(e.reason, "Timeout");
    assert_eq!(
        e.message,
        format!("Timeout: Too large resource version: {far}, current: {rv}")
    );
    let details = e.details.expect("details");
    assert_eq!(details.retry_after_seconds, 1);
    assert!(
        details.causes[0]
            .message
            .contains("Too large resource version")
    );
    assert_eq!(details.causes[0].reason, "ResourceVersionTooLarge");
    let e = api_err(
        api.get_with("c1", &GetParams::at(&far.to_string()))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 504);
    // A write that reaches the version while the read waits lets it through.
    let next = (rv + 1).to_string();
    let waiting = tokio::spawn({
        let api = api.clone();
        async move { api.get_with("c1", &GetParams::at(&next)).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let c2: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "c2"}})).unwrap();
    api.create(&PostParams::default(), &c2).await.unwrap();
    waiting
        .await
        .unwrap()
        .expect("the read is served once the version exists");
    sim.shutdown().await;
}

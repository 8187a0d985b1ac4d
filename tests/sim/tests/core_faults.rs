//! Fault injection and request stats through kube-rs: lost responses of writes that ran (504,
//! dropped connection), dropped and hung requests, 410 on watches (at start and mid-stream, with the
//! watcher re-listing), dropped watches, faults aimed at one client or object, the `/sim/faults`
//! counters and the `/sim/stats` filters.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, Config};
use kube_sim::{Sim, SimConfig};
use serde_json::{Value, json};
use std::time::Duration;

async fn start(authorize: bool) -> Sim {
    Sim::start(SimConfig {
        dataplane: false,
        authorize,
        ..SimConfig::default()
    })
    .await
    .expect("start sim")
}

/// A client with this user agent (and bearer token), without kube-rs's retries of 429/503/504 so
/// each injected fault reaches the test as is.
async fn client(sim: &Sim, user_agent: &str, token: Option<&str>) -> Client {
    let kc = Kubeconfig::from_yaml(&kube_sim::kubeconfig_yaml(&sim.url(), sim.ca_pem(), token))
        .expect("yaml");
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    config.default_retry = false;
    config.headers.push((
        hyper::header::USER_AGENT,
        hyper::header::HeaderValue::from_str(user_agent).expect("user agent"),
    ));
    Client::try_from(config).expect("client")
}

async fn set_faults(c: &Client, spec: &str) -> Value {
    let req = hyper::Request::post("/sim/faults")
        .body(spec.as_bytes().to_vec())
        .expect("request");
    serde_json::from_str(&c.request_text(req).await.expect("set faults")).expect("json")
}

async fn get_json(c: &Client, path: &str) -> Value {
    let req = hyper::Request::get(path).body(Vec::new()).expect("request");
    serde_json::from_str(&c.request_text(req).await.expect("get")).expect("json")
}

async fn post_json(c: &Client, path: &str) -> Value {
    let req = hyper::Request::post(path)
        .body(Vec::new())
        .expect("request");
    serde_json::from_str(&c.request_text(req).await.expect("post")).expect("json")
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name}, "data": {"k": "v"}}))
    .expect("configmap")
}

/// The next item of a stream that must not end or stall.
async fn next<S: futures::Stream + Unpin>(s: &mut S) -> S::Item {
    tokio::time::timeout(Duration::from_secs(20), s.next())
        .await
        .expect("stream item in time")
        .expect("stream open")
}

fn api_status(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The client saw the connection close without an answer (not an error status, nor a body it
/// could not read).
fn connection_closed(e: kube::Error) {
    assert!(
        matches!(e, kube::Error::HyperError(_) | kube::Error::Service(_)),
        "expected a connection error, got {e:?}"
    );
}

#[tokio::test]
async fn write_answered_504_was_applied_and_other_objects_are_untouched() {
    let sim = start(false).await;
    let c = client(&sim, "test/1", None).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    set_faults(&c, "create/configmaps{ns=default;name=lost}=1:applied-504").await;
    // Another object of the same kind is not aimed at.
    cms.create(&PostParams::default(), &cm("other"))
        .await
        .expect("create other");
    let s = api_status(
        cms.create(&PostParams::default(), &cm("lost"))
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (504, "Timeout"));
    assert_eq!(
        s.message,
        "the server was unable to return a response in the time allotted, but may still be \
         processing the request"
    );
    // The write happened: the object is there, and a retried create meets it (still answered 504).
    let got = cms.get("lost").await.expect("object exists after the 504");
    assert_eq!(got.data.unwrap()["k"], "v");
    let faults = get_json(&c, "/sim/faults").await;
    assert_eq!(faults["counters"]["byKind"]["applied-504"], 1);
    assert_eq!(faults["counters"]["byVerb"]["create"]["applied-504"], 1);
    // Counters reset through HTTP, the config stays.
    let reset = post_json(&c, "/sim/faults/reset").await;
    assert_eq!(reset["counters"]["total"], 0);
    assert_eq!(
        reset["spec"],
        "seed=0,create/configmaps{ns=default;name=lost}=1:applied-504"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn dropped_and_hung_connections_with_and_without_the_write() {
    let sim = start(false).await;
    let c = client(&sim, "test/1", None).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    cms.create(&PostParams::default(), &cm("p"))
        .await
        .expect("create");
    set_faults(
        &c,
        "patch/configmaps=1:applied-drop,create{name=never}=1:drop,get{name=p}=1:hang,\
         delete{name=p}=1:applied-hang,hang-for=200ms",
    )
    .await;
    // applied-drop: no answer, but the patch is in.
    let patch = Patch::Merge(json!({"data": {"k": "patched"}}));
    connection_closed(
        cms.patch("p", &PatchParams::default(), &patch)
            .await
            .unwrap_err(),
    );
    // drop: no answer and nothing written.
    connection_closed(
        cms.create(&PostParams::default(), &cm("never"))
            .await
            .unwrap_err(),
    );
    // hang: no answer until hang-for, then the connection closes.
    connection_closed(cms.get("p").await.unwrap_err());
    let list = cms.list(&Default::default()).await.expect("list");
    let p = list
        .items
        .iter()
        .find(|o| o.metadata.name.as_deref() == Some("p"))
        .expect("p listed");
    assert_eq!(p.data.as_ref().unwrap()["k"], "patched");
    assert!(
        list.items
            .iter()
            .all(|o| o.metadata.name.as_deref() != Some("never"))
    );
    // applied-hang: the delete ran although the client never heard back.
    connection_closed(cms.delete("p", &Default::default()).await.unwrap_err());
    set_faults(&c, "off").await;
    assert_eq!(api_status(cms.get("p").await.unwrap_err()).code, 404);
    // A hung request stays unanswered (here for up to 30s; the test stops waiting first).
    set_faults(&c, "get{name=slow}=1:hang,hang-for=30s").await;
    let pending = tokio::spawn(async move { cms.get("slow").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pending.is_finished(), "a hung request got an answer");
    pending.abort();
    sim.shutdown().await;
}

#[tokio::test]
async fn fault_aimed_at_one_user_agent_or_user_spares_the_others() {
    let sim = start(true).await;
    let victim = client(
        &sim,
        "victim-operator/0.1",
        Some("sim-user:alice:system:masters"),
    )
    .await;
    let other = client(&sim, "bystander/1.0", Some("sim-user:bob:system:masters")).await;
    set_faults(
        &other,
        "get{ua=victim-operator}=1:503,list{user=bob}=1:429,retry-after=2",
    )
    .await;
    let v: Api<ConfigMap> = Api::namespaced(victim.clone(), "default");
    let o: Api<ConfigMap> = Api::namespaced(other.clone(), "default");
    o.create(&PostParams::default(), &cm("shared"))
        .await
        .expect("create");
    let s = api_status(v.get("shared").await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (503, "ServiceUnavailable"));
    o.get("shared").await.expect("the bystander's get");
    v.list(&Default::default()).await.expect("alice's list");
    let s = api_status(o.list(&Default::default()).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (429, "TooManyRequests"));

    // Request stats per user agent and per user, writes apart from reads.
    let stats = get_json(&other, "/sim/stats?userAgent=victim-operator").await;
    assert_eq!(stats["byVerb"], json!({"get": 1, "list": 1}));
    assert_eq!((&stats["reads"], &stats["writes"]), (&json!(2), &json!(0)));
    assert_eq!(stats["byUser"], json!({"alice": 2}));
    let bob = get_json(&other, "/sim/stats?user=bob&verb=write").await;
    assert_eq!(bob["total"], 1);
    assert_eq!(bob["byResourceVerb"], json!({"configmaps": {"create": 1}}));
    assert_eq!(bob["requests"][0]["userAgent"], "bystander/1.0");
    assert_eq!(bob["requests"][0]["access"], "write");
    // The old fields stay: every request counted, the stats reads themselves included.
    let all = get_json(&other, "/sim/stats").await;
    assert!(all["total"].as_u64().unwrap() >= 7, "{all}");
    assert_eq!(all["byResource"]["configmaps"], 5);
    sim.shutdown().await;
}

#[tokio::test]
async fn watch_from_a_resource_version_gets_410_and_a_fresh_watch_does_not() {
    let sim = start(false).await;
    let c = client(&sim, "test/1", None).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let created = cms
        .create(&PostParams::default(), &cm("w"))
        .await
        .expect("create");
    let rv = created.metadata.resource_version.unwrap();
    set_faults(&c, "watch/configmaps=1:410").await;
    let mut s = cms
        .watch(&WatchParams::default(), &rv)
        .await
        .expect("watch")
        .boxed();
    match s.try_next().await.expect("event") {
        Some(WatchEvent::Error(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
            assert!(e.message.starts_with("too old resource version: "), "{e:?}");
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    // "0" asks for no particular version: nothing can be too old.
    let mut fresh = cms
        .watch(&WatchParams::default(), "0")
        .await
        .expect("watch")
        .boxed();
    match fresh.try_next().await.expect("event") {
        Some(WatchEvent::Added(o)) => assert_eq!(o.metadata.name.as_deref(), Some("w")),
        other => panic!("expected ADDED, got {other:?}"),
    }
    let faults = get_json(&c, "/sim/faults").await;
    assert_eq!(faults["counters"]["byVerb"]["watch"]["410"], 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn watcher_relists_after_a_410_mid_stream() {
    let sim = start(false).await;
    let c = client(&sim, "test/1", None).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    cms.create(&PostParams::default(), &cm("a"))
        .await
        .expect("create a");
    let mut w = watcher(cms.clone(), watcher::Config::default()).boxed();
    // Initial list.
    loop {
        if matches!(next(&mut w).await, Ok(watcher::Event::InitDone)) {
            break;
        }
    }
    set_faults(&c, "watch-gone/configmaps=1").await;
    cms.create(&PostParams::default(), &cm("b"))
        .await
        .expect("create b");
    // The next batch of events is replaced by a 410 ERROR event ...
    match next(&mut w).await {
        Err(watcher::Error::WatchError(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected the 410 watch error, got {other:?}"),
    }
    // ... on which the watcher lists again and sees both objects.
    let mut relisted = Vec::new();
    loop {
        match next(&mut w).await {
            Ok(watcher::Event::Init) => {}
            Ok(watcher::Event::InitApply(o)) => relisted.push(o.metadata.name.unwrap()),
            Ok(watcher::Event::InitDone) => break,
            other => panic!("expected the re-list, got {other:?}"),
        }
    }
    relisted.sort();
    assert_eq!(relisted, ["a", "b"]);
    set_faults(&c, "off").await;
    let stats = get_json(&c, "/sim/stats?resource=configmaps&verb=list").await;
    assert_eq!(stats["total"], 2, "the initial list and the re-list");
    sim.shutdown().await;
}

#[tokio::test]
async fn watch_drop_closes_the_stream_and_only_the_aimed_one() {
    let sim = start(false).await;
    let c = client(&sim, "test/1", None).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let spared: Api<ConfigMap> = Api::namespaced(c.clone(), "kube-system");
    let rv = cms
        .create(&PostParams::default(), &cm("x"))
        .await
        .expect("create")
        .metadata
        .resource_version
        .unwrap();
    set_faults(&c, "watch-drop{ns=default}=1").await;
    let mut dropped = cms
        .watch(&WatchParams::default(), &rv)
        .await
        .expect("watch")
        .boxed();
    let mut kept = spared
        .watch(&WatchParams::default(), &rv)
        .await
        .expect("watch")
        .boxed();
    cms.create(&PostParams::default(), &cm("y"))
        .await
        .expect("create y");
    spared
        .create(&PostParams::default(), &cm("z"))
        .await
        .expect("create z");
    let end = tokio::time::timeout(Duration::from_secs(10), dropped.try_next())
        .await
        .expect("in time");
    assert!(matches!(end, Ok(None)), "the dropped watch ends: {end:?}");
    match tokio::time::timeout(Duration::from_secs(10), kept.try_next())
        .await
        .expect("in time")
    {
        Ok(Some(WatchEvent::Added(o))) => assert_eq!(o.metadata.name.as_deref(), Some("z")),
        other => panic!("expected ADDED z on the spared watch, got {other:?}"),
    }
    let faults = get_json(&c, "/sim/faults").await;
    assert_eq!(faults["counters"]["byKind"]["watch-drop"], 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_from_the_start_config_and_clear_errors_for_bad_specs() {
    let err = Sim::start(SimConfig {
        faults: Some("seed=1,get{agent=op}=1:500".into()),
        ..SimConfig::default()
    })
    .await
    .err()
    .expect("a bad spec is refused");
    assert_eq!(
        err.to_string(),
        "failed to parse the faults setting: failed to parse fault item \"get{agent=op}=1:500\": \
         unknown scope \"agent\" (expected ua, user, ns or name)"
    );
    let sim = Sim::start(SimConfig {
        dataplane: false,
        faults: Some("list/configmaps{ua=victim}=1:applied-504".into()),
        ..SimConfig::default()
    })
    .await
    .expect("start sim");
    let victim = client(&sim, "victim/1", None).await;
    let other = client(&sim, "other/1", None).await;
    let s = api_status(
        Api::<ConfigMap>::namespaced(victim.clone(), "default")
            .list(&Default::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(s.code, 504);
    Api::<ConfigMap>::namespaced(other.clone(), "default")
        .list(&Default::default())
        .await
        .expect("other client's list");
    // A bad spec posted at runtime is a 400 naming the item, and the old spec stays.
    let req = hyper::Request::post("/sim/faults")
        .body(b"patch=0.5:418".to_vec())
        .expect("request");
    match other.request_text(req).await.unwrap_err() {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 400);
            assert!(s.message.contains("\"patch=0.5:418\""), "{}", s.message);
        }
        e => panic!("expected a 400, got {e:?}"),
    }
    let now = get_json(&other, "/sim/faults").await;
    assert_eq!(
        now["spec"],
        "seed=0,list/configmaps{ua=victim}=1:applied-504"
    );
    assert_eq!(
        now["counters"]["byRule"]["list/configmaps{ua=victim}=1:applied-504"],
        1
    );
    sim.shutdown().await;
}

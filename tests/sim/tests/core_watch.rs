//! kube-sim watch semantics through kube-rs: resume from a resourceVersion, bookmarks, 410 Expired,
//! selector transitions, `kube::runtime::watcher`, streaming lists and a small `Controller`.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, Config};
use kube_sim::{Sim, SimConfig};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

async fn start(cfg: SimConfig) -> (Sim, Client) {
    let sim = Sim::start(cfg).await.expect("start sim");
    let mut config = Config::new(sim.url().parse().expect("url"));
    config.root_cert = sim.ca_der().map(|ca| vec![ca.to_vec()]);
    (sim, Client::try_from(config).expect("client"))
}

fn cm(name: &str, v: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata":{"name":name,"labels":{"app":"w"}},"data":{"v":v}}))
        .unwrap()
}

#[tokio::test]
async fn watch_resumes_from_resource_version_and_sends_bookmarks() {
    let cfg = SimConfig {
        bookmark_interval: Duration::from_millis(200),
        dataplane: false,
        ..SimConfig::default()
    };
    let (sim, client) = start(cfg).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let a = api
        .create(&PostParams::default(), &cm("a", "1"))
        .await
        .unwrap();
    let rv = a.metadata.resource_version.clone().unwrap();
    api.create(&PostParams::default(), &cm("b", "1"))
        .await
        .unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data":{"v":"2"}})),
    )
    .await
    .unwrap();
    api.delete("b", &Default::default()).await.unwrap();
    let wp = WatchParams::default().timeout(10);
    let mut stream = api.watch(&wp, &rv).await.unwrap().boxed();
    let mut seen = Vec::new();
    let mut bookmark_rv = None;
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
    {
        match ev.unwrap() {
            WatchEvent::Added(o) => seen.push(format!("ADDED {}", o.metadata.name.unwrap())),
            WatchEvent::Modified(o) => seen.push(format!("MODIFIED {}", o.metadata.name.unwrap())),
            WatchEvent::Deleted(o) => seen.push(format!("DELETED {}", o.metadata.name.unwrap())),
            WatchEvent::Bookmark(b) => {
                bookmark_rv = Some(b.metadata.resource_version);
                break;
            }
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(seen, vec!["ADDED b", "MODIFIED a", "DELETED b"]);
    let brv: u64 = bookmark_rv.expect("bookmark").parse().unwrap();
    assert!(brv >= rv.parse::<u64>().unwrap() + 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn watch_from_compacted_resource_version_gets_410() {
    let cfg = SimConfig {
        history: 5,
        history_age: Duration::ZERO,
        dataplane: false,
        ..SimConfig::default()
    };
    let (sim, client) = start(cfg).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let a = api
        .create(&PostParams::default(), &cm("a", "0"))
        .await
        .unwrap();
    for i in 0..10 {
        api.patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data":{"v":i.to_string()}})),
        )
        .await
        .unwrap();
    }
    let rv = a.metadata.resource_version.unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(e))) => {
            assert_eq!(e.code, 410);
            assert!(
                e.message.starts_with("too old resource version:"),
                "{}",
                e.message
            );
        }
        other => panic!("expected a 410 error event, got {other:?}"),
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn label_selector_watch_reports_objects_leaving_the_selection_as_deleted() {
    let (sim, client) = start(SimConfig {
        dataplane: false,
        ..SimConfig::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let a = api
        .create(&PostParams::default(), &cm("a", "1"))
        .await
        .unwrap();
    let wp = WatchParams::default().labels("app=w").timeout(5);
    let mut stream = api
        .watch(&wp, &a.metadata.resource_version.unwrap())
        .await
        .unwrap()
        .boxed();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata":{"labels":{"app":"other"}}})),
    )
    .await
    .unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata":{"labels":{"app":"w"}}})),
    )
    .await
    .unwrap();
    let mut kinds = Vec::new();
    for _ in 0..2 {
        match stream.next().await.unwrap().unwrap() {
            WatchEvent::Added(_) => kinds.push("ADDED"),
            WatchEvent::Deleted(_) => kinds.push("DELETED"),
            WatchEvent::Modified(_) => kinds.push("MODIFIED"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(kinds, vec!["DELETED", "ADDED"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn runtime_watcher_sees_initial_list_and_changes() {
    let (sim, client) = start(SimConfig {
        dataplane: false,
        ..SimConfig::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &cm("pre", "1"))
        .await
        .unwrap();
    for streaming in [false, true] {
        let cfg = if streaming {
            watcher::Config::default().streaming_lists()
        } else {
            watcher::Config::default()
        };
        let mut objs = watcher(api.clone(), cfg).applied_objects().boxed();
        let existing = api.list(&ListParams::default()).await.unwrap().items.len();
        let mut initial = Vec::new();
        for _ in 0..existing {
            let o = tokio::time::timeout(Duration::from_secs(5), objs.try_next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            initial.push(o.metadata.name.unwrap_or_default());
        }
        assert!(initial.contains(&"pre".to_string()), "{initial:?}");
        let name = format!("later-{streaming}");
        api.create(&PostParams::default(), &cm(&name, "1"))
            .await
            .unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), objs.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(next.metadata.name.as_deref(), Some(name.as_str()));
    }
    sim.shutdown().await;
}

#[derive(Debug, thiserror::Error)]
#[error("failed to reconcile: {0}")]
struct ReconcileError(#[from] kube::Error);

#[tokio::test]
async fn small_controller_reconciles_configmaps() {
    let (sim, client) = start(SimConfig {
        dataplane: false,
        ..SimConfig::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let count = Arc::new(AtomicUsize::new(0));
    struct Ctx {
        api: Api<ConfigMap>,
        count: Arc<AtomicUsize>,
    }
    async fn reconcile(obj: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
        ctx.count.fetch_add(1, Ordering::SeqCst);
        let name = obj.metadata.name.clone().unwrap_or_default();
        if obj.data.as_ref().and_then(|d| d.get("seen")).is_none() {
            ctx.api
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"data":{"seen":"yes"}})),
                )
                .await?;
        }
        Ok(Action::await_change())
    }
    fn error_policy(_o: Arc<ConfigMap>, _e: &ReconcileError, _c: Arc<Ctx>) -> Action {
        Action::requeue(Duration::from_millis(100))
    }
    let ctx = Arc::new(Ctx {
        api: api.clone(),
        count: count.clone(),
    });
    let ctrl = tokio::spawn(
        Controller::new(api.clone(), watcher::Config::default())
            .run(reconcile, error_policy, ctx)
            .for_each(|_| async {}),
    );
    api.create(&PostParams::default(), &cm("x", "1"))
        .await
        .unwrap();
    let mut ok = false;
    for _ in 0..100 {
        if api
            .get("x")
            .await
            .unwrap()
            .data
            .and_then(|d| d.get("seen").cloned())
            .is_some()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "controller did not reconcile");
    // Settles: no hot loop (the patch triggers one more reconcile, then nothing).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = count.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count.load(Ordering::SeqCst), settled);
    assert!(settled <= 3, "reconciled {settled} times");
    ctrl.abort();
    sim.shutdown().await;
}

#[tokio::test]
async fn metadata_only_get_list_and_watch() {
    let (sim, client) = start(SimConfig {
        dataplane: false,
        ..SimConfig::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &cm("m1", "1"))
        .await
        .unwrap();
    let m = api.get_metadata("m1").await.unwrap();
    assert_eq!(
        m.types.as_ref().map(|t| t.kind.as_str()),
        Some("PartialObjectMetadata")
    );
    assert_eq!(m.metadata.name.as_deref(), Some("m1"));
    let l = api.list_metadata(&ListParams::default()).await.unwrap();
    assert!(
        l.items
            .iter()
            .any(|i| i.metadata.name.as_deref() == Some("m1"))
    );
    let meta_api: Api<kube::core::PartialObjectMeta<ConfigMap>> =
        Api::namespaced(client, "default");
    let mut objs = watcher(meta_api, watcher::Config::default())
        .applied_objects()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), objs.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("m1"));
    api.create(&PostParams::default(), &cm("m2", "1"))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), objs.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.metadata.name.as_deref(), Some("m2"));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_behind_the_fan_out_catches_up_from_the_history() {
    let (sim, client) = start(SimConfig {
        dataplane: false,
        ..SimConfig::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let a = api
        .create(&PostParams::default(), &cm("a", "0"))
        .await
        .unwrap();
    let rv: u64 = a.metadata.resource_version.unwrap().parse().unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), &rv.to_string())
        .await
        .unwrap()
        .boxed();
    // 30,000 writes (60 MB of events) while the client reads nothing: far more than the
    // fan-out channel (16,384 events) and the sockets' buffers hold.
    let store = sim.state().store.clone();
    let table: Arc<str> = Arc::from("/configmaps");
    let pad = "x".repeat(2_000);
    let writes: u64 = 30_000;
    tokio::task::spawn_blocking(move || {
        for i in 0..writes {
            let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "a", "namespace": "default"},
                "data": {"v": i.to_string(), "pad": pad}});
            store.update(&table, "default", "a", obj, None).unwrap();
        }
    })
    .await
    .unwrap();
    let mut next = rv + 1;
    while next <= rv + writes {
        match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
            Ok(Some(Ok(WatchEvent::Modified(o)))) => {
                let got: u64 = o.metadata.resource_version.unwrap().parse().unwrap();
                assert_eq!(got, next, "events in order, none missing");
                next += 1;
            }
            Ok(Some(Ok(WatchEvent::Bookmark(_)))) => {}
            other => panic!("after {} of {writes} events: {other:?}", next - rv - 1),
        }
    }
    sim.shutdown().await;
}

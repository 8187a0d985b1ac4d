//! The garbage collector reading the ownership feed: nothing lost while it is far behind, no full
//! pass after startup, and owners deleted in the foreground released when a dependent lets go.

use super::super::handlers::{DeleteOpts, WriteOpts};
use crate::server::{Sim, SimConfig};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::Duration;

async fn start() -> Sim {
    let sim = Sim::start(SimConfig {
        dataplane: false,
        insecure_http: true,
        ..SimConfig::default()
    })
    .await
    .expect("start sim");
    // Let the controllers subscribe and run their startup pass.
    for _ in 0..200 {
        if sim.state().gc_full_passes.load(Ordering::Relaxed) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sim
}

fn cm(name: &str, owner: Option<(&Value, bool)>) -> Value {
    let mut v = json!({"metadata": {"name": name}, "data": {"k": "v"}});
    if let Some((o, block)) = owner {
        v["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap",
            "name": o["metadata"]["name"], "uid": o["metadata"]["uid"],
            "blockOwnerDeletion": block}]);
    }
    v
}

fn create(sim: &Sim, body: Value) -> Value {
    let st = sim.state();
    let ri = st
        .registry_read()
        .get("", "configmaps")
        .expect("configmaps");
    st.create_obj(&ri, "v1", Some("default"), body, &WriteOpts::system("test"))
        .expect("create")
        .object
        .as_ref()
        .clone()
}

fn delete(sim: &Sim, name: &str, propagation: &str) {
    let st = sim.state();
    let ri = st
        .registry_read()
        .get("", "configmaps")
        .expect("configmaps");
    let opts = DeleteOpts {
        propagation: Some(propagation.into()),
        ..Default::default()
    };
    st.delete_obj(&ri, "v1", Some("default"), name, &opts)
        .expect("delete");
}

/// A dependent written straight into the store (cheaper than a create through the verbs, so the
/// test can outrun the fan-out channel quickly in a debug build).
fn create_in_store(sim: &Sim, name: &str, owner: &Value) {
    let mut body = cm(name, Some((owner, false)));
    body["apiVersion"] = json!("v1");
    body["kind"] = json!("ConfigMap");
    body["metadata"]["namespace"] = json!("default");
    crate::store::fill_create_meta(&mut body, false);
    sim.state()
        .store
        .create(&std::sync::Arc::from("/configmaps"), "default", body)
        .expect("create in store");
}

fn get(sim: &Sim, name: &str) -> Option<std::sync::Arc<Value>> {
    sim.state().store.get("/configmaps", "default", name)
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..2_400 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 120s");
}

/// More changes than the fan-out channel holds (16,384) are committed while the collector cannot
/// run (this test holds the only runtime thread): it still collects every dependent, from the
/// changes themselves, without a pass over the whole store.
#[tokio::test]
async fn a_collector_far_behind_still_collects_every_dependent_without_a_full_pass() {
    let sim = start().await;
    assert_eq!(sim.state().gc_full_passes.load(Ordering::Relaxed), 1);
    let owners = 9;
    let per_owner = 2_000;
    for o in 0..owners {
        let owner = create(&sim, cm(&format!("owner-{o}"), None));
        for d in 0..per_owner {
            create_in_store(&sim, &format!("dep-{o}-{d}"), &owner);
        }
    }
    for o in 0..owners {
        delete(&sim, &format!("owner-{o}"), "Background");
    }
    // One more dependent whose owner is already gone when it is written.
    let ghost = json!({"metadata": {"name": "ghost", "uid": "0000-gone"}});
    create(&sim, cm("late", Some((&ghost, false))));
    let committed = sim.state().store.current_rv();
    assert!(committed > 18_000, "{committed} changes");
    eventually("every dependent collected", || {
        sim.state()
            .store
            .keys("/configmaps", Some("default"))
            .is_empty()
    })
    .await;
    assert_eq!(sim.state().gc_full_passes.load(Ordering::Relaxed), 1);
    sim.shutdown().await;
}

/// A dependent that blocks its owner's foreground deletion and then drops its owner reference
/// releases the owner (the real collector re-examines the owner when its dependents change).
#[tokio::test]
async fn foreground_owner_goes_when_its_blocking_dependent_drops_the_reference() {
    let sim = start().await;
    let owner = create(&sim, cm("owner", None));
    let mut child = cm("child", Some((&owner, true)));
    child["metadata"]["finalizers"] = json!(["example.com/hold"]);
    create(&sim, child);
    delete(&sim, "owner", "Foreground");
    eventually("child marked for deletion", || {
        get(&sim, "child").is_some_and(|c| c["metadata"]["deletionTimestamp"].is_string())
    })
    .await;
    assert!(get(&sim, "owner").is_some(), "owner waits for its child");
    let st = sim.state();
    let ri = st
        .registry_read()
        .get("", "configmaps")
        .expect("configmaps");
    let mut cur = (*get(&sim, "child").expect("child")).clone();
    cur["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("ownerReferences");
    st.update_obj(
        &ri,
        "v1",
        Some("default"),
        "child",
        cur,
        None,
        &WriteOpts::system("test"),
    )
    .expect("drop the owner reference");
    eventually("owner deleted", || get(&sim, "owner").is_none()).await;
    assert!(
        get(&sim, "child").is_some(),
        "the child keeps its finalizer"
    );
    sim.shutdown().await;
}

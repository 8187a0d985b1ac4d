//! Unit tests of the object store.

use super::*;
use serde_json::json;

fn t(name: &str) -> Arc<str> {
    Arc::from(name)
}

fn cm(ns: &str, name: &str, v: &str) -> Value {
    json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":name,"namespace":ns},"data":{"v":v}})
}

#[test]
fn create_get_update_delete_bump_rv_and_emit_events() {
    let s = Store::new(100);
    let tb = t("/configmaps");
    let mut rx = s.subscribe_all();
    let a = s.create(&tb, "default", cm("default", "a", "1")).unwrap();
    let rv1 = rv_of(&a);
    assert!(rv1 > 1);
    assert_eq!(
        s.create(&tb, "default", cm("default", "a", "1"))
            .unwrap_err(),
        StoreError::AlreadyExists
    );
    let (_, b) = s
        .update(&tb, "default", "a", cm("default", "a", "2"), Some(rv1))
        .unwrap();
    assert!(rv_of(&b) > rv1);
    assert_eq!(
        s.update(&tb, "default", "a", cm("default", "a", "3"), Some(rv1))
            .unwrap_err(),
        StoreError::Conflict
    );
    assert_eq!(s.get(&tb, "default", "a").unwrap()["data"]["v"], "2");
    let gone = s
        .delete(&tb, "default", "a", &Preconditions::default())
        .unwrap();
    assert!(rv_of(&gone) > rv_of(&b));
    assert!(s.get(&tb, "default", "a").is_none());
    let kinds: Vec<_> = (0..3).map(|_| rx.try_recv().unwrap().etype).collect();
    assert_eq!(
        kinds,
        vec![EventType::Added, EventType::Modified, EventType::Deleted]
    );
}

#[test]
fn generate_name_appends_suffix() {
    let s = Store::new(10);
    let obj = json!({"metadata":{"generateName":"web-"}});
    let o = s.create(&t("/pods"), "default", obj).unwrap();
    let name = obj_name(&o);
    assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    assert_eq!(
        s.create(&t("/pods"), "default", json!({"metadata":{}}))
            .unwrap_err(),
        StoreError::NameRequired
    );
}

#[test]
fn pagination_returns_consistent_snapshot() {
    let s = Store::new(1000);
    let tb = t("/configmaps");
    for i in 0..10 {
        s.create(&tb, "ns", cm("ns", &format!("c{i}"), "x"))
            .unwrap();
    }
    let opts = ListOptions {
        limit: Some(4),
        ..Default::default()
    };
    let p1 = s.list(&tb, Some("ns"), &opts, &|_| true).unwrap();
    assert_eq!(p1.items.len(), 4);
    assert_eq!(p1.remaining, 6);
    let after = p1.continue_after.clone().unwrap();
    // Changes after the first page must not show up in later pages.
    s.delete(&tb, "ns", "c5", &Preconditions::default())
        .unwrap();
    s.create(&tb, "ns", cm("ns", "c99", "x")).unwrap();
    s.update(&tb, "ns", "c6", cm("ns", "c6", "changed"), None)
        .unwrap();
    let opts2 = ListOptions {
        limit: Some(100),
        start_after: Some(after),
        snapshot: Some(p1.rv),
    };
    let p2 = s.list(&tb, Some("ns"), &opts2, &|_| true).unwrap();
    let names: Vec<_> = p2.items.iter().map(|o| obj_name(o).to_string()).collect();
    assert_eq!(names, vec!["c4", "c5", "c6", "c7", "c8", "c9"]);
    assert_eq!(p2.items[2]["data"]["v"], "x");
    assert!(p2.continue_after.is_none());
    // A fresh list sees the changes.
    let now = s
        .list(&tb, None, &ListOptions::default(), &|_| true)
        .unwrap();
    assert_eq!(now.items.len(), 10);
}

#[test]
fn snapshot_and_watch_fail_once_out_of_window() {
    let s = Store::new(3);
    let tb = t("/configmaps");
    let first = s.create(&tb, "ns", cm("ns", "a", "1")).unwrap();
    for i in 0..5 {
        s.update(&tb, "ns", "a", cm("ns", "a", &i.to_string()), None)
            .unwrap();
    }
    let old = rv_of(&first);
    assert!(matches!(
        s.watch_from(&tb, Some(old)),
        Err(StoreError::Expired { .. })
    ));
    let opts = ListOptions {
        snapshot: Some(old),
        ..Default::default()
    };
    assert!(matches!(
        s.list(&tb, None, &opts, &|_| true),
        Err(StoreError::Expired { .. })
    ));
    let cur = s.current_rv();
    let sub = s.watch_from(&tb, Some(cur - 2)).unwrap();
    assert_eq!(sub.backlog.len(), 2);
}

#[test]
fn watch_backlog_is_filtered_by_table_and_starts_after_rv() {
    let s = Store::new(100);
    let a = t("/configmaps");
    let b = t("/secrets");
    let x = s.create(&a, "ns", cm("ns", "x", "1")).unwrap();
    s.create(&b, "ns", cm("ns", "y", "1")).unwrap();
    s.create(&a, "ns", cm("ns", "z", "1")).unwrap();
    let sub = s.watch_from(&a, Some(rv_of(&x))).unwrap();
    assert_eq!(sub.backlog.len(), 1);
    assert_eq!(obj_name(&sub.backlog[0].object), "z");
    let line = sub.backlog[0].wire();
    let parsed: Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(parsed["type"], "ADDED");
    assert_eq!(parsed["object"]["metadata"]["name"], "z");
}

#[test]
fn owner_index_tracks_dependents() {
    let s = Store::new(100);
    let tb = t("/configmaps");
    let mut owner = cm("ns", "owner", "1");
    owner["metadata"]["uid"] = json!("u-1");
    s.create(&tb, "ns", owner).unwrap();
    let mut dep = cm("ns", "dep", "1");
    dep["metadata"]["ownerReferences"] =
        json!([{"uid":"u-1","name":"owner","kind":"ConfigMap","apiVersion":"v1"}]);
    s.create(&tb, "ns", dep).unwrap();
    assert!(s.uid_exists("u-1"));
    assert_eq!(s.dependents_of("u-1").len(), 1);
    s.delete(&tb, "ns", "dep", &Preconditions::default())
        .unwrap();
    assert!(s.dependents_of("u-1").is_empty());
}

#[test]
fn delete_preconditions_are_checked() {
    let s = Store::new(10);
    let tb = t("/configmaps");
    let mut o = cm("ns", "a", "1");
    o["metadata"]["uid"] = json!("u-a");
    s.create(&tb, "ns", o).unwrap();
    let pre = Preconditions {
        uid: Some("other".into()),
        resource_version: None,
    };
    assert!(matches!(
        s.delete(&tb, "ns", "a", &pre),
        Err(StoreError::Precondition(_))
    ));
    let pre = Preconditions {
        uid: Some("u-a".into()),
        resource_version: None,
    };
    assert!(s.delete(&tb, "ns", "a", &pre).is_ok());
}

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
    // With a filter, only matching items count (c1, c3 on the page; c5, c7, c9 after it);
    // `unfiltered` counts what is left without reading it.
    let odd = |o: &Value| obj_name(o).ends_with(['1', '3', '5', '7', '9']);
    let limited = ListOptions {
        limit: Some(2),
        ..Default::default()
    };
    let p = s.list(&tb, Some("ns"), &limited, &odd).unwrap();
    assert_eq!((p.items.len(), p.remaining), (2, 3));
    assert_eq!(p.continue_after.as_deref(), Some("ns/c3"));
    let all = ListOptions {
        unfiltered: true,
        ..opts.clone()
    };
    let p = s.list(&tb, Some("ns"), &all, &|_| true).unwrap();
    assert_eq!((p.items.len(), p.remaining), (4, 6));
    assert_eq!(p.continue_after.as_deref(), Some("ns/c3"));
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
        ..Default::default()
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
    assert_eq!(obj_name(&sub.backlog[0].object()), "z");
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

/// The stored version of an object, for tests of the compact form.
fn version(s: &Store, table: &str, ns: &str, name: &str) -> Arc<Version> {
    s.read().tables[table].objects[&object_key(ns, name)]
        .version
        .clone()
}

fn is_cold(s: &Store, table: &str, ns: &str, name: &str) -> bool {
    version(s, table, ns, name).is_cold()
}

/// An object whose JSON form is easy to get wrong: key order that is not sorted, integers and
/// floats of every kind, escapes and non-ASCII text.
fn awkward(name: &str) -> Value {
    json!({"kind": "ConfigMap", "apiVersion": "v1",
        "metadata": {"namespace": "ns", "name": name, "labels": {"z": "1", "a": "2"}},
        "data": {"zeta": "tab\there \"quoted\" \\ back", "alpha": "héllo ✓ \u{1F600}", "ctl": "\u{0001}"},
        "numbers": [0, -1, 10.0, -0.0, 0.1, 1e300, 2.5e-300, u64::MAX, i64::MIN, 12345678901234567_i64],
        "nested": {"empty": {}, "list": [], "null": null, "t": true, "f": false}})
}

#[test]
fn objects_leaving_the_history_window_are_kept_compact_and_read_back_unchanged() {
    let s = Store::new(2);
    let tb = t("/configmaps");
    let a = s.create(&tb, "ns", awkward("a")).unwrap();
    assert!(
        !is_cold(&s, &tb, "ns", "a"),
        "a's event is still in the window"
    );
    s.create(&tb, "ns", cm("ns", "b", "1")).unwrap();
    s.create(&tb, "ns", cm("ns", "c", "1")).unwrap();
    assert!(is_cold(&s, &tb, "ns", "a"), "a's event left the window");
    assert!(!is_cold(&s, &tb, "ns", "c"));
    let back = s.get(&tb, "ns", "a").unwrap();
    assert_eq!(*back, *a);
    // Same key order and number forms: the serialization is byte for byte the same.
    assert_eq!(
        serde_json::to_string(&*back).unwrap(),
        serde_json::to_string(&*a).unwrap()
    );
    let listed = s
        .list(&tb, Some("ns"), &ListOptions::default(), &|_| true)
        .unwrap();
    assert_eq!(*listed.items[0], *a);
    let (items, _) = s.list_and_subscribe(&tb, None);
    assert_eq!(*items[0], *a);
}

#[test]
fn cold_bytes_reuse_the_wire_line_a_watcher_serialized() {
    let s = Store::new(1);
    let tb = t("/configmaps");
    let mut rx = s.subscribe_all();
    let a = s.create(&tb, "ns", awkward("a")).unwrap();
    let line = rx.try_recv().unwrap().wire();
    s.create(&tb, "ns", cm("ns", "b", "1")).unwrap();
    let bytes = version(&s, &tb, "ns", "a").cold_json().expect("a is cold");
    assert_eq!(&*bytes, serde_json::to_vec(&*a).unwrap().as_slice());
    // The same allocation as the line: a slice of it.
    let range = line.as_ptr() as usize..line.as_ptr() as usize + line.len();
    assert!(range.contains(&(bytes.as_ptr() as usize)));
    assert_eq!(*s.get(&tb, "ns", "a").unwrap(), *a);
}

#[test]
fn cold_objects_update_delete_and_index_like_hot_ones() {
    let s = Store::new(1);
    let tb = t("/configmaps");
    let mut owner = cm("ns", "owner", "1");
    owner["metadata"]["uid"] = json!("u-owner");
    s.create(&tb, "ns", owner).unwrap();
    let mut dep = cm("ns", "dep", "1");
    dep["metadata"]["uid"] = json!("u-dep");
    dep["metadata"]["ownerReferences"] =
        json!([{"uid":"u-owner","name":"owner","kind":"ConfigMap","apiVersion":"v1"}]);
    let dep = s.create(&tb, "ns", dep).unwrap();
    s.create(&tb, "ns", cm("ns", "other", "1")).unwrap();
    assert!(is_cold(&s, &tb, "ns", "owner") && is_cold(&s, &tb, "ns", "dep"));
    let deps = s.dependents_of("u-owner");
    assert_eq!(deps.len(), 1);
    assert_eq!(*deps[0].1, *dep);
    let (_, _, by_uid) = s.get_by_uid("u-dep").unwrap();
    assert_eq!(*by_uid, *dep);
    // A stale resourceVersion conflicts; the right one updates and the event's prev is the old object.
    let rv = rv_of(&dep);
    let mut rx = s.subscribe_all();
    assert_eq!(
        s.update(&tb, "ns", "dep", cm("ns", "dep", "2"), Some(rv - 1))
            .unwrap_err(),
        StoreError::Conflict
    );
    let (old, new) = s
        .update(&tb, "ns", "dep", cm("ns", "dep", "2"), Some(rv))
        .unwrap();
    assert_eq!(*old, *dep);
    assert_eq!(new["data"]["v"], "2");
    let ev = rx.try_recv().unwrap();
    assert_eq!(*ev.prev().unwrap(), *dep);
    // The update dropped the owner reference: the index follows.
    assert!(s.dependents_of("u-owner").is_empty());
    // Delete preconditions read the cold object.
    s.create(&tb, "ns", cm("ns", "x", "1")).unwrap();
    assert!(is_cold(&s, &tb, "ns", "owner"));
    let pre = Preconditions {
        uid: Some("wrong".into()),
        resource_version: None,
    };
    assert!(matches!(
        s.delete(&tb, "ns", "owner", &pre),
        Err(StoreError::Precondition(_))
    ));
    let pre = Preconditions {
        uid: Some("u-owner".into()),
        resource_version: None,
    };
    let gone = s.delete(&tb, "ns", "owner", &pre).unwrap();
    assert_eq!(gone["data"]["v"], "1");
    assert!(!s.uid_exists("u-owner"));
}

#[test]
fn snapshot_lists_see_cold_objects_as_they_were() {
    let s = Store::new(4);
    let tb = t("/configmaps");
    for i in 0..6 {
        s.create(&tb, "ns", cm("ns", &format!("c{i}"), "old"))
            .unwrap();
    }
    assert!(is_cold(&s, &tb, "ns", "c0"));
    let at = s.current_rv();
    s.update(&tb, "ns", "c0", cm("ns", "c0", "new"), None)
        .unwrap();
    let opts = ListOptions {
        snapshot: Some(at),
        ..Default::default()
    };
    let page = s.list(&tb, None, &opts, &|_| true).unwrap();
    assert_eq!(page.items.len(), 6);
    assert_eq!(page.items[0]["data"]["v"], "old");
    assert_eq!(s.get(&tb, "ns", "c0").unwrap()["data"]["v"], "new");
}

#[test]
fn only_the_newest_writes_stay_decoded_and_old_events_replay_unchanged() {
    let s = Store::new(10_000);
    let tb = t("/configmaps");
    let first = s.create(&tb, "ns", awkward("first")).unwrap();
    let n = compact::HOT_EVENTS + compact::BATCH;
    for i in 0..n {
        s.create(&tb, "ns", cm("ns", &format!("c{i:05}"), "x"))
            .unwrap();
    }
    // Cooling happens on the background thread.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !is_cold(&s, &tb, "ns", "c00000") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(is_cold(&s, &tb, "ns", "first"));
    assert!(is_cold(&s, &tb, "ns", "c00000"));
    // The newest HOT_EVENTS writes stay decoded.
    assert!(!is_cold(&s, &tb, "ns", &format!("c{:05}", compact::BATCH)));
    assert!(!is_cold(&s, &tb, "ns", &format!("c{:05}", n - 1)));
    // A watch resuming before `first` replays it from the compact form, wire line included.
    let sub = s.watch_from(&tb, Some(rv_of(&first) - 1)).unwrap();
    assert_eq!(sub.backlog.len(), n + 1);
    assert_eq!(*sub.backlog[0].object(), *first);
    let line: Value = serde_json::from_slice(&sub.backlog[0].wire()).unwrap();
    assert_eq!(line["type"], "ADDED");
    assert_eq!(line["object"], *first);
    // An update of a cold object: its event's prev is the cold object, decoded.
    s.update(&tb, "ns", "first", cm("ns", "first", "y"), None)
        .unwrap();
    let sub = s.watch_from(&tb, Some(s.current_rv() - 1)).unwrap();
    assert!(sub.backlog[0].has_prev());
    assert_eq!(*sub.backlog[0].prev().unwrap(), *first);
}

/// Index keys of a test object: its `data.owner` values (comma-separated).
fn owner_keys(ns: &str, obj: &Value) -> Vec<String> {
    obj.pointer("/data/owner")
        .and_then(Value::as_str)
        .map(|s| s.split(',').map(|o| format!("{ns}:{o}")).collect())
        .unwrap_or_default()
}

fn owned(ns: &str, name: &str, owner: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": ns}, "data": {"owner": owner}})
}

fn names(objs: Option<Vec<Arc<Value>>>) -> Vec<String> {
    objs.expect("indexed table")
        .iter()
        .map(|o| obj_name(o).to_string())
        .collect()
}

#[test]
fn secondary_index_follows_creates_updates_and_deletes() {
    let s = Store::new(100);
    let tb = t("/configmaps");
    s.create(&tb, "a", owned("a", "before-index", "x")).unwrap();
    assert!(s.indexed(&tb, &["a:x".into()]).is_none());
    s.add_index(&tb, owner_keys);
    assert_eq!(names(s.indexed(&tb, &["a:x".into()])), ["before-index"]);
    s.create(&tb, "a", owned("a", "m2", "x,y")).unwrap();
    s.create(&tb, "a", owned("a", "m1", "y")).unwrap();
    s.create(&tb, "b", owned("b", "m0", "x")).unwrap();
    // Union of keys, in namespace/name order, each object once.
    assert_eq!(
        names(s.indexed(&tb, &["a:y".into(), "a:x".into()])),
        ["before-index", "m1", "m2"]
    );
    assert_eq!(names(s.indexed(&tb, &["b:x".into()])), ["m0"]);
    s.update(&tb, "a", "m2", owned("a", "m2", "z"), None)
        .unwrap();
    assert_eq!(names(s.indexed(&tb, &["a:x".into()])), ["before-index"]);
    assert_eq!(names(s.indexed(&tb, &["a:z".into()])), ["m2"]);
    s.delete(&tb, "a", "m1", &Preconditions::default()).unwrap();
    assert!(names(s.indexed(&tb, &["a:y".into()])).is_empty());
    // Objects of other tables are not indexed.
    s.create(&t("/secrets"), "a", owned("a", "s", "z")).unwrap();
    assert_eq!(names(s.indexed(&tb, &["a:z".into()])), ["m2"]);
}

#[test]
fn a_quiet_table_resumes_after_a_burst_in_another_table() {
    let s = Store::new(1_000);
    let quiet = t("/secrets");
    let busy = t("/configmaps");
    let q = s.create(&quiet, "ns", cm("ns", "q", "0")).unwrap();
    let rv = rv_of(&q);
    s.create(&busy, "ns", cm("ns", "b", "0")).unwrap();
    for i in 0..20_000 {
        s.update(&busy, "ns", "b", cm("ns", "b", &i.to_string()), None)
            .unwrap();
    }
    assert_eq!(s.history_len(), 1_000);
    // Every secret written after rv is still held: the resume is exact.
    let sub = s.watch_from(&quiet, Some(rv)).unwrap();
    assert!(sub.backlog.is_empty());
    s.update(&quiet, "ns", "q", cm("ns", "q", "1"), None)
        .unwrap();
    let list = s
        .list(
            &quiet,
            None,
            &ListOptions {
                snapshot: Some(rv),
                ..ListOptions::default()
            },
            &|_| true,
        )
        .unwrap();
    assert_eq!(list.items[0]["data"]["v"], "0");
    // The busy table's events from rv have left the window.
    assert!(matches!(
        s.watch_from(&busy, Some(rv)),
        Err(StoreError::Expired { .. })
    ));
    // And one evicted secret event expires the secrets' older resumes too.
    for i in 0..1_000 {
        s.update(&busy, "ns", "b", cm("ns", "b", &format!("x{i}")), None)
            .unwrap();
    }
    assert!(matches!(
        s.watch_from(&quiet, Some(rv)),
        Err(StoreError::Expired { .. })
    ));
}

#[test]
fn young_events_stay_in_the_window_beyond_the_minimum() {
    let limits = HistoryLimits {
        min_events: 1_000,
        max_age: Duration::from_secs(600),
        max_events: 30_000,
    };
    let s = Store::with_history(limits);
    let tb = t("/configmaps");
    let a = s.create(&tb, "ns", cm("ns", "a", "start")).unwrap();
    let rv = rv_of(&a);
    for i in 0..20_000 {
        s.update(&tb, "ns", "a", cm("ns", "a", &i.to_string()), None)
            .unwrap();
    }
    // A watch resumed from before a 20,000-event burst gets every event of it, in order.
    let sub = s.watch_from(&tb, Some(rv)).unwrap();
    assert_eq!(sub.backlog.len(), 20_000);
    assert!(sub.backlog.windows(2).all(|w| w[0].rv + 1 == w[1].rv));
    assert_eq!(sub.backlog[19_999].object()["data"]["v"], "19999");
    // max_events bounds the window whatever the age.
    for i in 0..20_000 {
        s.update(&tb, "ns", "a", cm("ns", "a", &i.to_string()), None)
            .unwrap();
    }
    assert_eq!(s.history_len(), 30_000);
    assert!(matches!(
        s.watch_from(&tb, Some(rv)),
        Err(StoreError::Expired { .. })
    ));
    // Old events leave down to min_events.
    let aged = Store::with_history(HistoryLimits {
        max_age: Duration::ZERO,
        ..limits
    });
    for i in 0..5_000 {
        aged.create(&tb, "ns", cm("ns", &format!("c{i}"), ""))
            .unwrap();
    }
    assert_eq!(aged.history_len(), 1_000);
}

#[test]
fn writers_are_not_held_up_while_a_list_decodes() {
    let s = Arc::new(Store::new(100));
    let tb = t("/configmaps");
    for i in 0..3 {
        s.create(&tb, "ns", cm("ns", &format!("c{i}"), "x"))
            .unwrap();
    }
    // While the list looks at its first object, another thread writes.
    let wrote = std::cell::Cell::new(None);
    let filter = |_: &Value| {
        if wrote.get().is_none() {
            let (done, finished) = std::sync::mpsc::channel();
            let (s, tb) = (s.clone(), tb.clone());
            std::thread::spawn(move || {
                let _ = s.create(&tb, "ns", cm("ns", "during", "x"));
                let _ = done.send(());
            });
            let in_time = finished.recv_timeout(std::time::Duration::from_secs(5));
            wrote.set(Some(in_time.is_ok()));
        }
        true
    };
    let page = s.list(&tb, None, &ListOptions::default(), &filter).unwrap();
    assert_eq!(wrote.get(), Some(true), "the write waited for the list");
    // The list is the snapshot taken before the write.
    assert_eq!(page.items.len(), 3);
    assert!(s.get(&tb, "ns", "during").is_some());
}

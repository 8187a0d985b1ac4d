//! The ownership feed and the deletion marks the garbage collector reads without decoding.

use super::*;
use serde_json::json;

fn obj(name: &str, uid: &str, owners: &[&str]) -> Value {
    let refs: Vec<Value> = owners
        .iter()
        .map(|o| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": o}))
        .collect();
    let mut v = json!({"metadata": {"name": name, "namespace": "ns", "uid": uid}});
    if !refs.is_empty() {
        v["metadata"]["ownerReferences"] = Value::Array(refs);
    }
    v
}

/// (type, uid, owners, owners before, deleting) of one queued change.
type Seen = (EventType, String, Vec<String>, Vec<String>, bool);

fn drain(rx: &mut mpsc::UnboundedReceiver<OwnershipChange>) -> Vec<OwnershipChange> {
    let mut out = Vec::new();
    while let Ok(c) = rx.try_recv() {
        out.push(c);
    }
    out
}

#[test]
fn the_feed_carries_what_ownership_needs_and_nothing_else() {
    let s = Store::new(100);
    let tb: Arc<str> = Arc::from("/configmaps");
    let mut rx = s.ownership_feed();
    s.create(&tb, "ns", obj("owner", "u-owner", &[])).unwrap();
    s.create(&tb, "ns", obj("child", "u-child", &["u-owner"]))
        .unwrap();
    // A write of an object without owners that is not being deleted: not queued.
    s.update(&tb, "ns", "owner", obj("owner", "u-owner", &[]), None)
        .unwrap();
    // The child drops its owner: queued, with the owners it had.
    s.update(&tb, "ns", "child", obj("child", "u-child", &[]), None)
        .unwrap();
    let mut marked = obj("owner", "u-owner", &[]);
    marked["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    marked["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
    s.update(&tb, "ns", "owner", marked, None).unwrap();
    s.delete(&tb, "ns", "child", &Preconditions::default())
        .unwrap();
    let got: Vec<Seen> = drain(&mut rx)
        .into_iter()
        .map(|c| (c.event.etype, c.uid, c.owners, c.owners_before, c.deleting))
        .collect();
    let owner = vec!["u-owner".to_string()];
    assert_eq!(
        got,
        vec![
            (
                EventType::Added,
                "u-child".into(),
                owner.clone(),
                vec![],
                false
            ),
            (EventType::Modified, "u-child".into(), vec![], owner, false),
            (EventType::Modified, "u-owner".into(), vec![], vec![], true),
            (EventType::Deleted, "u-child".into(), vec![], vec![], false),
        ]
    );
}

#[test]
fn the_feed_loses_nothing_however_far_behind_its_reader_is() {
    let s = Store::new(10);
    let tb: Arc<str> = Arc::from("/configmaps");
    let mut rx = s.ownership_feed();
    // Far more changes than the fan-out channel (16,384) and the history window hold.
    let n = 20_000;
    for i in 0..n {
        s.create(
            &tb,
            "ns",
            obj(&format!("c{i}"), &format!("u{i}"), &["u-owner"]),
        )
        .unwrap();
    }
    let got = drain(&mut rx);
    assert_eq!(got.len(), n);
    assert!(got.windows(2).all(|w| w[0].event.rv < w[1].event.rv));
}

#[test]
fn deletion_marks_follow_writes_and_answer_without_decoding() {
    let s = Store::new(100);
    let tb: Arc<str> = Arc::from("/configmaps");
    s.create(&tb, "ns", obj("a", "u-a", &[])).unwrap();
    s.create(&tb, "ns", obj("b", "u-b", &["u-gone"])).unwrap();
    s.create(&tb, "other", obj("c", "u-c", &["u-a"])).unwrap();
    assert_eq!(s.deletion(&tb, "ns", "a"), None);
    let mut marked = obj("a", "u-a", &[]);
    marked["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    marked["metadata"]["finalizers"] = json!(["orphan", "example.com/x"]);
    s.update(&tb, "ns", "a", marked, None).unwrap();
    let fins: Vec<String> = vec!["orphan".into(), "example.com/x".into()];
    assert_eq!(s.deletion(&tb, "ns", "a").as_deref(), Some(&fins[..]));
    let (t, key, by_uid) = s.deletion_by_uid("u-a").unwrap();
    assert_eq!(
        (&*t, key.as_str(), &*by_uid),
        ("/configmaps", "ns/a", &fins[..])
    );
    assert_eq!(
        s.marked_for_deletion(),
        vec![(tb.clone(), "ns/a".to_string())]
    );
    assert_eq!(
        s.keys(&tb, Some("ns")),
        vec![("ns/a".to_string(), true), ("ns/b".to_string(), false)]
    );
    assert_eq!(s.keys(&tb, None).len(), 3);
    assert_eq!(
        s.dependents_of_missing_owners(),
        vec![(tb.clone(), "ns/b".to_string())]
    );
    assert_eq!(
        s.dependent_keys("u-a"),
        vec![(tb.clone(), "other/c".to_string())]
    );
    // Unmarking (an update without deletionTimestamp) clears the mark.
    s.update(&tb, "ns", "a", obj("a", "u-a", &[]), None)
        .unwrap();
    assert_eq!(s.deletion(&tb, "ns", "a"), None);
    assert!(s.deletion_by_uid("u-a").is_none());
}

//! The ReplicaSet controller: creates and deletes owned pods to match `spec.replicas`, and keeps
//! `status` (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas,
//! observedGeneration) current.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::events;
use super::util::{
    add_secs, at, controller_uid, generation, i64_at, is_terminating, labels, name, name_suffix,
    namespace, owner_ref, pod_active, pod_ready, pod_ready_since, set, str_at, uid,
};
use super::{Ctx, K, ResourceRef};
use crate::selector::LabelSelector;

const COMPONENT: &str = "replicaset-controller";

#[allow(clippy::too_many_arguments)]
/// Creates a pod from a template owned by `owner`, with a generated `<prefix><suffix>` name.
pub(crate) fn create_pod_from_template(
    ctx: &Ctx<'_>,
    owner: &Value,
    owner_api_version: &str,
    owner_kind: &str,
    prefix: &str,
    template: &Value,
    extra_labels: &Map<String, Value>,
    existing: &mut HashSet<String>,
) -> Result<Arc<Value>, String> {
    let ns = namespace(owner);
    let mut meta = template
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if !meta.is_object() {
        meta = json!({});
    }
    let mut n = 0u64;
    let stamp = ctx.now.timestamp_nanos_opt().unwrap_or(0);
    let pod_name = loop {
        let seq = ctx.next_seq();
        let candidate = format!(
            "{prefix}{}",
            name_suffix(&format!("{}/{stamp}/{seq}", uid(owner)))
        );
        n += 1;
        if !existing.contains(&candidate) || n > 50 {
            break candidate;
        }
    };
    existing.insert(pod_name.clone());
    set(&mut meta, &["name"], json!(pod_name));
    set(&mut meta, &["generateName"], json!(prefix));
    set(&mut meta, &["namespace"], json!(ns));
    // Template labels win: a Job's template carries the controller-uid its selector expects.
    for (k, v) in extra_labels {
        if meta["labels"].get(k).is_none() {
            set(&mut meta, &["labels", k], v.clone());
        }
    }
    set(
        &mut meta,
        &["ownerReferences"],
        json!([owner_ref(owner, owner_api_version, owner_kind)]),
    );
    if let Some(m) = meta.as_object_mut() {
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "selfLink",
        ] {
            m.remove(k);
        }
    }
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    });
    ctx.create(&ResourceRef::pods(), pod)
}

/// Pods grouped by (namespace, controlling owner uid), built once per pass.
pub(crate) struct OwnedIndex<'a> {
    by_owner: HashMap<(&'a str, &'a str), Vec<&'a Value>>,
    /// Active pods without a controller (candidates for adoption).
    orphans: Vec<&'a Value>,
}

impl<'a> OwnedIndex<'a> {
    pub fn new(pods: &'a [Arc<Value>]) -> Self {
        let mut by_owner: HashMap<(&str, &str), Vec<&Value>> = HashMap::new();
        let mut orphans = Vec::new();
        for p in pods.iter().map(|p| &**p) {
            match controller_uid(p) {
                Some(u) => by_owner.entry((namespace(p), u)).or_default().push(p),
                None if pod_active(p) => orphans.push(p),
                None => {}
            }
        }
        OwnedIndex { by_owner, orphans }
    }

    /// Pods controlled by `owner`.
    pub fn of(&self, owner: &Value) -> Vec<&'a Value> {
        self.by_owner
            .get(&(namespace(owner), uid(owner)))
            .cloned()
            .unwrap_or_default()
    }
}

/// Deletion preference, lowest first: unscheduled, pending, not ready, then the newest ready.
fn deletion_rank(p: &Value) -> (u8, std::cmp::Reverse<String>) {
    let unscheduled = str_at(p, &["spec", "nodeName"]).unwrap_or("").is_empty();
    let rank = if unscheduled {
        0
    } else if str_at(p, &["status", "phase"]) == Some("Pending") {
        1
    } else if !pod_ready(p) {
        2
    } else {
        3
    };
    let created = str_at(p, &["metadata", "creationTimestamp"])
        .unwrap_or("")
        .to_string();
    (rank, std::cmp::Reverse(created + name(p)))
}

/// Syncs the ReplicaSets that changed, whose pods changed (or an orphan they may adopt), or
/// whose timer is due.
pub(crate) fn sync_all(ctx: &Ctx<'_>) {
    let sets = ctx.cached(K::ReplicaSet, &ctx.work_of(K::ReplicaSet));
    if sets.is_empty() {
        return;
    }
    let pods: Vec<Arc<Value>> = ctx.with_cache(|c, _| {
        sets.iter()
            .flat_map(|rs| c.pods_owned_by(uid(rs)))
            .chain(c.orphan_pods())
            .cloned()
            .collect()
    });
    let mut names: HashSet<String> = pods.iter().map(|p| name(p).to_string()).collect();
    let index = OwnedIndex::new(&pods);
    for rs in &sets {
        if is_terminating(rs) {
            continue;
        }
        ctx.focus(K::ReplicaSet, rs);
        sync_one(ctx, rs, &index, &mut names);
    }
}

fn sync_one(ctx: &Ctx<'_>, rs: &Value, index: &OwnedIndex<'_>, names: &mut HashSet<String>) {
    let want = i64_at(rs, &["spec", "replicas"]).unwrap_or(1).max(0) as usize;
    let mut active: Vec<Value> = index
        .of(rs)
        .into_iter()
        .filter(|p| pod_active(p))
        .cloned()
        .collect();
    active.extend(adopt_orphans(ctx, rs, &index.orphans));
    let template = at(rs, &["spec", "template"])
        .cloned()
        .unwrap_or_else(|| json!({}));
    if active.len() < want {
        let prefix = format!("{}-", name(rs));
        let rs_obj = with_kind(rs);
        for _ in active.len()..want {
            match create_pod_from_template(
                ctx,
                rs,
                "apps/v1",
                "ReplicaSet",
                &prefix,
                &template,
                &Map::new(),
                names,
            ) {
                Ok(p) => {
                    events::record(
                        ctx,
                        &rs_obj,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created pod: {}", name(&p)),
                        COMPONENT,
                    );
                    active.push(Arc::unwrap_or_clone(p));
                }
                Err(e) => {
                    events::record(
                        ctx,
                        &rs_obj,
                        "Warning",
                        "FailedCreate",
                        &format!("Error creating: {e}"),
                        COMPONENT,
                    );
                    break;
                }
            }
        }
    } else if active.len() > want {
        active.sort_by_key(deletion_rank);
        let excess: Vec<Value> = active.drain(..active.len() - want).collect();
        for p in excess {
            if ctx
                .delete(&ResourceRef::pods(), Some(namespace(&p)), name(&p))
                .is_ok()
            {
                events::record(
                    ctx,
                    &with_kind(rs),
                    "Normal",
                    "SuccessfulDelete",
                    &format!("Deleted pod: {}", name(&p)),
                    COMPONENT,
                );
            } else {
                active.push(p);
            }
        }
    }
    let min_ready = i64_at(rs, &["spec", "minReadySeconds"]).unwrap_or(0).max(0) as f64;
    let tmpl_labels = at(&template, &["metadata", "labels"])
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut ready = 0;
    let mut available = 0;
    let mut fully_labeled = 0;
    for p in &active {
        let l = labels(p);
        if tmpl_labels.iter().all(|(k, v)| l.get(k) == Some(v)) {
            fully_labeled += 1;
        }
        if pod_ready(p) {
            ready += 1;
            match pod_ready_since(p) {
                Some(since) if add_secs(since, min_ready) > ctx.now => {
                    ctx.wake_at(add_secs(since, min_ready))
                }
                _ => available += 1,
            }
        }
    }
    let mut status = rs
        .get("status")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    set(&mut status, &["replicas"], json!(active.len()));
    set(&mut status, &["fullyLabeledReplicas"], json!(fully_labeled));
    set(&mut status, &["readyReplicas"], json!(ready));
    set(&mut status, &["availableReplicas"], json!(available));
    set(&mut status, &["observedGeneration"], json!(generation(rs)));
    if rs.get("status") != Some(&status) {
        let _ = ctx.write_status(&ResourceRef::replicasets(), rs, status);
    }
}

/// Adopts active pods with no controller that match the ReplicaSet's selector, as the real
/// controller does; returns the adopted pods.
fn adopt_orphans(ctx: &Ctx<'_>, rs: &Value, orphans: &[&Value]) -> Vec<Value> {
    let Some(sel) = at(rs, &["spec", "selector"]) else {
        return Vec::new();
    };
    let Ok(sel) = LabelSelector::from_object(sel) else {
        return Vec::new();
    };
    if sel.is_empty() {
        return Vec::new();
    }
    let mut adopted = Vec::new();
    for p in orphans {
        if namespace(p) != namespace(rs)
            || !pod_active(p)
            || controller_uid(p).is_some()
            || !sel.matches(&labels(p))
        {
            continue;
        }
        let mut pod = (*p).clone();
        let refs = pod["metadata"]
            .as_object_mut()
            .map(|m| m.entry("ownerReferences").or_insert_with(|| json!([])));
        if let Some(Value::Array(refs)) = refs {
            refs.push(owner_ref(rs, "apps/v1", "ReplicaSet"));
        } else {
            continue;
        }
        if let Ok(updated) = ctx.update(&ResourceRef::pods(), pod) {
            adopted.push(Arc::unwrap_or_clone(updated));
        }
    }
    adopted
}

fn with_kind(rs: &Value) -> Value {
    let mut r = rs.clone();
    set(&mut r, &["apiVersion"], json!("apps/v1"));
    set(&mut r, &["kind"], json!("ReplicaSet"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::ClusterApi;
    use crate::dataplane::fake::Harness;

    pub(crate) fn rs(name: &str, replicas: i64) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}}
            }
        })
    }

    fn status(h: &Harness, n: &str) -> Value {
        h.api.must_get(&ResourceRef::replicasets(), "default", n)["status"].clone()
    }

    #[test]
    fn creates_pods_reports_ready_and_scales_down() {
        let mut h = Harness::new("cpu=2");
        h.api
            .create(&ResourceRef::replicasets(), rs("web", 3))
            .unwrap();
        h.tick();
        let pods = h.pods("default");
        assert_eq!(pods.len(), 3);
        let owner = h
            .api
            .must_get(&ResourceRef::replicasets(), "default", "web");
        for p in &pods {
            assert!(name(p).starts_with("web-"));
            assert_eq!(p["metadata"]["labels"]["app"], "web");
            assert_eq!(controller_uid(p), Some(uid(&owner)));
            assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
        }
        h.run(0.5);
        let s = status(&h, "web");
        assert_eq!(s["replicas"], 3);
        assert_eq!(s["readyReplicas"], 3);
        assert_eq!(s["availableReplicas"], 3);
        assert_eq!(s["fullyLabeledReplicas"], 3);
        assert_eq!(s["observedGeneration"], 1);
        assert_eq!(
            h.events()
                .iter()
                .filter(|e| e["reason"] == "SuccessfulCreate")
                .count(),
            3
        );

        let mut r = h
            .api
            .must_get(&ResourceRef::replicasets(), "default", "web");
        r["spec"]["replicas"] = json!(1);
        h.api.update(&ResourceRef::replicasets(), r).unwrap();
        h.run(0.2);
        assert_eq!(h.pods("default").len(), 1);
        let s = status(&h, "web");
        assert_eq!(s["replicas"], 1);
        assert_eq!(s["observedGeneration"], 2);
        // Settled.
        let w = h.api.writes();
        h.run(1.0);
        assert_eq!(h.api.writes(), w);
    }

    #[test]
    fn replaces_deleted_and_failed_pods_and_survives_conflicts() {
        let mut h = Harness::new("cpu=1");
        h.api
            .create(&ResourceRef::replicasets(), rs("w", 2))
            .unwrap();
        h.run(0.3);
        let victim = name(&h.pods("default")[0]).to_string();
        h.api
            .delete(&ResourceRef::pods(), Some("default"), &victim)
            .unwrap();
        h.api.fail_next_updates(3);
        h.run(0.5);
        let pods = h.pods("default");
        assert_eq!(pods.len(), 2);
        assert!(pods.iter().all(|p| name(p) != victim));
        assert_eq!(status(&h, "w")["readyReplicas"], 2);
    }

    #[test]
    fn adopts_matching_orphan_pods() {
        let mut h = Harness::new("cpu=1");
        h.api
            .create(
                &ResourceRef::pods(),
                json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "orphan", "namespace": "default", "labels": {"app": "o"}},
                    "spec": {"containers": [{"name": "c", "image": "x:1"}]}}),
            )
            .unwrap();
        h.api
            .create(&ResourceRef::replicasets(), rs("o", 2))
            .unwrap();
        h.tick();
        let pods = h.pods("default");
        assert_eq!(pods.len(), 2, "adopts the orphan and creates one more");
        let orphan = h.api.must_get(&ResourceRef::pods(), "default", "orphan");
        assert_eq!(orphan["metadata"]["ownerReferences"][0]["name"], "o");
    }

    #[test]
    fn min_ready_seconds_delays_availability() {
        let mut h = Harness::new("cpu=1");
        let mut r = rs("m", 1);
        r["spec"]["minReadySeconds"] = json!(5);
        h.api.create(&ResourceRef::replicasets(), r).unwrap();
        h.run(1.0);
        assert_eq!(status(&h, "m")["readyReplicas"], 1);
        assert_eq!(status(&h, "m")["availableReplicas"], 0);
        h.run(5.0);
        assert_eq!(status(&h, "m")["availableReplicas"], 1);
    }
}

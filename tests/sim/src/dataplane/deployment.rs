//! The Deployment controller: one ReplicaSet per pod-template hash (`pod-template-hash` label),
//! scaling, RollingUpdate (maxSurge/maxUnavailable) and Recreate rollouts, revision history
//! cleanup, `spec.paused`, and status with the real controller's `Available`/`Progressing`
//! conditions so `kubectl rollout status` and `helm --wait` see a finished rollout.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::events;
use super::util::{
    CondStyle, add_secs, at, canonical_json, condition, conditions_of, fnv32a, generation, i64_at,
    int_or_percent, is_terminating, name, namespace, owner_ref, parse_time, safe_encode, set,
    set_condition, str_at, uid,
};
use super::{Ctx, K, ResourceRef};

const COMPONENT: &str = "deployment-controller";
pub(crate) const HASH_LABEL: &str = "pod-template-hash";
const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// The pod-template hash: FNV-32a of the template (keys sorted, without the hash label),
/// rendered in the safe alphabet like the real controller's.
pub fn template_hash(template: &Value) -> String {
    let mut t = template.clone();
    if let Some(l) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        l.remove(HASH_LABEL);
    }
    safe_encode(&fnv32a(canonical_json(&t).as_bytes()).to_string())
}

fn replicas(v: &Value) -> i64 {
    i64_at(v, &["spec", "replicas"]).unwrap_or(1).max(0)
}

fn st(v: &Value, k: &str) -> i64 {
    i64_at(v, &["status", k]).unwrap_or(0)
}

fn revision(rs: &Value) -> i64 {
    at(rs, &["metadata", "annotations", REVISION])
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Template hashes by (deployment uid, generation), so settled passes skip re-hashing.
pub(crate) type HashCache = HashMap<(String, i64), String>;

/// Syncs the Deployments that changed, whose ReplicaSets changed, or whose timer is due.
pub(crate) fn sync_all(ctx: &Ctx<'_>, hashes: &mut HashCache) {
    let deployments = ctx.cached(K::Deployment, &ctx.work_of(K::Deployment));
    // Forget the hashes of Deployments gone (or of older generations).
    ctx.with_cache(|c, _| {
        hashes.retain(|(u, g), _| {
            c.owner(u)
                .and_then(|(k, key)| c.get(*k, key))
                .is_some_and(|d| generation(d) == *g)
        })
    });
    for d in &deployments {
        if is_terminating(d) {
            continue;
        }
        ctx.focus(K::Deployment, d);
        let key = (uid(d).to_string(), generation(d));
        let hash = hashes
            .entry(key)
            .or_insert_with(|| template_hash(at(d, &["spec", "template"]).unwrap_or(&Value::Null)))
            .clone();
        let owned: Vec<Value> = ctx.with_cache(|c, _| {
            c.sets_owned_by(uid(d))
                .filter(|rs| namespace(rs) == namespace(d))
                .cloned()
                .collect()
        });
        sync_one(ctx, d, owned, &hash);
    }
}

fn with_kind(v: &Value, api_version: &str, kind: &str) -> Value {
    let mut o = v.clone();
    set(&mut o, &["apiVersion"], json!(api_version));
    set(&mut o, &["kind"], json!(kind));
    o
}

/// Sets an RS's replicas (and the deployment annotations), recording a ScalingReplicaSet event.
fn scale(ctx: &Ctx<'_>, d: &Value, rs: &mut Value, to: i64, max_surge: i64) -> bool {
    let from = replicas(rs);
    let want_desired = replicas(d).to_string();
    let want_max = (replicas(d) + max_surge).to_string();
    let ann_ok = str_at(rs, &["metadata", "annotations", DESIRED]) == Some(want_desired.as_str())
        && str_at(rs, &["metadata", "annotations", MAX_REPLICAS]) == Some(want_max.as_str());
    if from == to && ann_ok {
        return false;
    }
    let mut r = rs.clone();
    set(&mut r, &["spec", "replicas"], json!(to));
    set(
        &mut r,
        &["metadata", "annotations", DESIRED],
        json!(want_desired),
    );
    set(
        &mut r,
        &["metadata", "annotations", MAX_REPLICAS],
        json!(want_max),
    );
    match ctx.update(&ResourceRef::replicasets(), r) {
        Ok(updated) => {
            *rs = std::sync::Arc::unwrap_or_clone(updated);
            if from != to {
                let verb = if to > from { "up" } else { "down" };
                events::record(
                    ctx,
                    &with_kind(d, "apps/v1", "Deployment"),
                    "Normal",
                    "ScalingReplicaSet",
                    &format!("Scaled {verb} replica set {} from {from} to {to}", name(rs)),
                    COMPONENT,
                );
            }
            true
        }
        Err(_) => false,
    }
}

fn sync_one(ctx: &Ctx<'_>, d: &Value, mut owned: Vec<Value>, hash: &str) {
    let want = replicas(d);
    let template = at(d, &["spec", "template"])
        .cloned()
        .unwrap_or_else(|| json!({}));
    let hash = hash.to_string();
    let recreate = str_at(d, &["spec", "strategy", "type"]) == Some("Recreate");
    let ru = at(d, &["spec", "strategy", "rollingUpdate"]);
    let (max_surge, max_unavailable) = if recreate {
        (0, 0)
    } else {
        let surge = int_or_percent(ru.and_then(|r| r.get("maxSurge")), want, true, "25%");
        let mut unavail =
            int_or_percent(ru.and_then(|r| r.get("maxUnavailable")), want, false, "25%");
        if surge == 0 && unavail == 0 {
            unavail = 1;
        }
        (surge, unavail)
    };
    let paused = at(d, &["spec", "paused"]).and_then(Value::as_bool) == Some(true);
    owned.sort_by_key(|rs| {
        (
            revision(rs),
            str_at(rs, &["metadata", "creationTimestamp"])
                .unwrap_or("")
                .to_string(),
        )
    });
    let new_idx = owned
        .iter()
        .position(|rs| str_at(rs, &["metadata", "labels", HASH_LABEL]) == Some(hash.as_str()));
    let max_old_revision = owned
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != new_idx)
        .map(|(_, rs)| revision(rs))
        .max()
        .unwrap_or(0);
    let mut created_new: Option<String> = None;
    let mut new_rs: Option<Value> = new_idx.map(|i| owned.remove(i));
    let mut old: Vec<Value> = owned;

    if !paused {
        match new_rs.as_mut() {
            Some(rs) if revision(rs) <= max_old_revision => {
                // Rolling back to an older template: it becomes the newest revision.
                let mut r = rs.clone();
                set(
                    &mut r,
                    &["metadata", "annotations", REVISION],
                    json!((max_old_revision + 1).to_string()),
                );
                if let Ok(u) = ctx.update(&ResourceRef::replicasets(), r) {
                    *rs = std::sync::Arc::unwrap_or_clone(u);
                }
            }
            Some(_) => {}
            None => {
                let total: i64 = old.iter().map(replicas).sum();
                let initial = if recreate {
                    0
                } else if old.iter().all(|rs| replicas(rs) == 0) {
                    want
                } else {
                    (want + max_surge - total).clamp(0, want)
                };
                let rs_name = format!("{}-{hash}", name(d));
                let mut tmpl = template.clone();
                set(&mut tmpl, &["metadata", "labels", HASH_LABEL], json!(hash));
                let mut labels = at(&template, &["metadata", "labels"])
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                set(&mut labels, &[HASH_LABEL], json!(hash));
                let mut selector = at(d, &["spec", "selector"])
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                set(&mut selector, &["matchLabels", HASH_LABEL], json!(hash));
                let mut spec = json!({
                    "replicas": initial,
                    "selector": selector,
                    "template": tmpl,
                });
                if let Some(m) = at(d, &["spec", "minReadySeconds"]) {
                    set(&mut spec, &["minReadySeconds"], m.clone());
                }
                let rs = json!({
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": {
                        "name": rs_name,
                        "namespace": namespace(d),
                        "labels": labels,
                        "annotations": {
                            DESIRED: want.to_string(),
                            MAX_REPLICAS: (want + max_surge).to_string(),
                            REVISION: (max_old_revision + 1).to_string(),
                        },
                        "ownerReferences": [owner_ref(d, "apps/v1", "Deployment")],
                    },
                    "spec": spec,
                });
                match ctx.create(&ResourceRef::replicasets(), rs) {
                    Ok(created) => {
                        // As the deployment controller's getNewReplicaSet: no event for a new
                        // ReplicaSet created at 0 replicas.
                        if initial > 0 {
                            events::record(
                                ctx,
                                &with_kind(d, "apps/v1", "Deployment"),
                                "Normal",
                                "ScalingReplicaSet",
                                &format!("Scaled up replica set {rs_name} from 0 to {initial}"),
                                COMPONENT,
                            );
                        }
                        created_new = Some(rs_name);
                        new_rs = Some(std::sync::Arc::unwrap_or_clone(created));
                    }
                    Err(_) => return,
                }
            }
        }
        if let Some(rs) = new_rs.as_mut()
            && created_new.is_none()
        {
            rollout(
                ctx,
                d,
                rs,
                &mut old,
                want,
                max_surge,
                max_unavailable,
                recreate,
            );
        }
        cleanup(ctx, d, &mut old);
    }
    write_status(
        ctx,
        d,
        new_rs.as_ref(),
        &old,
        max_unavailable,
        paused,
        created_new.as_deref(),
    );
}

#[allow(clippy::too_many_arguments)]
fn rollout(
    ctx: &Ctx<'_>,
    d: &Value,
    new_rs: &mut Value,
    old: &mut [Value],
    want: i64,
    max_surge: i64,
    max_unavailable: i64,
    recreate: bool,
) {
    if recreate {
        let old_active = old
            .iter()
            .any(|rs| replicas(rs) > 0 || st(rs, "replicas") > 0);
        for rs in old.iter_mut() {
            scale(ctx, d, rs, 0, max_surge);
        }
        if !old_active {
            scale(ctx, d, new_rs, want, max_surge);
        }
        return;
    }
    if !old.iter().any(|rs| replicas(rs) > 0) {
        // Nothing left to replace: plain scaling.
        scale(ctx, d, new_rs, want, max_surge);
        return;
    }
    if replicas(new_rs) > want {
        scale(ctx, d, new_rs, want, max_surge);
    }
    // Scale up the new RS within maxSurge.
    let total: i64 = replicas(new_rs) + old.iter().map(replicas).sum::<i64>();
    let max_total = want + max_surge;
    if total < max_total && replicas(new_rs) < want {
        let up = (max_total - total).min(want - replicas(new_rs));
        let to = replicas(new_rs) + up;
        scale(ctx, d, new_rs, to, max_surge);
    }
    // Scale down old RSes within maxUnavailable: first their unhealthy pods, then available ones.
    let min_available = want - max_unavailable;
    let all_pods: i64 = replicas(new_rs) + old.iter().map(replicas).sum::<i64>();
    let new_unavailable = (replicas(new_rs) - st(new_rs, "availableReplicas")).max(0);
    let mut budget = all_pods - min_available - new_unavailable;
    if budget > 0 {
        for rs in old.iter_mut() {
            if budget <= 0 {
                break;
            }
            let unhealthy = (replicas(rs) - st(rs, "availableReplicas")).max(0);
            let cut = unhealthy.min(budget);
            if cut > 0 {
                let to = replicas(rs) - cut;
                if scale(ctx, d, rs, to, max_surge) {
                    budget -= cut;
                }
            }
        }
    }
    let available: i64 = st(new_rs, "availableReplicas")
        + old
            .iter()
            .map(|rs| st(rs, "availableReplicas"))
            .sum::<i64>();
    let mut budget = available - min_available;
    for rs in old.iter_mut() {
        if budget <= 0 {
            break;
        }
        let cut = replicas(rs).min(budget);
        if cut > 0 {
            let to = replicas(rs) - cut;
            if scale(ctx, d, rs, to, max_surge) {
                budget -= cut;
            }
        }
    }
}

/// Deletes old, empty ReplicaSets beyond `revisionHistoryLimit`, oldest first.
fn cleanup(ctx: &Ctx<'_>, d: &Value, old: &mut Vec<Value>) {
    let limit = i64_at(d, &["spec", "revisionHistoryLimit"])
        .unwrap_or(10)
        .max(0) as usize;
    let empty: Vec<usize> = old
        .iter()
        .enumerate()
        .filter(|(_, rs)| replicas(rs) == 0 && st(rs, "replicas") == 0 && !is_terminating(rs))
        .map(|(i, _)| i)
        .collect();
    if empty.len() <= limit {
        return;
    }
    let doomed: Vec<usize> = empty[..empty.len() - limit].to_vec();
    for i in doomed.iter().rev() {
        let rs = &old[*i];
        if ctx
            .delete(&ResourceRef::replicasets(), Some(namespace(rs)), name(rs))
            .is_ok()
        {
            old.remove(*i);
        }
    }
}

fn write_status(
    ctx: &Ctx<'_>,
    d: &Value,
    new_rs: Option<&Value>,
    old: &[Value],
    max_unavailable: i64,
    paused: bool,
    created_new: Option<&str>,
) {
    let want = replicas(d);
    let all: Vec<&Value> = new_rs.into_iter().chain(old.iter()).collect();
    let sum = |k: &str| all.iter().map(|rs| st(rs, k)).sum::<i64>();
    let spec_total: i64 = all.iter().map(|rs| replicas(rs)).sum();
    let replicas_now = sum("replicas");
    let updated = new_rs.map(|rs| st(rs, "replicas")).unwrap_or(0);
    let ready = sum("readyReplicas");
    let available = sum("availableReplicas");
    let old_status = d
        .get("status")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let mut status = old_status.clone();
    set(&mut status, &["observedGeneration"], json!(generation(d)));
    set(&mut status, &["replicas"], json!(replicas_now));
    set(&mut status, &["updatedReplicas"], json!(updated));
    set(&mut status, &["readyReplicas"], json!(ready));
    set(&mut status, &["availableReplicas"], json!(available));
    set(
        &mut status,
        &["unavailableReplicas"],
        json!((spec_total - available).max(0)),
    );
    if let Some(m) = status.as_object_mut() {
        for k in [
            "readyReplicas",
            "availableReplicas",
            "updatedReplicas",
            "unavailableReplicas",
        ] {
            if m.get(k).and_then(Value::as_i64) == Some(0) {
                m.remove(k);
            }
        }
    }
    let mut conds = conditions_of(d);
    let now = ctx.now_s.as_str();
    if available >= want - max_unavailable {
        set_condition(
            &mut conds,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            now,
            CondStyle::Deployment,
            false,
        );
    } else {
        set_condition(
            &mut conds,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            now,
            CondStyle::Deployment,
            false,
        );
    }
    let deadline = i64_at(d, &["spec", "progressDeadlineSeconds"]);
    let rs_name = new_rs.map(name).unwrap_or("");
    if paused {
        set_condition(
            &mut conds,
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused",
            now,
            CondStyle::Deployment,
            false,
        );
    } else if deadline.is_some() {
        let old_i = |k: &str| i64_at(&old_status, &[k]).unwrap_or(0);
        let old_old_replicas = old_i("replicas") - old_i("updatedReplicas");
        let progressed = updated > old_i("updatedReplicas")
            || ready > old_i("readyReplicas")
            || available > old_i("availableReplicas")
            || (replicas_now - updated) < old_old_replicas;
        let complete = updated == want && replicas_now == want && available == want;
        let cur = condition(d, "Progressing");
        let cur_reason = cur
            .and_then(|c| c.get("reason"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let cur_status = cur
            .and_then(|c| c.get("status"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if let Some(n) = created_new {
            set_condition(
                &mut conds,
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                &format!("Created new replica set \"{n}\""),
                now,
                CondStyle::Deployment,
                true,
            );
        } else if complete {
            if !(cur_reason == "NewReplicaSetAvailable" && cur_status == "True") {
                set_condition(
                    &mut conds,
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                    now,
                    CondStyle::Deployment,
                    true,
                );
            }
        } else if progressed
            || cur_reason == "DeploymentPaused"
            || cur.is_none()
            || (cur_reason == "NewReplicaSetAvailable"
                && generation(d) > i64_at(&old_status, &["observedGeneration"]).unwrap_or(0))
        {
            set_condition(
                &mut conds,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &format!("ReplicaSet \"{rs_name}\" is progressing."),
                now,
                CondStyle::Deployment,
                true,
            );
        } else if cur_reason != "ProgressDeadlineExceeded" && cur_reason != "NewReplicaSetAvailable"
        {
            let last = cur
                .and_then(|c| c.get("lastUpdateTime"))
                .and_then(Value::as_str)
                .and_then(parse_time)
                .unwrap_or(ctx.now);
            let due = add_secs(last, deadline.unwrap_or(600).max(0) as f64);
            if ctx.now >= due {
                set_condition(
                    &mut conds,
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    &format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                    now,
                    CondStyle::Deployment,
                    false,
                );
            } else {
                ctx.wake_at(due);
            }
        }
    }
    set(&mut status, &["conditions"], Value::Array(conds));
    if d.get("status") != Some(&status) {
        let _ = ctx.write_status(&ResourceRef::deployments(), d, status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::ClusterApi;
    use crate::dataplane::fake::Harness;

    fn deploy(name: &str, replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": image}]}}
            }
        })
    }

    fn get(h: &Harness, n: &str) -> Value {
        h.api.must_get(&ResourceRef::deployments(), "default", n)
    }

    /// What `kubectl rollout status` checks.
    fn rollout_complete(d: &Value) -> bool {
        let s = &d["status"];
        let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
        let n = |k: &str| s[k].as_i64().unwrap_or(0);
        n("observedGeneration") >= d["metadata"]["generation"].as_i64().unwrap_or(0)
            && n("updatedReplicas") == want
            && n("replicas") == want
            && n("availableReplicas") == want
    }

    fn cond<'a>(d: &'a Value, t: &str) -> &'a Value {
        condition(d, t).unwrap_or(&Value::Null)
    }

    #[test]
    fn deployment_creates_replicaset_and_becomes_available() {
        let mut h = Harness::new("cpu=2");
        h.api
            .create(&ResourceRef::deployments(), deploy("web", 3, "nginx:1.27"))
            .unwrap();
        h.run(0.6);
        let d = get(&h, "web");
        assert!(rollout_complete(&d), "{}", d["status"]);
        assert_eq!(cond(&d, "Available")["status"], "True");
        assert_eq!(cond(&d, "Available")["reason"], "MinimumReplicasAvailable");
        assert_eq!(cond(&d, "Progressing")["reason"], "NewReplicaSetAvailable");
        let sets = h.api.all(&ResourceRef::replicasets());
        assert_eq!(sets.len(), 1);
        let rs = &sets[0];
        let hash = template_hash(&d["spec"]["template"]);
        assert_eq!(name(rs), format!("web-{hash}"));
        assert_eq!(rs["metadata"]["labels"][HASH_LABEL], hash.as_str());
        assert_eq!(
            rs["spec"]["selector"]["matchLabels"][HASH_LABEL],
            hash.as_str()
        );
        assert_eq!(rs["metadata"]["annotations"][REVISION], "1");
        let pods = h.pods("default");
        assert_eq!(pods.len(), 3);
        assert!(
            pods.iter()
                .all(|p| p["metadata"]["labels"][HASH_LABEL] == hash.as_str())
        );
        // helm --wait: the RS template equals the deployment's apart from the hash label.
        let mut t = rs["spec"]["template"].clone();
        t["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove(HASH_LABEL);
        assert_eq!(canonical_json(&t), canonical_json(&d["spec"]["template"]));
        let w = h.api.writes();
        h.run(1.0);
        assert_eq!(h.api.writes(), w, "settled deployment must not write");
    }

    #[test]
    fn rolling_update_replaces_pods_within_surge_and_completes() {
        let mut h = Harness::new("cpu=3");
        h.api
            .create(&ResourceRef::deployments(), deploy("web", 4, "app:1"))
            .unwrap();
        h.run(0.6);
        let mut d = get(&h, "web");
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("app:2");
        h.api.update(&ResourceRef::deployments(), d).unwrap();
        let mut max_pods = 0;
        for _ in 0..40 {
            h.run(0.05);
            let active = h.pods("default").len();
            max_pods = max_pods.max(active);
        }
        let d = get(&h, "web");
        assert!(rollout_complete(&d), "{}", d["status"]);
        assert_eq!(cond(&d, "Progressing")["reason"], "NewReplicaSetAvailable");
        assert!(
            max_pods <= 5,
            "maxSurge 25% of 4 allows 5 pods, saw {max_pods}"
        );
        let pods = h.pods("default");
        assert_eq!(pods.len(), 4);
        assert!(
            pods.iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "app:2")
        );
        let sets = h.api.all(&ResourceRef::replicasets());
        assert_eq!(sets.len(), 2);
        let new = sets.iter().find(|rs| rs["spec"]["replicas"] == 4).unwrap();
        assert_eq!(new["metadata"]["annotations"][REVISION], "2");
        assert!(h.events().iter().any(|e| {
            e["reason"] == "ScalingReplicaSet"
                && e["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("Scaled down replica set web-")
        }));
    }

    #[test]
    fn scaling_and_recreate_and_history_limit() {
        let mut h = Harness::new("cpu=2");
        let mut d0 = deploy("r", 2, "app:1");
        d0["spec"]["strategy"] = json!({"type": "Recreate"});
        d0["spec"]["revisionHistoryLimit"] = json!(1);
        h.api.create(&ResourceRef::deployments(), d0).unwrap();
        h.run(0.6);
        for img in ["app:2", "app:3"] {
            let mut d = get(&h, "r");
            d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(img);
            h.api.update(&ResourceRef::deployments(), d).unwrap();
            h.run(1.0);
            assert!(rollout_complete(&get(&h, "r")));
        }
        assert_eq!(
            h.api.all(&ResourceRef::replicasets()).len(),
            2,
            "one old RS kept"
        );
        let mut d = get(&h, "r");
        d["spec"]["replicas"] = json!(5);
        h.api.update(&ResourceRef::deployments(), d).unwrap();
        h.run(0.6);
        let d = get(&h, "r");
        assert!(rollout_complete(&d));
        assert_eq!(h.pods("default").len(), 5);
    }

    #[test]
    fn unschedulable_rollout_times_out_and_pause_is_reported() {
        let mut h = Harness::new("cpu=1");
        let mut d0 = deploy("g", 1, "app:1");
        d0["spec"]["progressDeadlineSeconds"] = json!(5);
        d0["spec"]["template"]["spec"]["containers"][0]["resources"] =
            json!({"limits": {"nvidia.com/gpu": "1"}});
        h.api.create(&ResourceRef::deployments(), d0).unwrap();
        h.run(1.0);
        let d = get(&h, "g");
        assert_eq!(cond(&d, "Available")["status"], "False");
        assert_eq!(cond(&d, "Progressing")["status"], "True");
        h.run(5.0);
        let d = get(&h, "g");
        assert_eq!(cond(&d, "Progressing")["status"], "False");
        assert_eq!(
            cond(&d, "Progressing")["reason"],
            "ProgressDeadlineExceeded"
        );
        let mut d = get(&h, "g");
        d["spec"]["paused"] = json!(true);
        h.api.update(&ResourceRef::deployments(), d).unwrap();
        h.run(0.2);
        assert_eq!(
            cond(&get(&h, "g"), "Progressing")["reason"],
            "DeploymentPaused"
        );
    }

    #[test]
    fn zero_unavailable_rollout_completes_and_broken_rollout_keeps_old_pods() {
        let mut h = Harness::new("cpu=2");
        let mut d0 = deploy("z", 3, "app:1");
        d0["spec"]["strategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
        h.api.create(&ResourceRef::deployments(), d0).unwrap();
        h.run(0.6);
        let mut d = get(&h, "z");
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("app:2");
        h.api.update(&ResourceRef::deployments(), d).unwrap();
        let mut min_ready = i64::MAX;
        for _ in 0..40 {
            h.run(0.05);
            let d = get(&h, "z");
            min_ready = min_ready.min(d["status"]["availableReplicas"].as_i64().unwrap_or(0));
        }
        assert!(rollout_complete(&get(&h, "z")));
        assert_eq!(
            min_ready, 3,
            "maxUnavailable 0 never drops below 3 available"
        );
        // A template whose pods never become ready: the rollout stalls with old pods serving.
        let mut d = get(&h, "z");
        d["spec"]["template"]["metadata"]["annotations"] =
            json!({crate::dataplane::ANN_READY_AFTER: "100000"});
        h.api.update(&ResourceRef::deployments(), d).unwrap();
        h.run(3.0);
        let d = get(&h, "z");
        assert!(!rollout_complete(&d));
        assert_eq!(d["status"]["availableReplicas"], 3);
        assert_eq!(d["status"]["updatedReplicas"], 1);
        assert_eq!(cond(&d, "Progressing")["reason"], "ReplicaSetUpdated");
    }

    #[test]
    fn template_hash_ignores_key_order_and_hash_label() {
        let a = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let b = json!({"spec": {"containers": [{"image": "i", "name": "c"}]}, "metadata": {"labels": {"app": "x", HASH_LABEL: "zzz"}}});
        assert_eq!(template_hash(&a), template_hash(&b));
        let c = json!({"metadata": {"labels": {"app": "y"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        assert_ne!(template_hash(&a), template_hash(&c));
    }
}

//! The volume binder: binds each PersistentVolumeClaim to a PersistentVolume it provisions
//! (`pvc-<claim uid>`, hostPath-backed), as a dynamic provisioner with `Immediate` binding does,
//! so pods mounting claims can be scheduled.

use std::sync::Arc;

use serde_json::{Value, json};

use super::util::{at, is_terminating, name, namespace, set, str_at, uid};
use super::{Ctx, K, ResourceRef};

pub(crate) fn pvcs() -> ResourceRef {
    ResourceRef::core("persistentvolumeclaims")
}

fn pvs() -> ResourceRef {
    ResourceRef::core("persistentvolumes")
}

/// Binds the claims that changed (or failed to bind last pass).
pub(crate) fn sync_all(ctx: &Ctx<'_>) {
    let claims = ctx.cached(K::Pvc, &ctx.work_of(K::Pvc));
    for pvc in &claims {
        ctx.focus(K::Pvc, pvc);
        if is_terminating(pvc) || str_at(pvc, &["status", "phase"]) == Some("Bound") {
            continue;
        }
        bind(ctx, pvc);
    }
}

fn bind(ctx: &Ctx<'_>, pvc: &Value) {
    let pv_name = str_at(pvc, &["spec", "volumeName"])
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("pvc-{}", uid(pvc)));
    let storage = at(pvc, &["spec", "resources", "requests", "storage"])
        .cloned()
        .unwrap_or_else(|| json!("1Gi"));
    let access = at(pvc, &["spec", "accessModes"])
        .cloned()
        .unwrap_or_else(|| json!(["ReadWriteOnce"]));
    let class = at(pvc, &["spec", "storageClassName"]).cloned();
    if ctx.api.get(&pvs(), None, &pv_name).is_none() {
        let mut spec = json!({
            "capacity": {"storage": storage},
            "accessModes": access,
            "persistentVolumeReclaimPolicy": "Delete",
            "volumeMode": at(pvc, &["spec", "volumeMode"]).cloned().unwrap_or_else(|| json!("Filesystem")),
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": namespace(pvc),
                "name": name(pvc),
                "uid": uid(pvc),
            },
            "hostPath": {"path": format!("/var/lib/kube-sim/volumes/{pv_name}"), "type": ""},
        });
        if let Some(c) = &class {
            set(&mut spec, &["storageClassName"], c.clone());
        }
        let pv = json!({
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": pv_name,
                "annotations": {"pv.kubernetes.io/provisioned-by": "sim.hypersync.io/hostpath"},
                "finalizers": ["kubernetes.io/pv-protection"],
            },
            "spec": spec,
        });
        // Best effort: a store without PersistentVolumes still gets its claims bound.
        if let Ok(created) = ctx.create(&pvs(), pv) {
            let _ = ctx.write_status(&pvs(), &created, json!({"phase": "Bound"}));
        }
    }
    let mut claim = pvc.clone();
    if str_at(pvc, &["spec", "volumeName"]).is_none_or(str::is_empty) {
        set(&mut claim, &["spec", "volumeName"], json!(pv_name));
        set(
            &mut claim,
            &["metadata", "annotations", "pv.kubernetes.io/bind-completed"],
            json!("yes"),
        );
        set(
            &mut claim,
            &[
                "metadata",
                "annotations",
                "pv.kubernetes.io/bound-by-controller",
            ],
            json!("yes"),
        );
        match ctx.update(&pvcs(), claim) {
            Ok(updated) => claim = Arc::unwrap_or_clone(updated),
            Err(_) => return,
        }
    }
    claim["status"] = json!({
        "phase": "Bound",
        "accessModes": access,
        "capacity": {"storage": storage},
    });
    let _ = ctx.update_status(&pvcs(), claim);
}

/// The scheduler's VolumeBinding pre-filter verdict for a pod: the message if a claim it mounts
/// is missing, being deleted or not bound yet.
pub(crate) fn prefilter(ctx: &Ctx<'_>, pod: &Value) -> Option<String> {
    let vols = at(pod, &["spec", "volumes"]).and_then(Value::as_array)?;
    for v in vols {
        let Some(claim) = v
            .pointer("/persistentVolumeClaim/claimName")
            .and_then(Value::as_str)
        else {
            continue;
        };
        match ctx.api.get(&pvcs(), Some(namespace(pod)), claim) {
            None => return Some(format!("persistentvolumeclaim \"{claim}\" not found")),
            Some(c) if is_terminating(&c) => {
                return Some(format!(
                    "persistentvolumeclaim \"{claim}\" is being deleted"
                ));
            }
            Some(c) if str_at(&c, &["status", "phase"]) != Some("Bound") => {
                return Some("pod has unbound immediate PersistentVolumeClaims".to_string());
            }
            Some(_) => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::ClusterApi;
    use crate::dataplane::fake::Harness;
    use crate::dataplane::util::condition;

    #[test]
    fn claims_are_bound_and_pods_wait_for_missing_claims() {
        let mut h = Harness::new("cpu=2");
        h.api
            .create(
                &ResourceRef::pods(),
                json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "p", "namespace": "default"},
                    "spec": {"containers": [{"name": "c", "image": "x:1"}],
                             "volumes": [{"name": "cache", "persistentVolumeClaim": {"claimName": "weights"}}]}}),
            )
            .unwrap();
        h.tick();
        let p = h.api.must_get(&ResourceRef::pods(), "default", "p");
        assert_eq!(
            condition(&p, "PodScheduled").unwrap()["message"],
            "0/2 nodes are available: persistentvolumeclaim \"weights\" not found. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
        );
        h.api
            .create(
                &pvcs(),
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": "weights", "namespace": "default"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "50Gi"}}, "storageClassName": "standard"}}),
            )
            .unwrap();
        h.run(0.3);
        let c = h.api.must_get(&pvcs(), "default", "weights");
        assert_eq!(c["status"]["phase"], "Bound");
        assert_eq!(c["status"]["capacity"]["storage"], "50Gi");
        let pv_name = c["spec"]["volumeName"].as_str().unwrap().to_string();
        let pv = h.api.must_get(&pvs(), "", &pv_name);
        assert_eq!(pv["spec"]["claimRef"]["name"], "weights");
        assert_eq!(pv["status"]["phase"], "Bound");
        let p = h.api.must_get(&ResourceRef::pods(), "default", "p");
        assert_eq!(p["status"]["phase"], "Running");
    }
}

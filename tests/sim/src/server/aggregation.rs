//! `apiregistration.k8s.io/v1` APIServices and `v1` ComponentStatuses, as a kube-apiserver with
//! its aggregator shows them.
//!
//! Every served group/version has a local APIService named `<version>.<group>` (`v1.` for the core
//! group), `Available` with reason `Local`: the built-in ones are registered at start with the
//! aggregator's priorities (`kube-apiserver` `apiVersionPriorities`, label
//! `kube-aggregator.kubernetes.io/automanaged: onstart`), a CRD's versions by the CRD registration
//! controller (`crdregistration_controller.go`: group priority 1000, version priority 100, label
//! `automanaged: "true"`) and removed again when no CRD serves them. ComponentStatus is read-only:
//! `scheduler`, `controller-manager` and `etcd-0`, all Healthy (`pkg/registry/core/componentstatus`).

use super::SimState;
use super::handlers::WriteOpts;
use serde_json::{Value, json};
use std::collections::BTreeSet;

const AUTOMANAGED: &str = "kube-aggregator.kubernetes.io/automanaged";

/// (group, version) -> (groupPriorityMinimum, versionPriority) of the built-in APIs.
const PRIORITIES: &[(&str, &str, i64, i64)] = &[
    ("", "v1", 18000, 1),
    ("apps", "v1", 17800, 15),
    ("events.k8s.io", "v1", 17750, 15),
    ("authentication.k8s.io", "v1", 17700, 15),
    ("authorization.k8s.io", "v1", 17600, 15),
    ("autoscaling", "v1", 17500, 15),
    ("autoscaling", "v2", 17500, 30),
    ("batch", "v1", 17400, 15),
    ("certificates.k8s.io", "v1", 17300, 15),
    ("networking.k8s.io", "v1", 17200, 15),
    ("policy", "v1", 17100, 15),
    ("rbac.authorization.k8s.io", "v1", 17000, 15),
    ("storage.k8s.io", "v1", 16800, 15),
    ("apiextensions.k8s.io", "v1", 16700, 15),
    ("admissionregistration.k8s.io", "v1", 16700, 15),
    ("scheduling.k8s.io", "v1", 16600, 15),
    ("coordination.k8s.io", "v1", 16500, 15),
    ("node.k8s.io", "v1", 16300, 15),
    ("discovery.k8s.io", "v1", 16200, 15),
    ("flowcontrol.apiserver.k8s.io", "v1", 16100, 21),
    ("apiregistration.k8s.io", "v1", 18000, 1),
];

/// The APIService object for a served group/version.
pub fn apiservice(group: &str, version: &str, crd: bool) -> Value {
    let (gp, vp) = PRIORITIES
        .iter()
        .find(|(g, v, _, _)| *g == group && *v == version)
        .map(|(_, _, g, v)| (*g, *v))
        .unwrap_or((1000, 100));
    let (gp, vp) = if crd { (1000, 100) } else { (gp, vp) };
    json!({
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {
            "name": format!("{version}.{group}"),
            "labels": {AUTOMANAGED: if crd { "true" } else { "onstart" }},
        },
        "spec": {"group": group, "version": version, "groupPriorityMinimum": gp, "versionPriority": vp},
    })
}

/// The status of a local APIService.
fn available(now: &str) -> Value {
    json!({"conditions": [{"type": "Available", "status": "True", "lastTransitionTime": now,
        "reason": "Local", "message": "Local APIServices are always available"}]})
}

/// The ComponentStatuses a healthy control plane reports.
pub fn component_statuses() -> Vec<Value> {
    ["controller-manager", "scheduler", "etcd-0"]
        .iter()
        .map(|n| {
            json!({"apiVersion": "v1", "kind": "ComponentStatus", "metadata": {"name": n},
                   "conditions": [{"type": "Healthy", "status": "True", "message": "ok"}]})
        })
        .collect()
}

/// The warning the apiserver sends with every ComponentStatus read.
pub const COMPONENT_STATUS_WARNING: &str = "v1 ComponentStatus is deprecated in v1.19+";

impl SimState {
    /// Creates the APIServices of served group/versions that have none and removes the
    /// CRD-managed ones no CRD serves any more.
    pub(super) fn sync_apiservices(&self) {
        let Some(ri) = self
            .registry_read()
            .get("apiregistration.k8s.io", "apiservices")
        else {
            return;
        };
        let (served, builtin): (BTreeSet<(String, String)>, BTreeSet<String>) = {
            let reg = self.registry_read();
            let mut served = BTreeSet::new();
            let mut builtin = BTreeSet::new();
            for r in reg.all() {
                if !r.is_crd {
                    builtin.insert(r.group.clone());
                }
                for v in r.versions.iter().filter(|v| v.served) {
                    served.insert((r.group.clone(), v.name.clone()));
                }
            }
            (served, builtin)
        };
        let opts = WriteOpts::system("kube-apiserver");
        let now = crate::store::now_rfc3339();
        for (group, version) in &served {
            let name = format!("{version}.{group}");
            if self.store.get(&ri.table, "", &name).is_some() {
                continue;
            }
            let obj = apiservice(group, version, !builtin.contains(group));
            if let Ok(out) = self.create_obj(&ri, "v1", None, obj, &opts) {
                let mut with_status = std::sync::Arc::unwrap_or_clone(out.object);
                with_status["status"] = available(&now);
                let _ = self.update_obj(&ri, "v1", None, &name, with_status, Some("status"), &opts);
            }
        }
        let existing = self
            .store
            .list(&ri.table, None, &Default::default(), &|_| true)
            .map(|p| p.items)
            .unwrap_or_default();
        for a in existing {
            let managed = a.pointer(&format!(
                "/metadata/labels/{}",
                AUTOMANAGED.replace('/', "~1")
            )) == Some(&json!("true"));
            let group = a
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or("");
            let version = a
                .pointer("/spec/version")
                .and_then(Value::as_str)
                .unwrap_or("");
            if managed && !served.contains(&(group.to_string(), version.to_string())) {
                let name = crate::store::obj_name(&a).to_string();
                let _ = self.delete_obj(&ri, "v1", None, &name, &Default::default());
            }
        }
    }

    /// Seeds the read-only ComponentStatuses.
    pub(super) fn bootstrap_component_statuses(&self) {
        let Some(ri) = self.registry_read().get("", "componentstatuses") else {
            return;
        };
        let opts = WriteOpts::system("kube-apiserver");
        for cs in component_statuses() {
            let _ = self.create_obj(&ri, "v1", None, cs, &opts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apiservices_take_the_aggregators_priorities() {
        let a = apiservice("apps", "v1", false);
        assert_eq!(a["metadata"]["name"], "v1.apps");
        assert_eq!(a["spec"]["groupPriorityMinimum"], 17800);
        assert_eq!(a["metadata"]["labels"][AUTOMANAGED], "onstart");
        let core = apiservice("", "v1", false);
        assert_eq!(core["metadata"]["name"], "v1.");
        let crd = apiservice("hypersync.io", "v1alpha1", true);
        assert_eq!(crd["spec"]["groupPriorityMinimum"], 1000);
        assert_eq!(crd["spec"]["versionPriority"], 100);
        assert_eq!(crd["metadata"]["labels"][AUTOMANAGED], "true");
    }
}

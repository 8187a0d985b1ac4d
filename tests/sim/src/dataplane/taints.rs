//! The taint eviction controller: deletes pods bound to nodes with `NoExecute` taints they do not
//! tolerate (at once, or `tolerationSeconds` after the taint's `timeAdded`).

use std::collections::HashMap;

use serde_json::{Value, json};

use super::events;
use super::scheduler::{pod_tolerations, toleration_for};
use super::util::{add_secs, at, name, namespace, parse_time, pod_active, str_at};
use super::{Ctx, K, ResourceRef};

const COMPONENT: &str = "taint-eviction-controller";

/// Looks at the pods that changed, the pods of nodes that changed, and those with a due timer.
pub(crate) fn sync_all(ctx: &Ctx<'_>) {
    let nodes = ctx.cached_all(K::Node);
    let nodes = nodes.as_slice();
    let tainted: HashMap<&str, Vec<&Value>> = nodes
        .iter()
        .filter_map(|n| {
            let t: Vec<&Value> = at(n, &["spec", "taints"])
                .and_then(Value::as_array)?
                .iter()
                .filter(|t| t.get("effect").and_then(Value::as_str) == Some("NoExecute"))
                .collect();
            (!t.is_empty()).then_some((name(n), t))
        })
        .collect();
    if tainted.is_empty() {
        return;
    }
    let mut keys = ctx.work_of(K::Pod);
    ctx.with_cache(|c, _| {
        for node in ctx.work_of(K::Node) {
            if tainted.contains_key(node.1.as_str()) {
                keys.extend(c.pod_keys_on(&node.1).cloned());
            }
        }
    });
    let pods = ctx.cached(K::Pod, &keys);
    for pod in pods.iter() {
        ctx.focus(K::Pod, pod);
        let node = str_at(pod, &["spec", "nodeName"]).unwrap_or("");
        let Some(taints) = tainted.get(node) else {
            continue;
        };
        if !pod_active(pod) {
            continue;
        }
        let tols = pod_tolerations(pod);
        let mut evict = false;
        for taint in taints {
            match toleration_for(&tols, taint) {
                None => evict = true,
                Some(tol) => {
                    let (Some(secs), Some(added)) = (
                        tol.get("tolerationSeconds").and_then(Value::as_i64),
                        taint
                            .get("timeAdded")
                            .and_then(Value::as_str)
                            .and_then(parse_time),
                    ) else {
                        continue;
                    };
                    let due = add_secs(added, secs.max(0) as f64);
                    if ctx.now >= due {
                        evict = true;
                    } else {
                        ctx.wake_at(due);
                    }
                }
            }
        }
        if evict
            && ctx
                .delete(&ResourceRef::pods(), Some(namespace(pod)), name(pod))
                .is_ok()
        {
            let mut p = (**pod).clone();
            p["apiVersion"] = json!("v1");
            p["kind"] = json!("Pod");
            events::record(
                ctx,
                &p,
                "Normal",
                "TaintManagerEviction",
                &format!("Marking for deletion Pod {}/{}", namespace(pod), name(pod)),
                COMPONENT,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::ClusterApi;
    use crate::dataplane::fake::Harness;
    use crate::dataplane::util::condition;

    fn pod(n: &str, tolerations: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": n, "namespace": "default"},
            "spec": {"nodeName": "cpu-0", "tolerations": tolerations, "containers": [{"name": "c", "image": "x:1"}]}})
    }

    #[test]
    fn no_execute_taints_evict_untolerated_pods() {
        let mut h = Harness::new("cpu=1");
        h.tick();
        h.api
            .create(&ResourceRef::pods(), pod("plain", json!([])))
            .unwrap();
        h.api
            .create(
                &ResourceRef::pods(),
                pod(
                    "tolerant",
                    json!([{"key": "maint", "operator": "Exists", "effect": "NoExecute"}]),
                ),
            )
            .unwrap();
        h.api
            .create(
                &ResourceRef::pods(),
                pod("timed", json!([{"key": "maint", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}])),
            )
            .unwrap();
        h.run(0.3);
        let mut n = h.api.must_get(&ResourceRef::nodes(), "", "cpu-0");
        n["spec"]["taints"] =
            json!([{"key": "maint", "effect": "NoExecute", "timeAdded": h.now.to_rfc3339()}]);
        h.api.update(&ResourceRef::nodes(), n).unwrap();
        h.run(0.2);
        let names: Vec<String> = h
            .pods("default")
            .iter()
            .map(|p| name(p).to_string())
            .collect();
        assert_eq!(names, ["timed", "tolerant"]);
        assert!(
            h.events()
                .iter()
                .any(|e| e["reason"] == "TaintManagerEviction")
        );
        h.run(2.5);
        let names: Vec<String> = h
            .pods("default")
            .iter()
            .map(|p| name(p).to_string())
            .collect();
        assert_eq!(names, ["tolerant"]);
    }

    #[test]
    fn not_ready_nodes_are_not_scheduled_to() {
        let mut h = Harness::new("cpu=1");
        h.tick();
        let mut n = h.api.must_get(&ResourceRef::nodes(), "", "cpu-0");
        n["status"]["conditions"][3]["status"] = json!("False");
        h.api.update_status(&ResourceRef::nodes(), n).unwrap();
        h.api
            .create(
                &ResourceRef::pods(),
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                    "spec": {"containers": [{"name": "c", "image": "x:1"}]}}),
            )
            .unwrap();
        h.tick();
        let p = h.api.must_get(&ResourceRef::pods(), "default", "p");
        assert_eq!(
            condition(&p, "PodScheduled").unwrap()["message"],
            "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        );
    }
}

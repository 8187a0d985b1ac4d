//! The Endpoints controller: for each Service with a selector, an Endpoints object whose subsets
//! list the matching pods' IPs (ready ones under `addresses`, others under
//! `notReadyAddresses`) with target ports resolved (named ports looked up per pod); Endpoints
//! it wrote are removed when their Service goes.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::cache::key_of;
use super::labels::map_matches;
use super::util::{
    at, is_terminating, labels, name, namespace, pod_finished, pod_ready, set, str_at, uid,
};
use super::{Ctx, K, ResourceRef};

/// The annotation the real controller stamps on Endpoints it manages (and uses to find
/// leftovers of deleted Services).
const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// Syncs the Endpoints of the Services that changed, whose Endpoints changed or whose
/// namespace had a pod change, and removes leftover Endpoints that changed.
pub(crate) fn sync_all(ctx: &Ctx<'_>) {
    let work = ctx.work_of(K::Service);
    let changed_eps = ctx.work_of(K::Endpoints);
    if work.is_empty() && changed_eps.is_empty() {
        return;
    }
    let services = ctx.cached(K::Service, &work);
    let services = services.as_slice();
    let endpoints = ctx.cached(K::Endpoints, &work.union(&changed_eps).cloned().collect());
    let endpoints = endpoints.as_slice();
    let namespaces: std::collections::BTreeSet<&str> =
        services.iter().map(|s| namespace(s)).collect();
    let pods: Vec<std::sync::Arc<Value>> = ctx.with_cache(|c, _| {
        namespaces
            .iter()
            .flat_map(|ns| c.pods_in_namespace(ns))
            .cloned()
            .collect()
    });
    let pods = pods.as_slice();
    for ep in endpoints {
        ctx.focus(K::Endpoints, ep);
        let svc_gone = ctx.with_cache(|c, _| c.get(K::Service, &key_of(ep)).is_none());
        if at(ep, &["metadata", "annotations", TRIGGER_TIME]).is_some() && svc_gone {
            let _ = ctx.delete(&ResourceRef::endpoints(), Some(namespace(ep)), name(ep));
        }
    }
    for svc in services {
        ctx.focus(K::Service, svc);
        if is_terminating(svc) || str_at(svc, &["spec", "type"]) == Some("ExternalName") {
            continue;
        }
        let Some(selector) = at(svc, &["spec", "selector"]).and_then(Value::as_object) else {
            continue;
        };
        if selector.is_empty() {
            continue;
        }
        let subsets = build_subsets(svc, selector, pods);
        let existing = endpoints
            .iter()
            .find(|e| namespace(e) == namespace(svc) && name(e) == name(svc));
        let svc_labels = Value::Object(labels(svc));
        match existing {
            None => {
                let mut ep = json!({
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": {
                        "name": name(svc),
                        "namespace": namespace(svc),
                        "labels": svc_labels,
                        "annotations": {TRIGGER_TIME: ctx.now_s},
                    },
                });
                if !subsets.is_empty() {
                    set(&mut ep, &["subsets"], Value::Array(subsets));
                }
                let _ = ctx.create(&ResourceRef::endpoints(), ep);
            }
            Some(e) => {
                let cur = e.get("subsets").cloned().unwrap_or_else(|| json!([]));
                let same_labels = e
                    .pointer("/metadata/labels")
                    .cloned()
                    .unwrap_or_else(|| json!({}))
                    == svc_labels;
                if cur == Value::Array(subsets.clone()) && same_labels {
                    continue;
                }
                let mut ep = (**e).clone();
                set(&mut ep, &["metadata", "labels"], svc_labels);
                set(
                    &mut ep,
                    &["metadata", "annotations", TRIGGER_TIME],
                    json!(ctx.now_s),
                );
                if subsets.is_empty() {
                    if let Some(m) = ep.as_object_mut() {
                        m.remove("subsets");
                    }
                } else {
                    set(&mut ep, &["subsets"], Value::Array(subsets));
                }
                let _ = ctx.update(&ResourceRef::endpoints(), ep);
            }
        }
    }
}

/// Resolves a Service port's `targetPort` for one pod (named ports via the containers).
fn resolve_port(svc_port: &Value, pod: &Value) -> Option<i64> {
    match svc_port.get("targetPort") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => {
            if let Ok(n) = s.parse::<i64>() {
                return Some(n);
            }
            at(pod, &["spec", "containers"])
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|c| {
                    c.get("ports")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                })
                .find(|p| p.get("name").and_then(Value::as_str) == Some(s.as_str()))
                .and_then(|p| p.get("containerPort"))
                .and_then(Value::as_i64)
        }
        _ => svc_port.get("port").and_then(Value::as_i64),
    }
}

/// One Endpoints subset under construction: ports, ready and not-ready addresses.
type Subset = (Vec<Value>, Vec<Value>, Vec<Value>);

fn build_subsets(
    svc: &Value,
    selector: &Map<String, Value>,
    pods: &[std::sync::Arc<Value>],
) -> Vec<Value> {
    let publish_not_ready =
        at(svc, &["spec", "publishNotReadyAddresses"]).and_then(Value::as_bool) == Some(true);
    let svc_ports: Vec<&Value> = at(svc, &["spec", "ports"])
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    // ports (as JSON text) -> the subset being built
    let mut groups: BTreeMap<String, Subset> = BTreeMap::new();
    for pod in pods {
        if namespace(pod) != namespace(svc)
            || is_terminating(pod)
            || pod_finished(pod)
            || !map_matches(selector, &labels(pod))
        {
            continue;
        }
        let Some(ip) = str_at(pod, &["status", "podIP"]) else {
            continue;
        };
        let mut ports = Vec::new();
        for sp in &svc_ports {
            let Some(port) = resolve_port(sp, pod) else {
                continue;
            };
            let mut p = json!({
                "port": port,
                "protocol": sp.get("protocol").and_then(Value::as_str).unwrap_or("TCP"),
            });
            if let Some(n) = sp
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                set(&mut p, &["name"], json!(n));
            }
            if let Some(a) = sp.get("appProtocol") {
                set(&mut p, &["appProtocol"], a.clone());
            }
            ports.push(p);
        }
        if ports.is_empty() && !svc_ports.is_empty() {
            continue;
        }
        let mut addr = json!({
            "ip": ip,
            "targetRef": {"kind": "Pod", "namespace": namespace(pod), "name": name(pod), "uid": uid(pod)},
        });
        if let Some(node) = str_at(pod, &["spec", "nodeName"]) {
            set(&mut addr, &["nodeName"], json!(node));
        }
        let key = Value::Array(ports.clone()).to_string();
        let g = groups
            .entry(key)
            .or_insert_with(|| (ports, Vec::new(), Vec::new()));
        if pod_ready(pod) || publish_not_ready {
            g.1.push(addr);
        } else {
            g.2.push(addr);
        }
    }
    groups
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            let ip_key = |a: &Value| {
                a.get("ip")
                    .and_then(Value::as_str)
                    .map(|s| {
                        s.split('.')
                            .map(|o| o.parse::<u32>().unwrap_or(0))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            };
            ready.sort_by_key(ip_key);
            not_ready.sort_by_key(ip_key);
            let mut s = json!({});
            if !ready.is_empty() {
                set(&mut s, &["addresses"], Value::Array(ready));
            }
            if !not_ready.is_empty() {
                set(&mut s, &["notReadyAddresses"], Value::Array(not_ready));
            }
            if !ports.is_empty() {
                set(&mut s, &["ports"], Value::Array(ports));
            }
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::fake::Harness;
    use crate::dataplane::{ANN_READY_AFTER, ClusterApi};

    fn pod(n: &str, app: &str, ready_after: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": n, "namespace": "default", "labels": {"app": app}, "annotations": {ANN_READY_AFTER: ready_after}},
            "spec": {"containers": [{"name": "c", "image": "x:1", "ports": [{"name": "http", "containerPort": 8080}]}]}})
    }

    #[test]
    fn endpoints_follow_ready_pods_and_named_ports() {
        let mut h = Harness::new("cpu=1");
        h.api.create(&ResourceRef::services(), json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "labels": {"team": "a"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})).unwrap();
        h.api
            .create(&ResourceRef::pods(), pod("w1", "web", "0"))
            .unwrap();
        h.api
            .create(&ResourceRef::pods(), pod("w2", "web", "5"))
            .unwrap();
        h.api
            .create(&ResourceRef::pods(), pod("other", "db", "0"))
            .unwrap();
        h.run(0.5);
        let ep = h.api.must_get(&ResourceRef::endpoints(), "default", "web");
        assert_eq!(ep["metadata"]["labels"]["team"], "a");
        let s = &ep["subsets"][0];
        assert_eq!(
            s["ports"],
            json!([{"port": 8080, "protocol": "TCP", "name": "http"}])
        );
        assert_eq!(s["addresses"].as_array().unwrap().len(), 1);
        assert_eq!(s["addresses"][0]["targetRef"]["name"], "w1");
        assert_eq!(s["notReadyAddresses"][0]["targetRef"]["name"], "w2");
        h.run(5.0);
        let ep = h.api.must_get(&ResourceRef::endpoints(), "default", "web");
        assert_eq!(ep["subsets"][0]["addresses"].as_array().unwrap().len(), 2);
        assert!(ep["subsets"][0].get("notReadyAddresses").is_none());
        let w = h.api.writes();
        h.run(1.0);
        assert_eq!(h.api.writes(), w);
        h.api
            .delete(&ResourceRef::services(), Some("default"), "web")
            .unwrap();
        h.tick();
        assert!(
            h.api
                .get(&ResourceRef::endpoints(), Some("default"), "web")
                .is_none()
        );
    }

    #[test]
    fn services_without_selector_are_left_alone() {
        let mut h = Harness::new("cpu=1");
        h.api.create(&ResourceRef::services(), json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "ext", "namespace": "default"}, "spec": {"ports": [{"port": 5432}]}})).unwrap();
        h.api.create(&ResourceRef::endpoints(), json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "ext", "namespace": "default"}, "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 5432}]}]})).unwrap();
        h.run(0.3);
        let ep = h.api.must_get(&ResourceRef::endpoints(), "default", "ext");
        assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "192.0.2.1");
    }
}

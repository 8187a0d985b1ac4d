//! The service load-balancer controller: gives `type: LoadBalancer` Services an ingress IP
//! (from 172.18.255.0/24, like kind's cloud provider) so `helm --wait` and clients waiting for
//! `status.loadBalancer.ingress` proceed.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::util::{at, is_terminating, set, str_at};
use super::{Ctx, K, ResourceRef};

const PREFIX: &str = "172.18.255.";

/// Gives LoadBalancer Services an ingress IP, when a Service changed (Services are few: the
/// pass looks at all of them, to know the IPs in use).
pub(crate) fn sync_all(ctx: &Ctx<'_>) {
    if ctx.work_of(K::Service).is_empty() {
        return;
    }
    let services = ctx.cached_all(K::Service);
    let services = services.as_slice();
    let is_lb = |s: &Value| str_at(s, &["spec", "type"]) == Some("LoadBalancer");
    if !services.iter().any(|s| is_lb(s)) {
        return;
    }
    let ingress_ip = |s: &Value| {
        at(s, &["status", "loadBalancer", "ingress"])
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|i| i.get("ip"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let mut used: HashSet<String> = services
        .iter()
        .filter(|s| is_lb(s))
        .filter_map(|s| ingress_ip(s))
        .collect();
    for svc in services {
        if !is_lb(svc) || is_terminating(svc) || ingress_ip(svc).is_some() {
            continue;
        }
        let requested = str_at(svc, &["spec", "loadBalancerIP"])
            .filter(|ip| !ip.is_empty() && !used.contains(*ip))
            .map(str::to_string);
        let ip = requested.or_else(|| {
            (2..=254)
                .map(|h| format!("{PREFIX}{h}"))
                .find(|ip| !used.contains(ip))
        });
        let Some(ip) = ip else { continue };
        used.insert(ip.clone());
        let mut status = svc.get("status").cloned().unwrap_or_else(|| json!({}));
        set(
            &mut status,
            &["loadBalancer"],
            json!({"ingress": [{"ip": ip, "ipMode": "VIP"}]}),
        );
        let _ = ctx.write_status(&ResourceRef::services(), svc, status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::ClusterApi;
    use crate::dataplane::fake::Harness;

    #[test]
    fn load_balancers_get_distinct_ingress_ips() {
        let mut h = Harness::new("cpu=1");
        for (n, t) in [
            ("a", "LoadBalancer"),
            ("b", "LoadBalancer"),
            ("c", "ClusterIP"),
        ] {
            h.api
                .create(
                    &ResourceRef::services(),
                    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": n, "namespace": "default"},
                        "spec": {"type": t, "ports": [{"port": 80}]}}),
                )
                .unwrap();
        }
        h.tick();
        let ip = |n: &str| {
            h.api.must_get(&ResourceRef::services(), "default", n)["status"]["loadBalancer"]["ingress"][0]["ip"].clone()
        };
        assert_eq!(ip("a"), "172.18.255.2");
        assert_eq!(ip("b"), "172.18.255.3");
        assert!(ip("c").is_null());
        let w = h.api.writes();
        h.run(0.5);
        assert_eq!(h.api.writes(), w);
    }
}

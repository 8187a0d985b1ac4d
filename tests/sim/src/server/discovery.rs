//! Discovery documents built from the registry: `/api`, `/apis`, `/apis/{g}`, `/apis/{g}/{v}`,
//! `/api/v1` (APIResourceList) and aggregated discovery (apidiscovery.k8s.io/v2 APIGroupDiscoveryList).

use super::registry::{Registry, ResourceInfo};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Content type of aggregated discovery responses.
pub const AGGREGATED_CT: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an Accept header asks for aggregated discovery v2.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let p: Vec<&str> = part.split(';').map(str::trim).collect();
        p.contains(&"g=apidiscovery.k8s.io")
            && p.contains(&"v=v2")
            && p.contains(&"as=APIGroupDiscoveryList")
    })
}

pub fn api_versions(server_addr: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_addr}]})
}

fn group_json(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    let preferred = vs.first().cloned().unwrap_or(Value::Null);
    json!({"name": name, "versions": vs, "preferredVersion": preferred})
}

pub fn api_group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg
        .groups()
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| group_json(g, v))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(reg: &Registry, group: &str) -> Option<Value> {
    let groups = reg.groups();
    let v = groups.get(group).filter(|_| !group.is_empty())?;
    let mut g = group_json(group, v);
    if let Some(m) = g.as_object_mut() {
        m.insert("kind".into(), json!("APIGroup"));
        m.insert("apiVersion".into(), json!("v1"));
    }
    Some(g)
}

fn storage_hash(ri: &ResourceInfo) -> String {
    let mut h = Sha256::new();
    h.update(format!("{}/{}/{}", ri.group, ri.storage_version(), ri.kind));
    let d = h.finalize();
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &d[..8])
}

const SUB_VERBS: &[&str] = &["get", "patch", "update"];

/// Subresources served at a version: (name, group, version, kind, verbs).
fn subresources(
    ri: &ResourceInfo,
    v: &str,
) -> Vec<(String, String, String, String, Vec<&'static str>)> {
    let mut out = Vec::new();
    if ri.status_sub(v) {
        out.push((
            "status".into(),
            String::new(),
            String::new(),
            ri.kind.clone(),
            SUB_VERBS.to_vec(),
        ));
    }
    if ri.scale(v).is_some() {
        out.push((
            "scale".into(),
            "autoscaling".into(),
            "v1".into(),
            "Scale".into(),
            SUB_VERBS.to_vec(),
        ));
    }
    for e in &ri.extra_subs {
        match *e {
            "token" => out.push((
                "token".into(),
                "authentication.k8s.io".into(),
                "v1".into(),
                "TokenRequest".into(),
                vec!["create"],
            )),
            "log" => out.push((
                "log".into(),
                String::new(),
                String::new(),
                "Pod".into(),
                vec!["get"],
            )),
            "binding" => out.push((
                "binding".into(),
                String::new(),
                String::new(),
                "Binding".into(),
                vec!["create"],
            )),
            "eviction" => out.push((
                "eviction".into(),
                "policy".into(),
                "v1".into(),
                "Eviction".into(),
                vec!["create"],
            )),
            "finalize" => out.push((
                "finalize".into(),
                String::new(),
                String::new(),
                ri.kind.clone(),
                vec!["update"],
            )),
            _ => {}
        }
    }
    out
}

/// APIResourceList for one group version.
pub fn resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for ri in reg
        .all()
        .iter()
        .filter(|r| r.group == group && r.version(version).is_some())
    {
        let mut r = json!({
            "name": ri.plural, "singularName": ri.singular, "namespaced": ri.namespaced,
            "kind": ri.kind, "verbs": ri.verbs,
        });
        if !ri.short_names.is_empty() {
            r["shortNames"] = json!(ri.short_names);
        }
        if !ri.categories.is_empty() {
            r["categories"] = json!(ri.categories);
        }
        r["storageVersionHash"] = json!(storage_hash(ri));
        resources.push(r);
        for (name, g, v, kind, verbs) in subresources(ri, version) {
            let mut s = json!({"name": format!("{}/{name}", ri.plural), "singularName": "",
                "namespaced": ri.namespaced, "kind": kind, "verbs": verbs});
            if !g.is_empty() {
                s["group"] = json!(g);
                s["version"] = json!(v);
            }
            resources.push(s);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// apidiscovery.k8s.io/v2 APIGroupDiscoveryList for the core group (`core`) or all named groups.
pub fn aggregated(reg: &Registry, core: bool) -> Value {
    let mut items = Vec::new();
    for (group, versions) in reg.groups() {
        if group.is_empty() != core {
            continue;
        }
        let mut vs = Vec::new();
        for v in &versions {
            let mut resources = Vec::new();
            for ri in reg
                .all()
                .iter()
                .filter(|r| r.group == group && r.version(v).is_some())
            {
                let mut r = json!({
                    "resource": ri.plural,
                    "responseKind": {"group": ri.group, "version": v, "kind": ri.kind},
                    "scope": if ri.namespaced { "Namespaced" } else { "Cluster" },
                    "singularResource": ri.singular,
                    "verbs": ri.verbs,
                });
                if !ri.short_names.is_empty() {
                    r["shortNames"] = json!(ri.short_names);
                }
                if !ri.categories.is_empty() {
                    r["categories"] = json!(ri.categories);
                }
                let subs: Vec<Value> = subresources(ri, v)
                    .into_iter()
                    .map(|(name, g, sv, kind, verbs)| {
                        let (g, sv) = if kind == ri.kind && g.is_empty() { (ri.group.clone(), v.clone()) } else { (g, sv) };
                        json!({"subresource": name, "responseKind": {"group": g, "version": sv, "kind": kind}, "verbs": verbs})
                    })
                    .collect();
                if !subs.is_empty() {
                    r["subresources"] = json!(subs);
                }
                resources.push(r);
            }
            vs.push(json!({"version": v, "resources": resources, "freshness": "Current"}));
        }
        let mut md = json!({"creationTimestamp": null});
        if !group.is_empty() {
            md["name"] = json!(group);
        }
        items.push(json!({"metadata": md, "versions": vs}));
    }
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_accept_is_detected() {
        assert!(wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(!wants_aggregated("application/json"));
        assert!(!wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
        ));
    }

    #[test]
    fn resource_list_has_subresources() {
        let reg = Registry::with_builtins();
        let l = resource_list(&reg, "apps", "v1").unwrap();
        let names: Vec<&str> = l["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"deployments/scale"));
        assert!(names.contains(&"deployments/status"));
        let core = resource_list(&reg, "", "v1").unwrap();
        assert!(
            core["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "serviceaccounts/token")
        );
        let agg = aggregated(&reg, false);
        assert!(
            agg["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["metadata"]["name"] == "apps")
        );
    }
}

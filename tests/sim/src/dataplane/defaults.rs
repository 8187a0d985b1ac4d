//! Built-in defaulting the real API server applies on create (and keeps on update) that clients
//! rely on: Service cluster IPs and ports, Pod and pod-template defaults, Deployment, ReplicaSet,
//! StatefulSet, DaemonSet and Job defaults, and the Job selector.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::ResourceRef;
use super::util::{at, default_field, name, obj_mut, set, str_at, value_mut};

/// Hands out Service cluster IPs (from `10.96.0.0/12` by default, in order, skipping ones in use)
/// and NodePorts (30000-32767).
#[derive(Debug, Clone)]
pub struct IpAllocator {
    base: u32,
    size: u32,
    next: u32,
    used: HashSet<u32>,
    next_port: u16,
    used_ports: HashSet<u16>,
}

impl Default for IpAllocator {
    fn default() -> Self {
        Self::new()
    }
}

fn parse_ipv4(s: &str) -> Option<u32> {
    let parts: Vec<u8> = s
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    if parts.len() != 4 {
        return None;
    }
    Some(u32::from_be_bytes([parts[0], parts[1], parts[2], parts[3]]))
}

fn fmt_ipv4(ip: u32) -> String {
    let b = ip.to_be_bytes();
    format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])
}

const NODE_PORT_MIN: u16 = 30000;
const NODE_PORT_MAX: u16 = 32767;

impl IpAllocator {
    /// The default service CIDR, 10.96.0.0/12 (the first address, 10.96.0.1, goes first, as
    /// for the `kubernetes` Service).
    pub fn new() -> Self {
        Self::with_cidr("10.96.0.0/12").unwrap_or(IpAllocator {
            base: 0x0a60_0000,
            size: 1 << 20,
            next: 1,
            used: HashSet::new(),
            next_port: NODE_PORT_MIN,
            used_ports: HashSet::new(),
        })
    }

    pub fn with_cidr(cidr: &str) -> Result<Self, String> {
        let err = || format!("failed to parse service CIDR {cidr:?}");
        let (ip, bits) = cidr.split_once('/').ok_or_else(err)?;
        let ip = parse_ipv4(ip).ok_or_else(err)?;
        let bits: u32 = bits.parse().map_err(|_| err())?;
        if !(8..=30).contains(&bits) {
            return Err(err());
        }
        let size = 1u32 << (32 - bits);
        Ok(IpAllocator {
            base: ip & !(size - 1),
            size,
            next: 1,
            used: HashSet::new(),
            next_port: NODE_PORT_MIN,
            used_ports: HashSet::new(),
        })
    }

    /// The next free address, or None when the range is exhausted.
    pub fn allocate(&mut self) -> Option<String> {
        for _ in 0..self.size {
            let off = self.next;
            self.next = if self.next + 2 >= self.size {
                1
            } else {
                self.next + 1
            };
            if !self.used.contains(&off) {
                self.used.insert(off);
                return Some(fmt_ipv4(self.base + off));
            }
        }
        None
    }

    /// Marks an address as taken; false if it is outside the range or already taken.
    pub fn reserve(&mut self, ip: &str) -> bool {
        match parse_ipv4(ip) {
            Some(a) if a > self.base && a < self.base + self.size - 1 => {
                self.used.insert(a - self.base)
            }
            _ => false,
        }
    }

    pub fn release(&mut self, ip: &str) {
        if let Some(a) = parse_ipv4(ip) {
            self.used.remove(&a.wrapping_sub(self.base));
        }
    }

    pub fn allocate_node_port(&mut self) -> Option<u16> {
        for _ in NODE_PORT_MIN..=NODE_PORT_MAX {
            let p = self.next_port;
            self.next_port = if p >= NODE_PORT_MAX {
                NODE_PORT_MIN
            } else {
                p + 1
            };
            if self.used_ports.insert(p) {
                return Some(p);
            }
        }
        None
    }

    pub fn reserve_node_port(&mut self, port: u16) -> bool {
        self.used_ports.insert(port)
    }
}

/// Applies the API server's defaults for `resource` to a new object. Idempotent: only absent
/// fields are filled, so the server may also run it on updates (see [`default_on_update`]).
/// For Jobs the object should already carry its final `metadata.name`; a missing
/// `metadata.uid` is generated here (the selector embeds it), and the store must keep it.
pub fn default_on_create(resource: &ResourceRef, obj: &mut Value, alloc: &mut IpAllocator) {
    if !obj.is_object() {
        return;
    }
    match (resource.group.as_str(), resource.resource.as_str()) {
        ("", "services") => default_service(obj, alloc),
        ("", "pods") => default_pod(obj),
        ("", "podtemplates") | ("", "replicationcontrollers") => {
            if let Some(t) = template_mut(obj, resource.resource == "podtemplates") {
                default_pod_spec(t);
            }
        }
        ("apps", "deployments") => {
            default_field(obj, &["spec"], "replicas", json!(1));
            default_field(obj, &["spec"], "revisionHistoryLimit", json!(10));
            default_field(obj, &["spec"], "progressDeadlineSeconds", json!(600));
            default_field(obj, &["spec", "strategy"], "type", json!("RollingUpdate"));
            if str_at(obj, &["spec", "strategy", "type"]) == Some("RollingUpdate") {
                default_field(
                    obj,
                    &["spec", "strategy", "rollingUpdate"],
                    "maxSurge",
                    json!("25%"),
                );
                default_field(
                    obj,
                    &["spec", "strategy", "rollingUpdate"],
                    "maxUnavailable",
                    json!("25%"),
                );
            }
            default_template(obj);
        }
        ("apps", "replicasets") => {
            default_field(obj, &["spec"], "replicas", json!(1));
            default_template(obj);
        }
        ("apps", "statefulsets") => {
            default_field(obj, &["spec"], "replicas", json!(1));
            default_field(obj, &["spec"], "podManagementPolicy", json!("OrderedReady"));
            default_field(obj, &["spec"], "revisionHistoryLimit", json!(10));
            default_field(
                obj,
                &["spec", "updateStrategy"],
                "type",
                json!("RollingUpdate"),
            );
            if str_at(obj, &["spec", "updateStrategy", "type"]) == Some("RollingUpdate") {
                default_field(
                    obj,
                    &["spec", "updateStrategy", "rollingUpdate"],
                    "partition",
                    json!(0),
                );
            }
            default_field(
                obj,
                &["spec", "persistentVolumeClaimRetentionPolicy"],
                "whenDeleted",
                json!("Retain"),
            );
            default_field(
                obj,
                &["spec", "persistentVolumeClaimRetentionPolicy"],
                "whenScaled",
                json!("Retain"),
            );
            default_template(obj);
        }
        ("apps", "daemonsets") => {
            default_field(obj, &["spec"], "revisionHistoryLimit", json!(10));
            default_field(
                obj,
                &["spec", "updateStrategy"],
                "type",
                json!("RollingUpdate"),
            );
            if str_at(obj, &["spec", "updateStrategy", "type"]) == Some("RollingUpdate") {
                default_field(
                    obj,
                    &["spec", "updateStrategy", "rollingUpdate"],
                    "maxUnavailable",
                    json!(1),
                );
                default_field(
                    obj,
                    &["spec", "updateStrategy", "rollingUpdate"],
                    "maxSurge",
                    json!(0),
                );
            }
            default_template(obj);
        }
        ("batch", "jobs") => default_job(obj),
        ("batch", "cronjobs") => {
            default_field(obj, &["spec"], "concurrencyPolicy", json!("Allow"));
            default_field(obj, &["spec"], "suspend", json!(false));
            default_field(obj, &["spec"], "successfulJobsHistoryLimit", json!(3));
            default_field(obj, &["spec"], "failedJobsHistoryLimit", json!(1));
            if let Some(t) = obj.pointer_mut("/spec/jobTemplate/spec/template") {
                default_pod_spec(value_mut(t, &["spec"]));
            }
        }
        _ => {}
    }
}

/// Defaults for an update: keeps what the server allocated on create when the new object
/// omits it (Service cluster IPs and node ports, the Job selector), then applies
/// [`default_on_create`].
pub fn default_on_update(
    resource: &ResourceRef,
    old: &Value,
    new: &mut Value,
    alloc: &mut IpAllocator,
) {
    match (resource.group.as_str(), resource.resource.as_str()) {
        ("", "services") => {
            let new_ip = str_at(new, &["spec", "clusterIP"]).unwrap_or("");
            if new_ip.is_empty() {
                for k in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                    if let Some(v) = at(old, &["spec", k]) {
                        obj_mut(new, &["spec"]).insert(k.into(), v.clone());
                    }
                }
            }
            let old_ports = at(old, &["spec", "ports"])
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for p in ports {
                    if p.get("nodePort").is_some() {
                        continue;
                    }
                    let same = old_ports.iter().find(|o| {
                        o.get("port") == p.get("port")
                            && o.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                                == p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                    });
                    if let Some(np) = same.and_then(|o| o.get("nodePort")) {
                        set(p, &["nodePort"], np.clone());
                    }
                }
            }
        }
        ("batch", "jobs") => {
            if at(new, &["spec", "selector"]).is_none()
                && let Some(sel) = at(old, &["spec", "selector"]).cloned()
            {
                obj_mut(new, &["spec"]).insert("selector".into(), sel);
            }
            if at(new, &["metadata", "uid"]).is_none()
                && let Some(u) = at(old, &["metadata", "uid"]).cloned()
            {
                obj_mut(new, &["metadata"]).insert("uid".into(), u);
            }
        }
        _ => {}
    }
    default_on_create(resource, new, alloc);
}

fn template_mut(obj: &mut Value, top: bool) -> Option<&mut Value> {
    let t = if top {
        obj.get_mut("template")?
    } else {
        obj.pointer_mut("/spec/template")?
    };
    if !t.is_object() {
        return None;
    }
    Some(value_mut(t, &["spec"]))
}

fn default_template(obj: &mut Value) {
    if let Some(spec) = template_mut(obj, false) {
        default_pod_spec(spec);
    }
}

fn default_service(obj: &mut Value, alloc: &mut IpAllocator) {
    default_field(obj, &["spec"], "type", json!("ClusterIP"));
    default_field(obj, &["spec"], "sessionAffinity", json!("None"));
    let type_ = str_at(obj, &["spec", "type"])
        .unwrap_or("ClusterIP")
        .to_string();
    if type_ != "ExternalName" {
        let ip = str_at(obj, &["spec", "clusterIP"])
            .unwrap_or("")
            .to_string();
        let ip = if ip.is_empty() {
            alloc.allocate().unwrap_or_default()
        } else {
            if ip != "None" {
                alloc.reserve(&ip);
            }
            ip
        };
        if !ip.is_empty() {
            let spec = obj_mut(obj, &["spec"]);
            spec.insert("clusterIP".into(), json!(ip));
            if spec
                .get("clusterIPs")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
            {
                spec.insert("clusterIPs".into(), json!([ip]));
            }
        }
        default_field(obj, &["spec"], "ipFamilies", json!(["IPv4"]));
        default_field(obj, &["spec"], "ipFamilyPolicy", json!("SingleStack"));
        default_field(obj, &["spec"], "internalTrafficPolicy", json!("Cluster"));
    }
    let wants_node_ports = matches!(type_.as_str(), "NodePort" | "LoadBalancer");
    if wants_node_ports {
        default_field(obj, &["spec"], "externalTrafficPolicy", json!("Cluster"));
    }
    if type_ == "LoadBalancer" {
        default_field(obj, &["spec"], "allocateLoadBalancerNodePorts", json!(true));
    }
    let headless = str_at(obj, &["spec", "clusterIP"]) == Some("None");
    if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter(|p| p.is_object()) {
            default_field(p, &[], "protocol", json!("TCP"));
            if p.get("targetPort").is_none_or(Value::is_null)
                && !(headless && p.get("port").is_none())
                && let Some(port) = p.get("port").cloned()
            {
                set(p, &["targetPort"], port);
            }
            if wants_node_ports {
                match p.get("nodePort").and_then(Value::as_u64) {
                    Some(np) => {
                        alloc.reserve_node_port(np as u16);
                    }
                    None => {
                        if let Some(np) = alloc.allocate_node_port() {
                            set(p, &["nodePort"], json!(np));
                        }
                    }
                }
            }
        }
    }
    default_field(obj, &["status"], "loadBalancer", json!({}));
}

fn image_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

fn default_containers(spec: &mut Value, field: &str) {
    let Some(cs) = spec.get_mut(field).and_then(Value::as_array_mut) else {
        return;
    };
    for c in cs.iter_mut().filter(|c| c.is_object()) {
        let image = c
            .get("image")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        default_field(c, &[], "imagePullPolicy", json!(image_pull_policy(&image)));
        default_field(
            c,
            &[],
            "terminationMessagePath",
            json!("/dev/termination-log"),
        );
        default_field(c, &[], "terminationMessagePolicy", json!("File"));
        default_field(c, &[], "resources", json!({}));
        if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut().filter(|p| p.is_object()) {
                default_field(p, &[], "protocol", json!("TCP"));
            }
        }
    }
}

/// `SetDefaults_PodSpec` and friends: what every pod spec, including templates, gets.
fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    default_field(spec, &[], "restartPolicy", json!("Always"));
    default_field(spec, &[], "dnsPolicy", json!("ClusterFirst"));
    default_field(spec, &[], "terminationGracePeriodSeconds", json!(30));
    default_field(spec, &[], "securityContext", json!({}));
    default_field(spec, &[], "schedulerName", json!(super::DEFAULT_SCHEDULER));
    default_containers(spec, "containers");
    default_containers(spec, "initContainers");
    if let Some(vols) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in vols.iter_mut() {
            for k in ["secret", "configMap", "projected", "downwardAPI"] {
                if let Some(src) = v.get_mut(k).filter(|s| s.is_object()) {
                    default_field(src, &[], "defaultMode", json!(420));
                }
            }
        }
    }
}

/// Pods additionally get admission-time defaults (service account, default tolerations,
/// priority), requests copied from limits, and an initial status.
fn default_pod(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec") {
        default_pod_spec(spec);
        default_field(spec, &[], "serviceAccountName", json!("default"));
        let sa = spec
            .get("serviceAccountName")
            .cloned()
            .unwrap_or(json!("default"));
        default_field(spec, &[], "serviceAccount", sa);
        default_field(spec, &[], "enableServiceLinks", json!(true));
        default_field(spec, &[], "priority", json!(0));
        default_field(spec, &[], "preemptionPolicy", json!("PreemptLowerPriority"));
        for field in ["containers", "initContainers"] {
            if let Some(cs) = spec.get_mut(field).and_then(Value::as_array_mut) {
                for c in cs.iter_mut() {
                    let Some(limits) = c
                        .pointer("/resources/limits")
                        .and_then(Value::as_object)
                        .cloned()
                    else {
                        continue;
                    };
                    let req = obj_mut(c, &["resources", "requests"]);
                    for (k, v) in limits {
                        req.entry(k).or_insert(v);
                    }
                }
            }
        }
        let tols = spec
            .as_object_mut()
            .map(|m| m.entry("tolerations").or_insert_with(|| json!([])));
        if let Some(Value::Array(tols)) = tols {
            for key in [
                "node.kubernetes.io/not-ready",
                "node.kubernetes.io/unreachable",
            ] {
                let has = tols.iter().any(|t| {
                    let eff = t.get("effect").and_then(Value::as_str).unwrap_or("");
                    let k = t.get("key").and_then(Value::as_str).unwrap_or("");
                    (k == key || k.is_empty()) && (eff.is_empty() || eff == "NoExecute")
                });
                if !has {
                    tols.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
                }
            }
        }
    }
    let qos = qos_class(obj);
    default_field(obj, &["status"], "phase", json!("Pending"));
    default_field(obj, &["status"], "qosClass", json!(qos));
}

/// The pod's QoS class from its containers' cpu/memory requests and limits.
pub(crate) fn qos_class(pod: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    let cs = ["containers", "initContainers"]
        .iter()
        .filter_map(|f| at(pod, &["spec", f]).and_then(Value::as_array))
        .flatten();
    for c in cs {
        let req = c.pointer("/resources/requests");
        let lim = c.pointer("/resources/limits");
        for r in ["cpu", "memory"] {
            let rq = req
                .and_then(|x| x.get(r))
                .or_else(|| lim.and_then(|x| x.get(r)));
            let lm = lim.and_then(|x| x.get(r));
            if rq.is_some() || lm.is_some() {
                any = true;
            }
            let same = match (rq.and_then(Value::as_str), lm.and_then(Value::as_str)) {
                (Some(a), Some(b)) => {
                    super::quantity::parse_milli(a).ok() == super::quantity::parse_milli(b).ok()
                }
                _ => false,
            };
            if !same {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn default_job(obj: &mut Value) {
    let spec_has = |o: &Value, k: &str| at(o, &["spec", k]).is_some_and(|v| !v.is_null());
    if !spec_has(obj, "completions") && !spec_has(obj, "parallelism") {
        default_field(obj, &["spec"], "completions", json!(1));
    }
    default_field(obj, &["spec"], "parallelism", json!(1));
    let backoff = if spec_has(obj, "backoffLimitPerIndex") {
        i64::from(i32::MAX)
    } else {
        6
    };
    default_field(obj, &["spec"], "backoffLimit", json!(backoff));
    default_field(obj, &["spec"], "completionMode", json!("NonIndexed"));
    default_field(obj, &["spec"], "suspend", json!(false));
    let replacement = if spec_has(obj, "podFailurePolicy") {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    default_field(obj, &["spec"], "podReplacementPolicy", json!(replacement));
    default_field(
        obj,
        &["metadata"],
        "uid",
        json!(uuid::Uuid::new_v4().to_string()),
    );
    let uid = str_at(obj, &["metadata", "uid"]).unwrap_or("").to_string();
    let job_name = name(obj).to_string();
    let manual = at(obj, &["spec", "manualSelector"]).and_then(Value::as_bool) == Some(true);
    if !manual {
        if at(obj, &["spec", "selector"]).is_none_or(Value::is_null) {
            obj_mut(obj, &["spec"]).insert(
                "selector".into(),
                json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
            );
        }
        let l = obj_mut(obj, &["spec", "template", "metadata", "labels"]);
        l.entry("batch.kubernetes.io/controller-uid")
            .or_insert(json!(uid));
        l.entry("controller-uid").or_insert(json!(uid));
        if !job_name.is_empty() {
            l.entry("batch.kubernetes.io/job-name")
                .or_insert(json!(job_name));
            l.entry("job-name").or_insert(json!(job_name));
        }
    }
    default_template(obj);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn services_get_cluster_ips_ports_and_defaults() {
        let mut alloc = IpAllocator::new();
        let r = ResourceRef::services();
        let mut a = svc(
            json!({"selector": {"app": "a"}, "ports": [{"port": 80}, {"name": "grpc", "port": 9000, "targetPort": "grpc"}]}),
        );
        default_on_create(&r, &mut a, &mut alloc);
        assert_eq!(a["spec"]["clusterIP"], "10.96.0.1");
        assert_eq!(a["spec"]["clusterIPs"], json!(["10.96.0.1"]));
        assert_eq!(a["spec"]["type"], "ClusterIP");
        assert_eq!(a["spec"]["sessionAffinity"], "None");
        assert_eq!(a["spec"]["ipFamilies"], json!(["IPv4"]));
        assert_eq!(a["spec"]["ipFamilyPolicy"], "SingleStack");
        assert_eq!(a["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(a["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(a["spec"]["ports"][1]["targetPort"], "grpc");
        let mut b = svc(json!({"ports": [{"port": 80}]}));
        default_on_create(&r, &mut b, &mut alloc);
        assert_eq!(b["spec"]["clusterIP"], "10.96.0.2");
        let mut fixed = svc(json!({"clusterIP": "10.96.0.3"}));
        default_on_create(&r, &mut fixed, &mut alloc);
        let mut c = svc(json!({}));
        default_on_create(&r, &mut c, &mut alloc);
        assert_eq!(c["spec"]["clusterIP"], "10.96.0.4");
        let mut headless = svc(json!({"clusterIP": "None", "ports": [{"port": 80}]}));
        default_on_create(&r, &mut headless, &mut alloc);
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
        let mut np = svc(json!({"type": "NodePort", "ports": [{"port": 80}]}));
        default_on_create(&r, &mut np, &mut alloc);
        assert_eq!(np["spec"]["ports"][0]["nodePort"], 30000);
        assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
        let mut ext = svc(json!({"type": "ExternalName", "externalName": "example.com"}));
        default_on_create(&r, &mut ext, &mut alloc);
        assert!(ext["spec"].get("clusterIP").is_none());
        // An update that omits allocated fields keeps them.
        let mut upd = svc(json!({"type": "NodePort", "ports": [{"port": 80}]}));
        default_on_update(&r, &np, &mut upd, &mut alloc);
        assert_eq!(upd["spec"]["clusterIP"], np["spec"]["clusterIP"]);
        assert_eq!(upd["spec"]["ports"][0]["nodePort"], 30000);
    }

    #[test]
    fn pods_get_spec_container_and_status_defaults() {
        let mut alloc = IpAllocator::new();
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [
            {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}], "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
            {"name": "b", "image": "ghcr.io/x/y:1.2"}
        ]}});
        default_on_create(&ResourceRef::pods(), &mut p, &mut alloc);
        let s = &p["spec"];
        assert_eq!(s["restartPolicy"], "Always");
        assert_eq!(s["dnsPolicy"], "ClusterFirst");
        assert_eq!(s["terminationGracePeriodSeconds"], 30);
        assert_eq!(s["schedulerName"], "default-scheduler");
        assert_eq!(s["serviceAccountName"], "default");
        assert_eq!(s["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(s["containers"][1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(
            s["containers"][0]["terminationMessagePath"],
            "/dev/termination-log"
        );
        assert_eq!(s["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(s["containers"][0]["resources"]["requests"]["cpu"], "1");
        assert_eq!(s["tolerations"].as_array().unwrap().len(), 2);
        assert_eq!(p["status"]["phase"], "Pending");
        assert_eq!(p["status"]["qosClass"], "Burstable");
        let before = p.clone();
        default_on_create(&ResourceRef::pods(), &mut p, &mut alloc);
        assert_eq!(p, before, "defaulting is idempotent");
    }

    #[test]
    fn deployments_replicasets_and_jobs_get_defaults() {
        let mut alloc = IpAllocator::new();
        let tmpl = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}});
        let mut d = json!({"metadata": {"name": "d", "namespace": "default"}, "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": tmpl}});
        default_on_create(&ResourceRef::deployments(), &mut d, &mut alloc);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        );
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert!(
            d["spec"]["template"]["spec"]
                .get("serviceAccountName")
                .is_none()
        );
        let mut rs = json!({"metadata": {"name": "r"}, "spec": {"template": tmpl}});
        default_on_create(&ResourceRef::replicasets(), &mut rs, &mut alloc);
        assert_eq!(rs["spec"]["replicas"], 1);
        let mut j = json!({"metadata": {"name": "train", "namespace": "default", "uid": "u1"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x:1"}]}}}});
        default_on_create(&ResourceRef::jobs(), &mut j, &mut alloc);
        let s = &j["spec"];
        assert_eq!(s["backoffLimit"], 6);
        assert_eq!(s["completions"], 1);
        assert_eq!(s["parallelism"], 1);
        assert_eq!(s["completionMode"], "NonIndexed");
        assert_eq!(s["suspend"], false);
        assert_eq!(
            s["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}})
        );
        let l = &s["template"]["metadata"]["labels"];
        assert_eq!(l["batch.kubernetes.io/controller-uid"], "u1");
        assert_eq!(l["controller-uid"], "u1");
        assert_eq!(l["batch.kubernetes.io/job-name"], "train");
        assert_eq!(l["job-name"], "train");
        assert_eq!(s["template"]["spec"]["restartPolicy"], "Never");
        let mut j2 = json!({"metadata": {"name": "q"}, "spec": {"parallelism": 3, "template": {"spec": {"containers": []}}}});
        default_on_create(&ResourceRef::jobs(), &mut j2, &mut alloc);
        assert!(j2["spec"].get("completions").is_none());
        assert!(j2["metadata"]["uid"].is_string());
    }

    #[test]
    fn allocator_skips_reserved_and_wraps() {
        let mut a = IpAllocator::with_cidr("10.0.0.0/30").unwrap();
        assert!(a.reserve("10.0.0.1"));
        assert_eq!(a.allocate().as_deref(), Some("10.0.0.2"));
        assert_eq!(a.allocate(), None);
        a.release("10.0.0.1");
        assert_eq!(a.allocate().as_deref(), Some("10.0.0.1"));
        assert!(IpAllocator::with_cidr("bogus").is_err());
    }
}

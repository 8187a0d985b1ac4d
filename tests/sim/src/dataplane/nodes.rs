//! Node objects from the `--nodes` flag, and their creation on the data plane's first tick.

use serde_json::{Map, Value, json};

use super::util::{fnv32a, name, set};
use super::{Ctx, ResourceRef};

/// Kubelet version the simulated nodes report.
pub const KUBELET_VERSION: &str = "v1.33.1";

/// Parses a `--nodes` spec into Node objects (without uid/resourceVersion/timestamps, which the
/// store and [`super::DataPlane`] fill in).
///
/// Grammar (whitespace around items is ignored; an empty spec means no nodes):
///
/// ```text
/// spec    := group ("," group)*
/// group   := prefix "=" count ["x" gpus] (":" option)*
/// option  := "label=" key "=" value                 extra node label
///          | ["taint="] key ["=" value] ":" effect   a taint; effect is NoSchedule,
///                                                   PreferNoSchedule or NoExecute
/// ```
///
/// `gpu-a100=2x8,cpu=2` gives `gpu-a100-0`, `gpu-a100-1` (8 `nvidia.com/gpu` each) and `cpu-0`,
/// `cpu-1`. `gpu-h100=1x8:nvidia.com/gpu=present:NoSchedule:label=pool=train` adds a taint and a
/// label. GPU nodes get the GPU feature discovery labels (`nvidia.com/gpu.product`, `.count`,
/// `.present`, and `.memory`/`.family` for known models); the product comes from a known model
/// token in the prefix (`a100`, `h100`, `h200`, `l4`, `l40s`, `a10g`, `t4`), otherwise
/// `NVIDIA-<PREFIX>` with a leading `gpu-` dropped. Sizes follow the matching cloud instance
/// type where one is known.
pub fn parse_nodes(spec: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for group in spec.split(',').map(str::trim).filter(|g| !g.is_empty()) {
        let g =
            parse_group(group).map_err(|e| format!("failed to parse node group {group:?}: {e}"))?;
        for i in 0..g.count {
            let index = out.len();
            out.push(node_object(&g, i, index));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for n in &out {
        if !seen.insert(name(n).to_string()) {
            return Err(format!(
                "failed to parse nodes: node {:?} is defined twice",
                name(n)
            ));
        }
    }
    Ok(out)
}

struct Group {
    prefix: String,
    count: usize,
    gpus: u32,
    labels: Vec<(String, String)>,
    taints: Vec<Value>,
}

fn valid_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 50
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn parse_group(group: &str) -> Result<Group, String> {
    let mut parts = group.split(':');
    let head = parts.next().unwrap_or("");
    let (prefix, size) = head
        .split_once('=')
        .ok_or_else(|| "expected prefix=count[xgpus]".to_string())?;
    let prefix = prefix.trim();
    if !valid_dns_label(prefix) {
        return Err(format!(
            "node name prefix {prefix:?} must be a lowercase DNS label"
        ));
    }
    let (count, gpus) = match size.trim().split_once('x') {
        Some((c, g)) => (c, g),
        None => (size.trim(), "0"),
    };
    let count: usize = count
        .trim()
        .parse()
        .map_err(|_| format!("node count {count:?} is not a number"))?;
    if count == 0 || count > 1000 {
        return Err(format!("node count {count} must be between 1 and 1000"));
    }
    let gpus: u32 = gpus
        .trim()
        .parse()
        .map_err(|_| format!("GPU count {gpus:?} is not a number"))?;
    if gpus > 64 {
        return Err(format!("GPU count {gpus} must be at most 64"));
    }
    let mut labels = Vec::new();
    let mut taints = Vec::new();
    let rest: Vec<&str> = parts.collect();
    let mut i = 0;
    while i < rest.len() {
        let tok = rest[i].trim();
        if let Some(kv) = tok.strip_prefix("label=") {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("label {kv:?} must be key=value"))?;
            if k.is_empty() {
                return Err("label key must not be empty".into());
            }
            labels.push((k.to_string(), v.to_string()));
            i += 1;
            continue;
        }
        let kv = tok.strip_prefix("taint=").unwrap_or(tok);
        let effect = rest.get(i + 1).map(|e| e.trim()).ok_or_else(|| {
            format!("taint {kv:?} needs an effect (NoSchedule, PreferNoSchedule, NoExecute)")
        })?;
        if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(format!(
                "taint effect {effect:?} must be NoSchedule, PreferNoSchedule or NoExecute"
            ));
        }
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if k.is_empty() {
            return Err("taint key must not be empty".into());
        }
        let mut t = json!({"key": k, "effect": effect});
        if !v.is_empty() {
            set(&mut t, &["value"], json!(v));
        }
        taints.push(t);
        i += 2;
    }
    Ok(Group {
        prefix: prefix.to_string(),
        count,
        gpus,
        labels,
        taints,
    })
}

struct GpuModel {
    product: &'static str,
    memory_mib: Option<u32>,
    family: Option<&'static str>,
}

fn gpu_model(prefix: &str) -> (String, Option<u32>, Option<&'static str>) {
    let known = |t: &str| -> Option<GpuModel> {
        let (product, memory_mib, family) = match t {
            "a100" => ("NVIDIA-A100-SXM4-80GB", 81920, "ampere"),
            "h100" => ("NVIDIA-H100-80GB-HBM3", 81559, "hopper"),
            "h200" => ("NVIDIA-H200", 143771, "hopper"),
            "l4" => ("NVIDIA-L4", 23034, "ada-lovelace"),
            "l40s" => ("NVIDIA-L40S", 46068, "ada-lovelace"),
            "a10g" => ("NVIDIA-A10G", 23028, "ampere"),
            "t4" => ("Tesla-T4", 15360, "turing"),
            _ => return None,
        };
        Some(GpuModel {
            product,
            memory_mib: Some(memory_mib),
            family: Some(family),
        })
    };
    if let Some(m) = prefix.split('-').find_map(known) {
        return (m.product.to_string(), m.memory_mib, m.family);
    }
    let stem = prefix.strip_prefix("gpu-").unwrap_or(prefix);
    (format!("NVIDIA-{}", stem.to_uppercase()), None, None)
}

/// (instance type, vCPUs, memory GiB) for a node of `gpus` GPUs named with `prefix`.
fn sizing(prefix: &str, gpus: u32) -> (String, u64, u64) {
    if gpus == 0 {
        return ("m6i.4xlarge".into(), 16, 64);
    }
    let token = prefix
        .split('-')
        .find(|t| matches!(*t, "a100" | "h100" | "h200" | "l4" | "l40s" | "a10g" | "t4"));
    match (token, gpus) {
        (Some("a100"), 8) => ("p4de.24xlarge".into(), 96, 1152),
        (Some("h100"), 8) => ("p5.48xlarge".into(), 192, 2048),
        (Some("h200"), 8) => ("p5e.48xlarge".into(), 192, 2048),
        (Some("l4"), 1) => ("g6.xlarge".into(), 4, 16),
        (Some("l4"), 4) => ("g6.12xlarge".into(), 48, 192),
        (Some("l4"), 8) => ("g6.48xlarge".into(), 192, 768),
        (Some("a10g"), 1) => ("g5.xlarge".into(), 4, 16),
        (Some("a10g"), 4) => ("g5.12xlarge".into(), 48, 192),
        (Some("t4"), 1) => ("g4dn.xlarge".into(), 4, 16),
        (t, n) => (
            format!("sim-{}-{}gpu", t.unwrap_or("gpu"), n),
            u64::from(n) * 12,
            u64::from(n) * 128,
        ),
    }
}

fn node_object(g: &Group, i: usize, index: usize) -> Value {
    let node_name = format!("{}-{}", g.prefix, i);
    let (instance_type, cpus, mem_gib) = sizing(&g.prefix, g.gpus);
    let zones = ["sim-1a", "sim-1b", "sim-1c"];
    let mut labels = Map::new();
    let mut put = |k: &str, v: String| {
        labels.insert(k.to_string(), Value::String(v));
    };
    put("beta.kubernetes.io/arch", "amd64".into());
    put("beta.kubernetes.io/os", "linux".into());
    put("kubernetes.io/arch", "amd64".into());
    put("kubernetes.io/os", "linux".into());
    put("kubernetes.io/hostname", node_name.clone());
    put("node.kubernetes.io/instance-type", instance_type);
    put("topology.kubernetes.io/region", "sim-1".into());
    put(
        "topology.kubernetes.io/zone",
        zones[index % zones.len()].into(),
    );
    if g.gpus > 0 {
        let (product, memory, family) = gpu_model(&g.prefix);
        put("nvidia.com/gpu.present", "true".into());
        put("nvidia.com/gpu.product", product);
        put("nvidia.com/gpu.count", g.gpus.to_string());
        if let Some(m) = memory {
            put("nvidia.com/gpu.memory", m.to_string());
        }
        if let Some(f) = family {
            put("nvidia.com/gpu.family", f.into());
        }
    }
    for (k, v) in &g.labels {
        put(k, v.clone());
    }
    let mem_ki = mem_gib * 1024 * 1024;
    let mut capacity = json!({
        "cpu": cpus.to_string(),
        "memory": format!("{mem_ki}Ki"),
        "ephemeral-storage": "209715200Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "pods": "110",
    });
    let mut allocatable = json!({
        "cpu": format!("{}m", cpus * 1000 - 100),
        "memory": format!("{}Ki", mem_ki.saturating_sub(1024 * 1024)),
        "ephemeral-storage": "193273528320",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "pods": "110",
    });
    if g.gpus > 0 {
        set(
            &mut capacity,
            &["nvidia.com/gpu"],
            json!(g.gpus.to_string()),
        );
        set(
            &mut allocatable,
            &["nvidia.com/gpu"],
            json!(g.gpus.to_string()),
        );
    }
    let h = fnv32a(node_name.as_bytes());
    let machine_id = format!(
        "{h:08x}{:08x}{:08x}{:08x}",
        h ^ 0x5a5a_5a5a,
        h.rotate_left(7),
        h.rotate_left(13)
    );
    let internal_ip = format!("172.18.{}.{}", index / 250, index % 250 + 2);
    let mut spec = json!({
        "podCIDR": format!("10.244.{}.0/24", index % 256),
        "podCIDRs": [format!("10.244.{}.0/24", index % 256)],
        "providerID": format!("sim://{node_name}"),
    });
    if !g.taints.is_empty() {
        set(&mut spec, &["taints"], Value::Array(g.taints.clone()));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node_name,
            "labels": labels,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
        },
        "spec": spec,
        "status": {
            "capacity": capacity,
            "allocatable": allocatable,
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available"},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "message": "kubelet has no disk pressure"},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "message": "kubelet has sufficient PID available"},
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"},
            ],
            "addresses": [
                {"type": "InternalIP", "address": internal_ip},
                {"type": "Hostname", "address": node_name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": machine_id,
                "systemUUID": machine_id,
                "bootID": format!("{:08x}-sim", h.rotate_left(21)),
                "kernelVersion": "6.8.0-1024-aws",
                "osImage": "Ubuntu 22.04.5 LTS",
                "containerRuntimeVersion": "containerd://2.0.5",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "images": [],
        },
    })
}

/// Creates the configured nodes that do not exist yet (with heartbeat/transition times set to
/// now, and the status written through the status subresource as a kubelet would). Returns true
/// once all exist.
pub(crate) fn ensure_nodes(ctx: &Ctx<'_>, nodes: &[Value]) -> bool {
    let r = ResourceRef::nodes();
    let mut all = true;
    for n in nodes {
        if ctx.api.get(&r, None, name(n)).is_some() {
            continue;
        }
        let mut n = n.clone();
        if let Some(conds) = n
            .pointer_mut("/status/conditions")
            .and_then(Value::as_array_mut)
        {
            for c in conds {
                set(c, &["lastHeartbeatTime"], json!(ctx.now_s));
                set(c, &["lastTransitionTime"], json!(ctx.now_s));
            }
        }
        let status = n.get("status").cloned();
        match ctx.create(&r, n) {
            Ok(created) => {
                // Stores that drop status on create get it through the status subresource.
                if created.get("status") != status.as_ref()
                    && let Some(s) = status
                    && ctx.write_status(&r, &created, s).is_err()
                {
                    all = false;
                }
            }
            Err(_) => all = false,
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gpu_and_cpu_groups() {
        let nodes = parse_nodes("gpu-a100=2x8,cpu=2").unwrap();
        let names: Vec<&str> = nodes.iter().map(name).collect();
        assert_eq!(names, ["gpu-a100-0", "gpu-a100-1", "cpu-0", "cpu-1"]);
        let a = &nodes[1];
        let l = &a["metadata"]["labels"];
        assert_eq!(l["nvidia.com/gpu.product"], "NVIDIA-A100-SXM4-80GB");
        assert_eq!(l["nvidia.com/gpu.count"], "8");
        assert_eq!(l["kubernetes.io/hostname"], "gpu-a100-1");
        assert_eq!(l["kubernetes.io/os"], "linux");
        assert_eq!(l["kubernetes.io/arch"], "amd64");
        assert_eq!(l["node.kubernetes.io/instance-type"], "p4de.24xlarge");
        assert_eq!(a["status"]["capacity"]["nvidia.com/gpu"], "8");
        assert_eq!(a["status"]["allocatable"]["nvidia.com/gpu"], "8");
        assert_eq!(a["status"]["allocatable"]["pods"], "110");
        assert_eq!(a["status"]["capacity"]["cpu"], "96");
        assert_eq!(a["status"]["nodeInfo"]["kubeletVersion"], KUBELET_VERSION);
        assert!(
            a["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        );
        let c = &nodes[2];
        assert!(
            c["metadata"]["labels"]
                .get("nvidia.com/gpu.product")
                .is_none()
        );
        assert!(c["status"]["capacity"].get("nvidia.com/gpu").is_none());
        assert_ne!(a["spec"]["podCIDR"], c["spec"]["podCIDR"]);
    }

    #[test]
    fn derives_gpu_products_from_prefix() {
        let p = |s: &str| {
            parse_nodes(s).unwrap()[0]["metadata"]["labels"]["nvidia.com/gpu.product"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(p("h100=1x8"), "NVIDIA-H100-80GB-HBM3");
        assert_eq!(p("gpu-l4=1x1"), "NVIDIA-L4");
        assert_eq!(p("gpu-x200=1x2"), "NVIDIA-X200");
        assert_eq!(p("mi300=1x8"), "NVIDIA-MI300");
    }

    #[test]
    fn parses_taints_and_labels() {
        let nodes = parse_nodes(
            "gpu-a100=1x8:nvidia.com/gpu=present:NoSchedule:taint=dedicated:NoExecute:label=pool=train",
        )
        .unwrap();
        let taints = nodes[0]["spec"]["taints"].as_array().unwrap();
        assert_eq!(taints.len(), 2);
        assert_eq!(taints[0]["key"], "nvidia.com/gpu");
        assert_eq!(taints[0]["value"], "present");
        assert_eq!(taints[0]["effect"], "NoSchedule");
        assert_eq!(taints[1]["key"], "dedicated");
        assert!(taints[1].get("value").is_none());
        assert_eq!(taints[1]["effect"], "NoExecute");
        assert_eq!(nodes[0]["metadata"]["labels"]["pool"], "train");
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in [
            "gpu",
            "gpu=x",
            "gpu=0",
            "Gpu=1",
            "gpu=1x",
            "gpu=1:k=v",
            "gpu=1:k=v:Sometimes",
            "gpu=1,gpu=1",
            "gpu=1:label=novalue",
        ] {
            assert!(parse_nodes(bad).is_err(), "{bad} should fail");
        }
        assert!(parse_nodes("").unwrap().is_empty());
        assert!(parse_nodes(" cpu=1 , ").unwrap().len() == 1);
    }
}

//! The scheduler: binds pending pods to nodes honouring resource requests (cpu, memory, pods,
//! extended resources such as `nvidia.com/gpu`), `nodeSelector`, required node affinity, taints
//! and tolerations and cordoned nodes, and marks unschedulable pods with the real scheduler's
//! `PodScheduled=False` message and a `FailedScheduling` event.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};

use super::cache::{Usage, key_of};
use super::events;
use super::labels::{map_matches, node_term_matches};
use super::quantity::{ResourceList, pod_requests, resource_list};
use super::util::{
    CondStyle, at, condition, conditions_of, i64_at, is_terminating, labels, name, namespace,
    pod_finished, set, set_condition, str_at, uid,
};
use super::{Binding, Ctx, DEFAULT_SCHEDULER, K, ResourceRef};

/// One node's filter failure: the reasons shown in the message, and whether preemption could
/// not help (`UnschedulableAndUnresolvable`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFailure {
    pub reasons: Vec<String>,
    pub unresolvable: bool,
}

/// Builds the scheduler's FitError text: `0/4 nodes are available: 2 Insufficient
/// nvidia.com/gpu, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/4 nodes are
/// available: 2 No preemption victims found for incoming pod, 2 Preemption is not helpful for
/// scheduling.` Counts are sorted as strings, as the real scheduler does.
pub fn unschedulable_message(
    num_nodes: usize,
    failures: &[NodeFailure],
    preemption_never: bool,
) -> String {
    if num_nodes == 0 {
        return "no nodes available to schedule pods".to_string();
    }
    let histogram = |items: Vec<&str>| -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for i in items {
            *counts.entry(i).or_default() += 1;
        }
        let mut v: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        v.sort();
        v.join(", ")
    };
    let reasons = histogram(
        failures
            .iter()
            .flat_map(|f| f.reasons.iter().map(String::as_str))
            .collect(),
    );
    let mut msg = format!("0/{num_nodes} nodes are available:");
    if !reasons.is_empty() {
        msg.push_str(&format!(" {reasons}."));
    }
    if preemption_never {
        msg.push_str(" preemption: not eligible due to preemptionPolicy=Never.");
    } else {
        let pre = histogram(
            failures
                .iter()
                .map(|f| {
                    if f.unresolvable {
                        "Preemption is not helpful for scheduling"
                    } else {
                        "No preemption victims found for incoming pod"
                    }
                })
                .collect(),
        );
        msg.push_str(&format!(
            " preemption: 0/{num_nodes} nodes are available: {pre}."
        ));
    }
    msg
}

/// The FitError text when a pre-filter (e.g. VolumeBinding) rejected the pod for every node:
/// `0/4 nodes are available: persistentvolumeclaim "x" not found. preemption: 0/4 nodes are
/// available: 4 Preemption is not helpful for scheduling.`
pub fn prefilter_message(num_nodes: usize, reason: &str, preemption_never: bool) -> String {
    if num_nodes == 0 {
        return "no nodes available to schedule pods".to_string();
    }
    let failures: Vec<NodeFailure> = (0..num_nodes)
        .map(|_| NodeFailure {
            reasons: Vec::new(),
            unresolvable: true,
        })
        .collect();
    let rest = unschedulable_message(num_nodes, &failures, preemption_never);
    let head = format!("0/{num_nodes} nodes are available:");
    let tail = rest.strip_prefix(&head).unwrap_or(&rest);
    format!("{head} {reason}.{tail}")
}

/// A node as the scheduler sees it.
struct NodeView<'a> {
    name: &'a str,
    labels: Map<String, Value>,
    taints: Vec<Value>,
    allocatable: ResourceList,
    unschedulable: bool,
}

impl<'a> NodeView<'a> {
    fn new(node: &'a Value) -> Self {
        NodeView {
            name: name(node),
            labels: labels(node),
            taints: {
                let mut t: Vec<Value> = at(node, &["spec", "taints"])
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                // The node lifecycle controller taints nodes that are not Ready.
                let not_ready = condition(node, "Ready")
                    .and_then(|c| c.get("status"))
                    .and_then(Value::as_str)
                    .is_some_and(|s| s != "True");
                if not_ready
                    && !t.iter().any(|x| {
                        x.get("key").and_then(Value::as_str) == Some("node.kubernetes.io/not-ready")
                    })
                {
                    t.push(json!({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}));
                }
                t
            },
            allocatable: resource_list(at(node, &["status", "allocatable"])),
            unschedulable: at(node, &["spec", "unschedulable"]).and_then(Value::as_bool)
                == Some(true),
        }
    }
}

/// Whether any toleration tolerates the taint; with the matching toleration.
pub(crate) fn toleration_for<'t>(tolerations: &'t [Value], taint: &Value) -> Option<&'t Value> {
    tolerations
        .iter()
        .find(|tol| tolerates(std::slice::from_ref(tol), taint))
}

fn tolerates(tolerations: &[Value], taint: &Value) -> bool {
    let t_key = taint.get("key").and_then(Value::as_str).unwrap_or("");
    let t_val = taint.get("value").and_then(Value::as_str).unwrap_or("");
    let t_eff = taint.get("effect").and_then(Value::as_str).unwrap_or("");
    tolerations.iter().any(|tol| {
        let eff = tol.get("effect").and_then(Value::as_str).unwrap_or("");
        if !eff.is_empty() && eff != t_eff {
            return false;
        }
        let key = tol.get("key").and_then(Value::as_str).unwrap_or("");
        let op = tol
            .get("operator")
            .and_then(Value::as_str)
            .unwrap_or("Equal");
        if key.is_empty() {
            return op == "Exists";
        }
        if key != t_key {
            return false;
        }
        match op {
            "Exists" => true,
            "Equal" => tol.get("value").and_then(Value::as_str).unwrap_or("") == t_val,
            _ => false,
        }
    })
}

pub(crate) fn pod_tolerations(pod: &Value) -> Vec<Value> {
    at(pod, &["spec", "tolerations"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn matches_node_affinity(pod: &Value, node: &NodeView<'_>) -> bool {
    if let Some(sel) = at(pod, &["spec", "nodeSelector"]).and_then(Value::as_object)
        && !map_matches(sel, &node.labels)
    {
        return false;
    }
    let required = at(
        pod,
        &[
            "spec",
            "affinity",
            "nodeAffinity",
            "requiredDuringSchedulingIgnoredDuringExecution",
        ],
    );
    match required
        .and_then(|r| r.get("nodeSelectorTerms"))
        .and_then(Value::as_array)
    {
        Some(terms) => terms
            .iter()
            .any(|t| node_term_matches(t, node.name, &node.labels)),
        None => true,
    }
}

/// Runs the filter plugins in the real order (NodeUnschedulable, TaintToleration,
/// NodeAffinity, NodeResourcesFit), stopping at the first that fails.
fn filter(
    pod: &Value,
    tols: &[Value],
    req: &ResourceList,
    node: &NodeView<'_>,
    usage: &Usage,
) -> Result<(), NodeFailure> {
    if node.unschedulable
        && !tolerates(
            tols,
            &json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}),
        )
    {
        return Err(NodeFailure {
            reasons: vec!["node(s) were unschedulable".into()],
            unresolvable: true,
        });
    }
    for taint in &node.taints {
        let eff = taint.get("effect").and_then(Value::as_str).unwrap_or("");
        if !matches!(eff, "NoSchedule" | "NoExecute") || tolerates(tols, taint) {
            continue;
        }
        return Err(NodeFailure {
            reasons: vec![format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.get("key").and_then(Value::as_str).unwrap_or(""),
                taint.get("value").and_then(Value::as_str).unwrap_or("")
            )],
            unresolvable: true,
        });
    }
    if !matches_node_affinity(pod, node) {
        return Err(NodeFailure {
            reasons: vec!["node(s) didn't match Pod's node affinity/selector".into()],
            unresolvable: true,
        });
    }
    let mut reasons = Vec::new();
    let mut unresolvable = false;
    let max_pods = node.allocatable.get("pods").copied().unwrap_or(110_000) / 1000;
    if usage.pods + 1 > max_pods {
        reasons.push("Too many pods".to_string());
    }
    for (res, amount) in req {
        if *amount <= 0 || res == "pods" {
            continue;
        }
        let alloc = node.allocatable.get(res).copied().unwrap_or(0);
        let used = usage.requested.get(res).copied().unwrap_or(0);
        if used.saturating_add(*amount) > alloc {
            reasons.push(format!("Insufficient {res}"));
            if *amount > alloc {
                unresolvable = true;
            }
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(NodeFailure {
            reasons,
            unresolvable,
        })
    }
}

/// LeastAllocated over cpu and memory (0..=100, higher is emptier after placing the pod).
fn score(req: &ResourceList, node: &NodeView<'_>, usage: &Usage) -> i128 {
    let mut total = 0;
    for r in ["cpu", "memory"] {
        let alloc = node.allocatable.get(r).copied().unwrap_or(0);
        if alloc <= 0 {
            continue;
        }
        let used = usage
            .requested
            .get(r)
            .copied()
            .unwrap_or(0)
            .saturating_add(req.get(r).copied().unwrap_or(0));
        let free = alloc.saturating_sub(used).clamp(0, alloc);
        total += (free as f64 / alloc as f64 * 100.0) as i128;
    }
    total / 2
}

fn priority(pod: &Value) -> i64 {
    i64_at(pod, &["spec", "priority"]).unwrap_or(0)
}

/// Binds the schedulable pending pods that changed (all pending pods when capacity may have
/// been freed or added: a pod gone or finished, a node or volume changed), in priority then
/// creation order.
pub(crate) fn schedule_all(ctx: &Ctx<'_>) {
    let (pods, mut usage) = ctx.with_cache(|c, w| {
        let all = w.all || w.capacity;
        let changed = w.keys.get(&K::Pod);
        let pods: Vec<std::sync::Arc<Value>> = c
            .unbound_pods()
            .filter(|p| all || changed.is_some_and(|ch| ch.contains(&key_of(p))))
            .cloned()
            .collect();
        let usage = if pods.is_empty() {
            HashMap::new()
        } else {
            c.usage().clone()
        };
        (pods, usage)
    });
    let mut pending: Vec<&Value> = pods
        .iter()
        .map(|p| &**p)
        .filter(|p| {
            str_at(p, &["spec", "nodeName"]).unwrap_or("").is_empty()
                && str_at(p, &["spec", "schedulerName"]).unwrap_or(DEFAULT_SCHEDULER)
                    == DEFAULT_SCHEDULER
                && !pod_finished(p)
                && !is_terminating(p)
        })
        .collect();
    if pending.is_empty() {
        return;
    }
    let node_objs = ctx.cached_all(K::Node);
    let node_objs = node_objs.as_slice();
    let nodes: Vec<NodeView<'_>> = node_objs.iter().map(|n| NodeView::new(n)).collect();
    pending.sort_by(|a, b| {
        priority(b)
            .cmp(&priority(a))
            .then_with(|| {
                str_at(a, &["metadata", "creationTimestamp"])
                    .cmp(&str_at(b, &["metadata", "creationTimestamp"]))
            })
            .then_with(|| (namespace(a), name(a)).cmp(&(namespace(b), name(b))))
    });
    for pod in pending {
        ctx.focus(K::Pod, pod);
        if at(pod, &["spec", "schedulingGates"])
            .and_then(Value::as_array)
            .is_some_and(|g| !g.is_empty())
        {
            mark_pending(
                ctx,
                pod,
                "SchedulingGated",
                "Scheduling is blocked due to non-empty scheduling gates",
                false,
            );
            continue;
        }
        if let Some(pre) = super::volumes::prefilter(ctx, pod) {
            let never = str_at(pod, &["spec", "preemptionPolicy"]) == Some("Never");
            let msg = prefilter_message(nodes.len(), &pre, never);
            mark_pending(ctx, pod, "Unschedulable", &msg, true);
            continue;
        }
        let req = pod_requests(pod);
        let tols = pod_tolerations(pod);
        let empty = Usage::default();
        let mut best: Option<(i128, &NodeView<'_>)> = None;
        let mut failures = Vec::new();
        for n in &nodes {
            let u = usage.get(n.name).unwrap_or(&empty);
            match filter(pod, &tols, &req, n, u) {
                Ok(()) => {
                    let s = score(&req, n, u);
                    let better = match best {
                        None => true,
                        Some((bs, bn)) => s > bs || (s == bs && n.name < bn.name),
                    };
                    if better {
                        best = Some((s, n));
                    }
                }
                Err(f) => failures.push(f),
            }
        }
        match best {
            Some((_, node)) => {
                if bind(ctx, pod, node.name) {
                    let u = usage.entry(node.name.to_string()).or_default();
                    u.pods += 1;
                    for (k, v) in &req {
                        let e = u.requested.entry(k.clone()).or_default();
                        *e = e.saturating_add(*v);
                    }
                }
            }
            None => {
                let never = str_at(pod, &["spec", "preemptionPolicy"]) == Some("Never");
                let msg = unschedulable_message(nodes.len(), &failures, never);
                mark_pending(ctx, pod, "Unschedulable", &msg, true);
            }
        }
    }
}

/// Binds the pod through the `pods/binding` subresource (one write: `spec.nodeName` and
/// `PodScheduled=True`) with the scheduler's uid precondition, and records a `Scheduled` event.
fn bind(ctx: &Ctx<'_>, pod: &Value, node: &str) -> bool {
    let b = Binding::to_node(name(pod), uid(pod), node);
    let Ok(bound) = ctx.bind(namespace(pod), &b) else {
        return false;
    };
    let message = format!(
        "Successfully assigned {}/{} to {node}",
        namespace(&bound),
        name(&bound)
    );
    events::record(
        ctx,
        &with_kind(&bound),
        "Normal",
        "Scheduled",
        &message,
        DEFAULT_SCHEDULER,
    );
    true
}

fn with_kind(pod: &Value) -> Value {
    events::subject(pod, "v1", "Pod")
}

/// Records `PodScheduled=False` with `reason`/`message` when it changed (and a
/// `FailedScheduling` warning if `event`).
fn mark_pending(ctx: &Ctx<'_>, pod: &Value, reason: &str, message: &str, event: bool) {
    let cur = condition(pod, "PodScheduled");
    let same = cur.is_some_and(|c| {
        c.get("status").and_then(Value::as_str) == Some("False")
            && c.get("reason").and_then(Value::as_str) == Some(reason)
            && c.get("message").and_then(Value::as_str) == Some(message)
    });
    if same && str_at(pod, &["status", "phase"]) == Some("Pending") {
        return;
    }
    let mut conds = conditions_of(pod);
    set_condition(
        &mut conds,
        "PodScheduled",
        "False",
        reason,
        message,
        &ctx.now_s,
        CondStyle::Pod,
        false,
    );
    let mut status = pod
        .get("status")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    set(&mut status, &["conditions"], Value::Array(conds));
    set(&mut status, &["phase"], json!("Pending"));
    if ctx.write_status(&ResourceRef::pods(), pod, status).is_ok() && event {
        events::record(
            ctx,
            &with_kind(pod),
            "Warning",
            "FailedScheduling",
            message,
            DEFAULT_SCHEDULER,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::fake::Harness;
    use crate::dataplane::{Changes, ClusterApi, ResourceRef};

    fn pod(name: &str, extra: Value) -> Value {
        let mut p = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}
        });
        crate::dataplane::util::merge(&mut p, &extra);
        p
    }

    fn gpu_pod(name: &str, gpus: u32) -> Value {
        pod(
            name,
            json!({"spec": {"containers": [{"name": "app", "image": "vllm:1", "resources": {"limits": {"nvidia.com/gpu": gpus.to_string()}}}]}}),
        )
    }

    fn node_of(h: &Harness, n: &str) -> String {
        h.api.must_get(&ResourceRef::pods(), "default", n)["spec"]["nodeName"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    #[test]
    fn message_format_matches_the_real_scheduler() {
        let f = |r: &str, u: bool| NodeFailure {
            reasons: vec![r.into()],
            unresolvable: u,
        };
        let msg = unschedulable_message(
            4,
            &[
                f("Insufficient nvidia.com/gpu", true),
                f("Insufficient nvidia.com/gpu", true),
                f("node(s) didn't match Pod's node affinity/selector", true),
                f("node(s) didn't match Pod's node affinity/selector", true),
            ],
            false,
        );
        assert_eq!(
            msg,
            "0/4 nodes are available: 2 Insufficient nvidia.com/gpu, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling."
        );
        let msg = unschedulable_message(
            3,
            &[
                f("Insufficient cpu", false),
                f("Insufficient cpu", false),
                f("node(s) had untolerated taint {a: b}", true),
            ],
            false,
        );
        assert_eq!(
            msg,
            "0/3 nodes are available: 1 node(s) had untolerated taint {a: b}, 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
        );
        assert_eq!(
            unschedulable_message(0, &[], false),
            "no nodes available to schedule pods"
        );
    }

    #[test]
    fn a_bind_is_one_write_of_node_and_scheduled_condition() {
        let mut h = Harness::new("cpu=1");
        h.tick();
        // Unschedulable first (the node is cordoned), then bound once the node is back.
        let mut n = h.api.must_get(&ResourceRef::nodes(), "", "cpu-0");
        n["spec"]["unschedulable"] = json!(true);
        h.api.update(&ResourceRef::nodes(), n).unwrap();
        h.api
            .create(&ResourceRef::pods(), pod("p", json!({})))
            .unwrap();
        h.tick();
        let p = h.api.must_get(&ResourceRef::pods(), "default", "p");
        assert_eq!(
            condition(&p, "PodScheduled").unwrap()["reason"],
            "Unschedulable"
        );
        h.dp.take_writes();
        h.api.changes();
        let mut n = h.api.must_get(&ResourceRef::nodes(), "", "cpu-0");
        n["spec"]["unschedulable"] = json!(false);
        h.api.update(&ResourceRef::nodes(), n).unwrap();
        h.now += chrono::Duration::seconds(1);
        h.tick();
        let writes = h.dp.take_writes();
        assert_eq!(writes.get("pods bind"), Some(&1), "{writes:?}");
        assert_eq!(writes.get("pods update"), None, "{writes:?}");
        // The pod's changes this pass: the bind, then the kubelet's ContainerCreating.
        let Changes::Since(changes) = h.api.changes() else {
            panic!("relist");
        };
        let pod_changes: Vec<&Value> = changes
            .iter()
            .filter(|c| c.table == "/pods")
            .map(|c| &*c.object)
            .collect();
        assert_eq!(pod_changes.len(), 2, "{pod_changes:?}");
        let bound = pod_changes[0];
        assert_eq!(bound["spec"]["nodeName"], "cpu-0");
        let c = condition(bound, "PodScheduled").unwrap();
        assert_eq!(
            (&c["status"], c.get("reason"), &c["lastTransitionTime"]),
            (
                &json!("True"),
                None,
                &json!(crate::dataplane::util::fmt_time(h.now))
            )
        );
        assert!(pod_changes[1]["status"]["containerStatuses"].is_array());
        let evs = h.events();
        let scheduled: Vec<&Value> = evs.iter().filter(|e| e["reason"] == "Scheduled").collect();
        assert_eq!(scheduled.len(), 1);
        assert_eq!(
            scheduled[0]["message"],
            "Successfully assigned default/p to cpu-0"
        );
        assert_eq!(scheduled[0]["involvedObject"]["kind"], "Pod");
        // The fake refuses a second bind as the apiserver does.
        let again = h.api.bind("default", &Binding::to_node("p", "", "cpu-1"));
        assert_eq!(
            again.unwrap_err(),
            "Operation cannot be fulfilled on pods/binding \"p\": pod p is already assigned to node \"cpu-0\""
        );
    }

    #[test]
    fn binds_gpu_pods_to_gpu_nodes_and_reports_insufficient_gpus() {
        let mut h = Harness::new("gpu-a100=2x8,cpu=2");
        for i in 0..2 {
            h.api
                .create(&ResourceRef::pods(), gpu_pod(&format!("big-{i}"), 8))
                .unwrap();
        }
        h.tick();
        let mut nodes = vec![node_of(&h, "big-0"), node_of(&h, "big-1")];
        nodes.sort();
        assert_eq!(nodes, ["gpu-a100-0", "gpu-a100-1"]);
        let p = h.api.must_get(&ResourceRef::pods(), "default", "big-0");
        assert!(
            p["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "PodScheduled" && c["status"] == "True")
        );

        h.api
            .create(&ResourceRef::pods(), gpu_pod("extra", 1))
            .unwrap();
        h.tick();
        let p = h.api.must_get(&ResourceRef::pods(), "default", "extra");
        assert!(p["spec"].get("nodeName").is_none());
        assert_eq!(p["status"]["phase"], "Pending");
        let c = condition(&p, "PodScheduled").unwrap();
        assert_eq!(c["status"], "False");
        assert_eq!(c["reason"], "Unschedulable");
        assert_eq!(
            c["message"],
            "0/4 nodes are available: 4 Insufficient nvidia.com/gpu. preemption: 0/4 nodes are available: 2 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
        );
        let evs = h.events();
        let failed: Vec<&Value> = evs
            .iter()
            .filter(|e| e["reason"] == "FailedScheduling")
            .collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0]["type"], "Warning");
        assert_eq!(failed[0]["involvedObject"]["name"], "extra");
        // Unchanged situation: no new writes, no duplicate events.
        let w = h.api.writes();
        h.run(1.0);
        assert_eq!(
            h.events()
                .iter()
                .filter(|e| e["reason"] == "FailedScheduling")
                .count(),
            1
        );
        // Deleting a GPU pod frees the node and the pending pod gets bound.
        h.api
            .delete(&ResourceRef::pods(), Some("default"), "big-0")
            .unwrap();
        h.tick();
        assert!(node_of(&h, "extra").starts_with("gpu-a100-"));
        assert!(h.api.writes() > w);
    }

    #[test]
    fn honours_node_selector_affinity_and_taints() {
        let mut h = Harness::new("gpu-a100=1x8:nvidia.com/gpu=present:NoSchedule,cpu=2");
        h.api
            .create(&ResourceRef::pods(), gpu_pod("untolerated", 1))
            .unwrap();
        h.api.create(&ResourceRef::pods(), {
            let mut p = gpu_pod("tolerated", 1);
            p["spec"]["tolerations"] = json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]);
            p
        }).unwrap();
        h.api
            .create(
                &ResourceRef::pods(),
                pod(
                    "sel",
                    json!({"spec": {"nodeSelector": {"kubernetes.io/hostname": "cpu-1"}}}),
                ),
            )
            .unwrap();
        h.api.create(&ResourceRef::pods(), pod("aff", json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-H100-80GB-HBM3"]}]}
        ]}}}}}))).unwrap();
        h.tick();
        assert_eq!(node_of(&h, "tolerated"), "gpu-a100-0");
        assert_eq!(node_of(&h, "sel"), "cpu-1");
        let un = h
            .api
            .must_get(&ResourceRef::pods(), "default", "untolerated");
        assert_eq!(
            condition(&un, "PodScheduled").unwrap()["message"],
            "0/3 nodes are available: 1 node(s) had untolerated taint {nvidia.com/gpu: present}, 2 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
        let aff = h.api.must_get(&ResourceRef::pods(), "default", "aff");
        assert_eq!(
            condition(&aff, "PodScheduled").unwrap()["message"],
            "0/3 nodes are available: 1 node(s) had untolerated taint {nvidia.com/gpu: present}, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn spreads_by_least_allocated_and_respects_cpu_memory_and_cordon() {
        let mut h = Harness::new("cpu=2");
        let req = |n: &str, cpu: &str, mem: &str| {
            pod(
                n,
                json!({"spec": {"containers": [{"name": "app", "image": "x:1", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}}),
            )
        };
        h.api
            .create(&ResourceRef::pods(), req("a", "8", "1Gi"))
            .unwrap();
        h.api
            .create(&ResourceRef::pods(), req("b", "8", "1Gi"))
            .unwrap();
        h.api
            .create(&ResourceRef::pods(), req("c", "8", "100Gi"))
            .unwrap();
        h.tick();
        assert_ne!(node_of(&h, "a"), node_of(&h, "b"));
        let c = h.api.must_get(&ResourceRef::pods(), "default", "c");
        assert_eq!(
            condition(&c, "PodScheduled").unwrap()["message"],
            "0/2 nodes are available: 2 Insufficient cpu, 2 Insufficient memory. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
        );
        let mut n = h.api.must_get(&ResourceRef::nodes(), "", "cpu-0");
        n["spec"]["unschedulable"] = json!(true);
        h.api.update(&ResourceRef::nodes(), n).unwrap();
        h.api
            .create(&ResourceRef::pods(), req("d", "100m", "1Mi"))
            .unwrap();
        h.tick();
        assert_eq!(node_of(&h, "d"), "cpu-1");
    }

    #[test]
    fn pods_for_other_schedulers_and_gated_pods_are_left_alone() {
        let mut h = Harness::new("cpu=1");
        h.api
            .create(
                &ResourceRef::pods(),
                pod("other", json!({"spec": {"schedulerName": "volcano"}})),
            )
            .unwrap();
        h.api
            .create(
                &ResourceRef::pods(),
                pod(
                    "gated",
                    json!({"spec": {"schedulingGates": [{"name": "x"}]}}),
                ),
            )
            .unwrap();
        h.tick();
        assert_eq!(node_of(&h, "other"), "");
        assert_eq!(node_of(&h, "gated"), "");
        let g = h.api.must_get(&ResourceRef::pods(), "default", "gated");
        assert_eq!(
            condition(&g, "PodScheduled").unwrap()["reason"],
            "SchedulingGated"
        );
    }
}

//! Turns observed object states into kubectl-style narration lines: one line per meaningful change
//! of a ModelEntry, AgentStack, AgentNode, Pod or Event (phase, placement, bindings, replicas,
//! objective, spec), and the operator's children coming and going, comparing the previous state of
//! the object with the new one.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

/// The kinds the sandbox watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    ModelEntry,
    AgentStack,
    AgentNode,
    Pod,
    Event,
    /// An object the operator made (`app.kubernetes.io/managed-by=hypersync-operator`), by its
    /// kubectl resource prefix (`job`, `serviceaccount`, ...).
    Child(&'static str),
}

impl Kind {
    /// The lowercase kubectl resource prefix (`modelentry/<name>`).
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::ModelEntry => "modelentry",
            Kind::AgentStack => "agentstack",
            Kind::AgentNode => "agentnode",
            Kind::Pod => "pod",
            Kind::Event => "event",
            Kind::Child(prefix) => prefix,
        }
    }
}

fn s<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

fn n(v: &Value, ptr: &str) -> Option<f64> {
    v.pointer(ptr).and_then(Value::as_f64)
}

fn i(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn list(v: &Value, ptr: &str) -> String {
    let items: Vec<&str> = v
        .pointer(ptr)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    format!("[{}]", items.join(", "))
}

/// `Name` of the object.
pub fn name(v: &Value) -> &str {
    s(v, "/metadata/name").unwrap_or("?")
}

fn phase(v: Option<&Value>) -> String {
    v.and_then(|v| s(v, "/status/phase"))
        .unwrap_or("<none>")
        .to_string()
}

fn phase_change(old: Option<&Value>, new: &Value) -> Option<String> {
    let (a, b) = (phase(old), phase(Some(new)));
    (a != b).then(|| format!("{a} -> {b}"))
}

/// Narration lines for an object that was created or changed (`old` is `None` when new).
pub fn changed(kind: Kind, old: Option<&Value>, new: &Value) -> Vec<String> {
    match kind {
        Kind::ModelEntry => model_entry(old, new),
        Kind::AgentStack => agent_stack(old, new),
        Kind::AgentNode => agent_node(old, new),
        Kind::Pod => pod(old, new),
        Kind::Event => event(old, new),
        Kind::Child(prefix) => child(prefix, old, new),
    }
}

/// The narration line for an object that went away (none for Events, which expire).
pub fn deleted(kind: Kind, old: &Value) -> Option<String> {
    match kind {
        Kind::Event => None,
        _ => Some(format!("{}/{}  deleted", kind.prefix(), name(old))),
    }
}

/// `<id>  spec changed: spec.a, spec.b (generation 3)` when the generation moved (a user's edit).
fn spec_change(id: &str, old: Option<&Value>, new: &Value) -> Option<String> {
    let old = old?;
    let generation = |v: &Value| v.pointer("/metadata/generation").and_then(Value::as_i64);
    if generation(old) == generation(new) {
        return None;
    }
    let (a, b) = (old.get("spec"), new.get("spec"));
    let keys = |v: Option<&Value>| -> BTreeSet<String> {
        v.and_then(Value::as_object)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let fields: Vec<String> = keys(a)
        .union(&keys(b))
        .filter(|k| a.and_then(|a| a.get(*k)) != b.and_then(|b| b.get(*k)))
        .map(|k| format!("spec.{k}"))
        .collect();
    let what = if fields.is_empty() {
        String::new()
    } else {
        format!(": {}", fields.join(", "))
    };
    Some(format!(
        "{id}  spec changed{what} (generation {})",
        generation(new).unwrap_or(0)
    ))
}

fn model_entry(old: Option<&Value>, new: &Value) -> Vec<String> {
    let id = format!("modelentry/{}", name(new));
    let mut out: Vec<String> = spec_change(&id, old, new).into_iter().collect();
    if old.is_none() {
        let source = if new.pointer("/spec/source/local").is_some() {
            let gpus = i(new, "/spec/source/local/gpu/count");
            let engine = s(new, "/spec/source/local/engine").unwrap_or("?");
            let mode = s(new, "/spec/source/local/scaling/mode").unwrap_or("?");
            let gpu = if gpus > 0 {
                format!(", {gpus} GPU")
            } else {
                String::new()
            };
            format!("local {engine}{gpu}, {mode}")
        } else {
            format!(
                "remote {}",
                s(new, "/spec/source/remote/provider").unwrap_or("?")
            )
        };
        out.push(format!(
            "{id}  registered  ({} {}, {source})",
            s(new, "/spec/type").unwrap_or("?"),
            list(new, "/spec/capabilities"),
        ));
    }
    let counts = |v: &Value| {
        (
            i(v, "/status/replicas/ready"),
            i(v, "/status/replicas/desired"),
            i(v, "/status/demand"),
        )
    };
    let (ready, desired, demand) = counts(new);
    let detail = format!("(replicas {ready}/{desired}, demand {demand})");
    if let Some(change) = phase_change(old, new) {
        if new.pointer("/status/phase").is_some() {
            out.push(format!("{id}  {change}  {detail}"));
        }
    } else if old.map(counts) != Some(counts(new)) && new.pointer("/status").is_some() {
        out.push(format!("{id}  {}  {detail}", phase(Some(new))));
    }
    out
}

fn bindings(v: &Value) -> String {
    let items: Vec<String> = v
        .pointer("/status/bindings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|b| {
            format!(
                "{}: {}",
                s(b, "/layer").unwrap_or("?"),
                s(b, "/modelEntry").unwrap_or("<none>")
            )
        })
        .collect();
    items.join(", ")
}

fn agent_stack(old: Option<&Value>, new: &Value) -> Vec<String> {
    let id = format!("agentstack/{}", name(new));
    let mut out: Vec<String> = spec_change(&id, old, new).into_iter().collect();
    if old.is_none() {
        let cognitive = new
            .pointer("/spec/layers/cognitive/selector/capabilities")
            .map(|_| {
                format!(
                    "cognitive by tags {}",
                    list(new, "/spec/layers/cognitive/selector/capabilities")
                )
            })
            .unwrap_or_else(|| "cognitive by name".to_string());
        out.push(format!("{id}  created  ({cognitive})"));
    }
    let b = bindings(new);
    let phase_line = phase_change(old, new);
    let bindings_changed = old.map(bindings) != Some(b.clone()) && !b.is_empty();
    if phase_line.is_some() || bindings_changed {
        let change = phase_line.unwrap_or_else(|| phase(Some(new)));
        if new.pointer("/status").is_some() {
            out.push(format!("{id}  {change}  ({b})"));
        }
    }
    out
}

/// `(r 0.412, theta 121.3 deg, tier 0)` of a placed node.
pub fn placement(v: &Value) -> Option<String> {
    let r = n(v, "/status/placement/r")?;
    let theta = n(v, "/status/placement/thetaDegrees")?;
    Some(format!(
        "r {r:.3}, theta {theta:.1} deg, tier {}",
        i(v, "/status/placement/tier")
    ))
}

fn models(v: &Value) -> String {
    let items: Vec<String> = v
        .pointer("/status/models")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|m| {
            format!(
                "{}: {}",
                s(m, "/layer").unwrap_or("?"),
                s(m, "/modelEntry").unwrap_or("?")
            )
        })
        .collect();
    items.join(", ")
}

fn objective(v: &Value) -> Option<String> {
    let metric = s(v, "/spec/objective/metric/name").unwrap_or("objective");
    let target = n(v, "/spec/objective/metric/target")?;
    let observed = n(v, "/status/objective/observed")?;
    let met = v
        .pointer("/status/objective/met")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Some(format!(
        "objective {metric} {observed}/{target}{}",
        if met { ", met" } else { "" }
    ))
}

fn agent_node(old: Option<&Value>, new: &Value) -> Vec<String> {
    let id = format!("agentnode/{}", name(new));
    let mut out: Vec<String> = spec_change(&id, old, new).into_iter().collect();
    if old.is_none() {
        let near = match (
            n(new, "/spec/placement/near/point/r"),
            n(new, "/spec/placement/near/point/thetaDegrees"),
        ) {
            (Some(r), Some(t)) => format!(", near (r {r}, theta {t} deg)"),
            _ => String::new(),
        };
        out.push(format!(
            "{id}  created  (stack {}, {} placement{near})",
            s(new, "/spec/stackRef/name").unwrap_or("?"),
            s(new, "/spec/placement/mode").unwrap_or("?"),
        ));
    }
    let mut details = Vec::new();
    let old_placement = old.and_then(placement);
    if let Some(p) = placement(new).filter(|p| old_placement.as_ref() != Some(p)) {
        details.push(p);
    }
    let m = models(new);
    if !m.is_empty() && old.map(models) != Some(m.clone()) {
        details.push(m);
    }
    let o = objective(new);
    if o.is_some() && old.and_then(objective) != o {
        details.extend(o);
    }
    match phase_change(old, new) {
        Some(change) if new.pointer("/status/phase").is_some() => {
            let d = if details.is_empty() {
                String::new()
            } else {
                format!("  ({})", details.join("; "))
            };
            out.push(format!("{id}  {change}{d}"));
        }
        _ if !details.is_empty() => {
            out.push(format!(
                "{id}  {}  ({})",
                phase(Some(new)),
                details.join("; ")
            ));
        }
        _ => {}
    }
    out
}

fn gpus(v: &Value) -> i64 {
    v.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.pointer("/resources/requests/nvidia.com~1gpu"))
        .filter_map(|q| {
            q.as_i64()
                .or_else(|| q.as_str().and_then(|s| s.parse().ok()))
        })
        .sum()
}

fn pod(old: Option<&Value>, new: &Value) -> Vec<String> {
    let id = format!("pod/{}", name(new));
    let node = s(new, "/spec/nodeName");
    let old_node = old.and_then(|o| s(o, "/spec/nodeName"));
    let change = phase_change(old, new);
    if change.is_none() && node == old_node {
        return Vec::new();
    }
    let mut details = Vec::new();
    if let Some(node) = node {
        details.push(format!("node {node}"));
    }
    let g = gpus(new);
    if g > 0 {
        details.push(format!("nvidia.com/gpu {g}"));
    }
    let d = if details.is_empty() {
        String::new()
    } else {
        format!("  ({})", details.join(", "))
    };
    vec![format!(
        "{id}  {}{d}",
        change.unwrap_or_else(|| phase(Some(new)))
    )]
}

fn event(old: Option<&Value>, new: &Value) -> Vec<String> {
    // A repeated event (series count bumped) is narrated once.
    if old.is_some() {
        return Vec::new();
    }
    let regarding = format!(
        "{}/{}",
        s(new, "/regarding/kind").unwrap_or("?").to_lowercase(),
        s(new, "/regarding/name").unwrap_or("?")
    );
    vec![format!(
        "event  {} {}  {regarding}: {}",
        s(new, "/type").unwrap_or("Normal"),
        s(new, "/reason").unwrap_or("?"),
        s(new, "/note").unwrap_or("")
    )]
}

/// A child of the operator: one line when it appears, naming its owner (its deletion is
/// [`deleted`]'s).
fn child(prefix: &str, old: Option<&Value>, new: &Value) -> Vec<String> {
    if old.is_some() {
        return Vec::new();
    }
    let owner = new
        .pointer("/metadata/ownerReferences/0")
        .map(|o| {
            format!(
                "  (owned by {}/{})",
                s(o, "/kind").unwrap_or("?").to_lowercase(),
                s(o, "/name").unwrap_or("?")
            )
        })
        .unwrap_or_default();
    vec![format!("{prefix}/{}  created{owner}", name(new))]
}

/// The last state seen of every watched object, turning each observation into narration lines.
/// Children are tracked from the start but narrated only once `children` is set (the story itself
/// shows phases, pods and Events; what the operator creates for a user's own objects is shown after).
#[derive(Default)]
pub struct Narrator {
    seen: HashMap<(Kind, String, String), Value>,
    pub children: bool,
}

impl Narrator {
    /// Lines for `obj` of `kind` in `namespace`, created or changed (or `deleted`).
    pub fn observe(
        &mut self,
        kind: Kind,
        namespace: &str,
        obj: &Value,
        deleted: bool,
    ) -> Vec<String> {
        let key = (kind, namespace.to_string(), name(obj).to_string());
        let lines: Vec<String> = if deleted {
            self.seen.remove(&key);
            self::deleted(kind, obj).into_iter().collect()
        } else {
            let lines = changed(kind, self.seen.get(&key), obj);
            self.seen.insert(key, obj.clone());
            lines
        };
        if matches!(kind, Kind::Child(_)) && !self.children {
            return Vec::new();
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deepseek(status: Value) -> Value {
        json!({"metadata": {"name": "deepseek-coder-33b"},
            "spec": {"type": "LLM", "capabilities": ["coding", "security"],
                "source": {"local": {"engine": "VLLM", "gpu": {"count": 4}, "scaling": {"mode": "OnDemand"}}}},
            "status": status})
    }

    #[test]
    fn model_entry_registration_and_phase_changes() {
        let idle =
            deepseek(json!({"phase": "Idle", "replicas": {"desired": 0, "ready": 0}, "demand": 0}));
        let lines = changed(Kind::ModelEntry, None, &idle);
        assert_eq!(
            lines,
            [
                "modelentry/deepseek-coder-33b  registered  (LLM [coding, security], local VLLM, 4 GPU, OnDemand)",
                "modelentry/deepseek-coder-33b  <none> -> Idle  (replicas 0/0, demand 0)"
            ]
        );
        let prov = deepseek(
            json!({"phase": "Provisioning", "replicas": {"desired": 1, "ready": 0}, "demand": 1}),
        );
        assert_eq!(
            changed(Kind::ModelEntry, Some(&idle), &prov),
            ["modelentry/deepseek-coder-33b  Idle -> Provisioning  (replicas 0/1, demand 1)"]
        );
        assert!(changed(Kind::ModelEntry, Some(&prov), &prov).is_empty());
        let demand0 = deepseek(
            json!({"phase": "Provisioning", "replicas": {"desired": 1, "ready": 0}, "demand": 0}),
        );
        assert_eq!(
            changed(Kind::ModelEntry, Some(&prov), &demand0),
            ["modelentry/deepseek-coder-33b  Provisioning  (replicas 0/1, demand 0)"]
        );
    }

    #[test]
    fn agent_node_placement_and_objective() {
        let spec = json!({"stackRef": {"name": "s"}, "placement": {"mode": "Semantic", "near": {"point": {"r": 0.4, "thetaDegrees": 120}}},
            "objective": {"metric": {"name": "findings_triaged", "target": 10}}});
        let pending = json!({"metadata": {"name": "a"}, "spec": spec});
        assert_eq!(
            changed(Kind::AgentNode, None, &pending),
            ["agentnode/a  created  (stack s, Semantic placement, near (r 0.4, theta 120 deg))"]
        );
        let placed = json!({"metadata": {"name": "a"}, "spec": spec, "status": {"phase": "Placed",
            "placement": {"r": 0.41234, "thetaDegrees": 121.26, "tier": 1}}});
        assert_eq!(
            changed(Kind::AgentNode, Some(&pending), &placed),
            ["agentnode/a  <none> -> Placed  (r 0.412, theta 121.3 deg, tier 1)"]
        );
        let mut reported = placed.clone();
        reported["status"]["objective"] = json!({"observed": 7.0, "met": false});
        assert_eq!(
            changed(Kind::AgentNode, Some(&placed), &reported),
            ["agentnode/a  Placed  (objective findings_triaged 7/10)"]
        );
        assert_eq!(
            deleted(Kind::AgentNode, &reported).as_deref(),
            Some("agentnode/a  deleted")
        );
    }

    #[test]
    fn pods_show_node_and_gpus_and_events_once() {
        let pending = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"resources": {"requests": {"nvidia.com/gpu": "4"}}}]},
            "status": {"phase": "Pending"}});
        let mut running = pending.clone();
        running["spec"]["nodeName"] = json!("gpu-a100-0");
        running["status"]["phase"] = json!("Running");
        assert_eq!(
            changed(Kind::Pod, Some(&pending), &running),
            ["pod/p  Pending -> Running  (node gpu-a100-0, nvidia.com/gpu 4)"]
        );
        let ev = json!({"metadata": {"name": "e"}, "type": "Normal", "reason": "Placed",
            "regarding": {"kind": "AgentNode", "name": "a"}, "note": "placed"});
        assert_eq!(
            changed(Kind::Event, None, &ev),
            ["event  Normal Placed  agentnode/a: placed"]
        );
        assert!(changed(Kind::Event, Some(&ev), &ev).is_empty());
        assert_eq!(deleted(Kind::Event, &ev), None);
    }

    #[test]
    fn a_user_edit_names_the_spec_fields_it_changed() {
        let v1 = json!({"metadata": {"name": "a", "generation": 1},
            "spec": {"stackRef": {"name": "s"}, "lifecycle": {"mode": "Ephemeral"}}, "status": {"phase": "Running"}});
        let mut status_only = v1.clone();
        status_only["status"]["objective"] = json!({"observed": 1.0});
        assert!(changed(Kind::AgentNode, Some(&v1), &status_only).is_empty());
        let mut v2 = v1.clone();
        v2["metadata"]["generation"] = json!(2);
        v2["spec"]["lifecycle"] = json!({"mode": "Persistent"});
        v2["spec"]["runtime"] = json!({"image": "busybox"});
        assert_eq!(
            changed(Kind::AgentNode, Some(&v1), &v2),
            ["agentnode/a  spec changed: spec.lifecycle, spec.runtime (generation 2)"]
        );
        let mut me2 = deepseek(json!({"phase": "Idle"}));
        let me1 = me2.clone();
        me2["metadata"]["generation"] = json!(2);
        me2["spec"]["capabilities"] = json!(["coding"]);
        assert_eq!(
            changed(Kind::ModelEntry, Some(&me1), &me2),
            ["modelentry/deepseek-coder-33b  spec changed: spec.capabilities (generation 2)"]
        );
    }

    #[test]
    fn children_are_narrated_only_once_asked_for() {
        let job = json!({"metadata": {"name": "a", "namespace": "default",
            "ownerReferences": [{"kind": "AgentNode", "name": "a"}]}});
        let mut narrator = Narrator::default();
        assert!(
            narrator
                .observe(Kind::Child("job"), "default", &job, false)
                .is_empty()
        );
        narrator.children = true;
        // Seen before: no second "created".
        assert!(
            narrator
                .observe(Kind::Child("job"), "default", &job, false)
                .is_empty()
        );
        let mut other = job.clone();
        other["metadata"]["name"] = json!("b");
        assert_eq!(
            narrator.observe(Kind::Child("job"), "default", &other, false),
            ["job/b  created  (owned by agentnode/a)"]
        );
        assert_eq!(
            narrator.observe(Kind::Child("job"), "default", &other, true),
            ["job/b  deleted"]
        );
        let node = json!({"metadata": {"name": "a"}, "spec": {"stackRef": {"name": "s"}}});
        assert_eq!(
            narrator.observe(Kind::AgentNode, "default", &node, false),
            ["agentnode/a  created  (stack s, ? placement)"]
        );
    }
}

//! The invariants checked after the chaos, computed from a snapshot of the namespace (pure: no
//! client), each with how many objects it covered and the objects violating it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use crate::scenario::{NodeKind, ON_DEMAND, PlannedNode};

/// Kinds whose objects are children of the operator's objects (checked for orphans).
pub const CHILD_KINDS: [&str; 10] = [
    "Job",
    "Pod",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "Deployment",
    "ReplicaSet",
    "Service",
    "NetworkPolicy",
    "PersistentVolumeClaim",
];

/// Every listed object of the chaos namespace, by kind, plus the operator's logs.
#[derive(Default)]
pub struct Snapshot {
    pub objects: BTreeMap<&'static str, Vec<Value>>,
    /// The last state of each AgentNode seen deleted, by name.
    pub deleted: HashMap<String, Value>,
    /// Lines of the operator's logs mentioning a panic, with the log's name.
    pub panics: Vec<String>,
}

/// One checked invariant.
#[derive(Debug)]
pub struct Invariant {
    pub name: &'static str,
    pub checked: usize,
    pub violations: Vec<String>,
}

impl Snapshot {
    fn of(&self, kind: &str) -> &[Value] {
        self.objects
            .get(kind)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn name(v: &Value) -> &str {
    s(v, "/metadata/name")
}

fn phase(v: &Value) -> &str {
    s(v, "/status/phase")
}

fn met(v: &Value) -> bool {
    v.pointer("/status/objective/met").and_then(Value::as_bool) == Some(true)
}

fn owners(v: &Value) -> impl Iterator<Item = (&str, &str, &str)> {
    v.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|o| (s(o, "/kind"), s(o, "/name"), s(o, "/uid")))
}

/// All invariants, in table order.
pub fn check(snap: &Snapshot, planned: &[PlannedNode]) -> Vec<Invariant> {
    let kind_of: HashMap<&str, NodeKind> =
        planned.iter().map(|p| (p.name.as_str(), p.kind)).collect();
    let nodes = snap.of("AgentNode");
    let live: HashMap<&str, &Value> = nodes.iter().map(|n| (name(n), n)).collect();
    let live_uids: BTreeSet<&str> = nodes.iter().map(|n| s(n, "/metadata/uid")).collect();
    let mut out = Vec::new();

    // Ephemeral nodes: met (or completed), then dissolved.
    let ephemeral: Vec<&PlannedNode> = planned
        .iter()
        .filter(|p| p.kind != NodeKind::Persistent)
        .collect();
    out.push(Invariant {
        name: "ephemeral nodes dissolved",
        checked: ephemeral.len(),
        violations: ephemeral
            .iter()
            .filter_map(|p| {
                live.get(p.name.as_str()).map(|n| {
                    format!(
                        "agentnode/{} still there: phase {:?}, objective met {}",
                        p.name,
                        phase(n),
                        met(n)
                    )
                })
            })
            .collect(),
    });
    let gone: Vec<&PlannedNode> = ephemeral
        .iter()
        .copied()
        .filter(|p| !live.contains_key(p.name.as_str()))
        .collect();
    out.push(Invariant {
        name: "dissolved nodes had met their objective",
        checked: gone.len(),
        violations: gone
            .iter()
            .filter_map(|p| match snap.deleted.get(&p.name) {
                None => Some(format!("agentnode/{}: its deletion was not seen", p.name)),
                Some(last) if met(last) || phase(last) == "Succeeded" => None,
                Some(last) => Some(format!(
                    "agentnode/{} deleted in phase {:?}, objective met {}",
                    p.name,
                    phase(last),
                    met(last)
                )),
            })
            .collect(),
    });
    let dissolved_events: BTreeSet<&str> = snap
        .of("Event")
        .iter()
        .filter(|e| s(e, "/reason") == "Dissolved")
        .map(|e| s(e, "/regarding/name"))
        .collect();
    out.push(Invariant {
        name: "dissolved nodes have a Dissolved Event",
        checked: gone.len(),
        violations: gone
            .iter()
            .filter(|p| !dissolved_events.contains(p.name.as_str()))
            .map(|p| format!("agentnode/{}: no Dissolved Event", p.name))
            .collect(),
    });

    // Persistent nodes: kept and running.
    let persistent: Vec<&PlannedNode> = planned
        .iter()
        .filter(|p| p.kind == NodeKind::Persistent)
        .collect();
    out.push(Invariant {
        name: "persistent nodes kept and running",
        checked: persistent.len(),
        violations: persistent
            .iter()
            .filter_map(|p| match live.get(p.name.as_str()) {
                None => Some(format!("agentnode/{} (Persistent) was deleted", p.name)),
                Some(n) if matches!(phase(n), "Running" | "Succeeded") => None,
                Some(n) => Some(format!(
                    "agentnode/{} (Persistent) in phase {:?}",
                    p.name,
                    phase(n)
                )),
            })
            .collect(),
    });

    // Exactly one workload per live node; none for gone ones.
    let mut workloads: HashMap<&str, Vec<String>> = HashMap::new();
    let mut orphan_workloads = Vec::new();
    let mut workload_count = 0;
    for kind in ["Job", "Deployment"] {
        for w in snap.of(kind) {
            for (okind, oname, ouid) in owners(w) {
                if okind != "AgentNode" {
                    continue;
                }
                workload_count += 1;
                if live_uids.contains(ouid) {
                    workloads.entry(ouid).or_default().push(format!(
                        "{}/{}",
                        kind.to_lowercase(),
                        name(w)
                    ));
                } else {
                    orphan_workloads.push(format!(
                        "{}/{} of gone agentnode/{oname}",
                        kind.to_lowercase(),
                        name(w)
                    ));
                }
            }
        }
    }
    out.push(Invariant {
        name: "one workload per live node",
        checked: nodes.len(),
        violations: nodes
            .iter()
            .filter_map(|n| {
                let w = workloads
                    .get(s(n, "/metadata/uid"))
                    .cloned()
                    .unwrap_or_default();
                (w.len() != 1)
                    .then(|| format!("agentnode/{}: {} workloads {w:?}", name(n), w.len()))
            })
            .collect(),
    });
    out.push(Invariant {
        name: "no workload for a gone node",
        checked: workload_count,
        violations: orphan_workloads,
    });

    // No orphaned child: every owner reference points at an existing object.
    let mut uids: BTreeSet<&str> = BTreeSet::new();
    for list in snap.objects.values() {
        uids.extend(list.iter().map(|o| s(o, "/metadata/uid")));
    }
    let mut children = 0;
    let mut orphans = Vec::new();
    for kind in CHILD_KINDS {
        for o in snap.of(kind) {
            for (okind, oname, ouid) in owners(o) {
                children += 1;
                if !uids.contains(ouid) {
                    orphans.push(format!(
                        "{}/{} owned by gone {}/{oname}",
                        kind.to_lowercase(),
                        name(o),
                        okind.to_lowercase()
                    ));
                }
            }
        }
    }
    out.push(Invariant {
        name: "no orphaned child",
        checked: children,
        violations: orphans,
    });

    // Nothing stuck deleting.
    let all = snap.objects.iter().filter(|(k, _)| **k != "Event");
    let mut total = 0;
    let mut stuck = Vec::new();
    for (kind, list) in all {
        total += list.len();
        for o in list {
            if let Some(ts) = o
                .pointer("/metadata/deletionTimestamp")
                .and_then(Value::as_str)
            {
                stuck.push(format!(
                    "{}/{} deleting since {ts}, finalizers {}",
                    kind.to_lowercase(),
                    name(o),
                    o.pointer("/metadata/finalizers").unwrap_or(&Value::Null)
                ));
            }
        }
    }
    out.push(Invariant {
        name: "no object stuck with a deletionTimestamp",
        checked: total,
        violations: stuck,
    });

    // ModelEntry status.demand equals the live nodes bound to it.
    let mut bound: HashMap<&str, i64> = HashMap::new();
    for n in nodes {
        let persistent = kind_of.get(name(n)) == Some(&NodeKind::Persistent);
        let done = matches!(phase(n), "Succeeded" | "Failed" | "Dissolving") || met(n);
        if n.pointer("/metadata/deletionTimestamp").is_some() || (!persistent && done) {
            continue;
        }
        let models: BTreeSet<&str> = n
            .pointer("/status/models")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|m| s(m, "/modelEntry"))
            .filter(|m| !m.is_empty())
            .collect();
        for m in models {
            *bound.entry(m).or_default() += 1;
        }
    }
    let models = snap.of("ModelEntry");
    out.push(Invariant {
        name: "model demand equals live bound nodes",
        checked: models.len(),
        violations: models
            .iter()
            .filter_map(|m| {
                let demand = m
                    .pointer("/status/demand")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let want = bound.get(name(m)).copied().unwrap_or(0);
                (demand != want).then(|| {
                    format!(
                        "modelentry/{}: demand {demand}, bound nodes {want}",
                        name(m)
                    )
                })
            })
            .collect(),
    });

    // The OnDemand model is back at 0 replicas.
    let od: Vec<&Value> = snap
        .of("Deployment")
        .iter()
        .filter(|d| owners(d).any(|(k, n, _)| k == "ModelEntry" && n == ON_DEMAND))
        .collect();
    let mut od_violations: Vec<String> = od
        .iter()
        .filter_map(|d| {
            let r = d
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            (r != 0).then(|| format!("deployment/{} of {ON_DEMAND}: {r} replicas", name(d)))
        })
        .collect();
    if od.is_empty() {
        od_violations.push(format!("no Deployment of modelentry/{ON_DEMAND}"));
    }
    out.push(Invariant {
        name: "OnDemand model back to 0 replicas",
        checked: od.len(),
        violations: od_violations,
    });

    out.push(Invariant {
        name: "no panic in the operator's logs",
        checked: 1,
        violations: snap.panics.clone(),
    });
    out
}

/// The table: invariant, objects checked, violations; then the first 10 violating objects of each.
pub fn render(invariants: &[Invariant]) -> String {
    let mut out = format!(
        "{:<44} {:>8} {:>10}\n",
        "invariant", "checked", "violations"
    );
    for i in invariants {
        let mark = if i.violations.is_empty() {
            "ok"
        } else {
            "FAIL"
        };
        out += &format!(
            "{:<44} {:>8} {:>10}  {mark}\n",
            i.name,
            i.checked,
            i.violations.len()
        );
    }
    for i in invariants.iter().filter(|i| !i.violations.is_empty()) {
        out += &format!(
            "\n{} ({} violations, first 10):\n",
            i.name,
            i.violations.len()
        );
        for v in i.violations.iter().take(10) {
            out += &format!("  {v}\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn planned(name: &str, kind: NodeKind) -> PlannedNode {
        PlannedNode {
            name: name.into(),
            kind,
            object: Value::Null,
        }
    }

    fn obj(kind: &str, name: &str, uid: &str, owner: Option<(&str, &str, &str)>) -> Value {
        let mut v = json!({"kind": kind, "metadata": {"name": name, "uid": uid}});
        if let Some((k, n, u)) = owner {
            v["metadata"]["ownerReferences"] = json!([{"kind": k, "name": n, "uid": u}]);
        }
        v
    }

    /// A converged namespace: one Persistent node with its Deployment, one dissolved node.
    fn converged() -> (Snapshot, Vec<PlannedNode>) {
        let mut snap = Snapshot::default();
        let mut p = obj("AgentNode", "p", "u-p", None);
        p["status"] = json!({"phase": "Running", "models": [{"layer": "cognitive", "modelEntry": "remote-llm"}]});
        snap.objects.insert("AgentNode", vec![p]);
        snap.objects.insert(
            "Deployment",
            vec![
                obj("Deployment", "p", "u-pd", Some(("AgentNode", "p", "u-p"))),
                {
                    let mut d = obj(
                        "Deployment",
                        "od",
                        "u-od",
                        Some(("ModelEntry", ON_DEMAND, "u-m")),
                    );
                    d["spec"] = json!({"replicas": 0});
                    d
                },
            ],
        );
        let mut remote = obj("ModelEntry", "remote-llm", "u-r", None);
        remote["status"] = json!({"demand": 1});
        snap.objects.insert(
            "ModelEntry",
            vec![obj("ModelEntry", ON_DEMAND, "u-m", None), remote],
        );
        snap.objects.insert(
            "Event",
            vec![json!({"reason": "Dissolved", "regarding": {"name": "e"}})],
        );
        snap.deleted.insert(
            "e".into(),
            json!({"status": {"phase": "Succeeded", "objective": {"met": true}}}),
        );
        (
            snap,
            vec![
                planned("p", NodeKind::Persistent),
                planned("e", NodeKind::Metric),
            ],
        )
    }

    fn failing(invs: &[Invariant]) -> Vec<&'static str> {
        invs.iter()
            .filter(|i| !i.violations.is_empty())
            .map(|i| i.name)
            .collect()
    }

    #[test]
    fn a_converged_namespace_passes() {
        let (snap, planned) = converged();
        let invs = check(&snap, &planned);
        assert_eq!(failing(&invs), Vec::<&str>::new(), "{}", render(&invs));
    }

    #[test]
    fn each_breakage_is_caught() {
        let (mut snap, planned) = converged();
        // An orphaned Job of a gone node, a stuck Role, a wrong demand, a scaled-up OnDemand model,
        // the Persistent node deleted, a panic.
        snap.objects.insert(
            "Job",
            vec![obj("Job", "e", "u-j", Some(("AgentNode", "e", "u-e")))],
        );
        let mut role = obj("Role", "r", "u-role", None);
        role["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        snap.objects.insert("Role", vec![role]);
        snap.objects.get_mut("ModelEntry").unwrap()[1]["status"]["demand"] = json!(3);
        snap.objects.get_mut("Deployment").unwrap()[1]["spec"]["replicas"] = json!(1);
        snap.panics
            .push("operator-1.log: thread 'x' panicked at src/x.rs".into());
        let invs = check(&snap, &planned);
        let failed = failing(&invs);
        for name in [
            "no workload for a gone node",
            "no orphaned child",
            "no object stuck with a deletionTimestamp",
            "model demand equals live bound nodes",
            "OnDemand model back to 0 replicas",
            "no panic in the operator's logs",
        ] {
            assert!(failed.contains(&name), "{name} not caught: {failed:?}");
        }

        let (mut snap, planned) = converged();
        snap.objects.insert("AgentNode", vec![]);
        snap.deleted
            .insert("e".into(), json!({"status": {"phase": "Failed"}}));
        snap.objects.insert("Event", vec![]);
        let failed_now = check(&snap, &planned);
        let failed = failing(&failed_now);
        for name in [
            "persistent nodes kept and running",
            "dissolved nodes had met their objective",
            "dissolved nodes have a Dissolved Event",
            "no orphaned child",
        ] {
            assert!(failed.contains(&name), "{name} not caught: {failed:?}");
        }
    }

    #[test]
    fn a_leftover_ephemeral_node_fails_convergence() {
        let (mut snap, planned) = converged();
        let mut e = obj("AgentNode", "e", "u-e", None);
        e["status"] = json!({"phase": "Running"});
        snap.objects.get_mut("AgentNode").unwrap().push(e);
        let invs = check(&snap, &planned);
        assert!(failing(&invs).contains(&"ephemeral nodes dissolved"));
        assert!(render(&invs).contains("agentnode/e still there"));
    }
}

//! The seed story's milestones (models registered, stack resolved, node placed, model provisioned,
//! agent running, objective met, node dissolved, model released) tracked from observed objects,
//! with the elapsed time each was reached and what to report when the story stalls.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::narrate::Kind;

/// One step of the story, in story order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Milestone {
    ModelsRegistered,
    StackResolved,
    NodePlaced,
    ModelProvisioned,
    NodeRunning,
    ObjectiveMet,
    NodeSucceeded,
    NodeDissolved,
    ModelReleased,
}

impl Milestone {
    pub const ALL: [Milestone; 9] = [
        Milestone::ModelsRegistered,
        Milestone::StackResolved,
        Milestone::NodePlaced,
        Milestone::ModelProvisioned,
        Milestone::NodeRunning,
        Milestone::ObjectiveMet,
        Milestone::NodeSucceeded,
        Milestone::NodeDissolved,
        Milestone::ModelReleased,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Milestone::ModelsRegistered => "the ModelEntries registered",
            Milestone::StackResolved => "the stack Resolved (its cognitive layer bound by tags)",
            Milestone::NodePlaced => "the AgentNode placed on the disk",
            Milestone::ModelProvisioned => "the on-demand model provisioned (ready replicas >= 1)",
            Milestone::NodeRunning => "the AgentNode Running",
            Milestone::ObjectiveMet => "the objective reported met",
            Milestone::NodeSucceeded => "the AgentNode Succeeded",
            Milestone::NodeDissolved => "the AgentNode dissolved (deleted)",
            Milestone::ModelReleased => "the model released to 0 replicas (phase Idle)",
        }
    }
}

/// What the driver should do after an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The node is Running: start reporting its objective as its agent.
    StartAgent,
    /// The node's life is over: snapshot the per-node API call count.
    NodeGone,
}

/// Progress of the story.
#[derive(Debug)]
pub struct Story {
    pub models: BTreeSet<String>,
    pub stack: String,
    pub node: String,
    /// The cognitive model the stack resolved to.
    pub model: Option<String>,
    /// Placement `r`, `theta` degrees and tier.
    pub placement: Option<(f64, f64, i64)>,
    /// GPUs requested by the first scheduled pod of the model.
    pub model_gpus: Option<i64>,
    reached: Vec<(Milestone, f64)>,
    seen_models: BTreeSet<String>,
    model_phase: String,
    model_desired: i64,
    node_phase: String,
}

impl Story {
    /// A story about `node` of `stack`, with these ModelEntries expected.
    pub fn new(models: BTreeSet<String>, stack: &str, node: &str) -> Self {
        Story {
            models,
            stack: stack.to_string(),
            node: node.to_string(),
            model: None,
            placement: None,
            model_gpus: None,
            reached: Vec::new(),
            seen_models: BTreeSet::new(),
            model_phase: String::new(),
            model_desired: 0,
            node_phase: String::new(),
        }
    }

    pub fn reached(&self, m: Milestone) -> Option<f64> {
        self.reached.iter().find(|(x, _)| *x == m).map(|(_, t)| *t)
    }

    pub fn milestones(&self) -> &[(Milestone, f64)] {
        &self.reached
    }

    pub fn complete(&self) -> bool {
        self.reached(Milestone::ModelReleased).is_some()
    }

    /// Milestones not reached yet.
    pub fn pending(&self) -> Vec<Milestone> {
        Milestone::ALL
            .into_iter()
            .filter(|m| self.reached(*m).is_none())
            .collect()
    }

    /// The last observed phases, for a stall report.
    pub fn state_line(&self) -> String {
        format!(
            "agentnode/{} phase {}, modelentry/{} phase {} (desired {})",
            self.node,
            if self.node_phase.is_empty() {
                "<none>"
            } else {
                &self.node_phase
            },
            self.model.as_deref().unwrap_or("?"),
            if self.model_phase.is_empty() {
                "<none>"
            } else {
                &self.model_phase
            },
            self.model_desired
        )
    }

    fn reach(&mut self, m: Milestone, t: f64, actions: &mut Vec<Action>) -> bool {
        if self.reached(m).is_some() {
            return false;
        }
        self.reached.push((m, t));
        match m {
            Milestone::NodeRunning => actions.push(Action::StartAgent),
            Milestone::NodeDissolved => actions.push(Action::NodeGone),
            _ => {}
        }
        true
    }

    /// Feed an object state (`None` = deleted) observed `t` seconds into the story.
    pub fn observe(&mut self, kind: Kind, obj: &Value, deleted: bool, t: f64) -> Vec<Action> {
        let mut actions = Vec::new();
        let name = crate::narrate::name(obj).to_string();
        let phase = obj
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        match kind {
            Kind::ModelEntry => {
                if !deleted {
                    self.seen_models.insert(name.clone());
                }
                if !self.models.is_empty() && self.models.is_subset(&self.seen_models) {
                    self.reach(Milestone::ModelsRegistered, t, &mut actions);
                }
                if Some(&name) == self.model.as_ref() {
                    self.model_phase = phase.clone();
                    let ready = obj
                        .pointer("/status/replicas/ready")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    self.model_desired = obj
                        .pointer("/status/replicas/desired")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    if ready >= 1 && self.reached(Milestone::NodePlaced).is_some() {
                        self.reach(Milestone::ModelProvisioned, t, &mut actions);
                    }
                    if self.reached(Milestone::NodeDissolved).is_some()
                        && self.reached(Milestone::ModelProvisioned).is_some()
                        && phase == "Idle"
                        && self.model_desired == 0
                    {
                        self.reach(Milestone::ModelReleased, t, &mut actions);
                    }
                }
            }
            Kind::AgentStack if name == self.stack && !deleted => {
                let cognitive = obj
                    .pointer("/status/bindings")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|b| b.get("layer").and_then(Value::as_str) == Some("cognitive"))
                    .and_then(|b| b.get("modelEntry").and_then(Value::as_str));
                // The latest binding counts: a stack may first bind a fallback (Degraded) before
                // the selected entry has a status.
                if let Some(m) = cognitive {
                    self.model = Some(m.to_string());
                    if phase == "Resolved" {
                        self.reach(Milestone::StackResolved, t, &mut actions);
                    }
                }
            }
            Kind::AgentNode if name == self.node => {
                if deleted {
                    self.node_phase = "<deleted>".into();
                    self.reach(Milestone::NodeDissolved, t, &mut actions);
                } else {
                    self.node_phase = phase.clone();
                    if let (Some(r), Some(th)) = (
                        obj.pointer("/status/placement/r").and_then(Value::as_f64),
                        obj.pointer("/status/placement/thetaDegrees")
                            .and_then(Value::as_f64),
                    ) {
                        let tier = obj
                            .pointer("/status/placement/tier")
                            .and_then(Value::as_i64)
                            .unwrap_or(0);
                        self.placement = Some((r, th, tier));
                        self.reach(Milestone::NodePlaced, t, &mut actions);
                    }
                    if phase == "Running" {
                        self.reach(Milestone::NodeRunning, t, &mut actions);
                    }
                    if obj
                        .pointer("/status/objective/met")
                        .and_then(Value::as_bool)
                        == Some(true)
                    {
                        self.reach(Milestone::ObjectiveMet, t, &mut actions);
                    }
                    if phase == "Succeeded" {
                        self.reach(Milestone::NodeSucceeded, t, &mut actions);
                    }
                }
            }
            Kind::Pod if !deleted && self.model_gpus.is_none() => {
                let owned_by_model = self.model.as_deref().is_some_and(|m| {
                    obj.pointer("/metadata/labels")
                        .and_then(Value::as_object)
                        .is_some_and(|l| l.values().any(|v| v.as_str() == Some(m)))
                });
                let scheduled = obj.pointer("/spec/nodeName").is_some();
                if owned_by_model && scheduled {
                    let gpus: i64 = obj
                        .pointer("/spec/containers")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c.pointer("/resources/requests/nvidia.com~1gpu"))
                        .filter_map(|q| {
                            q.as_i64()
                                .or_else(|| q.as_str().and_then(|s| s.parse().ok()))
                        })
                        .sum();
                    self.model_gpus = Some(gpus);
                }
            }
            _ => {}
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn me(name: &str, phase: &str, ready: i64, desired: i64) -> Value {
        json!({"metadata": {"name": name}, "status": {"phase": phase, "replicas": {"ready": ready, "desired": desired}}})
    }

    fn node(phase: &str, met: bool) -> Value {
        json!({"metadata": {"name": "n"}, "status": {"phase": phase,
            "placement": {"r": 0.4, "thetaDegrees": 120.0, "tier": 1}, "objective": {"met": met}}})
    }

    #[test]
    fn full_story_in_order_completes_and_triggers_actions() {
        let models: BTreeSet<String> = ["m".to_string(), "e".to_string()].into();
        let mut s = Story::new(models, "st", "n");
        assert!(
            s.observe(Kind::ModelEntry, &me("m", "Idle", 0, 0), false, 0.1)
                .is_empty()
        );
        assert_eq!(s.reached(Milestone::ModelsRegistered), None);
        s.observe(Kind::ModelEntry, &me("e", "Ready", 1, 1), false, 0.2);
        assert_eq!(s.reached(Milestone::ModelsRegistered), Some(0.2));
        s.observe(
            Kind::AgentStack,
            &json!({"metadata": {"name": "st"}, "status": {"phase": "Degraded", "bindings": [{"layer": "cognitive", "modelEntry": "fallback"}]}}),
            false,
            0.25,
        );
        assert_eq!(s.model.as_deref(), Some("fallback"));
        assert_eq!(s.reached(Milestone::StackResolved), None);
        s.observe(
            Kind::AgentStack,
            &json!({"metadata": {"name": "st"}, "status": {"phase": "Resolved", "bindings": [{"layer": "cognitive", "modelEntry": "m"}]}}),
            false,
            0.3,
        );
        assert_eq!(s.model.as_deref(), Some("m"));
        assert_eq!(s.reached(Milestone::StackResolved), Some(0.3));
        s.observe(Kind::AgentNode, &node("Placed", false), false, 1.0);
        assert_eq!(s.placement, Some((0.4, 120.0, 1)));
        s.observe(Kind::ModelEntry, &me("m", "Ready", 1, 1), false, 2.0);
        let pod = json!({"metadata": {"name": "m-1", "labels": {"app.kubernetes.io/instance": "m"}},
            "spec": {"nodeName": "gpu-0", "containers": [{"resources": {"requests": {"nvidia.com/gpu": "4"}}}]}});
        s.observe(Kind::Pod, &pod, false, 2.1);
        assert_eq!(s.model_gpus, Some(4));
        assert_eq!(
            s.observe(Kind::AgentNode, &node("Running", false), false, 3.0),
            [Action::StartAgent]
        );
        // Seeing Running again does not start a second agent.
        assert!(
            s.observe(Kind::AgentNode, &node("Running", false), false, 3.5)
                .is_empty()
        );
        s.observe(Kind::AgentNode, &node("Succeeded", true), false, 9.0);
        // Idle before the node is gone is not the release.
        s.observe(Kind::ModelEntry, &me("m", "Idle", 0, 0), false, 9.5);
        assert!(!s.complete());
        assert_eq!(
            s.observe(Kind::AgentNode, &node("Succeeded", true), true, 20.0),
            [Action::NodeGone]
        );
        s.observe(Kind::ModelEntry, &me("m", "Idle", 0, 0), false, 36.0);
        assert!(s.complete(), "{:?}", s.pending());
        assert!(s.pending().is_empty());
        let times: Vec<f64> = s.milestones().iter().map(|(_, t)| *t).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    }

    #[test]
    fn stalled_story_reports_pending_milestones() {
        let mut s = Story::new(["m".to_string()].into(), "st", "n");
        s.observe(Kind::ModelEntry, &me("m", "Idle", 0, 0), false, 0.1);
        s.observe(Kind::AgentNode, &node("Pending", false), false, 0.2);
        assert!(!s.complete());
        assert_eq!(s.pending()[0], Milestone::StackResolved);
        assert!(s.state_line().contains("agentnode/n phase Pending"));
    }
}

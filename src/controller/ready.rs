//! The `Ready` condition of all three kinds, following kstatus (the conventions `kubectl wait`,
//! Argo CD and Flux health checks read): one place decides what Ready means for each kind, and one
//! function writes it with its companions `Reconciling` and `Stalled`.
//!
//! | Readiness | Ready | Reconciling | Stalled |
//! |---|---|---|---|
//! | [`Readiness::Ready`] | True | absent | absent |
//! | [`Readiness::Progressing`]: on its way, nothing wrong | Unknown | True | absent |
//! | [`Readiness::NotReady`]: not ready, the operator keeps trying | False | True | absent |
//! | [`Readiness::Stalled`]: needs a change by a user | False | absent | True |
//!
//! Every condition carries the object's generation (`observedGeneration`). The mapping is a pure
//! function of the status the controller already writes, so Ready never costs a write of its own:
//! it changes in the same status write as the phase or condition it is derived from.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::agent_node::{AgentNodeStatus, NodePhase};
use crate::api::agent_stack::StackPhase;
use crate::api::conditions::{find, set_condition};
use crate::api::model_entry::ModelPhase;

/// The condition `kubectl wait --for=condition=Ready` waits for.
pub const READY: &str = "Ready";
/// kstatus: True while the operator works towards the desired state.
pub const RECONCILING: &str = "Reconciling";
/// kstatus: True when the operator cannot make progress without a change by a user.
pub const STALLED: &str = "Stalled";

/// Reasons of an AgentNode condition that mean "on its way", not "something is wrong".
pub const PROGRESS_REASONS: [&str; 4] = [
    "WaitingForModels",
    "WaitingForStack",
    "AgentStarting",
    "InProgress",
];

/// The stack's reason while a model it binds has no status for its current spec yet (the operator
/// has not reconciled it since it started or since the model changed).
pub const WAITING_FOR_MODEL_STATUS: &str = "WaitingForModelStatus";

/// What the Ready condition says, with its reason and human message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready { reason: String, message: String },
    Progressing { reason: String, message: String },
    NotReady { reason: String, message: String },
    Stalled { reason: String, message: String },
}

impl Readiness {
    fn parts(&self) -> (&'static str, &str, &str) {
        match self {
            Readiness::Ready { reason, message } => ("True", reason, message),
            Readiness::Progressing { reason, message } => ("Unknown", reason, message),
            Readiness::NotReady { reason, message } | Readiness::Stalled { reason, message } => {
                ("False", reason, message)
            }
        }
    }

    /// The reason of the Ready condition.
    pub fn reason(&self) -> &str {
        self.parts().1
    }
}

fn ready(reason: impl Into<String>, message: impl Into<String>) -> Readiness {
    Readiness::Ready {
        reason: reason.into(),
        message: message.into(),
    }
}

fn progressing(reason: impl Into<String>, message: impl Into<String>) -> Readiness {
    Readiness::Progressing {
        reason: reason.into(),
        message: message.into(),
    }
}

fn not_ready(reason: impl Into<String>, message: impl Into<String>) -> Readiness {
    Readiness::NotReady {
        reason: reason.into(),
        message: message.into(),
    }
}

fn stalled(reason: impl Into<String>, message: impl Into<String>) -> Readiness {
    Readiness::Stalled {
        reason: reason.into(),
        message: message.into(),
    }
}

/// Set `Ready` from `readiness`, and `Reconciling`/`Stalled` beside it (removed when they do not
/// apply, as kstatus expects of these abnormal-true conditions). `lastTransitionTime` moves only on
/// a real transition. Returns whether anything changed.
pub fn set_ready(
    conditions: &mut Vec<Condition>,
    readiness: &Readiness,
    generation: Option<i64>,
    now: Time,
) -> bool {
    let (status, reason, message) = readiness.parts();
    let make = |type_: &str, status: &str| Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time: now.clone(),
    };
    let mut changed = set_condition(conditions, make(READY, status));
    let (reconciling, is_stalled) = match readiness {
        Readiness::Ready { .. } => (false, false),
        Readiness::Progressing { .. } | Readiness::NotReady { .. } => (true, false),
        Readiness::Stalled { .. } => (false, true),
    };
    for (type_, wanted) in [(RECONCILING, reconciling), (STALLED, is_stalled)] {
        if wanted {
            changed |= set_condition(conditions, make(type_, "True"));
        } else if find(conditions, type_).is_some() {
            conditions.retain(|c| c.type_ != type_);
            changed = true;
        }
    }
    changed
}

/// A ModelEntry is Ready when it serves (phase Ready) or is scaled to zero on purpose (phase Idle:
/// an OnDemand model provisions when an AgentNode binds it, as a Knative service scaled to zero
/// stays Ready). Provisioning is progress, except an unschedulable engine; a failing engine is not
/// ready; a spec the operator rejects is stalled until it changes. `reason` and `message` are the
/// controller's own account of the phase.
pub fn model_entry(phase: ModelPhase, reason: &str, message: &str) -> Readiness {
    match phase {
        ModelPhase::Ready | ModelPhase::Idle => ready(reason, message),
        ModelPhase::Provisioning if reason == "Unschedulable" => not_ready(reason, message),
        ModelPhase::Provisioning | ModelPhase::Pending => progressing(reason, message),
        ModelPhase::Degraded => not_ready(reason, message),
        ModelPhase::Failed => stalled(reason, message),
    }
}

/// An AgentStack is Ready when every layer is bound to an available model, from its primary target
/// or a fallback (phase Resolved, or Degraded with `all_available`). While a layer is off its primary
/// target and a model it could bind has no status for its current spec yet, or within
/// `agent_stack::MODEL_GRACE` of a layer losing its model (`settling`), the outcome is provisional:
/// Progressing. Otherwise a
/// layer without a model, or bound to one that is not available, is not ready (the stack is
/// resolved again whenever a ModelEntry changes).
pub fn agent_stack(
    phase: StackPhase,
    all_available: bool,
    settling: bool,
    reason: &str,
    message: &str,
) -> Readiness {
    match phase {
        StackPhase::Resolved => ready(reason, message),
        _ if settling => progressing(WAITING_FOR_MODEL_STATUS, message),
        StackPhase::Degraded if all_available => ready(reason, message),
        StackPhase::Degraded | StackPhase::Unresolved => not_ready(reason, message),
    }
}

/// An AgentNode is Ready when its agent runs (phase Running: its Job or Deployment exists and no
/// container problem is reported) or when it met its objective (phase Succeeded; an Ephemeral node
/// stays Ready until it is dissolved). A Failed node is stalled (its outcome is final). Before that,
/// a condition reporting a problem (False, with a reason that is not progress) makes it not ready;
/// waiting for placement, models or the agent's start is progress.
pub fn agent_node(status: &AgentNodeStatus) -> Readiness {
    let objective = find(&status.conditions, "ObjectiveMet");
    let outcome = |default: &str| {
        objective.map_or((default.to_string(), String::new()), |c| {
            (c.reason.clone(), c.message.clone())
        })
    };
    match status.phase {
        Some(NodePhase::Failed) => {
            let (reason, message) = outcome("Failed");
            return stalled(reason, message);
        }
        Some(NodePhase::Succeeded) => {
            let (_, message) = outcome("ObjectiveMet");
            return ready("ObjectiveMet", message);
        }
        _ => {}
    }
    let problem = status.conditions.iter().find(|c| {
        c.status == "False"
            && ![READY, RECONCILING, STALLED, "ObjectiveMet"].contains(&c.type_.as_str())
    });
    if let Some(c) = problem {
        return if PROGRESS_REASONS.contains(&c.reason.as_str()) {
            progressing(c.reason.clone(), c.message.clone())
        } else {
            not_ready(c.reason.clone(), c.message.clone())
        };
    }
    match status.phase {
        Some(NodePhase::Running) => {
            let message = status.workload.as_ref().map_or_else(
                || "the agent runs".to_string(),
                |w| format!("the agent runs as {} {}", w.kind, w.name),
            );
            ready("AgentRunning", message)
        }
        Some(phase) => progressing(format!("{phase:?}"), format!("the node is {phase:?}")),
        None => progressing("Pending", "the node is Pending"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::agent_node::WorkloadRef;
    use crate::api::conditions::condition;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("valid timestamp"))
    }

    fn status_of<'a>(list: &'a [Condition], type_: &str) -> Option<&'a str> {
        find(list, type_).map(|c| c.status.as_str())
    }

    #[test]
    fn companions_follow_ready_and_transition_time_moves_only_on_transitions() {
        let mut list = Vec::new();
        assert!(set_ready(
            &mut list,
            &progressing("Provisioning", "0/1 replicas ready"),
            Some(2),
            at(10)
        ));
        assert_eq!(status_of(&list, READY), Some("Unknown"));
        assert_eq!(status_of(&list, RECONCILING), Some("True"));
        assert_eq!(status_of(&list, STALLED), None);
        assert_eq!(
            find(&list, READY).and_then(|c| c.observed_generation),
            Some(2)
        );
        // Same readiness later: nothing changes (no status write).
        assert!(!set_ready(
            &mut list,
            &progressing("Provisioning", "0/1 replicas ready"),
            Some(2),
            at(20)
        ));
        assert_eq!(
            find(&list, READY).map(|c| c.last_transition_time.clone()),
            Some(at(10))
        );
        assert!(set_ready(
            &mut list,
            &stalled("InvalidSpec", "bad"),
            Some(3),
            at(30)
        ));
        assert_eq!(status_of(&list, READY), Some("False"));
        assert_eq!(status_of(&list, RECONCILING), None);
        assert_eq!(status_of(&list, STALLED), Some("True"));
        assert!(set_ready(
            &mut list,
            &ready("Available", "1/1"),
            Some(3),
            at(40)
        ));
        assert_eq!(status_of(&list, READY), Some("True"));
        assert_eq!(list.len(), 1, "only Ready is left: {list:?}");
        assert_eq!(
            find(&list, READY).map(|c| c.last_transition_time.clone()),
            Some(at(40))
        );
    }

    #[test]
    fn model_entry_idle_is_ready_and_failures_are_told_apart() {
        let r = |phase, reason| model_entry(phase, reason, "m");
        assert!(matches!(
            r(ModelPhase::Ready, "Available"),
            Readiness::Ready { .. }
        ));
        assert!(matches!(
            r(ModelPhase::Idle, "ScaledToZero"),
            Readiness::Ready { .. }
        ));
        assert!(matches!(
            r(ModelPhase::Provisioning, "Provisioning"),
            Readiness::Progressing { .. }
        ));
        assert!(matches!(
            r(ModelPhase::Provisioning, "Unschedulable"),
            Readiness::NotReady { .. }
        ));
        assert!(matches!(
            r(ModelPhase::Degraded, "EngineFailing"),
            Readiness::NotReady { .. }
        ));
        assert!(matches!(
            r(ModelPhase::Failed, "InvalidGpu"),
            Readiness::Stalled { .. }
        ));
    }

    #[test]
    fn agent_stack_readiness() {
        let s = |phase, available, settling| agent_stack(phase, available, settling, "R", "m");
        assert!(matches!(
            s(StackPhase::Resolved, true, false),
            Readiness::Ready { .. }
        ));
        assert!(matches!(
            s(StackPhase::Degraded, true, false),
            Readiness::Ready { .. }
        ));
        assert!(matches!(
            s(StackPhase::Degraded, true, true),
            Readiness::Progressing { .. }
        ));
        assert!(matches!(
            s(StackPhase::Degraded, false, false),
            Readiness::NotReady { .. }
        ));
        assert_eq!(
            s(StackPhase::Degraded, false, true).reason(),
            WAITING_FOR_MODEL_STATUS
        );
        assert!(matches!(
            s(StackPhase::Unresolved, false, true),
            Readiness::Progressing { .. }
        ));
        assert!(matches!(
            s(StackPhase::Unresolved, false, false),
            Readiness::NotReady { .. }
        ));
    }

    fn node(phase: NodePhase, conditions: &[(&str, bool, &str)]) -> AgentNodeStatus {
        AgentNodeStatus {
            phase: Some(phase),
            workload: Some(WorkloadRef {
                kind: "Job".into(),
                name: "n-agent".into(),
            }),
            conditions: conditions
                .iter()
                .map(|(t, ok, reason)| condition(t, *ok, reason, "msg", Some(1), at(0)))
                .collect(),
            ..AgentNodeStatus::default()
        }
    }

    #[test]
    fn agent_node_readiness_by_phase_and_conditions() {
        let running = node(
            NodePhase::Running,
            &[
                ("Placed", true, "Placed"),
                ("ObjectiveMet", false, "InProgress"),
            ],
        );
        assert_eq!(
            agent_node(&running),
            ready("AgentRunning", "the agent runs as Job n-agent")
        );
        let crashing = node(
            NodePhase::Running,
            &[("AgentReady", false, "AgentContainerError")],
        );
        assert_eq!(
            agent_node(&crashing),
            not_ready("AgentContainerError", "msg")
        );
        let waiting = node(
            NodePhase::Provisioning,
            &[("ModelsReady", false, "WaitingForModels")],
        );
        assert_eq!(agent_node(&waiting), progressing("WaitingForModels", "msg"));
        let no_stack = node(NodePhase::Pending, &[("Placed", false, "StackNotFound")]);
        assert_eq!(agent_node(&no_stack), not_ready("StackNotFound", "msg"));
        let met = node(
            NodePhase::Succeeded,
            &[("ObjectiveMet", true, "MetricReached")],
        );
        assert_eq!(agent_node(&met), ready("ObjectiveMet", "msg"));
        let failed = node(NodePhase::Failed, &[("ObjectiveMet", false, "AgentFailed")]);
        assert_eq!(agent_node(&failed), stalled("AgentFailed", "msg"));
        assert!(matches!(
            agent_node(&node(NodePhase::Placed, &[])),
            Readiness::Progressing { .. }
        ));
        // The conditions Ready writes itself never feed back into it.
        let mut again = running.clone();
        set_ready(&mut again.conditions, &agent_node(&running), Some(1), at(5));
        set_ready(&mut again.conditions, &not_ready("X", "y"), Some(1), at(6));
        assert_eq!(agent_node(&again), agent_node(&running));
    }
}

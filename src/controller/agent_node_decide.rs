//! AgentNode decisions (pure): the phase machine from placement to dissolution, objective evaluation
//! and the TTL timers (derived from `status.completionTime`, so they survive operator restarts).

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::agent_node::{AgentNodeSpec, Comparator, LifecycleMode, Metric, NodePhase};

/// How long a node waits for its models before the `ModelsReady` condition reports a timeout.
pub const MODEL_READY_TIMEOUT: Duration = Duration::from_secs(600);

/// How long after the agent's workload finished its last report still counts: the Job's completion
/// and the agent's status report arrive on different watches, in either order.
pub const REPORT_GRACE: Duration = Duration::from_secs(10);

/// Default seconds an ephemeral node is kept after its objective is met.
pub const DEFAULT_TTL_AFTER_MET: i64 = 30;
/// Default seconds an ephemeral node is kept after it failed (for inspection).
pub const DEFAULT_TTL_AFTER_FAILURE: i64 = 3600;

/// Whether an observed value satisfies a metric objective.
pub fn metric_met(metric: &Metric, observed: f64) -> bool {
    if !observed.is_finite() {
        return false;
    }
    match metric.comparator {
        Comparator::GreaterOrEqual => observed >= metric.target,
        Comparator::LessOrEqual => observed <= metric.target,
        Comparator::Equal => {
            (observed - metric.target).abs() <= 1e-9 * metric.target.abs().max(1.0)
        }
    }
}

/// What the controller saw of the agent's workload.
#[derive(Clone, Debug, PartialEq)]
pub enum Workload {
    /// Not created yet.
    Absent,
    /// Created and not finished; `problem` when its container fails (pull errors, crash loops).
    Running { problem: Option<String> },
    /// The Job completed successfully.
    Completed,
    /// The Job failed (`reason` from its `Failed` condition, e.g. BackoffLimitExceeded).
    Failed { reason: String, message: String },
}

/// State of the models the node's stack binds.
#[derive(Clone, Debug, PartialEq)]
pub enum Models {
    /// The stack does not exist.
    StackMissing,
    /// The stack exists but has not been resolved yet (it was just created): a wait, not a problem.
    StackPending(String),
    /// A layer has no model (message from the stack's resolution).
    Unresolved(String),
    /// Bound, some not Ready yet (names).
    Waiting(Vec<String>),
    /// Every bound model is Ready.
    Ready,
}

/// Everything the decision reads.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    pub spec: &'a AgentNodeSpec,
    pub phase: Option<NodePhase>,
    pub placed: bool,
    pub models: Models,
    pub workload: Workload,
    pub observed: Option<f64>,
    pub already_met: bool,
    pub provisioning_since: Option<Timestamp>,
    pub completion_time: Option<Timestamp>,
    /// When the Job finished (its completion or failure time), if it did.
    pub workload_finished_at: Option<Timestamp>,
    /// `AgentReady=False` is on the node (a container problem was reported).
    pub problem_reported: bool,
    pub now: Timestamp,
}

/// What to do.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub phase: NodePhase,
    /// Create (or keep applying) the agent's workload.
    pub run_workload: bool,
    /// The objective is met now.
    pub objective_met: bool,
    /// `status.completionTime` to record (set once, when the node finishes).
    pub completion_time: Option<Timestamp>,
    /// Delete the node now (its TTL has passed).
    pub dissolve: bool,
    /// (type, status, reason, message) conditions to set.
    pub conditions: Vec<(&'static str, bool, &'static str, String)>,
    /// Look again after this long even without events.
    pub requeue_after: Option<Duration>,
    /// The decision ends the node on the strength of a report that may not have reached the cache:
    /// confirm it from a fresh read of the node before acting.
    pub confirm_fresh: bool,
}

fn lifecycle(spec: &AgentNodeSpec) -> (LifecycleMode, i64, i64) {
    let l = spec.lifecycle.clone().unwrap_or_default();
    (
        l.mode,
        l.ttl_seconds_after_objective_met
            .unwrap_or(DEFAULT_TTL_AFTER_MET),
        l.ttl_seconds_after_failure
            .unwrap_or(DEFAULT_TTL_AFTER_FAILURE),
    )
}

fn until(from: Timestamp, secs: i64, now: Timestamp) -> Option<Duration> {
    let at = from + SignedDuration::from_secs(secs.max(0));
    (at > now).then(|| {
        at.duration_since(now)
            .try_into()
            .unwrap_or(Duration::from_secs(1))
    })
}

/// Decide the next step of a node.
pub fn decide(i: &Inputs<'_>) -> Decision {
    let (mode, ttl_met, ttl_failed) = lifecycle(i.spec);
    let mut d = Decision {
        phase: i.phase.unwrap_or_default(),
        run_workload: false,
        objective_met: i.already_met,
        completion_time: i.completion_time,
        dissolve: false,
        conditions: Vec::new(),
        requeue_after: None,
        confirm_fresh: false,
    };
    // Finished nodes: only the TTL remains (Persistent nodes are never dissolved and keep running).
    if matches!(
        i.phase,
        Some(NodePhase::Succeeded) | Some(NodePhase::Failed)
    ) {
        if mode == LifecycleMode::Persistent {
            d.run_workload = i.phase == Some(NodePhase::Succeeded);
            return d;
        }
        let ttl = if i.phase == Some(NodePhase::Succeeded) {
            ttl_met
        } else {
            ttl_failed
        };
        let done = i.completion_time.unwrap_or(i.now);
        d.completion_time = Some(done);
        match until(done, ttl, i.now) {
            Some(wait) => d.requeue_after = Some(wait),
            None => {
                d.dissolve = true;
                d.phase = NodePhase::Dissolving;
            }
        }
        return d;
    }

    if !i.placed {
        d.phase = NodePhase::Pending;
        if i.models == Models::StackMissing {
            let name = &i.spec.stack_ref.name;
            d.conditions.push((
                "Placed",
                false,
                "StackNotFound",
                format!("spec.stackRef.name: AgentStack {name} not found"),
            ));
        }
        return d;
    }

    match &i.models {
        Models::StackMissing => {
            d.phase = NodePhase::Placed;
            let name = &i.spec.stack_ref.name;
            d.conditions.push((
                "ModelsReady",
                false,
                "StackNotFound",
                format!("spec.stackRef.name: AgentStack {name} not found"),
            ));
            return d;
        }
        Models::StackPending(message) => {
            d.phase = NodePhase::Placed;
            d.conditions
                .push(("ModelsReady", false, "WaitingForStack", message.clone()));
            return d;
        }
        Models::Unresolved(message) => {
            d.phase = NodePhase::Placed;
            d.conditions
                .push(("ModelsReady", false, "BindingUnresolved", message.clone()));
            return d;
        }
        Models::Waiting(names) if i.workload == Workload::Absent => {
            d.phase = NodePhase::Provisioning;
            let since = i.provisioning_since.unwrap_or(i.now);
            let timeout = MODEL_READY_TIMEOUT.as_secs() as i64;
            let (reason, message) = match until(since, timeout, i.now) {
                Some(wait) => {
                    d.requeue_after = Some(wait);
                    (
                        "WaitingForModels",
                        format!(
                            "waiting for ModelEntry {} to become Ready",
                            names.join(", ")
                        ),
                    )
                }
                None => (
                    "ModelsNotReadyTimeout",
                    format!(
                        "ModelEntry {} not Ready after {}s; still waiting",
                        names.join(", "),
                        timeout
                    ),
                ),
            };
            d.conditions.push(("ModelsReady", false, reason, message));
            return d;
        }
        Models::Waiting(_) | Models::Ready => {
            d.conditions.push((
                "ModelsReady",
                true,
                "ModelsReady",
                "every bound model is Ready".into(),
            ));
        }
    }

    // Running (or about to): the workload is applied; evaluate the objective.
    d.run_workload = true;
    let metric = i.spec.objective.as_ref().and_then(|o| o.metric.as_ref());
    let met_now = metric.is_some_and(|m| i.observed.is_some_and(|v| metric_met(m, v)));
    let finish = |d: &mut Decision, phase: NodePhase, reason: &'static str, message: String| {
        d.phase = phase;
        d.completion_time = Some(i.completion_time.unwrap_or(i.now));
        let met = phase == NodePhase::Succeeded;
        d.objective_met = met;
        d.conditions.push(("ObjectiveMet", met, reason, message));
        let ttl = if met { ttl_met } else { ttl_failed };
        if mode == LifecycleMode::Ephemeral {
            d.requeue_after = Some(Duration::from_secs(ttl.max(0) as u64));
        }
        d.run_workload = mode == LifecycleMode::Persistent;
    };
    match (&i.workload, metric) {
        (_, Some(m)) if met_now => {
            let v = i.observed.unwrap_or_default();
            finish(
                &mut d,
                NodePhase::Succeeded,
                "MetricReached",
                format!(
                    "{} = {v} reached target {:?} {}",
                    m.name, m.comparator, m.target
                ),
            );
        }
        (Workload::Completed, None) => {
            finish(
                &mut d,
                NodePhase::Succeeded,
                "TaskCompleted",
                "the agent's Job completed".into(),
            );
        }
        (Workload::Completed, Some(m))
            if i.workload_finished_at
                .and_then(|at| until(at, REPORT_GRACE.as_secs() as i64, i.now))
                .is_some() =>
        {
            // The agent may have reported just before it exited: wait for the report.
            let wait = i
                .workload_finished_at
                .and_then(|at| until(at, REPORT_GRACE.as_secs() as i64, i.now))
                .unwrap_or(REPORT_GRACE);
            d.phase = NodePhase::Running;
            d.requeue_after = Some(wait);
            d.conditions.push((
                "ObjectiveMet",
                false,
                "InProgress",
                format!(
                    "the agent finished; waiting up to {}s for its report of {}",
                    REPORT_GRACE.as_secs(),
                    m.name
                ),
            ));
        }
        (Workload::Completed, Some(m)) => {
            d.confirm_fresh = true;
            let seen = i.observed.map_or("nothing".to_string(), |v| v.to_string());
            finish(
                &mut d,
                NodePhase::Failed,
                "ObjectiveNotMet",
                format!(
                    "the agent finished but reported {seen} for {} (target {:?} {})",
                    m.name, m.comparator, m.target
                ),
            );
        }
        (Workload::Failed { reason, message }, _) => {
            let reason = if reason == "DeadlineExceeded" {
                "DeadlineExceeded"
            } else {
                "AgentFailed"
            };
            finish(&mut d, NodePhase::Failed, reason, message.clone());
        }
        (Workload::Running { problem, .. }, _) => {
            d.phase = NodePhase::Running;
            // `AgentReady` speaks up when the agent's container fails, and says so again when the
            // problem clears; a healthy start costs no status write of its own.
            match problem {
                Some(p) => {
                    d.conditions
                        .push(("AgentReady", false, "AgentContainerError", p.clone()))
                }
                None if i.problem_reported => d.conditions.push((
                    "AgentReady",
                    true,
                    "AgentRunning",
                    "the agent's container runs".into(),
                )),
                None => {}
            }
            d.conditions.push(in_progress(metric));
        }
        // The workload is created in this very step: the node is Running once this is written (no
        // intermediate phase, no extra status write).
        (Workload::Absent, _) => {
            d.phase = NodePhase::Running;
            d.conditions.push(in_progress(metric));
        }
    }
    d
}

fn in_progress(metric: Option<&Metric>) -> (&'static str, bool, &'static str, String) {
    (
        "ObjectiveMet",
        false,
        "InProgress",
        match metric {
            Some(m) => format!("waiting for {} {:?} {}", m.name, m.comparator, m.target),
            None => "waiting for the agent's task to complete".into(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AgentNode;

    fn spec(extra: &str) -> AgentNodeSpec {
        let n: AgentNode = serde_saphyr::from_str(&format!(
            "apiVersion: hypersync.io/v1alpha1\nkind: AgentNode\nmetadata: {{name: n}}\nspec:\n  stackRef: {{name: s}}\n{extra}"
        ))
        .expect("fixture parses");
        n.spec
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("valid")
    }

    fn inputs<'a>(
        spec: &'a AgentNodeSpec,
        phase: NodePhase,
        models: Models,
        workload: Workload,
    ) -> Inputs<'a> {
        Inputs {
            spec,
            phase: Some(phase),
            placed: true,
            models,
            workload,
            observed: None,
            already_met: false,
            provisioning_since: Some(at(0)),
            completion_time: None,
            workload_finished_at: None,
            problem_reported: false,
            now: at(100),
        }
    }

    const METRIC: &str = "  objective: {metric: {name: findings, comparator: GreaterOrEqual, target: 10}}\n  lifecycle: {ttlSecondsAfterObjectiveMet: 10}\n";

    #[test]
    fn comparators() {
        let m = |c, t| Metric {
            name: "m".into(),
            comparator: c,
            target: t,
        };
        assert!(metric_met(&m(Comparator::GreaterOrEqual, 10.0), 10.0));
        assert!(!metric_met(&m(Comparator::GreaterOrEqual, 10.0), 9.99));
        assert!(metric_met(&m(Comparator::LessOrEqual, 0.1), 0.05));
        assert!(metric_met(&m(Comparator::Equal, 0.3), 0.1 + 0.2));
        assert!(!metric_met(&m(Comparator::Equal, 3.0), f64::NAN));
    }

    #[test]
    fn unplaced_node_is_pending_and_runs_nothing() {
        let s = spec("");
        let mut i = inputs(&s, NodePhase::Pending, Models::Ready, Workload::Absent);
        i.placed = false;
        let d = decide(&i);
        assert_eq!((d.phase, d.run_workload), (NodePhase::Pending, false));
        assert!(d.conditions.is_empty());
        // Without its stack a node cannot even be placed: say why.
        i.models = Models::StackMissing;
        let d = decide(&i);
        assert_eq!(d.conditions[0].2, "StackNotFound");
    }

    #[test]
    fn missing_stack_names_the_field() {
        let s = spec("");
        let d = decide(&inputs(
            &s,
            NodePhase::Placed,
            Models::StackMissing,
            Workload::Absent,
        ));
        assert_eq!(d.phase, NodePhase::Placed);
        assert!(!d.run_workload);
        assert_eq!(
            d.conditions[0],
            (
                "ModelsReady",
                false,
                "StackNotFound",
                "spec.stackRef.name: AgentStack s not found".to_string()
            )
        );
    }

    #[test]
    fn a_stack_not_resolved_yet_is_waited_for() {
        let s = spec("");
        let pending = Models::StackPending("AgentStack s is not resolved yet".into());
        let d = decide(&inputs(&s, NodePhase::Placed, pending, Workload::Absent));
        assert_eq!((d.phase, d.run_workload), (NodePhase::Placed, false));
        assert_eq!(d.conditions[0].2, "WaitingForStack");
    }

    #[test]
    fn waiting_for_models_then_timeout_condition() {
        let s = spec("");
        let waiting = Models::Waiting(vec!["deepseek-coder-33b".into()]);
        let d = decide(&inputs(
            &s,
            NodePhase::Provisioning,
            waiting.clone(),
            Workload::Absent,
        ));
        assert_eq!((d.phase, d.run_workload), (NodePhase::Provisioning, false));
        assert_eq!(d.conditions[0].2, "WaitingForModels");
        assert_eq!(d.requeue_after, Some(Duration::from_secs(500)));
        let mut late = inputs(&s, NodePhase::Provisioning, waiting, Workload::Absent);
        late.now = at(601);
        let d = decide(&late);
        assert_eq!(d.conditions[0].2, "ModelsNotReadyTimeout");
        assert_eq!(d.requeue_after, None);
    }

    #[test]
    fn metric_objective_met_then_dissolved_after_ttl() {
        let s = spec(METRIC);
        let mut i = inputs(
            &s,
            NodePhase::Running,
            Models::Ready,
            Workload::Running { problem: None },
        );
        i.observed = Some(4.0);
        let d = decide(&i);
        assert_eq!((d.phase, d.objective_met), (NodePhase::Running, false));
        i.observed = Some(12.0);
        let d = decide(&i);
        assert_eq!(
            (d.phase, d.objective_met, d.completion_time),
            (NodePhase::Succeeded, true, Some(at(100)))
        );
        assert_eq!(d.requeue_after, Some(Duration::from_secs(10)));
        assert!(!d.run_workload);
        // After an operator restart the timer is read back from completionTime.
        let mut after = inputs(&s, NodePhase::Succeeded, Models::Ready, Workload::Completed);
        after.completion_time = Some(at(100));
        after.now = at(105);
        let d = decide(&after);
        assert_eq!(
            (d.dissolve, d.requeue_after),
            (false, Some(Duration::from_secs(5)))
        );
        after.now = at(110);
        let d = decide(&after);
        assert_eq!((d.dissolve, d.phase), (true, NodePhase::Dissolving));
        // A reconcile that still sees the node (deletion not yet observed) keeps dissolving it.
        let d = decide(&after);
        assert_eq!((d.dissolve, d.phase), (true, NodePhase::Dissolving));
    }

    #[test]
    fn completion_objective_follows_the_job() {
        let s = spec("");
        let d = decide(&inputs(
            &s,
            NodePhase::Running,
            Models::Ready,
            Workload::Completed,
        ));
        assert_eq!(d.phase, NodePhase::Succeeded);
        let failed = Workload::Failed {
            reason: "BackoffLimitExceeded".into(),
            message: "Job has reached the specified backoff limit".into(),
        };
        let d = decide(&inputs(&s, NodePhase::Running, Models::Ready, failed));
        assert_eq!(d.phase, NodePhase::Failed);
        assert_eq!(d.conditions.last().map(|c| c.2), Some("AgentFailed"));
        assert_eq!(
            d.requeue_after,
            Some(Duration::from_secs(DEFAULT_TTL_AFTER_FAILURE as u64))
        );
    }

    #[test]
    fn metric_not_reached_when_the_job_ends_is_a_failure() {
        let s = spec(METRIC);
        let mut i = inputs(&s, NodePhase::Running, Models::Ready, Workload::Completed);
        i.observed = Some(3.0);
        let d = decide(&i);
        assert_eq!(d.phase, NodePhase::Failed);
        assert!(d.confirm_fresh);
        assert_eq!(d.conditions.last().map(|c| c.2), Some("ObjectiveNotMet"));
    }

    #[test]
    fn a_report_landing_after_the_job_finished_still_counts() {
        let s = spec(METRIC);
        // The Job completed at 95 and no report is seen yet: still Running, look again at 105.
        let mut i = inputs(&s, NodePhase::Running, Models::Ready, Workload::Completed);
        i.workload_finished_at = Some(at(95));
        let d = decide(&i);
        assert_eq!((d.phase, d.objective_met), (NodePhase::Running, false));
        assert_eq!(d.requeue_after, Some(Duration::from_secs(5)));
        assert!(!d.confirm_fresh);
        // The report lands within the grace: Succeeded.
        i.observed = Some(12.0);
        let d = decide(&i);
        assert_eq!((d.phase, d.objective_met), (NodePhase::Succeeded, true));
        // No report by the end of the grace: Failed, to be confirmed from a fresh read.
        i.observed = None;
        i.now = at(106);
        let d = decide(&i);
        assert_eq!(d.phase, NodePhase::Failed);
        assert!(d.confirm_fresh);
    }

    #[test]
    fn a_healthy_agent_costs_no_agent_ready_condition_until_a_problem_clears() {
        let s = spec("");
        let running = Workload::Running { problem: None };
        let mut i = inputs(&s, NodePhase::Running, Models::Ready, running);
        let d = decide(&i);
        assert!(d.conditions.iter().all(|c| c.0 != "AgentReady"));
        i.problem_reported = true;
        let d = decide(&i);
        assert!(
            d.conditions
                .iter()
                .any(|c| c.0 == "AgentReady" && c.1 && c.2 == "AgentRunning")
        );
    }

    #[test]
    fn persistent_nodes_are_never_dissolved_and_keep_running() {
        let s = spec(
            "  lifecycle: {mode: Persistent}\n  objective: {metric: {name: m, comparator: LessOrEqual, target: 1}}\n",
        );
        let mut i = inputs(
            &s,
            NodePhase::Running,
            Models::Ready,
            Workload::Running { problem: None },
        );
        i.observed = Some(0.5);
        let d = decide(&i);
        assert_eq!(
            (d.phase, d.run_workload, d.requeue_after),
            (NodePhase::Succeeded, true, None)
        );
        let mut later = inputs(
            &s,
            NodePhase::Succeeded,
            Models::Ready,
            Workload::Running { problem: None },
        );
        later.completion_time = Some(at(0));
        later.now = at(1_000_000);
        let d = decide(&later);
        assert_eq!((d.dissolve, d.run_workload), (false, true));
    }

    #[test]
    fn container_problems_surface_as_a_condition() {
        let s = spec("");
        let w = Workload::Running {
            problem: Some(
                "CreateContainerConfigError: secret \"openai-credentials\" not found".into(),
            ),
        };
        let d = decide(&inputs(&s, NodePhase::Running, Models::Ready, w));
        assert_eq!(d.phase, NodePhase::Running);
        assert!(d.conditions.iter().any(|c| c.0 == "AgentReady"
            && c.2 == "AgentContainerError"
            && c.3.contains("openai-credentials")));
    }
}

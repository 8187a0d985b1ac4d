//! The AgentNode controller: places the node in the Poincare disk, binds its models from its stack
//! (raising their demand), runs the agent (Job or Deployment) with a per-node identity, evaluates the
//! objective, and dissolves Ephemeral nodes after their TTL, recording the outcome in a `Dissolved`
//! Event first.
//!
//! A reconcile is `read` (caches and indexes, O(what the node refers to)) -> `plan` (pure: the status,
//! whether to run the workload, the Events, whether to dissolve) -> `apply` (only what changed). An
//! Ephemeral node on a remote model costs 8 writes from creation to dissolution: ServiceAccount, Role,
//! RoleBinding, Job, status Running, status Succeeded, the `Dissolved` Event, DELETE.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::agent_node_decide::{Decision, Inputs, Models, Workload, decide};
use super::context::{Context, Stage, reference};
use super::index::{Written, bindings_annotation, workload_bindings};
use super::ready;
use super::status::{ABSENT_GRACE, Freshness, Live, apply_child_cached, digest_of};
use super::watch;
use crate::api::agent_node::{
    AgentNode, AgentNodeStatus, LifecycleMode, ModelInUse, Neighbor, NodePhase, ObjectiveStatus,
    PlacementDisplay, PlacementMode, PlacementStatus, WorkloadRef,
};
use crate::api::agent_stack::{AgentStack, StackPhase};
use crate::api::common::Autonomy;
use crate::api::conditions::{condition, find, set_condition};
use crate::api::model_entry::ModelPhase;
use crate::error::Error;
use crate::geometry::{self, AnchorIndex, DiskPoint, PlacementRequest};
use crate::workload::agent::{
    AgentInput, AgentWorkload, LayerModel, agent_workload_name, build_agent_workload, merge_runtime,
};
use crate::workload::identity::{build_node_role, build_role_binding, build_service_account};
use crate::workload::labels::{
    ANNOTATION_MODELS, ANNOTATION_SPEC_DIGEST, FIELD_MANAGER, FINALIZER,
};
use crate::workload::owner_reference_to;

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "agentnode";
/// How many neighbours `status.neighbors` lists.
pub const NEIGHBORS: usize = 3;

/// Reconcile one AgentNode.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<AgentNode>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    super::observe(
        CONTROLLER,
        "AgentNode",
        obj.meta(),
        &ctx,
        reconcile_inner(&obj, &ctx),
    )
    .await
}

fn geometry_autonomy(a: Autonomy) -> geometry::Autonomy {
    match a {
        Autonomy::Strict => geometry::Autonomy::Strict,
        Autonomy::Loose => geometry::Autonomy::Loose,
        Autonomy::Creative => geometry::Autonomy::Creative,
        Autonomy::Adversarial => geometry::Autonomy::Adversarial,
    }
}

/// Default sampling temperature per autonomy, unless the stack's movement policy sets one.
fn temperature(autonomy: Autonomy, stack: &AgentStack) -> f64 {
    stack
        .spec
        .geometry
        .as_ref()
        .and_then(|g| g.movement_policy.as_ref())
        .and_then(|m| m.temperature)
        .unwrap_or(match autonomy {
            Autonomy::Strict => 0.2,
            Autonomy::Loose => 0.5,
            Autonomy::Creative => 0.8,
            Autonomy::Adversarial => 1.0,
        })
}

fn point_of(p: &PlacementStatus) -> Option<DiskPoint> {
    DiskPoint::new(p.x, p.y).ok()
}

fn placement_status(p: &geometry::Placement, anchor: Option<String>) -> PlacementStatus {
    PlacementStatus {
        r: p.r,
        theta_degrees: p.theta_degrees,
        x: p.point.x(),
        y: p.point.y(),
        hyperbolic_radius: p.hyperbolic_radius,
        tier: i64::from(p.tier),
        anchor,
        algorithm: p.algorithm.to_string(),
        inputs_digest: p.inputs_digest.clone(),
        display: Some(PlacementDisplay::of(p.r, p.theta_degrees)),
    }
}

/// Where the node goes, or why it cannot be placed yet: Err((reason, message)).
fn compute_placement(
    node: &AgentNode,
    autonomy: Autonomy,
    anchor_placement: impl Fn(&str) -> Option<Option<PlacementStatus>>,
    index: &AnchorIndex,
) -> Result<(geometry::Placement, Option<String>), (&'static str, String)> {
    let spec = node
        .spec
        .placement
        .clone()
        .unwrap_or(crate::api::agent_node::PlacementSpec {
            mode: PlacementMode::Semantic,
            coordinates: None,
            near: None,
        });
    let anchor = match spec.near.as_ref() {
        None => match node.spec.parent_ref.as_ref() {
            // A child without spec.placement: near its parent, one step further out.
            Some(parent) if node.spec.placement.is_none() => {
                let found = anchor_placement(&parent.name).flatten();
                let Some(point) = found.as_ref().and_then(point_of) else {
                    return Err((
                        "AnchorNotPlaced",
                        format!(
                            "spec.parentRef.name: AgentNode {} is not placed yet",
                            parent.name
                        ),
                    ));
                };
                Some(super::lineage::child_anchor(point))
            }
            _ => None,
        },
        Some(near) => match (&near.point, &near.agent_node) {
            (Some(c), _) => Some(DiskPoint::from_polar(c.r, c.theta_degrees).map_err(|e| {
                (
                    "InvalidPlacement",
                    format!("spec.placement.near.point: {e}"),
                )
            })?),
            (None, Some(other)) => {
                let Some(found) = anchor_placement(other) else {
                    return Err((
                        "AnchorNotFound",
                        format!("spec.placement.near.agentNode: AgentNode {other} not found"),
                    ));
                };
                let placed = found.as_ref().and_then(point_of);
                let Some(point) = placed else {
                    return Err((
                        "AnchorNotPlaced",
                        format!(
                            "spec.placement.near.agentNode: AgentNode {other} is not placed yet"
                        ),
                    ));
                };
                Some(point)
            }
            (None, None) => None,
        },
    };
    let tags = node
        .spec
        .task
        .as_ref()
        .map(|t| t.tags.clone())
        .unwrap_or_default();
    let request = PlacementRequest {
        anchor,
        tags,
        autonomy: geometry_autonomy(autonomy),
        fallback_key: format!(
            "{}/{}",
            node.namespace().unwrap_or_default(),
            node.name_any()
        ),
    };
    let placed = geometry::place(&request, index)
        .map_err(|e| (e.reason(), format!("spec.placement: {e}")))?;
    let key = placed.anchor_key.to_string();
    Ok((placed, Some(key)))
}

/// The status of a node placed explicitly at `p`.
pub fn explicit_placement_status(p: DiskPoint) -> PlacementStatus {
    PlacementStatus {
        r: p.r(),
        theta_degrees: p.theta_degrees(),
        x: p.x(),
        y: p.y(),
        hyperbolic_radius: p.hyperbolic_radius(),
        tier: i64::from(p.tier()),
        anchor: None,
        algorithm: "explicit".to_string(),
        inputs_digest: String::new(),
        display: Some(PlacementDisplay::of(p.r(), p.theta_degrees())),
    }
}

fn explicit_placement(node: &AgentNode) -> Option<Result<PlacementStatus, (&'static str, String)>> {
    let spec = node.spec.placement.as_ref()?;
    if spec.mode != PlacementMode::Explicit {
        return None;
    }
    let Some(c) = spec.coordinates else {
        return Some(Err((
            "InvalidPlacement",
            "spec.placement.coordinates: required for Explicit placement".into(),
        )));
    };
    Some(
        DiskPoint::from_polar(c.r, c.theta_degrees)
            .map(explicit_placement_status)
            .map_err(|e| {
                (
                    "InvalidPlacement",
                    format!("spec.placement.coordinates: {e}"),
                )
            }),
    )
}

/// Seconds-precision "now": what the API server stores of a timestamp, so a condition or time the
/// operator writes reads back identical and is never rewritten for a sub-second difference.
pub fn now_seconds() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

/// Everything a reconcile of one node reads, gathered from the caches and indexes (O(what the node
/// refers to), no scan).
pub struct Snapshot {
    pub now: Timestamp,
    pub stack: Option<Arc<DeserializeGuard<AgentStack>>>,
    pub autonomy: Autonomy,
    /// Where the node is (read back or newly chosen), or why it cannot be placed yet.
    pub placement: Result<Option<Written>, (&'static str, String)>,
    /// A placement chosen in this reconcile (its Event and condition are new).
    pub newly_placed: bool,
    pub workload: Workload,
    /// The `(layer, model)` pairs the running workload was started with.
    pub workload_bindings: Option<Vec<(String, String)>>,
    pub workload_created: Option<Timestamp>,
    pub workload_finished_at: Option<Timestamp>,
    /// The bound models with their endpoints, and whether they are ready.
    pub models: Vec<ModelInUse>,
    pub models_state: Models,
    /// Admission, labels, children and budget of a node in a lineage (`lineage.rs`).
    pub lineage: super::lineage::Lineage,
}

fn stack_of(snap: &Snapshot) -> Option<&AgentStack> {
    snap.stack.as_ref().and_then(|g| g.0.as_ref().ok())
}

fn lifecycle_mode(node: &AgentNode) -> LifecycleMode {
    node.spec
        .lifecycle
        .as_ref()
        .map(|l| l.mode)
        .unwrap_or_default()
}

/// The models the node binds: the ones its running workload was started with (recorded on the
/// operator's own Job/Deployment), else the stack's current resolution. Never `status.models`, which
/// the agent can write.
fn bound_models(
    ctx: &Context,
    namespace: &str,
    stack: Option<&AgentStack>,
    started_with: Option<&[(String, String)]>,
) -> (Vec<ModelInUse>, Models) {
    let entry = |name: &str| Context::lookup(&ctx.entries, namespace, name);
    let in_use = |layer: &str, model: &str| {
        let e = entry(model);
        let status = e
            .as_ref()
            .and_then(|g| g.0.as_ref().ok())
            .and_then(|e| e.status.as_ref());
        ModelInUse {
            layer: layer.to_string(),
            model_entry: model.to_string(),
            endpoint: status.and_then(|s| s.endpoint.clone()),
            served_model: status.and_then(|s| s.served_model.clone()),
        }
    };
    let models: Vec<ModelInUse> = match (started_with, stack) {
        (Some(pairs), _) => pairs.iter().map(|(l, m)| in_use(l, m)).collect(),
        (None, None) => return (Vec::new(), Models::StackMissing),
        (None, Some(stack)) => {
            // A stack the stack controller has not looked at yet (created moments ago), or whose
            // resolution binds no model yet provisionally (within its grace its models may still
            // be arriving), is waited for, not reported as a problem.
            let Some(status) = stack.status.as_ref().filter(|s| {
                let looked_at = s.phase.is_some() || find(&s.conditions, "Resolved").is_some();
                let provisional = s.phase.is_none_or(|p| p == StackPhase::Unresolved)
                    && find(&s.conditions, ready::READY)
                        .is_some_and(|c| c.reason == ready::WAITING_FOR_MODEL_STATUS);
                looked_at && !provisional
            }) else {
                return (
                    Vec::new(),
                    Models::StackPending(format!(
                        "AgentStack {} is not resolved yet",
                        stack.name_any()
                    )),
                );
            };
            if status.phase == Some(StackPhase::Unresolved) || status.phase.is_none() {
                let message = find(&status.conditions, "Resolved")
                    .map(|c| c.message.clone())
                    .unwrap_or_default();
                return (
                    Vec::new(),
                    Models::Unresolved(format!("AgentStack {}: {message}", stack.name_any())),
                );
            }
            status
                .bindings
                .iter()
                .filter_map(|b| Some(in_use(&b.layer, b.model_entry.as_deref()?)))
                .collect()
        }
    };
    let waiting: Vec<String> = models
        .iter()
        .filter(|m| {
            entry(&m.model_entry)
                .and_then(|g| g.0.as_ref().ok().and_then(|e| e.status.as_ref()?.phase))
                != Some(ModelPhase::Ready)
        })
        .map(|m| m.model_entry.clone())
        .collect();
    let state = if waiting.is_empty() {
        Models::Ready
    } else {
        Models::Waiting(waiting)
    };
    (models, state)
}

fn job_finished_at(job: &super::cached::Job) -> Option<Timestamp> {
    let status = job.status.as_ref()?;
    status.completion_time.as_ref().map(|t| t.0).or_else(|| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
    })
}

/// The workload's state from the Job/Deployment store and the node's pods (through the index).
fn observe_workload(
    ctx: &Context,
    namespace: &str,
    node: &str,
    mode: LifecycleMode,
) -> (Workload, WorkloadMeta) {
    let name = agent_workload_name(node);
    let pods: Vec<Arc<super::cached::Pod>> = ctx
        .index
        .pods_of_node(namespace, node)
        .iter()
        .filter_map(|p| watch::get(&ctx.pods, &(namespace.to_string(), p.clone())))
        .collect();
    let (problem, recheck_after) = super::pods::agent_problem(&pods, Timestamp::now());
    let key = (namespace.to_string(), name);
    let (workload, meta) = match mode {
        LifecycleMode::Ephemeral => {
            let Some(job) = watch::get(&ctx.jobs, &key) else {
                return (Workload::Absent, WorkloadMeta::default());
            };
            let meta = WorkloadMeta::of(&job.metadata, job_finished_at(&job));
            let conditions = job
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            if conditions
                .iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
            {
                return (Workload::Completed, meta);
            }
            if let Some(c) = conditions
                .iter()
                .find(|c| c.type_ == "Failed" && c.status == "True")
            {
                return (
                    Workload::Failed {
                        reason: c.reason.clone().unwrap_or_else(|| "Failed".into()),
                        message: c.message.clone().unwrap_or_default(),
                    },
                    meta,
                );
            }
            (Workload::Running { problem }, meta)
        }
        LifecycleMode::Persistent => {
            let Some(d) = watch::get(&ctx.deployments, &key) else {
                return (Workload::Absent, WorkloadMeta::default());
            };
            (
                Workload::Running { problem },
                WorkloadMeta::of(&d.metadata, None),
            )
        }
    };
    (
        workload,
        WorkloadMeta {
            recheck_after,
            ..meta
        },
    )
}

/// What the controller reads of its own workload object.
#[derive(Default)]
struct WorkloadMeta {
    bindings: Option<Vec<(String, String)>>,
    created: Option<Timestamp>,
    finished_at: Option<Timestamp>,
    digest: Option<String>,
    resource_version: Option<String>,
    /// When a crash-looping agent that runs again counts as recovered (no pod event marks it).
    recheck_after: Option<std::time::Duration>,
}

impl WorkloadMeta {
    fn of(
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        finished_at: Option<Timestamp>,
    ) -> Self {
        WorkloadMeta {
            bindings: Some(
                meta.annotations
                    .as_ref()
                    .map(workload_bindings)
                    .unwrap_or_default(),
            ),
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
            finished_at,
            digest: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_SPEC_DIGEST).cloned()),
            resource_version: meta.resource_version.clone(),
            recheck_after: None,
        }
    }
}

/// Read what the reconcile of `node` needs; chooses (and reserves) a placement when the node has
/// none yet.
fn read(ctx: &Context, node: &AgentNode) -> (Snapshot, WorkloadMeta) {
    let now = now_seconds();
    let namespace = node.namespace().unwrap_or_default();
    let name = node.name_any();
    let key = (namespace.clone(), name.clone());
    let uid = node.uid().unwrap_or_default();
    let stack = Context::lookup(&ctx.stacks, &namespace, &node.spec.stack_ref.name);
    let stack_ref = stack.as_ref().and_then(|g| g.0.as_ref().ok());
    let autonomy = node
        .spec
        .objective
        .as_ref()
        .and_then(|o| o.autonomy)
        .or(stack_ref.map(|s| s.spec.objective_alignment))
        .unwrap_or_default();
    let mode = lifecycle_mode(node);
    let (workload, meta) = observe_workload(ctx, &namespace, &name, mode);
    let lineage = super::lineage::read(ctx, node, now, meta.bindings.is_some(), meta.created);

    // Placement: immutable once chosen. Read back from status (or from this process's own write when
    // the cache is older), else chosen now; a semantic placement needs the stack (its autonomy).
    let recorded = node
        .status
        .as_ref()
        .and_then(|s| s.placement.clone())
        .map(|placement| Written {
            uid: uid.clone(),
            placement,
            neighbors: node
                .status
                .as_ref()
                .map(|s| s.neighbors.clone())
                .unwrap_or_default(),
        })
        .or_else(|| ctx.index.written_placement(&key, &uid));
    let mut newly_placed = false;
    let placement = match recorded {
        Some(w) => Ok(Some(w)),
        None if stack_ref.is_none() || lineage.blocks() => Ok(None),
        None => {
            let outcome = match explicit_placement(node) {
                Some(result) => result,
                None => ctx.index.with_geometry(|anchors, _| {
                    let anchor_placement = |other: &str| {
                        let found = Context::lookup(&ctx.nodes, &namespace, other)?;
                        let found = found.0.as_ref().ok()?;
                        Some(
                            found
                                .status
                                .as_ref()
                                .and_then(|s| s.placement.clone())
                                .or_else(|| {
                                    ctx.index
                                        .written_placement(
                                            &(namespace.clone(), other.to_string()),
                                            &found.uid().unwrap_or_default(),
                                        )
                                        .map(|w| w.placement)
                                }),
                        )
                    };
                    compute_placement(node, autonomy, anchor_placement, anchors).map(
                        |(placed, anchor)| {
                            anchors.insert_placement(&placed);
                            placement_status(&placed, anchor)
                        },
                    )
                }),
            };
            outcome.map(|placement| {
                // Neighbours are computed once, at placement, from the spatial index: a node's
                // neighbour list does not change when others come and go (no status rewrites).
                let neighbors = point_of(&placement)
                    .map(|p| {
                        ctx.index.with_geometry(|_, points| {
                            points
                                .k_nearest(p, NEIGHBORS, Some(&key))
                                .into_iter()
                                .map(|n| Neighbor {
                                    name: n.id.1,
                                    distance: (n.distance * 1e9).round() / 1e9,
                                })
                                .collect()
                        })
                    })
                    .unwrap_or_default();
                let written = Written {
                    uid: uid.clone(),
                    placement,
                    neighbors,
                };
                ctx.index.record_placement(&key, written.clone());
                newly_placed = true;
                Some(written)
            })
        }
    };
    let (models, models_state) = bound_models(ctx, &namespace, stack_ref, meta.bindings.as_deref());
    let snapshot = Snapshot {
        now,
        autonomy,
        placement,
        newly_placed,
        workload,
        workload_bindings: meta.bindings.clone(),
        workload_created: meta.created,
        workload_finished_at: meta.finished_at,
        models,
        models_state,
        stack,
        lineage,
    };
    (snapshot, meta)
}

/// What a reconcile does, as data.
#[derive(Debug, Default)]
pub struct Plan {
    /// The status to apply (None: unchanged).
    pub status: Option<AgentNodeStatus>,
    /// Create the agent's identity and workload.
    pub run_workload: bool,
    pub events: Vec<(EventType, &'static str, String)>,
    /// Record the outcome and delete the node.
    pub dissolve: bool,
    pub requeue_after: Option<std::time::Duration>,
    /// Re-read the node from the API server and plan again before acting (the plan ends the node on
    /// a report the cache may not have yet).
    pub confirm_fresh: bool,
    /// Stop the running workload (the node is over its budget).
    pub stop_workload: bool,
}

/// The phase the operator recorded, as a starting point of the phase machine. `Dissolving` is not
/// taken from status (an agent could write it): the TTL decides again from the objective.
fn recorded_phase(status: &AgentNodeStatus) -> Option<NodePhase> {
    match status.phase {
        // Written by earlier versions for a node whose TTL had passed; an unmet one is evaluated
        // again from what the operator observes.
        Some(NodePhase::Dissolving) if status.objective.as_ref().is_some_and(|o| o.met) => {
            Some(NodePhase::Succeeded)
        }
        Some(NodePhase::Dissolving) => Some(NodePhase::Placed),
        p => p,
    }
}

/// The node's `Ready` (with `Reconciling`/`Stalled`), derived from the status about to be written.
fn set_node_ready(status: &mut AgentNodeStatus, generation: Option<i64>, now: Timestamp) {
    let readiness = ready::agent_node(status);
    ready::set_ready(&mut status.conditions, &readiness, generation, Time(now));
}

/// Plan a node's next step from the snapshot (pure).
pub fn plan(node: &AgentNode, snap: &Snapshot) -> Plan {
    let generation = node.metadata.generation;
    let now = snap.now;
    // A child its parent's caps refuse (or whose parent is not known yet) takes no other step.
    if let Some(refused) = super::lineage::refused_plan(node, &snap.lineage, now) {
        return refused;
    }
    let old = node.status.clone().unwrap_or_default();
    let mut status = old.clone();
    status.observed_generation = generation;
    let mut out = Plan::default();
    let set =
        |status: &mut AgentNodeStatus, type_: &str, ok: bool, reason: &str, message: String| {
            set_condition(
                &mut status.conditions,
                condition(type_, ok, reason, message, generation, Time(now)),
            );
        };

    // 1. Placement.
    let placed = match &snap.placement {
        Ok(Some(w)) => {
            let p = &w.placement;
            if status.placement.is_none() {
                status.placement = Some(p.clone());
                status.neighbors = w.neighbors.clone();
            }
            // Placements written before the rounded display existed get it, in the one write that
            // also adds Ready to such a node after an upgrade.
            if let Some(p) = status.placement.as_mut().filter(|p| p.display.is_none()) {
                p.display = Some(PlacementDisplay::of(p.r, p.theta_degrees));
            }
            set(
                &mut status,
                "Placed",
                true,
                "Placed",
                format!("r={:.4} theta={:.2} deg", p.r, p.theta_degrees),
            );
            true
        }
        Ok(None) => false,
        Err((reason, message)) => {
            set(&mut status, "Placed", false, reason, message.clone());
            status.phase = Some(NodePhase::Pending);
            if find(&old.conditions, "Placed").map(|c| c.reason.as_str()) != Some(reason) {
                out.events
                    .push((EventType::Warning, reason, message.clone()));
            }
            out.requeue_after = Some(std::time::Duration::from_secs(5));
            set_node_ready(&mut status, generation, now);
            out.status = (status != old).then_some(status);
            return out;
        }
    };

    // 2. The phase machine.
    let phase = recorded_phase(&old)
        .filter(|_| old.placement.is_some())
        .or(placed.then_some(NodePhase::Placed));
    // A completion time earlier than the workload cannot be the operator's: never dissolve before
    // the TTL counted from the workload's start.
    let completion_time = old
        .completion_time
        .as_ref()
        .map(|t| t.0)
        .map(|t| snap.workload_created.map_or(t, |c| t.max(c)));
    let inputs = Inputs {
        spec: &node.spec,
        phase,
        placed,
        models: snap.models_state.clone(),
        workload: snap.workload.clone(),
        observed: old.objective.as_ref().and_then(|o| o.observed),
        already_met: old.objective.as_ref().is_some_and(|o| o.met),
        provisioning_since: find(&old.conditions, "ModelsReady")
            .filter(|c| c.status == "False")
            .map(|c| c.last_transition_time.0),
        completion_time,
        workload_finished_at: snap.workload_finished_at,
        problem_reported: find(&old.conditions, "AgentReady").is_some_and(|c| c.status == "False"),
        now,
    };
    let mut decision: Decision = decide(&inputs);
    let ttl_failed = node
        .spec
        .lifecycle
        .as_ref()
        .and_then(|l| l.ttl_seconds_after_failure)
        .unwrap_or(super::agent_node_decide::DEFAULT_TTL_AFTER_FAILURE);
    if let Some(message) = super::lineage::enforce_budget(
        &mut decision,
        &snap.lineage,
        matches!(snap.workload, Workload::Running { .. }),
        u64::try_from(ttl_failed).unwrap_or(0),
        now,
    ) {
        out.stop_workload = true;
        out.events
            .push((EventType::Warning, super::lineage::BUDGET_EXCEEDED, message));
    }
    out.confirm_fresh = decision.confirm_fresh;
    if matches!(inputs.models, Models::Waiting(_) | Models::Ready)
        || decision.phase == NodePhase::Provisioning
    {
        status.models = snap.models.clone();
    }
    let stack_ok = stack_of(snap).is_some();
    out.run_workload = decision.run_workload
        && stack_ok
        && placed
        && (snap.workload == Workload::Absent || lifecycle_mode(node) == LifecycleMode::Persistent);
    let kind = match lifecycle_mode(node) {
        LifecycleMode::Ephemeral => "Job",
        LifecycleMode::Persistent => "Deployment",
    };
    // A node given `lifecycle.mode: Persistent` after it started: its Job gives way to a Deployment.
    let other_kind = status.workload.as_ref().is_some_and(|w| w.kind != kind);
    if out.run_workload && (status.workload.is_none() || other_kind) {
        let name = agent_workload_name(&node.name_any());
        status.workload = Some(WorkloadRef {
            kind: kind.to_string(),
            name,
        });
        if !other_kind {
            status.start_time = Some(Time(now));
        }
    }

    // 3. Status and the Events a user would miss: problems (once per transition), waiting for
    // models. Progress that the status shows (placed, running, met) costs no Event of its own; the
    // outcome is recorded once, in the `Dissolved` Event.
    if old.phase != Some(decision.phase) && decision.phase == NodePhase::Provisioning {
        out.events.push((
            EventType::Normal,
            "Provisioning",
            format!(
                "waiting for models: {}",
                status
                    .models
                    .iter()
                    .map(|m| m.model_entry.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if old.phase != Some(decision.phase) && decision.phase == NodePhase::Failed {
        out.events.push((
            EventType::Warning,
            "Failed",
            decision
                .conditions
                .iter()
                .find(|c| c.0 == "ObjectiveMet")
                .map(|c| c.3.clone())
                .unwrap_or_default(),
        ));
    }
    for (type_, ok, reason, message) in &decision.conditions {
        let was = find(&old.conditions, type_).map(|c| (c.status.clone(), c.reason.clone()));
        let progress = ready::PROGRESS_REASONS.contains(reason);
        if !ok
            && !progress
            && was != Some(("False".into(), (*reason).to_string()))
            && *type_ != "ObjectiveMet"
        {
            out.events
                .push((EventType::Warning, reason, message.clone()));
        }
        set(&mut status, type_, *ok, reason, message.clone());
    }
    status.phase = Some(if decision.dissolve {
        // Not written: the node is deleted in the same step.
        old.phase.unwrap_or(decision.phase)
    } else {
        decision.phase
    });
    status.completion_time = decision.completion_time.map(Time);
    let objective = status
        .objective
        .get_or_insert_with(ObjectiveStatus::default);
    if decision.objective_met && !objective.met {
        objective.met_at = Some(Time(now));
    }
    objective.met = decision.objective_met;
    out.dissolve = decision.dissolve;
    out.requeue_after = decision.requeue_after;
    super::lineage::annotate(&mut status, node, &snap.lineage, snap.workload_created, now);
    set_node_ready(&mut status, generation, now);
    if !out.dissolve && status != old {
        out.status = Some(status);
    }
    out
}

async fn reconcile_inner(
    obj: &DeserializeGuard<AgentNode>,
    ctx: &Context,
) -> Result<Action, Error> {
    let node = match &obj.0 {
        Ok(node) => node,
        Err(invalid) => return super::report_malformed::<AgentNode>(ctx, invalid).await,
    };
    let namespace = node.namespace().ok_or(Error::MissingMetadata {
        kind: "AgentNode",
        field: "namespace",
    })?;
    let api: Api<AgentNode> = Api::namespaced(ctx.client.clone(), &namespace);
    if node.metadata.deletion_timestamp.is_some() {
        return finalize_legacy(ctx, &api, node).await;
    }
    match ctx
        .written
        .freshness(&written_key(node), node.resource_version().as_deref())
    {
        // This process wrote the node's status after the cached version: wait for the cache (the
        // write's watch event queues this node again) instead of deciding twice.
        Freshness::Behind => return Ok(Action::await_change()),
        // The write's event reached the store after this reconcile read its object: read again
        // (shortly: during a relist the store takes the event only at its end).
        Freshness::Passed => return Ok(Action::requeue(std::time::Duration::from_millis(100))),
        Freshness::Current => {}
    }
    super::prune::node_workload(ctx, node, lifecycle_mode(node)).await?;
    let (snap, meta) = read(ctx, node);
    let planned = plan(node, &snap);
    if planned.confirm_fresh {
        // Ending a node on a report that never came: read the node itself, not the cache, first.
        let fresh = api
            .get(&node.name_any())
            .await
            .map_err(Error::kube("read the AgentNode before ending it"))?;
        let planned = plan(&fresh, &snap);
        return apply(ctx, &api, &fresh, &snap, &meta, planned).await;
    }
    apply(ctx, &api, node, &snap, &meta, planned).await
}

/// Carry out a plan: children first, then the status, the Events, and the dissolution.
async fn apply(
    ctx: &Context,
    api: &Api<AgentNode>,
    node: &AgentNode,
    snap: &Snapshot,
    meta: &WorkloadMeta,
    plan: Plan,
) -> Result<Action, Error> {
    let mut requeue = min_requeue(plan.requeue_after, meta.recheck_after);
    let mut status = plan.status;
    let mut events = plan.events;
    super::lineage::apply_metadata(api, node, &snap.lineage).await?;
    super::lineage::record_spawned(ctx, node, &snap.lineage).await;
    if plan.stop_workload {
        let kind = match lifecycle_mode(node) {
            LifecycleMode::Ephemeral => "Job",
            LifecycleMode::Persistent => "Deployment",
        };
        super::lineage::stop_workload(ctx, node, kind, &agent_workload_name(&node.name_any()))
            .await?;
    }
    if plan.run_workload {
        let placement = status
            .as_ref()
            .or(node.status.as_ref())
            .and_then(|s| s.placement.clone());
        if let (Some(stack), Some(placement)) = (stack_of(snap), placement) {
            match ensure_workload(ctx, node, stack, snap, &placement, meta).await? {
                Ok(wait) => requeue = min_requeue(requeue, wait),
                Err((reason, message)) => {
                    let mut s = status
                        .take()
                        .unwrap_or_else(|| node.status.clone().unwrap_or_default());
                    s.workload = node.status.as_ref().and_then(|o| o.workload.clone());
                    s.start_time = node.status.as_ref().and_then(|o| o.start_time.clone());
                    let was = node
                        .status
                        .as_ref()
                        .and_then(|o| find(&o.conditions, "AgentReady"))
                        .map(|c| c.reason.clone());
                    set_condition(
                        &mut s.conditions,
                        condition(
                            "AgentReady",
                            false,
                            reason,
                            message.clone(),
                            node.metadata.generation,
                            Time(snap.now),
                        ),
                    );
                    if was.as_deref() != Some(reason) {
                        events.push((EventType::Warning, reason, message));
                    }
                    set_node_ready(&mut s, node.metadata.generation, snap.now);
                    status = Some(s);
                    requeue = None;
                }
            }
        }
    }
    if let Some(status) = &status
        && Some(status) != node.status.as_ref()
    {
        write_status(ctx, api, node, status).await?;
    }
    for (type_, reason, note) in events {
        ctx.event(&reference(node), type_, reason, "Reconcile", note)
            .await;
    }
    if plan.dissolve {
        dissolve(ctx, api, node).await?;
        return Ok(Action::await_change());
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

fn min_requeue(
    a: Option<std::time::Duration>,
    b: Option<std::time::Duration>,
) -> Option<std::time::Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Apply the node's status (server-side apply on the status subresource), leaving
/// `status.objective.observed` to the agent that reports it. Skipped when this process already wrote
/// the same document and the cache has not caught up with that write yet.
async fn write_status(
    ctx: &Context,
    api: &Api<AgentNode>,
    node: &AgentNode,
    status: &AgentNodeStatus,
) -> Result<(), Error> {
    let mut body = serde_json::to_value(status).map_err(|source| Error::Serialization {
        what: "AgentNode status",
        source,
    })?;
    if let Some(objective) = body.get_mut("objective").and_then(|o| o.as_object_mut()) {
        objective.remove("observed");
    }
    // status.usage.tokens is the agent's report, as observed is.
    if let Some(usage) = body.get_mut("usage").and_then(|u| u.as_object_mut()) {
        usage.remove("tokens");
    }
    let doc = json!({"apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode", "status": body});
    let key = written_key(node);
    let (name, params, patch) = (
        node.name_any(),
        PatchParams::apply(FIELD_MANAGER).force(),
        Patch::Apply(&doc),
    );
    let written = super::status::patch_for_version(api, &name, Some("status"), &params, &patch)
        .await
        .map_err(Error::kube("apply AgentNode status"))?;
    ctx.written.record(key, written.as_deref());
    Ok(())
}

/// Whether this node event is the quiet echo of this process's last status write for it (see
/// [`super::status::WrittenStatus::is_quiet_echo`]).
pub fn is_quiet_echo(ctx: &Context, node: &AgentNode) -> bool {
    ctx.written
        .is_quiet_echo(&written_key(node), node.resource_version().as_deref())
}

fn written_key(node: &AgentNode) -> String {
    format!(
        "AgentNode/{}/{}",
        node.namespace().unwrap_or_default(),
        node.name_any()
    )
}

type UserProblem = (&'static str, String);

/// Apply the node's identity and its workload. The inner error is a user-facing problem (reason,
/// message); the inner Ok may ask to look again (a child applied moments ago that the cache does not
/// show yet).
async fn ensure_workload(
    ctx: &Context,
    node: &AgentNode,
    stack: &AgentStack,
    snap: &Snapshot,
    placement: &PlacementStatus,
    meta: &WorkloadMeta,
) -> Result<Result<Option<std::time::Duration>, UserProblem>, Error> {
    let namespace = node.namespace().unwrap_or_default();
    let name = node.name_any();
    let mode = lifecycle_mode(node);
    let owner = owner_reference_to(node).ok_or(Error::MissingMetadata {
        kind: "AgentNode",
        field: "uid",
    })?;
    let runtime = merge_runtime(stack.spec.runtime.as_ref(), node.spec.runtime.as_ref());
    let layer_models: Vec<LayerModel> = snap
        .models
        .iter()
        .map(|m| {
            let entry = Context::lookup(&ctx.entries, &namespace, &m.model_entry);
            let entry = entry.as_ref().and_then(|g| g.0.as_ref().ok());
            LayerModel {
                layer: m.layer.clone(),
                endpoint: m.endpoint.clone().unwrap_or_default(),
                served_model: m.served_model.clone().unwrap_or_default(),
                // The key of the entry the stack binds, never one named by the node's status.
                api_key: entry
                    .and_then(|e| e.spec.source.remote.as_ref()?.api_key_secret_ref.clone()),
            }
        })
        .collect();
    let memory = stack.spec.layers.memory.as_ref();
    let tools = stack
        .spec
        .layers
        .action
        .as_ref()
        .map(|a| a.tools.as_slice())
        .unwrap_or_default();
    let input = AgentInput {
        node_name: &name,
        namespace: &namespace,
        stack_name: &stack.name_any(),
        owner: &owner,
        runtime: &runtime,
        models: &layer_models,
        task: node.spec.task.as_ref(),
        objective: node.spec.objective.as_ref(),
        autonomy: snap.autonomy,
        temperature: temperature(snap.autonomy, stack),
        placement,
        lifecycle: mode,
        tools,
        vector_store: memory.and_then(|m| m.vector_store.as_ref()),
        context: memory.and_then(|m| m.context.as_ref()),
    };
    let mut built = match build_agent_workload(&input) {
        Ok(built) => built,
        Err(err) => return Ok(Err((err.reason(), err.to_string()))),
    };
    super::lineage::add_env(&mut built.workload, node, &snap.lineage);
    let models_annotation = bindings_annotation(
        snap.models
            .iter()
            .map(|m| (m.layer.as_str(), m.model_entry.as_str())),
    );
    let exists = meta.bindings.is_some();
    let mut wait = None;
    // The identity comes before the workload (its pods run as it); once the workload exists the
    // identity was made, and is not applied again.
    if runtime.service_account_name.is_none() && !exists {
        let sa = build_service_account(&name, &namespace, &owner);
        let role = build_node_role(&name, &namespace, &owner, node.spec.spawn.as_ref());
        let binding = build_role_binding(&name, &namespace, &owner);
        let sa_api = Api::<ServiceAccount>::namespaced(ctx.client.clone(), &namespace);
        let role_api = Api::<Role>::namespaced(ctx.client.clone(), &namespace);
        let binding_api = Api::<RoleBinding>::namespaced(ctx.client.clone(), &namespace);
        let (a, b, c) = futures::join!(
            apply_child_cached(
                &ctx.applied,
                &sa_api,
                &sa,
                Live::Unknown,
                "apply agent ServiceAccount",
            ),
            apply_child_cached(
                &ctx.applied,
                &role_api,
                &role,
                Live::Unknown,
                "apply agent Role",
            ),
            apply_child_cached(
                &ctx.applied,
                &binding_api,
                &binding,
                Live::Unknown,
                "apply agent RoleBinding",
            ),
        );
        a?;
        b?;
        c?;
    }
    let live = meta
        .resource_version
        .clone()
        .map_or(Live::Absent, Live::Version);
    match built.workload {
        AgentWorkload::Job(mut job) => {
            // A Job's pod template is immutable: apply it once, then leave it alone.
            if !exists {
                job.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(ANNOTATION_MODELS.to_string(), models_annotation);
                let applied = apply_child_cached(
                    &ctx.applied,
                    &Api::<Job>::namespaced(ctx.client.clone(), &namespace),
                    job.as_ref(),
                    live,
                    "apply agent Job",
                )
                .await?;
                if !applied {
                    wait = Some(ABSENT_GRACE);
                }
            }
        }
        AgentWorkload::Deployment(mut deployment) => {
            let annotations = deployment
                .metadata
                .annotations
                .get_or_insert_with(Default::default);
            // A running Deployment keeps the models it was started with until it is re-created.
            let models = match &meta.bindings {
                Some(pairs) => {
                    bindings_annotation(pairs.iter().map(|(l, m)| (l.as_str(), m.as_str())))
                }
                None => models_annotation,
            };
            annotations.insert(ANNOTATION_MODELS.to_string(), models);
            let digest = spec_digest(deployment.as_ref())?;
            // Unchanged since it was applied (by this process or before a restart): nothing to do.
            if meta.digest.as_deref() != Some(digest.as_str()) {
                deployment
                    .metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(ANNOTATION_SPEC_DIGEST.to_string(), digest);
                apply_child_cached(
                    &ctx.applied,
                    &Api::<Deployment>::namespaced(ctx.client.clone(), &namespace),
                    deployment.as_ref(),
                    live,
                    "apply agent Deployment",
                )
                .await?;
            }
        }
    }
    if !built.ignored_env.is_empty() && !exists {
        ctx.event(
            &reference(node),
            EventType::Warning,
            "ReservedEnvIgnored",
            "Run",
            format!(
                "runtime.env: {} use the reserved HYPERSYNC_ prefix and were ignored",
                built.ignored_env.join(", ")
            ),
        )
        .await;
    }
    Ok(Ok(wait))
}

/// A digest of the desired object, recorded on it so an unchanged child is not re-applied, even
/// after an operator restart.
fn spec_digest<K: serde::Serialize>(obj: &K) -> Result<String, Error> {
    let value = serde_json::to_value(obj).map_err(|source| Error::Serialization {
        what: "agent workload",
        source,
    })?;
    Ok(format!("{:016x}", digest_of(&value)))
}

/// The outcome of a node, for the `Dissolved` Event.
fn outcome_note(node: &AgentNode, how: &str) -> String {
    let status = node.status.clone().unwrap_or_default();
    let objective = status.objective.clone().unwrap_or_default();
    let phase = match recorded_phase(&status) {
        Some(p) => format!("{p:?}"),
        None => "Pending".to_string(),
    };
    let coordinates = status
        .placement
        .as_ref()
        .map(|p| {
            format!(
                "r={:.4} theta={:.2} deg tier {}",
                p.r, p.theta_degrees, p.tier
            )
        })
        .unwrap_or_else(|| "never placed".into());
    let observed = objective
        .observed
        .map_or("none".to_string(), |v| v.to_string());
    format!(
        "{how} after phase {phase}: objective met={}, observed={observed}; final coordinates {coordinates}",
        objective.met
    )
}

/// Write the `Dissolved` Event with the node's outcome; an error makes the reconcile retry it before
/// the node may go.
async fn record_dissolved(ctx: &Context, node: &AgentNode, uid: &str) -> Result<(), Error> {
    let note = outcome_note(node, "dissolved");
    let event = super::context::new_event(EventType::Normal, "Dissolved", "Dissolve", note);
    ctx.publish_once(&event, &reference(node), None)
        .await
        .map_err(Error::kube("record the Dissolved Event"))?;
    ctx.dissolved.set(uid, Stage::Recorded);
    Ok(())
}

/// Record the outcome in a `Dissolved` Event (retried until it is written), then delete the node
/// (this exact object: a node re-created under the same name is not touched). Its children go with
/// it through their owner references.
async fn dissolve(ctx: &Context, api: &Api<AgentNode>, node: &AgentNode) -> Result<(), Error> {
    let uid = node.uid().unwrap_or_default();
    match ctx.dissolved.stage(&uid) {
        // Deleted by this process already; the cache has not seen it go yet.
        Some(Stage::Deleted) => return Ok(()),
        Some(Stage::Recorded) => {}
        None => record_dissolved(ctx, node, &uid).await?,
    }
    let params = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some(uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(&node.name_any(), &params).await {
        // Deleted, already gone, or the name now belongs to another object.
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(err) => return Err(Error::kube("delete the dissolved AgentNode")(err)),
    }
    ctx.dissolved.set(&uid, Stage::Deleted);
    Ok(())
}

/// The watch saw a node go. A node the operator dissolved has its `Dissolved` Event already; one
/// deleted by someone else gets it now (best effort). This process's bookkeeping of it is dropped.
pub fn on_deleted(ctx: &Arc<Context>, node: &AgentNode) {
    let uid = node.uid().unwrap_or_default();
    ctx.written.forget(&written_key(node));
    let namespace = node.namespace().unwrap_or_default();
    let name = node.name_any();
    ctx.applied
        .forget("Job", &namespace, &agent_workload_name(&name));
    let identity = crate::workload::identity::identity_name(&name);
    for kind in ["ServiceAccount", "Role", "RoleBinding"] {
        ctx.applied.forget(kind, &namespace, &identity);
    }
    if ctx.dissolved.observed_deleted(&uid) {
        return;
    }
    let reference = reference(node);
    let note = outcome_note(node, "deleted");
    let ctx = ctx.clone();
    tokio::spawn(async move {
        ctx.event(&reference, EventType::Normal, "Dissolved", "Dissolve", note)
            .await;
    });
}

/// Nodes made by earlier versions carry the `hypersync.io/dissolve` finalizer: record the outcome and
/// release them.
async fn finalize_legacy(
    ctx: &Context,
    api: &Api<AgentNode>,
    node: &AgentNode,
) -> Result<Action, Error> {
    let Some(index) = node.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(Action::await_change());
    };
    let uid = node.uid().unwrap_or_default();
    if ctx.dissolved.stage(&uid).is_none() {
        record_dissolved(ctx, node, &uid).await?;
    }
    let patch = json!([
        {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{index}")}
    ]);
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(|source| Error::Serialization {
            what: "finalizer patch",
            source,
        })?;
    api.patch(
        &node.name_any(),
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await
    .map_err(Error::kube("remove the legacy dissolve finalizer"))?;
    Ok(Action::await_change())
}

//! The AgentNode controller: places the node in the Poincare disk, binds its models from its stack
//! (raising their demand), runs the agent (Job or Deployment) with a per-node identity, evaluates the
//! objective, and dissolves Ephemeral nodes after their TTL. A finalizer records a `Dissolved` Event.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
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
use super::context::{Context, reference};
use super::status::apply_child;
use crate::api::agent_node::{
    AgentNode, AgentNodeStatus, LifecycleMode, ModelInUse, Neighbor, NodePhase, ObjectiveStatus,
    PlacementMode, PlacementStatus, WorkloadRef,
};
use crate::api::agent_stack::{AgentStack, StackPhase};
use crate::api::common::Autonomy;
use crate::api::conditions::{condition, find, set_condition};
use crate::api::model_entry::{ModelEntry, ModelPhase};
use crate::error::Error;
use crate::geometry::{self, AnchorIndex, AnchorKey, DiskPoint, PlacementRequest};
use crate::workload::agent::{
    AgentInput, AgentWorkload, LayerModel, agent_workload_name, build_agent_workload,
    merge_runtime, placement_annotations,
};
use crate::workload::identity::{build_role, build_role_binding, build_service_account};
use crate::workload::labels::{FIELD_MANAGER, FINALIZER, LABEL_AGENT_NODE};
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
    }
}

/// Build the anchor index from every placed node of the store (done once, then kept up to date).
fn build_index(nodes: &[AgentNode]) -> AnchorIndex {
    let mut index = AnchorIndex::new();
    for node in nodes {
        let Some(p) = node.status.as_ref().and_then(|s| s.placement.as_ref()) else {
            continue;
        };
        let (Some(anchor), Some(point)) = (p.anchor.as_deref(), point_of(p)) else {
            continue;
        };
        let Ok(key) = AnchorKey::from_str(anchor) else {
            continue;
        };
        let Ok(anchor_point) = key.to_point() else {
            continue;
        };
        if let Ok(slot) = geometry::locate_slot(anchor_point, point) {
            let _ = index.insert(key, slot);
        }
    }
    index
}

/// Where the node goes, or why it cannot be placed yet: Err((reason, message)).
fn compute_placement(
    node: &AgentNode,
    autonomy: Autonomy,
    nodes: &[AgentNode],
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
        None => None,
        Some(near) => match (&near.point, &near.agent_node) {
            (Some(c), _) => Some(DiskPoint::from_polar(c.r, c.theta_degrees).map_err(|e| {
                (
                    "InvalidPlacement",
                    format!("spec.placement.near.point: {e}"),
                )
            })?),
            (None, Some(other)) => {
                let found = nodes.iter().find(|n| n.name_any() == *other);
                let Some(found) = found else {
                    return Err((
                        "AnchorNotFound",
                        format!("spec.placement.near.agentNode: AgentNode {other} not found"),
                    ));
                };
                let placed = found
                    .status
                    .as_ref()
                    .and_then(|s| s.placement.as_ref())
                    .and_then(point_of);
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
            .map(|p| PlacementStatus {
                r: p.r(),
                theta_degrees: p.theta_degrees(),
                x: p.x(),
                y: p.y(),
                hyperbolic_radius: p.hyperbolic_radius(),
                tier: i64::from(p.tier()),
                anchor: None,
                algorithm: "explicit".to_string(),
                inputs_digest: String::new(),
            })
            .map_err(|e| {
                (
                    "InvalidPlacement",
                    format!("spec.placement.coordinates: {e}"),
                )
            }),
    )
}

/// The models the node uses: from the stack's resolved bindings, plus their state.
fn bound_models(
    stack: Option<&AgentStack>,
    entries: &[ModelEntry],
    recorded: &[ModelInUse],
    frozen: bool,
) -> (Vec<ModelInUse>, Models) {
    let Some(stack) = stack else {
        return (recorded.to_vec(), Models::StackMissing);
    };
    let models: Vec<ModelInUse> = if frozen && !recorded.is_empty() {
        recorded.to_vec()
    } else {
        let Some(status) = stack.status.as_ref() else {
            return (
                recorded.to_vec(),
                Models::Unresolved(format!(
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
                recorded.to_vec(),
                Models::Unresolved(format!("AgentStack {}: {message}", stack.name_any())),
            );
        }
        status
            .bindings
            .iter()
            .filter_map(|b| {
                Some(ModelInUse {
                    layer: b.layer.clone(),
                    model_entry: b.model_entry.clone()?,
                    endpoint: b.endpoint.clone(),
                    served_model: b.served_model.clone(),
                })
            })
            .collect()
    };
    let waiting: Vec<String> = models
        .iter()
        .filter(|m| {
            !entries.iter().any(|e| {
                e.name_any() == m.model_entry
                    && e.status.as_ref().and_then(|s| s.phase) == Some(ModelPhase::Ready)
            })
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

/// The workload's state from the Job/Deployment and pod stores.
fn observe_workload(ctx: &Context, namespace: &str, node: &str, mode: LifecycleMode) -> Workload {
    let name = agent_workload_name(node);
    let in_ns = |ns: Option<&String>, n: Option<&String>| {
        ns.map(String::as_str) == Some(namespace) && n.map(String::as_str) == Some(name.as_str())
    };
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| {
            p.metadata.namespace.as_deref() == Some(namespace)
                && p.labels().get(LABEL_AGENT_NODE).map(String::as_str) == Some(node)
        })
        .collect();
    let (_, problem) = super::model_entry::pod_problems(&pods);
    match mode {
        LifecycleMode::Ephemeral => {
            let Some(job) = ctx
                .jobs
                .state()
                .into_iter()
                .find(|j| in_ns(j.metadata.namespace.as_ref(), j.metadata.name.as_ref()))
            else {
                return Workload::Absent;
            };
            let conditions = job
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            if conditions
                .iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
            {
                return Workload::Completed;
            }
            if let Some(c) = conditions
                .iter()
                .find(|c| c.type_ == "Failed" && c.status == "True")
            {
                return Workload::Failed {
                    reason: c.reason.clone().unwrap_or_else(|| "Failed".into()),
                    message: c.message.clone().unwrap_or_default(),
                };
            }
            let ready = job.status.as_ref().and_then(|s| s.ready).unwrap_or(0) > 0;
            Workload::Running { ready, problem }
        }
        LifecycleMode::Persistent => {
            let Some(d) = ctx
                .deployments
                .state()
                .into_iter()
                .find(|d| in_ns(d.metadata.namespace.as_ref(), d.metadata.name.as_ref()))
            else {
                return Workload::Absent;
            };
            let ready = d
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
                > 0;
            Workload::Running { ready, problem }
        }
    }
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
    let name = node.name_any();
    let api: Api<AgentNode> = Api::namespaced(ctx.client.clone(), &namespace);

    if node.metadata.deletion_timestamp.is_some() {
        return finalize(ctx, &api, node).await;
    }
    if !node.finalizers().iter().any(|f| f == FINALIZER) {
        add_finalizer(&api, node).await?;
        return Ok(Action::await_change());
    }

    let now = Timestamp::now();
    let generation = node.metadata.generation;
    let old = node.status.clone().unwrap_or_default();
    let mut status = old.clone();
    status.observed_generation = generation;
    let mut events: Vec<(EventType, &'static str, String)> = Vec::new();
    let nodes = ctx.nodes_in(&namespace);
    let stack = ctx
        .stacks_in(&namespace)
        .into_iter()
        .find(|s| s.name_any() == node.spec.stack_ref.name);
    let autonomy = node
        .spec
        .objective
        .as_ref()
        .and_then(|o| o.autonomy)
        .or(stack.as_ref().map(|s| s.spec.objective_alignment))
        .unwrap_or_default();

    // 1. Placement (immutable once written).
    let uid = node.uid().unwrap_or_default();
    if status.placement.is_none() {
        let guard = ctx
            .placement
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        status.placement = guard.written.get(&uid).cloned();
    }
    if status.placement.is_none() && stack.is_some() {
        let outcome = match explicit_placement(node) {
            Some(result) => result,
            None => {
                let mut guard = ctx
                    .placement
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let index = guard.index.get_or_insert_with(|| build_index(&nodes));
                compute_placement(node, autonomy, &nodes, index).map(|(placed, key)| {
                    index.insert_placement(&placed);
                    placement_status(&placed, key)
                })
            }
        };
        match outcome {
            Ok(placement) => {
                events.push((
                    EventType::Normal,
                    "Placed",
                    format!(
                        "placed at r={:.4} theta={:.2} deg (tier {})",
                        placement.r, placement.theta_degrees, placement.tier
                    ),
                ));
                ctx.placement
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .written
                    .insert(uid.clone(), placement.clone());
                status.placement = Some(placement);
                status.phase = Some(NodePhase::Placed);
            }
            Err((reason, message)) => {
                set_condition(
                    &mut status.conditions,
                    condition(
                        "Placed",
                        false,
                        reason,
                        message.clone(),
                        generation,
                        Time(now),
                    ),
                );
                status.phase = Some(NodePhase::Pending);
                let changed = apply_node_status(&api, &name, &old, &status).await?;
                if changed {
                    ctx.event(
                        &reference(node),
                        EventType::Warning,
                        reason,
                        "Place",
                        message,
                    )
                    .await;
                }
                return Ok(Action::requeue(std::time::Duration::from_secs(5)));
            }
        }
    }
    if let Some(p) = &status.placement {
        set_condition(
            &mut status.conditions,
            condition(
                "Placed",
                true,
                "Placed",
                format!("r={:.4} theta={:.2} deg", p.r, p.theta_degrees),
                generation,
                Time(now),
            ),
        );
        annotate(&api, node, p).await?;
        status.neighbors = neighbors(&name, p, &nodes);
    }

    // 2. Models and workload.
    let mode = node
        .spec
        .lifecycle
        .as_ref()
        .map(|l| l.mode)
        .unwrap_or_default();
    let workload = observe_workload(ctx, &namespace, &name, mode);
    let entries = ctx.entries_in(&namespace);
    let frozen = workload != Workload::Absent;
    let (models, models_state) = bound_models(stack.as_ref(), &entries, &old.models, frozen);
    let provisioning_since = find(&old.conditions, "ModelsReady")
        .filter(|c| c.status == "False")
        .map(|c| c.last_transition_time.0);
    let inputs = Inputs {
        spec: &node.spec,
        phase: old
            .phase
            .filter(|_| status.placement.is_some())
            .or(status.phase),
        placed: status.placement.is_some(),
        models: models_state,
        workload: workload.clone(),
        observed: old.objective.as_ref().and_then(|o| o.observed),
        already_met: old.objective.as_ref().is_some_and(|o| o.met),
        provisioning_since,
        completion_time: old.completion_time.as_ref().map(|t| t.0),
        now,
    };
    let decision: Decision = decide(&inputs);
    if matches!(inputs.models, Models::Waiting(_) | Models::Ready)
        || decision.phase == NodePhase::Provisioning
    {
        status.models = models.clone();
    }

    // The workload is applied when missing; a Persistent node's Deployment is re-applied every time
    // (server-side apply makes that a no-op unless it drifted). A Job's template is immutable.
    let apply_workload = decision.run_workload
        && (workload == Workload::Absent || mode == LifecycleMode::Persistent);
    if apply_workload
        && let (Some(stack), Some(placement)) = (stack.as_ref(), status.placement.as_ref())
    {
        match ensure_workload(ctx, node, stack, &status.models, placement, autonomy, mode).await? {
            Ok(built) => {
                if status.workload.is_none() {
                    events.push((
                        EventType::Normal,
                        "Running",
                        format!("started {} {}", built.0, built.1),
                    ));
                    status.start_time = Some(Time(now));
                }
                status.workload = Some(WorkloadRef {
                    kind: built.0.to_string(),
                    name: built.1,
                });
            }
            Err((reason, message)) => {
                set_condition(
                    &mut status.conditions,
                    condition(
                        "AgentReady",
                        false,
                        reason,
                        message.clone(),
                        generation,
                        Time(now),
                    ),
                );
                let changed = apply_node_status(&api, &name, &old, &status).await?;
                if changed {
                    ctx.event(&reference(node), EventType::Warning, reason, "Run", message)
                        .await;
                }
                return Ok(Action::await_change());
            }
        }
    }

    // 3. Status from the decision.
    if old.phase != Some(decision.phase) {
        match decision.phase {
            NodePhase::Provisioning => events.push((
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
            )),
            NodePhase::Succeeded => events.push((
                EventType::Normal,
                "ObjectiveMet",
                decision
                    .conditions
                    .iter()
                    .find(|c| c.0 == "ObjectiveMet")
                    .map(|c| c.3.clone())
                    .unwrap_or_default(),
            )),
            NodePhase::Failed => events.push((
                EventType::Warning,
                "Failed",
                decision
                    .conditions
                    .iter()
                    .find(|c| c.0 == "ObjectiveMet")
                    .map(|c| c.3.clone())
                    .unwrap_or_default(),
            )),
            _ => {}
        }
    }
    for (type_, ok, reason, message) in &decision.conditions {
        let was = find(&old.conditions, type_).map(|c| (c.status.clone(), c.reason.clone()));
        let now_cond = condition(type_, *ok, reason, message.clone(), generation, Time(now));
        let progress = matches!(*reason, "WaitingForModels" | "AgentStarting" | "InProgress");
        if !ok
            && !progress
            && was != Some(("False".into(), (*reason).to_string()))
            && *type_ != "ObjectiveMet"
        {
            events.push((EventType::Warning, reason, message.clone()));
        }
        set_condition(&mut status.conditions, now_cond);
    }
    status.phase = Some(if decision.dissolve {
        NodePhase::Dissolving
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
    apply_node_status(&api, &name, &old, &status).await?;
    for (type_, reason, note) in events {
        ctx.event(&reference(node), type_, reason, "Reconcile", note)
            .await;
    }
    if decision.dissolve {
        api.delete(&name, &DeleteParams::background())
            .await
            .map_err(Error::kube("delete dissolved AgentNode"))?;
        return Ok(Action::await_change());
    }
    Ok(decision
        .requeue_after
        .map_or_else(Action::await_change, Action::requeue))
}

/// Apply the node's status, leaving `status.objective.observed` to the agent that reports it.
async fn apply_node_status(
    api: &Api<AgentNode>,
    name: &str,
    old: &AgentNodeStatus,
    new: &AgentNodeStatus,
) -> Result<bool, Error> {
    if old == new {
        return Ok(false);
    }
    let mut body = serde_json::to_value(new).map_err(|source| Error::Serialization {
        what: "AgentNode status",
        source,
    })?;
    if let Some(objective) = body.get_mut("objective").and_then(|o| o.as_object_mut()) {
        objective.remove("observed");
    }
    let patch = json!({"apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode", "status": body});
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::kube("apply AgentNode status"))?;
    Ok(true)
}

fn neighbors(name: &str, placement: &PlacementStatus, nodes: &[AgentNode]) -> Vec<Neighbor> {
    let Some(target) = point_of(placement) else {
        return Vec::new();
    };
    let points = nodes
        .iter()
        .filter(|n| n.name_any() != name)
        .filter_map(|n| {
            let p = n.status.as_ref()?.placement.as_ref()?;
            Some((n.name_any(), point_of(p)?))
        });
    geometry::k_nearest(points, target, NEIGHBORS)
        .into_iter()
        .map(|n| Neighbor {
            name: n.id,
            distance: (n.distance * 1e9).round() / 1e9,
        })
        .collect()
}

/// Write the placement annotations on the node (server-side apply of metadata only).
async fn annotate(
    api: &Api<AgentNode>,
    node: &AgentNode,
    placement: &PlacementStatus,
) -> Result<(), Error> {
    let desired = placement_annotations(placement);
    let current: BTreeMap<String, String> = node
        .annotations()
        .iter()
        .filter(|(k, _)| desired.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if current == desired {
        return Ok(());
    }
    let body = json!({"apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode", "metadata": {"name": node.name_any(), "annotations": desired}});
    api.patch(
        &node.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(Error::kube("annotate AgentNode with its placement"))?;
    Ok(())
}

type Built = (&'static str, String);

/// Apply the node's identity and its workload. The inner error is a user-facing problem (reason, message).
async fn ensure_workload(
    ctx: &Context,
    node: &AgentNode,
    stack: &AgentStack,
    models: &[ModelInUse],
    placement: &PlacementStatus,
    autonomy: Autonomy,
    mode: LifecycleMode,
) -> Result<Result<Built, (&'static str, String)>, Error> {
    let namespace = node.namespace().unwrap_or_default();
    let name = node.name_any();
    let owner = owner_reference_to(node).ok_or(Error::MissingMetadata {
        kind: "AgentNode",
        field: "uid",
    })?;
    let runtime = merge_runtime(stack.spec.runtime.as_ref(), node.spec.runtime.as_ref());
    let entries = ctx.entries_in(&namespace);
    let layer_models: Vec<LayerModel> = models
        .iter()
        .map(|m| {
            let entry = entries.iter().find(|e| e.name_any() == m.model_entry);
            LayerModel {
                layer: m.layer.clone(),
                endpoint: entry
                    .and_then(|e| e.status.as_ref()?.endpoint.clone())
                    .or(m.endpoint.clone())
                    .unwrap_or_default(),
                served_model: entry
                    .and_then(|e| e.status.as_ref()?.served_model.clone())
                    .or(m.served_model.clone())
                    .unwrap_or_default(),
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
        autonomy,
        temperature: temperature(autonomy, stack),
        placement,
        lifecycle: mode,
        tools,
        vector_store: memory.and_then(|m| m.vector_store.as_ref()),
        context: memory.and_then(|m| m.context.as_ref()),
    };
    let built = match build_agent_workload(&input) {
        Ok(built) => built,
        Err(err) => return Ok(Err((err.reason(), err.to_string()))),
    };
    if runtime.service_account_name.is_none() {
        let client = ctx.client.clone();
        apply_child(
            &Api::<ServiceAccount>::namespaced(client.clone(), &namespace),
            &build_service_account(&name, &namespace, &owner),
            "apply agent ServiceAccount",
        )
        .await?;
        apply_child(
            &Api::<Role>::namespaced(client.clone(), &namespace),
            &build_role(&name, &namespace, &owner),
            "apply agent Role",
        )
        .await?;
        apply_child(
            &Api::<RoleBinding>::namespaced(client, &namespace),
            &build_role_binding(&name, &namespace, &owner),
            "apply agent RoleBinding",
        )
        .await?;
    }
    let kind = built.workload.kind();
    let workload_name = built.workload.name().to_string();
    match built.workload {
        AgentWorkload::Job(job) => {
            // A Job's pod template is immutable: apply it once, then leave it alone.
            let exists = ctx.jobs.state().iter().any(|j| {
                j.metadata.namespace.as_deref() == Some(namespace.as_str())
                    && j.metadata.name.as_deref() == Some(workload_name.as_str())
            });
            if !exists {
                apply_child(
                    &Api::<Job>::namespaced(ctx.client.clone(), &namespace),
                    &job,
                    "apply agent Job",
                )
                .await?;
            }
        }
        AgentWorkload::Deployment(deployment) => {
            apply_child(
                &Api::<Deployment>::namespaced(ctx.client.clone(), &namespace),
                &deployment,
                "apply agent Deployment",
            )
            .await?;
        }
    }
    if !built.ignored_env.is_empty() {
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
    Ok(Ok((kind, workload_name)))
}

async fn add_finalizer(api: &Api<AgentNode>, node: &AgentNode) -> Result<(), Error> {
    let rv = node.resource_version().unwrap_or_default();
    let patch = if node.metadata.finalizers.is_none() {
        json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv}, {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}])
    } else {
        json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv}, {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}])
    };
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
    .map_err(Error::kube("add the dissolve finalizer"))?;
    Ok(())
}

/// Record the outcome in a `Dissolved` Event, free the placement slot, and let the node go.
async fn finalize(ctx: &Context, api: &Api<AgentNode>, node: &AgentNode) -> Result<Action, Error> {
    let Some(index) = node.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(Action::await_change());
    };
    let status = node.status.clone().unwrap_or_default();
    let phase = status
        .phase
        .map(|p| format!("{p:?}"))
        .unwrap_or_else(|| "Pending".into());
    let objective = status.objective.clone().unwrap_or_default();
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
    let note = format!(
        "dissolved after phase {phase}: objective met={}, observed={observed}; final coordinates {coordinates}",
        objective.met
    );
    ctx.event(
        &reference(node),
        EventType::Normal,
        "Dissolved",
        "Dissolve",
        note,
    )
    .await;

    {
        let mut guard = ctx
            .placement
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.written.remove(&node.uid().unwrap_or_default());
        let slot = status.placement.as_ref().and_then(|p| {
            let key = AnchorKey::from_str(p.anchor.as_deref()?).ok()?;
            let slot = geometry::locate_slot(key.to_point().ok()?, point_of(p)?).ok()?;
            Some((key, slot))
        });
        if let (Some(index), Some((key, slot))) = (guard.index.as_mut(), slot) {
            index.remove(key, slot);
        }
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
    .map_err(Error::kube("remove the dissolve finalizer"))?;
    Ok(Action::await_change())
}

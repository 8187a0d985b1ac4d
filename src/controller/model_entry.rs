//! The ModelEntry controller: mirrors capability labels, provisions local models (Deployment, Service,
//! cache PVC, NetworkPolicy) with replicas from the scaling policy and demand, and reports the endpoint,
//! phase and conditions. Remote entries are validated and reported Ready with their endpoint.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::cached::Pod;
use super::context::{Context, reference};
use super::model_entry_decide::{Observed, decide_local, provider_endpoint};
use super::ready;
use super::status::{Live, apply_child_cached, apply_status};
use super::watch;
use crate::api::CAPABILITY_LABEL_PREFIX;
use crate::api::conditions::{condition, set_condition};
use crate::api::model_entry::{ModelEntry, ModelEntryStatus, ModelPhase, ReplicaCounts};
use crate::error::Error;
use crate::workload::inference::{InferenceInput, build_inference, inference_name};
use crate::workload::labels::FIELD_MANAGER;
use crate::workload::network::build_network_policy;
use crate::workload::owner_reference_to;

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "modelentry";

/// The capability labels an entry should carry.
pub fn capability_labels(entry: &ModelEntry) -> BTreeMap<String, String> {
    entry
        .spec
        .capabilities
        .iter()
        .map(|c| (format!("{CAPABILITY_LABEL_PREFIX}{c}"), "true".to_string()))
        .collect()
}

/// The scheduler's message of an unschedulable pod, and a failing container's reason and message.
pub fn pod_problems(pods: &[Arc<Pod>]) -> (Option<String>, Option<String>) {
    let mut unschedulable = None;
    let mut failing = None;
    for pod in pods {
        let Some(status) = &pod.status else { continue };
        if let Some(c) = status.conditions.iter().flatten().find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        }) {
            unschedulable = unschedulable.or_else(|| c.message.clone());
        }
        for cs in status.container_statuses.iter().flatten() {
            if let Some(waiting) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
                let reason = waiting.reason.clone().unwrap_or_default();
                if matches!(
                    reason.as_str(),
                    "CrashLoopBackOff"
                        | "ImagePullBackOff"
                        | "ErrImagePull"
                        | "CreateContainerConfigError"
                        | "InvalidImageName"
                ) {
                    let message = waiting.message.clone().unwrap_or_default();
                    failing = failing.or(Some(format!("{reason}: {message}")));
                }
            }
        }
    }
    (unschedulable, failing)
}

/// Reconcile one ModelEntry.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<ModelEntry>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    super::observe(
        CONTROLLER,
        "ModelEntry",
        obj.meta(),
        &ctx,
        reconcile_inner(&obj, &ctx),
    )
    .await
}

async fn reconcile_inner(
    obj: &DeserializeGuard<ModelEntry>,
    ctx: &Context,
) -> Result<Action, Error> {
    let entry = match &obj.0 {
        Ok(entry) => entry,
        Err(invalid) => return super::report_malformed::<ModelEntry>(ctx, invalid).await,
    };
    let namespace = entry.namespace().ok_or(Error::MissingMetadata {
        kind: "ModelEntry",
        field: "namespace",
    })?;
    let name = entry.name_any();
    let api: Api<ModelEntry> = Api::namespaced(ctx.client.clone(), &namespace);
    mirror_capability_labels(&api, entry).await?;

    // Demand: live nodes bound to this entry, counted by the index from the nodes' specs, their
    // stacks' resolution and the operator's own workloads (never from a status an agent can write).
    let demand = ctx.index.demand(&namespace, &name);
    let old = entry.status.clone().unwrap_or_default();
    let generation = entry.metadata.generation;
    let now = Timestamp::now();
    let mut conditions = old.conditions.clone();
    let mut requeue = None;
    let mut events: Vec<(EventType, &'static str, String)> = Vec::new();

    let mut status = ModelEntryStatus {
        observed_generation: generation,
        demand: Some(demand),
        ..ModelEntryStatus::default()
    };
    if let Some(remote) = &entry.spec.source.remote {
        let endpoint = remote
            .endpoint
            .clone()
            .or_else(|| provider_endpoint(remote.provider).map(String::from));
        status.endpoint = endpoint.clone();
        status.served_model = Some(remote.model.clone());
        status.phase = Some(ModelPhase::Ready);
        status.last_used_time = old.last_used_time.clone();
        let message = format!(
            "served by {:?} at {}",
            remote.provider,
            endpoint.unwrap_or_default()
        );
        let readiness = ready::model_entry(ModelPhase::Ready, "RemoteEndpoint", &message);
        ready::set_ready(&mut conditions, &readiness, generation, Time(now));
    } else if let Some(local) = &entry.spec.source.local {
        let owner = owner_reference_to(entry).ok_or(Error::MissingMetadata {
            kind: "ModelEntry",
            field: "uid",
        })?;
        let deployment_name = inference_name(&name);
        let deployment = watch::get(&ctx.deployments, &(namespace.clone(), deployment_name));
        let pods: Vec<Arc<Pod>> = ctx
            .index
            .pods_of_entry(&namespace, &name)
            .iter()
            .filter_map(|p| watch::get(&ctx.pods, &(namespace.clone(), p.clone())))
            .collect();
        let (unschedulable, failing) = pod_problems(&pods);
        let observed = Observed {
            demand,
            previous_demand: old.demand.unwrap_or(0),
            last_used: old.last_used_time.as_ref().map(|t| t.0),
            ready_replicas: deployment
                .as_ref()
                .and_then(|d| d.status.as_ref())
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0),
            unschedulable,
            failing,
        };
        let decision = decide_local(&entry.spec, &observed, now);
        let input = InferenceInput {
            entry_name: &name,
            namespace: &namespace,
            model_type: entry.spec.model_type,
            local,
            replicas: decision.replicas,
            owner: &owner,
        };
        let built = match build_inference(&input) {
            Ok(built) => built,
            Err(err) => {
                return report_invalid(ctx, entry, &api, &old, err.reason(), err.to_string()).await;
            }
        };
        if let Some(pvc) = &built.cache {
            apply_child_cached(
                &ctx.applied,
                &Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &namespace),
                pvc,
                Live::Unknown,
                "apply cache PersistentVolumeClaim",
            )
            .await?;
        }
        let live = deployment
            .as_ref()
            .and_then(|d| d.metadata.resource_version.clone())
            .map_or(Live::Absent, Live::Version);
        apply_child_cached(
            &ctx.applied,
            &Api::<Deployment>::namespaced(ctx.client.clone(), &namespace),
            &built.deployment,
            live,
            "apply inference Deployment",
        )
        .await?;
        apply_child_cached(
            &ctx.applied,
            &Api::<Service>::namespaced(ctx.client.clone(), &namespace),
            &built.service,
            Live::Unknown,
            "apply inference Service",
        )
        .await?;
        let stacks = ctx.index.stacks_bound_to(&namespace, &name);
        match build_network_policy(&input, &stacks) {
            Ok(policy) => {
                apply_child_cached(
                    &ctx.applied,
                    &Api::<NetworkPolicy>::namespaced(ctx.client.clone(), &namespace),
                    &policy,
                    Live::Unknown,
                    "apply inference NetworkPolicy",
                )
                .await?;
            }
            Err(err) => {
                return report_invalid(ctx, entry, &api, &old, err.reason(), err.to_string()).await;
            }
        }

        status.endpoint = Some(built.endpoint);
        status.served_model = Some(built.served_model);
        status.phase = Some(decision.phase);
        status.replicas = Some(ReplicaCounts {
            desired: decision.replicas,
            ready: observed
                .ready_replicas
                .min(decision.replicas.max(observed.ready_replicas)),
        });
        status.last_used_time = decision.last_used.map(Time);
        let (_, reason, message) = &decision.ready;
        let readiness = ready::model_entry(decision.phase, reason, message);
        ready::set_ready(&mut conditions, &readiness, generation, Time(now));
        let (scheduled, reason, message) = decision.scheduled.clone();
        set_condition(
            &mut conditions,
            condition(
                "Scheduled",
                scheduled,
                reason,
                message.clone(),
                generation,
                Time(now),
            ),
        );
        requeue = decision.requeue_after;

        let old_replicas = old.replicas.as_ref().map(|r| r.desired);
        if old_replicas != Some(decision.replicas) && old_replicas.is_some() {
            let (reason, note) = if decision.replicas == 0 {
                (
                    "ScaledToZero",
                    "no AgentNode needs this model: scaled to 0".to_string(),
                )
            } else {
                (
                    "ScaledUp",
                    format!(
                        "scaled to {} replica(s) for {demand} AgentNode(s)",
                        decision.replicas
                    ),
                )
            };
            events.push((EventType::Normal, reason, note));
        }
        let was_unschedulable = old
            .conditions
            .iter()
            .any(|c| c.type_ == "Scheduled" && c.status == "False");
        if !scheduled && !was_unschedulable {
            events.push((EventType::Warning, "Unschedulable", message));
        }
        if decision.phase == ModelPhase::Degraded && old.phase != Some(ModelPhase::Degraded) {
            events.push((
                EventType::Warning,
                "EngineFailing",
                decision.ready.2.clone(),
            ));
        }
    }
    if status.phase == Some(ModelPhase::Ready) && old.phase != Some(ModelPhase::Ready) {
        events.push((
            EventType::Normal,
            "Ready",
            format!("serving at {}", status.endpoint.clone().unwrap_or_default()),
        ));
    }
    status.conditions = conditions;
    // What the plan no longer contains goes before the generation is recorded as observed.
    super::prune::entry_children(ctx, entry).await?;
    apply_status(&api, &name, entry.status.as_ref(), &status).await?;
    for (type_, reason, note) in events {
        ctx.event(&reference(entry), type_, reason, "Reconcile", note)
            .await;
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Mirror `spec.capabilities` into `capability.hypersync.io/<tag>` labels (server-side apply: labels
/// of removed tags are dropped because the operator stops applying them).
async fn mirror_capability_labels(api: &Api<ModelEntry>, entry: &ModelEntry) -> Result<(), Error> {
    let desired = capability_labels(entry);
    let current: BTreeMap<String, String> = entry
        .labels()
        .iter()
        .filter(|(k, _)| k.starts_with(CAPABILITY_LABEL_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if current == desired {
        return Ok(());
    }
    let body = json!({
        "apiVersion": "hypersync.io/v1alpha1",
        "kind": "ModelEntry",
        "metadata": {"name": entry.name_any(), "labels": desired},
    });
    api.patch(
        &entry.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(Error::kube("apply capability labels"))?;
    Ok(())
}

/// A spec the builders reject: Failed phase, a condition naming the problem, a Warning Event, and no
/// retry until the spec changes.
async fn report_invalid(
    ctx: &Context,
    entry: &ModelEntry,
    api: &Api<ModelEntry>,
    old: &ModelEntryStatus,
    reason: &'static str,
    message: String,
) -> Result<Action, Error> {
    let generation = entry.metadata.generation;
    let mut status = old.clone();
    status.observed_generation = generation;
    status.phase = Some(ModelPhase::Failed);
    ready::set_ready(
        &mut status.conditions,
        &ready::model_entry(ModelPhase::Failed, reason, &message),
        generation,
        Time(Timestamp::now()),
    );
    let changed = apply_status(api, &entry.name_any(), entry.status.as_ref(), &status).await?;
    if changed {
        ctx.event(
            &reference(entry),
            EventType::Warning,
            reason,
            "Provision",
            message,
        )
        .await;
    }
    Ok(Action::await_change())
}

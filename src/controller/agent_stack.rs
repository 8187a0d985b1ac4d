//! The AgentStack controller: resolves every layer binding against the namespace's ModelEntries and
//! records the outcome in status; re-run whenever a ModelEntry of the namespace changes.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use super::context::{Context, reference};
use super::ready;
use super::resolve::resolve;
use super::status::apply_status;
use crate::api::agent_stack::{AgentStack, AgentStackStatus, StackPhase};
use crate::api::conditions::{condition, find, set_condition};
use crate::error::Error;

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "agentstack";

/// Reconcile one AgentStack.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<AgentStack>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    super::observe(
        CONTROLLER,
        "AgentStack",
        obj.meta(),
        &ctx,
        reconcile_inner(&obj, &ctx),
    )
    .await
}

async fn reconcile_inner(
    obj: &DeserializeGuard<AgentStack>,
    ctx: &Context,
) -> Result<Action, Error> {
    let stack = match &obj.0 {
        Ok(stack) => stack,
        Err(invalid) => return super::report_malformed::<AgentStack>(ctx, invalid).await,
    };
    let namespace = stack.namespace().ok_or(Error::MissingMetadata {
        kind: "AgentStack",
        field: "namespace",
    })?;
    let name = stack.name_any();
    let resolution = resolve(&stack.spec, &ctx.entries_in(&namespace));

    let old = stack.status.clone().unwrap_or_default();
    let mut conditions = old.conditions.clone();
    let generation = stack.metadata.generation;
    let now = Time(Timestamp::now());
    set_condition(
        &mut conditions,
        condition(
            "Resolved",
            resolution.phase == StackPhase::Resolved,
            resolution.reason,
            resolution.message.clone(),
            generation,
            now.clone(),
        ),
    );
    let readiness = ready::agent_stack(
        resolution.phase,
        resolution.all_available,
        resolution.settling,
        resolution.reason,
        &resolution.message,
    );
    ready::set_ready(&mut conditions, &readiness, generation, now);
    // While a bound model has no status for its spec yet (moments after the operator started, or
    // after the model changed) the outcome is provisional: no Event until it settles.
    let settling = |reason: &str| reason == ready::WAITING_FOR_MODEL_STATUS;
    let was_settling =
        find(&old.conditions, ready::READY).is_some_and(|c| settling(c.reason.as_str()));
    let status = AgentStackStatus {
        observed_generation: generation,
        phase: Some(resolution.phase),
        bindings: resolution.bindings,
        conditions,
    };
    let api: Api<AgentStack> = Api::namespaced(ctx.client.clone(), &namespace);
    let changed = apply_status(&api, &name, stack.status.as_ref(), &status).await?;
    if changed && !settling(readiness.reason()) && (old.phase != status.phase || was_settling) {
        let (type_, reason) = match resolution.phase {
            StackPhase::Resolved => (EventType::Normal, "Resolved"),
            StackPhase::Degraded => (EventType::Warning, "Degraded"),
            StackPhase::Unresolved => (EventType::Warning, "Unresolved"),
        };
        ctx.event(
            &reference(stack),
            type_,
            reason,
            "Resolve",
            resolution.message,
        )
        .await;
    }
    Ok(Action::await_change())
}

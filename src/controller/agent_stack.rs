//! The AgentStack controller: resolves every layer binding against the namespace's ModelEntries and
//! records the outcome in status; re-run whenever a ModelEntry of the namespace changes.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
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

/// How long a layer may be without an available model before the stack reports it (Ready False and
/// a Warning Event), counted from when `Resolved` became False (or the stack's first resolution).
/// Objects applied together reach the operator's cache in the order they were sent (`kubectl apply
/// -k` sends AgentStacks before ModelEntries), so a stack is often resolved moments before the
/// model it names, or its fallback, is in the cache; until then the outcome is provisional, as while
/// a model has no status for its spec yet (Ready Unknown, `WaitingForModelStatus`), and the stack is
/// resolved again when the grace ends.
pub const MODEL_GRACE: Duration = Duration::from_secs(3);

/// What is left of [`MODEL_GRACE`] when a layer has no available model (`None` once it is over, or
/// when every layer is bound to an available model).
fn grace_left(old: &[Condition], all_available: bool, now: Timestamp) -> Option<Duration> {
    if all_available {
        return None;
    }
    let since = find(old, "Resolved")
        .filter(|c| c.status == "False")
        .map_or(now, |c| c.last_transition_time.0);
    let waited = Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO);
    MODEL_GRACE.checked_sub(waited).filter(|d| !d.is_zero())
}

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
    let grace = grace_left(&old.conditions, resolution.all_available, now.0);
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
        resolution.settling || grace.is_some(),
        resolution.reason,
        &resolution.message,
    );
    ready::set_ready(&mut conditions, &readiness, generation, now);
    // While a bound model has no status for its spec yet (moments after the operator started, or
    // after the model changed), or within the grace, the outcome is provisional: no Event until it
    // settles.
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
    Ok(grace.map_or_else(Action::await_change, Action::requeue))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::SignedDuration;

    fn resolved(status: bool, at: Timestamp) -> Vec<Condition> {
        vec![condition(
            "Resolved",
            status,
            "R",
            String::new(),
            Some(1),
            Time(at),
        )]
    }

    #[test]
    fn a_missing_model_is_reported_only_after_the_grace() {
        let now = Timestamp::from_second(1_000_000).expect("timestamp");
        let ago = |s: i64| now - SignedDuration::from_secs(s);
        // A new stack, and one that was resolved: the grace starts now.
        assert_eq!(grace_left(&[], false, now), Some(MODEL_GRACE));
        assert_eq!(
            grace_left(&resolved(true, ago(600)), false, now),
            Some(MODEL_GRACE)
        );
        // Unresolved for a second: the rest of the grace; for longer: reported.
        assert_eq!(
            grace_left(&resolved(false, ago(1)), false, now),
            Some(MODEL_GRACE - Duration::from_secs(1))
        );
        assert_eq!(grace_left(&resolved(false, ago(3)), false, now), None);
        assert_eq!(grace_left(&resolved(false, ago(600)), false, now), None);
        // Every layer on an available model (a fallback included): nothing to wait for.
        assert_eq!(grace_left(&[], true, now), None);
    }
}

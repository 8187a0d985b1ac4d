//! ModelEntry decisions (pure): replicas from the scaling policy and demand, the endpoint, the phase
//! and the conditions, from what the controller observed.

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::model_entry::{ModelEntrySpec, ModelPhase, Provider, ScalingMode};

/// Public base URL of a provider, used when a remote entry gives none.
pub fn provider_endpoint(provider: Provider) -> Option<&'static str> {
    match provider {
        Provider::OpenAI => Some("https://api.openai.com/v1"),
        Provider::Anthropic => Some("https://api.anthropic.com/v1"),
        Provider::Google => Some("https://generativelanguage.googleapis.com/v1beta/openai"),
        Provider::Cohere => Some("https://api.cohere.ai/compatibility/v1"),
        Provider::HuggingFace => Some("https://router.huggingface.co/v1"),
        Provider::AzureOpenAI | Provider::Custom => None,
    }
}

/// What the controller saw of the entry's workload.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Active AgentNodes bound to the entry now.
    pub demand: i32,
    /// Demand recorded in the previous status.
    pub previous_demand: i32,
    /// `status.lastUsedTime` of the previous status.
    pub last_used: Option<Timestamp>,
    /// Ready replicas of the Deployment.
    pub ready_replicas: i32,
    /// The scheduler's message for an unschedulable engine pod, if any.
    pub unschedulable: Option<String>,
    /// A container failing (e.g. `CrashLoopBackOff: back-off restarting`), if any.
    pub failing: Option<String>,
}

/// The decision for a local entry.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalDecision {
    pub replicas: i32,
    pub phase: ModelPhase,
    pub last_used: Option<Timestamp>,
    /// (status, reason, message) of the `Ready` condition.
    pub ready: (bool, &'static str, String),
    /// (status, reason, message) of the `Scheduled` condition.
    pub scheduled: (bool, &'static str, String),
    /// When to look again without any event (the OnDemand idle timer).
    pub requeue_after: Option<std::time::Duration>,
}

/// Replicas, phase and conditions of a local entry.
pub fn decide_local(spec: &ModelEntrySpec, observed: &Observed, now: Timestamp) -> LocalDecision {
    let scaling = spec.source.local.as_ref().and_then(|l| l.scaling.clone());
    let (mode, replicas, idle_seconds) = scaling
        .map(|s| (s.mode, s.replicas, s.idle_seconds))
        .unwrap_or((ScalingMode::Always, 1, 300));

    // The idle timer starts when demand drops to zero; it is kept in status so restarts keep it.
    let last_used = if observed.demand == 0 && observed.previous_demand > 0 {
        Some(now)
    } else {
        observed.last_used
    };
    let mut requeue_after = None;
    let desired = match mode {
        ScalingMode::Always => replicas,
        ScalingMode::OnDemand if observed.demand > 0 => replicas,
        ScalingMode::OnDemand => {
            let idle_until = last_used.map(|t| t + SignedDuration::from_secs(idle_seconds));
            match idle_until {
                Some(until) if until > now => {
                    requeue_after = Some(
                        until
                            .duration_since(now)
                            .try_into()
                            .unwrap_or(std::time::Duration::from_secs(1)),
                    );
                    replicas
                }
                _ => 0,
            }
        }
    };

    let scheduled = match &observed.unschedulable {
        Some(message) => (false, "Unschedulable", message.clone()),
        None => (true, "Scheduled", "engine pods are scheduled".to_string()),
    };
    let (phase, ready) = if desired == 0 {
        let why = match mode {
            ScalingMode::OnDemand => "scaled to zero: no AgentNode needs this model",
            ScalingMode::Always => "scaling.replicas is 0",
        };
        (ModelPhase::Idle, (false, "ScaledToZero", why.to_string()))
    } else if observed.ready_replicas >= desired {
        (
            ModelPhase::Ready,
            (
                true,
                "Available",
                format!("{}/{desired} replicas ready", observed.ready_replicas),
            ),
        )
    } else if let Some(failing) = &observed.failing {
        (
            ModelPhase::Degraded,
            (false, "EngineFailing", failing.clone()),
        )
    } else if let Some(message) = &observed.unschedulable {
        (
            ModelPhase::Provisioning,
            (false, "Unschedulable", message.clone()),
        )
    } else {
        (
            ModelPhase::Provisioning,
            (
                false,
                "Provisioning",
                format!("{}/{desired} replicas ready", observed.ready_replicas),
            ),
        )
    };
    LocalDecision {
        replicas: desired,
        phase,
        last_used,
        ready,
        scheduled,
        requeue_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ModelEntry;

    fn spec(scaling: &str) -> ModelEntrySpec {
        let e: ModelEntry = serde_saphyr::from_str(&format!(
            "apiVersion: hypersync.io/v1alpha1\nkind: ModelEntry\nmetadata: {{name: m}}\nspec:\n  type: LLM\n  source:\n    local:\n      engine: VLLM\n      model: org/m\n      {scaling}\n"
        ))
        .expect("fixture parses");
        e.spec
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("valid")
    }

    #[test]
    fn always_runs_its_replicas() {
        let d = decide_local(
            &spec("scaling: {replicas: 3}"),
            &Observed {
                ready_replicas: 3,
                ..Default::default()
            },
            at(0),
        );
        assert_eq!((d.replicas, d.phase), (3, ModelPhase::Ready));
        assert_eq!(
            d.ready,
            (true, "Available", "3/3 replicas ready".to_string())
        );
        let d = decide_local(&spec("image: x"), &Observed::default(), at(0));
        assert_eq!((d.replicas, d.phase), (1, ModelPhase::Provisioning));
    }

    #[test]
    fn on_demand_follows_demand_then_idles_back_to_zero() {
        let s = spec("scaling: {mode: OnDemand, replicas: 2, idleSeconds: 60}");
        // Never used: zero replicas, Idle.
        let d = decide_local(&s, &Observed::default(), at(100));
        assert_eq!((d.replicas, d.phase), (0, ModelPhase::Idle));
        // A node binds it: scale up.
        let d = decide_local(
            &s,
            &Observed {
                demand: 1,
                ..Default::default()
            },
            at(110),
        );
        assert_eq!((d.replicas, d.phase), (2, ModelPhase::Provisioning));
        // The last node goes: the timer starts now and a requeue is asked for its end.
        let gone = Observed {
            demand: 0,
            previous_demand: 1,
            ready_replicas: 2,
            ..Default::default()
        };
        let d = decide_local(&s, &gone, at(200));
        assert_eq!(
            (d.replicas, d.phase, d.last_used),
            (2, ModelPhase::Ready, Some(at(200)))
        );
        assert_eq!(d.requeue_after, Some(std::time::Duration::from_secs(60)));
        // Still warm within idleSeconds (timer read back from status, e.g. after a restart).
        let warm = Observed {
            demand: 0,
            previous_demand: 0,
            last_used: Some(at(200)),
            ready_replicas: 2,
            ..Default::default()
        };
        assert_eq!(decide_local(&s, &warm, at(259)).replicas, 2);
        // Past it: back to zero.
        let d = decide_local(&s, &warm, at(260));
        assert_eq!(
            (d.replicas, d.phase, d.requeue_after),
            (0, ModelPhase::Idle, None)
        );
    }

    #[test]
    fn unschedulable_pods_surface_the_scheduler_message() {
        let msg = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.".to_string();
        let d = decide_local(
            &spec("gpu: {count: 16}"),
            &Observed {
                unschedulable: Some(msg.clone()),
                ..Default::default()
            },
            at(0),
        );
        assert_eq!(d.phase, ModelPhase::Provisioning);
        assert_eq!(d.scheduled, (false, "Unschedulable", msg.clone()));
        assert_eq!(d.ready, (false, "Unschedulable", msg));
    }

    #[test]
    fn failing_engine_is_degraded() {
        let d = decide_local(
            &spec("image: x"),
            &Observed {
                failing: Some("CrashLoopBackOff: back-off 5m0s restarting failed container".into()),
                ..Default::default()
            },
            at(0),
        );
        assert_eq!(d.phase, ModelPhase::Degraded);
        assert_eq!(d.ready.1, "EngineFailing");
    }

    #[test]
    fn providers_have_https_defaults_except_azure_and_custom() {
        for p in [
            Provider::OpenAI,
            Provider::Anthropic,
            Provider::Google,
            Provider::Cohere,
            Provider::HuggingFace,
        ] {
            assert!(provider_endpoint(p).is_some_and(|u| u.starts_with("https://")));
        }
        assert_eq!(provider_endpoint(Provider::Custom), None);
        assert_eq!(provider_endpoint(Provider::AzureOpenAI), None);
    }
}

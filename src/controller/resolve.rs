//! AgentStack binding resolution (pure): which ModelEntry fills each layer, by name or by selector,
//! with the fallback chain, ranked deterministically.
//!
//! A selector matches an entry of the requested `type` that carries every listed capability and every
//! `matchLabels` label. Candidates are ranked: available before unavailable, local before remote, most
//! capabilities in common with the selector, then name. An entry is *available* when it is `Ready`,
//! `Idle` (an OnDemand model scaled to zero: binding it is what provisions it) or `Provisioning` with
//! its pods scheduled. The primary target is
//! used when it yields an available entry; otherwise the fallbacks are tried in order; when none is
//! available the primary's best candidate is kept (the stack is then Degraded, and nodes wait for it).

use std::cmp::Reverse;

use crate::api::agent_stack::{
    AgentStackSpec, ModelBinding, ModelRef, ModelSelector, ResolvedBinding, StackPhase,
};
use crate::api::model_entry::{ModelEntry, ModelPhase};

/// One binding target: a name, or a selector.
#[derive(Clone, Copy, Debug)]
enum Target<'a> {
    Name(&'a str),
    Selector(&'a ModelSelector),
}

/// The resolution of a whole stack.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolution {
    pub phase: StackPhase,
    /// One entry per declared binding, in layer order.
    pub bindings: Vec<ResolvedBinding>,
    /// Short CamelCase reason for the `Resolved` condition.
    pub reason: &'static str,
    /// Human message naming the layers that are not resolved or degraded.
    pub message: String,
    /// Every layer is bound to an available entry (from its primary target or a fallback).
    pub all_available: bool,
    /// A layer is not on an available entry of its primary target while a candidate has no status
    /// for its current spec yet (the operator has not reconciled it since it started or since the
    /// entry changed): the outcome is provisional.
    pub settling: bool,
}

/// The layer bindings of a stack in a stable order: `cognitive`, `embedding`, `reranker`, `perception-<i>`.
pub fn layer_bindings(spec: &AgentStackSpec) -> Vec<(String, &ModelBinding)> {
    let mut out = vec![("cognitive".to_string(), &spec.layers.cognitive)];
    if let Some(memory) = &spec.layers.memory {
        if let Some(b) = &memory.embedding {
            out.push(("embedding".to_string(), b));
        }
        if let Some(b) = &memory.reranker {
            out.push(("reranker".to_string(), b));
        }
    }
    for (i, b) in spec.layers.perception.iter().enumerate() {
        out.push((format!("perception-{i}"), b));
    }
    out
}

/// Whether an entry can serve now or on demand: Ready, Idle (scaled to zero; binding it provisions it),
/// or Provisioning with its pods scheduled. Unschedulable, failing or never-reconciled entries are not.
pub fn is_available(entry: &ModelEntry) -> bool {
    let Some(status) = entry.status.as_ref() else {
        return false;
    };
    let unschedulable = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Scheduled" && c.status == "False");
    match status.phase {
        Some(ModelPhase::Ready) | Some(ModelPhase::Idle) => true,
        Some(ModelPhase::Provisioning) => !unschedulable,
        _ => false,
    }
}

fn name_of(entry: &ModelEntry) -> &str {
    entry.metadata.name.as_deref().unwrap_or_default()
}

fn matches_selector(entry: &ModelEntry, selector: &ModelSelector) -> bool {
    let ModelSelector {
        model_type,
        capabilities,
        match_labels,
    } = selector;
    if model_type.is_some_and(|t| t != entry.spec.model_type) {
        return false;
    }
    if !capabilities
        .iter()
        .all(|c| entry.spec.capabilities.contains(c))
    {
        return false;
    }
    let labels = entry.metadata.labels.as_ref();
    match_labels
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Candidates of one target, best first.
fn candidates<'e>(target: Target<'_>, entries: &'e [ModelEntry]) -> Vec<&'e ModelEntry> {
    match target {
        Target::Name(name) => entries.iter().filter(|e| name_of(e) == name).collect(),
        Target::Selector(selector) => {
            let mut found: Vec<&ModelEntry> = entries
                .iter()
                .filter(|e| matches_selector(e, selector))
                .collect();
            found.sort_by_key(|e| {
                let common = e
                    .spec
                    .capabilities
                    .iter()
                    .filter(|c| selector.capabilities.contains(c))
                    .count();
                (
                    !is_available(e),
                    e.spec.source.local.is_none(),
                    Reverse(common),
                    name_of(e).to_string(),
                )
            });
            found
        }
    }
}

fn describe(target: Target<'_>) -> String {
    match target {
        Target::Name(name) => format!("modelRef {name}"),
        Target::Selector(s) => {
            let mut parts = Vec::new();
            if let Some(t) = s.model_type {
                parts.push(format!(
                    "type={}",
                    serde_json::to_value(t)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default()
                ));
            }
            if !s.capabilities.is_empty() {
                parts.push(format!("capabilities={}", s.capabilities.join(",")));
            }
            for (k, v) in &s.match_labels {
                parts.push(format!("{k}={v}"));
            }
            format!("selector {{{}}}", parts.join(" "))
        }
    }
}

fn target<'a>(
    model_ref: Option<&'a ModelRef>,
    selector: Option<&'a ModelSelector>,
) -> Option<Target<'a>> {
    match (model_ref, selector) {
        (Some(r), _) => Some(Target::Name(r.name.as_str())),
        (None, Some(s)) => Some(Target::Selector(s)),
        (None, None) => None,
    }
}

/// The primary target then the fallbacks, in order.
fn targets(binding: &ModelBinding) -> Vec<Target<'_>> {
    let primary = target(binding.model_ref.as_ref(), binding.selector.as_ref());
    let fallbacks = binding
        .fallback
        .iter()
        .filter_map(|f| target(f.model_ref.as_ref(), f.selector.as_ref()));
    primary.into_iter().chain(fallbacks).collect()
}

/// How one layer resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// An available entry from the primary target.
    Primary,
    /// An available entry from a fallback (`settling`: a candidate of an earlier target has no
    /// current status yet, so it may well be available).
    Degraded { settling: bool },
    /// An unavailable entry from the primary target (`settling`: some candidate has no current
    /// status yet).
    Unavailable { settling: bool },
    /// No entry at all.
    Unresolved,
}

/// The entry's status does not describe its current spec yet.
fn is_settling(entry: &ModelEntry) -> bool {
    match &entry.status {
        None => true,
        Some(status) => status.observed_generation < entry.metadata.generation,
    }
}

fn resolve_binding(
    layer: &str,
    binding: &ModelBinding,
    entries: &[ModelEntry],
) -> (ResolvedBinding, Outcome) {
    let targets = targets(binding);
    let bound = |entry: &ModelEntry, reason: String| {
        let status = entry.status.clone().unwrap_or_default();
        ResolvedBinding {
            layer: layer.to_string(),
            model_entry: Some(name_of(entry).to_string()),
            endpoint: status.endpoint,
            served_model: status.served_model,
            reason,
        }
    };
    for (i, target) in targets.iter().enumerate() {
        if let Some(entry) = candidates(*target, entries)
            .into_iter()
            .find(|e| is_available(e))
        {
            let via = if i == 0 {
                describe(*target)
            } else {
                format!("fallback[{}] {}", i - 1, describe(*target))
            };
            let outcome = if i == 0 {
                Outcome::Primary
            } else {
                Outcome::Degraded {
                    settling: targets[..i]
                        .iter()
                        .any(|t| candidates(*t, entries).into_iter().any(is_settling)),
                }
            };
            return (bound(entry, via), outcome);
        }
    }
    let primary = targets.first().copied();
    if let Some(entry) = primary.and_then(|t| candidates(t, entries).into_iter().next()) {
        let phase = entry
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .map(|p| format!("{p:?}"))
            .unwrap_or_else(|| "Pending".to_string());
        let reason = format!(
            "{} is not Ready (phase {phase}) and no fallback is available",
            name_of(entry)
        );
        let settling = targets
            .iter()
            .any(|t| candidates(*t, entries).into_iter().any(is_settling));
        return (bound(entry, reason), Outcome::Unavailable { settling });
    }
    let tried: Vec<String> = targets.iter().map(|t| describe(*t)).collect();
    let reason = match primary {
        Some(Target::Name(name)) if targets.len() == 1 => format!("ModelEntry {name} not found"),
        _ => format!("no ModelEntry matches {}", tried.join(" or ")),
    };
    (
        ResolvedBinding {
            layer: layer.to_string(),
            reason,
            ..ResolvedBinding::default()
        },
        Outcome::Unresolved,
    )
}

/// Resolve every layer of a stack against the ModelEntries of its namespace.
pub fn resolve(spec: &AgentStackSpec, entries: &[ModelEntry]) -> Resolution {
    let mut bindings = Vec::new();
    let mut unresolved = Vec::new();
    let mut degraded = Vec::new();
    let (mut all_available, mut settling) = (true, false);
    for (layer, binding) in layer_bindings(spec) {
        let (resolved, outcome) = resolve_binding(&layer, binding, entries);
        match outcome {
            Outcome::Primary => {}
            Outcome::Degraded { settling: s } => {
                settling |= s;
                degraded.push(format!("{layer}: {}", resolved.reason));
            }
            Outcome::Unavailable { settling: s } => {
                (all_available, settling) = (false, settling || s);
                degraded.push(format!("{layer}: {}", resolved.reason));
            }
            Outcome::Unresolved => {
                all_available = false;
                unresolved.push(format!("{layer}: {}", resolved.reason));
            }
        }
        bindings.push(resolved);
    }
    let (phase, reason, message) = if !unresolved.is_empty() {
        (
            StackPhase::Unresolved,
            "BindingUnresolved",
            unresolved.join("; "),
        )
    } else if !degraded.is_empty() {
        (StackPhase::Degraded, "BindingDegraded", degraded.join("; "))
    } else {
        (
            StackPhase::Resolved,
            "AllLayersBound",
            format!("{} layer(s) bound to available models", bindings.len()),
        )
    };
    Resolution {
        phase,
        bindings,
        reason,
        message,
        all_available,
        settling,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::agent_stack::AgentStack;
    use crate::api::model_entry::ModelEntryStatus;

    fn entry(yaml: &str, phase: Option<ModelPhase>) -> ModelEntry {
        let mut e: ModelEntry = serde_saphyr::from_str(yaml).expect("fixture parses");
        e.status = phase.map(|p| ModelEntryStatus {
            phase: Some(p),
            endpoint: Some(format!("http://{}.default.svc:8000/v1", name_of(&e))),
            served_model: Some(name_of(&e).to_string()),
            ..ModelEntryStatus::default()
        });
        e
    }

    fn local(name: &str, caps: &str, phase: Option<ModelPhase>) -> ModelEntry {
        entry(
            &format!(
                "apiVersion: hypersync.io/v1alpha1\nkind: ModelEntry\nmetadata: {{name: {name}}}\nspec:\n  type: LLM\n  capabilities: [{caps}]\n  source: {{local: {{engine: VLLM, model: org/{name}}}}}\n"
            ),
            phase,
        )
    }

    fn remote(name: &str, caps: &str, phase: Option<ModelPhase>) -> ModelEntry {
        entry(
            &format!(
                "apiVersion: hypersync.io/v1alpha1\nkind: ModelEntry\nmetadata: {{name: {name}}}\nspec:\n  type: LLM\n  capabilities: [{caps}]\n  source: {{remote: {{provider: OpenAI, model: {name}}}}}\n"
            ),
            phase,
        )
    }

    fn stack(yaml_spec: &str) -> AgentStackSpec {
        let s: AgentStack = serde_saphyr::from_str(&format!(
            "apiVersion: hypersync.io/v1alpha1\nkind: AgentStack\nmetadata: {{name: s}}\nspec:\n{yaml_spec}"
        ))
        .expect("stack parses");
        s.spec
    }

    fn seed_stack() -> AgentStackSpec {
        stack(
            "  layers:\n    cognitive:\n      selector: {type: LLM, capabilities: [coding, security]}\n      fallback: [{modelRef: {name: gpt-4o}}]\n    memory:\n      embedding: {modelRef: {name: embedding-v3}}\n",
        )
    }

    fn embedding(phase: Option<ModelPhase>) -> ModelEntry {
        entry(
            "apiVersion: hypersync.io/v1alpha1\nkind: ModelEntry\nmetadata: {name: embedding-v3}\nspec:\n  type: Embedding\n  source: {local: {engine: VLLM, model: BAAI/bge-m3}}\n",
            phase,
        )
    }

    #[test]
    fn seed_story_resolves_to_the_idle_on_demand_coder() {
        let entries = vec![
            remote("gpt-4o", "chat, coding, general", Some(ModelPhase::Ready)),
            local(
                "deepseek-coder-33b",
                "coding, security",
                Some(ModelPhase::Idle),
            ),
            local("llama-3-8b", "chat, general", Some(ModelPhase::Ready)),
            embedding(Some(ModelPhase::Ready)),
        ];
        let r = resolve(&seed_stack(), &entries);
        assert_eq!(r.phase, StackPhase::Resolved, "{r:?}");
        assert_eq!(
            r.bindings[0].model_entry.as_deref(),
            Some("deepseek-coder-33b")
        );
        assert_eq!(
            r.bindings[0].reason,
            "selector {type=LLM capabilities=coding,security}"
        );
        assert_eq!(r.bindings[1].layer, "embedding");
        assert_eq!(r.bindings[1].model_entry.as_deref(), Some("embedding-v3"));
        assert_eq!(
            r.bindings[1].endpoint.as_deref(),
            Some("http://embedding-v3.default.svc:8000/v1")
        );
    }

    #[test]
    fn ranking_prefers_available_then_local_then_overlap_then_name() {
        let s = stack("  layers:\n    cognitive:\n      selector: {capabilities: [coding]}\n");
        // Available beats unavailable even when remote.
        let entries = vec![
            local("a-local", "coding", Some(ModelPhase::Degraded)),
            remote("b-remote", "coding", Some(ModelPhase::Ready)),
        ];
        assert_eq!(
            resolve(&s, &entries).bindings[0].model_entry.as_deref(),
            Some("b-remote")
        );
        // Among available ones, local beats remote.
        let entries = vec![
            remote("a-remote", "coding", Some(ModelPhase::Ready)),
            local("z-local", "coding", Some(ModelPhase::Ready)),
        ];
        assert_eq!(
            resolve(&s, &entries).bindings[0].model_entry.as_deref(),
            Some("z-local")
        );
        // Then name order, independent of input order.
        let mut entries = vec![
            local("m2", "coding", Some(ModelPhase::Ready)),
            local("m1", "coding", Some(ModelPhase::Ready)),
        ];
        assert_eq!(
            resolve(&s, &entries).bindings[0].model_entry.as_deref(),
            Some("m1")
        );
        entries.reverse();
        assert_eq!(
            resolve(&s, &entries).bindings[0].model_entry.as_deref(),
            Some("m1")
        );
    }

    #[test]
    fn fallback_is_used_when_primary_is_not_available_and_marks_degraded() {
        let entries = vec![
            remote("gpt-4o", "chat", Some(ModelPhase::Ready)),
            local(
                "deepseek-coder-33b",
                "coding, security",
                Some(ModelPhase::Failed),
            ),
            embedding(Some(ModelPhase::Ready)),
        ];
        let r = resolve(&seed_stack(), &entries);
        assert_eq!(r.phase, StackPhase::Degraded);
        assert_eq!(r.bindings[0].model_entry.as_deref(), Some("gpt-4o"));
        assert_eq!(r.bindings[0].reason, "fallback[0] modelRef gpt-4o");
        assert_eq!(r.reason, "BindingDegraded");
        assert!(
            r.message.starts_with("cognitive: fallback[0]"),
            "{}",
            r.message
        );
    }

    #[test]
    fn availability_and_settling_are_told_apart() {
        let s = stack("  layers:\n    cognitive: {modelRef: {name: deepseek-coder-33b}}\n");
        // Moments after a start: the entry has no status yet; the outcome is provisional.
        let mut fresh = local("deepseek-coder-33b", "coding", None);
        fresh.metadata.generation = Some(1);
        let r = resolve(&s, std::slice::from_ref(&fresh));
        assert_eq!(
            (r.phase, r.all_available, r.settling),
            (StackPhase::Degraded, false, true)
        );
        // Reconciled for its current spec and failed: settled, and not available.
        let mut failed = local("deepseek-coder-33b", "coding", Some(ModelPhase::Failed));
        failed.metadata.generation = Some(1);
        failed.status.as_mut().expect("status").observed_generation = Some(1);
        let r = resolve(&s, std::slice::from_ref(&failed));
        assert_eq!(
            (r.phase, r.all_available, r.settling),
            (StackPhase::Degraded, false, false)
        );
        // Its spec changed since: settling again.
        failed.metadata.generation = Some(2);
        assert!(resolve(&s, std::slice::from_ref(&failed)).settling);
        // A fallback in use is degraded but available.
        let r = resolve(
            &seed_stack(),
            &[
                remote("gpt-4o", "chat", Some(ModelPhase::Ready)),
                local(
                    "deepseek-coder-33b",
                    "coding, security",
                    Some(ModelPhase::Failed),
                ),
                embedding(Some(ModelPhase::Ready)),
            ],
        );
        assert_eq!(
            (r.phase, r.all_available, r.settling),
            (StackPhase::Degraded, true, false)
        );
        // The fallback chosen while the primary has no status yet: provisional too.
        let r = resolve(
            &seed_stack(),
            &[
                remote("gpt-4o", "chat", Some(ModelPhase::Ready)),
                local("deepseek-coder-33b", "coding, security", None),
                embedding(Some(ModelPhase::Ready)),
            ],
        );
        assert_eq!(
            (r.phase, r.all_available, r.settling),
            (StackPhase::Degraded, true, true)
        );
    }

    #[test]
    fn unavailable_primary_without_fallback_is_kept_and_degraded() {
        let s = stack("  layers:\n    cognitive: {modelRef: {name: deepseek-coder-33b}}\n");
        let entries = vec![local(
            "deepseek-coder-33b",
            "coding",
            Some(ModelPhase::Failed),
        )];
        let r = resolve(&s, &entries);
        assert_eq!(r.phase, StackPhase::Degraded);
        assert_eq!(
            r.bindings[0].model_entry.as_deref(),
            Some("deepseek-coder-33b")
        );
        assert!(
            r.bindings[0].reason.contains("is not Ready (phase Failed)"),
            "{}",
            r.bindings[0].reason
        );
    }

    #[test]
    fn nothing_matching_is_unresolved_with_a_message_naming_the_layer() {
        let entries = vec![local("llama-3-8b", "chat", Some(ModelPhase::Ready))];
        let r = resolve(&seed_stack(), &entries);
        assert_eq!(r.phase, StackPhase::Unresolved);
        assert_eq!(r.reason, "BindingUnresolved");
        assert_eq!(
            r.message,
            "cognitive: no ModelEntry matches selector {type=LLM capabilities=coding,security} or modelRef gpt-4o; embedding: ModelEntry embedding-v3 not found"
        );
        assert_eq!(r.bindings[0].model_entry, None);
    }

    #[test]
    fn selector_type_and_labels_filter() {
        let s = stack(
            "  layers:\n    cognitive:\n      selector: {type: Embedding, matchLabels: {tier: gold}}\n",
        );
        let mut gold = embedding(Some(ModelPhase::Ready));
        gold.metadata.labels = Some([("tier".to_string(), "gold".to_string())].into());
        let plain = local("llm", "", Some(ModelPhase::Ready));
        let r = resolve(&s, &[plain.clone(), embedding(Some(ModelPhase::Ready))]);
        assert_eq!(r.phase, StackPhase::Unresolved);
        let r = resolve(&s, &[plain, gold]);
        assert_eq!(r.bindings[0].model_entry.as_deref(), Some("embedding-v3"));
    }

    #[test]
    fn unschedulable_primary_falls_back_while_scheduled_provisioning_does_not() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let mut coder = local(
            "deepseek-coder-33b",
            "coding, security",
            Some(ModelPhase::Provisioning),
        );
        let entries = |coder: &ModelEntry| {
            vec![
                coder.clone(),
                remote("gpt-4o", "chat", Some(ModelPhase::Ready)),
                embedding(Some(ModelPhase::Ready)),
            ]
        };
        let r = resolve(&seed_stack(), &entries(&coder));
        assert_eq!(
            r.bindings[0].model_entry.as_deref(),
            Some("deepseek-coder-33b")
        );
        if let Some(status) = coder.status.as_mut() {
            status.conditions.push(Condition {
                type_: "Scheduled".into(),
                status: "False".into(),
                reason: "Unschedulable".into(),
                message: "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.".into(),
                observed_generation: None,
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            });
        }
        let r = resolve(&seed_stack(), &entries(&coder));
        assert_eq!(r.bindings[0].model_entry.as_deref(), Some("gpt-4o"));
        assert_eq!(r.phase, StackPhase::Degraded);
    }

    #[test]
    fn layer_order_is_stable() {
        let s = stack(
            "  layers:\n    cognitive: {modelRef: {name: a}}\n    perception: [{modelRef: {name: v}}, {modelRef: {name: w}}]\n    memory:\n      reranker: {modelRef: {name: r}}\n      embedding: {modelRef: {name: e}}\n",
        );
        let layers: Vec<String> = layer_bindings(&s).into_iter().map(|(l, _)| l).collect();
        assert_eq!(
            layers,
            [
                "cognitive",
                "embedding",
                "reranker",
                "perception-0",
                "perception-1"
            ]
        );
    }
}

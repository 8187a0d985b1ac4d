//! `kubectl hypersync why NODE`: why a node is not Running, walking node -> stack -> bound models ->
//! their Deployments -> pods -> the scheduler's message. Pure: [`explain`] reads a [`WhyInput`]
//! the CLI fetched and returns the lines to print.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::api::agent_node::NodePhase;
use crate::api::agent_stack::StackPhase;
use crate::api::model_entry::{Engine, ModelPhase};
use crate::api::{AgentNode, AgentStack, ModelEntry};

use super::models::model_phase_name;
use super::scene::phase_name;

/// The result of looking an object up.
#[derive(Debug, Clone)]
pub enum Lookup<T> {
    Found(T),
    NotFound,
    /// The lookup failed for another reason (e.g. Forbidden); the message says which.
    Failed(String),
}

/// Whether the Secret holding a remote model's API key exists (only its existence is checked).
#[derive(Debug, Clone, PartialEq)]
pub enum SecretCheck {
    Present,
    Missing,
    Unknown(String),
}

/// What the CLI read about one bound model.
#[derive(Debug, Clone)]
pub struct ModelFacts {
    /// The layers bound to it (`cognitive`, `embedding`, ...).
    pub layers: Vec<String>,
    pub entry: Lookup<ModelEntry>,
    /// Deployments labelled `hypersync.io/model-entry=<name>`.
    pub deployments: Vec<Deployment>,
    /// Pods labelled `hypersync.io/model-entry=<name>`.
    pub pods: Vec<Pod>,
    /// For a remote entry with `apiKeySecretRef`: the Secret's name, key and whether it exists.
    pub secret: Option<(String, String, SecretCheck)>,
}

/// Everything `why` needs, fetched by the CLI.
#[derive(Debug, Clone)]
pub struct WhyInput {
    pub node: AgentNode,
    pub stack: Lookup<AgentStack>,
    /// Layers the stack could not bind, with the stack's reason.
    pub unresolved: Vec<(String, String)>,
    /// The bound models by name.
    pub models: BTreeMap<String, ModelFacts>,
    /// The agent's pods (labelled `hypersync.io/agent-node=<node>`).
    pub agent_pods: Vec<Pod>,
}

/// What `why` prints, and whether the node is Running (the exit code).
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub running: bool,
    /// The walk, one line per object.
    pub lines: Vec<String>,
    /// The causes found, each printed as `=> ...` at the end.
    pub causes: Vec<String>,
}

impl Explanation {
    /// The text printed by the command.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            out.push_str(l);
            out.push('\n');
        }
        for c in &self.causes {
            out.push_str("=> ");
            out.push_str(c);
            out.push('\n');
        }
        out
    }
}

/// The models a stack binds (each with the layers bound to it) and the layers it left unbound (each
/// with the stack's reason).
pub type Bindings = (BTreeMap<String, Vec<String>>, Vec<(String, String)>);

/// The models and unbound layers of a stack, from its status.
pub fn bound_models(stack: &AgentStack) -> Bindings {
    let mut models: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unresolved = Vec::new();
    for b in stack.status.iter().flat_map(|s| s.bindings.iter()) {
        match &b.model_entry {
            Some(m) => models.entry(m.clone()).or_default().push(b.layer.clone()),
            None => unresolved.push((b.layer.clone(), b.reason.clone())),
        }
    }
    (models, unresolved)
}

/// Explains the node's state.
pub fn explain(input: &WhyInput) -> Explanation {
    let node = &input.node;
    let name = node.metadata.name.clone().unwrap_or_default();
    let status = node.status.as_ref();
    let phase = status.and_then(|s| s.phase);
    let running = phase == Some(NodePhase::Running);
    let mut lines = Vec::new();
    let mut causes = Vec::new();

    let workload = status
        .and_then(|s| s.workload.as_ref())
        .map(|w| format!(" ({}/{})", w.kind.to_lowercase(), w.name))
        .unwrap_or_default();
    if running {
        lines.push(format!("agentnode/{name} is Running{workload}"));
    } else {
        lines.push(format!(
            "agentnode/{name} is {}, not Running{workload}",
            match phase {
                None => "without status",
                p => phase_name(p),
            }
        ));
    }
    let conditions: &[Condition] = status.map(|s| s.conditions.as_slice()).unwrap_or(&[]);
    for c in conditions.iter().filter(|c| c.status != "True") {
        if c.type_ == "ObjectiveMet" && c.reason == "InProgress" {
            continue;
        }
        lines.push(format!(
            "  {}={} ({}): {}",
            c.type_, c.status, c.reason, c.message
        ));
    }
    if status.is_none() {
        causes.push(
            "the operator has not written a status yet: is hypersync-operator running and watching this namespace?"
                .to_string(),
        );
    }
    match phase {
        Some(NodePhase::Succeeded) => causes.push(finished("its objective was met", conditions)),
        Some(NodePhase::Failed) => causes.push(finished("it failed", conditions)),
        Some(NodePhase::Dissolving) => {
            causes.push("it is being deleted (its outcome was recorded)".to_string())
        }
        _ => {}
    }

    let stack_name = &node.spec.stack_ref.name;
    match &input.stack {
        Lookup::NotFound => {
            lines.push(format!("  agentstack/{stack_name}: not found"));
            causes.push(format!(
                "AgentStack {stack_name} (spec.stackRef.name) does not exist: create it or fix the reference"
            ));
        }
        Lookup::Failed(msg) => {
            lines.push(format!("  agentstack/{stack_name}: cannot read it: {msg}"));
        }
        Lookup::Found(stack) => {
            let stack_phase = stack.status.as_ref().and_then(|s| s.phase);
            lines.push(format!(
                "  agentstack/{stack_name}: {}",
                match stack_phase {
                    Some(StackPhase::Resolved) => "Resolved",
                    Some(StackPhase::Unresolved) => "Unresolved",
                    Some(StackPhase::Degraded) => "Degraded",
                    None => "not reconciled yet",
                }
            ));
            for (layer, reason) in &input.unresolved {
                lines.push(format!("    {layer} -> (none): {reason}"));
                causes.push(format!(
                    "AgentStack {stack_name} cannot bind its {layer} layer: {reason}"
                ));
            }
        }
    }

    for (model, facts) in &input.models {
        walk_model(model, facts, running, &mut lines, &mut causes);
    }

    for pod in &input.agent_pods {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let (line, cause) = pod_state(pod);
        lines.push(format!("  agent pod/{pod_name}: {line}"));
        if let Some(c) = cause
            && !running
        {
            causes.push(format!("the agent's pod {pod_name} {c}"));
        }
    }

    if !running && causes.is_empty() {
        // Nothing found below the node: repeat what its own conditions say.
        for c in conditions.iter().filter(|c| c.status == "False") {
            if c.type_ == "ObjectiveMet" {
                continue;
            }
            causes.push(format!("{} ({}): {}", c.type_, c.reason, c.message));
        }
        if causes.is_empty() {
            causes.push(format!(
                "no blocking cause found: the node is {} and the operator is moving it along",
                phase_name(phase)
            ));
        }
    }
    Explanation {
        running,
        lines,
        causes,
    }
}

fn finished(what: &str, conditions: &[Condition]) -> String {
    match conditions.iter().find(|c| c.type_ == "ObjectiveMet") {
        Some(c) => format!(
            "{what}: ObjectiveMet={} ({}): {}",
            c.status, c.reason, c.message
        ),
        None => what.to_string(),
    }
}

fn walk_model(
    model: &str,
    facts: &ModelFacts,
    node_running: bool,
    lines: &mut Vec<String>,
    causes: &mut Vec<String>,
) {
    let layers = facts.layers.join(", ");
    let entry = match &facts.entry {
        Lookup::Found(e) => e,
        Lookup::NotFound => {
            lines.push(format!("    {layers} -> modelentry/{model}: not found"));
            causes.push(format!(
                "ModelEntry {model} (bound to the {layers} layer) does not exist"
            ));
            return;
        }
        Lookup::Failed(msg) => {
            lines.push(format!(
                "    {layers} -> modelentry/{model}: cannot read it: {msg}"
            ));
            return;
        }
    };
    let st = entry.status.as_ref();
    let phase = st.and_then(|s| s.phase);
    let source = match (&entry.spec.source.local, &entry.spec.source.remote) {
        (Some(l), _) => format!(
            "local {}",
            match l.engine {
                Engine::Vllm => "vLLM",
                Engine::Ollama => "Ollama",
            }
        ),
        (None, Some(r)) => format!("remote {:?}", r.provider),
        (None, None) => "no source".to_string(),
    };
    let replicas = st
        .and_then(|s| s.replicas.as_ref())
        .map(|r| format!(", replicas {}/{}", r.ready, r.desired))
        .unwrap_or_default();
    let demand = st
        .and_then(|s| s.demand)
        .map(|d| format!(", demand {d}"))
        .unwrap_or_default();
    lines.push(format!(
        "    {layers} -> modelentry/{model}: {} ({source}{replicas}{demand})",
        model_state(phase)
    ));
    let ready = matches!(phase, Some(ModelPhase::Ready));
    // The model's own Ready condition, unless it only repeats the scheduler's message the pods
    // below show.
    if let Some(c) = st
        .into_iter()
        .flat_map(|s| s.conditions.iter())
        .find(|c| c.type_ == "Ready" && c.status != "True")
        .filter(|c| c.reason != "Unschedulable" || facts.pods.is_empty())
    {
        lines.push(format!(
            "      Ready={} ({}): {}",
            c.status, c.reason, c.message
        ));
    }

    for d in &facts.deployments {
        let dn = d.metadata.name.clone().unwrap_or_default();
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let have = d
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        lines.push(format!("      deployment/{dn}: {have}/{want} ready"));
    }
    let mut model_causes = Vec::new();
    for pod in &facts.pods {
        let pn = pod.metadata.name.clone().unwrap_or_default();
        let (line, cause) = pod_state(pod);
        lines.push(format!("        pod/{pn}: {line}"));
        if let Some(msg) = unschedulable_message(pod) {
            let needs = entry
                .spec
                .source
                .local
                .as_ref()
                .and_then(|l| l.gpu.as_ref())
                .filter(|g| g.count > 0)
                .map(|g| format!("{model} needs {} {}", g.count, g.resource_name))
                .unwrap_or_else(|| format!("{model} cannot be scheduled"));
            push_once(&mut model_causes, format!("{needs}: {msg}"));
        } else if let Some(c) = cause {
            push_once(&mut model_causes, format!("{model}: pod {pn} {c}"));
        }
    }
    if let Some((secret, key, check)) = &facts.secret {
        match check {
            SecretCheck::Present => {
                lines.push(format!("      secret/{secret} (key {key}): present"))
            }
            SecretCheck::Missing => {
                lines.push(format!("      secret/{secret} (key {key}): not found"));
                model_causes.push(format!(
                    "{model}: its API key Secret {secret} (spec.source.remote.apiKeySecretRef) does not exist"
                ));
            }
            SecretCheck::Unknown(msg) => lines.push(format!(
                "      secret/{secret} (key {key}): cannot check: {msg}"
            )),
        }
    }
    let wants_replicas = st
        .and_then(|s| s.replicas.as_ref())
        .is_some_and(|r| r.desired > 0);
    if entry.spec.source.local.is_some() && facts.deployments.is_empty() && wants_replicas {
        model_causes.push(format!(
            "{model}: no inference Deployment yet (the operator creates it; is it running?)"
        ));
    }
    if !ready && model_causes.is_empty() && !node_running {
        let detail = st
            .into_iter()
            .flat_map(|s| s.conditions.iter())
            .find(|c| c.type_ == "Ready" && c.status != "True")
            .map(|c| format!(": {}", c.message))
            .unwrap_or_default();
        model_causes.push(format!(
            "{model} is {}, not Ready{detail}",
            model_state(phase)
        ));
    }
    if !node_running || !ready {
        causes.extend(model_causes);
    }
}

fn push_once(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}

fn model_state(phase: Option<ModelPhase>) -> &'static str {
    match phase {
        None => "not reconciled yet",
        p => model_phase_name(p),
    }
}

/// The scheduler's message when the pod is `PodScheduled=False`.
pub fn unschedulable_message(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .map(|c| {
            c.message
                .clone()
                .or_else(|| c.reason.clone())
                .unwrap_or_else(|| "not scheduled".to_string())
        })
}

/// One line about a pod, and the problem it shows, if any.
fn pod_state(pod: &Pod) -> (String, Option<String>) {
    let status = pod.status.as_ref();
    let phase = status
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Unknown".to_string());
    if let Some(msg) = unschedulable_message(pod) {
        return (
            format!("{phase}, PodScheduled=False: {msg}"),
            Some(format!("is not scheduled: {msg}")),
        );
    }
    for cs in status
        .into_iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
    {
        if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.clone().unwrap_or_default();
            if reason != "ContainerCreating" && !reason.is_empty() {
                let msg = w.message.clone().unwrap_or_default();
                let text = format!("container {} waiting: {reason} {msg}", cs.name);
                return (
                    format!("{phase}, {}", text.trim_end()),
                    Some(text.trim_end().to_string()),
                );
            }
        }
        if let Some(t) = cs.state.as_ref().and_then(|s| s.terminated.as_ref())
            && t.exit_code != 0
        {
            let text = format!(
                "container {} exited {} ({})",
                cs.name,
                t.exit_code,
                t.reason.clone().unwrap_or_default()
            );
            return (format!("{phase}, {text}"), Some(text));
        }
    }
    (phase, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(phase: Option<&str>) -> AgentNode {
        let mut v = json!({
            "apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode",
            "metadata": {"name": "security-analyst", "namespace": "default"},
            "spec": {"stackRef": {"name": "security-analyst"}}
        });
        if let Some(p) = phase {
            v["status"] = json!({"phase": p, "conditions": [{
                "type": "ModelsReady", "status": "False", "reason": "WaitingForModels",
                "message": "waiting for deepseek-coder-33b", "lastTransitionTime": "2026-01-01T00:00:00Z"
            }]});
        }
        serde_json::from_value(v).expect("node")
    }

    fn stack() -> AgentStack {
        serde_json::from_value(json!({
            "apiVersion": "hypersync.io/v1alpha1", "kind": "AgentStack",
            "metadata": {"name": "security-analyst", "namespace": "default"},
            "spec": {"layers": {"cognitive": {"modelRef": {"name": "deepseek-coder-33b"}}}},
            "status": {"phase": "Resolved", "bindings": [
                {"layer": "cognitive", "modelEntry": "deepseek-coder-33b", "reason": "Selected"},
                {"layer": "embedding", "reason": "no ModelEntry matches"}
            ]}
        }))
        .expect("stack")
    }

    fn coder() -> ModelEntry {
        serde_json::from_value(json!({
            "apiVersion": "hypersync.io/v1alpha1", "kind": "ModelEntry",
            "metadata": {"name": "deepseek-coder-33b", "namespace": "default"},
            "spec": {"type": "LLM", "source": {"local": {"engine": "VLLM", "model": "m",
                "gpu": {"count": 4}}}},
            "status": {"phase": "Provisioning", "replicas": {"desired": 1, "ready": 0}, "demand": 1}
        }))
        .expect("entry")
    }

    fn unschedulable_pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "deepseek-coder-33b-abc"},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable",
                "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."}]}
        }))
        .expect("pod")
    }

    #[test]
    fn walks_down_to_the_schedulers_message() {
        let stack = stack();
        let (models, unresolved) = bound_models(&stack);
        assert_eq!(unresolved.len(), 1);
        let input = WhyInput {
            node: node(Some("Provisioning")),
            stack: Lookup::Found(stack),
            unresolved,
            models: models
                .into_iter()
                .map(|(m, layers)| {
                    (
                        m,
                        ModelFacts {
                            layers,
                            entry: Lookup::Found(coder()),
                            deployments: Vec::new(),
                            pods: vec![unschedulable_pod()],
                            secret: None,
                        },
                    )
                })
                .collect(),
            agent_pods: Vec::new(),
        };
        let e = explain(&input);
        assert!(!e.running);
        let text = e.render();
        assert!(
            text.contains("=> deepseek-coder-33b needs 4 nvidia.com/gpu: 0/4 nodes are available: 4 Insufficient nvidia.com/gpu."),
            "{text}"
        );
        assert!(text.contains("cannot bind its embedding layer"), "{text}");
        assert!(text.contains("cognitive -> modelentry/deepseek-coder-33b: Provisioning (local vLLM, replicas 0/1, demand 1)"), "{text}");
        // No Deployment although one replica is wanted: said too.
        assert!(text.contains("no inference Deployment yet"), "{text}");
    }

    #[test]
    fn missing_stack_model_and_secret_are_named() {
        let e = explain(&WhyInput {
            node: node(Some("Pending")),
            stack: Lookup::NotFound,
            unresolved: Vec::new(),
            models: BTreeMap::new(),
            agent_pods: Vec::new(),
        });
        assert_eq!(
            e.causes,
            [
                "AgentStack security-analyst (spec.stackRef.name) does not exist: create it or fix the reference"
            ]
        );

        let remote: ModelEntry = serde_json::from_value(json!({
            "apiVersion": "hypersync.io/v1alpha1", "kind": "ModelEntry",
            "metadata": {"name": "gpt-4o"},
            "spec": {"type": "LLM", "source": {"remote": {"provider": "OpenAI", "model": "gpt-4o",
                "apiKeySecretRef": {"name": "openai", "key": "api-key"}}}},
            "status": {"phase": "Ready"}
        }))
        .expect("entry");
        let models = BTreeMap::from([
            (
                "gpt-4o".to_string(),
                ModelFacts {
                    layers: vec!["cognitive".into()],
                    entry: Lookup::Found(remote),
                    deployments: Vec::new(),
                    pods: Vec::new(),
                    secret: Some(("openai".into(), "api-key".into(), SecretCheck::Missing)),
                },
            ),
            (
                "gone".to_string(),
                ModelFacts {
                    layers: vec!["embedding".into()],
                    entry: Lookup::NotFound,
                    deployments: Vec::new(),
                    pods: Vec::new(),
                    secret: None,
                },
            ),
        ]);
        let e = explain(&WhyInput {
            node: node(Some("Provisioning")),
            stack: Lookup::Found(stack()),
            unresolved: Vec::new(),
            models,
            agent_pods: Vec::new(),
        });
        assert!(e.causes.iter().any(|c| c
            == "gpt-4o: its API key Secret openai (spec.source.remote.apiKeySecretRef) does not exist"));
        assert!(
            e.causes
                .iter()
                .any(|c| c == "ModelEntry gone (bound to the embedding layer) does not exist")
        );
    }

    #[test]
    fn running_node_has_no_causes_and_no_status_says_so() {
        let e = explain(&WhyInput {
            node: node(Some("Running")),
            stack: Lookup::Found(stack()),
            unresolved: Vec::new(),
            models: BTreeMap::new(),
            agent_pods: Vec::new(),
        });
        assert!(e.running);
        assert!(e.causes.is_empty(), "{:?}", e.causes);
        let e = explain(&WhyInput {
            node: node(None),
            stack: Lookup::Found(stack()),
            unresolved: Vec::new(),
            models: BTreeMap::new(),
            agent_pods: Vec::new(),
        });
        assert!(!e.running);
        assert!(
            e.causes[0].contains("has not written a status"),
            "{:?}",
            e.causes
        );
    }
}

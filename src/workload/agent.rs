//! The workload running an AgentNode: the merged runtime, the container environment (models, task,
//! objective, autonomy, coordinates), and a Job (Ephemeral) or a one-replica Deployment (Persistent).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, PodSecurityContext, PodSpec,
    PodTemplateSpec, ResourceRequirements, SecretKeySelector, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use serde::Serialize;

use super::BuildError;
use super::identity::identity_name;
use super::labels::{
    AGENT_APP_NAME, ANNOTATION_HYPERBOLIC_RADIUS, ANNOTATION_R, ANNOTATION_THETA_DEGREES,
    ANNOTATION_TIER, COMPONENT_AGENT, LABEL_AGENT_NODE, LABEL_COMPONENT, LABEL_INSTANCE,
    LABEL_NAME, LABEL_STACK, base_labels,
};
use super::meta::{
    agent_security_context, env_value, format_f64, merge_env, object_meta, runtime_default_seccomp,
};
use super::names::{child_name, label_value};
use crate::api::agent_node::{LifecycleMode, Objective, PlacementStatus, Task};
use crate::api::agent_stack::{ContextPolicy, Tool, VectorStore};
use crate::api::common::{AgentRuntime, Autonomy, SecretKeyRef};

/// Prefix of the operator's environment variables; users cannot set these.
pub const ENV_PREFIX: &str = "HYPERSYNC_";
/// Name of the agent container.
pub const AGENT_CONTAINER: &str = "agent";
/// Name of the writable scratch volume mounted at `/tmp` (the root filesystem is read-only).
pub const TMP_VOLUME: &str = "tmp";

/// A model the agent uses, resolved for one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerModel {
    /// `cognitive`, `embedding`, `reranker`, `perception-<index>`: becomes `HYPERSYNC_<LAYER>_*`.
    pub layer: String,
    /// OpenAI-compatible base URL.
    pub endpoint: String,
    /// Model name to send.
    pub served_model: String,
    /// API key, handed to the agent as a `secretKeyRef` (never a value).
    pub api_key: Option<SecretKeyRef>,
}

/// Everything the agent workload is built from, already resolved by the controller.
#[derive(Clone, Copy, Debug)]
pub struct AgentInput<'a> {
    pub node_name: &'a str,
    pub namespace: &'a str,
    /// The node's AgentStack (pod label `hypersync.io/stack`, which the engines' NetworkPolicies
    /// admit).
    pub stack_name: &'a str,
    /// Controller reference to the AgentNode.
    pub owner: &'a OwnerReference,
    /// The merged runtime ([`merge_runtime`]).
    pub runtime: &'a AgentRuntime,
    /// Resolved models, one per layer.
    pub models: &'a [LayerModel],
    pub task: Option<&'a Task>,
    pub objective: Option<&'a Objective>,
    /// The node's autonomy (its objective's, else the stack's alignment).
    pub autonomy: Autonomy,
    /// Sampling temperature for the agent's LLM.
    pub temperature: f64,
    /// The node's placement (status.placement).
    pub placement: &'a PlacementStatus,
    pub lifecycle: LifecycleMode,
    /// The stack's tools (`layers.action.tools`).
    pub tools: &'a [Tool],
    /// The stack's vector store (`layers.memory.vectorStore`).
    pub vector_store: Option<&'a VectorStore>,
    /// The stack's context policy (`layers.memory.context`).
    pub context: Option<&'a ContextPolicy>,
}

/// The agent's workload object.
#[derive(Clone, Debug, PartialEq)]
pub enum AgentWorkload {
    /// Ephemeral nodes.
    Job(Box<Job>),
    /// Persistent nodes.
    Deployment(Box<Deployment>),
}

impl AgentWorkload {
    /// `Job` or `Deployment` (for `status.workload.kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            AgentWorkload::Job(_) => "Job",
            AgentWorkload::Deployment(_) => "Deployment",
        }
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        let meta = match self {
            AgentWorkload::Job(job) => &job.metadata,
            AgentWorkload::Deployment(deployment) => &deployment.metadata,
        };
        meta.name.as_deref().unwrap_or_default()
    }
}

/// The built workload and the user variables that were dropped because they use the reserved
/// `HYPERSYNC_` prefix (worth a Warning Event).
#[derive(Clone, Debug, PartialEq)]
pub struct AgentBuild {
    pub workload: AgentWorkload,
    pub ignored_env: Vec<String>,
}

/// The effective runtime of a node: each field the node's runtime sets overrides the stack's.
/// `image` and `serviceAccountName` are replaced; `command` and `args` are replaced when the node's
/// list is non-empty; `env` is merged by name (the node's value wins, new names are appended);
/// `resources` is merged per resource name in `limits` and `requests` (`claims` replaced when set).
pub fn merge_runtime(stack: Option<&AgentRuntime>, node: Option<&AgentRuntime>) -> AgentRuntime {
    let default = AgentRuntime::default();
    let AgentRuntime {
        image: stack_image,
        command: stack_command,
        args: stack_args,
        env: stack_env,
        resources: stack_resources,
        pod_annotations: stack_pod_annotations,
        pod_labels: stack_pod_labels,
        service_account_name: stack_sa,
    } = stack.unwrap_or(&default);
    let AgentRuntime {
        image: node_image,
        command: node_command,
        args: node_args,
        env: node_env,
        resources: node_resources,
        pod_annotations: node_pod_annotations,
        pod_labels: node_pod_labels,
        service_account_name: node_sa,
    } = node.unwrap_or(&default);
    let list = |node: &Vec<String>, stack: &Vec<String>| {
        if node.is_empty() {
            stack.clone()
        } else {
            node.clone()
        }
    };
    AgentRuntime {
        image: node_image.clone().or_else(|| stack_image.clone()),
        command: list(node_command, stack_command),
        args: list(node_args, stack_args),
        env: merge_env(stack_env.clone(), node_env),
        resources: merge_resources(stack_resources.as_ref(), node_resources.as_ref()),
        pod_annotations: merge_maps(stack_pod_annotations, node_pod_annotations),
        pod_labels: merge_maps(stack_pod_labels, node_pod_labels),
        service_account_name: node_sa.clone().or_else(|| stack_sa.clone()),
    }
}

/// The stack's map with the node's entries on top.
fn merge_maps(
    stack: &BTreeMap<String, String>,
    node: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut merged = stack.clone();
    merged.extend(node.iter().map(|(k, v)| (k.clone(), v.clone())));
    merged
}

fn merge_resources(
    stack: Option<&ResourceRequirements>,
    node: Option<&ResourceRequirements>,
) -> Option<ResourceRequirements> {
    match (stack, node) {
        (None, None) => None,
        (Some(only), None) | (None, Some(only)) => Some(only.clone()),
        (Some(stack), Some(node)) => {
            let merge = |s: &Option<BTreeMap<_, _>>, n: &Option<BTreeMap<_, _>>| match (s, n) {
                (None, None) => None,
                _ => {
                    let mut out = s.clone().unwrap_or_default();
                    out.extend(n.clone().unwrap_or_default());
                    Some(out)
                }
            };
            Some(ResourceRequirements {
                limits: merge(&stack.limits, &node.limits),
                requests: merge(&stack.requests, &node.requests),
                claims: node.claims.clone().or_else(|| stack.claims.clone()),
            })
        }
    }
}

/// Name of the node's Job or Deployment (the node's name when it is a DNS-1035 label of at most 63
/// characters).
pub fn agent_workload_name(node_name: &str) -> String {
    child_name(node_name, "")
}

/// The labels selecting a node's agent pods (Deployment selector).
pub fn agent_selector(node_name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_AGENT_NODE.to_string(), label_value(node_name)),
        (LABEL_COMPONENT.to_string(), COMPONENT_AGENT.to_string()),
    ])
}

/// All labels of a node's workload and pods: the selector, the stack, and the recommended labels.
pub fn agent_labels(node_name: &str, stack_name: &str) -> BTreeMap<String, String> {
    let mut labels = base_labels();
    labels.extend(agent_selector(node_name));
    labels.insert(LABEL_STACK.to_string(), label_value(stack_name));
    labels.insert(LABEL_NAME.to_string(), AGENT_APP_NAME.to_string());
    labels.insert(LABEL_INSTANCE.to_string(), label_value(node_name));
    labels
}

/// The placement annotations `hypersync.io/{r,theta-degrees,hyperbolic-radius,tier}`, written on the
/// workload and its pods (the controller writes the same ones on the AgentNode).
pub fn placement_annotations(placement: &PlacementStatus) -> BTreeMap<String, String> {
    BTreeMap::from([
        (ANNOTATION_R.to_string(), format_f64(placement.r)),
        (
            ANNOTATION_THETA_DEGREES.to_string(),
            format_f64(placement.theta_degrees),
        ),
        (
            ANNOTATION_HYPERBOLIC_RADIUS.to_string(),
            format_f64(placement.hyperbolic_radius),
        ),
        (ANNOTATION_TIER.to_string(), placement.tier.to_string()),
    ])
}

/// `HYPERSYNC_<LAYER>` for a layer or tool name: upper case, every character other than a letter or
/// digit becomes `_` (`perception-0` -> `HYPERSYNC_PERCEPTION_0`).
pub fn env_prefix(name: &str) -> String {
    let upper: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{ENV_PREFIX}{upper}")
}

fn secret_env(name: String, secret: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name,
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.name.clone(),
                key: secret.key.clone(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn json<T: Serialize + ?Sized>(what: &'static str, value: &T) -> Result<String, BuildError> {
    serde_json::to_string(value).map_err(|source| BuildError::Json { what, source })
}

/// The serde name of a unit enum value (`Strict`, `Qdrant`, `MCP`).
fn enum_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

#[derive(Serialize)]
struct ToolView<'a> {
    name: &'a str,
    kind: String,
    url: &'a str,
}

/// The agent container's environment: the operator's `HYPERSYNC_*` variables, then the runtime's own
/// variables minus any that use the reserved prefix (returned as the second value, sorted and
/// deduplicated). Secrets appear only as `secretKeyRef`s.
///
/// Variables: `HYPERSYNC_NODE_NAME`, `_NAMESPACE`, `_STACK`, `_LIFECYCLE`, `_TASK_DESCRIPTION`,
/// `_TASK_TAGS` (comma-joined), `_TASK_INPUTS` (JSON, `{}` when absent), `_OBJECTIVE` (JSON, `{}` when
/// absent), `_AUTONOMY`, `_TEMPERATURE`, `_R`, `_THETA_DEGREES`, `_X`, `_Y`, `_HYPERBOLIC_RADIUS`,
/// `_TIER`, `_MODEL_LAYERS` (comma-joined layer names), per layer `_<LAYER>_ENDPOINT`, `_<LAYER>_MODEL`
/// and `_<LAYER>_API_KEY`, `_TOOLS` (JSON array of name, kind, url) with `_TOOL_<NAME>_SECRET` per
/// tool credential, `_VECTOR_STORE_KIND`, `_VECTOR_STORE_URL`, `_VECTOR_STORE_SECRET`, `_CONTEXT`
/// (JSON).
pub fn agent_env(input: &AgentInput<'_>) -> Result<(Vec<EnvVar>, Vec<String>), BuildError> {
    let PlacementStatus {
        r,
        theta_degrees,
        x,
        y,
        hyperbolic_radius,
        tier,
        anchor: _,
        algorithm: _,
        inputs_digest: _,
        display: _,
    } = input.placement;
    let (description, tags, inputs) = match input.task {
        Some(Task {
            description,
            tags,
            inputs,
        }) => (
            description.clone().unwrap_or_default(),
            tags.join(","),
            match inputs {
                Some(value) => json("the task inputs", value)?,
                None => "{}".to_string(),
            },
        ),
        None => (String::new(), String::new(), "{}".to_string()),
    };
    let objective = match input.objective {
        Some(objective) => json("the objective", objective)?,
        None => "{}".to_string(),
    };
    let mut env = vec![
        env_value("HYPERSYNC_NODE_NAME", input.node_name),
        env_value("HYPERSYNC_NAMESPACE", input.namespace),
        env_value("HYPERSYNC_STACK", input.stack_name),
        env_value("HYPERSYNC_LIFECYCLE", enum_name(&input.lifecycle)),
        env_value("HYPERSYNC_TASK_DESCRIPTION", description),
        env_value("HYPERSYNC_TASK_TAGS", tags),
        env_value("HYPERSYNC_TASK_INPUTS", inputs),
        env_value("HYPERSYNC_OBJECTIVE", objective),
        env_value("HYPERSYNC_AUTONOMY", enum_name(&input.autonomy)),
        env_value("HYPERSYNC_TEMPERATURE", format_f64(input.temperature)),
        env_value("HYPERSYNC_R", format_f64(*r)),
        env_value("HYPERSYNC_THETA_DEGREES", format_f64(*theta_degrees)),
        env_value("HYPERSYNC_X", format_f64(*x)),
        env_value("HYPERSYNC_Y", format_f64(*y)),
        env_value(
            "HYPERSYNC_HYPERBOLIC_RADIUS",
            format_f64(*hyperbolic_radius),
        ),
        env_value("HYPERSYNC_TIER", tier.to_string()),
        env_value(
            "HYPERSYNC_MODEL_LAYERS",
            input
                .models
                .iter()
                .map(|m| m.layer.as_str())
                .collect::<Vec<_>>()
                .join(","),
        ),
    ];
    for LayerModel {
        layer,
        endpoint,
        served_model,
        api_key,
    } in input.models
    {
        let prefix = env_prefix(layer);
        env.push(env_value(&format!("{prefix}_ENDPOINT"), endpoint.clone()));
        env.push(env_value(&format!("{prefix}_MODEL"), served_model.clone()));
        if let Some(secret) = api_key {
            env.push(secret_env(format!("{prefix}_API_KEY"), secret));
        }
    }
    if !input.tools.is_empty() {
        let views: Vec<ToolView<'_>> = input
            .tools
            .iter()
            .map(|t| ToolView {
                name: &t.name,
                kind: enum_name(&t.kind),
                url: &t.url,
            })
            .collect();
        env.push(env_value("HYPERSYNC_TOOLS", json("the tools", &views)?));
        for tool in input.tools {
            if let Some(secret) = &tool.secret_ref {
                let name = format!(
                    "{ENV_PREFIX}TOOL_{}_SECRET",
                    &env_prefix(&tool.name)[ENV_PREFIX.len()..]
                );
                env.push(secret_env(name, secret));
            }
        }
    }
    if let Some(store) = input.vector_store {
        env.push(env_value(
            "HYPERSYNC_VECTOR_STORE_KIND",
            enum_name(&store.kind),
        ));
        env.push(env_value("HYPERSYNC_VECTOR_STORE_URL", store.url.clone()));
        if let Some(secret) = &store.secret_ref {
            env.push(secret_env(
                "HYPERSYNC_VECTOR_STORE_SECRET".to_string(),
                secret,
            ));
        }
    }
    if let Some(context) = input.context {
        env.push(env_value(
            "HYPERSYNC_CONTEXT",
            json("the context policy", context)?,
        ));
    }

    let mut ignored: Vec<String> = Vec::new();
    let user: Vec<EnvVar> = input
        .runtime
        .env
        .iter()
        .filter(|e| {
            let reserved = e.name.starts_with(ENV_PREFIX);
            if reserved {
                ignored.push(e.name.clone());
            }
            !reserved
        })
        .cloned()
        .collect();
    ignored.sort();
    ignored.dedup();
    Ok((merge_env(env, &user), ignored))
}

fn pod_template(
    input: &AgentInput<'_>,
    env: Vec<EnvVar>,
    restart_policy: &str,
) -> Result<PodTemplateSpec, BuildError> {
    let AgentRuntime {
        image,
        command,
        args,
        env: _,
        resources,
        pod_annotations,
        pod_labels,
        service_account_name,
    } = input.runtime;
    let image = image
        .as_deref()
        .filter(|i| !i.trim().is_empty())
        .ok_or_else(|| BuildError::MissingImage {
            stack: input.stack_name.to_string(),
        })?;
    // The per-node ServiceAccount is the agent's only way to report its objective, so its token is
    // mounted; a runtime-chosen account keeps the cluster's default behaviour.
    let (service_account, automount) = match service_account_name {
        Some(sa) => (sa.clone(), None),
        None => (identity_name(input.node_name), Some(true)),
    };
    // The user's pod annotations and labels first; the operator's own keys win over them.
    let mut annotations = pod_annotations.clone();
    annotations.extend(placement_annotations(input.placement));
    annotations.insert(
        "kubectl.kubernetes.io/default-container".to_string(),
        AGENT_CONTAINER.to_string(),
    );
    let mut labels = pod_labels.clone();
    labels.extend(agent_labels(input.node_name, input.stack_name));
    let container = Container {
        name: AGENT_CONTAINER.to_string(),
        image: Some(image.to_string()),
        command: (!command.is_empty()).then(|| command.clone()),
        args: (!args.is_empty()).then(|| args.clone()),
        env: Some(env),
        resources: resources.clone(),
        volume_mounts: Some(vec![VolumeMount {
            name: TMP_VOLUME.to_string(),
            mount_path: "/tmp".to_string(),
            ..VolumeMount::default()
        }]),
        security_context: Some(agent_security_context()),
        ..Container::default()
    };
    Ok(PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            restart_policy: Some(restart_policy.to_string()),
            service_account_name: Some(service_account),
            automount_service_account_token: automount,
            enable_service_links: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                seccomp_profile: Some(runtime_default_seccomp()),
                ..PodSecurityContext::default()
            }),
            volumes: Some(vec![Volume {
                name: TMP_VOLUME.to_string(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        }),
    })
}

/// Builds the node's workload: a Job for Ephemeral nodes, a one-replica Deployment for Persistent
/// ones.
///
/// The Job: `backoffLimit` is `objective.maxRetries`, default 0 — an agent run that fails is a failed
/// objective unless the user asks for retries (each retry re-runs a possibly costly, non-idempotent
/// agent); `activeDeadlineSeconds` is `objective.deadlineSeconds`; `restartPolicy: Never` so every
/// attempt is a fresh pod with its own logs; no `ttlSecondsAfterFinished`, because the AgentNode owns
/// the Job and its TTL governs garbage collection. The Deployment uses `Recreate` so two agents of
/// one node never run at once.
pub fn build_agent_workload(input: &AgentInput<'_>) -> Result<AgentBuild, BuildError> {
    let (env, ignored_env) = agent_env(input)?;
    let name = agent_workload_name(input.node_name);
    let labels = agent_labels(input.node_name, input.stack_name);
    let annotations = placement_annotations(input.placement);
    let metadata = object_meta(&name, input.namespace, labels, annotations, input.owner);
    let workload = match input.lifecycle {
        LifecycleMode::Ephemeral => {
            let (backoff_limit, deadline) = match input.objective {
                Some(o) => (o.max_retries.unwrap_or(0).max(0), o.deadline_seconds),
                None => (0, None),
            };
            AgentWorkload::Job(Box::new(Job {
                metadata,
                spec: Some(JobSpec {
                    backoff_limit: Some(backoff_limit),
                    active_deadline_seconds: deadline,
                    template: pod_template(input, env, "Never")?,
                    ..JobSpec::default()
                }),
                status: None,
            }))
        }
        LifecycleMode::Persistent => AgentWorkload::Deployment(Box::new(Deployment {
            metadata,
            spec: Some(DeploymentSpec {
                replicas: Some(1),
                selector: LabelSelector {
                    match_labels: Some(agent_selector(input.node_name)),
                    match_expressions: None,
                },
                strategy: Some(DeploymentStrategy {
                    type_: Some("Recreate".to_string()),
                    rolling_update: None,
                }),
                revision_history_limit: Some(3),
                template: pod_template(input, env, "Always")?,
                ..DeploymentSpec::default()
            }),
            status: None,
        })),
    };
    Ok(AgentBuild {
        workload,
        ignored_env,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::agent_node::{Comparator, Metric};
    use crate::api::agent_stack::{ContextStrategy, ToolKind, VectorStoreKind};
    use crate::workload::fixture::assert_fixture;
    use crate::workload::meta::owner_reference;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn placement() -> PlacementStatus {
        PlacementStatus {
            r: 0.4,
            theta_degrees: 120.0,
            x: -0.2,
            y: 0.3464,
            hyperbolic_radius: 0.8473,
            tier: 1,
            anchor: Some("origin".to_string()),
            algorithm: "semantic/v1".to_string(),
            inputs_digest: "abc".to_string(),
            display: None,
        }
    }

    fn runtime() -> AgentRuntime {
        AgentRuntime {
            image: Some("ghcr.io/hypersync/agent:1.0".to_string()),
            command: vec![],
            args: vec!["--verbose".to_string()],
            env: vec![
                env_value("LOG_LEVEL", "debug"),
                env_value("HYPERSYNC_R", "0.99"),
                env_value("HYPERSYNC_TIER", "9"),
            ],
            resources: None,
            pod_annotations: BTreeMap::new(),
            pod_labels: BTreeMap::new(),
            service_account_name: None,
        }
    }

    fn models() -> Vec<LayerModel> {
        vec![
            LayerModel {
                layer: "cognitive".to_string(),
                endpoint: "http://coder.ai.svc:8000/v1".to_string(),
                served_model: "coder".to_string(),
                api_key: None,
            },
            LayerModel {
                layer: "perception-0".to_string(),
                endpoint: "https://api.openai.com/v1".to_string(),
                served_model: "gpt-4o".to_string(),
                api_key: Some(SecretKeyRef {
                    name: "openai".to_string(),
                    key: "api-key".to_string(),
                }),
            },
        ]
    }

    fn task() -> Task {
        Task {
            description: Some("Audit the auth module".to_string()),
            tags: vec!["security".to_string(), "coding".to_string()],
            inputs: Some(serde_json::json!({"repo": "git@example.com:a/b.git"})),
        }
    }

    fn objective() -> Objective {
        Objective {
            autonomy: Some(Autonomy::Loose),
            metric: Some(Metric {
                name: "findings".to_string(),
                comparator: Comparator::GreaterOrEqual,
                target: 3.0,
            }),
            deadline_seconds: Some(1800),
            max_retries: Some(2),
        }
    }

    struct Owned {
        owner: OwnerReference,
        runtime: AgentRuntime,
        models: Vec<LayerModel>,
        task: Task,
        objective: Objective,
        placement: PlacementStatus,
        tools: Vec<Tool>,
        store: VectorStore,
        context: ContextPolicy,
    }

    fn owned() -> Owned {
        Owned {
            owner: owner_reference("AgentNode", "auditor", "uid-auditor"),
            runtime: runtime(),
            models: models(),
            task: task(),
            objective: objective(),
            placement: placement(),
            tools: vec![Tool {
                name: "git-mcp".to_string(),
                kind: ToolKind::Mcp,
                url: "http://git-mcp.tools.svc:8080".to_string(),
                secret_ref: Some(SecretKeyRef {
                    name: "git".to_string(),
                    key: "token".to_string(),
                }),
            }],
            store: VectorStore {
                kind: VectorStoreKind::Qdrant,
                url: "http://qdrant.ai.svc:6333".to_string(),
                secret_ref: None,
            },
            context: ContextPolicy {
                max_tokens: Some(8192),
                strategy: ContextStrategy::SlidingWindow,
            },
        }
    }

    fn input(o: &Owned, lifecycle: LifecycleMode) -> AgentInput<'_> {
        AgentInput {
            node_name: "auditor",
            namespace: "ai",
            stack_name: "sec-stack",
            owner: &o.owner,
            runtime: &o.runtime,
            models: &o.models,
            task: Some(&o.task),
            objective: Some(&o.objective),
            autonomy: Autonomy::Loose,
            temperature: 0.7,
            placement: &o.placement,
            lifecycle,
            tools: &o.tools,
            vector_store: Some(&o.store),
            context: Some(&o.context),
        }
    }

    fn value<'e>(env: &'e [EnvVar], name: &str) -> Option<&'e str> {
        env.iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.as_deref())
    }

    fn job(build: &AgentBuild) -> &Job {
        match &build.workload {
            AgentWorkload::Job(job) => job,
            other => panic!("expected a Job, got {}", other.kind()),
        }
    }

    #[test]
    fn ephemeral_job_matches_fixture() {
        let o = owned();
        let build = build_agent_workload(&input(&o, LifecycleMode::Ephemeral)).unwrap();
        assert_fixture("agent-job", job(&build));
        assert_eq!(build.workload.kind(), "Job");
        assert_eq!(build.workload.name(), "auditor");
        assert_eq!(build.ignored_env, ["HYPERSYNC_R", "HYPERSYNC_TIER"]);
    }

    #[test]
    fn env_carries_task_objective_autonomy_and_coordinates() {
        let o = owned();
        let (env, _) = agent_env(&input(&o, LifecycleMode::Ephemeral)).unwrap();
        assert_eq!(value(&env, "HYPERSYNC_NODE_NAME"), Some("auditor"));
        assert_eq!(value(&env, "HYPERSYNC_NAMESPACE"), Some("ai"));
        assert_eq!(
            value(&env, "HYPERSYNC_TASK_DESCRIPTION"),
            Some("Audit the auth module")
        );
        assert_eq!(value(&env, "HYPERSYNC_TASK_TAGS"), Some("security,coding"));
        let inputs: serde_json::Value =
            serde_json::from_str(value(&env, "HYPERSYNC_TASK_INPUTS").unwrap()).unwrap();
        assert_eq!(inputs["repo"], "git@example.com:a/b.git");
        let objective: Objective =
            serde_json::from_str(value(&env, "HYPERSYNC_OBJECTIVE").unwrap()).unwrap();
        assert_eq!(objective, o.objective);
        assert_eq!(value(&env, "HYPERSYNC_AUTONOMY"), Some("Loose"));
        assert_eq!(value(&env, "HYPERSYNC_TEMPERATURE"), Some("0.7"));
        assert_eq!(value(&env, "HYPERSYNC_R"), Some("0.4"));
        assert_eq!(value(&env, "HYPERSYNC_THETA_DEGREES"), Some("120"));
        assert_eq!(value(&env, "HYPERSYNC_X"), Some("-0.2"));
        assert_eq!(value(&env, "HYPERSYNC_Y"), Some("0.3464"));
        assert_eq!(value(&env, "HYPERSYNC_TIER"), Some("1"));
        assert_eq!(value(&env, "HYPERSYNC_LIFECYCLE"), Some("Ephemeral"));
        assert_eq!(
            value(&env, "HYPERSYNC_MODEL_LAYERS"),
            Some("cognitive,perception-0")
        );
    }

    #[test]
    fn layers_get_endpoint_model_and_secret_refs_only() {
        let o = owned();
        let (env, _) = agent_env(&input(&o, LifecycleMode::Ephemeral)).unwrap();
        assert_eq!(
            value(&env, "HYPERSYNC_COGNITIVE_ENDPOINT"),
            Some("http://coder.ai.svc:8000/v1")
        );
        assert_eq!(value(&env, "HYPERSYNC_COGNITIVE_MODEL"), Some("coder"));
        assert!(!env.iter().any(|e| e.name == "HYPERSYNC_COGNITIVE_API_KEY"));
        assert_eq!(value(&env, "HYPERSYNC_PERCEPTION_0_MODEL"), Some("gpt-4o"));
        let key = env
            .iter()
            .find(|e| e.name == "HYPERSYNC_PERCEPTION_0_API_KEY")
            .unwrap();
        assert!(key.value.is_none(), "never a value");
        let sel = key
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!((sel.name.as_str(), sel.key.as_str()), ("openai", "api-key"));
        let tool = env
            .iter()
            .find(|e| e.name == "HYPERSYNC_TOOL_GIT_MCP_SECRET")
            .unwrap();
        assert!(tool.value.is_none() && tool.value_from.is_some());
        let tools: serde_json::Value =
            serde_json::from_str(value(&env, "HYPERSYNC_TOOLS").unwrap()).unwrap();
        assert_eq!(
            tools,
            serde_json::json!([{"name": "git-mcp", "kind": "MCP", "url": "http://git-mcp.tools.svc:8080"}])
        );
        assert_eq!(value(&env, "HYPERSYNC_VECTOR_STORE_KIND"), Some("Qdrant"));
        assert!(
            value(&env, "HYPERSYNC_CONTEXT")
                .unwrap()
                .contains("SlidingWindow")
        );
    }

    #[test]
    fn user_env_cannot_override_reserved_variables() {
        let o = owned();
        let (env, ignored) = agent_env(&input(&o, LifecycleMode::Ephemeral)).unwrap();
        assert_eq!(value(&env, "HYPERSYNC_R"), Some("0.4"));
        assert_eq!(value(&env, "HYPERSYNC_TIER"), Some("1"));
        assert_eq!(env.iter().filter(|e| e.name == "HYPERSYNC_R").count(), 1);
        assert_eq!(env.last().map(|e| e.name.as_str()), Some("LOG_LEVEL"));
        assert_eq!(ignored, ["HYPERSYNC_R", "HYPERSYNC_TIER"]);
        let mut names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "no duplicate names (server-side apply)");
    }

    #[test]
    fn missing_task_and_objective_give_empty_json() {
        let o = owned();
        let mut i = input(&o, LifecycleMode::Ephemeral);
        i.task = None;
        i.objective = None;
        i.tools = &[];
        i.vector_store = None;
        i.context = None;
        let (env, _) = agent_env(&i).unwrap();
        assert_eq!(value(&env, "HYPERSYNC_TASK_INPUTS"), Some("{}"));
        assert_eq!(value(&env, "HYPERSYNC_OBJECTIVE"), Some("{}"));
        assert_eq!(value(&env, "HYPERSYNC_TASK_DESCRIPTION"), Some(""));
        assert!(value(&env, "HYPERSYNC_TOOLS").is_none());
        let build = build_agent_workload(&i).unwrap();
        let spec = job(&build).spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(0), "no retries by default");
        assert_eq!(spec.active_deadline_seconds, None);
    }

    #[test]
    fn job_settings() {
        let o = owned();
        let build = build_agent_workload(&input(&o, LifecycleMode::Ephemeral)).unwrap();
        let job = job(&build);
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(2));
        assert_eq!(spec.active_deadline_seconds, Some(1800));
        assert_eq!(spec.ttl_seconds_after_finished, None);
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.service_account_name.as_deref(), Some("auditor-agent"));
        assert_eq!(pod.automount_service_account_token, Some(true));
        let meta = spec.template.metadata.as_ref().unwrap();
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_AGENT_NODE], "auditor");
        assert_eq!(labels[LABEL_STACK], "sec-stack");
        let ann = meta.annotations.as_ref().unwrap();
        assert_eq!(ann[ANNOTATION_R], "0.4");
        assert_eq!(ann[ANNOTATION_THETA_DEGREES], "120");
        assert_eq!(ann[ANNOTATION_HYPERBOLIC_RADIUS], "0.8473");
        assert_eq!(ann[ANNOTATION_TIER], "1");
        assert_eq!(
            job.metadata.owner_references.as_deref().unwrap(),
            std::slice::from_ref(&o.owner)
        );
        assert_eq!(
            job.metadata.annotations.as_ref().unwrap()[ANNOTATION_TIER],
            "1"
        );
    }

    #[test]
    fn restricted_security_context_with_writable_tmp() {
        let o = owned();
        let build = build_agent_workload(&input(&o, LifecycleMode::Ephemeral)).unwrap();
        let pod = job(&build)
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap();
        let psc = pod.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        let c = &pod.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref().unwrap(),
            ["ALL"]
        );
        let mount = &c.volume_mounts.as_ref().unwrap()[0];
        assert_eq!(mount.mount_path, "/tmp");
        let vol = &pod.volumes.as_ref().unwrap()[0];
        assert_eq!(vol.name, mount.name);
        assert!(vol.empty_dir.is_some());
    }

    #[test]
    fn persistent_runs_one_replica_deployment() {
        let o = owned();
        let build = build_agent_workload(&input(&o, LifecycleMode::Persistent)).unwrap();
        assert_eq!(build.workload.kind(), "Deployment");
        let AgentWorkload::Deployment(d) = &build.workload else {
            panic!("expected a Deployment");
        };
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(
            spec.strategy.as_ref().unwrap().type_.as_deref(),
            Some("Recreate")
        );
        let pod_labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        for (k, v) in spec.selector.match_labels.as_ref().unwrap() {
            assert_eq!(pod_labels.get(k), Some(v));
        }
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Always"));
        let env = pod.containers[0].env.as_ref().unwrap();
        assert_eq!(value(env, "HYPERSYNC_LIFECYCLE"), Some("Persistent"));
    }

    #[test]
    fn runtime_service_account_wins() {
        let mut o = owned();
        o.runtime.service_account_name = Some("custom".to_string());
        let build = build_agent_workload(&input(&o, LifecycleMode::Ephemeral)).unwrap();
        let pod = job(&build)
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("custom"));
        assert_eq!(pod.automount_service_account_token, None);
    }

    #[test]
    fn missing_image_is_an_error() {
        let mut o = owned();
        o.runtime.image = None;
        let err = build_agent_workload(&input(&o, LifecycleMode::Ephemeral)).unwrap_err();
        assert_eq!(err.reason(), "MissingImage");
        assert!(
            err.to_string().starts_with("spec.runtime.image: ")
                && err.to_string().contains("AgentStack sec-stack "),
            "{err}"
        );
        o.runtime.image = Some(" ".to_string());
        assert!(build_agent_workload(&input(&o, LifecycleMode::Persistent)).is_err());
    }

    #[test]
    fn long_node_names_give_valid_workload_names() {
        let o = owned();
        let node = "agent.".repeat(40);
        let mut i = input(&o, LifecycleMode::Ephemeral);
        i.node_name = &node;
        let build = build_agent_workload(&i).unwrap();
        let name = build.workload.name();
        assert!(crate::workload::names::is_dns1035_label(name), "{name}");
        let labels = agent_labels(&node, "s");
        assert!(crate::workload::names::is_label_value(
            &labels[LABEL_AGENT_NODE]
        ));
        let env = job(&build)
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .env
            .clone()
            .unwrap();
        assert_eq!(value(&env, "HYPERSYNC_NODE_NAME"), Some(node.as_str()));
    }

    #[test]
    fn env_prefixes() {
        assert_eq!(env_prefix("cognitive"), "HYPERSYNC_COGNITIVE");
        assert_eq!(env_prefix("perception-12"), "HYPERSYNC_PERCEPTION_12");
    }

    fn rt(image: Option<&str>) -> AgentRuntime {
        AgentRuntime {
            image: image.map(str::to_string),
            ..AgentRuntime::default()
        }
    }

    #[test]
    fn merge_runtime_overrides_field_by_field() {
        let stack = AgentRuntime {
            image: Some("stack:1".to_string()),
            command: vec!["python".to_string()],
            args: vec!["-m".to_string(), "agent".to_string()],
            env: vec![env_value("A", "stack"), env_value("B", "stack")],
            resources: Some(ResourceRequirements {
                limits: Some(BTreeMap::from([
                    ("cpu".to_string(), Quantity("1".to_string())),
                    ("memory".to_string(), Quantity("1Gi".to_string())),
                ])),
                requests: None,
                claims: None,
            }),
            pod_annotations: BTreeMap::from([
                ("mesh/inject".to_string(), "true".to_string()),
                ("team".to_string(), "stack".to_string()),
            ]),
            pod_labels: BTreeMap::from([("tier".to_string(), "stack".to_string())]),
            service_account_name: Some("stack-sa".to_string()),
        };
        let node = AgentRuntime {
            image: None,
            command: vec![],
            args: vec!["--fast".to_string()],
            env: vec![env_value("B", "node"), env_value("C", "node")],
            resources: Some(ResourceRequirements {
                limits: Some(BTreeMap::from([(
                    "memory".to_string(),
                    Quantity("4Gi".to_string()),
                )])),
                requests: Some(BTreeMap::from([(
                    "cpu".to_string(),
                    Quantity("500m".to_string()),
                )])),
                claims: None,
            }),
            pod_annotations: BTreeMap::from([("team".to_string(), "node".to_string())]),
            pod_labels: BTreeMap::new(),
            service_account_name: None,
        };
        let merged = merge_runtime(Some(&stack), Some(&node));
        assert_eq!(
            merged.pod_annotations,
            BTreeMap::from([
                ("mesh/inject".to_string(), "true".to_string()),
                ("team".to_string(), "node".to_string()),
            ])
        );
        assert_eq!(
            merged.pod_labels.get("tier").map(String::as_str),
            Some("stack")
        );
        assert_eq!(merged.image.as_deref(), Some("stack:1"));
        assert_eq!(merged.command, ["python"]);
        assert_eq!(merged.args, ["--fast"]);
        let env: Vec<(&str, &str)> = merged
            .env
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(env, [("A", "stack"), ("B", "node"), ("C", "node")]);
        let r = merged.resources.unwrap();
        let limits = r.limits.unwrap();
        assert_eq!(limits["cpu"], Quantity("1".to_string()));
        assert_eq!(limits["memory"], Quantity("4Gi".to_string()));
        assert_eq!(r.requests.unwrap()["cpu"], Quantity("500m".to_string()));
        assert_eq!(merged.service_account_name.as_deref(), Some("stack-sa"));
    }

    #[test]
    fn merge_runtime_with_missing_sides() {
        assert_eq!(merge_runtime(None, None), AgentRuntime::default());
        let s = rt(Some("s"));
        let n = rt(Some("n"));
        assert_eq!(merge_runtime(Some(&s), None), s);
        assert_eq!(merge_runtime(None, Some(&n)), n);
        assert_eq!(
            merge_runtime(Some(&s), Some(&n)).image.as_deref(),
            Some("n")
        );
    }
}

#[cfg(test)]
mod pod_metadata_tests {
    use super::*;
    use crate::workload::meta::owner_reference;

    #[test]
    fn user_pod_metadata_is_kept_but_operator_keys_win() {
        let placement = PlacementStatus {
            r: 0.5,
            theta_degrees: 10.0,
            x: 0.49,
            y: 0.08,
            hyperbolic_radius: 1.1,
            tier: 1,
            anchor: None,
            algorithm: "explicit".to_string(),
            inputs_digest: String::new(),
            display: None,
        };
        let runtime = AgentRuntime {
            image: Some("agent:1".to_string()),
            pod_annotations: BTreeMap::from([
                ("hypersync.io/r".to_string(), "bogus".to_string()),
                ("sim.hypersync.io/run-seconds".to_string(), "30".to_string()),
            ]),
            pod_labels: BTreeMap::from([
                ("team".to_string(), "red".to_string()),
                (LABEL_AGENT_NODE.to_string(), "bogus".to_string()),
            ]),
            ..AgentRuntime::default()
        };
        let owner = owner_reference("AgentNode", "n", "uid-1");
        let input = AgentInput {
            node_name: "n",
            namespace: "ns",
            stack_name: "s",
            owner: &owner,
            runtime: &runtime,
            models: &[],
            task: None,
            objective: None,
            autonomy: Autonomy::Strict,
            temperature: 0.2,
            placement: &placement,
            lifecycle: LifecycleMode::Ephemeral,
            tools: &[],
            vector_store: None,
            context: None,
        };
        let template = pod_template(&input, vec![], "Never").expect("template builds");
        let meta = template.metadata.expect("metadata");
        let annotations = meta.annotations.expect("annotations");
        let labels = meta.labels.expect("labels");
        assert_eq!(annotations["hypersync.io/r"], "0.5");
        assert_eq!(annotations["sim.hypersync.io/run-seconds"], "30");
        assert_eq!(labels["team"], "red");
        assert_eq!(labels[LABEL_AGENT_NODE], "n");
    }
}

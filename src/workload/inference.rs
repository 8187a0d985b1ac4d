//! The inference engine of a local ModelEntry: its Deployment (vLLM or Ollama), ClusterIP Service and
//! optional weight-cache PVC, and the OpenAI-compatible endpoint URL they expose.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, ExecAction, HTTPGetAction,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Service,
    ServicePort, ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::BuildError;
use super::labels::{
    COMPONENT_INFERENCE, LABEL_COMPONENT, LABEL_INSTANCE, LABEL_MODEL_ENTRY, LABEL_NAME,
    base_labels,
};
use super::meta::{
    engine_security_context, env_value, merge_env, object_meta, runtime_default_seccomp,
};
use super::names::{child_name, label_value};
use crate::api::model_entry::{CacheSpec, Engine, GpuRequest, LocalSource, ModelType};

/// The pinned vLLM image (OpenAI-compatible server).
pub const VLLM_IMAGE: &str = "vllm/vllm-openai:v0.10.1";
/// The pinned Ollama image.
pub const OLLAMA_IMAGE: &str = "ollama/ollama:0.11.4";
/// vLLM's default port.
pub const VLLM_DEFAULT_PORT: i32 = 8000;
/// Ollama's default port.
pub const OLLAMA_DEFAULT_PORT: i32 = 11434;
/// Where vLLM (Hugging Face) keeps downloaded weights; `HF_HOME` points here.
pub const VLLM_WEIGHTS_DIR: &str = "/root/.cache/huggingface";
/// Where Ollama keeps pulled models.
pub const OLLAMA_WEIGHTS_DIR: &str = "/root/.ollama";
/// The GPU resource when `gpu.resourceName` is empty.
pub const DEFAULT_GPU_RESOURCE: &str = "nvidia.com/gpu";
/// The node label carrying the GPU product (set by NVIDIA GPU feature discovery).
pub const GPU_PRODUCT_LABEL: &str = "nvidia.com/gpu.product";
/// Name of the engine's container port and Service port.
pub const PORT_NAME: &str = "http";
/// Name of the engine container.
pub const ENGINE_CONTAINER: &str = "engine";
/// Name of the weights volume.
pub const WEIGHTS_VOLUME: &str = "weights";
/// Name of vLLM's shared-memory volume.
pub const SHM_VOLUME: &str = "dshm";
/// Suffix of the cache PVC's name.
pub const CACHE_SUFFIX: &str = "cache";
/// Startup-probe budget: 360 failures x 10 s = one hour to download and load the weights.
pub const STARTUP_FAILURE_THRESHOLD: i32 = 360;

/// Environment variables of the Ollama wrapper script (protected from user overrides like every
/// `HYPERSYNC_*` variable).
const OLLAMA_MODEL_ENV: &str = "HYPERSYNC_OLLAMA_MODEL";
const OLLAMA_SERVED_ENV: &str = "HYPERSYNC_OLLAMA_SERVED_MODEL";

/// Ollama needs its server running to pull a model, so the container runs the server in the
/// background, waits for it to answer, pulls the model unless it is already in the (cached) store,
/// copies it to the served name when that differs, then waits on the server. A failed pull exits the
/// container (visible as restarts). TERM is forwarded so the pod stops within its grace period. The
/// model names come from the environment, never from the script text, so no user input is parsed by
/// the shell. Extra engine arguments are passed to `ollama serve`.
const OLLAMA_SCRIPT: &str = r#"ollama serve "$@" &
server=$!
trap 'kill -TERM "$server" 2>/dev/null; wait "$server"; exit 0' TERM INT
until ollama list >/dev/null 2>&1; do
  if ! kill -0 "$server" 2>/dev/null; then wait "$server"; exit 1; fi
  sleep 1
done
if ! ollama show "$HYPERSYNC_OLLAMA_MODEL" >/dev/null 2>&1; then
  ollama pull "$HYPERSYNC_OLLAMA_MODEL" || { echo "failed to pull $HYPERSYNC_OLLAMA_MODEL" >&2; kill -TERM "$server"; exit 1; }
fi
if [ "$HYPERSYNC_OLLAMA_SERVED_MODEL" != "$HYPERSYNC_OLLAMA_MODEL" ]; then
  ollama cp "$HYPERSYNC_OLLAMA_MODEL" "$HYPERSYNC_OLLAMA_SERVED_MODEL" || { echo "failed to copy $HYPERSYNC_OLLAMA_MODEL to $HYPERSYNC_OLLAMA_SERVED_MODEL" >&2; kill -TERM "$server"; exit 1; }
fi
wait "$server"
"#;

/// What the inference builders need: the resolved ModelEntry and the replica count the controller
/// decided (it owns OnDemand scaling; `scaling` in the spec is not read here).
#[derive(Clone, Copy, Debug)]
pub struct InferenceInput<'a> {
    /// Name of the ModelEntry.
    pub entry_name: &'a str,
    /// Its namespace (every child lives there).
    pub namespace: &'a str,
    /// `spec.type`: selects vLLM's runner for pooling models.
    pub model_type: ModelType,
    /// `spec.source.local`.
    pub local: &'a LocalSource,
    /// Replicas of the Deployment.
    pub replicas: i32,
    /// Controller reference to the ModelEntry.
    pub owner: &'a OwnerReference,
}

/// Every object of a local model, plus what the entry's status reports.
#[derive(Clone, Debug, PartialEq)]
pub struct InferenceObjects {
    pub deployment: Deployment,
    pub service: Service,
    /// Present when `cache` is set.
    pub cache: Option<PersistentVolumeClaim>,
    /// `http://<service>.<namespace>.svc:<port>/v1`.
    pub endpoint: String,
    /// The model name clients send.
    pub served_model: String,
}

/// The engine image: the spec's, else the pinned image of the engine.
pub fn engine_image(local: &LocalSource) -> &str {
    match (&local.image, local.engine) {
        (Some(image), _) if !image.is_empty() => image,
        (_, Engine::Vllm) => VLLM_IMAGE,
        (_, Engine::Ollama) => OLLAMA_IMAGE,
    }
}

/// The engine port: the spec's, else 8000 (vLLM) or 11434 (Ollama).
pub fn engine_port(local: &LocalSource) -> i32 {
    match (local.port, local.engine) {
        (Some(port), _) => port,
        (None, Engine::Vllm) => VLLM_DEFAULT_PORT,
        (None, Engine::Ollama) => OLLAMA_DEFAULT_PORT,
    }
}

/// The name clients send as `model`: `servedModelName`, else `model`.
pub fn served_model_name(local: &LocalSource) -> &str {
    match &local.served_model_name {
        Some(name) if !name.is_empty() => name,
        _ => &local.model,
    }
}

/// Name of the Deployment, Service and NetworkPolicy of an entry (the entry's name when it is a
/// DNS-1035 label of at most 63 characters).
pub fn inference_name(entry_name: &str) -> String {
    child_name(entry_name, "")
}

/// Name of the weight-cache PVC: `<entry>-cache`.
pub fn cache_pvc_name(entry_name: &str) -> String {
    child_name(entry_name, CACHE_SUFFIX)
}

/// The OpenAI-compatible base URL of an in-cluster Service: `http://<svc>.<ns>.svc:<port>/v1` (both
/// vLLM and Ollama serve the OpenAI API under `/v1`).
pub fn endpoint_url(service: &str, namespace: &str, port: i32) -> String {
    format!("http://{service}.{namespace}.svc:{port}/v1")
}

/// The labels selecting an entry's engine pods (Deployment selector, Service selector, NetworkPolicy
/// podSelector). Independent of the engine so the immutable Deployment selector survives an engine
/// change.
pub fn inference_selector(entry_name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MODEL_ENTRY.to_string(), label_value(entry_name)),
        (LABEL_COMPONENT.to_string(), COMPONENT_INFERENCE.to_string()),
    ])
}

/// All labels of an entry's objects and pods: the selector plus managed-by, part-of, name (`vllm` or
/// `ollama`) and instance.
pub fn inference_labels(entry_name: &str, engine: Engine) -> BTreeMap<String, String> {
    let mut labels = base_labels();
    labels.extend(inference_selector(entry_name));
    labels.insert(LABEL_NAME.to_string(), engine_app_name(engine).to_string());
    labels.insert(LABEL_INSTANCE.to_string(), label_value(entry_name));
    labels
}

fn engine_app_name(engine: Engine) -> &'static str {
    match engine {
        Engine::Vllm => "vllm",
        Engine::Ollama => "ollama",
    }
}

/// vLLM's runner flags for a model type (vLLM >= 0.10 replaced `--task` with `--runner` and
/// `--convert`): embeddings pool with `embed`; rerankers (cross-encoders) and classifiers with
/// `classify`, which also serves the score/rerank API. Generative types (LLM, Vision, Audio) need none.
/// A model that already is a pooling model is left unconverted by vLLM.
pub fn vllm_runner_args(model_type: ModelType) -> &'static [&'static str] {
    match model_type {
        ModelType::Embedding => &["--runner", "pooling", "--convert", "embed"],
        ModelType::Reranker | ModelType::Classifier => {
            &["--runner", "pooling", "--convert", "classify"]
        }
        ModelType::Llm | ModelType::Vision | ModelType::Audio => &[],
    }
}

/// The vLLM arguments: model, served name, port, tensor parallelism across the replica's GPUs (when
/// more than one), the runner for pooling types, then the user's arguments.
pub fn vllm_args(model_type: ModelType, local: &LocalSource) -> Vec<String> {
    let mut args = vec![
        "--model".to_string(),
        local.model.clone(),
        "--served-model-name".to_string(),
        served_model_name(local).to_string(),
        "--port".to_string(),
        engine_port(local).to_string(),
    ];
    let gpus = local.gpu.as_ref().map_or(0, |g| g.count);
    if gpus > 1 {
        args.push("--tensor-parallel-size".to_string());
        args.push(gpus.to_string());
    }
    args.extend(vllm_runner_args(model_type).iter().map(|s| s.to_string()));
    args.extend(local.args.iter().cloned());
    args
}

fn validate(input: &InferenceInput<'_>) -> Result<(), BuildError> {
    if input.local.model.trim().is_empty() {
        return Err(BuildError::EmptyModel);
    }
    let port = engine_port(input.local);
    if !(1..=65535).contains(&port) {
        return Err(BuildError::InvalidPort { port });
    }
    if let Some(gpu) = &input.local.gpu
        && gpu.count < 0
    {
        return Err(BuildError::InvalidGpuCount { count: gpu.count });
    }
    if input.replicas < 0 {
        return Err(BuildError::InvalidReplicas {
            replicas: input.replicas,
        });
    }
    Ok(())
}

/// Builds the Deployment, Service and (when `cache` is set) PVC of a local entry.
pub fn build_inference(input: &InferenceInput<'_>) -> Result<InferenceObjects, BuildError> {
    let deployment = build_deployment(input)?;
    let service = build_service(input)?;
    let cache = build_cache_pvc(input);
    Ok(InferenceObjects {
        deployment,
        service,
        cache,
        endpoint: endpoint_url(
            &inference_name(input.entry_name),
            input.namespace,
            engine_port(input.local),
        ),
        served_model: served_model_name(input.local).to_string(),
    })
}

/// The engine's resources: the user's CPU and memory, plus `gpu.count` of `gpu.resourceName` as both
/// limit and request (extended resources cannot be overcommitted, so the two must match).
pub fn engine_resources(
    user: Option<&ResourceRequirements>,
    gpu: Option<&GpuRequest>,
) -> Option<ResourceRequirements> {
    let mut resources = user.cloned().unwrap_or_default();
    if let Some(gpu) = gpu.filter(|g| g.count > 0) {
        let name = if gpu.resource_name.is_empty() {
            DEFAULT_GPU_RESOURCE.to_string()
        } else {
            gpu.resource_name.clone()
        };
        let count = Quantity(gpu.count.to_string());
        resources
            .limits
            .get_or_insert_with(BTreeMap::new)
            .insert(name.clone(), count.clone());
        resources
            .requests
            .get_or_insert_with(BTreeMap::new)
            .insert(name, count);
    }
    (resources != ResourceRequirements::default()).then_some(resources)
}

fn http_probe(path: &str, period: i32, timeout: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String(PORT_NAME.to_string()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn exec_probe(command: Vec<String>, period: i32, timeout: i32, failures: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(command),
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// The engine's environment: the operator's variables, then the user's (a user variable replaces an
/// operator one of the same name, except `HYPERSYNC_*`, which the user cannot set here).
fn engine_env(local: &LocalSource) -> Vec<EnvVar> {
    let base = match local.engine {
        Engine::Vllm => vec![
            env_value("HF_HOME", VLLM_WEIGHTS_DIR),
            // Opt out of vLLM's anonymous usage reporting from inside the cluster.
            env_value("VLLM_NO_USAGE_STATS", "1"),
        ],
        Engine::Ollama => vec![
            env_value("OLLAMA_HOST", format!("0.0.0.0:{}", engine_port(local))),
            env_value(OLLAMA_MODEL_ENV, local.model.clone()),
            env_value(OLLAMA_SERVED_ENV, served_model_name(local)),
        ],
    };
    let user: Vec<EnvVar> = local
        .env
        .iter()
        .filter(|e| !e.name.starts_with("HYPERSYNC_"))
        .cloned()
        .collect();
    merge_env(base, &user)
}

fn engine_container(input: &InferenceInput<'_>) -> Container {
    let local = input.local;
    let port = engine_port(local);
    let (command, args, weights_dir, probes) = match local.engine {
        Engine::Vllm => (
            None,
            vllm_args(input.model_type, local),
            VLLM_WEIGHTS_DIR,
            (
                // Downloading and loading weights can take long: the startup probe allows an hour
                // before liveness takes over.
                http_probe("/health", 10, 5, STARTUP_FAILURE_THRESHOLD),
                http_probe("/health", 10, 5, 3),
                http_probe("/health", 20, 10, 3),
            ),
        ),
        Engine::Ollama => {
            let show = vec![
                "ollama".to_string(),
                "show".to_string(),
                served_model_name(local).to_string(),
            ];
            (
                Some(vec![
                    "/bin/sh".to_string(),
                    "-c".to_string(),
                    OLLAMA_SCRIPT.to_string(),
                    "hypersync-ollama".to_string(),
                ]),
                local.args.clone(),
                OLLAMA_WEIGHTS_DIR,
                (
                    // Started once the model is pulled and known under its served name; ready
                    // while it stays so; alive while the server answers.
                    exec_probe(show.clone(), 10, 10, STARTUP_FAILURE_THRESHOLD),
                    exec_probe(show, 15, 10, 3),
                    http_probe("/", 20, 10, 3),
                ),
            )
        }
    };
    let (startup, readiness, liveness) = probes;
    let mut mounts = vec![VolumeMount {
        name: WEIGHTS_VOLUME.to_string(),
        mount_path: weights_dir.to_string(),
        ..VolumeMount::default()
    }];
    if local.engine == Engine::Vllm {
        mounts.push(VolumeMount {
            name: SHM_VOLUME.to_string(),
            mount_path: "/dev/shm".to_string(),
            ..VolumeMount::default()
        });
    }
    Container {
        name: ENGINE_CONTAINER.to_string(),
        image: Some(engine_image(local).to_string()),
        command,
        args: (!args.is_empty()).then_some(args),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.to_string()),
            container_port: port,
            protocol: Some("TCP".to_string()),
            ..ContainerPort::default()
        }]),
        env: Some(engine_env(local)),
        resources: engine_resources(local.resources.as_ref(), local.gpu.as_ref()),
        volume_mounts: Some(mounts),
        startup_probe: Some(startup),
        readiness_probe: Some(readiness),
        liveness_probe: Some(liveness),
        security_context: Some(engine_security_context()),
        ..Container::default()
    }
}

/// Builds the engine Deployment.
pub fn build_deployment(input: &InferenceInput<'_>) -> Result<Deployment, BuildError> {
    validate(input)?;
    // Every field of the local source is considered here (or, for `scaling` and `allowedPeers`, by
    // the controller and the NetworkPolicy builder), so a new field fails to compile until handled.
    let LocalSource {
        engine,
        model: _,
        image: _,
        args: _,
        env: _,
        served_model_name: _,
        port: _,
        gpu,
        resources: _,
        cache,
        node_selector,
        tolerations,
        affinity,
        priority_class_name,
        runtime_class_name,
        scaling: _,
        allowed_peers: _,
    } = input.local;

    let name = inference_name(input.entry_name);
    let labels = inference_labels(input.entry_name, *engine);

    let mut volumes = vec![weights_volume(input.entry_name, cache.as_ref())];
    if *engine == Engine::Vllm {
        // Tensor parallelism and the tokenizer workers share memory through /dev/shm, which the
        // container runtime caps at 64 MiB.
        volumes.push(Volume {
            name: SHM_VOLUME.to_string(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".to_string()),
                size_limit: None,
            }),
            ..Volume::default()
        });
    }

    let mut node_selector = node_selector.clone();
    if let Some(product) = gpu.as_ref().and_then(|g| g.product.as_ref()) {
        node_selector.insert(GPU_PRODUCT_LABEL.to_string(), product.clone());
    }

    let pod = PodSpec {
        containers: vec![engine_container(input)],
        volumes: Some(volumes),
        node_selector: (!node_selector.is_empty()).then_some(node_selector),
        tolerations: (!tolerations.is_empty()).then(|| tolerations.clone()),
        affinity: affinity.clone(),
        priority_class_name: priority_class_name.clone(),
        runtime_class_name: runtime_class_name.clone(),
        // The engine never talks to the API server.
        automount_service_account_token: Some(false),
        // Service links would inject e.g. VLLM_PORT=tcp://... for a Service named `vllm`, which vLLM
        // reads as its own configuration and rejects.
        enable_service_links: Some(false),
        security_context: Some(PodSecurityContext {
            seccomp_profile: Some(runtime_default_seccomp()),
            ..PodSecurityContext::default()
        }),
        ..PodSpec::default()
    };

    Ok(Deployment {
        metadata: object_meta(
            &name,
            input.namespace,
            labels.clone(),
            BTreeMap::new(),
            input.owner,
        ),
        spec: Some(DeploymentSpec {
            replicas: Some(input.replicas),
            selector: LabelSelector {
                match_labels: Some(inference_selector(input.entry_name)),
                match_expressions: None,
            },
            // Never surge: a surge replica would need GPUs beyond the entry's share and could not
            // mount a ReadWriteOnce cache held by the old pod.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(0)),
                    max_unavailable: Some(IntOrString::Int(1)),
                }),
            }),
            // Matches the startup probe's hour: a slow first download is not a stalled rollout.
            progress_deadline_seconds: Some(3600),
            revision_history_limit: Some(3),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([(
                        "kubectl.kubernetes.io/default-container".to_string(),
                        ENGINE_CONTAINER.to_string(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    })
}

fn weights_volume(entry_name: &str, cache: Option<&CacheSpec>) -> Volume {
    match cache {
        Some(_) => Volume {
            name: WEIGHTS_VOLUME.to_string(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: cache_pvc_name(entry_name),
                read_only: None,
            }),
            ..Volume::default()
        },
        None => Volume {
            name: WEIGHTS_VOLUME.to_string(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    }
}

/// Builds the ClusterIP Service in front of the engine pods (port named `http`).
pub fn build_service(input: &InferenceInput<'_>) -> Result<Service, BuildError> {
    validate(input)?;
    let port = engine_port(input.local);
    Ok(Service {
        metadata: object_meta(
            &inference_name(input.entry_name),
            input.namespace,
            inference_labels(input.entry_name, input.local.engine),
            BTreeMap::new(),
            input.owner,
        ),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            selector: Some(inference_selector(input.entry_name)),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.to_string()),
                port,
                target_port: Some(IntOrString::String(PORT_NAME.to_string())),
                protocol: Some("TCP".to_string()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// Builds the weight-cache PVC when `cache` is set: ReadWriteOnce (the access mode every storage class
/// supports; replicas sharing it must land on one node, or the class must allow more), sized and
/// classed as the spec says. It is owned by the entry, so deleting the entry frees the storage.
pub fn build_cache_pvc(input: &InferenceInput<'_>) -> Option<PersistentVolumeClaim> {
    let CacheSpec {
        size,
        storage_class_name,
    } = input.local.cache.as_ref()?;
    Some(PersistentVolumeClaim {
        metadata: object_meta(
            &cache_pvc_name(input.entry_name),
            input.namespace,
            inference_labels(input.entry_name, input.local.engine),
            BTreeMap::new(),
            input.owner,
        ),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_string()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), size.clone())])),
                limits: None,
            }),
            storage_class_name: storage_class_name.clone(),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::fixture::assert_fixture;
    use crate::workload::meta::owner_reference;
    use k8s_openapi::api::core::v1::{EnvVarSource, SecretKeySelector, Toleration};

    fn local(engine: Engine, model: &str) -> LocalSource {
        LocalSource {
            engine,
            model: model.to_string(),
            image: None,
            args: vec![],
            env: vec![],
            served_model_name: None,
            port: None,
            gpu: None,
            resources: None,
            cache: None,
            node_selector: BTreeMap::new(),
            tolerations: vec![],
            affinity: None,
            priority_class_name: None,
            runtime_class_name: None,
            scaling: None,
            allowed_peers: vec![],
        }
    }

    fn owner() -> OwnerReference {
        owner_reference(
            "ModelEntry",
            "coder",
            "11111111-2222-3333-4444-555555555555",
        )
    }

    fn vllm_coder() -> LocalSource {
        let mut l = local(Engine::Vllm, "deepseek-ai/deepseek-coder-33b-instruct");
        l.served_model_name = Some("coder".to_string());
        l.args = vec!["--max-model-len".to_string(), "16384".to_string()];
        l.env = vec![
            EnvVar {
                name: "HF_TOKEN".to_string(),
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "hf".to_string(),
                        key: "token".to_string(),
                        optional: None,
                    }),
                    ..EnvVarSource::default()
                }),
            },
            env_value("HYPERSYNC_OLLAMA_MODEL", "ignored"),
        ];
        l.gpu = Some(GpuRequest {
            count: 2,
            resource_name: "nvidia.com/gpu".to_string(),
            product: Some("NVIDIA-A100-SXM4-80GB".to_string()),
        });
        l.resources = Some(ResourceRequirements {
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("96Gi".to_string()),
            )])),
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("8".to_string())),
                ("memory".to_string(), Quantity("64Gi".to_string())),
            ])),
            claims: None,
        });
        l.cache = Some(CacheSpec {
            size: Quantity("200Gi".to_string()),
            storage_class_name: Some("fast".to_string()),
        });
        l.node_selector = BTreeMap::from([("pool".to_string(), "gpu".to_string())]);
        l.tolerations = vec![Toleration {
            key: Some("nvidia.com/gpu".to_string()),
            operator: Some("Exists".to_string()),
            effect: Some("NoSchedule".to_string()),
            ..Toleration::default()
        }];
        l.priority_class_name = Some("inference".to_string());
        l.runtime_class_name = Some("nvidia".to_string());
        l
    }

    fn input<'a>(
        name: &'a str,
        model_type: ModelType,
        local: &'a LocalSource,
        owner: &'a OwnerReference,
    ) -> InferenceInput<'a> {
        InferenceInput {
            entry_name: name,
            namespace: "ai",
            model_type,
            local,
            replicas: 1,
            owner,
        }
    }

    fn container(d: &Deployment) -> &Container {
        &d.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
    }

    fn pod(d: &Deployment) -> &PodSpec {
        d.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    fn env_of<'c>(c: &'c Container, name: &str) -> Option<&'c EnvVar> {
        c.env.as_ref()?.iter().find(|e| e.name == name)
    }

    #[test]
    fn vllm_deployment_matches_fixture() {
        let l = vllm_coder();
        let o = owner();
        let objects = build_inference(&input("coder", ModelType::Llm, &l, &o)).unwrap();
        assert_fixture("vllm-deployment", &objects.deployment);
        assert_fixture("vllm-service", &objects.service);
        assert_fixture("vllm-cache-pvc", &objects.cache.expect("cache PVC"));
        assert_eq!(objects.endpoint, "http://coder.ai.svc:8000/v1");
        assert_eq!(objects.served_model, "coder");
    }

    #[test]
    fn vllm_args_carry_model_port_parallelism_then_user_args() {
        let l = vllm_coder();
        assert_eq!(
            vllm_args(ModelType::Llm, &l),
            [
                "--model",
                "deepseek-ai/deepseek-coder-33b-instruct",
                "--served-model-name",
                "coder",
                "--port",
                "8000",
                "--tensor-parallel-size",
                "2",
                "--max-model-len",
                "16384"
            ]
        );
        // One GPU: no tensor parallelism flag.
        let mut one = local(Engine::Vllm, "m");
        one.gpu = Some(GpuRequest {
            count: 1,
            resource_name: "nvidia.com/gpu".to_string(),
            product: None,
        });
        one.port = Some(9000);
        assert_eq!(
            vllm_args(ModelType::Llm, &one),
            ["--model", "m", "--served-model-name", "m", "--port", "9000"]
        );
    }

    #[test]
    fn vllm_runner_follows_model_type() {
        let l = local(Engine::Vllm, "BAAI/bge-m3");
        let tail = |t| vllm_args(t, &l)[6..].to_vec();
        assert_eq!(
            tail(ModelType::Embedding),
            ["--runner", "pooling", "--convert", "embed"]
        );
        assert_eq!(
            tail(ModelType::Reranker),
            ["--runner", "pooling", "--convert", "classify"]
        );
        assert_eq!(
            tail(ModelType::Classifier),
            ["--runner", "pooling", "--convert", "classify"]
        );
        for t in [ModelType::Llm, ModelType::Vision, ModelType::Audio] {
            assert!(tail(t).is_empty(), "{t:?}");
        }
    }

    #[test]
    fn gpu_goes_into_limits_and_requests_next_to_user_resources() {
        let l = vllm_coder();
        let o = owner();
        let d = build_deployment(&input("coder", ModelType::Llm, &l, &o)).unwrap();
        let r = container(&d).resources.as_ref().unwrap();
        let limits = r.limits.as_ref().unwrap();
        let requests = r.requests.as_ref().unwrap();
        assert_eq!(limits["nvidia.com/gpu"], Quantity("2".to_string()));
        assert_eq!(requests["nvidia.com/gpu"], Quantity("2".to_string()));
        assert_eq!(limits["memory"], Quantity("96Gi".to_string()));
        assert_eq!(requests["cpu"], Quantity("8".to_string()));
        let ns = pod(&d).node_selector.as_ref().unwrap();
        assert_eq!(ns[GPU_PRODUCT_LABEL], "NVIDIA-A100-SXM4-80GB");
        assert_eq!(ns["pool"], "gpu");
    }

    #[test]
    fn custom_gpu_resource_and_no_gpu() {
        let gpu = GpuRequest {
            count: 1,
            resource_name: "amd.com/gpu".to_string(),
            product: None,
        };
        let r = engine_resources(None, Some(&gpu)).unwrap();
        assert_eq!(
            r.limits.unwrap().keys().collect::<Vec<_>>(),
            ["amd.com/gpu"]
        );
        let zero = GpuRequest { count: 0, ..gpu };
        assert_eq!(engine_resources(None, Some(&zero)), None);
        assert_eq!(engine_resources(None, None), None);
    }

    #[test]
    fn without_cache_weights_use_an_empty_dir() {
        let l = local(Engine::Vllm, "m");
        let o = owner();
        let objects = build_inference(&input("m", ModelType::Llm, &l, &o)).unwrap();
        assert!(objects.cache.is_none());
        let vols = pod(&objects.deployment).volumes.as_ref().unwrap();
        let weights = vols.iter().find(|v| v.name == WEIGHTS_VOLUME).unwrap();
        assert!(weights.empty_dir.is_some() && weights.persistent_volume_claim.is_none());
        let shm = vols.iter().find(|v| v.name == SHM_VOLUME).unwrap();
        assert_eq!(
            shm.empty_dir.as_ref().unwrap().medium.as_deref(),
            Some("Memory")
        );
        // No resources at all when neither CPU/memory nor GPUs are asked for.
        assert!(container(&objects.deployment).resources.is_none());
    }

    #[test]
    fn user_env_is_appended_but_cannot_set_hypersync_variables() {
        let l = vllm_coder();
        let o = owner();
        let d = build_deployment(&input("coder", ModelType::Llm, &l, &o)).unwrap();
        let c = container(&d);
        assert_eq!(
            env_of(c, "HF_HOME").and_then(|e| e.value.as_deref()),
            Some(VLLM_WEIGHTS_DIR)
        );
        assert!(env_of(c, "HF_TOKEN").unwrap().value_from.is_some());
        assert!(env_of(c, "HYPERSYNC_OLLAMA_MODEL").is_none());
        // A user HF_HOME replaces the operator's in place (no duplicate names for SSA).
        let mut l2 = local(Engine::Vllm, "m");
        l2.env = vec![env_value("HF_HOME", "/data")];
        let d2 = build_deployment(&input("m", ModelType::Llm, &l2, &o)).unwrap();
        let env = container(&d2).env.as_ref().unwrap();
        assert_eq!(env.iter().filter(|e| e.name == "HF_HOME").count(), 1);
        assert_eq!(env[0].value.as_deref(), Some("/data"));
    }

    #[test]
    fn vllm_probes_hit_health_with_a_generous_startup() {
        let l = local(Engine::Vllm, "m");
        let o = owner();
        let d = build_deployment(&input("m", ModelType::Llm, &l, &o)).unwrap();
        let c = container(&d);
        for p in [&c.startup_probe, &c.readiness_probe, &c.liveness_probe] {
            let get = p.as_ref().unwrap().http_get.as_ref().unwrap();
            assert_eq!(get.path.as_deref(), Some("/health"));
            assert_eq!(get.port, IntOrString::String("http".to_string()));
        }
        let startup = c.startup_probe.as_ref().unwrap();
        assert!(
            startup.failure_threshold.unwrap() * startup.period_seconds.unwrap() >= 3600,
            "an hour for model loading"
        );
    }

    #[test]
    fn ollama_deployment_matches_fixture() {
        let mut l = local(Engine::Ollama, "llama3:8b");
        l.served_model_name = Some("llama3".to_string());
        l.cache = Some(CacheSpec {
            size: Quantity("20Gi".to_string()),
            storage_class_name: None,
        });
        let o = owner_reference("ModelEntry", "llama", "uid-llama");
        let objects = build_inference(&input("llama", ModelType::Llm, &l, &o)).unwrap();
        assert_fixture("ollama-deployment", &objects.deployment);
        assert_eq!(objects.endpoint, "http://llama.ai.svc:11434/v1");
        assert_eq!(objects.served_model, "llama3");
    }

    #[test]
    fn ollama_pulls_before_ready_and_listens_on_its_port() {
        let mut l = local(Engine::Ollama, "qwen2.5-coder:7b");
        l.port = Some(8080);
        let o = owner();
        let d = build_deployment(&input("q", ModelType::Llm, &l, &o)).unwrap();
        let c = container(&d);
        assert_eq!(c.image.as_deref(), Some(OLLAMA_IMAGE));
        let command = c.command.as_ref().unwrap();
        assert_eq!(command[..2], ["/bin/sh", "-c"]);
        // The model name is never spliced into the script.
        assert!(!command[2].contains("qwen2.5"));
        assert!(command[2].contains("ollama pull \"$HYPERSYNC_OLLAMA_MODEL\""));
        assert_eq!(
            env_of(c, "OLLAMA_HOST").and_then(|e| e.value.as_deref()),
            Some("0.0.0.0:8080")
        );
        assert_eq!(
            env_of(c, OLLAMA_MODEL_ENV).and_then(|e| e.value.as_deref()),
            Some("qwen2.5-coder:7b")
        );
        let show = ["ollama", "show", "qwen2.5-coder:7b"];
        for p in [&c.startup_probe, &c.readiness_probe] {
            let exec = p.as_ref().unwrap().exec.as_ref().unwrap();
            assert_eq!(exec.command.as_deref().unwrap(), show);
        }
        assert!(c.liveness_probe.as_ref().unwrap().http_get.is_some());
        assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 8080);
        let mount = &c.volume_mounts.as_ref().unwrap()[0];
        assert_eq!(mount.mount_path, OLLAMA_WEIGHTS_DIR);
        // No /dev/shm volume for Ollama.
        assert_eq!(c.volume_mounts.as_ref().unwrap().len(), 1);
    }

    /// Runs the real Ollama wrapper script under `/bin/sh` against a fake `ollama` CLI that records
    /// what it is asked to do.
    #[cfg(unix)]
    mod ollama_script {
        use super::super::{OLLAMA_MODEL_ENV, OLLAMA_SCRIPT, OLLAMA_SERVED_ENV};
        use std::path::{Path, PathBuf};
        use std::process::{Child, Command, ExitStatus};
        use std::time::{Duration, Instant};

        const FAKE_OLLAMA: &str = r#"#!/bin/sh
log="$FAKE_DIR/log"
key() { printf '%s' "$1" | tr '/:' '__'; }
case "$1" in
  serve) shift; echo "serve $*" >>"$log"; touch "$FAKE_DIR/up"
         trap 'echo stopped >>"$log"; exit 0' TERM
         while :; do sleep 0.05; done ;;
  list) [ -f "$FAKE_DIR/up" ] ;;
  show) [ -f "$FAKE_DIR/model-$(key "$2")" ] ;;
  pull) echo "pull $2" >>"$log"
        if [ -n "$FAKE_PULL_FAIL" ]; then exit 1; fi
        touch "$FAKE_DIR/model-$(key "$2")" ;;
  cp) echo "cp $2 $3" >>"$log"; touch "$FAKE_DIR/model-$(key "$3")" ;;
  *) exit 2 ;;
esac
"#;

        fn setup(case: &str) -> PathBuf {
            let dir = std::env::temp_dir()
                .join(format!("hypersync-ollama-{case}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("bin")).unwrap();
            let fake = dir.join("bin/ollama");
            std::fs::write(&fake, FAKE_OLLAMA).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
            dir
        }

        fn spawn(dir: &Path, model: &str, served: &str, fail_pull: bool) -> Child {
            let path = format!(
                "{}:{}",
                dir.join("bin").display(),
                std::env::var("PATH").unwrap_or_default()
            );
            let mut cmd = Command::new("/bin/sh");
            cmd.args(["-c", OLLAMA_SCRIPT, "hypersync-ollama", "--extra"])
                .env("PATH", path)
                .env("FAKE_DIR", dir)
                .env(OLLAMA_MODEL_ENV, model)
                .env(OLLAMA_SERVED_ENV, served);
            if fail_pull {
                cmd.env("FAKE_PULL_FAIL", "1");
            }
            cmd.spawn().expect("run /bin/sh")
        }

        fn log(dir: &Path) -> String {
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        }

        fn wait_for(dir: &Path, needle: &str) {
            let start = Instant::now();
            while !log(dir).contains(needle) {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "timed out waiting for {needle:?}; log:\n{}",
                    log(dir)
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        fn wait_exit(child: &mut Child) -> ExitStatus {
            let start = Instant::now();
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    return status;
                }
                if start.elapsed() > Duration::from_secs(20) {
                    let _ = child.kill();
                    panic!("script did not exit");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        fn terminate(child: &mut Child) -> ExitStatus {
            let ok = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(ok.success());
            wait_exit(child)
        }

        #[test]
        fn pulls_copies_then_serves_until_terminated() {
            let dir = setup("pull");
            let mut child = spawn(&dir, "llama3:8b", "llama3", false);
            wait_for(&dir, "cp llama3:8b llama3");
            let status = terminate(&mut child);
            let log = log(&dir);
            assert!(status.success(), "{status:?}\n{log}");
            assert_eq!(
                log.lines().collect::<Vec<_>>(),
                [
                    "serve --extra",
                    "pull llama3:8b",
                    "cp llama3:8b llama3",
                    "stopped"
                ]
            );
            let _ = std::fs::remove_dir_all(&dir);
        }

        #[test]
        fn cached_model_is_not_pulled_again() {
            let dir = setup("cached");
            std::fs::write(dir.join("model-qwen2.5_7b"), "").unwrap();
            let mut child = spawn(&dir, "qwen2.5:7b", "qwen2.5:7b", false);
            wait_for(&dir, "serve");
            // Give the script time to (wrongly) pull or copy.
            std::thread::sleep(Duration::from_millis(500));
            let status = terminate(&mut child);
            assert!(status.success());
            assert_eq!(
                log(&dir).lines().collect::<Vec<_>>(),
                ["serve --extra", "stopped"]
            );
            let _ = std::fs::remove_dir_all(&dir);
        }

        #[test]
        fn failed_pull_exits_non_zero() {
            let dir = setup("fail");
            let mut child = spawn(&dir, "nope:1b", "nope:1b", true);
            let status = wait_exit(&mut child);
            assert!(!status.success(), "{}", log(&dir));
            assert!(log(&dir).contains("pull nope:1b"));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn hardened_but_root_engine() {
        let l = local(Engine::Vllm, "m");
        let o = owner();
        let d = build_deployment(&input("m", ModelType::Llm, &l, &o)).unwrap();
        let sc = container(&d).security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_string()][..])
        );
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        assert_eq!(sc.run_as_non_root, None);
        let p = pod(&d);
        assert_eq!(p.enable_service_links, Some(false));
        assert_eq!(p.automount_service_account_token, Some(false));
    }

    #[test]
    fn replicas_image_and_owner() {
        let mut l = local(Engine::Vllm, "m");
        l.image = Some("registry.local/vllm:custom".to_string());
        let o = owner();
        let mut i = input("m", ModelType::Llm, &l, &o);
        i.replicas = 0;
        let d = build_deployment(&i).unwrap();
        assert_eq!(d.spec.as_ref().unwrap().replicas, Some(0));
        assert_eq!(
            container(&d).image.as_deref(),
            Some("registry.local/vllm:custom")
        );
        assert_eq!(d.metadata.owner_references, Some(vec![o.clone()]));
        let s = build_service(&i).unwrap();
        assert_eq!(s.metadata.owner_references, Some(vec![o]));
    }

    #[test]
    fn selectors_agree() {
        let l = local(Engine::Vllm, "m");
        let o = owner();
        let i = input("m", ModelType::Llm, &l, &o);
        let d = build_deployment(&i).unwrap();
        let s = build_service(&i).unwrap();
        let spec = d.spec.unwrap();
        let selector = spec.selector.match_labels.unwrap();
        assert_eq!(s.spec.unwrap().selector.unwrap(), selector);
        let pod_labels = spec.template.metadata.unwrap().labels.unwrap();
        for (k, v) in &selector {
            assert_eq!(pod_labels.get(k), Some(v));
        }
    }

    #[test]
    fn long_and_dotted_entry_names_give_valid_children() {
        let name = format!("org.{}", "x".repeat(80));
        let l = local(Engine::Vllm, "m");
        let o = owner();
        let i = input(&name, ModelType::Llm, &l, &o);
        let objects = build_inference(&i).unwrap();
        let svc = objects.service.metadata.name.unwrap();
        assert!(crate::workload::names::is_dns1035_label(&svc), "{svc}");
        assert!(
            objects
                .endpoint
                .starts_with(&format!("http://{svc}.ai.svc:"))
        );
        let sel = inference_selector(&name);
        assert!(crate::workload::names::is_label_value(
            &sel[LABEL_MODEL_ENTRY]
        ));
    }

    #[test]
    fn invalid_inputs_are_errors_not_panics() {
        let o = owner();
        let mut l = local(Engine::Vllm, "  ");
        let e = build_deployment(&input("m", ModelType::Llm, &l, &o)).unwrap_err();
        assert_eq!(e.reason(), "EmptyModel");
        l.model = "m".to_string();
        l.port = Some(70000);
        let e = build_service(&input("m", ModelType::Llm, &l, &o)).unwrap_err();
        assert_eq!(e.reason(), "InvalidPort");
        assert!(e.to_string().starts_with("failed to "));
        l.port = None;
        l.gpu = Some(GpuRequest {
            count: -1,
            resource_name: String::new(),
            product: None,
        });
        let e = build_deployment(&input("m", ModelType::Llm, &l, &o)).unwrap_err();
        assert_eq!(e.reason(), "InvalidGpuCount");
        l.gpu = None;
        let mut i = input("m", ModelType::Llm, &l, &o);
        i.replicas = -1;
        assert_eq!(
            build_deployment(&i).unwrap_err().reason(),
            "InvalidReplicas"
        );
    }

    #[test]
    fn endpoint_url_format() {
        assert_eq!(
            endpoint_url("coder", "team-a", 8000),
            "http://coder.team-a.svc:8000/v1"
        );
    }
}

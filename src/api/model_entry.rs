//! `ModelEntry`: one item of the model registry — a local model served in-cluster (vLLM, Ollama) or a
//! remote provider API.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, EnvVar, ResourceRequirements, Toleration};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::SecretKeyRef;

/// A model the operator knows about: where it runs (in-cluster or at a provider), what it is and what it
/// is good at. AgentStacks bind to entries by name or by type and capability tags.
// clippy reads kube's repeated `printcolumn(type_ = ..)` arguments as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "hypersync.io",
    version = "v1alpha1",
    kind = "ModelEntry",
    plural = "modelentries",
    singular = "modelentry",
    shortname = "me",
    category = "hypersync",
    namespaced,
    status = "ModelEntryStatus",
    doc = "A model of the registry: a local model served in-cluster by vLLM or Ollama, or a remote provider API.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(
        name = "Engine",
        type_ = "string",
        json_path = ".spec.source.local.engine"
    ),
    printcolumn(
        name = "Provider",
        type_ = "string",
        json_path = ".spec.source.remote.provider"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "The Ready condition: serving, or scaled to zero until an AgentNode needs it"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.replicas.ready",
        description = "Ready inference replicas"
    ),
    printcolumn(
        name = "Demand",
        type_ = "integer",
        json_path = ".status.demand",
        description = "Active AgentNodes bound to this model"
    ),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ModelEntrySpec {
    /// What kind of model this is.
    #[serde(rename = "type")]
    pub model_type: ModelType,
    /// Capability tags such as `coding` or `security`: lowercase DNS labels. Mirrored into labels
    /// `capability.hypersync.io/<tag>: "true"` so `kubectl get me -l capability.hypersync.io/coding` works.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 63)))]
    #[x_kube(
        merge_strategy = ListMerge::Set,
        validation = Rule::new("self.all(t, t.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))")
            .message("capabilities must be lowercase DNS labels: a-z, 0-9 and '-', starting and ending with a letter or digit")
    )]
    pub capabilities: Vec<String>,
    /// Descriptive facts about the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specs: Option<ModelSpecs>,
    /// Where the model runs: exactly one of `local` or `remote`.
    pub source: ModelSource,
}

/// The model family of an entry.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ModelType {
    #[serde(rename = "LLM")]
    Llm,
    Embedding,
    Reranker,
    Classifier,
    Vision,
    Audio,
}

/// Descriptive facts about a model, shown to users and used for selection.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpecs {
    /// Context window in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub context_window: Option<i64>,
    /// Parameter count, e.g. "33B".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub parameters: Option<String>,
    /// Quantization, e.g. "awq", "Q4_K_M", "fp16".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub quantization: Option<String>,
}

/// Where the model runs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.local) != has(self.remote)").message("exactly one of source.local or source.remote must be set"))]
pub struct ModelSource {
    /// Served in-cluster by an inference engine the operator provisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalSource>,
    /// A provider API reached over HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteSource>,
}

/// The inference engine serving a local model.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Engine {
    #[serde(rename = "VLLM")]
    Vllm,
    Ollama,
}

/// A model served in-cluster: the operator owns a Deployment, a Service and (optionally) a cache PVC.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalSource {
    /// Inference engine.
    pub engine: Engine,
    /// Model to serve: a Hugging Face id for vLLM (`deepseek-ai/deepseek-coder-33b-instruct`) or an
    /// Ollama tag (`llama3:8b`).
    #[schemars(length(min = 1, max = 512))]
    pub model: String,
    /// Engine image; defaults to the pinned image of the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub image: Option<String>,
    /// Extra engine arguments, appended after the operator's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Extra environment variables of the engine container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub env: Vec<EnvVar>,
    /// Name the model is served under (the `model` field of OpenAI requests); defaults to `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub served_model_name: Option<String>,
    /// Port the engine listens on; defaults to 8000 for vLLM and 11434 for Ollama.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// GPUs per replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuRequest>,
    /// CPU and memory of the engine container (GPUs go in `gpu`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::common::bounded_resources")]
    pub resources: Option<ResourceRequirements>,
    /// A PersistentVolumeClaim for model weights, reused across restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSpec>,
    /// Node labels the engine pods must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the engine pods (e.g. for tainted GPU nodes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity of the engine pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// PriorityClass of the engine pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// RuntimeClass of the engine pods (e.g. `nvidia`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_class_name: Option<String>,
    /// How many replicas run, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<Scaling>,
    /// Who may reach the engine besides the AgentNodes whose stacks bind this entry: extra
    /// NetworkPolicy peers (pods, namespaces, IP blocks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub allowed_peers: Vec<NetworkPolicyPeer>,
}

/// GPUs requested by each engine replica.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuRequest {
    /// GPUs per replica (0 to 64); vLLM's tensor parallelism follows it.
    #[schemars(range(min = 0, max = 64))]
    pub count: i32,
    /// Extended resource name of the GPU: a domain-prefixed name such as `nvidia.com/gpu` or
    /// `amd.com/gpu` (outside `kubernetes.io`).
    #[serde(default = "default_gpu_resource")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(
        "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$') && !self.contains('kubernetes.io/')"
    ).message("resourceName must be an extended resource name with a domain prefix, such as nvidia.com/gpu"))]
    pub resource_name: String,
    /// GPU product (the node label `nvidia.com/gpu.product`), e.g. `NVIDIA-A100-SXM4-80GB`: a label
    /// value, since it becomes a node selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$')")
        .message("product must be a label value: letters, digits, '-', '_' and '.', starting and ending with a letter or digit"))]
    pub product: Option<String>,
}

fn default_gpu_resource() -> String {
    "nvidia.com/gpu".to_string()
}

/// A PVC holding model weights so restarts do not download them again.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheSpec {
    /// Size of the claim, e.g. `100Gi`: a positive quantity.
    #[x_kube(validation = Rule::new("isQuantity(string(self)) && quantity(string(self)).sign() == 1")
        .message("size must be a positive quantity such as 100Gi"))]
    pub size: Quantity,
    /// StorageClass of the claim; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// When replicas run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum ScalingMode {
    /// `replicas` replicas run at all times.
    #[default]
    Always,
    /// 0 replicas until an AgentNode needs the model; back to 0 `idleSeconds` after the last one is gone.
    OnDemand,
}

/// Replica policy of a local model.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Scaling {
    /// Always or OnDemand.
    #[serde(default)]
    pub mode: ScalingMode,
    /// Replicas when running (0 to 1024).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1024))]
    pub replicas: i32,
    /// OnDemand: seconds at zero demand before scaling back to 0.
    #[serde(default = "default_idle_seconds")]
    #[schemars(range(min = 0, max = 604800))]
    pub idle_seconds: i64,
}

fn default_replicas() -> i32 {
    1
}

fn default_idle_seconds() -> i64 {
    300
}

/// A provider API.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Provider {
    OpenAI,
    Anthropic,
    AzureOpenAI,
    Google,
    Cohere,
    HuggingFace,
    Custom,
}

/// A model reached at a provider.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.endpoint) || !(self.provider in ['AzureOpenAI', 'Custom'])").message("endpoint is required for providers AzureOpenAI and Custom"))]
pub struct RemoteSource {
    /// The provider.
    pub provider: Provider,
    /// Base URL of the provider API (https only, with a host); defaults to the provider's public endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 9, max = 2048))]
    #[x_kube(validation = Rule::new(
        "self.startsWith('https://') && isURL(self) && url(self).getScheme() == 'https' && url(self).getHostname() != ''"
    ).message("endpoint must be an https:// URL with a host, e.g. https://api.example.com/v1"))]
    pub endpoint: Option<String>,
    /// Model name at the provider, e.g. `gpt-4o`.
    #[schemars(length(min = 1, max = 512))]
    pub model: String,
    /// Secret key holding the API key. The operator never reads it; agents get it as a `secretKeyRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
}

/// Lifecycle phase of a ModelEntry.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum ModelPhase {
    #[default]
    Pending,
    Provisioning,
    Ready,
    Idle,
    Degraded,
    Failed,
}

/// Desired and ready replicas of a local model.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaCounts {
    pub desired: i32,
    pub ready: i32,
}

/// Observed state of a ModelEntry.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelEntryStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ModelPhase>,
    /// OpenAI-compatible base URL: `http://<service>.<namespace>.svc:<port>/v1` or the remote URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The model name to send in requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicaCounts>,
    /// Active AgentNodes bound to this model through their stacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demand: Option<i32>,
    /// When demand last dropped to zero or the model was last bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_time: Option<Time>,
    /// Ready, Scheduled, ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

//! `AgentStack`: the recipe of an agent — a cognitive layer (main LLM), a memory layer (embeddings,
//! reranker, vector store, context), perception models and an action layer (tools).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{AgentRuntime, Autonomy, SecretKeyRef};
use super::model_entry::ModelType;

/// A recipe AgentNodes are spawned from: which models fill which layer, which tools the agent gets,
/// how it moves in the hyperbolic space, and the container it runs in.
// clippy reads kube's repeated `printcolumn(type_ = ..)` arguments as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "hypersync.io",
    version = "v1alpha1",
    kind = "AgentStack",
    plural = "agentstacks",
    singular = "agentstack",
    shortname = "ast",
    category = "hypersync",
    namespaced,
    status = "AgentStackStatus",
    doc = "A recipe composing a cognitive layer, a memory layer, perception models and tools into an agent.",
    printcolumn(
        name = "Alignment",
        type_ = "string",
        json_path = ".spec.objectiveAlignment"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "The Ready condition: every layer bound to an available model"
    ),
    printcolumn(
        name = "Cognitive",
        type_ = "string",
        json_path = ".status.bindings[?(@.layer==\"cognitive\")].modelEntry",
        description = "ModelEntry bound to the cognitive layer"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AgentStackSpec {
    /// Default autonomy of the stack's nodes (a node's objective may override it).
    #[serde(default)]
    pub objective_alignment: Autonomy,
    /// The models and tools of the agent.
    pub layers: Layers,
    /// How the stack's nodes move in the hyperbolic space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geometry: Option<StackGeometry>,
    /// The agent container template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<AgentRuntime>,
}

/// The layers of an agent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Layers {
    /// The main LLM (required).
    pub cognitive: ModelBinding,
    /// Embeddings, reranker, vector store and context policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryLayer>,
    /// Vision, audio or classifier models the agent perceives with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub perception: Vec<ModelBinding>,
    /// Tools the agent may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionLayer>,
}

/// Binds a layer to a ModelEntry: exactly one of `modelRef` or `selector`, with an optional fallback
/// chain tried in order when the primary is not Ready.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.modelRef) != has(self.selector)").message("exactly one of modelRef or selector must be set"))]
pub struct ModelBinding {
    /// A ModelEntry in the same namespace, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_ref: Option<ModelRef>,
    /// Any ModelEntry matching type, capabilities and labels (ranked: Ready first, local before remote,
    /// most matching capabilities, then name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<ModelSelector>,
    /// Tried in order when the primary is not Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub fallback: Vec<ModelTarget>,
}

/// One fallback of a binding: exactly one of `modelRef` or `selector`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.modelRef) != has(self.selector)").message("exactly one of modelRef or selector must be set"))]
pub struct ModelTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_ref: Option<ModelRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<ModelSelector>,
}

/// A ModelEntry by name, in the stack's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Chooses ModelEntries by type, capability tags and labels.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelSelector {
    /// Only entries of this type.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub model_type: Option<ModelType>,
    /// Entries must carry every one of these capability tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 63)))]
    #[x_kube(
        merge_strategy = ListMerge::Set,
        validation = Rule::new("self.all(t, t.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))")
            .message("capabilities must be lowercase DNS labels: a-z, 0-9 and '-', starting and ending with a letter or digit")
    )]
    pub capabilities: Vec<String>,
    /// Entries must carry these labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

/// Memory of an agent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemoryLayer {
    /// Embedding model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<ModelBinding>,
    /// Reranker model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reranker: Option<ModelBinding>,
    /// Vector store the agent reads and writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector_store: Option<VectorStore>,
    /// Context window policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<ContextPolicy>,
}

/// Vector database products.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum VectorStoreKind {
    Qdrant,
    Weaviate,
    Milvus,
    PGVector,
    Chroma,
    Redis,
    Custom,
}

/// A vector store endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VectorStore {
    pub kind: VectorStoreKind,
    /// URL of the store: absolute, with a scheme and a host (`http://qdrant.db.svc:6333`,
    /// `postgres://pg.db.svc:5432/vectors`, `redis://redis.db.svc:6379`).
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() != '' && url(self).getHostname() != ''")
        .message("url must be an absolute URL with a scheme and a host, e.g. http://qdrant.db.svc:6333"))]
    pub url: String,
    /// Credentials, handed to the agent as a `secretKeyRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
}

/// What happens when the context fills up.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ContextStrategy {
    #[default]
    Truncate,
    SlidingWindow,
    Summarize,
}

/// Context window policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContextPolicy {
    /// Token budget of the context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_tokens: Option<i64>,
    #[serde(default)]
    pub strategy: ContextStrategy,
}

/// The tools of an agent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionLayer {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub tools: Vec<Tool>,
}

/// Tool protocols.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ToolKind {
    #[serde(rename = "MCP")]
    Mcp,
    #[serde(rename = "HTTP")]
    Http,
}

/// A tool the agent may call.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    /// Tool name, unique in the stack (a DNS label).
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("tool name must be a lowercase DNS label"))]
    pub name: String,
    pub kind: ToolKind,
    /// Where the tool is served: an absolute http:// or https:// URL with a host.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''")
        .message("url must be an absolute http:// or https:// URL with a host, e.g. https://tools.example.com/mcp"))]
    pub url: String,
    /// Credentials, handed to the agent as a `secretKeyRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
}

/// Geometry settings of the stack's nodes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StackGeometry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub movement_policy: Option<MovementPolicy>,
}

/// How a node moves in the disk.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum MovementType {
    #[default]
    GradientDescent,
    RandomWalk,
    LevyFlight,
    Brownian,
    Orbital,
}

/// Movement of nodes in the hyperbolic space.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MovementPolicy {
    #[serde(default, rename = "type")]
    pub movement_type: MovementType,
    /// Sampling temperature of the agent's LLM, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1.0").message("temperature must be within [0, 1]"))]
    pub temperature: Option<f64>,
    /// Preference for unexplored regions, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1.0").message("explorationBias must be within [0, 1]"))]
    pub exploration_bias: Option<f64>,
    /// Hyperbolic step length per move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 4.0").message("stepSize must be within (0, 4]"))]
    pub step_size: Option<f64>,
}

/// Resolution phase of a stack.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum StackPhase {
    /// Every layer is bound to a Ready model.
    Resolved,
    /// A required layer has no model.
    #[default]
    Unresolved,
    /// Every layer has a model but some are not Ready or came from a fallback.
    Degraded,
}

/// The outcome of resolving one layer binding.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedBinding {
    /// `cognitive`, `embedding`, `reranker`, or `perception-<index>`.
    pub layer: String,
    /// The chosen ModelEntry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_entry: Option<String>,
    /// Its endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Its served model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_model: Option<String>,
    /// Why this entry (or why none).
    pub reason: String,
}

/// Observed state of an AgentStack.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentStackStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<StackPhase>,
    /// One entry per layer binding.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["layer".into()]))]
    pub bindings: Vec<ResolvedBinding>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

//! Pure builders of the operator's child objects (no client, no async): they take resolved inputs and
//! return k8s-openapi objects ready for server-side apply under [`labels::FIELD_MANAGER`].
//!
//! - [`inference`]: the Deployment, Service and cache PVC of a local ModelEntry (vLLM or Ollama).
//! - [`network`]: the NetworkPolicy admitting only the agents of bound stacks to an engine.
//! - [`agent`]: the Job (Ephemeral) or Deployment (Persistent) running an AgentNode, and
//!   [`agent::merge_runtime`].
//! - [`identity`]: the per-node ServiceAccount, Role and RoleBinding.
//! - [`labels`], [`names`], [`meta`]: keys, child names and shared metadata.

pub mod agent;
pub mod identity;
pub mod inference;
pub mod labels;
pub mod meta;
pub mod names;
pub mod network;

#[cfg(test)]
mod fixture;

pub use meta::{owner_reference, owner_reference_to};
pub use names::{child_name, label_value};

/// Why a builder could not produce its objects. Every variant is a problem of the inputs (normally
/// already rejected by the CRD schema), reported as a condition rather than a panic.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Neither the AgentNode's runtime nor its stack's names a container image. The message names
    /// the field (on both kinds it is `spec.runtime.image`) and the stack.
    #[error(
        "spec.runtime.image: neither the AgentNode nor its AgentStack {stack} sets the agent's container image"
    )]
    MissingImage { stack: String },
    /// The local source has an empty model.
    #[error("failed to build the inference engine: source.local.model is empty")]
    EmptyModel,
    /// The engine port is outside 1..=65535.
    #[error("failed to build the inference engine: port {port} is outside 1-65535")]
    InvalidPort { port: i32 },
    /// A negative GPU count.
    #[error("failed to build the inference engine: gpu.count {count} is negative")]
    InvalidGpuCount { count: i32 },
    /// A negative replica count from the caller.
    #[error("failed to build the inference engine: replicas {replicas} is negative")]
    InvalidReplicas { replicas: i32 },
    /// A value could not be encoded as JSON for the agent's environment.
    #[error("failed to encode {what} as JSON")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl BuildError {
    /// A bounded, CamelCase reason for conditions, Events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            BuildError::MissingImage { .. } => "MissingImage",
            BuildError::EmptyModel => "EmptyModel",
            BuildError::InvalidPort { .. } => "InvalidPort",
            BuildError::InvalidGpuCount { .. } => "InvalidGpuCount",
            BuildError::InvalidReplicas { .. } => "InvalidReplicas",
            BuildError::Json { .. } => "EncodingFailed",
        }
    }
}

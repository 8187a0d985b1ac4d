//! The custom resources of HyperSync Operator: group `hypersync.io`, version `v1alpha1`.
//!
//! The Rust types are the source of truth: the CRDs in `crds/`, the JSON Schemas in `schemas/` and the
//! chart's CRDs are generated from them (`make crds`).

pub mod agent_node;
pub mod agent_stack;
pub mod common;
pub mod conditions;
pub mod generate;
pub mod model_entry;

pub use agent_node::{AgentNode, AgentNodeSpec, AgentNodeStatus};
pub use agent_stack::{AgentStack, AgentStackSpec, AgentStackStatus};
pub use model_entry::{ModelEntry, ModelEntrySpec, ModelEntryStatus};

/// The API group of every HyperSync kind.
pub const GROUP: &str = "hypersync.io";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
/// The `kubectl get hypersync` category every kind belongs to.
pub const CATEGORY: &str = "hypersync";
/// Label prefix that mirrors a ModelEntry's capability tags: `capability.hypersync.io/<tag>: "true"`.
pub const CAPABILITY_LABEL_PREFIX: &str = "capability.hypersync.io/";

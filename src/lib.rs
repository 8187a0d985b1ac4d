//! HyperSync Operator: a Kubernetes operator for AI model and agent orchestration.

pub mod api;
pub mod geometry;
pub mod workload;

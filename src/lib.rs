//! HyperSync Operator: a Kubernetes operator for AI model and agent orchestration.

pub mod api;
pub mod controller;
pub mod error;
pub mod geometry;
pub mod metrics;

//! HyperSync Operator: a Kubernetes operator for AI model and agent orchestration.

pub mod api;
pub mod controller;
pub mod geometry;
pub mod error;
pub mod metrics;
pub mod config;
pub mod http;
pub mod leader;
pub mod telemetry;

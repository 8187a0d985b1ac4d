//! HyperSync Operator: a Kubernetes operator for AI model and agent orchestration.

pub mod api;
pub mod config;
pub mod controller;
pub mod error;
pub mod geometry;
pub mod http;
pub mod leader;
pub mod lifeline;
pub mod metrics;
pub mod operator;
pub mod otel;
pub mod plugin;
pub mod telemetry;
pub mod workload;

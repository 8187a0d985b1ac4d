//! kube-sim: a Kubernetes API simulator served over HTTP on loopback, for tests, benchmarks and the sandbox.

pub mod admission;
pub mod auth;
pub mod bench;
pub mod dataplane;
pub mod faults;
pub mod field_labels;
pub mod patch;
pub mod schema;
pub mod selector;
pub mod server;
pub mod store;

pub use server::{Sim, SimConfig, SimError, SimState, kubeconfig_yaml};

//! Controllers of the three kinds. Each reconcile is read -> decide (pure) -> apply -> status; the pure
//! decision modules live here and are unit-tested without an API server.

pub mod agent_node_decide;
pub mod model_entry_decide;
pub mod resolve;

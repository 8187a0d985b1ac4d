//! The part of the sandbox other drivers reuse (`hypersync-scale`): child processes that serve
//! `/readyz`, their peak memory and their shutdown.

pub mod process;

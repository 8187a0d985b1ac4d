//! The part of the sandbox other drivers and tests reuse: child processes that serve `/readyz`, their
//! peak memory and their shutdown (`hypersync-scale`), and the "try it yourself" block
//! (`tests/follow.rs` runs it).

pub mod process;
pub mod try_it;

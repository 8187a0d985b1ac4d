//! `kubectl-hypersync`, the kubectl plugin: `disk` (the Poincaré disk as SVG), `why NODE` (why a
//! node is not Running), `tree [NODE]` (the lineage) and `models` (the registry). The renderers are
//! pure functions of the objects read; [`cli`] reads them from the API server.

pub mod cli;
pub mod disk;
pub mod models;
pub mod scene;
pub mod table;
pub mod tree;
pub mod why;

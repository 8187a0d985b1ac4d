//! (being built; see tests/sim/ARCHITECTURE.md)

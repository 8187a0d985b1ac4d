//! The custom resources of HyperSync Operator, group `hypersync.io`, version `v1alpha1`.

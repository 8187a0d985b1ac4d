//! Poincare-disk geometry and deterministic semantic placement: pure, no Kubernetes types.

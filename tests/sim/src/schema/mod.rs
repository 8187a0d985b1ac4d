//! CRD structural schemas (validation, defaulting, pruning, CEL rules, apiserver-shaped errors) and
//! printer columns / `meta.k8s.io/v1` Table building for built-in and custom resources.

mod cel;
pub mod errors;
pub mod formats;
pub mod structural;

pub use errors::{
    BadValue, FieldError, FieldErrorKind, invalid_message, invalid_status, status_causes,
};
pub use structural::StructuralSchema;

#[cfg(test)]
mod tests;

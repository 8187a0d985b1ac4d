//! CRD structural schemas (validation, defaulting, pruning, CEL rules, apiserver-shaped errors) and
//! printer columns / `meta.k8s.io/v1` Table building for built-in and custom resources.
//!
//! Order the apiserver applies to a custom object on create/update (what the server should do):
//! 1. `StructuralSchema::prune_reporting` (unknown fields: 400 `strict_decoding_message` under
//!    `fieldValidation=Strict`, `unknown_field_warning` headers under `Warn`, silently dropped otherwise);
//! 2. `StructuralSchema::apply_defaults`;
//! 3. `StructuralSchema::validate(obj, old)` -> `invalid_status(kind, group, name, &errors)` (422).
//!
//! CRDs themselves: `crd_schema_errors` at registration; `StructuralSchema::from_crd` per served
//! version. Tables: `table_version_from_accept`, `columns_for`, `IncludeObject::from_param`, `to_table`.

mod cel;
mod cel_env;
mod cel_urls;
pub mod crd;
pub mod errors;
pub mod formats;
pub mod jsonpath;
pub mod structural;
pub mod table;

pub use crd::crd_schema_errors;
pub use errors::{
    BadValue, FieldError, FieldErrorKind, invalid_message, invalid_status, status_causes,
    strict_decoding_message, unknown_field_warning,
};
pub use jsonpath::JsonPath;
pub use structural::StructuralSchema;
pub use table::{
    IncludeObject, PrinterColumn, builtin_printer_columns, columns_for, default_printer_columns,
    human_duration, partial_object_metadata_list, printer_columns_from_crd_version,
    table_version_from_accept, to_table,
};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_table;

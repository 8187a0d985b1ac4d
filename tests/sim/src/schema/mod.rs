//! CRD structural schemas (validation, defaulting, pruning, CEL rules, apiserver-shaped errors) and
//! printer columns / `meta.k8s.io/v1` Table building for built-in and custom resources.

mod cel;
pub mod errors;
pub mod formats;
pub mod jsonpath;
pub mod structural;
pub mod table;

pub use errors::{
    BadValue, FieldError, FieldErrorKind, invalid_message, invalid_status, status_causes,
    strict_decoding_message, unknown_field_warning,
};
pub use jsonpath::JsonPath;
pub use structural::StructuralSchema;
pub use table::{
    IncludeObject, PrinterColumn, builtin_printer_columns, default_printer_columns, human_duration,
    printer_columns_from_crd_version, table_version_from_accept, to_table,
};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_table;

//! Patching: JSON merge patch, JSON patch, strategic merge patch, server-side apply and
//! Update-operation field ownership (`metadata.managedFields`). Pure functions over wire JSON.

mod apply;
mod conflict;
mod content;
mod fieldset;
mod hints;
mod json_patch;
mod managed;
mod merge;
mod strategic;
mod walk;

pub use apply::{ApplyResult, server_side_apply, track_update, validate_apply};
pub use conflict::{ApplyConflict, ConflictCause};
pub use content::{PatchType, parse_apply_body, unsupported_patch_message};
pub use fieldset::{FieldSet, PathElement, path_string};
pub use hints::{ListType, TypeHints};
pub use json_patch::json_patch;
pub use merge::merge_patch;
pub use strategic::strategic_merge_patch;

/// A patch that could not be decoded or applied. `code()` is the HTTP status the real
/// API server answers with for that failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch body itself is malformed (real server: 400 BadRequest).
    #[error("{0}")]
    BadRequest(String),
    /// The patch is well-formed but cannot be applied to this object (real server: 422).
    #[error("{0}")]
    Unprocessable(String),
}

impl PatchError {
    /// HTTP status code the real API server uses for this error.
    pub fn code(&self) -> u16 {
        match self {
            PatchError::BadRequest(_) => 400,
            PatchError::Unprocessable(_) => 422,
        }
    }

    /// The message, as the real server puts it in `Status.message`.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

#[cfg(test)]
mod apply_tests;

//! Server-side apply conflicts: the owning managers and field paths, and the 409 message and
//! `Status.details.causes` the real API server sends.

use serde_json::{Value, json};

/// One conflicting field, with the owning manager's entry identity (for `Status.details.causes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictCause {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub subresource: Option<String>,
    /// Path like `.spec.replicas` or `.spec.template.spec.containers[name="x"].image`.
    pub field: String,
}

impl ConflictCause {
    /// The manager as the API server prints it: `"kubectl"`, or `"kubectl-edit" using apps/v1`
    /// for Update entries, with ` with subresource "status"` when relevant.
    pub fn printed_manager(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s = format!("{s} with subresource {sub:?}");
        }
        if self.operation == "Update" {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
}

/// Apply refused because other managers own fields the apply would change (HTTP 409).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct ApplyConflict {
    /// (manager name, field path) pairs, sorted.
    pub conflicts: Vec<(String, String)>,
    pub causes: Vec<ConflictCause>,
}

impl ApplyConflict {
    /// The `Status.message` the real server sends, e.g.
    /// `Apply failed with 1 conflict: conflict with "kubectl" using apps/v1: .spec.replicas`.
    pub fn message(&self) -> String {
        if let [only] = self.causes.as_slice() {
            return format!(
                "Apply failed with 1 conflict: conflict with {}: {}",
                only.printed_manager(),
                only.field
            );
        }
        let mut managers: Vec<String> = self.causes.iter().map(|c| c.printed_manager()).collect();
        managers.sort();
        managers.dedup();
        let mut lines = Vec::new();
        for m in &managers {
            lines.push(format!("conflicts with {m}:"));
            for c in self.causes.iter().filter(|c| &c.printed_manager() == m) {
                lines.push(format!("- {}", c.field));
            }
        }
        format!(
            "Apply failed with {} conflicts: {}",
            self.causes.len(),
            lines.join("\n")
        )
    }

    /// `Status.details.causes` entries (`reason: FieldManagerConflict`).
    pub fn status_causes(&self) -> Value {
        Value::Array(
            self.causes
                .iter()
                .map(|c| {
                    json!({
                        "reason": "FieldManagerConflict",
                        "message": format!("conflict with {}", c.printed_manager()),
                        "field": c.field,
                    })
                })
                .collect(),
        )
    }
}

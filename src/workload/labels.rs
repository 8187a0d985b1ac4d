//! The label keys, annotation keys, finalizer and field manager of the operator, in one place.

use std::collections::BTreeMap;

/// The server-side-apply field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "hypersync-operator";

/// The finalizer on AgentNodes: the operator records the outcome (a `Dissolved` Event) before the node
/// goes.
pub const FINALIZER: &str = "hypersync.io/dissolve";

/// `app.kubernetes.io/managed-by`: always [`MANAGED_BY_VALUE`] on operator-owned objects.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY_VALUE: &str = "hypersync-operator";
/// `app.kubernetes.io/name`: the application (`vllm`, `ollama`, `hypersync-agent`).
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`: the owning custom resource's name (as a label value).
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/component`: [`COMPONENT_INFERENCE`] or [`COMPONENT_AGENT`].
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/part-of`: always [`PART_OF_VALUE`].
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
/// The value of [`LABEL_PART_OF`].
pub const PART_OF_VALUE: &str = "hypersync";
/// Component of inference-engine objects.
pub const COMPONENT_INFERENCE: &str = "inference";
/// Component of agent objects.
pub const COMPONENT_AGENT: &str = "agent";
/// `app.kubernetes.io/name` of agent pods.
pub const AGENT_APP_NAME: &str = "hypersync-agent";

/// The ModelEntry an inference object belongs to.
pub const LABEL_MODEL_ENTRY: &str = "hypersync.io/model-entry";
/// The AgentNode an agent object belongs to.
pub const LABEL_AGENT_NODE: &str = "hypersync.io/agent-node";
/// The AgentStack an agent pod was spawned from; inference NetworkPolicies admit pods by this label.
pub const LABEL_STACK: &str = "hypersync.io/stack";
/// Annotation on an agent's Job or Deployment: the ModelEntries it was started with (comma-separated),
/// so the models a running agent uses are read from the operator's own child, never from a status
/// field the agent can write.
pub const ANNOTATION_MODELS: &str = "hypersync.io/models";
/// Annotation on a child the operator re-applies (a Persistent agent's Deployment): the digest of
/// its desired state, so an unchanged child is not applied again, even after an operator restart.
pub const ANNOTATION_SPEC_DIGEST: &str = "hypersync.io/spec-digest";

/// Lineage label of a spawned AgentNode: the name of its parent (`spec.parentRef.name`).
pub const LABEL_PARENT: &str = "hypersync.io/parent";
/// Lineage label: the name of the lineage's root (the first ancestor without a parent).
pub const LABEL_ROOT: &str = "hypersync.io/root";
/// Lineage label: generations below the root (the root is 0).
pub const LABEL_DEPTH: &str = "hypersync.io/depth";
/// `"true"` on an AgentNode with `spec.spawn`: the spawn admission policy reads such nodes as its
/// parameters (a spawner's own limits).
pub const LABEL_SPAWNER: &str = "hypersync.io/spawner";

/// Placement annotation: Euclidean radius in the Poincare disk.
pub const ANNOTATION_R: &str = "hypersync.io/r";
/// Placement annotation: angle in degrees.
pub const ANNOTATION_THETA_DEGREES: &str = "hypersync.io/theta-degrees";
/// Placement annotation: hyperbolic distance from the origin, 2 artanh r.
pub const ANNOTATION_HYPERBOLIC_RADIUS: &str = "hypersync.io/hyperbolic-radius";
/// Placement annotation: floor(hyperbolic radius / ln 2).
pub const ANNOTATION_TIER: &str = "hypersync.io/tier";

/// The labels every operator-owned object carries: managed-by and part-of.
pub fn base_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string()),
        (LABEL_PART_OF.to_string(), PART_OF_VALUE.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_labels_name_the_operator() {
        let labels = base_labels();
        assert_eq!(
            labels.get(LABEL_MANAGED_BY).map(String::as_str),
            Some("hypersync-operator")
        );
        assert_eq!(
            labels.get(LABEL_PART_OF).map(String::as_str),
            Some("hypersync")
        );
        assert_eq!(labels.len(), 2);
    }

    #[test]
    fn keys_are_qualified_names() {
        for key in [
            LABEL_MANAGED_BY,
            LABEL_NAME,
            LABEL_INSTANCE,
            LABEL_COMPONENT,
            LABEL_PART_OF,
            LABEL_MODEL_ENTRY,
            LABEL_AGENT_NODE,
            LABEL_STACK,
            LABEL_PARENT,
            LABEL_ROOT,
            LABEL_DEPTH,
            LABEL_SPAWNER,
            ANNOTATION_R,
            ANNOTATION_THETA_DEGREES,
            ANNOTATION_HYPERBOLIC_RADIUS,
            ANNOTATION_TIER,
            FINALIZER,
        ] {
            let (prefix, name) = key.split_once('/').expect("prefixed key");
            assert!(
                prefix.contains('.'),
                "{key}: prefix must be a DNS subdomain"
            );
            assert!(!name.is_empty() && name.len() <= 63, "{key}: name part");
            assert!(
                super::super::names::is_label_value(name),
                "{key}: name part must be a valid label name"
            );
        }
    }
}

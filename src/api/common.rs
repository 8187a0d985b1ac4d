//! Small types shared by more than one kind: references, the agent runtime template, autonomy.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A key of a Secret in the object's namespace. The operator never reads the value: it is handed to
/// pods as a `secretKeyRef`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// How much freedom an agent has: Strict agents follow the objective literally and sit near their
/// anchor; Loose, Creative and Adversarial agents explore, run hotter and are placed further out.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum Autonomy {
    #[default]
    Strict,
    Loose,
    Creative,
    Adversarial,
}

/// The agent container template. On an AgentStack it is the default for every node; on an AgentNode
/// each field set overrides the stack's.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentRuntime {
    /// Container image of the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub image: Option<String>,
    /// Entrypoint override.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments to the entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Extra environment variables. The operator's own variables (HYPERSYNC_*) take precedence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub env: Vec<EnvVar>,
    /// CPU and memory requests and limits of the agent container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "bounded_resources")]
    pub resources: Option<ResourceRequirements>,
    /// Extra annotations of the agent's pods (e.g. for a service mesh or a metrics scraper).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
    /// Extra labels of the agent's pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
    /// ServiceAccount the agent runs as; by default the operator creates one per AgentNode whose Role
    /// may only patch that node's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,
}

/// Resource names a `limits` or `requests` map may hold. It bounds the CEL cost of the quantity rules:
/// an int-or-string value counts as up to 3 MiB for the apiserver's cost estimator, so each check
/// costs ~0.3M and a rule over an unbounded map would be refused when the CRD is created.
pub const MAX_RESOURCE_NAMES: u64 = 8;

/// The rule of a `limits` or `requests` map: every value parses as a Kubernetes quantity and is not
/// negative (the Deployment or Job apply would fail inside the operator otherwise). Values are
/// int-or-string, hence `string(...)` before `isQuantity`.
const QUANTITY_MAP_RULE: &str =
    "self.all(k, isQuantity(string(self[k])) && !string(self[k]).startsWith('-'))";

/// The schema of a container's `resources` (`ResourceRequirements`), with `limits` and `requests`
/// bounded to [`MAX_RESOURCE_NAMES`] names and each value checked as a non-negative quantity, so
/// `cpu: lots` is refused by the API server naming the field instead of failing later in the
/// operator's Deployment or Job apply.
pub fn bounded_resources(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = ResourceRequirements::json_schema(generator);
    schema.insert("nullable".into(), Value::Bool(true));
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        for field in ["limits", "requests"] {
            if let Some(Value::Object(map)) = properties.get_mut(field) {
                map.insert("maxProperties".into(), json!(MAX_RESOURCE_NAMES));
                map.insert(
                    "x-kubernetes-validations".into(),
                    json!([{
                        "rule": QUANTITY_MAP_RULE,
                        "message": format!(
                            "resources.{field} must map resource names to non-negative quantities such as 500m, 2 or 1Gi"
                        )
                    }]),
                );
            }
        }
    }
    schema
}

//! `AgentNode`: an agent spawned from an AgentStack, placed in the Poincare disk by semantic relevance,
//! running towards an objective; ephemeral nodes dissolve once it is met.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{AgentRuntime, Autonomy};

/// An agent: spawned from a stack, placed in the hyperbolic space, given a task and an objective.
// clippy reads kube's repeated `printcolumn(type_ = ..)` arguments as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "hypersync.io",
    version = "v1alpha1",
    kind = "AgentNode",
    plural = "agentnodes",
    singular = "agentnode",
    shortname = "an",
    category = "hypersync",
    namespaced,
    status = "AgentNodeStatus",
    doc = "An agent spawned from an AgentStack, placed in a Poincare disk by semantic relevance and given an objective.",
    printcolumn(name = "Stack", type_ = "string", json_path = ".spec.stackRef.name"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "The Ready condition: the agent runs, or met its objective"
    ),
    printcolumn(
        name = "R",
        type_ = "string",
        json_path = ".status.placement.display.r",
        description = "Euclidean radius in the disk, rounded (exact: status.placement.r)"
    ),
    printcolumn(
        name = "Theta",
        type_ = "string",
        json_path = ".status.placement.display.thetaDegrees",
        description = "Angle in degrees, rounded (exact: status.placement.thetaDegrees)"
    ),
    printcolumn(
        name = "Tier",
        type_ = "integer",
        json_path = ".status.placement.tier",
        description = "floor(hyperbolic radius / ln 2)"
    ),
    printcolumn(
        name = "Parent",
        type_ = "string",
        json_path = ".spec.parentRef.name",
        priority = 1
    ),
    printcolumn(
        name = "Objective",
        type_ = "boolean",
        json_path = ".status.objective.met",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(oldSelf.placement) || (has(self.placement) && self.placement == oldSelf.placement)")
        .message("placement is immutable once set"),
    validation = Rule::new("!has(oldSelf.lifecycle) || !has(oldSelf.lifecycle.mode) || (has(self.lifecycle) && has(self.lifecycle.mode) && self.lifecycle.mode == oldSelf.lifecycle.mode)")
        .message("lifecycle.mode is immutable"),
    validation = Rule::new("has(self.parentRef) == has(oldSelf.parentRef) && (!has(self.parentRef) || self.parentRef.name == oldSelf.parentRef.name)")
        .message("parentRef is immutable")
)]
pub struct AgentNodeSpec {
    /// The AgentStack this node is spawned from, in the same namespace (immutable).
    #[x_kube(validation = Rule::new("self == oldSelf").message("stackRef is immutable"))]
    pub stack_ref: StackRef,
    /// What the agent works on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
    /// Where the node sits in the disk (immutable once set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementSpec>,
    /// When the node's work is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<Objective>,
    /// Whether the node dissolves after its objective.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    /// Overrides of the stack's runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<AgentRuntime>,
    /// The node that spawned this one, in the same namespace (immutable). The operator labels the
    /// node with its lineage and makes it owned by its parent (deleting a parent removes its subtree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_ref: Option<ParentRef>,
    /// This node's agent may spawn children (and, with `createStacks`, create AgentStacks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spawn: Option<Spawn>,
    /// Limits the operator enforces: over budget, the workload is stopped and the node fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
}

/// The parent of a spawned node, by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// Name of the parent AgentNode, in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Default of `spawn.maxChildren` and `spawn.maxDepth`: the least a spawner may do.
fn one() -> i32 {
    1
}

/// What a node's agent may spawn.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Spawn {
    /// Children alive at once (1..100).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 100))]
    pub max_children: i32,
    /// Generations below this node (1..5); a child's own `spawn.maxDepth` is at most this minus 1.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 5))]
    pub max_depth: i32,
    /// The AgentStacks children may use; empty means any stack of the namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 253)))]
    #[x_kube(
        merge_strategy = ListMerge::Set,
        validation = Rule::new("self.all(s, s.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'))")
            .message("stacks must be AgentStack names: lowercase DNS subdomains")
    )]
    pub stacks: Vec<String>,
    /// Whether the agent may also create AgentStacks.
    #[serde(default)]
    pub create_stacks: bool,
}

/// Limits of a node, enforced by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// Seconds from the start of the node's workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub wall_clock_seconds: Option<i64>,
    /// Tokens, as reported by the agent in `status.usage.tokens`, children included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tokens: Option<i64>,
}

/// An AgentStack by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StackRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The task of an agent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// What to do, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16384))]
    pub description: Option<String>,
    /// Semantic tags, lowercase DNS labels: they choose the node's angle in the disk (shared tags,
    /// nearby angles).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 63)))]
    #[x_kube(
        merge_strategy = ListMerge::Set,
        validation = Rule::new("self.all(t, t.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))")
            .message("tags must be lowercase DNS labels: a-z, 0-9 and '-', starting and ending with a letter or digit")
    )]
    pub tags: Vec<String>,
    /// Free-form inputs handed to the agent as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub inputs: Option<serde_json::Value>,
}

fn free_form(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "Free-form inputs handed to the agent as JSON.",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// How the node is placed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum PlacementMode {
    /// From the task's tags, around an anchor.
    #[default]
    Semantic,
    /// At the given coordinates.
    Explicit,
}

/// A point of the Poincare disk in polar form.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Coordinates {
    /// Euclidean radius in the disk, 0 <= r < 1.
    #[x_kube(validation = Rule::new("self >= 0.0 && self < 1.0").message("r must satisfy 0 <= r < 1"))]
    pub r: f64,
    /// Angle in degrees, 0 <= thetaDegrees < 360.
    #[x_kube(validation = Rule::new("self >= 0.0 && self < 360.0").message("thetaDegrees must satisfy 0 <= thetaDegrees < 360"))]
    pub theta_degrees: f64,
}

/// An anchor to place near: another AgentNode or a point.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.agentNode) != has(self.point)").message("exactly one of near.agentNode or near.point must be set"))]
pub struct Near {
    /// An AgentNode in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub agent_node: Option<String>,
    /// A point of the disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point: Option<Coordinates>,
}

/// Placement request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode != 'Explicit' || has(self.coordinates)").message("Explicit placement requires placement.coordinates"))]
pub struct PlacementSpec {
    #[serde(default)]
    pub mode: PlacementMode,
    /// Explicit coordinates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinates: Option<Coordinates>,
    /// Semantic placement around this anchor instead of the origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub near: Option<Near>,
}

/// How an observed metric is compared with its target.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Comparator {
    GreaterOrEqual,
    LessOrEqual,
    Equal,
}

/// A metric the agent reports in `status.objective.observed`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    /// Name of the metric, e.g. `findings`.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    pub comparator: Comparator,
    pub target: f64,
}

/// The objective (MetricPolicy) of a node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Objective {
    /// Autonomy of the agent; defaults to the stack's objectiveAlignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autonomy: Option<Autonomy>,
    /// Met when the observed value satisfies comparator and target; absent means "the task completes".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<Metric>,
    /// Give up after this many seconds of running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub deadline_seconds: Option<i64>,
    /// Retries of the agent before the node fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_retries: Option<i32>,
}

/// Whether a node is dissolved after its objective.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum LifecycleMode {
    /// Runs as a Job; the node is deleted after its objective is met (or it fails) and the TTL passes.
    #[default]
    Ephemeral,
    /// Runs as a Deployment; never deleted by the operator.
    Persistent,
}

/// Lifecycle of a node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    #[serde(default)]
    pub mode: LifecycleMode,
    /// Ephemeral: seconds to keep the node after its objective is met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_objective_met: Option<i64>,
    /// Ephemeral: seconds to keep the node after it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_failure: Option<i64>,
}

/// Lifecycle phase of a node.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum NodePhase {
    #[default]
    Pending,
    Placed,
    Provisioning,
    Running,
    Succeeded,
    Failed,
    Dissolving,
}

/// Where the node was placed; immutable once written.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementStatus {
    pub r: f64,
    pub theta_degrees: f64,
    pub x: f64,
    pub y: f64,
    /// 2 artanh(r).
    pub hyperbolic_radius: f64,
    /// floor(hyperbolic radius / ln 2).
    pub tier: i64,
    /// The anchor the node was placed around, as its Cartesian coordinates `x,y` (12 decimals;
    /// the origin is `0.000000000000,0.000000000000`). Explicit placements have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<String>,
    /// Placement algorithm and version.
    pub algorithm: String,
    /// SHA-256 of the placement inputs.
    pub inputs_digest: String,
    /// `r` and `thetaDegrees` rounded for humans (the printer columns); the exact values are above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<PlacementDisplay>,
}

/// A placement rounded for display: `r` to 4 decimals (at most 0.9999), `thetaDegrees` to 1 (in
/// [0, 360)).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementDisplay {
    pub r: String,
    pub theta_degrees: String,
}

impl PlacementDisplay {
    pub fn of(r: f64, theta_degrees: f64) -> Self {
        let theta = format!("{theta_degrees:.1}");
        let r = format!("{r:.4}");
        PlacementDisplay {
            // r < 1 always: a point near the boundary reads 0.9999, never 1.0000.
            r: if r == "1.0000" { "0.9999".into() } else { r },
            // 359.96 rounds to 360.0, which is 0.0 on the circle.
            theta_degrees: if theta == "360.0" {
                "0.0".into()
            } else {
                theta
            },
        }
    }
}

/// A nearby node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Neighbor {
    pub name: String,
    /// Hyperbolic distance.
    pub distance: f64,
}

/// A model endpoint the node uses.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelInUse {
    pub layer: String,
    pub model_entry: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_model: Option<String>,
}

/// Progress towards the objective. The agent may patch `observed` (its Role allows patching only this
/// node's status).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectiveStatus {
    /// Latest value of the metric, reported by the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<f64>,
    #[serde(default)]
    pub met: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub met_at: Option<Time>,
}

/// What a node has used. `tokens` is the agent's report (it may patch only this field and
/// `objective.observed` of its own status); `wallClockSeconds` is written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub wall_clock_seconds: Option<i64>,
}

/// The children of a spawner.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChildrenStatus {
    /// Admitted children that have not finished.
    pub live: i32,
    /// Children that exist, whatever their state (admitted, finished, refused).
    pub total: i32,
}

/// The workload running the agent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    /// `Job` or `Deployment`.
    pub kind: String,
    pub name: String,
}

/// Observed state of an AgentNode.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentNodeStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<NodePhase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementStatus>,
    /// The nearest nodes by hyperbolic distance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub neighbors: Vec<Neighbor>,
    /// Model endpoints in use, per layer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["layer".into()]))]
    pub models: Vec<ModelInUse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<ObjectiveStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Tokens reported by the agent, wall clock counted by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Counts of the children of a node with `spec.spawn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub children: Option<ChildrenStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::PlacementDisplay;

    #[test]
    fn display_rounds_r_to_4_and_theta_to_1_decimal() {
        let d = PlacementDisplay::of(0.586239702897837, 123.456789);
        assert_eq!(
            (d.r.as_str(), d.theta_degrees.as_str()),
            ("0.5862", "123.5")
        );
        let d = PlacementDisplay::of(0.99999, 359.96);
        assert_eq!((d.r.as_str(), d.theta_degrees.as_str()), ("0.9999", "0.0"));
    }
}

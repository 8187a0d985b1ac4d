//! What the plugin reads off an AgentNode: its placement as a point of the disk, its anchor, its
//! parent and its phase — the shared input of `disk` and `tree`.

use std::collections::BTreeMap;

use crate::api::AgentNode;
use crate::api::agent_node::NodePhase;
use crate::geometry::{AnchorKey, DiskPoint};

/// The label naming a node's parent (the coordinator that spawned it), in the same namespace.
pub use crate::workload::labels::LABEL_PARENT;

/// One AgentNode as the plugin draws and lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneNode {
    pub namespace: String,
    pub name: String,
    pub phase: Option<NodePhase>,
    /// Where it was placed; `None` until the operator has placed it.
    pub point: Option<DiskPoint>,
    pub tier: Option<u32>,
    /// The anchor it was placed around (`status.placement.anchor`); explicit placements have none.
    pub anchor: Option<AnchorKey>,
    /// The `hypersync.io/parent` label.
    pub parent: Option<String>,
    /// RFC 3339 creation time, if the server set one.
    pub created: Option<k8s_openapi::jiff::Timestamp>,
}

impl SceneNode {
    /// Reads an AgentNode. An unparsable anchor or point (never written by the operator) is
    /// treated as absent rather than failing the whole picture.
    pub fn from_agent_node(node: &AgentNode) -> SceneNode {
        let placement = node.status.as_ref().and_then(|s| s.placement.as_ref());
        let point = placement.and_then(|p| DiskPoint::new(p.x, p.y).ok());
        SceneNode {
            namespace: node.metadata.namespace.clone().unwrap_or_default(),
            name: node.metadata.name.clone().unwrap_or_default(),
            phase: node.status.as_ref().and_then(|s| s.phase),
            point,
            tier: point.map(DiskPoint::tier),
            anchor: placement
                .and_then(|p| p.anchor.as_deref())
                .and_then(|a| a.parse::<AnchorKey>().ok()),
            parent: node
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_PARENT))
                .filter(|p| !p.is_empty())
                .cloned(),
            created: node.metadata.creation_timestamp.as_ref().map(|t| t.0),
        }
    }

    /// `namespace/name`, the key nodes are looked up by.
    pub fn key(&self) -> (String, String) {
        (self.namespace.clone(), self.name.clone())
    }

    /// The key of its parent, if it names one (parents live in the same namespace).
    pub fn parent_key(&self) -> Option<(String, String)> {
        self.parent
            .as_ref()
            .map(|p| (self.namespace.clone(), p.clone()))
    }

    /// The phase as kubectl shows it (`-` before the operator wrote one).
    pub fn phase_str(&self) -> &'static str {
        phase_name(self.phase)
    }
}

/// The name of a phase, `-` for none.
pub fn phase_name(phase: Option<NodePhase>) -> &'static str {
    match phase {
        None => "-",
        Some(NodePhase::Pending) => "Pending",
        Some(NodePhase::Placed) => "Placed",
        Some(NodePhase::Provisioning) => "Provisioning",
        Some(NodePhase::Running) => "Running",
        Some(NodePhase::Succeeded) => "Succeeded",
        Some(NodePhase::Failed) => "Failed",
        Some(NodePhase::Dissolving) => "Dissolving",
    }
}

/// Every phase in lifecycle order, then "no phase yet".
pub const PHASES: [Option<NodePhase>; 8] = [
    Some(NodePhase::Pending),
    Some(NodePhase::Placed),
    Some(NodePhase::Provisioning),
    Some(NodePhase::Running),
    Some(NodePhase::Succeeded),
    Some(NodePhase::Failed),
    Some(NodePhase::Dissolving),
    None,
];

/// Nodes sorted by namespace and name (the order everything is drawn and listed in, so the output
/// does not depend on the order the API server returned them).
pub fn scene(nodes: &[AgentNode]) -> Vec<SceneNode> {
    let mut out: Vec<SceneNode> = nodes.iter().map(SceneNode::from_agent_node).collect();
    out.sort_by_key(SceneNode::key);
    out
}

/// The node whose placed point is the anchor `key` (a node placed `near.agentNode` has that
/// node's coordinates as its anchor), by namespace.
pub fn nodes_at_anchors(nodes: &[SceneNode]) -> BTreeMap<(String, AnchorKey), usize> {
    let mut out = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        if let Some(p) = n.point {
            out.entry((n.namespace.clone(), AnchorKey::of(p)))
                .or_insert(i);
        }
    }
    out
}

/// How an anchor is shown: `origin`, `agentnode/<name>` when a node sits there, or the point in
/// polar form.
pub fn describe_anchor(
    namespace: &str,
    key: AnchorKey,
    at_anchor: &BTreeMap<(String, AnchorKey), usize>,
    nodes: &[SceneNode],
) -> String {
    if key == AnchorKey::ORIGIN {
        return "origin".to_string();
    }
    if let Some(&i) = at_anchor.get(&(namespace.to_string(), key)) {
        return format!("near agentnode/{}", nodes[i].name);
    }
    match key.to_point() {
        Ok(p) => format!("point r {:.3}, θ {:.1}°", p.r(), p.theta_degrees()),
        Err(_) => format!("point {key}"),
    }
}

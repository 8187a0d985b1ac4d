//! `kubectl hypersync tree [NODE]`: the lineage of AgentNodes — children under their parent
//! (`hypersync.io/parent`), top-level nodes grouped by the anchor they were placed around — with
//! phase, tier and age. Pure: [`render`] reads a scene and the current time.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::Timestamp;

use crate::geometry::AnchorKey;

use super::scene::{SceneNode, describe_anchor, nodes_at_anchors};
use super::table::{human_age, table};

type Key = (String, String);

/// Why `tree NODE` printed nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TreeError {
    #[error("agentnode {0} not found in namespace {1}")]
    NotFound(String, String),
}

/// The tree of `nodes` (sorted by namespace and name), or only the lineage of `focus` (its
/// ancestors and its descendants). `with_namespace` adds a NAMESPACE column (`-A`).
pub fn render(
    nodes: &[SceneNode],
    focus: Option<(&str, &str)>,
    now: Timestamp,
    with_namespace: bool,
) -> Result<String, TreeError> {
    let index: BTreeMap<Key, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.key(), i))
        .collect();
    let mut children: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut has_parent = vec![false; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        if let Some(&p) = n.parent_key().and_then(|k| index.get(&k))
            && p != i
        {
            children.entry(p).or_default().push(i);
            has_parent[i] = true;
        }
    }
    let at_anchor = nodes_at_anchors(nodes);
    let group_of = |n: &SceneNode| -> (u8, String, String) {
        match (n.point, n.anchor) {
            (None, _) => (3, n.namespace.clone(), "not placed yet".to_string()),
            (Some(_), None) => (2, n.namespace.clone(), "explicit placement".to_string()),
            (Some(_), Some(k)) => (
                u8::from(k != AnchorKey::ORIGIN),
                n.namespace.clone(),
                describe_anchor(&n.namespace, k, &at_anchor, nodes),
            ),
        }
    };

    let mut rows = vec![header(with_namespace)];
    let mut printed = BTreeSet::new();
    match focus {
        Some((ns, name)) => {
            let Some(&target) = index.get(&(ns.to_string(), name.to_string())) else {
                return Err(TreeError::NotFound(name.to_string(), ns.to_string()));
            };
            // Walk up to the root, stopping at a cycle.
            let mut chain = vec![target];
            let mut seen = BTreeSet::from([target]);
            let mut cur = target;
            while let Some(&p) = nodes[cur].parent_key().and_then(|k| index.get(&k)) {
                if !seen.insert(p) {
                    break;
                }
                chain.push(p);
                cur = p;
            }
            chain.reverse();
            let root = chain[0];
            let (_, gns, gname) = group_of(&nodes[root]);
            rows.push(group_row(&gns, &gname, with_namespace));
            let mut prefix = String::new();
            for &i in &chain[..chain.len() - 1] {
                rows.push(node_row(
                    &nodes[i],
                    &format!("{prefix}└─ "),
                    None,
                    now,
                    with_namespace,
                ));
                printed.insert(i);
                prefix.push_str("   ");
            }
            subtree(
                nodes,
                &children,
                target,
                &prefix,
                true,
                now,
                with_namespace,
                &mut printed,
                &mut rows,
            );
        }
        None => {
            let mut groups: BTreeMap<(u8, String, String), Vec<usize>> = BTreeMap::new();
            for (i, n) in nodes.iter().enumerate() {
                if !has_parent[i] {
                    groups.entry(group_of(n)).or_default().push(i);
                }
            }
            for ((_, gns, gname), roots) in &groups {
                rows.push(group_row(gns, gname, with_namespace));
                for (j, &r) in roots.iter().enumerate() {
                    subtree(
                        nodes,
                        &children,
                        r,
                        "",
                        j + 1 == roots.len(),
                        now,
                        with_namespace,
                        &mut printed,
                        &mut rows,
                    );
                }
            }
            // Nodes whose parent labels form a cycle have no root: list them on their own.
            let left: Vec<usize> = (0..nodes.len()).filter(|i| !printed.contains(i)).collect();
            if !left.is_empty() {
                rows.push(group_row("", "parent labels in a cycle", with_namespace));
                for (j, &i) in left.iter().enumerate() {
                    let branch = if j + 1 == left.len() {
                        "└─ "
                    } else {
                        "├─ "
                    };
                    let note = nodes[i].parent.as_ref().map(|p| format!("parent {p}"));
                    rows.push(node_row(&nodes[i], branch, note, now, with_namespace));
                }
            }
        }
    }
    Ok(table(&rows))
}

fn header(with_namespace: bool) -> Vec<String> {
    let mut h = Vec::new();
    if with_namespace {
        h.push("NAMESPACE".to_string());
    }
    h.extend(["NAME", "PHASE", "TIER", "AGE"].map(String::from));
    h
}

fn group_row(ns: &str, name: &str, with_namespace: bool) -> Vec<String> {
    let mut row = Vec::new();
    if with_namespace {
        row.push(ns.to_string());
    }
    row.push(format!("[{name}]"));
    row
}

fn node_row(
    n: &SceneNode,
    prefix: &str,
    note: Option<String>,
    now: Timestamp,
    with_namespace: bool,
) -> Vec<String> {
    let mut row = Vec::new();
    if with_namespace {
        row.push(n.namespace.clone());
    }
    row.push(match note {
        Some(note) => format!("{prefix}{} ({note})", n.name),
        None => format!("{prefix}{}", n.name),
    });
    row.push(n.phase_str().to_string());
    row.push(n.tier.map(|t| t.to_string()).unwrap_or_else(|| "-".into()));
    row.push(
        n.created
            .map(|c| human_age(now.as_second() - c.as_second()))
            .unwrap_or_else(|| "-".into()),
    );
    row
}

#[allow(clippy::too_many_arguments)]
fn subtree(
    nodes: &[SceneNode],
    children: &BTreeMap<usize, Vec<usize>>,
    i: usize,
    prefix: &str,
    last: bool,
    now: Timestamp,
    with_namespace: bool,
    printed: &mut BTreeSet<usize>,
    rows: &mut Vec<Vec<String>>,
) {
    if !printed.insert(i) {
        return;
    }
    let branch = if last { "└─ " } else { "├─ " };
    // A top-level node with a parent label: its parent is not among the listed nodes.
    let note = match &nodes[i].parent {
        Some(p) if prefix.is_empty() => Some(format!("parent {p} not found")),
        _ => None,
    };
    rows.push(node_row(
        &nodes[i],
        &format!("{prefix}{branch}"),
        note,
        now,
        with_namespace,
    ));
    let next = format!("{prefix}{}", if last { "   " } else { "│  " });
    if let Some(kids) = children.get(&i) {
        for (j, &k) in kids.iter().enumerate() {
            subtree(
                nodes,
                children,
                k,
                &next,
                j + 1 == kids.len(),
                now,
                with_namespace,
                printed,
                rows,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::agent_node::NodePhase;
    use crate::geometry::DiskPoint;

    fn n(name: &str, parent: Option<&str>, anchor: Option<AnchorKey>, r: f64) -> SceneNode {
        let point = DiskPoint::from_polar(r, 30.0).expect("point");
        SceneNode {
            namespace: "default".into(),
            name: name.into(),
            phase: Some(NodePhase::Running),
            point: Some(point),
            tier: Some(point.tier()),
            anchor,
            parent: parent.map(String::from),
            created: Some(Timestamp::from_second(1_000).expect("ts")),
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_000 + 300).expect("ts")
    }

    #[test]
    fn children_sit_under_their_parent_and_roots_under_their_anchor() {
        let nodes = vec![
            n("coordinator", None, Some(AnchorKey::ORIGIN), 0.2),
            n(
                "worker-a",
                Some("coordinator"),
                Some(AnchorKey::ORIGIN),
                0.5,
            ),
            n(
                "worker-b",
                Some("coordinator"),
                Some(AnchorKey::ORIGIN),
                0.6,
            ),
            n("lost", Some("nobody"), Some(AnchorKey::ORIGIN), 0.7),
        ];
        let out = render(&nodes, None, now(), false).expect("tree");
        let expected = "\
NAME                                PHASE     TIER   AGE
[origin]
├─ coordinator                      Running   0      5m
│  ├─ worker-a                      Running   1      5m
│  └─ worker-b                      Running   2      5m
└─ lost (parent nobody not found)   Running   2      5m
";
        assert_eq!(out, expected);
        let focus = render(&nodes, Some(("default", "worker-b")), now(), false).expect("tree");
        assert_eq!(
            focus,
            "\
NAME             PHASE     TIER   AGE
[origin]
└─ coordinator   Running   0      5m
   └─ worker-b   Running   2      5m
"
        );
        assert_eq!(
            render(&nodes, Some(("default", "x")), now(), false),
            Err(TreeError::NotFound("x".into(), "default".into()))
        );
    }

    #[test]
    fn cycles_are_listed_not_lost() {
        let nodes = vec![n("a", Some("b"), None, 0.2), n("b", Some("a"), None, 0.3)];
        let out = render(&nodes, None, now(), false).expect("tree");
        assert!(out.contains("[parent labels in a cycle]"), "{out}");
        assert!(
            out.contains("a (parent b)") && out.contains("b (parent a)"),
            "{out}"
        );
    }
}

//! `kubectl hypersync disk` without a cluster: AgentNodes placed by the real placement engine are
//! rendered and compared with golden files (`UPDATE_GOLDEN=1 cargo test --test plugin_disk`
//! rewrites them), and the SVG is parsed back to check its geometry: tier rings at hyperbolic
//! radius k·ln 2, every node where its status says, geodesics that are arcs orthogonal to the
//! unit circle (or diameters) from each node to its parent or anchor, density cells that count
//! every node.

use std::collections::BTreeMap;
use std::f64::consts::LN_2;
use std::path::PathBuf;

use hypersync_operator::api::AgentNode;
use hypersync_operator::geometry::{
    AnchorIndex, AnchorKey, Autonomy, DiskPoint, PlacementRequest, place,
};
use hypersync_operator::plugin::disk::{DiskOptions, phase_color, render};
use serde_json::{Value, json};

const PHASES: [&str; 7] = [
    "Running",
    "Running",
    "Provisioning",
    "Pending",
    "Succeeded",
    "Failed",
    "Placed",
];
const TAGS: [&str; 10] = [
    "security",
    "coding",
    "anomaly",
    "search",
    "finance",
    "legal",
    "vision",
    "audio",
    "triage",
    "summarise",
];

/// Places a node with the real engine and returns it as an AgentNode with its status.
fn placed_node(
    index: &mut AnchorIndex,
    name: &str,
    anchor: Option<DiskPoint>,
    tags: &[&str],
    autonomy: Autonomy,
    phase: &str,
    parent: Option<&str>,
) -> AgentNode {
    let request = PlacementRequest {
        anchor,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        autonomy,
        fallback_key: format!("default/{name}"),
    };
    let p = place(&request, index).expect("placement");
    index.insert_placement(&p);
    let mut labels = serde_json::Map::new();
    if let Some(parent) = parent {
        labels.insert("hypersync.io/parent".into(), json!(parent));
    }
    serde_json::from_value(json!({
        "apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode",
        "metadata": {"name": name, "namespace": "default", "labels": labels,
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"stackRef": {"name": "security-analyst"}, "task": {"tags": tags}},
        "status": {"phase": phase, "placement": {
            "r": p.r, "thetaDegrees": p.theta_degrees, "x": p.point.x(), "y": p.point.y(),
            "hyperbolicRadius": p.hyperbolic_radius, "tier": p.tier,
            "anchor": p.anchor_key.to_string(), "algorithm": p.algorithm,
            "inputsDigest": p.inputs_digest}}
    }))
    .expect("node")
}

fn unplaced(name: &str) -> AgentNode {
    serde_json::from_value(json!({
        "apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"stackRef": {"name": "nope"}}
    }))
    .expect("node")
}

fn anomaly() -> DiskPoint {
    DiskPoint::from_polar(0.4, 120.0).expect("point")
}

/// The seed story's analyst near the anomaly, a coordinator at the origin with workers (parent
/// labels, placed near it), nodes around the origin, and one node not placed yet.
fn small_scene() -> Vec<AgentNode> {
    let mut index = AnchorIndex::new();
    let mut nodes = vec![placed_node(
        &mut index,
        "security-analyst",
        Some(anomaly()),
        &["security", "coding", "anomaly"],
        Autonomy::Strict,
        "Running",
        None,
    )];
    let coordinator = placed_node(
        &mut index,
        "coordinator",
        None,
        &["triage"],
        Autonomy::Strict,
        "Running",
        None,
    );
    let c = coordinator
        .status
        .as_ref()
        .and_then(|s| s.placement.as_ref())
        .map(|p| DiskPoint::new(p.x, p.y).expect("point"))
        .expect("placed");
    nodes.push(coordinator);
    for (i, tags) in [&["search"][..], &["finance", "legal"][..], &["vision"][..]]
        .into_iter()
        .enumerate()
    {
        nodes.push(placed_node(
            &mut index,
            &format!("worker-{i}"),
            Some(c),
            tags,
            Autonomy::Loose,
            PHASES[i + 1],
            Some("coordinator"),
        ));
    }
    for (i, tags) in [&["audio"][..], &["summarise", "legal"][..]]
        .into_iter()
        .enumerate()
    {
        nodes.push(placed_node(
            &mut index,
            &format!("scout-{i}"),
            None,
            tags,
            Autonomy::Creative,
            PHASES[i + 4],
            None,
        ));
    }
    nodes.push(unplaced("waiting"));
    nodes
}

/// `coordinators` coordinators around the origin, each with workers placed near it.
fn hierarchy(coordinators: usize, workers: usize) -> Vec<AgentNode> {
    let mut index = AnchorIndex::new();
    let mut nodes = Vec::new();
    for c in 0..coordinators {
        let name = format!("coord-{c}");
        let node = placed_node(
            &mut index,
            &name,
            None,
            &[TAGS[c % TAGS.len()]],
            Autonomy::Strict,
            "Running",
            None,
        );
        let at = node
            .status
            .as_ref()
            .and_then(|s| s.placement.as_ref())
            .map(|p| DiskPoint::new(p.x, p.y).expect("point"))
            .expect("placed");
        nodes.push(node);
        for w in 0..workers {
            let tags = [TAGS[(c + w) % TAGS.len()], TAGS[(w * 3 + 1) % TAGS.len()]];
            nodes.push(placed_node(
                &mut index,
                &format!("c{c}-worker-{w}"),
                Some(at),
                &tags,
                if w % 3 == 0 {
                    Autonomy::Loose
                } else {
                    Autonomy::Strict
                },
                PHASES[(c + w) % PHASES.len()],
                Some(&name),
            ));
        }
    }
    nodes
}

/// Many nodes around the origin and the anomaly, with every autonomy.
fn crowd(n: usize) -> Vec<AgentNode> {
    let mut index = AnchorIndex::new();
    let autonomies = [
        Autonomy::Strict,
        Autonomy::Loose,
        Autonomy::Creative,
        Autonomy::Adversarial,
    ];
    (0..n)
        .map(|i| {
            let tags = [TAGS[i % TAGS.len()], TAGS[(i / 7) % TAGS.len()]];
            placed_node(
                &mut index,
                &format!("agent-{i:05}"),
                (i % 3 == 0).then(anomaly),
                &tags,
                autonomies[i % 4],
                PHASES[i % PHASES.len()],
                None,
            )
        })
        .collect()
}

fn options() -> DiskOptions {
    DiskOptions {
        scope: "namespace default".into(),
        generated_at: "2026-01-01T00:00:00Z".into(),
        max_labels: 200,
    }
}

fn golden(name: &str, svg: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/plugin_golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, svg).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `UPDATE_GOLDEN=1 cargo test --test plugin_disk`",
            path.display()
        )
    });
    if want != svg {
        let line = want
            .lines()
            .zip(svg.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| want.lines().count().min(svg.lines().count()));
        panic!(
            "{} differs from the rendered SVG (first difference at line {}); if the change is \
             intended, run `UPDATE_GOLDEN=1 cargo test --test plugin_disk` and review the diff",
            path.display(),
            line + 1
        );
    }
}

fn attr(n: roxmltree::Node<'_, '_>, name: &str) -> f64 {
    n.attribute(name)
        .unwrap_or_else(|| panic!("<{}> without {name}", n.tag_name().name()))
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn has_class(n: roxmltree::Node<'_, '_>, class: &str) -> bool {
    n.attribute("class")
        .is_some_and(|c| c.split(' ').any(|x| x == class))
}

/// The picture's frame: the unit circle's centre and radius in pixels.
struct Frame {
    cx: f64,
    cy: f64,
    r: f64,
}

impl Frame {
    fn to_disk(&self, x: f64, y: f64) -> (f64, f64) {
        ((x - self.cx) / self.r, (self.cy - y) / self.r)
    }
}

/// Parses an SVG path `M x y A rx ry rot large sweep x y` or `M x y L x y`.
enum Drawn {
    Arc {
        from: (f64, f64),
        to: (f64, f64),
        radius: f64,
        large: bool,
        sweep: bool,
    },
    Line {
        from: (f64, f64),
        to: (f64, f64),
    },
}

fn parse_path(d: &str) -> Drawn {
    let t: Vec<&str> = d.split_whitespace().collect();
    let num = |i: usize| -> f64 { t[i].parse().unwrap_or_else(|e| panic!("{d}: {e}")) };
    assert_eq!(t[0], "M", "{d}");
    match t[3] {
        "A" => {
            assert_eq!(t.len(), 11, "{d}");
            assert_eq!(num(4), num(5), "circular arc: {d}");
            Drawn::Arc {
                from: (num(1), num(2)),
                radius: num(4),
                large: t[7] == "1",
                sweep: t[8] == "1",
                to: (num(9), num(10)),
            }
        }
        "L" => Drawn::Line {
            from: (num(1), num(2)),
            to: (num(4), num(5)),
        },
        other => panic!("unexpected command {other} in {d}"),
    }
}

/// The centre of an SVG arc (endpoint parameterisation, SVG 1.1 F.6.5, circles only), in pixels.
fn arc_center(from: (f64, f64), to: (f64, f64), r: f64, large: bool, sweep: bool) -> (f64, f64) {
    let (mx, my) = ((from.0 + to.0) / 2.0, (from.1 + to.1) / 2.0);
    let (dx, dy) = ((from.0 - to.0) / 2.0, (from.1 - to.1) / 2.0);
    let h2 = dx * dx + dy * dy;
    let k = ((r * r - h2).max(0.0) / h2).sqrt();
    let sign = if large == sweep { -1.0 } else { 1.0 };
    // centre' = sign * k * (dy', -dx') in the rotated frame; rotation 0 here.
    (mx + sign * k * dy, my - sign * k * dx)
}

/// Everything the checks read out of one SVG.
struct Parsed {
    frame: Frame,
    nodes: BTreeMap<String, (f64, f64, String, String)>,
    anchors: BTreeMap<String, (f64, f64)>,
    geodesics: Vec<(String, String, String, Drawn)>,
    rings: Vec<(u32, f64)>,
    cells: Vec<(u32, usize)>,
}

fn parse(svg: &str) -> Parsed {
    let doc = roxmltree::Document::parse(svg).expect("the SVG is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    let unit = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("unit-circle"))
        .expect("unit circle");
    let frame = Frame {
        cx: attr(unit, "cx"),
        cy: attr(unit, "cy"),
        r: attr(unit, "r"),
    };
    let mut out = Parsed {
        frame,
        nodes: BTreeMap::new(),
        anchors: BTreeMap::new(),
        geodesics: Vec::new(),
        rings: Vec::new(),
        cells: Vec::new(),
    };
    for n in doc.descendants().filter(|n| n.is_element()) {
        if has_class(n, "node") {
            let (x, y) = out.frame.to_disk(attr(n, "cx"), attr(n, "cy"));
            out.nodes.insert(
                n.attribute("data-name").expect("name").to_string(),
                (
                    x,
                    y,
                    n.attribute("fill").expect("fill").to_string(),
                    n.attribute("data-phase").expect("phase").to_string(),
                ),
            );
        } else if has_class(n, "anchor") {
            let (x, y) = out.frame.to_disk(attr(n, "data-x"), attr(n, "data-y"));
            out.anchors.insert(
                format!("anchor:{}", n.attribute("data-anchor").expect("key")),
                (x, y),
            );
        } else if has_class(n, "geodesic") {
            out.geodesics.push((
                n.attribute("class").expect("class").to_string(),
                n.attribute("data-from").expect("from").to_string(),
                n.attribute("data-to").expect("to").to_string(),
                parse_path(n.attribute("d").expect("d")),
            ));
        } else if has_class(n, "tier-ring") {
            out.rings
                .push((attr(n, "data-tier") as u32, attr(n, "r") / out.frame.r));
        } else if has_class(n, "cell") {
            out.cells
                .push((attr(n, "data-tier") as u32, attr(n, "data-count") as usize));
        }
    }
    out
}

/// The checks every picture must pass.
fn check_geometry(svg: &str, nodes: &[AgentNode]) -> Parsed {
    let p = parse(svg);
    assert!(p.frame.r > 100.0);
    // Tier rings at hyperbolic radius k ln 2: Euclidean radius tanh(k ln 2 / 2).
    assert!(p.rings.len() >= 4, "tier rings drawn");
    for (k, r) in &p.rings {
        let want = (f64::from(*k) * LN_2 / 2.0).tanh();
        assert!((r - want).abs() < 1e-5, "tier {k}: {r} vs {want}");
    }
    let placed: BTreeMap<String, (f64, f64, String)> = nodes
        .iter()
        .filter_map(|n| {
            let s = n.status.as_ref()?;
            let pl = s.placement.as_ref()?;
            let phase = serde_json::to_value(s.phase?).ok()?;
            Some((
                n.metadata.name.clone()?,
                (pl.x, pl.y, phase.as_str()?.to_string()),
            ))
        })
        .collect();
    if !p.cells.is_empty() {
        // Density view: every placed node counted once, no per-node dots.
        assert!(p.nodes.is_empty());
        assert_eq!(p.cells.iter().map(|c| c.1).sum::<usize>(), placed.len());
        return p;
    }
    assert_eq!(
        p.nodes.keys().collect::<Vec<_>>(),
        placed.keys().collect::<Vec<_>>(),
        "one dot per placed node"
    );
    for (name, (x, y, fill, phase)) in &p.nodes {
        let (wx, wy, wphase) = &placed[name];
        assert!(
            (x - wx).abs() < 1e-5 && (y - wy).abs() < 1e-5,
            "{name} drawn at ({x}, {y}), placed at ({wx}, {wy})"
        );
        assert!(x.hypot(*y) < 1.0);
        assert_eq!(phase, wphase);
        let want_fill =
            phase_color(serde_json::from_value(Value::String(wphase.clone())).expect("phase"));
        assert_eq!(fill, want_fill, "{name} coloured by its phase");
    }
    let point_of = |name: &str| -> (f64, f64) {
        if let Some((x, y, ..)) = p.nodes.get(name) {
            return (*x, *y);
        }
        if let Some(a) = p.anchors.get(name) {
            return *a;
        }
        panic!("geodesic ends at {name}, which is drawn nowhere");
    };
    let mut arcs = 0;
    for (class, from, to, drawn) in &p.geodesics {
        let a = point_of(from);
        let b = point_of(to);
        // Each node's geodesic goes to its parent (when labelled) or its anchor.
        let node = nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(from))
            .expect("from a node");
        let parent = node
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("hypersync.io/parent"));
        if class.contains("to-parent") {
            assert_eq!(parent.map(String::as_str), Some(to.as_str()));
        } else {
            let key: AnchorKey = node
                .status
                .as_ref()
                .and_then(|s| s.placement.as_ref())
                .and_then(|pl| pl.anchor.as_deref())
                .expect("anchor")
                .parse()
                .expect("anchor key");
            let k = key.to_point().expect("anchor point");
            assert!(
                (b.0 - k.x()).abs() < 1e-5 && (b.1 - k.y()).abs() < 1e-5,
                "{from}'s geodesic ends at its anchor"
            );
        }
        match drawn {
            Drawn::Arc {
                from: f,
                to: t,
                radius,
                large,
                sweep,
            } => {
                arcs += 1;
                assert!(!large, "{from} -> {to}: geodesic arcs are minor arcs");
                let fd = p.frame.to_disk(f.0, f.1);
                let td = p.frame.to_disk(t.0, t.1);
                assert!((fd.0 - a.0).abs() < 1e-5 && (fd.1 - a.1).abs() < 1e-5);
                assert!((td.0 - b.0).abs() < 1e-5 && (td.1 - b.1).abs() < 1e-5);
                let c = arc_center(*f, *t, *radius, *large, *sweep);
                let (cx, cy) = p.frame.to_disk(c.0, c.1);
                let r = radius / p.frame.r;
                let chord_px = (f.0 - t.0).hypot(f.1 - t.1);
                if r / (chord_px / p.frame.r) < 50.0 {
                    // Orthogonal to the unit circle: at an intersection point the radii of both
                    // circles are perpendicular, cos = (|c|^2 - 1 - r^2) / (2 r) = 0.
                    let cos = (cx * cx + cy * cy - 1.0 - r * r) / (2.0 * r);
                    assert!(
                        cos.abs() < 1e-3,
                        "{from} -> {to}: arc meets the unit circle at cos {cos}"
                    );
                } else {
                    // Nearly straight: it must then run close to a diameter.
                    let dist = (a.0 * b.1 - a.1 * b.0).abs() / (a.0 - b.0).hypot(a.1 - b.1);
                    assert!(dist < 2.0 / r + 1e-3, "{from} -> {to}: {dist}");
                }
                // The flags select the arc inside the disk: the centre they give is the geodesic
                // circle's (checked above: the mirror centre is not orthogonal), and the arc's
                // midpoint, on the side of the chord away from that centre, is inside the disk.
                let (mx, my) = ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0);
                let (vx, vy) = (mx - cx, my - cy);
                let len = vx.hypot(vy);
                let mid = (cx + vx / len * r, cy + vy / len * r);
                assert!(
                    mid.0.hypot(mid.1) < 1.0,
                    "{from} -> {to}: arc leaves the disk"
                );
            }
            Drawn::Line { from: f, to: t } => {
                let fd = p.frame.to_disk(f.0, f.1);
                let td = p.frame.to_disk(t.0, t.1);
                assert!((fd.0 - a.0).abs() < 1e-5 && (fd.1 - a.1).abs() < 1e-5);
                assert!((td.0 - b.0).abs() < 1e-5 && (td.1 - b.1).abs() < 1e-5);
                // A straight geodesic is a diameter: the line passes through the origin.
                let len = (fd.0 - td.0).hypot(fd.1 - td.1);
                let dist = (fd.0 * td.1 - fd.1 * td.0).abs() / len;
                assert!(
                    dist < 1e-4,
                    "{from} -> {to}: straight but {dist} off the origin"
                );
            }
        }
    }
    assert!(arcs > 0, "some geodesics are arcs");
    p
}

#[test]
fn small_scene_matches_golden_and_its_geometry() {
    let nodes = small_scene();
    let svg = render(&nodes, &options());
    let p = check_geometry(&svg, &nodes);
    // every placed node has its geodesic: workers to their parent, the rest to their anchor
    assert_eq!(p.geodesics.len(), 7);
    assert_eq!(
        p.geodesics
            .iter()
            .filter(|g| g.0.contains("to-parent"))
            .count(),
        3
    );
    assert!(
        p.anchors
            .keys()
            .any(|k| k == "anchor:-0.200000000000,0.346410161514")
    );
    assert!(svg.contains("namespace default · 2026-01-01T00:00:00Z"));
    assert!(svg.contains("1 not placed yet"));
    golden("disk-small.svg", &svg);
}

#[test]
fn hundred_nodes_are_labelled_and_match_golden() {
    let nodes = hierarchy(5, 19);
    assert_eq!(nodes.len(), 100);
    let svg = render(&nodes, &options());
    let p = check_geometry(&svg, &nodes);
    assert_eq!(p.nodes.len(), 100);
    assert_eq!(svg.matches("class=\"node-label\"").count(), 100);
    golden("disk-100.svg", &svg);
}

#[test]
fn thousands_of_nodes_become_density_cells() {
    let nodes = crowd(3000);
    let svg = render(&nodes, &options());
    let p = check_geometry(&svg, &nodes);
    assert!(p.nodes.is_empty() && p.geodesics.is_empty());
    assert!(!svg.contains("node-label"));
    assert!(svg.contains("3,000 AgentNodes placed"));
    // The anomaly is still marked, with its count.
    assert!(
        svg.contains("point r 0.400, θ 120.0° (1,000 nodes)"),
        "anomaly count"
    );
    golden("disk-3000.svg", &svg);
}

#[test]
fn output_does_not_depend_on_list_order() {
    let nodes = hierarchy(3, 6);
    let a = render(&nodes, &options());
    let mut reversed = nodes.clone();
    reversed.reverse();
    assert_eq!(a, render(&reversed, &options()));
    let mut later = options();
    later.generated_at = "2026-01-01T00:00:01Z".into();
    assert_ne!(a, render(&nodes, &later), "the timestamp is in the title");
}

#[test]
fn all_namespaces_prefix_labels_and_keep_parents_apart() {
    let mut index = AnchorIndex::new();
    let point = |n: &AgentNode| {
        let p = n
            .status
            .as_ref()
            .and_then(|s| s.placement.as_ref())
            .expect("placed");
        DiskPoint::new(p.x, p.y).expect("point")
    };
    let lead_a = placed_node(
        &mut index,
        "lead",
        None,
        &["triage"],
        Autonomy::Strict,
        "Running",
        None,
    );
    let mut lead_b = placed_node(
        &mut index,
        "lead",
        None,
        &["search"],
        Autonomy::Strict,
        "Running",
        None,
    );
    lead_b.metadata.namespace = Some("team-b".into());
    let mut worker = placed_node(
        &mut index,
        "worker",
        Some(point(&lead_b)),
        &["coding"],
        Autonomy::Loose,
        "Pending",
        Some("lead"),
    );
    worker.metadata.namespace = Some("team-b".into());
    let mut opts = options();
    opts.scope = "all namespaces".into();
    let svg = render(&[lead_a.clone(), lead_b.clone(), worker], &opts);
    for label in ["default/lead", "team-b/lead", "team-b/worker"] {
        assert!(svg.contains(&format!(">{label}</text>")), "{label}");
    }
    assert!(svg.contains("HyperSync · Poincaré disk · all namespaces"));
    // The worker's parent is the lead of its own namespace.
    let doc = roxmltree::Document::parse(&svg).expect("parses");
    let path = doc
        .descendants()
        .find(|n| n.attribute("class") == Some("geodesic to-parent"))
        .expect("parent geodesic");
    let Drawn::Arc { to, .. } = parse_path(path.attribute("d").expect("d")) else {
        panic!("an arc");
    };
    let want = hypersync_operator::plugin::disk::to_screen(point(&lead_b).x(), point(&lead_b).y());
    let other = hypersync_operator::plugin::disk::to_screen(point(&lead_a).x(), point(&lead_a).y());
    assert!((to.0 - want.0).abs() < 1e-3 && (to.1 - want.1).abs() < 1e-3);
    assert!((to.0 - other.0).abs() > 1.0 || (to.1 - other.1).abs() > 1.0);
}

#[test]
fn ten_thousand_nodes_still_draw_every_node_counted() {
    let nodes = crowd(10_000);
    let start = std::time::Instant::now();
    let svg = render(&nodes, &options());
    // Printed for the curious (`--nocapture`), not asserted: timings belong in benchmarks.
    eprintln!(
        "rendered 10,000 nodes in {:?} ({} bytes)",
        start.elapsed(),
        svg.len()
    );
    check_geometry(&svg, &nodes);
    assert!(svg.contains("10,000 AgentNodes placed"));
    // Labels can be asked for anyway: every node then gets its dot and its name.
    let mut all = options();
    all.max_labels = 10_000;
    let start = std::time::Instant::now();
    let labelled = render(&nodes, &all);
    eprintln!(
        "rendered 10,000 labelled nodes in {:?} ({} bytes)",
        start.elapsed(),
        labelled.len()
    );
    assert_eq!(labelled.matches("class=\"node-label\"").count(), 10_000);
}

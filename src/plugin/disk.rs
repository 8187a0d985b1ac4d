//! `kubectl hypersync disk`: the Poincare disk as SVG — the unit circle, the tier rings, every placed
//! AgentNode coloured by phase with its name, the geodesic from each node to its parent or anchor,
//! the anchor points, a legend and a title. Above `max_labels` nodes the picture switches to density:
//! cells between tier rings shaded by how many nodes they hold.
//!
//! Pure: the same nodes and the same timestamp give byte-identical output.

use std::collections::BTreeMap;
use std::f64::consts::{PI, TAU};
use std::fmt::Write as _;

use crate::api::AgentNode;
use crate::api::agent_node::NodePhase;
use crate::geometry::{AnchorKey, DiskPoint, Geodesic, geodesic, tier_ring_radius};

use super::scene::{PHASES, SceneNode, describe_anchor, nodes_at_anchors, phase_name, scene};

/// Width and height of the picture, in SVG user units (pixels).
pub const WIDTH: f64 = 1240.0;
pub const HEIGHT: f64 = 1000.0;
/// Centre and radius of the unit circle in the picture.
pub const CENTER_X: f64 = 500.0;
pub const CENTER_Y: f64 = 530.0;
pub const RADIUS: f64 = 440.0;
/// Default number of nodes up to which every node is drawn with its name.
pub const DEFAULT_MAX_LABELS: usize = 200;
/// A geodesic circle wider than this (in disk units) is drawn as a straight line: its sagitta is
/// below `RADIUS / (2 * 1e4)`, a fiftieth of a pixel.
const STRAIGHT_ABOVE_RADIUS: f64 = 1e4;
/// Tier rings closer together than this many pixels are not drawn (they would merge into a band).
const MIN_RING_GAP_PX: f64 = 2.5;
/// Density cells: tier `k` is cut into `DENSITY_SECTORS_0 * 2^k` sectors (the hyperbolic
/// circumference doubles from one tier ring to the next, so cells keep about the same hyperbolic
/// area), at most `DENSITY_MAX_SECTORS`.
const DENSITY_SECTORS_0: u32 = 8;
const DENSITY_MAX_SECTORS: u32 = 256;
/// The deepest tier band of the density view; deeper nodes are counted in it.
const DENSITY_MAX_TIER: u32 = 8;

/// How to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskOptions {
    /// What the title says was drawn: `namespace default` or `all namespaces`.
    pub scope: String,
    /// The time printed in the title (RFC 3339), injected so tests get identical output.
    pub generated_at: String,
    /// Up to this many placed nodes, each is drawn with its name; above, density cells.
    pub max_labels: usize,
}

/// The colour of a phase (also in the legend).
pub fn phase_color(phase: Option<NodePhase>) -> &'static str {
    match phase {
        Some(NodePhase::Pending) => "#9e9e9e",
        Some(NodePhase::Placed) => "#7e57c2",
        Some(NodePhase::Provisioning) => "#fb8c00",
        Some(NodePhase::Running) => "#2e7d32",
        Some(NodePhase::Succeeded) => "#1e88e5",
        Some(NodePhase::Failed) => "#d32f2f",
        Some(NodePhase::Dissolving) => "#8d6e63",
        None => "#cfd8dc",
    }
}

/// Renders the disk for these AgentNodes.
pub fn render(nodes: &[AgentNode], options: &DiskOptions) -> String {
    render_scene(&scene(nodes), options)
}

/// Renders the disk for nodes already read into a scene (sorted by namespace and name).
pub fn render_scene(nodes: &[SceneNode], options: &DiskOptions) -> String {
    let placed: Vec<&SceneNode> = nodes.iter().filter(|n| n.point.is_some()).collect();
    let unplaced = nodes.len() - placed.len();
    let density = placed.len() > options.max_labels;
    let multi_ns = nodes
        .first()
        .is_some_and(|f| nodes.iter().any(|n| n.namespace != f.namespace));
    let max_tier = placed.iter().filter_map(|n| n.tier).max().unwrap_or(0);

    let mut svg = String::with_capacity(16 * 1024 + placed.len() * 256);
    let title = format!(
        "HyperSync · Poincaré disk · {} · {}",
        options.scope, options.generated_at
    );
    let _ = write!(
        svg,
        concat!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" "#,
            r#"font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"#,
            "\n<title>{title}</title>\n",
            r##"<rect width="{w}" height="{h}" fill="#ffffff"/>"##,
            "\n"
        ),
        w = WIDTH,
        h = HEIGHT,
        title = esc(&title)
    );
    let _ = writeln!(
        svg,
        r##"<text id="title" x="24" y="38" font-size="22" font-weight="bold" fill="#212121">{}</text>"##,
        esc(&title)
    );
    let mut subtitle = format!(
        "{} AgentNode{} placed",
        thousands(placed.len()),
        plural(placed.len())
    );
    if unplaced > 0 {
        let _ = write!(subtitle, ", {} not placed yet", thousands(unplaced));
    }
    if density {
        subtitle.push_str(" · density view (more nodes than --max-labels)");
    }
    let _ = writeln!(
        svg,
        r##"<text id="subtitle" x="24" y="62" font-size="14" fill="#616161">{}</text>"##,
        esc(&subtitle)
    );

    let _ = writeln!(
        svg,
        r##"<circle id="unit-circle" cx="{}" cy="{}" r="{}" fill="#f5f8fc" stroke="#263238" stroke-width="2"/>"##,
        n2(CENTER_X),
        n2(CENTER_Y),
        n2(RADIUS)
    );
    let at_anchor = nodes_at_anchors(nodes);
    if density {
        draw_density(&mut svg, &placed);
        draw_tiers(&mut svg, max_tier.max(4));
    } else {
        draw_tiers(&mut svg, max_tier.max(4));
        draw_geodesics(&mut svg, nodes, &at_anchor);
    }
    let (anchors, anchor_boxes) = draw_anchors(&mut svg, nodes, &at_anchor, density);
    if !density {
        draw_nodes(&mut svg, &placed, multi_ns, anchor_boxes);
    }
    draw_legend(&mut svg, nodes, density, anchors, &placed);
    svg.push_str("</svg>\n");
    svg
}

/// Screen coordinates of a point of the disk.
pub fn to_screen(x: f64, y: f64) -> (f64, f64) {
    (CENTER_X + RADIUS * x, CENTER_Y - RADIUS * y)
}

fn draw_tiers(svg: &mut String, up_to: u32) {
    svg.push_str("<g id=\"tiers\" fill=\"none\" stroke=\"#90a4ae\" stroke-width=\"0.8\">\n");
    let mut last_px = 0.0;
    let mut labels = String::new();
    for k in 1..=up_to {
        let r = tier_ring_radius(k) * RADIUS;
        if r - last_px < MIN_RING_GAP_PX || RADIUS - r < MIN_RING_GAP_PX {
            break;
        }
        let _ = writeln!(
            svg,
            r#"<circle class="tier-ring" data-tier="{k}" cx="{}" cy="{}" r="{}" stroke-dasharray="4 4"/>"#,
            n2(CENTER_X),
            n2(CENTER_Y),
            n3(r)
        );
        // Ring labels along the lower-right radius, where they are wide enough apart.
        if r - last_px >= 12.0 {
            let (x, y) = to_screen(
                tier_ring_radius(k) * (-PI / 3.0).cos(),
                tier_ring_radius(k) * (-PI / 3.0).sin(),
            );
            let _ = writeln!(
                labels,
                r##"<text class="tier-label" x="{}" y="{}" font-size="10" fill="#78909c">tier {k}</text>"##,
                n2(x + 3.0),
                n2(y - 2.0)
            );
        }
        last_px = r;
    }
    svg.push_str("</g>\n");
    if !labels.is_empty() {
        svg.push_str("<g id=\"tier-labels\">\n");
        svg.push_str(&labels);
        svg.push_str("</g>\n");
    }
}

/// The geodesic path from `u` to `v` in screen coordinates: an SVG arc (`A`), or a line (`L`) when
/// the points lie on a diameter.
pub fn geodesic_path(u: DiskPoint, v: DiskPoint) -> String {
    let (x1, y1) = to_screen(u.x(), u.y());
    let (x2, y2) = to_screen(v.x(), v.y());
    match geodesic(u, v) {
        Geodesic::Arc {
            center: (cx, cy),
            radius,
        } if radius <= STRAIGHT_ABOVE_RADIUS => {
            // The arc inside the disk is the minor arc. Going from u to v counter-clockwise around
            // the centre (in disk coordinates) is the minor arc when (u - c) x (v - c) > 0. SVG's
            // sweep-flag 1 turns towards its +y axis, which points down: clockwise as seen, so
            // counter-clockwise in the disk is sweep-flag 0.
            let cross = (u.x() - cx) * (v.y() - cy) - (u.y() - cy) * (v.x() - cx);
            let sweep = u8::from(cross < 0.0);
            let r = radius * RADIUS;
            format!(
                "M {} {} A {} {} 0 0 {sweep} {} {}",
                n4(x1),
                n4(y1),
                n4(r),
                n4(r),
                n4(x2),
                n4(y2)
            )
        }
        _ => format!("M {} {} L {} {}", n4(x1), n4(y1), n4(x2), n4(y2)),
    }
}

fn draw_geodesics(
    svg: &mut String,
    nodes: &[SceneNode],
    at_anchor: &BTreeMap<(String, AnchorKey), usize>,
) {
    let index: BTreeMap<(String, String), &SceneNode> =
        nodes.iter().map(|n| (n.key(), n)).collect();
    svg.push_str("<g id=\"geodesics\" fill=\"none\">\n");
    for n in nodes {
        let Some(u) = n.point else { continue };
        let parent = n
            .parent_key()
            .and_then(|k| index.get(&k))
            .and_then(|p| Some((p.name.as_str(), p.point?)));
        let (class, to, v, style) = if let Some((name, v)) = parent {
            (
                "geodesic to-parent",
                name.to_string(),
                v,
                r##"stroke="#37474f" stroke-width="1.4""##,
            )
        } else if let Some(key) = n.anchor {
            let Ok(v) = key.to_point() else { continue };
            let to = match at_anchor.get(&(n.namespace.clone(), key)) {
                Some(&i) if nodes[i].name != n.name => nodes[i].name.clone(),
                _ => format!("anchor:{key}"),
            };
            (
                "geodesic to-anchor",
                to,
                v,
                r##"stroke="#78909c" stroke-width="1" stroke-dasharray="5 3""##,
            )
        } else {
            continue;
        };
        if u == v {
            continue;
        }
        let _ = writeln!(
            svg,
            r#"<path class="{class}" data-from="{}" data-to="{}" d="{}" {style}/>"#,
            esc(&n.name),
            esc(&to),
            geodesic_path(u, v)
        );
    }
    svg.push_str("</g>\n");
}

/// Draws the anchors no node sits on (points given by `near.point`, the origin) and returns them
/// with the number of nodes around each, for the legend, and the screen boxes of their markers and
/// labels, which node labels keep clear of.
fn draw_anchors(
    svg: &mut String,
    nodes: &[SceneNode],
    at_anchor: &BTreeMap<(String, AnchorKey), usize>,
    density: bool,
) -> (Vec<(String, usize)>, Vec<Box2>) {
    let mut boxes = Vec::new();
    let mut counts: BTreeMap<(String, AnchorKey), usize> = BTreeMap::new();
    for n in nodes {
        if let (Some(key), Some(_)) = (n.anchor, n.point) {
            *counts.entry((n.namespace.clone(), key)).or_default() += 1;
        }
    }
    let mut out = Vec::new();
    svg.push_str("<g id=\"anchors\">\n");
    for ((ns, key), count) in &counts {
        let described = describe_anchor(ns, *key, at_anchor, nodes);
        out.push((described.clone(), *count));
        if !density && at_anchor.contains_key(&(ns.clone(), *key)) {
            // A node sits there and is drawn as itself; mark it as an anchor with a ring.
            if let Ok(p) = key.to_point() {
                let (x, y) = to_screen(p.x(), p.y());
                boxes.push(Box2 {
                    x0: x - 10.0,
                    y0: y - 10.0,
                    x1: x + 10.0,
                    y1: y + 10.0,
                });
                let _ = writeln!(
                    svg,
                    r##"<circle class="anchor-ring" cx="{}" cy="{}" r="9" fill="none" stroke="#c62828" stroke-width="1.2"/>"##,
                    n4(x),
                    n4(y)
                );
            }
            continue;
        }
        let Ok(p) = key.to_point() else { continue };
        let (x, y) = to_screen(p.x(), p.y());
        let s = 7.0;
        let _ = writeln!(
            svg,
            r##"<path class="anchor" data-anchor="{key}" data-x="{}" data-y="{}" d="M {} {} L {} {} L {} {} L {} {} Z" fill="#c62828" stroke="#ffffff" stroke-width="1"><title>anchor {}: {} node{}</title></path>"##,
            n4(x),
            n4(y),
            n2(x),
            n2(y - s),
            n2(x + s),
            n2(y),
            n2(x),
            n2(y + s),
            n2(x - s),
            n2(y),
            esc(&described),
            count,
            plural(*count)
        );
        let label = if density {
            format!("{described} ({} nodes)", thousands(*count))
        } else {
            described
        };
        boxes.push(Box2 {
            x0: x - s,
            y0: y - s,
            x1: x + s,
            y1: y + s,
        });
        boxes.push(Box2 {
            x0: x + 10.0,
            y0: y + 16.0 - LABEL_FONT,
            x1: x + 10.0 + CHAR_WIDTH * label.chars().count() as f64,
            y1: y + 18.0,
        });
        let _ = writeln!(
            svg,
            r##"<text class="anchor-label" x="{}" y="{}" font-size="11" font-style="italic" fill="#c62828">{}</text>"##,
            n2(x + 10.0),
            n2(y + 16.0),
            esc(&label)
        );
    }
    svg.push_str("</g>\n");
    (out, boxes)
}

/// An axis-aligned box on screen, for keeping labels apart.
#[derive(Clone, Copy)]
struct Box2 {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

impl Box2 {
    fn overlaps(&self, o: &Box2) -> bool {
        self.x0 < o.x1 && o.x0 < self.x1 && self.y0 < o.y1 && o.y0 < self.y1
    }
}

/// The boxes already taken on screen, bucketed in a grid so a lookup costs about the same with
/// 10 labels as with 10,000 (`--max-labels` may be raised that far).
struct Taken {
    cells: BTreeMap<(i32, i32), Vec<usize>>,
    boxes: Vec<Box2>,
}

const GRID_PX: f64 = 40.0;

impl Taken {
    fn new(boxes: Vec<Box2>) -> Self {
        let mut t = Taken {
            cells: BTreeMap::new(),
            boxes: Vec::new(),
        };
        for b in boxes {
            t.push(b);
        }
        t
    }

    fn cells_of(b: &Box2) -> impl Iterator<Item = (i32, i32)> {
        let (cx0, cx1) = (
            (b.x0 / GRID_PX).floor() as i32,
            (b.x1 / GRID_PX).floor() as i32,
        );
        let (cy0, cy1) = (
            (b.y0 / GRID_PX).floor() as i32,
            (b.y1 / GRID_PX).floor() as i32,
        );
        (cx0..=cx1).flat_map(move |x| (cy0..=cy1).map(move |y| (x, y)))
    }

    fn push(&mut self, b: Box2) {
        let i = self.boxes.len();
        self.boxes.push(b);
        for c in Self::cells_of(&b) {
            self.cells.entry(c).or_default().push(i);
        }
    }

    fn overlaps(&self, b: &Box2) -> bool {
        Self::cells_of(b).any(|c| {
            self.cells
                .get(&c)
                .is_some_and(|v| v.iter().any(|&i| self.boxes[i].overlaps(b)))
        })
    }
}

const LABEL_FONT: f64 = 11.0;
/// Approximate advance of one character at [`LABEL_FONT`] (sans-serif, mostly lowercase).
const CHAR_WIDTH: f64 = 6.2;

fn draw_nodes(svg: &mut String, placed: &[&SceneNode], multi_ns: bool, reserved: Vec<Box2>) {
    let mut taken = Taken::new(reserved);
    svg.push_str("<g id=\"nodes\">\n");
    let dot = 5.0;
    for n in placed {
        let Some(p) = n.point else { continue };
        let (x, y) = to_screen(p.x(), p.y());
        taken.push(Box2 {
            x0: x - dot,
            y0: y - dot,
            x1: x + dot,
            y1: y + dot,
        });
    }
    let mut labels = String::new();
    for n in placed {
        let Some(p) = n.point else { continue };
        let (x, y) = to_screen(p.x(), p.y());
        let name = if multi_ns {
            format!("{}/{}", n.namespace, n.name)
        } else {
            n.name.clone()
        };
        let _ = writeln!(
            svg,
            r##"<circle class="node" data-name="{}" data-namespace="{}" data-phase="{}" data-tier="{}" cx="{}" cy="{}" r="{dot}" fill="{}" stroke="#ffffff" stroke-width="1"><title>{} · {} · r {:.3}, θ {:.1}°, tier {}</title></circle>"##,
            esc(&n.name),
            esc(&n.namespace),
            n.phase_str(),
            n.tier.unwrap_or(0),
            n4(x),
            n4(y),
            phase_color(n.phase),
            esc(&name),
            n.phase_str(),
            p.r(),
            p.theta_degrees(),
            n.tier.unwrap_or(0)
        );
        let w = CHAR_WIDTH * name.chars().count() as f64;
        let h = LABEL_FONT;
        // Candidate spots around the dot, nearest first; the first free one wins, else the first.
        let mut spot = None;
        'search: for dist in [1.0, 2.2, 3.6] {
            for (dx, dy) in [
                (1.0, 0.0),
                (-1.0, 0.0),
                (0.0, -1.0),
                (0.0, 1.0),
                (1.0, -1.0),
                (-1.0, -1.0),
                (1.0, 1.0),
                (-1.0, 1.0),
            ] {
                let gap = 7.0 * dist;
                let x0 = match dx {
                    d if d > 0.0 => x + gap,
                    d if d < 0.0 => x - gap - w,
                    _ => x - w / 2.0,
                };
                let y0 = match dy {
                    d if d > 0.0 => y + gap,
                    d if d < 0.0 => y - gap - h,
                    _ => y - h / 2.0,
                };
                let b = Box2 {
                    x0,
                    y0,
                    x1: x0 + w,
                    y1: y0 + h,
                };
                if b.x0 < 0.0 || b.x1 > WIDTH - 260.0 || b.y0 < 70.0 || b.y1 > HEIGHT {
                    continue;
                }
                if !taken.overlaps(&b) {
                    spot = Some(b);
                    break 'search;
                }
            }
        }
        let b = spot.unwrap_or(Box2 {
            x0: x + 7.0,
            y0: y - h / 2.0,
            x1: x + 7.0 + w,
            y1: y + h / 2.0,
        });
        taken.push(b);
        let far = (b.x0 - x).max(x - b.x1).max(b.y0 - y).max(y - b.y1) > 12.0;
        if far {
            // a leader line from the dot to the label
            let lx = x.clamp(b.x0, b.x1);
            let ly = y.clamp(b.y0, b.y1);
            let _ = writeln!(
                labels,
                r##"<line class="leader" x1="{}" y1="{}" x2="{}" y2="{}" stroke="#b0bec5" stroke-width="0.6"/>"##,
                n2(x),
                n2(y),
                n2(lx),
                n2(ly)
            );
        }
        let _ = writeln!(
            labels,
            r##"<text class="node-label" data-name="{}" x="{}" y="{}" font-size="{LABEL_FONT}" fill="#263238">{}</text>"##,
            esc(&n.name),
            n2(b.x0),
            n2(b.y1 - 2.0),
            esc(&name)
        );
    }
    svg.push_str("</g>\n<g id=\"labels\">\n");
    svg.push_str(&labels);
    svg.push_str("</g>\n");
}

/// The density cell of a point: its tier band (capped) and its sector in that band.
fn density_cell(p: DiskPoint) -> (u32, u32) {
    let tier = p.tier().min(DENSITY_MAX_TIER);
    let sectors = sectors_of(tier);
    let sector = ((p.theta_radians() / TAU) * f64::from(sectors)).floor() as u32;
    (tier, sector.min(sectors - 1))
}

fn sectors_of(tier: u32) -> u32 {
    DENSITY_SECTORS_0
        .saturating_mul(1u32 << tier.min(16))
        .min(DENSITY_MAX_SECTORS)
}

/// The fill of a density cell holding `count` of at most `max` nodes: a blue ramp on a log scale.
fn density_fill(count: usize, max: usize) -> String {
    let t = if max <= 1 {
        1.0
    } else {
        (count as f64).ln_1p() / (max as f64).ln_1p()
    };
    // from #e3f2fd (light) to #0d47a1 (dark)
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        lerp(227.0, 13.0),
        lerp(242.0, 71.0),
        lerp(253.0, 161.0)
    )
}

/// The placed nodes per density cell, by phase.
fn density_counts(placed: &[&SceneNode]) -> BTreeMap<(u32, u32), BTreeMap<&'static str, usize>> {
    let mut cells: BTreeMap<(u32, u32), BTreeMap<&'static str, usize>> = BTreeMap::new();
    for n in placed {
        let Some(p) = n.point else { continue };
        *cells
            .entry(density_cell(p))
            .or_default()
            .entry(n.phase_str())
            .or_default() += 1;
    }
    cells
}

fn draw_density(svg: &mut String, placed: &[&SceneNode]) {
    let cells = density_counts(placed);
    let max = cells
        .values()
        .map(|c| c.values().sum::<usize>())
        .max()
        .unwrap_or(0);
    svg.push_str("<g id=\"density\" stroke=\"#ffffff\" stroke-width=\"0.3\">\n");
    for ((tier, sector), phases) in &cells {
        let count: usize = phases.values().sum();
        let sectors = sectors_of(*tier);
        let r0 = tier_ring_radius(*tier) * RADIUS;
        let r1 = if *tier == DENSITY_MAX_TIER {
            RADIUS
        } else {
            tier_ring_radius(tier + 1) * RADIUS
        };
        let a0 = TAU * f64::from(*sector) / f64::from(sectors);
        let a1 = TAU * f64::from(sector + 1) / f64::from(sectors);
        let pt = |r: f64, a: f64| (CENTER_X + r * a.cos(), CENTER_Y - r * a.sin());
        let (ox0, oy0) = pt(r1, a0);
        let (ox1, oy1) = pt(r1, a1);
        let (ix1, iy1) = pt(r0, a1);
        let (ix0, iy0) = pt(r0, a0);
        // Counter-clockwise in the disk is clockwise on screen: sweep 0 outward, 1 back inward.
        let d = if r0 == 0.0 {
            format!(
                "M {} {} L {} {} A {} {} 0 0 0 {} {} Z",
                n2(CENTER_X),
                n2(CENTER_Y),
                n2(ox0),
                n2(oy0),
                n2(r1),
                n2(r1),
                n2(ox1),
                n2(oy1)
            )
        } else {
            format!(
                "M {} {} A {} {} 0 0 0 {} {} L {} {} A {} {} 0 0 1 {} {} Z",
                n2(ox0),
                n2(oy0),
                n2(r1),
                n2(r1),
                n2(ox1),
                n2(oy1),
                n2(ix1),
                n2(iy1),
                n2(r0),
                n2(r0),
                n2(ix0),
                n2(iy0)
            )
        };
        let detail: Vec<String> = phases.iter().map(|(p, c)| format!("{p} {c}")).collect();
        let tier_text = if *tier == DENSITY_MAX_TIER {
            format!("tier {tier}+")
        } else {
            format!("tier {tier}")
        };
        let _ = writeln!(
            svg,
            r#"<path class="cell" data-tier="{tier}" data-sector="{sector}" data-count="{count}" d="{d}" fill="{}"><title>{tier_text}, θ {:.1}°–{:.1}°: {count} node{} ({})</title></path>"#,
            density_fill(count, max),
            a0.to_degrees(),
            a1.to_degrees(),
            plural(count),
            detail.join(", ")
        );
    }
    svg.push_str("</g>\n");
}

fn draw_legend(
    svg: &mut String,
    nodes: &[SceneNode],
    density: bool,
    anchors: Vec<(String, usize)>,
    placed: &[&SceneNode],
) {
    let x = WIDTH - 250.0;
    let mut y = 110.0;
    svg.push_str("<g id=\"legend\" font-size=\"12\" fill=\"#263238\">\n");
    legend_heading(svg, x, y, "Phase");
    y += 22.0;
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for n in nodes {
        *counts.entry(n.phase_str()).or_default() += 1;
    }
    for phase in PHASES {
        let name = phase_name(phase);
        let count = counts.get(name).copied().unwrap_or(0);
        if count == 0 && phase.is_none() {
            continue;
        }
        let label = if phase.is_none() {
            "no status yet"
        } else {
            name
        };
        let _ = writeln!(
            svg,
            r##"<circle class="legend-phase" data-phase="{name}" cx="{}" cy="{}" r="5" fill="{}"/><text x="{}" y="{}">{label} · {}</text>"##,
            n2(x + 6.0),
            n2(y - 4.0),
            phase_color(phase),
            n2(x + 18.0),
            n2(y),
            thousands(count)
        );
        y += 20.0;
    }
    y += 14.0;
    legend_heading(svg, x, y, "Geometry");
    y += 22.0;
    legend_line(
        svg,
        x,
        y,
        r##"stroke="#90a4ae" stroke-dasharray="4 4""##,
        "tier ring: hyperbolic radius k·ln 2",
    );
    y += 20.0;
    if density {
        let max = density_counts(placed)
            .values()
            .map(|c| c.values().sum::<usize>())
            .max()
            .unwrap_or(0);
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}">cells between tier rings, 8·2^k per tier:</text>"#,
            n2(x),
            n2(y)
        );
        y += 18.0;
        let steps = [1usize, max.div_ceil(8).max(1), max.div_ceil(2).max(1), max];
        let mut seen = Vec::new();
        for c in steps {
            if seen.contains(&c) {
                continue;
            }
            let bx = x + (seen.len() as f64) * 56.0;
            seen.push(c);
            let _ = writeln!(
                svg,
                r##"<rect class="legend-density" x="{}" y="{}" width="14" height="14" fill="{}" stroke="#b0bec5"/><text x="{}" y="{}">{}</text>"##,
                n2(bx),
                n2(y - 11.0),
                density_fill(c, max),
                n2(bx + 18.0),
                n2(y),
                thousands(c)
            );
        }
        y += 20.0;
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}">nodes per cell (log scale)</text>"#,
            n2(x),
            n2(y)
        );
        y += 20.0;
    } else {
        legend_line(
            svg,
            x,
            y,
            r##"stroke="#37474f" stroke-width="1.4""##,
            "geodesic to its parent",
        );
        y += 20.0;
        legend_line(
            svg,
            x,
            y,
            r##"stroke="#78909c" stroke-dasharray="5 3""##,
            "geodesic to its anchor",
        );
        y += 20.0;
    }
    let _ = writeln!(
        svg,
        r##"<path d="M {} {} L {} {} L {} {} L {} {} Z" fill="#c62828"/><text x="{}" y="{}">anchor point (near.point, origin)</text>"##,
        n2(x + 7.0),
        n2(y - 11.0),
        n2(x + 14.0),
        n2(y - 4.0),
        n2(x + 7.0),
        n2(y + 3.0),
        n2(x),
        n2(y - 4.0),
        n2(x + 18.0),
        n2(y)
    );
    y += 20.0;
    if !density {
        let _ = writeln!(
            svg,
            r##"<circle cx="{}" cy="{}" r="6" fill="none" stroke="#c62828" stroke-width="1.2"/><text x="{}" y="{}">node as anchor (near.agentNode)</text>"##,
            n2(x + 7.0),
            n2(y - 4.0),
            n2(x + 18.0),
            n2(y)
        );
        y += 20.0;
    }
    if !anchors.is_empty() {
        y += 14.0;
        legend_heading(svg, x, y, "Anchors");
        y += 20.0;
        let shown = 12;
        for (name, count) in anchors.iter().take(shown) {
            let _ = writeln!(
                svg,
                r#"<text class="legend-anchor" x="{}" y="{}">{} · {} node{}</text>"#,
                n2(x),
                n2(y),
                esc(name),
                thousands(*count),
                plural(*count)
            );
            y += 18.0;
        }
        if anchors.len() > shown {
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}">… and {} more</text>"#,
                n2(x),
                n2(y),
                anchors.len() - shown
            );
        }
    }
    svg.push_str("</g>\n");
}

/// A legend entry: a short line drawn with `style`, then `text`.
fn legend_line(svg: &mut String, x: f64, y: f64, style: &str, text: &str) {
    let _ = writeln!(
        svg,
        r#"<line x1="{}" y1="{}" x2="{}" y2="{}" {style}/><text x="{}" y="{}">{}</text>"#,
        n2(x),
        n2(y - 4.0),
        n2(x + 14.0),
        n2(y - 4.0),
        n2(x + 18.0),
        n2(y),
        esc(text)
    );
}

fn legend_heading(svg: &mut String, x: f64, y: f64, text: &str) {
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" font-size="14" font-weight="bold">{}</text>"#,
        n2(x),
        n2(y),
        esc(text)
    );
}

/// A number with two decimals, `-0.00` written as `0.00`.
fn n2(v: f64) -> String {
    fixed(v, 2)
}

fn n3(v: f64) -> String {
    fixed(v, 3)
}

fn n4(v: f64) -> String {
    fixed(v, 4)
}

fn fixed(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `12345` as `12,345`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// XML-escapes text and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_fixed_and_never_negative_zero() {
        assert_eq!(n2(-0.001), "0.00");
        assert_eq!(n2(-0.01), "-0.01");
        assert_eq!(n4(1.0), "1.0000");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }

    #[test]
    fn density_cells_follow_tiers_and_angles() {
        let p = DiskPoint::from_polar(0.2, 10.0).expect("point");
        assert_eq!(density_cell(p), (0, 0));
        let q = DiskPoint::from_polar(0.5, 359.9).expect("point"); // tier 1: 16 sectors
        assert_eq!(density_cell(q), (1, 15));
        let far = DiskPoint::from_hyperbolic_polar(11.9, 1.0).expect("point");
        assert_eq!(density_cell(far).0, DENSITY_MAX_TIER);
        assert_eq!(sectors_of(0), 8);
        assert_eq!(sectors_of(20), DENSITY_MAX_SECTORS);
        assert_eq!(density_fill(1, 1), "#0d47a1");
        assert_eq!(density_fill(0, 10), "#e3f2fd");
    }

    #[test]
    fn segment_through_the_origin_is_a_line() {
        let u = DiskPoint::from_polar(0.5, 30.0).expect("point");
        assert!(geodesic_path(DiskPoint::ORIGIN, u).contains(" L "));
        let v = DiskPoint::from_polar(0.5, 60.0).expect("point");
        assert!(geodesic_path(u, v).contains(" A "));
    }
}

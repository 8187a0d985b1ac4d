//! Coordinators: lineage, spawn caps and budgets of AgentNodes (DESIGN.md section 9, issue 11).
//!
//! A node with `spec.parentRef` is a child. The operator re-checks what the spawn admission policy
//! checks (defence in depth, and for clusters without the policy): the parent exists and may spawn,
//! the lineage is not deeper than any ancestor's `maxDepth`, the child's own `spawn` is narrower than
//! its parent's, its stack is one the parent allows, its budget fits in what the parent has left, and
//! the parent has fewer than `maxChildren` live children. A refused child gets `Admitted=False`, phase
//! `Failed`, no workload, and is dissolved after `ttlSecondsAfterFailure`.
//!
//! [`LineageIndex`] keeps, per node, its parent, limits and usage, and per parent its children and
//! the count of live ones (O(1) to read), so admission never scans a namespace. Decisions read only
//! the spec, the operator's own children (workloads), metadata, and the one agent-written field this
//! feature trusts after validation: `status.usage.tokens` (counted monotonically, so an agent cannot
//! lower what it reported).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::EnvVar;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::agent_node::Plan;
use super::agent_node_decide::{DEFAULT_TTL_AFTER_FAILURE, Decision, Workload, metric_met};
use super::context::Context;
use super::index::{Key, key_of};
use crate::api::agent_node::{
    AgentNode, AgentNodeSpec, AgentNodeStatus, Budget, ChildrenStatus, NodePhase, Spawn, Usage,
};
use crate::api::conditions::{condition, find, set_condition};
use crate::error::Error;
use crate::geometry::DiskPoint;
use crate::geometry::rings::{MAX_HYPERBOLIC_RADIUS, RING0_TAU};
use crate::workload::agent::AgentWorkload;
use crate::workload::labels::{
    FIELD_MANAGER, LABEL_DEPTH, LABEL_PARENT, LABEL_ROOT, LABEL_SPAWNER,
};
use crate::workload::meta::{env_value, owner_reference};
use crate::workload::names::label_value;

/// Condition type of the admission verdict.
pub const ADMITTED: &str = "Admitted";
/// Reason: the node may not be spawned at all (no parent, parent without `spawn`, stack or
/// capability not allowed).
pub const SPAWN_NOT_ALLOWED: &str = "SpawnNotAllowed";
/// Reason: a numeric limit is exceeded (maxChildren, maxDepth, a budget).
pub const SPAWN_LIMIT_EXCEEDED: &str = "SpawnLimitExceeded";
/// Reason of the failure of a node over its budget.
pub const BUDGET_EXCEEDED: &str = "BudgetExceeded";
/// Deepest lineage: the schema caps `spawn.maxDepth` at 5, so a chain longer than this is a cycle
/// or a forged parentRef.
pub const MAX_GENERATIONS: usize = 5;
/// How long a child waits for a parent that is not in the cache yet (created in the same apply),
/// counted from the child's creation, before it is refused.
pub const PARENT_GRACE: Duration = Duration::from_secs(10);
/// One Sarkar step: each generation's anchor is this much further from the origin (hyperbolic
/// distance) than its parent's point.
pub const SARKAR_STEP: f64 = RING0_TAU;

/// What the index keeps of a node in a lineage.
#[derive(Clone, Debug, Default)]
struct Rec {
    uid: String,
    parent: Option<String>,
    spawn: Option<Spawn>,
    budget: Option<Budget>,
    /// Deleted, objective met, or finished.
    ended: bool,
    /// The operator's workload exists: (its creation time, whether the Job finished).
    workload: Option<(Option<Timestamp>, bool)>,
    /// A slot of the parent's maxChildren was taken by this process's admission.
    reserved: bool,
    /// Counted among the parent's live children.
    counted: bool,
    /// Counted by a reconcile ([`LineageIndex::admit`]), which cannot queue the parent: the next
    /// watch event of this node does.
    parent_unaware: bool,
    /// Tokens the agent reported (validated, never decreasing).
    tokens: i64,
}

impl Rec {
    fn live(&self) -> bool {
        self.parent.is_some()
            && !self.ended
            && !self.workload.is_some_and(|(_, finished)| finished)
            && (self.reserved || self.workload.is_some())
    }
}

#[derive(Default)]
struct Inner {
    nodes: HashMap<Key, Rec>,
    /// Parent -> names of its children (existing, whatever their state).
    children: HashMap<Key, BTreeSet<String>>,
    /// Parent -> live children.
    live: HashMap<Key, u32>,
    /// Tokens reported by a node's descendants (seen by this process; never decreasing).
    descendant_tokens: HashMap<Key, i64>,
}

/// An ancestor of a node, as admission reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Ancestor {
    pub name: String,
    pub uid: String,
    pub spawn: Option<Spawn>,
    pub budget: Option<Budget>,
    /// Creation of its workload (the start of its wall clock).
    pub started: Option<Timestamp>,
    /// Its own tokens plus its descendants'.
    pub tokens: i64,
}

/// A node's place in its lineage, read from the index.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct View {
    /// Parent first, then its parent, up to the root (or up to a missing ancestor).
    pub ancestors: Vec<Ancestor>,
    /// The walk found the root (an ancestor without parentRef).
    pub complete: bool,
    /// The ancestor the walk could not find (its child names it), when it stopped early.
    pub missing: Option<String>,
    /// The parent's live children.
    pub parent_live: u32,
    /// This node holds one of its parent's slots.
    pub holds_slot: bool,
    /// This node's own children.
    pub children: ChildrenStatus,
    /// This node's tokens plus its descendants'.
    pub tokens: i64,
}

/// The lineage index of one controller scope. Written by the watches (through [`super::index::Index`]),
/// read by reconciles.
#[derive(Default)]
pub struct LineageIndex {
    inner: Mutex<Inner>,
}

/// The agent's token report, as a number the operator may count: a non-negative integer.
fn reported_tokens(node: &AgentNode) -> i64 {
    node.status
        .as_ref()
        .and_then(|s| s.usage.as_ref())
        .and_then(|u| u.tokens)
        .filter(|t| *t >= 0)
        .unwrap_or(0)
}

fn ended(node: &AgentNode) -> bool {
    let metric = node.spec.objective.as_ref().and_then(|o| o.metric.as_ref());
    let observed = node
        .status
        .as_ref()
        .and_then(|s| s.objective.as_ref())
        .and_then(|o| o.observed);
    // An agent writing a final phase only ends its own node (as reporting its metric does).
    let finished = matches!(
        node.status.as_ref().and_then(|s| s.phase),
        Some(NodePhase::Succeeded | NodePhase::Failed | NodePhase::Dissolving)
    );
    node.metadata.deletion_timestamp.is_some()
        || finished
        || matches!((metric, observed), (Some(m), Some(v)) if metric_met(m, v))
}

impl Inner {
    /// Recount whether `key` is a live child; its parent is triggered when that changed (or when
    /// a reconcile changed it since the last watch event).
    fn recount(&mut self, key: &Key, triggers: &mut Vec<Key>) {
        let Some(rec) = self.nodes.get_mut(key) else {
            return;
        };
        let live = rec.live();
        if live == rec.counted {
            if std::mem::take(&mut rec.parent_unaware)
                && let Some(parent) = rec.parent.clone()
            {
                triggers.push((key.0.clone(), parent));
            }
            return;
        }
        rec.parent_unaware = false;
        rec.counted = live;
        let Some(parent) = rec.parent.clone() else {
            return;
        };
        let parent = (key.0.clone(), parent);
        let count = self.live.entry(parent.clone()).or_default();
        if live {
            *count += 1;
        } else {
            *count = count.saturating_sub(1);
        }
        triggers.push(parent);
    }

    /// Add `delta` tokens to every ancestor of `key`; ancestors with a token budget are triggered.
    fn add_tokens_up(&mut self, key: &Key, delta: i64, triggers: &mut Vec<Key>) {
        let mut at = key.clone();
        for _ in 0..=MAX_GENERATIONS {
            let Some(parent) = self.nodes.get(&at).and_then(|r| r.parent.clone()) else {
                return;
            };
            let parent = (key.0.clone(), parent);
            let total = self.descendant_tokens.entry(parent.clone()).or_default();
            *total = total.saturating_add(delta);
            if self
                .nodes
                .get(&parent)
                .and_then(|r| r.budget.as_ref())
                .is_some_and(|b| b.tokens.is_some())
            {
                triggers.push(parent.clone());
            }
            at = parent;
        }
    }

    fn remove(&mut self, key: &Key, triggers: &mut Vec<Key>) {
        if let Some(rec) = self.nodes.get_mut(key) {
            rec.ended = true;
        }
        self.recount(key, triggers);
        self.descendant_tokens.remove(key);
        if let Some(rec) = self.nodes.remove(key)
            && let Some(parent) = rec.parent
        {
            let parent = (key.0.clone(), parent);
            if let Some(set) = self.children.get_mut(&parent) {
                set.remove(&key.1);
                if set.is_empty() {
                    self.children.remove(&parent);
                }
            }
            triggers.push(parent);
        }
    }

    fn tokens_of(&self, key: &Key) -> i64 {
        let own = self.nodes.get(key).map_or(0, |r| r.tokens);
        own.saturating_add(self.descendant_tokens.get(key).copied().unwrap_or(0))
    }
}

impl LineageIndex {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A node was added or changed: returns the nodes to reconcile (its parent when its children
    /// changed, ancestors whose token budget moved).
    pub fn node_applied(&self, node: &AgentNode) -> Vec<Key> {
        let key = key_of(node);
        let mut triggers = Vec::new();
        let mut inner = self.lock();
        let uid = node.uid().unwrap_or_default();
        if inner.nodes.get(&key).is_some_and(|r| r.uid != uid) {
            inner.remove(&key, &mut triggers);
        }
        let previous = inner.nodes.get(&key).cloned();
        let parent = node.spec.parent_ref.as_ref().map(|p| p.name.clone());
        let tokens = previous
            .as_ref()
            .map_or(0, |p| p.tokens)
            .max(reported_tokens(node));
        let delta = tokens - previous.as_ref().map_or(0, |p| p.tokens);
        let rec = Rec {
            uid,
            parent: parent.clone(),
            spawn: node.spec.spawn.clone(),
            budget: node.spec.budget.clone(),
            ended: ended(node),
            workload: previous.as_ref().and_then(|p| p.workload),
            reserved: previous.as_ref().is_some_and(|p| p.reserved),
            counted: previous.as_ref().is_some_and(|p| p.counted),
            parent_unaware: previous.as_ref().is_some_and(|p| p.parent_unaware),
            tokens,
        };
        inner.nodes.insert(key.clone(), rec);
        if previous.is_none()
            && let Some(parent) = parent
        {
            let parent = (key.0.clone(), parent);
            inner
                .children
                .entry(parent.clone())
                .or_default()
                .insert(key.1.clone());
            triggers.push(parent);
        }
        inner.recount(&key, &mut triggers);
        if delta > 0 {
            inner.add_tokens_up(&key, delta, &mut triggers);
            if node
                .spec
                .budget
                .as_ref()
                .is_some_and(|b| b.tokens.is_some())
            {
                triggers.push(key.clone());
            }
        }
        triggers
    }

    /// A node is gone.
    pub fn node_deleted(&self, key: &Key) -> Vec<Key> {
        let mut triggers = Vec::new();
        self.lock().remove(key, &mut triggers);
        triggers
    }

    /// The node's workload (Job or Deployment) was added or changed.
    pub fn workload_applied(
        &self,
        key: &Key,
        created: Option<Timestamp>,
        finished: bool,
    ) -> Vec<Key> {
        let mut triggers = Vec::new();
        let mut inner = self.lock();
        if let Some(rec) = inner.nodes.get_mut(key) {
            rec.workload = Some((created, finished));
        }
        inner.recount(key, &mut triggers);
        triggers
    }

    /// The node's workload is gone.
    pub fn workload_deleted(&self, key: &Key) -> Vec<Key> {
        let mut triggers = Vec::new();
        let mut inner = self.lock();
        if let Some(rec) = inner.nodes.get_mut(key) {
            rec.workload = None;
        }
        inner.recount(key, &mut triggers);
        triggers
    }

    /// Take one of the parent's `max` slots for `key`: Ok(true) when newly taken, Ok(false) when it
    /// already held one, Err(live) when the parent is full.
    pub fn admit(&self, key: &Key, max: u32) -> Result<bool, u32> {
        let mut inner = self.lock();
        let Some(rec) = inner.nodes.get(key) else {
            return Err(0);
        };
        if rec.counted {
            return Ok(false);
        }
        let Some(parent) = rec.parent.clone() else {
            return Ok(false);
        };
        let live = inner
            .live
            .get(&(key.0.clone(), parent))
            .copied()
            .unwrap_or(0);
        if live >= max {
            return Err(live);
        }
        if let Some(rec) = inner.nodes.get_mut(key) {
            rec.reserved = true;
        }
        inner.recount(key, &mut Vec::new());
        if let Some(rec) = inner.nodes.get_mut(key) {
            rec.parent_unaware = true;
        }
        Ok(true)
    }

    /// The node's lineage as admission reads it (O(depth)).
    pub fn view(&self, key: &Key) -> View {
        let inner = self.lock();
        let mut view = View {
            tokens: inner.tokens_of(key),
            children: ChildrenStatus {
                live: i32::try_from(inner.live.get(key).copied().unwrap_or(0)).unwrap_or(i32::MAX),
                total: i32::try_from(inner.children.get(key).map_or(0, BTreeSet::len))
                    .unwrap_or(i32::MAX),
            },
            holds_slot: inner.nodes.get(key).is_some_and(|r| r.counted),
            ..View::default()
        };
        let mut next = inner.nodes.get(key).and_then(|r| r.parent.clone());
        if let Some(parent) = &next {
            view.parent_live = inner
                .live
                .get(&(key.0.clone(), parent.clone()))
                .copied()
                .unwrap_or(0);
        }
        while let Some(name) = next.take() {
            if view.ancestors.len() > MAX_GENERATIONS {
                return view;
            }
            let at = (key.0.clone(), name.clone());
            let Some(rec) = inner.nodes.get(&at) else {
                view.missing = Some(name);
                return view;
            };
            view.ancestors.push(Ancestor {
                name,
                uid: rec.uid.clone(),
                spawn: rec.spawn.clone(),
                budget: rec.budget.clone(),
                started: rec.workload.and_then(|(created, _)| created),
                tokens: inner.tokens_of(&at),
            });
            next = rec.parent.clone();
        }
        view.complete = true;
        view
    }
}

/// The admission verdict of a node.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Verdict {
    /// Not a child (no parentRef): admitted as the root of its own lineage.
    #[default]
    Root,
    /// A child within every cap.
    Admitted { root: String, depth: usize },
    /// The parent is not known yet: look again after this long.
    Wait(Duration),
    /// Refused: the condition reason and a message naming the limit.
    Refused {
        reason: &'static str,
        message: String,
    },
}

/// What admission reads besides the lineage view.
#[derive(Clone, Debug)]
pub struct AdmissionInput<'a> {
    pub spec: &'a AgentNodeSpec,
    pub view: &'a View,
    /// The node's workload exists: it was admitted before (possibly by an earlier process).
    pub started: bool,
    /// A refusal the operator recorded earlier (`Admitted=False` on a node without a workload).
    pub refused_before: Option<(&'static str, String)>,
    /// Seconds since the node was created.
    pub age: Duration,
    pub now: Timestamp,
}

fn refused(reason: &'static str, message: String) -> Verdict {
    Verdict::Refused { reason, message }
}

/// How many seconds of an ancestor's wall-clock budget remain.
fn wall_clock_left(a: &Ancestor, now: Timestamp) -> Option<i64> {
    let limit = a.budget.as_ref()?.wall_clock_seconds?;
    let used = a
        .started
        .map_or(0, |s| now.duration_since(s).as_secs().max(0));
    Some(limit - used)
}

/// Decide whether a node may exist where its parentRef puts it (pure). The maxChildren count is
/// taken atomically afterwards ([`LineageIndex::admit`]).
pub fn admission(i: &AdmissionInput<'_>) -> Verdict {
    let Some(parent_ref) = &i.spec.parent_ref else {
        return Verdict::Root;
    };
    let view = i.view;
    let root_depth = || {
        let root = view
            .ancestors
            .last()
            .map_or_else(|| parent_ref.name.clone(), |a| a.name.clone());
        (root, view.ancestors.len())
    };
    if i.started {
        let (root, depth) = root_depth();
        return Verdict::Admitted { root, depth };
    }
    if let Some((reason, message)) = &i.refused_before {
        return refused(reason, message.clone());
    }
    let parent_name = &parent_ref.name;
    let Some(parent) = view.ancestors.first() else {
        if i.age < PARENT_GRACE {
            return Verdict::Wait(PARENT_GRACE - i.age);
        }
        return refused(
            SPAWN_NOT_ALLOWED,
            format!("spec.parentRef.name: AgentNode {parent_name} not found"),
        );
    };
    if let Some(missing) = &view.missing {
        return refused(
            SPAWN_NOT_ALLOWED,
            format!(
                "spec.parentRef.name: the lineage of AgentNode {parent_name} is broken: AgentNode {missing} not found"
            ),
        );
    }
    if !view.complete {
        return refused(
            SPAWN_LIMIT_EXCEEDED,
            format!(
                "spec.parentRef.name: the lineage above AgentNode {parent_name} is deeper than {MAX_GENERATIONS} generations (or a cycle)"
            ),
        );
    }
    // Every ancestor k generations above may spawn that deep.
    for (k, a) in view.ancestors.iter().enumerate() {
        let generation = k + 1;
        let Some(spawn) = &a.spawn else {
            return refused(
                SPAWN_NOT_ALLOWED,
                if k == 0 {
                    format!(
                        "spec.parentRef.name: AgentNode {} has no spec.spawn",
                        a.name
                    )
                } else {
                    format!(
                        "spec.parentRef.name: ancestor AgentNode {} has no spec.spawn",
                        a.name
                    )
                },
            );
        };
        if usize::try_from(spawn.max_depth).unwrap_or(0) < generation {
            return refused(
                SPAWN_LIMIT_EXCEEDED,
                format!(
                    "maxDepth: AgentNode {} allows {} generation(s) below it (spec.spawn.maxDepth), this node would be generation {generation}",
                    a.name, spawn.max_depth
                ),
            );
        }
    }
    let Some(limits) = &parent.spawn else {
        return refused(
            SPAWN_NOT_ALLOWED,
            format!("spec.parentRef.name: AgentNode {parent_name} has no spec.spawn"),
        );
    };
    let stack = &i.spec.stack_ref.name;
    if !limits.stacks.is_empty() && !limits.stacks.contains(stack) {
        return refused(
            SPAWN_NOT_ALLOWED,
            format!(
                "spec.stackRef.name: stack {stack} is not in AgentNode {parent_name}'s spec.spawn.stacks [{}]",
                limits.stacks.join(", ")
            ),
        );
    }
    if let Some(own) = &i.spec.spawn {
        if own.max_depth > limits.max_depth - 1 {
            return refused(
                SPAWN_LIMIT_EXCEEDED,
                format!(
                    "spec.spawn.maxDepth: {} is not below AgentNode {parent_name}'s maxDepth {}",
                    own.max_depth, limits.max_depth
                ),
            );
        }
        if own.max_children > limits.max_children {
            return refused(
                SPAWN_LIMIT_EXCEEDED,
                format!(
                    "spec.spawn.maxChildren: {} is more than AgentNode {parent_name}'s maxChildren {}",
                    own.max_children, limits.max_children
                ),
            );
        }
        if !limits.stacks.is_empty()
            && (own.stacks.is_empty() || own.stacks.iter().any(|s| !limits.stacks.contains(s)))
        {
            return refused(
                SPAWN_NOT_ALLOWED,
                format!(
                    "spec.spawn.stacks: must be a subset of AgentNode {parent_name}'s spec.spawn.stacks [{}]",
                    limits.stacks.join(", ")
                ),
            );
        }
        if own.create_stacks && !limits.create_stacks {
            return refused(
                SPAWN_NOT_ALLOWED,
                format!(
                    "spec.spawn.createStacks: AgentNode {parent_name} may not create AgentStacks"
                ),
            );
        }
    }
    if let Some(budget) = &i.spec.budget {
        if let (Some(want), Some(limit)) =
            (budget.tokens, parent.budget.as_ref().and_then(|b| b.tokens))
        {
            let left = limit - parent.tokens;
            if want > left {
                return refused(
                    SPAWN_LIMIT_EXCEEDED,
                    format!(
                        "spec.budget.tokens: {want} is more than AgentNode {parent_name} has left ({left} of {limit})"
                    ),
                );
            }
        }
        if let (Some(want), Some(left)) =
            (budget.wall_clock_seconds, wall_clock_left(parent, i.now))
            && want > left
        {
            return refused(
                SPAWN_LIMIT_EXCEEDED,
                format!(
                    "spec.budget.wallClockSeconds: {want} is more than AgentNode {parent_name} has left ({left}s)"
                ),
            );
        }
    }
    let (root, depth) = root_depth();
    Verdict::Admitted { root, depth }
}

/// Why a running node is over its budget, if it is (pure): wall clock from its workload's start,
/// tokens its own plus its subtree's.
pub fn over_budget(
    budget: Option<&Budget>,
    started: Option<Timestamp>,
    tokens: i64,
    now: Timestamp,
) -> Option<String> {
    let budget = budget?;
    if let Some(limit) = budget.tokens
        && tokens > limit
    {
        return Some(format!(
            "spec.budget.tokens: {tokens} tokens used (with its children), budget {limit}"
        ));
    }
    if let (Some(limit), Some(start)) = (budget.wall_clock_seconds, started) {
        let used = now.duration_since(start).as_secs();
        if used > limit {
            return Some(format!(
                "spec.budget.wallClockSeconds: running for {used}s, budget {limit}s"
            ));
        }
    }
    None
}

/// The anchor of a child placed by its lineage: the parent's point moved one [`SARKAR_STEP`] further
/// from the origin along its ray (a parent at the origin anchors its children at the origin, whose
/// rings are already a step out). Children then spread around it by their tags, as any node.
pub fn child_anchor(parent: DiskPoint) -> DiskPoint {
    let rho = parent.hyperbolic_radius();
    if rho <= f64::EPSILON {
        return parent;
    }
    let out = (rho + SARKAR_STEP)
        .min(MAX_HYPERBOLIC_RADIUS - 1.0)
        .max(rho);
    DiskPoint::from_hyperbolic_polar(out, parent.theta_radians()).unwrap_or(parent)
}

/// What a reconcile knows of the node's lineage.
#[derive(Clone, Debug, Default)]
pub struct Lineage {
    pub verdict: Verdict,
    pub view: View,
    /// This reconcile took a slot of the parent: the parent gets a `Spawned` Event.
    pub newly_admitted: bool,
    /// The labels and owner reference to apply to the node (server-side apply), when they differ.
    pub metadata: Option<serde_json::Value>,
    /// Over budget (a message naming the limit).
    pub over_budget: Option<String>,
    /// When the wall-clock budget of a running node runs out.
    pub wall_clock_left: Option<Duration>,
}

impl Lineage {
    /// The node is not (yet) admitted: it is not placed and runs nothing.
    pub fn blocks(&self) -> bool {
        matches!(self.verdict, Verdict::Wait(_) | Verdict::Refused { .. })
    }
}

/// The operator refused the node (`Admitted=False` with a spawn reason): it runs nothing and needs no
/// model. Only the operator writes that condition on a node without a workload (no agent identity
/// exists for it).
pub fn is_refused(node: &AgentNode) -> bool {
    recorded_refusal(node).is_some()
}

fn recorded_refusal(node: &AgentNode) -> Option<(&'static str, String)> {
    let c = find(&node.status.as_ref()?.conditions, ADMITTED)?;
    if c.status != "False" {
        return None;
    }
    let reason = [SPAWN_NOT_ALLOWED, SPAWN_LIMIT_EXCEEDED]
        .into_iter()
        .find(|r| *r == c.reason)?;
    Some((reason, c.message.clone()))
}

/// The labels (and owner reference) a lineage node should carry, as a server-side apply document;
/// None when it carries them already or is not part of a lineage.
fn desired_metadata(node: &AgentNode, verdict: &Verdict, view: &View) -> Option<serde_json::Value> {
    let mut labels = BTreeMap::new();
    match verdict {
        Verdict::Root if node.spec.spawn.is_some() => {
            labels.insert(LABEL_ROOT, label_value(&node.name_any()));
            labels.insert(LABEL_DEPTH, "0".to_string());
        }
        Verdict::Root | Verdict::Wait(_) => {}
        Verdict::Admitted { root, depth } => {
            labels.insert(LABEL_ROOT, label_value(root));
            labels.insert(LABEL_DEPTH, depth.to_string());
        }
        Verdict::Refused { .. } => {}
    }
    let parent = node.spec.parent_ref.as_ref().map(|p| p.name.clone());
    if let Some(parent) = &parent
        && !view.ancestors.is_empty()
    {
        labels.insert(LABEL_PARENT, label_value(parent));
    }
    if node.spec.spawn.is_some() {
        labels.insert(LABEL_SPAWNER, "true".to_string());
    }
    let owner = match (&parent, view.ancestors.first()) {
        (Some(parent), Some(a)) => Some(owner_reference("AgentNode", parent, &a.uid)),
        _ => None,
    };
    let current = node.metadata.labels.clone().unwrap_or_default();
    let labels_ok = labels
        .iter()
        .all(|(k, v)| current.get(*k).map(String::as_str) == Some(v.as_str()));
    let owner_ok = owner.as_ref().is_none_or(|o| {
        node.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.uid == o.uid)
    });
    if labels_ok && owner_ok {
        return None;
    }
    let mut metadata = json!({"name": node.name_any(), "labels": labels});
    if let Some(owner) = owner {
        metadata["ownerReferences"] = json!([owner]);
    }
    Some(json!({
        "apiVersion": "hypersync.io/v1alpha1",
        "kind": "AgentNode",
        "metadata": metadata,
    }))
}

/// Read the node's lineage and decide its admission; an admitted child takes its slot of the
/// parent's maxChildren here (atomically, in the index).
pub fn read(
    ctx: &Context,
    node: &AgentNode,
    now: Timestamp,
    started: bool,
    started_at: Option<Timestamp>,
) -> Lineage {
    if node.spec.parent_ref.is_none() && node.spec.spawn.is_none() && node.spec.budget.is_none() {
        // Not a coordinator, a child or a budgeted node: nothing to read, nothing to write.
        return Lineage::default();
    }
    let key = key_of(node);
    let view = ctx.index.lineage.view(&key);
    let age = node
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(Duration::ZERO, |c| {
            now.duration_since(c.0).try_into().unwrap_or(Duration::ZERO)
        });
    let mut verdict = admission(&AdmissionInput {
        spec: &node.spec,
        view: &view,
        started,
        refused_before: if started {
            None
        } else {
            recorded_refusal(node)
        },
        age,
        now,
    });
    let mut newly_admitted = false;
    if let (Verdict::Admitted { .. }, false) = (&verdict, started)
        && let Some(limits) = view.ancestors.first().and_then(|a| a.spawn.as_ref())
    {
        let max = u32::try_from(limits.max_children).unwrap_or(0);
        match ctx.index.lineage.admit(&key, max) {
            Ok(newly) => newly_admitted = newly,
            Err(live) => {
                let parent = node
                    .spec
                    .parent_ref
                    .as_ref()
                    .map(|p| p.name.clone())
                    .unwrap_or_default();
                verdict = refused(
                    SPAWN_LIMIT_EXCEEDED,
                    format!(
                        "maxChildren: AgentNode {parent} has {live} live children (spec.spawn.maxChildren {})",
                        limits.max_children
                    ),
                );
            }
        }
    }
    let metadata = desired_metadata(node, &verdict, &view);
    let over_budget = over_budget(node.spec.budget.as_ref(), started_at, view.tokens, now);
    let wall_clock_left = match (
        node.spec.budget.as_ref().and_then(|b| b.wall_clock_seconds),
        started_at,
    ) {
        (Some(limit), Some(start)) => {
            let end = start + SignedDuration::from_secs(limit.saturating_add(1));
            Some(end.duration_since(now).try_into().unwrap_or(Duration::ZERO))
        }
        _ => None,
    };
    Lineage {
        verdict,
        view,
        newly_admitted,
        metadata,
        over_budget,
        wall_clock_left,
    }
}

/// The plan of a node that is not admitted: waiting for its parent (nothing written), or refused
/// (`Admitted=False`, phase Failed, a Warning Event once, dissolved after ttlSecondsAfterFailure).
pub fn refused_plan(node: &AgentNode, lineage: &Lineage, now: Timestamp) -> Option<Plan> {
    let (reason, message) = match &lineage.verdict {
        Verdict::Wait(wait) => {
            return Some(Plan {
                requeue_after: Some(*wait),
                ..Plan::default()
            });
        }
        Verdict::Refused { reason, message } => (*reason, message.clone()),
        Verdict::Root | Verdict::Admitted { .. } => return None,
    };
    let generation = node.metadata.generation;
    let old = node.status.clone().unwrap_or_default();
    let mut status = old.clone();
    status.observed_generation = generation;
    let was = find(&old.conditions, ADMITTED).map(|c| (c.status.clone(), c.reason.clone()));
    set_condition(
        &mut status.conditions,
        condition(
            ADMITTED,
            false,
            reason,
            message.clone(),
            generation,
            Time(now),
        ),
    );
    status.phase = Some(NodePhase::Failed);
    let done = old.completion_time.as_ref().map_or(now, |t| t.0);
    status.completion_time = Some(Time(done));
    let mut plan = Plan::default();
    if was != Some(("False".into(), reason.to_string())) {
        plan.events.push((EventType::Warning, reason, message));
    }
    let ttl = node
        .spec
        .lifecycle
        .as_ref()
        .and_then(|l| l.ttl_seconds_after_failure)
        .unwrap_or(DEFAULT_TTL_AFTER_FAILURE);
    let at = done + SignedDuration::from_secs(ttl.max(0));
    if at <= now {
        plan.dissolve = true;
    } else {
        plan.requeue_after = Some(
            at.duration_since(now)
                .try_into()
                .unwrap_or(Duration::from_secs(1)),
        );
    }
    if !plan.dissolve && status != old {
        plan.status = Some(status);
    }
    Some(plan)
}

/// A running node over its budget fails: its workload is stopped (the caller stops it when
/// `run_workload` turns false on a node that ran), phase Failed, reason BudgetExceeded.
/// Returns the message when it did.
pub fn enforce_budget(
    decision: &mut Decision,
    lineage: &Lineage,
    running: bool,
    ttl: u64,
    now: Timestamp,
) -> Option<String> {
    if !running || !matches!(decision.phase, NodePhase::Running | NodePhase::Provisioning) {
        return None;
    }
    let Some(message) = lineage.over_budget.as_ref() else {
        // Look again when the wall clock runs out.
        if let Some(left) = lineage.wall_clock_left {
            let left = left.max(Duration::from_secs(1));
            decision.requeue_after = Some(decision.requeue_after.map_or(left, |r| r.min(left)));
        }
        return None;
    };
    decision.phase = NodePhase::Failed;
    decision.run_workload = false;
    decision.objective_met = false;
    decision.conditions.retain(|c| c.0 != "ObjectiveMet");
    decision
        .conditions
        .push(("ObjectiveMet", false, BUDGET_EXCEEDED, message.clone()));
    decision.completion_time = Some(decision.completion_time.unwrap_or(now));
    decision.dissolve = false;
    decision.requeue_after = Some(Duration::from_secs(ttl));
    Some(message.clone())
}

/// Fold the lineage into the status the reconcile writes anyway: `Admitted=True`, the children
/// counts of a spawner, and the wall clock of a budgeted node.
pub fn annotate(
    status: &mut AgentNodeStatus,
    node: &AgentNode,
    lineage: &Lineage,
    started: Option<Timestamp>,
    now: Timestamp,
) {
    let generation = node.metadata.generation;
    let message = match &lineage.verdict {
        Verdict::Root => "not spawned by another node".to_string(),
        Verdict::Admitted { root, depth } => format!(
            "spawned by {} within its limits (root {root}, depth {depth})",
            node.spec
                .parent_ref
                .as_ref()
                .map(|p| p.name.as_str())
                .unwrap_or_default()
        ),
        Verdict::Wait(_) | Verdict::Refused { .. } => return,
    };
    set_condition(
        &mut status.conditions,
        condition(ADMITTED, true, "Admitted", message, generation, Time(now)),
    );
    if node.spec.spawn.is_some() {
        status.children = Some(lineage.view.children.clone());
    }
    if let Some(budget) = &node.spec.budget
        && budget.wall_clock_seconds.is_some()
        && let Some(start) = started
    {
        // Written once, with the status write that ends the node, not every second.
        if status
            .phase
            .is_some_and(|p| matches!(p, NodePhase::Succeeded | NodePhase::Failed))
        {
            let end = status.completion_time.as_ref().map_or(now, |t| t.0);
            status
                .usage
                .get_or_insert_with(Usage::default)
                .wall_clock_seconds = Some(end.duration_since(start).as_secs().max(0));
        }
    }
}

/// Apply the lineage labels and the owner reference to the parent (server-side apply of metadata
/// only, one write for a child, never for nodes outside lineages).
pub async fn apply_metadata(
    api: &Api<AgentNode>,
    node: &AgentNode,
    lineage: &Lineage,
) -> Result<(), Error> {
    let Some(doc) = &lineage.metadata else {
        return Ok(());
    };
    api.patch(
        &node.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(doc),
    )
    .await
    .map_err(Error::kube("apply the AgentNode's lineage labels"))?;
    Ok(())
}

/// The `Spawned` Event on the parent, naming the child.
pub async fn record_spawned(ctx: &Context, node: &AgentNode, lineage: &Lineage) {
    let (Some(parent), Verdict::Admitted { root, depth }) =
        (lineage.view.ancestors.first(), &lineage.verdict)
    else {
        return;
    };
    if !lineage.newly_admitted {
        return;
    }
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("hypersync.io/v1alpha1".into()),
        kind: Some("AgentNode".into()),
        name: Some(parent.name.clone()),
        namespace: node.namespace(),
        uid: Some(parent.uid.clone()),
        ..Default::default()
    };
    ctx.event(
        &reference,
        EventType::Normal,
        "Spawned",
        "Spawn",
        format!(
            "spawned AgentNode {} (stack {}, depth {depth} under {root}, {} of {} live children)",
            node.name_any(),
            node.spec.stack_ref.name,
            lineage.view.parent_live + 1,
            parent.spawn.as_ref().map_or(0, |s| s.max_children),
        ),
    )
    .await;
}

/// Stop the workload of a node over budget: a Job is suspended (its pods end), a Deployment scaled
/// to 0 (merge patches of the operator's own children).
pub async fn stop_workload(
    ctx: &Context,
    node: &AgentNode,
    kind: &str,
    name: &str,
) -> Result<(), Error> {
    let namespace = node.namespace().unwrap_or_default();
    let params = PatchParams::default();
    match kind {
        "Job" => {
            Api::<k8s_openapi::api::batch::v1::Job>::namespaced(ctx.client.clone(), &namespace)
                .patch(
                    name,
                    &params,
                    &Patch::Merge(json!({"spec": {"suspend": true}})),
                )
                .await
                .map(|_| ())
        }
        _ => Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(
            ctx.client.clone(),
            &namespace,
        )
        .patch(
            name,
            &params,
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .map(|_| ()),
    }
    .or_else(|err| match err {
        kube::Error::Api(s) if s.code == 404 => Ok(()),
        err => Err(err),
    })
    .map_err(Error::kube("stop the workload of a node over budget"))
}

/// The agent's view of its own rights and lineage, as environment variables (only for nodes that
/// spawn, are spawned, or have a budget).
pub fn env(node: &AgentNode, lineage: &Lineage) -> Vec<EnvVar> {
    let mut env = Vec::new();
    if let Some(spawn) = &node.spec.spawn {
        env.push(env_value("HYPERSYNC_CAN_SPAWN", "true"));
        env.push(env_value(
            "HYPERSYNC_SPAWN_MAX_CHILDREN",
            spawn.max_children.to_string(),
        ));
        env.push(env_value(
            "HYPERSYNC_SPAWN_MAX_DEPTH",
            spawn.max_depth.to_string(),
        ));
        env.push(env_value("HYPERSYNC_SPAWN_STACKS", spawn.stacks.join(",")));
        env.push(env_value(
            "HYPERSYNC_SPAWN_CREATE_STACKS",
            spawn.create_stacks.to_string(),
        ));
    } else if node.spec.parent_ref.is_some() {
        env.push(env_value("HYPERSYNC_CAN_SPAWN", "false"));
    }
    if let Some(parent) = &node.spec.parent_ref {
        env.push(env_value("HYPERSYNC_PARENT", parent.name.clone()));
    }
    match &lineage.verdict {
        Verdict::Admitted { root, depth } => {
            env.push(env_value("HYPERSYNC_LINEAGE_ROOT", root.clone()));
            env.push(env_value("HYPERSYNC_LINEAGE_DEPTH", depth.to_string()));
        }
        Verdict::Root if node.spec.spawn.is_some() => {
            env.push(env_value("HYPERSYNC_LINEAGE_ROOT", node.name_any()));
            env.push(env_value("HYPERSYNC_LINEAGE_DEPTH", "0"));
        }
        _ => {}
    }
    if let Some(budget) = &node.spec.budget {
        if let Some(t) = budget.tokens {
            env.push(env_value("HYPERSYNC_BUDGET_TOKENS", t.to_string()));
        }
        if let Some(s) = budget.wall_clock_seconds {
            env.push(env_value(
                "HYPERSYNC_BUDGET_WALL_CLOCK_SECONDS",
                s.to_string(),
            ));
        }
    }
    env
}

/// Add [`env`] to the agent container of a built workload (before its digest is taken).
pub fn add_env(workload: &mut AgentWorkload, node: &AgentNode, lineage: &Lineage) {
    let extra = env(node, lineage);
    if extra.is_empty() {
        return;
    }
    let spec = match workload {
        AgentWorkload::Job(job) => job.spec.as_mut().and_then(|s| s.template.spec.as_mut()),
        AgentWorkload::Deployment(d) => d.spec.as_mut().and_then(|s| s.template.spec.as_mut()),
    };
    if let Some(container) = spec.and_then(|s| s.containers.first_mut()) {
        let env = container.env.get_or_insert_with(Vec::new);
        env.retain(|e| !extra.iter().any(|x| x.name == e.name));
        env.extend(extra);
    }
}

/// The workload is considered started by the operator's own child (never by status).
pub fn started(workload: &Workload) -> bool {
    *workload != Workload::Absent
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, extra: serde_json::Value) -> AgentNode {
        let mut v = json!({
            "apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode",
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
            "spec": {"stackRef": {"name": "analyst"}}
        });
        if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
            for (k, val) in extra {
                spec.insert(k.clone(), val.clone());
            }
        }
        serde_json::from_value(v).expect("node")
    }

    fn key(name: &str) -> Key {
        ("ns".to_string(), name.to_string())
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).expect("time")
    }

    fn verdict_of(index: &LineageIndex, n: &AgentNode) -> Verdict {
        let view = index.view(&key_of(n));
        admission(&AdmissionInput {
            spec: &n.spec,
            view: &view,
            started: false,
            refused_before: None,
            age: Duration::from_secs(60),
            now: at(100),
        })
    }

    fn reason(v: &Verdict) -> (&'static str, String) {
        match v {
            Verdict::Refused { reason, message } => (*reason, message.clone()),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_child_within_its_parents_limits_is_admitted_with_its_lineage() {
        let index = LineageIndex::default();
        let root = node(
            "coordinator",
            json!({"spawn": {"maxChildren": 2, "maxDepth": 2, "stacks": ["analyst"]}}),
        );
        let mid = node(
            "lead",
            json!({"parentRef": {"name": "coordinator"}, "spawn": {"maxChildren": 1, "maxDepth": 1, "stacks": ["analyst"]}}),
        );
        let leaf = node("analyst-1", json!({"parentRef": {"name": "lead"}}));
        for n in [&root, &mid, &leaf] {
            index.node_applied(n);
        }
        assert_eq!(verdict_of(&index, &root), Verdict::Root);
        assert_eq!(
            verdict_of(&index, &mid),
            Verdict::Admitted {
                root: "coordinator".into(),
                depth: 1
            }
        );
        assert_eq!(
            verdict_of(&index, &leaf),
            Verdict::Admitted {
                root: "coordinator".into(),
                depth: 2
            }
        );
        // A fourth generation is deeper than the root's maxDepth 2 allows (and lead's 1).
        let too_deep = node("deep", json!({"parentRef": {"name": "analyst-1"}}));
        index.node_applied(&too_deep);
        let (r, m) = reason(&verdict_of(&index, &too_deep));
        assert_eq!(r, SPAWN_NOT_ALLOWED, "analyst-1 has no spawn: {m}");
        let leaf_spawner = node(
            "analyst-2",
            json!({"parentRef": {"name": "lead"}, "spawn": {"maxChildren": 1, "maxDepth": 1}}),
        );
        index.node_applied(&leaf_spawner);
        let (r, m) = reason(&verdict_of(&index, &leaf_spawner));
        assert_eq!(r, SPAWN_LIMIT_EXCEEDED);
        assert!(m.starts_with("spec.spawn.maxDepth: 1 is not below"), "{m}");
    }

    #[test]
    fn each_cap_is_named_in_the_refusal() {
        let index = LineageIndex::default();
        index.node_applied(&node("plain", json!({})));
        index.node_applied(&node(
            "coordinator",
            json!({"spawn": {"maxChildren": 1, "maxDepth": 1, "stacks": ["analyst"]},
                   "budget": {"tokens": 1000}}),
        ));
        let cases = [
            (
                json!({"parentRef": {"name": "ghost"}}),
                SPAWN_NOT_ALLOWED,
                "spec.parentRef.name: AgentNode ghost not found",
            ),
            (
                json!({"parentRef": {"name": "plain"}}),
                SPAWN_NOT_ALLOWED,
                "AgentNode plain has no spec.spawn",
            ),
            (
                json!({"parentRef": {"name": "coordinator"}, "stackRef": {"name": "other"}}),
                SPAWN_NOT_ALLOWED,
                "spec.stackRef.name: stack other is not in",
            ),
            (
                json!({"parentRef": {"name": "coordinator"}, "spawn": {"maxChildren": 2, "maxDepth": 1}}),
                SPAWN_LIMIT_EXCEEDED,
                "spec.spawn.maxDepth",
            ),
            (
                json!({"parentRef": {"name": "coordinator"}, "budget": {"tokens": 1001}}),
                SPAWN_LIMIT_EXCEEDED,
                "spec.budget.tokens: 1001 is more than AgentNode coordinator has left (1000 of 1000)",
            ),
        ];
        for (i, (extra, want_reason, want_message)) in cases.into_iter().enumerate() {
            let n = node(&format!("child-{i}"), extra);
            index.node_applied(&n);
            let (r, m) = reason(&verdict_of(&index, &n));
            assert_eq!(r, want_reason, "{m}");
            assert!(
                m.contains(want_message),
                "{m} should contain {want_message}"
            );
        }
    }

    #[test]
    fn a_missing_parent_is_awaited_for_a_grace_then_refused() {
        let index = LineageIndex::default();
        let n = node("early", json!({"parentRef": {"name": "later"}}));
        index.node_applied(&n);
        let view = index.view(&key_of(&n));
        let input = |age| AdmissionInput {
            spec: &n.spec,
            view: &view,
            started: false,
            refused_before: None,
            age: Duration::from_secs(age),
            now: at(0),
        };
        assert_eq!(admission(&input(3)), Verdict::Wait(Duration::from_secs(7)));
        assert!(matches!(admission(&input(10)), Verdict::Refused { .. }));
        // Started earlier (its workload exists): admitted whatever the caps say now.
        let started = AdmissionInput {
            started: true,
            ..input(100)
        };
        assert!(matches!(admission(&started), Verdict::Admitted { .. }));
    }

    #[test]
    fn max_children_counts_live_children_in_the_index() {
        let index = LineageIndex::default();
        index.node_applied(&node("coordinator", json!({"spawn": {"maxChildren": 2}})));
        let kids: Vec<AgentNode> = (0..3)
            .map(|i| {
                node(
                    &format!("kid-{i}"),
                    json!({"parentRef": {"name": "coordinator"}}),
                )
            })
            .collect();
        for k in &kids {
            assert_eq!(index.node_applied(k), vec![key("coordinator")]);
        }
        assert_eq!(index.admit(&key("kid-0"), 2), Ok(true));
        assert_eq!(
            index.admit(&key("kid-0"), 2),
            Ok(false),
            "already holds its slot"
        );
        assert_eq!(index.admit(&key("kid-1"), 2), Ok(true));
        assert_eq!(index.admit(&key("kid-2"), 2), Err(2));
        // The reconcile that took kid-1's slot cannot queue the parent; kid-1's next watch event
        // does, once.
        assert!(index.node_applied(&kids[1]).contains(&key("coordinator")));
        assert!(!index.node_applied(&kids[1]).contains(&key("coordinator")));
        let view = index.view(&key("coordinator"));
        assert_eq!(view.children, ChildrenStatus { live: 2, total: 3 });
        // kid-0's Job finishes: its slot is free again.
        let triggered = index.workload_applied(&key("kid-0"), Some(at(0)), true);
        assert_eq!(triggered, vec![key("coordinator")]);
        assert_eq!(index.admit(&key("kid-2"), 2), Ok(true));
        index.node_deleted(&key("kid-1"));
        let view = index.view(&key("coordinator"));
        assert_eq!(view.children, ChildrenStatus { live: 1, total: 2 });
        // After a restart, a child with a running workload counts without a reservation.
        let fresh = LineageIndex::default();
        fresh.node_applied(&node("coordinator", json!({"spawn": {"maxChildren": 2}})));
        fresh.node_applied(&kids[1]);
        fresh.workload_applied(&key("kid-1"), Some(at(0)), false);
        assert_eq!(fresh.view(&key("coordinator")).children.live, 1);
    }

    #[test]
    fn tokens_add_up_the_lineage_and_never_go_down() {
        let index = LineageIndex::default();
        let mut root = node(
            "coordinator",
            json!({"spawn": {"maxDepth": 2}, "budget": {"tokens": 100}}),
        );
        index.node_applied(&root);
        let mut mid = node(
            "lead",
            json!({"parentRef": {"name": "coordinator"}, "spawn": {"maxDepth": 1}}),
        );
        index.node_applied(&mid);
        let mut leaf = node("leaf", json!({"parentRef": {"name": "lead"}}));
        index.node_applied(&leaf);
        let report = |n: &mut AgentNode, tokens: i64| {
            n.status = Some(AgentNodeStatus {
                usage: Some(Usage {
                    tokens: Some(tokens),
                    wall_clock_seconds: None,
                }),
                ..AgentNodeStatus::default()
            });
        };
        report(&mut leaf, 40);
        let triggered = index.node_applied(&leaf);
        assert!(triggered.contains(&key("coordinator")), "{triggered:?}");
        report(&mut mid, 30);
        index.node_applied(&mid);
        report(&mut root, 20);
        index.node_applied(&root);
        assert_eq!(index.view(&key("coordinator")).tokens, 90);
        assert_eq!(index.view(&key("lead")).tokens, 70);
        // A lower or negative report (an agent undoing its spending) changes nothing.
        report(&mut leaf, 1);
        index.node_applied(&leaf);
        report(&mut mid, -500);
        index.node_applied(&mid);
        assert_eq!(index.view(&key("coordinator")).tokens, 90);
        report(&mut leaf, 51);
        index.node_applied(&leaf);
        assert_eq!(index.view(&key("coordinator")).tokens, 101);
        let budget = root.spec.budget.clone();
        assert!(
            over_budget(budget.as_ref(), None, 101, at(0))
                .is_some_and(|m| m.starts_with("spec.budget.tokens: 101"))
        );
        assert_eq!(over_budget(budget.as_ref(), None, 100, at(0)), None);
        let wall = Budget {
            wall_clock_seconds: Some(60),
            tokens: None,
        };
        assert_eq!(over_budget(Some(&wall), Some(at(0)), 0, at(60)), None);
        assert!(over_budget(Some(&wall), Some(at(0)), 0, at(61)).is_some());
    }

    #[test]
    fn a_refused_child_fails_once_and_dissolves_after_its_failure_ttl() {
        let n = node(
            "refused",
            json!({"parentRef": {"name": "ghost"}, "lifecycle": {"ttlSecondsAfterFailure": 30}}),
        );
        let lineage = Lineage {
            verdict: Verdict::Refused {
                reason: SPAWN_NOT_ALLOWED,
                message: "spec.parentRef.name: AgentNode ghost not found".into(),
            },
            ..Lineage::default()
        };
        let plan = refused_plan(&n, &lineage, at(0)).expect("a plan");
        let status = plan.status.expect("status written");
        assert_eq!(status.phase, Some(NodePhase::Failed));
        let c = find(&status.conditions, ADMITTED).expect("Admitted");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", SPAWN_NOT_ALLOWED)
        );
        assert_eq!(plan.events.len(), 1);
        assert!(!plan.run_workload && !plan.dissolve);
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(30)));
        let mut written = n.clone();
        written.status = Some(status);
        let again = refused_plan(&written, &lineage, at(10)).expect("a plan");
        assert!(
            again.status.is_none() && again.events.is_empty(),
            "no rewrite, no second Event"
        );
        let later = refused_plan(&written, &lineage, at(30)).expect("a plan");
        assert!(later.dissolve);
        // Admitted nodes are planned by the phase machine.
        assert!(refused_plan(&n, &Lineage::default(), at(0)).is_none());
    }

    #[test]
    fn children_anchor_one_step_further_out_along_their_parents_ray() {
        let parent = DiskPoint::from_polar(0.4, 120.0).expect("point");
        let anchor = child_anchor(parent);
        assert!(
            (anchor.hyperbolic_radius() - parent.hyperbolic_radius() - SARKAR_STEP).abs() < 1e-9
        );
        assert!((anchor.theta_degrees() - 120.0).abs() < 1e-9);
        assert_eq!(child_anchor(DiskPoint::ORIGIN), DiskPoint::ORIGIN);
        let far = DiskPoint::from_hyperbolic_polar(MAX_HYPERBOLIC_RADIUS - 0.5, 1.0).expect("far");
        assert!(child_anchor(far).hyperbolic_radius() <= MAX_HYPERBOLIC_RADIUS);
    }

    #[test]
    fn lineage_labels_and_owner_are_applied_once() {
        let index = LineageIndex::default();
        index.node_applied(&node("coordinator", json!({"spawn": {"maxChildren": 2}})));
        let mut child = node("kid", json!({"parentRef": {"name": "coordinator"}}));
        index.node_applied(&child);
        let view = index.view(&key("kid"));
        let verdict = verdict_of(&index, &child);
        let doc = desired_metadata(&child, &verdict, &view).expect("labels to apply");
        assert_eq!(
            doc["metadata"]["labels"],
            json!({LABEL_PARENT: "coordinator", LABEL_ROOT: "coordinator", LABEL_DEPTH: "1"})
        );
        assert_eq!(
            doc["metadata"]["ownerReferences"][0]["uid"],
            "uid-coordinator"
        );
        child.metadata.labels = serde_json::from_value(doc["metadata"]["labels"].clone()).ok();
        child.metadata.owner_references =
            serde_json::from_value(doc["metadata"]["ownerReferences"].clone()).ok();
        assert_eq!(desired_metadata(&child, &verdict, &view), None);
        // Nodes outside lineages get nothing.
        let plain = node("plain", json!({}));
        assert_eq!(
            desired_metadata(&plain, &Verdict::Root, &View::default()),
            None
        );
    }
}

//! The indexes the watches keep current, so a reconcile reads what it needs in O(objects it
//! affects) instead of scanning or cloning a namespace: nodes by stack, by pod label and by model
//! (demand as counters), stacks by model, pods by node and by model, the occupied placement slots
//! and a spatial index of placed nodes for neighbours.
//!
//! One writer: the watch pipeline (`controller::watch`) calls the `*_applied` / `*_deleted` methods
//! after the reflector stores are updated; each returns the objects whose reconcile the change
//! triggers. Every decision input comes from a field the agent cannot write (spec, the stack's
//! resolution, the operator's own children) except `status.objective.observed`, which is the agent's
//! report by design and only counts when it meets the spec's metric.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;

use super::agent_node_decide::metric_met;
use super::cached::{Job, Pod};
use crate::api::agent_node::{AgentNode, LifecycleMode, PlacementStatus};
use crate::api::agent_stack::AgentStack;
use crate::api::model_entry::ModelEntry;
use crate::geometry::{self, AnchorIndex, AnchorKey, DiskPoint, PointIndex, Slot};
use crate::workload::labels::{ANNOTATION_MODELS, LABEL_AGENT_NODE, LABEL_MODEL_ENTRY};
use crate::workload::names::label_value;

/// `(namespace, name)` of an object.
pub type Key = (String, String);

/// A pod's agent-node and model-entry label values.
type PodLabels = (Option<String>, Option<String>);

/// The key of an object with metadata.
pub fn key_of<K: kube::Resource>(obj: &K) -> Key {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

/// Reconciles a change asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Triggers {
    pub nodes: Vec<Key>,
    pub entries: Vec<Key>,
    pub stacks: Vec<Key>,
}

impl Triggers {
    /// Add `other`'s triggers to these.
    pub fn extend(&mut self, other: Triggers) {
        self.nodes.extend(other.nodes);
        self.entries.extend(other.entries);
        self.stacks.extend(other.stacks);
    }

    fn entries_of(&mut self, namespace: &str, models: impl IntoIterator<Item = String>) {
        self.entries
            .extend(models.into_iter().map(|m| (namespace.to_string(), m)));
    }
}

/// What the index keeps of a node.
#[derive(Clone, Debug, Default)]
struct NodeRec {
    uid: String,
    stack: String,
    label: String,
    persistent: bool,
    deleting: bool,
    /// Not admitted by its parent's caps (`lineage.rs`): it never runs, so it needs no model.
    refused: bool,
    /// The agent's report meets the spec's metric.
    metric_met: bool,
    /// Models this node currently counts towards (its demand contribution).
    contribution: Vec<String>,
    /// Where it sits in the geometry indexes.
    slot: Option<(AnchorKey, Slot)>,
    point: bool,
}

/// What the index keeps of a node's workload (Job or Deployment).
#[derive(Clone, Debug, Default, PartialEq)]
struct WorkloadRec {
    /// The models the workload was started with (its `hypersync.io/models` annotation).
    models: Vec<String>,
    /// A Job that completed or failed.
    finished: bool,
}

/// A placement this process wrote but the cache may not show yet.
#[derive(Clone, Debug)]
pub struct Written {
    pub uid: String,
    pub placement: PlacementStatus,
    pub neighbors: Vec<crate::api::agent_node::Neighbor>,
}

/// Who owns a Job or Deployment the operator made.
#[derive(Clone, Debug, PartialEq)]
enum Owner {
    Node(Key),
    Entry(Key),
}

#[derive(Default)]
struct Inner {
    nodes: HashMap<Key, NodeRec>,
    nodes_by_stack: HashMap<Key, BTreeSet<String>>,
    node_by_label: HashMap<Key, String>,
    workloads: HashMap<Key, WorkloadRec>,
    pods_by_node_label: HashMap<Key, BTreeSet<String>>,
    pods_by_model_label: HashMap<Key, BTreeSet<String>>,
    pod_labels: HashMap<Key, (Option<String>, Option<String>)>,
    entry_by_label: HashMap<Key, String>,
    entry_fingerprints: HashMap<Key, u64>,
    stack_models: HashMap<Key, Vec<String>>,
    stacks_by_model: HashMap<Key, BTreeSet<String>>,
    /// Owner of each Job and Deployment the operator made: a node or an entry.
    owners: HashMap<(&'static str, Key), Owner>,
    demand: HashMap<Key, i32>,
    anchors: AnchorIndex,
    points: PointIndex<Key>,
    written: HashMap<Key, Written>,
    /// A digest of what a node's reconcile reads of each of its Jobs (`job_view`) and agent pods
    /// with a problem (`pod_view`): their events trigger the node only when it changes (a pod's phases and a Job's
    /// counters would otherwise wake every running node several times for nothing).
    views: HashMap<(&'static str, Key), u64>,
}

/// The indexes of one controller scope.
#[derive(Default)]
pub struct Index {
    inner: Mutex<Inner>,
    /// Lineages of spawned nodes: parents, children counts, token usage (`lineage.rs`).
    pub lineage: super::lineage::LineageIndex,
}

fn point_of(p: &PlacementStatus) -> Option<DiskPoint> {
    DiskPoint::new(p.x, p.y).ok()
}

/// The occupied slot of a placement (semantic placements only).
pub fn slot_of(p: &PlacementStatus) -> Option<(AnchorKey, Slot)> {
    let key = AnchorKey::from_str(p.anchor.as_deref()?).ok()?;
    let slot = geometry::locate_slot(key.to_point().ok()?, point_of(p)?).ok()?;
    Some((key, slot))
}

/// The `(layer, model)` pairs a workload was started with, from its annotation
/// (`layer=model,layer=model`).
pub fn workload_bindings(
    annotations: &std::collections::BTreeMap<String, String>,
) -> Vec<(String, String)> {
    annotations
        .get(ANNOTATION_MODELS)
        .map(|v| {
            v.split(',')
                .filter_map(|pair| {
                    let (layer, model) = pair.split_once('=')?;
                    (!model.is_empty()).then(|| (layer.to_string(), model.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The annotation value recording `(layer, model)` pairs.
pub fn bindings_annotation<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    pairs
        .into_iter()
        .map(|(l, m)| format!("{l}={m}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The distinct models a workload was started with.
pub fn workload_models(annotations: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    let mut models: Vec<String> = workload_bindings(annotations)
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    models.sort();
    models.dedup();
    models
}

fn hash_time(
    h: &mut impl std::hash::Hasher,
    t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
) {
    use std::hash::Hash;
    t.map(|t| t.0.as_nanosecond()).hash(h);
}

/// What the AgentNode reconcile and its prune step read of a child's (trimmed) metadata: identity,
/// labels, owners, the kept annotations, creation and deletion; not its resourceVersion.
fn hash_meta(
    h: &mut impl std::hash::Hasher,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) {
    use std::hash::Hash;
    (&meta.name, &meta.uid, &meta.labels, &meta.annotations).hash(h);
    for o in meta.owner_references.iter().flatten() {
        (&o.kind, &o.name, &o.uid, o.controller).hash(h);
    }
    hash_time(h, meta.creation_timestamp.as_ref());
    hash_time(h, meta.deletion_timestamp.as_ref());
}

/// A digest of what the node's reconcile reads of its Job: the metadata above, the conditions
/// (complete, failed, with reason and message) and the completion time; not its counters (active,
/// ready, succeeded), which no decision reads.
pub fn job_view(job: &Job) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    hash_meta(&mut h, &job.metadata);
    if let Some(status) = &job.status {
        hash_time(&mut h, status.completion_time.as_ref());
        for c in status.conditions.iter().flatten() {
            (&c.type_, &c.status, &c.reason, &c.message).hash(&mut h);
            hash_time(&mut h, c.last_transition_time.as_ref());
        }
    }
    h.finish()
}

/// A digest of what the node's reconcile reads of one of its pods: its containers' problems
/// ([`super::pods::pod_problems`]); None when it has none (a pod appearing or going in that state
/// changes nothing for its node).
pub fn pod_view(pod: &Pod) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let problems = super::pods::pod_problems(pod);
    if problems.is_empty() {
        return None;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (message, until) in problems {
        message.hash(&mut h);
        until.map(|t| t.as_nanosecond()).hash(&mut h);
    }
    Some(h.finish())
}

fn owner_node(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<String> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "AgentNode" && o.api_version.starts_with(crate::api::GROUP))
        .map(|o| o.name.clone())
}

fn node_metric_met(node: &AgentNode) -> bool {
    let metric = node.spec.objective.as_ref().and_then(|o| o.metric.as_ref());
    let observed = node
        .status
        .as_ref()
        .and_then(|s| s.objective.as_ref())
        .and_then(|o| o.observed);
    matches!((metric, observed), (Some(m), Some(v)) if metric_met(m, v))
}

impl Inner {
    fn contribution(&self, key: &Key, rec: &NodeRec) -> Vec<String> {
        if rec.deleting || rec.refused {
            return Vec::new();
        }
        match self.workloads.get(key) {
            Some(w) => {
                if !rec.persistent && (w.finished || rec.metric_met) {
                    Vec::new()
                } else {
                    w.models.clone()
                }
            }
            None if rec.metric_met && !rec.persistent => Vec::new(),
            None => self
                .stack_models
                .get(&(key.0.clone(), rec.stack.clone()))
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// Recompute a node's demand contribution; the entries whose demand changed are triggered.
    fn refresh_demand(&mut self, key: &Key, triggers: &mut Triggers) {
        let Some(rec) = self.nodes.get(key) else {
            return;
        };
        let new = self.contribution(key, rec);
        if new == rec.contribution {
            return;
        }
        let old = std::mem::replace(
            &mut self.nodes.get_mut(key).expect("present").contribution,
            new.clone(),
        );
        for m in &old {
            let k = (key.0.clone(), m.clone());
            if let Some(d) = self.demand.get_mut(&k) {
                *d -= 1;
                if *d <= 0 {
                    self.demand.remove(&k);
                }
            }
        }
        for m in &new {
            *self.demand.entry((key.0.clone(), m.clone())).or_default() += 1;
        }
        let changed: BTreeSet<String> = old
            .iter()
            .filter(|m| !new.contains(m))
            .chain(new.iter().filter(|m| !old.contains(m)))
            .cloned()
            .collect();
        triggers.entries_of(&key.0, changed);
    }

    fn unplace(&mut self, key: &Key) {
        if let Some(rec) = self.nodes.get_mut(key) {
            if let Some((anchor, slot)) = rec.slot.take() {
                self.anchors.remove(anchor, slot);
            }
            if std::mem::take(&mut rec.point) {
                self.points.remove(key);
            }
        }
    }

    fn place_rec(&mut self, key: &Key, p: &PlacementStatus) {
        let Some(rec) = self.nodes.get_mut(key) else {
            return;
        };
        if rec.slot.is_none()
            && let Some((anchor, slot)) = slot_of(p)
        {
            let _ = self.anchors.insert(anchor, slot);
            rec.slot = Some((anchor, slot));
        }
        if !rec.point
            && let Some(point) = point_of(p)
        {
            self.points.insert(key.clone(), point);
            rec.point = true;
        }
    }
}

impl Index {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // ---- AgentNodes ----

    /// A node was added or changed.
    pub fn node_applied(&self, node: &AgentNode) -> Triggers {
        let key = key_of(node);
        let mut t = Triggers::default();
        let mut inner = self.lock();
        let uid = node.uid().unwrap_or_default();
        if inner.nodes.get(&key).is_some_and(|r| r.uid != uid) {
            // Same name, new object: forget the old one first.
            drop(inner);
            t = self.node_deleted(&key);
            inner = self.lock();
        }
        let stack = node.spec.stack_ref.name.clone();
        let previous = inner.nodes.get(&key).cloned();
        if let Some(prev) = &previous
            && prev.stack != stack
            && let Some(set) = inner
                .nodes_by_stack
                .get_mut(&(key.0.clone(), prev.stack.clone()))
        {
            set.remove(&key.1);
        }
        let label = label_value(&key.1);
        let rec = NodeRec {
            uid,
            stack: stack.clone(),
            label: label.clone(),
            persistent: node
                .spec
                .lifecycle
                .as_ref()
                .is_some_and(|l| l.mode == LifecycleMode::Persistent),
            deleting: node.metadata.deletion_timestamp.is_some(),
            refused: super::lineage::is_refused(node),
            metric_met: node_metric_met(node),
            contribution: previous
                .as_ref()
                .map(|p| p.contribution.clone())
                .unwrap_or_default(),
            slot: previous.as_ref().and_then(|p| p.slot),
            point: previous.as_ref().is_some_and(|p| p.point),
        };
        inner.nodes.insert(key.clone(), rec);
        inner
            .nodes_by_stack
            .entry((key.0.clone(), stack))
            .or_default()
            .insert(key.1.clone());
        inner
            .node_by_label
            .insert((key.0.clone(), label), key.1.clone());
        if let Some(p) = node.status.as_ref().and_then(|s| s.placement.as_ref()) {
            inner.place_rec(&key, p);
        }
        inner.refresh_demand(&key, &mut t);
        drop(inner);
        t.nodes.extend(self.lineage.node_applied(node));
        t.nodes.push(key);
        t
    }

    /// A node is gone: its slot, demand and bookkeeping go with it.
    pub fn node_deleted(&self, key: &Key) -> Triggers {
        let mut t = Triggers::default();
        let mut inner = self.lock();
        if let Some(rec) = inner.nodes.get_mut(key) {
            rec.deleting = true;
        }
        inner.refresh_demand(key, &mut t);
        inner.unplace(key);
        inner.written.remove(key);
        if let Some(rec) = inner.nodes.remove(key) {
            if let Some(set) = inner.nodes_by_stack.get_mut(&(key.0.clone(), rec.stack)) {
                set.remove(&key.1);
            }
            inner.node_by_label.remove(&(key.0.clone(), rec.label));
        }
        drop(inner);
        t.nodes.extend(self.lineage.node_deleted(key));
        t
    }

    // ---- Jobs and Deployments ----

    /// An agent's Job or Deployment (`kind`), or an engine's Deployment, was added or changed.
    ///
    /// `view` is a digest of what the node's reconcile reads of the workload (None: anything may
    /// matter); the node is triggered only when it changes.
    fn workload_applied(
        &self,
        kind: &'static str,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        finished: bool,
        view: Option<u64>,
    ) -> Triggers {
        let mut t = Triggers::default();
        let namespace = meta.namespace.clone().unwrap_or_default();
        let own = (namespace.clone(), meta.name.clone().unwrap_or_default());
        let mut inner = self.lock();
        if let Some(entry) = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.kind == "ModelEntry")
        {
            let entry = (namespace.clone(), entry.name.clone());
            inner
                .owners
                .insert((kind, own), Owner::Entry(entry.clone()));
            t.entries.push(entry);
            return t;
        }
        let Some(node) = owner_node(meta) else {
            return t;
        };
        let key = (namespace, node);
        let changed = match view {
            Some(v) => inner.views.insert((kind, own.clone()), v) != Some(v),
            None => true,
        };
        inner.owners.insert((kind, own), Owner::Node(key.clone()));
        t.nodes.extend(self.lineage.workload_applied(
            &key,
            meta.creation_timestamp.as_ref().map(|c| c.0),
            finished,
        ));
        let rec = WorkloadRec {
            models: meta
                .annotations
                .as_ref()
                .map(workload_models)
                .unwrap_or_default(),
            finished,
        };
        if inner.workloads.get(&key) != Some(&rec) {
            inner.workloads.insert(key.clone(), rec);
            inner.refresh_demand(&key, &mut t);
        }
        if changed {
            t.nodes.push(key);
        }
        t
    }

    /// A Job or Deployment (`kind`, key) is gone: its owner looks again.
    pub fn workload_deleted(&self, kind: &'static str, own: &Key) -> Triggers {
        let mut t = Triggers::default();
        let mut inner = self.lock();
        inner.views.remove(&(kind, own.clone()));
        match inner.owners.remove(&(kind, own.clone())) {
            None => {}
            Some(Owner::Entry(entry)) => t.entries.push(entry),
            Some(Owner::Node(node)) => {
                if inner.workloads.remove(&node).is_some() {
                    inner.refresh_demand(&node, &mut t);
                }
                t.nodes.extend(self.lineage.workload_deleted(&node));
                // A node already gone (its children are collected after it) has nothing to
                // reconcile; one still here recreates or finishes on its workload's deletion.
                if inner.nodes.contains_key(&node) {
                    t.nodes.push(node);
                }
            }
        }
        t
    }

    /// A Job was added or changed.
    pub fn job_applied(&self, job: &Job) -> Triggers {
        let finished = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            });
        self.workload_applied("Job", &job.metadata, finished, Some(job_view(job)))
    }

    /// A Deployment was added or changed: an agent's (owned by a node) or an engine's.
    pub fn deployment_applied(&self, deployment: &Deployment) -> Triggers {
        self.workload_applied("Deployment", &deployment.metadata, false, None)
    }

    // ---- Pods ----

    /// A pod was added or changed.
    pub fn pod_applied(&self, pod: &Pod) -> Triggers {
        let key = key_of(pod);
        let labels = (
            pod.labels().get(LABEL_AGENT_NODE).cloned(),
            pod.labels().get(LABEL_MODEL_ENTRY).cloned(),
        );
        self.pod_labels_changed(key, Some((labels, pod_view(pod))))
    }

    /// A pod is gone.
    pub fn pod_deleted(&self, key: &Key) -> Triggers {
        self.pod_labels_changed(key.clone(), None)
    }

    /// A pod's labels and view (None: the pod is gone). Its node is triggered when the pod's view
    /// changes (a pod appearing or going without a problem changes nothing for the node) or the pod
    /// moves to another node's label; its entry (an engine's pod) at every change.
    fn pod_labels_changed(&self, key: Key, labels: Option<(PodLabels, Option<u64>)>) -> Triggers {
        let mut t = Triggers::default();
        let mut inner = self.lock();
        let view_key = ("Pod", key.clone());
        let old_view = inner.views.remove(&view_key);
        let new_view = labels.as_ref().and_then(|(_, v)| *v);
        if let Some(v) = new_view {
            inner.views.insert(view_key, v);
        }
        let labels = labels.map(|(l, _)| l);
        let old = inner.pod_labels.remove(&key);
        let moved = labels.is_some()
            && old.is_some()
            && old.as_ref().map(|o| &o.0) != labels.as_ref().map(|l| &l.0);
        if let Some((old_node, old_model)) = &old {
            if let Some(l) = old_node
                && let Some(set) = inner
                    .pods_by_node_label
                    .get_mut(&(key.0.clone(), l.clone()))
            {
                set.remove(&key.1);
            }
            if let Some(l) = old_model
                && let Some(set) = inner
                    .pods_by_model_label
                    .get_mut(&(key.0.clone(), l.clone()))
            {
                set.remove(&key.1);
            }
        }
        if let Some((node_label, model_label)) = &labels {
            if let Some(l) = node_label {
                inner
                    .pods_by_node_label
                    .entry((key.0.clone(), l.clone()))
                    .or_default()
                    .insert(key.1.clone());
            }
            if let Some(l) = model_label {
                inner
                    .pods_by_model_label
                    .entry((key.0.clone(), l.clone()))
                    .or_default()
                    .insert(key.1.clone());
            }
            inner
                .pod_labels
                .insert(key.clone(), (node_label.clone(), model_label.clone()));
        }
        if moved
            && let Some(l) = old.as_ref().and_then(|o| o.0.clone())
            && let Some(node) = inner.node_by_label.get(&(key.0.clone(), l))
        {
            t.nodes.push((key.0.clone(), node.clone()));
        }
        let (node_label, model_label) = labels.or(old).unwrap_or_default();
        if let Some(l) = node_label
            && (moved || old_view != new_view)
            && let Some(node) = inner.node_by_label.get(&(key.0.clone(), l))
        {
            t.nodes.push((key.0.clone(), node.clone()));
        }
        if let Some(l) = model_label
            && let Some(entry) = inner.entry_by_label.get(&(key.0.clone(), l))
        {
            t.entries.push((key.0.clone(), entry.clone()));
        }
        t
    }

    /// Names of the agent pods of a node.
    pub fn pods_of_node(&self, namespace: &str, node: &str) -> Vec<String> {
        let inner = self.lock();
        inner
            .pods_by_node_label
            .get(&(namespace.to_string(), label_value(node)))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Names of the engine pods of a model entry.
    pub fn pods_of_entry(&self, namespace: &str, entry: &str) -> Vec<String> {
        let inner = self.lock();
        inner
            .pods_by_model_label
            .get(&(namespace.to_string(), label_value(entry)))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    // ---- AgentStacks ----

    /// A stack was added or changed: nodes of the stack that have not started their workload see
    /// its new resolution; entries whose set of bound stacks changed are triggered (NetworkPolicy).
    pub fn stack_applied(&self, stack: &AgentStack) -> Triggers {
        let key = key_of(stack);
        let models: Vec<String> = {
            let mut m: Vec<String> = stack
                .status
                .as_ref()
                .map(|s| {
                    s.bindings
                        .iter()
                        .filter_map(|b| b.model_entry.clone())
                        .collect()
                })
                .unwrap_or_default();
            m.sort();
            m.dedup();
            m
        };
        self.stack_models_changed(&key, models)
    }

    /// A stack is gone.
    pub fn stack_deleted(&self, key: &Key) -> Triggers {
        self.stack_models_changed(key, Vec::new())
    }

    fn stack_models_changed(&self, key: &Key, models: Vec<String>) -> Triggers {
        let mut t = Triggers::default();
        let mut inner = self.lock();
        let old = inner.stack_models.get(key).cloned().unwrap_or_default();
        let nodes: Vec<String> = inner
            .nodes_by_stack
            .get(key)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        // Nodes without a workload read the stack's resolution (and wait on it when it is missing).
        let waiting: Vec<Key> = nodes
            .into_iter()
            .map(|n| (key.0.clone(), n))
            .filter(|k| !inner.workloads.contains_key(k))
            .collect();
        if old != models {
            for m in &old {
                if let Some(set) = inner.stacks_by_model.get_mut(&(key.0.clone(), m.clone())) {
                    set.remove(&key.1);
                }
            }
            for m in &models {
                inner
                    .stacks_by_model
                    .entry((key.0.clone(), m.clone()))
                    .or_default()
                    .insert(key.1.clone());
            }
            let changed: BTreeSet<String> = old
                .iter()
                .filter(|m| !models.contains(m))
                .chain(models.iter().filter(|m| !old.contains(m)))
                .cloned()
                .collect();
            t.entries_of(&key.0, changed);
            if models.is_empty() {
                inner.stack_models.remove(key);
            } else {
                inner.stack_models.insert(key.clone(), models);
            }
            for k in &waiting {
                inner.refresh_demand(k, &mut t);
            }
        }
        t.nodes.extend(waiting);
        t
    }

    /// Stacks whose resolution binds an entry.
    pub fn stacks_bound_to(&self, namespace: &str, entry: &str) -> Vec<String> {
        self.lock()
            .stacks_by_model
            .get(&(namespace.to_string(), entry.to_string()))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    // ---- ModelEntries ----

    /// An entry was added or changed. When what stacks resolve against changed (spec, labels, phase,
    /// endpoint, the generation its status describes), every stack of the namespace re-resolves and the nodes waiting on this entry look
    /// again; a demand-only status change triggers nothing.
    pub fn entry_applied(
        &self,
        entry: &ModelEntry,
        stacks_in_namespace: impl FnOnce() -> Vec<Key>,
    ) -> Triggers {
        use std::hash::{Hash, Hasher};
        let key = key_of(entry);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        entry.metadata.generation.hash(&mut hasher);
        entry.labels().hash(&mut hasher);
        if let Some(s) = &entry.status {
            format!("{:?}", s.phase).hash(&mut hasher);
            s.endpoint.hash(&mut hasher);
            s.served_model.hash(&mut hasher);
            // A status catching up with a new spec ends a stack's provisional resolution.
            s.observed_generation.hash(&mut hasher);
        }
        let fingerprint = hasher.finish();
        let mut t = Triggers::default();
        let mut inner = self.lock();
        inner
            .entry_by_label
            .insert((key.0.clone(), label_value(&key.1)), key.1.clone());
        if inner.entry_fingerprints.insert(key.clone(), fingerprint) == Some(fingerprint) {
            return t;
        }
        t.nodes = inner.waiting_on(&key);
        drop(inner);
        t.stacks = stacks_in_namespace();
        t
    }

    /// An entry is gone.
    pub fn entry_deleted(&self, key: &Key, stacks_in_namespace: Vec<Key>) -> Triggers {
        let mut inner = self.lock();
        inner.entry_fingerprints.remove(key);
        inner
            .entry_by_label
            .remove(&(key.0.clone(), label_value(&key.1)));
        Triggers {
            stacks: stacks_in_namespace,
            nodes: inner.waiting_on(key),
            entries: Vec::new(),
        }
    }

    /// How many live nodes need the entry.
    pub fn demand(&self, namespace: &str, entry: &str) -> i32 {
        self.lock()
            .demand
            .get(&(namespace.to_string(), entry.to_string()))
            .copied()
            .unwrap_or(0)
    }

    // ---- Placement ----

    /// Run `f` on the geometry indexes (placing a node takes a slot and a point atomically).
    pub fn with_geometry<T>(&self, f: impl FnOnce(&mut AnchorIndex, &PointIndex<Key>) -> T) -> T {
        let mut inner = self.lock();
        let inner = &mut *inner;
        f(&mut inner.anchors, &inner.points)
    }

    /// Record a placement this process chose, so a reconcile that reads an older cache reuses it.
    pub fn record_placement(&self, key: &Key, written: Written) {
        let mut inner = self.lock();
        let placement = written.placement.clone();
        inner.written.insert(key.clone(), written);
        inner.place_rec(key, &placement);
    }

    /// The placement this process chose for the node (same uid), if any.
    pub fn written_placement(&self, key: &Key, uid: &str) -> Option<Written> {
        self.lock()
            .written
            .get(key)
            .filter(|w| w.uid == uid)
            .cloned()
    }
}

impl Inner {
    /// Nodes without a workload whose stack binds the entry.
    fn waiting_on(&self, entry: &Key) -> Vec<Key> {
        let Some(stacks) = self.stacks_by_model.get(entry) else {
            return Vec::new();
        };
        stacks
            .iter()
            .filter_map(|s| self.nodes_by_stack.get(&(entry.0.clone(), s.clone())))
            .flatten()
            .map(|n| (entry.0.clone(), n.clone()))
            .filter(|k| !self.workloads.contains_key(k))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, stack: &str, extra: serde_json::Value) -> AgentNode {
        let mut v = json!({
            "apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode",
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
            "spec": {"stackRef": {"name": stack},
                     "objective": {"metric": {"name": "m", "comparator": "GreaterOrEqual", "target": 1}}},
        });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, val) in e {
                o.insert(k.clone(), val.clone());
            }
        }
        serde_json::from_value(v).expect("node")
    }

    fn stack(name: &str, models: &[&str]) -> AgentStack {
        let bindings: Vec<_> = models
            .iter()
            .map(|m| json!({"layer": "cognitive", "modelEntry": m, "reason": "Bound"}))
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "hypersync.io/v1alpha1", "kind": "AgentStack",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"layers": {"cognitive": {"modelRef": {"name": "x"}}}},
            "status": {"phase": "Resolved", "bindings": bindings},
        }))
        .expect("stack")
    }

    fn job(node: &str, models: &str, complete: bool) -> Job {
        let conditions = if complete {
            json!([{"type": "Complete", "status": "True"}])
        } else {
            json!([])
        };
        serde_json::from_value(json!({
            "metadata": {"name": node, "namespace": "ns",
                "annotations": {ANNOTATION_MODELS: models},
                "ownerReferences": [{"apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode",
                    "name": node, "uid": format!("uid-{node}")}]},
            "status": {"conditions": conditions},
        }))
        .expect("job")
    }

    fn key(name: &str) -> Key {
        ("ns".to_string(), name.to_string())
    }

    #[test]
    fn demand_follows_the_stack_then_the_workload_then_the_outcome() {
        let index = Index::default();
        index.stack_applied(&stack("s", &["a"]));
        let t = index.node_applied(&node("n", "s", json!({})));
        assert_eq!(t.entries, vec![key("a")]);
        assert_eq!(index.demand("ns", "a"), 1);
        // The workload was started with model b (the stack re-resolved meanwhile): b counts.
        let t = index.job_applied(&job("n", "cognitive=b", false));
        assert_eq!(index.demand("ns", "a"), 0);
        assert_eq!(index.demand("ns", "b"), 1);
        assert!(t.entries.contains(&key("a")) && t.entries.contains(&key("b")));
        // A stack change no longer moves a node whose workload runs.
        let t = index.stack_applied(&stack("s", &["c"]));
        assert!(t.nodes.is_empty(), "{t:?}");
        assert_eq!(index.demand("ns", "b"), 1);
        // The Job finished: the node needs nothing any more.
        index.job_applied(&job("n", "cognitive=b", true));
        assert_eq!(index.demand("ns", "b"), 0);
        index.node_deleted(&key("n"));
        assert_eq!(index.demand("ns", "b"), 0);
    }

    #[test]
    fn a_met_objective_or_a_deletion_releases_demand() {
        let index = Index::default();
        index.stack_applied(&stack("s", &["a"]));
        index.node_applied(&node("n", "s", json!({})));
        index.node_applied(&node("m", "s", json!({})));
        assert_eq!(index.demand("ns", "a"), 2);
        index.node_applied(&node(
            "n",
            "s",
            json!({"status": {"objective": {"observed": 5.0}}}),
        ));
        assert_eq!(index.demand("ns", "a"), 1);
        let t = index.node_deleted(&key("m"));
        assert_eq!(t.entries, vec![key("a")]);
        assert_eq!(index.demand("ns", "a"), 0);
    }

    #[test]
    fn a_refused_child_needs_no_model() {
        let index = Index::default();
        index.stack_applied(&stack("s", &["a"]));
        index.node_applied(&node("kid", "s", json!({})));
        assert_eq!(index.demand("ns", "a"), 1);
        let t = index.node_applied(&node(
            "kid",
            "s",
            json!({"status": {"phase": "Failed", "conditions": [{"type": "Admitted", "status": "False",
                "reason": "SpawnLimitExceeded", "message": "maxChildren", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
        ));
        assert_eq!(t.entries, vec![key("a")]);
        assert_eq!(index.demand("ns", "a"), 0);
    }

    #[test]
    fn a_forged_model_list_in_status_counts_for_nothing() {
        let index = Index::default();
        index.stack_applied(&stack("s", &["a"]));
        index.node_applied(&node(
            "n",
            "s",
            json!({"status": {"models": [{"layer": "x", "modelEntry": "gpu-hog"}]}}),
        ));
        assert_eq!(index.demand("ns", "gpu-hog"), 0);
        assert_eq!(index.demand("ns", "a"), 1);
    }

    #[test]
    fn a_stack_change_reaches_only_its_nodes_without_a_workload() {
        let index = Index::default();
        index.node_applied(&node("waiting", "s", json!({})));
        index.node_applied(&node("running", "s", json!({})));
        index.node_applied(&node("other", "t", json!({})));
        index.job_applied(&job("running", "cognitive=a", false));
        let mut t = index.stack_applied(&stack("s", &["a"]));
        assert_eq!(t.nodes, vec![key("waiting")]);
        t.entries.dedup();
        assert_eq!(t.entries, vec![key("a")]);
        assert_eq!(index.stacks_bound_to("ns", "a"), vec!["s".to_string()]);
    }

    #[test]
    fn pods_of_long_named_nodes_find_their_node() {
        let index = Index::default();
        let long = "a".repeat(253);
        index.node_applied(&node(&long, "s", json!({})));
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns",
                "labels": {LABEL_AGENT_NODE: label_value(&long)}},
        }))
        .expect("pod");
        index.pod_applied(&pod);
        assert_eq!(index.pods_of_node("ns", &long), vec!["p".to_string()]);
        index.pod_deleted(&key("p"));
        assert!(index.pods_of_node("ns", &long).is_empty());
    }

    fn agent_pod(node: &str, phase: &str, containers: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{node}-pod"), "namespace": "ns",
                "labels": {LABEL_AGENT_NODE: label_value(node)}},
            "status": {"phase": phase, "containerStatuses": containers},
        }))
        .expect("pod")
    }

    #[test]
    fn a_pod_triggers_its_node_only_when_its_problems_change() {
        let index = Index::default();
        index.node_applied(&node("a", "s", json!({})));
        let waiting = |reason: &str, message: &str| {
            json!([{"name": "agent", "image": "i", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": reason, "message": message}}}])
        };
        let running = json!([{"name": "agent", "image": "i", "ready": true, "restartCount": 0,
            "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]);
        let done = json!([{"name": "agent", "image": "i", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]);
        let nodes = |t: Triggers| t.nodes;
        // A pod's life without a problem: nothing for the node to decide.
        for pod in [
            agent_pod("a", "Pending", json!(null)),
            agent_pod("a", "Pending", waiting("ContainerCreating", "")),
            agent_pod("a", "Running", running.clone()),
            agent_pod("a", "Succeeded", done),
        ] {
            assert!(nodes(index.pod_applied(&pod)).is_empty(), "{pod:?}");
        }
        assert!(nodes(index.pod_deleted(&key("a-pod"))).is_empty());
        // A pull error is news, the same error again is not, its end is.
        let pull = agent_pod("a", "Pending", waiting("ErrImagePull", "no such image"));
        assert_eq!(nodes(index.pod_applied(&pull)), vec![key("a")]);
        assert!(nodes(index.pod_applied(&pull)).is_empty());
        let back_off = agent_pod("a", "Pending", waiting("ImagePullBackOff", "no such image"));
        assert_eq!(nodes(index.pod_applied(&back_off)), vec![key("a")]);
        assert_eq!(
            nodes(index.pod_applied(&agent_pod("a", "Running", running))),
            vec![key("a")]
        );
        // A pod that goes away with a problem takes it with it.
        assert_eq!(nodes(index.pod_applied(&back_off)), vec![key("a")]);
        assert_eq!(nodes(index.pod_deleted(&key("a-pod"))), vec![key("a")]);
    }

    #[test]
    fn a_job_triggers_its_node_only_when_what_the_node_reads_changes() {
        let index = Index::default();
        index.node_applied(&node("a", "s", json!({})));
        let with_status = |status: serde_json::Value| {
            let mut j = serde_json::to_value(job("a", "cognitive=m", false)).expect("job");
            j["metadata"]["resourceVersion"] = json!(status.to_string().len().to_string());
            j["status"] = status;
            serde_json::from_value::<Job>(j).expect("job")
        };
        let nodes = |t: Triggers| t.nodes;
        // First sight: the node learns its Job exists.
        assert_eq!(
            nodes(index.job_applied(&with_status(json!({})))),
            vec![key("a")]
        );
        // Counters and a new resourceVersion: nothing the node reads.
        assert!(nodes(index.job_applied(&with_status(json!({"active": 1})))).is_empty());
        assert!(
            nodes(index.job_applied(&with_status(json!({"active": 1, "ready": 0})))).is_empty()
        );
        // Its pod ready: nothing either (no decision reads it). A completion: news.
        assert!(
            nodes(index.job_applied(&with_status(json!({"active": 1, "ready": 1})))).is_empty()
        );
        let complete = json!({"succeeded": 1, "ready": 0,
            "completionTime": "2026-01-01T00:00:09Z",
            "conditions": [{"type": "Complete", "status": "True",
                "lastTransitionTime": "2026-01-01T00:00:09Z"}]});
        assert_eq!(
            nodes(index.job_applied(&with_status(complete))),
            vec![key("a")]
        );
        // Its deletion too.
        assert_eq!(
            nodes(index.workload_deleted("Job", &key("a"))),
            vec![key("a")]
        );
        // A Job seen again after its deletion is news again.
        assert_eq!(
            nodes(index.job_applied(&with_status(json!({})))),
            vec![key("a")]
        );
    }

    #[test]
    fn a_job_collected_after_its_node_triggers_nothing() {
        let index = Index::default();
        index.node_applied(&node("a", "s", json!({})));
        index.node_applied(&node("b", "s", json!({})));
        for name in ["a", "b"] {
            assert_eq!(
                index.job_applied(&job(name, "", false)).nodes,
                vec![key(name)]
            );
        }
        // `a` is gone (its finalizer removed); the garbage collector deletes its Job after it:
        // no reconcile of the missing node, and no ModelEntry named like it.
        index.node_deleted(&key("a"));
        let t = index.workload_deleted("Job", &key("a"));
        assert!(t.nodes.is_empty() && t.entries.is_empty(), "{t:?}");
        // A node still there hears of its Job's deletion.
        assert_eq!(
            index.workload_deleted("Job", &key("b")).nodes,
            vec![key("b")]
        );
    }

    #[test]
    fn a_demand_only_entry_change_triggers_no_stack() {
        let index = Index::default();
        let entry = |demand: i32, phase: &str| -> ModelEntry {
            serde_json::from_value(json!({
                "apiVersion": "hypersync.io/v1alpha1", "kind": "ModelEntry",
                "metadata": {"name": "a", "namespace": "ns", "generation": 1},
                "spec": {"type": "LLM", "source": {"remote": {"provider": "OpenAI", "model": "m"}}},
                "status": {"phase": phase, "demand": demand},
            }))
            .expect("entry")
        };
        let stacks = || vec![key("s")];
        assert_eq!(
            index.entry_applied(&entry(0, "Ready"), stacks).stacks,
            vec![key("s")]
        );
        assert!(
            index
                .entry_applied(&entry(5, "Ready"), stacks)
                .stacks
                .is_empty()
        );
        assert_eq!(
            index.entry_applied(&entry(5, "Degraded"), stacks).stacks,
            vec![key("s")]
        );
    }
}

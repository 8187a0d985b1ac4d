//! The simulated data plane: nodes from `--nodes`, built-in defaulting on create, the
//! scheduler, taint eviction, a kubelet, the ReplicaSet/Deployment/Job controllers, a PVC binder,
//! Endpoints and LoadBalancer ingress IPs, as logic over the [`ClusterApi`] trait.
//!
//! [`DataPlane::tick`] runs one pass of every controller. Each pass reads the cluster through
//! `ClusterApi`, writes only what differs (so a pass over a settled cluster writes nothing),
//! uses resourceVersion-checked updates and simply retries on the next tick after a conflict.
//! Time comes only from the `now` argument, so tests advance a clock instead of sleeping.
//!
//! Behaviour knobs on pods (set them on a Job's or Deployment's pod template):
//!
//! | annotation | default | effect |
//! |---|---|---|
//! | [`ANN_RUN_SECONDS`] | 1 for `restartPolicy` Never/OnFailure, forever for Always | seconds each container runs before exiting |
//! | [`ANN_EXIT_CODE`] | 0 | the exit code containers exit with |
//! | [`ANN_READY_AFTER`] | 0 | seconds after start before the pod turns Ready |
//! | [`ANN_START_DELAY`] | 0 | seconds spent in `ContainerCreating` (at least one tick) |
//! | [`ANN_RESTART_BACKOFF`] | 1 | seconds in `CrashLoopBackOff` after a non-zero exit before the restart |
//!
//! A non-zero [`ANN_EXIT_CODE`] on a `restartPolicy: Always` pod without [`ANN_RUN_SECONDS`]
//! makes it crash after 1 s and loop through `CrashLoopBackOff`.
//!
//! The `--nodes` grammar is documented on [`parse_nodes`].

mod binding;
mod cache;
mod defaults;
mod deployment;
mod endpoints;
mod events;
#[cfg(test)]
mod fake;
mod job;
mod kubelet;
mod labels;
mod loadbalancer;
mod nodes;
mod quantity;
mod replicaset;
mod scheduler;
mod taints;
mod util;
mod volumes;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

pub use binding::{BindError, Binding, bind_pod};
use cache::{Cache, K, Key, Work};
pub use cache::{Change, Changes, relevant_table};
pub use defaults::{IpAllocator, default_on_create, default_on_update};
pub use deployment::template_hash;
pub use nodes::parse_nodes;
pub use quantity::{ResourceList, parse_milli, pod_requests};
pub use scheduler::{NodeFailure, prefilter_message, unschedulable_message};

/// Seconds each container of a run-to-completion pod runs (fractions allowed).
pub const ANN_RUN_SECONDS: &str = "sim.hypersync.io/run-seconds";
/// Exit code the containers exit with when their run time is over.
pub const ANN_EXIT_CODE: &str = "sim.hypersync.io/exit-code";
/// Seconds after the containers start before the pod reports Ready.
pub const ANN_READY_AFTER: &str = "sim.hypersync.io/ready-after-seconds";
/// Seconds the pod stays in `ContainerCreating` after being bound.
pub const ANN_START_DELAY: &str = "sim.hypersync.io/start-delay-seconds";

/// Seconds a container that exited non-zero waits in `CrashLoopBackOff` before it restarts
/// (default 1; the real kubelet starts at 10 and doubles).
pub const ANN_RESTART_BACKOFF: &str = "sim.hypersync.io/restart-backoff-seconds";

/// The scheduler name this data plane serves.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// Read/write access to the cluster's objects, implemented by the server over its store (and by
/// an in-memory fake in the tests). Errors are the server's messages; a conflict is an error
/// like any other and the controllers retry on the next tick.
pub trait ClusterApi {
    fn list(&self, resource: &ResourceRef, namespace: Option<&str>) -> Vec<Value>;
    fn get(&self, resource: &ResourceRef, namespace: Option<&str>, name: &str) -> Option<Value>;
    fn create(&self, resource: &ResourceRef, obj: Value) -> Result<Value, String>;
    /// spec/metadata, resourceVersion-checked.
    fn update(&self, resource: &ResourceRef, obj: Value) -> Result<Value, String>;
    /// status only, resourceVersion-checked.
    fn update_status(&self, resource: &ResourceRef, obj: Value) -> Result<Value, String>;
    fn delete(
        &self,
        resource: &ResourceRef,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<(), String>;
    /// Binds a pod in `namespace` to a node as the `pods/binding` subresource does: one write
    /// of `spec.nodeName` and `PodScheduled=True` ([`bind_pod`]); the stored pod.
    fn bind(&self, namespace: &str, binding: &Binding) -> Result<Value, String>;
    /// The store's current global resourceVersion, if cheap to read. When provided,
    /// [`DataPlane::tick`] skips passes while nothing changed and no timer is due.
    fn revision(&self) -> Option<u64> {
        None
    }
    /// The changes since the previous call, oldest first, for [`DataPlane::tick`];
    /// [`Changes::Relist`] when the API keeps no change feed or some changes were lost.
    fn changes(&self) -> Changes {
        Changes::Relist
    }
}

/// A resource by API group, version and plural name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceRef {
    pub group: String,
    pub version: String,
    /// plural
    pub resource: String,
}

impl ResourceRef {
    pub fn new(group: &str, version: &str, resource: &str) -> Self {
        ResourceRef {
            group: group.to_string(),
            version: version.to_string(),
            resource: resource.to_string(),
        }
    }
    /// A core (`v1`) resource.
    pub fn core(resource: &str) -> Self {
        Self::new("", "v1", resource)
    }
    pub fn pods() -> Self {
        Self::core("pods")
    }
    pub fn nodes() -> Self {
        Self::core("nodes")
    }
    pub fn services() -> Self {
        Self::core("services")
    }
    pub fn endpoints() -> Self {
        Self::core("endpoints")
    }
    pub fn events() -> Self {
        Self::core("events")
    }
    pub fn secrets() -> Self {
        Self::core("secrets")
    }
    pub fn configmaps() -> Self {
        Self::core("configmaps")
    }
    pub fn deployments() -> Self {
        Self::new("apps", "v1", "deployments")
    }
    pub fn replicasets() -> Self {
        Self::new("apps", "v1", "replicasets")
    }
    pub fn jobs() -> Self {
        Self::new("batch", "v1", "jobs")
    }
    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// One pass's view of the cluster: the API, the clock, the informer cache and the pass's work
/// set, and bookkeeping of writes and timers.
pub(crate) struct Ctx<'a> {
    pub api: &'a dyn ClusterApi,
    pub now: DateTime<Utc>,
    pub now_s: String,
    wrote: Cell<bool>,
    seq: Cell<u64>,
    cache: RefCell<Cache>,
    work: RefCell<Work>,
    /// The object being synced: its timers and failed writes bring it back.
    focus: RefCell<Option<(K, Key)>>,
    timers: RefCell<Vec<(DateTime<Utc>, Timer)>>,
    retry: RefCell<BTreeSet<(K, Key)>>,
    /// The objects handed to the controllers to sync this pass.
    looked: RefCell<HashSet<(K, Key)>>,
    /// Successful writes this pass by `"<resource> <verb>"`.
    writes: RefCell<BTreeMap<String, u64>>,
}

impl<'a> Ctx<'a> {
    fn new(
        api: &'a dyn ClusterApi,
        now: DateTime<Utc>,
        seq: u64,
        cache: Cache,
        work: Work,
    ) -> Self {
        Ctx {
            api,
            now,
            now_s: util::fmt_time(now),
            wrote: Cell::new(false),
            seq: Cell::new(seq),
            cache: RefCell::new(cache),
            work: RefCell::new(work),
            focus: RefCell::new(None),
            timers: RefCell::new(Vec::new()),
            retry: RefCell::new(BTreeSet::new()),
            looked: RefCell::new(HashSet::new()),
            writes: RefCell::new(BTreeMap::new()),
        }
    }

    /// The keys of kind `k` this pass looks at (changed, due or concerned by a change).
    pub fn work_of(&self, k: K) -> BTreeSet<Key> {
        self.work.borrow().of(&self.cache.borrow(), k)
    }

    /// Reads the cache.
    pub fn with_cache<R>(&self, f: impl FnOnce(&Cache, &Work) -> R) -> R {
        f(&self.cache.borrow(), &self.work.borrow())
    }

    /// The cached objects of kind `k` with these keys (shared, not copied).
    pub fn cached(&self, k: K, keys: &BTreeSet<Key>) -> Vec<Arc<Value>> {
        let cache = self.cache.borrow();
        self.looked
            .borrow_mut()
            .extend(keys.iter().map(|key| (k, key.clone())));
        keys.iter()
            .filter_map(|key| cache.get(k, key).cloned())
            .collect()
    }

    /// Every cached object of kind `k` (for the small kinds: nodes, Services).
    pub fn cached_all(&self, k: K) -> Vec<Arc<Value>> {
        self.cache.borrow().all(k).cloned().collect()
    }

    /// Names the object the next timers and failed writes belong to.
    pub fn focus(&self, k: K, obj: &Value) {
        *self.focus.borrow_mut() = Some((k, cache::key_of(obj)));
    }

    /// Counts a successful write (see [`DataPlane::take_writes`]).
    pub fn count_write(&self, r: &ResourceRef, verb: &str) {
        *self
            .writes
            .borrow_mut()
            .entry(format!("{} {verb}", r.resource))
            .or_default() += 1;
    }

    /// A write landed: the stored object replaces the cached one and counts as changed for the
    /// controllers after this one. The cache keeps it as is (no copy).
    fn stored(&self, r: &ResourceRef, obj: Value) -> Arc<Value> {
        let new = Arc::new(obj);
        let Some(k) = K::of(r) else {
            return new;
        };
        let mut cache = self.cache.borrow_mut();
        let old = cache.put(k, new.clone());
        if cache
            .get(k, &cache::key_of(&new))
            .is_some_and(|c| Arc::ptr_eq(c, &new))
        {
            self.work
                .borrow_mut()
                .changed(&cache, k, old.as_deref(), Some(&new));
        }
        new
    }

    /// Reads an object again after a delete or a failed write.
    fn refresh(&self, r: &ResourceRef, ns: Option<&str>, name: &str) {
        let Some(k) = K::of(r) else {
            return;
        };
        match self.api.get(r, ns, name) {
            Some(o) => {
                self.stored(r, o);
            }
            None => {
                let mut cache = self.cache.borrow_mut();
                let key = (ns.unwrap_or("").to_string(), name.to_string());
                if let Some(old) = cache.remove(k, &key) {
                    self.work.borrow_mut().changed(&cache, k, Some(&old), None);
                }
            }
        }
    }

    /// A write failed: the focused object is looked at again next pass.
    fn failed(&self) {
        match self.focus.borrow().clone() {
            Some(f) => {
                self.retry.borrow_mut().insert(f);
            }
            None => self.wrote.set(true),
        }
    }

    /// Takes the answer to a write of `(ns, name)` made at resourceVersion `rv`: counts it (a
    /// write the server found unchanged as `noop`), caches the stored object, or after a
    /// failure reads the object again.
    fn landed(
        &self,
        r: &ResourceRef,
        (ns, name, rv): (&str, &str, Option<&str>),
        verb: &str,
        result: Result<Value, String>,
    ) -> Result<Arc<Value>, String> {
        match result {
            Ok(o) => {
                let same = rv.is_some() && util::str_at(&o, &["metadata", "resourceVersion"]) == rv;
                self.count_write(r, if same { "noop" } else { verb });
                Ok(self.stored(r, o))
            }
            Err(e) => {
                self.failed();
                self.refresh(r, (!ns.is_empty()).then_some(ns), name);
                Err(e)
            }
        }
    }

    pub fn create(&self, r: &ResourceRef, obj: Value) -> Result<Arc<Value>, String> {
        match self.api.create(r, obj) {
            Ok(o) => {
                self.count_write(r, "create");
                Ok(self.stored(r, o))
            }
            Err(e) => {
                self.failed();
                Err(e)
            }
        }
    }
    pub fn update(&self, r: &ResourceRef, obj: Value) -> Result<Arc<Value>, String> {
        let (ns, name) = cache::key_of(&obj);
        let rv = util::str_at(&obj, &["metadata", "resourceVersion"]).map(str::to_string);
        let result = self.api.update(r, obj);
        self.landed(r, (&ns, &name, rv.as_deref()), "update", result)
    }
    /// Writes `obj`'s status; `obj` needs only `metadata` (name, namespace, resourceVersion)
    /// and `status`.
    pub fn update_status(&self, r: &ResourceRef, obj: Value) -> Result<Arc<Value>, String> {
        let (ns, name) = cache::key_of(&obj);
        let rv = util::str_at(&obj, &["metadata", "resourceVersion"]).map(str::to_string);
        let result = self.api.update_status(r, obj);
        self.landed(r, (&ns, &name, rv.as_deref()), "status", result)
    }
    /// Writes `status` as the status of `obj` (a cached object), resourceVersion-checked,
    /// without copying the rest of the object.
    pub fn write_status(
        &self,
        r: &ResourceRef,
        obj: &Value,
        status: Value,
    ) -> Result<Arc<Value>, String> {
        let meta = obj.get("metadata");
        let mut m = serde_json::Map::new();
        for k in ["name", "namespace", "resourceVersion"] {
            if let Some(v) = meta.and_then(|m| m.get(k)) {
                m.insert(k.into(), v.clone());
            }
        }
        let mut body = serde_json::Map::new();
        for k in ["apiVersion", "kind"] {
            if let Some(v) = obj.get(k) {
                body.insert(k.into(), v.clone());
            }
        }
        body.insert("metadata".into(), Value::Object(m));
        body.insert("status".into(), status);
        self.update_status(r, Value::Object(body))
    }
    /// Binds a pod to a node (one write, see [`ClusterApi::bind`]).
    pub fn bind(&self, namespace: &str, binding: &Binding) -> Result<Arc<Value>, String> {
        let result = self.api.bind(namespace, binding);
        self.landed(
            &ResourceRef::pods(),
            (namespace, &binding.name, None),
            "bind",
            result,
        )
    }
    pub fn delete(&self, r: &ResourceRef, ns: Option<&str>, name: &str) -> Result<(), String> {
        let result = self.api.delete(r, ns, name);
        match result {
            Ok(()) => self.count_write(r, "delete"),
            Err(_) => self.failed(),
        }
        // Gone, or terminating (graceful deletion, finalizers).
        self.refresh(r, ns, name);
        result
    }
    /// Asks for a pass at `t` for the focused object even if nothing else changes by then.
    pub fn wake_at(&self, t: DateTime<Utc>) {
        let t = t.max(self.now);
        self.timers
            .borrow_mut()
            .push((t, self.focus.borrow().clone()));
    }
    pub fn next_seq(&self) -> u64 {
        let s = self.seq.get() + 1;
        self.seq.set(s);
        s
    }
}

/// Objects a pass takes from its work set (changed, due, retried); the rest waits for the next
/// pass, which comes right away.
const PASS_BUDGET: usize = 300;

/// What a timer brings back: one object, or (None) the whole cluster.
type Timer = Option<(K, Key)>;

/// The data plane's controllers and their small amount of in-memory state.
#[derive(Debug, Default)]
pub struct DataPlane {
    nodes: Vec<Value>,
    nodes_created: bool,
    kubelet: kubelet::KubeletState,
    hashes: deployment::HashCache,
    seq: u64,
    last_revision: Option<u64>,
    dirty: bool,
    next_wake: Option<DateTime<Utc>>,
    cache: Cache,
    /// Whether the cache holds a full list (else the next pass relists).
    synced: bool,
    /// Objects to look at again next pass (failed writes).
    retry: BTreeSet<(K, Key)>,
    /// Per-object timers (None: the whole cluster).
    timers: BTreeMap<DateTime<Utc>, BTreeSet<Timer>>,
    stats: PassStats,
    /// Successful writes since [`DataPlane::take_writes`], by `"<resource> <verb>"`.
    writes: BTreeMap<String, u64>,
}

/// What the data plane's passes looked at, for tests and the bench.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassStats {
    /// Passes run (skipped ones not counted).
    pub passes: u64,
    /// Passes that relisted every kind.
    pub relists: u64,
    /// Objects the last pass handed its controllers to sync (all kinds; the small kinds a
    /// controller reads whole, nodes and Services, not counted).
    pub last_work: u64,
}

impl DataPlane {
    /// A data plane with no nodes of its own (nodes may still be created through the API).
    pub fn new() -> Self {
        Self::default()
    }

    /// A data plane that creates `nodes` (from [`parse_nodes`]) on its first tick.
    pub fn with_nodes(nodes: Vec<Value>) -> Self {
        DataPlane {
            nodes,
            dirty: true,
            ..Self::default()
        }
    }

    /// When the next pass has timed work to do (a pod turning ready, a job pod exiting, a
    /// deadline), if anything is scheduled.
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        self.next_wake
    }

    pub fn stats(&self) -> PassStats {
        self.stats
    }

    /// The writes the passes made since the last call, by `"<resource> <verb>"` (verbs
    /// `create`, `update`, `status`, `bind`, `delete`; events included).
    pub fn take_writes(&mut self) -> BTreeMap<String, u64> {
        std::mem::take(&mut self.writes)
    }

    /// Runs one pass with the changes the API reports ([`ClusterApi::changes`]).
    pub fn tick(&mut self, api: &dyn ClusterApi, now: DateTime<Utc>) {
        let changes = api.changes();
        self.tick_with(api, now, changes);
    }

    /// Runs one pass of the controllers over what changed: the changed objects, those with a
    /// due timer or a failed write, and the objects they concern (a pod's owner, the pods of a
    /// changed node, ...). [`Changes::Relist`] (and the first pass) reads every kind again and
    /// looks at everything; without a change feed that happens whenever [`ClusterApi::revision`]
    /// moved (or always, without it).
    pub fn tick_with(&mut self, api: &dyn ClusterApi, now: DateTime<Utc>, changes: Changes) {
        let timer_due = self.next_wake.is_some_and(|w| now >= w);
        let mut work = Work::default();
        match changes {
            Changes::Since(list) if self.synced => cache::apply(&mut self.cache, &mut work, list),
            _ => {
                let rev = api.revision();
                if self.synced
                    && !self.dirty
                    && self.retry.is_empty()
                    && rev.is_some()
                    && rev == self.last_revision
                    && !timer_due
                {
                    return;
                }
                self.cache.clear();
                for k in K::CACHED {
                    for o in api.list(&k.resource(), None) {
                        self.cache.put(k, Arc::new(o));
                    }
                }
                // Every object, looked at over the next passes (see `PASS_BUDGET`).
                for k in K::CACHED {
                    let keys: Vec<Key> = self.cache.keys(k).cloned().collect();
                    for key in keys {
                        work.add(k, key);
                    }
                }
                work.capacity = true;
                self.synced = true;
                self.stats.relists += 1;
                let live: HashSet<String> = self
                    .cache
                    .all(K::Pod)
                    .map(|p| util::uid(p).to_string())
                    .collect();
                self.kubelet.retain(&live);
            }
        }
        let deferred = std::mem::take(&mut self.retry);
        if self.dirty {
            work.all = true;
        }
        while let Some(entry) = self.timers.first_entry() {
            if *entry.key() > now {
                break;
            }
            for f in entry.remove() {
                match f {
                    Some((k, key)) => work.add(k, key),
                    None => work.all = true,
                }
            }
        }
        self.next_wake = self.timers.keys().next().copied();
        // A bounded pass: the rest waits for the next one (a pass of thousands of objects, each
        // a few writes, took long enough for the change feed to overflow and force a relist).
        // What waited already (or failed) goes first, so nothing starves.
        if work.all {
            for (k, key) in deferred {
                work.add(k, key);
            }
        } else {
            let mut fresh = std::mem::take(&mut work.keys);
            let mut n = 0;
            let mut take = |work: &mut Work, k: K, key: Key, retry: &mut BTreeSet<(K, Key)>| {
                if work.keys.get(&k).is_some_and(|s| s.contains(&key)) {
                    return;
                }
                if n < PASS_BUDGET {
                    n += 1;
                    work.add(k, key);
                } else {
                    retry.insert((k, key));
                }
            };
            for (k, key) in deferred {
                take(&mut work, k, key, &mut self.retry);
            }
            for k in K::CACHED {
                for key in fresh.remove(&k).unwrap_or_default() {
                    take(&mut work, k, key, &mut self.retry);
                }
            }
        }
        if work.is_empty() && self.nodes_created {
            self.last_revision = api.revision();
            return;
        }
        self.kubelet.forget(&work.gone_pods);
        self.stats.passes += 1;
        let ctx = Ctx::new(api, now, self.seq, std::mem::take(&mut self.cache), work);
        if !self.nodes_created {
            self.nodes_created = nodes::ensure_nodes(&ctx, &self.nodes);
            if !self.nodes_created {
                ctx.wrote.set(true);
            }
        }
        deployment::sync_all(&ctx, &mut self.hashes);
        replicaset::sync_all(&ctx);
        job::sync_all(&ctx);
        volumes::sync_all(&ctx);
        scheduler::schedule_all(&ctx);
        taints::sync_all(&ctx);
        kubelet::sync_all(&ctx, &mut self.kubelet);
        endpoints::sync_all(&ctx);
        loadbalancer::sync_all(&ctx);
        self.seq = ctx.seq.get();
        self.dirty = ctx.wrote.get();
        self.retry.extend(ctx.retry.take());
        for (t, f) in ctx.timers.take() {
            self.timers.entry(t).or_default().insert(f);
        }
        self.next_wake = self.timers.keys().next().copied();
        self.stats.last_work = ctx.looked.borrow().len() as u64;
        for (k, n) in ctx.writes.take() {
            *self.writes.entry(k).or_default() += n;
        }
        self.cache = ctx.cache.into_inner();
        self.last_revision = api.revision();
    }
}

#[cfg(test)]
mod tests {
    use super::fake::Harness;
    use super::util::condition;
    use super::*;
    use serde_json::json;

    fn deployment(name: &str, replicas: i64, gpus: u32) -> Value {
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                             "spec": {"containers": [{"name": "c", "image": "vllm/vllm-openai:v0.9.0",
                                                      "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}}
            }
        });
        if gpus > 0 {
            d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] =
                json!({"nvidia.com/gpu": gpus.to_string()});
        }
        d
    }

    #[test]
    fn idle_ticks_skip_all_reads_until_something_changes_or_a_timer_is_due() {
        let mut h = Harness::new("cpu=1");
        h.api
            .create(&ResourceRef::deployments(), deployment("web", 2, 0))
            .unwrap();
        h.run(1.0);
        let reads = h.api.reads();
        h.run(1.0);
        assert_eq!(
            h.api.reads(),
            reads,
            "settled cluster: ticks return at once"
        );
        h.api
            .create(
                &ResourceRef::configmaps(),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "default"}}),
            )
            .unwrap();
        let passes = h.dp.stats().passes;
        h.tick();
        assert_eq!(
            h.dp.stats().passes,
            passes + 1,
            "a write wakes the data plane"
        );
        // Timers: a pod turning ready later wakes the data plane without any write.
        let mut d = deployment("slow", 1, 0);
        d["spec"]["template"]["metadata"]["annotations"] = json!({ANN_READY_AFTER: "3"});
        h.api.create(&ResourceRef::deployments(), d).unwrap();
        h.run(1.0);
        assert!(h.dp.next_wake().is_some());
        h.run(3.0);
        let d = h
            .api
            .must_get(&ResourceRef::deployments(), "default", "slow");
        assert_eq!(d["status"]["availableReplicas"], 1);
    }

    fn job(name: &str, run_seconds: &str) -> Value {
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"template": {
                "metadata": {"annotations": {ANN_RUN_SECONDS: run_seconds}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x:1",
                         "resources": {"requests": {"cpu": "10m"}}}]}
            }}
        })
    }

    fn phase(h: &Harness, job: &str) -> String {
        h.pods("default")
            .iter()
            .find(|p| p["metadata"]["labels"]["job-name"] == job)
            .map(|p| p["status"]["phase"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    }

    #[test]
    fn a_pass_after_one_change_looks_only_at_that_object_and_what_it_concerns() {
        let mut h = Harness::new("cpu=2");
        for i in 0..30 {
            h.api
                .create(&ResourceRef::jobs(), job(&format!("j{i}"), "1000"))
                .unwrap();
        }
        h.run(1.0);
        assert_eq!(h.pods("default").len(), 30);
        assert!((0..30).all(|i| phase(&h, &format!("j{i}")) == "Running"));
        let relists = h.dp.stats().relists;
        // Runs the data plane, checking it lists nothing.
        let run = |h: &mut Harness, secs: f64| {
            let lists = h.api.lists();
            if secs == 0.0 {
                h.tick();
            } else {
                h.run(secs);
            }
            assert_eq!(h.api.lists(), lists, "no list after the first pass");
        };
        // One new Job: its pass looks at it and (as they appear) its pod, not the other 60.
        h.api
            .create(&ResourceRef::jobs(), job("new", "1000"))
            .unwrap();
        run(&mut h, 0.0);
        assert!(
            h.dp.stats().last_work <= 4,
            "{:?} after one create",
            h.dp.stats()
        );
        run(&mut h, 0.5);
        assert_eq!(phase(&h, "new"), "Running");
        // One pod gone: the pass looks at it and its Job, which replaces it.
        let victim = h
            .pods("default")
            .into_iter()
            .find(|p| p["metadata"]["labels"]["job-name"] == "j7")
            .unwrap();
        let victim_name = victim["metadata"]["name"].as_str().unwrap().to_string();
        h.api
            .delete(&ResourceRef::pods(), Some("default"), &victim_name)
            .unwrap();
        run(&mut h, 0.0);
        let after_delete = h.dp.stats().last_work;
        assert!(after_delete <= 4, "{after_delete} objects after one delete");
        run(&mut h, 0.5);
        assert_eq!(phase(&h, "j7"), "Running");
        assert_eq!(h.pods("default").len(), 31);
        assert_eq!(h.dp.stats().relists, relists);
        // Timers bring back only their own pod: the new job's pod exits at its run time.
        let mut short = job("short", "2");
        short["spec"]["ttlSecondsAfterFinished"] = json!(1);
        h.api.create(&ResourceRef::jobs(), short).unwrap();
        run(&mut h, 1.0);
        assert_eq!(phase(&h, "short"), "Running");
        run(&mut h, 2.0);
        assert!(h.dp.stats().last_work <= 4, "{:?}", h.dp.stats());
        run(&mut h, 2.0);
        assert!(
            h.api
                .get(&ResourceRef::jobs(), Some("default"), "short")
                .is_none(),
            "finished Job collected after its TTL"
        );
        assert_eq!(h.pods("default").len(), 31);
        assert_eq!(h.dp.stats().relists, relists);
    }

    #[test]
    fn a_job_pod_takes_the_real_controllers_writes_and_no_more() {
        let mut h = Harness::new("cpu=1");
        h.run(0.2);
        h.dp.take_writes();
        let mut j = job("j", "2");
        j["spec"]["template"]["metadata"]["annotations"][ANN_READY_AFTER] = json!("1");
        h.api.create(&ResourceRef::jobs(), j).unwrap();
        h.run(0.5);
        assert_eq!(phase(&h, "j"), "Running");
        let to_running = h.dp.take_writes();
        h.run(3.0);
        assert_eq!(phase(&h, "j"), "Succeeded");
        let to_done = h.dp.take_writes();
        let w = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // Job controller: the pod, SuccessfulCreate, status (startTime, active). Scheduler: the
        // binding, Scheduled. Kubelet: ContainerCreating, then Running (not ready yet).
        assert_eq!(
            w(&to_running),
            "events create 2, jobs status 1, pods bind 1, pods create 1, pods status 2"
        );
        // Kubelet: Ready, then Succeeded. Job controller: ready 1, then succeeded 1 with
        // ready 0 and Complete in one write, the Completed event.
        assert_eq!(w(&to_done), "events create 1, jobs status 2, pods status 2");
    }

    #[test]
    fn lost_changes_are_recovered_by_a_relist() {
        let mut h = Harness::new("cpu=2");
        h.api
            .create(&ResourceRef::jobs(), job("a", "1000"))
            .unwrap();
        h.run(1.0);
        assert_eq!(phase(&h, "a"), "Running");
        // A Job the feed never reported: a pass over changes alone does not see it...
        let mut b = job("b", "1000");
        b["metadata"]["uid"] = json!("uid-unseen");
        b["metadata"]["resourceVersion"] = json!("1");
        crate::dataplane::default_on_create(&ResourceRef::jobs(), &mut b, &mut IpAllocator::new());
        h.api.write_unseen(&ResourceRef::jobs(), b);
        h.run(1.0);
        assert_eq!(phase(&h, "b"), "", "not seen without a change");
        // ...and after lost changes the data plane relists and converges.
        let relists = h.dp.stats().relists;
        h.api
            .create(&ResourceRef::jobs(), job("c", "1000"))
            .unwrap();
        h.api.lose_changes();
        h.run(1.0);
        assert_eq!(h.dp.stats().relists, relists + 1);
        assert_eq!(phase(&h, "b"), "Running");
        assert_eq!(phase(&h, "c"), "Running");
        assert_eq!(phase(&h, "a"), "Running");
        assert_eq!(h.pods("default").len(), 3);
    }

    #[test]
    fn a_pass_takes_at_most_its_budget_and_leaves_the_rest_to_the_next() {
        let mut h = Harness::new("cpu=5");
        h.run(0.2);
        let n = PASS_BUDGET + 100;
        for i in 0..n {
            h.api
                .create(&ResourceRef::jobs(), job(&format!("j{i}"), "1000"))
                .unwrap();
        }
        h.tick();
        assert_eq!(
            h.pods("default").len(),
            PASS_BUDGET,
            "one budget of Jobs synced"
        );
        // What waited goes first: the next pass syncs the Jobs left over.
        h.tick();
        assert_eq!(h.pods("default").len(), n, "the rest on the next pass");
    }

    #[test]
    fn many_jobs_converge_with_changes_lost_along_the_way() {
        let mut h = Harness::new("cpu=3");
        for i in 0..120 {
            let mut j = job(&format!("j{i}"), if i % 3 == 0 { "1" } else { "1000" });
            j["spec"]["ttlSecondsAfterFinished"] = json!(1);
            h.api.create(&ResourceRef::jobs(), j).unwrap();
            if i % 7 == 0 {
                h.tick();
            }
            if i % 29 == 0 {
                h.api.lose_changes();
            }
        }
        for step in 0..60 {
            h.run(0.1);
            if step % 13 == 5 {
                h.api.lose_changes();
            }
        }
        h.run(3.0);
        let pods = h.pods("default");
        assert_eq!(pods.len(), 80, "the 40 short Jobs and their pods are gone");
        assert!(
            pods.iter().all(|p| p["status"]["phase"] == "Running"),
            "{:?}",
            pods.iter()
                .map(|p| p["status"]["phase"].clone())
                .collect::<Vec<_>>()
        );
        // Deleting the Jobs' pods in bulk: each is replaced.
        for p in pods.iter().take(30) {
            h.api
                .delete(
                    &ResourceRef::pods(),
                    Some("default"),
                    p["metadata"]["name"].as_str().unwrap(),
                )
                .unwrap();
        }
        h.api.lose_changes();
        h.run(1.0);
        let pods = h.pods("default");
        assert_eq!(pods.len(), 80);
        assert!(pods.iter().all(|p| p["status"]["phase"] == "Running"));
    }

    #[test]
    fn gpu_deployment_pending_then_scaled_to_zero_and_back() {
        let mut h = Harness::new("gpu-a100=1x8,cpu=2");
        h.api
            .create(&ResourceRef::deployments(), deployment("llm", 2, 8))
            .unwrap();
        h.run(1.0);
        let pods = h.pods("default");
        assert_eq!(pods.len(), 2);
        let pending: Vec<&Value> = pods
            .iter()
            .filter(|p| p["status"]["phase"] == "Pending")
            .collect();
        assert_eq!(pending.len(), 1);
        assert_eq!(
            condition(pending[0], "PodScheduled").unwrap()["message"],
            "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
        );
        let d = h
            .api
            .must_get(&ResourceRef::deployments(), "default", "llm");
        assert_eq!(d["status"]["readyReplicas"], 1);
        // maxUnavailable 25% of 2 rounds down to 0: one missing pod means not Available.
        assert_eq!(
            condition(&d, "Available").unwrap()["reason"],
            "MinimumReplicasUnavailable"
        );
        // Scale to zero (OnDemand idle) and back to one.
        for (n, pods_left) in [(0, 0), (1, 1)] {
            let mut d = h
                .api
                .must_get(&ResourceRef::deployments(), "default", "llm");
            d["spec"]["replicas"] = json!(n);
            h.api.update(&ResourceRef::deployments(), d).unwrap();
            h.run(0.6);
            let d = h
                .api
                .must_get(&ResourceRef::deployments(), "default", "llm");
            assert_eq!(h.pods("default").len(), pods_left);
            assert_eq!(
                d["status"]["observedGeneration"],
                d["metadata"]["generation"]
            );
            assert_eq!(d["status"]["replicas"].as_i64().unwrap_or(0), n);
            assert_eq!(d["status"]["availableReplicas"].as_i64().unwrap_or(0), n);
            assert_eq!(
                condition(&d, "Progressing").unwrap()["reason"],
                "NewReplicaSetAvailable"
            );
        }
    }

    #[test]
    fn malformed_objects_do_not_panic() {
        let mut h = Harness::new("cpu=1");
        let objs = [
            (
                ResourceRef::pods(),
                json!({"metadata": {"name": "p1", "namespace": "default", "labels": "x", "annotations": {ANN_EXIT_CODE: "zz", ANN_RUN_SECONDS: "-1"}},
                "spec": {"containers": "nope", "nodeSelector": ["a"], "tolerations": 3,
                         "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"operator": "Gt", "values": ["x"]}]}]}}}}}),
            ),
            (
                ResourceRef::pods(),
                json!({"metadata": {"name": "p2", "namespace": "default"},
                "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1e40", "memory": [1]}}}]}}),
            ),
            (
                ResourceRef::deployments(),
                json!({"metadata": {"name": "d", "namespace": "default"},
                "spec": {"replicas": -3, "selector": "x", "strategy": {"rollingUpdate": {"maxSurge": "abc%", "maxUnavailable": []}},
                         "template": {"metadata": ["bad"], "spec": 7}}}),
            ),
            (
                ResourceRef::replicasets(),
                json!({"metadata": {"name": "r", "namespace": "default"},
                "spec": {"replicas": 1, "selector": {"matchExpressions": [{"key": "a", "operator": "Nope"}]}, "template": {"metadata": {"labels": 5}}}}),
            ),
            (
                ResourceRef::jobs(),
                json!({"metadata": {"name": "j", "namespace": "default"},
                "spec": {"completions": 2, "completionMode": "Indexed", "activeDeadlineSeconds": -5, "template": {"metadata": {"labels": "x"}, "spec": {"restartPolicy": "Never"}}}}),
            ),
            (
                ResourceRef::services(),
                json!({"metadata": {"name": "s", "namespace": "default"},
                "spec": {"type": "LoadBalancer", "selector": {"app": 1}, "ports": [{"port": "x", "targetPort": {"a": 1}}]}}),
            ),
            (
                ResourceRef::core("persistentvolumeclaims"),
                json!({"metadata": {"name": "c", "namespace": "default", "annotations": "x"}, "spec": "bad"}),
            ),
        ];
        for (r, o) in objs {
            h.api.create(&r, o).unwrap();
        }
        h.run(3.0);
    }

    /// Prints how long ticks take on a mid-sized cluster (run with `--ignored --nocapture`).
    #[test]
    #[ignore = "measurement, not a behaviour check"]
    fn measure_tick_cost() {
        let mut h = Harness::new("gpu-a100=4x8,cpu=16");
        for i in 0..50 {
            h.api
                .create(
                    &ResourceRef::deployments(),
                    deployment(&format!("d{i}"), 4, 0),
                )
                .unwrap();
        }
        let t = std::time::Instant::now();
        h.run(2.0);
        println!(
            "settle 50 deployments x 4 pods over 40 ticks: {:?}",
            t.elapsed()
        );
        assert_eq!(h.pods("default").len(), 200);
        let t = std::time::Instant::now();
        for _ in 0..100 {
            h.tick();
        }
        println!("idle tick (skipped): {:?}", t.elapsed() / 100);
        let t = std::time::Instant::now();
        for i in 0..20 {
            h.api
                .create(
                    &ResourceRef::configmaps(),
                    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("c{i}"), "namespace": "default"}}),
                )
                .unwrap();
            h.tick();
        }
        println!(
            "full pass over 200 pods / 50 RS / 20 nodes, nothing to do: {:?}",
            t.elapsed() / 20
        );
    }
}

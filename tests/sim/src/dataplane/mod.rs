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
use std::collections::HashMap;
use std::rc::Rc;

use chrono::{DateTime, Utc};
use serde_json::Value;

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
    /// The store's current global resourceVersion, if cheap to read. When provided,
    /// [`DataPlane::tick`] skips passes while nothing changed and no timer is due.
    fn revision(&self) -> Option<u64> {
        None
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

/// One tick's view of the cluster: the API, the clock, and bookkeeping of writes and timers.
pub(crate) struct Ctx<'a> {
    pub api: &'a dyn ClusterApi,
    pub now: DateTime<Utc>,
    pub now_s: String,
    wrote: Cell<bool>,
    wake: Cell<Option<DateTime<Utc>>>,
    seq: Cell<u64>,
    /// Lists read this pass. An update this pass replaces its object in the list at the next
    /// read; a create, a delete or a failed write drops the list (read again when needed).
    cache: RefCell<HashMap<ResourceRef, Rc<Vec<Value>>>>,
    /// Objects updated this pass (as stored), not yet folded into their cached list.
    updated: RefCell<HashMap<ResourceRef, Vec<Value>>>,
}

impl<'a> Ctx<'a> {
    fn new(api: &'a dyn ClusterApi, now: DateTime<Utc>, seq: u64) -> Self {
        Ctx {
            api,
            now,
            now_s: util::fmt_time(now),
            wrote: Cell::new(false),
            wake: Cell::new(None),
            seq: Cell::new(seq),
            cache: RefCell::new(HashMap::new()),
            updated: RefCell::new(HashMap::new()),
        }
    }

    /// All objects of `r` (all namespaces), read once per pass unless this pass created or
    /// deleted one (its own updates are folded in: a list of thousands of pods is not read again
    /// after each status write).
    pub fn list_all(&self, r: &ResourceRef) -> Rc<Vec<Value>> {
        let updated = self.updated.borrow_mut().remove(r);
        let mut cache = self.cache.borrow_mut();
        if let Some(list) = cache.get_mut(r) {
            match updated {
                None => return Rc::clone(list),
                Some(objs) => {
                    let listed: &mut Vec<Value> = Rc::make_mut(list);
                    if fold_updates(listed, objs) {
                        return Rc::clone(list);
                    }
                }
            }
        }
        drop(cache);
        let v = Rc::new(self.api.list(r, None));
        self.cache.borrow_mut().insert(r.clone(), Rc::clone(&v));
        v
    }

    fn invalidate(&self, r: &ResourceRef) {
        self.wrote.set(true);
        self.cache.borrow_mut().remove(r);
        self.updated.borrow_mut().remove(r);
    }

    /// After an update: the stored object replaces the listed one at the next read.
    fn updated(&self, r: &ResourceRef, result: &Result<Value, String>) {
        self.wrote.set(true);
        match result {
            Ok(obj) if self.cache.borrow().contains_key(r) => self
                .updated
                .borrow_mut()
                .entry(r.clone())
                .or_default()
                .push(obj.clone()),
            Ok(_) => {}
            Err(_) => self.invalidate(r),
        }
    }

    pub fn create(&self, r: &ResourceRef, obj: Value) -> Result<Value, String> {
        self.invalidate(r);
        self.api.create(r, obj)
    }
    pub fn update(&self, r: &ResourceRef, obj: Value) -> Result<Value, String> {
        let result = self.api.update(r, obj);
        self.updated(r, &result);
        result
    }
    pub fn update_status(&self, r: &ResourceRef, obj: Value) -> Result<Value, String> {
        let result = self.api.update_status(r, obj);
        self.updated(r, &result);
        result
    }
    pub fn delete(&self, r: &ResourceRef, ns: Option<&str>, name: &str) -> Result<(), String> {
        self.invalidate(r);
        self.api.delete(r, ns, name)
    }
    /// Asks for a pass at `t` even if nothing else changes by then.
    pub fn wake_at(&self, t: DateTime<Utc>) {
        let t = t.max(self.now);
        match self.wake.get() {
            Some(w) if w <= t => {}
            _ => self.wake.set(Some(t)),
        }
    }
    /// Asks for another pass right away (something is still converging).
    pub fn again(&self) {
        self.wrote.set(true);
    }
    pub fn next_seq(&self) -> u64 {
        let s = self.seq.get() + 1;
        self.seq.set(s);
        s
    }
}

/// Replaces listed objects by their updated versions (same namespace and name); false when one
/// is not in the list (the caller reads the list again).
fn fold_updates(list: &mut [Value], updated: Vec<Value>) -> bool {
    let position: HashMap<(String, String), usize> = list
        .iter()
        .enumerate()
        .map(|(i, o)| {
            (
                (util::namespace(o).to_string(), util::name(o).to_string()),
                i,
            )
        })
        .collect();
    for obj in updated {
        let key = (
            util::namespace(&obj).to_string(),
            util::name(&obj).to_string(),
        );
        match position.get(&key) {
            Some(&i) => list[i] = obj,
            None => return false,
        }
    }
    true
}

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

    /// Runs one pass of all controllers. Cheap when nothing changed: with
    /// [`ClusterApi::revision`] implemented, a pass with no new writes and no due timer returns
    /// at once.
    pub fn tick(&mut self, api: &dyn ClusterApi, now: DateTime<Utc>) {
        let rev = api.revision();
        if !self.dirty
            && rev.is_some()
            && rev == self.last_revision
            && self.next_wake.is_none_or(|w| now < w)
        {
            return;
        }
        let ctx = Ctx::new(api, now, self.seq);
        if !self.nodes_created {
            self.nodes_created = nodes::ensure_nodes(&ctx, &self.nodes);
            if !self.nodes_created {
                ctx.again();
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
        self.next_wake = ctx.wake.get();
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
    fn a_pass_reads_a_list_once_and_sees_its_own_updates_in_it() {
        let api = fake::FakeApi::new();
        let cms = ResourceRef::configmaps();
        let cm = |name: &str, v: &str| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "default"}, "data": {"v": v}})
        };
        for n in ["a", "b", "c"] {
            api.create(&cms, cm(n, "0")).unwrap();
        }
        let ctx = Ctx::new(&api, fake::base_time(), 0);
        let names = |l: &[Value]| -> Vec<String> {
            l.iter()
                .map(|o| {
                    format!(
                        "{}={}",
                        util::name(o),
                        o["data"]["v"].as_str().unwrap_or("")
                    )
                })
                .collect()
        };
        let reads = api.reads();
        let first = ctx.list_all(&cms);
        assert_eq!(api.reads(), reads + 1);
        let mut b = first[1].clone();
        b["data"]["v"] = json!("1");
        ctx.update(&cms, b).unwrap();
        let mut b2 = ctx.list_all(&cms)[1].clone();
        assert_eq!(
            api.reads(),
            reads + 1,
            "its own update is folded in, no second list"
        );
        assert_eq!(names(&ctx.list_all(&cms)), ["a=0", "b=1", "c=0"]);
        assert_eq!(
            *ctx.list_all(&cms),
            api.all(&cms),
            "as a list would read it"
        );
        // The list the caller held is unchanged.
        assert_eq!(names(&first), ["a=0", "b=0", "c=0"]);
        b2["data"]["v"] = json!("2");
        ctx.update(&cms, b2).unwrap();
        assert_eq!(names(&ctx.list_all(&cms)), ["a=0", "b=2", "c=0"]);
        // (+1: the comparison's own list above.)
        assert_eq!(api.reads(), reads + 2);
        // A create, or a failed update, reads the list again.
        ctx.create(&cms, cm("bb", "0")).unwrap();
        assert_eq!(names(&ctx.list_all(&cms)), ["a=0", "b=2", "bb=0", "c=0"]);
        assert_eq!(api.reads(), reads + 3);
        api.fail_next_updates(1);
        let mut stale = ctx.list_all(&cms)[0].clone();
        stale["data"]["v"] = json!("9");
        assert!(ctx.update(&cms, stale).is_err());
        assert_eq!(*ctx.list_all(&cms), api.all(&cms));
        assert_eq!(api.reads(), reads + 5);
        assert!(ctx.wrote.get());
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
        h.tick();
        assert!(h.api.reads() > reads, "a write wakes the data plane");
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

//! The simulated data plane: nodes from `--nodes`, built-in defaulting on create, the
//! scheduler, a kubelet, the ReplicaSet/Deployment/Job controllers and Endpoints, as logic over
//! the [`ClusterApi`] trait.
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
mod nodes;
mod quantity;
mod replicaset;
mod scheduler;
mod util;
mod volumes;

use std::cell::Cell;

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
        }
    }

    pub fn create(&self, r: &ResourceRef, obj: Value) -> Result<Value, String> {
        self.wrote.set(true);
        self.api.create(r, obj)
    }
    pub fn update(&self, r: &ResourceRef, obj: Value) -> Result<Value, String> {
        self.wrote.set(true);
        self.api.update(r, obj)
    }
    pub fn update_status(&self, r: &ResourceRef, obj: Value) -> Result<Value, String> {
        self.wrote.set(true);
        self.api.update_status(r, obj)
    }
    pub fn delete(&self, r: &ResourceRef, ns: Option<&str>, name: &str) -> Result<(), String> {
        self.wrote.set(true);
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

/// The data plane's controllers and their small amount of in-memory state.
#[derive(Debug, Default)]
pub struct DataPlane {
    nodes: Vec<Value>,
    nodes_created: bool,
    kubelet: kubelet::KubeletState,
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
        deployment::sync_all(&ctx);
        replicaset::sync_all(&ctx);
        job::sync_all(&ctx);
        volumes::sync_all(&ctx);
        scheduler::schedule_all(&ctx);
        kubelet::sync_all(&ctx, &mut self.kubelet);
        endpoints::sync_all(&ctx);
        self.seq = ctx.seq.get();
        self.dirty = ctx.wrote.get();
        self.next_wake = ctx.wake.get();
        self.last_revision = api.revision();
    }
}

//! Bytes per cached object: how much of the operator's memory at scale its watch caches take, per
//! kind: as the API server sends the objects, as the caches kept them before (`managedFields` and the
//! spec dropped, `k8s_openapi` types), and as they keep them now (`controller::cached`); plus what
//! the index keeps per node and what kube-runtime's event recorder keeps per published Event.
//! Measured with a counting allocator around reflector stores of N objects (default 10,000) built
//! from objects kube-sim served during `make bench-scale` (`tests/fixtures/scale/`).
//!
//! `cargo bench --bench cache_memory [-- N]`. Prints requested bytes and live allocations per
//! object; the allocator's own overhead (glibc: about 16 bytes per allocation) comes on top.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static BYTES: AtomicIsize = AtomicIsize::new(0);
static ALLOCS: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        ALLOCS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

use hypersync_operator::api::AgentNode;
use hypersync_operator::controller::index::Index;
use hypersync_operator::controller::{cached, watch};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::core::DeserializeGuard;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use serde::de::DeserializeOwned;

const NODE: &str = include_str!("../tests/fixtures/scale/agentnode.json");
const JOB: &str = include_str!("../tests/fixtures/scale/job.json");
const POD: &str = include_str!("../tests/fixtures/scale/pod.json");

fn live() -> (isize, isize) {
    (
        BYTES.load(Ordering::Relaxed),
        ALLOCS.load(Ordering::Relaxed),
    )
}

/// `n` copies of `template` under names and uids of their own, decoded as the watch decodes them.
fn objects<K: DeserializeOwned>(template: &str, n: usize) -> Vec<K> {
    let value: serde_json::Value = serde_json::from_str(template).expect("fixture parses");
    let name = value["metadata"]["name"]
        .as_str()
        .expect("a name")
        .to_string();
    let uid = value["metadata"]["uid"]
        .as_str()
        .expect("a uid")
        .to_string();
    let stem = &uid[..uid.len() - 5];
    (0..n)
        .map(|i| {
            let text = template
                .replace(&uid, &format!("{stem}{i:05}"))
                .replace(&format!("\"{name}\""), &format!("\"{name}-{i:05}\""));
            serde_json::from_str(&text).expect("copy parses")
        })
        .collect()
}

/// Bytes and allocations per object that a reflector store of `n` copies of `template` holds,
/// each passed through `trim` first (as `watch::pipeline` does), and the objects themselves.
fn store_cost<K>(template: &str, n: usize, trim: fn(&mut K)) -> ((f64, f64), Vec<Arc<K>>)
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Send + Sync + 'static,
{
    let before = live();
    let (store, mut writer) = reflector::store::<K>();
    for mut obj in objects::<K>(template, n) {
        trim(&mut obj);
        writer.apply_watcher_event(&Event::Apply(obj));
    }
    let after = live();
    let per = |a: isize, b: isize| (a - b) as f64 / n as f64;
    (
        (per(after.0, before.0), per(after.1, before.1)),
        store.state(),
    )
}

fn keep<K>(_: &mut K) {}

fn strip_and<K: kube::Resource>(obj: &mut K, trim: fn(&mut K)) {
    watch::strip(obj);
    trim(obj);
}

fn row(what: &str, (bytes, allocs): (f64, f64)) {
    // glibc's malloc adds about 16 bytes per allocation (header and rounding).
    println!(
        "{what:<52} {:>8.0} B {:>6.0} allocs  ~{:>6.0} B with malloc overhead",
        bytes,
        allocs,
        bytes + 16.0 * allocs
    );
}

/// A `Dissolved` Event as kube-runtime's recorder builds it and keeps it in its cache (6 minutes).
fn dissolved_event(i: usize) -> K8sEvent {
    let name = format!("agent-{i:05}");
    K8sEvent {
        action: Some("Dissolve".into()),
        reason: Some("Dissolved".into()),
        note: Some(format!(
            "objective met: tasks_done = 1 (target >= 1); {name} deleted"
        )),
        event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
        regarding: Some(ObjectReference {
            api_version: Some("hypersync.io/v1alpha1".into()),
            kind: Some("AgentNode".into()),
            name: Some(name.clone()),
            namespace: Some("scale".into()),
            uid: Some(format!("61606b95-7d74-4de6-99ee-49c72380{i:04}")),
            ..ObjectReference::default()
        }),
        metadata: ObjectMeta {
            name: Some(format!("{name}.18eefbbc3bfb4cba")),
            namespace: Some("scale".into()),
            ..ObjectMeta::default()
        },
        reporting_controller: Some("hypersync-operator".into()),
        reporting_instance: Some("hypersync-operator".into()),
        type_: Some("Normal".into()),
        ..K8sEvent::default()
    }
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    println!("per cached object, stores of {n} (requested bytes; allocations still live)");
    println!(
        "inline sizes: k8s Pod {} B, cached Pod {} B, k8s Job {} B, cached Job {} B, AgentNode {} B",
        size_of::<Pod>(),
        size_of::<cached::Pod>(),
        size_of::<Job>(),
        size_of::<cached::Job>(),
        size_of::<AgentNode>()
    );

    let strip_node: fn(&mut DeserializeGuard<AgentNode>) = |o| strip_and(o, keep);
    row(
        "AgentNode as sent",
        store_cost::<DeserializeGuard<AgentNode>>(NODE, n, keep).0,
    );
    let (node_cost, nodes) = store_cost(NODE, n, strip_node);
    row("AgentNode cached (no managedFields)", node_cost);

    row("Job as sent", store_cost::<Job>(JOB, n, keep).0);
    let strip_job: fn(&mut Job) = |o| strip_and(o, |j| j.spec = None);
    row(
        "Job without managedFields and spec",
        store_cost(JOB, n, strip_job).0,
    );
    let trim_job: fn(&mut cached::Job) = |o| strip_and(o, cached::job);
    let (job_cost, jobs) = store_cost(JOB, n, trim_job);
    row("Job cached (controller::cached::Job)", job_cost);

    row("Pod as sent", store_cost::<Pod>(POD, n, keep).0);
    let strip_pod: fn(&mut Pod) = |o| strip_and(o, |p| p.spec = None);
    row(
        "Pod without managedFields and spec",
        store_cost(POD, n, strip_pod).0,
    );
    let trim_pod: fn(&mut cached::Pod) = |o| strip_and(o, cached::pod);
    let (pod_cost, pods) = store_cost(POD, n, trim_pod);
    row("Pod cached (controller::cached::Pod)", pod_cost);

    // The index over the same objects (nodes, their Jobs, their pods).
    let before = live();
    let index = Index::default();
    for node in &nodes {
        if let Ok(node) = &node.0 {
            index.node_applied(node);
        }
    }
    for job in &jobs {
        index.job_applied(job);
    }
    for pod in &pods {
        index.pod_applied(pod);
    }
    let after = live();
    row(
        "Index (node, its Job and pod)",
        (
            (after.0 - before.0) as f64 / n as f64,
            (after.1 - before.1) as f64 / n as f64,
        ),
    );

    let before = live();
    let events: Vec<(String, K8sEvent)> = (0..n)
        .map(|i| (format!("agent-{i:05}"), dissolved_event(i)))
        .collect();
    let after = live();
    row(
        "recorder's cache per Dissolved Event (approx.)",
        (
            (after.0 - before.0) as f64 / n as f64,
            (after.1 - before.1) as f64 / n as f64,
        ),
    );
    drop((events, index, nodes, jobs, pods));
}

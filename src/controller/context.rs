//! The Context shared by the three controllers: the client, reflector stores of every kind they read,
//! the indexes, metrics, the event recorder, per-object backoff and what this process wrote.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::core::DeserializeGuard;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Client, Resource};

use super::cached::{Job, Pod};
use super::index::Index;
use crate::api::{AgentNode, AgentStack, ModelEntry};
use crate::error::{Backoff, ObjectKey};
use crate::metrics::Metrics;

/// Valid objects of a guarded store in one namespace (malformed objects are skipped here; their own
/// reconcile reports them).
pub fn valid_in<K>(store: &Store<DeserializeGuard<K>>, namespace: &str) -> Vec<K>
where
    K: Clone + Resource<DynamicType = ()> + 'static,
    DeserializeGuard<K>: Resource<DynamicType = ()>,
{
    store
        .state()
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .filter(|k| k.meta().namespace.as_deref() == Some(namespace))
        .cloned()
        .collect()
}

/// Objects that already got their Warning Event for a reason, until they reconcile successfully.
#[derive(Default)]
pub struct Warned(Mutex<HashMap<ObjectKey, &'static str>>);

impl Warned {
    /// Whether this is the first failure of `key` with `reason` (then remembered).
    pub fn first(&self, key: &ObjectKey, reason: &'static str) -> bool {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.insert(key.clone(), reason) != Some(reason)
    }

    /// Forget `key` (it reconciled successfully).
    pub fn clear(&self, key: &ObjectKey) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

/// The span of each object's failed reconcile whose trace is exported, from the end of the
/// reconcile to the error policy that reports the failure, so the failure's log line and Warning
/// Event carry that trace id (the policy runs outside the reconcile span). Empty when export is off.
#[derive(Default)]
pub struct FailedSpans(Mutex<HashMap<ObjectKey, tracing::Span>>);

impl FailedSpans {
    pub fn put(&self, key: ObjectKey, span: tracing::Span) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, span);
    }

    /// The span stored for `key`, forgotten.
    pub fn take(&self, key: &ObjectKey) -> Option<tracing::Span> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key)
    }
}

/// How far this process got in dissolving a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The `Dissolved` Event is written.
    Recorded,
    /// The node is deleted.
    Deleted,
}

/// Nodes (by uid) this process dissolved, so the `Dissolved` Event is written once per process
/// even when the deletion is retried, the deletion is not repeated while a cache (or a watch that
/// replays older events) still shows the node, and no second Event is written when the deletion is
/// observed. The most recent [`Dissolved::KEEP`] deleted nodes are remembered after their deletion
/// was observed; older ones are forgotten, so memory stays bounded.
#[derive(Default)]
pub struct Dissolved(Mutex<DissolvedInner>);

#[derive(Default)]
struct DissolvedInner {
    stages: HashMap<String, Stage>,
    observed: std::collections::VecDeque<String>,
}

impl Dissolved {
    /// How many observed deletions are remembered.
    pub const KEEP: usize = 50_000;

    pub fn stage(&self, uid: &str) -> Option<Stage> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stages
            .get(uid)
            .copied()
    }

    pub fn set(&self, uid: &str, stage: Stage) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stages
            .insert(uid.to_string(), stage);
    }

    /// The node's deletion was observed; whether this process had dissolved it.
    pub fn observed_deleted(&self, uid: &str) -> bool {
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !inner.stages.contains_key(uid) {
            return false;
        }
        inner.stages.insert(uid.to_string(), Stage::Deleted);
        inner.observed.push_back(uid.to_string());
        while inner.observed.len() > Self::KEEP {
            if let Some(old) = inner.observed.pop_front() {
                inner.stages.remove(&old);
            }
        }
        true
    }
}

/// Shared state of the controllers.
pub struct Context {
    pub client: Client,
    pub entries: Store<DeserializeGuard<ModelEntry>>,
    pub stacks: Store<DeserializeGuard<AgentStack>>,
    pub nodes: Store<DeserializeGuard<AgentNode>>,
    pub jobs: Store<Job>,
    pub deployments: Store<Deployment>,
    pub pods: Store<Pod>,
    /// Indexes kept current by the watches (`index.rs`).
    pub index: Arc<Index>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// Who the Events say reported them (the recorder's own reporter, for Events it cannot name).
    pub reporter: Reporter,
    pub backoff: Backoff,
    pub warned: Warned,
    pub failed_spans: FailedSpans,
    /// Children applied by this process, to skip re-applying unchanged ones.
    pub applied: super::status::AppliedCache,
    /// Statuses written by this process, so a reconcile reading a cache older than its own write
    /// does not write the same status again.
    pub written: super::status::WrittenStatus,
    pub dissolved: Dissolved,
}

impl Context {
    pub fn entries_in(&self, namespace: &str) -> Vec<ModelEntry> {
        valid_in(&self.entries, namespace)
    }

    /// A valid object of a guarded store by key.
    pub fn lookup<K>(
        store: &Store<DeserializeGuard<K>>,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<DeserializeGuard<K>>>
    where
        K: Clone + Resource<DynamicType = ()> + 'static,
        DeserializeGuard<K>: Resource<DynamicType = ()>,
    {
        super::watch::get(store, &(namespace.to_string(), name.to_string())).filter(|g| g.0.is_ok())
    }

    /// Publish an Event about `obj`, reporting a failure to the caller (for Events that must not be
    /// lost, such as `Dissolved`). A Warning published while an exported (sampled) span is current
    /// is annotated with its trace id ([`crate::otel::TRACE_ID_ANNOTATION`]).
    pub async fn publish(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        let ev = new_event(type_, reason, action, note);
        let trace_id = match type_ {
            EventType::Warning => crate::otel::sampled_trace_id(&tracing::Span::current()),
            EventType::Normal => None,
        };
        let too_long = reference
            .name
            .as_ref()
            .is_some_and(|n| n.len() > RECORDER_NAME_MAX);
        if too_long || trace_id.is_some() {
            return self.publish_once(&ev, reference, trace_id).await;
        }
        self.recorder.publish(&ev, reference).await
    }

    /// Create an Event as the recorder would, named `<name>.<nanoseconds>`, without the recorder:
    /// - for Events this process writes once per object (the `Dissolved` Event: [`Dissolved`] keeps
    ///   it from being repeated), as kube-runtime's recorder keeps every Event it publishes for 6
    ///   minutes to fold repeats into a series (10,000 dissolving nodes would leave 10,000 cached
    ///   Events that never fold);
    /// - for an Event annotated with a trace id (the recorder sets no annotations; each such Event
    ///   has its own trace anyway);
    /// - for objects whose name is too long for the recorder's Event names (over 253 characters,
    ///   refused by the API server): those get `<child_name(name)>.<nanoseconds>`, still regarding
    ///   the object by its full name.
    pub async fn publish_once(
        &self,
        ev: &Event,
        reference: &ObjectReference,
        trace_id: Option<crate::telemetry::TraceId>,
    ) -> Result<(), kube::Error> {
        use k8s_openapi::api::events::v1::Event as K8sEvent;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
        let now = k8s_openapi::jiff::Timestamp::now();
        let name = reference
            .name
            .as_deref()
            .unwrap_or(&self.reporter.controller);
        let name = if name.len() > RECORDER_NAME_MAX {
            crate::workload::child_name(name, "")
        } else {
            name.to_string()
        };
        let namespace = reference.namespace.as_deref().unwrap_or("default");
        let event = K8sEvent {
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            note: ev.note.clone(),
            event_time: Some(MicroTime(now)),
            regarding: Some(reference.clone()),
            metadata: ObjectMeta {
                name: Some(format!("{name}.{:x}", now.as_nanosecond())),
                namespace: Some(namespace.to_string()),
                annotations: trace_id.map(|id| {
                    std::collections::BTreeMap::from([(
                        crate::otel::TRACE_ID_ANNOTATION.to_string(),
                        id.to_string(),
                    )])
                }),
                ..ObjectMeta::default()
            },
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            type_: Some(
                match ev.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_string(),
            ),
            ..K8sEvent::default()
        };
        kube::Api::<K8sEvent>::namespaced(self.client.clone(), namespace)
            .create(&kube::api::PostParams::default(), &event)
            .await
            .map(|_| ())
    }

    /// Publish an Event about `obj`; failures to publish are logged, never fatal.
    pub async fn event(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        if let Err(err) = self.publish(reference, type_, reason, action, note).await {
            tracing::warn!(%err, reason, "failed to publish event");
        }
    }
}

/// An Event to publish (the note cut at 1,000 bytes).
pub fn new_event(type_: EventType, reason: &str, action: &str, note: String) -> Event {
    Event {
        type_,
        reason: reason.to_string(),
        note: Some(truncate(note, 1000)),
        action: action.to_string(),
        secondary: None,
    }
}

/// Longest object name the event recorder can name Events after: `<name>.<nanoseconds in hex>`
/// (up to 16 digits) must stay a valid object name of at most 253 characters.
pub const RECORDER_NAME_MAX: usize = 253 - 17;

/// An ObjectReference for events.
pub fn reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    let mut r = obj.object_ref(&());
    r.resource_version = None;
    r
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

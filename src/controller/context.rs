//! The Context shared by the three controllers: the client, reflector stores of every kind they read,
//! metrics, the event recorder, per-object backoff and the placement index.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::core::DeserializeGuard;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Client, Resource};

use crate::api::agent_node::PlacementStatus;
use crate::api::{AgentNode, AgentStack, ModelEntry};
use crate::error::Backoff;
use crate::geometry::AnchorIndex;
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

/// Placement bookkeeping of the AgentNode controller.
#[derive(Default)]
pub struct PlacementState {
    /// Occupied slots per anchor; built from the node store on first use.
    pub index: Option<AnchorIndex>,
    /// Placements written by this process, by node uid.
    pub written: HashMap<String, PlacementStatus>,
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
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub backoff: Backoff,
    /// Occupied placement slots, and the placements this process wrote (by node uid) so a reconcile
    /// that reads a cache older than its own status write reuses the placement instead of placing twice.
    pub placement: Mutex<PlacementState>,
    /// Children applied by this process, to skip re-applying unchanged ones.
    pub applied: super::status::AppliedCache,
}

impl Context {
    pub fn entries_in(&self, namespace: &str) -> Vec<ModelEntry> {
        valid_in(&self.entries, namespace)
    }

    pub fn stacks_in(&self, namespace: &str) -> Vec<AgentStack> {
        valid_in(&self.stacks, namespace)
    }

    pub fn nodes_in(&self, namespace: &str) -> Vec<AgentNode> {
        valid_in(&self.nodes, namespace)
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
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(truncate(note, 1000)),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(err) = self.recorder.publish(&ev, reference).await {
            tracing::warn!(%err, reason, "failed to publish event");
        }
    }
}

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

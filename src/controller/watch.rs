//! The watch pipelines: one watch per kind, each in its own task, feeding a reflector store (with
//! `managedFields` and the fields no controller reads stripped), the [`Index`], and the reconcile
//! queues of the controllers the change affects.
//!
//! No kube-runtime shared stream is used: a `ReflectHandle` can return `Pending` without a wake-up
//! when the object it announces has already left the store (kube-rs issue 1590), which stalls the
//! controller after deletions. Here the pipeline writes the store, updates the index, then sends
//! object references into unbounded queues the controllers read with `reconcile_on`; the
//! controllers' schedulers deduplicate them.

use std::collections::HashSet;
use std::sync::Arc;

use futures::channel::mpsc::UnboundedSender;
use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_fn};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::index::{Index, Key, Triggers, key_of};
use crate::api::{AgentNode, AgentStack, ModelEntry};

/// The reconcile queues of the three controllers.
#[derive(Clone)]
pub struct Queues {
    pub nodes: UnboundedSender<ObjectRef<DeserializeGuard<AgentNode>>>,
    pub entries: UnboundedSender<ObjectRef<DeserializeGuard<ModelEntry>>>,
    pub stacks: UnboundedSender<ObjectRef<DeserializeGuard<AgentStack>>>,
}

fn object_ref<K: Resource<DynamicType = ()>>(key: &Key) -> ObjectRef<K> {
    ObjectRef::new(&key.1).within(&key.0)
}

impl Queues {
    /// Queue the reconciles a change asks for (a closed queue means the controllers stopped).
    pub fn send(&self, t: Triggers) {
        for k in &t.nodes {
            let _ = self.nodes.unbounded_send(object_ref(k));
        }
        for k in &t.entries {
            let _ = self.entries.unbounded_send(object_ref(k));
        }
        for k in &t.stacks {
            let _ = self.stacks.unbounded_send(object_ref(k));
        }
    }
}

/// What a pipeline does with each change of its kind, after the store has been updated.
pub trait Handler<K>: Send + 'static {
    /// An object was added or changed.
    fn applied(&mut self, obj: &K) -> Triggers;
    /// An object was deleted; `obj` is its last state when the watch saw the deletion, `None` when
    /// the deletion is inferred from a relist that no longer contains it.
    fn deleted(&mut self, key: &Key, obj: Option<&K>) -> Triggers;
}

/// Drop every object's `managedFields`, which no controller reads (each pipeline's `trim` drops the
/// rest of what its kind does not need).
pub fn strip<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// One watch: store + index + triggers. Runs until the stream ends (it does not: the watcher retries
/// with backoff).
pub fn pipeline<K, H>(
    api: Api<K>,
    config: watcher::Config,
    writer: reflector::store::Writer<K>,
    trim: fn(&mut K),
    mut handler: H,
    queues: Queues,
) -> impl Stream<Item = ()> + Send
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    H: Handler<K>,
{
    let mut known: HashSet<Key> = HashSet::new();
    let mut seen: Option<HashSet<Key>> = None;
    watch_fn(api, config)
        .default_backoff()
        .modify(move |obj| {
            strip(obj);
            trim(obj);
        })
        .reflect(writer)
        .filter_map(move |ev| {
            match ev {
                Err(err) => tracing::warn!(%err, "watch error; retrying with backoff"),
                Ok(Event::Apply(obj)) => {
                    let key = key_of(&obj);
                    known.insert(key);
                    queues.send(handler.applied(&obj));
                }
                Ok(Event::Delete(obj)) => {
                    let key = key_of(&obj);
                    known.remove(&key);
                    queues.send(handler.deleted(&key, Some(&obj)));
                }
                Ok(Event::Init) => seen = Some(HashSet::new()),
                Ok(Event::InitApply(obj)) => {
                    let key = key_of(&obj);
                    if let Some(seen) = seen.as_mut() {
                        seen.insert(key.clone());
                    }
                    known.insert(key);
                    queues.send(handler.applied(&obj));
                }
                Ok(Event::InitDone) => {
                    // Objects deleted while the watch was down are gone from the relist.
                    if let Some(seen) = seen.take() {
                        let gone: Vec<Key> = known.difference(&seen).cloned().collect();
                        for key in gone {
                            known.remove(&key);
                            queues.send(handler.deleted(&key, None));
                        }
                    }
                }
            }
            futures::future::ready(Some(()))
        })
}

/// Keys of the valid stacks of a namespace in the store (stacks are few; used when a ModelEntry
/// changes what stacks resolve against).
pub fn stacks_in(store: &Store<DeserializeGuard<AgentStack>>, namespace: &str) -> Vec<Key> {
    store
        .state()
        .iter()
        .filter(|s| s.meta().namespace.as_deref() == Some(namespace))
        .map(|s| (namespace.to_string(), s.name_any()))
        .collect()
}

/// Look up one object of a store by key.
pub fn get<K>(store: &Store<K>, key: &Key) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.get(&object_ref(key))
}

/// Handlers of the AgentNode watch.
pub struct Nodes {
    pub index: Arc<Index>,
    pub on_deleted: Box<dyn FnMut(&AgentNode) + Send>,
}

impl Handler<DeserializeGuard<AgentNode>> for Nodes {
    fn applied(&mut self, obj: &DeserializeGuard<AgentNode>) -> Triggers {
        match &obj.0 {
            Ok(node) => self.index.node_applied(node),
            Err(_) => Triggers {
                nodes: vec![key_of(obj)],
                ..Triggers::default()
            },
        }
    }

    fn deleted(&mut self, key: &Key, obj: Option<&DeserializeGuard<AgentNode>>) -> Triggers {
        if let Some(Ok(node)) = obj.map(|o| &o.0) {
            (self.on_deleted)(node);
        }
        self.index.node_deleted(key)
    }
}

/// Handlers of the AgentStack watch.
pub struct Stacks {
    pub index: Arc<Index>,
}

impl Handler<DeserializeGuard<AgentStack>> for Stacks {
    fn applied(&mut self, obj: &DeserializeGuard<AgentStack>) -> Triggers {
        let mut t = match &obj.0 {
            Ok(stack) => self.index.stack_applied(stack),
            Err(_) => Triggers::default(),
        };
        t.stacks.push(key_of(obj));
        t
    }

    fn deleted(&mut self, key: &Key, _: Option<&DeserializeGuard<AgentStack>>) -> Triggers {
        self.index.stack_deleted(key)
    }
}

/// Handlers of the ModelEntry watch.
pub struct Entries {
    pub index: Arc<Index>,
    pub stacks: Store<DeserializeGuard<AgentStack>>,
}

impl Handler<DeserializeGuard<ModelEntry>> for Entries {
    fn applied(&mut self, obj: &DeserializeGuard<ModelEntry>) -> Triggers {
        let key = key_of(obj);
        let mut t = match &obj.0 {
            Ok(entry) => self
                .index
                .entry_applied(entry, || stacks_in(&self.stacks, &key.0)),
            Err(_) => Triggers::default(),
        };
        t.entries.push(key);
        t
    }

    fn deleted(&mut self, key: &Key, _: Option<&DeserializeGuard<ModelEntry>>) -> Triggers {
        self.index
            .entry_deleted(key, stacks_in(&self.stacks, &key.0))
    }
}

/// Handlers of the Job watch (agents' Jobs).
pub struct Jobs {
    pub index: Arc<Index>,
}

impl Handler<super::cached::Job> for Jobs {
    fn applied(&mut self, obj: &super::cached::Job) -> Triggers {
        self.index.job_applied(obj)
    }

    fn deleted(&mut self, key: &Key, _: Option<&super::cached::Job>) -> Triggers {
        self.index.workload_deleted("Job", key)
    }
}

/// Handlers of the Deployment watch (agents' and engines' Deployments).
pub struct Deployments {
    pub index: Arc<Index>,
}

impl Handler<k8s_openapi::api::apps::v1::Deployment> for Deployments {
    fn applied(&mut self, obj: &k8s_openapi::api::apps::v1::Deployment) -> Triggers {
        self.index.deployment_applied(obj)
    }

    fn deleted(
        &mut self,
        key: &Key,
        _: Option<&k8s_openapi::api::apps::v1::Deployment>,
    ) -> Triggers {
        self.index.workload_deleted("Deployment", key)
    }
}

/// Handlers of the Pod watch (agents' and engines' pods).
pub struct Pods {
    pub index: Arc<Index>,
}

impl Handler<super::cached::Pod> for Pods {
    fn applied(&mut self, obj: &super::cached::Pod) -> Triggers {
        self.index.pod_applied(obj)
    }

    fn deleted(&mut self, key: &Key, _: Option<&super::cached::Pod>) -> Triggers {
        self.index.pod_deleted(key)
    }
}

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
use futures::{Stream, StreamExt, TryStreamExt};
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
///
/// The watch decodes objects as `D` (the stored type `K`, or a cheaper decoder of it such as
/// [`super::lean::Lean`]) and `decoded` turns its events into events of `K`.
pub fn pipeline<D, K, H>(
    api: Api<D>,
    config: watcher::Config,
    writer: reflector::store::Writer<K>,
    decoded: fn(Event<D>) -> Event<K>,
    trim: fn(&mut K),
    handler: H,
    queues: Queues,
) -> impl Stream<Item = ()> + Send
where
    D: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
    H: Handler<K>,
{
    let events = watch_fn(api, config)
        .default_backoff()
        .map_ok(decoded)
        .modify(move |obj| {
            strip(obj);
            trim(obj);
        });
    process(events, writer, handler, queues)
}

/// Feed watcher events through the store, the handler and the queues.
///
/// During a relist (`Init` .. `InitDone`, after a restart of the watch or a `410 Gone`) the
/// reflector collects the listed objects in a buffer and swaps it into the store only at
/// `InitDone`: until then the store still holds the state from before the watch broke. So the
/// triggers of a relist are held back until `InitDone`; sent at `InitApply`, a reconcile would read
/// the old object from the store (missing, for instance, the agent's report that arrived while the
/// watch was down) and, with nothing new to trigger it later, never see the change.
pub fn process<K, H, S>(
    events: S,
    writer: reflector::store::Writer<K>,
    mut handler: H,
    queues: Queues,
) -> impl Stream<Item = ()> + Send
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
    H: Handler<K>,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send,
{
    let mut known: HashSet<Key> = HashSet::new();
    // While relisting: the keys listed so far and the triggers held until the store has them.
    let mut relist: Option<(HashSet<Key>, Triggers)> = None;
    events.reflect(writer).filter_map(move |ev| {
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
            Ok(Event::Init) => relist = Some((HashSet::new(), Triggers::default())),
            Ok(Event::InitApply(obj)) => {
                let key = key_of(&obj);
                known.insert(key.clone());
                let triggers = handler.applied(&obj);
                match relist.as_mut() {
                    Some((seen, held)) => {
                        seen.insert(key);
                        held.extend(triggers);
                    }
                    None => queues.send(triggers),
                }
            }
            Ok(Event::InitDone) => {
                if let Some((seen, held)) = relist.take() {
                    // The store holds the relisted objects now.
                    queues.send(held);
                    // Objects deleted while the watch was down are gone from the relist.
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
    /// Whether a node event is the quiet echo of this process's own status write (the node itself
    /// is then not triggered; what the index derives from it still is).
    pub quiet_echo: Box<dyn Fn(&AgentNode) -> bool + Send>,
}

impl Handler<DeserializeGuard<AgentNode>> for Nodes {
    fn applied(&mut self, obj: &DeserializeGuard<AgentNode>) -> Triggers {
        match &obj.0 {
            Ok(node) => {
                let mut t = self.index.node_applied(node);
                if (self.quiet_echo)(node) {
                    let own = key_of(node);
                    t.nodes.retain(|k| *k != own);
                }
                t
            }
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use futures::channel::mpsc;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    use super::*;

    fn cm(name: &str, rv: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    /// Triggers the changed object itself and remembers which version of it it was shown.
    struct Shown(Arc<Mutex<HashMap<Key, Option<String>>>>);

    impl Handler<ConfigMap> for Shown {
        fn applied(&mut self, obj: &ConfigMap) -> Triggers {
            let key = key_of(obj);
            self.0
                .lock()
                .unwrap()
                .insert(key.clone(), obj.resource_version());
            Triggers {
                nodes: vec![key],
                ..Triggers::default()
            }
        }

        fn deleted(&mut self, key: &Key, _: Option<&ConfigMap>) -> Triggers {
            self.0.lock().unwrap().insert(key.clone(), None);
            Triggers {
                nodes: vec![key.clone()],
                ..Triggers::default()
            }
        }
    }

    /// Every trigger a controller receives finds the store already holding the version of the
    /// object that caused it (or no object, for a deletion), also across a relist: after a watch
    /// restart the store is swapped in only at `InitDone`.
    #[tokio::test]
    async fn a_trigger_never_arrives_before_the_store_has_its_object() {
        let events = vec![
            Event::Init,
            Event::InitApply(cm("a", "1")),
            Event::InitApply(cm("gone-later", "2")),
            Event::InitDone,
            Event::Apply(cm("a", "3")),
            // The watch broke and relists: `a` changed meanwhile (the agent's report), `b` is new,
            // `gone-later` was deleted.
            Event::Init,
            Event::InitApply(cm("a", "7")),
            Event::InitApply(cm("b", "8")),
            Event::InitDone,
            Event::Apply(cm("b", "9")),
        ];
        let (store, writer) = reflector::store::<ConfigMap>();
        let (nodes, mut node_rx) = mpsc::unbounded();
        let (entries, _entry_rx) = mpsc::unbounded();
        let (stacks, _stack_rx) = mpsc::unbounded();
        let queues = Queues {
            nodes,
            entries,
            stacks,
        };
        let shown = Arc::new(Mutex::new(HashMap::new()));
        let stream = process(
            futures::stream::iter(events.into_iter().map(Ok)),
            writer,
            Shown(shown.clone()),
            queues,
        );
        futures::pin_mut!(stream);
        let mut received = Vec::new();
        while stream.next().await.is_some() {
            while let Ok(r) = node_rx.try_recv() {
                let key: Key = (r.namespace.clone().unwrap_or_default(), r.name.clone());
                let cached = store
                    .get(&ObjectRef::<ConfigMap>::new(&r.name).within("ns"))
                    .and_then(|o| o.resource_version());
                let caused_by = shown.lock().unwrap().get(&key).cloned().flatten();
                assert_eq!(
                    cached, caused_by,
                    "trigger for {key:?} while the store holds {cached:?}"
                );
                received.push((key.1, cached));
            }
        }
        let names: Vec<&str> = received.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "gone-later", "a", "a", "b", "gone-later", "b"]);
    }
}

//! The data plane's informer: an in-memory copy of the objects its controllers read, kept up to
//! date from the change feed ([`Change`]s), with the indexes the controllers look things up by
//! (pods by owner, by node, by namespace; unbound and orphan pods; per-node usage and pod IPs),
//! and the work set of a pass ([`Work`]): the objects that changed, expanded to the controllers
//! they concern (a pod's owner, the Services of its namespace, ...).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::ResourceRef;
use super::quantity::{ResourceList, pod_requests};
use super::util::{controller_uid, name, namespace, pod_active, pod_finished, str_at, uid};

/// (namespace, name); "" namespace for cluster-scoped objects.
pub(crate) type Key = (String, String);

/// The kinds the controllers read and react to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum K {
    Pod,
    Node,
    Job,
    ReplicaSet,
    Deployment,
    Service,
    Endpoints,
    Pvc,
}

impl K {
    pub const CACHED: [K; 8] = [
        K::Pod,
        K::Node,
        K::Job,
        K::ReplicaSet,
        K::Deployment,
        K::Service,
        K::Endpoints,
        K::Pvc,
    ];

    pub fn resource(self) -> ResourceRef {
        match self {
            K::Pod => ResourceRef::pods(),
            K::Node => ResourceRef::nodes(),
            K::Job => ResourceRef::jobs(),
            K::ReplicaSet => ResourceRef::replicasets(),
            K::Deployment => ResourceRef::deployments(),
            K::Service => ResourceRef::services(),
            K::Endpoints => ResourceRef::endpoints(),
            K::Pvc => super::volumes::pvcs(),
        }
    }

    /// The kind of a cached resource.
    pub fn of(r: &ResourceRef) -> Option<K> {
        Self::of_table(&r.group, &r.resource)
    }

    fn of_table(group: &str, resource: &str) -> Option<K> {
        Some(match (group, resource) {
            ("", "pods") => K::Pod,
            ("", "nodes") => K::Node,
            ("batch", "jobs") => K::Job,
            ("apps", "replicasets") => K::ReplicaSet,
            ("apps", "deployments") => K::Deployment,
            ("", "services") => K::Service,
            ("", "endpoints") => K::Endpoints,
            ("", "persistentvolumeclaims") => K::Pvc,
            _ => return None,
        })
    }
}

/// Tables (`group/plural`) whose changes the data plane needs: the cached kinds, and the
/// Secrets, ConfigMaps and PersistentVolumes pods wait for.
pub fn relevant_table(table: &str) -> bool {
    let (group, resource) = table.split_once('/').unwrap_or(("", table));
    K::of_table(group, resource).is_some() || config_table(group, resource)
}

fn config_table(group: &str, resource: &str) -> bool {
    group.is_empty() && matches!(resource, "secrets" | "configmaps" | "persistentvolumes")
}

/// One committed change, as the store's event stream carries it.
#[derive(Debug, Clone)]
pub struct Change {
    /// `group/plural` (`/pods`, `batch/jobs`).
    pub table: String,
    /// The object as written (as deleted, for a deletion).
    pub object: Arc<Value>,
    pub deleted: bool,
}

/// What a pass is fed: the changes since the previous pass, or a relist when some were lost
/// (or at the start).
#[derive(Debug)]
pub enum Changes {
    Since(Vec<Change>),
    Relist,
}

pub(crate) fn key_of(v: &Value) -> Key {
    (namespace(v).to_string(), name(v).to_string())
}

fn rv(v: &Value) -> u64 {
    str_at(v, &["metadata", "resourceVersion"])
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn node_of(pod: &Value) -> &str {
    str_at(pod, &["spec", "nodeName"]).unwrap_or("")
}

/// What is placed on a node: requests of its bound, unfinished pods.
#[derive(Debug, Default, Clone)]
pub(crate) struct Usage {
    pub requested: ResourceList,
    pub pods: i128,
}

#[derive(Debug, Default)]
pub(crate) struct Cache {
    objs: HashMap<K, BTreeMap<Key, Arc<Value>>>,
    /// Pods by controlling owner uid.
    pods_by_owner: HashMap<String, BTreeSet<Key>>,
    pods_by_node: HashMap<String, BTreeSet<Key>>,
    pods_by_ns: HashMap<String, BTreeSet<Key>>,
    /// Pods with no node yet.
    unbound: BTreeSet<Key>,
    /// Active pods without a controller (ReplicaSets may adopt them).
    orphans: BTreeSet<Key>,
    /// ReplicaSets by controlling owner uid.
    rs_by_owner: HashMap<String, BTreeSet<Key>>,
    /// Jobs, ReplicaSets and Deployments by uid.
    owners: HashMap<String, (K, Key)>,
    usage: HashMap<String, Usage>,
    /// IPs of unfinished pods, by node.
    ips: HashMap<String, HashSet<String>>,
}

impl Cache {
    pub fn get(&self, k: K, key: &Key) -> Option<&Arc<Value>> {
        self.objs.get(&k)?.get(key)
    }

    pub fn all(&self, k: K) -> impl Iterator<Item = &Arc<Value>> {
        self.objs.get(&k).into_iter().flat_map(|m| m.values())
    }

    pub fn keys(&self, k: K) -> impl Iterator<Item = &Key> {
        self.objs.get(&k).into_iter().flat_map(|m| m.keys())
    }

    fn pods_in<'a>(
        &'a self,
        keys: Option<&'a BTreeSet<Key>>,
    ) -> impl Iterator<Item = &'a Arc<Value>> {
        keys.into_iter()
            .flatten()
            .filter_map(|key| self.get(K::Pod, key))
    }

    pub fn pods_owned_by(&self, owner_uid: &str) -> impl Iterator<Item = &Arc<Value>> {
        self.pods_in(self.pods_by_owner.get(owner_uid))
    }

    pub fn pod_keys_on(&self, node: &str) -> impl Iterator<Item = &Key> {
        self.pods_by_node.get(node).into_iter().flatten()
    }

    pub fn pods_in_namespace(&self, ns: &str) -> impl Iterator<Item = &Arc<Value>> {
        self.pods_in(self.pods_by_ns.get(ns))
    }

    pub fn unbound_pods(&self) -> impl Iterator<Item = &Arc<Value>> {
        self.pods_in(Some(&self.unbound))
    }

    pub fn orphan_pods(&self) -> impl Iterator<Item = &Arc<Value>> {
        self.pods_in(Some(&self.orphans))
    }

    pub fn sets_owned_by(&self, owner_uid: &str) -> impl Iterator<Item = &Value> {
        self.rs_by_owner
            .get(owner_uid)
            .into_iter()
            .flatten()
            .filter_map(|key| self.get(K::ReplicaSet, key).map(|v| &**v))
    }

    pub fn owner(&self, owner_uid: &str) -> Option<&(K, Key)> {
        self.owners.get(owner_uid)
    }

    pub fn usage(&self) -> &HashMap<String, Usage> {
        &self.usage
    }

    pub fn ips_on(&self, node: &str) -> HashSet<String> {
        self.ips.get(node).cloned().unwrap_or_default()
    }

    /// Stores `obj` unless the cache holds a newer version; returns the version replaced.
    pub fn put(&mut self, k: K, obj: Arc<Value>) -> Option<Arc<Value>> {
        let key = key_of(&obj);
        if let Some(cur) = self.get(k, &key)
            && rv(cur) > rv(&obj)
            && uid(cur) == uid(&obj)
        {
            return None;
        }
        let old = self.remove(k, &key);
        self.index(k, &key, &obj, true);
        self.objs.entry(k).or_default().insert(key, obj);
        old
    }

    pub fn remove(&mut self, k: K, key: &Key) -> Option<Arc<Value>> {
        let old = self.objs.get_mut(&k)?.remove(key)?;
        self.index(k, key, &old, false);
        Some(old)
    }

    pub fn clear(&mut self) {
        *self = Cache::default();
    }

    fn index(&mut self, k: K, key: &Key, obj: &Value, add: bool) {
        fn set_op(map: &mut HashMap<String, BTreeSet<Key>>, at: &str, key: &Key, add: bool) {
            if add {
                map.entry(at.to_string()).or_default().insert(key.clone());
            } else if let Some(s) = map.get_mut(at) {
                s.remove(key);
                if s.is_empty() {
                    map.remove(at);
                }
            }
        }
        match k {
            K::Pod => {
                if let Some(o) = controller_uid(obj) {
                    set_op(&mut self.pods_by_owner, o, key, add);
                } else if pod_active(obj) {
                    flip(&mut self.orphans, key, add);
                }
                set_op(&mut self.pods_by_ns, namespace(obj), key, add);
                let node = node_of(obj);
                if node.is_empty() {
                    flip(&mut self.unbound, key, add);
                    return;
                }
                set_op(&mut self.pods_by_node, node, key, add);
                if pod_finished(obj) {
                    return;
                }
                if let Some(ip) = str_at(obj, &["status", "podIP"]) {
                    let ips = self.ips.entry(node.to_string()).or_default();
                    if add {
                        ips.insert(ip.to_string());
                    } else {
                        ips.remove(ip);
                        if ips.is_empty() {
                            self.ips.remove(node);
                        }
                    }
                }
                // Exact both ways (wrapping arithmetic is invertible).
                let u = self.usage.entry(node.to_string()).or_default();
                let sign: i128 = if add { 1 } else { -1 };
                u.pods += sign;
                for (r, v) in pod_requests(obj) {
                    let e = u.requested.entry(r).or_default();
                    *e = if add {
                        e.wrapping_add(v)
                    } else {
                        e.wrapping_sub(v)
                    };
                }
                if u.pods == 0 {
                    self.usage.remove(node);
                }
            }
            K::ReplicaSet | K::Job | K::Deployment => {
                if add {
                    self.owners.insert(uid(obj).to_string(), (k, key.clone()));
                } else if self.owners.get(uid(obj)).is_some_and(|(_, k2)| k2 == key) {
                    self.owners.remove(uid(obj));
                }
                if k == K::ReplicaSet
                    && let Some(o) = controller_uid(obj)
                {
                    set_op(&mut self.rs_by_owner, o, key, add);
                }
            }
            _ => {}
        }
    }
}

fn flip(set: &mut BTreeSet<Key>, key: &Key, add: bool) {
    if add {
        set.insert(key.clone());
    } else {
        set.remove(key);
    }
}

/// The objects a pass looks at, by kind, and what else changed.
#[derive(Debug, Default)]
pub(crate) struct Work {
    /// Every object (the first pass, and after a relist).
    pub all: bool,
    pub keys: HashMap<K, BTreeSet<Key>>,
    /// Namespaces whose Secrets, ConfigMaps or volumes changed: their waiting pods look again.
    pub config_ns: BTreeSet<String>,
    /// Node capacity may have been freed or added: unschedulable pods try again.
    pub capacity: bool,
    /// uids of pods gone (the kubelet forgets them).
    pub gone_pods: Vec<String>,
}

impl Work {
    pub fn is_empty(&self) -> bool {
        !self.all
            && self.keys.values().all(BTreeSet::is_empty)
            && self.config_ns.is_empty()
            && !self.capacity
    }

    pub fn add(&mut self, k: K, key: Key) {
        self.keys.entry(k).or_default().insert(key);
    }

    /// The keys of kind `k` to look at (all cached ones after a relist).
    pub fn of(&self, cache: &Cache, k: K) -> BTreeSet<Key> {
        if self.all {
            return cache.keys(k).cloned().collect();
        }
        self.keys.get(&k).cloned().unwrap_or_default()
    }

    /// Records a change of `k` from `old` to `new` (None: absent) and the objects it concerns.
    pub fn changed(&mut self, cache: &Cache, k: K, old: Option<&Value>, new: Option<&Value>) {
        let Some(obj) = new.or(old) else {
            return;
        };
        let key = key_of(obj);
        self.add(k, key.clone());
        let versions = [old, new];
        match k {
            K::Pod => {
                for p in versions.into_iter().flatten() {
                    match controller_uid(p) {
                        Some(o) => self.owner_changed(cache, o),
                        // An orphan: any ReplicaSet of its namespace may adopt it.
                        None => self.namespace_kind(cache, K::ReplicaSet, namespace(p)),
                    }
                    self.namespace_kind(cache, K::Service, namespace(p));
                }
                let was_placed = old.is_some_and(|p| !node_of(p).is_empty() && !pod_finished(p));
                let placed = new.is_some_and(|p| !node_of(p).is_empty() && !pod_finished(p));
                if was_placed && !placed {
                    self.capacity = true;
                }
                if new.is_none() {
                    self.gone_pods.push(uid(obj).to_string());
                }
            }
            K::ReplicaSet => {
                for rs in versions.into_iter().flatten() {
                    if let Some(o) = controller_uid(rs) {
                        self.owner_changed(cache, o);
                    }
                }
            }
            K::Node => self.capacity = true,
            K::Endpoints => self.add(K::Service, key),
            K::Pvc => {
                self.config_ns.insert(key.0);
                self.capacity = true;
            }
            K::Job | K::Deployment | K::Service => {}
        }
    }

    /// A Secret, ConfigMap or PersistentVolume changed.
    pub fn config_changed(&mut self, ns: &str) {
        self.config_ns.insert(ns.to_string());
        self.capacity = true;
    }

    fn owner_changed(&mut self, cache: &Cache, owner_uid: &str) {
        if let Some((k, key)) = cache.owner(owner_uid) {
            self.add(*k, key.clone());
            // A ReplicaSet's status feeds its Deployment's.
            if *k == K::ReplicaSet
                && let Some(rs) = cache.get(K::ReplicaSet, key)
                && let Some(d) = controller_uid(rs)
                && let Some((dk, dkey)) = cache.owner(d)
            {
                self.add(*dk, dkey.clone());
            }
        }
    }

    fn namespace_kind(&mut self, cache: &Cache, k: K, ns: &str) {
        let keys: Vec<Key> = cache.keys(k).filter(|key| key.0 == ns).cloned().collect();
        for key in keys {
            self.add(k, key);
        }
    }
}

/// Applies the changes to the cache and records them in `work`.
pub(crate) fn apply(cache: &mut Cache, work: &mut Work, changes: Vec<Change>) {
    for c in changes {
        let (group, resource) = c.table.split_once('/').unwrap_or(("", &c.table));
        if config_table(group, resource) {
            work.config_changed(namespace(&c.object));
            continue;
        }
        let Some(k) = K::of_table(group, resource) else {
            continue;
        };
        let key = key_of(&c.object);
        if c.deleted {
            // A deletion older than the cached object (re-created since) changes nothing.
            if cache
                .get(k, &key)
                .is_some_and(|cur| uid(cur) != uid(&c.object) || rv(cur) > rv(&c.object))
            {
                continue;
            }
            let old = cache.remove(k, &key);
            work.changed(cache, k, old.as_deref(), None);
        } else {
            let new = c.object.clone();
            let old = cache.put(k, c.object);
            if cache.get(k, &key).is_some_and(|cur| Arc::ptr_eq(cur, &new)) {
                work.changed(cache, k, old.as_deref(), Some(&new));
            }
        }
    }
}

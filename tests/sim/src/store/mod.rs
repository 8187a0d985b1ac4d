//! The object store: one global resourceVersion counter, objects keyed by (table, namespace, name),
//! the watch event history window with fan-out to watchers, snapshot lists with `limit`/`continue`,
//! and the owner-uid index the garbage collector reads. Pure: no HTTP, no async except the broadcast
//! receiver handed to watchers. Objects written longer ago than the last `compact::HOT_EVENTS`
//! writes are kept as compact JSON and decoded on demand (see `compact`).

mod compact;
mod index;
pub mod lock_stats;
mod meta;

pub use meta::{
    fill_create_meta, finalizers, generate_name_suffix, is_deleting, json_path_get, metadata_mut,
    now_rfc3339, obj_name, obj_namespace, owner_uids, rv_of, set_rv, uid_of,
};

use bytes::Bytes;
pub use compact::Version;
pub use index::IndexFn;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};

/// Default number of events always kept for watch resume.
pub const DEFAULT_HISTORY: usize = 10_000;
/// Events younger than this are kept beyond `DEFAULT_HISTORY` (the apiserver's watch cache aims
/// to hold the last 75 s of events, its `eventFreshDuration`), up to [`DEFAULT_HISTORY_MAX`].
pub const DEFAULT_HISTORY_AGE: Duration = Duration::from_secs(75);
/// Most events kept whatever their age (the watch cache's upper bound is 100 Ki events): about
/// 4 KiB each for the superseded versions of the operator's objects, so ~400 MiB at most.
pub const DEFAULT_HISTORY_MAX: usize = 100 * 1024;
/// Capacity of the fan-out channel; a watcher that falls this far behind is closed (it resumes).
const BROADCAST_CAPACITY: usize = 16_384;

/// Errors the store reports; the server maps them to `Status` responses with resource names.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum StoreError {
    #[error("failed to find object")]
    NotFound,
    #[error("failed to create object: already exists")]
    AlreadyExists,
    #[error("failed to update object: resourceVersion conflict")]
    Conflict,
    #[error("failed to apply precondition: {0}")]
    Precondition(String),
    #[error("failed to serve resourceVersion {requested}: too old (oldest {oldest})")]
    Expired { requested: u64, oldest: u64 },
    #[error("failed to create object: metadata.name or generateName is required")]
    NameRequired,
}

/// Kind of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change. The wire bytes (`{"type":...,"object":...}\n`) are serialized at most once
/// and shared by every watcher that can use them unchanged. The object (and `prev`) are decoded
/// while the event is among the newest writes and decoded on demand after (see `compact`).
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub etype: EventType,
    pub table: Arc<str>,
    /// `namespace/name` ("" namespace for cluster-scoped objects).
    pub key: String,
    object: Arc<Version>,
    /// The object before this change (for MODIFIED and DELETED).
    prev: Option<Arc<Version>>,
    wire: OnceLock<Bytes>,
    /// When it was committed (the history keeps young events, see [`HistoryLimits`]).
    at: Instant,
}

impl Event {
    /// Namespace of the object ("" when cluster-scoped).
    pub fn namespace(&self) -> &str {
        self.key.split_once('/').map(|(ns, _)| ns).unwrap_or("")
    }

    /// The object as written by this change (for DELETED: as deleted, with the deletion's rv).
    pub fn object(&self) -> Arc<Value> {
        self.object.value()
    }

    /// The object before this change (for MODIFIED and DELETED).
    pub fn prev(&self) -> Option<Arc<Value>> {
        self.prev.as_ref().map(|p| p.value())
    }

    /// Whether the change has a previous state (MODIFIED and DELETED), without decoding it.
    pub fn has_prev(&self) -> bool {
        self.prev.is_some()
    }

    /// The serialized watch line, computed once.
    pub fn wire(&self) -> Bytes {
        self.wire
            .get_or_init(|| match self.object.cold_json() {
                Some(json) => {
                    let etype = self.etype.as_str().as_bytes();
                    let mut out = Vec::with_capacity(wire_len(etype, json.len()));
                    out.extend_from_slice(WIRE_PREFIX);
                    out.extend_from_slice(etype);
                    out.extend_from_slice(WIRE_OBJECT);
                    out.extend_from_slice(&json);
                    out.extend_from_slice(WIRE_SUFFIX);
                    Bytes::from(out)
                }
                None => encode_watch_line(self.etype.as_str(), &self.object.value()),
            })
            .clone()
    }

    /// Turns the event's object cold, reusing the wire line's bytes when already serialized.
    fn cool(&self) {
        let json = self.wire.get().map(|wire| {
            let start = wire_len(self.etype.as_str().as_bytes(), 0) - WIRE_SUFFIX.len();
            wire.slice(start..wire.len() - WIRE_SUFFIX.len())
        });
        self.object.cool(json);
    }
}

/// Serializes one watch event line.
pub fn encode_watch_line(etype: &str, object: &Value) -> Bytes {
    thread_local! {
        static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    LINE.with(|line| {
        let mut out = line.borrow_mut();
        out.clear();
        out.extend_from_slice(WIRE_PREFIX);
        out.extend_from_slice(etype.as_bytes());
        out.extend_from_slice(WIRE_OBJECT);
        // Writing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, object);
        out.extend_from_slice(WIRE_SUFFIX);
        // An exact-size copy: the line may outlive its event as the object's compact form.
        let bytes = Bytes::copy_from_slice(&out);
        if out.capacity() > 1 << 20 {
            *out = Vec::new();
        }
        bytes
    })
}

const WIRE_PREFIX: &[u8] = b"{\"type\":\"";
const WIRE_OBJECT: &[u8] = b"\",\"object\":";
const WIRE_SUFFIX: &[u8] = b"}\n";

/// Length of a watch line around an object of `json_len` bytes.
fn wire_len(etype: &[u8], json_len: usize) -> usize {
    WIRE_PREFIX.len() + etype.len() + WIRE_OBJECT.len() + json_len + WIRE_SUFFIX.len()
}

#[derive(Debug, Clone)]
struct Entry {
    /// The object's resourceVersion (the rv of its latest write).
    rv: u64,
    version: Arc<Version>,
    /// The object's finalizers when it is marked for deletion (None otherwise): the garbage
    /// collector's questions ("is this owner being deleted in the foreground?") without a decode.
    deletion: Option<Arc<[String]>>,
}

impl Entry {
    fn new(rv: u64, version: Arc<Version>, obj: &Value) -> Entry {
        Entry {
            rv,
            version,
            deletion: is_deleting(obj).then(|| finalizers(obj).into()),
        }
    }

    /// The object for a read that may be followed by a write from this thread.
    fn object(&self, store: u64) -> Arc<Value> {
        self.version.value_for_write(store, self.rv)
    }

    /// The object for a scan (lists).
    fn scanned(&self) -> Arc<Value> {
        self.version.value()
    }
}

#[derive(Default)]
struct Table {
    objects: BTreeMap<String, Entry>,
}

struct Inner {
    rv: u64,
    tables: HashMap<Arc<str>, Table>,
    history: VecDeque<Arc<Event>>,
    limits: HistoryLimits,
    /// Highest rv evicted from the history window (0 = nothing evicted yet).
    compacted: u64,
    /// Per table, the highest rv of its events evicted from the window: a watch or snapshot of
    /// that table can start from any later rv, as all its events after it are still held (the
    /// apiserver keeps one watch cache per resource; a quiet resource's window spans long).
    compacted_tables: HashMap<Arc<str>, u64>,
    /// uid -> (table, key)
    uids: HashMap<String, (Arc<str>, String)>,
    /// owner uid -> dependents (table, key)
    dependents: HashMap<String, HashSet<(Arc<str>, String)>>,
    /// Events past the hot window, waiting to be handed to the compactor as a batch.
    to_cool: Vec<Arc<Event>>,
    /// Secondary indexes by table (see `index`).
    secondary: HashMap<Arc<str>, index::SecondaryIndex>,
    /// Where the changes that can matter to ownership go (see [`Store::ownership_feed`]).
    feed: Option<mpsc::UnboundedSender<OwnershipChange>>,
}

/// A committed change that can matter to the garbage collector, namespace or CRD cleanup: every
/// deletion, and every create or update of an object that has (or had) owner references or is
/// marked for deletion. Built under the store's lock from the object as written (decoded then), so
/// the collector reads what it needs without decoding the event's object, which may be cold by the
/// time it gets there.
#[derive(Debug)]
pub struct OwnershipChange {
    pub event: Arc<Event>,
    /// uid of the object.
    pub uid: String,
    /// Owner uids of the object as written (as deleted, for DELETED).
    pub owners: Vec<String>,
    /// Owner uids before a MODIFIED that changed them (empty when they did not change).
    pub owners_before: Vec<String>,
    /// Whether the object as written is marked for deletion.
    pub deleting: bool,
}

/// Result of one list page.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub items: Vec<Arc<Value>>,
    /// The resourceVersion the list is consistent at.
    pub rv: u64,
    /// Key of the last item returned when more items remain.
    pub continue_after: Option<String>,
    /// Items matching the filter after this page (only counted when a limit cut the page).
    pub remaining: usize,
}

/// Options for one list page.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Serve the list as of this resourceVersion (must still be in the history window).
    pub snapshot: Option<u64>,
    /// Return keys strictly after this one (continue token).
    pub start_after: Option<String>,
    pub limit: Option<usize>,
    /// The filter matches every object: the items after a page are counted without decoding.
    pub unfiltered: bool,
}

/// A watch subscription: events already committed after the start point, then the live channel.
pub struct Subscription {
    pub backlog: Vec<Arc<Event>>,
    pub rx: broadcast::Receiver<Arc<Event>>,
    /// The resourceVersion the subscription starts after.
    pub start_rv: u64,
}

/// What the store holds ([`Store::usage`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreUsage {
    /// Stored objects.
    pub objects: usize,
    /// Compact JSON bytes of the cold ones.
    pub object_json_bytes: usize,
    /// Stored objects still decoded (among the newest writes).
    pub objects_decoded: usize,
    /// Events in the history window.
    pub history_events: usize,
    /// Versions held only by the history (earlier states of objects, deleted objects).
    pub superseded: usize,
    /// Compact JSON bytes of the cold ones.
    pub superseded_json_bytes: usize,
    /// Superseded versions still decoded.
    pub superseded_decoded: usize,
}

/// Preconditions for a delete.
#[derive(Debug, Clone, Default)]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

/// The store. Cheap to share behind an `Arc`.
pub struct Store {
    /// Process-unique id (keys the per-thread ring of decoded objects).
    id: u64,
    inner: RwLock<Inner>,
    tx: broadcast::Sender<Arc<Event>>,
    /// Time waited for and holding `inner`.
    locks: lock_stats::LockStats,
}

impl Default for Store {
    fn default() -> Self {
        Self::new(DEFAULT_HISTORY)
    }
}

/// How many events the history window holds for watch resume and snapshot lists: at least
/// `min_events`; beyond that, the events younger than `max_age`, up to `max_events` in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    pub min_events: usize,
    pub max_age: Duration,
    pub max_events: usize,
}

impl HistoryLimits {
    /// Exactly `events` events, whatever their age.
    pub fn events(events: usize) -> Self {
        HistoryLimits {
            min_events: events.max(1),
            max_age: Duration::ZERO,
            max_events: events.max(1),
        }
    }

    /// Whether the oldest of `len` events, committed at `oldest`, leaves the window.
    fn evicts(&self, len: usize, oldest: Instant) -> bool {
        len > self.min_events && (len > self.max_events || oldest.elapsed() > self.max_age)
    }
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            min_events: DEFAULT_HISTORY,
            max_age: DEFAULT_HISTORY_AGE,
            max_events: DEFAULT_HISTORY_MAX,
        }
    }
}

/// Builds the `namespace/name` key.
pub fn object_key(namespace: &str, name: &str) -> String {
    let mut k = String::with_capacity(namespace.len() + name.len() + 1);
    k.push_str(namespace);
    k.push('/');
    k.push_str(name);
    k
}

impl Store {
    /// A store whose history window holds exactly `history_cap` events.
    pub fn new(history_cap: usize) -> Self {
        Self::with_history(HistoryLimits::events(history_cap))
    }

    /// A store whose history window follows `limits`.
    pub fn with_history(limits: HistoryLimits) -> Self {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        let limits = HistoryLimits {
            min_events: limits.min_events.max(1),
            max_events: limits.max_events.max(limits.min_events).max(1),
            ..limits
        };
        Store {
            id: compact::next_store_id(),
            inner: RwLock::new(Inner {
                rv: 1,
                tables: HashMap::new(),
                history: VecDeque::with_capacity(limits.min_events.min(1 << 16)),
                limits,
                compacted: 0,
                compacted_tables: HashMap::new(),
                uids: HashMap::new(),
                dependents: HashMap::new(),
                to_cool: Vec::new(),
                secondary: HashMap::new(),
                feed: None,
            }),
            tx,
            locks: lock_stats::LockStats::default(),
        }
    }

    fn read(&self) -> lock_stats::Timed<'_, std::sync::RwLockReadGuard<'_, Inner>> {
        lock_stats::Timed::acquire(&self.locks.read, || {
            self.inner.read().unwrap_or_else(|e| e.into_inner())
        })
    }

    fn write(&self) -> lock_stats::Timed<'_, std::sync::RwLockWriteGuard<'_, Inner>> {
        lock_stats::Timed::acquire(&self.locks.write, || {
            self.inner.write().unwrap_or_else(|e| e.into_inner())
        })
    }

    /// Time waited for and holding the store's lock.
    pub fn lock_stats(&self) -> &lock_stats::LockStats {
        &self.locks
    }

    /// The latest committed resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.read().rv
    }

    /// Oldest resourceVersion a watch or snapshot list of any table can still start from.
    pub fn oldest_rv(&self) -> u64 {
        self.read().compacted
    }

    /// Number of events in the history window.
    pub fn history_len(&self) -> usize {
        self.read().history.len()
    }

    pub fn get(&self, table: &str, namespace: &str, name: &str) -> Option<Arc<Value>> {
        let key = object_key(namespace, name);
        self.read()
            .tables
            .get(table)
            .and_then(|t| t.objects.get(&key))
            .map(|e| e.object(self.id))
    }

    /// An owned copy of an object, for a reader that changes it (a served response): a cold object
    /// is decoded straight into it, with no second copy.
    pub fn get_owned(&self, table: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = object_key(namespace, name);
        let version = self
            .read()
            .tables
            .get(table)
            .and_then(|t| t.objects.get(&key))
            .map(|e| e.version.clone())?;
        Some(Arc::unwrap_or_clone(version.value()))
    }

    /// Looks an object up by uid; returns (table, key, object).
    pub fn get_by_uid(&self, uid: &str) -> Option<(Arc<str>, String, Arc<Value>)> {
        let inner = self.read();
        let (table, key) = inner.uids.get(uid)?;
        let obj = inner.tables.get(table)?.objects.get(key)?.object(self.id);
        Some((table.clone(), key.clone(), obj))
    }

    pub fn uid_exists(&self, uid: &str) -> bool {
        self.read().uids.contains_key(uid)
    }

    /// Objects whose ownerReferences name this uid.
    pub fn dependents_of(&self, owner_uid: &str) -> Vec<(Arc<str>, Arc<Value>)> {
        let inner = self.read();
        let Some(set) = inner.dependents.get(owner_uid) else {
            return Vec::new();
        };
        set.iter()
            .filter_map(|(t, k)| {
                let obj = inner.tables.get(t)?.objects.get(k)?.object(self.id);
                Some((t.clone(), obj))
            })
            .collect()
    }

    /// (table, key) of the objects whose ownerReferences name this uid, without decoding them.
    pub fn dependent_keys(&self, owner_uid: &str) -> Vec<(Arc<str>, String)> {
        self.read()
            .dependents
            .get(owner_uid)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// (table, key) of the objects that name at least one owner uid no object has (candidates for
    /// collection), without decoding anything.
    pub fn dependents_of_missing_owners(&self) -> Vec<(Arc<str>, String)> {
        let inner = self.read();
        let mut out: Vec<(Arc<str>, String)> = inner
            .dependents
            .iter()
            .filter(|(owner, _)| !inner.uids.contains_key(*owner))
            .flat_map(|(_, set)| set.iter().cloned())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The finalizers of an object marked for deletion; None when it is not marked or not stored.
    pub fn deletion(&self, table: &str, namespace: &str, name: &str) -> Option<Arc<[String]>> {
        let key = object_key(namespace, name);
        self.read()
            .tables
            .get(table)
            .and_then(|t| t.objects.get(&key))
            .and_then(|e| e.deletion.clone())
    }

    /// (table, key, finalizers) of the object with this uid when it is marked for deletion.
    pub fn deletion_by_uid(&self, uid: &str) -> Option<(Arc<str>, String, Arc<[String]>)> {
        let inner = self.read();
        let (table, key) = inner.uids.get(uid)?;
        let fins = inner
            .tables
            .get(table)?
            .objects
            .get(key)?
            .deletion
            .clone()?;
        Some((table.clone(), key.clone(), fins))
    }

    /// Keys of `table`'s objects (in `namespace` when given), each with whether it is marked for
    /// deletion, in key order, without decoding them.
    pub fn keys(&self, table: &str, namespace: Option<&str>) -> Vec<(String, bool)> {
        let inner = self.read();
        let Some(t) = inner.tables.get(table) else {
            return Vec::new();
        };
        let prefix = namespace.map(|ns| format!("{ns}/"));
        let range = match &prefix {
            Some(p) => t.objects.range::<String, _>(p.clone()..),
            None => t.objects.range::<String, _>(..),
        };
        range
            .take_while(|(k, _)| prefix.as_deref().is_none_or(|p| k.starts_with(p)))
            .map(|(k, e)| (k.clone(), e.deletion.is_some()))
            .collect()
    }

    /// (table, key) of every object marked for deletion, without decoding anything.
    pub fn marked_for_deletion(&self) -> Vec<(Arc<str>, String)> {
        let inner = self.read();
        inner
            .tables
            .iter()
            .flat_map(|(name, t)| {
                t.objects
                    .iter()
                    .filter(|(_, e)| e.deletion.is_some())
                    .map(|(k, _)| (name.clone(), k.clone()))
            })
            .collect()
    }

    /// From now on, every change that can matter to ownership ([`OwnershipChange`]) is queued, in
    /// commit order, on the returned receiver, with no bound: a consumer that falls behind loses
    /// nothing and never has to rescan the store. One consumer (the garbage collector); a second
    /// call replaces the first receiver.
    pub fn ownership_feed(&self) -> mpsc::UnboundedReceiver<OwnershipChange> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.write().feed = Some(tx);
        rx
    }

    /// Keeps a secondary index over `table` (replacing one set before), built from the objects
    /// stored now and kept by every later write; see [`Store::indexed`].
    pub fn add_index(&self, table: &str, f: IndexFn) {
        let mut inner = self.write();
        let inner = &mut *inner;
        let mut ix = index::SecondaryIndex::new(f);
        if let Some(t) = inner.tables.get(table) {
            for (key, e) in &t.objects {
                ix.add(key, &e.scanned());
            }
        }
        inner.secondary.insert(Arc::from(table), ix);
    }

    /// The objects of `table` whose index keys include any of `keys`, in `namespace/name` order.
    /// `None` when the table has no index (the caller scans instead).
    pub fn indexed(&self, table: &str, keys: &[String]) -> Option<Vec<Arc<Value>>> {
        let inner = self.read();
        let ix = inner.secondary.get(table)?;
        let objects = inner.tables.get(table).map(|t| &t.objects);
        Some(
            ix.lookup(keys)
                .into_iter()
                .filter_map(|k| objects?.get(k).map(Entry::scanned))
                .collect(),
        )
    }

    /// Names of all tables that hold at least one object.
    pub fn tables(&self) -> Vec<Arc<str>> {
        self.read()
            .tables
            .iter()
            .filter(|(_, t)| !t.objects.is_empty())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Number of objects in one table.
    pub fn count(&self, table: &str) -> usize {
        self.read()
            .tables
            .get(table)
            .map(|t| t.objects.len())
            .unwrap_or(0)
    }

    /// Total number of stored objects.
    pub fn total_objects(&self) -> usize {
        self.read().tables.values().map(|t| t.objects.len()).sum()
    }

    /// Where the stored bytes are: the live objects' versions and the superseded versions only the
    /// history window holds, compact JSON bytes of the cold ones, counts of the decoded ones (the
    /// bench prints it next to the RSS figure).
    pub fn usage(&self) -> StoreUsage {
        let inner = self.read();
        let mut u = StoreUsage {
            history_events: inner.history.len(),
            ..StoreUsage::default()
        };
        let mut live: HashSet<*const Version> = HashSet::new();
        for e in inner.tables.values().flat_map(|t| t.objects.values()) {
            live.insert(Arc::as_ptr(&e.version));
            u.objects += 1;
            match e.version.cold_json() {
                Some(j) => u.object_json_bytes += j.len(),
                None => u.objects_decoded += 1,
            }
        }
        let mut seen: HashSet<*const Version> = HashSet::new();
        for ev in &inner.history {
            for v in std::iter::once(&ev.object).chain(ev.prev.as_ref()) {
                let p = Arc::as_ptr(v);
                if live.contains(&p) || !seen.insert(p) {
                    continue;
                }
                u.superseded += 1;
                match v.cold_json() {
                    Some(j) => u.superseded_json_bytes += j.len(),
                    None => u.superseded_decoded += 1,
                }
            }
        }
        u
    }

    /// Creates an object. `obj.metadata.name` or `generateName` must be set; the namespace is taken
    /// from `namespace` ("" for cluster-scoped). Sets `metadata.resourceVersion`.
    pub fn create(
        &self,
        table: &Arc<str>,
        namespace: &str,
        mut obj: Value,
    ) -> Result<Arc<Value>, StoreError> {
        let mut inner = self.write();
        let inner = &mut *inner;
        let mut name = obj_name(&obj).to_string();
        if name.is_empty() {
            let prefix = json_path_get(&obj, &["metadata", "generateName"])
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if prefix.is_empty() {
                return Err(StoreError::NameRequired);
            }
            let t = inner.tables.entry(table.clone()).or_default();
            loop {
                let candidate = format!("{prefix}{}", generate_name_suffix());
                if !t.objects.contains_key(&object_key(namespace, &candidate)) {
                    name = candidate;
                    break;
                }
            }
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                m.insert("name".into(), Value::String(name.clone()));
            }
        }
        let key = object_key(namespace, &name);
        let t = inner.tables.entry(table.clone()).or_default();
        if t.objects.contains_key(&key) {
            return Err(StoreError::AlreadyExists);
        }
        inner.rv += 1;
        let rv = inner.rv;
        set_rv(&mut obj, rv);
        let obj = Arc::new(obj);
        let version = Version::hot(obj.clone());
        t.objects
            .insert(key.clone(), Entry::new(rv, version.clone(), &obj));
        index_add(inner, table, &key, &obj);
        if let Some(ix) = inner.secondary.get_mut(table) {
            ix.add(&key, &obj);
        }
        let ev = self.commit(inner, rv, EventType::Added, table, key, version, None);
        feed(inner, ev, &obj, None);
        Ok(obj)
    }

    /// Replaces an object. When `expected_rv` is set it must equal the stored resourceVersion.
    /// Returns (old, new).
    pub fn update(
        &self,
        table: &Arc<str>,
        namespace: &str,
        name: &str,
        mut obj: Value,
        expected_rv: Option<u64>,
    ) -> Result<(Arc<Value>, Arc<Value>), StoreError> {
        let key = object_key(namespace, name);
        let mut inner = self.write();
        let inner = &mut *inner;
        let entry = inner
            .tables
            .get(table)
            .and_then(|t| t.objects.get(&key))
            .ok_or(StoreError::NotFound)?;
        if let Some(exp) = expected_rv
            && entry.rv != exp
        {
            return Err(StoreError::Conflict);
        }
        let old = entry.object(self.id);
        let old_version = entry.version.clone();
        inner.rv += 1;
        let rv = inner.rv;
        set_rv(&mut obj, rv);
        let obj = Arc::new(obj);
        let version = Version::hot(obj.clone());
        let reindex = uid_of(&old) != uid_of(&obj) || !owner_uids(&old).eq(owner_uids(&obj));
        if reindex {
            index_remove(inner, &key, table, &old);
        }
        if let Some(e) = inner
            .tables
            .get_mut(table)
            .and_then(|t| t.objects.get_mut(&key))
        {
            *e = Entry::new(rv, version.clone(), &obj);
        }
        if reindex {
            index_add(inner, table, &key, &obj);
        }
        if let Some(ix) = inner.secondary.get_mut(table) {
            ix.replace(&key, &old, &obj);
        }
        let ev = self.commit(
            inner,
            rv,
            EventType::Modified,
            table,
            key,
            version,
            Some(old_version),
        );
        feed(inner, ev, &obj, reindex.then_some(&*old));
        Ok((old, obj))
    }

    /// Removes an object. The DELETED event carries the object with the deletion's resourceVersion.
    pub fn delete(
        &self,
        table: &Arc<str>,
        namespace: &str,
        name: &str,
        pre: &Preconditions,
    ) -> Result<Arc<Value>, StoreError> {
        let key = object_key(namespace, name);
        let mut inner = self.write();
        let inner = &mut *inner;
        let (old, old_version) = inner
            .tables
            .get(table)
            .and_then(|t| t.objects.get(&key))
            .map(|e| (e.object(self.id), e.version.clone()))
            .ok_or(StoreError::NotFound)?;
        if let Some(uid) = &pre.uid {
            let actual = uid_of(&old);
            if uid != actual {
                return Err(StoreError::Precondition(format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                )));
            }
        }
        if let Some(rv) = &pre.resource_version {
            let actual = rv_of(&old).to_string();
            if *rv != actual {
                return Err(StoreError::Precondition(format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"
                )));
            }
        }
        if let Some(t) = inner.tables.get_mut(table) {
            t.objects.remove(&key);
        }
        index_remove(inner, &key, table, &old);
        if let Some(ix) = inner.secondary.get_mut(table) {
            ix.remove(&key, &old);
        }
        inner.rv += 1;
        let rv = inner.rv;
        let mut gone = (*old).clone();
        set_rv(&mut gone, rv);
        let gone = Arc::new(gone);
        let ev = self.commit(
            inner,
            rv,
            EventType::Deleted,
            table,
            key,
            Version::hot(gone.clone()),
            Some(old_version),
        );
        feed(inner, ev, &gone, None);
        Ok(gone)
    }

    /// Lists one page of a table, optionally restricted to a namespace, filtered by `filter`.
    pub fn list(
        &self,
        table: &str,
        namespace: Option<&str>,
        opts: &ListOptions,
        filter: &dyn Fn(&Value) -> bool,
    ) -> Result<ListPage, StoreError> {
        let (snapshot, candidates) = self.list_versions(table, namespace, opts)?;
        // Decoding happens here, without the lock: a list of thousands of cold objects does
        // not hold up the writers.
        let limit = opts.limit.filter(|l| *l > 0);
        let mut page = ListPage {
            items: Vec::new(),
            rv: snapshot,
            continue_after: None,
            remaining: 0,
        };
        let mut last_key: Option<String> = None;
        let mut rest = candidates.into_iter();
        for (key, version) in rest.by_ref() {
            let obj = version.value();
            if !filter(&obj) {
                continue;
            }
            if let Some(l) = limit
                && page.items.len() >= l
            {
                page.remaining += 1;
                page.continue_after = last_key.take();
                break;
            }
            last_key = Some(key);
            page.items.push(obj);
        }
        if page.remaining > 0 {
            page.remaining += if opts.unfiltered {
                rest.len()
            } else {
                rest.filter(|(_, v)| filter(&v.value())).count()
            };
        }
        Ok(page)
    }

    /// The versions a list reads, in key order, under the lock: the live objects of the range,
    /// with the states at `snapshot` where the objects changed after it. Returns the snapshot rv.
    #[allow(clippy::type_complexity)]
    fn list_versions(
        &self,
        table: &str,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<(u64, Vec<(String, Arc<Version>)>), StoreError> {
        let inner = self.read();
        let current = inner.rv;
        let snapshot = opts.snapshot.unwrap_or(current).min(current);
        let prefix = namespace.map(|ns| format!("{ns}/"));
        let in_range = |k: &str| -> bool {
            prefix.as_deref().is_none_or(|p| k.starts_with(p))
                && opts.start_after.as_deref().is_none_or(|s| k > s)
        };
        // Overlay of keys changed after the snapshot: key -> state at snapshot (None = absent).
        let mut overlay: BTreeMap<&str, Option<&Arc<Version>>> = BTreeMap::new();
        if snapshot < current {
            let oldest = inner.compacted_for(table);
            if snapshot < oldest {
                return Err(StoreError::Expired {
                    requested: snapshot,
                    oldest,
                });
            }
            let start = inner.history.partition_point(|e| e.rv <= snapshot);
            for ev in inner.history.range(start..).rev() {
                if &*ev.table != table || !in_range(&ev.key) {
                    continue;
                }
                let before = match ev.etype {
                    EventType::Added => None,
                    EventType::Modified | EventType::Deleted => ev.prev.as_ref(),
                };
                overlay.insert(&ev.key, before);
            }
        }
        let empty = BTreeMap::new();
        let objects = inner
            .tables
            .get(table)
            .map(|t| &t.objects)
            .unwrap_or(&empty);
        let lower = match (&opts.start_after, &prefix) {
            (Some(s), Some(p)) if s.as_str() >= p.as_str() => std::ops::Bound::Excluded(s.clone()),
            (Some(s), None) => std::ops::Bound::Excluded(s.clone()),
            (_, Some(p)) => std::ops::Bound::Included(p.clone()),
            (None, None) => std::ops::Bound::Unbounded,
        };
        let mut live = objects
            .range((lower, std::ops::Bound::Unbounded))
            .take_while(|(k, _)| prefix.as_deref().is_none_or(|p| k.starts_with(p)))
            .peekable();
        let mut over = overlay.into_iter().peekable();
        let mut out = Vec::new();
        loop {
            // Merge the live map with the overlay in key order; the overlay wins on equal keys.
            let next: Option<(&str, Option<&Arc<Version>>)> = match (live.peek(), over.peek()) {
                (None, None) => None,
                (Some((lk, _)), Some((ok, _))) => {
                    if lk.as_str() < *ok {
                        live.next().map(|(k, e)| (k.as_str(), Some(&e.version)))
                    } else {
                        if lk.as_str() == *ok {
                            live.next();
                        }
                        over.next()
                    }
                }
                (Some(_), None) => live.next().map(|(k, e)| (k.as_str(), Some(&e.version))),
                (None, Some(_)) => over.next(),
            };
            let Some((key, version)) = next else { break };
            if let Some(v) = version {
                out.push((key.to_string(), v.clone()));
            }
        }
        Ok((snapshot, out))
    }

    /// Subscribes to events of `table` committed after `from_rv` (None = from now).
    /// Fails with `Expired` when `from_rv` has left the history window.
    pub fn watch_from(
        &self,
        table: &str,
        from_rv: Option<u64>,
    ) -> Result<Subscription, StoreError> {
        let inner = self.read();
        let rx = self.tx.subscribe();
        let start_rv = from_rv.unwrap_or(inner.rv).min(inner.rv);
        let oldest = inner.compacted_for(table);
        if start_rv < oldest {
            return Err(StoreError::Expired {
                requested: start_rv,
                oldest,
            });
        }
        let start = inner.history.partition_point(|e| e.rv <= start_rv);
        let backlog = inner
            .history
            .range(start..)
            .filter(|e| &*e.table == table)
            .cloned()
            .collect();
        Ok(Subscription {
            backlog,
            rx,
            start_rv,
        })
    }

    /// Atomically lists every object of `table` (in `namespace` when given) and subscribes to later
    /// events; used for watches without a resourceVersion (synthetic ADDED events first).
    pub fn list_and_subscribe(
        &self,
        table: &str,
        namespace: Option<&str>,
    ) -> (Vec<Arc<Value>>, Subscription) {
        let inner = self.read();
        let rx = self.tx.subscribe();
        let prefix = namespace.map(|ns| format!("{ns}/"));
        let versions: Vec<Arc<Version>> = inner
            .tables
            .get(table)
            .map(|t| {
                t.objects
                    .iter()
                    .filter(|(k, _)| prefix.as_deref().is_none_or(|p| k.starts_with(p)))
                    .map(|(_, e)| e.version.clone())
                    .collect()
            })
            .unwrap_or_default();
        let start_rv = inner.rv;
        drop(inner);
        // Decoded without the lock (see `list`).
        let items = versions.iter().map(|v| v.value()).collect();
        (
            items,
            Subscription {
                backlog: Vec::new(),
                rx,
                start_rv,
            },
        )
    }

    /// Subscribes to every event from now on (garbage collector, data plane triggers).
    pub fn subscribe_all(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    #[allow(clippy::too_many_arguments)]
    fn commit(
        &self,
        inner: &mut Inner,
        rv: u64,
        etype: EventType,
        table: &Arc<str>,
        key: String,
        object: Arc<Version>,
        prev: Option<Arc<Version>>,
    ) -> Arc<Event> {
        let ev = Arc::new(Event {
            rv,
            etype,
            table: table.clone(),
            key,
            object,
            prev,
            wire: OnceLock::new(),
            at: Instant::now(),
        });
        inner.history.push_back(ev.clone());
        while let Some(oldest) = inner.history.front()
            && inner.limits.evicts(inner.history.len(), oldest.at)
            && let Some(old) = inner.history.pop_front()
        {
            inner.compacted = old.rv;
            inner.compacted_tables.insert(old.table.clone(), old.rv);
            old.cool();
        }
        let hot = compact::HOT_EVENTS.min(inner.limits.min_events);
        if let Some(i) = inner.history.len().checked_sub(hot + 1) {
            let ev = inner.history[i].clone();
            inner.to_cool.push(ev);
            if inner.to_cool.len() >= compact::BATCH {
                compact::cool_later(std::mem::take(&mut inner.to_cool));
            }
        }
        // No receivers is fine.
        let _ = self.tx.send(ev.clone());
        ev
    }
}

/// Queues a change on the ownership feed when it can matter to ownership (see
/// [`OwnershipChange`]); `before` is the previous object when the owner references changed.
fn feed(inner: &mut Inner, event: Arc<Event>, obj: &Value, before: Option<&Value>) {
    let Some(tx) = &inner.feed else { return };
    let owners: Vec<String> = owner_uids(obj).map(str::to_string).collect();
    let owners_before: Vec<String> = before
        .map(|b| owner_uids(b).map(str::to_string).collect())
        .unwrap_or_default();
    let deleting = is_deleting(obj);
    if event.etype != EventType::Deleted
        && !deleting
        && owners.is_empty()
        && owners_before.is_empty()
    {
        return;
    }
    let change = OwnershipChange {
        uid: uid_of(obj).to_string(),
        event,
        owners,
        owners_before,
        deleting,
    };
    if tx.send(change).is_err() {
        inner.feed = None;
    }
}

impl Inner {
    /// The highest evicted rv of `table`'s events (see `compacted_tables`).
    fn compacted_for(&self, table: &str) -> u64 {
        self.compacted_tables.get(table).copied().unwrap_or(0)
    }
}

fn index_add(inner: &mut Inner, table: &Arc<str>, key: &str, obj: &Value) {
    let uid = uid_of(obj);
    if !uid.is_empty() {
        inner
            .uids
            .insert(uid.to_string(), (table.clone(), key.to_string()));
    }
    for owner in owner_uids(obj) {
        inner
            .dependents
            .entry(owner.to_string())
            .or_default()
            .insert((table.clone(), key.to_string()));
    }
}

fn index_remove(inner: &mut Inner, key: &str, table: &Arc<str>, obj: &Value) {
    let uid = uid_of(obj);
    if !uid.is_empty() {
        inner.uids.remove(uid);
    }
    for owner in owner_uids(obj) {
        if let Some(set) = inner.dependents.get_mut(owner) {
            set.remove(&(table.clone(), key.to_string()));
            if set.is_empty() {
                inner.dependents.remove(owner);
            }
        }
    }
}

#[cfg(test)]
mod feed_tests;
#[cfg(test)]
mod tests;

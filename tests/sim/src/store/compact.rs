//! How the store keeps objects: one `Version` per written state of an object, shared by the store
//! entry, the history event that wrote it and the next event's `prev`. A version is decoded
//! (`Arc<Value>`) while fresh and compact JSON bytes once it is older than the last `HOT_EVENTS`
//! writes. A decoded `Value` costs ~13x its JSON (every map is an IndexMap with its own hash table
//! and 104-byte entries, every key and string its own allocation; ARCHITECTURE.md has the
//! measurements), so old versions are decoded on demand. JSON round-trips a `Value` exactly (key
//! order, integers vs floats), so a decoded object equals the one stored.
//!
//! Turning a version cold (serializing it unless a watcher already did, and freeing the decoded
//! form) happens on one background thread, off the writers' path, handed over in batches of `BATCH`
//! events (one wake-up per batch); when its queue is full the writer does it inline, so the decoded
//! versions waiting stay bounded.
//!
//! A handler reads an object and then writes it back; the read of a cold object decodes it, and the
//! store's write needs that same object as the event's `prev`. A small per-thread ring of the objects
//! decoded last, keyed by (store, resourceVersion), gives the write the reader's copy instead of a
//! second decode. A resourceVersion names exactly one state of one object in one store.

use bytes::Bytes;
use serde_json::Value;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};

use super::Event;

/// Writes whose objects stay decoded (the newest events of the history window).
pub(super) const HOT_EVENTS: usize = 1024;

/// Events handed to the background thread at once (one wake-up per batch).
pub(super) const BATCH: usize = 64;

/// Batches waiting for the background thread (each event holds a decoded object).
const QUEUE: usize = 16;

/// Cools a batch of events' objects on the background thread (inline when its queue is full).
pub(super) fn cool_later(batch: Vec<Arc<Event>>) {
    static TX: OnceLock<Option<SyncSender<Vec<Arc<Event>>>>> = OnceLock::new();
    let tx = TX.get_or_init(|| {
        let (tx, rx) = sync_channel::<Vec<Arc<Event>>>(QUEUE);
        std::thread::Builder::new()
            .name("kube-sim-compact".into())
            .spawn(move || {
                for batch in rx {
                    batch.iter().for_each(|ev| ev.cool());
                }
            })
            .ok()
            .map(|_| tx)
    });
    let inline = match tx {
        Some(tx) => match tx.try_send(batch) {
            Ok(()) => return,
            Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) => b,
        },
        None => batch,
    };
    inline.iter().for_each(|ev| ev.cool());
}

/// One written state of one object.
#[derive(Debug)]
pub struct Version {
    repr: Mutex<Repr>,
}

#[derive(Debug)]
struct Repr {
    /// Decoded, while fresh.
    value: Option<Arc<Value>>,
    /// Compact JSON, once cold.
    json: Option<Bytes>,
}

impl Version {
    pub(super) fn hot(value: Arc<Value>) -> Arc<Version> {
        Arc::new(Version {
            repr: Mutex::new(Repr {
                value: Some(value),
                json: None,
            }),
        })
    }

    fn repr(&self) -> std::sync::MutexGuard<'_, Repr> {
        self.repr.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The object; a cold version is decoded (not kept decoded).
    pub(super) fn value(&self) -> Arc<Value> {
        let json = {
            let r = self.repr();
            if let Some(v) = &r.value {
                return v.clone();
            }
            r.json.clone().unwrap_or_default()
        };
        Arc::new(decode(&json))
    }

    /// The object, using this thread's copy when it decoded (store, rv) last, and remembering a new
    /// decode for this thread's next write.
    pub(super) fn value_for_write(&self, store: u64, rv: u64) -> Arc<Value> {
        if let Some(v) = self.repr().value.clone() {
            return v;
        }
        if let Some(v) = recall(store, rv) {
            return v;
        }
        let v = self.value();
        remember(store, rv, &v);
        v
    }

    /// Compact JSON of the object when cold (None while decoded).
    pub(super) fn cold_json(&self) -> Option<Bytes> {
        self.repr().json.clone()
    }

    /// Turns the version cold: keeps `json` (the object's compact JSON, e.g. a slice of the event's
    /// wire line) or serializes the object, and drops the decoded form.
    pub(super) fn cool(&self, json: Option<Bytes>) {
        let mut r = self.repr();
        if r.json.is_none() {
            let Some(v) = r.value.as_ref() else { return };
            r.json = Some(json.unwrap_or_else(|| encode(v)));
        }
        r.value = None;
    }

    #[cfg(test)]
    pub(super) fn is_cold(&self) -> bool {
        self.repr().value.is_none()
    }
}

/// Serializes an object compactly, without spare capacity: into this thread's reused buffer, then
/// one allocation of the exact size (no growth by doubling, no shrinking copy).
pub(super) fn encode(obj: &Value) -> Bytes {
    thread_local! {
        static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    BUF.with(|buf| {
        let mut out = buf.borrow_mut();
        out.clear();
        // Writing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, obj);
        let bytes = Bytes::copy_from_slice(&out);
        if out.capacity() > 1 << 20 {
            *out = Vec::new();
        }
        bytes
    })
}

/// Decodes bytes written by `encode`.
pub(super) fn decode(bytes: &[u8]) -> Value {
    // The bytes were produced from a Value, so they parse; Null guards the impossible.
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

static NEXT_STORE_ID: AtomicU64 = AtomicU64::new(1);

/// A process-unique id for one store (keys the per-thread ring).
pub(super) fn next_store_id() -> u64 {
    NEXT_STORE_ID.fetch_add(1, Ordering::Relaxed)
}

/// Objects decoded last on this thread.
const RECENT: usize = 4;

type Recent = [Option<(u64, u64, Arc<Value>)>; RECENT];

thread_local! {
    static DECODED: RefCell<(usize, Recent)> = const { RefCell::new((0, [None, None, None, None])) };
}

fn remember(store: u64, rv: u64, obj: &Arc<Value>) {
    DECODED.with(|d| {
        let mut d = d.borrow_mut();
        let i = d.0;
        d.1[i] = Some((store, rv, obj.clone()));
        d.0 = (i + 1) % RECENT;
    });
}

fn recall(store: u64, rv: u64) -> Option<Arc<Value>> {
    DECODED.with(|d| {
        d.borrow()
            .1
            .iter()
            .flatten()
            .find(|(s, r, _)| *s == store && *r == rv)
            .map(|(_, _, o)| o.clone())
    })
}

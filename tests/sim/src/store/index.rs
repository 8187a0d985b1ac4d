//! Secondary indexes: for one table, a function maps each object to index keys; a lookup returns
//! the objects carrying any of the asked keys, in `namespace/name` order (the order of a list).
//! Kept under the store's write lock by every create, update and delete, so a lookup sees exactly
//! the committed state, like a scan of the table would. The RBAC authorizer uses one to find the
//! RoleBindings naming a user without decoding every binding of the namespace.

use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

/// Maps an object (and its namespace, "" when cluster-scoped) to its index keys.
pub type IndexFn = fn(namespace: &str, obj: &Value) -> Vec<String>;

/// One table's index: index key -> object keys (`namespace/name`).
pub(super) struct SecondaryIndex {
    f: IndexFn,
    by_key: HashMap<String, BTreeSet<String>>,
}

impl SecondaryIndex {
    pub(super) fn new(f: IndexFn) -> Self {
        SecondaryIndex {
            f,
            by_key: HashMap::new(),
        }
    }

    fn keys(&self, object_key: &str, obj: &Value) -> Vec<String> {
        let ns = object_key.split_once('/').map(|(ns, _)| ns).unwrap_or("");
        let mut keys = (self.f)(ns, obj);
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    pub(super) fn add(&mut self, object_key: &str, obj: &Value) {
        for k in self.keys(object_key, obj) {
            self.by_key
                .entry(k)
                .or_default()
                .insert(object_key.to_string());
        }
    }

    pub(super) fn remove(&mut self, object_key: &str, obj: &Value) {
        for k in self.keys(object_key, obj) {
            if let Some(set) = self.by_key.get_mut(&k) {
                set.remove(object_key);
                if set.is_empty() {
                    self.by_key.remove(&k);
                }
            }
        }
    }

    /// Replaces `old`'s keys by `new`'s (nothing changes when they are the same).
    pub(super) fn replace(&mut self, object_key: &str, old: &Value, new: &Value) {
        if self.keys(object_key, old) != self.keys(object_key, new) {
            self.remove(object_key, old);
            self.add(object_key, new);
        }
    }

    /// Object keys carrying any of `keys`, sorted, without duplicates.
    pub(super) fn lookup(&self, keys: &[String]) -> BTreeSet<&str> {
        keys.iter()
            .filter_map(|k| self.by_key.get(k))
            .flatten()
            .map(String::as_str)
            .collect()
    }
}

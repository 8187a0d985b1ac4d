//! Background controllers over the store: owner-reference garbage collection (background, foreground
//! and orphan propagation), namespace termination, and CRD cleanup (a deleted CRD's objects go first).
//!
//! They read the store's ownership feed (`Store::ownership_feed`): every deletion and every write of
//! an object that has or had owner references or is marked for deletion, queued in commit order
//! without bound, with the owner uids and the deletion mark taken when the object was written. So
//! the work follows the changes: nothing is lost when the controllers fall behind, no pass over the
//! whole store after startup, and the common event (an owned object written while its owners
//! live) costs a few index lookups and no decode. Batches of changes run on the blocking pool, not
//! on a runtime worker that serves requests.

use super::SimState;
use super::handlers::{
    CRD_TABLE, DeleteOpts, FINALIZER_CRD_CLEANUP, FINALIZER_FOREGROUND, FINALIZER_ORPHAN, NS_TABLE,
    finalizers, is_deleting, set_finalizers,
};
use super::registry::ResourceInfo;
use crate::store::{
    EventType, OwnershipChange, Preconditions, obj_name, obj_namespace, rv_of, uid_of,
};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Most changes handed to one blocking task.
const BATCH: usize = 512;

/// `namespace/name` -> (namespace, name).
fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

impl SimState {
    fn info_for_table(&self, table: &str) -> Option<Arc<ResourceInfo>> {
        let (group, plural) = table.split_once('/')?;
        self.registry_read().get(group, plural)
    }

    fn gc_delete(&self, table: &str, obj: &Value, propagation: &str) {
        let Some(ri) = self.info_for_table(table) else {
            return;
        };
        let opts = DeleteOpts {
            propagation: Some(propagation.into()),
            preconditions: Preconditions {
                uid: Some(uid_of(obj).to_string()),
                resource_version: None,
            },
            ..Default::default()
        };
        let ns = obj_namespace(obj).to_string();
        let _ = self.delete_obj(
            &ri,
            ri.storage_version().to_string().as_str(),
            Some(&ns),
            obj_name(obj),
            &opts,
        );
    }

    /// Removes one finalizer from the current stored object (and deletes it if it was the last).
    fn remove_finalizer(&self, table: &str, ns: &str, name: &str, fin: &str) {
        let Some(ri) = self.info_for_table(table) else {
            return;
        };
        for _ in 0..8 {
            let Some(cur) = self.store.get(table, ns, name) else {
                return;
            };
            let mut f = finalizers(&cur);
            if !f.iter().any(|x| x == fin) {
                return;
            }
            f.retain(|x| x != fin);
            let mut new = (*cur).clone();
            set_finalizers(&mut new, &f);
            match self
                .store
                .update(&ri.table, ns, name, new, Some(rv_of(&cur)))
            {
                Ok((_, stored)) => {
                    if is_deleting(&stored)
                        && finalizers(&stored).is_empty()
                        && let Ok(gone) =
                            self.store
                                .delete(&ri.table, ns, name, &Preconditions::default())
                    {
                        self.after_delete(&ri, &gone);
                    }
                    return;
                }
                Err(_) => continue,
            }
        }
    }

    /// A dependent whose owners are all gone is deleted.
    fn gc_check_dependent(&self, table: &str, ns: &str, name: &str) {
        let Some(obj) = self.store.get(table, ns, name) else {
            return;
        };
        let owners: Vec<&str> = crate::store::owner_uids(&obj).collect();
        if owners.is_empty() || is_deleting(&obj) {
            return;
        }
        if owners.iter().all(|u| !self.store.uid_exists(u)) {
            self.gc_delete(table, &obj, "Background");
        }
    }

    /// Deletes one object by key unless it is gone or already marked for deletion.
    fn gc_delete_key(&self, table: &str, key: &str, propagation: &str) {
        let (ns, name) = split_key(key);
        if let Some(obj) = self.store.get(table, ns, name)
            && !is_deleting(&obj)
        {
            self.gc_delete(table, &obj, propagation);
        }
    }

    /// Re-examines the owners (by uid) that are being deleted in the foreground: a dependent of
    /// theirs changed or went.
    fn gc_foreground_owners<'a>(&self, uids: impl IntoIterator<Item = &'a String>) {
        for uid in uids {
            if let Some((t, key, fins)) = self.store.deletion_by_uid(uid)
                && fins.iter().any(|f| f == FINALIZER_FOREGROUND)
            {
                let (ns, name) = split_key(&key);
                self.gc_foreground(&t, ns, name);
            }
        }
    }

    /// An object marked for deletion: orphan or foreground propagation, namespace termination,
    /// CRD cleanup, as its current finalizers and table say.
    fn gc_deleting(&self, table: &str, ns: &str, name: &str) {
        let Some(fins) = self.store.deletion(table, ns, name) else {
            return;
        };
        if fins.iter().any(|x| x == FINALIZER_ORPHAN) {
            self.gc_orphan(table, ns, name);
        } else if fins.iter().any(|x| x == FINALIZER_FOREGROUND) {
            self.gc_foreground(table, ns, name);
        }
        if table == NS_TABLE {
            self.ns_cleanup(name);
        }
        if table == CRD_TABLE {
            self.crd_cleanup(name, None);
        }
    }

    /// Foreground deletion: delete dependents, drop the finalizer once no blocking dependent is left.
    fn gc_foreground(&self, table: &str, ns: &str, name: &str) {
        let Some(owner) = self.store.get(table, ns, name) else {
            return;
        };
        let uid = uid_of(&owner).to_string();
        let deps = self.store.dependents_of(&uid);
        let mut blocking = false;
        for (t, d) in &deps {
            if !is_deleting(d) {
                self.gc_delete(t, d, "Foreground");
            }
            if self.store.get(t, obj_namespace(d), obj_name(d)).is_some() {
                blocking |= d
                    .get("metadata")
                    .and_then(|m| m.get("ownerReferences"))
                    .and_then(Value::as_array)
                    .is_some_and(|refs| {
                        refs.iter().any(|r| {
                            r.get("uid").and_then(Value::as_str) == Some(uid.as_str())
                                && r.get("blockOwnerDeletion").and_then(Value::as_bool)
                                    == Some(true)
                        })
                    });
            }
        }
        if !blocking {
            self.remove_finalizer(table, ns, name, FINALIZER_FOREGROUND);
        }
    }

    /// Orphan deletion: remove ownerReferences to the owner from its dependents, then the finalizer.
    fn gc_orphan(&self, table: &str, ns: &str, name: &str) {
        let Some(owner) = self.store.get(table, ns, name) else {
            return;
        };
        let uid = uid_of(&owner).to_string();
        for (t, d) in self.store.dependents_of(&uid) {
            for _ in 0..8 {
                let Some(cur) = self.store.get(&t, obj_namespace(&d), obj_name(&d)) else {
                    break;
                };
                let mut new = (*cur).clone();
                if let Some(refs) = new
                    .get_mut("metadata")
                    .and_then(|m| m.get_mut("ownerReferences"))
                    .and_then(Value::as_array_mut)
                {
                    refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid.as_str()));
                    if refs.is_empty()
                        && let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut)
                    {
                        m.remove("ownerReferences");
                    }
                }
                if self
                    .store
                    .update(
                        &t,
                        obj_namespace(&cur),
                        obj_name(&cur),
                        new,
                        Some(rv_of(&cur)),
                    )
                    .is_ok()
                {
                    break;
                }
            }
        }
        self.remove_finalizer(table, ns, name, FINALIZER_ORPHAN);
    }

    /// Namespace termination: delete everything in it, then remove the namespace. Reads the keys
    /// and deletion marks of the namespace's objects, and decodes only the ones it deletes.
    fn ns_cleanup(&self, ns: &str) {
        if self.store.deletion(NS_TABLE, "", ns).is_none() {
            return;
        }
        // Like the real namespace controller, start a moment after the DELETE so that clients
        // deleting the namespace together with its objects still find them.
        let ready = {
            let mut pending = self.ns_pending.lock().unwrap_or_else(|e| e.into_inner());
            *pending
                .entry(ns.to_string())
                .or_insert_with(|| std::time::Instant::now() + self.config.namespace_cleanup_delay)
        };
        if std::time::Instant::now() < ready {
            return;
        }
        let tables: Vec<Arc<str>> = self
            .store
            .tables()
            .into_iter()
            .filter(|t| &**t != NS_TABLE)
            .collect();
        for table in &tables {
            for (key, deleting) in self.store.keys(table, Some(ns)) {
                if !deleting {
                    self.gc_delete_key(table, &key, "Background");
                }
            }
        }
        let still = tables
            .iter()
            .any(|t| !self.store.keys(t, Some(ns)).is_empty());
        if !still {
            for _ in 0..8 {
                let Some(cur) = self.store.get(NS_TABLE, "", ns) else {
                    return;
                };
                let mut new = (*cur).clone();
                if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.remove("finalizers");
                }
                let ok = self
                    .store
                    .update(&Arc::from(NS_TABLE), "", ns, new, Some(rv_of(&cur)));
                if let Ok((_, stored)) = ok {
                    if finalizers(&stored).is_empty() {
                        let _ = self.store.delete(
                            &Arc::from(NS_TABLE),
                            "",
                            ns,
                            &Preconditions::default(),
                        );
                    }
                    return;
                }
            }
        }
    }

    /// CRD deletion: delete its objects; when none are left remove the cleanup finalizer. `table`
    /// is the CRD's table when the caller knows it (the CRD is then not decoded).
    fn crd_cleanup(&self, crd_name: &str, table: Option<&str>) {
        let Some(fins) = self.store.deletion(CRD_TABLE, "", crd_name) else {
            return;
        };
        if !fins.iter().any(|f| f == FINALIZER_CRD_CLEANUP) {
            return;
        }
        let table: Arc<str> = match table {
            Some(t) => Arc::from(t),
            None => {
                let Some(crd) = self.store.get(CRD_TABLE, "", crd_name) else {
                    return;
                };
                match super::registry::crd_info(&crd) {
                    Ok(info) => info.table,
                    Err(_) => {
                        self.remove_finalizer(CRD_TABLE, "", crd_name, FINALIZER_CRD_CLEANUP);
                        return;
                    }
                }
            }
        };
        for (key, deleting) in self.store.keys(&table, None) {
            if !deleting {
                self.gc_delete_key(&table, &key, "Background");
            }
        }
        if self.store.count(&table) == 0 {
            self.remove_finalizer(CRD_TABLE, "", crd_name, FINALIZER_CRD_CLEANUP);
        }
    }

    fn crd_name_for_table(table: &str) -> Option<String> {
        let (group, plural) = table.split_once('/')?;
        (!group.is_empty()).then(|| format!("{plural}.{group}"))
    }

    /// Reacts to one committed change from the ownership feed.
    pub fn controllers_handle(&self, change: &OwnershipChange) {
        let OwnershipChange {
            event,
            uid,
            owners,
            owners_before,
            deleting,
        } = change;
        let table = &*event.table;
        let (ns, name) = split_key(&event.key);
        match event.etype {
            EventType::Deleted => {
                for (t, key) in self.store.dependent_keys(uid) {
                    let (dns, dname) = split_key(&key);
                    self.gc_check_dependent(&t, dns, dname);
                }
                self.gc_foreground_owners(owners);
                if !ns.is_empty() && self.store.deletion(NS_TABLE, "", ns).is_some() {
                    self.ns_cleanup(ns);
                }
                if let Some(crd) = Self::crd_name_for_table(table)
                    && self.store.deletion(CRD_TABLE, "", &crd).is_some()
                {
                    self.crd_cleanup(&crd, Some(table));
                }
                if table == CRD_TABLE
                    && let Some(ri) = self.info_for_table(table)
                {
                    self.after_delete(&ri, &event.object());
                }
            }
            EventType::Added | EventType::Modified => {
                if *deleting {
                    self.gc_deleting(table, ns, name);
                }
                if !owners.is_empty() && owners.iter().all(|u| !self.store.uid_exists(u)) {
                    self.gc_check_dependent(table, ns, name);
                }
                if event.etype == EventType::Modified {
                    // A dependent that changed (marked for deletion, or dropped its reference)
                    // may unblock an owner deleted in the foreground.
                    self.gc_foreground_owners(owners.iter().chain(owners_before));
                }
            }
        }
    }

    /// Runs namespace cleanups whose delay has passed; forgets namespaces that are gone.
    fn pending_namespaces(&self) {
        let due: Vec<String> = {
            let mut pending = self.ns_pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.retain(|ns, _| self.store.deletion(NS_TABLE, "", ns).is_some());
            let now = std::time::Instant::now();
            pending
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(ns, _)| ns.clone())
                .collect()
        };
        for ns in due {
            self.ns_cleanup(&ns);
        }
    }

    /// Full pass at startup: the dependents of owners that are gone, and the objects marked for
    /// deletion, found from the store's indexes without decoding the rest.
    pub fn controllers_resync(&self) {
        self.gc_full_passes.fetch_add(1, Ordering::Relaxed);
        for (table, key) in self.store.dependents_of_missing_owners() {
            let (ns, name) = split_key(&key);
            self.gc_check_dependent(&table, ns, name);
        }
        for (table, key) in self.store.marked_for_deletion() {
            let (ns, name) = split_key(&key);
            self.gc_deleting(&table, ns, name);
        }
    }
}

/// Runs `f` on the blocking pool (the controllers' passes must not hold up a runtime worker).
async fn offload(state: &Arc<SimState>, f: impl FnOnce(&SimState) + Send + 'static) {
    let state = state.clone();
    let _ = tokio::task::spawn_blocking(move || f(&state)).await;
}

/// Runs the controllers until the store's feed closes or the task is aborted.
pub async fn run(state: Arc<SimState>) {
    // Subscribed before the startup pass: a change committed during it is handled after it.
    let mut feed = state.store.ownership_feed();
    offload(&state, SimState::controllers_resync).await;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            n = feed.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return;
                }
                let changes = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                offload(&state, move |s| changes.iter().for_each(|c| s.controllers_handle(c))).await;
            }
            _ = tick.tick() => {
                let pending = !state.ns_pending.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
                if pending {
                    offload(&state, SimState::pending_namespaces).await;
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "controllers_tests.rs"]
mod tests;

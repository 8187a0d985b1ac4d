//! Background controllers over the store: owner-reference garbage collection (background, foreground
//! and orphan propagation), namespace termination, and CRD cleanup (a deleted CRD's objects go first).

use super::SimState;
use super::handlers::{
    CRD_TABLE, DeleteOpts, FINALIZER_CRD_CLEANUP, FINALIZER_FOREGROUND, FINALIZER_ORPHAN, NS_TABLE,
    finalizers, is_deleting, set_finalizers,
};
use super::registry::ResourceInfo;
use crate::store::{
    Event, EventType, ListOptions, Preconditions, obj_name, obj_namespace, owner_uids, rv_of,
    uid_of,
};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

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
        let owners: Vec<&str> = owner_uids(&obj).collect();
        if owners.is_empty() || is_deleting(&obj) {
            return;
        }
        if owners.iter().all(|u| !self.store.uid_exists(u)) {
            self.gc_delete(table, &obj, "Background");
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

    /// Namespace termination: delete everything in it, then remove the namespace.
    fn ns_cleanup(&self, ns: &str) {
        let Some(nso) = self.store.get(NS_TABLE, "", ns) else {
            return;
        };
        if !is_deleting(&nso) {
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
        let mut remaining = 0usize;
        for table in self.store.tables() {
            if &*table == NS_TABLE {
                continue;
            }
            let Ok(page) = self
                .store
                .list(&table, Some(ns), &ListOptions::default(), &|_| true)
            else {
                continue;
            };
            for o in page.items {
                if obj_namespace(&o) != ns {
                    continue;
                }
                remaining += 1;
                if !is_deleting(&o) {
                    self.gc_delete(&table, &o, "Background");
                }
            }
        }
        let still = self
            .store
            .tables()
            .iter()
            .filter(|t| &***t != NS_TABLE)
            .any(|t| {
                self.store
                    .list(
                        t,
                        Some(ns),
                        &ListOptions {
                            limit: Some(1),
                            ..Default::default()
                        },
                        &|_| true,
                    )
                    .is_ok_and(|p| !p.items.is_empty())
            });
        let _ = remaining;
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

    /// CRD deletion: delete its objects; when none are left remove the cleanup finalizer.
    fn crd_cleanup(&self, crd_name: &str) {
        let Some(crd) = self.store.get(CRD_TABLE, "", crd_name) else {
            return;
        };
        if !is_deleting(&crd) || !finalizers(&crd).iter().any(|f| f == FINALIZER_CRD_CLEANUP) {
            return;
        }
        let Ok(info) = super::registry::crd_info(&crd) else {
            self.remove_finalizer(CRD_TABLE, "", crd_name, FINALIZER_CRD_CLEANUP);
            return;
        };
        if let Ok(page) = self
            .store
            .list(&info.table, None, &ListOptions::default(), &|_| true)
        {
            for o in &page.items {
                if !is_deleting(o) {
                    self.gc_delete(&info.table, o, "Background");
                }
            }
        }
        if self.store.count(&info.table) == 0 {
            self.remove_finalizer(CRD_TABLE, "", crd_name, FINALIZER_CRD_CLEANUP);
        }
    }

    fn crd_name_for_table(table: &str) -> Option<String> {
        let (group, plural) = table.split_once('/')?;
        (!group.is_empty()).then(|| format!("{plural}.{group}"))
    }

    /// Reacts to one committed change.
    pub fn controllers_handle(&self, ev: &Event) {
        let obj = &ev.object();
        let table = &*ev.table;
        let ns = obj_namespace(obj).to_string();
        let name = obj_name(obj).to_string();
        match ev.etype {
            EventType::Deleted => {
                let uid = uid_of(obj).to_string();
                for (t, d) in self.store.dependents_of(&uid) {
                    self.gc_check_dependent(&t, obj_namespace(&d), obj_name(&d));
                }
                for owner in owner_uids(obj) {
                    if let Some((t, _, o)) = self.store.get_by_uid(owner)
                        && is_deleting(&o)
                        && finalizers(&o).iter().any(|f| f == FINALIZER_FOREGROUND)
                    {
                        self.gc_foreground(&t, obj_namespace(&o), obj_name(&o));
                    }
                }
                if !ns.is_empty()
                    && self
                        .store
                        .get(NS_TABLE, "", &ns)
                        .is_some_and(|n| is_deleting(&n))
                {
                    self.ns_cleanup(&ns);
                }
                if let Some(crd) = Self::crd_name_for_table(table)
                    && self
                        .store
                        .get(CRD_TABLE, "", &crd)
                        .is_some_and(|c| is_deleting(&c))
                {
                    self.crd_cleanup(&crd);
                }
                if table == CRD_TABLE
                    && let Some(ri) = self.info_for_table(table)
                {
                    self.after_delete(&ri, obj);
                }
            }
            EventType::Added | EventType::Modified => {
                if is_deleting(obj) {
                    let f = finalizers(obj);
                    if f.iter().any(|x| x == FINALIZER_ORPHAN) {
                        self.gc_orphan(table, &ns, &name);
                    } else if f.iter().any(|x| x == FINALIZER_FOREGROUND) {
                        self.gc_foreground(table, &ns, &name);
                    }
                    if table == NS_TABLE {
                        self.ns_cleanup(&name);
                    }
                    if table == CRD_TABLE {
                        self.crd_cleanup(&name);
                    }
                }
                if owner_uids(obj).next().is_some() {
                    self.gc_check_dependent(table, &ns, &name);
                    if ev.etype == EventType::Modified {
                        for owner in owner_uids(obj) {
                            if let Some((t, _, o)) = self.store.get_by_uid(owner)
                                && is_deleting(&o)
                                && finalizers(&o).iter().any(|f| f == FINALIZER_FOREGROUND)
                            {
                                self.gc_foreground(&t, obj_namespace(&o), obj_name(&o));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Runs namespace cleanups whose delay has passed; forgets namespaces that are gone.
    fn pending_namespaces(&self) {
        let due: Vec<String> = {
            let mut pending = self.ns_pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.retain(|ns, _| self.store.get(NS_TABLE, "", ns).is_some());
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

    /// Full pass over every object (startup and after the controller fell behind the event stream).
    pub fn controllers_resync(&self) {
        for table in self.store.tables() {
            let Ok(page) = self
                .store
                .list(&table, None, &ListOptions::default(), &|_| true)
            else {
                continue;
            };
            for o in page.items {
                let ev_like = (is_deleting(&o), owner_uids(&o).next().is_some());
                if ev_like.0 || ev_like.1 {
                    let ns = obj_namespace(&o).to_string();
                    let name = obj_name(&o).to_string();
                    if ev_like.1 {
                        self.gc_check_dependent(&table, &ns, &name);
                    }
                    if ev_like.0 {
                        let f = finalizers(&o);
                        if f.iter().any(|x| x == FINALIZER_ORPHAN) {
                            self.gc_orphan(&table, &ns, &name);
                        } else if f.iter().any(|x| x == FINALIZER_FOREGROUND) {
                            self.gc_foreground(&table, &ns, &name);
                        }
                        if &*table == NS_TABLE {
                            self.ns_cleanup(&name);
                        }
                        if &*table == CRD_TABLE {
                            self.crd_cleanup(&name);
                        }
                    }
                }
            }
        }
    }
}

/// Runs the controllers until the store's channel closes or the task is aborted.
pub async fn run(state: Arc<SimState>) {
    let mut rx = state.store.subscribe_all();
    state.controllers_resync();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        tokio::select! {
            r = rx.recv() => match r {
                Ok(ev) => state.controllers_handle(&ev),
                Err(RecvError::Lagged(_)) => state.controllers_resync(),
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => state.pending_namespaces(),
        }
    }
}

//! The server's side of the pure modules' traits: `dataplane::ClusterApi` and `auth::RbacSource`
//! over the store, the data plane loop, built-in defaulting, and request authentication/authorization.

use super::SimState;
use super::errors::ApiError;
use super::handlers::{DeleteOpts, WriteOpts};
use super::registry::ResourceInfo;
use crate::auth::{self, Attributes, RbacSource, UserInfo};
use crate::dataplane::{self, Change, Changes, ClusterApi, DataPlane, ResourceRef};
use crate::store::{EventType, ListOptions, obj_name, obj_namespace};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Field manager the data plane writes as.
pub const DATAPLANE_MANAGER: &str = "kube-controller-manager";

impl SimState {
    fn info_for_ref(&self, r: &ResourceRef) -> Result<Arc<ResourceInfo>, String> {
        self.registry_read()
            .lookup(&r.group, &r.version, &r.resource)
            .ok_or_else(|| {
                format!(
                    "the server could not find the requested resource ({})",
                    r.resource
                )
            })
    }

    /// Built-in defaulting on create (`old == None`) and update.
    pub fn default_on_create(
        &self,
        ri: &ResourceInfo,
        version: &str,
        old: Option<&Value>,
        obj: &mut Value,
    ) {
        if ri.is_crd {
            return;
        }
        let r = ResourceRef::new(&ri.group, version, &ri.plural);
        let mut alloc = self.ip_alloc.lock().unwrap_or_else(|e| e.into_inner());
        match old {
            None => dataplane::default_on_create(&r, obj, &mut alloc),
            Some(o) => dataplane::default_on_update(&r, o, obj, &mut alloc),
        }
    }

    fn list_all(&self, table: &str, ns: Option<&str>) -> Vec<Value> {
        self.store
            .list(table, ns, &ListOptions::default(), &|_| true)
            // A cold object is decoded into its own Arc: taken as is, not copied again.
            .map(|p| p.items.into_iter().map(Arc::unwrap_or_clone).collect())
            .unwrap_or_default()
    }
}

impl ClusterApi for SimState {
    fn list(&self, resource: &ResourceRef, namespace: Option<&str>) -> Vec<Value> {
        let Ok(ri) = self.info_for_ref(resource) else {
            return Vec::new();
        };
        let ns = if ri.namespaced { namespace } else { None };
        let conv = self.needs_conversion(&ri, &resource.version);
        let mut items = self.list_all(&ri.table, ns);
        if conv {
            for o in &mut items {
                self.to_served_in_place(&ri, &resource.version, o);
            }
        }
        items
    }

    fn get(&self, resource: &ResourceRef, namespace: Option<&str>, name: &str) -> Option<Value> {
        let ri = self.info_for_ref(resource).ok()?;
        self.get_obj(&ri, &resource.version, namespace, name).ok()
    }

    fn create(&self, resource: &ResourceRef, obj: Value) -> Result<Value, String> {
        let ri = self.info_for_ref(resource)?;
        let ns = obj_namespace(&obj).to_string();
        let ns = (!ns.is_empty()).then_some(ns);
        self.create_obj(
            &ri,
            &resource.version,
            ns.as_deref(),
            obj,
            &WriteOpts::system(DATAPLANE_MANAGER),
        )
        .map(|o| Arc::unwrap_or_clone(o.object))
        .map_err(|e| e.message)
    }

    fn update(&self, resource: &ResourceRef, obj: Value) -> Result<Value, String> {
        let ri = self.info_for_ref(resource)?;
        let ns = obj_namespace(&obj).to_string();
        let name = obj_name(&obj).to_string();
        self.update_obj(
            &ri,
            &resource.version,
            Some(&ns),
            &name,
            obj,
            None,
            &WriteOpts::system(DATAPLANE_MANAGER),
        )
        .map(|o| Arc::unwrap_or_clone(o.object))
        .map_err(|e| e.message)
    }

    fn update_status(&self, resource: &ResourceRef, obj: Value) -> Result<Value, String> {
        let ri = self.info_for_ref(resource)?;
        let ns = obj_namespace(&obj).to_string();
        let name = obj_name(&obj).to_string();
        let sub = ri.status_sub(&resource.version).then_some("status");
        self.update_obj(
            &ri,
            &resource.version,
            Some(&ns),
            &name,
            obj,
            sub,
            &WriteOpts::system(DATAPLANE_MANAGER),
        )
        .map(|o| Arc::unwrap_or_clone(o.object))
        .map_err(|e| e.message)
    }

    fn delete(
        &self,
        resource: &ResourceRef,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<(), String> {
        let ri = self.info_for_ref(resource)?;
        self.delete_obj(
            &ri,
            &resource.version,
            namespace,
            name,
            &DeleteOpts::default(),
        )
        .map(|_| ())
        .map_err(|e| e.message)
    }

    fn bind(&self, namespace: &str, binding: &dataplane::Binding) -> Result<Value, String> {
        let ri = self.info_for_ref(&ResourceRef::pods())?;
        self.bind_pod(&ri, namespace, binding, false)
            .map(Arc::unwrap_or_clone)
            .map_err(|e| e.message)
    }

    fn revision(&self) -> Option<u64> {
        Some(self.store.current_rv())
    }
}

const RBAC: &str = "rbac.authorization.k8s.io";

impl RbacSource for SimState {
    fn roles(&self, ns: &str) -> Vec<Value> {
        self.list_all(&format!("{RBAC}/roles"), Some(ns))
    }
    fn role_bindings(&self, ns: &str) -> Vec<Value> {
        self.list_all(&format!("{RBAC}/rolebindings"), Some(ns))
    }
    fn cluster_roles(&self) -> Vec<Value> {
        self.list_all(&format!("{RBAC}/clusterroles"), None)
    }
    fn cluster_role_bindings(&self) -> Vec<Value> {
        self.list_all(&format!("{RBAC}/clusterrolebindings"), None)
    }
    fn role_bindings_for(&self, ns: &str, user: &UserInfo) -> Vec<Arc<Value>> {
        let keys = auth::subjects::user_subject_keys(ns, user);
        match self.store.indexed(ROLE_BINDINGS, &keys) {
            Some(bindings) => bindings,
            None => self.role_bindings(ns).into_iter().map(Arc::new).collect(),
        }
    }
    fn role(&self, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.store.get(&format!("{RBAC}/roles"), ns, name)
    }
}

/// The RoleBindings' table, indexed by subject (see `auth::subjects`).
const ROLE_BINDINGS: &str = "rbac.authorization.k8s.io/rolebindings";

impl SimState {
    /// Indexes RoleBindings by subject, so authorizing a request reads only the user's bindings.
    pub(super) fn index_rbac(&self) {
        self.store
            .add_index(ROLE_BINDINGS, auth::subjects::binding_subject_keys);
    }
}

impl SimState {
    /// Creates the default ClusterRoles and bindings (cluster-admin, discovery, ...).
    pub fn bootstrap_rbac(&self) {
        let opts = WriteOpts::system("kube-apiserver");
        let reg = self.registry_read();
        let (Some(cr), Some(crb)) = (
            reg.get(RBAC, "clusterroles"),
            reg.get(RBAC, "clusterrolebindings"),
        ) else {
            return;
        };
        drop(reg);
        for r in auth::default_cluster_roles() {
            let _ = self.create_obj(&cr, "v1", None, r, &opts);
        }
        for b in auth::default_cluster_role_bindings() {
            let _ = self.create_obj(&crb, "v1", None, b, &opts);
        }
    }

    /// Identifies the caller. Without `--authorize` every request is cluster-admin.
    pub fn authenticate(&self, authorization: &str) -> Result<UserInfo, ApiError> {
        if !self.config.authorize {
            return Ok(UserInfo::admin());
        }
        let token = authorization
            .strip_prefix("Bearer ")
            .or_else(|| authorization.strip_prefix("bearer "))
            .map(str::trim)
            .unwrap_or("");
        if token.is_empty() {
            return Err(ApiError::from_status(auth::unauthorized_status()));
        }
        self.authenticate_token(token)
            .map(|a| a.user)
            .ok_or_else(|| ApiError::from_status(auth::unauthorized_status()))
    }

    /// Authenticates a bearer token now (requests and TokenReviews): static tokens, and issued
    /// tokens while valid and while their service account lives on with the same uid.
    pub fn authenticate_token(&self, token: &str) -> Option<auth::Authenticated> {
        let a = self.tokens.authenticate_at(token, chrono::Utc::now())?;
        // Issued tokens die with their service account.
        if let Some(sa) = &a.service_account
            && let Some(uid) = &sa.uid
        {
            let live = self.store.get("/serviceaccounts", &sa.namespace, &sa.name);
            if live.is_none_or(|o| crate::store::uid_of(&o) != uid) {
                return None;
            }
        }
        Some(a)
    }

    /// Applies `Impersonate-*` headers: the requester must be allowed to `impersonate` each part
    /// (403 otherwise; skipped without `--authorize`, like every check); the request then runs as
    /// the impersonated user.
    pub fn impersonate(
        &self,
        user: UserInfo,
        imp: &auth::impersonation::Impersonation,
    ) -> Result<UserInfo, ApiError> {
        if imp.is_empty() {
            return Ok(user);
        }
        let checks = imp.checks().map_err(ApiError::bad_request)?;
        for attrs in &checks {
            self.authorize(&user, attrs)?;
        }
        imp.user()
            .ok_or_else(|| ApiError::bad_request("impersonation without a user"))
    }

    /// RBAC check; 403 with the real message when denied.
    pub fn authorize(&self, user: &UserInfo, attrs: &Attributes) -> Result<(), ApiError> {
        if !self.config.authorize {
            return Ok(());
        }
        auth::authorize(self, user, attrs)
            .map_err(|msg| ApiError::from_status(auth::forbidden_status(attrs, &msg)))
    }
}

/// Longest rest of the data plane between two passes.
pub const DATAPLANE_REST_MAX: Duration = Duration::from_secs(10);

/// Runs the data plane: a pass every 50 ms, sooner after writes (at most every 10 ms). A pass is
/// fed the changes of the kinds it reads since the previous one (drained from the store's event
/// stream before the pass) and looks only at those objects and the ones they concern; it relists
/// at the start and after lost events (the fan-out channel overflowed). A pass runs on the
/// blocking pool and the next one waits as long as it took (at most `DATAPLANE_REST_MAX`), so
/// the data plane leaves the API at least half the CPU.
pub async fn run_dataplane(state: Arc<SimState>, nodes: Vec<Value>) {
    use tokio::sync::broadcast::error::TryRecvError;
    let mut dp = if nodes.is_empty() {
        DataPlane::new()
    } else {
        DataPlane::with_nodes(nodes)
    };
    let mut rx = state.store.subscribe_all();
    let mut lost = true;
    loop {
        let started = std::time::Instant::now();
        let mut events = Vec::new();
        loop {
            match rx.try_recv() {
                Ok(ev) if dataplane::relevant_table(&ev.table) => events.push(ev),
                Ok(_) => {}
                Err(TryRecvError::Lagged(_)) => {
                    events.clear();
                    lost = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => return,
            }
        }
        let relist = std::mem::take(&mut lost);
        let st = state.clone();
        dp = match tokio::task::spawn_blocking(move || {
            let cpu = super::latency::thread_cpu();
            let changes = if relist {
                Changes::Relist
            } else {
                Changes::Since(
                    events
                        .into_iter()
                        .map(|ev| Change {
                            table: ev.table.to_string(),
                            object: ev.object(),
                            deleted: ev.etype == EventType::Deleted,
                        })
                        .collect(),
                )
            };
            let n = match &changes {
                Changes::Since(c) => c.len(),
                Changes::Relist => usize::MAX,
            };
            let t0 = std::time::Instant::now();
            dp.tick_with(&*st, chrono::Utc::now(), changes);
            // KUBE_SIM_DP_DEBUG=1: one line per pass on stderr.
            if std::env::var_os("KUBE_SIM_DP_DEBUG").is_some() {
                let changes = if n == usize::MAX {
                    "relist".to_string()
                } else {
                    n.to_string()
                };
                eprintln!(
                    "data plane pass: changes {changes}, took {:?}, {:?}",
                    t0.elapsed(),
                    dp.stats()
                );
            }
            if let (Some(a), Some(b)) = (cpu, super::latency::thread_cpu()) {
                st.dataplane_cpu.observe(b.saturating_sub(a));
            }
            let writes = dp.take_writes();
            if !writes.is_empty() {
                let mut all = st
                    .dataplane_writes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                for (k, n) in writes {
                    *all.entry(k).or_default() += n;
                }
            }
            dp
        })
        .await
        {
            Ok(dp) => dp,
            // A pass that panicked: the data plane stops, as it would have before.
            Err(_) => return,
        };
        let took = started.elapsed();
        state.dataplane_pass.observe(took);
        // Rest as long as the pass took (at least 10 ms), but at most `DATAPLANE_REST_MAX`.
        tokio::time::sleep(took.clamp(Duration::from_millis(10), DATAPLANE_REST_MAX)).await;
        tokio::select! {
            _ = state.kick.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(40)) => {}
        }
    }
}

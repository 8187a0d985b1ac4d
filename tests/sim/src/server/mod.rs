//! The HTTP server: routing, `/version`, health, discovery, the verbs on built-in and CRD-served
//! resources (via `handlers`), watch streams, subresources, background controllers, request stats,
//! and the `Sim` handle tests use to start and stop a simulator on a loopback port.

pub mod aggregation;
mod binding;
pub mod builtin_validation;
pub mod certificates;
pub mod cluster;
pub mod controllers;
pub mod deps;
pub mod discovery;
pub mod ephemeral;
pub mod errors;
pub mod freshness;
pub mod handlers;
pub mod http;
pub mod inject;
pub mod latency;
pub mod logs;
pub mod openapi;
pub mod openapi_pb;
pub mod protobuf;
#[cfg(test)]
mod rbac_index_tests;
mod rbac_writes;
pub mod registry;
pub mod reviews;
pub mod stats;
pub mod tls;
pub mod watch;
pub mod wire;

use crate::store::Store;
use bytes::Bytes;
use errors::ApiError;
use handlers::{DeleteOpts, PatchType, WriteOpts};
use http::{Body, Query, ResourcePath, Route, error_response, json_response, text_response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use registry::{Registry, ResourceInfo};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Node spec for the data plane (`gpu-a100=2x8,cpu=2`), see `dataplane::parse_nodes`.
    pub nodes: Option<String>,
    /// Authenticate bearer tokens and authorize with RBAC.
    pub authorize: bool,
    /// Fault injection spec, see `faults`.
    pub faults: Option<String>,
    /// Port on 127.0.0.1 (0 = any free port).
    pub port: u16,
    /// Interval of BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
    /// Number of events always kept for watch resume (and snapshot lists).
    pub history: usize,
    /// Beyond `history`, events younger than this are kept too, up to `history_max` in all
    /// (`Duration::ZERO`: exactly `history` events). See `store::HistoryLimits`.
    pub history_age: Duration,
    /// Most events kept whatever their age.
    pub history_max: usize,
    /// Run the data plane loop (scheduler, controllers of built-in workloads).
    pub dataplane: bool,
    /// How long after a namespace's DELETE its contents start being removed.
    pub namespace_cleanup_delay: Duration,
    /// Serve plain HTTP instead of HTTPS. kubectl and Helm (client-go) send no bearer token to a
    /// plain-HTTP server (kube-rs does), so with `authorize` only kube-rs clients get in.
    pub insecure_http: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: None,
            authorize: false,
            faults: None,
            port: 0,
            bookmark_interval: Duration::from_secs(5),
            history: crate::store::DEFAULT_HISTORY,
            history_age: crate::store::DEFAULT_HISTORY_AGE,
            history_max: crate::store::DEFAULT_HISTORY_MAX,
            dataplane: true,
            namespace_cleanup_delay: Duration::from_millis(500),
            insecure_http: false,
        }
    }
}

/// Errors starting the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("failed to bind 127.0.0.1:{port}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse the {what} setting: {message}")]
    Config { what: &'static str, message: String },
    #[error("failed to set up HTTPS")]
    Tls(#[from] tls::TlsError),
}

/// Everything a request handler needs.
pub struct SimState {
    pub store: Arc<Store>,
    pub registry: RwLock<Registry>,
    pub stats: stats::Stats,
    /// How late the runtime wakes a sleeping task (`latency::probe_runtime`).
    pub runtime_lag: latency::Latency,
    /// Wall time of each data plane pass, and its time on a CPU.
    pub dataplane_pass: latency::Latency,
    pub dataplane_cpu: latency::Latency,
    /// The data plane's writes since the stats were reset, by `"<resource> <verb>"`.
    pub dataplane_writes: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    pub config: SimConfig,
    pub addr: RwLock<Option<SocketAddr>>,
    /// Signalled on writes so the data plane reacts before its next tick.
    pub kick: tokio::sync::Notify,
    /// Service cluster IP and node port allocation.
    pub ip_alloc: std::sync::Mutex<crate::dataplane::IpAllocator>,
    /// Issues and verifies bearer tokens.
    pub tokens: crate::auth::TokenIssuer,
    /// Fault injection, changeable at runtime through `POST /sim/faults`.
    pub faults: crate::faults::Faults,
    /// Terminating namespaces and when their cleanup may start.
    pub ns_pending: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Full passes of the garbage collector over the store (one at startup; see `controllers`).
    pub gc_full_passes: std::sync::atomic::AtomicUsize,
    openapi: openapi::OpenApiCache,
}

impl SimState {
    pub fn new(config: SimConfig) -> Result<Arc<Self>, SimError> {
        let faults = match config.faults.as_deref() {
            Some(spec) => crate::faults::Faults::new(
                crate::faults::FaultConfig::parse(spec).map_err(|e| SimError::Config {
                    what: "faults",
                    message: e.to_string(),
                })?,
            ),
            None => crate::faults::Faults::disabled(),
        };
        let state = Arc::new(SimState {
            store: Arc::new(Store::with_history(crate::store::HistoryLimits {
                min_events: config.history,
                max_age: config.history_age,
                max_events: config.history_max,
            })),
            registry: RwLock::new(Registry::with_builtins()),
            stats: stats::Stats::default(),
            runtime_lag: latency::Latency::default(),
            dataplane_pass: latency::Latency::default(),
            dataplane_cpu: latency::Latency::default(),
            dataplane_writes: Default::default(),
            config,
            addr: RwLock::new(None),
            kick: tokio::sync::Notify::new(),
            ip_alloc: std::sync::Mutex::new(crate::dataplane::IpAllocator::new()),
            tokens: crate::auth::TokenIssuer::new(),
            faults,
            ns_pending: std::sync::Mutex::new(std::collections::HashMap::new()),
            gc_full_passes: std::sync::atomic::AtomicUsize::new(0),
            openapi: openapi::OpenApiCache::new(),
        });
        state.index_rbac();
        state.bootstrap();
        Ok(state)
    }

    pub fn registry_read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn registry_write(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// Pre-created namespaces and default service accounts.
    fn bootstrap(&self) {
        let Some(ns_ri) = self.registry_read().get("", "namespaces") else {
            return;
        };
        let opts = WriteOpts::system("kube-apiserver");
        if let Ok(mut a) = self.ip_alloc.lock() {
            a.reserve("10.96.0.1");
        }
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let body = json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}});
            let _ = self.create_obj(&ns_ri, "v1", None, body, &opts);
        }
        let svc = self.registry_read().get("", "services");
        if let Some(svc) = svc {
            let body = json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}});
            let _ = self.create_obj(&svc, "v1", Some("default"), body, &opts);
        }
        self.bootstrap_rbac();
        self.bootstrap_component_statuses();
        self.sync_apiservices();
        let sa = self.registry_read().get("", "serviceaccounts");
        if let Some(sa) = sa {
            for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                let body = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}});
                let _ = self.create_obj(&sa, "v1", Some(ns), body, &opts);
            }
        }
    }

    /// Builds a Table for objects of a resource. `include_object` is `None|Metadata|Object`;
    /// `table_version` the Table apiVersion asked for.
    pub fn table_for(
        &self,
        ri: &ResourceInfo,
        version: &str,
        objects: &[Value],
        include_object: &str,
        list_meta: Value,
    ) -> Option<Value> {
        if include_object == PARTIAL {
            let list = crate::schema::partial_object_metadata_list(objects, list_meta);
            if objects.len() == 1 && list_meta_is_single(&list) {
                return list.get("items").and_then(|i| i.get(0)).cloned();
            }
            return Some(list);
        }
        let (include, table_version) = include_object
            .split_once('|')
            .unwrap_or((include_object, "meta.k8s.io/v1"));
        let crd_version = ri.version(version).and_then(|v| v.crd_version.as_ref());
        Some(deps::to_table(
            &ri.plural,
            crd_version,
            objects,
            include,
            list_meta,
            table_version,
        ))
    }
}

/// The `table` mode value asking for `meta.k8s.io/v1` PartialObjectMetadata instead of a Table.
pub const PARTIAL: &str = "PartialObjectMetadata";

/// Single-object PartialObjectMetadata requests pass an empty marker list meta.
fn list_meta_is_single(list: &Value) -> bool {
    list.get("metadata").and_then(|m| m.get("single")).is_some()
}

const VERSION_INFO: &str = r#"{"major":"1","minor":"33","emulationMajor":"1","emulationMinor":"33","minCompatibilityMajor":"1","minCompatibilityMinor":"32","gitVersion":"v1.33.1","gitCommit":"8adc0f041b8e7ad1d30e29cc59c6ae7a15e19828","gitTreeState":"clean","buildDate":"2025-05-15T08:19:08Z","goVersion":"go1.24.2","compiler":"gc","platform":"linux/amd64"}"#;

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> &'a str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// A request reduced to what routing needs.
pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: Query,
    pub user_agent: String,
    pub accept: String,
    pub content_type: String,
    pub authorization: String,
    /// `Impersonate-*` headers (`kubectl --as`).
    pub impersonation: crate::auth::impersonation::Impersonation,
    pub body: Bytes,
    /// The authenticated user, set once authentication passed (admission sees it).
    pub user: Option<crate::auth::UserInfo>,
    /// When hyper handed the request over (before its body was read): its latency counts from here.
    pub received: std::time::Instant,
}

impl WriteOpts {
    /// Write options from a request's query, user agent and user.
    fn for_request(r: &Req) -> Result<Self, ApiError> {
        let mut o = Self::from_query(&r.query, &r.user_agent)?;
        o.user = r.user.clone();
        Ok(o)
    }
}

impl DeleteOpts {
    /// Delete options from a request's query, body and user.
    fn for_request(r: &Req) -> Result<Self, ApiError> {
        let mut o = Self::parse(&r.query, &r.body)?;
        o.user = r.user.clone();
        Ok(o)
    }
}

/// Serves one HTTP request: reads the body, decodes protobuf bodies to JSON, routes it.
async fn serve_one(
    state: Arc<SimState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, inject::Disconnected> {
    let received = std::time::Instant::now();
    let authorization = header(&req, "authorization").to_string();
    let r = Req {
        method: req.method().clone(),
        path: req.uri().path().to_string(),
        query: Query::parse(req.uri().query()),
        user_agent: header(&req, "user-agent").to_string(),
        accept: header(&req, "accept").to_string(),
        content_type: header(&req, "content-type").to_string(),
        authorization,
        impersonation: crate::auth::impersonation::Impersonation::from_headers(
            req.headers()
                .iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))),
        ),
        body: Bytes::new(),
        user: None,
        received,
    };
    let body = match req.into_body().collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            return Ok(error_response(&ApiError::bad_request(format!(
                "failed to read body: {e}"
            ))));
        }
    };
    // The apiserver reads at most MaxRequestBodyBytes of a request body (`limitedReadBody`).
    if body.len() > builtin_validation::MAX_REQUEST_BODY {
        return Ok(error_response(
            &builtin_validation::request_entity_too_large(&format!(
                "limit is {}",
                builtin_validation::MAX_REQUEST_BODY
            )),
        ));
    }
    let (body, content_type) = if protobuf::is_protobuf(&r.content_type) {
        match protobuf::decode(&body) {
            Ok(v) => (Bytes::from(v.to_string()), "application/json".to_string()),
            Err(e) => {
                return Ok(error_response(&ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml ({e})"
                    ),
                )));
            }
        }
    } else {
        (body, r.content_type.clone())
    };
    let r = Req {
        body,
        content_type,
        ..r
    };
    inject::finish(state.route(r).await).await
}

fn with_warnings(mut resp: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let v = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(h) = hyper::header::HeaderValue::from_str(&v) {
            resp.headers_mut().append("warning", h);
        }
    }
    resp
}

fn parse_body(body: &[u8], yaml: bool) -> Result<Value, ApiError> {
    if yaml {
        crate::patch::parse_apply_body(body).map_err(|e| ApiError::bad_request(e.message()))
    } else {
        serde_json::from_slice::<Value>(body).map_err(|e| {
            ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))
        })
    }
}

impl SimState {
    /// Routes one request, and adds the time from its receipt to its response to the latency of
    /// the stats row it was counted in.
    pub async fn route(self: &Arc<Self>, r: Req) -> Response<Body> {
        let received = r.received;
        let counted = std::sync::OnceLock::new();
        let resp = self.route_counted(r, &counted).await;
        if let Some(latency) = counted.get() {
            latency.observe(received.elapsed());
        }
        resp
    }

    async fn route_counted(
        self: &Arc<Self>,
        r: Req,
        counted: &std::sync::OnceLock<Arc<latency::Latency>>,
    ) -> Response<Body> {
        let route = http::parse_path(&r.path);
        // Non-resource requests (discovery, openapi, health) are counted by path.
        let record_path = |user: &str| {
            if !matches!(route, Route::Resource(_)) {
                let verb = r.method.as_str().to_ascii_lowercase();
                let _ = counted.set(self.stats.record(&stats::RequestKey {
                    verb: &verb,
                    subresource: &r.path,
                    user,
                    user_agent: &r.user_agent,
                    ..Default::default()
                }));
            }
        };
        if matches!(route, Route::Version | Route::Health(_)) {
            record_path("");
            return self.route_public(route, r);
        }
        let user = match self
            .authenticate(&r.authorization)
            .and_then(|u| self.impersonate(u, &r.impersonation))
        {
            Ok(u) => u,
            Err(e) => {
                record_path("");
                return error_response(&e);
            }
        };
        record_path(&user.username);
        if let Route::Resource(p) = route {
            if let Some(l) = self.faults.latency() {
                tokio::time::sleep(l).await;
            }
            let r = Req {
                user: Some(user.clone()),
                ..r
            };
            // A get or list at a resourceVersion the store has not reached waits for it
            // (freshness.rs), once the request is known to be authorized.
            let rv = (r.method == Method::GET
                && !p.legacy_watch
                && !r.query.flag("watch")
                && r.query.get("continue").is_none())
            .then(|| r.query.get("resourceVersion")?.parse::<u64>().ok())
            .flatten();
            if let Some(rv) = rv
                && rv > self.store.current_rv()
            {
                let verb = if p.name.is_some() { "get" } else { "list" };
                let attrs = crate::auth::Attributes::resource(
                    verb,
                    &p.group,
                    &p.resource,
                    p.subresource.as_deref(),
                    ns_of(&p),
                    p.name.as_deref(),
                );
                if self.authorize(&user, &attrs).is_ok()
                    && let Err(e) = self.wait_until_fresh(rv).await
                {
                    return error_response(&e);
                }
            }
            // A list or deletecollection reads (and decodes) a whole collection: 10,000 pods
            // took seconds on the loaded 2-core machine. It runs with `block_in_place`, so the
            // runtime hands this worker's other tasks (a Lease renewal on another connection) to
            // another thread instead of leaving them behind it, as the apiserver serves every
            // request on its own goroutine. (Not on a current-thread runtime: there it panics.)
            let collection = p.name.is_none()
                && !p.legacy_watch
                && !r.query.flag("watch")
                && (r.method == Method::GET || r.method == Method::DELETE);
            if collection
                && tokio::runtime::Handle::try_current()
                    .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
            {
                return tokio::task::block_in_place(|| self.route_resource(p, r, &user, counted));
            }
            return self.route_resource(p, r, &user, counted);
        }
        let attrs = crate::auth::Attributes::non_resource("get", &r.path);
        if let Err(e) = self.authorize(&user, &attrs) {
            return error_response(&e);
        }
        self.route_public(route, r)
    }

    fn route_public(self: &Arc<Self>, route: Route, r: Req) -> Response<Body> {
        match route {
            Route::Version => http::json_bytes(
                200,
                Bytes::from_static(VERSION_INFO.as_bytes()),
                "application/json",
            ),
            Route::Health(_) => text_response(200, "ok"),
            Route::ApiVersions => {
                let reg = self.registry_read();
                if discovery::wants_aggregated(&r.accept) {
                    let v = discovery::aggregated(&reg, true);
                    return http::json_bytes(
                        200,
                        Bytes::from(v.to_string()),
                        discovery::AGGREGATED_CT,
                    );
                }
                let addr = self
                    .addr
                    .read()
                    .ok()
                    .and_then(|a| *a)
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                json_response(200, &discovery::api_versions(&addr))
            }
            Route::ApiGroups => {
                let reg = self.registry_read();
                if discovery::wants_aggregated(&r.accept) {
                    let v = discovery::aggregated(&reg, false);
                    return http::json_bytes(
                        200,
                        Bytes::from(v.to_string()),
                        discovery::AGGREGATED_CT,
                    );
                }
                json_response(200, &discovery::api_group_list(&reg))
            }
            Route::Group(g) => match discovery::api_group(&self.registry_read(), &g) {
                Some(v) => json_response(200, &v),
                None => error_response(&ApiError::not_found_path()),
            },
            Route::GroupVersion(g, v) => {
                match discovery::resource_list(&self.registry_read(), &g, &v) {
                    Some(v) => json_response(200, &v),
                    None => error_response(&ApiError::not_found_path()),
                }
            }
            Route::OpenApi(path) => {
                let (builtins, crds) = openapi::inputs_from_registry(&self.registry_read());
                let accept = (!r.accept.is_empty()).then_some(r.accept.as_str());
                let q = r
                    .query
                    .get("hash")
                    .map(|h| format!("hash={h}"))
                    .unwrap_or_default();
                match self.openapi.respond(&builtins, &crds, &path, &q, accept) {
                    Some(o) => {
                        let mut resp = http::json_bytes(o.status, o.body, o.content_type);
                        for (k, v) in o.headers {
                            if let Ok(h) = hyper::header::HeaderValue::from_str(&v) {
                                resp.headers_mut().insert(k, h);
                            }
                        }
                        resp
                    }
                    None => error_response(&ApiError::not_found_path()),
                }
            }
            Route::SimStats => {
                let mut v = self
                    .stats
                    .to_json_filtered(&stats::StatsFilter::from_query(|k| {
                        r.query.get(k).map(str::to_string)
                    }));
                v["storeLock"] = self.store.lock_stats().to_json();
                v["runtimeLag"] = self.runtime_lag.snapshot().to_json();
                v["dataplanePass"] = self.dataplane_pass.snapshot().to_json();
                v["dataplanePassCpu"] = self.dataplane_cpu.snapshot().to_json();
                v["dataplaneWrites"] = json!(
                    *self
                        .dataplane_writes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                );
                json_response(200, &v)
            }
            Route::SimStatsReset => {
                self.stats.reset();
                self.store.lock_stats().reset();
                self.runtime_lag.reset();
                self.dataplane_pass.reset();
                self.dataplane_cpu.reset();
                self.dataplane_writes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
                json_response(200, &json!({"reset": true}))
            }
            Route::SimFaults => self.sim_faults(&r),
            Route::SimFaultsReset => self.sim_faults_reset(),
            Route::NotFound => error_response(&ApiError::not_found_path()),
            Route::Resource(_) => error_response(&ApiError::not_found_path()),
        }
    }

    fn route_resource(
        self: &Arc<Self>,
        p: ResourcePath,
        r: Req,
        user: &crate::auth::UserInfo,
        counted: &std::sync::OnceLock<Arc<latency::Latency>>,
    ) -> Response<Body> {
        let Some(ri) = self
            .registry_read()
            .lookup(&p.group, &p.version, &p.resource)
        else {
            return error_response(&ApiError::not_found_path());
        };
        if p.namespace.is_some() && !ri.namespaced {
            return error_response(&ApiError::not_found_path());
        }
        let watch = p.legacy_watch || r.query.flag("watch");
        let sub = p.subresource.as_deref();
        let verb = match (&r.method, p.name.is_some()) {
            (&Method::GET, true) if p.legacy_watch => "watch",
            (&Method::GET, true) => "get",
            (&Method::GET, false) if watch => "watch",
            (&Method::GET, false) => "list",
            (&Method::POST, _) => "create",
            (&Method::PUT, true) => "update",
            (&Method::PATCH, true) => "patch",
            (&Method::DELETE, true) => "delete",
            (&Method::DELETE, false) => "deletecollection",
            _ => return error_response(&ApiError::method_not_allowed()),
        };
        let _ = counted.set(self.stats.record(&stats::RequestKey {
            verb,
            group: &p.group,
            resource: &p.resource,
            subresource: sub.unwrap_or(""),
            user: &user.username,
            user_agent: &r.user_agent,
        }));
        let attrs = crate::auth::Attributes::resource(
            verb,
            &p.group,
            &p.resource,
            sub,
            ns_of(&p),
            p.name.as_deref(),
        );
        if let Err(e) = self.authorize(user, &attrs) {
            return error_response(&e);
        }
        let fault = self.decide_fault(&p, verb, &r, &user.username);
        if let Some(a) = fault
            && (!a.runs_verb() || verb == "watch")
        {
            return self.fault_response(a, &p, &r);
        }
        // Verbs a resource does not serve (the create-only reviews) are not routed.
        if sub.is_none() && !ri.verbs.contains(&verb) {
            return error_response(&ApiError::method_not_allowed());
        }
        if verb == "create"
            && sub.is_none()
            && let Some(answer) = self.review(&ri, p.namespace.as_deref(), user, &r.body)
        {
            return match answer {
                Ok(v) => json_response(201, &v),
                Err(e) => error_response(&e),
            };
        }
        let v = p.version.as_str();
        let ns = p.namespace.as_deref();
        // Metadata-only responses (kube-rs `metadata_watcher`, client-go metadata informers) are
        // passed to the watch as the pseudo Table mode `PartialObjectMetadata`.
        let partial = r.accept.split(',').next().is_some_and(|first| {
            first.split(';').any(|p| {
                matches!(
                    p.trim(),
                    "as=PartialObjectMetadata" | "as=PartialObjectMetadataList"
                )
            })
        });
        let table = if partial {
            Some(PARTIAL.to_string())
        } else {
            crate::schema::table_version_from_accept(&r.accept).map(|tv| {
                format!(
                    "{}|{tv}",
                    r.query.get("includeObject").unwrap_or("Metadata")
                )
            })
        };
        let result: Result<Response<Body>, ApiError> = (|| {
            if sub == Some("log") && verb == "get" && ri.extra_subs.contains(&"log") {
                let name = p.name.as_deref().unwrap_or("");
                return self.pod_log(&ri, v, ns, name, r.query.flag("follow"));
            }
            if let Some(s) = sub {
                return self.route_subresource(
                    &ri,
                    v,
                    ns,
                    p.name.as_deref().unwrap_or(""),
                    s,
                    verb,
                    &r,
                    table.as_deref(),
                );
            }
            match verb {
                "get" => {
                    let name = p.name.as_deref().unwrap_or("");
                    let o = self.get_obj(&ri, v, ns, name)?;
                    if let Some(inc) = &table
                        && let Some(t) = self.table_for(
                            &ri,
                            v,
                            std::slice::from_ref(&o),
                            inc,
                            if inc == PARTIAL {
                                json!({"single": true})
                            } else {
                                json!({"resourceVersion": o["metadata"]["resourceVersion"]})
                            },
                        )
                    {
                        return Ok(json_response(200, &t));
                    }
                    Ok(json_response(200, &o))
                }
                "list" => {
                    let (mut list, items) = self.list_objs(&ri, v, ns, &r.query)?;
                    if let Some(inc) = &table
                        && let Some(t) =
                            self.table_for(&ri, v, &items, inc, list["metadata"].clone())
                    {
                        return Ok(json_response(200, &t));
                    }
                    list["items"] = Value::Array(items);
                    Ok(json_response(200, &list))
                }
                "watch" => {
                    let mut q = r.query.clone();
                    if let Some(n) = &p.name {
                        let fs = match q.get("fieldSelector") {
                            Some(f) => format!("{f},metadata.name={n}"),
                            None => format!("metadata.name={n}"),
                        };
                        q.0.insert("fieldSelector".into(), fs);
                    }
                    let target = crate::faults::WatchTarget::from_info(&self.fault_info(
                        &p,
                        verb,
                        &r,
                        &user.username,
                        "",
                    ));
                    Ok(watch::serve_watch(
                        self.clone(),
                        ri.clone(),
                        v,
                        ns,
                        &q,
                        table.clone(),
                        target,
                    ))
                }
                "create" => {
                    let opts = WriteOpts::for_request(&r)?;
                    let body = parse_body(&r.body, false)?;
                    let out = self.create_obj(&ri, v, ns, body, &opts)?;
                    Ok(with_warnings(
                        self.object_response(&ri, v, table.as_deref(), out.code, out.object),
                        &out.warnings,
                    ))
                }
                "update" => {
                    let opts = WriteOpts::for_request(&r)?;
                    let body = parse_body(&r.body, false)?;
                    let out = self.update_obj(
                        &ri,
                        v,
                        ns,
                        p.name.as_deref().unwrap_or(""),
                        body,
                        None,
                        &opts,
                    )?;
                    Ok(with_warnings(
                        self.object_response(&ri, v, table.as_deref(), out.code, out.object),
                        &out.warnings,
                    ))
                }
                "patch" => {
                    let out =
                        self.patch_request(&ri, v, ns, p.name.as_deref().unwrap_or(""), None, &r)?;
                    Ok(with_warnings(
                        self.object_response(&ri, v, table.as_deref(), out.code, out.object),
                        &out.warnings,
                    ))
                }
                "delete" => {
                    let opts = DeleteOpts::for_request(&r)?;
                    let (code, o, removed) = self.delete_obj_outcome(
                        &ri,
                        v,
                        ns,
                        p.name.as_deref().unwrap_or(""),
                        &opts,
                    )?;
                    // An object removed at once is answered with a Status, except by the
                    // registries that return the deleted object (wire.rs).
                    if removed && !wire::returns_deleted_object(&ri.group, &ri.plural) {
                        return Ok(json_response(
                            code,
                            &wire::delete_status(&ri.group, &ri.plural, &o),
                        ));
                    }
                    Ok(self.object_response(&ri, v, table.as_deref(), code, o))
                }
                "deletecollection" => {
                    let opts = DeleteOpts::for_request(&r)?;
                    let l = self.delete_collection(&ri, v, ns, &r.query, &opts)?;
                    Ok(json_response(200, &l))
                }
                _ => Err(ApiError::method_not_allowed()),
            }
        })();
        let mut resp = result.unwrap_or_else(|e| error_response(&e));
        if ri.group.is_empty() && ri.plural == "componentstatuses" {
            resp = with_warnings(resp, &[aggregation::COMPONENT_STATUS_WARNING.to_string()]);
        }
        match fault {
            Some(a) => self.fault_after_verb(a, &p, resp),
            None => resp,
        }
    }

    /// A single object answered by a verb, as PartialObjectMetadata or a Table when the request's
    /// `Accept` asked for one (the apiserver transforms every verb's response object the same
    /// way, `handlers/response.go`).
    fn object_response(
        &self,
        ri: &ResourceInfo,
        v: &str,
        table: Option<&str>,
        code: u16,
        o: impl std::borrow::Borrow<Value>,
    ) -> Response<Body> {
        let o: &Value = o.borrow();
        if let Some(inc) = table {
            let meta = if inc == PARTIAL {
                json!({"single": true})
            } else {
                json!({"resourceVersion": o["metadata"]["resourceVersion"]})
            };
            if let Some(t) = self.table_for(ri, v, std::slice::from_ref(o), inc, meta) {
                return json_response(code, &t);
            }
        }
        json_response(code, o)
    }

    fn patch_request(
        &self,
        ri: &Arc<ResourceInfo>,
        v: &str,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        r: &Req,
    ) -> Result<handlers::WriteOutcome, ApiError> {
        let ptype = PatchType::from_content_type(&r.content_type)
            .ok_or_else(ApiError::unsupported_patch)?;
        let mut opts = WriteOpts::for_request(r)?;
        if ptype == PatchType::Apply && r.query.get("fieldManager").is_none() {
            return Err(ApiError::bad_request(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        if ptype != PatchType::Apply && r.query.0.contains_key("force") {
            return Err(ApiError::bad_request(
                "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch",
            ));
        }
        if ptype != PatchType::Apply {
            opts.force = false;
        }
        let body = parse_body(&r.body, ptype == PatchType::Apply)?;
        if sub == Some("scale") {
            return self.update_scale(ri, v, ns, name, Some(ptype), &body, &opts);
        }
        self.patch_obj(ri, v, ns, name, ptype, &body, sub, &opts)
    }

    #[allow(clippy::too_many_arguments)]
    fn route_subresource(
        &self,
        ri: &Arc<ResourceInfo>,
        v: &str,
        ns: Option<&str>,
        name: &str,
        sub: &str,
        verb: &str,
        r: &Req,
        table: Option<&str>,
    ) -> Result<Response<Body>, ApiError> {
        match (sub, verb) {
            ("status", "get") if ri.status_sub(v) => {
                Ok(self.object_response(ri, v, table, 200, self.get_obj(ri, v, ns, name)?))
            }
            ("status", "update") if ri.status_sub(v) => {
                let opts = WriteOpts::for_request(r)?;
                let out = self.update_obj(
                    ri,
                    v,
                    ns,
                    name,
                    parse_body(&r.body, false)?,
                    Some("status"),
                    &opts,
                )?;
                Ok(with_warnings(
                    self.object_response(ri, v, table, out.code, out.object),
                    &out.warnings,
                ))
            }
            ("status", "patch") if ri.status_sub(v) => {
                let out = self.patch_request(ri, v, ns, name, Some("status"), r)?;
                Ok(with_warnings(
                    self.object_response(ri, v, table, out.code, out.object),
                    &out.warnings,
                ))
            }
            ("scale", "get") if ri.scale(v).is_some() => {
                Ok(json_response(200, &self.get_scale(ri, v, ns, name)?))
            }
            ("scale", "update") if ri.scale(v).is_some() => {
                let opts = WriteOpts::for_request(r)?;
                let out =
                    self.update_scale(ri, v, ns, name, None, &parse_body(&r.body, false)?, &opts)?;
                Ok(json_response(out.code, &out.object))
            }
            ("scale", "patch") if ri.scale(v).is_some() => {
                let out = self.patch_request(ri, v, ns, name, Some("scale"), r)?;
                Ok(json_response(out.code, &out.object))
            }
            ("finalize", "update") if ri.extra_subs.contains(&"finalize") => {
                let opts = WriteOpts::for_request(r)?;
                let out = self.update_obj(
                    ri,
                    v,
                    ns,
                    name,
                    parse_body(&r.body, false)?,
                    Some("finalize"),
                    &opts,
                )?;
                Ok(json_response(out.code, &out.object))
            }
            ("ephemeralcontainers", "get") if ri.extra_subs.contains(&"ephemeralcontainers") => {
                Ok(self.object_response(ri, v, table, 200, self.get_obj(ri, v, ns, name)?))
            }
            ("ephemeralcontainers", "update") if ri.extra_subs.contains(&"ephemeralcontainers") => {
                let opts = WriteOpts::for_request(r)?;
                let out = self.update_obj(
                    ri,
                    v,
                    ns,
                    name,
                    parse_body(&r.body, false)?,
                    Some("ephemeralcontainers"),
                    &opts,
                )?;
                Ok(self.object_response(ri, v, table, out.code, out.object))
            }
            ("ephemeralcontainers", "patch") if ri.extra_subs.contains(&"ephemeralcontainers") => {
                let out = self.patch_request(ri, v, ns, name, Some("ephemeralcontainers"), r)?;
                Ok(self.object_response(ri, v, table, out.code, out.object))
            }
            ("approval", "update") if ri.extra_subs.contains(&"approval") => {
                let opts = WriteOpts::for_request(r)?;
                let out = self.csr_approval(ri, v, name, parse_body(&r.body, false)?, &opts)?;
                Ok(json_response(200, &out))
            }
            ("approval", "get") if ri.extra_subs.contains(&"approval") => {
                Ok(json_response(200, &self.get_obj(ri, v, ns, name)?))
            }
            ("eviction", "create") if ri.extra_subs.contains(&"eviction") => {
                let opts = DeleteOpts::default();
                self.delete_obj(ri, v, ns, name, &opts)?;
                Ok(json_response(
                    201,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                ))
            }
            ("binding", "create") if ri.extra_subs.contains(&"binding") => {
                let body = parse_body(&r.body, false)?;
                let opts = WriteOpts::for_request(r)?;
                self.binding_request(ri, v, ns.unwrap_or(""), name, &body, &opts)?;
                Ok(json_response(
                    201,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                ))
            }
            ("token", "create") if ri.extra_subs.contains(&"token") => {
                self.token_request(ri, v, ns, name, r)
            }
            _ => Err(ApiError::not_found_path()),
        }
    }

    fn token_request(
        &self,
        ri: &Arc<ResourceInfo>,
        v: &str,
        ns: Option<&str>,
        name: &str,
        r: &Req,
    ) -> Result<Response<Body>, ApiError> {
        let sa = self.get_obj(ri, v, ns, name)?;
        let body = if r.body.is_empty() {
            json!({})
        } else {
            parse_body(&r.body, false)?
        };
        let out = self
            .tokens
            .token_request(
                ns.unwrap_or(""),
                name,
                crate::store::uid_of(&sa),
                &body,
                chrono::Utc::now(),
            )
            .map_err(|e| ApiError::new(422, "Invalid", e.invalid_message(name)))?;
        Ok(json_response(201, &out))
    }
}

fn ns_of(p: &ResourcePath) -> Option<&str> {
    p.namespace.as_deref().or(if p.resource == "namespaces" {
        p.name.as_deref()
    } else {
        None
    })
}

/// A running simulator.
pub struct Sim {
    addr: SocketAddr,
    state: Arc<SimState>,
    tls: Option<tls::TlsMaterial>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sim {
    /// Starts a simulator on 127.0.0.1 (port from the config, 0 = any).
    pub async fn start(config: SimConfig) -> Result<Sim, SimError> {
        let port = config.port;
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|source| SimError::Bind { port, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SimError::Bind { port, source })?;
        let nodes = match config.nodes.as_deref() {
            Some(spec) => {
                crate::dataplane::parse_nodes(spec).map_err(|message| SimError::Config {
                    what: "nodes",
                    message,
                })?
            }
            None => Vec::new(),
        };
        let dataplane = config.dataplane;
        let tls = if config.insecure_http {
            None
        } else {
            Some(tls::TlsMaterial::generate()?)
        };
        let state = SimState::new(config)?;
        if let Ok(mut a) = state.addr.write() {
            *a = Some(addr);
        }
        let mut tasks = vec![
            tokio::spawn(controllers::run(state.clone())),
            tokio::spawn(latency::probe_runtime(state.clone())),
            tokio::spawn(accept_loop(
                listener,
                state.clone(),
                tls.as_ref().map(tls::TlsMaterial::acceptor),
            )),
        ];
        if dataplane {
            tasks.push(tokio::spawn(cluster::run_dataplane(state.clone(), nodes)));
        }
        Ok(Sim {
            addr,
            state,
            tls,
            tasks,
        })
    }

    /// `https://127.0.0.1:<port>` (`http://` with `insecure_http`).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The CA certificate (PEM) the serving certificate is signed by; `None` with `insecure_http`.
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(tls::TlsMaterial::ca_pem)
    }

    /// The CA certificate (DER), e.g. for kube-rs `Config::root_cert`; `None` with `insecure_http`.
    pub fn ca_der(&self) -> Option<&[u8]> {
        self.tls.as_ref().map(tls::TlsMaterial::ca_der)
    }

    /// The TLS material (CA, serving configuration); `None` with `insecure_http`.
    pub fn tls(&self) -> Option<&tls::TlsMaterial> {
        self.tls.as_ref()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &Arc<SimState> {
        &self.state
    }

    /// A kubeconfig kubectl, Helm and kube-rs use as is: the server URL, the CA as
    /// `certificate-authority-data`, and the static admin token `sim-admin` (member of
    /// `system:masters`; without `authorize` every request is the admin anyway, but kubectl prompts
    /// for a password when an HTTPS kubeconfig has no credentials). Other identities use
    /// `sim-sa:<namespace>:<serviceaccount>` or a TokenRequest token as bearer token
    /// (`kubectl --token ...`, or [`kubeconfig_yaml`] with [`Sim::ca_pem`]).
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig_yaml(&self.url(), self.ca_pem(), Some("sim-admin"))
    }

    pub fn write_kubeconfig(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// Stops serving and all background tasks.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Kubeconfig text for a server URL, with the CA certificate (PEM) clients verify the server with,
/// and optionally a bearer token for the user.
pub fn kubeconfig_yaml(url: &str, ca_pem: Option<&str>, token: Option<&str>) -> String {
    use base64::Engine as _;
    let user = match token {
        Some(t) => format!("  user:\n    token: {t}\n"),
        None => "  user: {}\n".to_string(),
    };
    let ca = ca_pem
        .map(|pem| {
            format!(
                "    certificate-authority-data: {}\n",
                base64::engine::general_purpose::STANDARD.encode(pem)
            )
        })
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-sim\n  cluster:\n{ca}    server: {url}\ncontexts:\n- name: kube-sim\n  context:\n    cluster: kube-sim\n    user: kube-sim-admin\n    namespace: default\ncurrent-context: kube-sim\npreferences: {{}}\nusers:\n- name: kube-sim-admin\n{user}"
    )
}

/// Accepts connections; with an acceptor, each is a TLS connection (handshake in its own task).
async fn accept_loop(
    listener: TcpListener,
    state: Arc<SimState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            acc = listener.accept() => {
                let Ok((stream, _)) = acc else { continue };
                let _ = stream.set_nodelay(true);
                let st = state.clone();
                let tls = tls.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| serve_one(st.clone(), req));
                    let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                    match tls {
                        Some(acceptor) => {
                            // A failed handshake (client distrusts the CA, plain HTTP) just closes.
                            let Ok(stream) = acceptor.accept(stream).await else { return };
                            let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
                        }
                        None => {
                            let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
                        }
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

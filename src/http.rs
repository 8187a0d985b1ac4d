//! The operator's HTTP server on one port: `/healthz` (liveness from heartbeats), `/readyz`
//! (readiness once the caches have synced) and `/metrics` (Prometheus text format). Answers come
//! from shared state without I/O, so they take microseconds; the operator serves them from its
//! lifeline thread (`lifeline.rs`), away from reconcile load.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long in-flight requests may take to finish once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("failed to bind the HTTP server to {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read the HTTP server's local address")]
    LocalAddr {
        #[source]
        source: std::io::Error,
    },
}

/// Named readiness conditions (e.g. one per controller cache). Ready when every registered
/// component is ready; a fresh `Readiness` with no components is not ready, so a wiring mistake
/// shows up as "not ready" rather than as a silently ready operator.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    components: Arc<Mutex<BTreeMap<&'static str, bool>>>,
}

impl Readiness {
    /// Readiness waiting for each of `components` (all start not ready).
    pub fn new(components: &[&'static str]) -> Self {
        let readiness = Readiness::default();
        for c in components {
            readiness.set(c, false);
        }
        readiness
    }

    /// Marks `component` ready (`true`) or not ready (`false`), registering it if new.
    pub fn set(&self, component: &'static str, ready: bool) {
        self.components
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(component, ready);
    }

    /// `Ok` when every component is ready, else the names of those that are not.
    pub fn check(&self) -> Result<(), Vec<&'static str>> {
        let components = self
            .components
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if components.is_empty() {
            return Err(vec!["no components registered"]);
        }
        let pending: Vec<&'static str> = components
            .iter()
            .filter(|(_, ready)| !**ready)
            .map(|(name, _)| *name)
            .collect();
        if pending.is_empty() {
            Ok(())
        } else {
            Err(pending)
        }
    }
}

/// Heartbeats of the operator's long-running loops. `/healthz` fails when any registered loop has
/// not beaten within the threshold, so a wedged loop gets the pod restarted.
#[derive(Clone, Debug)]
pub struct Liveness {
    threshold: Duration,
    beats: Arc<Mutex<BTreeMap<&'static str, Instant>>>,
}

/// A loop's handle to report that it is alive. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    name: &'static str,
    beats: Arc<Mutex<BTreeMap<&'static str, Instant>>>,
}

impl Heartbeat {
    /// Records that the loop made progress now.
    pub fn beat(&self) {
        self.beats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(self.name, Instant::now());
    }
}

impl Liveness {
    /// Loops must beat at least every `threshold`.
    pub fn new(threshold: Duration) -> Self {
        Liveness {
            threshold,
            beats: Arc::default(),
        }
    }

    /// Registers a loop (counted as having just beaten) and returns its heartbeat.
    pub fn register(&self, name: &'static str) -> Heartbeat {
        let heartbeat = Heartbeat {
            name,
            beats: Arc::clone(&self.beats),
        };
        heartbeat.beat();
        heartbeat
    }

    /// Spawns a task that beats `heartbeat` every `interval`: proof that the async runtime still
    /// schedules tasks. Loops that can block should beat from their own body instead.
    pub fn spawn_ticker(heartbeat: Heartbeat, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                heartbeat.beat();
            }
        })
    }

    /// `Ok` when every registered loop beat within the threshold (or none is registered yet),
    /// else each stale loop with the age of its last beat.
    pub fn check(&self) -> Result<(), Vec<(&'static str, Duration)>> {
        self.check_at(Instant::now())
    }

    /// How long ago `name` last beat (`None` if it is not registered).
    pub fn age(&self, name: &str) -> Option<Duration> {
        let beats = self.beats.lock().unwrap_or_else(PoisonError::into_inner);
        beats.get(name).map(|at| at.elapsed())
    }

    fn check_at(&self, now: Instant) -> Result<(), Vec<(&'static str, Duration)>> {
        let beats = self.beats.lock().unwrap_or_else(PoisonError::into_inner);
        let stale: Vec<(&'static str, Duration)> = beats
            .iter()
            .map(|(name, at)| (*name, now.saturating_duration_since(*at)))
            .filter(|(_, age)| *age > self.threshold)
            .collect();
        if stale.is_empty() { Ok(()) } else { Err(stale) }
    }
}

/// What the server reports. Cloning shares the underlying state.
#[derive(Clone, Debug)]
pub struct State {
    pub metrics: Metrics,
    pub readiness: Readiness,
    pub liveness: Liveness,
}

/// Binds `addr` and serves until `shutdown` resolves, then lets in-flight requests finish
/// (at most 5 s).
pub async fn serve(
    addr: SocketAddr,
    state: State,
    shutdown: impl Future<Output = ()>,
) -> Result<(), HttpError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })?;
    serve_listener(listener, state, shutdown).await
}

/// Like [`serve`] on an already bound listener (bind port 0 and read `local_addr` first in tests).
pub async fn serve_listener(
    listener: TcpListener,
    state: State,
    shutdown: impl Future<Output = ()>,
) -> Result<(), HttpError> {
    let local = listener
        .local_addr()
        .map_err(|source| HttpError::LocalAddr { source })?;
    tracing::info!(addr = %local, "serving /healthz, /readyz and /metrics");
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %err, "failed to accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let state = state.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let response = route(&state, req.method(), req.uri().path());
            async move { Ok::<_, Infallible>(response) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open after the shutdown grace period");
    }
    Ok(())
}

fn route(state: &State, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
        );
    }
    match path {
        "/healthz" | "/livez" => match state.liveness.check() {
            Ok(()) => text(StatusCode::OK, "ok\n".into()),
            Err(stale) => {
                let lines: Vec<String> = stale
                    .iter()
                    .map(|(name, age)| {
                        format!("{name}: no heartbeat for {:.1}s", age.as_secs_f64())
                    })
                    .collect();
                tracing::warn!(stale = ?lines, "liveness check failing");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("not alive\n{}\n", lines.join("\n")),
                )
            }
        },
        "/readyz" => match state.readiness.check() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(pending) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {}\n", pending.join(", ")),
            ),
        },
        "/metrics" => {
            let mut response = Response::new(Full::new(Bytes::from(state.metrics.encode())));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Reply {
        status: u16,
        headers: String,
        body: String,
    }

    async fn get(addr: SocketAddr, method: &str, path: &str) -> Reply {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.expect("read");
        let (head, body) = raw.split_once("\r\n\r\n").expect("header end");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        Reply {
            status,
            headers: head.to_ascii_lowercase(),
            body: body.to_owned(),
        }
    }

    async fn start(
        state: State,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<Result<(), HttpError>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_listener(listener, state, async move {
            let _ = stopped.await;
        }));
        (addr, stop, task)
    }

    fn state() -> State {
        State {
            metrics: Metrics::new(),
            readiness: Readiness::new(&["agentnode cache", "modelentry cache"]),
            liveness: Liveness::new(Duration::from_secs(30)),
        }
    }

    #[tokio::test]
    async fn readyz_waits_for_every_cache_and_names_the_missing_ones() {
        let state = state();
        let (addr, stop, task) = start(state.clone()).await;
        let reply = get(addr, "GET", "/readyz").await;
        assert_eq!(reply.status, 503);
        assert_eq!(reply.body, "not ready: agentnode cache, modelentry cache\n");
        state.readiness.set("agentnode cache", true);
        let reply = get(addr, "GET", "/readyz").await;
        assert_eq!(reply.status, 503);
        assert_eq!(reply.body, "not ready: modelentry cache\n");
        state.readiness.set("modelentry cache", true);
        assert_eq!(get(addr, "GET", "/readyz").await.status, 200);
        state.readiness.set("modelentry cache", false);
        assert_eq!(get(addr, "GET", "/readyz").await.status, 503);
        let _ = stop.send(());
        task.await.expect("join").expect("serve");
    }

    #[tokio::test]
    async fn healthz_follows_heartbeats() {
        let state = state();
        let (addr, stop, task) = start(state.clone()).await;
        assert_eq!(
            get(addr, "GET", "/healthz").await.status,
            200,
            "nothing registered yet"
        );
        let hb = state.liveness.register("agentnode controller");
        assert_eq!(get(addr, "GET", "/healthz").await.status, 200);
        // Make the beat look old: backdate it past the threshold.
        {
            let mut beats = state.liveness.beats.lock().expect("lock");
            let old = Instant::now()
                .checked_sub(Duration::from_secs(31))
                .expect("monotonic clock far enough from boot");
            beats.insert("agentnode controller", old);
        }
        let reply = get(addr, "GET", "/healthz").await;
        assert_eq!(reply.status, 500);
        assert!(
            reply
                .body
                .contains("agentnode controller: no heartbeat for 3"),
            "{}",
            reply.body
        );
        hb.beat();
        assert_eq!(get(addr, "GET", "/healthz").await.status, 200);
        let _ = stop.send(());
        task.await.expect("join").expect("serve");
    }

    #[test]
    fn liveness_threshold_is_exclusive_and_per_loop() {
        let liveness = Liveness::new(Duration::from_secs(10));
        let _a = liveness.register("a");
        let _b = liveness.register("b");
        let now = Instant::now();
        assert!(liveness.check_at(now).is_ok());
        let stale = liveness
            .check_at(now + Duration::from_secs(11))
            .expect_err("stale");
        assert_eq!(
            stale.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            vec!["a", "b"]
        );
    }

    #[test]
    fn empty_readiness_is_not_ready() {
        assert!(Readiness::default().check().is_err());
        let r = Readiness::new(&["x"]);
        r.set("x", true);
        assert!(r.check().is_ok());
    }

    #[tokio::test]
    async fn metrics_are_served_in_text_format() {
        let state = state();
        state.metrics.set_leader(true);
        state.metrics.reconcile_started("agentnode").success();
        let (addr, stop, task) = start(state).await;
        let reply = get(addr, "GET", "/metrics").await;
        assert_eq!(reply.status, 200);
        assert!(
            reply
                .headers
                .contains("content-type: text/plain; version=0.0.4"),
            "{}",
            reply.headers
        );
        assert!(reply.body.contains("hypersync_leader 1"));
        assert!(
            reply
                .body
                .contains("# TYPE hypersync_reconcile_duration_seconds histogram")
        );
        assert_eq!(get(addr, "GET", "/nope").await.status, 404);
        assert_eq!(get(addr, "POST", "/metrics").await.status, 405);
        assert_eq!(get(addr, "HEAD", "/readyz").await.status, 503);
        let _ = stop.send(());
        task.await.expect("join").expect("serve");
    }

    #[tokio::test]
    async fn shutdown_stops_accepting() {
        let (addr, stop, task) = start(state()).await;
        assert_eq!(get(addr, "GET", "/healthz").await.status, 200);
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(6), task)
            .await
            .expect("server stops within the grace period")
            .expect("join")
            .expect("serve");
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "still accepting after shutdown"
        );
    }

    #[tokio::test]
    async fn bind_error_names_the_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let err = serve(addr, state(), async {})
            .await
            .expect_err("port in use");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}

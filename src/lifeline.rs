//! The lifeline: one OS thread with its own current-thread tokio runtime that serves `/healthz`,
//! `/readyz` and `/metrics` and takes part in leader election with its own kube `Client` (its own
//! connection pool and request buffer), so reconcile work saturating the controllers' runtime or
//! their client cannot delay a Lease renewal or a probe answer. It also publishes how long the
//! controllers' runtime has gone without running its heartbeat task.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use crate::config::LeaderElectionConfig;
use crate::http::{self, HttpError, Liveness};
use crate::leader::{LeaderElector, LeaderHandle};
use crate::metrics::Metrics;

/// How often the lifeline publishes the controllers' runtime stall.
const MONITOR_PERIOD: Duration = Duration::from_secs(1);

/// A stall this long is logged (once per episode): well above scheduling delays under load, well
/// below the liveness threshold.
const STALL_WARNING: Duration = Duration::from_secs(5);

/// How long the lifeline's runtime waits for its blocking tasks (DNS lookups) when it ends.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum LifelineError {
    #[error("failed to start the lifeline thread")]
    Thread(#[source] std::io::Error),
    #[error("failed to build the lifeline's tokio runtime")]
    Runtime(#[source] std::io::Error),
    #[error("failed to hand the HTTP listener to the lifeline's runtime")]
    Listener(#[source] std::io::Error),
    #[error("failed to build the leader election's kube client")]
    Client(#[source] kube::Error),
    #[error("failed to serve HTTP")]
    Http(#[source] HttpError),
    #[error("failed to finish the lifeline: its thread ended without a result")]
    Gone,
}

/// What the lifeline serves and watches.
pub struct Setup {
    /// Bound already (so bind errors and the port are known before the thread starts).
    pub listener: std::net::TcpListener,
    pub state: http::State,
    /// The heartbeat (registered in `state.liveness`) of the controllers' runtime.
    pub heartbeat: &'static str,
    /// Leader election, with the kube config its own client is built from (on the lifeline's
    /// runtime).
    pub election: Option<(kube::Config, LeaderElectionConfig)>,
}

/// The running lifeline. Dropping it without [`Lifeline::finish`] also releases the Lease and
/// stops the HTTP server, without waiting.
#[derive(Debug)]
pub struct Lifeline {
    addr: SocketAddr,
    leader: Option<watch::Receiver<bool>>,
    controllers_stopped: watch::Sender<bool>,
    done: Option<oneshot::Receiver<Result<(), LifelineError>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Lifeline {
    /// Starts the thread and waits until it serves HTTP and (with leader election) has started
    /// electing.
    pub async fn start(setup: Setup) -> Result<Lifeline, LifelineError> {
        let addr = setup
            .listener
            .local_addr()
            .map_err(LifelineError::Listener)?;
        setup
            .listener
            .set_nonblocking(true)
            .map_err(LifelineError::Listener)?;
        let (stopped_tx, stopped_rx) = watch::channel(false);
        let (leader_tx, leader_rx) = watch::channel(false);
        let leader = setup.election.is_some().then_some(leader_rx);
        let (started_tx, started_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("hypersync-lifeline".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = started_tx.send(Err(LifelineError::Runtime(err)));
                        return;
                    }
                };
                let result = runtime.block_on(serve(setup, leader_tx, stopped_rx, started_tx));
                runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
                let _ = done_tx.send(result);
            })
            .map_err(LifelineError::Thread)?;
        match started_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(err),
            Err(_) => return Err(LifelineError::Gone),
        }
        Ok(Lifeline {
            addr,
            leader,
            controllers_stopped: stopped_tx,
            done: Some(done_rx),
            thread: Some(thread),
        })
    }

    /// The address `/healthz`, `/readyz` and `/metrics` are served on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `true` exactly while this replica leads; `None` without leader election.
    pub fn leader(&self) -> Option<watch::Receiver<bool>> {
        self.leader.clone()
    }

    /// Call once the controllers have stopped: releases the Lease (if held), then stops the HTTP
    /// server, and waits for the thread to end.
    pub async fn finish(mut self) -> Result<(), LifelineError> {
        let _ = self.controllers_stopped.send(true);
        let result = match self.done.take() {
            Some(done) => done.await.unwrap_or(Err(LifelineError::Gone)),
            None => Err(LifelineError::Gone),
        };
        if let Some(thread) = self.thread.take() {
            // It has sent its result, so it is ending; join off the async workers anyway.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        result
    }
}

/// Resolves once `rx` is `true` or its sender is gone.
async fn raised(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// The lifeline thread's body: elect (releasing once the controllers have stopped), serve HTTP
/// until the Lease is released, and publish the controllers' runtime stall meanwhile.
async fn serve(
    setup: Setup,
    leader_tx: watch::Sender<bool>,
    stopped: watch::Receiver<bool>,
    started: oneshot::Sender<Result<(), LifelineError>>,
) -> Result<(), LifelineError> {
    let Setup {
        listener,
        state,
        heartbeat,
        election,
    } = setup;
    let prepared = (|| {
        let listener =
            tokio::net::TcpListener::from_std(listener).map_err(LifelineError::Listener)?;
        let elector = match election {
            Some((kube_config, le)) => {
                // Built here, so its request buffer and connections live on this runtime.
                let client = kube::Client::try_from(kube_config).map_err(LifelineError::Client)?;
                Some(
                    LeaderElector::new(
                        client,
                        &le.namespace,
                        &le.lease_name,
                        &le.identity,
                        le.timings,
                    )
                    .with_metrics(state.metrics.clone())
                    .run_publishing(leader_tx, raised(stopped.clone())),
                )
            }
            None => None,
        };
        Ok::<_, LifelineError>((listener, elector))
    })();
    let (listener, elector) = match prepared {
        Ok(prepared) => prepared,
        Err(err) => {
            let _ = started.send(Err(err));
            return Ok(());
        }
    };
    let _ = started.send(Ok(()));

    let monitor = tokio::spawn(monitor(
        state.liveness.clone(),
        state.metrics.clone(),
        heartbeat,
    ));
    let until = served_until(elector, stopped);
    let result = http::serve_listener(listener, state, until).await;
    monitor.abort();
    result.map_err(LifelineError::Http)
}

/// HTTP keeps answering until the Lease has been released (so probes pass while draining), or,
/// without election, until the controllers have stopped.
async fn served_until(elector: Option<LeaderHandle>, stopped: watch::Receiver<bool>) {
    match elector {
        Some(handle) => handle.join().await,
        None => raised(stopped).await,
    }
}

/// Publishes the stall of the controllers' runtime every second, and logs long ones.
async fn monitor(liveness: Liveness, metrics: Metrics, heartbeat: &'static str) {
    let mut tick = tokio::time::interval(MONITOR_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stalled = false;
    loop {
        tick.tick().await;
        let Some(stall) = liveness.age(heartbeat) else {
            continue;
        };
        metrics.set_runtime_stall(stall);
        if stall >= STALL_WARNING && !stalled {
            stalled = true;
            tracing::warn!(
                stall_seconds = stall.as_secs_f64(),
                "the controllers' runtime has not run its heartbeat task; reconciles are stalled"
            );
        } else if stall < STALL_WARNING && stalled {
            stalled = false;
            tracing::info!("the controllers' runtime runs again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Readiness;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn status(addr: SocketAddr, path: &str) -> Option<u16> {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.ok()?;
        raw.split(' ').nth(1)?.parse().ok()
    }

    #[tokio::test]
    async fn serves_from_its_own_thread_until_finished() {
        let liveness = Liveness::new(Duration::from_secs(30));
        let state = http::State {
            metrics: Metrics::new(),
            readiness: Readiness::new(&["caches"]),
            liveness: liveness.clone(),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let lifeline = Lifeline::start(Setup {
            listener,
            state,
            heartbeat: "controllers",
            election: None,
        })
        .await
        .expect("starts");
        assert!(lifeline.leader().is_none(), "no election");
        let addr = lifeline.addr();
        let _heartbeat = liveness.register("controllers");
        // This test's runtime blocks (joining a thread that probes): the lifeline answers anyway,
        // from its own thread.
        let blocked = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(status(addr, "/healthz"))
        });
        assert_eq!(blocked.join().expect("probe thread"), Some(200));
        assert_eq!(status(addr, "/readyz").await, Some(503));
        lifeline.finish().await.expect("finishes");
        assert_eq!(status(addr, "/healthz").await, None, "still serving");
    }
}

//! `hypersync-operator run`: the controllers of every watched namespace on the caller's tokio
//! runtime, the lifeline thread beside them (HTTP probes and metrics, leader election), and the
//! shutdown order: stop the controllers, wait until they have returned, only then release the Lease.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use kube::Client;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

use crate::config::OperatorConfig;
use crate::controller::{Scope, Settings, run_scope};
use crate::http::{self, HttpError, Liveness, Readiness};
use crate::lifeline::{Lifeline, LifelineError, Setup};
use crate::metrics::Metrics;

/// Why the operator stopped other than by a shutdown request.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("failed to build the kube client")]
    Client(#[source] kube::Error),
    #[error("failed to serve HTTP")]
    Http(#[source] HttpError),
    #[error("failed to run the lifeline (HTTP server and leader election)")]
    Lifeline(#[source] LifelineError),
    #[error("lost leadership; stopping so a restart rejoins the election")]
    LostLeadership,
    #[error("failed to take part in leader election: the election ended unexpectedly")]
    ElectionEnded,
}

/// The readiness component that waits for the controllers' caches (or for standing by).
pub const CACHES: &str = "caches";

/// The heartbeat of the controllers' runtime: a task there beats it every [`HEARTBEAT_PERIOD`];
/// `/healthz` fails once it is older than `--liveness-stall-seconds`.
pub const CONTROLLER_RUNTIME: &str = "controller-runtime";

/// How often the controllers' runtime beats its heartbeat.
const HEARTBEAT_PERIOD: Duration = Duration::from_secs(1);

/// What the controllers of one scope are given.
pub struct ScopeRun {
    pub client: Client,
    pub scope: Scope,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    /// Flip to `true` once the caches have synced.
    pub ready: watch::Sender<bool>,
    /// Turns `true` when the controllers should stop; their future returns once they have.
    pub shutdown: watch::Receiver<bool>,
}

/// Runs the controllers of one scope: [`run_scope`] in production (see [`Operator::run`]); tests
/// pass controllers whose shutdown they can observe.
pub type Controllers = Arc<dyn Fn(ScopeRun) -> BoxFuture<'static, ()> + Send + Sync>;

/// The operator's controllers: [`run_scope`].
pub fn controllers() -> Controllers {
    Arc::new(|run: ScopeRun| {
        let ScopeRun {
            client,
            scope,
            settings,
            metrics,
            ready,
            shutdown,
        } = run;
        Box::pin(run_scope(client, scope, settings, metrics, ready, shutdown))
    })
}

/// Run the operator until `shutdown` resolves. The controllers run on the calling runtime; see
/// [`Operator`].
pub async fn run(
    kube_config: kube::Config,
    config: OperatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    Operator::start(kube_config, config)
        .await?
        .run(shutdown)
        .await
}

/// A started operator: the HTTP server is bound and answering and (with leader election) the
/// election runs, both on the lifeline thread; the controllers start in [`Operator::run`].
pub struct Operator {
    client: Client,
    config: OperatorConfig,
    metrics: Metrics,
    readiness: Readiness,
    liveness: Liveness,
    lifeline: Lifeline,
}

/// Aborts a spawned task when dropped, so no task outlives [`Operator::run`] (also when its future
/// is dropped).
struct AbortOnDrop(AbortHandle);

impl AbortOnDrop {
    fn of<T>(task: &JoinHandle<T>) -> Self {
        AbortOnDrop(task.abort_handle())
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Operator {
    /// Binds the HTTP address, builds the controllers' client (call this on the runtime the
    /// controllers will run on) and starts the lifeline, which builds its own client for the Lease.
    pub async fn start(
        kube_config: kube::Config,
        config: OperatorConfig,
    ) -> Result<Self, RunError> {
        let client = Client::try_from(kube_config.clone()).map_err(RunError::Client)?;
        let metrics = Metrics::new();
        let readiness = Readiness::new(&[CACHES]);
        let liveness = Liveness::new(config.liveness_stall);
        let addr = config.http_addr;
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|source| RunError::Http(HttpError::Bind { addr, source }))?;
        let lifeline = Lifeline::start(Setup {
            listener,
            state: http::State {
                metrics: metrics.clone(),
                readiness: readiness.clone(),
                liveness: liveness.clone(),
            },
            heartbeat: CONTROLLER_RUNTIME,
            election: config.leader_election.clone().map(|le| (kube_config, le)),
        })
        .await
        .map_err(RunError::Lifeline)?;
        Ok(Operator {
            client,
            config,
            metrics,
            readiness,
            liveness,
            lifeline,
        })
    }

    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub fn http_addr(&self) -> SocketAddr {
        self.lifeline.addr()
    }

    /// The operator's metrics (shared with `/metrics`).
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// Waits for leadership (if elected), runs the controllers until `shutdown` resolves or
    /// leadership is lost, stops them, and only once they have returned releases the Lease and
    /// stops the HTTP server. On shutdown the controllers may finish in-flight reconciles (at most
    /// `--drain-timeout-seconds`, and only while the Lease is still held); on lost leadership they
    /// are cancelled at once, since another replica may take over.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        self.run_with(shutdown, controllers()).await
    }

    /// [`Operator::run`] with other controllers (e.g. a test's).
    pub async fn run_with(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        controllers: Controllers,
    ) -> Result<(), RunError> {
        let Operator {
            client,
            config,
            metrics,
            readiness,
            liveness,
            lifeline,
        } = self;
        let _ticker = AbortOnDrop::of(&Liveness::spawn_ticker(
            liveness.register(CONTROLLER_RUNTIME),
            HEARTBEAT_PERIOD,
        ));

        let (stop_tx, stop_rx) = watch::channel(false);
        let _requested = {
            let stop_tx = stop_tx.clone();
            AbortOnDrop::of(&tokio::spawn(async move {
                shutdown.await;
                tracing::info!("shutdown requested");
                let _ = stop_tx.send(true);
            }))
        };

        // Leader election: controllers run only while this replica leads.
        let mut leader = lifeline.leader();
        if let Some(rx) = leader.as_mut() {
            readiness.set(CACHES, true); // standing by is ready; the leader re-checks its caches below
            if let Some(le) = &config.leader_election {
                tracing::info!(identity = %le.identity, lease = %le.lease_name, "waiting for leadership");
            }
            let mut stop = stop_rx.clone();
            let leading = tokio::select! {
                led = changed(rx.wait_for(|l| *l)) => led,
                _ = changed(stop.wait_for(|s| *s)) => false,
            };
            if !leading {
                // Never led: nothing to stop before releasing.
                let requested = *stop_rx.borrow();
                lifeline.finish().await.map_err(RunError::Lifeline)?;
                return if requested {
                    Ok(())
                } else {
                    Err(RunError::ElectionEnded)
                };
            }
            tracing::info!("leading");
        } else {
            metrics.set_leader(true);
        }

        readiness.set(CACHES, false);
        let Running {
            tasks,
            guards: _guards,
        } = start_controllers(
            &controllers,
            &client,
            &config,
            &metrics,
            &readiness,
            &stop_rx,
        );
        metrics.set_controllers_running(true);

        let mut stop = stop_rx.clone();
        let lost = match leader.as_mut() {
            Some(rx) => tokio::select! {
                _ = changed(rx.wait_for(|l| !*l)) => true,
                _ = changed(stop.wait_for(|s| *s)) => false,
            },
            None => {
                let _ = stop.wait_for(|s| *s).await;
                false
            }
        };
        let _ = stop_tx.send(true);
        stop_controllers(tasks, lost, leader, config.drain_timeout).await;
        metrics.set_controllers_running(false);
        tracing::info!("controllers stopped");

        // Only now may another replica take over: release the Lease, then stop serving HTTP.
        lifeline.finish().await.map_err(RunError::Lifeline)?;
        if lost {
            Err(RunError::LostLeadership)
        } else {
            Ok(())
        }
    }
}

/// The running controllers: one task per scope, and guards that abort them (and the task that
/// marks readiness once every scope's caches have synced) if [`Operator::run`] is dropped.
struct Running {
    tasks: Vec<JoinHandle<()>>,
    guards: Vec<AbortOnDrop>,
}

fn start_controllers(
    controllers: &Controllers,
    client: &Client,
    config: &OperatorConfig,
    metrics: &Metrics,
    readiness: &Readiness,
    stop_rx: &watch::Receiver<bool>,
) -> Running {
    let scopes: Vec<Scope> = if config.namespaces.is_empty() {
        vec![Scope::AllNamespaces]
    } else {
        config
            .namespaces
            .iter()
            .cloned()
            .map(Scope::Namespace)
            .collect()
    };
    let settings = Settings {
        requeue_max: config.requeue_max,
        reporter: "hypersync-operator".to_string(),
        instance: config
            .leader_election
            .as_ref()
            .map(|le| le.identity.clone()),
    };
    let metrics = Arc::new(metrics.clone());
    let mut ready_rxs = Vec::new();
    let mut tasks = Vec::new();
    for scope in scopes {
        let (ready_tx, ready_rx) = watch::channel(false);
        ready_rxs.push(ready_rx);
        tracing::info!(?scope, "starting controllers");
        tasks.push(tokio::spawn(controllers(ScopeRun {
            client: client.clone(),
            scope,
            settings: settings.clone(),
            metrics: metrics.clone(),
            ready: ready_tx,
            shutdown: stop_rx.clone(),
        })));
    }
    let readiness = readiness.clone();
    let ready = tokio::spawn(async move {
        for mut rx in ready_rxs {
            if rx.wait_for(|r| *r).await.is_err() {
                return;
            }
        }
        readiness.set(CACHES, true);
    });
    let mut guards: Vec<AbortOnDrop> = tasks.iter().map(AbortOnDrop::of).collect();
    guards.push(AbortOnDrop::of(&ready));
    Running { tasks, guards }
}

/// Waits until every controller task has returned. After lost leadership they are cancelled at
/// once; after a shutdown request in-flight reconciles may finish, unless the drain timeout passes
/// or leadership is lost meanwhile.
async fn stop_controllers(
    tasks: Vec<JoinHandle<()>>,
    lost: bool,
    leader: Option<watch::Receiver<bool>>,
    drain_timeout: Duration,
) {
    let aborts: Vec<AbortHandle> = tasks.iter().map(JoinHandle::abort_handle).collect();
    let all = futures::future::join_all(tasks);
    tokio::pin!(all);
    let drained = if lost {
        tracing::warn!("leadership lost; cancelling in-flight reconciles");
        None
    } else {
        let still_leading = async move {
            match leader {
                Some(mut rx) => {
                    let _ = rx.wait_for(|l| !*l).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            results = &mut all => Some(results),
            () = tokio::time::sleep(drain_timeout) => {
                tracing::warn!(
                    ?drain_timeout,
                    "in-flight reconciles did not finish within the drain timeout; cancelling them"
                );
                None
            }
            () = still_leading => {
                tracing::warn!("leadership lost while draining; cancelling in-flight reconciles");
                None
            }
        }
    };
    let results = match drained {
        Some(results) => results,
        None => {
            for abort in &aborts {
                abort.abort();
            }
            all.await
        }
    };
    for result in results {
        if let Err(err) = result
            && err.is_panic()
        {
            tracing::error!(error = %err, "a controller task panicked");
        }
    }
}

/// Await a `watch::Receiver::wait_for` future without keeping its (non-`Send`) borrow alive.
pub(crate) async fn changed<'a, T: 'a>(
    wait: impl Future<Output = Result<watch::Ref<'a, T>, watch::error::RecvError>>,
) -> bool {
    wait.await.is_ok()
}

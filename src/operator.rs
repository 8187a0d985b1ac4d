//! `hypersync-operator run`: the HTTP server (health, readiness, metrics), leader election, and the
//! controllers of every watched namespace, with graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::watch;

use crate::config::OperatorConfig;
use crate::controller::{Scope, Settings, run_scope};
use crate::http::{self, Liveness, Readiness};
use crate::leader::LeaderElector;
use crate::metrics::Metrics;

/// Why the operator stopped other than by a shutdown request.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("failed to serve HTTP")]
    Http(#[source] http::HttpError),
    #[error("lost leadership; stopping so a restart rejoins the election")]
    LostLeadership,
}

/// The readiness component that waits for the controllers' caches (or for standing by).
pub const CACHES: &str = "caches";

/// Run the operator until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: OperatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let metrics = Metrics::new();
    let readiness = Readiness::new(&[CACHES]);
    let liveness = Liveness::new(Duration::from_secs(60));
    let ticker = Liveness::spawn_ticker(liveness.register("runtime"), Duration::from_secs(5));

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_signal = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutdown requested");
            let _ = stop_tx.send(true);
        });
    }
    let state = http::State {
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        liveness,
    };
    let server = tokio::spawn(http::serve(
        config.http_addr,
        state,
        stop_signal(stop_rx.clone()),
    ));

    // Leader election: controllers run only while this replica leads.
    let mut leader = match &config.leader_election {
        Some(le) => {
            let elector = LeaderElector::new(
                client.clone(),
                &le.namespace,
                &le.lease_name,
                &le.identity,
                le.timings,
            )
            .with_metrics(metrics.clone());
            let handle = elector.run(stop_signal(stop_rx.clone()));
            readiness.set(CACHES, true); // standing by is ready; the leader re-checks its caches below
            let mut rx = handle.subscribe();
            tracing::info!(identity = %le.identity, lease = %le.lease_name, "waiting for leadership");
            let mut stop = stop_rx.clone();
            tokio::select! {
                _ = changed(rx.wait_for(|l| *l)) => {}
                _ = changed(stop.wait_for(|s| *s)) => {
                    ticker.abort();
                    return finish(server).await;
                }
            }
            tracing::info!("leading");
            Some(rx)
        }
        None => {
            metrics.set_leader(true);
            None
        }
    };

    readiness.set(CACHES, false);
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
    let metrics = Arc::new(metrics);
    let mut ready_rxs = Vec::new();
    let mut tasks = Vec::new();
    for scope in scopes {
        let (ready_tx, ready_rx) = watch::channel(false);
        ready_rxs.push(ready_rx);
        tracing::info!(?scope, "starting controllers");
        tasks.push(tokio::spawn(run_scope(
            client.clone(),
            scope,
            settings.clone(),
            metrics.clone(),
            ready_tx,
            stop_rx.clone(),
        )));
    }
    {
        let readiness = readiness.clone();
        tokio::spawn(async move {
            for mut rx in ready_rxs {
                if rx.wait_for(|r| *r).await.is_err() {
                    return;
                }
            }
            readiness.set(CACHES, true);
        });
    }

    let mut lost = false;
    let mut stop = stop_rx.clone();
    match leader.as_mut() {
        Some(rx) => {
            tokio::select! {
                _ = changed(rx.wait_for(|l| !*l)) => lost = true,
                _ = changed(stop.wait_for(|s| *s)) => {}
            }
        }
        None => {
            let _ = stop.wait_for(|s| *s).await;
        }
    }
    if lost {
        tracing::warn!("leadership lost; stopping controllers");
    }
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    ticker.abort();
    finish(server).await?;
    if lost {
        Err(RunError::LostLeadership)
    } else {
        Ok(())
    }
}

async fn finish(
    server: tokio::task::JoinHandle<Result<(), http::HttpError>>,
) -> Result<(), RunError> {
    match server.await {
        Ok(result) => result.map_err(RunError::Http),
        Err(err) => {
            tracing::error!(%err, "HTTP server task failed");
            Ok(())
        }
    }
}

/// Await a `watch::Receiver::wait_for` future without keeping its (non-`Send`) borrow alive.
pub(crate) async fn changed<'a, T: 'a>(
    wait: impl Future<Output = Result<watch::Ref<'a, T>, watch::error::RecvError>>,
) -> bool {
    wait.await.is_ok()
}

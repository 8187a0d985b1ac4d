//! Liveness under load: the Lease renewals and `/healthz` run on the operator's lifeline thread, so
//! a saturated controllers' runtime keeps its Lease and its probes, while a wedged one is reported
//! unhealthy. The operator runs on its own multi-thread runtime (the controllers' runtime, as in
//! `main.rs`); kube-sim and the test's checks run on another.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hypersync_operator::api::ModelEntry;
use hypersync_operator::operator::Operator;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use support::{Cluster, NS, leader_election, operator_config, stop_and_join};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

/// The chart's liveness probe timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime builds")
}

/// GET `path` as a kubelet probe would: status code and body, or `None` past the probe timeout.
async fn probe(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let get = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.ok()?;
        let (head, body) = raw.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, body.to_owned()))
    };
    tokio::time::timeout(PROBE_TIMEOUT, get)
        .await
        .ok()
        .flatten()
}

/// (holder, renewTime, leaseDurationSeconds, leaseTransitions) of the leader Lease.
async fn lease(leases: &Api<Lease>) -> Option<(String, Timestamp, i64, i32)> {
    let spec = leases.get("hypersync-operator-leader").await.ok()?.spec?;
    Some((
        spec.holder_identity?,
        spec.renew_time?.0,
        i64::from(spec.lease_duration_seconds?),
        spec.lease_transitions.unwrap_or(0),
    ))
}

fn remote(name: &str) -> String {
    format!(
        "apiVersion: hypersync.io/v1alpha1\nkind: ModelEntry\nmetadata: {{name: {name}}}\nspec:\n  type: LLM\n  source:\n    remote: {{provider: OpenAI, model: gpt-4o}}\n"
    )
}

/// Tasks that keep every worker of `rt` busy (spinning 200 ms between yields) until `until` clears:
/// each other task there waits its turn behind them, seconds at a time.
fn saturate(rt: &Runtime, tasks: usize, until: &Arc<AtomicBool>) {
    for _ in 0..tasks {
        let until = until.clone();
        rt.spawn(async move {
            while until.load(Ordering::Relaxed) {
                let slice = Instant::now() + Duration::from_millis(200);
                while Instant::now() < slice {
                    std::hint::spin_loop();
                }
                tokio::task::yield_now().await;
            }
        });
    }
}

#[test]
fn a_saturated_controller_runtime_keeps_the_lease_and_answers_probes() {
    let test_rt = runtime("test");
    let controllers_rt = runtime("controllers");
    let cluster = test_rt.block_on(Cluster::start());
    let operator = controllers_rt
        .block_on(Operator::start(
            cluster.kube_config(),
            operator_config(Some(leader_election("loaded"))),
        ))
        .expect("operator starts");
    let addr = operator.http_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = controllers_rt.spawn(operator.run(async move {
        let _ = stopped.await;
    }));
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), NS);
    let (_, _, _, transitions) = test_rt.block_on(cluster.wait_for(
        "the operator leads",
        Duration::from_secs(20),
        || async { lease(&leases).await.filter(|l| l.0 == "loaded") },
    ));

    let loaded = Arc::new(AtomicBool::new(true));
    saturate(&controllers_rt, 64, &loaded);
    let controllers = controllers_rt.handle().clone();
    test_rt.block_on(async {
        // Reconcile work competing with the load.
        for i in 0..100 {
            cluster.apply_yaml(&remote(&format!("entry-{i}"))).await;
        }
        let started = Instant::now();
        let mut renewals = Vec::new();
        let mut worst_queueing = Duration::ZERO;
        let mut slowest_probe = Duration::ZERO;
        while started.elapsed() < Duration::from_secs(60) {
            let tick = Instant::now();
            let asked = Instant::now();
            let health = probe(addr, "/healthz").await;
            slowest_probe = slowest_probe.max(asked.elapsed());
            assert_eq!(
                health.as_ref().map(|(status, _)| *status),
                Some(200),
                "/healthz under load, {:?} into the load: {health:?}",
                started.elapsed()
            );
            let (holder, renewed, duration, seen_transitions) =
                lease(&leases).await.expect("the Lease is readable");
            assert_eq!(holder, "loaded", "leadership moved under load");
            assert_eq!(seen_transitions, transitions, "the Lease changed hands");
            let valid_until = renewed + SignedDuration::from_secs(duration);
            assert!(
                Timestamp::now() <= valid_until,
                "the Lease expired under load (renewed {renewed}, valid for {duration} s): a standby could have taken over"
            );
            renewals.push(renewed);
            // How long a task spawned on the controllers' runtime waits before it runs.
            let queued = Instant::now();
            let waited = controllers
                .spawn(async move { queued.elapsed() })
                .await
                .expect("probe task");
            worst_queueing = worst_queueing.max(waited);
            assert!(!run.is_finished(), "the operator stopped under load");
            tokio::time::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed())).await;
        }
        renewals.dedup();
        eprintln!(
            "under load: {} distinct renewals seen in 60 s; /healthz answered within {slowest_probe:?}; a task on the controllers' runtime waited up to {worst_queueing:?} to run",
            renewals.len()
        );
        assert!(
            worst_queueing >= Duration::from_secs(1),
            "the load did not saturate the controllers' runtime (worst wait {worst_queueing:?}); the test proves nothing"
        );
        assert!(
            renewals.len() > 10,
            "renewTime advanced only {} times in 60 s",
            renewals.len()
        );
    });
    loaded.store(false, Ordering::Relaxed);

    test_rt.block_on(async {
        // The controllers kept working: every entry gets its status.
        let entries: Api<ModelEntry> = Api::namespaced(cluster.client.clone(), NS);
        cluster
            .wait_for(
                "every entry reconciled",
                Duration::from_secs(60),
                || async {
                    let list = entries.list(&Default::default()).await.ok()?;
                    (list.items.len() == 100 && list.items.iter().all(|e| e.status.is_some()))
                        .then_some(())
                },
            )
            .await;
        stop_and_join(stop, run, "the operator").await;
        let spec = leases
            .get("hypersync-operator-leader")
            .await
            .expect("lease")
            .spec
            .expect("spec");
        assert_eq!(spec.holder_identity, None, "released on shutdown");
    });
}

#[test]
fn a_wedged_controller_runtime_fails_healthz_and_recovers() {
    let test_rt = runtime("test");
    let controllers_rt = runtime("controllers");
    let cluster = test_rt.block_on(Cluster::start());
    let mut config = operator_config(None);
    config.liveness_stall = Duration::from_secs(2);
    let operator = controllers_rt
        .block_on(Operator::start(cluster.kube_config(), config))
        .expect("operator starts");
    let addr = operator.http_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = controllers_rt.spawn(operator.run(async move {
        let _ = stopped.await;
    }));
    test_rt.block_on(async {
        cluster
            .wait_for("ready", Duration::from_secs(20), || async {
                (probe(addr, "/readyz").await?.0 == 200).then_some(())
            })
            .await;
        assert_eq!(probe(addr, "/healthz").await.map(|r| r.0), Some(200));
    });

    // Block every worker of the controllers' runtime (not merely busy: nothing else runs there).
    for _ in 0..4 {
        controllers_rt.spawn(async { std::thread::sleep(Duration::from_secs(5)) });
    }
    test_rt.block_on(async {
        let (status, body) = cluster
            .wait_for(
                "/healthz reporting the wedged runtime",
                Duration::from_secs(8),
                || async {
                    let reply = probe(addr, "/healthz").await.expect("/healthz answers");
                    (reply.0 == 500).then_some(reply)
                },
            )
            .await;
        assert_eq!(status, 500);
        assert!(
            body.contains("controller-runtime: no heartbeat for"),
            "{body}"
        );
        let (_, metrics) = probe(addr, "/metrics").await.expect("/metrics answers");
        let stall: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("hypersync_controller_runtime_stall_seconds "))
            .and_then(|v| v.parse().ok())
            .expect("stall gauge");
        assert!(stall > 1.0, "stall gauge {stall}");
        cluster
            .wait_for(
                "/healthz healthy again",
                Duration::from_secs(30),
                || async { (probe(addr, "/healthz").await?.0 == 200).then_some(()) },
            )
            .await;
        stop_and_join(stop, run, "the operator").await;
    });
}

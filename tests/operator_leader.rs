//! Leader election: with two replicas only the Lease holder reconciles, a successor takes over
//! when the leader stops, and not before the stopping leader's controllers have returned.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hypersync_operator::api::ModelEntry;
use hypersync_operator::operator::{Controllers, Operator, ScopeRun};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, PostParams};
use support::proxy::Proxy;
use support::{Cluster, NS, leader_election, operator_config, run_operator, stop_and_join};

fn remote(name: &str) -> String {
    format!(
        "apiVersion: hypersync.io/v1alpha1\nkind: ModelEntry\nmetadata: {{name: {name}}}\nspec:\n  type: LLM\n  source:\n    remote: {{provider: OpenAI, model: gpt-4o}}\n"
    )
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get("hypersync-operator-leader")
        .await
        .ok()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

/// Identities that published Events about `name`.
async fn reporters(cluster: &Cluster, name: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), NS);
    let mut out: Vec<String> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reporting_instance)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_a_successor_takes_over() {
    let cluster = Cluster::start().await;
    let a = cluster.elected_operator("replica-a");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = cluster.elected_operator("replica-b");
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), NS);
    let leader = cluster
        .wait_for("a leader", Duration::from_secs(15), || holder(&leases))
        .await;
    assert_eq!(
        leader, "replica-a",
        "the first replica to start takes the Lease"
    );

    cluster.apply_yaml(&remote("first")).await;
    let entries: Api<ModelEntry> = Api::namespaced(cluster.client.clone(), NS);
    cluster
        .wait_for("first reconciled", Duration::from_secs(15), || async {
            entries.get("first").await.ok()?.status.map(|_| ())
        })
        .await;
    assert_eq!(
        reporters(&cluster, "first").await,
        ["replica-a"],
        "only the leader reports"
    );

    // The leader stops (releasing the Lease); the standby takes over and reconciles.
    a.stop().await;
    cluster
        .wait_for("replica-b leads", Duration::from_secs(15), || async {
            (holder(&leases).await? == "replica-b").then_some(())
        })
        .await;
    cluster.apply_yaml(&remote("second")).await;
    cluster
        .wait_for("second reconciled", Duration::from_secs(20), || async {
            entries.get("second").await.ok()?.status.map(|_| ())
        })
        .await;
    assert_eq!(reporters(&cluster, "second").await, ["replica-b"]);
    b.stop().await;
}

/// A rollout with the real controllers: the leader is asked to stop while one of its reconciles
/// waits on a slow API call. It drains its reconciles and only then releases the Lease, so the API
/// server sees the successor's first request after the old leader's last one.
/// Replica A, its requests recorded by a proxy, once it holds the Lease.
async fn replica_a_leading(cluster: &Cluster) -> (Proxy, support::Operator) {
    let proxy = Proxy::start(&cluster.sim.url()).await;
    let a = run_operator(
        proxy.kube_config(),
        operator_config(Some(leader_election("replica-a"))),
    );
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), NS);
    let leader = cluster
        .wait_for("a leader", Duration::from_secs(15), || holder(&leases))
        .await;
    assert_eq!(leader, "replica-a");
    (proxy, a)
}

/// A first ModelEntry reconciled: the leader's controllers run.
async fn warm_up(cluster: &Cluster) {
    let entries: Api<ModelEntry> = Api::namespaced(cluster.client.clone(), NS);
    cluster.apply_yaml(&remote("warm-up")).await;
    cluster
        .wait_for("warm-up reconciled", Duration::from_secs(15), || async {
            entries.get("warm-up").await.ok()?.status.map(|_| ())
        })
        .await;
}

/// Another replica takes the Lease over (as after a partition): a valid term in its name.
async fn take_over(leases: &Api<Lease>, identity: &str) {
    let mut lease = leases
        .get("hypersync-operator-leader")
        .await
        .expect("lease");
    let spec = lease.spec.get_or_insert_with(Default::default);
    spec.holder_identity = Some(identity.into());
    spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    spec.lease_duration_seconds = Some(3600);
    leases
        .replace("hypersync-operator-leader", &PostParams::default(), &lease)
        .await
        .expect("takeover");
}

/// Delay the proxied replica's API calls (not its Lease renewals) by 3 s each, create five
/// ModelEntries and wait until one of their writes is in flight.
async fn slow_writes_in_flight(cluster: &Cluster, proxy: &Proxy) {
    proxy.set_delay(Duration::from_secs(3));
    let seen = proxy.records().len();
    for i in 0..5 {
        cluster.apply_yaml(&remote(&format!("slow-{i}"))).await;
    }
    cluster
        .wait_for(
            "a ModelEntry write in flight",
            Duration::from_secs(30),
            || async {
                proxy.records()[seen..]
                    .iter()
                    .any(|r| {
                        r.method == "PATCH"
                            && r.path.contains("/modelentries/slow-")
                            && r.ended.is_none()
                    })
                    .then_some(())
            },
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_real_controllers_the_successor_starts_after_the_old_leaders_last_write() {
    // The recording proxies speak plain HTTP.
    let cluster = Cluster::start_plain_http().await;
    let (proxy_a, a) = replica_a_leading(&cluster).await;
    let proxy_b = Proxy::start(&cluster.sim.url()).await;
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), NS);
    let b = run_operator(
        proxy_b.kube_config(),
        operator_config(Some(leader_election("replica-b"))),
    );
    warm_up(&cluster).await;
    let entries: Api<ModelEntry> = Api::namespaced(cluster.client.clone(), NS);

    // Replica A's API calls (not its Lease renewals) now take 3 s each.
    slow_writes_in_flight(&cluster, &proxy_a).await;
    let stop_requested = Instant::now();
    a.stop().await;

    cluster
        .wait_for("replica-b leads", Duration::from_secs(30), || async {
            (holder(&leases).await? == "replica-b").then_some(())
        })
        .await;
    for i in 0..5 {
        let name = format!("slow-{i}");
        cluster
            .wait_for(
                &format!("{name} reconciled"),
                Duration::from_secs(30),
                || async { entries.get(&name).await.ok()?.status.map(|_| ()) },
            )
            .await;
    }

    let a_last_answer = proxy_a
        .records()
        .iter()
        .filter(|r| !r.is_lease())
        .filter_map(|r| r.ended)
        .max()
        .expect("replica-a made requests");
    let b_first_request = proxy_b
        .records()
        .iter()
        .filter(|r| !r.is_lease())
        .map(|r| r.started)
        .min()
        .expect("replica-b made requests");
    assert!(
        a_last_answer > stop_requested,
        "replica-a had no request in flight when it was asked to stop; the test proves nothing"
    );
    assert!(
        b_first_request > a_last_answer,
        "replica-b sent its first controller request {:?} before replica-a's last one was answered",
        a_last_answer.duration_since(b_first_request)
    );
    b.stop().await;
}

/// In-process record of when each replica's controllers started and returned, on one clock.
type Timeline = Arc<Mutex<Vec<(String, &'static str, Instant)>>>;

/// When `identity`'s controllers reached `event` (waiting for it).
async fn when(cluster: &Cluster, timeline: &Timeline, identity: &str, event: &str) -> Instant {
    cluster
        .wait_for(
            &format!("{identity} {event}"),
            Duration::from_secs(15),
            || async {
                timeline
                    .lock()
                    .expect("lock")
                    .iter()
                    .find(|(i, e, _)| i == identity && *e == event)
                    .map(|(_, _, t)| *t)
            },
        )
        .await
}

/// Controllers that take `drain` to stop: on shutdown their in-flight "reconcile" ends with a write
/// (ConfigMap `drained-<identity>`), as a reconcile waiting on a slow API would.
fn draining_controllers(identity: &str, drain: Duration, timeline: &Timeline) -> Controllers {
    let (identity, timeline) = (identity.to_owned(), timeline.clone());
    Arc::new(move |run: ScopeRun| {
        let (identity, timeline) = (identity.clone(), timeline.clone());
        Box::pin(async move {
            let ScopeRun {
                client,
                ready,
                mut shutdown,
                ..
            } = run;
            let record = |event| {
                timeline
                    .lock()
                    .expect("lock")
                    .push((identity.clone(), event, Instant::now()));
            };
            record("started");
            let _ = ready.send(true);
            let _ = shutdown.wait_for(|s| *s).await;
            tokio::time::sleep(drain).await;
            let drained = ConfigMap {
                metadata: kube::api::ObjectMeta {
                    name: Some(format!("drained-{identity}")),
                    ..Default::default()
                },
                ..Default::default()
            };
            Api::<ConfigMap>::namespaced(client, NS)
                .create(&PostParams::default(), &drained)
                .await
                .expect("the draining reconcile writes");
            record("returned");
        })
    })
}

/// A rollout: the leader is asked to stop while its controllers still need 2 s to finish their
/// in-flight reconcile. The standby may start its controllers only after they have returned: the
/// Lease is released after the join, not when draining starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_successor_starts_only_after_the_stopping_leaders_controllers_returned() {
    let cluster = Cluster::start().await;
    let timeline = Timeline::default();
    let start = |identity: &str| {
        let (kube_config, timeline) = (cluster.kube_config(), timeline.clone());
        let identity = identity.to_owned();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let operator = Operator::start(
                kube_config,
                operator_config(Some(leader_election(&identity))),
            )
            .await
            .expect("operator starts");
            let controllers = draining_controllers(&identity, Duration::from_secs(2), &timeline);
            operator
                .run_with(
                    async move {
                        let _ = stopped.await;
                    },
                    controllers,
                )
                .await
        });
        (stop, task)
    };
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), NS);
    let (stop_a, a) = start("replica-a");
    let leader = cluster
        .wait_for("a leader", Duration::from_secs(15), || holder(&leases))
        .await;
    assert_eq!(leader, "replica-a");
    let (stop_b, b) = start("replica-b");
    // The standby keeps standing by while the leader renews.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(holder(&leases).await.as_deref(), Some("replica-a"));

    stop_and_join(stop_a, a, "replica-a").await;
    cluster
        .wait_for("replica-b leads", Duration::from_secs(15), || async {
            (holder(&leases).await? == "replica-b").then_some(())
        })
        .await;
    let a_returned = when(&cluster, &timeline, "replica-a", "returned").await;
    let b_started = when(&cluster, &timeline, "replica-b", "started").await;
    assert!(
        b_started > a_returned,
        "replica-b started its controllers {:?} before replica-a's had returned",
        a_returned.duration_since(b_started)
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), NS);
    assert!(
        configmaps
            .get_opt("drained-replica-a")
            .await
            .expect("get")
            .is_some(),
        "replica-a's in-flight reconcile finished its write"
    );

    stop_and_join(stop_b, b, "replica-b").await;
    assert_eq!(holder(&leases).await, None, "released on shutdown");
}

/// A leader that finds another holder in its Lease (it missed its term) cancels its controllers at
/// once, without waiting for their in-flight work, and stops with `LostLeadership` so a restart
/// rejoins the election.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_loses_its_lease_cancels_its_controllers_and_exits() {
    let cluster = Cluster::start().await;
    let timeline = Timeline::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controllers = draining_controllers("replica-a", Duration::from_secs(30), &timeline);
    let operator = Operator::start(
        cluster.kube_config(),
        operator_config(Some(leader_election("replica-a"))),
    )
    .await
    .expect("operator starts");
    let metrics = operator.metrics();
    let run = tokio::spawn(operator.run_with(
        async move {
            let _ = stopped.await;
        },
        controllers,
    ));
    when(&cluster, &timeline, "replica-a", "started").await;
    assert!(metrics.encode().contains("hypersync_controllers_running 1"));

    // Another replica takes the Lease over (as after a partition): a valid term in its name.
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), NS);
    take_over(&leases, "replica-z").await;

    let result = tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("replica-a stops without waiting for its 30 s drain")
        .expect("replica-a task");
    assert!(
        matches!(
            result,
            Err(hypersync_operator::operator::RunError::LostLeadership)
        ),
        "{result:?}"
    );
    assert!(
        !timeline
            .lock()
            .expect("lock")
            .iter()
            .any(|(_, e, _)| *e == "returned"),
        "the controllers were cancelled, not drained"
    );
    assert!(metrics.encode().contains("hypersync_controllers_running 0"));
    assert_eq!(
        holder(&leases).await.as_deref(),
        Some("replica-z"),
        "the Lease of another holder is left alone"
    );
    drop(stop);
}

/// A leader that loses its Lease stops all its controllers with it: once it has stopped, no
/// reconcile that was in flight carries on sending requests (the controllers' tasks are aborted
/// with their scope, not left running detached).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_losing_its_lease_a_leader_sends_no_further_controller_requests() {
    // The recording proxy speaks plain HTTP.
    let cluster = Cluster::start_plain_http().await;
    let (proxy, a) = replica_a_leading(&cluster).await;
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), NS);
    warm_up(&cluster).await;

    // Its API calls (not its Lease renewals) now take 3 s each, so reconciles are in flight when
    // the Lease is taken over.
    slow_writes_in_flight(&cluster, &proxy).await;

    take_over(&leases, "replica-z").await;
    cluster
        .wait_for("replica-a stopped", Duration::from_secs(15), || async {
            a.is_finished().then_some(())
        })
        .await;
    let stopped = Instant::now();

    // Longer than the delay: whatever was in flight has been answered, and a reconcile still
    // running would have sent its next request by now.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let late: Vec<String> = proxy
        .records()
        .iter()
        .filter(|r| !r.is_lease() && r.started > stopped)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        late.is_empty(),
        "replica-a kept sending controller requests after it stopped: {late:?}"
    );
    a.stop().await;
}

//! Leader election on a coordination.k8s.io/v1 Lease: the pure `decide` step, the Lease it writes,
//! and the thin async loop that publishes "am I the leader" on a `tokio::sync::watch` channel.
//!
//! Protocol (the one client-go uses): a candidate takes the Lease when nobody holds it or when the
//! holder's `renewTime + leaseDurationSeconds` lies in the past, and bumps `leaseTransitions`; the
//! holder renews every retry period. Every write is a `replace` carrying the `resourceVersion` that
//! was read, so of two candidates racing for the same Lease one gets `409 Conflict` and stays a
//! follower. A leader that cannot renew for `renew_deadline` steps down (publishes `false`) before
//! its Lease can expire (`lease_duration > renew_deadline`). A candidate takes over from another
//! holder only after it has also watched the Lease go unrenewed for a full lease duration on its
//! own monotonic clock, so clock skew between replicas cannot make two of them lead at once.
//! When its `shutdown` future resolves the leader clears `holderIdentity`, letting a successor take
//! over at its next retry instead of after expiry; the operator resolves it only once its
//! controllers have stopped (see `operator.rs`), and runs the loop on its own thread and kube
//! `Client` (see `lifeline.rs`) so reconcile load cannot delay a renewal.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// Timing of the election. Invariant (checked by the config): `lease_duration > renew_deadline >
/// retry_period > 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTimings {
    /// How long a Lease is valid after its last renewal.
    pub lease_duration: Duration,
    /// How long a leader keeps trying to renew before it steps down.
    pub renew_deadline: Duration,
    /// Interval between attempts.
    pub retry_period: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        LeaseTimings {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaseTimings {
    /// `lease_duration` in whole seconds (rounded up, at least 1), as stored in the Lease.
    pub fn lease_duration_seconds(&self) -> i32 {
        let secs =
            self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        i32::try_from(secs.max(1)).unwrap_or(i32::MAX)
    }
}

/// What a candidate should do given the Lease it just read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// No Lease exists: create one naming us.
    Create,
    /// The Lease is free (no holder) or its holder's term has expired: take it over.
    Acquire { previous_holder: Option<String> },
    /// We hold the Lease: renew it.
    Renew,
    /// Someone else holds a valid Lease until `until` (unless they renew).
    Wait { holder: String, until: Timestamp },
}

/// The pure election decision.
pub fn decide(
    lease: Option<&Lease>,
    identity: &str,
    now: Timestamp,
    timings: &LeaseTimings,
) -> Action {
    let Some(lease) = lease else {
        return Action::Create;
    };
    let spec = lease.spec.as_ref();
    let holder = spec
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty());
    match holder {
        None => Action::Acquire {
            previous_holder: None,
        },
        Some(h) if h == identity => Action::Renew,
        Some(h) => {
            let until = expiry(spec, timings);
            if until < now {
                Action::Acquire {
                    previous_holder: Some(h.to_owned()),
                }
            } else {
                Action::Wait {
                    holder: h.to_owned(),
                    until,
                }
            }
        }
    }
}

/// When the current holder's term ends: last renewal (or acquisition) plus the Lease's duration
/// (ours when the Lease has none). A Lease with neither timestamp is already expired.
fn expiry(spec: Option<&LeaseSpec>, timings: &LeaseTimings) -> Timestamp {
    let Some(spec) = spec else {
        return Timestamp::MIN;
    };
    let Some(last) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return Timestamp::MIN;
    };
    let secs = spec
        .lease_duration_seconds
        .filter(|s| *s > 0)
        .unwrap_or_else(|| timings.lease_duration_seconds());
    last.0
        .checked_add(SignedDuration::from_secs(i64::from(secs)))
        .unwrap_or(Timestamp::MAX)
}

/// The Lease to write for `action` (`None` for `Wait`). Acquire and renew start from the Lease
/// that was read, so its `resourceVersion` makes the write conditional.
pub fn next_lease(
    current: Option<&Lease>,
    action: &Action,
    namespace: &str,
    name: &str,
    identity: &str,
    now: Timestamp,
    timings: &LeaseTimings,
) -> Option<Lease> {
    let stamp = Some(MicroTime(now));
    let duration = Some(timings.lease_duration_seconds());
    match action {
        Action::Wait { .. } => None,
        Action::Create => Some(Lease {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(identity.to_owned()),
                lease_duration_seconds: duration,
                acquire_time: stamp.clone(),
                renew_time: stamp,
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        }),
        Action::Acquire { .. } => {
            let mut lease = current?.clone();
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = Some(identity.to_owned());
            spec.lease_duration_seconds = duration;
            spec.acquire_time = stamp.clone();
            spec.renew_time = stamp;
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            Some(lease)
        }
        Action::Renew => {
            let mut lease = current?.clone();
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.lease_duration_seconds = duration;
            if spec.acquire_time.is_none() {
                spec.acquire_time = stamp.clone();
            }
            spec.renew_time = stamp;
            Some(lease)
        }
    }
}

/// The Lease that gives up leadership: no holder, a 1 s duration. `None` unless we hold it.
pub fn released_lease(current: &Lease, identity: &str, now: Timestamp) -> Option<Lease> {
    let holder = current.spec.as_ref()?.holder_identity.as_deref()?;
    if holder != identity {
        return None;
    }
    let mut lease = current.clone();
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(now));
    Some(lease)
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("failed to {step} Lease")]
    Kube {
        step: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("failed to {step} Lease within {timeout:?}")]
    Timeout {
        step: &'static str,
        timeout: Duration,
    },
}

impl LeaderError {
    /// Another candidate wrote the Lease between our read and write.
    pub fn is_conflict(&self) -> bool {
        matches!(self, LeaderError::Kube { source: kube::Error::Api(s), .. } if s.code == 409)
    }
}

/// The holder and renew time last read from the Lease, and since when (local monotonic clock).
/// Taking over from another holder additionally requires that this record stayed unchanged for
/// a full lease duration as measured here, as client-go does: that makes the election immune to
/// clock skew between replicas, at the cost of one lease duration of delay when a replica finds a
/// stale Lease at start-up. A released Lease (no holder) is taken at once.
#[derive(Debug, Default)]
struct Observed {
    record: Option<(Option<String>, Option<MicroTime>)>,
    since: Option<Instant>,
}

impl Observed {
    /// Records what was read at `now`; returns how long it has been unchanged.
    fn update(&mut self, lease: Option<&Lease>, now: Instant) -> Duration {
        let spec = lease.and_then(|l| l.spec.as_ref());
        let record = (
            spec.and_then(|s| s.holder_identity.clone()),
            spec.and_then(|s| s.renew_time.clone()),
        );
        match (&self.record, self.since) {
            (Some(previous), Some(since)) if *previous == record => {
                now.saturating_duration_since(since)
            }
            _ => {
                self.record = Some(record);
                self.since = Some(now);
                Duration::ZERO
            }
        }
    }
}

/// Takes part in leader election for one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    namespace: String,
    lease_name: String,
    identity: String,
    timings: LeaseTimings,
    metrics: Option<Metrics>,
}

/// The running election: a watch of "am I the leader" and the task (which releases the Lease on
/// shutdown before it ends).
#[derive(Debug)]
pub struct LeaderHandle {
    leader: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl LeaderHandle {
    /// A receiver that is `true` exactly while this replica leads.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// Whether this replica leads right now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Waits until the election loop has stopped (after shutdown, once the Lease was released).
    pub async fn join(self) {
        if let Err(err) = self.task.await {
            tracing::error!(error = %err, "leader election task failed");
        }
    }
}

impl LeaderElector {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        lease_name: &str,
        identity: &str,
        timings: LeaseTimings,
    ) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            lease_name: lease_name.to_owned(),
            identity: identity.to_owned(),
            timings,
            metrics: None,
        }
    }

    /// Also publish leadership as `hypersync_leader`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Spawns the election loop. The returned handle's receiver turns `true` when this replica
    /// becomes leader and `false` when it loses leadership or `shutdown` resolves. Controllers
    /// should run only while it is `true`. Pass a `shutdown` that resolves after the controllers
    /// have stopped, so the Lease is released only when nothing reconciles any more.
    pub fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> LeaderHandle {
        let (tx, _) = watch::channel(false);
        self.run_publishing(tx, shutdown)
    }

    /// Like [`LeaderElector::run`], publishing on `tx` (whose receivers may live on another
    /// runtime or thread).
    pub fn run_publishing(
        self,
        tx: watch::Sender<bool>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> LeaderHandle {
        let leader = tx.subscribe();
        let task = tokio::spawn(self.run_loop(tx, shutdown));
        LeaderHandle { leader, task }
    }

    async fn run_loop(self, tx: watch::Sender<bool>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut last_renewal: Option<Instant> = None;
        let mut observed = Observed::default();
        loop {
            let leading = *tx.borrow();
            // A leader's attempt may only run until its renew deadline; a follower's for one deadline.
            let budget = match (leading, last_renewal) {
                (true, Some(at)) => {
                    (at + self.timings.renew_deadline).saturating_duration_since(Instant::now())
                }
                _ => self.timings.renew_deadline,
            };
            let outcome = tokio::select! {
                outcome = tokio::time::timeout(budget, self.try_acquire_or_renew(&mut observed)) => outcome
                    .unwrap_or(Err(LeaderError::Timeout { step: "acquire or renew", timeout: budget })),
                () = &mut shutdown => break,
            };
            match outcome {
                Ok(true) => {
                    last_renewal = Some(Instant::now());
                    self.publish(&tx, true);
                }
                Ok(false) => self.publish(&tx, false),
                Err(err) => {
                    let expired =
                        last_renewal.is_none_or(|at| at.elapsed() >= self.timings.renew_deadline);
                    if leading && expired {
                        tracing::warn!(error = %err, "failed to renew the leader Lease before the renew deadline; stepping down");
                        self.publish(&tx, false);
                    } else if err.is_conflict() {
                        tracing::debug!("lost a race for the leader Lease");
                    } else {
                        tracing::warn!(error = %err, "leader election attempt failed");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.timings.retry_period) => {}
                () = &mut shutdown => break,
            }
        }
        if *tx.borrow() {
            self.publish(&tx, false);
        }
        self.release().await;
    }

    fn publish(&self, tx: &watch::Sender<bool>, leading: bool) {
        let changed = tx.send_if_modified(|current| {
            let changed = *current != leading;
            *current = leading;
            changed
        });
        if changed {
            if leading {
                tracing::info!(identity = %self.identity, lease = %self.lease_name, "became leader");
            } else {
                tracing::info!(identity = %self.identity, lease = %self.lease_name, "stopped leading");
            }
        }
        if let Some(metrics) = &self.metrics {
            metrics.set_leader(leading);
        }
    }

    /// One round: read the Lease, decide, write. `Ok(true)` when we hold it afterwards.
    async fn try_acquire_or_renew(&self, observed: &mut Observed) -> Result<bool, LeaderError> {
        let current =
            self.api
                .get_opt(&self.lease_name)
                .await
                .map_err(|source| LeaderError::Kube {
                    step: "get",
                    source,
                })?;
        let now = Timestamp::now();
        let mut action = decide(current.as_ref(), &self.identity, now, &self.timings);
        let unchanged_for = observed.update(current.as_ref(), Instant::now());
        if let Action::Acquire {
            previous_holder: Some(holder),
        } = &action
            && unchanged_for < self.timings.lease_duration
        {
            // Expired by the Lease's timestamps, but not yet by our own clock: wait until we have
            // seen it unrenewed for a full term, so a skewed clock cannot steal a live Lease.
            action = Action::Wait {
                holder: holder.clone(),
                until: now,
            };
        }
        let Some(lease) = next_lease(
            current.as_ref(),
            &action,
            &self.namespace,
            &self.lease_name,
            &self.identity,
            now,
            &self.timings,
        ) else {
            if let Action::Wait { holder, .. } = &action {
                tracing::trace!(%holder, "leader Lease held by another replica");
            }
            return Ok(false);
        };
        let pp = PostParams::default();
        match action {
            Action::Create => {
                self.api
                    .create(&pp, &lease)
                    .await
                    .map_err(|source| LeaderError::Kube {
                        step: "create",
                        source,
                    })?;
            }
            Action::Acquire { previous_holder } => {
                self.api
                    .replace(&self.lease_name, &pp, &lease)
                    .await
                    .map_err(|source| LeaderError::Kube {
                        step: "acquire",
                        source,
                    })?;
                tracing::debug!(
                    previous_holder = previous_holder.as_deref().unwrap_or(""),
                    "acquired the leader Lease"
                );
            }
            Action::Renew => {
                self.api
                    .replace(&self.lease_name, &pp, &lease)
                    .await
                    .map_err(|source| LeaderError::Kube {
                        step: "renew",
                        source,
                    })?;
            }
            Action::Wait { .. } => return Ok(false),
        }
        Ok(true)
    }

    /// Clears `holderIdentity` if we still hold the Lease; bounded by one retry period (at least 1 s).
    async fn release(&self) {
        let timeout = self.timings.retry_period.max(Duration::from_secs(1));
        let attempt =
            async {
                let current = self.api.get_opt(&self.lease_name).await.map_err(|source| {
                    LeaderError::Kube {
                        step: "get",
                        source,
                    }
                })?;
                let Some(lease) =
                    current.and_then(|l| released_lease(&l, &self.identity, Timestamp::now()))
                else {
                    return Ok(false);
                };
                self.api
                    .replace(&self.lease_name, &PostParams::default(), &lease)
                    .await
                    .map_err(|source| LeaderError::Kube {
                        step: "release",
                        source,
                    })?;
                Ok::<bool, LeaderError>(true)
            };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(true)) => tracing::info!(lease = %self.lease_name, "released the leader Lease"),
            Ok(Ok(false)) => {}
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "failed to release the leader Lease; it expires on its own")
            }
            Err(_) => tracing::warn!(
                ?timeout,
                "failed to release the leader Lease in time; it expires on its own"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).expect("valid timestamp")
    }

    fn lease(holder: Option<&str>, renewed_at: Option<i64>, duration: Option<i32>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("hypersync-operator-leader".into()),
                namespace: Some("ops".into()),
                resource_version: Some("42".into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                renew_time: renewed_at.map(|s| MicroTime(ts(s))),
                acquire_time: renewed_at.map(|s| MicroTime(ts(s - 100))),
                lease_duration_seconds: duration,
                lease_transitions: Some(3),
                ..LeaseSpec::default()
            }),
        }
    }

    fn t() -> LeaseTimings {
        LeaseTimings::default()
    }

    #[test]
    fn absent_lease_is_created() {
        assert_eq!(decide(None, "me", ts(0), &t()), Action::Create);
        let l = next_lease(None, &Action::Create, "ops", "L", "me", ts(0), &t()).expect("lease");
        let spec = l.spec.expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.lease_transitions, Some(0));
        assert_eq!(spec.renew_time, Some(MicroTime(ts(0))));
        assert_eq!(l.metadata.namespace.as_deref(), Some("ops"));
        assert_eq!(l.metadata.name.as_deref(), Some("L"));
    }

    #[test]
    fn valid_lease_of_another_holder_means_wait_until_expiry() {
        let l = lease(Some("other"), Some(0), Some(15));
        for now in [0, 5, 15] {
            assert_eq!(
                decide(Some(&l), "me", ts(now), &t()),
                Action::Wait {
                    holder: "other".into(),
                    until: ts(15)
                },
                "at {now}s"
            );
        }
    }

    #[test]
    fn expired_lease_is_acquired_with_a_transition() {
        let l = lease(Some("other"), Some(0), Some(15));
        let action = decide(Some(&l), "me", ts(16), &t());
        assert_eq!(
            action,
            Action::Acquire {
                previous_holder: Some("other".into())
            }
        );
        let next = next_lease(Some(&l), &action, "ops", "L", "me", ts(16), &t()).expect("lease");
        assert_eq!(
            next.metadata.resource_version.as_deref(),
            Some("42"),
            "write must be conditional"
        );
        let spec = next.spec.expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(MicroTime(ts(16))));
        assert_eq!(spec.renew_time, Some(MicroTime(ts(16))));
    }

    #[test]
    fn the_holders_own_duration_counts_not_ours() {
        let l = lease(Some("other"), Some(0), Some(60));
        assert!(matches!(
            decide(Some(&l), "me", ts(30), &t()),
            Action::Wait { .. }
        ));
        assert!(matches!(
            decide(Some(&l), "me", ts(61), &t()),
            Action::Acquire { .. }
        ));
        // No duration in the Lease: ours applies.
        let l = lease(Some("other"), Some(0), None);
        assert!(matches!(
            decide(Some(&l), "me", ts(10), &t()),
            Action::Wait { .. }
        ));
        assert!(matches!(
            decide(Some(&l), "me", ts(16), &t()),
            Action::Acquire { .. }
        ));
    }

    #[test]
    fn released_or_timeless_lease_is_free() {
        for holder in [None, Some("")] {
            let l = lease(holder, Some(0), Some(15));
            assert_eq!(
                decide(Some(&l), "me", ts(1), &t()),
                Action::Acquire {
                    previous_holder: None
                }
            );
        }
        let l = lease(Some("other"), None, Some(15));
        assert!(matches!(
            decide(Some(&l), "me", ts(0), &t()),
            Action::Acquire { .. }
        ));
        let empty = Lease {
            metadata: ObjectMeta::default(),
            spec: None,
        };
        assert!(matches!(
            decide(Some(&empty), "me", ts(0), &t()),
            Action::Acquire {
                previous_holder: None
            }
        ));
    }

    #[test]
    fn own_lease_is_renewed_without_a_transition() {
        let l = lease(Some("me"), Some(0), Some(15));
        assert_eq!(decide(Some(&l), "me", ts(2), &t()), Action::Renew);
        let next =
            next_lease(Some(&l), &Action::Renew, "ops", "L", "me", ts(2), &t()).expect("lease");
        let spec = next.spec.expect("spec");
        assert_eq!(spec.lease_transitions, Some(3));
        assert_eq!(spec.renew_time, Some(MicroTime(ts(2))));
        assert_eq!(
            spec.acquire_time,
            Some(MicroTime(ts(-100))),
            "acquire time kept"
        );
        assert_eq!(next.metadata.resource_version.as_deref(), Some("42"));
    }

    #[test]
    fn far_future_times_do_not_overflow() {
        let mut l = lease(Some("other"), None, Some(i32::MAX));
        if let Some(spec) = l.spec.as_mut() {
            spec.renew_time = Some(MicroTime(Timestamp::MAX));
        }
        assert!(matches!(
            decide(Some(&l), "me", ts(0), &t()),
            Action::Wait { .. }
        ));
    }

    #[test]
    fn release_clears_the_holder_only_when_we_hold_it() {
        let mine = lease(Some("me"), Some(0), Some(15));
        let released = released_lease(&mine, "me", ts(1)).expect("we hold it");
        let spec = released.spec.clone().expect("spec");
        assert_eq!(spec.holder_identity, None);
        assert_eq!(spec.lease_duration_seconds, Some(1));
        assert_eq!(released.metadata.resource_version.as_deref(), Some("42"));
        // A successor acquires at once, counting a transition.
        let action = decide(Some(&released), "next", ts(1), &t());
        assert_eq!(
            action,
            Action::Acquire {
                previous_holder: None
            }
        );
        let theirs = lease(Some("other"), Some(0), Some(15));
        assert!(released_lease(&theirs, "me", ts(1)).is_none());
    }

    #[test]
    fn observation_restarts_whenever_the_record_changes() {
        let mut observed = Observed::default();
        let t0 = Instant::now();
        let a = lease(Some("other"), Some(0), Some(15));
        assert_eq!(observed.update(Some(&a), t0), Duration::ZERO);
        assert_eq!(
            observed.update(Some(&a), t0 + Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        let renewed = lease(Some("other"), Some(2), Some(15));
        assert_eq!(
            observed.update(Some(&renewed), t0 + Duration::from_secs(6)),
            Duration::ZERO
        );
        assert_eq!(
            observed.update(Some(&renewed), t0 + Duration::from_secs(9)),
            Duration::from_secs(3)
        );
        assert_eq!(
            observed.update(None, t0 + Duration::from_secs(10)),
            Duration::ZERO
        );
    }

    #[test]
    fn subsecond_durations_round_up() {
        let timings = LeaseTimings {
            lease_duration: Duration::from_millis(1500),
            renew_deadline: Duration::from_secs(1),
            retry_period: Duration::from_millis(200),
        };
        assert_eq!(timings.lease_duration_seconds(), 2);
        assert_eq!(LeaseTimings::default().lease_duration_seconds(), 15);
    }

    /// A minimal Lease endpoint with real resourceVersion semantics, to run electors against.
    mod fake_api {
        use std::collections::HashMap;
        use std::convert::Infallible;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::{Arc, Mutex};

        use bytes::Bytes;
        use http_body_util::{BodyExt, Full};
        use hyper::{Method, Request, Response, StatusCode};
        use hyper_util::rt::TokioIo;
        use k8s_openapi::api::coordination::v1::Lease;

        #[derive(Clone, Default)]
        pub struct FakeApi {
            pub leases: Arc<Mutex<HashMap<String, Lease>>>,
            pub failing: Arc<AtomicBool>,
            version: Arc<AtomicU64>,
        }

        fn status(code: u16, reason: &str) -> Response<Full<Bytes>> {
            let body = serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": reason, "reason": reason, "code": code,
            });
            Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .expect("response")
        }

        fn ok(code: StatusCode, lease: &Lease) -> Response<Full<Bytes>> {
            Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(
                    serde_json::to_vec(lease).expect("json"),
                )))
                .expect("response")
        }

        impl FakeApi {
            async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
                if self.failing.load(Ordering::SeqCst) {
                    return status(503, "ServiceUnavailable");
                }
                let path = req.uri().path().to_owned();
                let method = req.method().clone();
                let Ok(body) = req.into_body().collect().await else {
                    return status(400, "BadRequest");
                };
                let body = body.to_bytes();
                let prefix = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";
                let Some(rest) = path.strip_prefix(prefix) else {
                    return status(404, "NotFound");
                };
                let name = rest.trim_start_matches('/').to_owned();
                let mut leases = self.leases.lock().expect("lock");
                match method {
                    Method::GET => match leases.get(&name) {
                        Some(l) => ok(StatusCode::OK, l),
                        None => status(404, "NotFound"),
                    },
                    Method::POST => {
                        let Ok(mut lease) = serde_json::from_slice::<Lease>(&body) else {
                            return status(400, "BadRequest");
                        };
                        let name = lease.metadata.name.clone().unwrap_or_default();
                        if leases.contains_key(&name) {
                            return status(409, "AlreadyExists");
                        }
                        let rv = self.version.fetch_add(1, Ordering::SeqCst) + 1;
                        lease.metadata.resource_version = Some(rv.to_string());
                        leases.insert(name, lease.clone());
                        ok(StatusCode::CREATED, &lease)
                    }
                    Method::PUT => {
                        let Ok(mut lease) = serde_json::from_slice::<Lease>(&body) else {
                            return status(400, "BadRequest");
                        };
                        let Some(stored) = leases.get(&name) else {
                            return status(404, "NotFound");
                        };
                        if lease.metadata.resource_version != stored.metadata.resource_version {
                            return status(409, "Conflict");
                        }
                        let rv = self.version.fetch_add(1, Ordering::SeqCst) + 1;
                        lease.metadata.resource_version = Some(rv.to_string());
                        leases.insert(name, lease.clone());
                        ok(StatusCode::OK, &lease)
                    }
                    _ => status(405, "MethodNotAllowed"),
                }
            }

            pub async fn start(&self) -> kube::Client {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let addr = listener.local_addr().expect("addr");
                let api = self.clone();
                tokio::spawn(async move {
                    while let Ok((stream, _)) = listener.accept().await {
                        let api = api.clone();
                        tokio::spawn(async move {
                            let service = hyper::service::service_fn(move |req| {
                                let api = api.clone();
                                async move { Ok::<_, Infallible>(api.handle(req).await) }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                });
                let url: hyper::Uri = format!("http://{addr}").parse().expect("uri");
                kube::Client::try_from(kube::Config::new(url)).expect("client")
            }

            pub fn holder(&self) -> Option<String> {
                let leases = self.leases.lock().expect("lock");
                leases
                    .get("hypersync-operator-leader")
                    .and_then(|l| l.spec.as_ref()?.holder_identity.clone())
            }

            pub fn transitions(&self) -> i32 {
                let leases = self.leases.lock().expect("lock");
                leases
                    .get("hypersync-operator-leader")
                    .and_then(|l| l.spec.as_ref()?.lease_transitions)
                    .unwrap_or(-1)
            }
        }
    }

    fn fast() -> LeaseTimings {
        LeaseTimings {
            lease_duration: Duration::from_secs(2),
            renew_deadline: Duration::from_millis(1200),
            retry_period: Duration::from_millis(100),
        }
    }

    async fn wait_for(rx: &mut watch::Receiver<bool>, want: bool, within: Duration) -> bool {
        tokio::time::timeout(within, rx.wait_for(|v| *v == want))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_leader_at_a_time_and_release_hands_over_at_once() {
        let api = fake_api::FakeApi::default();
        let client = api.start().await;
        let (stop_a, stopped_a) = tokio::sync::oneshot::channel::<()>();
        let (stop_b, stopped_b) = tokio::sync::oneshot::channel::<()>();
        let metrics = Metrics::new();
        let a = LeaderElector::new(
            client.clone(),
            "ops",
            "hypersync-operator-leader",
            "a",
            fast(),
        )
        .with_metrics(metrics.clone())
        .run(async move {
            let _ = stopped_a.await;
        });
        let mut rx_a = a.subscribe();
        assert!(
            wait_for(&mut rx_a, true, Duration::from_secs(5)).await,
            "a never led"
        );
        assert!(metrics.encode().contains("hypersync_leader 1"));
        let b = LeaderElector::new(client, "ops", "hypersync-operator-leader", "b", fast()).run(
            async move {
                let _ = stopped_b.await;
            },
        );
        let mut rx_b = b.subscribe();

        // For a while (several retry periods), exactly one leads and it stays a.
        for _ in 0..30 {
            assert!(
                a.is_leader() && !b.is_leader(),
                "a={} b={}",
                a.is_leader(),
                b.is_leader()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(api.holder().as_deref(), Some("a"));
        assert_eq!(api.transitions(), 0);

        // a shuts down: it releases, and b takes over well before the 2 s lease would expire.
        let started = Instant::now();
        let _ = stop_a.send(());
        a.join().await;
        assert!(!*rx_a.borrow());
        assert!(metrics.encode().contains("hypersync_leader 0"));
        assert!(
            wait_for(&mut rx_b, true, Duration::from_secs(5)).await,
            "b never took over"
        );
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "handover took {:?}",
            started.elapsed()
        );
        assert_eq!(api.holder().as_deref(), Some("b"));
        assert_eq!(api.transitions(), 1);

        let _ = stop_b.send(());
        b.join().await;
        assert_eq!(api.holder(), None, "b released on shutdown");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stale_lease_of_a_dead_holder_is_taken_after_one_local_term() {
        let api = fake_api::FakeApi::default();
        // A holder that died long ago (by the Lease's timestamps the term is long over).
        let mut stale = lease(Some("ghost"), Some(-3600), Some(2));
        stale.metadata.resource_version = Some("100".into());
        api.leases
            .lock()
            .expect("lock")
            .insert("hypersync-operator-leader".into(), stale);
        let client = api.start().await;
        let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let started = Instant::now();
        let handle = LeaderElector::new(client, "ops", "hypersync-operator-leader", "a", fast())
            .run(async move {
                let _ = stopped.await;
            });
        let mut rx = handle.subscribe();
        // Not before it has seen the Lease unrenewed for a lease duration (2 s) itself.
        assert!(
            !wait_for(&mut rx, true, Duration::from_millis(1500)).await,
            "took over a Lease it had not watched expire"
        );
        assert!(
            wait_for(&mut rx, true, Duration::from_secs(5)).await,
            "never took over"
        );
        assert!(started.elapsed() >= fast().lease_duration);
        assert_eq!(api.holder().as_deref(), Some("a"));
        assert_eq!(api.transitions(), 4, "3 earlier transitions + this one");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn candidates_racing_for_an_absent_lease_elect_exactly_one() {
        let api = fake_api::FakeApi::default();
        let client = api.start().await;
        let (stop, stopped) = watch::channel(false);
        let handles: Vec<LeaderHandle> = ["a", "b", "c", "d"]
            .into_iter()
            .map(|id| {
                let mut stopped = stopped.clone();
                LeaderElector::new(
                    client.clone(),
                    "ops",
                    "hypersync-operator-leader",
                    id,
                    fast(),
                )
                .run(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
            })
            .collect();
        let mut seen_leader = None;
        for _ in 0..100 {
            let leaders: Vec<usize> = (0..handles.len())
                .filter(|i| handles[*i].is_leader())
                .collect();
            assert!(leaders.len() <= 1, "several leaders at once: {leaders:?}");
            if let Some(&i) = leaders.first() {
                // Once elected, the same candidate keeps leading while it renews.
                assert!(
                    seen_leader.is_none_or(|s| s == i),
                    "leadership moved from {seen_leader:?} to {i}"
                );
                seen_leader = Some(i);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(seen_leader.is_some(), "nobody was elected");
        assert_eq!(api.transitions(), 0);
        let _ = stop.send(true);
        for handle in handles {
            handle.join().await;
        }
        assert_eq!(api.holder(), None);
    }

    /// Opt-in: two electors against a real API server (e.g. kube-sim) at `$HYPERSYNC_TEST_API_URL`
    /// (plain http, no auth), Lease in namespace `default`:
    /// `HYPERSYNC_TEST_API_URL=http://127.0.0.1:PORT cargo test --lib leader::tests::against_api -- --ignored`
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs an API server at $HYPERSYNC_TEST_API_URL"]
    async fn against_api_server() {
        let Ok(url) = std::env::var("HYPERSYNC_TEST_API_URL") else {
            panic!("set HYPERSYNC_TEST_API_URL");
        };
        let url: hyper::Uri = url.parse().expect("url");
        let client = kube::Client::try_from(kube::Config::new(url)).expect("client");
        let name = format!("leader-test-{:08x}", rand::random::<u32>());
        let (stop_a, stopped_a) = tokio::sync::oneshot::channel::<()>();
        let (stop_b, stopped_b) = tokio::sync::oneshot::channel::<()>();
        let a = LeaderElector::new(client.clone(), "default", &name, "a", fast()).run(async move {
            let _ = stopped_a.await;
        });
        let mut rx_a = a.subscribe();
        assert!(
            wait_for(&mut rx_a, true, Duration::from_secs(5)).await,
            "a never led"
        );
        let b = LeaderElector::new(client.clone(), "default", &name, "b", fast()).run(async move {
            let _ = stopped_b.await;
        });
        let mut rx_b = b.subscribe();
        for _ in 0..30 {
            assert!(a.is_leader() && !b.is_leader());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stop_a.send(());
        a.join().await;
        assert!(
            wait_for(&mut rx_b, true, Duration::from_secs(2)).await,
            "b never took over"
        );
        let _ = stop_b.send(());
        b.join().await;
        let lease = Api::<Lease>::namespaced(client, "default")
            .get(&name)
            .await
            .expect("get lease");
        let spec = lease.spec.expect("spec");
        assert_eq!(spec.holder_identity, None);
        assert_eq!(spec.lease_transitions, Some(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leader_steps_down_when_renewals_fail_past_the_deadline() {
        use std::sync::atomic::Ordering;
        let api = fake_api::FakeApi::default();
        let client = api.start().await;
        let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = LeaderElector::new(client, "ops", "hypersync-operator-leader", "a", fast())
            .run(async move {
                let _ = stopped.await;
            });
        let mut rx = handle.subscribe();
        assert!(wait_for(&mut rx, true, Duration::from_secs(5)).await);
        let renewed = Instant::now();
        api.failing.store(true, Ordering::SeqCst);
        assert!(
            wait_for(&mut rx, false, Duration::from_secs(5)).await,
            "never stepped down"
        );
        let after = renewed.elapsed();
        // Stepped down after the renew deadline, before the lease could expire for others.
        assert!(
            after >= Duration::from_millis(900),
            "stepped down too early: {after:?}"
        );
        assert!(
            after < fast().lease_duration,
            "stepped down too late: {after:?}"
        );
        // Once the API recovers it leads again (its own Lease: renew).
        api.failing.store(false, Ordering::SeqCst);
        assert!(
            wait_for(&mut rx, true, Duration::from_secs(5)).await,
            "never re-acquired"
        );
    }
}

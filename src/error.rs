//! The operator's top-level reconcile `Error`, its bounded `reason()` (Event reason and metric label),
//! and the per-object exponential requeue `Backoff`.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Why a reconcile failed. Variants are named after the step that failed; the cause is the `source`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed. `step` says what the reconcile was doing
    /// (e.g. "apply inference Deployment"), never an object name.
    #[error("failed to {step}")]
    Kube {
        step: &'static str,
        #[source]
        source: kube::Error,
    },

    /// The object's spec is invalid in a way the schema and CEL rules could not catch.
    /// `field` is the JSON path of the offending field (e.g. `spec.placement.coordinates.r`).
    #[error("failed to validate {field}: {message}")]
    InvalidSpec { field: String, message: String },

    /// An object this one refers to does not exist (e.g. the AgentStack of an AgentNode).
    #[error("failed to find {kind} {name}")]
    MissingObject { kind: &'static str, name: String },

    /// Building or decoding a JSON document failed.
    #[error("failed to serialize {what}")]
    Serialization {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// The object lacks metadata every stored object has (name, namespace, uid); only reachable
    /// through a malformed watch event or a hand-built object.
    #[error("failed to read metadata.{field} of a {kind}")]
    MissingMetadata {
        kind: &'static str,
        field: &'static str,
    },
}

impl Error {
    /// Shorthand for [`Error::Kube`], for use in `map_err(Error::kube("apply Service"))`.
    pub fn kube(step: &'static str) -> impl FnOnce(kube::Error) -> Self {
        move |source| Error::Kube { step, source }
    }

    /// A short CamelCase reason from a fixed set, used as the Event reason and as the
    /// `reason` label of `hypersync_reconcile_errors_total`. Never contains object data.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube { source, .. } => kube_reason(source),
            Error::InvalidSpec { .. } => "InvalidSpec",
            Error::MissingObject { .. } => "MissingObject",
            Error::Serialization { .. } => "SerializationFailed",
            Error::MissingMetadata { .. } => "MissingMetadata",
        }
    }

    /// Whether retrying without a change to the object can help. Invalid specs and missing
    /// metadata cannot fix themselves; they still requeue (at the backoff cap) in case a
    /// referenced object or the operator's view changes, but callers may log them differently.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Kube { source, .. } => !matches!(
                kube_reason(source),
                "ApiInvalid" | "ApiForbidden" | "ApiUnauthorized"
            ),
            Error::MissingObject { .. } => true,
            Error::InvalidSpec { .. }
            | Error::Serialization { .. }
            | Error::MissingMetadata { .. } => false,
        }
    }

    /// Whether a retry resolves it without anyone acting: a conflict, an unavailable or overloaded
    /// API server, a dropped connection, or an object that went away meanwhile. Such failures are
    /// logged at debug level and counted, never reported as Warning Events.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Kube { source, .. } if matches!(
                kube_reason(source),
                "ApiConflict" | "ApiUnavailable" | "ApiTransport" | "ApiNotFound"
            )
        )
    }

    /// Every value [`Error::reason`] can return, for tests and dashboards.
    pub const REASONS: &'static [&'static str] = &[
        "ApiConflict",
        "ApiForbidden",
        "ApiUnauthorized",
        "ApiInvalid",
        "ApiNotFound",
        "ApiUnavailable",
        "ApiError",
        "ApiTransport",
        "InvalidSpec",
        "MissingObject",
        "SerializationFailed",
        "MissingMetadata",
    ];
}

/// Maps a kube error to a bounded reason by HTTP status class, not by message text.
fn kube_reason(err: &kube::Error) -> &'static str {
    match err {
        kube::Error::Api(status) => match status.code {
            401 => "ApiUnauthorized",
            403 => "ApiForbidden",
            404 | 410 => "ApiNotFound",
            409 => "ApiConflict",
            400 | 422 => "ApiInvalid",
            429 | 500..=599 => "ApiUnavailable",
            _ => "ApiError",
        },
        _ => "ApiTransport",
    }
}

/// Identifies one object for backoff bookkeeping. `namespace` is `None` for cluster-scoped kinds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: impl Into<String>, namespace: Option<&str>, name: impl Into<String>) -> Self {
        ObjectKey {
            kind: kind.into(),
            namespace: namespace.map(str::to_owned),
            name: name.into(),
        }
    }

    /// The key of a typed object; `None` when the object has no name (never true for stored objects).
    pub fn for_object<K>(obj: &K) -> Option<Self>
    where
        K: kube::Resource<DynamicType = ()>,
    {
        let meta = obj.meta();
        Some(ObjectKey {
            kind: K::kind(&()).into_owned(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone()?,
        })
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.kind, ns, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// Per-object exponential requeue delays: `base * 2^failures`, capped, with a ±10% jitter that is
/// deterministic per (key, attempt) so objects failing together spread out yet tests are repeatable.
///
/// The delay never exceeds the cap: at the cap the jitter only shortens it (to within 10% below).
/// Call [`Backoff::reset`] after a successful reconcile and when an object is deleted, so the map
/// holds only objects that are currently failing.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: Mutex<HashMap<ObjectKey, u32>>,
}

impl Backoff {
    /// Relative jitter: each delay is scaled by a factor in `[1 - JITTER, 1 + JITTER)`.
    pub const JITTER: f64 = 0.10;
    /// The default first delay.
    pub const DEFAULT_BASE: Duration = Duration::from_secs(1);

    /// Base 1 s, factor 2, the given cap (from `--requeue-max-seconds`).
    pub fn new(cap: Duration) -> Self {
        Self::with_base(Self::DEFAULT_BASE, cap)
    }

    /// A custom first delay; a cap below the base is raised to the base.
    pub fn with_base(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap: cap.max(base),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Records one more failure of `key` and returns how long to wait before retrying it.
    pub fn next_delay(&self, key: &ObjectKey) -> Duration {
        let attempt = {
            let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
            let count = map.entry(key.clone()).or_insert(0);
            let attempt = *count;
            *count = count.saturating_add(1);
            attempt
        };
        self.delay_for(key, attempt)
    }

    /// [`Backoff::next_delay`] as the controller's requeue action, for `error_policy`.
    pub fn requeue(&self, key: &ObjectKey) -> kube::runtime::controller::Action {
        kube::runtime::controller::Action::requeue(self.next_delay(key))
    }

    /// Forgets the failures of `key`: its next failure waits the base delay again.
    pub fn reset(&self, key: &ObjectKey) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// How many consecutive failures are recorded for `key`.
    pub fn failures(&self, key: &ObjectKey) -> u32 {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    /// How many objects currently have failures recorded.
    pub fn tracked(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The cap delays never exceed.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// The delay after the `attempt`-th consecutive failure (0-based), jittered for `key`.
    fn delay_for(&self, key: &ObjectKey, attempt: u32) -> Duration {
        // 2^attempt saturates long before u32 overflow matters: cap it at 2^32.
        let factor = 2f64.powi(attempt.min(32) as i32);
        let raw = (self.base.as_secs_f64() * factor).min(self.cap.as_secs_f64());
        let jitter = 1.0 - Self::JITTER + 2.0 * Self::JITTER * unit_hash(key, attempt);
        Duration::from_secs_f64((raw * jitter).min(self.cap.as_secs_f64()))
    }
}

/// A number in `[0, 1)` derived from the key and attempt with SHA-256 (stable across builds).
fn unit_hash(key: &ObjectKey, attempt: u32) -> f64 {
    let mut hasher = Sha256::new();
    hasher.update(key.kind.as_bytes());
    hasher.update([0]);
    hasher.update(key.namespace.as_deref().unwrap_or("").as_bytes());
    hasher.update([0]);
    hasher.update(key.name.as_bytes());
    hasher.update([0]);
    hasher.update(attempt.to_be_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    // 53 high bits give a uniformly spaced f64 in [0, 1).
    (u64::from_be_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("AgentNode", Some("team-a"), name)
    }

    fn within_jitter(actual: Duration, expected_secs: f64) -> bool {
        let a = actual.as_secs_f64();
        a >= expected_secs * (1.0 - Backoff::JITTER) - 1e-9
            && a <= expected_secs * (1.0 + Backoff::JITTER) + 1e-9
    }

    #[test]
    fn delays_double_from_one_second() {
        let backoff = Backoff::new(Duration::from_secs(300));
        let k = key("a");
        for expected in [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0] {
            let d = backoff.next_delay(&k);
            assert!(
                within_jitter(d, expected),
                "{d:?} not within 10% of {expected}s"
            );
        }
        assert_eq!(backoff.failures(&k), 8);
        let action = backoff.requeue(&k);
        assert_eq!(backoff.failures(&k), 9);
        assert!(
            format!("{action:?}").contains("requeue_after: Some"),
            "{action:?}"
        );
    }

    #[test]
    fn delays_never_exceed_the_cap() {
        let cap = Duration::from_secs(300);
        let backoff = Backoff::new(cap);
        let k = key("capped");
        let delays: Vec<Duration> = (0..100).map(|_| backoff.next_delay(&k)).collect();
        assert!(delays.iter().all(|d| *d <= cap), "{delays:?}");
        // Past 2^9 = 512 s the raw delay is capped; jitter keeps it within 10% below the cap.
        for d in &delays[9..] {
            assert!(
                d.as_secs_f64() >= 270.0 - 1e-9,
                "{d:?} fell far below the cap"
            );
        }
    }

    #[test]
    fn reset_starts_over_and_only_affects_its_key() {
        let backoff = Backoff::new(Duration::from_secs(300));
        let (a, b) = (key("a"), key("b"));
        for _ in 0..5 {
            backoff.next_delay(&a);
            backoff.next_delay(&b);
        }
        backoff.reset(&a);
        assert_eq!(backoff.failures(&a), 0);
        assert_eq!(backoff.failures(&b), 5);
        assert_eq!(backoff.tracked(), 1);
        assert!(within_jitter(backoff.next_delay(&a), 1.0));
        assert!(within_jitter(backoff.next_delay(&b), 32.0));
    }

    #[test]
    fn jitter_is_deterministic_per_key_and_spreads_keys() {
        let one = Backoff::new(Duration::from_secs(300));
        let two = Backoff::new(Duration::from_secs(300));
        let k = key("same");
        let first: Vec<_> = (0..6).map(|_| one.next_delay(&k)).collect();
        let second: Vec<_> = (0..6).map(|_| two.next_delay(&k)).collect();
        assert_eq!(first, second);

        let spread: std::collections::BTreeSet<Duration> = (0..50)
            .map(|i| Backoff::new(Duration::from_secs(300)).next_delay(&key(&format!("n{i}"))))
            .collect();
        assert!(
            spread.len() > 40,
            "jitter should differ between keys: {spread:?}"
        );
    }

    #[test]
    fn cluster_scoped_and_namespaced_keys_differ() {
        let backoff = Backoff::new(Duration::from_secs(60));
        let ns = ObjectKey::new("ModelEntry", Some("x"), "m");
        let cluster = ObjectKey::new("ModelEntry", None, "m");
        backoff.next_delay(&ns);
        assert_eq!(backoff.failures(&cluster), 0);
        assert_eq!(ns.to_string(), "ModelEntry/x/m");
        assert_eq!(cluster.to_string(), "ModelEntry/m");
    }

    #[test]
    fn cap_below_base_is_raised_to_base() {
        let backoff = Backoff::with_base(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(backoff.cap(), Duration::from_secs(5));
        assert!(backoff.next_delay(&key("a")) <= Duration::from_secs(5));
    }

    fn api_error(code: u16) -> kube::Error {
        let status = kube::core::Status::failure("boom from object my-secret-name", "Whatever")
            .with_code(code);
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn reasons_are_bounded_and_free_of_object_data() {
        let errors = vec![
            Error::Kube {
                step: "apply Deployment",
                source: api_error(409),
            },
            Error::Kube {
                step: "apply Deployment",
                source: api_error(403),
            },
            Error::Kube {
                step: "apply Deployment",
                source: api_error(401),
            },
            Error::Kube {
                step: "get ModelEntry",
                source: api_error(404),
            },
            Error::Kube {
                step: "apply Deployment",
                source: api_error(422),
            },
            Error::Kube {
                step: "apply Deployment",
                source: api_error(503),
            },
            Error::Kube {
                step: "apply Deployment",
                source: api_error(418),
            },
            Error::Kube {
                step: "apply Deployment",
                source: kube::Error::LinesCodecMaxLineLengthExceeded,
            },
            Error::InvalidSpec {
                field: "spec.placement.coordinates.r".into(),
                message: "must be below 1".into(),
            },
            Error::MissingObject {
                kind: "AgentStack",
                name: "my-secret-name".into(),
            },
            Error::Serialization {
                what: "status patch",
                source: serde_json::from_str::<u8>("x").unwrap_err(),
            },
            Error::MissingMetadata {
                kind: "AgentNode",
                field: "name",
            },
        ];
        let reasons: std::collections::BTreeSet<&str> = errors.iter().map(Error::reason).collect();
        assert_eq!(
            reasons.len(),
            errors.len(),
            "every case maps to its own reason"
        );
        for reason in &reasons {
            assert!(
                Error::REASONS.contains(reason),
                "{reason} missing from REASONS"
            );
            assert!(!reason.contains("my-secret-name"));
            assert!(reason.chars().all(|c| c.is_ascii_alphanumeric()));
        }
        assert_eq!(reasons.len(), Error::REASONS.len());
    }

    #[test]
    fn messages_say_failed_to_and_keep_the_cause_as_source() {
        let err = Error::Kube {
            step: "apply inference Deployment",
            source: api_error(500),
        };
        assert_eq!(err.to_string(), "failed to apply inference Deployment");
        assert!(std::error::Error::source(&err).is_some());
        assert!(err.is_transient());
        let invalid = Error::InvalidSpec {
            field: "spec.x".into(),
            message: "bad".into(),
        };
        assert_eq!(invalid.to_string(), "failed to validate spec.x: bad");
        assert!(!invalid.is_transient());
        let mapped = Error::kube("get Lease")(api_error(403));
        assert_eq!(mapped.reason(), "ApiForbidden");
        assert!(!mapped.is_transient());
    }
}

//! Seeded fault injection: errors, dropped and hung connections and lost responses per verb,
//! resource, object or client; request latency; watches dropped or expired (410) mid-stream.
//! Configured by a flag string or JSON and changeable at runtime through `POST /sim/faults`.
//!
//! # Grammar (`--faults`, and the admin endpoint's body)
//!
//! ```text
//! spec     ::= "" | "off" | item ("," item)*
//! item     ::= "seed=" (U64 | "random")
//!            | VERB [target] "=" RATE ":" FAULT           request fault
//!            | "latency=" DUR [".." DUR] ["@" RATE]       delay, uniform in [min, max], on RATE of requests
//!            | "watch-drop" [target] "=" RATE             chance to close a watch per event batch / check
//!            | "watch-gone" [target] "=" RATE             same, sending an ERROR 410 Expired event first
//!            | "retry-after=" U64                         Retry-After seconds sent with 429
//!            | "hang-for=" DUR                            how long hang / applied-hang hold a request (10s)
//! VERB     ::= get list watch create update patch delete deletecollection, or "*" for any
//! target   ::= ["/" RESOURCE ["/" SUBRESOURCE]] ["{" scope (";" scope)* "}"]
//! scope    ::= "ua=" TEXT                                 User-Agent contains TEXT
//!            | "user=" TEXT ["*"]                         authenticated username is TEXT (starts with, with *)
//!            | "ns=" TEXT                                 namespace in the request path
//!            | "name=" TEXT                               object name: request path, or a create's metadata.name
//! FAULT    ::= 409 | 429 | 500 | 503 | 504                answer that error; the verb does not run
//!            | 410                                        watch only: ERROR event 410 Expired "too old resource
//!                                                         version" for a watch from a resourceVersion
//!            | "drop"                                     close the connection, no answer; the verb does not run
//!            | "hang"                                     answer nothing for hang-for, then close; verb not run
//!            | "applied-504"                              run the verb, then answer 504 Timeout (response lost)
//!            | "applied-drop"                             run the verb, then close the connection, no answer
//!            | "applied-hang"                             run the verb, answer nothing for hang-for, then close
//! RATE     ::= decimal in [0, 1]
//! DUR      ::= NUMBER ("us" | "ms" | "s")
//! ```
//!
//! Example: `seed=42,get=0.05:500,list=0.1:429,patch/agentnodes/status=0.2:409,`
//! `create{ua=hypersync-operator}=0.1:applied-504,watch=0.05:410,latency=5ms..20ms,`
//! `watch-drop=0.01,watch-gone/agentnodes=0.01`. Whitespace around items is ignored.
//!
//! Several items may name the same target (`get=0.05:500,get=0.01:429`); their rates add up (at
//! most 1) and one draw picks at most one of them. For a request the rules of the most specific
//! matching target apply: more scope fields first, then a named verb over `*`, then
//! `resource/subresource` over `resource` over none (`verb/resource`, `verb`, `*/resource`, `*` for
//! unscoped rules); among equally specific targets the first in the spec wins. `patch/agentnodes`
//! also matches patches of `agentnodes/status`. Watch rules pick their target the same way.
//!
//! Determinism: the RNG is ChaCha8 seeded from `seed` (default 0; `seed=random` draws one, which
//! [`FaultConfig`]'s `Display` then shows so a run can be replayed). Each [`Faults::decide`] with a
//! matching rule, each [`Faults::latency`] with latency configured and each [`Faults::watch_event`]
//! with a matching watch rule consumes draws in a fixed way, so the same seed and call sequence give
//! the same faults. Setting a new config reseeds and zeroes the counters.
//!
//! The server consults faults only for API resource requests (not for its admin endpoint or
//! discovery): [`Faults::latency`] before handling, [`Faults::decide`] once the verb is known
//! (answering errors with [`Faults::status_body`] and, for 429, a `Retry-After` header of
//! [`Faults::retry_after_seconds`]; running the verb first for the `applied-*` faults), and
//! [`Faults::watch_event`] before each batch of watch events and on the watch's bookmark tick.

mod config;
#[cfg(test)]
mod tests;

pub(crate) use config::VERBS;
pub use config::{
    DEFAULT_HANG_FOR, FaultAction, FaultConfig, FaultParseError, FaultRule, INJECTABLE_CODES,
    LatencySpec, Scope, Target, WatchFault, WatchRule, parse_duration,
};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What a fault decision looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestInfo<'a> {
    pub verb: &'a str,
    /// Plural resource name.
    pub resource: &'a str,
    /// `status`, `scale`, ... or empty.
    pub subresource: &'a str,
    /// Namespace in the request path, or empty.
    pub namespace: &'a str,
    /// Object name in the request path (or a create's `metadata.name`), or empty.
    pub name: &'a str,
    pub user_agent: &'a str,
    /// Authenticated username.
    pub user: &'a str,
    /// The resourceVersion a watch starts from (0: none).
    pub resource_version: u64,
}

/// An owned [`RequestInfo`], kept by a watch stream for [`Faults::watch_event`].
#[derive(Debug, Clone, Default)]
pub struct WatchTarget {
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub user_agent: String,
    pub user: String,
}

impl WatchTarget {
    pub fn from_info(r: &RequestInfo) -> Self {
        WatchTarget {
            resource: r.resource.to_string(),
            namespace: r.namespace.to_string(),
            name: r.name.to_string(),
            user_agent: r.user_agent.to_string(),
            user: r.user.to_string(),
        }
    }

    pub fn info(&self) -> RequestInfo<'_> {
        RequestInfo {
            verb: "watch",
            resource: &self.resource,
            namespace: &self.namespace,
            name: &self.name,
            user_agent: &self.user_agent,
            user: &self.user,
            ..RequestInfo::default()
        }
    }
}

struct State {
    config: FaultConfig,
    rng: ChaCha8Rng,
    /// Hits per request rule, by index in `config.rules`.
    rule_hits: Vec<u64>,
    /// Hits per watch rule, by index in `config.watch_rules`.
    watch_hits: Vec<u64>,
    /// (verb, fault name) -> hits.
    by_verb: BTreeMap<(String, String), u64>,
    delayed: u64,
}

impl State {
    fn reset_counters(&mut self) {
        self.rule_hits = vec![0; self.config.rules.len()];
        self.watch_hits = vec![0; self.config.watch_rules.len()];
        self.by_verb.clear();
        self.delayed = 0;
    }
}

/// The live fault injector shared by the server's request handlers.
pub struct Faults {
    state: Mutex<State>,
    /// Mirrors `!config.is_noop()` so requests skip the lock when nothing is injected.
    enabled: AtomicBool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults::new(FaultConfig::default())
    }
}

impl Faults {
    pub fn new(config: FaultConfig) -> Self {
        let f = Faults {
            state: Mutex::new(State {
                rng: ChaCha8Rng::seed_from_u64(config.seed),
                config: FaultConfig::default(),
                rule_hits: Vec::new(),
                watch_hits: Vec::new(),
                by_verb: BTreeMap::new(),
                delayed: 0,
            }),
            enabled: AtomicBool::new(false),
        };
        f.set(config);
        f
    }

    /// An injector that never injects anything.
    pub fn disabled() -> Self {
        Faults::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the configuration, reseeds the RNG and resets the counters.
    pub fn set(&self, config: FaultConfig) {
        let mut s = self.lock();
        s.rng = ChaCha8Rng::seed_from_u64(config.seed);
        self.enabled.store(!config.is_noop(), Ordering::Release);
        s.config = config;
        s.reset_counters();
    }

    /// Zeroes the counters; the configuration and the RNG stream go on.
    pub fn reset_counters(&self) {
        self.lock().reset_counters();
    }

    /// The configuration in force.
    pub fn config(&self) -> FaultConfig {
        self.lock().config.clone()
    }

    /// True when some fault may be injected.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// True when some rule is aimed at an object name (so a create's body name matters).
    pub fn names_objects(&self) -> bool {
        self.is_enabled() && self.lock().config.names_objects()
    }

    /// The fault to inject into this request, if any.
    pub fn decide(&self, r: &RequestInfo) -> Option<FaultAction> {
        if !self.is_enabled() {
            return None;
        }
        let mut guard = self.lock();
        let s = &mut *guard;
        let mut rules = s.config.applicable(r).peekable();
        rules.peek()?;
        let draw: f64 = s.rng.random();
        let mut acc = 0.0;
        let picked = rules.find(|&i| {
            acc += s.config.rules[i].rate;
            draw < acc
        })?;
        let action = s.config.rules[picked].action;
        // A watch without a resourceVersion has nothing that could be too old.
        if action == FaultAction::Gone && (r.verb != "watch" || r.resource_version == 0) {
            return None;
        }
        if let Some(h) = s.rule_hits.get_mut(picked) {
            *h += 1;
        }
        *s.by_verb
            .entry((r.verb.to_string(), action.name()))
            .or_default() += 1;
        Some(action)
    }

    /// How long to delay this request, if at all.
    pub fn latency(&self) -> Option<Duration> {
        if !self.is_enabled() {
            return None;
        }
        let mut s = self.lock();
        let l = s.config.latency.clone()?;
        if l.rate < 1.0 {
            let draw: f64 = s.rng.random();
            if draw >= l.rate {
                return None;
            }
        }
        let d = if l.max > l.min {
            let lo = l.min.as_micros() as u64;
            let hi = l.max.as_micros() as u64;
            Duration::from_micros(s.rng.random_range(lo..=hi))
        } else {
            l.min
        };
        s.delayed += 1;
        Some(d)
    }

    /// What to do to this watch stream now, if anything (call per batch of events sent, and per
    /// idle tick if idle watches should be hit too).
    pub fn watch_event(&self, r: &RequestInfo) -> Option<WatchFault> {
        if !self.is_enabled() {
            return None;
        }
        let mut guard = self.lock();
        let s = &mut *guard;
        let mut rules = s.config.applicable_watch(r).peekable();
        rules.peek()?;
        let draw: f64 = s.rng.random();
        let mut acc = 0.0;
        let picked = rules.find(|&i| {
            acc += s.config.watch_rules[i].rate;
            draw < acc
        })?;
        let fault = s.config.watch_rules[picked].fault;
        if let Some(h) = s.watch_hits.get_mut(picked) {
            *h += 1;
        }
        Some(fault)
    }

    /// The `Retry-After` seconds to send with an injected 429.
    pub fn retry_after_seconds(&self) -> u64 {
        self.lock().config.retry_after_seconds
    }

    /// How long `hang` and `applied-hang` hold a request.
    pub fn hang_for(&self) -> Duration {
        self.lock().config.hang_for
    }

    /// The metav1 Status for an injected code, with this config's Retry-After.
    pub fn status_body(&self, code: u16, group: &str, resource: &str, name: Option<&str>) -> Value {
        status_body(code, group, resource, name, self.retry_after_seconds())
    }

    /// Counters since the last [`Faults::set`] or [`Faults::reset_counters`]: `"verb:fault"`
    /// (e.g. `get:500`, `create:applied-504`) -> injected request faults, plus `"watch-drop"`,
    /// `"watch-gone"` and `"latency"`.
    pub fn stats(&self) -> BTreeMap<String, u64> {
        let s = self.lock();
        let mut out: BTreeMap<String, u64> = s
            .by_verb
            .iter()
            .map(|((v, a), n)| (format!("{v}:{a}"), *n))
            .collect();
        for kind in [WatchFault::Drop, WatchFault::Gone] {
            let n = s
                .config
                .watch_rules
                .iter()
                .zip(&s.watch_hits)
                .filter(|(w, _)| w.fault == kind)
                .map(|(_, n)| n)
                .sum();
            out.insert(kind.name().into(), n);
        }
        out.insert("latency".into(), s.delayed);
        out
    }

    /// The counters as served by `GET /sim/faults`: `{"total", "byKind": {"500": n,
    /// "applied-504": n, "watch-gone": n, "latency": n, ...}, "byVerb": {"get": {"500": n}},
    /// "byRule": {"get/pods=0.5:500": n, "watch-drop=0.1": n}}` (kinds and rules listed with 0).
    pub fn counters_json(&self) -> Value {
        let s = self.lock();
        let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_rule = Map::new();
        for (r, n) in s.config.rules.iter().zip(&s.rule_hits) {
            *by_kind.entry(r.action.name()).or_default() += n;
            by_rule.insert(r.to_string(), json!(n));
        }
        for (w, n) in s.config.watch_rules.iter().zip(&s.watch_hits) {
            *by_kind.entry(w.fault.name().into()).or_default() += n;
            by_rule.insert(w.to_string(), json!(n));
        }
        if s.config.latency.is_some() || s.delayed > 0 {
            by_kind.insert("latency".into(), s.delayed);
        }
        let mut by_verb: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
        for ((v, a), n) in &s.by_verb {
            by_verb.entry(v).or_default().insert(a.clone(), json!(n));
        }
        let total: u64 = by_kind.values().sum();
        json!({"total": total, "byKind": by_kind, "byVerb": by_verb, "byRule": by_rule})
    }
}

/// The metav1 Status the apiserver would send with `code` (messages and reasons as upstream:
/// InternalError, TooManyRequests with `retryAfterSeconds`, Conflict naming the object,
/// ServiceUnavailable, Timeout). `group`/`resource`/`name` fill `details`.
pub fn status_body(
    code: u16,
    group: &str,
    resource: &str,
    name: Option<&str>,
    retry_after_seconds: u64,
) -> Value {
    let name = name.filter(|n| !n.is_empty());
    let qualified = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    let mut details = Map::new();
    if let Some(n) = name {
        details.insert("name".into(), json!(n));
    }
    if !group.is_empty() {
        details.insert("group".into(), json!(group));
    }
    if !resource.is_empty() {
        details.insert("kind".into(), json!(resource));
    }
    let (reason, message) = match code {
        409 => (
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {qualified} {:?}: the object has been modified; \
                 please apply your changes to the latest version and try again",
                name.unwrap_or("")
            ),
        ),
        429 => {
            details.insert("retryAfterSeconds".into(), json!(retry_after_seconds));
            (
                "TooManyRequests",
                "Too many requests, please try again later.".to_string(),
            )
        }
        503 => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request".to_string(),
        ),
        504 => (
            "Timeout",
            "the server was unable to return a response in the time allotted, but may still be \
             processing the request"
                .to_string(),
        ),
        _ => {
            details.insert(
                "causes".into(),
                json!([{"message": "injected fault (kube-sim --faults)"}]),
            );
            (
                "InternalError",
                "Internal error occurred: injected fault (kube-sim --faults)".to_string(),
            )
        }
    };
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code
    })
}

//! Seeded fault injection: per-verb error rates (500 / 429 / 409 / 503 / 504), request latency and
//! dropped watches, configured by a flag string or JSON and changeable at runtime.
//!
//! # Grammar (`--faults`, and the admin endpoint's body)
//!
//! ```text
//! spec     ::= "" | "off" | item ("," item)*
//! item     ::= "seed=" (U64 | "random")
//!            | target "=" RATE ":" CODE                 error injection
//!            | "latency=" DUR [".." DUR] ["@" RATE]     delay, uniform in [min, max], on RATE of requests
//!            | "watch-drop=" RATE                        chance to end a watch per event / check
//!            | "retry-after=" U64                        Retry-After seconds sent with 429
//! target   ::= VERB ["/" RESOURCE]                       VERB: get list watch create update patch
//!                                                        delete deletecollection, or "*" for any
//! RATE     ::= decimal in [0, 1]
//! CODE     ::= 409 | 429 | 500 | 503 | 504
//! DUR      ::= NUMBER ("us" | "ms" | "s")
//! ```
//!
//! Example: `seed=42,get=0.05:500,list=0.1:429,patch=0.02:409,patch/agentnodes=0.2:409,`
//! `latency=5ms..20ms,watch-drop=0.01`. Whitespace around items is ignored.
//!
//! Several error items may name the same target (`get=0.05:500,get=0.01:429`); their rates add up
//! (at most 1) and one draw picks at most one of them. For a request the rules of the most specific
//! target that has any apply: `verb/resource`, then `verb`, then `*/resource`, then `*`.
//!
//! Determinism: the RNG is ChaCha8 seeded from `seed` (default 0; `seed=random` draws one, which
//! [`FaultConfig`]'s `Display` then shows so a run can be replayed). Each [`Faults::decide_for`]
//! with applicable rules, each [`Faults::latency`] with latency configured and each
//! [`Faults::drop_watch`] with a non-zero rate consumes draws in a fixed way, so the same seed and
//! call sequence give the same faults. Setting a new config reseeds.
//!
//! The server should consult faults only for API resource requests (not for its admin endpoint or
//! discovery), call [`Faults::latency`] before handling, [`Faults::decide_for`] before executing the
//! verb (answering with [`Faults::status_body`] and, for 429, a `Retry-After` header of
//! [`Faults::retry_after_seconds`]), and [`Faults::drop_watch`] before each watch event it sends
//! (and on its periodic bookmark tick, if it wants idle watches dropped too).

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

/// Status codes that may be injected.
pub const INJECTABLE_CODES: [u16; 5] = [409, 429, 500, 503, 504];

const VERBS: [&str; 9] = [
    "*",
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

/// Why a fault spec was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FaultParseError {
    #[error("failed to parse fault item {item:?}: {reason}")]
    Item { item: String, reason: String },
    #[error("failed to parse fault config: rates for {target:?} add up to {total}, more than 1")]
    RateSum { target: String, total: f64 },
    #[error("failed to parse fault config JSON: {0}")]
    Json(String),
}

/// Inject `code` on `rate` of the requests matching `verb` (and `resource`, if set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// A verb, or `*` for any.
    pub verb: String,
    /// Restricts the rule to one resource (plural, e.g. `agentnodes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    pub rate: f64,
    pub code: u16,
}

impl FaultRule {
    fn target(&self) -> String {
        match &self.resource {
            Some(r) => format!("{}/{r}", self.verb),
            None => self.verb.clone(),
        }
    }
}

/// Delay `rate` of the requests by a uniform duration in `[min, max]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySpec {
    pub min: Duration,
    pub max: Duration,
    pub rate: f64,
}

/// A parsed fault configuration. The default injects nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    pub seed: u64,
    pub rules: Vec<FaultRule>,
    pub latency: Option<LatencySpec>,
    /// Probability of ending a watch at each [`Faults::drop_watch`] call.
    pub watch_drop: f64,
    /// `Retry-After` seconds for injected 429s.
    pub retry_after_seconds: u64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            seed: 0,
            rules: Vec::new(),
            latency: None,
            watch_drop: 0.0,
            retry_after_seconds: 1,
        }
    }
}

/// The structured JSON form of a config (see [`FaultConfig::from_json`]).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigJson {
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    rules: Vec<FaultRule>,
    #[serde(default)]
    latency: Option<LatencyJson>,
    #[serde(default)]
    watch_drop: Option<f64>,
    #[serde(default)]
    retry_after_seconds: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LatencyJson {
    min: String,
    #[serde(default)]
    max: Option<String>,
    #[serde(default)]
    rate: Option<f64>,
}

fn item_err(item: &str, reason: impl Into<String>) -> FaultParseError {
    FaultParseError::Item {
        item: item.to_string(),
        reason: reason.into(),
    }
}

fn parse_rate(item: &str, s: &str) -> Result<f64, FaultParseError> {
    let r: f64 = s
        .trim()
        .parse()
        .map_err(|_| item_err(item, format!("rate {s:?} is not a number")))?;
    if !(0.0..=1.0).contains(&r) {
        return Err(item_err(item, format!("rate {r} is not between 0 and 1")));
    }
    Ok(r)
}

fn parse_code(item: &str, s: &str) -> Result<u16, FaultParseError> {
    let c: u16 = s
        .trim()
        .parse()
        .map_err(|_| item_err(item, format!("status code {s:?} is not a number")))?;
    if !INJECTABLE_CODES.contains(&c) {
        return Err(item_err(
            item,
            format!("status code {c} is not one of 409, 429, 500, 503, 504"),
        ));
    }
    Ok(c)
}

/// Parses `5ms`, `1.5s`, `250us`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        return Err(format!("duration {s:?} needs a unit (us, ms or s)"));
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("duration {s:?} is not a number with a unit"))?;
    if !v.is_finite() || v < 0.0 || v * scale > 3600.0 {
        return Err(format!("duration {s:?} must be between 0 and 1h"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

fn fmt_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us.is_multiple_of(1_000_000) {
        format!("{}s", us / 1_000_000)
    } else if us.is_multiple_of(1000) {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}

fn parse_latency(item: &str, v: &str) -> Result<LatencySpec, FaultParseError> {
    let (range, rate) = match v.split_once('@') {
        Some((range, rate)) => (range, parse_rate(item, rate)?),
        None => (v, 1.0),
    };
    let (min, max) = match range.split_once("..") {
        Some((a, b)) => (
            parse_duration(a).map_err(|e| item_err(item, e))?,
            parse_duration(b).map_err(|e| item_err(item, e))?,
        ),
        None => {
            let d = parse_duration(range).map_err(|e| item_err(item, e))?;
            (d, d)
        }
    };
    if min > max {
        return Err(item_err(item, "latency minimum is above the maximum"));
    }
    Ok(LatencySpec { min, max, rate })
}

impl FaultConfig {
    /// Parses the flag / admin string (see the module doc for the grammar).
    pub fn parse(spec: &str) -> Result<Self, FaultParseError> {
        let mut cfg = FaultConfig::default();
        let spec = spec.trim();
        if spec.is_empty() || spec == "off" {
            return Ok(cfg);
        }
        for raw in spec.split(',') {
            let item = raw.trim();
            if item.is_empty() {
                continue;
            }
            let Some((key, value)) = item.split_once('=') else {
                return Err(item_err(item, "expected key=value"));
            };
            let (key, value) = (key.trim(), value.trim());
            match key {
                "seed" => {
                    cfg.seed = if value == "random" {
                        rand::rng().next_u64()
                    } else {
                        value
                            .parse()
                            .map_err(|_| item_err(item, "seed must be an unsigned integer"))?
                    };
                }
                "latency" => cfg.latency = Some(parse_latency(item, value)?),
                "watch-drop" => cfg.watch_drop = parse_rate(item, value)?,
                "retry-after" => {
                    cfg.retry_after_seconds = value
                        .parse()
                        .map_err(|_| item_err(item, "retry-after must be whole seconds"))?;
                }
                target => {
                    let (verb, resource) = match target.split_once('/') {
                        Some((v, r)) if !r.is_empty() => (v, Some(r.to_string())),
                        Some(_) => return Err(item_err(item, "empty resource after '/'")),
                        None => (target, None),
                    };
                    if !VERBS.contains(&verb) {
                        return Err(item_err(
                            item,
                            format!(
                                "unknown key {verb:?} (expected seed, latency, watch-drop, \
                                 retry-after or a verb: {})",
                                VERBS.join(", ")
                            ),
                        ));
                    }
                    let Some((rate, code)) = value.split_once(':') else {
                        return Err(item_err(item, "expected RATE:CODE, e.g. 0.05:500"));
                    };
                    cfg.rules.push(FaultRule {
                        verb: verb.to_string(),
                        resource,
                        rate: parse_rate(item, rate)?,
                        code: parse_code(item, code)?,
                    });
                }
            }
        }
        cfg.check_sums()?;
        Ok(cfg)
    }

    /// Reads the admin endpoint's JSON: a string (the spec), `{"spec": "..."}`, or the structured
    /// form `{"seed": 42, "rules": [{"verb": "get", "resource": "pods", "rate": 0.05, "code": 500}],
    /// "latency": {"min": "5ms", "max": "20ms", "rate": 1.0}, "watchDrop": 0.01,
    /// "retryAfterSeconds": 1}` (every field optional).
    pub fn from_json(v: &Value) -> Result<Self, FaultParseError> {
        if let Some(s) = v.as_str() {
            return Self::parse(s);
        }
        if let Some(s) = v.get("spec").and_then(Value::as_str) {
            return Self::parse(s);
        }
        let j: ConfigJson =
            serde_json::from_value(v.clone()).map_err(|e| FaultParseError::Json(e.to_string()))?;
        let mut cfg = FaultConfig {
            seed: j.seed.unwrap_or(0),
            rules: Vec::new(),
            latency: None,
            watch_drop: 0.0,
            retry_after_seconds: j.retry_after_seconds.unwrap_or(1),
        };
        for r in j.rules {
            let item = format!("{}={}:{}", r.target(), r.rate, r.code);
            if !VERBS.contains(&r.verb.as_str()) {
                return Err(item_err(&item, format!("unknown verb {:?}", r.verb)));
            }
            parse_rate(&item, &r.rate.to_string())?;
            parse_code(&item, &r.code.to_string())?;
            cfg.rules.push(r);
        }
        if let Some(l) = j.latency {
            let item = format!("latency={}", l.min);
            let max = l.max.as_deref().unwrap_or(&l.min);
            let spec = format!("{}..{}@{}", l.min, max, l.rate.unwrap_or(1.0));
            cfg.latency = Some(parse_latency(&item, &spec)?);
        }
        if let Some(w) = j.watch_drop {
            cfg.watch_drop = parse_rate("watchDrop", &w.to_string())?;
        }
        cfg.check_sums()?;
        Ok(cfg)
    }

    /// The structured JSON form, plus `spec` (the equivalent string).
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("spec".into(), Value::String(self.to_string()));
        out.insert("seed".into(), json!(self.seed));
        out.insert(
            "rules".into(),
            serde_json::to_value(&self.rules).unwrap_or(Value::Null),
        );
        if let Some(l) = &self.latency {
            out.insert(
                "latency".into(),
                json!({"min": fmt_duration(l.min), "max": fmt_duration(l.max), "rate": l.rate}),
            );
        }
        out.insert("watchDrop".into(), json!(self.watch_drop));
        out.insert("retryAfterSeconds".into(), json!(self.retry_after_seconds));
        Value::Object(out)
    }

    /// True when nothing would ever be injected.
    pub fn is_noop(&self) -> bool {
        self.rules.iter().all(|r| r.rate == 0.0)
            && self.latency.as_ref().is_none_or(|l| l.rate == 0.0)
            && self.watch_drop == 0.0
    }

    fn check_sums(&self) -> Result<(), FaultParseError> {
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        for r in &self.rules {
            *sums.entry(r.target()).or_default() += r.rate;
        }
        for (target, total) in sums {
            if total > 1.0 + 1e-9 {
                return Err(FaultParseError::RateSum { target, total });
            }
        }
        Ok(())
    }

    /// The rules that apply to a request: those of the most specific target that has any.
    fn applicable(&self, verb: &str, resource: Option<&str>) -> Vec<&FaultRule> {
        let by = |v: &str, r: Option<&str>| -> Vec<&FaultRule> {
            self.rules
                .iter()
                .filter(|x| x.verb == v && x.resource.as_deref() == r)
                .collect()
        };
        let mut candidates: Vec<(&str, Option<&str>)> = Vec::new();
        if let Some(r) = resource {
            candidates.push((verb, Some(r)));
        }
        candidates.push((verb, None));
        if let Some(r) = resource {
            candidates.push(("*", Some(r)));
        }
        candidates.push(("*", None));
        candidates
            .into_iter()
            .map(|(v, r)| by(v, r))
            .find(|rules| !rules.is_empty())
            .unwrap_or_default()
    }
}

impl FromStr for FaultConfig {
    type Err = FaultParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultConfig::parse(s)
    }
}

impl fmt::Display for FaultConfig {
    /// The canonical spec string (parses back to an equal config).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seed={}", self.seed)?;
        for r in &self.rules {
            write!(f, ",{}={}:{}", r.target(), r.rate, r.code)?;
        }
        if let Some(l) = &self.latency {
            write!(f, ",latency={}", fmt_duration(l.min))?;
            if l.max != l.min {
                write!(f, "..{}", fmt_duration(l.max))?;
            }
            if l.rate != 1.0 {
                write!(f, "@{}", l.rate)?;
            }
        }
        if self.watch_drop > 0.0 {
            write!(f, ",watch-drop={}", self.watch_drop)?;
        }
        if self.retry_after_seconds != 1 {
            write!(f, ",retry-after={}", self.retry_after_seconds)?;
        }
        Ok(())
    }
}

struct State {
    config: FaultConfig,
    rng: ChaCha8Rng,
    injected: BTreeMap<String, u64>,
    dropped_watches: u64,
    delayed: u64,
}

/// The live fault injector shared by the server's request handlers.
pub struct Faults {
    state: Mutex<State>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults::new(FaultConfig::default())
    }
}

impl Faults {
    pub fn new(config: FaultConfig) -> Self {
        Faults {
            state: Mutex::new(State {
                rng: ChaCha8Rng::seed_from_u64(config.seed),
                config,
                injected: BTreeMap::new(),
                dropped_watches: 0,
                delayed: 0,
            }),
        }
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
        s.config = config;
        s.injected.clear();
        s.dropped_watches = 0;
        s.delayed = 0;
    }

    /// The configuration in force.
    pub fn config(&self) -> FaultConfig {
        self.lock().config.clone()
    }

    /// True when some fault may be injected.
    pub fn is_enabled(&self) -> bool {
        !self.lock().config.is_noop()
    }

    /// The status code to inject for a request with this verb (any resource), if any.
    pub fn decide(&self, verb: &str) -> Option<u16> {
        self.decide_inner(verb, None)
    }

    /// The status code to inject for a request with this verb on this resource, if any.
    pub fn decide_for(&self, verb: &str, resource: &str) -> Option<u16> {
        self.decide_inner(verb, Some(resource))
    }

    fn decide_inner(&self, verb: &str, resource: Option<&str>) -> Option<u16> {
        let mut s = self.lock();
        let picked = {
            let rules = s.config.applicable(verb, resource);
            if rules.is_empty() {
                return None;
            }
            let rules: Vec<(f64, u16)> = rules.iter().map(|r| (r.rate, r.code)).collect();
            let draw: f64 = s.rng.random();
            let mut acc = 0.0;
            rules.into_iter().find_map(|(rate, code)| {
                acc += rate;
                (draw < acc).then_some(code)
            })
        };
        if let Some(code) = picked {
            *s.injected.entry(format!("{verb}:{code}")).or_default() += 1;
        }
        picked
    }

    /// How long to delay this request, if at all.
    pub fn latency(&self) -> Option<Duration> {
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

    /// Whether to end the watch now (call per event sent, and per idle tick if wanted).
    pub fn drop_watch(&self) -> bool {
        let mut s = self.lock();
        let rate = s.config.watch_drop;
        if rate <= 0.0 {
            return false;
        }
        let draw: f64 = s.rng.random();
        let drop = draw < rate;
        if drop {
            s.dropped_watches += 1;
        }
        drop
    }

    /// The `Retry-After` seconds to send with an injected 429.
    pub fn retry_after_seconds(&self) -> u64 {
        self.lock().config.retry_after_seconds
    }

    /// The metav1 Status for an injected code, with this config's Retry-After.
    pub fn status_body(&self, code: u16, group: &str, resource: &str, name: Option<&str>) -> Value {
        status_body(code, group, resource, name, self.retry_after_seconds())
    }

    /// Counters since the last [`Faults::set`]: `"verb:code"` -> injected errors, plus
    /// `"watch-drop"` and `"latency"`.
    pub fn stats(&self) -> BTreeMap<String, u64> {
        let s = self.lock();
        let mut out = s.injected.clone();
        out.insert("watch-drop".into(), s.dropped_watches);
        out.insert("latency".into(), s.delayed);
        out
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

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str =
        "seed=42,get=0.05:500,list=0.1:429,patch=0.02:409,latency=5ms..20ms,watch-drop=0.01";

    #[test]
    fn parses_the_documented_example() {
        let c = FaultConfig::parse(SPEC).unwrap();
        assert_eq!(c.seed, 42);
        assert_eq!(c.rules.len(), 3);
        assert_eq!(
            c.rules[1],
            FaultRule {
                verb: "list".into(),
                resource: None,
                rate: 0.1,
                code: 429
            }
        );
        let l = c.latency.clone().unwrap();
        assert_eq!(
            (l.min, l.max, l.rate),
            (Duration::from_millis(5), Duration::from_millis(20), 1.0)
        );
        assert_eq!(c.watch_drop, 0.01);
        assert_eq!(c.to_string(), SPEC);
        assert_eq!(FaultConfig::parse(&c.to_string()).unwrap(), c);
    }

    #[test]
    fn empty_and_off_are_noop() {
        for s in ["", "off", "  ", "seed=3"] {
            let c = FaultConfig::parse(s).unwrap();
            assert!(c.is_noop(), "{s}");
        }
        let f = Faults::disabled();
        assert!(!f.is_enabled());
        for _ in 0..100 {
            assert_eq!(f.decide("get"), None);
            assert_eq!(f.latency(), None);
            assert!(!f.drop_watch());
        }
    }

    #[test]
    fn parse_errors() {
        let bad = [
            "get=0.5",
            "get=2:500",
            "get=0.1:404",
            "frob=0.1:500",
            "latency=5",
            "latency=20ms..5ms",
            "seed=x",
            "get/=0.1:500",
            "nokey",
            "get=0.7:500,get=0.5:429",
        ];
        for s in bad {
            assert!(FaultConfig::parse(s).is_err(), "{s}");
        }
        assert_eq!(
            FaultConfig::parse("get=0.1:404").unwrap_err().to_string(),
            "failed to parse fault item \"get=0.1:404\": status code 404 is not one of 409, 429, 500, 503, 504"
        );
    }

    #[test]
    fn same_seed_same_sequence() {
        let run = || {
            let f = Faults::new(FaultConfig::parse(SPEC).unwrap());
            (0..2000)
                .map(|i| {
                    let verb = ["get", "list", "patch", "create"][i % 4];
                    (f.decide(verb), f.latency(), f.drop_watch())
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
        let other = Faults::new(FaultConfig::parse(&SPEC.replace("seed=42", "seed=43")).unwrap());
        let a = run();
        let b: Vec<_> = (0..2000)
            .map(|i| {
                let verb = ["get", "list", "patch", "create"][i % 4];
                (other.decide(verb), other.latency(), other.drop_watch())
            })
            .collect();
        assert_ne!(a, b);
    }

    #[test]
    fn rates_are_roughly_honoured() {
        let f = Faults::new(FaultConfig::parse("seed=7,get=0.25:500,get=0.25:429").unwrap());
        let n = 20_000;
        let mut c500 = 0;
        let mut c429 = 0;
        for _ in 0..n {
            match f.decide("get") {
                Some(500) => c500 += 1,
                Some(429) => c429 += 1,
                Some(other) => panic!("unexpected {other}"),
                None => {}
            }
        }
        for c in [c500, c429] {
            let p = c as f64 / n as f64;
            assert!((0.23..0.27).contains(&p), "rate {p}");
        }
        assert_eq!(f.decide("list"), None);
        assert_eq!(f.stats()["get:500"], c500 as u64);
    }

    #[test]
    fn most_specific_target_wins() {
        let f = Faults::new(
            FaultConfig::parse("patch/agentnodes=1:409,patch=1:500,*/pods=1:503,*=1:429").unwrap(),
        );
        assert_eq!(f.decide_for("patch", "agentnodes"), Some(409));
        assert_eq!(f.decide_for("patch", "deployments"), Some(500));
        assert_eq!(f.decide("patch"), Some(500));
        assert_eq!(f.decide_for("get", "pods"), Some(503));
        assert_eq!(f.decide_for("get", "nodes"), Some(429));
        assert_eq!(f.decide("delete"), Some(429));
    }

    #[test]
    fn latency_in_range_and_fixed() {
        let f = Faults::new(FaultConfig::parse("latency=5ms..20ms").unwrap());
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let d = f.latency().unwrap();
            assert!(
                d >= Duration::from_millis(5) && d <= Duration::from_millis(20),
                "{d:?}"
            );
            seen.insert(d);
        }
        assert!(seen.len() > 50);
        let f = Faults::new(FaultConfig::parse("latency=1.5s").unwrap());
        assert_eq!(f.latency(), Some(Duration::from_millis(1500)));
        let f = Faults::new(FaultConfig::parse("seed=1,latency=10ms@0.5").unwrap());
        let hits = (0..1000).filter(|_| f.latency().is_some()).count();
        assert!((400..600).contains(&hits), "{hits}");
        assert_eq!(f.stats()["latency"], hits as u64);
    }

    #[test]
    fn watch_drop_rate() {
        let f = Faults::new(FaultConfig::parse("seed=9,watch-drop=0.1").unwrap());
        let drops = (0..10_000).filter(|_| f.drop_watch()).count();
        assert!((800..1200).contains(&drops), "{drops}");
        let f = Faults::new(FaultConfig::parse("watch-drop=1").unwrap());
        assert!(f.drop_watch());
    }

    #[test]
    fn set_at_runtime_reseeds() {
        let f = Faults::disabled();
        assert_eq!(f.decide("get"), None);
        f.set(FaultConfig::parse("seed=5,get=0.5:500").unwrap());
        let first: Vec<_> = (0..50).map(|_| f.decide("get")).collect();
        assert!(first.contains(&Some(500)) && first.contains(&None));
        f.set(FaultConfig::parse("seed=5,get=0.5:500").unwrap());
        let again: Vec<_> = (0..50).map(|_| f.decide("get")).collect();
        assert_eq!(first, again);
        assert!(f.is_enabled());
        f.set(FaultConfig::parse("off").unwrap());
        assert!(!f.is_enabled());
    }

    #[test]
    fn json_forms() {
        let a = FaultConfig::from_json(&json!(SPEC)).unwrap();
        let b = FaultConfig::from_json(&json!({"spec": SPEC})).unwrap();
        assert_eq!(a, b);
        let c = FaultConfig::from_json(&json!({
            "seed": 42,
            "rules": [
                {"verb": "get", "rate": 0.05, "code": 500},
                {"verb": "list", "rate": 0.1, "code": 429},
                {"verb": "patch", "rate": 0.02, "code": 409}
            ],
            "latency": {"min": "5ms", "max": "20ms"},
            "watchDrop": 0.01
        }))
        .unwrap();
        assert_eq!(a, c);
        // to_json round-trips through the structured form.
        let mut j = a.to_json();
        assert_eq!(j["spec"], SPEC);
        j.as_object_mut().unwrap().remove("spec");
        assert_eq!(FaultConfig::from_json(&j).unwrap(), a);
        assert!(
            FaultConfig::from_json(&json!({"rules": [{"verb": "get", "rate": 0.1, "code": 418}]}))
                .is_err()
        );
        assert!(FaultConfig::from_json(&json!({"bogus": 1})).is_err());
        assert!(FaultConfig::from_json(&json!(5)).is_err());
    }

    #[test]
    fn random_seed_is_reported() {
        let c = FaultConfig::parse("seed=random,get=0.1:500").unwrap();
        assert!(c.to_string().starts_with(&format!("seed={},", c.seed)));
    }

    #[test]
    fn status_bodies() {
        let s = status_body(409, "hypersync.io", "agentnodes", Some("n1"), 1);
        assert_eq!(s["reason"], "Conflict");
        assert_eq!(s["code"], 409);
        assert_eq!(
            s["message"],
            "Operation cannot be fulfilled on agentnodes.hypersync.io \"n1\": the object has been \
             modified; please apply your changes to the latest version and try again"
        );
        assert_eq!(
            s["details"],
            json!({"name": "n1", "group": "hypersync.io", "kind": "agentnodes"})
        );
        let s = Faults::new(FaultConfig::parse("retry-after=3").unwrap())
            .status_body(429, "", "pods", None);
        assert_eq!(s["reason"], "TooManyRequests");
        assert_eq!(
            s["details"],
            json!({"kind": "pods", "retryAfterSeconds": 3})
        );
        let s = status_body(500, "", "pods", None, 1);
        assert_eq!(s["reason"], "InternalError");
        assert!(
            s["message"]
                .as_str()
                .unwrap()
                .starts_with("Internal error occurred: ")
        );
        assert_eq!(
            status_body(503, "", "pods", None, 1)["reason"],
            "ServiceUnavailable"
        );
        assert_eq!(status_body(504, "", "pods", None, 1)["reason"], "Timeout");
    }
}

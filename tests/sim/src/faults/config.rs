//! The fault configuration: its flag grammar (see the `faults` module doc), the structured JSON form
//! of the admin endpoint, the canonical spec string, and which rules apply to a request.

use super::RequestInfo;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Status codes that may be injected instead of running the verb (410 only on watches).
pub const INJECTABLE_CODES: [u16; 6] = [409, 410, 429, 500, 503, 504];

/// How long `hang` and `applied-hang` hold a request when `hang-for` is not given.
pub const DEFAULT_HANG_FOR: Duration = Duration::from_secs(10);

/// `*` (any verb, first) and the API verbs.
pub(crate) const VERBS: [&str; 9] = [
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

const ACTIONS_HELP: &str =
    "409, 410, 429, 500, 503, 504, drop, hang, applied-504, applied-drop or applied-hang";

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

fn item_err(item: &str, reason: impl Into<String>) -> FaultParseError {
    FaultParseError::Item {
        item: item.to_string(),
        reason: reason.into(),
    }
}

/// What an injected request fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultAction {
    /// Answer with this status (409, 429, 500, 503, 504) instead of running the verb.
    Error(u16),
    /// Watch only: answer a watch started from a resourceVersion with a 410 `Expired` ERROR event.
    Gone,
    /// Close the connection without an answer; the verb does not run.
    Drop,
    /// Answer nothing for `hang-for`, then close the connection; the verb does not run.
    Hang,
    /// Run the verb, then answer 504 `Timeout` whatever its outcome (the response was lost).
    AppliedTimeout,
    /// Run the verb, then close the connection without an answer.
    AppliedDrop,
    /// Run the verb, answer nothing for `hang-for`, then close the connection.
    AppliedHang,
}

impl FaultAction {
    fn parse(item: &str, s: &str) -> Result<Self, FaultParseError> {
        let s = s.trim();
        Ok(match s {
            "drop" => FaultAction::Drop,
            "hang" => FaultAction::Hang,
            "applied-504" => FaultAction::AppliedTimeout,
            "applied-drop" => FaultAction::AppliedDrop,
            "applied-hang" => FaultAction::AppliedHang,
            code => {
                let c: u16 = code.parse().map_err(|_| {
                    item_err(item, format!("fault {code:?} is not one of {ACTIONS_HELP}"))
                })?;
                Self::from_code(item, c)?
            }
        })
    }

    fn from_code(item: &str, c: u16) -> Result<Self, FaultParseError> {
        match c {
            410 => Ok(FaultAction::Gone),
            c if INJECTABLE_CODES.contains(&c) => Ok(FaultAction::Error(c)),
            c => Err(item_err(
                item,
                format!("status code {c} is not one of {ACTIONS_HELP}"),
            )),
        }
    }

    /// The name used in the spec and in the counters: `500`, `410`, `drop`, `applied-504`, ...
    pub fn name(&self) -> String {
        match self {
            FaultAction::Error(c) => c.to_string(),
            FaultAction::Gone => "410".into(),
            FaultAction::Drop => "drop".into(),
            FaultAction::Hang => "hang".into(),
            FaultAction::AppliedTimeout => "applied-504".into(),
            FaultAction::AppliedDrop => "applied-drop".into(),
            FaultAction::AppliedHang => "applied-hang".into(),
        }
    }

    /// True when the verb runs before the fault hits the response.
    pub fn runs_verb(&self) -> bool {
        matches!(
            self,
            FaultAction::AppliedTimeout | FaultAction::AppliedDrop | FaultAction::AppliedHang
        )
    }

    /// The status code sent, if the fault answers at all.
    pub fn code(&self) -> Option<u16> {
        match self {
            FaultAction::Error(c) => Some(*c),
            FaultAction::Gone => Some(410),
            FaultAction::AppliedTimeout => Some(504),
            FaultAction::Drop
            | FaultAction::Hang
            | FaultAction::AppliedDrop
            | FaultAction::AppliedHang => None,
        }
    }
}

/// Narrows a rule to some clients or objects; every field set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scope {
    /// A substring of the request's `User-Agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The authenticated username; a trailing `*` makes it a prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The namespace in the request path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The object's name (request path, or `metadata.name` of a create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Scope {
    fn len(&self) -> usize {
        [&self.user_agent, &self.user, &self.namespace, &self.name]
            .iter()
            .filter(|f| f.is_some())
            .count()
    }

    /// True when the scope names an object, so a create's body name is needed to match it.
    pub fn names_object(&self) -> bool {
        self.name.is_some()
    }

    pub(crate) fn matches(&self, r: &RequestInfo) -> bool {
        self.user_agent
            .as_deref()
            .is_none_or(|ua| r.user_agent.contains(ua))
            && self
                .user
                .as_deref()
                .is_none_or(|u| match u.strip_suffix('*') {
                    Some(prefix) => r.user.starts_with(prefix),
                    None => r.user == u,
                })
            && self.namespace.as_deref().is_none_or(|n| r.namespace == n)
            && self.name.as_deref().is_none_or(|n| r.name == n)
    }

    fn parse(item: &str, inner: &str) -> Result<Scope, FaultParseError> {
        let mut s = Scope::default();
        for part in inner
            .split([';', ','])
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let Some((k, v)) = part.split_once('=') else {
                return Err(item_err(
                    item,
                    format!("scope {part:?} is not key=value (ua, user, ns or name)"),
                ));
            };
            let v = v.trim();
            if v.is_empty() {
                return Err(item_err(item, format!("scope {k:?} has an empty value")));
            }
            let slot = match k.trim() {
                "ua" => &mut s.user_agent,
                "user" => &mut s.user,
                "ns" => &mut s.namespace,
                "name" => &mut s.name,
                other => {
                    return Err(item_err(
                        item,
                        format!("unknown scope {other:?} (expected ua, user, ns or name)"),
                    ));
                }
            };
            if slot.replace(v.to_string()).is_some() {
                return Err(item_err(item, format!("scope {k:?} given twice")));
            }
        }
        if s.len() == 0 {
            return Err(item_err(item, "empty scope {}"));
        }
        Ok(s)
    }

    fn check(&self, item: &str) -> Result<(), FaultParseError> {
        for (k, v) in [
            ("userAgent", &self.user_agent),
            ("user", &self.user),
            ("namespace", &self.namespace),
            ("name", &self.name),
        ] {
            if let Some(v) = v
                && (v.trim().is_empty() || v.contains([';', ',', '{', '}']))
            {
                return Err(item_err(
                    item,
                    format!("scope {k} {v:?} must be non-empty without ; , {{ or }}"),
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Display for Scope {
    /// `{ua=x;user=y;ns=z;name=w}` (empty for no scope).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len() == 0 {
            return Ok(());
        }
        let parts: Vec<String> = [
            ("ua", &self.user_agent),
            ("user", &self.user),
            ("ns", &self.namespace),
            ("name", &self.name),
        ]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
        write!(f, "{{{}}}", parts.join(";"))
    }
}

/// Resource (plural, optionally `plural/subresource`) and scope of a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub resource: Option<String>,
    pub scope: Scope,
}

impl Target {
    /// Higher is more specific: scope fields first, then a subresource, then a resource.
    fn rank(&self) -> (usize, u8) {
        let res = match &self.resource {
            None => 0,
            Some(r) if r.contains('/') => 2,
            Some(_) => 1,
        };
        (self.scope.len(), res)
    }

    fn matches(&self, r: &RequestInfo) -> bool {
        let res_ok = match self.resource.as_deref() {
            None => true,
            Some(want) => match want.split_once('/') {
                Some((res, sub)) => r.resource == res && r.subresource == sub,
                None => r.resource == want,
            },
        };
        res_ok && self.scope.matches(r)
    }

    fn suffix(&self) -> String {
        match &self.resource {
            Some(r) => format!("/{r}{}", self.scope),
            None => self.scope.to_string(),
        }
    }
}

/// Inject `action` on `rate` of the requests matching `verb` and `target`.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// A verb, or `*` for any.
    pub verb: String,
    pub target: Target,
    pub rate: f64,
    pub action: FaultAction,
}

impl FaultRule {
    /// `verb[/resource][{scope}]`: rules with equal targets share one draw.
    pub fn target_string(&self) -> String {
        format!("{}{}", self.verb, self.target.suffix())
    }

    fn rank(&self) -> (usize, bool, u8) {
        let (scope, res) = self.target.rank();
        (scope, self.verb != "*", res)
    }

    fn matches(&self, r: &RequestInfo) -> bool {
        (self.verb == "*" || self.verb == r.verb) && self.target.matches(r)
    }

    fn same_target(&self, other: &FaultRule) -> bool {
        self.verb == other.verb && self.target == other.target
    }
}

impl fmt::Display for FaultRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={}:{}",
            self.target_string(),
            self.rate,
            self.action.name()
        )
    }
}

/// What a watch fault does to a running watch stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WatchFault {
    /// Close the stream (`watch-drop`).
    Drop,
    /// Send an ERROR event with a 410 `Expired` Status, then close (`watch-gone`).
    Gone,
}

impl WatchFault {
    pub fn name(&self) -> &'static str {
        match self {
            WatchFault::Drop => "watch-drop",
            WatchFault::Gone => "watch-gone",
        }
    }
}

/// On `rate` of the event batches (and idle checks) of matching watches, do `fault`.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchRule {
    pub fault: WatchFault,
    pub target: Target,
    pub rate: f64,
}

impl WatchRule {
    fn target_string(&self) -> String {
        format!("watch{}", self.target.suffix())
    }
}

impl fmt::Display for WatchRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}={}",
            self.fault.name(),
            self.target.suffix(),
            self.rate
        )
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
    /// Faults hitting running watch streams (`watch-drop`, `watch-gone`).
    pub watch_rules: Vec<WatchRule>,
    /// `Retry-After` seconds for injected 429s.
    pub retry_after_seconds: u64,
    /// How long `hang` / `applied-hang` hold a request before closing the connection.
    pub hang_for: Duration,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            seed: 0,
            rules: Vec::new(),
            latency: None,
            watch_rules: Vec::new(),
            retry_after_seconds: 1,
            hang_for: DEFAULT_HANG_FOR,
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
    rules: Vec<RuleJson>,
    #[serde(default)]
    latency: Option<LatencyJson>,
    #[serde(default)]
    watch_drop: Option<f64>,
    #[serde(default)]
    watch_rules: Vec<RuleJson>,
    #[serde(default)]
    retry_after_seconds: Option<u64>,
    #[serde(default)]
    hang_for: Option<String>,
}

/// A request rule (`verb`, and `code` or `action`) or a watch rule (`fault`: `drop` or `gone`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RuleJson {
    #[serde(default)]
    verb: Option<String>,
    #[serde(default)]
    fault: Option<String>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    user_agent: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: Option<String>,
    rate: f64,
    /// A status code (409, 410, 429, 500, 503, 504) ...
    #[serde(default)]
    code: Option<u16>,
    /// ... or an action name (`drop`, `hang`, `applied-504`, ...).
    #[serde(default)]
    action: Option<String>,
}

impl RuleJson {
    fn target(&mut self) -> Target {
        Target {
            resource: self.resource.take(),
            scope: Scope {
                user_agent: self.user_agent.take(),
                user: self.user.take(),
                namespace: self.namespace.take(),
                name: self.name.take(),
            },
        }
    }
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

pub(crate) fn fmt_duration(d: Duration) -> String {
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

/// Splits `s` at `sep` outside `{...}`.
fn split_outside_braces(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            c if c == sep && depth == 0 => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// `key=value` split at the first `=` outside `{...}`.
fn split_key_value(item: &str) -> Option<(&str, &str)> {
    let mut depth = 0i32;
    for (i, c) in item.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            '=' if depth == 0 => return Some((&item[..i], &item[i + 1..])),
            _ => {}
        }
    }
    None
}

/// `head[/resource[/subresource]][{scope}]` -> (head, target).
fn parse_key<'a>(item: &str, key: &'a str) -> Result<(&'a str, Target), FaultParseError> {
    let (path, scope) = match key.find('{') {
        Some(i) => {
            let Some(inner) = key[i + 1..].strip_suffix('}') else {
                return Err(item_err(item, "a scope {...} must end the key"));
            };
            if inner.contains(['{', '}']) {
                return Err(item_err(item, "nested braces in the scope"));
            }
            (&key[..i], Scope::parse(item, inner)?)
        }
        None => (key, Scope::default()),
    };
    let (head, resource) = match path.split_once('/') {
        Some((h, r)) => {
            let parts: Vec<&str> = r.split('/').collect();
            if parts.iter().any(|p| p.trim().is_empty()) || parts.len() > 2 {
                return Err(item_err(
                    item,
                    "expected VERB/RESOURCE or VERB/RESOURCE/SUBRESOURCE with no empty part",
                ));
            }
            (h.trim(), Some(r.trim().to_string()))
        }
        None => (path.trim(), None),
    };
    Ok((head, Target { resource, scope }))
}

fn check_resource(item: &str, r: &Option<String>) -> Result<(), FaultParseError> {
    if let Some(r) = r {
        let parts: Vec<&str> = r.split('/').collect();
        if parts.len() > 2
            || parts
                .iter()
                .any(|p| p.trim().is_empty() || p.contains(['{', '}', ',', ';', '=']))
        {
            return Err(item_err(
                item,
                format!("resource {r:?} is not RESOURCE or RESOURCE/SUBRESOURCE"),
            ));
        }
    }
    Ok(())
}

fn make_rule(
    item: &str,
    verb: &str,
    target: Target,
    rate: f64,
    action: FaultAction,
) -> Result<FaultRule, FaultParseError> {
    if !VERBS.contains(&verb) {
        return Err(item_err(
            item,
            format!(
                "unknown key {verb:?} (expected seed, latency, watch-drop, watch-gone, \
                 retry-after, hang-for or a verb: {})",
                VERBS.join(", ")
            ),
        ));
    }
    if action == FaultAction::Gone && verb != "watch" {
        return Err(item_err(
            item,
            "410 is only injected on watches (use watch=RATE:410)",
        ));
    }
    check_resource(item, &target.resource)?;
    target.scope.check(item)?;
    Ok(FaultRule {
        verb: verb.to_string(),
        target,
        rate,
        action,
    })
}

impl FaultConfig {
    /// Parses the flag / admin string (see the module doc for the grammar).
    pub fn parse(spec: &str) -> Result<Self, FaultParseError> {
        let mut cfg = FaultConfig::default();
        let spec = spec.trim();
        if spec.is_empty() || spec == "off" {
            return Ok(cfg);
        }
        for raw in split_outside_braces(spec, ',') {
            let item = raw.trim();
            if item.is_empty() {
                continue;
            }
            let Some((key, value)) = split_key_value(item) else {
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
                "retry-after" => {
                    cfg.retry_after_seconds = value
                        .parse()
                        .map_err(|_| item_err(item, "retry-after must be whole seconds"))?;
                }
                "hang-for" => {
                    cfg.hang_for = parse_duration(value).map_err(|e| item_err(item, e))?;
                }
                key => {
                    let (head, target) = parse_key(item, key)?;
                    match head {
                        "watch-drop" | "watch-gone" => {
                            check_resource(item, &target.resource)?;
                            cfg.watch_rules.push(WatchRule {
                                fault: if head == "watch-drop" {
                                    WatchFault::Drop
                                } else {
                                    WatchFault::Gone
                                },
                                target,
                                rate: parse_rate(item, value)?,
                            });
                        }
                        verb => {
                            let Some((rate, action)) = value.split_once(':') else {
                                return Err(item_err(
                                    item,
                                    "expected RATE:FAULT, e.g. 0.05:500 or 0.1:applied-504",
                                ));
                            };
                            let rate = parse_rate(item, rate)?;
                            let action = FaultAction::parse(item, action)?;
                            cfg.rules.push(make_rule(item, verb, target, rate, action)?);
                        }
                    }
                }
            }
        }
        cfg.check_sums()?;
        Ok(cfg)
    }

    /// Reads the admin endpoint's JSON: a string (the spec), `{"spec": "..."}`, or the structured
    /// form `{"seed": 42, "rules": [{"verb": "patch", "resource": "agentnodes/status",
    /// "userAgent": "hypersync-operator", "user": "system:serviceaccount:ns:sa",
    /// "namespace": "ns", "name": "n1", "rate": 0.05, "code": 500}, {"verb": "create",
    /// "rate": 0.1, "action": "applied-504"}], "latency": {"min": "5ms", "max": "20ms",
    /// "rate": 1.0}, "watchDrop": 0.01, "watchRules": [{"fault": "gone", "resource": "pods",
    /// "rate": 0.01}], "retryAfterSeconds": 1, "hangFor": "10s"}` (every field optional except a
    /// rule's `verb` and `rate` and one of `code` / `action`).
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
            retry_after_seconds: j.retry_after_seconds.unwrap_or(1),
            ..FaultConfig::default()
        };
        for mut r in j.rules {
            let target = r.target();
            let verb = r.verb.take().unwrap_or_default();
            let item = format!("{verb}{}={}", target.suffix(), r.rate);
            if r.fault.is_some() {
                return Err(item_err(
                    &item,
                    "fault belongs to watchRules; rules take code or action",
                ));
            }
            let action = match (r.code, r.action.as_deref()) {
                (Some(c), None) => FaultAction::from_code(&item, c)?,
                (None, Some(a)) => FaultAction::parse(&item, a)?,
                _ => {
                    return Err(item_err(
                        &item,
                        "a rule needs exactly one of code and action",
                    ));
                }
            };
            let rate = parse_rate(&item, &r.rate.to_string())?;
            cfg.rules
                .push(make_rule(&item, &verb, target, rate, action)?);
        }
        if let Some(l) = j.latency {
            let item = format!("latency={}", l.min);
            let max = l.max.as_deref().unwrap_or(&l.min);
            let spec = format!("{}..{}@{}", l.min, max, l.rate.unwrap_or(1.0));
            cfg.latency = Some(parse_latency(&item, &spec)?);
        }
        if let Some(w) = j.watch_drop {
            cfg.watch_rules.push(WatchRule {
                fault: WatchFault::Drop,
                target: Target::default(),
                rate: parse_rate("watchDrop", &w.to_string())?,
            });
        }
        for mut w in j.watch_rules {
            let target = w.target();
            let fault = w.fault.as_deref().unwrap_or("");
            let item = format!("watch-{fault}{}={}", target.suffix(), w.rate);
            if w.verb.is_some() || w.code.is_some() || w.action.is_some() {
                return Err(item_err(
                    &item,
                    "watchRules take fault (drop or gone), not verb, code or action",
                ));
            }
            let fault = match fault {
                "drop" => WatchFault::Drop,
                "gone" => WatchFault::Gone,
                other => {
                    return Err(item_err(
                        &item,
                        format!("watch fault {other:?} is not drop or gone"),
                    ));
                }
            };
            check_resource(&item, &target.resource)?;
            target.scope.check(&item)?;
            cfg.watch_rules.push(WatchRule {
                fault,
                target,
                rate: parse_rate(&item, &w.rate.to_string())?,
            });
        }
        if let Some(h) = j.hang_for {
            cfg.hang_for = parse_duration(&h).map_err(|e| item_err("hangFor", e))?;
        }
        cfg.check_sums()?;
        Ok(cfg)
    }

    /// The structured JSON form, plus `spec` (the equivalent string).
    pub fn to_json(&self) -> Value {
        let scope_fields = |t: &Target, m: &mut Map<String, Value>| {
            if let Some(r) = &t.resource {
                m.insert("resource".into(), json!(r));
            }
            if let Ok(Value::Object(s)) = serde_json::to_value(&t.scope) {
                m.extend(s);
            }
        };
        let rules: Vec<Value> = self
            .rules
            .iter()
            .map(|r| {
                let mut m = Map::new();
                m.insert("verb".into(), json!(r.verb));
                scope_fields(&r.target, &mut m);
                m.insert("rate".into(), json!(r.rate));
                match r.action {
                    FaultAction::Error(c) => m.insert("code".into(), json!(c)),
                    FaultAction::Gone => m.insert("code".into(), json!(410)),
                    a => m.insert("action".into(), json!(a.name())),
                };
                Value::Object(m)
            })
            .collect();
        let watch_rules: Vec<Value> = self
            .watch_rules
            .iter()
            .map(|w| {
                let mut m = Map::new();
                m.insert(
                    "fault".into(),
                    json!(match w.fault {
                        WatchFault::Drop => "drop",
                        WatchFault::Gone => "gone",
                    }),
                );
                scope_fields(&w.target, &mut m);
                m.insert("rate".into(), json!(w.rate));
                Value::Object(m)
            })
            .collect();
        let mut out = Map::new();
        out.insert("spec".into(), Value::String(self.to_string()));
        out.insert("seed".into(), json!(self.seed));
        out.insert("rules".into(), Value::Array(rules));
        if let Some(l) = &self.latency {
            out.insert(
                "latency".into(),
                json!({"min": fmt_duration(l.min), "max": fmt_duration(l.max), "rate": l.rate}),
            );
        }
        out.insert("watchRules".into(), Value::Array(watch_rules));
        out.insert("retryAfterSeconds".into(), json!(self.retry_after_seconds));
        out.insert("hangFor".into(), json!(fmt_duration(self.hang_for)));
        Value::Object(out)
    }

    /// True when nothing would ever be injected.
    pub fn is_noop(&self) -> bool {
        self.rules.iter().all(|r| r.rate == 0.0)
            && self.latency.as_ref().is_none_or(|l| l.rate == 0.0)
            && self.watch_rules.iter().all(|w| w.rate == 0.0)
    }

    /// True when some rule is aimed at an object name (a create's body name is then looked up).
    pub fn names_objects(&self) -> bool {
        self.rules.iter().any(|r| r.target.scope.names_object())
    }

    fn check_sums(&self) -> Result<(), FaultParseError> {
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        for r in &self.rules {
            *sums.entry(r.target_string()).or_default() += r.rate;
        }
        for w in &self.watch_rules {
            *sums.entry(w.target_string()).or_default() += w.rate;
        }
        for (target, total) in sums {
            if total > 1.0 + 1e-9 {
                return Err(FaultParseError::RateSum { target, total });
            }
        }
        Ok(())
    }

    /// Indexes of the rules that apply to a request: those sharing the target of the most specific
    /// matching rule (scope, then verb, then subresource / resource; the first of equals wins).
    pub(crate) fn applicable(&self, r: &RequestInfo) -> impl Iterator<Item = usize> + '_ {
        let mut best: Option<(usize, (usize, bool, u8))> = None;
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.matches(r) {
                let rank = rule.rank();
                if best.is_none_or(|(_, b)| rank > b) {
                    best = Some((i, rank));
                }
            }
        }
        let winner = best.map(|(i, _)| &self.rules[i]);
        self.rules
            .iter()
            .enumerate()
            .filter(move |(_, rule)| winner.is_some_and(|w| w.same_target(rule)))
            .map(|(i, _)| i)
    }

    /// Indexes of the watch rules that apply to a watch stream (most specific target, as above).
    pub(crate) fn applicable_watch(&self, r: &RequestInfo) -> impl Iterator<Item = usize> + '_ {
        let mut best: Option<(usize, (usize, u8))> = None;
        for (i, rule) in self.watch_rules.iter().enumerate() {
            if rule.target.matches(r) {
                let rank = rule.target.rank();
                if best.is_none_or(|(_, b)| rank > b) {
                    best = Some((i, rank));
                }
            }
        }
        let winner = best.map(|(i, _)| &self.watch_rules[i].target);
        self.watch_rules
            .iter()
            .enumerate()
            .filter(move |(_, rule)| winner.is_some_and(|w| *w == rule.target))
            .map(|(i, _)| i)
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
            write!(f, ",{r}")?;
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
        for w in &self.watch_rules {
            write!(f, ",{w}")?;
        }
        if self.retry_after_seconds != 1 {
            write!(f, ",retry-after={}", self.retry_after_seconds)?;
        }
        if self.hang_for != DEFAULT_HANG_FOR {
            write!(f, ",hang-for={}", fmt_duration(self.hang_for))?;
        }
        Ok(())
    }
}

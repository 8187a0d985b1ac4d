//! Request counters per verb, group, resource, subresource, authenticated user and user agent,
//! served at `/sim/stats` (filtered by query parameters) and reset by `POST /sim/stats/reset`;
//! integration tests and benchmarks read them to count a controller's reads and writes.
//!
//! Recording is on every request path, so it allocates only for a combination not seen before: the
//! key is hashed from the borrowed strings (a word-at-a-time multiply-rotate hash) and looked up in
//! a table of rows under one short lock. Each row also keeps a latency histogram (`latency.rs`):
//! recording hands back the row's histogram, and the request's time is added to it with atomics
//! once its response is ready, without taking the lock again.

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

use super::latency::{Histogram, Latency};

/// What a verb does to the stored state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// get, list, watch (and GETs of non-resource paths).
    Read,
    /// create, update, patch, delete, deletecollection.
    Write,
    /// Any other method on a non-resource path.
    Other,
}

impl Access {
    pub fn of(verb: &str) -> Access {
        match verb {
            "get" | "list" | "watch" => Access::Read,
            "create" | "update" | "patch" | "delete" | "deletecollection" => Access::Write,
            _ => Access::Other,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Other => "other",
        }
    }
}

/// Lowercased HTTP methods of non-resource requests (the API verbs come from `faults::VERBS`),
/// kept as static strings so a row needs no verb allocation.
const METHODS: [&str; 6] = ["post", "put", "head", "options", "connect", "trace"];

fn static_verb(verb: &str) -> &'static str {
    crate::faults::VERBS[1..]
        .iter()
        .chain(&METHODS)
        .find(|v| **v == verb)
        .copied()
        .unwrap_or("other")
}

/// One request as recorded.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestKey<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    /// The subresource, or for non-resource requests the path.
    pub subresource: &'a str,
    /// The authenticated username (empty when the request was not authenticated).
    pub user: &'a str,
    pub user_agent: &'a str,
}

impl RequestKey<'_> {
    fn hash(&self, verb: &'static str) -> u64 {
        // Eight bytes at a time, each field ended by its length: cheap on the ~100 bytes of a key.
        // The quality only spreads rows; equal hashes are told apart by comparing the strings.
        let mix = |h: u64, x: u64| (h ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(26);
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for f in [
            verb,
            self.group,
            self.resource,
            self.subresource,
            self.user,
            self.user_agent,
        ] {
            let mut chunks = f.as_bytes().chunks_exact(8);
            for c in &mut chunks {
                let mut w = [0u8; 8];
                w.copy_from_slice(c);
                h = mix(h, u64::from_le_bytes(w));
            }
            let mut last = [0u8; 8];
            last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
            h = mix(h, u64::from_le_bytes(last));
            h = mix(h, f.len() as u64);
        }
        h
    }
}

#[derive(Debug)]
struct Row {
    verb: &'static str,
    group: Box<str>,
    resource: Box<str>,
    subresource: Box<str>,
    user: Box<str>,
    user_agent: Box<str>,
    count: u64,
    /// Time from receiving the request to its response being ready.
    latency: Arc<Latency>,
    /// Next row with the same hash.
    next: Option<u32>,
}

impl Row {
    fn is(&self, verb: &str, k: &RequestKey) -> bool {
        self.verb == verb
            && *self.resource == *k.resource
            && *self.subresource == *k.subresource
            && *self.user_agent == *k.user_agent
            && *self.user == *k.user
            && *self.group == *k.group
    }
}

/// Hasher for keys that already are hashes.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Default)]
struct Table {
    rows: Vec<Row>,
    /// Hash -> first row with that hash.
    index: HashMap<u64, u32, BuildHasherDefault<IdentityHasher>>,
}

/// Thread-safe request counters.
#[derive(Default)]
pub struct Stats {
    table: Mutex<Table>,
}

/// Which rows `/sim/stats` reports.
#[derive(Debug, Clone, Default)]
pub struct StatsFilter {
    /// Prefix of the user agent.
    pub user_agent: Option<String>,
    /// Prefix of the authenticated username.
    pub user: Option<String>,
    /// A verb (`patch`) or an access class (`write`, `read`).
    pub verb: Option<String>,
    /// `plural` or `plural.group`, optionally with `/subresource`.
    pub resource: Option<String>,
}

impl StatsFilter {
    /// From `?userAgent=&user=&verb=&resource=` (empty values are ignored).
    pub fn from_query(get: impl Fn(&str) -> Option<String>) -> StatsFilter {
        StatsFilter {
            user_agent: get("userAgent"),
            user: get("user"),
            verb: get("verb"),
            resource: get("resource"),
        }
    }

    fn matches(&self, r: &Row) -> bool {
        self.user_agent
            .as_deref()
            .is_none_or(|p| r.user_agent.starts_with(p))
            && self.user.as_deref().is_none_or(|p| r.user.starts_with(p))
            && self
                .verb
                .as_deref()
                .is_none_or(|v| r.verb == v || Access::of(r.verb).as_str() == v)
            && self.resource.as_deref().is_none_or(|want| {
                let (res, sub) = match want.split_once('/') {
                    Some((res, sub)) => (res, Some(sub)),
                    None => (want, None),
                };
                let res_ok = *r.resource == *res || qualified(r) == res;
                res_ok && sub.is_none_or(|s| *r.subresource == *s)
            })
    }
}

fn qualified(r: &Row) -> String {
    if r.group.is_empty() {
        r.resource.to_string()
    } else {
        format!("{}.{}", r.resource, r.group)
    }
}

fn bump(m: &mut BTreeMap<String, u64>, k: &str, c: u64) {
    match m.get_mut(k) {
        Some(v) => *v += c,
        None => {
            m.insert(k.to_string(), c);
        }
    }
}

impl Stats {
    /// Counts one request; returns the histogram its latency goes to ([`Latency::observe`]).
    pub fn record(&self, k: &RequestKey) -> Arc<Latency> {
        let verb = static_verb(k.verb);
        self.record_hashed(k, verb, k.hash(verb))
    }

    fn record_hashed(&self, k: &RequestKey, verb: &'static str, h: u64) -> Arc<Latency> {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut at = t.index.get(&h).copied();
        let mut last = None;
        while let Some(i) = at {
            let row = &mut t.rows[i as usize];
            if row.is(verb, k) {
                row.count += 1;
                return row.latency.clone();
            }
            last = Some(i);
            at = row.next;
        }
        let i = t.rows.len() as u32;
        let latency = Arc::new(Latency::default());
        t.rows.push(Row {
            verb,
            group: k.group.into(),
            resource: k.resource.into(),
            subresource: k.subresource.into(),
            user: k.user.into(),
            user_agent: k.user_agent.into(),
            count: 1,
            latency: latency.clone(),
            next: None,
        });
        match last {
            Some(l) => t.rows[l as usize].next = Some(i),
            None => {
                t.index.insert(h, i);
            }
        }
        latency
    }

    pub fn reset(&self) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.rows.clear();
        t.index.clear();
    }

    /// All counters (see [`Stats::to_json_filtered`]).
    pub fn to_json(&self) -> Value {
        self.to_json_filtered(&StatsFilter::default())
    }

    /// The counters of the requests the filter keeps:
    /// `{"total", "writes", "reads", "byVerb": {verb: n}, "byResource": {"plural[.group]": n},
    /// "byResourceVerb": {"plural[.group][/sub]": {verb: n}}, "byUser": {user: n},
    /// "byUserAgent": {ua: n}, "requests": [{verb, group, resource, subresource, user, userAgent,
    /// access, count}], "latency": L, "latencyByResourceVerb": {"plural[.group][/sub]": {verb: L}},
    /// "latencyByUserAgent": {ua: {"all": L, "byResourceVerb": {..: {verb: L}}}}}` where `L` is
    /// `{"count", "meanMs", "p50Ms", "p90Ms", "p99Ms", "maxMs"}` (time from the request received
    /// to its response ready; a watch's until its stream starts). Non-resource requests have an
    /// empty resource and their path as subresource; `byResource` and `byResourceVerb` (and the
    /// latencies by resource) leave them out.
    pub fn to_json_filtered(&self, f: &StatsFilter) -> Value {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let (mut total, mut writes, mut reads) = (0u64, 0u64, 0u64);
        let mut by_verb: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_resource: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_resource_verb: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        let mut by_user: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_ua: BTreeMap<String, u64> = BTreeMap::new();
        let mut rows: Vec<&Row> = t.rows.iter().filter(|r| f.matches(r)).collect();
        rows.sort_by(|a, b| {
            (
                a.verb,
                &a.group,
                &a.resource,
                &a.subresource,
                &a.user,
                &a.user_agent,
            )
                .cmp(&(
                    b.verb,
                    &b.group,
                    &b.resource,
                    &b.subresource,
                    &b.user,
                    &b.user_agent,
                ))
        });
        let mut out_rows = Vec::with_capacity(rows.len());
        let mut lat_all = Histogram::default();
        let mut lat_by_resource_verb = ResourceVerbLatency::new();
        let mut lat_by_ua: BTreeMap<&str, (Histogram, ResourceVerbLatency)> = BTreeMap::new();
        for r in rows {
            let c = r.count;
            let h = r.latency.snapshot();
            lat_all.merge(&h);
            let ua = lat_by_ua.entry(&r.user_agent).or_default();
            ua.0.merge(&h);
            let access = Access::of(r.verb);
            total += c;
            match access {
                Access::Write => writes += c,
                Access::Read => reads += c,
                Access::Other => {}
            }
            bump(&mut by_verb, r.verb, c);
            bump(&mut by_user, &r.user, c);
            bump(&mut by_ua, &r.user_agent, c);
            if !r.resource.is_empty() {
                let q = qualified(r);
                let with_sub = if r.subresource.is_empty() {
                    q.clone()
                } else {
                    format!("{q}/{}", r.subresource)
                };
                bump(&mut by_resource, &q, c);
                bump(
                    by_resource_verb.entry(with_sub.clone()).or_default(),
                    r.verb,
                    c,
                );
                let lat = lat_by_resource_verb.entry(with_sub.clone()).or_default();
                lat.entry(r.verb).or_default().merge(&h);
                let lat = ua.1.entry(with_sub).or_default();
                lat.entry(r.verb).or_default().merge(&h);
            }
            let mut row = Map::new();
            row.insert("verb".into(), json!(r.verb));
            row.insert("group".into(), json!(&*r.group));
            row.insert("resource".into(), json!(&*r.resource));
            row.insert("subresource".into(), json!(&*r.subresource));
            row.insert("user".into(), json!(&*r.user));
            row.insert("userAgent".into(), json!(&*r.user_agent));
            row.insert("access".into(), json!(access.as_str()));
            row.insert("count".into(), json!(c));
            out_rows.push(Value::Object(row));
        }
        let lat_by_ua: Map<String, Value> = lat_by_ua
            .into_iter()
            .map(|(ua, (all, by))| {
                (
                    ua.to_string(),
                    json!({"all": all.to_json(), "byResourceVerb": latency_json(&by)}),
                )
            })
            .collect();
        json!({"total": total, "writes": writes, "reads": reads, "byVerb": by_verb,
            "byResource": by_resource, "byResourceVerb": by_resource_verb, "byUser": by_user,
            "byUserAgent": by_ua, "requests": out_rows, "latency": lat_all.to_json(),
            "latencyByResourceVerb": latency_json(&lat_by_resource_verb),
            "latencyByUserAgent": lat_by_ua})
    }
}

/// Latencies by `plural[.group][/sub]`, then verb.
type ResourceVerbLatency<'a> = BTreeMap<String, BTreeMap<&'a str, Histogram>>;

fn latency_json(by: &ResourceVerbLatency) -> Value {
    Value::Object(
        by.iter()
            .map(|(res, verbs)| {
                let verbs: Map<String, Value> = verbs
                    .iter()
                    .map(|(v, h)| (v.to_string(), h.to_json()))
                    .collect();
                (res.clone(), Value::Object(verbs))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(verb: &'a str, resource: &'a str, user: &'a str, ua: &'a str) -> RequestKey<'a> {
        RequestKey {
            verb,
            group: if resource == "agentnodes" {
                "hypersync.io"
            } else {
                ""
            },
            resource,
            subresource: "",
            user,
            user_agent: ua,
        }
    }

    #[test]
    fn counts_per_user_agent_and_user_and_separates_writes() {
        let s = Stats::default();
        let op = "system:serviceaccount:hs:operator";
        for _ in 0..3 {
            s.record(&key("patch", "agentnodes", op, "hypersync-operator/0.1"));
        }
        s.record(&key("get", "agentnodes", op, "hypersync-operator/0.1"));
        s.record(&RequestKey {
            subresource: "status",
            ..key("patch", "agentnodes", op, "hypersync-operator/0.1")
        });
        s.record(&key("create", "configmaps", "admin", "kubectl/v1.33"));
        s.record(&key("get", "", "admin", "kubectl/v1.33"));
        let all = s.to_json();
        assert_eq!(
            (&all["total"], &all["writes"], &all["reads"]),
            (&json!(7), &json!(5), &json!(2))
        );
        assert_eq!(all["byVerb"], json!({"patch": 4, "get": 2, "create": 1}));
        assert_eq!(
            all["byResource"],
            json!({"agentnodes.hypersync.io": 5, "configmaps": 1})
        );
        assert_eq!(
            all["byResourceVerb"]["agentnodes.hypersync.io/status"],
            json!({"patch": 1})
        );
        assert_eq!(all["byUser"], json!({op: 5, "admin": 2}));
        let op_writes = s.to_json_filtered(&StatsFilter {
            user_agent: Some("hypersync-operator".into()),
            verb: Some("write".into()),
            ..StatsFilter::default()
        });
        assert_eq!(op_writes["total"], 4);
        assert_eq!(
            op_writes["byResourceVerb"],
            json!({"agentnodes.hypersync.io": {"patch": 3}, "agentnodes.hypersync.io/status": {"patch": 1}})
        );
        let by_user = s.to_json_filtered(&StatsFilter {
            user: Some("system:serviceaccount:hs:".into()),
            resource: Some("agentnodes.hypersync.io/status".into()),
            ..StatsFilter::default()
        });
        assert_eq!(by_user["total"], 1);
        let row = &by_user["requests"][0];
        assert_eq!(
            (&row["verb"], &row["access"], &row["count"], &row["user"]),
            (&json!("patch"), &json!("write"), &json!(1), &json!(op))
        );
        s.reset();
        assert_eq!(s.to_json()["total"], 0);
        assert_eq!(s.to_json()["requests"], json!([]));
    }

    #[test]
    fn latencies_are_kept_per_row_and_merged_by_user_agent_and_resource() {
        let s = Stats::default();
        let ms = std::time::Duration::from_millis;
        // The operator's creates take 2 ms, the bench's 100 ms; one agent patch 7 ms.
        for _ in 0..3 {
            s.record(&key("create", "agentnodes", "admin", "op"))
                .observe(ms(2));
        }
        s.record(&key("create", "agentnodes", "admin", "bench"))
            .observe(ms(100));
        s.record(&RequestKey {
            subresource: "status",
            ..key("patch", "agentnodes", "system:serviceaccount:a:n1", "agent")
        })
        .observe(ms(7));
        // Counted but not finished yet: no latency.
        let _pending = s.record(&key("get", "agentnodes", "admin", "op"));
        let j = s.to_json();
        assert_eq!(j["latency"]["count"], 5);
        assert_eq!(j["latency"]["maxMs"], 100.0);
        let op = &j["latencyByUserAgent"]["op"];
        assert_eq!(
            (&op["all"]["count"], &op["all"]["maxMs"]),
            (&json!(3), &json!(2.0))
        );
        let created = &op["byResourceVerb"]["agentnodes.hypersync.io"]["create"];
        assert_eq!(
            (&created["count"], &created["meanMs"]),
            (&json!(3), &json!(2.0))
        );
        assert_eq!(
            op["byResourceVerb"]["agentnodes.hypersync.io"]["get"]["count"],
            0
        );
        let all_creates = &j["latencyByResourceVerb"]["agentnodes.hypersync.io"]["create"];
        assert_eq!(
            (&all_creates["count"], &all_creates["maxMs"]),
            (&json!(4), &json!(100.0))
        );
        assert!(
            all_creates["p50Ms"].as_f64().unwrap() <= 2.5,
            "{all_creates}"
        );
        assert_eq!(
            j["latencyByUserAgent"]["agent"]["byResourceVerb"]["agentnodes.hypersync.io/status"]["patch"]
                ["meanMs"],
            7.0
        );
        // Filters apply to the latencies too.
        let bench = s.to_json_filtered(&StatsFilter {
            user_agent: Some("bench".into()),
            ..StatsFilter::default()
        });
        assert_eq!(bench["latency"]["meanMs"], 100.0);
        assert_eq!(bench["latencyByUserAgent"].as_object().unwrap().len(), 1);
    }

    #[test]
    fn many_distinct_keys_keep_their_own_counts() {
        let s = Stats::default();
        let names: Vec<String> = (0..2000).map(|i| format!("ua-{i}")).collect();
        for round in 0..3 {
            for (i, n) in names.iter().enumerate() {
                if i % 3 >= round {
                    s.record(&key("get", "pods", "u", n));
                }
            }
        }
        let j = s.to_json();
        assert_eq!(j["requests"].as_array().unwrap().len(), 2000);
        for (i, n) in names.iter().enumerate() {
            assert_eq!(j["byUserAgent"][n], (i % 3 + 1) as u64, "{n}");
        }
        // Rows sharing a hash are chained, each keeping its own count.
        let t = Stats::default();
        for _ in 0..2 {
            for n in &names[..5] {
                t.record_hashed(&key("get", "pods", "u", n), "get", 7);
            }
        }
        let j = t.to_json();
        assert_eq!(j["requests"].as_array().unwrap().len(), 5);
        assert!(names[..5].iter().all(|n| j["byUserAgent"][n] == 2));
        // Unknown methods are folded into one verb.
        s.record(&key("brew", "", "u", "x"));
        assert_eq!(s.to_json()["byVerb"]["other"], 1);
    }
}

//! kube-sim's request counters (`/sim/stats`): snapshots, the difference between two snapshots,
//! and the operator's share of a window by verb and kind, split into writes and reads.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

/// User-agent prefix of every client of the bench; every other request to the bench's own kube-sim
/// is the operator's (kube-rs sends no User-Agent unless told to, so today the operator's is "").
pub const USER_AGENT: &str = "hypersync-scale";

/// Verbs that change state; every other verb (get, list, watch, and the GETs of discovery and
/// OpenAPI, which kube-sim counts by path) is a read.
const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// The group and resource of the leader-election Lease.
const LEASE: (&str, &str) = ("coordination.k8s.io", "leases");

pub fn is_write(verb: &str) -> bool {
    WRITE_VERBS.contains(&verb)
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    verb: String,
    group: String,
    resource: String,
    subresource: String,
    user_agent: String,
}

/// One `/sim/stats` document: a count per verb, group, resource, subresource and user agent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot(BTreeMap<Key, u64>);

impl Snapshot {
    /// Reads the `requests` rows of a `/sim/stats` document; rows without a count are skipped.
    pub fn from_json(stats: &Value) -> Snapshot {
        let mut counts = BTreeMap::new();
        for row in stats
            .get("requests")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(count) = row.get("count").and_then(Value::as_u64) else {
                continue;
            };
            let field = |f: &str| {
                row.get(f)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let key = Key {
                verb: field("verb"),
                group: field("group"),
                resource: field("resource"),
                subresource: field("subresource"),
                user_agent: field("userAgent"),
            };
            *counts.entry(key).or_default() += count;
        }
        Snapshot(counts)
    }

    /// The requests made after `earlier` was taken (counters only grow; a key that shrank counts 0).
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot(
            self.0
                .iter()
                .map(|(k, c)| (k.clone(), c.saturating_sub(*earlier.0.get(k).unwrap_or(&0))))
                .filter(|(_, c)| *c > 0)
                .collect(),
        )
    }

    /// The operator's share: every request not sent by one of the bench's clients.
    pub fn operator(&self) -> Calls {
        let mut calls = Calls::default();
        for (k, &c) in &self.0 {
            if k.user_agent.starts_with(USER_AGENT) {
                continue;
            }
            calls.user_agents.insert(k.user_agent.clone());
            let target = match (k.resource.as_str(), k.subresource.as_str()) {
                // Non-resource requests (discovery, OpenAPI) carry their path as subresource.
                ("", path) => path.to_string(),
                (r, "") => r.to_string(),
                (r, s) => format!("{r}/{s}"),
            };
            *calls
                .by_call
                .entry(format!("{} {target}", k.verb))
                .or_default() += c;
            if is_write(&k.verb) {
                calls.writes += c;
                if (k.group.as_str(), k.resource.as_str()) == LEASE {
                    calls.lease_writes += c;
                }
            } else {
                calls.reads += c;
            }
        }
        calls
    }
}

/// The operator's API calls in one window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Calls {
    /// create, update, patch, delete, deletecollection.
    pub writes: u64,
    /// get, list, watch (each watch counted once, when opened), discovery and OpenAPI GETs.
    pub reads: u64,
    /// Writes to the leader-election Lease (included in `writes`).
    pub lease_writes: u64,
    /// `"<verb> <resource>[/<subresource>]"` (or `"<verb> <path>"` for discovery) -> count.
    pub by_call: BTreeMap<String, u64>,
    /// The user agents these requests came with.
    pub user_agents: BTreeSet<String>,
}

impl Calls {
    /// `by_call` most first, then by name.
    pub fn ranked(&self) -> Vec<(&str, u64)> {
        let mut rows: Vec<(&str, u64)> =
            self.by_call.iter().map(|(k, c)| (k.as_str(), *c)).collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(rows: Value) -> Snapshot {
        Snapshot::from_json(&json!({"total": 0, "requests": rows}))
    }

    #[test]
    fn operator_calls_exclude_the_bench_and_split_writes_from_reads() {
        let s = doc(json!([
            {"verb": "patch", "group": "hypersync.io", "resource": "agentnodes", "subresource": "status", "userAgent": "", "count": 4},
            {"verb": "patch", "group": "", "resource": "serviceaccounts", "subresource": "", "userAgent": "", "count": 2},
            {"verb": "update", "group": "coordination.k8s.io", "resource": "leases", "subresource": "", "userAgent": "", "count": 3},
            {"verb": "get", "group": "coordination.k8s.io", "resource": "leases", "subresource": "", "userAgent": "", "count": 1},
            {"verb": "watch", "group": "batch", "resource": "jobs", "subresource": "", "userAgent": "", "count": 1},
            {"verb": "get", "group": "", "resource": "", "subresource": "/apis", "userAgent": "", "count": 2},
            {"verb": "create", "group": "hypersync.io", "resource": "agentnodes", "subresource": "", "userAgent": "hypersync-scale/bench", "count": 100},
            {"verb": "patch", "group": "hypersync.io", "resource": "agentnodes", "subresource": "status", "userAgent": "hypersync-scale/agent", "count": 100},
        ]));
        let calls = s.operator();
        assert_eq!((calls.writes, calls.reads, calls.lease_writes), (9, 4, 3));
        assert_eq!(calls.by_call["patch agentnodes/status"], 4);
        assert_eq!(calls.by_call["get /apis"], 2);
        assert_eq!(calls.by_call.get("create agentnodes"), None);
        assert_eq!(calls.user_agents, BTreeSet::from([String::new()]));
        assert_eq!(
            calls.ranked()[..2],
            [("patch agentnodes/status", 4), ("update leases", 3)]
        );
    }

    #[test]
    fn since_keeps_only_what_grew() {
        let before = doc(json!([
            {"verb": "get", "resource": "pods", "userAgent": "op", "count": 5},
            {"verb": "list", "resource": "pods", "userAgent": "op", "count": 1},
        ]));
        let after = doc(json!([
            {"verb": "get", "resource": "pods", "userAgent": "op", "count": 8},
            {"verb": "list", "resource": "pods", "userAgent": "op", "count": 1},
            {"verb": "delete", "resource": "pods", "userAgent": "op", "count": 2},
        ]));
        let calls = after.since(&before).operator();
        assert_eq!((calls.writes, calls.reads), (2, 3));
        assert_eq!(calls.by_call.len(), 2);
        // After a reset the later document simply counts from zero.
        assert_eq!(before.since(&after), Snapshot::default());
    }
}

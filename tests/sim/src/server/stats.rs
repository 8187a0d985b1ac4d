//! Request counters per verb, resource and user agent, served at `/sim/stats` and reset by
//! `POST /sim/stats/reset`; integration tests read them to prove controllers do not hot-loop.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    verb: String,
    group: String,
    resource: String,
    subresource: String,
    user_agent: String,
}

/// Thread-safe request counters.
#[derive(Default)]
pub struct Stats {
    counts: Mutex<BTreeMap<Key, u64>>,
}

impl Stats {
    pub fn record(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        subresource: &str,
        user_agent: &str,
    ) {
        let key = Key {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            user_agent: user_agent.into(),
        };
        let mut m = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(key).or_default() += 1;
    }

    pub fn reset(&self) {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// `{"total":N,"byVerb":{..},"byResource":{..},"requests":[{verb,group,resource,subresource,userAgent,count}]}`
    pub fn to_json(&self) -> Value {
        let m = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = 0u64;
        let mut by_verb: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_resource: BTreeMap<String, u64> = BTreeMap::new();
        let mut rows = Vec::new();
        for (k, c) in m.iter() {
            total += c;
            *by_verb.entry(k.verb.clone()).or_default() += c;
            if !k.resource.is_empty() {
                let r = if k.group.is_empty() {
                    k.resource.clone()
                } else {
                    format!("{}.{}", k.resource, k.group)
                };
                *by_resource.entry(r).or_default() += c;
            }
            rows.push(
                json!({"verb": k.verb, "group": k.group, "resource": k.resource,
                "subresource": k.subresource, "userAgent": k.user_agent, "count": c}),
            );
        }
        json!({"total": total, "byVerb": by_verb, "byResource": by_resource, "requests": rows})
    }
}

//! Where requests spend their time: kube-sim's own latencies (`/sim/stats`: from a request received
//! to its response ready) per client — the operator, the bench's creates, the agents — and per call,
//! its store lock waits and how late its runtime wakes a task, beside the bench's client-side
//! latencies of the same calls and both processes' CPU. A client-side time far above kube-sim's
//! for the same call is time spent outside kube-sim's handlers (queued in a client, on a
//! connection, or waiting for a runtime worker).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::stats::USER_AGENT;

/// A latency summary in milliseconds, as kube-sim serves it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Millis {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Millis {
    /// From durations in seconds (nearest-rank percentiles); `None` for no samples.
    pub fn of_seconds(mut samples: Vec<f64>) -> Option<Millis> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        let rank = |p: f64| samples[((p * n as f64).ceil() as usize).clamp(1, n) - 1] * 1e3;
        Some(Millis {
            count: n as u64,
            mean_ms: samples.iter().sum::<f64>() / n as f64 * 1e3,
            p50_ms: rank(0.5),
            p90_ms: rank(0.9),
            p99_ms: rank(0.99),
            max_ms: samples[n - 1] * 1e3,
        })
    }

    fn from_json(v: &Value) -> Option<Millis> {
        serde_json::from_value(v.clone()).ok()
    }

    pub fn line(&self) -> String {
        format!(
            "n {:>6}  mean {:>8.1}  p50 {:>8.1}  p90 {:>8.1}  p99 {:>8.1}  max {:>8.1} ms",
            self.count, self.mean_ms, self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms
        )
    }
}

/// One client's latencies in kube-sim.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientLatency {
    pub all: Millis,
    /// `"<verb> <resource>[/<subresource>]"` -> latency.
    pub by_call: BTreeMap<String, Millis>,
}

/// kube-sim's latencies, store lock and runtime lag, cumulated since its stats were reset.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerLatency {
    /// `operator`, `bench`, `agent`, `watch`, ... -> latencies.
    pub by_client: BTreeMap<String, ClientLatency>,
    /// `{"read": .., "write": ..}`: count, wait and hold times of the store's lock.
    pub store_lock: Value,
    /// How much later than asked kube-sim's runtime woke a sleeping task.
    pub runtime_lag: Option<Millis>,
    /// The data plane's passes: wall time and time on a CPU.
    pub dataplane_pass: Option<Millis>,
    pub dataplane_pass_cpu: Option<Millis>,
    /// The data plane's writes, `"<resource> <verb>"` -> count.
    pub dataplane_writes: BTreeMap<String, u64>,
}

/// The client a user agent stands for: the role of one of the bench's clients
/// (`hypersync-scale/<role>`), else the operator (kube-rs sends no User-Agent of its own).
pub fn client_of(user_agent: &str) -> String {
    match user_agent.strip_prefix(USER_AGENT) {
        Some(role) => role.trim_start_matches('/').to_string(),
        None if user_agent.is_empty() => "operator".into(),
        None => format!("operator ({user_agent})"),
    }
}

impl ServerLatency {
    /// From a `/sim/stats` document (`latencyByUserAgent`, `storeLock`, `runtimeLag`).
    pub fn from_json(stats: &Value) -> ServerLatency {
        let mut by_client = BTreeMap::new();
        for (ua, lat) in stats
            .get("latencyByUserAgent")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let mut c = ClientLatency {
                all: lat
                    .get("all")
                    .and_then(Millis::from_json)
                    .unwrap_or_default(),
                by_call: BTreeMap::new(),
            };
            for (resource, verbs) in lat
                .get("byResourceVerb")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                // `plural.group[/sub]` -> `plural[/sub]`, as the call counts name them.
                let (res, sub) = resource.split_once('/').unwrap_or((resource, ""));
                let plural = res.split('.').next().unwrap_or(res);
                let target = if sub.is_empty() {
                    plural.to_string()
                } else {
                    format!("{plural}/{sub}")
                };
                for (verb, m) in verbs.as_object().into_iter().flatten() {
                    if let Some(m) = Millis::from_json(m).filter(|m| m.count > 0) {
                        c.by_call.insert(format!("{verb} {target}"), m);
                    }
                }
            }
            by_client.insert(client_of(ua), c);
        }
        ServerLatency {
            by_client,
            store_lock: stats.get("storeLock").cloned().unwrap_or(Value::Null),
            runtime_lag: stats.get("runtimeLag").and_then(Millis::from_json),
            dataplane_pass: stats.get("dataplanePass").and_then(Millis::from_json),
            dataplane_pass_cpu: stats.get("dataplanePassCpu").and_then(Millis::from_json),
            dataplane_writes: stats
                .get("dataplaneWrites")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(k, n)| Some((k.clone(), n.as_u64()?)))
                .collect(),
        }
    }

    /// Lines for the text report: per client its overall latency and its calls that took most of
    /// its time (count x mean), then the lock and the runtime.
    pub fn text(&self, title: &str) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "  kube-sim latency     {title} (request received -> response ready)"
        );
        for (client, lat) in &self.by_client {
            let _ = writeln!(o, "    {client:<22} {}", lat.all.line());
            let mut calls: Vec<(&String, &Millis)> = lat.by_call.iter().collect();
            calls.sort_by(|a, b| {
                (b.1.mean_ms * b.1.count as f64).total_cmp(&(a.1.mean_ms * a.1.count as f64))
            });
            for (call, m) in calls.into_iter().take(6) {
                let _ = writeln!(o, "      {call:<30} {}", m.line());
            }
        }
        for side in ["read", "write"] {
            let s = &self.store_lock[side];
            if s.is_null() {
                continue;
            }
            let _ = writeln!(
                o,
                "    store lock {side:<6}      {} acquisitions, wait total {} ms (max {} ms, {} over 1 ms), held total {} ms (max {} ms)",
                s["count"],
                s["waitTotalMs"],
                s["waitMaxMs"],
                s["slowWaits"],
                s["holdTotalMs"],
                s["holdMaxMs"]
            );
        }
        if let Some(lag) = &self.runtime_lag {
            let _ = writeln!(o, "    runtime wake-up lag    {}", lag.line());
        }
        if let (Some(wall), Some(cpu)) = (&self.dataplane_pass, &self.dataplane_pass_cpu) {
            let total = |m: &Millis| m.mean_ms * m.count as f64 / 1e3;
            let _ = writeln!(
                o,
                "    data plane passes      {} passes: {:.1}s in all, {:.1}s of it on a CPU; longest {:.0} ms",
                wall.count,
                total(wall),
                total(cpu),
                wall.max_ms
            );
        }
        if !self.dataplane_writes.is_empty() {
            let all: u64 = self.dataplane_writes.values().sum();
            let each: Vec<String> = self
                .dataplane_writes
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            let _ = writeln!(o, "    data plane writes      {all}: {}", each.join(", "));
        }
        o
    }
}

/// A process's threads' time on a CPU and time runnable but waiting for one, in seconds, summed
/// over its live threads (`/proc/<pid>/task/*/schedstat`). A process whose threads wait for a CPU
/// as long as they run is held back by the machine's load, not by its own locks or sleeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sched {
    pub cpu: f64,
    pub waiting: f64,
}

impl Sched {
    pub fn of(pid: u32) -> Option<Sched> {
        let mut total = Sched::default();
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .flatten()
        {
            let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
                continue;
            };
            let mut f = text.split_whitespace().map(|x| x.parse::<f64>().ok());
            if let (Some(Some(run)), Some(Some(wait))) = (f.next(), f.next()) {
                total.cpu += run / 1e9;
                total.waiting += wait / 1e9;
            }
        }
        Some(total)
    }

    /// What was used from `earlier` to now, per second of `seconds` (in cores).
    pub fn rate_since(&self, earlier: &Sched, seconds: f64) -> Sched {
        let s = seconds.max(f64::MIN_POSITIVE);
        Sched {
            cpu: (self.cpu - earlier.cpu).max(0.0) / s,
            waiting: (self.waiting - earlier.waiting).max(0.0) / s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn latencies_by_client_and_call_from_kube_sims_document() {
        let m = |count: u64, mean: f64| json!({"count": count, "meanMs": mean, "p50Ms": mean, "p90Ms": mean, "p99Ms": mean, "maxMs": mean});
        let doc = json!({
            "latencyByUserAgent": {
                "": {"all": m(10, 3.0), "byResourceVerb": {
                    "jobs.batch": {"patch": m(4, 5.0)},
                    "agentnodes.hypersync.io/status": {"patch": m(6, 1.0), "get": m(0, 0.0)}}},
                "hypersync-scale/bench": {"all": m(2, 150.0), "byResourceVerb": {
                    "agentnodes.hypersync.io": {"create": m(2, 150.0)}}},
            },
            "storeLock": {"read": {"count": 5}, "write": {"count": 2}},
            "runtimeLag": m(100, 0.5),
        });
        let s = ServerLatency::from_json(&doc);
        assert_eq!(
            s.by_client.keys().collect::<Vec<_>>(),
            ["bench", "operator"]
        );
        let op = &s.by_client["operator"];
        assert_eq!(op.all.count, 10);
        assert_eq!(op.by_call["patch jobs"].mean_ms, 5.0);
        assert_eq!(op.by_call["patch agentnodes/status"].count, 6);
        assert!(!op.by_call.contains_key("get agentnodes/status"));
        assert_eq!(
            s.by_client["bench"].by_call["create agentnodes"].p99_ms,
            150.0
        );
        assert_eq!(s.runtime_lag.map(|l| l.count), Some(100));
        let text = s.text("test");
        // The call with the most time first.
        let jobs = text.find("patch jobs").expect("jobs listed");
        let status = text.find("patch agentnodes/status").expect("status listed");
        assert!(jobs < status, "{text}");
        assert!(text.contains("store lock write"), "{text}");
        assert_eq!(client_of("kubectl/v1.33"), "operator (kubectl/v1.33)");
        assert_eq!(client_of("hypersync-scale/agent"), "agent");
    }

    #[test]
    fn client_side_percentiles_in_milliseconds() {
        let m = Millis::of_seconds((1..=100).map(|i| f64::from(i) / 1000.0).collect())
            .expect("samples");
        let near = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert_eq!(m.count, 100);
        assert!(near(m.p50_ms, 50.0) && near(m.p99_ms, 99.0) && near(m.max_ms, 100.0));
        assert!(near(m.mean_ms, 50.5), "{m:?}");
        assert_eq!(Millis::of_seconds(Vec::new()), None);
    }

    #[test]
    fn own_scheduler_times_are_read() {
        let before = Sched::of(std::process::id()).expect("own threads");
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_millis(20) {}
        let after = Sched::of(std::process::id()).expect("own threads");
        assert!(after.cpu > before.cpu, "{before:?} {after:?}");
        assert_eq!(Sched::of(u32::MAX), None);
        let r = after.rate_since(&before, 2.0);
        assert!(r.cpu >= 0.0 && r.waiting >= 0.0);
    }
}

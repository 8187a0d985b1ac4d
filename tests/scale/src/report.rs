//! What a run measured, filled in phase by phase (a run cut short by the timeout reports what it
//! has), printed for people and serialised for machines (`--json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::latency::{Millis, Sched, ServerLatency};
use crate::stats::Calls;
use crate::timeline::Summary;

/// How many of something took how long.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Throughput {
    pub count: u64,
    pub seconds: f64,
    pub per_second: f64,
}

impl Throughput {
    pub fn new(count: u64, seconds: f64) -> Throughput {
        Throughput {
            count,
            seconds,
            per_second: if seconds > 0.0 {
                count as f64 / seconds
            } else {
                0.0
            },
        }
    }
}

/// The operator's writes in the settled phase (all nodes Running, no agent has reported yet).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settled {
    pub seconds: f64,
    pub writes: u64,
    pub lease_writes: u64,
    pub writes_per_second: f64,
    pub reads: u64,
    /// The writes by call (`"<verb> <resource>"`).
    pub writes_by_call: BTreeMap<String, u64>,
}

/// The operator's API calls from the first AgentNode created to the end of the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorCalls {
    pub calls: Calls,
    pub writes_per_node: f64,
    pub reads_per_node: f64,
    /// Operator writes/s from the first create to the end of the run, and its share of the ceiling.
    pub overall_writes: Option<Throughput>,
    pub overall_ratio_to_ceiling: Option<f64>,
    /// Operator writes/s from the first create to all Running, and its share of the ceiling.
    pub ramp_writes: Option<Throughput>,
    pub ramp_ratio_to_ceiling: Option<f64>,
    /// Operator writes/s from the first agent report to all children collected.
    pub teardown_writes: Option<Throughput>,
    pub teardown_ratio_to_ceiling: Option<f64>,
}

/// Each process's threads over a window, in cores (1.0 = one core throughout): on a CPU, and
/// runnable but waiting for one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuShare {
    pub kube_sim: Sched,
    pub operator: Sched,
    pub bench: Sched,
}

/// Where each node was when the run ended.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub created: usize,
    pub running: usize,
    pub reported: usize,
    pub succeeded: usize,
    pub gone: usize,
    /// Live nodes by their last seen phase.
    pub phases: BTreeMap<String, usize>,
}

/// Everything a run measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub nodes: usize,
    pub concurrency: usize,
    pub ttl_seconds: u64,
    pub timeout_seconds: u64,
    /// `"own ServiceAccount token"` or `"admin"`.
    pub agents_as: String,
    /// Extra flags given to `hypersync-operator run`.
    pub operator_args: Vec<String>,
    /// `"complete"`, or what stopped the run.
    pub outcome: String,
    pub load_average_start: Option<[f64; 3]>,
    pub load_average_end: Option<[f64; 3]>,
    /// ConfigMap creates over HTTP from the bench's parallel client, before the operator starts.
    pub ceiling: Option<Throughput>,
    /// The bench creating the AgentNodes.
    pub created: Option<Throughput>,
    /// Per node: from its create returning to the watch showing `Running`.
    pub to_running: Option<Summary>,
    /// From the first create to the last node seen Running.
    pub all_running_seconds: Option<f64>,
    pub settled: Option<Settled>,
    /// The agents' status patches (objective met).
    pub reports: Option<Throughput>,
    pub report_errors: u64,
    pub first_report_error: Option<String>,
    /// Per node: from its agent's report returning to the watch showing it deleted (includes the TTL).
    pub to_dissolved: Option<Summary>,
    /// From the first report to no AgentNode left.
    pub all_dissolved_seconds: Option<f64>,
    /// From the first report to no Job, Pod, ServiceAccount, Role or RoleBinding of a node left.
    pub children_collected_seconds: Option<f64>,
    /// Children of AgentNodes left at the end, by resource.
    pub children_left: BTreeMap<String, u64>,
    pub progress: Progress,
    pub operator: Option<OperatorCalls>,
    pub operator_peak_memory_kib: Option<u64>,
    pub kube_sim_peak_memory_kib: Option<u64>,
    /// CPU of kube-sim and the operator from the first create to all Running.
    pub cpu_to_running: Option<CpuShare>,
    /// The bench's own calls as its client saw them (send -> answer): `"<client>: <call>"`.
    pub client_latency: BTreeMap<String, Millis>,
    /// kube-sim's latencies from the first create to all Running.
    pub latency_to_running: Option<ServerLatency>,
    /// kube-sim's latencies from the first create to the end of the run.
    pub latency_whole_run: Option<ServerLatency>,
}

fn secs(s: Option<f64>) -> String {
    s.map_or_else(|| "-".into(), |s| format!("{s:.1}s"))
}

fn summary(s: &Option<Summary>) -> String {
    match s {
        Some(s) => format!(
            "p50 {:.1}s  p90 {:.1}s  max {:.1}s  ({} nodes)",
            s.p50, s.p90, s.max, s.count
        ),
        None => "-".into(),
    }
}

fn load(l: &Option<[f64; 3]>) -> String {
    l.map_or_else(
        || "-".into(),
        |l| format!("{:.2} {:.2} {:.2}", l[0], l[1], l[2]),
    )
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn rate(t: &Option<Throughput>) -> String {
    t.map_or_else(
        || "-".into(),
        |t| format!("{} in {:.1}s = {:.0}/s", t.count, t.seconds, t.per_second),
    )
}

fn ratio(r: Option<f64>) -> String {
    r.map_or_else(
        || "-".into(),
        |r| format!("{:.1}% of the ceiling", r * 100.0),
    )
}

impl Report {
    /// The report for people.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let n = self.nodes;
        let _ = writeln!(
            o,
            "hypersync-scale: {n} AgentNodes, concurrency {}, ttl {}s, agents as {}, operator flags [{}] — {}",
            self.concurrency,
            self.ttl_seconds,
            self.agents_as,
            self.operator_args.join(" "),
            self.outcome
        );
        let _ = writeln!(
            o,
            "  load average         start {}   end {}",
            load(&self.load_average_start),
            load(&self.load_average_end)
        );
        let _ = writeln!(
            o,
            "  kube-sim ceiling     ConfigMap creates {}",
            rate(&self.ceiling)
        );
        let _ = writeln!(o, "  nodes created        {}", rate(&self.created));
        let _ = writeln!(
            o,
            "  to Running           {}; all Running {} after the first create",
            summary(&self.to_running),
            secs(self.all_running_seconds)
        );
        if let Some(s) = &self.settled {
            let calls: Vec<String> = s
                .writes_by_call
                .iter()
                .map(|(k, c)| format!("{k} {c}"))
                .collect();
            let _ = writeln!(
                o,
                "  settled              {} operator writes in {:.1}s ({} Lease) = {:.2}/s; {} reads{}",
                s.writes,
                s.seconds,
                s.lease_writes,
                s.writes_per_second,
                s.reads,
                if calls.is_empty() {
                    String::new()
                } else {
                    format!("  [{}]", calls.join(", "))
                }
            );
        }
        let _ = writeln!(
            o,
            "  agents reported      {}{}",
            rate(&self.reports),
            match (&self.first_report_error, self.report_errors) {
                (Some(e), c) => format!("; {c} FAILED, first: {e}"),
                (None, _) => String::new(),
            }
        );
        let _ = writeln!(
            o,
            "  to dissolved         {} (report -> deleted, ttl {}s included); all gone {} after the first report",
            summary(&self.to_dissolved),
            self.ttl_seconds,
            secs(self.all_dissolved_seconds)
        );
        let left: Vec<String> = self
            .children_left
            .iter()
            .map(|(k, c)| format!("{k} {c}"))
            .collect();
        let _ = writeln!(
            o,
            "  children collected   {} after the first report; left at the end: {}",
            secs(self.children_collected_seconds),
            if left.is_empty() {
                "-".into()
            } else {
                left.join(", ")
            }
        );
        let p = &self.progress;
        let phases: Vec<String> = p.phases.iter().map(|(k, c)| format!("{k} {c}")).collect();
        let _ = writeln!(
            o,
            "  nodes                created {}, Running {}, reported {}, Succeeded {}, dissolved {} of {n}; live by phase: {}",
            p.created,
            p.running,
            p.reported,
            p.succeeded,
            p.gone,
            if phases.is_empty() {
                "-".into()
            } else {
                phases.join(", ")
            }
        );
        if let Some(op) = &self.operator {
            let uas: Vec<String> = op
                .calls
                .user_agents
                .iter()
                .map(|u| format!("{u:?}"))
                .collect();
            let _ = writeln!(
                o,
                "  operator calls       {} writes ({:.1}/node), {} reads ({:.1}/node), {} to the Lease; user agent {}",
                op.calls.writes,
                op.writes_per_node,
                op.calls.reads,
                op.reads_per_node,
                op.calls.lease_writes,
                uas.join(", ")
            );
            let per_node = |c: u64| c as f64 / n.max(1) as f64;
            for (write, title) in [(true, "writes/node"), (false, "reads/node ")] {
                let rows: Vec<String> = op
                    .calls
                    .ranked()
                    .into_iter()
                    .filter(|(k, _)| {
                        crate::stats::is_write(k.split(' ').next().unwrap_or("")) == write
                    })
                    .map(|(k, c)| format!("{k} {:.2}", per_node(c)))
                    .collect();
                let _ = writeln!(o, "    {title}        {}", rows.join(", "));
            }
            let _ = writeln!(
                o,
                "  operator write rate  whole run {} ({}); to Running {} ({}); teardown {} ({})",
                rate(&op.overall_writes),
                ratio(op.overall_ratio_to_ceiling),
                rate(&op.ramp_writes),
                ratio(op.ramp_ratio_to_ceiling),
                rate(&op.teardown_writes),
                ratio(op.teardown_ratio_to_ceiling)
            );
        }
        let _ = writeln!(
            o,
            "  peak memory (VmHWM)  operator {}, kube-sim {}",
            mib(self.operator_peak_memory_kib),
            mib(self.kube_sim_peak_memory_kib)
        );
        if let Some(c) = &self.cpu_to_running {
            let _ = writeln!(
                o,
                "  CPU to Running       on a CPU / runnable but waiting for one, in cores: kube-sim {:.2} / {:.2}, operator {:.2} / {:.2}, bench {:.2} / {:.2}",
                c.kube_sim.cpu,
                c.kube_sim.waiting,
                c.operator.cpu,
                c.operator.waiting,
                c.bench.cpu,
                c.bench.waiting
            );
        }
        if !self.client_latency.is_empty() {
            let _ = writeln!(
                o,
                "  client-side latency  (the bench's clients: send -> answer)"
            );
            for (call, m) in &self.client_latency {
                let _ = writeln!(o, "    {call:<32} {}", m.line());
            }
        }
        if let Some(l) = &self.latency_to_running {
            o.push_str(&l.text("first create -> all Running"));
        }
        if let Some(l) = &self.latency_whole_run {
            o.push_str(&l.text("first create -> end of run"));
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_of_nothing_is_zero() {
        assert_eq!(Throughput::new(10, 0.0).per_second, 0.0);
        assert_eq!(Throughput::new(10, 4.0).per_second, 2.5);
    }

    #[test]
    fn a_partial_report_prints_dashes_for_what_it_lacks() {
        let r = Report {
            nodes: 3,
            outcome: "timeout while waiting for all AgentNodes Running".into(),
            to_running: Summary::of(vec![1.0, 2.0]),
            ..Report::default()
        };
        let text = r.text();
        assert!(text.contains("timeout while waiting"), "{text}");
        assert!(
            text.contains("p50 1.0s  p90 2.0s  max 2.0s  (2 nodes)"),
            "{text}"
        );
        assert!(
            text.contains("peak memory (VmHWM)  operator -, kube-sim -"),
            "{text}"
        );
        let json = serde_json::to_value(&r).expect("serialises");
        assert_eq!(json["toRunning"]["count"], 2);
        assert_eq!(json["toDissolved"], serde_json::Value::Null);
    }
}

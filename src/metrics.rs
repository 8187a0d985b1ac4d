//! Prometheus metrics of the operator (prefix `hypersync_`), with labels bounded by construction:
//! controller names and error reasons are `&'static str`, phases come from the API enums.

use std::time::Instant;

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::api::agent_node::NodePhase;
use crate::api::model_entry::ModelPhase;

/// Prefix of every metric name (but the standard `process_*` ones).
pub const PREFIX: &str = "hypersync";

/// `version` of `hypersync_build_info`: the crate's version.
pub const BUILD_VERSION: &str = env!("CARGO_PKG_VERSION");
/// `git_sha` of `hypersync_build_info`: set by build.rs (`HYPERSYNC_GIT_SHA`, `git rev-parse`, or
/// "unknown").
pub const BUILD_GIT_SHA: &str = env!("HYPERSYNC_GIT_SHA");

/// Every AgentNode phase, as exported in the `phase` label of `hypersync_agentnodes`.
const NODE_PHASES: [NodePhase; 7] = [
    NodePhase::Pending,
    NodePhase::Placed,
    NodePhase::Provisioning,
    NodePhase::Running,
    NodePhase::Succeeded,
    NodePhase::Failed,
    NodePhase::Dissolving,
];

/// Every ModelEntry phase, as exported in the `phase` label of `hypersync_modelentries`.
const MODEL_PHASES: [ModelPhase; 6] = [
    ModelPhase::Pending,
    ModelPhase::Provisioning,
    ModelPhase::Ready,
    ModelPhase::Idle,
    ModelPhase::Degraded,
    ModelPhase::Failed,
];

fn node_phase_label(phase: NodePhase) -> &'static str {
    match phase {
        NodePhase::Pending => "Pending",
        NodePhase::Placed => "Placed",
        NodePhase::Provisioning => "Provisioning",
        NodePhase::Running => "Running",
        NodePhase::Succeeded => "Succeeded",
        NodePhase::Failed => "Failed",
        NodePhase::Dissolving => "Dissolving",
    }
}

fn model_phase_label(phase: ModelPhase) -> &'static str {
    match phase {
        ModelPhase::Pending => "Pending",
        ModelPhase::Provisioning => "Provisioning",
        ModelPhase::Ready => "Ready",
        ModelPhase::Idle => "Idle",
        ModelPhase::Degraded => "Degraded",
        ModelPhase::Failed => "Failed",
    }
}

/// Failed to create or register a metric (only on a programming error such as a duplicate name).
#[derive(Debug, thiserror::Error)]
#[error("failed to register metric {name}")]
pub struct MetricsError {
    name: &'static str,
    #[source]
    source: prometheus::Error,
}

/// The operator's metrics. Cloning is cheap (the collectors are reference-counted) and clones
/// record into the same registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    reconcile_total: IntCounterVec,
    reconcile_errors_total: IntCounterVec,
    reconcile_duration_seconds: HistogramVec,
    agentnodes: IntGaugeVec,
    modelentries: IntGaugeVec,
    leader: IntGauge,
    controllers_running: IntGauge,
    runtime_stall_seconds: Gauge,
    transient_errors_total: IntCounterVec,
    /// The standard `process_*` metrics (Linux), unprefixed as every exporter names them.
    process: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Builds the metrics on a fresh registry. The names and label sets are fixed, so registration
    /// cannot fail; [`Metrics::try_new`] exists for callers that prefer to propagate anyway.
    pub fn new() -> Self {
        match Self::try_new() {
            Ok(metrics) => metrics,
            // Unreachable: a fresh registry with distinct, valid names. Keep the message useful.
            Err(err) => panic!("static metric definitions are invalid: {err}"),
        }
    }

    /// Builds the metrics on a fresh registry, reporting a registration error instead of panicking.
    pub fn try_new() -> Result<Self, MetricsError> {
        let registry =
            Registry::new_custom(Some(PREFIX.to_owned()), None).map_err(|source| MetricsError {
                name: "registry",
                source,
            })?;
        let reconcile_total = IntCounterVec::new(
            Opts::new(
                "reconcile_total",
                "Reconciles by controller and result (success|error).",
            ),
            &["controller", "result"],
        )
        .map_err(err("reconcile_total"))?;
        let reconcile_errors_total = IntCounterVec::new(
            Opts::new(
                "reconcile_errors_total",
                "Failed reconciles by controller and bounded error reason.",
            ),
            &["controller", "reason"],
        )
        .map_err(err("reconcile_errors_total"))?;
        let reconcile_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "reconcile_duration_seconds",
                "Wall-clock duration of one reconcile, by controller.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["controller"],
        )
        .map_err(err("reconcile_duration_seconds"))?;
        let agentnodes = IntGaugeVec::new(
            Opts::new(
                "agentnodes",
                "AgentNodes in the watched namespaces, by phase.",
            ),
            &["phase"],
        )
        .map_err(err("agentnodes"))?;
        let modelentries = IntGaugeVec::new(
            Opts::new(
                "modelentries",
                "ModelEntries in the watched namespaces, by phase.",
            ),
            &["phase"],
        )
        .map_err(err("modelentries"))?;
        let leader = IntGauge::new(
            "leader",
            "1 while this replica holds the leader Lease, else 0.",
        )
        .map_err(err("leader"))?;
        let controllers_running = IntGauge::new(
            "controllers_running",
            "1 while this replica's controllers run (from leadership until they have stopped), else 0.",
        )
        .map_err(err("controllers_running"))?;
        let runtime_stall_seconds = Gauge::new(
            "controller_runtime_stall_seconds",
            "Seconds since the controllers' async runtime last ran its heartbeat task (about 0 when healthy; /healthz fails above --liveness-stall-seconds).",
        )
        .map_err(err("controller_runtime_stall_seconds"))?;
        let transient_errors_total = IntCounterVec::new(
            Opts::new(
                "transient_errors_total",
                "Reconciles retried after an error a retry resolves (conflict, unavailable API, \
                 dropped connection, object gone), by bounded reason. Not reported as Events.",
            ),
            &["reason"],
        )
        .map_err(err("transient_errors_total"))?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "build_info",
                "Always 1; the operator's version and the git commit it was built from (\"unknown\" \
                 when built outside a git checkout).",
            ),
            &["version", "git_sha"],
        )
        .map_err(err("build_info"))?;
        build_info
            .with_label_values(&[BUILD_VERSION, BUILD_GIT_SHA])
            .set(1);

        let collectors: [(&'static str, Box<dyn prometheus::core::Collector>); 10] = [
            ("reconcile_total", Box::new(reconcile_total.clone())),
            (
                "reconcile_errors_total",
                Box::new(reconcile_errors_total.clone()),
            ),
            (
                "reconcile_duration_seconds",
                Box::new(reconcile_duration_seconds.clone()),
            ),
            ("agentnodes", Box::new(agentnodes.clone())),
            ("modelentries", Box::new(modelentries.clone())),
            ("leader", Box::new(leader.clone())),
            ("controllers_running", Box::new(controllers_running.clone())),
            (
                "controller_runtime_stall_seconds",
                Box::new(runtime_stall_seconds.clone()),
            ),
            (
                "transient_errors_total",
                Box::new(transient_errors_total.clone()),
            ),
            ("build_info", Box::new(build_info)),
        ];
        for (name, collector) in collectors {
            registry.register(collector).map_err(err(name))?;
        }
        let process = Registry::new();
        #[cfg(target_os = "linux")]
        process
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .map_err(err("process"))?;

        let metrics = Metrics {
            registry,
            reconcile_total,
            reconcile_errors_total,
            reconcile_duration_seconds,
            agentnodes,
            modelentries,
            leader,
            controllers_running,
            runtime_stall_seconds,
            transient_errors_total,
            process,
        };
        // Export every phase from the start, so dashboards see zeros rather than gaps.
        metrics.set_agentnode_phases(std::iter::empty());
        metrics.set_modelentry_phases(std::iter::empty());
        Ok(metrics)
    }

    /// The underlying registry (for adding process or custom collectors).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on a metric family without metrics or bad UTF-8 in
        // names, neither of which this registry can produce; an empty page is the safe fallback.
        let mut families = self.registry.gather();
        families.extend(self.process.gather());
        if let Err(err) = TextEncoder::new().encode(&families, &mut buf) {
            tracing::warn!(error = %err, "failed to encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Starts timing one reconcile of `controller` (e.g. "agentnode"). Finish it with
    /// [`ReconcileTimer::success`] or [`ReconcileTimer::error`]; dropping it unfinished records an
    /// error with reason `Aborted` (the reconcile future was cancelled or panicked).
    pub fn reconcile_started(&self, controller: &'static str) -> ReconcileTimer {
        ReconcileTimer {
            metrics: self.clone(),
            controller,
            start: Instant::now(),
            finished: false,
        }
    }

    /// Counts one reconcile retried after a transient error (`reason` from [`crate::error::Error::reason`]).
    pub fn transient_error(&self, reason: &'static str) {
        self.transient_errors_total
            .with_label_values(&[reason])
            .inc();
    }

    /// Sets whether this replica is the leader.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Sets whether this replica's controllers are running.
    pub fn set_controllers_running(&self, running: bool) {
        self.controllers_running.set(i64::from(running));
    }

    /// Sets how long ago the controllers' runtime last ran its heartbeat task.
    pub fn set_runtime_stall(&self, stall: std::time::Duration) {
        self.runtime_stall_seconds.set(stall.as_secs_f64());
    }

    /// Sets `hypersync_agentnodes{phase}` from the phases of all AgentNodes (`None` = no status
    /// yet, counted as Pending). Every phase is written, absent ones as 0.
    pub fn set_agentnode_phases(&self, phases: impl IntoIterator<Item = Option<NodePhase>>) {
        let mut counts = [0i64; NODE_PHASES.len()];
        for phase in phases {
            let phase = phase.unwrap_or_default();
            if let Some(i) = NODE_PHASES.iter().position(|p| *p == phase) {
                counts[i] += 1;
            }
        }
        for (phase, count) in NODE_PHASES.iter().zip(counts) {
            self.agentnodes
                .with_label_values(&[node_phase_label(*phase)])
                .set(count);
        }
    }

    /// Sets `hypersync_modelentries{phase}` from the phases of all ModelEntries (`None` = no status
    /// yet, counted as Pending).
    pub fn set_modelentry_phases(&self, phases: impl IntoIterator<Item = Option<ModelPhase>>) {
        let mut counts = [0i64; MODEL_PHASES.len()];
        for phase in phases {
            let phase = phase.unwrap_or_default();
            if let Some(i) = MODEL_PHASES.iter().position(|p| *p == phase) {
                counts[i] += 1;
            }
        }
        for (phase, count) in MODEL_PHASES.iter().zip(counts) {
            self.modelentries
                .with_label_values(&[model_phase_label(*phase)])
                .set(count);
        }
    }

    fn record(&self, controller: &'static str, start: Instant, outcome: Result<(), &'static str>) {
        self.reconcile_duration_seconds
            .with_label_values(&[controller])
            .observe(start.elapsed().as_secs_f64());
        match outcome {
            Ok(()) => self
                .reconcile_total
                .with_label_values(&[controller, "success"])
                .inc(),
            Err(reason) => {
                self.reconcile_total
                    .with_label_values(&[controller, "error"])
                    .inc();
                self.reconcile_errors_total
                    .with_label_values(&[controller, reason])
                    .inc();
            }
        }
    }
}

fn err(name: &'static str) -> impl FnOnce(prometheus::Error) -> MetricsError {
    move |source| MetricsError { name, source }
}

/// Times one reconcile; records `reconcile_total`, `reconcile_duration_seconds` and (on error)
/// `reconcile_errors_total` exactly once, when finished or dropped.
#[must_use = "finish the timer with .success() or .error(reason)"]
#[derive(Debug)]
pub struct ReconcileTimer {
    metrics: Metrics,
    controller: &'static str,
    start: Instant,
    finished: bool,
}

impl ReconcileTimer {
    /// Records a successful reconcile.
    pub fn success(mut self) {
        self.finish(Ok(()));
    }

    /// Records a failed reconcile with a bounded reason (use [`crate::error::Error::reason`]).
    pub fn error(mut self, reason: &'static str) {
        self.finish(Err(reason));
    }

    /// Records the outcome of a reconcile result.
    pub fn finish_with<T>(self, result: &Result<T, crate::error::Error>) {
        match result {
            Ok(_) => self.success(),
            Err(e) => self.error(e.reason()),
        }
    }

    fn finish(&mut self, outcome: Result<(), &'static str>) {
        if !self.finished {
            self.finished = true;
            self.metrics.record(self.controller, self.start, outcome);
        }
    }
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.finish(Err("Aborted"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Parses the exposition into series name -> list of label sets.
    fn series(text: &str) -> BTreeMap<String, Vec<BTreeMap<String, String>>> {
        let mut out: BTreeMap<String, Vec<BTreeMap<String, String>>> = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (name, labels) = match line.split_once('{') {
                Some((name, rest)) => {
                    let body = rest.split_once('}').map(|(b, _)| b).unwrap_or("");
                    let labels = body
                        .split(',')
                        .filter(|kv| !kv.is_empty())
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                        .collect();
                    (name.to_owned(), labels)
                }
                None => (
                    line.split(' ').next().unwrap_or("").to_owned(),
                    BTreeMap::new(),
                ),
            };
            out.entry(name).or_default().push(labels);
        }
        out
    }

    #[test]
    fn text_output_names_every_metric_with_the_prefix() {
        let m = Metrics::new();
        m.reconcile_started("agentnode").success();
        m.reconcile_started("agentnode").error("ApiConflict");
        m.set_leader(true);
        let text = m.encode();
        for name in [
            "hypersync_reconcile_total",
            "hypersync_reconcile_errors_total",
            "hypersync_reconcile_duration_seconds_bucket",
            "hypersync_reconcile_duration_seconds_count",
            "hypersync_agentnodes",
            "hypersync_modelentries",
            "hypersync_leader",
            "hypersync_controllers_running",
            "hypersync_controller_runtime_stall_seconds",
            "hypersync_build_info",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(text.contains("hypersync_leader 1"));
        assert!(
            text.contains(
                r#"hypersync_reconcile_total{controller="agentnode",result="success"} 1"#
            )
        );
        assert!(text.contains(
            r#"hypersync_reconcile_errors_total{controller="agentnode",reason="ApiConflict"} 1"#
        ));
        assert!(
            text.contains(
                r#"hypersync_reconcile_duration_seconds_count{controller="agentnode"} 2"#
            )
        );
    }

    #[test]
    fn label_cardinality_is_bounded_and_has_no_object_names() {
        let m = Metrics::new();
        // Many objects with distinct names reconcile, fail, and change phase.
        for i in 0..500 {
            let name = format!("agent-node-{i}");
            let t = m.reconcile_started("agentnode");
            let err = crate::error::Error::MissingObject {
                kind: "AgentStack",
                name: name.clone(),
            };
            if i % 3 == 0 {
                t.finish_with::<()>(&Err(err));
            } else {
                t.success();
            }
        }
        let phases = (0..500).map(|i| Some(NODE_PHASES[i % NODE_PHASES.len()]));
        m.set_agentnode_phases(phases);
        m.set_modelentry_phases((0..40).map(|i| {
            if i % 4 == 0 {
                None
            } else {
                Some(ModelPhase::Ready)
            }
        }));

        let text = m.encode();
        assert!(
            !text.contains("agent-node-"),
            "an object name leaked into a label"
        );
        let all = series(&text);
        let allowed_labels = [
            "controller",
            "result",
            "reason",
            "phase",
            "le",
            "version",
            "git_sha",
        ];
        for (name, sets) in &all {
            for labels in sets {
                for key in labels.keys() {
                    assert!(
                        allowed_labels.contains(&key.as_str()),
                        "{name} has label {key}"
                    );
                }
            }
        }
        assert_eq!(all["hypersync_reconcile_total"].len(), 2);
        assert_eq!(all["hypersync_reconcile_errors_total"].len(), 1);
        assert_eq!(all["hypersync_agentnodes"].len(), NODE_PHASES.len());
        assert_eq!(all["hypersync_modelentries"].len(), MODEL_PHASES.len());
        assert_eq!(all["hypersync_build_info"].len(), 1);
        let total_series: usize = all.values().map(Vec::len).sum();
        assert!(total_series < 60, "{total_series} series for 500 objects");
    }

    #[test]
    fn phase_gauges_count_and_reset() {
        let m = Metrics::new();
        m.set_modelentry_phases([Some(ModelPhase::Ready), Some(ModelPhase::Ready), None]);
        let text = m.encode();
        assert!(
            text.contains(r#"hypersync_modelentries{phase="Ready"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"hypersync_modelentries{phase="Pending"} 1"#));
        assert!(text.contains(r#"hypersync_modelentries{phase="Failed"} 0"#));
        // A later snapshot replaces the counts; phases that emptied go back to 0.
        m.set_modelentry_phases([Some(ModelPhase::Failed)]);
        let text = m.encode();
        assert!(text.contains(r#"hypersync_modelentries{phase="Ready"} 0"#));
        assert!(text.contains(r#"hypersync_modelentries{phase="Failed"} 1"#));

        m.set_agentnode_phases([Some(NodePhase::Running), None]);
        let text = m.encode();
        assert!(text.contains(r#"hypersync_agentnodes{phase="Running"} 1"#));
        assert!(text.contains(r#"hypersync_agentnodes{phase="Pending"} 1"#));
    }

    #[test]
    fn dropped_timer_records_an_aborted_reconcile_once() {
        let m = Metrics::new();
        drop(m.reconcile_started("agentstack"));
        m.reconcile_started("agentstack").success();
        let text = m.encode();
        assert!(text.contains(
            r#"hypersync_reconcile_errors_total{controller="agentstack",reason="Aborted"} 1"#
        ));
        assert!(
            text.contains(r#"hypersync_reconcile_total{controller="agentstack",result="error"} 1"#)
        );
        assert!(
            text.contains(
                r#"hypersync_reconcile_total{controller="agentstack",result="success"} 1"#
            )
        );
    }

    /// The metric names of the README's table (section "Metrics"): the backquoted first cell of
    /// each row.
    fn readme_metrics() -> std::collections::BTreeSet<String> {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md readable");
        let section = readme
            .split("\n### Metrics\n")
            .nth(1)
            .expect("README has a \"### Metrics\" section");
        section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| l.split('`').nth(1))
            .map(String::from)
            .collect()
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn readme_lists_exactly_the_metrics_served() {
        let m = Metrics::new();
        // Every recording method once, so every family has a series.
        m.reconcile_started("agentnode").error("ApiConflict");
        m.transient_error("ApiConflict");
        m.set_leader(true);
        m.set_controllers_running(true);
        m.set_runtime_stall(std::time::Duration::from_millis(3));
        let served: std::collections::BTreeSet<String> = m
            .encode()
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .map(String::from)
            .collect();
        assert!(
            served.iter().any(|n| n.starts_with("process_")),
            "no process_* metric on Linux: {served:?}"
        );
        let listed = readme_metrics();
        assert_eq!(
            listed,
            served,
            "README's Metrics table and /metrics differ (listed only: {:?}; served only: {:?})",
            listed.difference(&served).collect::<Vec<_>>(),
            served.difference(&listed).collect::<Vec<_>>()
        );
    }

    #[test]
    fn build_info_names_version_and_commit() {
        let text = Metrics::new().encode();
        let line = format!(
            "hypersync_build_info{{git_sha=\"{BUILD_GIT_SHA}\",version=\"{BUILD_VERSION}\"}} 1"
        );
        assert!(text.contains(&line), "{line} missing from:\n{text}");
        assert!(!BUILD_GIT_SHA.is_empty());
    }

    #[test]
    fn clones_share_one_registry() {
        let m = Metrics::new();
        let c = m.clone();
        c.set_leader(true);
        assert!(m.encode().contains("hypersync_leader 1"));
        m.set_leader(false);
        assert!(c.encode().contains("hypersync_leader 0"));
    }
}

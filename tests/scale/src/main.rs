//! `hypersync-scale` (`make bench-scale`): starts kube-sim (`--authorize`) and the operator as child
//! processes, measures kube-sim's own write ceiling, creates N Ephemeral AgentNodes at once with a
//! parallel client, plays their agents (objective met, as each node's ServiceAccount), and prints
//! the time to all Running and to all dissolved with children collected, the operator's API calls
//! per node (from kube-sim's counters), its writes once settled, and both processes' peak memory.
//! A global timeout bounds the run; a run cut short prints what it has and exits non-zero.

mod client;
mod latency;
mod report;
mod scenario;
mod stats;
mod timeline;
mod watch;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use hypersync_sandbox::process::{self, Process};
use kube::Client;
use serde_json::Value;
use tokio::sync::oneshot;

use report::{OperatorCalls, Progress, Report, Settled, Throughput};
use stats::Snapshot;
use timeline::{Step, Summary, Timeline};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "hypersync-scale",
    about = "N AgentNodes at once on kube-sim: time to Running and to dissolved, the operator's API calls and memory"
)]
struct Args {
    /// AgentNodes to create at once.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    nodes: u64,
    /// Seconds the whole run may take; then it prints what it has and exits non-zero.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Requests the bench's client keeps in flight (creates, agent reports, ceiling writes).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    concurrency: u64,
    /// The nodes' ttlSecondsAfterObjectiveMet.
    #[arg(long, default_value_t = 5)]
    ttl: u64,
    /// Print the report as JSON on stdout (the text report and progress go to stderr).
    #[arg(long)]
    json: bool,
    /// Seconds of the settled phase (all Running, no report yet) in which operator writes are counted.
    #[arg(long, default_value_t = 10)]
    settle: u64,
    /// ConfigMaps created to measure kube-sim's write ceiling (0 skips it).
    #[arg(long, default_value_t = 5_000)]
    ceiling_writes: u64,
    /// Report the agents' objectives as the admin instead of each node's ServiceAccount token.
    #[arg(long)]
    agents_as_admin: bool,
    /// An extra flag for `hypersync-operator run` (repeatable), e.g.
    /// `--operator-arg=--leader-election=false`.
    #[arg(long = "operator-arg", value_name = "FLAG", allow_hyphen_values = true)]
    operator_args: Vec<String>,
    /// The operator binary.
    #[arg(long, default_value = "target/release/hypersync-operator")]
    operator: PathBuf,
    /// The kube-sim binary.
    #[arg(long, default_value = "target/release/kube-sim")]
    kube_sim: PathBuf,
    /// Where the kubeconfig and the logs of kube-sim and the operator go.
    #[arg(long, default_value = "target/bench-scale")]
    state_dir: PathBuf,
}

/// Why a run stopped before the end.
#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    #[error(transparent)]
    Client(#[from] client::ClientError),
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to run {bin} crd: {message}")]
    Crds { bin: PathBuf, message: String },
    #[error("failed to create {name}")]
    Create {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to {0}: {1} exited ({2}); see its log in the state dir")]
    Exited(&'static str, &'static str, String),
    #[error("failed to {what}: {message}")]
    Step { what: &'static str, message: String },
}

/// The run's state: children, clients, the timeline and what has been measured so far.
struct Bench {
    args: Args,
    n: usize,
    start: Instant,
    phase: &'static str,
    sim: Option<Process>,
    operator: Option<Process>,
    admin: Option<Client>,
    timeline: Arc<Mutex<Timeline>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    report: Report,
    /// Counters when the first node was created.
    before_nodes: Option<Snapshot>,
    /// Seconds since start: first create, all Running, first report.
    first_create: Option<f64>,
    all_running: Option<f64>,
    first_report: Option<f64>,
    after_settle: Option<Snapshot>,
    at_running: Option<Snapshot>,
    /// Scheduler times of kube-sim, the operator and the bench at the first create.
    sched_at_first_create: Option<[latency::Sched; 3]>,
    /// Live counts of the AgentNodes and the children, from watches (see `count_collections`).
    live: Vec<(&'static str, Arc<watch::LiveSet>)>,
}

/// Progress lines and the text report: stdout, or stderr when stdout carries the JSON.
fn say(json: bool, line: &str) {
    if json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let timeout = Duration::from_secs(args.timeout);
    let mut bench = Bench::new(args);
    let deadline = tokio::time::Instant::now() + timeout;
    let outcome = tokio::select! {
        r = tokio::time::timeout_at(deadline, bench.run()) => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(error_chain(&err)),
            Err(_) => Err(format!("timeout after {}s while trying to {}", timeout.as_secs(), bench.phase)),
        },
        _ = tokio::signal::ctrl_c() => Err(format!("interrupted while trying to {}", bench.phase)),
    };
    bench.finish(outcome).await
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    out
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|s| s.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// Retry what may pass on a second try: everything but a 4xx answer other than 429.
fn retryable(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        _ => true,
    }
}

fn already_exists(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 409)
}

impl Bench {
    fn new(args: Args) -> Bench {
        let n = usize::try_from(args.nodes).unwrap_or(usize::MAX);
        let report = Report {
            nodes: n,
            concurrency: args.concurrency as usize,
            ttl_seconds: args.ttl,
            timeout_seconds: args.timeout,
            agents_as: if args.agents_as_admin {
                "admin".into()
            } else {
                "own ServiceAccount token".into()
            },
            load_average_start: load_average(),
            operator_args: args.operator_args.clone(),
            ..Report::default()
        };
        Bench {
            args,
            n,
            start: Instant::now(),
            phase: "start",
            sim: None,
            operator: None,
            admin: None,
            timeline: Arc::default(),
            tasks: Vec::new(),
            report,
            before_nodes: None,
            first_create: None,
            all_running: None,
            first_report: None,
            after_settle: None,
            at_running: None,
            sched_at_first_create: None,
            live: Vec::new(),
        }
    }

    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn say(&self, line: &str) {
        say(self.args.json, &format!("[{:>7.1}s] {line}", self.now()));
    }

    fn admin(&self) -> Result<&Client, BenchError> {
        self.admin.as_ref().ok_or(BenchError::Exited(
            "reach kube-sim",
            "kube-sim",
            "not started".into(),
        ))
    }

    /// Fails when kube-sim or the operator has exited.
    fn check_alive(&mut self) -> Result<(), BenchError> {
        if let Some(status) = self.sim.as_mut().and_then(Process::exited) {
            return Err(BenchError::Exited(self.phase, "kube-sim", status));
        }
        if let Some(status) = self.operator.as_mut().and_then(Process::exited) {
            return Err(BenchError::Exited(self.phase, "the operator", status));
        }
        Ok(())
    }

    async fn run(&mut self) -> Result<(), BenchError> {
        let n = self.n;
        self.phase = "start kube-sim";
        let state_dir = self.args.state_dir.clone();
        let write_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BenchError::Write { path, source }
        };
        std::fs::create_dir_all(&state_dir).map_err(write_err(&state_dir))?;
        let ignore = state_dir.join(".gitignore");
        std::fs::write(&ignore, "*\n").map_err(write_err(&ignore))?;
        let kubeconfig = state_dir.join("kubeconfig");
        let _ = std::fs::remove_file(&kubeconfig);
        let addr = process::free_addr()?;
        // 110 pods fit on a simulated node.
        let sim_nodes = format!("cpu={}", n / 100 + 2);
        let sim_args: Vec<String> = [
            "--port",
            &addr.port().to_string(),
            "--kubeconfig",
            &kubeconfig.to_string_lossy(),
            "--authorize",
            "--nodes",
            &sim_nodes,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let sim = Process::spawn_command(
            &self.args.kube_sim,
            "kube-sim",
            &sim_args,
            &[("RUST_LOG", "warn".as_ref())],
            &state_dir.join("kube-sim.log"),
            addr,
        )?;
        self.sim = Some(sim);
        // kube-sim (HTTPS) writes the kubeconfig, with its CA, right after it starts listening.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !kubeconfig.is_file() {
            if Instant::now() > deadline {
                return Err(BenchError::Step {
                    what: "wait for kube-sim's kubeconfig",
                    message: "not written within 30 s".into(),
                });
            }
            self.check_alive()?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let url = format!("https://{addr}");
        self.say(&format!(
            "kube-sim serving {url} (pid {}, --authorize, nodes {sim_nodes})",
            self.sim.as_ref().map_or(0, |s| s.pid)
        ));
        self.admin = Some(client::admin(&kubeconfig, "bench").await?);

        self.phase = "install the CRDs";
        self.install_crds().await?;
        self.phase = "apply the namespace, Secret, ModelEntry and AgentStack";
        for (path, obj) in scenario::setup_objects() {
            client::apply(self.admin()?, &path, &obj).await?;
        }

        self.phase = "measure kube-sim's write ceiling";
        if self.args.ceiling_writes > 0 {
            let ceiling = self.ceiling().await?;
            self.say(&format!(
                "kube-sim write ceiling: {} ConfigMap creates in {:.1}s = {:.0}/s",
                ceiling.count, ceiling.seconds, ceiling.per_second
            ));
            self.report.ceiling = Some(ceiling);
        }

        self.phase = "start the operator";
        let extra: Vec<&str> = self.args.operator_args.iter().map(String::as_str).collect();
        let op = Process::spawn_operator(
            &self.args.operator,
            &kubeconfig,
            &state_dir.join("operator.log"),
            &extra,
        )?;
        let pid = op.pid;
        self.operator
            .insert(op)
            .wait_ready(Duration::from_secs(60))
            .await?;
        self.say(&format!(
            "operator ready (pid {pid}, flags [{}], log {})",
            extra.join(" "),
            state_dir.join("operator.log").display()
        ));

        self.phase = "see the ModelEntry Ready and the AgentStack Resolved";
        self.wait_phase(&scenario::model_path(), "Ready").await?;
        self.wait_phase(&scenario::stack_path(), "Resolved").await?;

        self.phase = "start the watch on AgentNodes";
        let (tx, rx) = oneshot::channel();
        let watcher = client::admin(&kubeconfig, "watch").await?;
        self.tasks.push(tokio::spawn(watch::watch_nodes(
            watcher,
            self.timeline.clone(),
            self.start,
            tx,
        )));
        let _ = rx.await;

        self.phase = "create the AgentNodes";
        // Latencies from here on: the ramp's by the time all are Running, the whole run's at the end.
        client::reset_stats(self.admin()?).await?;
        self.before_nodes = Some(client::stats(self.admin()?).await?);
        self.sched_at_first_create = self.sched();
        self.first_create = Some(self.now());
        let created = self.create_nodes().await?;
        self.say(&format!(
            "created {n} AgentNodes in {:.1}s = {:.0}/s",
            created.seconds, created.per_second
        ));
        self.report.created = Some(created);

        self.phase = "see every AgentNode Running";
        self.wait_for(|b| Ok(b.count(Step::Running) >= n)).await?;
        let all_running = self.timeline().last(Step::Running);
        self.all_running = all_running;
        self.report.all_running_seconds =
            self.first_create.zip(self.all_running).map(|(a, b)| b - a);
        let stats = client::stats_json(self.admin()?).await?;
        self.at_running = Some(Snapshot::from_json(&stats));
        self.report.latency_to_running = Some(latency::ServerLatency::from_json(&stats));
        if let (Some(before), Some(now), Some(t0)) =
            (self.sched_at_first_create, self.sched(), self.first_create)
        {
            let secs = self.now() - t0;
            self.report.cpu_to_running = Some(report::CpuShare {
                kube_sim: now[0].rate_since(&before[0], secs),
                operator: now[1].rate_since(&before[1], secs),
                bench: now[2].rate_since(&before[2], secs),
            });
        }
        self.say(&format!(
            "all {n} Running, {} after the first create",
            self.since_first_create(self.all_running)
        ));

        // Listed once now (after the ramp, outside its figures), then kept by watch events.
        self.phase = "start the live counts";
        self.count_collections(&kubeconfig).await?;

        self.phase = "count the operator's writes once settled";
        let settle = Duration::from_secs(self.args.settle);
        tokio::time::sleep(settle).await;
        self.check_alive()?;
        let after_settle = client::stats(self.admin()?).await?;
        if let Some(at_running) = &self.at_running {
            let calls = after_settle.since(at_running).operator();
            let seconds = settle.as_secs_f64();
            self.report.settled = Some(Settled {
                seconds,
                writes: calls.writes,
                lease_writes: calls.lease_writes,
                writes_per_second: calls.writes as f64 / seconds.max(f64::MIN_POSITIVE),
                reads: calls.reads,
                writes_by_call: calls
                    .by_call
                    .iter()
                    .filter(|(k, _)| stats::is_write(k.split(' ').next().unwrap_or("")))
                    .map(|(k, c)| (k.clone(), *c))
                    .collect(),
            });
            self.say(&format!(
                "settled: {} operator writes in {seconds:.0}s ({} to the Lease)",
                calls.writes, calls.lease_writes
            ));
        }
        self.after_settle = Some(after_settle);

        self.phase = "play the agents";
        self.first_report = Some(self.now());
        let reports = self.play_agents(&kubeconfig).await?;
        self.say(&format!(
            "{} agents reported their objective met in {:.1}s = {:.0}/s ({} failed)",
            reports.count, reports.seconds, reports.per_second, self.report.report_errors
        ));
        self.report.reports = Some(reports);

        self.phase = "see every AgentNode dissolved";
        self.wait_for_zero(&["agentnodes"]).await?;
        let all_gone = self.now();
        self.report.all_dissolved_seconds = self.first_report.map(|t| all_gone - t);
        self.say(&format!(
            "all AgentNodes gone, {:.1}s after the first report",
            self.report.all_dissolved_seconds.unwrap_or_default()
        ));

        self.phase = "see every child collected";
        let children: Vec<&str> = scenario::child_collections()
            .iter()
            .map(|(name, _)| *name)
            .collect();
        self.wait_for_zero(&children).await?;
        let collected = self.now();
        self.report.children_collected_seconds = self.first_report.map(|t| collected - t);
        self.say(&format!(
            "all children collected, {:.1}s after the first report",
            self.report.children_collected_seconds.unwrap_or_default()
        ));
        Ok(())
    }

    /// Scheduler times so far of kube-sim, the operator and the bench itself.
    fn sched(&self) -> Option<[latency::Sched; 3]> {
        Some([
            latency::Sched::of(self.sim.as_ref()?.pid)?,
            latency::Sched::of(self.operator.as_ref()?.pid)?,
            latency::Sched::of(std::process::id())?,
        ])
    }

    fn timeline(&self) -> std::sync::MutexGuard<'_, Timeline> {
        self.timeline.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self, step: Step) -> usize {
        self.timeline().count(step)
    }

    fn since_first_create(&self, t: Option<f64>) -> String {
        match (self.first_create, t) {
            (Some(a), Some(b)) => format!("{:.1}s", b - a),
            _ => "-".into(),
        }
    }

    /// `<operator> crd`, applied with server-side apply; then waits until discovery serves them.
    async fn install_crds(&mut self) -> Result<(), BenchError> {
        let bin = self.args.operator.clone();
        let crd_err = |message: String| BenchError::Crds {
            bin: bin.clone(),
            message,
        };
        if !bin.is_file() {
            return Err(process::ProcessError::Missing(bin.clone(), "hypersync-operator").into());
        }
        let out = tokio::process::Command::new(&bin)
            .arg("crd")
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| crd_err(e.to_string()))?;
        if !out.status.success() {
            return Err(crd_err(String::from_utf8_lossy(&out.stderr).into_owned()));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut names = Vec::new();
        for crd in
            serde_saphyr::from_multiple::<Value>(&text).map_err(|e| crd_err(e.to_string()))?
        {
            let Some(name) = crd.pointer("/metadata/name").and_then(Value::as_str) else {
                continue;
            };
            let path = format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}");
            client::apply(self.admin()?, &path, &crd).await?;
            names.push(name.to_string());
        }
        loop {
            let served = client::get_json(self.admin()?, "/apis/hypersync.io/v1alpha1")
                .await
                .ok()
                .and_then(|v| v.get("resources").and_then(Value::as_array).cloned())
                .unwrap_or_default();
            let has = |r: &str| served.iter().any(|x| x.get("name") == Some(&r.into()));
            if ["agentnodes", "agentstacks", "modelentries"]
                .iter()
                .all(|r| has(r))
            {
                break;
            }
            self.check_alive()?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.say(&format!("CRDs installed: {}", names.join(", ")));
        Ok(())
    }

    /// Creates `ceiling_writes` ConfigMaps with the bench's concurrency, then deletes them.
    async fn ceiling(&mut self) -> Result<Throughput, BenchError> {
        let admin = self.admin()?.clone();
        let count = self.args.ceiling_writes;
        let path = scenario::ceiling_path();
        let t0 = Instant::now();
        let results: Vec<Result<(), BenchError>> = futures::stream::iter(0..count)
            .map(|i| {
                let (admin, path) = (&admin, &path);
                async move {
                    let cm = scenario::ceiling_config_map(i as usize);
                    client::create(admin, path, &cm)
                        .await
                        .map_err(|source| BenchError::Create {
                            name: format!("configmap ceiling-{i}"),
                            source,
                        })
                }
            })
            .buffer_unordered(self.args.concurrency as usize)
            .collect()
            .await;
        let seconds = t0.elapsed().as_secs_f64();
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        client::delete_collection(&admin, &path).await?;
        Ok(Throughput::new(count, seconds))
    }

    /// Polls the object at `path` until its `status.phase` is `phase`.
    async fn wait_phase(&mut self, path: &str, phase: &str) -> Result<(), BenchError> {
        loop {
            let obj = client::get_json(self.admin()?, path).await?;
            if obj.pointer("/status/phase").and_then(Value::as_str) == Some(phase) {
                return Ok(());
            }
            self.check_alive()?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Creates the N AgentNodes with `concurrency` requests in flight, marking each one created
    /// when its create returns.
    async fn create_nodes(&mut self) -> Result<Throughput, BenchError> {
        let admin = self.admin()?.clone();
        let (n, ttl) = (self.n, self.args.ttl);
        let path = scenario::nodes_path();
        let t0 = Instant::now();
        let (durations, failed) = self
            .for_each_node(Step::Created, |i, name, attempt| {
                let (admin, path) = (&admin, &path);
                async move {
                    let obj = scenario::node(&name, i, ttl);
                    match client::create(admin, path, &obj).await {
                        // A retry after a lost answer finds the first attempt's object.
                        Err(e) if attempt > 0 && already_exists(&e) => Ok(()),
                        other => other,
                    }
                }
            })
            .await;
        let seconds = t0.elapsed().as_secs_f64();
        if let Some(m) = latency::Millis::of_seconds(durations) {
            self.report
                .client_latency
                .insert("bench: create agentnodes".into(), m);
        }
        if let Some((name, source)) = failed.into_iter().next() {
            return Err(BenchError::Create { name, source });
        }
        Ok(Throughput::new(n as u64, seconds))
    }

    /// Each node's agent reports `status.objective.observed` at the target (a merge patch on the
    /// status subresource), as the node's ServiceAccount unless `--agents-as-admin`.
    async fn play_agents(
        &mut self,
        kubeconfig: &std::path::Path,
    ) -> Result<Throughput, BenchError> {
        let as_admin = self.args.agents_as_admin;
        let agent = if as_admin {
            self.admin()?.clone()
        } else {
            client::anonymous(kubeconfig, "agent").await?
        };
        let patch = scenario::objective_met();
        let t0 = Instant::now();
        let (durations, failed) = self
            .for_each_node(Step::Reported, |_, name, _| {
                let (agent, patch) = (&agent, &patch);
                async move {
                    let path = scenario::node_status_path(&name);
                    let token = (!as_admin).then(|| scenario::agent_token(&name));
                    client::merge_patch_status(agent, &path, patch, token.as_deref()).await
                }
            })
            .await;
        let seconds = t0.elapsed().as_secs_f64();
        if let Some(m) = latency::Millis::of_seconds(durations) {
            self.report
                .client_latency
                .insert("agent: patch agentnodes/status".into(), m);
        }
        self.report.report_errors = failed.len() as u64;
        self.report.first_report_error = failed
            .first()
            .map(|(name, e)| format!("{name}: {}", error_chain(e)));
        Ok(Throughput::new((self.n - failed.len()) as u64, seconds))
    }

    /// Calls `call(index, node name, attempt)` for every node with `concurrency` calls in flight,
    /// retrying up to three times (500 ms apart) what may pass later, and marks `step` for each
    /// node whose call succeeded. Returns how long each succeeded call took (seconds, from sending
    /// to its answer, as the client sees it) and the nodes that failed.
    async fn for_each_node<F, Fut>(
        &self,
        step: Step,
        call: F,
    ) -> (Vec<f64>, Vec<(String, kube::Error)>)
    where
        F: Fn(usize, String, u32) -> Fut,
        Fut: std::future::Future<Output = Result<(), kube::Error>>,
    {
        let (n, start, timeline, call) = (self.n, self.start, &self.timeline, &call);
        let results: Vec<Result<f64, (String, kube::Error)>> = futures::stream::iter(0..n)
            .map(|i| async move {
                let name = scenario::node_name(i, n);
                let mut attempt = 0;
                let took = loop {
                    let sent = Instant::now();
                    match call(i, name.clone(), attempt).await {
                        Ok(()) => break sent.elapsed().as_secs_f64(),
                        Err(e) if attempt < 3 && retryable(&e) => {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        Err(e) => return Err((name, e)),
                    }
                };
                let at = start.elapsed().as_secs_f64();
                timeline
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .mark(&name, step, at);
                Ok(took)
            })
            .buffer_unordered(self.args.concurrency as usize)
            .collect()
            .await;
        let mut took = Vec::with_capacity(results.len());
        let mut failed = Vec::new();
        for r in results {
            match r {
                Ok(t) => took.push(t),
                Err(f) => failed.push(f),
            }
        }
        (took, failed)
    }

    /// Waits until `done` holds, printing progress every 10 s.
    async fn wait_for(
        &mut self,
        done: impl Fn(&Bench) -> Result<bool, BenchError>,
    ) -> Result<(), BenchError> {
        let mut last_progress = Instant::now();
        loop {
            if done(self)? {
                return Ok(());
            }
            self.check_alive()?;
            if last_progress.elapsed() >= Duration::from_secs(10) {
                last_progress = Instant::now();
                self.say(&self.progress_line());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Starts the live counts of the AgentNodes and of the children (by the children's label):
    /// one list each, then watch events, instead of a list of every pod per progress line.
    async fn count_collections(&mut self, kubeconfig: &Path) -> Result<(), BenchError> {
        let client = client::admin(kubeconfig, "count").await?;
        let nodes = [("agentnodes", scenario::nodes_path(), None)];
        let children = scenario::child_collections()
            .into_iter()
            .map(|(name, path)| (name, path, Some(scenario::CHILD_SELECTOR)));
        for (name, path, selector) in nodes.into_iter().chain(children) {
            let live = Arc::new(watch::LiveSet::default());
            self.tasks.push(tokio::spawn(watch::count_collection(
                client.clone(),
                path,
                selector,
                live.clone(),
            )));
            self.live.push((name, live));
        }
        Ok(())
    }

    /// How many objects the named collections hold now (None: not listed yet).
    fn left(&self, names: &[&str]) -> Vec<(&'static str, Option<usize>)> {
        self.live
            .iter()
            .filter(|(name, _)| names.contains(name))
            .map(|(name, live)| (*name, live.count()))
            .collect()
    }

    /// Waits until the named live counts are all zero, printing progress every 10 s.
    async fn wait_for_zero(&mut self, names: &[&str]) -> Result<(), BenchError> {
        let mut last_progress = Instant::now();
        loop {
            let left = self.left(names);
            if left.iter().all(|(_, c)| *c == Some(0)) {
                return Ok(());
            }
            self.check_alive()?;
            if last_progress.elapsed() >= Duration::from_secs(10) {
                last_progress = Instant::now();
                let left: Vec<String> = left
                    .iter()
                    .map(|(name, c)| match c {
                        Some(c) => format!("{name} {c}"),
                        None => format!("{name} ?"),
                    })
                    .collect();
                self.say(&format!(
                    "{}; left: {}",
                    self.progress_line(),
                    left.join(", ")
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn progress_line(&self) -> String {
        let t = self.timeline();
        let phases: Vec<String> = t.phases().iter().map(|(k, c)| format!("{k} {c}")).collect();
        format!(
            "{}/{} Running, {} reported, {} dissolved; live by phase: {}",
            t.count(Step::Running),
            self.n,
            t.count(Step::Reported),
            t.count(Step::Gone),
            phases.join(", ")
        )
    }

    /// Fills in what the timeline, the counters and /proc say now, prints the report, stops the
    /// children. Each call here is bounded so a broken kube-sim cannot hang the end either.
    async fn finish(mut self, outcome: Result<(), String>) -> ExitCode {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        let bound = Duration::from_secs(10);
        self.report.outcome = match &outcome {
            Ok(()) => "complete".into(),
            Err(e) => e.clone(),
        };
        {
            let t = self.timeline();
            let progress = Progress {
                created: t.count(Step::Created),
                running: t.count(Step::Running),
                reported: t.count(Step::Reported),
                succeeded: t.count(Step::Succeeded),
                gone: t.count(Step::Gone),
                phases: t.phases(),
            };
            let to_running = Summary::of(t.latencies(Step::Created, Step::Running));
            let to_dissolved = Summary::of(t.latencies(Step::Reported, Step::Gone));
            drop(t);
            self.report.progress = progress;
            self.report.to_running = to_running;
            self.report.to_dissolved = to_dissolved;
        }
        if let Some(admin) = self.admin.clone() {
            if self.first_create.is_some() {
                for (name, path) in scenario::child_collections() {
                    let c = tokio::time::timeout(
                        bound,
                        client::count(&admin, &path, Some(scenario::CHILD_SELECTOR)),
                    )
                    .await;
                    if let Ok(Ok(c)) = c {
                        self.report.children_left.insert(name.to_string(), c);
                    }
                }
            }
            let end = tokio::time::timeout(bound, client::stats_json(&admin)).await;
            if let Ok(Ok(end)) = end {
                if self.first_create.is_some() {
                    self.report.latency_whole_run = Some(latency::ServerLatency::from_json(&end));
                }
                if let Some(before) = &self.before_nodes {
                    let end = Snapshot::from_json(&end);
                    self.report.operator = Some(self.operator_calls(before, &end));
                }
            }
        }
        self.report.operator_peak_memory_kib = self
            .operator
            .as_ref()
            .and_then(Process::memory_kib)
            .map(|m| m.0);
        self.report.kube_sim_peak_memory_kib =
            self.sim.as_ref().and_then(Process::memory_kib).map(|m| m.0);
        self.report.load_average_end = load_average();

        say(self.args.json, "");
        say(self.args.json, self.report.text().trim_end());
        if self.args.json {
            match serde_json::to_string_pretty(&self.report) {
                Ok(j) => println!("{j}"),
                Err(e) => eprintln!("failed to serialise the report: {e}"),
            }
        }
        if let Some(op) = self.operator.take() {
            op.stop(bound).await;
        }
        if let Some(sim) = self.sim.take() {
            sim.stop(bound).await;
        }
        match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        }
    }

    /// The operator's calls from the first create to `end`, per node and as rates.
    fn operator_calls(&self, before: &Snapshot, end: &Snapshot) -> OperatorCalls {
        let calls = end.since(before).operator();
        let n = self.n.max(1) as f64;
        let ceiling = self.report.ceiling.map(|c| c.per_second);
        let of_ceiling = |t: &Option<Throughput>| {
            t.zip(ceiling)
                .filter(|(_, c)| *c > 0.0)
                .map(|(t, c)| t.per_second / c)
        };
        let ramp_writes = self
            .at_running
            .as_ref()
            .zip(self.first_create.zip(self.all_running))
            .map(|(s, (a, b))| Throughput::new(s.since(before).operator().writes, b - a));
        let teardown_writes = self
            .after_settle
            .as_ref()
            .zip(
                self.first_report
                    .zip(self.report.children_collected_seconds),
            )
            .map(|(s, (_, secs))| Throughput::new(end.since(s).operator().writes, secs));
        let overall_writes = self
            .first_create
            .map(|t| Throughput::new(calls.writes, self.now() - t));
        OperatorCalls {
            overall_ratio_to_ceiling: of_ceiling(&overall_writes),
            overall_writes,
            writes_per_node: calls.writes as f64 / n,
            reads_per_node: calls.reads as f64 / n,
            ramp_ratio_to_ceiling: of_ceiling(&ramp_writes),
            teardown_ratio_to_ceiling: of_ceiling(&teardown_writes),
            ramp_writes,
            teardown_writes,
            calls,
        }
    }
}

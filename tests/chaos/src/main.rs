//! `hypersync-chaos` (`make chaos`, `make chaos-smoke`): kube-sim with `--authorize` and fault
//! injection, the operator as a child process authenticated as the chart's ServiceAccount with leader
//! election, N AgentNodes (metric, completion and Persistent objectives over an OnDemand, an Always
//! and a remote model), agents reporting as their own ServiceAccounts, the operator SIGKILLed K times
//! at seeded random moments and restarted; then waits for convergence and checks the invariants
//! (see `invariants`), printing a table and exiting non-zero on any violation.

#[allow(dead_code)]
#[path = "../../sandbox/src/process.rs"]
mod process;

mod invariants;
mod scenario;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use invariants::Snapshot;
use process::Operator;
use scenario::{NS, NodeKind, OP_NS, OP_SA, PlannedNode};

const USER_AGENT: &str = "hypersync-chaos";
const FIELD_MANAGER: &str = "hypersync-chaos";

#[derive(Parser, Debug)]
#[command(
    name = "hypersync-chaos",
    about = "The operator under fault injection and SIGKILLs on kube-sim, then its invariants checked"
)]
struct Args {
    /// AgentNodes to create.
    #[arg(long, default_value_t = 2000)]
    nodes: usize,
    /// Times the operator is SIGKILLed (and restarted) while the nodes come and go.
    #[arg(long, default_value_t = 5)]
    kills: usize,
    /// Seed of the plan (node mix, placements, kill moments) and of the fault draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds to wait for convergence after the last node is created and the last kill.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// kube-sim fault spec (see tests/sim/ARCHITECTURE.md); `seed=<--seed>` is added unless given.
    /// Default: 5xx, 409 and applied-504 on the operator's writes, 410 and drops on its watches,
    /// 5xx and applied-504 on the agents' reports.
    #[arg(long)]
    faults: Option<String>,
    /// Seconds over which the nodes are created [default: nodes / 40, at least 10].
    #[arg(long)]
    create_seconds: Option<u64>,
    /// The operator binary.
    #[arg(long, default_value = "target/release/hypersync-operator")]
    operator: PathBuf,
    /// Where the operator's logs (one per incarnation) and the kubeconfig go.
    #[arg(long, default_value = "target/chaos")]
    state_dir: PathBuf,
    /// kube-sim's nodes.
    #[arg(long, default_value = "gpu-a100=2x8,cpu=2")]
    sim_nodes: String,
    /// The operator's Lease duration, renew deadline and retry period in seconds. A restart after a
    /// SIGKILL waits up to the duration; a renew round slower than deadline - retry loses the Lease
    /// (4,3,1 lost it every ~30 s with 2,000 nodes on a loaded 2-core machine).
    #[arg(long, default_value = "10,8,2", value_parser = parse_lease)]
    lease: [u64; 3],
}

fn parse_lease(s: &str) -> Result<[u64; 3], String> {
    let v: Vec<u64> = s
        .split(',')
        .map(|p| p.trim().parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--lease: {e}"))?;
    match v[..] {
        [d, r, p] if d > r && r > p && p > 0 => Ok([d, r, p]),
        _ => Err(format!(
            "--lease: want DURATION,DEADLINE,RETRY with DURATION > DEADLINE > RETRY > 0, got {s:?}"
        )),
    }
}

#[derive(Debug, thiserror::Error)]
enum ChaosError {
    #[error("failed to start kube-sim")]
    Sim(#[from] kube_sim::SimError),
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to build a client: {0}")]
    ClientConfig(String),
    #[error("failed to parse the chart's RBAC rules")]
    Rules(#[from] serde_saphyr::Error),
    #[error("failed to {what}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    #[error("failed to see the CRDs served within 30s")]
    CrdsNotServed,
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ChaosError {
    let what = what.into();
    move |source| ChaosError::Kube { what, source }
}

/// Seconds since the start.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn say(self, line: &str) {
        println!("[{:>6.1}s] {line}", self.seconds());
    }

    fn seconds(self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let clock = Clock(Instant::now());
    match run(&args, clock).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {err}");
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::from(2)
        }
    }
}

/// `Ok(true)` when every invariant holds.
async fn run(args: &Args, clock: Clock) -> Result<bool, ChaosError> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let faults = match &args.faults {
        Some(spec) => scenario::seeded_faults(spec, args.seed),
        None => scenario::default_faults(args.seed),
    };
    let planned = scenario::nodes(args.nodes, &mut rng);
    let create_seconds = args
        .create_seconds
        .unwrap_or((args.nodes as u64 / 40).max(10));
    // Kill moments: uniform over the creation window plus 15 s of dissolving, sorted.
    let kill_window = (create_seconds + 15) as f64;
    let mut kills: Vec<f64> = (0..args.kills)
        .map(|_| rng.random_range(2.0..kill_window))
        .collect();
    kills.sort_by(f64::total_cmp);
    let restart_delays: Vec<u64> = (0..args.kills).map(|_| rng.random_range(0..1500)).collect();
    let count = |k: NodeKind| planned.iter().filter(|p| p.kind == k).count();
    println!(
        "hypersync-chaos --seed {} --nodes {} --kills {} --timeout {}: {} metric, {} completion, {} Persistent nodes over {create_seconds}s",
        args.seed,
        args.nodes,
        args.kills,
        args.timeout,
        count(NodeKind::Metric),
        count(NodeKind::Completion),
        count(NodeKind::Persistent)
    );
    println!("faults: {faults}");
    println!(
        "kills at: {}",
        kills
            .iter()
            .map(|k| format!("{k:.1}s"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let sim = kube_sim::Sim::start(kube_sim::SimConfig {
        nodes: Some(args.sim_nodes.clone()),
        authorize: true,
        ..Default::default()
    })
    .await?;
    let url = sim.url();
    let _ = SIM_CA.set(sim.ca_pem().map(String::from));
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ChaosError::Write { path, source }
    };
    std::fs::create_dir_all(&args.state_dir).map_err(write_err(&args.state_dir))?;
    for old in std::fs::read_dir(&args.state_dir)
        .map_err(write_err(&args.state_dir))?
        .flatten()
    {
        if old.file_name().to_string_lossy().starts_with("operator-") {
            let _ = std::fs::remove_file(old.path());
        }
    }
    let kubeconfig = args.state_dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        kube_sim::kubeconfig_yaml(&url, sim_ca(), Some(&scenario::sa_token(OP_NS, OP_SA))),
    )
    .map_err(write_err(&kubeconfig))?;
    clock.say(&format!(
        "kube-sim serving {url} (nodes {}; tokens required)",
        args.sim_nodes
    ));

    let admin = client(&url, "sim-admin", &format!("{USER_AGENT}/admin")).await?;
    install_crds(&admin).await?;
    let mut kinds = HashMap::new();
    apply_all(&admin, &scenario::rbac()?, &mut kinds).await?;
    apply_all(&admin, &scenario::registry(), &mut kinds).await?;
    clock.say(
        "CRDs, the operator's RBAC (the chart's rules), 3 ModelEntries and 3 AgentStacks applied",
    );
    // Faults only from here: the setup above is the cluster admin's, and never faulted anyway.
    set_faults(&admin, &faults).await?;

    let node_gvk = GroupVersionKind::gvk("hypersync.io", "v1alpha1", "AgentNode");
    let (node_ar, _) = kube::discovery::pinned_kind(&admin, &node_gvk)
        .await
        .map_err(kube_err("discover AgentNode"))?;
    kinds.insert("AgentNode".to_string(), (node_ar.clone(), true));

    // The driver's watch: start agents once a node runs, remember each node's last state at deletion.
    let deleted: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
    let kinds_of: HashMap<String, NodeKind> =
        planned.iter().map(|p| (p.name.clone(), p.kind)).collect();
    let watch_task = tokio::spawn(watch_nodes(
        admin.clone(),
        node_ar.clone(),
        url.clone(),
        kinds_of,
        deleted.clone(),
        AgentLog::open(&args.state_dir.join("agents.log"), clock),
    ));

    let mut incarnation = 0;
    let spawn = |n: usize| -> Result<Operator, ChaosError> {
        let log = args.state_dir.join(format!("operator-{n}.log"));
        let [duration, deadline, retry] = args.lease;
        let extra: Vec<String> = vec![
            "--leader-election=true".into(),
            "--leader-election-namespace".into(),
            OP_NS.into(),
            format!("--lease-duration-seconds={duration}"),
            format!("--renew-deadline-seconds={deadline}"),
            format!("--retry-period-seconds={retry}"),
            format!("--identity=chaos-{n}"),
        ];
        Ok(Operator::spawn_with(
            &args.operator,
            &kubeconfig,
            &log,
            &extra,
        )?)
    };
    let mut operator = spawn(incarnation)?;
    operator.wait_ready(Duration::from_secs(60)).await?;
    clock.say(&format!("operator ready (pid {})", operator.pid));

    // Create the nodes at a steady pace while the kills happen.
    let start = Instant::now();
    let create_task = tokio::spawn(create_nodes(
        admin.clone(),
        node_ar.clone(),
        planned.clone(),
        Duration::from_secs(create_seconds),
        clock,
    ));
    for (i, at) in kills.iter().enumerate() {
        let due = start + Duration::from_secs_f64(*at);
        tokio::time::sleep_until(due.into()).await;
        let pid = operator.pid;
        let how = operator.kill().await;
        clock.say(&format!(
            "operator pid {pid} {how} (kill {} of {})",
            i + 1,
            kills.len()
        ));
        tokio::time::sleep(Duration::from_millis(restart_delays[i])).await;
        incarnation += 1;
        operator = spawn(incarnation)?;
        clock.say(&format!("operator restarted (pid {})", operator.pid));
    }
    match create_task.await {
        Ok(Ok(n)) => clock.say(&format!("{n} AgentNodes created")),
        Ok(Err(err)) => return Err(err),
        Err(err) => {
            return Err(ChaosError::ClientConfig(format!(
                "node creation task: {err}"
            )));
        }
    }

    // Converge: check until every invariant holds or the timeout passes.
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut last_line = String::new();
    let mut self_exits = 0;
    let (invs, snap) = loop {
        if let Some(status) = operator.exited() {
            // As the kubelet would: an operator that lost its Lease exits so a restart rejoins.
            let log = args.state_dir.join(format!("operator-{incarnation}.log"));
            let last = std::fs::read_to_string(&log)
                .ok()
                .and_then(|t| {
                    t.lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .map(str::to_string)
                })
                .unwrap_or_default();
            clock.say(&format!(
                "operator exited ({status}): {last}; restarting it"
            ));
            self_exits += 1;
            incarnation += 1;
            operator = spawn(incarnation)?;
        }
        // Cheap first: while Ephemeral nodes remain, only count the nodes (listing every kind of
        // a 2,000-node namespace each round would load kube-sim as much as the operator does).
        if Instant::now() < deadline
            && let Some(left) = ephemeral_left(&admin, &kinds, &planned).await
            && left > 0
        {
            let line = format!("{left} Ephemeral nodes left");
            if line != last_line {
                clock.say(&line);
                last_line = line;
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
            continue;
        }
        let snap = snapshot(&admin, &kinds, &deleted, &args.state_dir, incarnation).await?;
        let invs = invariants::check(&snap, &planned);
        let failing: Vec<String> = invs
            .iter()
            .filter(|i| !i.violations.is_empty())
            .map(|i| format!("{} {}", i.name, i.violations.len()))
            .collect();
        if failing.is_empty() || Instant::now() >= deadline {
            break (invs, snap);
        }
        let line = format!(
            "{} nodes left; waiting on: {}",
            snap.objects.get("AgentNode").map_or(0, Vec::len),
            failing.join(", ")
        );
        if line != last_line {
            clock.say(&line);
            last_line = line;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    };
    let elapsed = start.elapsed().as_secs_f64();
    let ok = invs.iter().all(|i| i.violations.is_empty());
    watch_task.abort();

    println!();
    print!("{}", invariants::render(&invs));
    println!();
    println!(
        "{} after {elapsed:.1}s from the first node ({} kills, {self_exits} exits of its own, {} operator incarnations, seed {})",
        if ok { "CONVERGED" } else { "VIOLATIONS" },
        kills.len(),
        incarnation + 1,
        args.seed
    );
    println!("faults injected: {}", fault_counters(&admin).await);
    if let Some((hwm, _)) = operator.memory_kib() {
        println!(
            "last operator's peak memory: {:.1} MiB",
            hwm as f64 / 1024.0
        );
    }
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!(
            "machine load (1/5/15 min): {}",
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    if !ok {
        let argv: Vec<String> = std::env::args().collect();
        println!(
            "replay (same seed: same nodes, kill moments and fault draws): {}",
            argv.join(" ")
        );
        println!("operator logs: {}/operator-*.log", args.state_dir.display());
        // The objects as they were at the end, for the post-mortem.
        let dump = args.state_dir.join("objects.json");
        let objects: serde_json::Map<String, Value> = snap
            .objects
            .iter()
            .filter(|(kind, _)| matches!(**kind, "AgentNode" | "ModelEntry" | "Job" | "Pod"))
            .map(|(kind, list)| (kind.to_string(), Value::Array(list.clone())))
            .collect();
        if serde_json::to_vec_pretty(&objects)
            .ok()
            .is_some_and(|bytes| std::fs::write(&dump, bytes).is_ok())
        {
            println!("objects at the end: {}", dump.display());
        }
        println!("agents' reports: {}/agents.log", args.state_dir.display());
    }
    let how = operator.stop(Duration::from_secs(10)).await;
    clock.say(&format!("operator {how}"));
    sim.shutdown().await;
    Ok(ok)
}

/// kube-sim's CA (PEM), which every kubeconfig of this run trusts.
static SIM_CA: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

fn sim_ca() -> Option<&'static str> {
    SIM_CA.get().and_then(|c| c.as_deref())
}

async fn client(url: &str, token: &str, user_agent: &str) -> Result<Client, ChaosError> {
    let kc = Kubeconfig::from_yaml(&kube_sim::kubeconfig_yaml(url, sim_ca(), Some(token)))
        .map_err(|e| ChaosError::ClientConfig(e.to_string()))?;
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| ChaosError::ClientConfig(e.to_string()))?;
    let ua = http::HeaderValue::from_str(user_agent)
        .map_err(|e| ChaosError::ClientConfig(e.to_string()))?;
    config.headers.push((http::header::USER_AGENT, ua));
    Client::try_from(config).map_err(|e| ChaosError::ClientConfig(e.to_string()))
}

async fn install_crds(client: &Client) -> Result<(), ChaosError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let crds = hypersync_operator::api::generate::crds();
    for crd in &crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(crd))
            .await
            .map_err(kube_err(format!("apply CRD {name}")))?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for crd in &crds {
        let gvk = GroupVersionKind::gvk(&crd.spec.group, "v1alpha1", &crd.spec.names.kind);
        while kube::discovery::pinned_kind(client, &gvk).await.is_err() {
            if Instant::now() >= deadline {
                return Err(ChaosError::CrdsNotServed);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Server-side apply each object (namespaced ones into their namespace).
async fn apply_all(
    client: &Client,
    objects: &[Value],
    kinds: &mut HashMap<String, (ApiResource, bool)>,
) -> Result<(), ChaosError> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for obj in objects {
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !kinds.contains_key(kind) {
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            let gvk = GroupVersionKind::gvk(group, version, kind);
            let (ar, caps) = kube::discovery::pinned_kind(client, &gvk)
                .await
                .map_err(kube_err(format!("discover {api_version} {kind}")))?;
            let namespaced = caps.scope == kube::discovery::Scope::Namespaced;
            kinds.insert(kind.to_string(), (ar, namespaced));
        }
        let Some((ar, namespaced)) = kinds.get(kind) else {
            continue;
        };
        let api: Api<DynamicObject> =
            match obj.pointer("/metadata/namespace").and_then(Value::as_str) {
                Some(ns) if *namespaced => Api::namespaced_with(client.clone(), ns, ar),
                _ => Api::all_with(client.clone(), ar),
            };
        api.patch(name, &params, &Patch::Apply(obj))
            .await
            .map_err(kube_err(format!("apply {kind}/{name}")))?;
    }
    Ok(())
}

async fn sim_request(
    client: &Client,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<String, kube::Error> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .body(body)
        .map_err(kube::Error::HttpError)?;
    client.request_text(req).await
}

async fn set_faults(admin: &Client, spec: &str) -> Result<(), ChaosError> {
    sim_request(admin, "POST", "/sim/faults", spec.as_bytes().to_vec())
        .await
        .map_err(kube_err("set the fault spec (POST /sim/faults)"))?;
    Ok(())
}

/// `total N (kind n, ...)` from `GET /sim/faults`.
async fn fault_counters(admin: &Client) -> String {
    let Ok(text) = sim_request(admin, "GET", "/sim/faults", Vec::new()).await else {
        return "unavailable".into();
    };
    let v: Value = serde_json::from_str(&text).unwrap_or_default();
    let by_kind: Vec<String> = v
        .pointer("/counters/byKind")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    format!(
        "{} ({})",
        v.pointer("/counters/total").unwrap_or(&Value::Null),
        by_kind.join(", ")
    )
}

/// Create every planned node over `over`, as the cluster admin (retrying transient errors).
async fn create_nodes(
    admin: Client,
    ar: ApiResource,
    planned: Vec<PlannedNode>,
    over: Duration,
    clock: Clock,
) -> Result<usize, ChaosError> {
    let api: Api<DynamicObject> = Api::namespaced_with(admin, NS, &ar);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let start = Instant::now();
    let n = planned.len().max(1);
    for (i, p) in planned.iter().enumerate() {
        let due = start + over.mul_f64(i as f64 / n as f64);
        tokio::time::sleep_until(due.into()).await;
        let mut tries = 0;
        loop {
            match api.patch(&p.name, &params, &Patch::Apply(&p.object)).await {
                Ok(_) => break,
                Err(err) if tries < 5 => {
                    tries += 1;
                    clock.say(&format!("create agentnode/{}: {err}; retrying", p.name));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => return Err(kube_err(format!("create agentnode/{}", p.name))(err)),
            }
        }
    }
    Ok(planned.len())
}

/// Watch the nodes as the admin: start each metric node's agent once the node runs, and keep the
/// last state of every deleted node.
async fn watch_nodes(
    admin: Client,
    ar: ApiResource,
    url: String,
    kinds: HashMap<String, NodeKind>,
    deleted: Arc<Mutex<HashMap<String, Value>>>,
    log: AgentLog,
) {
    let api: Api<DynamicObject> = Api::namespaced_with(admin, NS, &ar);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let started: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
    let limit = Arc::new(Semaphore::new(32));
    while let Some(ev) = stream.next().await {
        let (obj, gone) = match ev {
            Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => (o, false),
            Ok(watcher::Event::Delete(o)) => (o, true),
            Ok(_) | Err(_) => continue,
        };
        let name = obj.metadata.name.clone().unwrap_or_default();
        let Ok(value) = serde_json::to_value(&obj) else {
            continue;
        };
        if gone {
            if let Ok(mut d) = deleted.lock() {
                d.insert(name, value);
            }
            continue;
        }
        let metric = matches!(
            kinds.get(&name),
            Some(NodeKind::Metric | NodeKind::Persistent)
        );
        let running = value.pointer("/status/phase").and_then(Value::as_str) == Some("Running");
        let met = value
            .pointer("/status/objective/met")
            .and_then(Value::as_bool)
            == Some(true);
        if !metric || !running || met {
            continue;
        }
        let fresh = started
            .lock()
            .map(|mut s| s.insert(name.clone()))
            .unwrap_or(false);
        if !fresh {
            continue;
        }
        let (url, ar, limit, started) = (url.clone(), ar.clone(), limit.clone(), started.clone());
        let log = log.clone();
        log.line(&format!(
            "{name}: seen Running at resourceVersion {}; starting its agent",
            obj.metadata.resource_version.as_deref().unwrap_or("?")
        ));
        tokio::spawn(async move {
            let Ok(_permit) = limit.acquire().await else {
                return;
            };
            let reported = play_agent(&url, &ar, &name, &log).await;
            if !reported && let Ok(mut s) = started.lock() {
                // Let a later event of the node start it again.
                s.remove(&name);
            }
        });
    }
}

/// The agent of `node`, as its own ServiceAccount: report the objective met, retrying faults and
/// the moments before its RBAC exists. `false` if it gave up.
async fn play_agent(url: &str, ar: &ApiResource, node: &str, log: &AgentLog) -> bool {
    let token = scenario::sa_token(NS, &format!("{node}-agent"));
    let Ok(agent) = client(url, &token, &format!("{USER_AGENT}/agent")).await else {
        return false;
    };
    let api: Api<DynamicObject> = Api::namespaced_with(agent, NS, ar);
    let patch = json!({"status": {"objective": {"observed": scenario::TARGET}}});
    for _ in 0..60 {
        match api
            .patch_status(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(o) => {
                log.line(&format!(
                    "{node}: reported; the node is at resourceVersion {}",
                    o.metadata.resource_version.as_deref().unwrap_or("?")
                ));
                return true;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                log.line(&format!("{node}: gone before its report"));
                return true;
            }
            Err(err) => {
                log.line(&format!("{node}: report failed: {err}"));
                tokio::time::sleep(Duration::from_millis(500)).await
            }
        }
    }
    log.line(&format!("{node}: agent gave up"));
    false
}

/// What the agents did, one timestamped line each, in `<state-dir>/agents.log` (to tell a report
/// that never happened from one the operator missed).
#[derive(Clone)]
struct AgentLog {
    file: Option<Arc<Mutex<std::fs::File>>>,
    clock: Clock,
}

impl AgentLog {
    fn open(path: &Path, clock: Clock) -> Self {
        let file = std::fs::File::create(path)
            .ok()
            .map(|f| Arc::new(Mutex::new(f)));
        Self { file, clock }
    }

    fn line(&self, text: &str) {
        use std::io::Write;
        if let Some(file) = &self.file
            && let Ok(mut f) = file.lock()
        {
            let _ = writeln!(f, "[{:7.1}s] {text}", self.clock.seconds());
        }
    }
}

/// How many planned Ephemeral nodes still exist (`None` if the list failed).
async fn ephemeral_left(
    admin: &Client,
    kinds: &HashMap<String, (ApiResource, bool)>,
    planned: &[PlannedNode],
) -> Option<usize> {
    let (ar, _) = kinds.get("AgentNode")?;
    let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), NS, ar);
    let names = api.list(&ListParams::default()).await.ok()?;
    let ephemeral: std::collections::HashSet<&str> = planned
        .iter()
        .filter(|p| p.kind != NodeKind::Persistent)
        .map(|p| p.name.as_str())
        .collect();
    Some(
        names
            .items
            .iter()
            .filter(|n| {
                n.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| ephemeral.contains(n))
            })
            .count(),
    )
}

/// Everything in the chaos namespace, the deleted nodes seen, and panics in the operator's logs.
async fn snapshot(
    admin: &Client,
    kinds: &HashMap<String, (ApiResource, bool)>,
    deleted: &Mutex<HashMap<String, Value>>,
    state_dir: &Path,
    incarnations: usize,
) -> Result<Snapshot, ChaosError> {
    use k8s_openapi::api::{apps, batch, core, events, networking, rbac};
    let gvk = |k: &str| {
        kinds.get(k).map(|(ar, _)| ar.clone()).unwrap_or_else(|| {
            ApiResource::from_gvk(&GroupVersionKind::gvk("hypersync.io", "v1alpha1", k))
        })
    };
    let resources: Vec<(&'static str, ApiResource)> = vec![
        ("AgentNode", gvk("AgentNode")),
        ("ModelEntry", gvk("ModelEntry")),
        ("AgentStack", gvk("AgentStack")),
        ("Job", ApiResource::erase::<batch::v1::Job>(&())),
        ("Pod", ApiResource::erase::<core::v1::Pod>(&())),
        (
            "ServiceAccount",
            ApiResource::erase::<core::v1::ServiceAccount>(&()),
        ),
        ("Role", ApiResource::erase::<rbac::v1::Role>(&())),
        (
            "RoleBinding",
            ApiResource::erase::<rbac::v1::RoleBinding>(&()),
        ),
        (
            "Deployment",
            ApiResource::erase::<apps::v1::Deployment>(&()),
        ),
        (
            "ReplicaSet",
            ApiResource::erase::<apps::v1::ReplicaSet>(&()),
        ),
        ("Service", ApiResource::erase::<core::v1::Service>(&())),
        (
            "NetworkPolicy",
            ApiResource::erase::<networking::v1::NetworkPolicy>(&()),
        ),
        (
            "PersistentVolumeClaim",
            ApiResource::erase::<core::v1::PersistentVolumeClaim>(&()),
        ),
        ("Secret", ApiResource::erase::<core::v1::Secret>(&())),
        ("Event", ApiResource::erase::<events::v1::Event>(&())),
    ];
    let mut snap = Snapshot::default();
    for (kind, ar) in resources {
        let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), NS, &ar);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(kube_err(format!("list {kind}")))?;
        let values = list
            .items
            .iter()
            .filter_map(|o| serde_json::to_value(o).ok())
            .collect();
        snap.objects.insert(kind, values);
    }
    if let Ok(d) = deleted.lock() {
        snap.deleted = d.clone();
    }
    for n in 0..=incarnations {
        let name = format!("operator-{n}.log");
        let text = std::fs::read_to_string(state_dir.join(&name)).unwrap_or_default();
        snap.panics.extend(
            text.lines()
                .filter(|l| l.contains("panicked at"))
                .map(|l| format!("{name}: {l}")),
        );
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_timings_are_checked() {
        assert_eq!(parse_lease("10,8,2"), Ok([10, 8, 2]));
        assert!(
            parse_lease("4,4,1")
                .unwrap_err()
                .contains("DURATION > DEADLINE")
        );
        assert!(parse_lease("4,x,1").unwrap_err().contains("--lease"));
        assert!(parse_lease("4,3").is_err());
    }
}

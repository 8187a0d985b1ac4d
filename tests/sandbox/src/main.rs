//! `hypersync-sandbox` (`make sandbox`): starts kube-sim with GPU and CPU nodes, installs the CRDs,
//! runs the operator as a child process, applies manifests/sandbox, plays the coordinator's agent
//! (which creates the analyst's stack and spawns the analyst, `coordinator.rs`) and the analyst's,
//! narrates every change kubectl-style, and prints how long it took, the operator's API calls for
//! the AgentNode and its peak memory; then prints commands to try (`try_it.rs`) and keeps narrating
//! what the user and the operator change (with the operator's children) until Ctrl-C.

mod coordinator;
mod kustomize;
mod narrate;
mod story;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use hypersync_sandbox::process::{self, Operator};
use hypersync_sandbox::try_it;
use narrate::{Kind, Narrator};
use story::{Action, Milestone, Story};

/// User agent of the sandbox's own clients; every other request to kube-sim is the operator's
/// (or a user's kubectl, which says so in its user agent).
const USER_AGENT: &str = "hypersync-sandbox";
const FIELD_MANAGER: &str = "hypersync-sandbox";

#[derive(Parser, Debug)]
#[command(
    name = "hypersync-sandbox",
    about = "Run the operator on kube-sim and play the seed scenario live"
)]
struct Args {
    /// Exit after the story's summary (0), or non-zero if it does not complete within --timeout.
    #[arg(long)]
    exit_when_done: bool,
    /// Seconds the story may take before it is reported stuck.
    #[arg(long, default_value_t = 180)]
    timeout: u64,
    /// The operator binary (built by `make sandbox`).
    #[arg(long, default_value = "target/debug/hypersync-operator")]
    operator: PathBuf,
    /// The kustomize overlay to apply.
    #[arg(long, default_value = "manifests/sandbox")]
    manifests: PathBuf,
    /// The spawn admission policies to install (the kustomize copy of the chart's).
    #[arg(long, default_value = "manifests/operator/agent-spawn-policy.yaml")]
    policies: PathBuf,
    /// Where the kubeconfig and the operator log go.
    #[arg(long, default_value = ".sandbox")]
    state_dir: PathBuf,
    /// kube-sim's nodes.
    #[arg(long, default_value = "gpu-a100=2x8,cpu=2")]
    nodes: String,
}

/// Why the sandbox stopped early.
#[derive(Debug, thiserror::Error)]
enum SandboxError {
    #[error("failed to start kube-sim")]
    Sim(#[from] kube_sim::SimError),
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to render the manifests")]
    Kustomize(#[from] kustomize::KustomizeError),
    #[error("failed to build a client: {0}")]
    ClientConfig(String),
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
    #[error("failed to keep the operator running: it exited ({0}); see its log")]
    OperatorExited(String),
    #[error("failed to finish the story within {0}s")]
    Timeout(u64),
    #[error("failed to play the coordinator: {0}")]
    Coordinator(String),
    #[error("failed to read the admission policies {path}")]
    Policies {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> SandboxError {
    let what = what.into();
    move |source| SandboxError::Kube { what, source }
}

/// Seconds since the start, for the narration.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn secs(self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }

    fn say(self, line: &str) {
        println!("[{:>6.1}s] {line}", self.secs());
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let clock = Clock(Instant::now());
    let mut sandbox = Sandbox::default();
    let outcome = tokio::select! {
        r = sandbox.run(&args, clock) => Some(r),
        _ = shutdown_signal() => None,
    };
    let code = match outcome {
        // After the story, Ctrl-C is how the sandbox ends.
        None if sandbox.following => {
            println!();
            clock.say("stopping");
            ExitCode::SUCCESS
        }
        None => {
            println!();
            clock.say("interrupted");
            ExitCode::from(130)
        }
        Some(Ok(())) => ExitCode::SUCCESS,
        Some(Err(err)) => {
            eprintln!("error: {err}");
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    };
    sandbox.stop(clock).await;
    code
}

/// What is running, so it can be stopped whichever way the run ended.
#[derive(Default)]
struct Sandbox {
    sim: Option<kube_sim::Sim>,
    operator: Option<Operator>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The story is over; the sandbox narrates the user's changes until Ctrl-C.
    following: bool,
}

impl Sandbox {
    async fn stop(&mut self, clock: Clock) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Some(op) = self.operator.take() {
            let how = op.stop(Duration::from_secs(10)).await;
            clock.say(&format!("operator {how}"));
        }
        if let Some(sim) = self.sim.take() {
            sim.shutdown().await;
            clock.say("kube-sim stopped");
        }
    }

    async fn run(&mut self, args: &Args, clock: Clock) -> Result<(), SandboxError> {
        let objects = kustomize::render(&args.manifests)?;
        // With a coordinator in the manifests, its agent (played below) creates the analyst's stack
        // and spawns the analyst; the admin applies the rest.
        let cast = coordinator::Cast::split(objects.clone());
        let objects = match &cast {
            Some(c) => {
                let mut v = c.admin.clone();
                v.push(c.analyst.clone());
                v
            }
            None => objects,
        };

        let sim = kube_sim::Sim::start(kube_sim::SimConfig {
            nodes: Some(args.nodes.clone()),
            authorize: true,
            ..Default::default()
        })
        .await?;
        let url = sim.url();
        let ca = sim.ca_pem().map(str::to_string);
        let admin_kubeconfig = sim.kubeconfig_yaml();
        let state = sim.state().clone();
        self.sim = Some(sim);
        std::fs::create_dir_all(&args.state_dir).map_err(|source| SandboxError::Write {
            path: args.state_dir.clone(),
            source,
        })?;
        // Keep the state out of git without touching the repository's .gitignore.
        let ignore = args.state_dir.join(".gitignore");
        std::fs::write(&ignore, "*\n").map_err(|source| SandboxError::Write {
            path: ignore,
            source,
        })?;
        let kubeconfig = args.state_dir.join("kubeconfig");
        std::fs::write(&kubeconfig, &admin_kubeconfig).map_err(|source| SandboxError::Write {
            path: kubeconfig.clone(),
            source,
        })?;
        clock.say(&format!(
            "kube-sim serving {url}  (nodes {}; tokens required; the kubeconfig has the CA and the admin token)",
            args.nodes
        ));
        clock.say(&format!(
            "kubeconfig written: export KUBECONFIG={}",
            absolute(&kubeconfig).display()
        ));

        let admin = client(
            &url,
            ca.as_deref(),
            "sim-admin",
            &format!("{USER_AGENT}/narrator"),
        )
        .await?;
        install_crds(&admin, clock).await?;

        let log = args.state_dir.join("operator.log");
        let mut operator = Operator::spawn(&args.operator, &kubeconfig, &log)?;
        clock.say(&format!(
            "operator started  (pid {}, http {}, log {})",
            operator.pid,
            operator.http_addr,
            log.display()
        ));
        let ready = operator.wait_ready(Duration::from_secs(30)).await;
        let pid = operator.pid;
        self.operator = Some(operator);
        ready?;
        clock.say("operator ready");

        // Watch everything the story touches, then apply.
        let (tx, mut rx) = mpsc::unbounded_channel::<Obs>();
        for (kind, ar) in watched_resources(&admin).await? {
            self.tasks
                .push(tokio::spawn(watch(admin.clone(), ar, kind, tx.clone())));
        }
        let story_start = clock.secs();
        let (nodes, rest): (Vec<Value>, Vec<Value>) = objects.into_iter().partition(|o| {
            o.get("kind").and_then(Value::as_str) == Some("AgentNode")
                && cast
                    .as_ref()
                    .is_none_or(|c| narrate::name(o) != c.coordinator)
        });
        let models: BTreeSet<String> = rest
            .iter()
            .filter(|o| o.get("kind").and_then(Value::as_str) == Some("ModelEntry"))
            .map(|o| narrate::name(o).to_string())
            .collect();
        let stack_name = nodes
            .first()
            .and_then(|n| n.pointer("/spec/stackRef/name"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let node_name = nodes.first().map(narrate::name).unwrap_or("").to_string();
        let anchor = nodes.first().and_then(|n| {
            Some((
                n.pointer("/spec/placement/near/point/r")?.as_f64()?,
                n.pointer("/spec/placement/near/point/thetaDegrees")?
                    .as_f64()?,
            ))
        });
        let node_ns = nodes
            .first()
            .and_then(|n| n.pointer("/metadata/namespace"))
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        clock.say(&format!(
            "applying {} (server-side): {} ModelEntries, the AgentStack {stack_name}",
            args.manifests.display(),
            models.len()
        ));
        let mut kinds: HashMap<String, (ApiResource, bool)> = HashMap::new();
        let coordinator_agent = match &cast {
            Some(c) => {
                let policies = read_policies(&args.policies)?;
                apply_all(&admin, &policies, &mut kinds).await?;
                clock.say(&format!(
                    "admission policies installed: {} (a spawner creates only its own children, within its limits)",
                    policies
                        .iter()
                        .filter(|p| p.get("kind").and_then(Value::as_str) == Some("ValidatingAdmissionPolicy"))
                        .map(narrate::name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                let sa = format!("{}-agent", c.coordinator);
                let token = format!("sim-sa:{node_ns}:{sa}");
                Some((
                    client(&url, ca.as_deref(), &token, &format!("{USER_AGENT}/agent")).await?,
                    format!("system:serviceaccount:{node_ns}:{sa}"),
                ))
            }
            None => None,
        };
        apply_all(&admin, &rest, &mut kinds).await?;
        let mut coordinator_started = false;

        let mut story = Story::new(models, &stack_name, &node_name);
        let mut narrator = Narrator::default();
        let deadline = Instant::now() + Duration::from_secs(args.timeout);
        let mut node_applied_at: Option<Instant> = None;
        let mut resolved_at: Option<Instant> = None;
        let mut node_requests: Option<Value> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut op_exit: Option<String> = None;
        // The disk while the agent runs (the story ends with the node dissolved).
        let mut disk: Option<String> = None;
        while !story.complete() {
            tokio::select! {
                Some(obs) = rx.recv() => {
                    for line in narrator.observe(obs.kind, &obs.namespace, &obs.obj, obs.deleted) {
                        clock.say(&line);
                    }
                    if let (Some(c), Some((agent, who))) = (&cast, &coordinator_agent)
                        && !coordinator_started
                        && obs.kind == Kind::AgentNode
                        && narrate::name(&obs.obj) == c.coordinator
                        && obs.obj.pointer("/status/phase").and_then(Value::as_str) == Some("Running")
                    {
                        coordinator_started = true;
                        coordinator::assemble(agent.clone(), &node_ns, &c.analyst_stack, who, clock)
                            .await
                            .map_err(SandboxError::Coordinator)?;
                    }
                    for action in story.observe(obs.kind, &obs.obj, obs.deleted, clock.secs()) {
                        match action {
                            Action::StartAgent => {
                                match draw_disk(&admin, &node_ns).await {
                                    Ok(svg) => disk = Some(svg),
                                    Err(err) => clock.say(&format!("failed to draw the disk: {err}")),
                                }
                                let sa = format!("{node_name}-agent");
                                let agent = client(&url, ca.as_deref(), &format!("sim-sa:{node_ns}:{sa}"), &format!("{USER_AGENT}/agent")).await?;
                                let ar = kinds.get("AgentNode").map(|(ar, _)| ar.clone());
                                if let Some(ar) = ar {
                                    self.tasks.push(tokio::spawn(play_agent(agent, ar, node_ns.clone(), node_name.clone(), sa, clock)));
                                }
                            }
                            Action::NodeGone => node_requests = Some(state.stats.to_json()),
                        }
                    }
                }
                _ = tick.tick() => {}
            }
            if story.reached(Milestone::StackResolved).is_some() && resolved_at.is_none() {
                resolved_at = Some(Instant::now());
            }
            let settled = resolved_at.is_some_and(|t| t.elapsed() >= Duration::from_secs(1));
            let waited_long = clock.secs() - story_start > 30.0;
            if node_applied_at.is_none() && (settled || waited_long) {
                // Count only what the node costs: reset the request counters as it is created.
                state.stats.reset();
                match (&cast, &coordinator_agent) {
                    (Some(c), Some((agent, _))) => {
                        coordinator::spawn(agent.clone(), &node_ns, &c.analyst, clock)
                            .await
                            .map_err(SandboxError::Coordinator)?;
                        self.tasks
                            .push(tokio::spawn(coordinator::lineage_and_refusals(
                                agent.clone(),
                                admin.clone(),
                                node_ns.clone(),
                                c.coordinator.clone(),
                                c.analyst.clone(),
                                clock,
                            )));
                    }
                    _ => {
                        clock.say(&format!("applying agentnode/{node_name} (server-side)"));
                        apply_all(&admin, &nodes, &mut kinds).await?;
                    }
                }
                node_applied_at = Some(Instant::now());
            }
            if op_exit.is_none() {
                op_exit = self.operator.as_mut().and_then(Operator::exited);
            }
            if let Some(status) = &op_exit {
                return Err(SandboxError::OperatorExited(status.clone()));
            }
            if Instant::now() >= deadline {
                println!();
                println!(
                    "STUCK: the story did not complete within {}s.",
                    args.timeout
                );
                for (m, t) in story.milestones() {
                    println!("  reached at {t:>6.1}s  {}", m.describe());
                }
                for m in story.pending() {
                    println!("  NOT reached         {}", m.describe());
                }
                println!("  last seen: {}", story.state_line());
                println!("  operator log: {}", log.display());
                return Err(SandboxError::Timeout(args.timeout));
            }
        }

        let total = clock.secs() - story_start;
        let memory = self.operator.as_ref().and_then(Operator::memory_kib);
        let requests = node_requests.unwrap_or_else(|| state.stats.to_json());
        let ops = operator_requests(&requests);
        println!();
        println!(
            "Story complete in {total:.1}s (from applying the manifests to the model back at 0):"
        );
        for (m, t) in story.milestones() {
            println!("  {:>6.1}s  {}", t - story_start, m.describe());
        }
        if let (Some(model), Some((r, theta, tier))) = (&story.model, story.placement) {
            println!(
                "  agentnode/{node_name} placed at r {r:.3}, theta {theta:.1} deg (tier {tier}); stack {stack_name} -> {model}{}",
                story
                    .model_gpus
                    .map(|g| format!(" ({g} GPUs)"))
                    .unwrap_or_default()
            );
        }
        if let (Some(a), Some((r, theta, _))) = (anchor, story.placement)
            && let Some(d) = disk_distance(a, (r, theta))
        {
            println!(
                "  hyperbolic distance from its anchor (r {}, theta {} deg): {d:.3}",
                a.0, a.1
            );
        }
        let verbs: Vec<String> = ops
            .by_verb
            .iter()
            .map(|(v, c)| format!("{v} {c}"))
            .collect();
        let scope = if cast.is_some() {
            " (with the refused spawn and the coordinator's children count in the same span)"
        } else {
            ""
        };
        println!(
            "  operator API calls for agentnode/{node_name}, creation to dissolution{scope}: {} ({})",
            ops.total,
            verbs.join(", ")
        );
        let top: Vec<String> = ops
            .by_target
            .iter()
            .take(8)
            .map(|(t, c)| format!("{t} {c}"))
            .collect();
        println!("    by resource: {}", top.join(", "));
        if let Some(svg) = disk {
            let path = args.state_dir.join("disk.svg");
            std::fs::write(&path, svg).map_err(|source| SandboxError::Write {
                path: path.clone(),
                source,
            })?;
            println!(
                "  the Poincaré disk while the agent ran: {} (now: kubectl hypersync disk > disk.svg)",
                path.display()
            );
        }
        if let Some(c) = &cast
            && let Some(line) = coordinator::summary(admin.clone(), &node_ns, &c.coordinator).await
        {
            println!("  {line}");
        }
        match memory {
            Some((hwm, rss)) => println!(
                "  operator peak memory (VmHWM of pid {pid}): {:.1} MiB (resident now {:.1} MiB)",
                hwm as f64 / 1024.0,
                rss as f64 / 1024.0
            ),
            None => println!("  operator peak memory: unavailable (no /proc/{pid}/status)"),
        }
        if args.exit_when_done {
            return Ok(());
        }

        // The sandbox stays up: what to try, then the narration of whatever changes, children included.
        println!();
        let bin_dir = args.operator.parent().map(absolute).unwrap_or_default();
        print!(
            "{}",
            try_it::TryIt {
                kubeconfig: &absolute(&kubeconfig),
                bin_dir: &bin_dir,
                namespace: &node_ns,
                stack: &stack_name,
                anchor,
            }
            .render()
        );
        println!(
            "Narrating what changes (the operator log is {}); Ctrl-C stops the operator and the simulator.",
            log.display()
        );
        self.following = true;
        narrator.children = true;
        loop {
            tokio::select! {
                Some(obs) = rx.recv() => {
                    for line in narrator.observe(obs.kind, &obs.namespace, &obs.obj, obs.deleted) {
                        clock.say(&line);
                    }
                }
                _ = tick.tick() => {}
            }
            if let Some(status) = self.operator.as_mut().and_then(Operator::exited) {
                return Err(SandboxError::OperatorExited(status));
            }
        }
    }
}

/// The Poincaré disk of `namespace` as `kubectl hypersync disk` draws it (a side show: the story
/// goes on without it).
async fn draw_disk(client: &Client, namespace: &str) -> Result<String, String> {
    use hypersync_operator::plugin::{cli, disk};
    let nodes: Api<hypersync_operator::api::AgentNode> = Api::namespaced(client.clone(), namespace);
    let list = nodes
        .list(&kube::api::ListParams::default())
        .await
        .map_err(|e| format!("failed to list AgentNodes: {e}"))?;
    let options = disk::DiskOptions {
        scope: format!("namespace {namespace}"),
        generated_at: cli::timestamp_text(None).map_err(|e| e.to_string())?,
        max_labels: disk::DEFAULT_MAX_LABELS,
    };
    Ok(disk::render(&list.items, &options))
}

/// The admission policies, as YAML documents.
fn read_policies(path: &Path) -> Result<Vec<Value>, SandboxError> {
    let text = std::fs::read_to_string(path).map_err(|source| SandboxError::Policies {
        path: path.to_path_buf(),
        source,
    })?;
    let docs = serde_saphyr::from_multiple::<Value>(&text).map_err(|e| SandboxError::Policies {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    })?;
    Ok(docs.into_iter().filter(Value::is_object).collect())
}

/// Hyperbolic distance between two points of the disk given as (r, theta degrees).
fn disk_distance(a: (f64, f64), b: (f64, f64)) -> Option<f64> {
    use hypersync_operator::geometry::DiskPoint;
    let a = DiskPoint::from_polar(a.0, a.1).ok()?;
    let b = DiskPoint::from_polar(b.0, b.1).ok()?;
    Some(a.distance(b))
}

fn absolute(p: &Path) -> PathBuf {
    std::env::current_dir()
        .map(|d| d.join(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

/// Requests by the operator in a `/sim/stats` document: everything not sent by the sandbox's own
/// clients or by kubectl. Returns the total and the counts per verb.
fn operator_requests(stats: &Value) -> OperatorRequests {
    let mut total = 0;
    let mut by_verb = BTreeMap::new();
    let mut by_target: BTreeMap<String, u64> = BTreeMap::new();
    for row in stats
        .get("requests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ua = row.get("userAgent").and_then(Value::as_str).unwrap_or("");
        if ua.starts_with(USER_AGENT) || ua.starts_with("kubectl") {
            continue;
        }
        let c = row.get("count").and_then(Value::as_u64).unwrap_or(0);
        let field = |f: &str| row.get(f).and_then(Value::as_str).unwrap_or("");
        let resource = match (field("resource"), field("subresource")) {
            ("", _) => "-".to_string(),
            (r, "") => r.to_string(),
            (r, s) => format!("{r}/{s}"),
        };
        total += c;
        *by_verb.entry(field("verb").to_string()).or_insert(0) += c;
        *by_target
            .entry(format!("{} {resource}", field("verb")))
            .or_insert(0) += c;
    }
    let mut by_target: Vec<(String, u64)> = by_target.into_iter().collect();
    by_target.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    OperatorRequests {
        total,
        by_verb,
        by_target,
    }
}

/// The operator's share of kube-sim's request counters.
#[derive(Debug)]
struct OperatorRequests {
    total: u64,
    by_verb: BTreeMap<String, u64>,
    /// `"<verb> <resource>[/<subresource>]"` with counts, most first.
    by_target: Vec<(String, u64)>,
}

/// A client of kube-sim at `url` (verifying it with the CA `ca_pem`) with a bearer token.
async fn client(
    url: &str,
    ca_pem: Option<&str>,
    token: &str,
    user_agent: &str,
) -> Result<Client, SandboxError> {
    let kc = Kubeconfig::from_yaml(&kube_sim::kubeconfig_yaml(url, ca_pem, Some(token)))
        .map_err(|e| SandboxError::ClientConfig(e.to_string()))?;
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| SandboxError::ClientConfig(e.to_string()))?;
    let ua = http::HeaderValue::from_str(user_agent)
        .map_err(|e| SandboxError::ClientConfig(e.to_string()))?;
    config.headers.push((http::header::USER_AGENT, ua));
    Client::try_from(config).map_err(|e| SandboxError::ClientConfig(e.to_string()))
}

async fn install_crds(client: &Client, clock: Clock) -> Result<(), SandboxError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let crds = hypersync_operator::api::generate::crds();
    for crd in &crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let mut crd = crd.clone();
        crd.metadata.managed_fields = None;
        let body = serde_json::to_value(&crd)
            .map_err(|e| SandboxError::ClientConfig(format!("failed to encode CRD {name}: {e}")))?;
        let mut body = body;
        body["apiVersion"] = json!("apiextensions.k8s.io/v1");
        body["kind"] = json!("CustomResourceDefinition");
        api.patch(&name, &params, &Patch::Apply(&body))
            .await
            .map_err(kube_err(format!("apply CRD {name}")))?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for crd in &crds {
        let gvk = GroupVersionKind::gvk(
            &crd.spec.group,
            crd.spec
                .versions
                .iter()
                .find(|v| v.storage)
                .map(|v| v.name.as_str())
                .unwrap_or("v1alpha1"),
            &crd.spec.names.kind,
        );
        while kube::discovery::pinned_kind(client, &gvk).await.is_err() {
            if Instant::now() >= deadline {
                return Err(SandboxError::CrdsNotServed);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let names: Vec<&str> = crds
        .iter()
        .filter_map(|c| c.metadata.name.as_deref())
        .collect();
    clock.say(&format!("CRDs installed: {}", names.join(", ")));
    Ok(())
}

async fn watched_resources(client: &Client) -> Result<Vec<(Kind, ApiResource)>, SandboxError> {
    let mut out = Vec::new();
    for (kind, name) in [
        (Kind::ModelEntry, "ModelEntry"),
        (Kind::AgentStack, "AgentStack"),
        (Kind::AgentNode, "AgentNode"),
    ] {
        let gvk = GroupVersionKind::gvk("hypersync.io", "v1alpha1", name);
        let (ar, _) = kube::discovery::pinned_kind(client, &gvk)
            .await
            .map_err(kube_err(format!("discover {name}")))?;
        out.push((kind, ar));
    }
    out.push((
        Kind::Pod,
        ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&()),
    ));
    out.push((
        Kind::Event,
        ApiResource::erase::<k8s_openapi::api::events::v1::Event>(&()),
    ));
    // The operator's children (narrated after the story).
    use k8s_openapi::api::{apps, batch, core, networking, rbac};
    out.extend([
        (
            Kind::Child("serviceaccount"),
            ApiResource::erase::<core::v1::ServiceAccount>(&()),
        ),
        (
            Kind::Child("role"),
            ApiResource::erase::<rbac::v1::Role>(&()),
        ),
        (
            Kind::Child("rolebinding"),
            ApiResource::erase::<rbac::v1::RoleBinding>(&()),
        ),
        (
            Kind::Child("job"),
            ApiResource::erase::<batch::v1::Job>(&()),
        ),
        (
            Kind::Child("deployment"),
            ApiResource::erase::<apps::v1::Deployment>(&()),
        ),
        (
            Kind::Child("service"),
            ApiResource::erase::<core::v1::Service>(&()),
        ),
        (
            Kind::Child("persistentvolumeclaim"),
            ApiResource::erase::<core::v1::PersistentVolumeClaim>(&()),
        ),
        (
            Kind::Child("networkpolicy"),
            ApiResource::erase::<networking::v1::NetworkPolicy>(&()),
        ),
    ]);
    Ok(out)
}

/// One observed object.
struct Obs {
    kind: Kind,
    namespace: String,
    obj: Value,
    deleted: bool,
}

async fn watch(client: Client, ar: ApiResource, kind: Kind, tx: mpsc::UnboundedSender<Obs>) {
    let api: Api<DynamicObject> = Api::all_with(client, &ar);
    let config = match kind {
        Kind::Child(_) => {
            use hypersync_operator::workload::labels::{LABEL_MANAGED_BY, MANAGED_BY_VALUE};
            watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY_VALUE}"))
        }
        _ => watcher::Config::default(),
    };
    let mut stream = watcher(api, config).default_backoff().boxed();
    while let Some(ev) = stream.next().await {
        let (obj, deleted) = match ev {
            Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => (o, false),
            Ok(watcher::Event::Delete(o)) => (o, true),
            Ok(_) => continue,
            Err(err) => {
                eprintln!("watch {}: {err}", kind.prefix());
                continue;
            }
        };
        let namespace = obj.metadata.namespace.clone().unwrap_or_default();
        let Ok(obj) = serde_json::to_value(&obj) else {
            continue;
        };
        let obs = Obs {
            kind,
            namespace,
            obj,
            deleted,
        };
        if tx.send(obs).is_err() {
            return;
        }
    }
}

/// Server-side apply each object (namespaced ones into their namespace or `default`).
async fn apply_all(
    client: &Client,
    objects: &[Value],
    kinds: &mut HashMap<String, (ApiResource, bool)>,
) -> Result<(), SandboxError> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for obj in objects {
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let name = narrate::name(obj).to_string();
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
        let api: Api<DynamicObject> = if *namespaced {
            let ns = obj
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default");
            Api::namespaced_with(client.clone(), ns, ar)
        } else {
            Api::all_with(client.clone(), ar)
        };
        api.patch(&name, &params, &Patch::Apply(obj))
            .await
            .map_err(kube_err(format!("apply {kind}/{name}")))?;
    }
    Ok(())
}

/// The agent inside the node: report progress on the objective as the node's own ServiceAccount.
async fn play_agent(
    client: Client,
    ar: ApiResource,
    namespace: String,
    node: String,
    service_account: String,
    clock: Clock,
) {
    let api: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &ar);
    let who = format!("system:serviceaccount:{namespace}:{service_account}");
    for observed in [3, 7, 12] {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let patch = json!({"status": {"objective": {"observed": observed}}});
        match api
            .patch_status(&node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => clock.say(&format!(
                "agent  agentnode/{node} status.objective.observed = {observed}  (as {who})"
            )),
            Err(err) => {
                clock.say(&format!(
                    "agent  FAILED to report objective.observed = {observed} as {who}: {err}"
                ));
                if let kube::Error::Api(s) = &err
                    && (s.code == 403 || s.code == 404)
                {
                    return;
                }
            }
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_distance_is_hyperbolic() {
        let d = disk_distance((0.0, 0.0), (0.5, 30.0)).expect("distance");
        // 2 artanh(0.5) = ln 3.
        assert!((d - 3f64.ln()).abs() < 1e-9, "{d}");
        assert_eq!(disk_distance((1.5, 0.0), (0.0, 0.0)), None);
    }

    #[test]
    fn operator_requests_exclude_the_sandbox_and_kubectl() {
        let stats = json!({"total": 10, "requests": [
            {"verb": "get", "resource": "agentnodes", "subresource": "", "userAgent": "", "count": 3},
            {"verb": "patch", "resource": "agentnodes", "subresource": "status", "userAgent": "", "count": 2},
            {"verb": "watch", "userAgent": "hypersync-sandbox/narrator", "count": 4},
            {"verb": "patch", "userAgent": "hypersync-sandbox/agent", "count": 3},
            {"verb": "list", "userAgent": "kubectl/v1.34.0 (linux/amd64)", "count": 1},
        ]});
        let ops = operator_requests(&stats);
        assert_eq!(ops.total, 5);
        assert_eq!(ops.by_verb.get("get"), Some(&3));
        assert_eq!(ops.by_verb.get("patch"), Some(&2));
        assert_eq!(ops.by_verb.get("watch"), None);
        assert_eq!(
            ops.by_target,
            [
                ("get agentnodes".to_string(), 3),
                ("patch agentnodes/status".to_string(), 2)
            ]
        );
    }
}

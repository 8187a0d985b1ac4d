//! The `kube-sim` binary: serves the simulated Kubernetes API over HTTPS on loopback (CA generated
//! at start), writes a kubeconfig for kubectl/Helm/kube-rs with that CA, and stops cleanly on
//! SIGTERM/SIGINT; `kube-sim bench` measures the store.

use clap::{Parser, Subcommand};
use kube_sim::{Sim, SimConfig};
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: kube-sim allocates and frees a JSON tree per request and
/// per decoded object, and under `make bench-scale` glibc's malloc/free took about half of its CPU.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Opts the process out of transparent huge pages. Where the kernel backs every 2 MiB-aligned
/// anonymous region with a huge page on first touch (`hugepages-2048kB/enabled` = `always`, as on
/// the machine `make bench-scale` is measured on), each region mimalloc starts using is zeroed whole,
/// and again after mimalloc returns freed memory: during the 10,000-node ramp that zeroing was about
/// an eighth of kube-sim's CPU (perf: `clear_page_erms` under `do_huge_pmd_anonymous_page`), against
/// a twentieth for the same memory in 4 KiB pages. Best effort: an older kernel without the option
/// just keeps its default.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and changes a flag of this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

#[derive(Parser, Debug)]
#[command(name = "kube-sim", about = "Kubernetes API simulator on loopback")]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Where to write a kubeconfig pointing at the simulator (with its CA as
    /// certificate-authority-data).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Serve plain HTTP instead of HTTPS. kubectl and Helm send no bearer token to a plain-HTTP
    /// server, so `--authorize` then only admits kube-rs clients.
    #[arg(long)]
    insecure_http: bool,
    /// Simulated nodes, e.g. `gpu-a100=2x8,cpu=2`.
    #[arg(long)]
    nodes: Option<String>,
    /// Authenticate bearer tokens and authorize requests with RBAC. Requests without a token then get
    /// 401 (except /healthz, /readyz, /livez, /version). The written kubeconfig uses the static admin
    /// token `sim-admin`; to act as a service account use the bearer token `sim-sa:<namespace>:<name>`
    /// (e.g. `kubectl --token sim-sa:default:operator get pods`) or one from the TokenRequest API
    /// (`kubectl --token "$(kubectl create token <serviceaccount>)" ...`);
    /// `sim-user:<name>[:<group>,...]` names a plain user. Impersonation (`kubectl --as`) is
    /// authorized with the `impersonate` verb like the real apiserver.
    #[arg(long)]
    authorize: bool,
    /// Fault injection spec (also set at runtime by `POST /sim/faults`; `GET /sim/faults` shows it
    /// with counters). Comma-separated items:
    /// `seed=N|random`;
    /// `VERB[TARGET]=RATE:FAULT` where VERB is get, list, watch, create, update, patch, delete,
    /// deletecollection or *, and FAULT is 409|429|500|503|504 (answer that error, the verb does
    /// not run), 410 (watch from a resourceVersion: ERROR event 410 Expired), drop (close the
    /// connection, no answer), hang (answer nothing for hang-for, then close), applied-504 (run
    /// the verb, then answer 504 Timeout), applied-drop (run the verb, then close the connection),
    /// applied-hang (run the verb, answer nothing for hang-for, then close);
    /// `watch-drop[TARGET]=RATE` (close watches, per event batch / bookmark tick);
    /// `watch-gone[TARGET]=RATE` (same, after an ERROR event 410 Expired);
    /// `latency=MIN[..MAX][@RATE]`; `retry-after=SECONDS` (with 429); `hang-for=DUR` (default 10s).
    /// TARGET is `[/RESOURCE[/SUBRESOURCE]][{SCOPE;...}]` with SCOPE `ua=TEXT` (User-Agent contains),
    /// `user=NAME` (username, `NAME*` a prefix), `ns=NAMESPACE`, `name=OBJECT`. RATE is in [0, 1];
    /// durations take us, ms or s. Example:
    /// `seed=7,get=0.05:500,patch/agentnodes/status=0.1:409,create{ua=hypersync-operator}=0.1:applied-504,watch-gone=0.01`
    #[arg(long)]
    faults: Option<String>,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    log_format: String,
    /// Interval of watch BOOKMARK events, in seconds.
    #[arg(long, default_value_t = 5)]
    bookmark_seconds: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure writes/s, watch events/s to 10 watchers, and memory with many stored objects.
    Bench {
        /// Objects to store for the memory figure.
        #[arg(long, default_value_t = 100_000)]
        objects: usize,
        /// What to store: ConfigMaps (writes, watch, reads and memory) or the realistic mix of
        /// AgentNodes with their ServiceAccount, Role, RoleBinding, Job and Pod (writes and memory).
        #[arg(long, value_enum, default_value_t = BenchMix::Configmaps)]
        mix: BenchMix,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum BenchMix {
    Configmaps,
    Agents,
}

fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        match term {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let args = Args::parse();
    init_logs(&args.log_format);
    if let Some(Command::Bench { objects, mix }) = args.command {
        let report = match mix {
            BenchMix::Configmaps => kube_sim::bench::run_over(objects, args.insecure_http).await,
            BenchMix::Agents => kube_sim::bench::run_agents(objects).await,
        };
        return match report {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kube-sim bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = SimConfig {
        nodes: args.nodes.clone(),
        authorize: args.authorize,
        faults: args.faults.clone(),
        port: args.port,
        bookmark_interval: std::time::Duration::from_secs(args.bookmark_seconds.max(1)),
        insecure_http: args.insecure_http,
        ..SimConfig::default()
    };
    let sim = match Sim::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kube-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.kubeconfig
        && let Err(e) = sim.write_kubeconfig(path)
    {
        eprintln!(
            "kube-sim: failed to write kubeconfig {}: {e}",
            path.display()
        );
        sim.shutdown().await;
        return ExitCode::FAILURE;
    }
    println!("kube-sim listening on {}", sim.url());
    tracing::info!(url = %sim.url(), "kube-sim started");
    shutdown_signal().await;
    tracing::info!("kube-sim stopping");
    sim.shutdown().await;
    ExitCode::SUCCESS
}

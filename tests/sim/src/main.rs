//! The `kube-sim` binary: serves the simulated Kubernetes API on loopback, writes a kubeconfig for
//! kubectl/Helm/kube-rs, and stops cleanly on SIGTERM/SIGINT; `kube-sim bench` measures the store.

use clap::{Parser, Subcommand};
use kube_sim::{Sim, SimConfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "kube-sim", about = "Kubernetes API simulator on loopback")]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Where to write a kubeconfig pointing at the simulator.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Simulated nodes, e.g. `gpu-a100=2x8,cpu=2`.
    #[arg(long)]
    nodes: Option<String>,
    /// Authenticate bearer tokens and authorize requests with RBAC. Requests without a token then get
    /// 401 (except /healthz, /readyz, /livez, /version). The written kubeconfig uses the static admin
    /// token `sim-admin`; to act as a service account use the bearer token `sim-sa:<namespace>:<name>`
    /// (e.g. `kubectl --token sim-sa:default:operator get pods`) or one from the TokenRequest API
    /// (`kubectl create token <serviceaccount>`); `sim-user:<name>[:<group>,...]` names a plain user.
    #[arg(long)]
    authorize: bool,
    /// Fault injection spec.
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
    let args = Args::parse();
    init_logs(&args.log_format);
    if let Some(Command::Bench { objects, mix }) = args.command {
        let report = match mix {
            BenchMix::Configmaps => kube_sim::bench::run(objects).await,
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

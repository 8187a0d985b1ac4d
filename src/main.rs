//! The `hypersync-operator` command: `run` (the operator), `crd` (print the CRDs), `schema` (write the
//! JSON Schemas).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hypersync_operator::api::generate;

#[derive(Parser)]
#[command(
    name = "hypersync-operator",
    version,
    about = "Kubernetes operator for AI model and agent orchestration"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator against the cluster of the current kubeconfig (or the in-cluster config).
    Run(Box<hypersync_operator::config::Args>),
    /// Print every CRD as one multi-document YAML stream, or write crds/<plural>.yaml files.
    Crd {
        /// Write one file per kind into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// With --out-dir: write the templates of the hypersync-crds Helm chart (each CRD annotated
        /// `helm.sh/resource-policy: keep`).
        #[arg(long, requires = "out_dir")]
        helm_templates: bool,
    },
    /// Write the JSON Schemas of the manifests of each kind.
    Schema {
        /// Directory to write into.
        #[arg(long, default_value = "schemas")]
        out_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            let mut source = std::error::Error::source(err.as_ref());
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Run(args) => run_operator(*args)?,
        Command::Crd { out_dir: None, .. } => print_stdout(&generate::crds_yaml()?)?,
        Command::Crd {
            out_dir: Some(dir),
            helm_templates,
        } => {
            let files = if helm_templates {
                generate::crd_chart_templates()?
            } else {
                generate::crd_files()?
            };
            write_all(&dir, files)?
        }
        Command::Schema { out_dir } => write_all(&out_dir, generate::schema_files()?)?,
    }
    Ok(())
}

/// Write to stdout; a reader that went away (`hypersync-operator crd | head`) ends the output
/// quietly instead of a panic.
fn print_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}

fn write_all(dir: &std::path::Path, files: Vec<(String, String)>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, contents) in files {
        let path = dir.join(name);
        std::fs::write(&path, contents)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn run_operator(args: hypersync_operator::config::Args) -> Result<(), Box<dyn std::error::Error>> {
    malloc::tune();
    let config = args.resolve()?;
    let exporter = hypersync_operator::telemetry::init(
        config.log_format,
        &config.log_level,
        config.otel.as_ref(),
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        let kube_config = kube::Config::infer().await?;
        hypersync_operator::operator::run(kube_config, config, shutdown_signal()).await?;
        Ok::<(), Box<dyn std::error::Error>>(())
    });
    // The controllers have drained and the Lease is released: export the last spans (bounded, so
    // an unreachable collector cannot hold up the exit).
    if let Some(exporter) = exporter {
        exporter.shutdown(EXPORT_FLUSH_TIMEOUT);
    }
    result
}

/// How long the exit waits for the last spans to be exported.
const EXPORT_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(term) => term,
            Err(err) => {
                tracing::warn!(%err, "failed to listen for SIGTERM; only Ctrl-C stops the operator");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// glibc's malloc, tuned for the operator's watch caches. At 10,000 nodes every watch event replaces
/// a cached object (a new one decoded and cloned into the store, the old one freed), and glibc kept
/// the freed memory resident, spread over one arena per thread that ever contended: the operator's
/// peak RSS stood 60-70 MiB above its live heap and kept rising while nodes were dissolved. Two
/// arenas (the runtime has two worker threads on the target machine) and a `malloc_trim` every few
/// seconds, which hands whole free pages back to the kernel: with the same caches, `make
/// bench-scale` at 10,000 nodes peaked at 176 MiB instead of 233 MiB (README, "Scale").
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod malloc {
    use std::time::Duration;

    unsafe extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
        fn malloc_trim(pad: usize) -> i32;
    }

    /// `M_ARENA_MAX` of glibc's `malloc.h`.
    const M_ARENA_MAX: i32 = -8;
    /// How often free pages are handed back.
    const TRIM_EVERY: Duration = Duration::from_secs(5);

    /// Call before any other thread starts.
    pub fn tune() {
        // SAFETY: sets one parameter of glibc's allocator; no other thread exists yet.
        unsafe {
            mallopt(M_ARENA_MAX, 2);
        }
        let trim = std::thread::Builder::new()
            .name("malloc-trim".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(TRIM_EVERY);
                    // SAFETY: malloc_trim locks each arena while it walks it; safe from any thread.
                    unsafe {
                        malloc_trim(0);
                    }
                }
            });
        if let Err(err) = trim {
            eprintln!("warning: cannot start the malloc-trim thread: {err}");
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod malloc {
    /// Other allocators need no tuning.
    pub fn tune() {}
}

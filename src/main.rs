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

//! The `hypersync-operator` command: `crd` prints the CRDs, `schema` writes the JSON Schemas.

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
    /// Print every CRD as one multi-document YAML stream, or write crds/<plural>.yaml files.
    Crd {
        /// Write one file per kind into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
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
        Command::Crd { out_dir: None } => print!("{}", generate::crds_yaml()?),
        Command::Crd { out_dir: Some(dir) } => write_all(&dir, generate::crd_files()?)?,
        Command::Schema { out_dir } => write_all(&out_dir, generate::schema_files()?)?,
    }
    Ok(())
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

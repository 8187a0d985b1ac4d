//! `kubectl-hypersync`: the kubectl plugin (`kubectl hypersync disk|why|tree|models`). Installed next
//! to `hypersync-operator` by `cargo install --path .`; kubectl finds it on the PATH.
//!
//! Exit codes: 0 success; 1 `why` on a node that is not Running; 2 an error.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use hypersync_operator::plugin::cli::{Cli, PluginError, Target, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: failed to start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        let target = Target::from_cli(&cli).await?;
        let output = run(&cli, &target).await?;
        let mut stdout = std::io::stdout().lock();
        match stdout
            .write_all(output.text.as_bytes())
            .and_then(|()| stdout.flush())
        {
            Ok(()) => {}
            // `kubectl hypersync disk | head`: the reader went away, which is not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(e) => return Err(PluginError::Write(e)),
        }
        Ok::<bool, PluginError>(output.success)
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
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

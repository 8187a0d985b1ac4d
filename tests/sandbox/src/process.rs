//! Child processes serving `/readyz` (the operator, or kube-sim for `hypersync-scale`): spawning
//! them with their log in a file, waiting for `/readyz`, reading their peak memory (VmHWM), and
//! stopping them with SIGTERM (or SIGKILL, for `hypersync-chaos`, which includes this file).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// Why a child process could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("failed to find the binary {0} (build it first, e.g. `cargo build -p {1}`)")]
    Missing(PathBuf, &'static str),
    #[error("failed to start {path}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to open the log {path}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to find a free port")]
    Port(#[source] std::io::Error),
    #[error("failed to see {0} ready within {1:?} (exit status: {2})")]
    NotReady(String, Duration, String),
}

/// A free loopback address for a child's HTTP server.
pub fn free_addr() -> Result<SocketAddr, ProcessError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(ProcessError::Port)?;
    l.local_addr().map_err(ProcessError::Port)
}

/// A running child process that serves `/readyz` on `http_addr`.
pub struct Process {
    child: Child,
    pub pid: u32,
    pub http_addr: SocketAddr,
    name: String,
}

/// The operator as a child process.
pub type Operator = Process;

impl Process {
    /// `<bin> run --leader-election=false --http-addr <addr>` with `KUBECONFIG=<kubeconfig>`,
    /// stdout and stderr written to `log` (truncated).
    pub fn spawn(bin: &Path, kubeconfig: &Path, log: &Path) -> Result<Operator, ProcessError> {
        Self::spawn_operator(bin, kubeconfig, log, &["--leader-election=false"])
    }

    /// `<bin> run --http-addr <free loopback addr> <extra...>` with `KUBECONFIG=<kubeconfig>`.
    pub fn spawn_operator(
        bin: &Path,
        kubeconfig: &Path,
        log: &Path,
        extra: &[&str],
    ) -> Result<Operator, ProcessError> {
        let http_addr = free_addr()?;
        let mut args = vec![
            "run".to_string(),
            "--http-addr".to_string(),
            http_addr.to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let env = [("KUBECONFIG", kubeconfig.as_os_str())];
        Self::spawn_command(bin, "hypersync-operator", &args, &env, log, http_addr)
    }

    /// `<bin> <args>` with `env` added, stdout and stderr written to `log` (truncated); it is
    /// expected to serve `/readyz` on `http_addr`. `package` names the cargo package that builds
    /// `bin`, for the message when it is missing.
    pub fn spawn_command(
        bin: &Path,
        package: &'static str,
        args: &[String],
        env: &[(&str, &std::ffi::OsStr)],
        log: &Path,
        http_addr: SocketAddr,
    ) -> Result<Process, ProcessError> {
        if !bin.is_file() {
            return Err(ProcessError::Missing(bin.to_path_buf(), package));
        }
        let log_err = |source| ProcessError::Log {
            path: log.to_path_buf(),
            source,
        };
        // One file per run, shared by stdout and stderr.
        let stdout = std::fs::File::create(log).map_err(log_err)?;
        let stderr = stdout.try_clone().map_err(log_err)?;
        let child = Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                path: bin.to_path_buf(),
                source,
            })?;
        let pid = child.id().unwrap_or(0);
        let name = bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| bin.display().to_string());
        Ok(Process {
            child,
            pid,
            http_addr,
            name,
        })
    }

    /// Wait until `/readyz` answers 200.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), ProcessError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(ProcessError::NotReady(
                    self.name.clone(),
                    timeout,
                    status.to_string(),
                ));
            }
            if http_status(self.http_addr, "/readyz").await == Some(200) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ProcessError::NotReady(
                    self.name.clone(),
                    timeout,
                    "still running".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// Peak resident memory (VmHWM) and current resident memory (VmRSS), in KiB.
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        Some((
            proc_status_kib(&status, "VmHWM")?,
            proc_status_kib(&status, "VmRSS")?,
        ))
    }

    /// [`Process::spawn_operator`] with owned arguments (`hypersync-chaos`).
    #[allow(dead_code)] // hypersync-chaos's, which includes this file
    pub fn spawn_with(
        bin: &Path,
        kubeconfig: &Path,
        log: &Path,
        extra: &[String],
    ) -> Result<Operator, ProcessError> {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        Self::spawn_operator(bin, kubeconfig, log, &extra)
    }

    /// SIGKILL (no chance to clean up, as when a node dies), waiting for the exit.
    #[allow(dead_code)] // hypersync-chaos's; the sandbox stops the operator with SIGTERM
    pub async fn kill(mut self) -> String {
        match self.child.kill().await {
            Ok(()) => "killed (SIGKILL)".to_string(),
            Err(err) => format!("failed to kill it: {err}"),
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`. Returns how it ended.
    pub async fn stop(mut self, grace: Duration) -> String {
        if let Some(status) = self.exited() {
            return format!("had already exited ({status})");
        }
        if let Ok(pid) = i32::try_from(self.pid) {
            // SAFETY: kill(2) with a pid of our own child and a valid signal has no memory effects.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => format!("stopped ({status})"),
            Ok(Err(err)) => format!("failed to wait for it: {err}"),
            Err(_) => {
                let _ = self.child.kill().await;
                format!("killed after not stopping within {grace:?}")
            }
        }
    }
}

/// A `Vm*:  1234 kB` value from /proc/<pid>/status.
pub fn proc_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Status code of a plain HTTP/1.0 GET, `None` if unreachable.
pub async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream =
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
            .await
            .ok()?
            .ok()?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status_fields() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    5120 kB\nVmRSS:\t    4096 kB\n";
        assert_eq!(proc_status_kib(status, "VmHWM"), Some(5120));
        assert_eq!(proc_status_kib(status, "VmRSS"), Some(4096));
        assert_eq!(proc_status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn own_process_has_a_high_water_mark() {
        let status = std::fs::read_to_string("/proc/self/status").expect("proc");
        let hwm = proc_status_kib(&status, "VmHWM").expect("VmHWM");
        let rss = proc_status_kib(&status, "VmRSS").expect("VmRSS");
        assert!(hwm >= rss && rss > 0);
    }

    #[tokio::test]
    async fn missing_binary_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Operator::spawn(
            &dir.path().join("nope"),
            &dir.path().join("kc"),
            &dir.path().join("log"),
        )
        .err()
        .expect("error");
        assert!(matches!(
            err,
            ProcessError::Missing(_, "hypersync-operator")
        ));
    }
}

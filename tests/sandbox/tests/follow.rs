//! `make sandbox` as a user meets it after the story: the "try it yourself" block is run as printed
//! (bash, kubectl and `kubectl hypersync` against the running sandbox), the sandbox narrates the
//! user's AgentNode and what the operator does about it (children, phases, Events), and Ctrl-C stops
//! it cleanly.
//!
//! Needs the operator's binaries next to the sandbox's (`cargo test --workspace` builds them; with
//! `-p hypersync-sandbox` alone, `cargo build -p hypersync-operator` first) and kubectl (on the PATH,
//! else `tools/install-helm.sh --kubectl` installs it into `.tools/bin`, as for the client tests).

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hypersync_operator::workload::agent::agent_workload_name;
use hypersync_operator::workload::identity::identity_name;
use hypersync_sandbox::try_it::{HEADER, NODE, commands};

const SANDBOX: &str = env!("CARGO_BIN_EXE_hypersync-sandbox");

/// The sandbox as a child process whose stdout and stderr lines are collected.
struct Sandbox {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Sandbox {
    fn start(state_dir: &Path) -> Sandbox {
        let bin_dir = Path::new(SANDBOX).parent().expect("target dir");
        for bin in ["hypersync-operator", "kubectl-hypersync"] {
            assert!(
                bin_dir.join(bin).is_file(),
                "{} is missing: build it first (cargo build -p hypersync-operator)",
                bin_dir.join(bin).display()
            );
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut child = Command::new(SANDBOX)
            .arg("--operator")
            .arg(bin_dir.join("hypersync-operator"))
            .arg("--state-dir")
            .arg(state_dir)
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the sandbox starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collect = |stream: Box<dyn Read + Send>, prefix: &'static str| {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().expect("lines").push(format!("{prefix}{line}"));
                }
            });
        };
        collect(Box::new(child.stdout.take().expect("stdout")), "");
        collect(Box::new(child.stderr.take().expect("stderr")), "stderr: ");
        Sandbox { child, lines }
    }

    fn text(&self) -> String {
        self.lines.lock().expect("lines").join("\n") + "\n"
    }

    /// Waits until `done` holds for the output; panics with the output after `timeout`.
    fn wait_for(&mut self, what: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.text();
            if done(&text) {
                return text;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "the sandbox exited ({status}) before {what}:\n{}",
                    self.text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {timeout:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own child's pid with a valid signal has no memory effects.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// The exit status within `timeout` of now, if any.
    fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for Sandbox {
    /// A failed test still stops the sandbox (and with it the operator and kube-sim).
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGINT);
            if self.wait_exit(Duration::from_secs(20)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// The lines printed after `marker`'s first occurrence.
fn after<'a>(text: &'a str, marker: &str) -> &'a str {
    text.find(marker).map(|i| &text[i..]).unwrap_or("")
}

fn kubectl_runs(kubectl: &Path) -> bool {
    Command::new(kubectl)
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A PATH on which `kubectl` runs: this one, or `.tools/bin` first once `tools/install-helm.sh
/// --kubectl` has installed it there.
fn path_with_kubectl() -> OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if kubectl_runs(Path::new("kubectl")) {
        return path;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin = root.join(".tools/bin");
    if !kubectl_runs(&bin.join("kubectl")) {
        let status = Command::new("bash")
            .arg(root.join("tools/install-helm.sh"))
            .arg("--kubectl")
            .status()
            .expect("failed to run tools/install-helm.sh");
        assert!(status.success(), "tools/install-helm.sh --kubectl failed");
    }
    std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&path))).expect("a PATH")
}

/// Runs `script` with `bash -euo pipefail` in `dir` with `path`, at most `timeout`; returns its
/// output.
fn run_script(dir: &Path, path: &OsString, script: &str, timeout: Duration) -> String {
    let file: PathBuf = dir.join("try-it.sh");
    std::fs::write(&file, script).expect("script written");
    let out = std::fs::File::create(dir.join("try-it.out")).expect("output file");
    let mut child = Command::new("bash")
        .args(["-euo", "pipefail"])
        .arg(&file)
        .current_dir(dir)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone"))
        .stderr(out)
        .spawn()
        .expect("bash starts");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(dir.join("try-it.out")).unwrap_or_default();
    match status {
        Some(s) if s.success() => output,
        Some(s) => panic!("the printed commands failed ({s}):\n{script}\n--- output:\n{output}"),
        None => {
            panic!("the printed commands took over {timeout:?}:\n{script}\n--- output:\n{output}")
        }
    }
}

#[test]
fn after_the_story_the_printed_commands_work_and_the_users_node_is_narrated() {
    let path = path_with_kubectl();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sandbox = Sandbox::start(&dir.path().join("state"));

    // The story, its summary, then the block and the promise to narrate.
    let text = sandbox.wait_for(
        "try-it block after the story",
        Duration::from_secs(300),
        |t| t.contains("Narrating what changes"),
    );
    assert!(text.contains("Story complete in"), "{text}");
    let block = after(&text, HEADER);
    let script = commands(block).unwrap_or_else(|| panic!("no commands after the header:\n{text}"));
    assert!(
        script.contains(&format!(
            "--subresource=status --type=merge -p '{{\"status\":{{\"objective\":{{\"observed\":5}}}}}}' --token sim-sa:default:{}",
            identity_name(NODE)
        )),
        "{script}"
    );

    // Every printed command, as printed.
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let out = run_script(&work, &path, &script, Duration::from_secs(300));
    assert!(
        out.contains(&format!("agentnode.hypersync.io/{NODE} created")),
        "{out}"
    );
    assert!(
        out.contains(&format!("agentnode.hypersync.io/{NODE} condition met")),
        "{out}"
    );
    assert!(
        out.contains(&format!("agentnode.hypersync.io/{NODE} patched")),
        "{out}"
    );
    assert!(
        out.contains(&format!("agentnode/{NODE} is Running")),
        "kubectl hypersync why: {out}"
    );
    let svg = std::fs::read_to_string(work.join("disk.svg")).expect("disk.svg written");
    assert!(svg.contains("<svg") && svg.contains(NODE), "{svg}");

    // The narration of the user's node and of what the operator did about it.
    let sa = identity_name(NODE);
    let expected = [
        format!("agentnode/{NODE}  created  (stack security-analyst, Semantic placement"),
        format!("serviceaccount/{sa}  created  (owned by agentnode/{NODE})"),
        format!("rolebinding/{sa}  created  (owned by agentnode/{NODE})"),
        format!(
            "job/{}  created  (owned by agentnode/{NODE})",
            agent_workload_name(NODE)
        ),
        "-> Running".to_string(),
        "objective findings_fixed 5/5, met".to_string(),
        "-> Succeeded".to_string(),
        format!("event  Normal Dissolved  agentnode/{NODE}:"),
        format!("agentnode/{NODE}  deleted"),
        format!("serviceaccount/{sa}  deleted"),
    ];
    let text = sandbox.wait_for(
        "narration of the user's node",
        Duration::from_secs(60),
        |t| {
            let follow = after(t, "Narrating what changes");
            expected
                .iter()
                .all(|e| follow.lines().any(|l| l.contains(e) && l.contains(NODE)))
        },
    );
    let follow = after(&text, "Narrating what changes");
    assert!(
        follow.lines().any(
            |l| l.contains(&format!("pod/{}-", agent_workload_name(NODE))) && l.contains("Running")
        ),
        "the agent's pod is narrated:\n{follow}"
    );

    // Ctrl-C: a clean stop, exit 0.
    sandbox.signal(libc::SIGINT);
    let status = sandbox
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the sandbox did not stop within 30s:\n{}", sandbox.text()));
    std::thread::sleep(Duration::from_millis(300));
    let text = sandbox.text();
    assert!(status.success(), "exit {status}:\n{text}");
    assert!(text.contains("kube-sim stopped"), "{text}");
    assert!(!text.contains("interrupted"), "{text}");
}

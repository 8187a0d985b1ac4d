//! The `hypersync-operator` command line as a user runs it.

use std::io::Read;
use std::process::{Command, Stdio};

/// `hypersync-operator crd | head`: the reader goes away after a few lines; the command stops
/// quietly (exit 0, nothing on stderr) instead of panicking on the broken pipe.
#[test]
fn crd_into_a_closed_pipe_exits_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hypersync-operator"))
        .arg("crd")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut stdout = child.stdout.take().expect("stdout piped");
    let mut head = [0u8; 64];
    stdout.read_exact(&mut head).expect("the first bytes");
    assert!(
        String::from_utf8_lossy(&head).starts_with("# Generated from src/api"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // The CRDs (about 180 KB) do not fit in the pipe: the rest is written into a closed pipe.
    drop(stdout);
    let out = child.wait_with_output().expect("the command ends");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "status {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

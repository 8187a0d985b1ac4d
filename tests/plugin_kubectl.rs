//! `kubectl hypersync` against kube-sim with the real operator: the built `kubectl-hypersync` binary
//! is run with `--kubeconfig` (and through `kubectl` itself, which finds the plugin on the PATH)
//! for `why` (a Running node, a node whose model cannot be scheduled, a node whose stack does not
//! exist, a node that does not exist), `tree` (a child under its parent), `models` and `disk`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hypersync_operator::api::AgentNode;
use hypersync_operator::api::ModelEntry;
use hypersync_operator::api::agent_node::NodePhase;
use kube::Api;
use serde_json::json;
use support::{Cluster, NS, seed_samples};

const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-hypersync");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the plugin binary with `--kubeconfig` and `args`.
async fn plugin(kubeconfig: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(PLUGIN);
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
    run(cmd).await
}

async fn run(mut cmd: Command) -> Run {
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("the command starts");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn kubectl_available() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn extra_objects() -> String {
    // A model no node of the cluster can hold (16 GPUs, nodes have 8), a stack and a node on it; a
    // node whose stack does not exist.
    r#"
apiVersion: hypersync.io/v1alpha1
kind: ModelEntry
metadata: {name: giant}
spec:
  type: LLM
  capabilities: [coding]
  source:
    local:
      engine: VLLM
      model: giant/model
      gpu: {count: 16}
      scaling: {mode: Always, replicas: 1}
---
apiVersion: hypersync.io/v1alpha1
kind: AgentStack
metadata: {name: giant-stack}
spec:
  layers:
    cognitive: {modelRef: {name: giant}}
  runtime: {image: busybox:1.36}
---
apiVersion: hypersync.io/v1alpha1
kind: AgentNode
metadata: {name: stuck}
spec:
  stackRef: {name: giant-stack}
  task: {tags: [coding]}
---
apiVersion: hypersync.io/v1alpha1
kind: AgentNode
metadata: {name: orphan}
spec:
  stackRef: {name: missing-stack}
  task: {tags: [search]}
"#
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_commands_against_kube_sim() {
    let cluster = Cluster::start().await;
    let operator = cluster.operator();
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    cluster
        .sim
        .write_kubeconfig(&kubeconfig)
        .expect("kubeconfig written");
    cluster.apply_yaml(&seed_samples(60, 60)).await;
    cluster.apply_yaml(&extra_objects()).await;
    let nodes: Api<AgentNode> = Api::namespaced(cluster.client.clone(), NS);
    let entries: Api<ModelEntry> = Api::namespaced(cluster.client.clone(), NS);

    cluster
        .wait_for(
            "security-analyst Running",
            Duration::from_secs(90),
            || async {
                let n = nodes.get("security-analyst").await.ok()?;
                (n.status?.phase == Some(NodePhase::Running)).then_some(())
            },
        )
        .await;
    // A worker spawned by the analyst: labelled with its parent, placed near it.
    cluster
        .apply(json!({
            "apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode",
            "metadata": {"name": "helper", "labels": {"hypersync.io/parent": "security-analyst"}},
            "spec": {"stackRef": {"name": "security-analyst"}, "task": {"tags": ["coding"]},
                     "placement": {"near": {"agentNode": "security-analyst"}}}
        }))
        .await;
    cluster
        .wait_for("helper placed", Duration::from_secs(60), || async {
            nodes
                .get("helper")
                .await
                .ok()?
                .status?
                .placement
                .map(|_| ())
        })
        .await;
    cluster
        .wait_for("giant unschedulable", Duration::from_secs(60), || async {
            let e = entries.get("giant").await.ok()?;
            e.status?
                .conditions
                .iter()
                .any(|c| c.type_ == "Scheduled" && c.status == "False")
                .then_some(())
        })
        .await;

    // why: a Running node exits 0.
    let ok = plugin(&kubeconfig, &["why", "security-analyst"]).await;
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    assert!(
        ok.stdout
            .starts_with("agentnode/security-analyst is Running"),
        "{}",
        ok.stdout
    );
    assert!(
        ok.stdout
            .contains("cognitive -> modelentry/deepseek-coder-33b: Ready"),
        "{}",
        ok.stdout
    );

    // why: the model needs more GPUs than any node has; the scheduler's message is quoted.
    let stuck = plugin(&kubeconfig, &["why", "stuck", "-n", NS]).await;
    assert_eq!(stuck.code, 1, "{}{}", stuck.stdout, stuck.stderr);
    assert!(
        stuck
            .stdout
            .contains("=> giant needs 16 nvidia.com/gpu: 0/4 nodes are available:"),
        "{}",
        stuck.stdout
    );
    assert!(
        stuck.stdout.contains("Insufficient nvidia.com/gpu"),
        "{}",
        stuck.stdout
    );
    assert!(
        stuck.stdout.contains("pod/giant-"),
        "walks down to the pod: {}",
        stuck.stdout
    );

    // why: a missing stack is named with the field that points to it.
    let orphan = plugin(&kubeconfig, &["why", "orphan"]).await;
    assert_eq!(orphan.code, 1, "{}{}", orphan.stdout, orphan.stderr);
    assert!(
        orphan
            .stdout
            .contains("=> AgentStack missing-stack (spec.stackRef.name) does not exist"),
        "{}",
        orphan.stdout
    );

    // why: a node that does not exist is an error (exit 2), on stderr.
    let none = plugin(&kubeconfig, &["why", "nope"]).await;
    assert_eq!(none.code, 2);
    assert!(
        none.stderr
            .contains("agentnode nope not found in namespace default"),
        "{}",
        none.stderr
    );

    // tree: the helper under its parent; with a name, only that lineage.
    let tree = plugin(&kubeconfig, &["tree"]).await;
    assert_eq!(tree.code, 0, "{}", tree.stderr);
    let lines: Vec<&str> = tree.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME") && lines[0].contains("PHASE"));
    let parent_at = lines
        .iter()
        .position(|l| l.contains("─ security-analyst"))
        .unwrap_or_else(|| panic!("{}", tree.stdout));
    assert!(
        lines[parent_at + 1].contains("└─ helper"),
        "helper is the analyst's child:\n{}",
        tree.stdout
    );
    assert!(
        lines[parent_at - 1].starts_with("[point r 0.400, θ 120.0°]"),
        "the analyst is grouped under its anchor:\n{}",
        tree.stdout
    );
    let one = plugin(&kubeconfig, &["tree", "helper"]).await;
    assert!(!one.stdout.contains("orphan"), "{}", one.stdout);
    assert!(one.stdout.contains("└─ helper"), "{}", one.stdout);

    let missing = plugin(&kubeconfig, &["tree", "nope", "-A"]).await;
    assert_eq!(missing.code, 2);
    assert!(
        missing
            .stderr
            .contains("agentnode nope not found in any namespace"),
        "{}",
        missing.stderr
    );

    // models: the registry, with GPUs, phase and endpoint.
    let models = plugin(&kubeconfig, &["models"]).await;
    assert_eq!(models.code, 0, "{}", models.stderr);
    let coder = models
        .stdout
        .lines()
        .find(|l| l.starts_with("deepseek-coder-33b "))
        .unwrap_or_else(|| panic!("{}", models.stdout));
    for want in [
        "coding,security",
        "vLLM",
        "4 nvidia.com/gpu",
        "Ready",
        "http://",
    ] {
        assert!(coder.contains(want), "{want} in {coder}");
    }
    let all = plugin(&kubeconfig, &["models", "-A"]).await;
    assert!(all.stdout.starts_with("NAMESPACE"), "{}", all.stdout);

    // disk: every placed node drawn, the helper's geodesic goes to its parent.
    let disk = plugin(
        &kubeconfig,
        &["disk", "--timestamp", "2026-01-01T00:00:00Z"],
    )
    .await;
    assert_eq!(disk.code, 0, "{}", disk.stderr);
    let doc = roxmltree::Document::parse(&disk.stdout).expect("SVG parses");
    let drawn: Vec<&str> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("node"))
        .filter_map(|n| n.attribute("data-name"))
        .collect();
    for name in ["helper", "security-analyst", "stuck"] {
        assert!(drawn.contains(&name), "{name} drawn: {drawn:?}");
    }
    assert!(
        doc.descendants()
            .any(|n| n.attribute("class") == Some("geodesic to-parent")
                && n.attribute("data-from") == Some("helper")
                && n.attribute("data-to") == Some("security-analyst")),
        "helper -> security-analyst geodesic"
    );
    assert!(
        disk.stdout
            .contains("namespace default · 2026-01-01T00:00:00Z")
    );
    let bad = plugin(&kubeconfig, &["disk", "--timestamp", "yesterday"]).await;
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("--timestamp \"yesterday\""),
        "{}",
        bad.stderr
    );

    // Through kubectl itself: the plugin found on the PATH, the kubeconfig from $KUBECONFIG.
    if kubectl_available() {
        let bin_dir = Path::new(PLUGIN).parent().expect("bin dir");
        let path = std::env::join_paths(std::iter::once(PathBuf::from(bin_dir)).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .expect("PATH");
        let mut cmd = Command::new("kubectl");
        cmd.args(["hypersync", "why", "stuck"])
            .env("PATH", &path)
            .env("KUBECONFIG", &kubeconfig);
        let via = run(cmd).await;
        assert_eq!(via.code, 1, "{}{}", via.stdout, via.stderr);
        assert_eq!(via.stdout, stuck.stdout, "kubectl runs the same plugin");
        let mut cmd = Command::new("kubectl");
        cmd.args(["hypersync", "models"])
            .env("PATH", &path)
            .env("KUBECONFIG", &kubeconfig);
        let via = run(cmd).await;
        assert_eq!(via.code, 0, "{}", via.stderr);
        assert!(via.stdout.contains("deepseek-coder-33b"), "{}", via.stdout);
    } else {
        eprintln!("kubectl not on the PATH: the `kubectl hypersync` part is skipped");
    }
    operator.stop().await;
}

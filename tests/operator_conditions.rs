//! The `Ready` condition as users and GitOps tools meet it: the real `kubectl wait
//! --for=condition=Ready` on all three kinds against kube-sim with the operator running, the kstatus
//! companions (`Reconciling`, `Stalled`) and `observedGeneration`, and the printer columns
//! `kubectl get` shows (Ready, Replicas, rounded R and Theta).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use hypersync_operator::api::AgentNode;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;

/// kubectl: `$KUBECTL`, else `kubectl` on PATH, else the one `tools/install-helm.sh --kubectl`
/// installs into `.tools/bin`.
fn kubectl_binary() -> PathBuf {
    if let Some(k) = std::env::var_os("KUBECTL") {
        return PathBuf::from(k);
    }
    let runs = |p: &Path| {
        Command::new(p)
            .args(["version", "--client"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if runs(Path::new("kubectl")) {
        return PathBuf::from("kubectl");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let local = root.join(".tools/bin/kubectl");
    if !runs(&local) {
        let status = Command::new("bash")
            .arg(root.join("tools/install-helm.sh"))
            .arg("--kubectl")
            .status()
            .expect("failed to run tools/install-helm.sh");
        assert!(status.success(), "tools/install-helm.sh --kubectl failed");
    }
    local
}

async fn kubectl(dir: &Path, args: &[&str]) -> Output {
    let (dir, args) = (
        dir.to_path_buf(),
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    );
    tokio::task::spawn_blocking(move || {
        Command::new(kubectl_binary())
            .args(&args)
            .env("KUBECONFIG", dir.join("kubeconfig"))
            .env("HOME", &dir)
            .output()
            .expect("kubectl runs")
    })
    .await
    .expect("kubectl task joins")
}

#[track_caller]
fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// `kubectl get <kind> <name>` as a map from column header to value.
async fn columns(dir: &Path, kind: &str, name: &str) -> std::collections::BTreeMap<String, String> {
    let out = ok(
        &kubectl(dir, &["get", kind, name, "-n", support::NS]).await,
        "kubectl get",
    );
    let mut lines = out.lines();
    let header = lines.next().expect("a header line");
    let row = lines.next().expect("a row");
    // kubectl aligns each column under its header (an empty cell is blank).
    let starts: Vec<usize> = header
        .char_indices()
        .filter(|&(i, c)| c != ' ' && (i == 0 || header.as_bytes()[i - 1] == b' '))
        .map(|(i, _)| i)
        .collect();
    let cell = |l: &str, from: usize, to: Option<usize>| {
        let to = to.unwrap_or(l.len()).min(l.len());
        l.get(from.min(to)..to)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    starts
        .iter()
        .enumerate()
        .map(|(i, &from)| {
            let to = starts.get(i + 1).copied();
            (cell(header, from, to), cell(row, from, to))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_wait_for_ready_works_on_every_kind() {
    let cluster = support::Cluster::start().await;
    let operator = cluster.operator();
    let home = tempfile::tempdir().expect("temp dir");
    let dir = home.path();
    cluster
        .sim
        .write_kubeconfig(&dir.join("kubeconfig"))
        .expect("kubeconfig written");

    // A node whose stack does not exist: not ready, and the operator keeps trying.
    cluster
        .apply_yaml(
            "apiVersion: hypersync.io/v1alpha1\nkind: AgentNode\nmetadata: {name: orphan}\nspec:\n  stackRef: {name: nope}\n",
        )
        .await;
    cluster.apply_yaml(&support::seed_samples(60, 600)).await;

    let waited = kubectl(
        dir,
        &[
            "wait",
            "--for=condition=Ready",
            "-n",
            support::NS,
            "--timeout=120s",
            "modelentry/gpt-4o",
            "modelentry/deepseek-coder-33b",
            "modelentry/embedding-v3",
            "agentstack/security-analyst",
            "agentnode/security-analyst",
        ],
    )
    .await;
    let out = ok(&waited, "kubectl wait --for=condition=Ready");
    assert_eq!(out.lines().count(), 5, "{out}");

    // What Ready says on the node, with kstatus' companions and the generation it describes.
    let nodes: Api<AgentNode> = Api::namespaced(cluster.client.clone(), support::NS);
    let node = nodes.get("security-analyst").await.expect("node");
    let status = node.status.clone().expect("status");
    let ready = condition(&status.conditions, "Ready").expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "AgentRunning"),
        "{ready:?}"
    );
    assert_eq!(ready.observed_generation, node.metadata.generation);
    assert_eq!(status.observed_generation, node.metadata.generation);
    assert!(condition(&status.conditions, "Reconciling").is_none());
    assert!(condition(&status.conditions, "Stalled").is_none());

    let orphan = cluster
        .wait_for("orphan not Ready", Duration::from_secs(20), || async {
            let s = nodes.get("orphan").await.ok()?.status?;
            condition(&s.conditions, "Ready")?;
            Some(s)
        })
        .await;
    let ready = condition(&orphan.conditions, "Ready").expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "StackNotFound"),
        "{ready:?}"
    );
    assert_eq!(
        condition(&orphan.conditions, "Reconciling").map(|c| c.status.as_str()),
        Some("True")
    );
    let refused = kubectl(
        dir,
        &[
            "wait",
            "--for=condition=Ready",
            "-n",
            support::NS,
            "--timeout=2s",
            "agentnode/orphan",
        ],
    )
    .await;
    assert!(
        !refused.status.success(),
        "kubectl wait accepted a node that is not Ready"
    );

    // Printer columns: Ready on every kind, ModelEntry's replica count as Replicas, R and Theta
    // rounded while status keeps the exact values.
    let me = columns(dir, "modelentry", "deepseek-coder-33b").await;
    assert_eq!(me.get("READY").map(String::as_str), Some("True"), "{me:?}");
    assert_eq!(me.get("REPLICAS").map(String::as_str), Some("1"), "{me:?}");
    let ast = columns(dir, "agentstack", "security-analyst").await;
    assert_eq!(
        ast.get("READY").map(String::as_str),
        Some("True"),
        "{ast:?}"
    );
    let an = columns(dir, "agentnode", "security-analyst").await;
    assert_eq!(an.get("READY").map(String::as_str), Some("True"), "{an:?}");
    let placement = status.placement.expect("placed");
    assert_eq!(an.get("R"), Some(&format!("{:.4}", placement.r)), "{an:?}");
    assert_eq!(
        an.get("THETA"),
        Some(&format!("{:.1}", placement.theta_degrees)),
        "{an:?}"
    );
    assert_ne!(
        format!("{:.4}", placement.r),
        placement.r.to_string(),
        "r is exact in status"
    );

    // The stack was resolved before its models had any status (all were applied at once): that
    // provisional outcome raised no Warning (reason WaitingForModelStatus, Ready Unknown).
    let warnings: Vec<_> = cluster
        .events_for("AgentStack", "security-analyst")
        .await
        .into_iter()
        .filter(|(type_, _, _)| type_ == "Warning")
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");

    operator.stop().await;
}

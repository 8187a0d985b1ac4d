//! The real Helm v3 against kube-sim: install with `--wait` of a chart with a Deployment, a Service,
//! RBAC and a CRD in `crds/`, upgrade with new values, history, uninstall.

#[path = "fixtures/client_harness.rs"]
mod harness;

use harness::{Cluster, fixture};
use serde_json::Value;

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn env_value(dep: &Value, name: &str) -> Option<String> {
    dep["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str().map(str::to_string))
}

#[test]
fn helm_install_upgrade_and_uninstall_a_chart() {
    let c = Cluster::start();
    let chart = fixture("chart");

    let out = c
        .helm(&[
            "install",
            "t1",
            path(&chart),
            "--namespace",
            "default",
            "--wait",
            "--timeout",
            "90s",
        ])
        .expect_ok("helm install --wait");
    assert!(out.contains("STATUS: deployed"), "{out}");

    // The CRD from crds/ is installed first, then the templates.
    c.kubectl(&["get", "crd", "gadgets.charts.example.com"])
        .expect_ok("chart CRD installed");
    for obj in [
        "deployment/t1-app",
        "service/t1-svc",
        "serviceaccount/t1-sa",
        "role/t1-role",
        "rolebinding/t1-rb",
    ] {
        c.kubectl(&["get", obj]).expect_ok(obj);
    }
    let dep = c.get_json(&["deployment", "t1-app"]);
    assert_eq!(env_value(&dep, "MESSAGE").as_deref(), Some("hello"));
    assert_eq!(
        dep["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "Helm"
    );
    assert_eq!(
        dep["metadata"]["annotations"]["meta.helm.sh/release-name"],
        "t1"
    );

    let out = c
        .helm(&[
            "upgrade",
            "t1",
            path(&chart),
            "--set",
            "message=bye",
            "--set",
            "replicaCount=2",
            "--wait",
            "--timeout",
            "90s",
        ])
        .expect_ok("helm upgrade --wait");
    assert!(out.contains("has been upgraded"), "{out}");
    let dep = c.get_json(&["deployment", "t1-app"]);
    assert_eq!(env_value(&dep, "MESSAGE").as_deref(), Some("bye"));
    assert_eq!(dep["spec"]["replicas"], 2);
    assert_eq!(dep["status"]["availableReplicas"], 2);

    let list = c.helm(&["list", "-o", "json"]).expect_ok("helm list");
    let list: Value = serde_json::from_str(&list).expect("helm list JSON");
    assert_eq!(list[0]["name"], "t1");
    assert_eq!(list[0]["revision"], "2");
    assert_eq!(list[0]["status"], "deployed");
    let history = c.helm(&["history", "t1"]).expect_ok("helm history");
    assert_eq!(
        history.lines().count(),
        3,
        "header + 2 revisions: {history}"
    );

    let out = c
        .helm(&["uninstall", "t1", "--wait", "--timeout", "60s"])
        .expect_ok("helm uninstall");
    assert!(out.contains("uninstalled"), "{out}");
    let err = c
        .kubectl(&["get", "deployment", "t1-app"])
        .expect_err("deployment removed");
    assert!(err.contains("not found"), "{err}");
    // Helm never deletes CRDs from crds/.
    c.kubectl(&["get", "crd", "gadgets.charts.example.com"])
        .expect_ok("CRD kept after uninstall");
    let secrets = c
        .kubectl(&["get", "secrets", "-l", "owner=helm", "-o", "name"])
        .expect_ok("release secrets");
    assert!(
        secrets.trim().is_empty(),
        "release records removed: {secrets}"
    );
}

#[test]
fn helm_create_namespace_atomic_upgrade_rollback_and_upgrade_install() {
    let c = Cluster::start();
    let chart = fixture("chart");
    let chart = path(&chart);
    c.helm(&[
        "install",
        "t2",
        chart,
        "-n",
        "apps",
        "--create-namespace",
        "--wait",
        "--timeout",
        "90s",
    ])
    .expect_ok("helm install --create-namespace");
    c.kubectl(&["get", "namespace", "apps"])
        .expect_ok("namespace created by Helm");
    c.helm(&[
        "upgrade",
        "t2",
        chart,
        "-n",
        "apps",
        "--set",
        "replicaCount=3",
        "--atomic",
        "--timeout",
        "90s",
    ])
    .expect_ok("helm upgrade --atomic");
    let dep = c.get_json(&["-n", "apps", "deployment", "t2-app"]);
    assert_eq!(dep["spec"]["replicas"], 3);
    let out = c
        .helm(&[
            "rollback",
            "t2",
            "1",
            "-n",
            "apps",
            "--wait",
            "--timeout",
            "90s",
        ])
        .expect_ok("helm rollback");
    assert!(out.contains("Rollback was a success"), "{out}");
    let dep = c.get_json(&["-n", "apps", "deployment", "t2-app"]);
    assert_eq!(dep["spec"]["replicas"], 1);
    let history = c
        .helm(&["history", "t2", "-n", "apps", "-o", "json"])
        .expect_ok("helm history");
    let history: Value = serde_json::from_str(&history).expect("history JSON");
    assert_eq!(history.as_array().map(Vec::len), Some(3));
    assert_eq!(history[2]["description"], "Rollback to 1");

    let out = c
        .helm(&[
            "upgrade",
            "--install",
            "t3",
            chart,
            "-n",
            "apps",
            "--wait",
            "--timeout",
            "90s",
        ])
        .expect_ok("helm upgrade --install");
    assert!(out.contains("STATUS: deployed"), "{out}");
    c.helm(&["uninstall", "t2", "t3", "-n", "apps", "--wait"])
        .expect_ok("helm uninstall two releases");
    let left = c
        .kubectl(&["get", "deployments", "-n", "apps", "-o", "name"])
        .expect_ok("deployments left");
    assert!(left.trim().is_empty(), "{left}");
}

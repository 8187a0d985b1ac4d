//! The real kubectl against kube-sim: client-side apply (create, then strategic merge patch from the
//! OpenAPI v3 patch metadata), server-side apply with conflicts, CRDs and custom objects (printer
//! columns, label selectors, `-o yaml`, `wait`, delete), Deployment availability, kustomize, explain.

#[path = "fixtures/client_harness.rs"]
mod harness;

use harness::{Cluster, fixture};
use serde_json::Value;
use std::time::Duration;

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn containers(dep: &Value) -> Vec<Value> {
    dep["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn container<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("container {name} missing in {list:?}"))
}

fn env_of(c: &Value) -> Vec<(String, String)> {
    c["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["name"].as_str().unwrap_or("").to_string(),
                        e["value"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn client_side_apply_creates_then_patches_with_strategic_merge() {
    let c = Cluster::start();
    let manifest = std::fs::read_to_string(fixture("kubectl/deployment.yaml")).expect("fixture");
    let file = c.write("deployment.yaml", &manifest);
    let out = c
        .kubectl(&["apply", "-f", path(&file)])
        .expect_ok("kubectl apply (create)");
    assert!(out.contains("deployment.apps/web created"), "{out}");

    // Change one env value and the side container's image: kubectl computes a strategic merge patch
    // with merge keys (containers by name, env by name) and `$setElementOrder` directives.
    let changed = manifest
        .replace("value: \"2\"", "value: \"3\"")
        .replace("side:1", "side:2");
    c.write("deployment.yaml", &changed);
    let out = c
        .kubectl(&["apply", "-f", path(&file)])
        .expect_ok("kubectl apply (patch)");
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let dep = c.get_json(&["deployment", "web"]);
    let list = containers(&dep);
    assert_eq!(list.len(), 2, "{list:?}");
    let web = container(&list, "web");
    assert_eq!(
        web["image"], "registry.example/web:1",
        "untouched fields survive: {web}"
    );
    assert_eq!(web["ports"][0]["containerPort"], 8080);
    assert_eq!(
        env_of(web),
        vec![("A".into(), "1".into()), ("B".into(), "3".into())]
    );
    assert_eq!(container(&list, "side")["image"], "registry.example/side:2");
    let last_applied =
        dep["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .expect("last-applied annotation");
    assert!(last_applied.contains("side:2"), "{last_applied}");

    // Dropping an env entry from the file deletes it on the server (`$patch: delete` by merge key).
    let dropped = changed.replace("            - {name: A, value: \"1\"}\n", "");
    assert_ne!(dropped, changed, "fixture layout changed");
    c.write("deployment.yaml", &dropped);
    c.kubectl(&["apply", "-f", path(&file)])
        .expect_ok("kubectl apply (delete env entry)");
    let dep = c.get_json(&["deployment", "web"]);
    let list = containers(&dep);
    assert_eq!(
        env_of(container(&list, "web")),
        vec![("B".into(), "3".into())]
    );

    // Re-applying the same file is a no-op.
    let out = c
        .kubectl(&["apply", "-f", path(&file)])
        .expect_ok("kubectl apply (unchanged)");
    assert!(out.contains("deployment.apps/web unchanged"), "{out}");
}

#[test]
fn server_side_apply_reports_conflicts_and_force_takes_ownership() {
    let c = Cluster::start();
    let file = fixture("kubectl/deployment.yaml");
    let out = c
        .kubectl(&["apply", "--server-side", "-f", path(&file)])
        .expect_ok("kubectl apply --server-side");
    assert!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );

    let other =
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 5\n";
    let err = c
        .kubectl_stdin(
            &["apply", "--server-side", "--field-manager=other", "-f", "-"],
            other,
        )
        .expect_err("conflicting server-side apply");
    assert!(err.contains("conflict"), "{err}");
    assert!(err.contains(".spec.replicas"), "{err}");

    c.kubectl_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            "-",
        ],
        other,
    )
    .expect_ok("forced server-side apply");
    let dep = c.get_json(&["deployment", "web", "--show-managed-fields"]);
    assert_eq!(dep["spec"]["replicas"], 5);
    let managers: Vec<&str> = dep["metadata"]["managedFields"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["manager"].as_str()).collect())
        .unwrap_or_default();
    assert!(managers.contains(&"kubectl"), "{managers:?}");
    assert!(managers.contains(&"other"), "{managers:?}");
}

#[test]
fn crd_objects_printer_columns_selectors_yaml_wait_and_delete() {
    let c = Cluster::start();
    c.kubectl(&["apply", "-f", path(&fixture("kubectl/crd-widgets.yaml"))])
        .expect_ok("apply CRD");
    c.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=20s",
    ])
    .expect_ok("CRD established");
    let out = c
        .kubectl(&["apply", "-f", path(&fixture("kubectl/widgets.yaml"))])
        .expect_ok("apply custom objects");
    assert!(out.contains("widget.example.com/w1 created"), "{out}");
    assert!(out.contains("widget.example.com/w2 created"), "{out}");

    // Server-side printing: the CRD's additionalPrinterColumns become the table header.
    let table = c.kubectl(&["get", "widgets"]).expect_ok("get widgets");
    let header = table.lines().next().unwrap_or("");
    for col in ["NAME", "SIZE", "PHASE", "AGE"] {
        assert!(header.contains(col), "header {header:?} lacks {col}");
    }
    let w1_row = table
        .lines()
        .find(|l| l.starts_with("w1 "))
        .unwrap_or_else(|| panic!("no w1 row in\n{table}"));
    assert!(
        w1_row.split_whitespace().any(|cell| cell == "3"),
        "{w1_row}"
    );

    // Short name and label selectors.
    let names = c
        .kubectl(&["get", "wd", "-l", "tier=gold", "-o", "name"])
        .expect_ok("get -l");
    assert_eq!(names.trim(), "widget.example.com/w1");
    let names = c
        .kubectl(&["get", "widgets", "-l", "tier!=gold", "-o", "name"])
        .expect_ok("get -l !=");
    assert_eq!(names.trim(), "widget.example.com/w2");

    let yaml = c
        .kubectl(&["get", "widget", "w1", "-o", "yaml"])
        .expect_ok("get -o yaml");
    assert!(yaml.contains("kind: Widget"), "{yaml}");
    assert!(yaml.contains("size: 3"), "{yaml}");

    // Re-apply with a change: custom resources get a JSON merge patch (no strategic metadata).
    let changed = std::fs::read_to_string(fixture("kubectl/widgets.yaml"))
        .expect("fixture")
        .replace("size: 3", "size: 4");
    let file = c.write("widgets.yaml", &changed);
    let out = c
        .kubectl(&["apply", "-f", path(&file)])
        .expect_ok("re-apply custom objects");
    assert!(out.contains("widget.example.com/w1 configured"), "{out}");
    assert!(out.contains("widget.example.com/w2 unchanged"), "{out}");
    let w1 = c.get_json(&["widget", "w1"]);
    assert_eq!(w1["spec"]["size"], 4);
    assert_eq!(w1["spec"]["tags"], serde_json::json!(["a", "b"]));

    // `kubectl wait` on a custom condition, set through the status subresource while it waits.
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(700));
            c.kubectl(&[
                "patch",
                "widget",
                "w1",
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"phase":"Ready","conditions":[{"type":"Ready","status":"True"}]}}"#,
            ])
            .expect_ok("patch status");
        });
        c.kubectl(&[
            "wait",
            "--for=condition=Ready",
            "widget/w1",
            "--timeout=20s",
        ])
        .expect_ok("wait for custom condition");
    });
    c.kubectl(&[
        "wait",
        "--for=jsonpath={.status.phase}=Ready",
        "widget/w1",
        "--timeout=5s",
    ])
    .expect_ok("wait for jsonpath");
    let table = c.kubectl(&["get", "widget", "w1"]).expect_ok("get w1");
    assert!(
        table.contains("Ready"),
        "PHASE column shows the status: {table}"
    );

    let out = c
        .kubectl(&["delete", "widget", "w1"])
        .expect_ok("delete w1");
    assert!(out.contains("widget.example.com \"w1\" deleted"), "{out}");
    let err = c
        .kubectl(&["get", "widget", "w1"])
        .expect_err("get deleted object");
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
}

#[test]
fn deployment_becomes_available_for_kubectl_wait_and_rollout_status() {
    let c = Cluster::start();
    c.kubectl(&["apply", "-f", path(&fixture("kubectl/deployment.yaml"))])
        .expect_ok("apply deployment");
    c.kubectl(&[
        "wait",
        "--for=condition=Available",
        "deployment/web",
        "--timeout=60s",
    ])
    .expect_ok("deployment available");
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .expect_ok("rollout status");
    let table = c
        .kubectl(&["get", "deployment", "web"])
        .expect_ok("get deployment");
    let header = table.lines().next().unwrap_or("");
    for col in ["READY", "UP-TO-DATE", "AVAILABLE"] {
        assert!(header.contains(col), "header {header:?} lacks {col}");
    }
    assert!(table.contains("2/2"), "{table}");
    let pods = c
        .kubectl(&["get", "pods", "-l", "app=web", "-o", "name"])
        .expect_ok("get pods");
    assert_eq!(pods.lines().count(), 2, "{pods}");
}

#[test]
fn apply_and_delete_a_kustomize_directory() {
    let c = Cluster::start();
    let dir = fixture("kustomize");
    let out = c
        .kubectl(&["apply", "-k", path(&dir)])
        .expect_ok("kubectl apply -k");
    for line in [
        "namespace/kustomized created",
        "configmap/kz-settings created",
        "deployment.apps/kz-web created",
    ] {
        assert!(out.contains(line), "{out}");
    }
    let cm = c.get_json(&["-n", "kustomized", "configmap", "kz-settings"]);
    assert_eq!(cm["data"]["mode"], "fast");
    assert_eq!(
        cm["metadata"]["labels"]["app.kubernetes.io/part-of"],
        "sim-kustomize"
    );
    let names = c
        .kubectl(&[
            "get",
            "deployments",
            "-A",
            "-l",
            "app.kubernetes.io/part-of=sim-kustomize",
            "-o",
            "name",
        ])
        .expect_ok("get by kustomize label");
    assert_eq!(names.trim(), "deployment.apps/kz-web");
    c.kubectl(&["delete", "-k", path(&dir), "--wait=true", "--timeout=30s"])
        .expect_ok("kubectl delete -k");
    let err = c
        .kubectl(&["get", "namespace", "kustomized"])
        .expect_err("namespace deleted");
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn explain_reads_openapi_v3_for_builtins_and_crds() {
    let c = Cluster::start();
    let out = c
        .kubectl(&["explain", "deployment.spec.template.spec.containers.env"])
        .expect_ok("explain built-in");
    assert!(out.contains("KIND:       Deployment"), "{out}");
    assert!(out.contains("Name of the environment variable"), "{out}");
    c.kubectl(&["apply", "-f", path(&fixture("kubectl/crd-widgets.yaml"))])
        .expect_ok("apply CRD");
    c.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=20s",
    ])
    .expect_ok("CRD established");
    let ok = c.eventually(Duration::from_secs(10), || {
        let r = c.kubectl(&["explain", "widgets.spec"]);
        r.ok && r.stdout.contains("size") && r.stdout.contains("tags")
    });
    assert!(
        ok,
        "kubectl explain widgets.spec never showed the CRD schema"
    );
}

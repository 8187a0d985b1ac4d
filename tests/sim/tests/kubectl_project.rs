//! The project's own manifests through the real kubectl against kube-sim: the CRDs in `crds/`
//! (client-side apply, Established, `explain`) and the samples in `manifests/samples` (kustomize,
//! client-side and server-side apply).

#[path = "fixtures/client_harness.rs"]
mod harness;

use harness::{Cluster, workspace_root};
use serde_json::Value;

/// Every `required` entry kubectl would send must be a string: kubectl (and Helm) parse YAML 1.1, where
/// plain `y`, `n`, `yes`, `no`, `on`, `off` are booleans.
fn booleans_in_required(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                if k == "required"
                    && c.as_array()
                        .is_some_and(|items| items.iter().any(Value::is_boolean))
                {
                    out.push(format!("{path}/required"));
                }
                if k == "true" || k == "false" {
                    out.push(format!("{path}/{k}"));
                }
                booleans_in_required(c, &format!("{path}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                booleans_in_required(c, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn project_crds_parse_as_kubectl_reads_them() {
    let c = Cluster::start();
    let crds = workspace_root().join("crds");
    let out = c
        .kubectl(&[
            "apply",
            "--dry-run=client",
            "-o",
            "json",
            "-f",
            crds.to_str().expect("utf-8 path"),
        ])
        .expect_ok("kubectl apply --dry-run=client");
    let list: Value = serde_json::from_str(&out).expect("kubectl printed JSON");
    let mut bad = Vec::new();
    booleans_in_required(&list, "", &mut bad);
    assert!(
        bad.is_empty(),
        "YAML 1.1 booleans where strings belong: {bad:?}"
    );
}

#[test]
fn project_crds_and_samples_apply_with_kubectl() {
    let c = Cluster::start();
    let root = workspace_root();
    let crds = root.join("crds");
    let samples = root.join("manifests/samples");
    let crds = crds.to_str().expect("utf-8 path");
    let samples = samples.to_str().expect("utf-8 path");
    c.kubectl(&["apply", "-f", crds]).expect_ok("apply crds/");
    c.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd",
        "--all",
        "--timeout=30s",
    ])
    .expect_ok("CRDs established");
    let out = c
        .kubectl(&["explain", "agentnodes.spec"])
        .expect_ok("explain agentnodes.spec");
    assert!(out.contains("KIND:       AgentNode"), "{out}");

    let out = c
        .kubectl(&["apply", "-k", samples])
        .expect_ok("apply -k manifests/samples");
    assert!(out.contains("created"), "{out}");
    let out = c
        .kubectl(&["apply", "-k", samples])
        .expect_ok("re-apply samples");
    assert!(!out.contains("configured"), "re-applying is a no-op: {out}");
    c.kubectl(&["apply", "--server-side", "--force-conflicts", "-k", samples])
        .expect_ok("server-side apply of the samples");
    for plural in ["modelentries", "agentstacks", "agentnodes"] {
        let names = c.kubectl(&["get", plural, "-o", "name"]).expect_ok(plural);
        assert!(!names.trim().is_empty(), "no {plural}");
    }
}

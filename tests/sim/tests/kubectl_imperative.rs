//! The real kubectl's imperative commands against kube-sim: `create namespace/serviceaccount/
//! configmap/secret/role/rolebinding/deployment/job/cronjob/service`, `create token`, `auth can-i`, `scale`, `label`, `annotate`,
//! `patch`, `diff`, `rollout restart`. The `create`/`token`/`can-i` ones send protobuf bodies.

#[path = "fixtures/client_harness.rs"]
mod harness;

use harness::{Cluster, fixture};

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn imperative_creates_token_and_can_i_send_protobuf_bodies() {
    let c = Cluster::start();
    for (args, expect) in [
        (vec!["create", "namespace", "n1"], "namespace/n1 created"),
        (
            vec!["create", "serviceaccount", "sa1"],
            "serviceaccount/sa1 created",
        ),
        (
            vec!["create", "configmap", "c1", "--from-literal=a=b"],
            "configmap/c1 created",
        ),
        (
            vec!["create", "secret", "generic", "s1", "--from-literal=p=q"],
            "secret/s1 created",
        ),
        (
            vec!["create", "role", "r1", "--verb=get", "--resource=pods"],
            "role.rbac.authorization.k8s.io/r1 created",
        ),
        (
            vec![
                "create",
                "rolebinding",
                "rb1",
                "--role=r1",
                "--serviceaccount=default:sa1",
            ],
            "rolebinding.rbac.authorization.k8s.io/rb1 created",
        ),
    ] {
        let out = c.kubectl(&args).expect_ok(&args.join(" "));
        assert!(out.contains(expect), "{out}");
    }
    for (args, expect) in [
        (
            vec![
                "create",
                "deployment",
                "d1",
                "--image=img:2",
                "--replicas=2",
                "--port=80",
            ],
            "deployment.apps/d1 created",
        ),
        (
            vec!["create", "job", "j1", "--image=img:3", "--", "echo", "hi"],
            "job.batch/j1 created",
        ),
        (
            vec![
                "create",
                "cronjob",
                "c1",
                "--image=img:4",
                "--schedule=*/5 * * * *",
                "--",
                "echo",
                "hi",
            ],
            "cronjob.batch/c1 created",
        ),
        (
            vec!["create", "service", "clusterip", "s1", "--tcp=80:8080"],
            "service/s1 created",
        ),
    ] {
        let out = c.kubectl(&args).expect_ok(&args.join(" "));
        assert!(out.contains(expect), "{out}");
    }
    let dep = c.get_json(&["deployment", "d1"]);
    assert_eq!(dep["spec"]["replicas"], 2);
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        80
    );
    let svc = c.get_json(&["service", "s1"]);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    let cm = c.get_json(&["configmap", "c1"]);
    assert_eq!(cm["data"]["a"], "b");
    let secret = c.get_json(&["secret", "s1"]);
    assert_eq!(secret["data"]["p"], "cQ==");
    let role = c.get_json(&["role", "r1"]);
    assert_eq!(
        role["rules"],
        serde_json::json!([{ "verbs": ["get"], "apiGroups": [""], "resources": ["pods"] }])
    );
    let rb = c.get_json(&["rolebinding", "rb1"]);
    assert_eq!(rb["roleRef"]["name"], "r1");
    assert_eq!(rb["subjects"][0]["name"], "sa1");

    let token = c
        .kubectl(&[
            "create",
            "token",
            "sa1",
            "--audience=aud1",
            "--duration=20m",
        ])
        .expect_ok("create token");
    assert_eq!(token.trim().split('.').count(), 3, "a JWT: {token}");

    let out = c
        .kubectl(&["auth", "can-i", "list", "pods", "-n", "kube-system"])
        .expect_ok("auth can-i");
    assert_eq!(out.trim(), "yes");
}

#[test]
fn scale_label_annotate_patch_diff_and_restart() {
    let c = Cluster::start();
    let file = fixture("kubectl/deployment.yaml");
    c.kubectl(&["apply", "-f", path(&file)]).expect_ok("apply");
    c.kubectl(&["scale", "deployment/web", "--replicas=3"])
        .expect_ok("scale");
    c.kubectl(&["label", "deployment/web", "team=a"])
        .expect_ok("label");
    c.kubectl(&["annotate", "deployment/web", "note=x"])
        .expect_ok("annotate");
    // `kubectl patch` defaults to a strategic merge patch: one container changes, the other stays.
    c.kubectl(&[
        "patch",
        "deployment/web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"registry.example/side:9"}]}}}}"#,
    ])
    .expect_ok("patch");
    let dep = c.get_json(&["deployment", "web"]);
    assert_eq!(dep["spec"]["replicas"], 3);
    assert_eq!(dep["metadata"]["labels"]["team"], "a");
    assert_eq!(dep["metadata"]["annotations"]["note"], "x");
    let images: Vec<&str> = dep["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["image"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        images,
        vec!["registry.example/web:1", "registry.example/side:9"]
    );

    // `kubectl diff` runs a server-side dry-run apply and compares: replicas 3 -> 2, side image back.
    let diff = c.kubectl(&["diff", "-f", path(&file)]);
    assert!(!diff.ok, "diff exits 1 when there are differences");
    assert!(diff.stdout.contains("-  replicas: 3"), "{}", diff.stdout);
    assert!(diff.stdout.contains("+  replicas: 2"), "{}", diff.stdout);
    assert!(!diff.stdout.contains("$setElementOrder"), "{}", diff.stdout);
    let dep = c.get_json(&["deployment", "web"]);
    assert_eq!(
        dep["spec"]["replicas"], 3,
        "diff must not change the object"
    );

    c.kubectl(&["rollout", "restart", "deployment/web"])
        .expect_ok("rollout restart");
    let dep = c.get_json(&["deployment", "web"]);
    assert!(
        dep["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string(),
        "{dep}"
    );
}

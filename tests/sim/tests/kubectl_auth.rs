//! The real kubectl against an authorizing kube-sim over HTTPS: the written kubeconfig carries the
//! CA, `--token` identities (static `sim-sa:` and `kubectl create token`) are authenticated and
//! held to RBAC, `auth can-i` with `--token` and `--as` (impersonation), `auth whoami`, and the
//! review APIs (TokenReview, SubjectAccessReview, LocalSubjectAccessReview) evaluated on create and
//! never stored.

#[path = "fixtures/client_harness.rs"]
mod harness;

use harness::Cluster;
use kube_sim::SimConfig;
use serde_json::Value;

fn authorizing() -> Cluster {
    Cluster::start_with(SimConfig {
        authorize: true,
        dataplane: false,
        ..SimConfig::default()
    })
}

/// A service account `sa1` in `default` that may get/list pods (Role + RoleBinding), nothing else.
fn pod_reader(c: &Cluster) {
    for args in [
        vec!["create", "serviceaccount", "sa1"],
        vec![
            "create",
            "role",
            "pods",
            "--verb=get,list",
            "--resource=pods",
        ],
        vec![
            "create",
            "rolebinding",
            "rb1",
            "--role=pods",
            "--serviceaccount=default:sa1",
        ],
    ] {
        c.kubectl(&args).expect_ok(&args.join(" "));
    }
}

#[test]
fn https_kubeconfig_and_tokens_are_authenticated_and_held_to_rbac() {
    let c = authorizing();
    let kubeconfig = std::fs::read_to_string(c.kubeconfig()).expect("kubeconfig");
    assert!(
        kubeconfig.contains("certificate-authority-data: ")
            && kubeconfig.contains("server: https://127.0.0.1:"),
        "{kubeconfig}"
    );
    pod_reader(&c);

    // The static service-account token.
    let sa1 = "sim-sa:default:sa1";
    let out = c
        .kubectl(&["--token", sa1, "get", "pods"])
        .expect_ok("get pods as sa1");
    assert!(out.is_empty(), "no pods: {out}");
    let err = c
        .kubectl(&["--token", sa1, "get", "secrets"])
        .expect_err("get secrets as sa1");
    assert!(
        err.contains(
            "secrets is forbidden: User \"system:serviceaccount:default:sa1\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\""
        ),
        "{err}"
    );
    let err = c
        .kubectl(&["--token", "not-a-token", "get", "pods"])
        .expect_err("an unknown token");
    assert!(err.contains("Unauthorized"), "{err}");

    // A TokenRequest token, as `kubectl create token` prints it.
    let token = c
        .kubectl(&["create", "token", "sa1"])
        .expect_ok("create token");
    let token = token.trim();
    c.kubectl(&["--token", token, "get", "pods"])
        .expect_ok("get pods with the issued token");
    let err = c
        .kubectl(&["--token", token, "delete", "pod", "x"])
        .expect_err("delete with the issued token");
    assert!(err.contains("cannot delete resource \"pods\""), "{err}");

    // `auth can-i` (SelfSubjectAccessReview) as the token's user.
    let can = |args: &[&str]| {
        let r = c.kubectl(args);
        (r.ok, r.stdout.trim().to_string())
    };
    assert_eq!(
        can(&["--token", token, "auth", "can-i", "list", "pods"]),
        (true, "yes".to_string())
    );
    assert_eq!(
        can(&["--token", token, "auth", "can-i", "list", "secrets"]),
        (false, "no".to_string())
    );

    // `auth whoami` (SelfSubjectReview).
    let who = c
        .kubectl(&["--token", sa1, "auth", "whoami", "-o", "json"])
        .expect_ok("auth whoami");
    let who: Value = serde_json::from_str(&who).expect("json");
    assert_eq!(
        who["status"]["userInfo"]["username"],
        "system:serviceaccount:default:sa1"
    );

    // `--as`: the admin may impersonate; the request then runs as sa1.
    let as_sa1 = "--as=system:serviceaccount:default:sa1";
    assert_eq!(
        can(&["auth", "can-i", "get", "pods", as_sa1]),
        (true, "yes".to_string())
    );
    assert_eq!(
        can(&["auth", "can-i", "get", "secrets", as_sa1]),
        (false, "no".to_string())
    );
    let err = c
        .kubectl(&["get", "secrets", as_sa1])
        .expect_err("get secrets as the impersonated sa1");
    assert!(
        err.contains("User \"system:serviceaccount:default:sa1\" cannot list"),
        "{err}"
    );
    // sa1 itself may not impersonate anyone.
    let err = c
        .kubectl(&["--token", sa1, "get", "pods", "--as=alice"])
        .expect_err("sa1 impersonating alice");
    assert!(
        err.contains(
            "users \"alice\" is forbidden: User \"system:serviceaccount:default:sa1\" cannot impersonate resource \"users\""
        ),
        "{err}"
    );
}

fn create_json(c: &Cluster, args: &[&str], yaml: &str) -> Value {
    let mut a = vec!["create", "-o", "json", "-f", "-"];
    a.extend_from_slice(args);
    let out = c.kubectl_stdin(&a, yaml).expect_ok(yaml);
    serde_json::from_str(&out).expect("kubectl printed JSON")
}

#[test]
fn review_apis_are_evaluated_with_the_authenticator_and_rbac_and_not_stored() {
    let c = authorizing();
    pod_reader(&c);
    let sa_uid = c.get_json(&["serviceaccount", "sa1"])["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string();
    let token = c
        .kubectl(&["create", "token", "sa1", "--audience=aud1"])
        .expect_ok("create token");
    let review = |token: &str, audiences: &str| {
        format!(
            "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec:\n  token: {token}\n  audiences: {audiences}\n"
        )
    };

    let tr = create_json(&c, &[], &review(token.trim(), "[aud1, aud2]"));
    assert_eq!(tr["status"]["authenticated"], true, "{tr}");
    assert_eq!(
        tr["status"]["user"]["username"],
        "system:serviceaccount:default:sa1"
    );
    assert_eq!(tr["status"]["user"]["uid"], sa_uid.as_str());
    assert_eq!(
        tr["status"]["user"]["groups"],
        serde_json::json!([
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ])
    );
    assert_eq!(tr["status"]["audiences"], serde_json::json!(["aud1"]));
    let tr = create_json(&c, &[], &review(token.trim(), "[other]"));
    assert_eq!(tr["status"].get("authenticated"), None, "{tr}");
    assert!(tr["status"]["error"].is_string(), "{tr}");
    let tr = create_json(&c, &[], &review("sim-sa:default:sa1x", "[]"));
    assert_eq!(tr["status"]["authenticated"], true, "{tr}");
    assert_eq!(tr["status"]["user"].get("uid"), None, "no such account");
    let tr = create_json(&c, &[], &review("forged.jwt.token", "[]"));
    assert_eq!(tr["status"].get("authenticated"), None, "{tr}");

    let sar = |kind: &str, verb: &str, resource: &str| {
        format!(
            "apiVersion: authorization.k8s.io/v1\nkind: {kind}\nmetadata:\n  namespace: default\nspec:\n  user: system:serviceaccount:default:sa1\n  resourceAttributes:\n    namespace: default\n    verb: {verb}\n    resource: {resource}\n"
        )
    };
    let out = create_json(&c, &[], &sar("SubjectAccessReview", "get", "pods"));
    assert_eq!(out["status"]["allowed"], true, "{out}");
    assert_eq!(
        out["status"]["reason"],
        "RBAC: allowed by RoleBinding \"rb1/default\" of Role \"pods\" to ServiceAccount \"sa1/default\""
    );
    let out = create_json(&c, &[], &sar("SubjectAccessReview", "delete", "pods"));
    assert_eq!(out["status"]["allowed"], false, "{out}");
    let out = create_json(&c, &[], &sar("LocalSubjectAccessReview", "list", "pods"));
    assert_eq!(out["kind"], "LocalSubjectAccessReview");
    assert_eq!(out["status"]["allowed"], true, "{out}");
    let err = c
        .kubectl_stdin(
            &["create", "-f", "-"],
            "apiVersion: authorization.k8s.io/v1\nkind: SubjectAccessReview\nspec:\n  resourceAttributes:\n    verb: get\n    resource: pods\n",
        )
        .expect_err("a SubjectAccessReview without user or groups");
    assert!(
        err.contains(
            "spec.user: Invalid value: \"\": at least one of user or group must be specified"
        ),
        "{err}"
    );

    // Never stored: the resources only take create.
    let err = c
        .kubectl(&[
            "get",
            "--raw",
            "/apis/authentication.k8s.io/v1/tokenreviews",
        ])
        .expect_err("list tokenreviews");
    assert!(
        err.contains("MethodNotAllowed") || err.contains("not allowed"),
        "{err}"
    );

    // Creating reviews is itself authorized: sa1 may not, until bound to system:auth-delegator.
    // (`--validate=false`: for kinds without a PATCH operation kubectl's validation lists CRDs,
    // which sa1 may not either, as against a real apiserver.)
    let as_sa1 = ["--validate=false", "--token", "sim-sa:default:sa1"];
    let err = c
        .kubectl_stdin(
            &["create", "-f", "-", as_sa1[0], as_sa1[1], as_sa1[2]],
            &review("sim-admin", "[]"),
        )
        .expect_err("sa1 creates a TokenReview");
    assert!(
        err.contains("cannot create resource \"tokenreviews\""),
        "{err}"
    );
    c.kubectl(&[
        "create",
        "clusterrolebinding",
        "delegate",
        "--clusterrole=system:auth-delegator",
        "--serviceaccount=default:sa1",
    ])
    .expect_ok("bind system:auth-delegator");
    let tr = create_json(&c, &as_sa1, &review("sim-admin", "[]"));
    assert_eq!(tr["status"]["user"]["username"], "kubernetes-admin", "{tr}");
}

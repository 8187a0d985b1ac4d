//! API behaviours of a real kube-apiserver that kubectl exposes, checked with the real kubectl
//! against kube-sim: field selectors (supported labels, typed zero values), ...

#[path = "fixtures/client_harness.rs"]
mod harness;

use harness::Cluster;

fn names(out: &str) -> Vec<&str> {
    let mut v: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    v.sort();
    v
}

/// `kubectl get RESOURCE --field-selector SELECTOR -o name`, which must succeed.
fn selected(c: &Cluster, resource: &str, selector: &str) -> String {
    c.kubectl(&["get", resource, "--field-selector", selector, "-o", "name"])
        .expect_ok(&format!("get {resource} --field-selector {selector}"))
}

#[test]
fn field_selectors_use_typed_defaults_and_refuse_unsupported_labels() {
    let c = Cluster::start();
    // Nodes never cordoned have no spec.unschedulable in their JSON: it is "false".
    let out = selected(&c, "nodes", "spec.unschedulable=false");
    let all = names(&out);
    assert_eq!(all.len(), 2, "{out}");
    let first = all[0].trim_start_matches("node/").to_string();
    c.kubectl(&["cordon", &first]).expect_ok("cordon");
    let out = selected(&c, "nodes", "spec.unschedulable=false");
    assert_eq!(names(&out), vec![all[1]], "{out}");
    let out = selected(&c, "nodes", "spec.unschedulable=true");
    assert_eq!(names(&out), vec![all[0]], "{out}");

    // A label the resource does not support: 400 with the apiserver's message.
    c.kubectl(&["create", "configmap", "c1", "--from-literal=foo=bar"])
        .expect_ok("create configmap");
    let err = c
        .kubectl(&["get", "configmaps", "--field-selector", "data.foo=bar"])
        .expect_err("unsupported field label");
    assert!(
        err.contains(
            "\"data.foo\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        ),
        "{err}"
    );
    assert!(err.contains("BadRequest"), "{err}");
    let err = c
        .kubectl(&["get", "nodes", "--field-selector", "metadata.namespace=x"])
        .expect_err("nodes have no metadata.namespace label");
    assert!(
        err.contains("field label not supported: metadata.namespace"),
        "{err}"
    );
    let err = c
        .kubectl(&["get", "jobs", "--field-selector", "status.succeeded=1"])
        .expect_err("jobs select on status.successful");
    assert!(
        err.contains("field label \"status.succeeded\" not supported for batchv1.Job"),
        "{err}"
    );
    // Supported labels still select: metadata.name on any resource, spec.hostNetwork on pods.
    let out = selected(&c, "configmaps", "metadata.name=c1");
    assert_eq!(names(&out), vec!["configmap/c1"]);
    c.kubectl(&["run", "p1", "--image=img:1"])
        .expect_ok("run pod");
    let out = selected(
        &c,
        "pods",
        "spec.hostNetwork=false,spec.restartPolicy=Always",
    );
    assert_eq!(names(&out), vec!["pod/p1"]);
    // A watch refuses the same labels.
    let err = c
        .kubectl(&[
            "get",
            "configmaps",
            "--watch",
            "--field-selector",
            "data.foo=bar",
        ])
        .expect_err("watch with unsupported label");
    assert!(err.contains("is not a known field selector"), "{err}");
}

/// A service account `dev` in `default` that may manage Roles and RoleBindings and read
/// ConfigMaps there, nothing else.
fn role_manager(c: &Cluster) {
    for args in [
        vec!["create", "serviceaccount", "dev"],
        vec![
            "create",
            "role",
            "rbac-admin",
            "--verb=get,list,create,update,patch,delete",
            "--resource=roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io",
        ],
        vec![
            "create",
            "role",
            "cm-reader",
            "--verb=get,list",
            "--resource=configmaps",
        ],
        vec![
            "create",
            "role",
            "secret-reader",
            "--verb=get,list",
            "--resource=secrets",
        ],
        vec![
            "create",
            "rolebinding",
            "dev-rbac",
            "--role=rbac-admin",
            "--serviceaccount=default:dev",
        ],
        vec![
            "create",
            "rolebinding",
            "dev-cm",
            "--role=cm-reader",
            "--serviceaccount=default:dev",
        ],
    ] {
        c.kubectl(&args).expect_ok(&args.join(" "));
    }
}

#[test]
fn rbac_writes_cannot_grant_what_the_writer_does_not_hold() {
    let c = Cluster::start_with(kube_sim::SimConfig {
        authorize: true,
        dataplane: false,
        ..kube_sim::SimConfig::default()
    });
    role_manager(&c);
    let dev = ["--token", "sim-sa:default:dev"];
    let as_dev = |args: &[&str]| {
        let mut a = dev.to_vec();
        a.extend_from_slice(args);
        c.kubectl(&a)
    };
    // Granting a subset of what dev holds is fine.
    as_dev(&[
        "create",
        "role",
        "r-ok",
        "--verb=get",
        "--resource=configmaps",
    ])
    .expect_ok("a role within dev's rights");
    // Secrets and `delete` on configmaps are not dev's to give.
    let err = as_dev(&[
        "create",
        "role",
        "r-more",
        "--verb=get,delete",
        "--resource=configmaps,secrets",
    ])
    .expect_err("an escalating role");
    assert!(
        err.contains("roles.rbac.authorization.k8s.io \"r-more\" is forbidden: user \"system:serviceaccount:default:dev\" (groups=[\"system:serviceaccounts\" \"system:serviceaccounts:default\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:"),
        "{err}"
    );
    assert!(
        err.contains("{APIGroups:[\"\"], Resources:[\"configmaps\"], Verbs:[\"delete\"]}")
            && err.contains(
                "{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"delete\"]}"
            ),
        "{err}"
    );
    // Updating an allowed role into an escalating one is refused the same way.
    let err = as_dev(&[
        "patch",
        "role",
        "r-ok",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/rules/0/verbs/-","value":"delete"}]"#,
    ])
    .expect_err("an escalating update");
    assert!(
        err.contains("is attempting to grant RBAC permissions not currently held"),
        "{err}"
    );
    // Binding a role dev holds is fine; binding secret-reader is not.
    as_dev(&[
        "create",
        "rolebinding",
        "b-ok",
        "--role=cm-reader",
        "--serviceaccount=default:default",
    ])
    .expect_ok("binding a role dev holds");
    let err = as_dev(&[
        "create",
        "rolebinding",
        "b-more",
        "--role=secret-reader",
        "--serviceaccount=default:default",
    ])
    .expect_err("binding a role dev does not hold");
    assert!(
        err.contains("rolebindings.rbac.authorization.k8s.io \"b-more\" is forbidden: user \"system:serviceaccount:default:dev\"")
            && err.contains("{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"list\"]}"),
        "{err}"
    );
    // `bind` on that role, or `escalate` on roles, lifts the check.
    for args in [
        vec![
            "create",
            "role",
            "binder",
            "--verb=bind,escalate",
            "--resource=roles.rbac.authorization.k8s.io",
        ],
        vec![
            "create",
            "rolebinding",
            "dev-binder",
            "--role=binder",
            "--serviceaccount=default:dev",
        ],
    ] {
        c.kubectl(&args).expect_ok(&args.join(" "));
    }
    as_dev(&[
        "create",
        "rolebinding",
        "b-more",
        "--role=secret-reader",
        "--serviceaccount=default:default",
    ])
    .expect_ok("binding with bind");
    as_dev(&[
        "create",
        "role",
        "r-more",
        "--verb=get,delete",
        "--resource=configmaps,secrets",
    ])
    .expect_ok("a role with escalate");
}

#[test]
fn wire_order_delete_answers_and_name_lengths_are_the_apiservers() {
    let c = Cluster::start_with(kube_sim::SimConfig {
        dataplane: false,
        ..kube_sim::SimConfig::default()
    });
    // A body whose keys come in an odd order is stored and served in Go struct order.
    let body = c.write(
        "cm.json",
        r#"{"data":{"b":"1","a":"2"},"metadata":{"labels":{"z":"1","a":"2"},"name":"c1"},"kind":"ConfigMap","apiVersion":"v1"}"#,
    );
    let created = c
        .kubectl(&[
            "create",
            "--raw",
            "/api/v1/namespaces/default/configmaps",
            "-f",
            body.to_str().unwrap(),
        ])
        .expect_ok("create --raw");
    assert!(
        created.starts_with(
            r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"c1","namespace":"default","uid":"#
        ),
        "{created}"
    );
    let got = c
        .kubectl(&["get", "--raw", "/api/v1/namespaces/default/configmaps/c1"])
        .expect_ok("get --raw");
    assert!(got.contains(r#""labels":{"a":"2","z":"1"}"#), "{got}");
    assert!(got.contains(r#""data":{"a":"2","b":"1"}"#), "{got}");
    let meta = got.find(r#""metadata""#).unwrap();
    let data = got.find(r#""data""#).unwrap();
    assert!(meta < data, "{got}");

    // A ConfigMap removed at once answers a Status; a Pod answers the Pod.
    let out = c
        .kubectl(&[
            "delete",
            "--raw",
            "/api/v1/namespaces/default/configmaps/c1",
        ])
        .expect_ok("delete --raw");
    let status: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(status["kind"], "Status", "{out}");
    assert_eq!(status["status"], "Success");
    assert_eq!(status["details"]["name"], "c1");
    assert_eq!(status["details"]["kind"], "configmaps");
    assert!(status["details"]["uid"].is_string(), "{out}");
    c.kubectl(&["create", "serviceaccount", "sa1"])
        .expect_ok("create sa");
    let out = c
        .kubectl(&[
            "delete",
            "--raw",
            "/api/v1/namespaces/default/serviceaccounts/sa1",
        ])
        .expect_ok("delete sa --raw");
    assert!(out.starts_with(r#"{"kind":"ServiceAccount""#), "{out}");
    // With a finalizer pending the object is answered, deletionTimestamp set.
    c.kubectl(&["create", "configmap", "c2"]).expect_ok("c2");
    c.kubectl(&[
        "patch",
        "configmap",
        "c2",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ])
    .expect_ok("finalizer");
    let out = c
        .kubectl(&[
            "delete",
            "--raw",
            "/api/v1/namespaces/default/configmaps/c2",
        ])
        .expect_ok("delete c2 --raw");
    assert!(out.starts_with(r#"{"kind":"ConfigMap""#), "{out}");
    assert!(out.contains("deletionTimestamp"), "{out}");

    // Names: the length message for a 254-character name, both messages when both fail.
    let long = "a".repeat(254);
    let err = c
        .kubectl(&["create", "configmap", &long])
        .expect_err("254 characters");
    assert!(
        err.contains(&format!(
            "ConfigMap \"{long}\" is invalid: metadata.name: Invalid value: \"{long}\": must be no more than 253 characters"
        )),
        "{err}"
    );
    c.kubectl(&["create", "configmap", &"a".repeat(253)])
        .expect_ok("253 characters");
    let err = c
        .kubectl(&["create", "namespace", &"N".repeat(64)])
        .expect_err("long bad namespace");
    assert!(
        err.contains("must be no more than 63 characters")
            && err.contains("a lowercase RFC 1123 label must consist of"),
        "{err}"
    );
}

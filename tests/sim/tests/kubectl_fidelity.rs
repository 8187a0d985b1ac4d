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

#[test]
fn pods_terminate_gracefully_and_logs_follow_until_the_container_ends() {
    let c = Cluster::start();
    let pod = |name: &str, run: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","annotations":{{
                "sim.kube-sim.io/log":"line1\n","sim.hypersync.io/run-seconds":"{run}"}}}},
               "spec":{{"restartPolicy":"Never","containers":[{{"name":"c","image":"img:1"}}]}}}}"#
        )
    };
    for (name, run) in [("p1", "600"), ("p2", "600")] {
        c.kubectl_stdin(&["create", "-f", "-"], &pod(name, run))
            .expect_ok("create pod");
    }
    let running = |name: &str| {
        c.kubectl(&[
            "wait",
            "--for=jsonpath={.status.phase}=Running",
            &format!("pod/{name}"),
            "--timeout=20s",
        ])
        .expect_ok("pod running");
    };
    running("p1");
    running("p2");

    // A bound, running pod is not removed by the DELETE: it is marked with its grace period
    // and the kubelet finishes it.
    let out = c
        .kubectl(&["delete", "--raw", "/api/v1/namespaces/default/pods/p1"])
        .expect_ok("delete --raw");
    let deleted: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(deleted["kind"], "Pod", "{out}");
    assert_eq!(
        deleted["metadata"]["deletionGracePeriodSeconds"], 30,
        "{out}"
    );
    assert!(
        deleted["metadata"]["deletionTimestamp"].is_string(),
        "{out}"
    );
    c.kubectl(&["wait", "--for=delete", "pod/p1", "--timeout=20s"])
        .expect_ok("the kubelet finishes the deletion");
    // --grace-period=0 --force removes it at once.
    c.kubectl(&["delete", "pod", "p2", "--grace-period=0", "--force"])
        .expect_ok("force delete");
    c.kubectl(&["get", "pod", "p2"]).expect_err("p2 is gone");

    // `logs -f` streams until the container ends, including output appended meanwhile.
    c.kubectl_stdin(&["create", "-f", "-"], &pod("logger", "3"))
        .expect_ok("create pod");
    running("logger");
    std::thread::scope(|s| {
        let follower = s.spawn(|| {
            let started = std::time::Instant::now();
            let out = c.kubectl(&["logs", "-f", "logger"]).expect_ok("logs -f");
            (out, started.elapsed())
        });
        std::thread::sleep(std::time::Duration::from_millis(700));
        c.kubectl(&[
            "annotate",
            "--overwrite",
            "pod",
            "logger",
            "sim.kube-sim.io/log=line1\nline2\n",
        ])
        .expect_ok("more output");
        let (out, took) = follower.join().expect("follower");
        assert_eq!(out, "line1\nline2\n");
        assert!(took >= std::time::Duration::from_secs(1), "{took:?}");
    });
    let out = c
        .kubectl(&["logs", "logger"])
        .expect_ok("logs after the end");
    assert_eq!(out, "line1\nline2\n");
}

#[test]
fn a_zero_replica_deployment_records_no_scaling_event() {
    let c = Cluster::start();
    c.kubectl(&[
        "create",
        "deployment",
        "zero",
        "--image=img:1",
        "--replicas=0",
    ])
    .expect_ok("create deployment");
    c.kubectl(&[
        "create",
        "deployment",
        "one",
        "--image=img:1",
        "--replicas=1",
    ])
    .expect_ok("create deployment");
    assert!(c.eventually(std::time::Duration::from_secs(20), || {
        let out = c
            .kubectl(&["get", "replicasets", "-o", "name"])
            .expect_ok("get rs");
        out.lines().count() == 2
    }));
    assert!(c.eventually(std::time::Duration::from_secs(20), || {
        let out = c
            .kubectl(&[
                "get",
                "events",
                "--field-selector",
                "reason=ScalingReplicaSet",
                "-o",
                "name",
            ])
            .expect_ok("get events");
        out.lines().count() == 1
    }));
    let out = c
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=zero",
            "-o",
            "jsonpath={.items[*].message}",
        ])
        .expect_ok("events of zero");
    assert!(!out.contains("Scaled up"), "{out}");
    let out = c
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=one",
            "-o",
            "jsonpath={.items[*].message}",
        ])
        .expect_ok("events of one");
    assert!(out.contains("from 0 to 1"), "{out}");
}

const WIDGET_CRD: &str = r#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
 "metadata":{"name":"widgets.example.com"},
 "spec":{"group":"example.com","scope":"Namespaced",
  "names":{"plural":"widgets","singular":"widget","kind":"Widget"},
  "versions":[{"name":"v1alpha1","served":true,"storage":true,
   "schema":{"openAPIV3Schema":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}}]}}"#;

#[test]
fn apiservices_and_component_statuses_are_served() {
    let c = Cluster::start_with(kube_sim::SimConfig {
        dataplane: false,
        ..kube_sim::SimConfig::default()
    });
    // ComponentStatus: read-only, Healthy, with the deprecation warning.
    let run = c.kubectl(&["get", "componentstatuses"]);
    let stderr = run.stderr.clone();
    let out = run.expect_ok("get cs");
    assert!(
        stderr.contains("Warning: v1 ComponentStatus is deprecated in v1.19+"),
        "{stderr}"
    );
    for name in ["scheduler", "controller-manager", "etcd-0"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {out}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[1..3], ["Healthy", "ok"], "{out}");
    }
    let err = c
        .kubectl(&["delete", "componentstatus", "scheduler"])
        .expect_err("read-only");
    assert!(
        err.contains("MethodNotAllowed") || err.contains("not allowed"),
        "{err}"
    );

    // One local, available APIService per served group/version, in discovery.
    let out = c
        .kubectl(&["get", "apiservices"])
        .expect_ok("get apiservices");
    let row = |name: &str, out: &str| -> Vec<String> {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} in {out}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(row("v1.", &out)[1..3], ["Local", "True"], "{out}");
    assert_eq!(row("v1.apps", &out)[1..3], ["Local", "True"], "{out}");
    assert_eq!(
        row("v1.apiregistration.k8s.io", &out)[1..3],
        ["Local", "True"]
    );
    let out = c
        .kubectl(&[
            "api-resources",
            "--api-group=apiregistration.k8s.io",
            "-o",
            "name",
        ])
        .expect_ok("api-resources");
    assert_eq!(out.trim(), "apiservices.apiregistration.k8s.io");
    let apps = c.get_json(&["apiservice", "v1.apps"]);
    assert_eq!(apps["spec"]["groupPriorityMinimum"], 17800);
    assert_eq!(
        apps["metadata"]["labels"]["kube-aggregator.kubernetes.io/automanaged"],
        "onstart"
    );
    // A CRD's group/version gets one while the CRD serves it.
    c.kubectl_stdin(&["apply", "-f", "-"], WIDGET_CRD)
        .expect_ok("apply crd");
    let w = c.get_json(&["apiservice", "v1alpha1.example.com"]);
    assert_eq!(w["spec"]["groupPriorityMinimum"], 1000);
    assert_eq!(w["spec"]["versionPriority"], 100);
    assert_eq!(w["status"]["conditions"][0]["reason"], "Local");
    c.kubectl(&["delete", "crd", "widgets.example.com"])
        .expect_ok("delete crd");
    assert!(c.eventually(std::time::Duration::from_secs(10), || {
        c.kubectl(&["get", "apiservice", "v1alpha1.example.com"])
            .stderr
            .contains("NotFound")
    }));
}

#[test]
fn apply_of_a_kind_list() {
    let c = Cluster::start();
    let list = r#"apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: l1
  data:
    a: "1"
- apiVersion: apps/v1
  kind: Deployment
  metadata:
    name: l2
  spec:
    replicas: 1
    selector:
      matchLabels: {app: l2}
    template:
      metadata:
        labels: {app: l2}
      spec:
        containers:
        - name: c
          image: img:1
"#;
    let out = c
        .kubectl_stdin(&["apply", "-f", "-"], list)
        .expect_ok("apply a List");
    assert!(
        out.contains("configmap/l1 created") && out.contains("deployment.apps/l2 created"),
        "{out}"
    );
    let out = c
        .kubectl_stdin(&["apply", "-f", "-"], &list.replace("a: \"1\"", "a: \"2\""))
        .expect_ok("re-apply a List");
    assert!(
        out.contains("configmap/l1 configured") && out.contains("deployment.apps/l2 unchanged"),
        "{out}"
    );
    assert_eq!(c.get_json(&["configmap", "l1"])["data"]["a"], "2");
    let out = c
        .kubectl_stdin(&["apply", "--server-side", "-f", "-"], list)
        .expect_ok("server-side apply of a List");
    assert!(out.contains("configmap/l1 serverside-applied"), "{out}");
}

fn csr_pem(cn: &str) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn certificate_signing_requests_validate_approve_and_sign() {
    let c = Cluster::start_with(kube_sim::SimConfig {
        dataplane: false,
        ..kube_sim::SimConfig::default()
    });
    let csr = |name: &str, request: &str, signer: &str| {
        format!(
            r#"{{"apiVersion":"certificates.k8s.io/v1","kind":"CertificateSigningRequest",
                "metadata":{{"name":"{name}"}},
                "spec":{{"request":"{request}","signerName":"{signer}","usages":["client auth"],
                         "expirationSeconds":86400}}}}"#
        )
    };
    c.kubectl_stdin(
        &["create", "-f", "-"],
        &csr(
            "alice",
            &b64(&csr_pem("alice")),
            "kubernetes.io/kube-apiserver-client",
        ),
    )
    .expect_ok("create csr");
    let got = c.get_json(&["csr", "alice"]);
    assert_eq!(got["spec"]["username"], "kubernetes-admin", "{got}");
    let out = c
        .kubectl(&[
            "get",
            "csr",
            "--field-selector",
            "spec.signerName=kubernetes.io/kube-apiserver-client",
            "-o",
            "name",
        ])
        .expect_ok("csr by signer");
    assert_eq!(
        out.trim(),
        "certificatesigningrequest.certificates.k8s.io/alice"
    );

    let out = c
        .kubectl(&["certificate", "approve", "alice"])
        .expect_ok("certificate approve");
    assert!(out.contains("approved"), "{out}");
    let got = c.get_json(&["csr", "alice"]);
    assert_eq!(got["status"]["conditions"][0]["type"], "Approved", "{got}");
    assert_eq!(got["status"]["conditions"][0]["reason"], "KubectlApprove");
    use base64::Engine;
    let cert = base64::engine::general_purpose::STANDARD
        .decode(
            got["status"]["certificate"]
                .as_str()
                .expect("certificate issued"),
        )
        .expect("base64");
    assert!(
        String::from_utf8_lossy(&cert).starts_with("-----BEGIN CERTIFICATE-----"),
        "{got}"
    );

    // A request that is not a PEM CSR, without signer, with an unknown usage.
    let bad = r#"{"apiVersion":"certificates.k8s.io/v1","kind":"CertificateSigningRequest",
        "metadata":{"name":"bad"},"spec":{"request":"aGk=","usages":["flying"]}}"#;
    let err = c
        .kubectl_stdin(&["create", "-f", "-"], bad)
        .expect_err("invalid csr");
    assert!(
        err.contains("spec.request: Invalid value: []byte{0x68, 0x69}: PEM block type must be CERTIFICATE REQUEST")
            && err.contains("spec.signerName: Required value")
            && err.contains("spec.usages[0]: Unsupported value: \"flying\""),
        "{err}"
    );
    // A custom signer's request is approved but left for its signer.
    c.kubectl_stdin(
        &["create", "-f", "-"],
        &csr("bob", &b64(&csr_pem("bob")), "example.com/custom"),
    )
    .expect_ok("create custom csr");
    c.kubectl(&["certificate", "approve", "bob"])
        .expect_ok("approve bob");
    let got = c.get_json(&["csr", "bob"]);
    assert!(got["status"].get("certificate").is_none(), "{got}");
}

#[test]
fn kubectl_debug_adds_ephemeral_containers() {
    let c = Cluster::start();
    c.kubectl(&["run", "app", "--image=img:1"]).expect_ok("run");
    c.kubectl(&[
        "wait",
        "--for=jsonpath={.status.phase}=Running",
        "pod/app",
        "--timeout=20s",
    ])
    .expect_ok("running");
    for dbg in ["dbg1", "dbg2"] {
        c.kubectl(&["debug", "app", "--image=busybox:1.36", "-c", dbg])
            .expect_ok("kubectl debug");
    }
    assert!(c.eventually(std::time::Duration::from_secs(10), || {
        let pod = c.get_json(&["pod", "app"]);
        pod["status"]["ephemeralContainerStatuses"]
            .as_array()
            .is_some_and(|s| s.len() == 2 && s.iter().all(|x| x["state"]["running"].is_object()))
    }));
    let pod = c.get_json(&["pod", "app"]);
    let names: Vec<&str> = pod["spec"]["ephemeralContainers"]
        .as_array()
        .expect("ephemeral containers")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["dbg1", "dbg2"]);
    // Existing ephemeral containers cannot be removed or changed, names stay unique.
    let err = c
        .kubectl(&[
            "patch",
            "pod",
            "app",
            "--subresource=ephemeralcontainers",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/spec/ephemeralContainers/0"}]"#,
        ])
        .expect_err("remove an ephemeral container");
    assert!(
        err.contains("spec.ephemeralContainers: Forbidden: existing ephemeral containers \"dbg1\" may not be removed"),
        "{err}"
    );
    let err = c
        .kubectl(&["debug", "app", "--image=busybox:1.36", "-c", "app"])
        .expect_err("a duplicate name");
    assert!(err.contains("Duplicate value: \"app\""), "{err}");
    // The main resource does not change them.
    c.kubectl(&[
        "patch",
        "pod",
        "app",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"x":"y"}}}"#,
    ])
    .expect_ok("label");
    assert_eq!(
        c.get_json(&["pod", "app"])["spec"]["ephemeralContainers"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

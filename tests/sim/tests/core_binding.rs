//! kube-sim through kube-rs: the `pods/binding` subresource (the scheduler's path) binds a pod in
//! one write that sets `spec.nodeName` and `PodScheduled=True`, refuses a bound, terminating or
//! mismatched pod with the apiserver's 409s, checks the Binding body, and is held to RBAC as
//! `create` on `pods/binding`.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, PostParams, WatchEvent, WatchParams};
use kube::{Client, Config};
use kube_sim::{Sim, SimConfig};
use serde_json::{Value, json};
use std::time::Duration;

fn client_for(sim: &Sim, token: &str) -> Client {
    let mut config = Config::new(sim.url().parse().expect("url"));
    config.root_cert = sim.ca_der().map(|ca| vec![ca.to_vec()]);
    config.auth_info.token = Some(token.to_string().into());
    Client::try_from(config).expect("client")
}

fn status(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn pod(name: &str, extra_meta: Value) -> Pod {
    let mut p = json!({"metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}});
    if let (Some(m), Some(x)) = (p["metadata"].as_object_mut(), extra_meta.as_object()) {
        m.extend(x.clone());
    }
    serde_json::from_value(p).expect("pod")
}

fn binding(name: &str, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
}

async fn bind(api: &Api<Pod>, name: &str, body: &Value) -> Result<Value, kube::Error> {
    api.create_subresource("binding", name, &PostParams::default(), body)
        .await
}

#[tokio::test]
async fn binding_sets_node_and_condition_in_one_write_and_refuses_a_bound_pod() {
    let sim = Sim::start(SimConfig {
        dataplane: false,
        authorize: true,
        ..SimConfig::default()
    })
    .await
    .expect("start sim");
    let admin = client_for(&sim, "sim-admin");
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let created = pods
        .create(&PostParams::default(), &pod("p", json!({})))
        .await
        .unwrap();
    // The scheduler's earlier verdict, which the binding replaces.
    let mut unschedulable = serde_json::to_value(&created).unwrap();
    unschedulable["status"] = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
        "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient cpu.",
        "lastProbeTime": null, "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
    let before = pods
        .replace_status(
            "p",
            &PostParams::default(),
            &serde_json::from_value::<Pod>(unschedulable).unwrap(),
        )
        .await
        .unwrap();
    let rv = before.metadata.resource_version.clone().unwrap();

    // RBAC: create on pods/binding, nothing else.
    let binder = client_for(&sim, "sim-sa:default:binder");
    let as_binder: Api<Pod> = Api::namespaced(binder, "default");
    let e = status(
        bind(&as_binder, "p", &binding("p", "node-1"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 403);
    assert_eq!(
        e.message,
        "pods \"p\" is forbidden: User \"system:serviceaccount:default:binder\" cannot create resource \"pods/binding\" in API group \"\" in the namespace \"default\""
    );
    let roles: Api<Role> = Api::namespaced(admin.clone(), "default");
    roles
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "binder"},
            "rules": [{"apiGroups": [""], "resources": ["pods/binding"], "verbs": ["create"]}]}))
            .unwrap(),
        )
        .await
        .unwrap();
    let rbs: Api<RoleBinding> = Api::namespaced(admin.clone(), "default");
    rbs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "binder"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "binder"},
        "subjects": [{"kind": "ServiceAccount", "name": "binder", "namespace": "default"}]}))
        .unwrap(),
    )
    .await
    .unwrap();

    // One MODIFIED event carries both the node and the condition.
    let mut watch = pods
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    let out = bind(&as_binder, "p", &binding("p", "node-1"))
        .await
        .unwrap();
    assert_eq!(out["kind"], "Status");
    assert_eq!(out["status"], "Success");
    let mut events = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(500), watch.next()).await {
        match ev.unwrap() {
            WatchEvent::Bookmark(_) => {}
            other => events.push(other),
        }
    }
    assert_eq!(events.len(), 1, "one write: {events:?}");
    let WatchEvent::Modified(bound) = &events[0] else {
        panic!("{:?}", events[0]);
    };
    let bound = serde_json::to_value(bound).unwrap();
    assert_eq!(bound["spec"]["nodeName"], "node-1");
    let conds = bound["status"]["conditions"].as_array().unwrap();
    assert_eq!(conds.len(), 1);
    assert_eq!(conds[0]["type"], "PodScheduled");
    assert_eq!(conds[0]["status"], "True");
    assert!(conds[0].get("reason").is_none() && conds[0].get("message").is_none());
    assert_ne!(conds[0]["lastTransitionTime"], "2026-01-01T00:00:00Z");
    assert_eq!(bound["status"]["phase"], "Pending");

    // A bound pod: 409 on pods/binding.
    let e = status(
        bind(&as_binder, "p", &binding("p", "node-2"))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        e.message,
        "Operation cannot be fulfilled on pods/binding \"p\": pod p is already assigned to node \"node-1\""
    );
    let still = pods.get("p").await.unwrap();
    assert_eq!(
        still.spec.unwrap().node_name.as_deref(),
        Some("node-1"),
        "the refused binding wrote nothing"
    );

    // A pod being deleted (held by a finalizer): 409 as well.
    pods.create(
        &PostParams::default(),
        &pod("going", json!({"finalizers": ["example.com/hold"]})),
    )
    .await
    .unwrap();
    pods.delete("going", &DeleteParams::default())
        .await
        .unwrap();
    let e = status(
        bind(&as_binder, "going", &binding("going", "node-1"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 409);
    assert_eq!(
        e.message,
        "Operation cannot be fulfilled on pods/binding \"going\": pod going is being deleted, cannot be assigned to a host"
    );

    // The uid precondition the scheduler sends; the Binding body's checks.
    pods.create(&PostParams::default(), &pod("q", json!({})))
        .await
        .unwrap();
    let mut wrong_uid = binding("q", "node-1");
    wrong_uid["metadata"]["uid"] = json!("not-the-uid");
    let e = status(bind(&as_binder, "q", &wrong_uid).await.unwrap_err());
    assert_eq!(e.code, 409);
    assert!(
        e.message.starts_with(
            "Operation cannot be fulfilled on pods \"q\": Precondition failed: UID in precondition: not-the-uid, UID in object meta: "
        ),
        "{}",
        e.message
    );
    let e = status(
        bind(&as_binder, "q", &binding("other", "node-1"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (400, "name in URL does not match name in Binding object")
    );
    let e = status(
        bind(
            &as_binder,
            "q",
            &json!({"metadata": {"name": "q"}, "target": {}}),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (500, "target.name: Required value")
    );
    let e = status(
        bind(&as_binder, "missing", &binding("missing", "node-1"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "pods \"missing\" not found")
    );
    let q = pods.get("q").await.unwrap();
    assert!(q.spec.unwrap().node_name.is_none());
    sim.shutdown().await;
}

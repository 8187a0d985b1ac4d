//! kube-sim through kube-rs: CRD validation, defaulting, pruning and CEL rules (with oldSelf),
//! field validation modes, CRD scale subresource, server-side apply ownership, RBAC with tokens.

use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams, ValidationDirective,
};
use kube::core::GroupVersionKind;
use kube::{Client, Config};
use kube_sim::{Sim, SimConfig};
use serde_json::json;

async fn start(authorize: bool) -> Sim {
    Sim::start(SimConfig {
        dataplane: false,
        authorize,
        ..SimConfig::default()
    })
    .await
    .expect("start sim")
}

fn client_for(sim: &Sim, token: Option<&str>) -> Client {
    let mut config = Config::new(sim.url().parse().expect("url"));
    config.root_cert = sim.ca_der().map(|ca| vec![ca.to_vec()]);
    if let Some(t) = token {
        config.auth_info.token = Some(t.to_string().into());
    }
    Client::try_from(config).expect("client")
}

fn status(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn install_widgets(client: &Client) -> Api<DynamicObject> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                "additionalPrinterColumns": [{"name": "Color", "type": "string", "jsonPath": ".spec.color"}],
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["size"],
                        "x-kubernetes-validations": [{"rule": "self.size == oldSelf.size", "message": "size is immutable"}],
                        "properties": {
                            "size": {"type": "integer", "minimum": 1},
                            "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                            "replicas": {"type": "integer"}}},
                    "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}}}}]}
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    Api::namespaced_with(client.clone(), "default", &ar)
}

fn widget(name: &str, spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}))
        .unwrap()
}

#[tokio::test]
async fn crd_objects_are_defaulted_pruned_and_validated() {
    let sim = start(false).await;
    let client = client_for(&sim, None);
    let widgets = install_widgets(&client).await;
    let w = widgets
        .create(
            &PostParams::default(),
            &widget("a", json!({"size": 2, "bogus": true})),
        )
        .await
        .unwrap();
    assert_eq!(w.data["spec"]["color"], "red", "default applied");
    assert!(
        w.data["spec"].get("bogus").is_none(),
        "unknown field pruned"
    );

    let e = status(
        widgets
            .create(
                &PostParams::default(),
                &widget("b", json!({"size": 0, "color": "green"})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        e.message
            .starts_with("Widget.example.com \"b\" is invalid: "),
        "{}",
        e.message
    );
    assert!(
        e.message
            .contains("spec.color: Unsupported value: \"green\""),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("spec.size: Invalid value: 0"),
        "{}",
        e.message
    );

    let e = status(
        widgets
            .create(&PostParams::default(), &widget("c", json!({})))
            .await
            .unwrap_err(),
    );
    assert!(
        e.message.contains("spec.size: Required value"),
        "{}",
        e.message
    );

    // Transition rule with oldSelf.
    let e = status(
        widgets
            .patch(
                "a",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"size": 3}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(e.message.contains("size is immutable"), "{}", e.message);
    widgets
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"color": "blue"}})),
        )
        .await
        .unwrap();

    // Strict field validation refuses unknown fields.
    let strict = PatchParams {
        field_validation: Some(ValidationDirective::Strict),
        ..Default::default()
    };
    let e = status(
        widgets
            .patch("a", &strict, &Patch::Merge(json!({"spec": {"bogus": 1}})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400);
    assert!(
        e.message.contains("unknown field \"spec.bogus\""),
        "{}",
        e.message
    );

    // Strategic merge patch is refused for custom resources.
    let e = status(
        widgets
            .patch(
                "a",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"color": "red"}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 415);
    sim.shutdown().await;
}

#[tokio::test]
async fn crd_status_and_scale_subresources() {
    let sim = start(false).await;
    let client = client_for(&sim, None);
    let widgets = install_widgets(&client).await;
    widgets
        .create(
            &PostParams::default(),
            &widget("s", json!({"size": 1, "replicas": 2})),
        )
        .await
        .unwrap();
    let w = widgets
        .patch_status(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(w.data["status"]["replicas"], 2);
    assert_eq!(w.metadata.generation, Some(1));
    let scale = widgets.get_scale("s").await.unwrap();
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(2));
    assert_eq!(scale.status.map(|s| s.replicas), Some(2));
    widgets
        .patch_scale(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    let w = widgets.get("s").await.unwrap();
    assert_eq!(w.data["spec"]["replicas"], 4);
    assert_eq!(w.metadata.generation, Some(2));
    sim.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_tracks_owners_removes_fields_and_reports_conflicts() {
    let sim = start(false).await;
    let client = client_for(&sim, None);
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let a = PatchParams::apply("alpha");
    let cm = |data: serde_json::Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": data});
    let first = cms
        .patch("ssa", &a, &Patch::Apply(cm(json!({"x": "1", "y": "2"}))))
        .await
        .unwrap();
    let mf = first.metadata.managed_fields.clone().unwrap_or_default();
    assert!(
        mf.iter()
            .any(|m| m.manager.as_deref() == Some("alpha")
                && m.operation.as_deref() == Some("Apply"))
    );
    // Re-applying the same config is a no-op (no new resourceVersion).
    let again = cms
        .patch("ssa", &a, &Patch::Apply(cm(json!({"x": "1", "y": "2"}))))
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        first.metadata.resource_version
    );
    // Dropping a field from the applied config removes it.
    let dropped = cms
        .patch("ssa", &a, &Patch::Apply(cm(json!({"x": "1"}))))
        .await
        .unwrap();
    assert_eq!(dropped.data.clone().unwrap_or_default().get("y"), None);
    // Another manager changing an owned field conflicts, unless forced.
    let b = PatchParams::apply("beta");
    let e = status(
        cms.patch("ssa", &b, &Patch::Apply(cm(json!({"x": "9"}))))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        e.message,
        "Apply failed with 1 conflict: conflict with \"alpha\": .data.x"
    );
    let forced = cms
        .patch(
            "ssa",
            &b.clone().force(),
            &Patch::Apply(cm(json!({"x": "9"}))),
        )
        .await
        .unwrap();
    assert_eq!(
        forced.data.unwrap_or_default().get("x").map(String::as_str),
        Some("9")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn rbac_with_service_account_tokens() {
    let sim = start(true).await;
    let anonymous = client_for(&sim, None);
    let cms: Api<ConfigMap> = Api::namespaced(anonymous, "default");
    assert_eq!(
        status(cms.list(&Default::default()).await.unwrap_err()).code,
        401
    );

    let admin = client_for(&sim, Some("sim-admin"));
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "default");
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "op"}})).unwrap(),
    )
    .await
    .unwrap();
    let tr = sas
        .create_token_request(
            "op",
            &PostParams::default(),
            &serde_json::from_value(json!({"spec": {"audiences": []}})).unwrap(),
        )
        .await
        .unwrap();
    let token = tr.status.unwrap().token;
    let op = client_for(&sim, Some(&token));
    let op_cms: Api<ConfigMap> = Api::namespaced(op, "default");
    let e = status(op_cms.list(&Default::default()).await.unwrap_err());
    assert_eq!(e.code, 403);
    assert_eq!(
        e.message,
        "configmaps is forbidden: User \"system:serviceaccount:default:op\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""
    );
    let roles: Api<Role> = Api::namespaced(admin.clone(), "default");
    roles
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "cm-reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]})).unwrap())
        .await
        .unwrap();
    let rbs: Api<RoleBinding> = Api::namespaced(admin, "default");
    rbs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "op-reads"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": "default"}]}))
        .unwrap(),
    )
    .await
    .unwrap();
    op_cms.list(&Default::default()).await.unwrap();
    let e = status(
        op_cms
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap(),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 403);
    sim.shutdown().await;
}

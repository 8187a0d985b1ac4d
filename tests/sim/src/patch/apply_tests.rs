//! Unit tests for server-side apply and Update ownership tracking with realistic objects.

use serde_json::{Value, json};

use super::*;

const T0: &str = "2026-01-01T00:00:00Z";
const T1: &str = "2026-01-01T00:01:00Z";
const T2: &str = "2026-01-01T00:02:00Z";

fn dep_hints() -> TypeHints {
    TypeHints::for_builtin("apps/v1", "Deployment")
}

fn nginx(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "nginx", "namespace": "default", "labels": {"app": "nginx"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": image, "ports": [{"containerPort": 80}]}]}
            }
        }
    })
}

fn apply(
    live: Option<&Value>,
    cfg: &Value,
    mgr: &str,
    force: bool,
    now: &str,
) -> Result<ApplyResult, ApplyConflict> {
    validate_apply(cfg, &dep_hints()).expect("valid configuration");
    server_side_apply(live, cfg, mgr, force, None, &dep_hints(), now)
}

fn push_container(cfg: &mut Value, container: Value) {
    if let Some(cs) = cfg["spec"]["template"]["spec"]["containers"].as_array_mut() {
        cs.push(container);
    }
}

fn entries(obj: &Value) -> Vec<Value> {
    obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn entry<'a>(obj: &'a Value, manager: &str) -> Option<&'a Value> {
    obj["metadata"]["managedFields"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["manager"] == manager))
}

fn owns(obj: &Value, manager: &str, path: &[&str]) -> bool {
    let Some(e) = entry(obj, manager) else {
        return false;
    };
    let mut cur = &e["fieldsV1"];
    for p in path {
        match cur.get(*p) {
            Some(next) => cur = next,
            None => return false,
        }
    }
    true
}

#[test]
fn create_if_absent_records_real_fields_v1_encoding() {
    let out = apply(None, &nginx(3, "nginx:1.25"), "kubectl", false, T0).expect("create");
    assert!(out.changed);
    assert_eq!(out.object["spec"]["replicas"], 3);
    let es = entries(&out.object);
    assert_eq!(es.len(), 1);
    assert_eq!(es[0]["manager"], "kubectl");
    assert_eq!(es[0]["operation"], "Apply");
    assert_eq!(es[0]["apiVersion"], "apps/v1");
    assert_eq!(es[0]["time"], T0);
    assert_eq!(es[0]["fieldsType"], "FieldsV1");
    assert!(es[0].get("subresource").is_none());
    let want = json!({
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                    ".": {}, "f:image": {}, "f:name": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                }}}
            }
        }
    });
    assert_eq!(es[0]["fieldsV1"], want);
    // key order of the entry matches the server's
    let keys: Vec<&String> = es[0]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    assert_eq!(
        keys,
        [
            "manager",
            "operation",
            "apiVersion",
            "time",
            "fieldsType",
            "fieldsV1"
        ]
    );
}

#[test]
fn reapplying_the_same_configuration_is_a_no_op() {
    let first = apply(None, &nginx(3, "nginx:1.25"), "kubectl", false, T0).expect("create");
    let again = apply(
        Some(&first.object),
        &nginx(3, "nginx:1.25"),
        "kubectl",
        false,
        T1,
    )
    .expect("reapply");
    assert!(!again.changed);
    assert_eq!(again.object, first.object);
    assert_eq!(
        entry(&again.object, "kubectl").map(|e| e["time"].clone()),
        Some(json!(T0))
    );
}

#[test]
fn conflict_without_force_names_manager_and_field() {
    let a = apply(None, &nginx(3, "nginx:1.25"), "alice", false, T0).expect("create");
    let err = apply(
        Some(&a.object),
        &json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "nginx", "namespace": "default"},
            "spec": {"replicas": 5}
        }),
        "bob",
        false,
        T1,
    )
    .expect_err("bob conflicts on replicas");
    assert_eq!(
        err.message(),
        "Apply failed with 1 conflict: conflict with \"alice\": .spec.replicas"
    );
    assert_eq!(
        err.conflicts,
        vec![("alice".to_string(), ".spec.replicas".to_string())]
    );
    assert_eq!(
        err.status_causes(),
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"alice\"", "field": ".spec.replicas"}])
    );
}

#[test]
fn same_value_is_shared_ownership_not_a_conflict() {
    let a = apply(None, &nginx(3, "nginx:1.25"), "alice", false, T0).expect("create");
    let b = apply(
        Some(&a.object),
        &json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "nginx", "namespace": "default"},
            "spec": {"replicas": 3}
        }),
        "bob",
        false,
        T1,
    )
    .expect("same value");
    assert!(owns(&b.object, "alice", &["f:spec", "f:replicas"]));
    assert!(owns(&b.object, "bob", &["f:spec", "f:replicas"]));
    // alice dropping replicas now leaves it in place: bob still owns it
    let mut cfg = nginx(3, "nginx:1.25");
    cfg["spec"]
        .as_object_mut()
        .map(|s| s.shift_remove("replicas"));
    let a2 = apply(Some(&b.object), &cfg, "alice", false, T2).expect("alice drops replicas");
    assert_eq!(a2.object["spec"]["replicas"], 3);
    assert!(!owns(&a2.object, "alice", &["f:spec", "f:replicas"]));
}

#[test]
fn force_moves_ownership() {
    let a = apply(None, &nginx(3, "nginx:1.25"), "alice", false, T0).expect("create");
    let b = apply(
        Some(&a.object),
        &json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "nginx", "namespace": "default"},
            "spec": {"replicas": 5}
        }),
        "bob",
        true,
        T1,
    )
    .expect("forced");
    assert_eq!(b.object["spec"]["replicas"], 5);
    assert!(owns(&b.object, "bob", &["f:spec", "f:replicas"]));
    assert!(!owns(&b.object, "alice", &["f:spec", "f:replicas"]));
    assert!(
        owns(&b.object, "alice", &["f:spec", "f:selector"]),
        "alice keeps the rest"
    );
    // alice re-applying her old value now conflicts with bob
    let err =
        apply(Some(&b.object), &nginx(3, "nginx:1.25"), "alice", false, T2).expect_err("conflict");
    assert_eq!(
        err.message(),
        "Apply failed with 1 conflict: conflict with \"bob\": .spec.replicas"
    );
}

#[test]
fn fields_a_manager_stops_applying_are_removed() {
    let mut cfg = nginx(2, "nginx:1.25");
    cfg["metadata"]["labels"]["team"] = json!("web");
    cfg["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]);
    push_container(&mut cfg, json!({"name": "sidecar", "image": "envoy:1"}));
    let first = apply(None, &cfg, "kubectl", false, T0).expect("create");

    let second = apply(
        Some(&first.object),
        &nginx(2, "nginx:1.25"),
        "kubectl",
        false,
        T1,
    )
    .expect("shrink");
    let obj = &second.object;
    assert_eq!(obj["metadata"]["labels"], json!({"app": "nginx"}));
    let cs = obj["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(cs.len(), 1, "sidecar removed: {cs:?}");
    assert!(
        cs[0].get("env").is_none(),
        "env removed entirely: {:?}",
        cs[0]
    );
    assert!(!owns(obj, "kubectl", &["f:metadata", "f:labels", "f:team"]));
    assert!(second.changed);
}

#[test]
fn removal_spares_fields_another_manager_owns() {
    let mut cfg = nginx(2, "nginx:1.25");
    cfg["metadata"]["annotations"] = json!({"note": "x"});
    let first = apply(None, &cfg, "kubectl", false, T0).expect("create");
    // another manager (a controller, Update) rewrites the annotation
    let mut edited = first.object.clone();
    edited["metadata"]["annotations"]["note"] = json!("y");
    track_update(
        Some(&first.object),
        &mut edited,
        "controller",
        "Update",
        None,
        &dep_hints(),
        T1,
    );
    assert!(owns(
        &edited,
        "controller",
        &["f:metadata", "f:annotations", "f:note"]
    ));
    assert!(!owns(
        &edited,
        "kubectl",
        &["f:metadata", "f:annotations", "f:note"]
    ));

    let second =
        apply(Some(&edited), &nginx(2, "nginx:1.25"), "kubectl", false, T2).expect("reapply");
    assert_eq!(
        second.object["metadata"]["annotations"],
        json!({"note": "y"})
    );
}

#[test]
fn update_takes_ownership_so_later_apply_conflicts() {
    // `kubectl create` (Update by "kubectl-create"), then a controller applies a new image.
    let mut created = nginx(1, "nginx:1.25");
    track_update(
        None,
        &mut created,
        "kubectl-create",
        "Update",
        None,
        &dep_hints(),
        T0,
    );
    let es = entries(&created);
    assert_eq!(es.len(), 1);
    assert_eq!(es[0]["operation"], "Update");
    assert_eq!(es[0]["manager"], "kubectl-create");
    // Update entries mark newly created maps and list items with "."
    assert_eq!(
        es[0]["fieldsV1"]["f:metadata"]["f:labels"],
        json!({".": {}, "f:app": {}})
    );
    assert!(
        es[0]["fieldsV1"]
            .get("f:metadata")
            .and_then(|m| m.get("."))
            .is_none()
    );
    assert!(
        es[0]["fieldsV1"]["f:metadata"].get("f:name").is_none(),
        "name is never managed"
    );

    let cfg = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "nginx", "namespace": "default"},
        "spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.26"}]}}}
    });
    let err = apply(Some(&created), &cfg, "rollout", false, T1).expect_err("conflict");
    assert_eq!(
        err.message(),
        "Apply failed with 1 conflict: conflict with \"kubectl-create\" using apps/v1: .spec.template.spec.containers[name=\"nginx\"].image"
    );
    assert_eq!(err.causes[0].operation, "Update");
}

#[test]
fn update_steals_fields_from_an_applier() {
    let a = apply(None, &nginx(3, "nginx:1.25"), "kubectl", false, T0).expect("create");
    let mut scaled = a.object.clone();
    scaled["spec"]["replicas"] = json!(7);
    track_update(
        Some(&a.object),
        &mut scaled,
        "hpa",
        "Update",
        None,
        &dep_hints(),
        T1,
    );
    assert!(owns(&scaled, "hpa", &["f:spec", "f:replicas"]));
    assert!(!owns(&scaled, "kubectl", &["f:spec", "f:replicas"]));
    assert_eq!(
        entry(&scaled, "hpa").map(|e| e["time"].clone()),
        Some(json!(T1))
    );
    assert_eq!(
        entry(&scaled, "kubectl").map(|e| e["time"].clone()),
        Some(json!(T0))
    );
    // Entries are sorted Apply before Update.
    let ops: Vec<Value> = entries(&scaled)
        .iter()
        .map(|e| e["operation"].clone())
        .collect();
    assert_eq!(ops, vec![json!("Apply"), json!("Update")]);

    let err =
        apply(Some(&scaled), &nginx(3, "nginx:1.25"), "kubectl", false, T2).expect_err("conflict");
    assert_eq!(
        err.message(),
        "Apply failed with 1 conflict: conflict with \"hpa\" using apps/v1: .spec.replicas"
    );
    // Omitting replicas instead keeps the HPA's value.
    let mut cfg = nginx(3, "nginx:1.25");
    cfg["spec"]
        .as_object_mut()
        .map(|s| s.shift_remove("replicas"));
    let ok = apply(Some(&scaled), &cfg, "kubectl", false, T2).expect("no conflict");
    assert_eq!(ok.object["spec"]["replicas"], 7);
}

#[test]
fn multiple_conflicts_message_groups_by_manager() {
    let a = apply(None, &nginx(3, "nginx:1.25"), "alice", false, T0).expect("create");
    let mut edited = a.object.clone();
    edited["metadata"]["labels"]["app"] = json!("web");
    track_update(
        Some(&a.object),
        &mut edited,
        "carol",
        "Update",
        None,
        &dep_hints(),
        T1,
    );
    let cfg = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "nginx", "namespace": "default", "labels": {"app": "api"}},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "nginx", "image": "x"}]}}}
    });
    let err = apply(Some(&edited), &cfg, "bob", false, T2).expect_err("conflicts");
    assert_eq!(
        err.message(),
        "Apply failed with 3 conflicts: conflicts with \"alice\":\n- .spec.replicas\n- .spec.template.spec.containers[name=\"nginx\"].image\nconflicts with \"carol\" using apps/v1:\n- .metadata.labels.app"
    );
}

#[test]
fn objects_without_managed_fields_belong_to_before_first_apply() {
    let live = nginx(2, "nginx:1.25");
    let err =
        apply(Some(&live), &nginx(4, "nginx:1.25"), "kubectl", false, T0).expect_err("conflict");
    assert_eq!(
        err.message(),
        "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: .spec.replicas"
    );
    let mut with_status = live.clone();
    with_status["status"] = json!({"replicas": 2});
    let ok = apply(
        Some(&with_status),
        &nginx(2, "nginx:1.25"),
        "kubectl",
        false,
        T0,
    )
    .expect("same values");
    let bfa = entry(&ok.object, "before-first-apply")
        .cloned()
        .unwrap_or_default();
    assert_eq!(bfa["operation"], "Update");
    assert!(
        bfa["fieldsV1"]["f:status"].get("f:replicas").is_some(),
        "owns status too"
    );
    assert!(bfa["fieldsV1"]["f:metadata"].get("f:name").is_none());
    assert!(entry(&ok.object, "kubectl").is_some());
}

#[test]
fn status_subresource_is_managed_separately() {
    let created = apply(None, &nginx(1, "nginx:1.25"), "kubectl", false, T0).expect("create");
    // status sent through the main resource is ignored (the kind has a status subresource)
    let mut with_status = nginx(1, "nginx:1.25");
    with_status["status"] = json!({"replicas": 9});
    let main = apply(Some(&created.object), &with_status, "kubectl", false, T1).expect("main");
    assert!(main.object.get("status").is_none());
    assert!(!main.changed);

    let status_cfg = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "nginx", "namespace": "default", "labels": {"hijack": "x"}},
        "spec": {"replicas": 100},
        "status": {"replicas": 1, "conditions": [{"type": "Available", "status": "True"}]}
    });
    let st = server_side_apply(
        Some(&main.object),
        &status_cfg,
        "deployment-controller",
        false,
        Some("status"),
        &dep_hints(),
        T2,
    )
    .expect("status apply");
    assert_eq!(
        st.object["spec"]["replicas"], 1,
        "spec untouched through status"
    );
    assert!(st.object["metadata"]["labels"].get("hijack").is_none());
    assert_eq!(st.object["status"]["replicas"], 1);
    let e = entry(&st.object, "deployment-controller")
        .cloned()
        .unwrap_or_default();
    assert_eq!(e["subresource"], "status");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:status": {"f:conditions": {"k:{\"type\":\"Available\"}": {".": {}, "f:status": {}, "f:type": {}}}, "f:replicas": {}}})
    );
}

#[test]
fn metadata_finalizers_and_owner_references_are_keyed() {
    let mut cfg = nginx(1, "nginx:1.25");
    cfg["metadata"]["finalizers"] = json!(["example.com/cleanup"]);
    cfg["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "u-1"}]);
    cfg["metadata"]["resourceVersion"] = json!("42");
    let out = apply(None, &cfg, "op", false, T0).expect("create");
    let fields = entry(&out.object, "op")
        .map(|e| e["fieldsV1"]["f:metadata"].clone())
        .unwrap_or_default();
    assert_eq!(
        fields["f:finalizers"],
        json!({"v:\"example.com/cleanup\"": {}})
    );
    assert_eq!(
        fields["f:ownerReferences"]["k:{\"uid\":\"u-1\"}"],
        json!({".": {}, "f:apiVersion": {}, "f:kind": {}, "f:name": {}, "f:uid": {}})
    );
    assert!(fields.get("f:resourceVersion").is_none());
    assert!(fields.get("f:name").is_none());

    // another applier adds a finalizer: the set merges
    let other = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "nginx", "namespace": "default", "finalizers": ["other.io/keep"]}});
    let merged = apply(Some(&out.object), &other, "other", false, T1).expect("set merge");
    assert_eq!(
        merged.object["metadata"]["finalizers"],
        json!(["example.com/cleanup", "other.io/keep"])
    );
}

#[test]
fn atomic_lists_and_structs_replace_and_conflict_as_a_whole() {
    let mut cfg = nginx(1, "nginx:1.25");
    cfg["spec"]["template"]["spec"]["tolerations"] = json!([{"key": "gpu", "operator": "Exists"}]);
    let a = apply(None, &cfg, "alice", false, T0).expect("create");
    let b_cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "nginx", "namespace": "default"},
        "spec": {"template": {"spec": {"tolerations": [{"key": "tpu", "operator": "Exists"}]}}}});
    let err = apply(Some(&a.object), &b_cfg, "bob", false, T1).expect_err("atomic list conflict");
    assert_eq!(
        err.message(),
        "Apply failed with 1 conflict: conflict with \"alice\": .spec.template.spec.tolerations"
    );
    let forced = apply(Some(&a.object), &b_cfg, "bob", true, T1).expect("forced");
    assert_eq!(
        forced.object["spec"]["template"]["spec"]["tolerations"],
        json!([{"key": "tpu", "operator": "Exists"}])
    );
}

#[test]
fn applied_null_removes_the_field_but_stays_owned() {
    let a = apply(None, &nginx(3, "nginx:1.25"), "kubectl", false, T0).expect("create");
    let mut cfg = nginx(3, "nginx:1.25");
    cfg["spec"]["replicas"] = Value::Null;
    let out = apply(Some(&a.object), &cfg, "kubectl", false, T1).expect("apply");
    assert!(out.object["spec"].get("replicas").is_none());
    assert!(owns(&out.object, "kubectl", &["f:spec", "f:replicas"]));
    assert_eq!(
        entry(&out.object, "kubectl").map(|e| e["time"].clone()),
        Some(json!(T1))
    );
}

#[test]
fn list_map_items_follow_applied_order_and_keep_foreign_items() {
    let mut cfg = nginx(1, "nginx:1.25");
    push_container(&mut cfg, json!({"name": "b", "image": "b"}));
    let a = apply(None, &cfg, "alice", false, T0).expect("create");
    let other = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "nginx", "namespace": "default"},
        "spec": {"template": {"spec": {"containers": [{"name": "injected", "image": "proxy"}]}}}});
    let b = apply(Some(&a.object), &other, "injector", false, T1).expect("second manager");
    let names: Vec<Value> = b.object["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|c| c.iter().map(|x| x["name"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(names, vec![json!("nginx"), json!("b"), json!("injected")]);
    // alice re-applies only nginx: "b" goes, the injected container stays
    let c = apply(Some(&b.object), &nginx(1, "nginx:1.25"), "alice", false, T2).expect("shrink");
    let names: Vec<Value> = c.object["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|c| c.iter().map(|x| x["name"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(names, vec![json!("nginx"), json!("injected")]);
}

fn model_hints() -> TypeHints {
    TypeHints::from_openapi_schema(&json!({"openAPIV3Schema": {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {
                "endpoints": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "url": {"type": "string"}, "weight": {"type": "integer"}
                    }}
                },
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "args": {"type": "array", "items": {"type": "string"}}
            }},
            "status": {"type": "object"}
        }
    }}))
    .with_status_subresource(true)
}

fn model(endpoints: Value, tags: Value) -> Value {
    json!({
        "apiVersion": "hypersync.io/v1alpha1", "kind": "ModelEntry",
        "metadata": {"name": "llama", "namespace": "ml"},
        "spec": {"endpoints": endpoints, "tags": tags}
    })
}

#[test]
fn crd_list_type_map_and_set_merge_per_manager() {
    let h = model_hints();
    let a_cfg = model(
        json!([{"name": "a", "url": "http://a", "weight": 1}]),
        json!(["prod"]),
    );
    let a = server_side_apply(None, &a_cfg, "team-a", false, None, &h, T0).expect("create");
    let b_cfg = model(json!([{"name": "b", "url": "http://b"}]), json!(["gpu"]));
    let b =
        server_side_apply(Some(&a.object), &b_cfg, "team-b", false, None, &h, T1).expect("merge");
    assert_eq!(
        b.object["spec"]["endpoints"],
        json!([{"name": "a", "url": "http://a", "weight": 1}, {"name": "b", "url": "http://b"}])
    );
    assert_eq!(b.object["spec"]["tags"], json!(["prod", "gpu"]));
    assert_eq!(
        entry(&b.object, "team-b").map(|e| e["fieldsV1"].clone()),
        Some(json!({"f:spec": {
            "f:endpoints": {"k:{\"name\":\"b\"}": {".": {}, "f:name": {}, "f:url": {}}},
            "f:tags": {"v:\"gpu\"": {}}
        }}))
    );
    // team-a changing b's url conflicts
    let clash = model(json!([{"name": "b", "url": "http://evil"}]), json!([]));
    let err = server_side_apply(Some(&b.object), &clash, "team-a", false, None, &h, T2)
        .expect_err("conflict");
    assert_eq!(
        err.message(),
        "Apply failed with 1 conflict: conflict with \"team-b\": .spec.endpoints[name=\"b\"].url"
    );
    // team-a drops its endpoint and tag; team-b's survive
    let drop = json!({"apiVersion": "hypersync.io/v1alpha1", "kind": "ModelEntry",
        "metadata": {"name": "llama", "namespace": "ml"}, "spec": {}});
    let c = server_side_apply(Some(&b.object), &drop, "team-a", false, None, &h, T2).expect("drop");
    assert_eq!(
        c.object["spec"]["endpoints"],
        json!([{"name": "b", "url": "http://b"}])
    );
    assert_eq!(c.object["spec"]["tags"], json!(["gpu"]));
    assert!(
        entry(&c.object, "team-a").is_none(),
        "empty entries are dropped"
    );
}

#[test]
fn crd_atomic_list_is_replaced() {
    let h = model_hints();
    let mut a_cfg = model(json!([]), json!([]));
    a_cfg["spec"]["args"] = json!(["--a", "--b"]);
    let a = server_side_apply(None, &a_cfg, "m", false, None, &h, T0).expect("create");
    let mut b_cfg = a_cfg.clone();
    b_cfg["spec"]["args"] = json!(["--c"]);
    let b = server_side_apply(Some(&a.object), &b_cfg, "m", false, None, &h, T1).expect("update");
    assert_eq!(b.object["spec"]["args"], json!(["--c"]));
}

#[test]
fn validate_apply_rejects_what_the_server_rejects() {
    let h = dep_hints();
    let mut missing_key = nginx(1, "x");
    missing_key["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .map(|c| c.shift_remove("name"));
    let err = validate_apply(&missing_key, &h).expect_err("no name");
    assert_eq!(err.code(), 422);
    assert!(
        err.message().ends_with(".spec.template.spec.containers: element 0: associative list with keys has an element that omits key field \"name\" (and doesn't have default value)"),
        "{}",
        err.message()
    );
    let mut dup = nginx(1, "x");
    dup["spec"]["template"]["spec"]["containers"] = json!([{"name": "a"}, {"name": "a"}]);
    let err = validate_apply(&dup, &h).expect_err("duplicate");
    assert!(
        err.message()
            .ends_with("duplicate entries for key [name=\"a\"]"),
        "{}",
        err.message()
    );
    let mut mf = nginx(1, "x");
    mf["metadata"]["managedFields"] = json!([]);
    assert_eq!(
        validate_apply(&mf, &h).map_err(|e| e.message()),
        Err("metadata.managedFields must be nil".into())
    );
    // ports without protocol are fine: protocol has a default
    assert!(validate_apply(&nginx(1, "x"), &h).is_ok());
}

#[test]
fn track_update_honours_client_reset_of_managed_fields() {
    let a = apply(None, &nginx(3, "nginx:1.25"), "kubectl", false, T0).expect("create");
    let mut reset = a.object.clone();
    reset["metadata"]["managedFields"] = json!([{}]);
    track_update(
        Some(&a.object),
        &mut reset,
        "kubectl-edit",
        "Update",
        None,
        &dep_hints(),
        T1,
    );
    assert!(
        reset["metadata"].get("managedFields").is_none(),
        "{}",
        reset["metadata"]
    );

    // an unchanged write keeps entries and times as they were
    let mut same = a.object.clone();
    track_update(
        Some(&a.object),
        &mut same,
        "kubectl-edit",
        "Update",
        None,
        &dep_hints(),
        T1,
    );
    assert_eq!(same, a.object);
}

#[test]
fn track_update_on_status_subresource_records_subresource() {
    let a = apply(None, &nginx(1, "nginx:1.25"), "kubectl", false, T0).expect("create");
    let mut with_status = a.object.clone();
    with_status["status"] =
        json!({"readyReplicas": 1, "conditions": [{"type": "Available", "status": "True"}]});
    track_update(
        Some(&a.object),
        &mut with_status,
        "kube-controller-manager",
        "Update",
        Some("status"),
        &dep_hints(),
        T1,
    );
    let e = entry(&with_status, "kube-controller-manager")
        .cloned()
        .unwrap_or_default();
    assert_eq!(e["subresource"], "status");
    assert_eq!(e["operation"], "Update");
    assert!(
        e["fieldsV1"]["f:status"]["f:conditions"]
            .get("k:{\"type\":\"Available\"}")
            .is_some()
    );
    assert!(e["fieldsV1"].get("f:spec").is_none());
}

#[test]
fn pod_ports_use_container_port_and_protocol_keys() {
    let h = TypeHints::for_builtin("v1", "Pod");
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i",
            "ports": [{"containerPort": 53, "protocol": "UDP"}, {"containerPort": 53}],
            "env": [{"name": "X", "value": "1"}],
            "volumeMounts": [{"name": "v", "mountPath": "/v"}]}]}});
    validate_apply(&pod, &h).expect("UDP and TCP on 53 are distinct keys");
    let out = server_side_apply(None, &pod, "m", false, None, &h, T0).expect("create");
    let c = &entry(&out.object, "m").cloned().unwrap_or_default()["fieldsV1"]["f:spec"]["f:containers"]
        ["k:{\"name\":\"c\"}"];
    assert!(
        c["f:ports"]
            .get("k:{\"containerPort\":53,\"protocol\":\"UDP\"}")
            .is_some()
    );
    assert!(
        c["f:ports"]
            .get("k:{\"containerPort\":53,\"protocol\":\"TCP\"}")
            .is_some()
    );
    assert!(c["f:env"].get("k:{\"name\":\"X\"}").is_some());
    assert!(
        c["f:volumeMounts"]
            .get("k:{\"mountPath\":\"/v\"}")
            .is_some()
    );
}

#[test]
fn item_is_removed_unless_another_manager_owns_the_item_itself() {
    let mut cfg = nginx(1, "nginx:1.25");
    push_container(
        &mut cfg,
        json!({"name": "sidecar", "image": "envoy:1", "args": ["-v"]}),
    );
    let a = apply(None, &cfg, "kubectl", false, T0).expect("create");
    // `kubectl set image` (an Update) changes only the sidecar image: it owns
    // `k:{"name":"sidecar"}.f:image`, not the item.
    let mut set_image = a.object.clone();
    set_image["spec"]["template"]["spec"]["containers"][1]["image"] = json!("envoy:2");
    track_update(
        Some(&a.object),
        &mut set_image,
        "kubectl-set",
        "Update",
        None,
        &dep_hints(),
        T1,
    );
    let b = apply(
        Some(&set_image),
        &nginx(1, "nginx:1.25"),
        "kubectl",
        false,
        T2,
    )
    .expect("reapply");
    let cs = b.object["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(cs.len(), 1, "the sidecar item goes: {cs:?}");
    assert!(
        entry(&b.object, "kubectl-set").is_none(),
        "its only field went with it"
    );

    // An Update that created an item owns the item: then it stays.
    let mut added = a.object.clone();
    push_container(&mut added, json!({"name": "debug", "image": "busybox"}));
    track_update(
        Some(&a.object),
        &mut added,
        "kubectl-edit",
        "Update",
        None,
        &dep_hints(),
        T1,
    );
    let c = apply(Some(&added), &nginx(1, "nginx:1.25"), "kubectl", false, T2).expect("reapply");
    let names: Vec<Value> = c.object["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|c| c.iter().map(|x| x["name"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(names, vec![json!("nginx"), json!("debug")]);
}

#[test]
fn update_entries_mark_new_lists_and_structs_like_the_server() {
    let mut created = nginx(1, "nginx:1.25");
    created["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "A", "value": "1"}]);
    created["spec"]["template"]["spec"]["containers"][0]["resources"] =
        json!({"limits": {"cpu": "1"}});
    track_update(
        None,
        &mut created,
        "kubectl-create",
        "Update",
        None,
        &dep_hints(),
        T0,
    );
    let f = entry(&created, "kubectl-create")
        .map(|e| e["fieldsV1"].clone())
        .unwrap_or_default();
    let c = &f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"];
    assert_eq!(
        c,
        &json!({
            ".": {}, "f:env": {".": {}, "k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}}},
            "f:image": {}, "f:name": {},
            "f:ports": {".": {}, "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}},
            "f:resources": {".": {}, "f:limits": {".": {}, "f:cpu": {}}}
        })
    );
    assert!(
        f["f:spec"]["f:template"]["f:spec"]["f:containers"]
            .get(".")
            .is_none()
    );
    assert!(f["f:spec"].get(".").is_none());
    assert!(f["f:spec"]["f:template"].get(".").is_none());
    assert_eq!(f["f:spec"]["f:selector"], json!({}));
}

#[test]
fn merge_order_places_shared_items_where_the_configuration_puts_them() {
    let h = model_hints();
    let live = server_side_apply(
        None,
        &model(
            json!([{"name": "a"}, {"name": "x"}, {"name": "b"}, {"name": "c"}]),
            json!([]),
        ),
        "m1",
        false,
        None,
        &h,
        T0,
    )
    .expect("create");
    let out = server_side_apply(
        Some(&live.object),
        &model(
            json!([{"name": "c"}, {"name": "new"}, {"name": "a"}]),
            json!([]),
        ),
        "m2",
        false,
        None,
        &h,
        T1,
    )
    .expect("merge");
    let names: Vec<Value> = out.object["spec"]["endpoints"]
        .as_array()
        .map(|c| c.iter().map(|x| x["name"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(
        names,
        vec![json!("x"), json!("b"), json!("c"), json!("new"), json!("a")]
    );
}

#[test]
fn kubectl_server_side_upgrade_takes_over_client_side_fields() {
    // `kubectl apply` (client-side) created the object: an Update entry plus the annotation.
    let mut created = nginx(2, "nginx:1.25");
    let last = format!("{}\n", nginx(2, "nginx:1.25"));
    created["metadata"]["annotations"] =
        json!({ "kubectl.kubernetes.io/last-applied-configuration": last });
    track_update(
        None,
        &mut created,
        "kubectl-client-side-apply",
        "Update",
        None,
        &dep_hints(),
        T0,
    );

    // `kubectl apply --server-side` with a new replica count: the annotation vouches for the
    // old value, so there is no conflict and the annotation follows the applied config.
    let out = apply(
        Some(&created),
        &nginx(4, "nginx:1.25"),
        "kubectl",
        false,
        T1,
    )
    .expect("upgrade");
    assert_eq!(out.object["spec"]["replicas"], 4);
    assert!(owns(&out.object, "kubectl", &["f:spec", "f:replicas"]));
    assert!(!owns(
        &out.object,
        "kubectl-client-side-apply",
        &["f:spec", "f:replicas"]
    ));
    let ann =
        out.object["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .unwrap_or_default()
            .to_string();
    let parsed: Value = serde_json::from_str(&ann).expect("annotation is JSON");
    assert_eq!(parsed["spec"]["replicas"], 4);
    assert!(ann.ends_with('\n'));

    // Another manager name gets the conflict.
    let err =
        apply(Some(&created), &nginx(4, "nginx:1.25"), "other", false, T1).expect_err("conflict");
    assert_eq!(
        err.message(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );

    // Fields changed since the last client-side apply are not vouched for.
    let mut drifted = created.clone();
    drifted["spec"]["replicas"] = json!(3);
    track_update(
        Some(&created),
        &mut drifted,
        "kubectl-edit",
        "Update",
        None,
        &dep_hints(),
        T1,
    );
    let err = apply(
        Some(&drifted),
        &nginx(4, "nginx:1.25"),
        "kubectl",
        false,
        T2,
    )
    .expect_err("conflict");
    assert_eq!(
        err.message(),
        "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1: .spec.replicas"
    );
}

#[test]
fn more_than_ten_update_managers_fold_into_ancient_changes() {
    let mut obj = nginx(1, "nginx:1.25");
    track_update(
        None,
        &mut obj,
        "creator",
        "Update",
        None,
        &dep_hints(),
        "2026-01-01T00:00:00Z",
    );
    for i in 0..11 {
        let before = obj.clone();
        obj["metadata"]["labels"][format!("l{i}")] = json!("v");
        let now = format!("2026-01-01T00:{:02}:00Z", i + 1);
        track_update(
            Some(&before),
            &mut obj,
            &format!("writer-{i:02}"),
            "Update",
            None,
            &dep_hints(),
            &now,
        );
    }
    let es = entries(&obj);
    assert_eq!(es.len(), 10, "{es:#?}");
    let ancient = entry(&obj, "ancient-changes").cloned().unwrap_or_default();
    assert_eq!(ancient["operation"], "Update");
    assert_eq!(ancient["apiVersion"], "apps/v1");
    // creator and writer-00 folded at the 12th entry, writer-01 at the 13th; the bucket
    // carries the time of the last entry merged into it
    assert_eq!(ancient["time"], "2026-01-01T00:02:00Z");
    assert!(entry(&obj, "writer-01").is_none());
    assert!(
        ancient["fieldsV1"]["f:metadata"]["f:labels"]
            .get("f:l1")
            .is_some()
    );
    assert!(ancient["fieldsV1"]["f:spec"].get("f:replicas").is_some());
    assert!(
        ancient["fieldsV1"]["f:metadata"]["f:labels"]
            .get("f:l0")
            .is_some()
    );
    assert!(entry(&obj, "creator").is_none());
    assert!(entry(&obj, "writer-00").is_none());
    assert!(entry(&obj, "writer-10").is_some());
}

/// Navigates `obj` along a field-set path (fields, list-map keys, set values).
fn lookup<'a>(obj: &'a Value, path: &[PathElement]) -> Option<&'a Value> {
    let mut cur = obj;
    for pe in path {
        cur = match pe {
            PathElement::Field(name) => cur.get(name)?,
            PathElement::Key(json) => {
                let Ok(Value::Object(keys)) = serde_json::from_str::<Value>(json) else {
                    return None;
                };
                cur.as_array()?
                    .iter()
                    .find(|item| keys.iter().all(|(k, v)| item.get(k) == Some(v)))?
            }
            PathElement::Value(json) => {
                let want: Value = serde_json::from_str(json).ok()?;
                cur.as_array()?.iter().find(|item| **item == want)?
            }
            PathElement::Index(i) => cur.as_array()?.get(*i)?,
        };
    }
    Some(cur)
}

fn random_widget(rng: &mut rand_chacha::ChaCha8Rng) -> Value {
    use rand::Rng;
    let mut endpoints = Vec::new();
    for name in ["a", "b", "c", "d"] {
        if rng.random_bool(0.5) {
            let mut ep = json!({"name": name});
            if rng.random_bool(0.7) {
                ep["url"] = json!(format!("http://{name}:{}", rng.random_range(0..3)));
            }
            if rng.random_bool(0.5) {
                ep["weight"] = json!(rng.random_range(0..3));
            }
            endpoints.push(ep);
        }
    }
    let tags: Vec<Value> = ["x", "y", "z"]
        .iter()
        .filter(|_| rng.random_bool(0.5))
        .map(|t| json!(t))
        .collect();
    let mut spec = json!({});
    if !endpoints.is_empty() || rng.random_bool(0.3) {
        spec["endpoints"] = Value::Array(endpoints);
    }
    if !tags.is_empty() || rng.random_bool(0.3) {
        spec["tags"] = Value::Array(tags);
    }
    if rng.random_bool(0.5) {
        spec["args"] = json!(["--v", rng.random_range(0..3).to_string()]);
    }
    if rng.random_bool(0.5) {
        spec["replicas"] = json!(rng.random_range(0..3));
    }
    let mut obj = json!({
        "apiVersion": "hypersync.io/v1alpha1", "kind": "ModelEntry",
        "metadata": {"name": "llama", "namespace": "ml"},
        "spec": spec
    });
    if rng.random_bool(0.4) {
        obj["metadata"]["labels"] = json!({format!("l{}", rng.random_range(0..3)): "v"});
    }
    obj
}

#[test]
fn randomized_apply_invariants() {
    use rand::{Rng, SeedableRng};
    let h = model_hints();
    let managers = ["m1", "m2", "m3"];
    for seed in 0..40u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut live: Option<Value> = None;
        for step in 0..8 {
            let manager = managers[rng.random_range(0..managers.len())];
            let cfg = random_widget(&mut rng);
            let force = rng.random_bool(0.5);
            let now = format!("2026-01-01T00:{step:02}:00Z");
            if rng.random_bool(0.2) {
                // an Update by a controller in between
                if let Some(old) = &live {
                    let mut new = old.clone();
                    new["spec"]["replicas"] = json!(rng.random_range(0..3));
                    track_update(Some(old), &mut new, "controller", "Update", None, &h, &now);
                    live = Some(new);
                }
            }
            validate_apply(&cfg, &h).expect("generated configs are valid");
            let out = match server_side_apply(live.as_ref(), &cfg, manager, force, None, &h, &now) {
                Ok(out) => out,
                Err(conflict) => {
                    assert!(!force, "seed {seed}: forced apply conflicted");
                    assert!(!conflict.causes.is_empty());
                    assert!(conflict.causes.iter().all(|c| c.manager != manager));
                    continue;
                }
            };
            let obj = out.object.clone();
            // 1. every applied leaf now has the applied value
            let mut applied = FieldSet::new();
            for p in FieldSet::from_fields_v1(
                &entry(&obj, manager)
                    .map(|e| e["fieldsV1"].clone())
                    .unwrap_or(json!({})),
            )
            .expect("own entry decodes")
            .paths()
            {
                applied.insert(&p);
                let in_obj = lookup(&obj, &p);
                let in_cfg = lookup(&cfg, &p);
                assert!(
                    in_obj.is_some(),
                    "seed {seed} step {step}: owned path missing: {p:?}"
                );
                if let (Some(a), Some(b)) = (in_obj, in_cfg)
                    && !a.is_object()
                {
                    assert_eq!(a, b, "seed {seed} step {step}: value differs at {p:?}");
                }
            }
            // 2. every entry's paths exist in the object
            for e in entries(&obj) {
                let set = FieldSet::from_fields_v1(&e["fieldsV1"]).expect("decodes");
                for p in set.paths() {
                    assert!(
                        lookup(&obj, &p).is_some(),
                        "seed {seed} step {step}: {} owns missing {p:?} in {obj}",
                        e["manager"]
                    );
                }
            }
            // 3. re-applying the same configuration converges: at most one more change (an
            //    applied empty list owns nothing, so the prune may drop a field the next merge
            //    puts back as `[]`, exactly as structured-merge-diff does), then none.
            let mut cur = obj.clone();
            let mut changes = 0;
            for round in 0..3 {
                let again = server_side_apply(
                    Some(&cur),
                    &cfg,
                    manager,
                    false,
                    None,
                    &h,
                    &format!("2026-01-02T00:0{round}:00Z"),
                )
                .expect("re-apply never conflicts");
                if again.changed {
                    changes += 1;
                }
                cur = again.object;
            }
            assert!(
                changes <= 1,
                "seed {seed} step {step}: re-apply keeps changing\ncfg {cfg}\nobj {obj}"
            );
            live = Some(obj);
        }
    }
}

#[test]
fn update_entries_for_custom_resources_mark_new_spec() {
    let h = model_hints();
    let mut created = model(json!([{"name": "a"}]), json!(["x"]));
    track_update(None, &mut created, "kubectl-create", "Update", None, &h, T0);
    let f = entry(&created, "kubectl-create")
        .map(|e| e["fieldsV1"].clone())
        .unwrap_or_default();
    assert_eq!(
        f,
        json!({"f:spec": {
            ".": {},
            "f:endpoints": {".": {}, "k:{\"name\":\"a\"}": {".": {}, "f:name": {}}},
            "f:tags": {".": {}, "v:\"x\"": {}}
        }})
    );
}

#[test]
fn apply_tolerates_duplicate_keys_in_the_live_list() {
    let a = apply(None, &nginx(1, "nginx:1.25"), "kubectl", false, T0).expect("create");
    // an Update leaves duplicate env names (the API allows it for Update)
    let mut dup = a.object.clone();
    dup["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "X", "value": "1"}, {"name": "X", "value": "2"}, {"name": "Y", "value": "3"}]);
    track_update(
        Some(&a.object),
        &mut dup,
        "editor",
        "Update",
        None,
        &dep_hints(),
        T1,
    );
    let mut cfg = nginx(1, "nginx:1.25");
    cfg["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "Z", "value": "9"}]);
    let out = apply(Some(&dup), &cfg, "kubectl", false, T2).expect("apply");
    let env = out.object["spec"]["template"]["spec"]["containers"][0]["env"].clone();
    assert_eq!(
        env,
        json!([{"name": "X", "value": "1"}, {"name": "X", "value": "2"}, {"name": "Y", "value": "3"}, {"name": "Z", "value": "9"}])
    );
}

#[test]
fn create_takes_the_configuration_as_a_merge_into_nothing_would() {
    // `fresh_owned` (a create's object, in place) against the merge of the configuration into an
    // empty object: nulls dropped in granular maps only, kept in list items and atomic maps,
    // key order unchanged (compared as text).
    let hints = TypeHints::for_builtin("v1", "Pod");
    let root = Some(&hints.root);
    let cfg = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "labels": {"z": "1", "gone": null, "a": "2"}, "annotations": null},
        "spec": {
            "nodeSelector": {"k": null, "b": "x"},
            "containers": [{"name": "c", "image": null, "env": [{"name": "E", "value": null}]}],
            "affinity": {"nodeAffinity": null, "podAffinity": {"x": null}},
            "zeta": null, "alpha": 1
        }
    });
    let merged = super::walk::merge(&json!({}), &cfg, root);
    let owned = super::walk::fresh_owned(cfg.clone(), root);
    assert_eq!(owned.to_string(), merged.to_string());
    assert!(owned["metadata"].get("annotations").is_none());
    assert!(owned["spec"]["containers"][0].get("image").is_some());

    // The whole apply-create: same object and managedFields as before the comparison was
    // skipped for creates (every field owned by the applier, nothing else).
    let out = apply(None, &nginx(2, "nginx:1"), "mgr", false, T0).expect("create");
    assert!(out.changed);
    let es = entries(&out.object);
    assert_eq!(es.len(), 1);
    assert_eq!(es[0]["manager"], "mgr");
    assert_eq!(es[0]["operation"], "Apply");
    assert!(owns(&out.object, "mgr", &["f:spec", "f:replicas"]));
    assert!(owns(
        &out.object,
        "mgr",
        &[
            "f:spec",
            "f:template",
            "f:spec",
            "f:containers",
            "k:{\"name\":\"nginx\"}",
            "f:image"
        ]
    ));
    assert!(!owns(&out.object, "mgr", &["f:metadata", "f:name"]));
}

#[test]
fn field_set_is_the_set_to_set_inserts() {
    use rand::SeedableRng;
    fn check(v: &Value, hints: &TypeHints) {
        let root = Some(&hints.root);
        let mut reference = FieldSet::new();
        super::walk::to_set(v, root, &mut Vec::new(), &mut reference);
        let built = super::walk::field_set(v, root);
        assert_eq!(built, reference, "{v}");
        assert_eq!(built.to_fields_v1(), reference.to_fields_v1(), "{v}");
    }
    let h = model_hints();
    for seed in 0..60u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        check(&random_widget(&mut rng), &h);
    }
    // Duplicated list-map keys (owned as a unit), unkeyable set items, empty maps and lists, nulls,
    // a scalar root, a granular list that is not a list.
    let mut dup = model(
        json!([{"name": "a", "url": "u"}, {"name": "a", "url": "v"}, {"name": "b", "weight": 1}]),
        json!(["x", "x", "y"]),
    );
    dup["spec"]["extra"] = json!({});
    dup["spec"]["replicas"] = Value::Null;
    check(&dup, &h);
    check(
        &model(json!([{"url": "no key"}]), json!([{"not": "scalar"}])),
        &h,
    );
    check(&model(json!([]), json!("not a list")), &h);
    check(&json!(3), &h);
    let mut pod = nginx(1, "nginx:1");
    push_container(
        &mut pod,
        json!({"name": "side", "ports": [{"containerPort": 80}, {"containerPort": 80, "protocol": "UDP"}]}),
    );
    pod["metadata"]["finalizers"] = json!(["a", "b"]);
    check(&pod, &dep_hints());
}

#[test]
fn one_sided_subtrees_compare_as_inserted_path_by_path() {
    use rand::SeedableRng;
    fn check(l: Option<&Value>, r: Option<&Value>, hints: &TypeHints) {
        let run = |by_path: bool| {
            let mut cmp = super::walk::Comparison {
                builtin: hints.is_builtin(),
                skip_managed_fields: true,
                by_path,
                ..Default::default()
            };
            super::walk::compare(l, r, Some(&hints.root), &mut Vec::new(), &mut cmp);
            (cmp.added, cmp.removed, cmp.modified)
        };
        assert_eq!(run(false), run(true), "{l:?} -> {r:?}");
    }
    let h = model_hints();
    let empty = json!({});
    for seed in 0..60u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let (a, b) = (random_widget(&mut rng), random_widget(&mut rng));
        check(Some(&a), Some(&b), &h);
        check(None, Some(&a), &h);
        check(Some(&empty), Some(&a), &h);
        check(Some(&b), None, &h);
    }
    let mut dup = model(
        json!([{"name": "a", "url": "u"}, {"name": "a"}, {"name": "b", "weight": 1}]),
        json!(["x", "x"]),
    );
    dup["metadata"]["managedFields"] = json!([{"manager": "m"}]);
    dup["spec"]["extra"] = json!({});
    check(Some(&empty), Some(&dup), &h);
    check(Some(&dup), Some(&empty), &h);
    check(Some(&model(json!([]), json!([]))), Some(&dup), &h);
    // Built-in kinds: new structs compare against their zero value.
    let d = dep_hints();
    let mut pod = nginx(1, "nginx:1");
    push_container(
        &mut pod,
        json!({"name": "side", "ports": [{"containerPort": 80}, {"containerPort": 80, "protocol": "UDP"}]}),
    );
    pod["status"] = json!({"conditions": [{"type": "Ready", "status": "True"}], "replicas": 1});
    check(Some(&empty), Some(&pod), &d);
    check(Some(&nginx(2, "nginx:2")), Some(&pod), &d);
    check(Some(&pod), Some(&nginx(2, "nginx:2")), &d);
}

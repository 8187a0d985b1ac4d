//! Unit tests for printer columns, built-in cells and Table building.

use super::*;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0)
        .single()
        .expect("valid time")
}

fn ago(d: Duration) -> String {
    (now() - d).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn crd_version() -> Value {
    json!({
        "name": "v1alpha1",
        "served": true,
        "storage": true,
        "additionalPrinterColumns": [
            {"name": "Format", "type": "string", "jsonPath": ".spec.format"},
            {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas", "description": "desired replicas"},
            {"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio", "priority": 1},
            {"name": "Pinned", "type": "boolean", "jsonPath": ".spec.pinned"},
            {"name": "Layers", "type": "string", "jsonPath": ".spec.layers"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
        ]
    })
}

fn model(name: &str) -> Value {
    json!({
        "apiVersion": "hypersync.io/v1alpha1",
        "kind": "ModelEntry",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": ago(Duration::minutes(5)), "uid": "u1"},
        "spec": {"format": "gguf", "replicas": 2, "ratio": 0.5, "pinned": true, "layers": {"b": 1, "a": [2]}},
        "status": {"conditions": [{"type": "Progressing", "status": "True"}, {"type": "Ready", "status": "False"}]}
    })
}

#[test]
fn human_durations_match_kubectl() {
    assert_eq!(human_duration(Duration::seconds(45)), "45s");
    assert_eq!(human_duration(Duration::seconds(119)), "119s");
    assert_eq!(human_duration(Duration::seconds(310)), "5m10s");
    assert_eq!(human_duration(Duration::minutes(5)), "5m");
    assert_eq!(human_duration(Duration::minutes(15)), "15m");
    assert_eq!(human_duration(Duration::minutes(200)), "3h20m");
    assert_eq!(human_duration(Duration::hours(30)), "30h");
    assert_eq!(human_duration(Duration::hours(53)), "2d5h");
    assert_eq!(human_duration(Duration::days(400)), "400d");
    assert_eq!(human_duration(Duration::days(365 * 3 + 10)), "3y10d");
    assert_eq!(human_duration(Duration::seconds(-1)), "0s");
    assert_eq!(human_duration(Duration::seconds(-5)), "<invalid>");
}

#[test]
fn crd_columns_and_cells() {
    let cols = printer_columns_from_crd_version(&crd_version());
    let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Name", "Format", "Ready", "Replicas", "Ratio", "Pinned", "Layers", "Age"
        ]
    );
    assert_eq!(
        cols[1].description,
        "Custom resource definition column (in JSONPath format): .spec.format"
    );
    assert_eq!(cols[3].description, "desired replicas");
    assert_eq!(cols[4].priority, 1);
    let mut missing = model("b");
    missing["spec"] = json!({});
    let t = to_table(
        &[model("a"), missing],
        &cols,
        IncludeObject::Metadata,
        json!({"resourceVersion": "42"}),
        now(),
    );
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(t["metadata"]["resourceVersion"], "42");
    assert_eq!(
        t["columnDefinitions"][0],
        json!({"name": "Name", "type": "string", "format": "name",
        "description": table::NAME_DESCRIPTION, "priority": 0})
    );
    assert_eq!(
        t["rows"][0]["cells"],
        json!([
            "a",
            "gguf",
            "False",
            2,
            0.5,
            true,
            "{\"a\":[2],\"b\":1}",
            "5m"
        ])
    );
    assert_eq!(
        t["rows"][1]["cells"],
        json!(["b", null, "False", null, null, null, null, "5m"])
    );
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(t["rows"][0]["object"]["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(t["rows"][0]["object"]["metadata"]["uid"], "u1");
    assert!(t["rows"][0]["object"].get("spec").is_none());
    let full = to_table(
        &[model("a")],
        &cols,
        IncludeObject::Object,
        json!({}),
        now(),
    );
    assert_eq!(full["rows"][0]["object"]["spec"]["format"], "gguf");
    let none = to_table(&[model("a")], &cols, IncludeObject::None, json!({}), now());
    assert!(none["rows"][0].get("object").is_none());
}

#[test]
fn crd_without_columns_gets_name_and_age() {
    let cols = printer_columns_from_crd_version(&json!({"name": "v1"}));
    assert_eq!(
        cols[1].description,
        "Custom resource definition column (in JSONPath format): .metadata.creationTimestamp"
    );
    assert_eq!(
        cols.iter()
            .map(|c| (c.name.as_str(), c.type_.as_str()))
            .collect::<Vec<_>>(),
        [("Name", "string"), ("Age", "date")]
    );
    let t = to_table(&[model("a")], &cols, IncludeObject::None, json!({}), now());
    assert_eq!(t["rows"][0]["cells"], json!(["a", "5m"]));
}

#[test]
fn accept_header_selects_table() {
    let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    assert_eq!(table_version_from_accept(kubectl), Some("meta.k8s.io/v1"));
    assert_eq!(
        table_version_from_accept("application/json;as=Table;v=v1beta1;g=meta.k8s.io"),
        Some("meta.k8s.io/v1beta1")
    );
    assert_eq!(table_version_from_accept("application/json"), None);
    assert_eq!(
        table_version_from_accept(
            "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
        ),
        None
    );
    assert_eq!(IncludeObject::from_param(None), IncludeObject::Metadata);
    assert_eq!(
        IncludeObject::from_param(Some("Object")),
        IncludeObject::Object
    );
}

fn slice(v: &Value, a: usize, b: usize) -> Value {
    Value::Array(
        v.as_array()
            .and_then(|x| x.get(a..b))
            .map(<[Value]>::to_vec)
            .unwrap_or_default(),
    )
}

fn cells(resource: &str, obj: Value) -> Value {
    let cols = builtin_printer_columns(resource).expect("builtin columns");
    let t = to_table(&[obj], &cols, IncludeObject::None, json!({}), now());
    t["rows"][0]["cells"].clone()
}

#[test]
fn pod_cells() {
    let running = json!({
        "metadata": {"name": "web-1", "creationTimestamp": ago(Duration::hours(2))},
        "spec": {"nodeName": "gpu-a100-0", "containers": [{"name": "a"}, {"name": "b"}]},
        "status": {"phase": "Running", "podIP": "10.0.0.5", "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 1, "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(Duration::minutes(7))}}},
                {"name": "b", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ]}
    });
    assert_eq!(
        cells("pods", running),
        json!([
            "web-1",
            "1/2",
            "CrashLoopBackOff",
            "1 (7m ago)",
            "120m",
            "10.0.0.5",
            "gpu-a100-0",
            "<none>",
            "<none>"
        ])
    );
    let pending = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending"}});
    assert_eq!(
        cells("pods", pending),
        json!([
            "p",
            "0/1",
            "Pending",
            "0",
            "<unknown>",
            "<none>",
            "<none>",
            "<none>",
            "<none>"
        ])
    );
    let done = json!({"metadata": {"name": "j", "creationTimestamp": ago(Duration::seconds(30))},
        "spec": {"containers": [{"name": "a"}]},
        "status": {"phase": "Succeeded", "containerStatuses": [{"name": "a", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
    assert_eq!(cells("pods", done)[2], "Completed");
    let init = json!({"metadata": {"name": "i", "deletionTimestamp": ago(Duration::seconds(1))},
        "spec": {"initContainers": [{"name": "x"}], "containers": [{"name": "a"}]},
        "status": {"phase": "Pending", "initContainerStatuses": [{"name": "x", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]}});
    assert_eq!(cells("pods", init)[2], "Terminating");
    let init2 = json!({"metadata": {"name": "i"},
        "spec": {"initContainers": [{"name": "x"}], "containers": [{"name": "a"}]},
        "status": {"phase": "Pending", "initContainerStatuses": [{"name": "x", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]}});
    assert_eq!(cells("pods", init2)[2], "Init:0/1");
}

#[test]
fn workload_cells() {
    let deploy = json!({
        "metadata": {"name": "d", "creationTimestamp": ago(Duration::days(3))},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "d"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]},
            "template": {"spec": {"containers": [{"name": "c1", "image": "img:1"}, {"name": "c2", "image": "img:2"}]}}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    });
    assert_eq!(
        cells("deployments", deploy.clone()),
        json!([
            "d",
            "2/3",
            3,
            2,
            "3d",
            "c1,c2",
            "img:1,img:2",
            "app=d,tier in (a,b)"
        ])
    );
    assert_eq!(slice(&cells("replicasets", deploy), 1, 4), json!([3, 0, 2]));
    let job = json!({
        "metadata": {"name": "j", "creationTimestamp": ago(Duration::minutes(10))},
        "spec": {"completions": 1, "template": {"spec": {"containers": [{"name": "w", "image": "busybox"}]}}},
        "status": {"succeeded": 1, "startTime": ago(Duration::minutes(10)), "completionTime": ago(Duration::minutes(9)),
            "conditions": [{"type": "Complete", "status": "True"}]}
    });
    assert_eq!(
        cells("jobs", job),
        json!([
            "j", "Complete", "1/1", "60s", "10m", "w", "busybox", "<none>"
        ])
    );
    let running_job = json!({"metadata": {"name": "r"}, "spec": {"parallelism": 2}, "status": {"startTime": ago(Duration::seconds(20))}});
    assert_eq!(
        slice(&cells("jobs", running_job), 1, 4),
        json!(["Running", "0/1 of 2", "20s"])
    );
}

#[test]
fn service_node_and_misc_cells() {
    let svc = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
        "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}], "selector": {"b": "2", "a": "1"}}});
    assert_eq!(
        cells("services", svc),
        json!([
            "s",
            "NodePort",
            "10.96.0.10",
            "<none>",
            "80:30080/TCP,53/UDP",
            "<unknown>",
            "a=1,b=2"
        ])
    );
    let lb =
        json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIP": "None"}});
    assert_eq!(
        slice(&cells("services", lb), 2, 5),
        json!(["None", "<pending>", "<none>"])
    );
    let node = json!({"metadata": {"name": "n", "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/gpu": ""}},
        "spec": {"unschedulable": true},
        "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.32.0"},
            "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}]}});
    assert_eq!(
        cells("nodes", node),
        json!([
            "n",
            "Ready,SchedulingDisabled",
            "control-plane,gpu",
            "<unknown>",
            "v1.32.0",
            "172.18.0.2",
            "<none>",
            "<unknown>",
            "<unknown>",
            "<unknown>"
        ])
    );
    let ns = json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}});
    assert_eq!(
        cells("namespaces", ns),
        json!(["default", "Active", "<unknown>"])
    );
    let cm = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
    assert_eq!(cells("configmaps", cm), json!(["c", 3, "<unknown>"]));
    let secret = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "MQ=="}});
    assert_eq!(
        cells("secrets", secret),
        json!(["s", "Opaque", 1, "<unknown>"])
    );
    let pvc = json!({"metadata": {"name": "data"}, "spec": {"volumeName": "pv-1", "storageClassName": "fast"},
        "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"]}});
    assert_eq!(
        cells("persistentvolumeclaims", pvc),
        json!([
            "data",
            "Bound",
            "pv-1",
            "10Gi",
            "RWO",
            "fast",
            "<unset>",
            "<unknown>",
            "<unset>"
        ])
    );
    let ev = json!({"metadata": {"name": "e1"}, "type": "Warning", "reason": "BackOff", "message": " restarting ",
        "involvedObject": {"kind": "Pod", "name": "web-1"}, "source": {"component": "kubelet", "host": "n1"},
        "firstTimestamp": ago(Duration::minutes(3)), "lastTimestamp": ago(Duration::seconds(30)), "count": 4});
    assert_eq!(
        cells("events", ev),
        json!([
            "30s",
            "Warning",
            "BackOff",
            "pod/web-1",
            "",
            "kubelet, n1",
            "restarting",
            "3m",
            4,
            "e1"
        ])
    );
    let lease = json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "op-0"}});
    assert_eq!(cells("leases", lease), json!(["l", "op-0", "<unknown>"]));
    let crd = json!({"metadata": {"name": "modelentries.hypersync.io", "creationTimestamp": "2024-05-01T10:00:00Z"}});
    assert_eq!(
        cells("customresourcedefinitions", crd),
        json!(["modelentries.hypersync.io", "2024-05-01T10:00:00Z"])
    );
    assert!(builtin_printer_columns("widgets").is_none());
}

#[test]
fn number_and_integer_cells_follow_go_json() {
    let cols = printer_columns_from_crd_version(&crd_version());
    let mut o = model("a");
    o["spec"]["ratio"] = json!(2);
    o["spec"]["replicas"] = json!(3.9);
    o["spec"]["format"] = json!(7);
    let t = to_table(&[o], &cols, IncludeObject::None, json!({}), now());
    assert_eq!(t["rows"][0]["cells"][4].to_string(), "2");
    assert_eq!(t["rows"][0]["cells"][3], json!(3));
    assert_eq!(
        t["rows"][0]["cells"][1],
        json!("7"),
        "string columns print non-strings as text"
    );
}

#[test]
fn columns_for_picks_crd_builtin_or_default() {
    assert_eq!(
        columns_for("modelentries", Some(&crd_version()))[1].name,
        "Format"
    );
    assert_eq!(columns_for("pods", None)[1].name, "Ready");
    let d = columns_for("widgets", None);
    assert_eq!(
        d.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["Name", "Created At"]
    );
    let l = partial_object_metadata_list(&[model("a")], json!({"resourceVersion": "7"}));
    assert_eq!(l["kind"], "PartialObjectMetadataList");
    assert_eq!(l["items"][0]["metadata"]["name"], "a");
    assert!(l["items"][0].get("spec").is_none());
    let t = to_table(
        &[json!({"metadata": {"name": "x"}})],
        &d,
        IncludeObject::None,
        json!({}),
        now(),
    );
    assert_eq!(t["rows"][0]["cells"], json!(["x", "0001-01-01T00:00:00Z"]));
}

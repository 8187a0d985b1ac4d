//! Printer columns (CRD `additionalPrinterColumns`, built-in kubectl column sets) and `meta.k8s.io/v1` Table building.

use super::errors::{go_json, go_number};
use super::jsonpath::JsonPath;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

/// `metav1.ObjectMeta` swagger doc for `name`, used by every Name column.
pub const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// `metav1.ObjectMeta` swagger doc for `creationTimestamp`, used by Age / Created At columns.
pub const CREATION_TIMESTAMP_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// One Table column. For CRD columns `json_path` is the column's JSONPath; built-in columns use a
/// `#resource.cell` key computed from the object the way kubectl's server-side printers do.
#[derive(Clone, Debug, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub json_path: String,
    pub priority: i64,
    pub description: String,
    pub format: String,
}

/// The `includeObject` query parameter of a Table request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No `object` in rows.
    None,
    /// `PartialObjectMetadata` (the default, what kubectl gets).
    #[default]
    Metadata,
    /// The full object.
    Object,
}

impl IncludeObject {
    /// Parses `?includeObject=`; absent or unknown means `Metadata`.
    pub fn from_param(p: Option<&str>) -> IncludeObject {
        match p {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// The Table `apiVersion` an `Accept` header asks for (`meta.k8s.io/v1` or `meta.k8s.io/v1beta1`),
/// or None when it does not ask for a Table. The first acceptable media range wins, as in kubectl's
/// `application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json`.
pub fn table_version_from_accept(accept: &str) -> Option<&'static str> {
    for range in accept.split(',') {
        let mut params = range.split(';').map(str::trim);
        let media = params.next().unwrap_or("");
        if media != "application/json" && media != "*/*" {
            continue;
        }
        let (mut as_, mut v, mut g) = (None, None, None);
        for p in params {
            match p.split_once('=') {
                Some(("as", x)) => as_ = Some(x),
                Some(("v", x)) => v = Some(x),
                Some(("g", x)) => g = Some(x),
                _ => {}
            }
        }
        if as_ == Some("Table") && g == Some("meta.k8s.io") {
            match v {
                Some("v1") => return Some("meta.k8s.io/v1"),
                Some("v1beta1") => return Some("meta.k8s.io/v1beta1"),
                _ => continue,
            }
        }
        if as_.is_none() {
            // a plain JSON range comes before any Table range: the client prefers plain JSON
            break;
        }
    }
    None
}

fn col(
    name: &str,
    type_: &str,
    format: &str,
    priority: i64,
    description: &str,
    key: &str,
) -> PrinterColumn {
    PrinterColumn {
        name: name.into(),
        type_: type_.into(),
        json_path: key.into(),
        priority,
        description: description.into(),
        format: format.into(),
    }
}

fn name_col() -> PrinterColumn {
    col(
        "Name",
        "string",
        "name",
        0,
        NAME_DESCRIPTION,
        ".metadata.name",
    )
}

fn age_col() -> PrinterColumn {
    col(
        "Age",
        "string",
        "",
        0,
        CREATION_TIMESTAMP_DESCRIPTION,
        "#age",
    )
}

/// Columns for a CRD version (`spec.versions[]` JSON): Name, then `additionalPrinterColumns`, or
/// Name + Age (a `date` column on `.metadata.creationTimestamp`) when it declares none.
pub fn printer_columns_from_crd_version(version: &Value) -> Vec<PrinterColumn> {
    let mut cols = vec![name_col()];
    let declared = version
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty());
    match declared {
        Some(list) => {
            for c in list {
                let text = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                let json_path = text("jsonPath");
                let description = match text("description") {
                    d if d.is_empty() => format!(
                        "Custom resource definition column (in JSONPath format): {json_path}"
                    ),
                    d => d,
                };
                cols.push(PrinterColumn {
                    name: text("name"),
                    type_: text("type"),
                    json_path,
                    priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                    description,
                    format: text("format"),
                });
            }
        }
        None => cols.push(col(
            "Age",
            "date",
            "",
            0,
            "Custom resource definition column (in JSONPath format): .metadata.creationTimestamp",
            ".metadata.creationTimestamp",
        )),
    }
    cols
}

/// The default columns for resources without a printer (Name, Created At as RFC3339), e.g. CRDs themselves.
pub fn default_printer_columns() -> Vec<PrinterColumn> {
    vec![
        name_col(),
        col(
            "Created At",
            "date",
            "",
            0,
            CREATION_TIMESTAMP_DESCRIPTION,
            "#createdAt",
        ),
    ]
}

/// kubectl's server-side column set for a built-in resource (plural name), None when it has none.
pub fn builtin_printer_columns(resource: &str) -> Option<Vec<PrinterColumn>> {
    let s = |n: &str, k: &str, d: &str| col(n, "string", "", 0, d, k);
    let i = |n: &str, k: &str, d: &str| col(n, "integer", "", 0, d, k);
    let wide = |n: &str, k: &str, d: &str| col(n, "string", "", 1, d, k);
    let cols = match resource {
        "pods" => vec![
            name_col(),
            s(
                "Ready",
                "#pod.ready",
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            s(
                "Status",
                "#pod.status",
                "The aggregate status of the containers in this pod.",
            ),
            s(
                "Restarts",
                "#pod.restarts",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            age_col(),
            wide(
                "IP",
                "#pod.ip",
                "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
            ),
            wide(
                "Node",
                "#pod.node",
                "NodeName indicates in which node this pod is scheduled.",
            ),
            wide(
                "Nominated Node",
                "#pod.nominated",
                "nominatedNodeName is set only when this pod preempts other pods on the node.",
            ),
            wide(
                "Readiness Gates",
                "#pod.gates",
                "If specified, all readiness gates will be evaluated for pod readiness.",
            ),
        ],
        "deployments" => vec![
            name_col(),
            s(
                "Ready",
                "#deploy.ready",
                "Number of the pod with ready state",
            ),
            s(
                "Up-to-date",
                "#deploy.updated",
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            ),
            s(
                "Available",
                "#deploy.available",
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            ),
            age_col(),
            wide(
                "Containers",
                "#tpl.containers",
                "Names of each container in the template.",
            ),
            wide(
                "Images",
                "#tpl.images",
                "Images referenced by each container in the template.",
            ),
            wide(
                "Selector",
                "#selector",
                "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
            ),
        ],
        "replicasets" => vec![
            name_col(),
            i(
                "Desired",
                "#rs.desired",
                "Replicas is the number of desired replicas.",
            ),
            i(
                "Current",
                "#rs.current",
                "Replicas is the most recently observed number of replicas.",
            ),
            i(
                "Ready",
                "#rs.ready",
                "The number of ready replicas for this replica set.",
            ),
            age_col(),
            wide(
                "Containers",
                "#tpl.containers",
                "Names of each container in the template.",
            ),
            wide(
                "Images",
                "#tpl.images",
                "Images referenced by each container in the template.",
            ),
            wide(
                "Selector",
                "#selector",
                "Selector is a label query over pods that should match the replica count.",
            ),
        ],
        "statefulsets" => vec![
            name_col(),
            s("Ready", "#sts.ready", "Number of the pod with ready state"),
            age_col(),
            wide(
                "Containers",
                "#tpl.containers",
                "Names of each container in the template.",
            ),
            wide(
                "Images",
                "#tpl.images",
                "Images referenced by each container in the template.",
            ),
        ],
        "jobs" => vec![
            name_col(),
            s("Status", "#job.status", "Status of the job."),
            s(
                "Completions",
                "#job.completions",
                "The completion status of the job.",
            ),
            s(
                "Duration",
                "#job.duration",
                "Time required to complete the job.",
            ),
            age_col(),
            wide(
                "Containers",
                "#tpl.containers",
                "Names of each container in the template.",
            ),
            wide(
                "Images",
                "#tpl.images",
                "Images referenced by each container in the template.",
            ),
            wide(
                "Selector",
                "#selector",
                "A label query over pods that should match the pod count.",
            ),
        ],
        "services" => vec![
            name_col(),
            s(
                "Type",
                "#svc.type",
                "type determines how the Service is exposed.",
            ),
            s(
                "Cluster-IP",
                "#svc.clusterIP",
                "clusterIP is the IP address of the service and is usually assigned randomly.",
            ),
            s(
                "External-IP",
                "#svc.externalIP",
                "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
            ),
            s(
                "Port(s)",
                "#svc.ports",
                "The list of ports that are exposed by this service.",
            ),
            age_col(),
            wide(
                "Selector",
                "#svc.selector",
                "Route service traffic to pods with label keys and values matching this selector.",
            ),
        ],
        "endpoints" => vec![
            name_col(),
            s("Endpoints", "#ep.endpoints", "Endpoints of the service."),
            age_col(),
        ],
        "nodes" => vec![
            name_col(),
            s("Status", "#node.status", "The status of the node"),
            s("Roles", "#node.roles", "The roles of the node"),
            age_col(),
            s(
                "Version",
                "#node.version",
                "Kubelet Version reported by the node.",
            ),
            wide(
                "Internal-IP",
                "#node.internalIP",
                "List of addresses reachable to the node.",
            ),
            wide(
                "External-IP",
                "#node.externalIP",
                "List of addresses reachable to the node.",
            ),
            wide(
                "OS-Image",
                "#node.osImage",
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            ),
            wide(
                "Kernel-Version",
                "#node.kernel",
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            ),
            wide(
                "Container-Runtime",
                "#node.runtime",
                "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
            ),
        ],
        "namespaces" => vec![
            name_col(),
            s("Status", "#ns.status", "The status of the namespace"),
            age_col(),
        ],
        "persistentvolumeclaims" => vec![
            name_col(),
            s(
                "Status",
                "#pvc.status",
                "Phase represents the current phase of PersistentVolumeClaim.",
            ),
            s(
                "Volume",
                "#pvc.volume",
                "volumeName is the binding reference to the PersistentVolume backing this claim.",
            ),
            s(
                "Capacity",
                "#pvc.capacity",
                "capacity represents the actual resources of the underlying volume.",
            ),
            s(
                "Access Modes",
                "#pvc.accessModes",
                "accessModes contains the actual access modes the volume backing the PVC has.",
            ),
            s(
                "StorageClass",
                "#pvc.storageClass",
                "storageClassName is the name of the StorageClass required by the claim.",
            ),
            s(
                "VolumeAttributesClass",
                "#pvc.vac",
                "volumeAttributesClassName may be used to set the VolumeAttributesClass used by this claim.",
            ),
            age_col(),
            wide(
                "VolumeMode",
                "#pvc.volumeMode",
                "volumeMode defines what type of volume is required by the claim.",
            ),
        ],
        "configmaps" => vec![
            name_col(),
            s("Data", "#cm.data", "Data contains the configuration data."),
            age_col(),
        ],
        "secrets" => vec![
            name_col(),
            s(
                "Type",
                "#secret.type",
                "Used to facilitate programmatic handling of secret data.",
            ),
            s("Data", "#secret.data", "Data contains the secret data."),
            age_col(),
        ],
        "serviceaccounts" => vec![
            name_col(),
            s(
                "Secrets",
                "#sa.secrets",
                "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
            ),
            age_col(),
        ],
        "events" => vec![
            s(
                "Last Seen",
                "#ev.lastSeen",
                "The time at which the most recent occurrence of this event was recorded.",
            ),
            s(
                "Type",
                "#ev.type",
                "Type of this event (Normal, Warning), new types could be added in the future",
            ),
            s(
                "Reason",
                "#ev.reason",
                "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
            ),
            s(
                "Object",
                "#ev.object",
                "The object that this event is about.",
            ),
            wide(
                "Subobject",
                "#ev.subobject",
                "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.",
            ),
            wide(
                "Source",
                "#ev.source",
                "The component reporting this event. Should be a short machine understandable string.",
            ),
            s(
                "Message",
                "#ev.message",
                "A human-readable description of the status of this operation.",
            ),
            wide(
                "First Seen",
                "#ev.firstSeen",
                "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
            ),
            col(
                "Count",
                "string",
                "",
                1,
                "The number of times this event has occurred.",
                "#ev.count",
            ),
            col(
                "Name",
                "string",
                "name",
                1,
                NAME_DESCRIPTION,
                ".metadata.name",
            ),
        ],
        "leases" => vec![
            name_col(),
            s(
                "Holder",
                "#lease.holder",
                "holderIdentity contains the identity of the holder of a current lease.",
            ),
            age_col(),
        ],
        "customresourcedefinitions" => default_printer_columns(),
        // kube-apiserver's ComponentStatus printer (pkg/printers/internalversion).
        "componentstatuses" => vec![
            name_col(),
            s("Status", "#cs.status", "Status of the component conditions"),
            s(
                "Message",
                "#cs.message",
                "Message of the component conditions",
            ),
            s("Error", "#cs.error", "Error of the component conditions"),
        ],
        // The aggregator's APIService columns (kube-aggregator apiservice table convertor).
        "apiservices" => vec![
            name_col(),
            s(
                "Service",
                "#apisvc.service",
                "The reference to the service that hosts the API endpoint.",
            ),
            s(
                "Available",
                "#apisvc.available",
                "Whether this service is available.",
            ),
            age_col(),
        ],
        _ => return None,
    };
    Some(cols)
}

/// The columns the apiserver uses for `resource`: the CRD version's columns when `crd_version` is
/// given, else the built-in printer's, else the default Name / Created At.
pub fn columns_for(resource: &str, crd_version: Option<&Value>) -> Vec<PrinterColumn> {
    match crd_version {
        Some(v) => printer_columns_from_crd_version(v),
        None => builtin_printer_columns(resource).unwrap_or_else(default_printer_columns),
    }
}

/// A `meta.k8s.io/v1` `PartialObjectMetadataList` (`Accept: ...;as=PartialObjectMetadataList;...`).
pub fn partial_object_metadata_list(objects: &[Value], list_meta: Value) -> Value {
    let items: Vec<Value> = objects
        .iter()
        .map(|o| {
            json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({})),
            })
        })
        .collect();
    let metadata = if list_meta.is_object() {
        list_meta
    } else {
        json!({})
    };
    json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "items": items})
}

/// Builds a `meta.k8s.io/v1` Table of `objects` with `columns`; `list_meta` becomes the Table's
/// `metadata` (resourceVersion, continue, ...). Ages are computed relative to `now`.
pub fn to_table(
    objects: &[Value],
    columns: &[PrinterColumn],
    include_object: IncludeObject,
    list_meta: Value,
    now: DateTime<Utc>,
) -> Value {
    let defs: Vec<Value> = columns
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.type_,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect();
    let paths: Vec<Option<JsonPath>> = columns
        .iter()
        .map(|c| {
            if c.json_path.starts_with('#') {
                None
            } else {
                JsonPath::parse(&c.json_path).ok()
            }
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let cells: Vec<Value> = columns
                .iter()
                .zip(&paths)
                .map(|(c, p)| match p {
                    Some(p) => jsonpath_cell(&c.type_, p, obj, now),
                    None if c.json_path.starts_with('#') => builtin_cell(&c.json_path, obj, now),
                    None => Value::Null,
                })
                .collect();
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells));
            match include_object {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row.insert(
                        "object".into(),
                        json!({
                            "kind": "PartialObjectMetadata",
                            "apiVersion": "meta.k8s.io/v1",
                            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
                        }),
                    );
                }
                IncludeObject::Object => {
                    row.insert("object".into(), obj.clone());
                }
            }
            Value::Object(row)
        })
        .collect();
    let metadata = if list_meta.is_object() {
        list_meta
    } else {
        json!({})
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

/// A CRD column cell as the apiextensions TableConvertor computes it.
fn jsonpath_cell(type_: &str, path: &JsonPath, obj: &Value, now: DateTime<Utc>) -> Value {
    let Some(v) = path.find(obj).into_iter().next() else {
        return Value::Null;
    };
    if v.is_null() {
        return Value::Null;
    }
    match type_ {
        "string" => Value::String(print_text(v)),
        "integer" => match v {
            Value::Number(n) => n
                .as_i64()
                .map(Value::from)
                .or_else(|| n.as_f64().map(|f| Value::from(f as i64)))
                .unwrap_or(Value::Null),
            _ => Value::Null,
        },
        "number" => match v {
            // Go float64 JSON: integral values serialize without a fraction
            Value::Number(n) if n.is_i64() || n.is_u64() => v.clone(),
            Value::Number(n) => n.as_f64().map(Value::from).unwrap_or(Value::Null),
            _ => Value::Null,
        },
        "boolean" => v.as_bool().map(Value::Bool).unwrap_or(Value::Null),
        "date" => match v.as_str() {
            Some(s) => Value::String(match parse_time(s) {
                Some(t) => human_duration(now - t),
                None => "<invalid>".into(),
            }),
            None => Value::Null,
        },
        _ => Value::Null,
    }
}

/// JSONPath text printing: strings raw, scalars Go-formatted, objects/arrays as JSON.
fn print_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => go_number(n),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => go_json(other),
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `k8s.io/apimachinery/pkg/util/duration.HumanDuration`: `45s`, `5m10s`, `15m`, `3h20m`, `2d5h`, `400d`, `3y10d`.
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// kubectl's `translateTimestampSince`: `<unknown>` for a missing time.
fn since(ts: Option<&str>, now: DateTime<Utc>) -> String {
    match ts.and_then(parse_time) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    }
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    Some(cur)
}

fn st<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

fn int(v: &Value, path: &[&str]) -> i64 {
    at(v, path).and_then(Value::as_i64).unwrap_or(0)
}

fn arr<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn or_none(s: Option<&str>) -> String {
    match s {
        Some(x) if !x.is_empty() => x.to_string(),
        _ => "<none>".into(),
    }
}

fn count(v: &Value, path: &[&str]) -> i64 {
    match at(v, path) {
        Some(Value::Object(m)) => m.len() as i64,
        Some(Value::Array(a)) => a.len() as i64,
        _ => 0,
    }
}

fn has_condition(obj: &Value, type_: &str) -> bool {
    arr(obj, &["status", "conditions"]).iter().any(|c| {
        c.get("type").and_then(Value::as_str) == Some(type_)
            && c.get("status").and_then(Value::as_str) == Some("True")
    })
}

fn builtin_cell(key: &str, obj: &Value, now: DateTime<Utc>) -> Value {
    let text = |s: String| Value::String(s);
    match key {
        "#age" => text(since(st(obj, &["metadata", "creationTimestamp"]), now)),
        "#createdAt" => text(
            // Go formats a zero metav1.Time as year 1
            st(obj, &["metadata", "creationTimestamp"])
                .and_then(parse_time)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        ),
        "#pod.ready" | "#pod.status" | "#pod.restarts" => {
            let p = pod_summary(obj, now);
            match key {
                "#pod.ready" => text(format!("{}/{}", p.ready, p.total)),
                "#pod.status" => text(p.reason),
                _ => text(p.restarts),
            }
        }
        "#pod.ip" => text(or_none(st(obj, &["status", "podIP"]))),
        "#pod.node" => text(or_none(st(obj, &["spec", "nodeName"]))),
        "#pod.nominated" => text(or_none(st(obj, &["status", "nominatedNodeName"]))),
        "#pod.gates" => {
            let gates = arr(obj, &["spec", "readinessGates"]);
            if gates.is_empty() {
                text("<none>".into())
            } else {
                let ok = gates
                    .iter()
                    .filter(|g| {
                        g.get("conditionType")
                            .and_then(Value::as_str)
                            .is_some_and(|t| has_condition(obj, t))
                    })
                    .count();
                text(format!("{ok}/{}", gates.len()))
            }
        }
        "#deploy.ready" => text(format!(
            "{}/{}",
            int(obj, &["status", "readyReplicas"]),
            int(obj, &["spec", "replicas"])
        )),
        "#deploy.updated" => Value::from(int(obj, &["status", "updatedReplicas"])),
        "#deploy.available" => Value::from(int(obj, &["status", "availableReplicas"])),
        "#rs.desired" => Value::from(int(obj, &["spec", "replicas"])),
        "#rs.current" => Value::from(int(obj, &["status", "replicas"])),
        "#rs.ready" => Value::from(int(obj, &["status", "readyReplicas"])),
        "#sts.ready" => text(format!(
            "{}/{}",
            int(obj, &["status", "readyReplicas"]),
            int(obj, &["spec", "replicas"])
        )),
        "#tpl.containers" | "#tpl.images" => {
            let field = if key == "#tpl.containers" {
                "name"
            } else {
                "image"
            };
            let names: Vec<&str> = arr(obj, &["spec", "template", "spec", "containers"])
                .iter()
                .filter_map(|c| c.get(field).and_then(Value::as_str))
                .collect();
            text(names.join(","))
        }
        "#selector" => text(format_label_selector(at(obj, &["spec", "selector"]))),
        "#job.status" => text(job_status(obj).into()),
        "#job.completions" => {
            let succeeded = int(obj, &["status", "succeeded"]);
            let s = match (
                at(obj, &["spec", "completions"]).and_then(Value::as_i64),
                at(obj, &["spec", "parallelism"]).and_then(Value::as_i64),
            ) {
                (Some(c), _) => format!("{succeeded}/{c}"),
                (None, Some(p)) if p > 1 => format!("{succeeded}/1 of {p}"),
                _ => format!("{succeeded}/1"),
            };
            text(s)
        }
        "#job.duration" => {
            let start = st(obj, &["status", "startTime"]).and_then(parse_time);
            let end = st(obj, &["status", "completionTime"]).and_then(parse_time);
            text(match (start, end) {
                (None, _) => String::new(),
                (Some(s), None) => human_duration(now - s),
                (Some(s), Some(e)) => human_duration(e - s),
            })
        }
        "#svc.type" => text(st(obj, &["spec", "type"]).unwrap_or("ClusterIP").into()),
        "#svc.clusterIP" => {
            let ip = arr(obj, &["spec", "clusterIPs"])
                .first()
                .and_then(Value::as_str)
                .or(st(obj, &["spec", "clusterIP"]));
            text(or_none(ip))
        }
        "#svc.externalIP" => text(service_external_ip(obj)),
        "#svc.ports" => {
            let ports: Vec<String> = arr(obj, &["spec", "ports"])
                .iter()
                .map(|p| {
                    let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                    let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                    match p.get("nodePort").and_then(Value::as_i64).filter(|n| *n > 0) {
                        Some(np) => format!("{port}:{np}/{proto}"),
                        None => format!("{port}/{proto}"),
                    }
                })
                .collect();
            text(if ports.is_empty() {
                "<none>".into()
            } else {
                ports.join(",")
            })
        }
        "#svc.selector" => text(format_labels(at(obj, &["spec", "selector"]))),
        "#ep.endpoints" => text(format_endpoints(obj)),
        "#node.status" => text(node_status(obj)),
        "#node.roles" => text(node_roles(obj)),
        "#node.version" => text(
            st(obj, &["status", "nodeInfo", "kubeletVersion"])
                .unwrap_or("")
                .into(),
        ),
        "#node.internalIP" | "#node.externalIP" => {
            let want = if key == "#node.internalIP" {
                "InternalIP"
            } else {
                "ExternalIP"
            };
            let ip = arr(obj, &["status", "addresses"])
                .iter()
                .find(|a| a.get("type").and_then(Value::as_str) == Some(want))
                .and_then(|a| a.get("address").and_then(Value::as_str));
            text(or_none(ip))
        }
        "#node.osImage" | "#node.kernel" | "#node.runtime" => {
            let f = match key {
                "#node.osImage" => "osImage",
                "#node.kernel" => "kernelVersion",
                _ => "containerRuntimeVersion",
            };
            text(
                st(obj, &["status", "nodeInfo", f])
                    .filter(|s| !s.is_empty())
                    .unwrap_or("<unknown>")
                    .into(),
            )
        }
        "#ns.status" => text(st(obj, &["status", "phase"]).unwrap_or("").into()),
        "#cs.status" | "#cs.message" | "#cs.error" => {
            let healthy = arr(obj, &["conditions"])
                .iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Healthy"))
                .cloned();
            let field = |k: &str| {
                healthy
                    .as_ref()
                    .and_then(|c| c.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            text(match key {
                "#cs.status" => match healthy
                    .as_ref()
                    .and_then(|c| c.get("status"))
                    .and_then(Value::as_str)
                {
                    Some("True") => "Healthy".into(),
                    Some(_) => "Unhealthy".into(),
                    None => "Unknown".into(),
                },
                "#cs.message" => field("message"),
                _ => field("error"),
            })
        }
        "#apisvc.service" => text(match at(obj, &["spec", "service"]) {
            Some(s) if !s.is_null() => format!(
                "{}/{}",
                st(s, &["namespace"]).unwrap_or(""),
                st(s, &["name"]).unwrap_or("")
            ),
            _ => "Local".into(),
        }),
        "#apisvc.available" => {
            let cond = arr(obj, &["status", "conditions"])
                .iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Available"))
                .cloned();
            text(match cond {
                Some(c) if c.get("status").and_then(Value::as_str) == Some("True") => "True".into(),
                Some(c) => format!(
                    "{} ({})",
                    c.get("status").and_then(Value::as_str).unwrap_or("Unknown"),
                    c.get("reason").and_then(Value::as_str).unwrap_or("")
                ),
                None => "Unknown".into(),
            })
        }
        "#pvc.status" => text(if at(obj, &["metadata", "deletionTimestamp"]).is_some() {
            "Terminating".into()
        } else {
            st(obj, &["status", "phase"]).unwrap_or("").into()
        }),
        "#pvc.volume" => text(st(obj, &["spec", "volumeName"]).unwrap_or("").into()),
        "#pvc.capacity" | "#pvc.accessModes" => {
            if st(obj, &["spec", "volumeName"]).unwrap_or("").is_empty() {
                return text(String::new());
            }
            if key == "#pvc.capacity" {
                text(
                    at(obj, &["status", "capacity", "storage"])
                        .map(print_text)
                        .unwrap_or_default(),
                )
            } else {
                let modes: Vec<&str> = arr(obj, &["status", "accessModes"])
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|m| match m {
                        "ReadWriteOnce" => "RWO",
                        "ReadOnlyMany" => "ROX",
                        "ReadWriteMany" => "RWX",
                        "ReadWriteOncePod" => "RWOP",
                        other => other,
                    })
                    .collect();
                text(modes.join(","))
            }
        }
        "#pvc.storageClass" => text(
            st(obj, &["spec", "storageClassName"])
                .or(st(
                    obj,
                    &[
                        "metadata",
                        "annotations",
                        "volume.beta.kubernetes.io/storage-class",
                    ],
                ))
                .unwrap_or("")
                .into(),
        ),
        "#pvc.vac" => text(
            st(obj, &["spec", "volumeAttributesClassName"])
                .unwrap_or("<unset>")
                .into(),
        ),
        "#pvc.volumeMode" => text(st(obj, &["spec", "volumeMode"]).unwrap_or("<unset>").into()),
        "#cm.data" => Value::from(count(obj, &["data"]) + count(obj, &["binaryData"])),
        "#secret.type" => text(st(obj, &["type"]).unwrap_or("").into()),
        "#secret.data" => Value::from(count(obj, &["data"])),
        "#sa.secrets" => Value::from(count(obj, &["secrets"])),
        "#ev.lastSeen" | "#ev.firstSeen" | "#ev.count" => {
            let first = match st(obj, &["firstTimestamp"]) {
                Some(t) => since(Some(t), now),
                None => since(st(obj, &["eventTime"]), now),
            };
            let mut last = match st(obj, &["lastTimestamp"]) {
                Some(t) => since(Some(t), now),
                None => first.clone(),
            };
            let mut n = int(obj, &["count"]);
            if let Some(series) = at(obj, &["series"]).filter(|s| s.is_object()) {
                last = since(st(series, &["lastObservedTime"]), now);
                n = int(series, &["count"]);
            } else if n == 0 {
                n = 1;
            }
            match key {
                "#ev.lastSeen" => text(last),
                "#ev.firstSeen" => text(first),
                _ => Value::from(n),
            }
        }
        "#ev.type" => text(st(obj, &["type"]).unwrap_or("").into()),
        "#ev.reason" => text(st(obj, &["reason"]).unwrap_or("").into()),
        "#ev.object" => {
            let kind = st(obj, &["involvedObject", "kind"])
                .unwrap_or("")
                .to_lowercase();
            text(
                match st(obj, &["involvedObject", "name"]).filter(|n| !n.is_empty()) {
                    Some(n) => format!("{kind}/{n}"),
                    None => kind,
                },
            )
        }
        "#ev.subobject" => text(
            st(obj, &["involvedObject", "fieldPath"])
                .unwrap_or("")
                .into(),
        ),
        "#ev.source" => {
            let component = st(obj, &["source", "component"])
                .filter(|s| !s.is_empty())
                .or(st(obj, &["reportingComponent"]))
                .unwrap_or("");
            let host = st(obj, &["source", "host"])
                .filter(|s| !s.is_empty())
                .or(st(obj, &["reportingInstance"]));
            text(match host.filter(|h| !h.is_empty()) {
                Some(h) if !component.is_empty() => format!("{component}, {h}"),
                Some(h) => h.to_string(),
                None => component.to_string(),
            })
        }
        "#ev.message" => text(st(obj, &["message"]).unwrap_or("").trim().into()),
        "#lease.holder" => text(st(obj, &["spec", "holderIdentity"]).unwrap_or("").into()),
        _ => Value::Null,
    }
}

struct PodSummary {
    ready: usize,
    total: usize,
    reason: String,
    restarts: String,
}

fn restartable_init(obj: &Value, name: &str) -> bool {
    arr(obj, &["spec", "initContainers"]).iter().any(|c| {
        c.get("name").and_then(Value::as_str) == Some(name)
            && c.get("restartPolicy").and_then(Value::as_str) == Some("Always")
    })
}

fn terminated_reason(t: &Value, prefix: &str) -> String {
    match t
        .get("reason")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        Some(r) => format!("{prefix}{r}"),
        None => match t.get("signal").and_then(Value::as_i64).filter(|s| *s != 0) {
            Some(sig) => format!("{prefix}Signal:{sig}"),
            None => format!(
                "{prefix}ExitCode:{}",
                t.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
            ),
        },
    }
}

/// kubectl's `printPod` Ready / Status / Restarts computation.
fn pod_summary(pod: &Value, now: DateTime<Utc>) -> PodSummary {
    let init_specs = arr(pod, &["spec", "initContainers"]);
    let mut total = arr(pod, &["spec", "containers"]).len();
    total += init_specs
        .iter()
        .filter(|c| c.get("restartPolicy").and_then(Value::as_str) == Some("Always"))
        .count();
    let mut ready = 0;
    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut last_sidecar_restart: Option<DateTime<Utc>> = None;
    let phase = st(pod, &["status", "phase"]).unwrap_or("");
    let mut reason = st(pod, &["status", "reason"])
        .filter(|r| !r.is_empty())
        .unwrap_or(phase)
        .to_string();
    for c in arr(pod, &["status", "conditions"]) {
        if st(c, &["type"]) == Some("PodScheduled") && st(c, &["reason"]) == Some("SchedulingGated")
        {
            reason = "SchedulingGated".into();
        }
    }
    let finished =
        |c: &Value| st(c, &["lastState", "terminated", "finishedAt"]).and_then(parse_time);
    let mut initializing = false;
    let init_statuses = arr(pod, &["status", "initContainerStatuses"]);
    for (i, c) in init_statuses.iter().enumerate() {
        let rc = int(c, &["restartCount"]);
        restarts += rc;
        if let Some(t) = finished(c)
            && last_restart.is_none_or(|l| l < t)
        {
            last_restart = Some(t);
        }
        let name = st(c, &["name"]).unwrap_or("");
        let sidecar = restartable_init(pod, name);
        if sidecar {
            sidecar_restarts += rc;
            if let Some(t) = finished(c)
                && last_sidecar_restart.is_none_or(|l| l < t)
            {
                last_sidecar_restart = Some(t);
            }
        }
        let terminated = at(c, &["state", "terminated"]).filter(|t| t.is_object());
        let waiting_reason = st(c, &["state", "waiting", "reason"]).filter(|r| !r.is_empty());
        if terminated.is_some_and(|t| int(t, &["exitCode"]) == 0) {
            continue;
        }
        if sidecar && at(c, &["started"]).and_then(Value::as_bool) == Some(true) {
            if at(c, &["ready"]).and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = match (terminated, waiting_reason) {
            (Some(t), _) => terminated_reason(t, "Init:"),
            (None, Some(w)) if w != "PodInitializing" => format!("Init:{w}"),
            _ => format!("Init:{i}/{}", init_specs.len()),
        };
        initializing = true;
        break;
    }
    let initialized = arr(pod, &["status", "conditions"])
        .iter()
        .any(|c| st(c, &["type"]) == Some("Initialized") && st(c, &["status"]) == Some("True"));
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in arr(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts += int(c, &["restartCount"]);
            if let Some(t) = finished(c)
                && last_restart.is_none_or(|l| l < t)
            {
                last_restart = Some(t);
            }
            let terminated = at(c, &["state", "terminated"]).filter(|t| t.is_object());
            if let Some(w) = st(c, &["state", "waiting", "reason"]).filter(|r| !r.is_empty()) {
                reason = w.to_string();
            } else if let Some(t) = terminated {
                reason = terminated_reason(t, "");
            } else if at(c, &["ready"]).and_then(Value::as_bool) == Some(true)
                && at(c, &["state", "running"]).is_some_and(Value::is_object)
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if has_condition(pod, "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }
    if at(pod, &["metadata", "deletionTimestamp"]).is_some_and(|d| !d.is_null()) {
        if st(pod, &["status", "reason"]) == Some("NodeLost") {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }
    let restarts = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    };
    PodSummary {
        ready,
        total,
        reason,
        restarts,
    }
}

fn job_status(job: &Value) -> &'static str {
    if has_condition(job, "Complete") {
        "Complete"
    } else if has_condition(job, "Failed") {
        "Failed"
    } else if at(job, &["metadata", "deletionTimestamp"]).is_some_and(|d| !d.is_null()) {
        "Terminating"
    } else if has_condition(job, "Suspended") {
        "Suspended"
    } else if has_condition(job, "FailureTarget") {
        "FailureTarget"
    } else if has_condition(job, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

fn service_external_ip(svc: &Value) -> String {
    let external: Vec<&str> = arr(svc, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match st(svc, &["spec", "type"]).unwrap_or("ClusterIP") {
        "ClusterIP" | "NodePort" => {
            if external.is_empty() {
                "<none>".into()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let mut ips: Vec<&str> = arr(svc, &["status", "loadBalancer", "ingress"])
                .iter()
                .filter_map(|i| {
                    st(i, &["ip"])
                        .filter(|s| !s.is_empty())
                        .or(st(i, &["hostname"]))
                })
                .collect();
            ips.extend(external);
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        }
        "ExternalName" => st(svc, &["spec", "externalName"]).unwrap_or("").into(),
        _ => "<unknown>".into(),
    }
}

fn format_endpoints(ep: &Value) -> String {
    let mut list = Vec::new();
    for subset in arr(ep, &["subsets"]) {
        let ports = arr(subset, &["ports"]);
        for addr in arr(subset, &["addresses"]) {
            let ip = st(addr, &["ip"]).unwrap_or("");
            if ports.is_empty() {
                list.push(ip.to_string());
            }
            for p in ports {
                list.push(format!("{ip}:{}", int(p, &["port"])));
            }
        }
    }
    if list.is_empty() {
        return "<none>".into();
    }
    let more = list.len().saturating_sub(3);
    let mut s = list.into_iter().take(3).collect::<Vec<_>>().join(",");
    if more > 0 {
        s.push_str(&format!(" + {more} more..."));
    }
    s
}

fn node_status(node: &Value) -> String {
    let ready = arr(node, &["status", "conditions"])
        .iter()
        .find(|c| st(c, &["type"]) == Some("Ready"));
    let mut parts = vec![match ready.and_then(|c| st(c, &["status"])) {
        Some("True") => "Ready",
        Some("False") => "NotReady",
        _ => "Unknown",
    }];
    if at(node, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
        parts.push("SchedulingDisabled");
    }
    parts.join(",")
}

fn node_roles(node: &Value) -> String {
    let mut roles: Vec<String> = Vec::new();
    if let Some(labels) = at(node, &["metadata", "labels"]).and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role.to_string());
                }
            } else if k == "kubernetes.io/role"
                && let Some(r) = v.as_str().filter(|r| !r.is_empty())
            {
                roles.push(r.to_string());
            }
        }
    }
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.join(",")
    }
}

/// `labels.FormatLabels`: sorted `k=v` joined by commas, `<none>` when empty.
fn format_labels(m: Option<&Value>) -> String {
    let Some(m) = m.and_then(Value::as_object).filter(|m| !m.is_empty()) else {
        return "<none>".into();
    };
    let mut pairs: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// `metav1.FormatLabelSelector`: requirements sorted by key, `<none>` when empty.
fn format_label_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel.filter(|s| s.is_object()) else {
        return "<none>".into();
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
        }
    }
    for e in arr(sel, &["matchExpressions"]) {
        let key = st(e, &["key"]).unwrap_or("").to_string();
        let mut values: Vec<&str> = arr(e, &["values"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        values.sort();
        let r = match st(e, &["operator"]).unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            _ => return "<error>".into(),
        };
        reqs.push((key, r));
    }
    if reqs.is_empty() {
        return "<none>".into();
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    reqs.into_iter()
        .map(|(_, r)| r)
        .collect::<Vec<_>>()
        .join(",")
}

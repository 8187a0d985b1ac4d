//! core/v1 Events the simulated components record (Scheduled, FailedScheduling, Created pod, ...).

use serde_json::{Value, json};

use super::util::{name, namespace, set, str_at, uid};
use super::{Ctx, ResourceRef};

/// What an Event names of `obj` (`apiVersion`, `kind` and the identifying metadata), without
/// copying the rest of it.
pub(crate) fn subject(obj: &Value, api_version: &str, kind: &str) -> Value {
    let mut meta = serde_json::Map::new();
    if let Some(m) = obj.get("metadata").and_then(Value::as_object) {
        for k in ["name", "namespace", "uid", "resourceVersion"] {
            if let Some(v) = m.get(k) {
                meta.insert(k.into(), v.clone());
            }
        }
    }
    json!({"apiVersion": api_version, "kind": kind, "metadata": meta})
}

/// Records an Event about `obj`; failures are ignored (events are best effort, as in Kubernetes).
pub(crate) fn record(
    ctx: &Ctx<'_>,
    obj: &Value,
    type_: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let ns = match namespace(obj) {
        "" => "default",
        ns => ns,
    };
    let seq = ctx.next_seq();
    let stamp = ctx.now.timestamp_nanos_opt().unwrap_or(0) as u64;
    let ev_name = format!("{}.{:x}", name(obj), stamp.wrapping_add(seq));
    let mut involved = json!({
        "apiVersion": obj.get("apiVersion").cloned().unwrap_or(Value::Null),
        "kind": obj.get("kind").cloned().unwrap_or(Value::Null),
        "name": name(obj),
        "uid": uid(obj),
    });
    if !namespace(obj).is_empty() {
        set(&mut involved, &["namespace"], json!(namespace(obj)));
    }
    if let Some(rv) = str_at(obj, &["metadata", "resourceVersion"]) {
        set(&mut involved, &["resourceVersion"], json!(rv));
    }
    let ev = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": ev_name, "namespace": ns},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "type": type_,
        "source": {"component": component},
        "firstTimestamp": ctx.now_s,
        "lastTimestamp": ctx.now_s,
        "count": 1,
        "reportingComponent": component,
        "reportingInstance": "",
    });
    if ctx.api.create(&ResourceRef::events(), ev).is_ok() {
        ctx.count_write(&ResourceRef::events(), "create");
    }
}

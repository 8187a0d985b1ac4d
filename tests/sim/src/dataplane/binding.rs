//! Binding a pod to a node, as the apiserver's `pods/binding` subresource does it (the
//! scheduler's path): one write that sets `spec.nodeName`, merges the Binding's annotations and
//! sets `PodScheduled=True`, refused (409 on `pods/binding`) when the pod is being deleted, is
//! already bound or still has scheduling gates. Shared by the server's store-level bind (the HTTP
//! subresource and the data plane's scheduler through [`super::ClusterApi::bind`]) and the
//! data-plane tests' fake API, so both answer the same.

use serde_json::{Map, Value, json};

use super::util::{str_at, uid};

/// A `v1.Binding` as the subresource takes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Binding {
    /// `metadata.name`: the pod's name.
    pub name: String,
    /// `metadata.uid`: a precondition on the pod's uid (the scheduler sets it).
    pub uid: Option<String>,
    /// `metadata.resourceVersion`: a precondition on the pod's resourceVersion.
    pub resource_version: Option<String>,
    /// Merged into the pod's annotations.
    pub annotations: Map<String, Value>,
    /// `target.name`: the node.
    pub node: String,
}

/// Why a bind was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindError {
    /// No such pod (404 on `pods`).
    NotFound,
    /// A uid or resourceVersion precondition failed (409 on `pods`, the storage's message).
    Precondition(String),
    /// The pod cannot be bound (409 on `pods/binding`): being deleted, already bound, gated.
    Refused(String),
}

impl BindError {
    /// The apiserver's message for a refused bind of pod `name`.
    pub fn message(&self, name: &str) -> String {
        match self {
            BindError::NotFound => format!("pods \"{name}\" not found"),
            BindError::Precondition(m) => {
                format!("Operation cannot be fulfilled on pods \"{name}\": {m}")
            }
            BindError::Refused(m) => {
                format!("Operation cannot be fulfilled on pods/binding \"{name}\": {m}")
            }
        }
    }
}

impl Binding {
    /// A binding of pod `name` to `node`, with the scheduler's uid precondition.
    pub fn to_node(name: &str, uid: &str, node: &str) -> Self {
        Binding {
            name: name.to_string(),
            uid: (!uid.is_empty()).then(|| uid.to_string()),
            node: node.to_string(),
            ..Binding::default()
        }
    }

    /// Reads a Binding body. `Err` carries the validation message (`ValidatePodBinding`), which
    /// the apiserver answers as a plain (500) error.
    pub fn from_object(obj: &Value) -> Result<Self, String> {
        let meta = obj.get("metadata");
        let meta_str = |k: &str| {
            meta.and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let kind = str_at(obj, &["target", "kind"]).unwrap_or("");
        let node = str_at(obj, &["target", "name"]).unwrap_or("");
        let mut errors = Vec::new();
        if !kind.is_empty() && kind != "Node" {
            errors.push(format!(
                "target.kind: Unsupported value: \"{kind}\": supported values: \"Node\", \"<empty>\""
            ));
        }
        if node.is_empty() {
            errors.push("target.name: Required value".to_string());
        }
        match errors.len() {
            0 => {}
            1 => return Err(errors.remove(0)),
            _ => return Err(format!("[{}]", errors.join(", "))),
        }
        Ok(Binding {
            name: meta_str("name").unwrap_or_default(),
            uid: meta_str("uid"),
            resource_version: meta_str("resourceVersion"),
            annotations: meta
                .and_then(|m| m.get("annotations"))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            node: node.to_string(),
        })
    }
}

/// Binds `pod` (the stored object) in place as the apiserver does; `now` stamps the
/// `PodScheduled` transition. The caller stores the result as one write.
pub fn bind_pod(pod: &mut Value, b: &Binding, now: &str) -> Result<(), BindError> {
    if let Some(want) = &b.uid {
        let actual = uid(pod);
        if want != actual {
            return Err(BindError::Precondition(format!(
                "Precondition failed: UID in precondition: {want}, UID in object meta: {actual}"
            )));
        }
    }
    if let Some(want) = &b.resource_version {
        let actual = str_at(pod, &["metadata", "resourceVersion"]).unwrap_or("");
        if want != actual {
            return Err(BindError::Precondition(format!(
                "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {actual}"
            )));
        }
    }
    let name = super::util::name(pod).to_string();
    if pod
        .get("metadata")
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some_and(|t| !t.is_null())
    {
        return Err(BindError::Refused(format!(
            "pod {name} is being deleted, cannot be assigned to a host"
        )));
    }
    let bound = str_at(pod, &["spec", "nodeName"]).unwrap_or("");
    if !bound.is_empty() {
        return Err(BindError::Refused(format!(
            "pod {name} is already assigned to node \"{bound}\""
        )));
    }
    if pod
        .get("spec")
        .and_then(|s| s.get("schedulingGates"))
        .and_then(Value::as_array)
        .is_some_and(|g| !g.is_empty())
    {
        return Err(BindError::Refused(format!(
            "pod {name} has non-empty .spec.schedulingGates"
        )));
    }
    let Some(obj) = pod.as_object_mut() else {
        return Err(BindError::NotFound);
    };
    let spec = obj.entry("spec").or_insert_with(|| json!({}));
    if let Some(s) = spec.as_object_mut() {
        s.insert("nodeName".into(), json!(b.node));
    }
    if !b.annotations.is_empty() {
        let meta = obj.entry("metadata").or_insert_with(|| json!({}));
        if let Some(m) = meta.as_object_mut() {
            let ann = m.entry("annotations").or_insert_with(|| json!({}));
            if !ann.is_object() {
                *ann = json!({});
            }
            if let Some(a) = ann.as_object_mut() {
                for (k, v) in &b.annotations {
                    a.insert(k.clone(), v.clone());
                }
            }
        }
    }
    // podutil.UpdatePodCondition with {PodScheduled, True}: the condition is replaced whole
    // (reason and message of an earlier Unschedulable go); its transition time moves only when
    // the status changes.
    let status = obj.entry("status").or_insert_with(|| json!({}));
    if !status.is_object() {
        *status = json!({});
    }
    let Some(st) = status.as_object_mut() else {
        return Err(BindError::NotFound);
    };
    let conds = st.entry("conditions").or_insert_with(|| json!([]));
    if !conds.is_array() {
        *conds = json!([]);
    }
    let Some(conds) = conds.as_array_mut() else {
        return Err(BindError::NotFound);
    };
    let pos = conds
        .iter()
        .position(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"));
    let since = pos
        .map(|i| &conds[i])
        .filter(|c| c.get("status").and_then(Value::as_str) == Some("True"))
        .and_then(|c| c.get("lastTransitionTime"))
        .cloned()
        .unwrap_or_else(|| json!(now));
    let cond = json!({
        "type": "PodScheduled",
        "status": "True",
        "lastProbeTime": null,
        "lastTransitionTime": since,
    });
    match pos {
        Some(i) => conds[i] = cond,
        None => conds.push(cond),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1", "resourceVersion": "7"},
            "spec": {"containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient cpu.",
                "lastProbeTime": null, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        })
    }

    #[test]
    fn sets_node_condition_and_annotations_in_one_change() {
        let mut p = pod();
        let mut b = Binding::to_node("p", "u1", "n1");
        b.annotations.insert("a".into(), json!("b"));
        bind_pod(&mut p, &b, "2026-01-01T00:00:05Z").unwrap();
        assert_eq!(p["spec"]["nodeName"], "n1");
        assert_eq!(p["metadata"]["annotations"]["a"], "b");
        assert_eq!(
            p["status"]["conditions"],
            json!([{"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                    "lastTransitionTime": "2026-01-01T00:00:05Z"}])
        );
        assert_eq!(p["status"]["phase"], "Pending");
    }

    #[test]
    fn refuses_bound_deleting_gated_pods_and_failed_preconditions() {
        let b = Binding::to_node("p", "u1", "n1");
        let mut bound = pod();
        bound["spec"]["nodeName"] = json!("n0");
        assert_eq!(
            bind_pod(&mut bound, &b, "t"),
            Err(BindError::Refused(
                "pod p is already assigned to node \"n0\"".into()
            ))
        );
        let mut deleting = pod();
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:01Z");
        assert_eq!(
            bind_pod(&mut deleting, &b, "t"),
            Err(BindError::Refused(
                "pod p is being deleted, cannot be assigned to a host".into()
            ))
        );
        let mut gated = pod();
        gated["spec"]["schedulingGates"] = json!([{"name": "g"}]);
        assert_eq!(
            bind_pod(&mut gated, &b, "t"),
            Err(BindError::Refused(
                "pod p has non-empty .spec.schedulingGates".into()
            ))
        );
        let other = Binding::to_node("p", "u2", "n1");
        assert_eq!(
            bind_pod(&mut pod(), &other, "t"),
            Err(BindError::Precondition(
                "Precondition failed: UID in precondition: u2, UID in object meta: u1".into()
            ))
        );
        let mut stale = Binding::to_node("p", "", "n1");
        stale.resource_version = Some("6".into());
        assert!(matches!(
            bind_pod(&mut pod(), &stale, "t"),
            Err(BindError::Precondition(_))
        ));
    }

    #[test]
    fn validates_the_target() {
        assert_eq!(
            Binding::from_object(&json!({"metadata": {"name": "p"}, "target": {}})),
            Err("target.name: Required value".into())
        );
        assert_eq!(
            Binding::from_object(&json!({"metadata": {"name": "p"}, "target": {"kind": "Pod"}})),
            Err("[target.kind: Unsupported value: \"Pod\": supported values: \"Node\", \"<empty>\", target.name: Required value]".into())
        );
        let b = Binding::from_object(&json!({"metadata": {"name": "p", "uid": "u"},
            "target": {"kind": "Node", "name": "n"}}))
        .unwrap();
        assert_eq!((b.uid.as_deref(), b.node.as_str()), (Some("u"), "n"));
    }
}

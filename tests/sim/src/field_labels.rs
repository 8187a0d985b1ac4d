//! Which field labels each resource accepts in a field selector, and the value each label has on an
//! object, as the apiserver computes them.
//!
//! Upstream, a list or watch first converts every field label through the kind's
//! `FieldLabelConversionFunc` (`pkg/apis/core/v1/conversion.go`, `pkg/apis/batch/v1/conversion.go`,
//! `pkg/apis/certificates/v1/conversion.go`; `runtime.DefaultMetaV1FieldSelectorConversion` for
//! kinds without one; the CRD handler's `crConverter.ConvertFieldLabel` for custom resources) and
//! answers 400 with the function's error when a label is not supported. It then matches the
//! selector against the object's selectable field set (`pkg/registry/*/strategy.go`
//! `*ToSelectableFields`), built from the typed Go struct: a field the JSON leaves out has its Go
//! zero value there (`spec.unschedulable` of a node never cordoned is `"false"`, a Job's
//! `status.successful` is `"0"`), and a label outside the set compares as `""`.

use serde_json::Value;

use crate::selector::FieldSelector;

/// How a resource's field labels are checked (which conversion function upstream runs).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Conversion {
    /// `runtime.DefaultMetaV1FieldSelectorConversion`: `metadata.name`, `metadata.namespace`.
    Default,
    /// A kind-specific function: its labels and the wording of its error.
    Custom {
        labels: &'static [&'static str],
        style: ErrStyle,
    },
    /// A custom resource: `metadata.name`, `metadata.namespace` when namespaced, and the version's
    /// `selectableFields`.
    Crd {
        namespaced: bool,
        selectable: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrStyle {
    /// `field label not supported: LABEL` (core/v1, certificates/v1, custom resources).
    NotSupported,
    /// `field label "LABEL" not supported for batchv1.Job`.
    BatchJob,
}

/// The type of a selectable field in the Go struct, which gives its zero value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Typed {
    Str,
    Bool,
    Int,
}

const POD: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
    // Old v1 clients' name for spec.nodeName.
    "spec.host",
];
const NODE: &[&str] = &["metadata.name", "spec.unschedulable"];
const REPLICATION_CONTROLLER: &[&str] = &["metadata.name", "metadata.namespace", "status.replicas"];
const EVENT: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];
const NAMESPACE: &[&str] = &["status.phase", "metadata.name"];
const SECRET: &[&str] = &["type", "metadata.namespace", "metadata.name"];
const SERVICE: &[&str] = &[
    "metadata.namespace",
    "metadata.name",
    "spec.clusterIP",
    "spec.type",
];
const JOB: &[&str] = &["metadata.name", "metadata.namespace", "status.successful"];
const CSR: &[&str] = &["metadata.name", "spec.signerName"];

/// The field labels one resource supports and how their values are read.
#[derive(Debug, Clone)]
pub struct FieldLabels {
    group: String,
    resource: String,
    namespaced: bool,
    conversion: Conversion,
}

impl FieldLabels {
    /// The labels of a built-in resource (`group` `""` for core) or, with `crd_version` (the CRD's
    /// `spec.versions[]` entry), of a custom resource.
    pub fn new(group: &str, resource: &str, namespaced: bool, crd_version: Option<&Value>) -> Self {
        let custom = |labels, style| Conversion::Custom { labels, style };
        let conversion = if let Some(v) = crd_version {
            let selectable = v
                .get("selectableFields")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f.get("jsonPath").and_then(Value::as_str))
                        .map(|p| p.trim_start_matches('.').to_string())
                        .collect()
                })
                .unwrap_or_default();
            Conversion::Crd {
                namespaced,
                selectable,
            }
        } else {
            match (group, resource) {
                ("", "pods") => custom(POD, ErrStyle::NotSupported),
                ("", "nodes") => custom(NODE, ErrStyle::NotSupported),
                ("", "replicationcontrollers") => {
                    custom(REPLICATION_CONTROLLER, ErrStyle::NotSupported)
                }
                ("", "events") => custom(EVENT, ErrStyle::NotSupported),
                ("", "namespaces") => custom(NAMESPACE, ErrStyle::NotSupported),
                ("", "secrets") => custom(SECRET, ErrStyle::NotSupported),
                ("", "services") => custom(SERVICE, ErrStyle::NotSupported),
                ("batch", "jobs") => custom(JOB, ErrStyle::BatchJob),
                ("certificates.k8s.io", "certificatesigningrequests") => {
                    custom(CSR, ErrStyle::NotSupported)
                }
                _ => Conversion::Default,
            }
        };
        FieldLabels {
            group: group.to_string(),
            resource: resource.to_string(),
            namespaced,
            conversion,
        }
    }

    /// Checks every label of the selector, in the selector's (sorted) term order, as the
    /// apiserver's `Selector.Transform` does; the error is the 400's message.
    pub fn check(&self, sel: &FieldSelector) -> Result<(), String> {
        for r in sel.requirements() {
            self.check_label(&r.field)?;
        }
        Ok(())
    }

    fn check_label(&self, label: &str) -> Result<(), String> {
        match &self.conversion {
            Conversion::Default => match label {
                "metadata.name" | "metadata.namespace" => Ok(()),
                _ => Err(format!(
                    "\"{label}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                )),
            },
            Conversion::Custom { labels, style } => {
                if labels.contains(&label) {
                    return Ok(());
                }
                Err(match style {
                    ErrStyle::NotSupported => format!("field label not supported: {label}"),
                    ErrStyle::BatchJob => {
                        format!("field label \"{label}\" not supported for batchv1.Job")
                    }
                })
            }
            Conversion::Crd {
                namespaced,
                selectable,
            } => {
                if label == "metadata.name"
                    || (*namespaced && label == "metadata.namespace")
                    || selectable.iter().any(|s| s == label)
                {
                    Ok(())
                } else {
                    Err(format!("field label not supported: {label}"))
                }
            }
        }
    }

    /// The value of a (supported) field label on a stored object, as the selectable field set
    /// has it: the Go zero value of its type when the JSON leaves the field out.
    pub fn value(&self, obj: &Value, label: &str) -> String {
        match label {
            "metadata.name" => return text(obj.pointer("/metadata/name"), Typed::Str),
            // Cluster-scoped objects have no metadata.namespace in their field set: "".
            "metadata.namespace" => {
                return if self.namespaced {
                    text(obj.pointer("/metadata/namespace"), Typed::Str)
                } else {
                    String::new()
                };
            }
            _ => {}
        }
        if matches!(self.conversion, Conversion::Crd { .. }) {
            // The CR strategy prints the JSONPath result with fmt.Sprint; missing is "".
            return text(lookup(obj, label), Typed::Str);
        }
        match (self.group.as_str(), self.resource.as_str(), label) {
            ("", "pods", "spec.host") => text(obj.pointer("/spec/nodeName"), Typed::Str),
            ("", "pods", "spec.hostNetwork") => text(obj.pointer("/spec/hostNetwork"), Typed::Bool),
            // PodToSelectableFields: the first of status.podIPs.
            ("", "pods", "status.podIP") => {
                let first = obj.pointer("/status/podIPs/0/ip");
                text(first.or_else(|| obj.pointer("/status/podIP")), Typed::Str)
            }
            // Accepted by the conversion but not in the pod's field set: always "".
            ("", "pods", "status.podIPs") => String::new(),
            ("", "nodes", "spec.unschedulable") => {
                text(obj.pointer("/spec/unschedulable"), Typed::Bool)
            }
            ("", "replicationcontrollers", "status.replicas") => {
                text(obj.pointer("/status/replicas"), Typed::Int)
            }
            // EventToSelectableFields: source.component, else reportingComponent.
            ("", "events", "source") => {
                let component = text(obj.pointer("/source/component"), Typed::Str);
                if component.is_empty() {
                    text(obj.get("reportingComponent"), Typed::Str)
                } else {
                    component
                }
            }
            ("batch", "jobs", "status.successful") => {
                text(obj.pointer("/status/succeeded"), Typed::Int)
            }
            _ => text(lookup(obj, label), Typed::Str),
        }
    }
}

/// A dotted path into the object.
fn lookup<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for part in path.split('.') {
        cur = match cur {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// A JSON value as the field set has it (absent or null: the zero value of the Go type).
fn text(v: Option<&Value>, typed: Typed) -> String {
    match v {
        None | Some(Value::Null) => match typed {
            Typed::Str => String::new(),
            Typed::Bool => "false".into(),
            Typed::Int => "0".into(),
        },
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap()
    }

    fn matches(fl: &FieldLabels, s: &str, obj: &Value) -> bool {
        sel(s).matches_with(obj, &|o, l| fl.value(o, l))
    }

    #[test]
    fn unsupported_labels_get_the_apiservers_messages() {
        let cm = FieldLabels::new("", "configmaps", true, None);
        assert_eq!(
            cm.check(&sel("data.foo=bar")).unwrap_err(),
            "\"data.foo\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        assert!(
            cm.check(&sel("metadata.name=a,metadata.namespace=b"))
                .is_ok()
        );
        let nodes = FieldLabels::new("", "nodes", false, None);
        assert_eq!(
            nodes.check(&sel("metadata.namespace=x")).unwrap_err(),
            "field label not supported: metadata.namespace"
        );
        let jobs = FieldLabels::new("batch", "jobs", true, None);
        assert_eq!(
            jobs.check(&sel("status.succeeded=1")).unwrap_err(),
            "field label \"status.succeeded\" not supported for batchv1.Job"
        );
        // Terms are checked in sorted order: the first unsupported one is reported.
        let pods = FieldLabels::new("", "pods", true, None);
        assert_eq!(
            pods.check(&sel("z.b=1,status.phase=Running,a.b=2"))
                .unwrap_err(),
            "field label not supported: a.b"
        );
    }

    #[test]
    fn absent_fields_compare_as_their_typed_zero_value() {
        let nodes = FieldLabels::new("", "nodes", false, None);
        let node = json!({"metadata": {"name": "n1"}, "spec": {}});
        assert!(matches(&nodes, "spec.unschedulable=false", &node));
        assert!(!matches(&nodes, "spec.unschedulable=true", &node));
        let cordoned = json!({"metadata": {"name": "n2"}, "spec": {"unschedulable": true}});
        assert!(matches(&nodes, "spec.unschedulable!=false", &cordoned));
        let jobs = FieldLabels::new("batch", "jobs", true, None);
        assert!(matches(
            &jobs,
            "status.successful=0",
            &json!({"status": {}})
        ));
        assert!(matches(
            &jobs,
            "status.successful=2",
            &json!({"status": {"succeeded": 2}})
        ));
        let pods = FieldLabels::new("", "pods", true, None);
        assert!(matches(
            &pods,
            "spec.hostNetwork=false",
            &json!({"spec": {}})
        ));
        assert!(matches(
            &pods,
            "status.podIP=10.0.0.3,spec.host=n1",
            &json!({"spec": {"nodeName": "n1"}, "status": {"podIPs": [{"ip": "10.0.0.3"}]}})
        ));
    }

    #[test]
    fn event_source_falls_back_to_the_reporting_controller() {
        let ev = FieldLabels::new("", "events", true, None);
        let e = json!({"reportingComponent": "kubelet", "source": {}});
        assert!(matches(&ev, "source=kubelet", &e));
        let e = json!({"reportingComponent": "x", "source": {"component": "sched"}});
        assert!(matches(&ev, "source=sched", &e));
    }

    #[test]
    fn custom_resources_take_their_selectable_fields() {
        let v = json!({"name": "v1", "selectableFields": [{"jsonPath": ".spec.color"}, {"jsonPath": ".spec.size"}]});
        let cr = FieldLabels::new("example.io", "widgets", true, Some(&v));
        assert!(
            cr.check(&sel("spec.color=red,metadata.namespace=a"))
                .is_ok()
        );
        assert_eq!(
            cr.check(&sel("spec.shape=round")).unwrap_err(),
            "field label not supported: spec.shape"
        );
        let cluster = FieldLabels::new("example.io", "gadgets", false, Some(&json!({})));
        assert_eq!(
            cluster.check(&sel("metadata.namespace=a")).unwrap_err(),
            "field label not supported: metadata.namespace"
        );
        let obj = json!({"spec": {"color": "red", "size": 3}});
        assert!(matches(&cr, "spec.color=red,spec.size=3", &obj));
        assert!(matches(&cr, "spec.size=3", &obj));
        assert!(matches(&cr, "spec.color=", &json!({"spec": {}})));
    }
}

//! The resource registry: built-in kinds and CRD-served kinds, with names, scope, verbs, short names,
//! categories, subresources and per-version schemas, looked up by (group, version, plural).

use crate::patch::TypeHints;
use crate::schema::StructuralSchema;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub const STANDARD_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Paths of a scale subresource (`.spec.replicas` style JSON paths).
#[derive(Debug, Clone)]
pub struct ScaleSpec {
    pub spec_replicas_path: String,
    pub status_replicas_path: String,
    pub label_selector_path: Option<String>,
}

/// One served version of a resource.
#[derive(Debug, Clone)]
pub struct VersionInfo {
    pub name: String,
    pub served: bool,
    pub storage: bool,
    pub status_sub: bool,
    pub scale: Option<ScaleSpec>,
    /// `openAPIV3Schema` of a CRD version.
    pub schema: Option<Value>,
    /// `additionalPrinterColumns` raw JSON plus the version entry itself, for CRDs.
    pub crd_version: Option<Value>,
    /// List types / merge keys for patches and server-side apply.
    pub hints: Arc<TypeHints>,
    /// Compiled structural schema of a CRD version.
    pub structural: Option<Arc<StructuralSchema>>,
}

/// A resource the server serves.
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    pub group: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub versions: Vec<VersionInfo>,
    pub tracks_generation: bool,
    /// Extra subresources beyond status/scale: `token`, `log`, `finalize`, ...
    pub extra_subs: Vec<&'static str>,
    /// Store table name (`group/plural`).
    pub table: Arc<str>,
    pub is_crd: bool,
    pub verbs: Vec<&'static str>,
}

impl ResourceInfo {
    pub fn version(&self, v: &str) -> Option<&VersionInfo> {
        self.versions.iter().find(|x| x.name == v && x.served)
    }

    pub fn storage_version(&self) -> &str {
        self.versions
            .iter()
            .find(|v| v.storage)
            .or_else(|| self.versions.first())
            .map(|v| v.name.as_str())
            .unwrap_or("v1")
    }

    pub fn api_version(&self, v: &str) -> String {
        if self.group.is_empty() {
            v.to_string()
        } else {
            format!("{}/{v}", self.group)
        }
    }

    pub fn status_sub(&self, v: &str) -> bool {
        self.version(v).is_some_and(|x| x.status_sub)
    }

    pub fn scale(&self, v: &str) -> Option<&ScaleSpec> {
        self.version(v).and_then(|x| x.scale.as_ref())
    }

    /// Served versions, highest Kubernetes priority first.
    pub fn served_versions(&self) -> Vec<&VersionInfo> {
        let mut v: Vec<_> = self.versions.iter().filter(|v| v.served).collect();
        v.sort_by_key(|x| std::cmp::Reverse(version_priority(&x.name)));
        v
    }
}

/// Kubernetes version ordering key: GA > beta > alpha > other, higher numbers first.
pub fn version_priority(v: &str) -> (u8, u32, u32) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let Ok(major) = digits.parse::<u32>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return (3, major, 0);
    }
    let (stage, num) = if let Some(n) = tail.strip_prefix("beta") {
        (2, n)
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n)
    } else {
        return (0, 0, 0);
    };
    match num.parse::<u32>() {
        Ok(n) => (stage, major, n),
        Err(_) => (0, 0, 0),
    }
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    categories: &'static [&'static str],
    status: bool,
    scale: bool,
    generation: bool,
    extra: &'static [&'static str],
    verbs: &'static [&'static str],
}

const fn b(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    categories: &'static [&'static str],
) -> Builtin {
    Builtin {
        group,
        version,
        plural,
        kind,
        namespaced,
        short,
        categories,
        status: false,
        scale: false,
        generation: false,
        extra: &[],
        verbs: STANDARD_VERBS,
    }
}

impl Builtin {
    const fn status(mut self) -> Self {
        self.status = true;
        self
    }
    const fn scale(mut self) -> Self {
        self.scale = true;
        self
    }
    const fn generation(mut self) -> Self {
        self.generation = true;
        self
    }
    const fn extra(mut self, e: &'static [&'static str]) -> Self {
        self.extra = e;
        self
    }
    const fn verbs(mut self, v: &'static [&'static str]) -> Self {
        self.verbs = v;
        self
    }
}

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];
const CREATE_ONLY: &[&str] = &["create"];

fn builtins() -> Vec<Builtin> {
    vec![
        b("", "v1", "namespaces", "Namespace", false, &["ns"], NONE)
            .status()
            .extra(&["finalize"]),
        b("", "v1", "pods", "Pod", true, &["po"], ALL)
            .status()
            .extra(&["log", "binding", "eviction", "ephemeralcontainers"]),
        b("", "v1", "services", "Service", true, &["svc"], ALL).status(),
        b("", "v1", "endpoints", "Endpoints", true, &["ep"], NONE),
        b("", "v1", "configmaps", "ConfigMap", true, &["cm"], NONE),
        b("", "v1", "secrets", "Secret", true, NONE, NONE),
        b(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            &["sa"],
            NONE,
        )
        .extra(&["token"]),
        b(
            "",
            "v1",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            true,
            &["pvc"],
            NONE,
        )
        .status(),
        b(
            "",
            "v1",
            "persistentvolumes",
            "PersistentVolume",
            false,
            &["pv"],
            NONE,
        )
        .status(),
        b("", "v1", "events", "Event", true, &["ev"], NONE),
        b(
            "",
            "v1",
            "componentstatuses",
            "ComponentStatus",
            false,
            &["cs"],
            NONE,
        )
        .verbs(&["get", "list"]),
        b(
            "certificates.k8s.io",
            "v1",
            "certificatesigningrequests",
            "CertificateSigningRequest",
            false,
            &["csr"],
            NONE,
        )
        .status()
        .extra(&["approval"]),
        b(
            "apiregistration.k8s.io",
            "v1",
            "apiservices",
            "APIService",
            false,
            NONE,
            &["api-extensions"],
        )
        .status(),
        b("", "v1", "nodes", "Node", false, &["no"], NONE).status(),
        b(
            "",
            "v1",
            "resourcequotas",
            "ResourceQuota",
            true,
            &["quota"],
            NONE,
        )
        .status(),
        b(
            "",
            "v1",
            "limitranges",
            "LimitRange",
            true,
            &["limits"],
            NONE,
        ),
        b(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            true,
            &["deploy"],
            ALL,
        )
        .status()
        .scale()
        .generation(),
        b(
            "apps",
            "v1",
            "replicasets",
            "ReplicaSet",
            true,
            &["rs"],
            ALL,
        )
        .status()
        .scale()
        .generation(),
        b(
            "apps",
            "v1",
            "statefulsets",
            "StatefulSet",
            true,
            &["sts"],
            ALL,
        )
        .status()
        .scale()
        .generation(),
        b("apps", "v1", "daemonsets", "DaemonSet", true, &["ds"], ALL)
            .status()
            .generation(),
        b(
            "apps",
            "v1",
            "controllerrevisions",
            "ControllerRevision",
            true,
            NONE,
            NONE,
        ),
        b("batch", "v1", "jobs", "Job", true, NONE, ALL)
            .status()
            .generation(),
        b("batch", "v1", "cronjobs", "CronJob", true, &["cj"], ALL)
            .status()
            .generation(),
        b(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            NONE,
            NONE,
        ),
        b(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            true,
            &["netpol"],
            NONE,
        )
        .generation(),
        b(
            "networking.k8s.io",
            "v1",
            "ingresses",
            "Ingress",
            true,
            &["ing"],
            NONE,
        )
        .status()
        .generation(),
        b(
            "policy",
            "v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            true,
            &["pdb"],
            NONE,
        )
        .status()
        .generation(),
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "roles",
            "Role",
            true,
            NONE,
            NONE,
        ),
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
            NONE,
            NONE,
        ),
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
            NONE,
            NONE,
        ),
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            NONE,
            NONE,
        ),
        b(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            &["api-extensions"],
        )
        .status()
        .generation(),
        b(
            "admissionregistration.k8s.io",
            "v1",
            "validatingadmissionpolicies",
            "ValidatingAdmissionPolicy",
            false,
            NONE,
            &["api-extensions"],
        )
        .status()
        .generation(),
        b(
            "admissionregistration.k8s.io",
            "v1",
            "validatingadmissionpolicybindings",
            "ValidatingAdmissionPolicyBinding",
            false,
            NONE,
            &["api-extensions"],
        )
        .generation(),
        b(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            true,
            &["ev"],
            NONE,
        ),
        b(
            "storage.k8s.io",
            "v1",
            "storageclasses",
            "StorageClass",
            false,
            &["sc"],
            NONE,
        ),
        b(
            "scheduling.k8s.io",
            "v1",
            "priorityclasses",
            "PriorityClass",
            false,
            &["pc"],
            NONE,
        ),
        b(
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            true,
            &["hpa"],
            ALL,
        )
        .status(),
        b(
            "authorization.k8s.io",
            "v1",
            "selfsubjectaccessreviews",
            "SelfSubjectAccessReview",
            false,
            NONE,
            NONE,
        )
        .verbs(CREATE_ONLY),
        b(
            "authorization.k8s.io",
            "v1",
            "subjectaccessreviews",
            "SubjectAccessReview",
            false,
            NONE,
            NONE,
        )
        .verbs(CREATE_ONLY),
        b(
            "authorization.k8s.io",
            "v1",
            "localsubjectaccessreviews",
            "LocalSubjectAccessReview",
            true,
            NONE,
            NONE,
        )
        .verbs(CREATE_ONLY),
        b(
            "authentication.k8s.io",
            "v1",
            "tokenreviews",
            "TokenReview",
            false,
            NONE,
            NONE,
        )
        .verbs(CREATE_ONLY),
        b(
            "authentication.k8s.io",
            "v1",
            "selfsubjectreviews",
            "SelfSubjectReview",
            false,
            NONE,
            NONE,
        )
        .verbs(CREATE_ONLY),
    ]
}

fn builtin_info(bi: &Builtin) -> ResourceInfo {
    let scale = bi.scale.then(|| ScaleSpec {
        spec_replicas_path: ".spec.replicas".into(),
        status_replicas_path: ".status.replicas".into(),
        label_selector_path: Some(".spec.selector".into()),
    });
    // events.k8s.io/v1 Events share storage with core/v1 Events.
    let table_group = if bi.group == "events.k8s.io" {
        ""
    } else {
        bi.group
    };
    ResourceInfo {
        group: bi.group.into(),
        plural: bi.plural.into(),
        singular: bi.kind.to_lowercase(),
        kind: bi.kind.into(),
        list_kind: format!("{}List", bi.kind),
        namespaced: bi.namespaced,
        short_names: bi.short.iter().map(|s| s.to_string()).collect(),
        categories: bi.categories.iter().map(|s| s.to_string()).collect(),
        versions: vec![VersionInfo {
            name: bi.version.into(),
            served: true,
            storage: true,
            status_sub: bi.status,
            scale,
            schema: None,
            crd_version: None,
            hints: Arc::new(TypeHints::for_builtin(
                &if bi.group.is_empty() {
                    bi.version.to_string()
                } else {
                    format!("{}/{}", bi.group, bi.version)
                },
                bi.kind,
            )),
            structural: None,
        }],
        tracks_generation: bi.generation,
        extra_subs: bi.extra.to_vec(),
        table: Arc::from(format!("{table_group}/{}", bi.plural)),
        is_crd: false,
        verbs: bi.verbs.to_vec(),
    }
}

/// Errors turning a CRD object into a served resource.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    #[error("failed to read CRD: missing {0}")]
    Missing(&'static str),
}

fn s(v: &Value, path: &[&str]) -> Option<String> {
    crate::store::json_path_get(v, path)
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Builds the served resource of a CRD object.
pub fn crd_info(crd: &Value) -> Result<ResourceInfo, CrdError> {
    let spec = crd.get("spec").ok_or(CrdError::Missing("spec"))?;
    let group = s(spec, &["group"]).ok_or(CrdError::Missing("spec.group"))?;
    let names = spec.get("names").ok_or(CrdError::Missing("spec.names"))?;
    let plural = s(names, &["plural"]).ok_or(CrdError::Missing("spec.names.plural"))?;
    let kind = s(names, &["kind"]).ok_or(CrdError::Missing("spec.names.kind"))?;
    let singular = s(names, &["singular"]).unwrap_or_else(|| kind.to_lowercase());
    let list_kind = s(names, &["listKind"]).unwrap_or_else(|| format!("{kind}List"));
    let namespaced = s(spec, &["scope"]).as_deref() != Some("Cluster");
    let mut versions = Vec::new();
    for v in spec
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = s(v, &["name"]) else {
            continue;
        };
        let subs = v.get("subresources");
        let scale = subs.and_then(|x| x.get("scale")).map(|sc| ScaleSpec {
            spec_replicas_path: s(sc, &["specReplicasPath"])
                .unwrap_or_else(|| ".spec.replicas".into()),
            status_replicas_path: s(sc, &["statusReplicasPath"])
                .unwrap_or_else(|| ".status.replicas".into()),
            label_selector_path: s(sc, &["labelSelectorPath"]),
        });
        let schema = crate::store::json_path_get(v, &["schema", "openAPIV3Schema"]).cloned();
        let status_sub = subs.and_then(|x| x.get("status")).is_some();
        let hints = match &schema {
            Some(s) => TypeHints::from_openapi_schema(s),
            None => TypeHints::untyped(),
        }
        .with_status_subresource(status_sub);
        versions.push(VersionInfo {
            name,
            served: v.get("served").and_then(Value::as_bool).unwrap_or(true),
            storage: v.get("storage").and_then(Value::as_bool).unwrap_or(false),
            status_sub,
            scale,
            structural: schema.as_ref().map(|s| Arc::new(StructuralSchema::new(s))),
            schema,
            crd_version: Some(v.clone()),
            hints: Arc::new(hints),
        });
    }
    if versions.is_empty() {
        return Err(CrdError::Missing("spec.versions"));
    }
    Ok(ResourceInfo {
        table: Arc::from(format!("{group}/{plural}")),
        group,
        plural,
        singular,
        kind,
        list_kind,
        namespaced,
        short_names: strings(names.get("shortNames")),
        categories: strings(names.get("categories")),
        versions,
        tracks_generation: true,
        extra_subs: Vec::new(),
        is_crd: true,
        verbs: STANDARD_VERBS.to_vec(),
    })
}

/// All served resources keyed by (group, plural).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    resources: HashMap<(String, String), Arc<ResourceInfo>>,
}

impl Registry {
    pub fn with_builtins() -> Self {
        let mut r = Registry::default();
        for bi in builtins() {
            r.insert(builtin_info(&bi));
        }
        r
    }

    pub fn insert(&mut self, ri: ResourceInfo) {
        self.resources
            .insert((ri.group.clone(), ri.plural.clone()), Arc::new(ri));
    }

    pub fn remove(&mut self, group: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.resources
            .remove(&(group.to_string(), plural.to_string()))
    }

    pub fn get(&self, group: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.resources
            .get(&(group.to_string(), plural.to_string()))
            .cloned()
    }

    /// The resource served at group/version/plural.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.get(group, plural)
            .filter(|ri| ri.version(version).is_some())
    }

    /// Finds a resource by kind in a group (for ownerReferences and RBAC sources).
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
        self.resources
            .values()
            .find(|r| r.group == group && r.kind == kind)
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<ResourceInfo>> {
        let mut v: Vec<_> = self.resources.values().cloned().collect();
        v.sort_by(|a, b| (&a.group, &a.plural).cmp(&(&b.group, &b.plural)));
        v
    }

    /// group -> versions served (highest priority first), core group "" included.
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in self.resources.values() {
            let e = out.entry(r.group.clone()).or_default();
            for v in r.versions.iter().filter(|v| v.served) {
                if !e.contains(&v.name) {
                    e.push(v.name.clone());
                }
            }
        }
        for v in out.values_mut() {
            v.sort_by_key(|x| std::cmp::Reverse(version_priority(x)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn version_priority_orders_like_kubernetes() {
        let mut v = vec!["v1alpha1", "v2", "v1beta2", "v1", "v1beta1", "foo"];
        v.sort_by_key(|x| std::cmp::Reverse(version_priority(x)));
        assert_eq!(v, vec!["v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]);
    }

    #[test]
    fn crd_info_reads_names_versions_and_subresources() {
        let crd = json!({"spec":{"group":"example.com","scope":"Namespaced",
            "names":{"plural":"widgets","singular":"widget","kind":"Widget","shortNames":["wd"],"categories":["all"]},
            "versions":[{"name":"v1","served":true,"storage":true,
                "subresources":{"status":{},"scale":{"specReplicasPath":".spec.size","statusReplicasPath":".status.size"}},
                "schema":{"openAPIV3Schema":{"type":"object"}}}]}});
        let ri = crd_info(&crd).unwrap();
        assert_eq!(ri.kind, "Widget");
        assert_eq!(ri.list_kind, "WidgetList");
        assert!(ri.status_sub("v1"));
        assert_eq!(ri.scale("v1").unwrap().spec_replicas_path, ".spec.size");
        assert_eq!(&*ri.table, "example.com/widgets");
        assert!(crd_info(&json!({"spec":{}})).is_err());
    }

    #[test]
    fn builtins_include_core_and_apps() {
        let r = Registry::with_builtins();
        assert!(
            r.lookup("apps", "v1", "deployments")
                .unwrap()
                .status_sub("v1")
        );
        assert!(r.lookup("", "v1", "pods").is_some());
        assert!(r.lookup("apps", "v2", "deployments").is_none());
        assert_eq!(
            &*r.lookup("events.k8s.io", "v1", "events").unwrap().table,
            "/events"
        );
    }
}

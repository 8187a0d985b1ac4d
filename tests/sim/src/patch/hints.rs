//! Type hints for patching and apply: list types / merge keys / map types per field path, from a
//! table of the upstream built-in struct tags or from a CRD's OpenAPI v3 schema.

use std::collections::BTreeMap;

use serde_json::Value;

/// How server-side apply treats a list (`x-kubernetes-list-type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// The whole list is one value, owned and replaced as a unit (the default).
    Atomic,
    /// A set of scalars, each owned separately (`v:` path elements).
    Set,
    /// A list of objects identified by these key fields (`k:` path elements).
    Map(Vec<String>),
}

/// Hints for one field path. Array elements are transparent: the hints of
/// `spec.containers` describe both the list and (through `children`) its items' fields.
#[derive(Debug, Clone, Default)]
pub(crate) struct HintNode {
    /// Server-side apply list type; `None` means atomic.
    pub list: Option<ListType>,
    /// Strategic merge patch merge key (`patchMergeKey`).
    pub smp_key: Option<String>,
    /// `patchStrategy` contains `merge` (for scalar lists: union).
    pub smp_merge: bool,
    /// `patchStrategy` contains `retainKeys`.
    pub retain_keys: bool,
    /// `x-kubernetes-map-type: atomic` / `+structType=atomic`.
    pub atomic_map: bool,
    /// Default values of list-map key fields (e.g. `protocol: TCP` for ports).
    pub key_defaults: Vec<(String, Value)>,
    pub children: BTreeMap<String, HintNode>,
    /// Hints for values of free-form maps (`additionalProperties`).
    pub wildcard: Option<Box<HintNode>>,
}

impl HintNode {
    pub fn child(&self, name: &str) -> Option<&HintNode> {
        self.children.get(name).or(self.wildcard.as_deref())
    }

    fn at(&mut self, path: &str) -> &mut HintNode {
        let mut cur = self;
        for seg in path.split('.').filter(|s| !s.is_empty()) {
            cur = if seg == "*" {
                cur.wildcard.get_or_insert_with(Default::default)
            } else {
                cur.children.entry(seg.to_string()).or_default()
            };
        }
        cur
    }

    /// A list merged by key in both SMP (`smp_key`) and SSA (`ssa_keys`).
    fn map_list(&mut self, path: &str, smp_key: &str, ssa_keys: &[&str]) -> &mut HintNode {
        let node = self.at(path);
        node.smp_key = Some(smp_key.to_string());
        node.smp_merge = true;
        node.list = Some(ListType::Map(
            ssa_keys.iter().map(|k| k.to_string()).collect(),
        ));
        node
    }

    fn set_list(&mut self, path: &str, smp_merge: bool) {
        let node = self.at(path);
        node.smp_merge = smp_merge;
        node.list = Some(ListType::Set);
    }

    fn atomic(&mut self, path: &str) {
        self.at(path).atomic_map = true;
    }
}

/// Answers list types, merge keys and map types by field path for one kind.
/// Paths are dotted field names; list elements add no segment
/// (`spec.template.spec.containers.env`).
#[derive(Debug, Clone, Default)]
pub struct TypeHints {
    pub(crate) root: HintNode,
    builtin: bool,
    status_subresource: bool,
}

impl TypeHints {
    /// Hints with no knowledge of the type beyond object metadata: every list is atomic.
    pub fn untyped() -> TypeHints {
        let mut root = HintNode::default();
        metadata(root.at("metadata"));
        TypeHints {
            root,
            builtin: false,
            status_subresource: false,
        }
    }

    /// Hints for a built-in kind, from the upstream API struct tags (`patchMergeKey`,
    /// `patchStrategy`, `listType`, `listMapKey`, `mapType`, `structType`).
    pub fn for_builtin(api_version: &str, kind: &str) -> TypeHints {
        let _ = api_version; // the tables are identical across the served versions
        let mut root = HintNode::default();
        metadata(root.at("metadata"));
        let mut status_subresource = true;
        match kind {
            "Pod" => {
                pod_spec(root.at("spec"));
                pod_status(root.at("status"));
            }
            "PodTemplate" => {
                pod_template(root.at("template"));
                status_subresource = false;
            }
            "Deployment" => {
                workload_spec(root.at("spec"));
                root.at("spec.strategy").retain_keys = true;
                conditions(&mut root, "status.conditions");
            }
            "ReplicaSet" | "DaemonSet" | "StatefulSet" | "ReplicationController" => {
                workload_spec(root.at("spec"));
                conditions(&mut root, "status.conditions");
            }
            "Job" => {
                workload_spec(root.at("spec"));
                // Job conditions merge by type in SMP but are atomic for apply.
                let c = root.at("status.conditions");
                c.smp_key = Some("type".into());
                c.smp_merge = true;
                c.list = Some(ListType::Atomic);
            }
            "CronJob" => {
                workload_spec(root.at("spec.jobTemplate.spec"));
                pod_template_metadata(root.at("spec.jobTemplate.metadata"));
            }
            "Service" => {
                let ports = root.map_list("spec.ports", "port", &["port", "protocol"]);
                ports.key_defaults = vec![("protocol".into(), Value::String("TCP".into()))];
                root.atomic("spec.selector");
                conditions(&mut root, "status.conditions");
            }
            "Node" => {
                root.set_list("spec.podCIDRs", true);
                conditions(&mut root, "status.conditions");
                root.map_list("status.addresses", "type", &["type"]);
            }
            "Namespace" => {
                conditions(&mut root, "status.conditions");
            }
            "PersistentVolumeClaim" | "PersistentVolume" => {
                conditions(&mut root, "status.conditions");
            }
            "ServiceAccount" => {
                root.map_list("secrets", "name", &["name"]);
                status_subresource = false;
            }
            "HorizontalPodAutoscaler"
            | "PodDisruptionBudget"
            | "CustomResourceDefinition"
            | "APIService"
            | "CertificateSigningRequest" => {
                conditions(&mut root, "status.conditions");
                if kind == "PodDisruptionBudget" {
                    root.atomic("spec.selector");
                }
            }
            "ConfigMap" | "Secret" | "Endpoints" | "Event" | "Role" | "ClusterRole"
            | "RoleBinding" | "ClusterRoleBinding" | "Lease" | "LimitRange" | "ResourceQuota"
            | "EndpointSlice" | "PriorityClass" | "StorageClass" => {
                status_subresource = kind == "ResourceQuota";
            }
            "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration" => {
                root.map_list("webhooks", "name", &["name"]);
                status_subresource = false;
            }
            _ => {}
        }
        TypeHints {
            root,
            builtin: true,
            status_subresource,
        }
    }

    /// Hints for a custom resource from its OpenAPI v3 schema (either the schema itself or a
    /// CRD version's `schema` object holding `openAPIV3Schema`): `x-kubernetes-list-type`
    /// atomic/set/map with `x-kubernetes-list-map-keys`, and `x-kubernetes-map-type`.
    pub fn from_openapi_schema(schema: &Value) -> TypeHints {
        let schema = schema.get("openAPIV3Schema").unwrap_or(schema);
        let mut root = HintNode::default();
        from_schema(schema, &mut root, 0);
        metadata(root.at("metadata"));
        TypeHints {
            root,
            builtin: false,
            status_subresource: false,
        }
    }

    /// Whether the kind serves a `status` subresource: applies and updates through the main
    /// resource then do not manage `status`, and the status subresource manages only `status`.
    pub fn with_status_subresource(mut self, enabled: bool) -> TypeHints {
        self.status_subresource = enabled;
        self
    }

    pub fn has_status_subresource(&self) -> bool {
        self.status_subresource
    }

    /// Built-in kinds accept strategic merge patches; custom resources do not (415).
    pub fn is_builtin(&self) -> bool {
        self.builtin
    }

    fn node(&self, path: &str) -> Option<&HintNode> {
        let mut cur = &self.root;
        for seg in path.split('.').filter(|s| !s.is_empty()) {
            cur = cur.child(seg)?;
        }
        Some(cur)
    }

    /// Server-side apply list type at `path` (atomic when unknown).
    pub fn list_type(&self, path: &str) -> ListType {
        self.node(path)
            .and_then(|n| n.list.clone())
            .unwrap_or(ListType::Atomic)
    }

    /// Strategic merge key of the list at `path`, if it merges by key.
    pub fn merge_key(&self, path: &str) -> Option<String> {
        self.node(path).and_then(|n| n.smp_key.clone())
    }

    /// Whether the strategic merge strategy of `path` includes `retainKeys`.
    pub fn retain_keys(&self, path: &str) -> bool {
        self.node(path).is_some_and(|n| n.retain_keys)
    }

    /// Whether the map/struct at `path` is atomic for apply.
    pub fn map_is_atomic(&self, path: &str) -> bool {
        self.node(path).is_some_and(|n| n.atomic_map)
    }

    /// Overrides the apply list type at `path` (for tests and ad-hoc kinds).
    pub fn set_list_type(&mut self, path: &str, list_type: ListType) {
        self.root.at(path).list = Some(list_type);
    }
}

fn metadata(m: &mut HintNode) {
    m.set_list("finalizers", true);
    m.map_list("ownerReferences", "uid", &["uid"]);
    m.atomic("managedFields");
}

fn conditions(root: &mut HintNode, path: &str) {
    root.map_list(path, "type", &["type"]);
}

/// `spec` of Deployment/ReplicaSet/StatefulSet/DaemonSet/Job (and CronJob's job template).
fn workload_spec(spec: &mut HintNode) {
    spec.atomic("selector");
    pod_template(spec.at("template"));
}

fn pod_template(t: &mut HintNode) {
    pod_template_metadata(t.at("metadata"));
    pod_spec(t.at("spec"));
}

fn pod_template_metadata(m: &mut HintNode) {
    metadata(m);
}

fn container(c: &mut HintNode) {
    let ports = c.map_list("ports", "containerPort", &["containerPort", "protocol"]);
    ports.key_defaults = vec![("protocol".into(), Value::String("TCP".into()))];
    c.map_list("env", "name", &["name"]);
    c.map_list("volumeMounts", "mountPath", &["mountPath"]);
    c.map_list("volumeDevices", "devicePath", &["devicePath"]);
    c.map_list("resources.claims", "name", &["name"]);
}

fn pod_spec(s: &mut HintNode) {
    s.map_list("volumes", "name", &["name"]).retain_keys = true;
    for field in ["containers", "initContainers", "ephemeralContainers"] {
        container(s.map_list(field, "name", &["name"]));
    }
    s.map_list("imagePullSecrets", "name", &["name"]);
    s.map_list("hostAliases", "ip", &["ip"]);
    s.map_list(
        "topologySpreadConstraints",
        "topologyKey",
        &["topologyKey", "whenUnsatisfiable"],
    );
    s.map_list("resourceClaims", "name", &["name"]).retain_keys = true;
    s.map_list("schedulingGates", "name", &["name"]);
    s.atomic("nodeSelector");
    // tolerations, readinessGates, affinity terms, dnsConfig lists: atomic (the default).
}

fn pod_status(s: &mut HintNode) {
    conditions(s, "conditions");
    s.map_list("podIPs", "ip", &["ip"]);
    s.map_list("hostIPs", "ip", &["ip"]);
    s.map_list("resourceClaimStatuses", "name", &["name"]);
}

/// Walks an OpenAPI v3 schema, recording list and map types. Depth-limited against
/// pathological nesting.
fn from_schema(schema: &Value, node: &mut HintNode, depth: usize) {
    if depth > 64 {
        return;
    }
    let Some(obj) = schema.as_object() else {
        return;
    };
    // allOf/anyOf/oneOf branches in structural schemas only restate constraints; the
    // properties at this level are authoritative.
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            from_schema(
                sub,
                node.children.entry(name.clone()).or_default(),
                depth + 1,
            );
        }
    }
    if let Some(additional) = obj.get("additionalProperties").filter(|a| a.is_object()) {
        from_schema(
            additional,
            node.wildcard.get_or_insert_with(Default::default),
            depth + 1,
        );
    }
    if obj.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic") {
        node.atomic_map = true;
    }
    if obj.get("type").and_then(Value::as_str) == Some("array") {
        let list_type = match obj.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => ListType::Set,
            Some("map") => {
                let keys: Vec<String> = obj
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|k| k.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                if keys.is_empty() {
                    ListType::Atomic
                } else {
                    ListType::Map(keys)
                }
            }
            _ => ListType::Atomic,
        };
        if let ListType::Map(keys) = &list_type {
            let item_props = obj.get("items").and_then(|i| i.get("properties"));
            node.key_defaults = keys
                .iter()
                .filter_map(|k| {
                    let d = item_props?.get(k)?.get("default")?;
                    Some((k.clone(), d.clone()))
                })
                .collect();
        }
        node.list = Some(list_type);
        if let Some(items) = obj.get("items") {
            from_schema(items, node, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deployment_paths_reach_through_lists() {
        let h = TypeHints::for_builtin("apps/v1", "Deployment");
        assert!(h.is_builtin());
        assert_eq!(
            h.merge_key("spec.template.spec.containers").as_deref(),
            Some("name")
        );
        assert_eq!(
            h.merge_key("spec.template.spec.containers.env").as_deref(),
            Some("name")
        );
        assert_eq!(
            h.merge_key("spec.template.spec.containers.volumeMounts")
                .as_deref(),
            Some("mountPath")
        );
        assert_eq!(
            h.list_type("spec.template.spec.containers.ports"),
            ListType::Map(vec!["containerPort".into(), "protocol".into()])
        );
        assert_eq!(
            h.merge_key("spec.template.spec.initContainers").as_deref(),
            Some("name")
        );
        assert_eq!(
            h.list_type("spec.template.spec.tolerations"),
            ListType::Atomic
        );
        assert_eq!(h.merge_key("spec.template.spec.tolerations"), None);
        assert!(h.retain_keys("spec.strategy"));
        assert!(h.retain_keys("spec.template.spec.volumes"));
        assert!(h.map_is_atomic("spec.selector"));
        assert_eq!(
            h.list_type("status.conditions"),
            ListType::Map(vec!["type".into()])
        );
        assert_eq!(h.list_type("metadata.finalizers"), ListType::Set);
        assert_eq!(
            h.merge_key("metadata.ownerReferences").as_deref(),
            Some("uid")
        );
        assert_eq!(
            h.list_type("spec.template.metadata.finalizers"),
            ListType::Set
        );
        assert!(h.has_status_subresource());
    }

    #[test]
    fn service_and_job_and_cronjob_tables() {
        let svc = TypeHints::for_builtin("v1", "Service");
        assert_eq!(svc.merge_key("spec.ports").as_deref(), Some("port"));
        assert_eq!(
            svc.list_type("spec.ports"),
            ListType::Map(vec!["port".into(), "protocol".into()])
        );
        assert!(svc.map_is_atomic("spec.selector"));
        let job = TypeHints::for_builtin("batch/v1", "Job");
        assert_eq!(job.merge_key("status.conditions").as_deref(), Some("type"));
        assert_eq!(job.list_type("status.conditions"), ListType::Atomic);
        let cj = TypeHints::for_builtin("batch/v1", "CronJob");
        assert_eq!(
            cj.merge_key("spec.jobTemplate.spec.template.spec.containers.env")
                .as_deref(),
            Some("name")
        );
        let pod = TypeHints::for_builtin("v1", "Pod");
        assert_eq!(
            pod.merge_key("spec.containers.ports").as_deref(),
            Some("containerPort")
        );
        assert_eq!(
            pod.merge_key("spec.imagePullSecrets").as_deref(),
            Some("name")
        );
        assert_eq!(
            pod.list_type("status.conditions"),
            ListType::Map(vec!["type".into()])
        );
        assert!(!TypeHints::for_builtin("v1", "ConfigMap").has_status_subresource());
        let vwc = TypeHints::for_builtin(
            "admissionregistration.k8s.io/v1",
            "ValidatingWebhookConfiguration",
        );
        assert_eq!(vwc.merge_key("webhooks").as_deref(), Some("name"));
    }

    #[test]
    fn crd_schema_list_and_map_types() {
        let schema = json!({"openAPIV3Schema": {
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {
                    "replicas": {"type": "integer"},
                    "endpoints": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name", "port"],
                        "items": {"type": "object", "properties": {
                            "name": {"type": "string"},
                            "port": {"type": "integer", "default": 80},
                            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}
                        }}
                    },
                    "args": {"type": "array", "items": {"type": "string"}},
                    "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                                 "additionalProperties": {"type": "string"}},
                    "groups": {"type": "object", "additionalProperties": {
                        "type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}
                }},
                "status": {"type": "object", "properties": {"conditions": {
                    "type": "array", "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["type"],
                    "items": {"type": "object"}}}}
            }
        }});
        let h = TypeHints::from_openapi_schema(&schema);
        assert!(!h.is_builtin());
        assert_eq!(
            h.list_type("spec.endpoints"),
            ListType::Map(vec!["name".into(), "port".into()])
        );
        assert_eq!(h.list_type("spec.endpoints.tags"), ListType::Set);
        assert_eq!(h.list_type("spec.args"), ListType::Atomic);
        assert!(h.map_is_atomic("spec.selector"));
        assert_eq!(h.list_type("spec.groups.anykey"), ListType::Set);
        assert_eq!(
            h.list_type("status.conditions"),
            ListType::Map(vec!["type".into()])
        );
        assert_eq!(h.list_type("metadata.finalizers"), ListType::Set);
        let defaults = &h
            .node("spec.endpoints")
            .map(|n| n.key_defaults.clone())
            .unwrap_or_default();
        assert_eq!(defaults, &vec![("port".to_string(), json!(80))]);
    }
}

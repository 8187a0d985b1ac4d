//! OpenAPI v2 (`/openapi/v2`) and v3 (`/openapi/v3`, per group-version) documents for the served built-in kinds and registered CRDs, generated once per set of resources and cached.
//!
//! Built-in schemas come from k8s-openapi's `schemars` implementations (definition names like
//! `io.k8s.api.apps.v1.Deployment`), post-processed with what clients read from the real server's
//! documents: `x-kubernetes-group-version-kind` on kinds and lists, strategic-merge-patch metadata
//! (`x-kubernetes-patch-merge-key` / `x-kubernetes-patch-strategy`) and list types
//! (`x-kubernetes-list-type` / `x-kubernetes-list-map-keys`) on list fields. CRD kinds get the
//! version's `openAPIV3Schema` with `apiVersion`, `kind` and `metadata` (a reference to `ObjectMeta`)
//! filled in, named like the real server does (`io.hypersync.v1alpha1.ModelEntry`).
//!
//! Paths carry one operation per verb with `x-kubernetes-action`, `x-kubernetes-group-version-kind`,
//! the `fieldValidation`/`fieldManager`/`dryRun`/`force` query parameters and the PATCH content types:
//! kubectl decides from these whether the server validates fields (it then skips client-side validation)
//! and whether it can compute a strategic merge patch from the v3 document (built-ins only; CRDs list
//! no `application/strategic-merge-patch+json`, so kubectl sends a JSON merge patch for them).
//!
//! The v2 document is served as JSON, and in protobuf to requests preferring it (client-go's
//! `OpenAPISchema()` asks for protobuf only): paths and operations without definitions, see
//! `openapi_pb`. kubectl and Helm use the v3 documents otherwise (see tests/sim/CLIENT-NOTES.md).

use std::any::TypeId;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use k8s_openapi::api::{
    admissionregistration, apps, authentication, authorization, autoscaling, batch, coordination,
    core, discovery, events, networking, policy, rbac, scheduling, storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
use k8s_openapi::{ListableResource, NamespaceResourceScope, Resource};
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::transform::RemoveRefSiblings;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The protobuf media type client-go asks `/openapi/v2` for.
pub const OPENAPI_V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";
const TOKEN_REQUEST: &str = "io.k8s.api.authentication.v1.TokenRequest";

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// One resource the server serves (a built-in kind or a CRD-served version), as the registry knows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ServedResource {
    /// API group, `""` for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Lower-case plural resource name (`deployments`).
    pub plural: String,
    pub namespaced: bool,
    /// Verbs in discovery form (`get`, `list`, `create`, `update`, `patch`, `delete`, `deletecollection`, `watch`).
    pub verbs: Vec<String>,
    /// Served subresources; `status`, `scale` and `token` get paths, others are ignored.
    pub subresources: Vec<String>,
}

impl ServedResource {
    fn gv_key(&self) -> String {
        gv_key(&self.group, &self.version)
    }

    fn has_verb(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.iter().any(|s| s == sub)
    }
}

/// The generator's inputs from the server's registry: one [`ServedResource`] per served version of each
/// built-in, and for each CRD-served resource a CRD-shaped object rebuilt from its registry entry
/// (`spec.group`, `spec.names`, `spec.scope`, `spec.versions[]` as registered).
pub fn inputs_from_registry(
    registry: &super::registry::Registry,
) -> (Vec<ServedResource>, Vec<Value>) {
    let mut builtins = Vec::new();
    let mut crds = Vec::new();
    for ri in registry.all() {
        if ri.is_crd {
            let versions: Vec<Value> = ri
                .versions
                .iter()
                .filter_map(|v| v.crd_version.clone())
                .collect();
            crds.push(json!({
                "spec": {
                    "group": ri.group,
                    "names": { "kind": ri.kind, "plural": ri.plural, "listKind": ri.list_kind },
                    "scope": if ri.namespaced { "Namespaced" } else { "Cluster" },
                    "versions": versions
                }
            }));
            continue;
        }
        for v in ri.versions.iter().filter(|v| v.served) {
            let mut subresources = Vec::new();
            if v.status_sub {
                subresources.push("status".to_string());
            }
            if v.scale.is_some() {
                subresources.push("scale".to_string());
            }
            subresources.extend(ri.extra_subs.iter().map(|s| s.to_string()));
            builtins.push(ServedResource {
                group: ri.group.clone(),
                version: v.name.clone(),
                kind: ri.kind.clone(),
                plural: ri.plural.clone(),
                namespaced: ri.namespaced,
                verbs: ri.verbs.iter().map(|s| s.to_string()).collect(),
                subresources,
            });
        }
    }
    (builtins, crds)
}

/// The key of a group-version in the v3 index and in URLs: `api/v1`, `apis/apps/v1`.
pub fn gv_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

// ---------------------------------------------------------------------------------------------
// Built-in kinds
// ---------------------------------------------------------------------------------------------

/// A built-in kind with a schema generated from k8s-openapi.
struct BuiltinKind {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    list_kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    definition: String,
    create_only: bool,
    subresources: &'static [&'static str],
    add_schema: fn(&mut SchemaGenerator),
}

fn builtin<T>(subresources: &'static [&'static str], create_only: bool) -> BuiltinKind
where
    T: Resource + ListableResource + JsonSchema + 'static,
    T::Scope: 'static,
{
    BuiltinKind {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        list_kind: T::LIST_KIND,
        plural: T::URL_PATH_SEGMENT,
        namespaced: TypeId::of::<T::Scope>() == TypeId::of::<NamespaceResourceScope>(),
        definition: T::schema_name().into_owned(),
        create_only,
        subresources,
        add_schema: |g| {
            g.subschema_for::<T>();
        },
    }
}

/// Kinds that only accept `create` (reviews) and have no list type in k8s-openapi.
fn create_only<T>() -> BuiltinKind
where
    T: Resource + JsonSchema + 'static,
    T::Scope: 'static,
{
    BuiltinKind {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        list_kind: "",
        plural: T::URL_PATH_SEGMENT,
        namespaced: TypeId::of::<T::Scope>() == TypeId::of::<NamespaceResourceScope>(),
        definition: T::schema_name().into_owned(),
        create_only: true,
        subresources: &[],
        add_schema: |g| {
            g.subschema_for::<T>();
        },
    }
}

const ST: &[&str] = &["status"];
const ST_SCALE: &[&str] = &["status", "scale"];

fn builtin_kinds() -> &'static [BuiltinKind] {
    static KINDS: OnceLock<Vec<BuiltinKind>> = OnceLock::new();
    KINDS.get_or_init(|| {
        vec![
            builtin::<core::v1::ConfigMap>(&[], false),
            builtin::<core::v1::Endpoints>(&[], false),
            builtin::<core::v1::Event>(&[], false),
            builtin::<core::v1::LimitRange>(&[], false),
            builtin::<core::v1::Namespace>(ST, false),
            builtin::<core::v1::Node>(ST, false),
            builtin::<core::v1::PersistentVolume>(ST, false),
            builtin::<core::v1::PersistentVolumeClaim>(ST, false),
            builtin::<core::v1::Pod>(ST, false),
            builtin::<core::v1::PodTemplate>(&[], false),
            builtin::<core::v1::ReplicationController>(ST_SCALE, false),
            builtin::<core::v1::ResourceQuota>(ST, false),
            builtin::<core::v1::Secret>(&[], false),
            builtin::<core::v1::Service>(ST, false),
            builtin::<core::v1::ServiceAccount>(&["token"], false),
            builtin::<apps::v1::ControllerRevision>(&[], false),
            builtin::<apps::v1::DaemonSet>(ST, false),
            builtin::<apps::v1::Deployment>(ST_SCALE, false),
            builtin::<apps::v1::ReplicaSet>(ST_SCALE, false),
            builtin::<apps::v1::StatefulSet>(ST_SCALE, false),
            builtin::<batch::v1::CronJob>(ST, false),
            builtin::<batch::v1::Job>(ST, false),
            builtin::<autoscaling::v2::HorizontalPodAutoscaler>(ST, false),
            builtin::<rbac::v1::ClusterRole>(&[], false),
            builtin::<rbac::v1::ClusterRoleBinding>(&[], false),
            builtin::<rbac::v1::Role>(&[], false),
            builtin::<rbac::v1::RoleBinding>(&[], false),
            builtin::<apiextensions::v1::CustomResourceDefinition>(ST, false),
            builtin::<coordination::v1::Lease>(&[], false),
            builtin::<policy::v1::PodDisruptionBudget>(ST, false),
            builtin::<networking::v1::Ingress>(ST, false),
            builtin::<networking::v1::IngressClass>(&[], false),
            builtin::<networking::v1::NetworkPolicy>(&[], false),
            builtin::<scheduling::v1::PriorityClass>(&[], false),
            builtin::<storage::v1::StorageClass>(&[], false),
            builtin::<discovery::v1::EndpointSlice>(&[], false),
            builtin::<events::v1::Event>(&[], false),
            builtin::<admissionregistration::v1::MutatingWebhookConfiguration>(&[], false),
            builtin::<admissionregistration::v1::ValidatingWebhookConfiguration>(&[], false),
            builtin::<admissionregistration::v1::ValidatingAdmissionPolicy>(ST, false),
            builtin::<admissionregistration::v1::ValidatingAdmissionPolicyBinding>(&[], false),
            create_only::<authentication::v1::TokenReview>(),
            create_only::<authentication::v1::SelfSubjectReview>(),
            create_only::<authorization::v1::SubjectAccessReview>(),
            create_only::<authorization::v1::SelfSubjectAccessReview>(),
            create_only::<authorization::v1::SelfSubjectRulesReview>(),
            create_only::<authorization::v1::LocalSubjectAccessReview>(),
        ]
    })
}

/// The built-in resources this module has schemas for, in the form the registry passes back in.
/// The server may serve a subset (or more: unknown built-ins get an open object schema).
pub fn builtin_resources() -> Vec<ServedResource> {
    builtin_kinds()
        .iter()
        .map(|b| ServedResource {
            group: b.group.to_string(),
            version: b.version.to_string(),
            kind: b.kind.to_string(),
            plural: b.plural.to_string(),
            namespaced: b.namespaced,
            verbs: if b.create_only {
                vec!["create".to_string()]
            } else {
                ALL_VERBS.iter().map(|v| v.to_string()).collect()
            },
            subresources: b.subresources.iter().map(|s| s.to_string()).collect(),
        })
        .collect()
}

fn find_builtin(group: &str, version: &str, kind: &str) -> Option<&'static BuiltinKind> {
    builtin_kinds()
        .iter()
        .find(|b| b.group == group && b.version == version && b.kind == kind)
}

/// Strategic-merge-patch metadata of built-in list fields: (definition, property, merge key, strategy).
/// Mirrors the `patchStrategy`/`patchMergeKey` struct tags of the Kubernetes API types.
#[rustfmt::skip]
const PATCH_META: &[(&str, &str, Option<&str>, &str)] = &[
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", None, "merge"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", Some("uid"), "merge"),
    ("io.k8s.api.core.v1.PodSpec", "containers", Some("name"), "merge"),
    ("io.k8s.api.core.v1.PodSpec", "initContainers", Some("name"), "merge"),
    ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", Some("name"), "merge"),
    ("io.k8s.api.core.v1.PodSpec", "volumes", Some("name"), "merge,retainKeys"),
    ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", Some("name"), "merge"),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", Some("ip"), "merge"),
    ("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", Some("topologyKey"), "merge"),
    ("io.k8s.api.core.v1.PodSpec", "resourceClaims", Some("name"), "merge,retainKeys"),
    ("io.k8s.api.core.v1.PodSpec", "schedulingGates", Some("name"), "merge"),
    ("io.k8s.api.core.v1.Container", "ports", Some("containerPort"), "merge"),
    ("io.k8s.api.core.v1.Container", "env", Some("name"), "merge"),
    ("io.k8s.api.core.v1.Container", "volumeMounts", Some("mountPath"), "merge"),
    ("io.k8s.api.core.v1.Container", "volumeDevices", Some("devicePath"), "merge"),
    ("io.k8s.api.core.v1.EphemeralContainer", "ports", Some("containerPort"), "merge"),
    ("io.k8s.api.core.v1.EphemeralContainer", "env", Some("name"), "merge"),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeMounts", Some("mountPath"), "merge"),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeDevices", Some("devicePath"), "merge"),
    ("io.k8s.api.core.v1.PodStatus", "conditions", Some("type"), "merge"),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", Some("ip"), "merge"),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", Some("ip"), "merge"),
    ("io.k8s.api.core.v1.PodStatus", "resourceClaimStatuses", Some("name"), "merge,retainKeys"),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", Some("port"), "merge"),
    ("io.k8s.api.core.v1.ServiceStatus", "conditions", Some("type"), "merge"),
    ("io.k8s.api.core.v1.ServiceAccount", "secrets", Some("name"), "merge"),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", None, "merge"),
    ("io.k8s.api.core.v1.NodeStatus", "conditions", Some("type"), "merge"),
    ("io.k8s.api.core.v1.NodeStatus", "addresses", Some("type"), "merge"),
    ("io.k8s.api.core.v1.NamespaceStatus", "conditions", Some("type"), "merge"),
    ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "conditions", Some("type"), "merge"),
    ("io.k8s.api.core.v1.ReplicationControllerStatus", "conditions", Some("type"), "merge"),
    ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", Some("type"), "merge"),
    ("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", Some("type"), "merge"),
    ("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", Some("type"), "merge"),
    ("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", Some("type"), "merge"),
    ("io.k8s.api.batch.v1.JobStatus", "conditions", Some("type"), "merge"),
    ("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", "conditions", Some("type"), "merge"),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "conditions", Some("type"), "merge"),
];

/// List types used by server-side apply: (definition, property, list type, map keys).
#[rustfmt::skip]
const LIST_TYPES: &[(&str, &str, &str, &[&str])] = &[
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", "set", &[]),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", "map", &["uid"]),
    ("io.k8s.api.core.v1.PodSpec", "containers", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "initContainers", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "volumes", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", "map", &["ip"]),
    ("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", "map", &["topologyKey", "whenUnsatisfiable"]),
    ("io.k8s.api.core.v1.PodSpec", "resourceClaims", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "schedulingGates", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "tolerations", "atomic", &[]),
    ("io.k8s.api.core.v1.Container", "ports", "map", &["containerPort", "protocol"]),
    ("io.k8s.api.core.v1.Container", "env", "map", &["name"]),
    ("io.k8s.api.core.v1.Container", "volumeMounts", "map", &["mountPath"]),
    ("io.k8s.api.core.v1.Container", "volumeDevices", "map", &["devicePath"]),
    ("io.k8s.api.core.v1.Container", "args", "atomic", &[]),
    ("io.k8s.api.core.v1.Container", "command", "atomic", &[]),
    ("io.k8s.api.core.v1.PodStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", "map", &["ip"]),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", "map", &["ip"]),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", "map", &["port", "protocol"]),
    ("io.k8s.api.core.v1.ServiceStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.core.v1.ServiceAccount", "secrets", "map", &["name"]),
    ("io.k8s.api.core.v1.NodeStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.core.v1.NodeStatus", "addresses", "map", &["type"]),
    ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.batch.v1.JobStatus", "conditions", "atomic", &[]),
    ("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.rbac.v1.ClusterRole", "rules", "atomic", &[]),
    ("io.k8s.api.rbac.v1.Role", "rules", "atomic", &[]),
    ("io.k8s.api.rbac.v1.RoleBinding", "subjects", "atomic", &[]),
    ("io.k8s.api.rbac.v1.ClusterRoleBinding", "subjects", "atomic", &[]),
];

/// Which document flavour is being generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    V2,
    V3,
}

impl Flavor {
    fn ref_prefix(self) -> &'static str {
        match self {
            Flavor::V2 => "#/definitions/",
            Flavor::V3 => "#/components/schemas/",
        }
    }

    fn schema_ref(self, name: &str) -> Value {
        json!({ "$ref": format!("{}{}", self.ref_prefix(), name) })
    }

    /// A reference with siblings (description/default): v3 wraps the reference in `allOf` like the real server.
    fn described_ref(self, name: &str, description: &str) -> Value {
        match self {
            Flavor::V2 => {
                json!({ "$ref": format!("{}{}", self.ref_prefix(), name), "description": description })
            }
            Flavor::V3 => json!({ "allOf": [self.schema_ref(name)], "description": description }),
        }
    }
}

/// Definitions of every built-in kind (and everything they reference) for one flavour, post-processed.
fn builtin_definitions(flavor: Flavor) -> &'static Map<String, Value> {
    static V2: OnceLock<Map<String, Value>> = OnceLock::new();
    static V3: OnceLock<Map<String, Value>> = OnceLock::new();
    let cell = match flavor {
        Flavor::V2 => &V2,
        Flavor::V3 => &V3,
    };
    cell.get_or_init(|| generate_builtin_definitions(flavor))
}

fn generate_builtin_definitions(flavor: Flavor) -> Map<String, Value> {
    let settings = match flavor {
        Flavor::V2 => SchemaSettings::draft07().with(|s| {
            s.meta_schema = None;
            s.transforms = Vec::new();
        }),
        Flavor::V3 => SchemaSettings::openapi3().with(|s| {
            s.meta_schema = None;
            s.transforms = vec![Box::new(RemoveRefSiblings::default())];
        }),
    };
    let mut generator = SchemaGenerator::new(settings);
    for kind in builtin_kinds() {
        (kind.add_schema)(&mut generator);
    }
    generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>();
    generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions>();
    generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta>();
    generator.subschema_for::<autoscaling::v1::Scale>();
    generator.subschema_for::<authentication::v1::TokenRequest>();
    let mut defs = generator.take_definitions(true);

    defs.insert(
        PATCH.to_string(),
        json!({
            "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
            "type": "object"
        }),
    );
    for (def, prop, key, strategy) in PATCH_META {
        if let Some(p) = property_mut(&mut defs, def, prop) {
            if let Some(key) = key {
                p.insert("x-kubernetes-patch-merge-key".into(), json!(key));
            }
            p.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
        }
    }
    for (def, prop, list_type, keys) in LIST_TYPES {
        if let Some(p) = property_mut(&mut defs, def, prop) {
            p.insert("x-kubernetes-list-type".into(), json!(list_type));
            if !keys.is_empty() {
                p.insert("x-kubernetes-list-map-keys".into(), json!(keys));
            }
        }
    }
    for kind in builtin_kinds() {
        set_gvk(
            &mut defs,
            &kind.definition,
            kind.group,
            kind.version,
            kind.kind,
        );
        if !kind.list_kind.is_empty() {
            let list_name = format!("{}List", kind.definition);
            let list = list_schema(
                flavor,
                &kind.definition,
                kind.group,
                kind.version,
                kind.list_kind,
            );
            defs.insert(list_name, list);
        }
    }
    set_gvk(&mut defs, SCALE, "autoscaling", "v1", "Scale");
    set_gvk(
        &mut defs,
        TOKEN_REQUEST,
        "authentication.k8s.io",
        "v1",
        "TokenRequest",
    );
    set_gvk(&mut defs, STATUS, "", "v1", "Status");
    defs
}

fn property_mut<'a>(
    defs: &'a mut Map<String, Value>,
    def: &str,
    prop: &str,
) -> Option<&'a mut Map<String, Value>> {
    defs.get_mut(def)?
        .get_mut("properties")?
        .get_mut(prop)?
        .as_object_mut()
}

fn set_gvk(defs: &mut Map<String, Value>, def: &str, group: &str, version: &str, kind: &str) {
    if let Some(Value::Object(d)) = defs.get_mut(def) {
        d.insert(
            "x-kubernetes-group-version-kind".into(),
            json!([{ "group": group, "kind": kind, "version": version }]),
        );
    }
}

fn list_schema(
    flavor: Flavor,
    item_def: &str,
    group: &str,
    version: &str,
    list_kind: &str,
) -> Value {
    let kind = list_kind.strip_suffix("List").unwrap_or(list_kind);
    json!({
        "description": format!("{list_kind} is a list of {kind}"),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": { "description": API_VERSION_DESCRIPTION, "type": "string" },
            "items": {
                "description": format!("List of {}.", plural_words(kind)),
                "type": "array",
                "items": flavor.schema_ref(item_def)
            },
            "kind": { "description": KIND_DESCRIPTION, "type": "string" },
            "metadata": flavor.described_ref(LIST_META, "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds")
        },
        "x-kubernetes-group-version-kind": [{ "group": group, "kind": list_kind, "version": version }]
    })
}

fn plural_words(kind: &str) -> String {
    format!("{}s", kind.to_lowercase())
}

const API_VERSION_DESCRIPTION: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DESCRIPTION: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const METADATA_DESCRIPTION: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

// ---------------------------------------------------------------------------------------------
// CRDs
// ---------------------------------------------------------------------------------------------

/// One served version of a registered CRD, with its published definition.
#[derive(Clone, Debug)]
struct CrdKind {
    resource: ServedResource,
    list_kind: String,
    definition: String,
    schema: Value,
}

/// The definition name the real server gives a CRD kind: the group's DNS labels reversed, then version and kind
/// (`hypersync.io`, `v1alpha1`, `ModelEntry` -> `io.hypersync.v1alpha1.ModelEntry`).
pub fn crd_definition_name(group: &str, version: &str, kind: &str) -> String {
    let mut labels: Vec<&str> = group.split('.').filter(|l| !l.is_empty()).collect();
    labels.reverse();
    let mut name = labels.join(".");
    if !name.is_empty() {
        name.push('.');
    }
    name.push_str(version);
    name.push('.');
    name.push_str(kind);
    name
}

/// Served versions of the given CRD objects; malformed CRDs (missing group/names) are skipped.
fn crd_kinds(crds: &[Value]) -> Vec<CrdKind> {
    let mut out = Vec::new();
    for crd in crds {
        let spec = &crd["spec"];
        let (Some(group), Some(kind), Some(plural)) = (
            spec["group"].as_str(),
            spec["names"]["kind"].as_str(),
            spec["names"]["plural"].as_str(),
        ) else {
            continue;
        };
        let list_kind = spec["names"]["listKind"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{kind}List"));
        let namespaced = spec["scope"].as_str() != Some("Cluster");
        let Some(versions) = spec["versions"].as_array() else {
            continue;
        };
        for v in versions {
            let Some(version) = v["name"].as_str() else {
                continue;
            };
            if v["served"].as_bool() == Some(false) {
                continue;
            }
            let mut subresources = Vec::new();
            if v["subresources"]["status"].is_object() {
                subresources.push("status".to_string());
            }
            if v["subresources"]["scale"].is_object() {
                subresources.push("scale".to_string());
            }
            out.push(CrdKind {
                resource: ServedResource {
                    group: group.to_string(),
                    version: version.to_string(),
                    kind: kind.to_string(),
                    plural: plural.to_string(),
                    namespaced,
                    verbs: ALL_VERBS.iter().map(|s| s.to_string()).collect(),
                    subresources,
                },
                list_kind: list_kind.clone(),
                definition: crd_definition_name(group, version, kind),
                schema: v["schema"]["openAPIV3Schema"].clone(),
            });
        }
    }
    out
}

/// The published schema of a CRD version: its structural schema with `apiVersion`, `kind` and
/// `metadata` filled in and the kind's `x-kubernetes-group-version-kind`.
fn crd_schema(flavor: Flavor, crd: &CrdKind) -> Value {
    let mut schema = match &crd.schema {
        Value::Object(m) => m.clone(),
        _ => {
            let mut m = Map::new();
            m.insert("type".into(), json!("object"));
            m.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
            m
        }
    };
    if flavor == Flavor::V2 {
        strip_for_v2(&mut schema);
    }
    let props = schema
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if !props.is_object() {
        *props = Value::Object(Map::new());
    }
    if let Value::Object(props) = props {
        props.insert(
            "apiVersion".into(),
            json!({ "description": API_VERSION_DESCRIPTION, "type": "string" }),
        );
        props.insert(
            "kind".into(),
            json!({ "description": KIND_DESCRIPTION, "type": "string" }),
        );
        props.insert(
            "metadata".into(),
            flavor.described_ref(OBJECT_META, METADATA_DESCRIPTION),
        );
    }
    if !schema.contains_key("type") {
        schema.insert("type".into(), json!("object"));
    }
    schema.insert(
        "x-kubernetes-group-version-kind".into(),
        json!([{ "group": crd.resource.group, "kind": crd.resource.kind, "version": crd.resource.version }]),
    );
    Value::Object(schema)
}

/// OpenAPI v2 has no `nullable`, `oneOf`, `anyOf` or `not`; the real server drops them (and CEL rules) from v2.
fn strip_for_v2(schema: &mut Map<String, Value>) {
    for key in [
        "nullable",
        "oneOf",
        "anyOf",
        "not",
        "x-kubernetes-validations",
    ] {
        schema.remove(key);
    }
    for (key, value) in schema.iter_mut() {
        match key.as_str() {
            "properties" | "patternProperties" | "definitions" => {
                if let Value::Object(m) = value {
                    for v in m.values_mut() {
                        if let Value::Object(s) = v {
                            strip_for_v2(s);
                        }
                    }
                }
            }
            "items" | "additionalProperties" => match value {
                Value::Object(s) => strip_for_v2(s),
                Value::Array(a) => {
                    for v in a {
                        if let Value::Object(s) = v {
                            strip_for_v2(s);
                        }
                    }
                }
                _ => {}
            },
            "allOf" => {
                if let Value::Array(a) = value {
                    for v in a {
                        if let Value::Object(s) = v {
                            strip_for_v2(s);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Paths and operations
// ---------------------------------------------------------------------------------------------

/// What a kind published in one document is: its definition names and whether it takes strategic merge patches.
struct Publishable<'a> {
    resource: &'a ServedResource,
    definition: String,
    list_definition: Option<String>,
    strategic: bool,
}

struct Operation {
    method: &'static str,
    action: &'static str,
    id: String,
    description: String,
    gvk: (String, String, String),
    query: Vec<(&'static str, &'static str, &'static str)>,
    body: Option<(String, Vec<&'static str>)>,
    response: String,
    created: bool,
}

fn camel(s: &str) -> String {
    let mut out = String::new();
    for part in s.split(['.', '-', '_']).filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

fn operation_group(group: &str) -> String {
    if group.is_empty() {
        "Core".to_string()
    } else {
        camel(group.strip_suffix(".k8s.io").unwrap_or(group))
    }
}

const Q_PRETTY: (&str, &str, &str) = (
    "pretty",
    "string",
    "If 'true', then the output is pretty printed.",
);
const Q_DRY_RUN: (&str, &str, &str) = (
    "dryRun",
    "string",
    "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed",
);
const Q_FIELD_MANAGER: (&str, &str, &str) = (
    "fieldManager",
    "string",
    "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.",
);
const Q_FIELD_VALIDATION: (&str, &str, &str) = (
    "fieldValidation",
    "string",
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict",
);
const Q_FORCE: (&str, &str, &str) = (
    "force",
    "boolean",
    "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.",
);
const Q_GRACE: (&str, &str, &str) = (
    "gracePeriodSeconds",
    "integer",
    "The duration in seconds before the object should be deleted. The value zero indicates delete immediately.",
);
const Q_PROPAGATION: (&str, &str, &str) = (
    "propagationPolicy",
    "string",
    "Whether and how garbage collection will be performed. Acceptable values are: 'Orphan', 'Background', 'Foreground'.",
);
#[rustfmt::skip]
const Q_LIST: &[(&str, &str, &str)] = &[
    ("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\"."),
    ("continue", "string", "The continue option should be set when retrieving more results from the server."),
    ("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
    ("labelSelector", "string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
    ("limit", "integer", "limit is a maximum number of responses to return for a list call."),
    ("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from."),
    ("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
    ("sendInitialEvents", "boolean", "`sendInitialEvents=true` may be set together with `watch=true`."),
    ("timeoutSeconds", "integer", "Timeout for the list/watch call."),
    ("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
];

const PATCH_TYPES_BUILTIN: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];
const PATCH_TYPES_CRD: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
];
const BODY_TYPES: &[&str] = &["*/*"];
const RESPONSE_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];

/// All (path, operations) of one published kind.
fn kind_paths(p: &Publishable<'_>) -> Vec<(String, Vec<Operation>)> {
    let r = p.resource;
    let prefix = format!("/{}", r.gv_key());
    let scope = if r.namespaced { "Namespaced" } else { "" };
    let opg = format!("{}{}", operation_group(&r.group), camel(&r.version));
    let gvk = (r.group.clone(), r.version.clone(), r.kind.clone());
    let collection = if r.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{prefix}/{}", r.plural)
    };
    let item = format!("{collection}/{{name}}");
    let patch_types = if p.strategic {
        PATCH_TYPES_BUILTIN
    } else {
        PATCH_TYPES_CRD
    };
    let write_q = vec![Q_DRY_RUN, Q_FIELD_MANAGER, Q_FIELD_VALIDATION];
    let mut patch_q = write_q.clone();
    patch_q.push(Q_FORCE);
    let kind = &r.kind;
    let def = &p.definition;
    let mut out = Vec::new();

    let mut coll_ops = Vec::new();
    if let (true, Some(list_def)) = (r.has_verb("list"), &p.list_definition) {
        coll_ops.push(Operation {
            method: "get",
            action: "list",
            id: format!("list{opg}{scope}{kind}"),
            description: format!("list or watch objects of kind {kind}"),
            gvk: gvk.clone(),
            query: Q_LIST.to_vec(),
            body: None,
            response: list_def.clone(),
            created: false,
        });
    }
    if r.has_verb("create") {
        coll_ops.push(Operation {
            method: "post",
            action: "post",
            id: format!("create{opg}{scope}{kind}"),
            description: format!("create {kind}"),
            gvk: gvk.clone(),
            query: write_q.clone(),
            body: Some((def.clone(), BODY_TYPES.to_vec())),
            response: def.clone(),
            created: true,
        });
    }
    if r.has_verb("deletecollection") {
        let mut q = Q_LIST.to_vec();
        q.extend([Q_DRY_RUN, Q_GRACE, Q_PROPAGATION]);
        coll_ops.push(Operation {
            method: "delete",
            action: "deletecollection",
            id: format!("deletecollection{opg}{scope}{kind}"),
            description: format!("delete collection of {kind}"),
            gvk: gvk.clone(),
            query: q,
            body: Some((DELETE_OPTIONS.to_string(), BODY_TYPES.to_vec())),
            response: STATUS.to_string(),
            created: false,
        });
    }
    if !coll_ops.is_empty() {
        out.push((collection.clone(), coll_ops));
    }

    let mut item_ops = Vec::new();
    if r.has_verb("get") {
        item_ops.push(Operation {
            method: "get",
            action: "get",
            id: format!("read{opg}{scope}{kind}"),
            description: format!("read the specified {kind}"),
            gvk: gvk.clone(),
            query: Vec::new(),
            body: None,
            response: def.clone(),
            created: false,
        });
    }
    if r.has_verb("update") {
        item_ops.push(Operation {
            method: "put",
            action: "put",
            id: format!("replace{opg}{scope}{kind}"),
            description: format!("replace the specified {kind}"),
            gvk: gvk.clone(),
            query: write_q.clone(),
            body: Some((def.clone(), BODY_TYPES.to_vec())),
            response: def.clone(),
            created: true,
        });
    }
    if r.has_verb("patch") {
        item_ops.push(Operation {
            method: "patch",
            action: "patch",
            id: format!("patch{opg}{scope}{kind}"),
            description: format!("partially update the specified {kind}"),
            gvk: gvk.clone(),
            query: patch_q.clone(),
            body: Some((PATCH.to_string(), patch_types.to_vec())),
            response: def.clone(),
            created: true,
        });
    }
    if r.has_verb("delete") {
        item_ops.push(Operation {
            method: "delete",
            action: "delete",
            id: format!("delete{opg}{scope}{kind}"),
            description: format!("delete a {kind}"),
            gvk: gvk.clone(),
            query: vec![Q_DRY_RUN, Q_GRACE, Q_PROPAGATION],
            body: Some((DELETE_OPTIONS.to_string(), BODY_TYPES.to_vec())),
            response: STATUS.to_string(),
            created: false,
        });
    }
    if !item_ops.is_empty() {
        out.push((item.clone(), item_ops));
    }

    // Namespaced kinds are also listed across namespaces.
    if let (true, Some(list_def)) = (r.namespaced && r.has_verb("list"), &p.list_definition) {
        out.push((
            format!("{prefix}/{}", r.plural),
            vec![Operation {
                method: "get",
                action: "list",
                id: format!("list{opg}{kind}ForAllNamespaces"),
                description: format!("list or watch objects of kind {kind}"),
                gvk: gvk.clone(),
                query: Q_LIST.to_vec(),
                body: None,
                response: list_def.clone(),
                created: false,
            }],
        ));
    }

    let subresource_ops =
        |sub: &str, sub_kind: (String, String, String), sub_def: &str, patch: bool| {
            let suffix = camel(sub);
            let mut ops = vec![Operation {
                method: "get",
                action: "get",
                id: format!("read{opg}{scope}{kind}{suffix}"),
                description: format!("read {sub} of the specified {kind}"),
                gvk: sub_kind.clone(),
                query: Vec::new(),
                body: None,
                response: sub_def.to_string(),
                created: false,
            }];
            ops.push(Operation {
                method: "put",
                action: "put",
                id: format!("replace{opg}{scope}{kind}{suffix}"),
                description: format!("replace {sub} of the specified {kind}"),
                gvk: sub_kind.clone(),
                query: write_q.clone(),
                body: Some((sub_def.to_string(), BODY_TYPES.to_vec())),
                response: sub_def.to_string(),
                created: true,
            });
            if patch {
                ops.push(Operation {
                    method: "patch",
                    action: "patch",
                    id: format!("patch{opg}{scope}{kind}{suffix}"),
                    description: format!("partially update {sub} of the specified {kind}"),
                    gvk: sub_kind,
                    query: patch_q.clone(),
                    body: Some((PATCH.to_string(), patch_types.to_vec())),
                    response: sub_def.to_string(),
                    created: true,
                });
            }
            ops
        };
    if r.has_subresource("status") {
        out.push((
            format!("{item}/status"),
            subresource_ops("status", gvk.clone(), def, true),
        ));
    }
    if r.has_subresource("scale") {
        let scale_gvk = (
            "autoscaling".to_string(),
            "v1".to_string(),
            "Scale".to_string(),
        );
        out.push((
            format!("{item}/scale"),
            subresource_ops("scale", scale_gvk, SCALE, true),
        ));
    }
    if r.has_subresource("token") {
        out.push((
            format!("{item}/token"),
            vec![Operation {
                method: "post",
                action: "post",
                id: format!("create{opg}{scope}{kind}Token"),
                description: format!("create token of a {kind}"),
                gvk: (
                    "authentication.k8s.io".into(),
                    "v1".into(),
                    "TokenRequest".into(),
                ),
                query: write_q.clone(),
                body: Some((TOKEN_REQUEST.to_string(), BODY_TYPES.to_vec())),
                response: TOKEN_REQUEST.to_string(),
                created: true,
            }],
        ));
    }
    out
}

fn path_parameters(path: &str, flavor: Flavor) -> Vec<Value> {
    let mut params = Vec::new();
    let mut push = |name: &str, description: &str, in_: &str| {
        params.push(match flavor {
            Flavor::V2 => json!({ "name": name, "in": in_, "description": description, "type": "string", "uniqueItems": true, "required": in_ == "path" }),
            Flavor::V3 => {
                let mut p = json!({ "name": name, "in": in_, "description": description, "schema": { "type": "string", "uniqueItems": true } });
                if in_ == "path" {
                    p["required"] = json!(true);
                }
                p
            }
        });
    };
    if path.contains("{name}") {
        push("name", "name of the resource", "path");
    }
    if path.contains("{namespace}") {
        push(
            "namespace",
            "object name and auth scope, such as for teams and projects",
            "path",
        );
    }
    push(Q_PRETTY.0, Q_PRETTY.2, "query");
    params
}

fn render_operation(op: &Operation, flavor: Flavor, tag: &str) -> Value {
    let params: Vec<Value> = op
        .query
        .iter()
        .map(|(name, ty, description)| match flavor {
            Flavor::V2 => json!({ "name": name, "in": "query", "description": description, "type": ty, "uniqueItems": true }),
            Flavor::V3 => json!({ "name": name, "in": "query", "description": description, "schema": { "type": ty, "uniqueItems": true } }),
        })
        .collect();
    let mut codes = vec!["200"];
    if op.created {
        codes.push("201");
    }
    if op.method == "delete" || op.method == "post" {
        codes.push("202");
    }
    let mut o = Map::new();
    o.insert("tags".into(), json!([tag]));
    o.insert("description".into(), json!(op.description));
    o.insert("operationId".into(), json!(op.id));
    let mut responses = Map::new();
    match flavor {
        Flavor::V2 => {
            let mut params = params;
            if let Some((def, types)) = &op.body {
                params.insert(
                    0,
                    json!({ "name": "body", "in": "body", "required": op.method != "delete", "schema": flavor.schema_ref(def) }),
                );
                o.insert("consumes".into(), json!(types));
            } else {
                o.insert("consumes".into(), json!(["*/*"]));
            }
            o.insert("produces".into(), json!(RESPONSE_TYPES));
            o.insert("schemes".into(), json!(["https"]));
            if !params.is_empty() {
                o.insert("parameters".into(), Value::Array(params));
            }
            for code in codes {
                responses.insert(code.into(), json!({ "description": code_text(code), "schema": flavor.schema_ref(&op.response) }));
            }
            responses.insert("401".into(), json!({ "description": "Unauthorized" }));
        }
        Flavor::V3 => {
            if !params.is_empty() {
                o.insert("parameters".into(), Value::Array(params));
            }
            if let Some((def, types)) = &op.body {
                let content: Map<String, Value> = types
                    .iter()
                    .map(|t| (t.to_string(), json!({ "schema": flavor.schema_ref(def) })))
                    .collect();
                let mut body = json!({ "content": content });
                if op.method != "delete" {
                    body["required"] = json!(true);
                }
                o.insert("requestBody".into(), body);
            }
            for code in codes {
                let content: Map<String, Value> = RESPONSE_TYPES
                    .iter()
                    .map(|t| {
                        (
                            t.to_string(),
                            json!({ "schema": flavor.schema_ref(&op.response) }),
                        )
                    })
                    .collect();
                responses.insert(
                    code.into(),
                    json!({ "description": code_text(code), "content": content }),
                );
            }
            responses.insert("401".into(), json!({ "description": "Unauthorized" }));
        }
    }
    o.insert("responses".into(), Value::Object(responses));
    o.insert("x-kubernetes-action".into(), json!(op.action));
    o.insert(
        "x-kubernetes-group-version-kind".into(),
        json!({ "group": op.gvk.0, "kind": op.gvk.2, "version": op.gvk.1 }),
    );
    Value::Object(o)
}

fn code_text(code: &str) -> &'static str {
    match code {
        "200" => "OK",
        "201" => "Created",
        "202" => "Accepted",
        _ => "Unauthorized",
    }
}

fn tag_for(group: &str, version: &str) -> String {
    let g = if group.is_empty() {
        "core".to_string()
    } else {
        let g = group.strip_suffix(".k8s.io").unwrap_or(group);
        let mut c = camel(g);
        if let Some(first) = c.get(..1) {
            c = first.to_lowercase() + &c[1..];
        }
        c
    };
    format!("{g}_{version}")
}

// ---------------------------------------------------------------------------------------------
// Document assembly
// ---------------------------------------------------------------------------------------------

/// The kinds to publish, grouped by group-version key, with the definitions they need.
struct Model<'a> {
    by_gv: BTreeMap<String, Vec<Publishable<'a>>>,
    /// Definitions for CRD kinds (and open schemas for unknown built-ins), per flavour.
    extra_v2: Map<String, Value>,
    extra_v3: Map<String, Value>,
}

fn build_model<'a>(builtins: &'a [ServedResource], crds: &'a [CrdKind]) -> Model<'a> {
    let mut by_gv: BTreeMap<String, Vec<Publishable<'a>>> = BTreeMap::new();
    let mut extra_v2 = Map::new();
    let mut extra_v3 = Map::new();
    for r in builtins {
        let (definition, list_definition) = match find_builtin(&r.group, &r.version, &r.kind) {
            Some(b) => (
                b.definition.clone(),
                (!b.list_kind.is_empty()).then(|| format!("{}List", b.definition)),
            ),
            None => {
                // A built-in kind without a k8s-openapi schema: publish an open object schema.
                let definition = crd_definition_name(
                    if r.group.is_empty() {
                        "api.k8s.io"
                    } else {
                        &r.group
                    },
                    &r.version,
                    &r.kind,
                );
                let list_definition = format!("{definition}List");
                for (flavor, extra) in [(Flavor::V2, &mut extra_v2), (Flavor::V3, &mut extra_v3)] {
                    let open = CrdKind {
                        resource: r.clone(),
                        list_kind: format!("{}List", r.kind),
                        definition: definition.clone(),
                        schema: json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true }),
                    };
                    extra.insert(definition.clone(), crd_schema(flavor, &open));
                    extra.insert(
                        list_definition.clone(),
                        list_schema(flavor, &definition, &r.group, &r.version, &open.list_kind),
                    );
                }
                (definition, Some(list_definition))
            }
        };
        by_gv.entry(r.gv_key()).or_default().push(Publishable {
            resource: r,
            definition,
            list_definition,
            strategic: true,
        });
    }
    for c in crds {
        // A CRD may not shadow a served built-in kind.
        let key = c.resource.gv_key();
        let taken = by_gv.get(&key).is_some_and(|v| {
            v.iter().any(|p| {
                p.resource.kind == c.resource.kind || p.resource.plural == c.resource.plural
            })
        });
        if taken {
            continue;
        }
        let list_definition = format!("{}List", c.definition);
        for (flavor, extra) in [(Flavor::V2, &mut extra_v2), (Flavor::V3, &mut extra_v3)] {
            extra.insert(c.definition.clone(), crd_schema(flavor, c));
            extra.insert(
                list_definition.clone(),
                list_schema(
                    flavor,
                    &c.definition,
                    &c.resource.group,
                    &c.resource.version,
                    &c.list_kind,
                ),
            );
        }
        by_gv.entry(key).or_default().push(Publishable {
            resource: &c.resource,
            definition: c.definition.clone(),
            list_definition: Some(list_definition),
            strategic: false,
        });
    }
    Model {
        by_gv,
        extra_v2,
        extra_v3,
    }
}

fn lookup_definition<'m>(model: &'m Model<'_>, flavor: Flavor, name: &str) -> Option<&'m Value> {
    let extra = match flavor {
        Flavor::V2 => &model.extra_v2,
        Flavor::V3 => &model.extra_v3,
    };
    extra
        .get(name)
        .or_else(|| builtin_definitions(flavor).get(name))
}

/// Collects every `$ref` target under `v` (definition names, without the prefix).
fn collect_refs(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if k == "$ref" {
                    if let Some(name) = child.as_str().and_then(|s| s.strip_prefix(prefix)) {
                        out.push(name.to_string());
                    }
                } else {
                    collect_refs(child, prefix, out);
                }
            }
        }
        Value::Array(a) => {
            for child in a {
                collect_refs(child, prefix, out);
            }
        }
        _ => {}
    }
}

/// The transitive closure of definitions referenced from `roots`.
fn closure(model: &Model<'_>, flavor: Flavor, roots: &Value) -> Map<String, Value> {
    let prefix = flavor.ref_prefix();
    let mut pending = Vec::new();
    collect_refs(roots, prefix, &mut pending);
    let mut seen = BTreeSet::new();
    let mut out = BTreeMap::new();
    while let Some(name) = pending.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(def) = lookup_definition(model, flavor, &name) {
            collect_refs(def, prefix, &mut pending);
            out.insert(name, def.clone());
        }
    }
    out.into_iter().collect()
}

fn paths_for(publishables: &[Publishable<'_>], flavor: Flavor) -> Map<String, Value> {
    let mut paths = BTreeMap::new();
    for p in publishables {
        let tag = tag_for(&p.resource.group, &p.resource.version);
        for (path, ops) in kind_paths(p) {
            let mut item = Map::new();
            for op in &ops {
                item.insert(op.method.to_string(), render_operation(op, flavor, &tag));
            }
            item.insert(
                "parameters".into(),
                Value::Array(path_parameters(&path, flavor)),
            );
            paths.insert(path, Value::Object(item));
        }
    }
    paths.into_iter().collect()
}

fn v3_document(model: &Model<'_>, publishables: &[Publishable<'_>]) -> Value {
    let paths = paths_for(publishables, Flavor::V3);
    let mut roots = Value::Object(paths.clone());
    // Kind and list definitions are roots even when no operation returns them.
    let mut root_refs = Vec::new();
    for p in publishables {
        root_refs.push(Flavor::V3.schema_ref(&p.definition));
        if let Some(l) = &p.list_definition {
            root_refs.push(Flavor::V3.schema_ref(l));
        }
    }
    if let Value::Object(m) = &mut roots {
        m.insert("x-roots".into(), Value::Array(root_refs));
    }
    let schemas = closure(model, Flavor::V3, &roots);
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": KUBERNETES_VERSION },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": { "BearerToken": { "type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header" } }
        },
        "security": [{ "BearerToken": [] }]
    })
}

fn v2_document(model: &Model<'_>) -> Value {
    let mut paths = Map::new();
    let mut root_refs = Vec::new();
    for publishables in model.by_gv.values() {
        paths.extend(paths_for(publishables, Flavor::V2));
        for p in publishables {
            root_refs.push(Flavor::V2.schema_ref(&p.definition));
            if let Some(l) = &p.list_definition {
                root_refs.push(Flavor::V2.schema_ref(l));
            }
        }
    }
    let mut roots = Value::Object(paths.clone());
    if let Value::Object(m) = &mut roots {
        m.insert("x-roots".into(), Value::Array(root_refs));
    }
    let definitions = closure(model, Flavor::V2, &roots);
    json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": KUBERNETES_VERSION },
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": { "BearerToken": { "type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header" } },
        "security": [{ "BearerToken": [] }]
    })
}

/// The Kubernetes version the documents claim (the `info.version` of the real server's documents).
pub const KUBERNETES_VERSION: &str = "v1.33.0";

/// The OpenAPI v2 document for the given served built-ins and registered CRD objects.
pub fn openapi_v2(builtins: &[ServedResource], crds: &[Value]) -> Value {
    let crd_kinds = crd_kinds(crds);
    let model = build_model(builtins, &crd_kinds);
    v2_document(&model)
}

/// The v3 document of one group-version (`group` is `""` for the core group), or `None` if nothing is served there.
pub fn openapi_v3_group_version(
    group: &str,
    version: &str,
    builtins: &[ServedResource],
    crds: &[Value],
) -> Option<Value> {
    let crd_kinds = crd_kinds(crds);
    let model = build_model(builtins, &crd_kinds);
    let key = gv_key(group, version);
    let publishables = model.by_gv.get(&key)?;
    Some(v3_document(&model, publishables))
}

// ---------------------------------------------------------------------------------------------
// Serialized documents, cache and HTTP answers
// ---------------------------------------------------------------------------------------------

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Bump when the generated documents change shape, so per-group-version hashes change with them.
const GENERATOR_REVISION: &[u8] = b"kube-sim-openapi-1";

fn fingerprint(builtins: &[ServedResource], crds: &[Value]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(GENERATOR_REVISION);
    for r in builtins {
        h.update(serde_json::to_vec(r).unwrap_or_default());
        h.update([0]);
    }
    h.update([1]);
    for c in crds {
        // Only the spec shapes the documents; status and metadata churn must not regenerate them.
        h.update(serde_json::to_vec(&c["spec"]).unwrap_or_default());
        h.update([0]);
    }
    h.finalize().into()
}

/// The hash of everything one group-version document is generated from (its kinds and their CRD schemas).
/// The index publishes it, so clients re-fetch exactly the group-versions whose inputs changed.
fn group_version_hash(model: &Model<'_>, publishables: &[Publishable<'_>]) -> String {
    let mut h = Sha256::new();
    h.update(GENERATOR_REVISION);
    for p in publishables {
        h.update(serde_json::to_vec(p.resource).unwrap_or_default());
        h.update(p.definition.as_bytes());
        if let Some(def) = model.extra_v3.get(&p.definition) {
            h.update(serde_json::to_vec(def).unwrap_or_default());
        }
        h.update([0]);
    }
    hex_upper(&h.finalize())
}

fn v3_index_value(model: &Model<'_>) -> (Value, BTreeMap<String, String>) {
    let mut index = Map::new();
    let mut hashes = BTreeMap::new();
    for (gv, publishables) in &model.by_gv {
        let hash = group_version_hash(model, publishables);
        index.insert(
            gv.clone(),
            json!({ "serverRelativeURL": format!("/openapi/v3/{gv}?hash={hash}") }),
        );
        hashes.insert(gv.clone(), hash);
    }
    (json!({ "paths": index }), hashes)
}

/// The v3 index: `{"paths": {"apis/apps/v1": {"serverRelativeURL": "/openapi/v3/apis/apps/v1?hash=..."}}}`.
pub fn openapi_v3_index(builtins: &[ServedResource], crds: &[Value]) -> Value {
    let crd_kinds = crd_kinds(crds);
    let model = build_model(builtins, &crd_kinds);
    v3_index_value(&model).0
}

/// The inputs and serialized documents of the current set of served resources.
#[derive(Debug)]
struct CacheState {
    fingerprint: [u8; 32],
    builtins: Vec<ServedResource>,
    crds: Vec<CrdKind>,
    index: Bytes,
    /// Group-version key -> hash of its inputs.
    hashes: BTreeMap<String, String>,
    /// Serialized group-version documents by input hash; entries survive changes elsewhere.
    v3: BTreeMap<String, Bytes>,
    v2: Option<Bytes>,
    /// The v2 document in protobuf (`super::openapi_pb`).
    v2_pb: Option<Bytes>,
}

/// Generates the documents lazily and caches them: the index on each change of the served resources or
/// CRD specs, a group-version document when first requested after its own inputs changed, v2 when first
/// requested as JSON. Thread-safe; generation happens under the lock (once per change).
#[derive(Debug, Default)]
pub struct OpenApiCache {
    state: Mutex<Option<CacheState>>,
}

/// An HTTP answer for an `/openapi/...` request, for the server to send as is.
#[derive(Clone, Debug)]
pub struct OpenApiResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl OpenApiResponse {
    fn json(status: u16, body: Bytes) -> OpenApiResponse {
        OpenApiResponse {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body,
        }
    }

    fn status(code: u16, reason: &str, message: &str) -> OpenApiResponse {
        let body = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code
        });
        OpenApiResponse::json(
            code,
            Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
        )
    }
}

/// Whether an `Accept` header prefers the v2 document in protobuf (what client-go asks for): the
/// protobuf type comes before any JSON type in the list.
fn accepts_v2_protobuf(accept: &str) -> bool {
    for part in accept.split(',') {
        let media = part.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case(OPENAPI_V2_PROTOBUF) {
            return true;
        }
        if accepts_json(Some(media)) {
            return false;
        }
    }
    false
}

/// Whether an `Accept` header admits JSON (absent, `*/*`, `application/*`, `application/json`).
fn accepts_json(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return true;
    };
    if accept.trim().is_empty() {
        return true;
    }
    accept.split(',').any(|part| {
        let media = part
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        matches!(media.as_str(), "*/*" | "application/*" | "application/json")
    })
}

impl OpenApiCache {
    pub fn new() -> OpenApiCache {
        OpenApiCache::default()
    }

    /// Answers `GET /openapi/v2`, `/openapi/v3` and `/openapi/v3/<gv>` for the given served built-ins and
    /// registered CRD objects (`path` without the query string, `query` the raw query string, possibly empty).
    /// Returns `None` for paths outside `/openapi/`. v2 is served in protobuf to requests asking for it
    /// (client-go's `OpenAPISchema()`), see `openapi_pb`; other requests that do not accept JSON get
    /// `406 Not Acceptable`.
    pub fn respond(
        &self,
        builtins: &[ServedResource],
        crds: &[Value],
        path: &str,
        query: &str,
        accept: Option<&str>,
    ) -> Option<OpenApiResponse> {
        let path = path.trim_end_matches('/');
        let rest = path.strip_prefix("/openapi/")?;
        if rest != "v2" && rest != "v3" && !rest.starts_with("v3/") {
            return Some(OpenApiResponse::status(
                404,
                "NotFound",
                &format!("the server could not find the requested resource ({path})"),
            ));
        }
        let v2_protobuf = rest == "v2" && accept.is_some_and(accepts_v2_protobuf);
        if !v2_protobuf && !accepts_json(accept) {
            return Some(OpenApiResponse::status(
                406,
                "NotAcceptable",
                &format!(
                    "only the following media types are accepted: application/json (requested: {})",
                    accept.unwrap_or("")
                ),
            ));
        }
        let fp = fingerprint(builtins, crds);
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if guard.as_ref().is_none_or(|s| s.fingerprint != fp) {
            let crd_kinds = crd_kinds(crds);
            let model = build_model(builtins, &crd_kinds);
            let (index, hashes) = v3_index_value(&model);
            let mut v3 = guard.take().map(|s| s.v3).unwrap_or_default();
            v3.retain(|hash, _| hashes.values().any(|h| h == hash));
            *guard = Some(CacheState {
                fingerprint: fp,
                builtins: builtins.to_vec(),
                crds: crd_kinds.clone(),
                index: Bytes::from(serde_json::to_vec(&index).unwrap_or_default()),
                hashes,
                v3,
                v2: None,
                v2_pb: None,
            });
        }
        let state = guard.as_mut()?;
        if rest == "v3" {
            return Some(OpenApiResponse::json(200, state.index.clone()));
        }
        if v2_protobuf {
            let body = match &state.v2_pb {
                Some(b) => b.clone(),
                None => {
                    let model = build_model(&state.builtins, &state.crds);
                    let b = Bytes::from(super::openapi_pb::v2_document(&v2_document(&model)));
                    state.v2_pb = Some(b.clone());
                    b
                }
            };
            let mut r = OpenApiResponse::json(200, body.clone());
            // The response names the type with a dot: Go's mime parser refuses the `@` form.
            r.content_type = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
            r.headers
                .push(("ETag", format!("\"{}\"", hex_upper(&Sha256::digest(&body)))));
            return Some(r);
        }
        if rest == "v2" {
            let body = match &state.v2 {
                Some(b) => b.clone(),
                None => {
                    let model = build_model(&state.builtins, &state.crds);
                    let b =
                        Bytes::from(serde_json::to_vec(&v2_document(&model)).unwrap_or_default());
                    state.v2 = Some(b.clone());
                    b
                }
            };
            let mut r = OpenApiResponse::json(200, body.clone());
            r.headers
                .push(("ETag", format!("\"{}\"", hex_upper(&Sha256::digest(&body)))));
            return Some(r);
        }
        let gv = rest.strip_prefix("v3/").unwrap_or(rest);
        let Some(hash) = state.hashes.get(gv).cloned() else {
            return Some(OpenApiResponse::status(
                404,
                "NotFound",
                &format!("the server could not find the requested resource (openapi/v3/{gv})"),
            ));
        };
        let body = match state.v3.get(&hash) {
            Some(b) => b.clone(),
            None => {
                let model = build_model(&state.builtins, &state.crds);
                let doc = model
                    .by_gv
                    .get(gv)
                    .map(|p| v3_document(&model, p))
                    .unwrap_or(Value::Null);
                let b = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
                state.v3.insert(hash.clone(), b.clone());
                b
            }
        };
        let requested_hash = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("hash="))
            .unwrap_or("");
        let mut r = OpenApiResponse::json(200, body);
        r.headers.push(("ETag", format!("\"{hash}\"")));
        if requested_hash == hash {
            r.headers
                .push(("Cache-Control", "public, immutable".to_string()));
        } else {
            r.headers
                .push(("Cache-Control", "no-cache, private".to_string()));
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widget_crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": { "name": "widgets.example.com" },
            "spec": {
                "group": "example.com",
                "names": { "kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList" },
                "scope": "Namespaced",
                "versions": [
                    {
                        "name": "v1", "served": true, "storage": true,
                        "subresources": { "status": {} },
                        "schema": { "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": { "size": { "type": "integer", "minimum": 1 }, "mode": { "type": "string", "nullable": true } },
                                    "x-kubernetes-validations": [{ "rule": "self.size < 10" }]
                                },
                                "status": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
                            }
                        } }
                    },
                    { "name": "v0", "served": false, "storage": false, "schema": { "openAPIV3Schema": { "type": "object" } } }
                ]
            }
        })
    }

    fn doc_v3(group: &str, version: &str) -> Value {
        openapi_v3_group_version(group, version, &builtin_resources(), &[widget_crd()])
            .expect("gv is served")
    }

    /// Every `$ref` in the document must resolve to a definition in the same document.
    fn assert_refs_resolve(doc: &Value, defs_ptr: &str, prefix: &str) {
        let defs = doc
            .pointer(defs_ptr)
            .and_then(Value::as_object)
            .expect("definitions");
        let mut refs = Vec::new();
        collect_refs(doc, prefix, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            assert!(defs.contains_key(&r), "dangling reference {r}");
        }
    }

    #[test]
    fn deployment_definition_has_gvk_and_patch_metadata() {
        let doc = doc_v3("apps", "v1");
        let schemas = &doc["components"]["schemas"];
        let dep = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            dep["x-kubernetes-group-version-kind"],
            json!([{ "group": "apps", "kind": "Deployment", "version": "v1" }])
        );
        assert_eq!(
            schemas["io.k8s.api.apps.v1.DeploymentList"]["x-kubernetes-group-version-kind"][0]["kind"],
            "DeploymentList"
        );
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
        let volumes = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"];
        assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
        let ports = &schemas["io.k8s.api.core.v1.Container"]["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
        let mounts = &schemas["io.k8s.api.core.v1.Container"]["properties"]["volumeMounts"];
        assert_eq!(mounts["x-kubernetes-patch-merge-key"], "mountPath");
        let conds = &schemas["io.k8s.api.apps.v1.DeploymentStatus"]["properties"]["conditions"];
        assert_eq!(conds["x-kubernetes-patch-merge-key"], "type");
        // References with siblings are wrapped in allOf (as kubectl's v3 patch-meta resolver expects).
        let spec = &dep["properties"]["spec"];
        assert_eq!(
            spec["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
        );
        assert_refs_resolve(&doc, "/components/schemas", "#/components/schemas/");
        // Only apps/v1 kinds carry a GVK naming apps/v1.
        assert!(schemas.get("io.k8s.api.batch.v1.Job").is_none());
    }

    #[test]
    fn deployment_patch_operation_supports_field_validation_and_smp() {
        let doc = doc_v3("apps", "v1");
        let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
        let patch = &item["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({ "group": "apps", "kind": "Deployment", "version": "v1" })
        );
        assert_eq!(patch["x-kubernetes-action"], "patch");
        assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
        let names: Vec<&str> = patch["parameters"]
            .as_array()
            .expect("params")
            .iter()
            .filter(|p| p["in"] == "query")
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(names.contains(&"fieldValidation"), "{names:?}");
        assert!(names.contains(&"fieldManager"));
        assert!(names.contains(&"force"));
        let content = patch["requestBody"]["content"]
            .as_object()
            .expect("content");
        assert!(content.contains_key("application/strategic-merge-patch+json"));
        assert!(content.contains_key("application/apply-patch+yaml"));
        assert!(item["get"].is_object() && item["put"].is_object() && item["delete"].is_object());
        assert!(doc["paths"]["/apis/apps/v1/deployments"]["get"].is_object());
        let scale =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
        assert_eq!(scale["x-kubernetes-group-version-kind"]["kind"], "Scale");
        assert!(doc["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"].is_object());
        assert!(
            doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"]["patch"]
                .is_object()
        );
    }

    #[test]
    fn crd_document_is_named_like_the_real_server_and_has_no_smp() {
        let doc = doc_v3("example.com", "v1");
        let schemas = &doc["components"]["schemas"];
        let w = &schemas["io.example.com.v1.Widget"];
        assert!(w.is_null(), "group labels are reversed");
        let w = &schemas["com.example.v1.Widget"];
        assert_eq!(w["x-kubernetes-group-version-kind"][0]["kind"], "Widget");
        assert_eq!(w["properties"]["spec"]["properties"]["size"]["minimum"], 1);
        assert_eq!(
            w["properties"]["metadata"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert_eq!(w["properties"]["kind"]["type"], "string");
        assert!(schemas["com.example.v1.WidgetList"].is_object());
        let patch =
            &doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"];
        let content = patch["requestBody"]["content"]
            .as_object()
            .expect("content");
        assert!(!content.contains_key("application/strategic-merge-patch+json"));
        assert!(content.contains_key("application/merge-patch+json"));
        assert!(
            doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}/status"]
                .is_object()
        );
        assert_refs_resolve(&doc, "/components/schemas", "#/components/schemas/");
        // An unserved version is not published.
        assert!(
            openapi_v3_group_version("example.com", "v0", &builtin_resources(), &[widget_crd()])
                .is_none()
        );
    }

    #[test]
    fn every_patch_and_list_type_entry_names_a_real_property() {
        for flavor in [Flavor::V2, Flavor::V3] {
            let defs = builtin_definitions(flavor);
            for (def, prop, _, strategy) in PATCH_META {
                let p = &defs[*def]["properties"][*prop];
                assert_eq!(p["x-kubernetes-patch-strategy"], *strategy, "{def}.{prop}");
                assert_eq!(p["type"], "array", "{def}.{prop}");
            }
            for (def, prop, list_type, _) in LIST_TYPES {
                assert_eq!(
                    defs[*def]["properties"][*prop]["x-kubernetes-list-type"], *list_type,
                    "{def}.{prop}"
                );
            }
        }
    }

    #[test]
    fn documents_are_sized_and_timed() {
        let builtins = builtin_resources();
        let crds = [widget_crd()];
        let cache = OpenApiCache::new();
        let start = std::time::Instant::now();
        let index = cache
            .respond(&builtins, &crds, "/openapi/v3", "", None)
            .expect("openapi");
        let index_time = start.elapsed();
        let start = std::time::Instant::now();
        let core = cache
            .respond(&builtins, &crds, "/openapi/v3/api/v1", "", None)
            .expect("openapi");
        let core_time = start.elapsed();
        let start = std::time::Instant::now();
        let again = cache
            .respond(&builtins, &crds, "/openapi/v3/api/v1", "", None)
            .expect("openapi");
        let cached_time = start.elapsed();
        let start = std::time::Instant::now();
        let v2 = cache
            .respond(&builtins, &crds, "/openapi/v2", "", None)
            .expect("openapi");
        let v2_time = start.elapsed();
        println!(
            "openapi: index {index_time:?} ({} B); api/v1 {core_time:?} ({} B), cached {cached_time:?}; v2 {v2_time:?} ({} B)",
            index.body.len(),
            core.body.len(),
            v2.body.len()
        );
        assert_eq!(core.body, again.body);
        assert!(v2.body.len() > 100_000);
    }

    #[test]
    fn crd_definition_names_reverse_the_group() {
        assert_eq!(
            crd_definition_name("hypersync.io", "v1alpha1", "ModelEntry"),
            "io.hypersync.v1alpha1.ModelEntry"
        );
        assert_eq!(
            crd_definition_name("a.b.example.com", "v1", "X"),
            "com.example.b.a.v1.X"
        );
    }

    #[test]
    fn cluster_scoped_and_core_paths() {
        let rbac = doc_v3("rbac.authorization.k8s.io", "v1");
        let p = &rbac["paths"]["/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}"]["patch"];
        assert_eq!(p["operationId"], "patchRbacAuthorizationV1ClusterRole");
        assert!(
            rbac["paths"]["/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/{name}"]
                .is_object()
        );
        let core = doc_v3("", "v1");
        assert!(
            core["paths"]["/api/v1/namespaces/{namespace}/services/{name}"]["patch"].is_object()
        );
        assert!(core["paths"]["/api/v1/namespaces/{name}"]["patch"].is_object());
        assert!(
            core["paths"]["/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"]["post"]
                .is_object()
        );
        let svc_ports =
            &core["components"]["schemas"]["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"];
        assert_eq!(svc_ports["x-kubernetes-patch-merge-key"], "port");
        assert_refs_resolve(&core, "/components/schemas", "#/components/schemas/");
        // Review kinds only have a create operation.
        let authz = doc_v3("authorization.k8s.io", "v1");
        let ssar = &authz["paths"]["/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"];
        assert!(ssar["post"].is_object() && ssar["get"].is_null());
    }

    #[test]
    fn v2_document_uses_definitions_and_consumes() {
        let doc = openapi_v2(&builtin_resources(), &[widget_crd()]);
        assert_eq!(doc["swagger"], "2.0");
        let defs = doc["definitions"].as_object().expect("definitions");
        assert!(defs.contains_key("io.k8s.api.apps.v1.Deployment"));
        let w = &defs["com.example.v1.Widget"];
        assert!(
            w["properties"]["spec"]
                .get("x-kubernetes-validations")
                .is_none()
        );
        assert!(
            w["properties"]["spec"]["properties"]["mode"]
                .get("nullable")
                .is_none()
        );
        assert_eq!(
            w["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        let consumes = patch["consumes"].as_array().expect("consumes");
        assert!(consumes.contains(&json!("application/strategic-merge-patch+json")));
        assert_eq!(patch["parameters"][0]["in"], "body");
        let crd_patch =
            &doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"];
        assert!(
            !crd_patch["consumes"]
                .as_array()
                .expect("consumes")
                .contains(&json!("application/strategic-merge-patch+json"))
        );
        assert_eq!(
            defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]["x-kubernetes-patch-merge-key"],
            "name"
        );
        assert_refs_resolve(&doc, "/definitions", "#/definitions/");
        let text = serde_json::to_string(&doc).expect("serializes");
        assert!(!text.contains("#/components/schemas/"));
    }

    fn get(
        cache: &OpenApiCache,
        crds: &[Value],
        path_and_query: &str,
        accept: Option<&str>,
    ) -> OpenApiResponse {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        cache
            .respond(&builtin_resources(), crds, path, query, accept)
            .expect("openapi path")
    }

    fn body(r: &OpenApiResponse) -> Value {
        serde_json::from_slice(&r.body).expect("json body")
    }

    #[test]
    fn index_lists_group_versions_and_their_urls_serve_documents() {
        let cache = OpenApiCache::new();
        let crds = [widget_crd()];
        let index = body(&get(&cache, &crds, "/openapi/v3", None));
        assert_eq!(index, openapi_v3_index(&builtin_resources(), &crds));
        let paths = index["paths"].as_object().expect("paths");
        for gv in [
            "api/v1",
            "apis/apps/v1",
            "apis/batch/v1",
            "apis/example.com/v1",
            "apis/apiextensions.k8s.io/v1",
        ] {
            let url = paths[gv]["serverRelativeURL"].as_str().expect("url");
            assert!(url.starts_with(&format!("/openapi/v3/{gv}?hash=")), "{url}");
            let r = get(&cache, &crds, url, Some("application/json"));
            assert_eq!(r.status, 200);
            assert!(
                r.headers
                    .iter()
                    .any(|(k, v)| *k == "Cache-Control" && v.contains("immutable"))
            );
            assert_eq!(body(&r)["openapi"], "3.0.0");
        }
        assert!(!paths.contains_key("apis/example.com/v0"));
    }

    #[test]
    fn respond_serves_json_and_v2_protobuf() {
        let cache = OpenApiCache::new();
        let r = get(&cache, &[], "/openapi/v2", Some(OPENAPI_V2_PROTOBUF));
        assert_eq!(
            (r.status, r.content_type),
            (
                200,
                "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
            )
        );
        assert_eq!(&r.body[..5], b"\x0a\x032.0", "Document.swagger first");
        assert_eq!(
            get(&cache, &[], "/openapi/v2", Some("application/yaml")).status,
            406
        );
        assert_eq!(
            get(&cache, &[], "/openapi/v3", Some(OPENAPI_V2_PROTOBUF)).status,
            406
        );
        let r = get(
            &cache,
            &[],
            "/openapi/v2",
            Some(&format!("application/json, {OPENAPI_V2_PROTOBUF}")),
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, "application/json");
        assert_eq!(body(&r)["swagger"], "2.0");
        let r = get(&cache, &[], "/openapi/v3/apis/apps/v1?hash=stale", None);
        assert_eq!(r.status, 200);
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| *k == "Cache-Control" && v.contains("no-cache"))
        );
        assert_eq!(
            get(&cache, &[], "/openapi/v3/apis/nope/v1", None).status,
            404
        );
        assert_eq!(get(&cache, &[], "/openapi/v4", None).status, 404);
        assert!(
            cache
                .respond(&builtin_resources(), &[], "/api/v1", "", None)
                .is_none()
        );
    }

    #[test]
    fn cache_regenerates_only_what_changed() {
        let cache = OpenApiCache::new();
        let mut crd = widget_crd();
        let index_a = body(&get(
            &cache,
            std::slice::from_ref(&crd),
            "/openapi/v3",
            None,
        ));
        let url = |index: &Value, gv: &str| {
            index["paths"][gv]["serverRelativeURL"]
                .as_str()
                .expect("url")
                .to_string()
        };
        // Status and metadata churn on the CRD changes nothing.
        crd["status"] = json!({ "conditions": [{ "type": "Established", "status": "True" }] });
        crd["metadata"]["resourceVersion"] = json!("42");
        let index_b = body(&get(
            &cache,
            std::slice::from_ref(&crd),
            "/openapi/v3",
            None,
        ));
        assert_eq!(index_a, index_b);
        // A schema change changes only that group-version's hash, and its document.
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["color"] = json!({ "type": "string" });
        let index_c = body(&get(
            &cache,
            std::slice::from_ref(&crd),
            "/openapi/v3",
            None,
        ));
        assert_ne!(
            url(&index_a, "apis/example.com/v1"),
            url(&index_c, "apis/example.com/v1")
        );
        assert_eq!(url(&index_a, "apis/apps/v1"), url(&index_c, "apis/apps/v1"));
        let doc = body(&get(
            &cache,
            std::slice::from_ref(&crd),
            "/openapi/v3/apis/example.com/v1",
            None,
        ));
        assert_eq!(
            doc["components"]["schemas"]["com.example.v1.Widget"]["properties"]["spec"]["properties"]
                ["color"]["type"],
            "string"
        );
        // Removing the CRD removes its group-version.
        let index_d = body(&get(&cache, &[], "/openapi/v3", None));
        assert!(index_d["paths"].get("apis/example.com/v1").is_none());
        assert_eq!(
            get(&cache, &[], "/openapi/v3/apis/example.com/v1", None).status,
            404
        );
    }

    #[test]
    fn unknown_builtin_gets_an_open_schema_and_malformed_crds_are_skipped() {
        let mut builtins = builtin_resources();
        builtins.push(ServedResource {
            group: "example.k8s.io".into(),
            version: "v1".into(),
            kind: "Thing".into(),
            plural: "things".into(),
            namespaced: false,
            verbs: vec!["get".into(), "list".into()],
            subresources: vec![],
        });
        let bad = json!({ "spec": { "group": "x.io", "versions": "nope" } });
        let doc =
            openapi_v3_group_version("example.k8s.io", "v1", &builtins, &[bad]).expect("served");
        let thing = &doc["components"]["schemas"]["io.k8s.example.v1.Thing"];
        assert_eq!(thing["x-kubernetes-preserve-unknown-fields"], true);
        assert!(doc["paths"]["/apis/example.k8s.io/v1/things/{name}"]["get"].is_object());
        assert!(doc["paths"]["/apis/example.k8s.io/v1/things/{name}"]["patch"].is_null());
    }
}

//! Deleting the children a plan no longer contains: an entry switched from `local` to `remote` loses
//! its engine Deployment, Service and NetworkPolicy; a local entry whose `cache` is removed loses its
//! weight-cache PVC; a node whose lifecycle changed loses the workload of the other kind.
//!
//! A child is deleted only when all of these hold (the pure [`unwanted`] decides): it carries the
//! operator's labels for this owner (managed-by and the owner's selector), its controller
//! ownerReference names this owner's uid, it is not being deleted already, and the owner's plan does
//! not contain its kind and name. The DELETE carries a uid precondition, so an object re-created under
//! the same name meanwhile is never deleted.
//!
//! Cost, O(affected objects), no namespace scan:
//! - Kinds the operator watches (Deployments, Jobs) are looked up in their stores by the one name the
//!   owner could have given them, on every reconcile (a hash lookup).
//! - Kinds it does not watch (Services, NetworkPolicies, PVCs) are found with one label-selected,
//!   metadata-only LIST per kind the plan no longer wants, and only when the entry's
//!   `metadata.generation` differs from its `status.observedGeneration` and is not 1 (the spec
//!   changed since the last reconcile that completed; [`spec_changed`]). The prune runs before the
//!   status is written, so a failed LIST or DELETE is retried with the generation still unobserved.
//!
//! Kept on purpose: a remote entry keeps the weight-cache PVC its local source had (switching back
//! reuses the downloaded weights); it still goes with the entry through its ownerReference.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, Preconditions};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::context::{Context, reference};
use super::watch;
use crate::api::agent_node::LifecycleMode;
use crate::api::model_entry::ModelEntrySpec;
use crate::api::{AgentNode, ModelEntry};
use crate::error::Error;
use crate::workload::agent::{agent_selector, agent_workload_name};
use crate::workload::inference::{cache_pvc_name, inference_name, inference_selector};
use crate::workload::labels::base_labels;

/// Event reason of a deleted child.
pub const REASON: &str = "ChildDeleted";

/// A kind of child the controllers create and may delete again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChildKind {
    Deployment,
    Service,
    NetworkPolicy,
    PersistentVolumeClaim,
    Job,
}

impl ChildKind {
    /// The Kubernetes kind.
    pub fn as_str(self) -> &'static str {
        match self {
            ChildKind::Deployment => "Deployment",
            ChildKind::Service => "Service",
            ChildKind::NetworkPolicy => "NetworkPolicy",
            ChildKind::PersistentVolumeClaim => "PersistentVolumeClaim",
            ChildKind::Job => "Job",
        }
    }

    /// The Event action of its deletion (the Event recorder folds Events of one reason and action
    /// into a series, so each kind gets its own).
    fn delete_action(self) -> &'static str {
        match self {
            ChildKind::Deployment => "DeleteDeployment",
            ChildKind::Service => "DeleteService",
            ChildKind::NetworkPolicy => "DeleteNetworkPolicy",
            ChildKind::PersistentVolumeClaim => "DeletePersistentVolumeClaim",
            ChildKind::Job => "DeleteJob",
        }
    }

    fn delete_step(self) -> &'static str {
        match self {
            ChildKind::Deployment => "delete an unwanted Deployment",
            ChildKind::Service => "delete an unwanted Service",
            ChildKind::NetworkPolicy => "delete an unwanted NetworkPolicy",
            ChildKind::PersistentVolumeClaim => "delete an unwanted PersistentVolumeClaim",
            ChildKind::Job => "delete an unwanted Job",
        }
    }
}

/// The kinds a ModelEntry creates.
pub const ENTRY_KINDS: [ChildKind; 4] = [
    ChildKind::Deployment,
    ChildKind::Service,
    ChildKind::NetworkPolicy,
    ChildKind::PersistentVolumeClaim,
];

/// A child as the operator saw it, in a store or a LIST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Child {
    pub kind: ChildKind,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    /// The uid of its controller ownerReference.
    pub controller_uid: Option<String>,
    /// It has a deletionTimestamp already.
    pub deleting: bool,
}

impl Child {
    /// From an object's metadata; `None` without a name or uid (never true for a stored object).
    pub fn of(kind: ChildKind, meta: &ObjectMeta) -> Option<Child> {
        Some(Child {
            kind,
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
            labels: meta.labels.clone().unwrap_or_default(),
            controller_uid: meta
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid.clone()),
            deleting: meta.deletion_timestamp.is_some(),
        })
    }
}

/// What an owner's plan contains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// The owner's uid: only children controlled by it are considered.
    pub owner_uid: String,
    /// Labels every child of this owner carries (managed-by and the owner's selector).
    pub selector: BTreeMap<String, String>,
    /// The children the plan contains (kept on purpose included).
    pub children: BTreeSet<(ChildKind, String)>,
    /// Why the others are not wanted, for the Event (names the spec field).
    pub why: String,
}

impl Wanted {
    /// The kinds of `kinds` of which the plan wants nothing: the only kinds worth looking for.
    pub fn kinds_to_check(&self, kinds: &[ChildKind]) -> Vec<ChildKind> {
        kinds
            .iter()
            .copied()
            .filter(|k| !self.children.iter().any(|(wk, _)| wk == k))
            .collect()
    }

    /// The label selector of a LIST of this owner's children.
    pub fn label_selector(&self) -> String {
        self.selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The children of `found` to delete: this owner's (labels and controller uid), not being deleted,
/// and not in the plan.
pub fn unwanted<'a>(wanted: &Wanted, found: &'a [Child]) -> Vec<&'a Child> {
    found
        .iter()
        .filter(|c| c.controller_uid.as_deref() == Some(wanted.owner_uid.as_str()))
        .filter(|c| {
            wanted
                .selector
                .iter()
                .all(|(k, v)| c.labels.get(k) == Some(v))
        })
        .filter(|c| !c.deleting)
        .filter(|c| !wanted.children.contains(&(c.kind, c.name.clone())))
        .collect()
}

/// What a ModelEntry's plan contains: a local source, its Deployment, Service and NetworkPolicy, and
/// the cache PVC when `cache` is set; a remote source, only the cache PVC a local source may have left
/// (kept on purpose: switching back does not download the weights again).
pub fn entry_wants(name: &str, uid: &str, spec: &ModelEntrySpec) -> Wanted {
    let mut selector = base_labels();
    selector.extend(inference_selector(name));
    let mut children = BTreeSet::new();
    let why = match &spec.source.local {
        Some(local) => {
            let engine = inference_name(name);
            children.insert((ChildKind::Deployment, engine.clone()));
            children.insert((ChildKind::Service, engine.clone()));
            children.insert((ChildKind::NetworkPolicy, engine));
            if local.cache.is_some() {
                children.insert((ChildKind::PersistentVolumeClaim, cache_pvc_name(name)));
            }
            "spec.source.local.cache is not set"
        }
        None => {
            children.insert((ChildKind::PersistentVolumeClaim, cache_pvc_name(name)));
            "spec.source is remote: the engine is no longer needed"
        }
    };
    Wanted {
        owner_uid: uid.to_string(),
        selector,
        children,
        why: why.to_string(),
    }
}

/// What an AgentNode's plan contains of its workload: a Job when Ephemeral, a Deployment when
/// Persistent (the identity and the workload's name do not depend on the mode).
pub fn node_wants(name: &str, uid: &str, mode: LifecycleMode) -> Wanted {
    let mut selector = base_labels();
    selector.extend(agent_selector(name));
    let (kind, why) = match mode {
        LifecycleMode::Ephemeral => (
            ChildKind::Job,
            "spec.lifecycle.mode is Ephemeral: the agent runs as a Job",
        ),
        LifecycleMode::Persistent => (
            ChildKind::Deployment,
            "spec.lifecycle.mode is Persistent: the agent runs as a Deployment",
        ),
    };
    Wanted {
        owner_uid: uid.to_string(),
        selector,
        children: BTreeSet::from([(kind, agent_workload_name(name))]),
        why: why.to_string(),
    }
}

/// Whether a spec change may have made a child unwanted since the children last matched the spec:
/// the generation is not the one status records as observed, and it is not the first (a spec never
/// changed since its creation is the only plan there ever was; a new entry costs no LIST).
pub fn spec_changed(generation: Option<i64>, observed: Option<i64>) -> bool {
    generation != observed && generation != Some(1)
}

/// Delete what `entry`'s plan no longer contains. The Deployment is checked in its store every time;
/// Services, NetworkPolicies and PVCs are listed (by label) only when the generation is unobserved.
pub async fn entry_children(ctx: &Context, entry: &ModelEntry) -> Result<(), Error> {
    let (Some(namespace), Some(uid)) = (entry.namespace(), entry.uid()) else {
        return Ok(());
    };
    let name = entry.name_any();
    let wanted = entry_wants(&name, &uid, &entry.spec);
    let observed = entry.status.as_ref().and_then(|s| s.observed_generation);
    let spec_changed = spec_changed(entry.metadata.generation, observed);
    let engine = inference_name(&name);
    let mut found = Vec::new();
    for kind in wanted.kinds_to_check(&ENTRY_KINDS) {
        found.extend(find(ctx, &namespace, kind, &engine, &wanted, spec_changed).await?);
    }
    delete_all(ctx, entry, &namespace, &wanted, &found).await
}

/// Delete the workload of the other kind than `node`'s lifecycle asks for (both kinds are watched:
/// one store lookup, no request unless there is something to delete).
pub async fn node_workload(
    ctx: &Context,
    node: &AgentNode,
    mode: LifecycleMode,
) -> Result<(), Error> {
    let (Some(namespace), Some(uid)) = (node.namespace(), node.uid()) else {
        return Ok(());
    };
    let name = node.name_any();
    let wanted = node_wants(&name, &uid, mode);
    let workload = agent_workload_name(&name);
    let mut found = Vec::new();
    for kind in wanted.kinds_to_check(&[ChildKind::Job, ChildKind::Deployment]) {
        found.extend(find(ctx, &namespace, kind, &workload, &wanted, false).await?);
    }
    delete_all(ctx, node, &namespace, &wanted, &found).await
}

/// The owner's children of `kind`. Watched kinds (Deployments, Jobs): from the store, by the one name
/// the owner gives that kind. The others: one label-selected, metadata-only LIST, and only when
/// `spec_changed` (otherwise nothing can have become unwanted since the last completed reconcile).
async fn find(
    ctx: &Context,
    namespace: &str,
    kind: ChildKind,
    name: &str,
    wanted: &Wanted,
    spec_changed: bool,
) -> Result<Vec<Child>, Error> {
    let key = (namespace.to_string(), name.to_string());
    let params = || ListParams::default().labels(&wanted.label_selector());
    match kind {
        ChildKind::Deployment => Ok(watch::get(&ctx.deployments, &key)
            .and_then(|d| Child::of(kind, &d.metadata))
            .into_iter()
            .collect()),
        ChildKind::Job => Ok(watch::get(&ctx.jobs, &key)
            .and_then(|j| Child::of(kind, &j.metadata))
            .into_iter()
            .collect()),
        _ if !spec_changed => Ok(Vec::new()),
        ChildKind::Service => {
            let step = "list the owner's Services";
            list_as::<Service>(ctx, namespace, kind, &params(), step).await
        }
        ChildKind::NetworkPolicy => {
            let step = "list the owner's NetworkPolicies";
            list_as::<NetworkPolicy>(ctx, namespace, kind, &params(), step).await
        }
        ChildKind::PersistentVolumeClaim => {
            let step = "list the owner's PersistentVolumeClaims";
            list_as::<PersistentVolumeClaim>(ctx, namespace, kind, &params(), step).await
        }
    }
}

async fn delete_all<K>(
    ctx: &Context,
    owner: &K,
    namespace: &str,
    wanted: &Wanted,
    found: &[Child],
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()>,
{
    for child in unwanted(wanted, found) {
        let deleted = match child.kind {
            ChildKind::Deployment => delete_as::<Deployment>(ctx, namespace, child).await?,
            ChildKind::Service => delete_as::<Service>(ctx, namespace, child).await?,
            ChildKind::NetworkPolicy => delete_as::<NetworkPolicy>(ctx, namespace, child).await?,
            ChildKind::PersistentVolumeClaim => {
                delete_as::<PersistentVolumeClaim>(ctx, namespace, child).await?
            }
            ChildKind::Job => delete_as::<Job>(ctx, namespace, child).await?,
        };
        // The next apply of the same name must not be skipped as "unchanged".
        ctx.applied
            .forget(child.kind.as_str(), namespace, &child.name);
        if deleted {
            ctx.event(
                &reference(owner),
                EventType::Normal,
                REASON,
                child.kind.delete_action(),
                format!(
                    "deleted {} {}: {}",
                    child.kind.as_str(),
                    child.name,
                    wanted.why
                ),
            )
            .await;
        }
    }
    Ok(())
}

/// One label-selected, metadata-only LIST of the owner's children of `kind`.
async fn list_as<K>(
    ctx: &Context,
    namespace: &str,
    kind: ChildKind,
    params: &ListParams,
    step: &'static str,
) -> Result<Vec<Child>, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let list = api.list_metadata(params).await.map_err(Error::kube(step))?;
    Ok(list
        .items
        .iter()
        .filter_map(|o| Child::of(kind, &o.metadata))
        .collect())
}

/// DELETE one child, this exact object (uid precondition), its dependents in the background. Whether
/// this call deleted it: already gone (404) or re-created under the same name (409) is not an error.
async fn delete_as<K>(ctx: &Context, namespace: &str, child: &Child) -> Result<bool, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(child.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(&child.name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
        Err(err) => Err(Error::kube(child.kind.delete_step())(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::labels::{LABEL_MANAGED_BY, LABEL_MODEL_ENTRY};

    fn spec(source: &str) -> ModelEntrySpec {
        let e: ModelEntry = serde_saphyr::from_str(&format!(
            "apiVersion: hypersync.io/v1alpha1\nkind: ModelEntry\nmetadata: {{name: m}}\nspec:\n  type: LLM\n  source:\n    {source}\n"
        ))
        .expect("fixture parses");
        e.spec
    }

    const LOCAL_CACHED: &str = "local: {engine: VLLM, model: org/m, cache: {size: 50Gi}}";
    const LOCAL: &str = "local: {engine: VLLM, model: org/m}";
    const REMOTE: &str = "remote: {provider: OpenAI, model: gpt-4o}";

    /// A child of entry `coder` as the operator labels and owns it.
    fn child(kind: ChildKind, name: &str, owner: &str) -> Child {
        let mut labels = base_labels();
        labels.extend(inference_selector("coder"));
        Child {
            kind,
            name: name.to_string(),
            uid: format!("{name}-uid"),
            labels,
            controller_uid: Some(owner.to_string()),
            deleting: false,
        }
    }

    fn engine(owner: &str) -> Vec<Child> {
        vec![
            child(ChildKind::Deployment, "coder", owner),
            child(ChildKind::Service, "coder", owner),
            child(ChildKind::NetworkPolicy, "coder", owner),
            child(ChildKind::PersistentVolumeClaim, "coder-cache", owner),
        ]
    }

    fn names(v: Vec<&Child>) -> Vec<(ChildKind, &str)> {
        v.into_iter().map(|c| (c.kind, c.name.as_str())).collect()
    }

    #[test]
    fn remote_entry_drops_the_engine_and_keeps_the_cache() {
        let wanted = entry_wants("coder", "u1", &spec(REMOTE));
        let found = engine("u1");
        assert_eq!(
            names(unwanted(&wanted, &found)),
            vec![
                (ChildKind::Deployment, "coder"),
                (ChildKind::Service, "coder"),
                (ChildKind::NetworkPolicy, "coder"),
            ]
        );
        assert_eq!(
            wanted.kinds_to_check(&ENTRY_KINDS),
            vec![
                ChildKind::Deployment,
                ChildKind::Service,
                ChildKind::NetworkPolicy
            ]
        );
        assert!(wanted.why.contains("spec.source"), "{}", wanted.why);
    }

    #[test]
    fn local_entry_without_cache_drops_only_the_pvc() {
        let wanted = entry_wants("coder", "u1", &spec(LOCAL));
        let found = engine("u1");
        assert_eq!(
            names(unwanted(&wanted, &found)),
            vec![(ChildKind::PersistentVolumeClaim, "coder-cache")]
        );
        assert_eq!(
            wanted.kinds_to_check(&ENTRY_KINDS),
            vec![ChildKind::PersistentVolumeClaim]
        );
        assert!(wanted.why.contains("spec.source.local.cache"));
    }

    #[test]
    fn local_entry_with_cache_wants_everything() {
        let wanted = entry_wants("coder", "u1", &spec(LOCAL_CACHED));
        assert!(unwanted(&wanted, &engine("u1")).is_empty());
        assert!(wanted.kinds_to_check(&ENTRY_KINDS).is_empty());
    }

    #[test]
    fn only_children_controlled_by_this_owner_and_labelled_as_its_own_are_deleted() {
        let wanted = entry_wants("coder", "u1", &spec(REMOTE));
        // Another owner's object with the same labels and name.
        assert!(unwanted(&wanted, &engine("u2")).is_empty());
        // An object owned by the entry but not through a controller reference.
        let mut not_controller = child(ChildKind::Service, "coder", "u1");
        not_controller.controller_uid = None;
        // The entry's uid but not the operator's labels (someone else's object).
        let mut foreign = child(ChildKind::Service, "extra", "u1");
        foreign.labels.remove(LABEL_MANAGED_BY);
        // Labelled for another entry.
        let mut other_entry = child(ChildKind::NetworkPolicy, "x", "u1");
        other_entry
            .labels
            .insert(LABEL_MODEL_ENTRY.to_string(), "writer".to_string());
        // Already being deleted.
        let mut going = child(ChildKind::Deployment, "coder", "u1");
        going.deleting = true;
        assert!(unwanted(&wanted, &[not_controller, foreign, other_entry, going]).is_empty());
        // Same labels and owner under another name: the plan does not contain it either.
        let renamed = child(ChildKind::Service, "coder-old", "u1");
        assert_eq!(
            names(unwanted(&wanted, std::slice::from_ref(&renamed))),
            vec![(ChildKind::Service, "coder-old")]
        );
    }

    #[test]
    fn a_node_keeps_the_workload_of_its_mode_only() {
        let mut selector = base_labels();
        selector.extend(agent_selector("scout"));
        let workload = |kind| Child {
            kind,
            name: "scout".to_string(),
            uid: "w".to_string(),
            labels: selector.clone(),
            controller_uid: Some("n1".to_string()),
            deleting: false,
        };
        let found = [workload(ChildKind::Job), workload(ChildKind::Deployment)];
        let persistent = node_wants("scout", "n1", LifecycleMode::Persistent);
        assert_eq!(
            names(unwanted(&persistent, &found)),
            vec![(ChildKind::Job, "scout")]
        );
        let ephemeral = node_wants("scout", "n1", LifecycleMode::Ephemeral);
        assert_eq!(
            names(unwanted(&ephemeral, &found)),
            vec![(ChildKind::Deployment, "scout")]
        );
        // An entry's engine Deployment of the same name is not the node's.
        let mut engine = workload(ChildKind::Deployment);
        engine.labels = child(ChildKind::Deployment, "scout", "n1").labels;
        assert!(unwanted(&ephemeral, &[engine]).is_empty());
    }

    #[test]
    fn child_of_reads_the_controller_reference() {
        use crate::workload::owner_reference;
        let mut other = owner_reference("ModelEntry", "a", "not-controller");
        other.controller = None;
        let meta = ObjectMeta {
            name: Some("coder".into()),
            uid: Some("c1".into()),
            owner_references: Some(vec![other, owner_reference("ModelEntry", "coder", "u1")]),
            ..ObjectMeta::default()
        };
        let c = Child::of(ChildKind::Service, &meta).expect("child");
        assert_eq!(c.controller_uid.as_deref(), Some("u1"));
        assert!(!c.deleting);
        assert!(Child::of(ChildKind::Service, &ObjectMeta::default()).is_none());
    }

    #[test]
    fn uncached_kinds_are_listed_only_after_a_spec_change() {
        // Created and never changed: nothing can be unwanted, even before the first status.
        assert!(!spec_changed(Some(1), None));
        // Changed and not yet reconciled to completion.
        assert!(spec_changed(Some(2), Some(1)));
        assert!(spec_changed(Some(3), None));
        // Observed: the prune for this generation is done.
        assert!(!spec_changed(Some(2), Some(2)));
        // No generation at all: decide conservatively.
        assert!(spec_changed(None, Some(1)));
    }

    #[test]
    fn label_selector_names_the_operator_and_the_owner() {
        let wanted = entry_wants("coder", "u1", &spec(REMOTE));
        let s = wanted.label_selector();
        assert!(
            s.contains("app.kubernetes.io/managed-by=hypersync-operator"),
            "{s}"
        );
        assert!(s.contains("hypersync.io/model-entry=coder"), "{s}");
    }
}

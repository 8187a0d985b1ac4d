//! What the watch caches keep of the operator's own Jobs, Deployments and Pods: the fields the
//! controllers and the index read, nothing else. At 10,000 agents the Job and Pod caches were the
//! bulk of the operator's memory: `k8s_openapi`'s `Job` is 2.6 KiB and its `Pod` 2.2 KiB before any
//! field is set (the spec structs are inline even when `None`), and a pod as kube-sim sends it holds
//! 11 labels, 6 annotations, 5 conditions and the container's image details besides.
//!
//! So Jobs and Pods are decoded into the small [`Job`] and [`Pod`] below (metadata and the status
//! fields read; the spec is never decoded), and every child's metadata is trimmed before it enters a
//! reflector store (`watch::pipeline`). Deployments (a few per namespace: persistent agents and
//! local engines) keep `k8s_openapi`'s type with the spec dropped. AgentNodes, AgentStacks and
//! ModelEntries are kept whole apart from `managedFields`: their reconciles compare the cached
//! status with the one they plan, so every field counts.
//!
//! What each kind keeps, and who reads it:
//! - every child: name, namespace, uid and resourceVersion (the store's key, the applied-children
//!   cache), the operator's own labels (`hypersync.io/*`, `app.kubernetes.io/*`: the prune step's
//!   selector match, the pod index), ownerReferences (the index's owner, the prune step's
//!   controller uid), creationTimestamp and deletionTimestamp. Jobs and Deployments keep the
//!   `hypersync.io/models` and `hypersync.io/spec-digest` annotations (the models a workload was
//!   started with, the digest of its desired state); every other annotation, finalizers,
//!   generateName, generation and managedFields are dropped.
//! - Job: `status.conditions` and `completionTime` (finished, failed; lineage's
//!   finish time).
//! - Deployment: `status.readyReplicas`.
//! - Pod: `status.phase`, the `PodScheduled` condition (unschedulable engines) and per container
//!   its name, readiness, state, last state and restart count (the `AgentReady` condition's crash
//!   loops and pull errors); no spec.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::api::batch::v1::JobCondition;
use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde::{Deserialize, Serialize};

use crate::workload::labels::{ANNOTATION_MODELS, ANNOTATION_SPEC_DIGEST};

/// A resource of the caches: the API kind it reads, the metadata accessors kube needs.
macro_rules! cached_resource {
    ($ty:ident, $api:ty) => {
        impl k8s_openapi::Resource for $ty {
            const API_VERSION: &'static str = <$api as k8s_openapi::Resource>::API_VERSION;
            const GROUP: &'static str = <$api as k8s_openapi::Resource>::GROUP;
            const KIND: &'static str = <$api as k8s_openapi::Resource>::KIND;
            const VERSION: &'static str = <$api as k8s_openapi::Resource>::VERSION;
            const URL_PATH_SEGMENT: &'static str =
                <$api as k8s_openapi::Resource>::URL_PATH_SEGMENT;
            type Scope = <$api as k8s_openapi::Resource>::Scope;
        }

        impl k8s_openapi::Metadata for $ty {
            type Ty = ObjectMeta;
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

/// A Job as the caches keep it (`batch/v1` Job without its spec).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Job {
    #[serde(deserialize_with = "lean_meta")]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<JobStatus>,
}

/// What the controllers read of a Job's status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<JobCondition>>,
}

cached_resource!(Job, k8s_openapi::api::batch::v1::Job);

/// A Pod as the caches keep it (`v1` Pod without its spec).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Pod {
    #[serde(deserialize_with = "lean_meta")]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PodStatus>,
}

/// What the controllers read of a Pod's status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<PodCondition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_statuses: Option<Vec<ContainerStatus>>,
}

cached_resource!(Pod, k8s_openapi::api::core::v1::Pod);

/// `ObjectMeta` as the watches decode it: every field but `managedFields` (and `selfLink`), which
/// serde skips without building it. Decoding `managedFields` (a `FieldsV1` tree per manager, into
/// `serde_json::Value`s) was about a tenth of the operator's CPU at 10,000 nodes, only for the
/// pipeline to drop it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeanMeta {
    annotations: Option<BTreeMap<String, String>>,
    creation_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    deletion_timestamp: Option<Time>,
    finalizers: Option<Vec<String>>,
    generate_name: Option<String>,
    generation: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    name: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    resource_version: Option<String>,
    uid: Option<String>,
}

impl From<LeanMeta> for ObjectMeta {
    fn from(m: LeanMeta) -> Self {
        ObjectMeta {
            annotations: m.annotations,
            creation_timestamp: m.creation_timestamp,
            deletion_grace_period_seconds: m.deletion_grace_period_seconds,
            deletion_timestamp: m.deletion_timestamp,
            finalizers: m.finalizers,
            generate_name: m.generate_name,
            generation: m.generation,
            labels: m.labels,
            managed_fields: None,
            name: m.name,
            namespace: m.namespace,
            owner_references: m.owner_references,
            resource_version: m.resource_version,
            self_link: None,
            uid: m.uid,
        }
    }
}

/// Decode an object's metadata without its `managedFields` (see [`LeanMeta`]).
pub fn lean_meta<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    LeanMeta::deserialize(d).map(ObjectMeta::from)
}

/// Prefixes of the label keys the operator sets on its children (the prune step's selector and the
/// pod index read them; the `job-name` and `controller-uid` labels the Job controller adds are not).
const OWN_LABELS: [&str; 2] = ["hypersync.io/", "app.kubernetes.io/"];

/// The annotations the controllers read on a workload (Job or Deployment).
const WORKLOAD_ANNOTATIONS: [&str; 2] = [ANNOTATION_MODELS, ANNOTATION_SPEC_DIGEST];

fn retain_keys(map: &mut Option<BTreeMap<String, String>>, keep: impl Fn(&str) -> bool) {
    if let Some(m) = map.as_mut() {
        m.retain(|k, _| keep(k));
        if m.is_empty() {
            *map = None;
        }
    }
}

/// The metadata of a child: identity, the operator's labels, the `annotations` asked for, owners
/// and timestamps.
fn child_meta(meta: &mut ObjectMeta, annotations_kept: &[&str]) {
    let ObjectMeta {
        annotations,
        creation_timestamp: _,
        deletion_grace_period_seconds,
        deletion_timestamp: _,
        finalizers,
        generate_name,
        generation,
        labels,
        managed_fields,
        name: _,
        namespace: _,
        owner_references: _,
        resource_version: _,
        self_link,
        uid: _,
    } = meta;
    retain_keys(labels, |k| OWN_LABELS.iter().any(|p| k.starts_with(p)));
    retain_keys(annotations, |k| annotations_kept.contains(&k));
    *deletion_grace_period_seconds = None;
    *finalizers = None;
    *generate_name = None;
    *generation = None;
    *managed_fields = None;
    *self_link = None;
}

/// A Job as the caches keep it.
pub fn job(job: &mut Job) {
    child_meta(&mut job.metadata, &WORKLOAD_ANNOTATIONS);
}

/// A Deployment as the caches keep it.
pub fn deployment(deployment: &mut Deployment) {
    child_meta(&mut deployment.metadata, &WORKLOAD_ANNOTATIONS);
    deployment.spec = None;
    if let Some(status) = deployment.status.take() {
        deployment.status = Some(DeploymentStatus {
            ready_replicas: status.ready_replicas,
            ..DeploymentStatus::default()
        });
    }
}

fn container(cs: ContainerStatus) -> ContainerStatus {
    ContainerStatus {
        name: cs.name,
        ready: cs.ready,
        state: cs.state,
        last_state: cs.last_state,
        restart_count: cs.restart_count,
        ..ContainerStatus::default()
    }
}

/// A Pod as the caches keep it.
pub fn pod(pod: &mut Pod) {
    child_meta(&mut pod.metadata, &[]);
    if let Some(status) = pod.status.as_mut() {
        if let Some(conditions) = status.conditions.as_mut() {
            conditions.retain(|c| c.type_ == "PodScheduled");
            conditions.shrink_to_fit();
        }
        if let Some(containers) = status.container_statuses.take() {
            status.container_statuses = Some(containers.into_iter().map(container).collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::jiff::Timestamp;
    use serde_json::{Value, json};

    use super::*;
    use crate::controller::index::{Index, workload_bindings};
    use crate::controller::model_entry::pod_problems;
    use crate::controller::pods::agent_problem;
    use crate::controller::prune::{Child, ChildKind};

    /// Objects as kube-sim served them during `make bench-scale` (with `managedFields`).
    const POD: &str = include_str!("../../tests/fixtures/scale/pod.json");
    const JOB: &str = include_str!("../../tests/fixtures/scale/job.json");

    fn fixture(text: &str) -> Value {
        serde_json::from_str(text).expect("fixture parses")
    }

    /// The object as the watch pipeline stores it: decoded into the cached type, then trimmed.
    fn cached<K: serde::de::DeserializeOwned>(value: &Value, trim: fn(&mut K)) -> K {
        let mut obj: K = serde_json::from_value(value.clone()).expect("decodes");
        trim(&mut obj);
        obj
    }

    fn size<K: serde::Serialize>(obj: &K) -> usize {
        serde_json::to_vec(obj).expect("serializes").len()
    }

    fn crash_looping(mut pod: Value, state: Value) -> Value {
        let cs = &mut pod["status"]["containerStatuses"][0];
        cs["restartCount"] = json!(3);
        cs["state"] = state;
        cs["lastState"] = json!({"terminated": {"exitCode": 2, "reason": "Error",
            "startedAt": "2026-12-07T13:28:07Z", "finishedAt": "2026-12-07T13:28:09Z"}});
        pod
    }

    #[test]
    fn the_watches_decode_every_metadata_field_but_managed_fields() {
        for text in [POD, JOB] {
            let value = fixture(text);
            let full: ObjectMeta =
                serde_json::from_value(value["metadata"].clone()).expect("decodes");
            assert!(full.managed_fields.is_some(), "fixture has them");
            let lean: Pod = serde_json::from_str(text).expect("decodes");
            let expected = ObjectMeta {
                managed_fields: None,
                self_link: None,
                ..full
            };
            assert_eq!(lean.metadata, expected);
            let job: Job = serde_json::from_str(text).expect("decodes");
            assert_eq!(job.metadata, expected);
        }
    }

    #[test]
    fn a_cached_pod_keeps_what_the_controllers_read() {
        let now = Timestamp::from_second(1_796_650_200).expect("valid"); // 2026-12-07T13:30:00Z
        let running = fixture(POD);
        let problem = |pod: &Value| agent_problem(&[Arc::new(cached(pod, super::pod))], now);

        // Identity, the labels the index reads, the container's state; no spec, no annotation.
        let pod: Pod = cached(&running, super::pod);
        let full: k8s_openapi::api::core::v1::Pod =
            serde_json::from_value(running.clone()).expect("pod");
        assert_eq!(pod.metadata.name, full.metadata.name);
        assert_eq!(pod.metadata.uid, full.metadata.uid);
        assert_eq!(
            pod.metadata.resource_version,
            full.metadata.resource_version
        );
        assert_eq!(
            pod.metadata.owner_references,
            full.metadata.owner_references
        );
        assert!(pod.metadata.annotations.is_none());
        let labels: Vec<&str> = pod
            .metadata
            .labels
            .iter()
            .flatten()
            .map(|(k, _)| k.as_str())
            .collect();
        assert!(labels.contains(&"hypersync.io/agent-node"), "{labels:?}");
        assert!(!labels.contains(&"job-name"), "{labels:?}");
        let status = pod.status.as_ref().expect("status");
        let full_status = full.status.as_ref().expect("status");
        assert_eq!(status.phase, full_status.phase);
        let cs = &status.container_statuses.as_ref().expect("containers")[0];
        let full_cs = &full_status.container_statuses.as_ref().expect("containers")[0];
        assert_eq!(
            (
                &cs.name,
                cs.ready,
                &cs.state,
                &cs.last_state,
                cs.restart_count
            ),
            (
                &full_cs.name,
                full_cs.ready,
                &full_cs.state,
                &full_cs.last_state,
                full_cs.restart_count
            )
        );
        let (index, node) = (Index::default(), "agent-0000");
        index.pod_applied(&pod);
        assert_eq!(
            index.pods_of_node("scale", node),
            vec!["agent-0000-zv9dm".to_string()]
        );
        assert_eq!(problem(&running), (None, None));
        // What the API server sent, without managedFields, is more than four times the cached pod.
        let mut unmanaged = full.clone();
        unmanaged.metadata.managed_fields = None;
        assert!(
            size(&pod) * 4 < size(&unmanaged),
            "{} vs {}",
            size(&pod),
            size(&unmanaged)
        );

        // The states the AgentReady condition reports.
        let waiting = json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}});
        let (message, _) = problem(&crash_looping(running.clone(), waiting));
        assert_eq!(
            message.as_deref(),
            Some("CrashLoopBackOff: container agent keeps exiting with code 2 (Error)")
        );
        let again = json!({"running": {"startedAt": "2026-12-07T13:29:00Z"}});
        let (message, recheck) = problem(&crash_looping(running.clone(), again));
        assert!(message.is_some());
        assert_eq!(recheck, Some(std::time::Duration::from_secs(60)));
        let mut pull = running.clone();
        pull["status"]["containerStatuses"][0]["state"] = json!({"waiting": {
            "reason": "ImagePullBackOff", "message": "Back-off pulling image \"nope\""}});
        assert_eq!(
            problem(&pull).0.as_deref(),
            Some("ImagePullBackOff: Back-off pulling image \"nope\"")
        );

        // An engine pod that cannot be scheduled.
        let mut unschedulable = running.clone();
        unschedulable["status"]["conditions"][0] = json!({"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."});
        let pods = [Arc::new(cached(&unschedulable, super::pod))];
        assert_eq!(
            pod_problems(&pods).0.as_deref(),
            Some("0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")
        );
    }

    /// The agent Job of the fixture: running, complete, failed.
    fn jobs() -> Vec<Value> {
        let running = fixture(JOB);
        let mut complete = running.clone();
        complete["status"] = json!({"startTime": "2026-12-07T13:28:07Z",
            "completionTime": "2026-12-07T13:30:07Z", "succeeded": 1, "ready": 0,
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True",
                 "lastTransitionTime": "2026-12-07T13:30:07Z"},
                {"type": "Complete", "status": "True",
                 "lastTransitionTime": "2026-12-07T13:30:07Z"}]});
        let mut failed = running.clone();
        failed["status"] = json!({"startTime": "2026-12-07T13:28:07Z", "failed": 1,
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
                "lastTransitionTime": "2026-12-07T13:30:07Z"}]});
        vec![running, complete, failed]
    }

    #[test]
    fn a_cached_job_keeps_what_the_controllers_read() {
        for value in jobs() {
            let job: Job = cached(&value, super::job);
            let full: k8s_openapi::api::batch::v1::Job =
                serde_json::from_value(value.clone()).expect("job");
            let (status, full_status) = (job.status.as_ref(), full.status.as_ref());
            assert_eq!(
                status.map(|s| (&s.conditions, &s.completion_time)),
                full_status.map(|s| (&s.conditions, &s.completion_time))
            );
            assert_eq!(
                job.metadata.annotations.as_ref().map(workload_bindings),
                Some(vec![("cognitive".into(), "scale-remote-llm".into())])
            );
            assert_eq!(
                Child::of(ChildKind::Job, &job.metadata),
                Child::of(ChildKind::Job, &full.metadata)
            );
            assert_eq!(
                job.metadata.creation_timestamp,
                full.metadata.creation_timestamp
            );
            assert_eq!(
                job.metadata.resource_version,
                full.metadata.resource_version
            );
            // The index sees the same owner, models and outcome as from the whole object.
            let whole: Job = serde_json::from_value(value.clone()).expect("job");
            let (a, b) = (Index::default(), Index::default());
            assert_eq!(a.job_applied(&job), b.job_applied(&whole));
        }
    }

    #[test]
    fn a_cached_deployment_keeps_its_ready_replicas_and_digest() {
        let full: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "agent-0000", "namespace": "scale", "uid": "u", "resourceVersion": "7",
                "labels": {"hypersync.io/agent-node": "agent-0000", "pod-template-hash": "abc"},
                "annotations": {ANNOTATION_SPEC_DIGEST: "d1", ANNOTATION_MODELS: "cognitive=m",
                    "deployment.kubernetes.io/revision": "1"},
                "ownerReferences": [{"apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode",
                    "name": "agent-0000", "uid": "n", "controller": true}]},
            "spec": {"selector": {}, "template": {}},
            "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "observedGeneration": 1}
        }))
        .expect("deployment");
        let mut small = full.clone();
        deployment(&mut small);
        assert_eq!(small.status.and_then(|s| s.ready_replicas), Some(1));
        assert_eq!(
            small.metadata.annotations,
            Some(BTreeMap::from([
                (ANNOTATION_MODELS.to_string(), "cognitive=m".to_string()),
                (ANNOTATION_SPEC_DIGEST.to_string(), "d1".to_string()),
            ]))
        );
        assert_eq!(
            small.metadata.labels,
            Some(BTreeMap::from([(
                "hypersync.io/agent-node".to_string(),
                "agent-0000".to_string()
            )]))
        );
        assert_eq!(
            small.metadata.owner_references,
            full.metadata.owner_references
        );
        assert!(small.spec.is_none());
    }
}

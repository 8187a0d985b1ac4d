//! The bench's realistic object mix: per AgentNode, the objects the operator's scale test leaves in
//! the store, written the way they are written there. The AgentNode is applied by `kubectl`
//! (server-side apply), gets the operator's finalizer (JSON patch), placement annotations and status
//! (server-side apply by `hypersync-operator`) and the agent's observation (merge patch on status);
//! its ServiceAccount, Role, RoleBinding and Job are applied by the operator (the Job carries the
//! agent's full pod template, as in `src/workload/fixtures/agent-job.yaml`); the Job's Pod is created
//! by the job controller and its status written by the kubelet. Six stored objects per AgentNode,
//! each with the managedFields those writes leave.

use super::BenchError;
use crate::SimState;
use crate::server::handlers::{PatchType, WriteOpts};
use crate::server::registry::ResourceInfo;
use serde_json::{Value, json};
use std::sync::Arc;

/// The AgentNode CRD the operator installs (generated from its types by `make crds`).
const AGENTNODE_CRD: &str = include_str!("../../../../crds/agentnodes.yaml");

/// Namespace of the realistic mix.
pub const NAMESPACE: &str = "bench-ai";

/// Stored objects per AgentNode: the node, its ServiceAccount, Role, RoleBinding, Job and Pod.
pub const OBJECTS_PER_NODE: usize = 6;

/// Resources of the mix, resolved once.
pub struct Mix {
    nodes: Arc<ResourceInfo>,
    jobs: Arc<ResourceInfo>,
    pods: Arc<ResourceInfo>,
    service_accounts: Arc<ResourceInfo>,
    roles: Arc<ResourceInfo>,
    role_bindings: Arc<ResourceInfo>,
}

fn step(what: &'static str) -> impl Fn(crate::server::errors::ApiError) -> BenchError {
    move |e| BenchError::Step {
        what,
        message: e.message,
    }
}

fn resource(st: &SimState, group: &str, plural: &str) -> Result<Arc<ResourceInfo>, BenchError> {
    st.registry_read()
        .get(group, plural)
        .ok_or(BenchError::Step {
            what: "find a resource of the mix",
            message: format!("{plural}.{group} is not served"),
        })
}

impl Mix {
    /// Patches AgentNode `name` (or its status).
    #[allow(clippy::too_many_arguments)]
    fn patch_node(
        &self,
        st: &SimState,
        name: &str,
        ptype: PatchType,
        body: &Value,
        sub: Option<&str>,
        opts: &WriteOpts,
        what: &'static str,
    ) -> Result<Arc<Value>, BenchError> {
        st.patch_obj(
            &self.nodes,
            "v1alpha1",
            Some(NAMESPACE),
            name,
            ptype,
            body,
            sub,
            opts,
        )
        .map(|o| o.object)
        .map_err(step(what))
    }

    /// Registers the AgentNode CRD and creates the namespace.
    pub fn setup(st: &SimState) -> Result<Mix, BenchError> {
        let admin = WriteOpts::system("bench");
        let crd: Value = serde_saphyr::from_str(AGENTNODE_CRD).map_err(|e| BenchError::Step {
            what: "read the AgentNode CRD",
            message: e.to_string(),
        })?;
        let crds = resource(st, "apiextensions.k8s.io", "customresourcedefinitions")?;
        st.create_obj(&crds, "v1", None, crd, &admin)
            .map_err(step("create the AgentNode CRD"))?;
        let ns = resource(st, "", "namespaces")?;
        st.create_obj(
            &ns,
            "v1",
            None,
            json!({"metadata": {"name": NAMESPACE}}),
            &admin,
        )
        .map_err(step("create the mix namespace"))?;
        Ok(Mix {
            nodes: resource(st, "hypersync.io", "agentnodes")?,
            jobs: resource(st, "batch", "jobs")?,
            pods: resource(st, "", "pods")?,
            service_accounts: resource(st, "", "serviceaccounts")?,
            roles: resource(st, "rbac.authorization.k8s.io", "roles")?,
            role_bindings: resource(st, "rbac.authorization.k8s.io", "rolebindings")?,
        })
    }

    /// Writes the objects of AgentNode number `i` (OBJECTS_PER_NODE stored objects).
    pub fn create_node(&self, st: &SimState, i: usize) -> Result<(), BenchError> {
        let ns = Some(NAMESPACE);
        let name = format!("agent-{i}");
        let kubectl = WriteOpts {
            force: true,
            ..WriteOpts::system("kubectl")
        };
        let operator = WriteOpts {
            force: true,
            ..WriteOpts::system("hypersync-operator")
        };
        let node = self.patch_node(
            st,
            &name,
            PatchType::Apply,
            &agent_node(&name, i),
            None,
            &kubectl,
            "apply an AgentNode",
        )?;
        let rv = node["metadata"]["resourceVersion"].clone();
        let uid = node["metadata"]["uid"].as_str().unwrap_or("").to_string();
        self.patch_node(st, &name, PatchType::Json, &json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
                    {"op": "add", "path": "/metadata/finalizers", "value": ["hypersync.io/dissolve"]}]), None, &operator, "add the AgentNode finalizer")?;
        let p = placement(i);
        self.patch_node(
            st,
            &name,
            PatchType::Apply,
            &json!({"apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode",
                "metadata": {"name": name, "annotations": placement_annotations(&p)}}),
            None,
            &operator,
            "annotate an AgentNode",
        )?;
        let owner = json!([{"apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode", "name": name,
            "uid": uid, "controller": true, "blockOwnerDeletion": true}]);
        let identity = format!("{name}-agent");
        let labels = identity_labels(&name);
        let meta = |n: &str, labels: &Value| json!({"name": n, "namespace": NAMESPACE, "labels": labels, "ownerReferences": owner});
        st.patch_obj(
            &self.service_accounts,
            "v1",
            ns,
            &identity,
            PatchType::Apply,
            &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(&identity, &labels)}),
            None,
            &operator,
        )
        .map_err(step("apply a ServiceAccount"))?;
        let rule = |resource: &str, verbs: &[&str]| json!({"apiGroups": ["hypersync.io"], "resources": [resource], "resourceNames": [name], "verbs": verbs});
        st.patch_obj(
            &self.roles,
            "v1",
            ns,
            &identity,
            PatchType::Apply,
            &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(&identity, &labels),
                "rules": [rule("agentnodes", &["get"]), rule("agentnodes/status", &["get", "patch"])]}),
            None,
            &operator,
        )
        .map_err(step("apply a Role"))?;
        st.patch_obj(
            &self.role_bindings,
            "v1",
            ns,
            &identity,
            PatchType::Apply,
            &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta(&identity, &labels),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": identity},
                "subjects": [{"kind": "ServiceAccount", "name": identity, "namespace": NAMESPACE}]}),
            None,
            &operator,
        )
        .map_err(step("apply a RoleBinding"))?;
        let mut job_labels = labels.clone();
        job_labels["hypersync.io/stack"] = json!("scale-stack");
        let annotations = placement_annotations(&p);
        let mut job_meta = meta(&name, &job_labels);
        job_meta["annotations"] = annotations.clone();
        let template = pod_template(&name, i, &p, &job_labels, &annotations);
        let job = st
            .patch_obj(
                &self.jobs,
                "v1",
                ns,
                &name,
                PatchType::Apply,
                &json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": job_meta,
                    "spec": {"activeDeadlineSeconds": 1800, "backoffLimit": 2, "template": template}}),
                None,
                &operator,
            )
            .map_err(step("apply a Job"))?
            .object;
        let job_uid = job["metadata"]["uid"].as_str().unwrap_or("").to_string();
        let now = crate::store::now_rfc3339();
        // The job controller creates the pod from the stored template and reports it active.
        let controller = WriteOpts::system("kube-controller-manager");
        let mut pod = job["spec"]["template"].clone();
        let pod_labels = &mut pod["metadata"]["labels"];
        for k in ["batch.kubernetes.io/controller-uid", "controller-uid"] {
            pod_labels[k] = json!(job_uid);
        }
        for k in ["batch.kubernetes.io/job-name", "job-name"] {
            pod_labels[k] = json!(name);
        }
        pod["metadata"]["generateName"] = json!(format!("{name}-"));
        pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "Job", "name": name,
            "uid": job_uid, "controller": true, "blockOwnerDeletion": true}]);
        pod["spec"]["nodeName"] = json!(format!("gpu-node-{}", i % 64));
        let pod = st
            .create_obj(&self.pods, "v1", ns, pod, &controller)
            .map_err(step("create a Pod"))?
            .object;
        let pod_name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
        let mut job_status = Value::clone(&job);
        job_status["status"] = json!({"active": 1, "ready": 1, "startTime": now, "terminating": 0,
            "uncountedTerminatedPods": {}});
        st.update_obj(
            &self.jobs,
            "v1",
            ns,
            &name,
            job_status,
            Some("status"),
            &controller,
        )
        .map_err(step("update a Job's status"))?;
        let ip = format!("10.{}.{}.{}", 64 + i / 65536 % 64, i / 256 % 256, i % 256);
        let cond = |t: &str| json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
        let mut running = Value::clone(&pod);
        running["status"] = json!({
            "phase": "Running",
            "conditions": [cond("PodReadyToStartContainers"), cond("Initialized"), cond("Ready"), cond("ContainersReady"), cond("PodScheduled")],
            "hostIP": format!("192.168.0.{}", i % 64), "hostIPs": [{"ip": format!("192.168.0.{}", i % 64)}],
            "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": now, "qosClass": "BestEffort",
            "containerStatuses": [{"name": "agent", "ready": true, "restartCount": 0, "started": true,
                "image": "ghcr.io/hypersync/agent:1.0", "imageID": "ghcr.io/hypersync/agent@sha256:4f9c0a7d3f2b8e61c5a0d9e7b3c1f8a2d6e4b0c9a7f5e3d1b8c6a4f2e0d9b7c5",
                "containerID": format!("containerd://{:064x}", i),
                "lastState": {}, "state": {"running": {"startedAt": now}}}]});
        st.update_obj(
            &self.pods,
            "v1",
            ns,
            &pod_name,
            running,
            Some("status"),
            &WriteOpts::system("kubelet"),
        )
        .map_err(step("update a Pod's status"))?;
        self.patch_node(st, &name, PatchType::Apply, &json!({"apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode", "status": node_status(&name, i, &p, &now)}), Some("status"), &operator, "apply an AgentNode's status")?;
        self.patch_node(
            st,
            &name,
            PatchType::Merge,
            &json!({"status": {"objective": {"observed": (i % 10) as f64}}}),
            Some("status"),
            &WriteOpts::system("hypersync-agent"),
            "report an AgentNode's observation",
        )?;
        Ok(())
    }
}

/// Placement of node `i`: (r, theta degrees, x, y, hyperbolic radius, tier).
struct Placement {
    r: f64,
    theta: f64,
    x: f64,
    y: f64,
    hyperbolic: f64,
    tier: i64,
}

fn round4(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

fn placement(i: usize) -> Placement {
    let r = round4(0.05 + 0.9 * ((i * 7919) % 1000) as f64 / 1000.0);
    let theta = round4(((i * 104_729) % 36_000) as f64 / 100.0);
    let hyperbolic = round4(2.0 * r.atanh());
    Placement {
        r,
        theta,
        x: round4(r * theta.to_radians().cos()),
        y: round4(r * theta.to_radians().sin()),
        hyperbolic,
        tier: (hyperbolic / std::f64::consts::LN_2).floor() as i64,
    }
}

fn placement_annotations(p: &Placement) -> Value {
    json!({"hypersync.io/hyperbolic-radius": p.hyperbolic.to_string(), "hypersync.io/r": p.r.to_string(),
        "hypersync.io/theta-degrees": p.theta.to_string(), "hypersync.io/tier": p.tier.to_string()})
}

fn identity_labels(name: &str) -> Value {
    json!({"app.kubernetes.io/component": "agent", "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "hypersync-operator", "app.kubernetes.io/name": "hypersync-agent",
        "app.kubernetes.io/part-of": "hypersync", "hypersync.io/agent-node": name})
}

fn agent_node(name: &str, i: usize) -> Value {
    json!({"apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode", "metadata": {"name": name},
        "spec": {
            "stackRef": {"name": "scale-stack"},
            "task": {"description": format!("Triage anomaly IDS-{i} reported by the intrusion detector and list the vulnerable code paths."),
                "tags": ["security", "coding", "anomaly"], "inputs": {"alertId": format!("IDS-{i}")}},
            "placement": {"mode": "Semantic", "near": {"point": {"r": 0.4, "thetaDegrees": 120}}},
            "objective": {"metric": {"name": "findings_triaged", "comparator": "GreaterOrEqual", "target": 10},
                "deadlineSeconds": 1800, "maxRetries": 2},
            "lifecycle": {"mode": "Ephemeral", "ttlSecondsAfterObjectiveMet": 10, "ttlSecondsAfterFailure": 3600}}})
}

fn node_status(name: &str, i: usize, p: &Placement, now: &str) -> Value {
    let cond = |t: &str, reason: &str, message: String| {
        json!({"type": t, "status": "True", "reason": reason,
        "message": message, "lastTransitionTime": now, "observedGeneration": 1})
    };
    json!({
    "observedGeneration": 1,
    "phase": "Running",
    "placement": {"r": p.r, "thetaDegrees": p.theta, "x": p.x, "y": p.y, "hyperbolicRadius": p.hyperbolic,
        "tier": p.tier, "algorithm": "semantic-v1", "inputsDigest": format!("{:016x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))},
    "neighbors": (1..=3).map(|k| json!({"name": format!("agent-{}", i.wrapping_sub(k)), "distance": round4(0.1 * k as f64 + p.r / 7.0)})).collect::<Vec<_>>(),
    "models": [{"layer": "cognitive", "modelEntry": "coder", "endpoint": "http://coder.bench-ai.svc:8000/v1", "servedModel": "coder"}],
    "objective": {"met": false},
    "workload": {"kind": "Job", "name": name},
    "startTime": now,
    "conditions": [
        cond("Placed", "Placed", format!("placed at r={} theta={} (tier {})", p.r, p.theta, p.tier)),
        cond("Ready", "WorkloadRunning", format!("Job {name} has an active pod")),
    ]})
}

fn pod_template(name: &str, i: usize, p: &Placement, labels: &Value, annotations: &Value) -> Value {
    let mut annotations = annotations.clone();
    annotations["kubectl.kubernetes.io/default-container"] = json!("agent");
    let env = |k: &str, v: String| json!({"name": k, "value": v});
    json!({
    "metadata": {"labels": labels, "annotations": annotations},
    "spec": {
        "automountServiceAccountToken": true,
        "containers": [{
            "name": "agent",
            "image": "ghcr.io/hypersync/agent:1.0",
            "args": ["--verbose"],
            "env": [
                env("HYPERSYNC_NODE_NAME", name.to_string()),
                env("HYPERSYNC_NAMESPACE", NAMESPACE.to_string()),
                env("HYPERSYNC_STACK", "scale-stack".into()),
                env("HYPERSYNC_LIFECYCLE", "Ephemeral".into()),
                env("HYPERSYNC_TASK_DESCRIPTION", format!("Triage anomaly IDS-{i} reported by the intrusion detector and list the vulnerable code paths.")),
                env("HYPERSYNC_TASK_TAGS", "security,coding,anomaly".into()),
                env("HYPERSYNC_TASK_INPUTS", format!("{{\"alertId\":\"IDS-{i}\"}}")),
                env("HYPERSYNC_OBJECTIVE", "{\"autonomy\":\"Loose\",\"metric\":{\"name\":\"findings_triaged\",\"comparator\":\"GreaterOrEqual\",\"target\":10.0},\"deadlineSeconds\":1800,\"maxRetries\":2}".into()),
                env("HYPERSYNC_AUTONOMY", "Loose".into()),
                env("HYPERSYNC_TEMPERATURE", "0.7".into()),
                env("HYPERSYNC_R", p.r.to_string()),
                env("HYPERSYNC_THETA_DEGREES", p.theta.to_string()),
                env("HYPERSYNC_X", p.x.to_string()),
                env("HYPERSYNC_Y", p.y.to_string()),
                env("HYPERSYNC_HYPERBOLIC_RADIUS", p.hyperbolic.to_string()),
                env("HYPERSYNC_TIER", p.tier.to_string()),
                env("HYPERSYNC_MODEL_LAYERS", "cognitive".into()),
                env("HYPERSYNC_COGNITIVE_ENDPOINT", "http://coder.bench-ai.svc:8000/v1".into()),
                env("HYPERSYNC_COGNITIVE_MODEL", "coder".into()),
                env("HYPERSYNC_TOOLS", "[{\"name\":\"git-mcp\",\"kind\":\"MCP\",\"url\":\"http://git-mcp.tools.svc:8080\"}]".into()),
                {"name": "HYPERSYNC_TOOL_GIT_MCP_SECRET", "valueFrom": {"secretKeyRef": {"key": "token", "name": "git"}}},
                env("HYPERSYNC_CONTEXT", "{\"maxTokens\":8192,\"strategy\":\"SlidingWindow\"}".into()),
            ],
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
                "readOnlyRootFilesystem": true, "runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "volumeMounts": [{"mountPath": "/tmp", "name": "tmp"}],
        }],
        "enableServiceLinks": false,
        "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "serviceAccountName": format!("{name}-agent"),
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }})
}

//! Hardening stories against kube-sim: AgentNodes with names of 63, 64 and 253 characters run, get
//! valid children, have their failing agents reported and dissolve cleanly; a missing image names
//! `spec.runtime.image` and warns once; a `Dissolved` Event whose write fails is retried and lands
//! before the node goes; placement round-trips bit-exactly through JSON and a settled node is not
//! rewritten.

mod support;

use std::time::Duration;

use hypersync_operator::api::AgentNode;
use hypersync_operator::api::agent_node::{NodePhase, PlacementStatus};
use hypersync_operator::controller::agent_node::explicit_placement_status;
use hypersync_operator::geometry::DiskPoint;
use hypersync_operator::workload::agent::{agent_workload_name, placement_annotations};
use hypersync_operator::workload::identity::identity_name;
use hypersync_operator::workload::label_value;
use hypersync_operator::workload::labels::LABEL_AGENT_NODE;
use hypersync_operator::workload::names::{is_dns1035_label, is_label_value};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Resource};
use proptest::prelude::*;
use serde_json::{Value, json};
use support::{Cluster, NS, report};

const REMOTE: &str = "apiVersion: hypersync.io/v1alpha1\nkind: ModelEntry\nmetadata: {name: gpt}\nspec:\n  type: LLM\n  capabilities: [chat]\n  source:\n    remote: {provider: OpenAI, model: gpt-4o}\n";

/// A stack whose agents run for 10 minutes unless a node says otherwise.
const STACK: &str = "apiVersion: hypersync.io/v1alpha1\nkind: AgentStack\nmetadata: {name: s}\nspec:\n  layers:\n    cognitive: {modelRef: {name: gpt}}\n  runtime:\n    image: busybox:1.36\n    podAnnotations:\n      sim.hypersync.io/run-seconds: \"600\"\n";

/// A DNS-1123 subdomain of exactly `len` characters starting with `tag` (dot-separated segments of
/// at most 63 characters, as a user would write a long name).
fn long_name(tag: &str, len: usize) -> String {
    let mut name = tag.to_string();
    let mut segment = tag.len();
    while name.len() < len {
        let remaining = len - name.len();
        // Never end on a dot or start a segment that would end on one.
        if segment >= 60 && remaining >= 3 {
            name.push('.');
            segment = 0;
        } else {
            name.push(char::from(b'a' + (name.len() % 26) as u8));
            segment += 1;
        }
    }
    assert_eq!(name.len(), len);
    name
}

/// Wait until kube-sim has injected `count` faults `kind` (e.g. "500") into `verb` requests.
async fn wait_for_faults(cluster: &Cluster, verb: &str, kind: &str, count: u64) {
    cluster
        .wait_for(
            &format!("{count} injected {kind} on {verb}"),
            Duration::from_secs(30),
            || async {
                let faults = cluster.sim_json("/sim/faults").await;
                (faults["counters"]["byVerb"][verb][kind].as_u64()? >= count).then_some(())
            },
        )
        .await;
}

/// kube-sim with the operator running, the remote model and the stack `s`.
async fn cluster_with_stack() -> (Cluster, support::Operator) {
    let cluster = Cluster::start().await;
    let operator = cluster.operator();
    cluster.apply_yaml(REMOTE).await;
    cluster.apply_yaml(STACK).await;
    (cluster, operator)
}

async fn exists<K>(cluster: &Cluster, name: &str) -> bool
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(cluster.client.clone(), NS);
    api.get_opt(name).await.expect("get").is_some()
}

/// The node's children (by the names the operator gives them) all exist with valid names and
/// labels, and its pods carry the label every lookup uses.
async fn assert_children_valid(cluster: &Cluster, node: &str, persistent: bool) {
    let identity = identity_name(node);
    let workload = agent_workload_name(node);
    for n in [&identity, &workload] {
        assert!(is_dns1035_label(n), "child name {n:?} of {node}");
    }
    let label = label_value(node);
    assert!(is_label_value(&label), "{label:?}");
    let check_labels = |kind: &str, labels: Option<&std::collections::BTreeMap<String, String>>| {
        let labels = labels.unwrap_or_else(|| panic!("{kind} of {node} has labels"));
        for (k, v) in labels {
            assert!(is_label_value(v), "{kind} label {k}={v:?} of {node}");
        }
        assert_eq!(
            labels.get(LABEL_AGENT_NODE),
            Some(&label),
            "{kind} of {node}"
        );
    };
    let sa: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), NS);
    let role: Api<Role> = Api::namespaced(cluster.client.clone(), NS);
    let binding: Api<RoleBinding> = Api::namespaced(cluster.client.clone(), NS);
    check_labels(
        "ServiceAccount",
        sa.get(&identity)
            .await
            .expect("SA")
            .metadata
            .labels
            .as_ref(),
    );
    check_labels(
        "Role",
        role.get(&identity)
            .await
            .expect("Role")
            .metadata
            .labels
            .as_ref(),
    );
    check_labels(
        "RoleBinding",
        binding
            .get(&identity)
            .await
            .expect("RoleBinding")
            .metadata
            .labels
            .as_ref(),
    );
    if persistent {
        let d: Api<Deployment> = Api::namespaced(cluster.client.clone(), NS);
        check_labels(
            "Deployment",
            d.get(&workload)
                .await
                .expect("Deployment")
                .metadata
                .labels
                .as_ref(),
        );
    } else {
        let j: Api<Job> = Api::namespaced(cluster.client.clone(), NS);
        check_labels(
            "Job",
            j.get(&workload)
                .await
                .expect("Job")
                .metadata
                .labels
                .as_ref(),
        );
    }
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), NS);
    let list = pods
        .list(&ListParams::default().labels(&format!("{LABEL_AGENT_NODE}={label}")))
        .await
        .expect("pods list");
    assert!(!list.items.is_empty(), "no agent pod found for {node}");
    for p in &list.items {
        check_labels("Pod", p.metadata.labels.as_ref());
    }
}

/// Ephemeral nodes get an agent that cannot start (its Secret is missing: a Job's pod never
/// restarts in place), Persistent ones an agent that crash-loops. Both are reported on the node
/// through the pod lookup by label; the Ephemeral nodes then meet their objective and dissolve, the
/// Persistent ones are deleted; nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_node_names_run_report_their_agents_and_dissolve() {
    let (cluster, operator) = cluster_with_stack().await;
    let mut names = Vec::new();
    for len in [63usize, 64, 253] {
        for mode in ["Ephemeral", "Persistent"] {
            let name = long_name(&format!("{}{len}", &mode[..1].to_lowercase()), len);
            let runtime = if mode == "Persistent" {
                json!({"podAnnotations": {
                    "sim.hypersync.io/run-seconds": "1",
                    "sim.hypersync.io/exit-code": "1",
                    "sim.hypersync.io/restart-backoff-seconds": "2",
                }})
            } else {
                json!({"env": [{"name": "API_TOKEN",
                    "valueFrom": {"secretKeyRef": {"name": "absent-credentials", "key": "token"}}}]})
            };
            cluster
                .apply(json!({
                    "apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode",
                    "metadata": {"name": name},
                    "spec": {
                        "stackRef": {"name": "s"},
                        "task": {"tags": ["ops"]},
                        "objective": {"metric": {"name": "score", "comparator": "GreaterOrEqual", "target": 10}},
                        "lifecycle": {"mode": mode, "ttlSecondsAfterObjectiveMet": 1},
                        "runtime": runtime,
                    }
                }))
                .await;
            names.push((name, mode == "Persistent"));
        }
    }
    let nodes: Api<AgentNode> = Api::namespaced(cluster.client.clone(), NS);
    for (name, persistent) in &names {
        let expected = if *persistent {
            "CrashLoopBackOff"
        } else {
            "CreateContainerConfigError"
        };
        let condition = cluster
            .wait_for(
                &format!("{expected} reported on {} ({} chars)", name, name.len()),
                Duration::from_secs(60),
                || async {
                    let s = nodes.get(name).await.ok()?.status?;
                    if s.phase != Some(NodePhase::Running) {
                        return None;
                    }
                    s.conditions.into_iter().find(|c| {
                        c.type_ == "AgentReady"
                            && c.reason == "AgentContainerError"
                            && c.message.starts_with(expected)
                    })
                },
            )
            .await;
        assert_eq!(condition.status, "False");
        assert_children_valid(&cluster, name, *persistent).await;
    }

    // Ephemeral nodes meet their objective and dissolve, recording the outcome; Persistent ones are
    // deleted by the user.
    for (name, persistent) in &names {
        if *persistent {
            nodes
                .delete(name, &DeleteParams::background())
                .await
                .expect("delete");
        } else {
            report(&nodes, name, 12.0).await;
        }
    }
    for (name, persistent) in &names {
        cluster
            .wait_for(
                &format!("{} ({} chars) gone", name, name.len()),
                Duration::from_secs(60),
                || async { nodes.get_opt(name).await.ok()?.is_none().then_some(()) },
            )
            .await;
        if !persistent {
            let events = cluster.events_for("AgentNode", name).await;
            assert!(
                events.iter().any(|(_, r, _)| r == "Dissolved"),
                "no Dissolved Event for {name}: {events:?}"
            );
        }
    }
    for (name, _) in &names {
        let identity = identity_name(name);
        let workload = agent_workload_name(name);
        cluster
            .wait_for(
                &format!("children of {name} gone"),
                Duration::from_secs(30),
                || async {
                    let left = exists::<ServiceAccount>(&cluster, &identity).await
                        || exists::<Role>(&cluster, &identity).await
                        || exists::<RoleBinding>(&cluster, &identity).await
                        || exists::<Job>(&cluster, &workload).await
                        || exists::<Deployment>(&cluster, &workload).await;
                    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), NS);
                    let pods = pods
                        .list(
                            &ListParams::default()
                                .labels(&format!("{LABEL_AGENT_NODE}={}", label_value(name))),
                        )
                        .await
                        .ok()?;
                    (!left && pods.items.is_empty()).then_some(())
                },
            )
            .await;
    }
    operator.stop().await;
}

/// Neither the stack nor the node names an image: the node's condition names `spec.runtime.image`,
/// and one Warning Event says so however often the node is reconciled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_names_the_field_and_warns_once() {
    let cluster = Cluster::start().await;
    let operator = cluster.operator();
    cluster.apply_yaml(REMOTE).await;
    cluster
        .apply_yaml("apiVersion: hypersync.io/v1alpha1\nkind: AgentStack\nmetadata: {name: imageless}\nspec:\n  layers:\n    cognitive: {modelRef: {name: gpt}}\n")
        .await;
    cluster
        .apply_yaml("apiVersion: hypersync.io/v1alpha1\nkind: AgentNode\nmetadata: {name: blank}\nspec:\n  stackRef: {name: imageless}\n  lifecycle: {mode: Persistent}\n")
        .await;
    let nodes: Api<AgentNode> = Api::namespaced(cluster.client.clone(), NS);
    let condition = cluster
        .wait_for(
            "MissingImage condition",
            Duration::from_secs(30),
            || async {
                let s = nodes.get("blank").await.ok()?.status?;
                s.conditions
                    .into_iter()
                    .find(|c| c.reason == "MissingImage")
            },
        )
        .await;
    assert_eq!(condition.status, "False");
    assert!(
        condition.message.starts_with("spec.runtime.image:"),
        "{}",
        condition.message
    );
    assert!(
        condition.message.contains("AgentStack imageless"),
        "{}",
        condition.message
    );
    // Reconciles keep coming (the node and its stack change, the model's status moves): still one
    // Warning.
    for i in 0..5 {
        for (kind, name) in [("AgentNode", "blank"), ("AgentStack", "imageless")] {
            let api = cluster.dynamic("hypersync.io/v1alpha1", kind).await;
            api.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"touched": i.to_string()}}})),
            )
            .await
            .expect("annotate");
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = cluster.events_for("AgentNode", "blank").await;
    let warnings: Vec<_> = events
        .iter()
        .filter(|(t, r, _)| t == "Warning" && r == "MissingImage")
        .collect();
    assert_eq!(warnings.len(), 1, "{events:?}");
    assert!(
        warnings[0].2.starts_with("spec.runtime.image:"),
        "{}",
        warnings[0].2
    );
    let workload = agent_workload_name("blank");
    assert!(!exists::<Deployment>(&cluster, &workload).await);

    // Setting the image on the node is enough: the agent runs.
    cluster
        .apply_yaml("apiVersion: hypersync.io/v1alpha1\nkind: AgentNode\nmetadata: {name: blank}\nspec:\n  stackRef: {name: imageless}\n  lifecycle: {mode: Persistent}\n  runtime: {image: busybox:1.36}\n")
        .await;
    cluster
        .wait_for(
            "the agent's Deployment",
            Duration::from_secs(30),
            || async {
                exists::<Deployment>(&cluster, &workload)
                    .await
                    .then_some(())
            },
        )
        .await;
    operator.stop().await;
}

/// While every Event write of the operator fails, a node whose TTL has passed is not deleted; once
/// writes succeed again, its `Dissolved` Event lands (exactly once) and then the node goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_dissolved_event_is_retried_before_the_node_goes() {
    let (cluster, operator) = cluster_with_stack().await;
    cluster
        .apply(json!({
            "apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode",
            "metadata": {"name": "fleeting"},
            "spec": {
                "stackRef": {"name": "s"},
                "objective": {"metric": {"name": "score", "comparator": "GreaterOrEqual", "target": 10}},
                "lifecycle": {"mode": "Ephemeral", "ttlSecondsAfterObjectiveMet": 1},
            }
        }))
        .await;
    let nodes: Api<AgentNode> = Api::namespaced(cluster.client.clone(), NS);
    cluster
        .wait_for("node Running", Duration::from_secs(30), || async {
            (nodes.get("fleeting").await.ok()?.status?.phase == Some(NodePhase::Running))
                .then_some(())
        })
        .await;
    cluster
        .sim_post(
            "/sim/faults",
            &format!("create/events{{ua={}}}=1:500", support::OPERATOR_UA),
        )
        .await;
    report(&nodes, "fleeting", 12.0).await;
    cluster
        .wait_for("node Succeeded", Duration::from_secs(30), || async {
            (nodes.get("fleeting").await.ok()?.status?.phase == Some(NodePhase::Succeeded))
                .then_some(())
        })
        .await;
    // The TTL (1 s) passes; the Event write fails again and again, and the node stays.
    wait_for_faults(&cluster, "create", "500", 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        nodes.get_opt("fleeting").await.expect("get").is_some(),
        "the node was deleted while its Dissolved Event could not be written"
    );
    let events = cluster.events_for("AgentNode", "fleeting").await;
    assert!(
        !events.iter().any(|(_, r, _)| r == "Dissolved"),
        "{events:?}"
    );

    cluster.sim_post("/sim/faults", "seed=0").await;
    cluster
        .wait_for("node gone", Duration::from_secs(60), || async {
            nodes
                .get_opt("fleeting")
                .await
                .ok()?
                .is_none()
                .then_some(())
        })
        .await;
    let events = cluster.events_for("AgentNode", "fleeting").await;
    let dissolved: Vec<_> = events.iter().filter(|(_, r, _)| r == "Dissolved").collect();
    assert_eq!(dissolved.len(), 1, "{events:?}");
    assert!(
        dissolved[0].2.contains("objective met=true"),
        "{}",
        dissolved[0].2
    );
    operator.stop().await;
}

fn bits(p: &PlacementStatus) -> [u64; 5] {
    [
        p.r.to_bits(),
        p.theta_degrees.to_bits(),
        p.x.to_bits(),
        p.y.to_bits(),
        p.hyperbolic_radius.to_bits(),
    ]
}

/// The way a placement travels: the operator serialises it, the API server parses the document and
/// serialises what it stored, the operator's cache parses that.
fn through_the_api_server(p: &PlacementStatus) -> PlacementStatus {
    let sent = serde_json::to_string(p).expect("serialises");
    let stored: Value = serde_json::from_str(&sent).expect("server parses");
    let served = serde_json::to_vec(&stored).expect("server serialises");
    serde_json::from_slice(&served).expect("operator parses")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Every field of a placement, and every placement annotation of the agent's pods, parses back
    /// to the very same bits.
    #[test]
    fn placement_round_trips_bit_exactly_through_json(
        r in 0.0f64..0.999_999,
        theta in 0.0f64..360.0,
        cartesian in any::<bool>(),
    ) {
        let point = if cartesian {
            let (x, y) = (r * theta.to_radians().cos(), r * theta.to_radians().sin());
            DiskPoint::new(x, y)
        } else {
            DiskPoint::from_polar(r, theta)
        };
        let Ok(point) = point else { return Ok(()) };
        let p = explicit_placement_status(point);
        let back = through_the_api_server(&p);
        prop_assert_eq!(bits(&back), bits(&p), "{:?} came back as {:?}", p, back);
        // Twice round is still the same (what a status re-read would see).
        prop_assert_eq!(bits(&through_the_api_server(&back)), bits(&p));
        let annotations = placement_annotations(&back);
        let parsed = |key: &str| -> f64 {
            annotations[key].parse().expect("annotation parses")
        };
        use hypersync_operator::workload::labels::{
            ANNOTATION_HYPERBOLIC_RADIUS, ANNOTATION_R, ANNOTATION_THETA_DEGREES,
        };
        prop_assert_eq!(parsed(ANNOTATION_R).to_bits(), p.r.to_bits());
        prop_assert_eq!(parsed(ANNOTATION_THETA_DEGREES).to_bits(), p.theta_degrees.to_bits());
        prop_assert_eq!(
            parsed(ANNOTATION_HYPERBOLIC_RADIUS).to_bits(),
            p.hyperbolic_radius.to_bits()
        );
        // The annotations travel as JSON strings: unchanged.
        let json = serde_json::to_string(&annotations).expect("serialises");
        let again: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&json).expect("parses");
        prop_assert_eq!(again, annotations);
    }
}

/// The property above holds in the operator's own build, not only in this test's: dev-dependencies
/// (jsonschema) switch serde_json's exact float parsing on for every test binary, so the test checks
/// that the build without them (the released operator) has it too.
#[test]
fn the_operator_build_parses_floats_exactly() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    let out = std::process::Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "--offline",
            "--locked",
            "-p",
            "hypersync-operator",
            "-e",
            "no-dev,features",
            "-i",
            "serde_json",
        ])
        .output()
        .expect("cargo tree runs");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        tree.contains("serde_json feature \"float_roundtrip\""),
        "the operator's build parses floats inexactly (serde_json without float_roundtrip):\n{tree}"
    );
}

/// Persistent nodes placed semantically (long, unround coordinates) settle: their Deployments are
/// applied once (generation 1, the pod annotations equal to the status' placement bit for bit), and
/// afterwards the operator writes nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_node_sees_no_placement_rewrite() {
    let (cluster, operator) = cluster_with_stack().await;
    const TAGS: [&str; 4] = ["ops", "search", "triage", "audit"];
    let names: Vec<String> = (0..12).map(|i| format!("keeper-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        cluster
            .apply(json!({
                "apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode",
                "metadata": {"name": name},
                "spec": {
                    "stackRef": {"name": "s"},
                    "task": {"tags": [TAGS[i % TAGS.len()]]},
                    "placement": {"mode": "Semantic",
                        "near": {"point": {"r": 0.1 + 0.061_803_398_874_989 * i as f64,
                                           "thetaDegrees": 7.123_456_789_012_345 * (i + 1) as f64}}},
                    "lifecycle": {"mode": "Persistent"},
                }
            }))
            .await;
    }
    let nodes: Api<AgentNode> = Api::namespaced(cluster.client.clone(), NS);
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), NS);
    cluster
        .wait_for("every node Running", Duration::from_secs(60), || async {
            let list = nodes.list(&ListParams::default()).await.ok()?;
            (list
                .items
                .iter()
                .filter(|n| n.status.as_ref().and_then(|s| s.phase) == Some(NodePhase::Running))
                .count()
                == names.len())
            .then_some(())
        })
        .await;
    // Settle: the watches deliver the last writes and their reconciles run.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = cluster.operator_requests().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = cluster.operator_requests().await;
    let writes: Vec<(String, u64)> = after
        .iter()
        .filter(|(k, _)| {
            ["create ", "update ", "patch ", "delete "]
                .iter()
                .any(|v| k.starts_with(v))
        })
        .map(|(k, n)| (k.clone(), n - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert!(writes.is_empty(), "writes at rest: {writes:?}");
    for name in &names {
        let node = nodes.get(name).await.expect("node");
        let placement = node
            .status
            .and_then(|s| s.placement)
            .expect("placement recorded");
        let d = deployments
            .get(&agent_workload_name(name))
            .await
            .expect("Deployment");
        assert_eq!(
            d.metadata.generation,
            Some(1),
            "the Deployment of {name} was rewritten"
        );
        let template = d
            .spec
            .and_then(|s| s.template.metadata)
            .and_then(|m| m.annotations)
            .expect("pod annotations");
        assert_eq!(template, {
            let mut expected = template.clone();
            expected.extend(placement_annotations(&placement));
            expected
        });
        let r: f64 = template[hypersync_operator::workload::labels::ANNOTATION_R]
            .parse()
            .expect("r parses");
        assert_eq!(r.to_bits(), placement.r.to_bits(), "{name}");
    }
    operator.stop().await;
}

/// What the test saw of the OnDemand engine while the operator restarted.
#[derive(Debug, Clone)]
enum Seen {
    Replicas(i32),
    /// Whether the NetworkPolicy admits the stack's agents.
    Admits(bool),
    Demand(Option<i32>),
}

/// Record every version of `name` the API server shows from now on.
fn record<K>(
    api: Api<K>,
    name: &str,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
    map: fn(&K) -> Seen,
) -> tokio::task::JoinHandle<()>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    tokio::spawn(async move {
        let mut stream = watcher(api, config)
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(obj) = stream.next().await {
            if let Ok(obj) = obj {
                seen.lock().expect("lock").push(map(&obj));
            }
        }
    })
}

/// Nodes use an OnDemand local model; the operator restarts. Across the restart the engine's
/// Deployment never goes to 0 replicas, its NetworkPolicy never stops admitting the agents, and the
/// entry's demand never reads 0: the new operator decides only from synced caches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_causes_no_demand_dip() {
    use hypersync_operator::api::ModelEntry;
    use hypersync_operator::api::model_entry::ModelPhase;
    use hypersync_operator::workload::inference::inference_name;
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    let cluster = Cluster::start().await;
    let operator = cluster.operator();
    cluster
        .apply_yaml("apiVersion: hypersync.io/v1alpha1\nkind: ModelEntry\nmetadata: {name: llama}\nspec:\n  type: LLM\n  source:\n    local:\n      engine: Ollama\n      model: 'llama3:8b'\n      scaling: {mode: OnDemand, replicas: 1, idleSeconds: 1}\n")
        .await;
    cluster
        .apply_yaml("apiVersion: hypersync.io/v1alpha1\nkind: AgentStack\nmetadata: {name: local}\nspec:\n  layers:\n    cognitive: {modelRef: {name: llama}}\n  runtime:\n    image: busybox:1.36\n    podAnnotations:\n      sim.hypersync.io/run-seconds: \"600\"\n")
        .await;
    for i in 0..3 {
        cluster
            .apply(json!({
                "apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode",
                "metadata": {"name": format!("user-{i}")},
                "spec": {"stackRef": {"name": "local"}, "lifecycle": {"mode": "Persistent"}},
            }))
            .await;
    }
    let nodes: Api<AgentNode> = Api::namespaced(cluster.client.clone(), NS);
    cluster
        .wait_for("every node Running", Duration::from_secs(60), || async {
            let list = nodes.list(&ListParams::default()).await.ok()?;
            (list
                .items
                .iter()
                .filter(|n| n.status.as_ref().and_then(|s| s.phase) == Some(NodePhase::Running))
                .count()
                == 3)
                .then_some(())
        })
        .await;
    let entries: Api<ModelEntry> = Api::namespaced(cluster.client.clone(), NS);
    cluster
        .wait_for("demand 3, Ready", Duration::from_secs(30), || async {
            let s = entries.get("llama").await.ok()?.status?;
            (s.demand == Some(3) && s.phase == Some(ModelPhase::Ready)).then_some(())
        })
        .await;

    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Seen>::new()));
    let engine = inference_name("llama");
    let watches = [
        record(
            Api::<Deployment>::namespaced(cluster.client.clone(), NS),
            &engine,
            seen.clone(),
            |d| Seen::Replicas(d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)),
        ),
        record(
            Api::<NetworkPolicy>::namespaced(cluster.client.clone(), NS),
            &engine,
            seen.clone(),
            |p| {
                let admits = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.ingress.as_ref())
                    .is_some_and(|rules| {
                        rules.iter().any(|r| {
                            serde_json::to_string(&r.from)
                                .unwrap_or_default()
                                .contains("\"local\"")
                        })
                    });
                Seen::Admits(admits)
            },
        ),
        record(entries.clone(), "llama", seen.clone(), |e| {
            Seen::Demand(e.status.as_ref().and_then(|s| s.demand))
        }),
    ];
    cluster
        .wait_for(
            "the three watches listed",
            Duration::from_secs(10),
            || async { (seen.lock().expect("lock").len() >= 3).then_some(()) },
        )
        .await;

    operator.stop().await;
    // The new operator's list of AgentNodes fails for a while (an API server under load), so its
    // other caches are complete long before that one: nothing may be decided meanwhile.
    cluster
        .sim_post(
            "/sim/faults",
            &format!("list/agentnodes{{ua={}}}=1:503", support::OPERATOR_UA),
        )
        .await;
    let operator = cluster.operator();
    wait_for_faults(&cluster, "list", "503", 1).await;
    // Long enough for the entry's debounce (1 s) and idle timer (1 s) to have acted on a demand of 0.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let watches_before = cluster.operator_requests().await;
    cluster.sim_post("/sim/faults", "seed=0").await;
    // The node list succeeds now (a watch follows it); the operator reconciles everything once.
    cluster
        .wait_for(
            "the restarted operator watching AgentNodes",
            Duration::from_secs(60),
            || async {
                let now = cluster.operator_requests().await;
                (now.get("watch agentnodes") > watches_before.get("watch agentnodes")).then_some(())
            },
        )
        .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    for w in watches {
        w.abort();
    }
    let seen = seen.lock().expect("lock").clone();
    let dips: Vec<&Seen> = seen
        .iter()
        .filter(|s| {
            matches!(
                s,
                Seen::Replicas(0)
                    | Seen::Admits(false)
                    | Seen::Demand(Some(0))
                    | Seen::Demand(None)
            )
        })
        .collect();
    assert!(
        dips.is_empty(),
        "dips across the restart: {dips:?} in {seen:?}"
    );
    // The engine is still up and used.
    let s = entries
        .get("llama")
        .await
        .expect("entry")
        .status
        .expect("status");
    assert_eq!((s.demand, s.phase), (Some(3), Some(ModelPhase::Ready)));
    operator.stop().await;
}

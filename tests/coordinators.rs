//! Coordinators (issue 11) on an authorizing kube-sim with the real operator: a node with
//! `spec.spawn` gets the verbs to query the registry and spawn children; its children carry their
//! lineage (labels, owner reference, placement near the parent), the operator refuses children over
//! its caps, and deleting a parent removes its subtree.

mod support;

use std::time::Duration;

use hypersync_operator::api::AgentNode;
use hypersync_operator::api::agent_node::NodePhase;
use hypersync_operator::workload::identity::identity_name;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::Role;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use support::{Cluster, NS, Operator};

const SETUP: &str = r#"
apiVersion: hypersync.io/v1alpha1
kind: ModelEntry
metadata: {name: gpt-4o}
spec:
  type: LLM
  capabilities: [coding, security]
  source:
    remote: {provider: OpenAI, model: gpt-4o}
---
apiVersion: v1
kind: Secret
metadata: {name: openai-credentials}
stringData: {api-key: sk-not-for-agents}
---
apiVersion: hypersync.io/v1alpha1
kind: AgentStack
metadata: {name: coordinator}
spec:
  layers:
    cognitive: {modelRef: {name: gpt-4o}}
  runtime:
    image: busybox:1.36
    podAnnotations: {sim.hypersync.io/run-seconds: "600"}
---
apiVersion: hypersync.io/v1alpha1
kind: AgentStack
metadata: {name: security-analyst}
spec:
  layers:
    cognitive: {selector: {type: LLM, capabilities: [coding, security]}}
  runtime:
    image: busybox:1.36
    podAnnotations: {sim.hypersync.io/run-seconds: "600"}
---
apiVersion: hypersync.io/v1alpha1
kind: AgentNode
metadata: {name: coordinator}
spec:
  stackRef: {name: coordinator}
  task: {description: Watch for anomalies, tags: [coordination]}
  lifecycle: {mode: Persistent}
  spawn: {maxChildren: 1, maxDepth: 2, stacks: [security-analyst]}
"#;

/// kube-sim with `--authorize`, the CRDs, and the operator (as the admin: its own RBAC is proven by
/// tests/packaging.rs).
async fn start() -> (Cluster, Operator) {
    let cluster = Cluster::start_authorizing("gpu-a100=1x8,cpu=2").await;
    let operator = support::run_operator(
        support::client_config(&cluster.sim, Some("sim-admin")),
        support::operator_config(None),
    );
    (cluster, operator)
}

/// A client acting as the node's own ServiceAccount (the agent's identity).
fn agent_client(cluster: &Cluster, node: &str) -> Client {
    let token = format!("sim-sa:{NS}:{}", identity_name(node));
    Client::try_from(support::client_config(&cluster.sim, Some(&token))).expect("client builds")
}

fn child(name: &str, parent: &str, stack: &str, extra: Value) -> AgentNode {
    let mut v = json!({
        "apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode",
        "metadata": {"name": name},
        "spec": {
            "stackRef": {"name": stack},
            "parentRef": {"name": parent},
            "task": {"description": "Triage the anomaly", "tags": ["security", "coding", "anomaly"]},
            "objective": {"metric": {"name": "findings_triaged", "comparator": "GreaterOrEqual", "target": 10}},
            "lifecycle": {"mode": "Ephemeral", "ttlSecondsAfterObjectiveMet": 5, "ttlSecondsAfterFailure": 600},
        }
    });
    if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
        for (k, val) in extra {
            spec.insert(k.clone(), val.clone());
        }
    }
    serde_json::from_value(v).expect("AgentNode")
}

fn condition(node: &AgentNode, type_: &str) -> Option<(String, String, String)> {
    node.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn label<'a>(node: &'a AgentNode, key: &str) -> Option<&'a str> {
    node.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

async fn wait_phase(cluster: &Cluster, name: &str, phase: NodePhase) -> AgentNode {
    let nodes: Api<AgentNode> = Api::namespaced(cluster.client.clone(), NS);
    cluster
        .wait_for(
            &format!("{name} {phase:?}"),
            Duration::from_secs(40),
            || async {
                let n = nodes.get(name).await.ok()?;
                (n.status.as_ref()?.phase == Some(phase)).then_some(n)
            },
        )
        .await
}

fn env_of(containers: &[k8s_openapi::api::core::v1::Container], name: &str) -> Option<String> {
    containers[0]
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

fn forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) -> String {
    match result {
        Err(kube::Error::Api(s)) if s.code == 403 => s.message,
        other => panic!("{what}: expected 403, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_spawns_within_its_caps_and_its_subtree_goes_with_it() {
    let (cluster, operator) = start().await;
    cluster.apply_yaml(SETUP).await;
    let nodes: Api<AgentNode> = Api::namespaced(cluster.client.clone(), NS);

    let coordinator = wait_phase(&cluster, "coordinator", NodePhase::Running).await;
    assert_eq!(
        condition(&coordinator, "Admitted").map(|c| (c.0, c.1)),
        Some(("True".into(), "Admitted".into()))
    );
    let coordinator = cluster
        .wait_for("coordinator labelled", Duration::from_secs(10), || async {
            let n = nodes.get("coordinator").await.ok()?;
            (label(&n, "hypersync.io/spawner") == Some("true")).then_some(n)
        })
        .await;
    assert_eq!(
        label(&coordinator, "hypersync.io/root"),
        Some("coordinator")
    );
    assert_eq!(label(&coordinator, "hypersync.io/depth"), Some("0"));
    let deployment = Api::<Deployment>::namespaced(cluster.client.clone(), NS)
        .get("coordinator")
        .await
        .expect("the coordinator runs as a Deployment");
    let containers = deployment
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod")
        .containers;
    assert_eq!(
        env_of(&containers, "HYPERSYNC_CAN_SPAWN").as_deref(),
        Some("true")
    );
    assert_eq!(
        env_of(&containers, "HYPERSYNC_SPAWN_MAX_CHILDREN").as_deref(),
        Some("1")
    );
    assert_eq!(
        env_of(&containers, "HYPERSYNC_SPAWN_STACKS").as_deref(),
        Some("security-analyst")
    );
    assert_eq!(
        env_of(&containers, "HYPERSYNC_NAMESPACE").as_deref(),
        Some(NS)
    );
    let role = Api::<Role>::namespaced(cluster.client.clone(), NS)
        .get(&identity_name("coordinator"))
        .await
        .expect("the coordinator's Role");
    assert!(role.rules.iter().flatten().any(|r| r.resources.as_deref()
        == Some(&["agentnodes".to_string()][..])
        && r.verbs.contains(&"create".to_string())));

    // The coordinator's agent, with its own token: queries the registry by capability labels...
    let agent = agent_client(&cluster, "coordinator");
    let entries: Api<hypersync_operator::api::ModelEntry> = Api::namespaced(agent.clone(), NS);
    let found = cluster
        .wait_for("capability labels", Duration::from_secs(10), || async {
            let list = entries
                .list(&ListParams::default().labels(
                    "capability.hypersync.io/coding=true,capability.hypersync.io/security=true",
                ))
                .await
                .expect("a spawner may list ModelEntries");
            (!list.items.is_empty()).then_some(list.items)
        })
        .await;
    assert_eq!(found[0].metadata.name.as_deref(), Some("gpt-4o"));
    // ...cannot read Secrets...
    let secrets: Api<Secret> = Api::namespaced(agent.clone(), NS);
    forbidden(secrets.get("openai-credentials").await, "get a Secret");
    forbidden(secrets.list(&ListParams::default()).await, "list Secrets");
    // ...and spawns an analyst.
    let as_agent: Api<AgentNode> = Api::namespaced(agent.clone(), NS);
    as_agent
        .create(
            &PostParams::default(),
            &child("analyst-1", "coordinator", "security-analyst", json!({})),
        )
        .await
        .expect("the coordinator spawns a child");
    wait_phase(&cluster, "analyst-1", NodePhase::Running).await;
    let analyst = cluster
        .wait_for("analyst labelled", Duration::from_secs(10), || async {
            let n = nodes.get("analyst-1").await.ok()?;
            (label(&n, "hypersync.io/depth") == Some("1")).then_some(n)
        })
        .await;
    assert_eq!(label(&analyst, "hypersync.io/parent"), Some("coordinator"));
    assert_eq!(label(&analyst, "hypersync.io/root"), Some("coordinator"));
    let owner = &analyst
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.name.as_str(),
            Some(owner.uid.as_str())
        ),
        (
            "AgentNode",
            "coordinator",
            coordinator.metadata.uid.as_deref()
        )
    );
    assert_eq!(
        condition(&analyst, "Admitted").map(|c| c.0),
        Some("True".to_string())
    );
    // Placed near its parent, one step further out: its anchor is not the origin, and it sits
    // further from the origin than the coordinator.
    let parent_placement = coordinator
        .status
        .clone()
        .and_then(|s| s.placement)
        .expect("placed");
    let placement = analyst
        .status
        .clone()
        .and_then(|s| s.placement)
        .expect("placed");
    assert_ne!(
        placement.anchor.as_deref(),
        parent_placement.anchor.as_deref()
    );
    assert!(
        placement.hyperbolic_radius > parent_placement.hyperbolic_radius,
        "{placement:?} vs {parent_placement:?}"
    );
    let job = Api::<Job>::namespaced(cluster.client.clone(), NS)
        .get("analyst-1")
        .await
        .expect("the analyst's Job");
    let containers = job
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod")
        .containers;
    assert_eq!(
        env_of(&containers, "HYPERSYNC_CAN_SPAWN").as_deref(),
        Some("false")
    );
    assert_eq!(
        env_of(&containers, "HYPERSYNC_PARENT").as_deref(),
        Some("coordinator")
    );
    assert_eq!(
        env_of(&containers, "HYPERSYNC_LINEAGE_DEPTH").as_deref(),
        Some("1")
    );
    cluster
        .wait_for("children counted", Duration::from_secs(10), || async {
            let c = nodes.get("coordinator").await.ok()?.status?.children?;
            (c.live == 1 && c.total == 1).then_some(())
        })
        .await;
    let events = cluster.events_for("AgentNode", "coordinator").await;
    assert!(
        events
            .iter()
            .any(|(_, reason, note)| reason == "Spawned" && note.contains("analyst-1")),
        "{events:?}"
    );

    // Over maxChildren (1): created, but the operator refuses it.
    as_agent
        .create(
            &PostParams::default(),
            &child("analyst-2", "coordinator", "security-analyst", json!({})),
        )
        .await
        .expect("created (no admission policy installed in this test)");
    let refused = wait_phase(&cluster, "analyst-2", NodePhase::Failed).await;
    let (status, reason, message) = condition(&refused, "Admitted").expect("Admitted");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "SpawnLimitExceeded")
    );
    assert!(
        message.starts_with("maxChildren: AgentNode coordinator has 1 live children"),
        "{message}"
    );
    // A stack outside spawn.stacks, created by an admin: refused too, naming the field.
    nodes
        .create(
            &PostParams::default(),
            &child("rogue", "coordinator", "coordinator", json!({})),
        )
        .await
        .expect("created");
    let rogue = wait_phase(&cluster, "rogue", NodePhase::Failed).await;
    let (_, reason, message) = condition(&rogue, "Admitted").expect("Admitted");
    assert_eq!(reason, "SpawnNotAllowed");
    assert!(
        message.starts_with("spec.stackRef.name: stack coordinator is not in"),
        "{message}"
    );
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), NS);
    for name in ["analyst-2", "rogue"] {
        assert!(
            jobs.get(name).await.is_err(),
            "a refused child runs nothing: {name}"
        );
        let events = cluster.events_for("AgentNode", name).await;
        assert!(
            events.iter().any(|(t, _, _)| t == "Warning"),
            "{name}: {events:?}"
        );
    }

    // Deleting the coordinator removes its subtree (owner references).
    nodes
        .delete("coordinator", &DeleteParams::background())
        .await
        .expect("delete the coordinator");
    cluster
        .wait_for("the subtree gone", Duration::from_secs(30), || async {
            let left = nodes.list(&ListParams::default()).await.ok()?.items;
            left.is_empty().then_some(())
        })
        .await;
    operator.stop().await;
}

/// The shipped spawn policies (manifests/operator/agent-spawn-policy.yaml, equal to the chart's),
/// created by the admin as `kubectl apply` would.
async fn install_spawn_policies(cluster: &Cluster) {
    use k8s_openapi::api::admissionregistration::v1::{
        ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    };
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("manifests/operator/agent-spawn-policy.yaml"),
    )
    .expect("the shipped spawn policies");
    for value in serde_saphyr::from_multiple::<Value>(&text).expect("YAML documents") {
        match value["kind"].as_str() {
            Some("ValidatingAdmissionPolicy") => {
                Api::<ValidatingAdmissionPolicy>::all(cluster.client.clone())
                    .create(
                        &PostParams::default(),
                        &serde_json::from_value(value).expect("policy"),
                    )
                    .await
                    .expect("kube-sim accepts the policy");
            }
            Some("ValidatingAdmissionPolicyBinding") => {
                Api::<ValidatingAdmissionPolicyBinding>::all(cluster.client.clone())
                    .create(
                        &PostParams::default(),
                        &serde_json::from_value(value).expect("binding"),
                    )
                    .await
                    .expect("kube-sim accepts the binding");
            }
            other => panic!("unexpected kind {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spawn_policy_holds_each_identity_to_its_own_subtree() {
    let (cluster, operator) = start().await;
    install_spawn_policies(&cluster).await;
    cluster
        .apply_yaml(&SETUP.replace(
            "spawn: {maxChildren: 1, maxDepth: 2, stacks: [security-analyst]}",
            "spawn: {maxChildren: 3, maxDepth: 2, stacks: [security-analyst]}",
        ))
        .await;
    let nodes: Api<AgentNode> = Api::namespaced(cluster.client.clone(), NS);
    // Someone else's node, outside the coordinator's subtree.
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode",
                "metadata": {"name": "bystander"},
                "spec": {"stackRef": {"name": "security-analyst"}, "lifecycle": {"mode": "Persistent"}}
            }))
            .expect("node"),
        )
        .await
        .expect("the admin creates a node");
    cluster
        .wait_for(
            "coordinator labelled as a spawner",
            Duration::from_secs(40),
            || async {
                let n = nodes.get("coordinator").await.ok()?;
                (label(&n, "hypersync.io/spawner") == Some("true")
                    && n.status?.phase == Some(NodePhase::Running))
                .then_some(())
            },
        )
        .await;
    let as_coordinator: Api<AgentNode> = Api::namespaced(agent_client(&cluster, "coordinator"), NS);
    let create = |node: AgentNode| {
        let api = as_coordinator.clone();
        async move { api.create(&PostParams::default(), &node).await }
    };

    // Someone else's parentRef, a missing one, a lineage label of its own making: 403.
    let message = forbidden(
        create(child(
            "impostor",
            "bystander",
            "security-analyst",
            json!({}),
        ))
        .await,
        "a child of another node",
    );
    assert!(
        message.contains("ValidatingAdmissionPolicy 'hypersync-operator-agent-spawn'")
            && message.contains(
                "an agent may create only its own children: spec.parentRef.name must name its own AgentNode, not bystander"
            ),
        "{message}"
    );
    let mut orphan = child("orphan", "coordinator", "security-analyst", json!({}));
    orphan.spec.parent_ref = None;
    let message = forbidden(create(orphan).await, "a node without parentRef");
    assert!(message.contains("not nothing"), "{message}");
    let mut labelled = child("labelled", "coordinator", "security-analyst", json!({}));
    labelled.metadata.labels =
        Some([("hypersync.io/root".to_string(), "bystander".to_string())].into());
    let message = forbidden(create(labelled).await, "a forged lineage label");
    assert!(
        message.contains("lineage labels are written by the operator"),
        "{message}"
    );
    // Wider than its own spawn, or a stack it may not use: 403 from the limits policy.
    let message = forbidden(
        create(child(
            "wide",
            "coordinator",
            "security-analyst",
            json!({"spawn": {"maxChildren": 4, "maxDepth": 2, "stacks": ["security-analyst", "coordinator"]}}),
        ))
        .await,
        "a child wider than its parent",
    );
    assert!(
        message.contains("'hypersync-operator-agent-spawn-limits'")
            && message.contains(
                "an agent may spawn only within its own limits: spec.spawn.maxDepth must be below 2; spec.spawn.maxChildren must be at most 3; spec.spawn.stacks must be a subset of security-analyst"
            ),
        "{message}"
    );
    let message = forbidden(
        create(child("off-stack", "coordinator", "coordinator", json!({}))).await,
        "a stack outside spawn.stacks",
    );
    assert!(
        message.contains("spec.stackRef.name coordinator is not in security-analyst"),
        "{message}"
    );

    // Its own child, spawning in turn.
    create(child(
        "lead",
        "coordinator",
        "security-analyst",
        json!({"spawn": {"maxChildren": 1, "maxDepth": 1, "stacks": ["security-analyst"]},
               "lifecycle": {"mode": "Persistent"}}),
    ))
    .await
    .expect("the coordinator spawns a narrower child");
    create(child(
        "analyst",
        "coordinator",
        "security-analyst",
        json!({}),
    ))
    .await
    .expect("and a plain one");
    cluster
        .wait_for(
            "lead running and labelled",
            Duration::from_secs(40),
            || async {
                let n = nodes.get("lead").await.ok()?;
                (label(&n, "hypersync.io/spawner") == Some("true")
                    && n.status?.phase == Some(NodePhase::Running))
                .then_some(())
            },
        )
        .await;
    let as_lead: Api<AgentNode> = Api::namespaced(agent_client(&cluster, "lead"), NS);
    as_lead
        .create(
            &PostParams::default(),
            &child("grandchild", "lead", "security-analyst", json!({})),
        )
        .await
        .expect("the lead spawns a grandchild");
    let grandchild = cluster
        .wait_for("grandchild labelled", Duration::from_secs(40), || async {
            let n = nodes.get("grandchild").await.ok()?;
            (label(&n, "hypersync.io/depth") == Some("2")).then_some(n)
        })
        .await;
    assert_eq!(label(&grandchild, "hypersync.io/root"), Some("coordinator"));
    assert_eq!(label(&grandchild, "hypersync.io/parent"), Some("lead"));

    // A plain child's identity has no create at all (RBAC).
    let as_analyst: Api<AgentNode> = Api::namespaced(agent_client(&cluster, "analyst"), NS);
    cluster
        .wait_for(
            "the analyst's identity",
            Duration::from_secs(40),
            || async {
                (nodes.get("analyst").await.ok()?.status?.phase == Some(NodePhase::Running))
                    .then_some(())
            },
        )
        .await;
    forbidden(
        as_analyst
            .create(
                &PostParams::default(),
                &child("x", "analyst", "security-analyst", json!({})),
            )
            .await,
        "a node without spawn creating a child",
    );

    // Deletes: outside the subtree refused (RBAC allows delete; the policy reads oldObject).
    let message = forbidden(
        as_coordinator
            .delete("bystander", &DeleteParams::default())
            .await,
        "delete outside the subtree",
    );
    assert!(
        message.contains("an agent may delete only AgentNodes of its own subtree")
            && message.ends_with("not bystander"),
        "{message}"
    );
    let message = forbidden(
        as_lead.delete("analyst", &DeleteParams::default()).await,
        "delete a sibling's node",
    );
    assert!(message.ends_with("not analyst"), "{message}");
    forbidden(
        as_lead
            .delete("coordinator", &DeleteParams::default())
            .await,
        "delete its own parent",
    );
    // Within: the root deletes a grandchild (its root label), then the lead with what is under it.
    as_coordinator
        .delete("grandchild", &DeleteParams::default())
        .await
        .expect("a grandchild is in the root's subtree");
    as_lead
        .create(
            &PostParams::default(),
            &child("grandchild-2", "lead", "security-analyst", json!({})),
        )
        .await
        .expect("the lead spawns again");
    cluster
        .wait_for(
            "grandchild-2 owned by lead",
            Duration::from_secs(40),
            || async {
                let n = nodes.get("grandchild-2").await.ok()?;
                (!n.metadata.owner_references.unwrap_or_default().is_empty()).then_some(())
            },
        )
        .await;
    as_coordinator
        .delete("lead", &DeleteParams::background())
        .await
        .expect("the coordinator deletes its child");
    cluster
        .wait_for(
            "the lead's subtree gone",
            Duration::from_secs(30),
            || async {
                let names: Vec<String> = nodes
                    .list(&ListParams::default())
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .filter_map(|n| n.metadata.name)
                    .collect();
                (!names
                    .iter()
                    .any(|n| n == "lead" || n.starts_with("grandchild")))
                .then_some(names)
            },
        )
        .await;
    assert!(nodes.get("bystander").await.is_ok() && nodes.get("analyst").await.is_ok());
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_stop_the_workload_and_fail_the_node() {
    let (cluster, operator) = start().await;
    cluster
        .apply_yaml(&SETUP.replace(
            "spawn: {maxChildren: 1, maxDepth: 2, stacks: [security-analyst]}",
            "spawn: {maxChildren: 2, maxDepth: 1}\n  budget: {tokens: 1000}",
        ))
        .await;
    let nodes: Api<AgentNode> = Api::namespaced(cluster.client.clone(), NS);
    wait_phase(&cluster, "coordinator", NodePhase::Running).await;
    // A child asking for more than the parent has left is not admitted.
    nodes
        .create(
            &PostParams::default(),
            &child(
                "greedy",
                "coordinator",
                "security-analyst",
                json!({"budget": {"tokens": 1001}}),
            ),
        )
        .await
        .expect("created");
    let greedy = wait_phase(&cluster, "greedy", NodePhase::Failed).await;
    let (_, reason, message) = condition(&greedy, "Admitted").expect("Admitted");
    assert_eq!(reason, "SpawnLimitExceeded");
    assert!(
        message.starts_with(
            "spec.budget.tokens: 1001 is more than AgentNode coordinator has left (1000 of 1000)"
        ),
        "{message}"
    );
    // A child within budget that spends, as its agent reports it (its own token).
    nodes
        .create(
            &PostParams::default(),
            &child(
                "spender",
                "coordinator",
                "security-analyst",
                json!({"budget": {"tokens": 500}}),
            ),
        )
        .await
        .expect("created");
    wait_phase(&cluster, "spender", NodePhase::Running).await;
    let as_spender: Api<AgentNode> = Api::namespaced(agent_client(&cluster, "spender"), NS);
    let report = |tokens: i64| {
        let api = as_spender.clone();
        async move {
            api.patch_status(
                "spender",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"usage": {"tokens": tokens}}})),
            )
            .await
            .expect("the agent reports its usage")
        }
    };
    report(400).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        nodes
            .get("spender")
            .await
            .expect("node")
            .status
            .and_then(|s| s.phase),
        Some(NodePhase::Running),
        "within budget"
    );
    report(501).await;
    let spent = wait_phase(&cluster, "spender", NodePhase::Failed).await;
    let (status, reason, message) = condition(&spent, "ObjectiveMet").expect("ObjectiveMet");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "BudgetExceeded")
    );
    assert!(
        message.starts_with("spec.budget.tokens: 501 tokens used"),
        "{message}"
    );
    let job = Api::<Job>::namespaced(cluster.client.clone(), NS)
        .get("spender")
        .await
        .expect("the Job is kept for inspection");
    assert_eq!(
        job.spec.and_then(|s| s.suspend),
        Some(true),
        "the Job is stopped"
    );
    let events = cluster.events_for("AgentNode", "spender").await;
    assert!(
        events
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == "BudgetExceeded"),
        "{events:?}"
    );
    assert_eq!(
        spent.status.and_then(|s| s.usage).and_then(|u| u.tokens),
        Some(501),
        "the operator keeps the agent's report"
    );
    // The coordinator's budget counts its subtree: a second child's 500 tokens put it over 1000.
    nodes
        .create(
            &PostParams::default(),
            &child("spender-2", "coordinator", "security-analyst", json!({})),
        )
        .await
        .expect("created");
    wait_phase(&cluster, "spender-2", NodePhase::Running).await;
    Api::<AgentNode>::namespaced(agent_client(&cluster, "spender-2"), NS)
        .patch_status(
            "spender-2",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"usage": {"tokens": 500}}})),
        )
        .await
        .expect("report");
    let coordinator = wait_phase(&cluster, "coordinator", NodePhase::Failed).await;
    let (_, reason, message) = condition(&coordinator, "ObjectiveMet").expect("ObjectiveMet");
    assert_eq!(reason, "BudgetExceeded");
    assert!(
        message.starts_with("spec.budget.tokens: 1001 tokens used (with its children)"),
        "{message}"
    );
    let deployment = Api::<Deployment>::namespaced(cluster.client.clone(), NS)
        .get("coordinator")
        .await
        .expect("the Deployment");
    assert_eq!(
        deployment.spec.and_then(|s| s.replicas),
        Some(0),
        "scaled to 0"
    );

    // Wall clock, from the workload's start.
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode",
                "metadata": {"name": "sprinter"},
                "spec": {"stackRef": {"name": "security-analyst"}, "budget": {"wallClockSeconds": 2},
                         "lifecycle": {"ttlSecondsAfterFailure": 600}}
            }))
            .expect("node"),
        )
        .await
        .expect("created");
    let sprinter = wait_phase(&cluster, "sprinter", NodePhase::Failed).await;
    let (_, reason, message) = condition(&sprinter, "ObjectiveMet").expect("ObjectiveMet");
    assert_eq!(reason, "BudgetExceeded");
    assert!(
        message.starts_with("spec.budget.wallClockSeconds: running for"),
        "{message}"
    );
    let wall = sprinter
        .status
        .and_then(|s| s.usage)
        .and_then(|u| u.wall_clock_seconds);
    assert!(wall.is_some_and(|w| w >= 3), "{wall:?}");
    operator.stop().await;
}

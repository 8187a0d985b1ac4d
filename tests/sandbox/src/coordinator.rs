//! The Coordinator of the seed scenario, played by the sandbox with the coordinator node's own
//! ServiceAccount token: it lists the registry by capability labels, creates the stack the analyst
//! needs, spawns the analyst near the anomaly, and tries two spawns it may not make (one refused by
//! the admission policy, one by the operator's caps).

use std::time::Duration;

use hypersync_operator::api::{AgentNode, AgentStack, ModelEntry};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::Clock;

/// The manifests split into what the admin applies and what the coordinator's agent creates.
pub struct Cast {
    /// Applied by the admin: the models, the other stacks, Secrets, and the coordinator node last.
    pub admin: Vec<Value>,
    /// The node with `spec.spawn`.
    pub coordinator: String,
    /// The analyst the coordinator spawns (with `parentRef` naming the coordinator).
    pub analyst: Value,
    /// The stack the coordinator creates for it.
    pub analyst_stack: Value,
}

fn kind_of(v: &Value) -> &str {
    v.get("kind").and_then(Value::as_str).unwrap_or("")
}

fn name_of(v: &Value) -> &str {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

impl Cast {
    /// None when the manifests hold no coordinator (a node with `spec.spawn`) and one other node.
    pub fn split(objects: Vec<Value>) -> Option<Cast> {
        let is_node = |v: &Value| kind_of(v) == "AgentNode";
        let coordinator = objects
            .iter()
            .find(|v| is_node(v) && v.pointer("/spec/spawn").is_some())?
            .clone();
        let mut analyst = objects
            .iter()
            .find(|v| is_node(v) && v.pointer("/spec/spawn").is_none())?
            .clone();
        let stack_name = analyst
            .pointer("/spec/stackRef/name")
            .and_then(Value::as_str)?
            .to_string();
        let analyst_stack = objects
            .iter()
            .find(|v| kind_of(v) == "AgentStack" && name_of(v) == stack_name)?
            .clone();
        analyst["spec"]["parentRef"] = json!({"name": name_of(&coordinator)});
        let mut admin: Vec<Value> = objects
            .into_iter()
            .filter(|v| !(is_node(v) || kind_of(v) == "AgentStack" && name_of(v) == stack_name))
            .collect();
        // Secrets first: the coordinator's agent reads its model's key from one.
        admin.sort_by_key(|v| kind_of(v) != "Secret");
        let coordinator_name = name_of(&coordinator).to_string();
        admin.push(coordinator);
        Some(Cast {
            admin,
            coordinator: coordinator_name,
            analyst,
            analyst_stack,
        })
    }
}

fn typed<T: serde::de::DeserializeOwned>(v: &Value, what: &str) -> Result<T, String> {
    serde_json::from_value(v.clone()).map_err(|e| format!("{what} does not parse: {e}"))
}

/// The coordinator detects the anomaly: it queries the registry for models with the analyst's
/// capabilities and creates the analyst's stack (it may: `spawn.createStacks`).
pub async fn assemble(
    agent: Client,
    namespace: &str,
    cast_stack: &Value,
    who: &str,
    clock: Clock,
) -> Result<(), String> {
    clock.say(&format!(
        "coordinator  anomaly IDS-4711 detected; querying the registry as {who}"
    ));
    let selector = "capability.hypersync.io/coding=true,capability.hypersync.io/security=true";
    let entries: Api<ModelEntry> = Api::namespaced(agent.clone(), namespace);
    let mut found = Vec::new();
    for _ in 0..50 {
        let list = entries
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| format!("list ModelEntries: {e}"))?;
        found = list.items.iter().map(|e| e.name_any()).collect();
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    clock.say(&format!(
        "coordinator  kubectl get me -l {selector}: {}",
        found.join(", ")
    ));
    let stack: AgentStack = typed(cast_stack, "the analyst's AgentStack")?;
    Api::<AgentStack>::namespaced(agent, namespace)
        .create(&PostParams::default(), &stack)
        .await
        .map_err(|e| format!("create the AgentStack: {e}"))?;
    clock.say(&format!(
        "coordinator  created agentstack/{} (selector [coding, security])",
        stack.name_any()
    ));
    Ok(())
}

/// The coordinator spawns the analyst near the anomaly.
pub async fn spawn(
    agent: Client,
    namespace: &str,
    analyst: &Value,
    clock: Clock,
) -> Result<(), String> {
    let node: AgentNode = typed(analyst, "the analyst")?;
    Api::<AgentNode>::namespaced(agent, namespace)
        .create(&PostParams::default(), &node)
        .await
        .map_err(|e| format!("spawn the analyst: {e}"))?;
    clock.say(&format!(
        "coordinator  spawned agentnode/{} (parentRef {}) near the anomaly (r 0.4, theta 120 deg)",
        node.name_any(),
        node.spec.parent_ref.map(|p| p.name).unwrap_or_default()
    ));
    Ok(())
}

fn short(message: &str) -> &str {
    message
        .split_once("denied request: ")
        .map_or(message, |(_, m)| m)
}

/// The lineage as the operator wrote it, then two spawns the coordinator may not make: one the
/// admission policy refuses (403), one the operator refuses (maxChildren).
pub async fn lineage_and_refusals(
    agent: Client,
    admin: Client,
    namespace: String,
    coordinator: String,
    analyst: Value,
    clock: Clock,
) {
    let nodes: Api<AgentNode> = Api::namespaced(admin, &namespace);
    let analyst_name = name_of(&analyst).to_string();
    for _ in 0..100 {
        if let Ok(n) = nodes.get(&analyst_name).await {
            let labels = n.labels();
            if let (Some(root), Some(depth)) = (
                labels.get("hypersync.io/root"),
                labels.get("hypersync.io/depth"),
            ) {
                let owner = n
                    .owner_references()
                    .first()
                    .map(|o| format!("{}/{}", o.kind.to_lowercase(), o.name))
                    .unwrap_or_default();
                clock.say(&format!(
                    "lineage  {coordinator} (depth 0) -> {analyst_name} (hypersync.io/parent={coordinator}, root={root}, depth={depth}; owned by {owner})"
                ));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let as_agent: Api<AgentNode> = Api::namespaced(agent, &namespace);
    // Someone else's child: the policy refuses it before it exists.
    let mut rogue = analyst.clone();
    rogue["metadata"]["name"] = json!(format!("{analyst_name}-rogue"));
    rogue["spec"]["parentRef"] = json!({"name": analyst_name});
    if let Ok(rogue) = typed::<AgentNode>(&rogue, "rogue") {
        match as_agent.create(&PostParams::default(), &rogue).await {
            Err(kube::Error::Api(s)) => clock.say(&format!(
                "coordinator  spawn of {} refused by the admission policy ({}): {}",
                rogue.name_any(),
                s.code,
                short(&s.message)
            )),
            Ok(_) => {
                clock.say("coordinator  UNEXPECTED: the policy admitted a child of another node")
            }
            Err(e) => clock.say(&format!("coordinator  spawn failed: {e}")),
        }
    }
    // A second child while the first is live (maxChildren 1): created, refused by the operator.
    let mut extra = analyst.clone();
    let extra_name = format!("{analyst_name}-2");
    extra["metadata"]["name"] = json!(extra_name);
    extra["spec"]["lifecycle"]["ttlSecondsAfterFailure"] = json!(5);
    let Ok(extra) = typed::<AgentNode>(&extra, "extra") else {
        return;
    };
    if let Err(e) = as_agent.create(&PostParams::default(), &extra).await {
        clock.say(&format!("coordinator  spawn of {extra_name} failed: {e}"));
        return;
    }
    clock.say(&format!(
        "coordinator  spawned agentnode/{extra_name} too (over its maxChildren 1)"
    ));
    for _ in 0..100 {
        let refused = nodes.get(&extra_name).await.ok().and_then(|n| {
            n.status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Admitted" && c.status == "False")
        });
        if let Some(c) = refused {
            clock.say(&format!(
                "operator  agentnode/{extra_name} not admitted: {} ({}); Failed, dissolved after its ttlSecondsAfterFailure (5s)",
                c.reason, c.message
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The coordinator at the end of the story.
pub async fn summary(admin: Client, namespace: &str, coordinator: &str) -> Option<String> {
    let n = Api::<AgentNode>::namespaced(admin, namespace)
        .get(coordinator)
        .await
        .ok()?;
    let status = n.status?;
    let children = status.children.unwrap_or_default();
    Some(format!(
        "agentnode/{coordinator} (Persistent coordinator) stays {:?}; children live {}, total {}",
        status.phase?, children.live, children.total
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coordinator_creates_the_analyst_and_its_stack() {
        let objs = crate::kustomize::render(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests/sandbox"),
        )
        .expect("render");
        let cast = Cast::split(objs).expect("a coordinator and an analyst");
        assert_eq!(cast.coordinator, "coordinator");
        assert_eq!(cast.analyst["spec"]["parentRef"]["name"], "coordinator");
        assert_eq!(name_of(&cast.analyst_stack), "security-analyst");
        let admin: Vec<(&str, &str)> = cast
            .admin
            .iter()
            .map(|v| (kind_of(v), name_of(v)))
            .collect();
        assert!(admin.contains(&("AgentNode", "coordinator")));
        assert!(!admin.contains(&("AgentStack", "security-analyst")));
        assert!(!admin.contains(&("AgentNode", "security-analyst")));
        assert!(Cast::split(vec![cast.analyst.clone()]).is_none());
    }
}

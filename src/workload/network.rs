//! The NetworkPolicy of a local ModelEntry: only agent pods of the stacks bound to it, and the peers
//! the entry allows explicitly, may reach the engine, and only on its port.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::BuildError;
use super::inference::{
    InferenceInput, engine_port, inference_labels, inference_name, inference_selector,
};
use super::labels::LABEL_STACK;
use super::meta::object_meta;
use super::names::label_value;

/// The peer matching agent pods of `stacks` (label `hypersync.io/stack In [..]`, same namespace), or
/// `None` for no stacks (an `In` requirement needs at least one value).
pub fn stack_peer(stacks: &[String]) -> Option<NetworkPolicyPeer> {
    let mut values: Vec<String> = stacks.iter().map(|s| label_value(s)).collect();
    values.sort();
    values.dedup();
    if values.is_empty() {
        return None;
    }
    Some(NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: LABEL_STACK.to_string(),
                operator: "In".to_string(),
                values: Some(values),
            }]),
        }),
        namespace_selector: None,
        ip_block: None,
    })
}

/// Builds the entry's NetworkPolicy. `stacks` are the AgentStacks currently bound to the entry (in
/// any order, duplicates allowed). With neither stacks nor `allowedPeers` the policy has no ingress
/// rule at all, which denies every client: an ingress rule without `from` would admit everyone.
pub fn build_network_policy(
    input: &InferenceInput<'_>,
    stacks: &[String],
) -> Result<NetworkPolicy, BuildError> {
    let port = engine_port(input.local);
    if !(1..=65535).contains(&port) {
        return Err(BuildError::InvalidPort { port });
    }
    let peers: Vec<NetworkPolicyPeer> = stack_peer(stacks)
        .into_iter()
        .chain(input.local.allowed_peers.iter().cloned())
        .collect();
    let ingress = if peers.is_empty() {
        vec![]
    } else {
        vec![NetworkPolicyIngressRule {
            from: Some(peers),
            ports: Some(vec![NetworkPolicyPort {
                port: Some(IntOrString::Int(port)),
                protocol: Some("TCP".to_string()),
                end_port: None,
            }]),
        }]
    };
    Ok(NetworkPolicy {
        metadata: object_meta(
            &inference_name(input.entry_name),
            input.namespace,
            inference_labels(input.entry_name, input.local.engine),
            BTreeMap::new(),
            input.owner,
        ),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(inference_selector(input.entry_name)),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".to_string()]),
            ingress: Some(ingress),
            egress: None,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model_entry::{Engine, LocalSource, ModelType};
    use crate::workload::fixture::assert_fixture;
    use crate::workload::meta::owner_reference;
    use k8s_openapi::api::networking::v1::IPBlock;

    fn local(peers: Vec<NetworkPolicyPeer>) -> LocalSource {
        LocalSource {
            engine: Engine::Vllm,
            model: "m".to_string(),
            image: None,
            args: vec![],
            env: vec![],
            served_model_name: None,
            port: None,
            gpu: None,
            resources: None,
            cache: None,
            node_selector: BTreeMap::new(),
            tolerations: vec![],
            affinity: None,
            priority_class_name: None,
            runtime_class_name: None,
            scaling: None,
            allowed_peers: peers,
        }
    }

    fn build(l: &LocalSource, stacks: &[&str]) -> NetworkPolicy {
        let o = owner_reference("ModelEntry", "coder", "uid-1");
        let stacks: Vec<String> = stacks.iter().map(|s| s.to_string()).collect();
        build_network_policy(
            &InferenceInput {
                entry_name: "coder",
                namespace: "ai",
                model_type: ModelType::Llm,
                local: l,
                replicas: 1,
                owner: &o,
            },
            &stacks,
        )
        .unwrap()
    }

    #[test]
    fn matches_fixture() {
        let l = local(vec![NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: "10.0.0.0/8".to_string(),
                except: None,
            }),
            namespace_selector: None,
            pod_selector: None,
        }]);
        assert_fixture(
            "network-policy",
            &build(&l, &["sec-stack", "code-stack", "sec-stack"]),
        );
    }

    #[test]
    fn stacks_are_sorted_and_deduplicated() {
        let peer = stack_peer(&["b".to_string(), "a".to_string(), "b".to_string()]).unwrap();
        let req = &peer.pod_selector.unwrap().match_expressions.unwrap()[0];
        assert_eq!(req.key, LABEL_STACK);
        assert_eq!(req.operator, "In");
        assert_eq!(req.values.as_deref().unwrap(), ["a", "b"]);
        assert!(stack_peer(&[]).is_none());
    }

    #[test]
    fn no_peers_denies_everything() {
        let np = build(&local(vec![]), &[]);
        let spec = np.spec.unwrap();
        assert_eq!(spec.ingress, Some(vec![]));
        assert_eq!(spec.policy_types.unwrap(), ["Ingress"]);
    }

    #[test]
    fn allowed_peers_alone_are_admitted_on_the_port() {
        let peer = NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "kubernetes.io/metadata.name".to_string(),
                    "monitoring".to_string(),
                )])),
                match_expressions: None,
            }),
            pod_selector: None,
            ip_block: None,
        };
        let np = build(&local(vec![peer.clone()]), &[]);
        let rule = &np.spec.unwrap().ingress.unwrap()[0];
        assert_eq!(rule.from.as_deref().unwrap(), [peer]);
        let port = &rule.ports.as_ref().unwrap()[0];
        assert_eq!(port.port, Some(IntOrString::Int(8000)));
    }

    #[test]
    fn selects_the_engine_pods() {
        let np = build(&local(vec![]), &["s"]);
        assert_eq!(
            np.spec.unwrap().pod_selector.unwrap().match_labels.unwrap(),
            inference_selector("coder")
        );
    }
}

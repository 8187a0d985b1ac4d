//! Metadata shared by every builder: controller owner references, object metadata, environment
//! merging without duplicate names, and the hardened security contexts.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Capabilities, EnvVar, SeccompProfile, SecurityContext};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::api::{GROUP, VERSION};

/// A controller owner reference to a HyperSync object (`hypersync.io/v1alpha1`), with
/// `blockOwnerDeletion`, so garbage collection removes the child with its parent.
pub fn owner_reference(kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: format!("{GROUP}/{VERSION}"),
        kind: kind.to_string(),
        name: name.to_string(),
        uid: uid.to_string(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The controller owner reference to `obj`, or `None` when it has no name or uid yet (an object that
/// was never stored).
pub fn owner_reference_to<K>(obj: &K) -> Option<OwnerReference>
where
    K: kube::Resource<DynamicType = ()>,
{
    let meta = obj.meta();
    let name = meta.name.as_deref()?;
    let uid = meta.uid.as_deref()?;
    Some(OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: name.to_string(),
        uid: uid.to_string(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// Metadata of a namespaced child: name, namespace, labels, annotations (omitted when empty) and the
/// owner reference.
pub fn object_meta(
    name: &str,
    namespace: &str,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    owner: &OwnerReference,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(labels),
        annotations: (!annotations.is_empty()).then_some(annotations),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// A plain `name=value` variable.
pub fn env_value(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// `base` with `overrides` applied by name: a variable of `overrides` replaces the one of the same name
/// in place, new names are appended in order, and a name repeated in `overrides` keeps its last value.
/// The result never repeats a name (server-side apply rejects a list map with duplicate keys).
pub fn merge_env(base: Vec<EnvVar>, overrides: &[EnvVar]) -> Vec<EnvVar> {
    let mut out: Vec<EnvVar> = Vec::with_capacity(base.len() + overrides.len());
    for var in base.into_iter().chain(overrides.iter().cloned()) {
        match out.iter_mut().find(|existing| existing.name == var.name) {
            Some(existing) => *existing = var,
            None => out.push(var),
        }
    }
    out
}

/// `seccompProfile: RuntimeDefault`.
pub fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_string(),
        localhost_profile: None,
    }
}

/// The container security context of the inference engines: no privilege escalation, no capabilities,
/// the runtime's default seccomp profile.
///
/// `runAsNonRoot` is deliberately not set: the official vLLM and Ollama images run as root and keep
/// their weights under `/root`, so forcing a non-root user would stop them from starting. Dropping
/// every capability still removes what makes root dangerous in a container (no `CAP_SYS_ADMIN`,
/// `CAP_NET_RAW`, `CAP_DAC_OVERRIDE`, ...). The root filesystem stays writable because both engines
/// write caches outside the mounted volumes (Triton kernels, compile caches).
pub fn engine_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            add: None,
            drop: Some(vec!["ALL".to_string()]),
        }),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..SecurityContext::default()
    }
}

/// The container security context of agents: the Pod Security "restricted" profile plus a read-only
/// root filesystem (the pod mounts an emptyDir at `/tmp`).
pub fn agent_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            add: None,
            drop: Some(vec!["ALL".to_string()]),
        }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..SecurityContext::default()
    }
}

/// A float as written into annotations and environment variables: Rust's shortest representation
/// that parses back to the same value (`0.4`, `120`, `1.2345678901234567`).
pub fn format_f64(value: f64) -> String {
    format!("{value}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::agent_node::StackRef;
    use crate::api::{AgentNode, AgentNodeSpec};

    #[test]
    fn owner_reference_is_a_blocking_controller_reference() {
        let o = owner_reference("ModelEntry", "coder", "uid-1");
        assert_eq!(o.api_version, "hypersync.io/v1alpha1");
        assert_eq!(o.kind, "ModelEntry");
        assert_eq!(o.name, "coder");
        assert_eq!(o.uid, "uid-1");
        assert_eq!(o.controller, Some(true));
        assert_eq!(o.block_owner_deletion, Some(true));
    }

    #[test]
    fn owner_reference_to_a_stored_object() {
        let mut node = AgentNode::new(
            "scout",
            AgentNodeSpec {
                stack_ref: StackRef {
                    name: "s".to_string(),
                },
                task: None,
                placement: None,
                objective: None,
                lifecycle: None,
                runtime: None,
                parent_ref: None,
                spawn: None,
                budget: None,
            },
        );
        assert!(owner_reference_to(&node).is_none(), "no uid yet");
        node.metadata.uid = Some("u-9".to_string());
        let o = owner_reference_to(&node).expect("owner reference");
        assert_eq!(o, owner_reference("AgentNode", "scout", "u-9"));
    }

    #[test]
    fn merge_env_replaces_in_place_and_dedupes() {
        let base = vec![env_value("A", "1"), env_value("B", "2")];
        let merged = merge_env(
            base,
            &[
                env_value("B", "x"),
                env_value("C", "3"),
                env_value("C", "4"),
            ],
        );
        let pairs: Vec<(&str, &str)> = merged
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(pairs, vec![("A", "1"), ("B", "x"), ("C", "4")]);
    }

    #[test]
    fn floats_round_trip() {
        for v in [0.4, 120.0, 0.1 + 0.2, 1e-9, 0.999_999_999_999] {
            let s = format_f64(v);
            assert_eq!(s.parse::<f64>().ok(), Some(v), "{s}");
        }
        assert_eq!(format_f64(0.4), "0.4");
        assert_eq!(format_f64(120.0), "120");
    }

    #[test]
    fn object_meta_omits_empty_annotations() {
        let o = owner_reference("ModelEntry", "m", "u");
        let meta = object_meta("m", "ns", BTreeMap::new(), BTreeMap::new(), &o);
        assert!(meta.annotations.is_none());
        assert_eq!(meta.owner_references, Some(vec![o]));
        assert_eq!(meta.namespace.as_deref(), Some("ns"));
    }
}

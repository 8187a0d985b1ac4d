//! Custom resources as the watches decode them: in one pass from the JSON text, without their
//! `managedFields`.
//!
//! kube's [`DeserializeGuard`] decodes an object into a `serde_value::Value` tree, clones it, and
//! decodes the typed object from the clone (so that an object that does not match the types still
//! yields its metadata); every `managedFields` entry becomes a `serde_json::Value` tree on the way,
//! which the pipeline then drops. At 10,000 AgentNodes that was one of the operator's largest costs
//! after its own writes. [`Lean`] keeps the guard's meaning (an object the types cannot read is an
//! [`InvalidObject`] with its metadata and the decoder's message, e.g. "missing field `stackRef`")
//! and reads the stream once: the metadata typed, skipping `managedFields`; spec and status into
//! JSON values, then typed from them.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::watcher::Event;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use super::cached::lean_meta;
use crate::api::{AgentNode, AgentNodeSpec, AgentNodeStatus};

/// A custom resource made of metadata, spec and an optional status, as `#[derive(CustomResource)]`
/// writes them.
pub trait Parts: Resource + Sized {
    type Spec: DeserializeOwned;
    type Status: DeserializeOwned;
    fn assemble(metadata: ObjectMeta, spec: Self::Spec, status: Option<Self::Status>) -> Self;
}

impl Parts for AgentNode {
    type Spec = AgentNodeSpec;
    type Status = AgentNodeStatus;
    fn assemble(
        metadata: ObjectMeta,
        spec: AgentNodeSpec,
        status: Option<AgentNodeStatus>,
    ) -> Self {
        AgentNode {
            metadata,
            spec,
            status,
        }
    }
}

/// The object as the watch decodes it: the metadata typed (without `managedFields`), spec and
/// status as JSON values, typed next so that a spec the types cannot read still leaves the
/// metadata.
#[derive(Deserialize)]
struct Shadow {
    #[serde(default, deserialize_with = "lean_meta")]
    metadata: ObjectMeta,
    #[serde(default, deserialize_with = "present")]
    spec: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    status: Option<serde_json::Value>,
}

/// A [`DeserializeGuard`] decoded in one pass (see the module's documentation).
#[derive(Clone, Debug)]
pub struct Lean<K>(pub DeserializeGuard<K>);

impl<K: Parts> Lean<K> {
    fn from_shadow(s: Shadow) -> Self {
        let Shadow {
            metadata,
            spec,
            status,
        } = s;
        let typed = (|| -> Result<(K::Spec, Option<K::Status>), serde_json::Error> {
            let spec = spec.ok_or_else(|| serde::de::Error::missing_field("spec"))?;
            let status = match status {
                Some(v) => serde_json::from_value(v)?,
                None => None,
            };
            Ok((serde_json::from_value(spec)?, status))
        })();
        Lean(DeserializeGuard(match typed {
            Ok((spec, status)) => Ok(K::assemble(metadata, spec, status)),
            Err(err) => Err(InvalidObject {
                error: err.to_string(),
                metadata,
            }),
        }))
    }
}

/// A field that is present, `null` included (`Option<Value>` would read `null` as absent).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

impl<'de, K: Parts> Deserialize<'de> for Lean<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Shadow::deserialize(deserializer).map(Lean::from_shadow)
    }
}

impl<K: Resource> Resource for Lean<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        self.0.meta()
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        self.0.meta_mut()
    }
}

/// A watcher event of [`Lean`] objects as the guard's event.
pub fn unwrap<K>(event: Event<Lean<K>>) -> Event<DeserializeGuard<K>> {
    match event {
        Event::Apply(o) => Event::Apply(o.0),
        Event::Delete(o) => Event::Delete(o.0),
        Event::Init => Event::Init,
        Event::InitApply(o) => Event::InitApply(o.0),
        Event::InitDone => Event::InitDone,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Decode one object's JSON text as the watch does from its stream.
    fn decode<K: Parts>(text: &str) -> Result<DeserializeGuard<K>, serde_json::Error> {
        serde_json::from_str::<Lean<K>>(text).map(|l| l.0)
    }

    /// What kube's guard makes of the same text.
    fn guarded(value: &serde_json::Value) -> DeserializeGuard<AgentNode> {
        serde_json::from_value(value.clone()).expect("the guard decodes anything with metadata")
    }

    fn node(spec: serde_json::Value, status: serde_json::Value) -> serde_json::Value {
        json!({
            "apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode",
            "metadata": {
                "name": "a", "namespace": "team", "uid": "u1", "resourceVersion": "7",
                "labels": {"x": "y"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply",
                    "apiVersion": "hypersync.io/v1alpha1", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:stackRef": {"f:name": {}}}}}]
            },
            "spec": spec,
            "status": status,
        })
    }

    #[test]
    fn a_readable_object_is_the_guards_object_without_managed_fields() {
        let value = node(
            json!({"stackRef": {"name": "s"}, "task": {"tags": ["ops"]}}),
            json!({"phase": "Running", "objective": {"observed": 3.5}}),
        );
        let lean = decode::<AgentNode>(&value.to_string()).expect("decodes");
        let mut expected = guarded(&value).0.expect("valid");
        expected.metadata.managed_fields = None;
        let lean = lean.0.expect("valid");
        assert!(lean.metadata.managed_fields.is_none());
        assert_eq!(
            serde_json::to_value(&lean).expect("serializes"),
            serde_json::to_value(&expected).expect("serializes")
        );
    }

    #[test]
    fn an_unreadable_object_keeps_its_metadata_and_the_decoders_message() {
        for (spec, status, says) in [
            (
                json!({"stackRef": {"name": "s"}, "lifecycle": {"mode": "Forever"}}),
                json!(null),
                "unknown variant `Forever`, expected `Ephemeral` or `Persistent`",
            ),
            (
                json!({"task": {"tags": ["ops"]}}),
                json!(null),
                "missing field `stackRef`",
            ),
            (
                json!({"stackRef": {"name": "s"}}),
                json!({"phase": 7}),
                "invalid type: integer `7`",
            ),
            (json!(null), json!(null), "invalid type: null"),
        ] {
            let value = node(spec, status);
            let lean = decode::<AgentNode>(&value.to_string()).expect("decodes");
            let invalid = lean.0.expect_err("invalid");
            assert!(
                guarded(&value).0.is_err(),
                "kube's guard refuses it too: {value}"
            );
            assert!(invalid.error.contains(says), "{}", invalid.error);
            assert_eq!(invalid.metadata.name.as_deref(), Some("a"));
            assert_eq!(invalid.metadata.uid.as_deref(), Some("u1"));
            assert!(invalid.metadata.managed_fields.is_none());
        }
        // Without a spec at all.
        let mut value = node(json!(null), json!(null));
        value.as_object_mut().expect("object").remove("spec");
        let lean = decode::<AgentNode>(&value.to_string()).expect("decodes");
        assert_eq!(lean.0.expect_err("invalid").error, "missing field `spec`");
    }

    #[test]
    fn a_watch_event_decodes_through_the_lean_type() {
        let value = node(json!({"stackRef": {"name": "s"}}), json!(null));
        let line = json!({"type": "ADDED", "object": value}).to_string();
        let event: kube::core::WatchEvent<Lean<AgentNode>> =
            serde_json::from_str(&line).expect("decodes");
        let kube::core::WatchEvent::Added(obj) = event else {
            panic!("not an ADDED event");
        };
        assert_eq!(obj.meta().name.as_deref(), Some("a"));
        assert!(obj.0.0.is_ok());
    }
}

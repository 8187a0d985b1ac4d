//! The bench's watch on the scenario's AgentNodes: each event's phase (decoded into a small view,
//! not the whole object) marks the node's steps in the shared timeline.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde::Deserialize;
use tokio::sync::oneshot;

use crate::scenario::NAMESPACE;
use crate::timeline::{Step, Timeline};

/// An AgentNode reduced to its name and phase.
#[derive(Clone, Debug, Deserialize)]
pub struct NodeView {
    metadata: ObjectMeta,
    #[serde(default)]
    status: Option<StatusView>,
}

#[derive(Clone, Debug, Deserialize)]
struct StatusView {
    #[serde(default)]
    phase: Option<String>,
}

impl kube::Resource for NodeView {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "AgentNode".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "hypersync.io".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1alpha1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "agentnodes".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The step a phase stands for, if the bench times it.
fn step_of(phase: Option<&str>) -> Option<Step> {
    match phase? {
        "Running" => Some(Step::Running),
        "Succeeded" => Some(Step::Succeeded),
        _ => None,
    }
}

/// Watches the namespace's AgentNodes until the task is aborted, marking Running, Succeeded and
/// Gone at the moment each event arrives; `synced` fires after the first complete list.
pub async fn watch_nodes(
    client: kube::Client,
    timeline: Arc<Mutex<Timeline>>,
    start: Instant,
    synced: oneshot::Sender<()>,
) {
    let api: Api<NodeView> = Api::namespaced(client, NAMESPACE);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut synced = Some(synced);
    while let Some(ev) = stream.next().await {
        let at = start.elapsed().as_secs_f64();
        let (node, step) = match ev {
            Ok(watcher::Event::Apply(n)) | Ok(watcher::Event::InitApply(n)) => {
                let phase = n.status.as_ref().and_then(|s| s.phase.as_deref());
                let step = step_of(phase);
                (n, step)
            }
            Ok(watcher::Event::Delete(n)) => (n, Some(Step::Gone)),
            Ok(watcher::Event::InitDone) => {
                if let Some(tx) = synced.take() {
                    let _ = tx.send(());
                }
                continue;
            }
            Ok(watcher::Event::Init) => continue,
            Err(err) => {
                eprintln!("watch agentnodes: {err}");
                continue;
            }
        };
        let Some(name) = node.metadata.name.as_deref() else {
            continue;
        };
        let phase = node.status.as_ref().and_then(|s| s.phase.as_deref());
        let mut t = timeline.lock().unwrap_or_else(|e| e.into_inner());
        match step {
            Some(Step::Gone) => t.set_phase(name, None),
            _ => t.set_phase(name, Some(phase.unwrap_or("(none)"))),
        }
        if let Some(step) = step {
            t.mark(name, step, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_running_and_succeeded_are_timed() {
        assert_eq!(step_of(Some("Running")), Some(Step::Running));
        assert_eq!(step_of(Some("Succeeded")), Some(Step::Succeeded));
        assert_eq!(step_of(Some("Provisioning")), None);
        assert_eq!(step_of(None), None);
    }

    #[test]
    fn a_node_view_reads_only_name_and_phase() {
        let v: NodeView = serde_json::from_value(serde_json::json!({
            "apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode",
            "metadata": {"name": "agent-1", "namespace": "scale"},
            "spec": {"stackRef": {"name": "s"}},
            "status": {"phase": "Running", "placement": {"r": 0.5}}
        }))
        .expect("decodes");
        assert_eq!(v.metadata.name.as_deref(), Some("agent-1"));
        assert_eq!(v.status.and_then(|s| s.phase).as_deref(), Some("Running"));
    }
}

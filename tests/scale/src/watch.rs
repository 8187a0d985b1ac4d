//! The bench's watch on the scenario's AgentNodes: each event's phase (decoded into a small view,
//! not the whole object) marks the node's steps in the shared timeline. And live counts of
//! collections ([`LiveSet`]): one list, then a watch, so waiting for zero and the progress lines
//! cost kube-sim no list of thousands of objects and show the count as of the last event.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::core::WatchEvent;
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

/// An object reduced to what a count needs.
#[derive(Clone, Debug, Deserialize)]
pub struct Named {
    metadata: NamedMeta,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct NamedMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "resourceVersion")]
    resource_version: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NamedList {
    #[serde(default)]
    metadata: NamedMeta,
    #[serde(default)]
    items: Vec<Named>,
}

/// The names a collection holds, as its watch last showed them; `None` until the first list.
#[derive(Debug, Default)]
pub struct LiveSet {
    names: Mutex<Option<HashSet<String>>>,
}

impl LiveSet {
    /// How many objects the collection holds (None before the first list answered).
    pub fn count(&self) -> Option<usize> {
        self.lock().as_ref().map(HashSet::len)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<HashSet<String>>> {
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reset(&self, names: HashSet<String>) {
        *self.lock() = Some(names);
    }

    /// Applies one watch event; returns its resourceVersion.
    fn apply(&self, ev: WatchEvent<Named>) -> Result<Option<String>, String> {
        let (obj, present) = match ev {
            WatchEvent::Added(o) | WatchEvent::Modified(o) => (o, true),
            WatchEvent::Deleted(o) => (o, false),
            WatchEvent::Bookmark(b) => return Ok(Some(b.metadata.resource_version)),
            WatchEvent::Error(e) => return Err(e.message),
        };
        if let Some(name) = obj.metadata.name {
            let mut names = self.lock();
            let names = names.get_or_insert_with(HashSet::new);
            if present {
                names.insert(name);
            } else {
                names.remove(&name);
            }
        }
        Ok(obj.metadata.resource_version)
    }
}

/// Keeps `live` equal to the collection `path` (filtered by `selector`) until aborted: lists it
/// once, then watches from the list's resourceVersion, resuming from the last event seen and
/// listing again only when the watch fails (e.g. its resourceVersion expired).
pub async fn count_collection(
    client: kube::Client,
    path: String,
    selector: Option<&'static str>,
    live: Arc<LiveSet>,
) {
    let query = selector
        .map(|s| format!("?labelSelector={s}"))
        .unwrap_or_default();
    let get = |uri: String| http::Request::get(uri).body(Vec::new());
    loop {
        let Ok(req) = get(format!("{path}{query}")) else {
            return;
        };
        let list: NamedList = match client.request(req).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("list {path}: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        live.reset(
            list.items
                .into_iter()
                .filter_map(|o| o.metadata.name)
                .collect(),
        );
        let mut rv = list.metadata.resource_version.unwrap_or_default();
        // Watch, resuming after a stream's end, until the watch itself fails.
        loop {
            let sep = if query.is_empty() { '?' } else { '&' };
            let uri = format!(
                "{path}{query}{sep}watch=true&allowWatchBookmarks=true&resourceVersion={rv}"
            );
            let Ok(req) = get(uri) else { return };
            let failed = match client.request_events::<Named>(req).await {
                Ok(stream) => {
                    let mut stream = std::pin::pin!(stream);
                    let mut failed = false;
                    while let Some(ev) = stream.next().await {
                        match ev
                            .map_err(|e: kube::Error| e.to_string())
                            .and_then(|ev| live.apply(ev))
                        {
                            Ok(Some(v)) if !v.is_empty() => rv = v,
                            Ok(_) => {}
                            Err(e) => {
                                eprintln!("watch {path}: {e}");
                                failed = true;
                                break;
                            }
                        }
                    }
                    failed
                }
                Err(e) => {
                    eprintln!("watch {path}: {e}");
                    true
                }
            };
            if failed {
                tokio::time::sleep(Duration::from_millis(500)).await;
                break;
            }
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

    fn named(name: &str, rv: &str) -> Named {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "resourceVersion": rv, "labels": {"a": "b"}},
            "spec": {"containers": []}
        }))
        .expect("decodes")
    }

    #[test]
    fn a_live_set_follows_adds_and_deletes_and_reports_versions() {
        let live = LiveSet::default();
        assert_eq!(live.count(), None, "unknown before the first list");
        live.reset(["a".to_string(), "b".to_string()].into());
        assert_eq!(live.count(), Some(2));
        assert_eq!(
            live.apply(WatchEvent::Added(named("c", "7"))),
            Ok(Some("7".into()))
        );
        live.apply(WatchEvent::Modified(named("a", "8"))).unwrap();
        assert_eq!(live.count(), Some(3));
        live.apply(WatchEvent::Deleted(named("a", "9"))).unwrap();
        live.apply(WatchEvent::Deleted(named("b", "10"))).unwrap();
        // A deletion seen twice (after a resumed watch) counts once.
        live.apply(WatchEvent::Deleted(named("b", "10"))).unwrap();
        assert_eq!(live.count(), Some(1));
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

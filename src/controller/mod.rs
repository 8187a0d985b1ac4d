//! Controllers of the three kinds. Each reconcile is read -> decide (pure) -> apply -> status; the pure
//! decision modules live beside them and are unit-tested without an API server.
//!
//! One shared reflector per kind feeds every controller that reads it; owned Deployments, Jobs and
//! Pods are watched through label-filtered reflectors (`app.kubernetes.io/managed-by`). With a list of
//! namespaces, one set of reflectors and controllers runs per namespace (so namespaced RBAC suffices).

pub mod agent_node;
pub mod agent_node_decide;
pub mod agent_stack;
pub mod context;
pub mod model_entry;
pub mod model_entry_decide;
pub mod resolve;
pub mod status;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt, future};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::api::{AgentNode, AgentStack, ModelEntry};
use crate::error::{Backoff, Error, ObjectKey};
use crate::metrics::Metrics;
use crate::operator::changed;
use crate::workload::labels::{
    LABEL_AGENT_NODE, LABEL_MANAGED_BY, LABEL_MODEL_ENTRY, MANAGED_BY_VALUE,
};
use context::Context;

/// What the controllers watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    AllNamespaces,
    Namespace(String),
}

/// Settings of one controller set.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Cap of the per-object error backoff.
    pub requeue_max: Duration,
    /// Name of the reporting controller in Events.
    pub reporter: String,
    /// Instance (pod name) in Events.
    pub instance: Option<String>,
}

fn api_for<K>(client: &Client, scope: &Scope) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    match scope {
        Scope::AllNamespaces => Api::all(client.clone()),
        Scope::Namespace(ns) => Api::namespaced(client.clone(), ns),
    }
}

/// A shared reflector: its store, `subscribers` subscriptions, and the stream that drives it.
fn shared<K>(
    api: Api<K>,
    config: watcher::Config,
    subscribers: usize,
) -> (
    Store<K>,
    Vec<ReflectHandle<K>>,
    impl Stream<Item = ()> + Send,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store_shared(1024);
    let handles = (0..subscribers)
        .filter_map(|_| writer.subscribe())
        .collect();
    let stream = watcher(api, config)
        .default_backoff()
        .reflect_shared(writer)
        .filter_map(|ev| {
            if let Err(err) = ev {
                tracing::warn!(%err, "watch error; retrying with backoff");
            }
            future::ready(Some(()))
        });
    (reader, handles, stream)
}

/// Report an object that does not match the operator's types: a Warning Event; no retry until it
/// changes. The other objects keep being reconciled.
pub async fn report_malformed<K>(ctx: &Context, invalid: &InvalidObject) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
{
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: invalid.metadata.name.clone(),
        namespace: invalid.metadata.namespace.clone(),
        uid: invalid.metadata.uid.clone(),
        ..Default::default()
    };
    tracing::warn!(error = %invalid.error, name = ?invalid.metadata.name, "malformed object");
    ctx.event(
        &reference,
        EventType::Warning,
        "MalformedObject",
        "Decode",
        format!("the operator cannot read this object: {}", invalid.error),
    )
    .await;
    Ok(Action::await_change())
}

/// Run one reconcile inside a span carrying a fresh trace id, record its duration and result, and
/// reset the object's error backoff when it succeeds.
pub async fn observe<F>(
    controller: &'static str,
    kind: &'static str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ctx: &Context,
    reconcile: F,
) -> Result<Action, Error>
where
    F: std::future::Future<Output = Result<Action, Error>>,
{
    use tracing::Instrument;
    let name = meta.name.clone().unwrap_or_default();
    let (span, _trace_id) =
        crate::telemetry::reconcile_span(controller, meta.namespace.as_deref(), &name);
    let timer = ctx.metrics.reconcile_started(controller);
    let result = reconcile.instrument(span).await;
    timer.finish_with(&result);
    if result.is_ok() {
        ctx.backoff
            .reset(&ObjectKey::new(kind, meta.namespace.as_deref(), name));
    }
    result
}

fn error_policy<K>(obj: Arc<DeserializeGuard<K>>, err: &Error, ctx: Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()>,
    DeserializeGuard<K>: Resource<DynamicType = ()>,
{
    let key = ObjectKey::new(
        K::kind(&()).into_owned(),
        obj.meta().namespace.as_deref(),
        obj.meta().name.clone().unwrap_or_default(),
    );
    let delay = ctx.backoff.next_delay(&key);
    tracing::warn!(kind = %K::kind(&()), name = ?obj.meta().name, reason = err.reason(), error = %err, ?delay, "reconcile failed; requeueing");
    let reference = obj.object_ref(&());
    let note = format!(
        "{err}{}",
        std::error::Error::source(err)
            .map(|s| format!(": {s}"))
            .unwrap_or_default()
    );
    let reason = err.reason();
    tokio::spawn(async move {
        ctx.event(&reference, EventType::Warning, reason, "Reconcile", note)
            .await;
    });
    Action::requeue(delay)
}

fn names_in<'a>(
    list: impl IntoIterator<Item = &'a String>,
    ns: Option<String>,
) -> impl Iterator<Item = ObjectRef<DeserializeGuard<ModelEntry>>> {
    list.into_iter().map(move |n| {
        let r = ObjectRef::new(n);
        match &ns {
            Some(ns) => r.within(ns),
            None => r,
        }
    })
}

/// Run the three controllers for one scope until `shutdown` flips to true. `ready` flips to true once
/// every cache has synced.
pub async fn run_scope(
    client: Client,
    scope: Scope,
    settings: Settings,
    metrics: Arc<Metrics>,
    ready: watch::Sender<bool>,
    shutdown: watch::Receiver<bool>,
) {
    let owned =
        watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY_VALUE}"));
    let all = watcher::Config::default();
    let (entries, mut entry_subs, entry_stream) = shared(
        api_for::<DeserializeGuard<ModelEntry>>(&client, &scope),
        all.clone(),
        3,
    );
    let (stacks, mut stack_subs, stack_stream) = shared(
        api_for::<DeserializeGuard<AgentStack>>(&client, &scope),
        all.clone(),
        3,
    );
    let (nodes, mut node_subs, node_stream) = shared(
        api_for::<DeserializeGuard<AgentNode>>(&client, &scope),
        all.clone(),
        2,
    );
    let (deployments, mut deployment_subs, deployment_stream) =
        shared(api_for::<Deployment>(&client, &scope), owned.clone(), 2);
    let (jobs, mut job_subs, job_stream) =
        shared(api_for::<Job>(&client, &scope), owned.clone(), 1);
    let (pods, mut pod_subs, pod_stream) =
        shared(api_for::<Pod>(&client, &scope), owned.clone(), 2);

    let reporter = Reporter {
        controller: settings.reporter.clone(),
        instance: settings.instance.clone(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        entries: entries.clone(),
        stacks: stacks.clone(),
        nodes: nodes.clone(),
        jobs: jobs.clone(),
        deployments: deployments.clone(),
        pods: pods.clone(),
        metrics: metrics.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        backoff: Backoff::new(settings.requeue_max),
        placement: Mutex::new(context::PlacementState::default()),
    });

    let stop = || {
        let mut shutdown = shutdown.clone();
        async move {
            let _ = shutdown.wait_for(|s| *s).await;
        }
    };

    // ModelEntry: its own changes, owned Deployments, engine pods, and nodes (demand).
    let entry_ctrl = Controller::for_shared_stream(entry_subs.remove(0), entries.clone())
        .owns_shared_stream(deployment_subs.remove(0))
        .watches_shared_stream(pod_subs.remove(0), |pod: Arc<Pod>| {
            names_in(pod.labels().get(LABEL_MODEL_ENTRY), pod.namespace()).collect::<Vec<_>>()
        })
        .watches_shared_stream(
            node_subs.remove(0),
            |node: Arc<DeserializeGuard<AgentNode>>| {
                let ns = node.meta().namespace.clone();
                let names: Vec<String> = node
                    .0
                    .as_ref()
                    .ok()
                    .and_then(|n| n.status.as_ref())
                    .map(|s| s.models.iter().map(|m| m.model_entry.clone()).collect())
                    .unwrap_or_default();
                names_in(names.iter(), ns).collect::<Vec<_>>()
            },
        )
        .watches_shared_stream(
            stack_subs.remove(0),
            move |stack: Arc<DeserializeGuard<AgentStack>>| {
                // Stacks bound to an entry shape its NetworkPolicy.
                let ns = stack.meta().namespace.clone();
                let names: Vec<String> = stack
                    .0
                    .as_ref()
                    .ok()
                    .and_then(|s| s.status.as_ref())
                    .map(|s| {
                        s.bindings
                            .iter()
                            .filter_map(|b| b.model_entry.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                names_in(names.iter(), ns).collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(stop())
        .run(
            model_entry::reconcile,
            error_policy::<ModelEntry>,
            ctx.clone(),
        )
        .for_each(|res| {
            if let Ok((obj, _)) = &res {
                tracing::debug!(object = %obj, "reconciled ModelEntry");
            }
            future::ready(())
        });

    // AgentStack: its own changes and any ModelEntry change in its namespace.
    let stacks_store = stacks.clone();
    let stack_ctrl = Controller::for_shared_stream(stack_subs.remove(0), stacks.clone())
        .watches_shared_stream(
            entry_subs.remove(0),
            move |entry: Arc<DeserializeGuard<ModelEntry>>| {
                let ns = entry.meta().namespace.clone();
                stacks_store
                    .state()
                    .iter()
                    .filter(|s| s.meta().namespace == ns)
                    .map(|s| ObjectRef::from_obj(s.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(stop())
        .run(
            agent_stack::reconcile,
            error_policy::<AgentStack>,
            ctx.clone(),
        )
        .for_each(|_| future::ready(()));

    // AgentNode: its own changes, owned Jobs/Deployments, agent pods, its stack, and model entries.
    let nodes_for_stacks = nodes.clone();
    let nodes_for_entries = nodes.clone();
    let node_ctrl = Controller::for_shared_stream(node_subs.remove(0), nodes.clone())
        .owns_shared_stream(job_subs.remove(0))
        .owns_shared_stream(deployment_subs.remove(0))
        .watches_shared_stream(pod_subs.remove(0), |pod: Arc<Pod>| {
            pod.labels().get(LABEL_AGENT_NODE).map(|n| {
                ObjectRef::<DeserializeGuard<AgentNode>>::new(n)
                    .within(&pod.namespace().unwrap_or_default())
            })
        })
        .watches_shared_stream(
            stack_subs.remove(0),
            move |stack: Arc<DeserializeGuard<AgentStack>>| {
                let ns = stack.meta().namespace.clone();
                let name = stack.meta().name.clone();
                nodes_for_stacks
                    .state()
                    .iter()
                    .filter(|n| {
                        n.meta().namespace == ns
                            && n.0
                                .as_ref()
                                .is_ok_and(|n| Some(&n.spec.stack_ref.name) == name.as_ref())
                    })
                    .map(|n| ObjectRef::from_obj(n.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .watches_shared_stream(
            entry_subs.remove(0),
            move |entry: Arc<DeserializeGuard<ModelEntry>>| {
                let ns = entry.meta().namespace.clone();
                nodes_for_entries
                    .state()
                    .iter()
                    .filter(|n| n.meta().namespace == ns)
                    .filter(|n| {
                        n.0.as_ref().is_ok_and(|n| {
                            !matches!(
                                n.status.as_ref().and_then(|s| s.phase),
                                Some(crate::api::agent_node::NodePhase::Succeeded)
                                    | Some(crate::api::agent_node::NodePhase::Failed)
                            )
                        })
                    })
                    .map(|n| ObjectRef::from_obj(n.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(stop())
        .run(
            agent_node::reconcile,
            error_policy::<AgentNode>,
            ctx.clone(),
        )
        .for_each(|_| future::ready(()));

    let readiness = {
        let (entries, stacks, nodes, deployments, jobs, pods) = (
            entries.clone(),
            stacks.clone(),
            nodes.clone(),
            deployments.clone(),
            jobs.clone(),
            pods.clone(),
        );
        async move {
            let synced = futures::future::try_join_all([
                Box::pin(entries.wait_until_ready())
                    as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>,
                Box::pin(stacks.wait_until_ready()),
                Box::pin(nodes.wait_until_ready()),
                Box::pin(deployments.wait_until_ready()),
                Box::pin(jobs.wait_until_ready()),
                Box::pin(pods.wait_until_ready()),
            ])
            .await;
            if synced.is_ok() {
                let _ = ready.send(true);
                tracing::info!("caches synced");
            }
            future::pending::<()>().await;
        }
    };

    // Phase gauges, from the caches (bounded labels: the phase only).
    let gauges = {
        let (entries, nodes, metrics) = (entries.clone(), nodes.clone(), metrics.clone());
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                metrics.set_agentnode_phases(nodes.state().iter().filter_map(|n| {
                    n.0.as_ref()
                        .ok()
                        .map(|n| n.status.as_ref().and_then(|s| s.phase))
                }));
                metrics.set_modelentry_phases(entries.state().iter().filter_map(|e| {
                    e.0.as_ref()
                        .ok()
                        .map(|e| e.status.as_ref().and_then(|s| s.phase))
                }));
            }
        }
    };

    let reflectors = futures::stream::select_all([
        entry_stream.boxed(),
        stack_stream.boxed(),
        node_stream.boxed(),
        deployment_stream.boxed(),
        job_stream.boxed(),
        pod_stream.boxed(),
    ])
    .for_each(|_| future::ready(()));
    let controllers = future::join3(entry_ctrl, stack_ctrl, node_ctrl);
    let mut stop_reflectors = shutdown.clone();
    tokio::select! {
        _ = controllers => {}
        _ = reflectors => {}
        _ = readiness => {}
        _ = gauges => {}
        _ = changed(stop_reflectors.wait_for(|s| *s)) => {}
    }
}

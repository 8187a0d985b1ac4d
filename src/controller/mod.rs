//! Controllers of the three kinds. Each reconcile is read -> decide (pure) -> apply -> status; the pure
//! decision modules live beside them and are unit-tested without an API server.
//!
//! One watch per kind feeds a reflector store and the [`index::Index`] (`watch.rs`); owned
//! Deployments, Jobs and Pods are watched through label-filtered watches
//! (`app.kubernetes.io/managed-by`). A change queues only the reconciles of the objects it affects.
//! With a list of namespaces, one set of watches and controllers runs per namespace (so namespaced
//! RBAC suffices).

pub mod agent_node;
pub mod agent_node_decide;
pub mod agent_stack;
pub mod cached;
pub mod context;
pub mod index;
pub mod lean;
pub mod lineage;
pub mod model_entry;
pub mod model_entry_decide;
pub mod pods;
pub mod prune;
pub mod ready;
pub mod resolve;
pub mod status;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, future};
use k8s_openapi::api::apps::v1::Deployment;
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use tokio::sync::watch as signal;

use crate::api::{AgentNode, AgentStack, ModelEntry};
use crate::error::{Backoff, Error, ObjectKey};
use crate::metrics::Metrics;
use crate::operator::changed;
use crate::workload::labels::{LABEL_MANAGED_BY, MANAGED_BY_VALUE};
use cached::{Job, Pod};
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

/// Run one reconcile inside a span carrying its trace id (see [`crate::telemetry::reconcile_span`]),
/// record its duration and result, and reset the object's error backoff when it succeeds.
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
        crate::telemetry::reconcile_span(controller, kind, meta.namespace.as_deref(), &name);
    let timer = ctx.metrics.reconcile_started(controller);
    let result = reconcile.instrument(span.clone()).await;
    timer.finish_with(&result);
    let key = ObjectKey::new(kind, meta.namespace.as_deref(), name);
    if let Ok(action) = &result {
        span.in_scope(|| tracing::debug!(?action, "reconciled"));
        ctx.backoff.reset(&key);
        ctx.warned.clear(&key);
    } else {
        span.record("otel.status_code", "ERROR");
        if crate::otel::sampled_trace_id(&span).is_some() {
            ctx.failed_spans.put(key, span);
        }
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
    // The failed reconcile's span when its trace is exported: the log line and the Warning below
    // carry its trace id.
    let failed = ctx.failed_spans.take(&key);
    let _entered = failed.as_ref().map(tracing::Span::enter);
    let delay = ctx.backoff.next_delay(&key);
    let reason = err.reason();
    if err.is_retryable() {
        // Conflicts, unavailable servers, dropped connections and objects gone meanwhile resolve on
        // a retry: a debug line and a metric, not an Event the user would have to read.
        ctx.metrics.transient_error(reason);
        tracing::debug!(kind = %K::kind(&()), name = ?obj.meta().name, reason, error = %err, ?delay, "reconcile hit a transient error; retrying");
        return Action::requeue(delay);
    }
    tracing::warn!(kind = %K::kind(&()), name = ?obj.meta().name, reason, error = %err, ?delay, "reconcile failed; requeueing");
    // One Warning per object and reason until it reconciles successfully again.
    if ctx.warned.first(&key, reason) {
        use tracing::Instrument;
        let reference = obj.object_ref(&());
        let note = format!(
            "{err}{}",
            std::error::Error::source(err)
                .map(|s| format!(": {s}"))
                .unwrap_or_default()
        );
        tokio::spawn(
            async move {
                ctx.event(&reference, EventType::Warning, reason, "Reconcile", note)
                    .await;
            }
            .instrument(failed.clone().unwrap_or_else(tracing::Span::none)),
        );
    }
    Action::requeue(delay)
}

/// Concurrent AgentNode reconciles: enough to keep the API server busy, few enough that what the
/// reconciles hold at once stays bounded.
pub const NODE_CONCURRENCY: u16 = 64;
/// Concurrent reconciles of the ModelEntry and AgentStack controllers.
pub const OTHER_CONCURRENCY: u16 = 8;
/// A ModelEntry's demand moves with every node that starts or ends; its status is written at most
/// about once per this window (trailing edge), not once per node.
pub const ENTRY_DEBOUNCE: Duration = Duration::from_secs(1);

fn keep<K>(_: &mut K) {}

/// Run the three controllers for one scope until `shutdown` flips to true. `ready` flips to true once
/// every cache has synced; the controllers start only then, so no decision is taken from a partial
/// cache (an OnDemand engine is not scaled to 0 because the nodes using it are not listed yet).
pub async fn run_scope(
    client: Client,
    scope: Scope,
    settings: Settings,
    metrics: Arc<Metrics>,
    ready: signal::Sender<bool>,
    shutdown: signal::Receiver<bool>,
) {
    let owned =
        watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY_VALUE}"));
    let all = watcher::Config::default();
    let (entries, entries_w) = reflector::store::<DeserializeGuard<ModelEntry>>();
    let (stacks, stacks_w) = reflector::store::<DeserializeGuard<AgentStack>>();
    let (nodes, nodes_w) = reflector::store::<DeserializeGuard<AgentNode>>();
    let (deployments, deployments_w) = reflector::store::<Deployment>();
    let (jobs, jobs_w) = reflector::store::<Job>();
    let (pods, pods_w) = reflector::store::<Pod>();
    let (node_tx, node_rx) = futures::channel::mpsc::unbounded();
    let (entry_tx, entry_rx) = futures::channel::mpsc::unbounded();
    let (stack_tx, stack_rx) = futures::channel::mpsc::unbounded();
    let queues = watch::Queues {
        nodes: node_tx,
        entries: entry_tx,
        stacks: stack_tx,
    };

    let reporter = Reporter {
        controller: settings.reporter.clone(),
        instance: settings.instance.clone(),
    };
    let index = Arc::new(index::Index::default());
    let ctx = Arc::new(Context {
        client: client.clone(),
        entries: entries.clone(),
        stacks: stacks.clone(),
        nodes: nodes.clone(),
        jobs: jobs.clone(),
        deployments: deployments.clone(),
        pods: pods.clone(),
        index: index.clone(),
        metrics: metrics.clone(),
        recorder: Recorder::new(client.clone(), reporter.clone()),
        reporter,
        backoff: Backoff::new(settings.requeue_max),
        warned: context::Warned::default(),
        failed_spans: context::FailedSpans::default(),
        applied: status::AppliedCache::default(),
        written: status::WrittenStatus::default(),
        dissolved: context::Dissolved::default(),
    });

    // The watches, each in its own task so they use every core and none waits for another.
    let mut tasks = tokio::task::JoinSet::new();
    let on_deleted = {
        let ctx = ctx.clone();
        Box::new(move |node: &AgentNode| agent_node::on_deleted(&ctx, node))
    };
    let quiet_echo = {
        let ctx = ctx.clone();
        Box::new(move |node: &AgentNode| agent_node::is_quiet_echo(&ctx, node))
    };
    let pipelines = [
        watch::pipeline(
            api_for::<lean::Lean<AgentNode>>(&client, &scope),
            all.clone(),
            nodes_w,
            lean::unwrap,
            keep,
            watch::Nodes {
                index: index.clone(),
                on_deleted,
                quiet_echo,
            },
            queues.clone(),
        )
        .boxed(),
        watch::pipeline(
            api_for::<DeserializeGuard<AgentStack>>(&client, &scope),
            all.clone(),
            stacks_w,
            std::convert::identity,
            keep,
            watch::Stacks {
                index: index.clone(),
            },
            queues.clone(),
        )
        .boxed(),
        watch::pipeline(
            api_for::<DeserializeGuard<ModelEntry>>(&client, &scope),
            all.clone(),
            entries_w,
            std::convert::identity,
            keep,
            watch::Entries {
                index: index.clone(),
                stacks: stacks.clone(),
            },
            queues.clone(),
        )
        .boxed(),
        watch::pipeline(
            api_for::<Deployment>(&client, &scope),
            owned.clone(),
            deployments_w,
            std::convert::identity,
            cached::deployment,
            watch::Deployments {
                index: index.clone(),
            },
            queues.clone(),
        )
        .boxed(),
        watch::pipeline(
            api_for::<Job>(&client, &scope),
            owned.clone(),
            jobs_w,
            std::convert::identity,
            cached::job,
            watch::Jobs {
                index: index.clone(),
            },
            queues.clone(),
        )
        .boxed(),
        watch::pipeline(
            api_for::<Pod>(&client, &scope),
            owned.clone(),
            pods_w,
            std::convert::identity,
            cached::pod,
            watch::Pods {
                index: index.clone(),
            },
            queues.clone(),
        )
        .boxed(),
    ];
    for p in pipelines {
        tasks.spawn(p.for_each(|_| future::ready(())));
    }
    drop(queues);

    // Phase gauges, from the caches (bounded labels: the phase only).
    {
        let (entries, nodes, metrics) = (entries.clone(), nodes.clone(), metrics.clone());
        tasks.spawn(async move {
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
        });
    }

    let mut stop_wait = shutdown.clone();
    let synced = futures::future::try_join_all([
        Box::pin(entries.wait_until_ready())
            as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>,
        Box::pin(stacks.wait_until_ready()),
        Box::pin(nodes.wait_until_ready()),
        Box::pin(deployments.wait_until_ready()),
        Box::pin(jobs.wait_until_ready()),
        Box::pin(pods.wait_until_ready()),
    ]);
    tokio::select! {
        res = synced => {
            if res.is_err() {
                tasks.shutdown().await;
                return;
            }
        }
        _ = changed(stop_wait.wait_for(|s| *s)) => {
            tasks.shutdown().await;
            return;
        }
    }
    let _ = ready.send(true);
    tracing::info!("caches synced; starting controllers");

    let stop = || {
        let mut shutdown = shutdown.clone();
        async move {
            let _ = shutdown.wait_for(|s| *s).await;
        }
    };
    let entry_ctrl = Controller::for_stream(futures::stream::pending(), entries.clone())
        .with_config(
            ControllerConfig::default()
                .concurrency(OTHER_CONCURRENCY)
                .debounce(ENTRY_DEBOUNCE),
        )
        .reconcile_on(entry_rx)
        .graceful_shutdown_on(stop())
        .run(
            model_entry::reconcile,
            error_policy::<ModelEntry>,
            ctx.clone(),
        )
        .for_each(|_| future::ready(()));
    let stack_ctrl = Controller::for_stream(futures::stream::pending(), stacks.clone())
        .with_config(ControllerConfig::default().concurrency(OTHER_CONCURRENCY))
        .reconcile_on(stack_rx)
        .graceful_shutdown_on(stop())
        .run(
            agent_stack::reconcile,
            error_policy::<AgentStack>,
            ctx.clone(),
        )
        .for_each(|_| future::ready(()));
    let node_ctrl = Controller::for_stream(futures::stream::pending(), nodes.clone())
        .with_config(ControllerConfig::default().concurrency(NODE_CONCURRENCY))
        .reconcile_on(node_rx)
        .graceful_shutdown_on(stop())
        .run(
            agent_node::reconcile,
            error_policy::<AgentNode>,
            ctx.clone(),
        )
        .for_each(|_| future::ready(()));
    // Each controller in its own task; they return once shutdown is requested and their in-flight
    // reconciles have finished. A JoinSet, so that when this scope's task is aborted (leadership
    // lost, drain timeout) the controllers are aborted with it instead of running on detached.
    let mut controllers = tokio::task::JoinSet::new();
    controllers.spawn(entry_ctrl);
    controllers.spawn(stack_ctrl);
    controllers.spawn(node_ctrl);
    while controllers.join_next().await.is_some() {}
    tasks.shutdown().await;
}

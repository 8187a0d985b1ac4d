//! The `kubectl-hypersync` command line: kubectl's connection flags (`--kubeconfig`, `--context`,
//! `-n`, `-A`), the four subcommands, and the reads each needs from the API server.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::api::{AgentNode, AgentStack, ModelEntry};
use crate::workload::labels::{LABEL_AGENT_NODE, LABEL_MODEL_ENTRY};
use crate::workload::names::label_value;

use super::disk::{DEFAULT_MAX_LABELS, DiskOptions};
use super::scene::scene;
use super::why::{self, Lookup, ModelFacts, SecretCheck, WhyInput};
use super::{models, tree};

/// `kubectl hypersync`: look at HyperSync's agents and models the way they are meant to be seen.
#[derive(Parser, Debug)]
#[command(
    name = "kubectl-hypersync",
    bin_name = "kubectl hypersync",
    version,
    about = "Look at HyperSync agents and models: the Poincaré disk, why a node is not Running, the lineage, the registry"
)]
pub struct Cli {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long, global = true, value_name = "NS")]
    pub namespace: Option<String>,
    /// Every namespace (disk, tree, models).
    #[arg(short = 'A', long, global = true, conflicts_with = "namespace")]
    pub all_namespaces: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The Poincaré disk as SVG: tier rings, every AgentNode coloured by phase, geodesics to parents
    /// and anchors (`kubectl hypersync disk > disk.svg`).
    Disk {
        /// Output format.
        #[arg(short = 'o', long, default_value = "svg", value_parser = ["svg"])]
        output: String,
        /// Draw each node with its name up to this many nodes; above, density cells.
        #[arg(long, default_value_t = DEFAULT_MAX_LABELS)]
        max_labels: usize,
        /// The time shown in the title (RFC 3339), for reproducible pictures (default:
        /// $SOURCE_DATE_EPOCH if set, else now).
        #[arg(long, value_name = "RFC3339")]
        timestamp: Option<String>,
    },
    /// Why a node is not Running: node -> stack -> models -> Deployments -> pods -> scheduler.
    /// Exits 0 when the node is Running, 1 when it is not.
    Why {
        /// The AgentNode.
        node: String,
    },
    /// The lineage of AgentNodes (children under their `hypersync.io/parent`, top-level nodes
    /// grouped by anchor) with phase, tier and age; with NODE, only its ancestors and descendants.
    Tree {
        /// Show only this node's lineage.
        node: Option<String>,
    },
    /// The model registry: capabilities, engine, GPUs, phase, replicas, demand and endpoint.
    Models,
}

/// Why the command failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("failed to load the kubeconfig")]
    Kubeconfig(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("failed to build the API client")]
    Client(#[source] kube::Error),
    #[error("failed to {what}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to {what}: {message}")]
    Denied { what: String, message: String },
    #[error("agentnode {name} not found in {scope}")]
    NodeNotFound { name: String, scope: String },
    #[error("--timestamp {value:?} is not an RFC 3339 time such as 2026-01-01T00:00:00Z")]
    Timestamp { value: String },
    #[error("SOURCE_DATE_EPOCH {value:?} is not a number of seconds")]
    SourceDateEpoch { value: String },
    #[error("`why` looks at one node: give -n NAMESPACE instead of -A")]
    WhyAllNamespaces,
    #[error(transparent)]
    Tree(#[from] tree::TreeError),
    #[error("failed to write the output")]
    Write(#[source] std::io::Error),
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> PluginError {
    let what = what.into();
    move |source| PluginError::Api { what, source }
}

/// What a command produced: text for stdout and whether it succeeded (`why` on a node that is not
/// Running does not).
#[derive(Debug)]
pub struct Output {
    pub text: String,
    pub success: bool,
}

/// Where to look: a client and the namespace (`None` for all namespaces).
pub struct Target {
    pub client: Client,
    pub namespace: Option<String>,
}

impl Target {
    /// A client from `--kubeconfig` / `--context` (or `$KUBECONFIG`, `~/.kube/config`, in-cluster),
    /// and the namespace from `-n`, `-A` or the context.
    pub async fn from_cli(cli: &Cli) -> Result<Target, PluginError> {
        let options = KubeConfigOptions {
            context: cli.context.clone(),
            cluster: None,
            user: None,
        };
        let config = match &cli.kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path)
                    .map_err(|e| PluginError::Kubeconfig(Box::new(e)))?;
                Config::from_custom_kubeconfig(kc, &options)
                    .await
                    .map_err(|e| PluginError::Kubeconfig(Box::new(e)))?
            }
            None if cli.context.is_some() => Config::from_kubeconfig(&options)
                .await
                .map_err(|e| PluginError::Kubeconfig(Box::new(e)))?,
            None => Config::infer()
                .await
                .map_err(|e| PluginError::Kubeconfig(Box::new(e)))?,
        };
        let namespace = if cli.all_namespaces {
            None
        } else {
            Some(
                cli.namespace
                    .clone()
                    .unwrap_or_else(|| config.default_namespace.clone()),
            )
        };
        let client = Client::try_from(config).map_err(PluginError::Client)?;
        Ok(Target { client, namespace })
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    fn scope(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("namespace {ns}"),
            None => "all namespaces".to_string(),
        }
    }
}

/// Runs one command against the cluster.
pub async fn run(cli: &Cli, target: &Target) -> Result<Output, PluginError> {
    match &cli.command {
        Command::Disk {
            output: _,
            max_labels,
            timestamp,
        } => {
            let generated_at = timestamp_text(timestamp.as_deref())?;
            let nodes = list_nodes(target).await?;
            let options = DiskOptions {
                scope: target.scope(),
                generated_at,
                max_labels: *max_labels,
            };
            Ok(Output {
                text: super::disk::render(&nodes, &options),
                success: true,
            })
        }
        Command::Why { node } => {
            let Some(ns) = &target.namespace else {
                return Err(PluginError::WhyAllNamespaces);
            };
            let input = why_input(&target.client, ns, node).await?;
            let explanation = why::explain(&input);
            Ok(Output {
                text: explanation.render(),
                success: explanation.running,
            })
        }
        Command::Tree { node } => {
            let nodes = list_nodes(target).await?;
            let focus = match (node, &target.namespace) {
                (Some(n), Some(ns)) => Some((ns.as_str(), n.as_str())),
                (Some(n), None) => {
                    // -A with a name: the first namespace holding it.
                    let ns = nodes
                        .iter()
                        .find(|x| x.metadata.name.as_deref() == Some(n.as_str()))
                        .and_then(|x| x.metadata.namespace.as_deref())
                        .ok_or_else(|| PluginError::NodeNotFound {
                            name: n.clone(),
                            scope: "any namespace".to_string(),
                        })?;
                    Some((ns, n.as_str()))
                }
                (None, _) => None,
            };
            let scene = scene(&nodes);
            let text = tree::render(&scene, focus, Timestamp::now(), target.namespace.is_none())?;
            Ok(Output {
                text,
                success: true,
            })
        }
        Command::Models => {
            let entries: Vec<ModelEntry> = target
                .api::<ModelEntry>()
                .list(&ListParams::default())
                .await
                .map_err(api_err("list ModelEntries"))?
                .items;
            Ok(Output {
                text: models::render(&entries, target.namespace.is_none()),
                success: true,
            })
        }
    }
}

/// The title's time: `--timestamp`, else `$SOURCE_DATE_EPOCH`, else now (whole seconds, UTC).
pub fn timestamp_text(flag: Option<&str>) -> Result<String, PluginError> {
    if let Some(value) = flag {
        let t: Timestamp = value.parse().map_err(|_| PluginError::Timestamp {
            value: value.to_string(),
        })?;
        return Ok(t.to_string());
    }
    if let Ok(value) = std::env::var("SOURCE_DATE_EPOCH") {
        let t = value
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(|s| Timestamp::from_second(s).ok())
            .ok_or(PluginError::SourceDateEpoch { value })?;
        return Ok(t.to_string());
    }
    let now = Timestamp::now();
    Ok(Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string())
}

async fn list_nodes(target: &Target) -> Result<Vec<AgentNode>, PluginError> {
    Ok(target
        .api::<AgentNode>()
        .list(&ListParams::default())
        .await
        .map_err(api_err("list AgentNodes"))?
        .items)
}

async fn lookup<K>(api: &Api<K>, name: &str, what: &str) -> Result<Lookup<K>, PluginError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get_opt(name).await {
        Ok(Some(o)) => Ok(Lookup::Found(o)),
        Ok(None) => Ok(Lookup::NotFound),
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(Lookup::Failed(s.message.clone())),
        Err(source) => Err(PluginError::Api {
            what: format!("get {what} {name}"),
            source,
        }),
    }
}

/// Reads what `why` walks: the node, its stack, the stack's models with their Deployments, pods and
/// API-key Secrets (existence only), and the agent's pods.
pub async fn why_input(client: &Client, ns: &str, node: &str) -> Result<WhyInput, PluginError> {
    let nodes: Api<AgentNode> = Api::namespaced(client.clone(), ns);
    let node_obj = match lookup(&nodes, node, "agentnode").await? {
        Lookup::Found(n) => n,
        Lookup::NotFound => {
            return Err(PluginError::NodeNotFound {
                name: node.to_string(),
                scope: format!("namespace {ns}"),
            });
        }
        Lookup::Failed(message) => {
            return Err(PluginError::Denied {
                what: format!("get agentnode {node}"),
                message,
            });
        }
    };
    let stacks: Api<AgentStack> = Api::namespaced(client.clone(), ns);
    let stack = lookup(&stacks, &node_obj.spec.stack_ref.name, "agentstack").await?;
    let (mut bound, unresolved) = match &stack {
        Lookup::Found(s) => why::bound_models(s),
        _ => (BTreeMap::new(), Vec::new()),
    };
    // Models the node reports in use (e.g. a running agent started with a model the stack no
    // longer binds) are walked too.
    for m in node_obj.status.iter().flat_map(|s| s.models.iter()) {
        let layers = bound.entry(m.model_entry.clone()).or_default();
        if !layers.contains(&m.layer) {
            layers.push(m.layer.clone());
        }
    }
    let entries: Api<ModelEntry> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut models = BTreeMap::new();
    for (model, layers) in bound {
        let entry = lookup(&entries, &model, "modelentry").await?;
        let selector = format!("{LABEL_MODEL_ENTRY}={}", label_value(&model));
        let lp = ListParams::default().labels(&selector);
        let (deps, model_pods) = if matches!(&entry, Lookup::Found(e) if e.spec.source.local.is_some())
        {
            (
                deployments
                    .list(&lp)
                    .await
                    .map_err(api_err(format!("list Deployments of {model}")))?
                    .items,
                pods.list(&lp)
                    .await
                    .map_err(api_err(format!("list pods of {model}")))?
                    .items,
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let secret = match &entry {
            Lookup::Found(e) => match e
                .spec
                .source
                .remote
                .as_ref()
                .and_then(|r| r.api_key_secret_ref.as_ref())
            {
                Some(r) => {
                    // Only whether it exists: the metadata, never the value.
                    let check = match secrets.get_metadata_opt(&r.name).await {
                        Ok(Some(_)) => SecretCheck::Present,
                        Ok(None) => SecretCheck::Missing,
                        Err(kube::Error::Api(s)) => SecretCheck::Unknown(s.message.clone()),
                        Err(e) => SecretCheck::Unknown(e.to_string()),
                    };
                    Some((r.name.clone(), r.key.clone(), check))
                }
                None => None,
            },
            _ => None,
        };
        models.insert(
            model,
            ModelFacts {
                layers,
                entry,
                deployments: deps,
                pods: model_pods,
                secret,
            },
        );
    }
    let agent_pods = pods
        .list(&ListParams::default().labels(&format!("{LABEL_AGENT_NODE}={}", label_value(node))))
        .await
        .map_err(api_err(format!("list the pods of agentnode {node}")))?
        .items;
    Ok(WhyInput {
        node: node_obj,
        stack,
        unresolved,
        models,
        agent_pods,
    })
}

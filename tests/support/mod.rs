//! Shared harness of the operator integration tests: a kube-sim in-process, the CRDs installed, the
//! real operator running in-process, and helpers to wait for what a user would see with kubectl.
#![allow(dead_code)]

pub mod proxy;

use std::future::Future;
use std::time::{Duration, Instant};

use hypersync_operator::api::generate;
use hypersync_operator::config::OperatorConfig;
use hypersync_operator::telemetry::LogFormat;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, Config};
use kube_sim::{Sim, SimConfig};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const NS: &str = "default";

/// The User-Agent of the operator these tests run, so kube-sim's counters tell its requests from the
/// test's own.
pub const OPERATOR_UA: &str = "hypersync-operator-under-test";

/// A kube-rs configuration for the simulator: its URL, its CA as the only trusted root, and a
/// bearer token when given (`sim-admin`, `sim-sa:<ns>:<name>`, a TokenRequest token).
pub fn client_config(sim: &Sim, token: Option<&str>) -> Config {
    let mut config = Config::new(sim.url().parse().expect("sim URL parses"));
    config.root_cert = sim.ca_der().map(|ca| vec![ca.to_vec()]);
    if let Some(t) = token {
        config.auth_info.token = Some(t.to_string().into());
    }
    config
}

/// A simulator with the CRDs installed.
pub struct Cluster {
    pub sim: Sim,
    pub client: Client,
}

/// The operator running in this process.
pub struct Operator {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Operator {
    /// Whether it has stopped on its own (an error, lost leadership).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stop it gracefully and wait until it has stopped.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), &mut self.task).await;
    }
}

impl Cluster {
    /// Two GPU nodes with 8 GPUs each and two CPU nodes, the CRDs installed and Established.
    pub async fn start() -> Cluster {
        Self::start_with("gpu-a100=2x8,cpu=2").await
    }

    pub async fn start_with(nodes: &str) -> Cluster {
        Self::start_config(SimConfig {
            nodes: Some(nodes.to_string()),
            ..SimConfig::default()
        })
        .await
    }

    /// The default nodes, served over plain HTTP (for tests that put a recording proxy in front).
    pub async fn start_plain_http() -> Cluster {
        Self::start_config(SimConfig {
            nodes: Some("gpu-a100=2x8,cpu=2".to_string()),
            insecure_http: true,
            ..SimConfig::default()
        })
        .await
    }

    /// Like [`Cluster::start_with`], on an authorizing kube-sim (`--authorize`); the test's client is
    /// the admin (`sim-admin`).
    pub async fn start_authorizing(nodes: &str) -> Cluster {
        Self::start_config(SimConfig {
            nodes: Some(nodes.to_string()),
            authorize: true,
            ..SimConfig::default()
        })
        .await
    }

    async fn start_config(config: SimConfig) -> Cluster {
        let token = config.authorize.then_some("sim-admin");
        let sim = Sim::start(config).await.expect("kube-sim starts");
        let client = Client::try_from(client_config(&sim, token)).expect("client builds");
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in generate::crds() {
            let name = crd.metadata.name.clone().expect("CRD has a name");
            crds.patch(
                &name,
                &PatchParams::apply("test").force(),
                &Patch::Apply(&crd),
            )
            .await
            .expect("CRD applies");
        }
        let cluster = Cluster { sim, client };
        for crd in generate::crds() {
            let name = crd.metadata.name.clone().expect("CRD has a name");
            let crds = crds.clone();
            cluster
                .wait_for(
                    &format!("CRD {name} Established"),
                    Duration::from_secs(10),
                    || {
                        let crds = crds.clone();
                        let name = name.clone();
                        async move {
                            let crd = crds.get(&name).await.ok()?;
                            crd.status?
                                .conditions?
                                .iter()
                                .any(|c| c.type_ == "Established" && c.status == "True")
                                .then_some(())
                        }
                    },
                )
                .await;
        }
        cluster
    }

    /// Run the real operator (no leader election) against this cluster.
    pub fn operator(&self) -> Operator {
        self.operator_with(None)
    }

    /// Run the real operator (no leader election) and return its metrics as well.
    pub async fn operator_with_metrics(&self) -> (Operator, hypersync_operator::metrics::Metrics) {
        let started = hypersync_operator::operator::Operator::start(
            self.operator_kube_config(),
            operator_config(None),
        )
        .await
        .expect("operator starts");
        let metrics = started.metrics();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            if let Err(err) = started.run(shutdown).await {
                eprintln!("operator stopped with an error: {err}");
            }
        });
        (
            Operator {
                stop: Some(tx),
                task,
            },
            metrics,
        )
    }

    /// Run the real operator taking part in leader election as `identity`.
    pub fn elected_operator(&self, identity: &str) -> Operator {
        self.operator_with(Some(leader_election(identity)))
    }

    fn operator_with(
        &self,
        leader_election: Option<hypersync_operator::config::LeaderElectionConfig>,
    ) -> Operator {
        run_operator(
            self.operator_kube_config(),
            operator_config(leader_election),
        )
    }

    /// A kube config for this simulator (its CA trusted, no credentials).
    pub fn kube_config(&self) -> Config {
        client_config(&self.sim, None)
    }

    /// The operator's kube config: like the test's own, sending the operator's User-Agent.
    pub fn operator_kube_config(&self) -> Config {
        let mut config = self.kube_config();
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static(OPERATOR_UA),
        ));
        config
    }

    /// A client like the test's own, sending the operator's User-Agent.
    pub fn operator_client(&self) -> Client {
        Client::try_from(self.operator_kube_config()).expect("client builds")
    }

    /// The requests the operator sent so far, as `"verb resource[/subresource]" -> count`.
    pub async fn operator_requests(&self) -> std::collections::BTreeMap<String, u64> {
        let stats = self.sim_json("/sim/stats").await;
        let mut out = std::collections::BTreeMap::new();
        for row in stats["requests"].as_array().into_iter().flatten() {
            if row["userAgent"] != OPERATOR_UA {
                continue;
            }
            let sub = row["subresource"].as_str().unwrap_or_default();
            let key = format!(
                "{} {}{}{}",
                row["verb"].as_str().unwrap_or_default(),
                row["resource"].as_str().unwrap_or_default(),
                if sub.is_empty() { "" } else { "/" },
                sub
            );
            *out.entry(key).or_default() += row["count"].as_u64().unwrap_or(0);
        }
        out
    }

    /// Apply a multi-document YAML manifest with server-side apply (like `kubectl apply --server-side`).
    pub async fn apply_yaml(&self, yaml: &str) {
        for value in serde_saphyr::from_multiple::<Value>(yaml).expect("manifest parses") {
            if value.is_null() || value["kind"] == "Kustomization" {
                continue;
            }
            self.apply(value).await;
        }
    }

    /// Server-side apply one object given as JSON.
    pub async fn apply(&self, value: Value) {
        let api_version = value["apiVersion"]
            .as_str()
            .expect("apiVersion")
            .to_string();
        let kind = value["kind"].as_str().expect("kind").to_string();
        let name = value["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_string();
        let api = self.dynamic(&api_version, &kind).await;
        api.patch(
            &name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(&value),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {kind}/{name}: {e}"));
    }

    /// A dynamic Api for a kind in the test namespace (or cluster-scoped).
    pub async fn dynamic(&self, api_version: &str, kind: &str) -> Api<kube::api::DynamicObject> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        let (ar, caps) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .expect("kind is served");
        if caps.scope == kube::discovery::Scope::Namespaced {
            Api::namespaced_with(self.client.clone(), NS, &ar)
        } else {
            Api::all_with(self.client.clone(), &ar)
        }
    }

    /// Poll `probe` until it yields Some, or panic naming `what` after `timeout`.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, timeout: Duration, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let start = Instant::now();
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            if start.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The events.k8s.io Events about an object, as (type, reason, note).
    pub async fn events_for(&self, kind: &str, name: &str) -> Vec<(String, String, String)> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), NS);
        let list = api.list(&ListParams::default()).await.expect("events list");
        list.items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name)
                })
            })
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// POST `body` to a path of the simulator (e.g. a fault spec to `/sim/faults`); its JSON answer.
    pub async fn sim_post(&self, path: &str, body: &str) -> Value {
        let req = http::Request::post(path)
            .body(body.as_bytes().to_vec())
            .expect("request builds");
        self.client
            .request::<Value>(req)
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// GET a path of the simulator (e.g. `/sim/stats`) as JSON.
    pub async fn sim_json(&self, path: &str) -> Value {
        let req = http::Request::get(path)
            .body(Vec::new())
            .expect("request builds");
        self.client
            .request::<Value>(req)
            .await
            .expect("sim endpoint answers")
    }
}

/// Report the agent's metric as the agent does: a merge patch of its node's
/// `status.objective.observed`.
pub async fn report(nodes: &Api<hypersync_operator::api::AgentNode>, name: &str, value: f64) {
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"objective": {"observed": value}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("report for {name}: {e}"));
}

/// Leader election as `identity` on the Lease `hypersync-operator-leader` of the test namespace, with
/// short timings (4 s lease, 3 s renew deadline, 500 ms retry).
pub fn leader_election(identity: &str) -> hypersync_operator::config::LeaderElectionConfig {
    hypersync_operator::config::LeaderElectionConfig {
        namespace: NS.to_string(),
        lease_name: "hypersync-operator-leader".to_string(),
        identity: identity.to_string(),
        timings: hypersync_operator::leader::LeaseTimings {
            lease_duration: Duration::from_secs(4),
            renew_deadline: Duration::from_secs(3),
            retry_period: Duration::from_millis(500),
        },
    }
}

/// The operator's settings in tests: all namespaces, HTTP on a free loopback port.
pub fn operator_config(
    leader_election: Option<hypersync_operator::config::LeaderElectionConfig>,
) -> OperatorConfig {
    OperatorConfig {
        namespaces: Vec::new(),
        log_format: LogFormat::Text,
        log_level: "info".to_string(),
        http_addr: "127.0.0.1:0".parse().expect("address parses"),
        leader_election,
        requeue_max: Duration::from_secs(30),
        liveness_stall: Duration::from_secs(60),
        drain_timeout: Duration::from_secs(20),
        otel: None,
    }
}

/// Requests the shutdown of an operator run with [`hypersync_operator::operator::Operator`] and
/// waits (at most 30 s) for it to stop without error.
pub async fn stop_and_join(
    stop: oneshot::Sender<()>,
    run: JoinHandle<Result<(), hypersync_operator::operator::RunError>>,
    who: &str,
) {
    let _ = stop.send(());
    let result = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap_or_else(|_| panic!("{who} did not stop within 30 s"))
        .unwrap_or_else(|e| panic!("{who}'s task failed: {e}"));
    assert!(result.is_ok(), "{who} stopped with {result:?}");
}

/// Runs the real operator on the current runtime until [`Operator::stop`].
pub fn run_operator(kube_config: Config, config: OperatorConfig) -> Operator {
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = rx.await;
        };
        if let Err(err) = hypersync_operator::operator::run(kube_config, config, shutdown).await {
            eprintln!("operator stopped with an error: {err}");
        }
    });
    Operator {
        stop: Some(tx),
        task,
    }
}

/// The samples of the seed scenario, with the simulated agent pods kept running until the test
/// reports the objective, and a short idle timer on the on-demand model.
pub fn seed_samples(idle_seconds: u32, ttl_seconds: u32) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let read = |f: &str| {
        std::fs::read_to_string(format!("{root}/manifests/samples/{f}")).expect("sample readable")
    };
    let entries = read("modelentries.yaml")
        .replace("idleSeconds: 60", &format!("idleSeconds: {idle_seconds}"));
    let stack = read("agentstack.yaml").replace(
        "  runtime:\n",
        "  runtime:\n    podAnnotations:\n      sim.hypersync.io/run-seconds: \"600\"\n",
    );
    let node = read("agentnode.yaml").replace(
        "ttlSecondsAfterObjectiveMet: 10",
        &format!("ttlSecondsAfterObjectiveMet: {ttl_seconds}"),
    );
    format!("{entries}\n---\n{stack}\n---\n{node}")
}

//! OpenTelemetry export as a platform team wires it: the operator binary, run against kube-sim with
//! `--otlp-endpoint` (or the `OTEL_*` variables), sends its reconcile spans over OTLP/HTTP to a
//! receiver in this test; the Warning Events it publishes carry the trace id of an exported span,
//! and so do its log lines. With export disabled nothing is sent and the operator works as before.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use hypersync_operator::otel::TRACE_ID_ANNOTATION;
use support::{Cluster, NS};

/// An OTLP/HTTP receiver on loopback: it answers every POST with 200 and keeps the decoded
/// `ExportTraceServiceRequest`s (with the path they were sent to).
struct Receiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<(String, ExportTraceServiceRequest)>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                let store = store.clone();
                tokio::spawn(async move {
                    if let Some((path, body)) = serve_one(conn).await {
                        let request = ExportTraceServiceRequest::decode(body.as_slice())
                            .expect("the body is an OTLP ExportTraceServiceRequest");
                        store.lock().expect("lock").push((path, request));
                    }
                });
            }
        });
        Receiver { addr, received }
    }

    fn requests(&self) -> Vec<(String, ExportTraceServiceRequest)> {
        self.received.lock().expect("lock").clone()
    }

    /// Every span received, with its resource attributes and scope name.
    fn spans(&self) -> Vec<Received> {
        let mut out = Vec::new();
        for (_, request) in self.requests() {
            for rs in request.resource_spans {
                let resource = attributes(&rs.resource.map(|r| r.attributes).unwrap_or_default());
                for ss in rs.scope_spans {
                    let scope = ss.scope.map(|s| s.name).unwrap_or_default();
                    for span in ss.spans {
                        out.push(Received {
                            resource: resource.clone(),
                            scope: scope.clone(),
                            name: span.name,
                            trace_id: hex(&span.trace_id),
                            attributes: attributes(&span.attributes),
                            // STATUS_CODE_ERROR
                            error: span.status.is_some_and(|s| s.code == 2),
                        });
                    }
                }
            }
        }
        out
    }
}

#[derive(Debug)]
struct Received {
    resource: BTreeMap<String, String>,
    scope: String,
    name: String,
    trace_id: String,
    attributes: BTreeMap<String, String>,
    error: bool,
}

/// Reads one HTTP/1.1 request (headers, then `Content-Length` bytes), answers 200 with an empty
/// protobuf body, and returns the request's path and body. Only POSTs with a length are expected.
async fn serve_one(mut conn: tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let request_line = lines.next()?;
    let mut parts = request_line.split(' ');
    assert_eq!(parts.next(), Some("POST"), "{request_line}");
    let path = parts.next()?.to_string();
    let mut length = None;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                length = v.parse::<usize>().ok();
            }
            if k == "content-type" {
                assert_eq!(v, "application/x-protobuf", "OTLP/HTTP protobuf");
            }
        }
    }
    let length = length.expect("a Content-Length");
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    let _ = conn
        .write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .await;
    let _ = conn.shutdown().await;
    Some((path, body))
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), value_text(kv.value.as_ref())))
        .collect()
}

fn value_text(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The operator process; killed if the test fails before [`terminate`].
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The operator binary, run as `hypersync-operator run` against the cluster with only `env` set
/// (no variable of the test's own environment leaks in), JSON logs to `dir/operator.log`.
fn spawn_operator(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Running {
    let log = std::fs::File::create(dir.join("operator.log")).expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hypersync-operator"));
    cmd.args([
        "run",
        "--leader-election=false",
        "--http-addr",
        "127.0.0.1:0",
        "--log-format",
        "json",
        // Each reconcile ends with a debug line in its span.
        "--log-level",
        "info,hypersync_operator=debug",
    ])
    .args(args)
    .env_clear()
    .env("KUBECONFIG", dir.join("kubeconfig"))
    .stdout(log)
    .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Running(Some(cmd.spawn().expect("the operator binary starts")))
}

/// SIGTERM, as the kubelet stops a pod; waits (at most 30 s) for a clean exit.
async fn terminate(mut running: Running) {
    let mut child = running.0.take().expect("running");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exited = tokio::task::spawn_blocking(move || {
        for _ in 0..300 {
            if let Some(status) = child.try_wait().expect("wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        None
    })
    .await
    .expect("join");
    let status = exited.expect("the operator exits within 30 s of SIGTERM");
    assert!(status.success(), "the operator exited with {status}");
}

/// The Warning Events about an AgentNode, as (reason, annotations).
async fn warnings(cluster: &Cluster, name: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let api: Api<Event> = Api::namespaced(cluster.client.clone(), NS);
    api.list(&ListParams::default())
        .await
        .expect("events list")
        .items
        .into_iter()
        .filter(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.regarding
                    .as_ref()
                    .is_some_and(|r| r.name.as_deref() == Some(name))
        })
        .map(|e| {
            (
                e.reason.unwrap_or_default(),
                e.metadata.annotations.unwrap_or_default(),
            )
        })
        .collect()
}

/// kube-sim with the CRDs, an OTLP receiver, and a directory holding kube-sim's kubeconfig.
async fn start() -> (Cluster, Receiver, tempfile::TempDir) {
    let cluster = Cluster::start().await;
    let receiver = Receiver::start().await;
    let home = tempfile::tempdir().expect("temp dir");
    cluster
        .sim
        .write_kubeconfig(&home.path().join("kubeconfig"))
        .expect("kubeconfig written");
    (cluster, receiver, home)
}

const OBJECTS: &str = "\
apiVersion: hypersync.io/v1alpha1
kind: ModelEntry
metadata: {name: gpt-4o}
spec:
  type: LLM
  capabilities: [chat]
  source:
    remote: {provider: OpenAI, endpoint: \"https://api.openai.com/v1\", model: gpt-4o, apiKeySecretRef: {name: openai, key: apiKey}}
---
apiVersion: hypersync.io/v1alpha1
kind: AgentNode
metadata: {name: orphan}
spec:
  stackRef: {name: missing}
  task: {tags: [ops]}
";

/// The annotations of the first Warning Event about the AgentNode `node` with `reason`, once there.
async fn wait_for_warning(cluster: &Cluster, node: &str, reason: &str) -> BTreeMap<String, String> {
    cluster
        .wait_for(
            &format!("a {reason} Warning Event about {node}"),
            Duration::from_secs(60),
            || async {
                warnings(cluster, node)
                    .await
                    .into_iter()
                    .find(|(r, _)| r == reason)
                    .map(|(_, annotations)| annotations)
            },
        )
        .await
}

fn annotated_trace_id(annotations: &BTreeMap<String, String>) -> String {
    let id = annotations
        .get(TRACE_ID_ANNOTATION)
        .unwrap_or_else(|| panic!("the Warning has no {TRACE_ID_ANNOTATION}: {annotations:?}"))
        .clone();
    assert!(
        id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    id
}

/// The JSON log lines of the operator.
fn log_lines(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("operator.log"))
        .expect("log readable")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_spans_reach_an_otlp_receiver_and_warnings_carry_their_trace_id() {
    let (cluster, receiver, home) = start().await;
    let dir = home.path();

    let endpoint = format!("http://{}", receiver.addr);
    let operator = spawn_operator(
        dir,
        &["--otlp-endpoint", &endpoint],
        &[
            ("POD_NAME", "hypersync-operator-7d9-x2".to_string()),
            ("POD_NAMESPACE", "ops".to_string()),
            // No scheduled export while the test runs: what arrives was flushed at shutdown.
            ("OTEL_BSP_SCHEDULE_DELAY", "600000".to_string()),
        ],
    );
    // Every write to the node `broken` fails (500): its reconciles fail and are retried.
    cluster
        .sim_post("/sim/faults", "patch/agentnodes{name=broken}=1:500")
        .await;
    cluster.apply_yaml(OBJECTS).await;
    // Created with a POST (the fault is on patches, which is how the operator writes).
    let node: hypersync_operator::api::AgentNode = serde_json::from_value(serde_json::json!({
        "apiVersion": "hypersync.io/v1alpha1",
        "kind": "AgentNode",
        "metadata": {"name": "broken"},
        "spec": {"stackRef": {"name": "missing"}, "task": {"tags": ["ops"]}},
    }))
    .expect("node");
    Api::namespaced(cluster.client.clone(), NS)
        .create(&kube::api::PostParams::default(), &node)
        .await
        .expect("node created");

    // A Warning published by a reconcile carries its trace id.
    let trace_id = annotated_trace_id(&wait_for_warning(&cluster, "orphan", "StackNotFound").await);
    // The error policy's line about a failed reconcile carries that reconcile's trace id.
    let failed_trace_id = cluster
        .wait_for(
            "the log line of a failed reconcile",
            Duration::from_secs(60),
            || async {
                log_lines(dir)
                    .into_iter()
                    .find(|l| l["message"] == "reconcile hit a transient error; retrying")
                    .and_then(|l| l["span"]["trace_id"].as_str().map(String::from))
            },
        )
        .await;
    // The ModelEntry is reconciled too (its status says so) before the operator stops.
    let entries: Api<hypersync_operator::api::ModelEntry> =
        Api::namespaced(cluster.client.clone(), NS);
    cluster
        .wait_for(
            "the ModelEntry's status",
            Duration::from_secs(30),
            || async { entries.get("gpt-4o").await.ok()?.status?.phase.map(|_| ()) },
        )
        .await;
    assert!(
        receiver.requests().is_empty(),
        "nothing is exported before the schedule delay or the shutdown"
    );

    terminate(operator).await;

    // The shutdown flushed the queued spans to <endpoint>/v1/traces.
    let requests = receiver.requests();
    assert!(!requests.is_empty(), "no export reached the receiver");
    assert!(
        requests.iter().all(|(path, _)| path == "/v1/traces"),
        "{:?}",
        requests.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    let spans = receiver.spans();
    let reconciles: Vec<&Received> = spans.iter().filter(|s| s.name == "reconcile").collect();
    assert!(!reconciles.is_empty(), "no reconcile span among {spans:#?}");
    for span in &spans {
        assert_eq!(span.resource["service.name"], "hypersync-operator");
        assert_eq!(span.resource["service.version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(span.resource["k8s.pod.name"], "hypersync-operator-7d9-x2");
        assert_eq!(span.resource["k8s.namespace.name"], "ops");
    }
    let node_span = reconciles
        .iter()
        .find(|s| s.trace_id == trace_id)
        .unwrap_or_else(|| {
            panic!(
                "no exported reconcile span has the Event's trace id {trace_id}: {reconciles:#?}"
            )
        });
    assert_eq!(node_span.scope, "hypersync-operator");
    for (key, value) in [
        ("controller", "agentnode"),
        ("kind", "AgentNode"),
        ("namespace", NS),
        ("object", "orphan"),
    ] {
        assert_eq!(
            node_span.attributes.get(key).map(String::as_str),
            Some(value),
            "{key} of {node_span:#?}"
        );
    }
    let failed = reconciles
        .iter()
        .find(|s| s.trace_id == failed_trace_id)
        .unwrap_or_else(|| panic!("no exported reconcile has the trace id {failed_trace_id}"));
    assert_eq!(
        failed.attributes.get("object").map(String::as_str),
        Some("broken"),
        "{failed:#?}"
    );
    assert!(
        failed.error,
        "the failed reconcile's span has status ERROR: {failed:#?}"
    );
    assert!(
        reconciles.iter().any(|s| {
            s.attributes.get("kind").map(String::as_str) == Some("ModelEntry")
                && s.attributes.get("object").map(String::as_str) == Some("gpt-4o")
        }),
        "no reconcile span of the ModelEntry: {reconciles:#?}"
    );

    // The log lines of the reconcile carry its trace id.
    let lines = log_lines(dir);
    let reconciled = lines
        .iter()
        .any(|l| l["span"]["trace_id"] == trace_id.as_str() && l["message"] == "reconciled");
    assert!(
        reconciled,
        "no `reconciled` line carries trace_id {trace_id}: {:#?}",
        lines
            .iter()
            .filter(|l| l["span"]["object"] == "orphan")
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_exported_when_disabled() {
    let (cluster, receiver, home) = start().await;
    let dir = home.path();

    // An endpoint is configured, but the standard switch turns the SDK off.
    let operator = spawn_operator(
        dir,
        &[],
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{}", receiver.addr),
            ),
            ("OTEL_SDK_DISABLED", "true".to_string()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
        ],
    );
    cluster.apply_yaml(OBJECTS).await;

    // The operator works as before: the Warning is there, without a trace id annotation.
    let annotations = wait_for_warning(&cluster, "orphan", "StackNotFound").await;
    assert!(
        !annotations.contains_key(TRACE_ID_ANNOTATION),
        "{annotations:?}"
    );
    terminate(operator).await;
    assert!(
        receiver.requests().is_empty(),
        "spans were exported although OTEL_SDK_DISABLED=true"
    );
    // Log lines still group by reconcile.
    assert!(
        log_lines(dir).iter().any(|l| l["span"]["trace_id"]
            .as_str()
            .is_some_and(|t| t.len() == 32)),
        "no log line with a trace_id"
    );
}

//! Optional OpenTelemetry trace export over OTLP/HTTP (protobuf): its settings (`--otlp-endpoint` and
//! the standard `OTEL_*` variables), the exporter with its HTTP client, and the trace id of a span.
//!
//! Off unless an endpoint is configured (or `OTEL_TRACES_EXPORTER=otlp`). When on, every tracing span
//! the log filter lets through becomes an OpenTelemetry span, batched and sent to
//! `<endpoint>/v1/traces`; the reconcile span's trace id is the one its log lines carry (see
//! [`crate::telemetry::reconcile_span`]) and the one Warning Events are annotated with
//! ([`TRACE_ID_ANNOTATION`]).
//!
//! The HTTP client is hyper-util with hyper-rustls (the operator already builds both for kube) on a
//! small runtime of its own, driven by the SDK's batch thread: exports never run on, or wait for,
//! the controllers' runtime, and the final flush still works after that runtime has stopped.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::http as http_types;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::KeyValue;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::{ConfigError, invalid as bad};
use crate::telemetry::TraceId;

/// Annotation on the Warning Events the operator publishes while an exported (sampled) reconcile
/// span is current: that span's trace id, to look the reconcile up in the tracing backend.
pub const TRACE_ID_ANNOTATION: &str = "hypersync.io/trace-id";

/// `service.name` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` say otherwise.
pub const SERVICE_NAME: &str = "hypersync-operator";

/// Name of the instrumentation scope of the operator's spans.
const SCOPE: &str = "hypersync-operator";

/// Default export timeout (the OTLP specification's), unless `OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest response body read from the receiver (responses are tiny; this bounds a broken one).
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Resolved export settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtelConfig {
    /// Full URL spans are POSTed to, e.g. `http://otel-collector:4318/v1/traces`.
    pub endpoint: String,
    /// Resource attributes, keyed by attribute name (always has `service.name`).
    pub resource: BTreeMap<String, String>,
    pub sampler: SamplerConfig,
    /// Time limit of one export request.
    pub timeout: Duration,
}

/// `OTEL_TRACES_SAMPLER` (and `_ARG`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SamplerConfig {
    /// `parentbased_*`: follow a sampled parent's decision (the reconcile spans have no remote
    /// parent, so for them this is the root sampler).
    pub parent_based: bool,
    pub root: RootSampler,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootSampler {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(Ratio),
}

/// A sampling ratio in [0, 1] (never NaN, so equality is reflexive).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ratio(f64);

impl Eq for Ratio {}

impl Ratio {
    pub fn get(self) -> f64 {
        self.0
    }
}

/// The variables [`resolve`] reads (besides `POD_NAME` and `POD_NAMESPACE`).
pub const OTEL_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
pub const OTEL_TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
pub const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
pub const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
pub const OTEL_EXPORTER_OTLP_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
pub const OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION";
pub const OTEL_EXPORTER_OTLP_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
pub const OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
pub const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
pub const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
pub const OTEL_TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
pub const OTEL_TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";

/// Decides whether spans are exported, and how, from the `--otlp-endpoint` flag and the
/// environment (read through `env`). `Ok(None)`: export is off.
///
/// - `OTEL_SDK_DISABLED=true` turns export off whatever else is set.
/// - `OTEL_TRACES_EXPORTER`: `none` turns it off; `otlp` turns it on (at
///   `http://localhost:4318` unless an endpoint is given); unset, export is on iff an endpoint is.
/// - Endpoint: `--otlp-endpoint` (a base URL, `/v1/traces` appended), else
///   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is), else `OTEL_EXPORTER_OTLP_ENDPOINT` (base).
/// - `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL`: only `http/protobuf`.
/// - `OTEL_EXPORTER_OTLP_(TRACES_)COMPRESSION`: only `none`.
/// - `OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT` in milliseconds (default 10000).
/// - `OTEL_TRACES_SAMPLER` / `_ARG` (default `parentbased_always_on`).
/// - Resource: `service.name` = `hypersync-operator`, `service.version`, `k8s.pod.name` and
///   `k8s.namespace.name` from `POD_NAME` / `POD_NAMESPACE`; `OTEL_RESOURCE_ATTRIBUTES` adds or
///   overrides; `OTEL_SERVICE_NAME` overrides `service.name`.
pub fn resolve(
    flag_endpoint: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<OtelConfig>, ConfigError> {
    let var = |name: &str| {
        env(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    if var(OTEL_SDK_DISABLED).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let forced = match var(OTEL_TRACES_EXPORTER).as_deref() {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("none") => return Ok(None),
        Some(v) if v.eq_ignore_ascii_case("otlp") => true,
        Some(v) => {
            return Err(bad(
                OTEL_TRACES_EXPORTER,
                format!("{v:?} is not supported: use \"otlp\" or \"none\""),
            ));
        }
    };
    let flag_endpoint = flag_endpoint.map(str::trim).filter(|s| !s.is_empty());
    let (setting, endpoint) = if let Some(base) = flag_endpoint {
        ("otlp-endpoint", traces_url(base))
    } else if let Some(url) = var(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) {
        (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, url)
    } else if let Some(base) = var(OTEL_EXPORTER_OTLP_ENDPOINT) {
        (OTEL_EXPORTER_OTLP_ENDPOINT, traces_url(&base))
    } else if forced {
        (OTEL_TRACES_EXPORTER, traces_url("http://localhost:4318"))
    } else {
        return Ok(None);
    };
    check_url(&endpoint).map_err(|m| bad(setting, format!("{endpoint:?} {m}")))?;

    for name in [
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
        OTEL_EXPORTER_OTLP_PROTOCOL,
    ] {
        if let Some(p) = var(name) {
            if p != "http/protobuf" {
                return Err(bad(
                    name,
                    format!("{p:?} is not supported: the operator exports http/protobuf only"),
                ));
            }
            break;
        }
    }

    for name in [
        OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
        OTEL_EXPORTER_OTLP_COMPRESSION,
    ] {
        if let Some(c) = var(name)
            && !c.eq_ignore_ascii_case("none")
        {
            return Err(bad(
                name,
                format!("{c:?} is not supported: the operator sends uncompressed requests"),
            ));
        }
    }

    let timeout = match [
        OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
        OTEL_EXPORTER_OTLP_TIMEOUT,
    ]
    .into_iter()
    .find_map(|name| var(name).map(|v| (name, v)))
    {
        None => DEFAULT_TIMEOUT,
        Some((name, v)) => match v.parse::<u64>() {
            Ok(ms) if ms > 0 => Duration::from_millis(ms),
            _ => {
                return Err(bad(
                    name,
                    format!("{v:?} is not a positive number of milliseconds"),
                ));
            }
        },
    };

    Ok(Some(OtelConfig {
        endpoint,
        resource: resource(&var)?,
        sampler: sampler(&var)?,
        timeout,
    }))
}

/// `base` + `/v1/traces`, as the OTLP specification builds signal URLs from a base endpoint.
fn traces_url(base: &str) -> String {
    format!("{}/v1/traces", base.trim_end_matches('/'))
}

fn check_url(url: &str) -> Result<(), &'static str> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|_| "is not a valid http:// or https:// URL")?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("must start with http:// or https://"),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("has no host");
    }
    Ok(())
}

fn resource(var: &dyn Fn(&str) -> Option<String>) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut attrs = BTreeMap::from([
        ("service.name".to_owned(), SERVICE_NAME.to_owned()),
        (
            "service.version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
    ]);
    if let Some(pod) = var("POD_NAME") {
        attrs.insert("k8s.pod.name".to_owned(), pod);
    }
    if let Some(ns) = var("POD_NAMESPACE") {
        attrs.insert("k8s.namespace.name".to_owned(), ns);
    }
    if let Some(list) = var(OTEL_RESOURCE_ATTRIBUTES) {
        for pair in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| {
                    bad(
                        OTEL_RESOURCE_ATTRIBUTES,
                        format!("{pair:?} is not of the form key=value"),
                    )
                })?;
            let value = percent_decode(value).ok_or_else(|| {
                bad(
                    OTEL_RESOURCE_ATTRIBUTES,
                    format!("the value of {key:?} has an invalid percent-encoding"),
                )
            })?;
            attrs.insert(key.to_owned(), value);
        }
    }
    if let Some(name) = var(OTEL_SERVICE_NAME) {
        attrs.insert("service.name".to_owned(), name);
    }
    Ok(attrs)
}

/// Decodes `%XX` escapes (W3C Baggage octets, as `OTEL_RESOURCE_ATTRIBUTES` values use); `None`
/// on a malformed escape or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn sampler(var: &dyn Fn(&str) -> Option<String>) -> Result<SamplerConfig, ConfigError> {
    let name = var(OTEL_TRACES_SAMPLER).unwrap_or_else(|| "parentbased_always_on".to_owned());
    let ratio = || -> Result<Ratio, ConfigError> {
        match var(OTEL_TRACES_SAMPLER_ARG) {
            None => Ok(Ratio(1.0)),
            Some(arg) => match arg.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(Ratio(r)),
                _ => Err(bad(
                    OTEL_TRACES_SAMPLER_ARG,
                    format!("{arg:?} is not a ratio between 0 and 1"),
                )),
            },
        }
    };
    let (parent_based, root) = match name.to_ascii_lowercase().as_str() {
        "always_on" => (false, RootSampler::AlwaysOn),
        "always_off" => (false, RootSampler::AlwaysOff),
        "traceidratio" => (false, RootSampler::TraceIdRatio(ratio()?)),
        "parentbased_always_on" => (true, RootSampler::AlwaysOn),
        "parentbased_always_off" => (true, RootSampler::AlwaysOff),
        "parentbased_traceidratio" => (true, RootSampler::TraceIdRatio(ratio()?)),
        _ => {
            return Err(bad(
                OTEL_TRACES_SAMPLER,
                format!(
                    "{name:?} is not supported: use always_on, always_off, traceidratio or their \
                     parentbased_ forms"
                ),
            ));
        }
    };
    Ok(SamplerConfig { parent_based, root })
}

impl SamplerConfig {
    fn build(self) -> Sampler {
        let root = match self.root {
            RootSampler::AlwaysOn => Sampler::AlwaysOn,
            RootSampler::AlwaysOff => Sampler::AlwaysOff,
            RootSampler::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r.get()),
        };
        if self.parent_based {
            Sampler::ParentBased(Box::new(root))
        } else {
            root
        }
    }
}

/// Why export could not start.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    #[error("failed to build the OTLP exporter's HTTP client")]
    Client(#[source] std::io::Error),
    #[error("failed to build the OTLP exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
}

/// The running exporter. [`Exporter::shutdown`] flushes what is still queued.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl fmt::Debug for Exporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

impl Exporter {
    /// Starts the batch exporter (its own thread; `OTEL_BSP_*` tune it) and returns the tracer to
    /// hand to `tracing_opentelemetry`. Call it on a thread outside any async runtime.
    pub fn start(config: &OtelConfig) -> Result<(Exporter, SdkTracer), OtelError> {
        let client = OtlpHttp::new(config.timeout, config.endpoint.starts_with("https:"))
            .map_err(OtelError::Client)?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(config.endpoint.clone())
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(config.timeout)
            .build()
            .map_err(OtelError::Exporter)?;
        let resource = Resource::builder_empty()
            .with_detector(Box::new(
                opentelemetry_sdk::resource::TelemetryResourceDetector,
            ))
            .with_attributes(
                config
                    .resource
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(config.sampler.build())
            .with_resource(resource)
            .build();
        let tracer = provider.tracer(SCOPE);
        Ok((Exporter { provider }, tracer))
    }

    /// Exports what is queued and stops, waiting at most `timeout`. The operator calls it once the
    /// controllers have stopped, so the last reconciles' spans are not lost.
    pub fn shutdown(self, timeout: Duration) {
        match self.provider.shutdown_with_timeout(timeout) {
            Ok(()) => tracing::debug!("trace exporter flushed and stopped"),
            Err(err) => tracing::warn!(%err, "failed to flush the trace exporter"),
        }
    }
}

/// The trace id of `span` when it is recorded by OpenTelemetry and sampled, i.e. when a trace with
/// this id will reach the backend; `None` when export is off or the span is not sampled.
pub fn sampled_trace_id(span: &tracing::Span) -> Option<TraceId> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    (sc.is_valid() && sc.is_sampled()).then(|| TraceId::from_bytes(sc.trace_id().to_bytes()))
}

/// The trace id OpenTelemetry gave `span` (sampled or not); `None` when export is off.
pub fn trace_id(span: &tracing::Span) -> Option<TraceId> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid()
        .then(|| TraceId::from_bytes(sc.trace_id().to_bytes()))
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// The exporter's HTTP client: hyper-util over hyper-rustls (system roots for https), on a
/// current-thread runtime of its own that the SDK's batch thread drives while it exports.
struct OtlpHttp {
    client: Client<Https, Full<Bytes>>,
    runtime: tokio::runtime::Runtime,
    timeout: Duration,
}

impl fmt::Debug for OtlpHttp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpHttp")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl OtlpHttp {
    fn new(timeout: Duration, https: bool) -> std::io::Result<Self> {
        use hyper_rustls::ConfigBuilderExt;
        let tls = match rustls::ClientConfig::builder().with_native_roots() {
            Ok(roots) => roots.with_no_client_auth(),
            // No system roots (a scratch image): fine for a plain-HTTP endpoint such as a
            // Collector in the cluster; an https endpoint needs them.
            Err(_) if !https => rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
            Err(err) => return Err(err),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        // A new connection per export (at most one every few seconds): no idle connection goes
        // stale while nothing drives this runtime between exports.
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(OtlpHttp {
            client,
            runtime,
            timeout,
        })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpHttp {
    async fn send_bytes(
        &self,
        request: http_types::Request<Bytes>,
    ) -> Result<http_types::Response<Bytes>, opentelemetry_http::HttpError> {
        let request = request.map(Full::new);
        self.runtime.block_on(async {
            let response = tokio::time::timeout(self.timeout, async {
                let response = self.client.request(request).await?;
                let (parts, body) = response.into_parts();
                let body = Limited::new(body, MAX_RESPONSE_BYTES)
                    .collect()
                    .await?
                    .to_bytes();
                Ok::<_, opentelemetry_http::HttpError>(http_types::Response::from_parts(
                    parts, body,
                ))
            })
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))??;
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn resolved(flag: Option<&str>, env: &[(&str, &str)]) -> Option<OtelConfig> {
        resolve(flag, &env_of(env)).expect("valid settings")
    }

    fn error(flag: Option<&str>, env: &[(&str, &str)]) -> ConfigError {
        resolve(flag, &env_of(env)).expect_err("invalid settings")
    }

    #[test]
    fn off_by_default() {
        assert_eq!(resolved(None, &[]), None);
        // Settings that only tune an exporter do not turn it on.
        assert_eq!(
            resolved(
                None,
                &[
                    (OTEL_SERVICE_NAME, "x"),
                    (OTEL_TRACES_SAMPLER, "always_on"),
                    ("POD_NAME", "p")
                ]
            ),
            None
        );
        assert_eq!(resolved(Some("  "), &[]), None);
    }

    #[test]
    fn the_flag_is_a_base_url_and_wins() {
        let c = resolved(
            Some("http://collector.obs:4318/"),
            &[
                (
                    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
                    "http://other:4318/v1/traces",
                ),
                (OTEL_EXPORTER_OTLP_ENDPOINT, "http://third:4318"),
            ],
        )
        .expect("on");
        assert_eq!(c.endpoint, "http://collector.obs:4318/v1/traces");
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(
            c.sampler,
            SamplerConfig {
                parent_based: true,
                root: RootSampler::AlwaysOn
            }
        );
    }

    #[test]
    fn signal_endpoint_is_used_as_is_and_beats_the_base() {
        let c = resolved(
            None,
            &[
                (
                    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
                    "https://otlp.example.com/custom/path",
                ),
                (OTEL_EXPORTER_OTLP_ENDPOINT, "http://third:4318"),
            ],
        )
        .expect("on");
        assert_eq!(c.endpoint, "https://otlp.example.com/custom/path");
        let c = resolved(
            None,
            &[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://base:4318/otlp")],
        )
        .expect("on");
        assert_eq!(c.endpoint, "http://base:4318/otlp/v1/traces");
    }

    #[test]
    fn standard_switches() {
        let endpoint = (OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4318");
        assert_eq!(
            resolved(None, &[endpoint, (OTEL_SDK_DISABLED, "TRUE")]),
            None
        );
        assert_eq!(
            resolved(Some("http://c:4318"), &[(OTEL_SDK_DISABLED, "true")]),
            None
        );
        assert!(resolved(None, &[endpoint, (OTEL_SDK_DISABLED, "false")]).is_some());
        assert_eq!(
            resolved(None, &[endpoint, (OTEL_TRACES_EXPORTER, "none")]),
            None
        );
        let c = resolved(None, &[(OTEL_TRACES_EXPORTER, "otlp")]).expect("on");
        assert_eq!(c.endpoint, "http://localhost:4318/v1/traces");
        let e = error(None, &[(OTEL_TRACES_EXPORTER, "zipkin")]);
        assert_eq!(e.flag, OTEL_TRACES_EXPORTER);
        assert!(e.message.contains("zipkin"), "{}", e.message);
    }

    #[test]
    fn bad_endpoints_and_protocols_name_their_setting() {
        let e = error(Some("collector:4318"), &[]);
        assert_eq!(e.flag, "otlp-endpoint");
        assert!(e.message.contains("http://"), "{}", e.message);
        let e = error(
            None,
            &[(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "ftp://x/v1/traces")],
        );
        assert_eq!(e.flag, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
        let endpoint = (OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4318");
        let e = error(None, &[endpoint, (OTEL_EXPORTER_OTLP_PROTOCOL, "grpc")]);
        assert_eq!(e.flag, OTEL_EXPORTER_OTLP_PROTOCOL);
        assert!(e.message.contains("http/protobuf"), "{}", e.message);
        // The signal's own variable is the one that counts.
        assert!(
            resolve(
                None,
                &env_of(&[
                    endpoint,
                    (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, "http/protobuf"),
                    (OTEL_EXPORTER_OTLP_PROTOCOL, "grpc"),
                ])
            )
            .is_ok()
        );
        let e = error(None, &[endpoint, (OTEL_EXPORTER_OTLP_COMPRESSION, "gzip")]);
        assert_eq!(e.flag, OTEL_EXPORTER_OTLP_COMPRESSION);
        assert!(resolved(None, &[endpoint, (OTEL_EXPORTER_OTLP_COMPRESSION, "none")]).is_some());
        let e = error(None, &[endpoint, (OTEL_EXPORTER_OTLP_TIMEOUT, "5s")]);
        assert_eq!(e.flag, OTEL_EXPORTER_OTLP_TIMEOUT);
        let c = resolved(
            None,
            &[
                endpoint,
                (OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, "2500"),
                (OTEL_EXPORTER_OTLP_TIMEOUT, "100"),
            ],
        )
        .expect("on");
        assert_eq!(c.timeout, Duration::from_millis(2500));
    }

    #[test]
    fn samplers() {
        let endpoint = (OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4318");
        let sampler = |name: &'static str, arg: Option<&'static str>| {
            let mut env = vec![endpoint, (OTEL_TRACES_SAMPLER, name)];
            if let Some(a) = arg {
                env.push((OTEL_TRACES_SAMPLER_ARG, a));
            }
            resolve(None, &env_of(&env)).map(|c| c.expect("on").sampler)
        };
        assert_eq!(
            sampler("traceidratio", Some("0.25")),
            Ok(SamplerConfig {
                parent_based: false,
                root: RootSampler::TraceIdRatio(Ratio(0.25))
            })
        );
        assert_eq!(
            sampler("parentbased_traceidratio", None),
            Ok(SamplerConfig {
                parent_based: true,
                root: RootSampler::TraceIdRatio(Ratio(1.0))
            })
        );
        assert_eq!(
            sampler("always_off", None),
            Ok(SamplerConfig {
                parent_based: false,
                root: RootSampler::AlwaysOff
            })
        );
        let e = sampler("traceidratio", Some("1.5")).expect_err("out of range");
        assert_eq!(e.flag, OTEL_TRACES_SAMPLER_ARG);
        let e = sampler("jaeger_remote", None).expect_err("unsupported");
        assert_eq!(e.flag, OTEL_TRACES_SAMPLER);
    }

    #[test]
    fn resource_attributes() {
        let endpoint = (OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4318");
        let c = resolved(
            None,
            &[endpoint, ("POD_NAME", "op-1"), ("POD_NAMESPACE", "ops")],
        )
        .expect("on");
        assert_eq!(
            c.resource,
            BTreeMap::from([
                ("k8s.namespace.name".to_owned(), "ops".to_owned()),
                ("k8s.pod.name".to_owned(), "op-1".to_owned()),
                ("service.name".to_owned(), "hypersync-operator".to_owned()),
                (
                    "service.version".to_owned(),
                    env!("CARGO_PKG_VERSION").to_owned()
                ),
            ])
        );
        let c = resolved(
            None,
            &[
                endpoint,
                (
                    OTEL_RESOURCE_ATTRIBUTES,
                    "deployment.environment=prod, team=ml%20platform,service.name=from-attrs",
                ),
            ],
        )
        .expect("on");
        assert_eq!(c.resource["deployment.environment"], "prod");
        assert_eq!(c.resource["team"], "ml platform");
        assert_eq!(c.resource["service.name"], "from-attrs");
        let c = resolved(
            None,
            &[
                endpoint,
                (OTEL_RESOURCE_ATTRIBUTES, "service.name=from-attrs"),
                (OTEL_SERVICE_NAME, "from-name"),
            ],
        )
        .expect("on");
        assert_eq!(c.resource["service.name"], "from-name");
        let e = error(None, &[endpoint, (OTEL_RESOURCE_ATTRIBUTES, "a=1,broken")]);
        assert_eq!(e.flag, OTEL_RESOURCE_ATTRIBUTES);
        assert!(e.message.contains("broken"), "{}", e.message);
        let e = error(None, &[endpoint, (OTEL_RESOURCE_ATTRIBUTES, "a=%zz")]);
        assert_eq!(e.flag, OTEL_RESOURCE_ATTRIBUTES);
    }

    #[test]
    fn without_an_exporter_spans_have_no_otel_trace_id() {
        let span = tracing::error_span!("x");
        assert_eq!(trace_id(&span), None);
        assert_eq!(sampled_trace_id(&span), None);
    }
}

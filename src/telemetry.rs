//! Logging setup (text or JSON, env-filter syntax), optional OpenTelemetry export ([`crate::otel`]),
//! and the per-reconcile span with its trace id.
//!
//! Every reconcile runs inside [`reconcile_span`], whose `trace_id` field is 32 lowercase hex
//! digits (the W3C Trace Context / OpenTelemetry format): the OpenTelemetry trace id when spans are
//! exported, so a log line leads to its trace, else 16 random bytes. Each log line carries the
//! current span's fields, so all lines of one reconcile can be grouped by `trace_id`.

use std::fmt;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::otel::{Exporter, OtelConfig, OtelError};

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with the current span's fields (including `trace_id`).
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("failed to parse log filter {filter:?}")]
    InvalidFilter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("failed to install the global log subscriber")]
    AlreadyInitialized {
        #[source]
        source: tracing_subscriber::util::TryInitError,
    },
    #[error("failed to start the OpenTelemetry trace export")]
    Export(#[source] OtelError),
}

/// Parses an env-filter directive string such as `info` or `hypersync_operator=debug,kube=warn`.
pub fn parse_filter(level: &str) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::try_new(level).map_err(|source| TelemetryError::InvalidFilter {
        filter: level.to_owned(),
        source,
    })
}

/// Installs the global subscriber writing to stdout and, with `otel`, starts exporting spans over
/// OTLP. Call once, early in `run` and outside any async runtime; a second call returns
/// [`TelemetryError::AlreadyInitialized`]. Keep the returned exporter and
/// [`Exporter::shutdown`] it when the operator has stopped, so the last spans are flushed.
pub fn init(
    format: LogFormat,
    level: &str,
    otel: Option<&OtelConfig>,
) -> Result<Option<Exporter>, TelemetryError> {
    let (exporter, tracer) = match otel {
        Some(config) => {
            let (exporter, tracer) = Exporter::start(config).map_err(TelemetryError::Export)?;
            (Some(exporter), Some(tracer))
        }
        None => (None, None),
    };
    subscriber_with(format, level, std::io::stdout, tracer)?
        .try_init()
        .map_err(|source| TelemetryError::AlreadyInitialized { source })?;
    if let Some(config) = otel {
        tracing::info!(endpoint = %config.endpoint, "exporting traces over OTLP/HTTP");
    }
    Ok(exporter)
}

/// Builds the subscriber `init` installs, writing to `writer` (tests capture output with this).
pub fn subscriber<W>(
    format: LogFormat,
    level: &str,
    writer: W,
) -> Result<Box<dyn Subscriber + Send + Sync>, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    subscriber_with(format, level, writer, None)
}

/// [`subscriber`], also turning spans into OpenTelemetry spans of `tracer` when given. The log
/// filter applies to both: what is not logged is not exported either.
pub fn subscriber_with<W>(
    format: LogFormat,
    level: &str,
    writer: W,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
) -> Result<Box<dyn Subscriber + Send + Sync>, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let registry = tracing_subscriber::registry().with(parse_filter(level)?);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_target(true);
    Ok(match format {
        LogFormat::Text => with_otel(registry.with(fmt.with_ansi(false)), tracer),
        LogFormat::Json => with_otel(
            registry.with(
                fmt.json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            ),
            tracer,
        ),
    })
}

fn with_otel<S>(
    subscriber: S,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
) -> Box<dyn Subscriber + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    Box::new(subscriber.with(tracer.map(|t| tracing_opentelemetry::layer().with_tracer(t))))
}

/// A 16-byte random trace id, displayed as 32 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

impl TraceId {
    /// A fresh random id (never all zeros, which W3C reserves as invalid).
    pub fn random() -> Self {
        loop {
            let bytes: [u8; 16] = rand::random();
            if bytes != [0; 16] {
                return TraceId(bytes);
            }
        }
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        TraceId(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The span one reconcile runs in: fields `controller`, `kind`, `namespace`, `object` (the
/// object's name; `name` would clash with the span's own name in JSON logs) and `trace_id` (the OpenTelemetry trace id when spans are exported, else a fresh random one).
/// Returns the id too. A failed reconcile records `otel.status_code = "ERROR"` on it.
///
/// ```ignore
/// let (span, trace_id) =
///     telemetry::reconcile_span("agentnode", "AgentNode", node.namespace().as_deref(), &name);
/// async { reconcile(node, ctx).await }.instrument(span).await
/// ```
pub fn reconcile_span(
    controller: &'static str,
    kind: &'static str,
    namespace: Option<&str>,
    name: &str,
) -> (tracing::Span, TraceId) {
    // ERROR level so the span (and its trace id) stays enabled under any filter that still lets
    // warnings and errors through; the level of a span does not change how its events are logged.
    let span = tracing::error_span!(
        "reconcile",
        controller,
        kind,
        namespace = tracing::field::Empty,
        object = name,
        trace_id = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if let Some(ns) = namespace {
        span.record("namespace", ns);
    }
    // Asking for the OpenTelemetry context starts the exported span (with the fields so far).
    let trace_id = crate::otel::trace_id(&span).unwrap_or_else(TraceId::random);
    span.record("trace_id", tracing::field::display(trace_id));
    (span, trace_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// An in-memory writer shared between the subscriber and the test.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Capture {
        type Writer = Capture;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("capture lock").clone()).expect("utf-8 logs")
        }
    }

    fn is_trace_id(s: &str) -> bool {
        s.len() == 32
            && s.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    }

    #[test]
    fn json_lines_carry_the_reconcile_trace_id() {
        let capture = Capture::default();
        let sub = subscriber(LogFormat::Json, "info", capture.clone()).expect("subscriber");
        let id = tracing::subscriber::with_default(sub, || {
            let (span, id) = reconcile_span("agentnode", "AgentNode", Some("team-a"), "n1");
            let _guard = span.enter();
            tracing::info!(phase = "Placed", "placed node");
            id
        });
        let out = capture.text();
        let line: serde_json::Value =
            serde_json::from_str(out.lines().next().expect("one log line")).expect("json");
        assert_eq!(line["message"], "placed node");
        assert_eq!(line["phase"], "Placed");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["span"]["controller"], "agentnode");
        assert_eq!(line["span"]["kind"], "AgentNode");
        assert_eq!(line["span"]["namespace"], "team-a");
        assert_eq!(line["span"]["object"], "n1");
        assert_eq!(line["span"]["name"], "reconcile");
        let logged = line["span"]["trace_id"].as_str().expect("trace_id string");
        assert!(is_trace_id(logged), "{logged}");
        assert_eq!(logged, id.to_string());
    }

    #[test]
    fn text_lines_carry_the_trace_id_and_filter_applies() {
        let capture = Capture::default();
        let sub = subscriber(LogFormat::Text, "warn", capture.clone()).expect("subscriber");
        let id = tracing::subscriber::with_default(sub, || {
            let (span, id) = reconcile_span("modelentry", "ModelEntry", None, "m");
            let _guard = span.enter();
            tracing::info!("filtered out");
            tracing::warn!("kept");
            id
        });
        let out = capture.text();
        assert!(!out.contains("filtered out"), "{out}");
        assert!(out.contains("kept"));
        assert!(out.contains(&format!("trace_id={id}")), "{out}");
    }

    /// With OpenTelemetry on, the logged trace id is the exported span's, and only a sampled span
    /// offers its id for Event annotations.
    #[test]
    fn with_otel_the_logged_trace_id_is_the_spans() {
        use opentelemetry::trace::TracerProvider as _;
        for (sampler, sampled) in [
            (opentelemetry_sdk::trace::Sampler::AlwaysOn, true),
            (opentelemetry_sdk::trace::Sampler::AlwaysOff, false),
        ] {
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_sampler(sampler)
                .build();
            let capture = Capture::default();
            let sub = subscriber_with(
                LogFormat::Json,
                "info",
                capture.clone(),
                Some(provider.tracer("test")),
            )
            .expect("subscriber");
            let (id, otel_id, sampled_id) = tracing::subscriber::with_default(sub, || {
                let (span, id) = reconcile_span("agentnode", "AgentNode", Some("ns"), "n");
                let _guard = span.enter();
                tracing::info!("inside");
                (
                    id,
                    crate::otel::trace_id(&span),
                    crate::otel::sampled_trace_id(&tracing::Span::current()),
                )
            });
            assert_eq!(otel_id, Some(id));
            assert_eq!(sampled_id, sampled.then_some(id));
            let out = capture.text();
            let line: serde_json::Value =
                serde_json::from_str(out.lines().next().expect("a line")).expect("json");
            assert_eq!(line["span"]["trace_id"], id.to_string());
        }
    }

    #[test]
    fn trace_ids_are_fresh_per_reconcile() {
        let ids: std::collections::HashSet<String> =
            (0..1000).map(|_| TraceId::random().to_string()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| is_trace_id(id)));
    }

    #[test]
    fn invalid_filter_is_an_error_naming_it() {
        let err = parse_filter("info,[[[").expect_err("must fail");
        assert!(err.to_string().contains("[[["), "{err}");
        assert!(parse_filter("hypersync_operator=debug,kube=warn").is_ok());
    }
}

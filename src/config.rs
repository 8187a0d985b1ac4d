//! Flags of `hypersync-operator run` (each also settable as a `HYPERSYNC_*` environment variable),
//! their validation, and the resolved [`OperatorConfig`].

use std::net::SocketAddr;
use std::time::Duration;

use crate::leader::LeaseTimings;
use crate::telemetry::{self, LogFormat};

/// Flags of the `run` subcommand. Flatten into the CLI with `#[command(flatten)]`, then call
/// [`Args::resolve`].
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct Args {
    /// Namespaces to watch, comma-separated; empty watches all namespaces.
    #[arg(
        long,
        env = "HYPERSYNC_NAMESPACES",
        value_delimiter = ',',
        value_name = "NS,..."
    )]
    pub namespaces: Vec<String>,

    /// Log line format.
    #[arg(long, env = "HYPERSYNC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter in env-filter syntax, e.g. `info` or `hypersync_operator=debug,kube=warn`.
    #[arg(
        long,
        env = "HYPERSYNC_LOG_LEVEL",
        default_value = "info",
        value_name = "FILTER"
    )]
    pub log_level: String,

    /// Address of the HTTP server for /healthz, /readyz and /metrics.
    #[arg(
        long,
        env = "HYPERSYNC_HTTP_ADDR",
        default_value = "0.0.0.0:8080",
        value_name = "ADDR"
    )]
    pub http_addr: SocketAddr,

    /// Elect a leader through a coordination.k8s.io Lease so only one replica reconciles.
    #[arg(
        long,
        env = "HYPERSYNC_LEADER_ELECTION",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub leader_election: bool,

    /// Namespace of the leader Lease [default: $POD_NAMESPACE, else "default"].
    #[arg(long, env = "HYPERSYNC_LEADER_ELECTION_NAMESPACE", value_name = "NS")]
    pub leader_election_namespace: Option<String>,

    /// Name of the leader Lease.
    #[arg(
        long,
        env = "HYPERSYNC_LEADER_ELECTION_LEASE_NAME",
        default_value = "hypersync-operator-leader",
        value_name = "NAME"
    )]
    pub leader_election_lease_name: String,

    /// How long a Lease stays valid after its last renewal; others take over after this.
    #[arg(
        long,
        env = "HYPERSYNC_LEASE_DURATION_SECONDS",
        default_value_t = 15,
        value_name = "SECONDS"
    )]
    pub lease_duration_seconds: u64,

    /// How long the leader keeps trying to renew before it gives up leadership.
    #[arg(
        long,
        env = "HYPERSYNC_RENEW_DEADLINE_SECONDS",
        default_value_t = 10,
        value_name = "SECONDS"
    )]
    pub renew_deadline_seconds: u64,

    /// Interval between attempts to acquire or renew the Lease.
    #[arg(
        long,
        env = "HYPERSYNC_RETRY_PERIOD_SECONDS",
        default_value_t = 2,
        value_name = "SECONDS"
    )]
    pub retry_period_seconds: u64,

    /// This replica's identity in the Lease [default: $POD_NAME, else hostname plus a random suffix].
    #[arg(long, env = "HYPERSYNC_IDENTITY", value_name = "ID")]
    pub identity: Option<String>,

    /// Upper bound of the per-object exponential requeue backoff after errors.
    #[arg(
        long,
        env = "HYPERSYNC_REQUEUE_MAX_SECONDS",
        default_value_t = 300,
        value_name = "SECONDS"
    )]
    pub requeue_max_seconds: u64,

    /// `/healthz` fails once the controllers' async runtime has not run its heartbeat task for this
    /// long (a wedged runtime, not mere load: under load the heartbeat is late by seconds at most).
    #[arg(
        long,
        env = "HYPERSYNC_LIVENESS_STALL_SECONDS",
        default_value_t = 60,
        value_name = "SECONDS"
    )]
    pub liveness_stall_seconds: u64,

    /// On shutdown, how long in-flight reconciles may run before they are cancelled; the leader
    /// Lease is released only after the controllers have stopped.
    #[arg(
        long,
        env = "HYPERSYNC_DRAIN_TIMEOUT_SECONDS",
        default_value_t = 20,
        value_name = "SECONDS"
    )]
    pub drain_timeout_seconds: u64,

    /// Export traces over OTLP/HTTP (protobuf) to this base URL (`/v1/traces` is appended), e.g.
    /// `http://otel-collector.observability:4318`. Off by default; the standard `OTEL_*`
    /// variables also configure it (see the README's Telemetry section).
    #[arg(long, env = "HYPERSYNC_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
}

/// A flag (or a standard `OTEL_*` variable) has a value that cannot work. The message names it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {}{flag}: {message}", if flag.starts_with("OTEL_") { "" } else { "--" })]
pub struct ConfigError {
    pub flag: &'static str,
    pub message: String,
}

pub(crate) fn invalid(flag: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        flag,
        message: message.into(),
    }
}

/// Validated settings of the operator process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorConfig {
    /// Namespaces to watch, sorted and de-duplicated; empty means all namespaces.
    pub namespaces: Vec<String>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub http_addr: SocketAddr,
    /// `None` when `--leader-election=false`: this replica reconciles unconditionally.
    pub leader_election: Option<LeaderElectionConfig>,
    /// Cap of the per-object requeue backoff.
    pub requeue_max: Duration,
    /// How long the controllers' runtime may go without running its heartbeat before `/healthz`
    /// fails.
    pub liveness_stall: Duration,
    /// How long in-flight reconciles may run after shutdown is requested before they are cancelled.
    pub drain_timeout: Duration,
    /// Where and how to export traces; `None`: export is off.
    pub otel: Option<crate::otel::OtelConfig>,
}

/// Where and as whom to take part in leader election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderElectionConfig {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub timings: LeaseTimings,
}

impl Args {
    /// Validates the flags and fills defaults from the process environment (`POD_NAMESPACE`,
    /// `POD_NAME`, `HOSTNAME`, `/etc/hostname`).
    pub fn resolve(self) -> Result<OperatorConfig, ConfigError> {
        self.resolve_with(&|name| std::env::var(name).ok())
    }

    /// Like [`Args::resolve`], reading environment variables through `env` (for tests).
    pub fn resolve_with(
        self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<OperatorConfig, ConfigError> {
        let Args {
            namespaces,
            log_format,
            log_level,
            http_addr,
            leader_election,
            leader_election_namespace,
            leader_election_lease_name,
            lease_duration_seconds,
            renew_deadline_seconds,
            retry_period_seconds,
            identity,
            requeue_max_seconds,
            liveness_stall_seconds,
            drain_timeout_seconds,
            otlp_endpoint,
        } = self;

        let mut namespaces: Vec<String> = namespaces
            .iter()
            .map(|ns| ns.trim())
            .filter(|ns| !ns.is_empty())
            .map(str::to_owned)
            .collect();
        for ns in &namespaces {
            check_dns_label(ns).map_err(|m| invalid("namespaces", format!("{ns:?} {m}")))?;
        }
        namespaces.sort();
        namespaces.dedup();

        telemetry::parse_filter(&log_level).map_err(|e| {
            invalid(
                "log-level",
                format!("{log_level:?} is not a valid filter: {}", source_text(&e)),
            )
        })?;

        if requeue_max_seconds == 0 {
            return Err(invalid("requeue-max-seconds", "must be at least 1"));
        }
        if liveness_stall_seconds == 0 {
            return Err(invalid("liveness-stall-seconds", "must be at least 1"));
        }
        if drain_timeout_seconds == 0 {
            return Err(invalid("drain-timeout-seconds", "must be at least 1"));
        }

        let otel = crate::otel::resolve(otlp_endpoint.as_deref(), env)?;

        let leader_election = if leader_election {
            Some(resolve_leader_election(
                env,
                leader_election_namespace,
                leader_election_lease_name,
                [
                    lease_duration_seconds,
                    renew_deadline_seconds,
                    retry_period_seconds,
                ],
                identity,
            )?)
        } else {
            None
        };

        Ok(OperatorConfig {
            namespaces,
            log_format,
            log_level,
            http_addr,
            leader_election,
            requeue_max: Duration::from_secs(requeue_max_seconds),
            liveness_stall: Duration::from_secs(liveness_stall_seconds),
            drain_timeout: Duration::from_secs(drain_timeout_seconds),
            otel,
        })
    }
}

fn resolve_leader_election(
    env: &dyn Fn(&str) -> Option<String>,
    namespace: Option<String>,
    lease_name: String,
    [lease, renew, retry]: [u64; 3],
    identity: Option<String>,
) -> Result<LeaderElectionConfig, ConfigError> {
    let namespace = namespace
        .or_else(|| env("POD_NAMESPACE").filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| "default".to_owned());
    check_dns_label(&namespace)
        .map_err(|m| invalid("leader-election-namespace", format!("{namespace:?} {m}")))?;
    check_dns_subdomain(&lease_name)
        .map_err(|m| invalid("leader-election-lease-name", format!("{lease_name:?} {m}")))?;

    if retry == 0 {
        return Err(invalid("retry-period-seconds", "must be at least 1"));
    }
    if renew <= retry {
        return Err(invalid(
            "renew-deadline-seconds",
            format!("must be greater than --retry-period-seconds ({renew} <= {retry})"),
        ));
    }
    if lease <= renew {
        return Err(invalid(
            "lease-duration-seconds",
            format!("must be greater than --renew-deadline-seconds ({lease} <= {renew})"),
        ));
    }
    if lease > i32::MAX as u64 {
        return Err(invalid(
            "lease-duration-seconds",
            "must fit in a 32-bit integer",
        ));
    }

    let identity = match identity {
        Some(id) => id,
        None => default_identity(env),
    };
    let identity = identity.trim().to_owned();
    if identity.is_empty() {
        return Err(invalid("identity", "must not be empty"));
    }
    if identity.len() > 253 {
        return Err(invalid("identity", "must be at most 253 characters"));
    }

    Ok(LeaderElectionConfig {
        namespace,
        lease_name,
        identity,
        timings: LeaseTimings {
            lease_duration: Duration::from_secs(lease),
            renew_deadline: Duration::from_secs(renew),
            retry_period: Duration::from_secs(retry),
        },
    })
}

/// `$POD_NAME` (unique per pod), else the hostname plus 8 random hex digits so two processes on
/// one host never share an identity.
fn default_identity(env: &dyn Fn(&str) -> Option<String>) -> String {
    if let Some(pod) = env("POD_NAME").filter(|s| !s.trim().is_empty()) {
        return pod;
    }
    let host = env("HOSTNAME")
        .filter(|s| !s.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "hypersync-operator".to_owned());
    format!("{}-{:08x}", host.trim(), rand::random::<u32>())
}

fn source_text(err: &dyn std::error::Error) -> String {
    err.source()
        .map(ToString::to_string)
        .unwrap_or_else(|| err.to_string())
}

/// RFC 1123 label: what namespaces must be.
fn check_dns_label(s: &str) -> Result<(), &'static str> {
    if s.is_empty() || s.len() > 63 {
        return Err("must be 1 to 63 characters");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("must contain only lowercase letters, digits and '-'");
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("must start and end with a letter or digit");
    }
    Ok(())
}

/// RFC 1123 subdomain: what object names such as the Lease's must be.
fn check_dns_subdomain(s: &str) -> Result<(), &'static str> {
    if s.is_empty() || s.len() > 253 {
        return Err("must be 1 to 253 characters");
    }
    for part in s.split('.') {
        if part.is_empty() {
            return Err("must not contain empty '.'-separated parts");
        }
        if !part
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err("must contain only lowercase letters, digits, '-' and '.'");
        }
        if part.starts_with('-') || part.ends_with('-') {
            return Err("must start and end each part with a letter or digit");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(argv: &[&str]) -> Args {
        let mut full = vec!["test"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full) {
            Ok(cli) => cli.args,
            Err(e) => panic!("parse {argv:?}: {e}"),
        }
    }

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn resolve(
        argv: &[&str],
        env: &'static [(&'static str, &'static str)],
    ) -> Result<OperatorConfig, ConfigError> {
        parse(argv).resolve_with(&env_of(env))
    }

    #[test]
    fn defaults() {
        let cfg =
            resolve(&[], &[("POD_NAMESPACE", "ops"), ("POD_NAME", "op-7d9-x2")]).expect("valid");
        assert!(cfg.namespaces.is_empty());
        assert_eq!(cfg.log_format, LogFormat::Text);
        assert_eq!(cfg.log_level, "info");
        assert_eq!(cfg.http_addr, "0.0.0.0:8080".parse().expect("addr"));
        assert_eq!(cfg.requeue_max, Duration::from_secs(300));
        assert_eq!(cfg.liveness_stall, Duration::from_secs(60));
        assert_eq!(cfg.drain_timeout, Duration::from_secs(20));
        let le = cfg.leader_election.expect("leader election on by default");
        assert_eq!(le.namespace, "ops");
        assert_eq!(le.lease_name, "hypersync-operator-leader");
        assert_eq!(le.identity, "op-7d9-x2");
        assert_eq!(le.timings, LeaseTimings::default());
        assert_eq!(le.timings.lease_duration, Duration::from_secs(15));
        assert_eq!(le.timings.renew_deadline, Duration::from_secs(10));
        assert_eq!(le.timings.retry_period, Duration::from_secs(2));
    }

    #[test]
    fn trace_export_is_off_by_default_and_configured_by_flag_or_otel_variables() {
        assert_eq!(resolve(&[], &[]).expect("valid").otel, None);
        let cfg = resolve(
            &["--otlp-endpoint", "http://collector:4318"],
            &[("POD_NAME", "op-1"), ("OTEL_SERVICE_NAME", "ops-operator")],
        )
        .expect("valid");
        let otel = cfg.otel.expect("export on");
        assert_eq!(otel.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(otel.resource["service.name"], "ops-operator");
        assert_eq!(otel.resource["k8s.pod.name"], "op-1");
        let err = resolve(
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_TRACES_SAMPLER", "sometimes"),
            ],
        )
        .expect_err("bad sampler");
        assert_eq!(err.flag, "OTEL_TRACES_SAMPLER");
        assert!(
            err.to_string()
                .starts_with("invalid OTEL_TRACES_SAMPLER: \"sometimes\""),
            "{err}"
        );
        let err = resolve(&["--otlp-endpoint", "collector:4318"], &[]).expect_err("bad URL");
        assert!(
            err.to_string().starts_with("invalid --otlp-endpoint: "),
            "{err}"
        );
    }

    #[test]
    fn without_pod_env_falls_back_to_default_namespace_and_hostname_suffix() {
        let cfg = resolve(&[], &[("HOSTNAME", "laptop")]).expect("valid");
        let le = cfg.leader_election.expect("on");
        assert_eq!(le.namespace, "default");
        let suffix = le
            .identity
            .strip_prefix("laptop-")
            .expect("hostname prefix");
        assert_eq!(suffix.len(), 8);
        assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()));
        let again = resolve(&[], &[("HOSTNAME", "laptop")]).expect("valid");
        assert_ne!(again.leader_election.expect("on").identity, le.identity);
    }

    #[test]
    fn every_flag_parses() {
        let cfg = resolve(
            &[
                "--namespaces",
                "b, a,,b",
                "--log-format",
                "json",
                "--log-level",
                "hypersync_operator=debug,kube=warn",
                "--http-addr",
                "127.0.0.1:9000",
                "--leader-election-namespace",
                "le",
                "--leader-election-lease-name",
                "my.lease",
                "--lease-duration-seconds",
                "30",
                "--renew-deadline-seconds",
                "20",
                "--retry-period-seconds",
                "5",
                "--identity",
                "me",
                "--requeue-max-seconds",
                "60",
                "--liveness-stall-seconds",
                "90",
                "--drain-timeout-seconds",
                "25",
            ],
            &[],
        )
        .expect("valid");
        assert_eq!(cfg.namespaces, vec!["a", "b"]);
        assert_eq!(cfg.log_format, LogFormat::Json);
        assert_eq!(cfg.http_addr.port(), 9000);
        assert_eq!(cfg.requeue_max, Duration::from_secs(60));
        assert_eq!(cfg.liveness_stall, Duration::from_secs(90));
        assert_eq!(cfg.drain_timeout, Duration::from_secs(25));
        let le = cfg.leader_election.expect("on");
        assert_eq!(
            (
                le.namespace.as_str(),
                le.lease_name.as_str(),
                le.identity.as_str()
            ),
            ("le", "my.lease", "me")
        );
        assert_eq!(le.timings.lease_duration, Duration::from_secs(30));
    }

    #[test]
    fn leader_election_switch_forms() {
        assert!(parse(&["--leader-election"]).leader_election);
        assert!(!parse(&["--leader-election=false"]).leader_election);
        assert!(!parse(&["--leader-election", "false"]).leader_election);
        let cfg = resolve(
            &["--leader-election=false", "--lease-duration-seconds", "1"],
            &[],
        )
        .expect("timings ignored when off");
        assert_eq!(cfg.leader_election, None);
    }

    #[test]
    fn every_flag_has_a_hypersync_env_var() {
        let cmd = Cli::command();
        let mut count = 0;
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "help" {
                continue;
            }
            let expected = format!("HYPERSYNC_{}", long.to_uppercase().replace('-', "_"));
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(expected.as_str()),
                "--{long}"
            );
            count += 1;
        }
        assert_eq!(count, 15);
    }

    fn error_of(argv: &[&str]) -> ConfigError {
        match resolve(argv, &[("POD_NAME", "p")]) {
            Ok(cfg) => panic!("{argv:?} should fail, got {cfg:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn invalid_values_name_their_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["--namespaces", "Team_A"], "namespaces"),
            (&["--log-level", "info,[[["], "log-level"),
            (&["--requeue-max-seconds", "0"], "requeue-max-seconds"),
            (&["--liveness-stall-seconds", "0"], "liveness-stall-seconds"),
            (&["--drain-timeout-seconds", "0"], "drain-timeout-seconds"),
            (&["--retry-period-seconds", "0"], "retry-period-seconds"),
            (&["--renew-deadline-seconds", "2"], "renew-deadline-seconds"),
            (
                &["--lease-duration-seconds", "10"],
                "lease-duration-seconds",
            ),
            (
                &["--leader-election-namespace=-x"],
                "leader-election-namespace",
            ),
            (
                &["--leader-election-lease-name", "a..b"],
                "leader-election-lease-name",
            ),
            (&["--identity", "  "], "identity"),
        ];
        for (argv, flag) in cases {
            let err = error_of(argv);
            assert_eq!(err.flag, *flag, "{argv:?}: {err}");
            assert!(
                err.to_string().starts_with(&format!("invalid --{flag}: ")),
                "{err}"
            );
        }
        let err = error_of(&["--lease-duration-seconds", "10"]);
        assert!(
            err.to_string().contains("--renew-deadline-seconds"),
            "{err}"
        );
    }

    #[test]
    fn clap_rejects_malformed_values_naming_the_flag() {
        for (argv, flag) in [
            (vec!["t", "--http-addr", "nowhere"], "--http-addr"),
            (vec!["t", "--log-format", "xml"], "--log-format"),
            (
                vec!["t", "--lease-duration-seconds=-1"],
                "--lease-duration-seconds",
            ),
        ] {
            let err = Cli::try_parse_from(&argv).expect_err("must fail");
            assert!(err.to_string().contains(flag), "{err}");
        }
    }
}

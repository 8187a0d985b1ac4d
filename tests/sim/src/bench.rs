//! `kube-sim bench`: measures simple writes/s through the verb handlers and over HTTPS (plain HTTP
//! with `--insecure-http`), watch events/s delivered to 10 concurrent HTTPS watchers, gets/s of stored
//! objects, resident memory with many stored objects, the rate of request stats recording, and
//! admission cost; `--mix agents` measures writes/s and memory with the realistic object mix of `mix`.

pub mod mix;

use crate::server::handlers::WriteOpts;
use crate::{Sim, SimConfig};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Errors running the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("failed to start the simulator")]
    Start(#[from] crate::SimError),
    #[error("failed to {what}: {message}")]
    Step { what: &'static str, message: String },
    #[error("failed to talk to the simulator")]
    Io(#[from] std::io::Error),
}

/// Resident set size in KiB from /proc/self/status (0 where unavailable).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn cm(i: usize) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("cm-{i}"), "namespace": "bench", "labels": {"app": "bench", "shard": (i % 10).to_string()}},
        "data": {"key": format!("value-{i}")}})
}

/// A client connection: TCP, or TLS over TCP.
trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// Where and how the bench's clients connect.
#[derive(Clone)]
struct Target {
    addr: std::net::SocketAddr,
    /// Trusting the simulator's CA; `None` for plain HTTP.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Target {
    async fn connect(&self) -> Result<Box<dyn Conn>, std::io::Error> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(config) => {
                let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
                let s = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await?;
                Ok(Box::new(s))
            }
        }
    }
}

async fn watcher(target: Target, rv: u64, expect: usize) -> Result<usize, std::io::Error> {
    let mut s = target.connect().await?;
    let req = format!(
        "GET /api/v1/namespaces/bench/configmaps?watch=true&resourceVersion={rv} HTTP/1.1\r\nHost: bench\r\nUser-Agent: kube-sim-bench\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    // Every event line ends with `}\n`; chunk-size lines end with `\r\n`.
    let mut buf = vec![0u8; 1 << 16];
    let mut prev = 0u8;
    let mut seen = 0usize;
    while seen < expect {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            if b == b'\n' && prev == b'}' {
                seen += 1;
            }
            prev = b;
        }
    }
    Ok(seen)
}

/// POSTs `count` ConfigMaps over one keep-alive HTTP/1.1 connection, checking each answer is 201.
async fn http_writer(target: Target, start: usize, count: usize) -> Result<(), std::io::Error> {
    let mut s = target.connect().await?;
    let mut buf: Vec<u8> = Vec::new();
    let mut tmp = vec![0u8; 16 * 1024];
    for i in start..start + count {
        let mut obj = cm(i);
        obj["metadata"]["name"] = json!(format!("http-{i}"));
        let body = serde_json::to_vec(&obj).map_err(std::io::Error::other)?;
        let head = format!(
            "POST /api/v1/namespaces/bench/configmaps HTTP/1.1\r\nHost: bench\r\nUser-Agent: kube-sim-bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await?;
        s.write_all(&body).await?;
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let headers = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                if !headers.starts_with("http/1.1 201") {
                    return Err(std::io::Error::other(format!(
                        "unexpected answer: {headers}"
                    )));
                }
                let len: usize = headers
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < end + 4 + len {
                    let n = s.read(&mut tmp).await?;
                    if n == 0 {
                        return Err(std::io::Error::other("connection closed"));
                    }
                    buf.extend_from_slice(&tmp[..n]);
                }
                buf.drain(..end + 4 + len);
                break;
            }
            let n = s.read(&mut tmp).await?;
            if n == 0 {
                return Err(std::io::Error::other("connection closed"));
            }
            buf.extend_from_slice(&tmp[..n]);
        }
    }
    Ok(())
}

/// Records `per_thread` requests on each of `threads` threads into one [`Stats`], cycling through
/// a mix of 240 (verb, resource, subresource, user, user agent) combinations; returns records/s.
///
/// [`Stats`]: crate::server::stats::Stats
pub fn stats_record_rate(threads: usize, per_thread: usize) -> f64 {
    use crate::server::stats::{RequestKey, Stats};
    let verbs = ["get", "list", "watch", "create", "patch", "update"];
    let resources = [
        ("hypersync.io", "agentnodes"),
        ("hypersync.io", "agentstacks"),
        ("apps", "deployments"),
        ("", "services"),
        ("", "configmaps"),
    ];
    let clients = [
        (
            "system:serviceaccount:hypersync-system:hypersync-operator",
            "hypersync-operator/0.1.0",
        ),
        (
            "kubernetes-admin",
            "kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0",
        ),
        (
            "system:serviceaccount:default:agent",
            "hypersync-sandbox/agent",
        ),
        ("kubernetes-admin", "Helm/3.18.0"),
    ];
    let mut keys = Vec::new();
    for v in verbs {
        for (g, r) in resources {
            for sub in ["", "status"] {
                for (user, ua) in clients {
                    keys.push(RequestKey {
                        verb: v,
                        group: g,
                        resource: r,
                        subresource: sub,
                        user,
                        user_agent: ua,
                    });
                }
            }
        }
    }
    let stats = Stats::default();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (stats, keys) = (&stats, &keys);
            s.spawn(move || {
                for i in 0..per_thread {
                    stats.record(&keys[(i * 7 + t) % keys.len()]);
                }
            });
        }
    });
    (threads * per_thread) as f64 / t0.elapsed().as_secs_f64()
}

/// Runs the benchmark over HTTPS and returns a human-readable report.
pub async fn run(objects: usize) -> Result<String, BenchError> {
    run_over(objects, false).await
}

/// Runs the benchmark, its clients talking HTTPS (plain HTTP with `insecure_http`).
pub async fn run_over(objects: usize, insecure_http: bool) -> Result<String, BenchError> {
    let sim = Sim::start(SimConfig {
        dataplane: false,
        insecure_http,
        ..SimConfig::default()
    })
    .await?;
    let tls = match sim.tls() {
        Some(t) => Some(Arc::new(t.client_config().map_err(|e| {
            BenchError::Step {
                what: "configure TLS",
                message: e.to_string(),
            }
        })?)),
        None => None,
    };
    let target = Target {
        addr: sim.addr(),
        tls,
    };
    let scheme = if insecure_http { "HTTP" } else { "HTTPS" };
    let st = sim.state().clone();
    let ns_ri = st
        .registry_read()
        .get("", "namespaces")
        .ok_or(BenchError::Step {
            what: "find namespaces",
            message: "missing".into(),
        })?;
    let cm_ri = st
        .registry_read()
        .get("", "configmaps")
        .ok_or(BenchError::Step {
            what: "find configmaps",
            message: "missing".into(),
        })?;
    let opts = WriteOpts::system("bench");
    st.create_obj(
        &ns_ri,
        "v1",
        None,
        json!({"metadata": {"name": "bench"}}),
        &opts,
    )
    .map_err(|e| BenchError::Step {
        what: "create namespace",
        message: e.message,
    })?;
    let rss_before = rss_kib();

    // 1. Simple writes: creates through the verb handlers (validation, metadata, store, event).
    let writes = 20_000.min(objects.max(1));
    let t0 = Instant::now();
    let c0 = cpu_secs();
    for i in 0..writes {
        st.create_obj(&cm_ri, "v1", Some("bench"), cm(i), &opts)
            .map_err(|e| BenchError::Step {
                what: "create",
                message: e.message,
            })?;
    }
    let write_rate = writes as f64 / t0.elapsed().as_secs_f64();
    let write_cpu = cpu_micros(c0, writes);

    // 1b. The same through HTTP(S): 4 keep-alive connections POSTing JSON.
    let http_writes = 4 * 2_500;
    let t0 = Instant::now();
    let c0 = cpu_secs();
    let mut hs = Vec::new();
    for c in 0..4 {
        hs.push(tokio::spawn(http_writer(target.clone(), c * 2_500, 2_500)));
    }
    for h in hs {
        h.await.map_err(|e| BenchError::Step {
            what: "join http writer",
            message: e.to_string(),
        })??;
    }
    let http_rate = http_writes as f64 / t0.elapsed().as_secs_f64();
    let http_cpu = cpu_micros(c0, http_writes);

    // 2. Watch fan-out: 10 HTTP watchers from the current rv, then updates.
    let start_rv = st.store.current_rv();
    let events = 20_000usize;
    let mut handles = Vec::new();
    for _ in 0..10 {
        handles.push(tokio::spawn(watcher(target.clone(), start_rv, events)));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t1 = Instant::now();
    let c1 = cpu_secs();
    let st2 = st.clone();
    let cm2 = cm_ri.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let opts = WriteOpts::system("bench");
        for i in 0..events {
            let mut o = cm(i % writes);
            o["data"]["key"] = json!(format!("update-{i}"));
            let name = format!("cm-{}", i % writes);
            let _ = st2.update_obj(&cm2, "v1", Some("bench"), &name, o, None, &opts);
        }
    });
    writer.await.map_err(|e| BenchError::Step {
        what: "run writer",
        message: e.to_string(),
    })?;
    let mut delivered = 0usize;
    for h in handles {
        let got = tokio::time::timeout(Duration::from_secs(120), h)
            .await
            .map_err(|_| BenchError::Step {
                what: "await watchers",
                message: "timed out".into(),
            })?
            .map_err(|e| BenchError::Step {
                what: "join watcher",
                message: e.to_string(),
            })??;
        delivered += got;
    }
    let watch_secs = t1.elapsed().as_secs_f64();
    let watch_rate = delivered as f64 / watch_secs;
    let watch_cpu = cpu_micros(c1, delivered);

    // 3. Memory with `objects` stored objects.
    for i in writes..objects {
        st.create_obj(&cm_ri, "v1", Some("bench"), cm(i), &opts)
            .map_err(|e| BenchError::Step {
                what: "create",
                message: e.message,
            })?;
    }
    let rss_after = rss_kib();
    let stored = st.store.total_objects();
    let usage = usage_line(&st.store.usage());

    // 4. Reads: gets of stored objects through the verb handler, spread over the whole table.
    let reads = 100_000usize;
    let t2 = Instant::now();
    let c2 = cpu_secs();
    for i in 0..reads {
        let name = format!("cm-{}", (i * 7919) % objects.max(1));
        st.get_obj(&cm_ri, "v1", Some("bench"), &name)
            .map_err(|e| BenchError::Step {
                what: "get",
                message: e.message,
            })?;
    }
    let read_rate = reads as f64 / t2.elapsed().as_secs_f64();
    let read_cpu = cpu_micros(c2, reads);
    sim.shutdown().await;

    // 4. Request stats recording, on every request path.
    let stats_1 = stats_record_rate(1, 1_000_000);
    let stats_4 = stats_record_rate(4, 250_000);
    let admission =
        crate::admission::bench::measure(5_000).map_err(|message| BenchError::Step {
            what: "measure admission",
            message,
        })?;
    Ok(format!(
        "writes: {writes} creates in-process at {write_rate:.0}/s ({write_cpu:.1} us CPU each); {http_writes} creates over {scheme} (4 connections) at {http_rate:.0}/s ({http_cpu:.1} us CPU each)\n\
         watch: {delivered} events delivered to 10 {scheme} watchers in {watch_secs:.2}s = {watch_rate:.0} events/s ({watch_cpu:.1} us CPU each)\n\
         reads: {reads} gets in-process at {read_rate:.0}/s ({read_cpu:.1} us CPU each)\n\
         {}\n{usage}\n\
         stats: request recording at {stats_1:.0}/s on 1 thread, {stats_4:.0}/s on 4 threads (240 distinct keys)\n{admission}",
        memory_line(stored, rss_before, rss_after)
    ))
}

/// CPU time of the whole process (every thread, user and system) in seconds, from /proc/self/stat
/// (0 where unavailable). Under a loaded machine it varies far less than wall-clock rates.
pub fn cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name: state is the 3rd field, utime the 14th, stime the 15th.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            // /proc reports clock ticks of USER_HZ, 100 on Linux.
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

/// CPU microseconds per operation since `start` (from `cpu_secs`).
fn cpu_micros(start: f64, ops: usize) -> f64 {
    (cpu_secs() - start) * 1e6 / ops.max(1) as f64
}

/// The memory figure: RSS growth over the stored objects, in bytes per object.
fn memory_line(stored: usize, rss_before: u64, rss_after: u64) -> String {
    let per_object = rss_after.saturating_sub(rss_before) as f64 * 1024.0 / stored.max(1) as f64;
    format!(
        "memory: {stored} objects stored, RSS {rss_after} KiB (was {rss_before} KiB before loading) = {per_object:.0} bytes/object ({:.2} KiB/object)",
        per_object / 1024.0
    )
}

/// Where the stored bytes are (`Store::usage`): live objects and the earlier versions the history
/// window holds, as compact JSON, and how many of each are still decoded.
fn usage_line(u: &crate::store::StoreUsage) -> String {
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    let avg = |b: usize, n: usize| b / n.max(1);
    let cold = u.objects - u.objects_decoded;
    let old_cold = u.superseded - u.superseded_decoded;
    format!(
        "store: {} objects, {cold} as compact JSON ({:.1} MiB, {} bytes each), {} decoded; history {} events holding {} earlier versions, {old_cold} as compact JSON ({:.1} MiB, {} bytes each), {} decoded",
        u.objects,
        mib(u.object_json_bytes),
        avg(u.object_json_bytes, cold),
        u.objects_decoded,
        u.history_events,
        u.superseded,
        mib(u.superseded_json_bytes),
        avg(u.superseded_json_bytes, old_cold),
        u.superseded_decoded,
    )
}

/// `--mix agents`: stores `objects` objects of the realistic mix (see `mix`), reporting writes/s
/// (every create, apply, patch and status update counts) and memory.
pub async fn run_agents(objects: usize) -> Result<String, BenchError> {
    let sim = Sim::start(SimConfig {
        dataplane: false,
        ..SimConfig::default()
    })
    .await?;
    let st = sim.state().clone();
    let m = mix::Mix::setup(&st)?;
    let rss_before = rss_kib();
    let stored_before = st.store.total_objects();
    let nodes = objects.div_ceil(mix::OBJECTS_PER_NODE).max(1);
    let rv_before = st.store.current_rv();
    let t0 = Instant::now();
    let c0 = cpu_secs();
    for i in 0..nodes {
        m.create_node(&st, i)?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let writes = st.store.current_rv() - rv_before;
    let write_cpu = cpu_micros(c0, writes as usize);
    let rss_after = rss_kib();
    let stored = st.store.total_objects() - stored_before;
    let usage = usage_line(&st.store.usage());
    sim.shutdown().await;
    Ok(format!(
        "mix: {nodes} AgentNodes with their ServiceAccount, Role, RoleBinding, Job and Pod (namespace {}), \
         {writes} writes in {secs:.1}s = {:.0} writes/s ({write_cpu:.1} us CPU each)\n{}\n{usage}",
        mix::NAMESPACE,
        writes as f64 / secs,
        memory_line(stored, rss_before, rss_after)
    ))
}

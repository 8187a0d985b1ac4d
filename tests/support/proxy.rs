//! A recording HTTP proxy in front of kube-sim, one per operator replica: it logs when each request
//! arrived and when its answer was complete (on one clock for all replicas), and can hold every
//! request other than the leader Lease's for a while, to make a replica's reconciles slow.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use kube::{Client, Config};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Record {
    pub method: String,
    pub path: String,
    pub watch: bool,
    pub started: Instant,
    /// When the whole answer had arrived from kube-sim (`None` for watches, which stream).
    pub ended: Option<Instant>,
}

impl Record {
    /// A request of the leader election (the Lease), as opposed to the controllers'.
    pub fn is_lease(&self) -> bool {
        self.path.contains("/leases")
    }
}

#[derive(Clone)]
pub struct Proxy {
    addr: std::net::SocketAddr,
    records: Arc<Mutex<Vec<Record>>>,
    delay: Arc<Mutex<Duration>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream` (kube-sim's URL).
    pub async fn start(upstream: &str) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let client =
            Client::try_from(Config::new(upstream.parse().expect("upstream URL"))).expect("client");
        let proxy = Proxy {
            addr,
            records: Arc::default(),
            delay: Arc::default(),
        };
        let serving = proxy.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (proxy, client) = (serving.clone(), client.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (proxy, client) = (proxy.clone(), client.clone());
                        async move { Ok::<_, Infallible>(proxy.forward(&client, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        proxy
    }

    /// A kube config that talks to kube-sim through this proxy.
    pub fn kube_config(&self) -> Config {
        Config::new(format!("http://{}", self.addr).parse().expect("proxy URL"))
    }

    /// Holds each later request other than the Lease's for `delay` before forwarding it.
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().expect("lock") = delay;
    }

    /// Every request so far, in arrival order.
    pub fn records(&self) -> Vec<Record> {
        self.records.lock().expect("lock").clone()
    }

    async fn forward(
        &self,
        client: &Client,
        req: Request<Incoming>,
    ) -> Response<UnsyncBoxBody<Bytes, BoxError>> {
        let started = Instant::now();
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_owned();
        let query = parts.uri.query().unwrap_or("").to_owned();
        let watch = query
            .split('&')
            .any(|kv| kv == "watch=true" || kv == "watch=1");
        let index = {
            let mut records = self.records.lock().expect("lock");
            records.push(Record {
                method: parts.method.to_string(),
                path: path.clone(),
                watch,
                started,
                ended: None,
            });
            records.len() - 1
        };
        let delay = *self.delay.lock().expect("lock");
        if !delay.is_zero() && !path.contains("/leases") {
            tokio::time::sleep(delay).await;
        }
        let body = match body.collect().await {
            Ok(body) => body.to_bytes(),
            Err(err) => return failure(&err.to_string()),
        };
        let mut upstream = Request::builder()
            .method(parts.method)
            .uri(parts.uri.path_and_query().map_or("/", |pq| pq.as_str()));
        for (name, value) in &parts.headers {
            if name == hyper::header::CONTENT_TYPE || name == hyper::header::ACCEPT {
                upstream = upstream.header(name, value);
            }
        }
        let Ok(upstream) = upstream.body(kube::client::Body::from(body.to_vec())) else {
            return failure("bad request");
        };
        let response = match client.send(upstream).await {
            Ok(response) => response,
            Err(err) => return failure(&err.to_string()),
        };
        let (parts, body) = response.into_parts();
        if watch {
            return Response::from_parts(
                parts,
                body.map_err(|e| Box::new(e) as BoxError).boxed_unsync(),
            );
        }
        let body = match body.collect().await {
            Ok(body) => body.to_bytes(),
            Err(err) => return failure(&err.to_string()),
        };
        self.records.lock().expect("lock")[index].ended = Some(Instant::now());
        Response::from_parts(
            parts,
            Full::new(body).map_err(|e| match e {}).boxed_unsync(),
        )
    }
}

fn failure(message: &str) -> Response<UnsyncBoxBody<Bytes, BoxError>> {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": message, "reason": "InternalError", "code": 502,
    });
    let mut response = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *response.status_mut() = hyper::StatusCode::BAD_GATEWAY;
    response
}

//! The admin front door: a second loopback listener onto the same simulator whose requests without
//! credentials are authenticated with a given token (e.g. `sim-admin`), because kubectl and Helm
//! (client-go) do not send bearer tokens to a plain-http server. Requests that carry a token keep
//! their own identity, so RBAC still applies to them.

use std::net::SocketAddr;
use std::sync::Arc;

use super::SimState;
use super::http::Body;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The running front door; stops when dropped.
pub struct Door {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Door {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Door {
    /// Serve `state` on a free loopback port, defaulting the credentials to `Bearer <token>`.
    pub async fn start(state: Arc<SimState>, token: &str) -> std::io::Result<Door> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let auth: Arc<str> = format!("Bearer {token}").into();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    acc = listener.accept() => {
                        let Ok((stream, _)) = acc else { continue };
                        let _ = stream.set_nodelay(true);
                        let (state, auth) = (state.clone(), auth.clone());
                        conns.spawn(async move {
                            let svc = hyper::service::service_fn(move |req| {
                                serve(state.clone(), auth.clone(), req)
                            });
                            let builder = hyper_util::server::conn::auto::Builder::new(
                                hyper_util::rt::TokioExecutor::new(),
                            );
                            let _ = builder
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Ok(Door { addr, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn serve(
    state: Arc<SimState>,
    auth: Arc<str>,
    req: Request<Incoming>,
) -> Result<Response<Body>, super::inject::Disconnected> {
    super::serve_request(state, req, Some(&auth)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn status(url: &str, path: &str, token: Option<&str>) -> u16 {
        let addr: SocketAddr = url.trim_start_matches("http://").parse().expect("address");
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n{auth}\r\n").as_bytes())
            .await
            .expect("write");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.expect("read");
        String::from_utf8_lossy(&buf)
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status")
    }

    #[tokio::test]
    async fn door_defaults_to_admin_but_keeps_given_identities() {
        let sim = crate::Sim::start(crate::SimConfig {
            authorize: true,
            dataplane: false,
            ..Default::default()
        })
        .await
        .expect("sim");
        let door = Door::start(sim.state().clone(), "sim-admin")
            .await
            .expect("door");
        let path = "/api/v1/namespaces/default/secrets";
        // The simulator itself refuses anonymous requests ...
        assert_eq!(status(&sim.url(), path, None).await, 401);
        // ... the door lets them in as the admin ...
        assert_eq!(status(&door.url(), path, None).await, 200);
        // ... and a service account stays itself (no RBAC grant to list secrets).
        assert_eq!(
            status(&door.url(), path, Some("sim-sa:default:default")).await,
            403
        );
        drop(door);
        sim.shutdown().await;
    }
}

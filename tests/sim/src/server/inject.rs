//! The server side of fault injection: which request a fault sees, the answers of the injected
//! faults (errors, 410 on watches, dropped and hung connections, lost responses of verbs that ran),
//! and the `/sim/faults` admin endpoint.

use super::http::{Body, Query, ResourcePath, error_response, json_response, stream_response};
use super::{Req, SimState};
use crate::faults::{FaultAction, FaultConfig, RequestInfo};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Response};
use serde_json::Value;
use std::time::Duration;

/// The service error that makes hyper close the connection without an answer.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by an injected fault (kube-sim --faults)")]
pub struct Disconnected;

/// Marks a response that must not be sent: the connection is closed after `after` instead.
#[derive(Debug, Clone, Copy)]
struct Disconnect {
    after: Duration,
}

fn disconnect(after: Duration) -> Response<Body> {
    let mut r = Response::new(Empty::<Bytes>::new().map_err(|e| match e {}).boxed_unsync());
    r.extensions_mut().insert(Disconnect { after });
    r
}

/// Sends the response, or for a dropped / hung request waits and closes the connection.
pub(crate) async fn finish(resp: Response<Body>) -> Result<Response<Body>, Disconnected> {
    match resp.extensions().get::<Disconnect>() {
        Some(d) => {
            if !d.after.is_zero() {
                tokio::time::sleep(d.after).await;
            }
            Err(Disconnected)
        }
        None => Ok(resp),
    }
}

/// The name a create request's body gives its object (only looked up when a rule names objects).
fn body_name(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

fn watch_rv(q: &Query) -> u64 {
    q.get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl SimState {
    /// What faults know about a resource request.
    pub(crate) fn fault_info<'a>(
        &self,
        p: &'a ResourcePath,
        verb: &'a str,
        r: &'a Req,
        user: &'a str,
        created_name: &'a str,
    ) -> RequestInfo<'a> {
        RequestInfo {
            verb,
            resource: &p.resource,
            subresource: p.subresource.as_deref().unwrap_or(""),
            namespace: p.namespace.as_deref().unwrap_or(""),
            name: p.name.as_deref().unwrap_or(created_name),
            user_agent: &r.user_agent,
            user,
            resource_version: if verb == "watch" {
                watch_rv(&r.query)
            } else {
                0
            },
        }
    }

    /// The fault for a resource request, if any.
    pub(crate) fn decide_fault(
        &self,
        p: &ResourcePath,
        verb: &str,
        r: &Req,
        user: &str,
    ) -> Option<FaultAction> {
        if !self.faults.is_enabled() {
            return None;
        }
        let created = if verb == "create" && p.name.is_none() && self.faults.names_objects() {
            body_name(&r.body)
        } else {
            String::new()
        };
        self.faults
            .decide(&self.fault_info(p, verb, r, user, &created))
    }

    /// The answer of a fault that hits before the verb runs (and of any fault on a watch, which has
    /// no outcome to lose).
    pub(crate) fn fault_response(
        &self,
        action: FaultAction,
        p: &ResourcePath,
        r: &Req,
    ) -> Response<Body> {
        match action {
            FaultAction::Error(code) => self.fault_status(code, p),
            FaultAction::AppliedTimeout => self.fault_status(504, p),
            FaultAction::Gone => {
                let rv = watch_rv(&r.query);
                stream_response(
                    futures::stream::iter([expired_line(rv, self.store.current_rv())]),
                    "application/json",
                )
            }
            FaultAction::Drop | FaultAction::AppliedDrop => disconnect(Duration::ZERO),
            FaultAction::Hang | FaultAction::AppliedHang => disconnect(self.faults.hang_for()),
        }
    }

    /// What the client gets of a verb that ran under an `applied-*` fault: 504, or nothing.
    pub(crate) fn fault_after_verb(
        &self,
        action: FaultAction,
        p: &ResourcePath,
        resp: Response<Body>,
    ) -> Response<Body> {
        match action {
            FaultAction::AppliedTimeout => self.fault_status(504, p),
            FaultAction::AppliedDrop => disconnect(Duration::ZERO),
            FaultAction::AppliedHang => disconnect(self.faults.hang_for()),
            _ => resp,
        }
    }

    fn fault_status(&self, code: u16, p: &ResourcePath) -> Response<Body> {
        let body = self
            .faults
            .status_body(code, &p.group, &p.resource, p.name.as_deref());
        let mut resp = json_response(code, &body);
        if code == 429
            && let Ok(h) =
                hyper::header::HeaderValue::from_str(&self.faults.retry_after_seconds().to_string())
        {
            resp.headers_mut().insert("retry-after", h);
        }
        resp
    }

    /// `GET /sim/faults`: the config and the counters; `POST`: set a new config (string spec or
    /// JSON), which reseeds and zeroes the counters.
    pub(crate) fn sim_faults(&self, r: &Req) -> Response<Body> {
        if r.method == Method::GET {
            return self.faults_json();
        }
        let body = String::from_utf8_lossy(&r.body).to_string();
        let parsed = match serde_json::from_str::<Value>(&body) {
            Ok(v) if v.is_object() => FaultConfig::from_json(&v),
            Ok(Value::String(s)) => FaultConfig::parse(&s),
            _ => FaultConfig::parse(body.trim()),
        };
        match parsed {
            Ok(c) => {
                self.faults.set(c);
                self.faults_json()
            }
            Err(e) => error_response(&super::errors::ApiError::bad_request(format!(
                "failed to parse faults: {e}"
            ))),
        }
    }

    /// `POST /sim/faults/reset`: zero the counters, keep the config.
    pub(crate) fn sim_faults_reset(&self) -> Response<Body> {
        self.faults.reset_counters();
        self.faults_json()
    }

    fn faults_json(&self) -> Response<Body> {
        let mut v = self.faults.config().to_json();
        v["counters"] = self.faults.counters_json();
        json_response(200, &v)
    }
}

/// The watch ERROR event of an expired resourceVersion (410 `Expired`, as the apiserver sends it).
pub(crate) fn expired_line(requested: u64, current: u64) -> Bytes {
    let err = super::errors::ApiError::gone(requested, current);
    crate::store::encode_watch_line("ERROR", &err.status())
}

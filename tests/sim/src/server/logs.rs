//! `pods/log`: the simulated container's output is the pod's `sim.kube-sim.io/log` annotation.
//! With `follow=true` the response streams, as the kubelet's does: what is there, then what is
//! appended to the annotation, until the container ends (the pod `Succeeded`/`Failed`, its
//! containers terminated, or the pod gone).

use super::SimState;
use super::errors::ApiError;
use super::http::{Body, stream_response, text_response};
use super::registry::ResourceInfo;
use bytes::Bytes;
use hyper::Response;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The annotation holding a simulated pod's log.
pub const LOG_ANNOTATION: &str = "sim.kube-sim.io/log";

/// How often a followed log looks for more output.
const POLL: Duration = Duration::from_millis(50);

fn log_of(pod: &Value) -> &str {
    pod.pointer("/metadata/annotations")
        .and_then(|a| a.get(LOG_ANNOTATION))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Whether the pod's containers have ended (no more output can come).
fn ended(pod: &Value) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return true;
    }
    pod.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            !cs.is_empty()
                && cs
                    .iter()
                    .all(|c| c.pointer("/state/terminated").is_some_and(|t| !t.is_null()))
        })
}

impl SimState {
    /// GET `pods/{name}/log` (`follow` streams).
    pub(super) fn pod_log(
        self: &Arc<Self>,
        ri: &Arc<ResourceInfo>,
        version: &str,
        ns: Option<&str>,
        name: &str,
        follow: bool,
    ) -> Result<Response<Body>, ApiError> {
        let pod = self.get_obj(ri, version, ns, name)?;
        if !follow || ended(&pod) {
            return Ok(text_response(200, log_of(&pod)));
        }
        let first = log_of(&pod).to_string();
        let sent = first.len();
        let state = self.clone();
        let ri = ri.clone();
        let version = version.to_string();
        let ns = ns.map(str::to_string);
        let name = name.to_string();
        let start = futures::stream::once(async move { Bytes::from(first) });
        let rest = futures::stream::unfold(Some(sent), move |sent| {
            let state = state.clone();
            let (ri, version, ns, name) = (ri.clone(), version.clone(), ns.clone(), name.clone());
            async move {
                let mut sent = sent?;
                loop {
                    tokio::time::sleep(POLL).await;
                    let Ok(pod) = state.get_obj(&ri, &version, ns.as_deref(), &name) else {
                        return None;
                    };
                    let log = log_of(&pod);
                    let done = ended(&pod);
                    // An annotation rewritten shorter than what was sent: send nothing old again.
                    let new = log.get(sent..).unwrap_or("");
                    if !new.is_empty() {
                        sent = log.len();
                        let next = (!done).then_some(sent);
                        return Some((Bytes::from(new.to_string()), next));
                    }
                    if done {
                        return None;
                    }
                }
            }
        });
        use futures::StreamExt;
        Ok(stream_response(
            start.chain(rest),
            "text/plain; charset=utf-8",
        ))
    }
}

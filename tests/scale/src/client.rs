//! The bench's HTTP calls to kube-sim through kube-rs clients that say `hypersync-scale/<role>` in
//! their User-Agent: raw JSON requests (no decoding of the answers the bench does not read), the
//! agents' status patches with their own tokens, counts by list with `limit=1`, and `/sim/stats`.

use std::path::Path;
use std::time::Duration;

use http::{Method, Request, header};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::Value;

use crate::stats::{Snapshot, USER_AGENT};

/// A failed call, naming what the bench tried.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("failed to build a client: {0}")]
    Config(String),
    #[error("failed to {what}")]
    Call {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to {what}: {message}")]
    Answer { what: String, message: String },
}

/// A client from kube-sim's kubeconfig (the admin token) with User-Agent `hypersync-scale/<role>`.
pub async fn admin(kubeconfig: &Path, role: &str) -> Result<Client, ClientError> {
    let kc = Kubeconfig::read_from(kubeconfig).map_err(|e| ClientError::Config(e.to_string()))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| ClientError::Config(e.to_string()))?;
    build(config, role)
}

/// A client without credentials (it trusts kube-sim's CA from the kubeconfig): each request brings
/// its own `Authorization` (the agents).
pub async fn anonymous(kubeconfig: &Path, role: &str) -> Result<Client, ClientError> {
    let kc = Kubeconfig::read_from(kubeconfig).map_err(|e| ClientError::Config(e.to_string()))?;
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| ClientError::Config(e.to_string()))?;
    config.auth_info = Default::default();
    build(config, role)
}

fn build(mut config: Config, role: &str) -> Result<Client, ClientError> {
    let ua = http::HeaderValue::from_str(&format!("{USER_AGENT}/{role}"))
        .map_err(|e| ClientError::Config(e.to_string()))?;
    config.headers.push((header::USER_AGENT, ua));
    // No call may hang the bench; watches get bookmarks from kube-sim every few seconds.
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(60));
    config.write_timeout = Some(Duration::from_secs(60));
    Client::try_from(config).map_err(|e| ClientError::Config(e.to_string()))
}

/// Sends a JSON body (or none) and returns the answer's text; non-2xx answers are errors.
pub async fn send(
    client: &Client,
    method: Method,
    path: &str,
    content_type: &str,
    body: Option<&Value>,
    bearer: Option<&str>,
) -> Result<String, kube::Error> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::ACCEPT, "application/json");
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, content_type);
    }
    if let Some(token) = bearer {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let req = req.body(bytes).map_err(kube::Error::HttpError)?;
    client.request_text(req).await
}

/// POST `obj` to the collection `path`.
pub async fn create(client: &Client, path: &str, obj: &Value) -> Result<(), kube::Error> {
    send(
        client,
        Method::POST,
        path,
        "application/json",
        Some(obj),
        None,
    )
    .await
    .map(drop)
}

/// Server-side apply of `obj` at its own `path` with field manager `hypersync-scale`.
pub async fn apply(client: &Client, path: &str, obj: &Value) -> Result<(), ClientError> {
    let url = format!("{path}?fieldManager={USER_AGENT}&force=true");
    send(
        client,
        Method::PATCH,
        &url,
        "application/apply-patch+yaml",
        Some(obj),
        None,
    )
    .await
    .map(drop)
    .map_err(|source| ClientError::Call {
        what: format!("apply {path}"),
        source,
    })
}

/// A JSON merge patch on a status subresource, as the holder of `token` when given.
pub async fn merge_patch_status(
    client: &Client,
    path: &str,
    patch: &Value,
    token: Option<&str>,
) -> Result<(), kube::Error> {
    send(
        client,
        Method::PATCH,
        path,
        "application/merge-patch+json",
        Some(patch),
        token,
    )
    .await
    .map(drop)
}

/// GETs `path` as JSON.
pub async fn get_json(client: &Client, path: &str) -> Result<Value, ClientError> {
    let text = send(client, Method::GET, path, "", None, None)
        .await
        .map_err(|source| ClientError::Call {
            what: format!("get {path}"),
            source,
        })?;
    serde_json::from_str(&text).map_err(|e| ClientError::Answer {
        what: format!("read {path}"),
        message: e.to_string(),
    })
}

fn with_selector(path: &str, selector: Option<&str>, limit: Option<u32>) -> String {
    let mut query = Vec::new();
    if let Some(l) = limit {
        query.push(format!("limit={l}"));
    }
    if let Some(s) = selector {
        query.push(format!("labelSelector={s}"));
    }
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

fn items(list: &Value) -> u64 {
    list.get("items")
        .and_then(Value::as_array)
        .map_or(0, Vec::len) as u64
}

/// How many objects the collection `path` holds (matching `selector` when given): one page of one
/// item plus `remainingItemCount`, or the whole list where the server leaves that out (as the
/// apiserver does for a label selector).
pub async fn count(
    client: &Client,
    path: &str,
    selector: Option<&str>,
) -> Result<u64, ClientError> {
    let page = get_json(client, &with_selector(path, selector, Some(1))).await?;
    if let Some(remaining) = page
        .pointer("/metadata/remainingItemCount")
        .and_then(Value::as_u64)
    {
        return Ok(items(&page) + remaining);
    }
    let more = page
        .pointer("/metadata/continue")
        .and_then(Value::as_str)
        .is_some_and(|c| !c.is_empty());
    if !more {
        return Ok(items(&page));
    }
    let all = get_json(client, &with_selector(path, selector, None)).await?;
    Ok(items(&all))
}

/// kube-sim's request counters now.
pub async fn stats(client: &Client) -> Result<Snapshot, ClientError> {
    Ok(Snapshot::from_json(&get_json(client, "/sim/stats").await?))
}

/// kube-sim's whole `/sim/stats` document now (counters and latencies).
pub async fn stats_json(client: &Client) -> Result<Value, ClientError> {
    get_json(client, "/sim/stats").await
}

/// Zeroes kube-sim's request counters, latencies and lock timings.
pub async fn reset_stats(client: &Client) -> Result<(), ClientError> {
    send(client, Method::POST, "/sim/stats/reset", "", None, None)
        .await
        .map(drop)
        .map_err(|source| ClientError::Call {
            what: "reset /sim/stats".into(),
            source,
        })
}

/// DELETE of a whole collection (no waiting for it to empty).
pub async fn delete_collection(client: &Client, path: &str) -> Result<(), ClientError> {
    send(client, Method::DELETE, path, "", None, None)
        .await
        .map(drop)
        .map_err(|source| ClientError::Call {
            what: format!("delete {path}"),
            source,
        })
}

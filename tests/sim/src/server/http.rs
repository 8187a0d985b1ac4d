//! HTTP plumbing: query parsing, request path parsing, JSON/stream responses.

use super::errors::ApiError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;
use hyper::{Response, StatusCode, header};
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Decoded query parameters (last value wins).
#[derive(Debug, Default, Clone)]
pub struct Query(pub HashMap<String, String>, pub String);

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes a URL component (`+` as space when `plus` is set).
pub fn percent_decode(s: &str, plus: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        let mut m = HashMap::new();
        for part in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            m.insert(percent_decode(k, true), percent_decode(v, true));
        }
        Query(m, q.unwrap_or("").to_string())
    }

    /// The raw query string.
    pub fn raw(&self) -> &str {
        &self.1
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|s| !s.is_empty())
    }

    pub fn flag(&self, k: &str) -> bool {
        matches!(self.0.get(k).map(String::as_str), Some("true" | "1" | ""))
            && self.0.contains_key(k)
    }
}

/// A JSON response.
pub fn json_response(code: u16, v: &Value) -> Response<Body> {
    json_bytes(
        code,
        Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
        "application/json",
    )
}

pub fn json_bytes(code: u16, body: Bytes, content_type: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(body).boxed_unsync());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

pub fn text_response(code: u16, body: &str) -> Response<Body> {
    json_bytes(
        code,
        Bytes::from(body.to_string()),
        "text/plain; charset=utf-8",
    )
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let status = e.status();
    let mut resp = json_response(e.code, &status);
    // As the apiserver's `ErrorNegotiated`: a Status asking for a retry carries `Retry-After`.
    if let Some(secs) = status
        .pointer("/details/retryAfterSeconds")
        .and_then(Value::as_u64)
        .filter(|s| *s > 0)
        && let Ok(h) = hyper::header::HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert("retry-after", h);
    }
    resp
}

/// A chunked streaming response fed by a stream of byte chunks.
pub fn stream_response<S>(stream: S, content_type: &str) -> Response<Body>
where
    S: futures::Stream<Item = Bytes> + Send + 'static,
{
    use futures::StreamExt;
    let body = StreamBody::new(stream.map(|b| Ok::<_, Infallible>(Frame::data(b))));
    let mut r = Response::new(BodyExt::boxed_unsync(body));
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// What a resource path names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    pub legacy_watch: bool,
}

/// Parsed request target.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Version,
    Health(String),
    ApiVersions,
    ApiGroups,
    Group(String),
    GroupVersion(String, String),
    Resource(ResourcePath),
    OpenApi(String),
    SimFaults,
    SimFaultsReset,
    SimStats,
    SimStatsReset,
    NotFound,
}

/// Parses a request path into a route.
pub fn parse_path(path: &str) -> Route {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match s.as_slice() {
        ["version"] => Route::Version,
        [h @ ("healthz" | "readyz" | "livez"), ..] => Route::Health(h.to_string()),
        ["api"] => Route::ApiVersions,
        ["apis"] => Route::ApiGroups,
        ["openapi", ..] => Route::OpenApi(path.to_string()),
        ["sim", "faults"] => Route::SimFaults,
        ["sim", "faults", "reset"] => Route::SimFaultsReset,
        ["sim", "stats"] => Route::SimStats,
        ["sim", "stats", "reset"] => Route::SimStatsReset,
        ["apis", g] => Route::Group(g.to_string()),
        ["api", v] => Route::GroupVersion(String::new(), v.to_string()),
        ["apis", g, v] => Route::GroupVersion(g.to_string(), v.to_string()),
        ["api", v, rest @ ..] => resource_route("", v, rest),
        ["apis", g, v, rest @ ..] => resource_route(g, v, rest),
        _ => Route::NotFound,
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let (legacy_watch, rest) = match rest {
        ["watch", r @ ..] => (true, r),
        r => (false, r),
    };
    let mut p = ResourcePath {
        group: group.into(),
        version: version.into(),
        legacy_watch,
        ..Default::default()
    };
    let own = |x: &&str| x.to_string();
    match rest {
        ["namespaces", ns, sub @ ("status" | "finalize")] => {
            p.resource = "namespaces".into();
            p.name = Some(ns.to_string());
            p.subresource = Some(sub.to_string());
        }
        ["namespaces", ns, res, tail @ ..] => {
            p.namespace = Some(ns.to_string());
            p.resource = res.to_string();
            p.name = tail.first().map(own);
            p.subresource = tail.get(1).map(own);
            if tail.len() > 2 {
                return Route::NotFound;
            }
        }
        [res, tail @ ..] => {
            p.resource = res.to_string();
            p.name = tail.first().map(own);
            p.subresource = tail.get(1).map(own);
            if tail.len() > 2 {
                return Route::NotFound;
            }
        }
        [] => return Route::NotFound,
    }
    Route::Resource(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_resource_paths() {
        let Route::Resource(p) = parse_path("/apis/apps/v1/namespaces/ns1/deployments/web/scale")
        else {
            panic!()
        };
        assert_eq!(
            (
                p.group.as_str(),
                p.namespace.as_deref(),
                p.resource.as_str(),
                p.name.as_deref(),
                p.subresource.as_deref()
            ),
            (
                "apps",
                Some("ns1"),
                "deployments",
                Some("web"),
                Some("scale")
            )
        );
        let Route::Resource(p) = parse_path("/api/v1/namespaces/foo/status") else {
            panic!()
        };
        assert_eq!(
            (p.resource.as_str(), p.name.as_deref()),
            ("namespaces", Some("foo"))
        );
        let Route::Resource(p) = parse_path("/api/v1/namespaces/foo") else {
            panic!()
        };
        assert_eq!(
            (p.resource.as_str(), p.name.as_deref(), p.namespace),
            ("namespaces", Some("foo"), None)
        );
        let Route::Resource(p) = parse_path("/api/v1/watch/namespaces/a/pods") else {
            panic!()
        };
        assert!(p.legacy_watch);
        assert_eq!(p.namespace.as_deref(), Some("a"));
        assert_eq!(parse_path("/apis"), Route::ApiGroups);
        assert_eq!(
            parse_path("/api/v1"),
            Route::GroupVersion(String::new(), "v1".into())
        );
    }

    #[test]
    fn decodes_queries() {
        let q = Query::parse(Some("labelSelector=app%3Dweb%2Ctier+in+(a)&watch=true&x="));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch"));
        assert_eq!(q.get("x"), None);
    }
}

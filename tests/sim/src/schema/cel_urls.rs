//! The Kubernetes CEL URL library (`url`, `isURL`, `getScheme`, `getHost`, `getHostname`, `getPort`,
//! `getEscapedPath`, `getQuery`) with Go's `net/url` semantics, as the apiserver evaluates it:
//! `isURL` is `url.ParseRequestURI` succeeding, `url()` checks with `ParseRequestURI` and keeps the
//! `url.Parse` result. WHATWG parsers differ on exactly the inputs CRD rules care about (`https://`
//! with no host parses in Go and has an empty hostname; `https:///x` has no host in Go but host `x`
//! for WHATWG; `/path` is a valid request URI with no scheme and no host).

use kube_cel::cel::extractors::This;
use kube_cel::cel::objects::{Key, Map, Opaque, Value};
use kube_cel::cel::{Context, ExecutionError, ResolveResult};
use std::collections::HashMap;
use std::sync::Arc;

/// The parts of a parsed URL the CEL accessors read (Go's `url.URL`, without user info).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct GoUrl {
    pub scheme: String,
    pub opaque: String,
    /// Host with port, unescaped.
    pub host: String,
    /// Unescaped path.
    pub path: String,
    /// The path as written when it differs from the default escaping of `path`.
    pub raw_path: String,
    pub raw_query: String,
}

impl Opaque for GoUrl {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.URL"
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Path,
    Host,
    Zone,
    UserPassword,
    QueryComponent,
    Fragment,
}

/// RFC 3986 sub-delimiters.
const SUB_DELIMS: &[u8] = b"!$&'()*+,;=";

fn should_escape(c: u8, mode: Mode) -> bool {
    if c.is_ascii_alphanumeric() {
        return false;
    }
    if matches!(mode, Mode::Host | Mode::Zone)
        && (SUB_DELIMS.contains(&c) || b":[]<>\"".contains(&c))
    {
        return false;
    }
    match c {
        b'-' | b'_' | b'.' | b'~' => return false,
        b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?' | b'@' => match mode {
            Mode::Path => return c == b'?',
            Mode::UserPassword => return matches!(c, b'@' | b'/' | b'?' | b':'),
            Mode::QueryComponent => return true,
            Mode::Fragment => return false,
            Mode::Host | Mode::Zone => {}
        },
        _ => {}
    }
    if mode == Mode::Fragment && matches!(c, b'!' | b'(' | b')' | b'*') {
        return false;
    }
    true
}

fn unhex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

/// Go's `unescape`: percent-decoding with the per-component checks of `net/url`.
fn unescape(s: &str, mode: Mode) -> Result<String, String> {
    let b = s.as_bytes();
    let mut escapes = 0;
    let mut has_plus = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                escapes += 1;
                if i + 2 >= b.len()
                    || !b[i + 1].is_ascii_hexdigit()
                    || !b[i + 2].is_ascii_hexdigit()
                {
                    let end = (i + 3).min(b.len());
                    let escape = String::from_utf8_lossy(&b[i..end]);
                    return Err(format!("invalid URL escape {escape:?}"));
                }
                let three = &s[i..i + 3];
                if mode == Mode::Host && unhex(b[i + 1]) < 8 && three != "%25" {
                    return Err(format!("invalid URL escape {three:?}"));
                }
                if mode == Mode::Zone {
                    let v = (unhex(b[i + 1]) << 4) | unhex(b[i + 2]);
                    if three != "%25" && v != b' ' && should_escape(v, Mode::Host) {
                        return Err(format!("invalid URL escape {three:?}"));
                    }
                }
                i += 3;
            }
            b'+' => {
                has_plus = mode == Mode::QueryComponent;
                i += 1;
            }
            c => {
                if matches!(mode, Mode::Host | Mode::Zone) && c < 0x80 && should_escape(c, mode) {
                    return Err(format!(
                        "invalid character {:?} in host name",
                        (c as char).to_string()
                    ));
                }
                i += 1;
            }
        }
    }
    if escapes == 0 && !has_plus {
        return Ok(s.to_string());
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                out.push((unhex(b[i + 1]) << 4) | unhex(b[i + 2]));
                i += 3;
            }
            b'+' if mode == Mode::QueryComponent => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("invalid URL escape in {s:?}"))
}

fn escape(s: &str, mode: Mode) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if should_escape(c, mode) {
            out.push_str(&format!("%{c:02X}"));
        } else {
            out.push(c as char);
        }
    }
    out
}

fn valid_encoded(s: &str, mode: Mode) -> bool {
    s.bytes()
        .all(|c| SUB_DELIMS.contains(&c) || b":@[]%".contains(&c) || !should_escape(c, mode))
}

fn valid_optional_port(port: &str) -> bool {
    match port.strip_prefix(':') {
        None => port.is_empty(),
        Some(digits) => digits.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// Go's `getScheme`: `(scheme, rest)`, or an error for a leading colon.
fn split_scheme(raw: &str) -> Result<(&str, &str), String> {
    for (i, c) in raw.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return Err("missing protocol scheme".into()),
            b':' => return Ok((&raw[..i], &raw[i + 1..])),
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

fn parse_host(host: &str) -> Result<String, String> {
    if host.starts_with('[') {
        let Some(i) = host.rfind(']') else {
            return Err("missing ']' in host".into());
        };
        let colon_port = &host[i + 1..];
        if !valid_optional_port(colon_port) {
            return Err(format!("invalid port {colon_port:?} after host"));
        }
        if let Some(zone) = host[..i].find("%25") {
            let host1 = unescape(&host[..zone], Mode::Host)?;
            let host2 = unescape(&host[zone..i], Mode::Zone)?;
            let host3 = unescape(&host[i..], Mode::Host)?;
            return Ok(format!("{host1}{host2}{host3}"));
        }
    } else if let Some(i) = host.rfind(':') {
        let colon_port = &host[i..];
        if !valid_optional_port(colon_port) {
            return Err(format!("invalid port {colon_port:?} after host"));
        }
    }
    unescape(host, Mode::Host)
}

fn valid_userinfo(s: &str) -> bool {
    s.bytes()
        .all(|c| c.is_ascii_alphanumeric() || SUB_DELIMS.contains(&c) || b"-._:~%@".contains(&c))
}

fn parse_authority(authority: &str) -> Result<String, String> {
    let Some(at) = authority.rfind('@') else {
        return parse_host(authority);
    };
    let host = parse_host(&authority[at + 1..])?;
    let userinfo = &authority[..at];
    if !valid_userinfo(userinfo) {
        return Err("net/url: invalid userinfo".into());
    }
    match userinfo.split_once(':') {
        None => unescape(userinfo, Mode::UserPassword)?,
        Some((user, password)) => {
            unescape(user, Mode::UserPassword)?;
            unescape(password, Mode::UserPassword)?
        }
    };
    Ok(host)
}

/// Go's `url.parse(rawURL, viaRequest)`.
fn parse_go(raw: &str, via_request: bool) -> Result<GoUrl, String> {
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("net/url: invalid control character in URL".into());
    }
    if raw.is_empty() && via_request {
        return Err("empty url".into());
    }
    let mut url = GoUrl::default();
    if raw == "*" {
        url.path = "*".into();
        return Ok(url);
    }
    let (scheme, rest) = split_scheme(raw)?;
    url.scheme = scheme.to_ascii_lowercase();
    let rest = if rest.ends_with('?') && rest.matches('?').count() == 1 {
        &rest[..rest.len() - 1]
    } else {
        match rest.split_once('?') {
            Some((r, q)) => {
                url.raw_query = q.to_string();
                r
            }
            None => rest,
        }
    };
    if !rest.starts_with('/') {
        if !url.scheme.is_empty() {
            url.opaque = rest.to_string();
            return Ok(url);
        }
        if via_request {
            return Err("invalid URI for request".into());
        }
        let segment = rest.split('/').next().unwrap_or_default();
        if segment.contains(':') {
            return Err("first path segment in URL cannot contain colon".into());
        }
    }
    let mut path = rest;
    if (!url.scheme.is_empty() || !via_request && !rest.starts_with("///"))
        && rest.starts_with("//")
    {
        let authority_and_path = &rest[2..];
        let (authority, p) = match authority_and_path.find('/') {
            Some(i) => authority_and_path.split_at(i),
            None => (authority_and_path, ""),
        };
        url.host = parse_authority(authority)?;
        path = p;
    }
    url.path = unescape(path, Mode::Path)?;
    if escape(&url.path, Mode::Path) != path {
        url.raw_path = path.to_string();
    }
    Ok(url)
}

fn url_error(raw: &str, err: String) -> String {
    format!("parse {raw:?}: {err}")
}

/// Go's `url.ParseRequestURI`: what `isURL` accepts.
pub(super) fn parse_request_uri(raw: &str) -> Result<GoUrl, String> {
    parse_go(raw, true).map_err(|e| url_error(raw, e))
}

/// Go's `url.Parse` (the fragment is split off first and must be well escaped).
pub(super) fn parse(raw: &str) -> Result<GoUrl, String> {
    let (u, fragment) = match raw.split_once('#') {
        Some((u, f)) => (u, Some(f)),
        None => (raw, None),
    };
    let url = parse_go(u, false).map_err(|e| url_error(raw, e))?;
    if let Some(f) = fragment {
        unescape(f, Mode::Fragment).map_err(|e| url_error(raw, e))?;
    }
    Ok(url)
}

impl GoUrl {
    fn split_host_port(&self) -> (&str, &str) {
        let mut host = self.host.as_str();
        let mut port = "";
        if let Some(colon) = host.rfind(':')
            && valid_optional_port(&host[colon..])
        {
            port = &host[colon + 1..];
            host = &host[..colon];
        }
        if host.starts_with('[') && host.ends_with(']') && host.len() >= 2 {
            host = &host[1..host.len() - 1];
        }
        (host, port)
    }

    pub(super) fn hostname(&self) -> &str {
        self.split_host_port().0
    }

    pub(super) fn port(&self) -> &str {
        self.split_host_port().1
    }

    /// Go's `EscapedPath`.
    pub(super) fn escaped_path(&self) -> String {
        if !self.raw_path.is_empty()
            && valid_encoded(&self.raw_path, Mode::Path)
            && unescape(&self.raw_path, Mode::Path).as_deref() == Ok(self.path.as_str())
        {
            return self.raw_path.clone();
        }
        if self.path == "*" {
            return "*".into();
        }
        escape(&self.path, Mode::Path)
    }

    /// Go's `Query()`: `ParseQuery` keeping what parses, in order.
    pub(super) fn query(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for pair in self.raw_query.split('&') {
            if pair.is_empty() || pair.contains(';') {
                continue;
            }
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (Ok(k), Ok(v)) = (
                unescape(k, Mode::QueryComponent),
                unescape(v, Mode::QueryComponent),
            ) else {
                continue;
            };
            match out.iter_mut().find(|(key, _)| *key == k) {
                Some((_, values)) => values.push(v),
                None => out.push((k, vec![v])),
            }
        }
        out
    }
}

fn string_value(s: &str) -> Value {
    Value::String(Arc::new(s.to_string()))
}

fn this_url(this: &Value, function: &str) -> Result<GoUrl, ExecutionError> {
    match this {
        Value::Opaque(o) => o
            .downcast_ref::<GoUrl>()
            .cloned()
            .ok_or_else(|| ExecutionError::function_error(function, "no such overload")),
        _ => Err(ExecutionError::function_error(function, "no such overload")),
    }
}

fn cel_url(s: Arc<String>) -> ResolveResult {
    let convert = |e: String| {
        ExecutionError::function_error(
            "url",
            format!("URL parse error during conversion from string: {e}"),
        )
    };
    parse_request_uri(&s).map_err(convert)?;
    let url = parse(&s).map_err(convert)?;
    Ok(Value::Opaque(Arc::new(url)))
}

fn cel_is_url(s: Arc<String>) -> ResolveResult {
    Ok(Value::Bool(parse_request_uri(&s).is_ok()))
}

fn cel_get_scheme(This(this): This<Value>) -> ResolveResult {
    Ok(string_value(&this_url(&this, "getScheme")?.scheme))
}

fn cel_get_host(This(this): This<Value>) -> ResolveResult {
    Ok(string_value(&this_url(&this, "getHost")?.host))
}

fn cel_get_hostname(This(this): This<Value>) -> ResolveResult {
    Ok(string_value(this_url(&this, "getHostname")?.hostname()))
}

fn cel_get_port(This(this): This<Value>) -> ResolveResult {
    Ok(string_value(this_url(&this, "getPort")?.port()))
}

fn cel_get_escaped_path(This(this): This<Value>) -> ResolveResult {
    Ok(string_value(
        &this_url(&this, "getEscapedPath")?.escaped_path(),
    ))
}

fn cel_get_query(This(this): This<Value>) -> ResolveResult {
    let url = this_url(&this, "getQuery")?;
    let map: HashMap<Key, Value> = url
        .query()
        .into_iter()
        .map(|(k, values)| {
            let list = values.iter().map(|v| string_value(v)).collect();
            (Key::String(Arc::new(k)), Value::List(Arc::new(list)))
        })
        .collect();
    Ok(Value::Map(Map { map: Arc::new(map) }))
}

/// Registers the Go-faithful URL functions, replacing any of the same name.
pub(super) fn register(ctx: &mut Context<'_>) {
    ctx.add_function("url", cel_url);
    ctx.add_function("isURL", cel_is_url);
    ctx.add_function("getScheme", cel_get_scheme);
    ctx.add_function("getHost", cel_get_host);
    ctx.add_function("getHostname", cel_get_hostname);
    ctx.add_function("getPort", cel_get_port);
    ctx.add_function("getEscapedPath", cel_get_escaped_path);
    ctx.add_function("getQuery", cel_get_query);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(raw: &str) -> Option<(String, String, String)> {
        parse_request_uri(raw).ok()?;
        let u = parse(raw).ok()?;
        Some((
            u.scheme.clone(),
            u.hostname().to_string(),
            u.port().to_string(),
        ))
    }

    #[test]
    fn request_uris_as_go_parses_them() {
        for ok in [
            "https://api.example.com",
            "https://api.example.com:8443/v1/chat?x=1#frag",
            "http://localhost:8080/mcp",
            "/absolute/path",
            "https://",
            "https:///host",
            "https:host",
            "postgres://user:pw@pg.db.svc:5432/vectors",
            "https://[::1]:443/",
            "https://a.com/path with space",
            "https://exa_mple.com",
            "HTTPS://API.EXAMPLE.COM",
            "*",
        ] {
            assert!(
                parse_request_uri(ok).is_ok(),
                "{ok} should be a request URI"
            );
        }
        for bad in [
            "",
            "not a url",
            "relative/path",
            "mcp",
            "://host",
            "https://host:port",
            "https://a b.com",
            "https://host/%zz",
            "https://[::1",
            "https://host\n",
            "https://us er@host",
        ] {
            assert!(
                parse_request_uri(bad).is_err(),
                "{bad:?} should not be a request URI"
            );
        }
    }

    #[test]
    fn accessors_follow_go() {
        assert_eq!(
            host_of("https://"),
            Some(("https".into(), "".into(), "".into()))
        );
        assert_eq!(
            host_of("https:///host"),
            Some(("https".into(), "".into(), "".into()))
        );
        assert_eq!(
            host_of("https:host"),
            Some(("https".into(), "".into(), "".into()))
        );
        assert_eq!(host_of("/mcp"), Some(("".into(), "".into(), "".into())));
        assert_eq!(
            host_of("http://localhost:8080/mcp"),
            Some(("http".into(), "localhost".into(), "8080".into()))
        );
        assert_eq!(
            host_of("HTTPS://[::1]:8443/x"),
            Some(("https".into(), "::1".into(), "8443".into()))
        );
        let u = parse("https://a.com/my%20path/b?k=v&k=w+x&bad=%zz&e=#f").unwrap();
        assert_eq!(u.host, "a.com");
        assert_eq!(u.escaped_path(), "/my%20path/b");
        assert_eq!(
            u.query(),
            vec![
                ("k".to_string(), vec!["v".to_string(), "w x".to_string()]),
                ("e".to_string(), vec![String::new()])
            ]
        );
        assert_eq!(parse("https://a.com/a b").unwrap().escaped_path(), "/a%20b");
    }
}

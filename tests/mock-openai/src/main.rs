//! A tiny OpenAI-compatible HTTP server standing in for vLLM in the kind e2e test (no GPU, no weights).
//!
//! It accepts vLLM's command line (`--port`, `--served-model-name`, `--model`; everything else is
//! ignored) and serves `GET /health`, `GET /v1/models`, `POST /v1/chat/completions`,
//! `POST /v1/completions` and `POST /v1/embeddings` with fixed, well-formed answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

/// Settings read from a vLLM-style argument list.
#[derive(Debug, PartialEq, Eq)]
pub struct Settings {
    pub port: u16,
    pub model: String,
}

/// Parses `--port N`, `--served-model-name NAME` and `--model NAME` (also as `--flag=value`);
/// unknown flags are ignored, as the operator passes vLLM's full flag set.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Settings, String> {
    let mut port = 8000u16;
    let mut served = None;
    let mut model = None;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        if !matches!(flag.as_str(), "--port" | "--served-model-name" | "--model") {
            continue;
        }
        let Some(value) = inline.or_else(|| it.next()) else {
            return Err(format!("failed to read a value for {flag}"));
        };
        match flag.as_str() {
            "--port" => {
                port = value
                    .parse()
                    .map_err(|_| format!("failed to parse --port {value:?}"))?
            }
            "--served-model-name" => served = Some(value),
            _ => model = Some(value),
        }
    }
    Ok(Settings {
        port,
        model: served.or(model).unwrap_or_else(|| "mock".to_string()),
    })
}

/// The JSON body and status for a request line.
pub fn respond(method: &str, path: &str, model: &str) -> (u16, String) {
    let path = path.split('?').next().unwrap_or(path);
    match (method, path) {
        ("GET", "/health") | ("GET", "/healthz") => (200, "{}".to_string()),
        ("GET", "/v1/models") => (
            200,
            format!(
                r#"{{"object":"list","data":[{{"id":"{model}","object":"model","owned_by":"mock-openai"}}]}}"#
            ),
        ),
        ("POST", "/v1/chat/completions") => (
            200,
            format!(
                r#"{{"id":"chatcmpl-mock","object":"chat.completion","created":0,"model":"{model}","choices":[{{"index":0,"message":{{"role":"assistant","content":"mock answer"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}}}"#
            ),
        ),
        ("POST", "/v1/completions") => (
            200,
            format!(
                r#"{{"id":"cmpl-mock","object":"text_completion","created":0,"model":"{model}","choices":[{{"index":0,"text":"mock answer","finish_reason":"stop"}}]}}"#
            ),
        ),
        ("POST", "/v1/embeddings") => (
            200,
            format!(
                r#"{{"object":"list","model":"{model}","data":[{{"object":"embedding","index":0,"embedding":[0.0,0.5,1.0]}}]}}"#
            ),
        ),
        _ => (
            404,
            r#"{"error":{"message":"not found","type":"invalid_request_error"}}"#.to_string(),
        ),
    }
}

fn handle(stream: TcpStream, model: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0).min(1 << 20);
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let (status, json) = respond(&method, &path, model);
    let reason = if status == 200 { "OK" } else { "Not Found" };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    )?;
    out.flush()
}

/// Serves until the process is killed, one thread per connection.
pub fn serve(listener: TcpListener, model: String) {
    for stream in listener.incoming().flatten() {
        let model = model.clone();
        thread::spawn(move || {
            if let Err(err) = handle(stream, &model) {
                eprintln!("mock-openai: failed to answer a request: {err}");
            }
        });
    }
}

fn main() {
    let settings = match parse_args(std::env::args().skip(1)) {
        Ok(s) => s,
        Err(err) => {
            eprintln!("mock-openai: {err}");
            std::process::exit(2);
        }
    };
    let listener = match TcpListener::bind(("0.0.0.0", settings.port)) {
        Ok(l) => l,
        Err(err) => {
            eprintln!(
                "mock-openai: failed to listen on port {}: {err}",
                settings.port
            );
            std::process::exit(1);
        }
    };
    eprintln!(
        "mock-openai: serving model {:?} on port {}",
        settings.model, settings.port
    );
    serve(listener, settings.model);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_vllm_arguments_and_ignores_the_rest() {
        let s = parse_args(args(
            "serve --model deepseek-ai/x --port 8000 --tensor-parallel-size 4 --served-model-name deepseek-coder-33b",
        ))
        .unwrap();
        assert_eq!(s.port, 8000);
        assert_eq!(s.model, "deepseek-coder-33b");
        assert_eq!(parse_args(args("--port=9001")).unwrap().port, 9001);
        assert!(parse_args(args("--port nope")).is_err());
        assert!(parse_args(args("--port")).is_err());
    }

    #[test]
    fn answers_openai_requests_over_http() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || serve(listener, "m1".to_string()));
        let request = |req: &str| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let health = request("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        let models = request("GET /v1/models HTTP/1.1\r\n\r\n");
        assert!(models.contains(r#""id":"m1""#), "{models}");
        let body = r#"{"model":"m1","messages":[{"role":"user","content":"hi"}]}"#;
        let chat = request(&format!(
            "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
        assert!(
            chat.contains("chat.completion") && chat.contains("mock answer"),
            "{chat}"
        );
        let missing = request("GET /nope HTTP/1.1\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    }
}

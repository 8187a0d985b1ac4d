//! The CEL environment of CRD validation rules, as the apiserver builds it: kube-cel's Kubernetes
//! libraries (strings, lists, sets, regex, quantity, ip, semver, format, math) with the URL library
//! and quantity parsing replaced by Go-faithful versions, `self`/`oldSelf` converted from JSON the
//! way the apiserver exposes them (field-name escaping, formats, int-or-string, embedded resources),
//! and the evaluation of one schema node's compiled rules.

use super::cel_urls;
use kube_cel::cel::extractors::This;
use kube_cel::cel::objects::{Key, Map, Value};
use kube_cel::cel::{Context, ExecutionError, FunctionContext, Program, ResolveResult};
use kube_cel::{CompilationResult, KubeCelExt};
use serde_json::Value as Json;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

thread_local! {
    /// The rule environment, built once per thread.
    static ENV: Context<'static> = {
        let mut ctx = Context::default().with_all();
        cel_urls::register(&mut ctx);
        ctx.add_function("isQuantity", cel_is_quantity);
        ctx.add_function("quantity", cel_quantity);
        ctx.add_function("matches", cel_matches);
        ctx
    };
    /// Patterns `matches` compiled on this thread.
    static PATTERNS: RefCell<HashMap<String, Result<regex::Regex, String>>> =
        RefCell::new(HashMap::new());
    /// kube-cel's own environment, to build quantity values once Go's grammar accepted the text.
    static KUBE_CEL: (Context<'static>, Program) = (
        Context::default().with_all(),
        Program::compile("quantity(s)").expect("quantity(s) compiles"),
    );
}

/// Most patterns kept compiled per thread (rules hold a handful; beyond that, start over).
const PATTERNS_MAX: usize = 256;

/// `matches` as cel's own (same regex dialect, same error), with each pattern compiled once per
/// thread: cel compiles it on every call, which made a list rule such as
/// `self.all(t, t.matches('^[a-z0-9]...$'))` the costliest part of validating a write.
fn cel_matches(
    ftx: &FunctionContext,
    This(this): This<Arc<String>>,
    pattern: Arc<String>,
) -> Result<bool, ExecutionError> {
    PATTERNS.with(|p| {
        let mut p = p.borrow_mut();
        if !p.contains_key(pattern.as_str()) {
            if p.len() >= PATTERNS_MAX {
                p.clear();
            }
            let compiled = regex::Regex::new(&pattern).map_err(|e| e.to_string());
            p.insert(pattern.to_string(), compiled);
        }
        match p.get(pattern.as_str()) {
            Some(Ok(re)) => Ok(re.is_match(&this)),
            Some(Err(err)) => Err(ftx.error(format!("'{pattern}' not a valid regex:\n{err}"))),
            None => Ok(false),
        }
    })
}

/// Go's `resource.ParseQuantity` grammar: sign, digits, optional fraction, then a suffix that is a
/// binary SI unit, a decimal SI unit or an `e`/`E` exponent. kube-cel trims blanks and reads a
/// different grammar, so `isQuantity(' 1Gi')` would differ from the apiserver.
pub(super) fn is_go_quantity(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    let b = s.as_bytes();
    let mut pos = usize::from(matches!(b[0], b'+' | b'-'));
    while pos < b.len() && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < b.len() && b[pos] == b'.' {
        pos += 1;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
    }
    let suffix = &s[pos..];
    let letters = suffix
        .bytes()
        .take_while(|c| b"eEinumkKMGTP".contains(c))
        .count();
    let mut rest = &suffix.as_bytes()[letters..];
    if let Some((b'+' | b'-', tail)) = rest.split_first() {
        rest = tail;
    }
    if !rest.iter().all(u8::is_ascii_digit) {
        return false;
    }
    match suffix {
        "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti"
        | "Pi" | "Ei" => true,
        _ => {
            let exp = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'));
            exp.is_some_and(|e| !e.is_empty() && e.parse::<i64>().is_ok())
        }
    }
}

fn cel_is_quantity(s: Arc<String>) -> ResolveResult {
    Ok(Value::Bool(is_go_quantity(&s)))
}

fn cel_quantity(s: Arc<String>) -> ResolveResult {
    if !is_go_quantity(&s) {
        return Err(ExecutionError::function_error(
            "quantity",
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ));
    }
    KUBE_CEL.with(|(ctx, program)| {
        let mut scope = ctx.new_inner_scope();
        scope.add_variable_from_value("s", Value::String(s.clone()));
        program.execute(&scope)
    })
}

const CEL_RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// The apiserver's escaping of a property name into a CEL field name (`__` -> `__underscores__`,
/// `.` `-` `/` -> `__dot__` `__dash__` `__slash__`, reserved words -> `__word__`); `None` for a name
/// CEL cannot reach (leading digit, other characters).
pub(super) fn escape_field_name(name: &str) -> Option<String> {
    if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    if CEL_RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '_' if chars.peek() == Some(&'_') => {
                chars.next();
                out.push_str("__underscores__");
            }
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c if c.is_ascii_alphanumeric() || c == '_' => out.push(c),
            _ => return None,
        }
    }
    Some(out)
}

fn string(s: &str) -> Value {
    Value::String(Arc::new(s.to_string()))
}

fn number(n: &serde_json::Number) -> Value {
    match (n.as_i64(), n.as_u64()) {
        (Some(i), _) => Value::Int(i),
        (None, Some(u)) => Value::UInt(u),
        _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
    }
}

fn format_string(s: &str, schema: &Json) -> Value {
    if schema.get("x-kubernetes-int-or-string") == Some(&Json::Bool(true)) {
        return string(s);
    }
    match schema.get("format").and_then(Json::as_str) {
        Some("date-time") => chrono::DateTime::parse_from_rfc3339(s)
            .map(Value::Timestamp)
            .unwrap_or_else(|_| string(s)),
        Some("duration") => parse_go_duration(s)
            .map(Value::Duration)
            .unwrap_or_else(|| string(s)),
        Some("byte") => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map(|b| Value::Bytes(Arc::new(b)))
                .unwrap_or_else(|_| string(s))
        }
        _ => string(s),
    }
}

/// Go's `time.ParseDuration` (`1h30m`, `1.5s`, `300ms`, `-2m`, `0`).
fn parse_go_duration(s: &str) -> Option<chrono::Duration> {
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if body == "0" {
        return Some(chrono::Duration::zero());
    }
    if body.is_empty() {
        return None;
    }
    let mut nanos: f64 = 0.0;
    let mut rest = body;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        nanos += n * unit;
        rest = &rest[unit_len..];
    }
    if nanos > i64::MAX as f64 {
        return None;
    }
    let d = chrono::Duration::nanoseconds(nanos as i64);
    Some(if negative { -d } else { d })
}

/// `value` as the apiserver binds it to `self` under `schema` (a structural schema node).
pub(super) fn to_cel(value: &Json, schema: &Json) -> Value {
    match value {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => number(n),
        Json::String(s) => format_string(s, schema),
        Json::Array(items) => {
            let item_schema = schema.get("items").unwrap_or(&Json::Null);
            Value::List(Arc::new(
                items.iter().map(|i| to_cel(i, item_schema)).collect(),
            ))
        }
        Json::Object(obj) => {
            let props = schema.get("properties").and_then(Json::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let mut map = HashMap::with_capacity(obj.len());
            for (k, v) in obj {
                let (key, child_schema) = match (props.and_then(|p| p.get(k)), additional) {
                    (Some(ps), _) => (escape_field_name(k), ps),
                    // Map keys are data, not field names: never escaped.
                    (None, Some(add)) if props.is_none() => (Some(k.clone()), add),
                    (None, _) => (escape_field_name(k), &Json::Null),
                };
                if let Some(key) = key {
                    map.insert(Key::String(Arc::new(key)), to_cel(v, child_schema));
                }
            }
            if schema.get("x-kubernetes-embedded-resource") == Some(&Json::Bool(true)) {
                for (k, empty) in [
                    ("apiVersion", string("")),
                    ("kind", string("")),
                    (
                        "metadata",
                        Value::Map(Map {
                            map: Arc::new(HashMap::new()),
                        }),
                    ),
                ] {
                    map.entry(Key::String(Arc::new(k.into()))).or_insert(empty);
                }
            }
            Value::Map(Map { map: Arc::new(map) })
        }
    }
}

/// Why one rule of a node did not pass.
#[derive(Debug)]
pub(super) enum Outcome {
    /// The rule returned false; the message of `messageExpression` when it produced a string.
    False { message_expression: Option<String> },
    /// The rule returned something other than a bool.
    NotBool,
    /// The rule failed to evaluate.
    Error(ExecutionError),
}

/// Evaluates the rules of one node (`validations` from kube-cel's compilation, in schema order)
/// against `value` and `old`, returning the index of each rule that did not pass and why.
/// Transition rules (those reading `oldSelf`) run only when there is an old value.
pub(super) fn evaluate(
    validations: &[Result<CompilationResult, kube_cel::CompilationError>],
    schema: &Json,
    value: &Json,
    old: Option<&Json>,
) -> Vec<(usize, Outcome)> {
    // Ratcheting: an unchanged value fails only its transition rules (`cel.rs` drops the others'
    // failures), so the others are not run, and `oldSelf` is `self` (converted once).
    let unchanged = old.is_some_and(|o| o == value);
    let this = to_cel(value, schema);
    let old_this = old.map(|o| {
        if unchanged {
            this.clone()
        } else {
            to_cel(o, schema)
        }
    });
    ENV.with(|env| {
        let mut scope = env.new_inner_scope();
        scope.add_variable_from_value("self", this);
        let creating = old_this.is_none();
        if let Some(o) = old_this {
            scope.add_variable_from_value("oldSelf", o);
        }
        let mut out = Vec::new();
        for (i, compiled) in validations.iter().enumerate() {
            let Ok(cr) = compiled else { continue };
            if unchanged && !cr.is_transition_rule {
                continue;
            }
            let optional_old = cr.rule.optional_old_self == Some(true);
            if cr.is_transition_rule && old.is_none() && !optional_old {
                continue;
            }
            let null_scope;
            let ctx = if creating && optional_old {
                null_scope = {
                    let mut s = scope.new_inner_scope();
                    s.add_variable_from_value("oldSelf", Value::Null);
                    s
                };
                &null_scope
            } else {
                &scope
            };
            match cr.program.execute(ctx) {
                Ok(Value::Bool(true)) => {}
                Ok(Value::Bool(false)) => {
                    let message_expression =
                        cr.message_program
                            .as_ref()
                            .and_then(|p| match p.execute(ctx) {
                                Ok(Value::String(s)) => Some(s.to_string()),
                                _ => None,
                            });
                    out.push((i, Outcome::False { message_expression }));
                }
                Ok(_) => out.push((i, Outcome::NotBool)),
                Err(e) => out.push((i, Outcome::Error(e))),
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(rule: &str, schema: Json, value: Json) -> Vec<(usize, Outcome)> {
        let mut schema = schema;
        schema["x-kubernetes-validations"] = json!([{"rule": rule}]);
        let compiled = kube_cel::compile_schema(&schema);
        evaluate(&compiled.validations, &schema, &value, None)
    }

    fn passes(rule: &str, schema: Json, value: Json) -> bool {
        let out = eval(rule, schema, value);
        assert!(
            out.iter().all(|(_, o)| !matches!(o, Outcome::Error(_))),
            "{rule}: {out:?}"
        );
        out.is_empty()
    }

    #[test]
    fn quantities_follow_go_grammar() {
        for ok in [
            "0", "500m", "1Gi", "100Gi", "2", "1.5", ".5", "5.", "1e3", "1E", "+1", "-1", "1.G",
            "10Ki", "1e-3", // Go reads a missing number as 0: `Gi` and `e3` parse.
            "Gi", "e3",
        ] {
            assert!(is_go_quantity(ok), "{ok} is a quantity");
        }
        for bad in [
            "", "lots", " 1Gi", "1Gi ", "1 Gi", "1gi", "1GiB", "1e", "1..5", "1Kb", "0x10",
        ] {
            assert!(!is_go_quantity(bad), "{bad:?} is not a quantity");
        }
        let s = json!({"x-kubernetes-int-or-string": true});
        let rule = "isQuantity(string(self)) && quantity(string(self)).sign() == 1";
        assert!(passes(rule, s.clone(), json!("100Gi")));
        assert!(passes(rule, s.clone(), json!(3)));
        assert!(!passes(rule, s.clone(), json!("0")));
        assert!(!passes(rule, s.clone(), json!(" 1Gi")));
        assert!(!passes(rule, s, json!("garbage")));
    }

    #[test]
    fn url_functions_are_go_faithful_in_rules() {
        let s = json!({"type": "string"});
        let tool = "isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''";
        assert!(passes(tool, s.clone(), json!("http://localhost:8080/mcp")));
        assert!(passes(
            tool,
            s.clone(),
            json!("https://tools.example.com/mcp")
        ));
        assert!(!passes(tool, s.clone(), json!("/mcp")));
        assert!(!passes(tool, s.clone(), json!("https:///mcp")));
        assert!(!passes(tool, s.clone(), json!("https://")));
        assert!(passes(
            "url(self).getQuery()['k'] == ['v', 'w'] && url(self).getPort() == '8443' && url(self).getEscapedPath() == '/a%20b'",
            s,
            json!("https://h:8443/a b?k=v&k=w")
        ));
    }

    #[test]
    fn field_names_are_escaped_as_the_apiserver_does() {
        assert_eq!(escape_field_name("my_field").as_deref(), Some("my_field"));
        assert_eq!(
            escape_field_name("a__b").as_deref(),
            Some("a__underscores__b")
        );
        assert_eq!(
            escape_field_name("x-y.z/w").as_deref(),
            Some("x__dash__y__dot__z__slash__w")
        );
        assert_eq!(
            escape_field_name("namespace").as_deref(),
            Some("__namespace__")
        );
        assert_eq!(escape_field_name("1abc"), None);
        assert_eq!(escape_field_name("a b"), None);
        let schema = json!({"type": "object", "properties": {
            "my_field": {"type": "integer"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}}}});
        assert!(passes(
            "self.my_field == 1 && self.labels['app.kubernetes.io/name'] == 'x'",
            schema,
            json!({"my_field": 1, "labels": {"app.kubernetes.io/name": "x"}})
        ));
    }
}

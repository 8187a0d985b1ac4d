//! Label selectors (string grammar and metav1.LabelSelector objects) and field selectors, with the
//! apiserver's validation rules and error wording.
//!
//! Label selector grammar (as `k8s.io/apimachinery/pkg/labels.Parse` accepts it):
//!
//! ```text
//! selector    ::= "" | requirement ("," requirement)*
//! requirement ::= ["!"] KEY [ ("in" | "notin") "(" VALUE ("," VALUE)* ")"
//!                           | ("=" | "==" | "!=" | ">" | "<") VALUE ]
//! ```
//!
//! KEY is `[DNS-subdomain "/"] name` (name up to 63 characters, alphanumerics, `-`, `_`, `.`,
//! starting and ending alphanumeric; prefix up to 253 characters, lowercase RFC 1123 subdomain).
//! VALUE is empty or like a name, up to 63 characters. Whitespace (space, tab, CR, LF) separates
//! tokens. A bare KEY means "exists", `!KEY` "does not exist". `in`/`notin` values may be empty
//! (`x in ()`, `x in (a,,b)` contain the empty value). `>`/`<` compare integers.
//!
//! Field selectors (`fields.ParseSelector`): comma-separated `path=value`, `path==value`,
//! `path!=value`; `\,`, `\=` and `\\` escape in values. Paths are any dotted path into the object
//! JSON (`metadata.name`, `status.phase`, `spec.nodeName`, `involvedObject.name`); a missing field
//! compares as the empty string.

use serde_json::{Map, Value};
use std::fmt;

/// Maximum length of a label value and of the name part of a label key.
const NAME_MAX_LEN: usize = 63;
/// Maximum length of a DNS-1123 subdomain (label key prefix).
const SUBDOMAIN_MAX_LEN: usize = 253;

const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const SUBDOMAIN_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";

/// The operator of one label requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

impl Operator {
    /// The spelling used in the string grammar (the apiserver's `selection.Operator` values).
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

/// One `key op values` term of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Sorted and de-duplicated (like the apiserver's string set).
    pub values: Vec<String>,
}

impl Requirement {
    /// Builds and validates a requirement the way `labels.NewRequirement` does. `path` is the
    /// field path used in error messages (`None` prints as `<nil>`, as upstream does).
    pub fn new(
        key: &str,
        operator: Operator,
        mut values: Vec<String>,
        path: Option<&str>,
    ) -> Result<Self, String> {
        let mut errs = Vec::new();
        let key_path = child(path, "key");
        if let Some(e) = validate_label_key(key, &key_path) {
            errs.push(e);
        }
        let values_path = child(path, "values");
        match operator {
            Operator::In | Operator::NotIn => {
                if values.is_empty() {
                    errs.push(invalid(
                        &values_path,
                        &go_string_slice(&values),
                        "for 'in', 'notin' operators, values set can't be empty",
                    ));
                }
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals => {
                if values.len() != 1 {
                    errs.push(invalid(
                        &values_path,
                        &go_string_slice(&values),
                        "exact-match compatibility requires one single value",
                    ));
                }
            }
            Operator::Exists | Operator::DoesNotExist => {
                if !values.is_empty() {
                    errs.push(invalid(
                        &values_path,
                        &go_string_slice(&values),
                        "values set must be empty for exists and does not exist",
                    ));
                }
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(invalid(
                        &values_path,
                        &go_string_slice(&values),
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(invalid(
                            &format!("{values_path}[{i}]"),
                            &format!("{v:?}"),
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        ));
                    }
                }
            }
        }
        for (i, v) in values.iter().enumerate() {
            if let Some(e) = validate_label_value(key, v, &format!("{values_path}[{i}]")) {
                errs.push(e);
            }
        }
        if !errs.is_empty() {
            return Err(aggregate(&errs));
        }
        values.sort();
        values.dedup();
        Ok(Requirement {
            key: key.to_string(),
            operator,
            values,
        })
    }

    /// Whether the labels satisfy this requirement (absent keys satisfy `!=`, `notin` and `!`).
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        let value = labels.get(&self.key).map(label_text);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => {
                value.is_some_and(|v| self.values.contains(&v))
            }
            Operator::NotEquals | Operator::NotIn => {
                value.is_none_or(|v| !self.values.contains(&v))
            }
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(have) = value.and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let Some(want) = self.values.first().and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = self.values.join(",");
        match self.operator {
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::Equals => write!(f, "{}={values}", self.key),
            Operator::DoubleEquals => write!(f, "{}=={values}", self.key),
            Operator::NotEquals => write!(f, "{}!={values}", self.key),
            Operator::GreaterThan => write!(f, "{}>{values}", self.key),
            Operator::LessThan => write!(f, "{}<{values}", self.key),
            Operator::In => write!(f, "{} in ({values})", self.key),
            Operator::NotIn => write!(f, "{} notin ({values})", self.key),
        }
    }
}

/// A parsed label selector: the AND of its requirements.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    /// Set for a null metav1.LabelSelector, which selects nothing.
    nothing: bool,
}

impl LabelSelector {
    /// The selector matching every object.
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// The selector matching no object (what a null metav1.LabelSelector means).
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Parses the string form, e.g. `"a=b,c!=d,e in (x,y),!f"`. Errors read like the apiserver's,
    /// e.g. `unable to parse requirement: <nil>: Invalid value: "a b": name part must consist of ...`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let tokens = lex(s)?;
        let mut p = Parser { tokens, pos: 0 };
        let mut requirements = p.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Converts a metav1.LabelSelector JSON object (`matchLabels` + `matchExpressions`). `null`
    /// selects nothing, `{}` selects everything (as `metav1.LabelSelectorAsSelector`).
    pub fn from_object(sel: &Value) -> Result<Self, String> {
        let obj = match sel {
            Value::Null => return Ok(LabelSelector::nothing()),
            Value::Object(o) => o,
            other => return Err(format!("label selector must be an object, got {other}")),
        };
        let mut requirements = Vec::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (k, v) in labels {
                    let Some(v) = v.as_str() else {
                        return Err(format!("matchLabels[{k}] must be a string, got {v}"));
                    };
                    requirements.push(Requirement::new(
                        k,
                        Operator::Equals,
                        vec![v.to_string()],
                        None,
                    )?);
                }
            }
            Some(other) => return Err(format!("matchLabels must be an object, got {other}")),
        }
        match obj.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(exprs)) => {
                for expr in exprs {
                    requirements.push(expression_requirement(expr)?);
                }
            }
            Some(other) => return Err(format!("matchExpressions must be an array, got {other}")),
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Converts a plain `map[string]string` selector (Service / ReplicationController
    /// `spec.selector`): every pair must match exactly; an empty map selects everything.
    pub fn from_map(map: &Map<String, Value>) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for (k, v) in map {
            let Some(v) = v.as_str() else {
                return Err(format!("selector[{k}] must be a string, got {v}"));
            };
            requirements.push(Requirement::new(
                k,
                Operator::Equals,
                vec![v.to_string()],
                None,
            )?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Whether the labels satisfy every requirement. The empty selector matches everything, the
    /// `nothing` selector matches nothing.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Matches against `metadata.labels` of an object (absent labels = no labels).
    pub fn matches_object(&self, obj: &Value) -> bool {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        let labels = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new));
        self.matches(labels)
    }

    /// True when the selector does not restrict anything (false for `nothing`).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// True for the selector that matches nothing.
    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

fn expression_requirement(expr: &Value) -> Result<Requirement, String> {
    let key = expr
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("matchExpressions entry has no key: {expr}"))?;
    let op = expr
        .get("operator")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("matchExpressions entry has no operator: {expr}"))?;
    let operator = match op {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => return Err(format!("{other:?} is not a valid label selector operator")),
    };
    let values = match expr.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(vs)) => {
            let mut out = Vec::with_capacity(vs.len());
            for v in vs {
                let Some(s) = v.as_str() else {
                    return Err(format!("matchExpressions values must be strings, got {v}"));
                };
                out.push(s.to_string());
            }
            out
        }
        Some(other) => {
            return Err(format!(
                "matchExpressions values must be an array, got {other}"
            ));
        }
    };
    Requirement::new(key, operator, values, None)
}

// ---- lexer and parser ----

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    End,
    ClosedPar,
    Comma,
    Bang,
    DoubleEquals,
    Equals,
    Greater,
    Ident(String),
    In,
    Less,
    NotEquals,
    NotIn,
    OpenPar,
}

impl Tok {
    fn literal(&self) -> &str {
        match self {
            Tok::End => "",
            Tok::ClosedPar => ")",
            Tok::Comma => ",",
            Tok::Bang => "!",
            Tok::DoubleEquals => "==",
            Tok::Equals => "=",
            Tok::Greater => ">",
            Tok::Ident(s) => s,
            Tok::In => "in",
            Tok::Less => "<",
            Tok::NotEquals => "!=",
            Tok::NotIn => "notin",
            Tok::OpenPar => "(",
        }
    }

    /// In value position `in` / `notin` are plain identifiers.
    fn as_value(&self) -> Tok {
        match self {
            Tok::In | Tok::NotIn => Tok::Ident(self.literal().to_string()),
            other => other.clone(),
        }
    }
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn symbol(s: &str) -> Option<Tok> {
    Some(match s {
        ")" => Tok::ClosedPar,
        "," => Tok::Comma,
        "!" => Tok::Bang,
        "==" => Tok::DoubleEquals,
        "=" => Tok::Equals,
        ">" => Tok::Greater,
        "<" => Tok::Less,
        "!=" => Tok::NotEquals,
        "(" => Tok::OpenPar,
        _ => return None,
    })
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    loop {
        while i < chars.len() && is_ws(chars[i]) {
            i += 1;
        }
        if i >= chars.len() {
            out.push(Tok::End);
            return Ok(out);
        }
        if is_special(chars[i]) {
            // Longest run of special characters that still forms a known symbol.
            let mut buf = String::new();
            let mut last: Option<(Tok, usize)> = None;
            let mut j = i;
            while j < chars.len() && is_special(chars[j]) {
                buf.push(chars[j]);
                if let Some(t) = symbol(&buf) {
                    last = Some((t, j + 1));
                } else if last.is_some() {
                    break;
                }
                j += 1;
            }
            match last {
                Some((t, end)) => {
                    out.push(t);
                    i = end;
                }
                None => return Err(format!("error expected: keyword found '{buf}'")),
            }
        } else {
            let start = i;
            while i < chars.len() && !is_special(chars[i]) && !is_ws(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push(match word.as_str() {
                "in" => Tok::In,
                "notin" => Tok::NotIn,
                _ => Tok::Ident(word),
            });
        }
    }
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Tok {
        self.tokens
            .get(self.pos)
            .map(Tok::as_value)
            .unwrap_or(Tok::End)
    }

    fn peek_op(&self) -> Tok {
        self.tokens.get(self.pos).cloned().unwrap_or(Tok::End)
    }

    fn next(&mut self) -> Tok {
        let t = self.peek();
        self.pos += 1;
        t
    }

    fn next_op(&mut self) -> Tok {
        let t = self.peek_op();
        self.pos += 1;
        t
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut reqs = Vec::new();
        loop {
            match self.peek() {
                Tok::Ident(_) | Tok::Bang => {
                    let r = self
                        .requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    reqs.push(r);
                    match self.next() {
                        Tok::End => return Ok(reqs),
                        Tok::Comma => match self.peek() {
                            Tok::Ident(_) | Tok::Bang => {}
                            t => {
                                return Err(format!(
                                    "found '{}', expected: identifier after ','",
                                    t.literal()
                                ));
                            }
                        },
                        t => {
                            return Err(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                t.literal()
                            ));
                        }
                    }
                }
                Tok::End => return Ok(reqs),
                t => {
                    return Err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        t.literal()
                    ));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let mut negated = false;
        let mut tok = self.next();
        if tok == Tok::Bang {
            negated = true;
            tok = self.next();
        }
        let Tok::Ident(key) = tok else {
            return Err(format!("found '{}', expected: identifier", tok.literal()));
        };
        if let Some(e) = validate_label_key(&key, "<nil>") {
            return Err(e);
        }
        if negated {
            return Requirement::new(&key, Operator::DoesNotExist, Vec::new(), None);
        }
        if matches!(self.peek(), Tok::End | Tok::Comma) {
            return Requirement::new(&key, Operator::Exists, Vec::new(), None);
        }
        let op = match self.next_op() {
            Tok::In => Operator::In,
            Tok::Equals => Operator::Equals,
            Tok::DoubleEquals => Operator::DoubleEquals,
            Tok::Greater => Operator::GreaterThan,
            Tok::Less => Operator::LessThan,
            Tok::NotIn => Operator::NotIn,
            Tok::NotEquals => Operator::NotEquals,
            t => {
                return Err(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    t.literal()
                ));
            }
        };
        let values = match op {
            Operator::In | Operator::NotIn => self.set_values()?,
            _ => self.exact_value()?,
        };
        Requirement::new(&key, op, values, None)
    }

    fn set_values(&mut self) -> Result<Vec<String>, String> {
        let t = self.next();
        if t != Tok::OpenPar {
            return Err(format!("found '{}' expected: '('", t.literal()));
        }
        match self.peek() {
            Tok::ClosedPar => {
                self.next();
                Ok(vec![String::new()])
            }
            Tok::Ident(_) | Tok::Comma => {
                let mut vals: Vec<String> = Vec::new();
                loop {
                    match self.next() {
                        Tok::Ident(v) => {
                            vals.push(v);
                            match self.peek() {
                                Tok::Comma => continue,
                                Tok::ClosedPar => break,
                                t => {
                                    return Err(format!(
                                        "found '{}', expected: ',' or ')'",
                                        t.literal()
                                    ));
                                }
                            }
                        }
                        Tok::Comma => {
                            if vals.is_empty() {
                                vals.push(String::new());
                            }
                            match self.peek() {
                                Tok::ClosedPar => {
                                    vals.push(String::new());
                                    break;
                                }
                                Tok::Comma => {
                                    self.next();
                                    vals.push(String::new());
                                }
                                _ => {}
                            }
                        }
                        t => {
                            return Err(format!(
                                "found '{}', expected: ',', or identifier",
                                t.literal()
                            ));
                        }
                    }
                }
                let t = self.next();
                if t != Tok::ClosedPar {
                    return Err(format!("found '{}', expected: ')'", t.literal()));
                }
                Ok(vals)
            }
            t => Err(format!(
                "found '{}', expected: ',', ')' or identifier",
                t.literal()
            )),
        }
    }

    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        match self.peek() {
            Tok::End | Tok::Comma => Ok(vec![String::new()]),
            _ => match self.next() {
                Tok::Ident(v) => Ok(vec![v]),
                t => Err(format!("found '{}', expected: identifier", t.literal())),
            },
        }
    }
}

// ---- validation (k8s.io/apimachinery/pkg/util/validation wording) ----

fn child(path: Option<&str>, name: &str) -> String {
    match path {
        Some(p) if !p.is_empty() => format!("{p}.{name}"),
        _ => name.to_string(),
    }
}

fn invalid(path: &str, value_repr: &str, detail: &str) -> String {
    format!("{path}: Invalid value: {value_repr}: {detail}")
}

fn aggregate(errs: &[String]) -> String {
    if errs.len() == 1 {
        errs[0].clone()
    } else {
        format!("[{}]", errs.join(", "))
    }
}

fn go_string_slice(values: &[String]) -> String {
    let inner: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[]string{{{}}}", inner.join(", "))
}

fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut out = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{e}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Lowercase RFC 1123 subdomain (without the length check).
fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            match (b.first(), b.last()) {
                (Some(f), Some(l)) => {
                    (f.is_ascii_lowercase() || f.is_ascii_digit())
                        && (l.is_ascii_lowercase() || l.is_ascii_digit())
                        && b.iter()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                }
                _ => false,
            }
        })
}

/// The problems with a label key / qualified name, worded like `validation.IsQualifiedName`.
pub fn qualified_name_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                if prefix.len() > SUBDOMAIN_MAX_LEN {
                    errs.push(format!("prefix part {}", max_len_error(SUBDOMAIN_MAX_LEN)));
                }
                if !is_dns1123_subdomain(prefix) {
                    errs.push(format!(
                        "prefix part {}",
                        regex_error(SUBDOMAIN_ERR, SUBDOMAIN_FMT, &["example.com"])
                    ));
                }
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_ERR,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > NAME_MAX_LEN {
        errs.push(format!("name part {}", max_len_error(NAME_MAX_LEN)));
    }
    if !is_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// The problems with a label value, worded like `validation.IsValidLabelValue`.
pub fn label_value_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > NAME_MAX_LEN {
        errs.push(max_len_error(NAME_MAX_LEN));
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errs.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

fn validate_label_key(key: &str, path: &str) -> Option<String> {
    let errs = qualified_name_errors(key);
    (!errs.is_empty()).then(|| invalid(path, &format!("{key:?}"), &errs.join("; ")))
}

fn validate_label_value(key: &str, value: &str, path: &str) -> Option<String> {
    let errs = label_value_errors(value);
    (!errs.is_empty()).then(|| {
        invalid(
            &format!("{path}[{key}]"),
            &format!("{value:?}"),
            &errs.join("; "),
        )
    })
}

fn label_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// ---- field selectors ----

/// The operator of one field selector term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOperator {
    Equals,
    DoubleEquals,
    NotEquals,
}

/// One `path op value` term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub operator: FieldOperator,
    /// Unescaped value.
    pub value: String,
}

/// A parsed field selector: the AND of its terms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses `"metadata.name=x,status.phase!=Running"`. Errors read like the apiserver's
    /// (`invalid selector: 'x'; can't understand 'x'`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        let mut terms = split_terms(s);
        terms.sort();
        for term in terms {
            if term.is_empty() {
                continue;
            }
            let Some((lhs, operator, rhs)) = split_term(&term) else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                ));
            };
            let value = unescape_field_value(rhs)?;
            requirements.push(FieldRequirement {
                field: lhs.to_string(),
                operator,
                value,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// Whether the object satisfies every term; fields are dotted paths into the object JSON, a
    /// missing field (or JSON null) is the empty string, numbers and booleans compare by their
    /// JSON text.
    pub fn matches(&self, obj: &Value) -> bool {
        self.matches_with(obj, &|o, f| field_text(o, f))
    }

    /// Like `matches`, with the value of each field label read by `value_of` (the resource's
    /// selectable field set, see `field_labels`).
    pub fn matches_with(&self, obj: &Value, value_of: &dyn Fn(&Value, &str) -> String) -> bool {
        self.requirements.iter().all(|r| {
            let have = value_of(obj, &r.field);
            match r.operator {
                FieldOperator::Equals | FieldOperator::DoubleEquals => have == r.value,
                FieldOperator::NotEquals => have != r.value,
            }
        })
    }

    /// True when the selector has no terms.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The terms, sorted.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// The value required by an `=`/`==` term on `field`, if any (lets the store narrow a list by
    /// `metadata.name` / `metadata.namespace`).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator != FieldOperator::NotEquals)
            .map(|r| r.value.as_str())
    }
}

/// The string value of a dotted path in the object (`""` when absent).
pub fn field_text(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for part in path.split('.') {
        match cur {
            Value::Object(m) => match m.get(part) {
                Some(v) => cur = v,
                None => return String::new(),
            },
            Value::Array(a) => match part.parse::<usize>().ok().and_then(|i| a.get(i)) {
                Some(v) => cur = v,
                None => return String::new(),
            },
            _ => return String::new(),
        }
    }
    match cur {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Splits on commas not preceded by an escaping backslash (escapes are kept).
fn split_terms(s: &str) -> Vec<String> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            cur.push(c);
            escaped = true;
        } else if c == ',' {
            terms.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    terms.push(cur);
    terms
}

/// Finds the first operator position (checking `!=`, `==`, `=` at each index).
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, kind) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::DoubleEquals),
            ("=", FieldOperator::Equals),
        ] {
            if rest.starts_with(op) {
                return Some((&term[..i], kind, &term[i + op.len()..]));
            }
        }
    }
    None
}

fn unescape_field_value(s: &str) -> Result<String, String> {
    if !s.contains(['\\', ',', '=']) {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => {
                    return Err(format!(
                        "invalid field selector: invalid escape sequence: \\{e}"
                    ));
                }
                None => return Err("invalid field selector: invalid escape sequence: \\".into()),
            },
            // Upstream formats the rune with %v, i.e. as its code point number.
            ',' | '=' => {
                return Err(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                ));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("parse {s:?}: {e}"))
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s = sel("");
        assert!(s.is_empty());
        assert!(s.matches(&labels(json!({}))));
        assert!(s.matches(&labels(json!({"a": "b"}))));
        assert!(sel("   ").is_empty());
    }

    #[test]
    fn equality_operators() {
        for s in ["a=b", "a==b", " a = b ", "a\t==\tb"] {
            let s = sel(s);
            assert!(!s.is_empty());
            assert!(s.matches(&labels(json!({"a": "b"}))));
            assert!(!s.matches(&labels(json!({"a": "c"}))));
            assert!(!s.matches(&labels(json!({}))));
        }
        let ne = sel("a!=b");
        assert!(!ne.matches(&labels(json!({"a": "b"}))));
        assert!(ne.matches(&labels(json!({"a": "c"}))));
        assert!(ne.matches(&labels(json!({}))));
    }

    #[test]
    fn empty_value_after_equals() {
        let s = sel("a=,b");
        assert_eq!(s.requirements()[0].values, vec![String::new()]);
        assert!(s.matches(&labels(json!({"a": "", "b": "x"}))));
        assert!(!s.matches(&labels(json!({"a": "y", "b": "x"}))));
    }

    #[test]
    fn set_operators() {
        let s = sel("env in (prod, staging),tier notin (web)");
        assert!(s.matches(&labels(json!({"env": "prod"}))));
        assert!(s.matches(&labels(json!({"env": "staging", "tier": "db"}))));
        assert!(!s.matches(&labels(json!({"env": "prod", "tier": "web"}))));
        assert!(!s.matches(&labels(json!({"env": "dev"}))));
        assert!(!s.matches(&labels(json!({}))));
        // notin matches an absent key
        assert!(sel("x notin (a)").matches(&labels(json!({}))));
    }

    #[test]
    fn in_and_notin_are_values_inside_parens() {
        let s = sel("value in (in,notin)");
        assert_eq!(s.requirements()[0].values, vec!["in", "notin"]);
        assert!(s.matches(&labels(json!({"value": "notin"}))));
    }

    #[test]
    fn empty_values_in_sets() {
        assert_eq!(sel("x in ()").requirements()[0].values, vec![""]);
        assert_eq!(
            sel("x in (foo,,baz)").requirements()[0].values,
            vec!["", "baz", "foo"]
        );
        assert_eq!(sel("x in (,a)").requirements()[0].values, vec!["", "a"]);
        assert_eq!(sel("x in (a,)").requirements()[0].values, vec!["", "a"]);
    }

    #[test]
    fn exists_and_not_exists() {
        let s = sel("a,!b");
        assert!(s.matches(&labels(json!({"a": "1"}))));
        assert!(!s.matches(&labels(json!({"a": "1", "b": "2"}))));
        assert!(!s.matches(&labels(json!({"b": "2"}))));
        assert_eq!(s.requirements()[0].operator, Operator::Exists);
        assert_eq!(s.requirements()[1].operator, Operator::DoesNotExist);
        assert!(sel("! b").matches(&labels(json!({}))));
    }

    #[test]
    fn greater_and_less_than() {
        let s = sel("n>3,m<10");
        assert!(s.matches(&labels(json!({"n": "4", "m": "9"}))));
        assert!(!s.matches(&labels(json!({"n": "3", "m": "9"}))));
        assert!(!s.matches(&labels(json!({"n": "x", "m": "9"}))));
        let err = LabelSelector::parse("n>x").unwrap_err();
        assert!(err.contains("the value must be an integer"), "{err}");
    }

    #[test]
    fn prefixed_keys() {
        let s = sel("app.kubernetes.io/name=hypersync,hypersync.io/pool in (a)");
        assert!(s.matches(&labels(
            json!({"app.kubernetes.io/name": "hypersync", "hypersync.io/pool": "a"})
        )));
        assert_eq!(
            s.to_string(),
            "app.kubernetes.io/name=hypersync,hypersync.io/pool in (a)"
        );
    }

    #[test]
    fn display_is_sorted_by_key() {
        assert_eq!(sel("z=1,a in (y,x),!m").to_string(), "a in (x,y),!m,z=1");
    }

    #[test]
    fn invalid_key_message_matches_upstream() {
        let err = LabelSelector::parse("a b=c").unwrap_err();
        assert_eq!(
            err,
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
        let err = LabelSelector::parse("-a=b").unwrap_err();
        assert_eq!(
            err,
            "unable to parse requirement: <nil>: Invalid value: \"-a\": name part must consist of \
             alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric \
             character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is \
             '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        );
        let err = LabelSelector::parse("Example.com/a=b").unwrap_err();
        assert!(
            err.contains("prefix part a lowercase RFC 1123 subdomain"),
            "{err}"
        );
        let err = LabelSelector::parse("a/b/c").unwrap_err();
        assert!(err.contains("a qualified name must consist of"), "{err}");
        let long = "k".repeat(64);
        let err = LabelSelector::parse(&long).unwrap_err();
        assert!(
            err.contains("name part must be no more than 63 characters"),
            "{err}"
        );
        let err = LabelSelector::parse("/a").unwrap_err();
        assert!(err.contains("prefix part must be non-empty"), "{err}");
    }

    #[test]
    fn invalid_value_message_matches_upstream() {
        let err = LabelSelector::parse("app=-bad").unwrap_err();
        assert_eq!(
            err,
            "unable to parse requirement: values[0][app]: Invalid value: \"-bad\": a valid label must \
             be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must \
             start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or \
             '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        );
        let long = "v".repeat(64);
        let err = LabelSelector::parse(&format!("a in (x,{long})")).unwrap_err();
        assert!(err.contains("values[1][a]"), "{err}");
        assert!(err.contains("must be no more than 63 characters"), "{err}");
        assert!(LabelSelector::parse(&format!("a={}", "v".repeat(63))).is_ok());
    }

    #[test]
    fn syntax_errors() {
        let cases = [
            ("a=b,", "found '', expected: identifier after ','"),
            ("a=b c", "found 'c', expected: ',' or 'end of string'"),
            (
                ",a",
                "found ',', expected: !, identifier, or 'end of string'",
            ),
            (
                "a in b",
                "unable to parse requirement: found 'b' expected: '('",
            ),
            (
                "a in (b",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            (
                "a=(",
                "unable to parse requirement: found '(', expected: identifier",
            ),
            (
                "!=a",
                "found '!=', expected: !, identifier, or 'end of string'",
            ),
            (
                "! =a",
                "unable to parse requirement: found '=', expected: identifier",
            ),
            ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ];
        for (input, want) in cases {
            assert_eq!(
                LabelSelector::parse(input).unwrap_err(),
                want,
                "input {input:?}"
            );
        }
        assert!(LabelSelector::parse("a=>b").is_err());
        assert!(LabelSelector::parse("a!!b").is_err());
    }

    #[test]
    fn from_object_match_labels_and_expressions() {
        let s = LabelSelector::from_object(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["fe", "be"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "Exists"},
                {"key": "env", "operator": "NotIn", "values": ["dev"]}
            ]
        }))
        .unwrap();
        assert!(s.matches(&labels(json!({"app": "web", "tier": "fe", "zone": "a"}))));
        assert!(!s.matches(&labels(json!({"app": "web", "tier": "fe"}))));
        assert!(!s.matches(&labels(
            json!({"app": "web", "tier": "fe", "zone": "a", "canary": "1"})
        )));
        assert!(!s.matches(&labels(
            json!({"app": "web", "tier": "fe", "zone": "a", "env": "dev"})
        )));
        assert!(!s.matches(&labels(json!({"app": "api", "tier": "fe", "zone": "a"}))));
    }

    #[test]
    fn from_object_empty_and_null() {
        let all = LabelSelector::from_object(&json!({})).unwrap();
        assert!(all.is_empty());
        assert!(all.matches(&labels(json!({"x": "y"}))));
        let none = LabelSelector::from_object(&Value::Null).unwrap();
        assert!(!none.is_empty());
        assert!(none.is_nothing());
        assert!(!none.matches(&labels(json!({}))));
    }

    #[test]
    fn from_object_errors() {
        let err = LabelSelector::from_object(&json!({"matchExpressions": [
            {"key": "a", "operator": "Gt", "values": ["1"]}
        ]}))
        .unwrap_err();
        assert_eq!(err, "\"Gt\" is not a valid label selector operator");
        let err = LabelSelector::from_object(&json!({"matchExpressions": [
            {"key": "a", "operator": "In", "values": []}
        ]}))
        .unwrap_err();
        assert_eq!(
            err,
            "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty"
        );
        let err = LabelSelector::from_object(&json!({"matchExpressions": [
            {"key": "a", "operator": "Exists", "values": ["x"]}
        ]}))
        .unwrap_err();
        assert!(err.contains("values set must be empty"), "{err}");
        let err = LabelSelector::from_object(&json!({"matchLabels": {"a b": "c"}})).unwrap_err();
        assert!(err.starts_with("key: Invalid value: \"a b\""), "{err}");
        assert!(LabelSelector::from_object(&json!({"matchLabels": {"a": 1}})).is_err());
        assert!(LabelSelector::from_object(&json!("a=b")).is_err());
    }

    #[test]
    fn from_map_and_matches_object() {
        let s = LabelSelector::from_map(&labels(json!({"app": "web"}))).unwrap();
        assert!(s.matches_object(&json!({"metadata": {"labels": {"app": "web", "x": "y"}}})));
        assert!(!s.matches_object(&json!({"metadata": {}})));
        assert!(LabelSelector::from_map(&Map::new()).unwrap().is_empty());
    }

    #[test]
    fn field_selector_basic() {
        let pod = json!({
            "metadata": {"name": "p1", "namespace": "ns"},
            "spec": {"nodeName": "node-a"},
            "status": {"phase": "Running"}
        });
        let f = FieldSelector::parse("metadata.name=p1,status.phase!=Pending").unwrap();
        assert!(f.matches(&pod));
        assert!(
            FieldSelector::parse("spec.nodeName==node-a")
                .unwrap()
                .matches(&pod)
        );
        assert!(
            !FieldSelector::parse("spec.nodeName=node-b")
                .unwrap()
                .matches(&pod)
        );
        assert!(
            !FieldSelector::parse("metadata.namespace!=ns")
                .unwrap()
                .matches(&pod)
        );
        assert_eq!(
            FieldSelector::parse("metadata.name=p1")
                .unwrap()
                .requires_exact_match("metadata.name"),
            Some("p1")
        );
    }

    #[test]
    fn field_selector_missing_field_is_empty_string() {
        let pod = json!({"metadata": {"name": "p1"}, "spec": {}});
        assert!(
            FieldSelector::parse("spec.nodeName=")
                .unwrap()
                .matches(&pod)
        );
        assert!(
            !FieldSelector::parse("spec.nodeName!=")
                .unwrap()
                .matches(&pod)
        );
        let scheduled = json!({"spec": {"nodeName": "n"}});
        assert!(
            FieldSelector::parse("spec.nodeName!=")
                .unwrap()
                .matches(&scheduled)
        );
    }

    #[test]
    fn field_selector_events_and_non_strings() {
        let ev = json!({"involvedObject": {"name": "x", "kind": "Pod"}, "count": 3, "flag": true});
        assert!(
            FieldSelector::parse("involvedObject.name=x,involvedObject.kind=Pod")
                .unwrap()
                .matches(&ev)
        );
        assert!(
            FieldSelector::parse("count=3,flag=true")
                .unwrap()
                .matches(&ev)
        );
    }

    #[test]
    fn field_selector_escapes_and_errors() {
        let obj = json!({"metadata": {"name": "a,b=c"}});
        let f = FieldSelector::parse(r"metadata.name=a\,b\=c").unwrap();
        assert_eq!(f.requirements()[0].value, "a,b=c");
        assert!(f.matches(&obj));
        assert_eq!(
            FieldSelector::parse("metadata.name").unwrap_err(),
            "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
        );
        assert_eq!(
            FieldSelector::parse(r"a=\x").unwrap_err(),
            r"invalid field selector: invalid escape sequence: \x"
        );
        assert_eq!(
            FieldSelector::parse("a=b=c").unwrap_err(),
            "invalid field selector: unescaped character in value: 61"
        );
        assert!(FieldSelector::parse("").unwrap().is_empty());
        assert!(FieldSelector::parse("").unwrap().matches(&obj));
    }
}

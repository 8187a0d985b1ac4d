//! The JSONPath subset used by printer columns: fields, `['quoted']` keys, indexes, `[*]` and `[?(@.a=="b")]` filters.

use serde_json::Value;

/// One step of a parsed path.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Wildcard,
    Filter(Filter),
}

#[derive(Clone, Debug, PartialEq)]
struct Filter {
    left: Vec<String>,
    cmp: Option<(Cmp, Value)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed JSONPath expression such as `.status.conditions[?(@.type=="Ready")].status`.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parses a path; surrounding `{...}` (kubectl template form) is accepted.
    pub fn parse(src: &str) -> Result<JsonPath, String> {
        let mut s = src.trim();
        if let Some(inner) = s.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
            s = inner.trim();
        }
        if let Some(rest) = s.strip_prefix('$') {
            s = rest;
        }
        let chars: Vec<char> = s.chars().collect();
        let mut i = 0;
        let mut steps = Vec::new();
        while i < chars.len() {
            match chars[i] {
                '.' => {
                    i += 1;
                    let (name, next) = read_field(&chars, i);
                    if name.is_empty() {
                        return Err(format!(
                            "failed to parse jsonpath {src:?}: empty field name at {i}"
                        ));
                    }
                    steps.push(if name == "*" {
                        Step::Wildcard
                    } else {
                        Step::Field(name)
                    });
                    i = next;
                }
                '[' => {
                    let close = find_bracket_end(&chars, i)
                        .ok_or_else(|| format!("failed to parse jsonpath {src:?}: unclosed '['"))?;
                    let inner: String = chars[i + 1..close].iter().collect();
                    steps.push(
                        parse_bracket(inner.trim())
                            .map_err(|e| format!("failed to parse jsonpath {src:?}: {e}"))?,
                    );
                    i = close + 1;
                }
                c => {
                    return Err(format!(
                        "failed to parse jsonpath {src:?}: unexpected {c:?} at {i}"
                    ));
                }
            }
        }
        Ok(JsonPath { steps })
    }

    /// All values the path selects in `root`, in document order.
    pub fn find<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let mut cur = vec![root];
        for step in &self.steps {
            let mut next = Vec::new();
            for v in cur {
                match step {
                    Step::Field(name) => {
                        if let Some(x) = v.get(name.as_str()) {
                            next.push(x);
                        }
                    }
                    Step::Index(i) => {
                        if let Some(arr) = v.as_array() {
                            let idx = if *i < 0 { arr.len() as i64 + i } else { *i };
                            if let Some(x) = usize::try_from(idx).ok().and_then(|u| arr.get(u)) {
                                next.push(x);
                            }
                        }
                    }
                    Step::Wildcard => match v {
                        Value::Array(a) => next.extend(a.iter()),
                        Value::Object(m) => next.extend(m.values()),
                        _ => {}
                    },
                    Step::Filter(f) => {
                        if let Some(arr) = v.as_array() {
                            next.extend(arr.iter().filter(|x| f.matches(x)));
                        }
                    }
                }
            }
            cur = next;
        }
        cur
    }
}

impl Filter {
    fn matches(&self, item: &Value) -> bool {
        let mut cur = Some(item);
        for f in &self.left {
            cur = cur.and_then(|c| c.get(f.as_str()));
        }
        match (&self.cmp, cur) {
            (None, found) => found.is_some(),
            (Some(_), None) => false,
            (Some((cmp, rhs)), Some(lhs)) => match (lhs.as_f64(), rhs.as_f64()) {
                (Some(a), Some(b)) => match cmp {
                    Cmp::Eq => a == b,
                    Cmp::Ne => a != b,
                    Cmp::Lt => a < b,
                    Cmp::Le => a <= b,
                    Cmp::Gt => a > b,
                    Cmp::Ge => a >= b,
                },
                _ => match cmp {
                    Cmp::Eq => lhs == rhs,
                    Cmp::Ne => lhs != rhs,
                    _ => match (lhs.as_str(), rhs.as_str()) {
                        (Some(a), Some(b)) => match cmp {
                            Cmp::Lt => a < b,
                            Cmp::Le => a <= b,
                            Cmp::Gt => a > b,
                            _ => a >= b,
                        },
                        _ => false,
                    },
                },
            },
        }
    }
}

/// Reads a dotted field name, honouring `\.` escapes; stops at `.` or `[`.
fn read_field(chars: &[char], mut i: usize) -> (String, usize) {
    let mut name = String::new();
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() => {
                name.push(chars[i + 1]);
                i += 2;
            }
            '.' | '[' => break,
            c => {
                name.push(c);
                i += 1;
            }
        }
    }
    (name, i)
}

fn find_bracket_end(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (j, &c) in chars.iter().enumerate().skip(open) {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' => quote = Some(c),
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(j);
                    }
                }
                _ => {}
            },
        }
    }
    None
}

fn unquote(s: &str) -> Option<String> {
    let s = s.trim();
    if s.len() >= 2
        && ((s.starts_with('\'') && s.ends_with('\'')) || (s.starts_with('"') && s.ends_with('"')))
    {
        Some(s[1..s.len() - 1].to_string())
    } else {
        None
    }
}

fn parse_bracket(inner: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::Wildcard);
    }
    if let Some(key) = unquote(inner) {
        return Ok(Step::Field(key));
    }
    if let Ok(i) = inner.parse::<i64>() {
        return Ok(Step::Index(i));
    }
    if let Some(f) = inner.strip_prefix("?(").and_then(|x| x.strip_suffix(')')) {
        return parse_filter(f.trim()).map(Step::Filter);
    }
    Err(format!("unsupported bracket expression [{inner}]"))
}

fn parse_filter(f: &str) -> Result<Filter, String> {
    let ops = [
        ("==", Cmp::Eq),
        ("!=", Cmp::Ne),
        ("<=", Cmp::Le),
        (">=", Cmp::Ge),
        ("<", Cmp::Lt),
        (">", Cmp::Gt),
    ];
    let mut split = None;
    for (tok, cmp) in ops {
        if let Some(pos) = f.find(tok) {
            split = Some((pos, tok.len(), cmp));
            break;
        }
    }
    let (lhs, cmp) = match split {
        Some((pos, len, cmp)) => {
            let rhs = f[pos + len..].trim();
            let value = match unquote(rhs) {
                Some(s) => Value::String(s),
                None => serde_json::from_str::<Value>(rhs)
                    .map_err(|_| format!("unsupported filter value {rhs:?}"))?,
            };
            (f[..pos].trim(), Some((cmp, value)))
        }
        None => (f, None),
    };
    let rest = lhs
        .strip_prefix('@')
        .ok_or_else(|| format!("filter must start with @: {f:?}"))?;
    let mut left = Vec::new();
    let chars: Vec<char> = rest.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                let (name, next) = read_field(&chars, i + 1);
                left.push(name);
                i = next;
            }
            '[' => {
                let close = find_bracket_end(&chars, i).ok_or("unclosed '[' in filter")?;
                let inner: String = chars[i + 1..close].iter().collect();
                left.push(unquote(&inner).ok_or("unsupported filter path")?);
                i = close + 1;
            }
            _ => return Err(format!("unsupported filter path {lhs:?}")),
        }
    }
    Ok(Filter { left, cmp })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        let o = json!({
            "metadata": {"name": "a", "labels": {"app.kubernetes.io/name": "x"}},
            "spec": {"containers": [{"image": "i0"}, {"image": "i1"}]},
            "status": {"conditions": [
                {"type": "Progressing", "status": "True"},
                {"type": "Ready", "status": "False", "observedGeneration": 3}
            ]}
        });
        let one = |p: &str| {
            JsonPath::parse(p)
                .expect("parses")
                .find(&o)
                .first()
                .map(|v| (*v).clone())
        };
        assert_eq!(one(".metadata.name"), Some(json!("a")));
        assert_eq!(one("{.metadata.name}"), Some(json!("a")));
        assert_eq!(
            one(".status.conditions[?(@.type==\"Ready\")].status"),
            Some(json!("False"))
        );
        assert_eq!(
            one(".status.conditions[?(@.type=='Ready')].observedGeneration"),
            Some(json!(3))
        );
        assert_eq!(
            one(".status.conditions[?(@.observedGeneration>2)].type"),
            Some(json!("Ready"))
        );
        assert_eq!(one(".spec.containers[1].image"), Some(json!("i1")));
        assert_eq!(one(".spec.containers[-1].image"), Some(json!("i1")));
        assert_eq!(
            one(".metadata.labels['app.kubernetes.io/name']"),
            Some(json!("x"))
        );
        assert_eq!(
            one(".metadata.labels.app\\.kubernetes\\.io/name"),
            Some(json!("x"))
        );
        assert_eq!(one(".spec.missing"), None);
        let all = JsonPath::parse(".spec.containers[*].image").expect("parses");
        assert_eq!(all.find(&o).len(), 2);
        assert!(JsonPath::parse(".spec[").is_err());
        assert!(JsonPath::parse("spec").is_err());
    }
}

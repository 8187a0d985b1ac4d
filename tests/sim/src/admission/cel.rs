//! CEL for admission policies: JSON to CEL values, compiled expressions, and the activation
//! (`object`, `oldObject`, `request`, `params`, `namespaceObject`, `variables`) they run against,
//! with the Kubernetes CEL libraries from kube-cel registered.

use kube_cel::KubeCelExt;
use kube_cel::cel::objects::{Key, Map as CelMap};
use kube_cel::cel::{Context, Program, Value as Cel};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// A JSON value as CEL sees it: integers are `int` (`uint` only beyond `i64`), objects are maps
/// with string keys.
pub fn to_cel(v: &Value) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Cel::Int(i)
            } else if let Some(u) = n.as_u64() {
                Cel::UInt(u)
            } else {
                Cel::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(a) => Cel::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(m) => map_of(m.iter().map(|(k, v)| (k.as_str(), to_cel(v)))),
    }
}

/// A CEL map from string keys.
pub fn map_of<'a>(entries: impl IntoIterator<Item = (&'a str, Cel)>) -> Cel {
    let map: HashMap<Key, Cel> = entries
        .into_iter()
        .map(|(k, v)| (Key::String(Arc::new(k.to_string())), v))
        .collect();
    Cel::Map(CelMap { map: Arc::new(map) })
}

/// A compiled expression and its source.
#[derive(Debug)]
pub struct Expr {
    pub source: String,
    program: Program,
}

/// Compiles an expression; the error is the parser's message.
pub fn compile(source: &str) -> Result<Expr, String> {
    Program::compile(source)
        .map(|program| Expr {
            source: source.to_string(),
            program,
        })
        .map_err(|e| e.to_string().trim().to_string())
}

/// The variables an admission expression runs against.
pub struct Activation {
    ctx: Context<'static>,
    variables: Vec<(String, Cel)>,
}

impl Activation {
    /// `object` and `oldObject` are `null` when absent (DELETE has no object, CREATE no oldObject);
    /// `params` and `namespaceObject` are bound only when given.
    pub fn new(
        object: Option<&Value>,
        old_object: Option<&Value>,
        request: Cel,
        params: Option<&Value>,
        namespace_object: Option<&Value>,
    ) -> Self {
        let mut ctx = Context::default();
        ctx.register_all();
        let or_null = |v: Option<&Value>| v.map(to_cel).unwrap_or(Cel::Null);
        ctx.add_variable_from_value("object", or_null(object));
        ctx.add_variable_from_value("oldObject", or_null(old_object));
        ctx.add_variable_from_value("request", request);
        if let Some(p) = params {
            ctx.add_variable_from_value("params", to_cel(p));
        }
        if let Some(ns) = namespace_object {
            ctx.add_variable_from_value("namespaceObject", to_cel(ns));
        }
        let mut a = Activation {
            ctx,
            variables: Vec::new(),
        };
        a.bind_variables();
        a
    }

    fn bind_variables(&mut self) {
        let vars = map_of(self.variables.iter().map(|(k, v)| (k.as_str(), v.clone())));
        self.ctx.add_variable_from_value("variables", vars);
    }

    /// Evaluates `expr` and adds its value as `variables.<name>`; an error leaves the variable
    /// unbound (so expressions using it fail) and is returned.
    pub fn define(&mut self, name: &str, expr: &Expr) -> Result<(), String> {
        let v = self.eval(expr)?;
        self.variables.push((name.to_string(), v));
        self.bind_variables();
        Ok(())
    }

    /// The value of `expr`; the error is the interpreter's message.
    pub fn eval(&self, expr: &Expr) -> Result<Cel, String> {
        expr.program
            .execute(&self.ctx)
            .map_err(|e| e.to_string().trim().to_string())
    }

    /// `expr` as a boolean; any other result is an error naming its type.
    pub fn eval_bool(&self, expr: &Expr) -> Result<bool, String> {
        match self.eval(expr)? {
            Cel::Bool(b) => Ok(b),
            other => Err(format!("expected a bool, got {}", other.type_of())),
        }
    }

    /// `expr` as a string (for `messageExpression`).
    pub fn eval_string(&self, expr: &Expr) -> Result<String, String> {
        match self.eval(expr)? {
            Cel::String(s) => Ok((*s).clone()),
            other => Err(format!("expected a string, got {}", other.type_of())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn act(object: Value, old: Option<Value>) -> Activation {
        let request = map_of([
            ("operation", Cel::String(Arc::new("UPDATE".into()))),
            ("namespace", Cel::String(Arc::new("ai".into()))),
        ]);
        Activation::new(Some(&object), old.as_ref(), request, None, None)
    }

    fn eval(a: &Activation, src: &str) -> Result<Cel, String> {
        a.eval(&compile(src)?)
    }

    #[test]
    fn json_numbers_are_ints_and_floats() {
        let a = act(json!({"n": 3, "f": 1.5, "big": u64::MAX}), None);
        assert_eq!(eval(&a, "object.n + 1 == 4"), Ok(Cel::Bool(true)));
        assert_eq!(eval(&a, "object.f > 1.0"), Ok(Cel::Bool(true)));
        assert_eq!(
            eval(&a, "object.big == 18446744073709551615u"),
            Ok(Cel::Bool(true))
        );
    }

    #[test]
    fn old_object_is_null_without_one() {
        let a = act(json!({}), None);
        assert_eq!(eval(&a, "oldObject == null"), Ok(Cel::Bool(true)));
        assert_eq!(
            eval(&a, "request.namespace"),
            Ok(Cel::String(Arc::new("ai".into())))
        );
    }

    #[test]
    fn the_constructs_policies_use_are_supported() {
        let a = act(
            json!({"metadata": {"name": "scout.1"}, "status": {"a": 1, "b": [1, 2], "objective": {"observed": 2.0}}}),
            Some(json!({"status": {"a": 1, "b": [1], "c": "x"}})),
        );
        let cases = [
            ("has(object.status.objective)", true),
            ("!has(oldObject.status.objective)", true),
            ("'a' in object.status && !('c' in object.status)", true),
            (
                "object.status.filter(k, k != 'objective').size() == 2",
                true,
            ),
            // Map iteration order is unspecified (as in Kubernetes): compare as sets.
            (
                "object.status.filter(k, !(k in oldObject.status) || oldObject.status[k] != object.status[k]).all(k, k in ['b', 'objective']) && object.status.filter(k, !(k in oldObject.status) || oldObject.status[k] != object.status[k]).size() == 2",
                true,
            ),
            (
                "['x', 'y'].map(k, 'status.' + k).join(', ') == 'status.x, status.y'",
                true,
            ),
            ("object.metadata.name.replace('.', '-') == 'scout-1'", true),
            ("object.metadata.name.substring(0, 5) == 'scout'", true),
            ("object.metadata.name.matches('^[a-z][a-z.0-9]*$')", true),
            ("[1] + [2] == [1, 2]", true),
            ("object.status.a == 1 ? true : false", true),
            ("{'a': 1} == {'a': 1}", true),
            ("'abc'.endsWith('c') && 'abc'.startsWith('a')", true),
        ];
        for (src, want) in cases {
            assert_eq!(eval(&a, src), Ok(Cel::Bool(want)), "{src}");
        }
    }

    #[test]
    fn variables_see_earlier_variables() {
        let mut a = act(json!({"spec": {"replicas": 3}}), None);
        a.define("r", &compile("object.spec.replicas").unwrap())
            .unwrap();
        a.define("double", &compile("variables.r * 2").unwrap())
            .unwrap();
        assert_eq!(eval(&a, "variables.double == 6"), Ok(Cel::Bool(true)));
        assert!(a.define("bad", &compile("object.nope.x").unwrap()).is_err());
        assert!(eval(&a, "variables.bad").is_err());
    }

    #[test]
    fn non_boolean_results_and_parse_errors_are_errors() {
        let a = act(json!({}), None);
        let e = a.eval_bool(&compile("1 + 1").unwrap()).unwrap_err();
        assert!(e.contains("int"), "{e}");
        assert!(compile("object.(").is_err());
    }
}

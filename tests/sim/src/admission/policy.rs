//! ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding objects: the checks the apiserver
//! runs when they are written (required fields, enums, CEL that compiles), and the compiled form the
//! admission chain evaluates, cached per object uid and resourceVersion.

use super::cel::{Expr, compile};
use crate::schema::{BadValue, FieldError, FieldErrorKind};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

pub const GROUP: &str = "admissionregistration.k8s.io";
pub const POLICY_TABLE: &str = "admissionregistration.k8s.io/validatingadmissionpolicies";
pub const BINDING_TABLE: &str = "admissionregistration.k8s.io/validatingadmissionpolicybindings";
pub const POLICY_KIND: &str = "ValidatingAdmissionPolicy";
pub const BINDING_KIND: &str = "ValidatingAdmissionPolicyBinding";

const OPERATIONS: &[&str] = &["CREATE", "UPDATE", "DELETE", "CONNECT", "*"];
const REASONS: &[&str] = &[
    "Unauthorized",
    "Forbidden",
    "Invalid",
    "RequestEntityTooLarge",
];
const ACTIONS: &[&str] = &["Deny", "Warn", "Audit"];

/// One entry of `spec.validations`.
#[derive(Debug)]
pub struct Validation {
    pub expr: Result<Expr, String>,
    pub message: Option<String>,
    pub message_expr: Option<Result<Expr, String>>,
    /// `Invalid` unless set.
    pub reason: String,
}

/// A policy ready to evaluate.
#[derive(Debug)]
pub struct Policy {
    pub name: String,
    /// `failurePolicy: Fail` (the default): errors deny; `Ignore`: errors are skipped.
    pub fail_closed: bool,
    pub match_constraints: Value,
    /// `(apiVersion, kind)` of `spec.paramKind`.
    pub param_kind: Option<(String, String)>,
    pub match_conditions: Vec<(String, Result<Expr, String>)>,
    pub variables: Vec<(String, Result<Expr, String>)>,
    pub validations: Vec<Validation>,
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn compile_at(src: &str) -> Result<Expr, String> {
    compile(src).map_err(|e| format!("compilation failed: {e}"))
}

impl Policy {
    /// The compiled form of a stored policy object (expressions that do not compile are kept as
    /// errors; `definition_errors` refuses them on write).
    pub fn from_object(obj: &Value) -> Policy {
        let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
        let named = |key: &str| -> Vec<(String, Result<Expr, String>)> {
            items(&spec, key)
                .iter()
                .map(|c| {
                    (
                        text(c, "name").unwrap_or_default(),
                        compile_at(&text(c, "expression").unwrap_or_default()),
                    )
                })
                .collect()
        };
        Policy {
            name: crate::store::obj_name(obj).to_string(),
            fail_closed: spec.get("failurePolicy").and_then(Value::as_str) != Some("Ignore"),
            match_constraints: spec.get("matchConstraints").cloned().unwrap_or(json!({})),
            param_kind: spec.get("paramKind").map(|p| {
                (
                    text(p, "apiVersion").unwrap_or_default(),
                    text(p, "kind").unwrap_or_default(),
                )
            }),
            match_conditions: named("matchConditions"),
            variables: named("variables"),
            validations: items(&spec, "validations")
                .iter()
                .map(|v| Validation {
                    expr: compile_at(&text(v, "expression").unwrap_or_default()),
                    message: text(v, "message"),
                    message_expr: text(v, "messageExpression").map(|m| compile_at(&m)),
                    reason: text(v, "reason").unwrap_or_else(|| "Invalid".into()),
                })
                .collect(),
        }
    }
}

/// The compiled policy for a stored object, built once per (uid, resourceVersion).
pub fn compiled(obj: &Value) -> Arc<Policy> {
    type Cache = Mutex<HashMap<(String, u64), Arc<Policy>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let key = (
        crate::store::uid_of(obj).to_string(),
        crate::store::rv_of(obj),
    );
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = c.get(&key) {
        return p.clone();
    }
    if c.len() > 512 {
        c.clear();
    }
    let p = Arc::new(Policy::from_object(obj));
    c.insert(key, p.clone());
    p
}

fn unsupported(field: String, value: &str, allowed: &[&str]) -> FieldError {
    let list: Vec<String> = allowed
        .iter()
        .filter(|a| **a != "*")
        .map(|a| format!("\"{a}\""))
        .collect();
    FieldError {
        field,
        kind: FieldErrorKind::NotSupported,
        message: format!("supported values: {}", list.join(", ")),
        value: BadValue::Json(json!(value)),
    }
}

fn check_expression(field: String, v: &Value, key: &str, errs: &mut Vec<FieldError>) {
    match v.get(key).and_then(Value::as_str) {
        None | Some("") if key == "expression" => {
            errs.push(FieldError::required(format!("{field}.{key}"), ""))
        }
        None => {}
        Some(src) => {
            if let Err(e) = compile_at(src) {
                errs.push(FieldError::invalid(format!("{field}.{key}"), json!(src), e));
            }
        }
    }
}

fn check_rules(field: &str, rules: &[Value], errs: &mut Vec<FieldError>) {
    for (i, r) in rules.iter().enumerate() {
        let at = format!("{field}[{i}]");
        for key in ["apiGroups", "apiVersions", "resources", "operations"] {
            if items(r, key).is_empty() {
                errs.push(FieldError::required(format!("{at}.{key}"), ""));
            }
        }
        for (j, op) in items(r, "operations").iter().enumerate() {
            let op = op.as_str().unwrap_or("");
            if !OPERATIONS.contains(&op) {
                errs.push(unsupported(format!("{at}.operations[{j}]"), op, OPERATIONS));
            }
        }
        if let Some(scope) = r.get("scope").and_then(Value::as_str)
            && !["Cluster", "Namespaced", "*"].contains(&scope)
        {
            errs.push(unsupported(
                format!("{at}.scope"),
                scope,
                &["Cluster", "Namespaced", "*"],
            ));
        }
    }
}

fn check_named_list(field: &str, list: &[Value], errs: &mut Vec<FieldError>) {
    let mut seen: Vec<&str> = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let at = format!("{field}[{i}]");
        match c.get("name").and_then(Value::as_str) {
            None | Some("") => errs.push(FieldError::required(format!("{at}.name"), "")),
            Some(n) => {
                if seen.contains(&n) {
                    errs.push(FieldError {
                        field: format!("{at}.name"),
                        kind: FieldErrorKind::Duplicate,
                        message: String::new(),
                        value: BadValue::Json(json!(n)),
                    });
                }
                seen.push(n);
            }
        }
        check_expression(at, c, "expression", errs);
    }
}

/// What the apiserver refuses in a ValidatingAdmissionPolicy (an empty list when it is valid).
pub fn policy_errors(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    if let Some(fp) = spec.get("failurePolicy").and_then(Value::as_str)
        && !["Fail", "Ignore"].contains(&fp)
    {
        errs.push(unsupported(
            "spec.failurePolicy".into(),
            fp,
            &["Fail", "Ignore"],
        ));
    }
    match spec.get("matchConstraints") {
        None | Some(Value::Null) => {
            errs.push(FieldError::required("spec.matchConstraints", ""));
        }
        Some(mc) => {
            let rules = items(mc, "resourceRules");
            if rules.is_empty() {
                errs.push(FieldError::required(
                    "spec.matchConstraints.resourceRules",
                    "",
                ));
            }
            check_rules("spec.matchConstraints.resourceRules", rules, &mut errs);
            check_rules(
                "spec.matchConstraints.excludeResourceRules",
                items(mc, "excludeResourceRules"),
                &mut errs,
            );
        }
    }
    if let Some(pk) = spec.get("paramKind") {
        for key in ["apiVersion", "kind"] {
            if text(pk, key).is_none_or(|s| s.is_empty()) {
                errs.push(FieldError::required(format!("spec.paramKind.{key}"), ""));
            }
        }
    }
    check_named_list(
        "spec.matchConditions",
        items(&spec, "matchConditions"),
        &mut errs,
    );
    check_named_list("spec.variables", items(&spec, "variables"), &mut errs);
    let validations = items(&spec, "validations");
    if validations.is_empty() && items(&spec, "auditAnnotations").is_empty() {
        errs.push(FieldError::required(
            "spec.validations",
            "validations or auditAnnotations must contain at least one item",
        ));
    }
    for (i, v) in validations.iter().enumerate() {
        let at = format!("spec.validations[{i}]");
        check_expression(at.clone(), v, "expression", &mut errs);
        check_expression(at.clone(), v, "messageExpression", &mut errs);
        if let Some(r) = v.get("reason").and_then(Value::as_str)
            && !REASONS.contains(&r)
        {
            errs.push(unsupported(format!("{at}.reason"), r, REASONS));
        }
        if let Some(m) = v.get("message").and_then(Value::as_str)
            && m.contains('\n')
        {
            errs.push(FieldError::invalid(
                format!("{at}.message"),
                json!(m),
                "message must not contain line breaks",
            ));
        }
    }
    errs
}

/// What the apiserver refuses in a ValidatingAdmissionPolicyBinding.
pub fn binding_errors(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    if text(&spec, "policyName").is_none_or(|s| s.is_empty()) {
        errs.push(FieldError::required("spec.policyName", ""));
    }
    let actions = items(&spec, "validationActions");
    if actions.is_empty() {
        errs.push(FieldError::required("spec.validationActions", ""));
    }
    let names: Vec<&str> = actions.iter().filter_map(Value::as_str).collect();
    for (i, a) in names.iter().enumerate() {
        if !ACTIONS.contains(a) {
            errs.push(unsupported(
                format!("spec.validationActions[{i}]"),
                a,
                ACTIONS,
            ));
        } else if names[..i].contains(a) {
            errs.push(FieldError {
                field: format!("spec.validationActions[{i}]"),
                kind: FieldErrorKind::Duplicate,
                message: String::new(),
                value: BadValue::Json(json!(a)),
            });
        }
    }
    if names.contains(&"Deny") && names.contains(&"Warn") {
        errs.push(FieldError {
            field: "spec.validationActions".into(),
            kind: FieldErrorKind::Invalid,
            message: "must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)".into(),
            value: BadValue::Json(json!(names)),
        });
    }
    if let Some(pr) = spec.get("paramRef").filter(|p| !p.is_null()) {
        let has_name = text(pr, "name").is_some_and(|s| !s.is_empty());
        let has_selector = pr.get("selector").is_some_and(|s| !s.is_null());
        if has_name == has_selector {
            errs.push(FieldError {
                field: "spec.paramRef".into(),
                kind: FieldErrorKind::Forbidden,
                message: "one of name or selector must be specified".into(),
                value: BadValue::Omit,
            });
        }
        match pr.get("parameterNotFoundAction").and_then(Value::as_str) {
            None => errs.push(FieldError::required(
                "spec.paramRef.parameterNotFoundAction",
                "",
            )),
            Some(a) if !["Allow", "Deny"].contains(&a) => errs.push(unsupported(
                "spec.paramRef.parameterNotFoundAction".into(),
                a,
                &["Allow", "Deny"],
            )),
            _ => {}
        }
    }
    if let Some(mr) = spec.get("matchResources").filter(|m| !m.is_null()) {
        check_rules(
            "spec.matchResources.resourceRules",
            items(mr, "resourceRules"),
            &mut errs,
        );
        check_rules(
            "spec.matchResources.excludeResourceRules",
            items(mr, "excludeResourceRules"),
            &mut errs,
        );
    }
    errs
}

/// Defaults the apiserver fills in on write: `failurePolicy: Fail`, `matchPolicy: Equivalent`, empty
/// selectors, rule `scope: "*"`.
pub fn apply_defaults(table: &str, obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let key = if table == POLICY_TABLE {
        spec.entry("failurePolicy").or_insert(json!("Fail"));
        "matchConstraints"
    } else {
        "matchResources"
    };
    let Some(m) = spec.get_mut(key).and_then(Value::as_object_mut) else {
        return;
    };
    m.entry("matchPolicy").or_insert(json!("Equivalent"));
    m.entry("namespaceSelector").or_insert(json!({}));
    m.entry("objectSelector").or_insert(json!({}));
    for list in ["resourceRules", "excludeResourceRules"] {
        if let Some(rules) = m.get_mut(list).and_then(Value::as_array_mut) {
            for r in rules.iter_mut().filter_map(Value::as_object_mut) {
                r.entry("scope").or_insert(json!("*"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "uid": "u1", "resourceVersion": "3"}, "spec": spec})
    }

    fn fields(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn a_complete_policy_is_valid_and_compiles() {
        let p = policy(json!({
            "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["deployments"]}]},
            "matchConditions": [{"name": "m", "expression": "true"}],
            "variables": [{"name": "r", "expression": "object.spec.replicas"}],
            "validations": [{"expression": "variables.r < 5", "messageExpression": "'too many: ' + string(variables.r)", "reason": "Forbidden"}],
        }));
        assert_eq!(fields(&policy_errors(&p)), Vec::<String>::new());
        let c = compiled(&p);
        assert!(c.fail_closed);
        assert_eq!(c.validations[0].reason, "Forbidden");
        assert!(c.validations[0].expr.is_ok());
        assert!(Arc::ptr_eq(&c, &compiled(&p)), "cached per uid and rv");
    }

    #[test]
    fn policy_errors_name_the_field() {
        let p = policy(json!({
            "failurePolicy": "Sometimes",
            "matchConstraints": {"resourceRules": [{"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["PATCH"], "resources": ["*"]}]},
            "matchConditions": [{"name": "a", "expression": "true"}, {"name": "a", "expression": "object.("}],
            "validations": [{"expression": ""}, {"expression": "true", "reason": "Teapot"}],
        }));
        let got = fields(&policy_errors(&p));
        let want = [
            "spec.failurePolicy: Unsupported value: \"Sometimes\": supported values: \"Fail\", \"Ignore\"",
            "spec.matchConstraints.resourceRules[0].operations[0]: Unsupported value: \"PATCH\"",
            "spec.matchConditions[1].name: Duplicate value: \"a\"",
            "spec.matchConditions[1].expression: Invalid value: \"object.(\": compilation failed",
            "spec.validations[0].expression: Required value",
            "spec.validations[1].reason: Unsupported value: \"Teapot\"",
        ];
        for w in want {
            assert!(got.iter().any(|g| g.starts_with(w)), "{w} not in {got:#?}");
        }
        assert_eq!(got.len(), want.len(), "{got:#?}");
        assert!(
            fields(&policy_errors(&policy(json!({}))))
                .contains(&"spec.matchConstraints: Required value".to_string())
        );
    }

    #[test]
    fn binding_errors_name_the_field() {
        let b = json!({"spec": {"validationActions": ["Deny", "Warn", "Nope"], "paramRef": {"name": "x", "selector": {}}}});
        let got = fields(&binding_errors(&b));
        for w in [
            "spec.policyName: Required value",
            "spec.validationActions[2]: Unsupported value: \"Nope\"",
            "spec.validationActions: Invalid value",
            "spec.paramRef: Forbidden: one of name or selector must be specified",
            "spec.paramRef.parameterNotFoundAction: Required value",
        ] {
            assert!(got.iter().any(|g| g.starts_with(w)), "{w} not in {got:#?}");
        }
        let ok = json!({"spec": {"policyName": "p", "validationActions": ["Deny"]}});
        assert!(binding_errors(&ok).is_empty());
    }

    #[test]
    fn defaults_fill_failure_policy_and_rule_scope() {
        let mut p =
            policy(json!({"matchConstraints": {"resourceRules": [{"resources": ["pods"]}]}}));
        apply_defaults(POLICY_TABLE, &mut p);
        assert_eq!(p["spec"]["failurePolicy"], "Fail");
        assert_eq!(p["spec"]["matchConstraints"]["matchPolicy"], "Equivalent");
        assert_eq!(
            p["spec"]["matchConstraints"]["resourceRules"][0]["scope"],
            "*"
        );
        let mut b = json!({"spec": {"policyName": "p"}});
        apply_defaults(BINDING_TABLE, &mut b);
        assert!(b["spec"].get("failurePolicy").is_none());
    }
}

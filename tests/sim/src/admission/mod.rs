//! Validating admission policies (admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy and
//! ValidatingAdmissionPolicyBinding) enforced on writes as the kube-apiserver does: after defaulting
//! and schema validation, before storage, for CREATE, UPDATE (update, patch, apply, status and other
//! subresources) and DELETE made through the HTTP API. Writes by kube-sim's own controllers (data
//! plane, garbage collector, namespace cleanup) carry no user and are not admitted.
//!
//! `evaluate` is pure over a `PolicySource`; `SimState` implements the source over the store and
//! calls `SimState::admit` from the verbs. Not modelled: `auditAnnotations` (kube-sim keeps no audit
//! log; `Audit` actions are logged), the `authorizer` variable, type checking warnings in status.

pub mod bench;
pub mod cel;
pub mod matching;
pub mod policy;

pub use matching::{Operation, RequestAttrs};

use crate::auth::UserInfo;
use crate::selector::LabelSelector;
use crate::server::SimState;
use crate::server::errors::{ApiError, qualified};
use crate::server::registry::ResourceInfo;
use crate::store::ListOptions;
use cel::{Activation, map_of};
use kube_cel::cel::Value as Cel;
use policy::Policy;
use serde_json::{Value, json};
use std::sync::Arc;

/// Where policies, bindings, parameter objects and namespaces come from.
pub trait PolicySource {
    fn policies(&self) -> Vec<Arc<Value>>;
    fn bindings(&self) -> Vec<Arc<Value>>;
    /// Objects of `apiVersion`/`kind` by name or selector (`namespace` for namespaced kinds, `None`
    /// when the kind is cluster-scoped). `Err` when the kind is not served.
    fn params(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: Option<&str>,
        selector: Option<&LabelSelector>,
    ) -> Result<Vec<Value>, String>;
    /// Whether `apiVersion`/`kind` is namespaced (`None` when not served).
    fn kind_namespaced(&self, api_version: &str, kind: &str) -> Option<bool>;
}

/// One request as admission sees it.
pub struct Input<'a> {
    pub attrs: &'a RequestAttrs,
    pub user: &'a UserInfo,
    pub object: Option<&'a Value>,
    pub old_object: Option<&'a Value>,
    /// The request's Namespace object (`namespaceObject`), when namespaced.
    pub namespace: Option<&'a Value>,
    pub dry_run: bool,
}

/// A refused request: the policy's message and its `reason` (`Invalid` unless the validation set one).
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    pub message: String,
    pub reason: String,
}

/// What the policies decided: warnings for the `Warning` header, and the first denial if any.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    pub warnings: Vec<String>,
    pub denied: Option<Denial>,
}

/// A failed validation (or an error under `failurePolicy: Fail`).
struct Failure {
    message: String,
    reason: String,
}

fn request_value(input: &Input) -> Cel {
    let s = |v: &str| Cel::String(Arc::new(v.to_string()));
    let a = input.attrs;
    let kind = map_of([
        ("group", s(&a.group)),
        ("version", s(&a.version)),
        ("kind", s(&a.kind)),
    ]);
    let resource = map_of([
        ("group", s(&a.group)),
        ("version", s(&a.version)),
        ("resource", s(&a.resource)),
    ]);
    let groups = Cel::List(Arc::new(input.user.groups.iter().map(|g| s(g)).collect()));
    map_of([
        ("operation", s(a.operation.as_str())),
        ("name", s(&a.name)),
        ("namespace", s(&a.namespace)),
        ("subResource", s(&a.subresource)),
        ("requestSubResource", s(&a.subresource)),
        ("kind", kind.clone()),
        ("requestKind", kind),
        ("resource", resource.clone()),
        ("requestResource", resource),
        ("dryRun", Cel::Bool(input.dry_run)),
        (
            "userInfo",
            map_of([
                ("username", s(&input.user.username)),
                ("uid", s("")),
                ("groups", groups),
            ]),
        ),
    ])
}

/// `params` when the policy has a `paramKind` but the binding selected no object.
static NULL: Value = Value::Null;

fn one_line(s: &str) -> bool {
    !s.trim().is_empty() && !s.contains('\n')
}

/// Evaluates one policy with one binding's parameters: `Ok(None)` when its match conditions
/// exclude the request, the failures otherwise (empty when it passes).
fn run_policy(
    p: &Policy,
    input: &Input,
    params: Option<&Value>,
) -> Result<Option<Vec<Failure>>, String> {
    let mut act = Activation::new(
        input.object,
        input.old_object,
        request_value(input),
        params.or(p.param_kind.as_ref().map(|_| &NULL)),
        input.namespace,
    );
    let mut condition_error = None;
    for (name, expr) in &p.match_conditions {
        let expr = expr.as_ref().map_err(Clone::clone)?;
        match act.eval_bool(expr) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) => {
                condition_error.get_or_insert(format!(
                    "failed to evaluate match condition '{name}': expression '{}' resulted in error: {e}",
                    expr.source.trim()
                ));
            }
        }
    }
    if let Some(e) = condition_error {
        return Err(e);
    }
    for (name, expr) in &p.variables {
        if let Ok(expr) = expr {
            // An unbound variable fails the expressions that use it.
            let _ = act.define(name, expr);
        }
    }
    let mut failures = Vec::new();
    for v in &p.validations {
        let expr = match &v.expr {
            Ok(e) => e,
            Err(e) => {
                failures.push(Failure {
                    message: e.clone(),
                    reason: v.reason.clone(),
                });
                continue;
            }
        };
        match act.eval_bool(expr) {
            Ok(true) => {}
            Ok(false) => {
                let from_expr = v
                    .message_expr
                    .as_ref()
                    .and_then(|m| m.as_ref().ok())
                    .and_then(|m| act.eval_string(m).ok())
                    .filter(|m| one_line(m));
                let message = from_expr
                    .or_else(|| v.message.clone().filter(|m| one_line(m)))
                    .unwrap_or_else(|| format!("failed expression: {}", expr.source.trim()));
                failures.push(Failure {
                    message,
                    reason: v.reason.clone(),
                });
            }
            Err(e) if p.fail_closed => failures.push(Failure {
                message: format!("expression '{}' resulted in error: {e}", expr.source.trim()),
                reason: v.reason.clone(),
            }),
            Err(_) => {}
        }
    }
    Ok(Some(failures))
}

/// The parameter objects a binding selects; `Ok(None)` when none exist and the binding allows that.
fn binding_params(
    src: &dyn PolicySource,
    p: &Policy,
    binding: &Value,
    input: &Input,
) -> Result<Option<Vec<Option<Value>>>, String> {
    let Some((api_version, kind)) = &p.param_kind else {
        return Ok(Some(vec![None]));
    };
    let Some(pr) = binding.get("spec").and_then(|s| s.get("paramRef")) else {
        return Err(format!(
            "failed to configure binding: paramRef is required when the policy has paramKind {api_version}, Kind={kind}"
        ));
    };
    let namespaced = src
        .kind_namespaced(api_version, kind)
        .ok_or_else(|| format!("paramKind kind `{kind}` not known in {api_version}"))?;
    let namespace = if namespaced {
        match pr.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() => Some(ns.to_string()),
            _ if !input.attrs.namespace.is_empty() => Some(input.attrs.namespace.clone()),
            _ => {
                return Err(
                    "failed to configure binding: cannot use namespaced paramRef in policy binding that matches cluster-scoped resources".into(),
                );
            }
        }
    } else {
        None
    };
    let name = pr.get("name").and_then(Value::as_str);
    let selector = match pr.get("selector").filter(|s| !s.is_null()) {
        Some(s) => Some(
            LabelSelector::from_object(s)
                .map_err(|e| format!("failed to configure binding: paramRef.selector: {e}"))?,
        ),
        None => None,
    };
    let found = src.params(
        api_version,
        kind,
        namespace.as_deref(),
        name,
        selector.as_ref(),
    )?;
    if found.is_empty() {
        return match pr.get("parameterNotFoundAction").and_then(Value::as_str) {
            Some("Allow") => Ok(None),
            _ => Err(
                "failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction".into(),
            ),
        };
    }
    Ok(Some(found.into_iter().map(Some).collect()))
}

/// Runs every policy bound to the request's resource, in name order.
pub fn evaluate(src: &dyn PolicySource, input: &Input) -> Verdict {
    let mut verdict = Verdict::default();
    let mut policies = src.policies();
    if policies.is_empty() {
        return verdict;
    }
    policies.sort_by(|a, b| crate::store::obj_name(a).cmp(crate::store::obj_name(b)));
    let mut bindings = src.bindings();
    bindings.sort_by(|a, b| crate::store::obj_name(a).cmp(crate::store::obj_name(b)));
    for pobj in &policies {
        let p = policy::compiled(pobj);
        let matched = matching::resources_match(
            &p.match_constraints,
            input.attrs,
            input.object,
            input.old_object,
            input.namespace,
            true,
        );
        if matched != Ok(true) {
            continue;
        }
        for b in bindings
            .iter()
            .filter(|b| b["spec"]["policyName"].as_str() == Some(p.name.as_str()))
        {
            let bname = crate::store::obj_name(b);
            if let Some(mr) = b["spec"].get("matchResources").filter(|m| !m.is_null())
                && matching::resources_match(
                    mr,
                    input.attrs,
                    input.object,
                    input.old_object,
                    input.namespace,
                    false,
                ) != Ok(true)
            {
                continue;
            }
            let failures = match binding_params(src, &p, b, input) {
                Ok(None) => continue,
                Ok(Some(params)) => {
                    let mut all = Vec::new();
                    for param in &params {
                        match run_policy(&p, input, param.as_ref()) {
                            Ok(Some(f)) => all.extend(f),
                            Ok(None) => {}
                            Err(e) if p.fail_closed => all.push(Failure {
                                message: e,
                                reason: "Invalid".into(),
                            }),
                            Err(_) => {}
                        }
                    }
                    all
                }
                Err(e) if p.fail_closed => vec![Failure {
                    message: e,
                    reason: "Invalid".into(),
                }],
                Err(_) => continue,
            };
            let actions = matching::strings(b["spec"].get("validationActions"));
            for f in failures {
                if actions.contains(&"Warn") {
                    verdict.warnings.push(format!(
                        "Validation failed for ValidatingAdmissionPolicy '{}' with binding '{bname}': {}",
                        p.name, f.message
                    ));
                }
                if actions.contains(&"Audit") {
                    tracing::info!(policy = %p.name, binding = %bname, message = %f.message, "validation failed (Audit)");
                }
                if actions.contains(&"Deny") && verdict.denied.is_none() {
                    verdict.denied = Some(Denial {
                        message: format!(
                            "ValidatingAdmissionPolicy '{}' with binding '{bname}' denied request: {}",
                            p.name, f.message
                        ),
                        reason: f.reason,
                    });
                }
            }
        }
    }
    verdict
}

/// The apiserver's error for a denial: `<resource> "<name>" is forbidden: <message>`, with the
/// HTTP code of the reason (422 for `Invalid`, 403 `Forbidden`, 401 `Unauthorized`, 413).
pub fn denial_error(attrs: &RequestAttrs, name: &str, d: &Denial) -> ApiError {
    let (code, reason) = match d.reason.as_str() {
        "Forbidden" => (403, "Forbidden"),
        "Unauthorized" => (401, "Unauthorized"),
        "RequestEntityTooLarge" => (413, "RequestEntityTooLarge"),
        _ => (422, "Invalid"),
    };
    let qr = qualified(&attrs.group, &attrs.resource);
    let message = if name.is_empty() {
        format!("{qr} is forbidden: {}", d.message)
    } else {
        format!("{qr} \"{name}\" is forbidden: {}", d.message)
    };
    let mut details = json!({"kind": attrs.resource, "causes": [{"message": d.message}]});
    if !name.is_empty() {
        details["name"] = json!(name);
    }
    if !attrs.group.is_empty() {
        details["group"] = json!(attrs.group);
    }
    ApiError {
        code,
        reason,
        message,
        details: Some(Box::new(details)),
        raw: None,
    }
}

/// Checks and defaults a ValidatingAdmissionPolicy or binding being written (422 naming the field
/// when it is invalid); other objects pass untouched.
pub fn prepare_definition(table: &str, obj: &mut Value) -> Result<(), ApiError> {
    let (kind, errs) = match table {
        policy::POLICY_TABLE => (policy::POLICY_KIND, policy::policy_errors(obj)),
        policy::BINDING_TABLE => (policy::BINDING_KIND, policy::binding_errors(obj)),
        _ => return Ok(()),
    };
    if !errs.is_empty() {
        return Err(ApiError::from_status(crate::schema::invalid_status(
            kind,
            policy::GROUP,
            crate::store::obj_name(obj),
            &errs,
        )));
    }
    policy::apply_defaults(table, obj);
    Ok(())
}

impl PolicySource for SimState {
    fn policies(&self) -> Vec<Arc<Value>> {
        self.store
            .list(policy::POLICY_TABLE, None, &ListOptions::default(), &|_| {
                true
            })
            .map(|p| p.items)
            .unwrap_or_default()
    }

    fn bindings(&self) -> Vec<Arc<Value>> {
        self.store
            .list(
                policy::BINDING_TABLE,
                None,
                &ListOptions::default(),
                &|_| true,
            )
            .map(|p| p.items)
            .unwrap_or_default()
    }

    fn params(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: Option<&str>,
        selector: Option<&LabelSelector>,
    ) -> Result<Vec<Value>, String> {
        let ri = self.param_resource(api_version, kind)?;
        let version = api_version.rsplit('/').next().unwrap_or(api_version);
        let ns = namespace.unwrap_or("");
        let found: Vec<Arc<Value>> = match name {
            Some(n) => self.store.get(&ri.table, ns, n).into_iter().collect(),
            None => self
                .store
                .list(&ri.table, namespace, &ListOptions::default(), &|o| {
                    selector.is_none_or(|s| s.matches_object(o))
                })
                .map(|p| p.items)
                .unwrap_or_default(),
        };
        Ok(found
            .iter()
            .map(|o| self.to_served(&ri, version, o))
            .collect())
    }

    fn kind_namespaced(&self, api_version: &str, kind: &str) -> Option<bool> {
        self.param_resource(api_version, kind)
            .ok()
            .map(|ri| ri.namespaced)
    }
}

impl SimState {
    fn param_resource(&self, api_version: &str, kind: &str) -> Result<Arc<ResourceInfo>, String> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        self.registry_read()
            .by_kind(group, kind)
            .filter(|ri| ri.version(version).is_some())
            .ok_or_else(|| format!("paramKind kind `{kind}` not known in {api_version}"))
    }

    /// Runs the validating admission policies on a write made by `user` (`None`: an internal write,
    /// not admitted). `object`/`old_object` are in stored form; the policies see them as served at
    /// `version`. Returns the warnings, or the denial as the apiserver's error.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn admit(
        &self,
        ri: &ResourceInfo,
        version: &str,
        operation: Operation,
        subresource: Option<&str>,
        object: Option<&Value>,
        old_object: Option<&Value>,
        user: Option<&UserInfo>,
        dry_run: bool,
    ) -> Result<Vec<String>, ApiError> {
        let Some(user) = user else {
            return Ok(Vec::new());
        };
        if self.policies().is_empty() {
            return Ok(Vec::new());
        }
        let store_obj = object.or(old_object);
        let name = store_obj
            .map(crate::store::obj_name)
            .unwrap_or("")
            .to_string();
        let namespace = store_obj
            .map(crate::store::obj_namespace)
            .unwrap_or("")
            .to_string();
        let attrs = RequestAttrs {
            group: ri.group.clone(),
            version: version.to_string(),
            resource: ri.plural.clone(),
            subresource: subresource.unwrap_or("").to_string(),
            kind: ri.kind.clone(),
            operation,
            namespace: if ri.namespaced {
                namespace.clone()
            } else {
                String::new()
            },
            name: name.clone(),
            namespaced: ri.namespaced,
        };
        let object = object.map(|o| self.to_served(ri, version, o));
        let old_object = old_object.map(|o| self.to_served(ri, version, o));
        let ns_obj = (ri.namespaced && !namespace.is_empty())
            .then(|| {
                self.store
                    .get(crate::server::handlers::NS_TABLE, "", &namespace)
            })
            .flatten();
        let input = Input {
            attrs: &attrs,
            user,
            object: object.as_ref(),
            old_object: old_object.as_ref(),
            namespace: ns_obj.as_deref(),
            dry_run,
        };
        let verdict = evaluate(self, &input);
        match verdict.denied {
            Some(d) => Err(denial_error(&attrs, &name, &d)),
            None => Ok(verdict.warnings),
        }
    }
}

#[cfg(test)]
mod tests;

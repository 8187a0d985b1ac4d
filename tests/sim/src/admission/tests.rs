//! The admission chain over an in-memory policy source.

use super::*;
use serde_json::json;

#[derive(Default)]
struct Fake {
    policies: Vec<Value>,
    bindings: Vec<Value>,
    /// (namespace, object) of kind `v1/ConfigMap`.
    configmaps: Vec<(String, Value)>,
}

impl PolicySource for Fake {
    fn policies(&self) -> Vec<Arc<Value>> {
        self.policies.iter().cloned().map(Arc::new).collect()
    }
    fn bindings(&self) -> Vec<Arc<Value>> {
        self.bindings.iter().cloned().map(Arc::new).collect()
    }
    fn params(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: Option<&str>,
        selector: Option<&LabelSelector>,
    ) -> Result<Vec<Value>, String> {
        if (api_version, kind) != ("v1", "ConfigMap") {
            return Err(format!(
                "paramKind kind `{kind}` not known in {api_version}"
            ));
        }
        Ok(self
            .configmaps
            .iter()
            .filter(|(ns, o)| {
                namespace.is_none_or(|n| n == ns)
                    && name.is_none_or(|n| crate::store::obj_name(o) == n)
                    && selector.is_none_or(|s| s.matches_object(o))
            })
            .map(|(_, o)| o.clone())
            .collect())
    }
    fn kind_namespaced(&self, api_version: &str, kind: &str) -> Option<bool> {
        ((api_version, kind) == ("v1", "ConfigMap")).then_some(true)
    }
}

static UID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A policy on deployments (CREATE, UPDATE) and agentnodes/status; each call gets a fresh uid so
/// the compiled-policy cache never serves another test's policy.
fn policy(name: &str, spec_extra: Value) -> Value {
    let uid = UID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut spec = json!({
        "failurePolicy": "Fail",
        "matchConstraints": {"resourceRules": [
            {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]},
            {"apiGroups": ["hypersync.io"], "apiVersions": ["*"], "operations": ["UPDATE"], "resources": ["agentnodes/status"]},
        ]},
        "validations": [{"expression": "object.spec.replicas <= 5", "message": "at most 5 replicas"}],
    });
    for (k, v) in spec_extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({"metadata": {"name": name, "uid": format!("test-{uid}"), "resourceVersion": "1"}, "spec": spec})
}

fn binding(name: &str, policy: &str, actions: &[&str], extra: Value) -> Value {
    let mut spec = json!({"policyName": policy, "validationActions": actions});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({"metadata": {"name": name}, "spec": spec})
}

fn deployment_create(ns: &str) -> RequestAttrs {
    RequestAttrs {
        group: "apps".into(),
        version: "v1".into(),
        resource: "deployments".into(),
        subresource: String::new(),
        kind: "Deployment".into(),
        operation: Operation::Create,
        namespace: ns.into(),
        name: "web".into(),
        namespaced: true,
    }
}

fn deploy(replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "ai", "labels": {"app": "web"}}, "spec": {"replicas": replicas}})
}

fn run(src: &Fake, attrs: &RequestAttrs, object: &Value, old: Option<&Value>) -> Verdict {
    let user = UserInfo::service_account("ai", "scout-1-agent");
    let ns = json!({"metadata": {"name": attrs.namespace, "labels": {"env": "prod"}}});
    evaluate(
        src,
        &Input {
            attrs,
            user: &user,
            object: Some(object),
            old_object: old,
            namespace: Some(&ns),
            dry_run: false,
        },
    )
}

fn denied_message(v: &Verdict) -> String {
    v.denied.as_ref().expect("denied").message.clone()
}

#[test]
fn deny_uses_the_upstream_message_and_reason() {
    let src = Fake {
        policies: vec![policy("max-replicas", json!({}))],
        bindings: vec![binding(
            "max-replicas-b",
            "max-replicas",
            &["Deny"],
            json!({}),
        )],
        ..Default::default()
    };
    let attrs = deployment_create("ai");
    assert_eq!(run(&src, &attrs, &deploy(3), None), Verdict::default());
    let v = run(&src, &attrs, &deploy(9), None);
    assert_eq!(
        v.denied,
        Some(Denial {
            message: "ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-b' denied request: at most 5 replicas".into(),
            reason: "Invalid".into(),
        })
    );
    let err = denial_error(&attrs, "web", v.denied.as_ref().unwrap());
    assert_eq!((err.code, err.reason), (422, "Invalid"));
    assert_eq!(
        err.message,
        "deployments.apps \"web\" is forbidden: ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-b' denied request: at most 5 replicas"
    );
    let forbidden = denial_error(
        &attrs,
        "web",
        &Denial {
            message: "m".into(),
            reason: "Forbidden".into(),
        },
    );
    assert_eq!((forbidden.code, forbidden.reason), (403, "Forbidden"));
}

#[test]
fn a_policy_without_a_binding_or_out_of_its_rules_does_nothing() {
    let unbound = Fake {
        policies: vec![policy("max-replicas", json!({}))],
        ..Default::default()
    };
    assert_eq!(
        run(&unbound, &deployment_create("ai"), &deploy(9), None),
        Verdict::default()
    );
    let bound = Fake {
        policies: vec![policy("max-replicas", json!({}))],
        bindings: vec![binding("b", "max-replicas", &["Deny"], json!({}))],
        ..Default::default()
    };
    let delete = RequestAttrs {
        operation: Operation::Delete,
        ..deployment_create("ai")
    };
    assert_eq!(run(&bound, &delete, &deploy(9), None), Verdict::default());
    let scale = RequestAttrs {
        operation: Operation::Update,
        subresource: "scale".into(),
        ..deployment_create("ai")
    };
    assert_eq!(run(&bound, &scale, &deploy(9), None), Verdict::default());
}

#[test]
fn warn_and_audit_do_not_refuse() {
    let src = Fake {
        policies: vec![policy("max-replicas", json!({}))],
        bindings: vec![binding("b", "max-replicas", &["Warn", "Audit"], json!({}))],
        ..Default::default()
    };
    let v = run(&src, &deployment_create("ai"), &deploy(9), None);
    assert_eq!(v.denied, None);
    assert_eq!(
        v.warnings,
        [
            "Validation failed for ValidatingAdmissionPolicy 'max-replicas' with binding 'b': at most 5 replicas"
        ]
    );
    let audit_only = Fake {
        bindings: vec![binding("b", "max-replicas", &["Audit"], json!({}))],
        policies: src.policies.clone(),
        ..Default::default()
    };
    assert_eq!(
        run(&audit_only, &deployment_create("ai"), &deploy(9), None),
        Verdict::default()
    );
}

#[test]
fn binding_match_resources_narrow_the_policy() {
    let src = Fake {
        policies: vec![policy("max-replicas", json!({}))],
        bindings: vec![binding(
            "b",
            "max-replicas",
            &["Deny"],
            json!({"matchResources": {"namespaceSelector": {"matchLabels": {"env": "dev"}}}}),
        )],
        ..Default::default()
    };
    assert!(
        run(&src, &deployment_create("ai"), &deploy(9), None)
            .denied
            .is_none()
    );
    let mut prod = src;
    prod.bindings = vec![binding(
        "b",
        "max-replicas",
        &["Deny"],
        json!({"matchResources": {"namespaceSelector": {"matchLabels": {"env": "prod"}}, "objectSelector": {"matchLabels": {"app": "web"}}}}),
    )];
    assert!(
        run(&prod, &deployment_create("ai"), &deploy(9), None)
            .denied
            .is_some()
    );
}

#[test]
fn match_conditions_variables_and_message_expressions() {
    let src = Fake {
        policies: vec![policy(
            "p",
            json!({
                "matchConditions": [{"name": "agents-only", "expression": "request.userInfo.username.endsWith('-agent')"}],
                "variables": [
                    {"name": "sa", "expression": "request.userInfo.username.split(':')[3]"},
                    {"name": "limit", "expression": "variables.sa == 'scout-1-agent' ? 2 : 10"},
                ],
                "validations": [{
                    "expression": "object.spec.replicas <= variables.limit",
                    "messageExpression": "variables.sa + ' may run ' + string(variables.limit) + ' replicas, not ' + string(object.spec.replicas)",
                    "reason": "Forbidden",
                }],
            }),
        )],
        bindings: vec![binding("b", "p", &["Deny"], json!({}))],
        ..Default::default()
    };
    let v = run(&src, &deployment_create("ai"), &deploy(3), None);
    assert_eq!(
        v.denied,
        Some(Denial {
            message: "ValidatingAdmissionPolicy 'p' with binding 'b' denied request: scout-1-agent may run 2 replicas, not 3".into(),
            reason: "Forbidden".into(),
        })
    );
    // The match condition leaves other users alone.
    let admin = UserInfo::admin();
    let attrs = deployment_create("ai");
    let obj = deploy(3);
    let v = evaluate(
        &src,
        &Input {
            attrs: &attrs,
            user: &admin,
            object: Some(&obj),
            old_object: None,
            namespace: None,
            dry_run: false,
        },
    );
    assert_eq!(v, Verdict::default());
}

#[test]
fn request_carries_the_subresource_and_old_object() {
    let src = Fake {
        policies: vec![policy(
            "p",
            json!({"validations": [{"expression": "request.subResource == 'status' && request.operation == 'UPDATE' && request.namespace == 'ai' && request.name == 'scout-1' && oldObject.status.phase == 'Running' && request.kind.kind == 'AgentNode'"}]}),
        )],
        bindings: vec![binding("b", "p", &["Deny"], json!({}))],
        ..Default::default()
    };
    let attrs = RequestAttrs {
        group: "hypersync.io".into(),
        version: "v1alpha1".into(),
        resource: "agentnodes".into(),
        subresource: "status".into(),
        kind: "AgentNode".into(),
        operation: Operation::Update,
        namespace: "ai".into(),
        name: "scout-1".into(),
        namespaced: true,
    };
    let old = json!({"status": {"phase": "Running"}});
    let new = json!({"status": {"phase": "Dissolving"}});
    assert_eq!(run(&src, &attrs, &new, Some(&old)), Verdict::default());
    let v = run(&src, &attrs, &new, Some(&new));
    assert!(
        denied_message(&v).ends_with("denied request: failed expression: request.subResource == 'status' && request.operation == 'UPDATE' && request.namespace == 'ai' && request.name == 'scout-1' && oldObject.status.phase == 'Running' && request.kind.kind == 'AgentNode'"),
        "{v:?}"
    );
}

#[test]
fn errors_follow_the_failure_policy() {
    let broken = json!({"validations": [{"expression": "object.spec.nope > 1"}]});
    let fail = Fake {
        policies: vec![policy("p", broken.clone())],
        bindings: vec![binding("b", "p", &["Deny"], json!({}))],
        ..Default::default()
    };
    let v = run(&fail, &deployment_create("ai"), &deploy(1), None);
    assert!(
        denied_message(&v)
            .starts_with("ValidatingAdmissionPolicy 'p' with binding 'b' denied request: expression 'object.spec.nope > 1' resulted in error: "),
        "{v:?}"
    );
    let mut ignore_spec = broken;
    ignore_spec["failurePolicy"] = json!("Ignore");
    let ignore = Fake {
        policies: vec![policy("p", ignore_spec)],
        bindings: fail.bindings.clone(),
        ..Default::default()
    };
    assert_eq!(
        run(&ignore, &deployment_create("ai"), &deploy(1), None),
        Verdict::default()
    );
    // A match condition that errors is an error too; one that is false wins over errors.
    let cond = |conds: Value| Fake {
        policies: vec![policy("p", json!({"matchConditions": conds}))],
        bindings: vec![binding("b", "p", &["Deny"], json!({}))],
        ..Default::default()
    };
    let v = run(
        &cond(json!([{"name": "c", "expression": "object.nope"}])),
        &deployment_create("ai"),
        &deploy(1),
        None,
    );
    assert!(
        denied_message(&v).contains("failed to evaluate match condition 'c'"),
        "{v:?}"
    );
    let v = run(
        &cond(
            json!([{"name": "c", "expression": "object.nope"}, {"name": "d", "expression": "false"}]),
        ),
        &deployment_create("ai"),
        &deploy(9),
        None,
    );
    assert_eq!(v, Verdict::default());
}

#[test]
fn params_by_name_and_selector() {
    let p = policy(
        "p",
        json!({
            "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "validations": [{"expression": "object.spec.replicas <= int(params.data.max)", "messageExpression": "'max ' + params.data.max"}],
        }),
    );
    let cm = |name: &str, max: &str, tier: &str| {
        (
            "ai".to_string(),
            json!({"metadata": {"name": name, "labels": {"tier": tier}}, "data": {"max": max}}),
        )
    };
    let src = |paramref: Value| Fake {
        policies: vec![p.clone()],
        bindings: vec![binding(
            "b",
            "p",
            &["Deny"],
            json!({ "paramRef": paramref }),
        )],
        configmaps: vec![cm("small", "2", "a"), cm("large", "20", "b")],
    };
    let attrs = deployment_create("ai");
    let by_name = src(json!({"name": "small", "parameterNotFoundAction": "Deny"}));
    assert!(denied_message(&run(&by_name, &attrs, &deploy(3), None)).ends_with(": max 2"));
    let large = src(json!({"name": "large", "parameterNotFoundAction": "Deny"}));
    assert_eq!(run(&large, &attrs, &deploy(3), None), Verdict::default());
    // A selector evaluates the policy once per selected object: any failure denies.
    let all = src(json!({"selector": {}, "parameterNotFoundAction": "Deny"}));
    assert!(run(&all, &attrs, &deploy(3), None).denied.is_some());
    let tier_b =
        src(json!({"selector": {"matchLabels": {"tier": "b"}}, "parameterNotFoundAction": "Deny"}));
    assert_eq!(run(&tier_b, &attrs, &deploy(3), None), Verdict::default());
    // Nothing found: the binding's parameterNotFoundAction decides.
    let missing_allow = src(json!({"name": "nope", "parameterNotFoundAction": "Allow"}));
    assert_eq!(
        run(&missing_allow, &attrs, &deploy(30), None),
        Verdict::default()
    );
    let missing_deny = src(json!({"name": "nope", "parameterNotFoundAction": "Deny"}));
    assert!(
        denied_message(&run(&missing_deny, &attrs, &deploy(1), None))
            .ends_with("no params found for policy binding with `Deny` parameterNotFoundAction")
    );
    // paramKind without a paramRef is a misconfigured binding.
    let no_ref = Fake {
        policies: vec![p.clone()],
        bindings: vec![binding("b", "p", &["Deny"], json!({}))],
        ..Default::default()
    };
    assert!(
        denied_message(&run(&no_ref, &attrs, &deploy(1), None)).contains("paramRef is required")
    );
}

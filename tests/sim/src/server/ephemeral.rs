//! `pods/ephemeralcontainers` (`kubectl debug`): an update through it changes only
//! `spec.ephemeralContainers`, which may only grow (`pkg/registry/core/pod/strategy.go`
//! `podEphemeralContainersStrategy`, `pkg/apis/core/validation` `ValidatePodEphemeralContainersUpdate`):
//! existing ones may be neither changed nor removed, names are unique across all containers and
//! an image is required. The simulated kubelet starts added containers at once.

use crate::schema::{BadValue, FieldError, FieldErrorKind};
use serde_json::{Value, json};
use std::collections::HashSet;

fn list<'a>(pod: &'a Value, field: &str) -> Vec<&'a Value> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn name(c: &Value) -> &str {
    c.get("name").and_then(Value::as_str).unwrap_or("")
}

/// The stored pod after an update through the subresource: `old` with `new`'s ephemeral containers.
pub fn apply(old: &Value, new: &Value) -> Value {
    let mut out = old.clone();
    let eph = new
        .pointer("/spec/ephemeralContainers")
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(spec) = out.get_mut("spec").and_then(Value::as_object_mut) {
        if eph.is_null() {
            spec.remove("ephemeralContainers");
        } else {
            spec.insert("ephemeralContainers".into(), eph);
        }
    }
    out
}

/// The errors of an ephemeral containers update from `old` to `new` (both whole pods).
pub fn validate(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let forbidden = |msg: String| FieldError {
        field: "spec.ephemeralContainers".into(),
        kind: FieldErrorKind::Forbidden,
        message: msg,
        value: BadValue::Omit,
    };
    let new_eph = list(new, "ephemeralContainers");
    for o in list(old, "ephemeralContainers") {
        match new_eph.iter().find(|n| name(n) == name(o)) {
            None => errs.push(forbidden(format!(
                "existing ephemeral containers {:?} may not be removed\n",
                name(o)
            ))),
            Some(n) if *n != o => errs.push(forbidden(format!(
                "existing ephemeral containers {:?} may not be changed\n",
                name(o)
            ))),
            Some(_) => {}
        }
    }
    let mut seen: HashSet<&str> = list(new, "containers")
        .into_iter()
        .chain(list(new, "initContainers"))
        .map(name)
        .collect();
    for (i, c) in new_eph.iter().enumerate() {
        let n = name(c);
        if n.is_empty() {
            errs.push(FieldError::required(
                format!("spec.ephemeralContainers[{i}].name"),
                "",
            ));
        } else if !seen.insert(n) {
            errs.push(FieldError {
                field: format!("spec.ephemeralContainers[{i}].name"),
                kind: FieldErrorKind::Duplicate,
                message: String::new(),
                value: BadValue::Json(json!(n)),
            });
        }
        if c.get("image")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            errs.push(FieldError::required(
                format!("spec.ephemeralContainers[{i}].image"),
                "",
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(eph: Value) -> Value {
        json!({"spec": {"containers": [{"name": "app", "image": "a"}], "ephemeralContainers": eph}})
    }

    #[test]
    fn ephemeral_containers_may_only_be_added() {
        let one = pod(json!([{"name": "d1", "image": "busybox"}]));
        let two =
            pod(json!([{"name": "d1", "image": "busybox"}, {"name": "d2", "image": "busybox"}]));
        assert!(validate(&one, &two).is_empty());
        let removed = validate(&two, &one);
        assert_eq!(
            removed[0].message,
            "existing ephemeral containers \"d2\" may not be removed\n"
        );
        let changed = pod(json!([{"name": "d1", "image": "other"}]));
        assert!(
            validate(&one, &changed)[0]
                .message
                .contains("may not be changed")
        );
        let dup = pod(json!([{"name": "app", "image": "busybox"}]));
        assert_eq!(
            validate(&pod(json!([])), &dup)[0].kind,
            FieldErrorKind::Duplicate
        );
        // Only the ephemeral containers change.
        let mut other = two.clone();
        other["spec"]["containers"] = json!([]);
        let stored = apply(&one, &other);
        assert_eq!(stored["spec"]["containers"], one["spec"]["containers"]);
        assert_eq!(
            stored["spec"]["ephemeralContainers"],
            two["spec"]["ephemeralContainers"]
        );
    }
}

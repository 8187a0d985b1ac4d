//! Index keys that let an [`RbacSource`](super::RbacSource) find the RoleBindings naming a user
//! without reading every binding of the namespace: a binding is indexed under each of its
//! subjects, a request looks up the keys of its user (username and groups). The keys over-cover
//! (the authorizer still checks each binding's subjects), they never miss a binding that matches:
//! `User` and `ServiceAccount` subjects key on the username they denote, `Group` on the group.

use super::UserInfo;
use serde_json::Value;

fn user_key(ns: &str, username: &str) -> String {
    format!("{ns}\0u\0{username}")
}

fn group_key(ns: &str, group: &str) -> String {
    format!("{ns}\0g\0{group}")
}

/// The index keys of a RoleBinding in `ns`: one per subject that can match a user.
pub fn binding_subject_keys(ns: &str, binding: &Value) -> Vec<String> {
    let Some(subjects) = binding.get("subjects").and_then(Value::as_array) else {
        return Vec::new();
    };
    subjects
        .iter()
        .filter_map(|s| {
            let name = s.get("name").and_then(Value::as_str).unwrap_or("");
            match s.get("kind").and_then(Value::as_str).unwrap_or("") {
                "User" => Some(user_key(ns, name)),
                "Group" => Some(group_key(ns, name)),
                "ServiceAccount" => {
                    let sa_ns = s
                        .get("namespace")
                        .and_then(Value::as_str)
                        .filter(|n| !n.is_empty())
                        .unwrap_or(ns);
                    Some(user_key(
                        ns,
                        &format!("system:serviceaccount:{sa_ns}:{name}"),
                    ))
                }
                _ => None,
            }
        })
        .collect()
}

/// The keys a user's RoleBindings in `ns` are indexed under (see [`binding_subject_keys`]).
pub fn user_subject_keys(ns: &str, user: &UserInfo) -> Vec<String> {
    std::iter::once(user_key(ns, &user.username))
        .chain(user.groups.iter().map(|g| group_key(ns, g)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_account_subjects_key_on_the_username_they_denote() {
        let b = json!({"subjects": [
            {"kind": "ServiceAccount", "name": "sa"},
            {"kind": "ServiceAccount", "name": "other", "namespace": "elsewhere"},
            {"kind": "User", "name": "alice"},
            {"kind": "Group", "name": "devs"},
            {"kind": "Unknown", "name": "x"}
        ]});
        let keys = binding_subject_keys("ns", &b);
        assert_eq!(keys.len(), 4);
        let sa = user_subject_keys("ns", &UserInfo::service_account("ns", "sa"));
        assert!(sa.iter().any(|k| keys.contains(k)));
        let other = user_subject_keys("ns", &UserInfo::service_account("elsewhere", "other"));
        assert!(other.iter().any(|k| keys.contains(k)));
        // The same service account name in another namespace is not the subject.
        let stranger = user_subject_keys("ns", &UserInfo::service_account("ns2", "sa"));
        assert!(!stranger.iter().any(|k| keys.contains(k)));
        // Keys are per namespace of the binding.
        let elsewhere = user_subject_keys("ns2", &UserInfo::service_account("ns", "sa"));
        assert!(!elsewhere.iter().any(|k| keys.contains(k)));
        let dev = UserInfo {
            username: "bob".into(),
            groups: vec!["devs".into()],
        };
        assert!(
            user_subject_keys("ns", &dev)
                .iter()
                .any(|k| keys.contains(k))
        );
        // A user named like a group is not in it.
        let named_devs = UserInfo {
            username: "devs".into(),
            groups: vec![],
        };
        assert!(
            !user_subject_keys("ns", &named_devs)
                .iter()
                .any(|k| keys.contains(k))
        );
    }
}

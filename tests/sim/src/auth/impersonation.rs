//! User impersonation (`Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid`,
//! `Impersonate-Extra-<key>` headers; `kubectl --as/--as-group`), as the apiserver's impersonation
//! filter does it: the requester needs the `impersonate` verb on `users` (or on `serviceaccounts`
//! in the namespace, for `system:serviceaccount:<ns>:<name>`), on `groups`, on `uids` and
//! `userextras/<key>` in `authentication.k8s.io`, each with the impersonated value as the resource
//! name. The request then runs as the impersonated user: its groups are the given ones (a service
//! account's own groups when none are given) plus `system:authenticated` (`system:unauthenticated`
//! for `system:anonymous`).

use super::{
    Attributes, GROUP_AUTHENTICATED, GROUP_SERVICE_ACCOUNTS, GROUP_UNAUTHENTICATED, USER_ANONYMOUS,
    UserInfo,
};

/// The impersonation a request asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Impersonation {
    pub user: Option<String>,
    pub groups: Vec<String>,
    pub uid: Option<String>,
    /// `(key, value)` from `Impersonate-Extra-<key>: <value>` (key percent-decoded, lowercase).
    pub extra: Vec<(String, String)>,
}

impl Impersonation {
    /// Reads the impersonation headers from `(name, value)` pairs (names in any case).
    pub fn from_headers<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut out = Impersonation::default();
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            match name.as_str() {
                "impersonate-user" => out.user = Some(value.to_string()),
                "impersonate-group" => out.groups.push(value.to_string()),
                "impersonate-uid" => out.uid = Some(value.to_string()),
                n => {
                    if let Some(key) = n.strip_prefix("impersonate-extra-") {
                        out.extra.push((
                            crate::server::http::percent_decode(key, false),
                            value.to_string(),
                        ));
                    }
                }
            }
        }
        out
    }

    /// True when the request asks for no impersonation.
    pub fn is_empty(&self) -> bool {
        self.user.is_none() && self.groups.is_empty() && self.uid.is_none() && self.extra.is_empty()
    }

    /// The `impersonate` checks the requester must pass, in the apiserver's order; `Err` is the 400
    /// message of a malformed request (groups, uid or extras without a user).
    pub fn checks(&self) -> Result<Vec<Attributes>, String> {
        let Some(user) = &self.user else {
            return Err(
                "requested impersonation of groups, uid or extra without impersonating a user"
                    .into(),
            );
        };
        let imp = |group: &str, resource: &str, ns: Option<&str>, name: &str| {
            Attributes::resource("impersonate", group, resource, None, ns, Some(name))
        };
        let mut out = vec![match service_account(user) {
            Some((ns, name)) => imp("", "serviceaccounts", Some(ns), name),
            None => imp("", "users", None, user),
        }];
        out.extend(self.groups.iter().map(|g| imp("", "groups", None, g)));
        if let Some(uid) = &self.uid {
            out.push(imp("authentication.k8s.io", "uids", None, uid));
        }
        for (k, v) in &self.extra {
            out.push(imp(
                "authentication.k8s.io",
                &format!("userextras/{k}"),
                None,
                v,
            ));
        }
        Ok(out)
    }

    /// The identity the request then runs as (`None` without `Impersonate-User`).
    pub fn user(&self) -> Option<UserInfo> {
        let username = self.user.clone()?;
        let mut groups = self.groups.clone();
        if groups.is_empty()
            && let Some((ns, _)) = service_account(&username)
        {
            groups = vec![
                GROUP_SERVICE_ACCOUNTS.to_string(),
                format!("{GROUP_SERVICE_ACCOUNTS}:{ns}"),
            ];
        }
        let implied = if username == USER_ANONYMOUS {
            GROUP_UNAUTHENTICATED
        } else {
            GROUP_AUTHENTICATED
        };
        if !groups.iter().any(|g| g == implied) {
            groups.push(implied.to_string());
        }
        Some(UserInfo { username, groups })
    }
}

/// `(namespace, name)` of a `system:serviceaccount:<ns>:<name>` username.
fn service_account(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix("system:serviceaccount:")?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty()).then_some((ns, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_headers_and_derives_checks_and_user() {
        let imp = Impersonation::from_headers([
            ("Impersonate-User", "system:serviceaccount:ns:sa"),
            ("content-type", "application/json"),
        ]);
        assert!(!imp.is_empty());
        let checks = imp.checks().unwrap();
        assert_eq!(
            checks,
            vec![Attributes::resource(
                "impersonate",
                "",
                "serviceaccounts",
                None,
                Some("ns"),
                Some("sa")
            )]
        );
        assert_eq!(imp.user(), Some(UserInfo::service_account("ns", "sa")));

        let imp = Impersonation::from_headers([
            ("impersonate-user", "alice"),
            ("impersonate-group", "devs"),
            ("impersonate-group", "ops"),
            ("impersonate-extra-scopes%2Fx", "v"),
        ]);
        let checks = imp.checks().unwrap();
        assert_eq!(checks.len(), 4);
        assert_eq!(
            (checks[0].resource.as_str(), checks[0].name.as_deref()),
            ("users", Some("alice"))
        );
        assert_eq!(
            (checks[2].resource.as_str(), checks[2].name.as_deref()),
            ("groups", Some("ops"))
        );
        assert_eq!(checks[3].resource, "userextras/scopes/x");
        assert_eq!(
            imp.user().unwrap().groups,
            vec!["devs", "ops", "system:authenticated"]
        );

        assert!(Impersonation::from_headers([]).is_empty());
        assert!(
            Impersonation::from_headers([("Impersonate-Group", "g")])
                .checks()
                .is_err()
        );
    }
}

//! Service-account bearer tokens: TokenRequest-issued signed JWTs and a static scheme usable
//! without an API call.
//!
//! Accepted bearer tokens:
//!
//! | token | identity |
//! |---|---|
//! | `sim-sa:<namespace>:<name>` | service account `system:serviceaccount:<namespace>:<name>`, groups `system:serviceaccounts`, `system:serviceaccounts:<namespace>`, `system:authenticated`; never expires |
//! | `sim-admin` | `kubernetes-admin` in `system:masters` (bypasses RBAC) |
//! | `sim-user:<name>[:<group>,<group>...]` | user `<name>` in the given groups plus `system:authenticated` |
//! | a JWT from [`TokenIssuer::issue`] / the TokenRequest subresource | the service account it was issued for, until `exp` |
//!
//! Issued tokens are JWTs (`header.claims.signature`, base64url without padding) signed with
//! HMAC-SHA256 under a key drawn at random per [`TokenIssuer`] (so per process), with claims shaped
//! like the real apiserver's (`iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti`,
//! `kubernetes.io.{namespace,serviceaccount{name,uid}}`). Audiences are recorded but not checked.
//! The caller should check that the service account still exists with the token's uid
//! ([`Authenticated::service_account`]) to mimic revocation on deletion.

use super::UserInfo;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Issuer claim put in issued tokens (the in-cluster default).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Default token lifetime when the TokenRequest has no `expirationSeconds` (as upstream: 1 hour).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Shortest lifetime a TokenRequest may ask for (upstream: 10 minutes).
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// Longest lifetime a TokenRequest may ask for (upstream: 2^32 seconds).
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

const STATIC_SA_PREFIX: &str = "sim-sa:";
const STATIC_USER_PREFIX: &str = "sim-user:";
const STATIC_ADMIN: &str = "sim-admin";

/// Why a TokenRequest was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// `spec.expirationSeconds` out of range; the string is the field error.
    #[error("failed to validate token request: {0}")]
    InvalidSpec(String),
}

impl TokenError {
    /// The apiserver's 422 message, e.g. `TokenRequest.authentication.k8s.io "sa" is invalid:
    /// spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes`.
    pub fn invalid_message(&self, service_account: &str) -> String {
        match self {
            TokenError::InvalidSpec(field) => format!(
                "TokenRequest.authentication.k8s.io {service_account:?} is invalid: {field}"
            ),
        }
    }
}

/// The service account a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountRef {
    pub namespace: String,
    pub name: String,
    /// Set for issued tokens; `None` for static ones.
    pub uid: Option<String>,
}

/// The result of authenticating a bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub user: UserInfo,
    pub service_account: Option<ServiceAccountRef>,
    /// Expiry of issued tokens.
    pub expires: Option<DateTime<Utc>>,
    /// The `aud` claim of issued tokens; empty for static tokens (valid for any audience).
    pub audiences: Vec<String>,
}

/// Issues and verifies bearer tokens.
pub struct TokenIssuer {
    key: [u8; 32],
}

impl Default for TokenIssuer {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenIssuer {
    /// An issuer with a fresh random signing key.
    pub fn new() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        TokenIssuer { key }
    }

    /// An issuer with a fixed key (deterministic tokens for tests).
    pub fn with_key(key: [u8; 32]) -> Self {
        TokenIssuer { key }
    }

    /// The static token for a service account (`sim-sa:<ns>:<name>`).
    pub fn static_token(namespace: &str, name: &str) -> String {
        format!("{STATIC_SA_PREFIX}{namespace}:{name}")
    }

    /// Issues a one-hour token for the service account (see [`TokenIssuer::issue_at`]).
    pub fn issue(&self, namespace: &str, name: &str, uid: &str) -> String {
        self.issue_at(
            namespace,
            name,
            uid,
            &[],
            DEFAULT_EXPIRATION_SECONDS,
            Utc::now(),
        )
    }

    /// Issues a signed token valid from `now` for `expiration_seconds`.
    pub fn issue_at(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        audiences: &[String],
        expiration_seconds: i64,
        now: DateTime<Utc>,
    ) -> String {
        let iat = now.timestamp();
        let claims = json!({
            "aud": audiences,
            "exp": iat.saturating_add(expiration_seconds),
            "iat": iat,
            "iss": ISSUER,
            "jti": uuid::Uuid::new_v4().to_string(),
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": name, "uid": uid}
            },
            "nbf": iat,
            "sub": format!("system:serviceaccount:{namespace}:{name}"),
        });
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{payload}");
        let sig = URL_SAFE_NO_PAD.encode(hmac_sha256(&self.key, signing_input.as_bytes()));
        format!("{signing_input}.{sig}")
    }

    /// Handles a TokenRequest body (`authentication.k8s.io/v1`) for the service account and
    /// returns the response object with `spec` defaulted and `status.token` /
    /// `status.expirationTimestamp` filled.
    pub fn token_request(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        request: &Value,
        now: DateTime<Utc>,
    ) -> Result<Value, TokenError> {
        let spec = request.get("spec").cloned().unwrap_or_else(|| json!({}));
        let expiration = match spec.get("expirationSeconds") {
            None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
            Some(v) => v.as_i64().ok_or_else(|| {
                TokenError::InvalidSpec(format!(
                    "spec.expirationSeconds: Invalid value: {v}: must be an integer"
                ))
            })?,
        };
        if expiration < MIN_EXPIRATION_SECONDS {
            return Err(TokenError::InvalidSpec(format!(
                "spec.expirationSeconds: Invalid value: {expiration}: may not specify a duration less than 10 minutes"
            )));
        }
        if expiration > MAX_EXPIRATION_SECONDS {
            return Err(TokenError::InvalidSpec(format!(
                "spec.expirationSeconds: Invalid value: {expiration}: may not specify a duration larger than 2^32 seconds"
            )));
        }
        let audiences: Vec<String> = spec
            .get("audiences")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .filter(|a: &Vec<String>| !a.is_empty())
            .unwrap_or_else(|| vec![ISSUER.to_string()]);
        let token = self.issue_at(namespace, name, uid, &audiences, expiration, now);
        let expires = now + chrono::Duration::seconds(expiration);
        Ok(json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "creationTimestamp": rfc3339(now),
            },
            "spec": {
                "audiences": audiences,
                "expirationSeconds": expiration,
                "boundObjectRef": spec.get("boundObjectRef").cloned().unwrap_or(Value::Null),
            },
            "status": {
                "token": token,
                "expirationTimestamp": rfc3339(expires),
            }
        }))
    }

    /// The user behind a bearer token, now (see [`TokenIssuer::authenticate_at`]).
    pub fn authenticate(&self, token: &str) -> Option<UserInfo> {
        self.authenticate_at(token, Utc::now()).map(|a| a.user)
    }

    /// Authenticates a bearer token at time `now`: static tokens always, issued tokens when the
    /// signature verifies and `nbf <= now < exp`.
    pub fn authenticate_at(&self, token: &str, now: DateTime<Utc>) -> Option<Authenticated> {
        let token = token.trim();
        if token == STATIC_ADMIN {
            return Some(Authenticated {
                user: UserInfo::admin(),
                service_account: None,
                expires: None,
                audiences: Vec::new(),
            });
        }
        if let Some(rest) = token.strip_prefix(STATIC_SA_PREFIX) {
            let (ns, name) = rest.split_once(':')?;
            if ns.is_empty() || name.is_empty() || name.contains(':') {
                return None;
            }
            return Some(Authenticated {
                user: UserInfo::service_account(ns, name),
                service_account: Some(ServiceAccountRef {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                    uid: None,
                }),
                expires: None,
                audiences: Vec::new(),
            });
        }
        if let Some(rest) = token.strip_prefix(STATIC_USER_PREFIX) {
            let (name, groups) = rest.split_once(':').unwrap_or((rest, ""));
            if name.is_empty() {
                return None;
            }
            let mut groups: Vec<String> = groups
                .split(',')
                .filter(|g| !g.is_empty())
                .map(str::to_string)
                .collect();
            if !groups.iter().any(|g| g == super::GROUP_AUTHENTICATED) {
                groups.push(super::GROUP_AUTHENTICATED.to_string());
            }
            return Some(Authenticated {
                user: UserInfo {
                    username: name.to_string(),
                    groups,
                },
                service_account: None,
                expires: None,
                audiences: Vec::new(),
            });
        }
        self.verify_jwt(token, now)
    }

    fn verify_jwt(&self, token: &str, now: DateTime<Utc>) -> Option<Authenticated> {
        let (signing_input, sig) = token.rsplit_once('.')?;
        let (_, payload) = signing_input.split_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        let want = hmac_sha256(&self.key, signing_input.as_bytes());
        if !constant_time_eq(&sig, &want) {
            return None;
        }
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let exp = claims.get("exp")?.as_i64()?;
        let nbf = claims
            .get("nbf")
            .and_then(Value::as_i64)
            .unwrap_or(i64::MIN);
        let t = now.timestamp();
        if t >= exp || t < nbf {
            return None;
        }
        let k = claims.get("kubernetes.io")?;
        let ns = k.get("namespace")?.as_str()?;
        let sa = k.get("serviceaccount")?;
        let name = sa.get("name")?.as_str()?;
        let uid = sa.get("uid").and_then(Value::as_str).map(str::to_string);
        Some(Authenticated {
            user: UserInfo::service_account(ns, name),
            service_account: Some(ServiceAccountRef {
                namespace: ns.to_string(),
                name: name.to_string(),
                uid,
            }),
            expires: Utc.timestamp_opt(exp, 0).single(),
            audiences: match claims.get("aud") {
                Some(Value::String(a)) => vec![a.clone()],
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                _ => Vec::new(),
            },
        })
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// HMAC-SHA256 (RFC 2104).
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut ipad = [0x36u8; BLOCK];
    let mut opad = [0x5cu8; BLOCK];
    for i in 0..BLOCK {
        ipad[i] ^= k[i];
        opad[i] ^= k[i];
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn hmac_matches_rfc4231_vectors() {
        // RFC 4231 test case 2.
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // RFC 4231 test case 6 (key longer than the block).
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn static_service_account_token() {
        let issuer = TokenIssuer::new();
        let tok = TokenIssuer::static_token("hs", "operator");
        assert_eq!(tok, "sim-sa:hs:operator");
        let user = issuer.authenticate(&tok).unwrap();
        assert_eq!(user.username, "system:serviceaccount:hs:operator");
        assert_eq!(
            user.groups,
            vec![
                "system:serviceaccounts",
                "system:serviceaccounts:hs",
                "system:authenticated"
            ]
        );
        assert!(issuer.authenticate("sim-sa:hs").is_none());
        assert!(issuer.authenticate("sim-sa::x").is_none());
        assert!(issuer.authenticate("sim-sa:a:b:c").is_none());
    }

    #[test]
    fn static_admin_and_user_tokens() {
        let issuer = TokenIssuer::new();
        let admin = issuer.authenticate("sim-admin").unwrap();
        assert!(admin.groups.contains(&"system:masters".to_string()));
        let u = issuer.authenticate("sim-user:alice:devs,ops").unwrap();
        assert_eq!(u.username, "alice");
        assert_eq!(u.groups, vec!["devs", "ops", "system:authenticated"]);
        let u = issuer.authenticate("sim-user:bob").unwrap();
        assert_eq!(u.groups, vec!["system:authenticated"]);
        assert!(issuer.authenticate("garbage").is_none());
        assert!(issuer.authenticate("").is_none());
    }

    #[test]
    fn issued_token_verifies_and_expires() {
        let issuer = TokenIssuer::with_key([7; 32]);
        let tok = issuer.issue_at("ns", "sa", "uid-1", &[], 600, t0());
        assert_eq!(tok.split('.').count(), 3);
        let a = issuer.authenticate_at(&tok, t0()).unwrap();
        assert_eq!(a.user, UserInfo::service_account("ns", "sa"));
        assert_eq!(
            a.service_account,
            Some(ServiceAccountRef {
                namespace: "ns".into(),
                name: "sa".into(),
                uid: Some("uid-1".into())
            })
        );
        assert_eq!(a.expires, Some(t0() + chrono::Duration::seconds(600)));
        let later = t0() + chrono::Duration::seconds(599);
        assert!(issuer.authenticate_at(&tok, later).is_some());
        let expired = t0() + chrono::Duration::seconds(600);
        assert!(issuer.authenticate_at(&tok, expired).is_none());
        let before = t0() - chrono::Duration::seconds(1);
        assert!(issuer.authenticate_at(&tok, before).is_none());
    }

    #[test]
    fn forged_or_foreign_tokens_are_rejected() {
        let issuer = TokenIssuer::with_key([1; 32]);
        let other = TokenIssuer::with_key([2; 32]);
        let tok = other.issue_at("ns", "sa", "u", &[], 3600, t0());
        assert!(issuer.authenticate_at(&tok, t0()).is_none());
        // Swap in claims for another account but keep the signature.
        let good = issuer.issue_at("ns", "sa", "u", &[], 3600, t0());
        let evil = issuer.issue_at("kube-system", "admin", "u", &[], 3600, t0());
        let g: Vec<&str> = good.split('.').collect();
        let e: Vec<&str> = evil.split('.').collect();
        let forged = format!("{}.{}.{}", g[0], e[1], g[2]);
        assert!(issuer.authenticate_at(&forged, t0()).is_none());
        assert!(issuer.authenticate_at("a.b.c", t0()).is_none());
        assert!(issuer.authenticate_at("a.b", t0()).is_none());
    }

    #[test]
    fn token_request_response() {
        let issuer = TokenIssuer::with_key([3; 32]);
        let resp = issuer
            .token_request(
                "ns",
                "sa",
                "uid",
                &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                        "spec": {"expirationSeconds": 7200, "audiences": ["api"]}}),
                t0(),
            )
            .unwrap();
        assert_eq!(resp["kind"], "TokenRequest");
        assert_eq!(resp["spec"]["expirationSeconds"], 7200);
        assert_eq!(resp["spec"]["audiences"], json!(["api"]));
        assert_eq!(
            resp["status"]["expirationTimestamp"],
            "2026-01-01T02:00:00Z"
        );
        let tok = resp["status"]["token"].as_str().unwrap();
        let a = issuer.authenticate_at(tok, t0()).unwrap();
        assert_eq!(a.user.username, "system:serviceaccount:ns:sa");

        let resp = issuer
            .token_request("ns", "sa", "uid", &json!({}), t0())
            .unwrap();
        assert_eq!(resp["spec"]["expirationSeconds"], 3600);
        assert_eq!(resp["spec"]["audiences"], json!([ISSUER]));
        assert_eq!(
            resp["status"]["expirationTimestamp"],
            "2026-01-01T01:00:00Z"
        );
    }

    #[test]
    fn token_request_validation() {
        let issuer = TokenIssuer::with_key([3; 32]);
        let err = issuer
            .token_request(
                "ns",
                "sa",
                "uid",
                &json!({"spec": {"expirationSeconds": 60}}),
                t0(),
            )
            .unwrap_err();
        assert_eq!(
            err.invalid_message("sa"),
            "TokenRequest.authentication.k8s.io \"sa\" is invalid: spec.expirationSeconds: \
             Invalid value: 60: may not specify a duration less than 10 minutes"
        );
        assert!(
            issuer
                .token_request(
                    "ns",
                    "sa",
                    "uid",
                    &json!({"spec": {"expirationSeconds": 1_i64 << 33}}),
                    t0()
                )
                .is_err()
        );
        assert!(
            issuer
                .token_request(
                    "ns",
                    "sa",
                    "uid",
                    &json!({"spec": {"expirationSeconds": "x"}}),
                    t0()
                )
                .is_err()
        );
    }
}

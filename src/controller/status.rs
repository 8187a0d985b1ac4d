//! Writing status: server-side apply on the status subresource under the operator's field manager,
//! only when something changed (no write, no event, no hot loop).

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde_json::json;

use crate::error::Error;
use crate::workload::labels::FIELD_MANAGER;

/// Apply `status` to the object's status subresource when it differs from `old`.
pub async fn apply_status<K, S>(
    api: &Api<K>,
    name: &str,
    old: Option<&S>,
    status: &S,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()> + Clone,
    S: Serialize + PartialEq,
{
    if old == Some(status) {
        return Ok(false);
    }
    let body = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    patch_for_version(api, name, Some("status"), &params, &Patch::Apply(&body))
        .await
        .map_err(Error::kube("apply status"))?;
    Ok(true)
}

/// What the caches say about a child's live object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Live {
    /// Not cached (no reflector for this kind).
    Unknown,
    /// Cached and absent.
    Absent,
    /// Cached with this resourceVersion.
    Version(String),
}

/// How long a child this process applied may be missing from the cache before it is applied again
/// (the watch delivers it moments after the write).
pub const ABSENT_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// How long an unchanged child of an uncached kind goes without being re-applied.
pub const REAPPLY_AFTER: std::time::Duration = std::time::Duration::from_secs(300);

struct Applied {
    digest: u64,
    resource_version: Option<String>,
    at: std::time::Instant,
}

/// The children this process applied: their desired-state digest and the resourceVersion the API
/// server answered with, so an unchanged child is not applied again on every reconcile.
#[derive(Default)]
pub struct AppliedCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, Applied>>,
}

impl AppliedCache {
    fn key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
        format!(
            "{}/{}/{}",
            K::kind(&()),
            obj.meta().namespace.as_deref().unwrap_or_default(),
            obj.meta().name.as_deref().unwrap_or_default()
        )
    }

    /// Whether applying `digest` again would change nothing: same desired state as the last apply,
    /// and the live object is still the version that apply produced (or, for kinds without a cache,
    /// the last apply is recent).
    fn is_current(&self, key: &str, digest: u64, live: &Live) -> bool {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(applied) = entries.get(key) else {
            return false;
        };
        applied.digest == digest
            && match live {
                Live::Version(v) => applied.resource_version.as_deref() == Some(v.as_str()),
                Live::Absent => applied.at.elapsed() < ABSENT_GRACE,
                Live::Unknown => applied.at.elapsed() < REAPPLY_AFTER,
            }
    }

    /// Forget a child (its owner is gone).
    pub fn forget(&self, kind: &str, namespace: &str, name: &str) {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&format!("{kind}/{namespace}/{name}"));
    }

    fn record(&self, key: String, digest: u64, resource_version: Option<String>) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.insert(
            key,
            Applied {
                digest,
                resource_version,
                at: std::time::Instant::now(),
            },
        );
    }
}

/// Server-side apply a child object under the operator's field manager (forced: the operator owns its
/// children), skipped when the cache shows it would change nothing (returns whether it applied).
/// Drift is still corrected: a child edited by someone else has a new resourceVersion (cached kinds),
/// and uncached kinds are re-applied at least every [`REAPPLY_AFTER`]. A cached child this process
/// applied moments ago and the cache does not show yet is not applied again within [`ABSENT_GRACE`].
pub async fn apply_child_cached<K>(
    cache: &AppliedCache,
    api: &Api<K>,
    obj: &K,
    live: Live,
    step: &'static str,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize,
{
    use std::hash::{Hash, Hasher};
    let bytes = serde_json::to_vec(obj).map_err(|source| Error::Serialization {
        what: "child object",
        source,
    })?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    let digest = hasher.finish();
    let key = AppliedCache::key(obj);
    if cache.is_current(&key, digest, &live) {
        return Ok(false);
    }
    let name = obj.meta().name.as_deref().ok_or(Error::MissingMetadata {
        kind: "child",
        field: "name",
    })?;
    // The bytes hashed above are the body sent: the child is serialized once.
    let rv = send_for_version(
        api,
        name,
        None,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(()),
        Some(bytes),
    )
    .await
    .map_err(Error::kube(step))?;
    cache.record(key, digest, rv);
    Ok(true)
}

/// What the operator reads of the API server's answer to a write it only needs the new
/// resourceVersion of. Decoding the whole answer into the typed object (with its `managedFields`)
/// was about a sixth of the operator's CPU at 10,000 nodes; serde skips every other field here.
#[derive(serde::Deserialize)]
struct Answer {
    #[serde(default)]
    metadata: AnswerMeta,
}

#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnswerMeta {
    resource_version: Option<String>,
}

/// PATCH an object (or its `subresource`) and return the resourceVersion the API server answered,
/// without decoding the rest of the object.
pub async fn patch_for_version<K, P>(
    api: &Api<K>,
    name: &str,
    subresource: Option<&str>,
    params: &PatchParams,
    patch: &Patch<P>,
) -> Result<Option<String>, kube::Error>
where
    K: Resource + Clone,
    P: Serialize,
{
    send_for_version(api, name, subresource, params, patch, None).await
}

/// [`patch_for_version`], with the patch's body given as already serialized `body` when `Some`
/// (`patch` then only says which patch type, for the request's content type).
async fn send_for_version<K, P>(
    api: &Api<K>,
    name: &str,
    subresource: Option<&str>,
    params: &PatchParams,
    patch: &Patch<P>,
    body: Option<Vec<u8>>,
) -> Result<Option<String>, kube::Error>
where
    K: Resource + Clone,
    P: Serialize,
{
    let request = kube::core::Request::new(api.resource_url());
    let mut req = match subresource {
        Some(sub) => request.patch_subresource(sub, name, params, patch),
        None => request.patch(name, params, patch),
    }
    .map_err(kube::Error::BuildRequest)?;
    if let Some(body) = body {
        *req.body_mut() = body;
    }
    req.extensions_mut().insert(match subresource {
        Some("status") => "patch_status",
        Some(_) => "patch_subresource",
        None => "patch",
    });
    let answer: Answer = kube::Client::from(api.clone()).request(req).await?;
    Ok(answer.metadata.resource_version)
}

/// The resourceVersion the API server answered to the last status this process wrote per object, so
/// a reconcile that reads a cache older than its own write does not decide (and write) again, and
/// the watch event of that write (its echo) does not wake the reconcile for nothing.
#[derive(Default)]
pub struct WrittenStatus(std::sync::Mutex<std::collections::HashMap<String, Written>>);

#[derive(Clone, Copy)]
struct Written {
    rv: u64,
    /// A reconcile found the cache behind this write and left the object to the write's echo.
    deferred: bool,
    /// The watch has delivered this write (or a later version): the store holds it (or will at
    /// the end of a relist).
    echoed: bool,
}

/// How a reconcile's object stands against this process's last status write of it.
#[derive(Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Not older than the write: decide.
    Current,
    /// Older, and the write's echo is still to come: it triggers the object again.
    Behind,
    /// Older, but the echo has passed (the reconcile read its object just before the store took
    /// it): read again shortly, no event will come.
    Passed,
}

/// Digest of a JSON document.
pub fn digest_of(value: &serde_json::Value) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.to_string().hash(&mut hasher);
    hasher.finish()
}

impl WrittenStatus {
    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Written>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the cached object (`cached_rv`) predates the last status this process wrote for
    /// `key`: a plan made from it is stale, and its write would only repeat or undo that write. The
    /// write's own watch event brings the reconcile back with a current cache (see
    /// [`WrittenStatus::is_quiet_echo`]) unless it has passed already.
    pub fn freshness(&self, key: &str, cached_rv: Option<&str>) -> Freshness {
        let mut map = self.map();
        let Some(written) = map.get_mut(key) else {
            return Freshness::Current;
        };
        let behind = cached_rv
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|cached| cached < written.rv);
        match (behind, written.echoed) {
            (false, _) => Freshness::Current,
            (true, true) => Freshness::Passed,
            (true, false) => {
                written.deferred = true;
                Freshness::Behind
            }
        }
    }

    /// Whether a watch event of `key` at `rv` is the echo of this process's last status write and
    /// nothing waited for it: the object is what the reconcile that wrote it decided, so it has
    /// nothing new to decide (any other change has its own event, a timer its own requeue). An echo
    /// a reconcile was deferred to is not quiet: that reconcile runs now.
    pub fn is_quiet_echo(&self, key: &str, rv: Option<&str>) -> bool {
        let mut map = self.map();
        let (Some(written), Some(rv)) = (map.get_mut(key), rv.and_then(|v| v.parse::<u64>().ok()))
        else {
            return false;
        };
        if rv < written.rv {
            return false;
        }
        let quiet = rv == written.rv && !written.deferred;
        written.deferred = false;
        written.echoed = true;
        quiet
    }

    /// Remember the resourceVersion a status write answered (an opaque value that is not a number
    /// disables the checks for that object).
    pub fn record(&self, key: String, rv: Option<&str>) {
        let mut map = self.map();
        match rv.and_then(|v| v.parse::<u64>().ok()) {
            Some(rv) => map.insert(
                key,
                Written {
                    rv,
                    deferred: false,
                    echoed: false,
                },
            ),
            None => map.remove(&key),
        };
    }

    pub fn forget(&self, key: &str) {
        self.map().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::{Freshness, WrittenStatus};

    #[test]
    fn only_the_echo_of_the_last_write_that_nothing_waited_for_is_quiet() {
        let w = WrittenStatus::default();
        // Nothing written: every event counts.
        assert!(!w.is_quiet_echo("n", Some("5")));
        w.record("n".into(), Some("10"));
        // An older version, someone else's later change, an opaque version: not the echo.
        assert!(!w.is_quiet_echo("n", Some("9")));
        assert!(!w.is_quiet_echo("n", Some("11")));
        assert!(!w.is_quiet_echo("n", Some("x")));
        w.record("n".into(), Some("12"));
        assert!(w.is_quiet_echo("n", Some("12")));
        // A reconcile that found the cache behind the write waits for the echo: it is not quiet.
        w.record("n".into(), Some("14"));
        assert_eq!(w.freshness("n", Some("12")), Freshness::Behind);
        assert!(!w.is_quiet_echo("n", Some("14")));
        assert_eq!(w.freshness("n", Some("14")), Freshness::Current);
        // ... once.
        assert!(w.is_quiet_echo("n", Some("14")));
        // A reconcile that read its object just before the echo reached the store: the echo has
        // passed (quiet, nothing queued), so that reconcile must read again rather than wait.
        w.record("n".into(), Some("16"));
        assert!(w.is_quiet_echo("n", Some("16")));
        assert_eq!(w.freshness("n", Some("14")), Freshness::Passed);
        // A write whose answer has no usable version disables the checks.
        w.record("n".into(), None);
        assert!(!w.is_quiet_echo("n", Some("14")));
        assert_eq!(w.freshness("n", Some("1")), Freshness::Current);
    }
}

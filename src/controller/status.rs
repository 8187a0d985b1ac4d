//! Writing status: server-side apply on the status subresource under the operator's field manager,
//! only when something changed (no write, no event, no hot loop).

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
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
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
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
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(Error::kube("apply status"))?;
    Ok(true)
}

/// Server-side apply a child object under the operator's field manager (forced: the operator owns its
/// children).
pub async fn apply_child<K>(api: &Api<K>, obj: &K, step: &'static str) -> Result<K, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let name = obj.meta().name.clone().ok_or(Error::MissingMetadata {
        kind: "child",
        field: "name",
    })?;
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .map_err(Error::kube(step))
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

/// [`apply_child`], skipped when the cache shows it would change nothing (returns whether it applied).
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
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
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
    let applied = apply_child(api, obj, step).await?;
    cache.record(key, digest, applied.meta().resource_version.clone());
    Ok(true)
}

/// The resourceVersion the API server answered to the last status this process wrote per object, so
/// a reconcile that reads a cache older than its own write does not decide (and write) again.
#[derive(Default)]
pub struct WrittenStatus(std::sync::Mutex<std::collections::HashMap<String, u64>>);

/// Digest of a JSON document.
pub fn digest_of(value: &serde_json::Value) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.to_string().hash(&mut hasher);
    hasher.finish()
}

impl WrittenStatus {
    /// Whether the cached object (`cached_rv`) predates the last status this process wrote for
    /// `key`: a plan made from it is stale, and its write would only repeat or undo that write. The
    /// write's own watch event brings the reconcile back with a current cache.
    pub fn cache_is_behind(&self, key: &str, cached_rv: Option<&str>) -> bool {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(written_rv) = map.get(key) else {
            return false;
        };
        cached_rv
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|cached| cached < *written_rv)
    }

    /// Remember the resourceVersion a status write answered (an opaque value that is not a number
    /// disables the check for that object).
    pub fn record(&self, key: String, rv: Option<&str>) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match rv.and_then(|v| v.parse::<u64>().ok()) {
            Some(rv) => map.insert(key, rv),
            None => map.remove(&key),
        };
    }

    pub fn forget(&self, key: &str) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

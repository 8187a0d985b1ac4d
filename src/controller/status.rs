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
                Live::Absent => false,
                Live::Unknown => applied.at.elapsed() < REAPPLY_AFTER,
            }
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

/// [`apply_child`], skipped when the cache shows it would change nothing. Drift is still corrected:
/// a child edited by someone else has a new resourceVersion (cached kinds), and uncached kinds are
/// re-applied at least every [`REAPPLY_AFTER`].
pub async fn apply_child_cached<K>(
    cache: &AppliedCache,
    api: &Api<K>,
    obj: &K,
    live: Live,
    step: &'static str,
) -> Result<(), Error>
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
        return Ok(());
    }
    let applied = apply_child(api, obj, step).await?;
    cache.record(key, digest, applied.meta().resource_version.clone());
    Ok(())
}

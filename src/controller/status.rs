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

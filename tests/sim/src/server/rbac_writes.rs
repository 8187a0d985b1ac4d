//! RBAC escalation prevention on the Role/ClusterRole/RoleBinding/ClusterRoleBinding write path
//! (`auth/escalation.rs` decides; this applies it to creates and updates that carry a user).

use super::SimState;
use super::errors::ApiError;
use super::registry::ResourceInfo;
use crate::auth::{self, UserInfo};
use serde_json::Value;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

impl SimState {
    /// 403 when a user's write of an RBAC role or binding would grant permissions they do not
    /// hold (without `escalate` / `bind`). Only under `--authorize` (without RBAC enforcement no
    /// one is limited) and only for requests with a user (kube-sim's own writes are not checked);
    /// an update that only changes owner references or finalizers is not checked, as upstream.
    pub(super) fn check_escalation(
        &self,
        ri: &ResourceInfo,
        ns: &str,
        new: &Value,
        old: Option<&Value>,
        user: Option<&UserInfo>,
    ) -> Result<(), ApiError> {
        if !self.config.authorize || ri.group != RBAC_GROUP || ri.is_crd {
            return Ok(());
        }
        let Some(user) = user else {
            return Ok(());
        };
        if old.is_some_and(|o| auth::escalation::only_gc_fields_change(o, new)) {
            return Ok(());
        }
        let allowed = |a: &auth::Attributes| auth::authorize(self, user, a).is_ok();
        auth::escalation::check_write(self, &allowed, user, &ri.plural, ns, new).map_err(|reason| {
            let name = new
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            ApiError::forbidden_object(&ri.group, &ri.plural, name, &reason)
        })
    }
}

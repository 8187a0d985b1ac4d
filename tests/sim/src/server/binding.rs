//! The `pods/binding` subresource as one store write (`dataplane::bind_pod`: `spec.nodeName`,
//! the Binding's annotations and `PodScheduled=True`), shared by the HTTP handler and the data
//! plane's scheduler (`ClusterApi::bind`). Like the apiserver's BindingREST it writes the pod
//! straight to storage: no field manager entry, no generation bump; a storage conflict is retried.

use super::SimState;
use super::errors::ApiError;
use super::registry::ResourceInfo;
use crate::dataplane::{BindError, Binding, bind_pod};
use crate::store::{StoreError, now_rfc3339, rv_of};
use serde_json::{Value, json};
use std::sync::Arc;

impl SimState {
    /// Binds pod `b.name` in `ns`; the stored pod (the would-be pod with `dry_run`).
    pub fn bind_pod(
        &self,
        ri: &ResourceInfo,
        ns: &str,
        b: &Binding,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        for _ in 0..32 {
            let old = self
                .store
                .get(&ri.table, ns, &b.name)
                .ok_or_else(|| ApiError::not_found("", "pods", &b.name))?;
            let mut new = (*old).clone();
            bind_pod(&mut new, b, &now_rfc3339()).map_err(|e| bind_error(&e, &b.name))?;
            if dry_run {
                return Ok(Arc::new(new));
            }
            self.wire_order(ri, &mut new);
            match self
                .store
                .update(&ri.table, ns, &b.name, new, Some(rv_of(&old)))
            {
                Ok((_, stored)) => {
                    self.kick();
                    return Ok(stored);
                }
                Err(StoreError::Conflict) => continue,
                Err(StoreError::NotFound) => {
                    return Err(ApiError::not_found("", "pods", &b.name));
                }
                Err(e) => return Err(ApiError::internal(format!("{e:?}"))),
            }
        }
        Err(ApiError::conflict("", "pods", &b.name))
    }

    /// `POST .../pods/{name}/binding`: checks the Binding body as the apiserver does, admits it
    /// (a CREATE of `pods/binding`) and binds.
    pub(super) fn binding_request(
        &self,
        ri: &ResourceInfo,
        version: &str,
        ns: &str,
        name: &str,
        body: &Value,
        opts: &super::handlers::WriteOpts,
    ) -> Result<(), ApiError> {
        if let Some(bns) = body
            .get("metadata")
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            && bns != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let b = Binding::from_object(body).map_err(|message| {
            // ValidatePodBinding's errors reach the client as a plain error: 500, no reason.
            ApiError::from_status(json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": message, "code": 500,
            }))
        })?;
        if b.name != name {
            return Err(ApiError::bad_request(
                "name in URL does not match name in Binding object",
            ));
        }
        self.admit(
            ri,
            version,
            crate::admission::Operation::Create,
            Some("binding"),
            Some(body),
            None,
            opts.user.as_ref(),
            opts.dry_run,
        )?;
        self.bind_pod(ri, ns, &b, opts.dry_run).map(|_| ())
    }
}

fn bind_error(e: &BindError, name: &str) -> ApiError {
    match e {
        BindError::NotFound => ApiError::not_found("", "pods", name),
        BindError::Precondition(m) => ApiError::conflict_msg("", "pods", name, m),
        BindError::Refused(m) => ApiError::conflict_msg("", "pods/binding", name, m),
    }
}

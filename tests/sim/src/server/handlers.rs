//! The verbs over the store, synchronous so the HTTP layer, the garbage collector and the data plane
//! share them: get, list, create, update (main, status, scale), patch (merge, JSON, strategic, apply),
//! delete with finalizers and propagation, deletecollection.

use super::SimState;
use super::deps;
use super::errors::ApiError;
use super::http::Query;
use super::registry::ResourceInfo;
use crate::patch::TypeHints;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{
    self, ListOptions, Preconditions, StoreError, fill_create_meta, json_path_get, now_rfc3339,
    obj_name, rv_of, uid_of,
};
use base64::Engine;
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::sync::Arc;

pub const FINALIZER_ORPHAN: &str = "orphan";
pub const FINALIZER_FOREGROUND: &str = "foregroundDeletion";
pub const FINALIZER_CRD_CLEANUP: &str = "customresourcecleanup.apiextensions.k8s.io";
pub const CRD_TABLE: &str = "apiextensions.k8s.io/customresourcedefinitions";
pub const NS_TABLE: &str = "/namespaces";

/// How unknown fields are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

/// Options shared by writes.
#[derive(Debug, Clone)]
pub struct WriteOpts {
    pub manager: String,
    pub dry_run: bool,
    pub validation: FieldValidation,
    pub force: bool,
    /// Who asks, for admission; `None` for kube-sim's own writes, which are not admitted.
    pub user: Option<crate::auth::UserInfo>,
}

impl WriteOpts {
    pub fn system(manager: &str) -> Self {
        WriteOpts {
            manager: manager.into(),
            dry_run: false,
            validation: FieldValidation::Ignore,
            force: false,
            user: None,
        }
    }

    pub fn from_query(q: &Query, user_agent: &str) -> Result<Self, ApiError> {
        let validation = match q.get("fieldValidation") {
            None | Some("Warn") => FieldValidation::Warn,
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "fieldValidation parameter unsupported: {other}"
                )));
            }
        };
        let dry_run = match q.get("dryRun") {
            None => false,
            Some("All") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "dryRun parameter unsupported: {other}"
                )));
            }
        };
        let manager = match q.get("fieldManager") {
            Some(m) => m.to_string(),
            None => default_manager(user_agent),
        };
        Ok(WriteOpts {
            manager,
            dry_run,
            validation,
            force: q.flag("force"),
            user: None,
        })
    }
}

/// The real server derives the default field manager from the user agent's first token.
pub fn default_manager(user_agent: &str) -> String {
    let m = user_agent.split('/').next().unwrap_or("").trim();
    if m.is_empty() {
        "unknown".into()
    } else {
        m.chars().take(128).collect()
    }
}

/// Result of a write.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    pub code: u16,
    /// The object as served: the stored object itself when it already has the served shape
    /// (no copy for the response).
    pub object: Arc<Value>,
    pub warnings: Vec<String>,
}

/// Patch content types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

/// Delete options from the body or query.
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub propagation: Option<String>,
    pub grace_period: Option<i64>,
    pub preconditions: Preconditions,
    pub dry_run: bool,
    /// Who asks, for admission; `None` for kube-sim's own deletions.
    pub user: Option<crate::auth::UserInfo>,
}

impl DeleteOpts {
    pub fn parse(q: &Query, body: &[u8]) -> Result<Self, ApiError> {
        let mut o = DeleteOpts {
            propagation: q.get("propagationPolicy").map(str::to_string),
            grace_period: q.get("gracePeriodSeconds").and_then(|s| s.parse().ok()),
            dry_run: q.get("dryRun") == Some("All"),
            ..Default::default()
        };
        if q.get("orphanDependents") == Some("true") && o.propagation.is_none() {
            o.propagation = Some("Orphan".into());
        }
        if !body.iter().all(u8::is_ascii_whitespace) {
            let v: Value = serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!("failed to decode DeleteOptions: {e}"))
            })?;
            if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
                o.propagation = Some(p.into());
            }
            if v.get("orphanDependents").and_then(Value::as_bool) == Some(true)
                && o.propagation.is_none()
            {
                o.propagation = Some("Orphan".into());
            }
            if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
                o.grace_period = Some(g);
            }
            if let Some(p) = v.get("preconditions") {
                o.preconditions.uid = p.get("uid").and_then(Value::as_str).map(str::to_string);
                o.preconditions.resource_version = p
                    .get("resourceVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            if let Some(d) = v.get("dryRun").and_then(Value::as_array) {
                o.dry_run |= d.iter().any(|x| x == "All");
            }
        }
        match o.propagation.as_deref() {
            None | Some("Background" | "Foreground" | "Orphan") => Ok(o),
            Some(p) => Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
            ))),
        }
    }
}

/// Kinds whose client-supplied status is reset on create, like the real strategies do.
fn resets_status_on_create(ri: &ResourceInfo, version: &str) -> bool {
    ri.status_sub(version) && !matches!(ri.plural.as_str(), "nodes" | "persistentvolumes")
}

fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

fn meta_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    store::metadata_mut(obj)
}

pub use crate::store::{finalizers, is_deleting};

pub fn set_finalizers(obj: &mut Value, f: &[String]) {
    if let Some(m) = meta_mut(obj) {
        if f.is_empty() {
            m.remove("finalizers");
        } else {
            m.insert("finalizers".into(), json!(f));
        }
    }
}

/// Top-level fields other than apiVersion/kind/metadata (and status when `ignore_status`) differ.
fn spec_differs(old: &Value, new: &Value, ignore_status: bool) -> bool {
    let skip = |k: &str| {
        matches!(k, "apiVersion" | "kind" | "metadata") || (ignore_status && k == "status")
    };
    let empty = Map::new();
    let o = old.as_object().unwrap_or(&empty);
    let n = new.as_object().unwrap_or(&empty);
    o.iter().any(|(k, v)| !skip(k) && n.get(k) != Some(v))
        || n.iter().any(|(k, v)| !skip(k) && o.get(k) != Some(v))
}

/// Objects equal except resourceVersion and managedFields.
fn same_except_bookkeeping(a: &Value, b: &Value) -> bool {
    let (Some(ao), Some(bo)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    if ao.len() != bo.len() {
        return false;
    }
    for (k, v) in ao {
        let Some(w) = bo.get(k) else { return false };
        if k == "metadata" {
            let (Some(am), Some(bm)) = (v.as_object(), w.as_object()) else {
                if v != w {
                    return false;
                }
                continue;
            };
            let ign = |k: &str| matches!(k, "resourceVersion" | "managedFields");
            if am.iter().filter(|(k, _)| !ign(k)).count()
                != bm.iter().filter(|(k, _)| !ign(k)).count()
            {
                return false;
            }
            if am.iter().any(|(k, v)| !ign(k) && bm.get(k) != Some(v)) {
                return false;
            }
        } else if v != w {
            return false;
        }
    }
    true
}

/// The DNS-1123 subdomain character rules, whatever the length.
pub(super) fn is_dns_subdomain_chars(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Continue tokens: base64 of `{"rv":N,"start":"key"}`.
pub fn encode_continue(rv: u64, key: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(json!({"rv": rv, "start": key}).to_string())
}

pub fn decode_continue(token: &str) -> Option<(u64, String)> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    Some((
        v.get("rv")?.as_u64()?,
        v.get("start")?.as_str()?.to_string(),
    ))
}

/// Label + field selector for lists and watches.
pub struct Selectors {
    pub label: Option<LabelSelector>,
    pub field: Option<FieldSelector>,
    /// The resource's field labels (which are supported, what each reads on an object).
    pub field_labels: Option<crate::field_labels::FieldLabels>,
}

impl Selectors {
    /// Selectors of a list or watch of `ri` at `version`: a field label the resource does not
    /// support is a 400 with the apiserver's message.
    pub fn for_resource(q: &Query, ri: &ResourceInfo, version: &str) -> Result<Self, ApiError> {
        let mut s = Self::from_query(q)?;
        if let Some(f) = &s.field {
            let crd_version = if ri.is_crd {
                Some(
                    ri.version(version)
                        .and_then(|v| v.crd_version.as_ref())
                        .unwrap_or(&Value::Null),
                )
            } else {
                None
            };
            let labels = crate::field_labels::FieldLabels::new(
                &ri.group,
                &ri.plural,
                ri.namespaced,
                crd_version,
            );
            labels.check(f).map_err(ApiError::bad_request)?;
            s.field_labels = Some(labels);
        }
        Ok(s)
    }

    pub fn from_query(q: &Query) -> Result<Self, ApiError> {
        let label =
            match q.get("labelSelector") {
                Some(s) => Some(LabelSelector::parse(s).map_err(|e| {
                    ApiError::bad_request(format!("unable to parse requirement: {e}"))
                })?),
                None => None,
            };
        let field = match q.get("fieldSelector") {
            Some(s) => Some(FieldSelector::parse(s).map_err(ApiError::bad_request)?),
            None => None,
        };
        Ok(Selectors {
            label,
            field,
            field_labels: None,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.label.is_none() && self.field.is_none()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(l) = &self.label {
            let empty = Map::new();
            let labels = obj
                .get("metadata")
                .and_then(|m| m.get("labels"))
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            if !l.matches(labels) {
                return false;
            }
        }
        if let Some(f) = &self.field {
            let ok = match &self.field_labels {
                Some(fl) => f.matches_with(obj, &|o, l| fl.value(o, l)),
                None => f.matches(obj),
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

/// core/v1 Event field names and their events.k8s.io/v1 counterparts.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

fn rename_fields(obj: &mut Value, from_core: bool) {
    if let Some(m) = obj.as_object_mut() {
        for (core, ev) in EVENT_FIELDS {
            let (a, b) = if from_core { (core, ev) } else { (ev, core) };
            if let Some(v) = m.remove(*a) {
                m.insert(b.to_string(), v);
            }
        }
    }
}

fn mutate_path<'a>(obj: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    let mut cur = obj;
    for p in path.trim_start_matches('.').split('.') {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        cur = cur
            .as_object_mut()?
            .entry(p.to_string())
            .or_insert(Value::Null);
    }
    Some(cur)
}

fn read_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    json_path_get(obj, &parts)
}

/// metav1.LabelSelector object -> selector string.
pub fn selector_string(sel: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            parts.push(format!("{k}={}", v.as_str().unwrap_or("")));
        }
    }
    if let Some(me) = sel.get("matchExpressions").and_then(Value::as_array) {
        for e in me {
            let k = e.get("key").and_then(Value::as_str).unwrap_or("");
            let vals: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                "In" => parts.push(format!("{k} in ({})", vals.join(","))),
                "NotIn" => parts.push(format!("{k} notin ({})", vals.join(","))),
                "Exists" => parts.push(k.to_string()),
                "DoesNotExist" => parts.push(format!("!{k}")),
                _ => {}
            }
        }
    }
    parts.join(",")
}

impl SimState {
    fn hints(&self, ri: &ResourceInfo, version: &str) -> Arc<TypeHints> {
        ri.version(version)
            .map(|v| v.hints.clone())
            .unwrap_or_else(|| Arc::new(TypeHints::untyped()))
    }

    /// Built-in validation beyond names (`builtin_validation.rs`): Event limits. `create` for
    /// creates (events.k8s.io/v1 creates get the strict checks).
    fn validate_builtin(
        &self,
        ri: &ResourceInfo,
        obj: &Value,
        create: bool,
    ) -> Result<(), ApiError> {
        let errors = match (ri.group.as_str(), ri.plural.as_str()) {
            ("" | "events.k8s.io", "events") => {
                let strict = create && ri.group == "events.k8s.io";
                super::builtin_validation::validate_event(obj, strict)
            }
            ("certificates.k8s.io", "certificatesigningrequests") if create => {
                super::certificates::validate_csr(obj)
            }
            _ => return Ok(()),
        };
        if errors.is_empty() {
            return Ok(());
        }
        Err(ApiError::from_status(crate::schema::invalid_status(
            &ri.kind,
            &ri.group,
            obj_name(obj),
            &errors,
        )))
    }

    /// Puts an object about to be stored in the apiserver's wire key order (`wire.rs`).
    pub fn wire_order(&self, ri: &ResourceInfo, obj: &mut Value) {
        if ri.is_crd {
            super::wire::order_custom(obj);
        } else {
            super::wire::order_builtin(obj);
        }
    }

    /// Converts a stored object to the shape served at `version`.
    pub fn to_served(&self, ri: &ResourceInfo, version: &str, obj: &Value) -> Value {
        let mut out = obj.clone();
        self.to_served_in_place(ri, version, &mut out);
        out
    }

    /// `to_served` of a stored object: the same `Arc` when it already has the served shape.
    pub fn served_arc(&self, ri: &ResourceInfo, version: &str, obj: &Arc<Value>) -> Arc<Value> {
        match self.to_served_cow(ri, version, obj) {
            Cow::Borrowed(_) => Arc::clone(obj),
            Cow::Owned(o) => Arc::new(o),
        }
    }

    /// `to_served`, borrowing `obj` when it already has the served shape (no copy).
    pub fn to_served_cow<'a>(
        &self,
        ri: &ResourceInfo,
        version: &str,
        obj: &'a Value,
    ) -> Cow<'a, Value> {
        let same = ri.group != "events.k8s.io"
            && obj.get("kind").and_then(Value::as_str) == Some(ri.kind.as_str())
            && obj.get("apiVersion").and_then(Value::as_str) == Some(&ri.api_version(version));
        if same {
            Cow::Borrowed(obj)
        } else {
            Cow::Owned(self.to_served(ri, version, obj))
        }
    }

    pub fn needs_conversion(&self, ri: &ResourceInfo, version: &str) -> bool {
        ri.group == "events.k8s.io" || (ri.is_crd && version != ri.storage_version())
    }

    pub fn to_served_in_place(&self, ri: &ResourceInfo, version: &str, out: &mut Value) {
        if ri.group == "events.k8s.io" {
            rename_fields(out, true);
        }
        if let Some(m) = out.as_object_mut() {
            m.insert("apiVersion".into(), Value::String(ri.api_version(version)));
            m.insert("kind".into(), Value::String(ri.kind.clone()));
        }
    }

    /// Converts a request body to the stored shape.
    fn to_stored(&self, ri: &ResourceInfo, mut obj: Value) -> Value {
        if ri.group == "events.k8s.io" {
            rename_fields(&mut obj, false);
            if let Some(m) = obj.as_object_mut() {
                m.insert("apiVersion".into(), json!("v1"));
            }
        } else if let Some(m) = obj.as_object_mut() {
            m.insert(
                "apiVersion".into(),
                Value::String(ri.api_version(ri.storage_version())),
            );
        }
        if let Some(m) = obj.as_object_mut() {
            m.insert("kind".into(), Value::String(ri.kind.clone()));
        }
        obj
    }

    fn map_store_err(&self, ri: &ResourceInfo, name: &str, e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound => ApiError::not_found(&ri.group, &ri.plural, name),
            StoreError::AlreadyExists => ApiError::already_exists(&ri.group, &ri.plural, name),
            StoreError::Conflict => ApiError::conflict(&ri.group, &ri.plural, name),
            StoreError::Precondition(m) => ApiError::conflict_msg(&ri.group, &ri.plural, name, &m),
            StoreError::Expired { requested, oldest } => ApiError::gone(requested, oldest),
            StoreError::NameRequired => ApiError::invalid(
                &ri.group,
                &ri.kind,
                "",
                format!(
                    "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                    kind_qualified(ri)
                ),
                vec![(
                    "metadata.name".into(),
                    "FieldValueRequired".into(),
                    "Required value: name or generateName is required".into(),
                )],
            ),
        }
    }

    fn ns_of<'a>(&self, ri: &ResourceInfo, ns: Option<&'a str>) -> &'a str {
        if ri.namespaced { ns.unwrap_or("") } else { "" }
    }

    pub fn get_obj(
        &self,
        ri: &ResourceInfo,
        version: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let mut o = self
            .store
            .get_owned(&ri.table, self.ns_of(ri, ns), name)
            .ok_or_else(|| ApiError::not_found(&ri.group, &ri.plural, name))?;
        self.to_served_in_place(ri, version, &mut o);
        Ok(o)
    }

    /// A list page as `<Kind>List`.
    pub fn list_objs(
        &self,
        ri: &ResourceInfo,
        version: &str,
        ns: Option<&str>,
        q: &Query,
    ) -> Result<(Value, Vec<Value>), ApiError> {
        let sel = Selectors::for_resource(q, ri, version)?;
        let limit = q
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0);
        let mut opts = ListOptions {
            limit,
            ..Default::default()
        };
        let from_continue = q.get("continue").is_some();
        if let Some(c) = q.get("continue") {
            let (rv, start) = decode_continue(c).ok_or_else(|| {
                ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
            })?;
            opts.snapshot = Some(rv);
            opts.start_after = Some(start);
        } else if let Some(rv) = q.get("resourceVersion") {
            let n: u64 = rv.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "resourceVersion: Invalid value: \"{rv}\": must be a valid resourceVersion"
                ))
            })?;
            let exact = q.get("resourceVersionMatch") == Some("Exact");
            if (exact || limit.is_some()) && n != 0 {
                opts.snapshot = Some(n);
            }
        }
        let ns_filter = if ri.namespaced { ns } else { None };
        opts.unfiltered = sel.is_empty();
        let page = self
            .store
            .list(&ri.table, ns_filter, &opts, &|o| sel.matches(o))
            .map_err(|e| match e {
                StoreError::Expired { .. } if from_continue => ApiError::new(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                ),
                other => self.map_store_err(ri, "", other),
            })?;
        let mut list_meta = Map::new();
        list_meta.insert("resourceVersion".into(), json!(page.rv.to_string()));
        if let Some(after) = &page.continue_after {
            list_meta.insert("continue".into(), json!(encode_continue(page.rv, after)));
            if sel.is_empty() {
                list_meta.insert("remainingItemCount".into(), json!(page.remaining));
            }
        }
        // Cold objects come freshly decoded (not shared): served without another copy.
        let items: Vec<Value> = page
            .items
            .into_iter()
            .map(|o| {
                let mut o = Arc::unwrap_or_clone(o);
                self.to_served_in_place(ri, version, &mut o);
                o
            })
            .collect();
        let list = json!({
            "apiVersion": ri.api_version(version),
            "kind": ri.list_kind,
            "metadata": Value::Object(list_meta),
        });
        Ok((list, items))
    }

    fn check_namespace_for_create(
        &self,
        ri: &ResourceInfo,
        ns: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        if !ri.namespaced {
            return Ok(());
        }
        let nso = self
            .store
            .get(NS_TABLE, "", ns)
            .ok_or_else(|| ApiError::not_found("", "namespaces", ns))?;
        if is_deleting(&nso) {
            return Err(ApiError {
                code: 403,
                reason: "Forbidden",
                message: format!(
                    "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    super::errors::qualified(&ri.group, &ri.plural),
                    name
                ),
                details: Some(Box::new(
                    json!({"name": name, "group": ri.group, "kind": ri.plural, "causes":[{"reason":"NamespaceTerminating","message":format!("namespace {ns} is being terminated"),"field":"metadata.namespace"}]}),
                )),
                raw: None,
            });
        }
        Ok(())
    }

    /// Runs CRD schema defaulting/pruning/validation; returns warnings or a 422.
    fn run_schema(
        &self,
        ri: &ResourceInfo,
        version: &str,
        obj: &mut Value,
        old: Option<&Value>,
        opts: &WriteOpts,
    ) -> Result<Vec<String>, ApiError> {
        let Some(schema) = ri.version(version).and_then(|v| v.structural.clone()) else {
            return Ok(Vec::new());
        };
        let out = deps::run_crd_schema(&schema, &ri.kind, &ri.group, obj, old);
        if let Some(status) = out.invalid {
            return Err(ApiError::from_status(status));
        }
        let mut warnings = Vec::new();
        match opts.validation {
            FieldValidation::Ignore => {}
            FieldValidation::Warn => {
                for f in &out.unknown_fields {
                    warnings.push(crate::schema::unknown_field_warning(f));
                }
            }
            FieldValidation::Strict => {
                if !out.unknown_fields.is_empty() {
                    return Err(ApiError::bad_request(
                        crate::schema::strict_decoding_message(
                            &ri.kind,
                            &ri.api_version(version),
                            &out.unknown_fields,
                        ),
                    ));
                }
            }
        }
        Ok(warnings)
    }

    fn validate_name(&self, ri: &ResourceInfo, name: &str) -> Result<(), ApiError> {
        let label = matches!(ri.plural.as_str(), "namespaces" | "services");
        let charset_ok = match ri.plural.as_str() {
            // Length aside (checked below), as the DNS-1123 regexes.
            "namespaces" | "services" => !name.contains('.') && is_dns_subdomain_chars(name),
            // RBAC objects and a few others accept path-segment names (no length limit);
            // APIServices are named `<version>.<group>`, `v1.` for the core group.
            "roles" | "rolebindings" | "clusterroles" | "clusterrolebindings" | "apiservices" => {
                let ok = !name.is_empty()
                    && !name.contains('/')
                    && !name.contains('%')
                    && name != "."
                    && name != "..";
                if ok {
                    return Ok(());
                }
                false
            }
            _ => is_dns_subdomain_chars(name),
        };
        let charset_msg = if label {
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        } else {
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        };
        let msgs =
            super::builtin_validation::dns1123_name_errors(name, label, charset_ok, charset_msg);
        if msgs.is_empty() {
            return Ok(());
        }
        let errors: Vec<crate::schema::FieldError> = msgs
            .into_iter()
            .map(|m| crate::schema::FieldError::invalid("metadata.name", json!(name), m))
            .collect();
        Err(ApiError::from_status(crate::schema::invalid_status(
            &ri.kind, &ri.group, name, &errors,
        )))
    }

    /// Creates an object (POST).
    pub fn create_obj(
        &self,
        ri: &Arc<ResourceInfo>,
        version: &str,
        ns: Option<&str>,
        body: Value,
        opts: &WriteOpts,
    ) -> Result<WriteOutcome, ApiError> {
        self.create_tracked(ri, version, ns, body, opts, None)
    }

    /// Creates an object; `applied` is the managedFields a server-side apply computed for it (kept
    /// as they are), `None` records the create as an Update by the request's manager.
    fn create_tracked(
        &self,
        ri: &Arc<ResourceInfo>,
        version: &str,
        ns: Option<&str>,
        body: Value,
        opts: &WriteOpts,
        applied: Option<Value>,
    ) -> Result<WriteOutcome, ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was not a JSON object",
            ));
        }
        let ns = self.ns_of(ri, ns).to_string();
        let mut obj = self.to_stored(ri, body);
        if let Some(m) = meta_mut(&mut obj) {
            if ri.namespaced {
                match m.get("namespace").and_then(Value::as_str) {
                    Some(n) if !n.is_empty() && n != ns => {
                        return Err(ApiError::bad_request(
                            "the namespace of the provided object does not match the namespace sent on the request",
                        ));
                    }
                    _ => {
                        m.insert("namespace".into(), json!(ns));
                    }
                }
            } else {
                m.remove("namespace");
            }
        }
        let name = obj_name(&obj).to_string();
        self.check_namespace_for_create(ri, &ns, &name)?;
        if !name.is_empty() {
            self.validate_name(ri, &name)?;
        }
        if resets_status_on_create(ri, version)
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        fill_create_meta(&mut obj, ri.tracks_generation);
        match &*ri.table {
            NS_TABLE => {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
                obj["status"] = json!({"phase": "Active"});
            }
            CRD_TABLE => self.prepare_crd(&mut obj)?,
            "certificates.k8s.io/certificatesigningrequests" => {
                super::certificates::prepare_create(&mut obj, opts.user.as_ref())
            }
            _ => {}
        }
        self.default_on_create(ri, version, None, &mut obj);
        crate::admission::prepare_definition(&ri.table, &mut obj)?;
        let mut warnings = self.run_schema(ri, version, &mut obj, None, opts)?;
        self.validate_builtin(ri, &obj, true)?;
        self.check_escalation(ri, &ns, &obj, None, opts.user.as_ref())?;
        warnings.extend(self.admit(
            ri,
            version,
            crate::admission::Operation::Create,
            None,
            Some(&obj),
            None,
            opts.user.as_ref(),
            opts.dry_run,
        )?);
        match applied {
            Some(mf) => {
                if let Some(m) = meta_mut(&mut obj) {
                    m.insert("managedFields".into(), mf);
                }
            }
            None => {
                let now = now_rfc3339();
                let hints = self.hints(ri, version);
                deps::track_update(None, &mut obj, &opts.manager, None, &hints, &now);
            }
        }
        if opts.dry_run {
            let name = obj_name(&obj).to_string();
            if !name.is_empty() && self.store.get(&ri.table, &ns, &name).is_some() {
                return Err(ApiError::already_exists(&ri.group, &ri.plural, &name));
            }
            return Ok(WriteOutcome {
                code: 201,
                object: Arc::new(self.to_served(ri, version, &obj)),
                warnings,
            });
        }
        if let Some(e) = super::builtin_validation::object_too_large(&obj) {
            return Err(e);
        }
        self.wire_order(ri, &mut obj);
        let created = self
            .store
            .create(&ri.table, &ns, obj)
            .map_err(|e| self.map_store_err(ri, &name, e))?;
        if &*ri.table == CRD_TABLE {
            self.register_crd(&created);
        }
        self.kick();
        Ok(WriteOutcome {
            code: 201,
            object: self.served_arc(ri, version, &created),
            warnings,
        })
    }

    /// Validates a CRD and fills its status (names accepted, established).
    fn prepare_crd(&self, obj: &mut Value) -> Result<(), ApiError> {
        let info = super::registry::crd_info(obj).map_err(|e| {
            ApiError::invalid(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                obj_name(obj),
                format!(
                    "CustomResourceDefinition.apiextensions.k8s.io \"{}\" is invalid: {e}",
                    obj_name(obj)
                ),
                vec![],
            )
        })?;
        let schema_errors = crate::schema::crd_schema_errors(obj);
        if !schema_errors.is_empty() {
            return Err(ApiError::from_status(crate::schema::invalid_status(
                "CustomResourceDefinition",
                "apiextensions.k8s.io",
                obj_name(obj),
                &schema_errors,
            )));
        }
        let expected = format!("{}.{}", info.plural, info.group);
        if obj_name(obj) != expected {
            let n = obj_name(obj).to_string();
            return Err(ApiError::invalid(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                &n,
                format!(
                    "CustomResourceDefinition.apiextensions.k8s.io \"{n}\" is invalid: metadata.name: Invalid value: \"{n}\": must be spec.names.plural+\".\"+spec.group"
                ),
                vec![(
                    "metadata.name".into(),
                    "FieldValueInvalid".into(),
                    format!("Invalid value: \"{n}\": must be spec.names.plural+\".\"+spec.group"),
                )],
            ));
        }
        let storage = info.storage_version().to_string();
        let now = now_rfc3339();
        let names = obj["spec"]["names"].clone();
        let mut accepted = names.clone();
        if accepted.get("singular").is_none() {
            accepted["singular"] = json!(info.singular);
        }
        if accepted.get("listKind").is_none() {
            accepted["listKind"] = json!(info.list_kind);
        }
        let mut stored_versions: Vec<String> = obj
            .get("status")
            .and_then(|s| s.get("storedVersions"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if !stored_versions.contains(&storage) {
            stored_versions.push(storage);
        }
        let prev_conditions = obj.get("status").and_then(|s| s.get("conditions")).cloned();
        let cond = |t: &str, reason: &str, msg: &str| {
            let since = prev_conditions
                .as_ref()
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|c| c["type"] == t && c["status"] == "True"))
                .and_then(|c| c.get("lastTransitionTime").cloned())
                .unwrap_or_else(|| json!(now));
            json!({"type": t, "status": "True", "lastTransitionTime": since, "reason": reason, "message": msg})
        };
        obj["status"] = json!({
            "conditions": [
                cond("NamesAccepted", "NoConflicts", "no conflicts found"),
                cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            ],
            "acceptedNames": accepted,
            "storedVersions": stored_versions,
        });
        let mut fins = finalizers(obj);
        if !is_deleting(obj) && !fins.iter().any(|f| f == FINALIZER_CRD_CLEANUP) {
            fins.push(FINALIZER_CRD_CLEANUP.into());
            set_finalizers(obj, &fins);
        }
        Ok(())
    }

    pub fn register_crd(&self, crd: &Value) {
        if let Ok(info) = super::registry::crd_info(crd) {
            self.registry_write().insert(info);
            self.sync_apiservices();
        }
    }

    /// Applies update rules to a candidate object; `None` means nothing changed.
    #[allow(clippy::too_many_arguments)]
    fn prepare_update(
        &self,
        ri: &ResourceInfo,
        version: &str,
        old: &Value,
        new: Cow<'_, Value>,
        sub: Option<&str>,
        opts: &WriteOpts,
        applied: Option<bool>,
    ) -> Result<(Option<Value>, Vec<String>), ApiError> {
        // Storing an object changes neither whether it is one nor its status and managedFields,
        // all a status write takes from it: a borrowed status body is not copied whole.
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was not a JSON object",
            ));
        }
        let name = obj_name(old).to_string();
        if sub == Some("status") {
            let mut out = old.clone();
            let (status, mf) = match new {
                Cow::Owned(mut n) => {
                    let mf = meta_mut(&mut n).and_then(|m| m.remove("managedFields"));
                    (n.as_object_mut().and_then(|m| m.remove("status")), mf)
                }
                Cow::Borrowed(n) => (
                    n.get("status").cloned(),
                    meta(n).and_then(|m| m.get("managedFields")).cloned(),
                ),
            };
            match status {
                Some(s) => out["status"] = s,
                None => {
                    if let Some(m) = out.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            if applied.is_some()
                && let (Some(mf), Some(m)) = (mf, meta_mut(&mut out))
            {
                m.insert("managedFields".into(), mf);
            }
            return self.finish_update(ri, version, old, out, sub, opts, applied);
        }
        let mut new = self.to_stored(ri, new.into_owned());
        // Server-owned metadata comes from the stored object.
        let old_meta = meta(old);
        if let Some(m) = meta_mut(&mut new) {
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
                "name",
            ] {
                match old_meta.and_then(|om| om.get(k)) {
                    Some(v) => {
                        m.insert(k.into(), v.clone());
                    }
                    None => {
                        m.remove(k);
                    }
                }
            }
            m.remove("selfLink");
        }
        let new = if sub == Some("ephemeralcontainers") {
            let errors = super::ephemeral::validate(old, &new);
            if !errors.is_empty() {
                return Err(ApiError::from_status(crate::schema::invalid_status(
                    &ri.kind, &ri.group, &name, &errors,
                )));
            }
            super::ephemeral::apply(old, &new)
        } else {
            if ri.status_sub(version)
                && let Some(m) = new.as_object_mut()
            {
                match old.get("status") {
                    Some(s) => {
                        m.insert("status".into(), s.clone());
                    }
                    None => {
                        m.remove("status");
                    }
                }
            }
            new
        };
        self.finish_update(ri, version, old, new, sub, opts, applied)
    }

    /// The rest of `prepare_update`, on the candidate object.
    #[allow(clippy::too_many_arguments)]
    fn finish_update(
        &self,
        ri: &ResourceInfo,
        version: &str,
        old: &Value,
        mut new: Value,
        sub: Option<&str>,
        opts: &WriteOpts,
        applied: Option<bool>,
    ) -> Result<(Option<Value>, Vec<String>), ApiError> {
        let name = obj_name(old).to_string();
        if sub.is_none() {
            self.default_on_create(ri, version, Some(old), &mut new);
        }
        if is_deleting(old) {
            let old_f = finalizers(old);
            if let Some(f) = finalizers(&new).into_iter().find(|f| !old_f.contains(f)) {
                return Err(ApiError::invalid(
                    &ri.group,
                    &ri.kind,
                    &name,
                    format!(
                        "{} \"{name}\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{\"{f}\"}}",
                        kind_qualified(ri)
                    ),
                    vec![(
                        "metadata.finalizers".into(),
                        "FieldValueForbidden".into(),
                        format!(
                            "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{\"{f}\"}}"
                        ),
                    )],
                ));
            }
        }
        if &*ri.table == CRD_TABLE {
            self.prepare_crd(&mut new)?;
        }
        if &*ri.table == NS_TABLE {
            // spec.finalizers only change through /finalize; phase is server-owned.
            if sub != Some("finalize")
                && let Some(s) = old.get("spec")
            {
                new["spec"] = s.clone();
            }
            if let Some(s) = old.get("status") {
                new["status"] = s.clone();
            }
        }
        crate::admission::prepare_definition(&ri.table, &mut new)?;
        let mut warnings = self.run_schema(ri, version, &mut new, Some(old), opts)?;
        self.validate_builtin(ri, &new, false)?;
        if let Some(e) = super::builtin_validation::object_too_large(&new) {
            return Err(e);
        }
        self.check_escalation(
            ri,
            crate::store::obj_namespace(old),
            &new,
            Some(old),
            opts.user.as_ref(),
        )?;
        warnings.extend(self.admit(
            ri,
            version,
            crate::admission::Operation::Update,
            sub,
            Some(&new),
            Some(old),
            opts.user.as_ref(),
            opts.dry_run,
        )?);
        if ri.tracks_generation {
            let old_gen = meta(old)
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let bump = spec_differs(old, &new, ri.status_sub(version));
            if let Some(m) = meta_mut(&mut new) {
                m.insert(
                    "generation".into(),
                    json!(if bump { old_gen + 1 } else { old_gen }),
                );
            }
        }
        let unchanged = match applied {
            Some(changed) => !changed && same_except_bookkeeping(old, &new),
            None => same_except_bookkeeping(old, &new),
        };
        if unchanged {
            return Ok((None, warnings));
        }
        if applied.is_none() {
            let now = now_rfc3339();
            let hints = self.hints(ri, version);
            deps::track_update(Some(old), &mut new, &opts.manager, sub, &hints, &now);
        }
        Ok((Some(new), warnings))
    }

    /// Commits an update prepared from `old`; removes the object when it is deleting and has no
    /// finalizers left.
    fn commit_update(
        &self,
        ri: &ResourceInfo,
        ns: &str,
        name: &str,
        new: Value,
        expected: u64,
    ) -> Result<Arc<Value>, StoreError> {
        let mut new = new;
        self.wire_order(ri, &mut new);
        let (_, stored) = self
            .store
            .update(&ri.table, ns, name, new, Some(expected))?;
        if is_deleting(&stored) && finalizers(&stored).is_empty() {
            let gone = self
                .store
                .delete(&ri.table, ns, name, &Preconditions::default())?;
            self.after_delete(ri, &gone);
            self.kick();
            return Ok(gone);
        }
        if &*ri.table == CRD_TABLE {
            self.register_crd(&stored);
        }
        self.kick();
        Ok(stored)
    }

    /// PUT on the main resource or a subresource (`status`, `finalize`).
    #[allow(clippy::too_many_arguments)]
    pub fn update_obj(
        &self,
        ri: &Arc<ResourceInfo>,
        version: &str,
        ns: Option<&str>,
        name: &str,
        body: Value,
        sub: Option<&str>,
        opts: &WriteOpts,
    ) -> Result<WriteOutcome, ApiError> {
        let ns = self.ns_of(ri, ns).to_string();
        let body_name = body
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str);
        if let Some(bn) = body_name
            && bn != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({bn}) does not match the name on the URL ({name})"
            )));
        }
        let body_rv = meta(&body)
            .and_then(|m| m.get("resourceVersion"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u64>().unwrap_or(u64::MAX));
        for _ in 0..32 {
            let old = self
                .store
                .get(&ri.table, &ns, name)
                .ok_or_else(|| ApiError::not_found(&ri.group, &ri.plural, name))?;
            if let Some(rv) = body_rv
                && rv != rv_of(&old)
            {
                return Err(ApiError::conflict(&ri.group, &ri.plural, name));
            }
            let (new, warnings) =
                self.prepare_update(ri, version, &old, Cow::Borrowed(&body), sub, opts, None)?;
            let Some(new) = new else {
                return Ok(WriteOutcome {
                    code: 200,
                    object: self.served_arc(ri, version, &old),
                    warnings,
                });
            };
            if opts.dry_run {
                return Ok(WriteOutcome {
                    code: 200,
                    object: Arc::new(self.to_served(ri, version, &new)),
                    warnings,
                });
            }
            match self.commit_update(ri, &ns, name, new, rv_of(&old)) {
                Ok(stored) => {
                    return Ok(WriteOutcome {
                        code: 200,
                        object: self.served_arc(ri, version, &stored),
                        warnings,
                    });
                }
                Err(StoreError::Conflict) if body_rv.is_none() => continue,
                Err(e) => return Err(self.map_store_err(ri, name, e)),
            }
        }
        Err(ApiError::conflict(&ri.group, &ri.plural, name))
    }

    /// PATCH on the main resource or the status subresource.
    #[allow(clippy::too_many_arguments)]
    pub fn patch_obj(
        &self,
        ri: &Arc<ResourceInfo>,
        version: &str,
        ns: Option<&str>,
        name: &str,
        ptype: PatchType,
        patch: &Value,
        sub: Option<&str>,
        opts: &WriteOpts,
    ) -> Result<WriteOutcome, ApiError> {
        let nsn = self.ns_of(ri, ns).to_string();
        if ptype == PatchType::Strategic && ri.is_crd {
            return Err(ApiError::unsupported_patch());
        }
        for _ in 0..32 {
            let old = self.store.get(&ri.table, &nsn, name);
            let Some(old) = old else {
                if ptype == PatchType::Apply && sub.is_none() {
                    return self.apply_create(ri, version, ns, name, patch, opts);
                }
                return Err(ApiError::not_found(&ri.group, &ri.plural, name));
            };
            let served = self.to_served_cow(ri, version, &old);
            let hints = self.hints(ri, version);
            let mut apply_changed = None;
            let patched = match ptype {
                PatchType::Merge => {
                    let mut t = (*served).clone();
                    deps::merge_patch(&mut t, patch);
                    t
                }
                PatchType::Json => deps::json_patch(&served, patch)?,
                PatchType::Strategic => deps::strategic_merge_patch(&served, patch, &hints)?,
                PatchType::Apply => {
                    self.check_apply_body(ri, version, name, patch)?;
                    let now = now_rfc3339();
                    let (o, changed) = deps::server_side_apply(
                        Some(&*served),
                        patch,
                        &opts.manager,
                        opts.force,
                        sub,
                        &hints,
                        &now,
                        &ri.group,
                        &ri.plural,
                        name,
                    )?;
                    apply_changed = Some(changed);
                    o
                }
            };
            let patch_rv = meta(&patched)
                .and_then(|m| m.get("resourceVersion"))
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<u64>().ok());
            let explicit_rv = patch_rv.is_some_and(|r| r != rv_of(&old))
                || meta(patch)
                    .is_some_and(|m| m.get("resourceVersion").is_some_and(|v| !v.is_null()));
            if let Some(r) = patch_rv
                && r != rv_of(&old)
            {
                return Err(ApiError::conflict(&ri.group, &ri.plural, name));
            }
            let (new, warnings) = self.prepare_update(
                ri,
                version,
                &old,
                Cow::Owned(patched),
                sub,
                opts,
                apply_changed,
            )?;
            let Some(new) = new else {
                return Ok(WriteOutcome {
                    code: 200,
                    object: match served {
                        Cow::Borrowed(_) => old.clone(),
                        Cow::Owned(o) => Arc::new(o),
                    },
                    warnings,
                });
            };
            if opts.dry_run {
                return Ok(WriteOutcome {
                    code: 200,
                    object: Arc::new(self.to_served(ri, version, &new)),
                    warnings,
                });
            }
            match self.commit_update(ri, &nsn, name, new, rv_of(&old)) {
                Ok(stored) => {
                    return Ok(WriteOutcome {
                        code: 200,
                        object: self.served_arc(ri, version, &stored),
                        warnings,
                    });
                }
                Err(StoreError::Conflict) if !explicit_rv => continue,
                Err(e) => return Err(self.map_store_err(ri, name, e)),
            }
        }
        Err(ApiError::conflict(&ri.group, &ri.plural, name))
    }

    fn check_apply_body(
        &self,
        ri: &ResourceInfo,
        version: &str,
        name: &str,
        patch: &Value,
    ) -> Result<(), ApiError> {
        let av = patch
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let kind = patch.get("kind").and_then(Value::as_str).unwrap_or("");
        if av.is_empty() || kind.is_empty() {
            return Err(ApiError::bad_request("invalid object type: /, Kind="));
        }
        if kind != ri.kind || av != ri.api_version(version) {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                ri.api_version(version)
            )));
        }
        if let Some(n) = patch
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        Ok(())
    }

    fn apply_create(
        &self,
        ri: &Arc<ResourceInfo>,
        version: &str,
        ns: Option<&str>,
        name: &str,
        patch: &Value,
        opts: &WriteOpts,
    ) -> Result<WriteOutcome, ApiError> {
        self.check_apply_body(ri, version, name, patch)?;
        let hints = self.hints(ri, version);
        let now = now_rfc3339();
        let (mut obj, _) = deps::server_side_apply(
            None,
            patch,
            &opts.manager,
            opts.force,
            None,
            &hints,
            &now,
            &ri.group,
            &ri.plural,
            name,
        )?;
        if let Some(m) = meta_mut(&mut obj) {
            m.insert("name".into(), json!(name));
        }
        // The apply's ownership is stored as it is (one write, as the real server's create).
        let managed = meta_mut(&mut obj).and_then(|m| m.shift_remove("managedFields"));
        self.create_tracked(ri, version, ns, obj, opts, managed)
    }

    pub fn get_scale(
        &self,
        ri: &ResourceInfo,
        version: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let spec = ri.scale(version).ok_or_else(ApiError::not_found_path)?;
        let o = self
            .store
            .get(&ri.table, self.ns_of(ri, ns), name)
            .ok_or_else(|| ApiError::not_found(&ri.group, &ri.plural, name))?;
        Ok(scale_of(&o, spec))
    }

    /// PUT/PATCH /scale: `scale_body` is the new Scale object.
    #[allow(clippy::too_many_arguments)]
    pub fn update_scale(
        &self,
        ri: &Arc<ResourceInfo>,
        version: &str,
        ns: Option<&str>,
        name: &str,
        ptype: Option<PatchType>,
        body: &Value,
        opts: &WriteOpts,
    ) -> Result<WriteOutcome, ApiError> {
        let spec = ri
            .scale(version)
            .ok_or_else(ApiError::not_found_path)?
            .clone();
        let nsn = self.ns_of(ri, ns).to_string();
        for _ in 0..32 {
            let old = self
                .store
                .get(&ri.table, &nsn, name)
                .ok_or_else(|| ApiError::not_found(&ri.group, &ri.plural, name))?;
            let cur = scale_of(&old, &spec);
            let new_scale = match ptype {
                None => body.clone(),
                Some(PatchType::Merge) => {
                    let mut t = cur.clone();
                    deps::merge_patch(&mut t, body);
                    t
                }
                Some(PatchType::Json) => deps::json_patch(&cur, body)?,
                Some(PatchType::Strategic) => {
                    let h = TypeHints::for_builtin("autoscaling/v1", "Scale");
                    deps::strategic_merge_patch(&cur, body, &h)?
                }
                Some(PatchType::Apply) => {
                    let mut t = cur.clone();
                    deps::merge_patch(&mut t, body);
                    t
                }
            };
            let rv = meta(&new_scale)
                .and_then(|m| m.get("resourceVersion"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(|s| s.parse::<u64>().unwrap_or(u64::MAX));
            if let Some(r) = rv
                && r != rv_of(&old)
            {
                return Err(ApiError::conflict(&ri.group, &ri.plural, name));
            }
            let replicas = new_scale
                .get("spec")
                .and_then(|s| s.get("replicas"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if replicas < 0 {
                return Err(ApiError::invalid(
                    "autoscaling",
                    "Scale",
                    name,
                    format!(
                        "Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"
                    ),
                    vec![(
                        "spec.replicas".into(),
                        "FieldValueInvalid".into(),
                        format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                    )],
                ));
            }
            let mut new = self.to_served(ri, version, &old);
            if let Some(slot) = mutate_path(&mut new, &spec.spec_replicas_path) {
                *slot = json!(replicas);
            }
            let (new, _) = self.prepare_update(
                ri,
                version,
                &old,
                Cow::Owned(new),
                Some("scale"),
                opts,
                None,
            )?;
            let Some(new) = new else {
                return Ok(WriteOutcome {
                    code: 200,
                    object: Arc::new(cur),
                    warnings: vec![],
                });
            };
            if opts.dry_run {
                return Ok(WriteOutcome {
                    code: 200,
                    object: Arc::new(scale_of(&new, &spec)),
                    warnings: vec![],
                });
            }
            match self.commit_update(ri, &nsn, name, new, rv_of(&old)) {
                Ok(stored) => {
                    return Ok(WriteOutcome {
                        code: 200,
                        object: Arc::new(scale_of(&stored, &spec)),
                        warnings: vec![],
                    });
                }
                Err(StoreError::Conflict) if rv.is_none() => continue,
                Err(e) => return Err(self.map_store_err(ri, name, e)),
            }
        }
        Err(ApiError::conflict(&ri.group, &ri.plural, name))
    }

    /// DELETE of one object. Returns (HTTP code, object).
    pub fn delete_obj(
        &self,
        ri: &Arc<ResourceInfo>,
        version: &str,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<(u16, Value), ApiError> {
        self.delete_obj_outcome(ri, version, ns, name, opts)
            .map(|(code, o, _)| (code, o))
    }

    /// DELETE of one object: (HTTP code, object, whether it left the store at once).
    pub fn delete_obj_outcome(
        &self,
        ri: &Arc<ResourceInfo>,
        version: &str,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<(u16, Value, bool), ApiError> {
        let nsn = self.ns_of(ri, ns).to_string();
        for _ in 0..32 {
            let old = self
                .store
                .get(&ri.table, &nsn, name)
                .ok_or_else(|| ApiError::not_found(&ri.group, &ri.plural, name))?;
            if let Some(uid) = &opts.preconditions.uid
                && uid != uid_of(&old)
            {
                return Err(ApiError::conflict_msg(
                    &ri.group,
                    &ri.plural,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        uid_of(&old)
                    ),
                ));
            }
            if let Some(rv) = &opts.preconditions.resource_version
                && *rv != rv_of(&old).to_string()
            {
                return Err(ApiError::conflict_msg(
                    &ri.group,
                    &ri.plural,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        rv_of(&old)
                    ),
                ));
            }
            self.admit(
                ri,
                version,
                crate::admission::Operation::Delete,
                None,
                None,
                Some(&old),
                opts.user.as_ref(),
                opts.dry_run,
            )?;
            let mut fins = finalizers(&old);
            let before = fins.clone();
            match opts.propagation.as_deref() {
                Some("Orphan") => {
                    if !fins.iter().any(|f| f == FINALIZER_ORPHAN) {
                        fins.push(FINALIZER_ORPHAN.into());
                    }
                    fins.retain(|f| f != FINALIZER_FOREGROUND);
                }
                Some("Foreground") => {
                    if !fins.iter().any(|f| f == FINALIZER_FOREGROUND) {
                        fins.push(FINALIZER_FOREGROUND.into());
                    }
                    fins.retain(|f| f != FINALIZER_ORPHAN);
                }
                Some("Background") => {
                    fins.retain(|f| f != FINALIZER_ORPHAN && f != FINALIZER_FOREGROUND)
                }
                _ => {}
            }
            let is_ns = &*ri.table == NS_TABLE;
            let pod_grace = self.pod_grace_period(ri, &old, opts);
            if fins.is_empty() && !is_ns && pod_grace.is_none() {
                if opts.dry_run {
                    return Ok((200, self.to_served(ri, version, &old), true));
                }
                let pre = Preconditions {
                    uid: Some(uid_of(&old).to_string()),
                    resource_version: Some(rv_of(&old).to_string()),
                };
                match self.store.delete(&ri.table, &nsn, name, &pre) {
                    Ok(gone) => {
                        self.after_delete(ri, &gone);
                        self.kick();
                        return Ok((200, self.to_served(ri, version, &gone), true));
                    }
                    Err(StoreError::Precondition(_)) | Err(StoreError::NotFound) => continue,
                    Err(e) => return Err(self.map_store_err(ri, name, e)),
                }
            }
            if is_deleting(&old) && fins == before {
                return Ok((200, self.to_served(ri, version, &old), false));
            }
            let mut new = (*old).clone();
            set_finalizers(&mut new, &fins);
            if !is_deleting(&old) {
                if let Some(m) = meta_mut(&mut new) {
                    // A pod's deletion is due when its grace period ends.
                    let at = chrono::Utc::now() + chrono::Duration::seconds(pod_grace.unwrap_or(0));
                    m.insert(
                        "deletionTimestamp".into(),
                        json!(at.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
                    );
                    m.insert(
                        "deletionGracePeriodSeconds".into(),
                        json!(pod_grace.unwrap_or(opts.grace_period.unwrap_or(0)).max(0)),
                    );
                    if ri.tracks_generation {
                        let g = m.get("generation").and_then(Value::as_i64).unwrap_or(0);
                        if g > 0 {
                            m.insert("generation".into(), json!(g + 1));
                        }
                    }
                }
                if is_ns {
                    new["status"]["phase"] = json!("Terminating");
                }
            }
            if opts.dry_run {
                return Ok((200, self.to_served(ri, version, &new), false));
            }
            match self
                .store
                .update(&ri.table, &nsn, name, new, Some(rv_of(&old)))
            {
                Ok((_, stored)) => {
                    self.kick();
                    return Ok((200, self.to_served(ri, version, &stored), false));
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(self.map_store_err(ri, name, e)),
            }
        }
        Err(ApiError::conflict(&ri.group, &ri.plural, name))
    }

    /// The grace period of a pod deletion (`pkg/registry/core/pod/strategy.go`
    /// `CheckGracefulDelete`): the request's `gracePeriodSeconds`, else the pod's
    /// `terminationGracePeriodSeconds` (30 by default); `None` (removed at once) for a zero grace
    /// period, a pod not bound to a node or already finished, a pod already terminating (the
    /// kubelet's final delete), and when no simulated kubelet runs to finish the deletion.
    fn pod_grace_period(&self, ri: &ResourceInfo, pod: &Value, opts: &DeleteOpts) -> Option<i64> {
        if !ri.group.is_empty() || ri.plural != "pods" || !self.config.dataplane || is_deleting(pod)
        {
            return None;
        }
        let bound = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let phase = pod.pointer("/status/phase").and_then(Value::as_str);
        if !bound || matches!(phase, Some("Succeeded" | "Failed")) {
            return None;
        }
        let grace = opts.grace_period.unwrap_or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30)
        });
        (grace > 0).then_some(grace)
    }

    /// Bookkeeping after an object is removed from the store.
    pub fn after_delete(&self, ri: &ResourceInfo, gone: &Value) {
        if &*ri.table == CRD_TABLE
            && let Ok(info) = super::registry::crd_info(gone)
        {
            let mut reg = self.registry_write();
            // Only unregister when it is still this CRD's registration.
            if reg.get(&info.group, &info.plural).is_some_and(|r| r.is_crd) {
                reg.remove(&info.group, &info.plural);
            }
            drop(reg);
            self.sync_apiservices();
        }
    }

    /// DELETE on a collection.
    pub fn delete_collection(
        &self,
        ri: &Arc<ResourceInfo>,
        version: &str,
        ns: Option<&str>,
        q: &Query,
        opts: &DeleteOpts,
    ) -> Result<Value, ApiError> {
        let mut q2 = q.clone();
        q2.0.remove("limit");
        q2.0.remove("continue");
        let (mut list, items) = self.list_objs(ri, version, ns, &q2)?;
        let mut deleted = Vec::new();
        for it in items {
            let name = obj_name(&it).to_string();
            let item_ns = store::obj_namespace(&it).to_string();
            match self.delete_obj(ri, version, Some(&item_ns), &name, opts) {
                Ok((_, o)) => deleted.push(o),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        list["items"] = Value::Array(deleted);
        Ok(list)
    }
}

/// Builds an autoscaling/v1 Scale from an object.
fn scale_of(o: &Value, spec: &super::registry::ScaleSpec) -> Value {
    let m = meta(o).cloned().unwrap_or_default();
    let mut md = Map::new();
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = m.get(k) {
            md.insert(k.into(), v.clone());
        }
    }
    let replicas = read_path(o, &spec.spec_replicas_path)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let status_replicas = read_path(o, &spec.status_replicas_path)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let selector = spec
        .label_selector_path
        .as_deref()
        .and_then(|p| read_path(o, p))
        .map(|s| match s {
            Value::String(s) => s.clone(),
            other => selector_string(other),
        });
    let mut status = json!({"replicas": status_replicas});
    if let Some(s) = selector {
        status["selector"] = json!(s);
    }
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": md,
        "spec": {"replicas": replicas}, "status": status})
}

/// `Deployment.apps` / `Pod` as used in Invalid messages.
pub fn kind_qualified(ri: &ResourceInfo) -> String {
    if ri.group.is_empty() {
        ri.kind.clone()
    } else {
        format!("{}.{}", ri.kind, ri.group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::SimConfig;

    #[test]
    fn apply_create_is_one_write_owned_by_the_applier() {
        let st: Arc<SimState> = SimState::new(SimConfig {
            dataplane: false,
            ..SimConfig::default()
        })
        .unwrap();
        let ns_ri = st.registry_read().get("", "namespaces").unwrap();
        st.create_obj(
            &ns_ri,
            "v1",
            None,
            json!({"metadata": {"name": "a"}}),
            &WriteOpts::system("test"),
        )
        .unwrap();
        let cm = st.registry_read().get("", "configmaps").unwrap();
        let opts = WriteOpts {
            force: true,
            ..WriteOpts::system("op")
        };
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "labels": {"x": "1"}}, "data": {"k": "v"}});
        let mut events = st.store.subscribe_all();
        let rv = st.store.current_rv();
        let out = st
            .patch_obj(
                &cm,
                "v1",
                Some("a"),
                "c",
                PatchType::Apply,
                &body,
                None,
                &opts,
            )
            .unwrap();
        assert_eq!(st.store.current_rv(), rv + 1, "one write");
        let ev = events.try_recv().unwrap();
        assert_eq!(ev.etype, crate::store::EventType::Added);
        assert!(events.try_recv().is_err(), "no second event");
        let mf = &out.object["metadata"]["managedFields"];
        assert_eq!(mf.as_array().map(Vec::len), Some(1), "{mf}");
        assert_eq!(mf[0]["manager"], "op");
        assert_eq!(mf[0]["operation"], "Apply");
        assert_eq!(
            mf[0]["fieldsV1"],
            json!({"f:data": {"f:k": {}}, "f:metadata": {"f:labels": {"f:x": {}}}})
        );
        let stored = st.store.get("/configmaps", "a", "c").unwrap();
        assert_eq!(&stored["metadata"]["managedFields"], mf);
        assert_eq!(
            stored["metadata"]["resourceVersion"],
            json!((rv + 1).to_string())
        );
    }
}

//! An in-memory `ClusterApi` for the data-plane tests: resourceVersion checks, generation bumps,
//! status/spec separation, generateName, and the server's defaulting on create.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};

use super::util::{fmt_time, name, namespace, str_at};
use super::{
    BindError, Binding, Change, Changes, ClusterApi, DataPlane, IpAllocator, ResourceRef, bind_pod,
    default_on_create,
};

type Key = (String, String, String); // (group/resource, namespace, name)

#[derive(Default)]
struct State {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    uids: u64,
    alloc: IpAllocator,
    writes: u64,
    reads: u64,
    lists: u64,
    fail_updates: u32,
    /// Changes not yet handed to the data plane.
    log: Vec<Change>,
    /// Whether the log overflowed (the next `changes()` asks for a relist).
    lost: bool,
    /// The server's clock (the harness sets it each tick): times server-side writes (binds).
    now: Option<DateTime<Utc>>,
}

impl State {
    fn record(&mut self, r: &ResourceRef, obj: &Value, deleted: bool) {
        self.log.push(Change {
            table: rkey(r),
            object: Arc::new(obj.clone()),
            deleted,
        });
    }
}

/// The fake store. Resources with a status subresource ignore status on `update` and take only
/// status on `update_status`.
#[derive(Default)]
pub(crate) struct FakeApi {
    state: Mutex<State>,
}

fn rkey(r: &ResourceRef) -> String {
    format!("{}/{}", r.group, r.resource)
}

fn has_status_subresource(r: &ResourceRef) -> bool {
    matches!(
        r.resource.as_str(),
        "pods"
            | "nodes"
            | "services"
            | "deployments"
            | "replicasets"
            | "jobs"
            | "statefulsets"
            | "daemonsets"
    )
}

impl FakeApi {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Number of successful writes so far (to check idle ticks write nothing).
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }

    /// Sets the server's clock.
    pub fn set_now(&self, now: DateTime<Utc>) {
        self.lock().now = Some(now);
    }

    /// Number of list/get calls so far (to check skipped ticks read nothing).
    pub fn reads(&self) -> u64 {
        self.lock().reads
    }

    /// Number of list calls so far (a relist reads every kind).
    pub fn lists(&self) -> u64 {
        self.lock().lists
    }

    /// Makes the next `n` update/update_status calls fail with a conflict.
    pub fn fail_next_updates(&self, n: u32) {
        self.lock().fail_updates = n;
    }

    /// Drops the changes not yet delivered, as a watch that fell behind does: the data plane's
    /// next pass relists.
    pub fn lose_changes(&self) {
        let mut st = self.lock();
        st.log.clear();
        st.lost = true;
    }

    /// Writes an object as a client other than the data plane does, without telling the data
    /// plane (a change the feed missed).
    pub fn write_unseen(&self, r: &ResourceRef, obj: Value) {
        let key = (rkey(r), namespace(&obj).to_string(), name(&obj).to_string());
        let mut st = self.lock();
        st.rv += 1;
        st.objects.insert(key, obj);
    }

    pub fn all(&self, r: &ResourceRef) -> Vec<Value> {
        self.list(r, None)
    }

    pub fn must_get(&self, r: &ResourceRef, ns: &str, name: &str) -> Value {
        self.get(r, Some(ns), name)
            .unwrap_or_else(|| panic!("{} {ns}/{name} not found", r.resource))
    }

    fn key(r: &ResourceRef, ns: Option<&str>, name: &str) -> Key {
        (rkey(r), ns.unwrap_or("").to_string(), name.to_string())
    }
}

fn rv_matches(old: &Value, new: &Value) -> bool {
    match str_at(new, &["metadata", "resourceVersion"]) {
        None | Some("") => true,
        Some(rv) => str_at(old, &["metadata", "resourceVersion"]) == Some(rv),
    }
}

const CONFLICT: &str = "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again";

impl ClusterApi for FakeApi {
    fn list(&self, r: &ResourceRef, ns: Option<&str>) -> Vec<Value> {
        let k = rkey(r);
        let mut st = self.lock();
        st.reads += 1;
        st.lists += 1;
        st.objects
            .iter()
            .filter(|((rk, ons, _), _)| *rk == k && ns.is_none_or(|n| n == ons))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn get(&self, r: &ResourceRef, ns: Option<&str>, name: &str) -> Option<Value> {
        let mut st = self.lock();
        st.reads += 1;
        st.objects.get(&Self::key(r, ns, name)).cloned()
    }

    fn create(&self, r: &ResourceRef, mut obj: Value) -> Result<Value, String> {
        let mut st = self.lock();
        if name(&obj).is_empty() {
            let generation = str_at(&obj, &["metadata", "generateName"])
                .unwrap_or("")
                .to_string();
            if generation.is_empty() {
                return Err("name or generateName is required".into());
            }
            st.uids += 1;
            obj["metadata"]["name"] = json!(format!("{generation}{:05x}", st.uids));
        }
        let ns = namespace(&obj).to_string();
        let key = (rkey(r), ns.clone(), name(&obj).to_string());
        if st.objects.contains_key(&key) {
            return Err(format!("{} \"{}\" already exists", r.resource, key.2));
        }
        st.uids += 1;
        st.rv += 1;
        let uid = format!("uid-{}", st.uids);
        let rv = st.rv.to_string();
        let m = &mut obj["metadata"];
        if m.get("uid").is_none() {
            m["uid"] = json!(uid);
        }
        m["resourceVersion"] = json!(rv);
        m["generation"] = json!(1);
        m["creationTimestamp"] = json!(fmt_time(base_time()));
        let mut alloc = std::mem::take(&mut st.alloc);
        default_on_create(r, &mut obj, &mut alloc);
        st.alloc = alloc;
        st.writes += 1;
        st.record(r, &obj, false);
        st.objects.insert(key, obj.clone());
        Ok(obj)
    }

    fn update(&self, r: &ResourceRef, mut obj: Value) -> Result<Value, String> {
        let mut st = self.lock();
        if st.fail_updates > 0 {
            st.fail_updates -= 1;
            return Err(CONFLICT.into());
        }
        let key = (rkey(r), namespace(&obj).to_string(), name(&obj).to_string());
        let Some(old) = st.objects.get(&key).cloned() else {
            return Err(format!("{} \"{}\" not found", r.resource, key.2));
        };
        if !rv_matches(&old, &obj) {
            return Err(CONFLICT.into());
        }
        if has_status_subresource(r) {
            match old.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    if let Some(m) = obj.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        let mut generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
        if old.get("spec") != obj.get("spec") {
            generation += 1;
        }
        st.rv += 1;
        obj["metadata"]["generation"] = json!(generation);
        obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        obj["metadata"]["uid"] = old["metadata"]["uid"].clone();
        obj["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
        if obj == old {
            st.rv -= 1;
            return Ok(old);
        }
        st.writes += 1;
        st.record(r, &obj, false);
        st.objects.insert(key, obj.clone());
        Ok(obj)
    }

    fn update_status(&self, r: &ResourceRef, obj: Value) -> Result<Value, String> {
        let mut st = self.lock();
        if st.fail_updates > 0 {
            st.fail_updates -= 1;
            return Err(CONFLICT.into());
        }
        let key = (rkey(r), namespace(&obj).to_string(), name(&obj).to_string());
        let Some(mut cur) = st.objects.get(&key).cloned() else {
            return Err(format!("{} \"{}\" not found", r.resource, key.2));
        };
        if !rv_matches(&cur, &obj) {
            return Err(CONFLICT.into());
        }
        let new_status = obj.get("status").cloned().unwrap_or(Value::Null);
        if cur.get("status") == Some(&new_status) {
            return Ok(cur);
        }
        st.rv += 1;
        cur["status"] = new_status;
        cur["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        st.writes += 1;
        st.record(r, &cur, false);
        st.objects.insert(key, cur.clone());
        Ok(cur)
    }

    fn delete(&self, r: &ResourceRef, ns: Option<&str>, name: &str) -> Result<(), String> {
        let mut st = self.lock();
        match st.objects.remove(&Self::key(r, ns, name)) {
            Some(mut old) => {
                st.rv += 1;
                old["metadata"]["resourceVersion"] = json!(st.rv.to_string());
                st.writes += 1;
                st.record(r, &old, true);
                Ok(())
            }
            None => Err(format!("{} \"{name}\" not found", r.resource)),
        }
    }

    fn bind(&self, ns: &str, b: &Binding) -> Result<Value, String> {
        let mut st = self.lock();
        if st.fail_updates > 0 {
            st.fail_updates -= 1;
            return Err(CONFLICT.into());
        }
        let r = ResourceRef::pods();
        let key = (rkey(&r), ns.to_string(), b.name.clone());
        let Some(mut pod) = st.objects.get(&key).cloned() else {
            return Err(BindError::NotFound.message(&b.name));
        };
        let now = fmt_time(st.now.unwrap_or_else(base_time));
        bind_pod(&mut pod, b, &now).map_err(|e| e.message(&b.name))?;
        st.rv += 1;
        pod["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        st.writes += 1;
        st.record(&r, &pod, false);
        st.objects.insert(key, pod.clone());
        Ok(pod)
    }

    fn revision(&self) -> Option<u64> {
        Some(self.lock().rv)
    }

    fn changes(&self) -> Changes {
        let mut st = self.lock();
        if std::mem::take(&mut st.lost) {
            st.log.clear();
            return Changes::Relist;
        }
        Changes::Since(std::mem::take(&mut st.log))
    }
}

pub(crate) fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// A fake cluster with a data plane and a clock starting at [`base_time`].
pub(crate) struct Harness {
    pub api: FakeApi,
    pub dp: DataPlane,
    pub now: DateTime<Utc>,
}

impl Harness {
    pub fn new(nodes: &str) -> Self {
        let nodes = super::parse_nodes(nodes).expect("node spec");
        Harness {
            api: FakeApi::new(),
            dp: DataPlane::with_nodes(nodes),
            now: base_time(),
        }
    }

    /// One tick at the current time.
    pub fn tick(&mut self) {
        self.api.set_now(self.now);
        self.dp.tick(&self.api, self.now);
    }

    /// Ticks every 50 ms for `secs` seconds of simulated time.
    pub fn run(&mut self, secs: f64) {
        let steps = (secs * 20.0).ceil() as i64;
        for _ in 0..steps.max(1) {
            self.now += chrono::Duration::milliseconds(50);
            self.tick();
        }
    }

    pub fn pods(&self, ns: &str) -> Vec<Value> {
        self.api.list(&ResourceRef::pods(), Some(ns))
    }

    pub fn events(&self) -> Vec<Value> {
        self.api.all(&ResourceRef::events())
    }
}

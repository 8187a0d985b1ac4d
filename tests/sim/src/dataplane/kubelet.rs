//! The simulated kubelet: moves bound pods through ContainerCreating -> Running -> Ready, runs
//! run-to-completion containers for their annotated time and exits them with the annotated code,
//! restarts containers per `restartPolicy`, reports `CreateContainerConfigError` for missing
//! Secrets/ConfigMaps (and holds pods whose volumes reference missing ones), assigns pod IPs from
//! the node's podCIDR, and finalizes pods marked for deletion.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::cache::key_of;
use super::events;
use super::util::{
    CondStyle, add_secs, annotation, annotation_secs, at, conditions_of, fnv32a, is_terminating,
    name, namespace, parse_time, pod_finished, set, set_condition, str_at, uid,
};
use super::{
    ANN_EXIT_CODE, ANN_READY_AFTER, ANN_RESTART_BACKOFF, ANN_RUN_SECONDS, ANN_START_DELAY, Ctx, K,
    ResourceRef,
};

/// Precise timings the status (whole seconds) cannot carry, keyed by pod uid.
#[derive(Debug, Default)]
pub(crate) struct KubeletState {
    created: HashMap<String, DateTime<Utc>>,
    started: HashMap<String, DateTime<Utc>>,
    warned: HashSet<(String, String)>,
}

const COMPONENT: &str = "kubelet";

impl KubeletState {
    /// Keeps the timings of these pods only (after a relist).
    pub fn retain(&mut self, live: &HashSet<String>) {
        self.created.retain(|k, _| live.contains(k.as_str()));
        self.started.retain(|k, _| live.contains(k.as_str()));
        self.warned.retain(|(k, _)| live.contains(k.as_str()));
    }

    /// Forgets pods that are gone.
    pub fn forget(&mut self, uids: &[String]) {
        if uids.is_empty() {
            return;
        }
        for u in uids {
            self.created.remove(u);
            self.started.remove(u);
        }
        let gone: HashSet<&str> = uids.iter().map(String::as_str).collect();
        self.warned.retain(|(k, _)| !gone.contains(k.as_str()));
    }
}

/// Looks at the bound pods that changed or have a due timer, the pods of nodes that changed,
/// and the waiting pods of namespaces whose Secrets, ConfigMaps or volumes changed.
pub(crate) fn sync_all(ctx: &Ctx<'_>, st: &mut KubeletState) {
    let mut keys = ctx.work_of(K::Pod);
    ctx.with_cache(|c, w| {
        for node in ctx.work_of(K::Node) {
            keys.extend(c.pod_keys_on(&node.1).cloned());
        }
        for ns in &w.config_ns {
            keys.extend(
                c.pods_in_namespace(ns)
                    .filter(|p| str_at(p, &["status", "phase"]) == Some("Pending"))
                    .map(|p| key_of(p)),
            );
        }
    });
    let pods = ctx.cached(K::Pod, &keys);
    let bound: Vec<&Value> = pods
        .iter()
        .map(|p| &**p)
        .filter(|p| !str_at(p, &["spec", "nodeName"]).unwrap_or("").is_empty())
        .collect();
    if bound.is_empty() {
        return;
    }
    let nodes = ctx.cached_all(K::Node);
    let nodes = nodes.as_slice();
    let node_info: HashMap<&str, (String, String)> = nodes
        .iter()
        .map(|n| {
            let ip = at(n, &["status", "addresses"])
                .and_then(Value::as_array)
                .and_then(|a| {
                    a.iter()
                        .find(|x| x.get("type").and_then(Value::as_str) == Some("InternalIP"))
                })
                .and_then(|x| x.get("address"))
                .and_then(Value::as_str)
                .unwrap_or("172.18.255.254")
                .to_string();
            let prefix = str_at(n, &["spec", "podCIDR"])
                .and_then(|c| c.strip_suffix(".0/24"))
                .map(|p| format!("{p}."))
                .unwrap_or_else(|| "10.244.255.".to_string());
            (name(n), (ip, prefix))
        })
        .collect();
    let mut used: HashMap<String, HashSet<String>> = HashMap::new();
    ctx.with_cache(|c, _| {
        for p in &bound {
            let node = str_at(p, &["spec", "nodeName"]).unwrap_or("");
            if !used.contains_key(node) {
                used.insert(node.to_string(), c.ips_on(node));
            }
        }
    });
    for pod in bound {
        ctx.focus(K::Pod, pod);
        let node = str_at(pod, &["spec", "nodeName"]).unwrap_or("");
        let Some((host_ip, prefix)) = node_info.get(node) else {
            continue;
        };
        if is_terminating(pod) {
            // The containers are stopped; finalize the deletion as the kubelet does (a pod
            // still holding finalizers waits for their owners).
            let has_finalizers = at(pod, &["metadata", "finalizers"])
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            if !has_finalizers {
                let _ = ctx.delete(&ResourceRef::pods(), Some(namespace(pod)), name(pod));
            }
            continue;
        }
        if pod_finished(pod) {
            continue;
        }
        if sync_ephemeral(ctx, pod) {
            continue;
        }
        let used = used.entry(node.to_string()).or_default();
        sync_pod(ctx, st, pod, host_ip, prefix, used);
    }
}

fn containers<'a>(pod: &'a Value, field: &str) -> Vec<&'a Value> {
    at(pod, &["spec", field])
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// `busybox:1.36` -> `docker.io/library/busybox:1.36`, as container runtimes report images.
fn normalize_image(image: &str) -> String {
    let (path, rest) = match image.split_once('@') {
        Some((p, d)) => (p, format!("@{d}")),
        None => (image, String::new()),
    };
    let mut full = match path.split_once('/') {
        None => format!("docker.io/library/{path}"),
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            path.to_string()
        }
        Some(_) => format!("docker.io/{path}"),
    };
    let last = full.rsplit('/').next().unwrap_or("");
    if rest.is_empty() && !last.contains(':') {
        full.push_str(":latest");
    }
    full + &rest
}

fn hex64(seed: &str) -> String {
    (0..8)
        .map(|i| format!("{:08x}", fnv32a(format!("{seed}/{i}").as_bytes())))
        .collect()
}

fn image_id(image: &str) -> String {
    let n = normalize_image(image);
    let repo = n.split('@').next().unwrap_or(&n);
    let repo = match repo.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => repo,
    };
    format!("{repo}@sha256:{}", hex64(&n))
}

fn base_status(c: &Value, state: Value) -> Value {
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    json!({
        "name": c.get("name").cloned().unwrap_or(Value::Null),
        "image": normalize_image(image),
        "imageID": "",
        "ready": false,
        "started": false,
        "restartCount": 0,
        "state": state,
        "lastState": {},
    })
}

fn running_status(
    pod_uid: &str,
    c: &Value,
    started_at: &str,
    ready: bool,
    restarts: i64,
    last: Value,
) -> Value {
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    let cname = c.get("name").and_then(Value::as_str).unwrap_or("");
    let mut s = base_status(c, json!({"running": {"startedAt": started_at}}));
    set(&mut s, &["imageID"], json!(image_id(image)));
    s["containerID"] = json!(format!(
        "containerd://{}",
        hex64(&format!("{pod_uid}/{cname}/{restarts}"))
    ));
    set(&mut s, &["ready"], json!(ready));
    set(&mut s, &["started"], json!(true));
    set(&mut s, &["restartCount"], json!(restarts));
    set(&mut s, &["lastState"], last);
    s
}

fn names(cs: &[&Value]) -> String {
    cs.iter()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first missing Secret/ConfigMap (or key) a container's env refers to, with the
/// kubelet's message.
fn config_error(ctx: &Ctx<'_>, pod: &Value, c: &Value) -> Option<String> {
    let ns = namespace(pod);
    let lookup = |kind: &str, name: &str| -> Option<Value> {
        let r = if kind == "Secret" {
            ResourceRef::secrets()
        } else {
            ResourceRef::configmaps()
        };
        ctx.api.get(&r, Some(ns), name)
    };
    let has_key = |obj: &Value, kind: &str, key: &str| -> bool {
        let fields: &[&str] = if kind == "Secret" {
            &["data", "stringData"]
        } else {
            &["data", "binaryData"]
        };
        fields
            .iter()
            .any(|f| obj.get(f).and_then(|d| d.get(key)).is_some())
    };
    let lower = |kind: &str| {
        if kind == "Secret" {
            "secret"
        } else {
            "configmap"
        }
    };
    for e in c
        .get("envFrom")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for (field, kind) in [("secretRef", "Secret"), ("configMapRef", "ConfigMap")] {
            let Some(r) = e.get(field) else { continue };
            let n = r.get("name").and_then(Value::as_str).unwrap_or("");
            let optional = r.get("optional").and_then(Value::as_bool) == Some(true);
            if lookup(kind, n).is_none() && !optional {
                return Some(format!("{} \"{n}\" not found", lower(kind)));
            }
        }
    }
    for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
        let Some(vf) = e.get("valueFrom") else {
            continue;
        };
        for (field, kind) in [("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")] {
            let Some(r) = vf.get(field) else { continue };
            let n = r.get("name").and_then(Value::as_str).unwrap_or("");
            let key = r.get("key").and_then(Value::as_str).unwrap_or("");
            let optional = r.get("optional").and_then(Value::as_bool) == Some(true);
            match lookup(kind, n) {
                None if !optional => return Some(format!("{} \"{n}\" not found", lower(kind))),
                Some(obj) if !optional && !has_key(&obj, kind, key) => {
                    return Some(format!("couldn't find key {key} in {kind} {ns}/{n}"));
                }
                _ => {}
            }
        }
    }
    None
}

/// A volume whose Secret/ConfigMap does not exist, with the kubelet's FailedMount message.
fn mount_error(ctx: &Ctx<'_>, pod: &Value) -> Option<String> {
    let ns = namespace(pod);
    for v in at(pod, &["spec", "volumes"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let vname = v.get("name").and_then(Value::as_str).unwrap_or("");
        for (field, name_field, r, lower) in [
            ("secret", "secretName", ResourceRef::secrets(), "secret"),
            ("configMap", "name", ResourceRef::configmaps(), "configmap"),
        ] {
            let Some(src) = v.get(field) else { continue };
            let n = src.get(name_field).and_then(Value::as_str).unwrap_or("");
            let optional = src.get("optional").and_then(Value::as_bool) == Some(true);
            if !optional && ctx.api.get(&r, Some(ns), n).is_none() {
                return Some(format!(
                    "MountVolume.SetUp failed for volume \"{vname}\" : {lower} \"{n}\" not found"
                ));
            }
        }
    }
    None
}

fn allocate_ip(prefix: &str, used: &mut HashSet<String>) -> String {
    for host in 2..=254 {
        let ip = format!("{prefix}{host}");
        if !used.contains(&ip) {
            used.insert(ip.clone());
            return ip;
        }
    }
    format!("{prefix}255")
}

/// Starts ephemeral containers (`kubectl debug`) that have no status yet: they run at once
/// (never ready, no probes). True when the pod's status was written.
fn sync_ephemeral(ctx: &Ctx<'_>, pod: &Value) -> bool {
    let eph = containers(pod, "ephemeralContainers");
    if eph.is_empty() {
        return false;
    }
    let mut statuses = at(pod, &["status", "ephemeralContainerStatuses"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let known: HashSet<String> = statuses
        .iter()
        .filter_map(|s| s.get("name").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    let mut added = false;
    for c in eph {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("");
        if known.contains(name) {
            continue;
        }
        let mut s = running_status(uid(pod), c, ctx.now_s.as_str(), false, 0, json!({}));
        set(&mut s, &["started"], json!(true));
        statuses.push(s);
        added = true;
    }
    if !added {
        return false;
    }
    let mut status = pod.get("status").cloned().unwrap_or_else(|| json!({}));
    set(
        &mut status,
        &["ephemeralContainerStatuses"],
        Value::Array(statuses),
    );
    write_status(ctx, pod, status)
}

fn write_status(ctx: &Ctx<'_>, pod: &Value, status: Value) -> bool {
    if pod.get("status") == Some(&status) {
        return false;
    }
    ctx.write_status(&ResourceRef::pods(), pod, status).is_ok()
}

fn pod_ref(pod: &Value) -> Value {
    events::subject(pod, "v1", "Pod")
}

fn set_ready_conditions(conds: &mut Vec<Value>, main: &[&Value], ready: bool, now: &str) {
    if ready {
        set_condition(
            conds,
            "ContainersReady",
            "True",
            "",
            "",
            now,
            CondStyle::Pod,
            false,
        );
        set_condition(conds, "Ready", "True", "", "", now, CondStyle::Pod, false);
    } else {
        let msg = format!("containers with unready status: [{}]", names(main));
        set_condition(
            conds,
            "ContainersReady",
            "False",
            "ContainersNotReady",
            &msg,
            now,
            CondStyle::Pod,
            false,
        );
        set_condition(
            conds,
            "Ready",
            "False",
            "ContainersNotReady",
            &msg,
            now,
            CondStyle::Pod,
            false,
        );
    }
}

fn sync_pod(
    ctx: &Ctx<'_>,
    st: &mut KubeletState,
    pod: &Value,
    host_ip: &str,
    prefix: &str,
    used: &mut HashSet<String>,
) {
    let restart_policy = str_at(pod, &["spec", "restartPolicy"]).unwrap_or("Always");
    // Settled fast path: a running pod whose containers are all ready and never exit.
    if str_at(pod, &["status", "phase"]) == Some("Running")
        && run_seconds(pod, restart_policy).is_none()
        && at(pod, &["status", "containerStatuses"])
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .all(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
            })
    {
        return;
    }
    let pod_uid = uid(pod).to_string();
    let main = containers(pod, "containers");
    let init = containers(pod, "initContainers");
    let mut status = pod.get("status").cloned().unwrap_or_else(|| json!({}));
    if !status.is_object() {
        status = json!({});
    }
    let mut conds = conditions_of(pod);
    let now = ctx.now_s.as_str();
    let statuses = status
        .get("containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let phase = status
        .get("phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending")
        .to_string();

    // 1. Freshly bound: ContainerCreating.
    if statuses.is_empty() {
        set(&mut status, &["phase"], json!("Pending"));
        set(&mut status, &["hostIP"], json!(host_ip));
        set(&mut status, &["hostIPs"], json!([{"ip": host_ip}]));
        set(&mut status, &["startTime"], json!(now));
        status["containerStatuses"] = Value::Array(
            main.iter()
                .map(|c| base_status(c, json!({"waiting": {"reason": "ContainerCreating"}})))
                .collect(),
        );
        if !init.is_empty() {
            status["initContainerStatuses"] = Value::Array(
                init.iter()
                    .map(|c| base_status(c, json!({"waiting": {"reason": "PodInitializing"}})))
                    .collect(),
            );
        }
        set_condition(
            &mut conds,
            "PodReadyToStartContainers",
            "False",
            "",
            "",
            now,
            CondStyle::Pod,
            false,
        );
        if init.is_empty() {
            set_condition(
                &mut conds,
                "Initialized",
                "True",
                "",
                "",
                now,
                CondStyle::Pod,
                false,
            );
        } else {
            let msg = format!("containers with incomplete status: [{}]", names(&init));
            set_condition(
                &mut conds,
                "Initialized",
                "False",
                "ContainersNotInitialized",
                &msg,
                now,
                CondStyle::Pod,
                false,
            );
        }
        set_ready_conditions(&mut conds, &main, false, now);
        set_condition(
            &mut conds,
            "PodScheduled",
            "True",
            "",
            "",
            now,
            CondStyle::Pod,
            false,
        );
        set(&mut status, &["conditions"], Value::Array(conds));
        st.created.insert(pod_uid.clone(), ctx.now);
        if write_status(ctx, pod, status)
            && let Some(d) = annotation_secs(pod, ANN_START_DELAY)
        {
            ctx.wake_at(add_secs(ctx.now, d));
        }
        return;
    }

    let any_running = statuses
        .iter()
        .any(|s| s.pointer("/state/running").is_some());
    // 2. Creating: wait out the start delay, check config, then start.
    if phase == "Pending" && !any_running {
        let created = st
            .created
            .get(&pod_uid)
            .copied()
            .or_else(|| {
                status
                    .get("startTime")
                    .and_then(Value::as_str)
                    .and_then(parse_time)
            })
            .unwrap_or(ctx.now);
        let start_at = add_secs(
            created,
            annotation_secs(pod, ANN_START_DELAY).unwrap_or(0.0),
        );
        if ctx.now < start_at {
            ctx.wake_at(start_at);
            return;
        }
        if let Some(msg) = mount_error(ctx, pod) {
            if st.warned.insert((pod_uid.clone(), msg.clone())) {
                events::record(
                    ctx,
                    &pod_ref(pod),
                    "Warning",
                    "FailedMount",
                    &msg,
                    COMPONENT,
                );
            }
            return;
        }
        let errors: Vec<Option<String>> = main.iter().map(|c| config_error(ctx, pod, c)).collect();
        if errors.iter().any(Option::is_some) {
            let mut new_statuses = Vec::new();
            for (c, err) in main.iter().zip(&errors) {
                let state = match err {
                    Some(m) => {
                        json!({"waiting": {"reason": "CreateContainerConfigError", "message": m}})
                    }
                    None => json!({"waiting": {"reason": "ContainerCreating"}}),
                };
                new_statuses.push(base_status(c, state));
            }
            set(
                &mut status,
                &["containerStatuses"],
                Value::Array(new_statuses),
            );
            set_condition(
                &mut conds,
                "PodReadyToStartContainers",
                "True",
                "",
                "",
                now,
                CondStyle::Pod,
                false,
            );
            set(&mut status, &["conditions"], Value::Array(conds));
            if write_status(ctx, pod, status) {
                for m in errors.iter().flatten() {
                    events::record(
                        ctx,
                        &pod_ref(pod),
                        "Warning",
                        "Failed",
                        &format!("Error: {m}"),
                        COMPONENT,
                    );
                }
            }
            return;
        }
        let ready = annotation_secs(pod, ANN_READY_AFTER).unwrap_or(0.0) <= 0.0;
        let ip = status
            .get("podIP")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| allocate_ip(prefix, used));
        set(&mut status, &["phase"], json!("Running"));
        set(&mut status, &["podIP"], json!(ip));
        set(&mut status, &["podIPs"], json!([{"ip": ip}]));
        status["containerStatuses"] = Value::Array(
            main.iter()
                .map(|c| running_status(&pod_uid, c, now, ready, 0, json!({})))
                .collect(),
        );
        if !init.is_empty() {
            status["initContainerStatuses"] = Value::Array(
                init.iter()
                    .map(|c| {
                        let mut s = base_status(
                            c,
                            json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}),
                        );
                        set(&mut s, &["imageID"], json!(image_id(c.get("image").and_then(Value::as_str).unwrap_or(""))));
                        s
                    })
                    .collect(),
            );
        }
        set_condition(
            &mut conds,
            "PodReadyToStartContainers",
            "True",
            "",
            "",
            now,
            CondStyle::Pod,
            false,
        );
        set_condition(
            &mut conds,
            "Initialized",
            "True",
            "",
            "",
            now,
            CondStyle::Pod,
            false,
        );
        set_ready_conditions(&mut conds, &main, ready, now);
        set(&mut status, &["conditions"], Value::Array(conds));
        st.started.insert(pod_uid.clone(), ctx.now);
        if write_status(ctx, pod, status) {
            schedule_wakes(ctx, pod, restart_policy, ctx.now, ready);
        }
        return;
    }

    // 3. Running: back-off restarts, readiness, exits.
    let crashing = statuses.iter().any(|s| {
        s.pointer("/state/waiting/reason").and_then(Value::as_str) == Some("CrashLoopBackOff")
    });
    if crashing {
        let restart_at = st.started.get(&pod_uid).copied().unwrap_or(ctx.now);
        if ctx.now < restart_at {
            ctx.wake_at(restart_at);
            return;
        }
        let ready = annotation_secs(pod, ANN_READY_AFTER).unwrap_or(0.0) <= 0.0;
        let new_statuses: Vec<Value> = main
            .iter()
            .map(|c| {
                let cname = c.get("name").and_then(Value::as_str);
                let prev = statuses
                    .iter()
                    .find(|s| s.get("name").and_then(Value::as_str) == cname);
                let restarts = prev
                    .and_then(|p| p.get("restartCount"))
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
                    + 1;
                let last = prev
                    .and_then(|p| p.get("lastState"))
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                running_status(&pod_uid, c, now, ready, restarts, last)
            })
            .collect();
        set(
            &mut status,
            &["containerStatuses"],
            Value::Array(new_statuses),
        );
        set_ready_conditions(&mut conds, &main, ready, now);
        set(&mut status, &["conditions"], Value::Array(conds));
        st.started.insert(pod_uid.clone(), ctx.now);
        if write_status(ctx, pod, status) {
            schedule_wakes(ctx, pod, restart_policy, ctx.now, ready);
        }
        return;
    }
    let started = st
        .started
        .get(&pod_uid)
        .copied()
        .or_else(|| {
            statuses
                .iter()
                .filter_map(|s| {
                    s.pointer("/state/running/startedAt")
                        .and_then(Value::as_str)
                        .and_then(parse_time)
                })
                .max()
        })
        .unwrap_or(ctx.now);
    st.started.entry(pod_uid.clone()).or_insert(started);
    let ready_at = add_secs(
        started,
        annotation_secs(pod, ANN_READY_AFTER).unwrap_or(0.0),
    );
    if let Some(run) = run_seconds(pod, restart_policy) {
        let end = add_secs(started, run);
        if ctx.now >= end {
            let code = annotation(pod, ANN_EXIT_CODE)
                .and_then(|s| s.trim().parse::<i64>().ok())
                .unwrap_or(0);
            let restart = match restart_policy {
                "Always" => true,
                "OnFailure" => code != 0,
                _ => false,
            };
            let started_s = super::util::fmt_time(started);
            let terminated = json!({"terminated": {
                "exitCode": code,
                "reason": if code == 0 { "Completed" } else { "Error" },
                "startedAt": started_s,
                "finishedAt": now,
            }});
            let backoff = if code != 0 {
                annotation_secs(pod, ANN_RESTART_BACKOFF).unwrap_or(1.0)
            } else {
                0.0
            };
            if restart && backoff > 0.0 {
                // CrashLoopBackOff until the back-off is over; the restart count moves on restart.
                let msg = format!(
                    "back-off {backoff}s restarting failed container={} pod={}_{}({pod_uid})",
                    names(&main),
                    name(pod),
                    namespace(pod)
                );
                let new_statuses: Vec<Value> = main
                    .iter()
                    .map(|c| {
                        let cname = c.get("name").and_then(Value::as_str);
                        let prev = statuses
                            .iter()
                            .find(|s| s.get("name").and_then(Value::as_str) == cname);
                        let mut s = base_status(
                            c,
                            json!({"waiting": {"reason": "CrashLoopBackOff", "message": msg}}),
                        );
                        let mut last = terminated.clone();
                        if let Some(p) = prev {
                            for k in ["imageID", "containerID", "restartCount"] {
                                if let Some(v) = p.get(k) {
                                    set(&mut s, &[k], v.clone());
                                }
                            }
                            if let Some(id) = p.get("containerID") {
                                set(&mut last, &["terminated", "containerID"], id.clone());
                            }
                        }
                        set(&mut s, &["lastState"], last);
                        s
                    })
                    .collect();
                set(
                    &mut status,
                    &["containerStatuses"],
                    Value::Array(new_statuses),
                );
                set_ready_conditions(&mut conds, &main, false, now);
                set(&mut status, &["conditions"], Value::Array(conds));
                let restart_at = add_secs(ctx.now, backoff);
                st.started.insert(pod_uid.clone(), restart_at);
                if write_status(ctx, pod, status) {
                    events::record(
                        ctx,
                        &pod_ref(pod),
                        "Warning",
                        "BackOff",
                        &format!(
                            "Back-off restarting failed container {} in pod {}_{}({pod_uid})",
                            names(&main),
                            name(pod),
                            namespace(pod)
                        ),
                        COMPONENT,
                    );
                    ctx.wake_at(restart_at);
                }
                return;
            }
            if restart {
                let ready = annotation_secs(pod, ANN_READY_AFTER).unwrap_or(0.0) <= 0.0;
                let new_statuses: Vec<Value> = main
                    .iter()
                    .map(|c| {
                        let cname = c.get("name").and_then(Value::as_str);
                        let prev = statuses
                            .iter()
                            .find(|s| s.get("name").and_then(Value::as_str) == cname);
                        let mut last = terminated.clone();
                        if let Some(id) = prev.and_then(|p| p.get("containerID")) {
                            set(&mut last, &["terminated", "containerID"], id.clone());
                        }
                        let restarts = prev
                            .and_then(|p| p.get("restartCount"))
                            .and_then(Value::as_i64)
                            .unwrap_or(0)
                            + 1;
                        running_status(&pod_uid, c, now, ready, restarts, last)
                    })
                    .collect();
                set(
                    &mut status,
                    &["containerStatuses"],
                    Value::Array(new_statuses),
                );
                set_ready_conditions(&mut conds, &main, ready, now);
                set(&mut status, &["conditions"], Value::Array(conds));
                st.started.insert(pod_uid.clone(), ctx.now);
                if write_status(ctx, pod, status) {
                    if code != 0 {
                        events::record(
                            ctx,
                            &pod_ref(pod),
                            "Warning",
                            "BackOff",
                            &format!(
                                "Back-off restarting failed container {} in pod {}_{}({pod_uid})",
                                names(&main),
                                name(pod),
                                namespace(pod)
                            ),
                            COMPONENT,
                        );
                    }
                    schedule_wakes(ctx, pod, restart_policy, ctx.now, ready);
                }
                return;
            }
            let new_statuses: Vec<Value> = main
                .iter()
                .map(|c| {
                    let cname = c.get("name").and_then(Value::as_str);
                    let prev = statuses
                        .iter()
                        .find(|s| s.get("name").and_then(Value::as_str) == cname);
                    let mut s = base_status(c, terminated.clone());
                    if let Some(p) = prev {
                        for k in ["imageID", "containerID", "restartCount", "lastState"] {
                            if let Some(v) = p.get(k) {
                                set(&mut s, &[k], v.clone());
                            }
                        }
                        if let Some(id) = p.get("containerID") {
                            set(&mut s, &["state", "terminated", "containerID"], id.clone());
                        }
                    }
                    s
                })
                .collect();
            status["phase"] = json!(if code == 0 { "Succeeded" } else { "Failed" });
            set(
                &mut status,
                &["containerStatuses"],
                Value::Array(new_statuses),
            );
            set_condition(
                &mut conds,
                "PodReadyToStartContainers",
                "False",
                "",
                "",
                now,
                CondStyle::Pod,
                false,
            );
            if code == 0 {
                set_condition(
                    &mut conds,
                    "ContainersReady",
                    "False",
                    "PodCompleted",
                    "",
                    now,
                    CondStyle::Pod,
                    false,
                );
                set_condition(
                    &mut conds,
                    "Ready",
                    "False",
                    "PodCompleted",
                    "",
                    now,
                    CondStyle::Pod,
                    false,
                );
            } else {
                set_ready_conditions(&mut conds, &main, false, now);
            }
            set(&mut status, &["conditions"], Value::Array(conds));
            st.started.remove(&pod_uid);
            st.created.remove(&pod_uid);
            write_status(ctx, pod, status);
            return;
        }
        ctx.wake_at(end);
    }
    let all_ready = statuses
        .iter()
        .all(|s| s.get("ready").and_then(Value::as_bool) == Some(true));
    if !all_ready {
        if ctx.now >= ready_at {
            let new_statuses: Vec<Value> = statuses
                .iter()
                .map(|s| {
                    let mut s = s.clone();
                    if s.pointer("/state/running").is_some() {
                        set(&mut s, &["ready"], json!(true));
                    }
                    s
                })
                .collect();
            set(
                &mut status,
                &["containerStatuses"],
                Value::Array(new_statuses),
            );
            set_ready_conditions(&mut conds, &main, true, now);
            set(&mut status, &["conditions"], Value::Array(conds));
            write_status(ctx, pod, status);
        } else {
            ctx.wake_at(ready_at);
        }
    }
}

/// How long containers run, if they exit at all.
fn run_seconds(pod: &Value, restart_policy: &str) -> Option<f64> {
    let crashes = annotation(pod, ANN_EXIT_CODE).is_some_and(|c| c.trim() != "0");
    match annotation_secs(pod, ANN_RUN_SECONDS) {
        Some(s) => Some(s),
        None if restart_policy != "Always" || crashes => Some(1.0),
        None => None,
    }
}

fn schedule_wakes(
    ctx: &Ctx<'_>,
    pod: &Value,
    restart_policy: &str,
    started: DateTime<Utc>,
    ready: bool,
) {
    if !ready {
        ctx.wake_at(add_secs(
            started,
            annotation_secs(pod, ANN_READY_AFTER).unwrap_or(0.0),
        ));
    }
    if let Some(run) = run_seconds(pod, restart_policy) {
        ctx.wake_at(add_secs(started, run));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::ClusterApi;
    use crate::dataplane::fake::Harness;
    use crate::dataplane::util::condition;

    fn pod(name: &str, annotations: Value, spec: Value) -> Value {
        let mut p = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "annotations": annotations},
            "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}
        });
        crate::dataplane::util::merge(&mut p, &json!({"spec": spec}));
        p
    }

    fn get(h: &Harness, n: &str) -> Value {
        h.api.must_get(&ResourceRef::pods(), "default", n)
    }

    #[test]
    fn pod_goes_creating_then_running_and_ready() {
        let mut h = Harness::new("cpu=1");
        h.api
            .create(&ResourceRef::pods(), pod("web", json!({}), json!({})))
            .unwrap();
        h.tick();
        let p = get(&h, "web");
        assert_eq!(p["spec"]["nodeName"], "cpu-0");
        assert_eq!(p["status"]["phase"], "Pending");
        assert_eq!(
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
        assert_eq!(p["status"]["hostIP"], "172.18.0.2");
        h.run(0.05);
        let p = get(&h, "web");
        assert_eq!(p["status"]["phase"], "Running");
        assert_eq!(p["status"]["podIP"], "10.244.0.2");
        assert_eq!(p["status"]["containerStatuses"][0]["ready"], true);
        assert_eq!(p["status"]["containerStatuses"][0]["started"], true);
        assert_eq!(
            p["status"]["containerStatuses"][0]["image"],
            "docker.io/library/busybox:1.36"
        );
        assert!(p["status"]["containerStatuses"][0]["state"]["running"]["startedAt"].is_string());
        for c in [
            "PodScheduled",
            "Initialized",
            "ContainersReady",
            "Ready",
            "PodReadyToStartContainers",
        ] {
            assert_eq!(condition(&p, c).unwrap()["status"], "True", "{c}");
        }
        // Settled: further ticks write nothing.
        let w = h.api.writes();
        h.run(2.0);
        assert_eq!(h.api.writes(), w);
    }

    #[test]
    fn readiness_waits_for_the_annotated_delay() {
        let mut h = Harness::new("cpu=1");
        h.api
            .create(
                &ResourceRef::pods(),
                pod("slow", json!({ANN_READY_AFTER: "2"}), json!({})),
            )
            .unwrap();
        h.run(1.0);
        let p = get(&h, "slow");
        assert_eq!(p["status"]["phase"], "Running");
        assert_eq!(condition(&p, "Ready").unwrap()["status"], "False");
        assert_eq!(
            condition(&p, "Ready").unwrap()["reason"],
            "ContainersNotReady"
        );
        h.run(1.5);
        assert_eq!(
            condition(&get(&h, "slow"), "Ready").unwrap()["status"],
            "True"
        );
        assert_eq!(h.dp.next_wake(), None);
    }

    #[test]
    fn run_to_completion_pods_exit_with_annotated_code() {
        let mut h = Harness::new("cpu=1");
        h.api
            .create(
                &ResourceRef::pods(),
                pod("ok", json!({}), json!({"restartPolicy": "Never"})),
            )
            .unwrap();
        h.api
            .create(
                &ResourceRef::pods(),
                pod(
                    "bad",
                    json!({ANN_RUN_SECONDS: "3", ANN_EXIT_CODE: "3"}),
                    json!({"restartPolicy": "Never"}),
                ),
            )
            .unwrap();
        h.run(1.5);
        let ok = get(&h, "ok");
        assert_eq!(ok["status"]["phase"], "Succeeded");
        let t = &ok["status"]["containerStatuses"][0]["state"]["terminated"];
        assert_eq!(t["exitCode"], 0);
        assert_eq!(t["reason"], "Completed");
        assert_eq!(condition(&ok, "Ready").unwrap()["reason"], "PodCompleted");
        assert_eq!(get(&h, "bad")["status"]["phase"], "Running");
        h.run(2.0);
        let bad = get(&h, "bad");
        assert_eq!(bad["status"]["phase"], "Failed");
        assert_eq!(
            bad["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            3
        );
        assert_eq!(
            bad["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
            "Error"
        );
    }

    #[test]
    fn on_failure_restarts_the_container() {
        let mut h = Harness::new("cpu=1");
        h.api
            .create(
                &ResourceRef::pods(),
                pod(
                    "crash",
                    json!({ANN_EXIT_CODE: "1"}),
                    json!({"restartPolicy": "OnFailure"}),
                ),
            )
            .unwrap();
        h.run(1.5);
        let p = get(&h, "crash");
        assert_eq!(p["status"]["phase"], "Running");
        let cs = &p["status"]["containerStatuses"][0];
        assert_eq!(cs["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert!(
            cs["state"]["waiting"]["message"]
                .as_str()
                .unwrap()
                .starts_with("back-off 1s restarting failed container=app pod=crash_default(")
        );
        assert_eq!(cs["restartCount"], 0);
        assert_eq!(cs["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(condition(&p, "Ready").unwrap()["status"], "False");
        assert!(h.events().iter().any(|e| e["reason"] == "BackOff"));
        h.run(1.0);
        let p = get(&h, "crash");
        let cs = &p["status"]["containerStatuses"][0];
        assert!(cs["state"]["running"].is_object());
        assert_eq!(cs["restartCount"], 1);
        assert_eq!(cs["lastState"]["terminated"]["exitCode"], 1);
    }

    #[test]
    fn always_pod_with_exit_code_crash_loops() {
        let mut h = Harness::new("cpu=1");
        h.api
            .create(
                &ResourceRef::pods(),
                pod(
                    "loop",
                    json!({ANN_EXIT_CODE: "137", ANN_RESTART_BACKOFF: "0.5"}),
                    json!({}),
                ),
            )
            .unwrap();
        h.run(4.0);
        let p = get(&h, "loop");
        assert_eq!(p["status"]["phase"], "Running");
        let n = p["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .unwrap();
        assert!((2..=3).contains(&n), "restarts: {n}");
    }

    #[test]
    fn missing_secret_and_key_give_create_container_config_error() {
        let mut h = Harness::new("cpu=1");
        let spec =
            |env: Value| json!({"containers": [{"name": "app", "image": "x:1", "env": env}]});
        h.api.create(&ResourceRef::pods(), pod("nosecret", json!({}), spec(json!([{"name": "A", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}])))).unwrap();
        h.api.create(&ResourceRef::pods(), pod("nokey", json!({}), spec(json!([{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}}])))).unwrap();
        h.api.create(&ResourceRef::pods(), pod("optional", json!({}), spec(json!([{"name": "A", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token", "optional": true}}}])))).unwrap();
        h.api.create(&ResourceRef::configmaps(), json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"}, "data": {"other": "1"}})).unwrap();
        h.run(0.2);
        let p = get(&h, "nosecret");
        assert_eq!(p["status"]["phase"], "Pending");
        let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
        assert_eq!(w["reason"], "CreateContainerConfigError");
        assert_eq!(w["message"], "secret \"creds\" not found");
        assert_eq!(
            get(&h, "nokey")["status"]["containerStatuses"][0]["state"]["waiting"]["message"],
            "couldn't find key mode in ConfigMap default/cfg"
        );
        assert_eq!(get(&h, "optional")["status"]["phase"], "Running");
        assert_eq!(
            h.events()
                .iter()
                .filter(|e| e["reason"] == "Failed")
                .count(),
            2
        );
        // Creating the secret unblocks the pod.
        h.api.create(&ResourceRef::secrets(), json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "default"}, "data": {"token": "eA=="}})).unwrap();
        h.run(0.2);
        assert_eq!(get(&h, "nosecret")["status"]["phase"], "Running");
    }

    #[test]
    fn missing_volume_secret_holds_pod_in_container_creating() {
        let mut h = Harness::new("cpu=1");
        h.api
            .create(
                &ResourceRef::pods(),
                pod(
                    "vol",
                    json!({}),
                    json!({"volumes": [{"name": "certs", "secret": {"secretName": "tls"}}]}),
                ),
            )
            .unwrap();
        h.run(0.5);
        let p = get(&h, "vol");
        assert_eq!(
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
        let ev: Vec<Value> = h
            .events()
            .into_iter()
            .filter(|e| e["reason"] == "FailedMount")
            .collect();
        assert_eq!(ev.len(), 1);
        assert_eq!(
            ev[0]["message"],
            "MountVolume.SetUp failed for volume \"certs\" : secret \"tls\" not found"
        );
    }

    #[test]
    fn terminating_pods_are_finalized_and_ips_are_unique() {
        let mut h = Harness::new("cpu=1");
        for i in 0..3 {
            h.api
                .create(
                    &ResourceRef::pods(),
                    pod(&format!("p{i}"), json!({}), json!({})),
                )
                .unwrap();
        }
        h.run(0.2);
        let ips: HashSet<String> = h
            .pods("default")
            .iter()
            .map(|p| p["status"]["podIP"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ips.len(), 3);
        let mut p = get(&h, "p0");
        p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        h.api.update(&ResourceRef::pods(), p).unwrap();
        h.run(0.1);
        assert!(
            h.api
                .get(&ResourceRef::pods(), Some("default"), "p0")
                .is_none()
        );
    }

    #[test]
    fn normalizes_images() {
        assert_eq!(normalize_image("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(
            normalize_image("bitnami/redis:7"),
            "docker.io/bitnami/redis:7"
        );
        assert_eq!(normalize_image("ghcr.io/a/b:1"), "ghcr.io/a/b:1");
        assert_eq!(
            normalize_image("localhost:5000/x"),
            "localhost:5000/x:latest"
        );
    }
}

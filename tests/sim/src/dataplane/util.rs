//! Small JSON, time, naming, hashing and condition helpers shared by the data-plane controllers.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

/// RFC 3339 with whole seconds and a `Z`, the way the API server writes `metav1.Time`.
pub(crate) fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// `t + secs` (fractional seconds allowed); saturates instead of overflowing.
pub(crate) fn add_secs(t: DateTime<Utc>, secs: f64) -> DateTime<Utc> {
    let ms = (secs * 1000.0).round();
    let ms = if ms.is_finite() {
        ms.clamp(0.0, 1.0e12) as i64
    } else {
        0
    };
    t.checked_add_signed(chrono::Duration::milliseconds(ms))
        .unwrap_or(t)
}

pub(crate) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    Some(cur)
}

pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

pub(crate) fn i64_at(v: &Value, path: &[&str]) -> Option<i64> {
    at(v, path).and_then(Value::as_i64)
}

pub(crate) fn name(v: &Value) -> &str {
    str_at(v, &["metadata", "name"]).unwrap_or("")
}

pub(crate) fn namespace(v: &Value) -> &str {
    str_at(v, &["metadata", "namespace"]).unwrap_or("")
}

pub(crate) fn uid(v: &Value) -> &str {
    str_at(v, &["metadata", "uid"]).unwrap_or("")
}

pub(crate) fn generation(v: &Value) -> i64 {
    i64_at(v, &["metadata", "generation"]).unwrap_or(0)
}

pub(crate) fn labels(v: &Value) -> Map<String, Value> {
    at(v, &["metadata", "labels"])
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

pub(crate) fn annotation<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    at(v, &["metadata", "annotations", key]).and_then(Value::as_str)
}

/// Annotation parsed as a non-negative number of seconds (fractions allowed).
pub(crate) fn annotation_secs(v: &Value, key: &str) -> Option<f64> {
    annotation(v, key)
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|f| f.is_finite() && *f >= 0.0)
}

/// The mutable JSON value at `path`, creating (or replacing non-objects with) empty objects on
/// the way.
pub(crate) fn value_mut<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut Value {
    let mut cur = v;
    for p in path {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        cur = match cur {
            Value::Object(m) => m.entry(p.to_string()).or_insert_with(|| json!({})),
            _ => unreachable!("just made an object"),
        };
    }
    cur
}

/// Sets the value at `path`, turning anything in the way that is not an object into one (never
/// panics, unlike `IndexMut` on a string or array).
pub(crate) fn set(v: &mut Value, path: &[&str], value: Value) {
    *value_mut(v, path) = value;
}

/// The mutable JSON object at `path`, creating (or replacing non-objects with) empty objects on the way.
pub(crate) fn obj_mut<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut Map<String, Value> {
    let cur = value_mut(v, path);
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    match cur {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// Sets `key` in the object at `path` only if it is absent or null.
pub(crate) fn default_field(v: &mut Value, path: &[&str], key: &str, value: Value) {
    let m = obj_mut(v, path);
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.to_string(), value);
    }
}

/// uid of the controlling owner (`ownerReferences[controller=true]`).
pub(crate) fn controller_uid(v: &Value) -> Option<&str> {
    at(v, &["metadata", "ownerReferences"])?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .and_then(|r| r.get("uid"))
        .and_then(Value::as_str)
}

pub(crate) fn owner_ref(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": name(owner),
        "uid": uid(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

pub(crate) fn is_terminating(v: &Value) -> bool {
    at(v, &["metadata", "deletionTimestamp"]).is_some_and(|t| !t.is_null())
}

pub(crate) fn pod_phase(pod: &Value) -> &str {
    str_at(pod, &["status", "phase"]).unwrap_or("")
}

pub(crate) fn pod_finished(pod: &Value) -> bool {
    matches!(pod_phase(pod), "Succeeded" | "Failed")
}

/// Not finished and not being deleted: counts toward a controller's replicas.
pub(crate) fn pod_active(pod: &Value) -> bool {
    !pod_finished(pod) && !is_terminating(pod)
}

pub(crate) fn condition<'a>(v: &'a Value, type_: &str) -> Option<&'a Value> {
    at(v, &["status", "conditions"])?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

pub(crate) fn condition_true(v: &Value, type_: &str) -> bool {
    condition(v, type_)
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str)
        == Some("True")
}

pub(crate) fn pod_ready(pod: &Value) -> bool {
    condition_true(pod, "Ready")
}

/// Since when the pod has been Ready, if it is.
pub(crate) fn pod_ready_since(pod: &Value) -> Option<DateTime<Utc>> {
    let c = condition(pod, "Ready")?;
    if c.get("status").and_then(Value::as_str) != Some("True") {
        return None;
    }
    c.get("lastTransitionTime")
        .and_then(Value::as_str)
        .and_then(parse_time)
}

/// Which timestamp fields a kind's conditions carry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum CondStyle {
    /// `lastProbeTime: null`, `lastTransitionTime`.
    Pod,
    /// `lastUpdateTime`, `lastTransitionTime`.
    Deployment,
    /// `lastProbeTime`, `lastTransitionTime` (both set when written).
    Job,
}

/// Sets a condition, moving `lastTransitionTime` only when the status flips. With `touch`, a
/// Deployment condition's `lastUpdateTime` moves even if nothing else changed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn set_condition(
    conds: &mut Vec<Value>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
    style: CondStyle,
    touch: bool,
) {
    let pos = conds
        .iter()
        .position(|c| c.get("type").and_then(Value::as_str) == Some(type_));
    let mut c = match pos {
        Some(i) => conds[i].clone(),
        None => json!({ "type": type_ }),
    };
    let old_status = c.get("status").and_then(Value::as_str).map(str::to_string);
    let status_changed = old_status.as_deref() != Some(status);
    let text_changed = c.get("reason").and_then(Value::as_str).unwrap_or("") != reason
        || c.get("message").and_then(Value::as_str).unwrap_or("") != message;
    let Some(m) = c.as_object_mut() else { return };
    m.insert("status".into(), json!(status));
    for (k, val) in [("reason", reason), ("message", message)] {
        if val.is_empty() {
            m.remove(k);
        } else {
            m.insert(k.into(), json!(val));
        }
    }
    if status_changed || !m.contains_key("lastTransitionTime") {
        m.insert("lastTransitionTime".into(), json!(now));
    }
    match style {
        CondStyle::Pod => {
            m.entry("lastProbeTime").or_insert(Value::Null);
        }
        CondStyle::Deployment => {
            if status_changed || text_changed || touch || !m.contains_key("lastUpdateTime") {
                m.insert("lastUpdateTime".into(), json!(now));
            }
        }
        CondStyle::Job => {
            if status_changed || text_changed || !m.contains_key("lastProbeTime") {
                m.insert("lastProbeTime".into(), json!(now));
            }
        }
    }
    match pos {
        Some(i) => conds[i] = c,
        None => conds.push(c),
    }
}

pub(crate) fn conditions_of(v: &Value) -> Vec<Value> {
    at(v, &["status", "conditions"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// 32-bit FNV-1a.
pub(crate) fn fnv32a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The alphabet Kubernetes uses for generated name suffixes (no vowels, no confusable digits).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Maps each byte of `s` into the safe alphabet, as the controllers do for `pod-template-hash`.
pub(crate) fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// A deterministic 5-character name suffix from a seed (like `generateName`'s random part).
pub(crate) fn name_suffix(seed: &str) -> String {
    let mut h = u64::from(fnv32a(seed.as_bytes()));
    h = (h << 32) | u64::from(fnv32a(format!("{seed}#").as_bytes()));
    let n = SAFE_ALPHABET.len() as u64;
    (0..5)
        .map(|_| {
            let c = SAFE_ALPHABET[(h % n) as usize] as char;
            h /= n;
            c
        })
        .collect()
}

/// JSON with object keys sorted, so hashes do not depend on field order.
pub(crate) fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&m[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// `maxSurge`/`maxUnavailable`-style int-or-percent resolved against `total`.
pub(crate) fn int_or_percent(v: Option<&Value>, total: i64, round_up: bool, default: &str) -> i64 {
    let v = v.cloned().unwrap_or_else(|| json!(default));
    if let Some(i) = v.as_i64() {
        return i.max(0);
    }
    let Some(s) = v.as_str() else { return 0 };
    if let Some(p) = s.strip_suffix('%') {
        let Ok(p) = p.trim().parse::<i64>() else {
            return 0;
        };
        let num = p.max(0) * total.max(0);
        return if round_up {
            (num + 99) / 100
        } else {
            num / 100
        };
    }
    s.trim().parse::<i64>().unwrap_or(0).max(0)
}

#[cfg(test)]
/// JSON merge patch (RFC 7386): objects merge recursively, `null` removes, anything else replaces.
pub(crate) fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_transition_time_moves_only_on_status_change() {
        let mut c = vec![];
        set_condition(
            &mut c,
            "Ready",
            "False",
            "A",
            "",
            "t1",
            CondStyle::Pod,
            false,
        );
        set_condition(
            &mut c,
            "Ready",
            "False",
            "B",
            "m",
            "t2",
            CondStyle::Pod,
            false,
        );
        assert_eq!(c[0]["lastTransitionTime"], "t1");
        assert_eq!(c[0]["reason"], "B");
        set_condition(&mut c, "Ready", "True", "", "", "t3", CondStyle::Pod, false);
        assert_eq!(c[0]["lastTransitionTime"], "t3");
        assert!(c[0].get("reason").is_none());
        assert!(c[0]["lastProbeTime"].is_null());
    }

    #[test]
    fn int_or_percent_rounds_like_the_deployment_controller() {
        assert_eq!(int_or_percent(Some(&json!("25%")), 3, true, "0"), 1);
        assert_eq!(int_or_percent(Some(&json!("25%")), 3, false, "0"), 0);
        assert_eq!(int_or_percent(Some(&json!(2)), 3, false, "0"), 2);
        assert_eq!(int_or_percent(None, 4, false, "25%"), 1);
    }

    #[test]
    fn canonical_json_ignores_key_order() {
        let a = json!({"b": 1, "a": {"y": [1, {"d": 2, "c": 3}], "x": null}});
        let b = json!({"a": {"x": null, "y": [1, {"c": 3, "d": 2}]}, "b": 1});
        assert_eq!(canonical_json(&a), canonical_json(&b));
    }

    #[test]
    fn name_suffix_is_deterministic_and_safe() {
        let s = name_suffix("abc");
        assert_eq!(s.len(), 5);
        assert_eq!(s, name_suffix("abc"));
        assert_ne!(s, name_suffix("abd"));
        assert!(s.bytes().all(|b| SAFE_ALPHABET.contains(&b)));
    }
}

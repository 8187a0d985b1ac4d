//! The wire shape of objects as the apiserver writes them: key order, and what a DELETE answers.
//!
//! Built-in kinds are Go structs serialised by `encoding/json`: fields in declaration order
//! (`TypeMeta` `kind`, `apiVersion`, then `metadata`, then the kind's fields, `spec` before
//! `status`; `ObjectMeta` in its own order) and every Go map (`labels`, `annotations`, a
//! ConfigMap's `data`) with sorted keys. Custom resources are `unstructured.Unstructured`, a
//! `map[string]interface{}` at every level, so every object's keys come out sorted.
//!
//! kube-sim stores objects in this order (the store and its watch lines keep key order), so every
//! read, write response and watch event has it without work at serve time.

use serde_json::{Map, Value};

/// `metav1.ObjectMeta` fields in declaration order (`k8s.io/apimachinery/pkg/apis/meta/v1/types.go`).
const OBJECT_META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Top-level fields every built-in kind starts with, in Go order.
const TOP: &[&str] = &["kind", "apiVersion", "metadata", "spec", "status"];

/// Top-level Go maps of built-in kinds (sorted on the wire).
const TOP_MAPS: &[&str] = &["data", "binaryData", "stringData"];

/// Puts a built-in object's keys in the order the apiserver's Go structs serialise them. The
/// store's later writes of `metadata.resourceVersion` keep the key's position, so `metadata`
/// always carries one.
pub fn order_builtin(obj: &mut Value) {
    let Some(m) = obj.as_object_mut() else {
        return;
    };
    reorder(m, TOP);
    for k in TOP_MAPS {
        if let Some(Value::Object(d)) = m.get_mut(*k) {
            sort_map(d);
        }
    }
    if let Some(Value::Object(meta)) = m.get_mut("metadata") {
        if !meta.contains_key("resourceVersion") {
            meta.insert("resourceVersion".into(), Value::String(String::new()));
        }
        reorder(meta, OBJECT_META);
        for k in ["labels", "annotations"] {
            if let Some(Value::Object(d)) = meta.get_mut(k) {
                sort_map(d);
            }
        }
    }
}

/// Sorts every object's keys, recursively (a custom resource as `encoding/json` writes a
/// `map[string]interface{}`). `metadata` keeps a `resourceVersion` key for the store to fill.
pub fn order_custom(obj: &mut Value) {
    if let Some(Value::Object(meta)) = obj.get_mut("metadata")
        && !meta.contains_key("resourceVersion")
    {
        meta.insert("resourceVersion".into(), Value::String(String::new()));
    }
    sort_recursive(obj);
}

fn sort_recursive(v: &mut Value) {
    match v {
        Value::Object(m) => {
            sort_map(m);
            for (_, x) in m.iter_mut() {
                sort_recursive(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(sort_recursive),
        _ => {}
    }
}

/// Sorts a map's keys by byte order (Go sorts map keys as strings), unless already sorted.
fn sort_map(m: &mut Map<String, Value>) {
    let sorted = m
        .keys()
        .zip(m.keys().skip(1))
        .all(|(a, b)| a.as_bytes() <= b.as_bytes());
    if sorted {
        return;
    }
    let mut entries: Vec<(String, Value)> = std::mem::take(m).into_iter().collect();
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    m.extend(entries);
}

/// Moves `first` keys (those present, in that order) before all others, keeping the others'
/// order; a no-op when the map already is that way. The entries are moved (keys and values are
/// not copied) and put back in one stable sort by their place in `first`.
fn reorder(m: &mut Map<String, Value>, first: &[&str]) {
    let rank = |k: &str| first.iter().position(|f| *f == k).unwrap_or(first.len());
    let mut last = 0;
    let in_order = m.keys().all(|k| {
        let r = rank(k);
        let ok = r >= last;
        last = r;
        ok
    });
    if in_order {
        return;
    }
    let mut entries: Vec<(usize, String, Value)> = std::mem::take(m)
        .into_iter()
        .map(|(k, v)| (rank(&k), k, v))
        .collect();
    entries.sort_by_key(|e| e.0);
    m.extend(entries.into_iter().map(|(_, k, v)| (k, v)));
}

/// Whether a DELETE that removes the object at once answers with the object (`ReturnDeletedObject:
/// true` in the resource's `pkg/registry/.../storage/storage.go`) rather than a `Status`.
pub fn returns_deleted_object(group: &str, plural: &str) -> bool {
    matches!(
        (group, plural),
        ("", "pods")
            | ("", "services")
            | ("", "serviceaccounts")
            | ("", "podtemplates")
            | ("", "resourcequotas")
            | ("storage.k8s.io", "storageclasses")
    )
}

/// The `Status` a DELETE answers when the object left the store (registry `finalizeDelete`):
/// `details.kind` is the resource, as upstream sets it.
pub fn delete_status(group: &str, plural: &str, obj: &Value) -> Value {
    let meta = obj.get("metadata");
    let field = |k: &str| {
        meta.and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut details = Map::new();
    details.insert("name".into(), Value::String(field("name")));
    if !group.is_empty() {
        details.insert("group".into(), Value::String(group.to_string()));
    }
    details.insert("kind".into(), Value::String(plural.to_string()));
    let uid = field("uid");
    if !uid.is_empty() {
        details.insert("uid".into(), Value::String(uid));
    }
    serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": Value::Object(details),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(v: &Value) -> Vec<&str> {
        v.as_object().unwrap().keys().map(String::as_str).collect()
    }

    #[test]
    fn builtins_take_go_struct_order() {
        let mut o = json!({
            "data": {"b": "1", "a": "2"},
            "metadata": {"labels": {"z": "1", "a": "2"}, "namespace": "ns", "name": "x", "uid": "u"},
            "apiVersion": "v1",
            "kind": "ConfigMap",
        });
        order_builtin(&mut o);
        assert_eq!(keys(&o), ["kind", "apiVersion", "metadata", "data"]);
        assert_eq!(
            keys(&o["metadata"]),
            ["name", "namespace", "uid", "resourceVersion", "labels"]
        );
        assert_eq!(keys(&o["metadata"]["labels"]), ["a", "z"]);
        assert_eq!(keys(&o["data"]), ["a", "b"]);
        let mut p = json!({"status": {}, "spec": {"b": 1, "a": 2}, "metadata": {}, "kind": "Pod", "apiVersion": "v1"});
        order_builtin(&mut p);
        assert_eq!(
            keys(&p),
            ["kind", "apiVersion", "metadata", "spec", "status"]
        );
        // Struct fields below the top are not maps: their order is left alone.
        assert_eq!(keys(&p["spec"]), ["b", "a"]);
    }

    #[test]
    fn fields_after_the_known_ones_keep_their_order() {
        let mut o = json!({"x": 1, "kind": "RoleBinding", "y": 2, "z": 3, "apiVersion": "v1"});
        order_builtin(&mut o);
        assert_eq!(keys(&o), ["kind", "apiVersion", "x", "y", "z"]);
        let mut m = json!({"metadata": {"finalizers": [], "a": 1, "name": "n", "b": 2, "c": 3}});
        order_builtin(&mut m);
        assert_eq!(
            keys(&m["metadata"]),
            ["name", "resourceVersion", "finalizers", "a", "b", "c"]
        );
    }

    #[test]
    fn custom_resources_sort_every_map() {
        let mut o = json!({"spec": {"z": {"b": 1, "a": [{"y": 1, "x": 2}]}, "a": 1}, "metadata": {"name": "x"}, "kind": "W", "apiVersion": "e/v1"});
        order_custom(&mut o);
        assert_eq!(keys(&o), ["apiVersion", "kind", "metadata", "spec"]);
        assert_eq!(keys(&o["spec"]), ["a", "z"]);
        assert_eq!(keys(&o["spec"]["z"]["a"][0]), ["x", "y"]);
        assert_eq!(keys(&o["metadata"]), ["name", "resourceVersion"]);
    }

    #[test]
    fn delete_status_names_the_resource() {
        let o = json!({"metadata": {"name": "d", "uid": "u1"}});
        let s = delete_status("apps", "deployments", &o);
        assert_eq!(
            s,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                   "details": {"name": "d", "group": "apps", "kind": "deployments", "uid": "u1"}})
        );
        assert!(returns_deleted_object("", "pods"));
        assert!(!returns_deleted_object("", "configmaps"));
    }
}

//! Renders the small subset of kustomize the sandbox overlay uses (`resources` files and
//! directories, `patches`/`patchesStrategicMerge` merge patches by kind and name) so the sandbox
//! needs no kubectl; anything else in a kustomization is refused rather than ignored.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Why an overlay could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum KustomizeError {
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("failed to render {path}: unsupported kustomization field {field:?}")]
    Unsupported { path: PathBuf, field: String },
    #[error("failed to apply patch {patch}: no resource {kind}/{name} to patch")]
    NoTarget {
        patch: String,
        kind: String,
        name: String,
    },
}

const SUPPORTED: &[&str] = &[
    "apiVersion",
    "kind",
    "resources",
    "patches",
    "patchesStrategicMerge",
];

/// Every object of the kustomization in `dir`, patched, ModelEntries first, then AgentStacks,
/// then AgentNodes, then anything else (each group in file order).
pub fn render(dir: &Path) -> Result<Vec<Value>, KustomizeError> {
    let mut objects = render_dir(dir)?;
    objects.sort_by_key(|o| kind_rank(o.get("kind").and_then(Value::as_str).unwrap_or("")));
    Ok(objects)
}

fn kind_rank(kind: &str) -> u8 {
    match kind {
        "CustomResourceDefinition" => 0,
        "Namespace" => 1,
        "ModelEntry" => 2,
        "AgentStack" => 3,
        "AgentNode" => 4,
        _ => 5,
    }
}

fn render_dir(dir: &Path) -> Result<Vec<Value>, KustomizeError> {
    let file = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .unwrap_or_else(|| dir.join("kustomization.yaml"));
    let docs = read_yaml(&file)?;
    let Some(k) = docs.into_iter().next() else {
        return Ok(Vec::new());
    };
    if let Some(map) = k.as_object()
        && let Some(field) = map.keys().find(|f| !SUPPORTED.contains(&f.as_str()))
    {
        return Err(KustomizeError::Unsupported {
            path: file,
            field: field.clone(),
        });
    }
    let mut objects = Vec::new();
    for res in strings(&k, "resources") {
        let path = dir.join(&res);
        if path.is_dir() {
            objects.extend(render_dir(&path)?);
        } else {
            objects.extend(read_yaml(&path)?);
        }
    }
    let mut patches: Vec<(String, Vec<Value>)> = Vec::new();
    for p in k
        .get("patches")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(path) = p.get("path").and_then(Value::as_str) {
            patches.push((path.to_string(), read_yaml(&dir.join(path))?));
        } else if let Some(text) = p.get("patch").and_then(Value::as_str) {
            patches.push(("inline patch".to_string(), parse_yaml(&file, text)?));
        }
        if p.get("target").is_some() {
            return Err(KustomizeError::Unsupported {
                path: file.clone(),
                field: "patches[].target".into(),
            });
        }
    }
    for path in strings(&k, "patchesStrategicMerge") {
        patches.push((path.clone(), read_yaml(&dir.join(&path))?));
    }
    for (name, docs) in patches {
        for patch in docs {
            apply_patch(&mut objects, &patch, &name)?;
        }
    }
    Ok(objects)
}

fn strings(v: &Value, field: &str) -> Vec<String> {
    v.get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn apply_patch(objects: &mut [Value], patch: &Value, name: &str) -> Result<(), KustomizeError> {
    let kind = patch.get("kind").and_then(Value::as_str).unwrap_or("");
    let target = patch
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let group = |o: &Value| {
        o.get("apiVersion")
            .and_then(Value::as_str)
            .and_then(|v| v.rsplit_once('/').map(|(g, _)| g.to_string()))
            .unwrap_or_default()
    };
    let found = objects.iter_mut().find(|o| {
        o.get("kind").and_then(Value::as_str) == Some(kind)
            && o.pointer("/metadata/name").and_then(Value::as_str) == Some(target)
            && group(o) == group(patch)
    });
    match found {
        Some(obj) => {
            merge_patch(obj, patch);
            Ok(())
        }
        None => Err(KustomizeError::NoTarget {
            patch: name.to_string(),
            kind: kind.to_string(),
            name: target.to_string(),
        }),
    }
}

/// RFC 7386 JSON merge patch (what a strategic merge patch amounts to on custom resources).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Some(t) = target.as_object_mut() {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

fn read_yaml(path: &Path) -> Result<Vec<Value>, KustomizeError> {
    let text = std::fs::read_to_string(path).map_err(|source| KustomizeError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_yaml(path, &text)
}

fn parse_yaml(path: &Path, text: &str) -> Result<Vec<Value>, KustomizeError> {
    let docs = serde_saphyr::from_multiple::<Value>(text).map_err(|e| KustomizeError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(docs.into_iter().filter(|v| !v.is_null()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn repo_dir(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(rel)
    }

    #[test]
    fn sandbox_overlay_renders_samples_with_patches() {
        let objs = render(&repo_dir("manifests/sandbox")).expect("render");
        let kinds: Vec<&str> = objs
            .iter()
            .filter_map(|o| o.get("kind").and_then(Value::as_str))
            .collect();
        assert_eq!(
            kinds,
            [
                "ModelEntry",
                "ModelEntry",
                "ModelEntry",
                "ModelEntry",
                "AgentStack",
                "AgentStack",
                "AgentNode",
                "AgentNode",
                "Secret"
            ]
        );
        let find = |kind: &str, name: &str| {
            objs.iter()
                .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
                .expect("object")
        };
        let stack = find("AgentStack", "security-analyst");
        assert_eq!(
            stack["spec"]["runtime"]["podAnnotations"]["sim.hypersync.io/run-seconds"],
            "600"
        );
        // The patch merges: the image and command of the sample survive.
        assert_eq!(stack["spec"]["runtime"]["image"], "busybox:1.36");
        let ds = find("ModelEntry", "deepseek-coder-33b");
        assert_eq!(ds["spec"]["source"]["local"]["scaling"]["idleSeconds"], 15);
        assert_eq!(ds["spec"]["source"]["local"]["scaling"]["mode"], "OnDemand");
        assert_eq!(ds["spec"]["source"]["local"]["gpu"]["count"], 4);
        let other = find("ModelEntry", "llama-3-8b");
        assert!(other["spec"]["source"]["local"]["scaling"]["idleSeconds"].is_null());
    }

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut t = json!({"a": {"b": 1, "c": [1, 2]}, "d": 1});
        merge_patch(
            &mut t,
            &json!({"a": {"b": null, "c": [3], "e": "x"}, "f": true}),
        );
        assert_eq!(t, json!({"a": {"c": [3], "e": "x"}, "d": 1, "f": true}));
    }

    #[test]
    fn unknown_target_and_unsupported_fields_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("kustomization.yaml"),
            "resources: [a.yaml]\npatches:\n- patch: |\n    kind: ModelEntry\n    apiVersion: hypersync.io/v1alpha1\n    metadata: {name: nope}\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("a.yaml"),
            "apiVersion: hypersync.io/v1alpha1\nkind: ModelEntry\nmetadata: {name: m}\n",
        )
        .expect("write");
        assert!(matches!(
            render(dir.path()),
            Err(KustomizeError::NoTarget { .. })
        ));
        std::fs::write(
            dir.path().join("kustomization.yaml"),
            "resources: [a.yaml]\nnamePrefix: x-\n",
        )
        .expect("write");
        assert!(matches!(
            render(dir.path()),
            Err(KustomizeError::Unsupported { .. })
        ));
    }
}

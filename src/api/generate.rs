//! Generation of the CRD YAML and the JSON Schemas from the Rust types (`make crds`). The drift test
//! compares these with the files in `crds/`, `schemas/` and the chart.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Map, Value, json};

use super::{AgentNode, AgentStack, ModelEntry};

/// Header of every generated YAML file.
pub const GENERATED_HEADER: &str =
    "# Generated from src/api by `make crds` (hypersync-operator crd). Do not edit by hand.\n";

/// Errors while generating files.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("failed to serialize a CRD to YAML")]
    Yaml(#[source] serde_saphyr::ser::Error),
    #[error("failed to serialize a schema to JSON")]
    Json(#[source] serde_json::Error),
    #[error("the CRD {0} has no openAPIV3Schema")]
    MissingSchema(String),
    #[error("the CRD {0} contains `{{{{`, which Helm would read as a template")]
    TemplateSyntax(String),
}

/// The CRDs of every kind, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![ModelEntry::crd(), AgentStack::crd(), AgentNode::crd()]
}

/// YAML as Go's readers (kubectl, Helm) read it: serde-saphyr quotes every string YAML 1.1 would
/// read as something else (`y` would be the boolean true there), so they see the same document.
fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, GenerateError> {
    serde_saphyr::to_string(crd).map_err(GenerateError::Yaml)
}

/// `crds/<plural>.yaml` files: (file name, contents).
pub fn crd_files() -> Result<Vec<(String, String)>, GenerateError> {
    crds()
        .into_iter()
        .map(|crd| {
            let yaml = to_yaml(&crd)?;
            Ok((
                format!("{}.yaml", crd.spec.names.plural),
                format!("{GENERATED_HEADER}{yaml}"),
            ))
        })
        .collect()
}

/// Helm's annotation that keeps a resource when its release is uninstalled (or when a later chart
/// version no longer renders it).
pub const HELM_KEEP: (&str, &str) = ("helm.sh/resource-policy", "keep");

/// Where the `hypersync-crds` chart keeps its templates, relative to the repository root.
pub const CRD_CHART_TEMPLATES: &str = "charts/hypersync-crds/templates";

/// Templates of the `hypersync-crds` chart: the CRDs as Helm templates (Helm installs *and upgrades*
/// templates, unlike a chart's `crds/`), annotated `helm.sh/resource-policy: keep` so that
/// uninstalling the chart never deletes the CRDs and with them every custom resource.
pub fn crd_chart_templates() -> Result<Vec<(String, String)>, GenerateError> {
    crds()
        .into_iter()
        .map(|mut crd| {
            crd.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(HELM_KEEP.0.to_string(), HELM_KEEP.1.to_string());
            let yaml = to_yaml(&crd)?;
            // Helm would read `{{` as template syntax.
            if yaml.contains("{{") {
                return Err(GenerateError::TemplateSyntax(crd.spec.names.plural.clone()));
            }
            Ok((
                format!("{}.yaml", crd.spec.names.plural),
                format!("{GENERATED_HEADER}{yaml}"),
            ))
        })
        .collect()
}

/// Every CRD as one multi-document YAML stream.
pub fn crds_yaml() -> Result<String, GenerateError> {
    let mut out = String::from(GENERATED_HEADER);
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&to_yaml(&crd)?);
    }
    Ok(out)
}

/// `schemas/<file>` JSON Schemas: (file name, contents). Each describes a whole manifest of one kind
/// (apiVersion, kind, metadata, spec) with the spec schema taken from the CRD, so editors and CI can
/// check manifests offline. Unknown fields are rejected, as `kubectl apply` does with strict field
/// validation.
pub fn schema_files() -> Result<Vec<(String, String)>, GenerateError> {
    let files = [
        ("model_registry.schema.json", ModelEntry::crd()),
        ("agent_stack.schema.json", AgentStack::crd()),
        ("agent_node.schema.json", AgentNode::crd()),
    ];
    files
        .into_iter()
        .map(|(file, crd)| {
            let schema = manifest_schema(file, &crd)?;
            let text = serde_json::to_string_pretty(&schema).map_err(GenerateError::Json)?;
            Ok((file.to_string(), format!("{text}\n")))
        })
        .collect()
}

fn manifest_schema(file: &str, crd: &CustomResourceDefinition) -> Result<Value, GenerateError> {
    let kind = &crd.spec.names.kind;
    let version = crd
        .spec
        .versions
        .first()
        .ok_or_else(|| GenerateError::MissingSchema(crd.spec.names.plural.clone()))?;
    let openapi = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .ok_or_else(|| GenerateError::MissingSchema(crd.spec.names.plural.clone()))?;
    let openapi = serde_json::to_value(openapi).map_err(GenerateError::Json)?;
    let spec = openapi
        .pointer("/properties/spec")
        .cloned()
        .ok_or_else(|| GenerateError::MissingSchema(crd.spec.names.plural.clone()))?;
    let api_version = format!("{}/{}", crd.spec.group, version.name);
    Ok(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("https://hypersync.io/schemas/{}/{file}", version.name),
        "title": format!("{kind} ({api_version})"),
        "description": openapi.get("description").cloned().unwrap_or(Value::Null),
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": false,
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": metadata_schema(),
            "spec": to_json_schema(spec),
        }
    }))
}

fn metadata_schema() -> Value {
    let string_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    json!({
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {
                "type": "string",
                "maxLength": 253,
                "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
            },
            "namespace": {"type": "string", "maxLength": 63, "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
            "labels": string_map,
            "annotations": string_map,
        }
    })
}

/// Turn a structural OpenAPI v3.0 schema into JSON Schema 2020-12: `nullable` becomes a `null` type,
/// int-or-string becomes `anyOf`, and objects with fixed properties reject unknown fields.
fn to_json_schema(schema: Value) -> Value {
    let Value::Object(mut map) = schema else {
        return schema;
    };
    for key in ["properties", "patternProperties"] {
        if let Some(Value::Object(props)) = map.remove(key) {
            let converted: Map<String, Value> = props
                .into_iter()
                .map(|(k, v)| (k, to_json_schema(v)))
                .collect();
            map.insert(key.to_string(), Value::Object(converted));
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(sub @ Value::Object(_)) = map.remove(key) {
            map.insert(key.to_string(), to_json_schema(sub));
        } else if let Some(other) = map.get(key).cloned() {
            map.insert(key.to_string(), other);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(items)) = map.remove(key) {
            map.insert(
                key.to_string(),
                Value::Array(items.into_iter().map(to_json_schema).collect()),
            );
        }
    }
    if map.remove("x-kubernetes-int-or-string") == Some(Value::Bool(true)) {
        map.remove("anyOf");
        map.insert(
            "anyOf".into(),
            json!([{"type": "integer"}, {"type": "string"}]),
        );
    }
    if map.remove("nullable") == Some(Value::Bool(true))
        && let Some(Value::String(t)) = map.get("type").cloned()
    {
        map.insert("type".into(), json!([t, "null"]));
    }
    let preserve = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if map.contains_key("properties") && !preserve && !map.contains_key("additionalProperties") {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_crds_parse_back_with_the_same_placement_fields() {
        let yaml = crds_yaml().expect("CRDs generate");
        assert!(
            yaml.contains("\"y\":"),
            "the placement's y field must be quoted"
        );
        // serde-saphyr reads YAML 1.1 booleans as Go does: an unquoted `y` key would not parse back.
        let docs: Vec<CustomResourceDefinition> =
            serde_saphyr::from_multiple(&yaml).expect("CRDs parse");
        assert_eq!(docs.len(), crds().len());
        for crd in docs {
            let generated = crds()
                .into_iter()
                .find(|c| c.metadata.name == crd.metadata.name)
                .expect("known CRD");
            assert_eq!(crd, generated);
        }
    }
}

//! `kubectl hypersync models`: the model registry as a table — capabilities, engine, GPUs, phase,
//! replicas, demand and endpoint of every ModelEntry.

use crate::api::ModelEntry;
use crate::api::model_entry::{Engine, ModelPhase, ModelType};

use super::table::table;

/// The table of `entries`, sorted by namespace and name; `with_namespace` adds a NAMESPACE column.
pub fn render(entries: &[ModelEntry], with_namespace: bool) -> String {
    let mut sorted: Vec<&ModelEntry> = entries.iter().collect();
    sorted.sort_by_key(|e| (e.metadata.namespace.clone(), e.metadata.name.clone()));
    let mut rows = Vec::with_capacity(sorted.len() + 1);
    let mut header: Vec<String> = Vec::new();
    if with_namespace {
        header.push("NAMESPACE".into());
    }
    header.extend(
        [
            "NAME",
            "TYPE",
            "CAPABILITIES",
            "ENGINE",
            "GPUS",
            "PHASE",
            "REPLICAS",
            "DEMAND",
            "ENDPOINT",
        ]
        .map(String::from),
    );
    rows.push(header);
    for e in sorted {
        let mut row = Vec::new();
        if with_namespace {
            row.push(e.metadata.namespace.clone().unwrap_or_default());
        }
        let st = e.status.as_ref();
        let local = e.spec.source.local.as_ref();
        let remote = e.spec.source.remote.as_ref();
        row.push(e.metadata.name.clone().unwrap_or_default());
        row.push(type_name(e.spec.model_type).to_string());
        row.push(if e.spec.capabilities.is_empty() {
            "-".to_string()
        } else {
            e.spec.capabilities.join(",")
        });
        row.push(match (local, remote) {
            (Some(l), _) => match l.engine {
                Engine::Vllm => "vLLM".to_string(),
                Engine::Ollama => "Ollama".to_string(),
            },
            (None, Some(r)) => format!("remote {:?}", r.provider),
            (None, None) => "-".to_string(),
        });
        row.push(
            local
                .and_then(|l| l.gpu.as_ref())
                .filter(|g| g.count > 0)
                .map(|g| match &g.product {
                    Some(p) => format!("{} {} ({p})", g.count, g.resource_name),
                    None => format!("{} {}", g.count, g.resource_name),
                })
                .unwrap_or_else(|| "-".to_string()),
        );
        row.push(model_phase_name(st.and_then(|s| s.phase)).to_string());
        row.push(
            st.and_then(|s| s.replicas.as_ref())
                .map(|r| format!("{}/{}", r.ready, r.desired))
                .unwrap_or_else(|| "-".to_string()),
        );
        row.push(
            st.and_then(|s| s.demand)
                .map(|d| d.to_string())
                .unwrap_or_else(|| "-".to_string()),
        );
        row.push(
            st.and_then(|s| s.endpoint.clone())
                .unwrap_or_else(|| "-".to_string()),
        );
        rows.push(row);
    }
    table(&rows)
}

fn type_name(t: ModelType) -> &'static str {
    match t {
        ModelType::Llm => "LLM",
        ModelType::Embedding => "Embedding",
        ModelType::Reranker => "Reranker",
        ModelType::Classifier => "Classifier",
        ModelType::Vision => "Vision",
        ModelType::Audio => "Audio",
    }
}

/// The name of a ModelEntry phase, `-` before the operator wrote one.
pub fn model_phase_name(p: Option<ModelPhase>) -> &'static str {
    match p {
        None => "-",
        Some(ModelPhase::Pending) => "Pending",
        Some(ModelPhase::Provisioning) => "Provisioning",
        Some(ModelPhase::Ready) => "Ready",
        Some(ModelPhase::Idle) => "Idle",
        Some(ModelPhase::Degraded) => "Degraded",
        Some(ModelPhase::Failed) => "Failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn registry_table_lists_engine_gpus_phase_demand_endpoint() {
        let entries: Vec<ModelEntry> = serde_json::from_value(json!([
            {"apiVersion": "hypersync.io/v1alpha1", "kind": "ModelEntry",
             "metadata": {"name": "gpt-4o", "namespace": "default"},
             "spec": {"type": "LLM", "capabilities": ["coding", "general"],
                      "source": {"remote": {"provider": "OpenAI", "model": "gpt-4o",
                                 "endpoint": "https://api.openai.com/v1"}}},
             "status": {"phase": "Ready", "endpoint": "https://api.openai.com/v1", "demand": 0}},
            {"apiVersion": "hypersync.io/v1alpha1", "kind": "ModelEntry",
             "metadata": {"name": "deepseek-coder-33b", "namespace": "default"},
             "spec": {"type": "LLM", "capabilities": ["coding", "security"],
                      "source": {"local": {"engine": "VLLM", "model": "m", "gpu": {"count": 4}}}},
             "status": {"phase": "Provisioning", "replicas": {"desired": 1, "ready": 0}, "demand": 1,
                        "endpoint": "http://deepseek-coder-33b.default.svc:8000/v1"}}
        ]))
        .expect("entries");
        let out = render(&entries, false);
        assert_eq!(
            out,
            "\
NAME                 TYPE   CAPABILITIES      ENGINE          GPUS               PHASE          REPLICAS   DEMAND   ENDPOINT
deepseek-coder-33b   LLM    coding,security   vLLM            4 nvidia.com/gpu   Provisioning   0/1        1        http://deepseek-coder-33b.default.svc:8000/v1
gpt-4o               LLM    coding,general    remote OpenAI   -                  Ready          -          0        https://api.openai.com/v1
"
        );
    }
}

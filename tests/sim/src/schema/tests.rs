//! Unit tests for validation, defaulting and pruning against a realistic CRD schema.

use super::*;
use serde_json::{Value, json};

fn model_schema() -> Value {
    serde_saphyr::from_str(
        r#"
type: object
properties:
  apiVersion: {type: string}
  kind: {type: string}
  metadata: {type: object}
  spec:
    type: object
    required: [source, format]
    x-kubernetes-validations:
      - rule: "!has(self.minReplicas) || !has(self.replicas) || self.replicas >= self.minReplicas"
        messageExpression: "'replicas (' + string(self.replicas) + ') must be >= minReplicas'"
        fieldPath: .replicas
    properties:
      format: {type: string, enum: [gguf, safetensors]}
      replicas: {type: integer, minimum: 0, maximum: 10, default: 1}
      minReplicas: {type: integer}
      name: {type: string, pattern: '^[a-z0-9-]+$', maxLength: 20, minLength: 1}
      source:
        type: object
        x-kubernetes-validations:
          - rule: "has(self.local) != has(self.remote)"
            message: "exactly one of local or remote must be set"
        properties:
          local:
            type: object
            required: [path]
            properties:
              path: {type: string}
          remote:
            type: object
            properties:
              url: {type: string}
              insecure: {type: boolean, default: false}
      storageClass:
        type: string
        x-kubernetes-validations:
          - rule: "self == oldSelf"
            message: "storageClass is immutable"
            reason: FieldValueForbidden
      layers:
        type: object
        properties:
          cognitive: {type: integer, minimum: 1}
      tags:
        type: array
        maxItems: 3
        x-kubernetes-list-type: set
        items: {type: string}
      ports:
        type: array
        x-kubernetes-list-type: map
        x-kubernetes-list-map-keys: [name]
        items:
          type: object
          required: [name]
          properties:
            name: {type: string}
            port: {type: integer, default: 80}
      labels:
        type: object
        additionalProperties: {type: string, maxLength: 5}
      extra:
        type: object
        x-kubernetes-preserve-unknown-fields: true
      createdAt: {type: string, format: date-time}
      size: {x-kubernetes-int-or-string: true}
      ratio: {type: number, exclusiveMaximum: true, maximum: 1.5}
  status:
    type: object
    properties:
      phase: {type: string}
"#,
    )
    .expect("test schema is valid yaml")
}

fn obj(spec: Value) -> Value {
    json!({
        "apiVersion": "hypersync.io/v1alpha1",
        "kind": "ModelEntry",
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": spec,
    })
}

fn texts(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(ToString::to_string).collect()
}

#[test]
fn valid_object_has_no_errors() {
    let s = StructuralSchema::new(&model_schema());
    assert!(s.compile_errors().is_empty(), "{:?}", s.compile_errors());
    let o = obj(
        json!({"format": "gguf", "source": {"remote": {"url": "https://x"}}, "size": "10Gi",
        "tags": ["a", "b"], "createdAt": "2024-05-01T10:00:00Z", "ratio": 1.2}),
    );
    assert_eq!(texts(&s.validate(&o, None)), Vec::<String>::new());
}

#[test]
fn cel_rule_message_names_the_field() {
    let s = StructuralSchema::new(&model_schema());
    let o = obj(json!({"format": "gguf", "source": {}}));
    let errs = s.validate(&o, None);
    assert_eq!(
        texts(&errs),
        vec!["spec.source: Invalid value: \"object\": exactly one of local or remote must be set"]
    );
    assert_eq!(
        invalid_message("ModelEntry", "hypersync.io", "bad", &errs),
        "ModelEntry.hypersync.io \"bad\" is invalid: spec.source: Invalid value: \"object\": exactly one of local or remote must be set"
    );
    let causes = status_causes(&errs);
    assert_eq!(causes[0]["reason"], "FieldValueInvalid");
    assert_eq!(causes[0]["field"], "spec.source");
    assert_eq!(
        causes[0]["message"],
        "Invalid value: \"object\": exactly one of local or remote must be set"
    );
}

#[test]
fn required_and_enum_block_cel() {
    let s = StructuralSchema::new(&model_schema());
    let o = obj(json!({"format": "onnx"}));
    let errs = s.validate(&o, None);
    assert_eq!(
        texts(&errs),
        vec![
            "spec.format: Unsupported value: \"onnx\": supported values: \"gguf\", \"safetensors\"",
            "spec.source: Required value",
            &format!("<nil>: Invalid value: null: {}", structural::CEL_SKIPPED),
        ]
    );
    assert_eq!(errs[0].kind, FieldErrorKind::NotSupported);
    assert_eq!(errs[1].kind, FieldErrorKind::Required);
}

#[test]
fn scalar_constraints_messages() {
    let s = StructuralSchema::new(&model_schema());
    let o = obj(json!({
        "format": "gguf",
        "source": {"local": {"path": "/m"}},
        "replicas": 11,
        "name": "Bad_Name",
        "layers": {"cognitive": 0},
        "createdAt": "yesterday",
        "ratio": 1.5,
    }));
    let got = texts(&s.validate_openapi(&o, None));
    assert_eq!(
        got,
        vec![
            "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10",
            "spec.name: Invalid value: \"Bad_Name\": spec.name in body should match '^[a-z0-9-]+$'",
            "spec.layers.cognitive: Invalid value: 0: spec.layers.cognitive in body should be greater than or equal to 1",
            "spec.createdAt: Invalid value: \"yesterday\": spec.createdAt in body must be of type date-time: \"yesterday\"",
            "spec.ratio: Invalid value: 1.5: spec.ratio in body should be less than 1.5",
        ]
    );
}

#[test]
fn type_errors_and_lengths() {
    let s = StructuralSchema::new(&model_schema());
    let o = obj(json!({
        "format": "gguf",
        "source": {"local": {"path": "/m"}},
        "replicas": "three",
        "name": "",
        "labels": {"team": "toolong"},
        "tags": ["a", "b", "c", "d"],
        "size": true,
    }));
    let errs = s.validate(&o, None);
    let got = texts(&errs);
    assert_eq!(
        got,
        vec![
            "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
            "spec.name: Invalid value: \"\": spec.name in body should be at least 1 chars long",
            "spec.name: Invalid value: \"\": spec.name in body should match '^[a-z0-9-]+$'",
            "spec.tags: Too many: 4: must have at most 3 items",
            "spec.labels.team: Too long: may not be more than 5 bytes",
            "spec.size: Invalid value: \"boolean\": spec.size in body must be of type integer,string: \"boolean\"",
            &format!("<nil>: Invalid value: null: {}", structural::CEL_SKIPPED),
        ]
    );
    assert_eq!(errs[0].kind.reason(), "FieldValueTypeInvalid");
    assert_eq!(errs[3].kind.reason(), "FieldValueTooMany");
    assert_eq!(errs[4].kind.reason(), "FieldValueTooLong");
}

#[test]
fn list_type_duplicates() {
    let s = StructuralSchema::new(&model_schema());
    let o = obj(json!({
        "format": "gguf",
        "source": {"local": {"path": "/m"}},
        "tags": ["a", "a"],
        "ports": [{"name": "http", "port": 80}, {"name": "grpc"}, {"name": "http", "port": 81}],
    }));
    assert_eq!(
        texts(&s.validate(&o, None)),
        vec![
            "spec.tags[1]: Duplicate value: \"a\"",
            "spec.ports[2]: Duplicate value: {\"name\":\"http\"}",
        ]
    );
}

#[test]
fn transition_rule_only_on_update() {
    let s = StructuralSchema::new(&model_schema());
    let old =
        obj(json!({"format": "gguf", "source": {"local": {"path": "/m"}}, "storageClass": "fast"}));
    assert!(s.validate(&old, None).is_empty());
    let mut new = old.clone();
    new["spec"]["storageClass"] = json!("slow");
    let errs = s.validate(&new, Some(&old));
    assert_eq!(
        texts(&errs),
        vec!["spec.storageClass: Forbidden: storageClass is immutable"]
    );
    assert_eq!(errs[0].kind, FieldErrorKind::Forbidden);
    // unchanged: passes
    let mut same = old.clone();
    same["spec"]["replicas"] = json!(2);
    assert!(s.validate(&same, Some(&old)).is_empty());
}

#[test]
fn message_expression_and_field_path() {
    let s = StructuralSchema::new(&model_schema());
    let o = obj(
        json!({"format": "gguf", "source": {"local": {"path": "/m"}}, "replicas": 1, "minReplicas": 2}),
    );
    assert_eq!(
        texts(&s.validate(&o, None)),
        vec!["spec.replicas: Invalid value: \"object\": replicas (1) must be >= minReplicas"]
    );
}

#[test]
fn ratcheting_keeps_unchanged_invalid_fields() {
    let s = StructuralSchema::new(&model_schema());
    let old =
        obj(json!({"format": "gguf", "source": {"local": {"path": "/m"}}, "name": "Old_Name"}));
    let mut new = old.clone();
    new["spec"]["replicas"] = json!(3);
    assert!(s.validate(&new, Some(&old)).is_empty());
    new["spec"]["name"] = json!("Still_Bad");
    assert_eq!(s.validate(&new, Some(&old)).len(), 1);
}

#[test]
fn one_of_reports_like_kube_openapi() {
    let schema = json!({
        "type": "object",
        "properties": {"spec": {
            "type": "object",
            "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
            "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
        }},
    });
    let s = StructuralSchema::new(&schema);
    assert_eq!(
        texts(&s.validate(&json!({"spec": {}}), None)),
        vec![
            "<nil>: Invalid value: \"\": \"spec\" must validate one and only one schema (oneOf). Found none valid",
            "spec.a: Required value",
        ]
    );
    assert_eq!(
        texts(&s.validate(&json!({"spec": {"a": "x", "b": "y"}}), None)),
        vec![
            "<nil>: Invalid value: \"\": \"spec\" must validate one and only one schema (oneOf). Found 2 valid alternatives"
        ]
    );
    assert!(s.validate(&json!({"spec": {"b": "y"}}), None).is_empty());
    let not = StructuralSchema::new(
        &json!({"type": "object", "properties": {"x": {"type": "string", "not": {"enum": ["no"]}}}}),
    );
    assert_eq!(
        texts(&not.validate(&json!({"x": "no"}), None)),
        vec!["<nil>: Invalid value: \"\": \"x\" must not validate the schema (not)"]
    );
}

#[test]
fn defaults_apply_recursively_only_when_absent() {
    let s = StructuralSchema::new(&model_schema());
    let mut o = obj(json!({
        "format": "gguf",
        "source": {"remote": {"url": "u"}},
        "ports": [{"name": "http"}, {"name": "grpc", "port": 9000}],
        "replicas": null,
        "name": null,
    }));
    s.apply_defaults(&mut o);
    assert_eq!(
        o["spec"]["replicas"], 1,
        "null non-nullable field gets its default"
    );
    assert!(
        o["spec"].get("name").is_none(),
        "null without default is dropped"
    );
    assert_eq!(o["spec"]["source"]["remote"]["insecure"], false);
    assert_eq!(o["spec"]["ports"][0]["port"], 80);
    assert_eq!(o["spec"]["ports"][1]["port"], 9000);
    assert!(o["spec"]["source"].get("local").is_none());
    let mut explicit = obj(json!({"replicas": 4}));
    s.apply_defaults(&mut explicit);
    assert_eq!(explicit["spec"]["replicas"], 4);
}

#[test]
fn prune_drops_unknown_fields() {
    let s = StructuralSchema::new(&model_schema());
    let mut o = obj(json!({
        "format": "gguf",
        "unknown": 1,
        "source": {"local": {"path": "/m", "junk": true}},
        "labels": {"a": "b"},
        "extra": {"anything": {"goes": [1, 2]}},
        "ports": [{"name": "http", "bogus": 1}],
    }));
    o["metadata"]["labels"] = json!({"x": "y"});
    o["status"] = json!({"phase": "Ready", "noise": 1});
    o["topLevelJunk"] = json!(true);
    assert_eq!(
        s.unknown_fields(&o),
        vec![
            "spec.unknown",
            "spec.source.local.junk",
            "spec.ports[0].bogus",
            "status.noise",
            "topLevelJunk"
        ]
    );
    s.prune(&mut o);
    assert!(o["spec"].get("unknown").is_none());
    assert!(o["spec"]["source"]["local"].get("junk").is_none());
    assert_eq!(o["spec"]["labels"]["a"], "b");
    assert_eq!(o["spec"]["extra"]["anything"]["goes"], json!([1, 2]));
    assert!(o["spec"]["ports"][0].get("bogus").is_none());
    assert_eq!(o["metadata"]["labels"]["x"], "y");
    assert!(o["status"].get("noise").is_none());
    assert!(o.get("topLevelJunk").is_none());
    assert_eq!(o["apiVersion"], "hypersync.io/v1alpha1");
    assert_eq!(o["kind"], "ModelEntry");
}

#[test]
fn bad_cel_rule_is_a_compile_error() {
    let s = StructuralSchema::new(
        &json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.a ==="}]}),
    );
    assert_eq!(s.compile_errors().len(), 1);
}

#[test]
fn schema_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<StructuralSchema>();
}

#[test]
fn cel_runtime_error_is_reported_like_the_apiserver() {
    let schema = json!({"type": "object", "properties": {"spec": {
        "type": "object",
        "properties": {"x": {"type": "integer"}},
        "x-kubernetes-validations": [{"rule": "self.x > 0"}],
    }}});
    let s = StructuralSchema::new(&schema);
    assert_eq!(
        texts(&s.validate(&json!({"spec": {}}), None)),
        vec!["spec: Invalid value: \"object\": no such key: x evaluating rule: self.x > 0"]
    );
    assert_eq!(
        texts(&s.validate(&json!({"spec": {"x": 0}}), None)),
        vec!["spec: Invalid value: \"object\": failed rule: self.x > 0"]
    );
}

#[test]
fn schema_from_crd_object() {
    let crd = json!({"spec": {"versions": [
        {"name": "v1alpha1", "schema": {"openAPIV3Schema": model_schema()}},
        {"name": "v1", "schema": {"openAPIV3Schema": {"type": "object"}}}
    ]}});
    let s = StructuralSchema::from_crd(&crd, "v1alpha1").expect("version exists");
    assert_eq!(s.schema(), &model_schema());
    assert!(StructuralSchema::from_crd(&crd, "v2").is_none());
}

#[test]
fn root_cel_sees_only_name_in_metadata() {
    let schema = json!({"type": "object",
        "x-kubernetes-validations": [
            {"rule": "self.metadata.name.startsWith('m-')", "message": "name must start with m-"},
            {"rule": "!has(self.metadata.labels)", "message": "labels are hidden from CEL"}
        ],
        "properties": {"metadata": {"type": "object"}}});
    let s = StructuralSchema::new(&schema);
    let o = json!({"metadata": {"name": "x", "labels": {"a": "b"}}});
    assert_eq!(
        texts(&s.validate(&o, None)),
        vec!["<nil>: Invalid value: \"object\": name must start with m-"]
    );
}

/// The operator's generated CRDs (`crds/*.yaml` at the repository root).
fn repo_crds() -> Vec<Value> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("crds directory exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).expect("readable crd");
            out.push(serde_saphyr::from_str(&text).expect("crd is valid yaml"));
        }
    }
    out
}

#[test]
fn operator_crds_compile_cleanly() {
    let crds = repo_crds();
    assert!(!crds.is_empty());
    for crd in &crds {
        assert_eq!(
            crd::crd_schema_errors(crd),
            Vec::<FieldError>::new(),
            "{}",
            crd["metadata"]["name"]
        );
        for v in crd["spec"]["versions"].as_array().expect("versions") {
            let name = v["name"].as_str().expect("version name");
            let s = StructuralSchema::from_crd(crd, name).expect("schema");
            assert!(
                s.compile_errors().is_empty(),
                "{}: {:?}",
                crd["metadata"]["name"],
                s.compile_errors()
            );
            let cols = printer_columns_from_crd_version(v);
            assert_eq!(cols[0].name, "Name");
        }
    }
}

#[test]
fn operator_model_entry_messages() {
    let crds = repo_crds();
    let Some(crd) = crds
        .iter()
        .find(|c| c["metadata"]["name"] == "modelentries.hypersync.io")
    else {
        panic!("modelentries CRD present");
    };
    let s = StructuralSchema::from_crd(crd, "v1alpha1").expect("v1alpha1 schema");
    let mut o = json!({"apiVersion": "hypersync.io/v1alpha1", "kind": "ModelEntry",
        "metadata": {"name": "bad", "namespace": "default"}, "spec": {"type": "LLM", "source": {}}});
    s.prune(&mut o);
    s.apply_defaults(&mut o);
    let errs = s.validate(&o, None);
    assert_eq!(
        invalid_message("ModelEntry", "hypersync.io", "bad", &errs),
        "ModelEntry.hypersync.io \"bad\" is invalid: spec.source: Invalid value: \"object\": exactly one of source.local or source.remote must be set"
    );
    o["spec"]["source"] = json!({"local": {"engine": "TGI", "model": "m"}});
    let errs = s.validate(&o, None);
    assert_eq!(
        texts(&errs)[0],
        "spec.source.local.engine: Unsupported value: \"TGI\": supported values: \"VLLM\", \"Ollama\""
    );
    let cols = printer_columns_from_crd_version(&crd["spec"]["versions"][0]);
    let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Name", "Type", "Engine", "Provider", "Phase", "Ready", "Replicas", "Demand",
            "Endpoint", "Age"
        ]
    );
}

#[test]
fn unchanged_values_skip_only_ratcheted_cel_rules() {
    let schema = json!({"type": "object", "properties": {
        "metadata": {"type": "object"},
        "spec": {"type": "object", "properties": {
            "x": {"type": "integer", "x-kubernetes-validations": [{"rule": "self > oldSelf", "message": "x must grow"}]},
            "y": {"type": "integer", "x-kubernetes-validations": [{"rule": "self < 10", "message": "y must be small"}]},
        }},
        "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
    }});
    let s = StructuralSchema::new(&schema);
    let old =
        json!({"metadata": {"name": "a"}, "spec": {"x": 1, "y": 20}, "status": {"phase": "A"}});
    let mut new = old.clone();
    new["status"]["phase"] = json!("B");
    // A transition rule runs on an unchanged value (it compares with the old one); a rule that
    // is not one is ratcheted.
    assert_eq!(
        texts(&s.validate(&new, Some(&old))),
        vec!["spec.x: Invalid value: \"integer\": x must grow"]
    );
    new["spec"]["y"] = json!(21);
    assert_eq!(
        texts(&s.validate(&new, Some(&old))),
        vec![
            "spec.x: Invalid value: \"integer\": x must grow",
            "spec.y: Invalid value: \"integer\": y must be small"
        ]
    );
    assert_eq!(
        texts(&s.validate(&new, None)),
        vec!["spec.y: Invalid value: \"integer\": y must be small"]
    );
}

#[test]
fn matches_rules_reuse_compiled_patterns() {
    let schema = json!({"type": "object", "properties": {
        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-validations": [
            {"rule": "self.all(t, t.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))", "message": "bad tag"},
            {"rule": "self.all(t, !matches(t, 'x$'))", "message": "no x"}]},
    }});
    let s = StructuralSchema::new(&schema);
    assert!(s.compile_errors().is_empty(), "{:?}", s.compile_errors());
    for _ in 0..3 {
        assert!(
            s.validate(&json!({"tags": ["a", "b-c", "d9"]}), None)
                .is_empty()
        );
        assert_eq!(
            texts(&s.validate(&json!({"tags": ["ok", "Not-Ok", "box"]}), None)),
            vec![
                "tags: Invalid value: \"array\": bad tag",
                "tags: Invalid value: \"array\": no x"
            ]
        );
    }
}

#[test]
fn prune_removes_unknown_fields_in_key_order_as_before() {
    // Unknown fields leave as `Map::remove` (swap) removes them one after the other in key
    // order: the last key takes each hole. The reported paths keep key order.
    let s = StructuralSchema::new(&model_schema());
    let mut o = obj(json!({
        "u1": 1, "format": "gguf", "u2": {"x": 1}, "labels": {"a": "b"}, "u3": [1], "replicas": 2,
    }));
    let removed = s.prune_reporting(&mut o);
    assert_eq!(removed, vec!["spec.u1", "spec.u2", "spec.u3"]);
    let keys: Vec<&String> = o["spec"].as_object().expect("spec").keys().collect();
    assert_eq!(keys, ["replicas", "format", "labels"]);
}

#[test]
fn unchanged_value_runs_only_its_transition_rules_with_old_self_as_self() {
    // One node with both kinds of rule: unchanged, only the transition rules report (oldSelf is
    // the same value); changed, every rule runs against the real old value.
    let schema = json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "x": {"type": "integer"}, "y": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
        }, "x-kubernetes-validations": [
            {"rule": "self.x > oldSelf.x", "message": "x must grow"},
            {"rule": "self.y < 10", "messageExpression": "'y is ' + string(self.y)"},
            {"rule": "self.tags == oldSelf.tags", "message": "tags are immutable"},
        ]},
        "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
    }});
    let s = StructuralSchema::new(&schema);
    assert!(s.compile_errors().is_empty(), "{:?}", s.compile_errors());
    let old = json!({"spec": {"x": 1, "y": 20, "tags": ["a"]}, "status": {"phase": "A"}});
    let mut new = old.clone();
    new["status"]["phase"] = json!("B");
    assert_eq!(
        texts(&s.validate(&new, Some(&old))),
        vec!["spec: Invalid value: \"object\": x must grow"]
    );
    new["spec"]["tags"] = json!(["b"]);
    assert_eq!(
        texts(&s.validate(&new, Some(&old))),
        vec![
            "spec: Invalid value: \"object\": x must grow",
            "spec: Invalid value: \"object\": y is 20",
            "spec: Invalid value: \"object\": tags are immutable"
        ]
    );
    new["spec"]["x"] = json!(2);
    new["spec"]["tags"] = json!(["a"]);
    assert_eq!(
        texts(&s.validate(&new, Some(&old))),
        vec!["spec: Invalid value: \"object\": y is 20"]
    );
}

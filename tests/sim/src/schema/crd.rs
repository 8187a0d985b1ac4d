//! CustomResourceDefinition schema checks the apiextensions server makes at registration: structural
//! schema invariants, regex patterns and CEL rules that must compile.

use super::errors::{BadValue, FieldError, FieldErrorKind};
use regex::Regex;
use serde_json::Value;

const MAX_DEPTH: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Field,
    Item,
}

/// Errors that make the apiserver reject a `apiextensions.k8s.io/v1` CRD (field paths like
/// `spec.versions[0].schema.openAPIV3Schema.properties[spec].type`), for the 422 message
/// `CustomResourceDefinition.apiextensions.k8s.io "x" is invalid: ...` (see `invalid_message`).
pub fn crd_schema_errors(crd: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(versions) = crd
        .get("spec")
        .and_then(|s| s.get("versions"))
        .and_then(Value::as_array)
    else {
        return vec![FieldError::required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        )];
    };
    for (i, v) in versions.iter().enumerate() {
        let Some(schema) = v.get("schema").and_then(|s| s.get("openAPIV3Schema")) else {
            errs.push(FieldError::required(
                format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "schemas are required",
            ));
            continue;
        };
        let base = format!("spec.versions[{i}].schema.openAPIV3Schema");
        check_node(schema, &base, Level::Root, &mut errs, 0);
        if let Some(cols) = v.get("additionalPrinterColumns").and_then(Value::as_array) {
            for (j, c) in cols.iter().enumerate() {
                let path = c.get("jsonPath").and_then(Value::as_str).unwrap_or("");
                if let Err(e) = super::jsonpath::JsonPath::parse(path) {
                    errs.push(FieldError::invalid(
                        format!("spec.versions[{i}].additionalPrinterColumns[{j}].jsonPath"),
                        Value::String(path.to_string()),
                        e,
                    ));
                }
            }
        }
    }
    let storage = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if storage != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            Value::Array(versions.clone()),
            "must have exactly one version marked as storage version",
        ));
    }
    errs
}

fn check_node(s: &Value, path: &str, lvl: Level, errs: &mut Vec<FieldError>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let Some(m) = s.as_object() else { return };
    let flag = |k: &str| m.get(k).and_then(Value::as_bool) == Some(true);
    let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
    if flag("x-kubernetes-embedded-resource") && ty != "object" {
        if ty.is_empty() {
            errs.push(FieldError::required(
                format!("{path}.type"),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        } else {
            errs.push(FieldError::invalid(
                format!("{path}.type"),
                Value::String(ty.into()),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        }
    } else if ty.is_empty()
        && !flag("x-kubernetes-int-or-string")
        && !flag("x-kubernetes-preserve-unknown-fields")
    {
        let detail = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        errs.push(FieldError::required(format!("{path}.type"), detail));
    }
    if lvl == Level::Root && !ty.is_empty() && ty != "object" {
        errs.push(FieldError::invalid(
            format!("{path}.type"),
            Value::String(ty.into()),
            "must be object at the root",
        ));
    }
    if m.contains_key("$ref") {
        errs.push(forbidden(format!("{path}.$ref"), "$ref is not supported"));
    }
    if flag("uniqueItems") {
        errs.push(forbidden(
            format!("{path}.uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    if m.contains_key("properties") && m.contains_key("additionalProperties") {
        errs.push(forbidden(
            format!("{path}.additionalProperties"),
            "additionalProperties and properties are mutual exclusive",
        ));
    }
    if let Some(p) = m.get("pattern").and_then(Value::as_str)
        && let Err(e) = Regex::new(p)
    {
        errs.push(FieldError::invalid(
            format!("{path}.pattern"),
            Value::String(p.into()),
            format!("must be a valid regular expression, but isn't: {e}"),
        ));
    }
    if let Some(rules) = m.get("x-kubernetes-validations").and_then(Value::as_array) {
        for (i, r) in rules.iter().enumerate() {
            let rule = r.get("rule").and_then(Value::as_str).unwrap_or("");
            if let Err(e) = kube_cel::cel::Program::compile(rule) {
                errs.push(FieldError::invalid(
                    format!("{path}.x-kubernetes-validations[{i}].rule"),
                    Value::String(rule.into()),
                    format!("compilation failed: {e}"),
                ));
            }
            if let Some(me) = r.get("messageExpression").and_then(Value::as_str)
                && let Err(e) = kube_cel::cel::Program::compile(me)
            {
                errs.push(FieldError::invalid(
                    format!("{path}.x-kubernetes-validations[{i}].messageExpression"),
                    Value::String(me.into()),
                    format!("messageExpression compilation failed: {e}"),
                ));
            }
        }
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        for (k, ps) in props {
            check_node(
                ps,
                &format!("{path}.properties[{k}]"),
                Level::Field,
                errs,
                depth + 1,
            );
        }
    }
    if let Some(items) = m.get("items") {
        check_node(
            items,
            &format!("{path}.items"),
            Level::Item,
            errs,
            depth + 1,
        );
    }
    if let Some(add) = m.get("additionalProperties").filter(|a| a.is_object()) {
        check_node(
            add,
            &format!("{path}.additionalProperties"),
            Level::Field,
            errs,
            depth + 1,
        );
    }
}

fn forbidden(field: String, detail: &str) -> FieldError {
    FieldError {
        field,
        kind: FieldErrorKind::Forbidden,
        message: detail.into(),
        value: BadValue::Omit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn structural_violations() {
        let crd = json!({"spec": {"versions": [{
            "name": "v1", "served": true, "storage": true,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {
                    "noType": {"description": "x"},
                    "free": {"x-kubernetes-preserve-unknown-fields": true},
                    "port": {"x-kubernetes-int-or-string": true},
                    "tags": {"type": "array", "uniqueItems": true, "items": {}},
                    "name": {"type": "string", "pattern": "([a-z"},
                    "both": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}
                },
                "x-kubernetes-validations": [{"rule": "self.a ==="}]}
            }}}
        }]}});
        let got: Vec<String> = crd_schema_errors(&crd)
            .iter()
            .map(ToString::to_string)
            .collect();
        let p = "spec.versions[0].schema.openAPIV3Schema.properties[spec]";
        assert!(got[0].starts_with(&format!("{p}.x-kubernetes-validations[0].rule: Invalid value: \"self.a ===\": compilation failed:")), "{got:?}");
        assert_eq!(
            got[1..],
            [
                format!(
                    "{p}.properties[noType].type: Required value: must not be empty for specified object fields"
                ),
                format!(
                    "{p}.properties[tags].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic"
                ),
                format!(
                    "{p}.properties[tags].items.type: Required value: must not be empty for specified array items"
                ),
                got[4].clone(),
                format!(
                    "{p}.properties[both].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"
                ),
            ]
        );
        assert!(got[4].starts_with(&format!("{p}.properties[name].pattern: Invalid value: \"([a-z\": must be a valid regular expression")));
    }

    #[test]
    fn root_and_storage_rules() {
        let crd = json!({"spec": {"versions": [
            {"name": "v1", "storage": false, "schema": {"openAPIV3Schema": {"type": "string"}}}
        ]}});
        let got: Vec<String> = crd_schema_errors(&crd)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got[0],
            "spec.versions[0].schema.openAPIV3Schema.type: Invalid value: \"string\": must be object at the root"
        );
        assert!(got[1].starts_with("spec.versions: Invalid value: "));
        let ok = json!({"spec": {"versions": [{"name": "v1", "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}}]}});
        assert!(crd_schema_errors(&ok).is_empty());
    }
}

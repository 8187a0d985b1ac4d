//! Test support: compares a built object with an expected YAML fixture under
//! `src/workload/fixtures/` (`UPDATE_FIXTURES=1 cargo test --lib workload::` rewrites them; review the
//! diff before committing).

use std::path::PathBuf;

use serde::Serialize;

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/workload/fixtures")
        .join(format!("{name}.yaml"))
}

/// Panics with the actual YAML when `actual` differs from fixture `name` (compared as JSON values, so
/// key order and YAML formatting do not matter).
pub fn assert_fixture<T: Serialize>(name: &str, actual: &T) {
    let actual_value = serde_json::to_value(actual).expect("test object serialises");
    let actual_yaml = serde_saphyr::to_string(&actual_value).expect("test object as YAML");
    let path = fixture_path(name);
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::write(&path, &actual_yaml).expect("write fixture");
        return;
    }
    let expected_text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "failed to read fixture {}: {e}\nactual:\n{actual_yaml}",
            path.display()
        )
    });
    let expected: serde_json::Value =
        serde_saphyr::from_str(&expected_text).expect("fixture is valid YAML");
    assert!(
        expected == actual_value,
        "{} differs from the built object; actual:\n{actual_yaml}",
        path.display()
    );
}

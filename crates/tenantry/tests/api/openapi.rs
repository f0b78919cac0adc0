//! The OpenAPI document is a reviewed artifact: `docs/openapi.json` must match the code.
//! Regenerate with `UPDATE_SNAPSHOTS=1 cargo test openapi`.

use std::path::PathBuf;

#[test]
fn openapi_matches_committed_snapshot() {
    let (_, spec) = tenantry::startup::api_parts();
    let generated = format!("{}\n", spec.to_pretty_json().unwrap());
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    if std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is out of date; run UPDATE_SNAPSHOTS=1 cargo test openapi and review the diff"
    );
    let value: serde_json::Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(value["openapi"], "3.1.0");
    // Every operation documents its errors as problem details.
    for (path, item) in value["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(!responses.is_empty(), "{method} {path} documents responses");
        }
    }
}

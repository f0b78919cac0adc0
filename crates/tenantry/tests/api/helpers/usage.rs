//! Usage reports.

use serde_json::Value;

/// The entry for meter `name` in a usage report.
pub fn meter<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["meters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["meter"] == name)
        .unwrap_or_else(|| panic!("meter {name} in {report}"))
}

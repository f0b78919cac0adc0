//! Listing (RFC 7644 §3.4.2): `filter`, `startIndex`/`count` paging over resources in
//! creation order, `attributes`/`excludedAttributes`, and the ListResponse envelope.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::filter::{self, get_ci, Filter};
use super::ScimError;

/// URN of the list envelope.
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// Items per page unless asked otherwise.
const DEFAULT_COUNT: usize = 100;
/// Most items per page (also `filter.maxResults` in the ServiceProviderConfig).
pub(super) const MAX_COUNT: usize = 1000;

/// The query of a list or a read; parameter names match ignoring case.
pub(super) struct ListParams {
    filter: Option<Filter>,
    start_index: usize,
    count: usize,
    projection: Projection,
}

/// `attributes` / `excludedAttributes` of a read or a list.
#[derive(Default)]
pub(super) struct Projection {
    attributes: Vec<String>,
    excluded: Vec<String>,
}

fn param<'a>(query: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn number(query: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ScimError> {
    param(query, name)
        .map(|raw| {
            raw.trim().parse::<i64>().map_err(|_| {
                ScimError::bad_request("invalidValue", format!("{name} must be an integer"))
            })
        })
        .transpose()
}

impl Projection {
    /// Reads `attributes` and `excludedAttributes`.
    pub(super) fn from_query(query: &HashMap<String, String>) -> Self {
        let split = |name| -> Vec<String> {
            param(query, name)
                .map(|raw| {
                    raw.split(',')
                        .map(|a| a.trim().to_owned())
                        .filter(|a| !a.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        Self {
            attributes: split("attributes"),
            excluded: split("excludedAttributes"),
        }
    }

    /// The resource with only the asked attributes (or without the excluded ones); `id`
    /// and `schemas` are always returned.
    pub(super) fn apply(&self, resource: Value) -> Value {
        let Value::Object(map) = resource else {
            return resource;
        };
        let mut out = if self.attributes.is_empty() {
            map
        } else {
            let mut kept = Map::new();
            for attr in &self.attributes {
                copy_path(&map, &mut kept, attr);
            }
            for always in ["id", "schemas"] {
                if let Some(v) = map.get(always) {
                    kept.insert(always.to_owned(), v.clone());
                }
            }
            kept
        };
        for attr in &self.excluded {
            remove_path(&mut out, attr);
        }
        Value::Object(out)
    }
}

/// Splits `urn:…:attr.sub` into the object key holding it (an extension URN, or none for
/// core attributes) and the dotted attribute path.
fn locate<'a>(map: &Map<String, Value>, attr: &'a str) -> (Option<String>, &'a str) {
    for key in map.keys().filter(|k| k.starts_with("urn:")) {
        let head = attr.get(..key.len());
        if let (Some(head), Some(rest)) = (head, attr.get(key.len()..)) {
            if head.eq_ignore_ascii_case(key) {
                return (Some(key.clone()), rest.trim_start_matches(':'));
            }
        }
    }
    if filter::starts_with_ci(attr, filter::CORE_SCHEMA_PREFIX) {
        // `urn:ietf:params:scim:schemas:core:2.0:User:userName` → `userName`.
        return (None, attr.rsplit(':').next().unwrap_or(attr));
    }
    (None, attr)
}

fn copy_path(from: &Map<String, Value>, to: &mut Map<String, Value>, attr: &str) {
    let (container, path) = locate(from, attr);
    let (source, target) = match &container {
        Some(urn) => {
            let Some(Value::Object(ext)) = from.get(urn) else {
                return;
            };
            let slot = to
                .entry(urn.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(slot) = slot else { return };
            if path.is_empty() {
                *slot = ext.clone();
                return;
            }
            (ext, slot)
        }
        None => (from, to),
    };
    let (head, sub) = match path.split_once('.') {
        Some((head, sub)) => (head, Some(sub)),
        None => (path, None),
    };
    let Some(key) = filter::key_ci(source, head) else {
        return;
    };
    let Some(value) = source.get(&key) else {
        return;
    };
    let picked = match sub {
        None => value.clone(),
        Some(sub) => pick_sub(value, sub),
    };
    match (target.get_mut(&key), picked) {
        (Some(Value::Object(have)), Value::Object(more)) => have.extend(more),
        (_, picked) => {
            target.insert(key, picked);
        }
    }
}

/// Only sub-attribute `sub` of a complex value (of each element of a multi-valued one).
fn pick_sub(value: &Value, sub: &str) -> Value {
    let one = |v: &Value| -> Value {
        let mut out = Map::new();
        if let Some(obj) = v.as_object() {
            if let Some(key) = filter::key_ci(obj, sub) {
                if let Some(x) = obj.get(&key) {
                    out.insert(key, x.clone());
                }
            }
        }
        Value::Object(out)
    };
    match value {
        Value::Array(items) => Value::Array(items.iter().map(one).collect()),
        other => one(other),
    }
}

fn remove_path(map: &mut Map<String, Value>, attr: &str) {
    let (container, path) = locate(map, attr);
    let target = match &container {
        Some(urn) if path.is_empty() => {
            map.remove(urn);
            return;
        }
        Some(urn) => match map.get_mut(urn) {
            Some(Value::Object(ext)) => ext,
            _ => return,
        },
        None => map,
    };
    let (head, sub) = match path.split_once('.') {
        Some((head, sub)) => (head, Some(sub)),
        None => (path, None),
    };
    if head.eq_ignore_ascii_case("id") || head.eq_ignore_ascii_case("schemas") {
        return;
    }
    let Some(key) = filter::key_ci(target, head) else {
        return;
    };
    match sub {
        None => {
            target.remove(&key);
        }
        Some(sub) => {
            let strip = |v: &mut Value| {
                if let Some(obj) = v.as_object_mut() {
                    if let Some(k) = filter::key_ci(obj, sub) {
                        obj.remove(&k);
                    }
                }
            };
            match target.get_mut(&key) {
                Some(Value::Array(items)) => items.iter_mut().for_each(strip),
                Some(other) => strip(other),
                None => {}
            }
        }
    }
}

impl ListParams {
    /// Reads the list parameters: a filter that does not parse is 400 `invalidFilter`;
    /// `startIndex` below 1 counts as 1, `count` is capped at [`MAX_COUNT`].
    pub(super) fn from_query(query: &HashMap<String, String>) -> Result<Self, ScimError> {
        let filter = param(query, "filter")
            .filter(|f| !f.trim().is_empty())
            .map(|raw| {
                filter::parse(raw)
                    .map_err(|e| ScimError::bad_request(e.scim_type(), format!("filter: {e}")))
            })
            .transpose()?;
        let start_index = number(query, "startIndex")?.unwrap_or(1).max(1);
        let count = number(query, "count")?.map_or(DEFAULT_COUNT, |c| {
            usize::try_from(c.max(0))
                .unwrap_or(MAX_COUNT)
                .min(MAX_COUNT)
        });
        Ok(Self {
            filter,
            start_index: usize::try_from(start_index).unwrap_or(usize::MAX),
            count,
            projection: Projection::from_query(query),
        })
    }

    /// The ListResponse of `resources` (already in creation order).
    pub(super) fn respond(
        &self,
        resources: Vec<Value>,
        case_exact: &dyn Fn(&str) -> bool,
    ) -> Value {
        let matching: Vec<Value> = resources
            .into_iter()
            .filter(|r| {
                self.filter
                    .as_ref()
                    .is_none_or(|f| f.matches(r, case_exact))
            })
            .collect();
        let total = matching.len();
        let page: Vec<Value> = matching
            .into_iter()
            .skip(self.start_index.saturating_sub(1))
            .take(self.count)
            .map(|r| self.projection.apply(r))
            .collect();
        serde_json::json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": total,
            "itemsPerPage": page.len(),
            "startIndex": self.start_index,
            "Resources": page,
        })
    }
}

/// Whether string attribute `path` of a User or Group compares case-exactly: `id` and
/// `externalId` do (RFC 7643 §3.1), names and emails do not.
pub(super) fn case_exact(path: &str) -> bool {
    matches!(path, "id" | "externalid" | "members.value")
}

/// Reads `value` of attribute `name` ignoring case.
pub(super) fn attr<'a>(resource: &'a Value, name: &str) -> Option<&'a Value> {
    get_ci(resource, name)
}

//! SCIM 2.0 PATCH (RFC 7644 §3.5.2) applied to a resource held as `serde_json::Value`,
//! tolerant of the request shapes sent by Okta and Microsoft Entra ID.

use super::filter::{
    self, elements, get_ci, key_ci, starts_with_ci, AttrPath, CompareOp, Filter, FilterError, Path,
};
use serde_json::{Map, Value};

/// Most operations one PATCH request may carry.
pub const MAX_OPERATIONS: usize = 1000;

/// The schema URN a PATCH request body must list in `schemas`.
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The kind of a PATCH operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Add values (append to multi-valued attributes, set single-valued ones).
    Add,
    /// Remove the attribute or the selected values.
    Remove,
    /// Replace the attribute or the selected values.
    Replace,
}

/// One operation of a PATCH request.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    /// What to do.
    pub op: OpKind,
    /// The target path; `None` means the resource itself.
    pub path: Option<String>,
    /// The value; required for add and replace, optional for remove.
    pub value: Option<Value>,
}

/// The category of a PATCH failure, mapping to a SCIM `scimType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchErrorKind {
    /// The request body is not a valid `PatchOp` message.
    InvalidSyntax,
    /// The path is malformed or does not fit the resource.
    InvalidPath,
    /// The path selected nothing to operate on.
    NoTarget,
    /// The value is missing or does not fit the operation.
    InvalidValue,
    /// The path targets a read-only attribute.
    Mutability,
}

/// A PATCH request that could not be parsed or applied; every kind is an HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PatchError {
    /// The category, see [`PatchError::scim_type`].
    pub kind: PatchErrorKind,
    /// A human-readable explanation suitable for the SCIM `detail` field.
    pub message: String,
}

impl PatchError {
    fn new(kind: PatchErrorKind, message: impl Into<String>) -> Self {
        PatchError {
            kind,
            message: message.into(),
        }
    }

    /// The SCIM `scimType`: `invalidSyntax`, `invalidPath`, `noTarget`, `invalidValue` or `mutability`.
    #[must_use]
    pub fn scim_type(&self) -> &'static str {
        match self.kind {
            PatchErrorKind::InvalidSyntax => "invalidSyntax",
            PatchErrorKind::InvalidPath => "invalidPath",
            PatchErrorKind::NoTarget => "noTarget",
            PatchErrorKind::InvalidValue => "invalidValue",
            PatchErrorKind::Mutability => "mutability",
        }
    }
}

impl From<FilterError> for PatchError {
    fn from(e: FilterError) -> Self {
        PatchError::new(PatchErrorKind::InvalidPath, format!("invalid path: {e}"))
    }
}

use PatchErrorKind::*;

/// Parses a `PatchOp` request body. `schemas` must list [`PATCH_OP_SCHEMA`]; member names
/// (`Operations`, `op`, `path`, `value`) and `op` values are matched ignoring case.
///
/// # Errors
/// Returns `invalidSyntax` for a body that is not a `PatchOp` message or an unknown `op`,
/// `invalidPath` for a non-string `path` and `invalidValue` for add or replace without `value`.
pub fn parse_request(body: &Value) -> Result<Vec<PatchOp>, PatchError> {
    if !body.is_object() {
        return Err(PatchError::new(
            InvalidSyntax,
            "the PATCH body must be a JSON object",
        ));
    }
    let listed = get_ci(body, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter().any(|u| {
                u.as_str()
                    .is_some_and(|u| u.eq_ignore_ascii_case(PATCH_OP_SCHEMA))
            })
        });
    if !listed {
        return Err(PatchError::new(
            InvalidSyntax,
            format!("'schemas' must contain \"{PATCH_OP_SCHEMA}\""),
        ));
    }
    let ops = match get_ci(body, "Operations").and_then(Value::as_array) {
        Some(ops) if ops.len() > MAX_OPERATIONS => {
            return Err(PatchError::new(
                InvalidSyntax,
                format!("at most {MAX_OPERATIONS} operations per request"),
            ))
        }
        Some(ops) if !ops.is_empty() => ops,
        _ => {
            return Err(PatchError::new(
                InvalidSyntax,
                "'Operations' must be a non-empty array",
            ))
        }
    };
    ops.iter()
        .enumerate()
        .map(|(i, o)| parse_op(i, o))
        .collect()
}

fn parse_op(i: usize, o: &Value) -> Result<PatchOp, PatchError> {
    let op = match get_ci(o, "op")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("add") => OpKind::Add,
        Some("remove") => OpKind::Remove,
        Some("replace") => OpKind::Replace,
        _ => {
            return Err(PatchError::new(
                InvalidSyntax,
                format!("operation {i}: 'op' must be add, remove or replace"),
            ))
        }
    };
    let path = match get_ci(o, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.trim().to_string()),
        Some(_) => {
            return Err(PatchError::new(
                InvalidPath,
                format!("operation {i}: 'path' must be a string"),
            ))
        }
    };
    let value = get_ci(o, "value").cloned();
    if op != OpKind::Remove && value.is_none() {
        return Err(PatchError::new(
            InvalidValue,
            format!("operation {i}: add and replace require a 'value'"),
        ));
    }
    Ok(PatchOp { op, path, value })
}

/// Applies the operations in order to `resource` (a JSON object), all or nothing: on error
/// the resource is left unchanged. `case_exact` is passed to filters, see [`Filter::matches`].
///
/// Beyond RFC 7644 §3.5.2 this is lenient in the ways identity providers need:
/// * without a path, `id`, `meta` and `schemas` in the value are ignored, and keys may be
///   dotted paths (`name.givenName`) or URN-prefixed attributes as well as extension URNs;
/// * add or replace on `attr[filter]...` that matches nothing creates a new element when the
///   filter is `sub eq value` or an `and` of such terms (e.g. `emails[type eq "work"].value`);
/// * a null value removes the target; remove on an absent attribute (without filter) does nothing;
/// * remove on a multi-valued attribute with a value removes the listed elements
///   (objects are matched by their `value` sub-attribute).
///
/// # Errors
/// Returns the first operation's error: `invalidPath` for a malformed path, `noTarget` for a
/// remove without path or a filter matching nothing, `mutability` for a path to `id` or `meta`,
/// and `invalidValue` for a value that does not fit the target.
pub fn apply(
    resource: &mut Value,
    ops: &[PatchOp],
    case_exact: &dyn Fn(&str) -> bool,
) -> Result<(), PatchError> {
    if !resource.is_object() {
        return Err(PatchError::new(
            InvalidValue,
            "the resource must be a JSON object",
        ));
    }
    let mut work = resource.clone();
    for op in ops {
        apply_one(&mut work, op, case_exact)?;
    }
    *resource = work;
    Ok(())
}

fn apply_one(res: &mut Value, op: &PatchOp, ce: &dyn Fn(&str) -> bool) -> Result<(), PatchError> {
    let value = match (op.op, op.value.as_ref()) {
        (OpKind::Remove, v) => v,
        (_, None) => {
            return Err(PatchError::new(
                InvalidValue,
                "add and replace require a value",
            ))
        }
        (_, v) => v,
    };
    let Some(path) = op.path.as_deref() else {
        if op.op == OpKind::Remove {
            return Err(PatchError::new(NoTarget, "remove requires a path"));
        }
        let Some(Value::Object(map)) = value else {
            return Err(PatchError::new(
                InvalidValue,
                "without a path, the value must be an object",
            ));
        };
        return map
            .iter()
            .try_for_each(|(k, v)| set_key(res, k, v, op.op, ce));
    };
    if is_schema_urn(res, path, value) {
        return match (op.op, value) {
            (OpKind::Remove, _) if starts_with_ci(path, filter::CORE_SCHEMA_PREFIX) => Err(
                PatchError::new(Mutability, "the core schema cannot be removed"),
            ),
            (OpKind::Remove, _) => {
                if let Some(m) = res.as_object_mut() {
                    m.retain(|k, _| !k.eq_ignore_ascii_case(path));
                }
                if let Some(Value::Array(s)) =
                    res.as_object_mut().and_then(|m| get_mut_ci(m, "schemas"))
                {
                    s.retain(|u| !u.as_str().is_some_and(|u| u.eq_ignore_ascii_case(path)));
                }
                Ok(())
            }
            (kind, Some(v)) => set_key(res, path, v, kind, ce),
            (_, None) => Ok(()),
        };
    }
    let path = filter::parse_path(path)?;
    if read_only(&path) {
        return Err(PatchError::new(
            Mutability,
            format!("attribute '{}' is read-only", path.attr),
        ));
    }
    match (op.op, value) {
        (OpKind::Remove, v) => remove(res, &path, v, ce),
        (kind, v) => set(res, &path, v.unwrap_or(&Value::Null), kind, ce),
    }
}

fn read_only(p: &Path) -> bool {
    let core = p
        .urn
        .as_deref()
        .is_none_or(|u| starts_with_ci(u, filter::CORE_SCHEMA_PREFIX));
    core && (p.attr.eq_ignore_ascii_case("id") || p.attr.eq_ignore_ascii_case("meta"))
}

fn in_schemas(res: &Value, urn: &str) -> bool {
    get_ci(res, "schemas").is_some_and(|s| {
        elements(s)
            .iter()
            .any(|u| u.as_str().is_some_and(|u| u.eq_ignore_ascii_case(urn)))
    })
}

/// Whether `key` names a whole schema (an extension object) rather than an attribute in one.
/// A URN used as a key or listed in `schemas` is a schema, one whose parent URN is so known
/// is an attribute. Otherwise: a last segment starting in uppercase (`...:2.0:User`) is a
/// schema, one whose parent's last segment does (`...:User:manager`) is an attribute, and
/// anything else (`urn:okta:app:1.0:user:custom`) is a schema when its value is an object.
fn is_schema_urn(res: &Value, key: &str, value: Option<&Value>) -> bool {
    let known = |u: &str| get_ci(res, u).is_some() || in_schemas(res, u);
    let upper = |u: &str| {
        u.rsplit(':')
            .next()
            .is_some_and(|l| l.starts_with(|c: char| c.is_ascii_uppercase()))
    };
    match key.rsplit_once(':') {
        Some((parent, _)) if starts_with_ci(key, "urn:") => {
            known(key)
                || (!known(parent)
                    && (upper(key) || (!upper(parent) && matches!(value, Some(Value::Object(_))))))
        }
        _ => false,
    }
}

fn get_mut_ci<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Value> {
    map.iter_mut()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// Adds or replaces one member of a no-path value object.
fn set_key(
    res: &mut Value,
    key: &str,
    v: &Value,
    kind: OpKind,
    ce: &dyn Fn(&str) -> bool,
) -> Result<(), PatchError> {
    if key.eq_ignore_ascii_case("schemas") {
        return Ok(());
    }
    let mut paths = Vec::new();
    if is_schema_urn(res, key, Some(v)) {
        let Value::Object(attrs) = v else {
            return Err(PatchError::new(
                InvalidValue,
                format!("the value of '{key}' must be an object"),
            ));
        };
        for (k, v) in attrs {
            let mut p = filter::parse_path(k)?;
            p.urn = Some(key.to_string());
            paths.push((p, v));
        }
    } else {
        paths.push((filter::parse_path(key)?, v));
    }
    for (p, v) in paths.into_iter().filter(|(p, _)| !read_only(p)) {
        set(res, &p, v, kind, ce)?;
    }
    Ok(())
}

/// The object holding the attributes of `urn` (the resource itself for core schemas),
/// creating an extension object (and listing it in `schemas`) when `create` is set.
fn container_mut<'a>(
    res: &'a mut Value,
    urn: Option<&str>,
    create: bool,
) -> Option<&'a mut Map<String, Value>> {
    let Some(urn) = urn.filter(|u| filter::is_extension(res, u)) else {
        return res.as_object_mut();
    };
    let key = match res.as_object().and_then(|m| key_ci(m, urn)) {
        Some(k) => k,
        None if create => {
            if let Some(Value::Array(s)) =
                res.as_object_mut().and_then(|m| get_mut_ci(m, "schemas"))
            {
                s.push(Value::String(urn.to_string()));
            }
            urn.to_string()
        }
        None => return None,
    };
    let slot = res
        .as_object_mut()?
        .entry(key)
        .or_insert_with(|| Value::Object(Map::new()));
    slot.as_object_mut()
}

/// Core multi-valued attributes: a single value set on one of them while absent becomes an array.
const MULTI_VALUED: &[&str] = &[
    "emails",
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "groups",
    "entitlements",
    "roles",
    "x509Certificates",
    "members",
];

/// Adds or replaces `name` in `map`, keeping the stored key casing; a null value removes it.
/// See [`merge`] for an existing attribute.
fn assign(map: &mut Map<String, Value>, name: &str, value: &Value, kind: OpKind) {
    let key = key_ci(map, name);
    if value.is_null() {
        if let Some(k) = key {
            map.remove(&k);
        }
        return;
    }
    let Some(slot) = key.and_then(|k| map.get_mut(&k)) else {
        let multi = MULTI_VALUED.iter().any(|m| m.eq_ignore_ascii_case(name));
        let value = match value {
            Value::Array(_) => value.clone(),
            v if multi => Value::Array(vec![v.clone()]),
            v => v.clone(),
        };
        map.insert(name.to_string(), value);
        return;
    };
    merge(slot, value, kind);
}

/// Multi-valued add appends elements, merging one whose `value` equals an existing element's
/// `value` into it and skipping exact duplicates; multi-valued replace overwrites the array;
/// complex values merge sub-attributes; anything else is overwritten.
fn merge(slot: &mut Value, value: &Value, kind: OpKind) {
    if let (Value::Object(m), Value::Object(new)) = (&mut *slot, value) {
        new.iter().for_each(|(k, v)| assign(m, k, v, kind));
        return;
    }
    match slot {
        Value::Array(items) if kind == OpKind::Add => {
            for v in elements(value) {
                let id = get_ci(v, "value").filter(|id| !id.is_null());
                let same =
                    |e: &&mut Value| id.map_or(&**e == v, |id| get_ci(e, "value") == Some(id));
                match items.iter_mut().find(same) {
                    Some(e) if id.is_some() => merge(e, v, kind),
                    Some(_) => {}
                    None => items.push(without_nulls(v)),
                }
            }
        }
        Value::Array(items) => *items = elements(value).to_vec(),
        _ => *slot = value.clone(),
    }
}

/// A copy of `v` without null-valued members (such as `"$ref": null` from an identity provider, for instance).
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|e| !e.1.is_null())
                .map(|(k, x)| (k.clone(), x.clone()))
                .collect(),
        ),
        v => v.clone(),
    }
}

fn set(
    res: &mut Value,
    path: &Path,
    value: &Value,
    kind: OpKind,
    ce: &dyn Fn(&str) -> bool,
) -> Result<(), PatchError> {
    let not_object = || {
        PatchError::new(
            InvalidPath,
            format!("'{}' is not a complex attribute", path.attr),
        )
    };
    let map = container_mut(res, path.urn.as_deref(), true).ok_or_else(not_object)?;
    let Some(f) = &path.filter else {
        let Some(sub) = &path.sub else {
            assign(map, &path.attr, value, kind);
            return Ok(());
        };
        let one = |v: &Value| Value::Object(Map::from_iter([(sub.clone(), v.clone())]));
        match key_ci(map, &path.attr).and_then(|k| map.get_mut(&k)) {
            None if value.is_null() => {}
            None => {
                map.insert(path.attr.clone(), one(value));
            }
            Some(parent) if parent.is_null() => *parent = one(value),
            Some(Value::Object(m)) => assign(m, sub, value, kind),
            Some(Value::Array(items)) if items.is_empty() => items.push(one(value)),
            Some(Value::Array(items)) => {
                let objects = items.iter_mut().filter_map(Value::as_object_mut);
                objects.for_each(|m| assign(m, sub, value, kind));
            }
            Some(_) => return Err(not_object()),
        }
        return Ok(());
    };
    let slot = map
        .entry(key_ci(map, &path.attr).unwrap_or_else(|| path.attr.clone()))
        .or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Array(Vec::new());
    }
    let Value::Array(items) = slot else {
        return Err(PatchError::new(
            InvalidPath,
            format!("'{}' is not multi-valued", path.attr),
        ));
    };
    let mut hit = false;
    for item in items
        .iter_mut()
        .filter(|e| f.matches_element(e, &path.attr, ce))
    {
        hit = true;
        match (&path.sub, &mut *item) {
            (Some(sub), Value::Object(m)) => assign(m, sub, value, kind),
            (Some(_), _) => {}
            (None, _) if value.is_null() => *item = Value::Null,
            (None, _) => merge(item, value, kind),
        }
    }
    items.retain(|e| !e.is_null());
    if hit || value.is_null() {
        return Ok(());
    }
    let Some(mut elem) = seed(f) else {
        return Err(PatchError::new(
            NoTarget,
            format!("no value of '{}' matched the filter", path.attr),
        ));
    };
    match (&path.sub, value) {
        (Some(sub), v) => assign(&mut elem, sub, v, kind),
        (None, Value::Object(new)) => new.iter().for_each(|(k, v)| assign(&mut elem, k, v, kind)),
        (None, _) => {
            return Err(PatchError::new(
                InvalidValue,
                "the value for a filtered path must be an object",
            ))
        }
    }
    items.push(Value::Object(elem));
    Ok(())
}

/// The element implied by a filter made only of `sub eq value` terms joined by `and`.
fn seed(f: &Filter) -> Option<Map<String, Value>> {
    let terms = match f {
        Filter::And(fs) => fs.as_slice(),
        other => std::slice::from_ref(other),
    };
    let mut elem = Map::new();
    for t in terms {
        match t {
            Filter::Compare {
                path:
                    AttrPath {
                        urn: None,
                        attr,
                        sub: None,
                    },
                op: CompareOp::Eq,
                value,
            } if !value.is_null() => {
                elem.insert(attr.clone(), value.clone());
            }
            _ => return None,
        }
    }
    Some(elem)
}

fn remove(
    res: &mut Value,
    path: &Path,
    value: Option<&Value>,
    ce: &dyn Fn(&str) -> bool,
) -> Result<(), PatchError> {
    let no_target = || {
        PatchError::new(
            NoTarget,
            format!("no value of '{}' matched the filter", path.attr),
        )
    };
    let found = container_mut(res, path.urn.as_deref(), false)
        .and_then(|m| key_ci(m, &path.attr).map(|k| (m, k)));
    let Some((map, key)) = found else {
        return if path.filter.is_some() {
            Err(no_target())
        } else {
            Ok(())
        };
    };
    match (&path.filter, &path.sub, map.get_mut(&key)) {
        (None, None, Some(Value::Array(items))) if value.is_some_and(|v| !v.is_null()) => {
            for v in value.map(elements).unwrap_or_default() {
                match get_ci(v, "value") {
                    Some(id) => {
                        let f = Filter::Compare {
                            path: AttrPath {
                                urn: None,
                                attr: "value".into(),
                                sub: None,
                            },
                            op: CompareOp::Eq,
                            value: id.clone(),
                        };
                        items.retain(|e| !f.matches_element(e, &path.attr, ce));
                    }
                    None => items.retain(|e| e != v),
                }
            }
        }
        (None, None, _) => {
            map.remove(&key);
        }
        (None, Some(sub), Some(v)) => {
            for e in elements_mut(v).iter_mut().filter_map(Value::as_object_mut) {
                e.retain(|k, _| !k.eq_ignore_ascii_case(sub));
            }
        }
        (Some(f), sub, Some(Value::Array(items))) => {
            let mut hit = false;
            items.retain_mut(|e| {
                if !f.matches_element(e, &path.attr, ce) {
                    return true;
                }
                hit = true;
                match (sub, e.as_object_mut()) {
                    (Some(s), Some(m)) => m.retain(|k, _| !k.eq_ignore_ascii_case(s)),
                    (Some(_), None) => {}
                    (None, _) => return false,
                }
                true
            });
            if !hit {
                return Err(no_target());
            }
        }
        (Some(_), _, _) => return Err(no_target()),
        (None, Some(_), None) => {}
    }
    if matches!(map.get(&key), Some(Value::Array(a)) if a.is_empty()) {
        map.remove(&key);
    }
    Ok(())
}

fn elements_mut(v: &mut Value) -> &mut [Value] {
    match v {
        Value::Array(a) => a,
        other => std::slice::from_mut(other),
    }
}

/// Converts the strings `"true"` and `"false"` (any case) to JSON booleans at the given paths,
/// written like PATCH paths without filters (e.g. `active`, `emails.primary`, or URN-prefixed);
/// elements of multi-valued attributes are all converted. Meant to be called after [`apply`].
pub fn coerce_booleans(resource: &mut Value, paths: &[&str]) {
    fn coerce(v: &mut Value) {
        let b = v
            .as_str()
            .and_then(|s| match s.to_ascii_lowercase().as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            });
        match (b, v) {
            (Some(b), v) => *v = Value::Bool(b),
            (None, Value::Array(a)) => a.iter_mut().for_each(coerce),
            _ => {}
        }
    }
    for p in paths {
        let Ok(path) = filter::parse_path(p) else {
            continue;
        };
        let Some(v) = container_mut(resource, path.urn.as_deref(), false)
            .and_then(|m| get_mut_ci(m, &path.attr))
        else {
            continue;
        };
        match &path.sub {
            None => coerce(v),
            Some(s) => elements_mut(v)
                .iter_mut()
                .filter_map(|e| e.as_object_mut())
                .filter_map(|m| get_mut_ci(m, s))
                .for_each(coerce),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn ce(p: &str) -> bool {
        matches!(p, "id" | "externalid" | "members.value")
    }

    fn user() -> Value {
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "u1",
               "userName": "bjensen", "active": true, "meta": {"resourceType": "User"},
               "name": {"givenName": "Barbara", "familyName": "Jensen"},
               "emails": [{"value": "b@home.org", "type": "home"}]})
    }

    fn group() -> Value {
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g1",
               "displayName": "Eng", "members": [{"value": "u1", "display": "One"}, {"value": "u2"}]})
    }

    /// Applies a full request body, or a bare `Operations` array wrapped in one.
    fn run(res: &mut Value, ops: &str) -> Result<(), PatchError> {
        let v: Value = serde_json::from_str(ops).expect("test JSON");
        let body = if v.is_array() {
            json!({"schemas": [PATCH_OP_SCHEMA], "Operations": v})
        } else {
            v
        };
        apply(res, &parse_request(&body)?, &ce)
    }

    fn patched(mut res: Value, ops: &str) -> Value {
        run(&mut res, ops).unwrap_or_else(|e| panic!("{ops}: {e}"));
        res
    }

    fn err(mut res: Value, ops: &str) -> &'static str {
        let before = res.clone();
        let e = run(&mut res, ops).expect_err(ops);
        assert_eq!(
            res, before,
            "a failed PATCH must leave the resource unchanged"
        );
        e.scim_type()
    }

    #[test]
    fn parse_request_shapes() {
        let okta = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}"#;
        let ops = parse_request(&serde_json::from_str(okta).unwrap()).unwrap();
        let want = PatchOp {
            op: OpKind::Replace,
            path: None,
            value: Some(json!({"active": false})),
        };
        assert_eq!(ops, vec![want]);
        let lower = json!({"SCHEMAS": [PATCH_OP_SCHEMA.to_uppercase()], "operations": [{"OP": "Remove", "Path": "x"}]});
        assert_eq!(parse_request(&lower).unwrap()[0].path.as_deref(), Some("x"));
        for (ops, kind) in [
            ("[]", "invalidSyntax"),
            (
                r#"{"Operations":[{"op":"add","value":{}}]}"#,
                "invalidSyntax",
            ),
            (
                r#"{"schemas":["urn:x"],"Operations":[{"op":"add","value":{}}]}"#,
                "invalidSyntax",
            ),
            (
                r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":{"op":"add"}}"#,
                "invalidSyntax",
            ),
            (r#"[{"op":"move","path":"a"}]"#, "invalidSyntax"),
            (r#"[{"path":"a","value":1}]"#, "invalidSyntax"),
            (r#"[{"op":"add","path":"a"}]"#, "invalidValue"),
            (r#"[{"op":"add","path":3,"value":1}]"#, "invalidPath"),
        ] {
            assert_eq!(err(user(), ops), kind, "{ops}");
        }
        let blank = parse_request(
            &json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{"op": "remove", "path": " "}]}),
        );
        assert_eq!(blank.unwrap()[0].path, None);
    }

    #[test]
    fn okta_user() {
        let body = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}"#;
        assert_eq!(patched(user(), body)["active"], json!(false));
        let u = patched(
            user(),
            r#"[{"op":"replace","value":{"id":"other","meta":{},"schemas":[],"active":false,"userName":"x"}}]"#,
        );
        assert_eq!(
            (&u["id"], &u["userName"], &u["schemas"]),
            (&json!("u1"), &json!("x"), &user()["schemas"])
        );
        assert_eq!(u["meta"], json!({"resourceType": "User"}));
        let custom = r#"[{"op":"replace","value":{"urn:okta:app:1.0:user:custom":{"badge":"7"}}}]"#;
        assert_eq!(
            patched(user(), custom)["urn:okta:app:1.0:user:custom"],
            json!({"badge": "7"})
        );
    }

    #[test]
    fn entra_user() {
        let mut u = patched(
            user(),
            r#"[{"op":"Replace","path":"active","value":"False"}]"#,
        );
        coerce_booleans(&mut u, &["active", "emails.primary"]);
        assert_eq!(u["active"], json!(false));
        let u = patched(
            user(),
            r#"[{"op":"Add","path":"emails[type eq \"work\"].value","value":"a@b.com"}]"#,
        );
        assert_eq!(u["emails"][1], json!({"type": "work", "value": "a@b.com"}));
        let u = patched(
            u,
            r#"[{"op":"Replace","path":"emails[type eq \"work\"].value","value":"c@d.com"},
                               {"op":"Add","path":"emails[type eq \"work\"].primary","value":"True"}]"#,
        );
        assert_eq!(
            u["emails"][1],
            json!({"type": "work", "value": "c@d.com", "primary": "True"})
        );
        let mut u = patched(
            u,
            r#"[{"op":"Replace","path":"name.familyName","value":"X"}]"#,
        );
        assert_eq!(
            u["name"],
            json!({"givenName": "Barbara", "familyName": "X"})
        );
        coerce_booleans(&mut u, &["emails.primary"]);
        assert_eq!(u["emails"][1]["primary"], json!(true));
        let u = patched(
            user(),
            r#"[{"op":"Replace","path":"name.familyName","value":"X"}]"#,
        );
        assert_eq!(u["name"]["familyName"], json!("X"));
        let u = patched(
            json!({"userName": "a"}),
            r#"[{"op":"Replace","path":"name.familyName","value":"X"}]"#,
        );
        assert_eq!(u["name"], json!({"familyName": "X"}));
        let dept = r#"[{"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department","value":"Eng"}]"#;
        let u = patched(user(), dept);
        assert_eq!(
            (&u[ENT], &u["schemas"][1]),
            (&json!({"department": "Eng"}), &json!(ENT))
        );
        let u = patched(
            u,
            r#"[{"op":"Replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value","value":"m1"},
                               {"op":"Replace","path":"urn:ietf:params:scim:schemas:core:2.0:User:name.givenName","value":"B"}]"#,
        );
        assert_eq!(
            u[ENT],
            json!({"department": "Eng", "manager": {"value": "m1"}})
        );
        assert_eq!(u["name"]["givenName"], json!("B"));
        let u = patched(
            u,
            r#"[{"op":"Remove","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"}]"#,
        );
        assert_eq!(u[ENT], json!({"department": "Eng"}));
        let u = patched(
            u,
            r#"[{"op":"Remove","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"}]"#,
        );
        assert!(u.get(ENT).is_none() && u["schemas"] == user()["schemas"]);
        let manager = r#"[{"op":"Add","value":{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager":{"value":"m2"}}}]"#;
        assert_eq!(
            patched(user(), manager)[ENT],
            json!({"manager": {"value": "m2"}})
        );
    }

    #[test]
    fn groups() {
        let add = r#"[{"op":"Add","path":"members","value":[{"value":"u1"},{"$ref":null,"value":"u3"}]}]"#;
        let g = patched(group(), add);
        assert_eq!(
            g["members"],
            json!([{"value": "u1", "display": "One"}, {"value": "u2"}, {"value": "u3"}])
        );
        let g = patched(g, add);
        assert_eq!(
            g["members"].as_array().map(Vec::len),
            Some(3),
            "re-adding members changes nothing"
        );
        let g = patched(
            g,
            r#"[{"op":"Remove","path":"members","value":[{"value":"u1"},{"value":"u9"}]}]"#,
        );
        assert_eq!(g["members"], json!([{"value": "u2"}, {"value": "u3"}]));
        let g = patched(
            g,
            r#"[{"op":"Replace","path":"displayName","value":"New"}]"#,
        );
        assert_eq!(g["displayName"], json!("New"));
        let g = patched(
            group(),
            r#"[{"op":"remove","path":"members[value eq \"u2\"]"}]"#,
        );
        assert_eq!(g["members"], json!([{"value": "u1", "display": "One"}]));
        let g = patched(
            group(),
            r#"[{"op":"replace","path":"members","value":[{"value":"u3"}]}]"#,
        );
        assert_eq!(g["members"], json!([{"value": "u3"}]));
        let g = patched(
            group(),
            r#"[{"op":"replace","value":{"id":"g1","displayName":"Renamed"}}]"#,
        );
        assert_eq!(
            (&g["id"], &g["displayName"]),
            (&json!("g1"), &json!("Renamed"))
        );
        assert!(patched(group(), r#"[{"op":"remove","path":"members"}]"#)
            .get("members")
            .is_none());
        let all = r#"[{"op":"remove","path":"members","value":[{"value":"u1"},{"value":"u2"}]}]"#;
        assert!(
            patched(group(), all).get("members").is_none(),
            "an emptied attribute is unassigned"
        );
        let first = patched(
            json!({"displayName": "G"}),
            r#"[{"op":"add","path":"members","value":{"value":"u1"}}]"#,
        );
        assert_eq!(first["members"], json!([{"value": "u1"}]));
        assert_eq!(
            err(
                group(),
                r#"[{"op":"remove","path":"members[value eq \"U2\"]"}]"#
            ),
            "noTarget"
        );
    }

    #[test]
    fn add_and_replace_semantics() {
        let u = patched(
            user(),
            r#"[{"op":"add","path":"emails","value":{"value":"w@x.org","type":"work"}},
                                    {"op":"add","path":"emails","value":[{"value":"w@x.org","primary":true}]},
                                    {"op":"add","path":"nickName","value":"Babs"}]"#,
        );
        assert_eq!(
            u["emails"][1],
            json!({"value": "w@x.org", "type": "work", "primary": true})
        );
        assert_eq!(
            (u["emails"].as_array().map(Vec::len), &u["nickName"]),
            (Some(2), &json!("Babs"))
        );
        let u = patched(
            user(),
            r#"[{"op":"replace","path":"name","value":{"givenName":"B"}},
                                    {"op":"replace","path":"emails","value":{"value":"only@x.org"}}]"#,
        );
        assert_eq!(u["name"], json!({"givenName": "B", "familyName": "Jensen"}));
        assert_eq!(u["emails"], json!([{"value": "only@x.org"}]));
        let u = patched(
            user(),
            r#"[{"op":"add","value":{"name.middleName":"M","emails":[{"value":"n@x.org"}],"title":"T",
                                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"7"}}}]"#,
        );
        assert_eq!(
            (&u["name"]["middleName"], &u["title"]),
            (&json!("M"), &json!("T"))
        );
        assert_eq!(
            (u["emails"].as_array().map(Vec::len), &u[ENT]),
            (Some(2), &json!({"employeeNumber": "7"}))
        );
        let u = patched(
            user(),
            r#"[{"op":"replace","value":{"emails":[{"value":"n@x.org"}],
                                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter":"C"}}]"#,
        );
        assert_eq!(
            (&u["emails"], &u[ENT]),
            (&json!([{"value": "n@x.org"}]), &json!({"costCenter": "C"}))
        );
        let u = patched(
            user(),
            r#"[{"op":"replace","path":"emails[type eq \"home\"]","value":{"primary":true}},
                                    {"op":"replace","path":"addresses[type eq \"work\"].locality","value":"Oslo"}]"#,
        );
        assert_eq!(
            u["emails"],
            json!([{"value": "b@home.org", "type": "home", "primary": true}])
        );
        assert_eq!(
            u["addresses"],
            json!([{"type": "work", "locality": "Oslo"}])
        );
        let u = patched(
            user(),
            r#"[{"op":"replace","path":"name.givenName","value":null},{"op":"replace","path":"active","value":null}]"#,
        );
        assert_eq!(u["name"], json!({"familyName": "Jensen"}));
        assert!(u.get("active").is_none());
    }

    #[test]
    fn key_casing_is_kept() {
        let u = patched(
            user(),
            r#"[{"op":"replace","path":"USERNAME","value":"x"},{"op":"replace","path":"Name.GivenName","value":"y"},
                                    {"op":"add","path":"DisplayName","value":"z"},{"op":"replace","value":{"ACTIVE":false}}]"#,
        );
        assert_eq!(
            (&u["userName"], &u["name"]["givenName"]),
            (&json!("x"), &json!("y"))
        );
        assert_eq!(
            (&u["DisplayName"], &u["active"]),
            (&json!("z"), &json!(false))
        );
        assert!(u.get("USERNAME").is_none() && u.get("ACTIVE").is_none());
    }

    #[test]
    fn removes() {
        let u = patched(
            user(),
            r#"[{"op":"remove","path":"name.givenName"},{"op":"remove","path":"nickName"},
                                    {"op":"remove","path":"emails[type eq \"home\"].type"}]"#,
        );
        assert_eq!(
            (&u["name"], &u["emails"]),
            (
                &json!({"familyName": "Jensen"}),
                &json!([{"value": "b@home.org"}])
            )
        );
        assert!(patched(
            user(),
            r#"[{"op":"remove","path":"emails[value ew \"HOME.ORG\"]"}]"#
        )
        .get("emails")
        .is_none());
        let u = patched(user(), r#"[{"op":"remove","path":"emails.type"}]"#);
        assert_eq!(u["emails"], json!([{"value": "b@home.org"}]));
    }

    #[test]
    fn errors() {
        for (ops, kind) in [
            (r#"[{"op":"remove"}]"#, "noTarget"),
            (r#"[{"op":"remove","value":{"x":1}}]"#, "noTarget"),
            (
                r#"[{"op":"replace","path":"id","value":"x"}]"#,
                "mutability",
            ),
            (r#"[{"op":"remove","path":"meta.created"}]"#, "mutability"),
            (r#"[{"op":"replace","value":"x"}]"#, "invalidValue"),
            (
                r#"[{"op":"add","path":"emails[type eq","value":"x"}]"#,
                "invalidPath",
            ),
            (
                r#"[{"op":"add","path":"a.b.c","value":"x"}]"#,
                "invalidPath",
            ),
            (
                r#"[{"op":"add","path":"userName.x","value":"x"}]"#,
                "invalidPath",
            ),
            (
                r#"[{"op":"add","path":"userName[value eq 1]","value":"x"}]"#,
                "invalidPath",
            ),
            (r#"[{"op":"add","value":{"bad key":1}}]"#, "invalidPath"),
            (
                r#"[{"op":"replace","path":"emails[value co \"zz\"].type","value":"x"}]"#,
                "noTarget",
            ),
            (
                r#"[{"op":"replace","path":"emails[type eq \"a\" or type eq \"b\"].value","value":"x"}]"#,
                "noTarget",
            ),
            (
                r#"[{"op":"add","path":"emails[type eq \"work\"]","value":"x"}]"#,
                "invalidValue",
            ),
            (
                r#"[{"op":"remove","path":"phoneNumbers[type eq \"work\"]"}]"#,
                "noTarget",
            ),
            (
                r#"[{"op":"replace","path":"userName","value":"changed"},{"op":"replace","path":"id","value":"x"}]"#,
                "mutability",
            ),
        ] {
            assert_eq!(err(user(), ops), kind, "{ops}");
        }
        let mut s = json!("not an object");
        assert_eq!(
            apply(&mut s, &[], &ce).unwrap_err().scim_type(),
            "invalidValue"
        );
        let direct = PatchOp {
            op: OpKind::Add,
            path: Some("title".into()),
            value: None,
        };
        assert_eq!(
            apply(&mut user(), &[direct], &ce).unwrap_err().kind,
            PatchErrorKind::InvalidValue
        );
        let e = PatchError::from(filter::parse_path("a[").unwrap_err());
        assert!(
            e.scim_type() == "invalidPath" && e.to_string().starts_with("invalid path: expected"),
            "{e}"
        );
    }

    #[test]
    fn coerce_booleans_paths() {
        let mut v = json!({"active": "TRUE", "emails": [{"primary": "false"}, {"primary": "yes"}], "x": "true", ENT: {"flag": "False"}});
        coerce_booleans(
            &mut v,
            &[
                "active",
                "emails.primary",
                &format!("{ENT}:flag"),
                "missing.x",
                "bad[path",
            ],
        );
        let want = json!({"active": true, "emails": [{"primary": false}, {"primary": "yes"}], "x": "true", ENT: {"flag": false}});
        assert_eq!(v, want);
    }
}

//! The SCIM User document: validating what an identity provider sends into what is
//! stored, and building the resource answered from what is stored.

use serde_json::{Map, Value};

use super::list::attr;
use super::patch::coerce_booleans;
use super::protocol::meta;
use super::{ScimError, ENTERPRISE_SCHEMA, USER_SCHEMA};
use crate::domain::Email;
use crate::store::scim::users::{ScimUserRecord, ScimUserWrite};

/// Largest User document kept (its JSON): every list reads the organization's directory.
const MAX_DOCUMENT: usize = 64 * 1024;

/// Attributes never stored: server-assigned (`id`, `meta`), `groups` (read membership from
/// `/Groups`; a User does not list them), or secrets (`password`: provisioned users set their own through password reset).
const NOT_STORED: [&str; 5] = ["id", "meta", "groups", "password", "active"];

/// Boolean attributes Entra may send as the strings `"True"` / `"False"`.
pub(super) const BOOLEANS: [&str; 2] = ["active", "emails.primary"];

/// Longest `userName`, `displayName` or `externalId` kept.
const MAX_TEXT: usize = 256;

fn text(doc: &Value, name: &str) -> Result<Option<String>, ScimError> {
    match attr(doc, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= MAX_TEXT => Ok(Some(s.trim().to_owned())),
        Some(_) => Err(ScimError::bad_request(
            "invalidValue",
            format!("{name} must be a string of at most {MAX_TEXT} characters"),
        )),
    }
}

/// The address naming the account: the primary email, else the first `work` one, else
/// the first, else the userName when it is an address.
fn account_email(doc: &Value, user_name: &str) -> Result<String, ScimError> {
    let emails: Vec<&Value> = match attr(doc, "emails") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(_) => {
            return Err(ScimError::bad_request(
                "invalidValue",
                "emails must be an array",
            ));
        }
    };
    let is = |e: &&&Value, key: &str, want: &Value| attr(e, key).is_some_and(|v| v == want);
    let chosen = emails
        .iter()
        .find(|e| is(e, "primary", &Value::Bool(true)))
        .or_else(|| emails.iter().find(|e| is(e, "type", &Value::from("work"))))
        .or_else(|| emails.first())
        .and_then(|e| attr(e, "value"))
        .and_then(Value::as_str);
    let raw = chosen.unwrap_or(user_name);
    Email::parse(raw)
        .map(|e| e.as_str().to_owned())
        .map_err(|_| {
            ScimError::bad_request(
                "invalidValue",
                "a user needs a valid email address (in emails, or as the userName)",
            )
        })
}

/// Validates a User document (from POST, PUT, or after PATCH) into what is stored.
pub(super) fn validate(mut doc: Value) -> Result<ScimUserWrite, ScimError> {
    if doc.to_string().len() > MAX_DOCUMENT {
        return Err(ScimError::bad_request(
            "invalidValue",
            format!("a User document is at most {} KiB", MAX_DOCUMENT / 1024),
        ));
    }
    coerce_booleans(&mut doc, &BOOLEANS);
    let user_name = text(&doc, "userName")?
        .ok_or_else(|| ScimError::bad_request("invalidValue", "userName is required"))?;
    let active = match attr(&doc, "active") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ScimError::bad_request(
                "invalidValue",
                "active must be a boolean",
            ))
        }
    };
    if attr(&doc, "name").is_some_and(|n| !(n.is_object() || n.is_null())) {
        return Err(ScimError::bad_request(
            "invalidValue",
            "name must be an object",
        ));
    }
    let email = account_email(&doc, &user_name)?;
    let external_id = text(&doc, "externalId")?;
    let display_name = text(&doc, "displayName")?
        .or_else(|| {
            let name = attr(&doc, "name")?;
            let part = |k| attr(name, k).and_then(Value::as_str).map(str::trim);
            part("formatted").map(str::to_owned).or_else(|| {
                let joined = [part("givenName"), part("familyName")]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                (!joined.trim().is_empty()).then_some(joined)
            })
        })
        .unwrap_or_else(|| user_name.clone());
    let Value::Object(mut map) = doc else {
        return Err(ScimError::bad_request(
            "invalidSyntax",
            "a User must be a JSON object",
        ));
    };
    map.retain(|k, _| !NOT_STORED.iter().any(|n| k.eq_ignore_ascii_case(n)));
    Ok(ScimUserWrite {
        user_name,
        email,
        display_name: display_name.chars().take(MAX_TEXT).collect(),
        external_id,
        active,
        resource: Value::Object(map),
    })
}

/// The resource answered for a stored user.
pub(super) fn resource(base: &str, record: &ScimUserRecord) -> Value {
    let mut map = match &record.resource.0 {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let id = record.id.to_string();
    let mut schemas = vec![Value::from(USER_SCHEMA)];
    if map
        .keys()
        .any(|k| k.eq_ignore_ascii_case(ENTERPRISE_SCHEMA))
    {
        schemas.push(ENTERPRISE_SCHEMA.into());
    }
    map.insert("schemas".to_owned(), Value::Array(schemas));
    map.insert("id".to_owned(), Value::from(id.as_str()));
    map.insert("active".to_owned(), Value::Bool(record.active));
    map.insert(
        "meta".to_owned(),
        meta(
            base,
            "User",
            &id,
            record.created_at,
            record.updated_at,
            record.version,
        ),
    );
    Value::Object(map)
}

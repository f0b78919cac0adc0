//! The activity feed: the audit records members care about, in words. Nothing is written
//! for it: an activity is a view of one audit record (the same id and position), so the
//! feed, the notifications and the audit log can never disagree.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::audit::{AuditEvent, AuditFilter, AuditOrder};
use super::{Store, StoreError};
use crate::auth::{ActorKind, TenantCtx};
use crate::db::{on_conn, Access, Conn};
use crate::ids::{AuditEventId, OrgId, UserId};
use crate::rbac::Plan;

/// Audit actions shown in the activity feed, with the activity type each becomes.
pub(super) const FEED: &[(&str, &str)] = &[
    ("member.joined", "USER_JOINED"),
    ("member.removed", "USER_REMOVED"),
    ("member.role_changed", "ROLE_CHANGED"),
    ("organization.plan_changed", "PLAN_CHANGED"),
    ("billing.plan_changed", "PLAN_CHANGED"),
    ("organization.broadcast", "BROADCAST_MESSAGE"),
    ("organization.updated", "ORGANIZATION_UPDATED"),
    ("invitation.created", "INVITATION_SENT"),
    ("invitation.revoked", "INVITATION_REVOKED"),
    ("api_key.created", "API_KEY_CREATED"),
    ("api_key.rotated", "API_KEY_ROTATED"),
    ("api_key.revoked", "API_KEY_REVOKED"),
    ("workspace.created", "WORKSPACE_CREATED"),
    ("workspace.deleted", "WORKSPACE_DELETED"),
    ("scim.user_provisioned", "USER_PROVISIONED"),
    ("scim.user_deprovisioned", "USER_DEPROVISIONED"),
    ("scim.user_deactivated", "USER_DEACTIVATED"),
    ("scim.user_reactivated", "USER_REACTIVATED"),
];

/// Type of a realtime event that is an audit record outside the feed (sent only to callers
/// holding `audit:read`).
pub const AUDIT_EVENT: &str = "AUDIT_EVENT";

/// Someone or something named in an activity.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Party {
    /// `user`, `api_key`, `scim`, `operator`, `system`, or a target type (`workspace`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// Its id.
    pub id: Option<String>,
    /// Display name, for users (and for keys and workspaces the record names).
    pub name: Option<String>,
    /// Email, for users.
    pub email: Option<String>,
}

/// One activity (also the shape of every realtime event).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Activity {
    /// The audit record's id: also the event id to resume a stream from.
    pub id: AuditEventId,
    /// Its position in the organization's log.
    pub seq: i64,
    /// `USER_JOINED`, `USER_REMOVED`, `ROLE_CHANGED`, `PLAN_UPGRADED`, `PLAN_CHANGED`,
    /// `BROADCAST_MESSAGE`, `INVITATION_SENT`, `API_KEY_CREATED`, … (`AUDIT_EVENT` for
    /// other audit records, on streams of `audit:read` holders only).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The organization.
    pub org_id: OrgId,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who did it.
    pub actor: Party,
    /// What it was done to.
    pub target: Option<Party>,
    /// One sentence for people, e.g. `Ann invited bob@example.com as member`.
    pub summary: String,
    /// The type's facts (`USER_JOINED {userId,name,email,role}`, `PLAN_UPGRADED
    /// {from,to,upgradedAt}`, `BROADCAST_MESSAGE {message,sentBy,sentAt}`, `USER_REMOVED
    /// {userId,removedBy}`, …; the whole audit record for `AUDIT_EVENT`).
    pub payload: Value,
}

impl Activity {
    /// True for activities of the feed (every member sees them), false for `AUDIT_EVENT`.
    pub fn in_feed(&self) -> bool {
        self.kind != AUDIT_EVENT
    }
}

/// The feed type of `action`, if it is in the feed.
fn feed_type(action: &str) -> Option<&'static str> {
    FEED.iter().find(|(a, _)| *a == action).map(|(_, t)| *t)
}

/// Position of a plan in the upgrade order (free < pro < enterprise).
fn plan_rank(value: &Value) -> Option<usize> {
    let plan = Plan::parse_any_case(value.as_str()?)?;
    Plan::ALL.iter().position(|p| *p == plan)
}

/// Names and emails of users, by id string (`usr_…`).
type Names = HashMap<String, (String, String)>;

impl Store {
    /// The feed, newest first: a page after `cursor` (a position).
    pub async fn list_activities(
        &self,
        ctx: &TenantCtx,
        cursor: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Vec<Activity>, StoreError> {
        let filter = AuditFilter {
            cursor,
            order: AuditOrder::NewestFirst,
            feed_only: true,
            limit,
            ..AuditFilter::default()
        };
        let events = self.list_audit_events(ctx, &filter).await?;
        self.describe(ctx, events).await
    }

    /// Every sealed record after position `after`, oldest first, up to `limit`, as
    /// activities (`AUDIT_EVENT` for those outside the feed): what a stream replays.
    pub async fn activities_after(
        &self,
        ctx: &TenantCtx,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Activity>, StoreError> {
        let filter = AuditFilter {
            cursor: Some(after),
            order: AuditOrder::OldestFirst,
            ..AuditFilter::default()
        };
        let events = self.read_audit_rows(ctx, &filter, limit).await?;
        self.describe(ctx, events).await
    }

    /// The position of record `id` in `ctx`'s organization, if it is sealed there.
    pub async fn audit_position(
        &self,
        ctx: &TenantCtx,
        id: AuditEventId,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let seq = on_conn!(tx.conn(), c => sqlx::query_scalar(
            "SELECT seq FROM audit_chain WHERE org_id = $1 AND record_id = $2",
        )
        .bind(ctx.org_id())
        .bind(id)
        .fetch_optional(&mut *c)
        .await)?;
        tx.commit().await?;
        Ok(seq)
    }

    /// The sealed record `id` of `ctx`'s organization as an activity.
    pub async fn audit_activity(
        &self,
        ctx: &TenantCtx,
        id: AuditEventId,
    ) -> Result<Option<Activity>, StoreError> {
        let Some(seq) = self.audit_position(ctx, id).await? else {
            return Ok(None);
        };
        Ok(self.activities_after(ctx, seq - 1, 1).await?.pop())
    }

    /// Records in words, with the users they name resolved.
    pub(crate) async fn describe(
        &self,
        ctx: &TenantCtx,
        events: Vec<AuditEvent>,
    ) -> Result<Vec<Activity>, StoreError> {
        let mut ids: Vec<UserId> = Vec::new();
        for e in &events {
            if e.actor.kind == ActorKind::User {
                ids.extend(e.actor.id.as_deref().and_then(|i| i.parse::<UserId>().ok()));
            }
            if e.target_type.as_deref() == Some("user") {
                ids.extend(
                    e.target_id
                        .as_deref()
                        .and_then(|i| i.parse::<UserId>().ok()),
                );
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let names = self.user_names(ctx, &ids).await?;
        events
            .into_iter()
            .map(|e| activity(ctx.org_id(), e, &names))
            .collect()
    }

    /// Names and emails of `ids` (users are global: a removed member keeps their name in
    /// the feed).
    async fn user_names(&self, ctx: &TenantCtx, ids: &[UserId]) -> Result<Names, StoreError> {
        if ids.is_empty() {
            return Ok(Names::new());
        }
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let rows: Vec<(UserId, String, String)> = match tx.conn() {
            Conn::Postgres(c) => {
                let uuids: Vec<uuid::Uuid> = ids.iter().map(UserId::as_uuid).collect();
                sqlx::query_as("SELECT id, name, email::text FROM users WHERE id = ANY($1)")
                    .bind(&uuids)
                    .fetch_all(&mut *c)
                    .await?
            }
            Conn::Sqlite(c) => {
                let marks: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
                let sql = format!(
                    "SELECT id, name, email FROM users WHERE id IN ({})",
                    marks.join(", ")
                );
                let mut query = sqlx::query_as(&sql);
                for id in ids {
                    query = query.bind(id);
                }
                query.fetch_all(&mut *c).await?
            }
        };
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|(id, name, email)| (id.to_string(), (name, email)))
            .collect())
    }
}

impl Party {
    /// How a person reads it: the name, else the email, else the kind (and id).
    fn display(&self) -> String {
        if let Some(name) = self.name.as_deref().or(self.email.as_deref()) {
            return name.to_owned();
        }
        match (self.kind.as_str(), self.id.as_deref()) {
            ("system", Some(id)) => format!("Tenantry ({id})"),
            ("system", None) => "Tenantry".to_owned(),
            ("operator", _) => "An operator".to_owned(),
            ("api_key", Some(id)) => format!("API key {id}"),
            (kind, Some(id)) => format!("{kind} {id}"),
            (kind, None) => kind.to_owned(),
        }
    }
}

/// The sentence of an activity.
fn summarize(kind: &str, action: &str, actor: &Party, target: Option<&Party>, p: &Value) -> String {
    let who = actor.display();
    let whom = target.map_or_else(String::new, Party::display);
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    match kind {
        "USER_JOINED" => format!("{whom} joined as {}", s(&p["role"])),
        "USER_REMOVED" => format!("{who} removed {whom}"),
        "ROLE_CHANGED" => format!(
            "{who} changed {whom}'s role from {} to {}",
            s(&p["from"]),
            s(&p["to"])
        ),
        "PLAN_UPGRADED" => format!(
            "{who} upgraded the plan from {} to {}",
            s(&p["from"]),
            s(&p["to"])
        ),
        "PLAN_CHANGED" => format!(
            "{who} changed the plan from {} to {}",
            s(&p["from"]),
            s(&p["to"])
        ),
        "BROADCAST_MESSAGE" => format!("{who}: {}", s(&p["message"])),
        "INVITATION_SENT" => format!("{who} invited {} as {}", s(&p["email"]), s(&p["role"])),
        "INVITATION_REVOKED" => format!("{who} revoked an invitation"),
        "API_KEY_CREATED" => format!("{who} created API key {}", s(&p["name"])),
        "API_KEY_ROTATED" => format!("{who} rotated API key {}", s(&p["name"])),
        "API_KEY_REVOKED" => format!("{who} revoked API key {}", s(&p["name"])),
        "WORKSPACE_CREATED" => format!("{who} created workspace {}", s(&p["name"])),
        "WORKSPACE_DELETED" => format!("{who} deleted workspace {}", s(&p["name"])),
        "ORGANIZATION_UPDATED" => format!("{who} updated the organization"),
        "USER_PROVISIONED" => format!("{whom} was provisioned through SCIM"),
        "USER_DEPROVISIONED" => format!("{whom} was deprovisioned through SCIM"),
        "USER_DEACTIVATED" => format!("{whom} was deactivated through SCIM"),
        "USER_REACTIVATED" => format!("{whom} was reactivated through SCIM"),
        _ => format!("{who}: {action}"),
    }
}

/// A user party, named when known.
fn user_party(id: Option<&str>, names: &Names) -> Party {
    let known = id.and_then(|i| names.get(i));
    Party {
        kind: "user".to_owned(),
        id: id.map(str::to_owned),
        name: known.map(|(n, _)| n.clone()),
        email: known.map(|(_, e)| e.clone()),
    }
}

/// One record in words.
fn activity(org_id: OrgId, e: AuditEvent, names: &Names) -> Result<Activity, StoreError> {
    let actor = match e.actor.kind {
        ActorKind::User => user_party(e.actor.id.as_deref(), names),
        kind => Party {
            kind: kind.as_str().to_owned(),
            id: e.actor.id.clone(),
            name: None,
            email: None,
        },
    };
    let target = e.target_type.as_deref().map(|kind| match kind {
        "user" => user_party(e.target_id.as_deref(), names),
        _ => Party {
            kind: kind.to_owned(),
            id: e.target_id.clone(),
            name: e.metadata["name"].as_str().map(str::to_owned),
            email: e.metadata["email"].as_str().map(str::to_owned),
        },
    });
    let m = &e.metadata;
    let at = e.created_at;
    let by = actor.id.clone();
    let target_id = target.as_ref().and_then(|t| t.id.clone());
    let (target_name, target_email) = target
        .as_ref()
        .map_or((None, None), |t| (t.name.clone(), t.email.clone()));
    let Some(mut kind) = feed_type(&e.action) else {
        let summary = summarize(
            AUDIT_EVENT,
            &e.action,
            &actor,
            target.as_ref(),
            &Value::Null,
        );
        let payload = serde_json::to_value(&e)
            .map_err(|err| StoreError::Corrupt(format!("audit record {}: {err}", e.id)))?;
        return Ok(Activity {
            id: e.id,
            seq: e.seq,
            kind: AUDIT_EVENT,
            org_id,
            at,
            actor,
            target,
            summary,
            payload,
        });
    };
    let payload = match kind {
        "USER_JOINED" => json!({
            "userId": target_id, "name": target_name, "email": target_email, "role": m["role"],
        }),
        "USER_REMOVED" => json!({
            "userId": target_id, "name": target_name, "email": target_email,
            "role": m["role"], "removedBy": by,
        }),
        "ROLE_CHANGED" => json!({
            "userId": target_id, "name": target_name, "email": target_email,
            "from": m["from"], "to": m["to"], "changedBy": by,
        }),
        "PLAN_CHANGED" => {
            if plan_rank(&m["to"]) > plan_rank(&m["from"]) {
                kind = "PLAN_UPGRADED";
                json!({ "from": m["from"], "to": m["to"], "upgradedAt": at })
            } else {
                json!({ "from": m["from"], "to": m["to"], "changedAt": at })
            }
        }
        "BROADCAST_MESSAGE" => json!({ "message": m["message"], "sentBy": by, "sentAt": at }),
        "INVITATION_SENT" => {
            json!({ "invitationId": target_id, "email": m["email"], "role": m["role"], "invitedBy": by })
        }
        "INVITATION_REVOKED" => json!({ "invitationId": target_id, "revokedBy": by }),
        "API_KEY_CREATED" | "API_KEY_ROTATED" | "API_KEY_REVOKED" => json!({
            "keyId": target_id, "name": m["name"], "prefix": m["prefix"], "by": by,
        }),
        "WORKSPACE_CREATED" | "WORKSPACE_DELETED" => {
            json!({ "workspaceId": target_id, "name": m["name"], "by": by })
        }
        "USER_PROVISIONED" | "USER_DEPROVISIONED" | "USER_DEACTIVATED" | "USER_REACTIVATED" => {
            json!({ "userId": target_id, "name": target_name, "email": target_email, "scimId": m["scim_id"], "by": by })
        }
        _ => json!({ "changes": m, "by": by }),
    };
    let summary = summarize(kind, &e.action, &actor, target.as_ref(), &payload);
    Ok(Activity {
        id: e.id,
        seq: e.seq,
        kind,
        org_id,
        at,
        actor,
        target,
        summary,
        payload,
    })
}

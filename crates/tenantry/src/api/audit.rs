//! The audit log over HTTP, shared by an organization's own endpoint and the operator's:
//! search (filters, cursor pages, newest first by default) and export (CSV, JSON,
//! NDJSON), streamed from the database in chunks so that an export of any size holds only
//! a few chunks in memory.

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::TenantCtx;
use crate::http::error::ApiError;
use crate::http::list::List;
use crate::state::AppState;
use crate::store::audit::{AuditEntry, AuditEvent, AuditFilter, AuditOrder};

/// Records one export query reads.
const EXPORT_CHUNK: i64 = 1000;

/// Encoded chunks waiting for a slow reader before the export stops reading.
const EXPORT_BUFFER: usize = 2;

/// What an audit request asks for: a page, or an export of everything matching.
pub(crate) struct AuditRequest {
    /// Which records.
    pub filter: AuditFilter,
    /// Set for an export.
    pub export: Option<Export>,
}

/// An export's shape.
#[derive(Clone, Copy)]
pub(crate) struct Export {
    format: ExportFormat,
    /// Most records.
    limit: Option<u32>,
}

/// Export encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExportFormat {
    Csv,
    Json,
    Ndjson,
}

/// Audit listing filters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// Only this action, e.g. `organization.created`; `member.*` matches every action
    /// starting with `member.`.
    pub action: Option<String>,
    /// Only records by this kind of actor: `user`, `api_key`, `scim`, `operator`, `system`.
    pub actor_type: Option<String>,
    /// Only records by this actor (its id: a user id, an API key id…).
    pub actor_id: Option<String>,
    /// Only records by this user (`actorUserId` is accepted too).
    #[serde(alias = "actorUserId")]
    pub actor_user_id: Option<String>,
    /// Only records about this kind of target, e.g. `api_key`.
    pub target_type: Option<String>,
    /// Only records about this target id.
    pub target_id: Option<String>,
    /// Only records written at or after this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Only records written at or before this time (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// The previous page's `next_cursor`: records after this sequence number (`after` is
    /// accepted too).
    #[serde(alias = "after")]
    pub cursor: Option<i64>,
    /// `newest` (default) or `oldest` first (`desc` and `asc` are accepted too).
    pub order: Option<String>,
    /// Export instead of a page: `csv` (with a header row), `json` (one array) or `ndjson`
    /// (one record per line). Needs `audit:export`; streamed, every matching record.
    pub format: Option<String>,
    /// Page size, 1-200 (default 50); with `format`, the most records exported (default
    /// all).
    pub limit: Option<u32>,
}

impl AuditQuery {
    /// A search with these filters (the console's form), newest first, one page.
    pub(crate) fn filters(
        action: Option<String>,
        actor_user_id: Option<String>,
        target_type: Option<String>,
        target_id: Option<String>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            action,
            actor_type: None,
            actor_id: None,
            actor_user_id,
            target_type,
            target_id,
            from,
            to,
            cursor: None,
            order: None,
            format: None,
            limit: None,
        }
    }

    /// Its filters as query parameters (name, value), for links to the API.
    pub(crate) fn pairs(&self) -> Vec<(&'static str, String)> {
        let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        [
            ("action", self.action.clone()),
            ("actor_user_id", self.actor_user_id.clone()),
            ("target_type", self.target_type.clone()),
            ("target_id", self.target_id.clone()),
            ("from", self.from.as_ref().map(time)),
            ("to", self.to.as_ref().map(time)),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect()
    }
}

/// A page of audit records: the cursor is the last record's sequence number.
pub(crate) fn audit_page(events: Vec<AuditEvent>, filter: &AuditFilter) -> List<AuditEvent> {
    List::page(events, crate::store::page_size(filter.limit), |e| {
        e.seq.to_string()
    })
}

/// A filter value: trimmed, empty as absent, at most 255 characters.
fn filter_value(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    let value = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    if value.as_ref().is_some_and(|v| v.chars().count() > 255) {
        return Err(ApiError::validation(field, "at most 255 characters"));
    }
    Ok(value)
}

impl TryFrom<AuditQuery> for AuditRequest {
    type Error = ApiError;

    fn try_from(q: AuditQuery) -> Result<Self, ApiError> {
        let order = match q.order.as_deref().map(str::trim) {
            None | Some("newest" | "desc") => AuditOrder::NewestFirst,
            Some("oldest" | "asc") => AuditOrder::OldestFirst,
            Some(_) => return Err(ApiError::validation("order", "must be newest or oldest")),
        };
        let format = match q.format.as_deref().map(str::trim) {
            None => None,
            Some("csv") => Some(ExportFormat::Csv),
            Some("json") => Some(ExportFormat::Json),
            Some("ndjson" | "jsonl") => Some(ExportFormat::Ndjson),
            Some(_) => {
                return Err(ApiError::validation(
                    "format",
                    "must be csv, json or ndjson",
                ))
            }
        };
        if q.limit == Some(0) {
            return Err(ApiError::validation("limit", "must be at least 1"));
        }
        let mut actor_type = match filter_value("actor_type", q.actor_type)? {
            Some(raw) => Some(crate::auth::ActorKind::parse(&raw).ok_or_else(|| {
                ApiError::validation(
                    "actor_type",
                    "must be user, api_key, scim, operator or system",
                )
            })?),
            None => None,
        };
        let mut actor_id = filter_value("actor_id", q.actor_id)?;
        if let Some(user) = filter_value("actor_user_id", q.actor_user_id)? {
            if actor_id.as_ref().is_some_and(|a| *a != user)
                || actor_type.is_some_and(|t| t != crate::auth::ActorKind::User)
            {
                return Err(ApiError::validation(
                    "actor_user_id",
                    "contradicts actor_id or actor_type",
                ));
            }
            actor_type = Some(crate::auth::ActorKind::User);
            actor_id = Some(user);
        }
        if let (Some(from), Some(to)) = (q.from, q.to) {
            if from > to {
                return Err(ApiError::validation("to", "must not be before `from`"));
            }
        }
        let filter = AuditFilter {
            action: filter_value("action", q.action)?,
            actor_type,
            actor_id,
            target_type: filter_value("target_type", q.target_type)?,
            target_id: filter_value("target_id", q.target_id)?,
            from: q.from,
            to: q.to,
            cursor: q.cursor,
            upto_seq: None,
            order,
            feed_only: false,
            limit: format.is_none().then_some(q.limit).flatten(),
        };
        Ok(Self {
            export: format.map(|format| Export {
                format,
                limit: q.limit,
            }),
            filter,
        })
    }
}

/// Answers an audit request in `ctx`'s organization: a page as JSON, or a streamed export
/// (audited first: an export that cannot be recorded does not run). `may_export` is the
/// caller's right to export, checked only when it asks to.
pub(crate) async fn answer(
    state: &AppState,
    ctx: &TenantCtx,
    request: AuditRequest,
    may_export: impl FnOnce() -> Result<(), ApiError>,
) -> Result<Response, ApiError> {
    let AuditRequest { filter, export } = request;
    let Some(export) = export else {
        let events = state.store.list_audit_events(ctx, &filter).await?;
        return Ok(Json(audit_page(events, &filter)).into_response());
    };
    may_export()?;
    let entry = AuditEntry::new("audit.exported", "organization", ctx.org_id()).with_metadata(
        serde_json::json!({
            "format": export.format.name(),
            "limit": export.limit,
            "filter": {
                "action": filter.action, "actor_type": filter.actor_type.map(|k| k.as_str()),
                "actor_id": filter.actor_id, "target_type": filter.target_type,
                "target_id": filter.target_id, "from": filter.from, "to": filter.to,
                "order": match filter.order { AuditOrder::NewestFirst => "newest", AuditOrder::OldestFirst => "oldest" },
            },
        }),
    );
    state.store.audit_action(ctx, entry).await?;
    stream_export(state, ctx, filter, export).await
}

impl ExportFormat {
    fn name(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Json => "json",
            Self::Ndjson => "ndjson",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Json => "application/json",
            Self::Ndjson => "application/x-ndjson",
        }
    }

    fn header(self) -> &'static str {
        match self {
            Self::Csv => "seq,id,created_at,actor_type,actor_id,action,target_type,target_id,metadata,ip,user_agent,request_id,prev_hash,hash\r\n",
            Self::Json => "[",
            Self::Ndjson => "",
        }
    }

    fn footer(self) -> &'static str {
        match self {
            Self::Json => "]\n",
            Self::Csv | Self::Ndjson => "",
        }
    }

    /// Appends one record; `first` is the export's first record.
    fn encode(self, out: &mut String, event: &AuditEvent, first: bool) -> Result<(), ApiError> {
        match self {
            Self::Csv => {
                let actor_id = event.actor.id.as_deref().unwrap_or_default();
                let metadata = event.metadata.to_string();
                let seq = event.seq.to_string();
                let cells = [
                    seq.as_str(),
                    &event.id.to_string(),
                    &event
                        .created_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    event.actor.kind.as_str(),
                    actor_id,
                    &event.action,
                    event.target_type.as_deref().unwrap_or_default(),
                    event.target_id.as_deref().unwrap_or_default(),
                    &metadata,
                    event.ip.as_deref().unwrap_or_default(),
                    event.user_agent.as_deref().unwrap_or_default(),
                    event.request_id.as_deref().unwrap_or_default(),
                    &event.prev_hash,
                    &event.hash,
                ];
                for (i, cell) in cells.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    csv_cell(out, cell);
                }
                out.push_str("\r\n");
            }
            Self::Json | Self::Ndjson => {
                if self == Self::Json && !first {
                    out.push(',');
                }
                let json = serde_json::to_string(event).map_err(|e| ApiError::internal(&e))?;
                out.push_str(&json);
                out.push('\n');
            }
        }
        Ok(())
    }
}

/// One CSV cell (RFC 4180), neutralised for spreadsheets: a value a spreadsheet would
/// read as a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) gets a
/// leading `'`.
fn csv_cell(out: &mut String, value: &str) {
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = formula || value.contains([',', '"', '\n', '\r']);
    if quote {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    for c in value.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quote {
        out.push('"');
    }
}

/// Streams the export: the first chunk is read before answering (so an unavailable
/// database is a 503, not a broken body); the rest is read by a task that waits whenever
/// [`EXPORT_BUFFER`] encoded chunks are not taken yet, and stops when the client leaves.
async fn stream_export(
    state: &AppState,
    ctx: &TenantCtx,
    mut filter: AuditFilter,
    export: Export,
) -> Result<Response, ApiError> {
    filter.upto_seq = Some(state.store.sealed_audit_head(ctx).await?);
    let mut remaining = export.limit.map(i64::from);
    let chunk = |remaining: Option<i64>| remaining.map_or(EXPORT_CHUNK, |r| r.min(EXPORT_CHUNK));
    let asked = chunk(remaining);
    let first = state.store.read_audit_rows(ctx, &filter, asked).await?;
    let format = export.format;
    let mut body = String::from(format.header());
    let mut written = 0usize;
    let mut more = encode_chunk(
        format,
        &first,
        asked,
        &mut body,
        &mut written,
        &mut filter,
        &mut remaining,
    )?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(EXPORT_BUFFER);
    let store = state.store.clone();
    let reader = ctx.clone();
    tokio::spawn(async move {
        let mut pending = body;
        while more {
            if tx
                .send(Ok(Bytes::from(std::mem::take(&mut pending))))
                .await
                .is_err()
            {
                return;
            }
            let asked = chunk(remaining);
            let rows = match store.read_audit_rows(&reader, &filter, asked).await {
                Ok(rows) => rows,
                Err(err) => {
                    tracing::error!(error = %crate::telemetry::error_chain(&err), "audit export interrupted");
                    let _ = tx
                        .send(Err(std::io::Error::other("audit export interrupted")))
                        .await;
                    return;
                }
            };
            match encode_chunk(
                format,
                &rows,
                asked,
                &mut pending,
                &mut written,
                &mut filter,
                &mut remaining,
            ) {
                Ok(next) => more = next,
                Err(_) => {
                    let _ = tx
                        .send(Err(std::io::Error::other("audit export interrupted")))
                        .await;
                    return;
                }
            }
        }
        pending.push_str(format.footer());
        let _ = tx.send(Ok(Bytes::from(pending))).await;
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let extension = match format {
        ExportFormat::Csv => "csv",
        ExportFormat::Json => "json",
        ExportFormat::Ndjson => "ndjson",
    };
    let filename = format!(
        "attachment; filename=\"audit-{}-{}.{extension}\"",
        ctx.org_id(),
        Utc::now().format("%Y%m%dT%H%M%SZ")
    );
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (header::CONTENT_DISPOSITION, filename),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Encodes `rows` after what `out` holds, moves the cursor past them and counts them
/// against the limit; true while more may follow.
fn encode_chunk(
    format: ExportFormat,
    rows: &[AuditEvent],
    requested: i64,
    out: &mut String,
    written: &mut usize,
    filter: &mut AuditFilter,
    remaining: &mut Option<i64>,
) -> Result<bool, ApiError> {
    for event in rows {
        format.encode(out, event, *written == 0)?;
        *written += 1;
    }
    let n = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    metrics::counter!("audit_export_records_total").increment(u64::try_from(n).unwrap_or(0));
    if let Some(r) = remaining.as_mut() {
        *r -= n;
    }
    filter.cursor = rows.last().map(|e| e.seq).or(filter.cursor);
    Ok(n > 0 && n == requested && remaining.is_none_or(|r| r > 0))
}

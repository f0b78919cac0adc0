//! One live connection: the organizations it follows, what it replays, what it may see,
//! and the checks that end it when its credential or membership goes.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use futures::stream::{BoxStream, SelectAll};
use futures::StreamExt;
use tokio::sync::broadcast::error::RecvError;

use super::LiveEvent;
use crate::auth::{api_key, CurrentUser, OrgMember, TenantCtx};
use crate::http::error::ApiError;
use crate::ids::{AuditEventId, OrgId};
use crate::rbac::Permission;
use crate::state::AppState;

/// Records one replay read takes.
const REPLAY_BATCH: i64 = 500;

/// Most organizations one connection follows by default (every one of the user's).
pub(crate) const MAX_ORGS: usize = 100;

/// Close codes (RFC 6455 leaves 4000-4999 to applications).
pub(crate) mod close {
    /// The connection took nothing for a keep-alive interval.
    pub(crate) const SLOW_CONSUMER: u16 = 4001;
    /// Its credential expired or was revoked.
    pub(crate) const UNAUTHORIZED: u16 = 4401;
    /// It is no longer a member of any organization it followed.
    pub(crate) const FORBIDDEN: u16 = 4403;
}

/// What a connection sends next.
pub(crate) enum Next {
    /// An event.
    Event(Arc<LiveEvent>),
    /// The end: a close code and its reason.
    Close(u16, &'static str),
}

/// One followed organization.
struct Sub {
    ctx: TenantCtx,
    /// May see `AUDIT_EVENT`s.
    audit_read: bool,
    /// Last position sent (or skipped as not visible).
    last_sent: i64,
    /// Replaying from the log after this position, before live events.
    replaying: Option<i64>,
}

/// What a followed organization's live stream yields.
type LiveItem = (OrgId, Result<Arc<LiveEvent>, RecvError>);

/// A live connection's state.
pub(crate) struct Session {
    state: AppState,
    /// The credential headers (`Authorization`, `Cookie`), presented again at every check.
    credential: HeaderMap,
    subs: HashMap<OrgId, Sub>,
    live: SelectAll<BoxStream<'static, LiveItem>>,
    queue: VecDeque<Arc<LiveEvent>>,
    recheck: tokio::time::Interval,
    /// Organizations to check again before anything else.
    due: BTreeSet<OrgId>,
}

impl Session {
    /// A connection presenting `credential`.
    pub(crate) fn new(state: AppState, credential: HeaderMap) -> Self {
        let every = state.config.realtime.recheck;
        let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            state,
            credential,
            subs: HashMap::new(),
            live: SelectAll::new(),
            queue: VecDeque::new(),
            recheck,
            due: BTreeSet::new(),
        }
    }

    /// Request parts carrying only the credential, for the extractors' checks.
    fn parts(&self) -> Parts {
        let mut request = axum::http::Request::new(());
        *request.headers_mut() = self.credential.clone();
        request.into_parts().0
    }

    /// The organizations followed when none is named: an API key's own, or every one the
    /// user belongs to (the first [`MAX_ORGS`]).
    pub(crate) async fn default_orgs(&mut self) -> Result<Vec<OrgId>, ApiError> {
        let mut parts = self.parts();
        if let Some(secret) =
            crate::auth::credentials::bearer(&parts).filter(|t| api_key::looks_like_key(t))
        {
            let key = self
                .state
                .api_keys
                .verify(&self.state.store, secret)
                .await?
                .ok_or_else(ApiError::invalid_api_key)?;
            return Ok(vec![key.org_id]);
        }
        let user = CurrentUser::from_request_parts(&mut parts, &self.state).await?;
        let orgs = self.state.store.my_orgs(user.id).await?;
        Ok(orgs.into_iter().take(MAX_ORGS).map(|o| o.org.id).collect())
    }

    /// The credential's access to `org` now.
    async fn authorize(&mut self, org: OrgId) -> Result<OrgMember, ApiError> {
        let mut parts = self.parts();
        OrgMember::resolve(&mut parts, &self.state, org)
            .await
            .map(|(member, _, _)| member)
    }

    /// Follows `org` (404 unless the credential may see it), replaying the records after
    /// event `since` first.
    pub(crate) async fn subscribe(
        &mut self,
        org: OrgId,
        since: Option<AuditEventId>,
    ) -> Result<(), ApiError> {
        if self.subs.contains_key(&org) {
            return Ok(());
        }
        let member = self.authorize(org).await?;
        member.require(Permission::OrgRead)?;
        let replay_from = match since {
            Some(id) => Some(
                self.state
                    .store
                    .audit_position(&member.ctx, id)
                    .await?
                    .ok_or_else(|| {
                        ApiError::validation("since", "names no event of this organization")
                    })?,
            ),
            None => None,
        };
        let (rx, live_from) = self.state.hub.subscribe(&member.ctx).await?;
        // A closed feed ends its stream.
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Err(RecvError::Closed) => None,
                item => Some((item, rx)),
            }
        })
        .map(move |item| (org, item));
        self.live.push(stream.boxed());
        self.subs.insert(
            org,
            Sub {
                audit_read: member.permissions.contains(&Permission::AuditRead),
                ctx: member.ctx,
                last_sent: replay_from.unwrap_or(live_from),
                replaying: replay_from,
            },
        );
        Ok(())
    }

    /// The organizations followed.
    pub(crate) fn orgs(&self) -> Vec<OrgId> {
        let mut orgs: Vec<OrgId> = self.subs.keys().copied().collect();
        orgs.sort_unstable();
        orgs
    }

    /// The next thing to send. Cancel-safe: an interrupted call loses nothing.
    pub(crate) async fn next(&mut self) -> Next {
        loop {
            if let Some(activity) = self.queue.pop_front() {
                return Next::Event(activity);
            }
            if let Some(org) = self
                .subs
                .iter()
                .find_map(|(org, s)| s.replaying.map(|_| *org))
            {
                // Boxed: the rare large futures stay out of every idle connection's task.
                if let Err(code) = Box::pin(self.replay(org)).await {
                    return code;
                }
                continue;
            }
            // Taken off the list only once checked: an interrupted check runs again.
            if let Some(org) = self.due.first().copied() {
                let outcome = Box::pin(self.check(org)).await;
                self.due.remove(&org);
                if let Some(close) = outcome {
                    return close;
                }
                continue;
            }
            let live = !self.live.is_empty();
            tokio::select! {
                item = self.live.next(), if live => match item {
                    Some((org, Ok(activity))) => {
                        if let Some(event) = self.take(org, activity) {
                            return Next::Event(event);
                        }
                    }
                    // Fell behind the feed (a burst): the rest comes from the log.
                    Some((org, Err(RecvError::Lagged(_)))) => {
                        if let Some(sub) = self.subs.get_mut(&org) {
                            sub.replaying = Some(sub.last_sent);
                        }
                    }
                    Some((_, Err(RecvError::Closed))) | None => {}
                },
                _ = self.recheck.tick() => self.due.extend(self.subs.keys().copied()),
            }
        }
    }

    /// A live event of `org`: sent unless seen already or not visible to this caller; a
    /// change of who may see what schedules a check.
    fn take(&mut self, org: OrgId, event: Arc<LiveEvent>) -> Option<Arc<LiveEvent>> {
        let activity = &event.activity;
        let sub = self.subs.get_mut(&org)?;
        if activity.seq <= sub.last_sent || sub.replaying.is_some() {
            return None;
        }
        sub.last_sent = activity.seq;
        let changes_access = matches!(
            activity.kind,
            "USER_REMOVED"
                | "ROLE_CHANGED"
                | "API_KEY_REVOKED"
                | "API_KEY_ROTATED"
                | "USER_DEACTIVATED"
                | "USER_DEPROVISIONED"
        ) || activity.payload["action"].as_str().is_some_and(|a| {
            a.starts_with("role.")
                || a.starts_with("session.")
                || a == "organization.suspended"
                || a == "organization.feature_set"
        });
        if changes_access {
            self.due.insert(org);
        }
        (activity.in_feed() || sub.audit_read).then_some(event)
    }

    /// Queues the next replayed records of `org`.
    async fn replay(&mut self, org: OrgId) -> Result<(), Next> {
        let Some(sub) = self.subs.get(&org) else {
            return Ok(());
        };
        let Some(after) = sub.replaying else {
            return Ok(());
        };
        let batch = match self
            .state
            .store
            .activities_after(&sub.ctx, after, REPLAY_BATCH)
            .await
        {
            Ok(batch) => batch,
            Err(err) => {
                tracing::warn!(error = %crate::telemetry::error_chain(&err), "cannot replay events");
                return Err(Next::Close(1011, "events unavailable; reconnect later"));
            }
        };
        let done = i64::try_from(batch.len()).unwrap_or(0) < REPLAY_BATCH;
        let Some(sub) = self.subs.get_mut(&org) else {
            return Ok(());
        };
        for activity in batch {
            sub.last_sent = activity.seq;
            if activity.in_feed() || sub.audit_read {
                match LiveEvent::new(activity) {
                    Ok(event) => self.queue.push_back(Arc::new(event)),
                    Err(err) => {
                        tracing::error!(error = %err, "cannot encode a replayed event");
                        return Err(Next::Close(1011, "events unavailable; reconnect later"));
                    }
                }
            }
        }
        sub.replaying = (!done).then_some(sub.last_sent);
        Ok(())
    }

    /// Checks the credential's access to `org` again: a credential no longer valid closes
    /// the connection, a lost membership stops that organization (the connection when none
    /// is left), a database that cannot answer changes nothing.
    async fn check(&mut self, org: OrgId) -> Option<Next> {
        if !self.subs.contains_key(&org) {
            return None;
        }
        match self.authorize(org).await {
            Ok(member) if member.permissions.contains(&Permission::OrgRead) => {
                if let Some(sub) = self.subs.get_mut(&org) {
                    sub.audit_read = member.permissions.contains(&Permission::AuditRead);
                }
                None
            }
            Err(err) if err.status() == StatusCode::UNAUTHORIZED => Some(Next::Close(
                close::UNAUTHORIZED,
                "credential expired or revoked",
            )),
            Err(err) if err.status().is_server_error() => None,
            Ok(_) | Err(_) => {
                self.subs.remove(&org);
                self.subs
                    .is_empty()
                    .then_some(Next::Close(close::FORBIDDEN, "no longer a member"))
            }
        }
    }
}

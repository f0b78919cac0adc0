//! Live events: every sealed audit record, as an [`Activity`], pushed to the WebSocket
//! (`/v1/ws`) and server-sent-event (`/v1/orgs/{org_id}/events`) connections of its
//! organization, on every instance.
//!
//! Nothing is published but positions. The sealer announces the chain heads it moved: in
//! process (the store's channel), to other processes through PostgreSQL `NOTIFY` (payload
//! `<org>:<seq>`) or, with `REDIS_URL`, Redis pub/sub. Each instance's [`Hub`] then reads
//! the new records of the organizations someone here listens to, once for all of its
//! connections, under that organization's scope, and hands them to the connections in
//! chain order. Positions make a stream exact: a connection resuming after event `e`
//! replays the records after `e`'s position from the log, then takes live ones after the
//! last it sent, so nothing is missed or repeated.

mod session;
pub(crate) mod ws;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::TenantCtx;
use crate::ids::OrgId;
use crate::store::activity::Activity;
use crate::store::audit::{SealedHead, SEALED_CHANNEL};
use crate::store::{Store, StoreError};

pub(crate) use session::{Next, Session};

/// An event as every connection sends it: the activity, and its JSON encoded once.
pub(crate) struct LiveEvent {
    /// What it is (for filtering and resuming).
    pub activity: Activity,
    /// The text message.
    pub json: axum::extract::ws::Utf8Bytes,
}

impl LiveEvent {
    /// Encodes `activity` once for all connections.
    pub(crate) fn new(activity: Activity) -> Result<Self, StoreError> {
        let json = serde_json::to_string(&activity)
            .map_err(|e| StoreError::Corrupt(format!("activity {}: {e}", activity.id)))?;
        Ok(Self {
            activity,
            json: json.into(),
        })
    }
}

/// Records one read of a hub takes.
const READ_BATCH: i64 = 500;

/// Pause before a hub reads again after the database did not answer.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// This instance's fan-out: one feed per organization with listeners here.
#[derive(Clone)]
pub struct Hub(Arc<Inner>);

struct Inner {
    store: Store,
    feeds: Mutex<HashMap<OrgId, Feed>>,
    /// Events one slow listener may fall behind by.
    buffer: usize,
}

/// One organization's live events on this instance.
struct Feed {
    tx: broadcast::Sender<Arc<LiveEvent>>,
    /// Last position handed to `tx`.
    last_seq: i64,
    /// A read is under way.
    reading: bool,
    /// The chain moved again while reading.
    again: bool,
}

impl Hub {
    /// A hub reading from `store`, letting a listener fall `buffer` events behind.
    pub fn new(store: Store, buffer: usize) -> Self {
        Self(Arc::new(Inner {
            store,
            feeds: Mutex::new(HashMap::new()),
            buffer: buffer.max(1),
        }))
    }

    fn feeds(&self) -> std::sync::MutexGuard<'_, HashMap<OrgId, Feed>> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.0
            .feeds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Live events of `ctx`'s organization, and the position after which they start.
    pub(crate) async fn subscribe(
        &self,
        ctx: &TenantCtx,
    ) -> Result<(broadcast::Receiver<Arc<LiveEvent>>, i64), StoreError> {
        let org = ctx.org_id();
        if let Some(feed) = self.feeds().get(&org) {
            return Ok((feed.tx.subscribe(), feed.last_seq));
        }
        let head = self.0.store.sealed_audit_head(ctx).await?;
        let mut feeds = self.feeds();
        let feed = feeds.entry(org).or_insert_with(|| Feed {
            tx: broadcast::channel(self.0.buffer).0,
            last_seq: head,
            reading: false,
            again: false,
        });
        let rx = feed.tx.subscribe();
        let last = feed.last_seq;
        // The chain may have moved between reading the head and listening.
        drop(feeds);
        self.sealed(SealedHead {
            org_id: org,
            seq: i64::MAX,
        });
        Ok((rx, last))
    }

    /// Connections listening here, over all organizations.
    pub fn listeners(&self) -> usize {
        self.feeds().values().map(|f| f.tx.receiver_count()).sum()
    }

    /// A chain moved: reads its new records if anyone here listens to it.
    pub fn sealed(&self, head: SealedHead) {
        let mut feeds = self.feeds();
        let Some(feed) = feeds.get_mut(&head.org_id) else {
            return;
        };
        if feed.tx.receiver_count() == 0 && !feed.reading {
            feeds.remove(&head.org_id);
            return;
        }
        if head.seq <= feed.last_seq {
            return;
        }
        if feed.reading {
            feed.again = true;
            return;
        }
        feed.reading = true;
        drop(feeds);
        let hub = self.clone();
        tokio::spawn(async move { hub.read(head.org_id).await });
    }

    /// Hands the organization's records after its feed's position to the feed, until
    /// nothing new is left.
    async fn read(&self, org: OrgId) {
        let ctx = TenantCtx::system(org);
        loop {
            let Some(after) = self.feeds().get(&org).map(|f| f.last_seq) else {
                return;
            };
            // A read never hands a feed more than a listener may fall behind by.
            let batch = READ_BATCH.min(i64::try_from(self.0.buffer).unwrap_or(READ_BATCH));
            match self.0.store.activities_after(&ctx, after, batch).await {
                Ok(activities) => {
                    let full = i64::try_from(activities.len()).unwrap_or(0) >= batch;
                    let mut feeds = self.feeds();
                    let Some(feed) = feeds.get_mut(&org) else {
                        return;
                    };
                    for activity in activities {
                        feed.last_seq = activity.seq;
                        match LiveEvent::new(activity) {
                            // No receiver left is no error: the feed goes at the next signal.
                            Ok(event) => {
                                let _ = feed.tx.send(Arc::new(event));
                            }
                            Err(err) => tracing::error!(error = %err, "cannot encode a live event"),
                        }
                    }
                    if full || std::mem::take(&mut feed.again) {
                        continue;
                    }
                    feed.reading = false;
                    return;
                }
                Err(err) => {
                    tracing::warn!(org = %org, error = %crate::telemetry::error_chain(&err),
                        "cannot read new audit records for live events; retrying");
                    tokio::time::sleep(RETRY_AFTER).await;
                    if self
                        .feeds()
                        .get(&org)
                        .is_none_or(|f| f.tx.receiver_count() == 0)
                    {
                        if let Some(feed) = self.feeds().get_mut(&org) {
                            feed.reading = false;
                        }
                        return;
                    }
                }
            }
        }
    }

    /// Follows the sealer's announcements until `stop`: this process's, and other
    /// processes' through Redis when configured, else PostgreSQL `NOTIFY`.
    pub fn follow(
        &self,
        redis: Option<(String, String)>,
        stop: CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        let hub = self.clone();
        let mut local = self.0.store.audit_seals();
        let local_stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = local_stop.cancelled() => return,
                    signal = local.recv() => match signal {
                        Ok(head) => hub.sealed(head),
                        Err(broadcast::error::RecvError::Lagged(_)) => hub.catch_up(),
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        }));
        match redis {
            Some((url, prefix)) => {
                tasks.push(fanout::follow_redis(self.clone(), url, prefix, stop));
            }
            None => {
                let hub = self.clone();
                let on_connect = {
                    let hub = self.clone();
                    move || {
                        let hub = hub.clone();
                        async move {
                            // Whatever was announced while not listening.
                            hub.catch_up();
                            Ok::<(), StoreError>(())
                        }
                    }
                };
                tasks.extend(crate::db::notify::follow(
                    self.0.store.direct_options(),
                    SEALED_CHANNEL,
                    stop,
                    on_connect,
                    move |payload| match fanout::parse(payload) {
                        Some(head) => hub.sealed(head),
                        None => tracing::warn!(payload, "unreadable audit announcement"),
                    },
                ));
            }
        }
        tasks
    }

    /// Reads every feed on, after announcements may have been missed.
    fn catch_up(&self) {
        let orgs: Vec<OrgId> = self.feeds().keys().copied().collect();
        for org_id in orgs {
            self.sealed(SealedHead {
                org_id,
                seq: i64::MAX,
            });
        }
    }
}

pub(crate) mod fanout {
    //! Announcements between processes.

    use std::str::FromStr;

    use futures::StreamExt;
    use tokio::task::JoinHandle;
    use tokio_util::sync::CancellationToken;

    use super::Hub;
    use crate::ids::OrgId;
    use crate::store::audit::SealedHead;

    /// Redis channel (after `REDIS_KEY_PREFIX`) carrying the sealer's announcements.
    pub(crate) const REDIS_CHANNEL: &str = "audit-sealed";

    /// Pause before reconnecting to Redis.
    const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

    /// `<org uuid>:<seq>`.
    pub(crate) fn parse(payload: &str) -> Option<SealedHead> {
        let (org, seq) = payload.split_once(':')?;
        Some(SealedHead {
            org_id: OrgId::from_uuid(uuid::Uuid::from_str(org).ok()?),
            seq: seq.parse().ok()?,
        })
    }

    /// The payload of `head`.
    pub(crate) fn payload(head: SealedHead) -> String {
        format!("{}:{}", head.org_id.as_uuid(), head.seq)
    }

    /// Republishes this process's sealing announcements on Redis until `stop`, for the
    /// other instances' hubs.
    pub(crate) fn publish_to_redis(
        store: crate::store::Store,
        redis: std::sync::Arc<crate::db::cache::RedisHandle>,
        prefix: String,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let mut seals = store.audit_seals();
        let channel = format!("{prefix}{REDIS_CHANNEL}");
        tokio::spawn(async move {
            loop {
                let head = tokio::select! {
                    () = stop.cancelled() => return,
                    signal = seals.recv() => match signal {
                        Ok(head) => head,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "audit announcements dropped before Redis");
                            continue;
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                };
                let sent = async {
                    let mut conn = redis.connection().await?;
                    redis::cmd("PUBLISH")
                        .arg(&channel)
                        .arg(payload(head))
                        .query_async::<i64>(&mut conn)
                        .await
                };
                if let Err(err) = sent.await {
                    // Listeners catch up at their next announcement or reconnection.
                    tracing::warn!(error = %err, "cannot publish an audit announcement to Redis");
                }
            }
        })
    }

    /// Subscribes `hub` to the announcements on Redis until `stop`, reconnecting.
    pub(crate) fn follow_redis(
        hub: Hub,
        url: String,
        prefix: String,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let channel = format!("{prefix}{REDIS_CHANNEL}");
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let listen = async {
                    let client = redis::Client::open(url.as_str())?;
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe(&channel).await?;
                    hub.catch_up();
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let payload: String = message.get_payload()?;
                        match parse(&payload) {
                            Some(head) => hub.sealed(head),
                            None => tracing::warn!(payload, "unreadable audit announcement"),
                        }
                    }
                    Ok::<(), redis::RedisError>(())
                };
                tokio::select! {
                    () = stop.cancelled() => return,
                    result = listen => {
                        if let Err(err) = result {
                            tracing::warn!(error = %err, "Redis announcements interrupted; reconnecting");
                        }
                    }
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(RETRY_AFTER) => {}
                }
            }
        })
    }
}

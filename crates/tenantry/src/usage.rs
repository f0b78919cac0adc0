//! The meter: counts metered API calls in memory and writes them in batches, enforces the
//! plan's monthly quota, and records when API keys were last used.
//!
//! Nothing is written on a request's path. Every `USAGE_FLUSH_INTERVAL_MS` (and on
//! shutdown) the counts are written as one usage event per (organization, meter, day), each
//! keyed by instance and batch; a batch whose write failed is retried unchanged, so a write
//! that committed although its reply was lost is not counted twice. A crash loses at most
//! the counts of one interval. Quotas compare the month's stored total (at most
//! `USAGE_QUOTA_REFRESH_MS` old, [`QUOTA_REFRESH`] by default: busy organizations are
//! re-read together by the flusher, others by their next request) plus this instance's
//! unwritten counts with the plan's allowance; with several instances a quota can be
//! overshot by what the others counted in that time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::api_key::KeyCache;
use crate::config::LimitsConfig;
use crate::ids::OrgId;
use crate::rbac::Plan;
use crate::store::usage::MeteredBatch;
use crate::store::{now, Store, StoreError};

/// The meter of metered API requests.
pub const API_CALLS: &str = "api_calls";

/// How long an organization's stored monthly total is trusted, unless
/// `USAGE_QUOTA_REFRESH_MS` says otherwise.
pub const QUOTA_REFRESH: Duration = Duration::from_secs(2);

/// An organization without metered calls for this long leaves the meter's memory.
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// A refused call: the month's quota is used up.
#[derive(Clone, Debug)]
pub struct QuotaExceeded {
    /// Calls allowed per month.
    pub limit: u64,
    /// Calls counted this month.
    pub used: u64,
    /// Start of the next month.
    pub resets_at: chrono::DateTime<Utc>,
}

/// Why a call could not be admitted.
#[derive(Debug)]
pub enum Refusal {
    /// Over quota.
    Quota(QuotaExceeded),
    /// The organization's usage could not be read.
    Store(StoreError),
}

/// Counts metered calls; cheap to clone.
#[derive(Clone)]
pub struct Meter {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    limits: LimitsConfig,
    keys: KeyCache,
    instance: String,
    batches: AtomicU64,
    state: Mutex<State>,
    /// One flush at a time (batches are written in order; a failed one is retried first).
    flushing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    pending: HashMap<(OrgId, &'static str, NaiveDate), i64>,
    /// A batch whose write failed, with its key: retried unchanged before anything new, so
    /// a write that committed although its reply was lost is not counted twice.
    unsent: Option<(String, MeteredBatch)>,
    orgs: HashMap<OrgId, OrgUsage>,
    /// Batch writes started and finished: a stored total read while a write was under way
    /// may or may not include it, and is not trusted.
    writes_started: u64,
    writes_done: u64,
}

struct OrgUsage {
    plan: Plan,
    /// First day of the month the totals are for.
    month: NaiveDate,
    /// Stored total at the last trusted refresh plus what this instance wrote since.
    stored: i64,
    /// Being written by this instance.
    inflight: i64,
    /// Counted here, not written yet.
    pending: i64,
    refreshed: Instant,
    refreshing: bool,
    /// A call was admitted since the last refresh: the flusher keeps this total fresh.
    active: bool,
}

impl OrgUsage {
    fn total(&self) -> i64 {
        self.stored + self.inflight + self.pending
    }
}

/// First day of the month of `day`: the start of its quota period.
pub fn month_of(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

/// Start of the month after `at`'s, when monthly allowances reset.
pub fn next_month_start(at: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
    let (y, m) = (at.year(), at.month());
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    Utc.with_ymd_and_hms(ny, nm, 1, 0, 0, 0)
        .single()
        .unwrap_or(at)
}

impl Meter {
    /// A meter writing through `store`.
    pub fn new(store: Store, limits: LimitsConfig, keys: KeyCache) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                limits,
                keys,
                instance: format!("{}-{}", std::process::id(), crate::secrets::random_token(6)),
                batches: AtomicU64::new(0),
                state: Mutex::new(State::default()),
                flushing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits one metered API call of `org`, or refuses it when the month's quota is used
    /// up. An admitted call is counted.
    pub async fn admit(&self, org: OrgId) -> Result<(), Refusal> {
        let at = now();
        let day = at.date_naive();
        let month = month_of(day);
        let needs_refresh = {
            let mut state = self.state();
            match state.orgs.get_mut(&org) {
                Some(o) if o.month == month => {
                    let stale =
                        o.refreshed.elapsed() >= self.inner.limits.quota_refresh && !o.refreshing;
                    if stale {
                        o.refreshing = true;
                    }
                    stale
                }
                _ => true,
            }
        };
        if needs_refresh {
            // A request dropped while it re-reads (a timeout, a client gone) must not leave the
            // organization marked as being re-read, which would freeze its total.
            let _pending = RefreshMark { meter: self, org };
            if let Err(err) = self.refresh(org, month).await {
                let mut state = self.state();
                let known = match state.orgs.get_mut(&org) {
                    Some(o) => {
                        o.refreshing = false;
                        o.month == month
                    }
                    None => false,
                };
                // Without this month's total, calls wait for the database to answer.
                if !known {
                    return Err(Refusal::Store(err));
                }
            }
        }
        let mut state = self.state();
        let Some(usage) = state.orgs.get_mut(&org).filter(|o| o.month == month) else {
            return Err(Refusal::Store(StoreError::NotFound));
        };
        if let Some(limit) = self.inner.limits.api_calls_quota(usage.plan) {
            // Totals are never negative (the store refuses to read one).
            let used = usage.total().max(0).unsigned_abs();
            if used >= limit {
                return Err(Refusal::Quota(QuotaExceeded {
                    limit,
                    used,
                    resets_at: next_month_start(at),
                }));
            }
        }
        usage.pending += 1;
        usage.active = true;
        *state.pending.entry((org, API_CALLS, day)).or_insert(0) += 1;
        Ok(())
    }

    /// Re-reads, in one statement, the stored totals and plans of every organization that
    /// made calls since its last refresh and whose total is at least half the refresh
    /// interval old: busy organizations stay fresh without a read on their requests' path
    /// (which remains for an organization coming back after a quiet spell).
    pub async fn refresh_active(&self) -> Result<(), StoreError> {
        let (month, due, quiet_before) = {
            let mut state = self.state();
            let month = month_of(now().date_naive());
            let mut due = Vec::new();
            for (org, usage) in state.orgs.iter_mut() {
                if usage.active
                    && !usage.refreshing
                    && usage.month == month
                    && usage.refreshed.elapsed() >= self.inner.limits.quota_refresh / 2
                {
                    usage.refreshing = true;
                    due.push(*org);
                }
            }
            let quiet = (state.writes_started == state.writes_done).then_some(state.writes_started);
            (month, due, quiet)
        };
        if due.is_empty() {
            return Ok(());
        }
        let store = &self.inner.store;
        let read = store
            .bounded(store.plans_and_usage(&due, API_CALLS, &month.to_string()))
            .await;
        let mut state = self.state();
        let trusted = quiet_before == Some(state.writes_started);
        let rows = match read {
            Ok(rows) => rows,
            Err(err) => {
                for org in &due {
                    if let Some(usage) = state.orgs.get_mut(org) {
                        usage.refreshing = false;
                    }
                }
                return Err(err);
            }
        };
        for org in &due {
            if let Some(usage) = state.orgs.get_mut(org) {
                usage.refreshing = false;
            }
        }
        for (org, plan, stored) in rows {
            let Some(usage) = state.orgs.get_mut(&org).filter(|u| u.month == month) else {
                continue;
            };
            usage.plan = plan;
            // A total read while this instance wrote a batch may or may not include it: the
            // organization stays due, for the next pass.
            if trusted {
                usage.stored = stored;
                usage.refreshed = Instant::now();
                usage.active = false;
            }
        }
        Ok(())
    }

    async fn refresh(&self, org: OrgId, month: NaiveDate) -> Result<(), StoreError> {
        let quiet_before = {
            let state = self.state();
            (state.writes_started == state.writes_done).then_some(state.writes_started)
        };
        let (plan, stored) = self
            .inner
            .store
            .plan_and_usage(org, API_CALLS, &month.to_string())
            .await?
            .ok_or(StoreError::NotFound)?;
        let mut state = self.state();
        // Trusted only if no write of this instance overlapped the read.
        let trusted = quiet_before == Some(state.writes_started);
        let usage = state.orgs.entry(org).or_insert_with(|| OrgUsage {
            plan,
            month,
            stored,
            inflight: 0,
            pending: 0,
            refreshed: Instant::now(),
            refreshing: false,
            active: false,
        });
        if usage.month != month {
            // A new month: last month's counts are written but no longer count.
            usage.month = month;
            usage.stored = stored;
            usage.inflight = 0;
            usage.pending = 0;
        } else if trusted {
            usage.stored = stored;
        }
        usage.plan = plan;
        usage.refreshed = Instant::now();
        usage.refreshing = false;
        Ok(())
    }

    /// Writes the counts gathered so far (and keys' last use). A batch that fails is kept,
    /// with its key, and retried first next time. The write runs as a task of its own, so a
    /// caller that goes away (a request that timed out) cannot cut a batch off half-way,
    /// which would lose its counts and leave the meter distrusting every stored total.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let meter = self.clone();
        tokio::spawn(async move { meter.flush_now().await })
            .await
            .map_err(|_| StoreError::from(sqlx::Error::WorkerCrashed))?
    }

    async fn flush_now(&self) -> Result<(), StoreError> {
        let _one = self.inner.flushing.lock().await;
        let retry = self.state().unsent.take();
        if let Some((key, batch)) = retry {
            self.write(key, batch).await?;
        }
        let batch: MeteredBatch = {
            let mut state = self.state();
            let pending = std::mem::take(&mut state.pending);
            for ((org, meter, day), n) in &pending {
                if let Some(o) = state.orgs.get_mut(org) {
                    if *meter == API_CALLS && o.month == month_of(*day) {
                        o.pending -= n;
                        o.inflight += n;
                    }
                }
            }
            // Organizations not seen for a while are forgotten (re-read when they return).
            state.orgs.retain(|_, o| {
                o.pending != 0 || o.inflight != 0 || o.refreshed.elapsed() < FORGET_AFTER
            });
            pending.into_iter().collect()
        };
        if !batch.is_empty() {
            let seq = self.inner.batches.fetch_add(1, Ordering::Relaxed);
            self.write(format!("meter:{}:{seq}", self.inner.instance), batch)
                .await?;
        }
        let used = self.inner.keys.take_used();
        let store = &self.inner.store;
        store.bounded(store.touch_api_keys(&used)).await
    }

    /// Writes one batch; on success its calls move from in flight to stored, on failure it
    /// is kept for the next flush.
    async fn write(&self, key: String, batch: MeteredBatch) -> Result<(), StoreError> {
        self.state().writes_started += 1;
        // Bounded: a write that timed out is kept and retried with its key, which the
        // database deduplicates if it did commit.
        let store = &self.inner.store;
        let result = store.bounded(store.record_metered(&batch, &key)).await;
        let mut state = self.state();
        state.writes_done += 1;
        match result {
            Ok(gone) => {
                for org in gone {
                    let dropped: i64 = batch
                        .iter()
                        .filter(|((o, _, _), _)| *o == org)
                        .map(|(_, n)| *n)
                        .sum();
                    state.orgs.remove(&org);
                    tracing::info!(org.id = %org, dropped, "organization deleted; its unwritten metered calls were dropped");
                }
                for ((org, meter, day), n) in &batch {
                    if let Some(o) = state.orgs.get_mut(org) {
                        if *meter == API_CALLS && o.month == month_of(*day) {
                            o.inflight -= n;
                            o.stored += n;
                        }
                    }
                }
                Ok(())
            }
            Err(err) => {
                state.unsent = Some((key, batch));
                Err(err)
            }
        }
    }

    /// Flushes every `USAGE_FLUSH_INTERVAL_MS` until `stop`, then once more.
    pub fn spawn_flusher(&self, stop: CancellationToken) -> JoinHandle<()> {
        let meter = self.clone();
        tokio::spawn(async move {
            let every = meter.inner.limits.usage_flush;
            loop {
                let stopping = tokio::select! {
                    () = stop.cancelled() => true,
                    () = tokio::time::sleep(every) => false,
                };
                if let Err(err) = meter.flush().await {
                    tracing::warn!(error = %crate::telemetry::error_chain(&err), "cannot write usage; will retry");
                }
                if stopping {
                    return;
                }
                if let Err(err) = meter.refresh_active().await {
                    tracing::warn!(error = %crate::telemetry::error_chain(&err), "cannot re-read usage totals; requests will");
                }
            }
        })
    }
}

/// Clears an organization's "being re-read" mark when its request goes away mid-read; on
/// completion the read has cleared it already.
struct RefreshMark<'a> {
    meter: &'a Meter,
    org: OrgId,
}

impl Drop for RefreshMark<'_> {
    fn drop(&mut self) {
        if let Some(usage) = self.meter.state().orgs.get_mut(&self.org) {
            usage.refreshing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_bounds_roll_over_the_year() {
        let at = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap();
        assert_eq!(month_of(at.date_naive()).to_string(), "2026-12-01");
        assert_eq!(
            next_month_start(at),
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
        );
    }
}

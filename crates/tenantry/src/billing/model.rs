//! The provider-neutral view of a subscription and the rules that turn it into a plan.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::rbac::Plan;

/// A subscription as the provider reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// Provider id (`sub_…`).
    pub id: String,
    /// Customer (`cus_…`).
    pub customer_id: String,
    /// `active`, `trialing`, `past_due`, `canceled`, `unpaid`, `incomplete`,
    /// `incomplete_expired` or `paused`, as the provider says.
    pub status: String,
    /// Price of its first item.
    pub price_id: Option<String>,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// Current period.
    pub current_period_start: Option<DateTime<Utc>>,
    /// End of the current period.
    pub current_period_end: Option<DateTime<Utc>>,
    /// Ends at the end of the period.
    pub cancel_at_period_end: bool,
}

/// Statuses after which a subscription never comes back.
pub fn is_terminal(status: &str) -> bool {
    matches!(status, "canceled" | "incomplete_expired")
}

/// Statuses of a subscription that is being paid for (usage is reported for them).
pub fn is_billable(status: &str) -> bool {
    matches!(status, "active" | "trialing" | "past_due")
}

/// The plan an organization has under a subscription in `status` for a price worth
/// `paid_plan`:
///
/// - `active`, `trialing`: the paid plan;
/// - `past_due`: the paid plan until `grace` after the first failed payment, then FREE;
/// - anything else (`canceled` at the period's end, `unpaid`, `incomplete` before the first
///   payment, `incomplete_expired`, `paused`): FREE.
pub fn effective_plan(
    status: &str,
    paid_plan: Plan,
    past_due_since: Option<DateTime<Utc>>,
    grace: Duration,
    now: DateTime<Utc>,
) -> Plan {
    match status {
        "active" | "trialing" => paid_plan,
        "past_due" => {
            let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
            match past_due_since {
                Some(since) if now.signed_duration_since(since) >= grace => Plan::Free,
                _ => paid_plan,
            }
        }
        _ => Plan::Free,
    }
}

/// When the grace of a `past_due` subscription ends.
pub fn grace_ends_at(past_due_since: DateTime<Utc>, grace: Duration) -> DateTime<Utc> {
    past_due_since + chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_the_status_and_the_grace_period() {
        let now = Utc::now();
        let week = Duration::from_secs(7 * 86_400);
        assert_eq!(
            effective_plan("active", Plan::Pro, None, week, now),
            Plan::Pro
        );
        assert_eq!(
            effective_plan("trialing", Plan::Enterprise, None, week, now),
            Plan::Enterprise
        );
        let yesterday = now - chrono::Duration::days(1);
        assert_eq!(
            effective_plan("past_due", Plan::Pro, Some(yesterday), week, now),
            Plan::Pro
        );
        let long_ago = now - chrono::Duration::days(8);
        assert_eq!(
            effective_plan("past_due", Plan::Pro, Some(long_ago), week, now),
            Plan::Free
        );
        for status in [
            "canceled",
            "unpaid",
            "incomplete",
            "incomplete_expired",
            "paused",
            "new",
        ] {
            assert_eq!(
                effective_plan(status, Plan::Pro, None, week, now),
                Plan::Free,
                "{status}"
            );
        }
    }
}

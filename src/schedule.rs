//! When each stage of an order may be sent: pure functions of
//! (order, stage rules, now).
//!
//! Nothing here reads a clock, a file or a database. The store feeds in the
//! stage's current state and the instant to decide for; the answer says what
//! to do now and when the question is next worth asking, so the daemon can
//! sleep until then and a test can jump days in a single call.

use std::fmt;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::order::{Order, OrderStatus};

/// The order date a stage's window is measured from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    ShippedAt,
    DeliveredAt,
}

/// Order circumstances under which a stage is not sent at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipCondition {
    Returned,
    /// Part of the order refunded (a review request would be tactless).
    PartiallyRefunded,
    Refunded,
    Cancelled,
    Complaint,
    OptedOut,
}

impl SkipCondition {
    fn applies_to(self, order: &Order) -> bool {
        match self {
            Self::Returned => order.status == OrderStatus::Returned,
            Self::PartiallyRefunded => order.status == OrderStatus::PartiallyRefunded,
            Self::Refunded => order.status == OrderStatus::Refunded,
            Self::Cancelled => order.status == OrderStatus::Cancelled,
            Self::Complaint => order.complaint,
            Self::OptedOut => order.opted_out,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Returned => "order returned",
            Self::PartiallyRefunded => "order partially refunded",
            Self::Refunded => "order refunded",
            Self::Cancelled => "order cancelled",
            Self::Complaint => "buyer complained",
            Self::OptedOut => "buyer opted out",
        }
    }
}

/// What to do with a stage whose send attempt ended in doubt (the process
/// died mid-transaction): hold it for a person, or send it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnknown {
    #[default]
    Hold,
    Resend,
}

/// One step of the sequence, as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSpec {
    pub name: String,
    pub anchor: Anchor,
    /// Offset from the anchor at which the window opens (inclusive).
    pub opens_after: Duration,
    /// Offset from the anchor at which the window closes (exclusive).
    pub closes_after: Duration,
    /// A stage that must have been sent before this one may go.
    pub after: Option<String>,
    pub skip_when: Vec<SkipCondition>,
    pub on_unknown: OnUnknown,
    /// Sent even to a suppressed address (a shipment notice a seller must
    /// send); by default a suppressed address gets nothing.
    pub transactional: bool,
}

/// The lifecycle of one stage of one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageState {
    /// Waiting for its window, its sending hours or its prerequisite.
    Scheduled,
    /// Handed to the transport right now; if the process dies here nobody
    /// knows whether the server took it.
    Sending,
    /// A transient failure; another attempt is due at `next_check_at`.
    Retrying,
    Sent,
    /// The lint found forbidden wording; nothing was sent.
    Blocked,
    /// The order's circumstances rule this stage out.
    Skipped,
    /// The window closed before it could be sent.
    Expired,
    /// The server refused it for good, or the attempts ran out.
    Failed,
    /// An attempt ended in doubt; never re-sent without a decision.
    Unknown,
}

impl StageState {
    pub const ALL: [StageState; 9] = [
        Self::Scheduled,
        Self::Sending,
        Self::Retrying,
        Self::Sent,
        Self::Blocked,
        Self::Skipped,
        Self::Expired,
        Self::Failed,
        Self::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Sending => "sending",
            Self::Retrying => "retrying",
            Self::Sent => "sent",
            Self::Blocked => "blocked",
            Self::Skipped => "skipped",
            Self::Expired => "expired",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
        }
    }

    /// Ended stages never change again on their own: a re-import cannot
    /// resurrect them and the scheduler never looks at them.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Scheduled | Self::Retrying | Self::Sending)
    }
}

impl std::str::FromStr for StageState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown stage state '{s}'"))
    }
}

impl fmt::Display for StageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The local times of day at which buyers may be written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendingHours {
    pub start: NaiveTime,
    /// Exclusive. Earlier than `start` means the hours cross midnight;
    /// equal to `start` means all day.
    pub end: NaiveTime,
}

impl SendingHours {
    pub fn contains(&self, t: NaiveTime) -> bool {
        if self.start == self.end {
            true
        } else if self.start < self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }

    /// The earliest instant at or after `t` that falls inside the sending
    /// hours in `zone`; `t` itself if there is none before the end of time
    /// (see [`SendingHours::checked_next_open`]).
    pub fn next_open(&self, t: DateTime<Utc>, zone: Tz) -> DateTime<Utc> {
        self.checked_next_open(t, zone).unwrap_or(t)
    }

    /// The earliest instant at or after `t` that falls inside the sending
    /// hours in `zone`, or `None` when that would lie beyond the range of
    /// instants chrono can represent (the year 262142): near the edges of
    /// time the local date, the next day or the opening may not exist.
    pub fn checked_next_open(&self, t: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        // The time of day is there even where the local date is not.
        if self.contains(t.with_timezone(&zone).time()) {
            return Some(t);
        }
        let local = local_datetime(t, zone)?;
        let mut date = local.date();
        if local.time() >= self.start {
            date = date.succ_opt()?;
        }
        // The opening on that day, or the next (a repeated hour can put
        // the day's first opening before `t`).
        for _ in 0..3 {
            if let Some(open) = opening_not_before(date.and_time(self.start), zone, t) {
                return Some(open);
            }
            date = date.succ_opt()?;
        }
        None
    }
}

/// The wall-clock time in `zone` at `t`, or `None` if that local time is
/// outside chrono's range (`DateTime::date_naive` would panic there).
fn local_datetime(t: DateTime<Utc>, zone: Tz) -> Option<NaiveDateTime> {
    let utc = t.naive_utc();
    utc.checked_add_offset(zone.offset_from_utc_datetime(&utc).fix())
}

/// The first instant a local wall-clock time maps to that is not before
/// `not_before`. In a repeated hour (autumn) either occurrence may be it; in
/// a skipped hour (spring) the opening moves to the first instant after the
/// gap.
fn opening_not_before(
    local: NaiveDateTime,
    zone: Tz,
    not_before: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut probe = local;
    // DST gaps are at most a few hours; step in minutes to land right after one.
    for _ in 0..(6 * 60) {
        match zone.from_local_datetime(&probe) {
            LocalResult::Single(t) => {
                return Some(t.with_timezone(&Utc)).filter(|t| *t >= not_before)
            }
            LocalResult::Ambiguous(first, second) => {
                return [first, second]
                    .into_iter()
                    .map(|t| t.with_timezone(&Utc))
                    .find(|t| *t >= not_before)
            }
            LocalResult::None => probe = probe.checked_add_signed(Duration::minutes(1))?,
        }
    }
    None
}

/// Scheduling settings that apply to every stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub sending_hours: SendingHours,
    /// The buyer's zone when the order names none.
    pub default_zone: Tz,
    /// Stand-in for delivery when an order has shipped but its delivery date
    /// is unknown.
    pub transit_estimate: Duration,
}

/// Which date a window was measured from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnchorUsed {
    ShippedAt,
    DeliveredAt,
    /// shipped_at plus the transit estimate, because delivered_at is unknown.
    EstimatedDelivery,
}

impl AnchorUsed {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ShippedAt => "shipped_at",
            Self::DeliveredAt => "delivered_at",
            Self::EstimatedDelivery => "estimated delivery",
        }
    }
}

/// The interval in which a stage may be sent: `[opens, closes)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub opens: DateTime<Utc>,
    pub closes: DateTime<Utc>,
    pub anchor: AnchorUsed,
}

/// Why a stage is not being sent yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitReason {
    /// The order lacks the date the window is measured from.
    NoAnchor(Anchor),
    NotOpenYet,
    OutsideSendingHours,
    /// No sending hour is left before the window closes; it will expire.
    NoSendingTimeLeft,
    /// Waiting for the named stage to be sent.
    Prerequisite(String),
    /// Backing off after a transient failure.
    Retry,
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoAnchor(Anchor::ShippedAt) => f.write_str("waiting for shipped_at"),
            Self::NoAnchor(Anchor::DeliveredAt) => {
                f.write_str("waiting for shipped_at or delivered_at")
            }
            Self::NotOpenYet => f.write_str("window not open yet"),
            Self::OutsideSendingHours => f.write_str("outside sending hours"),
            Self::NoSendingTimeLeft => {
                f.write_str("no sending hours left before the window closes")
            }
            Self::Prerequisite(stage) => write!(f, "waiting for {stage} to be sent"),
            Self::Retry => f.write_str("waiting to retry"),
        }
    }
}

/// Why a stage will never be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    Condition(SkipCondition),
    /// The prerequisite stage ended without being sent.
    PrerequisiteNotSent {
        stage: String,
        state: StageState,
    },
    /// The marketplace's policy profile does not allow this stage.
    Policy(String),
    /// The buyer's address is on the suppression list.
    Suppressed(crate::suppress::Reason),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Condition(c) => f.write_str(c.as_str()),
            Self::PrerequisiteNotSent { stage, state } => {
                write!(f, "{stage} was not sent ({state})")
            }
            Self::Policy(profile) => write!(f, "disabled by the {profile} policy"),
            Self::Suppressed(reason) => write!(f, "suppressed: {reason}"),
        }
    }
}

/// What the scheduler decided for one stage at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Render, lint and send it now.
    Due,
    /// Not yet. Ask again at `until`; `None` means only new order data can
    /// change the answer.
    Wait {
        until: Option<DateTime<Utc>>,
        reason: WaitReason,
    },
    Skip(SkipReason),
    /// The window closed unsent.
    Expire,
}

/// A decision together with the window it was made against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub decision: Decision,
    pub window: Option<Window>,
}

/// The stage's window for this order, if its anchor date is known.
pub fn window(order: &Order, stage: &StageSpec, rules: &Rules) -> Option<Window> {
    let (anchor_time, anchor) = match stage.anchor {
        Anchor::ShippedAt => (order.shipped_at?, AnchorUsed::ShippedAt),
        Anchor::DeliveredAt => match (order.delivered_at, order.shipped_at) {
            (Some(delivered), _) => (delivered, AnchorUsed::DeliveredAt),
            (None, Some(shipped)) => (
                shipped.checked_add_signed(rules.transit_estimate)?,
                AnchorUsed::EstimatedDelivery,
            ),
            (None, None) => return None,
        },
    };
    // Dates at the edge of the representable range have no window rather
    // than crashing the scheduler.
    Some(Window {
        opens: anchor_time.checked_add_signed(stage.opens_after)?,
        closes: anchor_time.checked_add_signed(stage.closes_after)?,
        anchor,
    })
}

/// The buyer's time zone for sending hours.
pub fn buyer_zone(order: &Order, rules: &Rules) -> Tz {
    order.time_zone.unwrap_or(rules.default_zone)
}

/// Decides what to do with one not-yet-ended stage at `now`.
///
/// `prerequisite` is the state of the stage named in `stage.after`, if any;
/// `not_before` is the earliest next attempt after a transient failure.
pub fn evaluate(
    order: &Order,
    stage: &StageSpec,
    prerequisite: Option<StageState>,
    not_before: Option<DateTime<Utc>>,
    rules: &Rules,
    now: DateTime<Utc>,
) -> Evaluation {
    let window = window(order, stage, rules);
    let decision = decide(order, stage, prerequisite, not_before, rules, window, now);
    Evaluation { decision, window }
}

fn decide(
    order: &Order,
    stage: &StageSpec,
    prerequisite: Option<StageState>,
    not_before: Option<DateTime<Utc>>,
    rules: &Rules,
    window: Option<Window>,
    now: DateTime<Utc>,
) -> Decision {
    if let Some(condition) = stage.skip_when.iter().find(|c| c.applies_to(order)) {
        return Decision::Skip(SkipReason::Condition(*condition));
    }
    let Some(window) = window else {
        return Decision::Wait {
            until: None,
            reason: WaitReason::NoAnchor(stage.anchor),
        };
    };
    if now >= window.closes {
        return Decision::Expire;
    }
    if let (Some(name), Some(state)) = (&stage.after, prerequisite) {
        if state.is_terminal() && state != StageState::Sent {
            return Decision::Skip(SkipReason::PrerequisiteNotSent {
                stage: name.clone(),
                state,
            });
        }
        if state != StageState::Sent {
            return Decision::Wait {
                until: Some(window.closes),
                reason: WaitReason::Prerequisite(name.clone()),
            };
        }
    }
    let mut earliest = now.max(window.opens);
    let mut reason = if window.opens > now {
        WaitReason::NotOpenYet
    } else {
        WaitReason::OutsideSendingHours
    };
    if let Some(retry_at) = not_before.filter(|t| *t > earliest) {
        earliest = retry_at;
        reason = WaitReason::Retry;
    }
    // No opening before the end of time is no opening before the window
    // closes: wait for the close, then expire.
    let send_at = rules
        .sending_hours
        .checked_next_open(earliest, buyer_zone(order, rules))
        .filter(|t| *t < window.closes);
    let Some(send_at) = send_at else {
        return Decision::Wait {
            until: Some(window.closes),
            reason: WaitReason::NoSendingTimeLeft,
        };
    };
    if send_at > now {
        Decision::Wait {
            until: Some(send_at),
            reason,
        }
    } else {
        Decision::Due
    }
}

/// How transient delivery failures are retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based): doubling
    /// from `first_delay` up to `max_delay`, stretched by `jitter` (a
    /// fraction in 0..1, up to 20% extra) so that messages held back by one
    /// outage do not all return to the server at the same second.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        let base = self
            .first_delay
            .checked_mul(2i32.saturating_pow(doublings))
            .unwrap_or(self.max_delay)
            .min(self.max_delay);
        let extra = (base.num_milliseconds() as f64 * 0.2 * jitter.clamp(0.0, 1.0)) as i64;
        base.checked_add(&Duration::milliseconds(extra))
            .unwrap_or(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::sample_order;

    /// +262142-12-31T23:59:59Z, the last second chrono can represent.
    fn last_second() -> DateTime<Utc> {
        DateTime::<Utc>::MAX_UTC - Duration::nanoseconds(999_999_999)
    }

    fn hours(start: u32, end: u32) -> SendingHours {
        SendingHours {
            start: NaiveTime::from_hms_opt(start, 0, 0).unwrap(),
            end: NaiveTime::from_hms_opt(end, 0, 0).unwrap(),
        }
    }

    fn rules(zone: Tz, sending_hours: SendingHours) -> Rules {
        Rules {
            sending_hours,
            default_zone: zone,
            transit_estimate: Duration::days(3),
        }
    }

    fn stage(opens: Duration, closes: Duration) -> StageSpec {
        StageSpec {
            name: "edge".into(),
            anchor: Anchor::DeliveredAt,
            opens_after: opens,
            closes_after: closes,
            after: None,
            skip_when: Vec::new(),
            on_unknown: OnUnknown::Hold,
            transactional: false,
        }
    }

    fn delivered(at: DateTime<Utc>, zone: Tz) -> Order {
        let mut order = sample_order("amazon");
        order.time_zone = Some(zone);
        order.shipped_at = Some(at);
        order.delivered_at = Some(at);
        order
    }

    #[test]
    fn no_opening_is_found_past_the_end_of_time() {
        let kiritimati: Tz = "Pacific/Kiritimati".parse().unwrap();
        let end = last_second();
        // Local time there (UTC+14) is already past the last representable
        // date: 13:59:59 on the day after it. Inside the hours is fine, an
        // opening later that day does not exist.
        assert_eq!(hours(9, 17).checked_next_open(end, kiritimati), Some(end));
        assert_eq!(hours(18, 20).checked_next_open(end, kiritimati), None);
        assert_eq!(hours(18, 20).next_open(end, kiritimati), end);
        // In UTC, 23:59:59 on the last day; the next opening would be the
        // day after it.
        assert_eq!(hours(9, 17).checked_next_open(end, chrono_tz::UTC), None);
        let morning = end - Duration::hours(20);
        assert_eq!(
            hours(9, 17).checked_next_open(morning, chrono_tz::UTC),
            Some(end - Duration::hours(15) + Duration::seconds(1))
        );
        // All day is open at any instant.
        assert_eq!(hours(0, 0).checked_next_open(end, kiritimati), Some(end));
    }

    #[test]
    fn a_window_at_the_end_of_time_waits_for_its_close_then_expires() {
        let end = last_second();
        for zone in [
            "Pacific/Kiritimati",
            "Pacific/Pago_Pago",
            "UTC",
            "Australia/Lord_Howe",
        ] {
            let zone: Tz = zone.parse().unwrap();
            let order = delivered(end - Duration::days(2), zone);
            let spec = stage(Duration::days(1), Duration::days(2) - Duration::seconds(1));
            let rules = rules(zone, hours(9, 17));
            for now in [
                end - Duration::days(2),
                end - Duration::days(1),
                end - Duration::hours(2),
                end - Duration::seconds(1),
                end,
            ] {
                let eval = evaluate(&order, &spec, None, None, &rules, now);
                let window = eval.window.expect("the window fits");
                match eval.decision {
                    Decision::Due => assert!(window.opens <= now && now < window.closes),
                    Decision::Wait { until: Some(t), .. } => {
                        assert!(t > now && t <= window.closes, "{zone} at {now}: {t}")
                    }
                    Decision::Expire => assert!(now >= window.closes),
                    other => panic!("{zone} at {now}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn a_window_past_the_end_of_time_is_no_window() {
        let end = last_second();
        let order = delivered(end - Duration::days(1), chrono_tz::UTC);
        let spec = stage(Duration::zero(), Duration::days(400));
        let rules = rules(chrono_tz::UTC, hours(9, 17));
        assert_eq!(window(&order, &spec, &rules), None);
        let eval = evaluate(&order, &spec, None, None, &rules, end);
        assert!(matches!(eval.decision, Decision::Wait { until: None, .. }));
        // The estimated delivery (shipped + transit) past the end: the same.
        let mut order = order;
        order.delivered_at = None;
        order.shipped_at = Some(end - Duration::days(1));
        assert_eq!(window(&order, &spec, &rules), None);
    }

    #[test]
    fn a_huge_retry_delay_does_not_overflow() {
        let policy = RetryPolicy {
            max_attempts: 3,
            first_delay: Duration::MAX,
            max_delay: Duration::MAX,
        };
        assert_eq!(policy.delay(5, 1.0), Duration::MAX);
    }
}

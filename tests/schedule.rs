//! The pure scheduling rules through the public API: windows, sending hours
//! in the buyer's zone (DST included), unknown delivery dates, skip
//! conditions, prerequisites and retries. "Now" is always passed explicitly
//! and every expected instant is written out in UTC, with the buyer's local
//! time in a comment.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use followupd::order::{sample_order, Order, OrderStatus};
use followupd::schedule::{
    evaluate, window, Anchor, AnchorUsed, Decision, OnUnknown, Rules, SendingHours, SkipCondition,
    SkipReason, StageSpec, StageState, WaitReason,
};

// ---------------------------------------------------------------- helpers

const BERLIN: Tz = chrono_tz::Europe::Berlin;
const NEW_YORK: Tz = chrono_tz::America::New_York;
const LOS_ANGELES: Tz = chrono_tz::America::Los_Angeles;
const AUCKLAND: Tz = chrono_tz::Pacific::Auckland;
const TOKYO: Tz = chrono_tz::Asia::Tokyo;
const UTC_ZONE: Tz = chrono_tz::UTC;

const ALL_CONDITIONS: [SkipCondition; 6] = [
    SkipCondition::Returned,
    SkipCondition::PartiallyRefunded,
    SkipCondition::Refunded,
    SkipCondition::Cancelled,
    SkipCondition::Complaint,
    SkipCondition::OptedOut,
];

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
        .single()
        .expect("valid UTC instant")
}

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).expect("valid time of day")
}

fn hms(h: u32, m: u32, s: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, s).expect("valid time of day")
}

fn hours(start: NaiveTime, end: NaiveTime) -> SendingHours {
    SendingHours { start, end }
}

/// The default sending hours: 09:00-20:00 in the buyer's zone.
fn default_hours() -> SendingHours {
    hours(hm(9, 0), hm(20, 0))
}

/// Default hours, the given default zone, a 5-day transit estimate.
fn rules_in(default_zone: Tz) -> Rules {
    Rules {
        sending_hours: default_hours(),
        default_zone,
        transit_estimate: Duration::days(5),
    }
}

fn rules_with_hours(default_zone: Tz, sending_hours: SendingHours) -> Rules {
    Rules {
        sending_hours,
        ..rules_in(default_zone)
    }
}

fn stage(name: &str, anchor: Anchor, opens_after: Duration, closes_after: Duration) -> StageSpec {
    StageSpec {
        name: name.to_string(),
        anchor,
        opens_after,
        closes_after,
        after: None,
        skip_when: Vec::new(),
        on_unknown: OnUnknown::Hold,
        transactional: false,
    }
}

/// follow_up: 3 to 10 days after delivery.
fn follow_up() -> StageSpec {
    stage(
        "follow_up",
        Anchor::DeliveredAt,
        Duration::days(3),
        Duration::days(10),
    )
}

/// review_request: 5 to 30 days after delivery, once follow_up was sent.
fn review_request() -> StageSpec {
    StageSpec {
        after: Some("follow_up".to_string()),
        skip_when: ALL_CONDITIONS.to_vec(),
        ..stage(
            "review_request",
            Anchor::DeliveredAt,
            Duration::days(5),
            Duration::days(30),
        )
    }
}

/// A stage open from delivery for 60 days: only the sending hours matter.
fn wide_open() -> StageSpec {
    stage(
        "wide_open",
        Anchor::DeliveredAt,
        Duration::zero(),
        Duration::days(60),
    )
}

/// A delivered order (shipped two days earlier) in the given zone.
fn delivered_order(delivered: DateTime<Utc>, zone: Option<Tz>) -> Order {
    let mut order = sample_order("testmarket");
    order.shipped_at = Some(delivered - Duration::days(2));
    order.delivered_at = Some(delivered);
    order.status = OrderStatus::Delivered;
    order.time_zone = zone;
    order.complaint = false;
    order.opted_out = false;
    order
}

/// The sample order: shipped 2026-01-05 09:00Z, delivered 2026-01-08 09:00Z.
fn sample() -> Order {
    let order = sample_order("testmarket");
    assert_eq!(order.shipped_at, Some(utc(2026, 1, 5, 9, 0, 0)));
    assert_eq!(order.delivered_at, Some(utc(2026, 1, 8, 9, 0, 0)));
    order
}

fn decide(order: &Order, stage: &StageSpec, rules: &Rules, now: DateTime<Utc>) -> Decision {
    evaluate(order, stage, None, None, rules, now).decision
}

fn decide_after(
    order: &Order,
    stage: &StageSpec,
    prerequisite: StageState,
    rules: &Rules,
    now: DateTime<Utc>,
) -> Decision {
    evaluate(order, stage, Some(prerequisite), None, rules, now).decision
}

fn decide_retry(
    order: &Order,
    stage: &StageSpec,
    not_before: DateTime<Utc>,
    rules: &Rules,
    now: DateTime<Utc>,
) -> Decision {
    evaluate(order, stage, None, Some(not_before), rules, now).decision
}

fn wait(until: DateTime<Utc>, reason: WaitReason) -> Decision {
    Decision::Wait {
        until: Some(until),
        reason,
    }
}

fn outside(until: DateTime<Utc>) -> Decision {
    wait(until, WaitReason::OutsideSendingHours)
}

// ------------------------------------------------------------------ windows

#[test]
fn window_is_measured_from_delivered_at() {
    let order = sample();
    let w = window(&order, &follow_up(), &rules_in(UTC_ZONE)).expect("window");
    assert_eq!(w.opens, utc(2026, 1, 11, 9, 0, 0));
    assert_eq!(w.closes, utc(2026, 1, 18, 9, 0, 0));
    assert_eq!(w.anchor, AnchorUsed::DeliveredAt);
}

#[test]
fn window_is_measured_from_shipped_at_even_when_delivery_is_known() {
    let order = sample();
    let notice = stage(
        "shipment_notice",
        Anchor::ShippedAt,
        Duration::hours(1),
        Duration::days(2),
    );
    let w = window(&order, &notice, &rules_in(UTC_ZONE)).expect("window");
    assert_eq!(w.opens, utc(2026, 1, 5, 10, 0, 0));
    assert_eq!(w.closes, utc(2026, 1, 7, 9, 0, 0));
    assert_eq!(w.anchor, AnchorUsed::ShippedAt);
}

#[test]
fn evaluate_reports_the_window_it_decided_against() {
    let order = sample();
    let rules = rules_in(UTC_ZONE);
    let evaluation = evaluate(
        &order,
        &follow_up(),
        None,
        None,
        &rules,
        utc(2026, 1, 12, 12, 0, 0),
    );
    assert_eq!(evaluation.decision, Decision::Due);
    let w = evaluation.window.expect("window");
    assert_eq!(w.opens, utc(2026, 1, 11, 9, 0, 0));
    assert_eq!(w.closes, utc(2026, 1, 18, 9, 0, 0));
    assert_eq!(w.anchor, AnchorUsed::DeliveredAt);
}

/// follow_up opening at 10:00Z and closing at 10:00Z four days later, both
/// inside 09:00-20:00 UTC.
fn edge_stage() -> StageSpec {
    stage(
        "follow_up",
        Anchor::DeliveredAt,
        Duration::days(3) + Duration::hours(1),
        Duration::days(7) + Duration::hours(1),
    )
}

#[test]
fn one_second_before_the_window_opens_waits_until_it_opens() {
    let order = sample();
    let rules = rules_in(UTC_ZONE);
    assert_eq!(
        decide(&order, &edge_stage(), &rules, utc(2026, 1, 11, 9, 59, 59)),
        wait(utc(2026, 1, 11, 10, 0, 0), WaitReason::NotOpenYet)
    );
}

#[test]
fn well_before_the_window_opens_waits_until_it_opens() {
    let order = sample();
    let rules = rules_in(UTC_ZONE);
    // Days early, at night: the answer is still the opening instant.
    assert_eq!(
        decide(&order, &edge_stage(), &rules, utc(2026, 1, 8, 23, 0, 0)),
        wait(utc(2026, 1, 11, 10, 0, 0), WaitReason::NotOpenYet)
    );
}

#[test]
fn exactly_at_opening_is_due() {
    let order = sample();
    let rules = rules_in(UTC_ZONE);
    assert_eq!(
        decide(&order, &edge_stage(), &rules, utc(2026, 1, 11, 10, 0, 0)),
        Decision::Due
    );
}

#[test]
fn one_second_before_closing_is_due() {
    let order = sample();
    let rules = rules_in(UTC_ZONE);
    assert_eq!(
        decide(&order, &edge_stage(), &rules, utc(2026, 1, 15, 9, 59, 59)),
        Decision::Due
    );
}

#[test]
fn exactly_at_closing_expires() {
    let order = sample();
    let rules = rules_in(UTC_ZONE);
    assert_eq!(
        decide(&order, &edge_stage(), &rules, utc(2026, 1, 15, 10, 0, 0)),
        Decision::Expire
    );
    assert_eq!(
        decide(&order, &edge_stage(), &rules, utc(2026, 3, 1, 12, 0, 0)),
        Decision::Expire
    );
}

#[test]
fn window_opening_at_night_waits_for_the_sending_hours() {
    // Opens 2026-01-11 06:00Z, closes 2026-01-15 09:00Z; buyer in UTC.
    let order = sample();
    let rules = rules_in(UTC_ZONE);
    let night = stage(
        "follow_up",
        Anchor::DeliveredAt,
        Duration::days(2) + Duration::hours(21),
        Duration::days(7),
    );
    // Not open yet: the answer skips straight to the first sending hour.
    assert_eq!(
        decide(&order, &night, &rules, utc(2026, 1, 11, 5, 59, 59)),
        wait(utc(2026, 1, 11, 9, 0, 0), WaitReason::NotOpenYet)
    );
    // Open, but outside the sending hours.
    assert_eq!(
        decide(&order, &night, &rules, utc(2026, 1, 11, 6, 0, 0)),
        outside(utc(2026, 1, 11, 9, 0, 0))
    );
    assert_eq!(
        decide(&order, &night, &rules, utc(2026, 1, 11, 9, 0, 0)),
        Decision::Due
    );
}

#[test]
fn window_closing_exactly_when_the_hours_open_has_no_sending_time_left() {
    // Closes 2026-01-15 09:00Z, the very instant the sending hours open.
    let order = sample();
    let rules = rules_in(UTC_ZONE);
    let night = stage(
        "follow_up",
        Anchor::DeliveredAt,
        Duration::days(2) + Duration::hours(21),
        Duration::days(7),
    );
    let closes = utc(2026, 1, 15, 9, 0, 0);
    assert_eq!(
        decide(&order, &night, &rules, utc(2026, 1, 14, 19, 59, 59)),
        Decision::Due
    );
    assert_eq!(
        decide(&order, &night, &rules, utc(2026, 1, 14, 20, 0, 0)),
        wait(closes, WaitReason::NoSendingTimeLeft)
    );
    assert_eq!(
        decide(&order, &night, &rules, utc(2026, 1, 15, 8, 59, 59)),
        wait(closes, WaitReason::NoSendingTimeLeft)
    );
    assert_eq!(decide(&order, &night, &rules, closes), Decision::Expire);
}

#[test]
fn window_closing_one_second_after_the_hours_open_still_has_that_second() {
    let order = sample();
    let rules = rules_in(UTC_ZONE);
    let tight = stage(
        "follow_up",
        Anchor::DeliveredAt,
        Duration::days(2) + Duration::hours(21),
        Duration::days(7) + Duration::seconds(1),
    );
    assert_eq!(
        decide(&order, &tight, &rules, utc(2026, 1, 14, 20, 0, 0)),
        outside(utc(2026, 1, 15, 9, 0, 0))
    );
    assert_eq!(
        decide(&order, &tight, &rules, utc(2026, 1, 15, 9, 0, 0)),
        Decision::Due
    );
    assert_eq!(
        decide(&order, &tight, &rules, utc(2026, 1, 15, 9, 0, 1)),
        Decision::Expire
    );
}

// ------------------------------------------------------------ sending hours

#[test]
fn sending_hours_contain_start_but_not_end() {
    let h = default_hours();
    assert!(!h.contains(hms(8, 59, 59)));
    assert!(h.contains(hm(9, 0)));
    assert!(h.contains(hms(19, 59, 59)));
    assert!(!h.contains(hm(20, 0)));
    assert!(!h.contains(hm(0, 0)));
    assert!(!h.contains(hms(23, 59, 59)));
}

#[test]
fn before_nine_local_waits_until_nine_that_day() {
    // Berlin in January is UTC+1.
    let order = delivered_order(utc(2026, 1, 8, 9, 0, 0), Some(BERLIN));
    let rules = rules_in(UTC_ZONE);
    // 08:59:59 CET -> 09:00 CET.
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 1, 12, 7, 59, 59)),
        outside(utc(2026, 1, 12, 8, 0, 0))
    );
    // 00:30 CET on the 13th (still the 12th in UTC) -> 09:00 CET on the 13th.
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 1, 12, 23, 30, 0)),
        outside(utc(2026, 1, 13, 8, 0, 0))
    );
    // 00:00 CET exactly.
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 1, 12, 23, 0, 0)),
        outside(utc(2026, 1, 13, 8, 0, 0))
    );
}

#[test]
fn nine_local_is_due_and_so_is_one_second_before_twenty() {
    let order = delivered_order(utc(2026, 1, 8, 9, 0, 0), Some(BERLIN));
    let rules = rules_in(UTC_ZONE);
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 1, 12, 8, 0, 0)),
        Decision::Due
    );
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 1, 12, 18, 59, 59)),
        Decision::Due
    );
}

#[test]
fn twenty_local_waits_until_nine_the_next_day() {
    let order = delivered_order(utc(2026, 1, 8, 9, 0, 0), Some(BERLIN));
    let rules = rules_in(UTC_ZONE);
    // 20:00 CET -> 09:00 CET next day.
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 1, 12, 19, 0, 0)),
        outside(utc(2026, 1, 13, 8, 0, 0))
    );
    // 23:59:59 CET -> 09:00 CET next day.
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 1, 12, 22, 59, 59)),
        outside(utc(2026, 1, 13, 8, 0, 0))
    );
}

#[test]
fn sending_hours_across_midnight_contain_both_sides() {
    let h = hours(hm(22, 0), hm(6, 0));
    assert!(!h.contains(hms(21, 59, 59)));
    assert!(h.contains(hm(22, 0)));
    assert!(h.contains(hms(23, 59, 59)));
    assert!(h.contains(hm(0, 0)));
    assert!(h.contains(hms(5, 59, 59)));
    assert!(!h.contains(hm(6, 0)));
    assert!(!h.contains(hm(12, 0)));
}

#[test]
fn sending_hours_across_midnight_inside() {
    let order = delivered_order(utc(2026, 1, 8, 9, 0, 0), Some(BERLIN));
    let rules = rules_with_hours(UTC_ZONE, hours(hm(22, 0), hm(6, 0)));
    for now in [
        utc(2026, 1, 12, 21, 0, 0),  // 22:00 CET
        utc(2026, 1, 12, 22, 0, 0),  // 23:00 CET
        utc(2026, 1, 12, 23, 0, 0),  // 00:00 CET on the 13th
        utc(2026, 1, 13, 4, 59, 59), // 05:59:59 CET
    ] {
        assert_eq!(
            decide(&order, &wide_open(), &rules, now),
            Decision::Due,
            "at {now}"
        );
    }
}

#[test]
fn sending_hours_across_midnight_outside() {
    let order = delivered_order(utc(2026, 1, 8, 9, 0, 0), Some(BERLIN));
    let rules = rules_with_hours(UTC_ZONE, hours(hm(22, 0), hm(6, 0)));
    // 06:00 CET -> 22:00 CET the same day.
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 1, 13, 5, 0, 0)),
        outside(utc(2026, 1, 13, 21, 0, 0))
    );
    // 13:00 CET -> 22:00 CET.
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 1, 13, 12, 0, 0)),
        outside(utc(2026, 1, 13, 21, 0, 0))
    );
    // 21:59:59 CET -> one second later.
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 1, 13, 20, 59, 59)),
        outside(utc(2026, 1, 13, 21, 0, 0))
    );
}

#[test]
fn equal_start_and_end_means_all_day() {
    for h in [hours(hm(0, 0), hm(0, 0)), hours(hm(9, 0), hm(9, 0))] {
        for t in [
            hm(0, 0),
            hms(3, 17, 0),
            hms(8, 59, 59),
            hm(9, 0),
            hm(20, 0),
            hms(23, 59, 59),
        ] {
            assert!(h.contains(t), "{h:?} should contain {t}");
        }
        let order = delivered_order(utc(2026, 1, 8, 9, 0, 0), Some(BERLIN));
        let rules = rules_with_hours(UTC_ZONE, h);
        // 03:17 CET, 08:59:59 CET, 23:59:59 CET.
        for now in [
            utc(2026, 1, 12, 2, 17, 0),
            utc(2026, 1, 12, 7, 59, 59),
            utc(2026, 1, 12, 22, 59, 59),
        ] {
            assert_eq!(
                decide(&order, &wide_open(), &rules, now),
                Decision::Due,
                "{h:?} at {now}"
            );
        }
    }
}

#[test]
fn all_day_hours_make_a_night_window_sendable() {
    // [23:00, 00:00) CET; with all-day hours it is due at once.
    let order = delivered_order(utc(2026, 1, 10, 22, 0, 0), Some(BERLIN));
    let rules = rules_with_hours(UTC_ZONE, hours(hm(0, 0), hm(0, 0)));
    let one_hour = stage(
        "night",
        Anchor::DeliveredAt,
        Duration::zero(),
        Duration::hours(1),
    );
    assert_eq!(
        decide(&order, &one_hour, &rules, utc(2026, 1, 10, 22, 0, 0)),
        Decision::Due
    );
    assert_eq!(
        decide(&order, &one_hour, &rules, utc(2026, 1, 10, 22, 59, 59)),
        Decision::Due
    );
    assert_eq!(
        decide(&order, &one_hour, &rules, utc(2026, 1, 10, 23, 0, 0)),
        Decision::Expire
    );
}

#[test]
fn next_open_returns_the_instant_itself_inside_the_hours() {
    let h = default_hours();
    let t = utc(2026, 1, 12, 8, 0, 0); // 09:00 CET
    assert_eq!(h.next_open(t, BERLIN), t);
    let t = utc(2026, 1, 12, 18, 59, 59); // 19:59:59 CET
    assert_eq!(h.next_open(t, BERLIN), t);
    // 20:00 CET -> 09:00 CET next day.
    assert_eq!(
        h.next_open(utc(2026, 1, 12, 19, 0, 0), BERLIN),
        utc(2026, 1, 13, 8, 0, 0)
    );
}

// ---------------------------------------------------------------------- DST

#[test]
fn berlin_spring_forward_start_in_the_gap_opens_right_after_the_gap() {
    // 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00Z). 02:30 never exists,
    // so the first instant after the gap, 03:00 CEST = 01:00Z, opens.
    let order = delivered_order(utc(2026, 3, 1, 0, 0, 0), Some(BERLIN));
    let rules = rules_with_hours(UTC_ZONE, hours(hm(2, 30), hm(20, 0)));
    // 20:00 CET on the 28th.
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 3, 28, 19, 0, 0)),
        outside(utc(2026, 3, 29, 1, 0, 0))
    );
    // 01:59:59 CET, the last second before the gap.
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 3, 29, 0, 59, 59)),
        outside(utc(2026, 3, 29, 1, 0, 0))
    );
    // 03:00 CEST.
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 3, 29, 1, 0, 0)),
        Decision::Due
    );
    // Next evening, 20:00 CEST -> 02:30 CEST on the 30th = 00:30Z.
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 3, 29, 18, 0, 0)),
        outside(utc(2026, 3, 30, 0, 30, 0))
    );
    assert_eq!(
        rules
            .sending_hours
            .next_open(utc(2026, 3, 28, 19, 0, 0), BERLIN),
        utc(2026, 3, 29, 1, 0, 0)
    );
}

#[test]
fn berlin_spring_forward_shifts_nine_local_by_one_hour_in_utc() {
    let order = delivered_order(utc(2026, 3, 1, 0, 0, 0), Some(BERLIN));
    let rules = rules_in(UTC_ZONE);
    // 20:00 CET on the 27th -> 09:00 CET on the 28th = 08:00Z.
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 3, 27, 19, 0, 0)),
        outside(utc(2026, 3, 28, 8, 0, 0))
    );
    // 20:00 CET on the 28th -> 09:00 CEST on the 29th = 07:00Z.
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 3, 28, 19, 0, 0)),
        outside(utc(2026, 3, 29, 7, 0, 0))
    );
    // 20:00 CEST on the 29th = 18:00Z.
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 3, 29, 17, 59, 59)),
        Decision::Due
    );
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 3, 29, 18, 0, 0)),
        outside(utc(2026, 3, 30, 7, 0, 0))
    );
}

#[test]
fn berlin_fall_back_repeated_hour_takes_the_first_occurrence() {
    // 2026-10-25: 03:00 CEST falls back to 02:00 CET (at 01:00Z), so 02:30
    // local happens at 00:30Z (CEST) and again at 01:30Z (CET).
    let order = delivered_order(utc(2026, 10, 1, 0, 0, 0), Some(BERLIN));
    let rules = rules_with_hours(UTC_ZONE, hours(hm(2, 30), hm(20, 0)));
    // 20:00 CEST on the 24th -> first 02:30.
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 10, 24, 18, 0, 0)),
        outside(utc(2026, 10, 25, 0, 30, 0))
    );
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 10, 25, 0, 29, 59)),
        outside(utc(2026, 10, 25, 0, 30, 0))
    );
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 10, 25, 0, 30, 0)),
        Decision::Due
    );
    assert_eq!(
        rules
            .sending_hours
            .next_open(utc(2026, 10, 24, 18, 0, 0), BERLIN),
        utc(2026, 10, 25, 0, 30, 0)
    );
}

#[test]
fn berlin_fall_back_second_pass_through_the_repeated_hour_is_outside_the_hours() {
    // At 01:00Z the clock reads 02:00 CET again, which is before the 02:30
    // start: not a sending time. The next one is 02:30 CET = 01:30Z; the
    // answer must never be an instant before `now`.
    let order = delivered_order(utc(2026, 10, 1, 0, 0, 0), Some(BERLIN));
    let rules = rules_with_hours(UTC_ZONE, hours(hm(2, 30), hm(20, 0)));
    let now = utc(2026, 10, 25, 1, 0, 0);
    assert_eq!(
        decide(&order, &wide_open(), &rules, now),
        outside(utc(2026, 10, 25, 1, 30, 0))
    );
    let next = rules.sending_hours.next_open(now, BERLIN);
    assert!(next >= now, "next_open({now}) = {next}, before the instant");
    assert_eq!(next, utc(2026, 10, 25, 1, 30, 0));
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 10, 25, 1, 30, 0)),
        Decision::Due
    );
}

#[test]
fn berlin_fall_back_shifts_nine_local_by_one_hour_in_utc() {
    let order = delivered_order(utc(2026, 10, 1, 0, 0, 0), Some(BERLIN));
    let rules = rules_in(UTC_ZONE);
    // 20:00 CEST on the 24th -> 09:00 CET on the 25th = 08:00Z.
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 10, 24, 18, 0, 0)),
        outside(utc(2026, 10, 25, 8, 0, 0))
    );
    // 20:00 CET on the 25th = 19:00Z -> 09:00 CET on the 26th.
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 10, 25, 18, 59, 59)),
        Decision::Due
    );
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 10, 25, 19, 0, 0)),
        outside(utc(2026, 10, 26, 8, 0, 0))
    );
}

#[test]
fn new_york_spring_forward() {
    // 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00Z).
    let order = delivered_order(utc(2026, 3, 1, 0, 0, 0), Some(NEW_YORK));
    // Start in the gap: 01:00 EST -> 03:00 EDT = 07:00Z.
    let gap = rules_with_hours(UTC_ZONE, hours(hm(2, 30), hm(20, 0)));
    assert_eq!(
        decide(&order, &wide_open(), &gap, utc(2026, 3, 8, 6, 0, 0)),
        outside(utc(2026, 3, 8, 7, 0, 0))
    );
    assert_eq!(
        decide(&order, &wide_open(), &gap, utc(2026, 3, 8, 7, 0, 0)),
        Decision::Due
    );
    // Default hours: 20:00 EST on the 6th -> 09:00 EST = 14:00Z...
    let rules = rules_in(UTC_ZONE);
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 3, 7, 1, 0, 0)),
        outside(utc(2026, 3, 7, 14, 0, 0))
    );
    // ...but 20:00 EST on the 7th -> 09:00 EDT on the 8th = 13:00Z.
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 3, 8, 1, 0, 0)),
        outside(utc(2026, 3, 8, 13, 0, 0))
    );
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 3, 8, 13, 0, 0)),
        Decision::Due
    );
}

#[test]
fn new_york_fall_back() {
    // 2026-11-01: 02:00 EDT falls back to 01:00 EST (06:00Z); 01:30 local
    // happens at 05:30Z (EDT) and again at 06:30Z (EST).
    let order = delivered_order(utc(2026, 10, 20, 0, 0, 0), Some(NEW_YORK));
    let repeated = rules_with_hours(UTC_ZONE, hours(hm(1, 30), hm(20, 0)));
    // 00:00 EDT -> the first 01:30, 05:30Z.
    assert_eq!(
        decide(&order, &wide_open(), &repeated, utc(2026, 11, 1, 4, 0, 0)),
        outside(utc(2026, 11, 1, 5, 30, 0))
    );
    assert_eq!(
        decide(&order, &wide_open(), &repeated, utc(2026, 11, 1, 5, 30, 0)),
        Decision::Due
    );
    // Default hours: 20:00 EDT on Oct 31 -> 09:00 EST = 14:00Z.
    let rules = rules_in(UTC_ZONE);
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 11, 1, 0, 0, 0)),
        outside(utc(2026, 11, 1, 14, 0, 0))
    );
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 11, 1, 13, 59, 59)),
        outside(utc(2026, 11, 1, 14, 0, 0))
    );
}

#[test]
fn new_york_fall_back_second_pass_through_the_repeated_hour_is_outside_the_hours() {
    // 06:00Z is 01:00 EST, the second 01:00: before the 01:30 start.
    let order = delivered_order(utc(2026, 10, 20, 0, 0, 0), Some(NEW_YORK));
    let rules = rules_with_hours(UTC_ZONE, hours(hm(1, 30), hm(20, 0)));
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 11, 1, 6, 0, 0)),
        outside(utc(2026, 11, 1, 6, 30, 0))
    );
}

#[test]
fn auckland_autumn_fall_back() {
    // 2026-04-05: 03:00 NZDT falls back to 02:00 NZST (at 14:00Z on the 4th).
    let order = delivered_order(utc(2026, 3, 20, 0, 0, 0), Some(AUCKLAND));
    let rules = rules_in(UTC_ZONE);
    // 20:00 NZDT on the 3rd = 07:00Z -> 09:00 NZDT on the 4th = 20:00Z on the 3rd.
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 4, 3, 7, 0, 0)),
        outside(utc(2026, 4, 3, 20, 0, 0))
    );
    // 20:00 NZDT on the 4th = 07:00Z -> 09:00 NZST on the 5th = 21:00Z on the 4th.
    assert_eq!(
        decide(&order, &wide_open(), &rules, utc(2026, 4, 4, 7, 0, 0)),
        outside(utc(2026, 4, 4, 21, 0, 0))
    );
}

// --------------------------------------------------------------- time zones

#[test]
fn auckland_buyer_east_of_utc() {
    // NZDT is UTC+13. follow_up opens 2026-01-11 09:00Z = 22:00 NZDT.
    let mut order = sample();
    order.time_zone = Some(AUCKLAND);
    let rules = rules_in(UTC_ZONE);
    // The next 09:00 NZDT is on the 12th, which is still the 11th in UTC.
    assert_eq!(
        decide(&order, &follow_up(), &rules, utc(2026, 1, 11, 8, 59, 59)),
        wait(utc(2026, 1, 11, 20, 0, 0), WaitReason::NotOpenYet)
    );
    assert_eq!(
        decide(&order, &follow_up(), &rules, utc(2026, 1, 11, 9, 0, 0)),
        outside(utc(2026, 1, 11, 20, 0, 0))
    );
    assert_eq!(
        decide(&order, &follow_up(), &rules, utc(2026, 1, 11, 20, 0, 0)),
        Decision::Due
    );
    // 19:59:59 NZDT on the 12th is due; 20:00 NZDT waits for the 13th.
    assert_eq!(
        decide(&order, &follow_up(), &rules, utc(2026, 1, 12, 6, 59, 59)),
        Decision::Due
    );
    assert_eq!(
        decide(&order, &follow_up(), &rules, utc(2026, 1, 12, 7, 0, 0)),
        outside(utc(2026, 1, 12, 20, 0, 0))
    );
}

#[test]
fn los_angeles_buyer_west_of_utc() {
    // PST is UTC-8. follow_up opens 2026-01-11 09:00Z = 01:00 PST.
    let mut order = sample();
    order.time_zone = Some(LOS_ANGELES);
    let rules = rules_in(UTC_ZONE);
    assert_eq!(
        decide(&order, &follow_up(), &rules, utc(2026, 1, 11, 9, 0, 0)),
        outside(utc(2026, 1, 11, 17, 0, 0))
    );
    assert_eq!(
        decide(&order, &follow_up(), &rules, utc(2026, 1, 11, 17, 0, 0)),
        Decision::Due
    );
    // 19:59:59 PST on the 11th is already the 12th in UTC.
    assert_eq!(
        decide(&order, &follow_up(), &rules, utc(2026, 1, 12, 3, 59, 59)),
        Decision::Due
    );
    assert_eq!(
        decide(&order, &follow_up(), &rules, utc(2026, 1, 12, 4, 0, 0)),
        outside(utc(2026, 1, 12, 17, 0, 0))
    );
}

#[test]
fn tokyo_buyer() {
    // JST is UTC+9. follow_up opens 2026-01-11 09:00Z = 18:00 JST.
    let mut order = sample();
    order.time_zone = Some(TOKYO);
    let rules = rules_in(UTC_ZONE);
    assert_eq!(
        decide(&order, &follow_up(), &rules, utc(2026, 1, 11, 9, 0, 0)),
        Decision::Due
    );
    // 20:00 JST -> 09:00 JST on the 12th = 00:00Z on the 12th.
    assert_eq!(
        decide(&order, &follow_up(), &rules, utc(2026, 1, 11, 11, 0, 0)),
        outside(utc(2026, 1, 12, 0, 0, 0))
    );
    assert_eq!(
        decide(&order, &follow_up(), &rules, utc(2026, 1, 11, 23, 59, 59)),
        outside(utc(2026, 1, 12, 0, 0, 0))
    );
}

#[test]
fn order_without_a_zone_uses_the_default_zone() {
    let order = sample();
    assert_eq!(order.time_zone, None);
    // 11:00Z is 20:00 JST: outside with a Tokyo default...
    assert_eq!(
        decide(
            &order,
            &follow_up(),
            &rules_in(TOKYO),
            utc(2026, 1, 11, 11, 0, 0)
        ),
        outside(utc(2026, 1, 12, 0, 0, 0))
    );
    // ...inside with a UTC default...
    assert_eq!(
        decide(
            &order,
            &follow_up(),
            &rules_in(UTC_ZONE),
            utc(2026, 1, 11, 11, 0, 0)
        ),
        Decision::Due
    );
    // ...and 03:00 PST with a Los Angeles default.
    assert_eq!(
        decide(
            &order,
            &follow_up(),
            &rules_in(LOS_ANGELES),
            utc(2026, 1, 11, 11, 0, 0)
        ),
        outside(utc(2026, 1, 11, 17, 0, 0))
    );
}

#[test]
fn order_zone_overrides_the_default_zone() {
    let mut order = sample();
    order.time_zone = Some(LOS_ANGELES);
    // Default Tokyo, but the buyer is in Los Angeles: 11:00Z = 03:00 PST.
    assert_eq!(
        decide(
            &order,
            &follow_up(),
            &rules_in(TOKYO),
            utc(2026, 1, 11, 11, 0, 0)
        ),
        outside(utc(2026, 1, 11, 17, 0, 0))
    );
}

// ------------------------------------------------------ unknown delivery date

#[test]
fn unknown_delivery_uses_shipped_at_plus_transit_estimate() {
    let mut order = sample();
    order.delivered_at = None;
    order.status = OrderStatus::Shipped;
    let rules = rules_in(UTC_ZONE);
    // Shipped 2026-01-05 09:00Z + 5 days = 2026-01-10 09:00Z; +3d / +10d.
    let w = window(&order, &follow_up(), &rules).expect("window");
    assert_eq!(w.anchor, AnchorUsed::EstimatedDelivery);
    assert_eq!(w.opens, utc(2026, 1, 13, 9, 0, 0));
    assert_eq!(w.closes, utc(2026, 1, 20, 9, 0, 0));

    let evaluation = evaluate(
        &order,
        &follow_up(),
        None,
        None,
        &rules,
        utc(2026, 1, 13, 8, 59, 59),
    );
    assert_eq!(
        evaluation.decision,
        wait(utc(2026, 1, 13, 9, 0, 0), WaitReason::NotOpenYet)
    );
    assert_eq!(evaluation.window, Some(w));
    assert_eq!(
        decide(&order, &follow_up(), &rules, utc(2026, 1, 13, 9, 0, 0)),
        Decision::Due
    );
    assert_eq!(
        decide(&order, &follow_up(), &rules, utc(2026, 1, 20, 9, 0, 0)),
        Decision::Expire
    );
}

#[test]
fn transit_estimate_moves_the_estimated_window() {
    let mut order = sample();
    order.delivered_at = None;
    let rules = Rules {
        transit_estimate: Duration::days(2) + Duration::hours(6),
        ..rules_in(UTC_ZONE)
    };
    // 2026-01-05 09:00Z + 2d6h = 2026-01-07 15:00Z; +3d / +10d.
    let w = window(&order, &follow_up(), &rules).expect("window");
    assert_eq!(w.anchor, AnchorUsed::EstimatedDelivery);
    assert_eq!(w.opens, utc(2026, 1, 10, 15, 0, 0));
    assert_eq!(w.closes, utc(2026, 1, 17, 15, 0, 0));
}

#[test]
fn known_delivery_ignores_the_transit_estimate() {
    let order = sample();
    let rules = Rules {
        transit_estimate: Duration::days(40),
        ..rules_in(UTC_ZONE)
    };
    let w = window(&order, &follow_up(), &rules).expect("window");
    assert_eq!(w.anchor, AnchorUsed::DeliveredAt);
    assert_eq!(w.opens, utc(2026, 1, 11, 9, 0, 0));
}

#[test]
fn no_shipped_and_no_delivered_date_waits_for_new_data() {
    let mut order = sample();
    order.shipped_at = None;
    order.delivered_at = None;
    order.status = OrderStatus::Pending;
    let rules = rules_in(UTC_ZONE);
    assert_eq!(window(&order, &follow_up(), &rules), None);
    let evaluation = evaluate(
        &order,
        &follow_up(),
        None,
        None,
        &rules,
        utc(2026, 1, 12, 12, 0, 0),
    );
    assert_eq!(
        evaluation.decision,
        Decision::Wait {
            until: None,
            reason: WaitReason::NoAnchor(Anchor::DeliveredAt),
        }
    );
    assert_eq!(evaluation.window, None);
    // Still waiting, not expiring, years later.
    assert_eq!(
        decide(&order, &follow_up(), &rules, utc(2030, 1, 1, 12, 0, 0)),
        Decision::Wait {
            until: None,
            reason: WaitReason::NoAnchor(Anchor::DeliveredAt),
        }
    );
}

#[test]
fn shipped_at_stage_without_shipped_at_waits_for_it() {
    let mut order = sample();
    order.shipped_at = None;
    order.delivered_at = None;
    let notice = stage(
        "shipment_notice",
        Anchor::ShippedAt,
        Duration::zero(),
        Duration::days(2),
    );
    let rules = rules_in(UTC_ZONE);
    assert_eq!(window(&order, &notice, &rules), None);
    assert_eq!(
        decide(&order, &notice, &rules, utc(2026, 1, 12, 12, 0, 0)),
        Decision::Wait {
            until: None,
            reason: WaitReason::NoAnchor(Anchor::ShippedAt),
        }
    );
}

#[test]
fn skip_condition_applies_even_without_an_anchor() {
    let mut order = sample();
    order.shipped_at = None;
    order.delivered_at = None;
    order.status = OrderStatus::Cancelled;
    let spec = StageSpec {
        skip_when: vec![SkipCondition::Cancelled],
        ..follow_up()
    };
    assert_eq!(
        decide(
            &order,
            &spec,
            &rules_in(UTC_ZONE),
            utc(2026, 1, 12, 12, 0, 0)
        ),
        Decision::Skip(SkipReason::Condition(SkipCondition::Cancelled))
    );
}

// ---------------------------------------------------------- skip conditions

/// The sample order with exactly one skip circumstance.
fn order_with(condition: SkipCondition) -> Order {
    let mut order = sample();
    match condition {
        SkipCondition::Returned => order.status = OrderStatus::Returned,
        SkipCondition::PartiallyRefunded => order.status = OrderStatus::PartiallyRefunded,
        SkipCondition::Refunded => order.status = OrderStatus::Refunded,
        SkipCondition::Cancelled => order.status = OrderStatus::Cancelled,
        SkipCondition::Complaint => order.complaint = true,
        SkipCondition::OptedOut => order.opted_out = true,
    }
    order
}

/// Inside follow_up's window and inside 09:00-20:00 UTC.
fn due_instant() -> DateTime<Utc> {
    utc(2026, 1, 12, 12, 0, 0)
}

#[test]
fn each_listed_skip_condition_skips() {
    let rules = rules_in(UTC_ZONE);
    let spec = StageSpec {
        skip_when: ALL_CONDITIONS.to_vec(),
        ..follow_up()
    };
    for condition in ALL_CONDITIONS {
        assert_eq!(
            decide(&order_with(condition), &spec, &rules, due_instant()),
            Decision::Skip(SkipReason::Condition(condition)),
            "{condition:?}"
        );
    }
}

#[test]
fn a_skip_condition_listed_alone_skips() {
    let rules = rules_in(UTC_ZONE);
    for condition in ALL_CONDITIONS {
        let spec = StageSpec {
            skip_when: vec![condition],
            ..follow_up()
        };
        assert_eq!(
            decide(&order_with(condition), &spec, &rules, due_instant()),
            Decision::Skip(SkipReason::Condition(condition)),
            "{condition:?}"
        );
    }
}

#[test]
fn unlisted_skip_conditions_do_not_apply() {
    let rules = rules_in(UTC_ZONE);
    for condition in ALL_CONDITIONS {
        let others: Vec<SkipCondition> = ALL_CONDITIONS
            .into_iter()
            .filter(|c| *c != condition)
            .collect();
        let spec = StageSpec {
            skip_when: others,
            ..follow_up()
        };
        assert_eq!(
            decide(&order_with(condition), &spec, &rules, due_instant()),
            Decision::Due,
            "{condition:?} is not listed"
        );
        let none = follow_up();
        assert!(none.skip_when.is_empty());
        assert_eq!(
            decide(&order_with(condition), &none, &rules, due_instant()),
            Decision::Due,
            "{condition:?} with an empty skip_when"
        );
    }
}

#[test]
fn ordinary_statuses_never_skip() {
    let rules = rules_in(UTC_ZONE);
    let spec = StageSpec {
        skip_when: ALL_CONDITIONS.to_vec(),
        ..follow_up()
    };
    for status in [
        OrderStatus::Pending,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
    ] {
        let mut order = sample();
        order.status = status;
        assert_eq!(
            decide(&order, &spec, &rules, due_instant()),
            Decision::Due,
            "{status:?}"
        );
    }
}

#[test]
fn skip_conditions_are_checked_before_the_window() {
    let rules = rules_in(UTC_ZONE);
    let spec = StageSpec {
        skip_when: vec![SkipCondition::Complaint],
        ..follow_up()
    };
    let order = order_with(SkipCondition::Complaint);
    let skipped = Decision::Skip(SkipReason::Condition(SkipCondition::Complaint));
    // Before the window opens and after it closed.
    assert_eq!(
        decide(&order, &spec, &rules, utc(2026, 1, 9, 12, 0, 0)),
        skipped
    );
    assert_eq!(
        decide(&order, &spec, &rules, utc(2026, 2, 1, 12, 0, 0)),
        skipped
    );
}

// ------------------------------------------------------------- prerequisite

/// Inside review_request's window (2026-01-13 09:00Z to 2026-02-07 09:00Z)
/// and inside 09:00-20:00 UTC.
fn review_due_instant() -> DateTime<Utc> {
    utc(2026, 1, 14, 12, 0, 0)
}

fn review_closes() -> DateTime<Utc> {
    utc(2026, 2, 7, 9, 0, 0)
}

#[test]
fn review_request_window() {
    let w = window(&sample(), &review_request(), &rules_in(UTC_ZONE)).expect("window");
    assert_eq!(w.opens, utc(2026, 1, 13, 9, 0, 0));
    assert_eq!(w.closes, review_closes());
}

#[test]
fn pending_prerequisite_waits_until_the_window_closes() {
    let order = sample();
    let rules = rules_in(UTC_ZONE);
    for state in [
        StageState::Scheduled,
        StageState::Retrying,
        StageState::Sending,
    ] {
        for now in [
            utc(2026, 1, 10, 12, 0, 0), // before the window opens
            review_due_instant(),
            utc(2026, 2, 7, 8, 59, 59), // last second
        ] {
            assert_eq!(
                decide_after(&order, &review_request(), state, &rules, now),
                wait(
                    review_closes(),
                    WaitReason::Prerequisite("follow_up".to_string())
                ),
                "{state} at {now}"
            );
        }
    }
}

#[test]
fn sent_prerequisite_lets_the_stage_go() {
    let order = sample();
    let rules = rules_in(UTC_ZONE);
    assert_eq!(
        decide_after(
            &order,
            &review_request(),
            StageState::Sent,
            &rules,
            review_due_instant()
        ),
        Decision::Due
    );
    // Sent, but the own window and hours still apply.
    assert_eq!(
        decide_after(
            &order,
            &review_request(),
            StageState::Sent,
            &rules,
            utc(2026, 1, 12, 12, 0, 0)
        ),
        wait(utc(2026, 1, 13, 9, 0, 0), WaitReason::NotOpenYet)
    );
    assert_eq!(
        decide_after(
            &order,
            &review_request(),
            StageState::Sent,
            &rules,
            utc(2026, 1, 14, 20, 0, 0)
        ),
        outside(utc(2026, 1, 15, 9, 0, 0))
    );
}

#[test]
fn prerequisite_that_ended_unsent_skips_the_stage() {
    let order = sample();
    let rules = rules_in(UTC_ZONE);
    for state in [
        StageState::Expired,
        StageState::Skipped,
        StageState::Blocked,
        StageState::Failed,
    ] {
        assert_eq!(
            decide_after(
                &order,
                &review_request(),
                state,
                &rules,
                review_due_instant()
            ),
            Decision::Skip(SkipReason::PrerequisiteNotSent {
                stage: "follow_up".to_string(),
                state,
            }),
            "{state}"
        );
        // Also before the review window has opened.
        assert_eq!(
            decide_after(
                &order,
                &review_request(),
                state,
                &rules,
                utc(2026, 1, 10, 12, 0, 0)
            ),
            Decision::Skip(SkipReason::PrerequisiteNotSent {
                stage: "follow_up".to_string(),
                state,
            }),
            "{state} before opening"
        );
    }
}

#[test]
fn refunded_after_the_prerequisite_was_sent_skips_for_the_refund() {
    let mut order = sample();
    order.status = OrderStatus::Refunded;
    let rules = rules_in(UTC_ZONE);
    assert_eq!(
        decide_after(
            &order,
            &review_request(),
            StageState::Sent,
            &rules,
            review_due_instant()
        ),
        Decision::Skip(SkipReason::Condition(SkipCondition::Refunded))
    );
}

#[test]
fn closed_window_expires_whatever_the_prerequisite() {
    let order = sample();
    let rules = rules_in(UTC_ZONE);
    for state in [
        StageState::Scheduled,
        StageState::Retrying,
        StageState::Sent,
    ] {
        assert_eq!(
            decide_after(&order, &review_request(), state, &rules, review_closes()),
            Decision::Expire,
            "{state}"
        );
    }
}

#[test]
fn stage_without_after_ignores_a_prerequisite_state() {
    let order = sample();
    let rules = rules_in(UTC_ZONE);
    assert_eq!(
        decide_after(
            &order,
            &follow_up(),
            StageState::Failed,
            &rules,
            due_instant()
        ),
        Decision::Due
    );
}

#[test]
fn terminal_states() {
    for state in StageState::ALL {
        let expected = !matches!(
            state,
            StageState::Scheduled | StageState::Retrying | StageState::Sending
        );
        assert_eq!(state.is_terminal(), expected, "{state}");
        assert_eq!(state.as_str().parse::<StageState>(), Ok(state));
    }
}

// -------------------------------------------------------------------- retry

#[test]
fn retry_later_inside_the_window_waits_until_then() {
    let order = sample();
    let rules = rules_in(UTC_ZONE);
    let now = due_instant(); // 2026-01-12 12:00Z
    let not_before = utc(2026, 1, 12, 12, 30, 0);
    assert_eq!(
        decide_retry(&order, &follow_up(), not_before, &rules, now),
        wait(not_before, WaitReason::Retry)
    );
    assert_eq!(
        decide_retry(
            &order,
            &follow_up(),
            not_before,
            &rules,
            not_before - Duration::seconds(1)
        ),
        wait(not_before, WaitReason::Retry)
    );
    assert_eq!(
        decide_retry(&order, &follow_up(), not_before, &rules, not_before),
        Decision::Due
    );
}

#[test]
fn retry_time_already_past_is_due() {
    let order = sample();
    let rules = rules_in(UTC_ZONE);
    assert_eq!(
        decide_retry(
            &order,
            &follow_up(),
            utc(2026, 1, 12, 11, 0, 0),
            &rules,
            due_instant()
        ),
        Decision::Due
    );
}

#[test]
fn retry_time_outside_the_sending_hours_waits_for_the_next_opening() {
    let order = sample();
    let rules = rules_in(UTC_ZONE);
    // Retry at 21:00Z: the next sending time is 09:00Z the next morning.
    assert_eq!(
        decide_retry(
            &order,
            &follow_up(),
            utc(2026, 1, 12, 21, 0, 0),
            &rules,
            due_instant()
        ),
        wait(utc(2026, 1, 13, 9, 0, 0), WaitReason::Retry)
    );
}

#[test]
fn retry_time_before_the_window_opens_waits_for_the_window() {
    let order = sample();
    let rules = rules_in(UTC_ZONE);
    // Window opens 2026-01-11 09:00Z; the retry time is earlier.
    assert_eq!(
        decide_retry(
            &order,
            &follow_up(),
            utc(2026, 1, 10, 12, 0, 0),
            &rules,
            utc(2026, 1, 10, 11, 0, 0)
        ),
        wait(utc(2026, 1, 11, 9, 0, 0), WaitReason::NotOpenYet)
    );
}

#[test]
fn retry_time_past_the_window_close_waits_until_close_then_expires() {
    let order = sample();
    let rules = rules_in(UTC_ZONE);
    let closes = utc(2026, 1, 18, 9, 0, 0);
    for not_before in [closes, utc(2026, 1, 18, 12, 0, 0)] {
        assert_eq!(
            decide_retry(&order, &follow_up(), not_before, &rules, due_instant()),
            wait(closes, WaitReason::NoSendingTimeLeft),
            "not_before {not_before}"
        );
        assert_eq!(
            decide_retry(&order, &follow_up(), not_before, &rules, closes),
            Decision::Expire,
            "not_before {not_before}"
        );
    }
}

#[test]
fn retry_time_in_the_last_night_of_the_window_leaves_no_sending_time() {
    // Window closes 2026-01-18 09:00Z; a retry at 22:00Z the evening before
    // would next be sendable at 09:00Z, which is the close.
    let order = sample();
    let rules = rules_in(UTC_ZONE);
    assert_eq!(
        decide_retry(
            &order,
            &follow_up(),
            utc(2026, 1, 17, 22, 0, 0),
            &rules,
            due_instant()
        ),
        wait(utc(2026, 1, 18, 9, 0, 0), WaitReason::NoSendingTimeLeft)
    );
}

#[test]
fn retry_time_one_second_before_close_waits_for_it() {
    // The window of edge_stage closes at 10:00Z, inside the hours.
    let order = sample();
    let rules = rules_in(UTC_ZONE);
    let not_before = utc(2026, 1, 15, 9, 59, 59);
    assert_eq!(
        decide_retry(
            &order,
            &edge_stage(),
            not_before,
            &rules,
            utc(2026, 1, 15, 9, 0, 0)
        ),
        wait(not_before, WaitReason::Retry)
    );
}

// ------------------------------------------------------- no sending time left

#[test]
fn one_hour_window_at_night_has_no_sending_time_left() {
    // Delivered 2026-01-10 22:00Z = 23:00 CET; the window is [23:00, 00:00) CET.
    let order = delivered_order(utc(2026, 1, 10, 22, 0, 0), Some(BERLIN));
    let rules = rules_in(UTC_ZONE);
    let one_hour = stage(
        "night",
        Anchor::DeliveredAt,
        Duration::zero(),
        Duration::hours(1),
    );
    let closes = utc(2026, 1, 10, 23, 0, 0);
    for now in [
        utc(2026, 1, 10, 12, 0, 0), // before it opens, inside the hours
        utc(2026, 1, 10, 22, 0, 0), // at opening
        utc(2026, 1, 10, 22, 59, 59),
    ] {
        assert_eq!(
            decide(&order, &one_hour, &rules, now),
            wait(closes, WaitReason::NoSendingTimeLeft),
            "at {now}"
        );
    }
    assert_eq!(decide(&order, &one_hour, &rules, closes), Decision::Expire);
}

#[test]
fn one_hour_window_ending_when_the_hours_open_has_no_sending_time_left() {
    // [08:00, 09:00) CET: 09:00 CET is the close itself.
    let order = delivered_order(utc(2026, 1, 10, 7, 0, 0), Some(BERLIN));
    let rules = rules_in(UTC_ZONE);
    let one_hour = stage(
        "morning",
        Anchor::DeliveredAt,
        Duration::zero(),
        Duration::hours(1),
    );
    assert_eq!(
        decide(&order, &one_hour, &rules, utc(2026, 1, 10, 7, 0, 0)),
        wait(utc(2026, 1, 10, 8, 0, 0), WaitReason::NoSendingTimeLeft)
    );
    // One hour later the same window is sendable from 09:00 CET.
    let order = delivered_order(utc(2026, 1, 10, 8, 0, 0), Some(BERLIN));
    assert_eq!(
        decide(&order, &one_hour, &rules, utc(2026, 1, 10, 7, 59, 59)),
        wait(utc(2026, 1, 10, 8, 0, 0), WaitReason::NotOpenYet)
    );
    assert_eq!(
        decide(&order, &one_hour, &rules, utc(2026, 1, 10, 8, 0, 0)),
        Decision::Due
    );
}

#[test]
fn a_buyer_zone_decides_whether_a_short_window_is_sendable() {
    // [22:00, 23:00) UTC is night in Berlin but morning in Auckland (NZDT:
    // 11:00-12:00 on the next day).
    let delivered = utc(2026, 1, 10, 22, 0, 0);
    let one_hour = stage(
        "short",
        Anchor::DeliveredAt,
        Duration::zero(),
        Duration::hours(1),
    );
    let rules = rules_in(UTC_ZONE);
    assert_eq!(
        decide(
            &delivered_order(delivered, Some(BERLIN)),
            &one_hour,
            &rules,
            delivered
        ),
        wait(utc(2026, 1, 10, 23, 0, 0), WaitReason::NoSendingTimeLeft)
    );
    assert_eq!(
        decide(
            &delivered_order(delivered, Some(AUCKLAND)),
            &one_hour,
            &rules,
            delivered
        ),
        Decision::Due
    );
}

//! Property tests: importer, schedule, lint (in-process).

use crate::harness::*;
use chrono::{NaiveTime, TimeZone};
use chrono_tz::Tz;
use followupd::config::Config;
use followupd::import::{read_orders, Format};
use followupd::lint::Forbidden;
use followupd::order::OrderStatus;
use followupd::schedule::{
    evaluate, Anchor, Decision, SkipCondition, SkipReason, StageState, WaitReason,
};
use proptest::prelude::*;
use proptest::test_runner::{
    Config as ProptestConfig, FileFailurePersistence, TestCaseError, TestRunner,
};

/// Bounded case counts by default; failures are kept (and replayed
/// first) in proptest-regressions/faults.txt.
fn runner(default_cases: u32) -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases: if full() {
            default_cases * 20
        } else {
            default_cases
        },
        source_file: Some(file!()),
        // Relative to the package root (cargo test's working directory).
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/faults.txt",
        ))),
        max_shrink_iters: 512,
        ..ProptestConfig::default()
    })
}

/// Runs a property; on failure, panics with the minimal input.
fn check<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let started = Instant::now();
    let mut runner = runner(cases);
    quiet_panics(true);
    let result = runner.run(&strategy, test);
    quiet_panics(false);
    let cases = runner.config().cases;
    report(
        &format!("9 fuzz {name}"),
        started,
        json!({"cases": cases, "passed": result.is_ok()}),
    );
    if let Err(e) = result {
        let text = format!("{e}");
        panic!("{name}: {}", text.chars().take(6000).collect::<String>());
    }
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// While a property runs, the panics proptest catches (and shrinks) are
/// not printed one by one; the minimal failing input is reported once.
/// Only this thread is affected.
fn quiet_panics(on: bool) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(on));
}

fn import_config(env: &Env) -> Config {
    Config::load(&env.path("config.toml")).expect("the test config loads")
}

fn now() -> DateTime<Utc> {
    at("2026-12-01T10:00:00Z")
}

/// Reads every row of `path`; fails on a panic (caught by proptest), on
/// a rejection whose line is not in the file, or on more rows than lines.
fn read_all(
    config: &Config,
    path: &Path,
    format: Format,
    lines: u64,
) -> Result<Vec<Result<String, u64>>, TestCaseError> {
    let rows = read_orders(path, Some(format), None, config, now())
        .map_err(|e| TestCaseError::fail(format!("cannot open: {e}")))?;
    let mut out = Vec::new();
    for row in rows {
        match row {
            Ok(Ok(record)) => out.push(Ok(record.order.key.order_id.to_string())),
            Ok(Err(rejection)) => {
                prop_assert!(
                    rejection.line >= 1 && rejection.line <= lines,
                    "rejection at line {} of a {lines}-line file: {}",
                    rejection.line,
                    rejection.reason
                );
                out.push(Err(rejection.line));
            }
            // The whole file cannot be read (a header that is not UTF-8).
            Err(_) => break,
        }
        prop_assert!(out.len() as u64 <= lines, "more rows than lines");
    }
    Ok(out)
}

/// Lines of a file, for an upper bound on line numbers: CSV also ends a
/// record at a bare CR, so CR, LF and CRLF each end one line.
fn physical_lines(bytes: &[u8]) -> u64 {
    let mut lines = 1;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' || bytes[i] == b'\r' {
            lines += 1;
            if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
        }
        i += 1;
    }
    lines
}

fn fragment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..24),
        2 => "\\PC{0,12}".prop_map(|s| s.into_bytes()),
        1 => Just(b"\n".to_vec()),
        1 => Just(b"\r\n".to_vec()),
        1 => Just(b"\r".to_vec()),
        1 => Just(b",".to_vec()),
        1 => Just(b"\"".to_vec()),
        1 => Just(b"{".to_vec()),
        1 => Just(b"}".to_vec()),
        1 => Just(b"\xef\xbb\xbf".to_vec()),
        1 => Just(CSV_HEADER.as_bytes().to_vec()),
        1 => Just(b"G1,g1@buyer.example,Gail,Mug,,2026-12-01,,,,,\n".to_vec()),
        1 => Just(br#"{"order_id":"J1","buyer_email":"j@x.example","product_name":"Mug","extra":{"a":[1,{"b":null}]}}"#.to_vec()),
    ]
}

#[test]
fn s9_fuzz_importer_random_bytes_never_panics_and_rejects_by_line() {
    let env = Env::with_defaults();
    let config = import_config(&env);
    let path = env.path("fuzz.bin");
    check(
        "importer random bytes",
        256,
        proptest::collection::vec(fragment(), 0..48).prop_map(|f| f.concat()),
        |bytes| {
            std::fs::write(&path, &bytes).unwrap();
            let lines = physical_lines(&bytes);
            read_all(&config, &path, Format::Csv, lines)?;
            read_all(&config, &path, Format::Jsonl, lines)?;
            Ok(())
        },
    );
}

fn text_value() -> BoxedStrategy<String> {
    prop_oneof![
        3 => Just(String::new()),
        3 => "[A-Za-z0-9 ._-]{1,12}",
        1 => Just("\u{0}".to_string()),
        1 => Just("a\r\nBcc: v@evil.example".to_string()),
        1 => Just("\t tab".to_string()),
        1 => Just("  padded  ".to_string()),
        1 => Just("Zoë \u{2028} 用户".to_string()),
        1 => Just("\"quoted\", with comma".to_string()),
        1 => Just("{{ 7*7 }}".to_string()),
        1 => "\\PC{0,16}",
        1 => any::<String>(),
    ]
    .boxed()
}

fn field_value(field: &str) -> BoxedStrategy<String> {
    let specific: Vec<&'static str> = match field {
        "buyer_email" => vec![
            "ann@buyer.example",
            "ann@bücher.example",
            "\"john doe\"@example.com",
            "no-at",
            "a@",
            "@b",
            "Ann <ann@x.example>",
            "用户@例子.广告",
        ],
        "shipped_at" | "delivered_at" => vec![
            "2026-12-01",
            "2026-12-01T10:00:00Z",
            "2026-12-01T10:00:00+05:30",
            "-3d",
            "-1h",
            "yesterday",
            "+262142-12-31",
            "0000-01-01",
            "9999-12-31T23:59:59Z",
            "2026-02-30",
            "-2y",
            "-1000000d",
        ],
        "time_zone" => vec![
            "UTC",
            "Europe/Berlin",
            "Mars/Base",
            "utc",
            "America/St_Johns",
        ],
        "status" => vec!["shipped", "delivered", "CANCELED", "lost", "refunded"],
        "complaint" | "opted_out" => vec!["true", "no", "1", "maybe", "Y"],
        "order_url" | "tracking_url" | "review_url" => vec![
            "https://x.example/r",
            "ftp://x",
            "http://a b",
            "javascript:alert(1)",
            "HTTPS://X",
        ],
        _ => vec!["P1", "shop", "Mug", "Ann Lee", "de-AT"],
    };
    let relative = matches!(field, "shipped_at" | "delivered_at");
    let mut options: Vec<(u32, BoxedStrategy<String>)> = vec![
        (3, text_value()),
        (
            6,
            proptest::sample::select(specific)
                .prop_map(String::from)
                .boxed(),
        ),
    ];
    if relative {
        options.push((
            1,
            (1u64..20_000_000_000)
                .prop_map(|n| format!("-{n}d"))
                .boxed(),
        ));
        options.push((1, (1u64..1_000_000).prop_map(|n| format!("-{n}y")).boxed()));
        options.push((1, any::<u64>().prop_map(|n| format!("-{n}s")).boxed()));
    }
    proptest::strategy::Union::new_weighted(options).boxed()
}

/// Every column the importer knows (the config's list), with `note`, an
/// extra column, in place of `extra`.
static FIELDS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    followupd::config::CANONICAL_FIELDS
        .iter()
        .copied()
        .filter(|f| *f != "extra")
        .chain(["note"])
        .collect()
});

fn row() -> impl Strategy<Value = Vec<String>> {
    FIELDS.iter().map(|f| field_value(f)).collect::<Vec<_>>()
}

/// Well-formed CSV (written by the csv crate) of random field values:
/// every row is exactly one good order or one rejection, at the line
/// where the row starts.
#[test]
fn s9_fuzz_importer_csv_rows_are_each_an_order_or_a_rejection_at_their_line() {
    let env = Env::with_defaults();
    let config = import_config(&env);
    let path = env.path("fuzz.csv");
    check(
        "importer CSV rows",
        192,
        proptest::collection::vec(row(), 1..24),
        |rows| {
            let mut writer = csv::WriterBuilder::new().from_writer(Vec::new());
            writer.write_record(FIELDS.iter()).unwrap();
            let mut starts = Vec::new();
            for r in &rows {
                writer.flush().unwrap();
                starts.push(writer.get_ref().iter().filter(|b| **b == b'\n').count() as u64 + 1);
                writer.write_record(r).unwrap();
            }
            let bytes = writer.into_inner().unwrap();
            std::fs::write(&path, &bytes).unwrap();
            let items = read_all(&config, &path, Format::Csv, physical_lines(&bytes))?;
            prop_assert_eq!(items.len(), rows.len(), "one outcome per row");
            for ((item, r), start) in items.iter().zip(&rows).zip(&starts) {
                match item {
                    Ok(id) => prop_assert_eq!(id, r[0].trim()),
                    Err(line) => prop_assert_eq!(line, start, "row {:?}", r),
                }
            }
            Ok(())
        },
    );
}

fn json_value(field: &'static str) -> BoxedStrategy<Value> {
    prop_oneof![
        8 => field_value(field).prop_map(Value::String),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<bool>().prop_map(Value::from),
        1 => Just(Value::Null),
        1 => Just(json!([1, "two", {"three": null}])),
    ]
    .boxed()
}

/// JSON Lines of random objects (random value types, blank lines, a
/// BOM, CRLF): every object is one order or one rejection at its line.
#[test]
fn s9_fuzz_importer_json_lines_are_each_an_order_or_a_rejection_at_their_line() {
    let env = Env::with_defaults();
    let config = import_config(&env);
    let path = env.path("fuzz.jsonl");
    let object = FIELDS
        .iter()
        .map(|f| proptest::option::weighted(0.8, json_value(f)))
        .collect::<Vec<_>>();
    check(
        "importer JSON Lines",
        192,
        (
            proptest::collection::vec((object, any::<bool>()), 1..24),
            any::<bool>(),
            any::<bool>(),
        ),
        |(rows, bom, crlf)| {
            let end = if crlf { "\r\n" } else { "\n" };
            let mut text = if bom {
                "\u{feff}".to_string()
            } else {
                String::new()
            };
            let mut expected = Vec::new();
            let mut line = 1u64;
            for (values, blank_before) in &rows {
                if *blank_before {
                    text.push_str(end);
                    line += 1;
                }
                let mut object = serde_json::Map::new();
                for (f, v) in FIELDS.iter().zip(values) {
                    if let Some(v) = v {
                        object.insert(f.to_string(), v.clone());
                    }
                }
                text.push_str(&Value::Object(object.clone()).to_string());
                text.push_str(end);
                expected.push((line, object));
                line += 1;
            }
            std::fs::write(&path, &text).unwrap();
            let items = read_all(
                &config,
                &path,
                Format::Jsonl,
                physical_lines(text.as_bytes()),
            )?;
            prop_assert_eq!(items.len(), rows.len(), "one outcome per object");
            for (item, (line, object)) in items.iter().zip(&expected) {
                if let Err(l) = item {
                    prop_assert_eq!(l, line, "object {:?}", object);
                }
            }
            Ok(())
        },
    );
}

const ZONES: [&str; 13] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Pacific/Chatham",
    "Africa/Casablanca",
    "Europe/Dublin",
    "Antarctica/Troll",
    "Pacific/Apia",
    "Asia/Tokyo",
    "America/Santiago",
];

#[derive(Debug, Clone)]
struct Case {
    zone: Option<&'static str>,
    default_zone: &'static str,
    hours: (u32, u32),
    transit: i64,
    anchor: bool,
    opens: i64,
    length: i64,
    after: bool,
    skip_when: Vec<usize>,
    shipped: Option<i64>,
    delivered_after: Option<i64>,
    status: usize,
    complaint: bool,
    opted_out: bool,
    prerequisite: Option<usize>,
    not_before: Option<i64>,
    now: i64,
}

const DAY: i64 = 86_400;

/// The last second chrono (and so the importer) can represent,
/// +262142-12-31T23:59:59Z since chrono 0.4.35 (+262143-12-31 before).
/// Cases stay inside it: an instant past it cannot even be built, so it
/// is no input the scheduler can be given.
const LAST_SECOND: i64 = DateTime::<Utc>::MAX_UTC.timestamp();

/// Instants in seconds: mostly around 2020..2035 (DST changes
/// included), with `extreme` anywhere the importer accepts.
fn instant(extreme: bool) -> BoxedStrategy<i64> {
    let recent = 1_577_836_800i64..2_051_222_400i64;
    if extreme {
        prop_oneof![
            2 => recent,
            1 => -8_210_266_876_800i64..=LAST_SECOND,
            1 => LAST_SECOND - 400 * DAY..=LAST_SECOND,
        ]
        .boxed()
    } else {
        recent.boxed()
    }
}

fn case(extreme: bool) -> impl Strategy<Value = Case> {
    let max_offset = if extreme { 800 * DAY } else { 30 * DAY };
    (
        (
            proptest::option::of(proptest::sample::select(&ZONES[..])),
            proptest::sample::select(&ZONES[..]),
            (0u32..1440, 0u32..1440),
            0i64..10 * DAY,
            any::<bool>(),
            0i64..max_offset,
            1i64..max_offset,
            any::<bool>(),
        ),
        (
            proptest::collection::vec(0usize..5, 0..3),
            proptest::option::weighted(0.9, instant(extreme)),
            proptest::option::of(0i64..20 * DAY),
            0usize..6,
            any::<bool>(),
            any::<bool>(),
            proptest::option::of(0usize..StageState::ALL.len()),
            proptest::option::of(-5 * DAY..30 * DAY),
            prop_oneof![instant(extreme), -10 * DAY..60 * DAY],
        ),
    )
        .prop_map(
            |(
                (zone, default_zone, hours, transit, anchor, opens, length, after),
                (
                    skip_when,
                    shipped,
                    delivered_after,
                    status,
                    complaint,
                    opted_out,
                    prerequisite,
                    not_before,
                    now,
                ),
            )| {
                // A `now` near the order (small values are offsets from it).
                let now = match shipped {
                    Some(s) if now.abs() < 100 * DAY => s.saturating_add(now),
                    _ => now,
                };
                Case {
                    zone,
                    default_zone,
                    hours,
                    transit,
                    anchor,
                    opens,
                    length,
                    after,
                    skip_when,
                    shipped,
                    delivered_after,
                    status,
                    complaint,
                    opted_out,
                    prerequisite,
                    not_before: not_before.map(|n| now.saturating_add(n)),
                    now,
                }
            },
        )
}

const SKIPS: [SkipCondition; 6] = [
    SkipCondition::Returned,
    SkipCondition::PartiallyRefunded,
    SkipCondition::Refunded,
    SkipCondition::Cancelled,
    SkipCondition::Complaint,
    SkipCondition::OptedOut,
];
const STATUSES: [OrderStatus; 7] = [
    OrderStatus::Pending,
    OrderStatus::Shipped,
    OrderStatus::Delivered,
    OrderStatus::Returned,
    OrderStatus::PartiallyRefunded,
    OrderStatus::Refunded,
    OrderStatus::Cancelled,
];

fn applies(c: SkipCondition, order: &followupd::order::Order) -> bool {
    match c {
        SkipCondition::Returned => order.status == OrderStatus::Returned,
        SkipCondition::PartiallyRefunded => order.status == OrderStatus::PartiallyRefunded,
        SkipCondition::Refunded => order.status == OrderStatus::Refunded,
        SkipCondition::Cancelled => order.status == OrderStatus::Cancelled,
        SkipCondition::Complaint => order.complaint,
        SkipCondition::OptedOut => order.opted_out,
    }
}

/// An instant; offsets that run past the end of time stop at its last
/// second.
fn secs_to(t: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(t.min(LAST_SECOND), 0).single().unwrap()
}

/// Builds the order, stage and rules of a case from a loaded config (so
/// that fields added to those types later keep their defaults).
fn setup(
    config: &Config,
    c: &Case,
) -> (
    followupd::order::Order,
    followupd::schedule::StageSpec,
    followupd::schedule::Rules,
) {
    let mut order = followupd::order::sample_order("shop");
    order.time_zone = c.zone.map(|z| z.parse::<Tz>().unwrap());
    order.shipped_at = c.shipped.map(secs_to);
    order.delivered_at = match (c.shipped, c.delivered_after) {
        (Some(s), Some(d)) => Some(secs_to(s.saturating_add(d))),
        _ => None,
    };
    order.status = STATUSES[c.status];
    order.complaint = c.complaint;
    order.opted_out = c.opted_out;
    let mut stage = config.stages[0].clone();
    stage.anchor = if c.anchor {
        Anchor::ShippedAt
    } else {
        Anchor::DeliveredAt
    };
    stage.opens_after = chrono::Duration::seconds(c.opens);
    stage.closes_after = chrono::Duration::seconds(c.opens + c.length);
    stage.after = c.after.then(|| "before".to_string());
    stage.skip_when = c.skip_when.iter().map(|i| SKIPS[*i]).collect();
    let mut rules = config.rules.clone();
    rules.default_zone = c.default_zone.parse().unwrap();
    rules.transit_estimate = chrono::Duration::seconds(c.transit);
    rules.sending_hours.start =
        NaiveTime::from_num_seconds_from_midnight_opt(c.hours.0 * 60, 0).unwrap();
    rules.sending_hours.end =
        NaiveTime::from_num_seconds_from_midnight_opt(c.hours.1 * 60, 0).unwrap();
    (order, stage, rules)
}

fn schedule_properties(config: &Config, c: Case) -> Result<(), TestCaseError> {
    let (order, stage, rules) = setup(config, &c);
    let prerequisite = c.prerequisite.map(|i| StageState::ALL[i]);
    let not_before = c.not_before.map(secs_to);
    let now = secs_to(c.now);
    let zone = order.time_zone.unwrap_or(rules.default_zone);
    let eval = evaluate(&order, &stage, prerequisite, not_before, &rules, now);
    match &eval.decision {
        Decision::Due => {
            let w = eval
                .window
                .ok_or_else(|| TestCaseError::fail("due without a window"))?;
            prop_assert!(
                w.opens <= now && now < w.closes,
                "due at {now} outside {w:?}"
            );
            let local = now.with_timezone(&zone).time();
            prop_assert!(
                rules.sending_hours.contains(local),
                "due at {local} local ({zone}), outside the sending hours {:?}",
                rules.sending_hours
            );
            prop_assert!(
                not_before.is_none_or(|t| t <= now),
                "due before its retry time"
            );
            prop_assert!(
                !stage.skip_when.iter().any(|s| applies(*s, &order)),
                "due although a skip condition holds"
            );
            if stage.after.is_some() {
                prop_assert!(
                    prerequisite.is_none_or(|p| p == StageState::Sent),
                    "due although its prerequisite is {prerequisite:?}"
                );
            }
        }
        Decision::Wait { until, reason } => {
            if let Some(t) = until {
                prop_assert!(*t > now, "wait until {t}, not after now {now}: a busy loop");
            }
            if until.is_none() {
                prop_assert!(eval.window.is_none(), "waits for nothing with a window");
            }
            let promised = matches!(
                reason,
                WaitReason::NotOpenYet | WaitReason::OutsideSendingHours | WaitReason::Retry
            );
            if let (true, Some(t), Some(w)) = (promised, until, eval.window) {
                prop_assert!(
                    w.opens <= *t && *t < w.closes,
                    "next send {t} outside {w:?}"
                );
                // At the promised time it is due, or it waits on (never
                // a wait that does not move forward).
                let again = evaluate(&order, &stage, prerequisite, not_before, &rules, *t);
                if let Decision::Wait { until: Some(u), .. } = again.decision {
                    prop_assert!(u > *t, "at {t} it waits until {u}");
                }
            }
        }
        Decision::Skip(SkipReason::Condition(s)) => {
            prop_assert!(
                applies(*s, &order),
                "skipped for {s:?}, which does not hold"
            );
        }
        Decision::Skip(SkipReason::PrerequisiteNotSent { state, .. }) => {
            prop_assert!(state.is_terminal() && *state != StageState::Sent);
        }
        // Reasons added later (marketplace policy, ...) are not judged here.
        Decision::Skip(_) => {}
        Decision::Expire => {
            let w = eval
                .window
                .ok_or_else(|| TestCaseError::fail("expired without a window"))?;
            prop_assert!(now >= w.closes, "expired at {now} before {}", w.closes);
        }
    }
    Ok(())
}

#[test]
fn s9_fuzz_schedule_is_due_only_inside_the_window_and_the_sending_hours() {
    let env = Env::with_defaults();
    let config = import_config(&env);
    check("schedule", 2048, case(false), |c| {
        schedule_properties(&config, c)
    });
}

/// Dates anywhere the importer accepts (up to the year 262142) and
/// windows up to two years long: no panic.
#[test]
fn s9_fuzz_schedule_never_panics_at_the_edges_of_time() {
    let env = Env::with_defaults();
    let config = import_config(&env);
    check("schedule at the edges of time", 1024, case(true), |c| {
        let (order, stage, rules) = setup(&config, &c);
        let prerequisite = c.prerequisite.map(|i| StageState::ALL[i]);
        let _ = evaluate(
            &order,
            &stage,
            prerequisite,
            c.not_before.map(secs_to),
            &rules,
            secs_to(c.now),
        );
        Ok(())
    });
}

fn lint_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => "\\PC{0,8}",
        1 => any::<String>(),
        1 => proptest::sample::select(vec![
            "review", "Review", "REVIEWS", "préview", "reviewer", "https://x.example/review",
            "www.x.example/review", "İ", "ﬁ", "\u{301}", "\u{200d}", "\u{202e}", "r e v i e w",
            "r.e.v.i.e.w", "update", "Chang", "exchange", "modify", "{{ order.review_url }}",
            "{%", "%}", "{#", "#}", "\r\n", "\n", "\r", " ", "\t", "ß", "ǅ", "ΐ",
        ])
        .prop_map(String::from),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|p| p.concat())
}

#[test]
fn s9_fuzz_lint_scans_any_unicode_without_panicking_and_points_at_the_word() {
    let lists: Vec<Forbidden> = [
        followupd::lint::DEFAULT_FORBIDDEN
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
        vec![
            "İstanbul".into(),
            "straße".into(),
            "ﬁx*".into(),
            "Σ*".into(),
        ],
    ]
    .iter()
    .filter_map(|l| Forbidden::new(l).ok())
    .collect();
    prop_assert_lists(&lists);
    check(
        "lint",
        512,
        (
            lint_text(),
            proptest::collection::vec("\\PC{0,6}\\*?", 0..3),
        ),
        |(text, list)| {
            let _ = Forbidden::new(&list); // any list: Ok or Err, no panic
            let lines: Vec<&str> = text.lines().collect();
            for forbidden in &lists {
                let _ = forbidden.scan_template_source(&text);
                for hit in forbidden.scan(&text) {
                    prop_assert!(hit.line >= 1 && hit.line <= lines.len().max(1), "{hit:?}");
                    let line: Vec<char> = lines
                        .get(hit.line - 1)
                        .copied()
                        .unwrap_or("")
                        .chars()
                        .collect();
                    prop_assert!(
                        hit.column >= 1 && hit.column <= line.len() + 1,
                        "{hit:?} in {line:?}"
                    );
                    let at: String = line[hit.column - 1..].iter().collect();
                    prop_assert!(
                        at.starts_with(&hit.word),
                        "{hit:?} is not at its place in {:?}",
                        text
                    );
                }
            }
            Ok(())
        },
    );
}

fn prop_assert_lists(lists: &[Forbidden]) {
    assert!(!lists.is_empty(), "the default list builds");
}

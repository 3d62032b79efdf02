//! Day-to-day operation through the real binary: command-line values
//! checked, filters that match nothing, and support's lookups (`why`,
//! `plan --email/--order/--state/--stage`).

mod common;

use common::{Env, CSV_HEADER};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Two orders of Ann (one on another marketplace's id space is not
/// needed: ids are unique here), one of Bob, all shipped on 1 December.
fn env_with_orders() -> Env {
    let env = Env::with_defaults();
    let csv = format!(
        "{CSV_HEADER}\
         A1,Ann@Example.com,Ann,Teapot,,2026-12-01T10:00:00Z,2026-12-03T10:00:00Z,delivered,,,\n\
         A2,ann@example.com,Ann,Mug,,2026-12-01T10:00:00Z,,shipped,,,\n\
         B1,bob@example.com,Bob,Cup,,2026-12-01T10:00:00Z,,refunded,,,\n"
    );
    let out = env.import_csv("orders.csv", &csv);
    assert!(out.status.success(), "{}", stderr(&out));
    env.ok(&["tick", "--now", "2026-12-01T12:00:00Z"]);
    env
}

#[test]
fn a_mistyped_value_is_refused_naming_the_valid_ones() {
    let env = env_with_orders();
    let cases: [(&[&str], &str); 5] = [
        (&["logs", "--status", "snet"], "possible values: scheduled"),
        (
            &["logs", "--stage", "shipping"],
            "the stages are: shipment, follow_up, review_request",
        ),
        (&["plan", "--stage", "shipping"], "the stages are: shipment"),
        (
            &["plan", "--state", "blokced"],
            "possible values: scheduled",
        ),
        (&["logs", "--limit", "0"], "0 is not in 1.."),
    ];
    for (args, expected) in cases {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(
            stdout(&out).is_empty(),
            "{args:?} printed a table: {}",
            stdout(&out)
        );
    }
}

#[test]
fn filters_that_match_nothing_say_so_and_exit_1() {
    let env = env_with_orders();
    for (args, expected) in [
        (
            &["plan", "--order", "A-000001"][..],
            "nothing matches --order A-000001",
        ),
        (
            &["logs", "--email", "nobody@example.com"],
            "no send-log entries match --email nobody@example.com",
        ),
        (
            &["plan", "--state", "failed"],
            "nothing matches --state failed",
        ),
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty(), "{args:?}: {}", stdout(&out));
    }
}

#[test]
fn now_takes_dates_and_relative_times_and_names_the_forms_when_wrong() {
    let env = env_with_orders();
    // Midnight on 2 December: the shipment was sent on the 1st, the
    // follow-up's window (2 to 5 days after delivery) is not open yet.
    let plan = env.ok(&["plan", "--now", "2026-12-02", "--order", "A1", "--json"]);
    assert!(plan.contains("\"stage\":\"follow_up\""), "{plan}");
    let relative = env.run(&["plan", "--now", "-3d", "--order", "A1"]);
    assert!(relative.status.success(), "{}", stderr(&relative));
    let out = env.run(&["tick", "--now", "2026-12-"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("RFC 3339") && err.contains("a date (2026-12-08") && err.contains("-3d"),
        "{err}"
    );
    assert!(!err.contains("premature end of input"), "{err}");
}

on_both_backends! {
    fn why_shows_every_order_of_a_buyer_with_each_stage_and_the_log() {
        let env = env_with_orders();
        let out = env.run(&["why", "ANN@example.com", "--now", "2026-12-01T12:00:00Z"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains("order shop/A1 to Ann@Example.com: Teapot"), "{text}");
        assert!(text.contains("order shop/A2 to ann@example.com: Mug"), "{text}");
        assert!(!text.contains("B1"), "another buyer's order: {text}");
        for stage in ["shipment", "follow_up", "review_request"] {
            assert_eq!(text.matches(&format!("  {stage} ")).count(), 2, "{stage}: {text}");
        }
        assert!(text.contains("log #"), "the send log is missing: {text}");

        let refunded = env.ok(&["why", "B1", "--now", "2026-12-01T12:00:00Z"]);
        assert!(refunded.contains("order shop/B1"), "{refunded}");
        assert!(refunded.contains("refunded"), "{refunded}");

        let none = env.run(&["why", "nobody@example.com"]);
        assert_eq!(none.status.code(), Some(1));
        assert!(stderr(&none).contains("no buyer 'nobody@example.com'"));
    }

    fn plan_filters_by_email_state_and_stage() {
        let env = env_with_orders();
        let lines: Vec<serde_json::Value> = env
            .ok(&["plan", "--email", "ann@EXAMPLE.com", "--stage", "shipment", "--state", "sent",
                  "--now", "2026-12-01T12:00:00Z", "--json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let ids: Vec<&str> = lines.iter().map(|l| l["order_id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["A1", "A2"]);
        assert!(lines.iter().all(|l| l["stage"] == "shipment" && l["state"] == "sent"));
    }
}

/// One order shipped at 10:00 on 1 December, with a name that needs
/// encoding; the product of B2 holds a forbidden word ("Changing").
fn env_with_blockable_orders() -> Env {
    let env = Env::with_defaults();
    let csv = format!(
        "{CSV_HEADER}\
         M1,maria@example.com,María López,Teapot,,2026-12-01T10:00:00Z,,shipped,,,\n\
         B2,bo@example.com,Bo,Baby Changing Pad,,2026-12-01T10:00:00Z,,shipped,,,\n"
    );
    let out = env.import_csv("orders.csv", &csv);
    assert!(out.status.success(), "{}", stderr(&out));
    env
}

const NOON: &str = "2026-12-01T12:00:00Z";

fn state(env: &Env, order: &str) -> String {
    env.stage_state(NOON, order, "shipment")["state"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn show_decodes_the_message_for_people_and_raw_gives_the_exact_bytes() {
    let env = env_with_blockable_orders();
    env.ok(&["tick", "--now", NOON]);
    let log = env.ok(&["logs", "--json", "--order", "M1"]);
    let entry: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    let id = entry["id"].to_string();
    let shown = env.ok(&["show", &id]);
    assert!(
        shown.contains("To: María López <maria@example.com>"),
        "{shown}"
    );
    assert!(
        shown.contains("Subject: Your Teapot is on its way"),
        "{shown}"
    );
    assert!(shown.contains("Hi María,"), "{shown}");
    assert!(shown.contains("--- HTML body, as text ---"), "{shown}");
    assert!(!shown.contains("=C3"), "quoted-printable left in: {shown}");
    assert!(!shown.contains("<p"), "HTML markup left in: {shown}");
    let raw = env.run(&["show", &id, "--raw"]);
    let (_, eml) = env
        .outbox()
        .into_iter()
        .find(|(name, _)| name.contains("M1"))
        .expect("M1 in the outbox");
    assert_eq!(String::from_utf8(raw.stdout).unwrap(), eml);
}

#[test]
fn tick_dry_run_lists_what_it_would_do_and_changes_nothing() {
    let env = env_with_blockable_orders();
    let dry = env.ok(&["tick", "--dry-run", "--now", NOON]);
    assert!(dry.contains("would send   shop/M1 shipment"), "{dry}");
    assert!(
        dry.contains("dry run: would send 2, skip 0, expire 0"),
        "{dry}"
    );
    assert!(env.outbox().is_empty());
    assert_eq!(state(&env, "M1"), "due");
    assert!(env.ok(&["logs", "--json"]).is_empty());
}

on_both_backends! {
    fn requeue_sends_blocked_stages_again_once_the_list_is_fixed() {
        let env = env_with_blockable_orders();
        env.ok(&["tick", "--now", NOON]);
        assert_eq!(state(&env, "B2"), "blocked");
        // The seller decides "change" may be written after all.
        let config = std::fs::read_to_string(env.path("config.toml")).unwrap();
        env.write(
            "config.toml",
            &format!("{config}\n[lint]\nforbidden = [\"review*\"]\n"),
        );
        let dry = env.run(&["requeue", "--state", "blocked", "--dry-run", "--now", NOON]);
        assert!(dry.status.success(), "{}", stderr(&dry));
        assert_eq!(stdout(&dry).trim(), "shop/B2 shipment");
        assert!(
            stderr(&dry).contains("would requeue 1 blocked stages"),
            "{}",
            stderr(&dry)
        );
        assert_eq!(state(&env, "B2"), "blocked", "a dry run changed the state");

        let done = env.run(&[
            "requeue", "--state", "blocked", "--stage", "shipment", "--now", NOON,
        ]);
        assert!(done.status.success(), "{}", stderr(&done));
        assert_eq!(stdout(&done).trim(), "shop/B2 shipment");
        env.ok(&["tick", "--now", "2026-12-01T12:01:00Z"]);
        assert_eq!(state(&env, "B2"), "sent");
        assert!(env.outbox().iter().any(|(name, _)| name.contains("B2")));

        let none = env.run(&["requeue", "--state", "blocked"]);
        assert_eq!(none.status.code(), Some(1));
        assert!(
            stderr(&none).contains("no blocked stages match"),
            "{}",
            stderr(&none)
        );
    }
}

on_both_backends! {
    fn pause_holds_sending_until_resume_and_check_says_so() {
        let env = env_with_blockable_orders();
        env.ok(&["pause", "--reason", "relay incident"]);
        let tick = env.ok(&["tick", "--now", NOON]);
        assert!(
            tick.contains("paused since") && tick.contains("nothing sent"),
            "{tick}"
        );
        assert!(env.outbox().is_empty());
        assert_eq!(state(&env, "M1"), "due");
        let check = env.run(&["check"]);
        assert!(
            stdout(&check).contains("sending paused since")
                && stdout(&check).contains("relay incident"),
            "{}",
            stdout(&check)
        );
        env.ok(&["resume"]);
        env.ok(&["tick", "--now", NOON]);
        assert_eq!(state(&env, "M1"), "sent");
    }
}

#[test]
fn try_sends_a_marked_test_to_the_operator_and_touches_no_order() {
    let env = env_with_blockable_orders();
    let out = env.run(&[
        "try",
        "--stage",
        "shipment",
        "--to",
        "ops@shop.example",
        "--order",
        "M1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("test sent to ops@shop.example"),
        "{}",
        stdout(&out)
    );
    let outbox = env.outbox();
    assert_eq!(outbox.len(), 1);
    let (_, eml) = &outbox[0];
    assert!(eml.starts_with("X-Followupd-Test: "), "{eml}");
    assert!(
        eml.contains("To: =?utf-8?") || eml.contains("ops@shop.example"),
        "{eml}"
    );
    assert!(
        !eml.contains("maria@example.com"),
        "sent to the buyer: {eml}"
    );
    assert!(
        eml.contains("Subject: [TEST] Your Teapot is on its way"),
        "{eml}"
    );
    let id = common::header(eml, "Message-ID").unwrap();
    assert_ne!(
        id, "<followupd.shipment.shop.M1@test.example>",
        "the stage's own id"
    );
    assert_eq!(state(&env, "M1"), "due");
    assert!(env.ok(&["logs", "--json"]).is_empty());

    // A blocked message is not sent, even as a test.
    let blocked = env.run(&[
        "try",
        "--stage",
        "shipment",
        "--to",
        "ops@shop.example",
        "--order",
        "B2",
    ]);
    assert_eq!(blocked.status.code(), Some(1));
    assert!(
        stderr(&blocked).contains("not sent: the lint blocks"),
        "{}",
        stderr(&blocked)
    );
    assert_eq!(env.outbox().len(), 1);
}

#[test]
fn check_reports_a_config_typo_as_a_fail_line_and_creates_nothing() {
    let env = Env::with_defaults();
    let check = env.run(&["check"]);
    assert!(check.status.success(), "{}", stdout(&check));
    assert!(
        stdout(&check).contains("does not exist yet"),
        "{}",
        stdout(&check)
    );
    assert!(
        !env.path("state").exists(),
        "check created the state folder"
    );
    assert!(!env.path("outbox").exists(), "check created the outbox");

    let config = std::fs::read_to_string(env.path("config.toml")).unwrap();
    env.write("config.toml", &config.replace("[sender]", "[sendr]"));
    let check = env.run(&["check"]);
    assert_eq!(check.status.code(), Some(1), "{}", stderr(&check));
    assert!(
        stdout(&check).contains("FAIL  config:"),
        "{}",
        stdout(&check)
    );
    // -c was given: no advice to give it.
    let plan = env.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(2));
    assert!(!stderr(&plan).contains("set -c"), "{}", stderr(&plan));
}

#[test]
fn a_missing_file_among_several_keeps_the_others_summary_and_says_why_once() {
    let env = Env::with_defaults();
    let good = env.write(
        "good.csv",
        &format!("{CSV_HEADER}G1,g@example.com,G,Cup,,2026-12-01T10:00:00Z,,shipped,,,\n"),
    );
    let missing = env.path("nope.csv");
    let out = env.run(&["import", missing.to_str().unwrap(), good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stdout(&out).trim(),
        "imported 1, updated 0, rejected 0; 1 of 2 files not imported"
    );
    let err = stderr(&out);
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
    assert!(err.contains("nope.csv"), "{err}");
}

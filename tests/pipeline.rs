//! The core pipeline through the real binary: import, plan, tick, lint and
//! the outbox, with time moved by `--now`.

mod common;

use chrono::{DateTime, Duration, Timelike, Utc};
use common::mime::qp_decode;
use common::{header, Env, BASE_CONFIG, CSV_HEADER};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Ticks every `step` from `from` to `until` (inclusive).
fn tick_through(env: &Env, from: &str, until: &str, step: Duration) {
    let mut t: DateTime<Utc> = from.parse().unwrap();
    let end: DateTime<Utc> = until.parse().unwrap();
    while t <= end {
        env.ok(&["tick", "--now", &t.to_rfc3339()]);
        t += step;
    }
}

on_both_backends! {
    fn import_reports_every_bad_row_by_line_and_keeps_the_good_ones() {
        let env = Env::with_defaults();
        let csv = format!(
            "{CSV_HEADER}\
    A1,ann@example.com,Ann,Teapot,Europe/Berlin,2026-12-01T10:00:00Z,2026-12-03,delivered,false,false,\n\
    A2,not-an-email,Bo,Mug,,2026-12-01,,shipped,,,\n\
    A3,bob@example.com,Bob,Mug,,2026-12-01,,lost,,,\n\
    A4,cy@example.com,,Cup,,yesterday,,,,,\n\
    A5,di@example.com,,Cup,Mars/Olympus_Mons,2026-12-01,,,,,\n\
    A6,ed@example.com,,Cup,,2026-12-05,2026-12-01,,,,\n\
    A7,,,Cup,,2026-12-01,,,,,\n\
    A8,fay@example.com,\"Fay\r\nBcc: victim@example.com\",Cup,,2026-12-01,,,,,\n\
    ,gus@example.com,,Cup,,2026-12-01,,,,,\n\
    A9,hal@example.com,,,,2026-12-01,,,,,\n\
    A10,ivy@example.com,Ivy,Kettle,,,,pending,,,\n\
    A11,jo@example.com,Jo,Kettle,,2026-12-01,,,maybe,,\n\
    A12,kim@example.com,Kim,Kettle,,,,,,,ftp://example.com/x\n"
        );
        let out = env.import_csv("orders.csv", &csv);
        assert_eq!(
            out.status.code(),
            Some(1),
            "rejections make the exit code 1"
        );
        assert_eq!(stdout(&out).trim(), "imported 2, updated 0, rejected 11");
        let file = env.path("orders.csv").display().to_string();
        let err = stderr(&out);
        let expected = [
            (3, "invalid email address 'not-an-email'"),
            (4, "unknown status 'lost'"),
            (5, "field 'shipped_at': cannot read 'yesterday' as a time"),
            (6, "unknown time zone 'Mars/Olympus_Mons'"),
            (7, "delivered_at (2026-12-01T00:00:00+00:00) is before shipped_at (2026-12-05T00:00:00+00:00)"),
            (8, "missing required field 'buyer_email'"),
            (9, "field 'buyer_name' contains a line break"),
            (11, "missing required field 'order_id'"),
            (12, "missing required field 'product_name'"),
            (14, "field 'complaint': expected true or false, got 'maybe'"),
            (15, "field 'review_url': 'ftp://example.com/x' is not an http(s) URL"),
        ];
        for (line, reason) in expected {
            let prefix = format!("{file}:{line}: ");
            let found = err
                .lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("no rejection for line {line} in:\n{err}"));
            assert!(
                found.contains(reason),
                "line {line}: expected '{reason}' in '{found}'"
            );
        }
        assert_eq!(err.lines().filter(|l| l.starts_with(&file)).count(), 11);

        let plan = env.plan("2026-12-02T12:00:00Z");
        let mut orders: Vec<&str> = plan
            .iter()
            .map(|l| l["order_id"].as_str().unwrap())
            .collect();
        orders.dedup();
        assert_eq!(orders, ["A1", "A10"]);

        // The same order again is an update, and a clean file exits 0.
        let again = env.import_csv(
            "again.csv",
            &format!("{CSV_HEADER}A10,ivy@example.com,Ivy,Kettle,,2026-12-02,,,,,\n"),
        );
        assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
        assert_eq!(stdout(&again).trim(), "imported 0, updated 1, rejected 0");
        let line = env.stage_state("2026-12-02T12:00:00Z", "A10", "shipment");
        assert_eq!(line["window"]["opens"], "2026-12-02T00:00:00Z");
    }

    fn json_lines_with_bom_crlf_extras_and_bad_lines() {
        let env = Env::with_defaults();
        let text = "\u{feff}{\"order_id\":\"J1\",\"buyer_email\":\"a@example.com\",\"product_name\":\"Lamp\",\"shipped_at\":\"2026-12-01\",\"gift_note\":\"Happy birthday\",\"complaint\":false}\r\n\
    \r\n\
    {\"order_id\":\"J2\",\"buyer_email\":\"b@example.com\",\"product_name\":\"Lamp\",\"status\":\"shipped\"\r\n\
    {\"order_id\":\"J3\",\"buyer_email\":\"c@example.com\",\"product_name\":\"Lamp\",\"extra\":{\"colour\":\"blue\"}}\r\n";
        let file = env.write("orders.jsonl", text);
        let out = env.run(&["import", file.to_str().unwrap()]);
        assert_eq!(stdout(&out).trim(), "imported 2, updated 0, rejected 1");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{}:3: invalid JSON", file.display())),
            "{err}"
        );
        // Extra columns reach templates as order.extra.NAME.
        env.write(
            "templates/shipment/body.txt.tera",
            "Note: {{ order.extra.gift_note }}\nOrder {{ order.id }}\n",
        );
        let preview = env.ok(&["preview", "--order", "J1", "--stage", "shipment"]);
        assert!(preview.contains("Note: Happy birthday"), "{preview}");
    }

    fn a_whole_order_life_over_three_weeks_sends_exactly_three_messages_in_hours() {
        let env = Env::with_defaults();
        let out = env.import_csv(
            "orders.csv",
            &format!(
                "{CSV_HEADER}L1,lena@example.com,Lena Park,Oak Desk Lamp,America/New_York,2026-12-01T15:30:00Z,,shipped,,,https://shop.example/fb/L1\n"
            ),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        // Delivery arrives two days later in a second export.
        tick_through(
            &env,
            "2026-12-01T00:00:00Z",
            "2026-12-03T00:00:00Z",
            Duration::hours(1),
        );
        let out = env.import_csv(
            "delivered.csv",
            &format!("{CSV_HEADER}L1,lena@example.com,,Oak Desk Lamp,,,2026-12-03,delivered,,,\n"),
        );
        assert_eq!(stdout(&out).trim(), "imported 0, updated 1, rejected 0");
        tick_through(
            &env,
            "2026-12-03T01:00:00Z",
            "2026-12-22T00:00:00Z",
            Duration::hours(1),
        );

        let outbox = env.outbox();
        assert_eq!(
            outbox.len(),
            3,
            "{:?}",
            outbox.iter().map(|o| &o.0).collect::<Vec<_>>()
        );
        let zone: chrono_tz::Tz = "America/New_York".parse().unwrap();
        let mut subjects = Vec::new();
        for (_, raw) in &outbox {
            assert!(header(raw, "To").unwrap().contains("<lena@example.com>"));
            let date = DateTime::parse_from_rfc2822(&header(raw, "Date").unwrap()).unwrap();
            let local = date.with_timezone(&zone);
            assert!(
                (9..20).contains(&local.hour()),
                "sent at {local}, outside 09:00-20:00 New York"
            );
            subjects.push((date, header(raw, "Subject").unwrap()));
        }
        subjects.sort();
        let subjects: Vec<&str> = subjects.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            subjects,
            [
                "Your Oak Desk Lamp is on its way",
                "Did your Oak Desk Lamp arrive safely?",
                "How are you getting on with your Oak Desk Lamp?",
            ]
        );
        for stage in ["shipment", "follow_up", "review_request"] {
            assert_eq!(
                env.stage_state("2026-12-22T00:00:00Z", "L1", stage)["state"],
                "sent"
            );
        }
        // Re-importing cannot resurrect a sent stage, and later ticks send nothing.
        env.import_csv(
            "again.csv",
            &format!("{CSV_HEADER}L1,lena@example.com,,Oak Desk Lamp,,2026-12-10T00:00:00Z,2026-12-12,delivered,,,\n"),
        );
        tick_through(
            &env,
            "2026-12-20T10:00:00Z",
            "2026-12-26T10:00:00Z",
            Duration::hours(12),
        );
        assert_eq!(env.outbox().len(), 3);
    }

    fn unhappy_buyers_are_skipped_with_a_reason() {
        let env = Env::with_defaults();
        let rows = [
            ("R1", "returned", "", ""),
            ("R2", "refunded", "", ""),
            ("R3", "cancelled", "", ""),
            ("R4", "delivered", "true", ""),
            ("R5", "delivered", "", "true"),
        ];
        let mut csv = CSV_HEADER.to_string();
        for (id, status, complaint, opted_out) in rows {
            csv.push_str(&format!(
                "{id},{id}@example.com,,Mug,,2026-12-01T10:00:00Z,2026-12-02,{status},{complaint},{opted_out},\n"
            ));
        }
        assert!(env.import_csv("o.csv", &csv).status.success());
        tick_through(
            &env,
            "2026-12-01T10:00:00Z",
            "2026-12-17T10:00:00Z",
            Duration::hours(6),
        );
        let now = "2026-12-17T10:00:00Z";
        for (id, reason) in [
            ("R1", "order returned"),
            ("R2", "order refunded"),
            ("R3", "order cancelled"),
            ("R4", "buyer complained"),
            ("R5", "buyer opted out"),
        ] {
            for stage in ["follow_up", "review_request"] {
                let line = env.stage_state(now, id, stage);
                assert_eq!(line["state"], "skipped", "{id} {stage}");
                assert_eq!(line["reason"], reason, "{id} {stage}");
            }
        }
        // A complaint does not hold back the shipment notice; the others do.
        assert_eq!(env.stage_state(now, "R4", "shipment")["state"], "sent");
        assert_eq!(env.stage_state(now, "R5", "shipment")["state"], "skipped");
        let outbox = env.outbox();
        assert_eq!(outbox.len(), 1);
        assert!(header(&outbox[0].1, "To")
            .unwrap()
            .contains("R4@example.com"));

        // A refund arriving later never resurrects anything either.
        env.import_csv(
            "later.csv",
            &format!("{CSV_HEADER}R2,R2@example.com,,Mug,,,,delivered,,,\n"),
        );
        env.ok(&["tick", "--now", "2026-12-10T12:00:00Z"]);
        assert_eq!(
            env.stage_state(now, "R2", "review_request")["state"],
            "skipped"
        );
    }

    fn review_request_waits_for_the_follow_up_and_is_skipped_without_it() {
        let env = Env::with_defaults();
        let csv = format!(
            "{CSV_HEADER}W1,w1@example.com,,Mug,,2026-12-01T10:00:00Z,2026-12-02T10:00:00Z,,,,\n\
    W2,w2@example.com,,Mug,,2026-12-01T10:00:00Z,2026-12-02T10:00:00Z,,,,\n"
        );
        assert!(env.import_csv("o.csv", &csv).status.success());
        // W2 is only looked at once its follow-up window has closed: the
        // follow-up expires and the review request is skipped for good.
        let now = "2026-12-10T12:00:00Z";
        env.ok(&["tick", "--now", now]);
        assert_eq!(env.stage_state(now, "W2", "follow_up")["state"], "expired");
        let rr = env.stage_state(now, "W2", "review_request");
        assert_eq!(rr["state"], "skipped");
        assert_eq!(rr["reason"], "follow_up was not sent (expired)");
        assert!(env.outbox().is_empty());

        // An order refunded after its follow-up went out gets no review request.
        let env = Env::with_defaults();
        assert!(env.import_csv("o.csv", &csv).status.success());
        env.ok(&["tick", "--now", "2026-12-05T12:00:00Z"]);
        assert_eq!(env.stage_state(now, "W1", "follow_up")["state"], "sent");
        env.import_csv(
            "r.csv",
            &format!("{CSV_HEADER}W1,w1@example.com,,Mug,,,,refunded,,,\n"),
        );
        env.ok(&["tick", "--now", "2026-12-10T12:00:00Z"]);
        let rr = env.stage_state(now, "W1", "review_request");
        assert_eq!(rr["state"], "skipped");
        assert_eq!(rr["reason"], "order refunded");
    }

    fn a_forbidden_word_in_order_data_blocks_the_message_and_names_the_field() {
        let env = Env::with_defaults();
        env.import_csv(
            "o.csv",
            &format!("{CSV_HEADER}D1,d@example.com,,Diaper Changing Pad,,2026-12-01T10:00:00Z,,,,,\n"),
        );
        let preview = env.run(&["preview", "--order", "D1", "--stage", "shipment"]);
        assert_eq!(preview.status.code(), Some(1));
        assert!(stderr(&preview).contains("forbidden word 'Changing'"));
        env.ok(&["tick", "--now", "2026-12-01T12:00:00Z"]);
        let line = env.stage_state("2026-12-01T12:00:00Z", "D1", "shipment");
        assert_eq!(line["state"], "blocked");
        let reason = line["reason"].as_str().unwrap();
        assert!(
            reason.contains("subject:1:13: forbidden word 'Changing'"),
            "{reason}"
        );
        assert!(
            reason.contains("from order data: order.product_name"),
            "{reason}"
        );
        assert!(env.outbox().is_empty());
    }

    fn a_forbidden_word_in_a_template_is_located_by_file_line_and_column() {
        let env = Env::with_defaults();
        let template = "templates/follow_up/body.txt.tera";
        env.write(
            template,
            "Hello {{ order.buyer_name }},\n\nThanks for your order.\nWe would love a Review of {{ order.product_name }}.\nOrder {{ order.id }}\n",
        );
        let out = env.run(&["lint"]);
        assert_eq!(out.status.code(), Some(1));
        let expected = format!(
            "{}:4:17: forbidden word 'Review' (matches 'review*')",
            env.path(template).display()
        );
        assert!(stdout(&out).contains(&expected), "{}", stdout(&out));

        env.import_csv(
            "o.csv",
            &format!("{CSV_HEADER}T1,t@example.com,Tess,Mug,,2026-12-01T10:00:00Z,2026-12-02T10:00:00Z,,,,\n"),
        );
        env.ok(&["tick", "--now", "2026-12-04T12:00:00Z"]);
        let line = env.stage_state("2026-12-04T12:00:00Z", "T1", "follow_up");
        assert_eq!(line["state"], "blocked");
        let reason = line["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("{}:4:17", env.path(template).display())),
            "{reason}"
        );
        assert!(reason.contains("in the template text"), "{reason}");

        // The shipped templates themselves are clean.
        let clean = Env::with_defaults();
        let out = clean.run(&["lint"]);
        assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    }

    fn lint_message_reports_positions_and_ignores_near_misses() {
        let env = Env::with_defaults();
        let file = env.write(
            "message.txt",
            "Hi,\nYou can exchange it or preview the manual.\nPlease update us and review it.\nhttps://x.example/review\n",
        );
        let out = env.run(&["lint", "--message", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
        let f = file.display();
        assert_eq!(
            lines,
            [
                format!("{f}:3:8: forbidden-word: forbidden word 'update' (matches 'update*')"),
                format!("{f}:3:22: forbidden-word: forbidden word 'review' (matches 'review*')"),
            ]
        );
        let clean = env.write("clean.txt", "You can exchange it or preview the manual.\n");
        assert_eq!(
            env.run(&["lint", "--message", clean.to_str().unwrap()])
                .status
                .code(),
            Some(0)
        );
    }

    fn order_data_is_never_template_code_and_is_escaped_in_html() {
        let env = Env::with_defaults();
        env.import_csv(
            "o.csv",
            &format!(
                "{CSV_HEADER}H1,h@example.com,<script>alert(1)</script> {{{{ 7*7 }}}} {{% include \"x\" %}},Mug,,2026-12-01T10:00:00Z,,,,,\n"
            ),
        );
        env.ok(&["tick", "--now", "2026-12-01T12:00:00Z"]);
        let outbox = env.outbox();
        assert_eq!(outbox.len(), 1);
        let body = String::from_utf8_lossy(&qp_decode(&outbox[0].1)).to_string();
        assert!(
            body.contains("Hi <script>alert(1)</script>,") || body.contains("Hi &lt;script&gt;"),
            "{body}"
        );
        assert!(
            body.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;"),
            "HTML part escapes: {body}"
        );
        assert!(!body.contains("<p>Hi <script>"), "{body}");
        // Only the greeting carries the name; a "49" elsewhere in the file
        // (a MIME boundary, a date) says nothing.
        assert!(
            !body.lines().any(|l| l.contains("Hi ") && l.contains("49")),
            "{{ 7*7 }} must stay literal: {body}"
        );
    }

    fn config_mistakes_are_refused_with_the_key_named() {
        let cases = [
            (
                "[[stages]]\nname = \"a\"\nanchor = \"shipped_at\"\nopens_after = \"5d\"\ncloses_after = \"2d\"\n",
                "stages[0] (a).closes_after: the window closes (2d) before it opens (5d)",
            ),
            (
                "[[stages]]\nname = \"a\"\nanchor = \"shipped_at\"\nopens_after = \"0s\"\ncloses_after = \"2d\"\nafter = \"b\"\n\
    [[stages]]\nname = \"b\"\nanchor = \"shipped_at\"\nopens_after = \"0s\"\ncloses_after = \"2d\"\n",
                "stages[0] (a).after: stage 'b' comes later",
            ),
            (
                "[[stages]]\nname = \"a\"\nanchor = \"shipped_at\"\nopens_after = \"0s\"\ncloses_after = \"2d\"\nafter = \"nope\"\n",
                "stages[0] (a).after: there is no stage named 'nope'",
            ),
            ("[sending_hours]\nstart = \"9am\"\n", "sending_hours.start: '9am' is not a time of day"),
            ("[lint]\nforbiden = []\n", "unknown field `forbiden`"),
        ];
        for (extra, expected) in cases {
            let env = Env::new(&format!("{BASE_CONFIG}\n{extra}"));
            let out = env.run(&["plan"]);
            assert_eq!(out.status.code(), Some(2), "{extra}");
            assert!(
                stderr(&out).contains(expected),
                "expected '{expected}' in:\n{}",
                stderr(&out)
            );
        }
        // A stage without its templates.
        let env = Env::new(&format!(
            "{BASE_CONFIG}\n[[stages]]\nname = \"thanks\"\nanchor = \"shipped_at\"\nopens_after = \"0s\"\ncloses_after = \"2d\"\n"
        ));
        let out = env.run(&["plan"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr(&out).contains("thanks/subject.txt.tera: missing (stage 'thanks' needs it)"),
            "{}",
            stderr(&out)
        );
    }

    fn template_errors_name_the_file_and_line() {
        let env = Env::with_defaults();
        env.write(
            "templates/shipment/body.txt.tera",
            "Hello\n\n{{ order.id \nbye\n",
        );
        let out = env.run(&["lint"]);
        assert_eq!(out.status.code(), Some(1));
        let expected = format!(
            "{}:4:1: expected",
            env.path("templates/shipment/body.txt.tera").display()
        );
        assert!(stdout(&out).contains(&expected), "{}", stdout(&out));

        // An undefined variable is an error, not an empty string.
        let env = Env::with_defaults();
        env.write(
            "templates/shipment/subject.txt.tera",
            "Hello {{ order.nickname }}\n",
        );
        let out = env.run(&["lint"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stdout(&out).contains("subject.txt.tera"),
            "{}",
            stdout(&out)
        );
        assert!(stdout(&out).contains("nickname"), "{}", stdout(&out));
    }

    fn the_buyers_language_chooses_the_templates_with_fallbacks() {
        let env = Env::with_defaults();
        let file = env.write(
            "o.csv",
            "order_id,buyer_email,buyer_name,product_name,locale,shipped_at\n\
L1,l1@example.com,Anna Huber,Teekanne,de-AT,2026-12-01T10:00:00Z\n\
L2,l2@example.com,Yuki Sato,急須,ja,2026-12-01T10:00:00Z\n\
L3,l3@example.com,Pat Doe,Teapot,pt-BR,2026-12-01T10:00:00Z\n\
L4,l4@example.com,Kim Lee,Teapot,,2026-12-01T10:00:00Z\n",
        );
        assert!(env.run(&["import", file.to_str().unwrap()]).status.success());
        let now = "2026-12-01T12:00:00Z";
        let langs: Vec<(String, String)> = env
            .plan(now)
            .iter()
            .filter(|l| l["stage"] == "shipment")
            .map(|l| (l["order_id"].as_str().unwrap().to_string(), l["locale"].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(
            langs,
            [("L1".into(), "de".into()), ("L2".into(), "ja".into()), ("L3".into(), "en".into()), ("L4".into(), "en".into())]
        );
        env.ok(&["tick", "--now", now]);
        let subjects: Vec<String> = env
            .outbox()
            .iter()
            .map(|(_, raw)| header(raw, "Subject").unwrap())
            .collect();
        assert_eq!(subjects.len(), 4);
        assert!(subjects.contains(&"Ihre Bestellung ist unterwegs: Teekanne".to_string()), "{subjects:?}");
        assert!(subjects.iter().any(|s| s.starts_with("=?utf-8?")), "the Japanese subject is encoded: {subjects:?}");
        assert_eq!(subjects.iter().filter(|s| s.as_str() == "Your Teapot is on its way").count(), 2);
        let preview = env.run(&["preview", "--order", "L1", "--stage", "follow_up"]);
        assert!(String::from_utf8_lossy(&preview.stderr).contains("(language de)"));
    }
}

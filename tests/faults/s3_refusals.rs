//! Scenario 3: Permanent refusals: 550 / 554 at RCPT or after DATA.

use crate::harness::*;

on_both_backends! {
    fn s3_a_550_or_554_at_rcpt_or_after_data_fails_after_one_attempt_with_the_reply_logged() {
        let started = Instant::now();
        let t0 = at(T0);
        let cases = [
            ("rcpt", 550, "mailbox unavailable"),
            ("rcpt", 554, "rejected"),
            ("data", 550, "mailbox unavailable"),
            ("data", 554, "rejected"),
        ];
        // PostgreSQL runs two of the four (the SQL is the same).
        let cases: Vec<_> = match common::backend() {
            common::Backend::Sqlite => cases.to_vec(),
            common::Backend::Postgres => vec![cases[0], cases[3]],
        };
        let mut failed = 0;
        for &(step, code, text) in &cases {
            let code_text = code.to_string();
            let replies = format!("{code},{code},{code}");
            let args: Vec<&str> = match step {
                "rcpt" => vec!["--rcpt-reply", &code_text],
                _ => vec!["--data-replies", &replies],
            };
            let server = SmtpServer::start(&args);
            let env = Env::new(&smtp_config(server.port, &[], "", "", ""));
            let ids: Vec<String> = (1..=3).map(|i| format!("P{step}{code}-{i}")).collect();
            let mut csv = ORDER_HEADER.to_string();
            for id in &ids {
                csv.push_str(&order_row(id, "2026-12-01T09:00:00Z", ""));
            }
            import_ok(&env, "orders.csv", &csv);
            // Later ticks must not try again.
            for t in [t0, t0 + chrono::Duration::days(1)] {
                tick(&env, t);
            }
            let last = t0 + chrono::Duration::days(1);
            let lines = plan(&env, last);
            let rows: Vec<Value> = ok(&env, &["logs", "--json", "--limit", "1000"])
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            for id in &ids {
                let line = lines
                    .iter()
                    .find(|l| l["order_id"] == id.as_str() && l["stage"] == "shipment")
                    .unwrap();
                assert_eq!(line["state"], "failed", "{step} {code}: {line}");
                assert!(
                    line["reason"].as_str().unwrap().contains(&code_text),
                    "the reason names the reply: {line}"
                );
                let rows: Vec<&Value> = rows.iter().filter(|r| r["order_id"] == id.as_str()).collect();
                assert_eq!(rows.len(), 1, "one attempt, one row: {rows:?}");
                assert_eq!(rows[0]["status"], "failed");
                assert_eq!(rows[0]["attempt"], 1);
                assert_eq!(rows[0]["smtp_code"], code, "{rows:?}");
                assert!(
                    rows[0]["smtp_text"].as_str().is_some_and(|t| t.contains(text)),
                    "the server's text is logged: {rows:?}"
                );
                failed += 1;
            }
            let attempts = server.attempts();
            assert_eq!(attempts.len(), 3, "one transaction per order: {attempts:?}");
            assert!(
                attempts.iter().all(|a| a["stage"] == step
                    && a["reply"].as_str().is_some_and(|r| r.starts_with(&code_text))),
                "{attempts:?}"
            );
            assert!(server.received().is_empty());
            check_invariants(
                &env,
                &[&server],
                &Expect { now: last, resend_stages: &[], unattributed: Some(0) },
            );
        }
        report(
            "3 permanent refusals",
            started,
            json!({"cases": cases.len(), "messages": failed, "failed": failed,
                   "attempts_per_message": 1, "duplicates_found": 0, "lost_found": 0}),
        );
    }
}

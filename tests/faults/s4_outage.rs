//! Scenario 4: The SMTP server down for a day.

use crate::harness::*;

on_both_backends! {
    fn s4_a_day_long_outage_sends_what_is_still_open_and_expires_the_rest() {
        if common::backend() == common::Backend::Postgres && !full() {
            // Nothing here is PostgreSQL-specific but the SQL, which S1-S3
            // cover; it runs on PostgreSQL with FOLLOWUPD_FAULTS_FULL=1.
            eprintln!("s4 on PostgreSQL: run with FOLLOWUPD_FAULTS_FULL=1");
            return;
        }
        let started = Instant::now();
        let t0 = at(T0);
        let port = free_port();
        // Backoff doubling from a minute, capped at an hour, with enough
        // attempts to outlast a day (with the default 8 attempts a message
        // gives up about two hours into an outage: see docs/reliability.md).
        let env = Env::new(&smtp_config(
            port,
            &[],
            "max_attempts = 60\nfirst_delay = \"1m\"\nmax_delay = \"1h\"",
            "",
            "",
        ));
        let n = size(8, 200);
        let mut csv = ORDER_HEADER.to_string();
        for i in 0..n {
            // Due now, window open until T0 + 47 h: outlasts the outage.
            csv.push_str(&order_row(&format!("OPEN{i:03}"), "2026-12-01T09:00:00Z", ""));
            // Due now, window closes at T0 + 8 h: inside the outage.
            csv.push_str(&order_row(&format!("SHUT{i:03}"), "2026-11-29T18:00:00Z", ""));
            // Shipped during the outage, window open until T0 + 60 h.
            csv.push_str(&order_row(&format!("LATE{i:03}"), "2026-12-01T22:00:00Z", ""));
        }
        import_ok(&env, "orders.csv", &csv);
        let back = t0 + chrono::Duration::days(1);
        let (_, outage_ticks) =
            tick_until_settled(&env, t0, back - minutes(1), chrono::Duration::hours(2));
        let db = Db::open(&env);
        let tried = db.scalar("SELECT COUNT(*) FROM send_log WHERE status = 'retrying'");
        let early: Vec<(String, String)> = db.strings(
            "SELECT order_id, state FROM stages WHERE stage = 'shipment' ORDER BY order_id",
        );
        drop(db);
        for (id, state) in &early {
            let expected = if id.starts_with("SHUT") { "expired" } else { "retrying" };
            assert_eq!(state, expected, "{id} during the outage: {early:?}");
        }

        let server = SmtpServer::start_on(Some(port), &[]);
        let (last, after_ticks) =
            tick_until_settled(&env, back, back + chrono::Duration::hours(6), minutes(15));
        let figures = check_invariants(
            &env,
            &[&server],
            &Expect { now: last, resend_stages: &[], unattributed: None },
        );
        let db = Db::open(&env);
        let states = db.strings(
            "SELECT order_id, state FROM stages WHERE stage = 'shipment' ORDER BY order_id",
        );
        let reasons = db.strings(
            "SELECT order_id, COALESCE(reason, '') FROM stages WHERE stage = 'shipment' \
             AND state = 'expired' ORDER BY order_id",
        );
        drop(db);
        let received: HashSet<String> = server
            .received()
            .iter()
            .map(|r| bare_id(r["message_id"].as_str().unwrap()))
            .collect();
        for (id, state) in &states {
            let message_id = format!("followupd.shipment.shop.{id}@test.example");
            if id.starts_with("SHUT") {
                assert_eq!(state, "expired", "{id}");
                assert!(!received.contains(&message_id), "{id} went out late");
            } else {
                assert_eq!(state, "sent", "{id}: {states:?}");
                assert!(received.contains(&message_id), "{id} never arrived");
            }
        }
        assert!(reasons.iter().all(|(_, r)| r.contains("window closed")), "{reasons:?}");
        assert_eq!(figures.received, 2 * n, "each open shipment once, nothing else");
        assert_eq!(figures.distinct_received, 2 * n);
        // The follow-ups (estimated delivery) are still ahead, scheduled
        // inside their windows: the checker looked at their next sends.
        assert_eq!(figures.state("scheduled"), 6 * n, "{:?}", figures.stages);
        report(
            "4 server down for a day",
            started,
            json!({
                "messages": 3 * n,
                "sent_after_return": 2 * n,
                "expired": n,
                "failed_connection_attempts": tried,
                "ticks_during_outage": outage_ticks,
                "ticks_after": after_ticks,
                "duplicates_found": figures.duplicates,
                "lost_found": figures.lost,
            }),
        );
    }
}

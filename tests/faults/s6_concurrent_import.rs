//! Scenario 6: `followupd import` while the daemon sends (SQLite).

use crate::harness::*;

#[test]
fn s6_imports_while_the_daemon_sends_lose_no_write_and_never_see_a_locked_database() {
    let started = Instant::now();
    let due = size(200, 3000);
    let bulk = size(1200, 50_000);
    let server = SmtpServer::start(&[]);
    let env = Env::new(&smtp_config(server.port, &[], "", "", ""));
    let tomorrow = rfc3339(Utc::now() + chrono::Duration::days(1));
    import_ok(&env, "due.csv", &due_now_csv("A", due));
    let mut daemon = Daemon::start(&env, "run", &[]);
    daemon.wait_ready();
    let mut received = LineCounter::new(server.dir.join("received.jsonl"));
    assert!(
        eventually(Duration::from_secs(30), || received.count() > 0),
        "sending never started; log:\n{}",
        daemon.log_tail()
    );

    // While it sends: two imports at once, each with a due part and a
    // bulk part scheduled for tomorrow (thousands of rows, in 1,000-row
    // transactions); one also marks half the due orders opted out.
    let mut more_due = ORDER_HEADER.to_string();
    let mut updates = ORDER_HEADER.to_string();
    for i in 0..due {
        more_due.push_str(&order_row(&format!("B{i:05}"), "-1h", ""));
    }
    for i in 0..bulk {
        more_due.push_str(&order_row(&format!("C{i:06}"), &tomorrow, ""));
        updates.push_str(&order_row(&format!("D{i:06}"), &tomorrow, ""));
    }
    let mut opt_out = "order_id,buyer_email,product_name,opted_out\n".to_string();
    for i in (0..due).step_by(2) {
        opt_out.push_str(&format!(
            "A{i:05},a{i:05}@buyer.example,Teapot A{i:05},true\n"
        ));
    }
    let files = [
        env.write("more_due.csv", &more_due),
        env.write("updates.csv", &updates),
        env.write("opt_out.csv", &opt_out),
    ];
    let outputs: Vec<Out> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .iter()
            .map(|f| {
                let env = &env;
                scope.spawn(move || {
                    followupd(
                        env,
                        &["import", f.to_str().unwrap()],
                        Duration::from_secs(600),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // A last import renames every bulk product, while the daemon is still
    // scheduling the bulk rows.
    let mut rename = "order_id,buyer_email,product_name\n".to_string();
    for i in 0..bulk {
        rename.push_str(&format!("C{i:06},c{i:06}@buyer.example,Kettle C{i:06}\n"));
    }
    let renamed = followupd(
        &env,
        &["import", env.write("rename.csv", &rename).to_str().unwrap()],
        Duration::from_secs(600),
    );
    let expected = [
        format!("imported {}, updated 0, rejected 0", due + bulk),
        format!("imported {bulk}, updated 0, rejected 0"),
        format!("imported 0, updated {}, rejected 0", due.div_ceil(2)),
        format!("imported 0, updated {bulk}, rejected 0"),
    ];
    for (out, want) in outputs.iter().chain([&renamed]).zip(&expected) {
        assert!(out.status.success(), "import failed: {}", out.describe());
        assert_eq!(out.stdout.trim(), want, "{}", out.describe());
        assert!(
            !out.stderr.contains("database is locked") && !out.stderr.contains("busy"),
            "{}",
            out.describe()
        );
    }

    let db = Db::open(&env);
    let settled = eventually(Duration::from_secs(120 + due as u64 / 10), || {
        db.scalar(
            "SELECT COUNT(*) FROM stages WHERE stage = 'shipment' AND state IN ('scheduled', \
             'retrying', 'sending') AND order_id NOT LIKE 'C%' AND order_id NOT LIKE 'D%'",
        ) == 0
    });
    assert!(
        settled,
        "the due shipments did not all go; log:\n{}",
        daemon.log_tail()
    );
    daemon.stop(Duration::from_secs(30));
    let log = daemon.log();
    assert!(
        !log.contains("database is locked")
            && !log.contains("pass failed")
            && !log.contains("could not be processed"),
        "the daemon hit errors while imports ran:\n{}",
        daemon.log_tail()
    );

    // No lost write: every order is there with its last values, every
    // stage row exists, the opt-outs stuck and the renames too.
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM orders"),
        (2 * due + 2 * bulk) as i64
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM stages"),
        3 * (2 * due + 2 * bulk) as i64
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM orders WHERE order_id LIKE 'C%' AND product_name LIKE 'Kettle C%'"),
        bulk as i64
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM orders WHERE opted_out = 1"),
        due.div_ceil(2) as i64
    );
    // An opted-out buyer got the shipment notice only if it went before
    // the opt-out arrived; never a notice after it.
    let opted: Vec<(String, String)> = db.strings(
        "SELECT s.order_id, s.state FROM stages s JOIN orders o ON o.marketplace = s.marketplace \
         AND o.order_id = s.order_id WHERE o.opted_out = 1 AND s.stage = 'shipment'",
    );
    drop(db);
    assert!(
        opted.iter().all(|(_, s)| s == "sent" || s == "skipped"),
        "{opted:?}"
    );
    let figures = check_invariants(
        &env,
        &[&server],
        &Expect {
            now: Utc::now(),
            resend_stages: &[],
            unattributed: Some(0),
        },
    );
    assert_eq!(
        figures.state("sent") + opted.iter().filter(|(_, s)| s == "skipped").count(),
        2 * due,
        "{:?}",
        figures.stages
    );
    report(
        "6 import while sending",
        started,
        json!({
            "messages": 2 * due,
            "rows_imported_while_sending": 2 * due + 3 * bulk + due.div_ceil(2),
            "concurrent_imports": 3,
            "opted_out_before_sent": opted.iter().filter(|(_, s)| s == "skipped").count(),
            "sent": figures.state("sent"),
            "locked_errors": 0,
            "duplicates_found": figures.duplicates,
            "lost_found": figures.lost,
        }),
    );
}

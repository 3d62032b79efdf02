//! Scenario 2: SMTP faults on 30% of transactions.

use crate::harness::*;

/// The faults that hit after the final dot: the server has the message,
/// the client cannot know.
const AFTER_THE_DOT: [&str; 2] = ["stall", "reset-after-dot"];

fn smtp_faults(orders: usize) {
    let started = Instant::now();
    let (_, seed) = rng_for("s2_smtp_faults");
    let seed_text = (seed % 1_000_000_007).to_string();
    let server = SmtpServer::start(&[
        "--fault-rate",
        "0.3",
        "--fault-seed",
        &seed_text,
        "--faults",
        "421,451,reset,greeting,stall,reset-after-dot",
    ]);
    // A stall costs send_timeout rather than command_timeout (see
    // s2_a_stalled_reply_is_given_up_after_command_timeout), so keep both short.
    let env = Env::new(&smtp_config(
        server.port,
        &[("command_timeout", "\"1s\""), ("send_timeout", "\"2s\"")],
        "max_attempts = 40\nfirst_delay = \"1m\"\nmax_delay = \"16m\"",
        "",
        "",
    ));
    // Default stages: shipment now, follow-up 2-5 days and feedback
    // request 7-14 days after delivery (after the follow-up).
    let t0 = at(T0);
    let mut csv = ORDER_HEADER.to_string();
    for i in 0..orders {
        csv.push_str(&order_row(
            &format!("F{i:05}"),
            "2026-12-01T09:00:00Z",
            "2026-12-02T09:00:00Z",
        ));
    }
    import_ok(&env, "orders.csv", &csv);
    let (last, ticks) = tick_until_settled(&env, t0, t0 + chrono::Duration::days(20), minutes(2));

    let attempts = server.attempts();
    let faults: Vec<&str> = attempts
        .iter()
        .filter_map(|a| a["fault"].as_str())
        .collect();
    let count = |name: &str| faults.iter().filter(|f| **f == name).count();
    let greetings = count("greeting");
    let after_dot: usize = AFTER_THE_DOT.iter().map(|f| count(f)).sum();
    let figures = check_invariants(
        &env,
        &[&server],
        &Expect {
            now: last,
            resend_stages: &[],
            unattributed: Some(greetings),
        },
    );

    // Every message sent exactly once, or unknown where the fault hit after
    // the final dot; a feedback request whose follow-up ended unknown is
    // skipped. Nothing expired, failed or was left open.
    let db = Db::open(&env);
    let stages = db.stages();
    drop(db);
    let mut events: HashMap<String, Vec<&Value>> = HashMap::new();
    for a in &attempts {
        if let Some(id) = a["message_id"].as_str() {
            events.entry(bare_id(id)).or_default().push(a);
        }
    }
    let received: HashMap<String, usize> =
        server.received().iter().fold(HashMap::new(), |mut m, r| {
            *m.entry(bare_id(r["message_id"].as_str().unwrap()))
                .or_default() += 1;
            m
        });
    let state_of: HashMap<(String, String), String> = stages
        .iter()
        .map(|s| ((s.order_id.clone(), s.stage.clone()), s.state.clone()))
        .collect();
    let mut problems = Vec::new();
    for s in &stages {
        let name = format!("{}/{}", s.order_id, s.stage);
        let id = s.message_id.clone().unwrap_or_default();
        let seen = events.get(&id).cloned().unwrap_or_default();
        let doubt = seen
            .iter()
            .position(|a| AFTER_THE_DOT.contains(&a["stage"].as_str().unwrap_or("")));
        match s.state.as_str() {
            "unknown" => match doubt {
                Some(i) if i + 1 == seen.len() => {}
                Some(_) => problems.push(format!("{name}: attempted again after a doubt")),
                None => problems.push(format!(
                    "{name}: unknown without a fault after the final dot: {seen:?}"
                )),
            },
            "sent" => {
                let last_ok = seen.last().is_some_and(|a| {
                    a["stage"] == "data"
                        && a["reply"].as_str().is_some_and(|r| r.starts_with("250"))
                });
                if doubt.is_some() || !last_ok || received.get(&id) != Some(&1) {
                    problems.push(format!(
                        "{name}: sent, but the server saw {seen:?} and received it {:?} times",
                        received.get(&id)
                    ));
                }
            }
            "skipped" => {
                let prerequisite = state_of
                    .get(&(s.order_id.clone(), "follow_up".to_string()))
                    .map(String::as_str);
                if s.stage != "review_request"
                    || prerequisite != Some("unknown")
                    || !seen.is_empty()
                {
                    problems.push(format!(
                        "{name}: skipped (follow_up {prerequisite:?}, server saw {seen:?})"
                    ));
                }
            }
            other => problems.push(format!("{name}: ended {other}")),
        }
    }
    assert!(
        problems.is_empty(),
        "{} stages with an unexpected outcome:\n{}",
        problems.len(),
        problems[..problems.len().min(40)].join("\n")
    );
    assert_eq!(
        figures.state("unknown"),
        after_dot,
        "one unknown per fault after the final dot"
    );
    report(
        "2 smtp faults",
        started,
        json!({
            "seed": seed_text,
            "orders": orders,
            "messages": orders * 3,
            "ticks": ticks,
            "faults": {
                "421": count("421"), "451": count("451"), "reset": count("reset"),
                "greeting": greetings, "stall": count("stall"),
                "reset-after-dot": count("reset-after-dot"),
            },
            "server_transactions": figures.server_transactions,
            "logged_attempts": figures.logged_attempts,
            "sent": figures.state("sent"),
            "unknown": figures.state("unknown"),
            "skipped": figures.state("skipped"),
            "duplicates_found": figures.duplicates,
            "lost_found": figures.lost,
        }),
    );
}

on_both_backends! {
    fn s2_smtp_faults_on_30_percent_of_transactions_end_sent_once_or_unknown() {
        match common::backend() {
            common::Backend::Sqlite => smtp_faults(size(45, 1667)),
            common::Backend::Postgres => smtp_faults(size(15, 500)),
        }
    }
}

/// README: "every SMTP step has command_timeout ... and every whole send is
/// bounded by send_timeout". A server that goes silent after the final dot
/// must cost about one command_timeout (plus a bounded goodbye), not the
/// whole send_timeout.
#[test]
fn s2_a_stalled_reply_is_given_up_after_command_timeout() {
    let server = SmtpServer::start(&[
        "--fault-rate",
        "1",
        "--fault-seed",
        "1",
        "--faults",
        "stall",
    ]);
    let env = Env::new(&smtp_config(
        server.port,
        &[("command_timeout", "\"1s\""), ("send_timeout", "\"8s\"")],
        "",
        "",
        "",
    ));
    import_ok(
        &env,
        "orders.csv",
        &format!(
            "{ORDER_HEADER}{}",
            order_row("STALL1", "2026-12-01T09:00:00Z", "")
        ),
    );
    let started = Instant::now();
    tick(&env, at(T0));
    let took = started.elapsed();
    let line = plan(&env, at(T0))
        .into_iter()
        .find(|l| l["order_id"] == "STALL1" && l["stage"] == "shipment")
        .unwrap();
    assert_eq!(line["state"], "unknown", "{line}");
    assert!(
        took < Duration::from_secs(5),
        "a reply that never came held the send for {took:?} with command_timeout = 1s \
         (send_timeout = 8s); the send log says: {:?}",
        logs_for(&env, "STALL1")
            .first()
            .map(|r| r["smtp_text"].clone())
    );
}

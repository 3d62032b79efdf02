//! Scenario 1: SIGKILL at random moments during `followupd run`.

use crate::harness::*;

fn sigkill_during_run(orders: usize, rounds: usize) {
    let started = Instant::now();
    let (mut rng, seed) = rng_for("s1_sigkill_during_run");
    let server = SmtpServer::start(&[]);
    let env = Env::new(&smtp_config(server.port, &[], "", "", DUE_AT_ONCE_STAGES));
    let mut received = LineCounter::new(server.dir.join("received.jsonl"));
    let mut kills = 0;
    let mut early_kills = 0;
    let mut in_flight: BTreeSet<InFlight> = BTreeSet::new();
    // Of those, the ones whose message the server never got.
    let mut never_transmitted: BTreeSet<InFlight> = BTreeSet::new();
    let mut figures = Figures::default();
    let mut failed_rounds: Vec<(usize, Vec<String>)> = Vec::new();
    let per_round = orders * 3;
    let settle_limit = Duration::from_secs(60 + per_round as u64 / 20);
    for round in 0..rounds {
        let mut csv = ORDER_HEADER.to_string();
        for i in 0..orders {
            csv.push_str(&order_row(&format!("K{round:02}-{i:05}"), "-1h", ""));
        }
        let file = env.write(&format!("round{round}.csv"), &csv);
        let args = ["--import", file.to_str().unwrap()];
        let round_start = received.count();
        for k in 0..1 + rng.usize(0..3) {
            let mut daemon = Daemon::start(&env, &format!("r{round}k{k}"), &args);
            if rng.f64() < 0.2 {
                // Anywhere: starting up, settling, importing or sending.
                early_kills += 1;
                std::thread::sleep(Duration::from_millis(rng.u64(0..400)));
            } else {
                // Mid-batch: after a random number of this round's messages.
                let target = round_start + rng.usize(1..=per_round);
                let deadline = Instant::now() + settle_limit;
                while received.count() < target && Instant::now() < deadline && daemon.alive() {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            assert!(
                daemon.alive(),
                "followupd run died before the kill ({:?}); log:\n{}",
                daemon.exit,
                daemon.log_tail()
            );
            daemon.kill9();
            kills += 1;
            let now_in_flight = Db::try_open(&env)
                .map(|db| db.try_in_flight())
                .unwrap_or_default();
            // A send slot is held from the claim until the transport is
            // done, so a process leaves at most POOL claimed stages whose
            // message never reached the server. Messages it had handed over
            // but not yet recorded are in `sending` too; those are on the
            // server (which records what it accepted within moments).
            std::thread::sleep(Duration::from_millis(200));
            let on_server: HashSet<String> = server
                .received_ids()
                .iter()
                .filter(|id| !id.is_empty())
                .map(|id| bare_id(id))
                .collect();
            never_transmitted.extend(
                now_in_flight
                    .iter()
                    .filter(|s| !on_server.contains(&s.4))
                    .cloned(),
            );
            assert!(
                never_transmitted.len() <= POOL * kills,
                "{} claimed stages never transmitted after {kills} kills",
                never_transmitted.len()
            );
            in_flight.extend(now_in_flight);
        }
        // The last start of the round runs until everything is settled.
        let mut daemon = Daemon::start(&env, &format!("r{round}final"), &args);
        daemon.wait_ready();
        let db = Db::open(&env);
        let settled = eventually(settle_limit, || db.open_stages() == 0);
        drop(db);
        assert!(
            settled,
            "round {round} not settled after {settle_limit:?}; log:\n{}",
            daemon.log_tail()
        );
        daemon.stop(Duration::from_secs(20));
        let (found, violations) = invariants(
            &env,
            &[&server],
            &Expect {
                now: Utc::now(),
                resend_stages: &["follow_up"],
                unattributed: None,
            },
        );
        figures = found;
        if !violations.is_empty() {
            failed_rounds.push((round, violations));
        }
        let unknown = figures.state("unknown");
        assert!(
            unknown <= in_flight.len(),
            "round {round}: {unknown} unknown, {} in flight at {kills} kills",
            in_flight.len()
        );
        assert_eq!(
            figures.state("sent") + unknown + figures.state("skipped"),
            (round + 1) * per_round,
            "every stage sent, in doubt or skipped after an in-doubt follow-up: {:?}",
            figures.stages
        );
        // Only feedback requests whose follow-up never went are skipped;
        // the follow-up itself is re-sent, so that never happens here.
        assert_eq!(figures.state("skipped"), 0, "{:?}", figures.stages);
    }
    report(
        "1 sigkill during run",
        started,
        json!({
            "seed": seed,
            "rounds": rounds,
            "messages": rounds * per_round,
            "kills": kills,
            "kills_at_random_times": early_kills,
            "in_flight_at_kills": in_flight.len(),
            "never_transmitted_at_kills": never_transmitted.len(),
            "unknown": figures.state("unknown"),
            "sent": figures.state("sent"),
            "received": figures.received,
            "resends": figures.resends,
            "duplicates_found": figures.duplicates,
            "lost_found": figures.lost,
            "server_transactions": figures.server_transactions,
            "logged_attempts": figures.logged_attempts,
            "rounds_with_violations": failed_rounds.len(),
        }),
    );
    for (round, violations) in &failed_rounds {
        eprintln!(
            "round {round}: {} violations: {violations:?}",
            violations.len()
        );
    }
    if let Some((round, violations)) = failed_rounds.first() {
        assert_invariants(&figures, violations);
        unreachable!("round {round}");
    }
}

on_both_backends! {
    fn s1_sigkill_at_random_moments_during_run_loses_and_duplicates_nothing() {
        match common::backend() {
            common::Backend::Sqlite => sigkill_during_run(size(100, 1667), size(5, 20)),
            // A second backend at a third of the size keeps the default run short.
            common::Backend::Postgres => sigkill_during_run(size(34, 1667), size(3, 5)),
        }
    }
}

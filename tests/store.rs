//! The send path's group commit (`store::writer`), driven in process
//! against real SQLite and PostgreSQL databases: writes queued together share
//! a transaction, yet each keeps its own guard and its own answer; and the
//! background checkpoints that keep a SQLite file's log off the paths that
//! write it.

mod common;

use chrono::{DateTime, Utc};
use common::Env;
use followupd::config::Config;
use followupd::order::OrderKey;
use followupd::schedule::StageState;
use followupd::store::{
    Claim, Finish, NewLogEntry, NewMessage, Reporter, StageUpdate, Store, StoreError,
};

/// An installation with `n` imported orders (O0, O1, …), and the store
/// opened on its database.
fn setup(n: usize) -> (Env, tokio::runtime::Runtime, Store, Vec<OrderKey>) {
    let env = Env::with_defaults();
    let mut csv = String::from(common::CSV_HEADER);
    for i in 0..n {
        csv.push_str(&format!(
            "O{i},b{i}@buyer.example,Bo,Mug,UTC,2026-12-01T10:00:00Z,,shipped,,,\n"
        ));
    }
    env.ok(&["import", env.write("orders.csv", &csv).to_str().unwrap()]);
    let config = Config::load(&env.path("config.toml")).expect("config loads");
    let runtime = runtime();
    let store = runtime
        .block_on(Store::open(&config.database_url))
        .expect("store opens");
    let keys = runtime
        .block_on(store.due_orders(at("2030-01-01T00:00:00Z"), 10_000))
        .expect("orders load")
        .into_iter()
        .map(|due| due.loaded.expect("every order reads back").0.key)
        .collect();
    (env, runtime, store, keys)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The size of a file.
fn file_size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).expect("database file").len()
}

/// Waits until the SQLite file at `database` has `wanted` bytes. In WAL
/// mode nothing but a checkpoint writes that file; `what` names what
/// should have reached it.
fn assert_file_grows(database: &std::path::Path, wanted: u64, what: &str) {
    assert!(
        common::eventually(std::time::Duration::from_secs(10), || {
            file_size(database) >= wanted
        }),
        "the database file stayed at {} bytes (wanted {wanted}); {what} are still only in the log",
        file_size(database)
    );
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn claim(stage: &str, owner: &str, message_id: &str) -> Claim {
    Claim {
        stage: stage.into(),
        expected: StageState::Scheduled,
        owner: owner.into(),
        lease_until: at("2030-01-01T00:00:00Z"),
        attempts: 1,
        reason: "handed to the transport".into(),
        message_id: message_id.into(),
    }
}

fn message(message_id: &str) -> NewMessage {
    NewMessage {
        message_id: message_id.into(),
        recipient: "b@buyer.example".into(),
        subject: format!("subject of {message_id}"),
        raw: format!("Message-ID: <{message_id}>\r\n\r\nbody\r\n").into_bytes(),
    }
}

fn outcome(stage: &str, state: StageState, reason: &str) -> StageUpdate {
    StageUpdate {
        stage: stage.into(),
        expected: StageState::Sending,
        state,
        next_check_at: None,
        retry_at: None,
        attempts: 1,
        reason: Some(reason.into()),
        message_id: None,
    }
}

/// Skips a fresh order's follow-up, giving `reason`.
fn skip_follow_up(reason: &str) -> StageUpdate {
    StageUpdate {
        stage: "follow_up".into(),
        expected: StageState::Scheduled,
        state: StageState::Skipped,
        next_check_at: None,
        retry_at: None,
        attempts: 0,
        reason: Some(reason.into()),
        message_id: None,
    }
}

/// An outcome fenced by the claim `(owner, token)`.
fn finish(
    key: &OrderKey,
    owner: &str,
    token: i64,
    update: StageUpdate,
    entry: NewLogEntry,
    by: Reporter,
    at: DateTime<Utc>,
) -> Finish {
    Finish {
        key: key.clone(),
        owner: owner.to_string(),
        token,
        update,
        entry,
        by,
        at,
    }
}

fn log_entry(status: StageState, detail: &str) -> NewLogEntry {
    NewLogEntry {
        at: at("2026-12-02T10:00:00Z"),
        to: "b@buyer.example".into(),
        message_id: None,
        attempt: 1,
        status,
        smtp_code: Some(250),
        smtp_text: Some("ok".into()),
        detail: Some(detail.into()),
        duration_ms: Some(1),
        subject: None,
        message_ref: None,
    }
}

fn stage_state(
    runtime: &tokio::runtime::Runtime,
    store: &Store,
    key: &OrderKey,
    stage: &str,
) -> String {
    runtime
        .block_on(store.load_order(key))
        .unwrap()
        .unwrap()
        .1
        .into_iter()
        .find(|r| r.stage == stage)
        .unwrap()
        .state
        .to_string()
}

fn log_details(runtime: &tokio::runtime::Runtime, store: &Store) -> Vec<String> {
    let query = followupd::store::LogQuery {
        limit: 10_000,
        ..Default::default()
    };
    let mut details: Vec<String> = runtime
        .block_on(store.logs(&query))
        .unwrap()
        .into_iter()
        .filter_map(|e| e.detail)
        .collect();
    details.sort();
    details
}

on_both_backends! {
    fn many_claims_queued_together_each_get_their_own_token_and_message() {
        let (_env, runtime, store, keys) = setup(40);
        let now = at("2026-12-02T10:00:00Z");
        let results = runtime.block_on(async {
            let claims = keys.iter().enumerate().map(|(i, key)| {
                let id = format!("m{i}@shop.example");
                let store = &store;
                async move {
                    store
                        .claim_and_store(key, claim("shipment", "me", &id), Some(message(&id)), now)
                        .await
                }
            });
            futures_util::future::join_all(claims).await
        });
        let mut refs = std::collections::HashSet::new();
        for (i, result) in results.into_iter().enumerate() {
            let (token, message_ref) = result.unwrap().expect("every claim is won");
            assert_eq!(token, 1, "first claim of a fresh stage");
            let id = message_ref.expect("the message is stored");
            assert!(refs.insert(id), "message ids are distinct");
            let stored = runtime.block_on(store.message(id)).unwrap().unwrap();
            let raw = String::from_utf8(stored.raw).unwrap();
            assert!(
                raw.contains(&format!("<m{i}@shop.example>")),
                "claim {i} got the id of another claim's message: {raw}"
            );
            assert_eq!(stage_state(&runtime, &store, &keys[i], "shipment"), "sending");
        }
    }

    fn two_claims_on_one_stage_queued_together_have_one_winner() {
        let (_env, runtime, store, keys) = setup(1);
        let now = at("2026-12-02T10:00:00Z");
        let key = &keys[0];
        let (a, b) = runtime.block_on(async {
            tokio::join!(
                store.claim_and_store(key, claim("shipment", "a", "x@s"), Some(message("x@s")), now),
                store.claim_and_store(key, claim("shipment", "b", "x@s"), Some(message("x@s")), now),
            )
        });
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(
            a.is_some() != b.is_some(),
            "exactly one claim wins: {a:?} {b:?}"
        );
        let won = a.or(b).unwrap();
        assert!(won.1.is_some());
        // The loser stored nothing: only the winner's message exists.
        assert!(runtime.block_on(store.message(won.1.unwrap() + 1)).unwrap().is_none());
    }

    fn outcomes_are_fenced_by_the_claim_token_and_logged_as_asked() {
        let (_env, runtime, store, keys) = setup(3);
        let now = at("2026-12-02T10:00:00Z");
        let tokens: Vec<i64> = keys
            .iter()
            .map(|key| {
                runtime
                    .block_on(store.claim_and_store(key, claim("shipment", "me", "id@s"), None, now))
                    .unwrap()
                    .unwrap()
                    .0
            })
            .collect();
        let (right, stale_logged, stale_unlogged) = runtime.block_on(async {
            tokio::join!(
                store.finish_with_log(finish(&keys[0], "me", tokens[0], outcome("shipment", StageState::Sent, "sent"),
                    log_entry(StageState::Sent, "first"), Reporter::Settler, now)),
                store.finish_with_log(finish(&keys[1], "me", tokens[1] + 1, outcome("shipment", StageState::Sent, "sent"),
                    log_entry(StageState::Sent, "second"), Reporter::Sender, now)),
                store.finish_with_log(finish(&keys[2], "someone else", tokens[2], outcome("shipment", StageState::Unknown, "x"),
                    log_entry(StageState::Unknown, "third"), Reporter::Settler, now)),
            )
        });
        assert!(right.unwrap(), "the holder's outcome is recorded");
        assert!(!stale_logged.unwrap(), "a stale token records nothing");
        assert!(!stale_unlogged.unwrap(), "another owner records nothing");
        assert_eq!(stage_state(&runtime, &store, &keys[0], "shipment"), "sent");
        assert_eq!(stage_state(&runtime, &store, &keys[1], "shipment"), "sending");
        assert_eq!(stage_state(&runtime, &store, &keys[2], "shipment"), "sending");
        // Logged: the recorded outcome, and the fenced one that asked to be.
        assert_eq!(log_details(&runtime, &store), vec!["first", "second"]);
    }

    fn updates_to_one_stage_in_one_batch_apply_in_order() {
        let (_env, runtime, store, keys) = setup(1);
        let now = at("2026-12-02T10:00:00Z");
        let key = &keys[0];
        let step = |from: StageState, to: StageState| StageUpdate {
            stage: "follow_up".into(),
            expected: from,
            state: to,
            next_check_at: None,
            retry_at: None,
            attempts: 0,
            reason: Some(format!("{from} to {to}")),
            message_id: None,
        };
        let applied = runtime
            .block_on(store.update_stages(
                key,
                vec![
                    step(StageState::Scheduled, StageState::Retrying),
                    step(StageState::Retrying, StageState::Skipped),
                    step(StageState::Retrying, StageState::Expired),
                ],
                now,
            ))
            .unwrap();
        assert_eq!(applied, vec![true, true, false]);
        assert_eq!(stage_state(&runtime, &store, key, "follow_up"), "skipped");
    }

    fn a_failing_write_fails_alone() {
        let (_env, runtime, store, keys) = setup(3);
        let now = at("2026-12-02T10:00:00Z");
        // A trigger that rejects one particular change stands in for any
        // write the database refuses.
        let poison = match common::backend() {
            common::Backend::Sqlite => vec![
                "CREATE TRIGGER poison BEFORE UPDATE ON stages WHEN NEW.reason = 'poison' \
                 BEGIN SELECT RAISE(ABORT, 'poisoned'); END",
            ],
            common::Backend::Postgres => vec![
                "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN \
                 IF NEW.reason = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER poison BEFORE UPDATE ON stages FOR EACH ROW EXECUTE FUNCTION poison()",
            ],
        };
        for sql in poison {
            runtime.block_on(sqlx::query(sql).execute(store.pool())).unwrap();
        }
        let update = skip_follow_up;
        let (a, b, c) = runtime.block_on(async {
            tokio::join!(
                store.update_stages(&keys[0], vec![update("fine")], now),
                store.update_stages(&keys[1], vec![update("poison")], now),
                store.update_stages(&keys[2], vec![update("fine")], now),
            )
        });
        assert_eq!(a.unwrap(), vec![true]);
        let error = b.expect_err("the poisoned write fails");
        assert!(
            matches!(error, StoreError::Database(_) | StoreError::Sqlite(_)),
            "{error}"
        );
        assert!(error.to_string().contains("poisoned"), "{error}");
        assert_eq!(c.unwrap(), vec![true]);
        assert_eq!(stage_state(&runtime, &store, &keys[0], "follow_up"), "skipped");
        assert_eq!(stage_state(&runtime, &store, &keys[1], "follow_up"), "scheduled");
        assert_eq!(stage_state(&runtime, &store, &keys[2], "follow_up"), "skipped");
        // The writer carries on after the failure.
        let again = runtime
            .block_on(store.update_stages(&keys[1], vec![update("fine now")], now))
            .unwrap();
        assert_eq!(again, vec![true]);
        runtime.block_on(store.close());
    }
}

on_both_backends! {
    fn an_unreadable_stored_order_is_reported_and_the_others_still_go_out() {
        let (env, runtime, store, keys) = setup(3);
        // A hand edit the importer would never have let in.
        runtime
            .block_on(
                sqlx::query("UPDATE orders SET buyer_email = 'not an address' WHERE order_id = 'O1'")
                    .execute(store.pool()),
            )
            .unwrap();
        runtime.block_on(store.close());
        assert_eq!(keys.len(), 3);
        let out = env.run(&["tick", "--now", "2026-12-01T12:00:00Z"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stdout.contains("sent 2,"), "stdout: {stdout}\nstderr: {stderr}");
        assert!(stdout.contains("errors 1"), "stdout: {stdout}");
        assert!(stderr.contains("O1"), "the bad order is named: {stderr}");
        let sent: Vec<String> = env.outbox().into_iter().map(|(name, _)| name).collect();
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert!(sent.iter().all(|name| !name.contains("O1")), "{sent:?}");
    }
}

/// PostgreSQL only: its server can cut a session on purpose.
#[test]
fn after_its_connection_is_cut_the_writer_fails_that_batch_and_carries_on() {
    if !common::use_postgres() {
        return;
    }
    let (_env, runtime, store, keys) = setup(3);
    let now = at("2026-12-02T10:00:00Z");
    let skip = skip_follow_up;
    let first = runtime.block_on(store.update_stages(&keys[0], vec![skip("before")], now));
    assert_eq!(first.unwrap(), vec![true]);
    // Only the writer's session is cut: the pool's own sessions, and those
    // of tests running beside this one, are left alone (cutting them made
    // this test's own queries fail with 57P01 now and then).
    let writer = writer_session(&runtime, &store);
    runtime
        .block_on(
            sqlx::query("SELECT pg_terminate_backend(CAST($1 AS INTEGER))")
                .bind(writer)
                .execute(store.pool()),
        )
        .unwrap();
    // Termination is asynchronous: wait until the session is really gone.
    let gone = common::eventually(std::time::Duration::from_secs(10), || {
        let alive: i64 = runtime
            .block_on(
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = CAST($1 AS INTEGER)",
                )
                .bind(writer)
                .fetch_one(store.pool()),
            )
            .unwrap_or(1);
        alive == 0
    });
    assert!(gone, "the writer's session ended");
    let cut = runtime.block_on(store.update_stages(&keys[1], vec![skip("while cut")], now));
    assert!(
        cut.is_err(),
        "the write on the cut connection fails: {cut:?}"
    );
    let after = runtime.block_on(store.update_stages(&keys[2], vec![skip("after")], now));
    assert_eq!(
        after.unwrap(),
        vec![true],
        "the next write gets a new connection"
    );
    assert_eq!(
        stage_state(&runtime, &store, &keys[1], "follow_up"),
        "scheduled"
    );
    assert_eq!(
        stage_state(&runtime, &store, &keys[2], "follow_up"),
        "skipped"
    );
}

/// The PostgreSQL session the store's writer commits on: the one client
/// session on the store's database that is not one of its pool's (the
/// writer takes its connection out of the pool). The pool's sessions are
/// found by holding every connection it has at once. Sessions of a process
/// that has just exited (the import in `setup`) linger for a moment, so
/// this asks again until one session is left.
fn writer_session(runtime: &tokio::runtime::Runtime, store: &Store) -> i64 {
    let mut others = Vec::new();
    let found = common::eventually(std::time::Duration::from_secs(10), || {
        others = sessions_outside_the_pool(runtime, store);
        others.len() == 1
    });
    assert!(
        found,
        "the writer has a session of its own, the only one outside the pool: {others:?}"
    );
    others[0]
}

fn sessions_outside_the_pool(runtime: &tokio::runtime::Runtime, store: &Store) -> Vec<i64> {
    runtime.block_on(async {
        let pool = store.pool();
        let mut held = Vec::new();
        // At least one, to ask with (the pool may hold none just now).
        for _ in 0..pool.size().max(1) {
            held.push(pool.acquire().await.unwrap());
        }
        let mut pool_pids = Vec::new();
        for conn in &mut held {
            let pid: i64 = sqlx::query_scalar("SELECT CAST(pg_backend_pid() AS BIGINT)")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            pool_pids.push(pid);
        }
        let sessions: Vec<i64> = sqlx::query_scalar(
            "SELECT CAST(pid AS BIGINT) FROM pg_stat_activity \
             WHERE datname = current_database() AND backend_type = 'client backend'",
        )
        .fetch_all(&mut *held[0])
        .await
        .unwrap();
        sessions
            .into_iter()
            .filter(|pid| !pool_pids.contains(pid))
            .collect()
    })
}

/// Claims the shipment of every order in `keys`, each with a stored
/// message of `size` bytes, one commit at a time.
fn claim_shipments_with_big_messages(
    runtime: &tokio::runtime::Runtime,
    store: &Store,
    keys: &[OrderKey],
    size: usize,
    now: DateTime<Utc>,
) {
    let body = "x".repeat(size);
    for (i, key) in keys.iter().enumerate() {
        let id = format!("m{i}@shop.example");
        let stored = NewMessage {
            raw: format!("Message-ID: <{id}>\r\n\r\n{body}\r\n").into_bytes(),
            ..message(&id)
        };
        runtime
            .block_on(store.claim_and_store(key, claim("shipment", "me", &id), Some(stored), now))
            .expect("claim commits")
            .expect("claim is won");
    }
}

/// On a SQLite file the log is copied into the database file by a thread
/// of its own (`store::writer::checkpoint`), soon after commits, so the
/// writer's own checkpoints (and the claims stalled behind their syncs) are
/// rare. In WAL mode nothing but a checkpoint writes the database file, so
/// that file growing by what was committed, long before the writer's
/// limit of 4,000 log pages, shows the background checkpoints at work.
#[test]
fn committed_pages_reach_the_database_file_without_the_writer_checkpointing() {
    let (env, runtime, store, keys) = setup(100);
    let database = env.path("state/test.db");
    let before = file_size(&database);
    let now = at("2026-12-02T10:00:00Z");
    // 100 messages of 16 KB: about 400 pages, a tenth of the writer's limit.
    claim_shipments_with_big_messages(&runtime, &store, &keys, 16 * 1024, now);
    assert_file_grows(
        &database,
        before + 100 * 16 * 1024,
        "the committed messages",
    );
}

/// An import's commits are checkpointed by the same background thread, so
/// a big import does not stall on the log's syncs itself. Its connection
/// checkpoints on its own only past 4,000 log pages (SQLite's default is
/// 1,000), and in WAL mode nothing but a checkpoint writes the database
/// file; the file growing by about what was imported, while the import's
/// store is still open, shows the background checkpoints at work.
#[test]
fn imported_pages_reach_the_database_file_without_the_import_checkpointing() {
    let env = Env::with_defaults();
    let config = Config::load(&env.path("config.toml")).expect("config loads");
    let runtime = runtime();
    let engine = runtime
        .block_on(followupd::engine::Engine::open(config))
        .expect("engine opens");
    let database = env.path("state/test.db");
    let before = file_size(&database);
    // 2,000 orders with a 1 KB product name: about 600 pages in all.
    let product = format!("Mug {}", "x".repeat(1024));
    let mut csv = String::from(common::CSV_HEADER);
    for i in 0..2_000 {
        csv.push_str(&format!(
            "O{i},b{i}@buyer.example,Bo,{product},UTC,2026-12-01T10:00:00Z,,shipped,,,\n"
        ));
    }
    let file = env.write("orders.csv", &csv);
    let summary = runtime
        .block_on(engine.import_file(&file, None, None, at("2026-12-01T12:00:00Z")))
        .expect("the file imports");
    assert_eq!((summary.imported, summary.rejected.len()), (2_000, 0));
    assert_file_grows(&database, before + 2_000 * 1024, "the imported orders");
}

/// A burst can grow a SQLite file's log far past its usual size: here a
/// reader keeps a snapshot open (as a long `followupd log` query could)
/// while 40 MB of messages are committed, so the log cannot start over. Once
/// the reader is gone and the log has been copied into the database, the
/// next commits start it over and cut the file back to the store's limit,
/// instead of leaving 40 MB on disk for as long as the daemon runs.
#[test]
fn after_a_burst_the_log_file_is_cut_back_to_its_limit() {
    let (env, runtime, store, keys) = setup(320);
    let database = env.path("state/test.db");
    let log = env.path("state/test.db-wal");
    let limit = followupd::store::SQLITE_LOG_LIMIT_BYTES;
    let now = at("2026-12-02T10:00:00Z");

    let reader = rusqlite::Connection::open(&database).expect("reader opens");
    reader.execute_batch("BEGIN").unwrap();
    let orders: i64 = reader
        .query_row("SELECT count(*) FROM orders", [], |row| row.get(0))
        .unwrap();
    assert_eq!(orders, 320);
    claim_shipments_with_big_messages(&runtime, &store, &keys, 128 * 1024, now);
    let grown = file_size(&log);
    assert!(grown > limit, "the burst left only {grown} bytes of log");
    drop(reader);

    let mut next = keys.iter().enumerate();
    let cut = common::eventually(std::time::Duration::from_secs(20), || {
        // Commits after the background checkpoint has copied the log let
        // it start over; the commit after that start cuts the file.
        if let Some((i, key)) = next.next() {
            let id = format!("after{i}@shop.example");
            runtime
                .block_on(store.claim_and_store(
                    key,
                    claim("follow_up", "me", &id),
                    Some(message(&id)),
                    now,
                ))
                .expect("claim commits")
                .expect("claim is won");
        }
        std::thread::sleep(std::time::Duration::from_millis(30));
        file_size(&log) <= limit
    });
    assert!(
        cut,
        "the log stayed at {} bytes after the burst (limit {limit})",
        file_size(&log)
    );
}

/// On PostgreSQL claims have a writer connection of their own, so a claim,
/// which an SMTP session waits for before DATA, never queues behind the
/// commit of other sends' outcomes and next checks. Shown with an update
/// held up by a row lock another session keeps: a claim for another order
/// still commits meanwhile, and the update goes in once the lock is gone.
#[test]
fn on_postgres_a_claim_commits_while_an_update_waits_for_a_lock() {
    if !common::use_postgres() {
        return;
    }
    let (_env, runtime, store, keys) = setup(2);
    let now = at("2026-12-02T10:00:00Z");
    let mut locker = runtime.block_on(store.pool().begin()).unwrap();
    runtime
        .block_on(
            sqlx::query(
                "SELECT 1 FROM stages WHERE marketplace = $1 AND order_id = $2 \
                 AND stage = 'follow_up' FOR UPDATE",
            )
            .bind(keys[0].marketplace.as_str())
            .bind(keys[0].order_id.as_str())
            .execute(&mut *locker),
        )
        .unwrap();
    let held = runtime.spawn({
        let (store, key) = (store.clone(), keys[0].clone());
        async move {
            store
                .update_stages(&key, vec![skip_follow_up("after the lock")], now)
                .await
        }
    });
    let waiting = common::eventually(std::time::Duration::from_secs(10), || {
        let waiting: i64 = runtime
            .block_on(
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                )
                .fetch_one(store.pool()),
            )
            .unwrap_or(0);
        waiting > 0
    });
    assert!(
        waiting,
        "the update reached the database and waits for the lock"
    );
    let id = "claimed-meanwhile@shop.example";
    let claimed = runtime.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            store.claim_and_store(
                &keys[1],
                claim("shipment", "me", id),
                Some(message(id)),
                now,
            ),
        )
        .await
    });
    assert!(
        matches!(claimed, Ok(Ok(Some(_)))),
        "the claim did not commit while the update waited: {claimed:?}"
    );
    assert!(!held.is_finished(), "the update was waiting for the lock");
    runtime.block_on(locker.rollback()).unwrap();
    let applied = runtime
        .block_on(held)
        .expect("the update task ends")
        .expect("the update commits once the lock is gone");
    assert_eq!(applied, vec![true]);
}

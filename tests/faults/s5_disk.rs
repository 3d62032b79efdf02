//! Scenario 5: The SQLite database's disk full, or read-only.

use crate::harness::*;

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// A small tmpfs mounted for one test; unmounted on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` at `path`. Where that is impossible and the
    /// test does not run as root it says so loudly and returns None; as
    /// root (CI) a failed mount fails the test.
    fn mount(path: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(path)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Self {
                path: path.to_path_buf(),
            }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                assert!(
                    !running_as_root(),
                    "cannot mount a tmpfs at {path:?} although running as root: {why}"
                );
                eprintln!(
                    "\n*** NOT RUN: this disk-full / read-only test needs to mount a tmpfs \
                     (root); mount said: {why} ***\n"
                );
                None
            }
        }
    }

    fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "remount {options}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Fills the filesystem to the last byte with `name`; returns its size.
    fn fill(&self, name: &str) -> u64 {
        let mut f = File::create(self.path.join(name)).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => written += n as u64,
            }
        }
        // The last bytes, one at a time.
        while let Ok(1) = f.write(&[0u8]) {
            written += 1;
        }
        written
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[test]
fn s5_sqlite_disk_full_while_running_recovers_when_space_returns() {
    let started = Instant::now();
    let n = size(300, 3000);
    // A slow server keeps the run going while the disk fills.
    let server = SmtpServer::start(&["--data-delay", "0.02"]);
    // A connection that is slow to open on a loaded machine would be retried
    // after the settling window below; this scenario is about the disk.
    let env = Env::new(&smtp_config(
        server.port,
        &[("connect_timeout", "\"10s\"")],
        "",
        "",
        "",
    ));
    let Some(disk) = Tmpfs::mount(&env.path("state"), if full() { "512m" } else { "64m" }) else {
        return;
    };
    // Big messages (a 40 KB note in the body), so that the database must
    // grow soon after the disk is full: SQLite first reuses the space its
    // write-ahead log already has.
    env.write(
        "templates/shipment/body.txt.tera",
        "Hello {{ order.buyer_name }},\n{{ order.extra.note }}\nOrder {{ order.id }}\n",
    );
    let note = "lorem ipsum ".repeat(40 * 1024 / 12);
    let mut csv = "order_id,buyer_email,buyer_name,product_name,shipped_at,note\n".to_string();
    for i in 0..n {
        csv.push_str(&format!(
            "DF{i:05},df{i:05}@buyer.example,Dee {i},Lamp {i},-1h,{note}\n"
        ));
    }
    import_ok(&env, "orders.csv", &csv);
    let mut received = LineCounter::new(server.dir.join("received.jsonl"));
    let mut daemon = Daemon::start(&env, "before", &[]);
    assert!(
        eventually(Duration::from_secs(60), || received.count() >= n / 6),
        "sending never got going; log:\n{}",
        daemon.log_tail()
    );
    let at_fill = received.count();
    let filler = disk.fill("filler");
    // Full until the service notices (a write fails) or it exits.
    let full_since = Instant::now();
    let full_message = |log: &str| {
        let log = log.to_lowercase();
        log.contains("full") || log.contains("no space")
    };
    let noticed = eventually(Duration::from_secs(20), || {
        !daemon.alive() || full_message(&daemon.log())
    });
    // And a little longer, to see how it copes.
    std::thread::sleep(Duration::from_secs(1));
    let full_for = full_since.elapsed();
    let alive_while_full = daemon.alive();
    let log_at_full = daemon.log();
    let sent_while_full = received.count() - at_fill;
    std::fs::remove_file(env.path("state/filler")).unwrap();
    let freed = Instant::now();

    // It kept running, or it stopped with a non-zero exit and said why
    // (then it is started again, as systemd would).
    let mut restarts = 0;
    let mut exit_while_full = None;
    if !daemon.alive() {
        exit_while_full = daemon.exit;
        restarts += 1;
        daemon = Daemon::start(&env, "after", &[]);
        daemon.wait_ready();
    }
    // Everything due goes out once space is back.
    let db = Db::open(&env);
    let settled = eventually(Duration::from_secs(size(20, 120) as u64), || {
        db.open_shipments() == 0 || received.count() >= n
    });
    let recovered_in = freed.elapsed();
    let committed_after =
        db.scalar("SELECT COUNT(*) FROM stages WHERE stage = 'shipment' AND state = 'sent'");
    drop(db);
    let log_after = daemon.log();
    let locked_lines = log_after.matches("database is locked").count();
    let error_lines = log_after.lines().filter(|l| l.contains("ERROR")).count();
    daemon.stop(Duration::from_secs(30));
    // A restart settles what was left in flight (and sends what the
    // database says is still due).
    tick(&env, Utc::now());
    let (figures, violations) = invariants(
        &env,
        &[&server],
        &Expect {
            now: Utc::now(),
            resend_stages: &[],
            unattributed: None,
        },
    );
    let db = Db::open(&env);
    let integrity = db.text("PRAGMA integrity_check");
    let orders = db.scalar("SELECT COUNT(*) FROM orders");
    let shipments = db.strings(
        "SELECT s.state, o.buyer_email FROM stages s JOIN orders o ON o.marketplace = s.marketplace \
         AND o.order_id = s.order_id WHERE s.stage = 'shipment'",
    );
    drop(db);
    // In doubt only what may have reached the server: a send that never
    // started must not end unknown (it would never be sent).
    let tried: HashSet<String> = server
        .attempts()
        .iter()
        .filter_map(attempt_recipient)
        .collect();
    let never_tried_unknown: Vec<&String> = shipments
        .iter()
        .filter(|(state, to)| state == "unknown" && !tried.contains(&to.to_lowercase()))
        .map(|(_, to)| to)
        .collect();
    report(
        "5 disk full while running",
        started,
        json!({
            "messages": n,
            "filled_bytes": filler,
            "full_for_seconds": (full_for.as_secs_f64() * 10.0).round() / 10.0,
            "write_error_noticed": noticed,
            "sent_while_full": sent_while_full,
            "alive_while_full": alive_while_full,
            "exit_while_full": exit_while_full.map(|e| e.to_string()),
            "restarts": restarts,
            "settled_after_space_returned": settled,
            "seconds_to_settle": (recovered_in.as_secs_f64() * 10.0).round() / 10.0,
            "committed_sent_before_restart": committed_after,
            "locked_errors_after_space_returned": locked_lines,
            "error_lines": error_lines,
            "received": figures.received,
            "sent": figures.state("sent"),
            "unknown": figures.state("unknown"),
            "unknown_never_transmitted": never_tried_unknown.len(),
            "duplicates_found": figures.duplicates,
            "lost_found": figures.lost + never_tried_unknown.len(),
        }),
    );
    assert_invariants(&figures, &violations);
    assert_eq!(integrity, "ok");
    assert_eq!(orders, n as i64);
    assert!(
        noticed && full_message(&log_at_full),
        "no clear 'disk full' error while the disk was full for {full_for:?}; log:\n{}",
        log_at_full
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    if let Some(exit) = exit_while_full {
        assert!(!exit.success(), "the daemon exited 0 on a full disk");
    }
    assert!(
        settled && locked_lines == 0,
        "after space returned the service did not recover: settled {settled} in \
         {recovered_in:?}, {locked_lines} 'database is locked' errors; log:\n{}",
        log_after
            .lines()
            .rev()
            .take(10)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let unexpected: Vec<&(String, String)> = shipments
        .iter()
        .filter(|(state, _)| state != "sent" && state != "unknown")
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");
    assert!(
        never_tried_unknown.is_empty(),
        "{} shipments ended unknown although they never reached the server (a database \
         error before the send left them in sending; they will never be sent): {:?}",
        never_tried_unknown.len(),
        &never_tried_unknown[..never_tried_unknown.len().min(10)]
    );
}

#[test]
fn s5_sqlite_read_only_disk_is_refused_clearly_and_nothing_is_lost() {
    let started = Instant::now();
    let n = size(50, 500);
    let server = SmtpServer::start(&[]);
    let env = Env::new(&smtp_config(server.port, &[], "", "", ""));
    let Some(disk) = Tmpfs::mount(&env.path("state"), "64m") else {
        return;
    };
    import_ok(&env, "orders.csv", &due_now_csv("RO", n));
    // (A filesystem cannot go read-only under files open for writing: the
    // kernel refuses the remount. So it goes read-only between runs, as
    // after a disk error or an operator's mistake.)
    disk.remount("ro");
    let mut exits = Vec::new();
    for attempt in 0..3 {
        // systemd would restart it: each start must fail cleanly.
        let mut daemon = Daemon::start(&env, &format!("ro{attempt}"), &[]);
        assert!(
            eventually(Duration::from_secs(15), || !daemon.alive()),
            "followupd run kept running on a read-only database; log:\n{}",
            daemon.log_tail()
        );
        let exit = daemon.exit.unwrap();
        let log = daemon.log();
        assert!(!exit.success(), "exit 0 on a read-only disk: {log}");
        assert!(
            log.to_lowercase().contains("read-only") || log.to_lowercase().contains("readonly"),
            "no clear message on a read-only disk: {log}"
        );
        exits.push(exit.code());
    }
    let out = followupd(&env, &["tick"], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2), "tick: {}", out.describe());
    assert!(server.attempts().is_empty(), "something was sent meanwhile");

    disk.remount("rw");
    let mut daemon = Daemon::start(&env, "rw", &[]);
    daemon.wait_ready();
    let db = Db::open(&env);
    let settled = eventually(Duration::from_secs(60), || db.open_shipments() == 0);
    drop(db);
    assert!(
        settled,
        "not sent after the disk came back; log:\n{}",
        daemon.log_tail()
    );
    daemon.stop(Duration::from_secs(20));
    let figures = check_invariants(
        &env,
        &[&server],
        &Expect {
            now: Utc::now(),
            resend_stages: &[],
            unattributed: Some(0),
        },
    );
    assert_eq!(figures.state("sent"), n, "{:?}", figures.stages);
    assert_eq!(figures.received, n);
    report(
        "5 read-only disk",
        started,
        json!({
            "messages": n,
            "refused_starts": exits.len(),
            "exit_codes": exits,
            "sent_after_rw": figures.state("sent"),
            "duplicates_found": figures.duplicates,
            "lost_found": figures.lost,
        }),
    );
}

//! Several `followupd run` processes sharing one PostgreSQL database and one
//! real SMTP server: every message exactly once, also when an instance is
//! killed, and a paused instance's late result never overwrites the outcome
//! recorded by the instance that took over.
//!
//! `FOLLOWUPD_SCALE_MESSAGES` sets the number of messages (default 5,000).

mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::smtp::SmtpServer;
use common::Env;
use serde_json::Value;

/// Daemons killed when the test ends, whatever happens.
struct Daemons(Vec<Child>);

impl Drop for Daemons {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn messages() -> usize {
    std::env::var("FOLLOWUPD_SCALE_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000)
}

fn env_for(port: u16, extra: &str) -> Env {
    Env::new(&format!(
        r#"
[database]
url = "sqlite://state/test.db"
lease = "2s"

[sending_hours]
start = "00:00"
end = "00:00"

[transport]
kind = "smtp"
host = "127.0.0.1"
port = {port}
tls = "none"
pool_size = 4
command_timeout = "20s"
send_timeout = "30s"

[daemon]
idle_recheck = "1s"
watch_templates = false
shutdown_grace = "5s"

[sender]
from = "Test Shop <shop@test.example>"

{extra}
"#
    ))
}

/// `count` orders whose shipment is due now.
fn import_due_orders(env: &Env, count: usize) {
    let mut csv = String::from("order_id,buyer_email,product_name,shipped_at\n");
    for i in 0..count {
        csv.push_str(&format!("P{i:05},p{i}@buyer.example,Mug,-1h\n"));
    }
    let out = env.import_csv("orders.csv", &csv);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn spawn_daemon(env: &Env) -> Child {
    env.command()
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// How many shipment stages are in each state, from `plan --json`.
fn shipment_states(env: &Env) -> std::collections::BTreeMap<String, usize> {
    let now = chrono::Utc::now().to_rfc3339();
    let mut counts = std::collections::BTreeMap::new();
    for line in env.ok(&["plan", "--json", "--now", &now]).lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["stage"] == "shipment" {
            *counts
                .entry(v["state"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
    }
    counts
}

/// Waits until no shipment is open any more.
fn wait_until_settled(env: &Env, limit: Duration) -> std::collections::BTreeMap<String, usize> {
    let started = Instant::now();
    loop {
        let counts = shipment_states(env);
        let open: usize = ["scheduled", "due", "retrying", "sending"]
            .iter()
            .map(|s| counts.get(*s).copied().unwrap_or(0))
            .sum();
        if open == 0 {
            return counts;
        }
        assert!(
            started.elapsed() < limit,
            "not settled after {limit:?}: {counts:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Sent-log rows by status.
fn log_statuses(env: &Env) -> Vec<Value> {
    env.ok(&["logs", "--json", "--limit", "1000000"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn assert_each_id_once(ids: &[String]) -> HashSet<String> {
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "a message arrived twice");
    unique
}

#[test]
fn four_instances_share_the_work_and_send_each_message_once() {
    if !common::use_postgres() {
        return;
    }
    let total = messages();
    let server = SmtpServer::start(&[]);
    let env = env_for(server.port, "");
    import_due_orders(&env, total);
    let _daemons = Daemons((0..4).map(|_| spawn_daemon(&env)).collect());
    let counts = wait_until_settled(&env, Duration::from_secs(600));
    assert_eq!(counts.get("sent"), Some(&total), "{counts:?}");
    let ids = server.received_ids();
    assert_eq!(ids.len(), total);
    let unique = assert_each_id_once(&ids);
    for i in [0, total / 2, total - 1] {
        assert!(unique.contains(&format!("<followupd.shipment.shop.P{i:05}@test.example>")));
    }
    // The send log agrees: one `sent` row per message, spread over instances.
    let rows = log_statuses(&env);
    assert_eq!(rows.iter().filter(|r| r["status"] == "sent").count(), total);
}

#[test]
fn a_killed_instance_loses_nothing_and_duplicates_nothing() {
    if !common::use_postgres() {
        return;
    }
    let total = messages();
    let server = SmtpServer::start(&[]);
    let env = env_for(server.port, "");
    import_due_orders(&env, total);
    let mut daemons = Daemons((0..4).map(|_| spawn_daemon(&env)).collect());
    // Kill one instance with SIGKILL once sending is well under way.
    let started = Instant::now();
    while server.received_ids().len() < total / 5 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "sending never got going"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    daemons.0[0].kill().unwrap();
    daemons.0[0].wait().unwrap();

    let counts = wait_until_settled(&env, Duration::from_secs(600));
    let sent = counts.get("sent").copied().unwrap_or(0);
    let unknown = counts.get("unknown").copied().unwrap_or(0);
    assert_eq!(
        sent + unknown,
        total,
        "every stage sent or in doubt: {counts:?}"
    );
    // In doubt are at most the killed instance's sends in flight.
    assert!(
        unknown <= 4,
        "{unknown} in doubt, more than one pool of sends: {counts:?}"
    );
    let ids = server.received_ids();
    let unique = assert_each_id_once(&ids);
    assert!(unique.len() >= sent, "every sent stage arrived");
    assert!(unique.len() <= total);
    // Every attempt is in the log; the dead instance's in-doubt sends are
    // logged as unknown by the instance that settled them.
    let rows = log_statuses(&env);
    assert_eq!(rows.iter().filter(|r| r["status"] == "sent").count(), sent);
    assert_eq!(
        rows.iter().filter(|r| r["status"] == "unknown").count(),
        unknown
    );
}

#[test]
fn a_paused_owner_cannot_overwrite_the_outcome_after_its_lease_ran_out() {
    if !common::use_postgres() {
        return;
    }
    // The server stalls 4 s before accepting, long enough to pause the
    // owner mid-send and let its 2 s lease run out.
    let server = SmtpServer::start(&["--data-delay", "4"]);
    let env = env_for(server.port, "");
    import_due_orders(&env, 1);
    let owner = Daemons(vec![spawn_daemon(&env)]);
    let pid = owner.0[0].id().to_string();
    let started = Instant::now();
    while !shipment_states(&env).contains_key("sending") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never started sending"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(2500));

    // Another instance finds the expired claim and settles it as in doubt.
    env.ok(&["tick"]);
    assert_eq!(shipment_states(&env).get("unknown"), Some(&1));

    // The owner wakes up, gets its 250 and tries to record `sent`: fenced.
    assert!(Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    let started = Instant::now();
    while server.received_ids().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server never accepted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let states = shipment_states(&env);
    assert_eq!(
        states.get("unknown"),
        Some(&1),
        "the late write changed the stage: {states:?}"
    );
    assert_eq!(states.get("sent"), None);
    assert_eq!(server.received_ids().len(), 1);
}

//! Fault injection: nothing is lost and nothing is sent twice.
//!
//! Each scenario drives the real `followupd` binary against the real SMTP
//! server (tests/support/smtp_server.py, aiosmtpd), injects one kind of
//! fault (SIGKILL mid-run, SMTP faults, permanent refusals, a day-long
//! outage, a full or read-only disk, a concurrent import, hostile files and
//! hostile order data), and then [`check_invariants`] proves the invariants
//! with SQL over the database and the server's received.jsonl and
//! attempts.jsonl. Property tests (proptest) fuzz the importer, the schedule
//! and the lint in-process. docs/reliability.md lists the scenarios and the
//! figures of the last runs.
//!
//! Sizes are small by default; `FOLLOWUPD_FAULTS_FULL=1` runs the long
//! variants. `FOLLOWUPD_FAULTS_SEED=N` repeats the random choices (every
//! scenario prints its seed); `FOLLOWUPD_FAULTS_REPORT=FILE` appends each
//! scenario's figures to FILE as one JSON line.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use common::smtp::SmtpServer;
use common::{eventually, free_port, Env, CSV_HEADER};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_followupd");

/// What the send log says on the re-send of a stage with
/// `on_unknown = "resend"` (src/engine.rs, IN_DOUBT_RESEND).
const IN_DOUBT_RESEND: &str = "re-send of an in-doubt attempt (on_unknown = resend)";

/// Every state a stage may be in (README, "How a stage is scheduled").
const STATES: [&str; 9] = [
    "scheduled",
    "sending",
    "retrying",
    "sent",
    "blocked",
    "skipped",
    "expired",
    "failed",
    "unknown",
];

/// Send-log statuses that stand for an attempt at the transport.
const ATTEMPT_STATUSES: [&str; 4] = ["sent", "retrying", "failed", "unknown"];

/// Connections (and so sends in flight) in the SMTP scenarios.
const POOL: usize = 8;

/// The instant the tick-driven scenarios start at.
const T0: &str = "2026-12-01T10:00:00Z";

// ---------------------------------------------------------------------------
// Sizes, seeds, figures
// ---------------------------------------------------------------------------

fn full() -> bool {
    std::env::var("FOLLOWUPD_FAULTS_FULL").is_ok_and(|v| v == "1")
}

/// `small` by default, `big` with FOLLOWUPD_FAULTS_FULL=1.
fn size(small: usize, big: usize) -> usize {
    if full() {
        big
    } else {
        small
    }
}

/// A seeded random source for one scenario; the seed is printed so that a
/// failure can be repeated with FOLLOWUPD_FAULTS_SEED.
fn rng_for(scenario: &str) -> (fastrand::Rng, u64) {
    let base = std::env::var("FOLLOWUPD_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    // FNV-1a of the name, so that scenarios get different streams.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in scenario.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    let seed = base ^ h;
    eprintln!("{scenario}: seed {seed} (repeat with FOLLOWUPD_FAULTS_SEED={base})");
    (fastrand::Rng::with_seed(seed), seed)
}

/// Prints a scenario's figures and appends them to FOLLOWUPD_FAULTS_REPORT.
fn report(scenario: &str, started: Instant, figures: Value) {
    let mut line = json!({
        "scenario": scenario,
        "full": full(),
        "backend": format!("{:?}", common::backend()).to_lowercase(),
        "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    if let (Some(line), Value::Object(extra)) = (line.as_object_mut(), figures) {
        line.extend(extra);
    }
    eprintln!("FIGURES {line}");
    if let Ok(path) = std::env::var("FOLLOWUPD_FAULTS_REPORT") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

fn minutes(m: i64) -> chrono::Duration {
    chrono::Duration::minutes(m)
}

// ---------------------------------------------------------------------------
// The real SMTP server (aiosmtpd)
// ---------------------------------------------------------------------------

/// Counts the lines of a growing file without re-reading it.
struct LineCounter {
    path: PathBuf,
    offset: u64,
    count: usize,
}

impl LineCounter {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            offset: 0,
            count: 0,
        }
    }

    fn count(&mut self) -> usize {
        if let Ok(mut f) = File::open(&self.path) {
            if f.seek(SeekFrom::Start(self.offset)).is_ok() {
                let mut buf = Vec::new();
                if f.read_to_end(&mut buf).is_ok() {
                    self.offset += buf.len() as u64;
                    self.count += buf.iter().filter(|b| **b == b'\n').count();
                }
            }
        }
        self.count
    }
}

/// The Message-ID as stored by followupd: without angle brackets.
fn bare_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

/// The recipient of one attempts.jsonl line, lower-cased (None for a
/// connection without a transaction).
fn attempt_recipient(a: &Value) -> Option<String> {
    a["rcpt"]
        .as_str()
        .or_else(|| a["rcpt_tos"].get(0).and_then(Value::as_str))
        .map(|r| r.to_lowercase())
}

// ---------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------

/// The outcome of one `followupd` command.
struct Out {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    /// The process's peak resident memory (VmHWM), in KiB, as last seen.
    peak_kb: u64,
}

impl Out {
    fn describe(&self) -> String {
        let cut = |s: &str| -> String { s.chars().take(4000).collect() };
        format!(
            "{}\nstdout: {}\nstderr: {}",
            self.status,
            cut(&self.stdout),
            cut(&self.stderr)
        )
    }
}

fn clean_env(command: &mut Command) {
    for var in [
        "FOLLOWUPD_CONFIG",
        "FOLLOWUPD_DATABASE_URL",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "JOURNAL_STREAM",
        "LISTEN_FDS",
        "LISTEN_PID",
    ] {
        command.env_remove(var);
    }
}

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `followupd -c CONFIG ARGS…` and waits at most `limit` (a hung
/// command fails the test instead of hanging it).
fn followupd(env: &Env, args: &[&str], limit: Duration) -> Out {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let out_path = env.path(&format!(".out.{n}"));
    let err_path = env.path(&format!(".err.{n}"));
    let mut command = Command::new(BIN);
    command
        .arg("-c")
        .arg(env.path("config.toml"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap());
    clean_env(&mut command);
    let mut child = command.spawn().expect("followupd runs");
    let deadline = Instant::now() + limit;
    let mut peak_kb = 0;
    let status = loop {
        if let Some(kb) = vm_hwm_kb(child.id()) {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "followupd {args:?} did not finish within {limit:?}; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).to_string();
    let out = Out {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
        peak_kb,
    };
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    out
}

/// Runs and insists on exit code 0; returns stdout.
fn ok(env: &Env, args: &[&str]) -> String {
    let out = followupd(env, args, Duration::from_secs(300));
    assert!(
        out.status.success(),
        "followupd {args:?} failed: {}",
        out.describe()
    );
    out.stdout
}

fn tick(env: &Env, now: DateTime<Utc>) -> String {
    ok(env, &["tick", "--now", &rfc3339(now)])
}

fn import_text(env: &Env, name: &str, text: &str) -> Out {
    let file = env.write(name, text);
    followupd(
        env,
        &["import", file.to_str().unwrap()],
        Duration::from_secs(300),
    )
}

fn import_ok(env: &Env, name: &str, text: &str) {
    let out = import_text(env, name, text);
    assert!(out.status.success(), "import {name}: {}", out.describe());
}

/// `plan --json --now NOW` lines.
fn plan(env: &Env, now: DateTime<Utc>) -> Vec<Value> {
    ok(env, &["plan", "--json", "--now", &rfc3339(now)])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `logs --json` for one order.
fn logs_for(env: &Env, order: &str) -> Vec<Value> {
    ok(
        env,
        &["logs", "--json", "--order", order, "--limit", "1000"],
    )
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

/// A running `followupd run`; killed on drop.
struct Daemon {
    child: Child,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

impl Daemon {
    fn start(env: &Env, name: &str, args: &[&str]) -> Self {
        let log = env.path(&format!("{name}.stderr"));
        let mut command = Command::new(BIN);
        command
            .arg("-c")
            .arg(env.path("config.toml"))
            .arg("run")
            .args(args)
            .env("RUST_LOG", "warn,followupd::daemon=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap());
        clean_env(&mut command);
        Self {
            child: command.spawn().expect("followupd run starts"),
            log,
            exit: None,
        }
    }

    /// Waits until the service says it is running (after READY=1: signal
    /// handlers installed, in-doubt sends settled, --import done).
    fn wait_ready(&mut self) {
        let ready = eventually(Duration::from_secs(30), || {
            !self.alive() || self.log().contains("followupd is running")
        });
        assert!(
            ready && self.alive(),
            "followupd run never became ready ({:?}); log:\n{}",
            self.exit,
            self.log_tail()
        );
    }

    fn alive(&mut self) -> bool {
        if self.exit.is_some() {
            return false;
        }
        match self.child.try_wait().unwrap() {
            Some(status) => {
                self.exit = Some(status);
                false
            }
            None => true,
        }
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).to_string()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGKILL: no chance to clean up.
    fn kill9(&mut self) {
        let _ = self.child.kill();
        self.exit = Some(self.child.wait().unwrap());
    }

    /// SIGTERM, then insists on an exit 0 within `limit`.
    fn stop(&mut self, limit: Duration) {
        if self.alive() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
        }
        let ok = eventually(limit, || !self.alive());
        assert!(
            ok && self.exit.is_some_and(|s| s.success()),
            "followupd run did not stop cleanly within {limit:?} ({:?}); log:\n{}",
            self.exit,
            self.log_tail()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.alive() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// Configurations
// ---------------------------------------------------------------------------

/// An SMTP installation: loopback server at `port`, messages at any hour,
/// short timeouts. `transport` overrides [transport] keys (`("send_timeout",
/// "\"3s\"")`), `retry` and `daemon` are extra keys for those tables;
/// `rest` is appended (stages).
fn smtp_config(
    port: u16,
    transport: &[(&str, &str)],
    retry: &str,
    daemon: &str,
    rest: &str,
) -> String {
    let mut keys: BTreeMap<&str, String> = [
        ("kind", "\"smtp\"".to_string()),
        ("host", "\"127.0.0.1\"".to_string()),
        ("port", port.to_string()),
        ("tls", "\"none\"".to_string()),
        ("pool_size", POOL.to_string()),
        ("connect_timeout", "\"1s\"".to_string()),
        ("command_timeout", "\"2s\"".to_string()),
        ("send_timeout", "\"10s\"".to_string()),
    ]
    .into_iter()
    .collect();
    for (k, v) in transport {
        keys.insert(k, v.to_string());
    }
    let transport: String = keys.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    format!(
        r#"
[database]
url = "sqlite://state/test.db"
lease = "1s"

[defaults]
time_zone = "UTC"

[sending_hours]
start = "00:00"
end = "00:00"

[transport]
{transport}
[retry]
{retry}

[daemon]
watch_templates = false
idle_recheck = "300ms"
shutdown_grace = "10s"
{daemon}

[sender]
from = "Test Shop <shop@test.example>"
reply_to = "care@test.example"

{rest}
"#
    )
}

/// Three stages that are all due as soon as an order has shipped, so a
/// `followupd run` on the wall clock sends all three at once; the follow-up
/// is re-sent after a crash (on_unknown = "resend"), the feedback request
/// waits for it.
const DUE_AT_ONCE_STAGES: &str = r#"
[[stages]]
name = "shipment"
anchor = "shipped_at"
opens_after = "0s"
closes_after = "2d"

[[stages]]
name = "follow_up"
anchor = "shipped_at"
opens_after = "0s"
closes_after = "2d"
on_unknown = "resend"

[[stages]]
name = "review_request"
anchor = "shipped_at"
opens_after = "0s"
closes_after = "2d"
after = "follow_up"
"#;

// ---------------------------------------------------------------------------
// The database, read with SQL
// ---------------------------------------------------------------------------

/// A read-only connection to an installation's database (SQLite opened
/// with mode=ro, or the PostgreSQL database the test made).
struct Db {
    rt: tokio::runtime::Runtime,
    pool: sqlx::AnyPool,
}

#[derive(Debug, Clone)]
struct StageRec {
    marketplace: String,
    order_id: String,
    stage: String,
    state: String,
    next_check_at: Option<i64>,
    attempts: i64,
    message_id: Option<String>,
    claim_token: i64,
}

#[derive(Debug, Clone)]
struct LogRec {
    marketplace: String,
    order_id: String,
    stage: String,
    recipient: String,
    status: String,
    attempt: i64,
    detail: Option<String>,
    message_ref: Option<i64>,
}

type Key = (String, String, String);

impl StageRec {
    fn key(&self) -> Key {
        (
            self.marketplace.clone(),
            self.order_id.clone(),
            self.stage.clone(),
        )
    }
}

impl LogRec {
    fn key(&self) -> Key {
        (
            self.marketplace.clone(),
            self.order_id.clone(),
            self.stage.clone(),
        )
    }

    /// An attempt that went to the transport (or may have: the process
    /// died in it). Blocked messages and messages that could not be
    /// composed never reached a transport.
    fn is_transport_attempt(&self) -> bool {
        ATTEMPT_STATUSES.contains(&self.status.as_str())
            && (self.message_ref.is_some() || self.status == "unknown")
    }

    /// The settlement of an in-doubt attempt of an `on_unknown = "resend"`
    /// stage: it asks for one deliberate re-send.
    fn is_in_doubt_episode(&self) -> bool {
        self.status == "unknown"
            && self.message_ref.is_none()
            && self.detail.as_deref() == Some(IN_DOUBT_RESEND)
    }

    /// A re-send that went to the transport, logged as such.
    fn is_logged_resend(&self) -> bool {
        self.message_ref.is_some() && self.detail.as_deref() == Some(IN_DOUBT_RESEND)
    }

    fn is_manual_resend(&self) -> bool {
        self.detail
            .as_deref()
            .is_some_and(|d| d.starts_with("manual resend"))
    }
}

/// The database URL of an installation, as the checker opens it.
fn checker_url(env: &Env) -> String {
    let text = std::fs::read_to_string(env.path("config.toml")).unwrap();
    let config: toml::Value = toml::from_str(&text).unwrap();
    let url = config["database"]["url"].as_str().unwrap().to_string();
    match url.strip_prefix("sqlite://") {
        Some(rest) => format!(
            "sqlite://{}?mode=ro",
            env.dir
                .path()
                .join(rest.split('?').next().unwrap())
                .display()
        ),
        None => url,
    }
}

impl Db {
    fn open(env: &Env) -> Self {
        sqlx::any::install_default_drivers();
        let url = checker_url(env);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let pool = rt
            .block_on(
                sqlx::any::AnyPoolOptions::new()
                    .max_connections(1)
                    .connect(&url),
            )
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
        Self { rt, pool }
    }

    /// None while the database does not exist yet (a process killed
    /// before it made the SQLite file).
    fn try_open(env: &Env) -> Option<Self> {
        let url = checker_url(env);
        if let Some(path) = url.strip_prefix("sqlite://") {
            if !Path::new(path.split('?').next().unwrap()).exists() {
                return None;
            }
        }
        Some(Self::open(env))
    }

    fn scalar(&self, sql: &str) -> i64 {
        self.rt
            .block_on(sqlx::query_scalar::<_, i64>(sql).fetch_one(&self.pool))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn opt_scalar(&self, sql: &str) -> Option<i64> {
        self.rt
            .block_on(sqlx::query_scalar::<_, Option<i64>>(sql).fetch_one(&self.pool))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn text(&self, sql: &str) -> String {
        self.rt
            .block_on(sqlx::query_scalar::<_, String>(sql).fetch_one(&self.pool))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn strings(&self, sql: &str) -> Vec<(String, String)> {
        self.rt
            .block_on(sqlx::query_as::<_, (String, String)>(sql).fetch_all(&self.pool))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Stages still to be worked on (scheduled or retrying) or in flight.
    fn open_stages(&self) -> i64 {
        self.scalar(
            "SELECT COUNT(*) FROM stages WHERE state IN ('scheduled', 'retrying', 'sending')",
        )
    }

    /// Shipment stages still to be worked on or in flight.
    fn open_shipments(&self) -> i64 {
        self.scalar(
            "SELECT COUNT(*) FROM stages WHERE stage = 'shipment' \
             AND state IN ('scheduled', 'retrying', 'sending')",
        )
    }

    /// When the scheduler next wants to look at an open stage.
    fn next_check(&self) -> Option<i64> {
        self.opt_scalar(
            "SELECT MIN(next_check_at) FROM stages WHERE state IN ('scheduled', 'retrying')",
        )
    }

    fn stages(&self) -> Vec<StageRec> {
        type Row = (
            String,
            String,
            String,
            String,
            Option<i64>,
            i64,
            Option<String>,
            i64,
        );
        let rows: Vec<Row> = self
            .rt
            .block_on(
                sqlx::query_as(
                    "SELECT marketplace, order_id, stage, state, next_check_at, attempts, \
                     message_id, claim_token FROM stages ORDER BY marketplace, order_id, stage",
                )
                .fetch_all(&self.pool),
            )
            .unwrap();
        rows.into_iter()
            .map(|r| StageRec {
                marketplace: r.0,
                order_id: r.1,
                stage: r.2,
                state: r.3,
                next_check_at: r.4,
                attempts: r.5,
                message_id: r.6,
                claim_token: r.7,
            })
            .collect()
    }

    fn log(&self) -> Vec<LogRec> {
        type Row = (
            String,
            String,
            String,
            String,
            String,
            i64,
            Option<String>,
            Option<i64>,
        );
        let rows: Vec<Row> = self
            .rt
            .block_on(
                sqlx::query_as(
                    "SELECT marketplace, order_id, stage, recipient, status, attempt, detail, \
                     message_ref FROM send_log ORDER BY id",
                )
                .fetch_all(&self.pool),
            )
            .unwrap();
        rows.into_iter()
            .map(|r| LogRec {
                marketplace: r.0,
                order_id: r.1,
                stage: r.2,
                recipient: r.3,
                status: r.4,
                attempt: r.5,
                detail: r.6,
                message_ref: r.7,
            })
            .collect()
    }

    /// Like [`Db::in_flight`], but empty while the tables do not exist yet
    /// (a process killed before its migrations ran).
    fn try_in_flight(&self) -> BTreeSet<InFlight> {
        let exists = self.rt.block_on(
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM stages").fetch_one(&self.pool),
        );
        match exists {
            Ok(_) => self.in_flight(),
            Err(_) => BTreeSet::new(),
        }
    }

    /// Every stage in `sending`.
    fn in_flight(&self) -> BTreeSet<InFlight> {
        self.stages()
            .into_iter()
            .filter(|s| s.state == "sending")
            .map(|s| {
                let message_id = s.message_id.as_deref().map(bare_id).unwrap_or_default();
                (
                    s.marketplace,
                    s.order_id,
                    s.stage,
                    s.claim_token,
                    message_id,
                )
            })
            .collect()
    }
}

/// A stage in `sending`: order key, stage, claim token and Message-ID.
type InFlight = (String, String, String, i64, String);

impl Drop for Db {
    fn drop(&mut self) {
        let pool = self.pool.clone();
        self.rt.block_on(pool.close());
    }
}

// ---------------------------------------------------------------------------
// The invariants
// ---------------------------------------------------------------------------

/// What a scenario tells the checker.
struct Expect<'a> {
    /// The instant to plan for (windows and next attempts are checked
    /// against it).
    now: DateTime<Utc>,
    /// Stages configured with `on_unknown = "resend"`.
    resend_stages: &'a [&'a str],
    /// `Some(n)`: the log has exactly n more transport attempts than the
    /// server saw transactions (n = attempts that failed before a
    /// transaction could start, such as a withheld greeting). `None`: only
    /// "no more transactions than logged attempts" (a killed process may
    /// have logged nothing, or logged an attempt that never reached the
    /// server).
    unattributed: Option<usize>,
}

/// The figures the checker found.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct Figures {
    orders: i64,
    stages: BTreeMap<String, usize>,
    /// Messages the server accepted, in all.
    received: usize,
    /// Distinct Message-IDs among them.
    distinct_received: usize,
    /// Deliveries beyond the first that were deliberate and logged
    /// (on_unknown = resend, or a manual resend).
    resends: usize,
    /// Deliveries beyond what was allowed: must be 0.
    duplicates: usize,
    /// Stages the database calls sent that the server never got, and open
    /// stages nothing will look at again: must be 0.
    lost: usize,
    /// Transactions the server recorded (greetings that never came are not
    /// transactions).
    server_transactions: usize,
    /// Transport attempts in the send log.
    logged_attempts: usize,
}

impl Figures {
    fn state(&self, state: &str) -> usize {
        self.stages.get(state).copied().unwrap_or(0)
    }
}

/// The invariants, run after every scenario (docs/reliability.md):
///
/// 1. every stage is in a known state and none is left in `sending`; a
///    stage still scheduled or retrying has a next look planned, and a
///    next send inside its window;
/// 2. every send attempt has a send-log row (each attempt number of each
///    stage is logged; the server saw no more transactions per recipient
///    than the log has attempts, and exactly as many where the scenario
///    says so);
/// 3. the server saw each Message-ID at most once, except deliberate
///    re-sends (on_unknown = "resend" after a doubt, or a manual resend),
///    each logged as such; a stage the server has is `sent` or `unknown`
///    in the database, and a stage the database calls `sent` is on the
///    server.
fn check_invariants(env: &Env, servers: &[&SmtpServer], expect: &Expect) -> Figures {
    let (figures, violations) = invariants(env, servers, expect);
    assert_invariants(&figures, &violations);
    figures
}

fn assert_invariants(figures: &Figures, violations: &[String]) {
    if !violations.is_empty() {
        let shown: Vec<&str> = violations.iter().take(40).map(|s| s.as_str()).collect();
        panic!(
            "{} invariant violations (figures {figures:?}); the first ones:\n{}",
            violations.len(),
            shown.join("\n")
        );
    }
}

/// [`check_invariants`] without the panic: the figures and every violation.
fn invariants(env: &Env, servers: &[&SmtpServer], expect: &Expect) -> (Figures, Vec<String>) {
    let db = Db::open(env);
    let stages = db.stages();
    let log = db.log();
    let mut figures = Figures {
        orders: db.scalar("SELECT COUNT(*) FROM orders"),
        ..Default::default()
    };
    drop(db);
    let plan: HashMap<Key, Value> = plan(env, expect.now)
        .into_iter()
        .map(|l| {
            (
                (
                    l["marketplace"].as_str().unwrap().to_string(),
                    l["order_id"].as_str().unwrap().to_string(),
                    l["stage"].as_str().unwrap().to_string(),
                ),
                l,
            )
        })
        .collect();
    let mut violations: Vec<String> = Vec::new();
    let mut log_by_stage: HashMap<Key, Vec<&LogRec>> = HashMap::new();
    for row in &log {
        log_by_stage.entry(row.key()).or_default().push(row);
    }

    // 1. States, and open stages that will be looked at again.
    for s in &stages {
        *figures.stages.entry(s.state.clone()).or_default() += 1;
        let name = format!("{}/{}/{}", s.marketplace, s.order_id, s.stage);
        if !STATES.contains(&s.state.as_str()) {
            violations.push(format!("{name}: unknown state '{}'", s.state));
        }
        if s.state == "sending" {
            violations.push(format!("{name}: left in sending after a clean stop"));
        }
        if s.state != "scheduled" && s.state != "retrying" {
            continue;
        }
        let Some(line) = plan.get(&s.key()) else {
            violations.push(format!("{name}: no plan line"));
            continue;
        };
        let window = &line["window"];
        if window.is_null() {
            continue; // No anchor date yet: only new order data can help.
        }
        if s.next_check_at.is_none() {
            figures.lost += 1;
            violations.push(format!(
                "{name}: {} with a window but no next check: nothing will look at it again",
                s.state
            ));
        }
        let opens = at(window["opens"].as_str().unwrap());
        let closes = at(window["closes"].as_str().unwrap());
        match line["state"].as_str().unwrap() {
            "due" if !(opens <= expect.now && expect.now < closes) => violations.push(format!(
                "{name}: due at {} outside its window {opens}..{closes}",
                expect.now
            )),
            "scheduled" | "retrying" => {
                if let Some(next) = line["next_send"].as_str().map(at) {
                    if !(opens <= next && next < closes) {
                        violations.push(format!(
                            "{name}: next send {next} outside its window {opens}..{closes}"
                        ));
                    }
                }
            }
            _ => {}
        }
    }

    // 3. What the server got against what the database says.
    let received: Vec<Value> = servers.iter().flat_map(|s| s.received()).collect();
    let attempts: Vec<Value> = servers.iter().flat_map(|s| s.attempts()).collect();
    let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
    for r in &received {
        match r["message_id"].as_str() {
            Some(id) => *by_id.entry(bare_id(id)).or_default() += 1,
            None => violations.push(format!("server got a message without a Message-ID: {r}")),
        }
    }
    figures.received = received.len();
    figures.distinct_received = by_id.len();
    let stage_by_id: HashMap<&str, &StageRec> = stages
        .iter()
        .filter_map(|s| s.message_id.as_deref().map(|id| (id, s)))
        .collect();
    for (id, &count) in &by_id {
        let Some(s) = stage_by_id.get(id.as_str()) else {
            violations.push(format!(
                "the server has {id}, which no stage in the database claimed"
            ));
            continue;
        };
        let rows = log_by_stage.get(&s.key()).cloned().unwrap_or_default();
        // Each in-doubt episode of an on_unknown = "resend" stage allows one
        // deliberate re-send (so twice in all after one doubt); a manual
        // resend allows one more. Each claim delivers at most once.
        let episodes = rows.iter().filter(|r| r.is_in_doubt_episode()).count();
        let manual = rows.iter().filter(|r| r.is_manual_resend()).count();
        let logged_resends = rows.iter().filter(|r| r.is_logged_resend()).count();
        let resend_stage = expect.resend_stages.contains(&s.stage.as_str());
        if (episodes > 0 || logged_resends > 0) && !resend_stage {
            violations.push(format!(
                "{id}: re-sent as in doubt, but its stage is on_unknown = hold"
            ));
        }
        let allowed = (1 + episodes + manual).min(s.attempts.max(1) as usize);
        if count > allowed {
            figures.duplicates += count - allowed;
            violations.push(format!(
                "{id}: the server got it {count} times; allowed {allowed} ({} claims, {episodes} \
                 in-doubt re-sends, {manual} manual)",
                s.attempts
            ));
        }
        if count > 1 && manual == 0 && logged_resends == 0 {
            violations.push(format!(
                "{id}: delivered {count} times, but no send-log row says it was a re-send \
                 of an in-doubt attempt"
            ));
        }
        figures.resends += (count - 1).min(episodes + manual);
        let last_status = rows.last().map(|r| r.status.as_str());
        let settled = match s.state.as_str() {
            "sent" | "unknown" => true,
            // Recovered after a crash, its re-send still to come.
            "retrying" => resend_stage && last_status == Some("unknown"),
            _ => false,
        };
        if !settled {
            violations.push(format!(
                "{id}: the server has it, but the stage is '{}' (last log status {last_status:?})",
                s.state
            ));
        }
    }
    for s in stages.iter().filter(|s| s.state == "sent") {
        let on_server = s
            .message_id
            .as_deref()
            .is_some_and(|id| by_id.contains_key(id));
        if !on_server {
            figures.lost += 1;
            violations.push(format!(
                "{}/{}/{}: sent in the database, never received by the server ({:?})",
                s.marketplace, s.order_id, s.stage, s.message_id
            ));
        }
    }

    // 2. Every attempt is logged.
    for s in stages.iter().filter(|s| s.attempts > 0) {
        let logged: HashSet<i64> = log_by_stage
            .get(&s.key())
            .map(|rows| {
                rows.iter()
                    .filter(|r| {
                        ATTEMPT_STATUSES.contains(&r.status.as_str()) || r.status == "blocked"
                    })
                    .map(|r| r.attempt)
                    .collect()
            })
            .unwrap_or_default();
        for n in 1..=s.attempts {
            if !logged.contains(&n) {
                violations.push(format!(
                    "{}/{}/{}: attempt {n} of {} has no send-log row",
                    s.marketplace, s.order_id, s.stage, s.attempts
                ));
            }
        }
    }
    let mut server_tx: BTreeMap<String, usize> = BTreeMap::new();
    for a in &attempts {
        if let Some(r) = attempt_recipient(a) {
            *server_tx.entry(r).or_default() += 1;
        }
    }
    let mut logged_tx: BTreeMap<String, usize> = BTreeMap::new();
    for row in log.iter().filter(|r| r.is_transport_attempt()) {
        *logged_tx.entry(row.recipient.to_lowercase()).or_default() += 1;
    }
    figures.server_transactions = server_tx.values().sum();
    figures.logged_attempts = logged_tx.values().sum();
    for (r, &n) in &server_tx {
        let logged = logged_tx.get(r).copied().unwrap_or(0);
        if n > logged {
            violations.push(format!(
                "{r}: the server saw {n} transactions, the send log has {logged} attempts"
            ));
        }
    }
    if let Some(unattributed) = expect.unattributed {
        if figures.logged_attempts != figures.server_transactions + unattributed {
            violations.push(format!(
                "the send log has {} transport attempts, the server saw {} transactions and \
                 {unattributed} connections without one",
                figures.logged_attempts, figures.server_transactions
            ));
        }
    }

    (figures, violations)
}

/// Ticks from `from` until nothing is open before `horizon`: each tick
/// jumps to the next moment the scheduler wants (but at least `step`
/// ahead), so retries with backoff take a handful of ticks. Returns the
/// last instant ticked and the number of ticks.
fn tick_until_settled(
    env: &Env,
    from: DateTime<Utc>,
    horizon: DateTime<Utc>,
    step: chrono::Duration,
) -> (DateTime<Utc>, usize) {
    let mut t = from;
    let mut ticks = 0;
    loop {
        tick(env, t);
        ticks += 1;
        assert!(ticks < 2000, "still ticking at {t}");
        let next = Db::open(env).next_check();
        let Some(next) = next.and_then(|s| DateTime::from_timestamp(s, 0)) else {
            return (t, ticks);
        };
        let next = next.max(t + step);
        if next > horizon {
            return (t, ticks);
        }
        t = next;
    }
}

// ---------------------------------------------------------------------------
// Orders
// ---------------------------------------------------------------------------

const ORDER_HEADER: &str =
    "order_id,buyer_email,buyer_name,product_name,shipped_at,delivered_at,order_url,review_url\n";

/// One order row for [`ORDER_HEADER`].
fn order_row(id: &str, shipped: &str, delivered: &str) -> String {
    let lower = id.to_lowercase();
    format!(
        "{id},{lower}@buyer.example,Kim {id},Teapot {id},{shipped},{delivered},https://shop.example/o/{id},https://shop.example/r/{id}\n"
    )
}

// ---------------------------------------------------------------------------
// 1. SIGKILL at random moments during `followupd run`
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// 2. SMTP faults on 30% of transactions
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// 3. Permanent refusals: 550 / 554 at RCPT or after DATA
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// 4. The SMTP server down for a day
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// 5. The SQLite database's disk full, or read-only
// ---------------------------------------------------------------------------

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

/// `count` shipments due now (shipped an hour ago), ids `{prefix}{i}`.
fn due_now_csv(prefix: &str, count: usize) -> String {
    let mut csv = ORDER_HEADER.to_string();
    for i in 0..count {
        csv.push_str(&order_row(&format!("{prefix}{i:05}"), "-1h", ""));
    }
    csv
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

// ---------------------------------------------------------------------------
// 6. `followupd import` while the daemon sends (SQLite)
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// 7. Bad files
// ---------------------------------------------------------------------------

/// Runs `followupd import FILE` and reads the rejected rows it reported.
fn import_file(env: &Env, file: &Path, limit: Duration) -> (Out, BTreeMap<u64, String>) {
    let out = followupd(env, &["import", file.to_str().unwrap()], limit);
    let found = rejections(&out.stderr, file);
    (out, found)
}

/// The `FILE:LINE: reason` lines of an import's stderr, by line; a line
/// reported twice fails the test.
fn rejections(stderr: &str, file: &Path) -> BTreeMap<u64, String> {
    let prefix = format!("{}:", file.display());
    let mut found = BTreeMap::new();
    for l in stderr.lines() {
        let Some(rest) = l.strip_prefix(&prefix) else {
            continue;
        };
        let Some((line, reason)) = rest.split_once(": ") else {
            continue;
        };
        let Ok(line) = line.parse::<u64>() else {
            continue;
        };
        assert!(
            found.insert(line, reason.to_string()).is_none(),
            "line {line} reported twice"
        );
    }
    found
}

fn order_count(env: &Env) -> i64 {
    Db::open(env).scalar("SELECT COUNT(*) FROM orders")
}

/// One kind of bad CSV row: the reason it must be rejected with, and the
/// row (which may span physical lines).
type BadCsv = (&'static str, fn(usize) -> Vec<u8>);

fn bad_csv_rows() -> Vec<BadCsv> {
    vec![
        ("invalid email address", |i| {
            format!("B{i},not-an-email-{i},Bo,Mug,,2026-12-01,,,,,").into_bytes()
        }),
        ("unknown status 'lost'", |i| {
            format!("B{i},b{i}@x.example,Bo,Mug,,2026-12-01,,lost,,,").into_bytes()
        }),
        ("cannot read 'yesterday' as a time", |i| {
            format!("B{i},b{i}@x.example,Bo,Mug,,yesterday,,,,,").into_bytes()
        }),
        ("unknown time zone", |i| {
            format!("B{i},b{i}@x.example,Bo,Mug,Mars/Base,2026-12-01,,,,,").into_bytes()
        }),
        ("is before shipped_at", |i| {
            format!("B{i},b{i}@x.example,Bo,Mug,,2026-12-05,2026-12-01,,,,").into_bytes()
        }),
        ("missing required field 'buyer_email'", |i| {
            format!("B{i},,Bo,Mug,,2026-12-01,,,,,").into_bytes()
        }),
        ("contains a line break", |i| {
            format!("B{i},b{i}@x.example,\"Ann\nBcc: victim@evil.example\",Mug,,2026-12-01,,,,,")
                .into_bytes()
        }),
        ("contains a line break", |i| {
            format!("B{i},b{i}@x.example,\"Ann\r\nBcc: victim@evil.example\",Mug,,2026-12-01,,,,,")
                .into_bytes()
        }),
        ("expected true or false", |i| {
            format!("B{i},b{i}@x.example,Bo,Mug,,2026-12-01,,,maybe,,").into_bytes()
        }),
        ("is not an http(s) URL", |i| {
            format!("B{i},b{i}@x.example,Bo,Mug,,2026-12-01,,,,,ftp://x.example/{i}").into_bytes()
        }),
        ("expected 11 fields, found 3", |i| {
            format!("B{i},b{i}@x.example,Bo").into_bytes()
        }),
        ("expected 11 fields, found 12", |i| {
            format!("B{i},b{i}@x.example,Bo,Mug,,2026-12-01,,,,,,extra").into_bytes()
        }),
        ("not valid UTF-8", |i| {
            let mut row = format!("B{i},b{i}@x.example,Bo,Caf").into_bytes();
            row.extend_from_slice(b"\xe9 au lait,,2026-12-01,,,,,");
            row
        }),
        ("contains a control character", |i| {
            format!("B{i},b{i}@x.example,A\u{1}B,Mug,,2026-12-01,,,,,").into_bytes()
        }),
        ("missing required field 'order_id'", |i| {
            format!(",b{i}@x.example,Bo,Mug,,2026-12-01,,,,,").into_bytes()
        }),
        ("missing required field 'product_name'", |i| {
            format!("B{i},b{i}@x.example,Bo,,,2026-12-01,,,,,").into_bytes()
        }),
    ]
}

type BadJson = (&'static str, fn(usize) -> Vec<u8>);

fn bad_json_rows() -> Vec<BadJson> {
    vec![
        ("invalid JSON", |i| {
            format!("{{\"order_id\": \"B{i}\", ").into_bytes()
        }),
        ("invalid JSON", |i| format!("[\"B{i}\", 1, 2]").into_bytes()),
        ("invalid JSON", |_| b"null".to_vec()),
        ("invalid JSON", |i| {
            format!("{{\"order_id\":\"B{i}\",\"buyer_email\":\"b{i}@x.example\",\"product_na")
                .into_bytes()
        }),
        ("invalid email address 'not-an-email'", |i| {
            format!("{{\"order_id\":\"B{i}\",\"buyer_email\":\"not-an-email\",\"product_name\":\"Mug\"}}").into_bytes()
        }),
        ("invalid email address '42'", |i| {
            format!("{{\"order_id\":\"B{i}\",\"buyer_email\":42,\"product_name\":\"Mug\"}}")
                .into_bytes()
        }),
        ("missing required field 'order_id'", |i| {
            format!("{{\"buyer_email\":\"b{i}@x.example\",\"product_name\":\"Mug\"}}").into_bytes()
        }),
        ("not valid UTF-8", |i| {
            let mut row = format!(
                "{{\"order_id\":\"B{i}\",\"buyer_email\":\"b{i}@x.example\",\"product_name\":\"Caf"
            )
            .into_bytes();
            row.extend_from_slice(b"\xe9\"}");
            row
        }),
        ("'extra' must be an object", |i| {
            format!("{{\"order_id\":\"B{i}\",\"buyer_email\":\"b{i}@x.example\",\"product_name\":\"Mug\",\"extra\":[1]}}").into_bytes()
        }),
        ("contains a line break", |i| {
            format!("{{\"order_id\":\"B{i}\",\"buyer_email\":\"b{i}@x.example\",\"buyer_name\":\"Eve\\r\\nBcc: v@evil.example\",\"product_name\":\"Mug\"}}").into_bytes()
        }),
        ("contains a control character", |i| {
            format!("{{\"order_id\":\"B{i}\",\"buyer_email\":\"b{i}@x.example\",\"product_name\":\"Mug\\u0000\"}}").into_bytes()
        }),
        ("unknown status", |i| {
            format!("{{\"order_id\":\"B{i}\",\"buyer_email\":\"b{i}@x.example\",\"product_name\":\"Mug\",\"status\":\"lost\"}}").into_bytes()
        }),
    ]
}

/// Writes `good` good rows and `bad` bad ones in a seeded random order, and
/// checks that the import reports every bad one by its line (and reason)
/// and imports every good one.
fn malformed_mix(format: &str, good: usize, bad: usize) -> Value {
    let (mut rng, seed) = rng_for(&format!("s7_malformed_{format}"));
    let env = Env::with_defaults();
    let csv = format == "csv";
    let kinds: Vec<BadCsv> = if csv { bad_csv_rows() } else { bad_json_rows() };
    let mut rows: Vec<Option<usize>> = (0..good).map(|_| None).collect();
    rows.extend((0..bad).map(|i| Some(i % kinds.len())));
    rng.shuffle(&mut rows);
    let mut bytes: Vec<u8> = Vec::new();
    let mut line: u64 = 1;
    if csv {
        bytes.extend_from_slice(CSV_HEADER.as_bytes());
        line = 2;
    }
    let mut expected: BTreeMap<u64, &'static str> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        if !csv && rng.u8(..) < 8 {
            bytes.extend_from_slice(b"\n"); // blank lines are skipped, but counted
            line += 1;
        }
        let text = match row {
            None if csv => format!("G{i},g{i}@buyer.example,Gail {i},Mug {i},,2026-12-01T10:00:00Z,,,,,").into_bytes(),
            None => format!("{{\"order_id\":\"G{i}\",\"buyer_email\":\"g{i}@buyer.example\",\"product_name\":\"Mug {i}\",\"shipped_at\":\"2026-12-01T10:00:00Z\"}}").into_bytes(),
            Some(k) => {
                expected.insert(line, kinds[*k].0);
                (kinds[*k].1)(i)
            }
        };
        line += 1 + text.iter().filter(|b| **b == b'\n').count() as u64;
        bytes.extend_from_slice(&text);
        bytes.push(b'\n');
    }
    let file = env.path(&format!("orders.{}", if csv { "csv" } else { "jsonl" }));
    std::fs::write(&file, &bytes).unwrap();
    let started = Instant::now();
    let (out, found) = import_file(&env, &file, Duration::from_secs(300));
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert_eq!(
        out.stdout.trim(),
        format!("imported {good}, updated 0, rejected {bad}")
    );
    let missing: Vec<(&u64, &&str)> = expected
        .iter()
        .filter(|(l, _)| !found.contains_key(l))
        .take(10)
        .collect();
    let extra: Vec<(&u64, &String)> = found
        .iter()
        .filter(|(l, _)| !expected.contains_key(l))
        .take(10)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{format}: rejections by line differ: missing {missing:?}, unexpected {extra:?}"
    );
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(l, want)| !found[*l].contains(*want))
        .take(10)
        .map(|(l, want)| format!("line {l}: want '{want}', got '{}'", found[l]))
        .collect();
    assert!(wrong.is_empty(), "{format}: {wrong:?}");
    assert_eq!(order_count(&env), good as i64, "the good rows are in");
    json!({"format": format, "seed": seed, "good_rows": good, "bad_rows": bad,
           "reported_by_line": found.len(), "kinds": kinds.len(),
           "import_seconds": (took.as_secs_f64() * 10.0).round() / 10.0})
}

#[test]
fn s7_ten_thousand_malformed_rows_are_each_reported_by_line_and_the_good_ones_imported() {
    let started = Instant::now();
    let csv = malformed_mix("csv", size(2_000, 50_000), 10_000);
    let jsonl = malformed_mix("jsonl", size(2_000, 50_000), 10_000);
    report(
        "7 malformed rows",
        started,
        json!({"csv": csv, "jsonl": jsonl}),
    );
}

/// Streams `size` bytes of `fill` into `w`.
fn write_repeated(w: &mut impl Write, fill: u8, size: usize) {
    let chunk = vec![fill; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        w.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
}

#[test]
fn s7_a_100_mb_jsonl_line_is_rejected_by_line_in_bounded_memory() {
    let started = Instant::now();
    let env = Env::with_defaults();
    let file = env.path("huge.jsonl");
    let mb = 100 * 1024 * 1024;
    {
        let mut w = std::io::BufWriter::new(File::create(&file).unwrap());
        let good = |id: &str| {
            format!("{{\"order_id\":\"{id}\",\"buyer_email\":\"{id}@buyer.example\",\"product_name\":\"Mug\",\"shipped_at\":\"2026-12-01\"}}\n")
        };
        w.write_all(good("J1").as_bytes()).unwrap();
        // Line 2: a valid object with a 100 MB product name.
        w.write_all(
            b"{\"order_id\":\"JBIG\",\"buyer_email\":\"big@buyer.example\",\"product_name\":\"",
        )
        .unwrap();
        write_repeated(&mut w, b'x', mb);
        w.write_all(b"\"}\n").unwrap();
        w.write_all(good("J3").as_bytes()).unwrap();
        // Line 4: 100 MB of garbage.
        write_repeated(&mut w, b'{', mb);
        w.write_all(b"\n").unwrap();
        // Line 5, without a final line break.
        w.write_all(good("J5").trim_end().as_bytes()).unwrap();
    }
    let (out, found) = import_file(&env, &file, Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert_eq!(out.stdout.trim(), "imported 3, updated 0, rejected 2");
    assert_eq!(
        found.keys().copied().collect::<Vec<_>>(),
        [2, 4],
        "{found:?}"
    );
    assert!(
        found.values().all(|r| r.contains("line longer than")),
        "{found:?}"
    );
    assert!(
        out.peak_kb < 100 * 1024,
        "a 100 MB line must not be read whole: peak {} MiB",
        out.peak_kb / 1024
    );
    report(
        "7 100 MB JSONL line",
        started,
        json!({"line_bytes": mb, "peak_mib": out.peak_kb / 1024, "rejected_lines": [2, 4]}),
    );
}

#[test]
fn s7_a_huge_csv_row_is_rejected_by_line_in_bounded_memory() {
    let started = Instant::now();
    let env = Env::with_defaults();
    let file = env.path("huge.csv");
    // 16 MB by default (four times the JSON Lines limit), 100 MB in full.
    let mb = size(16, 100) * 1024 * 1024;
    {
        let mut w = std::io::BufWriter::new(File::create(&file).unwrap());
        w.write_all(b"order_id,buyer_email,product_name,shipped_at\nC1,c1@buyer.example,Mug,2026-12-01\nCBIG,big@buyer.example,").unwrap();
        write_repeated(&mut w, b'x', mb);
        w.write_all(b",2026-12-01\nC3,c3@buyer.example,Mug,2026-12-01\n")
            .unwrap();
    }
    let (out, found) = import_file(&env, &file, Duration::from_secs(300));
    report(
        "7 huge CSV row",
        started,
        json!({"line_bytes": mb, "peak_mib": out.peak_kb / 1024, "exit": out.status.code(),
               "stdout": out.stdout.trim(), "rejected": found}),
    );
    assert!(
        out.status.code() == Some(1) && found.keys().copied().collect::<Vec<_>>() == [3],
        "a {} MB CSV row must be rejected by its line, as JSON Lines rejects lines over 4 MiB; \
         got {}",
        mb >> 20,
        out.describe()
    );
    assert_eq!(out.stdout.trim(), "imported 2, updated 0, rejected 1");
    assert!(
        out.peak_kb < 64 * 1024,
        "a {} MB row must not be read whole: peak {} MiB",
        mb >> 20,
        out.peak_kb / 1024
    );
}

/// README: "UTF-8 with or without a BOM, LF or CRLF", and "each bad row
/// goes to stderr as FILE:LINE: reason". The line must be the row's own
/// physical line, whatever the line ends.
#[test]
fn s7_a_bom_and_crlf_line_ends_keep_the_reported_lines_right() {
    let env = Env::with_defaults();
    let mut found_by_variant = BTreeMap::new();
    for (name, bom, end) in [
        ("lf", "", "\n"),
        ("bom-lf", "\u{feff}", "\n"),
        ("crlf", "", "\r\n"),
        ("bom-crlf", "\u{feff}", "\r\n"),
    ] {
        // A quoted CRLF inside a field spans two physical lines (3 and 4).
        let text = format!(
            "{bom}{header}{end}G1,g1@buyer.example,Gail,Mug,,2026-12-01,,,,,{end}\
             B3,b3@buyer.example,\"Ann\r\nBcc: victim@evil.example\",Mug,,2026-12-01,,,,,{end}\
             G5,g5@buyer.example,Gus,Mug,,2026-12-01,,,,,{end}\
             B6,not-an-email,Bo,Mug,,2026-12-01,,,,,{end}\
             G7,g7@buyer.example,\"Smith, Jo\",\"Mug \"\"Deluxe\"\"\",,2026-12-01,,,,,{end}",
            header = CSV_HEADER.trim_end()
        );
        let file = env.write(&format!("{name}.csv"), &text);
        let (out, found) = import_file(&env, &file, Duration::from_secs(60));
        assert_eq!(out.status.code(), Some(1), "{name}: {}", out.describe());
        let imported = out.stdout.trim().to_string();
        found_by_variant.insert(
            name,
            (imported, found.keys().copied().collect::<Vec<_>>(), found),
        );
    }
    for (name, (imported, lines, found)) in &found_by_variant {
        assert!(
            imported.ends_with("rejected 2")
                && found
                    .values()
                    .next()
                    .is_some_and(|r| r.contains("line break")),
            "{name}: {imported} {found:?}"
        );
        assert_eq!(
            lines,
            &[3, 6],
            "{name}: bad rows are on lines 3 and 6, reported as {found:?} (all variants: {:?})",
            found_by_variant
                .iter()
                .map(|(n, v)| (n, v.1.clone()))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn s7_non_utf8_and_truncated_files_are_reported_by_line() {
    let started = Instant::now();
    let env = Env::with_defaults();
    // A Latin-1 file: every row with an accented letter is rejected by its
    // line; the plain rows go in.
    let file = env.path("latin1.csv");
    let mut bytes = CSV_HEADER.as_bytes().to_vec();
    bytes.extend_from_slice(b"L2,l2@buyer.example,Ren\xe9,Caf\xe9,,2026-12-01,,,,,\n");
    bytes.extend_from_slice(b"L3,l3@buyer.example,Rene,Cafe,,2026-12-01,,,,,\n");
    bytes.extend_from_slice(b"L4,l4@buyer.example,Zo\xeb,Mug,,2026-12-01,,,,,\n");
    std::fs::write(&file, &bytes).unwrap();
    let (out, found) = import_file(&env, &file, Duration::from_secs(60));
    assert_eq!(
        out.stdout.trim(),
        "imported 1, updated 0, rejected 2",
        "{}",
        out.describe()
    );
    assert_eq!(
        found.keys().copied().collect::<Vec<_>>(),
        [2, 4],
        "{found:?}"
    );
    assert!(
        found.values().all(|r| r.contains("not valid UTF-8")),
        "{found:?}"
    );

    // A header that is not UTF-8: the file cannot be read at all (exit 2,
    // saying why), and nothing of it goes in.
    let file = env.path("badheader.csv");
    std::fs::write(
        &file,
        b"order_id,buyer_email,product_name,Bemerkung \xfc\nH1,h1@buyer.example,Mug,x\n",
    )
    .unwrap();
    let out = followupd(
        &env,
        &["import", file.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.describe());
    assert!(out.stderr.contains("not valid UTF-8"), "{}", out.describe());

    // JSON Lines: a truncated last line (no line break), a BOM, CRLF.
    let file = env.path("truncated.jsonl");
    std::fs::write(
        &file,
        "\u{feff}{\"order_id\":\"T1\",\"buyer_email\":\"t1@buyer.example\",\"product_name\":\"Mug\"}\r\n\
         {\"order_id\":\"T2\",\"buyer_email\":\"t2@buyer.example\",\"product_name\":\"Mug\"}\r\n\
         {\"order_id\":\"T3\",\"buyer_email\":\"t3@buyer.ex",
    )
    .unwrap();
    let (out, found) = import_file(&env, &file, Duration::from_secs(60));
    assert_eq!(
        out.stdout.trim(),
        "imported 2, updated 0, rejected 1",
        "{}",
        out.describe()
    );
    assert_eq!(found.keys().copied().collect::<Vec<_>>(), [3], "{found:?}");
    assert!(found[&3].contains("invalid JSON"), "{found:?}");

    // CSV truncated inside a quoted field.
    let file = env.path("truncated.csv");
    std::fs::write(
        &file,
        format!(
            "{CSV_HEADER}U2,u2@buyer.example,Uma,Mug,,2026-12-01,,,,,\nU3,u3@buyer.example,\"Un"
        ),
    )
    .unwrap();
    let (out, found) = import_file(&env, &file, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert_eq!(
        found.keys().copied().collect::<Vec<_>>(),
        [3],
        "{}",
        out.describe()
    );
    assert_eq!(order_count(&env), 1 + 2 + 1);
    report(
        "7 non-UTF-8 and truncated files",
        started,
        json!({"files": 4}),
    );
}

#[test]
fn s7_line_breaks_nul_and_100_kb_fields_are_refused_or_sent_intact() {
    let started = Instant::now();
    let env = Env::new(&format!(
        "{}\n[sending_hours]\nstart = \"00:00\"\nend = \"00:00\"\n",
        common::BASE_CONFIG
    ));
    let big = "Lorem ipsum dolor sit amet ".repeat(100 * 1024 / 27);
    let rows = [
        json!({"order_id":"N1","buyer_email":"n1@buyer.example","product_name":big,"shipped_at":"-1h"}),
        json!({"order_id":"N2","buyer_email":"n2@buyer.example","buyer_name":big,"product_name":"Mug","shipped_at":"-1h"}),
        json!({"order_id":"N3","buyer_email":"n3@buyer.example","product_name":"Mug","shipped_at":"-1h","note":big}),
        // Free-form extra columns may hold anything; they never reach a header.
        json!({"order_id":"N4","buyer_email":"n4@buyer.example","product_name":"Mug","shipped_at":"-1h","note":"a\u{0}b\r\nBcc: victim@evil.example"}),
        json!({"order_id":"N5","buyer_email":"n5@buyer.example","product_name":"Mug\u{0}","shipped_at":"-1h"}),
        json!({"order_id":"N6","buyer_email":"n6@buyer.example","product_name":"Mug","buyer_name":"Ann\rBo","shipped_at":"-1h"}),
        json!({"order_id":"N7","buyer_email":"n7@buyer.example","product_name":"Mug","buyer_name":"Ann\nBcc: victim@evil.example","shipped_at":"-1h"}),
        json!({"order_id":"N8\r\nX","buyer_email":"n8@buyer.example","product_name":"Mug","shipped_at":"-1h"}),
    ];
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    let file = env.write("fields.jsonl", &text);
    let (out, found) = import_file(&env, &file, Duration::from_secs(60));
    assert_eq!(
        out.stdout.trim(),
        "imported 4, updated 0, rejected 4",
        "{}",
        out.describe()
    );
    assert_eq!(
        found.keys().copied().collect::<Vec<_>>(),
        [5, 6, 7, 8],
        "{found:?}"
    );
    assert!(found[&5].contains("control character"), "{found:?}");
    assert!(found[&6].contains("line break") && found[&7].contains("line break"));
    tick(&env, Utc::now());
    let outbox = env.outbox();
    assert_eq!(outbox.len(), 4, "N1..N4 sent");
    for (name, raw) in &outbox {
        let head = raw.split("\r\n\r\n").next().unwrap();
        assert!(
            !head
                .lines()
                .any(|l| l.to_ascii_lowercase().starts_with("bcc:")),
            "{name}: {head}"
        );
    }
    let n1 = &outbox.iter().find(|(n, _)| n.contains(".N1@")).unwrap().1;
    let subject = decoded_header(n1, "Subject");
    assert_eq!(
        subject,
        format!("Your {} is on its way", big.trim()),
        "the 100 KB subject arrives whole"
    );
    // Support staff can still read the send log, as a table and as JSON.
    let json_logs = followupd(&env, &["logs", "--json"], Duration::from_secs(60));
    assert!(json_logs.status.success(), "{}", json_logs.describe());
    let table = followupd(&env, &["logs"], Duration::from_secs(60));
    report(
        "7 control characters and 100 KB fields",
        started,
        json!({"rows": rows.len(), "rejected": 4, "sent": outbox.len(),
               "logs_table_exit": table.status.code()}),
    );
    assert!(
        table.status.success(),
        "`followupd logs` fails once a subject is 100 KB long: {}",
        table.describe()
    );
}

fn idn_and_quoted(addresses: &[&str]) -> (Env, SmtpServer, Out, Vec<Value>) {
    let server = SmtpServer::start(&[]);
    let env = Env::new(&smtp_config(server.port, &[], "", "", ""));
    let text: String = addresses
        .iter()
        .enumerate()
        .map(|(i, a)| {
            format!(
                "{}\n",
                json!({"order_id": format!("E{}", i + 1), "buyer_email": a,
                       "product_name": "Mug", "shipped_at": "2026-12-01T09:00:00Z"})
            )
        })
        .collect();
    let file = env.write("emails.jsonl", &text);
    let out = followupd(
        &env,
        &["import", file.to_str().unwrap()],
        Duration::from_secs(60),
    );
    tick(&env, at(T0));
    let received = server.received();
    (env, server, out, received)
}

#[test]
fn s7_idn_domains_and_utf8_local_parts_reach_the_server() {
    let started = Instant::now();
    let addresses = [
        "ann@bücher.example",
        "josé@example.com",
        "user+tag@xn--bcher-kva.example",
        "o'brien@example.com",
        "用户@例子.广告",
    ];
    let (env, server, out, received) = idn_and_quoted(&addresses);
    assert!(out.status.success(), "{}", out.describe());
    let got: BTreeSet<String> = received
        .iter()
        .map(|r| r["rcpt_tos"][0].as_str().unwrap().to_string())
        .collect();
    let want: BTreeSet<String> = addresses.iter().map(|a| a.to_string()).collect();
    assert_eq!(got, want);
    check_invariants(
        &env,
        &[&server],
        &Expect {
            now: at(T0),
            resend_stages: &[],
            unattributed: Some(0),
        },
    );
    report(
        "7 IDN addresses",
        started,
        json!({"addresses": addresses.len(), "sent": got.len()}),
    );
}

/// README: "IDN domains and quoted local parts are fine". An address the
/// import takes must be deliverable (or the import must refuse it, by line).
#[test]
fn s7_quoted_local_parts_are_delivered_or_refused_at_import() {
    let started = Instant::now();
    let addresses = [
        "\"quoted\"@example.com",
        "\"john doe\"@example.com",
        "\"a@b\"@example.com",
        "\"very.(),:;<>[]\\\".unusual\"@example.com",
    ];
    let (env, server, out, received) = idn_and_quoted(&addresses);
    let file = env.path("emails.jsonl");
    let refused = rejections(&out.stderr, &file);
    let got: Vec<String> = received
        .iter()
        .map(|r| r["rcpt_tos"][0].as_str().unwrap().to_string())
        .collect();
    let db = Db::open(&env);
    let states = db.strings(
        "SELECT order_id, state || ': ' || COALESCE(reason, '') FROM stages WHERE stage = 'shipment' ORDER BY order_id",
    );
    drop(db);
    let mut problems = Vec::new();
    for (i, address) in addresses.iter().enumerate() {
        let line = i as u64 + 1;
        if refused.contains_key(&line) {
            continue;
        }
        // The quotes may go where they are not needed ("quoted"@ = quoted@).
        let unquoted = address.replacen('"', "", 2);
        let plain = !unquoted
            .split('@')
            .next()
            .unwrap()
            .contains([' ', '@', '(', '"', '\\']);
        let delivered = got
            .iter()
            .any(|g| g == address || (plain && *g == unquoted));
        if !delivered {
            let state = states
                .iter()
                .find(|(id, _)| *id == format!("E{line}"))
                .map(|(_, s)| s.as_str());
            problems.push(format!("{address}: imported, then {state:?}"));
        }
    }
    report(
        "7 quoted local parts",
        started,
        json!({"addresses": addresses.len(), "refused_at_import": refused.len(),
               "delivered": got, "not_delivered": problems}),
    );
    assert!(
        problems.is_empty(),
        "addresses the import accepted but nobody can deliver:\n{}",
        problems.join("\n")
    );
    check_invariants(
        &env,
        &[&server],
        &Expect {
            now: at(T0),
            resend_stages: &[],
            unattributed: Some(0),
        },
    );
}

/// `-3d` means "that long before the import"; an absurd span must be a
/// rejected row, not a crash of the import (or of the service that reads
/// the inbox, which would then crash on the same file at every restart).
#[test]
fn s7_an_out_of_range_relative_time_is_a_rejection_not_a_crash() {
    let started = Instant::now();
    let env = Env::new(&format!(
        "{}\n[sending_hours]\nstart = \"00:00\"\nend = \"00:00\"\n\n[import]\ninbox = \"inbox\"\n",
        common::BASE_CONFIG
    ));
    let text = format!(
        "{ORDER_HEADER}{}{}{}",
        order_row("R1", "-1h", ""),
        order_row("R2", "-300000y", ""),
        order_row("R3", "-5000000000d", "")
    );
    let out = import_text(&env, "relative.csv", &text);
    let file = env.path("relative.csv");
    let found = rejections(&out.stderr, &file);
    let cli_ok =
        out.status.code() == Some(1) && found.keys().copied().collect::<Vec<_>>() == [3, 4];

    env.write(
        "inbox/.relative.csv.tmp",
        &text
            .replace("R1", "Q1")
            .replace("R2", "Q2")
            .replace("R3", "Q3"),
    );
    std::fs::rename(
        env.path("inbox/.relative.csv.tmp"),
        env.path("inbox/relative.csv"),
    )
    .unwrap();
    let mut daemon = Daemon::start(&env, "inbox", &[]);
    let filed = eventually(Duration::from_secs(10), || {
        env.path("inbox/rejected/relative.csv.errors").exists() || !daemon.alive()
    });
    std::thread::sleep(Duration::from_millis(500));
    let alive = daemon.alive();
    let daemon_log = daemon.log_tail();
    drop(daemon);
    report(
        "7 out-of-range relative time",
        started,
        json!({"cli_exit": out.status.code(), "cli_rejected_lines": found.keys().collect::<Vec<_>>(),
               "daemon_alive": alive, "inbox_file_filed": filed && alive}),
    );
    assert!(
        cli_ok,
        "import of `-300000y` / `-5000000000d`: expected rows 3 and 4 rejected, got {}",
        out.describe()
    );
    assert!(
        alive && filed,
        "the service died on an inbox file with an out-of-range relative time (it would \
         crash again on every restart); log:\n{daemon_log}"
    );
}

/// The importer takes dates up to the year 262142; a window measured from
/// such a date must not crash the scheduler (and with it every pass, for
/// every order) when a stage's window is long.
#[test]
fn s7_a_far_future_date_does_not_stop_the_other_orders() {
    let env = Env::new(&format!(
        "{}\n[sending_hours]\nstart = \"00:00\"\nend = \"00:00\"\n\n\
         [[stages]]\nname = \"shipment\"\nanchor = \"shipped_at\"\nopens_after = \"0s\"\ncloses_after = \"400d\"\n",
        common::BASE_CONFIG
    ));
    let out = import_text(
        &env,
        "far.csv",
        &format!(
            "{ORDER_HEADER}{}{}",
            order_row("FAR", "+262142-12-31", ""),
            order_row("NEAR", "-1h", "")
        ),
    );
    let far_refused = out.status.code() == Some(1);
    let t = followupd(&env, &["tick"], Duration::from_secs(60));
    assert!(
        t.status.success(),
        "tick with an order dated +262142-12-31 (accepted by the import: {}): {}",
        !far_refused,
        t.describe()
    );
    assert!(
        env.outbox().iter().any(|(n, _)| n.contains(".NEAR@")),
        "the ordinary order was not sent"
    );
}

/// A header's value with RFC 2047 encoded words decoded (UTF-8, B or Q).
fn decoded_header(raw: &str, name: &str) -> String {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    let mut value = String::new();
    let mut inside = false;
    for line in raw.split("\r\n") {
        if line.is_empty() {
            break;
        }
        if inside && (line.starts_with(' ') || line.starts_with('\t')) {
            value.push_str(line);
            continue;
        }
        inside = false;
        if line.to_ascii_lowercase().starts_with(&prefix) {
            value.push_str(&line[prefix.len()..]);
            inside = true;
        }
    }
    // Decode each =?charset?X?text?= and drop the whitespace between two.
    let mut out = String::new();
    let mut rest = value.trim();
    let mut last_was_word = false;
    while !rest.is_empty() {
        if let Some(start) = rest.find("=?") {
            let (before, after) = rest.split_at(start);
            if !(last_was_word && before.trim().is_empty()) {
                out.push_str(before);
            }
            let parts: Vec<&str> = after[2..].splitn(3, '?').collect();
            if parts.len() == 3 {
                if let Some(end) = parts[2].find("?=") {
                    let text = &parts[2][..end];
                    let bytes = if parts[1].eq_ignore_ascii_case("b") {
                        base64_decode(text)
                    } else {
                        qp_decode(&text.replace('_', " "))
                    };
                    out.push_str(&String::from_utf8_lossy(&bytes));
                    let consumed = 2 + parts[0].len() + 1 + parts[1].len() + 1 + end + 2;
                    rest = &after[consumed..];
                    last_was_word = true;
                    continue;
                }
            }
            out.push_str(after);
            break;
        }
        out.push_str(rest);
        break;
    }
    out.trim().to_string()
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    };
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter_map(value) {
        acc = (acc << 6) | c;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Quoted-printable to bytes (soft line breaks removed).
fn qp_decode(text: &str) -> Vec<u8> {
    let bytes = text.replace("=\r\n", "").replace("=\n", "").into_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(
                std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                16,
            ) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

// ---------------------------------------------------------------------------
// 8. Hostile data in templates
// ---------------------------------------------------------------------------

/// The decoded text/plain and text/html parts of a raw message.
fn mime_parts(raw: &str) -> Vec<(String, String)> {
    let mut parts = Vec::new();
    let boundary = raw
        .find("boundary=\"")
        .map(|i| &raw[i + 10..])
        .and_then(|rest| rest.find('"').map(|j| rest[..j].to_string()));
    let chunks: Vec<&str> = match &boundary {
        Some(b) => raw.split(&format!("--{b}")).skip(1).collect(),
        None => vec![raw],
    };
    for chunk in chunks {
        let Some((head, body)) = chunk.split_once("\r\n\r\n") else {
            continue;
        };
        let head_lower = head.to_ascii_lowercase();
        let kind = if head_lower.contains("text/html") {
            "html"
        } else if head_lower.contains("text/plain") {
            "text"
        } else {
            continue;
        };
        let bytes = if head_lower.contains("quoted-printable") {
            qp_decode(body)
        } else if head_lower.contains("base64") {
            base64_decode(body)
        } else {
            body.as_bytes().to_vec()
        };
        parts.push((
            kind.to_string(),
            String::from_utf8_lossy(&bytes).replace("\r\n", "\n"),
        ));
    }
    parts
}

#[test]
fn s8_hostile_order_data_stays_data_escaped_and_out_of_the_headers() {
    let started = Instant::now();
    let server = SmtpServer::start(&[]);
    let env = Env::new(&smtp_config(server.port, &[], "", "", ""));
    // Templates that put free-form order data into the subject and next to
    // lone dots in both bodies.
    env.write(
        "templates/shipment/subject.txt.tera",
        "Your {{ order.product_name }} is on its way{% if order.extra.tag %} ({{ order.extra.tag }}){% endif %}\n",
    );
    let text = std::fs::read_to_string(env.path("templates/shipment/body.txt.tera")).unwrap();
    env.write(
        "templates/shipment/body.txt.tera",
        &format!(".\n{text}.\n{{% if order.extra.note %}}{{{{ order.extra.note }}}}{{% endif %}}\n..\n.\n"),
    );
    let html = std::fs::read_to_string(env.path("templates/shipment/body.html.tera")).unwrap();
    env.write(
        "templates/shipment/body.html.tera",
        &html.replace(
            "</body>",
            "<p>{% if order.extra.note %}{{ order.extra.note }}{% endif %}</p>\n.\n</body>",
        ),
    );
    let evil_url = "https://shop.example/t?a=\"><script>alert(4)</script>";
    let rows = [
        json!({"order_id":"H1","buyer_email":"h1@buyer.example","buyer_name":"{{ 7*7 }} {% include \"/etc/passwd\" %}",
               "product_name":"{{ 7*7 }} Mug {% raw %}x{% endraw %}","note":"{{ 7*7 }} {{ shop.name }} {% for i in [1] %}loop{% endfor %}"}),
        json!({"order_id":"H2","buyer_email":"h2@buyer.example","buyer_name":"<b>Bo</b><script>alert(2)</script>",
               "product_name":"<script>alert(1)</script> Mug","note":"<img src=x onerror=alert(3)>",
               "tracking_url":evil_url,"order_url":evil_url}),
        json!({"order_id":"H3","buyer_email":"h3@buyer.example","buyer_name":"Eve\u{2028}Bcc: victim@evil.example",
               "product_name":"Mug\u{2029}Bcc: victim@evil.example"}),
        json!({"order_id":"H4","buyer_email":"h4@buyer.example","buyer_name":"=?utf-8?q?Eve=0D=0ABcc=3A_victim=40evil=2Eexample?=",
               "product_name":"Mug =?utf-8?b?DQpCY2M6IHZpY3RpbUBldmlsLmV4YW1wbGU=?="}),
        json!({"order_id":"H5","buyer_email":"h5@buyer.example","buyer_name":"Dot","product_name":"Mug",
               "note":"line one\r\n.\r\nline three\n.\n..\n."}),
        json!({"order_id":"H6","buyer_email":"h6@buyer.example","buyer_name":"Tag","product_name":"Mug",
               "tag":"x\r\nBcc: victim@evil.example"}),
        json!({"order_id":"H7","buyer_email":"h7@buyer.example","buyer_name":"Eve\u{85}Bcc: victim@evil.example","product_name":"Mug"}),
    ];
    let text: String = rows
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r["shipped_at"] = json!("2026-12-01T09:00:00Z");
            format!("{r}\n")
        })
        .collect();
    let file = env.write("hostile.jsonl", &text);
    let (out, found) = import_file(&env, &file, Duration::from_secs(60));
    assert_eq!(
        found.keys().copied().collect::<Vec<_>>(),
        [7],
        "{}",
        out.describe()
    );
    assert!(found[&7].contains("control character"), "{found:?}");
    tick(&env, at(T0));

    let received = server.received();
    let by_order: HashMap<String, String> = received
        .iter()
        .map(|r| {
            let n = r["n"].as_u64().unwrap();
            let to = r["rcpt_tos"].as_array().unwrap();
            assert_eq!(to.len(), 1, "one recipient only: {r}");
            let order = to[0]
                .as_str()
                .unwrap()
                .split('@')
                .next()
                .unwrap()
                .to_uppercase();
            (order, server.message(n))
        })
        .collect();
    let mut ids: Vec<&String> = by_order.keys().collect();
    ids.sort();
    assert_eq!(
        ids,
        ["H1", "H2", "H3", "H4", "H5"],
        "H6 blocked, H7 refused"
    );
    for (id, raw) in &by_order {
        let head = raw.split("\r\n\r\n").next().unwrap();
        for line in head.split("\r\n") {
            let lower = line.to_ascii_lowercase();
            assert!(
                !lower.starts_with("bcc:") && !lower.starts_with("cc:"),
                "{id}: a header was added: {line}\n{head}"
            );
            assert!(line.is_ascii(), "{id}: raw 8-bit header: {line:?}");
        }
    }
    let part = |id: &str, kind: &str| -> String {
        mime_parts(&by_order[id])
            .into_iter()
            .find(|(k, _)| k == kind)
            .map(|(_, b)| b)
            .unwrap_or_else(|| panic!("{id}: no {kind} part"))
    };

    // Template syntax in order data arrives as written, never evaluated.
    let h1 = &by_order["H1"];
    assert_eq!(
        decoded_header(h1, "Subject"),
        "Your {{ 7*7 }} Mug {% raw %}x{% endraw %} is on its way"
    );
    let h1_text = part("H1", "text");
    assert!(
        h1_text.contains("{{ 7*7 }} {{ shop.name }} {% for i in [1] %}loop{% endfor %}"),
        "{h1_text}"
    );
    assert!(
        !h1_text.contains("49") && !h1_text.contains("root:"),
        "{h1_text}"
    );
    assert!(decoded_header(h1, "To").contains("{{ 7*7 }} {% include \"/etc/passwd\" %}"));

    // Markup in any field is escaped in HTML, URL included.
    let h2_html = part("H2", "html");
    let lower = h2_html.to_lowercase();
    assert!(
        !lower.contains("<script") && !lower.contains("<img") && !lower.contains("<b>bo"),
        "unescaped markup in the HTML part:\n{h2_html}"
    );
    assert!(lower.contains("&lt;script&gt;alert(1)"), "{h2_html}");
    assert!(
        !h2_html.contains("\"><"),
        "the link's attribute was broken out of:\n{h2_html}"
    );
    assert!(part("H2", "text").contains("<script>alert(1)</script> Mug"));

    // Line separators and encoded-word look-alikes stay inside the header
    // they belong to.
    assert!(decoded_header(&by_order["H3"], "To").contains("Eve\u{2028}Bcc: victim@evil.example"));
    assert_eq!(
        decoded_header(&by_order["H3"], "Subject"),
        "Your Mug\u{2029}Bcc: victim@evil.example is on its way"
    );

    // Lone dots, from the template and from the data, arrive intact.
    let h5 = part("H5", "text");
    assert!(h5.starts_with(".\n"), "{h5:?}");
    assert!(
        h5.contains("\n.\nline one\n.\nline three\n.\n..\n.\n..\n.\n"),
        "{h5:?}"
    );
    assert!(part("H5", "html").contains("\n.\n"));

    // A line break from free-form data in the subject blocks the message.
    let line = plan(&env, at(T0))
        .into_iter()
        .find(|l| l["order_id"] == "H6" && l["stage"] == "shipment")
        .unwrap();
    assert_eq!(line["state"], "blocked", "{line}");
    assert!(
        line["reason"].as_str().unwrap().contains("single line"),
        "{line}"
    );
    check_invariants(
        &env,
        &[&server],
        &Expect {
            now: at(T0),
            resend_stages: &[],
            unattributed: Some(0),
        },
    );
    report(
        "8 hostile data",
        started,
        json!({"orders": rows.len(), "sent": by_order.len(), "blocked": 1, "refused_at_import": 1,
               "headers_added": 0}),
    );
}

// ---------------------------------------------------------------------------
// 9. Property tests: importer, schedule, lint (in-process)
// ---------------------------------------------------------------------------

mod fuzz {
    use super::*;
    use chrono::{NaiveTime, TimeZone};
    use chrono_tz::Tz;
    use followupd::config::Config;
    use followupd::import::{read_orders, Format};
    use followupd::lint::Forbidden;
    use followupd::order::OrderStatus;
    use followupd::schedule::{
        evaluate, Anchor, Decision, SkipCondition, SkipReason, StageState, WaitReason,
    };
    use proptest::prelude::*;
    use proptest::test_runner::{
        Config as ProptestConfig, FileFailurePersistence, TestCaseError, TestRunner,
    };

    /// Bounded case counts by default; failures are kept (and replayed
    /// first) in proptest-regressions/faults.txt.
    fn runner(default_cases: u32) -> TestRunner {
        TestRunner::new(ProptestConfig {
            cases: if full() {
                default_cases * 20
            } else {
                default_cases
            },
            source_file: Some(file!()),
            // Relative to the package root (cargo test's working directory).
            failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
                "proptest-regressions/faults.txt",
            ))),
            max_shrink_iters: 512,
            ..ProptestConfig::default()
        })
    }

    /// Runs a property; on failure, panics with the minimal input.
    fn check<S: Strategy>(
        name: &str,
        cases: u32,
        strategy: S,
        test: impl Fn(S::Value) -> Result<(), TestCaseError>,
    ) where
        S::Value: std::fmt::Debug,
    {
        let started = Instant::now();
        let mut runner = runner(cases);
        quiet_panics(true);
        let result = runner.run(&strategy, test);
        quiet_panics(false);
        let cases = runner.config().cases;
        report(
            &format!("9 fuzz {name}"),
            started,
            json!({"cases": cases, "passed": result.is_ok()}),
        );
        if let Err(e) = result {
            let text = format!("{e}");
            panic!("{name}: {}", text.chars().take(6000).collect::<String>());
        }
    }

    thread_local! {
        static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// While a property runs, the panics proptest catches (and shrinks) are
    /// not printed one by one; the minimal failing input is reported once.
    /// Only this thread is affected.
    fn quiet_panics(on: bool) {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if !QUIET.with(|q| q.get()) {
                    previous(info);
                }
            }));
        });
        QUIET.with(|q| q.set(on));
    }

    fn import_config(env: &Env) -> Config {
        Config::load(&env.path("config.toml")).expect("the test config loads")
    }

    fn now() -> DateTime<Utc> {
        at("2026-12-01T10:00:00Z")
    }

    /// Reads every row of `path`; fails on a panic (caught by proptest), on
    /// a rejection whose line is not in the file, or on more rows than lines.
    fn read_all(
        config: &Config,
        path: &Path,
        format: Format,
        lines: u64,
    ) -> Result<Vec<Result<String, u64>>, TestCaseError> {
        let rows = read_orders(path, Some(format), None, config, now())
            .map_err(|e| TestCaseError::fail(format!("cannot open: {e}")))?;
        let mut out = Vec::new();
        for row in rows {
            match row {
                Ok(Ok(record)) => out.push(Ok(record.order.key.order_id.to_string())),
                Ok(Err(rejection)) => {
                    prop_assert!(
                        rejection.line >= 1 && rejection.line <= lines,
                        "rejection at line {} of a {lines}-line file: {}",
                        rejection.line,
                        rejection.reason
                    );
                    out.push(Err(rejection.line));
                }
                // The whole file cannot be read (a header that is not UTF-8).
                Err(_) => break,
            }
            prop_assert!(out.len() as u64 <= lines, "more rows than lines");
        }
        Ok(out)
    }

    /// Lines of a file, for an upper bound on line numbers: CSV also ends a
    /// record at a bare CR, so CR, LF and CRLF each end one line.
    fn physical_lines(bytes: &[u8]) -> u64 {
        let mut lines = 1;
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'\n' || bytes[i] == b'\r' {
                lines += 1;
                if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            i += 1;
        }
        lines
    }

    fn fragment() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => proptest::collection::vec(any::<u8>(), 0..24),
            2 => "\\PC{0,12}".prop_map(|s| s.into_bytes()),
            1 => Just(b"\n".to_vec()),
            1 => Just(b"\r\n".to_vec()),
            1 => Just(b"\r".to_vec()),
            1 => Just(b",".to_vec()),
            1 => Just(b"\"".to_vec()),
            1 => Just(b"{".to_vec()),
            1 => Just(b"}".to_vec()),
            1 => Just(b"\xef\xbb\xbf".to_vec()),
            1 => Just(CSV_HEADER.as_bytes().to_vec()),
            1 => Just(b"G1,g1@buyer.example,Gail,Mug,,2026-12-01,,,,,\n".to_vec()),
            1 => Just(br#"{"order_id":"J1","buyer_email":"j@x.example","product_name":"Mug","extra":{"a":[1,{"b":null}]}}"#.to_vec()),
        ]
    }

    #[test]
    fn s9_fuzz_importer_random_bytes_never_panics_and_rejects_by_line() {
        let env = Env::with_defaults();
        let config = import_config(&env);
        let path = env.path("fuzz.bin");
        check(
            "importer random bytes",
            256,
            proptest::collection::vec(fragment(), 0..48).prop_map(|f| f.concat()),
            |bytes| {
                std::fs::write(&path, &bytes).unwrap();
                let lines = physical_lines(&bytes);
                read_all(&config, &path, Format::Csv, lines)?;
                read_all(&config, &path, Format::Jsonl, lines)?;
                Ok(())
            },
        );
    }

    fn text_value() -> BoxedStrategy<String> {
        prop_oneof![
            3 => Just(String::new()),
            3 => "[A-Za-z0-9 ._-]{1,12}",
            1 => Just("\u{0}".to_string()),
            1 => Just("a\r\nBcc: v@evil.example".to_string()),
            1 => Just("\t tab".to_string()),
            1 => Just("  padded  ".to_string()),
            1 => Just("Zoë \u{2028} 用户".to_string()),
            1 => Just("\"quoted\", with comma".to_string()),
            1 => Just("{{ 7*7 }}".to_string()),
            1 => "\\PC{0,16}",
            1 => any::<String>(),
        ]
        .boxed()
    }

    fn field_value(field: &str) -> BoxedStrategy<String> {
        let specific: Vec<&'static str> = match field {
            "buyer_email" => vec![
                "ann@buyer.example",
                "ann@bücher.example",
                "\"john doe\"@example.com",
                "no-at",
                "a@",
                "@b",
                "Ann <ann@x.example>",
                "用户@例子.广告",
            ],
            "shipped_at" | "delivered_at" => vec![
                "2026-12-01",
                "2026-12-01T10:00:00Z",
                "2026-12-01T10:00:00+05:30",
                "-3d",
                "-1h",
                "yesterday",
                "+262142-12-31",
                "0000-01-01",
                "9999-12-31T23:59:59Z",
                "2026-02-30",
                "-2y",
                "-1000000d",
            ],
            "time_zone" => vec![
                "UTC",
                "Europe/Berlin",
                "Mars/Base",
                "utc",
                "America/St_Johns",
            ],
            "status" => vec!["shipped", "delivered", "CANCELED", "lost", "refunded"],
            "complaint" | "opted_out" => vec!["true", "no", "1", "maybe", "Y"],
            "order_url" | "tracking_url" | "review_url" => vec![
                "https://x.example/r",
                "ftp://x",
                "http://a b",
                "javascript:alert(1)",
                "HTTPS://X",
            ],
            _ => vec!["P1", "shop", "Mug", "Ann Lee", "de-AT"],
        };
        let relative = matches!(field, "shipped_at" | "delivered_at");
        let mut options: Vec<(u32, BoxedStrategy<String>)> = vec![
            (3, text_value()),
            (
                6,
                proptest::sample::select(specific)
                    .prop_map(String::from)
                    .boxed(),
            ),
        ];
        if relative {
            options.push((
                1,
                (1u64..20_000_000_000)
                    .prop_map(|n| format!("-{n}d"))
                    .boxed(),
            ));
            options.push((1, (1u64..1_000_000).prop_map(|n| format!("-{n}y")).boxed()));
            options.push((1, any::<u64>().prop_map(|n| format!("-{n}s")).boxed()));
        }
        proptest::strategy::Union::new_weighted(options).boxed()
    }

    /// Every column the importer knows (the config's list), with `note`, an
    /// extra column, in place of `extra`.
    static FIELDS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
        followupd::config::CANONICAL_FIELDS
            .iter()
            .copied()
            .filter(|f| *f != "extra")
            .chain(["note"])
            .collect()
    });

    fn row() -> impl Strategy<Value = Vec<String>> {
        FIELDS.iter().map(|f| field_value(f)).collect::<Vec<_>>()
    }

    /// Well-formed CSV (written by the csv crate) of random field values:
    /// every row is exactly one good order or one rejection, at the line
    /// where the row starts.
    #[test]
    fn s9_fuzz_importer_csv_rows_are_each_an_order_or_a_rejection_at_their_line() {
        let env = Env::with_defaults();
        let config = import_config(&env);
        let path = env.path("fuzz.csv");
        check(
            "importer CSV rows",
            192,
            proptest::collection::vec(row(), 1..24),
            |rows| {
                let mut writer = csv::WriterBuilder::new().from_writer(Vec::new());
                writer.write_record(FIELDS.iter()).unwrap();
                let mut starts = Vec::new();
                for r in &rows {
                    writer.flush().unwrap();
                    starts
                        .push(writer.get_ref().iter().filter(|b| **b == b'\n').count() as u64 + 1);
                    writer.write_record(r).unwrap();
                }
                let bytes = writer.into_inner().unwrap();
                std::fs::write(&path, &bytes).unwrap();
                let items = read_all(&config, &path, Format::Csv, physical_lines(&bytes))?;
                prop_assert_eq!(items.len(), rows.len(), "one outcome per row");
                for ((item, r), start) in items.iter().zip(&rows).zip(&starts) {
                    match item {
                        Ok(id) => prop_assert_eq!(id, r[0].trim()),
                        Err(line) => prop_assert_eq!(line, start, "row {:?}", r),
                    }
                }
                Ok(())
            },
        );
    }

    fn json_value(field: &'static str) -> BoxedStrategy<Value> {
        prop_oneof![
            8 => field_value(field).prop_map(Value::String),
            1 => any::<i64>().prop_map(Value::from),
            1 => any::<bool>().prop_map(Value::from),
            1 => Just(Value::Null),
            1 => Just(json!([1, "two", {"three": null}])),
        ]
        .boxed()
    }

    /// JSON Lines of random objects (random value types, blank lines, a
    /// BOM, CRLF): every object is one order or one rejection at its line.
    #[test]
    fn s9_fuzz_importer_json_lines_are_each_an_order_or_a_rejection_at_their_line() {
        let env = Env::with_defaults();
        let config = import_config(&env);
        let path = env.path("fuzz.jsonl");
        let object = FIELDS
            .iter()
            .map(|f| proptest::option::weighted(0.8, json_value(f)))
            .collect::<Vec<_>>();
        check(
            "importer JSON Lines",
            192,
            (
                proptest::collection::vec((object, any::<bool>()), 1..24),
                any::<bool>(),
                any::<bool>(),
            ),
            |(rows, bom, crlf)| {
                let end = if crlf { "\r\n" } else { "\n" };
                let mut text = if bom {
                    "\u{feff}".to_string()
                } else {
                    String::new()
                };
                let mut expected = Vec::new();
                let mut line = 1u64;
                for (values, blank_before) in &rows {
                    if *blank_before {
                        text.push_str(end);
                        line += 1;
                    }
                    let mut object = serde_json::Map::new();
                    for (f, v) in FIELDS.iter().zip(values) {
                        if let Some(v) = v {
                            object.insert(f.to_string(), v.clone());
                        }
                    }
                    text.push_str(&Value::Object(object.clone()).to_string());
                    text.push_str(end);
                    expected.push((line, object));
                    line += 1;
                }
                std::fs::write(&path, &text).unwrap();
                let items = read_all(
                    &config,
                    &path,
                    Format::Jsonl,
                    physical_lines(text.as_bytes()),
                )?;
                prop_assert_eq!(items.len(), rows.len(), "one outcome per object");
                for (item, (line, object)) in items.iter().zip(&expected) {
                    if let Err(l) = item {
                        prop_assert_eq!(l, line, "object {:?}", object);
                    }
                }
                Ok(())
            },
        );
    }

    const ZONES: [&str; 13] = [
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",
        "Asia/Kathmandu",
        "America/St_Johns",
        "Pacific/Chatham",
        "Africa/Casablanca",
        "Europe/Dublin",
        "Antarctica/Troll",
        "Pacific/Apia",
        "Asia/Tokyo",
        "America/Santiago",
    ];

    #[derive(Debug, Clone)]
    struct Case {
        zone: Option<&'static str>,
        default_zone: &'static str,
        hours: (u32, u32),
        transit: i64,
        anchor: bool,
        opens: i64,
        length: i64,
        after: bool,
        skip_when: Vec<usize>,
        shipped: Option<i64>,
        delivered_after: Option<i64>,
        status: usize,
        complaint: bool,
        opted_out: bool,
        prerequisite: Option<usize>,
        not_before: Option<i64>,
        now: i64,
    }

    const DAY: i64 = 86_400;

    /// The last second chrono (and so the importer) can represent,
    /// +262142-12-31T23:59:59Z since chrono 0.4.35 (+262143-12-31 before).
    /// Cases stay inside it: an instant past it cannot even be built, so it
    /// is no input the scheduler can be given.
    const LAST_SECOND: i64 = DateTime::<Utc>::MAX_UTC.timestamp();

    /// Instants in seconds: mostly around 2020..2035 (DST changes
    /// included), with `extreme` anywhere the importer accepts.
    fn instant(extreme: bool) -> BoxedStrategy<i64> {
        let recent = 1_577_836_800i64..2_051_222_400i64;
        if extreme {
            prop_oneof![
                2 => recent,
                1 => -8_210_266_876_800i64..=LAST_SECOND,
                1 => LAST_SECOND - 400 * DAY..=LAST_SECOND,
            ]
            .boxed()
        } else {
            recent.boxed()
        }
    }

    fn case(extreme: bool) -> impl Strategy<Value = Case> {
        let max_offset = if extreme { 800 * DAY } else { 30 * DAY };
        (
            (
                proptest::option::of(proptest::sample::select(&ZONES[..])),
                proptest::sample::select(&ZONES[..]),
                (0u32..1440, 0u32..1440),
                0i64..10 * DAY,
                any::<bool>(),
                0i64..max_offset,
                1i64..max_offset,
                any::<bool>(),
            ),
            (
                proptest::collection::vec(0usize..5, 0..3),
                proptest::option::weighted(0.9, instant(extreme)),
                proptest::option::of(0i64..20 * DAY),
                0usize..6,
                any::<bool>(),
                any::<bool>(),
                proptest::option::of(0usize..StageState::ALL.len()),
                proptest::option::of(-5 * DAY..30 * DAY),
                prop_oneof![instant(extreme), -10 * DAY..60 * DAY],
            ),
        )
            .prop_map(
                |(
                    (zone, default_zone, hours, transit, anchor, opens, length, after),
                    (
                        skip_when,
                        shipped,
                        delivered_after,
                        status,
                        complaint,
                        opted_out,
                        prerequisite,
                        not_before,
                        now,
                    ),
                )| {
                    // A `now` near the order (small values are offsets from it).
                    let now = match shipped {
                        Some(s) if now.abs() < 100 * DAY => s.saturating_add(now),
                        _ => now,
                    };
                    Case {
                        zone,
                        default_zone,
                        hours,
                        transit,
                        anchor,
                        opens,
                        length,
                        after,
                        skip_when,
                        shipped,
                        delivered_after,
                        status,
                        complaint,
                        opted_out,
                        prerequisite,
                        not_before: not_before.map(|n| now.saturating_add(n)),
                        now,
                    }
                },
            )
    }

    const SKIPS: [SkipCondition; 5] = [
        SkipCondition::Returned,
        SkipCondition::Refunded,
        SkipCondition::Cancelled,
        SkipCondition::Complaint,
        SkipCondition::OptedOut,
    ];
    const STATUSES: [OrderStatus; 6] = [
        OrderStatus::Pending,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Returned,
        OrderStatus::Refunded,
        OrderStatus::Cancelled,
    ];

    fn applies(c: SkipCondition, order: &followupd::order::Order) -> bool {
        match c {
            SkipCondition::Returned => order.status == OrderStatus::Returned,
            SkipCondition::Refunded => order.status == OrderStatus::Refunded,
            SkipCondition::Cancelled => order.status == OrderStatus::Cancelled,
            SkipCondition::Complaint => order.complaint,
            SkipCondition::OptedOut => order.opted_out,
        }
    }

    /// An instant; offsets that run past the end of time stop at its last
    /// second.
    fn secs_to(t: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(t.min(LAST_SECOND), 0).single().unwrap()
    }

    /// Builds the order, stage and rules of a case from a loaded config (so
    /// that fields added to those types later keep their defaults).
    fn setup(
        config: &Config,
        c: &Case,
    ) -> (
        followupd::order::Order,
        followupd::schedule::StageSpec,
        followupd::schedule::Rules,
    ) {
        let mut order = followupd::order::sample_order("shop");
        order.time_zone = c.zone.map(|z| z.parse::<Tz>().unwrap());
        order.shipped_at = c.shipped.map(secs_to);
        order.delivered_at = match (c.shipped, c.delivered_after) {
            (Some(s), Some(d)) => Some(secs_to(s.saturating_add(d))),
            _ => None,
        };
        order.status = STATUSES[c.status];
        order.complaint = c.complaint;
        order.opted_out = c.opted_out;
        let mut stage = config.stages[0].clone();
        stage.anchor = if c.anchor {
            Anchor::ShippedAt
        } else {
            Anchor::DeliveredAt
        };
        stage.opens_after = chrono::Duration::seconds(c.opens);
        stage.closes_after = chrono::Duration::seconds(c.opens + c.length);
        stage.after = c.after.then(|| "before".to_string());
        stage.skip_when = c.skip_when.iter().map(|i| SKIPS[*i]).collect();
        let mut rules = config.rules.clone();
        rules.default_zone = c.default_zone.parse().unwrap();
        rules.transit_estimate = chrono::Duration::seconds(c.transit);
        rules.sending_hours.start =
            NaiveTime::from_num_seconds_from_midnight_opt(c.hours.0 * 60, 0).unwrap();
        rules.sending_hours.end =
            NaiveTime::from_num_seconds_from_midnight_opt(c.hours.1 * 60, 0).unwrap();
        (order, stage, rules)
    }

    fn schedule_properties(config: &Config, c: Case) -> Result<(), TestCaseError> {
        let (order, stage, rules) = setup(config, &c);
        let prerequisite = c.prerequisite.map(|i| StageState::ALL[i]);
        let not_before = c.not_before.map(secs_to);
        let now = secs_to(c.now);
        let zone = order.time_zone.unwrap_or(rules.default_zone);
        let eval = evaluate(&order, &stage, prerequisite, not_before, &rules, now);
        match &eval.decision {
            Decision::Due => {
                let w = eval
                    .window
                    .ok_or_else(|| TestCaseError::fail("due without a window"))?;
                prop_assert!(
                    w.opens <= now && now < w.closes,
                    "due at {now} outside {w:?}"
                );
                let local = now.with_timezone(&zone).time();
                prop_assert!(
                    rules.sending_hours.contains(local),
                    "due at {local} local ({zone}), outside the sending hours {:?}",
                    rules.sending_hours
                );
                prop_assert!(
                    not_before.is_none_or(|t| t <= now),
                    "due before its retry time"
                );
                prop_assert!(
                    !stage.skip_when.iter().any(|s| applies(*s, &order)),
                    "due although a skip condition holds"
                );
                if stage.after.is_some() {
                    prop_assert!(
                        prerequisite.is_none_or(|p| p == StageState::Sent),
                        "due although its prerequisite is {prerequisite:?}"
                    );
                }
            }
            Decision::Wait { until, reason } => {
                if let Some(t) = until {
                    prop_assert!(*t > now, "wait until {t}, not after now {now}: a busy loop");
                }
                if until.is_none() {
                    prop_assert!(eval.window.is_none(), "waits for nothing with a window");
                }
                let promised = matches!(
                    reason,
                    WaitReason::NotOpenYet | WaitReason::OutsideSendingHours | WaitReason::Retry
                );
                if let (true, Some(t), Some(w)) = (promised, until, eval.window) {
                    prop_assert!(
                        w.opens <= *t && *t < w.closes,
                        "next send {t} outside {w:?}"
                    );
                    // At the promised time it is due, or it waits on (never
                    // a wait that does not move forward).
                    let again = evaluate(&order, &stage, prerequisite, not_before, &rules, *t);
                    if let Decision::Wait { until: Some(u), .. } = again.decision {
                        prop_assert!(u > *t, "at {t} it waits until {u}");
                    }
                }
            }
            Decision::Skip(SkipReason::Condition(s)) => {
                prop_assert!(
                    applies(*s, &order),
                    "skipped for {s:?}, which does not hold"
                );
            }
            Decision::Skip(SkipReason::PrerequisiteNotSent { state, .. }) => {
                prop_assert!(state.is_terminal() && *state != StageState::Sent);
            }
            // Reasons added later (marketplace policy, ...) are not judged here.
            Decision::Skip(_) => {}
            Decision::Expire => {
                let w = eval
                    .window
                    .ok_or_else(|| TestCaseError::fail("expired without a window"))?;
                prop_assert!(now >= w.closes, "expired at {now} before {}", w.closes);
            }
        }
        Ok(())
    }

    #[test]
    fn s9_fuzz_schedule_is_due_only_inside_the_window_and_the_sending_hours() {
        let env = Env::with_defaults();
        let config = import_config(&env);
        check("schedule", 2048, case(false), |c| {
            schedule_properties(&config, c)
        });
    }

    /// Dates anywhere the importer accepts (up to the year 262142) and
    /// windows up to two years long: no panic.
    #[test]
    fn s9_fuzz_schedule_never_panics_at_the_edges_of_time() {
        let env = Env::with_defaults();
        let config = import_config(&env);
        check("schedule at the edges of time", 1024, case(true), |c| {
            let (order, stage, rules) = setup(&config, &c);
            let prerequisite = c.prerequisite.map(|i| StageState::ALL[i]);
            let _ = evaluate(
                &order,
                &stage,
                prerequisite,
                c.not_before.map(secs_to),
                &rules,
                secs_to(c.now),
            );
            Ok(())
        });
    }

    fn lint_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            3 => "\\PC{0,8}",
            1 => any::<String>(),
            1 => proptest::sample::select(vec![
                "review", "Review", "REVIEWS", "préview", "reviewer", "https://x.example/review",
                "www.x.example/review", "İ", "ﬁ", "\u{301}", "\u{200d}", "\u{202e}", "r e v i e w",
                "r.e.v.i.e.w", "update", "Chang", "exchange", "modify", "{{ order.review_url }}",
                "{%", "%}", "{#", "#}", "\r\n", "\n", "\r", " ", "\t", "ß", "ǅ", "ΐ",
            ])
            .prop_map(String::from),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|p| p.concat())
    }

    #[test]
    fn s9_fuzz_lint_scans_any_unicode_without_panicking_and_points_at_the_word() {
        let lists: Vec<Forbidden> = [
            followupd::lint::DEFAULT_FORBIDDEN
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            vec![
                "İstanbul".into(),
                "straße".into(),
                "ﬁx*".into(),
                "Σ*".into(),
            ],
        ]
        .iter()
        .filter_map(|l| Forbidden::new(l).ok())
        .collect();
        prop_assert_lists(&lists);
        check(
            "lint",
            512,
            (
                lint_text(),
                proptest::collection::vec("\\PC{0,6}\\*?", 0..3),
            ),
            |(text, list)| {
                let _ = Forbidden::new(&list); // any list: Ok or Err, no panic
                let lines: Vec<&str> = text.lines().collect();
                for forbidden in &lists {
                    let _ = forbidden.scan_template_source(&text);
                    for hit in forbidden.scan(&text) {
                        prop_assert!(hit.line >= 1 && hit.line <= lines.len().max(1), "{hit:?}");
                        let line: Vec<char> = lines
                            .get(hit.line - 1)
                            .copied()
                            .unwrap_or("")
                            .chars()
                            .collect();
                        prop_assert!(
                            hit.column >= 1 && hit.column <= line.len() + 1,
                            "{hit:?} in {line:?}"
                        );
                        let at: String = line[hit.column - 1..].iter().collect();
                        prop_assert!(
                            at.starts_with(&hit.word),
                            "{hit:?} is not at its place in {:?}",
                            text
                        );
                    }
                }
                Ok(())
            },
        );
    }

    fn prop_assert_lists(lists: &[Forbidden]) {
        assert!(!lists.is_empty(), "the default list builds");
    }
}

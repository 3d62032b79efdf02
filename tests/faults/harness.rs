//! The harness: sizes and seeds, the binary and the service, configurations
//! and orders.

// What every scenario uses, so that a scenario file starts with one `use`.
pub use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
pub use std::fs::File;
pub use std::io::{Read, Seek, SeekFrom, Write};
pub use std::path::{Path, PathBuf};
pub use std::process::{Child, Command, ExitStatus, Stdio};
pub use std::time::{Duration, Instant};

pub use crate::common::mime::{base64_decode, decoded_header, qp_decode};
pub use crate::common::smtp::SmtpServer;
pub use crate::common::{self, eventually, free_port, Env, CSV_HEADER};
pub use crate::db::*;
pub use crate::invariants::*;
pub use chrono::{DateTime, SecondsFormat, Utc};
pub use serde_json::{json, Value};

use std::sync::atomic::{AtomicU32, Ordering};

/// What the send log says on the re-send of a stage with
/// `on_unknown = "resend"` (src/engine.rs, IN_DOUBT_RESEND).
pub const IN_DOUBT_RESEND: &str = "re-send of an in-doubt attempt (on_unknown = resend)";

/// Every state a stage may be in (README, "How a stage is scheduled").
pub const STATES: [&str; 9] = [
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
pub const ATTEMPT_STATUSES: [&str; 4] = ["sent", "retrying", "failed", "unknown"];

/// Connections (and so sends in flight) in the SMTP scenarios.
pub const POOL: usize = 8;

/// The instant the tick-driven scenarios start at.
pub const T0: &str = "2026-12-01T10:00:00Z";

// ---------------------------------------------------------------------------
// Sizes, seeds, figures
// ---------------------------------------------------------------------------

pub fn full() -> bool {
    std::env::var("FOLLOWUPD_FAULTS_FULL").is_ok_and(|v| v == "1")
}

/// `small` by default, `big` with FOLLOWUPD_FAULTS_FULL=1.
pub fn size(small: usize, big: usize) -> usize {
    if full() {
        big
    } else {
        small
    }
}

/// A seeded random source for one scenario; the seed is printed so that a
/// failure can be repeated with FOLLOWUPD_FAULTS_SEED.
pub fn rng_for(scenario: &str) -> (fastrand::Rng, u64) {
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
pub fn report(scenario: &str, started: Instant, figures: Value) {
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

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

pub fn minutes(m: i64) -> chrono::Duration {
    chrono::Duration::minutes(m)
}

// ---------------------------------------------------------------------------
// The real SMTP server (aiosmtpd)
// ---------------------------------------------------------------------------

/// Counts the lines of a growing file without re-reading it.
pub struct LineCounter {
    pub path: PathBuf,
    pub offset: u64,
    pub count: usize,
}

impl LineCounter {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            offset: 0,
            count: 0,
        }
    }

    pub fn count(&mut self) -> usize {
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
pub fn bare_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

/// The recipient of one attempts.jsonl line, lower-cased (None for a
/// connection without a transaction).
pub fn attempt_recipient(a: &Value) -> Option<String> {
    a["rcpt"]
        .as_str()
        .or_else(|| a["rcpt_tos"].get(0).and_then(Value::as_str))
        .map(|r| r.to_lowercase())
}

// ---------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------

/// The outcome of one `followupd` command.
pub struct Out {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The process's peak resident memory (VmHWM), in KiB, as last seen.
    pub peak_kb: u64,
}

impl Out {
    pub fn describe(&self) -> String {
        let cut = |s: &str| -> String { s.chars().take(4000).collect() };
        format!(
            "{}\nstdout: {}\nstderr: {}",
            self.status,
            cut(&self.stdout),
            cut(&self.stderr)
        )
    }
}

pub fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `followupd -c CONFIG ARGS…` and waits at most `limit` (a hung
/// command fails the test instead of hanging it).
pub fn followupd(env: &Env, args: &[&str], limit: Duration) -> Out {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let out_path = env.path(&format!(".out.{n}"));
    let err_path = env.path(&format!(".err.{n}"));
    let mut child = env
        .command()
        .args(args)
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("followupd runs");
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
pub fn ok(env: &Env, args: &[&str]) -> String {
    let out = followupd(env, args, Duration::from_secs(300));
    assert!(
        out.status.success(),
        "followupd {args:?} failed: {}",
        out.describe()
    );
    out.stdout
}

pub fn tick(env: &Env, now: DateTime<Utc>) -> String {
    ok(env, &["tick", "--now", &rfc3339(now)])
}

pub fn import_text(env: &Env, name: &str, text: &str) -> Out {
    let file = env.write(name, text);
    followupd(
        env,
        &["import", file.to_str().unwrap()],
        Duration::from_secs(300),
    )
}

pub fn import_ok(env: &Env, name: &str, text: &str) {
    let out = import_text(env, name, text);
    assert!(out.status.success(), "import {name}: {}", out.describe());
}

/// `plan --json --now NOW` lines.
pub fn plan(env: &Env, now: DateTime<Utc>) -> Vec<Value> {
    ok(env, &["plan", "--json", "--now", &rfc3339(now)])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `logs --json` for one order.
pub fn logs_for(env: &Env, order: &str) -> Vec<Value> {
    ok(
        env,
        &["logs", "--json", "--order", order, "--limit", "1000"],
    )
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

/// A running `followupd run`; killed on drop.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
    pub exit: Option<ExitStatus>,
}

impl Daemon {
    pub fn start(env: &Env, name: &str, args: &[&str]) -> Self {
        let log = env.path(&format!("{name}.stderr"));
        let child = env
            .command()
            .arg("run")
            .args(args)
            .env("RUST_LOG", "warn,followupd::daemon=info")
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("followupd run starts");
        Self {
            child,
            log,
            exit: None,
        }
    }

    /// Waits until the service says it is running (after READY=1: signal
    /// handlers installed, in-doubt sends settled, --import done).
    pub fn wait_ready(&mut self) {
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

    pub fn alive(&mut self) -> bool {
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

    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).to_string()
    }

    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        self.exit = Some(self.child.wait().unwrap());
    }

    /// SIGTERM, then insists on an exit 0 within `limit`.
    pub fn stop(&mut self, limit: Duration) {
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
pub fn smtp_config(
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
pub const DUE_AT_ONCE_STAGES: &str = r#"
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
// Orders
// ---------------------------------------------------------------------------

pub const ORDER_HEADER: &str =
    "order_id,buyer_email,buyer_name,product_name,shipped_at,delivered_at,order_url,review_url\n";

/// One order row for [`ORDER_HEADER`].
pub fn order_row(id: &str, shipped: &str, delivered: &str) -> String {
    let lower = id.to_lowercase();
    format!(
        "{id},{lower}@buyer.example,Kim {id},Teapot {id},{shipped},{delivered},https://shop.example/o/{id},https://shop.example/r/{id}\n"
    )
}

/// `count` shipments due now (shipped an hour ago), ids `{prefix}{i}`.
pub fn due_now_csv(prefix: &str, count: usize) -> String {
    let mut csv = ORDER_HEADER.to_string();
    for i in 0..count {
        csv.push_str(&order_row(&format!("{prefix}{i:05}"), "-1h", ""));
    }
    csv
}

/// Runs `followupd import FILE` and reads the rejected rows it reported.
pub fn import_file(env: &Env, file: &Path, limit: Duration) -> (Out, BTreeMap<u64, String>) {
    let out = followupd(env, &["import", file.to_str().unwrap()], limit);
    let found = rejections(&out.stderr, file);
    (out, found)
}

/// The `FILE:LINE: reason` lines of an import's stderr, by line; a line
/// reported twice fails the test.
pub fn rejections(stderr: &str, file: &Path) -> BTreeMap<u64, String> {
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

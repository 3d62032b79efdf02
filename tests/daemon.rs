//! `followupd run` as a service: the real binary as a child process, with a
//! Unix datagram socket standing in for systemd's NOTIFY_SOCKET, signals sent
//! with kill(1), and the outcome checked through the outbox, the inbox
//! folders, the service log (stderr) and the CLI (`plan`, `logs`) afterwards.

mod common;

use std::fs::File;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::smtp::SmtpServer;
use common::{eventually, header, launch, strip_ansi, Env, CSV_HEADER};
use serde_json::Value;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

// ---------------------------------------------------------------------------
// sd-notify listener
// ---------------------------------------------------------------------------

type Received = Arc<(Mutex<Vec<(Instant, String)>>, Condvar)>;

/// A bound datagram socket collecting every notification a daemon sends.
struct Notifications {
    path: PathBuf,
    received: Received,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Notifications {
    fn listen(path: PathBuf) -> Self {
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let received: Received = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let received = Arc::clone(&received);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::SeqCst) {
                    match socket.recv(&mut buf) {
                        Ok(n) => {
                            let text = String::from_utf8_lossy(&buf[..n]).to_string();
                            let (lock, cvar) = &*received;
                            lock.lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push((Instant::now(), text));
                            cvar.notify_all();
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => break,
                    }
                }
            })
        };
        Self {
            path,
            received,
            stop,
            thread: Some(thread),
        }
    }

    fn all(&self) -> Vec<(Instant, String)> {
        self.received
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn len(&self) -> usize {
        self.received
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// The messages from index `from` on.
    fn since(&self, from: usize) -> Vec<String> {
        self.all().into_iter().skip(from).map(|(_, m)| m).collect()
    }

    /// Waits for the first message at index `from` or later that `pred`
    /// accepts, and returns its index; panics after `timeout`.
    fn wait_for(
        &self,
        from: usize,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> usize {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.received;
        let mut messages = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(i) = (from..messages.len()).find(|&i| pred(&messages[i].1)) {
                return i;
            }
            let now = Instant::now();
            if now >= deadline {
                let texts: Vec<&str> = messages.iter().map(|(_, m)| m.as_str()).collect();
                let summary = describe(&texts);
                drop(messages);
                panic!("no notification {what} within {timeout:?}; received: {summary}");
            }
            messages = cvar
                .wait_timeout(messages, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The message at `index`.
    fn get(&self, index: usize) -> String {
        self.all()[index].1.clone()
    }
}

impl Drop for Notifications {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A short rendering of many notifications for failure messages.
fn describe(messages: &[&str]) -> String {
    let shown: Vec<&str> = messages.iter().rev().take(30).rev().copied().collect();
    format!(
        "{} in all, the last {}: {:?}",
        messages.len(),
        shown.len(),
        shown
    )
}

/// Whether a notification carries the assignment `line` (e.g. "READY=1").
fn has(message: &str, line: &str) -> bool {
    message.lines().any(|l| l == line)
}

/// The STATUS= text of a notification.
fn status(message: &str) -> Option<&str> {
    message.lines().find_map(|l| l.strip_prefix("STATUS="))
}

// ---------------------------------------------------------------------------
// The daemon under test
// ---------------------------------------------------------------------------

/// A running `followupd run`; killed on drop if it is still alive (so a
/// failing test never leaves it behind).
struct Daemon {
    child: Child,
    name: String,
    stderr_path: PathBuf,
    notify: Notifications,
    exit: Option<ExitStatus>,
}

impl Daemon {
    /// `followupd -c CONFIG run ARGS…` with RUST_LOG=info, stderr to a file
    /// and its own notify socket; `vars` are extra environment variables.
    fn start(env: &Env, name: &str, args: &[&str], vars: &[(&str, &str)]) -> Self {
        let mut command = env.command();
        command.arg("run").args(args);
        command.envs(vars.iter().copied());
        Self::spawn(env, name, command)
    }

    /// Starts `command` (from the common launcher, which cleaned its
    /// environment; it must end up exec'ing the daemon) with its own
    /// notify socket and stderr file.
    fn spawn(env: &Env, name: &str, mut command: Command) -> Self {
        let notify = Notifications::listen(env.path(&format!("{name}.notify")));
        let stderr_path = env.path(&format!("{name}.stderr"));
        let stderr = File::create(&stderr_path).unwrap();
        let child = command
            .env("RUST_LOG", "info")
            .env("NOTIFY_SOCKET", &notify.path)
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("followupd starts");
        Self {
            child,
            name: name.to_string(),
            stderr_path,
            notify,
            exit: None,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The service log so far, without colours.
    fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.stderr_path).unwrap_or_default())
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Whether the process is still running.
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

    /// Waits for the process to exit; `None` if it is still running after
    /// `timeout`.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.alive() {
                return self.exit;
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for READY=1 and returns the index of that notification.
    fn wait_ready(&mut self) -> usize {
        let deadline = Instant::now() + secs(15.0);
        loop {
            let messages = self.notify.all();
            if let Some(i) = messages.iter().position(|(_, m)| has(m, "READY=1")) {
                return i;
            }
            if !self.alive() || Instant::now() >= deadline {
                panic!(
                    "{} never sent READY=1 (exit: {:?}); log:\n{}",
                    self.name,
                    self.exit,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then insists on a clean exit within `timeout`; returns how
    /// long the exit took.
    fn stop(&mut self, timeout: Duration) -> Duration {
        let started = Instant::now();
        self.signal("TERM");
        let status = self.wait_exit(timeout);
        let took = started.elapsed();
        assert!(
            status.is_some_and(|s| s.success()),
            "{} did not exit cleanly within {timeout:?} after SIGTERM ({status:?}); log:\n{}",
            self.name,
            self.log()
        );
        took
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
// Installations, orders, messages
// ---------------------------------------------------------------------------

/// A test config: file transport, messages go out at any hour; `extra` is
/// appended (more tables).
fn file_config(extra: &str) -> String {
    format!(
        r#"
[database]
url = "sqlite://state/test.db"

[defaults]
time_zone = "UTC"

[sending_hours]
start = "00:00"
end = "00:00"

[transport]
kind = "file"
dir = "outbox"

[sender]
from = "Test Shop <shop@test.example>"
reply_to = "care@test.example"

{extra}
"#
    )
}

const INBOX: &str = r#"
[import]
inbox = "inbox"
"#;

/// One CSV row whose shipment notice is due at once (shipped an hour
/// before the import).
fn row(id: &str) -> String {
    format!("{id},{id}@buyer.example,Ann {id},Teapot {id},,-1h,,,,,\n")
}

fn csv(ids: &[&str]) -> String {
    let mut text = CSV_HEADER.to_string();
    for id in ids {
        text.push_str(&row(id));
    }
    text
}

/// Puts a file into the inbox the way an exporter should: written under a
/// temporary name, then renamed.
fn drop_into_inbox(env: &Env, name: &str, text: &str) {
    let tmp = env.write(&format!("inbox/.{name}.tmp"), text);
    std::fs::rename(tmp, env.path(&format!("inbox/{name}"))).unwrap();
}

/// The outbox message addressed to order `id`'s buyer, if written yet.
fn message_to(env: &Env, id: &str) -> Option<String> {
    let to = format!("<{id}@buyer.example>");
    env.outbox()
        .into_iter()
        .map(|(_, raw)| raw)
        .find(|raw| header(raw, "To").is_some_and(|t| t.contains(&to)))
}

/// Waits for order `id`'s message in the outbox.
fn wait_for_message(env: &Env, daemon: &Daemon, id: &str) -> String {
    let mut found = None;
    let ok = eventually(secs(10.0), || {
        found = message_to(env, id);
        found.is_some()
    });
    assert!(
        ok,
        "no message for {id} in the outbox (has: {:?}); log:\n{}",
        env.outbox().iter().map(|(n, _)| n).collect::<Vec<_>>(),
        daemon.log()
    );
    found.unwrap()
}

/// A raw message with quoted-printable soft line breaks undone, so body
/// text can be searched for.
fn unfolded(raw: &str) -> String {
    raw.replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=")
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn smtp_config(port: u16, daemon: &str) -> String {
    format!(
        r#"
[database]
url = "sqlite://state/test.db"

[defaults]
time_zone = "UTC"

[sending_hours]
start = "00:00"
end = "00:00"

[transport]
kind = "smtp"
host = "127.0.0.1"
port = {port}
tls = "none"
pool_size = 2
connect_timeout = "2s"
command_timeout = "10s"
send_timeout = "20s"

[sender]
from = "Test Shop <shop@test.example>"
reply_to = "care@test.example"

[daemon]
{daemon}
"#
    )
}

/// `plan --json` for now, shipment stages only: order id -> state.
fn shipment_states(env: &Env) -> Vec<(String, String)> {
    let mut states: Vec<(String, String)> = json_lines(&env.ok(&["plan", "--json"]))
        .into_iter()
        .filter(|l| l["stage"] == "shipment")
        .map(|l| {
            (
                l["order_id"].as_str().unwrap().to_string(),
                l["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    states.sort();
    states
}

/// Imports `ids` (due now) with the CLI, before the daemon starts.
fn import_due(env: &Env, ids: &[&str]) {
    let out = env.import_csv("orders.csv", &csv(ids));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

/// READY=1 comes once startup (lock, database, `--import`) is done, with a
/// STATUS=; inbox files are imported, sent and filed under done/ or, with a
/// bad row, rejected/ beside a .errors file naming the line.
#[test]
fn ready_after_startup_then_inbox_files_are_imported_sent_and_filed() {
    let env = Env::new(&file_config(INBOX));
    let start = env.write("start.csv", &csv(&["S1"]));
    let mut daemon = Daemon::start(&env, "run", &["--import", start.to_str().unwrap()], &[]);

    let ready = daemon.wait_ready();
    // What the log and the lock file say at the moment READY=1 is in hand
    // was done before it was sent.
    let log_at_ready = daemon.log();
    let lock_at_ready = std::fs::read_to_string(env.path("state/test.db.lock")).unwrap_or_default();
    assert_eq!(
        ready,
        0,
        "READY=1 must be the first notification: {:?}",
        daemon.notify.since(0)
    );
    let ready_message = daemon.notify.get(ready);
    let ready_status = status(&ready_message)
        .unwrap_or_else(|| panic!("READY=1 without a STATUS= line: {ready_message:?}"));
    assert!(ready_status.starts_with("running: "), "{ready_message:?}");
    assert!(
        log_at_ready.contains("orders imported") && log_at_ready.contains("imported=1"),
        "READY=1 came before the --import file was imported; log then:\n{log_at_ready}"
    );
    assert_eq!(lock_at_ready.trim(), format!("pid {}", daemon.pid()));
    // The file given with --import is read where it is, not moved.
    assert!(start.exists());
    wait_for_message(&env, &daemon, "S1");

    // A file still being written (temporary name) is left alone...
    let tmp = env.write("inbox/.orders.csv.tmp", &csv(&["N1"]));
    std::thread::sleep(Duration::from_millis(400));
    assert!(tmp.exists(), "a temporary inbox file was taken");
    assert!(message_to(&env, "N1").is_none());
    // ...until it is renamed.
    std::fs::rename(&tmp, env.path("inbox/orders.csv")).unwrap();
    let message = wait_for_message(&env, &daemon, "N1");
    assert_eq!(
        header(&message, "Subject").as_deref(),
        Some("Your Teapot N1 is on its way")
    );
    assert!(
        eventually(secs(5.0), || env.path("inbox/done/orders.csv").exists()),
        "orders.csv did not reach inbox/done/ (inbox: {:?}); log:\n{}",
        files_in(&env.path("inbox")),
        daemon.log()
    );
    assert!(!env.path("inbox/orders.csv").exists());
    assert!(files_in(&env.path("inbox/rejected")).is_empty());

    // One bad row (line 3: the header is line 1): the file goes to
    // rejected/ with a .errors file; its good rows are sent all the same.
    let mixed = format!(
        "{CSV_HEADER}{}B2,not-an-email,Bob,Cup,,-1h,,,,,\n{}",
        row("G1"),
        row("G3")
    );
    drop_into_inbox(&env, "mixed.csv", &mixed);
    let errors_file = env.path("inbox/rejected/mixed.csv.errors");
    assert!(
        eventually(secs(5.0), || errors_file.exists()
            && env.path("inbox/rejected/mixed.csv").exists()),
        "mixed.csv was not filed under rejected/ (inbox: {:?}, rejected: {:?}); log:\n{}",
        files_in(&env.path("inbox")),
        files_in(&env.path("inbox/rejected")),
        daemon.log()
    );
    let errors = std::fs::read_to_string(&errors_file).unwrap();
    let lines: Vec<&str> = errors.lines().collect();
    assert_eq!(lines.len(), 1, "one bad row, one line: {errors:?}");
    assert!(
        lines[0].starts_with("mixed.csv:3: ") && lines[0].contains("not-an-email"),
        "{errors:?}"
    );
    assert!(!env.path("inbox/mixed.csv").exists());
    assert!(!env.path("inbox/done/mixed.csv").exists());
    wait_for_message(&env, &daemon, "G1");
    wait_for_message(&env, &daemon, "G3");
    assert_eq!(env.outbox().len(), 4, "S1, N1, G1, G3 and nothing else");
    assert!(daemon.alive());

    // One READY=1 in all: no reload happened.
    let readies = daemon
        .notify
        .since(0)
        .iter()
        .filter(|m| has(m, "READY=1"))
        .count();
    assert_eq!(readies, 1);
    daemon.stop(secs(5.0));
}

/// With nothing to do, the service sleeps: it does not loop (each pass
/// sends a STATUS=, so a busy loop shows as a flood of them). The inbox
/// watcher must not wake the loop for the loop's own reads of the inbox.
/// SIGHUP with a broken template keeps the running set (and says where the
/// error is); with a fixed one it switches. RELOADING=1 + MONOTONIC_USEC=
/// and then READY=1 frame each reload.
/// SIGTERM in the middle of a batch to a slow SMTP server: no new sends
/// start, those in flight finish, the process exits 0 well within the
/// grace period, and every stage is left final or still scheduled.
/// When in-flight sends outlast the grace period the service still exits 0
/// in about the grace period; those sends are left in doubt and the next
/// start settles them as unknown rather than sending them twice.
#[test]
fn sigterm_with_sends_outlasting_the_grace_period_exits_in_time() {
    let server = SmtpServer::start(&["--data-delay", "6"]);
    let env = Env::new(&smtp_config(server.port, "shutdown_grace = \"500ms\""));
    import_due(&env, &["U1", "U2"]);

    let mut daemon = Daemon::start(&env, "run", &[], &[]);
    daemon.wait_ready();
    let both = eventually(secs(10.0), || {
        shipment_states(&env).iter().all(|(_, s)| s == "sending")
    });
    assert!(
        both,
        "the sends did not go into flight; log:\n{}",
        daemon.log()
    );
    // Let the messages reach the server (it then stalls before replying).
    std::thread::sleep(Duration::from_millis(300));
    let took = daemon.stop(secs(5.0));
    assert!(
        took >= secs(0.4) && took < secs(3.0),
        "expected an exit after the 500 ms grace period, took {took:?}"
    );
    let log = daemon.log();
    assert!(log.contains("grace period over"), "{log}");
    assert!(daemon.notify.since(0).iter().any(|m| has(m, "STOPPING=1")));
    assert!(server.received().is_empty());

    // The next start settles both as unknown and sends nothing again.
    let mut again = Daemon::start(&env, "again", &[], &[]);
    again.wait_ready();
    assert_eq!(
        shipment_states(&env),
        vec![
            ("U1".to_string(), "unknown".to_string()),
            ("U2".to_string(), "unknown".to_string())
        ],
        "log:\n{}",
        again.log()
    );
    assert!(again.log().contains("settled sends left in doubt"));
    again.stop(secs(5.0));
    let unknown = json_lines(&env.ok(&["logs", "--json", "--status", "unknown"]));
    assert_eq!(unknown.len(), 2, "{unknown:?}");
}

/// Only one `run` per SQLite database: a second one fails at once, naming
/// the first one's pid; the lock goes with the first process.
#[test]
fn a_second_run_on_the_same_database_exits_at_once() {
    let env = Env::new(&file_config(""));
    let mut first = Daemon::start(&env, "first", &[], &[]);
    first.wait_ready();

    let started = Instant::now();
    let mut second = Daemon::start(&env, "second", &[], &[]);
    let status = second.wait_exit(secs(5.0));
    let took = started.elapsed();
    assert!(
        status.is_some_and(|s| !s.success()),
        "the second run did not fail ({status:?}); log:\n{}",
        second.log()
    );
    assert!(took < secs(3.0), "the second run took {took:?} to give up");
    let log = second.log();
    assert!(log.contains("already using"), "{log}");
    assert!(
        log.contains(&format!("pid {}", first.pid())),
        "the message must name pid {}: {log}",
        first.pid()
    );
    assert!(
        !second.notify.since(0).iter().any(|m| has(m, "READY=1")),
        "the refused run said READY=1"
    );
    assert!(first.alive(), "the first run was disturbed");
    assert_eq!(
        std::fs::read_to_string(env.path("state/test.db.lock"))
            .unwrap()
            .trim(),
        format!("pid {}", first.pid())
    );

    // Once the first one has stopped, a new run gets the lock.
    first.stop(secs(5.0));
    let mut third = Daemon::start(&env, "third", &[], &[]);
    third.wait_ready();
    assert_eq!(
        std::fs::read_to_string(env.path("state/test.db.lock"))
            .unwrap()
            .trim(),
        format!("pid {}", third.pid())
    );
    third.stop(secs(5.0));
}

/// WATCHDOG_USEC=400000: WATCHDOG=1 about every 200 ms, when WATCHDOG_PID
/// is unset or names the process, and never when it names another one.
#[test]
fn watchdog_pings_at_half_the_interval_for_the_right_pid() {
    let unset_env = Env::new(&file_config(INBOX));
    let mut unset = Daemon::start(&unset_env, "run", &[], &[("WATCHDOG_USEC", "400000")]);

    // WATCHDOG_PID = the daemon's own pid: a shell that execs it.
    let own_env = Env::new(&file_config(""));
    let mut command = launch::through_shell(
        r#"WATCHDOG_PID=$$ exec "$0" "$@""#,
        &own_env.path("config.toml"),
    );
    command.arg("run").env("WATCHDOG_USEC", "400000");
    let mut own = Daemon::spawn(&own_env, "run", command);

    let other_env = Env::new(&file_config(""));
    let mut other = Daemon::start(
        &other_env,
        "run",
        &[],
        &[("WATCHDOG_USEC", "400000"), ("WATCHDOG_PID", "1")],
    );

    let ready = [unset.wait_ready(), own.wait_ready(), other.wait_ready()];
    std::thread::sleep(Duration::from_millis(2000));
    let pings = |d: &Daemon, from: usize| -> Vec<Instant> {
        d.notify
            .all()
            .into_iter()
            .skip(from)
            .filter(|(_, m)| has(m, "WATCHDOG=1"))
            .map(|(t, _)| t)
            .collect()
    };
    for (daemon, from, what) in [
        (&unset, ready[0], "WATCHDOG_PID unset"),
        (&own, ready[1], "WATCHDOG_PID = own pid"),
    ] {
        let times = pings(daemon, from);
        assert!(
            times.len() >= 2,
            "{what}: {} WATCHDOG=1 in 2 s: {:?}",
            times.len(),
            daemon.notify.since(0)
        );
        // About every 200 ms, not in a loop: in 2 s that is about 10.
        assert!(
            times.len() <= 25,
            "{what}: {} WATCHDOG=1 in 2 s (expected about 10)",
            times.len()
        );
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps.iter().all(|g| *g < secs(0.4)),
            "{what}: a gap reached the full watchdog interval: {gaps:?}"
        );
    }
    assert!(
        pings(&other, 0).is_empty(),
        "WATCHDOG_PID names another process, yet WATCHDOG=1 was sent"
    );
    unset.stop(secs(5.0));
    own.stop(secs(5.0));
    other.stop(secs(5.0));
}

// The service behaves the same on both backends (the single-instance lock
// and in-doubt settling at start are SQLite matters, tested above).
on_both_backends! {
    fn an_idle_service_with_an_inbox_sleeps() {
        let env = Env::new(&file_config(INBOX));
        let mut daemon = Daemon::start(&env, "run", &[], &[]);
        daemon.wait_ready();
        std::thread::sleep(Duration::from_millis(300));
        let before = daemon.notify.len();
        std::thread::sleep(Duration::from_millis(1000));
        let during = daemon.notify.since(before);
        assert!(
            during.len() <= 2,
            "an idle service sent {} notifications in one second (a busy loop?): {}",
            during.len(),
            describe(&during.iter().map(|s| s.as_str()).collect::<Vec<_>>())
        );
        // It still reacts to a new file at once.
        drop_into_inbox(&env, "late.csv", &csv(&["L1"]));
        wait_for_message(&env, &daemon, "L1");
        daemon.stop(secs(5.0));
    }

    fn sighup_refuses_a_broken_template_set_and_takes_a_fixed_one() {
        let env = Env::new(&file_config(&format!(
            "{INBOX}\n[daemon]\nwatch_templates = false\n"
        )));
        let body = env.path("templates/shipment/body.txt.tera");
        let original = std::fs::read_to_string(&body).unwrap();
        let old_line = "Thank you for shopping with Test Shop. Your Teapot";
        assert!(original
            .lines()
            .nth(2)
            .unwrap()
            .starts_with("Thank you for"));
        let with_line_3 = |line: &str| -> String {
            original
                .lines()
                .enumerate()
                .map(|(i, l)| if i == 2 { line } else { l })
                .collect::<Vec<_>>()
                .join("\n")
                + "\n"
        };

        let mut daemon = Daemon::start(&env, "run", &[], &[]);
        let ready = daemon.wait_ready();
        drop_into_inbox(&env, "h1.csv", &csv(&["H1"]));
        let first = unfolded(&wait_for_message(&env, &daemon, "H1"));
        assert!(
            first.contains(&format!("{old_line} H1 has left us")),
            "{first}"
        );

        // 1. A Tera syntax error (line 3, column 26: the lone `}`).
        std::fs::write(
            &body,
            with_line_3("Thanks from {{ shop.name }. Your {{ order.product_name }} is coming."),
        )
        .unwrap();
        let mark = daemon.notify.len();
        daemon.signal("HUP");
        let reloading = daemon
            .notify
            .wait_for(mark, secs(10.0), "RELOADING=1", |m| has(m, "RELOADING=1"));
        let message = daemon.notify.get(reloading);
        let monotonic = message
            .lines()
            .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
            .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC=: {message:?}"));
        assert!(monotonic.parse::<u64>().is_ok_and(|v| v > 0), "{message:?}");
        let done = daemon
            .notify
            .wait_for(reloading, secs(10.0), "READY=1", |m| has(m, "READY=1"));
        let done_status = status(&daemon.notify.get(done))
            .unwrap_or_default()
            .to_string();
        assert!(
            done_status.starts_with("reload failed"),
            "STATUS after a refused reload: {done_status:?}"
        );
        assert!(
            eventually(secs(2.0), || daemon.log().contains("reload refused")),
            "{}",
            daemon.log()
        );
        let log = daemon.log();
        let position = format!("{}:3:26:", body.display());
        assert!(
            log.contains(&position),
            "the log must name {position}; log:\n{log}"
        );
        assert!(done_status.contains(":3:26"), "{done_status:?}");
        assert!(daemon.alive(), "the daemon died on a broken template");

        // Still running on the old set.
        drop_into_inbox(&env, "h2.csv", &csv(&["H2"]));
        let second = unfolded(&wait_for_message(&env, &daemon, "H2"));
        assert!(
            second.contains(&format!("{old_line} H2 has left us")),
            "not rendered with the previous template: {second}"
        );

        // 2. Valid Tera, but a forbidden word in the template's own text.
        std::fs::write(
            &body,
            with_line_3("Please review your {{ order.product_name }}."),
        )
        .unwrap();
        let mark = daemon.notify.len();
        daemon.signal("HUP");
        let reloading = daemon
            .notify
            .wait_for(mark, secs(10.0), "RELOADING=1", |m| has(m, "RELOADING=1"));
        let done = daemon
            .notify
            .wait_for(reloading, secs(10.0), "READY=1", |m| has(m, "READY=1"));
        let done_status = status(&daemon.notify.get(done))
            .unwrap_or_default()
            .to_string();
        assert!(
            done_status.starts_with("reload failed") && done_status.contains("review"),
            "{done_status:?}"
        );
        let position = format!("{}:3:8: forbidden word 'review'", body.display());
        assert!(
            eventually(secs(2.0), || daemon.log().contains(&position)),
            "the log must name {position}; log:\n{}",
            daemon.log()
        );
        assert!(daemon.alive());

        // 3. Fixed: the next SIGHUP takes the new text.
        std::fs::write(
            &body,
            with_line_3(
                "Good news from {{ shop.name }}: your {{ order.product_name }} is on the road.",
            ),
        )
        .unwrap();
        let mark = daemon.notify.len();
        daemon.signal("HUP");
        let reloading = daemon
            .notify
            .wait_for(mark, secs(10.0), "RELOADING=1", |m| {
                has(m, "RELOADING=1") && m.contains("MONOTONIC_USEC=")
            });
        let done = daemon
            .notify
            .wait_for(reloading, secs(10.0), "READY=1", |m| has(m, "READY=1"));
        let done_status = status(&daemon.notify.get(done))
            .unwrap_or_default()
            .to_string();
        assert!(done_status.starts_with("reloaded"), "{done_status:?}");
        assert!(
            eventually(secs(2.0), || daemon.log().contains("reload done")),
            "{}",
            daemon.log()
        );
        drop_into_inbox(&env, "h3.csv", &csv(&["H3"]));
        let third = unfolded(&wait_for_message(&env, &daemon, "H3"));
        assert!(
            third.contains("Good news from Test Shop: your Teapot H3 is on the road."),
            "not rendered with the new template: {third}"
        );
        assert!(!third.contains(old_line), "{third}");

        // Three reloads, each framed by RELOADING=1 ... READY=1; the initial
        // READY=1 came first.
        let all = daemon.notify.since(0);
        let reloads = all.iter().filter(|m| has(m, "RELOADING=1")).count();
        let readies = all.iter().filter(|m| has(m, "READY=1")).count();
        assert_eq!((reloads, readies), (3, 4), "{:?}", all);
        assert!(all[..ready].iter().all(|m| !has(m, "RELOADING=1")));
        daemon.stop(secs(5.0));
    }

    fn sigterm_during_a_batch_lets_in_flight_sends_finish_and_exits_cleanly() {
        let server = SmtpServer::start(&["--data-delay", "1"]);
        let env = Env::new(&smtp_config(server.port, "shutdown_grace = \"8s\""));
        let ids = ["T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8"];
        import_due(&env, &ids);

        let mut daemon = Daemon::start(&env, "run", &[], &[]);
        daemon.wait_ready();
        // Wait until sends are in flight (the server holds each DATA reply 1 s).
        let in_flight = eventually(secs(10.0), || {
            shipment_states(&env).iter().any(|(_, s)| s == "sending")
        });
        assert!(
            in_flight,
            "no send went into flight; log:\n{}",
            daemon.log()
        );
        let took = daemon.stop(secs(8.0));
        assert!(
            took < secs(4.0),
            "in-flight sends take about 1 s, the exit took {took:?}"
        );
        let notifications = daemon.notify.since(0);
        assert!(
            notifications.iter().any(|m| has(m, "STOPPING=1")),
            "no STOPPING=1: {notifications:?}"
        );
        let log = daemon.log();
        assert!(log.contains("SIGTERM received"), "{log}");
        assert!(log.contains("followupd stopped"), "{log}");
        assert!(!log.contains("grace period over"), "{log}");

        // Every shipment is sent or still scheduled; nothing is left in flight
        // (or in doubt), and the stop did hold back the rest of the batch.
        let states = shipment_states(&env);
        assert_eq!(states.len(), ids.len());
        let plan = json_lines(&env.ok(&["plan", "--json"]));
        assert!(
            plan.iter().all(|l| l["state"] != "sending"),
            "stages left in sending: {plan:?}"
        );
        let sent: Vec<&str> = states
            .iter()
            .filter(|(_, s)| s == "sent")
            .map(|(id, _)| id.as_str())
            .collect();
        // `plan` shows a scheduled stage whose time has come as "due".
        let scheduled = states
            .iter()
            .filter(|(_, s)| s == "scheduled" || s == "due")
            .count();
        assert_eq!(
            sent.len() + scheduled,
            ids.len(),
            "only sent or scheduled expected: {states:?}"
        );
        assert!(
            !sent.is_empty(),
            "the in-flight sends did not finish: {states:?}"
        );
        assert!(
            scheduled > 0,
            "SIGTERM did not stop new sends from starting: {states:?}"
        );

        // The send log agrees, and so does the server.
        let logs = json_lines(&env.ok(&["logs", "--json"]));
        let mut logged_sent: Vec<&str> = logs
            .iter()
            .filter(|e| e["status"] == "sent")
            .map(|e| e["order_id"].as_str().unwrap())
            .collect();
        logged_sent.sort();
        assert_eq!(logged_sent, sent, "send log: {logs:?}");
        assert!(
            logs.iter().all(|e| e["status"] == "sent"),
            "only successful sends expected in the log: {logs:?}"
        );
        let received = server.received();
        assert_eq!(received.len(), sent.len(), "server got: {received:?}");
        let mut received_to: Vec<String> = received
            .iter()
            .map(|r| r["rcpt_tos"][0].as_str().unwrap().to_string())
            .collect();
        received_to.sort();
        let expected: Vec<String> = sent
            .iter()
            .map(|id| format!("{id}@buyer.example"))
            .collect();
        assert_eq!(received_to, expected);
        assert!(
            server.attempts().iter().all(|a| a["stage"] == "data"),
            "a transaction was cut off: {:?}",
            server.attempts()
        );
    }
}

//! The service's state on disk under operational accidents: files created
//! private whatever the umask, a database file deleted while running, a
//! state folder the service cannot write, and a wall clock that jumped
//! forward and back.

mod common;

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use common::smtp::SmtpServer;
use common::{eventually, launch, strip_ansi, Env, CSV_HEADER};

/// A running `followupd run` with its service log in a file; killed on drop.
struct Daemon {
    child: Child,
    log: std::path::PathBuf,
}

impl Daemon {
    /// Starts `command` (from the common launcher) as the service.
    fn spawn(env: &Env, command: Command) -> Self {
        Self::spawn_logging(env, command, "info")
    }

    /// [`Daemon::spawn`] with `rust_log` as `RUST_LOG`.
    fn spawn_logging(env: &Env, mut command: Command, rust_log: &str) -> Self {
        let log = env.path("daemon.stderr");
        let child = command
            .arg("run")
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(Stdio::from(File::create(&log).unwrap()))
            .spawn()
            .expect("followupd starts");
        Self { child, log }
    }

    /// The service log so far, without colours.
    fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    fn wait_for_log(&self, what: &str) {
        assert!(
            eventually(Duration::from_secs(20), || self.log().contains(what)),
            "no '{what}' in the service log:\n{}",
            self.log()
        );
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(extra: &str) -> String {
    format!(
        r#"
[database]
url = "sqlite://state/test.db"

[defaults]
time_zone = "UTC"

[sending_hours]
start = "00:00"
end = "00:00"

[sender]
from = "Test Shop <shop@test.example>"
reply_to = "care@test.example"

{extra}
"#
    )
}

const FILE_TRANSPORT: &str = "[transport]\nkind = \"file\"\ndir = \"outbox\"\n";

/// One order shipped an hour before the import: its shipment is due now.
fn order_row(id: &str) -> String {
    format!("{id},{id}@buyer.example,Ann {id},Teapot,,-1h,,,,,\n")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

#[test]
fn the_database_its_logs_and_errors_files_are_private_whatever_the_umask() {
    let env = Env::new(&config(&format!(
        "{FILE_TRANSPORT}\n[import]\ninbox = \"inbox\"\n"
    )));
    let daemon = Daemon::spawn(
        &env,
        launch::through_shell("umask 000; exec \"$0\" \"$@\"", &env.path("config.toml")),
    );
    daemon.wait_for_log("followupd is running");
    // One good row and one without an address.
    let text = format!("{CSV_HEADER}{}B2,,Bo,Mug,,-1h,,,,,\n", order_row("A1"));
    let tmp = env.write("inbox/.orders.csv.tmp", &text);
    std::fs::rename(tmp, env.path("inbox/orders.csv")).unwrap();
    let errors = env.path("inbox/rejected/orders.csv.errors");
    assert!(
        eventually(Duration::from_secs(20), || errors.exists()),
        "no .errors file; log:\n{}",
        daemon.log()
    );
    for file in [
        "state/test.db",
        "state/test.db-wal",
        "state/test.db-shm",
        "state/test.db.lock",
        "inbox/rejected/orders.csv.errors",
    ] {
        let mode = mode(&env.path(file));
        assert_eq!(mode & 0o077, 0, "{file} is {mode:o}");
    }
}

#[test]
fn a_database_file_deleted_while_running_stops_sending_and_says_so() {
    let env = Env::new(&config(FILE_TRANSPORT));
    let mut daemon = Daemon::spawn(&env, env.command());
    daemon.wait_for_log("followupd is running");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(env.path(&format!("state/test.db{suffix}")));
    }
    // An import now goes into a new file at the same path.
    let out = env.import_csv("orders.csv", &format!("{CSV_HEADER}{}", order_row("D1")));
    assert!(out.status.success());
    daemon.wait_for_log("not sending");
    assert!(daemon
        .log()
        .contains("was deleted while followupd had it open"));
    std::thread::sleep(Duration::from_secs(2));
    assert!(daemon.alive(), "the service exited:\n{}", daemon.log());
    assert!(env.outbox().is_empty(), "sent with its database gone");
}

#[test]
fn a_state_folder_the_service_cannot_write_fails_start_with_a_clear_error() {
    if !running_as_root() {
        eprintln!("NOT RUN: this test switches to the user nobody, which needs root");
        return;
    }
    let env = Env::new(&config(FILE_TRANSPORT));
    let as_nobody = |args: &[&str]| {
        let mut command = launch::through_shell(
            "exec setpriv --reuid=65534 --regid=65534 --clear-groups \"$0\" \"$@\"",
            &env.path("config.toml"),
        );
        command.args(args);
        command
    };
    let chown = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(env.dir.path())
        .status()
        .unwrap();
    assert!(chown.success());
    // A first start as that user creates the database, then the folder is
    // made read-only, as a wrong deployment would leave it.
    let created = as_nobody(&["plan"]).output().unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    // The lock file of an earlier run stays behind (it is never removed).
    std::fs::write(env.path("state/test.db.lock"), "").unwrap();
    let chown = Command::new("chown")
        .args(["65534:65534"])
        .arg(env.path("state/test.db.lock"))
        .status()
        .unwrap();
    assert!(chown.success());
    std::fs::set_permissions(env.path("state"), std::fs::Permissions::from_mode(0o555)).unwrap();

    let mut daemon = Daemon::spawn(&env, as_nobody(&[]));
    let exited = eventually(Duration::from_secs(20), || !daemon.alive());
    assert!(exited, "kept running:\n{}", daemon.log());
    assert_eq!(daemon.child.wait().unwrap().code(), Some(2));
    let log = daemon.log();
    assert!(log.contains("cannot write there"), "{log}");
    assert!(log.contains("state"), "{log}");
}

#[test]
fn retries_planned_while_the_clock_ran_ahead_do_not_wait_out_the_jump() {
    let refusing = SmtpServer::start(&["--rcpt-reply", "451"]);
    let smtp = |port: u16| {
        config(&format!(
            "[transport]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
             command_timeout = \"2s\"\nconnect_timeout = \"2s\"\nsend_timeout = \"10s\"\n\n\
             [retry]\nfirst_delay = \"1s\"\nmax_delay = \"2s\"\n"
        ))
    };
    let env = Env::new(&smtp(refusing.port));
    let out = env.import_csv("orders.csv", &format!("{CSV_HEADER}{}", order_row("C1")));
    assert!(out.status.success());
    // The clock 20 hours ahead: the attempt fails and its retry is planned
    // a second after that false time.
    let ahead = (Utc::now() + chrono::Duration::hours(20)).to_rfc3339();
    env.ok(&["tick", "--now", &ahead]);
    let plan = env.stage_state(&Utc::now().to_rfc3339(), "C1", "shipment");
    assert_eq!(plan["state"], "retrying", "{plan}");

    // Back to the true time, with a server that takes the message.
    let accepting = SmtpServer::start(&[]);
    std::fs::write(env.path("config.toml"), smtp(accepting.port)).unwrap();
    let daemon = Daemon::spawn(&env, env.command());
    assert!(
        eventually(Duration::from_secs(20), || !accepting.received().is_empty()),
        "the retry waited out the jump; log:\n{}",
        daemon.log()
    );
}

#[test]
fn a_long_inbox_import_stops_at_sigterm_and_resumes_without_importing_a_row_twice() {
    const ROWS: usize = 60_000;
    let env = Env::new(&config(&format!(
        "{FILE_TRANSPORT}\n[import]\ninbox = \"inbox\"\n"
    )));
    let mut text = String::from(CSV_HEADER);
    for i in 0..ROWS {
        // Shipped long ago: nothing to send, only to store.
        text.push_str(&format!(
            "R{i},r{i}@buyer.example,Ro,Mug,,2020-01-01,,,,,\n"
        ));
    }
    std::fs::create_dir_all(env.path("inbox")).unwrap();
    let mut daemon = Daemon::spawn_logging(&env, env.command(), "info,followupd::engine=debug");
    daemon.wait_for_log("followupd is running");
    let tmp = env.write("inbox/.big.csv.tmp", &text);
    std::fs::rename(tmp, env.path("inbox/big.csv")).unwrap();
    daemon.wait_for_log("import progress");
    let status = Command::new("kill")
        .args(["-TERM", &daemon.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let stopped = std::time::Instant::now();
    assert!(
        eventually(Duration::from_secs(30), || !daemon.alive()),
        "did not stop:\n{}",
        daemon.log()
    );
    let took = stopped.elapsed();
    let first = daemon.log();
    assert!(
        first.contains("import stopped"),
        "the import ran to its end ({took:?}):\n{first}"
    );
    assert!(
        env.path("inbox/big.csv").exists(),
        "the file left the inbox"
    );
    let imported_first = imported_count(&first);
    assert!(
        imported_first > 0 && imported_first < ROWS as u64,
        "{first}"
    );

    // The next start takes up the rest.
    std::fs::rename(env.path("daemon.stderr"), env.path("first.stderr")).unwrap();
    let daemon = Daemon::spawn(&env, env.command());
    daemon.wait_for_log("orders imported");
    let second = daemon.log();
    assert!(second.contains("resuming an import"), "{second}");
    assert!(
        second.contains("updated=0"),
        "a row was imported twice:\n{second}"
    );
    assert_eq!(
        imported_first + imported_count(&second),
        ROWS as u64,
        "{first}\n{second}"
    );
    assert!(env.path("inbox/done/big.csv").exists());
}

/// The `imported=N` of the last import line in a service log.
fn imported_count(log: &str) -> u64 {
    log.lines()
        .rev()
        .find(|l| l.contains("import stopped") || l.contains("orders imported"))
        .and_then(|l| l.split("imported=").nth(1))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

//! The transports against hostile relays and unkind machines: a reply line
//! without end stays bounded in memory (plain and implicit TLS), `check`
//! is bounded when a relay never answers QUIT, AUTH is not sent in clear to
//! a relay off this machine unless the config says so, and the outbox
//! files are private and never left half-written.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{eventually, launch, Env, CSV_HEADER};

/// tests/support/hostile_relay.py in one of its modes; killed on drop.
struct HostileRelay {
    child: Child,
    port: u16,
}

impl HostileRelay {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new("python3")
            .arg(common::repo().join("tests/support/hostile_relay.py"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("hostile relay did not start: {line:?}"))
            .parse()
            .unwrap();
        Self { child, port }
    }
}

impl Drop for HostileRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn smtp_env(port: u16, transport: &str) -> Env {
    Env::new(&format!(
        r#"
[database]
url = "sqlite://state/test.db"

[sending_hours]
start = "00:00"
end = "00:00"

[transport]
kind = "smtp"
host = "127.0.0.1"
port = {port}
connect_timeout = "5s"
command_timeout = "8s"
send_timeout = "20s"
{transport}

[sender]
from = "Test Shop <shop@test.example>"
"#
    ))
}

/// The peak resident memory (VmHWM, KiB) of a running process.
fn peak_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `followupd ARGS` to the end (at most `limit`), watching its peak
/// memory; returns its output and the peak in MiB.
fn run_watched(mut command: Command, limit: Duration) -> (std::process::Output, u64) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut peak = 0;
    let done = eventually(limit, || {
        if let Some(kb) = peak_kb(child.id()) {
            peak = peak.max(kb);
        }
        child.try_wait().unwrap().is_some()
    });
    if !done {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        done,
        "did not finish within {limit:?}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    (out, peak / 1024)
}

fn make_cert(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let status = Command::new("python3")
        .arg(common::repo().join("tests/support/smtp_server.py"))
        .arg("--make-cert")
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// A relay that answers EHLO with a line that never ends: the send fails
/// as a retry within the command timeout, and memory stays bounded (before
/// the cap, lettre's line buffer grew by hundreds of MB a second).
#[test]
fn a_reply_line_without_end_is_cut_off_in_bounded_memory() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(certs.path());
    let plain = HostileRelay::start(&["endless-line"]);
    let tls = HostileRelay::start(&[
        "endless-line",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let cases = [
        (plain.port, "tls = \"none\"".to_string()),
        (
            tls.port,
            format!(
                "tls = \"tls\"\nhello_name = \"client.test\"\nca_file = \"{}\"",
                cert.display()
            ),
        ),
    ];
    for (port, transport) in cases {
        let env = smtp_env(port, &transport);
        if transport.contains("\"tls\"") {
            let config = std::fs::read_to_string(env.path("config.toml"))
                .unwrap()
                .replace("host = \"127.0.0.1\"", "host = \"localhost\"");
            std::fs::write(env.path("config.toml"), config).unwrap();
        }
        let csv = format!("{CSV_HEADER}E1,e1@buyer.example,Eve,Mug,UTC,-1h,,shipped,,,\n");
        assert!(env.import_csv("orders.csv", &csv).status.success());
        let started = Instant::now();
        let mut command = env.command();
        command.arg("tick");
        let (out, peak_mb) = run_watched(command, Duration::from_secs(60));
        let printed = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{transport}: {printed}");
        assert!(
            peak_mb < 100,
            "{transport}: peak memory {peak_mb} MiB ({:?})",
            started.elapsed()
        );
        let now = chrono::Utc::now().to_rfc3339();
        let stage = env.stage_state(&now, "E1", "shipment");
        assert_eq!(stage["state"], "retrying", "{transport}: {stage}");
        let logs = env.ok(&["logs", "--json"]);
        assert!(logs.contains("without being asked"), "{transport}: {logs}");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{transport}: cut off only by the command timeout ({:?})",
            started.elapsed()
        );
    }
}

/// README: `check` sends nothing and finishes. A relay that never answers
/// QUIT held it for ever.
#[test]
fn check_is_bounded_when_the_relay_never_answers_quit() {
    let relay = HostileRelay::start(&["silent-quit"]);
    let env = smtp_env(relay.port, "tls = \"none\"");
    let started = Instant::now();
    let mut command = env.command();
    command.arg("check");
    let (out, _) = run_watched(command, Duration::from_secs(30));
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("ok    transport"), "{printed}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

/// AUTH over clear text goes only to a relay on this machine, or where the
/// config says so explicitly.
#[test]
fn auth_in_clear_text_to_a_relay_off_this_machine_is_refused() {
    let auth = "tls = \"none\"\nusername = \"shop\"\npassword_env = \"TEST_CLEAR_PASSWORD\"";
    std::env::set_var("TEST_CLEAR_PASSWORD", "Cl34rT3xtPw");
    let env = smtp_env(2525, auth);
    let config = std::fs::read_to_string(env.path("config.toml"))
        .unwrap()
        .replace("host = \"127.0.0.1\"", "host = \"relay.example\"");
    std::fs::write(env.path("config.toml"), &config).unwrap();
    let out = env.run(&["check"]);
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(0), "{printed}");
    assert!(
        printed.contains("transport.tls") && printed.contains("allow_plaintext_auth"),
        "{printed}"
    );
    assert!(!printed.contains("Cl34rT3xtPw"), "{printed}");
    // Loopback is fine, and so is the operator's explicit word.
    for host in ["127.0.0.1", "localhost", "[::1]"] {
        let env = smtp_env(2525, auth);
        let c = std::fs::read_to_string(env.path("config.toml"))
            .unwrap()
            .replace("host = \"127.0.0.1\"", &format!("host = \"{host}\""));
        std::fs::write(env.path("config.toml"), c).unwrap();
        let out = env.run(&["plan"]);
        assert!(
            out.status.success(),
            "{host}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let env = smtp_env(2525, &format!("{auth}\nallow_plaintext_auth = true"));
    let c = std::fs::read_to_string(env.path("config.toml"))
        .unwrap()
        .replace("host = \"127.0.0.1\"", "host = \"relay.example\"");
    std::fs::write(env.path("config.toml"), c).unwrap();
    let out = env.run(&["plan"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The outbox holds buyers' names and addresses: 0640 at most, whatever
/// the umask.
#[test]
fn outbox_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new(&format!(
        "{}\n[sending_hours]\nstart = \"00:00\"\nend = \"00:00\"\n",
        common::BASE_CONFIG
    ));
    let csv = format!("{CSV_HEADER}U1,u1@buyer.example,Uma,Mug,UTC,-1h,,shipped,,,\n");
    assert!(env.import_csv("orders.csv", &csv).status.success());
    let out = launch::through_shell("umask 000; exec \"$0\" \"$@\"", &env.path("config.toml"))
        .arg("tick")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = env.outbox();
    assert_eq!(files.len(), 1);
    let mode = std::fs::metadata(env.path("outbox").join(&files[0].0))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640, "{mode:o}");
    let dir_mode = std::fs::metadata(env.path("outbox"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o007, 0, "{dir_mode:o}");
}

/// A full outbox disk: the message is retried, and no `.partial` file is
/// left behind. Needs root (a small tmpfs); says so where it cannot run.
#[test]
fn a_full_outbox_leaves_no_partial_files() {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        eprintln!("NOT RUN: a full outbox needs root to mount a small tmpfs");
        return;
    }
    let env = Env::new(&format!(
        "{}\n[sending_hours]\nstart = \"00:00\"\nend = \"00:00\"\n",
        common::BASE_CONFIG
    ));
    let outbox = env.path("outbox");
    std::fs::create_dir_all(&outbox).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&outbox)
        .status()
        .unwrap();
    if !mounted.success() {
        eprintln!("NOT RUN: cannot mount a tmpfs here");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&outbox);
    // Fill it but for a few bytes.
    let filler = outbox.join("filler");
    let _ = std::fs::write(&filler, vec![b'x'; 64 * 1024]);
    let csv = format!("{CSV_HEADER}F1,f1@buyer.example,Fay,Mug,UTC,-1h,,shipped,,,\n");
    assert!(env.import_csv("orders.csv", &csv).status.success());
    let out = env.run(&["tick"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let now = chrono::Utc::now().to_rfc3339();
    let stage = env.stage_state(&now, "F1", "shipment");
    assert_eq!(stage["state"], "retrying", "{stage}");
    let left: Vec<String> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n != "filler")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

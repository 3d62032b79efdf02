//! Planted secrets never print: every output of `check`, `plan`, `tick`,
//! `run` and of a refused reload is searched for them, and every log event
//! is one line.

mod common;

use std::fs::File;
use std::process::Stdio;
use std::time::Duration;

use common::{eventually, Env, BASE_CONFIG};

/// Config texts, each with the secret it hides and whether a running
/// service must refuse it (a changed database URL is kept for a restart).
fn planted() -> Vec<(&'static str, String, &'static str, bool)> {
    let smtp = |password_line: &str| {
        format!(
            "[database]\nurl = \"sqlite://state/test.db\"\n\n[transport]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nusername = \"shop\"\n{password_line}\n\n[sender]\nfrom = \"Test Shop <shop@test.example>\"\n"
        )
    };
    let database = |url: &str| BASE_CONFIG.replace("sqlite://state/test.db", url);
    vec![
        (
            "an unquoted password",
            smtp("password = S3cretUnqu0ted!"),
            "S3cretUnqu0ted",
            true,
        ),
        (
            "a number password",
            smtp("password = 987654321"),
            "987654321",
            true,
        ),
        (
            "a misspelt scheme",
            database("postgress://u:PgS3cretScheme@127.0.0.1/db"),
            "PgS3cretScheme",
            true,
        ),
        (
            "a password query parameter",
            database(
                "postgres://postgres@127.0.0.1:5432/followupd_no_such_db?password=PgS3cretQuery",
            ),
            "PgS3cretQuery",
            false,
        ),
    ]
}

fn all_output(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn no_command_prints_a_planted_secret() {
    for (what, config, secret, _) in planted() {
        let env = Env::new(&config);
        for args in [&["check"][..], &["plan"], &["tick"], &["run"]] {
            for journal in [false, true] {
                let mut command = env.command();
                command.args(args);
                if journal {
                    command.env("JOURNAL_STREAM", "8:1");
                }
                let child = command
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                let out = child.wait_with_output().unwrap();
                let printed = all_output(&out);
                assert!(
                    !out.status.success() || args == ["plan"],
                    "{what}: {args:?} succeeded: {printed}"
                );
                assert!(!printed.is_empty(), "{what}: {args:?} said nothing");
                assert!(
                    !printed.contains(secret),
                    "{what}: {args:?} printed the secret:\n{printed}"
                );
            }
        }
    }
}

/// A running service refused each planted config on SIGHUP: the refusal
/// names the problem in one log line without the secret, and the service
/// keeps running.
#[test]
fn a_refused_reload_logs_one_line_without_the_secret() {
    let env = Env::with_defaults();
    let log = env.path("run.stderr");
    let mut child = env
        .command()
        .arg("run")
        .env("RUST_LOG", "info")
        .env("JOURNAL_STREAM", "8:1")
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(30), || read()
            .contains("followupd is running")),
        "{}",
        read()
    );
    let cases = planted();
    let mut refusals = 0;
    for (n, (what, config, _, refuse)) in cases.iter().enumerate() {
        std::fs::write(env.path("config.toml"), config).unwrap();
        let hup = std::process::Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(hup.success());
        refusals += usize::from(*refuse);
        let answered = eventually(Duration::from_secs(20), || {
            let log = read();
            log.matches("reload refused").count() + log.matches("reload done").count() > n
        });
        assert!(answered, "{what}: no answer to SIGHUP:\n{}", read());
        assert_eq!(
            read().matches("reload refused").count(),
            refusals,
            "{what}:\n{}",
            read()
        );
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stopped = eventually(Duration::from_secs(20), || {
        child.try_wait().unwrap().is_some()
    });
    if !stopped {
        let _ = child.kill();
    }
    let text = read();
    for (what, _, secret, _) in &cases {
        assert!(
            !text.contains(secret),
            "{what}: the log has the secret:\n{text}"
        );
    }
    // Under systemd every event starts with its level: one event a line.
    for line in text.lines() {
        assert!(
            ["INFO ", "WARN ", "ERROR ", "DEBUG "]
                .iter()
                .any(|level| line.trim_start().starts_with(level)),
            "a line that is not an event of its own: {line:?}\n{text}"
        );
    }
    let refused: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("reload refused"))
        .collect();
    assert_eq!(refused.len(), refusals, "{text}");
    assert!(refused[0].contains("line 8"), "{}", refused[0]);
    assert!(stopped, "{text}");
}

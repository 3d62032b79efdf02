//! What new settings do to stages planned or refused under the old ones: a
//! reload re-plans every open stage, and a stage blocked by the lint or a
//! template error is composed again once a new forbidden list or template
//! set loads, while its window is open. Also: summaries count sends in
//! doubt.

mod common;

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{Timelike, Utc};
use common::smtp::SmtpServer;
use common::{eventually, header, strip_ansi, Env, CSV_HEADER};

/// A running `followupd run` with its service log in a file; killed on drop.
struct Daemon {
    child: Child,
    log: std::path::PathBuf,
}

impl Daemon {
    fn start(env: &Env) -> Self {
        let log = env.path("daemon.stderr");
        let child = env
            .command()
            .arg("run")
            .env("RUST_LOG", "info")
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

    fn reload(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait_for_log(&self, what: &str) {
        assert!(
            eventually(Duration::from_secs(20), || self.log().contains(what)),
            "no '{what}' in the service log:\n{}",
            self.log()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// File transport, UTC buyers; `hours` is the `[sending_hours]` table's
/// body and `extra` more tables.
fn config(hours: &str, extra: &str) -> String {
    format!(
        r#"
[database]
url = "sqlite://state/test.db"

[defaults]
time_zone = "UTC"

[sending_hours]
{hours}

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

const ALL_DAY: &str = "start = \"00:00\"\nend = \"00:00\"";

/// One order shipped an hour before the import: its shipment is due now.
fn import(env: &Env, id: &str, product: &str) {
    let out = env.import_csv(
        "orders.csv",
        &format!("{CSV_HEADER}{id},{id}@buyer.example,Ann {id},{product},,-1h,,,,,\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The shipment stage's state as `plan` shows it now.
fn shipment_state(env: &Env, id: &str) -> String {
    let now = Utc::now().to_rfc3339();
    env.stage_state(&now, id, "shipment")["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn messages_to(env: &Env, id: &str) -> usize {
    let to = format!("<{id}@buyer.example>");
    env.outbox()
        .into_iter()
        .filter(|(_, raw)| header(raw, "To").is_some_and(|t| t.contains(&to)))
        .count()
}

#[test]
fn a_stage_blocked_by_the_lint_is_composed_again_when_the_forbidden_list_changes() {
    let env = Env::new(&config(ALL_DAY, ""));
    import(&env, "L1", "Baby Changing Pad");
    let daemon = Daemon::start(&env);
    assert!(
        eventually(Duration::from_secs(20), || shipment_state(&env, "L1")
            == "blocked"),
        "never blocked; log:\n{}",
        daemon.log()
    );
    assert_eq!(messages_to(&env, "L1"), 0);

    // The seller drops "change*" from the list and reloads.
    std::fs::write(
        env.path("config.toml"),
        config(ALL_DAY, "[lint]\nforbidden = [\"review*\"]\n"),
    )
    .unwrap();
    daemon.reload();
    daemon.wait_for_log("composed again");
    assert!(
        eventually(Duration::from_secs(20), || messages_to(&env, "L1") == 1),
        "never sent after the list changed; log:\n{}",
        daemon.log()
    );
    assert_eq!(shipment_state(&env, "L1"), "sent");
}

#[test]
fn a_stage_blocked_by_a_template_error_is_composed_again_once_the_template_is_fixed() {
    let env = Env::new(&config(ALL_DAY, ""));
    let body = env.path("templates/shipment/body.txt.tera");
    let good = std::fs::read_to_string(&body).unwrap();
    // An error only this order's data reaches (a misspelt variable in a
    // branch for one product).
    std::fs::write(
        &body,
        format!("{{% if order.product_name == \"Kettle\" %}}{{{{ order.trackng_url }}}}{{% endif %}}\n{good}"),
    )
    .unwrap();
    import(&env, "T1", "Kettle");
    env.ok(&["tick"]);
    assert_eq!(shipment_state(&env, "T1"), "blocked");
    // Another tick with the same set leaves it blocked.
    env.ok(&["tick"]);
    assert_eq!(shipment_state(&env, "T1"), "blocked");
    assert_eq!(messages_to(&env, "T1"), 0);

    std::fs::write(&body, &good).unwrap();
    let out = env.ok(&["tick"]);
    assert!(out.starts_with("sent 1,"), "{out}");
    assert_eq!(shipment_state(&env, "T1"), "sent");
    assert_eq!(messages_to(&env, "T1"), 1);
}

#[test]
fn a_reload_replans_open_stages_under_new_sending_hours() {
    // Sending hours that start two hours from now: the shipment waits.
    let hour = Utc::now().hour();
    let later = format!(
        "start = \"{:02}:00\"\nend = \"{:02}:00\"",
        (hour + 2) % 24,
        (hour + 3) % 24
    );
    let env = Env::new(&config(&later, ""));
    import(&env, "H1", "Teapot");
    let daemon = Daemon::start(&env);
    daemon.wait_for_log("followupd is running");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(messages_to(&env, "H1"), 0, "sent outside the hours");

    std::fs::write(env.path("config.toml"), config(ALL_DAY, "")).unwrap();
    daemon.reload();
    daemon.wait_for_log("reload done");
    assert!(
        eventually(Duration::from_secs(15), || messages_to(&env, "H1") == 1),
        "not sent after the hours were widened; log:\n{}",
        daemon.log()
    );
}

#[test]
fn a_tick_summary_counts_a_send_left_in_doubt() {
    // The connection drops after the message's final dot, unanswered.
    let server = SmtpServer::start(&["--drop-after-data", "1"]);
    let env = Env::new(
        &config(
            ALL_DAY,
            &format!(
                "[transport]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             command_timeout = \"2s\"\nconnect_timeout = \"2s\"\nsend_timeout = \"10s\"\n",
                server.port
            ),
        )
        .replace("[transport]\nkind = \"file\"\ndir = \"outbox\"\n", ""),
    );
    import(&env, "U1", "Mug");
    let out = env.ok(&["tick"]);
    assert!(out.contains("unknown 1"), "{out}");
    assert_eq!(shipment_state(&env, "U1"), "unknown");
}

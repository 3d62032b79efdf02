//! Delivery to a real, independent SMTP server (aiosmtpd, driven by
//! tests/support/smtp_server.py), through the real binary.

mod common;

use std::process::{Child, Command, Stdio};

use common::smtp::SmtpServer;
use common::{free_port, header, Env, CSV_HEADER};
use serde_json::Value;

fn smtp_env(port: u16, transport_extra: &str, config_extra: &str) -> Env {
    Env::new(&format!(
        r#"
[database]
url = "sqlite://state/test.db"

[transport]
kind = "smtp"
host = "127.0.0.1"
port = {port}
tls = "none"
command_timeout = "2s"
connect_timeout = "2s"
send_timeout = "10s"
{transport_extra}

[sender]
from = "Test Shop <shop@test.example>"
reply_to = "care@test.example"

{config_extra}
"#
    ))
}

/// One order whose shipment is due at [`DUE`].
fn import_one(env: &Env, id: &str, name: &str, product: &str) {
    let out = env.import_csv(
        "orders.csv",
        &format!(
            "{CSV_HEADER}{id},{id}@buyer.example,{name},{product},,2026-12-01T10:00:00Z,,,,,\n"
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const DUE: &str = "2026-12-01T12:00:00Z";

fn logs(env: &Env, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["logs", "--json"];
    all.extend_from_slice(args);
    env.ok(&all)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn spawn_tick(env: &Env, now: &str) -> Child {
    env.command()
        .args(["tick", "--now", now])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// On PostgreSQL a dead process's claim is only taken over once its lease
/// (1 s in these tests) has run out; SQLite's single instance settles it at
/// once.
fn wait_for_lease_to_run_out() {
    if common::backend() == common::Backend::Postgres {
        std::thread::sleep(std::time::Duration::from_millis(2100));
    }
}

/// A shipment stage that chose at-least-once delivery.
const RESENDING_SHIPMENT: &str = r#"
[[stages]]
name = "shipment"
anchor = "shipped_at"
opens_after = "0s"
closes_after = "2d"
on_unknown = "resend"
"#;

/// Each send-log row's status and detail, newest first.
fn status_and_detail(rows: &[Value]) -> Vec<(&str, Option<&str>)> {
    rows.iter()
        .map(|r| (r["status"].as_str().unwrap(), r["detail"].as_str()))
        .collect()
}

/// Waits until the stage is in flight, then gives the client time to
/// transmit the message (the server then stalls before replying).
fn wait_for_sending(env: &Env, order: &str) {
    for _ in 0..200 {
        if env.stage_state(DUE, order, "shipment")["state"] == "sending" {
            std::thread::sleep(std::time::Duration::from_millis(700));
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the stage never went into sending");
}

on_both_backends! {
    fn plain_delivery_is_logged_and_show_prints_what_the_server_got() {
        let server = SmtpServer::start(&[]);
        let env = smtp_env(server.port, "", "");
        import_one(&env, "S1", "Zoë Ångström", "Teapot");
        let out = env.ok(&["tick", "--now", DUE]);
        assert!(out.starts_with("sent 1,"), "{out}");

        let received = server.received();
        assert_eq!(received.len(), 1);
        assert_eq!(
            received[0]["rcpt_tos"],
            serde_json::json!(["S1@buyer.example"])
        );
        assert_eq!(received[0]["mail_from"], "shop@test.example");
        let raw = server.message(1);
        assert_eq!(
            header(&raw, "Message-ID").unwrap(),
            "<followupd.shipment.shop.S1@test.example>"
        );
        assert_eq!(
            received[0]["message_id"],
            "<followupd.shipment.shop.S1@test.example>"
        );
        // The UTF-8 display name travels encoded, never as raw bytes.
        let to = header(&raw, "To").unwrap();
        assert!(to.is_ascii() && to.contains("=?utf-8?"), "{to}");
        assert!(header(&raw, "Date").is_some());
        assert_eq!(header(&raw, "Reply-To").unwrap(), "care@test.example");
        assert!(raw.contains("multipart/alternative"));

        let rows = logs(&env, &["--order", "S1"]);
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row["status"], "sent");
        assert_eq!(row["smtp_code"], 250);
        assert_eq!(row["to"], "S1@buyer.example");
        assert_eq!(row["attempt"], 1);
        assert_eq!(row["stage"], "shipment");
        assert_eq!(row["subject"], "Your Teapot is on its way");
        assert_eq!(row["message_id"], "followupd.shipment.shop.S1@test.example");
        for field in ["id", "at", "order_id", "marketplace", "smtp_text"] {
            assert!(!row[field].is_null(), "{field} missing in {row}");
        }

        // `show --raw` prints exactly the bytes the server received.
        let id = row["id"].as_i64().unwrap().to_string();
        let shown = env.ok(&["show", &id, "--raw"]);
        // (The SMTP terminator adds a final line break on the wire.)
        assert_eq!(shown.trim_end(), raw.trim_end());

        // The table view answers "what did we send this buyer?".
        let table = env.ok(&["logs", "--email", "s1@BUYER.example"]);
        assert!(table.lines().next().unwrap().starts_with("ID"));
        assert!(
            table.contains("S1") && table.contains("sent") && table.contains("250"),
            "{table}"
        );
        // A filter that matches nothing says so instead of an empty table.
        let nobody = env.run(&["logs", "--email", "nobody@x.example"]);
        assert_eq!(nobody.status.code(), Some(1));
        assert!(nobody.stdout.is_empty());
        assert!(String::from_utf8_lossy(&nobody.stderr)
            .contains("no send-log entries match --email nobody@x.example"));
    }

    fn a_451_is_retried_with_the_same_message_id_and_delivered_once() {
        let server = SmtpServer::start(&["--data-replies", "451,250"]);
        let env = smtp_env(server.port, "", "");
        import_one(&env, "R1", "Ray", "Mug");
        env.ok(&["tick", "--now", DUE]);
        let plan = env.stage_state(DUE, "R1", "shipment");
        assert_eq!(plan["state"], "retrying");
        // Not yet: the backoff is at least a minute.
        env.ok(&["tick", "--now", "2026-12-01T12:00:30Z"]);
        assert_eq!(server.attempts().len(), 1);
        env.ok(&["tick", "--now", "2026-12-01T12:05:00Z"]);
        assert_eq!(env.stage_state(DUE, "R1", "shipment")["state"], "sent");

        let attempts = server.attempts();
        assert_eq!(attempts.len(), 2);
        assert!(attempts[0]["reply"].as_str().unwrap().starts_with("451"));
        assert!(attempts[1]["reply"].as_str().unwrap().starts_with("250"));
        assert_eq!(attempts[0]["message_id"], attempts[1]["message_id"]);
        assert_eq!(server.received().len(), 1);

        let rows = logs(&env, &["--order", "R1"]);
        let statuses: Vec<(&str, i64, i64)> = rows
            .iter()
            .map(|r| {
                (
                    r["status"].as_str().unwrap(),
                    r["attempt"].as_i64().unwrap(),
                    r["smtp_code"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(statuses, [("sent", 2, 250), ("retrying", 1, 451)]);
        assert_eq!(
            logs(&env, &["--order", "R1", "--status", "retrying"]).len(),
            1
        );
    }

    fn a_550_fails_at_once_after_one_attempt() {
        let server = SmtpServer::start(&["--rcpt-reply", "550"]);
        let env = smtp_env(server.port, "", "");
        import_one(&env, "F1", "Fay", "Mug");
        env.ok(&["tick", "--now", DUE]);
        env.ok(&["tick", "--now", "2026-12-01T18:00:00Z"]);
        let line = env.stage_state(DUE, "F1", "shipment");
        assert_eq!(line["state"], "failed");
        assert!(line["reason"].as_str().unwrap().contains("550"), "{line}");
        assert_eq!(server.attempts().len(), 1);
        assert!(server.received().is_empty());
        let rows = logs(&env, &["--order", "F1"]);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["status"], "failed");
        assert_eq!(rows[0]["smtp_code"], 550);
        assert!(rows[0]["smtp_text"]
            .as_str()
            .unwrap()
            .contains("mailbox unavailable"));
    }

    fn server_down_then_up_retries_then_sends() {
        let port = free_port();
        let env = smtp_env(port, "", "");
        import_one(&env, "D1", "Dee", "Mug");
        env.ok(&["tick", "--now", DUE]);
        let line = env.stage_state(DUE, "D1", "shipment");
        assert_eq!(line["state"], "retrying", "{line}");
        let rows = logs(&env, &["--order", "D1"]);
        assert_eq!(rows[0]["status"], "retrying");
        assert!(rows[0]["smtp_code"].is_null());

        let server = SmtpServer::start_on(Some(port), &[]);
        env.ok(&["tick", "--now", "2026-12-01T12:10:00Z"]);
        assert_eq!(env.stage_state(DUE, "D1", "shipment")["state"], "sent");
        assert_eq!(server.received().len(), 1);
    }

    fn a_reply_slower_than_the_timeout_leaves_the_send_in_doubt_and_unsent_again() {
        let server = SmtpServer::start(&["--data-delay", "4"]);
        let env = smtp_env(server.port, "", "");
        import_one(&env, "T1", "Tia", "Mug");
        env.ok(&["tick", "--now", DUE]);
        let line = env.stage_state(DUE, "T1", "shipment");
        assert_eq!(line["state"], "unknown", "{line}");
        assert!(
            line["reason"].as_str().unwrap().contains("in doubt"),
            "{line}"
        );
        env.ok(&["tick", "--now", "2026-12-01T14:00:00Z"]);
        let data_attempts = server
            .attempts()
            .iter()
            .filter(|a| a["stage"] == "data" || a["stage"] == "disconnect")
            .count();
        assert_eq!(data_attempts, 1, "{:?}", server.attempts());
        let rows = logs(&env, &["--order", "T1"]);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["status"], "unknown");
    }

    fn a_greeting_that_never_comes_is_a_retry_not_a_doubt() {
        let server = SmtpServer::start(&["--greeting-delay", "5"]);
        let env = smtp_env(server.port, "", "");
        import_one(&env, "G1", "Gus", "Mug");
        env.ok(&["tick", "--now", DUE]);
        assert_eq!(env.stage_state(DUE, "G1", "shipment")["state"], "retrying");
        assert!(server.received().is_empty());
    }

    fn header_text_in_order_data_adds_no_header_and_a_lone_dot_arrives() {
        let server = SmtpServer::start(&[]);
        let env = smtp_env(server.port, "", "");
        // CR/LF in a header-bound field is refused at import.
        let file = env.write(
            "evil.jsonl",
            "{\"order_id\":\"X1\",\"buyer_email\":\"x1@buyer.example\",\"buyer_name\":\"Eve\\r\\nBcc: victim@evil.example\",\"product_name\":\"Mug\",\"shipped_at\":\"2026-12-01T10:00:00Z\"}\n\
    {\"order_id\":\"X2\",\"buyer_email\":\"x2@buyer.example\",\"buyer_name\":\"Eve Bcc: victim@evil.example\",\"product_name\":\"Mug\\nBcc: victim@evil.example\",\"shipped_at\":\"2026-12-01T10:00:00Z\"}\n\
    {\"order_id\":\"X3\",\"buyer_email\":\"x3@buyer.example\",\"buyer_name\":\"Bcc: victim@evil.example\",\"product_name\":\"Mug Bcc: victim@evil.example\",\"shipped_at\":\"2026-12-01T10:00:00Z\",\"note\":\"line one\\n.\\nline three\"}\n",
        );
        let out = env.run(&["import", file.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(":1: field 'buyer_name' contains a line break"),
            "{err}"
        );
        assert!(
            err.contains(":2: field 'product_name' contains a line break"),
            "{err}"
        );
        // A body carrying a line with a single dot, from both template and data.
        env.write(
            "templates/shipment/body.txt.tera",
            "Hello {{ order.buyer_name }}\n.\n{{ order.extra.note }}\n..\nOrder {{ order.id }}\n",
        );
        env.ok(&["tick", "--now", DUE]);
        let received = server.received();
        assert_eq!(received.len(), 1);
        assert_eq!(
            received[0]["rcpt_tos"],
            serde_json::json!(["x3@buyer.example"])
        );
        let raw = server.message(1);
        let header_block = raw.split("\r\n\r\n").next().unwrap();
        assert!(
            !header_block
                .lines()
                .any(|l| l.to_ascii_lowercase().starts_with("bcc:")),
            "{header_block}"
        );
        // Decode the quoted-printable text part and check the dot lines survived.
        let start = raw
            .find("Content-Transfer-Encoding: quoted-printable\r\n\r\n")
            .expect("a quoted-printable part");
        let part = &raw[start..];
        let part = &part[part.find("\r\n\r\n").unwrap() + 4..];
        let part = &part[..part.find("\r\n--").unwrap_or(part.len())];
        let body = part.replace("=\r\n", "");
        let body = body
            .replace("=2E", ".")
            .replace("=0D", "\r")
            .replace("=0A", "\n");
        assert!(
            body.contains("\r\n.\r\nline one\r\n.\r\nline three\r\n..\r\nOrder X3"),
            "{body:?}"
        );
    }

    fn starttls_with_a_test_certificate_and_auth() {
        let certs = tempfile::tempdir().unwrap();
        let status = Command::new("python3")
            .arg(common::repo().join("tests/support/smtp_server.py"))
            .arg("--make-cert")
            .arg(certs.path())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let cert = certs.path().join("cert.pem");
        let key = certs.path().join("key.pem");
        let server = SmtpServer::start(&[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--require-starttls",
            "--auth",
            "shop:s3cret",
        ]);
        let transport = |password: &str| {
            format!(
                "username = \"shop\"\npassword_env = \"TEST_SMTP_PASSWORD_{password}\"\nca_file = \"{}\"\n",
                cert.display()
            )
        };
        // Both variables are set for the child processes below.
        std::env::set_var("TEST_SMTP_PASSWORD_good", "s3cret");
        std::env::set_var("TEST_SMTP_PASSWORD_bad", "wrong");
        let tls_env = |password: &str| {
            let env = smtp_env(server.port, &transport(password), "");
            let config = std::fs::read_to_string(env.path("config.toml"))
                .unwrap()
                .replace("host = \"127.0.0.1\"", "host = \"localhost\"")
                .replace("tls = \"none\"", "tls = \"starttls\"");
            std::fs::write(env.path("config.toml"), config).unwrap();
            env
        };

        let good = tls_env("good");
        let check = good.ok(&["check"]);
        assert!(check.contains("ok    transport: localhost:"), "{check}");
        assert!(
            check.contains("TLS ok") && check.contains("AUTH ok") && check.contains("PIPELINING"),
            "{check}"
        );
        import_one(&good, "A1", "Ann", "Mug");
        good.ok(&["tick", "--now", DUE]);
        assert_eq!(good.stage_state(DUE, "A1", "shipment")["state"], "sent");
        let received = server.received();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0]["tls"], true);
        assert_eq!(received[0]["auth"], "shop");
        // Asked for again after STARTTLS and before AUTH, pipelining holds
        // through both.
        assert_eq!(received[0]["pipelined"], true);

        let bad = tls_env("bad");
        let check = bad.run(&["check"]);
        assert_eq!(check.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&check.stdout).contains("FAIL  transport"));
        import_one(&bad, "B1", "Bo", "Mug");
        bad.ok(&["tick", "--now", DUE]);
        // A refused login says nothing about the message: it is retried.
        let line = bad.stage_state(DUE, "B1", "shipment");
        assert_eq!(line["state"], "retrying", "{line}");
        let rows = logs(&bad, &["--order", "B1"]);
        assert_eq!(rows[0]["smtp_code"], 535);
        assert_eq!(server.received().len(), 1);
    }

    fn a_process_killed_while_sending_leaves_unknown_and_sends_nothing_again() {
        let server = SmtpServer::start(&["--data-delay", "30"]);
        let env = smtp_env(server.port, "", "[daemon]\nshutdown_grace = \"1s\"\n");
        let config = std::fs::read_to_string(env.path("config.toml"))
            .unwrap()
            .replace("command_timeout = \"2s\"", "command_timeout = \"60s\"")
            .replace("send_timeout = \"10s\"", "send_timeout = \"60s\"")
            .replace("[database]\n", "[database]\nlease = \"1s\"\n");
        std::fs::write(env.path("config.toml"), config).unwrap();
        import_one(&env, "K1", "Kim", "Mug");
        let mut tick = spawn_tick(&env, DUE);
        wait_for_sending(&env, "K1");
        tick.kill().unwrap();
        tick.wait().unwrap();
        assert_eq!(env.stage_state(DUE, "K1", "shipment")["state"], "sending");
        wait_for_lease_to_run_out();

        env.ok(&["tick", "--now", "2026-12-01T13:00:00Z"]);
        let line = env.stage_state(DUE, "K1", "shipment");
        assert_eq!(line["state"], "unknown", "{line}");
        let data_attempts = server
            .attempts()
            .iter()
            .filter(|a| a["stage"] == "data" || a["stage"] == "disconnect")
            .count();
        assert!(data_attempts <= 1, "{:?}", server.attempts());
        let rows = logs(&env, &["--order", "K1"]);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["status"], "unknown");

        // `resend` sends it again on purpose, with the same Message-ID, logged.
        drop(server);
        let server = SmtpServer::start(&[]);
        let config = std::fs::read_to_string(env.path("config.toml")).unwrap();
        let config = config
            .lines()
            .map(|l| {
                if l.starts_with("port = ") {
                    format!("port = {}", server.port)
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(env.path("config.toml"), config).unwrap();
        let out = env.ok(&["resend", "K1", "shipment", "--now", "2026-12-01T13:30:00Z"]);
        assert_eq!(out.trim(), "K1 shipment: sent");
        assert_eq!(server.received().len(), 1);
        assert_eq!(
            server.received()[0]["message_id"],
            "<followupd.shipment.shop.K1@test.example>"
        );
        let rows = logs(&env, &["--order", "K1"]);
        assert_eq!(rows[0]["status"], "sent");
        assert_eq!(rows[0]["attempt"], 2);
    }

    fn on_unknown_resend_sends_an_in_doubt_stage_again_and_says_so() {
        let server = SmtpServer::start(&["--data-delay", "30"]);
        let env = smtp_env(server.port, "", RESENDING_SHIPMENT);
        let config = std::fs::read_to_string(env.path("config.toml"))
            .unwrap()
            .replace("command_timeout = \"2s\"", "command_timeout = \"60s\"")
            .replace("send_timeout = \"10s\"", "send_timeout = \"60s\"")
            .replace("[database]\n", "[database]\nlease = \"1s\"\n");
        std::fs::write(env.path("config.toml"), &config).unwrap();
        import_one(&env, "U1", "Uma", "Mug");
        let mut tick = spawn_tick(&env, DUE);
        wait_for_sending(&env, "U1");
        tick.kill().unwrap();
        tick.wait().unwrap();
        wait_for_lease_to_run_out();
        drop(server);

        let server = SmtpServer::start(&[]);
        let config = config
            .lines()
            .map(|l| {
                if l.starts_with("port = ") {
                    format!("port = {}", server.port)
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(env.path("config.toml"), config).unwrap();
        env.ok(&["tick", "--now", "2026-12-01T13:00:00Z"]);
        assert_eq!(env.stage_state(DUE, "U1", "shipment")["state"], "sent");
        assert_eq!(
            server.received()[0]["message_id"],
            "<followupd.shipment.shop.U1@test.example>"
        );
        let rows = logs(&env, &["--order", "U1"]);
        let summary = status_and_detail(&rows);
        assert_eq!(summary.len(), 2, "{summary:?}");
        assert_eq!(summary[0].0, "sent");
        assert_eq!(
            summary[0].1,
            Some("re-send of an in-doubt attempt (on_unknown = resend)")
        );
        assert_eq!(summary[1].0, "unknown");
    }

    fn on_unknown_resend_also_covers_a_live_send_left_in_doubt() {
        // The connection drops unanswered after the first message's final
        // dot: the server has it, the client cannot know.
        let server = SmtpServer::start(&["--drop-after-data", "1"]);
        let env = smtp_env(server.port, "", RESENDING_SHIPMENT);
        import_one(&env, "L1", "Lou", "Mug");
        env.ok(&["tick", "--now", DUE]);
        let stage = env.stage_state(DUE, "L1", "shipment");
        assert_eq!(stage["state"], "retrying", "{stage}");
        env.ok(&["tick", "--now", "2026-12-01T14:00:00Z"]);
        assert_eq!(env.stage_state(DUE, "L1", "shipment")["state"], "sent");
        // A third tick sends nothing more.
        env.ok(&["tick", "--now", "2026-12-01T16:00:00Z"]);
        // The server got the whole message twice: once dropped unanswered
        // after the final dot, once accepted.
        let transmitted: Vec<(Value, Value)> = server
            .attempts()
            .iter()
            .filter(|a| a["message_id"].is_string())
            .map(|a| (a["stage"].clone(), a["message_id"].clone()))
            .collect();
        let id = Value::from("<followupd.shipment.shop.L1@test.example>");
        assert_eq!(
            transmitted,
            [(Value::from("drop"), id.clone()), (Value::from("data"), id)]
        );
        let rows = logs(&env, &["--order", "L1"]);
        let summary = status_and_detail(&rows);
        assert_eq!(summary.len(), 2, "{summary:?}");
        assert_eq!(
            summary[0],
            (
                "sent",
                Some("re-send of an in-doubt attempt (on_unknown = resend)")
            )
        );
        assert_eq!(summary[1].0, "unknown");
    }

    fn without_on_unknown_resend_a_live_send_in_doubt_is_never_repeated() {
        let server = SmtpServer::start(&["--drop-after-data", "1"]);
        let env = smtp_env(server.port, "", "");
        import_one(&env, "L2", "Lee", "Mug");
        env.ok(&["tick", "--now", DUE]);
        env.ok(&["tick", "--now", "2026-12-01T14:00:00Z"]);
        assert_eq!(env.stage_state(DUE, "L2", "shipment")["state"], "unknown");
        let transmitted: Vec<Value> = server
            .attempts()
            .iter()
            .filter(|a| a["message_id"] == "<followupd.shipment.shop.L2@test.example>")
            .map(|a| a["stage"].clone())
            .collect();
        assert_eq!(transmitted, [Value::from("drop")]);
    }
}

#[test]
fn sends_are_paced_by_max_per_minute() {
    let server = SmtpServer::start(&[]);
    // Six a minute: a burst of six, then one every ten seconds.
    let env = smtp_env(server.port, "max_per_minute = 6\npool_size = 2", "");
    let mut csv = CSV_HEADER.to_string();
    for i in 0..7 {
        csv.push_str(&format!(
            "M{i},m{i}@buyer.example,,Mug,,2026-12-01T10:00:00Z,,,,,\n"
        ));
    }
    assert!(env.import_csv("orders.csv", &csv).status.success());
    let started = std::time::Instant::now();
    let out = env.ok(&["tick", "--now", DUE]);
    let elapsed = started.elapsed();
    assert!(out.starts_with("sent 7,"), "{out}");
    assert_eq!(server.received().len(), 7);
    assert!(
        elapsed >= std::time::Duration::from_secs(9),
        "the seventh message went out after {elapsed:?}, before the limit allowed"
    );
}

/// A pass reads the next batch of due orders while earlier ones are still
/// being sent. With many sessions, the due stages of the orders in flight
/// can fill a whole batch (1,000 stages); the pass must then wait for them
/// and read again, not end with orders behind them unsent.
#[test]
fn one_tick_sends_every_due_order_when_orders_in_flight_fill_a_batch() {
    let server = SmtpServer::start(&[]);
    // 32 sessions keep 512 orders (1,536 due stages) in flight at once.
    let env = smtp_env(server.port, "pool_size = 32", "");
    let orders = 1_200;
    let mut csv = CSV_HEADER.to_string();
    for i in 0..orders {
        csv.push_str(&format!(
            "F{i},f{i}@buyer.example,,Mug,,2026-12-01T10:00:00Z,,,,,\n"
        ));
    }
    assert!(env.import_csv("orders.csv", &csv).status.success());
    let out = env.ok(&["tick", "--now", DUE]);
    assert!(out.starts_with(&format!("sent {orders},")), "{out}");
    assert_eq!(server.received().len(), orders);
}

/// A transport of its own (one session) for the server on `port`, with
/// `extra` transport settings.
fn transport_for(port: u16, extra: &str) -> (Env, followupd::transport::Transport) {
    let env = smtp_env(port, &format!("pool_size = 1\n{extra}"), "");
    let config = followupd::config::Config::load(&env.path("config.toml")).unwrap();
    let transport = followupd::transport::Transport::new(&config.transport).unwrap();
    (env, transport)
}

/// A small message with Message-ID `m{n}@test.example`.
fn small_message(n: u32) -> followupd::message::Outgoing {
    followupd::message::Outgoing {
        message_id: format!("m{n}@test.example"),
        from: "shop@test.example".parse().unwrap(),
        to: "b@buyer.example".parse().unwrap(),
        subject: "Hello".into(),
        raw: format!("Message-ID: <m{n}@test.example>\r\nSubject: Hello\r\n\r\nHi\r\n")
            .into_bytes(),
    }
}

/// The stages of the server's attempts lines.
fn attempt_stages(server: &SmtpServer) -> Vec<String> {
    server
        .attempts()
        .iter()
        .map(|a| a["stage"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The transport on its own, against the test server offering PIPELINING
/// or not. Offered, MAIL, RCPT and DATA go in one write; not offered (or
/// turned off in the config), the transport waits for each reply. Either way a message withheld after the
/// envelope (the caller could not make its claim durable) never reaches the
/// server: with PIPELINING the server has already said 354 and awaits the
/// message, so the connection is closed without the final dot, and the
/// server records the transaction as abandoned. The next message goes out
/// on a new connection.
#[test]
fn the_envelope_is_pipelined_when_offered_and_a_withheld_message_never_arrives() {
    use followupd::transport::SendError;

    let cases = [
        (&[][..], "", true),
        (&["--no-pipelining"][..], "", false),
        (&[][..], "pipelining = false", false),
    ];
    for (server_args, config, pipelined) in cases {
        let server = SmtpServer::start(server_args);
        let (_env, transport) = transport_for(server.port, config);
        let message = small_message;
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let withheld = runtime.block_on(transport.send(&message(1), async { false }));
        assert!(matches!(withheld, Err(SendError::Withheld)), "{withheld:?}");
        let sent = runtime.block_on(transport.send(&message(2), async { true }));
        assert_eq!(sent.expect("the second message is sent").code, Some(250));

        let received = server.received();
        assert_eq!(received.len(), 1, "{received:?}");
        assert_eq!(received[0]["message_id"], "<m2@test.example>");
        assert_eq!(received[0]["conn"], 2, "{received:?}");
        assert_eq!(
            received[0]["pipelined"], pipelined,
            "{server_args:?} {config}"
        );
        // Only a pipelined DATA had reached the 354 when the message was
        // withheld, and the server saw that transaction given up.
        let abandoned = usize::from(pipelined);
        assert!(
            common::eventually(std::time::Duration::from_secs(5), || {
                server.jsonl("abandoned.jsonl").len() == abandoned
            }),
            "{:?}",
            server.jsonl("abandoned.jsonl")
        );
        assert_eq!(attempt_stages(&server), ["data"]);
    }
}

/// A relay that gives up on the connection after its 354, while the claim
/// is still committing (its own timeout, a restart), has taken nothing of
/// the message: the send is a retry, not a delivery in doubt.
#[test]
fn a_connection_dropped_after_the_354_while_the_claim_commits_is_a_retry() {
    use followupd::transport::SendError;

    let server = SmtpServer::start(&["--drop-after-354"]);
    let (_env, transport) = transport_for(server.port, "");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let slow_claim = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        true
    };
    let result = runtime.block_on(transport.send(&small_message(1), slow_claim));
    assert!(
        matches!(result, Err(SendError::Transient { .. })),
        "{result:?}"
    );
    assert!(server.received().is_empty());
    assert_eq!(attempt_stages(&server), ["drop-after-354"]);
}

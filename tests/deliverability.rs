//! Unsubscribe links, the suppression list, bounces and complaints, end to
//! end: the real binary, the real test SMTP server (aiosmtpd), the daemon's
//! HTTP listener, on SQLite and PostgreSQL.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::smtp::SmtpServer;
use common::{eventually, free_port, Env};
use serde_json::Value;

/// A config sending through `smtp` at any hour, with the listener on
/// `port` and unsubscribe links pointing at it.
fn config(smtp: &SmtpServer, port: u16) -> String {
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
port = {smtp}
tls = "none"
command_timeout = "5s"
connect_timeout = "5s"

[sender]
from = "Test Shop <shop@test.example>"

[http]
listen = "127.0.0.1:{port}"
request_timeout = "5s"

[unsubscribe]
base_url = "http://127.0.0.1:{port}/"
mailto = "unsubscribe@test.example"
secret_file = "unsubscribe.key"

[bounces]
inbox = "bounces"
soft_limit = 2
soft_period = "3d"

[bounces.mailgun]
signing_key_file = "mailgun.key"

[bounces.postmark]
username = "followupd"
password_file = "postmark.pass"
"#,
        smtp = smtp.port
    )
}

const MAILGUN_KEY: &str = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";
const POSTMARK_PASSWORD: &str = "a-long-postmark-password";

fn setup() -> (Env, SmtpServer, u16) {
    let smtp = SmtpServer::start(&[]);
    let port = free_port();
    let env = Env::new(&config(&smtp, port));
    env.write(
        "unsubscribe.key",
        "3f9c2b7e5d1a48c6b0e7f2a9d4c8b1e6a5f0d3c7b2e9a4f8c1d6b0e5a7f2c9d4\n",
    );
    env.write("mailgun.key", &format!("{MAILGUN_KEY}\n"));
    env.write("postmark.pass", &format!("{POSTMARK_PASSWORD}\n"));
    (env, smtp, port)
}

/// `followupd run`, killed when dropped.
struct Daemon(Child);

impl Daemon {
    fn start(env: &Env, port: u16) -> Self {
        let child = env
            .command()
            .arg("run")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(env.path("daemon.log")).unwrap())
            .spawn()
            .unwrap();
        let daemon = Self(child);
        let up = eventually(Duration::from_secs(20), || {
            http(port, "GET", "/healthz").0 == 200
        });
        assert!(
            up,
            "the listener never answered: {}",
            std::fs::read_to_string(env.path("daemon.log")).unwrap_or_default()
        );
        daemon
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request on its own connection: (status, body). A POST
/// carries RFC 8058's one-click body.
fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    let body = if method == "POST" {
        "List-Unsubscribe=One-Click"
    } else {
        ""
    };
    request(
        port,
        method,
        path,
        "Content-Type: application/x-www-form-urlencoded\r\n",
        body,
    )
}

/// One request with extra header lines (each ending in CRLF) and a body.
fn request(port: u16, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn suppressions(env: &Env) -> Vec<Value> {
    env.ok(&["suppress", "list", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn logs(env: &Env, email: &str) -> Vec<Value> {
    env.ok(&["logs", "--email", email, "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn now_plus(days: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(days)).to_rfc3339()
}

on_both_backends! {
    // The follow-up goes out with its link; the link is fetched (nothing
    // happens), tampered with (refused), then posted by many at once (one
    // entry); the review request that would have come is skipped.
    fn a_buyer_who_unsubscribes_after_the_follow_up_gets_no_review_request() {
        let (env, smtp, port) = setup();
        // Delivered three days ago: the follow-up is due now, the review
        // request in four days; the shipment window has closed.
        let out = env.import_csv(
            "orders.csv",
            "order_id,buyer_email,buyer_name,product_name,shipped_at,delivered_at,locale\n\
             A-1,Ann.Lee@Example.COM,Ann Lee,Oak Lamp,-4d,-3d,de\n",
        );
        assert!(out.status.success(), "{out:?}");
        let daemon = Daemon::start(&env, port);
        assert!(
            eventually(Duration::from_secs(20), || smtp.received().len() == 1),
            "the follow-up never arrived"
        );
        let raw = smtp.message(1);
        assert!(raw.contains("follow_up"), "{raw}");
        let list = unfolded(&raw, "List-Unsubscribe").expect("List-Unsubscribe");
        assert_eq!(
            unfolded(&raw, "List-Unsubscribe-Post").as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
        assert!(list.contains("<mailto:unsubscribe@test.example?subject=unsubscribe>"), "{list}");
        let url = list
            .split(['<', '>'])
            .find(|part| part.starts_with("http://"))
            .expect("an http link")
            .to_string();
        let path = url.split_once(&format!("127.0.0.1:{port}")).unwrap().1.to_string();
        assert!(!url.to_lowercase().contains("ann"), "the link names the buyer: {url}");

        // A GET shows the page (in German) and changes nothing.
        let (status, page) = http(port, "GET", &path);
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("<form method=\"post\""), "{page}");
        assert!(page.contains("Abmelden"), "{page}");
        assert!(suppressions(&env).is_empty());

        // Tampered and malformed tokens are refused and change nothing.
        let token = path.strip_prefix("/u/").unwrap();
        let mut altered: Vec<char> = token.chars().collect();
        let last = altered.len() - 3;
        altered[last] = if altered[last] == 'A' { 'B' } else { 'A' };
        let altered: String = altered.into_iter().collect();
        assert_eq!(http(port, "POST", &format!("/u/{altered}")).0, 403);
        assert_eq!(http(port, "POST", "/u/not-a-token!").0, 400);
        assert_eq!(http(port, "POST", &format!("/u/{token}x")).0, 400);
        assert!(suppressions(&env).is_empty());

        // Sixteen one-click requests at once: all 200, one entry, one log row.
        let answers: Vec<u16> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|_| s.spawn(|| http(port, "POST", &path).0))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(answers.iter().all(|s| *s == 200), "{answers:?}");
        let list = suppressions(&env);
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0]["address"], "Ann.Lee@example.com");
        assert_eq!(list[0]["reason"], "unsubscribed");
        let unsubscribed: Vec<Value> = logs(&env, "Ann.Lee@example.com")
            .into_iter()
            .filter(|l| l["status"] == "unsubscribed")
            .collect();
        assert_eq!(unsubscribed.len(), 1, "{unsubscribed:?}");
        let (_, metrics) = http(port, "GET", "/metrics");
        assert!(
            metrics.contains("followupd_suppressed_addresses{reason=\"unsubscribed\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("followupd_messages_total{stage=\"-\",outcome=\"unsubscribed\"} 1"),
            "{metrics}"
        );

        // The bounces inbox: a real feedback report is a complaint, junk
        // is set aside with its reason. Written beside and renamed, as a
        // delivery agent does.
        let arf = std::fs::read_to_string(
            common::repo().join("tests/data/bounces/sisimai/arf-14.eml"),
        )
        .unwrap();
        for (name, text) in [("complaint.eml", arf.as_str()), ("junk.eml", "hello\n")] {
            let temporary = env.write(&format!("bounces/.{name}"), text);
            std::fs::rename(temporary, env.path(&format!("bounces/{name}"))).unwrap();
        }
        let handled = eventually(Duration::from_secs(20), || {
            env.path("bounces/done/complaint.eml").exists()
                && env.path("bounces/rejected/junk.eml.errors").exists()
        });
        assert!(handled, "the bounces inbox was not read");
        assert!(suppressions(&env)
            .iter()
            .any(|s| s["address"] == "kijitora@y.example.com" && s["reason"] == "complained"));
        drop(daemon);

        // When the review request's window opens, it is skipped, and no
        // second message reaches the server.
        let later = now_plus(5);
        env.ok(&["tick", "--now", &later]);
        let review = env.stage_state(&later, "A-1", "review_request");
        assert_eq!(review["state"], "skipped", "{review}");
        assert_eq!(review["reason"], "suppressed: unsubscribed", "{review}");
        assert_eq!(smtp.received().len(), 1);
    }

    // A permanent bounce of the shipment notice (a real Postfix DSN with
    // our recipient and Message-ID in it) suppresses the address; the
    // follow-up and review request are skipped. A vacation notice changes
    // nothing.
    fn a_bounce_of_the_shipment_notice_stops_the_rest() {
        let (env, smtp, _port) = setup();
        env.import_csv(
            "orders.csv",
            "order_id,buyer_email,product_name,shipped_at\nB-1,gone@example.org,Oak Lamp,-1h\n",
        );
        let now = now_plus(0);
        env.ok(&["tick", "--now", &now]);
        assert_eq!(smtp.received().len(), 1);
        let message_id = smtp.received_ids().remove(0);

        let auto = std::fs::read_to_string(
            common::repo().join("tests/data/bounces/sisimai/rfc3834-01.eml"),
        )
        .unwrap();
        let auto = env.write("vacation.eml", &auto);
        let out = env.ok(&["bounce", auto.to_str().unwrap()]);
        assert!(out.contains("auto_reply ignored"), "{out}");
        assert!(suppressions(&env).is_empty());

        let dsn = std::fs::read_to_string(
            common::repo().join("tests/data/bounces/sisimai/lhost-postfix-04.eml"),
        )
        .unwrap();
        let original = dsn_recipient(&dsn);
        let dsn = dsn
            .replace(&original, "gone@example.org")
            .replace(&dsn_message_id(&dsn), message_id.trim_matches(['<', '>']));
        let file = env.write("bounce.eml", &dsn);
        let out = env.ok(&["bounce", file.to_str().unwrap()]);
        assert!(out.contains("permanent gone@example.org"), "{out}");
        assert!(out.contains("order shop/B-1 shipment"), "{out}");
        assert!(out.contains("suppressed (bounced)"), "{out}");
        let list = suppressions(&env);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["reason"], "bounced");
        let bounced: Vec<Value> = env
            .ok(&["logs", "--status", "bounced", "--json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(bounced.len(), 1, "{bounced:?}");
        assert_eq!(bounced[0]["stage"], "shipment");

        let later = now_plus(10);
        env.ok(&["tick", "--now", &later]);
        for stage in ["follow_up", "review_request"] {
            let line = env.stage_state(&later, "B-1", stage);
            assert_eq!(line["state"], "skipped", "{stage}: {line}");
            let reason = line["reason"].as_str().unwrap();
            assert!(reason.starts_with("suppressed: bounced"), "{stage}: {line}");
        }
        assert_eq!(smtp.received().len(), 1);
    }

    // The list by hand; a transactional stage still goes to a suppressed
    // address; temporary failures suppress at the configured count.
    fn the_list_by_hand_transactional_stages_and_soft_bounces() {
        let (env, smtp, _port) = setup();
        let out = env.ok(&["suppress", "add", "Bob@EXAMPLE.net", "--note", "asked by phone"]);
        assert!(out.contains("suppressed Bob@example.net (manual)"), "{out}");
        let again = env.ok(&["suppress", "add", "Bob@example.net"]);
        assert!(again.contains("already suppressed"), "{again}");
        let file = env.write(
            "list.csv",
            "address,reason,note\n# a comment\ncara@example.com,complained\nnot-an-address\n\
             dan@example.com,spam\neve@example.com\n",
        );
        let out = env.run(&["suppress", "import", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("list.csv:4:"), "{stderr}");
        assert!(stderr.contains("list.csv:5:"), "{stderr}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("suppressed 2"));
        assert_eq!(suppressions(&env).len(), 3);
        let out = env.ok(&["suppress", "remove", "eve@example.com"]);
        assert!(out.contains("removed eve@example.com"), "{out}");
        assert_eq!(suppressions(&env).len(), 2);

        // A seller who keeps shipment notices for everyone.
        let config = std::fs::read_to_string(env.path("config.toml")).unwrap()
            + r#"
[[stages]]
name = "shipment"
anchor = "shipped_at"
opens_after = "0s"
closes_after = "2d"
transactional = true

[[stages]]
name = "follow_up"
anchor = "delivered_at"
opens_after = "2d"
closes_after = "5d"
"#;
        env.write("config.toml", &config);
        env.import_csv(
            "orders.csv",
            "order_id,buyer_email,product_name,shipped_at,delivered_at\n\
             C-1,Bob@Example.NET,Oak Lamp,-1h,-1h\n",
        );
        env.ok(&["tick", "--now", &now_plus(0)]);
        env.ok(&["tick", "--now", &now_plus(3)]);
        let received = smtp.received();
        assert_eq!(received.len(), 1, "{received:?}");
        assert!(smtp.message(1).contains("shipment"));
        let follow_up = env.stage_state(&now_plus(3), "C-1", "follow_up");
        assert_eq!(follow_up["reason"], "suppressed: manual", "{follow_up}");
        // A manual resend does not get past the list either; the
        // transactional shipment may be resent.
        let out = env.run(&["resend", "C-1", "follow_up"]);
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("Bob@example.net is on the suppression list"), "{stderr}");
        assert_eq!(smtp.received().len(), 1);
        env.ok(&["resend", "C-1", "shipment"]);
        assert_eq!(smtp.received().len(), 2);

        // Two temporary failures within three days suppress.
        let delayed = std::fs::read_to_string(
            common::repo().join("tests/data/bounces/sisimai/rhost-franceptt-06.eml"),
        )
        .unwrap();
        let file = env.write("soft.eml", &delayed);
        let first = env.ok(&["bounce", file.to_str().unwrap(), "--now", &now_plus(0)]);
        assert!(first.contains("temporary failure 1 of 2"), "{first}");
        assert!(!first.contains("suppressed ("), "{first}");
        let second = env.ok(&["bounce", file.to_str().unwrap(), "--now", &now_plus(1)]);
        assert!(second.contains("suppressed (bounced)"), "{second}");
        assert!(suppressions(&env).iter().any(|s| s["address"] == "xxxx@orange.fr"));

        // Unreadable input is reported with its reason, exit 1.
        let junk = env.write("junk.eml", "hello\n");
        let out = env.run(&["bounce", junk.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("junk.eml: not a"), "{stderr}");

        // check: links with the listener on are fine; with it off, an error.
        let out = env.run(&["check"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("ok    unsubscribe: links http://127.0.0.1:"), "{stdout}");
        let config = std::fs::read_to_string(env.path("config.toml")).unwrap();
        let http = config.find("[http]").unwrap();
        let end = config[http..].find("[unsubscribe]").unwrap() + http;
        env.write("config.toml", &format!("{}{}", &config[..http], &config[end..]));
        let out = env.run(&["check"]);
        assert_eq!(out.status.code(), Some(1));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("FAIL  unsubscribe: base_url"), "{stdout}");
    }

    // Relay webhooks: Mailgun's signed events (a permanent failure of our
    // shipment notice, matched by its Message-ID; a complaint) and
    // Postmark's basic-auth ones (a hard bounce matched by recipient, a
    // spam complaint); forged, stale and unauthenticated requests change
    // nothing.
    fn relay_webhooks_are_authenticated_and_suppress() {
        let (env, smtp, port) = setup();
        env.import_csv(
            "orders.csv",
            "order_id,buyer_email,product_name,shipped_at\n\
             M-1,invalid@example.com,Oak Lamp,-1h\nP-1,bounce@example.com,Oak Lamp,-1h\n",
        );
        env.ok(&["tick", "--now", &now_plus(0)]);
        assert_eq!(smtp.received().len(), 2);
        let ours = smtp
            .received_ids()
            .into_iter()
            .find(|id| id.contains("M-1"))
            .unwrap();
        let _daemon = Daemon::start(&env, port);
        let sample = |name: &str| {
            std::fs::read_to_string(
                common::repo().join(format!("tests/data/bounces/webhooks/{name}")),
            )
            .unwrap()
        };
        let mailgun = |payload: &str, key: &str, timestamp: i64| {
            let mut value: Value = serde_json::from_str(payload).unwrap();
            let token = "1234567890abcdef1234567890abcdef";
            let tag = ring::hmac::sign(
                &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes()),
                format!("{timestamp}{token}").as_bytes(),
            );
            let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            value["signature"] = serde_json::json!({
                "timestamp": timestamp.to_string(), "token": token, "signature": hex
            });
            let body = value.to_string();
            request(port, "POST", "/webhooks/mailgun", "Content-Type: application/json\r\n", &body)
        };
        let now = chrono::Utc::now().timestamp();
        let failed = sample("mailgun-failed-permanent.json")
            .replace("20180812214658.1.0DF563D0B3597700@example.org", ours.trim_matches(['<', '>']));
        assert_eq!(mailgun(&failed, "wrong-key", now).0, 401);
        assert_eq!(mailgun(&failed, MAILGUN_KEY, now - 3600).0, 401);
        assert!(suppressions(&env).is_empty());
        assert_eq!(mailgun(&failed, MAILGUN_KEY, now), (200, "recorded\n".into()));
        assert_eq!(mailgun(&sample("mailgun-complained.json"), MAILGUN_KEY, now).0, 200);

        let basic = |user: &str, password: &str| {
            use base64::Engine as _;
            let credentials = base64::engine::general_purpose::STANDARD
                .encode(format!("{user}:{password}"));
            format!("Authorization: Basic {credentials}\r\nContent-Type: application/json\r\n")
        };
        let bounce = sample("postmark-bounce.json");
        let json = "Content-Type: application/json\r\n";
        assert_eq!(request(port, "POST", "/webhooks/postmark", json, &bounce).0, 401);
        let wrong = basic("followupd", "not-the-password-at-all");
        assert_eq!(request(port, "POST", "/webhooks/postmark", &wrong, &bounce).0, 401);
        assert_eq!(suppressions(&env).len(), 2);
        let right = basic("followupd", POSTMARK_PASSWORD);
        assert_eq!(request(port, "POST", "/webhooks/postmark", &right, &bounce).0, 200);
        let spam = sample("postmark-spam-complaint.json");
        assert_eq!(request(port, "POST", "/webhooks/postmark", &right, &spam).0, 200);

        let reasons: Vec<(String, String)> = suppressions(&env)
            .iter()
            .map(|s| (s["address"].as_str().unwrap().into(), s["reason"].as_str().unwrap().into()))
            .collect();
        for expected in [
            ("invalid@example.com", "bounced"),
            ("recipient@example.com", "complained"),
            ("bounce@example.com", "bounced"),
            ("spam@example.com", "complained"),
        ] {
            assert!(
                reasons.iter().any(|(a, r)| a == expected.0 && r == expected.1),
                "{expected:?} not in {reasons:?}"
            );
        }
        for (email, order) in [("invalid@example.com", "M-1"), ("bounce@example.com", "P-1")] {
            let rows: Vec<Value> = logs(&env, email)
                .into_iter()
                .filter(|l| l["status"] == "bounced")
                .collect();
            assert_eq!(rows.len(), 1, "{email}: {rows:?}");
            assert_eq!(rows[0]["order_id"], order);
            assert_eq!(rows[0]["stage"], "shipment");
        }
    }

}

/// The address of a DSN's first Final-Recipient.
fn dsn_recipient(dsn: &str) -> String {
    let line = dsn
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("final-recipient:"))
        .unwrap();
    line.rsplit(';')
        .next()
        .unwrap()
        .trim()
        .trim_matches(['<', '>'])
        .to_string()
}

/// The Message-ID of the message a DSN returns (the last one in the file).
fn dsn_message_id(dsn: &str) -> String {
    let line = dsn
        .lines()
        .rfind(|l| l.to_ascii_lowercase().starts_with("message-id:"))
        .unwrap();
    line.split_once(':')
        .unwrap()
        .1
        .trim()
        .trim_matches(['<', '>'])
        .to_string()
}

/// A header's value with its continuation lines joined.
fn unfolded(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next()?;
    let prefix = format!("{}:", name.to_ascii_lowercase());
    let mut lines = head.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        if line.to_ascii_lowercase().starts_with(&prefix) {
            let mut value = line[prefix.len()..].trim().to_string();
            while let Some(next) = lines.next_if(|l| l.starts_with([' ', '\t'])) {
                value.push(' ');
                value.push_str(next.trim());
            }
            return Some(value);
        }
    }
    None
}

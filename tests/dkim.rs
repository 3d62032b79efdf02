//! DKIM signatures, checked by an independent verifier: messages sent
//! through the real test SMTP server (aiosmtpd) are verified by dkimpy
//! (tests/support/dkim_verify.py) against the record `followupd check`
//! says to publish, for an RSA and an Ed25519 key made by openssl.

mod common;

use std::process::Command;

use common::smtp::SmtpServer;
use common::Env;

fn config(smtp: &SmtpServer, key: &str) -> String {
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

[transport.dkim]
domain = "test.example"
selector = "s2026"
key_file = "{key}"

[sender]
from = "Test Shop <shop@test.example>"
reply_to = "care@test.example"
"#,
        port = smtp.port
    )
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

fn verify(file: &std::path::Path, record: &str) -> String {
    let out = Command::new("python3")
        .arg(common::repo().join("tests/support/dkim_verify.py"))
        .arg(file)
        .arg(record)
        .output()
        .expect("python3 runs (pip install -r tests/support/requirements.txt)");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        text == "pass" || text == "fail",
        "the verifier did not run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Sends a shipment notice signed with `key` and checks it with dkimpy;
/// then changes the subject and the body and checks that both fail.
fn signed_message_verifies(algorithm: &[&str], pem: &str) {
    let smtp = SmtpServer::start(&[]);
    let env = Env::new(&config(&smtp, pem));
    let key = env.path(pem);
    let mut args = vec!["genpkey"];
    args.extend_from_slice(algorithm);
    args.extend(["-out", key.to_str().unwrap()]);
    openssl(&args);

    let check = String::from_utf8(env.run(&["check"]).stdout).unwrap();
    let line = check
        .lines()
        .find(|l| l.contains("dkim:"))
        .unwrap_or_else(|| panic!("no dkim line: {check}"));
    assert!(line.starts_with("ok"), "{line}");
    assert!(
        line.contains("publish TXT s2026._domainkey.test.example"),
        "{line}"
    );
    let record = line
        .rsplit_once("\"v=")
        .map(|(_, r)| format!("v={}", r.trim_end_matches('"')))
        .unwrap();

    let out = env.import_csv(
        "orders.csv",
        "order_id,buyer_email,buyer_name,product_name,shipped_at\n\
         D-1,ann@example.com,Änne Müller,Teekanne „Ostfriesland“,-1h\n",
    );
    assert!(out.status.success(), "{out:?}");
    env.ok(&["tick"]);
    assert_eq!(smtp.received().len(), 1);
    let raw = smtp.message(1);
    assert!(
        raw.starts_with("DKIM-Signature: v=1;") || raw.contains("\nDKIM-Signature: v=1;"),
        "{raw}"
    );
    let h = raw
        .split("h=")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap();
    for name in [
        "from",
        "subject",
        "date",
        "message-id",
        "to",
        "list-unsubscribe",
        "list-unsubscribe-post",
    ] {
        assert!(h.split(':').any(|n| n == name), "{name} not signed: h={h}");
    }
    let file = env.write("signed.eml", &raw);
    assert_eq!(verify(&file, &record), "pass");

    let subject = raw.lines().find(|l| l.starts_with("Subject:")).unwrap();
    let tampered = env.write(
        "subject.eml",
        &raw.replacen(subject, "Subject: Something else", 1),
    );
    assert_eq!(verify(&tampered, &record), "fail");
    let tampered = env.write("body.eml", &format!("{}X\r\n", raw));
    assert_eq!(verify(&tampered, &record), "fail");
}

#[test]
fn rsa_signatures_verify_independently() {
    signed_message_verifies(
        &["-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:2048"],
        "rsa.pem",
    );
}

#[test]
fn ed25519_signatures_verify_independently() {
    signed_message_verifies(&["-algorithm", "ed25519"], "ed25519.pem");
}

#[test]
fn an_unreadable_key_is_a_config_error() {
    let smtp = SmtpServer::start(&[]);
    let env = Env::new(&config(&smtp, "missing.pem"));
    let out = env.run(&["check"]);
    // check reports a config error as a FAIL line and exit 1, like any failed check.
    assert_eq!(out.status.code(), Some(1));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("transport.dkim.key_file"), "{said}");
    env.write(
        "missing.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("not a PEM private key"), "{said}");
}

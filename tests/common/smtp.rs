//! The independent SMTP server the tests talk to: aiosmtpd, scripted by
//! tests/support/smtp_server.py (its docstring lists the options). Killed
//! when dropped; it also exits if the test process dies (stdin closes).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// A running test SMTP server.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    /// Where it writes `N.eml`, `received.jsonl` and `attempts.jsonl`.
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl SmtpServer {
    /// Starts a server on a free port with the script's `args`.
    pub fn start(args: &[&str]) -> Self {
        Self::start_on(None, args)
    }

    /// Starts a server on `port` (or a free one).
    pub fn start_on(port: Option<u16>, args: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mail");
        let mut command = Command::new("python3");
        command
            .arg(super::repo().join("tests/support/smtp_server.py"))
            .arg("--dir")
            .arg(&dir)
            .arg("--exit-on-stdin-eof")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(p) = port {
            command.arg("--port").arg(p.to_string());
        }
        let mut child = command
            .spawn()
            .expect("python3 runs (install: pip install -r tests/support/requirements.txt)");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| {
                panic!("SMTP test server did not start (is aiosmtpd installed?): {line:?}")
            })
            .parse()
            .unwrap();
        Self {
            child,
            port,
            dir,
            _tmp: tmp,
        }
    }

    /// The lines of one of its JSON Lines files. The server may still be
    /// appending: a last line without its line break is not finished and is
    /// left out.
    pub fn jsonl(&self, name: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        let complete = match text.rfind('\n') {
            Some(end) => &text[..=end],
            None => "",
        };
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Every accepted message.
    pub fn received(&self) -> Vec<Value> {
        self.jsonl("received.jsonl")
    }

    /// Every transaction outcome, accepted or not.
    pub fn attempts(&self) -> Vec<Value> {
        self.jsonl("attempts.jsonl")
    }

    /// Message-IDs of every accepted message, in arrival order.
    pub fn received_ids(&self) -> Vec<String> {
        self.received()
            .iter()
            .map(|v| v["message_id"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// The raw bytes of accepted message `n` (1-based).
    pub fn message(&self, n: u64) -> String {
        std::fs::read_to_string(self.dir.join(format!("{n}.eml"))).unwrap()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! Shared test fixtures: a throw-away followupd installation (config,
//! templates, database, outbox) in a temporary folder, driven through the
//! real `followupd` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary followupd installation.
pub struct Env {
    pub dir: tempfile::TempDir,
}

/// The repository's own folder (for the shipped templates).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The default test configuration: SQLite in the temp folder, outbox
/// transport, the shipped templates and stage defaults.
pub const BASE_CONFIG: &str = r#"
[database]
url = "sqlite://state/test.db"

[defaults]
time_zone = "UTC"

[transport]
kind = "file"
dir = "outbox"

[sender]
from = "Test Shop <shop@test.example>"
reply_to = "care@test.example"
"#;

impl Env {
    /// A fresh installation with the shipped templates and `config` as
    /// config.toml.
    pub fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repo().join("templates"), &dir.path().join("templates"));
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        Self { dir }
    }

    pub fn with_defaults() -> Self {
        Self::new(BASE_CONFIG)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Runs `followupd -c <config> ARGS…` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_followupd"))
            .arg("-c")
            .arg(self.path("config.toml"))
            .args(args)
            .env_remove("FOLLOWUPD_CONFIG")
            .env_remove("FOLLOWUPD_DATABASE_URL")
            .env("RUST_LOG", "warn")
            .output()
            .expect("followupd runs")
    }

    /// Runs and insists on success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "followupd {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Imports CSV text given inline.
    pub fn import_csv(&self, name: &str, csv: &str) -> Output {
        let file = self.write(name, csv);
        self.run(&["import", file.to_str().unwrap()])
    }

    /// The .eml files in the outbox, sorted by name.
    pub fn outbox(&self) -> Vec<(String, String)> {
        let dir = self.path("outbox");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut files: Vec<(String, String)> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().to_string(),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    }

    /// `plan --json` lines as JSON values.
    pub fn plan(&self, now: &str) -> Vec<serde_json::Value> {
        self.ok(&["plan", "--json", "--now", now])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The stored state of one stage of one order, from `plan`.
    pub fn stage_state(&self, now: &str, order_id: &str, stage: &str) -> serde_json::Value {
        self.plan(now)
            .into_iter()
            .find(|l| l["order_id"] == order_id && l["stage"] == stage)
            .unwrap_or_else(|| panic!("no plan line for {order_id}/{stage}"))
    }
}

/// The value of a header in a raw message (first occurrence, unfolded).
pub fn header(raw: &str, name: &str) -> Option<String> {
    let lines = raw.split("\r\n").flat_map(|l| l.split('\n'));
    let prefix = format!("{}:", name.to_ascii_lowercase());
    for line in lines {
        if line.is_empty() {
            return None;
        }
        if line.to_ascii_lowercase().starts_with(&prefix) {
            return Some(line[prefix.len()..].trim().to_string());
        }
    }
    None
}

pub const CSV_HEADER: &str = "order_id,buyer_email,buyer_name,product_name,time_zone,shipped_at,delivered_at,status,complaint,opted_out,review_url\n";

//! Shared test fixtures: a throw-away followupd installation (config,
//! templates, database, outbox) in a temporary folder, driven through the
//! real `followupd` binary.

#![allow(dead_code)]

pub mod launch;
pub mod mime;
pub mod smtp;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// The database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

thread_local! {
    static BACKEND: Cell<Backend> = const { Cell::new(Backend::Sqlite) };
}

/// The backend of the test running on this thread.
pub fn backend() -> Backend {
    BACKEND.with(|b| b.get())
}

pub fn set_backend(backend: Backend) {
    BACKEND.with(|b| b.set(backend));
}

/// The PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("FOLLOWUPD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Runs one statement on the PostgreSQL admin database.
pub fn postgres_admin(sql: &str) -> Result<(), String> {
    use sqlx::Connection;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let mut conn = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            sqlx::PgConnection::connect(&postgres_admin_url()),
        )
        .await
        .map_err(|_| "timed out connecting".to_string())?
        .map_err(|e| e.to_string())?;
        sqlx::raw_sql(sql)
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let _ = conn.close().await;
        Ok(())
    })
}

/// Switches this test thread to PostgreSQL. Where no server answers, says
/// plainly that the PostgreSQL run was not run and returns false, unless
/// FOLLOWUPD_REQUIRE_POSTGRES is set (as in CI): then the test fails.
pub fn use_postgres() -> bool {
    match postgres_admin("SELECT 1") {
        Ok(()) => {
            set_backend(Backend::Postgres);
            true
        }
        Err(e) if std::env::var_os("FOLLOWUPD_REQUIRE_POSTGRES").is_some() => {
            panic!(
                "PostgreSQL at {} is required but not reachable: {e}",
                postgres_admin_url()
            )
        }
        Err(e) => {
            eprintln!(
                "NOT RUN: the PostgreSQL variant of this test (no server at {}: {e})",
                postgres_admin_url()
            );
            false
        }
    }
}

/// Declares each test twice, as `NAME::sqlite` and `NAME::postgres`: the
/// behaviour must be the same on both backends.
#[macro_export]
macro_rules! on_both_backends {
    ($(fn $name:ident() $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                fn body() $body

                #[test]
                fn sqlite() {
                    common::set_backend(common::Backend::Sqlite);
                    body();
                }

                #[test]
                fn postgres() {
                    if common::use_postgres() {
                        body();
                    }
                }
            }
        )*
    };
}

/// A temporary followupd installation.
pub struct Env {
    pub dir: tempfile::TempDir,
    /// The PostgreSQL database made for this installation, dropped with it.
    postgres_db: Option<String>,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(db) = &self.postgres_db {
            let _ = postgres_admin(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
        }
    }
}

/// A fresh PostgreSQL database for one installation.
fn create_postgres_db() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let db = format!(
        "followupd_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        fastrand::u32(..)
    );
    postgres_admin(&format!("CREATE DATABASE {db}")).expect("create a test database");
    db
}

/// The database URL for `db` on the test server.
pub fn postgres_url(db: &str) -> String {
    let admin = postgres_admin_url();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{db}")
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
    /// On PostgreSQL, the config's `sqlite://state/test.db` is replaced by
    /// a database made for this installation.
    pub fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repo().join("templates"), &dir.path().join("templates"));
        let (config, postgres_db) = match backend() {
            Backend::Sqlite => (config.to_string(), None),
            Backend::Postgres => {
                let db = create_postgres_db();
                let url = postgres_url(&db);
                (config.replace("sqlite://state/test.db", &url), Some(db))
            }
        };
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        Self { dir, postgres_db }
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

    /// `followupd -c <config>` with a clean environment
    /// ([`launch::followupd`]), ready for its arguments.
    pub fn command(&self) -> Command {
        launch::followupd(&self.path("config.toml"))
    }

    /// Runs `followupd -c <config> ARGS…` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("followupd runs")
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

/// Polls `cond` every 20 ms until it holds or `timeout` passes; whether it
/// held.
pub fn eventually(timeout: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A free TCP port on loopback (for "server down, then up").
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Removes terminal colour sequences (the log is coloured even into a file).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

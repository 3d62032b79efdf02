//! The database, read with SQL: what the invariants and scenarios check.

use crate::harness::*;

/// A read-only connection to an installation's database (SQLite opened
/// with mode=ro, or the PostgreSQL database the test made).
pub struct Db {
    pub rt: tokio::runtime::Runtime,
    pub pool: sqlx::AnyPool,
}

#[derive(Debug, Clone)]
pub struct StageRec {
    pub marketplace: String,
    pub order_id: String,
    pub stage: String,
    pub state: String,
    pub next_check_at: Option<i64>,
    pub attempts: i64,
    pub message_id: Option<String>,
    pub claim_token: i64,
}

#[derive(Debug, Clone)]
pub struct LogRec {
    pub marketplace: String,
    pub order_id: String,
    pub stage: String,
    pub recipient: String,
    pub status: String,
    pub attempt: i64,
    pub detail: Option<String>,
    pub message_ref: Option<i64>,
}

pub type Key = (String, String, String);

impl StageRec {
    pub fn key(&self) -> Key {
        (
            self.marketplace.clone(),
            self.order_id.clone(),
            self.stage.clone(),
        )
    }
}

impl LogRec {
    pub fn key(&self) -> Key {
        (
            self.marketplace.clone(),
            self.order_id.clone(),
            self.stage.clone(),
        )
    }

    /// An attempt that went to the transport (or may have: the process
    /// died in it). Blocked messages and messages that could not be
    /// composed never reached a transport.
    pub fn is_transport_attempt(&self) -> bool {
        ATTEMPT_STATUSES.contains(&self.status.as_str())
            && (self.message_ref.is_some() || self.status == "unknown")
    }

    /// The settlement of an in-doubt attempt of an `on_unknown = "resend"`
    /// stage: it asks for one deliberate re-send.
    pub fn is_in_doubt_episode(&self) -> bool {
        self.status == "unknown"
            && self.message_ref.is_none()
            && self.detail.as_deref() == Some(IN_DOUBT_RESEND)
    }

    /// A re-send that went to the transport, logged as such.
    pub fn is_logged_resend(&self) -> bool {
        self.message_ref.is_some() && self.detail.as_deref() == Some(IN_DOUBT_RESEND)
    }

    pub fn is_manual_resend(&self) -> bool {
        self.detail
            .as_deref()
            .is_some_and(|d| d.starts_with("manual resend"))
    }
}

/// The database URL of an installation, as the checker opens it.
pub fn checker_url(env: &Env) -> String {
    let text = std::fs::read_to_string(env.path("config.toml")).unwrap();
    let config: toml::Value = toml::from_str(&text).unwrap();
    let url = config["database"]["url"].as_str().unwrap().to_string();
    match url.strip_prefix("sqlite://") {
        Some(rest) => format!(
            "sqlite://{}?mode=ro",
            env.dir
                .path()
                .join(rest.split('?').next().unwrap())
                .display()
        ),
        None => url,
    }
}

impl Db {
    pub fn open(env: &Env) -> Self {
        sqlx::any::install_default_drivers();
        let url = checker_url(env);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let pool = rt
            .block_on(
                sqlx::any::AnyPoolOptions::new()
                    .max_connections(1)
                    .connect(&url),
            )
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
        Self { rt, pool }
    }

    /// None while the database does not exist yet (a process killed
    /// before it made the SQLite file).
    pub fn try_open(env: &Env) -> Option<Self> {
        let url = checker_url(env);
        if let Some(path) = url.strip_prefix("sqlite://") {
            if !Path::new(path.split('?').next().unwrap()).exists() {
                return None;
            }
        }
        Some(Self::open(env))
    }

    pub fn scalar(&self, sql: &str) -> i64 {
        self.rt
            .block_on(sqlx::query_scalar::<_, i64>(sql).fetch_one(&self.pool))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub fn opt_scalar(&self, sql: &str) -> Option<i64> {
        self.rt
            .block_on(sqlx::query_scalar::<_, Option<i64>>(sql).fetch_one(&self.pool))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub fn text(&self, sql: &str) -> String {
        self.rt
            .block_on(sqlx::query_scalar::<_, String>(sql).fetch_one(&self.pool))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub fn strings(&self, sql: &str) -> Vec<(String, String)> {
        self.rt
            .block_on(sqlx::query_as::<_, (String, String)>(sql).fetch_all(&self.pool))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Stages still to be worked on (scheduled or retrying) or in flight.
    pub fn open_stages(&self) -> i64 {
        self.scalar(
            "SELECT COUNT(*) FROM stages WHERE state IN ('scheduled', 'retrying', 'sending')",
        )
    }

    /// Shipment stages still to be worked on or in flight.
    pub fn open_shipments(&self) -> i64 {
        self.scalar(
            "SELECT COUNT(*) FROM stages WHERE stage = 'shipment' \
             AND state IN ('scheduled', 'retrying', 'sending')",
        )
    }

    /// When the scheduler next wants to look at an open stage.
    pub fn next_check(&self) -> Option<i64> {
        self.opt_scalar(
            "SELECT MIN(next_check_at) FROM stages WHERE state IN ('scheduled', 'retrying')",
        )
    }

    pub fn stages(&self) -> Vec<StageRec> {
        type Row = (
            String,
            String,
            String,
            String,
            Option<i64>,
            i64,
            Option<String>,
            i64,
        );
        let rows: Vec<Row> = self
            .rt
            .block_on(
                sqlx::query_as(
                    "SELECT marketplace, order_id, stage, state, next_check_at, attempts, \
                     message_id, claim_token FROM stages ORDER BY marketplace, order_id, stage",
                )
                .fetch_all(&self.pool),
            )
            .unwrap();
        rows.into_iter()
            .map(|r| StageRec {
                marketplace: r.0,
                order_id: r.1,
                stage: r.2,
                state: r.3,
                next_check_at: r.4,
                attempts: r.5,
                message_id: r.6,
                claim_token: r.7,
            })
            .collect()
    }

    pub fn log(&self) -> Vec<LogRec> {
        type Row = (
            String,
            String,
            String,
            String,
            String,
            i64,
            Option<String>,
            Option<i64>,
        );
        let rows: Vec<Row> = self
            .rt
            .block_on(
                sqlx::query_as(
                    "SELECT marketplace, order_id, stage, recipient, status, attempt, detail, \
                     message_ref FROM send_log ORDER BY id",
                )
                .fetch_all(&self.pool),
            )
            .unwrap();
        rows.into_iter()
            .map(|r| LogRec {
                marketplace: r.0,
                order_id: r.1,
                stage: r.2,
                recipient: r.3,
                status: r.4,
                attempt: r.5,
                detail: r.6,
                message_ref: r.7,
            })
            .collect()
    }

    /// Like [`Db::in_flight`], but empty while the tables do not exist yet
    /// (a process killed before its migrations ran).
    pub fn try_in_flight(&self) -> BTreeSet<InFlight> {
        let exists = self.rt.block_on(
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM stages").fetch_one(&self.pool),
        );
        match exists {
            Ok(_) => self.in_flight(),
            Err(_) => BTreeSet::new(),
        }
    }

    /// Every stage in `sending`.
    pub fn in_flight(&self) -> BTreeSet<InFlight> {
        self.stages()
            .into_iter()
            .filter(|s| s.state == "sending")
            .map(|s| {
                let message_id = s.message_id.as_deref().map(bare_id).unwrap_or_default();
                (
                    s.marketplace,
                    s.order_id,
                    s.stage,
                    s.claim_token,
                    message_id,
                )
            })
            .collect()
    }
}

/// A stage in `sending`: order key, stage, claim token and Message-ID.
pub type InFlight = (String, String, String, i64, String);

impl Drop for Db {
    fn drop(&mut self) {
        let pool = self.pool.clone();
        self.rt.block_on(pool.close());
    }
}

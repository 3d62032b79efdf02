//! The records the store reads and writes: stage rows and their changes,
//! claims, stored messages, send-log rows, and the filters and figures the
//! commands ask for.

use chrono::{DateTime, Utc};

use super::StoreError;
use crate::message::Outgoing;
use crate::order::{Order, OrderKey};
use crate::schedule::StageState;

/// The stored state of one stage.
#[derive(Debug, Clone, PartialEq)]
pub struct StageRow {
    pub stage: String,
    pub state: StageState,
    pub next_check_at: Option<DateTime<Utc>>,
    pub retry_at: Option<DateTime<Utc>>,
    pub attempts: i64,
    pub reason: Option<String>,
    pub message_id: Option<String>,
    pub updated_at: DateTime<Utc>,
    /// Who holds the stage while it is `sending`.
    pub claim_owner: Option<String>,
    /// Incremented by every claim; fences late writes.
    pub claim_token: i64,
    pub lease_until: Option<DateTime<Utc>>,
}

/// A change to a stage row, applied only if the row is still in
/// `expected` state.
#[derive(Debug, Clone)]
pub struct StageUpdate {
    pub stage: String,
    pub expected: StageState,
    pub state: StageState,
    pub next_check_at: Option<DateTime<Utc>>,
    pub retry_at: Option<DateTime<Utc>>,
    pub attempts: i64,
    pub reason: Option<String>,
    pub message_id: Option<String>,
}

/// A claim on a stage about to be sent.
#[derive(Debug, Clone)]
pub struct Claim {
    pub stage: String,
    pub expected: StageState,
    pub owner: String,
    pub lease_until: DateTime<Utc>,
    pub attempts: i64,
    pub reason: String,
    pub message_id: String,
}

/// The exact bytes of a message about to be handed to a transport, kept
/// with its claim.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub message_id: String,
    pub recipient: String,
    pub subject: String,
    pub raw: Vec<u8>,
}

impl From<&Outgoing> for NewMessage {
    fn from(message: &Outgoing) -> Self {
        Self {
            message_id: message.message_id.clone(),
            recipient: message.to.to_string(),
            subject: message.subject.clone(),
            raw: message.raw.clone(),
        }
    }
}

/// One row of the send log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub order_id: String,
    pub marketplace: String,
    pub stage: String,
    pub to: String,
    pub status: String,
    pub attempt: i64,
    pub smtp_code: Option<i64>,
    pub smtp_text: Option<String>,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub detail: Option<String>,
    pub duration_ms: Option<i64>,
    #[serde(skip)]
    pub message_ref: Option<i64>,
}

/// A send-log row to write, for the stage whose outcome it goes with.
#[derive(Debug, Clone)]
pub struct NewLogEntry {
    pub at: DateTime<Utc>,
    pub to: String,
    pub message_id: Option<String>,
    pub attempt: i64,
    pub status: StageState,
    pub smtp_code: Option<u16>,
    pub smtp_text: Option<String>,
    pub detail: Option<String>,
    pub duration_ms: Option<i64>,
    pub subject: Option<String>,
    pub message_ref: Option<i64>,
}

/// An outcome to record, fenced by the claim it was reached under, with its
/// send-log row; see [`super::Store::finish_with_log`].
#[derive(Debug, Clone)]
pub struct Finish {
    pub key: OrderKey,
    /// The claim's holder and fencing token.
    pub owner: String,
    pub token: i64,
    pub update: StageUpdate,
    pub entry: NewLogEntry,
    pub by: Reporter,
    pub at: DateTime<Utc>,
}

/// Who reports an outcome, which decides what becomes of its send-log row
/// when the claim was taken over meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporter {
    /// The claim holder, after its own send: the attempt happened, so its
    /// row is written either way.
    Sender,
    /// Someone settling a claim left behind: the row goes only with the
    /// outcome.
    Settler,
}

/// An order with its stages as read from the store (by
/// [`super::Store::due_orders`]), or why it could not be read.
#[derive(Debug)]
pub struct DueOrder {
    /// The stored key, as text (it may be what failed to decode).
    pub marketplace: String,
    pub order_id: String,
    /// The order and its stages, or why they could not be read.
    pub loaded: Result<(Order, Vec<StageRow>), StoreError>,
}

/// Filters for reading the send log.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub order_id: Option<String>,
    pub email: Option<String>,
    pub stage: Option<String>,
    pub status: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: i64,
}

/// The figures behind the daemon's one-line status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusSummary {
    pub due: i64,
    pub sent_today: i64,
    pub retrying: i64,
    pub blocked: i64,
    /// Stages whose last send is in doubt.
    pub unknown: i64,
}

impl std::fmt::Display for StatusSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "due {}, sent today {}, retrying {}, blocked {}, unknown {}",
            self.due, self.sent_today, self.retrying, self.blocked, self.unknown
        )
    }
}

/// A stored message.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub id: i64,
    pub raw: Vec<u8>,
}

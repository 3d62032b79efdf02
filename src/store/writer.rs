//! Group commit for the send path.
//!
//! Claims, outcomes with their send-log rows, and next checks are the writes
//! of every message sent. Issued one by one they cost a dozen database round
//! trips and four commits a message, and concurrent sends fight over
//! SQLite's single write lock. Instead they are queued here and applied by
//! one task on a connection of its own: whatever queued up while the previous
//! transaction was committing goes into the next one, as a handful of
//! multi-row statements whatever the batch size.
//!
//! A caller hears back only after the commit has returned, so nothing
//! outside the database (above all, a send) ever acts on a write that is not
//! durable. If a batch fails because the database refused one write's
//! contents (a constraint or a trigger), its writes are retried one
//! transaction each, so one bad write cannot fail the others. Any other
//! failure (the connection, a lock wait, a full disk) fails every write of
//! the batch with the same error: retrying them one by one would only
//! multiply the wait, and after a commit that may or may not have happened
//! a retry could not tell its own earlier success from someone else's.
//! After any error the connection is closed and a new one opened.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Connection, Row};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use super::{placeholders, to_secs, Backend, Claim, NewLogEntry, NewMessage, StageUpdate};
use crate::order::OrderKey;

/// Writes per transaction at most: bounds how long the write lock is held
/// and keeps each statement far inside both databases' parameter limits
/// (14 parameters a row at most).
const MAX_BATCH: usize = 256;

/// One write of the send path. Every write names one stage row.
#[derive(Debug)]
pub(super) enum Write {
    Claim(ClaimWrite),
    Finish(FinishWrite),
    Update(UpdateWrite),
}

/// Moves a stage to `sending` and stores the message about to go.
#[derive(Debug)]
pub(super) struct ClaimWrite {
    pub key: OrderKey,
    pub claim: Claim,
    pub message: Option<NewMessage>,
    pub at: DateTime<Utc>,
}

/// Records an outcome, fenced by the claim `(owner, token)`, with its
/// send-log row.
#[derive(Debug)]
pub(super) struct FinishWrite {
    pub key: OrderKey,
    pub owner: String,
    pub token: i64,
    pub update: StageUpdate,
    pub entry: NewLogEntry,
    /// Log even when the claim was taken over (the send did happen).
    pub log_if_fenced: bool,
    pub at: DateTime<Utc>,
}

/// Changes a stage that is still in the state it was read in.
#[derive(Debug)]
pub(super) struct UpdateWrite {
    pub key: OrderKey,
    pub update: StageUpdate,
    pub at: DateTime<Utc>,
}

impl Write {
    fn row(&self) -> RowKey {
        let (key, stage) = match self {
            Write::Claim(w) => (&w.key, &w.claim.stage),
            Write::Finish(w) => (&w.key, &w.update.stage),
            Write::Update(w) => (&w.key, &w.update.stage),
        };
        row_key(key, stage)
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Done {
    /// The claim's fencing token and the stored message's id; `None` when
    /// the stage had changed (someone else won).
    Claimed(Option<(i64, Option<i64>)>),
    /// Whether the outcome was recorded (false: the claim was taken over).
    Finished(bool),
    /// Whether the stage was still in the expected state.
    Updated(bool),
}

enum Job {
    Write(Box<Write>, oneshot::Sender<Result<Done, StoreError>>),
    Close(oneshot::Sender<()>),
}

/// The queue in front of the writing task; cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct Writer {
    jobs: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Write(w, _) => write!(f, "Write({w:?})"),
            Job::Close(_) => f.write_str("Close"),
        }
    }
}

impl Writer {
    /// Starts the writing task. It takes its connection from `pool` and keeps
    /// it for itself (the pool opens another in its place) until an error
    /// or [`Writer::close`].
    pub(super) fn start(pool: AnyPool, backend: Backend) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, backend, queue));
        Self { jobs }
    }

    /// Queues `write` and waits until it is committed.
    pub(super) async fn apply(&self, write: Write) -> Result<Done, StoreError> {
        let (reply, done) = oneshot::channel();
        self.jobs
            .send(Job::Write(Box::new(write), reply))
            .map_err(|_| StoreError::Closed)?;
        done.await.map_err(|_| StoreError::Closed)?
    }

    /// Finishes the queued writes and closes the connection.
    pub(super) async fn close(&self) {
        let (reply, done) = oneshot::channel();
        if self.jobs.send(Job::Close(reply)).is_ok() {
            let _ = done.await;
        }
    }
}

type Pending = (Box<Write>, oneshot::Sender<Result<Done, StoreError>>);

async fn run(pool: AnyPool, backend: Backend, mut queue: mpsc::UnboundedReceiver<Job>) {
    let mut conn: Option<AnyConnection> = None;
    let mut closing = None;
    while closing.is_none() {
        let Some(first) = queue.recv().await else {
            break;
        };
        let mut batch: Vec<Pending> = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Write(write, reply) => batch.push((write, reply)),
                Job::Close(reply) => {
                    closing = Some(reply);
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = queue.try_recv().ok();
            }
        }
        // A claim whose caller has gone (a stop that ran out of patience)
        // is not applied: nobody would send it, and it would only end up in
        // doubt.
        batch.retain(|(write, reply)| !(matches!(**write, Write::Claim(_)) && reply.is_closed()));
        if !batch.is_empty() {
            commit_batch(&pool, backend, &mut conn, batch).await;
        }
    }
    if let Some(c) = conn.take() {
        let _ = c.close().await;
    }
    if let Some(reply) = closing {
        let _ = reply.send(());
    }
}

/// Applies `batch` in one transaction and answers every caller. If the
/// database refused a write's contents, the writes are retried one
/// transaction each; after any other failure every caller gets the error.
async fn commit_batch(
    pool: &AnyPool,
    backend: Backend,
    conn: &mut Option<AnyConnection>,
    batch: Vec<Pending>,
) {
    let writes: Vec<&Write> = batch.iter().map(|(w, _)| w.as_ref()).collect();
    match transaction(pool, backend, conn, &writes).await {
        Ok(done) => {
            for ((_, reply), done) in batch.into_iter().zip(done) {
                let _ = reply.send(Ok(done));
            }
        }
        Err(error) if batch.len() == 1 => {
            if let Some((_, reply)) = batch.into_iter().next() {
                let _ = reply.send(Err(error));
            }
        }
        Err(error) if refused_contents(&error) => {
            tracing::debug!(%error, writes = batch.len(), "batch refused; writing one at a time");
            for (write, reply) in batch {
                let result = transaction(pool, backend, conn, &[write.as_ref()])
                    .await
                    .and_then(|done| done.into_iter().next().ok_or(StoreError::Closed));
                let _ = reply.send(result);
            }
        }
        Err(error) => {
            let text = error.to_string();
            for (_, reply) in batch {
                let _ = reply.send(Err(StoreError::Batch(text.clone())));
            }
        }
    }
}

/// Whether the database refused a statement for what it contained (a
/// constraint or a trigger), as opposed to failing to run it at all.
fn refused_contents(error: &StoreError) -> bool {
    let StoreError::Database(sqlx::Error::Database(db)) = error else {
        return false;
    };
    let code = db.code().unwrap_or_default();
    match code.parse::<i64>() {
        // SQLite: SQLITE_CONSTRAINT and its extended codes (a RAISE in a
        // trigger is SQLITE_CONSTRAINT_TRIGGER).
        Ok(sqlite_code) => sqlite_code & 0xff == 19,
        // PostgreSQL: integrity constraint violations (class 23) and errors
        // raised by PL/pgSQL (class P0).
        Err(_) => code.starts_with("23") || code.starts_with("P0"),
    }
}

/// One transaction over `writes`, on the writer's connection (opened if
/// needed). After any error the connection is closed: SQLite can leave a
/// failed connection inside a transaction that later statements would
/// silently join (see `connection_is_clean`).
async fn transaction(
    pool: &AnyPool,
    backend: Backend,
    conn: &mut Option<AnyConnection>,
    writes: &[&Write],
) -> Result<Vec<Done>, StoreError> {
    if conn.is_none() {
        *conn = Some(pool.acquire().await?.detach());
    }
    let Some(c) = conn.as_mut() else {
        return Err(StoreError::Closed);
    };
    let result = async {
        let mut tx = match backend {
            Backend::Sqlite => c.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => c.begin().await?,
        };
        let done = apply_writes(&mut tx, backend, writes).await?;
        tx.commit().await?;
        Ok(done)
    }
    .await;
    if result.is_err() {
        if let Some(c) = conn.take() {
            let _ = c.close().await;
        }
    }
    result
}

/// Applies `writes` in order. Writes to different stage rows are
/// independent, so a run of them goes in as one statement per kind; a
/// write to a row already in the run starts the next run.
async fn apply_writes(
    conn: &mut AnyConnection,
    backend: Backend,
    writes: &[&Write],
) -> Result<Vec<Done>, StoreError> {
    let mut done = vec![Done::Updated(false); writes.len()];
    let mut start = 0;
    while start < writes.len() {
        let mut rows = HashSet::new();
        let end = writes[start..]
            .iter()
            .position(|w| !rows.insert(w.row()))
            .map_or(writes.len(), |p| start + p);
        apply_run(conn, backend, &writes[start..end], &mut done[start..end]).await?;
        start = end;
    }
    Ok(done)
}

/// A stage row's identity in statement results.
type RowKey = (String, String, String);

fn row_key(key: &OrderKey, stage: &str) -> RowKey {
    (
        key.marketplace.to_string(),
        key.order_id.to_string(),
        stage.to_string(),
    )
}

fn returned_key(row: &AnyRow) -> Result<RowKey, StoreError> {
    Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
}

/// Applies writes to distinct stage rows: outcomes, then claims, then
/// other changes.
async fn apply_run(
    conn: &mut AnyConnection,
    backend: Backend,
    writes: &[&Write],
    done: &mut [Done],
) -> Result<(), StoreError> {
    let mut finishes = Vec::new();
    let mut claims = Vec::new();
    let mut updates = Vec::new();
    for (i, write) in writes.iter().enumerate() {
        match write {
            Write::Finish(w) => finishes.push((i, w)),
            Write::Claim(w) => claims.push((i, w)),
            Write::Update(w) => updates.push((i, w)),
        }
    }
    if !finishes.is_empty() {
        let recorded = finish(conn, backend, &finishes).await?;
        for &(i, _) in &finishes {
            done[i] = Done::Finished(recorded.contains(&i));
        }
    }
    if !claims.is_empty() {
        let claimed = claim(conn, backend, &claims).await?;
        for &(i, _) in &claims {
            done[i] = Done::Claimed(claimed.get(&i).copied());
        }
    }
    if !updates.is_empty() {
        let updated = update(conn, backend, &updates).await?;
        for &(i, _) in &updates {
            done[i] = Done::Updated(updated.contains(&i));
        }
    }
    Ok(())
}

/// `(VALUES (..), (..)) AS v` for `rows` rows of `columns` parameters; the
/// columns are `v.column1` and on in both databases.
fn values(backend: Backend, rows: usize, columns: usize) -> String {
    format!("(VALUES {}) AS v", value_rows(backend, rows, columns))
}

/// `(..), (..)`: `rows` rows of `columns` consecutive parameters.
fn value_rows(backend: Backend, rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", placeholders(backend, r * columns + 1, columns)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The writes of one kind, each with its place in the run.
type Indexed<'a, W> = [(usize, &'a W)];

/// Runs `query` and returns the places of the writes whose stage rows it
/// returned (as the first three columns), with the rows.
async fn returned<'q, W>(
    conn: &mut AnyConnection,
    query: Query<'q>,
    writes: &Indexed<'_, W>,
    row_of: impl Fn(&W) -> RowKey,
) -> Result<Vec<(usize, AnyRow)>, StoreError> {
    let wanted: HashMap<RowKey, usize> = writes.iter().map(|(i, w)| (row_of(w), *i)).collect();
    let mut found = Vec::new();
    for row in query.fetch_all(&mut *conn).await? {
        if let Some(&i) = wanted.get(&returned_key(&row)?) {
            found.push((i, row));
        }
    }
    Ok(found)
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Matches a stage row against `v.column1` to `v.column3` (its key).
const SAME_STAGE: &str = "stages.marketplace = v.column1 AND stages.order_id = v.column2 \
    AND stages.stage = v.column3";

/// Sets a stage from `v.column4` to `v.column9`, bound by
/// [`bind_stage_change`].
const STAGE_CHANGE: &str = "state = v.column4, next_check_at = v.column5, \
    retry_at = v.column6, attempts = v.column7, reason = v.column8, updated_at = v.column9";

/// Binds one row's key and change: the first nine columns of the row.
fn bind_stage_change<'q>(
    query: Query<'q>,
    key: &'q OrderKey,
    update: &'q StageUpdate,
    at: DateTime<Utc>,
) -> Query<'q> {
    query
        .bind(key.marketplace.as_str())
        .bind(key.order_id.as_str())
        .bind(update.stage.as_str())
        .bind(update.state.as_str())
        .bind(update.next_check_at.map(to_secs))
        .bind(update.retry_at.map(to_secs))
        .bind(update.attempts)
        .bind(update.reason.as_deref())
        .bind(to_secs(at))
}

/// The fenced outcome updates and their send-log rows. Returns the writes
/// whose outcome was recorded.
async fn finish(
    conn: &mut AnyConnection,
    backend: Backend,
    writes: &Indexed<'_, FinishWrite>,
) -> Result<HashSet<usize>, StoreError> {
    let sql = format!(
        "UPDATE stages SET {STAGE_CHANGE}, claim_owner = NULL, lease_until = NULL \
         FROM {} \
         WHERE {SAME_STAGE} AND stages.state = 'sending' \
         AND stages.claim_owner = v.column10 AND stages.claim_token = v.column11 \
         RETURNING marketplace, order_id, stage",
        values(backend, writes.len(), 11)
    );
    let mut query = sqlx::query(&sql);
    for (_, w) in writes {
        query = bind_stage_change(query, &w.key, &w.update, w.at)
            .bind(w.owner.as_str())
            .bind(w.token);
    }
    let recorded: HashSet<usize> =
        returned(conn, query, writes, |w| row_key(&w.key, &w.update.stage))
            .await?
            .into_iter()
            .map(|(i, _)| i)
            .collect();
    let logged: Vec<&FinishWrite> = writes
        .iter()
        .filter(|(i, w)| recorded.contains(i) || w.log_if_fenced)
        .map(|(_, w)| *w)
        .collect();
    insert_logs(conn, backend, &logged).await?;
    Ok(recorded)
}

/// The send-log rows of outcomes, in one statement.
async fn insert_logs(
    conn: &mut AnyConnection,
    backend: Backend,
    writes: &[&FinishWrite],
) -> Result<(), StoreError> {
    if writes.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO send_log (at, marketplace, order_id, stage, recipient, message_id, attempt, \
         status, smtp_code, smtp_text, detail, duration_ms, subject, message_ref) VALUES {}",
        value_rows(backend, writes.len(), 14)
    );
    let mut query = sqlx::query(&sql);
    for w in writes {
        let entry = &w.entry;
        query = query
            .bind(to_secs(entry.at))
            .bind(w.key.marketplace.as_str())
            .bind(w.key.order_id.as_str())
            .bind(w.update.stage.as_str())
            .bind(entry.to.as_str())
            .bind(entry.message_id.as_deref())
            .bind(entry.attempt)
            .bind(entry.status.as_str())
            .bind(entry.smtp_code.map(i64::from))
            .bind(entry.smtp_text.as_deref())
            .bind(entry.detail.as_deref())
            .bind(entry.duration_ms)
            .bind(entry.subject.as_deref())
            .bind(entry.message_ref);
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

/// The claims, then the messages of those won. Returns each won claim's
/// token and message id.
async fn claim(
    conn: &mut AnyConnection,
    backend: Backend,
    writes: &Indexed<'_, ClaimWrite>,
) -> Result<HashMap<usize, (i64, Option<i64>)>, StoreError> {
    let sql = format!(
        "UPDATE stages SET state = 'sending', claim_owner = v.column5, \
         claim_token = claim_token + 1, lease_until = v.column6, attempts = v.column7, \
         reason = v.column8, message_id = v.column9, next_check_at = NULL, updated_at = v.column10 \
         FROM {} \
         WHERE {SAME_STAGE} AND stages.state = v.column4 \
         RETURNING marketplace, order_id, stage, claim_token",
        values(backend, writes.len(), 10)
    );
    let mut query = sqlx::query(&sql);
    for (_, w) in writes {
        query = query
            .bind(w.key.marketplace.as_str())
            .bind(w.key.order_id.as_str())
            .bind(w.claim.stage.as_str())
            .bind(w.claim.expected.as_str())
            .bind(w.claim.owner.as_str())
            .bind(to_secs(w.claim.lease_until))
            .bind(w.claim.attempts)
            .bind(w.claim.reason.as_str())
            .bind(w.claim.message_id.as_str())
            .bind(to_secs(w.at));
    }
    let row_of = |w: &ClaimWrite| row_key(&w.key, &w.claim.stage);
    let mut won: HashMap<usize, (i64, Option<i64>)> = HashMap::new();
    for (i, row) in returned(conn, query, writes, row_of).await? {
        won.insert(i, (row.try_get(3)?, None));
    }
    let with_message: Vec<(usize, &ClaimWrite, &NewMessage)> = writes
        .iter()
        .filter(|(i, _)| won.contains_key(i))
        .filter_map(|(i, w)| w.message.as_ref().map(|m| (*i, *w, m)))
        .collect();
    if with_message.is_empty() {
        return Ok(won);
    }
    let sql = format!(
        "INSERT INTO messages (marketplace, order_id, stage, message_id, recipient, subject, raw, \
         created_at) VALUES {} RETURNING marketplace, order_id, stage, id",
        value_rows(backend, with_message.len(), 8)
    );
    let mut query = sqlx::query(&sql);
    for (_, w, message) in &with_message {
        query = query
            .bind(w.key.marketplace.as_str())
            .bind(w.key.order_id.as_str())
            .bind(w.claim.stage.as_str())
            .bind(message.message_id.as_str())
            .bind(message.recipient.as_str())
            .bind(message.subject.as_str())
            .bind(message.raw.as_slice())
            .bind(to_secs(w.at));
    }
    let stored: Vec<(usize, &ClaimWrite)> = with_message.iter().map(|(i, w, _)| (*i, *w)).collect();
    for (i, row) in returned(conn, query, &stored, row_of).await? {
        if let Some(entry) = won.get_mut(&i) {
            entry.1 = Some(row.try_get(3)?);
        }
    }
    Ok(won)
}

/// Stage changes guarded by the state they were read in. Returns the
/// writes that applied.
async fn update(
    conn: &mut AnyConnection,
    backend: Backend,
    writes: &Indexed<'_, UpdateWrite>,
) -> Result<HashSet<usize>, StoreError> {
    let sql = format!(
        "UPDATE stages SET {STAGE_CHANGE}, \
         message_id = COALESCE(v.column11, stages.message_id) \
         FROM {} \
         WHERE {SAME_STAGE} AND stages.state = v.column10 \
         RETURNING marketplace, order_id, stage",
        values(backend, writes.len(), 11)
    );
    let mut query = sqlx::query(&sql);
    for (_, w) in writes {
        query = bind_stage_change(query, &w.key, &w.update, w.at)
            .bind(w.update.expected.as_str())
            .bind(w.update.message_id.as_deref());
    }
    Ok(
        returned(conn, query, writes, |w| row_key(&w.key, &w.update.stage))
            .await?
            .into_iter()
            .map(|(i, _)| i)
            .collect(),
    )
}

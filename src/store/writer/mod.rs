//! Group commit for the send path.
//!
//! Claims, outcomes with their send-log rows, and next checks are the writes
//! of every message sent. Issued one by one they cost a dozen database round
//! trips and four commits a message, and concurrent sends fight over
//! SQLite's single write lock. Instead they are queued here and applied by
//! one writer on a connection of its own (a thread of its own on a SQLite
//! file, see `connection.rs`): whatever queued up while the previous
//! transaction was committing goes into the next one, as a handful of
//! multi-row statements whatever the batch size (`statements.rs`).
//!
//! On PostgreSQL claims are committed by a second writer, on a connection of
//! their own. An SMTP session waits for its claim before the message, and each
//! commit waits for a WAL flush: behind one writer, a claim that arrived
//! while other sends' outcomes were flushing waited for that flush and then
//! its own. PostgreSQL takes both writers' commits at once (and may flush
//! them together). A claim and the writes that follow it for the same stage
//! never race: the engine only issues those once the claim is committed,
//! and it never claims a stage while a write of its own to that stage is
//! still queued. SQLite takes one writer at a time, so there all writes
//! share one.
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

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, AnyPool};
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::Checkpointer;
use super::StoreError;
use super::{Backend, Claim, Finish, NewMessage, StageUpdate};
use crate::order::OrderKey;
use connection::{SqliteFile, WriteConnection};
use statements::apply_writes;

pub(super) use connection::{bind_param, Param};

mod connection;
mod statements;

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

/// Records an outcome, fenced by its claim, with its send-log row.
pub(super) type FinishWrite = Finish;

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
    /// On PostgreSQL claims have a writer of their own (see [`Writer::start`]).
    claims: Option<mpsc::UnboundedSender<Job>>,
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
    /// Starts the writer. On a SQLite file it runs on a thread of its own
    /// with its own connection; otherwise it is a task that takes a
    /// connection from `pool` and keeps it (the pool opens another in its
    /// place), and on PostgreSQL a second such task for claims. Either way
    /// the connections are kept until an error or [`Writer::close`], which
    /// also stops `checkpointer`.
    pub(super) fn start(
        pool: AnyPool,
        backend: Backend,
        sqlite_file: Option<PathBuf>,
        checkpointer: Option<Checkpointer>,
    ) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        match sqlite_file {
            Some(path) => {
                let file = SqliteFile { path, checkpointer };
                let committer = Committer::<rusqlite::Connection>::new(file, backend);
                let spawned = std::thread::Builder::new()
                    .name("followupd-writer".into())
                    .spawn(move || {
                        // The thread's own runtime only waits for the queue;
                        // every statement runs right here, on this thread.
                        match tokio::runtime::Builder::new_current_thread().build() {
                            Ok(runtime) => runtime.block_on(run(committer, queue)),
                            Err(error) => {
                                tracing::error!(%error, "cannot start the database writer")
                            }
                        }
                    });
                if let Err(error) = spawned {
                    // The queue is dropped with the closure: every write
                    // is answered `Closed`.
                    tracing::error!(%error, "cannot start the database writer thread");
                }
            }
            None => {
                tokio::spawn(run(
                    Committer::<AnyConnection>::new(pool.clone(), backend),
                    queue,
                ));
            }
        }
        let claims = (backend == Backend::Postgres).then(|| {
            let (claims, queue) = mpsc::unbounded_channel();
            tokio::spawn(run(Committer::<AnyConnection>::new(pool, backend), queue));
            claims
        });
        Self { jobs, claims }
    }

    /// Queues `write` and waits until it is committed.
    pub(super) async fn apply(&self, write: Write) -> Result<Done, StoreError> {
        let (reply, done) = oneshot::channel();
        let queue = match (&write, &self.claims) {
            (Write::Claim(_), Some(claims)) => claims,
            _ => &self.jobs,
        };
        queue
            .send(Job::Write(Box::new(write), reply))
            .map_err(|_| StoreError::Closed)?;
        done.await.map_err(|_| StoreError::Closed)?
    }

    /// Finishes the queued writes and closes the connections: the claims'
    /// first, so no claim is committed once the writes that would record
    /// its outcome are refused.
    pub(super) async fn close(&self) {
        for queue in self.claims.iter().chain(std::iter::once(&self.jobs)) {
            let (reply, done) = oneshot::channel();
            if queue.send(Job::Close(reply)).is_ok() {
                let _ = done.await;
            }
        }
    }
}

type Pending = (Box<Write>, oneshot::Sender<Result<Done, StoreError>>);

async fn run<C: WriteConnection>(
    mut committer: Committer<C>,
    mut queue: mpsc::UnboundedReceiver<Job>,
) {
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
            committer.commit_batch(batch).await;
        }
    }
    committer.disconnect().await;
    C::stop(&mut committer.source);
    if let Some(reply) = closing {
        let _ = reply.send(());
    }
}

/// The writer's connection, opened when first needed and again after an
/// error.
struct Committer<C: WriteConnection> {
    source: C::Source,
    backend: Backend,
    conn: Option<C>,
}

impl<C: WriteConnection> Committer<C> {
    fn new(source: C::Source, backend: Backend) -> Self {
        Self {
            source,
            backend,
            conn: None,
        }
    }

    /// Applies `batch` in one transaction and answers every caller. If the
    /// database refused a write's contents, the writes are retried one
    /// transaction each; after any other failure every caller gets the
    /// error.
    async fn commit_batch(&mut self, batch: Vec<Pending>) {
        let writes: Vec<&Write> = batch.iter().map(|(w, _)| w.as_ref()).collect();
        let mut result = self.transaction(&writes).await;
        for _ in 0..CONFLICT_RETRIES {
            match &result {
                Err(error) if lost_a_conflict(error) => {
                    tracing::debug!(%error, writes = writes.len(), "batch rolled back by a lock conflict; trying again");
                    result = self.transaction(&writes).await;
                }
                _ => break,
            }
        }
        match result {
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
                    let result = self
                        .transaction(&[write.as_ref()])
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

    /// One transaction over `writes`, on the writer's connection (opened if
    /// needed). After any error the connection is closed: SQLite can leave
    /// a failed connection inside a transaction that later statements
    /// would silently join (see `connection_is_clean`).
    async fn transaction(&mut self, writes: &[&Write]) -> Result<Vec<Done>, StoreError> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            none => none.insert(C::open(&self.source).await?),
        };
        let result = async {
            // SQLite: take the write lock at once rather than on the first
            // write, which could fail instead of waiting.
            let begin = match self.backend {
                Backend::Sqlite => "BEGIN IMMEDIATE",
                Backend::Postgres => "BEGIN",
            };
            conn.run(begin, &[]).await?;
            let done = apply_writes(conn, self.backend, writes).await?;
            conn.run("COMMIT", &[]).await?;
            C::committed(&self.source);
            Ok(done)
        }
        .await;
        if result.is_err() {
            self.disconnect().await;
        }
        result
    }

    async fn disconnect(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
    }
}

/// How many times a batch that lost a lock conflict is tried again.
const CONFLICT_RETRIES: usize = 3;

/// Whether PostgreSQL rolled the transaction back to resolve a lock
/// conflict (a deadlock, for example with the lease renewal, which updates
/// the same `sending` rows in another order) or a serialization failure.
/// Nothing of it was committed, so it can simply be run again; failing it
/// instead would leave the outcomes of sends that did happen unrecorded.
fn lost_a_conflict(error: &StoreError) -> bool {
    match error {
        StoreError::Database(sqlx::Error::Database(db)) => {
            matches!(db.code().as_deref(), Some("40P01" | "40001"))
        }
        _ => false,
    }
}

/// Whether the database refused a statement for what it contained (a
/// constraint or a trigger), as opposed to failing to run it at all.
fn refused_contents(error: &StoreError) -> bool {
    match error {
        StoreError::Database(sqlx::Error::Database(db)) => {
            let code = db.code().unwrap_or_default();
            match code.parse::<i64>() {
                // SQLite: SQLITE_CONSTRAINT and its extended codes (a RAISE
                // in a trigger is SQLITE_CONSTRAINT_TRIGGER).
                Ok(sqlite_code) => sqlite_code & 0xff == 19,
                // PostgreSQL: integrity constraint violations (class 23)
                // and errors raised by PL/pgSQL (class P0).
                Err(_) => code.starts_with("23") || code.starts_with("P0"),
            }
        }
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, _)) => {
            failure.code == rusqlite::ErrorCode::ConstraintViolation
        }
        _ => false,
    }
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

//! The statements of a group commit: each kind of write goes in as one
//! multi-row statement, whatever the batch size.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::connection::{Param, Returned, WriteConnection};
use super::{row_key, ClaimWrite, Done, FinishWrite, RowKey, UpdateWrite, Write};
use crate::order::OrderKey;
use crate::store::{placeholders, to_secs, Backend, NewMessage, Reporter, StageUpdate, StoreError};

/// Applies `writes` in order. Writes to different stage rows are
/// independent, so a run of them goes in as one statement per kind; a
/// write to a row already in the run starts the next run.
pub(super) async fn apply_writes<C: WriteConnection>(
    conn: &mut C,
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

/// Applies writes to distinct stage rows: outcomes, then claims, then
/// other changes.
async fn apply_run<C: WriteConnection>(
    conn: &mut C,
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

/// Runs `sql` and returns the places of the writes whose stage rows it
/// returned (as the first three columns), with what else it returned.
async fn returned<C: WriteConnection, W>(
    conn: &mut C,
    sql: &str,
    params: &[Param<'_>],
    writes: &Indexed<'_, W>,
    row_of: impl Fn(&W) -> RowKey,
) -> Result<Vec<(usize, Returned)>, StoreError> {
    let wanted: HashMap<RowKey, usize> = writes.iter().map(|(i, w)| (row_of(w), *i)).collect();
    Ok(conn
        .run(sql, params)
        .await?
        .into_iter()
        .filter_map(|row| wanted.get(&row.key).map(|&i| (i, row)))
        .collect())
}

/// Runs `sql` and returns the places of the writes whose stage rows it
/// returned.
async fn touched<C: WriteConnection, W>(
    conn: &mut C,
    sql: &str,
    params: &[Param<'_>],
    writes: &Indexed<'_, W>,
    row_of: impl Fn(&W) -> RowKey,
) -> Result<HashSet<usize>, StoreError> {
    Ok(returned(conn, sql, params, writes, row_of)
        .await?
        .into_iter()
        .map(|(i, _)| i)
        .collect())
}

/// Matches a stage row against `v.column1` to `v.column3` (its key).
const SAME_STAGE: &str = "stages.marketplace = v.column1 AND stages.order_id = v.column2 \
    AND stages.stage = v.column3";

/// Sets a stage from `v.column4` to `v.column9`, bound by
/// [`stage_change_params`].
const STAGE_CHANGE: &str = "state = v.column4, next_check_at = v.column5, \
    retry_at = v.column6, attempts = v.column7, reason = v.column8, updated_at = v.column9";

/// One row's key and change: the first nine columns of the row.
fn stage_change_params<'a>(
    key: &'a OrderKey,
    update: &'a StageUpdate,
    at: DateTime<Utc>,
) -> [Param<'a>; 9] {
    [
        Param::Text(Some(key.marketplace.as_str())),
        Param::Text(Some(key.order_id.as_str())),
        Param::Text(Some(update.stage.as_str())),
        Param::Text(Some(update.state.as_str())),
        Param::Int(update.next_check_at.map(to_secs)),
        Param::Int(update.retry_at.map(to_secs)),
        Param::Int(Some(update.attempts)),
        Param::Text(update.reason.as_deref()),
        Param::Int(Some(to_secs(at))),
    ]
}

/// The fenced outcome updates and their send-log rows. Returns the writes
/// whose outcome was recorded.
async fn finish<C: WriteConnection>(
    conn: &mut C,
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
    let mut params = Vec::with_capacity(writes.len() * 11);
    for (_, w) in writes {
        params.extend(stage_change_params(&w.key, &w.update, w.at));
        params.push(Param::Text(Some(w.owner.as_str())));
        params.push(Param::Int(Some(w.token)));
    }
    let recorded = touched(conn, &sql, &params, writes, |w| {
        row_key(&w.key, &w.update.stage)
    })
    .await?;
    let logged: Vec<&FinishWrite> = writes
        .iter()
        .filter(|(i, w)| recorded.contains(i) || w.by == Reporter::Sender)
        .map(|(_, w)| *w)
        .collect();
    insert_logs(conn, backend, &logged).await?;
    Ok(recorded)
}

/// The send-log rows of outcomes, in one statement.
async fn insert_logs<C: WriteConnection>(
    conn: &mut C,
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
    let mut params = Vec::with_capacity(writes.len() * 14);
    for w in writes {
        let entry = &w.entry;
        params.extend([
            Param::Int(Some(to_secs(entry.at))),
            Param::Text(Some(w.key.marketplace.as_str())),
            Param::Text(Some(w.key.order_id.as_str())),
            Param::Text(Some(w.update.stage.as_str())),
            Param::Text(Some(entry.to.as_str())),
            Param::Text(entry.message_id.as_deref()),
            Param::Int(Some(entry.attempt)),
            Param::Text(Some(entry.status.as_str())),
            Param::Int(entry.smtp_code.map(i64::from)),
            Param::Text(entry.smtp_text.as_deref()),
            Param::Text(entry.detail.as_deref()),
            Param::Int(entry.duration_ms),
            Param::Text(entry.subject.as_deref()),
            Param::Int(entry.message_ref),
        ]);
    }
    conn.run(&sql, &params).await?;
    Ok(())
}

/// The claims, then the messages of those won. Returns each won claim's
/// token and message id.
async fn claim<C: WriteConnection>(
    conn: &mut C,
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
    let mut params = Vec::with_capacity(writes.len() * 10);
    for (_, w) in writes {
        params.extend([
            Param::Text(Some(w.key.marketplace.as_str())),
            Param::Text(Some(w.key.order_id.as_str())),
            Param::Text(Some(w.claim.stage.as_str())),
            Param::Text(Some(w.claim.expected.as_str())),
            Param::Text(Some(w.claim.owner.as_str())),
            Param::Int(Some(to_secs(w.claim.lease_until))),
            Param::Int(Some(w.claim.attempts)),
            Param::Text(Some(w.claim.reason.as_str())),
            Param::Text(Some(w.claim.message_id.as_str())),
            Param::Int(Some(to_secs(w.at))),
        ]);
    }
    let row_of = |w: &ClaimWrite| row_key(&w.key, &w.claim.stage);
    let mut won: HashMap<usize, (i64, Option<i64>)> = HashMap::new();
    for (i, row) in returned(conn, &sql, &params, writes, row_of).await? {
        won.insert(i, (number(&row)?, None));
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
    let mut params = Vec::with_capacity(with_message.len() * 8);
    for (_, w, message) in &with_message {
        params.extend([
            Param::Text(Some(w.key.marketplace.as_str())),
            Param::Text(Some(w.key.order_id.as_str())),
            Param::Text(Some(w.claim.stage.as_str())),
            Param::Text(Some(message.message_id.as_str())),
            Param::Text(Some(message.recipient.as_str())),
            Param::Text(Some(message.subject.as_str())),
            Param::Blob(message.raw.as_slice()),
            Param::Int(Some(to_secs(w.at))),
        ]);
    }
    let stored: Vec<(usize, &ClaimWrite)> = with_message.iter().map(|(i, w, _)| (*i, *w)).collect();
    for (i, row) in returned(conn, &sql, &params, &stored, row_of).await? {
        if let Some(entry) = won.get_mut(&i) {
            entry.1 = Some(number(&row)?);
        }
    }
    Ok(won)
}

/// Stage changes guarded by the state they were read in. Returns the
/// writes that applied.
async fn update<C: WriteConnection>(
    conn: &mut C,
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
    let mut params = Vec::with_capacity(writes.len() * 11);
    for (_, w) in writes {
        params.extend(stage_change_params(&w.key, &w.update, w.at));
        params.push(Param::Text(Some(w.update.expected.as_str())));
        params.push(Param::Text(w.update.message_id.as_deref()));
    }
    touched(conn, &sql, &params, writes, |w| {
        row_key(&w.key, &w.update.stage)
    })
    .await
}

/// The fourth column of a returned row, which the statement asked for.
fn number(row: &Returned) -> Result<i64, StoreError> {
    row.number.ok_or_else(|| {
        StoreError::Batch(format!(
            "no number returned for stage {}/{}/{}",
            row.key.0, row.key.1, row.key.2
        ))
    })
}

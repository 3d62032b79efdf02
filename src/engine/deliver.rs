//! The delivery of one stage, as four steps whose types say how far it got:
//!
//! 1. [`Composed`]: the message rendered, linted and built (or why not).
//!    Nothing is written yet.
//! 2. [`Claimed`]: the stage moved to `sending` under this process's claim,
//!    with the message's exact bytes stored. **Durable before anything
//!    leaves**: the transport may connect and send the envelope meanwhile,
//!    but the message itself is released only once the claim has committed.
//! 3. [`Outcome`]: what the server said (or why nothing was sent), classified
//!    into the stage's next state.
//! 4. Recorded: the outcome and its send-log row written together, fenced
//!    by the claim. **Durable before the stage counts as settled.**
//!
//! A crash between 2 and 4 leaves a claim whose lease runs out;
//! [`Engine::recover_in_flight`] settles it as in doubt (step 4 for someone
//! else's claim), never as sent or as not sent.

use std::time::Instant;

use chrono::{DateTime, Utc};

use super::compose::{ComposeError, Preview};
use super::{Engine, EngineError, TickControl};
use crate::message::{self, Outgoing};
use crate::order::{Order, OrderKey};
use crate::schedule::{self, StageSpec, StageState};
use crate::store::{
    Claim, Finish, NewLogEntry, NewMessage, Reporter, StageRow, StageUpdate, StoreError,
};
use crate::transport::SendError;

/// The reason (and log note) of a stage re-sent after an in-doubt attempt.
pub(super) const IN_DOUBT_RESEND: &str = "re-send of an in-doubt attempt (on_unknown = resend)";

/// One attempt at a stage: what it is for, and which try it is.
struct Attempt<'a> {
    order: &'a Order,
    spec: &'a StageSpec,
    row: &'a StageRow,
    /// 1 for the first try.
    number: i64,
    /// For the send log: a manual or in-doubt re-send says so.
    note: Option<&'a str>,
    now: DateTime<Utc>,
}

/// Step 1: the message, or why it could not be composed; its Message-ID
/// either way (the claim and the log row name it).
struct Composed {
    message_id: String,
    preview: Result<Preview, ComposeError>,
}

impl Composed {
    /// The message to transmit: composed, and clean of forbidden words and
    /// policy violations.
    fn sendable(&self) -> Option<&Outgoing> {
        self.preview
            .as_ref()
            .ok()
            .filter(|p| p.is_clean())
            .map(|p| &p.outgoing)
    }

    /// The bytes kept with the claim (also for a blocked message, so the
    /// log can show what was refused).
    fn stored(&self) -> Option<NewMessage> {
        self.preview
            .as_ref()
            .ok()
            .map(|p| NewMessage::from(&p.outgoing))
    }

    /// The outcome when there is nothing to send: a template or recipient
    /// problem, or a lint hit. Sending again cannot fix either.
    fn refusal(&self, key: &OrderKey, stage: &str) -> Option<Outcome> {
        match &self.preview {
            Err(e) => {
                let state = match e {
                    ComposeError::Message(_) => StageState::Failed,
                    ComposeError::Render(_) => StageState::Blocked,
                };
                tracing::warn!(order = %key, stage, outcome = %state, error = %e, "message not composed");
                Some(Outcome::without_reply(state, e.to_string()))
            }
            Ok(preview) if !preview.is_clean() => {
                let detail = preview.problems().join("; ");
                tracing::warn!(order = %key, stage, outcome = "blocked", findings = %detail, "message blocked by the lint");
                Some(Outcome::without_reply(StageState::Blocked, detail))
            }
            Ok(_) => None,
        }
    }
}

/// Step 2: a committed claim on the stage, with the stored message.
struct Claimed {
    /// The fencing token the outcome is recorded under.
    token: i64,
    message_ref: Option<i64>,
}

/// Step 3: where an attempt (or a decision) leaves a stage, and what the
/// send log says about it.
pub(super) struct Outcome {
    pub state: StageState,
    /// The state the send log reports: the same, except for an in-doubt
    /// send that is to be tried once more (logged `unknown`, now
    /// `retrying`).
    logged: StageState,
    pub next_check_at: Option<DateTime<Utc>>,
    pub retry_at: Option<DateTime<Utc>>,
    /// For the stage row.
    pub reason: String,
    code: Option<u16>,
    /// The server's reply text.
    reply: Option<String>,
    /// For the send log, when there was no reply (lint findings, errors).
    detail: Option<String>,
    duration_ms: Option<i64>,
}

impl Outcome {
    /// A scheduling decision that sends nothing: a next check, a skip, an
    /// expiry. The retry time stays as it was.
    pub(super) fn decided(
        row: &StageRow,
        state: StageState,
        reason: String,
        next_check_at: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            next_check_at,
            retry_at: row.retry_at,
            ..Self::without_reply(state, reason)
        }
    }

    /// An attempt that ended before reaching the transport.
    fn without_reply(state: StageState, detail: String) -> Self {
        Self {
            state,
            logged: state,
            next_check_at: None,
            retry_at: None,
            reason: detail.clone(),
            code: None,
            reply: None,
            detail: Some(detail),
            duration_ms: None,
        }
    }

    /// Tried again after `at`: the next check is the retry time.
    fn retry_at(self, at: Option<DateTime<Utc>>) -> Self {
        Self {
            next_check_at: at,
            retry_at: at,
            ..self
        }
    }

    /// The stage row's change: the one place a [`StageUpdate`] is written.
    pub(super) fn stage_update(
        &self,
        stage: &str,
        expected: StageState,
        attempts: i64,
    ) -> StageUpdate {
        StageUpdate {
            stage: stage.to_string(),
            expected,
            state: self.state,
            next_check_at: self.next_check_at,
            retry_at: self.retry_at,
            attempts,
            reason: Some(self.reason.clone()),
            message_id: None,
        }
    }
}

/// An attempt as its records name it: the stage, the claim it was made
/// under, and what its send-log row says besides the outcome.
struct Attempted {
    key: OrderKey,
    stage: String,
    owner: String,
    token: i64,
    by: Reporter,
    to: String,
    message_id: Option<String>,
    attempt: i64,
    subject: Option<String>,
    message_ref: Option<i64>,
    note: Option<String>,
    at: DateTime<Utc>,
}

impl Attempted {
    /// Step 4's write: the outcome (from `sending`) and its log row, the one
    /// place a [`NewLogEntry`] is written.
    fn finish(self, outcome: &Outcome) -> Finish {
        Finish {
            update: outcome.stage_update(&self.stage, StageState::Sending, self.attempt),
            entry: NewLogEntry {
                at: self.at,
                to: self.to,
                message_id: self.message_id,
                attempt: self.attempt,
                status: outcome.logged,
                smtp_code: outcome.code,
                smtp_text: outcome.reply.clone(),
                detail: outcome.detail.clone().or(self.note),
                duration_ms: outcome.duration_ms,
                subject: self.subject,
                message_ref: self.message_ref,
            },
            key: self.key,
            owner: self.owner,
            token: self.token,
            by: self.by,
            at: self.at,
        }
    }
}

impl Engine {
    /// Composes, lints, claims and sends one stage, recording every step.
    /// `note` goes into the send log (a manual or in-doubt re-send says so).
    ///
    /// Two writes per message: the claim together with the stored message
    /// (so even a send that ends in doubt leaves its exact bytes behind),
    /// then the send-log row together with the outcome. Each commits (in a
    /// transaction shared with other sends) before the next step starts.
    ///
    /// A send slot is held from before the claim until the transport is done,
    /// and the rate limits are waited for before the claim too, so no more
    /// stages are ever claimed and not yet handed over than the transport
    /// has sessions: a crash leaves in doubt only messages that were on
    /// their way, never ones waiting for a connection or for the limits.
    pub(super) async fn deliver(
        &self,
        order: &Order,
        spec: &StageSpec,
        row: &StageRow,
        now: DateTime<Utc>,
        note: Option<&str>,
        control: &TickControl,
    ) -> Result<StageState, EngineError> {
        let attempt = Attempt {
            order,
            spec,
            row,
            number: row.attempts + 1,
            note,
            now,
        };
        let composed = self.composed(&attempt).await;
        let slot = self
            .send_slots
            .acquire()
            .await
            .map_err(|_| EngineError::Store(StoreError::Closed))?;
        if composed.sendable().is_some() {
            self.transport.pace().await;
        }
        if control.stopping() {
            // Asked to stop while waiting: this send never started.
            return Ok(row.state);
        }
        let (claimed, sent) = self.claim_and_send(&attempt, &composed).await;
        let Some(claimed) = claimed? else {
            return Ok(row.state);
        };
        // If the database fails from here on the claim is left to run out,
        // so the send is settled as in doubt rather than guessed.
        let outcome = composed
            .refusal(&order.key, &spec.name)
            .or(sent)
            .unwrap_or_else(|| {
                Outcome::without_reply(StageState::Failed, "the message was not sent".into())
            });
        drop(slot);
        let outcome = self.after_doubt(&attempt, outcome);
        self.record(&attempt, composed, claimed, outcome).await
    }

    /// Step 1: composes the message on a worker thread; a message that
    /// cannot be composed still gets its Message-ID.
    async fn composed(&self, attempt: &Attempt<'_>) -> Composed {
        let key = &attempt.order.key;
        let preview = self
            .compose_in_worker(attempt.order, &attempt.spec.name, attempt.now)
            .await;
        let message_id = match &preview {
            Ok(preview) => preview.outgoing.message_id.clone(),
            Err(_) => {
                let sender = self.config.sender_for(key.marketplace.as_str());
                message::message_id(key, &attempt.spec.name, sender.from.email.domain())
            }
        };
        Composed {
            message_id,
            preview,
        }
    }

    /// Steps 2 and 3: claims the stage and, if there is a message to send,
    /// hands it to the transport at the same time. The claim commits while
    /// the transport connects and sends the envelope; the message itself is
    /// only released once the claim is durable (and never if it was lost).
    ///
    /// Only the claim holder sends, so two instances never both send a
    /// stage. If this process dies during the send, the claim's lease runs
    /// out and whoever finds it knows the outcome is in doubt.
    async fn claim_and_send(
        &self,
        attempt: &Attempt<'_>,
        composed: &Composed,
    ) -> (Result<Option<Claimed>, StoreError>, Option<Outcome>) {
        // Leases are about live processes, so they run on the wall clock.
        let lease_until = Utc::now()
            + chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::MAX);
        let claim = Claim {
            stage: attempt.spec.name.clone(),
            expected: attempt.row.state,
            owner: self.owner.clone(),
            lease_until,
            attempts: attempt.number,
            reason: attempt
                .note
                .unwrap_or("handed to the transport")
                .to_string(),
            message_id: composed.message_id.clone(),
        };
        let (release, released) = tokio::sync::oneshot::channel::<bool>();
        let claiming = async {
            let claimed = self
                .store
                .claim_and_store(&attempt.order.key, claim, composed.stored(), attempt.now)
                .await;
            let _ = release.send(matches!(claimed, Ok(Some(_))));
            claimed.map(|c| c.map(|(token, message_ref)| Claimed { token, message_ref }))
        };
        let sending = async {
            let out = composed.sendable()?;
            let go = async { released.await.unwrap_or(false) };
            Some(self.send(out, attempt.number, attempt.now, go).await)
        };
        tokio::join!(claiming, sending)
    }

    /// A stage that chose at-least-once delivery is tried once more after an
    /// in-doubt attempt (the log row still says `unknown`).
    fn after_doubt(&self, attempt: &Attempt<'_>, outcome: Outcome) -> Outcome {
        if outcome.state != StageState::Unknown
            || attempt.spec.on_unknown != schedule::OnUnknown::Resend
            || attempt.note == Some(IN_DOUBT_RESEND)
        {
            return outcome;
        }
        let number = u32::try_from(attempt.number).unwrap_or(u32::MAX);
        let retry_at = attempt.now + self.config.retry.delay(number, fastrand::f64());
        let reason = format!(
            "{}; will be sent once more (on_unknown = resend)",
            outcome
                .reply
                .as_deref()
                .unwrap_or("no reply after the message")
        );
        Outcome {
            state: StageState::Retrying,
            reason,
            ..outcome
        }
        .retry_at(Some(retry_at))
    }

    /// Step 4: writes the outcome with its send-log row, fenced by the
    /// claim. Returns the stage's new state.
    async fn record(
        &self,
        attempt: &Attempt<'_>,
        composed: Composed,
        claimed: Claimed,
        outcome: Outcome,
    ) -> Result<StageState, EngineError> {
        let key = &attempt.order.key;
        let attempted = Attempted {
            key: key.clone(),
            stage: attempt.spec.name.clone(),
            owner: self.owner.clone(),
            token: claimed.token,
            by: Reporter::Sender,
            to: attempt.order.buyer_email.as_str().to_string(),
            message_id: Some(composed.message_id),
            attempt: attempt.number,
            subject: composed.preview.ok().map(|p| p.outgoing.subject),
            message_ref: claimed.message_ref,
            note: attempt.note.map(str::to_string),
            at: attempt.now,
        };
        let recorded = self
            .store
            .finish_with_log(attempted.finish(&outcome))
            .await?;
        if !recorded {
            // Our lease ran out (the process was paused or cut off) and
            // another instance settled the stage: its record stands.
            tracing::warn!(order = %key, stage = %attempt.spec.name, outcome = %outcome.state, "late result ignored: the claim was taken over");
            return Ok(StageState::Unknown);
        }
        Ok(outcome.state)
    }

    /// Hands one message to the transport, to be transmitted once `release`
    /// says so, and classifies the result.
    async fn send(
        &self,
        out: &Outgoing,
        attempt: i64,
        now: DateTime<Utc>,
        release: impl std::future::Future<Output = bool>,
    ) -> Outcome {
        let started = Instant::now();
        let result = self.transport.send(out, release).await;
        let duration_ms = Some(started.elapsed().as_millis() as i64);
        let (state, retry_at, reason) = match &result {
            Ok(_) => (
                StageState::Sent,
                None,
                format!("sent at {}", now.to_rfc3339()),
            ),
            Err(e @ (SendError::Transient { .. } | SendError::Withheld))
                if attempt < i64::from(self.config.retry.max_attempts) =>
            {
                let attempt_number = u32::try_from(attempt).unwrap_or(u32::MAX);
                let retry_at = now + self.config.retry.delay(attempt_number, fastrand::f64());
                (
                    StageState::Retrying,
                    Some(retry_at),
                    format!("attempt {attempt} failed: {}", e.text()),
                )
            }
            Err(e @ (SendError::Transient { .. } | SendError::Withheld)) => (
                StageState::Failed,
                None,
                format!("gave up after {attempt} attempts: {e}"),
            ),
            Err(e @ SendError::Permanent { .. }) => (StageState::Failed, None, e.to_string()),
            Err(e @ SendError::InDoubt { .. }) => (
                StageState::Unknown,
                None,
                format!("{e}; not re-sent automatically"),
            ),
        };
        let (code, reply) = match &result {
            Ok(receipt) => (receipt.code, receipt.text.clone()),
            Err(e) => (e.code(), e.text().to_string()),
        };
        tracing::info!(order = %out.message_id, outcome = %state, attempt, smtp_code = ?code, "send attempt finished");
        Outcome {
            state,
            logged: state,
            next_check_at: retry_at,
            retry_at,
            reason,
            code,
            reply: Some(reply),
            detail: None,
            duration_ms,
        }
    }

    /// Settles stages left in `sending` by a process that died mid-send.
    /// Nobody knows whether the server took those messages, so they become
    /// `unknown` and are never re-sent, unless their stage opted into
    /// `on_unknown = "resend"`, in which case they are retried at once
    /// (same Message-ID, so the receiving side can spot the repeat).
    ///
    /// On SQLite the caller holds the database's only instance lock, so every
    /// claim found is abandoned; on PostgreSQL only those whose lease ran out
    /// (by the wall clock: leases are about live processes, not schedules).
    pub async fn recover_in_flight(&self, now: DateTime<Utc>) -> Result<u64, EngineError> {
        let cutoff = match self.store.backend() {
            crate::store::Backend::Sqlite => None,
            crate::store::Backend::Postgres => Some(Utc::now()),
        };
        let mut settled = 0;
        for (key, row, to) in self.store.abandoned_claims(cutoff).await? {
            let resend = self
                .config
                .stage(&row.stage)
                .is_some_and(|s| s.on_unknown == schedule::OnUnknown::Resend);
            // The log row says `unknown` either way.
            let outcome = if resend {
                Outcome {
                    state: StageState::Retrying,
                    ..Outcome::without_reply(StageState::Unknown, IN_DOUBT_RESEND.to_string())
                }
                .retry_at(Some(now))
            } else {
                Outcome::without_reply(
                    StageState::Unknown,
                    "the process stopped during the send; the server may or may not have the message"
                        .to_string(),
                )
            };
            let attempted = Attempted {
                key: key.clone(),
                stage: row.stage.clone(),
                owner: row.claim_owner.clone().unwrap_or_default(),
                token: row.claim_token,
                by: Reporter::Settler,
                to,
                message_id: row.message_id.clone(),
                attempt: row.attempts,
                subject: None,
                message_ref: None,
                note: None,
                at: now,
            };
            // The state change and its log row go together, so a crash in
            // between cannot leave an attempt without its row.
            if self
                .store
                .finish_with_log(attempted.finish(&outcome))
                .await?
            {
                tracing::warn!(order = %key, stage = %row.stage, outcome = %outcome.state, "in-doubt send settled");
                settled += 1;
            }
        }
        Ok(settled)
    }
}

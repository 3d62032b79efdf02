//! Acting on what came back: each failed recipient or complaint is matched
//! to the message it answers, kept, logged on that order, and, when it
//! calls for it, puts the address on the suppression list.
//!
//! The same path serves `followupd bounce`, the daemon's bounces inbox and
//! the relays' webhooks: each turns what it read into [`Incoming`] events.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{BounceError, Outcome, Report};
use crate::message::parse_message_id;
use crate::order::OrderKey;
use crate::store::{EventKind, NewEvent, Store, StoreError};
use crate::suppress::{Address, Reason, SoftBounceLimit, Suppression};

/// Why a report could not be taken in.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Unreadable(#[from] BounceError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One thing a report or a relay says about one recipient.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub recipient: Option<String>,
    pub kind: EventKind,
    pub status: Option<String>,
    pub diagnostic: Option<String>,
    pub smtp_code: Option<u16>,
    /// The Message-ID of the message it is about, if known.
    pub message_id: Option<String>,
    /// `dsn`, `arf`, or the relay's name.
    pub source: String,
}

/// What was done with one event, for the operator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Effect {
    pub address: Option<String>,
    /// `permanent`, `temporary`, `complaint`, or `ignored`.
    pub kind: String,
    pub status: Option<String>,
    /// The order and stage it answers, when it could be matched.
    pub order: Option<String>,
    pub stage: Option<String>,
    /// The reason the address was put on the suppression list by this
    /// event, if it was.
    pub suppressed: Option<Reason>,
    pub note: String,
}

/// What a piece of mail was and what it did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Handled {
    /// `delivery`, `feedback` or `auto_reply`.
    pub report: &'static str,
    pub effects: Vec<Effect>,
}

/// Reads one piece of mail and acts on it.
pub async fn handle_mail(
    store: &Store,
    limit: SoftBounceLimit,
    raw: &[u8],
    now: DateTime<Utc>,
) -> Result<Handled, IntakeError> {
    let (report, events, ignored) = events_of(super::parse(raw)?);
    let mut effects = ignored;
    for event in events {
        effects.push(apply(store, limit, event, now).await?);
    }
    Ok(Handled { report, effects })
}

/// The events a report holds, and what it holds that calls for nothing.
fn events_of(report: Report) -> (&'static str, Vec<Incoming>, Vec<Effect>) {
    let ignore = |address: Option<String>, status: Option<String>, note: String| Effect {
        address,
        kind: "ignored".into(),
        status,
        order: None,
        stage: None,
        suppressed: None,
        note,
    };
    match report {
        Report::Delivery(dsn) => {
            let mut events = Vec::new();
            let mut ignored = Vec::new();
            for r in dsn.recipients {
                let status = r.status.map(|s| s.to_string());
                let kind = match r.outcome {
                    Outcome::Permanent => EventKind::Permanent,
                    Outcome::Temporary => EventKind::Temporary,
                    Outcome::Delayed => {
                        ignored.push(ignore(
                            Some(r.recipient),
                            status,
                            "delayed: still being retried".into(),
                        ));
                        continue;
                    }
                    Outcome::Fine => {
                        ignored.push(ignore(Some(r.recipient), status, "delivered".into()));
                        continue;
                    }
                };
                events.push(Incoming {
                    recipient: Some(r.recipient),
                    kind,
                    status,
                    diagnostic: r.diagnostic,
                    smtp_code: r.smtp_code,
                    message_id: dsn.original_message_id.clone(),
                    source: "dsn".into(),
                });
            }
            ("delivery", events, ignored)
        }
        Report::Feedback(arf) if arf.is_complaint() => {
            let event = Incoming {
                recipient: arf.recipient,
                kind: EventKind::Complaint,
                status: Some(arf.feedback_type),
                diagnostic: arf.user_agent,
                smtp_code: None,
                message_id: arf.original_message_id,
                source: "arf".into(),
            };
            ("feedback", vec![event], Vec::new())
        }
        Report::Feedback(arf) => {
            let note = format!("feedback type {} is not a complaint", arf.feedback_type);
            let effect = ignore(arf.recipient, Some(arf.feedback_type), note);
            ("feedback", Vec::new(), vec![effect])
        }
        Report::AutoReply { from, why } => {
            let effect = ignore(from, None, format!("automatic reply ({why}), not a bounce"));
            ("auto_reply", Vec::new(), vec![effect])
        }
    }
}

/// Matches, records and acts on one event.
pub async fn apply(
    store: &Store,
    limit: SoftBounceLimit,
    event: Incoming,
    now: DateTime<Utc>,
) -> Result<Effect, StoreError> {
    let (answers, sent_to) = match_message(store, &event, now).await?;
    // The report's address, else the one our message went to (feedback
    // reports often redact the complainer).
    let address = event
        .recipient
        .as_deref()
        .and_then(|r| Address::parse(r).ok())
        .or_else(|| sent_to.as_deref().and_then(|r| Address::parse(r).ok()));
    let mut effect = Effect {
        address: address
            .as_ref()
            .map(|a| a.to_string())
            .or(event.recipient.clone()),
        kind: event.kind.as_str().into(),
        status: event.status.clone(),
        order: answers.as_ref().map(|(k, _)| k.to_string()),
        stage: answers.as_ref().map(|(_, s)| s.clone()),
        suppressed: None,
        note: String::new(),
    };
    let Some(address) = address else {
        effect.note = "no usable recipient address and no message of ours to match".into();
        return Ok(effect);
    };
    store
        .record_event(&NewEvent {
            at: now,
            address: address.clone(),
            kind: event.kind,
            status: event.status.clone(),
            diagnostic: event.diagnostic.clone(),
            smtp_code: event.smtp_code,
            message_id: event.message_id.clone(),
            answers,
            source: event.source.clone(),
        })
        .await?;
    let reason = match event.kind {
        EventKind::Permanent => Some((Reason::Bounced, "permanent failure".to_string())),
        EventKind::Complaint => Some((Reason::Complained, "spam complaint".to_string())),
        EventKind::Unsubscribe => Some((Reason::Unsubscribed, "unsubscribe".to_string())),
        EventKind::Temporary => {
            let seen = store
                .temporary_bounces_since(&address, now - limit.within)
                .await?;
            effect.note = format!("temporary failure {seen} of {} allowed", limit.count);
            limit.reached(seen).then(|| {
                (
                    Reason::Bounced,
                    format!("{seen} temporary failures within {}", limit.within),
                )
            })
        }
    };
    if let Some((reason, why)) = reason {
        let detail = [
            Some(why.as_str()),
            event.status.as_deref(),
            event.diagnostic.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("; ");
        let added = store
            .suppress(&Suppression {
                address,
                reason,
                detail: Some(format!("{detail} ({})", event.source)),
                at: now,
            })
            .await?;
        if added {
            effect.suppressed = Some(reason);
        } else if effect.note.is_empty() {
            effect.note = "already suppressed".into();
        }
    }
    Ok(effect)
}

/// The order and stage an event answers, and the address that message
/// went to: by the Message-ID it quotes when that is one of ours and we
/// sent it, else by the last message sent to the recipient.
async fn match_message(
    store: &Store,
    event: &Incoming,
    now: DateTime<Utc>,
) -> Result<(Option<(OrderKey, String)>, Option<String>), StoreError> {
    if let Some((key, stage)) = event.message_id.as_deref().and_then(parse_message_id) {
        if let Some(to) = store.sent_recipient(&key, &stage).await? {
            return Ok((Some((key, stage)), Some(to)));
        }
    }
    let Some(recipient) = event.recipient.as_deref() else {
        return Ok((None, None));
    };
    let mut candidates = vec![recipient.to_string()];
    if let Ok(normal) = Address::parse(recipient) {
        candidates.push(normal.to_string());
    }
    let found = store.last_sent_to(&candidates, now).await?;
    Ok(match found {
        Some((key, stage, to)) => (Some((key, stage)), Some(to)),
        None => (None, None),
    })
}

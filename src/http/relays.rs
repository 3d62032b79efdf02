//! Bounce and complaint webhooks of the relays sellers send through:
//! `POST /webhooks/mailgun` and `POST /webhooks/postmark`. Each event
//! becomes the same [`Incoming`] a bounce message would, and takes the same
//! path: matched to the message it answers, logged on the order, and the
//! address suppressed when it calls for it.
//!
//! Authentication first, on the raw request: Mailgun signs each event
//! (HMAC-SHA256 of its timestamp and token with the webhook signing key;
//! a timestamp more than 15 minutes away is refused, so a captured request
//! cannot be replayed later); Postmark sends the basic-auth credentials
//! written into the webhook's URL. Endpoints without their settings in
//! `[bounces.mailgun]` / `[bounces.postmark]` answer 404.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::Utc;
use ring::hmac;
use serde_json::Value;

use super::{header, read_body, App, BodyError};
use crate::bounce::intake::{apply, Incoming};
use crate::bounce::StatusCode as Enhanced;
use crate::store::{EventKind, StoreError};

/// How far a Mailgun signature's timestamp may be from now.
const MAX_SKEW_SECS: i64 = 15 * 60;

/// Why a relay's request was refused.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("this relay's webhook is off ([bounces.{0}] in config.toml)")]
    Off(&'static str),
    #[error("missing or wrong signature or credentials")]
    Unauthorized,
    #[error("the signature's timestamp is more than 15 minutes from now")]
    Stale,
    #[error("{}", .0.reason())]
    Body(BodyError),
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("the event could not be recorded, try again: {0}")]
    Store(#[from] StoreError),
}

impl IntoResponse for RelayError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Off(_) => StatusCode::NOT_FOUND,
            Self::Unauthorized | Self::Stale => StatusCode::UNAUTHORIZED,
            Self::Body(BodyError::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Body(BodyError::Timeout) => StatusCode::REQUEST_TIMEOUT,
            Self::Body(BodyError::Unreadable) | Self::Json(_) => StatusCode::BAD_REQUEST,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, format!("{self}\n")).into_response()
    }
}

/// The answer once the event is recorded (or known to need nothing).
fn done(what: &str) -> Response {
    (StatusCode::OK, format!("{what}\n")).into_response()
}

pub async fn mailgun(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let key = app
            .config
            .bounces
            .mailgun
            .as_ref()
            .ok_or(RelayError::Off("mailgun"))?;
        let body = read_body(&app, &headers, body)
            .await
            .map_err(RelayError::Body)?;
        let value: Value =
            serde_json::from_slice(&body).map_err(|e| RelayError::Json(e.to_string()))?;
        check_mailgun(key.expose(), &value["signature"], Utc::now().timestamp())?;
        let Some(event) = mailgun_event(&value["event-data"]) else {
            return Ok("ignored: not a bounce or complaint");
        };
        apply(&app.store, app.config.bounces.soft, event, Utc::now()).await?;
        Ok("recorded")
    }
    .await;
    answer(&app, "mailgun", result)
}

pub async fn postmark(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let (user, password) = app
            .config
            .bounces
            .postmark
            .as_ref()
            .ok_or(RelayError::Off("postmark"))?;
        check_basic_auth(&headers, user, password.expose())?;
        let body = read_body(&app, &headers, body)
            .await
            .map_err(RelayError::Body)?;
        let value: Value =
            serde_json::from_slice(&body).map_err(|e| RelayError::Json(e.to_string()))?;
        let Some(event) = postmark_event(&value) else {
            return Ok("ignored: not a bounce or complaint");
        };
        apply(&app.store, app.config.bounces.soft, event, Utc::now()).await?;
        Ok("recorded")
    }
    .await;
    answer(&app, "postmark", result)
}

fn answer(app: &App, source: &'static str, result: Result<&'static str, RelayError>) -> Response {
    match result {
        Ok(what) => {
            app.metrics.webhook(source, "bounce", "applied");
            done(what)
        }
        Err(e) => {
            let label = match &e {
                RelayError::Off(_) | RelayError::Unauthorized | RelayError::Stale => "unauthorized",
                RelayError::Body(BodyError::TooLarge(_)) => "too_large",
                RelayError::Body(BodyError::Timeout) => "timeout",
                RelayError::Body(_) | RelayError::Json(_) => "malformed",
                RelayError::Store(_) => "store_error",
            };
            app.metrics.webhook(source, "bounce", label);
            e.into_response()
        }
    }
}

/// Mailgun's signature block: `{timestamp, token, signature}`, the
/// signature the hex HMAC-SHA256 of timestamp and token.
fn check_mailgun(key: &[u8], signature: &Value, now: i64) -> Result<(), RelayError> {
    let text = |name: &str| signature[name].as_str().ok_or(RelayError::Unauthorized);
    let (timestamp, token, hex) = (text("timestamp")?, text("token")?, text("signature")?);
    let tag = decode_hex(hex).ok_or(RelayError::Unauthorized)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::verify(&key, format!("{timestamp}{token}").as_bytes(), &tag)
        .map_err(|_| RelayError::Unauthorized)?;
    let at: i64 = timestamp.parse().map_err(|_| RelayError::Unauthorized)?;
    if (now - at).abs() > MAX_SKEW_SECS {
        return Err(RelayError::Stale);
    }
    Ok(())
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `Authorization: Basic …` against the configured credentials, compared
/// through HMACs so the comparison takes the same time however much of it
/// matches.
fn check_basic_auth(headers: &HeaderMap, user: &str, password: &[u8]) -> Result<(), RelayError> {
    let given = header(headers, "authorization")
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .ok()
        })
        .ok_or(RelayError::Unauthorized)?;
    let mut expected = format!("{user}:").into_bytes();
    expected.extend_from_slice(password);
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"followupd basic auth");
    hmac::verify(&key, &given, hmac::sign(&key, &expected).as_ref())
        .map_err(|_| RelayError::Unauthorized)
}

/// A Mailgun event: `failed` (permanent or temporary) or `complained`;
/// anything else is not ours to act on.
fn mailgun_event(data: &Value) -> Option<Incoming> {
    let kind = match (data["event"].as_str()?, data["severity"].as_str()) {
        ("failed", Some("permanent")) => EventKind::Permanent,
        ("failed", _) => EventKind::Temporary,
        ("complained", _) => EventKind::Complaint,
        _ => return None,
    };
    let status = &data["delivery-status"];
    let message = status["message"]
        .as_str()
        .filter(|m| !m.is_empty())
        .or(status["description"].as_str().filter(|d| !d.is_empty()));
    Some(Incoming {
        recipient: data["recipient"].as_str().map(str::to_string),
        kind,
        status: match kind {
            EventKind::Complaint => Some("complaint".into()),
            _ => message.and_then(Enhanced::find).map(|c| c.to_string()),
        },
        diagnostic: message.map(|m| m.replace('\n', " ")),
        smtp_code: status["code"].as_u64().and_then(|c| u16::try_from(c).ok()),
        message_id: data["message"]["headers"]["message-id"]
            .as_str()
            .map(str::to_string),
        source: "mailgun".into(),
    })
}

/// A Postmark event: a `Bounce` record whose type is a failure, or a
/// `SpamComplaint`. Postmark quotes its own message id, not ours, so these
/// are matched by recipient.
fn postmark_event(record: &Value) -> Option<Incoming> {
    let kind = match (record["RecordType"].as_str()?, record["Type"].as_str()) {
        ("SpamComplaint", _) => EventKind::Complaint,
        ("Bounce", Some("HardBounce" | "BadEmailAddress" | "Blocked")) => EventKind::Permanent,
        ("Bounce", Some("SoftBounce" | "Transient" | "DnsError")) => EventKind::Temporary,
        _ => return None,
    };
    let details = record["Details"]
        .as_str()
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.split_once(';')
                .map_or(d, |(_, text)| text)
                .trim()
                .to_string()
        });
    Some(Incoming {
        recipient: record["Email"].as_str().map(str::to_string),
        kind,
        status: match kind {
            EventKind::Complaint => Some("complaint".into()),
            _ => details
                .as_deref()
                .and_then(Enhanced::find)
                .map(|c| c.to_string())
                .or(record["Type"].as_str().map(str::to_string)),
        },
        smtp_code: details.as_deref().and_then(|d| {
            let code: String = d.chars().take(3).collect();
            code.parse().ok().filter(|c| (200..600).contains(c))
        }),
        diagnostic: details,
        message_id: None,
        source: "postmark".into(),
    })
}

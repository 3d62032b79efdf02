//! What both webhook sources share: the signature check, the error type and
//! the answer.
//!
//! Both sign the raw body with HMAC-SHA256 and send it base64-encoded in a
//! header. The check runs on the bytes as received, before any parsing, and
//! compares in constant time (`ring::hmac::verify`) against every configured
//! secret, so a secret can be rotated by adding the new one first.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::{App, BodyError};
use crate::order::{BuyerEmail, FieldError, Line};
use crate::store::{Applied, Change, StoreError};

pub mod shopify;
pub mod woocommerce;

/// Why a delivery was refused. Each is answered with its status and one
/// line; none carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("no secret is configured for {0} webhooks ([http.{0}] secret_file or secret_env)")]
    NotConfigured(&'static str),
    #[error("missing {0} header")]
    MissingSignature(&'static str),
    #[error("the signature does not match the body")]
    BadSignature,
    #[error("{}", .0.reason())]
    Body(BodyError),
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("the payload lacks what followupd needs: {0}")]
    Unusable(String),
    #[error("the change could not be stored, try again: {0}")]
    Store(StoreError),
}

impl WebhookError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotConfigured(_) | Self::MissingSignature(_) | Self::BadSignature => {
                StatusCode::UNAUTHORIZED
            }
            Self::Body(BodyError::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Body(BodyError::Timeout) => StatusCode::REQUEST_TIMEOUT,
            Self::Body(BodyError::Unreadable) | Self::MissingHeader(_) | Self::Json(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::Unusable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `result` label of the request counter.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NotConfigured(_) | Self::MissingSignature(_) | Self::BadSignature => {
                "unauthorized"
            }
            Self::Body(BodyError::TooLarge(_)) => "too_large",
            Self::Body(BodyError::Timeout) => "timeout",
            Self::Body(BodyError::Unreadable) | Self::MissingHeader(_) | Self::Json(_) => {
                "malformed"
            }
            Self::Unusable(_) => "unprocessable",
            Self::Store(_) => "store_error",
        }
    }
}

impl From<FieldError> for WebhookError {
    fn from(e: FieldError) -> Self {
        Self::Unusable(e.to_string())
    }
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let line = one_line(&self.to_string());
        if matches!(self, Self::Store(_)) {
            tracing::error!(error = %line, "webhook not stored");
        }
        (self.status(), format!("{line}\n")).into_response()
    }
}

/// What a delivery did, answered with 200.
#[derive(Debug)]
pub enum Outcome {
    Applied(Applied),
    /// A topic or event followupd does not act on.
    Ignored(String),
    /// WooCommerce's ping when a webhook is created.
    Pong,
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Applied(Applied::Inserted | Applied::Updated) => "applied",
            Self::Applied(a) => a.as_str(),
            Self::Ignored(_) => "ignored",
            Self::Pong => "ping",
        }
    }
}

impl IntoResponse for Outcome {
    fn into_response(self) -> Response {
        let text = match self {
            Self::Applied(a) => a.as_str().to_string(),
            Self::Ignored(why) => format!("ignored: {why}"),
            Self::Pong => "pong".to_string(),
        };
        (StatusCode::OK, format!("{}\n", one_line(&text))).into_response()
    }
}

/// Whether `signature` (base64) is the HMAC-SHA256 of `body` under any of
/// `keys`.
pub fn signed(keys: &[ring::hmac::Key], body: &[u8], signature: &str) -> bool {
    let Ok(tag) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    keys.iter()
        .any(|key| ring::hmac::verify(key, body, &tag).is_ok())
}

/// Stores a change, waking the scheduler when it changed something.
pub async fn commit(app: &App, change: Change) -> Result<Outcome, WebhookError> {
    let applied = app
        .changes
        .apply(change)
        .await
        .map_err(WebhookError::Store)?;
    if matches!(applied, Applied::Inserted | Applied::Updated) {
        app.wake.notify_one();
    }
    Ok(Outcome::Applied(applied))
}

/// Parses JSON into `T`, the error in one line.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, WebhookError> {
    serde_json::from_slice(body).map_err(|e| WebhookError::Json(e.to_string()))
}

/// The first usable buyer address among `candidates`.
pub fn buyer_email<'a>(
    candidates: impl IntoIterator<Item = Option<&'a str>>,
) -> Result<BuyerEmail, FieldError> {
    let mut first_error = None;
    for candidate in candidates.into_iter().flatten() {
        if candidate.trim().is_empty() {
            continue;
        }
        match BuyerEmail::parse(candidate).and_then(|e| e.check_deliverable().map(|()| e)) {
            Ok(email) => return Ok(email),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or(FieldError::Missing("buyer_email")))
}

/// "First Last" from the parts that are there.
pub fn full_name(first: Option<&str>, last: Option<&str>) -> Result<Option<Line>, FieldError> {
    let name = [first, last]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Line::parse_optional("buyer_name", &name)
}

/// Text from the outside world as one line of a reply or a log.
fn one_line(text: &str) -> String {
    text.split(['\r', '\n']).collect::<Vec<_>>().join(" ")
}

/// Counts a delivery's result in the metrics and answers it: the one place
/// both sources' handlers turn a result into a response.
pub(super) fn respond(
    app: &App,
    source: &'static str,
    topic: &'static str,
    result: Result<Outcome, WebhookError>,
) -> Response {
    let label = match &result {
        Ok(outcome) => outcome.label(),
        Err(e) => e.label(),
    };
    app.metrics.webhook(source, topic, label);
    if let Ok(Outcome::Applied(applied)) = &result {
        app.metrics.imported(source, applied.as_str(), 1);
    }
    match result {
        Ok(outcome) => outcome.into_response(),
        Err(e) => e.into_response(),
    }
}

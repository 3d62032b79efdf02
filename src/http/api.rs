//! `POST /api/orders`: orders from a seller's own shop system, one object
//! or an array, in followupd's own field names (those of a JSON Lines
//! import). Each entry is checked exactly as an imported row is; the answer
//! lists, by index, `imported`, `updated` or the reason it was rejected.
//! The good entries are committed even when others are rejected, as in an
//! import; the answer is 200 when anything was stored and 422 when nothing
//! could be.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use ring::hmac;

use super::{header, read_body, App, BodyError, HttpSecret};
use crate::store::{Applied, Change, OrderChange, StoreError};

/// The accepted bearer tokens, kept as HMACs under a key made at start, so
/// that a presented token is compared in constant time (`hmac::verify`).
pub struct Tokens {
    key: hmac::Key,
    tags: Vec<hmac::Tag>,
}

impl Tokens {
    pub fn new(tokens: &[HttpSecret]) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            // The system's random source failing is beyond repair; a
            // fixed key still compares correctly.
            .unwrap_or_else(|_| hmac::Key::new(hmac::HMAC_SHA256, b"followupd"));
        let tags = tokens
            .iter()
            .map(|t| hmac::sign(&key, t.expose()))
            .collect();
        Self { key, tags }
    }

    fn accepts(&self, token: &str) -> bool {
        self.tags
            .iter()
            .any(|tag| hmac::verify(&self.key, token.as_bytes(), tag.as_ref()).is_ok())
    }

    fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }
}

/// Why a request to the API was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the orders API is off ([http.api] token_file or token_env)")]
    Off,
    #[error("missing or unknown bearer token")]
    Unauthorized,
    #[error("{}", .0.reason())]
    Body(BodyError),
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("expected an order object or an array of them")]
    NotOrders,
    #[error("the orders could not be stored, try again: {0}")]
    Store(StoreError),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Off => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Body(BodyError::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Body(BodyError::Timeout) => StatusCode::REQUEST_TIMEOUT,
            Self::Body(BodyError::Unreadable) | Self::Json(_) | Self::NotOrders => {
                StatusCode::BAD_REQUEST
            }
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Self::Off | Self::Unauthorized => "unauthorized",
            Self::Body(BodyError::TooLarge(_)) => "too_large",
            Self::Body(BodyError::Timeout) => "timeout",
            Self::Body(BodyError::Unreadable) | Self::Json(_) | Self::NotOrders => "malformed",
            Self::Store(_) => "store_error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let line = self.to_string().replace(['\r', '\n'], " ");
        (self.status(), format!("{line}\n")).into_response()
    }
}

/// One entry's result.
#[derive(Debug, serde::Serialize)]
struct EntryResult {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<String>,
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Debug, Default, serde::Serialize)]
struct Summary {
    imported: usize,
    updated: usize,
    rejected: usize,
    orders: Vec<EntryResult>,
}

pub async fn orders(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    match handle(&app, &headers, body).await {
        Ok(summary) => {
            app.metrics.webhook("api", "orders", "applied");
            for (result, n) in [
                ("imported", summary.imported),
                ("updated", summary.updated),
                ("rejected", summary.rejected),
            ] {
                app.metrics.imported("api", result, n as u64);
            }
            let status = if summary.rejected > 0 && summary.imported + summary.updated == 0 {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::OK
            };
            let text = serde_json::to_string(&summary).unwrap_or_default();
            (
                status,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                format!("{text}\n"),
            )
                .into_response()
        }
        Err(e) => {
            app.metrics.webhook("api", "orders", e.label());
            e.into_response()
        }
    }
}

async fn handle(app: &App, headers: &HeaderMap, body: Body) -> Result<Summary, ApiError> {
    if app.api_tokens.is_empty() {
        return Err(ApiError::Off);
    }
    let token = header(headers, "authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized)?;
    if !app.api_tokens.accepts(token) {
        return Err(ApiError::Unauthorized);
    }
    let body = read_body(app, headers, body)
        .await
        .map_err(ApiError::Body)?;
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::Json(e.to_string()))?;
    let entries = match value {
        serde_json::Value::Array(entries) => entries,
        object @ serde_json::Value::Object(_) => vec![object],
        _ => return Err(ApiError::NotOrders),
    };
    let now = Utc::now();
    let mut summary = Summary::default();
    let mut pending = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let parsed = if entry.is_object() {
            crate::import::parse_json_order(&entry.to_string(), &app.config, now)
        } else {
            Err("expected an object".to_string())
        };
        match parsed {
            Ok(record) => {
                let order_id = record.order.key.order_id.to_string();
                let change = Change {
                    delivery: None,
                    change: OrderChange::Upsert {
                        record: Box::new(record),
                        version: None,
                        items: Vec::new(),
                    },
                };
                pending.push((index, order_id, change));
            }
            Err(reason) => summary.orders.push(EntryResult {
                index,
                order_id: None,
                result: "rejected",
                reason: Some(reason),
            }),
        }
    }
    summary.rejected = summary.orders.len();
    // Queued together, the entries go into the same group commit.
    let results = futures_util::future::join_all(
        pending
            .iter()
            .map(|(_, _, change)| app.changes.apply(change.clone())),
    )
    .await;
    for ((index, order_id, _), result) in pending.into_iter().zip(results) {
        let applied = result.map_err(ApiError::Store)?;
        match applied {
            Applied::Inserted => summary.imported += 1,
            _ => summary.updated += 1,
        }
        summary.orders.push(EntryResult {
            index,
            order_id: Some(order_id),
            result: applied.as_str(),
            reason: None,
        });
    }
    if summary.imported + summary.updated > 0 {
        app.wake.notify_one();
    }
    summary.orders.sort_by_key(|e| e.index);
    Ok(summary)
}

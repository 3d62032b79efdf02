//! `GET /metrics`: Prometheus text format, every name prefixed `followupd_`,
//! counters ending in `_total` and durations in `_seconds`.
//!
//! What the listener sees itself (webhook requests, orders it stored) is
//! counted as it happens. What the sender did is read from the send log,
//! which records every attempt and block already: each scrape reads the
//! rows added since the previous one (by id), so a scrape costs the new
//! rows, not the log. The first scrape after a start reads the whole log,
//! so the counters start from the log's totals. With several instances on
//! one PostgreSQL each reports the totals of the shared log (aggregate
//! them with `max`, not `sum`). No label holds an order id, an address or
//! anything else without bound: stages and outcomes are closed sets, topics
//! outside the known ones are counted as `other`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use sqlx::Row;
use tokio::sync::Mutex;

use super::App;
use crate::store::{to_secs, Store, StoreError};

type Labels<const N: usize> = [(&'static str, String); N];

/// Rows of the send log read per query.
const SCAN_BATCH: i64 = 10_000;

/// Policy rules a blocked message may name, as the lint writes them.
const RULES: [&str; 8] = [
    "incentive",
    "link",
    "image",
    "attachment",
    "contact",
    "emoji",
    "order-id",
    "stage-timing",
];

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    webhooks: Family<Labels<3>, Counter>,
    imported: Family<Labels<2>, Counter>,
    messages: Family<Labels<2>, Counter>,
    lint_blocks: Family<Labels<1>, Counter>,
    smtp_replies: Family<Labels<1>, Counter>,
    send_duration: Histogram,
    due: Gauge,
    retrying: Gauge,
    suppressed: Family<Labels<1>, Gauge>,
    /// The last send-log id counted.
    scanned: Mutex<i64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("followupd");
        let webhooks = Family::<Labels<3>, Counter>::default();
        registry.register(
            "webhook_requests",
            "Requests to the webhook and orders API endpoints, by source, topic and result",
            webhooks.clone(),
        );
        let imported = Family::<Labels<2>, Counter>::default();
        registry.register(
            "imported_orders",
            "Orders stored from HTTP sources, by source and result",
            imported.clone(),
        );
        let messages = Family::<Labels<2>, Counter>::default();
        registry.register(
            "messages",
            "Send attempts and decisions in the send log, by stage and outcome",
            messages.clone(),
        );
        let lint_blocks = Family::<Labels<1>, Counter>::default();
        registry.register(
            "lint_blocks",
            "Messages blocked, by the rule that blocked them",
            lint_blocks.clone(),
        );
        let smtp_replies = Family::<Labels<1>, Counter>::default();
        registry.register(
            "smtp_replies",
            "Final SMTP replies, by class (2xx, 4xx, 5xx)",
            smtp_replies.clone(),
        );
        let send_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register_with_unit(
            "send_duration",
            "Time from handing a message to the transport to its outcome",
            Unit::Seconds,
            send_duration.clone(),
        );
        let due = Gauge::default();
        registry.register("stages_due", "Stages due to be looked at now", due.clone());
        let retrying = Gauge::default();
        registry.register(
            "stages_retrying",
            "Stages waiting to retry after a temporary failure",
            retrying.clone(),
        );
        let suppressed = Family::<Labels<1>, Gauge>::default();
        registry.register(
            "suppressed_addresses",
            "Addresses on the suppression list, by reason (unsubscribed, bounced, complained, manual)",
            suppressed.clone(),
        );
        registry.register(
            "build",
            "The running build",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        Self {
            registry,
            webhooks,
            imported,
            messages,
            lint_blocks,
            smtp_replies,
            send_duration,
            due,
            retrying,
            suppressed,
            scanned: Mutex::new(0),
        }
    }

    /// Counts one request to a webhook or API endpoint.
    pub fn webhook(&self, source: &'static str, topic: &'static str, result: &'static str) {
        let topic = if topic.is_empty() { "unknown" } else { topic };
        self.webhooks
            .get_or_create(&[
                ("source", source.to_string()),
                ("topic", topic.to_string()),
                ("result", result.to_string()),
            ])
            .inc();
    }

    /// Counts orders stored (or refused) from an HTTP source.
    pub fn imported(&self, source: &'static str, result: &'static str, n: u64) {
        if n > 0 {
            self.imported
                .get_or_create(&[
                    ("source", source.to_string()),
                    ("result", result.to_string()),
                ])
                .inc_by(n);
        }
    }

    /// Brings the send-side figures up to date and renders everything.
    pub async fn render(&self, store: &Store) -> Result<String, StoreError> {
        self.scan_log(store).await?;
        let now = to_secs(Utc::now());
        let due: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM stages WHERE state IN ('scheduled', 'retrying') AND next_check_at <= $1",
        )
        .bind(now)
        .fetch_one(store.pool())
        .await?;
        let retrying: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM stages WHERE state IN ('scheduled', 'retrying') AND state = 'retrying'",
        )
        .fetch_one(store.pool())
        .await?;
        self.due.set(due);
        self.retrying.set(retrying);
        let counts = store.suppression_counts().await?;
        for reason in crate::suppress::Reason::ALL {
            let n = counts
                .iter()
                .find(|(r, _)| *r == reason)
                .map_or(0, |(_, n)| *n);
            self.suppressed
                .get_or_create(&[("reason", reason.as_str().to_string())])
                .set(n);
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        Ok(text)
    }

    /// Counts the send-log rows added since the last scrape.
    async fn scan_log(&self, store: &Store) -> Result<(), StoreError> {
        let mut last = self.scanned.lock().await;
        loop {
            let rows = sqlx::query(
                "SELECT id, stage, status, smtp_code, duration_ms, \
                 CASE WHEN status = 'blocked' THEN detail END FROM send_log \
                 WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(*last)
            .bind(SCAN_BATCH)
            .fetch_all(store.pool())
            .await?;
            for row in &rows {
                let id: i64 = row.try_get(0)?;
                let stage: String = row.try_get(1)?;
                let status: String = row.try_get(2)?;
                let code: Option<i64> = row.try_get(3)?;
                let duration: Option<i64> = row.try_get(4)?;
                let detail: Option<String> = row.try_get(5)?;
                self.count_row(stage, status, code, duration, detail.as_deref());
                *last = id;
            }
            if (rows.len() as i64) < SCAN_BATCH {
                return Ok(());
            }
        }
    }

    fn count_row(
        &self,
        stage: String,
        status: String,
        code: Option<i64>,
        duration_ms: Option<i64>,
        detail: Option<&str>,
    ) {
        if let Some(detail) = detail {
            for rule in rules_of(detail) {
                self.lint_blocks
                    .get_or_create(&[("rule", rule.to_string())])
                    .inc();
            }
        }
        if let Some(code) = code {
            let class = match code {
                200..=299 => "2xx",
                400..=499 => "4xx",
                500..=599 => "5xx",
                _ => "other",
            };
            self.smtp_replies
                .get_or_create(&[("class", class.to_string())])
                .inc();
        }
        if let Some(ms) = duration_ms.filter(|ms| *ms >= 0) {
            self.send_duration.observe(ms as f64 / 1000.0);
        }
        self.messages
            .get_or_create(&[("stage", stage), ("outcome", status)])
            .inc();
    }
}

/// The rules a blocked message's findings name: `forbidden-word` for the
/// word lists, the policy rule otherwise, `other` (a template error) when
/// none is recognised.
fn rules_of(detail: &str) -> Vec<&'static str> {
    let mut rules = Vec::new();
    if detail.contains("forbidden word '") {
        rules.push("forbidden-word");
    }
    for rule in RULES {
        if detail.contains(&format!(": {rule}: ")) {
            rules.push(rule);
        }
    }
    if rules.is_empty() {
        rules.push("other");
    }
    rules
}

pub async fn scrape(State(app): State<Arc<App>>) -> Response {
    match app.metrics.render(&app.store).await {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "cannot read the figures: {}\n",
                e.to_string().replace('\n', " ")
            ),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_read_from_the_findings() {
        assert_eq!(
            rules_of("body:1:5: forbidden word 'review' (matches 'review*') in the template text"),
            ["forbidden-word"]
        );
        assert_eq!(
            rules_of("body:2:1: link: link to a domain the order does not need: x; body:3:1: emoji: emoji 'x'"),
            ["link", "emoji"]
        );
        assert_eq!(rules_of("template error"), ["other"]);
    }

    #[test]
    fn names_follow_the_conventions() {
        let m = Metrics::new();
        m.webhook("shopify", "orders/create", "applied");
        m.imported("shopify", "imported", 1);
        let mut text = String::new();
        encode(&mut text, &m.registry).unwrap();
        assert!(text.contains("followupd_webhook_requests_total{source=\"shopify\",topic=\"orders/create\",result=\"applied\"} 1"), "{text}");
        assert!(
            text.contains(
                "followupd_imported_orders_total{source=\"shopify\",result=\"imported\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("followupd_build_info{version="), "{text}");
        assert!(
            text.contains("# TYPE followupd_send_duration_seconds histogram"),
            "{text}"
        );
    }
}

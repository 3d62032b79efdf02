//! followupd sends e-commerce sellers' post-purchase emails: a shipment
//! notice, a follow-up after delivery and a feedback request, each inside its
//! window, never twice, never to an unhappy buyer, and never with wording a
//! marketplace would penalise.
//!
//! A tour of the crate, from data in to mail out:

/// Bounces and complaints: reading DSNs and ARF reports, acting on them.
pub mod bounce;
/// The command line.
pub mod cli;
/// `config.toml`, parsed into typed settings.
pub mod config;
/// `followupd run`: the systemd service loop.
pub mod daemon;
/// DKIM signatures for sellers whose relay does not sign.
pub mod dkim;
/// Import, plan and tick, tying the parts together.
pub mod engine;
/// The HTTP listener: webhooks, the orders API, health and metrics.
pub mod http;
/// Streaming CSV / JSON Lines import with per-row rejections.
pub mod import;
/// Pure forbidden-word lint.
pub mod lint;
/// Turning a rendered message into a MIME email.
pub mod message;
/// The order and its field parsers.
pub mod order;
/// Marketplace policy profiles: rules beyond words.
pub mod policy;
/// Secrets out of every printed error and log event, one line an event.
pub mod redact;
/// Tera templates: loading, rendering and attributing lint hits.
pub mod render;
/// Pure scheduling rules: windows, sending hours, skips, prerequisites.
pub mod schedule;
/// SQLite / PostgreSQL persistence and the send log.
pub mod store;
/// The suppression list: who gets no further message, and why.
pub mod suppress;
/// Delivery: the outbox folder (and SMTP).
pub mod transport;
/// Signed one-click unsubscribe tokens and links.
pub mod unsubscribe;

//! followupd's HTTP side, inside `followupd run` when `[http] listen` is
//! set: Shopify and WooCommerce webhooks, an orders API for a seller's own
//! shop system, health checks and Prometheus metrics.
//!
//! One area a file: `webhooks/shopify.rs`, `webhooks/woocommerce.rs`,
//! `api.rs`, `health.rs`, `metrics.rs`; each has its own error type that
//! turns into a status and a one-line reason. This file holds the router,
//! the shared state, the listener and its shutdown.
//!
//! Everything that arrives is hostile until checked: the body is capped
//! before it is read and read within `request_timeout`, a webhook's
//! signature is checked on the raw bytes before anything is parsed, and a
//! 2xx is only sent once the change is committed (the change writer groups
//! the commits of concurrent requests). Connections are served on tasks of
//! their own, never on the sender's; at most `max_connections` at once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};

use crate::config::Config;
use crate::store::{ChangeWriter, Store};

mod api;
mod health;
mod metrics;
mod relays;
mod unsubscribe;
mod webhooks;

pub use crate::config::http::{HttpConfig, HttpConfigError, HttpSecret, RawHttp, SecretSource};
pub use metrics::Metrics;

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{}: {}", .0.key, .0.message)]
    Secret(HttpConfigError),
}

/// Reads the secrets of `http`: Shopify's, WooCommerce's and the API's.
pub fn read_secrets(http: &HttpConfig) -> Result<Secrets, HttpError> {
    let read = |source: Option<&SecretSource>| -> Result<Vec<HttpSecret>, HttpError> {
        source
            .map(|s| s.read().map_err(HttpError::Secret))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    Ok(Secrets {
        shopify: read(http.shopify.as_ref().map(|s| &s.secrets))?,
        woocommerce: read(http.woocommerce.as_ref().map(|s| &s.secrets))?,
        api: read(http.api_tokens.as_ref())?,
    })
}

/// The secrets as read; they never print.
#[derive(Debug)]
pub struct Secrets {
    pub shopify: Vec<HttpSecret>,
    pub woocommerce: Vec<HttpSecret>,
    pub api: Vec<HttpSecret>,
}

/// Binds the listening socket: what `check` tries, and the first step of
/// [`HttpServer::start`].
pub async fn bind(config: &HttpConfig) -> Result<TcpListener, HttpError> {
    TcpListener::bind(config.listen)
        .await
        .map_err(|source| HttpError::Bind {
            addr: config.listen,
            source,
        })
}

/// What every handler shares.
pub(crate) struct App {
    pub http: HttpConfig,
    pub config: Arc<Config>,
    pub store: Store,
    pub changes: ChangeWriter,
    pub metrics: Arc<Metrics>,
    /// Set once shutdown began: `/readyz` says so.
    pub stopping: AtomicBool,
    /// Nudges the scheduler after a committed change, so a shipment notice
    /// goes out now rather than at the next periodic look.
    pub wake: Arc<Notify>,
    pub shopify_keys: Vec<ring::hmac::Key>,
    pub woocommerce_keys: Vec<ring::hmac::Key>,
    pub api_tokens: api::Tokens,
}

impl App {
    /// Whether the listener takes new work.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
}

/// The running listener.
pub struct HttpServer {
    app: Arc<App>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    local_addr: SocketAddr,
}

/// What the listener needs from the daemon.
pub struct HttpParts {
    pub config: Arc<Config>,
    pub store: Store,
    pub changes: ChangeWriter,
    pub metrics: Arc<Metrics>,
    pub wake: Arc<Notify>,
}

impl HttpServer {
    /// Reads the secrets and starts serving on `listener` (from [`bind`]).
    pub fn start(
        http: HttpConfig,
        listener: TcpListener,
        parts: HttpParts,
    ) -> Result<Self, HttpError> {
        let secrets = read_secrets(&http)?;
        let keys = |secrets: &[HttpSecret]| -> Vec<ring::hmac::Key> {
            secrets
                .iter()
                .map(|s| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, s.expose()))
                .collect()
        };
        let app = Arc::new(App {
            shopify_keys: keys(&secrets.shopify),
            woocommerce_keys: keys(&secrets.woocommerce),
            api_tokens: api::Tokens::new(&secrets.api),
            http,
            config: parts.config,
            store: parts.store,
            changes: parts.changes,
            metrics: parts.metrics,
            stopping: AtomicBool::new(false),
            wake: parts.wake,
        });
        let local_addr = listener.local_addr().unwrap_or(app.http.listen);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(Arc::clone(&app), listener, stopped));
        tracing::info!(listen = %local_addr, "HTTP listener is up");
        Ok(Self {
            app,
            stop,
            task,
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections; requests in flight go on. `/readyz`
    /// answers 503 from now on, to whoever still asks on an open connection.
    pub fn begin_shutdown(&self) {
        if !self.app.stopping.swap(true, Ordering::Relaxed) {
            tracing::info!("HTTP listener: no new requests");
        }
        let _ = self.stop.send(true);
    }

    /// Waits up to `grace` for the requests in flight to be answered.
    pub async fn finish(self, grace: Duration) {
        self.begin_shutdown();
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            tracing::warn!(
                ?grace,
                "HTTP requests still in flight at the end of the grace period"
            );
            task.abort();
        }
    }
}

/// The routes, one line an endpoint.
fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/webhooks/shopify", post(webhooks::shopify::receive))
        .route(
            "/webhooks/woocommerce",
            post(webhooks::woocommerce::receive),
        )
        .route("/api/orders", post(api::orders))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::scrape))
        .route("/webhooks/mailgun", post(relays::mailgun))
        .route("/webhooks/postmark", post(relays::postmark))
        .route(
            "/u/{token}",
            get(unsubscribe::page).post(unsubscribe::confirm),
        )
        .with_state(app)
}

/// Accepts connections until told to stop, then lets each open connection
/// finish the request it is on and waits for them all.
async fn serve(app: Arc<App>, listener: TcpListener, mut stopped: watch::Receiver<bool>) {
    let router = router(Arc::clone(&app));
    let slots = Arc::new(Semaphore::new(app.http.max_connections));
    let graceful = GracefulShutdown::new();
    let timeout = app.http.request_timeout;
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = stopped.changed() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, or the like: wait rather
                    // than spin.
                    tracing::warn!(error = %e, "HTTP listener cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that goes away mid-request is its own business.
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyError {
    TooLarge(u64),
    Timeout,
    Unreadable,
}

impl BodyError {
    pub fn reason(self) -> String {
        match self {
            Self::TooLarge(limit) => format!("the body is larger than {limit} bytes"),
            Self::Timeout => "the body did not arrive within the request timeout".into(),
            Self::Unreadable => "the body could not be read".into(),
        }
    }
}

/// Reads a body of at most `body_limit` bytes within `request_timeout`; a
/// declared length over the limit is refused before anything is read.
pub(crate) async fn read_body(
    app: &App,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, BodyError> {
    let limit = app.http.body_limit;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge(limit));
    }
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    match tokio::time::timeout(app.http.request_timeout, limited.collect()).await {
        Err(_) => Err(BodyError::Timeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(BodyError::TooLarge(limit))
        }
        Ok(Err(_)) => Err(BodyError::Unreadable),
    }
}

/// A header's value as text, if present and readable.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

//! `GET /healthz` (the process lives and answers) and `GET /readyz` (it can
//! do its work: the database answers, templates are loaded, and it is not
//! shutting down). A load balancer takes an instance out on a failing
//! `/readyz`; a supervisor restarts it on a failing `/healthz`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::App;

/// How long the database may take to answer a readiness check.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the instance is not ready.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("shutting down")]
    ShuttingDown,
    #[error("the database does not answer: {0}")]
    Database(String),
    #[error("the database did not answer within {0:?}")]
    DatabaseSlow(Duration),
}

impl IntoResponse for NotReady {
    fn into_response(self) -> Response {
        let line = self.to_string().replace(['\r', '\n'], " ");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {line}\n"),
        )
            .into_response()
    }
}

pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Templates are loaded before the listener starts, and a reload that fails
/// keeps the loaded set, so only the database and shutdown remain to ask.
pub async fn readyz(State(app): State<Arc<App>>) -> Result<&'static str, NotReady> {
    if app.stopping() {
        return Err(NotReady::ShuttingDown);
    }
    let ping = sqlx::query_scalar::<_, i64>("SELECT CAST(1 AS BIGINT)").fetch_one(app.store.pool());
    match tokio::time::timeout(DATABASE_TIMEOUT, ping).await {
        Err(_) => Err(NotReady::DatabaseSlow(DATABASE_TIMEOUT)),
        Ok(Err(e)) => Err(NotReady::Database(e.to_string())),
        Ok(Ok(_)) => Ok("ready\n"),
    }
}

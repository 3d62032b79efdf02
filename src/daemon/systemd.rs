//! systemd's notify protocol: readiness, status, reloads, the watchdog.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Sends a systemd notification; without `NOTIFY_SOCKET` it does nothing.
pub(super) fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Pings the systemd watchdog at most every half interval.
pub(super) struct Watchdog {
    pub(super) every: Option<Duration>,
    last: std::sync::Mutex<Instant>,
}

impl Watchdog {
    pub(super) fn from_env() -> Arc<Self> {
        Arc::new(Self {
            every: sd_notify::watchdog_enabled().map(|d| d / 2),
            last: std::sync::Mutex::new(Instant::now()),
        })
    }

    pub(super) fn beat(&self) {
        let Some(every) = self.every else { return };
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= every {
            notify(&[NotifyState::Watchdog]);
            *last = Instant::now();
        }
    }

    pub(super) fn beat_now(&self) {
        if self.every.is_some() {
            notify(&[NotifyState::Watchdog]);
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
    }
}

//! Where the binary's own log lines go: stderr, filtered by `RUST_LOG`.

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::EnvFilter;

/// The service reports what it does; one-shot commands only complain.
pub(super) fn init(service: bool) {
    let default_level = if service {
        LevelFilter::INFO
    } else {
        LevelFilter::WARN
    };
    // RUST_LOG refines this; an empty or unset RUST_LOG keeps the default.
    let mut filter = EnvFilter::builder()
        .with_default_directive(default_level.into())
        .from_env_lossy();
    // sqlx warns about every statement slower than a second; a plan over a
    // million orders is one. Only ask for that when RUST_LOG names sqlx.
    if !std::env::var("RUST_LOG")
        .unwrap_or_default()
        .contains("sqlx")
    {
        if let Ok(quiet) = "sqlx::query=error".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Every event without secrets, on one line (src/redact.rs).
        .with_writer(|| crate::redact::Redacting(std::io::stderr()));
    // Under systemd the journal adds its own timestamps and shows no colours.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        logs.without_time()
            .with_ansi(false)
            .with_target(false)
            .init();
    } else {
        // Colour codes only where a person reads them: a log redirected to
        // a file or a pipe gets plain text.
        use std::io::IsTerminal;
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

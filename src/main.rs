//! The `followupd` binary: parse arguments, set up logging, hand over to
//! the library. Errors are printed once, with their causes.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = followupd::cli::Cli::parse();
    // The service reports what it does; one-shot commands only complain.
    let default_level = match cli.command {
        followupd::cli::Command::Run { .. } => LevelFilter::INFO,
        _ => LevelFilter::WARN,
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
        .with_writer(std::io::stderr);
    // Under systemd the journal adds its own timestamps and shows no colours.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        logs.without_time()
            .with_ansi(false)
            .with_target(false)
            .init();
    } else {
        logs.init();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(followupd::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

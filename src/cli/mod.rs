//! The `followupd` command line: one file a command, each with its
//! `#[derive(Args)]` struct and its `run` function (the shape of
//! mini-redis's `src/cmd/`). Commands call into [`crate::engine`] and the
//! store; these files only turn their results into text, JSON lines and
//! exit codes.

mod bounce;
mod check;
mod import;
mod lint;
mod logging;
mod logs;
mod pause;
mod plan;
mod preview;
mod requeue;
mod resend;
mod resume;
mod run;
mod show;
mod suppress;
mod tick;
mod time;
mod try_send;
mod values;
mod why;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::config::Config;

/// followupd: sends post-purchase emails to buyers, and never one with
/// wording a marketplace would penalise.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// The configuration file.
    #[arg(
        short,
        long,
        global = true,
        env = "FOLLOWUPD_CONFIG",
        default_value = "config.toml"
    )]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import orders from CSV or JSON Lines files (new orders and updates).
    Import(import::ImportArgs),
    /// Show every stage of every order: state, window, next send and why.
    Plan(plan::PlanArgs),
    /// Run as a service: import from the inbox, send what is due, sleep until the next.
    Run(run::RunArgs),
    /// Send everything due at an instant, print a summary and exit.
    Tick(tick::TickArgs),
    /// Show the exact message one stage of an order would send, and its lint result.
    Preview(preview::PreviewArgs),
    /// The send log, newest first: what was sent to whom, when, and what the server said.
    Logs(logs::LogsArgs),
    /// Print a stored message exactly as it was handed to the server.
    Show(show::ShowArgs),
    /// Check config, templates, database and the transport (an SMTP handshake), sending nothing.
    Check,
    /// Send one stage of an order again, on purpose (logged as a manual resend).
    Resend(resend::ResendArgs),
    /// Stop sending on every instance that shares the database (held there).
    Pause(pause::PauseArgs),
    /// Let sending go on after `pause`.
    Resume,
    /// Send one stage to yourself, marked as a test, without touching any order.
    Try(try_send::TryArgs),
    /// Put ended stages (blocked, failed…) back in the queue, to be composed again.
    Requeue(requeue::RequeueArgs),
    /// Lint every template (or one finished message); exit 1 on any hit.
    Lint(lint::LintArgs),
    /// The suppression list: addresses that get no further message.
    Suppress(suppress::SuppressArgs),
    /// Take in bounces and complaints (DSN, ARF) from files or standard input.
    Bounce(bounce::BounceArgs),
    /// Every order of a buyer (EMAIL) or with an id (ORDER): each stage,
    /// what happened or will happen and why, and the latest send-log rows.
    Why(why::WhyArgs),
}

/// The binary's whole life after parsing: logging, the runtime, the
/// command, and the exit code (2 for an error that stopped the command,
/// printed once with its causes).
pub fn main(cli: Cli) -> ExitCode {
    logging::init(matches!(cli.command, Command::Run(_)));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", crate::redact::text(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}

/// Runs a parsed command line and returns the process exit code.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let config = cli.config.as_path();
    match cli.command {
        Command::Import(args) => import::run(args, config).await,
        Command::Plan(args) => plan::run(args, config).await,
        Command::Run(args) => run::run(args, config).await,
        Command::Tick(args) => tick::run(args, config).await,
        Command::Preview(args) => preview::run(args, config).await,
        Command::Logs(args) => logs::run(args, config).await,
        Command::Show(args) => show::run(args, config).await,
        Command::Check => check::run(config).await,
        Command::Resend(args) => resend::run(args, config).await,
        Command::Pause(args) => pause::run(args, config).await,
        Command::Resume => resume::run(config).await,
        Command::Try(args) => try_send::run(args, config).await,
        Command::Requeue(args) => requeue::run(args, config).await,
        Command::Lint(args) => lint::run(args, config),
        Command::Suppress(args) => suppress::run(args, config).await,
        Command::Bounce(args) => bounce::run(args, config).await,
        Command::Why(args) => why::run(args, config).await,
    }
}

/// Loads the configuration, logging its warnings.
fn load(path: &Path) -> Result<Config> {
    // Point at -c only to someone who did not give the file themselves.
    let chosen = path != Path::new("config.toml") || std::env::var_os("FOLLOWUPD_CONFIG").is_some();
    let config = Config::load(path).with_context(|| {
        if chosen {
            format!("loading {}", path.display())
        } else {
            format!(
                "loading {} (set -c or FOLLOWUPD_CONFIG to use another file)",
                path.display()
            )
        }
    })?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    Ok(config)
}

/// A stage named on the command line: one of the config's, or an error
/// naming them.
fn check_stage(config: &Config, name: &str) -> Result<()> {
    if config.stage(name).is_some() {
        return Ok(());
    }
    let names: Vec<&str> = config.stages.iter().map(|s| s.name.as_str()).collect();
    anyhow::bail!(
        "no stage '{name}' in {}; the stages are: {}",
        config.path.display(),
        names.join(", ")
    )
}

fn exit(success: bool) -> ExitCode {
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

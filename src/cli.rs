//! The `followupd` command line: argument parsing and the output each
//! command prints. Commands call into [`crate::engine`]; this module only
//! turns their results into text, JSON lines and exit codes.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::engine::{Engine, PlanLine};
use crate::import::Format;
use crate::lint::Forbidden;
use crate::store::{LogEntry, LogQuery, Store};

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
    Import {
        /// Files to import.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// File format, when the extension does not say.
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// A column mapping from [mappings.NAME] in config.toml.
        #[arg(long)]
        mapping: Option<String>,
    },
    /// Show every stage of every order: state, window, next send and why.
    Plan {
        /// The instant to plan for (RFC 3339); default: now.
        #[arg(long, value_parser = parse_now)]
        now: Option<DateTime<Utc>>,
        /// Only this order id.
        #[arg(long)]
        order: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Run as a service: import from the inbox, send what is due, sleep until the next.
    Run {
        /// Import these files once at start (they are not moved).
        #[arg(long)]
        import: Vec<PathBuf>,
    },
    /// Send everything due at an instant, print a summary and exit.
    Tick {
        /// The instant to act for (RFC 3339); default: now.
        #[arg(long, value_parser = parse_now)]
        now: Option<DateTime<Utc>>,
    },
    /// Show the exact message one stage of an order would send, and its lint result.
    Preview {
        /// Order id.
        #[arg(long)]
        order: String,
        /// Stage name.
        #[arg(long)]
        stage: String,
        /// Marketplace, when the order id exists on several.
        #[arg(long)]
        marketplace: Option<String>,
        /// Print the raw message as it would be handed to the transport.
        #[arg(long)]
        raw: bool,
        /// The instant for the Date header (RFC 3339); default: now.
        #[arg(long, value_parser = parse_now)]
        now: Option<DateTime<Utc>>,
    },
    /// The send log, newest first: what was sent to whom, when, and what the server said.
    Logs {
        /// Only this order id.
        #[arg(long)]
        order: Option<String>,
        /// Only this recipient address.
        #[arg(long)]
        email: Option<String>,
        /// Only this stage.
        #[arg(long)]
        stage: Option<String>,
        /// Only this outcome (sent, retrying, failed, blocked, unknown).
        #[arg(long)]
        status: Option<String>,
        /// From this instant (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long, value_parser = parse_bound)]
        since: Option<DateTime<Utc>>,
        /// Before this instant (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long, value_parser = parse_bound)]
        until: Option<DateTime<Utc>>,
        /// At most this many rows.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Print a stored message exactly as it was handed to the server.
    Show {
        /// An id from `followupd logs`.
        id: i64,
    },
    /// Check config, templates, database and the transport (an SMTP handshake), sending nothing.
    Check,
    /// Send one stage of an order again, on purpose (logged as a manual resend).
    Resend {
        /// Order id.
        order: String,
        /// Stage name.
        stage: String,
        /// Marketplace, when the order id exists on several.
        #[arg(long)]
        marketplace: Option<String>,
        /// The instant to record (RFC 3339); default: now.
        #[arg(long, value_parser = parse_now)]
        now: Option<DateTime<Utc>>,
    },
    /// Lint every template (or one finished message); exit 1 on any hit.
    Lint {
        /// A finished message to lint instead of the templates (plain text,
        /// or HTML if the name ends in .html or .htm).
        #[arg(long)]
        message: Option<PathBuf>,
        /// The buyer's locale for --message.
        #[arg(long)]
        locale: Option<String>,
        /// Also apply a marketplace policy profile to --message (amazon, none).
        #[arg(long, value_enum)]
        policy: Option<PolicyName>,
        /// The order id the message must mention (with --policy amazon).
        #[arg(long)]
        order_id: Option<String>,
        /// Say what a rule is and why it exists, and exit.
        #[arg(long, value_name = "RULE")]
        explain: Option<String>,
    },
}

/// Policy profiles by name, for `lint --policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyName {
    None,
    Amazon,
}

fn parse_now(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("expected RFC 3339 such as 2026-12-01T10:00:00Z: {e}"))
}

fn parse_bound(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(date) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    parse_now(s)
}

/// Runs a parsed command line and returns the process exit code.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let load = || {
        let config = Config::load(&cli.config).with_context(|| {
            format!(
                "loading {} (set -c or FOLLOWUPD_CONFIG to use another file)",
                cli.config.display()
            )
        })?;
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        Ok::<_, anyhow::Error>(config)
    };
    match cli.command {
        Command::Lint {
            explain: Some(rule),
            ..
        } => match crate::policy::explain(&rule) {
            Some(r) => {
                println!("{}\n\n{}\n\nWhy: {}", r.id, r.summary, r.why);
                Ok(ExitCode::SUCCESS)
            }
            None => {
                let ids: Vec<&str> = crate::policy::RULES.iter().map(|r| r.id).collect();
                bail!("no rule '{rule}'; the rules are: {}", ids.join(", "))
            }
        },
        Command::Lint {
            message: Some(file),
            locale,
            policy,
            order_id,
            ..
        } => {
            let forbidden = match Config::load(&cli.config) {
                Ok(config) => config.forbidden,
                // Linting a message needs no installation: without a
                // config, the shipped lists apply.
                Err(_) => Forbidden::with_locales(
                    &crate::lint::DEFAULT_FORBIDDEN
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>(),
                    &Default::default(),
                )
                .map_err(anyhow::Error::msg)?,
            };
            let policy = match policy {
                Some(PolicyName::Amazon) => {
                    crate::policy::Policy::new(crate::policy::Profile::Amazon)
                }
                _ => crate::policy::Policy::new(crate::policy::Profile::None),
            };
            lint_message(
                &forbidden,
                locale.as_deref(),
                &policy,
                order_id.as_deref(),
                &file,
            )
        }
        Command::Lint { message: None, .. } => lint_templates(&load()?),
        Command::Import {
            files,
            format,
            mapping,
        } => {
            let engine = Engine::open(load()?).await?;
            let mut rejected_any = false;
            let (mut imported, mut updated, mut rejected) = (0, 0, 0);
            for file in &files {
                let summary = engine
                    .import_file(file, format, mapping.as_deref(), Utc::now())
                    .await?;
                for r in &summary.rejected {
                    eprintln!("{}:{}: {}", file.display(), r.line, r.reason);
                }
                rejected_any |= !summary.rejected.is_empty();
                imported += summary.imported;
                updated += summary.updated;
                rejected += summary.rejected.len();
            }
            println!("imported {imported}, updated {updated}, rejected {rejected}");
            Ok(exit(!rejected_any))
        }
        Command::Plan { now, order, json } => {
            let engine = Engine::open(load()?).await?;
            let now = now.unwrap_or_else(Utc::now);
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            if !json {
                writeln!(
                    out,
                    "{:<20} {:<14} {:<12} {:<5} {:<12} {:<36} {:<20} REASON",
                    "ORDER", "STAGE", "STATE", "LANG", "ANCHOR", "WINDOW (UTC)", "NEXT SEND (UTC)"
                )?;
            }
            let mut write_error = None;
            engine
                .plan(now, order.as_deref(), |line| {
                    let result = if json {
                        serde_json::to_string(&line)
                            .map_err(std::io::Error::other)
                            .and_then(|s| writeln!(out, "{s}"))
                    } else {
                        writeln!(out, "{}", plan_row(&line))
                    };
                    match result {
                        Ok(()) => true,
                        Err(e) => {
                            write_error.get_or_insert(e);
                            false
                        }
                    }
                })
                .await?;
            match write_error {
                // `plan | head` closing the pipe early is not an error.
                Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                Some(e) => return Err(e.into()),
                None => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { import } => {
            let (wake_tx, wake_rx) = tokio::sync::mpsc::unbounded_channel();
            let mut hangups =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
            let reload_tx = wake_tx.clone();
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    if reload_tx
                        .send(crate::daemon::Wake::Reload("SIGHUP"))
                        .is_err()
                    {
                        break;
                    }
                }
            });
            crate::daemon::run(
                cli.config.clone(),
                crate::daemon::RunOptions { import },
                stop_signal()?,
                wake_rx,
                wake_tx,
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tick { now } => {
            let config = load()?;
            // A running daemon owns a SQLite database; a parallel tick would
            // take its in-flight sends for crashed ones.
            let _lock = crate::daemon::InstanceLock::acquire(&config.database_url)?;
            let engine = Engine::open(config).await?;
            let summary = engine.tick(now.unwrap_or_else(Utc::now)).await?;
            engine.transport.shutdown().await;
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Preview {
            order,
            stage,
            marketplace,
            raw,
            now,
        } => {
            let engine = Engine::open(load()?).await?;
            if engine.config.stage(&stage).is_none() {
                bail!("no stage '{stage}' in config");
            }
            let (order, _) = engine.find_order(&order, marketplace.as_deref()).await?;
            let preview = engine.compose(&order, &stage, now.unwrap_or_else(Utc::now))?;
            if raw {
                std::io::stdout().write_all(&preview.outgoing.raw)?;
            } else {
                let sender = engine.config.sender_for(order.key.marketplace.as_str());
                println!("From: {}", sender.from);
                if let Some(r) = &sender.reply_to {
                    println!("Reply-To: {r}");
                }
                println!("To: {}", preview.outgoing.to);
                println!("Subject: {}", preview.rendered.subject);
                println!("Message-ID: <{}>", preview.outgoing.message_id);
                eprintln!(
                    "# templates: {} (language {})",
                    preview.rendered.folder, preview.rendered.locale
                );
                println!("\n{}", preview.rendered.text);
                if let Some(html) = &preview.rendered.html {
                    println!("--- HTML body ---\n{html}");
                }
            }
            if preview.is_clean() {
                eprintln!("lint: clean");
            } else {
                for problem in preview.problems() {
                    eprintln!("lint: {problem}");
                }
            }
            Ok(exit(preview.is_clean()))
        }
        Command::Logs {
            order,
            email,
            stage,
            status,
            since,
            until,
            limit,
            json,
        } => {
            let config = load()?;
            let store = Store::open(&config.database_url).await?;
            let entries = store
                .logs(&LogQuery {
                    order_id: order,
                    email,
                    stage,
                    status,
                    since,
                    until,
                    limit,
                })
                .await?;
            print_logs(&entries, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { id } => {
            let config = load()?;
            let store = Store::open(&config.database_url).await?;
            let entry = store
                .log_entry(id)
                .await?
                .with_context(|| format!("no send-log entry {id} (see followupd logs)"))?;
            let Some(message_id) = entry.message_ref else {
                bail!(
                    "entry {id} ({} {} {}) has no stored message: {}",
                    entry.order_id,
                    entry.stage,
                    entry.status,
                    entry.detail.unwrap_or_default()
                );
            };
            let message = store
                .message(message_id)
                .await?
                .with_context(|| format!("stored message {message_id} is missing"))?;
            eprintln!(
                "# entry {id}: {} {} to {}, {} at {}",
                entry.order_id,
                entry.stage,
                entry.to,
                entry.status,
                entry.at.to_rfc3339()
            );
            std::io::stdout().write_all(&message.raw)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => check(load()?).await,
        Command::Resend {
            order,
            stage,
            marketplace,
            now,
        } => {
            let engine = Engine::open(load()?).await?;
            let state = engine
                .resend(
                    &order,
                    marketplace.as_deref(),
                    &stage,
                    now.unwrap_or_else(Utc::now),
                )
                .await?;
            println!("{order} {stage}: {state}");
            engine.transport.shutdown().await;
            Ok(exit(state == crate::schedule::StageState::Sent))
        }
    }
}

fn print_logs(entries: &[LogEntry], json: bool) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if json {
        for e in entries {
            writeln!(out, "{}", serde_json::to_string(e)?)?;
        }
        return Ok(());
    }
    let rows: Vec<[String; 9]> = entries
        .iter()
        .map(|e| {
            let reply = match (&e.smtp_code, &e.smtp_text, &e.detail) {
                (Some(code), Some(text), _) => format!("{code} {text}"),
                (None, Some(text), None) => text.clone(),
                (_, _, Some(detail)) => detail.clone(),
                _ => String::new(),
            };
            [
                e.id.to_string(),
                e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                e.order_id.clone(),
                e.stage.clone(),
                e.to.clone(),
                e.status.clone(),
                e.attempt.to_string(),
                e.subject.clone().unwrap_or_default(),
                reply.replace('\n', " "),
            ]
            .map(|cell| clip(&cell, 120))
        })
        .collect();
    let headers = [
        "ID", "AT (UTC)", "ORDER", "STAGE", "TO", "STATUS", "TRY", "SUBJECT", "REPLY",
    ];
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let last = cells.len() - 1;
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.to_string()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    writeln!(out, "{}", line(headers.to_vec()))?;
    for row in &rows {
        writeln!(out, "{}", line(row.iter().map(|s| s.as_str()).collect()))?;
    }
    Ok(())
}

/// Shortens a table cell to `max` characters (`--json` has the full text).
fn clip(cell: &str, max: usize) -> String {
    if cell.chars().count() <= max {
        cell.to_string()
    } else {
        let mut short: String = cell.chars().take(max - 1).collect();
        short.push('…');
        short
    }
}

/// `followupd check`: each part, one line each; exit 1 if any fails.
async fn check(config: Config) -> Result<ExitCode> {
    let mut ok = true;
    let mut report = |part: &str, result: Result<String, String>| match result {
        Ok(text) => println!("ok    {part}: {text}"),
        Err(text) => {
            ok = false;
            println!("FAIL  {part}: {text}");
        }
    };
    for warning in &config.warnings {
        println!("warn  config: {warning}");
    }
    report("config", Ok(config.path.display().to_string()));
    let templates = crate::render::Templates::for_config(&config);
    report(
        "templates",
        match &templates {
            Ok(t) if t.own_hits().is_empty() => Ok(format!("{} stages", config.stages.len())),
            Ok(t) => Err(format!(
                "{} forbidden words in the template text (run followupd lint)",
                t.own_hits().len()
            )),
            Err(e) => Err(e.to_string()),
        },
    );
    match Store::open(&config.database_url).await {
        Ok(store) => {
            let counts = store.state_counts().await.map_err(|e| e.to_string());
            report(
                "database",
                counts.map(|c| {
                    let total: i64 = c.values().sum();
                    format!("{} ({total} stages)", redact_url(&config.database_url))
                }),
            );
            store.close().await;
        }
        Err(e) => report("database", Err(e.to_string())),
    }
    match crate::transport::Transport::new(&config.transport) {
        Ok(transport) => {
            let result = transport.check().await.map_err(|e| e.to_string());
            report("transport", result);
        }
        Err(e) => report("transport", Err(e.to_string())),
    }
    Ok(exit(ok))
}

/// Hides a password in a database URL.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Completes on SIGTERM (systemd stop) or SIGINT (Ctrl-C).
fn stop_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

fn exit(success: bool) -> ExitCode {
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn plan_row(line: &PlanLine) -> String {
    let (anchor, window) = match &line.window {
        Some(w) => (
            w.anchor.as_str().to_string(),
            format!(
                "{} .. {}",
                w.opens.format("%Y-%m-%d %H:%M"),
                w.closes.format("%Y-%m-%d %H:%M")
            ),
        ),
        None => ("-".into(), "-".into()),
    };
    let next = line
        .next_send
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into());
    format!(
        "{:<20} {:<14} {:<12} {:<5} {:<12} {:<36} {:<20} {}",
        line.order_id,
        line.stage,
        line.state,
        line.locale,
        anchor.split(' ').next().unwrap_or("-"),
        window,
        next,
        line.reason
    )
}

/// `followupd lint --message FILE`: `FILE:LINE:COL: rule: message` per hit.
///
/// A `.html` / `.htm` file is linted as a mail client shows it: the words
/// in its visible text (so `re<b>view</b>` counts and a link target does
/// not), its links and images in the markup. Each hit is placed at the
/// line and column in the file where its text starts.
fn lint_message(
    forbidden: &Forbidden,
    locale: Option<&str>,
    policy: &crate::policy::Policy,
    order_id: Option<&str>,
    file: &PathBuf,
) -> Result<ExitCode> {
    let source =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let is_html = file
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
    let visible = is_html.then(|| crate::lint::visible_text_with_sources(&source));
    let text = visible
        .as_ref()
        .map_or(source.as_str(), |(text, _)| text.as_str());
    // Where a finding at `line`:`column` of `text` is in the file. One with
    // no text of its own keeps the position it has.
    let place = |line: usize, column: usize, found: &str| {
        let (line, column) = match &visible {
            Some((text, sources)) if !found.is_empty() => offset_of(text, line, column)
                .and_then(|at| sources.get(at))
                .map_or((line, column), |&at| crate::policy::locate(&source, at)),
            _ => (line, column),
        };
        format!("{}:{line}:{column}", file.display())
    };
    let mut problems = Vec::new();
    for hit in forbidden.scan_locale(text, locale) {
        problems.push((
            (hit.line, hit.column),
            place(hit.line, hit.column, &hit.word),
            format!(
                "forbidden-word: forbidden word '{}' (matches '{}')",
                hit.word, hit.pattern
            ),
        ));
    }
    let mut policy = policy.clone();
    if order_id.is_none() {
        // Without the order id there is nothing to look for.
        policy.disabled.insert("order-id".into());
    }
    // An HTML file's visible text stands in for the text body: the prose
    // rules read it, and the link and image rules read the markup.
    let parts = crate::policy::MessageParts {
        subject: "",
        text,
        html: is_html.then_some(source.as_str()),
        html_text: None,
        raw: source.as_bytes(),
        order_id: order_id.unwrap_or_default(),
        order_links: &[],
    };
    for v in crate::policy::check(&policy, &parts) {
        let message = v.to_string();
        // Drop the "text body:L:C: " prefix: the file position replaces it.
        let message = message
            .splitn(4, ':')
            .nth(3)
            .unwrap_or(&message)
            .trim_start();
        let position = match (v.part, v.rule) {
            // Found in the markup itself, at its own position; or about the
            // whole message, with nothing in it to point at.
            (crate::lint::Part::Html, _) | (_, "order-id" | "attachment") => {
                place(v.line, v.column, "")
            }
            _ => place(v.line, v.column, &v.found),
        };
        problems.push(((v.line, v.column), position, message.to_string()));
    }
    problems.sort();
    for (_, position, message) in &problems {
        println!("{position}: {message}");
    }
    Ok(exit(problems.is_empty()))
}

/// The byte offset of 1-based `line` and character `column` in `text`.
fn offset_of(text: &str, line: usize, column: usize) -> Option<usize> {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let (at, _) = text[line_start..]
        .char_indices()
        .nth(column.saturating_sub(1))?;
    Some(line_start + at)
}

/// `followupd lint`: the templates' own text, then every stage rendered
/// against a sample order.
fn lint_templates(config: &Config) -> Result<ExitCode> {
    let templates = match crate::render::Templates::for_config(config) {
        Ok(t) => t,
        Err(e) => {
            println!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let mut problems = 0;
    for (file, hit) in templates.own_hits() {
        problems += 1;
        println!(
            "{file}:{}:{}: forbidden word '{}' (matches '{}')",
            hit.line, hit.column, hit.word, hit.pattern
        );
    }
    let order = crate::order::sample_order(&config.default_marketplace);
    let sender = config.sender_for(order.key.marketplace.as_str());
    let mut locales = vec![None];
    locales.extend(templates.locales().into_iter().map(Some));
    let sets: Vec<(Option<String>, &crate::schedule::StageSpec)> = locales
        .iter()
        .flat_map(|l| config.stages.iter().map(move |s| (l.clone(), s)))
        .collect();
    for (locale, stage) in &sets {
        let context =
            crate::render::context(&order, sender, &stage.name, config.rules.default_zone);
        match templates.render(&stage.name, locale.as_deref(), &context) {
            Ok(rendered) => {
                let findings = templates.lint(
                    &stage.name,
                    &rendered,
                    &config.forbidden,
                    &order.text_fields(),
                )?;
                for f in findings
                    .iter()
                    .filter(|f| !matches!(f.origin, crate::lint::Origin::Template { .. }))
                {
                    problems += 1;
                    println!("{}: {f}", stage.name);
                }
            }
            Err(e) => {
                problems += 1;
                println!("{e}");
            }
        }
    }
    if problems == 0 {
        eprintln!(
            "lint: {} stages in {} languages, no problems",
            config.stages.len(),
            locales.len()
        );
    }
    Ok(exit(problems == 0))
}

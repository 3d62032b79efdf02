//! `followupd preview`: the exact message one stage would send.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;

use crate::config::Sender;
use crate::engine::{Engine, Preview};

#[derive(Debug, Args)]
pub struct PreviewArgs {
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
    /// The instant for the Date header; default: now. RFC 3339, a date, or -3d/+2h.
    #[arg(long, value_parser = super::time::parse_time, allow_hyphen_values = true)]
    now: Option<DateTime<Utc>>,
}

pub(super) async fn run(args: PreviewArgs, config: &Path) -> Result<ExitCode> {
    let engine = Engine::open(super::load(config)?).await?;
    super::check_stage(&engine.config, &args.stage)?;
    let (order, _) = engine
        .find_order(&args.order, args.marketplace.as_deref())
        .await?;
    let preview = engine.compose(&order, &args.stage, args.now.unwrap_or_else(Utc::now))?;
    if args.raw {
        std::io::stdout().write_all(&preview.outgoing.raw)?;
    } else {
        print_readable(
            &preview,
            engine.config.sender_for(order.key.marketplace.as_str()),
        );
    }
    if preview.is_clean() {
        eprintln!("lint: clean");
    } else {
        for problem in preview.problems() {
            eprintln!("lint: {problem}");
        }
    }
    Ok(super::exit(preview.is_clean()))
}

/// The headers a person reads, the text body and the HTML body.
fn print_readable(preview: &Preview, sender: &Sender) {
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

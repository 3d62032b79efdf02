//! `followupd try --stage S --to ADDRESS`: one stage of a real or sample
//! order rendered, linted and sent to the operator through the configured
//! transport, marked as a test. The order's state and the send log are
//! not touched.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::Utc;
use clap::Args;

use crate::engine::Engine;
use crate::order::{BuyerEmail, Line};

#[derive(Debug, Args)]
pub struct TryArgs {
    /// The stage whose message to send.
    #[arg(long)]
    stage: String,
    /// The operator's address (never a buyer's).
    #[arg(long)]
    to: String,
    /// A real order's data instead of the sample order's.
    #[arg(long)]
    order: Option<String>,
    /// Marketplace, when the order id exists on several.
    #[arg(long)]
    marketplace: Option<String>,
    /// The language whose templates to use (default: the order's).
    #[arg(long)]
    locale: Option<String>,
}

/// Marks a test in the headers, for filters and for whoever reads it.
const TEST_HEADER: &str = "X-Followupd-Test: sent with followupd try, not to the buyer\r\n";

pub(super) async fn run(args: TryArgs, config: &Path) -> Result<ExitCode> {
    let engine = Engine::open(super::load(config)?).await?;
    super::check_stage(&engine.config, &args.stage)?;
    let mut order = match &args.order {
        Some(id) => engine.find_order(id, args.marketplace.as_deref()).await?.0,
        None => crate::order::sample_order(
            args.marketplace
                .as_deref()
                .unwrap_or(&engine.config.default_marketplace),
        ),
    };
    order.buyer_email = BuyerEmail::parse(&args.to).context("--to")?;
    order.buyer_email.check_deliverable().context("--to")?;
    if let Some(locale) = &args.locale {
        order.locale = Some(Line::parse("locale", locale).context("--locale")?);
    }
    let now = Utc::now();
    let preview = engine.compose(&order, &args.stage, now)?;
    eprintln!(
        "# templates: {} (language {})",
        preview.rendered.folder, preview.rendered.locale
    );
    if !preview.is_clean() {
        for problem in preview.problems() {
            eprintln!("lint: {problem}");
        }
        eprintln!("not sent: the lint blocks this message");
        return Ok(ExitCode::from(1));
    }
    // A Message-ID of its own (from a key no order has), so a provider
    // never takes the real message for a repeat of the test.
    let mut rendered = preview.rendered;
    rendered.subject = format!("[TEST] {}", rendered.subject);
    let mut keyed = order.clone();
    keyed.key.order_id = Line::parse(
        "order_id",
        &format!("{}.test-{}", order.key.order_id, now.timestamp_micros()),
    )?;
    let sender = engine.config.sender_for(order.key.marketplace.as_str());
    let mut outgoing = crate::message::build(&keyed, sender, &args.stage, &rendered, None, now)?;
    outgoing.raw.splice(0..0, TEST_HEADER.bytes());
    let receipt = engine.transport.send(&outgoing, async { true }).await;
    engine.transport.shutdown().await;
    let receipt = receipt.with_context(|| format!("sending the test to {}", args.to))?;
    println!(
        "test sent to {} (Message-ID <{}>): {}{}",
        args.to,
        outgoing.message_id,
        receipt.code.map(|c| format!("{c} ")).unwrap_or_default(),
        receipt.text
    );
    println!("lint: clean; the order's state and the send log are unchanged");
    Ok(ExitCode::SUCCESS)
}

//! `followupd why EMAIL|ORDER`: support's one-screen answer to "what did
//! this buyer get, what will they get, and why not the rest?"

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;

use crate::engine::{Engine, PlanLine};
use crate::order::Order;
use crate::store::{LogEntry, LogQuery};

#[derive(Debug, Args)]
pub struct WhyArgs {
    /// A buyer's address (every order of theirs) or an order id.
    who: String,
    /// The instant to explain for; default: now. RFC 3339, a date, or -3d/+2h.
    #[arg(long, value_parser = super::time::parse_time, allow_hyphen_values = true)]
    now: Option<DateTime<Utc>>,
}

/// Send-log rows shown an order: its latest attempts.
const LOG_ROWS: i64 = 10;

pub(super) async fn run(args: WhyArgs, config: &Path) -> Result<ExitCode> {
    let engine = Engine::open(super::load(config)?).await?;
    let now = args.now.unwrap_or_else(Utc::now);
    let by_email = args.who.contains('@');
    let orders = if by_email {
        engine.store.orders_of_buyer(&args.who).await?
    } else {
        engine.store.orders_with_id(&args.who).await?
    };
    if orders.is_empty() {
        let what = if by_email { "buyer" } else { "order" };
        eprintln!(
            "no {what} '{}' (an order id is matched exactly, an address ignoring case)",
            args.who
        );
        return Ok(ExitCode::from(1));
    }
    for (i, (order, rows)) in orders.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print_order(order);
        for line in super::plan::order_plan(&engine, order, rows, now).await? {
            println!("{}", stage_line(&line));
        }
        let log = engine
            .store
            .logs(&LogQuery {
                order_id: Some(order.key.order_id.to_string()),
                email: None,
                stage: None,
                status: None,
                since: None,
                until: None,
                limit: LOG_ROWS,
            })
            .await?;
        for entry in log
            .iter()
            .filter(|e| e.marketplace == order.key.marketplace.as_str())
        {
            println!("{}", log_line(entry));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_order(order: &Order) {
    let date = |t: Option<DateTime<Utc>>| {
        t.map_or_else(
            || "-".to_string(),
            |t| t.format("%Y-%m-%d %H:%M").to_string(),
        )
    };
    let mut flags = Vec::new();
    if order.complaint {
        flags.push("complaint");
    }
    if order.opted_out {
        flags.push("opted out");
    }
    println!(
        "order {} to {}: {} ({}{}), shipped {}, delivered {}",
        order.key,
        order.buyer_email.as_str(),
        order.product_name,
        order.status.as_str(),
        flags.iter().map(|f| format!(", {f}")).collect::<String>(),
        date(order.shipped_at),
        date(order.delivered_at),
    );
}

/// One stage: its state, when, and why.
fn stage_line(line: &PlanLine) -> String {
    let when = match (&line.next_send, &line.window) {
        (Some(next), _) => format!("next send {}", next.format("%Y-%m-%d %H:%M")),
        (None, Some(w)) => format!(
            "window {} .. {}",
            w.opens.format("%Y-%m-%d %H:%M"),
            w.closes.format("%Y-%m-%d %H:%M")
        ),
        (None, None) => "no window yet".to_string(),
    };
    format!(
        "  {:<16} {:<12} {:<34} {}",
        line.stage, line.state, when, line.reason
    )
}

fn log_line(e: &LogEntry) -> String {
    let reply = match (&e.smtp_code, &e.smtp_text, &e.detail) {
        (Some(code), Some(text), _) => format!("{code} {text}"),
        (_, _, Some(detail)) => detail.clone(),
        (_, Some(text), None) => text.clone(),
        _ => String::new(),
    };
    format!(
        "  log #{} {} {} {} to {}: {}",
        e.id,
        e.at.format("%Y-%m-%d %H:%M:%S"),
        e.stage,
        e.status,
        e.to,
        reply.replace('\n', " ")
    )
}

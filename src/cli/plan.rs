//! `followupd plan`: every stage of every order and why.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};

use crate::engine::{plan_order, Engine, PlanLine};
use crate::order::Order;
use crate::store::{OrderWithStages, StageRow};
use crate::suppress::Address;

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The instant to plan for; default: now. RFC 3339, a date, or -3d/+2h.
    #[arg(long, value_parser = super::time::parse_time, allow_hyphen_values = true)]
    now: Option<DateTime<Utc>>,
    /// Only this order id (on any marketplace).
    #[arg(long, conflicts_with = "email")]
    order: Option<String>,
    /// Only the orders of this buyer address (case ignored).
    #[arg(long)]
    email: Option<String>,
    /// Only stages in this state (or about to be: due, will_skip, will_expire).
    #[arg(long, value_enum)]
    state: Option<PlanState>,
    /// Only this stage.
    #[arg(long)]
    stage: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

/// What `plan` can say about a stage: a stored state, or what the
/// scheduler would do with it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum PlanState {
    Scheduled,
    Sending,
    Retrying,
    Sent,
    Blocked,
    Skipped,
    Expired,
    Failed,
    Unknown,
    Due,
    WillSkip,
    WillExpire,
}

impl PlanState {
    fn matches(self, line: &PlanLine) -> bool {
        self.to_possible_value()
            .is_some_and(|v| v.get_name() == line.state)
    }
}

impl PlanArgs {
    fn keeps(&self, line: &PlanLine) -> bool {
        self.state.is_none_or(|s| s.matches(line))
            && self.stage.as_ref().is_none_or(|s| *s == line.stage)
    }

    /// The filters given, as the user wrote them, for "nothing matches".
    fn filters(&self) -> String {
        let mut given = Vec::new();
        if let Some(o) = &self.order {
            given.push(format!("--order {o}"));
        }
        if let Some(e) = &self.email {
            given.push(format!("--email {e}"));
        }
        if let Some(s) = self.state.and_then(|s| s.to_possible_value()) {
            given.push(format!("--state {}", s.get_name()));
        }
        if let Some(s) = &self.stage {
            given.push(format!("--stage {s}"));
        }
        given.join(" ")
    }
}

pub(super) async fn run(args: PlanArgs, config: &Path) -> Result<ExitCode> {
    let engine = Engine::open(super::load(config)?).await?;
    if let Some(stage) = &args.stage {
        super::check_stage(&engine.config, stage)?;
    }
    let now = args.now.unwrap_or_else(Utc::now);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut write_error = None;
    let mut shown = 0u64;
    let mut emit = |line: PlanLine| {
        if !args.keeps(&line) {
            return true;
        }
        shown += 1;
        // The header only above rows: an empty table looks like an answer.
        if shown == 1 && !args.json {
            if let Err(e) = writeln!(out, "{HEADER}") {
                write_error.get_or_insert(e);
                return false;
            }
        }
        let result = if args.json {
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
    };
    match (&args.order, &args.email) {
        // One buyer or one order id: an index lookup, not a pass over
        // every order.
        (Some(id), _) => {
            let orders = engine.store.orders_with_id(id).await?;
            emit_all(&engine, orders, now, &mut emit).await?
        }
        (_, Some(email)) => {
            let orders = engine.store.orders_of_buyer(email).await?;
            emit_all(&engine, orders, now, &mut emit).await?
        }
        (None, None) => engine.plan(now, None, &mut emit).await?,
    }
    match write_error {
        // `plan | head` closing the pipe early is not an error.
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Some(e) => return Err(e.into()),
        None => {}
    }
    if shown == 0 {
        let filters = args.filters();
        if filters.is_empty() {
            eprintln!("no orders yet (followupd import FILE)");
        } else {
            eprintln!("nothing matches {filters}");
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The plan lines of looked-up orders, until `emit` says stop.
async fn emit_all(
    engine: &Engine,
    orders: Vec<OrderWithStages>,
    now: DateTime<Utc>,
    emit: &mut impl FnMut(PlanLine) -> bool,
) -> Result<()> {
    for (order, rows) in &orders {
        if !order_plan(engine, order, rows, now)
            .await?
            .into_iter()
            .all(&mut *emit)
        {
            break;
        }
    }
    Ok(())
}

/// One order's plan lines, its buyer's suppression looked up by address.
pub(super) async fn order_plan(
    engine: &Engine,
    order: &Order,
    rows: &[StageRow],
    now: DateTime<Utc>,
) -> Result<Vec<PlanLine>> {
    let suppression = match Address::parse(order.buyer_email.as_str()) {
        Ok(address) => engine.store.suppression(&address).await?,
        Err(_) => None,
    };
    Ok(plan_order(
        &engine.config,
        &engine.templates,
        order,
        rows,
        suppression.as_ref(),
        now,
    ))
}

const HEADER: &str = "ORDER                STAGE          STATE        LANG  ANCHOR       \
     WINDOW (UTC)                         NEXT SEND (UTC)      ZONE (FROM)                      REASON";

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
    let zone = format!("{} ({})", line.time_zone, line.time_zone_source.as_str());
    format!(
        "{:<20} {:<14} {:<12} {:<5} {:<12} {:<36} {:<20} {:<32} {}",
        line.order_id,
        line.stage,
        line.state,
        line.locale,
        anchor.split(' ').next().unwrap_or("-"),
        window,
        next,
        zone,
        line.reason
    )
}

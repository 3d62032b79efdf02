//! In-process benchmark of the per-message hot path: render a stage's
//! templates for an order (the HTML body's visible text included), lint the
//! result and build the MIME message, on one thread. Used by bench/run.sh (row 4):
//!
//!     cargo run --release --example render_lint -- [MESSAGES] [CONFIG]
//!
//! Prints one line: `render+lint+build: N messages in S s = R messages/s`.

use std::path::PathBuf;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use followupd::config::Config;
use followupd::order::{sample_order, Line};
use followupd::render::{context, Templates};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let messages: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let config_path = PathBuf::from(args.next().unwrap_or_else(|| "config.toml".into()));
    let config = Config::load(&config_path)?;
    let templates = Templates::for_config(&config)?;

    // A few hundred distinct orders, so the work is not one cached string.
    let orders: Vec<_> = (0..500)
        .map(|i| {
            let mut order = sample_order(&config.default_marketplace);
            order.key.order_id = Line::parse("order_id", &format!("112-{i:07}")).expect("valid id");
            order.buyer_name = Some(
                Line::parse("buyer_name", &format!("Buyer Number{i} Example")).expect("valid name"),
            );
            order.product_name = Line::parse(
                "product_name",
                &format!(
                    "Hand-thrown stoneware teapot, glaze no. {i}, with a bamboo handle and infuser"
                ),
            )
            .expect("valid product");
            order
        })
        .collect();
    let now = Utc
        .with_ymd_and_hms(2026, 12, 1, 10, 0, 0)
        .single()
        .expect("valid instant");
    let stages: Vec<&str> = config.stages.iter().map(|s| s.name.as_str()).collect();

    let mut bytes = 0usize;
    let mut hits = 0usize;
    let (mut render_time, mut lint_time, mut build_time) = (0.0, 0.0, 0.0);
    let started = Instant::now();
    for i in 0..messages {
        let order = &orders[i % orders.len()];
        let stage = stages[i % stages.len()];
        let sender = config.sender_for(order.key.marketplace.as_str());
        let t0 = Instant::now();
        let ctx = context(order, sender, stage, config.rules.default_zone);
        let rendered = templates.render(stage, None, &ctx)?;
        let t1 = Instant::now();
        let fields = order.text_fields();
        hits += templates
            .lint(stage, &rendered, &config.forbidden, &fields)?
            .len();
        let t2 = Instant::now();
        let message = followupd::message::build(order, sender, stage, &rendered, None, now)?;
        bytes += message.raw.len();
        render_time += (t1 - t0).as_secs_f64();
        lint_time += (t2 - t1).as_secs_f64();
        build_time += t2.elapsed().as_secs_f64();
    }
    let seconds = started.elapsed().as_secs_f64();
    let rate = |s: f64| messages as f64 / s;
    println!(
        "render+lint+build: {messages} messages ({} bytes on average, {hits} lint hits) in {seconds:.3} s = {:.0} messages/s",
        bytes / messages.max(1),
        rate(seconds)
    );
    println!(
        "  render {:.0}/s, lint {:.0}/s, render+lint {:.0}/s, MIME build {:.0}/s",
        rate(render_time),
        rate(lint_time),
        rate(render_time + lint_time),
        rate(build_time)
    );
    Ok(())
}

//! Whether the lint's time grows linearly with the message, over shapes an
//! attacker would pick (order data reaches messages, so a product name can
//! be any of these). Used by bench/run.sh (row 4b):
//!
//!     cargo run --release --example lint_linearity -- [BASE_BYTES] [FACTOR]
//!
//! For each shape it times the whole lint of a message (the word lint with
//! the shipped lists and every hit traced to its origin, the HTML body's
//! visible text, the amazon profile) at BASE_BYTES (default 150,000) and at
//! FACTOR times that (default 16), best of three each, and prints the
//! ratio. Linear time gives about FACTOR; the bound checked is 2 × FACTOR.
//! The last line is `lint linearity: worst X for FACTORx the input (SHAPE)`.

use std::collections::BTreeMap;
use std::time::Instant;

use followupd::lint::{self, Forbidden, Part, TemplateHits};
use followupd::policy::{self, MessageParts, Policy, Profile};

/// A shape: a name, the locale, whether it is an HTML body, and the unit
/// repeated to build the message.
const SHAPES: &[(&str, &str, bool, &str)] = &[
    (
        "prose",
        "en",
        false,
        "Thank you for your order, it is on its way to you. ",
    ),
    ("spaced letters", "en", false, "r e v i e w "),
    (
        "spaced letters, long gaps",
        "en",
        false,
        "r -- e -- v -- i -- e -- w -- ",
    ),
    ("dotted letters", "en", false, "r.e.v.i.e.w."),
    ("one long word", "en", false, "review"),
    ("one long compound", "de", false, "bewertung"),
    ("repeated word", "en", false, "review "),
    ("allowed phrases", "fr", false, "avis de passage "),
    ("digit swaps", "en", false, "r3v13w upd4t3 "),
    ("kana", "ja", false, "レビュー"),
    ("spaced kana", "ja", false, "レ ビ ュ ー "),
    ("look-alikes", "en", false, "rеviеw "),
    ("digits", "en", false, "1 2 3 4 5 6 7 8 9 0 "),
    ("phone numbers", "en", false, "+1 415 555 0137 "),
    ("emails", "en", false, "a@b.co "),
    ("emoji", "en", false, "⏰"),
    ("incentives", "en", false, "5 stars "),
    ("web addresses", "en", false, "www.x.example/review "),
    ("html letters", "en", true, "<b>r</b>"),
    ("html cells", "en", true, "<td>r</td><td>e</td>"),
    ("html unclosed tags", "en", true, "<img src=x "),
    (
        "html links",
        "en",
        true,
        "<a href=\"https://spam.example/\">x</a>",
    ),
    ("html entities", "en", true, "&#114;&#101;"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(150_000);
    let factor: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(16);
    let to_strings = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let forbidden =
        Forbidden::with_locales(&to_strings(lint::DEFAULT_FORBIDDEN), &BTreeMap::new())?;
    let policy = Policy::new(Profile::Amazon);

    let mut worst = (0.0f64, "");
    for &(name, locale, html, unit) in SHAPES {
        let time = |bytes: usize| {
            let message = unit.repeat(bytes.div_ceil(unit.len()));
            (0..3)
                .map(|_| {
                    let started = Instant::now();
                    let found = lint_message(&forbidden, &policy, &message, html, locale);
                    (started.elapsed().as_secs_f64(), found)
                })
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .expect("three runs")
        };
        let (small, found_small) = time(base);
        let (large, found_large) = time(base * factor);
        let ratio = large / small.max(1e-9);
        println!(
            "{name:28} {:>8.2} ms ({found_small} findings)  {:>9.2} ms ({found_large})  {ratio:>6.1}x",
            small * 1e3,
            large * 1e3
        );
        if ratio > worst.0 {
            worst = (ratio, name);
        }
    }
    println!(
        "lint linearity: worst {:.1} for {factor}x the input ({}); bound {}",
        worst.0,
        worst.1,
        2 * factor
    );
    Ok(())
}

/// Everything the send path does to one message body, as the daemon does
/// it: the visible text of HTML, the word lint with every hit traced to its
/// origin (the message itself stands in for an order field, the worst
/// case), and the amazon profile. Returns the number of findings.
fn lint_message(
    forbidden: &Forbidden,
    policy: &Policy,
    message: &str,
    html: bool,
    locale: &str,
) -> usize {
    let visible = html.then(|| lint::visible_text(message));
    let text = visible.as_deref().unwrap_or(message);
    let part = if html { Part::Html } else { Part::Text };
    let fields = [("order.product_name".to_string(), message)];
    let template = TemplateHits::default();
    let mut found = 0;
    let attributor = lint::Attributor::new(forbidden, &template, &fields);
    for hit in forbidden.scan_locale(text, Some(locale)) {
        let _ = (part, attributor.origin(&hit));
        found += 1;
    }
    let parts = MessageParts {
        subject: "Order 111-2223334-5556667",
        text: if html { "" } else { message },
        html: html.then_some(message),
        html_text: visible.as_deref(),
        raw: message.as_bytes(),
        order_id: "111-2223334-5556667",
        order_links: &[],
    };
    found + policy::check(policy, &parts).len()
}

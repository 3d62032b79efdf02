//! `followupd show ID`: a stored message, decoded for people (headers,
//! text body, the HTML body as a mail client shows its text), or with
//! `--raw` exactly as it was handed to the server.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use mail_parser::{Address, HeaderValue, MessageParser, PartType};

use crate::store::Store;

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// An id from `followupd logs`.
    id: i64,
    /// The exact bytes handed to the server, encodings and all.
    #[arg(long)]
    raw: bool,
}

/// The headers a person reading a sent message wants, in this order.
const HEADERS: [&str; 8] = [
    "Date",
    "From",
    "Reply-To",
    "To",
    "Subject",
    "Message-ID",
    "In-Reply-To",
    "References",
];

pub(super) async fn run(args: ShowArgs, config: &Path) -> Result<ExitCode> {
    let id = args.id;
    let config = super::load(config)?;
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
        "# entry {id}: {} {} to {}, {} at {}{}",
        entry.order_id,
        entry.stage,
        entry.to,
        entry.status,
        entry.at.to_rfc3339(),
        entry
            .detail
            .as_deref()
            .filter(|d| d.starts_with("manual resend"))
            .map(|d| format!(" ({d})"))
            .unwrap_or_default()
    );
    if args.raw {
        std::io::stdout().write_all(&message.raw)?;
    } else {
        print!("{}", decoded(&message.raw));
    }
    Ok(ExitCode::SUCCESS)
}

/// The message as a person reads it: decoded headers, the text body, and
/// the HTML body's visible text. Falls back to the raw text for anything
/// that does not parse as MIME.
pub(crate) fn decoded(raw: &[u8]) -> String {
    let Some(message) = MessageParser::default().parse(raw) else {
        return String::from_utf8_lossy(raw).into_owned();
    };
    let mut out = String::new();
    for name in HEADERS {
        for header in message
            .headers()
            .iter()
            .filter(|h| h.name().eq_ignore_ascii_case(name))
        {
            let value = match header.value() {
                // Message ids are stored without their angle brackets.
                HeaderValue::Text(id)
                    if matches!(name, "Message-ID" | "In-Reply-To" | "References") =>
                {
                    format!("<{id}>")
                }
                other => header_text(other),
            };
            out.push_str(&format!("{name}: {value}\n"));
        }
    }
    let text_parts = (0..message.text_body_count()).filter_map(|i| message.text_part(i as u32));
    for part in text_parts {
        if let PartType::Text(text) = &part.body {
            out.push('\n');
            out.push_str(text);
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    let html_parts = (0..message.html_body_count()).filter_map(|i| message.html_part(i as u32));
    for part in html_parts {
        if let PartType::Html(html) = &part.body {
            out.push_str("\n--- HTML body, as text ---\n");
            // Block elements each start a line; a screen shows at most one
            // empty line between paragraphs.
            let text = crate::lint::visible_text(html);
            let mut blank = true;
            for line in text.lines().map(str::trim_end) {
                if line.trim().is_empty() {
                    if !blank {
                        out.push('\n');
                    }
                    blank = true;
                } else {
                    out.push_str(line.trim_start());
                    out.push('\n');
                    blank = false;
                }
            }
        }
    }
    out
}

fn header_text(value: &HeaderValue) -> String {
    match value {
        HeaderValue::Text(t) => t.to_string(),
        HeaderValue::TextList(list) => list
            .iter()
            .map(|id| format!("<{id}>"))
            .collect::<Vec<_>>()
            .join(" "),
        HeaderValue::DateTime(d) => d.to_rfc3339(),
        HeaderValue::Address(Address::List(list)) => list
            .iter()
            .map(|a| match (&a.name, &a.address) {
                (Some(name), Some(addr)) => format!("{name} <{addr}>"),
                (None, Some(addr)) => addr.to_string(),
                (Some(name), None) => name.to_string(),
                (None, None) => String::new(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        HeaderValue::Address(Address::Group(groups)) => groups
            .iter()
            .map(|g| g.name.as_deref().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    }
}

//! Reading what comes back after a message has left: delivery status
//! notifications (RFC 3464, `multipart/report; report-type=delivery-status`)
//! and abuse reports (RFC 5965 ARF, `report-type=feedback-report`), into
//! typed reports.
//!
//! Pure: bytes in, a [`Report`] or a [`BounceError`] out. MIME structure
//! and transfer encodings are mail-parser's; the field blocks inside the
//! report parts are read by `fields`. Input is bounded by
//! [`MAX_REPORT_BYTES`], and anything unreadable is an error that says
//! why, never a panic: reports come from anyone on the internet.
//! [`intake`] acts on a report (matches it to the message it answers,
//! records it, suppresses the address).

mod fields;
pub mod inbox;
pub mod intake;

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
use serde::Serialize;

pub use fields::StatusCode;

/// Reports larger than this are refused unread. A bounce that returns a
/// whole message with its attachments rarely passes a few megabytes.
pub const MAX_REPORT_BYTES: usize = 16 * 1024 * 1024;

/// Why a piece of mail could not be read as a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BounceError {
    #[error("{size} bytes is larger than the {MAX_REPORT_BYTES}-byte limit for a report")]
    TooLarge { size: usize },
    #[error("not an email message (no header fields could be read)")]
    NotMail,
    #[error(
        "not a delivery status notification or feedback report \
         (no message/delivery-status or message/feedback-report part)"
    )]
    NotAReport,
    #[error("the {part} part holds no {what}")]
    Incomplete {
        part: &'static str,
        what: &'static str,
    },
}

/// What a piece of mail turned out to be.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Report {
    /// A delivery status notification.
    Delivery(DeliveryReport),
    /// An abuse or other feedback report.
    Feedback(FeedbackReport),
    /// An automatic reply (vacation notice, out of office, RFC 3834): says
    /// nothing about deliverability and is not acted on.
    AutoReply { from: Option<String>, why: String },
}

/// An RFC 3464 report: one status for each recipient it covers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryReport {
    pub reporting_mta: Option<String>,
    pub recipients: Vec<RecipientStatus>,
    /// The Message-ID of the message it reports on, from the returned
    /// message or its headers (without angle brackets).
    pub original_message_id: Option<String>,
}

/// What happened to one recipient.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecipientStatus {
    /// The address as the report gives it (Final-Recipient, or
    /// Original-Recipient when that is all there is).
    pub recipient: String,
    pub action: Action,
    /// The enhanced status code, when the report has a readable one.
    #[serde(serialize_with = "serialize_status")]
    pub status: Option<StatusCode>,
    pub outcome: Outcome,
    pub diagnostic: Option<String>,
    pub smtp_code: Option<u16>,
    pub remote_mta: Option<String>,
}

fn serialize_status<S: serde::Serializer>(
    s: &Option<StatusCode>,
    ser: S,
) -> Result<S::Ok, S::Error> {
    match s {
        Some(code) => ser.serialize_some(&code.to_string()),
        None => ser.serialize_none(),
    }
}

/// The `Action` field (RFC 3464 section 2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Failed,
    Delayed,
    Delivered,
    Relayed,
    Expanded,
    /// Absent or not one of the five.
    Unknown,
}

impl Action {
    fn parse(value: Option<&str>) -> Self {
        let word = value
            .and_then(|v| v.split_whitespace().next())
            .unwrap_or_default()
            .to_ascii_lowercase();
        match word.as_str() {
            "failed" => Self::Failed,
            "delayed" => Self::Delayed,
            "delivered" => Self::Delivered,
            "relayed" => Self::Relayed,
            "expanded" => Self::Expanded,
            _ => Self::Unknown,
        }
    }
}

/// What a recipient's status means for further mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A permanent failure (5.x.x, or a failure without a code): suppress.
    Permanent,
    /// A temporary failure the MTA gave up on (4.x.x): counted.
    Temporary,
    /// Still being retried: a warning, recorded only.
    Delayed,
    /// Delivered, relayed or expanded: nothing wrong.
    Fine,
}

impl Outcome {
    fn of(action: Action, status: Option<StatusCode>) -> Self {
        match (action, status.map(|s| s.class)) {
            (Action::Delivered | Action::Relayed | Action::Expanded, _) | (_, Some(2)) => {
                Self::Fine
            }
            (Action::Delayed, _) => Self::Delayed,
            (_, Some(4)) => Self::Temporary,
            (Action::Failed, _) | (_, Some(5)) => Self::Permanent,
            (Action::Unknown, _) => Self::Delayed,
        }
    }
}

/// An RFC 5965 report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedbackReport {
    /// `abuse`, `fraud`, `virus`, `other`, `not-spam`, `auth-failure`, …
    pub feedback_type: String,
    pub user_agent: Option<String>,
    /// Original-Rcpt-To, else the To of the returned message: the buyer who
    /// complained, unless the reporter redacted it.
    pub recipient: Option<String>,
    pub original_message_id: Option<String>,
    pub reported_domain: Option<String>,
    pub source_ip: Option<String>,
}

impl FeedbackReport {
    /// Whether the report is a complaint about the message (as opposed to a
    /// note that it was not spam, or about its authentication).
    pub fn is_complaint(&self) -> bool {
        matches!(
            self.feedback_type.to_ascii_lowercase().as_str(),
            "abuse" | "fraud" | "virus" | "other"
        )
    }
}

/// Reads one piece of mail.
pub fn parse(raw: &[u8]) -> Result<Report, BounceError> {
    if raw.len() > MAX_REPORT_BYTES {
        return Err(BounceError::TooLarge { size: raw.len() });
    }
    let message = MessageParser::default()
        .parse(raw)
        .filter(|m| !m.headers().is_empty())
        .ok_or(BounceError::NotMail)?;
    for part in &message.parts {
        let Some(ct) = part.content_type() else {
            continue;
        };
        if !ct.ctype().eq_ignore_ascii_case("message") {
            continue;
        }
        let subtype = ct.subtype().unwrap_or_default().to_ascii_lowercase();
        match subtype.as_str() {
            // RFC 6533's internationalised variant has the same fields.
            "delivery-status" | "global-delivery-status" => {
                return delivery(&message, part.contents()).map(Report::Delivery)
            }
            "feedback-report" => return feedback(&message, part.contents()).map(Report::Feedback),
            _ => {}
        }
    }
    // Some MTAs label a report multipart/report and then write its parts
    // without the boundaries; their fields are still there to be read.
    if is_delivery_report(&message) {
        if let Ok(report) = delivery(&message, raw) {
            return Ok(Report::Delivery(report));
        }
    }
    match auto_reply(&message) {
        Some(why) => Ok(Report::AutoReply {
            from: message
                .from()
                .and_then(|a| a.first())
                .and_then(|a| a.address())
                .map(str::to_string),
            why,
        }),
        None => Err(BounceError::NotAReport),
    }
}

fn delivery(message: &Message<'_>, body: &[u8]) -> Result<DeliveryReport, BounceError> {
    let text = String::from_utf8_lossy(body);
    let groups = fields::groups(&text);
    let reporting_mta = groups
        .iter()
        .find_map(|g| g.get("Reporting-MTA"))
        .map(|v| fields::typed_address(v).to_string());
    let recipients: Vec<RecipientStatus> = groups
        .iter()
        .filter_map(|g| {
            let recipient = g.get("Final-Recipient").or(g.get("Original-Recipient"))?;
            let action = Action::parse(g.get("Action"));
            let diagnostic = g.get("Diagnostic-Code").map(|d| {
                // `smtp; 550 …`: the type says how to read the rest.
                d.split_once(';')
                    .map_or(d, |(_, text)| text)
                    .trim()
                    .to_string()
            });
            let status = g
                .get("Status")
                .and_then(StatusCode::find)
                .or_else(|| diagnostic.as_deref().and_then(StatusCode::find));
            Some(RecipientStatus {
                recipient: fields::typed_address(recipient).to_string(),
                action,
                status,
                outcome: Outcome::of(action, status),
                smtp_code: diagnostic.as_deref().and_then(fields::smtp_code),
                diagnostic,
                remote_mta: g
                    .get("Remote-MTA")
                    .map(|v| fields::typed_address(v).to_string()),
            })
        })
        .collect();
    if recipients.is_empty() {
        return Err(BounceError::Incomplete {
            part: "message/delivery-status",
            what: "recipient (Final-Recipient) field",
        });
    }
    Ok(DeliveryReport {
        reporting_mta,
        recipients,
        original_message_id: original_headers(message).and_then(|o| o.message_id),
    })
}

fn feedback(message: &Message<'_>, body: &[u8]) -> Result<FeedbackReport, BounceError> {
    let text = String::from_utf8_lossy(body);
    let groups = fields::groups(&text);
    let get = |name: &str| groups.iter().find_map(|g| g.get(name)).map(str::to_string);
    let feedback_type = get("Feedback-Type").ok_or(BounceError::Incomplete {
        part: "message/feedback-report",
        what: "Feedback-Type field",
    })?;
    let original = original_headers(message);
    let recipient = get("Original-Rcpt-To")
        .map(|r| fields::typed_address(&r).to_string())
        .or_else(|| original.as_ref().and_then(|o| o.to.clone()));
    Ok(FeedbackReport {
        feedback_type: feedback_type.to_ascii_lowercase(),
        user_agent: get("User-Agent"),
        recipient,
        original_message_id: original.and_then(|o| o.message_id),
        reported_domain: get("Reported-Domain"),
        source_ip: get("Source-IP"),
    })
}

/// What a report says about the message it is about.
struct Original {
    message_id: Option<String>,
    to: Option<String>,
}

/// The headers of the returned message: a `message/rfc822` part (or RFC
/// 6532's `message/global`), or a `text/rfc822-headers` part.
fn original_headers(message: &Message<'_>) -> Option<Original> {
    let of = |m: &Message<'_>| Original {
        message_id: m.message_id().map(str::to_string),
        to: m
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .map(str::to_string),
    };
    for part in message.parts.iter().skip(1) {
        if let PartType::Message(nested) = &part.body {
            return Some(of(nested));
        }
        let is_headers = part.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("text")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("rfc822-headers"))
        });
        if is_headers {
            let headers = MessageParser::default().parse_headers(part.contents())?;
            return Some(of(&headers));
        }
    }
    None
}

/// Whether the message says it is a delivery status notification.
fn is_delivery_report(message: &Message<'_>) -> bool {
    message.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
            && ct
                .attribute("report-type")
                .is_some_and(|t| t.eq_ignore_ascii_case("delivery-status"))
    })
}

/// Subject prefixes of vacation programs that set no header saying so.
const AUTO_REPLY_SUBJECTS: [&str; 5] = [
    "auto reply:",
    "auto-reply:",
    "autoreply:",
    "automatic reply:",
    "out of office",
];

/// Why `message` is an automatic reply, if it is one. RFC 3834's
/// `Auto-Submitted`, and the older conventions vacation programs and
/// Exchange use.
fn auto_reply(message: &Message<'_>) -> Option<String> {
    let header = |name: &str| {
        message
            .header_raw(name)
            .map(|v| v.trim().to_ascii_lowercase())
    };
    if let Some(v) = header("Auto-Submitted").filter(|v| v != "no") {
        return Some(format!("Auto-Submitted: {v}"));
    }
    for name in ["X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress"] {
        if let Some(v) = header(name) {
            return Some(format!("{name}: {v}"));
        }
    }
    if let Some(v) = header("Precedence").filter(|v| v == "auto_reply") {
        return Some(format!("Precedence: {v}"));
    }
    let subject = message.subject().unwrap_or_default().trim().to_lowercase();
    AUTO_REPLY_SUBJECTS
        .iter()
        .find(|p| subject.starts_with(*p))
        .map(|_| format!("Subject: {subject}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_and_empty_input_are_errors() {
        let big = vec![b'a'; MAX_REPORT_BYTES + 1];
        assert_eq!(
            parse(&big),
            Err(BounceError::TooLarge {
                size: MAX_REPORT_BYTES + 1
            })
        );
        assert_eq!(parse(b""), Err(BounceError::NotMail));
        // Bytes that are not mail are not a report, whatever else they are.
        assert!(parse(b"\x00\xff\xfe garbage").is_err());
    }

    #[test]
    fn a_report_without_recipients_is_incomplete() {
        let raw = b"From: MAILER-DAEMON@mx.example\r\nContent-Type: multipart/report; \
            report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
            oops\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\
            \r\n--b--\r\n";
        assert!(matches!(parse(raw), Err(BounceError::Incomplete { .. })));
    }

    #[test]
    fn outcomes_follow_the_status_class() {
        let code = StatusCode::find;
        assert_eq!(
            Outcome::of(Action::Failed, code("5.1.1")),
            Outcome::Permanent
        );
        assert_eq!(
            Outcome::of(Action::Failed, code("4.0.0")),
            Outcome::Temporary
        );
        assert_eq!(Outcome::of(Action::Failed, None), Outcome::Permanent);
        assert_eq!(
            Outcome::of(Action::Delayed, code("4.4.7")),
            Outcome::Delayed
        );
        assert_eq!(Outcome::of(Action::Delivered, code("2.0.0")), Outcome::Fine);
    }
}

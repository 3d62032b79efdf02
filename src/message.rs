//! Wrapping a rendered message into a standard email.
//!
//! lettre builds the MIME structure and encodes every header and body, so a
//! buyer name with non-ASCII letters is encoded correctly and no body text,
//! not even a line holding a single `.`, travels as raw bytes. The Message-ID
//! is derived from the order and stage, so every attempt at the same stage
//! carries the same ID and a receiving server can recognise a repeat.

use chrono::{DateTime, Utc};
use lettre::address::Envelope;
use lettre::message::header::{ContentTransferEncoding, HeaderName, HeaderValue};
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::Address;

use crate::config::Sender;
use crate::order::{Line, Order, OrderKey};
use crate::render::Rendered;

/// Why a message could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("recipient '{address}' is not deliverable: {reason}")]
    Recipient { address: String, reason: String },
    #[error("cannot build the message: {0}")]
    Build(String),
}

/// The unsubscribe links of one message (RFC 2369 `List-Unsubscribe`,
/// with RFC 8058's one-click `List-Unsubscribe-Post`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListUnsubscribe {
    /// `https://…/u/TOKEN`: a POST there unsubscribes.
    pub url: String,
    /// A `mailto:` alternative for mail clients without one-click.
    pub mailto: Option<String>,
}

impl ListUnsubscribe {
    fn header_value(&self) -> String {
        match &self.mailto {
            Some(mailto) => format!("<{}>, <mailto:{mailto}?subject=unsubscribe>", self.url),
            None => format!("<{}>", self.url),
        }
    }
}

/// A finished message, ready for a transport.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Without angle brackets.
    pub message_id: String,
    pub from: Address,
    pub to: Address,
    pub subject: String,
    /// The complete message as handed to the transport.
    pub raw: Vec<u8>,
}

/// The Message-ID for one stage of one order: the same on every attempt.
/// Characters a Message-ID cannot hold are written as `=XX`.
pub fn message_id(key: &OrderKey, stage: &str, domain: &str) -> String {
    let mut id = String::from("followupd.");
    for part in [stage, key.marketplace.as_str(), key.order_id.as_str()] {
        for byte in part.bytes() {
            if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
                id.push(byte as char);
            } else {
                id.push_str(&format!("={byte:02X}"));
            }
        }
        id.push('.');
    }
    id.pop();
    format!("{id}@{domain}")
}

/// The order and stage a Message-ID of ours names (the inverse of
/// [`message_id`]), or `None` for any other Message-ID. Angle brackets
/// around it are allowed.
pub fn parse_message_id(id: &str) -> Option<(OrderKey, String)> {
    let id = id.trim();
    let id = id
        .strip_prefix('<')
        .and_then(|i| i.strip_suffix('>'))
        .unwrap_or(id);
    let (local, _domain) = id.rsplit_once('@')?;
    let mut parts = local.strip_prefix("followupd.")?.split('.');
    let (stage, marketplace, order_id) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let key = OrderKey {
        marketplace: Line::parse("marketplace", &unescape(marketplace)?).ok()?,
        order_id: Line::parse("order_id", &unescape(order_id)?).ok()?,
    };
    Some((key, unescape(stage)?))
}

/// Undoes the `=XX` escapes of [`message_id`].
fn unescape(part: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(part.len());
    let mut rest = part.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'=' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// Builds the email for `rendered`.
pub fn build(
    order: &Order,
    sender: &Sender,
    stage: &str,
    rendered: &Rendered,
    unsubscribe: Option<&ListUnsubscribe>,
    now: DateTime<Utc>,
) -> Result<Outgoing, MessageError> {
    let to: Address =
        order
            .buyer_email
            .as_str()
            .parse()
            .map_err(|e: lettre::address::AddressError| MessageError::Recipient {
                address: order.buyer_email.as_str().to_string(),
                reason: e.to_string(),
            })?;
    // The envelope is given, not derived from the headers: lettre derives it
    // by parsing its own `To:` header back, and its header parser does not
    // read quoted local parts ("john doe"@example.com) or domain literals,
    // which are valid addresses the import accepts.
    let envelope =
        Envelope::new(Some(sender.from.email.clone()), vec![to.clone()]).map_err(|e| {
            MessageError::Recipient {
                address: order.buyer_email.as_str().to_string(),
                reason: e.to_string(),
            }
        })?;
    let message_id = message_id(&order.key, stage, sender.from.email.domain());
    let mut builder = lettre::Message::builder()
        .envelope(envelope)
        .from(sender.from.clone())
        .to(Mailbox::new(
            order.buyer_name.as_ref().map(|n| n.as_str().to_string()),
            to.clone(),
        ))
        .subject(rendered.subject.clone())
        .message_id(Some(format!("<{message_id}>")))
        .date(now.into());
    if let Some(reply_to) = &sender.reply_to {
        builder = builder.reply_to(reply_to.clone());
    }
    if let Some(links) = unsubscribe {
        builder = builder
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                links.header_value(),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".into(),
            ));
    }
    let text = SinglePart::builder()
        .header(ContentType::TEXT_PLAIN)
        .header(ContentTransferEncoding::QuotedPrintable)
        .body(rendered.text.clone());
    let message = match &rendered.html {
        Some(html) => builder.multipart(
            MultiPart::alternative().singlepart(text).singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .header(ContentTransferEncoding::QuotedPrintable)
                    .body(html.clone()),
            ),
        ),
        None => builder.singlepart(text),
    }
    .map_err(|e| MessageError::Build(e.to_string()))?;
    Ok(Outgoing {
        message_id,
        from: sender.from.email.clone(),
        to,
        subject: rendered.subject.clone(),
        raw: message.formatted(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::{sample_order, BuyerEmail};
    use crate::policy::{Policy, Profile};

    fn sender() -> Sender {
        Sender {
            from: "Shop <shop@shop.example>".parse().unwrap(),
            reply_to: None,
            shop_name: "Shop".into(),
            policy: Policy::new(Profile::None),
            disabled_stages: Default::default(),
        }
    }

    fn rendered() -> Rendered {
        Rendered {
            subject: "Your order".into(),
            text: "Hello".into(),
            html: None,
            html_text: None,
            locale: "en".into(),
            folder: "templates/en".into(),
        }
    }

    #[test]
    fn both_unsubscribe_headers_are_written() {
        let order = sample_order("shop");
        let links = ListUnsubscribe {
            url: "https://mail.shop.example/u/AQRzaG9wMTAwMQ".into(),
            mailto: Some("unsubscribe@shop.example".into()),
        };
        let built = build(
            &order,
            &sender(),
            "shipment",
            &rendered(),
            Some(&links),
            Utc::now(),
        )
        .unwrap();
        // Unfolded: lettre folds a long header line at a space.
        let raw = String::from_utf8(built.raw).unwrap().replace("\r\n ", " ");
        assert!(
            raw.contains(
                "List-Unsubscribe: <https://mail.shop.example/u/AQRzaG9wMTAwMQ>, \
                 <mailto:unsubscribe@shop.example?subject=unsubscribe>\r\n"
            ),
            "{raw}"
        );
        assert!(raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
        let plain = build(&order, &sender(), "shipment", &rendered(), None, Utc::now()).unwrap();
        assert!(!String::from_utf8(plain.raw)
            .unwrap()
            .contains("List-Unsubscribe"));
    }

    #[test]
    fn our_message_ids_read_back() {
        let order = sample_order("amazon.de");
        let mut key = order.key.clone();
        key.order_id = Line::parse("order_id", "112-0000.1 =x").unwrap();
        let id = message_id(&key, "follow_up", "shop.example");
        assert_eq!(
            parse_message_id(&format!("<{id}>")),
            Some((key, "follow_up".to_string()))
        );
        assert_eq!(parse_message_id("<abc@mail.example>"), None);
        assert_eq!(parse_message_id("followupd.a.b@x"), None);
        assert_eq!(parse_message_id("followupd.a.b.c=ZZ@x"), None);
    }

    #[test]
    fn every_address_the_import_accepts_can_be_built() {
        for address in [
            "plain@example.com",
            "\"quoted\"@example.com",
            "\"john doe\"@example.com",
            "\"a@b\"@example.com",
            "\"very.(),:;<>[]\\\".unusual\"@example.com",
            "user@[127.0.0.1]",
            "user@[IPv6:2001:db8::1]",
            "anna@bücher.example",
            "用户@例子.广告",
        ] {
            let mut order = sample_order("amazon");
            order.buyer_email = BuyerEmail::parse(address).unwrap();
            let built = build(&order, &sender(), "shipment", &rendered(), None, Utc::now())
                .unwrap_or_else(|e| panic!("{address}: {e}"));
            let address = order.buyer_email.as_str();
            assert_eq!(built.to.to_string(), address);
            let raw = String::from_utf8_lossy(&built.raw);
            let to = raw.lines().find(|l| l.starts_with("To:")).unwrap();
            assert!(to.ends_with(&format!("<{address}>")), "{address}: {to}");
        }
    }
}

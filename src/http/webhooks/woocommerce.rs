//! `POST /webhooks/woocommerce`: WooCommerce's order webhooks.
//!
//! WooCommerce signs the body (`X-WC-Webhook-Signature`, base64 HMAC-SHA256
//! with the webhook's secret) and names the topic in `X-WC-Webhook-Topic`.
//! When a webhook is created it first sends an unsigned, form-encoded ping
//! (`webhook_id=N`); it is answered 200 and nothing is read or stored. A
//! delivery is recognised by `X-WC-Webhook-Delivery-ID` and applied once;
//! an order older (by `date_modified_gmt`) than the stored one changes
//! nothing. The body of `order.created` and `order.updated` is the REST
//! API's order; `order.deleted` carries only the id, and ends the order
//! like a cancellation.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;

use super::{buyer_email, commit, full_name, parse_json, respond, signed, Outcome, WebhookError};
use crate::http::{header, read_body, App};
use crate::import::OrderRecord;
use crate::order::{parse_url, Item, Line, Order, OrderKey, OrderStatus, ZoneSource};
use crate::store::{Change, Delivery, LineCount, OrderChange};

const SIGNATURE: &str = "X-WC-Webhook-Signature";

pub async fn receive(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let mut topic = "";
    let result = handle(&app, &headers, body, &mut topic).await;
    respond(&app, "woocommerce", topic, result)
}

async fn handle(
    app: &App,
    headers: &HeaderMap,
    body: Body,
    topic_label: &mut &'static str,
) -> Result<Outcome, WebhookError> {
    let Some(source) = &app.http.woocommerce else {
        return Err(WebhookError::NotConfigured("woocommerce"));
    };
    let body = read_body(app, headers, body)
        .await
        .map_err(WebhookError::Body)?;
    let Some(signature) = header(headers, SIGNATURE) else {
        if is_ping(&body) {
            *topic_label = "ping";
            return Ok(Outcome::Pong);
        }
        return Err(WebhookError::MissingSignature(SIGNATURE));
    };
    if !signed(&app.woocommerce_keys, &body, signature) {
        return Err(WebhookError::BadSignature);
    }
    let topic = header(headers, "X-WC-Webhook-Topic")
        .ok_or(WebhookError::MissingHeader("X-WC-Webhook-Topic"))?;
    *topic_label = match topic {
        "order.created" => "order.created",
        "order.updated" => "order.updated",
        "order.deleted" => "order.deleted",
        _ => "other",
    };
    if *topic_label == "other" {
        return Ok(Outcome::Ignored(format!("topic {topic}")));
    }
    let delivery_id = header(headers, "X-WC-Webhook-Delivery-ID")
        .ok_or(WebhookError::MissingHeader("X-WC-Webhook-Delivery-ID"))?;
    let delivery = Some(Delivery {
        source: "woocommerce",
        id: delivery_id.to_string(),
    });
    let marketplace = Line::parse("marketplace", &source.marketplace)?;
    let order: WooOrder = parse_json(&body)?;
    let change = if topic == "order.deleted" {
        OrderChange::Cancelled {
            key: key(marketplace, order.id)?,
        }
    } else {
        order.into_change(marketplace)?
    };
    commit(app, Change { delivery, change }).await
}

/// WooCommerce's ping: `webhook_id=` and digits, form-encoded.
fn is_ping(body: &[u8]) -> bool {
    body.strip_prefix(b"webhook_id=")
        .is_some_and(|id| !id.is_empty() && id.iter().all(u8::is_ascii_digit))
}

fn key(marketplace: Line, id: Option<u64>) -> Result<OrderKey, WebhookError> {
    let id = id.ok_or_else(|| WebhookError::Unusable("no order id".into()))?;
    Ok(OrderKey {
        marketplace,
        order_id: Line::parse("order_id", &id.to_string())?,
    })
}

/// WooCommerce's `*_gmt` times: `2017-03-22T19:28:08`, UTC without an offset.
fn gmt(value: Option<&str>) -> Option<DateTime<Utc>> {
    let value = value?.trim();
    NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

/// Absent and `null` both read as empty.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The parts of WooCommerce's order resource followupd reads.
#[derive(Debug, Deserialize)]
struct WooOrder {
    id: Option<u64>,
    number: Option<String>,
    status: Option<String>,
    date_modified_gmt: Option<String>,
    date_completed_gmt: Option<String>,
    billing: Option<Address>,
    shipping: Option<Address>,
    #[serde(default, deserialize_with = "nullable")]
    line_items: Vec<LineItem>,
    #[serde(default, deserialize_with = "nullable")]
    refunds: Vec<serde_json::Value>,
    #[serde(default, deserialize_with = "nullable")]
    meta_data: Vec<Meta>,
}

#[derive(Debug, Deserialize)]
struct Address {
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    country: Option<String>,
    state: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LineItem {
    id: u64,
    name: Option<String>,
    sku: Option<String>,
    #[serde(default)]
    quantity: i64,
}

#[derive(Debug, Deserialize)]
struct Meta {
    key: Option<String>,
    value: Option<serde_json::Value>,
}

impl WooOrder {
    fn into_change(self, marketplace: Line) -> Result<OrderChange, WebhookError> {
        let key = key(marketplace, self.id)?;
        let billing = self.billing.as_ref();
        let buyer_email = buyer_email([billing.and_then(|b| b.email.as_deref())])?;
        let buyer_name = full_name(
            billing.and_then(|b| b.first_name.as_deref()),
            billing.and_then(|b| b.last_name.as_deref()),
        )?;
        let product = self
            .line_items
            .iter()
            .find_map(|l| l.name.as_deref())
            .map(decode_entities)
            .unwrap_or_default();
        let product_name = Line::parse("product_name", &product)?;
        let place = self
            .shipping
            .as_ref()
            .filter(|s| s.country.as_deref().is_some_and(|c| !c.is_empty()))
            .or(billing);
        let time_zone = place.and_then(|a| {
            crate::import::zone::from_address(
                a.country.as_deref()?,
                a.state.as_deref().unwrap_or(""),
            )
        });
        let status_text = self.status.as_deref().unwrap_or("");
        let given = match status_text {
            "cancelled" | "failed" | "trash" => Some(OrderStatus::Cancelled),
            "refunded" => Some(OrderStatus::Refunded),
            _ if !self.refunds.is_empty() => Some(OrderStatus::PartiallyRefunded),
            _ => None,
        };
        // WooCommerce itself knows no shipping: a completed order is one
        // the shop has sent off.
        let shipped_at = if status_text == "completed" {
            gmt(self.date_completed_gmt.as_deref())
        } else {
            None
        };
        let status = given.unwrap_or(OrderStatus::inferred(shipped_at.is_some(), false));
        let tracking_url = parse_url("tracking_url", &self.tracking_link().unwrap_or_default())?;
        let mut extra = BTreeMap::new();
        if let Some(number) = self.number.as_deref().filter(|n| !n.trim().is_empty()) {
            Line::parse("order_name", number)?;
            extra.insert("order_name".to_string(), number.trim().to_string());
        }
        let version = gmt(self.date_modified_gmt.as_deref()).map_or(0, |t| t.timestamp());
        let record = OrderRecord {
            order: Order {
                key,
                buyer_email,
                buyer_name,
                product_name,
                locale: None,
                time_zone_source: if time_zone.is_some() {
                    ZoneSource::Address
                } else {
                    ZoneSource::Default
                },
                time_zone,
                shipped_at,
                delivered_at: None,
                status,
                complaint: false,
                opted_out: false,
                order_url: None,
                tracking_url,
                review_url: None,
                items: self.items(),
                extra,
            },
            status_given: given.is_some(),
            complaint_given: false,
        };
        Ok(OrderChange::Upsert {
            record: Box::new(record),
            version: Some(version),
            items: self.line_counts(),
        })
    }

    /// `order.items`, names as the buyer reads them.
    fn items(&self) -> Vec<Item> {
        self.line_items
            .iter()
            .filter_map(|l| {
                let name = decode_entities(l.name.as_deref()?);
                let quantity = l.quantity.max(1).to_string();
                Item::parse(&name, &quantity, l.sku.as_deref().unwrap_or(""), "").ok()
            })
            .collect()
    }

    /// Each line item's quantity, for telling a later refund full or partial.
    fn line_counts(&self) -> Vec<LineCount> {
        self.line_items
            .iter()
            .map(|l| LineCount {
                id: l.id.to_string(),
                quantity: l.quantity,
                refunded: 0,
            })
            .collect()
    }

    /// The tracking link the Shipment Tracking extension keeps in the
    /// order's meta data, if there is one.
    fn tracking_link(&self) -> Option<String> {
        let items = self
            .meta_data
            .iter()
            .find(|m| m.key.as_deref() == Some("_wc_shipment_tracking_items"))?
            .value
            .as_ref()?
            .as_array()?;
        items.iter().rev().find_map(|item| {
            item.get("custom_tracking_link")
                .and_then(|v| v.as_str())
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        })
    }
}

/// WooCommerce hands product names HTML-escaped (`Ship Your Idea &ndash;
/// Color: Black`); the buyer should read the characters.
fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let end = after.find(';').filter(|e| *e <= 10);
        let decoded = end.and_then(|e| {
            let name = &after[1..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "ndash" => Some('\u{2013}'),
                "mdash" => Some('\u{2014}'),
                "nbsp" => Some('\u{a0}'),
                _ => name
                    .strip_prefix("#x")
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &after[e + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_order_becomes_an_order() {
        let path = format!(
            "{}/tests/data/webhooks/woocommerce/order.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let order: WooOrder = parse_json(&std::fs::read(path).unwrap()).unwrap();
        let marketplace = Line::parse("marketplace", "woocommerce").unwrap();
        let OrderChange::Upsert {
            record, version, ..
        } = order.into_change(marketplace).unwrap()
        else {
            panic!("not an upsert");
        };
        let o = &record.order;
        assert_eq!(o.key.order_id.as_str(), "727");
        assert_eq!(o.buyer_email.as_str(), "john.doe@example.com");
        assert_eq!(o.buyer_name.as_ref().unwrap().as_str(), "John Doe");
        assert_eq!(o.product_name.as_str(), "Woo Single #1");
        assert_eq!(o.time_zone.unwrap().name(), "America/Los_Angeles");
        assert_eq!(o.status, OrderStatus::Pending);
        assert!(version.unwrap() > 0);
    }

    #[test]
    fn entities_and_pings() {
        assert_eq!(
            decode_entities("Ship Your Idea &ndash; Color: Black &amp; &#8217;x&#x41;"),
            "Ship Your Idea \u{2013} Color: Black & \u{2019}xA"
        );
        assert_eq!(decode_entities("AT&T & co"), "AT&T & co");
        assert!(is_ping(b"webhook_id=15"));
        assert!(!is_ping(b"webhook_id="));
        assert!(!is_ping(b"{\"id\":1}"));
    }
}

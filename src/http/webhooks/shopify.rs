//! `POST /webhooks/shopify`: Shopify's order, fulfillment and refund
//! webhooks.
//!
//! The signature (`X-Shopify-Hmac-Sha256`) is checked first; the topic
//! (`X-Shopify-Topic`) decides what the body is. Orders are keyed by
//! Shopify's numeric order id, the one every topic carries (fulfillments
//! and refunds name no order number); the order's name (`#1001`) reaches
//! templates as `order.extra.order_name`.
//!
//! Shopify retries a delivery until it sees a 2xx and may deliver one event
//! twice; a delivery is recognised by its topic with `X-Shopify-Event-Id`
//! (shared by the deliveries of one merchant action, which differ in topic)
//! or else `X-Shopify-Webhook-Id`, and applied once. The order topics carry
//! the order's `updated_at`: one older than the stored one changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{buyer_email, commit, full_name, parse_json, respond, signed, Outcome, WebhookError};
use crate::http::{header, read_body, App};
use crate::import::OrderRecord;
use crate::order::{parse_url, Item, Line, Order, OrderKey, OrderStatus, ZoneSource};
use crate::store::{Change, Delivery, LineCount, OrderChange};

const SIGNATURE: &str = "X-Shopify-Hmac-Sha256";

/// The topics followupd acts on; the label names the topic in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topic {
    /// `orders/create`, `orders/updated`, `orders/paid`, `orders/fulfilled`,
    /// `orders/cancelled`: the whole order.
    Order(&'static str),
    /// `fulfillments/create`, `fulfillments/update`: shipped, with tracking.
    Fulfillment(&'static str),
    /// `fulfillment_events/create`: a `delivered` event sets `delivered_at`.
    FulfillmentEvent,
    /// `refunds/create`.
    Refund,
    Other,
}

impl Topic {
    fn of(name: &str) -> Self {
        match name {
            "orders/create" => Self::Order("orders/create"),
            "orders/updated" => Self::Order("orders/updated"),
            "orders/paid" => Self::Order("orders/paid"),
            "orders/fulfilled" => Self::Order("orders/fulfilled"),
            "orders/cancelled" => Self::Order("orders/cancelled"),
            "fulfillments/create" => Self::Fulfillment("fulfillments/create"),
            "fulfillments/update" => Self::Fulfillment("fulfillments/update"),
            "fulfillment_events/create" => Self::FulfillmentEvent,
            "refunds/create" => Self::Refund,
            _ => Self::Other,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Order(name) | Self::Fulfillment(name) => name,
            Self::FulfillmentEvent => "fulfillment_events/create",
            Self::Refund => "refunds/create",
            Self::Other => "other",
        }
    }
}

pub async fn receive(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let mut topic = "";
    let result = handle(&app, &headers, body, &mut topic).await;
    respond(&app, "shopify", topic, result)
}

async fn handle(
    app: &App,
    headers: &HeaderMap,
    body: Body,
    topic_label: &mut &'static str,
) -> Result<Outcome, WebhookError> {
    let Some(source) = &app.http.shopify else {
        return Err(WebhookError::NotConfigured("shopify"));
    };
    let signature = header(headers, SIGNATURE).ok_or(WebhookError::MissingSignature(SIGNATURE))?;
    let body = read_body(app, headers, body)
        .await
        .map_err(WebhookError::Body)?;
    if !signed(&app.shopify_keys, &body, signature) {
        return Err(WebhookError::BadSignature);
    }
    let name =
        header(headers, "X-Shopify-Topic").ok_or(WebhookError::MissingHeader("X-Shopify-Topic"))?;
    let topic = Topic::of(name);
    *topic_label = topic.label();
    if topic == Topic::Other {
        return Ok(Outcome::Ignored(format!("topic {name}")));
    }
    let event = header(headers, "X-Shopify-Event-Id")
        .or_else(|| header(headers, "X-Shopify-Webhook-Id"))
        .ok_or(WebhookError::MissingHeader("X-Shopify-Event-Id"))?;
    let delivery = Some(Delivery {
        source: "shopify",
        id: format!("{} {event}", topic.label()),
    });
    let marketplace = Line::parse("marketplace", &source.marketplace)?;
    let change = match topic {
        Topic::Order(_) => {
            let order: ShopifyOrder = parse_json(&body)?;
            order.into_change(marketplace)?
        }
        Topic::Fulfillment(_) => {
            let fulfillment: Fulfillment = parse_json(&body)?;
            if fulfillment.is_void() {
                return Ok(Outcome::Ignored(format!(
                    "fulfillment status {}",
                    fulfillment.status.unwrap_or_default()
                )));
            }
            OrderChange::Shipped {
                key: key(marketplace, fulfillment.order_id)?,
                at: instant("created_at", fulfillment.created_at.as_deref())?,
                tracking_url: fulfillment.tracking_url()?,
            }
        }
        Topic::FulfillmentEvent => {
            let event: FulfillmentEvent = parse_json(&body)?;
            if event.status.as_deref() != Some("delivered") {
                return Ok(Outcome::Ignored(format!(
                    "fulfillment event {}",
                    event.status.unwrap_or_default()
                )));
            }
            OrderChange::Delivered {
                key: key(marketplace, event.order_id)?,
                at: instant("happened_at", event.happened_at.as_deref())?,
            }
        }
        Topic::Refund => {
            let refund: Refund = parse_json(&body)?;
            OrderChange::Refunded {
                key: key(marketplace, refund.order_id)?,
                lines: refund
                    .refund_line_items
                    .iter()
                    .map(|l| (l.line_item_id.to_string(), l.quantity))
                    .collect(),
            }
        }
        Topic::Other => unreachable!("answered above"),
    };
    commit(app, Change { delivery, change }).await
}

fn key(marketplace: Line, order_id: Option<u64>) -> Result<OrderKey, WebhookError> {
    let id = order_id.ok_or_else(|| WebhookError::Unusable("no order_id".into()))?;
    Ok(OrderKey {
        marketplace,
        order_id: Line::parse("order_id", &id.to_string())?,
    })
}

/// An RFC 3339 time Shopify sends, such as `2021-12-31T19:00:00-05:00`.
fn instant(field: &str, value: Option<&str>) -> Result<DateTime<Utc>, WebhookError> {
    let value = value.ok_or_else(|| WebhookError::Unusable(format!("no {field}")))?;
    parse_time(value)
        .ok_or_else(|| WebhookError::Unusable(format!("{field} '{value}' is not an RFC 3339 time")))
}

fn parse_time(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Absent and `null` both read as empty.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The parts of Shopify's order resource followupd reads.
#[derive(Debug, Deserialize)]
struct ShopifyOrder {
    id: Option<u64>,
    name: Option<String>,
    email: Option<String>,
    contact_email: Option<String>,
    customer: Option<Customer>,
    customer_locale: Option<String>,
    updated_at: Option<String>,
    cancelled_at: Option<String>,
    financial_status: Option<String>,
    order_status_url: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    line_items: Vec<LineItem>,
    #[serde(default, deserialize_with = "nullable")]
    fulfillments: Vec<Fulfillment>,
    #[serde(default, deserialize_with = "nullable")]
    refunds: Vec<Refund>,
    shipping_address: Option<Address>,
    billing_address: Option<Address>,
}

#[derive(Debug, Deserialize)]
struct Customer {
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Address {
    first_name: Option<String>,
    last_name: Option<String>,
    country_code: Option<String>,
    province_code: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LineItem {
    id: u64,
    name: Option<String>,
    title: Option<String>,
    sku: Option<String>,
    price: Option<String>,
    #[serde(default)]
    quantity: i64,
}

#[derive(Debug, Deserialize)]
struct Fulfillment {
    order_id: Option<u64>,
    status: Option<String>,
    created_at: Option<String>,
    updated_at: Option<String>,
    shipment_status: Option<String>,
    tracking_url: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    tracking_urls: Vec<String>,
}

impl Fulfillment {
    /// A fulfillment that shipped nothing.
    fn is_void(&self) -> bool {
        matches!(
            self.status.as_deref(),
            Some("cancelled" | "error" | "failure")
        )
    }

    fn tracking_url(&self) -> Result<Option<Line>, WebhookError> {
        let url = self
            .tracking_url
            .as_deref()
            .or(self.tracking_urls.first().map(String::as_str))
            .unwrap_or("");
        Ok(parse_url("tracking_url", url)?)
    }
}

#[derive(Debug, Deserialize)]
struct FulfillmentEvent {
    order_id: Option<u64>,
    status: Option<String>,
    happened_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Refund {
    order_id: Option<u64>,
    #[serde(default, deserialize_with = "nullable")]
    refund_line_items: Vec<RefundLine>,
}

#[derive(Debug, Deserialize)]
struct RefundLine {
    line_item_id: u64,
    #[serde(default)]
    quantity: i64,
}

/// Shipped at, delivered at, tracking link.
type Shipping = (Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<Line>);

impl ShopifyOrder {
    /// The order as followupd stores it, with its version and line items.
    fn into_change(self, marketplace: Line) -> Result<OrderChange, WebhookError> {
        let key = key(marketplace, self.id)?;
        let customer = self.customer.as_ref();
        let buyer_email = buyer_email([
            self.email.as_deref(),
            self.contact_email.as_deref(),
            customer.and_then(|c| c.email.as_deref()),
        ])?;
        let shipping = self
            .shipping_address
            .as_ref()
            .or(self.billing_address.as_ref());
        let buyer_name = match full_name(
            customer.and_then(|c| c.first_name.as_deref()),
            customer.and_then(|c| c.last_name.as_deref()),
        )? {
            Some(name) => Some(name),
            None => full_name(
                shipping.and_then(|a| a.first_name.as_deref()),
                shipping.and_then(|a| a.last_name.as_deref()),
            )?,
        };
        let product = self
            .line_items
            .iter()
            .find_map(|l| l.title.as_deref().or(l.name.as_deref()))
            .unwrap_or("");
        let time_zone = shipping.and_then(|a| {
            crate::import::zone::from_address(
                a.country_code.as_deref()?,
                a.province_code.as_deref().unwrap_or(""),
            )
        });
        let (shipped_at, delivered_at, tracking_url) = self.shipping()?;
        let given = self.status();
        let mut extra = BTreeMap::new();
        if let Some(name) = self.name.as_deref().filter(|n| !n.trim().is_empty()) {
            Line::parse("order_name", name)?;
            extra.insert("order_name".to_string(), name.trim().to_string());
        }
        let record = OrderRecord {
            order: Order {
                key,
                buyer_email,
                buyer_name,
                product_name: Line::parse("product_name", product)?,
                locale: Line::parse_optional(
                    "locale",
                    self.customer_locale.as_deref().unwrap_or(""),
                )?,
                time_zone_source: if time_zone.is_some() {
                    ZoneSource::Address
                } else {
                    ZoneSource::Default
                },
                time_zone,
                shipped_at,
                delivered_at,
                status: given.unwrap_or(OrderStatus::inferred(
                    shipped_at.is_some(),
                    delivered_at.is_some(),
                )),
                complaint: false,
                opted_out: false,
                order_url: parse_url("order_url", self.order_status_url.as_deref().unwrap_or(""))?,
                tracking_url,
                review_url: None,
                items: self.items(),
                extra,
            },
            status_given: given.is_some(),
            complaint_given: false,
        };
        let version = self
            .updated_at
            .as_deref()
            .and_then(parse_time)
            .map_or(0, |t| t.timestamp());
        Ok(OrderChange::Upsert {
            record: Box::new(record),
            version: Some(version),
            items: self.line_counts(),
        })
    }

    /// Ship time (the first fulfillment), delivery time (a fulfillment
    /// Shopify reports delivered) and the first tracking link.
    fn shipping(&self) -> Result<Shipping, WebhookError> {
        let shipments = self.fulfillments.iter().filter(|f| !f.is_void());
        let shipped_at = shipments
            .clone()
            .filter_map(|f| f.created_at.as_deref().and_then(parse_time))
            .min();
        let delivered_at = shipments
            .clone()
            .filter(|f| f.shipment_status.as_deref() == Some("delivered"))
            .filter_map(|f| f.updated_at.as_deref().and_then(parse_time))
            .max()
            .filter(|d| shipped_at.is_none_or(|s| *d >= s));
        let tracking_url = match shipments.clone().next() {
            Some(f) => f.tracking_url()?,
            None => None,
        };
        Ok((shipped_at, delivered_at, tracking_url))
    }

    /// The status the order states: cancelled, refunded or partially
    /// refunded; otherwise it is inferred from the dates (or kept).
    fn status(&self) -> Option<OrderStatus> {
        if self.cancelled_at.as_deref().is_some_and(|c| !c.is_empty()) {
            return Some(OrderStatus::Cancelled);
        }
        match self.financial_status.as_deref() {
            Some("refunded") => Some(OrderStatus::Refunded),
            Some("partially_refunded") => Some(OrderStatus::PartiallyRefunded),
            _ => None,
        }
    }

    /// `order.items`.
    fn items(&self) -> Vec<Item> {
        self.line_items
            .iter()
            .filter_map(|l| {
                let name = l.title.as_deref().or(l.name.as_deref())?;
                let quantity = l.quantity.max(1).to_string();
                let sku = l.sku.as_deref().unwrap_or("");
                Item::parse(name, &quantity, sku, l.price.as_deref().unwrap_or("")).ok()
            })
            .collect()
    }

    /// Each line item's quantity and what the order's refunds took back,
    /// for telling a later refund full or partial.
    fn line_counts(&self) -> Vec<LineCount> {
        let mut counts: Vec<LineCount> = self
            .line_items
            .iter()
            .map(|l| LineCount {
                id: l.id.to_string(),
                quantity: l.quantity,
                refunded: 0,
            })
            .collect();
        for line in self.refunds.iter().flat_map(|r| &r.refund_line_items) {
            let id = line.line_item_id.to_string();
            if let Some(count) = counts.iter_mut().find(|i| i.id == id) {
                count.refunded += line.quantity;
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/data/webhooks/shopify/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(path).unwrap()
    }

    #[test]
    fn shopifys_sample_order_becomes_an_order() {
        let order: ShopifyOrder = parse_json(&sample("order.json")).unwrap();
        let marketplace = Line::parse("marketplace", "shopify").unwrap();
        let OrderChange::Upsert {
            record,
            version,
            items,
            ..
        } = order.into_change(marketplace).unwrap()
        else {
            panic!("not an upsert");
        };
        let o = &record.order;
        assert_eq!(o.key.order_id.as_str(), "820982911946154508");
        assert_eq!(o.buyer_email.as_str(), "jon@example.com");
        assert_eq!(o.buyer_name.as_ref().unwrap().as_str(), "John Smith");
        assert_eq!(o.product_name.as_str(), "Aviator sunglasses");
        assert_eq!(o.locale.as_ref().unwrap().as_str(), "en");
        // Shipping address in Kentucky (KY): Eastern time.
        assert_eq!(o.time_zone.unwrap().name(), "America/New_York");
        // The sample is a cancelled order.
        assert_eq!(o.status, OrderStatus::Cancelled);
        assert!(record.status_given);
        assert_eq!(o.extra.get("order_name").unwrap(), "#9999");
        assert_eq!(version, Some(1_640_995_200));
        assert_eq!(items.len(), 5);
        assert_eq!(o.items.len(), 5);
        assert_eq!(o.items[1].name.as_str(), "Lens Protection Plan (2 Year)");
    }

    #[test]
    fn the_fulfillment_sample_carries_its_tracking_link() {
        let f: Fulfillment = parse_json(&sample("fulfillment.json")).unwrap();
        assert_eq!(f.order_id, Some(820_982_911_946_154_508));
        assert!(f
            .tracking_url()
            .unwrap()
            .unwrap()
            .as_str()
            .starts_with("https://www.ups.com/"));
        assert!(!f.is_void());
    }
}

//! Amazon's tab-separated flat-file order reports that carry buyer emails:
//! the Order Report (new and unshipped orders, `order-id`) and the Amazon
//! Fulfilled Shipments report (`amazon-order-id`, with `shipment-date`).
//! One row a line item; the rows of an order share its id. The All Orders
//! report has no buyer emails and is refused at its header.
//!
//! Every sales channel (Amazon.com, Amazon.it…) is marketplace `amazon`,
//! which the committed config puts under the `amazon` policy profile; the
//! channel travels along as `order.extra.sales-channel`.

use crate::order::{FieldError, OrderStatus};

use super::super::mapping::Mapping;
use super::super::ImportError;
use super::{columns, names, unknown};

pub(super) const STATUS_COLUMNS: [&str; 1] = ["order-status"];

/// The order id's column, by report.
const ORDER_ID: [&str; 2] = ["order-id", "amazon-order-id"];

pub(super) fn mapping(header: &[String]) -> Mapping {
    let group = ORDER_ID
        .iter()
        .find(|c| header.iter().any(|h| h == *c))
        .unwrap_or(&ORDER_ID[0]);
    Mapping {
        columns: columns(&[
            ("order_id", &ORDER_ID),
            ("buyer_email", &["buyer-email"]),
            ("buyer_name", &["buyer-name", "recipient-name"]),
            ("shipped_at", &["shipment-date"]),
            ("ship_country", &["ship-country"]),
            ("ship_region", &["ship-state"]),
            ("item_name", &["product-name"]),
            (
                "item_quantity",
                &["quantity-purchased", "quantity-shipped", "quantity"],
            ),
            ("item_sku", &["sku"]),
            ("item_price", &["item-price"]),
        ]),
        group_by: Some(group.to_string()),
        // Amazon's flat files are not quoted: a `"` is part of a value.
        unquoted: true,
        delimiter: Some(b'\t'),
        extras: Some(names(&[
            "purchase-date",
            "sales-channel",
            "currency",
            "ship-service-level",
            "ship-city",
            "ship-state",
            "ship-postal-code",
            "carrier",
            "tracking-number",
        ])),
        ..Mapping::default()
    }
}

/// Refuses a report without buyer emails, naming the ones that have them.
pub(super) fn check_header(header: &[String]) -> Result<(), ImportError> {
    if header.iter().any(|h| h == "buyer-email") {
        return Ok(());
    }
    let report = if header.iter().any(|h| h == "amazon-order-id") {
        "Amazon's All Orders report"
    } else {
        "this report"
    };
    Err(ImportError::SourceWithoutEmail {
        message: format!(
            "{report} has no buyer-email column, so none of its orders can be written to. \
             Download the Order Report instead (Seller Central: Orders > Order Reports, \
             New Orders), or for orders Amazon ships, the Amazon Fulfilled Shipments report \
             (Reports > Fulfillment); both carry buyer-email"
        ),
    })
}

/// Amazon's order statuses (the `order-status` column, where a report has
/// one). Anything not yet out of the door is pending, so a Pending order is
/// never treated as shipped.
pub(super) fn status(value: &str) -> Result<OrderStatus, FieldError> {
    use OrderStatus::*;
    let lower = value.to_ascii_lowercase();
    Ok(match lower.as_str() {
        "pending"
        | "pendingavailability"
        | "pending availability"
        | "unshipped"
        | "partiallyshipped"
        | "partially shipped"
        | "shipping" => Pending,
        "shipped" | "invoiceunconfirmed" | "shipped - out for delivery" | "shipped - picked up" => {
            Shipped
        }
        "shipped - delivered to buyer" => Delivered,
        "shipped - returned to seller"
        | "shipped - returning to seller"
        | "shipped - rejected by buyer"
        | "shipped - lost in transit"
        | "shipped - damaged" => Returned,
        "canceled" | "cancelled" | "unfulfillable" => Cancelled,
        _ => {
            return Err(unknown(
                value,
                "order-status Pending, PendingAvailability, Unshipped, PartiallyShipped, \
                 Shipping, Shipped (also 'Shipped - …'), InvoiceUnconfirmed, Canceled or \
                 Unfulfillable",
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_amazon_status_is_known_and_pending_is_not_shipped() {
        use OrderStatus::*;
        for (value, want) in [
            ("Pending", Pending),
            ("PendingAvailability", Pending),
            ("Unshipped", Pending),
            ("PartiallyShipped", Pending),
            ("Shipping", Pending),
            ("Shipped", Shipped),
            ("InvoiceUnconfirmed", Shipped),
            ("Shipped - Delivered to Buyer", Delivered),
            ("Shipped - Returned to Seller", Returned),
            ("Canceled", Cancelled),
            ("Cancelled", Cancelled),
            ("Unfulfillable", Cancelled),
        ] {
            assert_eq!(status(value), Ok(want), "{value}");
        }
        assert!(status("Lost").is_err());
    }

    #[test]
    fn the_all_orders_report_is_refused_naming_the_reports_with_emails() {
        let header: Vec<String> = ["amazon-order-id", "order-status", "sales-channel"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let message = check_header(&header).unwrap_err().to_string();
        assert!(
            message.contains("All Orders report has no buyer-email"),
            "{message}"
        );
        assert!(message.contains("Order Report"), "{message}");
    }
}

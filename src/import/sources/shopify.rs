//! Shopify's "Export orders" CSV: one row a line item, the rows of an order
//! adjacent and sharing its `Name`; times like `2021-05-13 14:01:07 +0200`.

use crate::order::{FieldError, OrderStatus};

use super::super::mapping::Mapping;
use super::{columns, names, unknown};

/// Financial Status, Fulfillment Status, Cancelled at.
pub(super) const STATUS_COLUMNS: [&str; 3] =
    ["Financial Status", "Fulfillment Status", "Cancelled at"];

pub(super) fn mapping() -> Mapping {
    Mapping {
        columns: columns(&[
            ("order_id", &["Name"]),
            ("buyer_email", &["Email"]),
            ("buyer_name", &["Shipping Name", "Billing Name"]),
            ("shipped_at", &["Fulfilled at"]),
            ("ship_country", &["Shipping Country", "Billing Country"]),
            ("ship_region", &["Shipping Province", "Billing Province"]),
            ("item_name", &["Lineitem name"]),
            ("item_quantity", &["Lineitem quantity"]),
            ("item_sku", &["Lineitem sku"]),
            ("item_price", &["Lineitem price"]),
        ]),
        date_formats: names(&["%Y-%m-%d %H:%M:%S %z"]),
        group_by: Some("Name".into()),
        // What a template may want of the order; the per-item columns are
        // in order.items, the billing address and payment references stay
        // out.
        extras: Some(names(&[
            "Created at",
            "Paid at",
            "Currency",
            "Subtotal",
            "Shipping",
            "Taxes",
            "Total",
            "Discount Code",
            "Discount Amount",
            "Shipping Method",
            "Shipping City",
            "Shipping Zip",
            "Shipping Province Name",
            "Notes",
            "Tags",
            "Payment Method",
            "Source",
        ])),
        ..Mapping::default()
    }
}

/// The order's state from its financial and fulfillment status together.
pub(super) fn status(
    financial: &str,
    fulfillment: &str,
    cancelled_at: &str,
) -> Result<OrderStatus, FieldError> {
    if !cancelled_at.is_empty() {
        return Ok(OrderStatus::Cancelled);
    }
    let partly_refunded = match financial.to_ascii_lowercase().as_str() {
        "refunded" => return Ok(OrderStatus::Refunded),
        "voided" | "expired" => return Ok(OrderStatus::Cancelled),
        "partially_refunded" => true,
        "" | "pending" | "authorized" | "partially_paid" | "paid" => false,
        other => {
            return Err(unknown(
                other,
                "Financial Status pending, authorized, partially_paid, paid, \
                 partially_refunded, refunded, voided or expired",
            ))
        }
    };
    Ok(match fulfillment.to_ascii_lowercase().as_str() {
        "fulfilled" if partly_refunded => OrderStatus::PartiallyRefunded,
        "fulfilled" => OrderStatus::Shipped,
        "restocked" => OrderStatus::Returned,
        // Not everything has left: nothing is said about shipping yet.
        "" | "unfulfilled" | "partial" | "pending" => OrderStatus::Pending,
        other => {
            return Err(unknown(
                other,
                "Fulfillment Status fulfilled, partial, unfulfilled or restocked",
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_comes_from_both_statuses() {
        use OrderStatus::*;
        for (financial, fulfillment, cancelled, want) in [
            ("paid", "fulfilled", "", Shipped),
            ("paid", "unfulfilled", "", Pending),
            ("paid", "partial", "", Pending),
            ("pending", "fulfilled", "", Shipped),
            ("partially_refunded", "fulfilled", "", PartiallyRefunded),
            ("partially_refunded", "unfulfilled", "", Pending),
            ("refunded", "fulfilled", "", Refunded),
            ("voided", "unfulfilled", "", Cancelled),
            ("paid", "fulfilled", "2021-05-14 10:00:00 +0200", Cancelled),
            ("paid", "restocked", "", Returned),
        ] {
            assert_eq!(
                status(financial, fulfillment, cancelled),
                Ok(want),
                "{financial}/{fulfillment}/{cancelled}"
            );
        }
        assert!(status("paid", "shipped", "").is_err());
        assert!(status("lost", "fulfilled", "").is_err());
    }
}

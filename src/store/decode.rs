//! Rows read back into domain types. Every order is parsed again, so a
//! hand-edited database cannot hand the scheduler an invalid order.

use std::collections::BTreeMap;
use std::str::FromStr;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{from_secs, DueOrder, LogEntry, StageRow, StoreError};
use crate::order::{
    check_dates, parse_time_zone, parse_url, BuyerEmail, FieldError, Line, Order, OrderKey,
    OrderStatus,
};

pub(super) const ORDER_COLUMNS: &str = "o.marketplace, o.order_id, o.buyer_email, o.buyer_name, \
    o.product_name, o.locale, o.time_zone, o.shipped_at, o.delivered_at, o.status, \
    o.complaint, o.opted_out, o.order_url, o.tracking_url, o.review_url, o.extra, o.items, \
    o.time_zone_source";

/// How many columns [`ORDER_COLUMNS`] has: the stage's follow.
pub(super) const ORDER_COLUMN_COUNT: usize = 18;

pub(super) const STAGE_COLUMNS: &str =
    "s.stage, s.state, s.next_check_at, s.retry_at, s.attempts, \
    s.reason, s.message_id, s.updated_at, s.claim_owner, s.claim_token, s.lease_until";

pub(super) const LOG_COLUMNS: &str =
    "id, at, order_id, marketplace, stage, recipient, status, attempt, \
    smtp_code, smtp_text, message_id, subject, detail, duration_ms, message_ref";

pub(super) fn key_from_parts(marketplace: &str, order_id: &str) -> Result<OrderKey, StoreError> {
    let corrupt = |e: FieldError| StoreError::Corrupt {
        key: format!("{marketplace}/{order_id}"),
        message: e.to_string(),
    };
    Ok(OrderKey {
        marketplace: Line::parse("marketplace", marketplace).map_err(corrupt)?,
        order_id: Line::parse("order_id", order_id).map_err(corrupt)?,
    })
}

pub(super) fn decode_order(row: &AnyRow) -> Result<Order, StoreError> {
    let marketplace: String = row.try_get(0)?;
    let order_id: String = row.try_get(1)?;
    let key = key_from_parts(&marketplace, &order_id)?;
    let corrupt = |message: String| StoreError::Corrupt {
        key: key.to_string(),
        message,
    };
    let text = |i: usize| -> Result<Option<String>, StoreError> { Ok(row.try_get(i)?) };
    let optional_line = |field: &'static str, i: usize| -> Result<Option<Line>, StoreError> {
        match text(i)? {
            Some(v) => Line::parse_optional(field, &v).map_err(|e| corrupt(e.to_string())),
            None => Ok(None),
        }
    };
    let url = |field: &'static str, i: usize| -> Result<Option<Line>, StoreError> {
        parse_url(field, &text(i)?.unwrap_or_default()).map_err(|e| corrupt(e.to_string()))
    };
    let buyer_email =
        BuyerEmail::parse(&row.try_get::<String, _>(2)?).map_err(|e| corrupt(e.to_string()))?;
    let product_name = Line::parse("product_name", &row.try_get::<String, _>(4)?)
        .map_err(|e| corrupt(e.to_string()))?;
    let time_zone = text(6)?
        .map(|z| parse_time_zone(&z))
        .transpose()
        .map_err(|e| corrupt(e.to_string()))?;
    let shipped_at = row.try_get::<Option<i64>, _>(7)?.map(from_secs);
    let delivered_at = row.try_get::<Option<i64>, _>(8)?.map(from_secs);
    check_dates(shipped_at, delivered_at).map_err(|e| corrupt(e.to_string()))?;
    let status =
        OrderStatus::from_str(&row.try_get::<String, _>(9)?).map_err(|e| corrupt(e.to_string()))?;
    let items = crate::order::Item::from_stored(&row.try_get::<String, _>(16)?)
        .map_err(|e| corrupt(format!("items: {e}")))?;
    let extra: BTreeMap<String, String> = serde_json::from_str(&row.try_get::<String, _>(15)?)
        .map_err(|e| corrupt(format!("extra: {e}")))?;
    Ok(Order {
        buyer_name: optional_line("buyer_name", 3)?,
        locale: optional_line("locale", 5)?,
        complaint: row.try_get::<i64, _>(10)? != 0,
        opted_out: row.try_get::<i64, _>(11)? != 0,
        order_url: url("order_url", 12)?,
        tracking_url: url("tracking_url", 13)?,
        review_url: url("review_url", 14)?,
        key,
        buyer_email,
        product_name,
        time_zone_source: match (time_zone, text(17)?.as_deref()) {
            (None, _) => crate::order::ZoneSource::Default,
            (Some(_), Some("address")) => crate::order::ZoneSource::Address,
            (Some(_), _) => crate::order::ZoneSource::Order,
        },
        time_zone,
        shipped_at,
        delivered_at,
        status,
        items,
        extra,
    })
}

/// Orders with their stages from rows of `ORDER_COLUMNS, STAGE_COLUMNS`
/// that come grouped by order. Each order is decoded on its own: one that
/// cannot be read carries its error and leaves the others alone.
pub(super) fn group_by_order(rows: &[AnyRow]) -> Result<Vec<DueOrder>, StoreError> {
    let mut orders: Vec<DueOrder> = Vec::new();
    for row in rows {
        let marketplace: String = row.try_get(0)?;
        let order_id: String = row.try_get(1)?;
        let same = orders
            .last()
            .is_some_and(|o| o.marketplace == marketplace && o.order_id == order_id);
        if !same {
            orders.push(DueOrder {
                loaded: decode_order(row).map(|order| (order, Vec::new())),
                marketplace,
                order_id,
            });
        }
        if let Some(DueOrder {
            loaded: loaded @ Ok(_),
            ..
        }) = orders.last_mut()
        {
            match decode_stage(row, ORDER_COLUMN_COUNT) {
                Ok(stage) => {
                    if let Ok((_, stages)) = loaded {
                        stages.push(stage);
                    }
                }
                Err(e) => *loaded = Err(e),
            }
        }
    }
    Ok(orders)
}

pub(super) fn decode_stage(row: &AnyRow, offset: usize) -> Result<StageRow, StoreError> {
    let state: String = row.try_get(offset + 1)?;
    let stage: String = row.try_get(offset)?;
    Ok(StageRow {
        state: state.parse().map_err(|message| StoreError::Corrupt {
            key: stage.clone(),
            message,
        })?,
        stage,
        next_check_at: row.try_get::<Option<i64>, _>(offset + 2)?.map(from_secs),
        retry_at: row.try_get::<Option<i64>, _>(offset + 3)?.map(from_secs),
        attempts: row.try_get(offset + 4)?,
        reason: row.try_get(offset + 5)?,
        message_id: row.try_get(offset + 6)?,
        updated_at: from_secs(row.try_get(offset + 7)?),
        claim_owner: row.try_get(offset + 8)?,
        claim_token: row.try_get(offset + 9)?,
        lease_until: row.try_get::<Option<i64>, _>(offset + 10)?.map(from_secs),
    })
}

pub(super) fn decode_log(row: &AnyRow) -> Result<LogEntry, StoreError> {
    Ok(LogEntry {
        id: row.try_get(0)?,
        at: from_secs(row.try_get(1)?),
        order_id: row.try_get(2)?,
        marketplace: row.try_get(3)?,
        stage: row.try_get(4)?,
        to: row.try_get(5)?,
        status: row.try_get(6)?,
        attempt: row.try_get(7)?,
        smtp_code: row.try_get(8)?,
        smtp_text: row.try_get(9)?,
        message_id: row.try_get(10)?,
        subject: row.try_get(11)?,
        detail: row.try_get(12)?,
        duration_ms: row.try_get(13)?,
        message_ref: row.try_get(14)?,
    })
}

//! From one order's values to a valid order: every field parsed, the
//! status decided, the line items made, the buyer's zone found.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::order::{
    check_dates, parse_flag, parse_instant, parse_time_zone, parse_url, BuyerEmail, FieldError,
    Item, Line, Order, OrderKey, OrderStatus, ZoneSource,
};

use super::mapping::{slot_of, Mapping};
use super::sources::Source;
use super::values::RowValues;
use super::{zone, OrderRecord};

/// Turns one order's values into an [`OrderRecord`].
pub(super) struct RowParser {
    pub(super) mapping: Mapping,
    pub(super) source: Option<Source>,
    pub(super) default_marketplace: String,
    pub(super) default_zone: Tz,
    /// What a relative time such as `-3d` is measured back from.
    pub(super) imported_at: DateTime<Utc>,
}

impl RowParser {
    // One pass over the order's fields in the order the struct declares
    // them: each is taken from its slot and parsed once; split up, the
    // slots would travel between functions for no gain in clarity.
    pub(super) fn parse(&self, values: RowValues<'_>) -> Result<OrderRecord, FieldError> {
        let RowValues {
            mut fields,
            items,
            extra,
            status_cells,
            ..
        } = values;
        let mut take = |name: &str| std::mem::take(&mut fields[slot_of(name)]);
        let order_id = Line::parse("order_id", &take("order_id"))?;
        let marketplace = Line::parse_optional("marketplace", &take("marketplace"))?
            .map(Ok)
            .unwrap_or_else(|| Line::parse("marketplace", &self.default_marketplace))?;
        let buyer_email = BuyerEmail::parse(&take("buyer_email"))?;
        buyer_email.check_deliverable()?;
        let buyer_name = Line::parse_optional("buyer_name", &take("buyer_name"))?;
        let items = items
            .iter()
            .map(|[name, quantity, sku, price]| Item::parse(name, quantity, sku, price))
            .collect::<Result<Vec<_>, _>>()?;
        let product_text = take("product_name");
        let product_name = match items.first() {
            Some(first) if product_text.trim().is_empty() => first.name.clone(),
            _ => Line::parse("product_name", &product_text)?,
        };
        let locale = Line::parse_optional("locale", &take("locale"))?;
        let (time_zone, time_zone_source) = self.zone(
            &take("time_zone"),
            &take("ship_country"),
            &take("ship_region"),
        )?;
        let zone = time_zone.unwrap_or(self.default_zone);
        let mut shipped_at = self.instant("shipped_at", &take("shipped_at"), zone)?;
        let mut delivered_at = self.instant("delivered_at", &take("delivered_at"), zone)?;
        let (status, status_given) = match self.source.and_then(|s| s.status(&status_cells)) {
            Some(status) => {
                let status = status?;
                if status == OrderStatus::Pending {
                    // The source says it has not shipped: a date in another
                    // column (Amazon's last update) is not a ship date.
                    shipped_at = None;
                    delivered_at = None;
                }
                (status, true)
            }
            None => self.status(&take("status"), shipped_at, delivered_at)?,
        };
        check_dates(shipped_at, delivered_at)?;
        let complaint_text = take("complaint");
        let complaint_given = !complaint_text.trim().is_empty();
        let complaint = parse_flag("complaint", &complaint_text)?;
        let opted_out = parse_flag("opted_out", &take("opted_out"))?;
        let order_url = parse_url("order_url", &take("order_url"))?;
        let tracking_url = parse_url("tracking_url", &take("tracking_url"))?;
        let review_url = parse_url("review_url", &take("review_url"))?;
        Ok(OrderRecord {
            order: Order {
                key: OrderKey {
                    marketplace,
                    order_id,
                },
                buyer_email,
                buyer_name,
                product_name,
                locale,
                time_zone,
                time_zone_source,
                shipped_at,
                delivered_at,
                status,
                complaint,
                opted_out,
                order_url,
                tracking_url,
                review_url,
                items,
                extra,
            },
            status_given,
            complaint_given,
        })
    }

    /// The buyer's zone: the order's own, else the shipping address's.
    fn zone(
        &self,
        text: &str,
        country: &str,
        region: &str,
    ) -> Result<(Option<Tz>, ZoneSource), FieldError> {
        if !text.trim().is_empty() {
            return Ok((Some(parse_time_zone(text)?), ZoneSource::Order));
        }
        Ok(match zone::from_address(country, region) {
            Some(zone) => (Some(zone), ZoneSource::Address),
            None => (None, ZoneSource::Default),
        })
    }

    /// The status the row names (through the mapping's value map), or the
    /// one its dates imply; and whether the row named it.
    fn status(
        &self,
        text: &str,
        shipped_at: Option<DateTime<Utc>>,
        delivered_at: Option<DateTime<Utc>>,
    ) -> Result<(OrderStatus, bool), FieldError> {
        let text = text.trim();
        if text.is_empty() {
            let inferred = OrderStatus::inferred(shipped_at.is_some(), delivered_at.is_some());
            return Ok((inferred, false));
        }
        let status = match self.mapping.status.get(&text.to_lowercase()) {
            Some(s) => *s,
            None => text.parse::<OrderStatus>()?,
        };
        Ok((status, true))
    }

    /// An optional time: RFC 3339, `YYYY-MM-DD`, `-3d`, or one of the
    /// mapping's date formats.
    fn instant(
        &self,
        field: &'static str,
        text: &str,
        zone: Tz,
    ) -> Result<Option<DateTime<Utc>>, FieldError> {
        let text = text.trim();
        let error = || FieldError::Time {
            field,
            value: text.to_string(),
        };
        if text.is_empty() {
            return Ok(None);
        }
        if let Some(ago) = text.strip_prefix('-') {
            // "-3d": that long before the import. Real exports never say
            // this; demos and tests use it to stay current.
            let ago = humantime::parse_duration(ago.trim())
                .ok()
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .ok_or_else(error)?;
            return self
                .imported_at
                .checked_sub_signed(ago)
                .map(Some)
                .ok_or_else(error);
        }
        let standard = parse_instant(field, text, zone);
        if standard.is_ok() || self.mapping.date_formats.is_empty() {
            return standard.map(Some);
        }
        for format in &self.mapping.date_formats {
            if let Ok(t) = DateTime::parse_from_str(text, format) {
                return Ok(Some(t.with_timezone(&Utc)));
            }
            if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
                let local = if self.mapping.naive_utc {
                    Some(Utc.from_utc_datetime(&naive))
                } else {
                    zone.from_local_datetime(&naive)
                        .earliest()
                        .map(|t| t.with_timezone(&Utc))
                };
                return local.map(Some).ok_or_else(error);
            }
        }
        Err(FieldError::TimeFormat {
            field,
            value: text.to_string(),
            formats: self.mapping.date_formats.join("', '"),
        })
    }
}

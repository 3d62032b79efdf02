//! The exports followupd reads as sellers download them, without edits:
//! `followupd import --from shopify|amazon|woocommerce FILE…`.
//!
//! Each source is a built-in [`Mapping`] (its columns, date formats, how its
//! rows group into orders, which columns travel along as extras) plus what a
//! mapping cannot say: Shopify's state read from two status columns at
//! once, Amazon's reports told apart, WooCommerce's names decoded.

mod amazon;
mod shopify;
mod woocommerce;

use std::borrow::Cow;

use crate::order::{FieldError, OrderStatus};

use super::mapping::Mapping;
use super::{Format, ImportError};

/// A source of order exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Shopify's "Export orders" CSV (one row a line item).
    Shopify,
    /// Amazon's tab-separated order reports that carry buyer emails.
    Amazon,
    /// WooCommerce REST API orders (`GET /wp-json/wc/v3/orders`): a JSON
    /// array, or one order object a line.
    #[value(name = "woocommerce")]
    #[serde(rename = "woocommerce")]
    WooCommerce,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shopify => "shopify",
            Self::Amazon => "amazon",
            Self::WooCommerce => "woocommerce",
        }
    }

    /// The format its files are in.
    pub(super) fn format(self) -> Format {
        match self {
            Self::Shopify => Format::Csv,
            Self::Amazon => Format::Tsv,
            Self::WooCommerce => Format::Json,
        }
    }

    /// Its mapping, for a delimited file's `header` (`None` for JSON).
    pub(super) fn mapping(self, header: Option<&[String]>) -> Mapping {
        match self {
            Self::Shopify => shopify::mapping(),
            Self::Amazon => amazon::mapping(header.unwrap_or_default()),
            Self::WooCommerce => woocommerce::mapping(),
        }
    }

    /// Refuses a file that cannot be this source's export, before any row is
    /// read.
    pub(super) fn check_header(self, header: &[String]) -> Result<(), ImportError> {
        match self {
            Self::Amazon => amazon::check_header(header),
            Self::Shopify | Self::WooCommerce => Ok(()),
        }
    }

    /// Whether its files are read without quoting (a `"` is part of a
    /// value).
    pub(super) fn unquoted(self) -> bool {
        self == Self::Amazon
    }

    /// The marketplace of its orders, when it is not `[defaults]`'s.
    pub(super) fn marketplace(self) -> Option<&'static str> {
        match self {
            Self::Amazon => Some("amazon"),
            Self::Shopify | Self::WooCommerce => None,
        }
    }

    /// The columns (or JSON paths) its status is read from.
    pub(super) fn status_columns(self) -> &'static [&'static str] {
        match self {
            Self::Shopify => &shopify::STATUS_COLUMNS,
            Self::Amazon => &amazon::STATUS_COLUMNS,
            Self::WooCommerce => &woocommerce::STATUS_COLUMNS,
        }
    }

    /// The order's status from the cells of [`Self::status_columns`], or
    /// `None` when they are all empty. A `Pending` status means not shipped,
    /// whatever a date column says.
    pub(super) fn status(self, cells: &[Cow<'_, str>]) -> Option<Result<OrderStatus, FieldError>> {
        if cells.iter().all(|c| c.trim().is_empty()) {
            return None;
        }
        let cell = |i: usize| cells.get(i).map(|c| c.trim()).unwrap_or("");
        Some(match self {
            Self::Shopify => shopify::status(cell(0), cell(1), cell(2)),
            Self::Amazon => amazon::status(cell(0)),
            Self::WooCommerce => woocommerce::status(cell(0)),
        })
    }

    /// Prepares one JSON object before it is mapped.
    pub(super) fn prepare(self, object: &mut serde_json::Map<String, serde_json::Value>) {
        if self == Self::WooCommerce {
            woocommerce::prepare(object);
        }
    }
}

/// A mapping's columns from `(field, names)` pairs.
fn columns(pairs: &[(&str, &[&str])]) -> std::collections::BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(field, names)| {
            let names = names.iter().map(|n| n.to_string()).collect();
            (field.to_string(), names)
        })
        .collect()
}

/// Names as owned strings.
fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// An unknown status, with the values the source knows.
fn unknown(value: &str, known: &str) -> FieldError {
    FieldError::SourceStatus {
        value: value.to_string(),
        known: known.to_string(),
    }
}

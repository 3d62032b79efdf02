//! Rendering every template against sample orders when a set loads, so a
//! set that cannot render (a misspelt variable, a template that runs into a
//! limit) is refused at load, reload and `check` instead of blocking every
//! message composed with it.

use std::collections::BTreeSet;

use crate::config::Config;
use crate::order::{sample_order, Order};

use super::{context, RenderError, Templates};

/// The sample orders: one with every optional field filled in, and one with
/// none (so both sides of an `{% if order.tracking_url %}` are rendered).
/// Both carry the `order.extra` fields the templates use.
pub fn orders(marketplace: &str, extra_fields: &BTreeSet<String>) -> [Order; 2] {
    let mut full = sample_order(marketplace);
    full.extra = extra_fields
        .iter()
        .map(|name| (name.clone(), format!("sample {name}")))
        .collect();
    let bare = Order {
        buyer_name: None,
        locale: None,
        time_zone: None,
        delivered_at: None,
        order_url: None,
        tracking_url: None,
        review_url: None,
        ..full.clone()
    };
    [full, bare]
}

/// Renders every stage in every language against the sample orders; the
/// first failure is the set's error.
pub fn render_all(templates: &Templates, config: &Config) -> Result<(), RenderError> {
    let orders = orders(&config.default_marketplace, &templates.extra_fields);
    let sender = config.sender_for(&config.default_marketplace);
    let mut locales = vec![None];
    locales.extend(templates.locales().into_iter().map(Some));
    for locale in &locales {
        for stage in &config.stages {
            for order in &orders {
                let context = context(order, sender, &stage.name, config.rules.default_zone);
                templates.render(&stage.name, locale.as_deref(), &context)?;
            }
        }
    }
    Ok(())
}

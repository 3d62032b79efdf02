//! Composing one stage's message: render the templates, lint the result
//! against the forbidden lists and the marketplace's policy, build the MIME
//! message.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::Engine;
use crate::config::Config;
use crate::lint::Finding;
use crate::message::{self, Outgoing};
use crate::order::Order;
use crate::render::{self, Rendered, Templates};
use crate::schedule;

/// A message as `preview` shows it.
#[derive(Debug, Clone)]
pub struct Preview {
    pub outgoing: Outgoing,
    pub rendered: Rendered,
    /// Forbidden words.
    pub findings: Vec<Finding>,
    /// The marketplace policy's other rules.
    pub violations: Vec<crate::policy::Violation>,
}

impl Preview {
    /// Whether the message may go out.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty() && self.violations.is_empty()
    }

    /// Every problem, one per entry, as `PART:LINE:COL: rule: message`.
    pub fn problems(&self) -> Vec<String> {
        self.findings
            .iter()
            .map(|f| f.to_string())
            .chain(self.violations.iter().map(|v| v.to_string()))
            .collect()
    }
}

/// Why a message could not be composed.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error(transparent)]
    Render(#[from] render::RenderError),
    #[error(transparent)]
    Message(#[from] message::MessageError),
}

impl Engine {
    /// Renders, lints and builds one stage's message.
    pub fn compose(
        &self,
        order: &Order,
        stage: &str,
        now: DateTime<Utc>,
    ) -> Result<Preview, ComposeError> {
        compose(&self.config, &self.templates, order, stage, now)
    }

    /// [`Engine::compose`] as a task of its own, which a multi-threaded
    /// runtime runs on one of its worker threads. A pass
    /// composes many messages while its SMTP sessions wait for replies;
    /// composing on the thread that drives those sessions would hold each
    /// reply back for as long as the message being composed takes.
    pub(super) async fn compose_in_worker(
        &self,
        order: &Order,
        stage: &str,
        now: DateTime<Utc>,
    ) -> Result<Preview, ComposeError> {
        let (config, templates) = (Arc::clone(&self.config), Arc::clone(&self.templates));
        let (owned_order, owned_stage) = (order.clone(), stage.to_string());
        let composing =
            tokio::spawn(
                async move { compose(&config, &templates, &owned_order, &owned_stage, now) },
            );
        match composing.await {
            Ok(preview) => preview,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // Cancelled: the runtime is shutting down; compose right here.
            Err(_) => self.compose(order, stage, now),
        }
    }
}

/// Renders, lints and builds one stage's message.
fn compose(
    config: &Config,
    templates: &Templates,
    order: &Order,
    stage: &str,
    now: DateTime<Utc>,
) -> Result<Preview, ComposeError> {
    let sender = config.sender_for(order.key.marketplace.as_str());
    let zone = schedule::buyer_zone(order, &config.rules);
    let links = crate::unsubscribe::links_for(config.unsubscribe.as_ref(), order);
    let mut context = render::context(order, sender, stage, zone);
    crate::unsubscribe::add_to_context(&mut context, links.as_ref());
    let locale = order.locale.as_ref().map(|l| l.as_str());
    let rendered = templates.render(stage, locale, &context)?;
    let fields = order.text_fields();
    let findings = templates.lint(stage, &rendered, &config.forbidden, &fields)?;
    let mut outgoing = message::build(order, sender, stage, &rendered, links.as_ref(), now)?;
    if let Some(signer) = &config.dkim {
        outgoing.raw = signer
            .sign(&outgoing.raw, now)
            .map_err(|e| message::MessageError::Build(format!("DKIM: {e}")))?;
    }
    let order_links: Vec<&str> = [&order.order_url, &order.tracking_url, &order.review_url]
        .into_iter()
        .flatten()
        .map(|l| l.as_str())
        .collect();
    let violations = crate::policy::check(
        &sender.policy,
        &crate::policy::MessageParts {
            subject: &rendered.subject,
            text: &rendered.text,
            html: rendered.html.as_deref(),
            html_text: rendered.html_text.as_deref(),
            raw: &outgoing.raw,
            order_id: order.key.order_id.as_str(),
            order_links: &order_links,
        },
    );
    Ok(Preview {
        outgoing,
        rendered,
        findings,
        violations,
    })
}

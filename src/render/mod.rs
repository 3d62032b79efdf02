//! Tera templates: loaded once, rendered per message, linted as a set.
//!
//! Each stage has a folder under `templates/` holding `subject.txt.tera`,
//! `body.txt.tera` and, optionally, `body.html.tera`. A [`Templates`] value is
//! a complete, parsed set; loading a new set either fully succeeds or leaves
//! the caller with the old one, which is what makes live reloads safe.
//! Undefined variables are errors and HTML bodies autoescape order data;
//! order data is only ever a value, never template source.
//!
//! A set is only accepted if it renders: [`Templates::for_config`] renders
//! every template against sample orders (`sample.rs`), within the limits
//! that also bound every message (`guard.rs`), from files read only inside
//! the templates folder (`files.rs`).

pub mod analysis;
mod files;
pub mod guard;
mod sample;

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::config::Sender;
use crate::lint::{self, Finding, Forbidden, Hit, Part, TemplateHits};
use crate::order::Order;
use crate::schedule::StageSpec;

/// Template names inside a stage folder.
pub const SUBJECT: &str = "subject.txt.tera";
pub const TEXT_BODY: &str = "body.txt.tera";
pub const HTML_BODY: &str = "body.html.tera";

/// A template problem, located as `FILE:LINE:COL` where Tera says where.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Syntax(String),
    #[error("{file}: missing (stage '{stage}' needs it)")]
    Missing { stage: String, file: String },
    #[error("{file}: {message}")]
    Render { file: String, message: String },
    #[error("{file}: the subject must be a single line")]
    MultilineSubject { file: String },
    #[error("no templates for stage '{0}'")]
    UnknownStage(String),
    #[error("{file}: refused: {reason}")]
    Refused { file: String, reason: String },
    #[error("{file}: {limit}")]
    Limit { file: String, limit: guard::Limit },
    #[error("{file}: {cycle}: a macro or include that reaches itself again would never finish")]
    Recursion { file: String, cycle: String },
}

#[derive(Debug, Clone)]
struct TemplateFile {
    /// The name Tera knows it by (path relative to the templates folder).
    name: String,
    /// The path shown to people.
    display: String,
    /// Forbidden words in the template's own text.
    own_hits: TemplateHits,
}

/// One stage's templates in one language.
#[derive(Debug, Clone)]
pub struct StageTemplates {
    subject: TemplateFile,
    text: TemplateFile,
    html: Option<TemplateFile>,
}

impl StageTemplates {
    /// The folder holding these templates, as shown to people.
    pub fn folder(&self) -> String {
        Path::new(&self.subject.display)
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }
}

/// A rendered message before it is wrapped into MIME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// What a reader sees of `html` (tags dropped, references decoded),
    /// worked out once for the lint and the policy checks.
    pub html_text: Option<String>,
    /// The locale whose templates were used.
    pub locale: String,
    /// The folder they came from.
    pub folder: String,
}

/// A parsed, complete template set.
#[derive(Debug, Clone)]
pub struct Templates {
    tera: tera::Tera,
    /// Keyed by (locale, stage); the default set has locale "".
    stages: BTreeMap<(String, String), StageTemplates>,
    default_locale: String,
    /// The `order.extra` fields the templates use (for the sample orders).
    extra_fields: std::collections::BTreeSet<String>,
}

impl Templates {
    /// Loads every `*.tera` file under `dir` and checks that each stage has
    /// its subject and text body. Forbidden words in the templates' own text
    /// are recorded (see [`Templates::own_hits`]), not refused here.
    pub fn load(
        dir: &Path,
        stages: &[StageSpec],
        forbidden: &Forbidden,
        default_locale: &str,
    ) -> Result<Self, RenderError> {
        let sources = files::collect(dir)?;
        let mut tera = tera::Tera::default();
        tera.autoescape_on(vec![".html.tera", ".html"]);
        guard::register(&mut tera);
        let by_name: BTreeMap<String, (String, String)> = sources
            .iter()
            .map(|(name, display, text)| (name.clone(), (display.clone(), text.clone())))
            .collect();
        tera.add_raw_templates(
            sources
                .iter()
                .map(|(name, _, text)| (name.as_str(), text.as_str())),
        )
        .map_err(|e| RenderError::Syntax(describe_tera_error(&e, &by_name)))?;
        let shown = |name: &str| {
            by_name
                .get(name)
                .map_or_else(|| name.to_string(), |(display, _)| display.clone())
        };
        if let Some((name, cycle)) = analysis::recursion(&tera) {
            return Err(RenderError::Recursion {
                file: shown(&name),
                cycle,
            });
        }
        if let Some(name) = analysis::long_concatenation(&tera) {
            return Err(RenderError::Refused {
                file: shown(&name),
                reason: format!(
                    "a `~` concatenation of more than {} terms",
                    guard::MAX_CONCAT_TERMS
                ),
            });
        }
        let extra_fields = analysis::extra_fields(&tera);
        guard::instrument(&mut tera);

        let stage_names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
        let file = |folder: &str, template: &str| -> Option<TemplateFile> {
            let name = format!("{folder}/{template}");
            let (display, text) = by_name.get(&name)?;
            // A language folder's text is checked against that language's list too.
            let locale = folder
                .split_once('/')
                .map(|(first, _)| first)
                .filter(|first| !stage_names.contains(first));
            Some(TemplateFile {
                name,
                display: display.clone(),
                own_hits: TemplateHits {
                    file: display.clone(),
                    hits: forbidden.scan_template_source_locale(text, locale),
                },
            })
        };
        let set = |folder: &str, stage: &str| -> Result<Option<StageTemplates>, RenderError> {
            let Some(subject) = file(folder, SUBJECT) else {
                return Ok(None);
            };
            let text = file(folder, TEXT_BODY).ok_or_else(|| RenderError::Missing {
                stage: stage.to_string(),
                file: dir.join(folder).join(TEXT_BODY).display().to_string(),
            })?;
            Ok(Some(StageTemplates {
                subject,
                text,
                html: file(folder, HTML_BODY),
            }))
        };
        // The default set: stage folders at the top, or under the default
        // locale's folder.
        let mut sets = BTreeMap::new();
        for stage in stages {
            let default = match set(&stage.name, &stage.name)? {
                Some(t) => t,
                None => set(&format!("{default_locale}/{}", stage.name), &stage.name)?.ok_or_else(
                    || RenderError::Missing {
                        stage: stage.name.clone(),
                        file: dir.join(&stage.name).join(SUBJECT).display().to_string(),
                    },
                )?,
            };
            sets.insert((String::new(), stage.name.clone()), default);
        }
        // Locale sets: templates/<locale>/<stage>/.
        let locales: std::collections::BTreeSet<String> = by_name
            .keys()
            .filter_map(|name| {
                let mut parts = name.split('/');
                let (locale, stage) = (parts.next()?, parts.next()?);
                (parts.next().is_some()
                    && stage_names.contains(&stage)
                    && !stage_names.contains(&locale))
                .then(|| locale.to_string())
            })
            .collect();
        for locale in &locales {
            for stage in stages {
                if let Some(t) = set(&format!("{locale}/{}", stage.name), &stage.name)? {
                    sets.insert((locale.to_lowercase(), stage.name.clone()), t);
                }
            }
        }
        Ok(Self {
            tera,
            stages: sets,
            default_locale: default_locale.to_string(),
            extra_fields,
        })
    }

    /// Loads the set `config` names, and renders every template of it
    /// against sample orders: a set that cannot render is refused here.
    pub fn for_config(config: &crate::config::Config) -> Result<Self, RenderError> {
        let templates = Self::load(
            &config.templates_dir,
            &config.stages,
            &config.forbidden,
            &config.default_locale,
        )?;
        sample::render_all(&templates, config)?;
        Ok(templates)
    }

    /// The template set for a buyer's locale: the exact locale (`de-AT`),
    /// then its language (`de`), then the default set. Returns the set and
    /// the locale it belongs to.
    pub fn select(
        &self,
        stage: &str,
        locale: Option<&str>,
    ) -> Result<(&StageTemplates, String), RenderError> {
        let mut candidates = Vec::new();
        if let Some(locale) = locale.map(|l| l.trim().replace('_', "-").to_lowercase()) {
            if let Some((language, _)) = locale.split_once('-') {
                candidates.push(language.to_string());
            }
            candidates.insert(0, locale);
        }
        for candidate in candidates {
            if let Some(t) = self.stages.get(&(candidate.clone(), stage.to_string())) {
                return Ok((t, candidate));
            }
        }
        self.stages
            .get(&(String::new(), stage.to_string()))
            .map(|t| (t, self.default_locale.clone()))
            .ok_or_else(|| RenderError::UnknownStage(stage.to_string()))
    }

    /// The locales with templates of their own, besides the default.
    pub fn locales(&self) -> Vec<String> {
        let mut locales: Vec<String> = self
            .stages
            .keys()
            .map(|(l, _)| l.clone())
            .filter(|l| !l.is_empty())
            .collect();
        locales.dedup();
        locales
    }

    /// Forbidden words written into the templates themselves, as
    /// `(file, hit)` pairs, for `followupd lint` and for refusing a reload.
    pub fn own_hits(&self) -> Vec<(String, Hit)> {
        self.stages
            .values()
            .flat_map(|s| [Some(&s.subject), Some(&s.text), s.html.as_ref()])
            .flatten()
            .flat_map(|f| {
                f.own_hits
                    .hits
                    .iter()
                    .map(|h| (f.own_hits.file.clone(), h.clone()))
            })
            .collect()
    }

    /// Renders one stage's message in the buyer's locale.
    pub fn render(
        &self,
        stage: &str,
        locale: Option<&str>,
        context: &tera::Context,
    ) -> Result<Rendered, RenderError> {
        let (templates, used) = self.select(stage, locale)?;
        // One budget for the whole message (see `guard`).
        let (parts, _) = guard::within(|| {
            let render = |f: &TemplateFile| {
                let mut out = guard::Capped(Vec::new());
                let rendered = self.tera.render_to(&f.name, context, &mut out);
                match (rendered, guard::exceeded()) {
                    (Ok(()), _) => String::from_utf8(out.0).map_err(|e| RenderError::Render {
                        file: f.display.clone(),
                        message: e.to_string(),
                    }),
                    (Err(_), Some(limit)) => Err(RenderError::Limit {
                        file: f.display.clone(),
                        limit,
                    }),
                    (Err(e), None) => Err(RenderError::Render {
                        file: f.display.clone(),
                        message: error_chain(&e),
                    }),
                }
            };
            let subject = render(&templates.subject)?.trim().to_string();
            if subject.contains(['\r', '\n']) {
                return Err(RenderError::MultilineSubject {
                    file: templates.subject.display.clone(),
                });
            }
            let html = templates.html.as_ref().map(render).transpose()?;
            Ok((subject, render(&templates.text)?, html))
        });
        let (subject, text, html) = parts?;
        Ok(Rendered {
            subject,
            text,
            html_text: html.as_deref().map(lint::visible_text),
            html,
            locale: used,
            folder: templates.folder(),
        })
    }

    /// Lints a rendered message: the subject, the text body and the visible
    /// text of the HTML body, each hit traced back to its origin.
    pub fn lint(
        &self,
        stage: &str,
        rendered: &Rendered,
        forbidden: &Forbidden,
        fields: &[(String, &str)],
    ) -> Result<Vec<Finding>, RenderError> {
        let (templates, _) = self.select(stage, Some(&rendered.locale))?;
        let mut parts = vec![
            (Part::Subject, rendered.subject.as_str(), &templates.subject),
            (Part::Text, rendered.text.as_str(), &templates.text),
        ];
        if let (Some(html_text), Some(file)) = (&rendered.html_text, &templates.html) {
            parts.push((Part::Html, html_text.as_str(), file));
        }
        let mut findings = Vec::new();
        for (part, text, file) in parts {
            let attributor = lint::Attributor::new(forbidden, &file.own_hits, fields);
            for hit in forbidden.scan_locale(text, Some(&rendered.locale)) {
                let origin = attributor.origin(&hit);
                findings.push(Finding { part, hit, origin });
            }
        }
        Ok(findings)
    }
}

/// Joins an error and its sources into one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// Turns Tera's parse error ("Failed to parse 'x'" + " --> 4:12 …") into
/// `FILE:4:12: message`.
fn describe_tera_error(e: &tera::Error, files: &BTreeMap<String, (String, String)>) -> String {
    let chain = error_chain(e);
    let file = files
        .iter()
        .find(|(name, _)| chain.contains(&format!("'{name}'")))
        .map(|(_, (display, _))| display.clone());
    let position = chain.split("--> ").nth(1).and_then(|rest| {
        let pos: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == ':')
            .collect();
        (!pos.is_empty()).then_some(pos)
    });
    let detail = chain
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("= "))
        .map(|l| l.trim_start().trim_start_matches("= ").to_string())
        .unwrap_or_else(|| chain.replace('\n', " "));
    match (file, position) {
        (Some(f), Some(p)) => format!("{f}:{p}: {detail}"),
        (Some(f), None) => format!("{f}: {detail}"),
        _ => chain,
    }
}

/// `order.items` as templates see it: never empty (an order imported with a
/// product name alone is one item of it), so a template can always loop.
fn items(order: &Order) -> Vec<Value> {
    if order.items.is_empty() {
        return vec![json!({
            "name": order.product_name.as_str(), "quantity": 1, "sku": "", "price": "",
        })];
    }
    order
        .items
        .iter()
        .map(|i| {
            json!({
                "name": i.name.as_str(),
                "quantity": i.quantity,
                "sku": i.sku.as_ref().map_or("", |v| v.as_str()),
                "price": i.price.as_ref().map_or("", |v| v.as_str()),
            })
        })
        .collect()
}

/// The variables a template sees. Optional order fields are always present
/// (as an empty string when unknown) so a template can test them with
/// `{% if %}` while a misspelt name is still an error.
pub fn context(order: &Order, sender: &Sender, stage: &str, zone: chrono_tz::Tz) -> tera::Context {
    fn text(v: &Option<crate::order::Line>) -> &str {
        v.as_ref().map(|l| l.as_str()).unwrap_or("")
    }
    let date = |t: Option<DateTime<Utc>>| {
        t.map(|t| t.with_timezone(&zone).format("%Y-%m-%d").to_string())
            .unwrap_or_default()
    };
    let instant = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    let buyer_name = text(&order.buyer_name);
    let first_name = buyer_name.split_whitespace().next().unwrap_or("");
    let extra: Map<String, Value> = order
        .extra
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let value = json!({
        "order": {
            "id": order.key.order_id.as_str(),
            "marketplace": order.key.marketplace.as_str(),
            "buyer_email": order.buyer_email.as_str(),
            "buyer_name": buyer_name,
            "buyer_first_name": first_name,
            "product_name": order.product_name.as_str(),
            "locale": text(&order.locale),
            "time_zone": zone.name(),
            "items": items(order),
            "status": order.status.as_str(),
            "shipped_at": instant(order.shipped_at),
            "shipped_on": date(order.shipped_at),
            "delivered_at": instant(order.delivered_at),
            "delivered_on": date(order.delivered_at),
            "order_url": text(&order.order_url),
            "tracking_url": text(&order.tracking_url),
            "review_url": text(&order.review_url),
            "extra": extra,
        },
        "shop": {
            "name": sender.shop_name,
            "email": sender.from.email.to_string(),
            "reply_to": sender.reply_to.as_ref().map(|m| m.email.to_string()).unwrap_or_else(|| sender.from.email.to_string()),
        },
        "stage": stage,
    });
    tera::Context::from_value(value).unwrap_or_default()
}

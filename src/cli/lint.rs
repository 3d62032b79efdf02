//! `followupd lint`: the templates, a finished message, or a rule explained.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::exit;
use crate::config::Config;
use crate::lint::Forbidden;
use crate::policy::{Policy, Profile};

#[derive(Debug, Args)]
pub struct LintArgs {
    /// A finished message to lint instead of the templates (plain text,
    /// or HTML if the name ends in .html or .htm).
    #[arg(long)]
    message: Option<PathBuf>,
    /// The buyer's locale for --message.
    #[arg(long)]
    locale: Option<String>,
    /// Also apply a marketplace policy profile to --message.
    #[arg(long, value_enum)]
    policy: Option<Profile>,
    /// The order id the message must mention (with --policy amazon).
    #[arg(long)]
    order_id: Option<String>,
    /// Say what a rule is and why it exists, and exit.
    #[arg(long, value_name = "RULE")]
    explain: Option<String>,
}

pub(super) fn run(args: LintArgs, config: &Path) -> Result<ExitCode> {
    if let Some(rule) = &args.explain {
        return explain(rule);
    }
    let Some(file) = &args.message else {
        return lint_templates(&super::load(config)?);
    };
    let forbidden = match Config::load(config) {
        Ok(config) => config.forbidden,
        // Linting a message needs no installation: without a config, the
        // shipped lists apply.
        Err(_) => Forbidden::with_locales(
            &crate::lint::DEFAULT_FORBIDDEN
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            &Default::default(),
        )
        .map_err(anyhow::Error::msg)?,
    };
    let policy = Policy::new(args.policy.unwrap_or(Profile::None));
    lint_message(
        &forbidden,
        args.locale.as_deref(),
        &policy,
        args.order_id.as_deref(),
        file,
    )
}

/// `followupd lint --explain RULE`.
fn explain(rule: &str) -> Result<ExitCode> {
    match crate::policy::explain(rule) {
        Some(r) => {
            println!("{}\n\n{}\n\nWhy: {}", r.id, r.summary, r.why);
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let ids: Vec<&str> = crate::policy::RULES.iter().map(|r| r.id.as_str()).collect();
            bail!("no rule '{rule}'; the rules are: {}", ids.join(", "))
        }
    }
}

/// `followupd lint --message FILE`: `FILE:LINE:COL: rule: message` per hit.
///
/// A `.html` / `.htm` file is linted as a mail client shows it: the words
/// in its visible text (so `re<b>view</b>` counts and a link target does
/// not), its links and images in the markup. Each hit is placed at the
/// line and column in the file where its text starts.
fn lint_message(
    forbidden: &Forbidden,
    locale: Option<&str>,
    policy: &Policy,
    order_id: Option<&str>,
    file: &Path,
) -> Result<ExitCode> {
    let source =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let is_html = file
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
    let visible = is_html.then(|| crate::lint::visible_text_with_sources(&source));
    let text = visible
        .as_ref()
        .map_or(source.as_str(), |(text, _)| text.as_str());
    // Where a finding at `line`:`column` of `text` is in the file. One with
    // no text of its own keeps the position it has.
    let place = |line: usize, column: usize, found: &str| {
        let (line, column) = match &visible {
            Some((text, sources)) if !found.is_empty() => offset_of(text, line, column)
                .and_then(|at| sources.get(at))
                .map_or((line, column), |&at| crate::policy::locate(&source, at)),
            _ => (line, column),
        };
        format!("{}:{line}:{column}", file.display())
    };
    let mut problems = Vec::new();
    for hit in forbidden.scan_locale(text, locale) {
        problems.push((
            (hit.line, hit.column),
            place(hit.line, hit.column, &hit.word),
            format!(
                "forbidden-word: forbidden word '{}' (matches '{}')",
                hit.word, hit.pattern
            ),
        ));
    }
    let mut policy = policy.clone();
    if order_id.is_none() {
        // Without the order id there is nothing to look for.
        policy.disabled.insert(crate::policy::RuleId::OrderId);
    }
    // An HTML file's visible text stands in for the text body: the prose
    // rules read it, and the link and image rules read the markup.
    let parts = crate::policy::MessageParts {
        subject: "",
        text,
        html: is_html.then_some(source.as_str()),
        html_text: None,
        raw: source.as_bytes(),
        order_id: order_id.unwrap_or_default(),
        order_links: &[],
    };
    for v in crate::policy::check(&policy, &parts) {
        // Without the "text body:L:C: " prefix: the file position replaces it.
        let message = v.message();
        let position = match (v.part, v.rule) {
            // Found in the markup itself, at its own position; or about the
            // whole message, with nothing in it to point at.
            (crate::lint::Part::Html, _)
            | (_, crate::policy::RuleId::OrderId | crate::policy::RuleId::Attachment) => {
                place(v.line, v.column, "")
            }
            _ => place(v.line, v.column, &v.found),
        };
        problems.push(((v.line, v.column), position, message));
    }
    problems.sort();
    for (_, position, message) in &problems {
        println!("{position}: {message}");
    }
    Ok(exit(problems.is_empty()))
}

/// The byte offset of 1-based `line` and character `column` in `text`.
fn offset_of(text: &str, line: usize, column: usize) -> Option<usize> {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let (at, _) = text[line_start..]
        .char_indices()
        .nth(column.saturating_sub(1))?;
    Some(line_start + at)
}

/// `followupd lint`: the templates' own text, then every stage rendered
/// against a sample order.
fn lint_templates(config: &Config) -> Result<ExitCode> {
    let templates = match crate::render::Templates::for_config(config) {
        Ok(t) => t,
        Err(e) => {
            println!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let mut problems = 0;
    for (file, hit) in templates.own_hits() {
        problems += 1;
        println!(
            "{file}:{}:{}: forbidden word '{}' (matches '{}')",
            hit.line, hit.column, hit.word, hit.pattern
        );
    }
    let order = crate::order::sample_order(&config.default_marketplace);
    let sender = config.sender_for(order.key.marketplace.as_str());
    let mut locales = vec![None];
    locales.extend(templates.locales().into_iter().map(Some));
    let sets: Vec<(Option<String>, &crate::schedule::StageSpec)> = locales
        .iter()
        .flat_map(|l| config.stages.iter().map(move |s| (l.clone(), s)))
        .collect();
    for (locale, stage) in &sets {
        let mut context =
            crate::render::context(&order, sender, &stage.name, config.rules.default_zone);
        let links = crate::unsubscribe::links_for(config.unsubscribe.as_ref(), &order);
        crate::unsubscribe::add_to_context(&mut context, links.as_ref());
        match templates.render(&stage.name, locale.as_deref(), &context) {
            Ok(rendered) => {
                let findings = templates.lint(
                    &stage.name,
                    &rendered,
                    &config.forbidden,
                    &order.text_fields(),
                )?;
                for f in findings
                    .iter()
                    .filter(|f| !matches!(f.origin, crate::lint::Origin::Template { .. }))
                {
                    problems += 1;
                    println!("{}: {f}", stage.name);
                }
            }
            Err(e) => {
                problems += 1;
                println!("{e}");
            }
        }
    }
    if problems == 0 {
        eprintln!(
            "lint: {} stages in {} languages, no problems",
            config.stages.len(),
            locales.len()
        );
    }
    Ok(exit(problems == 0))
}

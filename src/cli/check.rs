//! `followupd check`: config, templates, database and transport, one line
//! each; exit 1 if any fails.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::config::Config;
use crate::store::Store;

pub(super) async fn run(config: &Path) -> Result<ExitCode> {
    let mut report = Report { ok: true };
    // A config that does not load is what check is for: a FAIL line.
    let config = match Config::load(config) {
        Ok(config) => config,
        Err(e) => {
            report.line("config", Err(e.to_string()));
            return Ok(super::exit(false));
        }
    };
    for warning in &config.warnings {
        println!("warn  config: {warning}");
    }
    report.line("config", Ok(config.path.display().to_string()));
    report.line("templates", templates(&config));
    report.line("database", database(&config).await);
    report.line("transport", transport(&config).await);
    report.line("http", http(&config).await);
    report.line("unsubscribe", crate::unsubscribe::check(&config));
    report.line("dkim", crate::dkim::check(&config));
    Ok(super::exit(report.ok))
}

struct Report {
    ok: bool,
}

impl Report {
    fn line(&mut self, part: &str, result: Result<String, String>) {
        match result {
            Ok(text) => println!("ok    {part}: {text}"),
            Err(text) => {
                self.ok = false;
                println!("FAIL  {part}: {}", crate::redact::text(&text));
            }
        }
    }
}

fn templates(config: &Config) -> Result<String, String> {
    match crate::render::Templates::for_config(config) {
        Ok(t) if t.own_hits().is_empty() => Ok(format!("{} stages", config.stages.len())),
        Ok(t) => Err(format!(
            "{} forbidden words in the template text (run followupd lint)",
            t.own_hits().len()
        )),
        Err(e) => Err(e.to_string()),
    }
}

async fn database(config: &Config) -> Result<String, String> {
    // A check creates nothing: a SQLite file that is not there yet is
    // reported, not made.
    if let Some(file) = sqlite_file(&config.database_url) {
        if !file.exists() {
            return Ok(format!(
                "{} does not exist yet; followupd import or run creates it",
                file.display()
            ));
        }
    }
    let store = Store::open(&config.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let counts = store.state_counts().await.map_err(|e| e.to_string());
    let paused = store.paused().await.map_err(|e| e.to_string());
    store.close().await;
    let total: i64 = counts?.values().sum();
    let paused = match paused? {
        Some(p) => format!("; sending {p} (followupd resume)"),
        None => String::new(),
    };
    Ok(format!(
        "{} ({total} stages){paused}",
        crate::config::redact_url(&config.database_url)
    ))
}

/// The file of a `sqlite://` URL, if it names one.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://")?;
    let file = rest.split('?').next().unwrap_or_default();
    (!file.is_empty() && file != ":memory:").then(|| file.into())
}

async fn transport(config: &Config) -> Result<String, String> {
    if let crate::config::TransportConfig::File { dir } = &config.transport {
        if !dir.exists() {
            return Ok(format!(
                "outbox {} does not exist yet; the first send creates it",
                dir.display()
            ));
        }
    }
    let transport =
        crate::transport::Transport::new(&config.transport).map_err(|e| e.to_string())?;
    transport.check().await.map_err(|e| e.to_string())
}

/// Whether `[http] listen` can be bound, and which endpoints have their
/// secrets; never a secret itself.
async fn http(config: &Config) -> Result<String, String> {
    let Some(http) = &config.http else {
        return Ok("off (no [http] listen)".into());
    };
    let listener = crate::http::bind(http).await.map_err(|e| {
        format!("{e} (a running followupd run holds it; otherwise another process does)")
    })?;
    drop(listener);
    let secrets = crate::http::read_secrets(http).map_err(|e| e.to_string())?;
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let mut endpoints = Vec::new();
    if http.shopify.is_some() {
        endpoints.push(format!(
            "shopify ({})",
            count(secrets.shopify.len(), "secret")
        ));
    }
    if http.woocommerce.is_some() {
        endpoints.push(format!(
            "woocommerce ({})",
            count(secrets.woocommerce.len(), "secret")
        ));
    }
    if http.api_tokens.is_some() {
        endpoints.push(format!("api ({})", count(secrets.api.len(), "token")));
    }
    endpoints.push("healthz, readyz, metrics".into());
    Ok(format!(
        "{} can be bound; {}",
        http.listen,
        endpoints.join(", ")
    ))
}

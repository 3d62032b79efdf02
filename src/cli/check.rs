//! `followupd check`: config, templates, database and transport, one line
//! each; exit 1 if any fails.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::config::Config;
use crate::store::Store;

pub(super) async fn run(config: &Path) -> Result<ExitCode> {
    let config = super::load(config)?;
    let mut report = Report { ok: true };
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
                println!("FAIL  {part}: {text}");
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
        redact_url(&config.database_url)
    ))
}

async fn transport(config: &Config) -> Result<String, String> {
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
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let mut endpoints = Vec::new();
    if let Some(s) = &http.shopify {
        endpoints.push(format!("shopify ({})", count(s.secrets.len(), "secret")));
    }
    if let Some(w) = &http.woocommerce {
        endpoints.push(format!(
            "woocommerce ({})",
            count(w.secrets.len(), "secret")
        ));
    }
    if !http.api_tokens.is_empty() {
        endpoints.push(format!("api ({})", count(http.api_tokens.len(), "token")));
    }
    endpoints.push("healthz, readyz, metrics".into());
    Ok(format!(
        "{} can be bound; {}",
        http.listen,
        endpoints.join(", ")
    ))
}

/// Hides a password in a database URL.
pub(super) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

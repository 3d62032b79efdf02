//! `config.toml`: read, checked and turned into typed settings.
//!
//! The file is deserialised into `Raw*` structs that mirror it key for key
//! (unknown keys are errors, so a typo never silently falls back to a
//! default), then converted into [`Config`], whose values are already parsed:
//! durations, times of day, time zones, mailboxes. Every error names the key
//! it is about.

//!
//! One file a concern: `raw` (the file format and its defaults), `build`
//! (turning it into [`Config`]), and one file for each section that needs
//! more than a line of checking: `sender`, `stages`, `transport`, `mappings`.

mod build;
mod deliverability;
pub mod http;
mod mappings;
mod raw;
mod sender;
mod stages;
mod transport;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::lint::Forbidden;
pub use crate::schedule::RetryPolicy;
use crate::schedule::{Rules, StageSpec};

use build::Builder;
pub use deliverability::{BouncesConfig, UnsubscribeConfig};
pub use http::HttpConfig;
pub use mappings::{ColumnMapping, CANONICAL_FIELDS};
use raw::RawConfig;
pub use sender::Sender;
pub use transport::{Secret, SmtpConfig, TlsMode, TransportConfig};

/// A configuration problem, naming the file and key so it can be fixed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// `[daemon]`: how `followupd run` behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// How long in-flight sends may take to finish after SIGTERM.
    pub shutdown_grace: std::time::Duration,
    /// Reload when a file under the templates folder changes.
    pub watch_templates: bool,
    /// Look at the database at least this often, for orders imported by
    /// another process.
    pub idle_recheck: std::time::Duration,
}

/// The whole configuration, parsed.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from.
    pub path: PathBuf,
    pub database_url: String,
    /// How long a claim on an in-flight send lasts without renewal; after
    /// that another instance treats the send as interrupted.
    pub lease: std::time::Duration,
    pub default_marketplace: String,
    pub default_locale: String,
    pub rules: Rules,
    pub stages: Vec<StageSpec>,
    pub templates_dir: PathBuf,
    pub forbidden: Forbidden,
    pub transport: TransportConfig,
    pub retry: RetryPolicy,
    /// A folder `followupd run` imports order files from.
    pub inbox: Option<PathBuf>,
    /// The export the inbox's files are read as (`[import] from`).
    pub inbox_source: Option<crate::import::Source>,
    pub daemon: DaemonConfig,
    pub sender: Sender,
    pub marketplaces: BTreeMap<String, Sender>,
    pub mappings: BTreeMap<String, ColumnMapping>,
    /// `[http]`: the listener of `followupd run`; `None` without it.
    pub http: Option<HttpConfig>,
    /// `[unsubscribe]`: the link every message carries; `None` without it.
    pub unsubscribe: Option<UnsubscribeConfig>,
    /// `[bounces]`: where bounce mail arrives, and the soft-bounce limit.
    pub bounces: BouncesConfig,
    /// `[transport.dkim]`: the signer of every message; `None` without it.
    pub dkim: Option<std::sync::Arc<crate::dkim::DkimSigner>>,
    /// Things that work but deserve the operator's attention.
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads and checks `path`. Relative paths inside the file are taken
    /// relative to the file's own folder, so the daemon finds its templates
    /// whatever its working directory. `FOLLOWUPD_DATABASE_URL` overrides
    /// `[database] url` (handy in a systemd unit).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let database_override = std::env::var("FOLLOWUPD_DATABASE_URL").ok();
        Self::parse(path, &text, database_override)
    }

    /// Parses configuration text as if read from `path`.
    pub fn parse(
        path: &Path,
        text: &str,
        database_override: Option<String>,
    ) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: toml_error(&e, text),
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Builder { path, base }.build(raw, database_override)
    }

    /// The sender for a marketplace, falling back to `[sender]`.
    pub fn sender_for(&self, marketplace: &str) -> &Sender {
        self.marketplaces.get(marketplace).unwrap_or(&self.sender)
    }

    pub fn stage(&self, name: &str) -> Option<&StageSpec> {
        self.stages.iter().find(|s| s.name == name)
    }
}

/// A database URL with its password hidden, in the user part or as a
/// query parameter (libpq's form), whatever the scheme (src/redact.rs).
pub fn redact_url(url: &str) -> String {
    crate::redact::url(url)
}

/// A TOML error as `line L, column C: message`, on one line and without
/// the source line toml quotes (which could be `password = S3cret!`); in a
/// message about a value, the values it quotes are hidden too
/// (`invalid type: integer \`***\``).
fn toml_error(e: &toml::de::Error, text: &str) -> String {
    let mut message = crate::redact::one_line(e.message());
    // A value toml quotes ("invalid type: integer `…`") may be the
    // password itself: the span of such an error is often the whole table,
    // so its key cannot be told; field and variant names are kept.
    let quotes_a_value = ["invalid type", "invalid value", "invalid length"]
        .iter()
        .any(|start| message.starts_with(start));
    if quotes_a_value {
        let mut hidden = String::new();
        for (i, part) in message.split('`').enumerate() {
            if i > 0 {
                hidden.push('`');
            }
            hidden.push_str(if i % 2 == 1 { "***" } else { part });
        }
        message = hidden;
    }
    let Some(span) = e.span() else {
        return message;
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    format!("line {line}, column {column}: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_retries_outlast_a_relay_down_for_most_of_a_day() {
        let text = "[sender]\nfrom = \"Shop <shop@shop.example>\"\n";
        let config = Config::parse(Path::new("config.toml"), text, None).expect("defaults load");
        let retry = &config.retry;
        let waited: chrono::Duration = (1..retry.max_attempts)
            .map(|attempt| retry.delay(attempt, 0.0))
            .sum();
        assert!(
            waited >= chrono::Duration::hours(20),
            "the last attempt comes {waited} after the first"
        );
        assert_eq!(retry.delay(20, 0.0), chrono::Duration::hours(1));
    }

    #[test]
    fn a_database_password_never_shows() {
        for url in [
            "postgres://u:PgS3cret@db/followupd",
            "postgres://db/followupd?user=u&password=PgS3cret",
            "postgresql://u:PgS3cret@db/x?password=PgS3cret&sslmode=require",
        ] {
            let shown = redact_url(url);
            assert!(!shown.contains("PgS3cret"), "{shown}");
            assert!(shown.contains("db"), "{shown}");
        }
    }
}

//! The file format: structs that mirror `config.toml` key for key, with the
//! defaults of every key. Unknown keys are errors, so a typo never silently
//! falls back to a default.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::mappings::RawMapping;
use super::sender::{RawPolicy, RawSender};
use super::stages::{default_stages, RawStage};
use super::transport::RawTransport;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) database: RawDatabase,
    #[serde(default)]
    pub(super) defaults: RawDefaults,
    #[serde(default)]
    pub(super) sending_hours: RawSendingHours,
    #[serde(default)]
    pub(super) templates: RawTemplates,
    #[serde(default)]
    pub(super) lint: RawLint,
    #[serde(default)]
    pub(super) transport: RawTransport,
    #[serde(default)]
    pub(super) retry: RawRetry,
    #[serde(default)]
    pub(super) import: RawImport,
    #[serde(default)]
    pub(super) daemon: RawDaemon,
    pub(super) sender: RawSender,
    #[serde(default)]
    pub(super) marketplaces: BTreeMap<String, RawSender>,
    #[serde(default = "default_stages")]
    pub(super) stages: Vec<RawStage>,
    #[serde(default)]
    pub(super) mappings: BTreeMap<String, RawMapping>,
    #[serde(default)]
    pub(super) policies: BTreeMap<String, RawPolicy>,
    #[serde(default)]
    pub(super) http: Option<super::http::RawHttp>,
    #[serde(default)]
    pub(super) unsubscribe: Option<super::deliverability::RawUnsubscribe>,
    #[serde(default)]
    pub(super) bounces: super::deliverability::RawBounces,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    #[serde(default = "default_database_url")]
    pub(super) url: String,
    #[serde(default = "default_lease")]
    pub(super) lease: String,
}

impl Default for RawDatabase {
    fn default() -> Self {
        Self {
            url: default_database_url(),
            lease: default_lease(),
        }
    }
}

pub(super) fn default_lease() -> String {
    "2m".into()
}

pub(super) fn default_database_url() -> String {
    "sqlite://followupd.db".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDefaults {
    pub(super) marketplace: String,
    pub(super) time_zone: String,
    pub(super) locale: String,
    pub(super) transit_estimate: String,
}

impl Default for RawDefaults {
    fn default() -> Self {
        Self {
            marketplace: "shop".into(),
            time_zone: "UTC".into(),
            locale: "en".into(),
            transit_estimate: "5d".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSendingHours {
    pub(super) start: String,
    pub(super) end: String,
}

impl Default for RawSendingHours {
    fn default() -> Self {
        Self {
            start: "09:00".into(),
            end: "20:00".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawTemplates {
    pub(super) dir: PathBuf,
}

impl Default for RawTemplates {
    fn default() -> Self {
        Self {
            dir: "templates".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLint {
    pub(super) forbidden: Vec<String>,
    /// Per-language lists (replacing the shipped one for that language).
    pub(super) locales: BTreeMap<String, Vec<String>>,
}

impl Default for RawLint {
    fn default() -> Self {
        Self {
            forbidden: crate::lint::DEFAULT_FORBIDDEN
                .iter()
                .map(|s| s.to_string())
                .collect(),
            locales: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawImport {
    pub(super) inbox: Option<PathBuf>,
    /// The source the inbox's files come from (`--from` for `run`).
    pub(super) from: Option<crate::import::Source>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDaemon {
    pub(super) shutdown_grace: String,
    pub(super) watch_templates: bool,
    pub(super) idle_recheck: String,
}

impl Default for RawDaemon {
    fn default() -> Self {
        Self {
            shutdown_grace: "30s".into(),
            watch_templates: true,
            idle_recheck: "5m".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRetry {
    pub(super) max_attempts: u32,
    pub(super) first_delay: String,
    pub(super) max_delay: String,
}

impl Default for RawRetry {
    /// About a day of retrying (1 min doubling to hourly, 30 attempts), so a
    /// relay that is down overnight delays messages instead of failing them;
    /// a stage's window still ends it sooner.
    fn default() -> Self {
        Self {
            max_attempts: 30,
            first_delay: "1m".into(),
            max_delay: "1h".into(),
        }
    }
}

//! Turning the raw file into [`Config`]: every value parsed, every path
//! resolved, and every error naming the key it is about.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{Duration, NaiveTime};
use chrono_tz::Tz;
use lettre::message::Mailbox;

use super::raw::RawConfig;
use super::{Config, ConfigError, DaemonConfig, RetryPolicy};
use crate::lint::Forbidden;
use crate::schedule::{Rules, SendingHours};

pub(super) struct Builder<'a> {
    pub(super) path: &'a Path,
    pub(super) base: PathBuf,
}

impl Builder<'_> {
    pub(super) fn invalid(
        &self,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            key: key.into(),
            message: message.into(),
        }
    }

    pub(super) fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    pub(super) fn duration(&self, key: &str, value: &str) -> Result<Duration, ConfigError> {
        let std = humantime::parse_duration(value).map_err(|e| {
            self.invalid(
                key,
                format!("'{value}' is not a duration like 2d or 36h: {e}"),
            )
        })?;
        Duration::from_std(std).map_err(|_| self.invalid(key, "duration too large"))
    }

    pub(super) fn time_of_day(&self, key: &str, value: &str) -> Result<NaiveTime, ConfigError> {
        NaiveTime::parse_from_str(value, "%H:%M")
            .map_err(|_| self.invalid(key, format!("'{value}' is not a time of day like 09:00")))
    }

    pub(super) fn mailbox(&self, key: &str, value: &str) -> Result<Mailbox, ConfigError> {
        value
            .parse()
            .map_err(|e| self.invalid(key, format!("'{value}' is not a mail address: {e}")))
    }

    /// `[sending_hours]` and `[defaults]`' zone and transit estimate.
    fn rules(&self, raw: &RawConfig) -> Result<Rules, ConfigError> {
        let default_zone: Tz = raw.defaults.time_zone.parse().map_err(|_| {
            self.invalid(
                "defaults.time_zone",
                format!("unknown time zone '{}'", raw.defaults.time_zone),
            )
        })?;
        Ok(Rules {
            sending_hours: SendingHours {
                start: self.time_of_day("sending_hours.start", &raw.sending_hours.start)?,
                end: self.time_of_day("sending_hours.end", &raw.sending_hours.end)?,
            },
            default_zone,
            transit_estimate: self
                .duration("defaults.transit_estimate", &raw.defaults.transit_estimate)?,
        })
    }

    pub(super) fn build(
        self,
        raw: RawConfig,
        database_override: Option<String>,
    ) -> Result<Config, ConfigError> {
        let rules = self.rules(&raw)?;
        let stages = self.stages(&raw.stages)?;
        let forbidden = Forbidden::with_locales(&raw.lint.forbidden, &raw.lint.locales)
            .map_err(|e| self.invalid("lint", e.to_string()))?;
        let mut warnings = Vec::new();
        let mut raw_transport = raw.transport;
        let dkim = self.dkim(raw_transport.take_dkim())?;
        let transport = self.transport(raw_transport, &mut warnings)?;
        if raw.retry.max_attempts == 0 {
            return Err(self.invalid("retry.max_attempts", "must be at least 1"));
        }
        let retry = RetryPolicy {
            max_attempts: raw.retry.max_attempts,
            first_delay: self.duration("retry.first_delay", &raw.retry.first_delay)?,
            max_delay: self.duration("retry.max_delay", &raw.retry.max_delay)?,
        };
        let (sender, marketplaces) = self.senders(
            &raw.sender,
            &raw.marketplaces,
            &raw.policies,
            &stages,
            &mut warnings,
        )?;
        let mut mappings = BTreeMap::new();
        for (name, m) in raw.mappings {
            mappings.insert(name.clone(), self.mapping(&name, m)?);
        }
        let database_url = database_override.unwrap_or(raw.database.url);
        let http = raw
            .http
            .map(|h| h.build(|p| self.resolve(p)))
            .transpose()
            .map_err(|e| self.invalid(e.key, e.message))?;
        let unsubscribe = self.unsubscribe(raw.unsubscribe)?;
        let bounces = self.bounces(raw.bounces)?;
        Ok(Config {
            path: self.path.to_path_buf(),
            database_url: self.database_url(&database_url)?,
            lease: self.std_duration("database.lease", &raw.database.lease)?,
            default_marketplace: raw.defaults.marketplace,
            default_locale: raw.defaults.locale,
            rules,
            stages,
            templates_dir: self.resolve(&raw.templates.dir),
            forbidden,
            transport,
            retry,
            inbox: raw.import.inbox.as_deref().map(|p| self.resolve(p)),
            inbox_source: raw.import.from,
            daemon: DaemonConfig {
                shutdown_grace: self
                    .std_duration("daemon.shutdown_grace", &raw.daemon.shutdown_grace)?,
                watch_templates: raw.daemon.watch_templates,
                idle_recheck: self.std_duration("daemon.idle_recheck", &raw.daemon.idle_recheck)?,
            },
            sender,
            marketplaces,
            mappings,
            http,
            unsubscribe,
            bounces,
            dkim,
            warnings,
        })
    }

    pub(super) fn std_duration(
        &self,
        key: &str,
        value: &str,
    ) -> Result<std::time::Duration, ConfigError> {
        humantime::parse_duration(value)
            .map_err(|e| self.invalid(key, format!("'{value}' is not a duration like 30s: {e}")))
    }

    /// SQLite paths are resolved against the config file's folder, like
    /// every other path, and the database is created on first use.
    fn database_url(&self, url: &str) -> Result<String, ConfigError> {
        if let Some(rest) = url.strip_prefix("sqlite://") {
            let (file, query) = rest.split_once('?').unwrap_or((rest, ""));
            if file.is_empty() || file == ":memory:" {
                return Ok(url.to_string());
            }
            let resolved = self.resolve(Path::new(file));
            let mut query = query.to_string();
            if !query.split('&').any(|kv| kv.starts_with("mode=")) {
                if !query.is_empty() {
                    query.push('&');
                }
                query.push_str("mode=rwc");
            }
            Ok(format!("sqlite://{}?{query}", resolved.display()))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(url.to_string())
        } else {
            Err(self.invalid(
                "database.url",
                format!(
                    "'{}' must start with sqlite:// or postgres://",
                    crate::redact::url(url)
                ),
            ))
        }
    }
}

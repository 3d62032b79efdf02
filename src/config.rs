//! `config.toml`: read, checked and turned into typed settings.
//!
//! The file is deserialised into `Raw*` structs that mirror it key for key
//! (unknown keys are errors, so a typo never silently falls back to a
//! default), then converted into [`Config`], whose values are already parsed:
//! durations, times of day, time zones, mailboxes. Every error names the key
//! it is about.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{Duration, NaiveTime};
use chrono_tz::Tz;
use lettre::message::Mailbox;
use serde::Deserialize;

use crate::lint::Forbidden;
use crate::policy::{Policy, Profile, StageConflict};
pub use crate::schedule::RetryPolicy;
use crate::schedule::{Anchor, OnUnknown, Rules, SendingHours, SkipCondition, StageSpec};

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    database: RawDatabase,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    sending_hours: RawSendingHours,
    #[serde(default)]
    templates: RawTemplates,
    #[serde(default)]
    lint: RawLint,
    #[serde(default)]
    transport: RawTransport,
    #[serde(default)]
    retry: RawRetry,
    #[serde(default)]
    import: RawImport,
    #[serde(default)]
    daemon: RawDaemon,
    sender: RawSender,
    #[serde(default)]
    marketplaces: BTreeMap<String, RawSender>,
    #[serde(default = "default_stages")]
    stages: Vec<RawStage>,
    #[serde(default)]
    mappings: BTreeMap<String, RawMapping>,
    #[serde(default)]
    policies: BTreeMap<String, RawPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    #[serde(default = "default_database_url")]
    url: String,
    #[serde(default = "default_lease")]
    lease: String,
}

impl Default for RawDatabase {
    fn default() -> Self {
        Self {
            url: default_database_url(),
            lease: default_lease(),
        }
    }
}

fn default_lease() -> String {
    "2m".into()
}

fn default_database_url() -> String {
    "sqlite://followupd.db".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDefaults {
    marketplace: String,
    time_zone: String,
    locale: String,
    transit_estimate: String,
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
struct RawSendingHours {
    start: String,
    end: String,
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
struct RawTemplates {
    dir: PathBuf,
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
struct RawLint {
    forbidden: Vec<String>,
    /// Per-language lists (replacing the shipped one for that language).
    locales: BTreeMap<String, Vec<String>>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
enum RawTransport {
    File { dir: PathBuf },
    Smtp(Box<RawSmtp>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: String,
    port: Option<u16>,
    #[serde(default = "default_tls")]
    tls: TlsMode,
    username: Option<String>,
    password: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    #[serde(default = "default_pool_size")]
    pool_size: usize,
    #[serde(default = "default_connect_timeout")]
    connect_timeout: String,
    #[serde(default = "default_command_timeout")]
    command_timeout: String,
    #[serde(default = "default_send_timeout")]
    send_timeout: String,
    max_per_minute: Option<u32>,
    max_per_hour: Option<u32>,
    ca_file: Option<PathBuf>,
    hello_name: Option<String>,
    #[serde(default = "default_pipelining")]
    pipelining: bool,
}

fn default_tls() -> TlsMode {
    TlsMode::Starttls
}
fn default_pool_size() -> usize {
    4
}
fn default_pipelining() -> bool {
    true
}
fn default_connect_timeout() -> String {
    "10s".into()
}
fn default_command_timeout() -> String {
    "30s".into()
}
fn default_send_timeout() -> String {
    "2m".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawImport {
    inbox: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDaemon {
    shutdown_grace: String,
    watch_templates: bool,
    idle_recheck: String,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRetry {
    max_attempts: u32,
    first_delay: String,
    max_delay: String,
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

impl Default for RawTransport {
    fn default() -> Self {
        Self::File {
            dir: "outbox".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSender {
    from: Option<String>,
    reply_to: Option<String>,
    shop_name: Option<String>,
    policy: Option<Profile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPolicy {
    /// Rule ids to switch off.
    disable: Vec<String>,
    /// Incentive phrases added to the profile's own.
    phrases: Vec<String>,
    allowed_domains: Vec<String>,
    on_stage_conflict: StageConflict,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    name: String,
    anchor: Anchor,
    opens_after: String,
    closes_after: String,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    skip_when: Vec<SkipCondition>,
    #[serde(default)]
    on_unknown: OnUnknown,
}

fn default_stages() -> Vec<RawStage> {
    use SkipCondition::*;
    let unhappy = vec![Returned, Refunded, Cancelled, Complaint, OptedOut];
    vec![
        RawStage {
            name: "shipment".into(),
            anchor: Anchor::ShippedAt,
            opens_after: "0s".into(),
            closes_after: "2d".into(),
            after: None,
            // Tracking details help a buyer who complained, so a complaint
            // alone does not hold back the shipment notice.
            skip_when: vec![Returned, Refunded, Cancelled, OptedOut],
            on_unknown: OnUnknown::Hold,
        },
        RawStage {
            name: "follow_up".into(),
            anchor: Anchor::DeliveredAt,
            opens_after: "2d".into(),
            closes_after: "5d".into(),
            after: None,
            skip_when: unhappy.clone(),
            on_unknown: OnUnknown::Hold,
        },
        RawStage {
            name: "review_request".into(),
            anchor: Anchor::DeliveredAt,
            opens_after: "7d".into(),
            closes_after: "14d".into(),
            after: Some("follow_up".into()),
            skip_when: unhappy,
            on_unknown: OnUnknown::Hold,
        },
    ]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    #[serde(default)]
    columns: BTreeMap<String, String>,
    #[serde(default)]
    status: BTreeMap<String, String>,
}

/// Who a message is from, for one marketplace.
#[derive(Debug, Clone, PartialEq)]
pub struct Sender {
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    pub shop_name: String,
    /// The marketplace's policy profile, with the seller's adjustments.
    pub policy: Policy,
    /// Stages the policy rules out for this marketplace (when configured to
    /// disable rather than refuse).
    pub disabled_stages: BTreeSet<String>,
}

/// Where finished messages go.
#[derive(Debug, Clone, PartialEq)]
pub enum TransportConfig {
    /// Writes each message as an `.eml` file into `dir`.
    File { dir: PathBuf },
    /// Hands messages to an SMTP relay.
    Smtp(SmtpConfig),
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plain text (a relay on the same machine).
    None,
    /// Plain connect, then STARTTLS (usually port 587).
    Starttls,
    /// TLS from the first byte (usually port 465).
    Tls,
}

/// A password that never appears in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// `[transport] kind = "smtp"`.
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Connections kept open, and messages in flight at once.
    pub pool_size: usize,
    pub connect_timeout: std::time::Duration,
    /// Bound on each SMTP command's reply.
    pub command_timeout: std::time::Duration,
    /// Bound on a whole send, connection included.
    pub send_timeout: std::time::Duration,
    pub max_per_minute: Option<u32>,
    pub max_per_hour: Option<u32>,
    /// An extra trusted root certificate (PEM), for a private relay.
    pub ca_file: Option<PathBuf>,
    /// The name to say in EHLO (default: this machine's host name).
    pub hello_name: Option<String>,
    /// Pipeline the envelope when the server offers it (RFC 2920); off
    /// for a relay that offers PIPELINING but mishandles it.
    pub pipelining: bool,
}

/// How another export's columns map onto followupd's canonical fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ColumnMapping {
    /// Canonical field name → column name in the source file.
    pub columns: BTreeMap<String, String>,
    /// Source status value (lower-cased) → canonical status.
    pub status: BTreeMap<String, crate::order::OrderStatus>,
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
    pub daemon: DaemonConfig,
    pub sender: Sender,
    pub marketplaces: BTreeMap<String, Sender>,
    pub mappings: BTreeMap<String, ColumnMapping>,
    /// Things that work but deserve the operator's attention.
    pub warnings: Vec<String>,
}

/// The canonical order fields a mapping may name.
pub const CANONICAL_FIELDS: [&str; 16] = [
    "order_id",
    "marketplace",
    "buyer_email",
    "buyer_name",
    "product_name",
    "locale",
    "time_zone",
    "shipped_at",
    "delivered_at",
    "status",
    "complaint",
    "opted_out",
    "order_url",
    "tracking_url",
    "review_url",
    "extra",
];

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
            message: e.to_string(),
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

struct Builder<'a> {
    path: &'a Path,
    base: PathBuf,
}

impl Builder<'_> {
    fn invalid(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            key: key.into(),
            message: message.into(),
        }
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn duration(&self, key: &str, value: &str) -> Result<Duration, ConfigError> {
        let std = humantime::parse_duration(value).map_err(|e| {
            self.invalid(
                key,
                format!("'{value}' is not a duration like 2d or 36h: {e}"),
            )
        })?;
        Duration::from_std(std).map_err(|_| self.invalid(key, "duration too large"))
    }

    fn time_of_day(&self, key: &str, value: &str) -> Result<NaiveTime, ConfigError> {
        NaiveTime::parse_from_str(value, "%H:%M")
            .map_err(|_| self.invalid(key, format!("'{value}' is not a time of day like 09:00")))
    }

    fn mailbox(&self, key: &str, value: &str) -> Result<Mailbox, ConfigError> {
        value
            .parse()
            .map_err(|e| self.invalid(key, format!("'{value}' is not a mail address: {e}")))
    }

    fn sender(
        &self,
        key: &str,
        raw: &RawSender,
        fallback: Option<&Sender>,
    ) -> Result<Sender, ConfigError> {
        let from = match (&raw.from, fallback) {
            (Some(f), _) => self.mailbox(&format!("{key}.from"), f)?,
            (None, Some(fb)) => fb.from.clone(),
            (None, None) => return Err(self.invalid(format!("{key}.from"), "is required")),
        };
        let reply_to = match &raw.reply_to {
            Some(r) => Some(self.mailbox(&format!("{key}.reply_to"), r)?),
            None => fallback.and_then(|fb| fb.reply_to.clone()),
        };
        let shop_name = raw
            .shop_name
            .clone()
            .or_else(|| fallback.map(|fb| fb.shop_name.clone()))
            .or_else(|| from.name.clone())
            .unwrap_or_else(|| from.email.domain().to_string());
        Ok(Sender {
            from,
            reply_to,
            shop_name,
            policy: fallback
                .map(|fb| fb.policy.clone())
                .unwrap_or_else(|| Policy::new(Profile::None)),
            disabled_stages: fallback
                .map(|fb| fb.disabled_stages.clone())
                .unwrap_or_default(),
        })
    }

    /// Applies `[policies.PROFILE]` and checks the stages against the
    /// profile: a forbidden stage refuses the config, or is disabled for the
    /// marketplace with a warning when the profile says so.
    fn apply_policy(
        &self,
        key: &str,
        profile: Profile,
        raw: Option<&RawPolicy>,
        stages: &[StageSpec],
        sender: &mut Sender,
        warnings: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        let mut policy = Policy::new(profile);
        if let Some(raw) = raw {
            for rule in &raw.disable {
                if crate::policy::explain(rule).is_none() {
                    return Err(self.invalid(
                        format!("policies.{}.disable", profile.as_str()),
                        format!("unknown rule '{rule}' (see followupd lint --explain)"),
                    ));
                }
                policy.disabled.insert(rule.clone());
            }
            policy.phrases.extend(raw.phrases.iter().cloned());
            policy.allowed_domains = raw.allowed_domains.clone();
            policy.on_stage_conflict = raw.on_stage_conflict;
        }
        for (stage, problem) in policy.stage_problems(stages) {
            match policy.on_stage_conflict {
                StageConflict::Refuse => {
                    return Err(self.invalid(
                        format!("{key}.policy"),
                        format!(
                            "stage '{stage}': {problem} (remove the stage, or set on_stage_conflict = \"disable\" under [policies.{}])",
                            profile.as_str()
                        ),
                    ))
                }
                StageConflict::Disable => {
                    warnings.push(format!(
                        "{}: {key}: stage '{stage}' is disabled for this marketplace: {problem}",
                        self.path.display()
                    ));
                    sender.disabled_stages.insert(stage);
                }
            }
        }
        sender.policy = policy;
        Ok(())
    }

    fn build(
        self,
        raw: RawConfig,
        database_override: Option<String>,
    ) -> Result<Config, ConfigError> {
        let default_zone: Tz = raw.defaults.time_zone.parse().map_err(|_| {
            self.invalid(
                "defaults.time_zone",
                format!("unknown time zone '{}'", raw.defaults.time_zone),
            )
        })?;
        let rules = Rules {
            sending_hours: SendingHours {
                start: self.time_of_day("sending_hours.start", &raw.sending_hours.start)?,
                end: self.time_of_day("sending_hours.end", &raw.sending_hours.end)?,
            },
            default_zone,
            transit_estimate: self
                .duration("defaults.transit_estimate", &raw.defaults.transit_estimate)?,
        };
        let stages = self.stages(&raw.stages)?;
        let forbidden = Forbidden::with_locales(&raw.lint.forbidden, &raw.lint.locales)
            .map_err(|message| self.invalid("lint", message))?;
        let mut warnings = Vec::new();
        let transport = self.transport(raw.transport, &mut warnings)?;
        if raw.retry.max_attempts == 0 {
            return Err(self.invalid("retry.max_attempts", "must be at least 1"));
        }
        let retry = RetryPolicy {
            max_attempts: raw.retry.max_attempts,
            first_delay: self.duration("retry.first_delay", &raw.retry.first_delay)?,
            max_delay: self.duration("retry.max_delay", &raw.retry.max_delay)?,
        };
        let mut sender = self.sender("sender", &raw.sender, None)?;
        if let Some(profile) = raw.sender.policy {
            let adjustments = raw.policies.get(profile.as_str());
            self.apply_policy(
                "sender",
                profile,
                adjustments,
                &stages,
                &mut sender,
                &mut warnings,
            )?;
        }
        let mut marketplaces = BTreeMap::new();
        for (name, m) in &raw.marketplaces {
            let key = format!("marketplaces.{name}");
            let mut market = self.sender(&key, m, Some(&sender))?;
            if let Some(profile) = m.policy {
                let adjustments = raw.policies.get(profile.as_str());
                self.apply_policy(
                    &key,
                    profile,
                    adjustments,
                    &stages,
                    &mut market,
                    &mut warnings,
                )?;
            }
            marketplaces.insert(name.clone(), market);
        }
        for name in raw.policies.keys() {
            if !["amazon", "none"].contains(&name.as_str()) {
                return Err(self.invalid(
                    format!("policies.{name}"),
                    "unknown profile (amazon or none)",
                ));
            }
        }
        let mut mappings = BTreeMap::new();
        for (name, m) in raw.mappings {
            mappings.insert(name.clone(), self.mapping(&name, m)?);
        }
        let database_url = database_override.unwrap_or(raw.database.url);
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
            daemon: DaemonConfig {
                shutdown_grace: self
                    .std_duration("daemon.shutdown_grace", &raw.daemon.shutdown_grace)?,
                watch_templates: raw.daemon.watch_templates,
                idle_recheck: self.std_duration("daemon.idle_recheck", &raw.daemon.idle_recheck)?,
            },
            sender,
            marketplaces,
            mappings,
            warnings,
        })
    }

    fn std_duration(&self, key: &str, value: &str) -> Result<std::time::Duration, ConfigError> {
        humantime::parse_duration(value)
            .map_err(|e| self.invalid(key, format!("'{value}' is not a duration like 30s: {e}")))
    }

    fn transport(
        &self,
        raw: RawTransport,
        warnings: &mut Vec<String>,
    ) -> Result<TransportConfig, ConfigError> {
        let raw = match raw {
            RawTransport::File { dir } => {
                return Ok(TransportConfig::File {
                    dir: self.resolve(&dir),
                })
            }
            RawTransport::Smtp(smtp) => *smtp,
        };
        let RawSmtp {
            host,
            port,
            tls,
            username,
            password,
            password_env,
            password_file,
            pool_size,
            connect_timeout,
            command_timeout,
            send_timeout,
            max_per_minute,
            max_per_hour,
            ca_file,
            hello_name,
            pipelining,
        } = raw;
        let sources = [
            password.is_some(),
            password_env.is_some(),
            password_file.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() > 1 {
            return Err(self.invalid(
                "transport.password",
                "give only one of password, password_env and password_file",
            ));
        }
        let password = if let Some(inline) = password {
            warnings.push(format!(
                "{}: transport.password is written in the file; prefer password_env or password_file",
                self.path.display()
            ));
            Some(Secret(inline))
        } else if let Some(var) = password_env {
            let value = std::env::var(&var).map_err(|_| {
                self.invalid(
                    "transport.password_env",
                    format!("environment variable {var} is not set"),
                )
            })?;
            Some(Secret(value))
        } else if let Some(file) = password_file {
            let path = self.resolve(&file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                self.invalid(
                    "transport.password_file",
                    format!("{}: {e}", path.display()),
                )
            })?;
            Some(Secret(text.trim_end_matches(['\r', '\n']).to_string()))
        } else {
            None
        };
        if password.is_some() && username.is_none() {
            return Err(self.invalid("transport.username", "a password is set but no username"));
        }
        if pool_size == 0 {
            return Err(self.invalid("transport.pool_size", "must be at least 1"));
        }
        Ok(TransportConfig::Smtp(SmtpConfig {
            port: port.unwrap_or(match tls {
                TlsMode::None => 25,
                TlsMode::Starttls => 587,
                TlsMode::Tls => 465,
            }),
            host,
            tls,
            username,
            password,
            pool_size,
            connect_timeout: self.std_duration("transport.connect_timeout", &connect_timeout)?,
            command_timeout: self.std_duration("transport.command_timeout", &command_timeout)?,
            send_timeout: self.std_duration("transport.send_timeout", &send_timeout)?,
            max_per_minute,
            max_per_hour,
            ca_file: ca_file.map(|p| self.resolve(&p)),
            hello_name,
            pipelining,
        }))
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
                format!("'{url}' must start with sqlite:// or postgres://"),
            ))
        }
    }

    fn stages(&self, raw: &[RawStage]) -> Result<Vec<StageSpec>, ConfigError> {
        let mut stages: Vec<StageSpec> = Vec::with_capacity(raw.len());
        if raw.is_empty() {
            return Err(self.invalid("stages", "at least one stage is needed"));
        }
        for (i, s) in raw.iter().enumerate() {
            let key = format!("stages[{i}] ({})", s.name);
            let valid_name = !s.name.is_empty()
                && s.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid_name {
                return Err(self.invalid(
                    format!("{key}.name"),
                    "use lower-case letters, digits and _ only (it names a template folder)",
                ));
            }
            if stages.iter().any(|prior| prior.name == s.name) {
                return Err(self.invalid(format!("{key}.name"), "appears twice"));
            }
            let opens_after = self.duration(&format!("{key}.opens_after"), &s.opens_after)?;
            let closes_after = self.duration(&format!("{key}.closes_after"), &s.closes_after)?;
            if closes_after <= opens_after {
                return Err(self.invalid(
                    format!("{key}.closes_after"),
                    format!(
                        "the window closes ({}) before it opens ({})",
                        s.closes_after, s.opens_after
                    ),
                ));
            }
            if let Some(after) = &s.after {
                if !stages.iter().any(|prior| &prior.name == after) {
                    let message = if raw.iter().any(|other| &other.name == after) {
                        format!(
                            "stage '{after}' comes later; a stage can only wait for an earlier one"
                        )
                    } else {
                        format!("there is no stage named '{after}'")
                    };
                    return Err(self.invalid(format!("{key}.after"), message));
                }
            }
            stages.push(StageSpec {
                name: s.name.clone(),
                anchor: s.anchor,
                opens_after,
                closes_after,
                after: s.after.clone(),
                skip_when: s.skip_when.clone(),
                on_unknown: s.on_unknown,
            });
        }
        Ok(stages)
    }

    fn mapping(&self, name: &str, raw: RawMapping) -> Result<ColumnMapping, ConfigError> {
        for field in raw.columns.keys() {
            if !CANONICAL_FIELDS.contains(&field.as_str()) || field == "extra" {
                return Err(self.invalid(
                    format!("mappings.{name}.columns.{field}"),
                    "is not an order field",
                ));
            }
        }
        let mut status = BTreeMap::new();
        for (from, to) in raw.status {
            let parsed = to.parse().map_err(|e: crate::order::FieldError| {
                self.invalid(format!("mappings.{name}.status.{from}"), e.to_string())
            })?;
            status.insert(from.to_lowercase(), parsed);
        }
        Ok(ColumnMapping {
            columns: raw.columns,
            status,
        })
    }
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
}

//! `[transport]`: where finished messages go, and the SMTP relay's settings.

use std::path::PathBuf;

use serde::Deserialize;

use super::build::Builder;
use super::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub(super) enum RawTransport {
    File {
        dir: PathBuf,
        /// `[transport.dkim]`, read by `deliverability.rs`.
        #[serde(default)]
        dkim: Option<super::deliverability::RawDkim>,
    },
    Smtp(Box<RawSmtp>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSmtp {
    pub(super) host: String,
    pub(super) port: Option<u16>,
    #[serde(default = "default_tls")]
    pub(super) tls: TlsMode,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) password_env: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    #[serde(default = "default_pool_size")]
    pub(super) pool_size: usize,
    #[serde(default = "default_connect_timeout")]
    pub(super) connect_timeout: String,
    #[serde(default = "default_command_timeout")]
    pub(super) command_timeout: String,
    #[serde(default = "default_send_timeout")]
    pub(super) send_timeout: String,
    pub(super) max_per_minute: Option<u32>,
    pub(super) max_per_hour: Option<u32>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) hello_name: Option<String>,
    #[serde(default = "default_pipelining")]
    pub(super) pipelining: bool,
    /// `[transport.dkim]`, read by `deliverability.rs`.
    #[serde(default)]
    pub(super) dkim: Option<super::deliverability::RawDkim>,
    #[serde(default)]
    pub(super) allow_plaintext_auth: bool,
}

pub(super) fn default_tls() -> TlsMode {
    TlsMode::Starttls
}
pub(super) fn default_pool_size() -> usize {
    4
}
pub(super) fn default_pipelining() -> bool {
    true
}
pub(super) fn default_connect_timeout() -> String {
    "10s".into()
}
pub(super) fn default_command_timeout() -> String {
    "30s".into()
}
pub(super) fn default_send_timeout() -> String {
    "2m".into()
}

impl Default for RawTransport {
    fn default() -> Self {
        Self::File {
            dir: "outbox".into(),
            dkim: None,
        }
    }
}

/// Where finished messages go.
#[derive(Debug, Clone, PartialEq)]
pub enum TransportConfig {
    /// Writes each message as an `.eml` file into `dir`.
    File { dir: PathBuf },
    /// Hands messages to an SMTP relay.
    Smtp(SmtpConfig),
}

impl std::fmt::Display for TransportConfig {
    /// Where messages go, for the startup line; never a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File { dir } => write!(f, "file outbox {}", dir.display()),
            Self::Smtp(s) => {
                let tls = match s.tls {
                    TlsMode::None => "no tls",
                    TlsMode::Starttls => "starttls",
                    TlsMode::Tls => "tls",
                };
                write!(f, "smtp {}:{} ({tls})", s.host, s.port)
            }
        }
    }
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
    /// Send AUTH over an unencrypted connection to a relay that is not on
    /// this machine (refused otherwise).
    pub allow_plaintext_auth: bool,
}

impl Builder<'_> {
    pub(super) fn transport(
        &self,
        raw: RawTransport,
        warnings: &mut Vec<String>,
    ) -> Result<TransportConfig, ConfigError> {
        let raw = match raw {
            RawTransport::File { dir, .. } => {
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
            dkim: _,
            allow_plaintext_auth,
        } = raw;
        let password = self.password(password, password_env, password_file, warnings)?;
        if password.is_some() && username.is_none() {
            return Err(self.invalid("transport.username", "a password is set but no username"));
        }
        if pool_size == 0 {
            return Err(self.invalid("transport.pool_size", "must be at least 1"));
        }
        if tls == TlsMode::None
            && username.is_some()
            && !allow_plaintext_auth
            && !on_loopback(&host)
        {
            return Err(self.invalid(
                "transport.tls",
                format!(
                    "tls = \"none\" would send the relay password unencrypted to {host}, which is not \
                     on this machine; use tls = \"starttls\" or \"tls\", or set \
                     allow_plaintext_auth = true if the network between is trusted"
                ),
            ));
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
            allow_plaintext_auth,
        }))
    }

    /// The relay password from whichever one source the file names.
    fn password(
        &self,
        password: Option<String>,
        password_env: Option<String>,
        password_file: Option<PathBuf>,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Secret>, ConfigError> {
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
        Ok(password)
    }
}

/// Whether `host` names this machine: `localhost` or a loopback address.
/// Other names are not resolved: what they resolve to can change.
fn on_loopback(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

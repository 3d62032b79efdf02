//! `[unsubscribe]` and `[bounces]`: the unsubscribe links every message
//! carries, and how bounces are taken in.
//!
//! The unsubscribe secret is read from a file or the environment, never
//! written in the config file, like the listener's secrets.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::build::Builder;
use super::ConfigError;
use crate::dkim::DkimSigner;
use crate::suppress::{Address, SoftBounceLimit};
use crate::unsubscribe::Signer;

/// `[unsubscribe]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUnsubscribe {
    base_url: String,
    #[serde(default)]
    mailto: Option<String>,
    #[serde(default)]
    secret_file: Option<PathBuf>,
    #[serde(default)]
    secret_env: Option<String>,
}

/// `[transport.dkim]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDkim {
    domain: String,
    selector: String,
    key_file: PathBuf,
}

impl super::transport::RawTransport {
    /// Takes `[transport.dkim]` out, whichever the transport.
    pub(super) fn take_dkim(&mut self) -> Option<RawDkim> {
        match self {
            Self::File { dkim, .. } => dkim.take(),
            Self::Smtp(smtp) => smtp.dkim.take(),
        }
    }
}

/// `[bounces]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBounces {
    #[serde(default)]
    inbox: Option<PathBuf>,
    #[serde(default = "default_soft_limit")]
    soft_limit: u32,
    #[serde(default = "default_soft_period")]
    soft_period: String,
    #[serde(default)]
    mailgun: Option<RawMailgun>,
    #[serde(default)]
    postmark: Option<RawPostmark>,
}

impl Default for RawBounces {
    fn default() -> Self {
        Self {
            inbox: None,
            soft_limit: default_soft_limit(),
            soft_period: default_soft_period(),
            mailgun: None,
            postmark: None,
        }
    }
}

/// `[bounces.mailgun]` as written: the webhook signing key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMailgun {
    #[serde(default)]
    signing_key_file: Option<PathBuf>,
    #[serde(default)]
    signing_key_env: Option<String>,
}

/// `[bounces.postmark]` as written: the basic-auth credentials put in the
/// webhook's URL at Postmark.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostmark {
    username: String,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    password_env: Option<String>,
}

/// A relay's secret; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct RelaySecret(Vec<u8>);

impl RelaySecret {
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for RelaySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelaySecret([redacted])")
    }
}

fn default_soft_limit() -> u32 {
    3
}

fn default_soft_period() -> String {
    "7d".into()
}

/// `[unsubscribe]`, parsed: every message carries a link (and a mailto:
/// when set).
#[derive(Debug, Clone)]
pub struct UnsubscribeConfig {
    /// Where the listener is reached from outside, e.g.
    /// `https://mail.shop.example`; links are `BASE/u/TOKEN`.
    pub base_url: String,
    /// An address that takes unsubscribe requests by mail, if any.
    pub mailto: Option<Address>,
    pub signer: Arc<Signer>,
}

/// `[bounces]`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct BouncesConfig {
    /// A folder `followupd run` reads bounce and complaint mail from (one
    /// message a file, as a maildir's `new/` holds them).
    pub inbox: Option<PathBuf>,
    /// Temporary failures that put an address on the list.
    pub soft: SoftBounceLimit,
    /// Mailgun's webhook signing key: `POST /webhooks/mailgun` is on.
    pub mailgun: Option<RelaySecret>,
    /// Postmark's basic-auth user and password: `POST /webhooks/postmark`
    /// is on.
    pub postmark: Option<(String, RelaySecret)>,
}

impl Builder<'_> {
    pub(super) fn unsubscribe(
        &self,
        raw: Option<RawUnsubscribe>,
    ) -> Result<Option<UnsubscribeConfig>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let base_url = raw.base_url.trim().trim_end_matches('/').to_string();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://"))
            || base_url.contains(char::is_whitespace)
        {
            return Err(self.invalid(
                "unsubscribe.base_url",
                format!("'{base_url}' is not an http(s) address like https://mail.shop.example"),
            ));
        }
        let mailto = raw
            .mailto
            .as_deref()
            .map(Address::parse)
            .transpose()
            .map_err(|e| self.invalid("unsubscribe.mailto", e.to_string()))?;
        let secret = self.secret(
            "unsubscribe",
            "secret",
            raw.secret_file.as_deref(),
            raw.secret_env.as_deref(),
        )?;
        let signer = Signer::new(&secret)
            .map_err(|e| self.invalid("unsubscribe.secret_file", e.to_string()))?;
        Ok(Some(UnsubscribeConfig {
            base_url,
            mailto,
            signer: Arc::new(signer),
        }))
    }

    /// The secret's bytes, trimmed of the line break a file usually ends
    /// with. Never part of an error message.
    fn secret(
        &self,
        section: &str,
        what: &str,
        file: Option<&Path>,
        env: Option<&str>,
    ) -> Result<Vec<u8>, ConfigError> {
        match (file, env) {
            (Some(file), None) => {
                let path = self.resolve(file);
                let text = std::fs::read(&path).map_err(|e| {
                    self.invalid(
                        format!("{section}.{what}_file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                Ok(text.trim_ascii().to_vec())
            }
            (None, Some(var)) => std::env::var(var)
                .map(|v| v.trim().as_bytes().to_vec())
                .map_err(|_| {
                    self.invalid(
                        format!("{section}.{what}_env"),
                        format!("the environment variable {var} is not set"),
                    )
                }),
            _ => Err(self.invalid(
                section,
                format!("give exactly one of {what}_file or {what}_env"),
            )),
        }
    }

    pub(super) fn dkim(
        &self,
        raw: Option<RawDkim>,
    ) -> Result<Option<Arc<DkimSigner>>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let valid = |s: &str| {
            !s.is_empty()
                && s.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                })
        };
        if !valid(&raw.domain) {
            return Err(self.invalid(
                "transport.dkim.domain",
                "expected a domain like shop.example",
            ));
        }
        if !valid(&raw.selector) {
            return Err(self.invalid("transport.dkim.selector", "expected a selector like s2026"));
        }
        let path = self.resolve(&raw.key_file);
        let pem = std::fs::read_to_string(&path).map_err(|e| {
            self.invalid(
                "transport.dkim.key_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let signer = DkimSigner::from_pem(&raw.domain, &raw.selector, &pem).map_err(|e| {
            self.invalid(
                "transport.dkim.key_file",
                format!("{}: {e}", path.display()),
            )
        })?;
        Ok(Some(Arc::new(signer)))
    }

    pub(super) fn bounces(&self, raw: RawBounces) -> Result<BouncesConfig, ConfigError> {
        if raw.soft_limit == 0 {
            return Err(self.invalid("bounces.soft_limit", "must be at least 1"));
        }
        let period = self.std_duration("bounces.soft_period", &raw.soft_period)?;
        let within = chrono::Duration::from_std(period)
            .map_err(|_| self.invalid("bounces.soft_period", "is too long"))?;
        let mailgun = match raw.mailgun {
            Some(m) => Some(RelaySecret(self.secret(
                "bounces.mailgun",
                "signing_key",
                m.signing_key_file.as_deref(),
                m.signing_key_env.as_deref(),
            )?)),
            None => None,
        };
        let postmark = match raw.postmark {
            Some(p) => {
                let password = self.secret(
                    "bounces.postmark",
                    "password",
                    p.password_file.as_deref(),
                    p.password_env.as_deref(),
                )?;
                if p.username.is_empty() || p.username.contains(':') || password.len() < 16 {
                    return Err(self.invalid(
                        "bounces.postmark",
                        "a username without ':' and a password of 16 characters or more",
                    ));
                }
                Some((p.username, RelaySecret(password)))
            }
            None => None,
        };
        Ok(BouncesConfig {
            mailgun,
            postmark,
            inbox: raw.inbox.as_deref().map(|p| self.resolve(p)),
            soft: SoftBounceLimit {
                count: raw.soft_limit,
                within,
            },
        })
    }
}

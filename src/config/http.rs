//! `[http]` in `config.toml`: the listener, its limits and the secrets of
//! each source.
//!
//! Secrets are read from a file (`secret_file`, one per line) or from the
//! environment (`secret_env`, separated by whitespace or commas), never
//! written into the config file itself, and several may be valid at once so
//! that one can be rotated without a moment in which deliveries fail.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// `[http]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    listen: String,
    #[serde(default = "default_body_limit")]
    body_limit: u64,
    #[serde(default = "default_request_timeout")]
    request_timeout: String,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default)]
    shopify: Option<RawSource>,
    #[serde(default)]
    woocommerce: Option<RawSource>,
    #[serde(default)]
    api: Option<RawApi>,
}

fn default_body_limit() -> u64 {
    1024 * 1024
}

fn default_request_timeout() -> String {
    "30s".into()
}

fn default_max_connections() -> usize {
    512
}

/// `[http.shopify]` / `[http.woocommerce]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    #[serde(default)]
    secret_file: Option<PathBuf>,
    #[serde(default)]
    secret_env: Option<String>,
    #[serde(default)]
    marketplace: Option<String>,
}

/// `[http.api]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    #[serde(default)]
    token_file: Option<PathBuf>,
    #[serde(default)]
    token_env: Option<String>,
}

/// A secret that never prints: not in logs, errors or `check`'s output.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpSecret(Vec<u8>);

impl HttpSecret {
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for HttpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpSecret([redacted])")
    }
}

/// Where secrets are read from. They are read when the listener starts
/// (and by `check`), not with the config: other commands, and people who
/// may not see the secrets, load the same file.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretSource {
    /// `http.shopify`, `http.api`: for messages.
    key: String,
    /// `secret` or `token`.
    what: &'static str,
    file: Option<PathBuf>,
    env: Option<String>,
}

impl SecretSource {
    /// Reads the secrets; errors name the file or variable, never a value.
    pub fn read(&self) -> Result<Vec<HttpSecret>, HttpConfigError> {
        secrets(
            &self.key,
            self.what,
            self.file.as_deref(),
            self.env.as_deref(),
        )
    }
}

/// One webhook source's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    /// Any of these signs a valid delivery (several during a rotation).
    pub secrets: SecretSource,
    /// The marketplace its orders are stored under.
    pub marketplace: String,
}

/// `[http]`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Largest request body read, in bytes; a larger one gets 413.
    pub body_limit: u64,
    /// Bound on reading a request's headers and body.
    pub request_timeout: Duration,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    pub shopify: Option<SourceConfig>,
    pub woocommerce: Option<SourceConfig>,
    /// Bearer tokens of `POST /api/orders`; `None`: the API is off.
    pub api_tokens: Option<SecretSource>,
}

/// What is wrong with `[http]`: the key and a message that never holds a
/// secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfigError {
    pub key: String,
    pub message: String,
}

fn invalid(key: &str, message: impl Into<String>) -> HttpConfigError {
    HttpConfigError {
        key: key.to_string(),
        message: message.into(),
    }
}

impl RawHttp {
    /// Parses and checks the section; `resolve` turns a relative path into
    /// one relative to the config file.
    pub fn build(self, resolve: impl Fn(&Path) -> PathBuf) -> Result<HttpConfig, HttpConfigError> {
        let listen = self.listen.parse::<SocketAddr>().map_err(|_| {
            invalid(
                "http.listen",
                format!("'{}' is not an address like 127.0.0.1:8025", self.listen),
            )
        })?;
        if self.body_limit == 0 {
            return Err(invalid("http.body_limit", "must be at least 1 byte"));
        }
        let request_timeout = humantime::parse_duration(&self.request_timeout).map_err(|e| {
            invalid(
                "http.request_timeout",
                format!("'{}' is not a duration like 30s: {e}", self.request_timeout),
            )
        })?;
        if request_timeout.is_zero() {
            return Err(invalid("http.request_timeout", "must be longer than 0s"));
        }
        if self.max_connections == 0 {
            return Err(invalid("http.max_connections", "must be at least 1"));
        }
        let shopify = self
            .shopify
            .map(|raw| source(raw, "http.shopify", "shopify", &resolve))
            .transpose()?;
        let woocommerce = self
            .woocommerce
            .map(|raw| source(raw, "http.woocommerce", "woocommerce", &resolve))
            .transpose()?;
        let api_tokens = match self.api {
            Some(api) => {
                if api.token_file.is_none() && api.token_env.is_none() {
                    return Err(invalid(
                        "http.api",
                        "give token_file or token_env (the API takes no request without a token)",
                    ));
                }
                Some(SecretSource {
                    key: "http.api".into(),
                    what: "token",
                    file: api.token_file.as_deref().map(&resolve),
                    env: api.token_env,
                })
            }
            None => None,
        };
        Ok(HttpConfig {
            listen,
            body_limit: self.body_limit,
            request_timeout,
            max_connections: self.max_connections,
            shopify,
            woocommerce,
            api_tokens,
        })
    }
}

fn source(
    raw: RawSource,
    key: &str,
    default_marketplace: &str,
    resolve: &impl Fn(&Path) -> PathBuf,
) -> Result<SourceConfig, HttpConfigError> {
    if raw.secret_file.is_none() && raw.secret_env.is_none() {
        return Err(invalid(
            key,
            "give secret_file or secret_env (deliveries are only accepted when signed)",
        ));
    }
    let secrets = SecretSource {
        key: key.to_string(),
        what: "secret",
        file: raw.secret_file.as_deref().map(resolve),
        env: raw.secret_env,
    };
    let marketplace = raw
        .marketplace
        .unwrap_or_else(|| default_marketplace.to_string());
    if marketplace.trim().is_empty() || marketplace.contains(['\r', '\n']) {
        return Err(invalid(
            &format!("{key}.marketplace"),
            "must be a non-empty single line",
        ));
    }
    Ok(SourceConfig {
        secrets,
        marketplace,
    })
}

/// Reads the secrets named by `{what}_file` and `{what}_env`; both may be
/// given. Errors name the file or variable, never a value.
fn secrets(
    key: &str,
    what: &str,
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<Vec<HttpSecret>, HttpConfigError> {
    let mut found = Vec::new();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            invalid(
                &format!("{key}.{what}_file"),
                format!("{}: {e}", path.display()),
            )
        })?;
        found.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| l.to_string()),
        );
        if found.is_empty() {
            return Err(invalid(
                &format!("{key}.{what}_file"),
                format!("{} is empty", path.display()),
            ));
        }
    }
    if let Some(var) = env {
        let value = std::env::var(var).map_err(|_| {
            invalid(
                &format!("{key}.{what}_env"),
                format!("environment variable {var} is not set"),
            )
        })?;
        let before = found.len();
        found.extend(
            value
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
        if found.len() == before {
            return Err(invalid(
                &format!("{key}.{what}_env"),
                format!("environment variable {var} is empty"),
            ));
        }
    }
    Ok(found
        .into_iter()
        .map(|s| HttpSecret(s.into_bytes()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HttpConfig, HttpConfigError> {
        let raw: RawHttp = toml::from_str(text).unwrap();
        raw.build(|p| p.to_path_buf())
    }

    #[test]
    fn secrets_come_from_the_environment_and_never_print() {
        std::env::set_var("FOLLOWUPD_TEST_SHOPIFY", "old-secret, new-secret");
        let config =
            parse("listen = \"127.0.0.1:0\"\n[shopify]\nsecret_env = \"FOLLOWUPD_TEST_SHOPIFY\"\n")
                .unwrap();
        let shopify = config.shopify.unwrap();
        assert_eq!(shopify.secrets.read().unwrap().len(), 2);
        assert_eq!(shopify.marketplace, "shopify");
        let printed = format!("{shopify:?}");
        assert!(
            !printed.contains("secret,") && !printed.contains("new-secret"),
            "{printed}"
        );
    }

    #[test]
    fn a_source_without_a_secret_and_a_bad_address_are_refused() {
        let e = parse("listen = \"127.0.0.1:0\"\n[woocommerce]\n").unwrap_err();
        assert_eq!(e.key, "http.woocommerce");
        let e = parse("listen = \"localhost\"\n").unwrap_err();
        assert_eq!(e.key, "http.listen");
        std::env::remove_var("FOLLOWUPD_TEST_UNSET");
        // An unset variable fails where the secret is read, not the config.
        let config =
            parse("listen = \"127.0.0.1:0\"\n[api]\ntoken_env = \"FOLLOWUPD_TEST_UNSET\"\n")
                .unwrap();
        let e = config.api_tokens.unwrap().read().unwrap_err();
        assert_eq!(e.key, "http.api.token_env");
    }
}

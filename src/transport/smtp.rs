//! Delivery over SMTP with lettre, knowing exactly how far each send got.
//!
//! lettre's high-level transport reports a failure but not whether the
//! server might already have the message. followupd promises "at most once",
//! so this module drives the transaction step by step (MAIL, RCPT, DATA, then
//! the message) on lettre's connection type. A failure before the final dot
//! is safe to retry; a definite reply after it is a normal outcome; silence
//! or a dropped connection after it leaves the delivery in doubt, which the
//! caller records as `unknown` instead of risking a duplicate.
//!
//! A server that offers PIPELINING (RFC 2920, as most relays do) gets
//! MAIL, RCPT and DATA in one write and answers them together: one round
//! trip instead of three. DATA commits the server to nothing; only the
//! message and its final dot do, and those still wait until the caller
//! releases them. A message withheld after the server said 354 is
//! abandoned by closing the connection without its final dot, which the
//! server discards.
//!
//! Connections are pooled (up to `pool_size`). One that has been idle for a
//! while is checked with NOOP before reuse, so a connection the server closed
//! meanwhile is replaced; one that finished a message moments ago is reused
//! at once (a round trip saved on every message of a busy run), and if the
//! server turns out to have dropped it, the message goes out on a new
//! connection. Every step has its own timeout, the whole send has an overall
//! one, and sends are paced by the configured per-minute and per-hour limits.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailParameter};
use lettre::transport::smtp::response::Response;
use tokio::sync::{Mutex, Semaphore};

use super::capped::{self, ReadCapped};
use super::{Receipt, SendError};
use crate::config::{SmtpConfig, TlsMode};
use crate::message::Outgoing;

/// A problem with the SMTP settings themselves.
#[derive(Debug, thiserror::Error)]
pub enum SmtpSetupError {
    #[error("transport.ca_file {path}: {message}")]
    CaFile { path: String, message: String },
    #[error("TLS setup for {host}: {message}")]
    Tls { host: String, message: String },
}

/// How far a transaction got when it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Connect,
    Mail,
    Rcpt,
    Data,
    /// The message and its final dot: from here on, silence means doubt.
    Message,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connecting",
            Self::Mail => "MAIL FROM",
            Self::Rcpt => "RCPT TO",
            Self::Data => "DATA",
            Self::Message => "the message body",
        }
    }
}

/// An SMTP relay with a connection pool and rate limits.
pub struct SmtpTransport {
    config: SmtpConfig,
    tls: Option<TlsParameters>,
    hello: ClientId,
    /// Connections waiting for the next message, with when they were parked.
    idle: Mutex<Vec<(Connection, Instant)>>,
    slots: Semaphore,
    per_minute: Option<Arc<DefaultDirectRateLimiter>>,
    per_hour: Option<Arc<DefaultDirectRateLimiter>>,
}

/// An open session with the server, ready for a transaction.
struct Connection {
    smtp: AsyncSmtpConnection,
    /// The server offers PIPELINING (lettre does not keep that).
    pipelining: bool,
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("host", &self.config.host)
            .field("port", &self.config.port)
            .finish_non_exhaustive()
    }
}

fn limiter(quota: Option<Quota>) -> Option<Arc<DefaultDirectRateLimiter>> {
    quota.map(|q| Arc::new(RateLimiter::direct(q)))
}

impl SmtpTransport {
    pub fn new(config: &SmtpConfig) -> Result<Self, SmtpSetupError> {
        let tls = match config.tls {
            TlsMode::None => None,
            TlsMode::Starttls | TlsMode::Tls => Some(tls_parameters(config)?),
        };
        let hello = match &config.hello_name {
            Some(name) => ClientId::Domain(name.clone()),
            None => ClientId::default(),
        };
        Ok(Self {
            tls,
            hello,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(config.pool_size.max(1)),
            per_minute: limiter(
                config
                    .max_per_minute
                    .and_then(NonZeroU32::new)
                    .map(Quota::per_minute),
            ),
            per_hour: limiter(
                config
                    .max_per_hour
                    .and_then(NonZeroU32::new)
                    .map(Quota::per_hour),
            ),
            config: config.clone(),
        })
    }

    pub fn pool_size(&self) -> usize {
        self.config.pool_size.max(1)
    }

    /// Connects, says EHLO, upgrades to TLS and authenticates as configured.
    async fn connect(&self) -> Result<Connection, SendError> {
        let implicit_tls = match self.config.tls {
            TlsMode::Tls => self.tls.clone(),
            _ => None,
        };
        let timeout = self.config.connect_timeout;
        let stream = self.open_tcp().await?;
        // Every stream lettre reads from is capped (see `capped`): the TCP
        // stream itself, or implicit TLS over it.
        let stream: Box<dyn AsyncTokioStream> = match implicit_tls {
            Some(tls) => {
                Box::new(bounded(timeout, Step::Connect, capped::Tls::connect(stream, tls)).await?)
            }
            None => Box::new(ReadCapped::new(stream)),
        };
        let mut conn = bounded(
            timeout,
            Step::Connect,
            AsyncSmtpConnection::connect_with_transport(stream, &self.hello),
        )
        .await?;
        if self.config.tls == TlsMode::Starttls {
            let params = self.tls.clone().ok_or_else(|| SendError::Transient {
                code: None,
                text: "STARTTLS configured without TLS parameters".into(),
            })?;
            if !conn.can_starttls() {
                quit_briefly(conn).await;
                return Err(SendError::Transient {
                    code: None,
                    text: format!("{} does not offer STARTTLS", self.config.host),
                });
            }
            bounded(
                self.config.command_timeout,
                Step::Connect,
                conn.starttls(params, &self.hello),
            )
            .await?;
        }
        let pipelining = if self.config.pipelining {
            match self.offers_pipelining(&mut conn).await {
                Ok(offered) => offered,
                Err(e) => {
                    quit_briefly(conn).await;
                    return Err(e);
                }
            }
        } else {
            false
        };
        if let (Some(user), Some(password)) = (&self.config.username, &self.config.password) {
            let credentials = Credentials::new(user.clone(), password.expose().to_string());
            let mechanisms = [Mechanism::Plain, Mechanism::Login];
            if let Err(e) = bounded(
                self.config.command_timeout,
                Step::Connect,
                conn.auth(&mechanisms, &credentials),
            )
            .await
            {
                quit_briefly(conn).await;
                return Err(e);
            }
        }
        Ok(Connection {
            smtp: conn,
            pipelining,
        })
    }

    /// A TCP connection to the relay, within `connect_timeout`.
    async fn open_tcp(&self) -> Result<tokio::net::TcpStream, SendError> {
        let address = (self.config.host.as_str(), self.config.port);
        tokio::time::timeout(
            self.config.connect_timeout,
            tokio::net::TcpStream::connect(address),
        )
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
        .and_then(|stream| {
            // lettre writes a message's last chunk and the final dot as
            // separate small segments; with Nagle's algorithm on, the dot
            // waits for the server's delayed ACK (about 40 ms a message on
            // Linux).
            stream.set_nodelay(true)?;
            Ok(stream)
        })
        .map_err(|e| SendError::Transient {
            code: None,
            text: format!(
                "cannot connect to {}:{}: {e}",
                self.config.host, self.config.port
            ),
        })
    }

    /// Whether the server offers PIPELINING. lettre keeps only the
    /// extensions it uses from its EHLO, so the EHLO is said once more (a
    /// round trip per connection, not per message), before AUTH, which
    /// some servers would not expect to survive a new EHLO. A server that
    /// refuses the second EHLO keeps the session it had, and gets its
    /// commands one at a time.
    async fn offers_pipelining(&self, conn: &mut AsyncSmtpConnection) -> Result<bool, SendError> {
        let asked = bounded(
            self.config.command_timeout,
            Step::Connect,
            conn.command(Ehlo::new(self.hello.clone())),
        )
        .await;
        match asked {
            Ok(reply) => Ok(reply.message().any(|line| {
                line.split_whitespace()
                    .next()
                    .is_some_and(|keyword| keyword.eq_ignore_ascii_case("PIPELINING"))
            })),
            Err(SendError::Transient { code: Some(_), .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A pooled connection, or a new one. Returns whether it is known to
    /// work: new, or idle long enough to be checked with NOOP (and still
    /// answering); a connection parked moments ago is handed out unchecked.
    async fn checkout(&self) -> Result<(Connection, bool), SendError> {
        loop {
            let parked = self.idle.lock().await.pop();
            let Some((mut conn, parked_at)) = parked else {
                return Ok((self.connect().await?, true));
            };
            if parked_at.elapsed() < REUSE_UNCHECKED_WITHIN {
                return Ok((conn, false));
            }
            let alive =
                tokio::time::timeout(self.config.command_timeout, conn.smtp.test_connected())
                    .await
                    .unwrap_or(false);
            if alive {
                return Ok((conn, true));
            }
            quit_briefly(conn.smtp).await;
        }
    }

    async fn checkin(&self, mut conn: Connection) {
        if conn.smtp.has_broken() {
            conn.smtp.abort().await;
        } else {
            self.idle.lock().await.push((conn, Instant::now()));
        }
    }

    /// Waits until the configured per-hour and per-minute limits allow one
    /// more message, and counts it.
    pub async fn pace(&self) {
        if let Some(l) = &self.per_hour {
            l.until_ready().await;
        }
        if let Some(l) = &self.per_minute {
            l.until_ready().await;
        }
    }

    /// Delivers one message (the caller has paced it with [`Self::pace`]);
    /// see the module comment for how failures are classified. The
    /// envelope (MAIL FROM, RCPT TO, and DATA if the server pipelines) is
    /// sent at once, but the message itself only once `release` says yes;
    /// if it says no, nothing of it is transmitted and the result is
    /// [`SendError::Withheld`].
    pub async fn send(
        &self,
        message: &Outgoing,
        release: impl std::future::Future<Output = bool>,
    ) -> Result<Receipt, SendError> {
        let mut release = Release::new(release);
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| SendError::Transient {
                code: None,
                text: "transport is shutting down".into(),
            })?;
        let overall = self.config.send_timeout;
        let mut step = Step::Connect;
        let attempt = async {
            let (mut conn, checked) = self.checkout().await?;
            let mut result = self
                .transaction(&mut conn, message, &mut release, &mut step)
                .await;
            let dropped_while_parked =
                matches!(result, Err(SendError::Transient { code: None, .. }))
                    && step == Step::Mail;
            if !checked && dropped_while_parked {
                // Nothing of the message was sent: MAIL FROM got no reply.
                quit_briefly(conn.smtp).await;
                step = Step::Connect;
                conn = self.connect().await?;
                result = self
                    .transaction(&mut conn, message, &mut release, &mut step)
                    .await;
            }
            // Only a completed transaction leaves the connection in a state
            // fit for the next message; after any failure it is dropped.
            match &result {
                Ok(_) => self.checkin(conn).await,
                // Withheld after a pipelined DATA: the server awaits the
                // message, so anything said now would become part of it.
                // Closing without the final dot abandons it.
                Err(SendError::Withheld) if conn.pipelining => drop(conn),
                Err(_) => quit_briefly(conn.smtp).await,
            }
            result
        };
        match tokio::time::timeout(overall, attempt).await {
            Ok(result) => result,
            Err(_) => Err(no_reply(
                step,
                format!(
                    "no reply within {}s while {}",
                    overall.as_secs(),
                    step.as_str()
                ),
            )),
        }
    }

    async fn transaction<F: std::future::Future<Output = bool>>(
        &self,
        conn: &mut Connection,
        message: &Outgoing,
        release: &mut Release<F>,
        step: &mut Step,
    ) -> Result<Receipt, SendError> {
        let envelope = Envelope::new(Some(message.from.clone()), vec![message.to.clone()])
            .map_err(|e| SendError::Permanent {
                code: None,
                text: format!("invalid envelope: {e}"),
            })?;
        let mut options = Vec::new();
        if !message.from.to_string().is_ascii() || !message.to.to_string().is_ascii() {
            if !conn
                .smtp
                .server_info()
                .supports_feature(Extension::SmtpUtfEight)
            {
                return Err(SendError::Permanent {
                    code: None,
                    text: "the recipient address needs SMTPUTF8, which the server does not offer"
                        .into(),
                });
            }
            options.push(MailParameter::SmtpUtfEight);
        }
        let timeout = self.config.command_timeout;
        let mail = Mail::new(envelope.from().cloned(), options);
        let smtp = &mut conn.smtp;
        *step = Step::Mail;
        if conn.pipelining {
            // One write, then the replies in order.
            let mut group = mail.to_string();
            for to in envelope.to() {
                group.push_str(&Rcpt::new(to.clone(), vec![]).to_string());
            }
            group.push_str(&Data.to_string());
            bounded(timeout, *step, smtp.command(group)).await?;
            *step = Step::Rcpt;
            for _ in envelope.to() {
                bounded(timeout, *step, smtp.read_response()).await?;
            }
            *step = Step::Data;
            bounded(timeout, *step, smtp.read_response()).await?;
        } else {
            bounded(timeout, *step, smtp.command(mail)).await?;
            *step = Step::Rcpt;
            for to in envelope.to() {
                bounded(timeout, *step, smtp.command(Rcpt::new(to.clone(), vec![]))).await?;
            }
        }
        // The envelope commits the server to nothing, so it goes out while
        // the caller is still making the send durable; the message waits.
        if !release.wait().await {
            return Err(SendError::Withheld);
        }
        if conn.pipelining {
            // The server said 354 before the wait. If it has since given up
            // on the connection (its own timeout, a restart), its reply or
            // the closed connection is already here, and nothing of the
            // message has gone: a retry, not a doubt. (Polled once: a timer,
            // even of zero length, would hold every message until the
            // runtime's next clock tick.)
            if let Some(early) = smtp.read_response().now_or_never() {
                let (code, text) = match early {
                    Ok(reply) => (Some(u16::from(reply.code())), receipt(&reply).text),
                    Err(e) => (e.status().map(u16::from), error_text(&e)),
                };
                return Err(SendError::Transient {
                    code,
                    text: format!("the server ended the transaction before the message: {text}"),
                });
            }
        } else {
            *step = Step::Data;
            bounded(timeout, *step, smtp.command(Data)).await?;
        }
        *step = Step::Message;
        let response = bounded(timeout, *step, smtp.message(&message.raw)).await?;
        Ok(receipt(&response))
    }

    /// Opens a connection, completes EHLO, STARTTLS and AUTH, then says
    /// QUIT: a check that the settings work, sending nothing. Says whether
    /// the server pipelines, too.
    pub async fn handshake(&self) -> Result<String, SendError> {
        let mut conn = self.connect().await?;
        // Implicit TLS reaches lettre as a plain stream (see `capped`).
        let encrypted = conn.smtp.is_encrypted() || self.config.tls == TlsMode::Tls;
        // A relay that never answers QUIT must not hold `check`: the
        // handshake is done by then.
        let _ = tokio::time::timeout(self.config.command_timeout.min(QUIT_WAIT), conn.smtp.quit())
            .await;
        Ok(format!(
            "{}:{}: EHLO ok{}{}{}",
            self.config.host,
            self.config.port,
            if encrypted { ", TLS ok" } else { "" },
            if self.config.username.is_some() {
                ", AUTH ok"
            } else {
                ""
            },
            if conn.pipelining { ", PIPELINING" } else { "" }
        ))
    }

    /// Closes idle connections politely.
    pub async fn shutdown(&self) {
        let mut idle = self.idle.lock().await;
        for (mut conn, _) in idle.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.smtp.quit()).await;
        }
    }
}

/// The caller's go-ahead for transmitting a message, asked for once.
struct Release<F> {
    pending: Option<std::pin::Pin<Box<F>>>,
    answer: bool,
}

impl<F: std::future::Future<Output = bool>> Release<F> {
    fn new(release: F) -> Self {
        Self {
            pending: Some(Box::pin(release)),
            answer: false,
        }
    }

    async fn wait(&mut self) -> bool {
        if let Some(pending) = self.pending.take() {
            self.answer = pending.await;
        }
        self.answer
    }
}

/// How recently a connection must have finished a message to be reused
/// without a NOOP first. Servers close idle connections after minutes, not
/// seconds, so within this a check would almost never find one closed.
const REUSE_UNCHECKED_WITHIN: Duration = Duration::from_secs(2);

/// How long a QUIT after a finished handshake is waited for.
const QUIT_WAIT: Duration = Duration::from_secs(2);

/// Drops a connection after a failure. lettre's abort says QUIT and waits
/// for the reply; a server that has gone silent must not hold the pool slot
/// for the rest of the send timeout.
async fn quit_briefly(mut conn: AsyncSmtpConnection) {
    let _ = tokio::time::timeout(Duration::from_millis(500), conn.abort()).await;
}

fn receipt(response: &Response) -> Receipt {
    Receipt {
        code: Some(u16::from(response.code())),
        text: response.message().collect::<Vec<_>>().join(" "),
    }
}

/// Runs one SMTP step under `timeout`, classifying what went wrong.
async fn bounded<T>(
    timeout: Duration,
    step: Step,
    fut: impl std::future::Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T, SendError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(classify(&e, step)),
        Err(_) => Err(no_reply(
            step,
            format!(
                "no reply within {}s to {}",
                timeout.as_secs(),
                step.as_str()
            ),
        )),
    }
}

/// A failure without an SMTP reply: in doubt once the message was on its way.
fn no_reply(step: Step, text: String) -> SendError {
    if step == Step::Message {
        SendError::InDoubt { text }
    } else {
        SendError::Transient { code: None, text }
    }
}

fn classify(e: &lettre::transport::smtp::Error, step: Step) -> SendError {
    let text = error_text(e);
    if step == Step::Connect {
        // Greeting, TLS or login trouble says nothing about the message:
        // always worth another try once the operator or server sorts it out.
        return SendError::Transient {
            code: e.status().map(u16::from),
            text,
        };
    }
    match e.status().map(u16::from) {
        Some(code) if (400..500).contains(&code) => SendError::Transient {
            code: Some(code),
            text,
        },
        Some(code) => SendError::Permanent {
            code: Some(code),
            text,
        },
        None if e.is_tls() => SendError::Transient { code: None, text },
        None => no_reply(step, format!("{text} (while {})", step.as_str())),
    }
}

fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn tls_parameters(config: &SmtpConfig) -> Result<TlsParameters, SmtpSetupError> {
    let mut builder = TlsParameters::builder(config.host.clone());
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).map_err(|e| SmtpSetupError::CaFile {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let cert = Certificate::from_pem(&pem).map_err(|e| SmtpSetupError::CaFile {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build_rustls().map_err(|e| SmtpSetupError::Tls {
        host: config.host.clone(),
        message: e.to_string(),
    })
}

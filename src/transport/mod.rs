//! Where finished messages go: the seam between deciding and delivering.
//!
//! The scheduler hands an [`Outgoing`] message to a [`Transport`] and gets back
//! either a delivery receipt or a [`SendError`] that says whether trying again
//! could help. The outbox transport writes `.eml` files, so a new user sees
//! real emails without a mail server; the SMTP transport talks to a relay.

mod capped;
pub mod smtp;

use std::path::PathBuf;

use crate::config::TransportConfig;
use crate::message::Outgoing;

/// What the receiving side said when it took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The SMTP reply code, where there was a server.
    pub code: Option<u16>,
    pub text: String,
}

/// A delivery that did not happen, classified for the retry policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying later (4xx reply, timeout, connection trouble).
    #[error("temporary failure: {text}")]
    Transient { code: Option<u16>, text: String },
    /// Retrying cannot help (5xx reply, unusable recipient).
    #[error("permanent failure: {text}")]
    Permanent { code: Option<u16>, text: String },
    /// The message was on its way when the connection failed or went
    /// silent: the server may or may not have it.
    #[error("delivery in doubt: {text}")]
    InDoubt { text: String },
    /// The caller did not release the message (see [`Transport::send`]);
    /// nothing of it was transmitted.
    #[error("not released for sending")]
    Withheld,
}

impl SendError {
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::Transient { code, .. } | Self::Permanent { code, .. } => *code,
            Self::InDoubt { .. } | Self::Withheld => None,
        }
    }

    pub fn text(&self) -> &str {
        match self {
            Self::Transient { text, .. }
            | Self::Permanent { text, .. }
            | Self::InDoubt { text } => text,
            Self::Withheld => "not released for sending",
        }
    }
}

/// A configured transport.
#[derive(Debug)]
pub enum Transport {
    File(FileTransport),
    Smtp(Box<smtp::SmtpTransport>),
}

impl Transport {
    pub fn new(config: &TransportConfig) -> Result<Self, smtp::SmtpSetupError> {
        Ok(match config {
            TransportConfig::File { dir } => Self::File(FileTransport { dir: dir.clone() }),
            TransportConfig::Smtp(smtp) => Self::Smtp(Box::new(smtp::SmtpTransport::new(smtp)?)),
        })
    }

    /// Delivers one message once `release` resolves to true. The transport
    /// may prepare meanwhile (connect, send the envelope), but transmits
    /// nothing of the message before; if `release` resolves to false the
    /// result is [`SendError::Withheld`]. This lets the caller make its
    /// record of the send durable while the connection does its round trips.
    pub async fn send(
        &self,
        message: &Outgoing,
        release: impl std::future::Future<Output = bool>,
    ) -> Result<Receipt, SendError> {
        match self {
            Self::File(t) => {
                if !release.await {
                    return Err(SendError::Withheld);
                }
                t.send(message).await
            }
            Self::Smtp(t) => t.send(message, release).await,
        }
    }

    /// Waits until the rate limits allow one more message, and counts it.
    /// Called before the message is claimed, so a claim never waits for the
    /// limits.
    pub async fn pace(&self) {
        if let Self::Smtp(t) = self {
            t.pace().await;
        }
    }

    /// How many messages may be in flight at once.
    pub fn concurrency(&self) -> usize {
        match self {
            Self::File(_) => 4,
            Self::Smtp(t) => t.pool_size(),
        }
    }

    /// Checks that the transport can deliver, sending nothing.
    pub async fn check(&self) -> Result<String, SendError> {
        match self {
            Self::File(t) => {
                create_private_dir(&t.dir)
                    .await
                    .map_err(|e| SendError::Transient {
                        code: None,
                        text: format!("{}: {e}", t.dir.display()),
                    })?;
                Ok(format!("outbox {} is writable", t.dir.display()))
            }
            Self::Smtp(t) => t.handshake().await,
        }
    }

    /// Lets in-flight work finish and closes connections.
    pub async fn shutdown(&self) {
        if let Self::Smtp(t) = self {
            t.shutdown().await;
        }
    }
}

/// Writes each message to `dir` as `<message-id>.eml`.
#[derive(Debug)]
pub struct FileTransport {
    dir: PathBuf,
}

impl FileTransport {
    async fn send(&self, message: &Outgoing) -> Result<Receipt, SendError> {
        let io = |e: std::io::Error| SendError::Transient {
            code: None,
            text: format!("{}: {e}", self.dir.display()),
        };
        create_private_dir(&self.dir).await.map_err(io)?;
        let name: String = message
            .message_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.=@".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = self.dir.join(format!("{name}.eml"));
        // Written beside the target and renamed, so a reader of the outbox
        // never sees half a message.
        let partial = self.dir.join(format!(".{name}.eml.partial"));
        if let Err(e) = write_private(&partial, &message.raw, &path).await {
            // A full disk must not leave half-written files behind.
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(io(e));
        }
        Ok(Receipt {
            code: None,
            text: format!("written to {}", path.display()),
        })
    }
}

/// Messages hold buyers' names and addresses: readable by the service and
/// its group only, whatever the umask (which can only take bits away).
const MESSAGE_MODE: u32 = 0o640;
const OUTBOX_MODE: u32 = 0o750;

async fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    tokio::fs::DirBuilder::new()
        .recursive(true)
        .mode(OUTBOX_MODE)
        .create(dir)
        .await
}

/// Writes `bytes` to `partial`, created with [`MESSAGE_MODE`], and renames
/// it to `path`.
async fn write_private(
    partial: &std::path::Path,
    bytes: &[u8],
    path: &std::path::Path,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(MESSAGE_MODE)
        .open(partial)
        .await?;
    file.write_all(bytes).await?;
    file.flush().await?;
    drop(file);
    tokio::fs::rename(partial, path).await
}

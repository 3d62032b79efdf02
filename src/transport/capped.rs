//! A bound on what a relay can make followupd hold in memory.
//!
//! lettre reads each reply line whole (`read_line`) and only then checks its
//! length, so a relay that sends a line without end grows that buffer until
//! the command times out: gigabytes on a fast link. SMTP is a dialogue: the
//! server speaks after the client did (or once, to greet it), and a reply,
//! even several pipelined ones, is small. [`ReadCapped`] sits under lettre,
//! on the TCP stream itself (under TLS too, whose records are only a little
//! larger than the text they carry), and fails a read once the server has
//! sent more than [`MAX_UNASKED`] bytes since followupd last wrote.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

#[allow(deprecated)]
use lettre::transport::smtp::client::{AsyncNetworkStream, AsyncTokioStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most a server may send between two writes of followupd's: lettre
/// takes 100,000 bytes a reply, a pipelined envelope has three, and a TLS
/// handshake carries the server's certificates.
pub const MAX_UNASKED: usize = 1 << 20;

/// A stream whose reads fail once the other side has sent more than
/// [`MAX_UNASKED`] bytes without being written to.
#[derive(Debug)]
pub struct ReadCapped<S> {
    inner: S,
    unasked: usize,
}

impl<S> ReadCapped<S> {
    pub fn new(inner: S) -> Self {
        Self { inner, unasked: 0 }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadCapped<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.unasked > MAX_UNASKED {
            return Poll::Ready(Err(too_much()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        self.unasked += buf.filled().len() - before;
        if self.unasked > MAX_UNASKED {
            return Poll::Ready(Err(too_much()));
        }
        Poll::Ready(Ok(()))
    }
}

fn too_much() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the server sent more than {} KiB without being asked (a reply line without end?)",
            MAX_UNASKED / 1024
        ),
    )
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadCapped<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        if written > 0 {
            self.unasked = 0;
        }
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for ReadCapped<tokio::net::TcpStream> {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }
}

/// Implicit TLS over a [`ReadCapped`] TCP stream, handed to lettre as if it
/// were a plain stream: lettre's own implicit-TLS connect opens its TCP
/// stream itself, out of reach of the cap. The TLS is lettre's (the same
/// parameters, roots and checks); only the adapter from its futures-io
/// stream to tokio's traits is ours.
#[allow(deprecated)]
#[derive(Debug)]
pub struct Tls {
    stream: AsyncNetworkStream,
    peer: Option<SocketAddr>,
}

#[allow(deprecated)]
impl Tls {
    pub async fn connect(
        tcp: tokio::net::TcpStream,
        parameters: lettre::transport::smtp::client::TlsParameters,
    ) -> Result<Self, lettre::transport::smtp::Error> {
        let peer = tcp.peer_addr().ok();
        let mut stream = AsyncNetworkStream::use_existing_tokio1(Box::new(ReadCapped::new(tcp)));
        stream.upgrade_tls(parameters).await?;
        Ok(Self { stream, peer })
    }
}

impl AsyncRead for Tls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let unfilled = buf.initialize_unfilled();
        let n = ready!(futures_util::io::AsyncRead::poll_read(
            Pin::new(&mut self.stream),
            cx,
            unfilled
        ))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Tls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        futures_util::io::AsyncWrite::poll_write(Pin::new(&mut self.stream), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        futures_util::io::AsyncWrite::poll_flush(Pin::new(&mut self.stream), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        futures_util::io::AsyncWrite::poll_close(Pin::new(&mut self.stream), cx)
    }
}

impl AsyncTokioStream for Tls {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.peer
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no peer address"))
    }
}

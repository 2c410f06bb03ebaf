//! Why this file: what bounds the server against clients, rather than against images. Each
//! connection is served by hyper with a header deadline, through an IO wrapper that closes it
//! when the client stops reading a reply for too long; the number of connections is capped.
//! A download is encoded on a blocking thread into a small channel the response drains, so a
//! slow reader holds a few chunks, not the file, and a client that goes away stops the encoder.

use axum::Router;
use axum::body::Bytes;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// The connection limits.
pub(super) struct Limits {
    pub connections: usize,
    /// To send a request's headers.
    pub header: Duration,
    /// Without reading a byte of a reply.
    pub write: Duration,
}

/// Accepts connections until the listener fails; each is served on a task of its own.
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: Limits,
) -> crate::error::Result<()> {
    let open = Arc::new(Semaphore::new(limits.connections));
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(c) => c,
            // a transient failure (too many open files): wait, go on
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::warn!("{peer}: {} connections are open; closing this one", limits.connections);
            continue;
        };
        let io = TokioIo::new(Stalls::new(socket, limits.write));
        let service = TowerToHyperService::new(router.clone());
        let header = limits.header;
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).header_read_timeout(header);
            if let Err(e) = http.serve_connection(io, service).await {
                tracing::debug!("{peer}: {e}");
            }
            drop(permit);
        });
    }
}

/// A socket whose writes fail once the client has taken none of the bytes for `limit`.
struct Stalls<S> {
    inner: S,
    limit: Duration,
    /// Armed while a write waits for the client.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Stalls<S> {
    fn new(inner: S, limit: Duration) -> Self {
        Self { inner, limit, stalled: None }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Stalls<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stalls<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let limit = self.limit;
                let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client stopped reading its reply",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A download being encoded: the chunks a blocking thread writes, as the response reads them.
pub(super) struct Download;

impl Download {
    /// Runs `write` on a blocking thread (holding `permit`, one of the downloads in flight)
    /// into a channel of a few 64 KiB chunks; the receiver is the response body.
    pub(super) fn spawn(
        permit: OwnedSemaphorePermit,
        write: impl FnOnce(&mut dyn Write) -> std::io::Result<()> + Send + 'static,
    ) -> mpsc::Receiver<std::io::Result<Bytes>> {
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut w = std::io::BufWriter::with_capacity(64 << 10, Channel { tx: tx.clone() });
            let done = write(&mut w).and_then(|()| w.flush());
            if let Err(e) = done {
                // a client that went away is no error of the server's
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    tracing::warn!("a download failed: {e}");
                    let _ = tx.blocking_send(Err(e));
                }
            }
        });
        rx
    }
}

/// The writing end of a download.
struct Channel {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
}

impl Write for Channel {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The reading end of a download, as a stream of body chunks.
pub(super) struct Chunks(pub mpsc::Receiver<std::io::Result<Bytes>>);

impl futures_core::Stream for Chunks {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

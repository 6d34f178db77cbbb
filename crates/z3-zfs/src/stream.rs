//! [`SendStream`] and [`ReceiveSink`]: byte streams tied to the outcome of the process (or
//! fake) behind them.
//!
//! A pipe alone cannot tell a finished `zfs send` from a killed one: both end with EOF. These
//! wrappers hold back EOF (or the result of [`ReceiveSink::finish`]) until the producer's or
//! consumer's completion future has resolved, so a truncated stream is never mistaken for a
//! complete one.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::error::{Error, ErrorKind};

type Completion = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

/// The state of a [`SendStream`] after its reader reported EOF.
enum SendState {
    /// Bytes are still flowing.
    Reading,
    /// The reader hit EOF; waiting for the producer's verdict.
    Finishing,
    /// The producer succeeded: EOF from now on.
    Done,
    /// The producer failed: this error on every read from now on.
    Failed(Error),
}

/// A running `zfs send` (or its fake): read the stream with [`tokio::io::AsyncRead`].
///
/// EOF (`Ok(())` with nothing read) is reported **only** after the producer finished
/// successfully. If the process exits non-zero (even after writing every byte) or is killed,
/// the read returns an [`io::Error`] of kind `Other` whose [`io::Error::get_ref`] downcasts
/// to [`Error`] with the command line, exit status and stderr ([`Error::from_io`] recovers it).
///
/// Dropping the stream kills the process. For [`ZfsCli`](crate::ZfsCli), stderr is drained by
/// a separate task, so a chatty `zfs` can never block on a full stderr pipe.
pub struct SendStream {
    reader: Pin<Box<dyn AsyncRead + Send>>,
    completion: Completion,
    state: SendState,
    description: String,
}

impl SendStream {
    /// Combines a byte source with the future that reports how the producer ended.
    ///
    /// `completion` is polled only after `reader` reported EOF. It owns the process (for
    /// `ZfsCli`, a child spawned with `kill_on_drop`), so dropping the stream ends the process.
    pub fn from_parts(
        reader: impl AsyncRead + Send + Unpin + 'static,
        completion: impl Future<Output = Result<(), Error>> + Send + 'static,
        description: String,
    ) -> Self {
        Self {
            reader: Box::pin(reader),
            completion: Box::pin(completion),
            state: SendState::Reading,
            description,
        }
    }

    /// What produces the stream, e.g. `zfs send -i pool/fs@a pool/fs@b`.
    #[must_use]
    pub fn description(&self) -> &str {
        &self.description
    }
}

impl AsyncRead for SendStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &this.state {
                SendState::Reading => {
                    let before = buf.filled().len();
                    ready!(this.reader.as_mut().poll_read(cx, buf))?;
                    if buf.filled().len() > before || buf.remaining() == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    this.state = SendState::Finishing;
                }
                SendState::Finishing => {
                    let result = ready!(this.completion.as_mut().poll(cx));
                    this.state = match result {
                        Ok(()) => SendState::Done,
                        Err(e) => SendState::Failed(e),
                    };
                }
                SendState::Done => return Poll::Ready(Ok(())),
                SendState::Failed(e) => return Poll::Ready(Err(e.clone().into_io())),
            }
        }
    }
}

impl fmt::Debug for SendStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            SendState::Reading => "reading",
            SendState::Finishing => "finishing",
            SendState::Done => "done",
            SendState::Failed(_) => "failed",
        };
        f.debug_struct("SendStream")
            .field("description", &self.description)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

/// A running `zfs receive` (or its fake): write the stream with [`tokio::io::AsyncWrite`],
/// then call [`ReceiveSink::finish`].
///
/// `finish` shuts the writer down (EOF to the receiver) and waits for the receiver's verdict.
/// If a write fails with `BrokenPipe`, the receiver has died: call `finish` to learn why.
/// Dropping the sink without `finish` kills the receiver. An aborted receive commits nothing,
/// because `zfs receive` creates the snapshot only after the stream's end record: a stream cut
/// short (the usual reason to drop) can never be committed. If every byte was already written,
/// the receiver may have committed before the kill arrives, so do not rely on dropping to
/// undo a complete stream.
pub struct ReceiveSink {
    // Field order matters: `completion` (which owns the child) is dropped first, so the
    // receiver is killed before its stdin closes and it never sees a clean EOF.
    completion: Option<Completion>,
    writer: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    write_error: Option<io::ErrorKind>,
    description: String,
}

impl ReceiveSink {
    /// Combines a byte sink with the future that reports how the receiver ended.
    ///
    /// `completion` must resolve once the writer has been shut down (or dropped) and the
    /// receiver has finished; [`ReceiveSink::finish`] shuts down and drops the writer before
    /// awaiting it.
    pub fn from_parts(
        writer: impl AsyncWrite + Send + Unpin + 'static,
        completion: impl Future<Output = Result<(), Error>> + Send + 'static,
        description: String,
    ) -> Self {
        Self {
            completion: Some(Box::pin(completion)),
            writer: Some(Box::pin(writer)),
            write_error: None,
            description,
        }
    }

    /// What consumes the stream, e.g. `zfs receive -F pool/fs@b`.
    #[must_use]
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Ends the stream and waits for the receiver.
    ///
    /// # Errors
    /// The receiver's error (for `ZfsCli`: [`ErrorKind::CommandFailed`] or a more precise kind,
    /// with command line, status and stderr) if it failed. Otherwise [`ErrorKind::Io`] if an
    /// earlier write or the shutdown failed, since then the receiver did not get every byte.
    pub async fn finish(mut self) -> Result<(), Error> {
        let mut shutdown_error = None;
        if let Some(mut writer) = self.writer.take() {
            if let Err(e) = writer.shutdown().await {
                shutdown_error = Some(e);
            }
            // Dropping the writer closes the pipe: `ChildStdin::shutdown` only flushes.
            drop(writer);
        }
        let result = match self.completion.take() {
            Some(completion) => completion.await,
            None => Ok(()),
        };
        result?;
        if let Some(e) = shutdown_error {
            return Err(Error::new(
                ErrorKind::Io,
                format!("cannot close the stream to `{}`", self.description),
            )
            .with_source(e));
        }
        if let Some(kind) = self.write_error {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "a write to `{}` failed ({kind}) although it exited successfully",
                    self.description
                ),
            ));
        }
        Ok(())
    }

    fn writer(&mut self) -> io::Result<Pin<&mut (dyn AsyncWrite + Send)>> {
        match self.writer.as_mut() {
            Some(w) => Ok(w.as_mut()),
            None => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "receive sink already finished",
            )),
        }
    }

    fn note<T>(&mut self, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(e)) = &result {
            self.write_error.get_or_insert(e.kind());
        }
        result
    }
}

impl AsyncWrite for ReceiveSink {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = match this.writer() {
            Ok(w) => w.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        };
        this.note(result)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = match this.writer() {
            Ok(w) => w.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        };
        this.note(result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = match this.writer() {
            Ok(w) => w.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        };
        this.note(result)
    }
}

impl fmt::Debug for ReceiveSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceiveSink")
            .field("description", &self.description)
            .field("finished", &self.writer.is_none())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{CommandFailure, Subject};
    use tokio::io::AsyncReadExt;

    fn failure() -> Error {
        Error::from_failure(
            CommandFailure {
                command: "zfs send pool/fs@a".into(),
                code: Some(1),
                status: "exit status: 1".into(),
                stderr: "warning: cannot send 'pool/fs@a': Broken pipe".into(),
            },
            Subject::Snapshot,
        )
    }

    #[test]
    fn streams_are_send_unpin_debug() {
        fn check<T: Send + Unpin + fmt::Debug + 'static>() {}
        check::<SendStream>();
        check::<ReceiveSink>();
        check::<Error>();
    }

    #[tokio::test]
    async fn eof_only_after_success() {
        let mut s = SendStream::from_parts(&b"abc"[..], async { Ok(()) }, "t".into());
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"abc");
        // EOF is sticky.
        assert_eq!(s.read(&mut [0; 4]).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn failure_after_all_bytes_is_an_error_every_time() {
        let mut s = SendStream::from_parts(&b"abc"[..], async { Err(failure()) }, "t".into());
        let mut out = Vec::new();
        let e = s.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(out, b"abc");
        assert_eq!(e.kind(), io::ErrorKind::Other);
        let inner = e.get_ref().unwrap().downcast_ref::<Error>().unwrap();
        assert_eq!(inner.command().unwrap().code, Some(1));
        let again = s.read(&mut [0; 4]).await.unwrap_err();
        assert!(again.get_ref().unwrap().downcast_ref::<Error>().is_some());
    }

    #[tokio::test]
    async fn completion_is_not_polled_before_eof() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut s = SendStream::from_parts(
            &b"xy"[..],
            async move {
                rx.await.ok();
                Ok(())
            },
            "t".into(),
        );
        let mut buf = [0; 2];
        s.read_exact(&mut buf).await.unwrap();
        // The reader is exhausted but the producer has not finished: no EOF yet.
        let pending = tokio::time::timeout(std::time::Duration::from_millis(50), s.read(&mut buf));
        assert!(pending.await.is_err());
        tx.send(()).unwrap();
        assert_eq!(s.read(&mut buf).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn finish_reports_completion_error_over_write_error() {
        let (w, r) = tokio::io::duplex(1);
        drop(r);
        let mut sink = ReceiveSink::from_parts(w, async { Err(failure()) }, "r".into());
        assert!(sink.write_all(b"hello").await.is_err());
        let e = sink.finish().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::CommandFailed);
    }

    #[tokio::test]
    async fn finish_reports_write_error_when_completion_succeeds() {
        let (w, r) = tokio::io::duplex(1);
        drop(r);
        let mut sink = ReceiveSink::from_parts(w, async { Ok(()) }, "zfs receive p/x@a".into());
        assert!(sink.write_all(b"hello").await.is_err());
        let e = sink.finish().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.to_string().contains("zfs receive p/x@a"), "{e}");
    }

    #[tokio::test]
    async fn finish_succeeds_after_writes() {
        let (w, mut r) = tokio::io::duplex(64);
        let reader = tokio::spawn(async move {
            let mut v = Vec::new();
            r.read_to_end(&mut v).await.unwrap();
            v
        });
        let mut sink = ReceiveSink::from_parts(w, async { Ok(()) }, "r".into());
        sink.write_all(b"hello").await.unwrap();
        sink.finish().await.unwrap();
        assert_eq!(reader.await.unwrap(), b"hello");
    }
}

//! Progress of the byte streams a command moves: a trait the caller implements.
//!
//! The engine reports, for each stream (one snapshot's send or receive), its label and expected
//! size when it starts, the bytes as they pass, and how it ended. The z3 binaries draw
//! terminal bars from it; [`NoProgress`] ignores it; [`RecordingProgress`] keeps it for tests
//! and embedders that want the numbers.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// Receives the progress of every stream a command moves.
pub trait Progress: Send + Sync + fmt::Debug {
    /// A stream starts: `label` names it (e.g. `pool/fs@snap`), `total` is its expected length
    /// in bytes when known (an estimate for sends, the object's size for receives).
    fn start(&self, label: &str, total: Option<u64>) -> Box<dyn Transfer>;
}

/// The progress of one stream.
pub trait Transfer: Send {
    /// `bytes` more passed.
    fn advance(&mut self, bytes: u64);
    /// The stream ended (all its bytes passed).
    fn finish(&mut self);
    /// The stream failed; no more calls follow.
    fn fail(&mut self);
}

/// Progress that goes nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _label: &str, _total: Option<u64>) -> Box<dyn Transfer> {
        Box::new(NoTransfer)
    }
}

#[derive(Debug)]
struct NoTransfer;

impl Transfer for NoTransfer {
    fn advance(&mut self, _bytes: u64) {}
    fn finish(&mut self) {}
    fn fail(&mut self) {}
}

/// How one stream went, as [`RecordingProgress`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    /// The stream's label.
    pub label: String,
    /// Its expected length, when it was known.
    pub total: Option<u64>,
    /// Bytes that passed.
    pub bytes: u64,
    /// It ended successfully.
    pub finished: bool,
    /// It failed.
    pub failed: bool,
}

/// Progress kept in memory: one [`StreamRecord`] per stream, in the order they started.
#[derive(Debug, Clone, Default)]
pub struct RecordingProgress {
    records: Arc<Mutex<Vec<StreamRecord>>>,
}

impl RecordingProgress {
    /// An empty record.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The streams so far.
    #[must_use]
    pub fn records(&self) -> Vec<StreamRecord> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Progress for RecordingProgress {
    fn start(&self, label: &str, total: Option<u64>) -> Box<dyn Transfer> {
        let mut records = self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        records.push(StreamRecord {
            label: label.to_owned(),
            total,
            bytes: 0,
            finished: false,
            failed: false,
        });
        Box::new(Recording {
            records: Arc::clone(&self.records),
            index: records.len() - 1,
        })
    }
}

struct Recording {
    records: Arc<Mutex<Vec<StreamRecord>>>,
    index: usize,
}

impl Recording {
    fn update(&self, change: impl FnOnce(&mut StreamRecord)) {
        let mut records = self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(record) = records.get_mut(self.index) {
            change(record);
        }
    }
}

impl Transfer for Recording {
    fn advance(&mut self, bytes: u64) {
        self.update(|r| r.bytes += bytes);
    }
    fn finish(&mut self) {
        self.update(|r| r.finished = true);
    }
    fn fail(&mut self) {
        self.update(|r| r.failed = true);
    }
}

/// Counts the bytes read through it into a [`Transfer`]; finishes it at end of stream and
/// fails it on a read error. Works as an [`AsyncRead`] and as a blocking
/// [`Read`](std::io::Read) (e.g. for `z3_s3::MultipartUploader::upload_blocking`).
pub struct ProgressReader<R> {
    inner: R,
    transfer: Box<dyn Transfer>,
    bytes: u64,
}

impl<R> fmt::Debug for ProgressReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProgressReader")
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl<R> ProgressReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, transfer: Box<dyn Transfer>) -> Self {
        Self {
            inner,
            transfer,
            bytes: 0,
        }
    }

    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for ProgressReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        match &poll {
            Poll::Ready(Ok(())) => {
                let n = (buf.filled().len() - before) as u64;
                if n == 0 {
                    self.transfer.finish();
                } else {
                    self.bytes += n;
                    self.transfer.advance(n);
                }
            }
            Poll::Ready(Err(_)) => self.transfer.fail(),
            Poll::Pending => {}
        }
        poll
    }
}

impl<R: std::io::Read> std::io::Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(0) if !buf.is_empty() => {
                self.transfer.finish();
                Ok(0)
            }
            Ok(n) => {
                self.bytes += n as u64;
                self.transfer.advance(n as u64);
                Ok(n)
            }
            Err(err) => {
                if err.kind() != std::io::ErrorKind::Interrupted {
                    self.transfer.fail();
                }
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn a_recording_sees_every_byte_and_the_end() {
        let progress = RecordingProgress::new();
        let mut reader = ProgressReader::new(&b"hello world"[..], progress.start("s", Some(11)));
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        assert_eq!(reader.bytes(), 11);
        assert_eq!(
            progress.records(),
            vec![StreamRecord {
                label: "s".into(),
                total: Some(11),
                bytes: 11,
                finished: true,
                failed: false,
            }]
        );
    }
}

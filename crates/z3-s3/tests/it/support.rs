//! Test inputs: readers that produce known bytes, count what was read, or fail on cue.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// Deterministic, position-dependent bytes, so misplaced parts cannot compare equal.
pub(crate) fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + i / 251) % 256) as u8).collect()
}

/// Yields `data` in chunks of at most `chunk` bytes, then fails with `error` if set, else ends.
/// Counts the bytes handed out in `read`.
pub(crate) struct TestReader {
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
    error: Option<io::Error>,
    pub(crate) read: Arc<AtomicU64>,
}

impl TestReader {
    pub(crate) fn new(data: Vec<u8>, chunk: usize) -> Self {
        Self {
            data,
            pos: 0,
            chunk,
            error: None,
            read: Arc::default(),
        }
    }

    /// After the data, fail instead of ending, as a `zfs send` that exits non-zero.
    pub(crate) fn then_fail(mut self, error: io::Error) -> Self {
        self.error = Some(error);
        self
    }
}

impl AsyncRead for TestReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos == this.data.len() {
            return match this.error.take() {
                Some(err) => Poll::Ready(Err(err)),
                None => Poll::Ready(Ok(())),
            };
        }
        let n = this
            .chunk
            .min(buf.remaining())
            .min(this.data.len() - this.pos);
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        this.read.fetch_add(n as u64, Ordering::SeqCst);
        Poll::Ready(Ok(()))
    }
}

//! BLAKE3 digests of streams as they pass: the end-to-end check of ADR 3.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

#[derive(Debug, Default)]
struct State {
    hasher: blake3::Hasher,
    len: u64,
    ended: bool,
}

/// Where a [`DigestReader`] leaves its result; clone it before the reader moves into a pipeline.
#[derive(Debug, Clone, Default)]
pub struct DigestHandle(Arc<Mutex<State>>);

impl DigestHandle {
    /// The BLAKE3 hash and length of everything read, once the reader reached end-of-file;
    /// `None` while it has not (a stream that failed, or one a stage stopped reading early).
    #[must_use]
    pub fn finish(&self) -> Option<([u8; 32], u64)> {
        let state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .ended
            .then(|| (*state.hasher.finalize().as_bytes(), state.len))
    }

    /// Bytes read so far.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len
    }

    /// Whether nothing was read yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Passes a stream through unchanged while hashing it with BLAKE3.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use tokio::io::AsyncReadExt;
/// let (mut reader, digest) = z3_codec::DigestReader::new(&b"abc"[..]);
/// assert_eq!(digest.finish(), None);
/// let mut out = Vec::new();
/// reader.read_to_end(&mut out).await.unwrap();
/// let (hash, len) = digest.finish().unwrap();
/// assert_eq!((hash, len), (*blake3::hash(b"abc").as_bytes(), 3));
/// # }
/// ```
#[derive(Debug)]
pub struct DigestReader<R> {
    inner: R,
    state: DigestHandle,
}

impl<R> DigestReader<R> {
    /// Wraps `inner`; the handle yields the digest once the reader reached end-of-file.
    pub fn new(inner: R) -> (Self, DigestHandle) {
        let state = DigestHandle::default();
        (
            Self {
                inner,
                state: state.clone(),
            },
            state,
        )
    }
}

impl<R> DigestReader<R> {
    /// The wrapped reader, without hashing.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for DigestReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                let mut state = this.state.0.lock().unwrap_or_else(PoisonError::into_inner);
                if new.is_empty() {
                    if buf.remaining() > 0 {
                        state.ended = true;
                    }
                } else {
                    state.hasher.update(new);
                    state.len += new.len() as u64;
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    /// Yields `data` in `chunk`-byte reads, then fails if `fail` is set instead of ending.
    struct Chunks {
        data: Vec<u8>,
        pos: usize,
        chunk: usize,
        fail: bool,
    }

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let end = (self.pos + self.chunk).min(self.data.len());
            if self.pos == end && self.fail {
                return Poll::Ready(Err(io::Error::other("zfs send failed")));
            }
            let n = (end - self.pos).min(buf.remaining());
            let pos = self.pos;
            buf.put_slice(&self.data[pos..pos + n]);
            self.pos += n;
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn digest_is_blake3_of_everything_whatever_the_read_sizes() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for chunk in [1, 999, 65_536, 1 << 20] {
            let source = Chunks {
                data: data.clone(),
                pos: 0,
                chunk,
                fail: false,
            };
            let (mut reader, digest) = DigestReader::new(source);
            let mut out = Vec::new();
            reader.read_to_end(&mut out).await.unwrap();
            assert_eq!(out, data);
            assert_eq!(
                digest.finish(),
                Some((*blake3::hash(&data).as_bytes(), data.len() as u64))
            );
        }
    }

    #[tokio::test]
    async fn a_failed_stream_has_no_digest() {
        let source = Chunks {
            data: vec![1; 1000],
            pos: 0,
            chunk: 100,
            fail: true,
        };
        let (mut reader, digest) = DigestReader::new(source);
        let mut out = Vec::new();
        assert!(reader.read_to_end(&mut out).await.is_err());
        assert_eq!(digest.len(), 1000);
        assert_eq!(
            digest.finish(),
            None,
            "only a stream that ended has a digest"
        );
    }

    #[tokio::test]
    async fn a_zero_length_read_buffer_is_not_end_of_file() {
        let source = Chunks {
            data: vec![1; 10],
            pos: 0,
            chunk: 10,
            fail: false,
        };
        let (mut reader, digest) = DigestReader::new(source);
        let mut empty = [0u8; 0];
        assert_eq!(reader.read(&mut empty).await.unwrap(), 0);
        assert_eq!(digest.finish(), None);
    }
}

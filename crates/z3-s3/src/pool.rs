//! [`BufferPool`]: reuse of the large part and range buffers.
//!
//! A fresh multi-MiB allocation is mapped from the kernel page by page as it is first written:
//! at hundreds of MiB/s those page faults (and the zeroing behind them) cost more CPU than the
//! transfer itself. The pool keeps a few released buffers and hands them out again, so a
//! steady-state transfer touches the same memory over and over.
//!
//! The pool is a cache, not a limiter: [`take`](BufferPool::take) never waits, it allocates
//! when nothing fits. What bounds memory is the flow control of the uploader and downloader;
//! the pool only keeps at most `keep` idle buffers on top of what they hold.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::Bytes;

/// A cache of idle `Vec<u8>` buffers shared by the tasks of one transfer. Cheap to clone.
#[derive(Clone)]
pub struct BufferPool {
    inner: Arc<Inner>,
}

struct Inner {
    idle: Mutex<Vec<Vec<u8>>>,
    keep: usize,
}

impl fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferPool")
            .field("idle", &self.idle())
            .field("keep", &self.inner.keep)
            .finish()
    }
}

impl BufferPool {
    /// A pool that keeps at most `keep` idle buffers.
    #[must_use]
    pub fn new(keep: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                idle: Mutex::new(Vec::with_capacity(keep)),
                keep,
            }),
        }
    }

    /// An idle buffer with room for at least `capacity` bytes, or a new one. The buffer's
    /// length is whatever its last user left (its bytes are initialized up to there); call
    /// `clear()` to fill it from the start.
    #[must_use]
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        let mut idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Idle buffers that are too small for today's part size are freed, not kept forever.
        while let Some(buf) = idle.pop() {
            if buf.capacity() >= capacity {
                return buf;
            }
        }
        drop(idle);
        Vec::with_capacity(capacity)
    }

    /// Turns `buf` into [`Bytes`] without copying; when the last clone of those bytes is
    /// dropped, the buffer goes back to this pool (if it still exists and is not full).
    #[must_use]
    pub fn freeze(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            pool: Arc::downgrade(&self.inner),
        })
    }

    /// Gives a buffer back without freezing it.
    pub fn give(&self, buf: Vec<u8>) {
        self.inner.put(buf);
    }

    /// How many idle buffers the pool holds now.
    #[must_use]
    pub fn idle(&self) -> usize {
        self.inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Inner {
    fn put(&self, buf: Vec<u8>) {
        if buf.capacity() == 0 {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.keep {
            idle.push(buf);
        }
    }
}

/// The owner behind a pooled [`Bytes`].
struct Pooled {
    buf: Vec<u8>,
    pool: Weak<Inner>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.put(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_buffers_come_back_when_the_last_clone_drops() {
        let pool = BufferPool::new(2);
        let mut buf = pool.take(1024);
        buf.extend_from_slice(b"hello");
        let ptr = buf.as_ptr();
        let bytes = pool.freeze(buf);
        let clone = bytes.clone();
        assert_eq!(&bytes[..], b"hello");
        drop(bytes);
        assert_eq!(pool.idle(), 0, "a clone still holds the buffer");
        drop(clone);
        assert_eq!(pool.idle(), 1);
        let again = pool.take(1024);
        assert_eq!(again.as_ptr(), ptr, "the same memory is handed out again");
        assert_eq!(&again[..], b"hello", "length and bytes are kept");
    }

    #[test]
    fn keeps_at_most_keep_and_drops_buffers_too_small() {
        let pool = BufferPool::new(2);
        for _ in 0..3 {
            pool.give(Vec::with_capacity(10));
        }
        assert_eq!(pool.idle(), 2);
        let big = pool.take(100);
        assert!(big.capacity() >= 100);
        assert_eq!(pool.idle(), 0, "the small idle buffers were freed");
        pool.give(Vec::new());
        assert_eq!(pool.idle(), 0, "empty vectors are not worth keeping");
    }

    #[test]
    fn bytes_outliving_the_pool_are_simply_freed() {
        let pool = BufferPool::new(1);
        let bytes = pool.freeze(vec![1, 2, 3]);
        drop(pool);
        assert_eq!(&bytes[..], [1, 2, 3]);
        drop(bytes);
    }
}

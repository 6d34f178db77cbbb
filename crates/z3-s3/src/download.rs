//! [`Downloader`]: parallel ranged GETs delivered in order, resuming cut-short bodies.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorKind, Result};
use crate::part_size::MIN_PART_SIZE;
use crate::retry::{Backoff, RetryConfig};
use crate::sink::ThreadWriter;
use crate::store::{ObjectStore, object_url};

/// How [`Downloader`] splits and fetches an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadConfig {
    /// Bytes per ranged GET; `0` is treated as [`MIN_PART_SIZE`].
    pub part_size: u64,
    /// How many ranges may be fetched at once; `0` is treated as `1`.
    pub concurrency: usize,
    /// Retry policy for each ranged GET (and for each resume of a cut-short body).
    pub retry: RetryConfig,
}

impl Default for DownloadConfig {
    /// 8 MiB ranges, 4 at a time, default retries.
    fn default() -> Self {
        Self {
            part_size: 8 * 1024 * 1024,
            concurrency: 4,
            retry: RetryConfig::default(),
        }
    }
}

impl DownloadConfig {
    /// This configuration with fewer ranges in flight if `(concurrency + 2) × part_size` would
    /// pass `memory_limit` (`MEMORY_LIMIT`, ADR 5): at most `memory_limit / part_size − 2`, and
    /// always at least one.
    #[must_use]
    pub fn within(mut self, memory_limit: Option<u64>) -> Self {
        if let Some(limit) = memory_limit {
            let ranges = (limit / self.part_size.max(1)).saturating_sub(2);
            let ranges = usize::try_from(ranges).unwrap_or(usize::MAX).max(1);
            self.concurrency = self.concurrency.max(1).min(ranges);
        }
        self
    }
}

/// Downloads an object of known size with parallel ranged GETs, in order.
///
/// Memory is bounded by about `(concurrency + 2) × part_size`: at most `concurrency` ranges are
/// fetched or held ahead of the consumer, plus one waiting in the hand-over channel and the one
/// being read. A body that ends early (the connection dropped, which
/// botocore-style clients do not retry) is resumed with a new ranged GET from the first missing
/// byte; only a range that makes no progress for `retry.max_attempts` tries in a row fails.
#[derive(Debug)]
pub struct Downloader<S: ?Sized> {
    store: Arc<S>,
    config: DownloadConfig,
    cancel: CancellationToken,
}

impl<S: ObjectStore + ?Sized + 'static> Downloader<S> {
    /// A downloader reading from `store`.
    pub fn new(store: Arc<S>, config: DownloadConfig) -> Self {
        Self {
            store,
            config,
            cancel: CancellationToken::new(),
        }
    }

    /// Stops [`download_blocking`](Self::download_blocking) with [`ErrorKind::Cancelled`] when
    /// `cancel` fires (the other forms stop when their consumer drops them).
    #[must_use]
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Streams `key`, which is `size` bytes long (from [`ObjectStore::head`] or a listing), as
    /// an [`AsyncRead`]. The ranged GETs run in a background task on the current Tokio runtime
    /// (so this must be called from within one); dropping the reader cancels it.
    ///
    /// With `etag` (from the same `head` or listing as `size`), every ranged GET carries
    /// `If-Match: <etag>`: an object replaced during the download fails it with
    /// [`ErrorKind::Changed`] instead of splicing the ranges of two objects.
    ///
    /// A final failure surfaces as an [`io::Error`] of kind [`io::ErrorKind::Other`] wrapping the
    /// [`Error`]; recover it with [`Error::from_io`]. The reader never ends early silently: if
    /// fewer than `size` bytes arrived, reading fails.
    #[must_use]
    pub fn reader(&self, key: &str, size: u64, etag: Option<&str>) -> DownloadReader {
        DownloadReader {
            chunks: self.chunks(key, size, etag),
            current: VecDeque::new(),
            failed: false,
        }
    }

    /// Streams `key` (`size` bytes) range by range, in order, as the pieces the bodies arrived
    /// in, without copying them: the
    /// zero-copy form of [`reader`](Self::reader) for consumers that write large buffers
    /// (a pipe, a file, a channel to a writer thread). Same background task, same memory bound,
    /// same guarantee that a short object is an error rather than a silent early end.
    #[must_use]
    pub fn chunks(&self, key: &str, size: u64, etag: Option<&str>) -> DownloadChunks {
        self.chunks_of(key, size, Source::Etag(etag.map(str::to_owned)))
    }

    /// [`reader`](Self::reader) of one version of `key` ([`ObjectStore::read_range_version`]),
    /// `size` bytes (from [`ObjectStore::list_versions`] or [`ObjectStore::head_version`]):
    /// how a restore reads a backup hidden behind a delete marker. A version never changes,
    /// so no ETag is needed to keep the ranges of one download from two objects.
    #[must_use]
    pub fn reader_version(&self, key: &str, version_id: &str, size: u64) -> DownloadReader {
        DownloadReader {
            chunks: self.chunks_version(key, version_id, size),
            current: VecDeque::new(),
            failed: false,
        }
    }

    /// [`chunks`](Self::chunks) of one version of `key`; see
    /// [`reader_version`](Self::reader_version).
    #[must_use]
    pub fn chunks_version(&self, key: &str, version_id: &str, size: u64) -> DownloadChunks {
        self.chunks_of(key, size, Source::Version(version_id.to_owned()))
    }

    fn chunks_of(&self, key: &str, size: u64, pin: Source) -> DownloadChunks {
        let (rx, task) = self.spawn(key, size, pin);
        DownloadChunks {
            url: object_url(self.store.bucket(), key),
            rx,
            task,
            delivered: 0,
            size,
            done: false,
        }
    }

    /// Downloads `key` (`size` bytes) into `writer` and flushes it; returns the bytes written.
    ///
    /// # Errors
    /// The store error that made a range fail for good, or [`ErrorKind::Sink`] when writing fails
    /// (for example `zfs receive` exited and closed its stdin).
    pub async fn download_to<W>(
        &self,
        key: &str,
        size: u64,
        etag: Option<&str>,
        mut writer: W,
    ) -> Result<u64>
    where
        W: AsyncWrite + Unpin + Send,
    {
        let mut chunks = self.chunks(key, size, etag);
        let url = chunks.url.clone();
        let sink = |err: io::Error| {
            Error::new(ErrorKind::Sink, format!("writing the download of {url}")).with_source(err)
        };
        while let Some(pieces) = chunks.next().await {
            for piece in pieces? {
                writer.write_all(&piece).await.map_err(sink)?;
            }
        }
        writer.flush().await.map_err(sink)?;
        Ok(chunks.delivered)
    }

    /// Downloads `key` (`size` bytes, pinned to `etag` as in [`reader`](Self::reader)) into a
    /// blocking `sink` such as standard output, written on a thread of its own
    /// ([`ThreadWriter`]) whole ranges at a time; `progress` is called with the byte count of
    /// each range once it is queued for writing. Returns the bytes written and flushed.
    ///
    /// # Errors
    /// The store error that made a range fail for good; [`ErrorKind::Sink`] when writing or
    /// flushing fails (a closed pipe); [`ErrorKind::Cancelled`] when the token given to
    /// [`with_cancel`](Self::with_cancel) fires. The fetches stop in every case.
    pub async fn download_blocking<W>(
        &self,
        key: &str,
        size: u64,
        etag: Option<&str>,
        sink: W,
        mut progress: impl FnMut(u64) + Send,
    ) -> Result<u64>
    where
        W: std::io::Write + Send + 'static,
    {
        let mut chunks = self.chunks(key, size, etag);
        let url = chunks.url.clone();
        let failed = |err: io::Error| {
            Error::new(ErrorKind::Sink, format!("writing the download of {url}")).with_source(err)
        };
        let mut out = ThreadWriter::spawn(sink, "z3-download-output").map_err(&failed)?;
        loop {
            let next = tokio::select! {
                biased;
                () = self.cancel.cancelled() => {
                    return Err(Error::new(ErrorKind::Cancelled, format!("download of {url} cancelled")));
                }
                next = chunks.next() => next,
            };
            let Some(pieces) = next else { break };
            let pieces = pieces?;
            let bytes = pieces.iter().map(Bytes::len).sum::<usize>();
            out.write(pieces).await.map_err(&failed)?;
            progress(bytes as u64);
        }
        out.finish().await.map_err(&failed)?;
        Ok(chunks.delivered)
    }

    /// Starts the background task that fetches the ranges and sends them in order.
    fn spawn(
        &self,
        key: &str,
        size: u64,
        pin: Source,
    ) -> (mpsc::Receiver<Result<Vec<Bytes>>>, JoinHandle<()>) {
        let part_size = if self.config.part_size == 0 {
            MIN_PART_SIZE
        } else {
            self.config.part_size
        };
        let concurrency = self.config.concurrency.max(1);
        // One slot: the consumer's progress, not the channel, is what bounds memory.
        let (tx, rx) = mpsc::channel(1);
        let store = Arc::clone(&self.store);
        let retry_config = self.config.retry.clone();
        let key = key.to_owned();
        let task = tokio::spawn(async move {
            let mut starts = (0..size).step_by(usize::try_from(part_size).unwrap_or(usize::MAX));
            let mut pending: VecDeque<AbortOnDrop<Result<Vec<Bytes>>>> = VecDeque::new();
            loop {
                while pending.len() < concurrency {
                    let Some(start) = starts.next() else { break };
                    let end = start.saturating_add(part_size).min(size);
                    let store = Arc::clone(&store);
                    let key = key.clone();
                    let pin = pin.clone();
                    let retry_config = retry_config.clone();
                    pending.push_back(AbortOnDrop(tokio::spawn(async move {
                        fetch_range(&*store, &key, start..end, &pin, &retry_config).await
                    })));
                }
                let Some(mut next) = pending.pop_front() else {
                    break;
                };
                let result = match (&mut next.0).await {
                    Ok(result) => result,
                    Err(err) => Err(Error::new(
                        ErrorKind::Other,
                        format!(
                            "range download task for {} did not finish",
                            object_url(store.bucket(), &key)
                        ),
                    )
                    .with_source(err)),
                };
                let failed = result.is_err();
                // A closed channel means the reader was dropped: stop fetching.
                if tx.send(result).await.is_err() || failed {
                    break;
                }
            }
        });
        (rx, task)
    }
}

/// What every range of one download is read from.
#[derive(Debug, Clone)]
enum Source {
    /// The current object, with `If-Match` when an ETag is known.
    Etag(Option<String>),
    /// One version, which never changes.
    Version(String),
}

/// Fetches `[start, end)` completely, as the pieces it arrived in, resuming after bodies that
/// were cut short.
async fn fetch_range<S: ObjectStore + ?Sized>(
    store: &S,
    key: &str,
    range: Range<u64>,
    pin: &Source,
    config: &RetryConfig,
) -> Result<Vec<Bytes>> {
    let etag = match pin {
        Source::Etag(etag) => etag.as_deref(),
        Source::Version(_) => None,
    };
    let url = object_url(store.bucket(), key);
    let Range { start, end } = range;
    let mut pieces = Vec::new();
    let mut pos = start;
    let mut backoff = Backoff::new(config);
    let mut stalls = 0;
    let max_attempts = config.max_attempts.max(1);
    let mut attempt = 1;
    while pos < end {
        let before = pieces.len();
        let read = match pin {
            Source::Etag(_) => store.read_range(key, pos..end, etag, &mut pieces).await,
            Source::Version(version_id) => {
                store
                    .read_range_version(key, version_id, pos..end, &mut pieces)
                    .await
            }
        };
        let len = match read {
            Ok(len) => len,
            Err(err) if etag.is_some() && err.kind() == ErrorKind::AlreadyExists => {
                return Err(Error::new(
                    ErrorKind::Changed,
                    format!(
                        "{url} changed during the download: it no longer has ETag {} (replaced or rewritten?), so bytes {pos}.. would come from another object; nothing was spliced",
                        etag.unwrap_or_default()
                    ),
                )
                .with_source(err));
            }
            Err(err) if err.is_retryable() && attempt < max_attempts => {
                pieces.truncate(before);
                let delay = backoff.next();
                tracing::warn!(
                    %url, pos, end, attempt, max_attempts, delay_ms = delay.as_millis(),
                    error = %err, "ranged GET failed, retrying"
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
                continue;
            }
            Err(err) => {
                return Err(if attempt > 1 {
                    err.context(format_args!("gave up after {attempt} attempts"))
                } else {
                    err
                });
            }
        };
        attempt = 1;
        if len > end - pos {
            return Err(Error::new(
                ErrorKind::Other,
                format!(
                    "get_range {url} bytes {pos}..{end}: server returned {len} bytes, more than asked"
                ),
            ));
        }
        if len == 0 {
            // The object is shorter than expected or the body keeps breaking before its first
            // byte: treat as transient a few times, then give up.
            stalls += 1;
            if stalls >= max_attempts {
                return Err(Error::new(
                    ErrorKind::Transient,
                    format!(
                        "get_range {url} bytes {pos}..{end}: no data after {stalls} attempts (object shorter than expected?)"
                    ),
                ));
            }
            tokio::time::sleep(backoff.next()).await;
            continue;
        }
        if len < end - pos {
            tracing::debug!(%url, pos, got = len, end, "ranged GET cut short, resuming");
        }
        stalls = 0;
        pos += len;
    }
    Ok(pieces)
}

fn ended_early(url: &str, got: u64, size: u64) -> Error {
    Error::new(
        ErrorKind::Other,
        format!("download of {url} ended after {got} of {size} bytes"),
    )
}

/// Aborts a task when dropped, so cancelling the consumer cancels the fetches.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The in-order ranges of one download, from [`Downloader::chunks`]. Dropping it cancels the
/// download.
pub struct DownloadChunks {
    url: String,
    rx: mpsc::Receiver<Result<Vec<Bytes>>>,
    task: JoinHandle<()>,
    delivered: u64,
    size: u64,
    done: bool,
}

impl DownloadChunks {
    /// The next range, as the pieces its body arrived in (never empty); `None` after the last
    /// byte of the object; an error when a range failed for good or the object ended before
    /// `size` bytes. Nothing is returned after an error.
    pub async fn next(&mut self) -> Option<Result<Vec<Bytes>>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Bytes handed out so far.
    #[must_use]
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The object's URL, for messages.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Vec<Bytes>>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(pieces))) => {
                self.delivered += pieces.iter().map(|piece| piece.len() as u64).sum::<u64>();
                Poll::Ready(Some(Ok(pieces)))
            }
            Poll::Ready(Some(Err(err))) => {
                self.done = true;
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(None) => {
                self.done = true;
                if self.delivered == self.size {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(ended_early(&self.url, self.delivered, self.size))))
                }
            }
        }
    }
}

impl fmt::Debug for DownloadChunks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DownloadChunks")
            .field("url", &self.url)
            .field("delivered", &self.delivered)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Drop for DownloadChunks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The [`AsyncRead`] returned by [`Downloader::reader`]. Dropping it cancels the download.
#[derive(Debug)]
pub struct DownloadReader {
    chunks: DownloadChunks,
    current: VecDeque<Bytes>,
    failed: bool,
}

impl AsyncRead for DownloadReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.current.front().is_none_or(Bytes::is_empty) {
            if this.current.pop_front().is_some() {
                continue;
            }
            if this.failed {
                return Poll::Ready(Err(io::Error::other(format!(
                    "download of {} already failed",
                    this.chunks.url
                ))));
            }
            match this.chunks.poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(pieces))) => this.current = pieces.into(),
                Poll::Ready(Some(Err(err))) => {
                    this.failed = true;
                    return Poll::Ready(Err(err.into_io()));
                }
                Poll::Ready(None) => return Poll::Ready(Ok(())),
            }
        }
        let Some(piece) = this.current.front_mut() else {
            return Poll::Ready(Ok(()));
        };
        let n = piece.len().min(buf.remaining());
        buf.put_slice(&piece.split_to(n));
        Poll::Ready(Ok(()))
    }
}

//! [`MultipartUploader`]: streams an [`AsyncRead`] into one multipart object with bounded memory,
//! growing part sizes, CRC32C-verified bytes, per-part retries, and an abort on every failure.

use std::io;
use std::sync::Arc;

use bytes::BufMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::checksum::{
    Crc32c, Crc32cHasher, composite_crc32c, composite_matches, full_object_crc32c,
};
use crate::error::{Error, ErrorKind, Result};
use crate::part_size::{DEFAULT_MEMORY_LIMIT, MAX_PARTS, MIN_PART_SIZE, PartGrowth, PartSizer};
use crate::pool::BufferPool;
use crate::resume::{
    JournalPace, JournaledPart, OpenUpload, Resumable, ResumeOutcome, UploadJournal,
};
use crate::retry::{Backoff, RetryConfig, retry};
use crate::store::{
    CompletedPart, ObjectStore, PartNumber, Precondition, PutOptions, UploadId, object_url,
};

/// The user-metadata key under which [`MultipartUploader`] stores a random token naming the
/// upload that made an object (`x-amz-meta-z3-upload`). It settles a completion whose answer
/// was lost or unreadable: the object at the key is ours exactly when it carries our token (and
/// our length). z3 also names each object's seal by it.
pub const UPLOAD_TOKEN_META: &str = "z3-upload";

/// How [`MultipartUploader`] cuts and sends a stream.
///
/// Build it with `..UploadConfig::default()` so that fields added later get their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadConfig {
    /// The starting part size. Use [`part_size`](crate::part_size()) to pick it. With
    /// [`PartGrowth::Adaptive`] (the default) it is clamped to S3's limits, raised to the
    /// estimate rule's size ([`part_size()`](crate::part_size())) for [`estimate`](Self::estimate), and grows as described on
    /// [`PartSizer`]; with [`PartGrowth::Fixed`] every part but the last is exactly this long,
    /// unclamped, so tests can use tiny parts against a
    /// [`MemoryStore::with_min_part_size`](crate::MemoryStore::with_min_part_size).
    pub part_size: u64,
    /// How many parts may be uploading at once; `0` is treated as `1`.
    pub concurrency: usize,
    /// Retry policy for each part, for `CreateMultipartUpload`, `CompleteMultipartUpload` and
    /// the checks after it.
    pub retry: RetryConfig,
    /// The expected stream length, if known (z3 has `zfs send -nvP`'s estimate). While the
    /// stream stays within `estimate × 1.05`, every part has the starting size. Default `None`.
    pub estimate: Option<u64>,
    /// Whether and at which scale part sizes grow. Default [`PartGrowth::S3`].
    pub growth: PartGrowth,
    /// What the key must hold for the completion to take effect (default: no condition).
    ///
    /// It also decides what happens to an object whose checksum cannot be confirmed after a
    /// completion: it is deleted unless it replaced an object by [`Precondition::Unchanged`].
    /// Such an object replaced a backup that is gone either way; deleting it would leave
    /// nothing, while kept (it has a seal with its digests) a restore can still check it.
    pub precondition: Precondition,
    /// The most part data the upload holds at once, in flight and being filled (`MEMORY_LIMIT`,
    /// ADR 5); `None`: only [`concurrency`](Self::concurrency) bounds it. Default
    /// [`DEFAULT_MEMORY_LIMIT`] (1 GiB).
    ///
    /// It shapes the part size ([`PartSizer::with_budget`]) and holds back reading: a part is
    /// only started when the parts in flight plus it fit, except that one part may always
    /// upload while the next is read. So the upload holds at most
    /// `max(memory_limit, 2 × largest part)`: the second term passes 1 GiB only for streams
    /// estimated above ≈ 4.6 TiB or far beyond their estimate, where S3's part limits force
    /// larger parts. Callers should refuse a `part_size` above half the budget (z3 does).
    pub memory_limit: Option<u64>,
}

impl Default for UploadConfig {
    /// 5 MiB starting parts growing as needed, 4 at a time, default retries, no estimate, a
    /// 1 GiB memory budget.
    fn default() -> Self {
        Self {
            part_size: MIN_PART_SIZE,
            concurrency: 4,
            retry: RetryConfig::default(),
            estimate: None,
            growth: PartGrowth::S3,
            precondition: Precondition::None,
            memory_limit: Some(DEFAULT_MEMORY_LIMIT),
        }
    }
}

impl UploadConfig {
    /// The part sizer this configuration describes.
    #[must_use]
    pub fn sizer(&self) -> PartSizer {
        PartSizer::with_budget(
            self.part_size,
            self.estimate,
            self.growth,
            self.memory_limit,
        )
    }
}

/// What a successful upload produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadReport {
    /// The object's ETag as returned by `CompleteMultipartUpload` (or by `HEAD`, see
    /// [`MultipartUploader::upload`]).
    pub etag: String,
    /// Bytes read from the input and stored.
    pub bytes: u64,
    /// Number of parts.
    pub parts: u16,
    /// The largest part (the part size reached; memory was at most `concurrency + 1` of these,
    /// and within [`UploadConfig::memory_limit`] or two of these).
    pub max_part_size: u64,
    /// The object's composite CRC32C computed from the bytes we read, `base64-N` as S3
    /// reports it for uploads created with `ChecksumAlgorithm::Crc32C`.
    pub checksum_crc32c: String,
    /// Whether the server reported the same composite checksum (or the same full-object
    /// CRC32C). `false` only when it reported none at all (a server without checksum support;
    /// logged as a warning).
    pub checksum_verified: bool,
    /// The random token stored with the object under [`UPLOAD_TOKEN_META`].
    pub token: String,
    /// What became of a previous run's upload ([`MultipartUploader::upload_resumable`]);
    /// [`ResumeOutcome::Fresh`] for the other uploads.
    pub resume: ResumeOutcome,
}

/// What is known once every part is stored, before `CompleteMultipartUpload`: handed to the
/// hook of [`MultipartUploader::upload_then`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartsDone {
    /// Bytes read from the input and stored in parts.
    pub bytes: u64,
    /// Number of parts.
    pub parts: u16,
    /// The composite CRC32C the object will have (`base64-N`).
    pub checksum_crc32c: String,
    /// The random token the object will carry under [`UPLOAD_TOKEN_META`].
    pub token: String,
}

/// A hook run after the last part and before the completion; see [`MultipartUploader::upload_then`].
pub type BeforeComplete<'a> =
    Box<dyn FnOnce(PartsDone) -> futures::future::BoxFuture<'a, Result<()>> + Send + 'a>;

/// Uploads a stream of unknown length as one multipart object.
///
/// Guarantees, each covered by a test in `tests/it/upload.rs`:
/// - **bounded memory**: at most `concurrency` parts are in flight plus the one being filled,
///   and no more bytes than [`UploadConfig::memory_limit`] allows (one part uploading and one
///   being filled always may); reading stops while the slots or the budget are taken (the
///   original pput held `2N + 1` parts and busy-waited);
/// - **adaptive part sizes** ([`PartSizer`]): any stream up to S3's 5 TiB fits in 10,000 parts
///   without an estimate; a stream within its estimate keeps one part size;
/// - **verified bytes**: each part's CRC32C is computed once, while it is read, sent with the
///   part and verified by the server; a part the server refuses as corrupted (`BadDigest`) is
///   retried. After completion the object's composite checksum is compared with ours; on a
///   mismatch the object is deleted and the upload fails with [`ErrorKind::ChecksumMismatch`];
/// - **per-part retries** with [`Backoff`] on [retryable](Error::is_retryable) errors;
/// - **abort on failure**: a failing input ([`ErrorKind::Source`]), a part that fails every
///   attempt, a failing completion, too many parts ([`ErrorKind::TooManyParts`]) or an input
///   past 5 TiB ([`ErrorKind::ObjectTooLarge`]) abort the upload once, before part 10,001 is
///   sent, and return the error, so no object and no open upload is left behind;
/// - **empty input** is [`ErrorKind::EmptyStream`] and creates no upload at all;
/// - parts are sent to `CompleteMultipartUpload` in ascending order, however they finished.
#[derive(Debug)]
pub struct MultipartUploader<S: ?Sized> {
    store: Arc<S>,
    config: UploadConfig,
    cancel: CancellationToken,
}

/// A part being filled: its bytes and their running CRC32C.
pub(crate) struct PartBuf {
    data: Vec<u8>,
    crc: Crc32cHasher,
}

impl PartBuf {
    /// A part with room for `capacity` bytes, reusing a pooled buffer if one fits. Its
    /// contents are stale until [`PartSource::fill`] (which starts from byte 0); they are kept
    /// so that [`fill_blocking`] need not zero a recycled buffer again.
    fn take(pool: &BufferPool, capacity: usize) -> Self {
        let data = pool.take(capacity);
        Self {
            data,
            crc: Crc32cHasher::new(),
        }
    }

    fn empty() -> Self {
        Self {
            data: Vec::new(),
            crc: Crc32cHasher::new(),
        }
    }
}

/// The parts of a finished `send_parts`, in ascending order, with what we know about them.
struct SentParts {
    parts: Vec<CompletedPart>,
    /// Each part's CRC32C and length, in part order.
    checksums: Vec<(Crc32c, u64)>,
    bytes: u64,
    max_part_size: u64,
    /// Parts a resumed upload did not send again.
    skipped: u16,
}

/// A part as stored: what the completion needs, and its CRC32C and length.
type SentPart = (CompletedPart, (Crc32c, u64));

/// What the completed object must be: our bytes, our checksums, our token.
struct Expected {
    bytes: u64,
    /// The composite CRC32C, `base64-N`.
    composite: String,
    /// The whole object's CRC32C, for servers that report that instead.
    full: Crc32c,
    token: String,
}

/// What the completion reported (or the `HEAD` that confirmed a lost completion).
struct Completion {
    etag: String,
    checksum: Option<String>,
    /// The checksum came from a `HEAD` in checksum mode already, so asking again is pointless.
    headed: bool,
}

impl<S: ObjectStore + ?Sized + 'static> MultipartUploader<S> {
    /// An uploader writing to `store`.
    pub fn new(store: Arc<S>, config: UploadConfig) -> Self {
        Self {
            store,
            config,
            cancel: CancellationToken::new(),
        }
    }

    /// Stops uploads when `cancel` fires (z3: on SIGINT or SIGTERM): reading and sending stop,
    /// the multipart upload is aborted (awaited, not spawned), and the upload returns
    /// [`ErrorKind::Cancelled`]. A completion already under way is not interrupted, so a
    /// cancelled upload either finished whole or left nothing behind.
    #[must_use]
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    fn cancelled(url: &str, stage: &str) -> Error {
        Error::new(
            ErrorKind::Cancelled,
            format!("upload to {url} cancelled {stage}"),
        )
    }

    /// The configuration in use.
    #[must_use]
    pub fn config(&self) -> &UploadConfig {
        &self.config
    }

    /// Reads `reader` to the end and stores it under `key` with the headers in `options`.
    ///
    /// The first part is read before the multipart upload is created, so an empty or
    /// immediately failing input leaves nothing on the server.
    ///
    /// `CompleteMultipartUpload` is retried on retryable errors. If a *retried* completion
    /// reports `NoSuchUpload`, the first attempt probably succeeded and only its response was
    /// lost; the uploader then `HEAD`s the key in checksum mode and accepts the object if its
    /// composite CRC32C equals ours or, when the server reports no checksum, if its size equals
    /// the bytes uploaded (a weaker rule: a concurrent writer of the same key with the same
    /// length would also pass it).
    ///
    /// After completion the server's composite CRC32C is compared with ours. When the
    /// completion response carries none, the key is `HEAD`ed in checksum mode; when that has
    /// none either, the server does not support checksums: a warning is logged and the upload
    /// succeeds with [`UploadReport::checksum_verified`] `false` (the parts were still verified
    /// by the server if it checks `x-amz-checksum-crc32c`). On a mismatch, or when the checksum
    /// cannot be read back, the object is deleted: z3 treats an existing object as a finished
    /// backup, so an unverified one must not stay.
    ///
    /// `CreateMultipartUpload` is retried too; if an attempt failed, its response may have been
    /// lost after the server created an upload, so once the create settled, the other uploads of
    /// the same key started since (allowing a minute of clock skew) are aborted.
    ///
    /// If the returned future is dropped mid-upload, in-flight parts are cancelled and an abort
    /// is spawned on the current Tokio runtime (best effort: it is lost if the runtime shuts down).
    ///
    /// # Errors
    /// [`ErrorKind::EmptyStream`], [`ErrorKind::Source`], [`ErrorKind::TooManyParts`],
    /// [`ErrorKind::ObjectTooLarge`], [`ErrorKind::ChecksumMismatch`], or the store error that
    /// made a part, the completion or its verification fail for good.
    pub async fn upload<R>(
        &self,
        key: &str,
        options: &PutOptions,
        reader: R,
    ) -> Result<UploadReport>
    where
        R: AsyncRead + Unpin + Send,
    {
        self.upload_from(key, options, AsyncSource(reader), None)
            .await
    }

    /// [`upload`](Self::upload), running `before_complete` after the last part is stored and
    /// before `CompleteMultipartUpload`: the object does not exist until the hook succeeded, and
    /// if it fails the upload is aborted and its error returned. z3 writes the object's seal
    /// (its stream digest, known only at the end) there, so that no object exists without one.
    ///
    /// The hook is not interrupted by the cancellation token (like the completion itself).
    ///
    /// # Errors
    /// As [`upload`](Self::upload), and the hook's error.
    pub async fn upload_then<R>(
        &self,
        key: &str,
        options: &PutOptions,
        reader: R,
        before_complete: BeforeComplete<'_>,
    ) -> Result<UploadReport>
    where
        R: AsyncRead + Unpin + Send,
    {
        self.upload_from(key, options, AsyncSource(reader), Some(before_complete))
            .await
    }

    /// [`upload_then`](Self::upload_then), resumable: the upload is recorded in
    /// `resumable.journal` as it goes, and when it fails it is **left open** instead of aborted,
    /// so that a later run can continue it (ADR 4). `resumable.previous`, a previous run's
    /// record, is continued if the server still has every part it names with the same length
    /// and ETag (`ListParts`); the stream must then be the same one, cut by the same
    /// configuration: each part whose length and CRC32C equal the record's is not sent again.
    /// A previous upload that vanished is replaced by a new one; one whose parts disagree is
    /// aborted first ([`UploadReport::resume`] says which).
    ///
    /// Left open on failure: a failing input, a part that fails for good, a cancellation, and
    /// the future being dropped. Still aborted: a regenerated part that differs from its record
    /// ([`ErrorKind::ResumeMismatch`]: send the stream again from its start, without
    /// `previous`), too many parts, too large an input, and a failing hook or completion.
    ///
    /// # Errors
    /// As [`upload_then`](Self::upload_then), and [`ErrorKind::ResumeMismatch`]; the first
    /// journal record failing.
    pub async fn upload_resumable<R>(
        &self,
        key: &str,
        options: &PutOptions,
        reader: R,
        before_complete: BeforeComplete<'_>,
        resumable: Resumable<'_>,
    ) -> Result<UploadReport>
    where
        R: AsyncRead + Unpin + Send,
    {
        self.upload_with(
            key,
            options,
            AsyncSource(reader),
            Some(before_complete),
            Some(resumable),
        )
        .await
    }

    /// [`upload`](Self::upload) from a blocking reader (standard input, a pipe, a file), read on
    /// a thread of its own straight into the part buffers: no copy between reading and sending,
    /// and the CRC32C is computed on that thread, beside the network work. The fastest way to
    /// upload from a pipe.
    ///
    /// If the upload fails or is cancelled while the thread is blocked in `read`, the thread
    /// ends when that `read` returns.
    ///
    /// # Errors
    /// As [`upload`](Self::upload); also [`ErrorKind::Source`] if the thread cannot be started.
    pub async fn upload_blocking<R>(
        &self,
        key: &str,
        options: &PutOptions,
        reader: R,
    ) -> Result<UploadReport>
    where
        R: std::io::Read + Send + 'static,
    {
        let url = object_url(self.store.bucket(), key);
        let source = ThreadSource::spawn(reader).map_err(|err| {
            Error::source_failed(format!("starting the input thread for {url}"), err)
        })?;
        self.upload_from(key, options, source, None).await
    }

    async fn upload_from<P: PartSource>(
        &self,
        key: &str,
        options: &PutOptions,
        reader: P,
        before_complete: Option<BeforeComplete<'_>>,
    ) -> Result<UploadReport> {
        self.upload_with(key, options, reader, before_complete, None)
            .await
    }

    /// Checks a previous run's upload before anything is read: the parts to skip, or none.
    async fn previous_parts(
        &self,
        key: &str,
        resumable: Option<&Resumable<'_>>,
    ) -> Result<(Option<(OpenUpload, Skip)>, ResumeOutcome)> {
        let Some(previous) = resumable.and_then(|r| r.previous.as_ref()) else {
            return Ok((None, ResumeOutcome::Fresh));
        };
        Ok(
            match crate::resume::check_previous(self.store.as_ref(), key, previous).await? {
                Ok(parts) => (
                    Some((previous.clone(), parts)),
                    ResumeOutcome::Resumed { parts_skipped: 0 },
                ),
                Err(outcome) => (None, outcome),
            },
        )
    }

    #[allow(clippy::too_many_lines)]
    async fn upload_with<P: PartSource>(
        &self,
        key: &str,
        options: &PutOptions,
        mut reader: P,
        before_complete: Option<BeforeComplete<'_>>,
        resumable: Option<Resumable<'_>>,
    ) -> Result<UploadReport> {
        let url = object_url(self.store.bucket(), key);
        let (previous, mut resume) = self.previous_parts(key, resumable.as_ref()).await?;
        let journal = resumable.as_ref().map(|r| r.journal);
        let sizer = self.config.sizer();
        let first_size = read_size(&sizer, Some(PartNumber::FIRST), 0).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "upload to {url}: unusable part size {}",
                    self.config.part_size
                ),
            )
        })?;

        // Parts in flight, the one being filled, and one more: what a steady upload recycles.
        let pool = BufferPool::new(self.config.concurrency.max(1) + 2);
        let mut first = PartBuf::take(&pool, first_size);
        let eof = tokio::select! {
            biased;
            () = self.cancel.cancelled() => {
                return Err(Self::cancelled(&url, "before it started"));
            }
            filled = reader.fill(&mut first, first_size) => filled,
        }
        .map_err(|err| Error::source_failed(format!("reading input for {url}"), err))?;
        if first.data.is_empty() {
            return Err(Error::new(
                ErrorKind::EmptyStream,
                format!("refusing to upload zero bytes to {url}"),
            ));
        }

        let (upload_id, token, skip) = if let Some((open, skip)) = previous {
            tracing::info!(%url, upload_id = %open.upload_id, stored = skip.len(), "resuming the journaled upload");
            (open.upload_id, open.token, skip)
        } else {
            let token = format!("{:032x}", rand::random::<u128>());
            let mut options = options.clone();
            options
                .metadata
                .insert(UPLOAD_TOKEN_META.to_owned(), token.clone());
            let upload_id = self.create(key, &options).await?;
            tracing::debug!(%url, %upload_id, part_size = first_size, "multipart upload started");
            (upload_id, token, Skip::new())
        };
        // A resumable upload is left open when dropped: its journal names it.
        let mut guard = AbortOnDrop {
            store: journal.is_none().then(|| Arc::clone(&self.store)),
            key: key.to_owned(),
            upload_id: upload_id.clone(),
        };
        let resumed = matches!(resume, ResumeOutcome::Resumed { .. });
        let mut journal = journal.map(|sink| Journal {
            sink,
            open: OpenUpload {
                upload_id: upload_id.clone(),
                token: token.clone(),
                parts: Vec::new(),
            },
            kept: skip.values().cloned().collect(),
            pace: JournalPace::new(),
        });
        // A new upload is recorded before its first part; a resumed one is named already.
        if let Some(journal) = &mut journal
            && !resumed
            && let Err(err) = journal.record_now(&[]).await
        {
            self.abort(key, &upload_id).await;
            return Err(err.context(format_args!(
                "cannot record the upload of {url} in its journal; it was aborted"
            )));
        }

        // Cancelling drops the parts in flight (their tasks are aborted with the JoinSet); the
        // completion below is never interrupted.
        let sent = tokio::select! {
            biased;
            () = self.cancel.cancelled() => {
                let what = if journal.is_some() { "left open" } else { "aborted" };
                // The parts stored since the last journal record are not known here: that
                // record stays, and they are sent again.
                Err((Self::cancelled(&url, &format!("(upload id {upload_id}); the upload was {what}")), None))
            }
            sent = self.send_parts(key, &upload_id, &sizer, &pool, &mut reader, first, eof, &skip, journal.as_mut()) => {
                sent.map_err(|(err, done)| (err, Some(done)))
            }
        };
        let result = match sent {
            Ok(sent) => {
                if let ResumeOutcome::Resumed { parts_skipped } = &mut resume {
                    *parts_skipped = sent.skipped;
                }
                self.finish(key, &upload_id, sent, &token, before_complete)
                    .await
            }
            Err((err, done)) => {
                if let Some(journal) = &mut journal
                    && keeps_open(err.kind())
                {
                    // Left open for the next run: record what is stored, and stop here.
                    if let Some(done) = &done
                        && let Err(record) = journal.record_now(done).await
                    {
                        tracing::warn!(%url, %upload_id, error = %record, "cannot update the journal; it names fewer parts than are stored");
                    }
                    return Err(err.context(format_args!(
                        "the upload (id {upload_id}) was left open for the next run to resume ({} of its parts journaled)",
                        journal.open.parts.len()
                    )));
                }
                Err(err)
            }
        };
        let (sent, expected, completion) = match result {
            Ok(done) => {
                guard.store = None;
                done
            }
            Err(err) => {
                // The guard stays armed until the abort is done, so cancelling the upload while
                // it aborts still spawns one.
                self.abort(key, &upload_id).await;
                guard.store = None;
                return Err(match journal {
                    Some(_) => err.context(format_args!("the upload (id {upload_id}) was aborted")),
                    None => err,
                });
            }
        };

        let checksum_verified = self.verify(key, &completion, &expected).await?;
        let report = UploadReport {
            etag: completion.etag,
            bytes: sent.bytes,
            parts: u16::try_from(sent.parts.len()).unwrap_or(MAX_PARTS),
            max_part_size: sent.max_part_size,
            checksum_crc32c: expected.composite,
            checksum_verified,
            token,
            resume,
        };
        tracing::debug!(
            %url, %upload_id, bytes = report.bytes, parts = report.parts,
            max_part_size = report.max_part_size, checksum = %report.checksum_crc32c,
            verified = report.checksum_verified, "multipart upload completed"
        );
        Ok(report)
    }

    /// After the last part: the hook (the seal), then the completion.
    async fn finish(
        &self,
        key: &str,
        upload_id: &UploadId,
        sent: SentParts,
        token: &str,
        before_complete: Option<BeforeComplete<'_>>,
    ) -> Result<(SentParts, Expected, Completion)> {
        let crcs: Vec<Crc32c> = sent.checksums.iter().map(|&(crc, _)| crc).collect();
        let expected = Expected {
            bytes: sent.bytes,
            composite: composite_crc32c(&crcs),
            full: full_object_crc32c(&sent.checksums),
            token: token.to_owned(),
        };
        if let Some(hook) = before_complete {
            hook(PartsDone {
                bytes: sent.bytes,
                parts: u16::try_from(sent.parts.len()).unwrap_or(MAX_PARTS),
                checksum_crc32c: expected.composite.clone(),
                token: token.to_owned(),
            })
            .await?;
        }
        let completion = self
            .complete(key, upload_id, sent.parts.clone(), &expected)
            .await?;
        Ok((sent, expected, completion))
    }

    /// Reads and uploads every part; returns them in ascending order with their checksums.
    #[allow(clippy::too_many_arguments, clippy::too_many_lines)]
    async fn send_parts<P: PartSource>(
        &self,
        key: &str,
        upload_id: &UploadId,
        sizer: &PartSizer,
        pool: &BufferPool,
        reader: &mut P,
        first: PartBuf,
        first_eof: bool,
        skip: &Skip,
        mut journal: Option<&mut Journal<'_>>,
    ) -> std::result::Result<SentParts, (Error, Vec<SentPart>)> {
        let url = object_url(self.store.bucket(), key);
        let concurrency = self.config.concurrency.max(1);
        let budget = self.config.memory_limit.unwrap_or(u64::MAX);
        let max_object = sizer.max_object_size();
        let mut in_flight = InFlight::default();
        let mut next_part = Some(PartNumber::FIRST);
        let mut total: u64 = 0;
        let mut max_part_size: u64 = 0;
        let mut buf = first;
        let mut eof = first_eof;

        let outcome: Result<()> = async {
            loop {
                if !buf.data.is_empty() {
                    let len = buf.data.len() as u64;
                    if total + len > max_object {
                        return Err(Error::new(
                            ErrorKind::ObjectTooLarge,
                            format!(
                                "upload to {url} (upload id {upload_id}): input is longer than the largest S3 object ({max_object} bytes)"
                            ),
                        ));
                    }
                    let Some(part) = next_part else {
                        return Err(self.too_many_parts(&url, upload_id, total, max_part_size));
                    };
                    // Backpressure: wait for a free slot before handing over the filled buffer,
                    // so at most `concurrency` parts are in flight plus this one.
                    while in_flight.tasks.len() >= concurrency {
                        in_flight.join_one(&url).await?;
                    }
                    if len > max_part_size && part != PartNumber::FIRST {
                        tracing::debug!(%url, part = part.get(), part_size = len, "part size grows");
                    }
                    max_part_size = max_part_size.max(len);
                    total += len;
                    let checksum = buf.crc.finish();
                    let data = std::mem::replace(&mut buf, PartBuf::empty()).data;
                    if let Some(stored) = skip.get(&part) {
                        in_flight.skip(stored, checksum, (data, pool), &url, upload_id)?;
                    } else {
                        let body = pool.freeze(data);
                        self.spawn_part(&mut in_flight, key, upload_id, part, body, checksum);
                    }
                    next_part = part.next();
                    if let Some(journal) = journal.as_deref_mut() {
                        journal.maybe_record(&mut in_flight).await;
                    }
                }
                if eof {
                    break;
                }
                // After part 10,000 only one byte is read: enough to know the input goes on.
                let want = read_size(sizer, next_part, total)
                    .unwrap_or(usize::MAX)
                    .min(usize::try_from(max_object - total + 1).unwrap_or(usize::MAX));
                // The memory budget: start the next part only when it fits beside the parts in
                // flight, except that one part may always upload while this one is read.
                while in_flight.tasks.len() > 1 && in_flight.bytes + want as u64 > budget {
                    in_flight.join_one(&url).await?;
                }
                buf = PartBuf::take(pool, want);
                // Fill the next part while watching finished parts, so a part that fails for
                // good stops the upload without waiting for a slow input. The fill future lives
                // across the loop: a source may hold the buffer until it is done.
                let filled = {
                    let fill = reader.fill(&mut buf, want);
                    tokio::pin!(fill);
                    loop {
                        tokio::select! {
                            biased;
                            Some(joined) = in_flight.tasks.join_next(), if !in_flight.tasks.is_empty() => {
                                in_flight.settle(joined, &url)?;
                            }
                            filled = &mut fill => break filled,
                        }
                    }
                };
                eof = filled.map_err(|err| {
                    Error::source_failed(
                        format!("reading input for {url} (upload id {upload_id}) after {total} bytes"),
                        err,
                    )
                })?;
            }
            while !in_flight.tasks.is_empty() {
                in_flight.join_one(&url).await?;
            }
            Ok(())
        }
        .await;

        if let Err(err) = outcome {
            in_flight
                .stop(journal.is_some() && keeps_open(err.kind()), &url)
                .await;
            return Err((err, in_flight.done));
        }
        let skipped = in_flight.skipped;
        let mut done = in_flight.done;
        done.sort_by_key(|(part, _)| part.part_number);
        let (parts, checksums) = done.into_iter().unzip();
        Ok(SentParts {
            parts,
            checksums,
            bytes: total,
            max_part_size,
            skipped,
        })
    }

    /// Starts uploading one part (with retries) as a task of `in_flight`.
    fn spawn_part(
        &self,
        in_flight: &mut InFlight,
        key: &str,
        upload_id: &UploadId,
        part: PartNumber,
        body: bytes::Bytes,
        checksum: Crc32c,
    ) {
        let store = Arc::clone(&self.store);
        let (key, upload_id) = (key.to_owned(), upload_id.clone());
        let retry_config = self.config.retry.clone();
        let url = object_url(self.store.bucket(), &key);
        let len = body.len() as u64;
        in_flight.bytes += len;
        in_flight.tasks.spawn(async move {
            let uploaded = retry(&retry_config, "put_part", || {
                store.put_part(&key, &upload_id, part, body.clone(), checksum)
            })
            .await?;
            check_part_echo(&uploaded, checksum, &url, &upload_id)?;
            tracing::debug!(%url, part = part.get(), len, "part stored");
            Ok((uploaded, (checksum, len)))
        });
    }

    fn too_many_parts(&self, url: &str, upload_id: &UploadId, total: u64, last: u64) -> Error {
        let hint = match (self.config.growth, self.config.estimate) {
            (PartGrowth::Fixed, _) => "; use a larger part size".to_owned(),
            (PartGrowth::Adaptive { .. }, Some(estimate)) => format!(
                "; the input outgrew its estimate of {estimate} bytes too far for the parts left"
            ),
            (PartGrowth::Adaptive { .. }, None) => String::new(),
        };
        Error::new(
            ErrorKind::TooManyParts,
            format!(
                "upload to {url} (upload id {upload_id}): input needs more than {MAX_PARTS} parts (the last of {last} bytes) after {total} bytes{hint}"
            ),
        )
    }

    /// `CreateMultipartUpload` with retries. A failed attempt may still have created an upload
    /// whose response was lost (a timeout, a reset); when any attempt failed, the other open
    /// uploads of exactly this key started since shortly before the first attempt are aborted
    /// once the create is settled, so none is left open (and billed) behind us.
    async fn create(&self, key: &str, options: &PutOptions) -> Result<UploadId> {
        let started = std::time::SystemTime::now();
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let created = retry(&self.config.retry, "create_multipart", || {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.store.create_multipart(key, options)
        })
        .await;
        if attempts.into_inner() > 1 {
            self.abort_strays(key, started, created.as_ref().ok()).await;
        }
        created
    }

    /// Aborts open uploads of `key` other than `keep` that were started after `since` (less a
    /// minute for clock skew between us and the server). Best effort: failures are logged.
    async fn abort_strays(&self, key: &str, since: std::time::SystemTime, keep: Option<&UploadId>) {
        const SKEW: std::time::Duration = std::time::Duration::from_mins(1);
        let since = since.checked_sub(SKEW).unwrap_or(since);
        let open = match retry(&self.config.retry, "list_multipart_uploads", || {
            self.store.list_multipart_uploads(key)
        })
        .await
        {
            Ok(open) => open,
            Err(err) => {
                tracing::warn!(key, error = %err, "cannot list uploads a lost CreateMultipartUpload response may have left open");
                return;
            }
        };
        for stray in open {
            let recent = stray.initiated.is_none_or(|t| t >= since);
            if stray.key == key && Some(&stray.upload_id) != keep && recent {
                tracing::warn!(key, upload_id = %stray.upload_id, "aborting an upload left by a lost CreateMultipartUpload response");
                self.abort(key, &stray.upload_id).await;
            }
        }
    }

    /// `CompleteMultipartUpload` with retries. Its outcome is settled, never guessed: when the
    /// last attempt did not return a readable success (a lost or unparsable response, a 5xx or
    /// timeout after the last retry, `NoSuchUpload` because an earlier attempt did complete),
    /// [`Self::settle`] reads the key back.
    async fn complete(
        &self,
        key: &str,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
        expected: &Expected,
    ) -> Result<Completion> {
        let url = object_url(self.store.bucket(), key);
        let config = &self.config.retry;
        let max_attempts = config.max_attempts.max(1);
        let mut backoff = Backoff::new(config);
        let mut attempt = 1;
        loop {
            match self
                .store
                .complete_multipart(key, upload_id, parts.clone(), &self.config.precondition)
                .await
            {
                Ok(done) => {
                    return Ok(Completion {
                        etag: done.etag,
                        checksum: done.checksum_crc32c,
                        headed: false,
                    });
                }
                // After a retry, NoSuchUpload means an earlier attempt probably completed.
                Err(err)
                    if err.is_retryable()
                        && attempt < max_attempts
                        && !(err.kind() == ErrorKind::NoSuchUpload) =>
                {
                    let delay = backoff.next();
                    tracing::warn!(%url, %upload_id, attempt, error = %err, "complete_multipart failed, retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(err) => {
                    let err = if attempt > 1 {
                        err.context(format_args!("gave up after {attempt} attempts"))
                    } else {
                        err
                    };
                    return self.settle(key, expected, err).await;
                }
            }
        }
    }

    /// After a completion that did not answer with a readable success: the object at `key` is
    /// ours exactly when it carries our upload token and our length; then the upload did
    /// complete (its answer was lost or unreadable) and is accepted. Otherwise `err` stands: the
    /// key holds no object, or another one (e.g. a failed precondition), or cannot be read.
    async fn settle(&self, key: &str, expected: &Expected, err: Error) -> Result<Completion> {
        let url = object_url(self.store.bucket(), key);
        let info = match retry(&self.config.retry, "head_checksum", || {
            self.store.head_checksum(key)
        })
        .await
        {
            Ok(info) => info,
            Err(head_err) if head_err.kind() == ErrorKind::NotFound => return Err(err),
            Err(head_err) => {
                tracing::warn!(%url, error = %head_err, "reading the key back after a failed completion failed");
                return Err(err.context(
                    "the completion failed and the key could not be read back to settle it",
                ));
            }
        };
        let ours = info.metadata.get(UPLOAD_TOKEN_META) == Some(&expected.token);
        if !ours || info.size != expected.bytes {
            return Err(err);
        }
        tracing::warn!(%url, bytes = expected.bytes, error = %err, "the completion's answer was lost or unreadable, but the object carries our upload token and length: it completed");
        Ok(Completion {
            etag: info.etag.unwrap_or_default(),
            checksum: info.checksum_crc32c,
            headed: true,
        })
    }

    /// Compares the server's composite checksum with ours (see [`Self::upload`]); returns
    /// whether the server reported one. Deletes the object when it cannot be trusted.
    async fn verify(
        &self,
        key: &str,
        completion: &Completion,
        expected: &Expected,
    ) -> Result<bool> {
        let url = object_url(self.store.bucket(), key);
        let reported = match (&completion.checksum, completion.headed) {
            (Some(checksum), _) => Some(checksum.clone()),
            (None, true) => None,
            (None, false) => {
                match retry(&self.config.retry, "head_checksum", || {
                    self.store.head_checksum(key)
                })
                .await
                {
                    Ok(info) => info.checksum_crc32c,
                    Err(err) => {
                        let fate = self.discard_unconfirmed(key).await;
                        return Err(err.context(format_args!(
                            "reading back the checksum of {url} failed; the object {fate}"
                        )));
                    }
                }
            }
        };
        let composite = &expected.composite;
        match reported {
            Some(actual) if composite_matches(composite, expected.full, &actual) => Ok(true),
            Some(actual) => {
                let fate = self.discard_unconfirmed(key).await;
                Err(Error::new(
                    ErrorKind::ChecksumMismatch,
                    format!(
                        "checksum mismatch for {url}: we sent CRC32C {composite} (whole object {}), the server reports {actual}; the object {fate}",
                        expected.full,
                    ),
                ))
            }
            None => {
                tracing::warn!(
                    %url, checksum = composite,
                    "the server reports no CRC32C for the object; its composite checksum could not be verified"
                );
                Ok(false)
            }
        }
    }

    /// What becomes of a completed object whose checksum could not be confirmed: deleted,
    /// unless it replaced an inspected object ([`Precondition::Unchanged`]), which is gone
    /// either way; returns what happened, for the message.
    async fn discard_unconfirmed(&self, key: &str) -> &'static str {
        if matches!(self.config.precondition, Precondition::Unchanged(_)) {
            tracing::warn!(url = %object_url(self.store.bucket(), key), "keeping the unconfirmed object: it replaced the previous one, so deleting it would leave nothing");
            "was kept: it replaced the previous object, which is gone either way"
        } else if self.delete_untrusted(key).await {
            "was deleted"
        } else {
            "could not be deleted and must not be trusted"
        }
    }

    /// Deletes an object that failed verification; returns whether it is gone.
    async fn delete_untrusted(&self, key: &str) -> bool {
        let url = object_url(self.store.bucket(), key);
        match retry(&self.config.retry, "delete", || self.store.delete(key)).await {
            Ok(()) => {
                tracing::warn!(%url, "deleted the object that failed checksum verification");
                true
            }
            Err(err) => {
                tracing::error!(%url, error = %err, "could not delete the object that failed checksum verification; it must not be trusted");
                false
            }
        }
    }

    /// Aborts the upload, retrying transient failures; a failure is logged, not returned,
    /// because the caller is already returning the error that caused the abort.
    async fn abort(&self, key: &str, upload_id: &UploadId) {
        let url = object_url(self.store.bucket(), key);
        match retry(&self.config.retry, "abort_multipart", || {
            self.store.abort_multipart(key, upload_id)
        })
        .await
        {
            Ok(()) => tracing::debug!(%url, %upload_id, "multipart upload aborted"),
            Err(err) => tracing::error!(
                %url, %upload_id, error = %err,
                "could not abort the multipart upload; it stays open (and billed) until a lifecycle rule or cleanup removes it"
            ),
        }
    }
}

/// How many bytes to read for `part` (after `uploaded` bytes): the sizer's size, or one byte
/// past part 10,000 (enough to detect that the input goes on). `None` when the size is zero or
/// does not fit in memory.
fn read_size(sizer: &PartSizer, part: Option<PartNumber>, uploaded: u64) -> Option<usize> {
    let size = part.map_or(1, |part| sizer.size_of(part, uploaded));
    usize::try_from(size).ok().filter(|&size| size > 0)
}

/// A server that confirms a part with another checksum than we sent has stored other bytes.
fn check_part_echo(
    uploaded: &CompletedPart,
    sent: Crc32c,
    url: &str,
    upload_id: &UploadId,
) -> Result<()> {
    match &uploaded.checksum_crc32c {
        Some(echo) if Crc32c::from_base64(echo) != Some(sent) => Err(Error::new(
            ErrorKind::ChecksumMismatch,
            format!(
                "put_part {url} (upload id {upload_id}, part {}): we sent CRC32C {sent}, the server confirmed {echo}",
                uploaded.part_number
            ),
        )),
        _ => Ok(()),
    }
}

/// Where the uploader's bytes come from: fills one part buffer at a time.
pub(crate) trait PartSource: Send {
    /// Fills `buf` from its first byte (whatever it held is discarded) up to `limit` bytes,
    /// checksumming what arrives; returns whether the input ended.
    fn fill(
        &mut self,
        buf: &mut PartBuf,
        limit: usize,
    ) -> impl Future<Output = io::Result<bool>> + Send;
}

/// An [`AsyncRead`] read on the uploader's task.
struct AsyncSource<R>(R);

impl<R: AsyncRead + Unpin + Send> PartSource for AsyncSource<R> {
    fn fill(
        &mut self,
        buf: &mut PartBuf,
        limit: usize,
    ) -> impl Future<Output = io::Result<bool>> + Send {
        fill(&mut self.0, buf, limit)
    }
}

/// A blocking reader on a thread of its own that reads straight into the part buffers.
struct ThreadSource {
    requests: mpsc::Sender<(PartBuf, usize)>,
    replies: mpsc::Receiver<(PartBuf, io::Result<bool>)>,
}

impl ThreadSource {
    fn spawn<R: std::io::Read + Send + 'static>(mut reader: R) -> io::Result<Self> {
        let (requests, mut work) = mpsc::channel::<(PartBuf, usize)>(1);
        let (done, replies) = mpsc::channel(1);
        std::thread::Builder::new()
            .name("z3-upload-input".into())
            .spawn(move || {
                while let Some((mut buf, limit)) = work.blocking_recv() {
                    let result = fill_blocking(&mut reader, &mut buf, limit);
                    if done.blocking_send((buf, result)).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Self { requests, replies })
    }
}

impl PartSource for ThreadSource {
    async fn fill(&mut self, buf: &mut PartBuf, limit: usize) -> io::Result<bool> {
        let stopped = || io::Error::other("the input thread stopped");
        let part = std::mem::replace(buf, PartBuf::empty());
        self.requests
            .send((part, limit))
            .await
            .map_err(|_| stopped())?;
        let (part, result) = self.replies.recv().await.ok_or_else(stopped)?;
        *buf = part;
        result
    }
}

/// The least a [`fill_blocking`] buffer grows by at a time.
const FILL_STEP: usize = 1 << 20;

/// [`PartSource::fill`] for a blocking reader, cut to what was read.
///
/// The buffer's initialized length grows with the input, up to `limit`: when the bytes read
/// reach it, it is extended by as much as was read so far (at least [`FILL_STEP`]), so at most
/// about twice the input (plus 1 MiB) is ever zeroed. A 1-byte input to a 5 GiB part zeroes
/// 1 MiB, not 5 GiB. A recycled buffer of full length is not zeroed again.
fn fill_blocking<R: std::io::Read>(
    reader: &mut R,
    buf: &mut PartBuf,
    limit: usize,
) -> io::Result<bool> {
    let mut filled = 0;
    let result = loop {
        if filled >= limit {
            break Ok(false);
        }
        if filled >= buf.data.len() {
            let grow = filled.max(FILL_STEP).min(limit - filled);
            buf.data.resize(filled + grow, 0);
        }
        let end = buf.data.len().min(limit);
        match reader.read(&mut buf.data[filled..end]) {
            Ok(0) => break Ok(true),
            Ok(n) => {
                buf.crc.update(&buf.data[filled..filled + n]);
                filled += n;
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => break Err(err),
        }
    };
    buf.data.truncate(filled);
    result
}

/// [`PartSource::fill`] for an [`AsyncRead`]: reads into the buffer's spare capacity, so a
/// recycled buffer is never zeroed. Not cancel-safe (it starts from byte 0 each call); the
/// uploader keeps one fill future alive until it completes.
async fn fill<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut PartBuf,
    limit: usize,
) -> io::Result<bool> {
    buf.data.clear();
    while buf.data.len() < limit {
        let want = limit - buf.data.len();
        let before = buf.data.len();
        match reader.read_buf(&mut (&mut buf.data).limit(want)).await {
            Ok(0) => return Ok(true),
            Ok(_) => buf.crc.update(&buf.data[before..]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(false)
}

/// The parts of one upload being sent, their bytes (what the memory budget counts), and the
/// parts stored so far.
#[derive(Default)]
struct InFlight {
    tasks: JoinSet<Result<SentPart>>,
    bytes: u64,
    done: Vec<SentPart>,
    /// Bytes stored since the journal was last told.
    stored_since: u64,
    skipped: u16,
}

impl InFlight {
    /// Waits for one part to finish (returns at once when none is in flight).
    async fn join_one(&mut self, url: &str) -> Result<()> {
        match self.tasks.join_next().await {
            Some(joined) => self.settle(joined, url),
            None => Ok(()),
        }
    }

    /// Records a finished part, or its failure.
    fn settle(
        &mut self,
        joined: std::result::Result<Result<SentPart>, JoinError>,
        url: &str,
    ) -> Result<()> {
        let part = joined_part(joined, url)?;
        self.bytes -= part.1.1;
        self.stored_since += part.1.1;
        self.done.push(part);
        Ok(())
    }

    /// After a failure: with `keep_open`, waits for the parts in flight (they may still be
    /// stored, and then the journal can name them; a failing one is just not named); otherwise
    /// stops them, so that none lands after the abort.
    async fn stop(&mut self, keep_open: bool, url: &str) {
        if !keep_open {
            self.tasks.shutdown().await;
            return;
        }
        while let Some(joined) = self.tasks.join_next().await {
            if let Err(part) = self.settle(joined, url) {
                tracing::debug!(%url, error = %part, "a part in flight failed too");
            }
        }
    }

    /// Resuming: a part the journal proves is already stored is not sent again; one that
    /// differs from its record is [`ErrorKind::ResumeMismatch`].
    /// Its buffer goes straight back to the pool for the next part.
    fn skip(
        &mut self,
        stored: &JournaledPart,
        checksum: Crc32c,
        (data, pool): (Vec<u8>, &BufferPool),
        url: &str,
        upload_id: &UploadId,
    ) -> Result<()> {
        let len = data.len() as u64;
        pool.give(data);
        let crc = checksum.to_base64();
        if stored.size != len || stored.crc32c != crc {
            return Err(crate::resume::mismatch(url, upload_id, stored, len, &crc));
        }
        let part = CompletedPart {
            part_number: stored.number,
            etag: stored.etag.clone(),
            checksum_crc32c: Some(stored.crc32c.clone()),
        };
        self.done.push((part, (checksum, stored.size)));
        self.skipped += 1;
        Ok(())
    }
}

/// Parts a resumed upload may skip, by number.
type Skip = std::collections::BTreeMap<PartNumber, JournaledPart>;

/// Whether a resumable upload that failed with `kind` is left open for the next run: not when
/// resuming cannot help.
fn keeps_open(kind: ErrorKind) -> bool {
    !matches!(
        kind,
        ErrorKind::ResumeMismatch | ErrorKind::TooManyParts | ErrorKind::ObjectTooLarge
    )
}

/// A resumable upload's journal and when to write it next.
struct Journal<'a> {
    sink: &'a dyn UploadJournal,
    open: OpenUpload,
    /// A resumed upload's parts proven stored by the previous record: still named until this
    /// run reaches them, so a run that fails earlier than the one before forgets nothing.
    kept: Vec<JournaledPart>,
    pace: JournalPace,
}

impl Journal<'_> {
    /// Records the parts stored (`done`, in any order) now.
    async fn record_now(&mut self, done: &[SentPart]) -> Result<()> {
        let mut parts: Vec<JournaledPart> = done
            .iter()
            .map(|(part, (crc, len))| JournaledPart {
                number: part.part_number,
                size: *len,
                crc32c: crc.to_base64(),
                etag: part.etag.clone(),
            })
            .collect();
        let reached: std::collections::BTreeSet<_> = parts.iter().map(|p| p.number).collect();
        parts.extend(
            self.kept
                .iter()
                .filter(|p| !reached.contains(&p.number))
                .cloned(),
        );
        parts.sort_by_key(|p| p.number);
        self.open.parts = parts;
        self.sink.record(&self.open).await?;
        self.pace.recorded(done.len());
        Ok(())
    }

    /// Records the parts stored so far if a record is due; a failure is only logged.
    async fn maybe_record(&mut self, in_flight: &mut InFlight) {
        self.pace
            .stored(std::mem::take(&mut in_flight.stored_since));
        if self.pace.due(in_flight.done.len())
            && let Err(err) = self.record_now(&in_flight.done).await
        {
            tracing::warn!(error = %err, "cannot update the upload's journal; the last record stays");
        }
    }
}

fn joined_part(
    joined: std::result::Result<Result<SentPart>, JoinError>,
    url: &str,
) -> Result<SentPart> {
    joined.map_err(|err| {
        Error::new(
            ErrorKind::Other,
            format!("part upload task for {url} did not finish"),
        )
        .with_source(err)
    })?
}

/// Spawns an abort if the upload future is dropped before it finished or cleaned up.
struct AbortOnDrop<S: ObjectStore + ?Sized + 'static> {
    store: Option<Arc<S>>,
    key: String,
    upload_id: UploadId,
}

impl<S: ObjectStore + ?Sized + 'static> Drop for AbortOnDrop<S> {
    fn drop(&mut self) {
        let Some(store) = self.store.take() else {
            return;
        };
        let key = std::mem::take(&mut self.key);
        let upload_id = self.upload_id.clone();
        tracing::warn!(key, %upload_id, "upload cancelled, aborting the multipart upload");
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(err) = store.abort_multipart(&key, &upload_id).await {
                    tracing::error!(key, %upload_id, error = %err, "could not abort cancelled multipart upload");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[tokio::test]
    async fn fill_stops_at_limit_reports_eof_and_checksums() {
        let mut input: &[u8] = b"aabbccdde";
        let pool = BufferPool::new(1);
        let mut parts = Vec::new();
        loop {
            // A reused buffer starts empty whatever its last user left in it.
            let mut buf = PartBuf::take(&pool, 2);
            let eof = fill(&mut input, &mut buf, 2).await.unwrap();
            if !buf.data.is_empty() {
                assert_eq!(buf.crc.finish(), Crc32c::of(&buf.data));
                parts.push(Bytes::copy_from_slice(&buf.data));
            }
            pool.give(buf.data);
            if eof {
                break;
            }
        }
        // The original pput's `test_stream_handler` case.
        assert_eq!(parts, [&b"aa"[..], b"bb", b"cc", b"dd", b"e"]);
    }

    #[test]
    fn fill_blocking_grows_with_the_input_not_to_the_part_size() {
        // A 1-byte input to a 64 MiB part: the old fill zeroed (and kept) all 64 MiB.
        let mut buf = PartBuf::empty();
        let eof = fill_blocking(&mut &b"x"[..], &mut buf, 64 << 20).unwrap();
        assert!(eof);
        assert_eq!(buf.data, b"x");
        assert!(
            buf.data.capacity() <= 2 * FILL_STEP,
            "{}",
            buf.data.capacity()
        );

        // A longer input, in odd pieces, cut at the limit with its checksum; then the rest.
        let input: Vec<u8> = (0..(5u32 << 20) + 123)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        let mut reader = std::io::BufReader::with_capacity(77_777, &input[..]);
        let limit = (3 << 20) + 5;
        let mut buf = PartBuf::empty();
        assert!(!fill_blocking(&mut reader, &mut buf, limit).unwrap());
        assert!(buf.data == input[..limit]);
        assert_eq!(buf.crc.finish(), Crc32c::of(&input[..limit]));
        // Reused, as the pool hands it back: full length, stale bytes.
        buf.crc = Crc32cHasher::new();
        assert!(fill_blocking(&mut reader, &mut buf, limit).unwrap());
        assert!(buf.data == input[limit..]);
        assert_eq!(buf.crc.finish(), Crc32c::of(&input[limit..]));
    }

    #[test]
    fn read_size_past_the_last_part_is_one_byte() {
        let sizer = PartSizer::new(0, None);
        assert_eq!(read_size(&sizer, None, 5), Some(1));
        assert_eq!(read_size(&sizer, Some(PartNumber::FIRST), 0), Some(5 << 20));
        let zero = PartSizer::with_growth(0, None, PartGrowth::Fixed);
        assert_eq!(read_size(&zero, Some(PartNumber::FIRST), 0), None);
    }
}

//! Resumable uploads ([`MultipartUploader::upload_resumable`](crate::MultipartUploader::upload_resumable)):
//! what a run records about its open upload, and how the next run checks it before reusing it.
//!
//! A resumable upload that fails is left open, and its journal ([`UploadJournal`]) names the
//! upload and every part known to be stored, with the part's length and CRC32C as computed from
//! the bytes read. The next run regenerates the same stream, cuts it with the same schedule, and
//! skips a part only when its length and CRC32C equal the journal's; a part that differs means
//! the stream is not the same, and the old upload is aborted ([`ErrorKind::ResumeMismatch`]).
//! So a completion lists only parts of the stream that run read: never a mixture of two.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::store::{ObjectStore, PartNumber, UploadId, object_url};

/// A stored part as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournaledPart {
    /// The part number.
    pub number: PartNumber,
    /// Its length.
    pub size: u64,
    /// Its CRC32C (base64), computed from the bytes read.
    pub crc32c: String,
    /// The ETag `UploadPart` returned, for the completion.
    pub etag: String,
}

/// An open upload and the parts it has stored, in ascending order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenUpload {
    /// The multipart upload.
    pub upload_id: UploadId,
    /// The random token the object will carry ([`UPLOAD_TOKEN_META`](crate::UPLOAD_TOKEN_META)),
    /// fixed when the upload was created.
    pub token: String,
    /// The parts known to be stored.
    pub parts: Vec<JournaledPart>,
}

/// Where a resumable upload records its open upload.
#[async_trait::async_trait]
pub trait UploadJournal: Send + Sync {
    /// Records `upload`: called once right after the upload is created (no parts yet), then as
    /// parts complete (at most about once a second, and only while the journal costs under 1% of
    /// the bytes sent), and once more when the upload fails and is left open. A part appears
    /// only after its `UploadPart` succeeded.
    ///
    /// # Errors
    /// The first record failing fails the upload (it is aborted: nothing would name it);
    /// later failures are logged and the previous record stays in use.
    async fn record(&self, upload: &OpenUpload) -> Result<()>;
}

/// A journal that keeps the last record in memory, for tests and for callers that persist it
/// themselves.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    last: std::sync::Mutex<Option<OpenUpload>>,
    records: std::sync::atomic::AtomicUsize,
}

impl MemoryJournal {
    /// The last record, if any.
    #[must_use]
    pub fn last(&self) -> Option<OpenUpload> {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// How many records were written.
    #[must_use]
    pub fn records(&self) -> usize {
        self.records.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl UploadJournal for MemoryJournal {
    async fn record(&self, upload: &OpenUpload) -> Result<()> {
        *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(upload.clone());
        self.records
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

/// How [`MultipartUploader::upload_resumable`](crate::MultipartUploader::upload_resumable) keeps
/// and reuses its upload.
pub struct Resumable<'a> {
    /// Where the open upload is recorded.
    pub journal: &'a dyn UploadJournal,
    /// The upload a previous run left open, to continue.
    pub previous: Option<OpenUpload>,
}

impl std::fmt::Debug for Resumable<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resumable")
            .field("previous", &self.previous)
            .finish_non_exhaustive()
    }
}

/// What happened to the previous run's upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResumeOutcome {
    /// There was none: a new upload.
    #[default]
    Fresh,
    /// It was continued; this many of its parts were not sent again.
    Resumed {
        /// Parts skipped because the journal proved them.
        parts_skipped: u16,
    },
    /// It was gone (completed, aborted, or expired by a lifecycle rule): a new upload.
    Vanished,
    /// The server's parts disagreed with the journal: it was aborted, and a new upload made.
    Discarded,
}

/// Checks `previous` against the server's `ListParts`: every journaled part must be listed with
/// the same length and ETag. Returns the parts to skip by number, or `None` (with the outcome)
/// when the upload cannot be continued; a disagreeing upload is aborted first.
///
/// # Errors
/// A `ListParts` that fails for another reason than a vanished upload: nothing is decided then.
pub(crate) async fn check_previous<S: ObjectStore + ?Sized>(
    store: &S,
    key: &str,
    previous: &OpenUpload,
) -> Result<std::result::Result<BTreeMap<PartNumber, JournaledPart>, ResumeOutcome>> {
    let url = object_url(store.bucket(), key);
    let id = &previous.upload_id;
    let listed = match store.list_parts(key, id).await {
        Ok(listed) => listed,
        Err(err) if err.kind() == ErrorKind::NoSuchUpload => {
            tracing::warn!(%url, upload_id = %id, "the journaled upload is gone; starting over");
            return Ok(Err(ResumeOutcome::Vanished));
        }
        Err(err) => return Err(err),
    };
    let listed: BTreeMap<_, _> = listed.iter().map(|p| (p.part_number, p)).collect();
    let mut parts = BTreeMap::new();
    for part in &previous.parts {
        let agrees = listed
            .get(&part.number)
            .is_some_and(|l| l.size == part.size && same_etag(&l.etag, &part.etag));
        if !agrees {
            tracing::warn!(
                %url, upload_id = %id, part = part.number.get(),
                "the server's parts disagree with the journal; aborting the old upload"
            );
            if let Err(err) = store.abort_multipart(key, id).await {
                tracing::warn!(%url, upload_id = %id, error = %err, "cannot abort the old upload");
            }
            return Ok(Err(ResumeOutcome::Discarded));
        }
        parts.insert(part.number, part.clone());
    }
    Ok(Ok(parts))
}

/// ETags compare without their quotes (servers differ in quoting `ListParts` ETags).
fn same_etag(a: &str, b: &str) -> bool {
    a.trim_matches('"') == b.trim_matches('"')
}

/// The error for a regenerated part that differs from its journal entry.
pub(crate) fn mismatch(
    url: &str,
    id: &UploadId,
    part: &JournaledPart,
    size: u64,
    crc: &str,
) -> Error {
    Error::new(
        ErrorKind::ResumeMismatch,
        format!(
            "resuming {url} (upload id {id}): part {} of the regenerated stream ({size} bytes, CRC32C {crc}) differs from the one stored ({} bytes, CRC32C {}); the old upload was aborted",
            part.number, part.size, part.crc32c
        ),
    )
}

/// When to record the journal again: at most once a second, and only when the bytes stored
/// since the last record are at least 100 times what the record costs, so the journal stays
/// under 1% of the upload.
#[derive(Debug)]
pub(crate) struct JournalPace {
    last: Instant,
    bytes_since: u64,
    recorded_parts: usize,
}

/// About what one part costs in a journal record.
const BYTES_PER_RECORDED_PART: u64 = 100;
/// The shortest time between two records.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

impl JournalPace {
    pub(crate) fn new() -> Self {
        Self {
            last: Instant::now(),
            bytes_since: 0,
            recorded_parts: 0,
        }
    }

    /// A part of `len` bytes was stored.
    pub(crate) fn stored(&mut self, len: u64) {
        self.bytes_since += len;
    }

    /// Whether a record of `parts` parts is due now.
    pub(crate) fn due(&self, parts: usize) -> bool {
        parts > self.recorded_parts
            && self.last.elapsed() >= MIN_INTERVAL
            && self.bytes_since >= 100 * BYTES_PER_RECORDED_PART * parts as u64
    }

    /// A record of `parts` parts was written.
    pub(crate) fn recorded(&mut self, parts: usize) {
        self.last = Instant::now();
        self.bytes_since = 0;
        self.recorded_parts = parts;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_compare_without_quotes() {
        assert!(same_etag("\"abc\"", "abc"));
        assert!(!same_etag("\"abc\"", "\"abd\""));
    }

    #[test]
    fn the_pace_waits_a_second_and_keeps_the_journal_under_one_percent() {
        let mut pace = JournalPace::new();
        pace.stored(1 << 30);
        assert!(!pace.due(1), "within the first second");
        pace.last -= MIN_INTERVAL;
        assert!(pace.due(1));
        assert!(!pace.due(0), "nothing new to record");
        pace.recorded(1);
        pace.last -= MIN_INTERVAL;
        pace.stored(100 * BYTES_PER_RECORDED_PART * 1000 - 1);
        assert!(
            !pace.due(1000),
            "a 1,000-part record needs 10 MB stored since the last"
        );
        pace.stored(1);
        assert!(pace.due(1000));
    }
}

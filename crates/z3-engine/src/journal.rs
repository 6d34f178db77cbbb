//! The journal of an interrupted backup (ADR 4): one small JSON object per open upload,
//! `<prefix>.z3-journal/<dataset>@<snapshot>`, outside every snapshot listing.
//!
//! It names the upload (id and token), what must be the same for the next run to continue it
//! ([`Identity`]: the key, the snapshot's guid and its parent's, the send flags, the encoding
//! and the part-size schedule), and each part known to be stored with its length, CRC32C and
//! ETag. `z3 backup` writes it through [`z3_s3::MultipartUploader::upload_resumable`], deletes
//! it when the object is complete, and on the next run continues the upload only if the
//! identity is equal; otherwise it aborts the upload the journal names and deletes the journal.
//! `z3_mp_cleanup` leaves journaled uploads alone for [`RESUME_WINDOW`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use z3_codec::{Compressor, Encoding};
use z3_s3::{
    ErrorKind, JournaledPart, ObjectStore, OpenUpload, PartNumber, PutOptions, RetryConfig,
    UploadId, UploadJournal,
};

use crate::config::SMALL_OBJECTS_STORAGE_CLASS;

/// The journal format this z3 writes and reads.
pub const FORMAT: u32 = 1;

/// How long `z3_mp_cleanup` leaves a journaled upload alone: a week, so that a backup that
/// failed on Friday can resume after the weekend. A bucket lifecycle rule that aborts incomplete
/// uploads sooner (`AbortIncompleteMultipartUpload`) defeats resume: set it to 8 days or more.
pub const RESUME_WINDOW: Duration = Duration::from_hours(7 * 24);

/// The most bytes a journal may have (10,000 parts of about 120 bytes, and room).
pub const MAX_JOURNAL_BYTES: u64 = 4 << 20;

/// What must be the same for an interrupted upload to be continued: the same key, snapshot
/// (guid) and base, `zfs send` flags, encoding and part-size schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The object key.
    pub key: String,
    /// The snapshot's guid.
    pub guid: u64,
    /// The base's guid (incrementals).
    pub parent_guid: Option<u64>,
    /// The `zfs send` flags, as recorded in the metadata.
    pub send_flags: String,
    /// The encoding ([`resumable_encoding`]).
    pub encoding: String,
    /// The starting part size asked for.
    pub part_size: u64,
    /// The size estimate.
    pub estimate: u64,
    /// The memory budget (it shapes the part sizes).
    pub memory_limit: u64,
}

/// The journal object's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// [`FORMAT`].
    pub format: u32,
    /// What the upload is of.
    #[serde(flatten)]
    pub identity: Identity,
    /// The open multipart upload.
    pub upload_id: String,
    /// The token the object will carry.
    pub token: String,
    /// The parts known to be stored: number, length, CRC32C (base64), ETag.
    pub parts: Vec<(u16, u64, String, String)>,
}

impl Journal {
    /// The journal of `upload`.
    #[must_use]
    pub fn new(identity: Identity, upload: &OpenUpload) -> Self {
        Self {
            format: FORMAT,
            identity,
            upload_id: upload.upload_id.as_str().to_owned(),
            token: upload.token.clone(),
            parts: (upload.parts.iter())
                .map(|p| (p.number.get(), p.size, p.crc32c.clone(), p.etag.clone()))
                .collect(),
        }
    }

    /// The open upload it names; `None` if a part number is out of range.
    #[must_use]
    pub fn open_upload(&self) -> Option<OpenUpload> {
        let parts = (self.parts.iter())
            .map(|(n, size, crc32c, etag)| {
                Some(JournaledPart {
                    number: PartNumber::new(*n)?,
                    size: *size,
                    crc32c: crc32c.clone(),
                    etag: etag.clone(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(OpenUpload {
            upload_id: UploadId::new(&self.upload_id),
            token: self.token.clone(),
            parts,
        })
    }

    /// Parses a journal; `None` for anything that is not one of [`FORMAT`].
    #[must_use]
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice::<Self>(bytes)
            .ok()
            .filter(|j| j.format == FORMAT)
    }
}

/// The encoding's description if a regenerated stream is the same bytes: no compression, or
/// in-process zstd (multi-threaded zstd output depends only on the input and the level; the
/// test `inproc::zstd_output_depends_only_on_the_input_level_and_threaded_mode` shows it). Not
/// resumable: age (a fresh file key per object), gpg, and programs (pigz, custom ones) whose
/// output z3 cannot vouch for.
#[must_use]
pub fn resumable_encoding(encoding: &Encoding) -> Option<String> {
    if encoding.encryption.is_some() {
        return None;
    }
    match encoding.compressor {
        Compressor::None => Some("none".to_owned()),
        Compressor::Zstd { level } => Some(format!("zstd-{level}-threaded")),
        _ => None,
    }
}

/// Reads the journal at `key`: `Ok(None)` if there is none, `Some(None)` inside for one that
/// cannot be parsed (another format: it is discarded).
///
/// # Errors
/// The store error of the last attempt.
pub async fn read(
    store: &dyn ObjectStore,
    key: &str,
    retry: &RetryConfig,
) -> z3_s3::Result<Option<Option<Journal>>> {
    let Some(bytes) = z3_s3::read_small(store, key, MAX_JOURNAL_BYTES, retry).await? else {
        return Ok(None);
    };
    Ok(Some(Journal::parse(&bytes)))
}

/// Aborts the upload `journal` names (if it is still open) and deletes the journal at `key`;
/// failures are logged: the upload then waits for `z3_mp_cleanup`.
pub async fn discard(
    store: &dyn ObjectStore,
    key: &str,
    journal: Option<&Journal>,
    retry: &RetryConfig,
) {
    if let Some(journal) = journal {
        let object = &journal.identity.key;
        let id = UploadId::new(&journal.upload_id);
        match z3_s3::retry(retry, "abort_multipart", || {
            store.abort_multipart(object, &id)
        })
        .await
        {
            Ok(()) => {
                tracing::info!(key = %object, upload_id = %id, "aborted the journaled upload");
            }
            Err(err) if err.kind() == ErrorKind::NoSuchUpload => {}
            Err(err) => {
                tracing::warn!(key = %object, upload_id = %id, error = %err, "cannot abort the journaled upload");
            }
        }
    }
    remove(store, key, retry).await;
}

/// Deletes the journal at `key`; a failure is logged (a journal whose upload is gone is
/// harmless: the next run finds the upload gone, `z3_mp_cleanup` deletes it).
pub async fn remove(store: &dyn ObjectStore, key: &str, retry: &RetryConfig) {
    if let Err(err) = z3_s3::retry(retry, "delete", || store.delete(key)).await
        && err.kind() != ErrorKind::NotFound
    {
        tracing::warn!(key, error = %err, "cannot delete the upload journal");
    }
}

/// Writes the journal of one upload to the bucket as it progresses.
pub struct S3Journal {
    /// The bucket.
    pub store: Arc<dyn ObjectStore>,
    /// The journal's key.
    pub key: String,
    /// What the upload is of.
    pub identity: Identity,
    /// Retries of each write.
    pub retry: RetryConfig,
}

impl std::fmt::Debug for S3Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Journal")
            .field("key", &self.key)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl UploadJournal for S3Journal {
    async fn record(&self, upload: &OpenUpload) -> z3_s3::Result<()> {
        let journal = Journal::new(self.identity.clone(), upload);
        let body = Bytes::from(serde_json::to_vec(&journal).map_err(|e| {
            z3_s3::Error::new(ErrorKind::Other, format!("cannot encode the journal: {e}"))
        })?);
        let options = PutOptions {
            storage_class: Some(SMALL_OBJECTS_STORAGE_CLASS.to_owned()),
            ..PutOptions::default()
        };
        z3_s3::retry(&self.retry, "put", || {
            self.store.put(&self.key, body.clone(), &options)
        })
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            key: "z3/pool/fs@s1".into(),
            guid: u64::MAX,
            parent_guid: None,
            send_flags: String::new(),
            encoding: "zstd-3-threaded".into(),
            part_size: 5 << 20,
            estimate: 1 << 30,
            memory_limit: 1 << 30,
        }
    }

    #[test]
    fn a_journal_round_trips_and_other_formats_are_refused() {
        let upload = OpenUpload {
            upload_id: UploadId::new("id-1"),
            token: "tok".into(),
            parts: vec![JournaledPart {
                number: PartNumber::new(2).unwrap(),
                size: 5 << 20,
                crc32c: "AAAAAA==".into(),
                etag: "\"e\"".into(),
            }],
        };
        let journal = Journal::new(identity(), &upload);
        let text = serde_json::to_vec(&journal).unwrap();
        let parsed = Journal::parse(&text).unwrap();
        assert_eq!(parsed, journal);
        assert_eq!(parsed.open_upload().unwrap(), upload);
        assert!(String::from_utf8_lossy(&text).contains("\"guid\":18446744073709551615"));
        let other = String::from_utf8_lossy(&text).replace("\"format\":1", "\"format\":2");
        assert!(Journal::parse(other.as_bytes()).is_none());
        assert!(Journal::parse(b"not json").is_none());
        let mut bad = journal;
        bad.parts[0].0 = 0;
        assert!(bad.open_upload().is_none());
    }

    #[test]
    fn only_deterministic_encodings_are_resumable() {
        let plain = |compressor| Encoding {
            compressor,
            encryption: None,
        };
        assert_eq!(
            resumable_encoding(&plain(Compressor::Zstd { level: 3 })).as_deref(),
            Some("zstd-3-threaded")
        );
        assert_eq!(
            resumable_encoding(&plain(Compressor::None)).as_deref(),
            Some("none")
        );
        assert_eq!(resumable_encoding(&plain(Compressor::Pigz1)), None);
        assert_eq!(resumable_encoding(&plain(Compressor::Gzip)), None);
        let age = Encoding {
            compressor: Compressor::Zstd { level: 3 },
            encryption: Some(
                z3_codec::AgeRecipients::parse(&[
                    "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
                ])
                .unwrap(),
            ),
        };
        assert_eq!(resumable_encoding(&age), None);
    }
}

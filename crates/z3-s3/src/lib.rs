//! S3 for z3: a narrow object-store trait, its aws-sdk-s3 adapter and in-memory fake, and the
//! retrying multipart uploader and parallel downloader built on top.
//!
//! # Overview
//!
//! - [`ObjectStore`]: the operations z3 needs (head, list, ranged get, put, delete, and
//!   stateless multipart calls). Errors carry an [`ErrorKind`] that says whether to retry.
//! - [`AwsStore`]: the real implementation over `aws-sdk-s3`, configured by [`S3Config`], with
//!   the SDK's retries disabled and its errors mapped onto [`ErrorKind`].
//! - [`MemoryStore`]: an in-memory bucket that enforces S3's multipart rules, always built so
//!   that other crates can use it in their tests and examples, and `FaultyStore` (feature
//!   `testing`): a decorator that fails chosen calls.
//! - [`MultipartUploader`]: streams an `AsyncRead` (a `zfs send`, possibly compressed) into one
//!   object with bounded memory, part sizes that grow so any stream up to 5 TiB fits
//!   ([`PartSizer`]), CRC32C-verified parts and object ([`Crc32c`]), per-part retries and an
//!   abort on any failure.
//! - [`Downloader`]: parallel ranged GETs delivered in order, resuming bodies cut short.
//! - [`part_size()`] / [`parse_size`]: the original tool's part-size rule and size syntax, pure;
//!   [`PartSizer`]: the per-part schedule built on it.
//! - [`RetryConfig`], [`Backoff`], [`retry()`]: the single retry policy.
//! - Versions and Object Lock (immutable backups): [`PutOptions::object_lock`] writes a
//!   [`Retention`]; [`ObjectStore::list_versions`] shows versions and delete markers
//!   ([`hidden_versions`]: what a delete marker hides), [`Downloader::reader_version`] reads
//!   one, [`extend_retention`] moves a retention later (never earlier),
//!   [`ObjectStore::object_lock_config`] says whether a bucket can do any of it, and
//!   [`ErrorKind::Locked`] is what S3 answers when Object Lock protects a version.
//! - `conformance` (feature `testing`): checks every store must pass, run against
//!   [`MemoryStore`] always and against a real server when `Z3_TEST_S3_ENDPOINT` is set.
//!
//! The test doubles, `FaultyStore` and `conformance`, are behind the `testing` feature (off by
//! default): `z3-s3 = { version = "…", features = ["testing"] }` under `[dev-dependencies]`.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use z3_s3::{
//!     DownloadConfig, Downloader, MemoryStore, MultipartUploader, ObjectStore, PutOptions,
//!     UploadConfig,
//! };
//!
//! let store = Arc::new(MemoryStore::new("backups"));
//! let uploader = MultipartUploader::new(Arc::clone(&store), UploadConfig::default());
//! let options = PutOptions {
//!     metadata: [("isfull".to_owned(), "true".to_owned())].into(),
//!     ..PutOptions::default()
//! };
//! let stream: &[u8] = b"pretend this is a zfs send stream";
//! let report = uploader.upload("z3/pool/fs@snap1", &options, stream).await?;
//! assert_eq!(report.bytes, stream.len() as u64);
//! assert_eq!(store.open_uploads(), 0);
//!
//! let info = store.head("z3/pool/fs@snap1").await?;
//! assert_eq!(info.metadata["isfull"], "true");
//!
//! let downloader = Downloader::new(store, DownloadConfig::default());
//! let mut restored = Vec::new();
//! downloader.download_to("z3/pool/fs@snap1", info.size, info.etag.as_deref(), &mut restored).await?;
//! assert_eq!(restored, stream);
//! # Ok::<(), z3_s3::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Why our own trait (not `object_store`)?
//!
//! The `object_store` crate has a ready-made trait, an in-memory store and multipart support,
//! and was the serious alternative. We did not take it because its retries happen inside its
//! HTTP client where z3 cannot see or test them, it talks to S3 through reqwest instead of
//! `aws-config`'s credential chain (profiles, SSO, IMDS, credential processes), and the part that
//! makes backups safe — retrying parts, aborting on every failure, bounding memory, confirming a
//! completion whose response was lost — is exactly what z3 must own and test. A trait with only
//! the calls z3 makes keeps the fake small enough to be exact about S3's rules, and the
//! stateless multipart shape (key, upload id and part number on every call) makes per-part retry
//! and fault injection simple.
//!
//! # Invariants
//!
//! - `AwsStore` never retries; one call is one HTTP attempt. Retries live in [`retry()`] and
//!   [`MultipartUploader`].
//! - A failed [`MultipartUploader::upload`] leaves no object and no open upload (unless the
//!   abort itself fails, which is logged); an object whose checksum does not match the bytes
//!   read is deleted.
//! - Every part's bytes are hashed once (CRC32C, while they are read); the SDK adds no second
//!   checksum and no payload SHA-256 (see [`AwsStore`]).
//! - Error messages name the operation and object and never contain credentials.

#![deny(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod aws;
pub mod bandwidth;
mod checksum;
#[cfg(feature = "testing")]
pub mod conformance;
mod download;
mod error;
#[cfg(feature = "testing")]
mod faulty;
mod memory;
mod part_size;
mod pool;
mod resume;
mod retry;
mod sink;
mod store;
mod transfer;
mod unhidden;
mod upload;
mod versions;

pub use aws::{AwsStore, MAX_S3_TIMEOUT_SECS, S3Config, S3Settings, Sse, StaticCredentials};
pub use bandwidth::Bandwidth;
pub use checksum::{Crc32c, composite_crc32c};
pub use download::{DownloadChunks, DownloadConfig, DownloadReader, Downloader};
pub use error::{Error, ErrorKind, Result};
#[cfg(feature = "testing")]
pub use faulty::{ChecksumReply, FaultyStore};
pub use memory::{MemoryObject, MemoryStore};
pub use part_size::{
    CONSTANT_PHASE_PARTS, DEFAULT_MEMORY_LIMIT, MAX_OBJECT_SIZE, MAX_PART_SIZE, MAX_PARTS, MIB,
    MIN_MEMORY_LIMIT, MIN_PART_SIZE, ParseSizeError, PartGrowth, PartSizer, estimate_headroom,
    parse_size, part_size,
};
pub use pool::BufferPool;
pub use resume::{
    JournaledPart, MemoryJournal, OpenUpload, Resumable, ResumeOutcome, UploadJournal,
};
pub use retry::{
    Backoff, RetryConfig, head_checksum_with_retry, head_with_retry, list_uploads_with_retry,
    list_with_retry, read_small, retry,
};
pub use sink::{PIPE_SIZE, ThreadWriter, grow_pipe};
pub use store::{
    BucketLockConfig, CompletedPart, CompletedUpload, ListEntry, ListedPart, MultipartUploadInfo,
    ObjectInfo, ObjectStore, Op, PartNumber, Precondition, PutOptions, Retention, RetentionMode,
    RetentionPeriod, UploadId, VersionEntry, Versioning, is_archive_class,
};
pub use transfer::{MAX_CONCURRENCY, Transfer, TransferSettings, check_part_budget};
pub use unhidden::{Unhidden, delete_all_versions};
pub use upload::{
    BeforeComplete, MultipartUploader, PartsDone, UPLOAD_TOKEN_META, UploadConfig, UploadReport,
};
pub use versions::{RetentionChange, extend_retention, hidden_versions, list_versions_with_retry};

//! The [`ObjectStore`] trait and the plain data types that cross it.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU16;
use std::ops::Range;
use std::time::SystemTime;

use bytes::Bytes;

use crate::checksum::Crc32c;
use crate::error::Result;

/// Whether objects of `storage_class` must be restored from an archive before they can be
/// read (S3 answers `GetObject` with `InvalidObjectState`): `GLACIER` (Flexible Retrieval) and
/// `DEEP_ARCHIVE`. `GLACIER_IR` is read like any other class.
#[must_use]
pub fn is_archive_class(storage_class: &str) -> bool {
    matches!(storage_class, "GLACIER" | "DEEP_ARCHIVE")
}

/// What [`ObjectStore::head`] reports about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object key.
    pub key: String,
    /// Length in bytes (`Content-Length`).
    pub size: u64,
    /// The ETag as the server sent it, quotes included.
    pub etag: Option<String>,
    /// User metadata (`x-amz-meta-*`), keys without the prefix and lowercased by S3.
    pub metadata: BTreeMap<String, String>,
    /// The storage class, when the server reports one (AWS omits it for `STANDARD`).
    pub storage_class: Option<String>,
    /// The object's CRC32C as the server reports it: `base64-N` (composite) for multipart
    /// objects. Usually only filled by [`ObjectStore::head_checksum`].
    pub checksum_crc32c: Option<String>,
    /// `Last-Modified`, in seconds since the Unix epoch, when the server reports it.
    pub last_modified: Option<i64>,
    /// Object Lock: the retain-until date (seconds since the Unix epoch) of this version, when
    /// it has one; it cannot be deleted before then.
    pub retain_until: Option<i64>,
    /// Object Lock: a legal hold is on; it cannot be deleted until it is lifted.
    pub legal_hold: bool,
    /// Object Lock: the retention mode that goes with [`retain_until`](Self::retain_until).
    pub retention_mode: Option<RetentionMode>,
    /// The version id the server reports (`x-amz-version-id`): a real id on a versioned
    /// bucket, `"null"` or `None` on one that never had versioning.
    pub version_id: Option<String>,
}

impl ObjectInfo {
    /// Whether Object Lock forbids deleting this version at `now` (Unix seconds): a legal hold,
    /// or a retain-until date still in the future (in either mode: z3 never bypasses
    /// governance retention).
    #[must_use]
    pub fn is_locked_at(&self, now: i64) -> bool {
        self.legal_hold || self.retain_until.is_some_and(|until| until > now)
    }
}

/// An Object Lock retention mode (`x-amz-object-lock-mode`).
///
/// Both keep a version from being deleted or overwritten until its retain-until date; the
/// difference is who can undo that. `Governance` can be shortened or removed by a principal
/// with `s3:BypassGovernanceRetention` that sends `x-amz-bypass-governance-retention: true`
/// (z3 never sends it); `Compliance` cannot be shortened by anyone, the root account included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RetentionMode {
    /// `GOVERNANCE`.
    Governance,
    /// `COMPLIANCE`: strictly stronger than `Governance`.
    Compliance,
}

impl RetentionMode {
    /// The wire form: `GOVERNANCE` or `COMPLIANCE`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Governance => "GOVERNANCE",
            Self::Compliance => "COMPLIANCE",
        }
    }

    /// `governance` or `compliance`, in any case (the wire form and z3's `OBJECT_LOCK` setting).
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "governance" => Some(Self::Governance),
            "compliance" => Some(Self::Compliance),
            _ => None,
        }
    }
}

impl fmt::Display for RetentionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An Object Lock retention: a mode and the date (Unix seconds, whole seconds as S3 stores
/// them) before which the version cannot be deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Retention {
    /// Who could shorten it (nobody, for `Compliance`).
    pub mode: RetentionMode,
    /// Retain until this time, in seconds since the Unix epoch; must be in the future when set.
    pub retain_until: i64,
}

impl Retention {
    /// Whether replacing `current` by `self` only ever strengthens it: not earlier, and not
    /// from `Compliance` down to `Governance`. S3 refuses anything else without a bypass.
    #[must_use]
    pub fn extends(&self, current: &Self) -> bool {
        self.retain_until >= current.retain_until && self.mode >= current.mode
    }
}

/// One entry of [`ObjectStore::list_versions`]: a version of an object or a delete marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionEntry {
    /// The object key.
    pub key: String,
    /// The version id; `"null"` for the version written while versioning was off or suspended.
    pub version_id: String,
    /// Whether this is the key's current version. A key whose latest entry is a delete marker
    /// is hidden from [`ObjectStore::list`] and [`ObjectStore::head`], while its older versions
    /// are still stored and readable by id.
    pub is_latest: bool,
    /// Whether this entry is a delete marker (no data: `size` is 0, `etag` is `None`).
    pub is_delete_marker: bool,
    /// Length in bytes.
    pub size: u64,
    /// `LastModified`, in seconds since the Unix epoch, when the server reports it.
    pub last_modified: Option<i64>,
    /// The ETag, quotes included, for data versions.
    pub etag: Option<String>,
}

/// Whether a bucket keeps versions (`GetBucketVersioning`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Versioning {
    /// Versioning was never enabled: a put replaces, a delete removes.
    Unversioned,
    /// Every put adds a version; a delete without a version id adds a delete marker.
    Enabled,
    /// Versioning was enabled and then suspended: older versions stay, new writes replace the
    /// `"null"` version.
    Suspended,
}

/// How long the bucket's default retention keeps a new version (`DefaultRetention`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetentionPeriod {
    /// `Days`.
    Days(u32),
    /// `Years`.
    Years(u32),
}

/// What [`ObjectStore::object_lock_config`] reports about the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketLockConfig {
    /// The bucket's versioning state.
    pub versioning: Versioning,
    /// Whether Object Lock is enabled (`ObjectLockEnabled: Enabled`). S3 allows it only on
    /// versioned buckets, and it cannot be turned off again.
    pub object_lock: bool,
    /// The retention every new version gets when a write names none.
    pub default_retention: Option<(RetentionMode, RetentionPeriod)>,
}

impl BucketLockConfig {
    /// Whether versions can be written with a retention: Object Lock on and versioning
    /// enabled. z3 refuses `OBJECT_LOCK=…` on any other bucket.
    #[must_use]
    pub fn supports_retention(&self) -> bool {
        self.object_lock && self.versioning == Versioning::Enabled
    }
}

/// One entry of [`ObjectStore::list`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListEntry {
    /// The object key.
    pub key: String,
    /// Length in bytes.
    pub size: u64,
    /// `LastModified`, in seconds since the Unix epoch, when the server reports it.
    pub last_modified: Option<i64>,
    /// The ETag as the listing reports it, quotes included, when the server sends one. Together
    /// with the key and `last_modified` it tells whether an object changed since it was last
    /// read (a replaced object gets a new `LastModified`, and new content a new ETag).
    pub etag: Option<String>,
}

/// Headers set when an object is created, by [`ObjectStore::put`] or [`ObjectStore::create_multipart`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PutOptions {
    /// User metadata, sent as `x-amz-meta-<key>: <value>`.
    /// Keys should be lowercase ASCII: S3 lowercases them anyway.
    pub metadata: BTreeMap<String, String>,
    /// `x-amz-storage-class`, e.g. `STANDARD_IA`; `None` leaves the bucket default.
    pub storage_class: Option<String>,
    /// Canned ACL (`x-amz-acl`), e.g. `bucket-owner-full-control`; `None` sends no ACL.
    pub acl: Option<String>,
    /// [`ObjectStore::put`] only: create the object only if the key is free
    /// (`If-None-Match: *`); an existing object makes the put fail with
    /// [`ErrorKind::AlreadyExists`](crate::ErrorKind::AlreadyExists). Atomic on the server:
    /// of two racing puts, one fails.
    pub if_none_match: bool,
    /// [`ObjectStore::put`] only: replace the object only if it still has this ETag
    /// (`If-Match: "<etag>"`, quotes included as the server sent them); another ETag fails the
    /// put with [`ErrorKind::AlreadyExists`](crate::ErrorKind::AlreadyExists) (HTTP 412) and a
    /// missing object with [`ErrorKind::NotFound`](crate::ErrorKind::NotFound). Setting it
    /// together with [`if_none_match`](Self::if_none_match) is an
    /// [`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest).
    pub if_match: Option<String>,
    /// Object Lock retention for the new version (`x-amz-object-lock-mode` and
    /// `x-amz-object-lock-retain-until-date`), on [`ObjectStore::put`] and
    /// [`ObjectStore::create_multipart`]. Only an Object Lock bucket accepts it
    /// ([`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest) elsewhere); `None` leaves
    /// the bucket's default retention, if it has one.
    pub object_lock: Option<Retention>,
}

impl PutOptions {
    /// The write condition these options ask of a put.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest) when both
    /// `if_none_match` and `if_match` are set: no object can satisfy both.
    pub fn precondition(&self) -> Result<Precondition> {
        match (self.if_none_match, &self.if_match) {
            (false, None) => Ok(Precondition::None),
            (true, None) => Ok(Precondition::KeyFree),
            (false, Some(etag)) => Ok(Precondition::Unchanged(etag.clone())),
            (true, Some(etag)) => Err(crate::Error::new(
                crate::ErrorKind::InvalidRequest,
                format!("put options ask for both If-None-Match: * and If-Match: {etag}"),
            )),
        }
    }
}

/// What the object at a key must be for a completion to take effect (`If-None-Match` /
/// `If-Match`); a failed condition is [`ErrorKind::AlreadyExists`](crate::ErrorKind::AlreadyExists)
/// (HTTP 412) or, for [`Precondition::Unchanged`] on a missing key,
/// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound), and is never retried.
///
/// Servers that ignore the headers complete unconditionally.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Precondition {
    /// No condition.
    #[default]
    None,
    /// The key must be free (`If-None-Match: *`).
    KeyFree,
    /// The key must still hold the object with this ETag, quotes included (`If-Match`): a
    /// replacement of exactly the object that was inspected.
    Unchanged(String),
}

/// The id S3 hands out for a multipart upload.
///
/// A newtype so that an upload id cannot be passed where a key is expected.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(String);

impl UploadId {
    /// Wraps an id returned by the server.
    #[must_use]
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as sent on the wire.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A multipart part number, `1..=10_000` as S3 requires.
///
/// The bounds are checked once, in [`PartNumber::new`], so code holding a `PartNumber`
/// never has to re-validate it ("express preconditions in types").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartNumber(NonZeroU16);

impl PartNumber {
    /// The first part.
    pub const FIRST: Self = Self(NonZeroU16::MIN);
    /// The last part number S3 accepts.
    pub const MAX: Self = match NonZeroU16::new(crate::part_size::MAX_PARTS) {
        Some(n) => Self(n),
        None => panic!("MAX_PARTS is not zero"),
    };

    /// Returns `None` unless `1 <= n <= 10_000`.
    #[must_use]
    pub fn new(n: u16) -> Option<Self> {
        if n > Self::MAX.get() {
            return None;
        }
        NonZeroU16::new(n).map(Self)
    }

    /// The number as sent on the wire.
    #[must_use]
    pub fn get(self) -> u16 {
        self.0.get()
    }

    /// The following part number, or `None` after [`PartNumber::MAX`].
    #[must_use]
    pub fn next(self) -> Option<Self> {
        Self::new(self.get().checked_add(1)?)
    }
}

impl fmt::Display for PartNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A part that was uploaded, as needed by [`ObjectStore::complete_multipart`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    /// Which part this is.
    pub part_number: PartNumber,
    /// The ETag the server returned for the part, quotes included.
    pub etag: String,
    /// The part's CRC32C in wire form (base64 of the big-endian value), as the server
    /// confirmed it or, when the server does not echo it, as we sent it. S3 needs it back at
    /// completion for uploads created with a checksum algorithm.
    pub checksum_crc32c: Option<String>,
}

/// What [`ObjectStore::complete_multipart`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedUpload {
    /// The object's ETag, quotes included.
    pub etag: String,
    /// The object's composite CRC32C (`base64-N`) when the server reports it in the response.
    pub checksum_crc32c: Option<String>,
}

/// An open multipart upload, as listed by [`ObjectStore::list_multipart_uploads`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartUploadInfo {
    /// The key the upload will create.
    pub key: String,
    /// Its id, for [`ObjectStore::abort_multipart`].
    pub upload_id: UploadId,
    /// When it was started, if the server says.
    pub initiated: Option<SystemTime>,
}

/// A part of an open multipart upload, as listed by [`ObjectStore::list_parts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPart {
    /// Its number.
    pub part_number: PartNumber,
    /// Its length in bytes.
    pub size: u64,
    /// Its ETag, quotes included, as `UploadPart` returned it.
    pub etag: String,
}

/// The operations of [`ObjectStore`], for call counters and fault injection.
#[allow(missing_docs)] // Each variant is the trait method of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    CheckBucket,
    Head,
    HeadChecksum,
    List,
    GetRange,
    Put,
    Delete,
    CreateMultipart,
    PutPart,
    CompleteMultipart,
    AbortMultipart,
    ListMultipartUploads,
    ListParts,
    ListVersions,
    HeadVersion,
    GetRangeVersion,
    DeleteVersion,
    PutRetention,
    ObjectLockConfig,
}

impl Op {
    /// The trait method's name, used in messages.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CheckBucket => "check_bucket",
            Self::Head => "head",
            Self::HeadChecksum => "head_checksum",
            Self::List => "list",
            Self::GetRange => "get_range",
            Self::Put => "put",
            Self::Delete => "delete",
            Self::CreateMultipart => "create_multipart",
            Self::PutPart => "put_part",
            Self::CompleteMultipart => "complete_multipart",
            Self::AbortMultipart => "abort_multipart",
            Self::ListMultipartUploads => "list_multipart_uploads",
            Self::ListParts => "list_parts",
            Self::ListVersions => "list_versions",
            Self::HeadVersion => "head_version",
            Self::GetRangeVersion => "read_range_version",
            Self::DeleteVersion => "delete_version",
            Self::PutRetention => "put_retention",
            Self::ObjectLockConfig => "object_lock_config",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The object-store operations z3 needs, and nothing more.
///
/// Implementations map their native failures onto [`ErrorKind`](crate::ErrorKind) and never retry
/// on their own: retries belong to the caller ([`retry`](crate::retry()), [`MultipartUploader`](crate::MultipartUploader)),
/// so that one layer decides how often and how long to wait.
///
/// Multipart uploads are stateless on the client side (`object_store`'s `MultipartStore` shape):
/// each call names the key, the upload id and the part number explicitly, which makes per-part
/// retries trivial.
#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// The bucket this store talks to.
    fn bucket(&self) -> &str;

    /// Checks that the bucket exists and the credentials may use it (a `HeadBucket`).
    ///
    /// # Errors
    /// [`ErrorKind::NoSuchBucket`](crate::ErrorKind::NoSuchBucket), [`ErrorKind::AccessDenied`](crate::ErrorKind::AccessDenied)
    /// or [`ErrorKind::Unreachable`](crate::ErrorKind::Unreachable), with a message naming the bucket.
    async fn check_bucket(&self) -> Result<()>;

    /// Size, ETag, metadata and storage class of `key`.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when the key does not exist.
    async fn head(&self, key: &str) -> Result<ObjectInfo>;

    /// Like [`ObjectStore::head`], but asks the server for the object's checksum too
    /// (`x-amz-checksum-mode: ENABLED`), filling [`ObjectInfo::checksum_crc32c`] when it has one.
    ///
    /// A separate call because checksum mode can need more permissions than a plain `HEAD`
    /// (`kms:Decrypt` for KMS-encrypted objects). The default implementation is `head`.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when the key does not exist.
    async fn head_checksum(&self, key: &str) -> Result<ObjectInfo> {
        self.head(key).await
    }

    /// Every object whose key starts with `prefix`, all pages, sorted by key.
    ///
    /// # Errors
    /// Any store error; a missing bucket is [`ErrorKind::NoSuchBucket`](crate::ErrorKind::NoSuchBucket).
    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>>;

    /// Bytes `[range.start, range.end)` of `key`.
    ///
    /// The result may be *shorter* than asked when the body was cut short (or the object is
    /// shorter than `range.end`); callers resume from where it stopped. An empty range returns
    /// empty bytes without a request.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when the key does not exist,
    /// [`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest) when `range.start` is past the end.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes>;

    /// [`get_range`](Self::get_range) as the pieces the body arrived in, appended to `out`
    /// without copying them; returns how many bytes were appended (possibly fewer than asked,
    /// as for `get_range`). On an error `out` may have grown by a partial body; callers
    /// truncate. With `if_match`, only from the object with that ETag (`If-Match`), so the
    /// ranges of one download never come from two objects.
    ///
    /// The default checks `if_match` with a `head` and then calls `get_range` (not atomic);
    /// stores that read a body incrementally or can check atomically override it.
    ///
    /// # Errors
    /// As [`get_range`](Self::get_range); [`ErrorKind::AlreadyExists`](crate::ErrorKind::AlreadyExists)
    /// (HTTP 412) when the key holds an object with another ETag.
    async fn read_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
        out: &mut Vec<Bytes>,
    ) -> Result<u64> {
        if let Some(wanted) = if_match {
            let info = self.head(key).await?;
            if info.etag.as_deref() != Some(wanted) {
                return Err(crate::Error::new(
                    crate::ErrorKind::AlreadyExists,
                    format!(
                        "get_range {}: PreconditionFailed: ETag {:?}, not {wanted} (If-Match)",
                        object_url(self.bucket(), key),
                        info.etag
                    ),
                ));
            }
        }
        let bytes = self.get_range(key, range).await?;
        let len = bytes.len() as u64;
        if len > 0 {
            out.push(bytes);
        }
        Ok(len)
    }

    /// Stores `body` under `key` in one request and returns the ETag.
    ///
    /// # Errors
    /// Any store error.
    async fn put(&self, key: &str, body: Bytes, options: &PutOptions) -> Result<String>;

    /// Deletes `key`. Deleting a missing key succeeds, as in S3.
    ///
    /// # Errors
    /// Any store error.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Deletes `key` only if it holds an object with ETag `etag` (`If-Match`), atomically on
    /// the server. Servers that ignore the header delete unconditionally.
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`](crate::ErrorKind::AlreadyExists) (HTTP 412) when the key
    /// holds another object; [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when it holds
    /// none (AWS answers 404 then; servers that answer 204 succeed).
    async fn delete_if_match(&self, key: &str, etag: &str) -> Result<()>;

    /// Starts a multipart upload for `key`; the headers in `options` apply to the final object.
    ///
    /// # Errors
    /// Any store error.
    async fn create_multipart(&self, key: &str, options: &PutOptions) -> Result<UploadId>;

    /// Uploads one part whose CRC32C is `checksum` (computed by the caller, once, from `body`);
    /// the server verifies the body against it. Uploading the same part number again replaces it.
    ///
    /// # Errors
    /// [`ErrorKind::NoSuchUpload`](crate::ErrorKind::NoSuchUpload) after an abort or completion;
    /// [`ErrorKind::Transient`](crate::ErrorKind::Transient) (`BadDigest`) when the bytes that
    /// arrived do not match `checksum`.
    async fn put_part(
        &self,
        key: &str,
        upload_id: &UploadId,
        part: PartNumber,
        body: Bytes,
        checksum: Crc32c,
    ) -> Result<CompletedPart>;

    /// Assembles the object from `parts` (ascending part numbers, each with the checksum it was
    /// uploaded with), provided the key satisfies `precondition`, and returns its ETag and
    /// composite checksum.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest) for parts out of order, a wrong ETag
    /// or checksum, or a non-last part under 5 MiB; [`ErrorKind::NoSuchUpload`](crate::ErrorKind::NoSuchUpload) for an unknown upload;
    /// a failed [`Precondition`] as described there (the upload stays open).
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
        precondition: &Precondition,
    ) -> Result<CompletedUpload>;

    /// Discards an upload and its parts.
    ///
    /// # Errors
    /// [`ErrorKind::NoSuchUpload`](crate::ErrorKind::NoSuchUpload) when it is already gone.
    async fn abort_multipart(&self, key: &str, upload_id: &UploadId) -> Result<()>;

    /// Open multipart uploads whose key starts with `prefix`, all pages.
    ///
    /// # Errors
    /// Any store error.
    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>>;

    /// The parts stored so far for an open multipart upload (`ListParts`), all pages, in
    /// ascending order. Servers report no part checksums here (SeaweedFS does not), so a resumed
    /// upload proves its parts by what it recorded itself and uses this only to check that
    /// they are still there, with the same length and ETag.
    ///
    /// # Errors
    /// [`ErrorKind::NoSuchUpload`](crate::ErrorKind::NoSuchUpload) when the upload is gone
    /// (completed, aborted, or never existed).
    async fn list_parts(&self, key: &str, upload_id: &UploadId) -> Result<Vec<ListedPart>>;

    // ---- Versions and Object Lock (immutable backups). On a bucket without versioning every
    // key has exactly one version, `"null"`, and these calls work on it.

    /// Whether the bucket is versioned and has Object Lock enabled, and its default retention
    /// (`GetBucketVersioning` and `GetObjectLockConfiguration`).
    ///
    /// # Errors
    /// Any store error; a missing bucket is [`ErrorKind::NoSuchBucket`](crate::ErrorKind::NoSuchBucket).
    /// A bucket without an Object Lock configuration is not an error (`object_lock: false`).
    async fn object_lock_config(&self) -> Result<BucketLockConfig>;

    /// Every version and delete marker whose key starts with `prefix`, all pages, in S3's
    /// order: by key, and each key's entries newest first (the first one is the latest).
    ///
    /// # Errors
    /// Any store error; a missing bucket is [`ErrorKind::NoSuchBucket`](crate::ErrorKind::NoSuchBucket).
    async fn list_versions(&self, prefix: &str) -> Result<Vec<VersionEntry>>;

    /// [`head`](Self::head) of one version, whether current or not, with its retention
    /// ([`ObjectInfo::retention_mode`], [`ObjectInfo::retain_until`]) and legal hold.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) for an unknown version;
    /// [`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest) for a delete marker
    /// (S3 answers `405 MethodNotAllowed`).
    async fn head_version(&self, key: &str, version_id: &str) -> Result<ObjectInfo>;

    /// [`read_range`](Self::read_range) of one version: readable even when a delete marker
    /// hides the key, which is how a restore gets at a backup someone "deleted" on a versioned
    /// bucket. A version never changes, so no `If-Match` is needed.
    ///
    /// # Errors
    /// As [`get_range`](Self::get_range), [`ErrorKind::NotFound`](crate::ErrorKind::NotFound)
    /// for an unknown version.
    async fn read_range_version(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
        out: &mut Vec<Bytes>,
    ) -> Result<u64>;

    /// Deletes one version (or delete marker) for good. Never bypasses governance retention.
    /// Deleting a version that does not exist succeeds, as in S3.
    ///
    /// # Errors
    /// [`ErrorKind::Locked`](crate::ErrorKind::Locked) when Object Lock protects the version (a
    /// retain-until date in the future, in either mode, or a legal hold); S3 answers those with
    /// `403 AccessDenied`, which [`AwsStore`](crate::AwsStore) tells apart from a missing
    /// permission by reading the version's retention.
    async fn delete_version(&self, key: &str, version_id: &str) -> Result<()>;

    /// Sets the retention of one version (`PutObjectRetention`), without bypass: S3 accepts
    /// only a retention that [`extends`](Retention::extends) the current one. Callers that
    /// want "at least until" use [`extend_retention`](crate::extend_retention), which reads
    /// the version first and leaves a longer retention alone.
    ///
    /// # Errors
    /// [`ErrorKind::Locked`](crate::ErrorKind::Locked) when `retention` would shorten or weaken
    /// the current one; [`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest) on a
    /// bucket without Object Lock or for a date in the past.
    async fn put_retention(&self, key: &str, version_id: &str, retention: Retention) -> Result<()>;
}

/// Formats `s3://bucket/key` for messages.
pub(crate) fn object_url(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_number_bounds() {
        assert_eq!(PartNumber::new(0), None);
        assert_eq!(PartNumber::new(1), Some(PartNumber::FIRST));
        assert_eq!(PartNumber::new(10_000).unwrap().get(), 10_000);
        assert_eq!(PartNumber::new(10_001), None);
        assert_eq!(PartNumber::new(u16::MAX), None);
        assert_eq!(PartNumber::MAX.get(), 10_000);
        assert_eq!(PartNumber::FIRST.next().unwrap().get(), 2);
        assert_eq!(PartNumber::MAX.next(), None);
    }

    #[test]
    fn upload_id_round_trip() {
        let id = UploadId::new("abc");
        assert_eq!(id.as_str(), "abc");
        assert_eq!(id.to_string(), "abc");
    }
}

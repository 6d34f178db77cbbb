//! [`MemoryStore`]: an in-memory [`ObjectStore`] that enforces S3's multipart rules and models
//! versioning and Object Lock.
//!
//! Unlike the test doubles behind the `testing` feature (`FaultyStore`, `conformance`), it is
//! public and always built: embedders want an in-memory store for their own tests and examples.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};

use crate::checksum::{Crc32c, composite_crc32c};
use crate::error::{Error, ErrorKind, Result};
use crate::part_size::MIN_PART_SIZE;
use crate::store::{
    BucketLockConfig, CompletedPart, CompletedUpload, ListEntry, ListedPart, MultipartUploadInfo,
    ObjectInfo, ObjectStore, Op, PartNumber, Precondition, PutOptions, Retention, RetentionMode,
    RetentionPeriod, UploadId, VersionEntry, Versioning, object_url,
};

/// The version id S3 gives what is written while versioning is off or suspended.
const NULL_VERSION: &str = "null";

/// One stored object version, as returned by [`MemoryStore::object_details`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryObject {
    /// The object's bytes.
    pub data: Bytes,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
    /// Storage class given at creation.
    pub storage_class: Option<String>,
    /// Canned ACL given at creation.
    pub acl: Option<String>,
    /// The ETag, quoted; multipart objects get an `"…-N"` ETag like S3's.
    pub etag: String,
    /// The composite CRC32C (`base64-N`) of a multipart object; `None` for objects stored
    /// with [`ObjectStore::put`] or [`MemoryStore::insert`].
    pub checksum_crc32c: Option<String>,
    /// When it was stored, in seconds since the Unix epoch: the store's time
    /// ([`MemoryStore::set_time`]), or the system clock.
    pub last_modified: i64,
    /// The version id: `"null"` unless versioning is enabled.
    pub version_id: String,
    /// Object Lock retention, from the write or the bucket's default, as extended since.
    pub retention: Option<Retention>,
    /// Object Lock legal hold ([`MemoryStore::set_legal_hold`]).
    pub legal_hold: bool,
}

impl MemoryObject {
    /// Why Object Lock forbids deleting this version at `now`, if it does.
    fn lock_at(&self, now: i64) -> Option<String> {
        let mut why = Vec::new();
        if let Some(retention) = self.retention.filter(|r| r.retain_until > now) {
            why.push(format!(
                "{} retention until {}",
                retention.mode, retention.retain_until
            ));
        }
        if self.legal_hold {
            why.push("a legal hold".to_owned());
        }
        (!why.is_empty()).then(|| why.join(" and "))
    }
}

/// One entry of a key's history: an object version or a delete marker.
#[derive(Debug, Clone)]
struct Version {
    id: String,
    last_modified: i64,
    /// `None` for a delete marker.
    object: Option<MemoryObject>,
}

#[derive(Debug)]
struct Upload {
    key: String,
    options: PutOptions,
    parts: BTreeMap<PartNumber, StoredPart>,
    initiated: SystemTime,
}

#[derive(Debug)]
struct StoredPart {
    body: Bytes,
    etag: String,
    checksum: Crc32c,
}

#[derive(Debug)]
struct State {
    bucket_exists: bool,
    deny_access: bool,
    /// Every key's versions and delete markers, oldest first.
    keys: BTreeMap<String, Vec<Version>>,
    versioning: Versioning,
    object_lock: bool,
    default_retention: Option<(RetentionMode, RetentionPeriod)>,
    next_version: u64,
    uploads: BTreeMap<UploadId, Upload>,
    next_upload: u64,
    calls: BTreeMap<Op, u64>,
    /// The time new objects get, when a test fixed it.
    time: Option<i64>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            bucket_exists: true,
            deny_access: false,
            keys: BTreeMap::new(),
            versioning: Versioning::Unversioned,
            object_lock: false,
            default_retention: None,
            next_version: 0,
            uploads: BTreeMap::new(),
            next_upload: 0,
            calls: BTreeMap::new(),
            time: None,
        }
    }
}

impl State {
    /// Seconds since the Unix epoch for a new object, and the time retention is judged at.
    fn now(&self) -> i64 {
        self.time.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        })
    }

    /// The current object at `key`: its newest version, unless that is a delete marker.
    fn current(&self, key: &str) -> Option<&MemoryObject> {
        self.keys.get(key)?.last()?.object.as_ref()
    }

    fn current_mut(&mut self, key: &str) -> Option<&mut MemoryObject> {
        self.keys.get_mut(key)?.last_mut()?.object.as_mut()
    }

    fn version(&self, key: &str, version_id: &str) -> Option<&Version> {
        self.keys.get(key)?.iter().find(|v| v.id == version_id)
    }

    /// The id the next write gets: a fresh one on a versioned bucket, else `"null"`.
    fn next_id(&mut self) -> String {
        if self.versioning == Versioning::Enabled {
            self.next_version += 1;
            // Fixed width, so that ids sort by age like SeaweedFS's do; S3 promises no order.
            format!("v{:012}", self.next_version)
        } else {
            NULL_VERSION.to_owned()
        }
    }

    /// Adds a version (or, with `None`, a delete marker) as the key's newest, replacing the
    /// `"null"` version when versioning is off or suspended, as S3 does.
    fn push(&mut self, key: &str, object: Option<MemoryObject>) -> String {
        let id = self.next_id();
        let last_modified = object
            .as_ref()
            .map_or_else(|| self.now(), |o| o.last_modified);
        let object = object.map(|mut o| {
            o.version_id.clone_from(&id);
            o
        });
        let history = self.keys.entry(key.to_owned()).or_default();
        if id == NULL_VERSION {
            history.retain(|v| v.id != NULL_VERSION);
        }
        history.push(Version {
            id: id.clone(),
            last_modified,
            object,
        });
        id
    }

    /// The retention a new version gets: the one asked for, or the bucket's default.
    ///
    /// Errors as S3 answers them: a retention on a bucket without Object Lock, or one whose
    /// date has passed.
    /// `check_date` is off at a multipart completion: S3 checked the date when the upload was
    /// created.
    fn retention_for(
        &self,
        asked: Option<Retention>,
        check_date: bool,
    ) -> std::result::Result<Option<Retention>, String> {
        let now = self.now();
        match asked {
            Some(_) if !self.object_lock => {
                Err("InvalidRequest: Bucket is missing Object Lock Configuration".to_owned())
            }
            Some(retention) if check_date && retention.retain_until <= now => Err(format!(
                "InvalidArgument: the retain until date {} must be in the future (now {now})",
                retention.retain_until
            )),
            Some(retention) => Ok(Some(retention)),
            None => Ok(self.default_retention.map(|(mode, period)| {
                let days = match period {
                    RetentionPeriod::Days(days) => i64::from(days),
                    RetentionPeriod::Years(years) => 365 * i64::from(years),
                };
                Retention {
                    mode,
                    retain_until: now.saturating_add(days * 86_400),
                }
            })),
        }
    }
}

/// An in-memory bucket. Clones share the same state, so a test can keep one handle for
/// inspection while the code under test owns another.
///
/// It behaves like a strict S3 server (SeaweedFS is the reference) where z3 depends on it:
/// - at completion, every part but the last must be at least the minimum part size (5 MiB unless
///   built with [`MemoryStore::with_min_part_size`]), else `EntityTooSmall` ([`ErrorKind::InvalidRequest`]);
/// - parts must be listed in strictly ascending order (`InvalidPartOrder`) and each ETag must be
///   the one returned for that part (`InvalidPart`), both [`ErrorKind::InvalidRequest`];
/// - a part whose bytes do not match the CRC32C given with it is refused with `BadDigest`
///   ([`ErrorKind::Transient`], as [`AwsStore`](crate::AwsStore) maps it); at completion each
///   part's `checksum_crc32c`, when given, must be the one it was uploaded with (`InvalidPart`),
///   and the completion reports the composite CRC32C, which `head_checksum` reports too;
/// - after an abort or a completion the upload id is gone ([`ErrorKind::NoSuchUpload`]);
/// - ranged GETs past the end fail with `InvalidRange`, ranges reaching past the end are clipped.
///
/// Versioning and Object Lock ([`MemoryStore::versioned`], [`MemoryStore::with_object_lock`]),
/// as S3 does them:
/// - on a versioned bucket every write adds a version, and a delete without a version id adds
///   a delete marker that hides the key from `list`, `head` and `get_range` while its versions
///   stay listed by `list_versions` and readable by id; without versioning there is one
///   version, `"null"`, which writes replace and deletes remove;
/// - a retention needs an Object Lock bucket and a future date (else
///   [`ErrorKind::InvalidRequest`]); `delete_version` of a version under retention (either
///   mode: there is no bypass) or legal hold is [`ErrorKind::Locked`], and so is a
///   `put_retention` that would shorten a retention or turn compliance into governance;
///   retention is judged at the store's time ([`MemoryStore::set_time`]).
///
/// It also counts calls per [`Op`] and can pretend the bucket is missing or the credentials wrong.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    bucket: String,
    min_part_size: u64,
    state: Arc<Mutex<State>>,
}

impl MemoryStore {
    /// An empty, existing bucket named `bucket` with S3's 5 MiB minimum part size.
    #[must_use]
    pub fn new(bucket: impl Into<String>) -> Self {
        Self::with_min_part_size(bucket, MIN_PART_SIZE)
    }

    /// Like [`MemoryStore::new`] but with a smaller (or larger) minimum part size, so tests can
    /// exercise many parts (even the 10,000-part limit) with tiny inputs.
    #[must_use]
    pub fn with_min_part_size(bucket: impl Into<String>, min_part_size: u64) -> Self {
        Self {
            bucket: bucket.into(),
            min_part_size,
            state: Arc::default(),
        }
    }

    /// An empty bucket with versioning enabled (and no Object Lock).
    #[must_use]
    pub fn versioned(bucket: impl Into<String>) -> Self {
        let store = Self::new(bucket);
        store.lock().versioning = Versioning::Enabled;
        store
    }

    /// An empty bucket created with Object Lock enabled, which enables versioning too, and
    /// with `default_retention` for writes that name none.
    #[must_use]
    pub fn with_object_lock(
        bucket: impl Into<String>,
        default_retention: Option<(RetentionMode, RetentionPeriod)>,
    ) -> Self {
        let store = Self::versioned(bucket);
        let mut state = store.lock();
        state.object_lock = true;
        state.default_retention = default_retention;
        drop(state);
        store
    }

    /// A store whose bucket does not exist: every operation fails with [`ErrorKind::NoSuchBucket`].
    #[must_use]
    pub fn without_bucket(bucket: impl Into<String>) -> Self {
        let store = Self::new(bucket);
        store.lock().bucket_exists = false;
        store
    }

    /// While `deny` is true every operation fails with [`ErrorKind::AccessDenied`], as with a wrong secret.
    pub fn deny_access(&self, deny: bool) {
        self.lock().deny_access = deny;
    }

    /// Turns versioning on ([`Versioning::Enabled`]) or suspends it. Like S3, a bucket cannot
    /// go back to [`Versioning::Unversioned`], and an Object Lock bucket cannot be suspended:
    /// `false` then, and nothing changes.
    #[must_use = "false means the change was refused"]
    pub fn set_versioning(&self, versioning: Versioning) -> bool {
        let mut state = self.lock();
        let allowed = match versioning {
            Versioning::Unversioned => state.versioning == Versioning::Unversioned,
            Versioning::Enabled => true,
            Versioning::Suspended => !state.object_lock,
        };
        if allowed {
            state.versioning = versioning;
        }
        allowed
    }

    /// Puts a legal hold on (or lifts it from) one version, as `PutObjectLegalHold` would;
    /// `false` if there is no such object version or the bucket has no Object Lock.
    #[must_use = "false means there is no such version"]
    pub fn set_legal_hold(&self, key: &str, version_id: &str, on: bool) -> bool {
        let mut state = self.lock();
        if !state.object_lock {
            return false;
        }
        state
            .keys
            .get_mut(key)
            .and_then(|history| history.iter_mut().find(|v| v.id == version_id))
            .and_then(|v| v.object.as_mut())
            .map(|o| o.legal_hold = on)
            .is_some()
    }

    /// From now on, objects stored get `secs` (since the Unix epoch) as their last-modified time
    /// instead of the system clock's, and retention is judged at `secs`.
    pub fn set_time(&self, secs: i64) {
        self.lock().time = Some(secs);
    }

    /// Sets the last-modified time of an existing object; `false` if there is no such object.
    #[must_use = "false means there is no such object"]
    pub fn set_last_modified(&self, key: &str, secs: i64) -> bool {
        let mut state = self.lock();
        let found = state
            .current_mut(key)
            .map(|object| object.last_modified = secs)
            .is_some();
        if let Some(version) = state.keys.get_mut(key).and_then(|h| h.last_mut())
            && found
        {
            version.last_modified = secs;
        }
        found
    }

    /// Stores an object directly (no call is counted, no retention is checked), for seeding
    /// tests; on a versioned bucket it adds a version.
    pub fn insert(&self, key: impl Into<String>, data: impl Into<Bytes>, options: &PutOptions) {
        let data = data.into();
        let etag = etag_of(&data);
        let mut state = self.lock();
        let now = state.now();
        let object = stored(data, options, etag, None, now, options.object_lock);
        state.push(&key.into(), Some(object));
    }

    /// Every current object's bytes, by key (versions hidden behind a delete marker or
    /// replaced are left out: see [`MemoryStore::versions`]).
    #[must_use]
    pub fn objects(&self) -> BTreeMap<String, Bytes> {
        let state = self.lock();
        state
            .keys
            .keys()
            .filter_map(|k| Some((k.clone(), state.current(k)?.data.clone())))
            .collect()
    }

    /// How many versions and delete markers are stored, over all keys.
    #[must_use]
    pub fn versions(&self) -> usize {
        self.lock().keys.values().map(Vec::len).sum()
    }

    /// Bytes, metadata and storage class of `key`, if it exists.
    #[must_use]
    pub fn object(&self, key: &str) -> Option<(Bytes, BTreeMap<String, String>, Option<String>)> {
        self.lock()
            .current(key)
            .map(|o| (o.data.clone(), o.metadata.clone(), o.storage_class.clone()))
    }

    /// Everything stored about the current object at `key`, including ACL, ETag and retention.
    #[must_use]
    pub fn object_details(&self, key: &str) -> Option<MemoryObject> {
        self.lock().current(key).cloned()
    }

    /// How many multipart uploads are open (neither completed nor aborted).
    #[must_use]
    pub fn open_uploads(&self) -> usize {
        self.lock().uploads.len()
    }

    /// How many times `op` was called (including calls that failed).
    #[must_use]
    pub fn calls(&self, op: Op) -> u64 {
        self.lock().calls.get(&op).copied().unwrap_or(0)
    }

    /// Resets all call counters to zero.
    pub fn reset_calls(&self) {
        self.lock().calls.clear();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters to tests, so poisoning is ignored.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts the call and applies the bucket-level failures.
    fn enter(&self, op: Op) -> Result<MutexGuard<'_, State>> {
        let mut state = self.lock();
        *state.calls.entry(op).or_default() += 1;
        if state.deny_access {
            return Err(Error::access_denied(
                format_args!("{op} bucket {}", self.bucket),
                "InvalidAccessKeyId",
            ));
        }
        if !state.bucket_exists {
            return Err(Error::no_such_bucket(
                op,
                &self.bucket,
                Some("memory"),
                "NoSuchBucket",
            ));
        }
        Ok(state)
    }

    fn url(&self, key: &str) -> String {
        object_url(&self.bucket, key)
    }

    fn not_found(&self, op: Op, key: &str) -> Error {
        Error::new(
            ErrorKind::NotFound,
            format!("{op} {}: not found", self.url(key)),
        )
    }

    /// The data version `version_id` of `key`: [`ErrorKind::NotFound`] for an unknown one,
    /// [`ErrorKind::InvalidRequest`] for a delete marker (S3: 405 `MethodNotAllowed`).
    fn data_version<'s>(
        &self,
        state: &'s State,
        op: Op,
        key: &str,
        version_id: &str,
    ) -> Result<&'s MemoryObject> {
        let version = state.version(key, version_id).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("{op} {} version {version_id}: NoSuchVersion", self.url(key)),
            )
        })?;
        version.object.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "{op} {} version {version_id}: MethodNotAllowed: the version is a delete marker",
                    self.url(key)
                ),
            )
        })
    }

    fn head_op(&self, op: Op, key: &str) -> Result<ObjectInfo> {
        let state = self.enter(op)?;
        let object = state.current(key).ok_or_else(|| self.not_found(op, key))?;
        Ok(info_of(key, object, op == Op::HeadChecksum))
    }

    fn no_such_upload(&self, op: Op, key: &str, upload_id: &UploadId) -> Error {
        Error::new(
            ErrorKind::NoSuchUpload,
            format!(
                "{op} {} (upload id {upload_id}): no such upload",
                self.url(key)
            ),
        )
    }

    /// The retention a write of `key` gets ([`State::retention_for`]), or S3's error.
    fn retention(
        &self,
        state: &State,
        op: Op,
        key: &str,
        asked: Option<Retention>,
        check_date: bool,
    ) -> Result<Option<Retention>> {
        state.retention_for(asked, check_date).map_err(|what| {
            Error::new(
                ErrorKind::InvalidRequest,
                format!("{op} {}: {what}", self.url(key)),
            )
        })
    }

    /// Stores the object `make` builds (given the time) at `key` after checking
    /// `precondition`; the check and the write happen under one lock, atomically.
    fn write(
        &self,
        state: &mut State,
        op: Op,
        key: &str,
        precondition: &Precondition,
        make: impl FnOnce(i64) -> MemoryObject,
    ) -> Result<()> {
        let existing = state.current(key).map(|o| o.etag.as_str());
        check_precondition(precondition, existing)
            .map_err(|(kind, what)| Error::new(kind, format!("{op} {}: {what}", self.url(key))))?;
        let now = state.now();
        state.push(key, Some(make(now)));
        Ok(())
    }

    /// A delete without a version id: removes the key, or adds a delete marker on a versioned
    /// bucket (even for a key that does not exist, as S3 does).
    fn delete_current(state: &mut State, key: &str) {
        if state.versioning == Versioning::Unversioned {
            state.keys.remove(key);
        } else {
            state.push(key, None);
        }
    }
}

fn info_of(key: &str, object: &MemoryObject, checksum_mode: bool) -> ObjectInfo {
    ObjectInfo {
        key: key.to_owned(),
        size: object.data.len() as u64,
        etag: Some(object.etag.clone()),
        metadata: object.metadata.clone(),
        storage_class: object.storage_class.clone(),
        last_modified: Some(object.last_modified),
        retain_until: object.retention.map(|r| r.retain_until),
        retention_mode: object.retention.map(|r| r.mode),
        legal_hold: object.legal_hold,
        version_id: Some(object.version_id.clone()),
        // Like S3: the checksum only in checksum mode.
        checksum_crc32c: if checksum_mode {
            object.checksum_crc32c.clone()
        } else {
            None
        },
    }
}

fn stored(
    data: Bytes,
    options: &PutOptions,
    etag: String,
    checksum_crc32c: Option<String>,
    last_modified: i64,
    retention: Option<Retention>,
) -> MemoryObject {
    MemoryObject {
        data,
        metadata: options.metadata.clone(),
        storage_class: options.storage_class.clone(),
        acl: options.acl.clone(),
        etag,
        checksum_crc32c,
        last_modified,
        version_id: NULL_VERSION.to_owned(),
        retention,
        legal_hold: false,
    }
}

/// Bytes `range` of `object`, clipped at its end, as S3 answers a ranged GET.
fn slice(
    object: &MemoryObject,
    range: &Range<u64>,
    what: impl FnOnce() -> String,
) -> Result<Bytes> {
    if range.start >= range.end {
        return Ok(Bytes::new());
    }
    // As S3: an object in an archive class is not readable until restored.
    if let Some(class) = object
        .storage_class
        .as_deref()
        .filter(|c| crate::store::is_archive_class(c))
    {
        return Err(Error::new(
            ErrorKind::Archived,
            format!("{}: InvalidObjectState (the object is in {class})", what()),
        ));
    }
    let len = object.data.len() as u64;
    if range.start >= len {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            format!(
                "{} bytes {}..{}: InvalidRange (object is {len} bytes)",
                what(),
                range.start,
                range.end
            ),
        ));
    }
    let end = range.end.min(len);
    Ok(object.data.slice(range.start as usize..end as usize))
}

/// A deterministic, quoted stand-in for S3's MD5 ETag (tests only compare ETags for equality).
fn etag_of(data: &[u8]) -> String {
    let mut hasher = DefaultHasher::new();
    data.hash(&mut hasher);
    format!("\"{:016x}\"", hasher.finish())
}

#[async_trait::async_trait]
impl ObjectStore for MemoryStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn check_bucket(&self) -> Result<()> {
        self.enter(Op::CheckBucket).map(drop)
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo> {
        self.head_op(Op::Head, key)
    }

    async fn head_checksum(&self, key: &str) -> Result<ObjectInfo> {
        self.head_op(Op::HeadChecksum, key)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>> {
        let state = self.enter(Op::List)?;
        Ok(state
            .keys
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, _)| {
                let o = state.current(k)?;
                Some(ListEntry {
                    key: k.clone(),
                    size: o.data.len() as u64,
                    last_modified: Some(o.last_modified),
                    etag: Some(o.etag.clone()),
                })
            })
            .collect())
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let state = self.enter(Op::GetRange)?;
        let object = state
            .current(key)
            .ok_or_else(|| self.not_found(Op::GetRange, key))?;
        slice(object, &range, || format!("get_range {}", self.url(key)))
    }

    async fn read_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
        out: &mut Vec<Bytes>,
    ) -> Result<u64> {
        // Checked right before the read (S3 checks it atomically; nothing here awaits between).
        if let Some(wanted) = if_match {
            let state = self.lock();
            let etag = state.current(key).map(|o| o.etag.as_str());
            if etag.is_some_and(|etag| etag != wanted) {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "get_range {}: PreconditionFailed: ETag {etag:?}, not {wanted} (If-Match)",
                        self.url(key)
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

    async fn put(&self, key: &str, body: Bytes, options: &PutOptions) -> Result<String> {
        let precondition = options.precondition()?;
        let mut state = self.enter(Op::Put)?;
        let etag = etag_of(&body);
        let tag = etag.clone();
        let retention = self.retention(&state, Op::Put, key, options.object_lock, true)?;
        self.write(&mut state, Op::Put, key, &precondition, |now| {
            stored(body, options, tag, None, now, retention)
        })?;
        Ok(etag)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let mut state = self.enter(Op::Delete)?;
        Self::delete_current(&mut state, key);
        Ok(())
    }

    async fn delete_if_match(&self, key: &str, etag: &str) -> Result<()> {
        let mut state = self.enter(Op::Delete)?;
        let existing = state.current(key).map(|o| o.etag.as_str());
        check_precondition(&Precondition::Unchanged(etag.to_owned()), existing).map_err(
            |(kind, what)| {
                Error::new(
                    kind,
                    format!("delete {}: {what}", object_url(&self.bucket, key)),
                )
            },
        )?;
        Self::delete_current(&mut state, key);
        Ok(())
    }

    async fn create_multipart(&self, key: &str, options: &PutOptions) -> Result<UploadId> {
        let mut state = self.enter(Op::CreateMultipart)?;
        // Like S3: a retention the bucket cannot take is refused when the upload starts.
        state
            .retention_for(options.object_lock, true)
            .map_err(|what| {
                Error::new(
                    ErrorKind::InvalidRequest,
                    format!("create_multipart {}: {what}", self.url(key)),
                )
            })?;
        state.next_upload += 1;
        let id = UploadId::new(format!("memory-upload-{}", state.next_upload));
        state.uploads.insert(
            id.clone(),
            Upload {
                key: key.to_owned(),
                options: options.clone(),
                parts: BTreeMap::new(),
                initiated: SystemTime::now(),
            },
        );
        Ok(id)
    }
    async fn put_part(
        &self,
        key: &str,
        upload_id: &UploadId,
        part: PartNumber,
        body: Bytes,
        checksum: Crc32c,
    ) -> Result<CompletedPart> {
        let mut state = self.enter(Op::PutPart)?;
        let url = self.url(key);
        let upload = state
            .uploads
            .get_mut(upload_id)
            .filter(|u| u.key == key)
            .ok_or_else(|| {
                self.no_such_upload(Op::PutPart, key, upload_id)
                    .context(format_args!("part {part}"))
            })?;
        let actual = Crc32c::of(&body);
        if actual != checksum {
            return Err(Error::new(
                ErrorKind::Transient,
                format!(
                    "put_part {url} (upload id {upload_id}, part {part}): BadDigest: the CRC32C you specified ({checksum}) did not match the calculated checksum ({actual})"
                ),
            ));
        }
        let etag = etag_of(&body);
        upload.parts.insert(
            part,
            StoredPart {
                body,
                etag: etag.clone(),
                checksum,
            },
        );
        Ok(CompletedPart {
            part_number: part,
            etag,
            checksum_crc32c: Some(checksum.to_base64()),
        })
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
        precondition: &Precondition,
    ) -> Result<CompletedUpload> {
        let mut state = self.enter(Op::CompleteMultipart)?;
        let url = self.url(key);
        let upload = state
            .uploads
            .get(upload_id)
            .filter(|u| u.key == key)
            .ok_or_else(|| self.no_such_upload(Op::CompleteMultipart, key, upload_id))?;
        // Like S3: checked before the parts; a failed condition leaves the upload open.
        let existing = state.current(key).map(|o| o.etag.as_str());
        check_precondition(precondition, existing).map_err(|(kind, what)| {
            Error::new(
                kind,
                format!("complete_multipart {url} (upload id {upload_id}): {what}"),
            )
        })?;
        let invalid = |what: String| {
            Error::new(
                ErrorKind::InvalidRequest,
                format!("complete_multipart {url} (upload id {upload_id}): {what}"),
            )
        };
        if parts.is_empty() {
            return Err(invalid("MalformedXML: no parts given".into()));
        }
        if parts
            .windows(2)
            .any(|w| w[0].part_number >= w[1].part_number)
        {
            return Err(invalid(
                "InvalidPartOrder: parts are not in ascending order".into(),
            ));
        }
        let mut data = BytesMut::new();
        let mut etag_input = String::new();
        let mut checksums = Vec::with_capacity(parts.len());
        for (index, given) in parts.iter().enumerate() {
            let part = given.part_number;
            let stored = upload
                .parts
                .get(&part)
                .filter(|stored| stored.etag == given.etag)
                .ok_or_else(|| {
                    invalid(format!(
                        "InvalidPart: part {part} was not uploaded with etag {}",
                        given.etag
                    ))
                })?;
            if let Some(checksum) = &given.checksum_crc32c
                && *checksum != stored.checksum.to_base64()
            {
                return Err(invalid(format!(
                    "InvalidPart: part {part} was not uploaded with checksum {checksum}"
                )));
            }
            let is_last = index + 1 == parts.len();
            if !is_last && (stored.body.len() as u64) < self.min_part_size {
                return Err(invalid(format!(
                    "EntityTooSmall: part {part} is {} bytes, the minimum is {}",
                    stored.body.len(),
                    self.min_part_size
                )));
            }
            data.extend_from_slice(&stored.body);
            etag_input.push_str(&stored.etag);
            checksums.push(stored.checksum);
        }
        let checksum = composite_crc32c(&checksums);
        let combined = etag_of(etag_input.as_bytes());
        let etag = format!("{}-{}\"", combined.trim_end_matches('"'), parts.len());
        let upload = state
            .uploads
            .remove(upload_id)
            .ok_or_else(|| self.no_such_upload(Op::CompleteMultipart, key, upload_id))?;
        let (tag, crc) = (etag.clone(), checksum.clone());
        let asked = upload.options.object_lock;
        let retention = self.retention(&state, Op::CompleteMultipart, key, asked, false)?;
        let options = &upload.options;
        self.write(
            &mut state,
            Op::CompleteMultipart,
            key,
            &Precondition::None,
            |now| stored(data.freeze(), options, tag, Some(crc), now, retention),
        )?;
        Ok(CompletedUpload {
            etag,
            checksum_crc32c: Some(checksum),
        })
    }

    async fn abort_multipart(&self, key: &str, upload_id: &UploadId) -> Result<()> {
        let mut state = self.enter(Op::AbortMultipart)?;
        match state.uploads.get(upload_id) {
            Some(upload) if upload.key == key => {
                state.uploads.remove(upload_id);
                Ok(())
            }
            _ => Err(self.no_such_upload(Op::AbortMultipart, key, upload_id)),
        }
    }

    async fn list_parts(&self, key: &str, upload_id: &UploadId) -> Result<Vec<ListedPart>> {
        let state = self.enter(Op::ListParts)?;
        let upload = state
            .uploads
            .get(upload_id)
            .filter(|u| u.key == key)
            .ok_or_else(|| self.no_such_upload(Op::ListParts, key, upload_id))?;
        Ok(upload
            .parts
            .iter()
            .map(|(&part_number, part)| ListedPart {
                part_number,
                size: part.body.len() as u64,
                etag: part.etag.clone(),
            })
            .collect())
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        let state = self.enter(Op::ListMultipartUploads)?;
        let mut uploads: Vec<MultipartUploadInfo> = state
            .uploads
            .iter()
            .filter(|(_, u)| u.key.starts_with(prefix))
            .map(|(id, u)| MultipartUploadInfo {
                key: u.key.clone(),
                upload_id: id.clone(),
                initiated: Some(u.initiated),
            })
            .collect();
        uploads.sort_by(|a, b| a.key.cmp(&b.key).then(a.initiated.cmp(&b.initiated)));
        Ok(uploads)
    }

    async fn object_lock_config(&self) -> Result<BucketLockConfig> {
        let state = self.enter(Op::ObjectLockConfig)?;
        Ok(BucketLockConfig {
            versioning: state.versioning,
            object_lock: state.object_lock,
            default_retention: state.default_retention,
        })
    }

    async fn list_versions(&self, prefix: &str) -> Result<Vec<VersionEntry>> {
        let state = self.enter(Op::ListVersions)?;
        let mut entries = Vec::new();
        for (key, history) in state
            .keys
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            let newest = history.len().saturating_sub(1);
            for (index, version) in history.iter().enumerate().rev() {
                entries.push(VersionEntry {
                    key: key.clone(),
                    version_id: version.id.clone(),
                    is_latest: index == newest,
                    is_delete_marker: version.object.is_none(),
                    size: version.object.as_ref().map_or(0, |o| o.data.len() as u64),
                    last_modified: Some(version.last_modified),
                    etag: version.object.as_ref().map(|o| o.etag.clone()),
                });
            }
        }
        Ok(entries)
    }

    async fn head_version(&self, key: &str, version_id: &str) -> Result<ObjectInfo> {
        let state = self.enter(Op::HeadVersion)?;
        let object = self.data_version(&state, Op::HeadVersion, key, version_id)?;
        Ok(info_of(key, object, false))
    }

    async fn read_range_version(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
        out: &mut Vec<Bytes>,
    ) -> Result<u64> {
        let state = self.enter(Op::GetRangeVersion)?;
        let object = self.data_version(&state, Op::GetRangeVersion, key, version_id)?;
        let bytes = slice(object, &range, || {
            format!("read_range_version {} version {version_id}", self.url(key))
        })?;
        let len = bytes.len() as u64;
        if len > 0 {
            out.push(bytes);
        }
        Ok(len)
    }

    async fn delete_version(&self, key: &str, version_id: &str) -> Result<()> {
        let mut state = self.enter(Op::DeleteVersion)?;
        let now = state.now();
        let Some(history) = state.keys.get_mut(key) else {
            return Ok(());
        };
        let Some(index) = history.iter().position(|v| v.id == version_id) else {
            return Ok(());
        };
        if let Some(why) = history[index].object.as_ref().and_then(|o| o.lock_at(now)) {
            return Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "delete_version {} version {version_id}: AccessDenied: refused by Object Lock ({why})",
                    self.url(key)
                ),
            ));
        }
        history.remove(index);
        if history.is_empty() {
            state.keys.remove(key);
        }
        Ok(())
    }

    async fn put_retention(&self, key: &str, version_id: &str, retention: Retention) -> Result<()> {
        let mut state = self.enter(Op::PutRetention)?;
        let now = state.now();
        let what = format!("put_retention {} version {version_id}", self.url(key));
        let invalid = |why: &str| Error::new(ErrorKind::InvalidRequest, format!("{what}: {why}"));
        if !state.object_lock {
            return Err(invalid(
                "InvalidRequest: Bucket is missing Object Lock Configuration",
            ));
        }
        if retention.retain_until <= now {
            return Err(invalid(&format!(
                "InvalidArgument: the retain until date {} must be in the future (now {now})",
                retention.retain_until
            )));
        }
        self.data_version(&state, Op::PutRetention, key, version_id)?;
        let object = state
            .keys
            .get_mut(key)
            .and_then(|h| h.iter_mut().find(|v| v.id == version_id))
            .and_then(|v| v.object.as_mut())
            .ok_or_else(|| invalid("the version vanished"))?;
        if let Some(current) = object.retention.filter(|r| r.retain_until > now)
            && !retention.extends(&current)
        {
            return Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "{what}: AccessDenied: refused by Object Lock ({} retention until {} cannot become {} until {})",
                    current.mode, current.retain_until, retention.mode, retention.retain_until
                ),
            ));
        }
        object.retention = Some(retention);
        Ok(())
    }
}

/// Whether a key whose object has ETag `existing` (if any) satisfies `precondition`; otherwise
/// the error S3 answers with.
fn check_precondition(
    precondition: &Precondition,
    existing: Option<&str>,
) -> std::result::Result<(), (ErrorKind, String)> {
    match (precondition, existing) {
        (Precondition::KeyFree, Some(_)) => Err((
            ErrorKind::AlreadyExists,
            "PreconditionFailed: the key exists (If-None-Match: *)".to_owned(),
        )),
        (Precondition::Unchanged(_), None) => Err((
            ErrorKind::NotFound,
            "NoSuchKey: If-Match on a missing key".to_owned(),
        )),
        (Precondition::Unchanged(wanted), Some(etag)) if wanted != etag => Err((
            ErrorKind::AlreadyExists,
            format!("PreconditionFailed: the key holds {etag}, not {wanted} (If-Match)"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(n: u16) -> PartNumber {
        PartNumber::new(n).unwrap()
    }

    /// Uploads `body` as part `n` with its correct checksum.
    async fn put(
        store: &MemoryStore,
        id: &UploadId,
        n: u16,
        body: &'static [u8],
    ) -> Result<CompletedPart> {
        store
            .put_part("k", id, part(n), Bytes::from_static(body), Crc32c::of(body))
            .await
    }

    #[tokio::test]
    async fn small_non_last_part_is_rejected() {
        let store = MemoryStore::new("b");
        let id = store
            .create_multipart("k", &PutOptions::default())
            .await
            .unwrap();
        let p1 = put(&store, &id, 1, b"tiny").await.unwrap();
        let p2 = put(&store, &id, 2, b"x").await.unwrap();
        let err = store
            .complete_multipart("k", &id, vec![p1, p2], &crate::Precondition::None)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert!(err.to_string().contains("EntityTooSmall"), "{err}");
        assert_eq!(store.open_uploads(), 1);
    }

    #[tokio::test]
    async fn order_and_etags_are_checked() {
        let store = MemoryStore::with_min_part_size("b", 1);
        let id = store
            .create_multipart("k", &PutOptions::default())
            .await
            .unwrap();
        let p1 = put(&store, &id, 1, b"ab").await.unwrap();
        let p2 = put(&store, &id, 2, b"cd").await.unwrap();
        let err = store
            .complete_multipart(
                "k",
                &id,
                vec![p2.clone(), p1.clone()],
                &crate::Precondition::None,
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("InvalidPartOrder"), "{err}");
        let mut wrong = p2.clone();
        wrong.etag = "\"nope\"".into();
        let err = store
            .complete_multipart(
                "k",
                &id,
                vec![p1.clone(), wrong],
                &crate::Precondition::None,
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("InvalidPart:"), "{err}");
        let done = store
            .complete_multipart("k", &id, vec![p1, p2], &crate::Precondition::None)
            .await
            .unwrap();
        assert!(done.etag.ends_with("-2\""), "{done:?}");
        assert_eq!(store.object("k").unwrap().0, Bytes::from_static(b"abcd"));
        let err = put(&store, &id, 3, b"").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NoSuchUpload);
    }

    #[tokio::test]
    async fn checksums_are_verified_and_combined() {
        let store = MemoryStore::with_min_part_size("b", 1);
        let id = store
            .create_multipart("k", &PutOptions::default())
            .await
            .unwrap();
        // A body that does not match its checksum is refused and not stored.
        let err = store
            .put_part(
                "k",
                &id,
                part(1),
                Bytes::from_static(b"ab"),
                Crc32c::of(b"aB"),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Transient);
        assert!(err.to_string().contains("BadDigest"), "{err}");
        assert!(err.to_string().contains("part 1"), "{err}");
        let p1 = put(&store, &id, 1, b"ab").await.unwrap();
        assert_eq!(p1.checksum_crc32c, Some(Crc32c::of(b"ab").to_base64()));
        let p2 = put(&store, &id, 2, b"cd").await.unwrap();
        // Completing with a checksum the part was not uploaded with is refused.
        let mut wrong = p2.clone();
        wrong.checksum_crc32c = Some(Crc32c::of(b"xx").to_base64());
        let err = store
            .complete_multipart(
                "k",
                &id,
                vec![p1.clone(), wrong],
                &crate::Precondition::None,
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("InvalidPart: part 2"), "{err}");
        let expected = composite_crc32c(&[Crc32c::of(b"ab"), Crc32c::of(b"cd")]);
        let done = store
            .complete_multipart("k", &id, vec![p1, p2], &crate::Precondition::None)
            .await
            .unwrap();
        assert_eq!(done.checksum_crc32c.as_deref(), Some(expected.as_str()));
        assert_eq!(store.head("k").await.unwrap().checksum_crc32c, None);
        assert_eq!(
            store.head_checksum("k").await.unwrap().checksum_crc32c,
            Some(expected)
        );
    }

    #[tokio::test]
    async fn ranges_clip_and_reject_past_end() {
        let store = MemoryStore::new("b");
        store.insert("k", &b"hello"[..], &PutOptions::default());
        assert_eq!(store.get_range("k", 1..3).await.unwrap(), &b"el"[..]);
        assert_eq!(store.get_range("k", 3..100).await.unwrap(), &b"lo"[..]);
        assert!(store.get_range("k", 2..2).await.unwrap().is_empty());
        let err = store.get_range("k", 5..6).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert_eq!(store.calls(Op::GetRange), 4);
    }

    #[tokio::test]
    async fn list_is_prefix_bounded() {
        let store = MemoryStore::new("b");
        for key in ["a/1", "a/2", "ab", "b/1"] {
            store.insert(key, &b"x"[..], &PutOptions::default());
        }
        let keys: Vec<String> = store
            .list("a/")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, ["a/1", "a/2"]);
    }

    #[tokio::test]
    async fn bucket_failures() {
        let missing = MemoryStore::without_bucket("nope");
        assert_eq!(
            missing.check_bucket().await.unwrap_err().kind(),
            ErrorKind::NoSuchBucket
        );
        let store = MemoryStore::new("b");
        store.deny_access(true);
        assert_eq!(
            store.head("k").await.unwrap_err().kind(),
            ErrorKind::AccessDenied
        );
        store.deny_access(false);
        assert_eq!(
            store.head("k").await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(store.calls(Op::Head), 2);
    }

    fn retention(mode: RetentionMode, retain_until: i64) -> Retention {
        Retention { mode, retain_until }
    }

    #[tokio::test]
    async fn legal_hold_blocks_deletion_until_lifted() {
        let store = MemoryStore::with_object_lock("b", None);
        store.set_time(1_000);
        store
            .put("k", Bytes::from_static(b"v"), &PutOptions::default())
            .await
            .unwrap();
        let id = store.head("k").await.unwrap().version_id.unwrap();
        assert!(store.set_legal_hold("k", &id, true));
        assert!(store.head_version("k", &id).await.unwrap().legal_hold);
        let err = store.delete_version("k", &id).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Locked);
        assert!(err.to_string().contains("legal hold"), "{err}");
        assert!(store.set_legal_hold("k", &id, false));
        store.delete_version("k", &id).await.unwrap();
        assert_eq!(store.versions(), 0);
        assert!(!MemoryStore::versioned("b").set_legal_hold("k", "null", true));
    }

    #[tokio::test]
    async fn retention_expires_at_the_store_time_and_default_retention_applies() {
        let store = MemoryStore::with_object_lock(
            "b",
            Some((RetentionMode::Compliance, RetentionPeriod::Days(2))),
        );
        store.set_time(1_000);
        store
            .put("k", Bytes::from_static(b"v"), &PutOptions::default())
            .await
            .unwrap();
        let info = store.head("k").await.unwrap();
        assert_eq!(info.retention_mode, Some(RetentionMode::Compliance));
        assert_eq!(info.retain_until, Some(1_000 + 2 * 86_400));
        let id = info.version_id.unwrap();
        store.set_time(1_000 + 2 * 86_400 - 1);
        assert_eq!(
            store.delete_version("k", &id).await.unwrap_err().kind(),
            ErrorKind::Locked
        );
        // Not a bypass: compliance can never be weakened, even by its own writer.
        let err = store
            .put_retention(
                "k",
                &id,
                retention(RetentionMode::Governance, 1_000 + 3 * 86_400),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Locked);
        store.set_time(1_000 + 2 * 86_400);
        store.delete_version("k", &id).await.unwrap();
        // A retention in the past, or on a bucket without Object Lock, is refused.
        let past = PutOptions {
            object_lock: Some(retention(RetentionMode::Governance, 5)),
            ..PutOptions::default()
        };
        let err = store.put("k", Bytes::new(), &past).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        let plain = MemoryStore::versioned("p");
        let err = plain.create_multipart("k", &past).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert!(err.to_string().contains("Object Lock"), "{err}");
        assert_eq!(
            plain.object_lock_config().await.unwrap(),
            BucketLockConfig {
                versioning: Versioning::Enabled,
                object_lock: false,
                default_retention: None
            }
        );
    }

    #[tokio::test]
    async fn unversioned_and_suspended_buckets_keep_one_null_version() {
        let store = MemoryStore::new("b");
        store
            .put("k", Bytes::from_static(b"1"), &PutOptions::default())
            .await
            .unwrap();
        store
            .put("k", Bytes::from_static(b"2"), &PutOptions::default())
            .await
            .unwrap();
        let versions = store.list_versions("").await.unwrap();
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0].version_id, "null");
        assert!(versions[0].is_latest);
        store.delete("k").await.unwrap();
        assert_eq!(store.versions(), 0, "an unversioned delete removes");

        let store = MemoryStore::versioned("b");
        store
            .put("k", Bytes::from_static(b"1"), &PutOptions::default())
            .await
            .unwrap();
        assert!(store.set_versioning(Versioning::Suspended));
        assert!(!store.set_versioning(Versioning::Unversioned));
        store
            .put("k", Bytes::from_static(b"2"), &PutOptions::default())
            .await
            .unwrap();
        store
            .put("k", Bytes::from_static(b"3"), &PutOptions::default())
            .await
            .unwrap();
        let ids: Vec<String> = store
            .list_versions("k")
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.version_id)
            .collect();
        assert_eq!(
            ids,
            ["null", "v000000000001"],
            "the null version was replaced"
        );
        store.delete("k").await.unwrap();
        let versions = store.list_versions("k").await.unwrap();
        assert!(versions[0].is_delete_marker && versions[0].version_id == "null");
        assert_eq!(
            versions.len(),
            2,
            "the suspended delete replaced the null version"
        );
        assert!(!MemoryStore::with_object_lock("l", None).set_versioning(Versioning::Suspended));
    }

    #[tokio::test]
    async fn a_conditional_put_sees_through_to_the_current_version_only() {
        let store = MemoryStore::versioned("b");
        store
            .put("k", Bytes::from_static(b"1"), &PutOptions::default())
            .await
            .unwrap();
        store.delete("k").await.unwrap();
        // Hidden behind a marker, the key is free for If-None-Match, as in S3.
        let create = PutOptions {
            if_none_match: true,
            ..PutOptions::default()
        };
        store
            .put("k", Bytes::from_static(b"2"), &create)
            .await
            .unwrap();
        assert_eq!(
            store
                .put("k", Bytes::from_static(b"3"), &create)
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::AlreadyExists
        );
        assert_eq!(store.list_versions("k").await.unwrap().len(), 3);
        assert_eq!(store.objects()["k"], Bytes::from_static(b"2"));
    }
}

//! The status cache: what HEAD said about each backup object, kept between runs so that
//! `z3 status` and `z3 status --all` read only the objects that are new or changed.
//!
//! A listing already tells each object's key, size, ETag and `Last-Modified`; HEAD adds the
//! metadata (`isfull`, `parent`, guids, the upload token …). [`MetaCache`] keeps what HEAD said,
//! per listing ([`CacheScope`]: bucket and listed prefix), together with the listing's own
//! identity of the object. An entry is served only while key, size, ETag **and**
//! `Last-Modified` of the new listing all equal the recorded ones ([`CachedObject::matches`]): a
//! replaced object always has a new `Last-Modified` (and new content a new ETag), so it is read
//! again, and an object listed without an ETag or a time is never served from the cache.
//! Saving replaces the scope's entries by the objects of the latest listing, so objects that are
//! gone drop out.
//!
//! The cache is only an optimisation: a store that cannot be read or written is ignored with a
//! `tracing` warning, never an error. Only `status` uses it; `backup`, `restore`, `verify` and
//! `prune` read every object's metadata from the bucket each time.
//!
//! [`MemoryMetaCache`] is the in-memory implementation (for tests and embedders);
//! [`FileMetaCache`] keeps one JSON file per scope in a directory ([`default_dir`]).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use z3_s3::{ListEntry, ObjectInfo};

/// One listing the cache keeps entries for: the bucket and the prefix it was listed with (the
/// key prefix for `status --all`, the dataset's `<prefix><dataset>@<snapshot prefix>` for
/// `status`). The endpoint is the [`MetaCache`] implementation's business.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheScope {
    /// The bucket.
    pub bucket: String,
    /// The prefix the objects were listed with.
    pub prefix: String,
}

impl CacheScope {
    /// The scope of a listing of `prefix` in `bucket`.
    #[must_use]
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }
}

/// What HEAD said about one object, with the listing's identity of the object it said it about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedObject {
    /// The ETag the listing reported when the object was read (quotes included).
    pub etag: String,
    /// The `Last-Modified` the listing reported, in Unix seconds.
    pub last_modified: i64,
    /// The size the listing reported.
    pub size: u64,
    /// The ETag HEAD reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_etag: Option<String>,
    /// The `Last-Modified` HEAD reported (or the listing's, when HEAD had none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_last_modified: Option<i64>,
    /// The size HEAD reported.
    pub head_size: u64,
    /// User metadata, as HEAD reported it.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The storage class, when HEAD reported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

impl CachedObject {
    /// The entry for an object listed as `entry` whose HEAD said `info`; `None` when the listing
    /// has no ETag or no `Last-Modified` (such an object can never be recognised again).
    #[must_use]
    pub fn new(entry: &ListEntry, info: &ObjectInfo) -> Option<Self> {
        Some(Self {
            etag: entry.etag.clone()?,
            last_modified: entry.last_modified?,
            size: entry.size,
            head_etag: info.etag.clone(),
            head_last_modified: info.last_modified,
            head_size: info.size,
            metadata: info.metadata.clone(),
            storage_class: info.storage_class.clone(),
        })
    }

    /// Whether this entry describes the object as `entry` lists it now: same size, ETag and
    /// `Last-Modified` (the key is the map's). A listing without an ETag or a time never matches.
    #[must_use]
    pub fn matches(&self, entry: &ListEntry) -> bool {
        entry.etag.as_deref() == Some(self.etag.as_str())
            && entry.last_modified == Some(self.last_modified)
            && entry.size == self.size
    }

    /// The HEAD answer this entry recorded, for `key`. It carries what `status` reads (size,
    /// ETag, metadata, storage class, `Last-Modified`); the checksum, Object Lock and version
    /// fields are left empty.
    #[must_use]
    pub fn info(&self, key: &str) -> ObjectInfo {
        ObjectInfo {
            key: key.to_owned(),
            size: self.head_size,
            etag: self.head_etag.clone(),
            metadata: self.metadata.clone(),
            storage_class: self.storage_class.clone(),
            checksum_crc32c: None,
            last_modified: self.head_last_modified,
            retain_until: None,
            legal_hold: false,
            retention_mode: None,
            version_id: None,
        }
    }
}

/// The entries of one scope, by object key.
pub type CachedObjects = BTreeMap<String, CachedObject>;

/// Where `status` keeps what it read between runs: whole scopes, loaded before the objects are
/// read and saved after. Implementations never fail: one that cannot load returns nothing,
/// and one that cannot save drops the entries (both worth a warning, not an error).
pub trait MetaCache: Send + Sync + fmt::Debug {
    /// Everything kept for `scope`; empty when nothing is, or it cannot be read.
    fn load(&self, scope: &CacheScope) -> CachedObjects;

    /// Replaces what is kept for `scope` by `objects`.
    fn save(&self, scope: &CacheScope, objects: &CachedObjects);
}

/// A [`MetaCache`] in memory, for tests and embedders: it forgets everything when dropped, and
/// counts its loads and saves.
#[derive(Debug, Default)]
pub struct MemoryMetaCache {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    scopes: BTreeMap<CacheScope, CachedObjects>,
    loads: u64,
    saves: u64,
}

impl MemoryMetaCache {
    /// An empty cache.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// What is kept for `scope`, if anything was saved for it.
    #[must_use]
    pub fn scope(&self, scope: &CacheScope) -> Option<CachedObjects> {
        self.lock().scopes.get(scope).cloned()
    }

    /// Sets what is kept for `scope` (to test what happens to wrong entries).
    pub fn set_scope(&self, scope: &CacheScope, objects: CachedObjects) {
        self.lock().scopes.insert(scope.clone(), objects);
    }

    /// Every scope something was saved for.
    #[must_use]
    pub fn scopes(&self) -> Vec<CacheScope> {
        self.lock().scopes.keys().cloned().collect()
    }

    /// How many times [`MetaCache::load`] and [`MetaCache::save`] were called.
    #[must_use]
    pub fn calls(&self) -> (u64, u64) {
        let state = self.lock();
        (state.loads, state.saves)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // The state is plain data, consistent after every statement: a panic elsewhere cannot
        // leave it half-updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl MetaCache for MemoryMetaCache {
    fn load(&self, scope: &CacheScope) -> CachedObjects {
        let mut state = self.lock();
        state.loads += 1;
        state.scopes.get(scope).cloned().unwrap_or_default()
    }

    fn save(&self, scope: &CacheScope, objects: &CachedObjects) {
        let mut state = self.lock();
        state.saves += 1;
        state.scopes.insert(scope.clone(), objects.clone());
    }
}

/// The format of a cache file; a file of another version is ignored (and replaced on save).
const FILE_VERSION: u32 = 1;

/// One cache file: the scope it belongs to (to tell a collision or a moved file) and its
/// entries. No endpoint and no credential is written.
#[derive(Debug, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    bucket: String,
    prefix: String,
    objects: CachedObjects,
}

/// Borrowed form of [`CacheFile`], for writing without copying the entries.
#[derive(Serialize)]
struct CacheFileRef<'a> {
    version: u32,
    bucket: &'a str,
    prefix: &'a str,
    objects: &'a CachedObjects,
}

/// A [`MetaCache`] of JSON files in a directory (created mode 0700 when missing), one per
/// endpoint, bucket and prefix, named by a hash of the three ([`FileMetaCache::path`]). Files
/// are replaced atomically (a temporary file renamed over the old one), so concurrent runs
/// never see half a file; the last one to save wins. A missing file is an empty cache; an
/// unreadable or corrupt one is ignored with a warning.
#[derive(Debug, Clone)]
pub struct FileMetaCache {
    dir: PathBuf,
    endpoint: String,
}

impl FileMetaCache {
    /// Files in `dir`, for the S3 endpoint `endpoint` (`None`: AWS's own). The endpoint only
    /// goes into the hash of the file names.
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>, endpoint: Option<&str>) -> Self {
        Self {
            dir: dir.into(),
            endpoint: endpoint.unwrap_or_default().to_owned(),
        }
    }

    /// The directory of the files.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `scope`: `<dir>/status-<32 hex digits>.json`, the first 128 bits of the BLAKE3
    /// hash of endpoint, bucket and prefix.
    #[must_use]
    pub fn path(&self, scope: &CacheScope) -> PathBuf {
        let mut hasher = blake3::Hasher::new();
        for part in [&self.endpoint, &scope.bucket, &scope.prefix] {
            // Length-prefixed, so that no two triples hash the same input.
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        let hex = hasher.finalize().to_hex();
        self.dir.join(format!("status-{}.json", &hex[..32]))
    }

    fn read(scope: &CacheScope, path: &Path) -> Result<CachedObjects, String> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(CachedObjects::new());
            }
            Err(err) => return Err(format!("cannot read it: {err}")),
        };
        let file: CacheFile =
            serde_json::from_slice(&bytes).map_err(|err| format!("not a cache file: {err}"))?;
        if file.version != FILE_VERSION {
            return Err(format!("format version {}", file.version));
        }
        if file.bucket != scope.bucket || file.prefix != scope.prefix {
            return Err(format!(
                "it belongs to s3://{}/{}",
                file.bucket, file.prefix
            ));
        }
        Ok(file.objects)
    }

    fn write(
        &self,
        scope: &CacheScope,
        objects: &CachedObjects,
        path: &Path,
    ) -> std::io::Result<()> {
        create_private_dir(&self.dir)?;
        // Created mode 0600 in the same directory, so the rename is atomic.
        let temp = tempfile::NamedTempFile::new_in(&self.dir)?;
        let mut out = BufWriter::new(temp);
        let file = CacheFileRef {
            version: FILE_VERSION,
            bucket: &scope.bucket,
            prefix: &scope.prefix,
            objects,
        };
        serde_json::to_writer(&mut out, &file)?;
        out.flush()?;
        let temp = out
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        temp.persist(path).map_err(|err| err.error)?;
        Ok(())
    }
}

impl MetaCache for FileMetaCache {
    fn load(&self, scope: &CacheScope) -> CachedObjects {
        let path = self.path(scope);
        Self::read(scope, &path).unwrap_or_else(|why| {
            tracing::warn!(
                "ignoring the status cache {} ({why}); reading every object",
                path.display()
            );
            CachedObjects::new()
        })
    }

    fn save(&self, scope: &CacheScope, objects: &CachedObjects) {
        let path = self.path(scope);
        if let Err(err) = self.write(scope, objects, &path) {
            tracing::warn!("cannot write the status cache {}: {err}", path.display());
        }
    }
}

/// Creates `dir` and its missing parents with mode 0700 (the umask can only narrow it).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Where [`FileMetaCache`] keeps its files, from the values of `XDG_CACHE_HOME` and `HOME` (the
/// caller reads the environment): `$XDG_CACHE_HOME/z3`; when that is unset (or not an absolute
/// path), `/var/cache/z3` for root and `$HOME/.cache/z3` for anyone else; `None` when neither
/// applies (no cache).
#[must_use]
pub fn default_dir(xdg_cache_home: Option<&OsStr>, home: Option<&OsStr>) -> Option<PathBuf> {
    choose_dir(xdg_cache_home, home, rustix::process::geteuid().is_root())
}

/// A [`FileMetaCache`] for `endpoint` in [`default_dir`]; `None` when there is no such
/// directory. The caller passes the values of `XDG_CACHE_HOME` and `HOME`.
#[must_use]
#[allow(clippy::needless_pass_by_value)] // takes `env::var_os`'s values as they come
pub fn user_cache(
    xdg_cache_home: Option<OsString>,
    home: Option<OsString>,
    endpoint: Option<&str>,
) -> Option<Arc<dyn MetaCache>> {
    let dir = default_dir(xdg_cache_home.as_deref(), home.as_deref())?;
    Some(Arc::new(FileMetaCache::new(dir, endpoint)))
}

/// [`default_dir`] with the effective user's rootness given.
fn choose_dir(xdg_cache_home: Option<&OsStr>, home: Option<&OsStr>, root: bool) -> Option<PathBuf> {
    if let Some(xdg) = absolute(xdg_cache_home) {
        return Some(xdg.join("z3"));
    }
    if root {
        return Some(PathBuf::from("/var/cache/z3"));
    }
    absolute(home).map(|home| home.join(".cache").join("z3"))
}

/// `value` as a path, when it is an absolute one.
fn absolute(value: Option<&OsStr>) -> Option<&Path> {
    value.map(Path::new).filter(|p| p.is_absolute())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn entry(key: &str, etag: Option<&str>, last_modified: Option<i64>) -> ListEntry {
        ListEntry {
            key: key.to_owned(),
            size: 7,
            last_modified,
            etag: etag.map(str::to_owned),
        }
    }

    fn info(key: &str) -> ObjectInfo {
        CachedObject {
            etag: "\"e\"".into(),
            last_modified: 1,
            size: 7,
            head_etag: Some("\"e\"".into()),
            head_last_modified: Some(1),
            head_size: 7,
            metadata: BTreeMap::from([("isfull".into(), "true".into())]),
            storage_class: Some("STANDARD_IA".into()),
        }
        .info(key)
    }

    #[test]
    fn an_entry_matches_only_the_same_etag_time_and_size() {
        let listed = entry("k", Some("\"e\""), Some(100));
        let cached = CachedObject::new(&listed, &info("k")).unwrap();
        assert!(cached.matches(&listed));
        assert!(!cached.matches(&entry("k", Some("\"f\""), Some(100))));
        assert!(!cached.matches(&entry("k", Some("\"e\""), Some(101))));
        assert!(!cached.matches(&entry("k", None, Some(100))));
        assert!(!cached.matches(&entry("k", Some("\"e\""), None)));
        let mut bigger = listed.clone();
        bigger.size = 8;
        assert!(!cached.matches(&bigger));
        // A listing without an ETag or a time makes no entry at all.
        assert!(CachedObject::new(&entry("k", None, Some(100)), &info("k")).is_none());
        assert!(CachedObject::new(&entry("k", Some("\"e\""), None), &info("k")).is_none());
    }

    #[test]
    fn an_entry_gives_back_what_head_said() {
        let listed = entry("k", Some("\"e\""), Some(100));
        let head = info("k");
        let cached = CachedObject::new(&listed, &head).unwrap();
        assert_eq!(cached.info("k"), head);
    }

    #[test]
    fn the_directory_follows_xdg_then_root_then_home() {
        let os = |s: &'static str| Some(OsStr::new(s));
        let check = |xdg, home, root, want: Option<&str>| {
            assert_eq!(choose_dir(xdg, home, root), want.map(PathBuf::from));
        };
        check(os("/x"), os("/h"), false, Some("/x/z3"));
        check(os("/x"), os("/h"), true, Some("/x/z3"));
        check(None, os("/h"), true, Some("/var/cache/z3"));
        check(None, os("/h"), false, Some("/h/.cache/z3"));
        // Relative values are ignored, as the XDG specification asks.
        check(os("rel"), os("/h"), false, Some("/h/.cache/z3"));
        check(os(""), os(""), false, None);
        check(None, None, false, None);
    }

    fn sample() -> CachedObjects {
        let listed = entry("z3/tank@a", Some("\"e\""), Some(100));
        BTreeMap::from([(
            listed.key.clone(),
            CachedObject::new(&listed, &info(&listed.key)).unwrap(),
        )])
    }

    #[test]
    fn files_round_trip_in_a_private_directory_without_secrets() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache").join("z3");
        let secret_endpoint = "http://AKIAEXAMPLE:s3cr3t-key@127.0.0.1:9";
        let cache = FileMetaCache::new(&dir, Some(secret_endpoint));
        let scope = CacheScope::new("b", "z3/");
        assert!(cache.load(&scope).is_empty(), "no file yet");
        cache.save(&scope, &sample());
        assert_eq!(cache.load(&scope), sample());
        for d in [&dir, &tmp.path().join("cache")] {
            let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
        let path = cache.path(&scope);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for secret in ["AKIAEXAMPLE", "s3cr3t", "127.0.0.1"] {
            assert!(!text.contains(secret), "{text}");
            assert!(!name.contains(secret), "{name}");
        }
        // Only the file itself is in the directory: the temporary file was renamed.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    }

    #[test]
    fn endpoint_bucket_and_prefix_each_have_their_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = FileMetaCache::new(dir.path(), None);
        let b = FileMetaCache::new(dir.path(), Some("http://127.0.0.1:9"));
        let scope = CacheScope::new("b", "z3/");
        let paths = [
            a.path(&scope),
            b.path(&scope),
            a.path(&CacheScope::new("c", "z3/")),
            a.path(&CacheScope::new("b", "z3/x")),
            a.path(&CacheScope::new("bz", "3/")),
        ];
        let unique: std::collections::BTreeSet<_> = paths.iter().collect();
        assert_eq!(unique.len(), paths.len(), "{paths:?}");
        a.save(&scope, &sample());
        assert!(b.load(&scope).is_empty());
    }

    #[test]
    fn a_corrupt_or_foreign_file_is_an_empty_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileMetaCache::new(dir.path(), None);
        let scope = CacheScope::new("b", "z3/");
        let path = cache.path(&scope);
        for text in [
            "{\"version\":1,\"bucket\":\"b\",\"pre",
            "\u{0}\u{1}garbage",
            "{\"version\":99,\"bucket\":\"b\",\"prefix\":\"z3/\",\"objects\":{}}",
        ] {
            std::fs::write(&path, text).unwrap();
            assert!(cache.load(&scope).is_empty(), "{text}");
        }
        // A file of another scope under this name (a collision, a copied file) is not used.
        cache.save(&CacheScope::new("other", "z3/"), &sample());
        let other = cache.path(&CacheScope::new("other", "z3/"));
        std::fs::rename(other, &path).unwrap();
        assert!(cache.load(&scope).is_empty());
        // Saving replaces the bad file.
        cache.save(&scope, &sample());
        assert_eq!(cache.load(&scope), sample());
    }

    #[test]
    fn an_unwritable_directory_is_a_warning_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        let cache = FileMetaCache::new(file.join("z3"), None);
        let scope = CacheScope::new("b", "z3/");
        cache.save(&scope, &sample());
        assert!(cache.load(&scope).is_empty());
    }
}

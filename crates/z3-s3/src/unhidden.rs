//! [`Unhidden`]: a view of a versioned bucket in which objects hidden behind a delete marker are
//! still there, and [`delete_all_versions`], which really deletes a key of a versioned bucket.
//!
//! On a versioned bucket a plain DELETE only adds a delete marker: the data stays, readable by
//! version id, but `ListObjectsV2` and `HEAD` no longer show it. Stolen credentials can so hide
//! every backup without being able to destroy one that Object Lock protects. z3 reads such a
//! bucket through [`Unhidden`], so `status` shows a hidden backup and `restore` receives it.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use crate::checksum::Crc32c;
use crate::error::{ErrorKind, Result};
use crate::retry::{RetryConfig, retry};
use crate::store::{
    BucketLockConfig, CompletedPart, CompletedUpload, ListEntry, ListedPart, MultipartUploadInfo,
    ObjectInfo, ObjectStore, PartNumber, Precondition, PutOptions, Retention, UploadId,
    VersionEntry,
};

/// An [`ObjectStore`] that shows every object of a versioned bucket whose newest data version is
/// hidden by a delete marker as if it were current: [`list`](ObjectStore::list) is made from
/// [`list_versions`](ObjectStore::list_versions), and `head`, `get_range` and `read_range` of a
/// hidden key read that version by its id. Writes and deletes go to the bucket unchanged.
///
/// Reads of a hidden key are pinned by construction: a version never changes, so a ranged
/// download that started on it never splices in another object, even if a new current version
/// is written meanwhile (a later listing shows the new one). A key not seen hidden by a listing
/// whose `HEAD` finds nothing is looked up once with a version listing of exactly that key, so
/// a restore by name works without a listing first.
///
/// `delete` of a hidden key adds one more marker, as on the bucket: it deletes nothing. To
/// delete a key's data, use [`delete_all_versions`].
#[derive(Debug)]
pub struct Unhidden {
    inner: Arc<dyn ObjectStore>,
    /// Hidden keys seen so far, with the version that stands for each.
    hidden: Mutex<BTreeMap<String, String>>,
}

impl Unhidden {
    /// A view of `inner`'s bucket with hidden objects shown.
    #[must_use]
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            hidden: Mutex::new(BTreeMap::new()),
        }
    }

    /// The keys found hidden behind a delete marker so far (by listings and lookups), each with
    /// the version id read in its place, sorted by key.
    #[must_use]
    pub fn hidden(&self) -> Vec<(String, String)> {
        self.map()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.hidden.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn version_of(&self, key: &str) -> Option<String> {
        self.map().get(key).cloned()
    }

    /// The version standing for `key` when it is hidden: one version listing of exactly it.
    async fn look_up(&self, key: &str) -> Result<Option<String>> {
        let versions = self.inner.list_versions(key).await?;
        let mine: Vec<VersionEntry> = versions.into_iter().filter(|v| v.key == key).collect();
        let found = hidden_data(&mine).map(|v| v.version_id.clone());
        if let Some(version) = &found {
            self.map().insert(key.to_owned(), version.clone());
        }
        Ok(found)
    }

    /// `key`'s hidden version: known from a listing, or looked up after `err` (a `NotFound`).
    async fn hidden_after(&self, key: &str, err: crate::Error) -> Result<String> {
        if err.kind() != ErrorKind::NotFound {
            return Err(err);
        }
        match self.look_up(key).await? {
            Some(version) => Ok(version),
            None => Err(err),
        }
    }
}

/// Of one key's entries (newest first, as S3 lists them), the newest data version when the
/// current entry is a delete marker.
fn hidden_data(entries: &[VersionEntry]) -> Option<&VersionEntry> {
    let latest = entries.iter().find(|v| v.is_latest)?;
    if !latest.is_delete_marker {
        return None;
    }
    entries.iter().find(|v| !v.is_delete_marker)
}

#[async_trait::async_trait]
impl ObjectStore for Unhidden {
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }

    async fn check_bucket(&self) -> Result<()> {
        self.inner.check_bucket().await
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo> {
        if let Some(version) = self.version_of(key) {
            return self.inner.head_version(key, &version).await;
        }
        match self.inner.head(key).await {
            Ok(info) => Ok(info),
            Err(err) => {
                let version = self.hidden_after(key, err).await?;
                self.inner.head_version(key, &version).await
            }
        }
    }

    async fn head_checksum(&self, key: &str) -> Result<ObjectInfo> {
        if let Some(version) = self.version_of(key) {
            return self.inner.head_version(key, &version).await;
        }
        match self.inner.head_checksum(key).await {
            Ok(info) => Ok(info),
            Err(err) => {
                let version = self.hidden_after(key, err).await?;
                self.inner.head_version(key, &version).await
            }
        }
    }

    /// Every key under `prefix` with a data version as its current entry, and every key whose
    /// current entry is a delete marker over a data version (listed as that version), in key
    /// order. Keys with only delete markers are not listed.
    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>> {
        let versions = self.inner.list_versions(prefix).await?;
        let mut by_key: BTreeMap<&str, Vec<VersionEntry>> = BTreeMap::new();
        for version in &versions {
            by_key
                .entry(version.key.as_str())
                .or_default()
                .push(version.clone());
        }
        let mut listed = Vec::with_capacity(by_key.len());
        let mut hidden = self.map();
        hidden.retain(|key, _| !key.starts_with(prefix));
        for (key, entries) in &by_key {
            let current = entries.iter().find(|v| v.is_latest && !v.is_delete_marker);
            let shown = current.or_else(|| {
                let data = hidden_data(entries);
                if let Some(data) = data {
                    hidden.insert((*key).to_owned(), data.version_id.clone());
                }
                data
            });
            if let Some(version) = shown {
                listed.push(ListEntry {
                    key: (*key).to_owned(),
                    size: version.size,
                    last_modified: version.last_modified,
                    etag: version.etag.clone(),
                });
            }
        }
        Ok(listed)
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let version = match self.version_of(key) {
            Some(version) => version,
            None => match self.inner.get_range(key, range.clone()).await {
                Ok(bytes) => return Ok(bytes),
                Err(err) => self.hidden_after(key, err).await?,
            },
        };
        let mut out = Vec::new();
        self.inner
            .read_range_version(key, &version, range, &mut out)
            .await?;
        Ok(out.concat().into())
    }

    async fn read_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
        out: &mut Vec<Bytes>,
    ) -> Result<u64> {
        let version = match self.version_of(key) {
            Some(version) => version,
            None => match self
                .inner
                .read_range(key, range.clone(), if_match, out)
                .await
            {
                Ok(len) => return Ok(len),
                Err(err) => self.hidden_after(key, err).await?,
            },
        };
        self.inner
            .read_range_version(key, &version, range, out)
            .await
    }

    async fn put(&self, key: &str, body: Bytes, options: &PutOptions) -> Result<String> {
        let etag = self.inner.put(key, body, options).await?;
        self.map().remove(key);
        Ok(etag)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key).await
    }

    async fn delete_if_match(&self, key: &str, etag: &str) -> Result<()> {
        self.inner.delete_if_match(key, etag).await
    }

    async fn create_multipart(&self, key: &str, options: &PutOptions) -> Result<UploadId> {
        self.inner.create_multipart(key, options).await
    }

    async fn put_part(
        &self,
        key: &str,
        upload_id: &UploadId,
        part: PartNumber,
        body: Bytes,
        checksum: Crc32c,
    ) -> Result<CompletedPart> {
        self.inner
            .put_part(key, upload_id, part, body, checksum)
            .await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
        precondition: &Precondition,
    ) -> Result<CompletedUpload> {
        let done = self
            .inner
            .complete_multipart(key, upload_id, parts, precondition)
            .await?;
        self.map().remove(key);
        Ok(done)
    }

    async fn abort_multipart(&self, key: &str, upload_id: &UploadId) -> Result<()> {
        self.inner.abort_multipart(key, upload_id).await
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        self.inner.list_multipart_uploads(prefix).await
    }

    async fn list_parts(&self, key: &str, upload_id: &UploadId) -> Result<Vec<ListedPart>> {
        self.inner.list_parts(key, upload_id).await
    }

    async fn object_lock_config(&self) -> Result<BucketLockConfig> {
        self.inner.object_lock_config().await
    }

    async fn list_versions(&self, prefix: &str) -> Result<Vec<VersionEntry>> {
        self.inner.list_versions(prefix).await
    }

    async fn head_version(&self, key: &str, version_id: &str) -> Result<ObjectInfo> {
        self.inner.head_version(key, version_id).await
    }

    async fn read_range_version(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
        out: &mut Vec<Bytes>,
    ) -> Result<u64> {
        self.inner
            .read_range_version(key, version_id, range, out)
            .await
    }

    async fn delete_version(&self, key: &str, version_id: &str) -> Result<()> {
        self.inner.delete_version(key, version_id).await?;
        let mut hidden = self.map();
        if hidden.get(key).is_some_and(|v| v == version_id) {
            hidden.remove(key);
        }
        Ok(())
    }

    async fn put_retention(&self, key: &str, version_id: &str, retention: Retention) -> Result<()> {
        self.inner.put_retention(key, version_id, retention).await
    }
}

/// Deletes every version and delete marker of exactly `key`, by version id, **oldest first and
/// the current entry last**, each with retries; returns how many entries went.
///
/// The order keeps what is visible honest at every point of a crash: while older versions go,
/// the key still shows (or hides) what it did, and no older content ever becomes current in
/// place of a newer one. It stops at the first failure: a version under Object Lock retention or
/// a legal hold is [`ErrorKind::Locked`], and everything newer than it stays.
///
/// # Errors
/// The listing's or a delete's last error, with the key and version.
pub async fn delete_all_versions(
    store: &dyn ObjectStore,
    key: &str,
    config: &RetryConfig,
) -> Result<usize> {
    let versions = retry(config, "list_versions", || store.list_versions(key)).await?;
    let mut mine: Vec<&VersionEntry> = versions.iter().filter(|v| v.key == key).collect();
    // S3 lists each key's versions newest first; put the current one last whatever the order.
    mine.reverse();
    mine.sort_by_key(|v| v.is_latest);
    for version in &mine {
        retry(config, "delete_version", || {
            store.delete_version(key, &version.version_id)
        })
        .await
        .map_err(|err| err.context(format_args!("version {} of {key}", version.version_id)))?;
    }
    Ok(mine.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use crate::store::RetentionMode;

    async fn put(store: &dyn ObjectStore, key: &str, body: &'static [u8]) {
        store
            .put(key, Bytes::from_static(body), &PutOptions::default())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_hidden_object_is_listed_headed_and_read_and_a_write_unhides_it() {
        let bucket = MemoryStore::versioned("b");
        put(&bucket, "p/a", b"old a").await;
        put(&bucket, "p/a", b"new a").await;
        put(&bucket, "p/b", b"b").await;
        put(&bucket, "p/gone", b"x").await;
        bucket.delete("p/a").await.unwrap();
        bucket.delete("p/a").await.unwrap(); // a second marker
        bucket.delete("p/gone").await.unwrap();
        let gone = bucket.list_versions("p/gone").await.unwrap();
        for v in gone.iter().filter(|v| !v.is_delete_marker) {
            bucket
                .delete_version("p/gone", &v.version_id)
                .await
                .unwrap();
        }
        assert_eq!(
            bucket.list("p/").await.unwrap().len(),
            1,
            "the bucket hides a"
        );

        let view = Unhidden::new(Arc::new(bucket.clone()));
        let listed: Vec<(String, u64)> = view
            .list("p/")
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.key, e.size))
            .collect();
        assert_eq!(
            listed,
            [("p/a".to_owned(), 5), ("p/b".to_owned(), 1)],
            "the newest data of a, behind two markers; a key with only markers is not listed"
        );
        assert_eq!(view.hidden().len(), 1);
        assert_eq!(view.head("p/a").await.unwrap().size, 5);
        assert_eq!(&view.get_range("p/a", 0..5).await.unwrap()[..], b"new a");
        let mut out = Vec::new();
        view.read_range("p/a", 1..4, Some("ignored"), &mut out)
            .await
            .unwrap();
        assert_eq!(out.concat(), b"ew ");

        // Without a listing first, a HEAD by name finds it too.
        let fresh = Unhidden::new(Arc::new(bucket.clone()));
        assert_eq!(fresh.head("p/a").await.unwrap().size, 5);
        assert_eq!(
            fresh.head("p/gone").await.unwrap_err().kind(),
            ErrorKind::NotFound
        );

        // A write makes the key current again; the view follows the bucket.
        put(&view, "p/a", b"newest").await;
        assert!(view.hidden().is_empty());
        assert_eq!(&view.get_range("p/a", 0..6).await.unwrap()[..], b"newest");
        assert_eq!(view.list("p/").await.unwrap()[0].size, 6);
    }

    #[tokio::test]
    async fn delete_all_versions_goes_oldest_first_and_stops_at_a_locked_one() {
        let bucket = MemoryStore::with_object_lock("b", None);
        bucket.set_time(1_000);
        put(&bucket, "k", b"v1").await;
        let locked = PutOptions {
            object_lock: Some(Retention {
                mode: RetentionMode::Governance,
                retain_until: 5_000,
            }),
            ..PutOptions::default()
        };
        bucket
            .put("k", Bytes::from_static(b"v2"), &locked)
            .await
            .unwrap();
        put(&bucket, "k", b"v3").await;
        put(&bucket, "k-other", b"x").await;
        let config = RetryConfig::default();
        let err = delete_all_versions(&bucket, "k", &config)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
        let left: Vec<bool> = bucket
            .list_versions("k")
            .await
            .unwrap()
            .iter()
            .filter(|v| v.key == "k")
            .map(|v| v.is_latest)
            .collect();
        assert_eq!(
            left,
            [true, false],
            "v1 went; the locked v2 and the current v3 stay"
        );
        assert_eq!(&bucket.get_range("k", 0..2).await.unwrap()[..], b"v3");

        bucket.set_time(6_000);
        bucket.delete("k").await.unwrap(); // a marker on top
        assert_eq!(delete_all_versions(&bucket, "k", &config).await.unwrap(), 3);
        let left = bucket.list_versions("k").await.unwrap();
        assert!(left.iter().all(|v| v.key == "k-other"), "{left:?}");
    }
}

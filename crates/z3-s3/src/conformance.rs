//! A conformance suite for [`ObjectStore`] implementations.
//!
//! Each check is a `pub async fn` that panics (with `assert!`) when the store misbehaves.
//! The crate's tests run every check against [`MemoryStore`](crate::MemoryStore) on each
//! `cargo test`, and against [`AwsStore`](crate::AwsStore) on a real server when
//! `Z3_TEST_S3_ENDPOINT` is set (`object_store`'s `integration.rs` pattern), so the fake and the
//! real thing are held to the same behaviour.
//!
//! Checks that write take a `prefix` and only touch keys under it, deleting what they made,
//! so they can share a bucket with other data and with concurrent runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::checksum::{Crc32c, composite_crc32c};
use crate::download::{DownloadConfig, Downloader};
use crate::error::ErrorKind;
use crate::part_size::MIN_PART_SIZE;
use crate::retry::RetryConfig;
use crate::store::{
    ObjectStore, PartNumber, Precondition, PutOptions, Retention, RetentionMode, Versioning,
};
use crate::upload::{MultipartUploader, UploadConfig};

/// The original pput test sample, `len` bytes of it: block `k` (1 MiB each) repeats the
/// 512-byte pattern `k,0,k,1,…,k,255`. At 6 MiB in 5 MiB parts its S3 multipart ETag is
/// `"d229c1fc0e509475afe56426c89d2724-2"` (docs/compatibility.md, "The original's test suite").
#[must_use]
pub fn sample_data(len: usize) -> Bytes {
    const BLOCK: usize = 1024 * 1024;
    (0..len)
        .map(|i| {
            let within = i % BLOCK;
            if within.is_multiple_of(2) {
                (i / BLOCK) as u8
            } else {
                ((within / 2) % 256) as u8
            }
        })
        .collect::<Vec<u8>>()
        .into()
}

/// The metadata z3 writes on an incremental backup, with the characters that need care
/// in headers (`@`, `:`, spaces).
#[must_use]
pub fn sample_metadata() -> BTreeMap<String, String> {
    [
        ("isfull", "true"),
        (
            "parent",
            "pool/fs@zfs-auto-snap:daily-2024-01-01 12:00 copy",
        ),
        ("size", "6291456"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn options() -> PutOptions {
    PutOptions {
        metadata: sample_metadata(),
        ..PutOptions::default()
    }
}

fn split_at(size: u64) -> usize {
    usize::try_from(size).expect("part sizes used here fit in memory")
}

fn part(n: u16) -> PartNumber {
    PartNumber::new(n).expect("part numbers used here are in range")
}

/// `put`, then `head` (size, metadata), `list` (sorted, prefix-bounded), overwrite, `delete`.
pub async fn put_head_list_round_trip(store: &dyn ObjectStore, prefix: &str) {
    let keys = [
        format!("{prefix}pool/fs@snap:b"),
        format!("{prefix}pool/fs@snap:a"),
        format!("{prefix}pool/other@x y"),
    ];
    for (i, key) in keys.iter().enumerate() {
        let etag = store
            .put(key, Bytes::from(vec![b'x'; i + 1]), &options())
            .await
            .expect("put succeeds");
        assert!(!etag.is_empty(), "put returns an etag for {key}");
    }
    let info = store.head(&keys[2]).await.expect("head succeeds");
    assert_eq!(info.key, keys[2]);
    assert_eq!(info.size, 3);
    assert_eq!(info.metadata, sample_metadata(), "metadata round trip");

    let listed = store
        .list(&format!("{prefix}pool/fs@"))
        .await
        .expect("list");
    let names: Vec<&str> = listed.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        names,
        [keys[1].as_str(), keys[0].as_str()],
        "sorted, bounded by prefix"
    );
    assert_eq!(listed[1].size, 1);
    // Retention decisions (prune's minimum storage duration) read these times: both the
    // listing and HEAD report them, close to now (the server's clock, so allow skew).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    for (entry, what) in [
        (listed[0].last_modified, "list"),
        (info.last_modified, "head"),
    ] {
        let at = entry.unwrap_or_else(|| panic!("{what} reports the last-modified time"));
        assert!(
            (at - now).abs() < 900,
            "{what}: last modified {at}, now {now}"
        );
    }

    // The status cache trusts an object it read before only while key, ETag and
    // Last-Modified of the listing are unchanged: the listing must report the ETag HEAD does,
    // and new content must change it.
    let head_0 = store.head(&keys[0]).await.expect("head");
    assert!(listed[1].etag.is_some(), "list reports the etag");
    assert_eq!(
        listed[1].etag, head_0.etag,
        "list and head agree on the etag"
    );
    store
        .put(&keys[0], Bytes::from_static(b"new"), &PutOptions::default())
        .await
        .expect("overwrite");
    let info = store.head(&keys[0]).await.expect("head after overwrite");
    assert_eq!(info.size, 3);
    assert!(info.metadata.is_empty(), "overwrite replaces metadata");
    let relisted = store.list(&keys[0]).await.expect("list after overwrite");
    assert_eq!(relisted.len(), 1, "{relisted:?}");
    assert_eq!(
        relisted[0].etag, info.etag,
        "the listing shows the new etag"
    );
    assert_ne!(relisted[0].etag, listed[1].etag, "new content, new etag");

    for key in &keys {
        store.delete(key).await.expect("delete");
    }
    assert!(store.list(prefix).await.expect("list").is_empty());
    store
        .delete(&keys[0])
        .await
        .expect("deleting a missing key succeeds");
}

/// `get_range` returns exactly the requested bytes, clips at the end, and rejects a start past the end.
pub async fn ranged_get(store: &dyn ObjectStore, prefix: &str) {
    let key = format!("{prefix}ranged");
    let data = sample_data(300_000);
    store
        .put(&key, data.clone(), &PutOptions::default())
        .await
        .expect("put");
    assert_eq!(store.get_range(&key, 0..300_000).await.expect("all"), data);
    assert_eq!(
        store.get_range(&key, 1000..1010).await.expect("middle"),
        data.slice(1000..1010)
    );
    assert_eq!(
        store.get_range(&key, 299_990..400_000).await.expect("tail"),
        data.slice(299_990..),
        "a range past the end is clipped"
    );
    assert!(store.get_range(&key, 5..5).await.expect("empty").is_empty());
    let err = store
        .get_range(&key, 300_000..300_010)
        .await
        .expect_err("start past the end");
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    store.delete(&key).await.expect("delete");
}

/// `head` and `get_range` of a missing key are [`ErrorKind::NotFound`].
pub async fn missing_key_is_not_found(store: &dyn ObjectStore, prefix: &str) {
    let key = format!("{prefix}does-not-exist");
    let err = store.head(&key).await.expect_err("head of a missing key");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.to_string().contains(&key),
        "message names the key: {err}"
    );
    let err = store
        .get_range(&key, 0..10)
        .await
        .expect_err("get of a missing key");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

/// A 6 MiB object in two parts (5 MiB + 1 MiB) round-trips with its metadata, and the upload
/// is no longer listed afterwards.
pub async fn multipart_round_trip(store: &dyn ObjectStore, prefix: &str) {
    let key = format!("{prefix}pool/fs@zfs-auto-snap:daily-2024-01-02");
    let data = sample_data(6 * 1024 * 1024);
    let split = MIN_PART_SIZE as usize;
    let id = store
        .create_multipart(&key, &options())
        .await
        .expect("create");
    // Upload the parts out of order, as concurrent workers would.
    let (first, second) = (data.slice(..split), data.slice(split..));
    let checksums = [Crc32c::of(&first), Crc32c::of(&second)];
    let p2 = store
        .put_part(&key, &id, part(2), second, checksums[1])
        .await
        .expect("part 2");
    let p1 = store
        .put_part(&key, &id, part(1), first, checksums[0])
        .await
        .expect("part 1");
    let open = store
        .list_multipart_uploads(prefix)
        .await
        .expect("list uploads");
    assert!(
        open.iter().any(|u| u.upload_id == id && u.key == key),
        "the open upload is listed: {open:?}"
    );
    // ListParts: what a resumed upload checks its journal against.
    let listed = store.list_parts(&key, &id).await.expect("list parts");
    let seen: Vec<_> = listed
        .iter()
        .map(|p| (p.part_number, p.size, p.etag.as_str()))
        .collect();
    let sizes = [split as u64, (data.len() - split) as u64];
    assert_eq!(
        seen,
        [
            (part(1), sizes[0], p1.etag.as_str()),
            (part(2), sizes[1], p2.etag.as_str())
        ],
        "listed parts"
    );
    let done = store
        .complete_multipart(&key, &id, vec![p1, p2], &crate::Precondition::None)
        .await
        .expect("complete");
    assert!(done.etag.ends_with("-2\""), "multipart etag {}", done.etag);
    let expected = composite_crc32c(&checksums);
    let reported = match done.checksum_crc32c {
        Some(checksum) => checksum,
        None => store
            .head_checksum(&key)
            .await
            .expect("head_checksum")
            .checksum_crc32c
            .expect("the composite checksum, from the completion or a HEAD in checksum mode"),
    };
    assert!(
        reported == expected || reported == expected.split('-').next().unwrap_or_default(),
        "composite checksum: server {reported}, local {expected}"
    );
    let info = store.head(&key).await.expect("head");
    assert_eq!(info.size, data.len() as u64);
    assert_eq!(info.metadata, sample_metadata());
    let got = store
        .get_range(&key, 0..data.len() as u64)
        .await
        .expect("get");
    assert!(got == data, "content round trip");
    let open = store
        .list_multipart_uploads(prefix)
        .await
        .expect("list uploads");
    assert!(
        !open.iter().any(|u| u.upload_id == id),
        "completed upload is gone"
    );
    let err = store
        .put_part(&key, &id, part(3), late(), Crc32c::of(&late()))
        .await
        .expect_err("part after completion");
    assert_eq!(err.kind(), ErrorKind::NoSuchUpload, "{err}");
    let err = store
        .list_parts(&key, &id)
        .await
        .expect_err("parts after completion");
    assert_eq!(err.kind(), ErrorKind::NoSuchUpload, "{err}");
    store.delete(&key).await.expect("delete");
}

/// S3's multipart rules: a non-last part under 5 MiB and a wrong part ETag are
/// [`ErrorKind::InvalidRequest`] at completion; after an abort the upload is not listed and
/// its id is [`ErrorKind::NoSuchUpload`]; no object is created.
pub async fn multipart_rules(store: &dyn ObjectStore, prefix: &str) {
    let key = format!("{prefix}rules");
    let id = store
        .create_multipart(&key, &PutOptions::default())
        .await
        .expect("create");
    let small = |byte: u8| Bytes::from(vec![byte; 1024]);
    let p1 = store
        .put_part(&key, &id, part(1), small(1), Crc32c::of(&small(1)))
        .await
        .expect("small part 1");
    let p2 = store
        .put_part(&key, &id, part(2), small(2), Crc32c::of(&small(2)))
        .await
        .expect("part 2");
    // A body that does not match its CRC32C is refused as corrupted in transit, a retryable
    // error, and the part is not stored.
    let err = store
        .put_part(&key, &id, part(3), small(3), Crc32c::of(&small(4)))
        .await
        .expect_err("part with a wrong checksum");
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(err.to_string().contains("part 3"), "{err}");
    let err = store
        .complete_multipart(
            &key,
            &id,
            vec![p1.clone(), p2.clone()],
            &crate::Precondition::None,
        )
        .await
        .expect_err("non-last part under 5 MiB");
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");

    let mut wrong = p2.clone();
    "\"0123456789abcdef0123456789abcdef\"".clone_into(&mut wrong.etag);
    let err = store
        .complete_multipart(&key, &id, vec![wrong], &crate::Precondition::None)
        .await
        .expect_err("wrong part etag");
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");

    store.abort_multipart(&key, &id).await.expect("abort");
    // AWS answers a second abort with NoSuchUpload; SeaweedFS 4.x answers 204. Either is fine
    // for z3, which aborts once and only logs a failing abort.
    if let Err(err) = store.abort_multipart(&key, &id).await {
        assert_eq!(err.kind(), ErrorKind::NoSuchUpload, "{err}");
    }
    let open = store
        .list_multipart_uploads(prefix)
        .await
        .expect("list uploads");
    assert!(
        !open.iter().any(|u| u.upload_id == id),
        "aborted upload is not listed: {open:?}"
    );
    let err = store
        .put_part(&key, &id, part(3), late(), Crc32c::of(&late()))
        .await
        .expect_err("part after abort");
    assert_eq!(err.kind(), ErrorKind::NoSuchUpload, "{err}");
    let err = store.head(&key).await.expect_err("no object after abort");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

/// The bucket exists and is accessible.
pub async fn bucket_is_reachable(store: &dyn ObjectStore) {
    store.check_bucket().await.expect("check_bucket");
}

/// `store` points at a bucket that does not exist: [`ErrorKind::NoSuchBucket`], naming the bucket.
pub async fn missing_bucket(store: &dyn ObjectStore) {
    let err = store.check_bucket().await.expect_err("missing bucket");
    assert_eq!(err.kind(), ErrorKind::NoSuchBucket, "{err}");
    assert!(err.to_string().contains(store.bucket()), "{err}");
    let err = store.list("").await.expect_err("list in a missing bucket");
    assert_eq!(err.kind(), ErrorKind::NoSuchBucket, "{err}");
}

/// `store` uses a wrong secret: [`ErrorKind::AccessDenied`] for bucket and object calls.
pub async fn access_denied(store: &dyn ObjectStore) {
    let err = store.check_bucket().await.expect_err("wrong secret");
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
    let err = store.list("").await.expect_err("list with a wrong secret");
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
    let err = store
        .put(
            "z3-denied",
            Bytes::from_static(b"x"),
            &PutOptions::default(),
        )
        .await
        .expect_err("put with a wrong secret");
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
}

/// [`MultipartUploader`] and [`Downloader`] against the store: 11 MiB + 17 bytes in 5 MiB
/// parts (three parts, the last short), read back with small ranges in parallel.
pub async fn uploader_round_trip(store: Arc<dyn ObjectStore>, prefix: &str) {
    let key = format!("{prefix}uploaded");
    let data = sample_data(11 * 1024 * 1024 + 17);
    let uploader = MultipartUploader::new(
        Arc::clone(&store),
        UploadConfig {
            part_size: MIN_PART_SIZE,
            concurrency: 2,
            ..UploadConfig::default()
        },
    );
    let report = uploader
        .upload(&key, &options(), &data[..])
        .await
        .expect("upload");
    assert_eq!(report.bytes, data.len() as u64);
    assert_eq!(report.parts, 3);
    let parts: Vec<Crc32c> = data
        .chunks(split_at(MIN_PART_SIZE))
        .map(Crc32c::of)
        .collect();
    assert_eq!(report.checksum_crc32c, composite_crc32c(&parts));
    assert!(
        report.checksum_verified,
        "the server confirmed the composite checksum"
    );
    let info = store.head(&key).await.expect("head");
    assert_eq!(info.size, data.len() as u64);
    let mut expected = sample_metadata();
    expected.insert(crate::UPLOAD_TOKEN_META.to_owned(), report.token.clone());
    assert_eq!(info.metadata, expected);
    assert!(
        store
            .list_multipart_uploads(&key)
            .await
            .expect("list uploads")
            .is_empty(),
        "no upload left open"
    );

    let downloader = Downloader::new(
        Arc::clone(&store),
        DownloadConfig {
            part_size: 3 * 1024 * 1024 + 1,
            concurrency: 3,
            retry: RetryConfig::default(),
        },
    );
    let mut out = Vec::new();
    let written = downloader
        .download_to(&key, info.size, info.etag.as_deref(), &mut out)
        .await
        .expect("download");
    assert_eq!(written, data.len() as u64);
    assert!(out == data[..], "download matches upload");
    store.delete(&key).await.expect("delete");
}

/// A failing input stream makes [`MultipartUploader`] abort: [`ErrorKind::Source`], no object,
/// no open upload, even after parts were uploaded.
pub async fn uploader_failure_leaves_nothing(store: Arc<dyn ObjectStore>, prefix: &str) {
    let key = format!("{prefix}failed");
    let data = sample_data(6 * 1024 * 1024);
    let reader =
        tokio::io::AsyncReadExt::chain(&data[..], FailingReader("zfs send exited with status 1"));
    let uploader = MultipartUploader::new(
        Arc::clone(&store),
        UploadConfig {
            part_size: MIN_PART_SIZE,
            concurrency: 2,
            ..UploadConfig::default()
        },
    );
    let err = uploader
        .upload(&key, &options(), reader)
        .await
        .expect_err("failing input");
    assert_eq!(err.kind(), ErrorKind::Source, "{err}");
    let err = store.head(&key).await.expect_err("no object");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        store
            .list_multipart_uploads(&key)
            .await
            .expect("list uploads")
            .is_empty(),
        "no upload left open"
    );
}

fn late() -> Bytes {
    Bytes::from_static(b"late")
}

/// An input that fails on the first read, like a `zfs send` that died.
struct FailingReader(&'static str);

impl tokio::io::AsyncRead for FailingReader {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Err(std::io::Error::other(self.0)))
    }
}

/// A conditional create succeeds on a free key, fails with `AlreadyExists` on a taken one (the
/// object keeps its first content), and succeeds again once the key was deleted.
pub async fn conditional_create(store: &dyn ObjectStore, prefix: &str) {
    let key = format!("{prefix}locks/pool/fs");
    let once = PutOptions {
        if_none_match: true,
        ..PutOptions::default()
    };
    store
        .put(&key, Bytes::from_static(b"first"), &once)
        .await
        .expect("free key");
    let err = store
        .put(&key, Bytes::from_static(b"second"), &once)
        .await
        .expect_err("taken key");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    let info = store.head(&key).await.expect("head");
    let body = store.get_range(&key, 0..info.size).await.expect("get");
    assert_eq!(&body[..], b"first");
    store.delete(&key).await.expect("delete");
    store
        .put(&key, Bytes::from_static(b"third"), &once)
        .await
        .expect("free again");
    store.delete(&key).await.expect("delete");
}

/// A completion conditional on the key (`If-None-Match: *`, `If-Match: <etag>`) takes effect
/// only when the key is as expected; otherwise the existing object is untouched and the upload
/// stays open. A ranged GET with `If-Match` reads only the object with that ETag.
pub async fn conditional_complete(store: &dyn ObjectStore, prefix: &str) {
    let key = format!("{prefix}obj");
    let key = key.as_str();
    let one_part = |body: &'static [u8]| async move {
        let id = store
            .create_multipart(key, &PutOptions::default())
            .await
            .expect("create");
        let bytes = Bytes::from_static(body);
        let part = store
            .put_part(
                key,
                &id,
                PartNumber::FIRST,
                bytes.clone(),
                Crc32c::of(&bytes),
            )
            .await
            .expect("part");
        (id, part)
    };
    let read = || async {
        let info = store.head(key).await.expect("head");
        let body = store.get_range(key, 0..info.size).await.expect("get");
        (body, info.etag.expect("etag"))
    };
    // A free key: If-None-Match: * completes.
    let (id, part) = one_part(b"first").await;
    store
        .complete_multipart(key, &id, vec![part], &Precondition::KeyFree)
        .await
        .expect("free key");
    let (body, first_etag) = read().await;
    assert_eq!(&body[..], b"first");
    // A taken key: refused, the object stays.
    let (id, part) = one_part(b"second").await;
    let err = store
        .complete_multipart(key, &id, vec![part.clone()], &Precondition::KeyFree)
        .await
        .expect_err("taken key");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    // If-Match with another ETag: refused too.
    let err = store
        .complete_multipart(
            key,
            &id,
            vec![part.clone()],
            &Precondition::Unchanged("\"0123456789abcdef0123456789abcdef-1\"".to_owned()),
        )
        .await
        .expect_err("other etag");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert_eq!(&read().await.0[..], b"first");
    // If-Match with the ETag of the object in place: replaced.
    store
        .complete_multipart(
            key,
            &id,
            vec![part],
            &Precondition::Unchanged(first_etag.clone()),
        )
        .await
        .expect("unchanged key");
    assert_eq!(&read().await.0[..], b"second");
    // A ranged GET pinned to the ETag in place reads; pinned to another, it is refused (412).
    let (_, etag) = read().await;
    let mut out = Vec::new();
    let len = store
        .read_range(key, 0..3, Some(&etag), &mut out)
        .await
        .expect("pinned to the object in place");
    assert_eq!(len, 3);
    let err = store
        .read_range(key, 0..3, Some(&first_etag), &mut Vec::new())
        .await
        .expect_err("pinned to the replaced object");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    store.delete(key).await.expect("delete");
}

// ---- Versions and Object Lock. These need a bucket created with Object Lock enabled (which
// enables versioning); `run_object_lock` runs them all.

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Reads all of one version.
async fn read_version(store: &dyn ObjectStore, key: &str, version_id: &str, len: u64) -> Vec<u8> {
    let mut out = Vec::new();
    store
        .read_range_version(key, version_id, 0..len, &mut out)
        .await
        .expect("read a version by id");
    out.concat()
}

/// Deletes every version and delete marker under `prefix`; retention must have expired.
async fn purge_versions(store: &dyn ObjectStore, prefix: &str) {
    for entry in store.list_versions(prefix).await.expect("list versions") {
        store
            .delete_version(&entry.key, &entry.version_id)
            .await
            .expect("delete a version whose retention expired");
    }
    assert!(
        store.list_versions(prefix).await.expect("list").is_empty(),
        "no version left under {prefix}"
    );
}

/// `object_lock_config` tells an Object Lock bucket (`lock`: versioned, lock on) from one
/// without (`plain`: never versioned), and a retention on `plain` is refused as invalid.
pub async fn object_lock_capability(lock: &dyn ObjectStore, plain: &dyn ObjectStore, prefix: &str) {
    let config = lock.object_lock_config().await.expect("lock bucket config");
    assert!(config.object_lock, "{config:?}");
    assert_eq!(config.versioning, Versioning::Enabled, "{config:?}");
    assert!(config.supports_retention());
    let config = plain
        .object_lock_config()
        .await
        .expect("plain bucket config");
    assert!(!config.object_lock, "{config:?}");
    assert!(!config.supports_retention());
    assert_eq!(config.versioning, Versioning::Unversioned, "{config:?}");
    assert_eq!(config.default_retention, None);

    let key = format!("{prefix}refused");
    let options = PutOptions {
        object_lock: Some(Retention {
            mode: RetentionMode::Governance,
            retain_until: unix_now() + 3600,
        }),
        ..PutOptions::default()
    };
    let err = plain
        .put(&key, Bytes::from_static(b"x"), &options)
        .await
        .expect_err("a retention on a bucket without Object Lock");
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    let err = plain.head(&key).await.expect_err("nothing was written");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

/// On a versioned bucket a plain DELETE only hides an object behind a delete marker: `list`
/// and `head` no longer see it, `list_versions` shows the marker (latest) and both data
/// versions, newest first, and each version stays readable by id. Deleting the marker brings
/// the object back.
pub async fn delete_marker_hides_but_keeps(store: &dyn ObjectStore, prefix: &str) {
    let key = format!("{prefix}pool/fs@hidden");
    let first = store
        .put(&key, Bytes::from_static(b"first"), &options())
        .await
        .expect("put first");
    let v1 = store
        .head(&key)
        .await
        .expect("head")
        .version_id
        .expect("a version id");
    store
        .put(&key, Bytes::from_static(b"second!"), &PutOptions::default())
        .await
        .expect("put second");
    let v2 = store
        .head(&key)
        .await
        .expect("head")
        .version_id
        .expect("a version id");
    assert_ne!(v1, v2, "each put is a version");

    store.delete(&key).await.expect("plain delete");
    let err = store.head(&key).await.expect_err("hidden from head");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = store
        .get_range(&key, 0..1)
        .await
        .expect_err("hidden from get");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        store.list(prefix).await.expect("list").is_empty(),
        "hidden from list"
    );

    let versions = store.list_versions(prefix).await.expect("list versions");
    let shape: Vec<(bool, bool)> = versions
        .iter()
        .map(|v| (v.is_latest, v.is_delete_marker))
        .collect();
    assert_eq!(
        shape,
        [(true, true), (false, false), (false, false)],
        "marker first, then the data versions: {versions:?}"
    );
    assert!(versions.iter().all(|v| v.key == key));
    assert_eq!(versions[1].version_id, v2, "newest data version first");
    assert_eq!(versions[1].size, 7);
    assert_eq!(versions[2].version_id, v1);
    assert_eq!(versions[2].etag.as_deref(), Some(first.as_str()));
    assert_eq!(versions[0].size, 0);
    let marker = versions[0].version_id.clone();
    let hidden = crate::hidden_versions(&versions);
    assert_eq!(hidden.len(), 1);
    assert_eq!(hidden[0].version_id, v2);

    assert_eq!(read_version(store, &key, &v1, 5).await, b"first");
    assert_eq!(read_version(store, &key, &v2, 7).await, b"second!");
    let info = store
        .head_version(&key, &v1)
        .await
        .expect("head a hidden version");
    assert_eq!(info.size, 5);
    assert_eq!(info.metadata, sample_metadata());
    assert_eq!(info.version_id.as_deref(), Some(v1.as_str()));
    // AWS answers a HEAD of a delete marker with 405 MethodNotAllowed; SeaweedFS 4.48 with
    // 404 (docs/compatibility.md).
    let err = store
        .head_version(&key, &marker)
        .await
        .expect_err("a delete marker has no data");
    assert!(
        matches!(err.kind(), ErrorKind::InvalidRequest | ErrorKind::NotFound),
        "{err}"
    );

    store
        .delete_version(&key, &marker)
        .await
        .expect("remove the marker");
    let info = store.head(&key).await.expect("visible again");
    assert_eq!(info.size, 7);
    assert_eq!(info.version_id.as_deref(), Some(v2.as_str()));
    // A version that does not exist: deleting it succeeds, as for a missing key.
    store
        .delete_version(&key, &marker)
        .await
        .expect("deleting a missing version succeeds");
    purge_versions(store, prefix).await;
}

/// Retention, in both modes, written by `put` and by a multipart upload: `head` and
/// `head_version` report it; a plain DELETE adds a marker, but the locked version's
/// `delete_version` is [`ErrorKind::Locked`]; a retention can be extended, never shortened
/// or weakened ([`ErrorKind::Locked`]); [`crate::extend_retention`] leaves a longer one alone.
/// Once it expired the versions can be deleted (the check waits a few seconds for that).
pub async fn retention_blocks_deletion(store: &dyn ObjectStore, prefix: &str) {
    let governed = format!("{prefix}pool/fs@governed");
    let complied = format!("{prefix}pool/fs@complied");
    // Short retention, so that the check can clean up after itself; whole seconds, as S3 keeps them.
    let until = unix_now() + 4;
    let governance = Retention {
        mode: RetentionMode::Governance,
        retain_until: until,
    };
    let compliance = Retention {
        mode: RetentionMode::Compliance,
        retain_until: until,
    };
    store
        .put(
            &governed,
            Bytes::from_static(b"governed"),
            &PutOptions {
                object_lock: Some(governance),
                ..options()
            },
        )
        .await
        .expect("put with governance retention");
    let info = store.head(&governed).await.expect("head");
    assert_eq!(
        info.retention_mode,
        Some(RetentionMode::Governance),
        "{info:?}"
    );
    assert_eq!(info.retain_until, Some(until), "{info:?}");
    assert!(!info.legal_hold);
    assert!(info.is_locked_at(until - 1) && !info.is_locked_at(until));
    let gv = info.version_id.clone().expect("a version id");
    assert_eq!(
        store
            .head_version(&governed, &gv)
            .await
            .expect("head_version"),
        info
    );

    let id = store
        .create_multipart(
            &complied,
            &PutOptions {
                object_lock: Some(compliance),
                ..PutOptions::default()
            },
        )
        .await
        .expect("create with compliance retention");
    let body = Bytes::from_static(b"complied");
    let part = store
        .put_part(
            &complied,
            &id,
            PartNumber::FIRST,
            body.clone(),
            Crc32c::of(&body),
        )
        .await
        .expect("part");
    store
        .complete_multipart(&complied, &id, vec![part], &Precondition::None)
        .await
        .expect("complete");
    let info = store.head(&complied).await.expect("head");
    assert_eq!(
        info.retention_mode,
        Some(RetentionMode::Compliance),
        "{info:?}"
    );
    assert_eq!(info.retain_until, Some(until), "{info:?}");
    let cv = info.version_id.expect("a version id");

    // A plain DELETE is allowed (it only adds a marker); the version itself is not deleted.
    store
        .delete(&governed)
        .await
        .expect("plain delete of a locked object");
    for (key, version) in [(&governed, &gv), (&complied, &cv)] {
        let err = store
            .delete_version(key, version)
            .await
            .expect_err("a version under retention");
        assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
        assert!(err.to_string().contains(key.as_str()), "{err}");
    }
    assert_eq!(read_version(store, &governed, &gv, 8).await, b"governed");

    retention_only_extends(store, [(&governed, &gv), (&complied, &cv)], until).await;

    // Once the retention expired, the versions go.
    let wait = u64::try_from(until + 2 - unix_now()).unwrap_or(0);
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    purge_versions(store, prefix).await;
}

/// The second half of [`retention_blocks_deletion`]: `governed` and `complied` (key and
/// version) hold governance and compliance retention until `until`.
async fn retention_only_extends(
    store: &dyn ObjectStore,
    [(governed, gv), (complied, cv)]: [(&String, &String); 2],
    until: i64,
) {
    let governance = Retention {
        mode: RetentionMode::Governance,
        retain_until: until,
    };
    let compliance = Retention {
        mode: RetentionMode::Compliance,
        retain_until: until,
    };
    // Shortening or weakening is refused; extending works.
    for (key, version, shorter) in [
        (
            &governed,
            &gv,
            Retention {
                retain_until: until - 1,
                ..governance
            },
        ),
        (
            &complied,
            &cv,
            Retention {
                retain_until: until - 1,
                ..compliance
            },
        ),
        (
            &complied,
            &cv,
            Retention {
                retain_until: until + 1,
                ..governance
            },
        ),
    ] {
        let err = store
            .put_retention(key, version, shorter)
            .await
            .expect_err("a shorter or weaker retention");
        assert_eq!(err.kind(), ErrorKind::Locked, "{shorter:?}: {err}");
    }
    let later = Retention {
        retain_until: until + 1,
        ..governance
    };
    store
        .put_retention(governed, gv, later)
        .await
        .expect("extend governance");
    let info = store
        .head_version(governed, gv)
        .await
        .expect("head_version");
    assert_eq!(info.retain_until, Some(until + 1));
    let config = RetryConfig::default();
    assert_eq!(
        crate::extend_retention(store, governed, gv, governance, &config)
            .await
            .expect("extend to an earlier date"),
        crate::RetentionChange::Unchanged(later),
        "a longer retention is left alone"
    );
    assert_eq!(
        crate::extend_retention(store, complied, cv, later, &config)
            .await
            .expect("extend to a later date in a weaker mode"),
        crate::RetentionChange::Set(Retention {
            mode: RetentionMode::Compliance,
            retain_until: until + 1
        }),
        "the later date in the stronger mode"
    );
}

/// Every Object Lock check, on `lock` (a bucket created with Object Lock) and `plain` (a
/// bucket without versioning).
pub async fn run_object_lock(lock: &dyn ObjectStore, plain: &dyn ObjectStore, prefix: &str) {
    object_lock_capability(lock, plain, &format!("{prefix}cap/")).await;
    delete_marker_hides_but_keeps(lock, &format!("{prefix}marker/")).await;
    retention_blocks_deletion(lock, &format!("{prefix}retention/")).await;
}

/// Every check that needs only a working store, in order.
pub async fn run_all(store: Arc<dyn ObjectStore>, prefix: &str) {
    bucket_is_reachable(&*store).await;
    put_head_list_round_trip(&*store, &format!("{prefix}phl/")).await;
    ranged_get(&*store, &format!("{prefix}range/")).await;
    missing_key_is_not_found(&*store, &format!("{prefix}missing/")).await;
    multipart_round_trip(&*store, &format!("{prefix}mp/")).await;
    multipart_rules(&*store, &format!("{prefix}rules/")).await;
    conditional_create(&*store, &format!("{prefix}cond/")).await;
    conditional_complete(&*store, &format!("{prefix}condmp/")).await;
    uploader_round_trip(Arc::clone(&store), &format!("{prefix}up/")).await;
    uploader_failure_leaves_nothing(store, &format!("{prefix}upfail/")).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_pattern() {
        let data = sample_data(6 * 1024 * 1024);
        assert_eq!(&data[..6], &[0, 0, 0, 1, 0, 2]);
        assert_eq!(&data[510..514], &[0, 255, 0, 0]);
        let block3 = 3 * 1024 * 1024;
        assert_eq!(&data[block3..block3 + 4], &[3, 0, 3, 1]);
    }
}

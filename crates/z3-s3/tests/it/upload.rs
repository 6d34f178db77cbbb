//! `MultipartUploader` over `FaultyStore<MemoryStore>` with paused time: reassembly, retries,
//! aborts, limits, memory bounds.

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;
use z3_s3::{
    ChecksumReply, CompletedPart, CompletedUpload, Crc32c, ErrorKind, FaultyStore, ListEntry,
    MemoryStore, MultipartUploadInfo, MultipartUploader, ObjectInfo, ObjectStore, Op, PartGrowth,
    PartNumber, PartSizer, PutOptions, RetryConfig, UploadConfig, UploadId, composite_crc32c,
};

use crate::support::{TestReader, pattern};

const KEY: &str = "z3/pool/fs@snap";

fn retry() -> RetryConfig {
    RetryConfig {
        max_attempts: 5,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(5),
    }
}

/// Fixed parts of `part_size` bytes (no growth), so tests can use tiny parts.
fn config(part_size: u64, concurrency: usize) -> UploadConfig {
    UploadConfig {
        part_size,
        concurrency,
        retry: retry(),
        growth: PartGrowth::Fixed,
        ..UploadConfig::default()
    }
}

/// A faulty store over a memory store whose minimum part size equals `part_size`, so any
/// non-last part shorter than `part_size` would be rejected at completion.
fn store(part_size: u64) -> Arc<FaultyStore<MemoryStore>> {
    Arc::new(FaultyStore::new(MemoryStore::with_min_part_size(
        "bucket", part_size,
    )))
}

fn part(n: u16) -> PartNumber {
    PartNumber::new(n).unwrap()
}

fn options() -> PutOptions {
    PutOptions {
        metadata: BTreeMap::from([
            ("isfull".to_owned(), "true".to_owned()),
            ("size".to_owned(), "12345".to_owned()),
        ]),
        storage_class: Some("STANDARD_IA".to_owned()),
        acl: Some("bucket-owner-full-control".to_owned()),
        ..PutOptions::default()
    }
}

/// Nothing stored and nothing left open: what every failed upload must leave behind.
fn assert_clean(store: &FaultyStore<MemoryStore>) {
    assert!(
        store.inner().object(KEY).is_none(),
        "no object after failure"
    );
    assert_eq!(
        store.inner().open_uploads(),
        0,
        "no open upload after failure"
    );
}

#[tokio::test(start_paused = true)]
async fn bytes_reassemble_exactly() {
    // (part size, input length, read chunk): exact multiples, short last parts, one part,
    // and reads that straddle part boundaries.
    let cases = [
        (1, 5, 1),
        (2, 9, 3),
        (7, 100, 5),
        (64, 64, 64),
        (64, 65, 1000),
        (1000, 999, 333),
        (4096, 40_000, 1500),
    ];
    for (part_size, len, chunk) in cases {
        let store = store(part_size);
        let data = pattern(len);
        let uploader = MultipartUploader::new(Arc::clone(&store), config(part_size, 3));
        let report = uploader
            .upload(KEY, &options(), TestReader::new(data.clone(), chunk))
            .await
            .unwrap();
        let parts = len.div_ceil(part_size as usize);
        assert_eq!(report.bytes, len as u64);
        assert_eq!(usize::from(report.parts), parts, "part size {part_size}");
        assert_eq!(store.calls(Op::PutPart), parts as u64);
        let (stored, metadata, class) = store.inner().object(KEY).unwrap();
        assert!(
            stored == data,
            "content for part size {part_size}, len {len}"
        );
        let mut expected = options().metadata;
        expected.insert(z3_s3::UPLOAD_TOKEN_META.to_owned(), report.token.clone());
        assert_eq!(metadata, expected);
        assert_eq!(class.as_deref(), Some("STANDARD_IA"));
        let details = store.inner().object_details(KEY).unwrap();
        assert_eq!(details.acl.as_deref(), Some("bucket-owner-full-control"));
        assert_eq!(details.etag, report.etag);
        assert_eq!(store.inner().open_uploads(), 0);
        assert_eq!(store.calls(Op::AbortMultipart), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn real_minimum_part_size_six_mib() {
    // The original pput sample: 6 MiB in 5 MiB parts is two parts, against S3's real minimum.
    let store = Arc::new(MemoryStore::new("bucket"));
    let data = z3_s3::conformance::sample_data(6 * 1024 * 1024);
    let uploader = MultipartUploader::new(Arc::clone(&store), UploadConfig::default());
    let report = uploader
        .upload(KEY, &PutOptions::default(), &data[..])
        .await
        .unwrap();
    assert_eq!(report.parts, 2);
    assert!(store.object(KEY).unwrap().0 == data);
}

#[tokio::test(start_paused = true)]
async fn part_failing_n_times_then_succeeding_is_retried() {
    for failures in [1, 2, 4] {
        let store = store(10);
        store.fail_part(part(2), failures);
        let data = pattern(35);
        let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
        uploader
            .upload(KEY, &options(), TestReader::new(data.clone(), 7))
            .await
            .unwrap();
        assert_eq!(store.part_calls(part(2)), u64::from(failures) + 1);
        for other in [1, 3, 4] {
            assert_eq!(store.part_calls(part(other)), 1, "part {other}");
        }
        assert!(store.inner().object(KEY).unwrap().0 == data);
        assert_eq!(store.calls(Op::AbortMultipart), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn throttled_parts_back_off() {
    let store = store(10);
    store.fail_part_with(part(1), 3, ErrorKind::Throttled);
    let start = tokio::time::Instant::now();
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
    uploader
        .upload(KEY, &options(), TestReader::new(pattern(15), 15))
        .await
        .unwrap();
    assert_eq!(store.part_calls(part(1)), 4);
    // Three backoffs of at least the initial 100 ms each (paused clock, so exact).
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn permanent_part_failure_aborts_exactly_once() {
    let store = store(10);
    store.fail_part(part(3), 100);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
    let err = uploader
        .upload(KEY, &options(), TestReader::new(pattern(100), 10))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(err.to_string().contains("part 3"), "{err}");
    assert!(
        err.to_string().contains("gave up after 5 attempts"),
        "{err}"
    );
    assert_eq!(store.part_calls(part(3)), 5, "max_attempts total tries");
    assert_eq!(store.calls(Op::AbortMultipart), 1);
    assert_eq!(store.calls(Op::CompleteMultipart), 0);
    assert_clean(&store);
}

#[tokio::test(start_paused = true)]
async fn non_retryable_part_failure_is_not_retried() {
    let store = store(10);
    store.fail_part_with(part(1), 1, ErrorKind::AccessDenied);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 1));
    let err = uploader
        .upload(KEY, &options(), TestReader::new(pattern(30), 10))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied);
    assert_eq!(store.part_calls(part(1)), 1);
    assert_eq!(store.calls(Op::AbortMultipart), 1);
    assert_clean(&store);
}

#[tokio::test(start_paused = true)]
async fn input_error_mid_stream_aborts_with_source_error() {
    let store = store(10);
    let reader = TestReader::new(pattern(25), 4)
        .then_fail(io::Error::other("zfs send exited with status 1"));
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
    let err = uploader.upload(KEY, &options(), reader).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source);
    assert_eq!(
        err.io_error().unwrap().to_string(),
        "zfs send exited with status 1"
    );
    assert!(
        err.to_string().contains("s3://bucket/z3/pool/fs@snap"),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert_eq!(store.calls(Op::AbortMultipart), 1);
    assert_eq!(store.calls(Op::CompleteMultipart), 0);
    assert_clean(&store);
}

#[tokio::test(start_paused = true)]
async fn input_error_before_any_byte_creates_nothing() {
    let store = store(10);
    let reader = TestReader::new(Vec::new(), 4).then_fail(io::Error::other("no such dataset"));
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
    let err = uploader.upload(KEY, &options(), reader).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source);
    assert_eq!(store.calls(Op::CreateMultipart), 0);
    assert_clean(&store);
}

#[tokio::test(start_paused = true)]
async fn empty_input_is_an_error_and_leaves_nothing_open() {
    let store = store(10);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
    let err = uploader
        .upload(KEY, &options(), TestReader::new(Vec::new(), 4))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EmptyStream);
    assert!(err.to_string().contains("zero bytes"), "{err}");
    assert_eq!(store.calls(Op::CreateMultipart), 0);
    assert_clean(&store);
}

/// Too many parts, with a one-byte part size: the memory store is built with a one-byte
/// minimum part size (`MemoryStore::with_min_part_size`) so that 10,000 parts are cheap.
#[tokio::test(start_paused = true)]
async fn more_than_ten_thousand_parts_is_refused_before_part_10001() {
    let store = store(1);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(1, 8));
    let err = uploader
        .upload(KEY, &options(), TestReader::new(pattern(10_001), 64))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooManyParts);
    assert!(err.to_string().contains("10000"), "{err}");
    // Part 10,001 is never sent; parts still in flight when the limit is hit are cancelled.
    let sent = store.calls(Op::PutPart);
    assert!(
        (10_000 - 8..=10_000).contains(&sent),
        "{sent} put_part calls"
    );
    assert_eq!(store.calls(Op::AbortMultipart), 1);
    assert_clean(&store);
}

#[tokio::test(start_paused = true)]
async fn exactly_ten_thousand_parts_is_fine() {
    let store = store(1);
    let data = pattern(10_000);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(1, 8));
    let report = uploader
        .upload(KEY, &options(), TestReader::new(data.clone(), 64))
        .await
        .unwrap();
    assert_eq!(report.parts, 10_000);
    assert!(store.inner().object(KEY).unwrap().0 == data);
}

#[tokio::test(start_paused = true)]
async fn parts_finishing_out_of_order_are_completed_in_order() {
    // Part 1 finishes long after the others; the memory store rejects a Complete whose parts
    // are not ascending, so success shows they were sorted.
    let store = store(10);
    store.delay_part(part(1), Duration::from_secs(30));
    store.delay_part(part(2), Duration::from_secs(10));
    let data = pattern(45);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 5));
    let report = uploader
        .upload(KEY, &options(), TestReader::new(data.clone(), 45))
        .await
        .unwrap();
    assert_eq!(report.parts, 5);
    assert!(store.inner().object(KEY).unwrap().0 == data);
}

#[tokio::test(start_paused = true)]
async fn create_is_retried() {
    let store = store(10);
    store.fail(Op::CreateMultipart, 2, ErrorKind::Throttled);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
    uploader
        .upload(KEY, &options(), TestReader::new(pattern(5), 5))
        .await
        .unwrap();
    assert_eq!(store.calls(Op::CreateMultipart), 3);
    // Failures before the request reached the server: nothing to clean up, one look.
    assert_eq!(store.calls(Op::ListMultipartUploads), 1);
    assert_eq!(store.calls(Op::AbortMultipart), 0);
}

#[tokio::test(start_paused = true)]
async fn complete_failing_every_attempt_aborts() {
    let store = store(10);
    store.fail(Op::CompleteMultipart, 100, ErrorKind::Transient);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
    let err = uploader
        .upload(KEY, &options(), TestReader::new(pattern(25), 25))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert_eq!(store.calls(Op::CompleteMultipart), 5);
    assert_eq!(store.calls(Op::AbortMultipart), 1);
    assert_clean(&store);
}

#[tokio::test(start_paused = true)]
async fn complete_rejected_is_not_retried_and_aborts() {
    let store = store(10);
    store.fail(Op::CompleteMultipart, 1, ErrorKind::InvalidRequest);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
    let err = uploader
        .upload(KEY, &options(), TestReader::new(pattern(25), 25))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert_eq!(store.calls(Op::CompleteMultipart), 1);
    assert_eq!(store.calls(Op::AbortMultipart), 1);
    assert_clean(&store);
}

#[tokio::test(start_paused = true)]
async fn lost_complete_response_is_confirmed_by_head() {
    // The first Complete succeeds on the server but its response is lost; the retry says
    // NoSuchUpload; the object has the uploaded size, so the upload counts as done.
    let store = store(10);
    store.fail_after(Op::CompleteMultipart, 1, ErrorKind::Transient);
    let data = pattern(25);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
    let report = uploader
        .upload(KEY, &options(), TestReader::new(data.clone(), 25))
        .await
        .unwrap();
    assert_eq!(store.calls(Op::CompleteMultipart), 2);
    assert_eq!(store.calls(Op::HeadChecksum), 1);
    assert_eq!(store.calls(Op::AbortMultipart), 0);
    assert_eq!(report.bytes, 25);
    let details = store.inner().object_details(KEY).unwrap();
    assert_eq!(report.etag, details.etag);
    assert!(details.data == data);
}

#[tokio::test(start_paused = true)]
async fn no_such_upload_after_retry_with_wrong_size_fails() {
    // A retried Complete says NoSuchUpload but the key holds something else (another size):
    // not ours, so the upload fails (and is aborted) rather than claiming success.
    let store = store(10);
    store.inner().insert(
        KEY,
        Bytes::from_static(b"other writer"),
        &PutOptions::default(),
    );
    store.fail(Op::CompleteMultipart, 1, ErrorKind::Transient);
    store.fail(Op::CompleteMultipart, 1, ErrorKind::NoSuchUpload);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
    let err = uploader
        .upload(KEY, &options(), TestReader::new(pattern(25), 25))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchUpload);
    assert_eq!(store.calls(Op::AbortMultipart), 1);
    assert_eq!(store.inner().open_uploads(), 0);
    assert_eq!(
        store.inner().object(KEY).unwrap().0,
        Bytes::from_static(b"other writer")
    );
}

#[tokio::test(start_paused = true)]
async fn no_such_upload_without_our_object_fails() {
    // The completion failed and the key holds nothing: settled as not completed.
    let store = store(10);
    store.fail(Op::CompleteMultipart, 1, ErrorKind::NoSuchUpload);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
    let err = uploader
        .upload(KEY, &options(), TestReader::new(pattern(25), 25))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchUpload);
    assert_eq!(store.calls(Op::HeadChecksum), 1);
    assert_eq!(store.calls(Op::AbortMultipart), 1);
    assert_clean(&store);
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_completion_answer_is_settled_by_the_upload_token() {
    // moto 5 answers CompleteMultipartUploadResponse where the SDK expects ...Result: the
    // completion happened, its answer is unreadable (a non-retryable error). Reading the key
    // back finds our token and length, so the upload succeeded and nothing is aborted.
    let store = store(10);
    store.fail_after(Op::CompleteMultipart, 1, ErrorKind::Other);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
    let report = uploader
        .upload(KEY, &options(), TestReader::new(pattern(25), 25))
        .await
        .unwrap();
    assert_eq!(store.calls(Op::CompleteMultipart), 1);
    assert_eq!(store.calls(Op::AbortMultipart), 0);
    let (bytes, meta, _) = store.inner().object(KEY).unwrap();
    assert_eq!(bytes.len(), 25);
    assert_eq!(meta.get(z3_s3::UPLOAD_TOKEN_META), Some(&report.token));
    assert!(report.checksum_verified);
}

#[tokio::test(start_paused = true)]
async fn a_whole_object_checksum_is_accepted_and_a_wrong_one_is_not() {
    // moto 5 reports the CRC32C of the whole object instead of the composite one.
    for op in [Op::CompleteMultipart, Op::HeadChecksum] {
        let store = store(10);
        store.checksum_reply(op, ChecksumReply::WholeObject);
        if op == Op::HeadChecksum {
            store.checksum_reply(Op::CompleteMultipart, ChecksumReply::Missing);
        }
        let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
        let report = uploader
            .upload(KEY, &options(), TestReader::new(pattern(25), 25))
            .await
            .unwrap();
        assert!(report.checksum_verified, "{op:?}");
        assert_eq!(store.calls(Op::Delete), 0);
    }
}

/// A store whose `put_part` waits for a permit, and which records how many part bodies it
/// holds at once.
#[derive(Debug)]
struct GateStore {
    inner: MemoryStore,
    gate: Semaphore,
    holding: AtomicUsize,
    max_holding: AtomicUsize,
    /// Part bytes inside `put_part` right now, and the most ever.
    held_bytes: AtomicU64,
    max_held_bytes: AtomicU64,
    /// How long each part takes once through the gate.
    delay: Duration,
    /// Confirm every part with the checksum `AAAAAA==` instead of the one sent.
    echo_wrong_checksum: bool,
    finished: Mutex<Vec<u16>>,
}

impl GateStore {
    fn new(inner: MemoryStore) -> Self {
        Self {
            inner,
            gate: Semaphore::new(0),
            holding: AtomicUsize::new(0),
            max_holding: AtomicUsize::new(0),
            held_bytes: AtomicU64::new(0),
            max_held_bytes: AtomicU64::new(0),
            delay: Duration::ZERO,
            echo_wrong_checksum: false,
            finished: Mutex::new(Vec::new()),
        }
    }

    /// An open gate where every part takes `delay`, so parts overlap as much as allowed.
    fn slow(inner: MemoryStore, delay: Duration) -> Self {
        let store = Self {
            delay,
            ..Self::new(inner)
        };
        store.gate.add_permits(Semaphore::MAX_PERMITS);
        store
    }
}

#[async_trait::async_trait]
impl ObjectStore for GateStore {
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }
    async fn check_bucket(&self) -> z3_s3::Result<()> {
        self.inner.check_bucket().await
    }
    async fn head(&self, key: &str) -> z3_s3::Result<ObjectInfo> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> z3_s3::Result<Vec<ListEntry>> {
        self.inner.list(prefix).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> z3_s3::Result<Bytes> {
        self.inner.get_range(key, range).await
    }
    async fn put(&self, key: &str, body: Bytes, options: &PutOptions) -> z3_s3::Result<String> {
        self.inner.put(key, body, options).await
    }
    async fn delete(&self, key: &str) -> z3_s3::Result<()> {
        self.inner.delete(key).await
    }
    async fn delete_if_match(&self, key: &str, etag: &str) -> z3_s3::Result<()> {
        self.inner.delete_if_match(key, etag).await
    }
    async fn create_multipart(&self, key: &str, options: &PutOptions) -> z3_s3::Result<UploadId> {
        self.inner.create_multipart(key, options).await
    }
    async fn put_part(
        &self,
        key: &str,
        upload_id: &UploadId,
        part: PartNumber,
        body: Bytes,
        checksum: Crc32c,
    ) -> z3_s3::Result<CompletedPart> {
        let now = self.holding.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_holding.fetch_max(now, Ordering::SeqCst);
        let len = body.len() as u64;
        let held = self.held_bytes.fetch_add(len, Ordering::SeqCst) + len;
        self.max_held_bytes.fetch_max(held, Ordering::SeqCst);
        let permit = self.gate.acquire().await.unwrap();
        permit.forget();
        tokio::time::sleep(self.delay).await;
        let mut result = self
            .inner
            .put_part(key, upload_id, part, body, checksum)
            .await;
        if let Ok(done) = &mut result
            && self.echo_wrong_checksum
        {
            done.checksum_crc32c = Some("AAAAAA==".to_owned());
        }
        self.held_bytes.fetch_sub(len, Ordering::SeqCst);
        self.holding.fetch_sub(1, Ordering::SeqCst);
        self.finished.lock().unwrap().push(part.get());
        result
    }
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
        precondition: &z3_s3::Precondition,
    ) -> z3_s3::Result<CompletedUpload> {
        self.inner
            .complete_multipart(key, upload_id, parts, precondition)
            .await
    }
    async fn abort_multipart(&self, key: &str, upload_id: &UploadId) -> z3_s3::Result<()> {
        self.inner.abort_multipart(key, upload_id).await
    }
    async fn list_parts(
        &self,
        key: &str,
        upload_id: &UploadId,
    ) -> z3_s3::Result<Vec<z3_s3::ListedPart>> {
        self.inner.list_parts(key, upload_id).await
    }
    async fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> z3_s3::Result<Vec<MultipartUploadInfo>> {
        self.inner.list_multipart_uploads(prefix).await
    }
    async fn object_lock_config(&self) -> z3_s3::Result<z3_s3::BucketLockConfig> {
        self.inner.object_lock_config().await
    }
    async fn list_versions(&self, prefix: &str) -> z3_s3::Result<Vec<z3_s3::VersionEntry>> {
        self.inner.list_versions(prefix).await
    }
    async fn head_version(&self, key: &str, version_id: &str) -> z3_s3::Result<ObjectInfo> {
        self.inner.head_version(key, version_id).await
    }
    async fn read_range_version(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
        out: &mut Vec<Bytes>,
    ) -> z3_s3::Result<u64> {
        self.inner
            .read_range_version(key, version_id, range, out)
            .await
    }
    async fn delete_version(&self, key: &str, version_id: &str) -> z3_s3::Result<()> {
        self.inner.delete_version(key, version_id).await
    }
    async fn put_retention(
        &self,
        key: &str,
        version_id: &str,
        retention: z3_s3::Retention,
    ) -> z3_s3::Result<()> {
        self.inner.put_retention(key, version_id, retention).await
    }
}

/// Lets every runnable task run until all are waiting (the paused clock then jumps ahead).
async fn settle() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn memory_is_bounded_by_concurrency_plus_one_part() {
    const PART: u64 = 100;
    const CONCURRENCY: usize = 3;
    let store = Arc::new(GateStore::new(MemoryStore::with_min_part_size(
        "bucket", PART,
    )));
    let data = pattern(20 * PART as usize);
    let reader = TestReader::new(data.clone(), 7);
    let read = Arc::clone(&reader.read);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(PART, CONCURRENCY));
    let upload = tokio::spawn(async move { uploader.upload(KEY, &options(), reader).await });

    // Every part blocked: `concurrency` parts are held by the store and one more is filled,
    // then reading stops.
    settle().await;
    assert_eq!(store.holding.load(Ordering::SeqCst), CONCURRENCY);
    assert_eq!(read.load(Ordering::SeqCst), (CONCURRENCY as u64 + 1) * PART);

    // Each finished part lets exactly one more part be read.
    for released in 1..=4u64 {
        store.gate.add_permits(1);
        settle().await;
        assert_eq!(store.holding.load(Ordering::SeqCst), CONCURRENCY);
        assert_eq!(
            read.load(Ordering::SeqCst),
            (CONCURRENCY as u64 + 1 + released) * PART
        );
    }

    store.gate.add_permits(1000);
    let report = upload.await.unwrap().unwrap();
    assert_eq!(report.parts, 20);
    assert_eq!(store.max_holding.load(Ordering::SeqCst), CONCURRENCY);
    assert!(store.inner.object(KEY).unwrap().0 == data);
}

/// ADR 5: the memory budget holds reading back before the slots do. 350 bytes of 100-byte
/// parts: a part is only started while the ones in flight leave room for it, so three parts
/// are held and none is being filled.
#[tokio::test(start_paused = true)]
async fn memory_budget_holds_back_reading_before_the_slots_do() {
    const PART: u64 = 100;
    let store = Arc::new(GateStore::new(MemoryStore::with_min_part_size(
        "bucket", PART,
    )));
    let data = pattern(12 * PART as usize);
    let reader = TestReader::new(data.clone(), 7);
    let read = Arc::clone(&reader.read);
    let config = UploadConfig {
        memory_limit: Some(350),
        ..config(PART, 8)
    };
    let uploader = MultipartUploader::new(Arc::clone(&store), config);
    let upload = tokio::spawn(async move { uploader.upload(KEY, &options(), reader).await });

    settle().await;
    assert_eq!(
        store.holding.load(Ordering::SeqCst),
        3,
        "8 slots, budget for 3"
    );
    assert_eq!(
        read.load(Ordering::SeqCst),
        3 * PART,
        "nothing more is read"
    );
    for released in 1..=3u64 {
        store.gate.add_permits(1);
        settle().await;
        assert_eq!(store.holding.load(Ordering::SeqCst), 3);
        assert_eq!(read.load(Ordering::SeqCst), (3 + released) * PART);
    }
    store.gate.add_permits(1000);
    let report = upload.await.unwrap().unwrap();
    assert_eq!(report.parts, 12);
    assert_eq!(store.max_held_bytes.load(Ordering::SeqCst), 3 * PART);
    assert!(store.inner.object(KEY).unwrap().0 == data);
}

/// A budget below two parts still moves: one part uploads while the next is read (the
/// documented floor, `2 × part`), and no third is started.
#[tokio::test(start_paused = true)]
async fn a_budget_below_two_parts_keeps_one_uploading_and_one_filling() {
    const PART: u64 = 100;
    let store = Arc::new(GateStore::new(MemoryStore::with_min_part_size(
        "bucket", PART,
    )));
    let data = pattern(6 * PART as usize);
    let reader = TestReader::new(data.clone(), 7);
    let read = Arc::clone(&reader.read);
    let config = UploadConfig {
        memory_limit: Some(PART),
        ..config(PART, 8)
    };
    let uploader = MultipartUploader::new(Arc::clone(&store), config);
    let upload = tokio::spawn(async move { uploader.upload(KEY, &options(), reader).await });
    settle().await;
    assert_eq!(store.holding.load(Ordering::SeqCst), 2);
    assert_eq!(read.load(Ordering::SeqCst), 2 * PART);
    store.gate.add_permits(1000);
    let report = upload.await.unwrap().unwrap();
    assert_eq!(report.parts, 6);
    assert_eq!(store.max_held_bytes.load(Ordering::SeqCst), 2 * PART);
    assert!(store.inner.object(KEY).unwrap().0 == data);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_upload_aborts_it() {
    let store = Arc::new(GateStore::new(MemoryStore::with_min_part_size(
        "bucket", 10,
    )));
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
    let upload = tokio::spawn(async move {
        uploader
            .upload(KEY, &options(), TestReader::new(pattern(100), 10))
            .await
    });
    settle().await;
    assert_eq!(store.inner.open_uploads(), 1);
    upload.abort();
    assert!(upload.await.unwrap_err().is_cancelled());
    settle().await;
    assert_eq!(store.inner.calls(Op::AbortMultipart), 1);
    assert_eq!(store.inner.open_uploads(), 0);
    assert!(
        store.finished.lock().unwrap().is_empty(),
        "no part finished after cancel"
    );
}

// ---- Adaptive part lengths, at 1/2^20 scale: `PartGrowth::Adaptive { unit: 1 }` makes the
// minimum part 5 bytes, the largest 5,120 bytes and the object limit 5 MiB (S3's 5 TiB).

/// Adaptive growth at 1/2^20 scale.
fn scaled(concurrency: usize, estimate: Option<u64>) -> UploadConfig {
    UploadConfig {
        part_size: 5,
        concurrency,
        retry: retry(),
        estimate,
        growth: PartGrowth::Adaptive { unit: 1 },
        ..UploadConfig::default()
    }
}

/// The part lengths the sizer of `config` gives a stream of `len` bytes.
fn expected_sizes(config: &UploadConfig, len: u64) -> Vec<u64> {
    let sizer: PartSizer = config.sizer();
    let (mut lengths, mut uploaded, mut part) = (Vec::new(), 0, Some(PartNumber::FIRST));
    while uploaded < len {
        let n = part.expect("fits in 10,000 parts");
        let size = sizer.size_of(n, uploaded).min(len - uploaded);
        lengths.push(size);
        uploaded += size;
        part = n.next();
    }
    lengths
}

/// A large pattern without recomputing it for every test.
fn big_pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 253) as u8).collect()
}

#[tokio::test(start_paused = true)]
async fn parts_grow_with_the_part_count_without_estimate() {
    // 200,000 bytes ≈ 195 GiB at S3 scale: parts start at 5 and grow along the curve.
    let store = store(5);
    let data = big_pattern(200_000);
    let config = scaled(8, None);
    let lengths = expected_sizes(&config, data.len() as u64);
    let uploader = MultipartUploader::new(Arc::clone(&store), config);
    let report = uploader
        .upload(KEY, &options(), TestReader::new(data.clone(), 4096))
        .await
        .unwrap();
    assert_eq!(usize::from(report.parts), lengths.len());
    assert_eq!(lengths[0], 5);
    assert_eq!(report.max_part_size, *lengths.iter().max().unwrap());
    assert!(
        report.max_part_size > 5,
        "parts grew: {}",
        report.max_part_size
    );
    assert!(store.inner().object(KEY).unwrap().0 == data);
    // The composite checksum is over the parts as cut.
    let mut offset = 0;
    let checksums: Vec<Crc32c> = lengths
        .iter()
        .map(|&size| {
            let part = Crc32c::of(&data[offset..offset + size as usize]);
            offset += size as usize;
            part
        })
        .collect();
    assert_eq!(report.checksum_crc32c, composite_crc32c(&checksums));
    assert!(report.checksum_verified);
}

#[tokio::test(start_paused = true)]
async fn a_5_tib_stream_fits_without_estimate() {
    // Exactly S3's object limit (5 MiB here, 5 TiB at S3 scale), size unknown in advance.
    let store = store(5);
    let data = big_pattern(5 * 1024 * 1024);
    let lengths = expected_sizes(&scaled(8, None), data.len() as u64);
    let uploader = MultipartUploader::new(Arc::clone(&store), scaled(8, None));
    let report = uploader
        .upload(KEY, &options(), TestReader::new(data.clone(), 65_536))
        .await
        .unwrap();
    assert_eq!(usize::from(report.parts), lengths.len());
    assert_eq!(report.parts, 9_996);
    // Near the top of the curve (1,573 at part 10,000).
    assert_eq!(report.max_part_size, 1572);
    assert!(store.inner().object(KEY).unwrap().0 == data);
}

#[tokio::test(start_paused = true)]
async fn a_stream_past_5_tib_is_refused_before_part_10001() {
    let store = store(5);
    let reader = TestReader::new(big_pattern(5 * 1024 * 1024 + 1), 65_536);
    let read = Arc::clone(&reader.read);
    let uploader = MultipartUploader::new(Arc::clone(&store), scaled(8, None));
    let err = uploader.upload(KEY, &options(), reader).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ObjectTooLarge, "{err}");
    assert!(err.to_string().contains("5242880 bytes"), "{err}");
    assert!(store.calls(Op::PutPart) <= 10_000);
    assert_eq!(
        read.load(Ordering::SeqCst),
        5 * 1024 * 1024 + 1,
        "one byte past the limit is enough to know"
    );
    assert_eq!(store.calls(Op::AbortMultipart), 1);
    assert_eq!(store.calls(Op::CompleteMultipart), 0);
    assert_clean(&store);
}

#[tokio::test(start_paused = true)]
async fn within_its_estimate_a_stream_keeps_one_part_size() {
    // Estimate 2,000,000 (≈ 1.9 TiB at S3 scale): E × 1.05 / 5000 gives 420-unit parts.
    let store = store(5);
    let estimate = 2_000_000;
    let config = scaled(8, Some(estimate));
    assert_eq!(config.sizer().start(), 420);
    let data = big_pattern(2_000_000);
    let uploader = MultipartUploader::new(Arc::clone(&store), config);
    let report = uploader
        .upload(KEY, &options(), TestReader::new(data.clone(), 65_536))
        .await
        .unwrap();
    assert_eq!(report.parts, 4_762);
    assert_eq!(report.max_part_size, 420);
    assert!(store.inner().object(KEY).unwrap().0 == data);
}

#[tokio::test(start_paused = true)]
async fn an_outgrown_estimate_grows_the_parts() {
    // Estimate ≈ 40 GB at S3 scale, stream ≈ 1 TiB: 5,007 parts of 8 (the estimate with its
    // headroom), then the curve over the 4,993 parts left, growing gently from the start size.
    let store = store(5);
    let config = scaled(8, Some(38_147));
    let data = big_pattern(1_000_000);
    let lengths = expected_sizes(&config, data.len() as u64);
    assert!(lengths[..5_259].iter().all(|&size| size == 8));
    assert!(lengths[5_259] > 8, "{}", lengths[5_259]);
    assert_eq!(lengths.len(), 7_847);
    let uploader = MultipartUploader::new(Arc::clone(&store), config);
    let report = uploader
        .upload(KEY, &options(), TestReader::new(data.clone(), 65_536))
        .await
        .unwrap();
    assert_eq!(usize::from(report.parts), lengths.len());
    assert!(store.inner().object(KEY).unwrap().0 == data);
}

#[tokio::test(start_paused = true)]
async fn a_far_outgrown_estimate_still_fits() {
    // Issue 12, point 4. Estimate 2,000,000 (≈ 1.9 TiB at S3 scale), stream of 5 TiB: the
    // original rule used all 10,000 parts for 2,100,000 bytes and failed with TooManyParts
    // (as did f689179); now the constant phase takes 5,000 and the curve the rest.
    let store = store(5);
    let data = big_pattern(5 * 1024 * 1024);
    let uploader = MultipartUploader::new(Arc::clone(&store), scaled(8, Some(2_000_000)));
    let report = uploader
        .upload(KEY, &options(), TestReader::new(data.clone(), 65_536))
        .await
        .unwrap();
    assert_eq!(report.parts, 9_622);
    assert_eq!(report.max_part_size, 1_611);
    assert!(store.inner().object(KEY).unwrap().0 == data);
    assert_eq!(store.inner().open_uploads(), 0);
}

#[tokio::test(start_paused = true)]
async fn memory_stays_within_concurrency_plus_one_growing_parts() {
    // Parts take a while, so `concurrency` of them are always in flight; the bytes held by
    // the store never exceed `concurrency` parts of the current (largest so far) size, and
    // the reader is never more than one part ahead of what was handed over.
    const CONCURRENCY: usize = 4;
    let store = Arc::new(GateStore::slow(
        MemoryStore::with_min_part_size("bucket", 5),
        Duration::from_millis(50),
    ));
    let data = big_pattern(300_000);
    let reader = TestReader::new(data.clone(), 4096);
    let uploader = MultipartUploader::new(Arc::clone(&store), scaled(CONCURRENCY, None));
    let report = uploader.upload(KEY, &options(), reader).await.unwrap();
    assert!(report.max_part_size > 100, "{}", report.max_part_size);
    let max_held = store.max_held_bytes.load(Ordering::SeqCst);
    assert!(
        max_held <= CONCURRENCY as u64 * report.max_part_size,
        "{max_held} bytes held, parts up to {}",
        report.max_part_size
    );
    assert!(
        max_held > (CONCURRENCY as u64 - 1) * 100,
        "parts did overlap: {max_held}"
    );
    assert_eq!(store.max_holding.load(Ordering::SeqCst), CONCURRENCY);
    assert!(store.inner.object(KEY).unwrap().0 == data);
}

// ---- Verified bytes.

#[tokio::test(start_paused = true)]
async fn corrupted_part_is_refused_by_the_store_and_retried() {
    let store = store(10);
    store.corrupt_part(part(2), 2);
    let data = pattern(35);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
    let report = uploader
        .upload(KEY, &options(), TestReader::new(data.clone(), 7))
        .await
        .unwrap();
    assert_eq!(
        store.part_calls(part(2)),
        3,
        "two corrupted transfers, then one good"
    );
    assert_eq!(
        store.inner().calls(Op::PutPart),
        6,
        "the store saw and refused both"
    );
    assert!(store.inner().object(KEY).unwrap().0 == data);
    assert!(report.checksum_verified);
}

#[tokio::test(start_paused = true)]
async fn part_corrupted_on_every_attempt_fails_and_aborts() {
    let store = store(10);
    store.corrupt_part(part(1), 100);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
    let err = uploader
        .upload(KEY, &options(), TestReader::new(pattern(35), 7))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(err.to_string().contains("BadDigest"), "{err}");
    assert_eq!(store.part_calls(part(1)), 5);
    assert_clean(&store);
}

#[tokio::test(start_paused = true)]
async fn wrong_composite_checksum_deletes_the_object() {
    let store = store(10);
    store.checksum_reply(Op::CompleteMultipart, ChecksumReply::Wrong);
    let data = pattern(25);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
    let err = uploader
        .upload(KEY, &options(), TestReader::new(data.clone(), 25))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ChecksumMismatch, "{err}");
    assert!(!err.is_retryable());
    let expected = composite_crc32c(&[
        Crc32c::of(&data[..10]),
        Crc32c::of(&data[10..20]),
        Crc32c::of(&data[20..]),
    ]);
    let text = err.to_string();
    assert!(text.contains("s3://bucket/z3/pool/fs@snap"), "{text}");
    assert!(text.contains(&expected), "{text}");
    assert!(text.contains("the server reports"), "{text}");
    assert!(text.contains("was deleted"), "{text}");
    assert_eq!(store.calls(Op::Delete), 1);
    assert_eq!(
        store.calls(Op::AbortMultipart),
        0,
        "the upload was complete"
    );
    assert_clean(&store);
}

#[tokio::test(start_paused = true)]
async fn missing_composite_is_read_back_with_head() {
    let store = store(10);
    store.checksum_reply(Op::CompleteMultipart, ChecksumReply::Missing);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
    let report = uploader
        .upload(KEY, &options(), TestReader::new(pattern(25), 25))
        .await
        .unwrap();
    assert!(report.checksum_verified);
    assert_eq!(store.calls(Op::HeadChecksum), 1);
    assert_eq!(
        store.inner().object_details(KEY).unwrap().checksum_crc32c,
        Some(report.checksum_crc32c)
    );
}

#[tokio::test(start_paused = true)]
async fn wrong_composite_from_head_deletes_the_object() {
    let store = store(10);
    store.checksum_reply(Op::CompleteMultipart, ChecksumReply::Missing);
    store.checksum_reply(Op::HeadChecksum, ChecksumReply::Wrong);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
    let err = uploader
        .upload(KEY, &options(), TestReader::new(pattern(25), 25))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ChecksumMismatch, "{err}");
    assert_clean(&store);
}

#[tokio::test(start_paused = true)]
async fn server_without_checksums_is_accepted_unverified() {
    let store = store(10);
    store.checksum_reply(Op::CompleteMultipart, ChecksumReply::Missing);
    store.checksum_reply(Op::HeadChecksum, ChecksumReply::Missing);
    let data = pattern(25);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
    let report = uploader
        .upload(KEY, &options(), TestReader::new(data.clone(), 25))
        .await
        .unwrap();
    assert!(!report.checksum_verified);
    assert!(report.checksum_crc32c.ends_with("-3"), "{report:?}");
    assert!(store.inner().object(KEY).unwrap().0 == data);
}

#[tokio::test(start_paused = true)]
async fn unreadable_checksum_after_completion_deletes_the_object() {
    let store = store(10);
    store.checksum_reply(Op::CompleteMultipart, ChecksumReply::Missing);
    store.fail(Op::HeadChecksum, 100, ErrorKind::Transient);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
    let err = uploader
        .upload(KEY, &options(), TestReader::new(pattern(25), 25))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(
        err.to_string().contains("reading back the checksum"),
        "{err}"
    );
    assert_eq!(store.calls(Op::HeadChecksum), 5);
    assert_clean(&store);
}

#[tokio::test(start_paused = true)]
async fn lost_completion_of_another_object_is_not_accepted() {
    // The retried Complete says NoSuchUpload and the key holds another writer's object of the
    // right size: it lacks our upload token, so the upload fails and that object stays.
    let store = store(10);
    store
        .inner()
        .insert(KEY, Bytes::from(pattern(25)), &PutOptions::default());
    store.fail(Op::CompleteMultipart, 1, ErrorKind::Transient);
    store.fail(Op::CompleteMultipart, 1, ErrorKind::NoSuchUpload);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
    let err = uploader
        .upload(KEY, &options(), TestReader::new(pattern(25), 25))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchUpload, "{err}");
    assert_eq!(store.calls(Op::Delete), 0);
    let (_, meta, _) = store.inner().object(KEY).unwrap();
    assert!(!meta.contains_key(z3_s3::UPLOAD_TOKEN_META));
}

#[tokio::test(start_paused = true)]
async fn part_confirmed_with_another_checksum_fails() {
    // A server that confirms a part with another CRC32C than we sent stored other bytes.
    let mut store = GateStore::slow(
        MemoryStore::with_min_part_size("bucket", 10),
        Duration::ZERO,
    );
    store.echo_wrong_checksum = true;
    let store = Arc::new(store);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
    let err = uploader
        .upload(KEY, &options(), TestReader::new(pattern(25), 25))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ChecksumMismatch, "{err}");
    assert!(
        err.to_string().contains("the server confirmed AAAAAA=="),
        "{err}"
    );
    assert_eq!(store.inner.calls(Op::AbortMultipart), 1);
    assert_eq!(store.inner.open_uploads(), 0);
    assert!(store.inner.object(KEY).is_none());
}

/// A blocking reader returning at most `chunk` bytes per read, then failing if asked to.
struct BlockingReader {
    data: io::Cursor<Vec<u8>>,
    chunk: usize,
    fail: Option<io::Error>,
}

impl io::Read for BlockingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.chunk);
        let got = self.data.read(&mut buf[..n])?;
        if got == 0
            && let Some(err) = self.fail.take()
        {
            return Err(err);
        }
        Ok(got)
    }
}

fn blocking(data: Vec<u8>, chunk: usize) -> BlockingReader {
    BlockingReader {
        data: io::Cursor::new(data),
        chunk,
        fail: None,
    }
}

#[tokio::test]
async fn blocking_reader_uploads_the_same_object_as_async() {
    // Recycled buffers must never leak stale bytes: short parts follow full ones, and the
    // last part of one case is shorter than what the buffer held before.
    let cases = [
        (1, 5, 1),
        (2, 9, 3),
        (7, 100, 5),
        (64, 65, 1000),
        (4096, 40_000, 1500),
    ];
    for (part_size, len, chunk) in cases {
        let data = pattern(len);
        let by_thread = store(part_size);
        let report = MultipartUploader::new(Arc::clone(&by_thread), config(part_size, 2))
            .upload_blocking(KEY, &options(), blocking(data.clone(), chunk))
            .await
            .unwrap();
        let by_task = store(part_size);
        let expected = MultipartUploader::new(Arc::clone(&by_task), config(part_size, 2))
            .upload(KEY, &options(), TestReader::new(data.clone(), chunk))
            .await
            .unwrap();
        assert!(
            by_thread.inner().object(KEY).unwrap().0 == data,
            "len {len}"
        );
        // Each upload has its own random token; everything else is the same.
        let expected = z3_s3::UploadReport {
            token: report.token.clone(),
            ..expected
        };
        assert_eq!(report, expected, "part size {part_size}, len {len}");
        assert_eq!(by_thread.inner().open_uploads(), 0);
    }
}

#[tokio::test]
async fn blocking_reader_failure_aborts_with_source_error() {
    let store = store(10);
    let reader = BlockingReader {
        fail: Some(io::Error::other("zfs send exited with status 1")),
        ..blocking(pattern(25), 4)
    };
    let err = MultipartUploader::new(Arc::clone(&store), config(10, 2))
        .upload_blocking(KEY, &options(), reader)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source);
    assert_eq!(
        err.io_error().unwrap().to_string(),
        "zfs send exited with status 1"
    );
    assert_eq!(store.calls(Op::AbortMultipart), 1);
    assert_clean(&store);
}

#[tokio::test]
async fn blocking_reader_empty_input_creates_nothing() {
    let store = store(10);
    let err = MultipartUploader::new(Arc::clone(&store), config(10, 2))
        .upload_blocking(KEY, &options(), blocking(Vec::new(), 4))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EmptyStream);
    assert_eq!(store.calls(Op::CreateMultipart), 0);
    assert_clean(&store);
}

#[tokio::test(start_paused = true)]
async fn cancelling_mid_stream_aborts_and_leaves_nothing() {
    let store = store(10);
    // 25 bytes, then an input that never ends: a `zfs send` still running.
    let (mut writer, reader) = tokio::io::duplex(1024);
    tokio::io::AsyncWriteExt::write_all(&mut writer, &pattern(25))
        .await
        .unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let uploader =
        MultipartUploader::new(Arc::clone(&store), config(10, 2)).with_cancel(cancel.clone());
    let upload = tokio::spawn(async move {
        let _still_running = writer;
        uploader.upload(KEY, &options(), reader).await
    });
    while store.calls(Op::PutPart) < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cancel.cancel();
    let err = upload.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    assert!(err.to_string().contains("aborted"), "{err}");
    assert_eq!(store.calls(Op::AbortMultipart), 1);
    assert_eq!(store.calls(Op::CompleteMultipart), 0);
    assert_clean(&store);
}

#[tokio::test(start_paused = true)]
async fn cancelled_before_the_first_part_creates_nothing() {
    let store = store(10);
    let (_writer, reader) = tokio::io::duplex(1024);
    let cancel = tokio_util::sync::CancellationToken::new();
    cancel.cancel();
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2)).with_cancel(cancel);
    let err = uploader.upload(KEY, &options(), reader).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    assert_eq!(store.calls(Op::CreateMultipart), 0);
    assert_clean(&store);
}

#[tokio::test(start_paused = true)]
async fn hook_runs_after_the_last_part_and_before_completion() {
    let store = store(1024);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(1024, 2));
    let data = pattern(3000);
    let seen = Arc::new(Mutex::new(None));
    let (hook_store, hook_seen) = (Arc::clone(&store), Arc::clone(&seen));
    let report = uploader
        .upload_then(
            KEY,
            &options(),
            TestReader::new(data.clone(), 700),
            Box::new(move |done| {
                Box::pin(async move {
                    // Every part is stored, the object does not exist yet.
                    let state = (
                        done,
                        hook_store.inner().object(KEY).is_some(),
                        hook_store.inner().open_uploads(),
                    );
                    *hook_seen.lock().unwrap() = Some(state);
                    Ok(())
                })
            }),
        )
        .await
        .unwrap();
    let (done, existed, open) = seen.lock().unwrap().take().expect("the hook ran");
    assert_eq!((existed, open), (false, 1));
    assert_eq!(done.bytes, 3000);
    assert_eq!(done.parts, 3);
    assert_eq!(done.checksum_crc32c, report.checksum_crc32c);
    assert_eq!(store.inner().object(KEY).unwrap().0, data);
}

#[tokio::test(start_paused = true)]
async fn a_failing_hook_aborts_the_upload() {
    let store = store(1024);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(1024, 2));
    let err = uploader
        .upload_then(
            KEY,
            &options(),
            TestReader::new(pattern(3000), 700),
            Box::new(|_| {
                Box::pin(async {
                    Err(z3_s3::Error::new(
                        ErrorKind::Transient,
                        "cannot write the seal",
                    ))
                })
            }),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot write the seal"), "{err}");
    assert_clean(&store);
    assert_eq!(store.calls(Op::CompleteMultipart), 0);
}

#[tokio::test(start_paused = true)]
async fn an_upload_created_by_a_lost_create_response_is_aborted() {
    let store = store(1024);
    // The server creates the upload, the response never arrives, the retry creates another.
    // Someone else's upload of another key stays alone.
    let other = store
        .inner()
        .create_multipart("other-key", &options())
        .await
        .unwrap();
    store.fail_after(Op::CreateMultipart, 1, ErrorKind::Transient);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(1024, 2));
    let data = pattern(3000);
    uploader
        .upload(KEY, &options(), TestReader::new(data.clone(), 700))
        .await
        .unwrap();
    assert_eq!(store.calls(Op::CreateMultipart), 2);
    assert_eq!(store.inner().object(KEY).unwrap().0, data);
    let open = store.inner().list_multipart_uploads("").await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(
        (open[0].key.as_str(), &open[0].upload_id),
        ("other-key", &other)
    );
}

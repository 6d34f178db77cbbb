//! `MultipartUploader` over `FaultyStore<MemoryStore>` with paused time: reassembly, retries,
//! aborts, limits, memory bounds.

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;
use z3_s3::{
    CompletedPart, ErrorKind, FaultyStore, ListEntry, MemoryStore, MultipartUploadInfo,
    MultipartUploader, ObjectInfo, ObjectStore, Op, PartNumber, PutOptions, RetryConfig,
    UploadConfig, UploadId,
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

fn config(part_size: u64, concurrency: usize) -> UploadConfig {
    UploadConfig {
        part_size,
        concurrency,
        retry: retry(),
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
        assert_eq!(metadata, options().metadata);
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
    assert_eq!(store.calls(Op::Head), 1);
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
    assert!(err.to_string().contains("expected 25"), "{err}");
    assert_eq!(store.calls(Op::AbortMultipart), 1);
    assert_eq!(store.inner().open_uploads(), 0);
    assert_eq!(
        store.inner().object(KEY).unwrap().0,
        Bytes::from_static(b"other writer")
    );
}

#[tokio::test(start_paused = true)]
async fn no_such_upload_on_first_complete_is_not_confirmed() {
    // Without an earlier attempt there is no lost response to explain NoSuchUpload.
    let store = store(10);
    store.fail(Op::CompleteMultipart, 1, ErrorKind::NoSuchUpload);
    let uploader = MultipartUploader::new(Arc::clone(&store), config(10, 2));
    let err = uploader
        .upload(KEY, &options(), TestReader::new(pattern(25), 25))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchUpload);
    assert_eq!(store.calls(Op::Head), 0);
    assert_eq!(store.calls(Op::AbortMultipart), 1);
    assert_clean(&store);
}

/// A store whose `put_part` waits for a permit, and which records how many part bodies it
/// holds at once.
#[derive(Debug)]
struct GateStore {
    inner: MemoryStore,
    gate: Semaphore,
    holding: AtomicUsize,
    max_holding: AtomicUsize,
    finished: Mutex<Vec<u16>>,
}

impl GateStore {
    fn new(inner: MemoryStore) -> Self {
        Self {
            inner,
            gate: Semaphore::new(0),
            holding: AtomicUsize::new(0),
            max_holding: AtomicUsize::new(0),
            finished: Mutex::new(Vec::new()),
        }
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
    async fn create_multipart(&self, key: &str, options: &PutOptions) -> z3_s3::Result<UploadId> {
        self.inner.create_multipart(key, options).await
    }
    async fn put_part(
        &self,
        key: &str,
        upload_id: &UploadId,
        part: PartNumber,
        body: Bytes,
    ) -> z3_s3::Result<CompletedPart> {
        let now = self.holding.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_holding.fetch_max(now, Ordering::SeqCst);
        let permit = self.gate.acquire().await.unwrap();
        permit.forget();
        let result = self.inner.put_part(key, upload_id, part, body).await;
        self.holding.fetch_sub(1, Ordering::SeqCst);
        self.finished.lock().unwrap().push(part.get());
        result
    }
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
    ) -> z3_s3::Result<String> {
        self.inner.complete_multipart(key, upload_id, parts).await
    }
    async fn abort_multipart(&self, key: &str, upload_id: &UploadId) -> z3_s3::Result<()> {
        self.inner.abort_multipart(key, upload_id).await
    }
    async fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> z3_s3::Result<Vec<MultipartUploadInfo>> {
        self.inner.list_multipart_uploads(prefix).await
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

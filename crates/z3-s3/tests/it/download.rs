//! `Downloader` over `FaultyStore<MemoryStore>`: ordering, resumption, failures, cancellation.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use z3_s3::{
    DownloadConfig, Downloader, Error, ErrorKind, FaultyStore, MemoryStore, ObjectStore, Op,
    PutOptions, RetryConfig,
};

use crate::support::pattern;

const KEY: &str = "z3/pool/fs@snap";

fn config(part_size: u64, concurrency: usize) -> DownloadConfig {
    DownloadConfig {
        part_size,
        concurrency,
        retry: RetryConfig {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        },
    }
}

fn store_with(data: &[u8]) -> Arc<FaultyStore<MemoryStore>> {
    let store = Arc::new(FaultyStore::new(MemoryStore::new("bucket")));
    store
        .inner()
        .insert(KEY, data.to_vec(), &PutOptions::default());
    store
}

#[tokio::test(start_paused = true)]
async fn reassembles_in_order_with_many_ranges() {
    let data = pattern(10_007);
    let store = store_with(&data);
    for part_size in [1, 7, 1000, 4096, 10_007, 50_000] {
        for concurrency in [1, 3, 16] {
            let downloader = Downloader::new(Arc::clone(&store), config(part_size, concurrency));
            let mut out = Vec::new();
            downloader
                .reader(KEY, data.len() as u64, None)
                .read_to_end(&mut out)
                .await
                .unwrap();
            assert!(
                out == data,
                "reader, part {part_size}, concurrency {concurrency}"
            );

            let mut out = Vec::new();
            let written = downloader
                .download_to(KEY, data.len() as u64, None, &mut out)
                .await
                .unwrap();
            assert_eq!(written, data.len() as u64);
            assert!(
                out == data,
                "download_to, part {part_size}, concurrency {concurrency}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn requests_cover_the_object_once() {
    let data = pattern(2500);
    let store = store_with(&data);
    let downloader = Downloader::new(Arc::clone(&store), config(1000, 2));
    let mut out = Vec::new();
    downloader
        .download_to(KEY, 2500, None, &mut out)
        .await
        .unwrap();
    let mut ranges: Vec<_> = store.get_ranges().into_iter().map(|(_, r)| r).collect();
    ranges.sort_by_key(|r| r.start);
    assert_eq!(ranges, [0..1000, 1000..2000, 2000..2500]);
}

#[tokio::test(start_paused = true)]
async fn resumes_a_truncated_range_where_it_stopped() {
    let data = pattern(3000);
    let store = store_with(&data);
    store.truncate_next_get(100);
    let downloader = Downloader::new(Arc::clone(&store), config(1000, 1));
    let mut out = Vec::new();
    downloader
        .download_to(KEY, 3000, None, &mut out)
        .await
        .unwrap();
    assert!(out == data);
    let ranges: Vec<_> = store.get_ranges().into_iter().map(|(_, r)| r).collect();
    assert_eq!(ranges, [0..1000, 100..1000, 1000..2000, 2000..3000]);
}

#[tokio::test(start_paused = true)]
async fn an_empty_body_is_retried_from_the_same_byte() {
    let data = pattern(1000);
    let store = store_with(&data);
    store.truncate_next_get(0);
    let downloader = Downloader::new(Arc::clone(&store), config(1000, 1));
    let mut out = Vec::new();
    downloader
        .download_to(KEY, 1000, None, &mut out)
        .await
        .unwrap();
    assert!(out == data);
    let ranges: Vec<_> = store.get_ranges().into_iter().map(|(_, r)| r).collect();
    assert_eq!(ranges, [0..1000, 0..1000]);
}

#[tokio::test(start_paused = true)]
async fn missing_key_is_not_found() {
    let store = Arc::new(MemoryStore::new("bucket"));
    let downloader = Downloader::new(store, config(1000, 2));
    let err = downloader
        .download_to("nope", 10, None, &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("s3://bucket/nope"), "{err}");

    let io = downloader
        .reader("nope", 10, None)
        .read_to_end(&mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(io.kind(), std::io::ErrorKind::Other);
    assert_eq!(Error::from_io(&io).unwrap().kind(), ErrorKind::NotFound);
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried() {
    let data = pattern(2000);
    let store = store_with(&data);
    store.fail(Op::GetRange, 2, ErrorKind::Transient);
    let downloader = Downloader::new(Arc::clone(&store), config(1000, 1));
    let mut out = Vec::new();
    downloader
        .download_to(KEY, 2000, None, &mut out)
        .await
        .unwrap();
    assert!(out == data);
    assert_eq!(store.calls(Op::GetRange), 4);
}

#[tokio::test(start_paused = true)]
async fn persistent_failure_surfaces_through_the_reader() {
    let data = pattern(2000);
    let store = store_with(&data);
    store.fail(Op::GetRange, 100, ErrorKind::Throttled);
    let downloader = Downloader::new(Arc::clone(&store), config(1000, 1));
    let mut reader = downloader.reader(KEY, 2000, None);
    let io = reader.read_to_end(&mut Vec::new()).await.unwrap_err();
    let err = Error::from_io(&io).unwrap();
    assert_eq!(err.kind(), ErrorKind::Throttled);
    assert!(
        err.to_string().contains("gave up after 3 attempts"),
        "{err}"
    );
    // Reading on after the failure keeps failing instead of looking like a clean end.
    let again = reader.read(&mut [0u8; 16]).await.unwrap_err();
    assert!(again.to_string().contains("already failed"), "{again}");
}

#[tokio::test(start_paused = true)]
async fn object_shorter_than_announced_is_an_error_not_a_short_read() {
    let data = pattern(1500);
    let store = store_with(&data);
    let downloader = Downloader::new(Arc::clone(&store), config(1000, 2));
    let err = downloader
        .download_to(KEY, 2000, None, &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    let mut out = Vec::new();
    let io = downloader
        .reader(KEY, 2000, None)
        .read_to_end(&mut out)
        .await
        .unwrap_err();
    assert!(Error::from_io(&io).is_some());
}

#[tokio::test(start_paused = true)]
async fn zero_size_needs_no_request() {
    let store = Arc::new(FaultyStore::new(MemoryStore::new("bucket")));
    let downloader = Downloader::new(Arc::clone(&store), config(1000, 2));
    let mut out = Vec::new();
    downloader
        .reader("empty", 0, None)
        .read_to_end(&mut out)
        .await
        .unwrap();
    assert!(out.is_empty());
    assert_eq!(store.calls(Op::GetRange), 0);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_reader_stops_fetching() {
    let data = pattern(100_000);
    let store = store_with(&data);
    let downloader = Downloader::new(Arc::clone(&store), config(100, 2));
    let mut reader = downloader.reader(KEY, data.len() as u64, None);
    let mut first = [0u8; 10];
    reader.read_exact(&mut first).await.unwrap();
    assert_eq!(&first[..], &data[..10]);
    drop(reader);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = store.calls(Op::GetRange);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(store.calls(Op::GetRange), calls, "no requests after drop");
    assert!(calls < 10, "only a few ranges were fetched ahead: {calls}");
}

#[tokio::test(start_paused = true)]
async fn failing_writer_is_a_sink_error() {
    struct Broken;
    impl tokio::io::AsyncWrite for Broken {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::task::Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }
    let store = store_with(&pattern(100));
    let downloader = Downloader::new(store, config(10, 2));
    let err = downloader
        .download_to(KEY, 100, None, Broken)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Sink);
    assert_eq!(
        err.io_error().unwrap().kind(),
        std::io::ErrorKind::BrokenPipe
    );
}

/// Issue 12, point 8: an object replaced while it is downloaded fails the download with
/// `Changed` instead of handing on the ranges of two objects.
#[tokio::test(start_paused = true)]
async fn a_replaced_object_fails_the_pinned_download_instead_of_splicing() {
    let old = vec![b'o'; 10_000];
    let store = store_with(&old);
    let etag = store.head(KEY).await.unwrap().etag.unwrap();
    let downloader = Downloader::new(Arc::clone(&store), config(100, 1));
    let mut reader = downloader.reader(KEY, 10_000, Some(&etag));
    let mut first = vec![0u8; 100];
    reader.read_exact(&mut first).await.unwrap();
    // Replaced by another object of the same length.
    store
        .inner()
        .insert(KEY, vec![b'n'; 10_000], &PutOptions::default());
    let mut rest = Vec::new();
    let err = reader.read_to_end(&mut rest).await.unwrap_err();
    let err = Error::from_io(&err).expect("a z3-s3 error");
    assert_eq!(err.kind(), ErrorKind::Changed, "{err}");
    assert!(
        err.to_string()
            .contains("changed during the download: it no longer has ETag"),
        "{err}"
    );
    assert!(first.iter().chain(&rest).all(|&b| b == b'o'), "spliced");
    // Unpinned (the old behaviour), the ranges of both objects are handed on.
    let store = store_with(&old);
    let downloader = Downloader::new(Arc::clone(&store), config(100, 1));
    let mut reader = downloader.reader(KEY, 10_000, None);
    reader.read_exact(&mut first).await.unwrap();
    store
        .inner()
        .insert(KEY, vec![b'n'; 10_000], &PutOptions::default());
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).await.unwrap();
    assert!(rest.contains(&b'n'));
}

/// A blocking sink shared with the test.
#[derive(Clone, Default)]
struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn download_blocking_writes_every_range_in_order_and_counts_them() {
    let data = pattern(10_007);
    let store = store_with(&data);
    for (part_size, concurrency) in [(1000, 3), (4096, 1), (50_000, 4)] {
        let sink = Shared::default();
        let mut counted = 0;
        let written = Downloader::new(Arc::clone(&store), config(part_size, concurrency))
            .download_blocking(KEY, data.len() as u64, None, sink.clone(), |n| {
                counted += n;
            })
            .await
            .unwrap();
        assert_eq!(written, data.len() as u64);
        assert_eq!(counted, data.len() as u64, "part {part_size}");
        assert!(*sink.0.lock().unwrap() == data, "part {part_size}");
    }
}

/// A reader that went away: the write error is the download's, as `Sink`.
#[tokio::test]
async fn download_blocking_fails_with_sink_when_the_output_is_closed() {
    struct Closed;
    impl std::io::Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let data = pattern(5000);
    let store = store_with(&data);
    let err = Downloader::new(Arc::clone(&store), config(1000, 2))
        .download_blocking(KEY, 5000, None, Closed, |_| {})
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Sink, "{err}");
    assert!(err.to_string().contains(KEY), "{err}");
}

/// The cancel token stops the download between ranges: what was written is a prefix, and the
/// error says it was cancelled (never a clean end of a short stream).
#[tokio::test]
async fn download_blocking_stops_when_cancelled() {
    let data = pattern(10_000);
    let store = store_with(&data);
    let cancel = tokio_util::sync::CancellationToken::new();
    let sink = Shared::default();
    let trigger = cancel.clone();
    let err = Downloader::new(Arc::clone(&store), config(1000, 1))
        .with_cancel(cancel)
        .download_blocking(KEY, 10_000, None, sink.clone(), move |_| trigger.cancel())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    let written = sink.0.lock().unwrap().clone();
    assert!(written.len() < data.len(), "{} bytes", written.len());
    assert!(data.starts_with(&written));
}

#[test]
fn a_memory_limit_lowers_the_ranges_in_flight() {
    let mib = 1 << 20;
    // (concurrency + 2) × part ≤ limit, at least one range.
    let cases = [
        (8, Some(1 << 30), 8),
        (8, Some(80 * mib), 8),
        (8, Some(64 * mib), 6),
        (8, Some(10 * mib), 1),
        (0, Some(1 << 30), 1),
        (300, None, 300),
    ];
    for (concurrency, limit, expected) in cases {
        let config = config(8 * mib, concurrency).within(limit);
        assert_eq!(config.concurrency, expected, "{concurrency} {limit:?}");
        assert_eq!(config.part_size, 8 * mib);
    }
}

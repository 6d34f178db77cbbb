//! Retry policy as data ([`RetryConfig`]) plus a pure jitter generator ([`Backoff`]) and a small
//! async driver ([`retry()`]).
//!
//! z3 owns all retries: [`AwsStore`](crate::AwsStore) disables the SDK's own, so exactly one layer
//! decides how often to try and how long to wait, and tests can see every attempt.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use rand::{Rng, RngCore};

use crate::error::Result;

/// Growth factor of decorrelated jitter: each delay is drawn from `[initial, previous × 3)`.
const BACKOFF_BASE: f64 = 3.0;

/// How often and how patiently to retry one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryConfig {
    /// Total attempts including the first; `0` is treated as `1`. Default 5.
    pub max_attempts: u32,
    /// The first delay, and the lower bound of every later one. Default 200 ms.
    pub initial_backoff: Duration,
    /// Upper bound of any delay. Default 20 s.
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(20),
        }
    }
}

impl RetryConfig {
    /// A config that tries once and never retries.
    #[must_use]
    pub fn no_retries() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }
}

/// Delays between attempts, by "decorrelated jitter" (AWS architecture blog, `object_store`'s `Backoff`).
///
/// The first delay is `initial_backoff`; each later one is uniform in
/// `[initial_backoff, previous × 3)`, capped at `max_backoff`. Randomness spreads out the retries
/// of many parts that failed together (a `SlowDown` hits all of them at once).
pub struct Backoff {
    init: f64,
    next: f64,
    max: f64,
    rng: Option<Box<dyn RngCore + Send>>,
}

impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backoff")
            .field("init", &self.init)
            .field("next", &self.next)
            .field("max", &self.max)
            .field("custom_rng", &self.rng.is_some())
            .finish()
    }
}

impl Backoff {
    /// A backoff using the thread-local RNG.
    #[must_use]
    pub fn new(config: &RetryConfig) -> Self {
        Self::with_rng(config, None)
    }

    /// A backoff drawing from `rng`; tests pass a fixed RNG to get predictable delays.
    #[must_use]
    pub fn new_with_rng(config: &RetryConfig, rng: Box<dyn RngCore + Send>) -> Self {
        Self::with_rng(config, Some(rng))
    }

    fn with_rng(config: &RetryConfig, rng: Option<Box<dyn RngCore + Send>>) -> Self {
        let init = config.initial_backoff.as_secs_f64();
        let max = config.max_backoff.as_secs_f64().max(init);
        Self {
            init,
            next: init,
            max,
            rng,
        }
    }

    /// The delay before the next attempt.
    #[allow(clippy::should_implement_trait)] // The API name the callers use; it never ends, so not an Iterator.
    pub fn next(&mut self) -> Duration {
        let low = self.init;
        let high = self.next * BACKOFF_BASE;
        let drawn = if high > low {
            match self.rng.as_mut() {
                Some(rng) => rng.random_range(low..high),
                None => rand::random_range(low..high),
            }
        } else {
            low
        };
        let next = self.max.min(drawn);
        Duration::from_secs_f64(std::mem::replace(&mut self.next, next))
    }
}

/// Runs `f` until it succeeds, fails with an error that is not
/// [retryable](crate::Error::is_retryable), or `config.max_attempts` attempts are used up,
/// sleeping a [`Backoff`] delay (`tokio::time::sleep`) between attempts.
///
/// `op_name` names the request in log lines.
///
/// # Errors
/// The last error; when more than one attempt was made its message says how many.
pub async fn retry<T, F, Fut>(config: &RetryConfig, op_name: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let max_attempts = config.max_attempts.max(1);
    let mut backoff = Backoff::new(config);
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(value) => return Ok(value),
            Err(err) if err.is_retryable() && attempt < max_attempts => {
                let delay = backoff.next();
                tracing::warn!(
                    op = op_name,
                    attempt,
                    max_attempts,
                    delay_ms = delay.as_millis(),
                    error = %err,
                    "request failed, retrying"
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(err) if attempt > 1 => {
                return Err(err.context(format_args!("gave up after {attempt} attempts")));
            }
            Err(err) => return Err(err),
        }
    }
}

/// [`ObjectStore::list`](crate::ObjectStore::list) with `config`'s retries: a 503 or a reset
/// on any page retries the whole listing.
///
/// Every read of the bucket goes through these helpers, [`read_small`] or the
/// [`Downloader`](crate::Downloader), so that one throttled or reset request among thousands
/// does not fail a command.
///
/// # Errors
/// The store error of the last attempt.
pub async fn list_with_retry(
    store: &dyn crate::ObjectStore,
    prefix: &str,
    config: &RetryConfig,
) -> Result<Vec<crate::ListEntry>> {
    retry(config, "list", || store.list(prefix)).await
}

/// [`ObjectStore::head`](crate::ObjectStore::head) with `config`'s retries. A missing object
/// is not retried ([`ErrorKind::NotFound`](crate::ErrorKind::NotFound) is not retryable).
///
/// # Errors
/// The store error of the last attempt.
pub async fn head_with_retry(
    store: &dyn crate::ObjectStore,
    key: &str,
    config: &RetryConfig,
) -> Result<crate::ObjectInfo> {
    retry(config, "head", || store.head(key)).await
}

/// [`ObjectStore::head_checksum`](crate::ObjectStore::head_checksum) with `config`'s retries.
///
/// # Errors
/// The store error of the last attempt.
pub async fn head_checksum_with_retry(
    store: &dyn crate::ObjectStore,
    key: &str,
    config: &RetryConfig,
) -> Result<crate::ObjectInfo> {
    retry(config, "head_checksum", || store.head_checksum(key)).await
}

/// [`ObjectStore::list_multipart_uploads`](crate::ObjectStore::list_multipart_uploads) with
/// `config`'s retries.
///
/// # Errors
/// The store error of the last attempt.
pub async fn list_uploads_with_retry(
    store: &dyn crate::ObjectStore,
    prefix: &str,
    config: &RetryConfig,
) -> Result<Vec<crate::MultipartUploadInfo>> {
    retry(config, "list_multipart_uploads", || {
        store.list_multipart_uploads(prefix)
    })
    .await
}

/// Reads a small object (a lock record, a seal) whole, at most `limit` bytes, with `config`'s
/// retries; a body cut short counts as a transient failure. `Ok(None)` if it does not exist.
///
/// # Errors
/// The store error of the last attempt.
pub async fn read_small(
    store: &dyn crate::ObjectStore,
    key: &str,
    limit: u64,
    config: &RetryConfig,
) -> Result<Option<bytes::Bytes>> {
    use crate::ErrorKind;
    let info = match head_with_retry(store, key, config).await {
        Ok(info) => info,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let range = 0..info.size.min(limit);
    let read_whole = || async {
        let body = store.get_range(key, range.clone()).await?;
        if body.len() as u64 == range.end {
            Ok(body)
        } else {
            Err(crate::Error::new(
                ErrorKind::Transient,
                format!(
                    "{key}: body cut short at {} of {} bytes",
                    body.len(),
                    range.end
                ),
            ))
        }
    };
    match retry(config, "get", read_whole).await {
        Ok(body) => Ok(Some(body)),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::{Error, ErrorKind};

    /// An RNG that always returns the same value (`object_store`'s `FixedRng`).
    struct FixedRng(u64);

    impl RngCore for FixedRng {
        fn next_u32(&mut self) -> u32 {
            self.0 as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0
        }
        fn fill_bytes(&mut self, dst: &mut [u8]) {
            dst.fill(self.0 as u8);
        }
    }

    fn config(init_ms: u64, max_ms: u64) -> RetryConfig {
        RetryConfig {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(init_ms),
            max_backoff: Duration::from_millis(max_ms),
        }
    }

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn lowest_draw_stays_at_initial() {
        let mut backoff = Backoff::new_with_rng(&config(1000, 20_000), Box::new(FixedRng(0)));
        for _ in 0..10 {
            assert!((secs(backoff.next()) - 1.0).abs() < 1e-9);
        }
    }

    #[test]
    fn highest_draw_triples_until_capped() {
        let mut backoff =
            Backoff::new_with_rng(&config(1000, 20_000), Box::new(FixedRng(u64::MAX)));
        let expected = [1.0, 3.0, 9.0, 20.0, 20.0, 20.0];
        for want in expected {
            let got = secs(backoff.next());
            assert!((got - want).abs() < 1e-6, "got {got}, want {want}");
        }
    }

    #[test]
    fn middle_draw() {
        // next_u64 = 2^63 gives the midpoint of [low, high).
        let mut backoff = Backoff::new_with_rng(&config(1000, 20_000), Box::new(FixedRng(1 << 63)));
        let got: Vec<f64> = (0..4).map(|_| secs(backoff.next())).collect();
        // 1, then mid(1, 3) = 2, then mid(1, 6) = 3.5, then mid(1, 10.5) = 5.75.
        for (g, w) in got.iter().zip([1.0, 2.0, 3.5, 5.75]) {
            assert!((g - w).abs() < 1e-6, "got {got:?}");
        }
    }

    #[test]
    fn zero_initial_does_not_panic() {
        let mut backoff = Backoff::new(&config(0, 0));
        assert_eq!(backoff.next(), Duration::ZERO);
        assert_eq!(backoff.next(), Duration::ZERO);
    }

    #[test]
    fn thread_rng_stays_in_bounds() {
        let mut backoff = Backoff::new(&config(200, 20_000));
        let mut previous = 0.2;
        for _ in 0..100 {
            let delay = secs(backoff.next());
            assert!((0.2..=20.0).contains(&delay), "{delay}");
            assert!(delay <= (previous * 3.0_f64).max(0.2) + 1e-9);
            previous = delay;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_retryable_until_success() {
        let calls = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let value = retry(&config(100, 1000), "op", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(Error::new(ErrorKind::Transient, "flaky"))
            } else {
                Ok(7)
            }
        })
        .await
        .unwrap();
        assert_eq!(value, 7);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        // Three sleeps, each at least the initial backoff.
        assert!(start.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts() {
        let calls = AtomicU32::new(0);
        let err = retry(&config(100, 1000), "op", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(Error::new(ErrorKind::Throttled, "slow down"))
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        assert_eq!(err.kind(), ErrorKind::Throttled);
        assert_eq!(err.to_string(), "gave up after 5 attempts: slow down");
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let err = retry(&config(100, 1000), "op", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(Error::new(ErrorKind::AccessDenied, "denied"))
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(err.to_string(), "denied");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_attempts_means_one() {
        let calls = AtomicU32::new(0);
        let cfg = RetryConfig {
            max_attempts: 0,
            ..RetryConfig::default()
        };
        let _ = retry(&cfg, "op", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(Error::new(ErrorKind::Transient, "x"))
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    fn faulty() -> crate::FaultyStore<crate::MemoryStore> {
        crate::FaultyStore::new(crate::MemoryStore::new("b"))
    }

    async fn put(store: &dyn crate::ObjectStore, key: &str) {
        store
            .put(
                key,
                bytes::Bytes::from_static(b"abc"),
                &crate::PutOptions::default(),
            )
            .await
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn reads_retry_a_throttle_or_a_reset_and_then_succeed() {
        use crate::Op;
        let store = faulty();
        put(&store, "p/a").await;
        store.fail(Op::List, 1, ErrorKind::Throttled);
        store.fail(Op::Head, 1, ErrorKind::Transient);
        store.fail(Op::HeadChecksum, 1, ErrorKind::Unreachable);
        store.fail(Op::ListMultipartUploads, 2, ErrorKind::Throttled);
        let cfg = config(10, 100);
        assert_eq!(list_with_retry(&store, "p/", &cfg).await.unwrap().len(), 1);
        assert_eq!(head_with_retry(&store, "p/a", &cfg).await.unwrap().size, 3);
        assert_eq!(
            head_checksum_with_retry(&store, "p/a", &cfg)
                .await
                .unwrap()
                .size,
            3
        );
        assert!(
            list_uploads_with_retry(&store, "p/", &cfg)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.calls(Op::List), 2);
        assert_eq!(store.calls(Op::Head), 2);
        assert_eq!(store.calls(Op::HeadChecksum), 2);
        assert_eq!(store.calls(Op::ListMultipartUploads), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn reads_give_up_after_max_attempts_and_do_not_retry_not_found() {
        use crate::Op;
        let store = faulty();
        store.fail(Op::List, 9, ErrorKind::Throttled);
        let err = list_with_retry(&store, "p/", &config(10, 100))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Throttled);
        assert!(
            err.to_string().starts_with("gave up after 5 attempts"),
            "{err}"
        );
        let err = head_with_retry(&store, "p/missing", &config(10, 100))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(store.calls(Op::Head), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_nth_of_many_heads_failing_once_is_retried() {
        // One 503 and one reset among 200 HEADs, as `status` does for every object.
        use crate::Op;
        let store = faulty();
        for i in 0..200 {
            put(&store, &format!("p/{i:03}")).await;
        }
        store.fail_key("p/137", Some(Op::Head), 1, ErrorKind::Throttled);
        store.fail_key("p/150", Some(Op::Head), 1, ErrorKind::Transient);
        let cfg = config(10, 100);
        for entry in list_with_retry(&store, "p/", &cfg).await.unwrap() {
            head_with_retry(&store, &entry.key, &cfg).await.unwrap();
        }
        assert_eq!(store.calls(Op::Head), 202);
    }
}

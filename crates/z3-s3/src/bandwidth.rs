//! [`Bandwidth`]: a limit on the bytes per second one process moves to and from S3
//! (`BWLIMIT`), shared by every concurrent part upload and ranged download of a store.
//!
//! It paces rather than bursts: each chunk of a transfer reserves its slot on a shared virtual
//! clock (the moment the previous reservation ends) and waits for it, so the combined rate of
//! all connections never exceeds the limit over any stretch longer than one chunk, and a paused
//! transfer earns no credit to burst with later. Uploads are paced inside the request body, in
//! [`CHUNK`]-sized frames ([`ThrottledBody`]), so a 256 MiB part goes out at the limit rather
//! than at line speed followed by a pause; downloads are paced as the response body is read,
//! and TCP's flow control slows the server down.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, Sleep};

/// How much one paced step moves: small enough that pacing is smooth at home-uplink rates
/// (64 KiB is 50 ms at 1.25 MiB/s), large enough that the bookkeeping costs nothing.
pub const CHUNK: usize = 64 * 1024;

/// The smallest limit accepted: below 1 KiB/s a single part would take days.
pub const MIN_RATE: u64 = 1024;

/// A shared bytes-per-second limit; clone the `Arc` to share it.
#[derive(Debug)]
pub struct Bandwidth {
    rate: u64,
    /// When the last reservation ends: the next one starts there, or now if that is past.
    next: Mutex<Option<Instant>>,
}

impl Bandwidth {
    /// A limit of `rate` bytes per second.
    ///
    /// # Errors
    /// A rate below [`MIN_RATE`], as a reason for the caller's message.
    pub fn new(rate: u64) -> Result<Self, String> {
        if rate < MIN_RATE {
            return Err(format!("must be at least {MIN_RATE} bytes per second (1K)"));
        }
        Ok(Self {
            rate,
            next: Mutex::new(None),
        })
    }

    /// `BWLIMIT` as written: bytes per second with an optional `K`, `M`, `G` suffix (powers of
    /// 1024, like `CHUNK_SIZE`); `0`, `off` or empty for no limit (`None`).
    ///
    /// # Errors
    /// A value that is not such a size, or below [`MIN_RATE`].
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        let text = text.trim();
        if text.is_empty() || text == "0" || text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let per_second = text
            .strip_suffix("/s")
            .or_else(|| text.strip_suffix("/S"))
            .unwrap_or(text);
        let rate = crate::parse_size(per_second).map_err(|e| e.to_string())?;
        Self::new(rate).map(Some)
    }

    /// The limit, in bytes per second.
    #[must_use]
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// How much a paced body sends at once: [`CHUNK`], or an eighth of a second's worth at low
    /// rates, so a frame leaves at least every 125 ms and the SDK's stalled-stream protection
    /// never mistakes pacing for a dead connection.
    #[must_use]
    pub fn frame(&self) -> usize {
        usize::try_from(self.rate / 8).map_or(CHUNK, |eighth| eighth.clamp(1, CHUNK))
    }

    /// How long `bytes` take at the limit.
    fn duration_of(&self, bytes: u64) -> Duration {
        Duration::from_secs_f64(bytes as f64 / self.rate as f64)
    }

    /// Reserves the next slot for `bytes` and returns when it starts (now, or later when the
    /// limit is used up).
    #[must_use]
    pub fn reserve(&self, bytes: u64) -> Instant {
        let now = Instant::now();
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let start = next.map_or(now, |at| at.max(now));
        *next = Some(start + self.duration_of(bytes));
        start
    }

    /// Waits until `bytes` may move.
    pub async fn take(&self, bytes: u64) {
        tokio::time::sleep_until(self.reserve(bytes)).await;
    }
}

/// A request body that sends `data` in [`Bandwidth::frame`]-sized frames, each when [`Bandwidth`] lets it.
/// Its size is known up front (`Content-Length`), so servers see an ordinary upload.
pub struct ThrottledBody {
    data: Bytes,
    limit: Arc<Bandwidth>,
    /// The frame waiting for its slot, and the wait.
    pending: Option<(Bytes, Pin<Box<Sleep>>)>,
}

impl std::fmt::Debug for ThrottledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThrottledBody")
            .field("remaining", &self.data.len())
            .finish_non_exhaustive()
    }
}

impl ThrottledBody {
    /// `data`, paced by `limit`.
    #[must_use]
    pub fn new(data: Bytes, limit: Arc<Bandwidth>) -> Self {
        Self {
            data,
            limit,
            pending: None,
        }
    }
}

impl http_body::Body for ThrottledBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.pending.is_none() {
            if this.data.is_empty() {
                return Poll::Ready(None);
            }
            let frame = this.data.split_to(this.limit.frame().min(this.data.len()));
            let at = this.limit.reserve(frame.len() as u64);
            this.pending = Some((frame, Box::pin(tokio::time::sleep_until(at))));
        }
        let Some((_, wait)) = this.pending.as_mut() else {
            return Poll::Ready(None);
        };
        match wait.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(
                (this.pending.take()).map(|(frame, _)| Ok(http_body::Frame::data(frame))),
            ),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty() && self.pending.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let pending = self.pending.as_ref().map_or(0, |(frame, _)| frame.len());
        http_body::SizeHint::with_exact((self.data.len() + pending) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn limits_parse_with_suffixes_and_off() {
        let rate = |t: &str| Bandwidth::parse(t).unwrap().map(|b| b.rate());
        assert_eq!(rate("10M"), Some(10 * 1024 * 1024));
        assert_eq!(rate("512K/s"), Some(512 * 1024));
        assert_eq!(rate("1G"), Some(1 << 30));
        assert_eq!(rate("2048"), Some(2048));
        assert_eq!(rate("0"), None);
        assert_eq!(rate("off"), None);
        assert_eq!(rate(" "), None);
        assert!(Bandwidth::parse("fast").is_err());
        assert!(
            Bandwidth::parse("100")
                .unwrap_err()
                .contains("at least 1024")
        );
        // Frames: 64 KiB at high rates, an eighth of a second's worth at low ones.
        assert_eq!(Bandwidth::new(100 << 20).unwrap().frame(), CHUNK);
        assert_eq!(Bandwidth::new(8192).unwrap().frame(), 1024);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_takers_share_the_rate_and_idle_time_earns_no_burst() {
        let limit = Arc::new(Bandwidth::new(1024 * 1024).unwrap());
        let start = Instant::now();
        // Four tasks move 1 MiB each in 64 KiB steps: 4 MiB at 1 MiB/s is 4 s, whatever the
        // interleaving.
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let limit = Arc::clone(&limit);
                tokio::spawn(async move {
                    for _ in 0..16 {
                        limit.take(64 * 1024).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        // The last step starts at 4 s minus its own 1/16 s.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(3_930) && took <= Duration::from_millis(3_950),
            "{took:?}"
        );
        // Ten idle seconds later, a step still waits for nothing, but the next one is paced.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let again = Instant::now();
        limit.take(512 * 1024).await;
        assert_eq!(again.elapsed(), Duration::ZERO);
        limit.take(1).await;
        assert!(
            again.elapsed() >= Duration::from_millis(499),
            "{:?}",
            again.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_body_yields_every_byte_in_order_at_the_limit() {
        let data: Bytes = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let limit = Arc::new(Bandwidth::new(100_000).unwrap());
        let body = ThrottledBody::new(data.clone(), limit);
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(300_000));
        let start = Instant::now();
        let got = body.collect().await.unwrap().to_bytes();
        assert_eq!(got, data);
        // 24 frames of 12,500 bytes (an eighth of a second each at 100,000 bytes/s); the last
        // starts when the first 23 have had their time.
        let took = start.elapsed().as_secs_f64();
        assert!((took - 23.0 * 0.125).abs() < 0.01, "{took}");
    }
}

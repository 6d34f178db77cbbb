//! Cancellation: an [`Interrupt`] passed in by the caller asks a running command to stop cleanly
//! (stop `zfs send`, abort the multipart upload, kill an unfinished `zfs receive`).
//!
//! The engine never installs signal handlers and keeps no process-global state: the z3
//! binaries trigger the `Interrupt` they pass from their SIGINT/SIGTERM handlers, an embedder
//! from whatever means "stop" to it, tests from a timer. The signal number only names the
//! cause in messages ([`signal_name`]); any non-zero number works.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio_util::sync::CancellationToken;

/// SIGINT.
pub const SIGINT: i32 = 2;
/// SIGTERM.
pub const SIGTERM: i32 = 15;

/// A request to stop, shared by everything that must notice it.
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    token: CancellationToken,
    signal: Arc<AtomicI32>,
}

impl Interrupt {
    /// A request that has not been made yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks everything to stop, recording `signal` (the first one wins).
    pub fn trigger(&self, signal: i32) {
        if self
            .signal
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.token.cancel();
        }
    }

    /// The signal that asked to stop, if one did.
    #[must_use]
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(signal),
        }
    }

    /// The token that fires when asked to stop (for the uploader).
    #[must_use]
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Waits until asked to stop.
    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }
}

/// The signal's name for messages.
#[must_use]
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

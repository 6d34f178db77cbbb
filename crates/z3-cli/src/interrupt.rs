//! SIGINT and SIGTERM: the first one asks the running command to stop cleanly (stop `zfs send`,
//! abort the multipart upload, kill an unfinished `zfs receive`), a second one exits at once.
//!
//! Signals are process-wide, so the binaries share one [`Interrupt`] ([`global`]); the engine
//! takes any `Interrupt`, so tests trigger their own.

use std::sync::Arc;
use std::sync::OnceLock;
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

/// The process's interrupt, triggered by the handlers [`listen`] installs.
pub fn global() -> &'static Interrupt {
    static GLOBAL: OnceLock<Interrupt> = OnceLock::new();
    GLOBAL.get_or_init(Interrupt::new)
}

/// Installs SIGINT and SIGTERM handlers that trigger `interrupt`; a second signal exits at once
/// with status 128 + signal. Must run inside a Tokio runtime.
///
/// # Errors
/// The handlers cannot be installed.
pub fn listen(program: &'static str, interrupt: Interrupt) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        loop {
            let received = tokio::select! {
                _ = int.recv() => SIGINT,
                _ = term.recv() => SIGTERM,
            };
            // stderr may be a closed pipe: act first, and never panic on the message.
            if interrupt.signal().is_some() {
                say(&format!(
                    "{program}: {} again: exiting now",
                    signal_name(received)
                ));
                std::process::exit(128 + received);
            }
            interrupt.trigger(received);
            say(&format!(
                "{program}: {}: stopping and cleaning up (send it again to exit at once)",
                signal_name(received)
            ));
        }
    });
    Ok(())
}

fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

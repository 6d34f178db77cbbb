//! SIGINT and SIGTERM: the first one asks the running command to stop cleanly (stop `zfs send`,
//! abort the multipart upload, kill an unfinished `zfs receive`), a second one exits at once.
//!
//! Signals are process-wide, so the binaries share one [`Interrupt`] ([`global`]); the engine
//! (z3-engine, which installs no handlers) takes any `Interrupt`, so tests trigger their own.

use std::sync::OnceLock;

pub use z3_engine::cancel::{Interrupt, SIGINT, SIGTERM, signal_name};

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

//! Progress on stderr for the byte streams of `z3 backup`, `z3 restore`, `pput` and `z3_get`.
//!
//! A bar with bytes, rate and ETA when the total is known (an estimate or an object's size), a
//! spinner with bytes and rate otherwise. Shown when stderr is a terminal, or when asked for with
//! `--progress`; never when piped unless asked, so logs and cron mails stay clean. Asked for on a
//! non-terminal, it writes one plain line a second instead of redrawing a bar.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// When to draw progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Only if stderr is a terminal.
    Auto,
    /// Always (`--progress`).
    Always,
    /// Never (`--quiet`).
    Never,
}

impl ProgressMode {
    /// From the usual pair of flags.
    #[must_use]
    pub fn from_flags(progress: bool, quiet: bool) -> Self {
        match (progress, quiet) {
            (true, _) => Self::Always,
            (false, true) => Self::Never,
            (false, false) => Self::Auto,
        }
    }

    fn enabled(self) -> bool {
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::Auto => std::io::stderr().is_terminal(),
        }
    }
}

/// A progress display for one stream.
#[derive(Debug, Clone)]
pub enum Display {
    /// Nothing is shown.
    Hidden,
    /// An indicatif bar on the terminal.
    Bar(ProgressBar),
    /// Plain lines on stderr, at most one a second (`--progress` into a log file).
    Lines {
        /// What is being transferred.
        label: String,
        /// Expected bytes, when known.
        total: Option<u64>,
    },
}

/// The display for one stream, per `mode` and whether stderr is a terminal.
#[must_use]
pub fn bar(mode: ProgressMode, label: &str, total: Option<u64>) -> Display {
    if !mode.enabled() {
        return Display::Hidden;
    }
    if !std::io::stderr().is_terminal() {
        return Display::Lines {
            label: label.to_owned(),
            total,
        };
    }
    let bar = match total {
        Some(total) => {
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(4))
                .with_style(
                    ProgressStyle::with_template(
                        "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                )
        }
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4))
            .with_style(
                ProgressStyle::with_template("{msg} {spinner} {bytes} {binary_bytes_per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
    };
    bar.set_message(label.to_owned());
    bar.enable_steady_tick(Duration::from_millis(250));
    Display::Bar(bar)
}

/// The engine's progress ([`z3_engine::Progress`]) as terminal bars or plain lines, per the mode.
#[derive(Debug, Clone, Copy)]
pub struct Bars(pub ProgressMode);

impl z3_engine::Progress for Bars {
    fn start(&self, label: &str, total: Option<u64>) -> Box<dyn z3_engine::Transfer> {
        Box::new(Progress::new(bar(self.0, label, total)))
    }
}

impl z3_engine::Transfer for Progress {
    fn advance(&mut self, bytes: u64) {
        Progress::advance(self, usize::try_from(bytes).unwrap_or(usize::MAX));
    }
    fn finish(&mut self) {
        Progress::finish(self);
    }
    fn fail(&mut self) {
        Progress::fail(self);
    }
}

/// Counts bytes into a [`Display`]: the bar, or a plain line at most once a second.
#[derive(Debug)]
pub struct Progress {
    display: Display,
    bytes: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// Starts counting at zero now.
    #[must_use]
    pub fn new(display: Display) -> Self {
        let now = Instant::now();
        Self {
            display,
            bytes: 0,
            started: now,
            last_line: now,
        }
    }

    /// Bytes counted so far.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Counts `n` more bytes; `0` means the stream ended (the bar is finished, the last line
    /// says "done").
    pub fn advance(&mut self, n: usize) {
        self.bytes += n as u64;
        match &self.display {
            Display::Hidden => {}
            Display::Bar(bar) if n == 0 => bar.finish(),
            Display::Bar(bar) => bar.inc(n as u64),
            Display::Lines { label, total } => {
                if n == 0 || self.last_line.elapsed() >= Duration::from_secs(1) {
                    self.last_line = Instant::now();
                    let line =
                        progress_line(label, self.bytes, *total, self.started.elapsed(), n == 0);
                    let _ = writeln!(std::io::stderr(), "{line}");
                }
            }
        }
    }

    /// The stream ended.
    pub fn finish(&mut self) {
        self.advance(0);
    }

    /// The stream failed: the bar stays where it stopped.
    pub fn fail(&self) {
        if let Display::Bar(bar) = &self.display {
            bar.abandon();
        }
    }
}

/// One plain progress record: `label: 12.0 MiB of 30.0 MiB (40%), 6.0 MiB/s`.
fn progress_line(
    label: &str,
    bytes: u64,
    total: Option<u64>,
    elapsed: Duration,
    done: bool,
) -> String {
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    let rate = mib(bytes) / elapsed.as_secs_f64().max(1e-3);
    let of = match total {
        Some(total) if total > 0 => format!(
            " of {:.1} MiB ({:.0}%)",
            mib(total),
            (bytes as f64 / total as f64 * 100.0).min(999.0)
        ),
        _ => String::new(),
    };
    let state = if done { ", done" } else { "" };
    format!("{label}: {:.1} MiB{of}, {rate:.1} MiB/s{state}", mib(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn counts_every_byte_and_finishes_at_eof() {
        let bar = ProgressBar::hidden();
        bar.set_length(10);
        // The engine's reader, counting into the CLI's bar (what `z3 backup` and `restore` draw).
        let mut reader = z3_engine::ProgressReader::new(
            &b"0123456789"[..],
            Box::new(Progress::new(Display::Bar(bar.clone()))),
        );
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"0123456789");
        assert_eq!(reader.bytes(), 10);
        assert_eq!(bar.position(), 10);
        assert!(bar.is_finished());
    }

    #[test]
    fn blocking_reads_are_counted_too() {
        use std::io::Read;
        let bar = ProgressBar::hidden();
        bar.set_length(10);
        // The engine's reader again, read blocking (what `pput` draws).
        let mut reader = z3_engine::ProgressReader::new(
            &b"0123456789"[..],
            Box::new(Progress::new(Display::Bar(bar.clone()))),
        );
        let mut out = Vec::new();
        Read::read_to_end(&mut reader, &mut out).unwrap();
        assert_eq!(out, b"0123456789");
        assert_eq!(bar.position(), 10);
        assert!(bar.is_finished());
    }

    #[test]
    fn plain_lines_show_bytes_share_and_rate() {
        let line = progress_line(
            "pool/fs@a",
            12 << 20,
            Some(30 << 20),
            Duration::from_secs(2),
            false,
        );
        assert_eq!(line, "pool/fs@a: 12.0 MiB of 30.0 MiB (40%), 6.0 MiB/s");
        let line = progress_line("k", 1 << 20, None, Duration::from_secs(1), true);
        assert_eq!(line, "k: 1.0 MiB, 1.0 MiB/s, done");
    }

    #[test]
    fn flags_pick_the_mode() {
        assert_eq!(ProgressMode::from_flags(true, false), ProgressMode::Always);
        assert_eq!(ProgressMode::from_flags(false, true), ProgressMode::Never);
        assert_eq!(ProgressMode::from_flags(false, false), ProgressMode::Auto);
        assert!(!ProgressMode::Never.enabled());
        assert!(ProgressMode::Always.enabled());
    }
}

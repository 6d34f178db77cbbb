//! `z3_ssh_sync`: push or pull snapshots between this host and another one over SSH.
//!
//! The decisions are the original's (docs/compatibility.md, "`z3_ssh_sync`"; `z3_core::plan_sync`):
//! an empty destination gets the source's latest snapshot as a full stream; otherwise everything after
//! the destination's latest snapshot, which must exist on the source, is sent incrementally; an
//! up-to-date destination is a no-op. Unlike the original, the remote side is `zfs` run through
//! `ssh` with every remote word quoted (`z3_zfs::SshTarget`), the stream is buffered in-process
//! (the original piped through `mbuffer`), and each snapshot is one `zfs send -i` stream whose
//! sender's and receiver's exit statuses are both checked, so a failing remote `zfs receive`
//! fails the command.

// The doc comments of the flag structs are terminal help text, not rustdoc.
#![allow(clippy::doc_markdown, rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use bytes::{Bytes, BytesMut};
use clap::Parser;
use tokio::io::AsyncReadExt;
use z3_core::{DatasetName, FullSnapshotName, LocalChain, SnapshotName, SyncError, plan_sync};
use z3_zfs::{ReceiveOptions, ReceiveSink, SendStream, Zfs};

use crate::console::Console;
use crate::interrupt::Interrupt;
use crate::progress::{ProgressMode, ProgressReader, bar};

/// The original's default when neither flag nor config sets a prefix.
pub const DEFAULT_SYNC_PREFIX: &str = "zfs-auto-snap:daily";
/// Chunks read from `zfs send` at a time.
const CHUNK: usize = 1 << 20;
/// Chunks buffered between sender and receiver: 128 MiB, like the original's `mbuffer -m 200m`
/// within a factor of two, so a bursty network does not stall `zfs send`.
const BUFFERED_CHUNKS: usize = 128;

const AFTER_HELP: &str = "\
The destination's newest snapshot (matching the prefix) must exist on the source; everything newer \
is sent, one incremental stream per snapshot. An empty destination gets the source's newest snapshot \
as a full stream. Nothing happens when the destination is up to date.

FILESYSTEM and SNAPSHOT_PREFIX come from the environment or /etc/z3_backup/z3.conf as for z3 \
(default prefix zfs-auto-snap:daily). REMOTE is [user@]host, reached with ssh; its zfs runs as the \
ssh user, or through `sudo -n` with --sudo.

Exit codes: 0 success (also: nothing to do), 1 error (ssh, zfs send or zfs receive failed; no \
snapshots on the source), 2 usage error, 3 the destination diverged from the source.";

/// Push snapshots of a dataset to another host over SSH, or pull them from it.
#[derive(Debug, Parser)]
#[allow(clippy::struct_excessive_bools)] // command-line switches
#[command(name = "z3_ssh_sync", version, after_help = AFTER_HELP, max_term_width = 100)]
pub struct SyncArgs {
    /// [user@]host to sync with
    #[arg(value_name = "REMOTE")]
    pub remote: String,

    /// Local dataset (config FILESYSTEM)
    #[arg(long, visible_alias = "filesystem", value_name = "DATASET")]
    pub dataset: Option<String>,

    /// Dataset on the remote host (default: the same name as the local one)
    #[arg(long, visible_alias = "remote-filesystem", value_name = "DATASET")]
    pub remote_dataset: Option<String>,

    /// Only snapshots whose name starts with this take part (config SNAPSHOT_PREFIX)
    #[arg(long, value_name = "PREFIX")]
    pub snapshot_prefix: Option<String>,

    /// Pull from the remote host instead of pushing to it
    #[arg(long)]
    pub pull: bool,

    /// Print what would be sent; send nothing
    #[arg(long)]
    pub dry_run: bool,

    /// No progress and no "Nothing to do here."
    #[arg(long, conflicts_with = "progress")]
    pub quiet: bool,

    /// Show progress on stderr even when it is not a terminal
    #[arg(long)]
    pub progress: bool,

    /// ssh port (-p), 1 to 65535
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub ssh_port: Option<u16>,

    /// ssh identity file (-i)
    #[arg(long, value_name = "FILE")]
    pub ssh_identity: Option<PathBuf>,

    /// ssh option (-o), repeatable, e.g. --ssh-option StrictHostKeyChecking=yes
    #[arg(long = "ssh-option", value_name = "OPTION")]
    pub ssh_options: Vec<String>,

    /// The ssh program
    #[arg(long, value_name = "PATH", default_value = "ssh")]
    pub ssh_program: PathBuf,

    /// Run the remote zfs through `sudo -n`
    #[arg(long)]
    pub sudo: bool,

    /// zfs receive -F: roll the destination back to its latest snapshot first (needed when it
    /// is mounted writable and was touched, even by reading with atime on)
    #[arg(long)]
    pub force: bool,

    /// Config file (default /etc/z3_backup/z3.conf; also Z3_CONFIG)
    #[arg(long, value_name = "PATH", env = "Z3_CONFIG", hide_env_values = true)]
    pub config: Option<PathBuf>,

    /// More logging on stderr (-v, -vv, -vvv)
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// One side of a sync.
#[derive(Debug, Clone)]
pub struct Side {
    /// Its `zfs`.
    pub zfs: Arc<dyn Zfs>,
    /// The dataset there.
    pub dataset: DatasetName,
    /// How to name it in messages (`host:dataset` for the remote one).
    pub label: String,
}

/// A resolved sync.
#[derive(Debug, Clone)]
#[allow(clippy::struct_excessive_bools)] // the switches of the command line
pub struct Sync {
    /// Where snapshots come from.
    pub source: Side,
    /// Where they go.
    pub destination: Side,
    /// Only snapshots starting with this.
    pub prefix: String,
    /// Print the plan only.
    pub dry_run: bool,
    /// No "Nothing to do here.".
    pub quiet: bool,
    /// `zfs receive -F` on the destination.
    pub force: bool,
    /// Progress bars.
    pub progress: ProgressMode,
}

/// A sync refused because the two sides do not share history (exit status 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Diverged(pub String);

impl Sync {
    /// Plans and runs the sync; one line per snapshot sent on `console.out`.
    ///
    /// # Errors
    /// [`SyncError`] texts (no source snapshots: exit 1), [`Diverged`] (exit 3), and any
    /// failure of `zfs send`, `zfs receive` or ssh, naming the snapshot.
    pub async fn run(&self, console: &mut Console<'_>, interrupt: &Interrupt) -> Result<()> {
        let source = self.chain(&self.source, false).await?;
        let destination = self.chain(&self.destination, true).await?;
        let short = |chain: &LocalChain| -> Vec<SnapshotName> {
            chain
                .entries()
                .iter()
                .map(|e| e.snapshot.name.snapshot().clone())
                .collect()
        };
        let (source_names, destination_names) = (short(&source), short(&destination));
        let plan = match plan_sync(&source_names, &destination_names) {
            Ok(plan) => plan,
            Err(err @ SyncError::DestinationDiverged) => {
                let latest = destination_names.last().map(ToString::to_string);
                bail!(Diverged(format!(
                    "{err} ({}@{} is not on {})",
                    self.destination.label,
                    latest.unwrap_or_default(),
                    self.source.label
                )));
            }
            Err(err) => {
                return Err(anyhow!(err).context(format!(
                    "no snapshots matching '{}' on {}",
                    self.prefix, self.source.label
                )));
            }
        };
        let Some(plan) = plan else {
            if !self.quiet {
                writeln!(console.err, "Nothing to do here.")?;
            }
            return Ok(());
        };
        if let Some(base) = &plan.base {
            self.check_same_snapshot(&source, &destination, base)?;
        }
        // One `-i` step per snapshot after the base, or the target alone as a full.
        let mut steps: Vec<(Option<SnapshotName>, SnapshotName)> = Vec::new();
        match &plan.base {
            None => steps.push((None, plan.target.clone())),
            Some(base) => {
                let mut prev = base.clone();
                let after = source_names.iter().skip_while(|s| *s != base).skip(1);
                for next in after {
                    steps.push((Some(prev), next.clone()));
                    prev = next.clone();
                    if *next == plan.target {
                        break;
                    }
                }
            }
        }
        for (base, next) in steps {
            if let Some(signal) = interrupt.signal() {
                bail!(
                    "stopped before sending {next} ({} received)",
                    crate::interrupt::signal_name(signal)
                );
            }
            self.send_one(base.as_ref(), &next, console, interrupt)
                .await?;
        }
        Ok(())
    }

    async fn chain(&self, side: &Side, missing_ok: bool) -> Result<LocalChain> {
        match side.zfs.list_snapshots(&side.dataset).await {
            Ok(list) => Ok(LocalChain::new(&list, &self.prefix)),
            Err(err) if missing_ok && err.is_not_found() => Ok(LocalChain::default()),
            Err(err) => {
                Err(anyhow!(err).context(format!("cannot list snapshots of {}", side.label)))
            }
        }
    }

    /// The base must be the same snapshot on both sides, not just the same name.
    fn check_same_snapshot(
        &self,
        source: &LocalChain,
        destination: &LocalChain,
        base: &SnapshotName,
    ) -> Result<()> {
        let guid = |chain: &LocalChain, side: &Side| {
            chain
                .find(&format!("{}@{base}", side.dataset))
                .map(|e| e.snapshot.guid)
        };
        match (
            guid(source, &self.source),
            guid(destination, &self.destination),
        ) {
            (Some(a), Some(b)) if a != b => Err(anyhow!(Diverged(format!(
                "{}@{base} and {}@{base} are different snapshots with the same name (guid {a} vs {b})",
                self.source.label, self.destination.label
            )))),
            _ => Ok(()),
        }
    }

    async fn send_one(
        &self,
        base: Option<&SnapshotName>,
        next: &SnapshotName,
        console: &mut Console<'_>,
        interrupt: &Interrupt,
    ) -> Result<()> {
        let from = base
            .map(|b| FullSnapshotName::new(self.source.dataset.clone(), b.clone()))
            .transpose()?;
        let to = FullSnapshotName::new(self.source.dataset.clone(), next.clone())?;
        let target = FullSnapshotName::new(self.destination.dataset.clone(), next.clone())?;
        let what = match &from {
            Some(from) => format!(
                "{}@{next} (incremental from {})",
                self.source.label,
                from.snapshot()
            ),
            None => format!("{}@{next} (full)", self.source.label),
        };
        if self.dry_run {
            writeln!(
                console.out,
                "would send {what} to {}@{next}",
                self.destination.label
            )?;
            return Ok(());
        }
        let estimate = self
            .source
            .zfs
            .estimate_send_size(from.as_ref(), &to)
            .await
            .ok()
            .map(|e| e.bytes);
        let stream = self
            .source
            .zfs
            .send(from.as_ref(), &to)
            .await
            .with_context(|| format!("cannot start zfs send of {what}"))?;
        let sink = self
            .destination
            .zfs
            .receive(&target, &ReceiveOptions { force: self.force })
            .await
            .with_context(|| format!("cannot start zfs receive on {}", self.destination.label))?;
        let progress = bar(self.progress, &format!("{next}"), estimate);
        let bytes = buffered_pump(ProgressReader::new(stream, progress), sink, interrupt)
            .await
            .with_context(|| {
                format!("sending {what} to {}@{next} failed", self.destination.label)
            })?;
        writeln!(
            console.out,
            "Sent {what} to {}@{next}: {}.",
            self.destination.label,
            z3_core::humanize(bytes)
        )?;
        console.out.flush()?;
        Ok(())
    }
}

/// Moves `stream` into `sink` through an in-process buffer of [`BUFFERED_CHUNKS`] chunks: a
/// reader task keeps `zfs send` going while the receiver (or the network to it) is slow.
/// `sink` is finished only when the stream ended successfully; otherwise it is dropped, which
/// kills the receiver before it commits.
async fn buffered_pump(
    mut stream: ProgressReader<SendStream>,
    mut sink: ReceiveSink,
    interrupt: &Interrupt,
) -> Result<u64> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(BUFFERED_CHUNKS);
    let reader = tokio::spawn(async move {
        loop {
            let mut buf = BytesMut::with_capacity(CHUNK);
            match stream.read_buf(&mut buf).await {
                Ok(0) => break,
                Ok(_) => {
                    if tx.send(Ok(buf.freeze())).await.is_err() {
                        break;
                    }
                }
                Err(err) => {
                    let _ = tx.send(Err(err)).await;
                    break;
                }
            }
        }
    });
    let mut total = 0u64;
    loop {
        let next = tokio::select! {
            biased;
            () = interrupt.cancelled() => {
                reader.abort();
                drop(sink);
                bail!("stopped after {total} bytes: zfs send and zfs receive were killed");
            }
            next = rx.recv() => next,
        };
        match next {
            None => break,
            Some(Ok(chunk)) => {
                sink = match z3_engine::receive::write_or_explain(sink, &chunk, interrupt).await {
                    Ok(sink) => sink,
                    Err(err) => {
                        reader.abort();
                        return Err(err);
                    }
                };
                total += chunk.len() as u64;
            }
            Some(Err(err)) => {
                drop(sink);
                return Err(anyhow!(err).context("reading from zfs send failed"));
            }
        }
    }
    // The reader ended: the stream reported end-of-file, i.e. zfs send exited successfully.
    let _ = reader.await;
    z3_engine::receive::finish_or_kill(sink, interrupt).await?;
    Ok(total)
}

/// Runs `z3_ssh_sync` with `args`, reading FILESYSTEM and SNAPSHOT_PREFIX like `z3` does.
///
/// # Errors
/// Usage errors (names, missing dataset, bad destination) and everything [`Sync::run`] returns.
pub async fn main(args: SyncArgs, console: &mut Console<'_>) -> Result<()> {
    let file = match &args.config {
        Some(path) => crate::config::IniFile::load(path, true)?,
        None => crate::config::IniFile::load(
            std::path::Path::new(crate::config::DEFAULT_CONFIG_PATH),
            false,
        )?,
    };
    let flags = crate::config::FlagOverrides {
        filesystem: args.dataset.clone(),
        snapshot_prefix: args.snapshot_prefix.clone(),
        ..crate::config::FlagOverrides::default()
    };
    let raw = crate::config::layer(&file, std::env::vars(), &flags)?;
    let Some(local) = raw.filesystem.as_deref() else {
        bail!(z3_engine::UsageError(
            "no dataset: give --dataset or set FILESYSTEM".into()
        ));
    };
    let local = DatasetName::new(local)?;
    let remote = match &args.remote_dataset {
        Some(name) => DatasetName::new(name)?,
        None => local.clone(),
    };
    let mut target =
        z3_zfs::SshTarget::new(&args.remote).map_err(|e| z3_engine::UsageError(e.to_string()))?;
    target.program.clone_from(&args.ssh_program);
    target.port = args.ssh_port;
    target.identity.clone_from(&args.ssh_identity);
    target.options.clone_from(&args.ssh_options);
    target.sudo = args.sudo;
    let here = Side {
        zfs: Arc::new(z3_zfs::ZfsCli::new()),
        label: local.to_string(),
        dataset: local,
    };
    let there = Side {
        zfs: Arc::new(z3_zfs::ZfsCli::over_ssh(target)),
        label: format!("{}:{remote}", args.remote),
        dataset: remote,
    };
    let (source, destination) = if args.pull {
        (there, here)
    } else {
        (here, there)
    };
    let sync = Sync {
        source,
        destination,
        prefix: raw
            .snapshot_prefix
            .unwrap_or_else(|| DEFAULT_SYNC_PREFIX.to_owned()),
        dry_run: args.dry_run,
        quiet: args.quiet,
        force: args.force,
        progress: ProgressMode::from_flags(args.progress, args.quiet),
    };
    sync.run(console, crate::interrupt::global()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    struct OnDrop(Arc<AtomicBool>);

    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// A sink whose reader never reads (the write blocks once the 64 KiB duplex buffer is
    /// full) and whose "process" records being killed (its completion future dropped unfinished).
    fn stalled_sink() -> (ReceiveSink, Arc<AtomicBool>, tokio::io::DuplexStream) {
        let (writer, reader) = tokio::io::duplex(64 << 10);
        let killed = Arc::new(AtomicBool::new(false));
        let guard = OnDrop(Arc::clone(&killed));
        let completion = async move {
            std::future::pending::<()>().await;
            drop(guard);
            Ok(())
        };
        (
            ReceiveSink::from_parts(writer, completion, "zfs receive pool/fs@s".into()),
            killed,
            reader,
        )
    }

    #[tokio::test]
    async fn an_interrupt_stops_a_sync_whose_receiver_stopped_reading() {
        let (sink, killed, _reader) = stalled_sink();
        let source = std::io::Cursor::new(vec![7u8; 16 << 20]);
        let stream = SendStream::from_parts(source, async { Ok(()) }, "zfs send p@s".into());
        let stream = ProgressReader::new(stream, bar(ProgressMode::Never, "p@s", None));
        let interrupt = Interrupt::new();
        let trigger = interrupt.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            trigger.trigger(crate::interrupt::SIGINT);
        });
        // Fails on the old pump: the blocked write never returned, so this timed out.
        let result = tokio::time::timeout(
            Duration::from_secs(20),
            buffered_pump(stream, sink, &interrupt),
        )
        .await
        .expect("the sync ignored the interrupt while the receiver was not reading");
        let err = format!("{:#}", result.unwrap_err());
        assert!(err.contains("was not reading its input"), "{err}");
        assert!(killed.load(Ordering::SeqCst), "the receiver was not killed");
    }
}

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

use anyhow::{Result, bail};
use clap::Parser;
use z3_core::DatasetName;
use z3_engine::Event;

pub use z3_engine::sync::{Diverged, Side};

use crate::console::{Console, Render, Rendered};
use crate::interrupt::Interrupt;
use crate::progress::{Bars, ProgressMode};

/// The original's default when neither flag nor config sets a prefix.
pub const DEFAULT_SYNC_PREFIX: &str = "zfs-auto-snap:daily";

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
#[command(name = "z3_ssh_sync", version = z3_engine::VERSION, after_help = AFTER_HELP, max_term_width = 100)]
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

/// A resolved sync, as `z3_ssh_sync` runs it: the engine's [`z3_engine::sync::Sync`] with the
/// command line's output.
#[derive(Debug, Clone)]
pub struct Sync {
    /// What to send where.
    pub plan: z3_engine::sync::Sync,
    /// No "Nothing to do here.".
    pub quiet: bool,
}

/// Prints each snapshot sent as the original did.
struct SentLines<'c, 'w>(&'c mut Console<'w>);

impl Render for SentLines<'_, '_> {
    fn render(&mut self, event: Event) -> std::io::Result<()> {
        match event {
            Event::Sent(s) if s.dry_run => {
                writeln!(self.0.out, "would send {} to {}", s.what, s.destination)
            }
            Event::Sent(s) => {
                writeln!(
                    self.0.out,
                    "Sent {} to {}: {}.",
                    s.what,
                    s.destination,
                    z3_core::humanize(s.bytes)
                )?;
                self.0.out.flush()
            }
            Event::Note { text } => writeln!(self.0.err, "{text}"),
            _ => Ok(()),
        }
    }
}

impl Sync {
    /// Plans and runs the sync; one line per snapshot sent on `console.out`.
    ///
    /// # Errors
    /// See [`z3_engine::sync::Sync::run`].
    pub async fn run(&self, console: &mut Console<'_>, interrupt: &Interrupt) -> Result<()> {
        let mut lines = Rendered::new(SentLines(console));
        let report = (self.plan)
            .run(&mut lines, interrupt)
            .await
            .map_err(|err| lines.error(err))?;
        if report.up_to_date && !self.quiet {
            writeln!(console.err, "Nothing to do here.")?;
        }
        Ok(())
    }
}

/// Runs `z3_ssh_sync` with `args`, reading FILESYSTEM and SNAPSHOT_PREFIX like `z3` does.
///
/// # Errors
/// Usage errors (names, missing dataset, bad destination) and everything [`Sync::run`] returns.
pub async fn main(args: SyncArgs, console: &mut Console<'_>) -> Result<()> {
    let flags = crate::config::FlagOverrides {
        filesystem: args.dataset.clone(),
        snapshot_prefix: args.snapshot_prefix.clone(),
        ..crate::config::FlagOverrides::default()
    };
    let (_, raw) = crate::setup::raw_config(args.config.as_deref(), &flags)?;
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
    let progress = ProgressMode::from_flags(args.progress, args.quiet);
    let plan = z3_engine::sync::Sync {
        source,
        destination,
        prefix: raw
            .snapshot_prefix
            .unwrap_or_else(|| DEFAULT_SYNC_PREFIX.to_owned()),
        dry_run: args.dry_run,
        force: args.force,
        progress: Arc::new(Bars(progress)),
    };
    let sync = Sync {
        plan,
        quiet: args.quiet,
    };
    sync.run(console, crate::interrupt::global()).await
}

//! Command-line flags of `z3`, as clap derives them. Raw flags only; [`crate::config`] resolves them.

// The doc comments below are the help text users read in a terminal, not rustdoc: no backticks there.
#![allow(
    clippy::doc_markdown,
    rustdoc::invalid_html_tags,
    rustdoc::bare_urls,
    rustdoc::broken_intra_doc_links
)]
// Flag structs are naturally made of booleans.
#![allow(clippy::struct_excessive_bools)]

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::config::FlagOverrides;

/// Heading under which the flags shared by every subcommand are listed.
const GLOBAL: &str = "Global options";

const AFTER_HELP: &str = "\
Configuration comes from flags, then the [fs:<dataset>] section of the config file (SNAPSHOT_PREFIX and \
COMPRESSOR only), then upper-case environment variables, then the [main] section of /etc/z3_backup/z3.conf. \
BUCKET, S3_KEY_ID and S3_SECRET are never taken from flags. Without S3_KEY_ID the standard AWS credential \
chain is used (AWS_* variables, profiles, instance roles).

Exit codes:
  0  success (also: nothing left to back up or restore)
  1  error (S3, zfs, a failed stage of the pipeline, nothing matched SNAPSHOT_PREFIX)
  2  usage or configuration error (bad flag, invalid name, malformed config file)
  3  integrity problem: a broken backup chain, or an object whose bytes or seal do not match what was
     backed up (refused by backup and restore, reported by status and verify); a backup that would
     overwrite the backup of another snapshot
  4  another z3 backup of the same bucket, prefix and dataset holds the lock (message names it)
  backup --all exits with the most serious code of its datasets: 3, then 4, 2, 1, 0
  130, 143  stopped by SIGINT or SIGTERM after cleaning up (upload aborted, zfs send and an unfinished
     zfs receive killed); a second signal exits at once";

/// Back up ZFS snapshots to S3-compatible object storage, and restore them.
#[derive(Debug, Parser)]
#[command(
    name = "z3",
    version = z3_engine::VERSION,
    about = "Back up ZFS snapshots to S3-compatible object storage, and restore them",
    after_help = AFTER_HELP,
    max_term_width = 100
)]
pub struct Cli {
    /// Key prefix in the bucket (config S3_PREFIX, default "z3-backup/")
    #[arg(long, global = true, value_name = "PREFIX", help_heading = GLOBAL)]
    pub s3_prefix: Option<String>,

    /// Dataset to work on (config FILESYSTEM)
    #[arg(
        long,
        visible_alias = "filesystem",
        global = true,
        value_name = "DATASET",
        help_heading = GLOBAL
    )]
    pub dataset: Option<String>,

    /// Only snapshots whose name after '@' starts with this (config SNAPSHOT_PREFIX, default "zfs-auto-snap:daily")
    #[arg(long, global = true, value_name = "PREFIX", help_heading = GLOBAL)]
    pub snapshot_prefix: Option<String>,

    /// S3 endpoint URL, e.g. http://127.0.0.1:8333 (config S3_ENDPOINT, HOST or AWS_ENDPOINT_URL)
    #[arg(long, global = true, value_name = "URL", help_heading = GLOBAL)]
    pub endpoint: Option<String>,

    /// Config file (default /etc/z3_backup/z3.conf; also Z3_CONFIG)
    #[arg(long, global = true, value_name = "PATH", env = "Z3_CONFIG", hide_env_values = true, help_heading = GLOBAL)]
    pub config: Option<PathBuf>,

    /// File whose first line is the age passphrase: backups are encrypted to it (instead of to
    /// public keys) and restores decrypt with it (config AGE_PASSPHRASE_FILE)
    #[arg(long, global = true, value_name = "PATH", help_heading = GLOBAL)]
    pub age_passphrase_file: Option<String>,

    /// Show progress bars on stderr even when it is not a terminal
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub progress: bool,

    /// At most RATE bytes per second to and from S3 (K, M, G suffixes; "10M"); overrides BWLIMIT
    #[arg(long, global = true, value_name = "RATE", help_heading = GLOBAL)]
    pub bwlimit: Option<String>,

    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = ArgAction::Count, help_heading = GLOBAL)]
    pub verbose: u8,

    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show local snapshots and backups side by side, with the health of every backup chain
    Status(StatusArgs),
    /// Upload snapshots that are not backed up yet: incrementally from the last backup, or a full
    Backup(BackupArgs),
    /// Download a backed-up snapshot and everything it builds on, and `zfs receive` them
    Restore(RestoreArgs),
    /// Download backups and check them against their seals (stream digests) and their chains
    /// (guids), without touching ZFS
    Verify(VerifyArgs),

    /// Delete the backups the retention policy (PRESERVE) no longer keeps: never one a kept
    /// backup builds on, never one under Object Lock retention, leaves first; prints each
    /// deletion and each kept backup with the reason
    Prune(PruneArgs),
}

/// `z3 status`.
#[derive(Debug, Default, Args)]
pub struct StatusArgs {
    /// Print the rows as JSON instead of a table
    #[arg(long)]
    pub json: bool,

    /// One row per dataset found under the key prefix (newest backup, its age, chain depth,
    /// health, objects, size) instead of the snapshots of one dataset
    #[arg(long)]
    pub all: bool,

    /// Monitoring-plugin check of the dataset: one line with perfdata; exit 0 OK, 1 WARNING
    /// (newest backup older than --warn-age), 2 CRITICAL (older than --crit-age, no backup, or
    /// a broken chain), 3 UNKNOWN (any error, usage errors included)
    #[arg(long, conflicts_with_all = ["json", "all"])]
    pub check: bool,

    /// With --check: the age of the newest backup (its upload) that is a warning (s, m, h, d, w)
    #[arg(long, value_name = "AGE", default_value = "26h", value_parser = z3_core::check::parse_age)]
    pub warn_age: std::time::Duration,

    /// With --check: the age of the newest backup that is critical
    #[arg(long, value_name = "AGE", default_value = "50h", value_parser = z3_core::check::parse_age)]
    pub crit_age: std::time::Duration,

    /// HEAD every backup object instead of only the new and changed ones: neither read nor
    /// update the status cache (docs/operations.md, "Status cache")
    #[arg(long)]
    pub no_cache: bool,
}

/// `z3 backup`.
#[derive(Debug, Default, Args)]
pub struct BackupArgs {
    /// Snapshot to back up, the part after '@' (default: the latest matching one)
    #[arg(long, value_name = "NAME")]
    pub snapshot: Option<String>,

    /// Back up every dataset that has an [fs:<dataset>] section in the config file, one after
    /// the other; one failing dataset does not stop the others. A summary line per dataset
    /// follows; the exit code is the most serious one (3, then 4, 2, 1, 0)
    #[arg(long, conflicts_with = "snapshot")]
    pub all: bool,

    /// With --all: also every dataset below each configured one, each as its own chain (with
    /// its own [fs:…] section if it has one, else [main] and the environment)
    #[arg(long, requires = "all")]
    pub recursive: bool,

    /// Send a full stream of the snapshot instead of incrementals
    #[arg(long, conflicts_with = "incremental")]
    pub full: bool,

    /// Send incrementals from the last backup (the default; a first backup is a full on its own)
    #[arg(long)]
    pub incremental: bool,

    /// Print what would be sent, without sending or uploading anything
    #[arg(long)]
    pub dry_run: bool,

    /// A new chain is sent raw (zfs send -w, OpenZFS 0.8+): a natively encrypted dataset
    /// stays encrypted with its own key, and restores encrypted (adds w to SEND_FLAGS)
    #[arg(long)]
    pub raw: bool,

    /// Abort an upload an interrupted run left open (see .z3-journal/ in the bucket) instead of
    /// resuming it: the snapshot is sent again from its start
    #[arg(long)]
    pub no_resume: bool,

    /// Compressor: zstd (level 3) or zstd1..zstd19, gzip (in-process); pigz1, pigz4, gpg (programs); none;
    /// or a [compressor:NAME] of the config file (config COMPRESSOR, default zstd; pigz1 writes what the
    /// original z3 can restore)
    #[arg(long, value_name = "NAME", value_parser = compressor_name)]
    pub compressor: Option<String>,

    /// Encrypt to this age public key (age1...), after compression; repeat for several
    /// (config AGE_RECIPIENTS)
    #[arg(long = "age-recipient", value_name = "KEY")]
    pub age_recipients: Vec<String>,

    /// Encrypt to the age public keys in this file, one per line (config AGE_RECIPIENTS_FILE)
    #[arg(long, value_name = "PATH")]
    pub age_recipients_file: Option<String>,

    /// gpg key for the gpg compressor (config GPG_RECIPIENT, default z3_backup)
    #[arg(long, value_name = "KEY")]
    pub gpg_recipient: Option<String>,

    /// With --full: replace the bucket's backup of another snapshot of the same name (destroyed
    /// and re-created, or written by the original z3 with no guid to tell); that backup is lost.
    /// Never done when other backups build on it. Renaming the local snapshot is the safe way
    #[arg(long, requires = "full")]
    pub overwrite_other_snapshot: bool,

    /// Remove the backup lock first, whoever holds it (only when that run is known to be gone)
    #[arg(long)]
    pub break_lock: bool,

    /// Print results as "<dataset@snapshot>\0<estimated bytes>\n" lines
    #[arg(long)]
    pub parseable: bool,

    /// After the run, success or not, write z3_<dataset>.prom (Prometheus textfile-collector
    /// format: last success and attempt, exit code, bytes, duration, objects, chain depth,
    /// newest backup's age) into this directory
    #[arg(long, value_name = "DIR")]
    pub metrics_dir: Option<std::path::PathBuf>,

    /// Print JSON lines on stdout instead of text: one per event, then a "finished" line with
    /// the exit code and the report or the error (schema 1, see docs/json.md).
    #[arg(long, conflicts_with = "parseable")]
    pub json: bool,
}

/// `z3 restore`.
#[derive(Debug, Default, Args)]
pub struct RestoreArgs {
    /// Snapshot to restore, the part after '@'
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: String,

    /// Roll the dataset back as needed (zfs receive -F on every step)
    #[arg(long)]
    pub force: bool,

    /// Print what would be received, without downloading or receiving anything
    #[arg(long)]
    pub dry_run: bool,

    /// age identity file (AGE-SECRET-KEY-1... lines, as age-keygen writes them) for encrypted
    /// backups (config AGE_IDENTITY_FILE)
    #[arg(long = "age-identity", value_name = "PATH")]
    pub age_identity_file: Option<String>,

    /// Restore objects written by z3 whose seal (stream digest) is missing or does not match
    /// them, without the end-to-end check; by default they are refused
    #[arg(long)]
    pub allow_unsealed: bool,

    /// Receive into this dataset instead (same snapshot names); its own snapshots decide where
    /// the chain starts
    #[arg(long, value_name = "DATASET", conflicts_with = "to_dir")]
    pub target_dataset: Option<String>,

    /// Write each object's decoded, verified stream to a file in DIR (001-SNAP.zfs, … in receive
    /// order) instead of receiving it; a stream that fails its check is removed (exit 3)
    #[arg(long, value_name = "DIR")]
    pub to_dir: Option<std::path::PathBuf>,

    /// Print JSON lines on stdout instead of text: one per event, then a "finished" line with
    /// the exit code and the report or the error (schema 1, see docs/json.md).
    #[arg(long)]
    pub json: bool,
}

/// `z3 verify`.
#[derive(Debug, Default, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["snapshot", "all"]))]
pub struct VerifyArgs {
    /// Snapshot whose chain (from its full backup on) to verify, the part after '@'
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: Option<String>,

    /// Verify every backup of the dataset under the prefix
    #[arg(long)]
    pub all: bool,

    /// Download only PERCENT of the selected objects, at random (at least one); every chain
    /// is still checked
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
    pub sample: Option<f64>,

    /// age identity file for encrypted backups; without one, only their stored bytes are
    /// checked (config AGE_IDENTITY_FILE)
    #[arg(long = "age-identity", value_name = "PATH")]
    pub age_identity_file: Option<String>,

    /// Print JSON lines on stdout instead of text: one per event, then a "finished" line with
    /// the exit code and the report or the error (schema 1, see docs/json.md).
    #[arg(long)]
    pub json: bool,
}

/// `z3 prune`.
#[derive(Debug, Default, Args)]
pub struct PruneArgs {
    /// Prune every dataset that has an [fs:<dataset>] section in the config file, one after the
    /// other (as backup --all)
    #[arg(long)]
    pub all: bool,

    /// With --all: also every dataset below each configured one
    #[arg(long, requires = "all")]
    pub recursive: bool,

    /// Print what would be deleted and kept; delete nothing (takes no lock)
    #[arg(long)]
    pub dry_run: bool,

    /// Also delete backups younger than their storage class's minimum storage duration (S3
    /// charges the rest of it; the summary says how much, in GiB-days)
    #[arg(long)]
    pub allow_early_delete: bool,

    /// Remove another run's lock first (only when that run is known to be dead)
    #[arg(long)]
    pub break_lock: bool,

    /// Print JSON lines on stdout instead of text: one per event, then a "finished" line with
    /// the exit code and the report or the error (schema 1, see docs/json.md).
    #[arg(long)]
    pub json: bool,
}

fn parse_percent(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('%').parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(format!(
            "'{text}' is not a percentage above 0 and at most 100"
        )),
    }
}

impl Cli {
    /// The flags that override configuration.
    #[must_use]
    pub fn overrides(&self) -> FlagOverrides {
        let (compressor, gpg_recipient) = match &self.command {
            Command::Backup(b) => (
                b.compressor.as_ref().map(|c| c.to_ascii_lowercase()),
                b.gpg_recipient.clone(),
            ),
            _ => (None, None),
        };
        let (age_recipients, age_recipients_file) = match &self.command {
            Command::Backup(b) => (
                (!b.age_recipients.is_empty()).then(|| b.age_recipients.join(" ")),
                b.age_recipients_file.clone(),
            ),
            _ => (None, None),
        };
        let age_identity_file = match &self.command {
            Command::Restore(r) => r.age_identity_file.clone(),
            Command::Verify(v) => v.age_identity_file.clone(),
            _ => None,
        };
        FlagOverrides {
            s3_prefix: self.s3_prefix.clone(),
            filesystem: self.dataset.clone(),
            snapshot_prefix: self.snapshot_prefix.clone(),
            compressor,
            gpg_recipient,
            s3_endpoint: self.endpoint.clone(),
            age_recipients,
            age_recipients_file,
            age_identity_file,
            age_passphrase_file: self.age_passphrase_file.clone(),
            bwlimit: self.bwlimit.clone(),
        }
    }
}

/// A name [`z3_codec::Compressor::check_name`] accepts: a built-in one or one that could
/// name a `[compressor:NAME]` section.
fn compressor_name(name: &str) -> Result<String, String> {
    z3_codec::Compressor::check_name(name).map_err(|err| err.to_string())?;
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_before_and_after_the_subcommand() {
        let cli =
            Cli::try_parse_from(["z3", "--filesystem", "pool/fs", "backup", "--full"]).unwrap();
        assert_eq!(cli.dataset.as_deref(), Some("pool/fs"));
        let cli = Cli::try_parse_from(["z3", "status", "--dataset", "tank/x"]).unwrap();
        assert_eq!(cli.dataset.as_deref(), Some("tank/x"));
    }

    #[test]
    fn json_and_parseable_conflict() {
        assert!(Cli::try_parse_from(["z3", "backup", "--json", "--parseable"]).is_err());
        assert!(Cli::try_parse_from(["z3", "backup", "--json"]).is_ok());
    }

    #[test]
    fn full_and_incremental_conflict() {
        assert!(Cli::try_parse_from(["z3", "backup", "--full", "--incremental"]).is_err());
    }

    #[test]
    fn compressor_choices_are_checked_case_insensitively() {
        let cli = Cli::try_parse_from(["z3", "backup", "--compressor", "PIGZ4"]).unwrap();
        assert_eq!(cli.overrides().compressor.as_deref(), Some("pigz4"));
        assert!(Cli::try_parse_from(["z3", "backup", "--compressor", "zip me"]).is_err());
        assert!(Cli::try_parse_from(["z3", "backup", "--compressor", ""]).is_err());
        // Could be a [compressor:zip] section: the backup checks it against the config file.
        let cli = Cli::try_parse_from(["z3", "backup", "--compressor", "Zip"]).unwrap();
        assert_eq!(cli.overrides().compressor.as_deref(), Some("zip"));
    }

    #[test]
    fn restore_needs_a_snapshot() {
        assert!(Cli::try_parse_from(["z3", "restore"]).is_err());
        let cli = Cli::try_parse_from(["z3", "restore", "snap_3", "--force"]).unwrap();
        let Command::Restore(args) = cli.command else {
            panic!("not restore")
        };
        assert!(args.force);
        assert_eq!(args.snapshot, "snap_3");
    }
}

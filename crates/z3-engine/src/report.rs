//! What commands report: typed results, serde-serializable, and the events a command sends
//! while it runs (one per snapshot as it is backed up, restored or verified, and notes for
//! people).
//!
//! The z3 binaries render these as the original z3's lines; an embedder logs, stores or shows
//! them as it likes. Nothing here is printed by the engine.

use std::time::{Duration, SystemTime};

use serde::Serialize;
use z3_core::StatusRow;
use z3_core::humanize::humanize;

/// A backup object's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A full stream.
    Full,
    /// An incremental stream on top of its parent.
    Incremental,
}

impl Kind {
    /// `full` or `incremental`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Incremental => "incremental",
        }
    }
}

/// `status`: the local snapshots and the backups of one dataset side by side.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// The dataset.
    pub dataset: String,
    /// The snapshot name prefix considered.
    pub snapshot_prefix: String,
    /// The bucket.
    pub bucket: String,
    /// The normalised key prefix.
    pub s3_prefix: String,
    /// The key prefix as configured (the original's header shows it).
    pub s3_prefix_raw: String,
    /// Every chain is intact and every object written by z3 has its seal.
    pub healthy: bool,
    /// One row per snapshot, local or backed up, oldest first.
    pub rows: Vec<StatusRow>,
    /// With `OBJECT_LOCK`: backups (`dataset@snapshot`) hidden behind a delete marker, which
    /// z3 still lists and restores (someone deleted them; the bucket kept the data).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hidden: Vec<String>,
    /// The most recently uploaded backup, if any.
    pub newest: Option<NewestBackup>,
}

/// The most recently uploaded backup of a dataset.
#[derive(Debug, Clone, Serialize)]
pub struct NewestBackup {
    /// `dataset@snapshot`.
    pub name: String,
    /// When it was uploaded (`Last-Modified`, Unix seconds).
    pub uploaded: i64,
    /// How many objects a restore of it receives; `None` when its chain is broken.
    pub depth: Option<usize>,
}

impl StatusReport {
    /// The report as the original's text: its header line and its table.
    #[must_use]
    pub fn to_text(&self) -> String {
        let header = z3_core::status::header_line(
            &self.dataset,
            &self.snapshot_prefix,
            &self.bucket,
            &self.s3_prefix_raw,
        );
        format!("{header}\n{}", z3_core::status::render_table(&self.rows))
    }

    /// `status --check`: the monitoring-plugin verdict at `now` (Unix seconds); a backup
    /// uploaded "in the future" counts as just now.
    #[must_use]
    pub fn check(&self, now: u64, thresholds: z3_core::check::Thresholds) -> z3_core::check::Check {
        use z3_core::status::RowKind;
        let objects = self.rows.iter().filter(|r| r.kind != RowKind::Missing);
        let broken = objects
            .clone()
            .filter(|r| r.health.as_deref().is_some_and(|h| h != "ok"))
            .count();
        let age = |uploaded: i64| {
            let uploaded = u64::try_from(uploaded).unwrap_or(0);
            std::time::Duration::from_secs(now.saturating_sub(uploaded))
        };
        z3_core::check::check(
            &z3_core::check::CheckInput {
                dataset: &self.dataset,
                newest: self
                    .newest
                    .as_ref()
                    .map(|n| (n.name.as_str(), age(n.uploaded))),
                objects: objects.count(),
                broken,
                depth: self.newest.as_ref().and_then(|n| n.depth),
            },
            thresholds,
        )
    }

    /// Lines for people about what the table does not show.
    #[must_use]
    pub fn notes(&self) -> Vec<String> {
        self.hidden
            .iter()
            .map(|name| {
                format!(
                    "{name} is hidden behind a delete marker (someone deleted it; Object Lock kept \
                     it): z3 still restores it; delete the marker's version to unhide it"
                )
            })
            .collect()
    }
}

/// One snapshot backed up (or, in a dry run, planned).
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotBackup {
    /// `dataset@snapshot`.
    pub snapshot: String,
    /// The object's key.
    pub key: String,
    /// `s3://bucket/key`.
    pub url: String,
    /// Full or incremental.
    pub kind: Kind,
    /// The parent snapshot (`dataset@snapshot`) of an incremental.
    pub parent: Option<String>,
    /// The compressor recorded in the object's metadata, if any.
    pub compressor: Option<String>,
    /// The encryption recorded in the object's metadata, if any.
    pub encryption: Option<String>,
    /// `zfs send`'s estimate of the stream's length.
    pub estimated_bytes: u64,
    /// The stream's length as read from `zfs send` (0 in a dry run).
    pub bytes_read: u64,
    /// The object's length as stored (0 in a dry run).
    pub bytes_stored: u64,
    /// The BLAKE3 digest of the stream (64 hex digits), as its seal records it; `None` in a
    /// dry run.
    pub stream_digest: Option<String>,
    /// How long the backup of this snapshot took.
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    /// What would run: `zfs send …` and the encoding stages (dry runs; empty otherwise).
    pub pipeline: String,
    /// Planned only (a dry run): nothing was uploaded.
    pub dry_run: bool,
    /// Why it is sent full or on its parent: the policy's tree, the rebase rule, or the chain.
    pub basis: String,
    /// The storage class the object is written in.
    pub storage_class: String,
    /// The optional `zfs send` flags as letters (`cLe`, `w`); empty for a plain send.
    pub send_flags: String,
    /// When an interrupted run's upload was resumed: how many of its parts were not sent
    /// again ([`crate::journal`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_parts: Option<u16>,
}

impl SnapshotBackup {
    /// A dry run's line: `would back up pool/fs@s (full, estimated 1.2M): zfs send … -> s3://…
    /// (STANDARD)`.
    #[must_use]
    pub fn plan_line(&self) -> String {
        format!(
            "would back up {} ({}, estimated {}): {} -> {} ({})",
            self.snapshot,
            self.kind.as_str(),
            humanize(self.estimated_bytes),
            self.pipeline,
            self.url,
            self.storage_class
        )
    }
}

/// `backup`: every snapshot backed up, oldest first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackupReport {
    /// The snapshots, in the order they were uploaded (or would be, in a dry run).
    pub snapshots: Vec<SnapshotBackup>,
    /// A dry run: nothing was uploaded.
    pub dry_run: bool,
}

/// One snapshot restored (or, in a dry run, planned).
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotRestore {
    /// `dataset@snapshot`.
    pub snapshot: String,
    /// `s3://bucket/key` it came from.
    pub url: String,
    /// Full or incremental.
    pub kind: Kind,
    /// The object's length.
    pub object_bytes: u64,
    /// The stream's length as received (0 in a dry run).
    pub stream_bytes: u64,
    /// The stream's digest was checked against the seal (objects of the original z3 and
    /// `--allow-unsealed` ones are not).
    pub checked: bool,
    /// The decoding stages, e.g. `zstd -d` (empty for none).
    pub decoding: String,
    /// `zfs receive -F`.
    pub force: bool,
    /// How long it took.
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    /// Planned only (a dry run): nothing was received.
    pub dry_run: bool,
    /// With `to_dir`: the file the stream was (or would be) written to instead of received.
    pub file: Option<std::path::PathBuf>,
}

impl SnapshotRestore {
    /// A dry run's line: `would restore pool/fs@s (full, 1.2M): s3://… | zstd -d | zfs receive
    /// pool/fs@s`, or `> FILE` with a target directory.
    #[must_use]
    pub fn plan_line(&self) -> String {
        let stage = if self.decoding.is_empty() {
            String::new()
        } else {
            format!(" | {}", self.decoding)
        };
        let into = match &self.file {
            Some(file) => format!(" > {}", file.display()),
            None => format!(
                " | zfs receive{} {}",
                if self.force { " -F" } else { "" },
                self.snapshot
            ),
        };
        format!(
            "would restore {} ({}, {}): {}{stage}{into}",
            self.snapshot,
            self.kind.as_str(),
            humanize(self.object_bytes),
            self.url,
        )
    }
}

/// `restore`: every snapshot received, oldest first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    /// The snapshots.
    pub snapshots: Vec<SnapshotRestore>,
    /// A dry run: nothing was received.
    pub dry_run: bool,
}

/// The verdict on one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Chain, seal and bytes check out.
    Ok,
    /// The chain checks out; the bytes were not downloaded (not in the sample).
    Chain,
    /// Something is wrong.
    Failed,
}

/// One object verified.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectVerification {
    /// `dataset@snapshot`.
    pub name: String,
    /// Full or incremental.
    pub kind: Kind,
    /// The verdict.
    pub verdict: Verdict,
    /// What was checked, or every problem found.
    pub detail: String,
}

impl ObjectVerification {
    /// Its line: verdict (`ok`, `chain`, `FAILED`), name, kind and detail.
    #[must_use]
    pub fn line(&self) -> String {
        let word = match self.verdict {
            Verdict::Ok => "ok",
            Verdict::Chain => "chain",
            Verdict::Failed => "FAILED",
        };
        format!(
            "{word:<8} {}  {}  {}",
            self.name,
            self.kind.as_str(),
            self.detail
        )
    }
}

/// `verify`: every object checked.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// The dataset.
    pub dataset: String,
    /// The objects, oldest first.
    pub objects: Vec<ObjectVerification>,
    /// The sample percentage, if only a sample was downloaded.
    pub sample: Option<f64>,
}

impl VerifyReport {
    /// How many objects got `verdict`.
    #[must_use]
    pub fn count(&self, verdict: Verdict) -> usize {
        self.objects.iter().filter(|o| o.verdict == verdict).count()
    }

    /// Every object checked out (or was not in the sample).
    #[must_use]
    pub fn passed(&self) -> bool {
        self.count(Verdict::Failed) == 0
    }

    /// The closing line (`verified 3 objects of pool/fs: 3 ok, 0 failed, 0 not downloaded`),
    /// or `None` when there was nothing to verify.
    #[must_use]
    pub fn summary(&self) -> Option<String> {
        if self.objects.is_empty() {
            return None;
        }
        let sample = self
            .sample
            .map(|p| format!(" (sample {p}%)"))
            .unwrap_or_default();
        Some(format!(
            "verified {} objects of {}: {} ok, {} failed, {} not downloaded{sample}",
            self.objects.len(),
            self.dataset,
            self.count(Verdict::Ok),
            self.count(Verdict::Failed),
            self.count(Verdict::Chain),
        ))
    }
}

/// One snapshot sent (or, in a dry run, planned).
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotSent {
    /// `source@snap (full)` or `source@snap (incremental from base)`.
    pub what: String,
    /// `destination@snap`.
    pub destination: String,
    /// Full or incremental.
    pub kind: Kind,
    /// Bytes of the stream (0 in a dry run).
    pub bytes: u64,
    /// How long it took.
    #[serde(skip)]
    pub duration: Duration,
    /// Planned only.
    pub dry_run: bool,
}

/// What a sync did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncReport {
    /// The snapshots sent, oldest first.
    pub sent: Vec<SnapshotSent>,
    /// The destination was up to date: nothing to send.
    pub up_to_date: bool,
    /// A dry run.
    pub dry_run: bool,
}

/// What happens to one open upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum UploadAction {
    /// Younger than the age limit (or of unknown age): kept.
    Young,
    /// Old enough: aborted (or, in a dry run, to abort).
    Abort,
    /// Old enough, but a live backup lock covers its key: kept.
    KeptLocked {
        /// Which lock, and why it counts as live.
        why: String,
    },
    /// Old enough, but an interrupted backup journaled it so that the next run can resume it,
    /// and it is younger than the resume window ([`crate::journal::RESUME_WINDOW`]): kept.
    KeptJournaled {
        /// Which journal, and until when it is kept.
        why: String,
    },
}

/// One open upload, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct UploadSeen {
    /// Its key.
    pub key: String,
    /// Its upload id.
    pub upload_id: String,
    /// When it was started, if the server says (JSON: Unix seconds, or null).
    #[serde(serialize_with = "unix_seconds")]
    pub initiated: Option<SystemTime>,
    /// What happens to it.
    pub action: UploadAction,
}

/// What a command tells while it runs.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A line for people: what was skipped or taken over, and why (z3 prints these to
    /// stderr).
    Note {
        /// The text, one line.
        text: String,
    },
    /// A snapshot was backed up (or, in a dry run, would be).
    BackedUp(SnapshotBackup),
    /// A snapshot was restored (or, in a dry run, would be).
    Restored(SnapshotRestore),
    /// An object was verified.
    Verified(ObjectVerification),
    /// A snapshot was sent to the other side of a sync (or, in a dry run, would be).
    Sent(SnapshotSent),
    /// An open multipart upload, as the cleanup found it.
    Upload(UploadSeen),
    /// Prune deleted a key (or, in a dry run, would).
    Pruned(Pruned),
    /// Prune keeps a backup object, and why.
    Kept {
        /// `dataset@snapshot`.
        name: String,
        /// Why, in words (`preserved: daily 2026-12-03`, `base of …`, `locked until …`).
        reason: String,
    },
    /// The cleanup could not abort an upload.
    AbortFailed {
        /// Its key.
        key: String,
        /// Its upload id.
        upload_id: String,
        /// Why.
        error: String,
    },
}

/// One key prune deleted (or, in a dry run, would delete).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// The snapshot (`dataset@snapshot`) the key belongs to; the key itself for versions.
    pub name: String,
    /// `object`, `seal` or `version`.
    pub what: String,
    /// The S3 key.
    pub key: String,
    /// Why it goes.
    pub reason: String,
    /// Bytes freed (objects; 0 for seals).
    pub bytes: u64,
    /// Planned only.
    pub dry_run: bool,
}

impl Pruned {
    /// Its line: `deleted seal pool/fs@s: expired` (`would delete …` in a dry run).
    #[must_use]
    pub fn line(&self) -> String {
        format!(
            "{} {} {}: {}",
            if self.dry_run {
                "would delete"
            } else {
                "deleted"
            },
            self.what,
            self.name,
            self.reason
        )
    }
}

/// What `prune` did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PruneReport {
    /// A dry run: nothing was deleted.
    pub dry_run: bool,
    /// Every key deleted, in order.
    pub deleted: Vec<Pruned>,
    /// Every backup object kept, with why.
    pub kept: Vec<(String, String)>,
    /// Bytes of the objects deleted.
    pub bytes_freed: u64,
    /// The early-deletion charge of what was deleted before its storage class's minimum
    /// duration, in GiB-days (0 without `allow_early_delete`).
    pub early_delete_gib_days: f64,
    /// `OBJECT_LOCK`: the keys whose retention was extended (or, in a dry run, would be),
    /// each with the new retain-until date (Unix seconds).
    pub locks_extended: Vec<(String, i64)>,
}

impl PruneReport {
    /// The closing line: `pruned 2 backups (1.5G), kept 9`, with the early-deletion charge
    /// when there is one.
    #[must_use]
    pub fn summary(&self) -> String {
        let objects = self.deleted.iter().filter(|p| p.what == "object").count();
        let cost = if self.early_delete_gib_days > 0.0 {
            format!(
                "; deleted before their minimum storage duration: {:.1} GiB-days charged",
                self.early_delete_gib_days
            )
        } else {
            String::new()
        };
        format!(
            "{} {objects} backups ({}), kept {}{cost}",
            if self.dry_run {
                "would prune"
            } else {
                "pruned"
            },
            humanize(self.bytes_freed),
            self.kept.len()
        )
    }
}

/// Receives a command's [`Event`]s as they happen.
pub trait Events: Send {
    /// Takes one event.
    ///
    /// # Errors
    /// The caller cannot take it (e.g. its output was closed): the command stops with this
    /// error, after cleaning up, since it could not report what it did.
    fn event(&mut self, event: Event) -> std::io::Result<()>;
}

/// Ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl Events for NoEvents {
    fn event(&mut self, _event: Event) -> std::io::Result<()> {
        Ok(())
    }
}

/// Keeps every event, in order.
#[derive(Debug, Clone, Default)]
pub struct RecordedEvents(pub Vec<Event>);

impl Events for RecordedEvents {
    fn event(&mut self, event: Event) -> std::io::Result<()> {
        self.0.push(event);
        Ok(())
    }
}

/// Turns what is written into it, line by line, into [`Event::Note`]s (for code that reports
/// through a `Write`).
pub(crate) struct NoteWriter<'a> {
    events: &'a mut dyn Events,
    pending: Vec<u8>,
}

impl<'a> NoteWriter<'a> {
    pub(crate) fn new(events: &'a mut dyn Events) -> Self {
        Self {
            events,
            pending: Vec::new(),
        }
    }
}

impl std::io::Write for NoteWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..end]).into_owned();
            self.events.event(Event::Note { text })?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's signature
fn seconds<S: serde::Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(duration.as_secs_f64())
}

#[allow(clippy::ref_option)] // serde's signature
fn unix_seconds<S: serde::Serializer>(at: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match at.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()) {
        Some(since) => s.serialize_some(&since.as_secs()),
        None => s.serialize_none(),
    }
}

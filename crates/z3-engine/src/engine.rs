//! The pipelines behind `status`, `backup`, `restore` and `verify`, over the IO traits.
//!
//! Backup: plan (core) → `zfs send` (zfs) → compressor (codec) → multipart upload (s3).
//! Restore: plan (core) → parallel ranged download (s3) → decompressor (codec) → `zfs receive` (zfs).
//!
//! Safety rests on one rule that every stage follows: a stream reports end-of-file only after its
//! producer finished successfully. `zfs send` exiting non-zero, a compressor crashing, or a download
//! failing all surface as read errors, so the uploader aborts the multipart upload instead of
//! completing a truncated object, and a restore drops (kills) `zfs receive` instead of closing its input.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use z3_codec::{
    BoxedReader, Decoding, DigestReader, Encoding, Stage, apply_all, describe_all, is_encrypted,
};
use z3_core::plan::{
    BackupRequest, RestoreRequest, RestoreStep, newer_than_base, plan_backup, plan_restore,
};
use z3_core::status::status_rows;
use z3_core::{
    DatasetName, Digest, FullSnapshotName, LocalChain, LocalSnapshot, ObjectMeta, RemoteIndex,
    SealCheck, SnapshotName, UntrustedObject, WriteMode,
};
use z3_s3::{
    BeforeComplete, DownloadConfig, Downloader, MultipartUploader, ObjectStore, PartsDone,
    Precondition, PutOptions, UploadConfig, part_size,
};
use z3_zfs::{ReceiveOptions, SendFlags, Zfs};

use crate::UsageError;
use crate::cancel::Interrupt;
use crate::clock::{Clock, SystemClock};
use crate::config::{
    BackupOptions, EngineConfig, PruneOptions, RestoreOptions, SendFlagChoice, StatusOptions,
    VerifyOptions,
};
use crate::error::Error;
use crate::meta_cache::{CacheScope, MetaCache};
use crate::progress::{NoProgress, Progress, ProgressReader};
use crate::receive::Receive;
use crate::report::{
    BackupReport, Event, Events, Kind, NoteWriter, PruneReport, RestoreReport, SnapshotBackup,
    SnapshotRestore, StatusReport, VerifyReport,
};
use crate::seal::PendingSeal;

mod holds;
mod immutable;
mod prune;
mod verify;

/// The ACL the original sets on every object (docs/compatibility.md, "Object metadata").
const OBJECT_ACL: &str = "bucket-owner-full-control";
/// Ranged GET size for restores: small enough that (concurrency × part) stays at 64 MiB.
const DOWNLOAD_PART_SIZE: u64 = 8 << 20;
/// Ranged GETs in flight during a restore.
const DOWNLOAD_CONCURRENCY: usize = 8;

/// One snapshot's send as `backup_one` planned it.
struct PlannedSend<'a> {
    snapshot: &'a FullSnapshotName,
    parent: Option<&'a FullSnapshotName>,
    flags: SendFlags,
    meta: &'a ObjectMeta,
    stages: &'a [Stage],
    estimate: u64,
    retention: Option<z3_s3::Retention>,
}

/// What must be the same for an interrupted upload of `key` to be resumed, if it can be: a
/// snapshot with a guid and a deterministic encoding ([`crate::journal::resumable_encoding`]).
fn resume_identity(
    key: &str,
    meta: &ObjectMeta,
    encoding: &Encoding,
    config: &UploadConfig,
) -> Option<crate::journal::Identity> {
    Some(crate::journal::Identity {
        key: key.to_owned(),
        guid: meta.guid?,
        parent_guid: meta.parent_guid,
        send_flags: meta.send_flags.clone().unwrap_or_default(),
        encoding: crate::journal::resumable_encoding(encoding)?,
        part_size: config.part_size,
        estimate: config.estimate?,
        memory_limit: config.memory_limit?,
    })
}

/// Whether `err` is a resumed upload whose regenerated stream differed from its journal.
fn is_resume_mismatch(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<z3_s3::Error>())
        .any(|e| e.kind() == z3_s3::ErrorKind::ResumeMismatch)
}

/// The completion was refused because the key no longer held what the plan saw (another
/// writer, such as the original z3, took or replaced it meanwhile). Exit code 3: z3 refuses to
/// overwrite what it has not inspected.
#[derive(Debug, thiserror::Error)]
#[error(
    "{key} changed since z3 listed it (another writer?); nothing was overwritten: run the backup again to plan from what is there now"
)]
pub struct KeyChanged {
    /// The object's URL.
    pub key: String,
}

/// One dataset's backups: the two IO edges (`zfs` and the bucket) plus the configuration.
#[derive(Debug, Clone)]
pub struct Engine {
    zfs: Arc<dyn Zfs>,
    store: Arc<dyn ObjectStore>,
    settings: EngineConfig,
    progress: Arc<dyn Progress>,
    interrupt: Interrupt,
    lock_ttl: std::time::Duration,
    clock: Arc<dyn Clock>,
    /// With `OBJECT_LOCK`, the view `store` reads through, which shows backups hidden behind a
    /// delete marker.
    unhidden: Option<Arc<z3_s3::Unhidden>>,
    /// The bucket as it is, without the view: the lock is read and written here, because a
    /// released lock record behind its delete marker is gone, not held.
    raw: Arc<dyn ObjectStore>,
    /// Where `status` keeps what it read between runs (none: every object is read each time).
    meta_cache: Option<Arc<dyn MetaCache>>,
}

impl Engine {
    /// Wires an engine; production passes `ZfsCli` and `AwsStore`, tests `FakeZfs` and `MemoryStore`.
    #[must_use]
    /// With `OBJECT_LOCK` configured, the bucket is read through [`z3_s3::Unhidden`]: a backup
    /// hidden behind a delete marker is still listed, shown and restored.
    pub fn new(zfs: Arc<dyn Zfs>, store: Arc<dyn ObjectStore>, config: EngineConfig) -> Self {
        let locked = crate::Retention::locks(config.retention.as_ref());
        // Kept typed as well, for the hidden keys status reports (`fleet::read_view` erases it).
        let raw = Arc::clone(&store);
        let (store, unhidden): (Arc<dyn ObjectStore>, _) = if locked {
            let view = Arc::new(z3_s3::Unhidden::new(store));
            (view.clone(), Some(view))
        } else {
            (store, None)
        };
        Self {
            unhidden,
            raw,
            zfs,
            store,
            settings: config,
            progress: Arc::new(NoProgress),
            interrupt: Interrupt::new(),
            lock_ttl: crate::lock::DEFAULT_LOCK_TTL,
            clock: Arc::new(SystemClock),
            meta_cache: None,
        }
    }

    /// Lets [`Engine::status`] keep what it read in `cache` and read only the objects that are
    /// new or changed since ([`crate::meta_cache`]). No other command uses it: backup, restore,
    /// verify and prune read every object's metadata from the bucket.
    #[must_use]
    pub fn with_meta_cache(mut self, cache: Arc<dyn MetaCache>) -> Self {
        self.meta_cache = Some(cache);
        self
    }

    /// The clock the lock's decisions use (default: the system's).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Where byte counts of each stream go (default: nowhere, [`NoProgress`]).
    #[must_use]
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Stops backups and restores cleanly when `interrupt` fires (the binaries pass the one their
    /// SIGINT/SIGTERM handlers trigger): the upload is aborted, `zfs send` and an unfinished
    /// `zfs receive` are killed, and the command fails with a message saying so.
    #[must_use]
    pub fn with_interrupt(mut self, interrupt: Interrupt) -> Self {
        self.interrupt = interrupt;
        self
    }

    /// How long the backup lock holds without renewal (default 15 minutes; tests use less).
    #[must_use]
    pub fn with_lock_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// Sorts an internal error into the public [`Error`].
    fn public<T>(&self, result: Result<T>) -> std::result::Result<T, Error> {
        result.map_err(|err| Error::classify(err, self.interrupt.signal()))
    }

    /// `z3 status`: local snapshots and backups side by side.
    ///
    /// # Errors
    /// Listing failures (zfs or S3), as [`Error::Failed`].
    pub async fn status(
        &self,
        _options: &StatusOptions,
    ) -> std::result::Result<StatusReport, Error> {
        self.public(self.status_inner(self.meta_cache.as_deref()).await)
    }

    /// `z3 backup`: uploads what the plan says, oldest first, one object per snapshot, each
    /// reported as an [`Event::BackedUp`] when it is done.
    ///
    /// # Errors
    /// [`Error::Integrity`] when the plan refuses (a broken chain, a snapshot that would
    /// overwrite another's backup) or the key changed under the upload; [`Error::Locked`];
    /// [`Error::Cancelled`]; [`Error::Failed`] for zfs, compressor and upload failures. A failed
    /// upload is aborted: no object appears for that snapshot.
    pub async fn backup(
        &self,
        options: &BackupOptions,
        events: &mut dyn Events,
    ) -> std::result::Result<BackupReport, Error> {
        let started = std::time::Instant::now();
        let attempt = self.clock.unix_secs();
        let result = self.public(self.backup_inner(options, events).await);
        if let (Some(dir), false) = (&options.metrics_dir, options.dry_run) {
            let metrics = self.backup_metrics(attempt, started, &result).await;
            if let Err(err) = crate::metrics::write(dir, &metrics) {
                let text = format!("cannot write metrics into {}: {err}", dir.display());
                let _ = events.event(Event::Note { text });
            }
        }
        result
    }

    /// The metrics of a backup run that started at `attempt`, with the bucket as it is after it
    /// (left out when it cannot be read).
    async fn backup_metrics(
        &self,
        attempt: u64,
        started: Instant,
        result: &std::result::Result<BackupReport, Error>,
    ) -> crate::metrics::BackupMetrics {
        let now = self.clock.unix_secs();
        let (bytes_read, bytes_stored) = result.as_ref().map_or((0, 0), |report| {
            let sum = |f: fn(&SnapshotBackup) -> u64| report.snapshots.iter().map(f).sum();
            (sum(|s| s.bytes_read), sum(|s| s.bytes_stored))
        });
        let status = self.status_inner(None).await.ok();
        let newest = status.as_ref().and_then(|s| s.newest.as_ref());
        crate::metrics::BackupMetrics {
            dataset: self.settings.dataset.to_string(),
            attempt,
            last_success: result.is_ok().then_some(now),
            exit_code: result.as_ref().err().map_or(0, Error::exit_code),
            bytes_read,
            bytes_stored,
            duration_secs: started.elapsed().as_secs_f64(),
            objects: status.as_ref().map(|s| {
                s.rows
                    .iter()
                    .filter(|r| r.kind != z3_core::status::RowKind::Missing)
                    .count()
            }),
            chain_depth: newest.and_then(|n| n.depth),
            newest_age_secs: newest
                .map(|n| now.saturating_sub(u64::try_from(n.uploaded).unwrap_or(0))),
        }
    }

    /// `z3 restore SNAPSHOT`: receives the chain from the newest local base (or a full) to the
    /// target, each snapshot reported as an [`Event::Restored`].
    ///
    /// # Errors
    /// [`Error::Integrity`] for a broken or replaced chain, an unsealed object (unless allowed)
    /// or a digest mismatch, all before `zfs receive` commits; [`Error::InvalidInput`] for an
    /// encrypted backup without identities; [`Error::Cancelled`]; [`Error::Failed`] for
    /// download, decoder and `zfs receive` failures, each naming the snapshot and object.
    pub async fn restore(
        &self,
        options: &RestoreOptions,
        events: &mut dyn Events,
    ) -> std::result::Result<RestoreReport, Error> {
        self.public(self.restore_inner(options, events).await)
    }

    /// `z3 verify`: reads backups back against their seals and chains, without ZFS; one
    /// [`Event::Verified`] per object. Objects that fail are reported, not errors.
    ///
    /// # Errors
    /// Listing failures, an unknown snapshot, unreadable key files.
    pub async fn verify(
        &self,
        options: &VerifyOptions,
        events: &mut dyn Events,
    ) -> std::result::Result<VerifyReport, Error> {
        self.public(self.verify_inner(options, events).await)
    }

    /// `z3 prune`: deletes the backups the retention policy no longer preserves, leaves first,
    /// never one a kept backup needs ([`z3_core::prune`]); one [`Event::Kept`] per object kept,
    /// then one [`Event::Pruned`] per key deleted. Holds the dataset's lock (not in a dry run).
    ///
    /// # Errors
    /// No policy configured ([`Error::InvalidInput`]), the lock held ([`Error::Locked`]),
    /// listing or delete failures ([`Error::Failed`]; the batches before the failed one are
    /// done, and every object left is as restorable as before).
    pub async fn prune(
        &self,
        options: &PruneOptions,
        events: &mut dyn Events,
    ) -> std::result::Result<PruneReport, Error> {
        self.public(self.prune_inner(options, events).await)
    }

    /// Fails if a stop was asked for, before the next step starts.
    fn check_interrupt(&self, next: &str) -> Result<()> {
        match self.interrupt.signal() {
            Some(signal) => bail!(
                "stopped before {next} ({} received)",
                crate::cancel::signal_name(signal)
            ),
            None => Ok(()),
        }
    }

    /// The configuration in use.
    #[must_use]
    pub fn config(&self) -> &EngineConfig {
        &self.settings
    }

    #[allow(clippy::unnecessary_wraps)] // one shape for every command's first step
    fn dataset(&self) -> Result<&DatasetName> {
        Ok(&self.settings.dataset)
    }

    /// Local snapshots of the dataset matching the prefix; a missing dataset has none.
    async fn local_chain(&self, dataset: &DatasetName, missing_ok: bool) -> Result<LocalChain> {
        let snapshots = match self.zfs.list_snapshots(dataset).await {
            Ok(list) => list,
            Err(err) if missing_ok && err.is_not_found() => Vec::new(),
            Err(err) if err.is_not_found() => bail!(
                "dataset {dataset} does not exist: check FILESYSTEM (or --dataset) against `zfs list`"
            ),
            Err(err) => {
                return Err(anyhow!(err)).context(format!("cannot list snapshots of {dataset}"));
            }
        };
        Ok(LocalChain::new(&snapshots, &self.settings.snapshot_prefix))
    }

    /// Every backup object of the dataset under the prefix, with its metadata (one HEAD each).
    async fn remote_index(&self, dataset: &DatasetName) -> Result<RemoteIndex> {
        Ok(self.remote_index_with_infos(dataset, None).await?.0)
    }

    /// [`Engine::remote_index`], and the newest object by upload time (`Last-Modified`) with
    /// that time; through `cache` for `status`.
    async fn remote_index_with_infos(
        &self,
        dataset: &DatasetName,
        cache: Option<&dyn MetaCache>,
    ) -> Result<(RemoteIndex, Option<(String, i64)>)> {
        let objects = self.remote_objects(dataset, cache).await?;
        let newest = objects
            .iter()
            .filter_map(|(object, info)| Some((info.last_modified?, &object.name)))
            .max()
            .map(|(at, name)| (name.clone(), at));
        let index = RemoteIndex::new(objects.into_iter().map(|(object, _)| object).collect());
        Ok((index, newest))
    }

    /// The backup objects of `dataset` under the snapshot prefix, each with its `HEAD` (or what
    /// `cache` kept of it, when the object did not change since).
    pub(crate) async fn remote_objects(
        &self,
        dataset: &DatasetName,
        cache: Option<&dyn MetaCache>,
    ) -> Result<Vec<(z3_core::RemoteSnapshot, z3_s3::ObjectInfo)>> {
        let layout = &self.settings.layout;
        let list_prefix = layout.list_prefix(dataset, &self.settings.snapshot_prefix);
        let retry_config = &self.settings.transfer.retry;
        let entries = z3_s3::list_with_retry(self.store.as_ref(), &list_prefix, retry_config)
            .await
            .with_context(|| format!("cannot list s3://{}/{list_prefix}", self.settings.bucket))?;
        let scope = CacheScope::new(self.settings.bucket.clone(), list_prefix);
        let cache = cache.map(|c| (c, &scope));
        crate::fleet::read_objects(&self.store, layout, entries, retry_config, cache).await
    }

    /// The names (`ds@snap`) that have a seal: one LIST, for `status` (restore and verify read
    /// the seals they need).
    async fn sealed_names(&self, dataset: &DatasetName) -> Result<Vec<(String, Option<String>)>> {
        let layout = &self.settings.layout;
        let seal_prefix = layout.seal_list_prefix(dataset, &self.settings.snapshot_prefix);
        let seals = z3_s3::list_with_retry(
            self.store.as_ref(),
            &seal_prefix,
            &self.settings.transfer.retry,
        )
        .await
        .with_context(|| format!("cannot list s3://{}/{seal_prefix}", self.settings.bucket))?;
        Ok(seals
            .iter()
            .filter_map(|entry| {
                let (name, upload) = layout.name_of_seal(&entry.key)?;
                Some((name.to_owned(), upload.map(str::to_owned)))
            })
            .collect())
    }

    /// [`Engine::status`], with the internal error; through `cache` when given.
    async fn status_inner(&self, cache: Option<&dyn MetaCache>) -> Result<StatusReport> {
        let dataset = self.dataset()?;
        let local = self.local_chain(dataset, true).await?;
        let (remote, newest) = self.remote_index_with_infos(dataset, cache).await?;
        let remote = remote.with_seals(self.sealed_names(dataset).await?);
        let newest = newest.map(|(name, uploaded)| crate::report::NewestBackup {
            depth: remote.restore_depth(&name),
            name,
            uploaded,
        });
        let rows = status_rows(&local, &remote);
        let object_prefix = format!("{}{dataset}@", self.settings.layout.prefix());
        let hidden = self.unhidden.as_ref().map_or_else(Vec::new, |view| {
            view.hidden()
                .into_iter()
                .filter(|(key, _)| key.starts_with(&object_prefix))
                .map(|(key, _)| key[self.settings.layout.prefix().len()..].to_owned())
                .collect()
        });
        let healthy = remote.iter().all(|object| {
            remote.health(&object.name).is_none_or(|h| h.is_healthy())
                && !remote.is_unsealed(&object.name)
        });
        Ok(StatusReport {
            dataset: dataset.to_string(),
            snapshot_prefix: self.settings.snapshot_prefix.clone(),
            bucket: self.settings.bucket.clone(),
            s3_prefix: self.settings.layout.prefix().to_owned(),
            s3_prefix_raw: self.settings.s3_prefix_raw.clone(),
            healthy,
            rows,
            hidden,
            newest,
        })
    }

    /// [`Engine::backup`], with the internal error.
    async fn backup_inner(
        &self,
        args: &BackupOptions,
        events: &mut dyn Events,
    ) -> Result<BackupReport> {
        let dataset = self.dataset()?;
        let encoding = &args.encoding;
        let target = args.snapshot.clone();
        if args.dry_run {
            return self
                .backup_locked(
                    dataset,
                    target,
                    encoding,
                    args,
                    events,
                    self.interrupt.token(),
                )
                .await;
        }
        // One backup per bucket, prefix and dataset at a time; the lock is taken before the
        // bucket is read, so the plan cannot be invalidated by another run.
        let key = self.settings.layout.lock_key(dataset);
        let url = format!("s3://{}/{key}", self.settings.bucket);
        let cancel = self.interrupt.token().child_token();
        let request = crate::lock::LockRequest {
            key: &key,
            url: &url,
            what: dataset.as_ref(),
            ttl: self.lock_ttl,
            break_lock: args.break_lock,
        };
        let lock = crate::lock::acquire_with_clock(
            &self.raw,
            &request,
            Arc::clone(&self.clock),
            cancel.clone(),
            &mut NoteWriter::new(events),
        )
        .await?;
        let result = self
            .backup_locked(dataset, target, encoding, args, events, &cancel)
            .await;
        lock.release().await;
        result
    }

    async fn backup_locked(
        &self,
        dataset: &DatasetName,
        target: Option<SnapshotName>,
        encoding: &Encoding,
        args: &BackupOptions,
        events: &mut dyn Events,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<BackupReport> {
        self.check_object_lock_bucket().await?;
        let local = self.local_chain(dataset, false).await?;
        let remote = self.remote_index(dataset).await?;
        let plan = plan_backup(&BackupRequest {
            dataset,
            snapshot_prefix: &self.settings.snapshot_prefix,
            local: &local,
            remote: &remote,
            target: target.as_ref(),
            full: args.full,
            overwrite_other: args.overwrite_other_snapshot,
        })?;
        let times = self.snapshot_times(&remote, &local);
        let (plan, reasons) = self.shape(plan, &remote, &local, &times, args.full);
        let result = self
            .upload_plan(
                dataset, target, &plan, &reasons, &remote, &local, args, encoding, events, cancel,
            )
            .await;
        if result.is_ok() && !args.dry_run {
            self.update_holds(dataset, &remote, &local, &plan, &times, events)
                .await?;
        }
        result
    }

    #[allow(clippy::too_many_arguments)] // the plan and what it was made from
    async fn upload_plan(
        &self,
        dataset: &DatasetName,
        target: Option<SnapshotName>,
        plan: &z3_core::BackupPlan,
        reasons: &[z3_core::retention::StepReason],
        remote: &RemoteIndex,
        local: &LocalChain,
        args: &BackupOptions,
        encoding: &Encoding,
        events: &mut dyn Events,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<BackupReport> {
        if plan.steps.is_empty() {
            let name = target
                .map(|t| format!("{dataset}@{t}"))
                .or_else(|| local.latest().map(|l| l.snapshot.name.to_string()))
                .unwrap_or_default();
            events.event(Event::Note {
                text: format!("{name} is already backed up; nothing to do"),
            })?;
            return Ok(BackupReport {
                snapshots: Vec::new(),
                dry_run: args.dry_run,
            });
        }
        let mut report = BackupReport {
            snapshots: Vec::with_capacity(plan.steps.len()),
            dry_run: args.dry_run,
        };
        // The flags each snapshot of this run was sent with, for the incrementals on top.
        let mut sent = std::collections::HashMap::new();
        // `shape` gives one reason per step, in the plan's order.
        for (step, reason) in plan.steps.iter().zip(reasons) {
            let parent = step.parent();
            self.check_interrupt(&format!("the backup of {}", step.snapshot))?;
            if cancel.is_cancelled() {
                bail!(
                    "stopped before the backup of {}: the lock was lost",
                    step.snapshot
                );
            }
            let guid_of = |name: &FullSnapshotName| local.get(name).map(|e| e.snapshot.guid);
            let created = local.get(&step.snapshot).and_then(|e| e.snapshot.creation);
            let guids = (guid_of(&step.snapshot), parent.and_then(guid_of), created);
            // The server enforces what the plan decided, where it supports conditional
            // completions: a free key must still be free, a replaced object must be the one listed.
            let precondition = match step.write {
                WriteMode::Create => Precondition::KeyFree,
                WriteMode::ReplaceSame | WriteMode::ReplaceOther { .. } => remote
                    .get(&step.snapshot.to_string())
                    .and_then(|object| object.etag.clone())
                    .map_or(Precondition::None, Precondition::Unchanged),
            };
            let retention = self.write_retention(reason);
            let class = self.storage_class_for(reason);
            let flags = self
                .send_flags_for(&step.snapshot, parent, remote, &sent, args.send_flags)
                .await?;
            sent.insert(step.snapshot.to_string(), flags);
            let done = self
                .backup_one(
                    &step.snapshot,
                    parent,
                    guids,
                    (precondition, retention, class, flags),
                    encoding,
                    args,
                    cancel,
                )
                .await?;
            if let (Some(parent), Some(retention), false) = (parent, retention, args.dry_run) {
                self.extend_bases(parent, retention.retain_until).await?;
            }
            let mut done = done;
            done.basis.clone_from(&reason.reason);
            if let Some(parts) = done.resumed_parts {
                let text = format!(
                    "resumed the upload of {} that an interrupted run left open: {parts} parts were already stored",
                    done.snapshot
                );
                events.event(Event::Note { text })?;
            }
            events.event(Event::BackedUp(done.clone()))?;
            report.snapshots.push(done);
        }
        Ok(report)
    }

    /// The storage class of a step's object: its represented timeframe's `STORAGE_CLASS_…`
    /// when set, else `S3_STORAGE_CLASS`.
    fn storage_class_for(&self, reason: &z3_core::retention::StepReason) -> &str {
        let per_timeframe = self.settings.retention.as_ref().and_then(|r| {
            let represents = reason.represents?;
            r.storage_classes
                .iter()
                .find(|(timeframe, _)| *timeframe == represents)
                .map(|(_, class)| class.as_str())
        });
        per_timeframe.unwrap_or(&self.settings.storage_class)
    }

    /// The plan's bases as the retention policy's tree or the rebase rule decide them.
    fn shape(
        &self,
        plan: z3_core::BackupPlan,
        remote: &RemoteIndex,
        local: &LocalChain,
        times: &std::collections::HashMap<String, jiff::Timestamp>,
        full_requested: bool,
    ) -> (z3_core::BackupPlan, Vec<z3_core::retention::StepReason>) {
        use z3_core::retention::{ShapeInput, Shaping, shape};
        let shaping = match self.settings.retention.as_ref() {
            Some(r) => Shaping::Tree {
                policy: &r.policy,
                calendar: &r.calendar,
            },
            None => Shaping::Linear(self.settings.rebase),
        };
        shape(
            plan,
            &ShapeInput {
                shaping,
                remote,
                local,
                times,
                full_requested,
            },
        )
    }

    /// The `zfs send` flags of one snapshot: a full's from `choice` and what the local zfs
    /// has; an incremental's from its chain (its parent's object, or the parent `sent` earlier
    /// in this run), which the local zfs must still have.
    async fn send_flags_for(
        &self,
        snapshot: &FullSnapshotName,
        parent: Option<&FullSnapshotName>,
        remote: &RemoteIndex,
        sent: &std::collections::HashMap<String, SendFlags>,
        choice: SendFlagChoice,
    ) -> Result<SendFlags> {
        let wanted = match parent {
            None => choice.wanted(),
            Some(parent) => {
                let name = parent.to_string();
                if let Some(flags) = sent.get(&name) {
                    *flags
                } else {
                    let object = remote
                        .get(&name)
                        .with_context(|| format!("the base {name} vanished from the listing"))?;
                    object_send_flags(object)?
                }
            }
        };
        if wanted.is_empty() {
            return Ok(wanted);
        }
        let have = self
            .zfs
            .supported_send_flags(snapshot, wanted)
            .await
            .with_context(|| format!("cannot find which zfs send flags {snapshot} can use"))?;
        if parent.is_none() && choice == SendFlagChoice::Auto {
            return Ok(have);
        }
        let missing = wanted.without(have);
        if missing.is_empty() {
            return Ok(wanted);
        }
        Err(match parent {
            None => UsageError(format!(
                "cannot back up {snapshot} with SEND_FLAGS {wanted}: this zfs has no `zfs send {missing}`; \
                 set SEND_FLAGS to what it has (or auto)"
            )),
            Some(parent) => UsageError(format!(
                "cannot back up {snapshot} on top of {parent}: its chain is sent with {wanted} \
                 and this zfs has no `zfs send {missing}`; start a new chain with `z3 backup --full`"
            )),
        }
        .into())
    }

    #[allow(clippy::too_many_arguments)] // each is a distinct input; a struct would only rename them
    async fn backup_one(
        &self,
        snapshot: &FullSnapshotName,
        parent: Option<&FullSnapshotName>,
        (guid, parent_guid, created): (Option<u64>, Option<u64>, Option<i64>),
        (precondition, retention, class, flags): (
            Precondition,
            Option<z3_s3::Retention>,
            &str,
            SendFlags,
        ),
        encoding: &Encoding,
        args: &BackupOptions,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<SnapshotBackup> {
        let started = Instant::now();
        let key = self.settings.layout.key(snapshot);
        let estimate = self
            .zfs
            .estimate_send_size(parent, snapshot)
            .await
            .with_context(|| format!("cannot estimate the send size of {snapshot}"))?;
        let meta = ObjectMeta {
            size: Some(estimate.bytes),
            is_full: parent.is_none(),
            parent: parent.map(ToString::to_string),
            compressor: encoding.compressor_metadata().map(str::to_owned),
            encryption: encoding.encryption_metadata().map(str::to_owned),
            guid,
            parent_guid,
            // The uploader records its own token (z3_s3::UPLOAD_TOKEN_META).
            upload: None,
            created,
            send_flags: Some(flags.to_metadata()).filter(|f| !f.is_empty()),
        };
        let stages = encoding.stages();
        let mut done = self.planned(snapshot, &key, &meta, estimate.bytes, args.dry_run);
        class.clone_into(&mut done.storage_class);
        if args.dry_run {
            let options: String = flags.args().iter().flat_map(|a| [*a, " "]).collect();
            let send = match parent {
                Some(p) => format!("zfs send {options}-i {p} {snapshot}"),
                None => format!("zfs send {options}{snapshot}"),
            };
            done.pipeline = if stages.is_empty() {
                send
            } else {
                format!("{send} | {}", describe_all(&stages))
            };
            done.duration = started.elapsed();
            return Ok(done);
        }
        let options = PutOptions {
            metadata: meta.to_map(),
            storage_class: Some(class.to_owned()),
            acl: Some(OBJECT_ACL.to_owned()),
            object_lock: retention,
            ..PutOptions::default()
        };
        let config = UploadConfig {
            part_size: part_size(Some(estimate.bytes), self.settings.transfer.chunk_size),
            concurrency: self.settings.transfer.concurrency,
            retry: self.settings.transfer.retry.clone(),
            estimate: Some(estimate.bytes),
            precondition,
            memory_limit: Some(self.settings.transfer.memory_limit),
            ..UploadConfig::default()
        };
        let identity = resume_identity(&key, &meta, encoding, &config);
        let send = PlannedSend {
            snapshot,
            parent,
            flags,
            meta: &meta,
            stages: &stages,
            estimate: estimate.bytes,
            retention,
        };
        let uploader =
            MultipartUploader::new(Arc::clone(&self.store), config).with_cancel(cancel.clone());
        let (upload, stream_result) = self
            .upload_resuming(&send, &uploader, (&key, &options), identity, args.no_resume)
            .await?;
        done.resumed_parts = match upload.resume {
            z3_s3::ResumeOutcome::Resumed { parts_skipped } => Some(parts_skipped),
            _ => None,
        };
        if let Some((blake3, len)) = stream_result.finish() {
            done.bytes_read = len;
            done.stream_digest = Some(Digest { len, blake3 }.hex());
        }
        done.bytes_stored = upload.bytes;
        done.duration = started.elapsed();
        Ok(done)
    }

    /// Sends and uploads one snapshot; with an `identity` (a resumable stream) through its
    /// journal, continuing what an interrupted run left open (unless `no_resume`). A resumed
    /// stream that turns out to differ from its journal is sent again from its start, once.
    async fn upload_resuming(
        &self,
        plan: &PlannedSend<'_>,
        uploader: &MultipartUploader<dyn ObjectStore>,
        (key, options): (&str, &PutOptions),
        identity: Option<crate::journal::Identity>,
        no_resume: bool,
    ) -> Result<(z3_s3::UploadReport, z3_codec::DigestHandle)> {
        let journal_key = self.settings.layout.journal_key(plan.snapshot);
        let retry = &self.settings.transfer.retry;
        // Without an identity any journal is discarded: nothing can be resumed.
        let mut previous = self
            .previous_upload(&journal_key, identity.as_ref(), no_resume)
            .await;
        let journal = identity.map(|identity| crate::journal::S3Journal {
            store: Arc::clone(&self.store),
            key: journal_key.clone(),
            identity,
            retry: retry.clone(),
        });
        let outcome = loop {
            let resumed = previous.is_some();
            let resumable = journal.as_ref().map(|journal| z3_s3::Resumable {
                journal,
                previous: previous.take(),
            });
            match self
                .send_and_upload(plan, uploader, key, options, resumable)
                .await
            {
                // The regenerated stream differs from the journal: the uploader aborted the old
                // upload; send the snapshot again from its start, once.
                Err(err) if resumed && is_resume_mismatch(&err) => {
                    tracing::warn!(snapshot = %plan.snapshot, error = %err, "cannot resume; sending it again from the start");
                }
                result => break result?,
            }
        };
        if journal.is_some() {
            crate::journal::remove(self.store.as_ref(), &journal_key, retry).await;
        }
        Ok(outcome)
    }

    /// The upload an interrupted run of this snapshot left open, if it can be resumed: its
    /// journal names the same [`Identity`](crate::journal::Identity). A journal that does not
    /// match (another guid, flags, encoding or schedule), cannot be read, or `no_resume` asks
    /// so: the upload it names is aborted and the journal deleted, and the backup starts over.
    async fn previous_upload(
        &self,
        journal_key: &str,
        identity: Option<&crate::journal::Identity>,
        no_resume: bool,
    ) -> Option<z3_s3::OpenUpload> {
        let (store, retry) = (self.store.as_ref(), &self.settings.transfer.retry);
        let found = match crate::journal::read(store, journal_key, retry).await {
            Ok(found) => found?,
            Err(err) => {
                tracing::warn!(journal_key, error = %err, "cannot read the upload journal; not resuming");
                return None;
            }
        };
        if let Some(journal) = &found
            && !no_resume
            && Some(&journal.identity) == identity
            && let Some(open) = journal.open_upload()
        {
            return Some(open);
        }
        crate::journal::discard(store, journal_key, found.as_ref(), retry).await;
        None
    }

    /// Sends `send.snapshot` through the encoder and uploads it, resumably when `resumable`;
    /// returns the upload's report and the stream digest.
    async fn send_and_upload(
        &self,
        send: &PlannedSend<'_>,
        uploader: &MultipartUploader<dyn ObjectStore>,
        key: &str,
        options: &PutOptions,
        resumable: Option<z3_s3::Resumable<'_>>,
    ) -> Result<(z3_s3::UploadReport, z3_codec::DigestHandle)> {
        let snapshot = send.snapshot;
        let stream = self
            .zfs
            .send_with_flags(send.parent, snapshot, send.flags)
            .await
            .with_context(|| format!("cannot start zfs send of {snapshot}"))?;
        let (stream, stream_digest) = DigestReader::new(stream);
        let stream_result = stream_digest.clone();
        let progress = self
            .progress
            .start(&snapshot.to_string(), Some(send.estimate));
        let reader: BoxedReader = Box::new(ProgressReader::new(stream, progress));
        let reader = apply_all(send.stages, reader)
            .with_context(|| format!("cannot start {}", describe_all(send.stages)))?;
        let (reader, object_digest) = DigestReader::new(reader);
        let seal = PendingSeal {
            layout: self.settings.layout.clone(),
            snapshot: snapshot.to_string(),
            guid: send.meta.guid,
            parent_guid: send.meta.parent_guid,
            compressor: send.meta.compressor.clone(),
            encryption: send.meta.encryption.clone(),
            stream: stream_digest,
            object: object_digest,
            retention: send.retention,
        };
        let what = if resumable.is_some() {
            ""
        } else {
            ", upload aborted"
        };
        let upload = self
            .upload_sealed(uploader, key, options, reader, seal, resumable)
            .await
            .with_context(|| format!("backup of {snapshot} failed{what}"))?;
        Ok((upload, stream_result))
    }

    /// The report of one snapshot's backup before anything was sent.
    fn planned(
        &self,
        snapshot: &FullSnapshotName,
        key: &str,
        meta: &ObjectMeta,
        estimate: u64,
        dry_run: bool,
    ) -> SnapshotBackup {
        SnapshotBackup {
            snapshot: snapshot.to_string(),
            url: format!("s3://{}/{key}", self.settings.bucket),
            key: key.to_owned(),
            kind: if meta.is_full {
                Kind::Full
            } else {
                Kind::Incremental
            },
            parent: meta.parent.clone(),
            compressor: meta.compressor.clone(),
            encryption: meta.encryption.clone(),
            estimated_bytes: estimate,
            bytes_read: 0,
            bytes_stored: 0,
            stream_digest: None,
            duration: std::time::Duration::ZERO,
            pipeline: String::new(),
            dry_run,
            basis: String::new(),
            storage_class: String::new(),
            send_flags: meta.send_flags.clone().unwrap_or_default(),
            resumed_parts: None,
        }
    }

    /// Uploads `reader` to `key`, writing `seal` before the completion under a key of its own
    /// (named by the upload's token, which the object records), then removes the seals of
    /// earlier uploads of this snapshot.
    ///
    /// The order keeps object and seal in agreement after a crash at any point (docs/reliability.md):
    /// parts; seal (a new key: the object in place keeps its own seal); completion (the object
    /// now names the new seal); removal of the old seals (they describe nothing any more). A
    /// failure before the completion leaves at most a seal that no object names, which is
    /// harmless and removed by the next backup of the snapshot; nothing is ever undone by
    /// overwriting.
    async fn upload_sealed(
        &self,
        uploader: &MultipartUploader<dyn ObjectStore>,
        key: &str,
        options: &PutOptions,
        reader: impl tokio::io::AsyncRead + Unpin + Send,
        seal: PendingSeal,
        resumable: Option<z3_s3::Resumable<'_>>,
    ) -> Result<z3_s3::UploadReport> {
        let snapshot = seal.snapshot.clone();
        let store = Arc::clone(&self.store);
        let retry_config = self.settings.transfer.retry.clone();
        // The seal goes in before the completion: no object exists without one.
        let before_complete: BeforeComplete<'_> = Box::new(move |done: PartsDone| {
            Box::pin(async move {
                seal.write(store.as_ref(), &retry_config, done.bytes, &done.token)
                    .await
            })
        });
        let result = match resumable {
            Some(resumable) => {
                uploader
                    .upload_resumable(key, options, reader, before_complete, resumable)
                    .await
            }
            None => {
                uploader
                    .upload_then(key, options, reader, before_complete)
                    .await
            }
        };
        let report = result.map_err(|err| match err.kind() {
            // A failed precondition: the key changed since the plan read it.
            z3_s3::ErrorKind::AlreadyExists | z3_s3::ErrorKind::NotFound => {
                anyhow::Error::new(KeyChanged {
                    key: format!("s3://{}/{key}", self.settings.bucket),
                })
                .context(err)
            }
            _ => err.into(),
        })?;
        crate::seal::remove_stale(
            self.store.as_ref(),
            &self.settings.layout,
            &snapshot,
            &report.token,
            &self.settings.transfer.retry,
        )
        .await;
        Ok(report)
    }

    /// [`Engine::restore`], with the internal error.
    async fn restore_inner(
        &self,
        args: &RestoreOptions,
        events: &mut dyn Events,
    ) -> Result<RestoreReport> {
        let dataset = self.dataset()?;
        let target = args.snapshot.clone();
        let destination = args.target_dataset.as_ref().unwrap_or(dataset);
        let (listed, local) = self.restore_local(args, dataset, destination).await?;
        let remote = self.remote_index(dataset).await?;
        let plan = plan_restore(&RestoreRequest {
            dataset,
            local: &local,
            remote: &remote,
            target: &target,
        })?;
        let mut report = RestoreReport {
            snapshots: Vec::with_capacity(plan.steps.len()),
            dry_run: args.dry_run,
        };
        if plan.steps.is_empty() {
            events.event(Event::Note {
                text: format!("{destination}@{target} exists locally; nothing to restore"),
            })?;
            return Ok(report);
        }
        check_rollback(args, plan.base.as_deref(), &listed, destination, events)?;
        let files = match &args.to_dir {
            Some(dir) => Some(stream_files(dir, &plan.steps)?),
            None => None,
        };
        let decoders = self.restore_stages(&plan.steps)?;
        self.check_receivable(&plan.steps, &remote, args, destination, events)
            .await?;
        let expected = self
            .restore_digests(&plan.steps, &remote, args.allow_unsealed, events)
            .await?;
        let downloader = self.downloader();
        let options = ReceiveOptions { force: args.force };
        for (i, ((step, decoder), expected)) in
            plan.steps.iter().zip(decoders).zip(expected).enumerate()
        {
            let started = Instant::now();
            let file = files.as_ref().map(|files| files[i].clone());
            let into =
                FullSnapshotName::new(destination.clone(), step.snapshot.snapshot().clone())?;
            let url = format!("s3://{}/{}", self.settings.bucket, step.key);
            let mut done = SnapshotRestore {
                snapshot: into.to_string(),
                url: url.clone(),
                kind: if step.is_full {
                    Kind::Full
                } else {
                    Kind::Incremental
                },
                object_bytes: step.object_size,
                stream_bytes: 0,
                checked: expected.is_some(),
                decoding: if decoder.is_empty() {
                    String::new()
                } else {
                    describe_all(&decoder)
                },
                force: args.force,
                duration: std::time::Duration::ZERO,
                dry_run: args.dry_run,
                file: file.clone(),
            };
            if args.dry_run {
                events.event(Event::Restored(done.clone()))?;
                report.snapshots.push(done);
                continue;
            }
            self.check_interrupt(&format!("restoring {}", step.snapshot))?;
            // zfs-fuse lands an incremental for a missing destination in whatever dataset holds its
            // base (docs/compatibility.md, "`zfs receive` errors"), so make sure the destination is
            // there first.
            if file.is_none() && !step.is_full && !self.zfs.dataset_exists(destination).await? {
                bail!("cannot restore incremental {into}: dataset {destination} does not exist");
            }
            let progress = self
                .progress
                .start(&step.snapshot.to_string(), Some(step.object_size));
            let reader: BoxedReader = Box::new(ProgressReader::new(
                downloader.reader(&step.key, step.object_size, step.etag.as_deref()),
                progress,
            ));
            let reader = apply_all(&decoder, reader)
                .with_context(|| format!("cannot start {}", describe_all(&decoder)))?;
            done.stream_bytes = self
                .receive_one(
                    file.as_deref(),
                    &into,
                    &options,
                    reader,
                    expected.as_ref(),
                    &step.key,
                )
                .await
                .with_context(|| format!("restore of {into} from {url} failed"))?;
            done.duration = started.elapsed();
            events.event(Event::Restored(done.clone()))?;
            report.snapshots.push(done);
        }
        Ok(report)
    }

    /// Refuses, before anything is downloaded, a chain sent with `zfs send` flags the local
    /// zfs cannot receive (nothing to check when the streams go to files, `--to-dir`) ([`Zfs::receivable_send_flags`]); notes what a raw chain restores as.
    /// `zfs receive` itself needs no option for them: it reads them from the stream.
    async fn check_receivable(
        &self,
        steps: &[RestoreStep],
        remote: &RemoteIndex,
        args: &RestoreOptions,
        destination: &DatasetName,
        events: &mut dyn Events,
    ) -> Result<()> {
        if args.to_dir.is_some() {
            return Ok(());
        }
        let chain = step_objects(steps, remote)?
            .into_iter()
            .map(|object| Ok((object.name.clone(), object_send_flags(object)?)))
            .collect::<Result<Vec<_>>>()?;
        let needed = chain
            .iter()
            .fold(SendFlags::NONE, |all, (_, flags)| all.with(*flags));
        let Some(first) = steps.first().filter(|_| !needed.is_empty()) else {
            return Ok(());
        };
        let probe = FullSnapshotName::new(destination.clone(), first.snapshot.snapshot().clone())?;
        let have = self
            .zfs
            .receivable_send_flags(&probe, needed)
            .await
            .context("cannot find which zfs send streams this zfs can receive")?;
        let missing = needed.without(have);
        if let Some((name, flags)) = chain.iter().find(|(_, f)| !f.both(missing).is_empty()) {
            bail!(UsageError(format!(
                "cannot restore {name}: it was sent with `zfs send {flags}` and this zfs cannot \
                 receive such a stream (it has no `zfs send {}`); restore on a host with a newer \
                 OpenZFS, or fetch the streams with --to-dir",
                flags.both(missing)
            )));
        }
        if needed.raw {
            events.event(Event::Note {
                text: format!(
                    "the chain was sent raw (zfs send -w): {destination} is received encrypted \
                     with its own key; `zfs load-key {destination}` before mounting it"
                ),
            })?;
        }
        Ok(())
    }

    /// Every snapshot of `dataset`, whatever its name; none when it does not exist.
    async fn all_local(&self, dataset: &DatasetName) -> Result<Vec<LocalSnapshot>> {
        match self.zfs.list_snapshots(dataset).await {
            Ok(list) => Ok(list),
            Err(err) if err.is_not_found() => Ok(Vec::new()),
            Err(err) => Err(anyhow!(err)).context(format!("cannot list snapshots of {dataset}")),
        }
    }

    /// Receives one verified stream into `into`, or writes it to `file` (under its partial
    /// name, renamed once verified, removed otherwise); returns the stream's length.
    async fn receive_one(
        &self,
        file: Option<&std::path::Path>,
        into: &FullSnapshotName,
        options: &ReceiveOptions,
        reader: BoxedReader,
        expected: Option<&Digest>,
        key: &str,
    ) -> Result<u64> {
        let sink = match file {
            Some(file) => file_sink(file).await?,
            None => self
                .zfs
                .receive(into, options)
                .await
                .with_context(|| format!("cannot start zfs receive of {into}"))?,
        };
        let received = Receive::restore(&self.interrupt, expected, key)
            .run(reader, Some(sink))
            .await
            .map(|digest| digest.len);
        match (file, received) {
            (None, received) => received,
            (Some(file), Ok(bytes)) => {
                std::fs::rename(partial(file), file)
                    .with_context(|| format!("cannot rename to {}", file.display()))?;
                Ok(bytes)
            }
            (Some(file), Err(err)) => {
                // Never leave a stream that did not verify where a script may find it.
                let _ = std::fs::remove_file(partial(file));
                Err(err)
            }
        }
    }

    /// The destination's snapshots, all of them (to a directory: none, the chain starts at a
    /// full), and the chain the plan uses: those matching the prefix, named as the source's so
    /// that the plan compares them with the bucket's objects.
    async fn restore_local(
        &self,
        args: &RestoreOptions,
        dataset: &DatasetName,
        destination: &DatasetName,
    ) -> Result<(Vec<LocalSnapshot>, LocalChain)> {
        let listed = match &args.to_dir {
            Some(_) => Vec::new(),
            None => self.all_local(destination).await?,
        };
        let renamed = listed
            .iter()
            .map(|s| {
                Ok(LocalSnapshot {
                    name: FullSnapshotName::new(dataset.clone(), s.name.snapshot().clone())?,
                    ..s.clone()
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let local = LocalChain::new(&renamed, &self.settings.snapshot_prefix);
        Ok((listed, local))
    }

    /// Parallel ranged downloads with the restore's part size and concurrency.
    fn downloader(&self) -> Downloader<dyn ObjectStore> {
        Downloader::new(
            Arc::clone(&self.store),
            DownloadConfig {
                part_size: DOWNLOAD_PART_SIZE,
                concurrency: self.settings.transfer.concurrency.min(DOWNLOAD_CONCURRENCY),
                retry: self.settings.transfer.retry.clone(),
            }
            .within(Some(self.settings.transfer.memory_limit)),
        )
    }

    /// The stream digest each step must produce, from its seal, checked before anything is
    /// downloaded: an object whose seal is missing or describes another object is refused
    /// unless `allow_unsealed`; the original's objects (no seal, no guid) have none.
    async fn restore_digests(
        &self,
        steps: &[RestoreStep],
        remote: &RemoteIndex,
        allow_unsealed: bool,
        events: &mut dyn Events,
    ) -> Result<Vec<Option<Digest>>> {
        let wanted = step_objects(steps, remote)?
            .into_iter()
            .map(|object| (self.settings.layout.seal_key_of(object), object.clone()))
            .collect();
        let checks = crate::seal::check_all(
            &self.store,
            wanted,
            &self.settings.bucket,
            &self.settings.transfer.retry,
        )
        .await?;
        let mut digests = Vec::with_capacity(steps.len());
        for (step, check) in steps.iter().zip(checks) {
            digests.push(match check {
                SealCheck::Sealed(seal) => Some(seal.stream),
                SealCheck::Legacy => {
                    events.event(Event::Note {
                        text: format!(
                            "note: {} was written by the original z3 and has no digest; it is restored unchecked",
                            step.key
                        ),
                    })?;
                    None
                }
                check if allow_unsealed => {
                    events.event(Event::Note {
                        text: format!(
                            "warning: restoring {} unchecked (--allow-unsealed): {check}",
                            step.key
                        ),
                    })?;
                    None
                }
                check => {
                    return Err(UntrustedObject {
                        snapshot: step.snapshot.to_string(),
                        key: step.key.clone(),
                        check_label: check.label(),
                        check,
                        hint: "; `z3 restore --allow-unsealed` restores it without the check",
                    }
                    .into());
                }
            });
        }
        Ok(digests)
    }

    /// The decoding stages of every step, resolved before anything is downloaded: an unknown
    /// codec or a missing key fails before anything reaches zfs receive. Keys are read only when
    /// some object is encrypted.
    fn restore_stages(&self, steps: &[RestoreStep]) -> Result<Vec<Vec<Stage>>> {
        let mut encrypted = None;
        for step in steps {
            if is_encrypted(step.encryption.as_deref())
                .with_context(|| format!("cannot restore {} from {}", step.snapshot, step.key))?
            {
                encrypted.get_or_insert(step);
            }
        }
        let identities = match encrypted {
            Some(step) => Some(
                self.settings
                    .keys
                    .identities()
                    .map_err(crate::error::KeyError)?
                    .ok_or_else(|| {
                        UsageError(format!(
                            "cannot restore {}: {} is age-encrypted; give the secret key with \
                     --age-identity or AGE_IDENTITY_FILE (or AGE_PASSPHRASE_FILE)",
                            step.snapshot, step.key
                        ))
                    })?,
            ),
            None => None,
        };
        let decoding = Decoding {
            compressors: self.settings.compressors.clone(),
            identities,
        };
        steps
            .iter()
            .map(|step| {
                decoding
                    .stages_for(step.compressor.as_deref(), step.encryption.as_deref())
                    .with_context(|| format!("cannot restore {} from {}", step.snapshot, step.key))
            })
            .collect::<Result<Vec<_>>>()
    }
}

/// The files `restore --to-dir` writes, in receive order: `001-<snapshot>.zfs`, … Refuses a
/// directory that is missing or already holds one of them (never overwrite).
fn stream_files(dir: &std::path::Path, steps: &[RestoreStep]) -> Result<Vec<std::path::PathBuf>> {
    if !dir.is_dir() {
        bail!(UsageError(format!(
            "--to-dir {}: not a directory",
            dir.display()
        )));
    }
    let files: Vec<_> = steps
        .iter()
        .enumerate()
        .map(|(i, step)| dir.join(format!("{:03}-{}.zfs", i + 1, step.snapshot.snapshot())))
        .collect();
    if let Some(taken) = files
        .iter()
        .find(|file| file.exists() || partial(file).exists())
    {
        bail!(UsageError(format!(
            "--to-dir: {} exists already; z3 never overwrites a file",
            taken.display()
        )));
    }
    Ok(files)
}

/// Where a stream is written until it verified: `<file>.partial`.
fn partial(file: &std::path::Path) -> std::path::PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".partial");
    name.into()
}

/// A receive sink that writes the stream to `file`'s partial name (created new).
/// The listed object of each restore step, in order.
fn step_objects<'a>(
    steps: &[RestoreStep],
    remote: &'a RemoteIndex,
) -> Result<Vec<&'a z3_core::RemoteSnapshot>> {
    steps
        .iter()
        .map(|step| {
            let name = step.snapshot.to_string();
            remote
                .get(&name)
                .with_context(|| format!("{name} vanished from the listing"))
        })
        .collect()
}

/// The `zfs send` flags an object records ([`z3_core::remote::META_SEND_FLAGS`]); none for
/// a plain send and for the original's objects.
///
/// # Errors
/// Letters this z3 does not know (a newer z3 wrote them): sending on top of such an object, or
/// receiving it, could break the chain.
fn object_send_flags(object: &z3_core::RemoteSnapshot) -> Result<SendFlags> {
    let text = object.meta.send_flags.as_deref().unwrap_or_default();
    SendFlags::from_metadata(text).map_err(|why| {
        UsageError(format!(
            "{} records zfs send flags '{text}' this z3 does not know ({why}): use a newer z3",
            object.name
        ))
        .into()
    })
}

async fn file_sink(file: &std::path::Path) -> Result<z3_zfs::ReceiveSink> {
    let path = partial(file);
    let out = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .await
        .with_context(|| format!("cannot create {}", path.display()))?;
    Ok(z3_zfs::ReceiveSink::from_parts(
        out,
        async { Ok(()) },
        format!("the file {}", path.display()),
    ))
}

/// Refuses a restore whose first incremental applies onto a local base that has newer
/// snapshots (a sibling branch of a policy's tree, or snapshots taken since): `zfs receive`
/// refuses it, and `-F` destroys them. With `force`, says which it will destroy.
fn check_rollback(
    args: &RestoreOptions,
    base: Option<&str>,
    listed: &[LocalSnapshot],
    destination: &DatasetName,
    events: &mut dyn Events,
) -> Result<()> {
    let Some(base) = base else { return Ok(()) };
    let newer = newer_than_base(base, listed);
    if newer.is_empty() {
        return Ok(());
    }
    let names = newer
        .iter()
        .map(|s| s.name.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let base = base.split_once('@').map_or(base, |(_, snap)| snap);
    if !args.force {
        bail!(UsageError(format!(
            "restoring {} into {destination} starts with an incremental onto {destination}@{base}, \
             but {destination} has newer snapshots ({names}); zfs receive refuses that, and \
             --force (zfs receive -F) would destroy them: restore into another dataset with \
             --target-dataset, or give --force to roll them back",
            args.snapshot
        )));
    }
    events.event(Event::Note {
        text: format!(
            "warning: --force: zfs receive -F rolls {destination} back to @{base}, destroying {names}"
        ),
    })?;
    Ok(())
}

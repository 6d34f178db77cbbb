//! The pipelines behind `status`, `backup` and `restore`, generic over the three IO traits.
//!
//! Backup: plan (core) → `zfs send` (zfs) → compressor (codec) → multipart upload (s3).
//! Restore: plan (core) → parallel ranged download (s3) → decompressor (codec) → `zfs receive` (zfs).
//!
//! Safety rests on one rule that every stage follows: a stream reports end-of-file only after its
//! producer finished successfully. `zfs send` exiting non-zero, a compressor crashing, or a download
//! failing all surface as read errors, so the uploader aborts the multipart upload instead of
//! completing a truncated object, and a restore drops (kills) `zfs receive` instead of closing its input.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use z3_codec::{
    BoxedReader, Decoding, DigestReader, Encoding, Stage, apply_all, describe_all, is_encrypted,
};
use z3_core::humanize::humanize;
use z3_core::plan::{BackupRequest, RestoreRequest, RestoreStep, plan_backup, plan_restore};
use z3_core::status::{header_line, render_table, status_rows};
use z3_core::{
    DatasetName, Digest, DigestMismatch, FullSnapshotName, LocalChain, ObjectMeta, RemoteIndex,
    RemoteSnapshot, SealCheck, SnapshotName, UntrustedObject, WriteMode,
};
use z3_s3::{
    BeforeComplete, DownloadConfig, Downloader, MultipartUploader, ObjectStore, PartsDone,
    Precondition, PutOptions, UploadConfig, part_size,
};
use z3_zfs::{ReceiveOptions, Zfs};

use crate::args::{BackupArgs, RestoreArgs, StatusArgs};
use crate::config::Settings;
use crate::exit::UsageError;
use crate::interrupt::Interrupt;
use crate::progress::{ProgressMode, ProgressReader, bar};
use crate::seal::PendingSeal;

mod verify;

/// How many HEAD requests run at once while reading object metadata.
const HEAD_CONCURRENCY: usize = 16;
/// The ACL the original sets on every object (docs/compatibility.md, "Object metadata").
const OBJECT_ACL: &str = "bucket-owner-full-control";
/// Ranged GET size for restores: small enough that (concurrency × part) stays at 64 MiB.
const DOWNLOAD_PART_SIZE: u64 = 8 << 20;
/// Ranged GETs in flight during a restore.
const DOWNLOAD_CONCURRENCY: usize = 8;
/// Buffer size for moving bytes from a download into `zfs receive`.
const PUMP_BUFFER: usize = 1 << 20;
/// Bytes of each stream held back from `zfs receive` until the digest matched: far more than
/// the END record (312 bytes) that makes it commit.
const HOLD_BACK: usize = 1 << 20;
/// The pump hands bytes on once this much is pending, keeping [`HOLD_BACK`]: moving the held
/// tail to the front of the buffer then costs one copy of `HOLD_BACK` per 4 MiB pumped.
const RELEASE_AT: usize = HOLD_BACK + 4 * PUMP_BUFFER;

/// Where commands write: results to `out` (stdout), notes to `err` (stderr).
pub struct Console<'a> {
    /// Results, one line each (scripts read this).
    pub out: &'a mut (dyn Write + Send),
    /// Notes for humans.
    pub err: &'a mut (dyn Write + Send),
}

impl std::fmt::Debug for Console<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Console")
    }
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

/// What a command found, beyond success or failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything as expected.
    Done,
    /// `status` found unhealthy backups.
    HealthProblems,
}

/// The three IO edges plus the resolved settings.
#[derive(Debug, Clone)]
pub struct Engine {
    zfs: Arc<dyn Zfs>,
    store: Arc<dyn ObjectStore>,
    settings: Settings,
    progress: ProgressMode,
    interrupt: Interrupt,
    lock_ttl: std::time::Duration,
}

impl Engine {
    /// Wires an engine; production passes `ZfsCli` and `AwsStore`, tests `FakeZfs` and `MemoryStore`.
    #[must_use]
    pub fn new(zfs: Arc<dyn Zfs>, store: Arc<dyn ObjectStore>, settings: Settings) -> Self {
        Self {
            zfs,
            store,
            settings,
            progress: ProgressMode::Auto,
            interrupt: Interrupt::new(),
            lock_ttl: crate::lock::DEFAULT_LOCK_TTL,
        }
    }

    /// When to draw progress bars (default: when stderr is a terminal).
    #[must_use]
    pub fn with_progress(mut self, progress: ProgressMode) -> Self {
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

    /// Fails if a stop was asked for, before the next step starts.
    fn check_interrupt(&self, next: &str) -> Result<()> {
        match self.interrupt.signal() {
            Some(signal) => bail!(
                "stopped before {next} ({} received)",
                crate::interrupt::signal_name(signal)
            ),
            None => Ok(()),
        }
    }

    /// The settings in use.
    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn dataset(&self) -> Result<&DatasetName> {
        Ok(self.settings.require_dataset()?)
    }

    /// Local snapshots of the dataset matching the prefix; a missing dataset has none.
    async fn local_chain(&self, dataset: &DatasetName, missing_ok: bool) -> Result<LocalChain> {
        let snapshots = match self.zfs.list_snapshots(dataset).await {
            Ok(list) => list,
            Err(err) if missing_ok && err.is_not_found() => Vec::new(),
            Err(err) if err.is_not_found() => bail!("dataset {dataset} does not exist"),
            Err(err) => {
                return Err(anyhow!(err)).context(format!("cannot list snapshots of {dataset}"));
            }
        };
        Ok(LocalChain::new(&snapshots, &self.settings.snapshot_prefix))
    }

    /// Every backup object of the dataset under the prefix, with its metadata (one HEAD each).
    async fn remote_index(&self, dataset: &DatasetName) -> Result<RemoteIndex> {
        let layout = &self.settings.layout;
        let list_prefix = layout.list_prefix(dataset, &self.settings.snapshot_prefix);
        let retry_config = &self.settings.retry;
        let entries = z3_s3::list_with_retry(self.store.as_ref(), &list_prefix, retry_config)
            .await
            .with_context(|| format!("cannot list s3://{}/{list_prefix}", self.settings.bucket))?;
        let heads = futures::stream::iter(entries)
            .map(|entry| {
                let store = Arc::clone(&self.store);
                async move {
                    let info =
                        z3_s3::head_with_retry(store.as_ref(), &entry.key, retry_config).await;
                    (entry, info)
                }
            })
            .buffered(HEAD_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        let mut objects = Vec::with_capacity(heads.len());
        for (entry, info) in heads {
            match info {
                Ok(info) => objects.push(RemoteSnapshot {
                    name: layout.name_of(&entry.key).unwrap_or(&entry.key).to_owned(),
                    key: entry.key,
                    object_size: info.size,
                    meta: ObjectMeta::from_map(&info.metadata),
                    etag: info.etag,
                }),
                // Deleted between LIST and HEAD (e.g. by a lifecycle rule): it is gone, skip it.
                Err(err) if err.kind() == z3_s3::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(anyhow!(err)).context(format!(
                        "cannot read metadata of s3://{}/{}",
                        self.settings.bucket, entry.key
                    ));
                }
            }
        }
        Ok(RemoteIndex::new(objects))
    }

    /// The names (`ds@snap`) that have a seal: one LIST, for `status` (restore and verify read
    /// the seals they need).
    async fn sealed_names(&self, dataset: &DatasetName) -> Result<Vec<(String, Option<String>)>> {
        let layout = &self.settings.layout;
        let seal_prefix = layout.seal_list_prefix(dataset, &self.settings.snapshot_prefix);
        let seals = z3_s3::list_with_retry(self.store.as_ref(), &seal_prefix, &self.settings.retry)
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

    /// `z3 status`: local snapshots and backups side by side.
    ///
    /// # Errors
    /// Listing failures (zfs or S3).
    pub async fn status(&self, args: &StatusArgs, console: &mut Console<'_>) -> Result<Outcome> {
        let dataset = self.dataset()?;
        let local = self.local_chain(dataset, true).await?;
        let remote = self
            .remote_index(dataset)
            .await?
            .with_seals(self.sealed_names(dataset).await?);
        let rows = status_rows(&local, &remote);
        let healthy = remote.iter().all(|object| {
            remote.health(&object.name).is_none_or(|h| h.is_healthy())
                && !remote.is_unsealed(&object.name)
        });
        if args.json {
            let doc = serde_json::json!({
                "dataset": dataset.as_str(),
                "snapshot_prefix": self.settings.snapshot_prefix,
                "bucket": self.settings.bucket,
                "s3_prefix": self.settings.layout.prefix(),
                "healthy": healthy,
                "rows": rows,
            });
            serde_json::to_writer_pretty(&mut *console.out, &doc)?;
            writeln!(console.out)?;
        } else {
            writeln!(
                console.out,
                "{}",
                header_line(
                    dataset.as_str(),
                    &self.settings.snapshot_prefix,
                    &self.settings.bucket,
                    &self.settings.s3_prefix_raw,
                )
            )?;
            write!(console.out, "{}", render_table(&rows))?;
        }
        Ok(if healthy {
            Outcome::Done
        } else {
            Outcome::HealthProblems
        })
    }

    /// `z3 backup`: uploads what the plan says, oldest first, one object per snapshot.
    ///
    /// # Errors
    /// Planning errors (nothing to back up, broken chain), zfs, compressor and upload failures.
    /// A failed upload is aborted: no object appears for that snapshot.
    pub async fn backup(&self, args: &BackupArgs, console: &mut Console<'_>) -> Result<Outcome> {
        let dataset = self.dataset()?;
        let compressor = self
            .settings
            .compressors
            .parse(&self.settings.compressor, &self.settings.gpg_recipient)
            .map_err(|e| UsageError(format!("invalid COMPRESSOR: {e}")))?;
        let encoding = Encoding {
            compressor,
            encryption: self.settings.age.recipients()?,
        };
        let target = args
            .snapshot
            .as_deref()
            .map(SnapshotName::new)
            .transpose()?;
        if args.dry_run {
            return self
                .backup_locked(
                    dataset,
                    target,
                    &encoding,
                    args,
                    console,
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
        let lock =
            crate::lock::acquire(&self.store, &request, cancel.clone(), &mut *console.err).await?;
        let result = self
            .backup_locked(dataset, target, &encoding, args, console, &cancel)
            .await;
        lock.release().await;
        result
    }

    async fn backup_locked(
        &self,
        dataset: &DatasetName,
        target: Option<SnapshotName>,
        encoding: &Encoding,
        args: &BackupArgs,
        console: &mut Console<'_>,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<Outcome> {
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
        if plan.steps.is_empty() {
            let name = target
                .map(|t| format!("{dataset}@{t}"))
                .or_else(|| local.latest().map(|l| l.snapshot.name.to_string()))
                .unwrap_or_default();
            writeln!(console.err, "{name} is already backed up; nothing to do")?;
            return Ok(Outcome::Done);
        }
        for step in &plan.steps {
            let parent = step.parent();
            self.check_interrupt(&format!("the backup of {}", step.snapshot))?;
            if cancel.is_cancelled() {
                bail!(
                    "stopped before the backup of {}: the lock was lost",
                    step.snapshot
                );
            }
            let guid_of = |name: &FullSnapshotName| local.get(name).map(|e| e.snapshot.guid);
            let guids = (guid_of(&step.snapshot), parent.and_then(guid_of));
            // The server enforces what the plan decided, where it supports conditional
            // completions: a free key must still be free, a replaced object must be the one listed.
            let precondition = match step.write {
                WriteMode::Create => Precondition::KeyFree,
                WriteMode::ReplaceSame | WriteMode::ReplaceOther { .. } => remote
                    .get(&step.snapshot.to_string())
                    .and_then(|object| object.etag.clone())
                    .map_or(Precondition::None, Precondition::Unchanged),
            };
            self.backup_one(
                &step.snapshot,
                parent,
                guids,
                precondition,
                encoding,
                args,
                console,
                cancel,
            )
            .await?;
        }
        Ok(Outcome::Done)
    }

    #[allow(clippy::too_many_arguments)] // each is a distinct input; a struct would only rename them
    async fn backup_one(
        &self,
        snapshot: &FullSnapshotName,
        parent: Option<&FullSnapshotName>,
        (guid, parent_guid): (Option<u64>, Option<u64>),
        precondition: Precondition,
        encoding: &Encoding,
        args: &BackupArgs,
        console: &mut Console<'_>,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<()> {
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
        };
        let stages = encoding.stages();
        if args.dry_run {
            let send = match parent {
                Some(p) => format!("zfs send -i {p} {snapshot}"),
                None => format!("zfs send {snapshot}"),
            };
            let stage = if stages.is_empty() {
                String::new()
            } else {
                format!(" | {}", describe_all(&stages))
            };
            writeln!(
                console.out,
                "would back up {snapshot} ({kind}, estimated {size}): {send}{stage} -> s3://{bucket}/{key}",
                kind = if parent.is_some() {
                    "incremental"
                } else {
                    "full"
                },
                size = humanize(estimate.bytes),
                bucket = self.settings.bucket,
            )?;
            return Ok(());
        }
        let options = PutOptions {
            metadata: meta.to_map(),
            storage_class: Some(self.settings.storage_class.clone()),
            acl: Some(OBJECT_ACL.to_owned()),
            ..PutOptions::default()
        };
        let stream = self
            .zfs
            .send(parent, snapshot)
            .await
            .with_context(|| format!("cannot start zfs send of {snapshot}"))?;
        let (stream, stream_digest) = DigestReader::new(stream);
        let progress = bar(self.progress, &snapshot.to_string(), Some(estimate.bytes));
        let reader: BoxedReader = Box::new(ProgressReader::new(stream, progress));
        let reader = apply_all(&stages, reader)
            .with_context(|| format!("cannot start {}", describe_all(&stages)))?;
        let (reader, object_digest) = DigestReader::new(reader);
        let seal = PendingSeal {
            layout: self.settings.layout.clone(),
            snapshot: snapshot.to_string(),
            guid,
            parent_guid,
            compressor: meta.compressor.clone(),
            encryption: meta.encryption.clone(),
            stream: stream_digest,
            object: object_digest,
        };
        let uploader = MultipartUploader::new(
            Arc::clone(&self.store),
            UploadConfig {
                part_size: part_size(Some(estimate.bytes), self.settings.chunk_size),
                concurrency: self.settings.concurrency,
                retry: self.settings.retry.clone(),
                estimate: Some(estimate.bytes),
                precondition,
                ..UploadConfig::default()
            },
        )
        .with_cancel(cancel.clone());
        self.upload_sealed(&uploader, &key, &options, reader, seal)
            .await
            .with_context(|| format!("backup of {snapshot} failed, upload aborted"))?;
        if args.parseable {
            writeln!(console.out, "{snapshot}\0{}", estimate.bytes)?;
        } else {
            // The original's exact wording, misspelling included: scripts grep for it.
            writeln!(
                console.out,
                "Successfuly backed up {snapshot}: {}.",
                humanize(estimate.bytes)
            )?;
        }
        console.out.flush()?;
        Ok(())
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
    ) -> Result<()> {
        let snapshot = seal.snapshot.clone();
        let store = Arc::clone(&self.store);
        let retry_config = self.settings.retry.clone();
        // The seal goes in before the completion: no object exists without one.
        let before_complete: BeforeComplete<'_> = Box::new(move |done: PartsDone| {
            Box::pin(async move {
                seal.write(store.as_ref(), &retry_config, done.bytes, &done.token)
                    .await
            })
        });
        let report = uploader
            .upload_then(key, options, reader, before_complete)
            .await
            .map_err(|err| match err.kind() {
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
            &self.settings.retry,
        )
        .await;
        Ok(())
    }

    /// `z3 restore SNAPSHOT`: receives the chain from the newest local base (or a full) to the target.
    ///
    /// # Errors
    /// Unknown snapshot, broken chain, unknown codec (before anything is received), download,
    /// decoder and `zfs receive` failures, each naming the snapshot and object.
    pub async fn restore(&self, args: &RestoreArgs, console: &mut Console<'_>) -> Result<Outcome> {
        let dataset = self.dataset()?;
        let target = SnapshotName::new(&args.snapshot)?;
        let local = self.local_chain(dataset, true).await?;
        let remote = self.remote_index(dataset).await?;
        let plan = plan_restore(&RestoreRequest {
            dataset,
            local: &local,
            remote: &remote,
            target: &target,
        })?;
        if plan.steps.is_empty() {
            writeln!(
                console.err,
                "{dataset}@{target} exists locally; nothing to restore"
            )?;
            return Ok(Outcome::Done);
        }
        let decoders = self.restore_stages(&plan.steps)?;
        let expected = self
            .restore_digests(&plan.steps, &remote, args.allow_unsealed, console)
            .await?;
        let downloader = self.downloader();
        let options = ReceiveOptions { force: args.force };
        for ((step, decoder), expected) in plan.steps.iter().zip(decoders).zip(expected) {
            let url = format!("s3://{}/{}", self.settings.bucket, step.key);
            if args.dry_run {
                let stage = if decoder.is_empty() {
                    String::new()
                } else {
                    format!(" | {}", describe_all(&decoder))
                };
                writeln!(
                    console.out,
                    "would restore {} ({kind}, {size}): {url}{stage} | zfs receive{force} {}",
                    step.snapshot,
                    step.snapshot,
                    kind = if step.is_full { "full" } else { "incremental" },
                    size = humanize(step.object_size),
                    force = if args.force { " -F" } else { "" },
                )?;
                continue;
            }
            self.check_interrupt(&format!("restoring {}", step.snapshot))?;
            // zfs-fuse lands an incremental for a missing destination in whatever dataset holds its
            // base (docs/compatibility.md, "`zfs receive` errors"), so make sure the destination is
            // there first.
            if !step.is_full && !self.zfs.dataset_exists(dataset).await? {
                bail!(
                    "cannot restore incremental {}: dataset {dataset} does not exist",
                    step.snapshot
                );
            }
            let progress = bar(
                self.progress,
                &step.snapshot.to_string(),
                Some(step.object_size),
            );
            let reader: BoxedReader = Box::new(ProgressReader::new(
                downloader.reader(&step.key, step.object_size, step.etag.as_deref()),
                progress,
            ));
            let reader = apply_all(&decoder, reader)
                .with_context(|| format!("cannot start {}", describe_all(&decoder)))?;
            let sink = self
                .zfs
                .receive(&step.snapshot, &options)
                .await
                .with_context(|| format!("cannot start zfs receive of {}", step.snapshot))?;
            pump(reader, sink, &self.interrupt, expected.as_ref(), &step.key)
                .await
                .with_context(|| format!("restore of {} from {url} failed", step.snapshot))?;
            writeln!(console.out, "Restored {}.", step.snapshot)?;
            console.out.flush()?;
        }
        Ok(Outcome::Done)
    }

    /// Parallel ranged downloads with the restore's part size and concurrency.
    fn downloader(&self) -> Downloader<dyn ObjectStore> {
        Downloader::new(
            Arc::clone(&self.store),
            DownloadConfig {
                part_size: DOWNLOAD_PART_SIZE,
                concurrency: self.settings.concurrency.min(DOWNLOAD_CONCURRENCY),
                retry: self.settings.retry.clone(),
            },
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
        console: &mut Console<'_>,
    ) -> Result<Vec<Option<Digest>>> {
        let mut wanted = Vec::with_capacity(steps.len());
        for step in steps {
            let name = step.snapshot.to_string();
            let object = remote
                .get(&name)
                .with_context(|| format!("{name} vanished from the listing"))?;
            wanted.push((self.settings.layout.seal_key_of(object), object.clone()));
        }
        let checks = crate::seal::check_all(
            &self.store,
            wanted,
            &self.settings.bucket,
            &self.settings.retry,
        )
        .await?;
        let mut digests = Vec::with_capacity(steps.len());
        for (step, check) in steps.iter().zip(checks) {
            digests.push(match check {
                SealCheck::Sealed(seal) => Some(seal.stream),
                SealCheck::Legacy => {
                    writeln!(
                        console.err,
                        "note: {} was written by the original z3 and has no digest; it is restored unchecked",
                        step.key
                    )?;
                    None
                }
                check if allow_unsealed => {
                    writeln!(
                        console.err,
                        "warning: restoring {} unchecked (--allow-unsealed): {check}",
                        step.key
                    )?;
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
            Some(step) => Some(self.settings.age.identities()?.ok_or_else(|| {
                UsageError(format!(
                    "cannot restore {}: {} is age-encrypted; give the secret key with \
                     --age-identity or AGE_IDENTITY_FILE (or AGE_PASSPHRASE_FILE)",
                    step.snapshot, step.key
                ))
            })?),
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

/// Moves a stream into `zfs receive`, finishing it only when the whole stream arrived intact.
///
/// The last [`HOLD_BACK`] bytes are held back until the stream ended and its BLAKE3 digest
/// equals `expected` (from the object's seal): a ZFS stream ends with its END record, so
/// `zfs receive` cannot commit a stream whose tail it has not seen. On a mismatch, a read error
/// (download or decoder failure) or an interrupt the sink is dropped, which kills `zfs receive`
/// so it commits nothing. A write error means the receiver died: its own exit status and stderr
/// say why.
async fn pump(
    mut reader: BoxedReader,
    mut sink: z3_zfs::ReceiveSink,
    interrupt: &Interrupt,
    expected: Option<&Digest>,
    key: &str,
) -> Result<u64> {
    let mut pending: Vec<u8> = Vec::with_capacity(RELEASE_AT + PUMP_BUFFER);
    let mut hasher = blake3::Hasher::new();
    let mut total = 0u64;
    loop {
        pending.reserve(PUMP_BUFFER);
        let read = tokio::select! {
            biased;
            () = interrupt.cancelled() => {
                drop(sink);
                bail!("stopped after {total} bytes: zfs receive was killed before it committed anything");
            }
            read = reader.read_buf(&mut pending) => read,
        };
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) => {
                drop(sink);
                return Err(anyhow!(err)).context("reading the backup stream failed");
            }
        };
        hasher.update(&pending[pending.len() - n..]);
        total += n as u64;
        if pending.len() >= RELEASE_AT {
            let release = pending.len() - HOLD_BACK;
            sink = write_or_explain(sink, &pending[..release], interrupt).await?;
            pending.drain(..release);
        }
    }
    if let Some(expected) = expected {
        let actual = Digest {
            len: total,
            blake3: *hasher.finalize().as_bytes(),
        };
        if actual != *expected {
            drop(sink);
            return Err(DigestMismatch {
                key: key.to_owned(),
                what: "the zfs stream",
                expected: *expected,
                actual,
            })
            .context("zfs receive was killed before it saw the end of the stream");
        }
    }
    let sink = write_or_explain(sink, &pending, interrupt).await?;
    finish_or_kill(sink, interrupt).await?;
    Ok(total)
}

/// Writes to `zfs receive`; if that fails the receiver died, and its exit status says why.
///
/// The write is raced against `interrupt`: a receiver that stopped reading (stalled disk, hung
/// `ssh`) blocks the write for as long as it likes, and a signal must still stop the command.
/// On an interrupt the sink is dropped, which kills the receiver; it has not seen the end of
/// the stream (the pump holds the tail back), so it commits nothing.
pub(crate) async fn write_or_explain(
    mut sink: z3_zfs::ReceiveSink,
    bytes: &[u8],
    interrupt: &Interrupt,
) -> Result<z3_zfs::ReceiveSink> {
    let written = tokio::select! {
        biased;
        () = interrupt.cancelled() => None,
        written = sink.write_all(bytes) => Some(written),
    };
    match written {
        None => {
            let receiver = sink.description().to_owned();
            drop(sink);
            Err(anyhow!(
                "stopped while `{receiver}` was not reading its input: it was killed before it committed anything"
            ))
        }
        Some(Ok(())) => Ok(sink),
        Some(Err(write_err)) => match sink.finish().await {
            Err(zfs_err) => Err(anyhow!(zfs_err)),
            Ok(()) => Err(anyhow!(write_err)).context("writing to zfs receive failed"),
        },
    }
}

/// Ends the stream and waits for the receiver, unless `interrupt` fires first: then the
/// receiver is killed (dropping the unfinished `finish` drops the child, `kill_on_drop`).
/// Every byte was written by then, so the receiver may already have committed; the error says so.
pub(crate) async fn finish_or_kill(sink: z3_zfs::ReceiveSink, interrupt: &Interrupt) -> Result<()> {
    let receiver = sink.description().to_owned();
    tokio::select! {
        biased;
        () = interrupt.cancelled() => Err(anyhow!(
            "stopped while waiting for `{receiver}` to finish: it was killed (it had the whole stream and may have committed it)"
        )),
        finished = sink.finish() => finished.map_err(Into::into),
    }
}

#[cfg(test)]
pub(crate) mod pump_tests {
    //! A receiver that stops reading must not make the pump deaf to a signal.
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
    pub(crate) fn stalled_sink() -> (
        z3_zfs::ReceiveSink,
        Arc<AtomicBool>,
        tokio::io::DuplexStream,
    ) {
        let (writer, reader) = tokio::io::duplex(64 << 10);
        let killed = Arc::new(AtomicBool::new(false));
        let guard = OnDrop(Arc::clone(&killed));
        let completion = async move {
            std::future::pending::<()>().await;
            drop(guard);
            Ok(())
        };
        (
            z3_zfs::ReceiveSink::from_parts(writer, completion, "zfs receive pool/fs@s".into()),
            killed,
            reader,
        )
    }

    #[tokio::test]
    async fn an_interrupt_stops_a_pump_whose_receiver_stopped_reading() {
        let (sink, killed, _reader) = stalled_sink();
        let stream: BoxedReader = Box::new(std::io::Cursor::new(vec![7u8; 16 << 20]));
        let interrupt = Interrupt::new();
        let trigger = interrupt.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            trigger.trigger(crate::interrupt::SIGTERM);
        });
        // Fails on the old pump: the blocked write never returned, so this timed out.
        let result = tokio::time::timeout(
            Duration::from_secs(20),
            pump(stream, sink, &interrupt, None, "k"),
        )
        .await
        .expect("the pump ignored the interrupt while the receiver was not reading");
        let err = format!("{:#}", result.unwrap_err());
        assert!(err.contains("was not reading its input"), "{err}");
        assert!(killed.load(Ordering::SeqCst), "the receiver was not killed");
    }
}

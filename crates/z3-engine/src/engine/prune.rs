//! `z3 prune`: deletes the backups the retention policy no longer preserves, never one that a
//! kept backup needs, leaves first ([`z3_core::prune`]).
//!
//! The run holds the dataset's backup lock from before the listing to the last delete, so no
//! backup can build on an object while it is being deleted. Objects outside `SNAPSHOT_PREFIX`
//! are listed too (a manual snapshot's incremental may name a policy snapshot as its base) and
//! are always kept. Deletions run batch by batch; a batch that fails stops the run before the
//! next one, whose objects are bases of the failed batch's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use jiff::Timestamp;
use z3_core::prune::{
    Batch, Deletion, ObjectFacts, ObjectVersion, PruneInput, PrunePlan, Target, VersionKind,
    plan_prune,
};
use z3_core::retention::{Item, preserve, snapshot_time};
use z3_core::{DatasetName, RemoteIndex, RemoteSnapshot};
use z3_s3::ObjectInfo;

use super::{Engine, immutable};
use crate::config::PruneOptions;
use crate::report::{Event, Events, NoteWriter, PruneReport, Pruned};

/// How far behind ours the bucket's clock may be: S3 refuses requests signed more than 15
/// minutes off its time, so a retention z3 believes expired by more than this has expired at
/// the server too.
const CLOCK_SKEW_SECS: u64 = 15 * 60;

/// Deletes in flight within one batch.
const DELETE_CONCURRENCY: usize = 16;

impl Engine {
    /// [`Engine::prune`], with the internal error.
    pub(super) async fn prune_inner(
        &self,
        args: &PruneOptions,
        events: &mut dyn Events,
    ) -> Result<PruneReport> {
        let dataset = self.dataset()?.clone();
        if args.dry_run {
            return self.prune_locked(&dataset, args, events).await;
        }
        let key = self.settings.layout.lock_key(&dataset);
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
        let result = self.prune_locked(&dataset, args, events).await;
        lock.release().await;
        result
    }

    async fn prune_locked(
        &self,
        dataset: &DatasetName,
        args: &PruneOptions,
        events: &mut dyn Events,
    ) -> Result<PruneReport> {
        self.check_object_lock_bucket().await?;
        let layout = &self.settings.layout;
        let retry = &self.settings.transfer.retry;
        // Every object of the dataset, whatever its snapshot name: links are judged on all.
        let list_prefix = layout.list_prefix(dataset, "");
        let entries = z3_s3::list_with_retry(self.store.as_ref(), &list_prefix, retry)
            .await
            .with_context(|| format!("cannot list s3://{}/{list_prefix}", self.settings.bucket))?;
        let objects = crate::fleet::read_objects(&self.store, layout, entries, retry, None).await?;
        let seals = self.seal_keys(dataset).await?;
        let now = self.clock.unix_secs();
        let index = RemoteIndex::new(objects.iter().map(|(o, _)| o.clone()).collect());
        let mut input = PruneInput {
            // Retention and storage durations are judged a little in the past: the bucket's
            // clock may be behind ours, and a delete it refuses would stop the run.
            now: now.saturating_sub(CLOCK_SKEW_SECS),
            allow_early_delete: args.allow_early_delete,
            facts: facts(&objects, &seals),
            ..PruneInput::default()
        };
        self.preservation(dataset, &objects, now, &mut input)?;
        let prefix = format!("{dataset}@{}", self.settings.snapshot_prefix);
        for (object, _) in &objects {
            if !object.name.starts_with(&prefix) {
                input.preserved.insert(
                    object.name.clone(),
                    "outside SNAPSHOT_PREFIX: not under the policy".to_owned(),
                );
            }
        }
        if self.object_lock().is_some() {
            input.versions = self.lock_and_seal_versions(dataset).await?;
        }
        let mut plan = plan_prune(&index, &input);
        // Seals whose object is gone (an interrupted prune deleted it; a crashed backup never
        // completed it) describe nothing: with the lock held, no backup can be about to
        // complete one, so they go last.
        let orphans: Vec<Deletion> = seals
            .iter()
            .filter(|(name, _)| index.get(name).is_none())
            .flat_map(|(name, keys)| {
                keys.iter().map(move |key| Deletion {
                    key: key.clone(),
                    version_id: None,
                    target: Target::Seal(name.clone()),
                    reason: "seal of a backup that no longer exists".to_owned(),
                    bytes: 0,
                    early_delete_gib_days: 0.0,
                })
            })
            .collect();
        for chunk in orphans.chunks(z3_core::prune::DELETE_BATCH_LIMIT) {
            plan.delete.push(Batch {
                deletions: chunk.to_vec(),
            });
        }
        let mut report = PruneReport {
            dry_run: args.dry_run,
            kept: plan
                .keep
                .iter()
                .map(|(name, why)| (name.clone(), why.to_string()))
                .collect(),
            deleted: Vec::new(),
            bytes_freed: 0,
            early_delete_gib_days: plan.totals.early_delete_gib_days,
            locks_extended: Vec::new(),
        };
        for (name, why) in &report.kept {
            events.event(Event::Kept {
                name: name.clone(),
                reason: why.clone(),
            })?;
        }
        report.locks_extended = self
            .extend_kept_locks(&objects, &plan, &input, &prefix, args.dry_run, events)
            .await?;
        let batches = plan.delete.len();
        for (i, batch) in plan.delete.iter().enumerate() {
            if !args.dry_run {
                self.check_interrupt("the next batch of deletions")?;
                self.delete_batch(&batch.deletions).await.with_context(|| {
                    format!(
                        "prune stopped in batch {} of {batches} (the batches before it are \
                         deleted; every object left is as restorable as before: run it again)",
                        i + 1
                    )
                })?;
            }
            for deletion in &batch.deletions {
                let pruned = pruned(deletion, args.dry_run);
                report.bytes_freed += pruned.bytes;
                events.event(Event::Pruned(pruned.clone()))?;
                report.deleted.push(pruned);
            }
        }
        Ok(report)
    }

    /// The seal keys of every object of `dataset`, by snapshot name (`ds@snap`).
    async fn seal_keys(&self, dataset: &DatasetName) -> Result<BTreeMap<String, Vec<String>>> {
        let layout = &self.settings.layout;
        let prefix = layout.seal_list_prefix(dataset, "");
        let listed =
            z3_s3::list_with_retry(self.store.as_ref(), &prefix, &self.settings.transfer.retry)
                .await
                .with_context(|| format!("cannot list s3://{}/{prefix}", self.settings.bucket))?;
        let mut seals: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for entry in listed {
            if let Some((name, _)) = layout.name_of_seal(&entry.key) {
                seals.entry(name.to_owned()).or_default().push(entry.key);
            }
        }
        Ok(seals)
    }

    /// The versions of the dataset's lock record and seals, each noncurrent one with its
    /// retention (one HEAD each), classified for [`plan_prune`].
    async fn lock_and_seal_versions(&self, dataset: &DatasetName) -> Result<Vec<ObjectVersion>> {
        let layout = &self.settings.layout;
        let retry = &self.settings.transfer.retry;
        let mut versions = Vec::new();
        for (prefix, kind) in [
            (layout.lock_key(dataset), VersionKind::Lock),
            (layout.seal_list_prefix(dataset, ""), VersionKind::Seal),
        ] {
            let listed = z3_s3::list_versions_with_retry(self.store.as_ref(), &prefix, retry)
                .await
                .with_context(|| {
                    format!(
                        "cannot list the versions of s3://{}/{prefix}",
                        self.settings.bucket
                    )
                })?;
            for entry in listed {
                // The lock's prefix also matches a dataset whose name extends this one's.
                if kind == VersionKind::Lock && entry.key != prefix {
                    continue;
                }
                let retain_until = if entry.is_latest || entry.is_delete_marker {
                    None
                } else {
                    let info = z3_s3::retry(retry, "head_version", || {
                        self.store.head_version(&entry.key, &entry.version_id)
                    })
                    .await
                    .with_context(|| {
                        format!(
                            "cannot read s3://{}/{} version {}",
                            self.settings.bucket, entry.key, entry.version_id
                        )
                    })?;
                    info.retain_until.and_then(|t| u64::try_from(t).ok())
                };
                versions.push(ObjectVersion {
                    key: entry.key,
                    version_id: entry.version_id,
                    is_latest: entry.is_latest,
                    is_delete_marker: entry.is_delete_marker,
                    retain_until,
                    kind,
                });
            }
        }
        Ok(versions)
    }

    /// Extends the Object Lock retention of every kept object and its seals to what the policy
    /// now needs (seals first: an object is never locked longer than its seal). Returns the
    /// keys extended (in a dry run: that would be) and their new dates.
    async fn extend_kept_locks(
        &self,
        objects: &[(RemoteSnapshot, ObjectInfo)],
        plan: &PrunePlan,
        input: &PruneInput,
        prefix: &str,
        dry_run: bool,
        events: &mut dyn Events,
    ) -> Result<Vec<(String, i64)>> {
        if self.object_lock().is_none() {
            return Ok(Vec::new());
        }
        let deleted: HashSet<&str> = plan
            .deletions()
            .filter(|d| matches!(d.target, Target::Object(_)))
            .map(|d| d.key.as_str())
            .collect();
        let kept = objects
            .iter()
            .filter(|(object, _)| !deleted.contains(object.key.as_str()));
        let empty = z3_core::LocalChain::new(&[], "");
        let index = RemoteIndex::new(objects.iter().map(|(o, _)| o.clone()).collect());
        let times = self.snapshot_times(&index, &empty);
        let dates = self.needed_lock_dates(&index, &times, |o| o.name.starts_with(prefix));
        let now = i64::try_from(input.now).unwrap_or(i64::MAX);
        let retry = &self.settings.transfer.retry;
        let mut extended = Vec::new();
        for (object, info) in kept {
            let window = immutable::lock_window(now, dates.get(&object.name).copied().flatten());
            if info.retain_until.is_some_and(|until| until >= window.0) {
                continue;
            }
            let seals = input
                .facts
                .get(&object.name)
                .map(|f| f.seal_keys.clone())
                .unwrap_or_default();
            let mut keys: Vec<(String, Option<ObjectInfo>)> =
                seals.into_iter().map(|key| (key, None)).collect();
            keys.push((object.key.clone(), Some(info.clone())));
            for (key, info) in keys {
                let info = match info {
                    Some(info) => info,
                    None => z3_s3::retry(retry, "head", || self.store.head(&key))
                        .await
                        .with_context(|| {
                            format!("cannot read s3://{}/{key}", self.settings.bucket)
                        })?,
                };
                let wrote = if dry_run {
                    info.retain_until.is_none_or(|until| until < window.0)
                } else {
                    self.extend_lock(&key, &info, window).await?
                };
                if wrote {
                    events.event(Event::Note {
                        text: format!(
                            "{} the Object Lock of {key} until {}",
                            if dry_run { "would extend" } else { "extended" },
                            z3_core::humanize::utc(u64::try_from(window.1).unwrap_or(0))
                        ),
                    })?;
                    extended.push((key, window.1));
                }
            }
        }
        Ok(extended)
    }

    /// What the policy preserves, and why; which objects' times it cannot know. Only objects
    /// of the configured snapshot prefix are judged (the caller keeps the others).
    fn preservation(
        &self,
        dataset: &DatasetName,
        objects: &[(RemoteSnapshot, ObjectInfo)],
        now: u64,
        input: &mut PruneInput,
    ) -> Result<()> {
        let Some(retention) = &self.settings.retention else {
            bail!(crate::UsageError(
                "z3 prune needs a retention policy: set PRESERVE (e.g. PRESERVE=\"1y 12m 8w 14d\")"
                    .to_owned()
            ));
        };
        let prefix = format!("{dataset}@{}", self.settings.snapshot_prefix);
        let tz = &retention.calendar.time_zone;
        let items: Vec<Item> = objects
            .iter()
            .filter(|(object, _)| object.name.starts_with(&prefix))
            .map(|(object, _)| Item {
                name: object.name.clone(),
                time: snapshot_time(
                    object.short_name(),
                    object.meta.created,
                    retention.name_format.as_ref(),
                    tz,
                )
                .map(|(time, _)| time),
            })
            .collect();
        let now = Timestamp::from_second(i64::try_from(now).unwrap_or(i64::MAX))
            .context("the clock is out of range")?;
        preserve(&retention.policy, &items, now, &retention.calendar).fill(input);
        Ok(())
    }

    /// Deletes every key of one batch (a bounded number at once, each with retries); fails if
    /// any could not be deleted.
    async fn delete_batch(&self, deletions: &[Deletion]) -> Result<()> {
        let retry = &self.settings.transfer.retry;
        let results = futures::stream::iter(deletions)
            .map(|deletion| async move {
                let key = &deletion.key;
                let failed = || format!("cannot delete s3://{}/{key}", self.settings.bucket);
                match (&deletion.version_id, self.object_lock().is_some()) {
                    (Some(version), true) => z3_s3::retry(retry, "delete_version", || {
                        self.store.delete_version(key, version)
                    })
                    .await
                    .with_context(|| format!("{} (version {version})", failed())),
                    (Some(_), false) => Err(anyhow!(
                        "{key}: deleting a version needs a versioned listing, which this run did not make"
                    )),
                    // A plain DELETE on a versioned bucket frees nothing and leaves the data
                    // readable behind a marker: every version goes, the current one last.
                    (None, true) => {
                        z3_s3::delete_all_versions(self.store.as_ref(), key, retry)
                            .await
                            .map(drop)
                            .with_context(failed)
                    }
                    (None, false) => z3_s3::retry(retry, "delete", || self.store.delete(key))
                        .await
                        .with_context(failed),
                }
            })
            .buffer_unordered(DELETE_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        results.into_iter().collect::<Result<Vec<()>>>().map(drop)
    }
}

/// The facts prune needs per object: retention, storage class, age and seals.
fn facts(
    objects: &[(RemoteSnapshot, ObjectInfo)],
    seals: &BTreeMap<String, Vec<String>>,
) -> HashMap<String, ObjectFacts> {
    let secs = |t: Option<i64>| t.and_then(|t| u64::try_from(t).ok());
    objects
        .iter()
        .map(|(object, info)| {
            (
                object.name.clone(),
                ObjectFacts {
                    retain_until: secs(info.retain_until),
                    legal_hold: info.legal_hold,
                    storage_class: info.storage_class.clone(),
                    last_modified: secs(info.last_modified),
                    seal_keys: seals.get(&object.name).cloned().unwrap_or_default(),
                },
            )
        })
        .collect()
}

fn pruned(deletion: &Deletion, dry_run: bool) -> Pruned {
    let (name, what) = match &deletion.target {
        Target::Object(name) => (name.clone(), "object"),
        Target::Seal(name) => (name.clone(), "seal"),
        Target::Version(_) => (deletion.key.clone(), "version"),
    };
    Pruned {
        name,
        what: what.to_owned(),
        key: deletion.key.clone(),
        reason: deletion.reason.clone(),
        bytes: deletion.bytes,
        dry_run,
    }
}

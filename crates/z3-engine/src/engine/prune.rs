//! `z3 prune`: deletes the backups the retention policy no longer preserves, never one that a
//! kept backup needs, leaves first ([`z3_core::prune`]).
//!
//! The run holds the dataset's backup lock from before the listing to the last delete, so no
//! backup can build on an object while it is being deleted. Objects outside `SNAPSHOT_PREFIX`
//! are listed too (a manual snapshot's incremental may name a policy snapshot as its base) and
//! are always kept. Deletions run batch by batch; a batch that fails stops the run before the
//! next one, whose objects are bases of the failed batch's.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use jiff::Timestamp;
use z3_core::prune::{Batch, Deletion, ObjectFacts, PruneInput, Target, plan_prune};
use z3_core::retention::{Item, preserve, snapshot_time};
use z3_core::{DatasetName, RemoteIndex, RemoteSnapshot};
use z3_s3::ObjectInfo;

use super::Engine;
use crate::config::PruneOptions;
use crate::report::{Event, Events, NoteWriter, PruneReport, Pruned};

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
            &self.store,
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
        let layout = &self.settings.layout;
        let retry = &self.settings.retry;
        // Every object of the dataset, whatever its snapshot name: links are judged on all.
        let list_prefix = layout.list_prefix(dataset, "");
        let entries = z3_s3::list_with_retry(self.store.as_ref(), &list_prefix, retry)
            .await
            .with_context(|| format!("cannot list s3://{}/{list_prefix}", self.settings.bucket))?;
        let objects = crate::fleet::read_objects(&self.store, layout, entries, retry).await?;
        let seals = self.seal_keys(dataset).await?;
        let now = self.clock.unix_secs();
        let index = RemoteIndex::new(objects.iter().map(|(o, _)| o.clone()).collect());
        let mut input = PruneInput {
            now,
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
        };
        for (name, why) in &report.kept {
            events.event(Event::Kept {
                name: name.clone(),
                reason: why.clone(),
            })?;
        }
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
        let listed = z3_s3::list_with_retry(self.store.as_ref(), &prefix, &self.settings.retry)
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
        let retry = &self.settings.retry;
        let results = futures::stream::iter(deletions)
            .map(|deletion| async move {
                if deletion.version_id.is_some() {
                    return Err(anyhow!(
                        "{}: deleting a version needs a versioned listing, which this run did not make",
                        deletion.key
                    ));
                }
                z3_s3::retry(retry, "delete", || self.store.delete(&deletion.key))
                    .await
                    .with_context(|| {
                        format!("cannot delete s3://{}/{}", self.settings.bucket, deletion.key)
                    })
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

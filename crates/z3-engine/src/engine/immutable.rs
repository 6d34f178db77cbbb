//! `OBJECT_LOCK`: backups that stolen credentials cannot delete before the policy lets them go.
//!
//! Every backup object and its seal are written with an Object Lock retention (mode from the
//! setting) until [`keep_until`] of the snapshot's time and what it represents; `prune` extends
//! what the policy now keeps longer ([`lock_dates`], raised along the parents by
//! [`extend_to_children`] so a base never unlocks before a backup built on it). The lock record
//! is never given a retention (its old versions are removed by prune). Backups the policy keeps
//! forever (a `*` timeframe, a time z3 cannot know, objects outside `SNAPSHOT_PREFIX`) get a
//! rolling retention of [`FOREVER_HORIZON_DAYS`], renewed by prune once half of it has passed.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use jiff::Timestamp;
use z3_core::RemoteSnapshot;
use z3_core::retention::{StepReason, extend_to_children, keep_until, lock_dates};
use z3_s3::{ObjectInfo, Retention, RetentionMode};

use super::Engine;
use crate::UsageError;

/// How far ahead a backup the policy keeps forever is locked; prune renews it once half of
/// this has passed, so it never runs out while prune runs at least every half year.
pub(crate) const FOREVER_HORIZON_DAYS: i64 = 366;
/// The shortest retention z3 writes: S3 refuses a retain-until date in the past, and a backup
/// about to expire anyway still gets a day.
const MIN_LOCK_SECS: i64 = 86_400;
const DAY_SECS: i64 = 86_400;

/// The retention a lock date asks for at `now`: `(needed, written)`. An existing retention that
/// reaches `needed` is left alone; otherwise it becomes `written`. `None` is forever: a rolling
/// horizon, renewed at its half.
#[must_use]
pub(crate) fn lock_window(now: i64, date: Option<Timestamp>) -> (i64, i64) {
    match date {
        Some(date) => {
            let date = date.as_second();
            (date, date.max(now + MIN_LOCK_SECS))
        }
        None => (
            now + FOREVER_HORIZON_DAYS * DAY_SECS / 2,
            now + FOREVER_HORIZON_DAYS * DAY_SECS,
        ),
    }
}

impl Engine {
    /// The configured Object Lock mode, if any.
    pub(super) fn object_lock(&self) -> Option<RetentionMode> {
        self.settings
            .retention
            .as_ref()
            .and_then(|retention| retention.object_lock)
    }

    /// With `OBJECT_LOCK` set, checks that the bucket can keep retentions (Object Lock and
    /// versioning on): a usage error naming the bucket otherwise, before anything is written.
    pub(super) async fn check_object_lock_bucket(&self) -> Result<()> {
        let Some(mode) = self.object_lock() else {
            return Ok(());
        };
        let bucket = &self.settings.bucket;
        let config = z3_s3::retry(&self.settings.transfer.retry, "object_lock_config", || {
            self.store.object_lock_config()
        })
        .await
        .with_context(|| format!("cannot read the Object Lock configuration of s3://{bucket}"))?;
        if !config.supports_retention() {
            bail!(UsageError(format!(
                "OBJECT_LOCK={} needs a bucket with Object Lock and versioning on, and s3://{bucket} \
                 has Object Lock {} and versioning {:?}: create a bucket with Object Lock \
                 (e.g. aws s3api create-bucket --object-lock-enabled-for-bucket) or unset OBJECT_LOCK",
                mode.as_str().to_ascii_lowercase(),
                if config.object_lock { "on" } else { "off" },
                config.versioning,
            )));
        }
        Ok(())
    }

    /// The retention a new backup (and its seal) is written with: until the policy may still
    /// need it, as its step's time and represented timeframe say.
    pub(super) fn write_retention(&self, reason: &StepReason) -> Option<Retention> {
        let mode = self.object_lock()?;
        let retention = self.settings.retention.as_ref()?;
        let date = reason.time.and_then(|time| {
            keep_until(
                &retention.policy,
                &retention.calendar,
                time,
                reason.represents,
            )
        });
        let now = i64::try_from(self.clock.unix_secs()).unwrap_or(i64::MAX);
        let (_, retain_until) = lock_window(now, date);
        Some(Retention { mode, retain_until })
    }

    /// The lock date every object of `index` needs now (names `ds@snap`): the policy's for
    /// objects of the snapshot prefix with a time, forever for the others, each raised to its
    /// latest descendant.
    pub(super) fn needed_lock_dates(
        &self,
        index: &z3_core::RemoteIndex,
        times: &HashMap<String, Timestamp>,
        in_policy: impl Fn(&RemoteSnapshot) -> bool,
    ) -> HashMap<String, Option<Timestamp>> {
        let Some(retention) = self.settings.retention.as_ref() else {
            return HashMap::new();
        };
        let items: Vec<z3_core::retention::Item> = (index.as_slice().iter())
            .filter(|object| in_policy(object))
            .map(|object| z3_core::retention::Item {
                name: object.name.clone(),
                time: times.get(&object.name).copied(),
            })
            .collect();
        let mut dates: HashMap<String, Option<Timestamp>> =
            lock_dates(&retention.policy, &items, &retention.calendar)
                .into_iter()
                .collect();
        for object in index.as_slice() {
            dates.entry(object.name.clone()).or_insert(None);
        }
        extend_to_children(index, &mut dates);
        dates
    }

    /// After a backup locked until `until` was written on `parent`: makes `parent`, its seal and
    /// its own bases at least as long-lived, walking up the chain until a base already is (a
    /// base the policy's tree chose always is; one chosen otherwise, such as the previous
    /// snapshot of a step whose time is unknown, may not be). One HEAD per object and seal
    /// looked at.
    pub(super) async fn extend_bases(
        &self,
        parent: &z3_core::FullSnapshotName,
        until: i64,
    ) -> Result<()> {
        let layout = &self.settings.layout;
        let retry = &self.settings.transfer.retry;
        let mut name = parent.clone();
        // A chain is finite unless it loops; the health check refused loops before the upload.
        for _ in 0..100_000 {
            let key = layout.key(&name);
            let info = z3_s3::retry(retry, "head", || self.store.head(&key))
                .await
                .with_context(|| format!("cannot read s3://{}/{key}", self.settings.bucket))?;
            let meta = z3_core::ObjectMeta::from_map(&info.metadata);
            let seal_key = layout.seal_key(&name.to_string(), meta.upload.as_deref());
            match z3_s3::retry(retry, "head", || self.store.head(&seal_key)).await {
                Ok(seal) => {
                    self.extend_lock(&seal_key, &seal, (until, until)).await?;
                }
                Err(err) if err.kind() == z3_s3::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(err).with_context(|| {
                        format!("cannot read s3://{}/{seal_key}", self.settings.bucket)
                    });
                }
            }
            if !self.extend_lock(&key, &info, (until, until)).await? {
                return Ok(());
            }
            match meta.parent.as_deref().map(z3_core::FullSnapshotName::parse) {
                Some(Ok(next)) if !meta.is_full => name = next,
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    /// Makes the retention of `key`'s current (or, behind a delete marker, hidden) version
    /// reach `needed`, writing `retain_until` when it does not; `info` is what a HEAD of it
    /// said. Returns whether it wrote. A retention already later, or in compliance mode, is
    /// kept as it is ([`z3_s3::extend_retention`] never shortens).
    pub(super) async fn extend_lock(
        &self,
        key: &str,
        info: &ObjectInfo,
        (needed, retain_until): (i64, i64),
    ) -> Result<bool> {
        let Some(mode) = self.object_lock() else {
            return Ok(false);
        };
        let strong_enough = info.retention_mode.is_some_and(|m| m >= mode);
        if strong_enough && info.retain_until.is_some_and(|until| until >= needed) {
            return Ok(false);
        }
        let Some(version) = info.version_id.as_deref() else {
            bail!(
                "s3://{}/{key} has no version id: the bucket is not versioned",
                self.settings.bucket
            );
        };
        let wanted = Retention { mode, retain_until };
        z3_s3::extend_retention(
            self.store.as_ref(),
            key,
            version,
            wanted,
            &self.settings.transfer.retry,
        )
        .await
        .with_context(|| {
            format!(
                "cannot extend the Object Lock retention of s3://{}/{key}",
                self.settings.bucket
            )
        })?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_windows_never_reach_into_the_past_and_roll_for_forever() {
        let now = 1_800_000_000;
        let at = |secs: i64| Timestamp::from_second(secs).unwrap();
        assert_eq!(
            lock_window(now, Some(at(now + 10 * DAY_SECS))),
            (now + 10 * DAY_SECS, now + 10 * DAY_SECS)
        );
        assert_eq!(
            lock_window(now, Some(at(now - DAY_SECS))),
            (now - DAY_SECS, now + MIN_LOCK_SECS),
            "an expiring backup is written with a day, and needs nothing more"
        );
        assert_eq!(
            lock_window(now, None),
            (now + 183 * DAY_SECS, now + 366 * DAY_SECS)
        );
    }
}

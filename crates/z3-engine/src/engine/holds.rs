//! Holds on the local snapshots future backups will be based on: an auto-snapshot tool's
//! cleanup (`zfs destroy` of old snapshots) must not remove the base the next incremental
//! needs, or that backup would have to be a full.
//!
//! With a retention policy, after each backup z3 computes the bases future backups may use
//! ([`z3_core::retention::future_bases`]: the current yearly, monthly, … representatives, which
//! a snapshot tool keeping "the last 30 dailies" would destroy), holds those it does not hold
//! yet and releases its holds on the others. Without a policy it holds nothing (and releases
//! what a policy held): the next base is the newest snapshot, which snapshot tools keep, and a
//! hold would block `zfs rollback` and `zfs destroy -r` for nothing. The tag names z3 and the
//! bucket and prefix (`z3-<8 hex digits>`), so two z3 configurations backing up the same
//! dataset to different places keep their own holds. A hold or release that fails is a warning:
//! without the hold the next backup may be a full, never wrong.

use std::collections::{BTreeSet, HashMap};

use anyhow::Result;
use jiff::Timestamp;
use z3_core::retention::{Backup, future_bases, snapshot_time};
use z3_core::{BackupPlan, DatasetName, FullSnapshotName, LocalChain, RemoteIndex};

use super::Engine;
use crate::report::{Event, Events};

impl Engine {
    /// The hold tag of this bucket and prefix.
    pub(crate) fn hold_tag(&self) -> String {
        let place = format!("{}/{}", self.settings.bucket, self.settings.layout.prefix());
        let hash = blake3::hash(place.as_bytes());
        format!("z3-{}", &hash.to_hex()[..8])
    }

    /// Every known snapshot time, by full name: objects' (from their name format or `created`
    /// metadata) and local snapshots' (name format or `creation`).
    pub(super) fn snapshot_times(
        &self,
        remote: &RemoteIndex,
        local: &LocalChain,
    ) -> HashMap<String, Timestamp> {
        let retention = self.settings.retention.as_ref();
        let utc = z3_core::retention::Calendar::default();
        let zone = &retention.map_or(&utc, |r| &r.calendar).time_zone;
        let format = retention.and_then(|r| r.name_format.as_ref());
        let time = |name: &str, creation: Option<i64>| {
            let short = name.split_once('@').map_or(name, |(_, s)| s);
            snapshot_time(short, creation, format, zone).map(|(t, _)| t)
        };
        let mut times = HashMap::new();
        for object in remote.iter() {
            if let Some(t) = time(&object.name, object.meta.created) {
                times.insert(object.name.clone(), t);
            }
        }
        for entry in local.entries() {
            let name = entry.name().to_string();
            if let Some(t) = time(&name, entry.snapshot.creation) {
                times.insert(name, t);
            }
        }
        times
    }

    /// Holds the snapshots future backups will be based on and releases z3's other holds on
    /// `dataset`; `remote` and `local` as the backup saw them, `plan` what it uploaded, `times`
    /// from [`Engine::snapshot_times`].
    pub(super) async fn update_holds(
        &self,
        dataset: &DatasetName,
        remote: &RemoteIndex,
        local: &LocalChain,
        plan: &BackupPlan,
        times: &HashMap<String, Timestamp>,
        events: &mut dyn Events,
    ) -> Result<()> {
        let tag = self.hold_tag();
        let wanted = self.wanted_bases(remote, local, plan, times);
        let held: BTreeSet<FullSnapshotName> = match self.zfs.held_snapshots(dataset, &tag).await {
            Ok(held) => held.into_iter().collect(),
            Err(err) => {
                return warn(
                    events,
                    &format!("cannot list the snapshots z3 holds ({err})"),
                );
            }
        };
        for snapshot in wanted.difference(&held) {
            if let Err(err) = self.zfs.hold(snapshot, &tag).await {
                warn(
                    events,
                    &format!(
                        "cannot hold {snapshot} ({err}); the backup based on it may have to be a full"
                    ),
                )?;
            }
        }
        for snapshot in held.difference(&wanted) {
            if let Err(err) = self.zfs.release(snapshot, &tag).await {
                warn(
                    events,
                    &format!("cannot release z3's hold {tag} on {snapshot} ({err})"),
                )?;
            }
        }
        Ok(())
    }

    /// The local snapshots (backed up, same guid) that future backups may be based on.
    fn wanted_bases(
        &self,
        remote: &RemoteIndex,
        local: &LocalChain,
        plan: &BackupPlan,
        times: &HashMap<String, Timestamp>,
    ) -> BTreeSet<FullSnapshotName> {
        // Without a policy the base is the newest snapshot, which snapshot tools keep anyway;
        // holding it would block every `zfs rollback` and `zfs destroy -r` of the dataset for
        // nothing. Holds left from a policy are released.
        let Some(retention) = &self.settings.retention else {
            return BTreeSet::new();
        };
        let mut backups: Vec<Backup> = Vec::new();
        let mut push = |name: String, parent: Option<String>| {
            if let Some(&time) = times.get(&name) {
                backups.push(Backup { name, time, parent });
            }
        };
        for object in remote.iter() {
            let here = local
                .find(&object.name)
                .is_some_and(|e| object.meta.guid.is_none_or(|g| g == e.snapshot.guid));
            if here && remote.health(&object.name).is_some_and(|h| h.is_healthy()) {
                let parent = (!object.meta.is_full)
                    .then(|| object.meta.parent.clone())
                    .flatten();
                push(object.name.clone(), parent);
            }
        }
        for step in &plan.steps {
            push(
                step.snapshot.to_string(),
                step.parent().map(ToString::to_string),
            );
        }
        let names = future_bases(&retention.policy, &backups, &retention.calendar);
        names
            .iter()
            .filter_map(|name| local.find(name).map(|e| e.name().clone()))
            .collect()
    }
}

fn warn(events: &mut dyn Events, text: &str) -> Result<()> {
    events.event(Event::Note {
        text: format!("warning: {text}"),
    })?;
    Ok(())
}

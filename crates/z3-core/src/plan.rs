//! Deciding what to send and what to receive: backup and restore plans (docs/compatibility.md, "Backup and
//! restore plans").
//!
//! Plans are plain data computed from the local chain and the remote listing; executing them
//! (estimating, sending, compressing, uploading, receiving) is the caller's business. That keeps
//! every decision of the original — which snapshots, full or incremental, which parent, which
//! error — testable without ZFS or S3, and lets `--dry-run` show exactly what a real run does.
//!
//! Three of the original's bugs are fixed here (docs/compatibility.md, "Bugs of the original that
//! z3 fixes"):
//! - bug 2: an incremental run whose walk finds no backed-up ancestor (first run on an empty
//!   bucket) starts with a full backup instead of crashing;
//! - bug 3: restore stops at the first snapshot present locally, so a chain whose old links
//!   expired still restores onto a local base;
//! - bug 4: every walk is iterative.

use std::collections::HashSet;

use crate::health::{Health, Reason};
use crate::names::{DatasetName, FullSnapshotName, NameError, SnapshotName};
use crate::remote::RemoteIndex;
use crate::snapshot::{LocalChain, LocalSnapshot};

/// How one snapshot is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    /// A full stream (`zfs send ds@snap`), uploaded with `isfull=true`.
    Full,
    /// An incremental stream (`zfs send -i parent ds@snap`), uploaded with `parent=<parent>`.
    Incremental {
        /// The base snapshot, already in the bucket or uploaded by an earlier step.
        parent: FullSnapshotName,
    },
}

/// What an upload does to its key, decided by the plan from the listing (never by the upload).
///
/// This is how a backup keeps every snapshot that was restorable before it ran restorable:
/// it creates objects under free keys, replaces an object only with another backup of the very
/// same snapshot (same guid: everything built on it needs only the snapshot's content, which
/// is unchanged), and replaces a backup of another snapshot only when told to and nothing in the
/// bucket builds on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// The key is free in the listing. The upload completes only if it still is
    /// (`If-None-Match: *` where the server supports it).
    Create,
    /// The key holds a backup of this same snapshot (same guid), e.g. `--full` to start a new
    /// chain. Its dependents stay restorable: they need the snapshot's content, not the bytes.
    ReplaceSame,
    /// `--overwrite-other-snapshot`: the key holds a backup of another snapshot of the same name
    /// (`guid` differs) or of an unknown one (the original z3's objects record no guid), and no
    /// object in the bucket builds on it. That backup is lost; nothing else is.
    ReplaceOther {
        /// The guid the replaced object records, if any.
        guid: Option<u64>,
    },
}

/// One upload of a backup plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupStep {
    /// The snapshot to send.
    pub snapshot: FullSnapshotName,
    /// Full or incremental, and from which base.
    pub kind: StepKind,
    /// What the upload does to the snapshot's key.
    pub write: WriteMode,
}

impl BackupStep {
    /// The base of an incremental step, `None` for a full one.
    #[must_use]
    pub fn parent(&self) -> Option<&FullSnapshotName> {
        match &self.kind {
            StepKind::Full => None,
            StepKind::Incremental { parent } => Some(parent),
        }
    }
}

/// The uploads that bring the bucket up to a target snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupPlan {
    /// Oldest first; each step's base is in the bucket before the step runs. Empty when the
    /// target is already backed up and healthy.
    pub steps: Vec<BackupStep>,
}

/// Input of [`plan_backup`].
#[derive(Debug, Clone, Copy)]
pub struct BackupRequest<'a> {
    /// The dataset to back up (`--filesystem`).
    pub dataset: &'a DatasetName,
    /// `SNAPSHOT_PREFIX`, used in error messages; `local` is already filtered by it.
    pub snapshot_prefix: &'a str,
    /// Matching local snapshots of `dataset`.
    pub local: &'a LocalChain,
    /// The listing of `dataset@snapshot_prefix` in the bucket.
    pub remote: &'a RemoteIndex,
    /// `--snapshot`, the part after `@`; `None` means the latest matching local snapshot.
    pub target: Option<&'a SnapshotName>,
    /// `--full`: send the target as one full stream, whatever the bucket holds.
    pub full: bool,
    /// `--overwrite-other-snapshot`: a `--full` may replace an object made from another (or an
    /// unknown) snapshot of the target's name, provided nothing in the bucket builds on it.
    pub overwrite_other: bool,
}

/// One download of a restore plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreStep {
    /// The snapshot to receive (`zfs recv ds@snap`).
    pub snapshot: FullSnapshotName,
    /// The object to download.
    pub key: String,
    /// Whether the object holds a full stream.
    pub is_full: bool,
    /// The object's own compressor: restore decompresses by metadata, not by configuration, so
    /// chains with mixed compressors restore correctly.
    pub compressor: Option<String>,
    /// The object's own encryption (`age`), from its metadata.
    pub encryption: Option<String>,
    /// The object's real length, for progress display.
    pub object_size: u64,
    /// The object's ETag as listed: every ranged GET of the restore is pinned to it, so the
    /// bytes received are those of the object whose seal and chain were checked.
    pub etag: Option<String>,
}

/// The downloads that bring the local dataset up to a target snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestorePlan {
    /// Oldest first: a full stream, or an incremental onto a snapshot present locally, then
    /// incrementals each based on the previous step. Empty when the target is already local.
    pub steps: Vec<RestoreStep>,
    /// The local snapshot the first step applies on, when it is an incremental (named in the
    /// request's dataset); `None` when the first step is a full.
    pub base: Option<String>,
}

/// The local snapshots a `zfs receive -F` of an incremental onto `base` would destroy: every
/// snapshot of `local` (all of the destination's snapshots, not only those matching the
/// prefix) created after `base` (by `createtxg`), oldest first. `base` is matched by its part
/// after `@`; unknown, it gives none.
///
/// OpenZFS's `receive -F` rolls the destination back to the stream's base and destroys the
/// snapshots after it; without `-F` the receive fails once those exist. Either way a restore
/// onto an older base of a tree (a monthly under newer dailies) must say so before it starts.
#[must_use]
pub fn newer_than_base<'a>(base: &str, local: &'a [LocalSnapshot]) -> Vec<&'a LocalSnapshot> {
    let short = base.split_once('@').map_or(base, |(_, snapshot)| snapshot);
    let Some(base_txg) = local
        .iter()
        .find(|s| s.name.snapshot().as_str() == short)
        .map(|s| s.createtxg)
    else {
        return Vec::new();
    };
    let mut newer: Vec<_> = local.iter().filter(|s| s.createtxg > base_txg).collect();
    newer.sort_by_key(|s| s.createtxg);
    newer
}

/// Input of [`plan_restore`].
#[derive(Debug, Clone, Copy)]
pub struct RestoreRequest<'a> {
    /// The dataset to restore into (`--filesystem`).
    pub dataset: &'a DatasetName,
    /// Matching local snapshots of `dataset`.
    pub local: &'a LocalChain,
    /// The listing of `dataset@snapshot_prefix` in the bucket.
    pub remote: &'a RemoteIndex,
    /// The snapshot to restore, the part after `@`.
    pub target: &'a SnapshotName,
}

/// Why no plan could be made.
///
/// The first and the last two messages are the original's exact texts (docs/compatibility.md,
/// "Backup and restore plans"), which is why they break the house rule of lowercase messages
/// without a trailing period: scripts written against z3 match on them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// No local snapshot matches the snapshot prefix. The original treats this as a soft error
    /// (message on stderr, exit code 0).
    #[error(
        "Nothing to backup for filesystem \"{dataset}\". Are you sure SNAPSHOT_PREFIX=\"{snapshot_prefix}\" is correct?"
    )]
    NothingToBackup {
        /// The dataset.
        dataset: String,
        /// The snapshot prefix.
        snapshot_prefix: String,
    },
    /// The named `--snapshot` is not among the matching local snapshots.
    #[error(
        "local snapshot {name} not found (or its name does not start with SNAPSHOT_PREFIX \"{snapshot_prefix}\")"
    )]
    SnapshotNotFound {
        /// The full name looked for.
        name: String,
        /// The snapshot prefix.
        snapshot_prefix: String,
    },
    /// The restore target is not in the listing.
    #[error("no such snapshot \"{name}\" in the backup")]
    NoSuchRemoteSnapshot {
        /// The full name looked for.
        name: String,
    },
    /// An object the plan needs cannot be restored from the listing.
    #[error("Broken snapshot detected {name}, reason: '{reason}'")]
    Broken {
        /// The full name of the broken object: for backup the first object found on the walk,
        /// for restore the target.
        name: String,
        /// Why it is broken.
        reason: Reason,
    },
    /// The bucket's object of a snapshot was made from another snapshot of the same name: its
    /// recorded `guid` differs from the local snapshot's (destroyed and re-created). Nothing is
    /// built on it: an incremental from it would not apply on restore.
    #[error(
        "{name}: the object in the bucket was made from a snapshot with guid {bucket}, but the local snapshot of that name has guid {local} (destroyed and re-created?); {advice}"
    )]
    GuidMismatch {
        /// The snapshot's full name.
        name: String,
        /// The guid recorded in the bucket.
        bucket: u64,
        /// The local snapshot's guid.
        local: u64,
        /// What to do about it.
        advice: String,
    },
    /// A `--full` backup would overwrite the bucket's object of another snapshot of the same
    /// name (another guid), or of a snapshot z3 cannot identify (no guid: the original z3's),
    /// and `--overwrite-other-snapshot` was not given.
    #[error(
        "refusing to overwrite {name} in the bucket: it was made from {made_from}, not from the local snapshot {name} (guid {local}); {advice}"
    )]
    WouldOverwrite {
        /// The snapshot's full name.
        name: String,
        /// What the object was made from, for the message.
        made_from: String,
        /// The guid recorded in the bucket, if any.
        bucket: Option<u64>,
        /// The local snapshot's guid.
        local: u64,
        /// What to do about it.
        advice: String,
    },
    /// A `--full` backup would overwrite the bucket's object of another (or an unknown)
    /// snapshot that other objects build on: they would become unrestorable. Never done.
    #[error(
        "refusing to overwrite {name} in the bucket: it was made from {made_from}, not from the local snapshot {name} (guid {local}), and {count} backup(s) build on it ({shown}), which would become unrestorable; {advice}",
        count = dependents.len(),
        shown = shown_names(dependents)
    )]
    WouldOrphan {
        /// The snapshot's full name.
        name: String,
        /// What the object was made from, for the message.
        made_from: String,
        /// The local snapshot's guid.
        local: u64,
        /// The objects whose `parent` names it.
        dependents: Vec<String>,
        /// What to do about it.
        advice: String,
    },
    /// A link of the restore chain is broken: an incremental records a base guid other than
    /// the guid of the object its `parent` names (that object was replaced after it was made).
    #[error(
        "Broken snapshot detected {name}, reason: 'parent replaced': {child} was made on {parent} with guid {recorded}, but the object {parent} in the bucket holds guid {found}"
    )]
    BrokenLink {
        /// The restore target.
        name: String,
        /// The incremental whose base was replaced.
        child: String,
        /// Its base, as its `parent` names it.
        parent: String,
        /// The base guid the incremental records.
        recorded: u64,
        /// The guid the base object records.
        found: u64,
    },
    /// An object on the restore chain has a name that is not a valid ZFS snapshot name, so it
    /// cannot be received. z3 never writes such objects; something else put them there.
    #[error("object \"{name}\" in the backup does not have a valid snapshot name")]
    InvalidRemoteName {
        /// The object's name (key minus prefix).
        name: String,
        /// Which rule it breaks.
        #[source]
        source: NameError,
    },
}

impl PlanError {
    /// Whether the error means the backup itself is damaged ([`PlanError::Broken`],
    /// [`PlanError::InvalidRemoteName`]), as opposed to a request that cannot be satisfied.
    /// The original exits with a traceback for these (`IntegrityError`).
    #[must_use]
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            Self::Broken { .. }
                | Self::InvalidRemoteName { .. }
                | Self::GuidMismatch { .. }
                | Self::WouldOverwrite { .. }
                | Self::WouldOrphan { .. }
                | Self::BrokenLink { .. }
        )
    }
}

/// Up to three names, then how many more.
fn shown_names(names: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text = format!("{text} and {} more", names.len() - SHOWN);
    }
    text
}

/// A name for a re-created snapshot that neither the local chain nor the bucket uses:
/// `<snapshot>-2`, `-3`, … It keeps the snapshot's name as a prefix, so it still matches
/// `SNAPSHOT_PREFIX`.
fn free_name(name: &FullSnapshotName, local: &LocalChain, remote: &RemoteIndex) -> String {
    // Each candidate is taken by at most one name of `local` or `remote`, so one of the first
    // `len + 1` is free.
    (2..=local.len() + remote.len() + 2)
        .map(|n| format!("{name}-{n}"))
        .find(|candidate| local.position(candidate).is_none() && remote.get(candidate).is_none())
        .unwrap_or_else(|| format!("{name}-new"))
}

/// The advice of every refusal to build on or overwrite the bucket's object of another
/// snapshot of the same name: it works as written, and the old chain stays restorable.
fn rename_advice(name: &FullSnapshotName, local: &LocalChain, remote: &RemoteIndex) -> String {
    format!(
        "the backup in the bucket and everything built on it stay restorable; give the local snapshot a new name \
         (`zfs rename {name} {}`) and back up again",
        free_name(name, local, remote)
    )
}

/// Plans a backup (docs/compatibility.md, "Backup and restore plans", with the fix of bug 2).
///
/// The target is `req.target` or the latest matching local snapshot. With `req.full` the plan
/// is a single full step of the target. Otherwise the walk goes back from the target along the
/// local chain: a snapshot already in the bucket ends the walk if healthy and fails it if
/// broken; others are queued. Queued snapshots are sent oldest first, each as an incremental
/// from its local parent; the oldest is sent full when it has no local parent, i.e. when no
/// ancestor is backed up (the original crashed there, issues #26 and #35).
///
/// Like the original, only the first object found is health-checked, and an object's `parent`
/// metadata is not compared with the local parent.
///
/// # Errors
/// - [`PlanError::NothingToBackup`] when no local snapshot matches and no target is named;
/// - [`PlanError::SnapshotNotFound`] when the named target is not a matching local snapshot;
/// - [`PlanError::Broken`] when the walk meets a broken object; nothing should be uploaded then.
pub fn plan_backup(req: &BackupRequest<'_>) -> Result<BackupPlan, PlanError> {
    let entries = req.local.entries();
    let target = match req.target {
        Some(snapshot) => {
            let name = format!("{}@{snapshot}", req.dataset);
            req.local
                .position(&name)
                .ok_or_else(|| PlanError::SnapshotNotFound {
                    name,
                    snapshot_prefix: req.snapshot_prefix.to_owned(),
                })?
        }
        None => entries
            .len()
            .checked_sub(1)
            .ok_or_else(|| PlanError::NothingToBackup {
                dataset: req.dataset.to_string(),
                snapshot_prefix: req.snapshot_prefix.to_owned(),
            })?,
    };

    if req.full {
        let snapshot = &entries[target].snapshot;
        return Ok(BackupPlan {
            steps: vec![BackupStep {
                snapshot: snapshot.name.clone(),
                kind: StepKind::Full,
                write: full_write_mode(req, &snapshot.name, snapshot.guid)?,
            }],
        });
    }

    // Each entry's parent is the entry before it, so the walk is a walk down the indices.
    let mut first_queued = target + 1;
    for i in (0..=target).rev() {
        let name = entries[i].snapshot.name.to_string();
        if let Some(object) = req.remote.get(&name) {
            let local = entries[i].snapshot.guid;
            if let Some(bucket) = object.meta.guid.filter(|&g| g != local) {
                return Err(PlanError::GuidMismatch {
                    advice: format!(
                        "z3 will neither build on it nor overwrite it: {}",
                        rename_advice(&entries[i].snapshot.name, req.local, req.remote)
                    ),
                    name,
                    bucket,
                    local,
                });
            }
            if let Some(Health::Broken(reason)) = req.remote.health(&name) {
                return Err(PlanError::Broken {
                    name,
                    reason: *reason,
                });
            }
            break;
        }
        first_queued = i;
    }

    // The walk stopped at the first snapshot in the bucket, so every queued key is free.
    let steps = entries[first_queued..=target]
        .iter()
        .map(|entry| BackupStep {
            snapshot: entry.snapshot.name.clone(),
            kind: match &entry.parent {
                Some(parent) => StepKind::Incremental {
                    parent: parent.clone(),
                },
                None => StepKind::Full,
            },
            write: WriteMode::Create,
        })
        .collect();
    Ok(BackupPlan { steps })
}

/// What a `--full` backup of `name` (local guid `local`) may do to its key.
///
/// A free key is created; a backup of the same snapshot (same guid) is replaced. A backup of
/// another snapshot, or of an unknown one (no guid), is refused, unless `--overwrite-other-snapshot`
/// was given and no object in the bucket builds on it; with dependents it is always refused.
fn full_write_mode(
    req: &BackupRequest<'_>,
    name: &FullSnapshotName,
    local: u64,
) -> Result<WriteMode, PlanError> {
    let text = name.to_string();
    let Some(object) = req.remote.get(&text) else {
        return Ok(WriteMode::Create);
    };
    let bucket = object.meta.guid;
    if bucket == Some(local) {
        return Ok(WriteMode::ReplaceSame);
    }
    let made_from = match bucket {
        Some(guid) => format!("another snapshot of that name (guid {guid})"),
        None => "a snapshot z3 cannot identify (no guid recorded: written by the original z3?)"
            .to_owned(),
    };
    let dependents: Vec<String> = req
        .remote
        .iter()
        .filter(|o| o.name != text && o.meta.parent.as_deref() == Some(text.as_str()))
        .map(|o| o.name.clone())
        .collect();
    if !dependents.is_empty() {
        return Err(PlanError::WouldOrphan {
            name: text,
            made_from,
            local,
            dependents,
            advice: rename_advice(name, req.local, req.remote),
        });
    }
    if req.overwrite_other {
        return Ok(WriteMode::ReplaceOther { guid: bucket });
    }
    Err(PlanError::WouldOverwrite {
        advice: format!(
            "{}; or, to replace that backup (it is lost), add --overwrite-other-snapshot",
            rename_advice(name, req.local, req.remote)
        ),
        name: text,
        made_from,
        bucket,
        local,
    })
}

/// Plans a restore (docs/compatibility.md, "Backup and restore plans", with the fix of bug 3).
///
/// The walk goes from the target along the objects' `parent` metadata, queueing each object,
/// and stops after a full object or when the next parent is present locally (the base). So a
/// chain whose base exists locally restores even when older links, the full, or the base's own
/// object have expired from the bucket; the original demanded an unbroken chain to a full.
///
/// # Errors
/// - [`PlanError::NoSuchRemoteSnapshot`] when the target is not in the listing;
/// - [`PlanError::Broken`] naming the target, with the target's health reason, when the walk
///   reaches a parent outside the listing or a cycle before any base;
/// - [`PlanError::InvalidRemoteName`] when an object to receive has an invalid snapshot name.
pub fn plan_restore(req: &RestoreRequest<'_>) -> Result<RestorePlan, PlanError> {
    let target_name = format!("{}@{}", req.dataset, req.target);
    let Some(mut current) = req.remote.get(&target_name) else {
        return Err(PlanError::NoSuchRemoteSnapshot { name: target_name });
    };
    let broken = |walk_reason: Reason| {
        // The walk failing means the target cannot reach a full; the health map says why in the
        // original's words. `walk_reason` only covers a (theoretical) disagreement.
        let reason = req
            .remote
            .health(&target_name)
            .and_then(|h| h.reason())
            .unwrap_or(walk_reason);
        PlanError::Broken {
            name: target_name.clone(),
            reason,
        }
    };

    let local_guid = |name: &str| {
        req.local
            .position(name)
            .map(|i| req.local.entries()[i].snapshot.guid)
    };
    let mismatch = |name: &str, bucket: u64, local: u64| PlanError::GuidMismatch {
        name: name.to_owned(),
        bucket,
        local,
        advice: "restore into another dataset, or destroy the local snapshot first".to_owned(),
    };
    if let Some(local) = local_guid(&target_name) {
        if let Some(bucket) = current.meta.guid.filter(|&g| g != local) {
            return Err(mismatch(&target_name, bucket, local));
        }
        return Ok(RestorePlan::default());
    }
    let mut queue = Vec::new();
    let mut visited: HashSet<&str> = HashSet::new();
    let mut base = None;
    loop {
        visited.insert(&current.name);
        queue.push(current);
        if current.meta.is_full {
            break;
        }
        let Some(parent_name) = current.meta.parent.as_deref() else {
            return Err(broken(Reason::MissingParent));
        };
        // Checked before the listing, so a local base restores even after its own object
        // expired from the bucket.
        if let Some(local) = local_guid(parent_name) {
            if let Some(bucket) = current.meta.parent_guid.filter(|&g| g != local) {
                return Err(mismatch(parent_name, bucket, local));
            }
            base = Some(parent_name.to_owned());
            break;
        }
        let Some(parent) = req.remote.get(parent_name) else {
            return Err(broken(Reason::MissingParent));
        };
        if visited.contains(parent.name.as_str()) {
            return Err(broken(Reason::CycleDetected));
        }
        if let Some((recorded, found)) = current.replaced_base(parent) {
            return Err(PlanError::BrokenLink {
                name: target_name.clone(),
                child: current.name.clone(),
                parent: parent.name.clone(),
                recorded,
                found,
            });
        }
        current = parent;
    }

    let steps = queue
        .into_iter()
        .rev()
        .map(|object| {
            let snapshot = FullSnapshotName::parse(&object.name).map_err(|source| {
                PlanError::InvalidRemoteName {
                    name: object.name.clone(),
                    source,
                }
            })?;
            Ok(RestoreStep {
                snapshot,
                key: object.key.clone(),
                is_full: object.meta.is_full,
                compressor: object.meta.compressor.clone(),
                encryption: object.meta.encryption.clone(),
                object_size: object.object_size,
                etag: object.etag.clone(),
            })
        })
        .collect::<Result<_, PlanError>>()?;
    Ok(RestorePlan { steps, base })
}

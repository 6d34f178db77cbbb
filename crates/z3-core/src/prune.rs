//! What `z3 prune` deletes, in which order, and what it keeps and why (issue 14, point 4).
//!
//! [`plan_prune`] is pure: the caller lists the bucket, asks the retention policy which objects
//! it preserves, reads each object's Object Lock retention, storage class and age, and hands
//! over those facts together with `now` (Unix seconds); the plan comes back as data. A
//! `--dry-run` prints the very plan a real run executes.
//!
//! # Links
//!
//! An incremental *needs* its base: the object its `parent` metadata names, provided the guids
//! agree where both are recorded. An incremental whose base was replaced by a backup of another
//! snapshot of that name ([`RemoteSnapshot::replaced_base`]) does not apply on top of what the
//! bucket holds, so it needs nothing there; it is already unrestorable (`parent replaced`). A
//! full needs nothing. These are exactly the links [`health::check`](crate::health::check)
//! follows.
//!
//! # Invariants
//!
//! 1. **What is kept is closed under "needs".** Every object kept for a reason of its own
//!    (preserved by the policy, under Object Lock retention or legal hold, being written, of
//!    unknown time, without gathered facts, on or leading into a cycle of `parent` links, or
//!    too young for its storage class's minimum storage duration) keeps every object it needs,
//!    transitively, with the reason "base of X". So after the whole plan ran, every object that
//!    remains and was restorable before is still restorable; only objects the policy expired,
//!    and nothing any remaining object needs, are gone. A chain with a missing link keeps the
//!    links that exist.
//! 2. **Nothing is deleted without proof that nothing needs it.** An object the plan cannot
//!    judge is kept and reported: no facts gathered, a cycle, a time the policy cannot know (the
//!    original z3's objects), retention in force.
//! 3. **Leaves first, at batch granularity.** Deletions come in [`Batch`]es of at most
//!    [`DELETE_BATCH_LIMIT`] keys (one S3 `DeleteObjects` request each), executed one after
//!    the other; inside a batch the server deletes in any order, and a crash may stop it after
//!    any subset. An object's batch comes strictly after the batches of every deleted object
//!    that needs it (its *height* among the deleted objects: 0 for a deleted leaf, one more than
//!    its highest deleted child otherwise), so whatever prefix of batches ran, and whatever part
//!    of the next one, **every object still in the bucket has every link it had**: restorable
//!    before means restorable after, even for objects the plan would have deleted later. A rerun
//!    (or a policy that changed its mind in between) finds no half-cut chain.
//! 4. **An object goes before its seal.** The seals of an object are deleted in the batch after
//!    the object's. The other order would be unsafe: an object whose seal is gone looks
//!    unsealed, and restore refuses it (docs/reliability.md), while a seal whose object is
//!    gone is harmless garbage that nothing reads (a crashed backup leaves the same). Since the
//!    order inside a batch is the server's, "same batch, listed after" would not be enough.
//! 5. **Noncurrent versions** (versioned buckets) are removed only where that is provably
//!    harmless: old lock records, noncurrent delete markers of seals, and data versions of seals
//!    that no kept object names. A version under retention is never deleted; data versions of
//!    backup objects are never touched here, and neither is the newest data version of a kept
//!    object's seal (hidden behind a delete marker, it is what restore reads). While a kept
//!    object has no facts (so its seal keys are unknown), no seal data version goes. Objects
//!    hidden behind a delete marker must be in the listing (z3 lists versions when Object Lock
//!    is on), or their seals look unneeded. Version deletions come after every object and seal
//!    deletion.
//!
//! The cost of invariant 3: the number of batches is the longest chain of deleted objects (plus
//! one for the last seals), whatever the batch limit. A policy-shaped tree is a few levels deep;
//! a linear chain of N deleted links takes N requests of one key each.
//!
//! Everything is iterative and at most `O(n log n)`: a 100,000-link chain plans in milliseconds
//! and no recursion depth depends on the chain's length.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use crate::humanize::utc;
use crate::remote::{RemoteIndex, RemoteSnapshot};

/// The most keys one S3 `DeleteObjects` request may name.
pub const DELETE_BATCH_LIMIT: usize = 1000;

/// Seconds in a day, the unit of minimum storage durations.
const DAY: u64 = 86_400;

/// Bytes in a GiB, the unit of early-deletion charges.
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The delete reason of an object the policy did not preserve and gave no reason for.
pub const NOT_PRESERVED: &str = "not preserved by policy";

/// The minimum storage duration of an S3 storage class, in days: deleting an object earlier is
/// charged as if it had been stored that long.
///
/// `STANDARD` (also an absent class), `INTELLIGENT_TIERING`, `REDUCED_REDUNDANCY`,
/// `EXPRESS_ONEZONE` and classes z3 does not know: 0. `STANDARD_IA` and `ONEZONE_IA`: 30.
/// `GLACIER_IR` and `GLACIER` (Flexible Retrieval): 90. `DEEP_ARCHIVE`: 180. An unknown class
/// costs nothing here: the charge is money, never a backup's safety.
#[must_use]
pub fn min_storage_days(storage_class: &str) -> u64 {
    match storage_class {
        "STANDARD_IA" | "ONEZONE_IA" => 30,
        "GLACIER_IR" | "GLACIER" => 90,
        "DEEP_ARCHIVE" => 180,
        _ => 0,
    }
}

/// What the caller gathered about one object (from the listing, a `HEAD`, and the seal
/// listing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectFacts {
    /// Object Lock retention date (Unix seconds), if any; the object cannot be deleted before.
    pub retain_until: Option<u64>,
    /// Whether an Object Lock legal hold is on.
    pub legal_hold: bool,
    /// The storage class as S3 reports it; `None` means `STANDARD`.
    pub storage_class: Option<String>,
    /// `Last-Modified` (Unix seconds); `None` counts as "just written" for the minimum storage
    /// duration.
    pub last_modified: Option<u64>,
    /// The keys of the object's seals: the one its upload token names and any stale ones of
    /// earlier uploads of the same snapshot. Deleted with the object, after it.
    pub seal_keys: Vec<String>,
}

/// What a key in a version listing is, as the caller classified it with its key layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum VersionKind {
    /// A backup lock record (`<prefix>.z3-locks/<dataset>`).
    Lock,
    /// A seal (`<prefix>.z3-seals/…`).
    Seal,
    /// A backup object, or anything else: its versions are never deleted by prune.
    Other,
}

/// One version of a key in a versioned bucket (`ListObjectVersions`). Each key's versions must
/// come newest first, as S3 lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    /// The key.
    pub key: String,
    /// The version id.
    pub version_id: String,
    /// Whether this is the current version (never deleted by prune).
    pub is_latest: bool,
    /// Whether this version is a delete marker.
    pub is_delete_marker: bool,
    /// Object Lock retention date of this version (Unix seconds), if any.
    pub retain_until: Option<u64>,
    /// What the key is.
    pub kind: VersionKind,
}

/// Everything [`plan_prune`] needs besides the listing. Names are `ds@snap`, as in
/// [`RemoteSnapshot::name`].
#[derive(Debug, Clone, Default)]
pub struct PruneInput {
    /// The objects the retention policy preserves, each with the policy's reason.
    pub preserved: BTreeMap<String, String>,
    /// Why the policy did not preserve an object (e.g. `no interval`), where it says; others
    /// are deleted with [`NOT_PRESERVED`].
    pub expire_reasons: BTreeMap<String, String>,
    /// Objects whose time the policy cannot know (the original z3's, without a name format):
    /// never pruned.
    pub time_unknown: BTreeSet<String>,
    /// Objects being written (or about to be built on) by a run holding a live lock: never
    /// pruned. A base an in-progress upload will name belongs here too when its object is not
    /// listed yet.
    pub in_progress: BTreeSet<String>,
    /// Facts per object; an object without an entry is kept ([`KeepReason::NoFacts`]).
    pub facts: HashMap<String, ObjectFacts>,
    /// The bucket's object versions, when it is versioned; empty otherwise.
    pub versions: Vec<ObjectVersion>,
    /// The current time, Unix seconds.
    pub now: u64,
    /// Delete objects younger than their storage class's minimum storage duration anyway (the
    /// charge is in [`Deletion::early_delete_gib_days`]).
    pub allow_early_delete: bool,
}

/// Why an object stays.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum KeepReason {
    /// The policy preserves it, for this reason.
    Preserved(String),
    /// A kept object needs it, transitively: the one named here.
    BaseOf(String),
    /// Object Lock retention is in force until then (Unix seconds).
    LockedUntil(u64),
    /// An Object Lock legal hold is on.
    LegalHold,
    /// Being written by a run that holds the lock.
    InProgress,
    /// The policy cannot tell its time (the original z3's objects): never pruned.
    TimeUnknown,
    /// The caller gathered no facts about it (retention unknown).
    NoFacts,
    /// On, or leading into, a cycle of `parent` links: the metadata is corrupt, nothing is
    /// provable.
    InCycle,
    /// The newest data version of a seal a kept object names (behind a delete marker, it is
    /// the seal restore reads).
    SealOfKept,
    /// A seal version, while some kept object's seals are unknown (it has no facts).
    SealsUnknown,
    /// Younger than its storage class's minimum storage duration.
    TooYoung {
        /// The storage class.
        storage_class: String,
        /// Seconds until the minimum storage duration is over.
        remaining_secs: u64,
        /// What deleting it now would be charged: size in GiB × remaining days.
        gib_days: f64,
    },
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Preserved(reason) => write!(f, "preserved: {reason}"),
            Self::BaseOf(name) => write!(f, "base of {name}"),
            Self::LockedUntil(until) => write!(f, "locked until {}", utc(*until)),
            Self::LegalHold => f.write_str("under legal hold"),
            Self::InProgress => f.write_str("being written"),
            Self::TimeUnknown => f.write_str("time unknown: never pruned"),
            Self::NoFacts => f.write_str("retention and age unknown"),
            Self::InCycle => f.write_str("in a cycle of parent links"),
            Self::SealOfKept => f.write_str("seal of a kept object"),
            Self::SealsUnknown => f.write_str("a kept object's seals are unknown"),
            Self::TooYoung {
                storage_class,
                remaining_secs,
                gib_days,
            } => write!(
                f,
                "too young for {storage_class} ({:.1} days left): deleting now would cost {gib_days:.2} GiB-days",
                *remaining_secs as f64 / DAY as f64
            ),
        }
    }
}

/// What a deleted key is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Target {
    /// The backup object of this snapshot (`ds@snap`).
    Object(String),
    /// A seal of the object of this snapshot.
    Seal(String),
    /// A noncurrent version.
    Version(VersionKind),
}

/// One key (or key version) to delete.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Deletion {
    /// The S3 key.
    pub key: String,
    /// The version to delete, for noncurrent versions; `None` deletes the key.
    pub version_id: Option<String>,
    /// What the key is.
    pub target: Target,
    /// Why it goes, for the operator.
    pub reason: String,
    /// Bytes freed (objects only; 0 for seals and versions, whose size is not listed here).
    pub bytes: u64,
    /// The early-deletion charge, in GiB-days (0 unless deleted before its storage class's
    /// minimum storage duration, which only `allow_early_delete` does).
    pub early_delete_gib_days: f64,
}

/// Keys deleted by one request; their order inside the batch does not matter.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Batch {
    /// At most [`DELETE_BATCH_LIMIT`] deletions.
    pub deletions: Vec<Deletion>,
}

/// A noncurrent version kept, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KeptVersion {
    /// The key.
    pub key: String,
    /// The version id.
    pub version_id: String,
    /// Why it stays.
    pub reason: KeepReason,
}

/// Sums over a plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct PruneTotals {
    /// Backup objects deleted.
    pub objects: usize,
    /// Seals deleted.
    pub seals: usize,
    /// Noncurrent versions deleted.
    pub versions: usize,
    /// Bytes of the deleted objects.
    pub bytes_freed: u64,
    /// Early-deletion charge of the deleted objects, GiB-days.
    pub early_delete_gib_days: f64,
    /// Backup objects kept.
    pub kept: usize,
}

/// The decisions of one prune.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PrunePlan {
    /// Deletion requests, to run one after the other, in this order.
    pub delete: Vec<Batch>,
    /// Every object of the listing that stays, sorted by name, with its reason.
    pub keep: Vec<(String, KeepReason)>,
    /// Noncurrent versions that stay, for the reasons prune judges (locks and seals only).
    pub keep_versions: Vec<KeptVersion>,
    /// Sums.
    pub totals: PruneTotals,
}

impl PrunePlan {
    /// Every deletion, in execution order.
    pub fn deletions(&self) -> impl Iterator<Item = &Deletion> {
        self.delete.iter().flat_map(|b| b.deletions.iter())
    }
}

/// Plans a prune of `index` (see the module documentation for the rules and the order).
#[must_use]
pub fn plan_prune(index: &RemoteIndex, input: &PruneInput) -> PrunePlan {
    plan_with_limit(index, input, DELETE_BATCH_LIMIT)
}

/// The valid base of each object, as an index into `objects` (see "Links").
fn links(objects: &[RemoteSnapshot], by_name: &HashMap<&str, usize>) -> Vec<Option<usize>> {
    objects
        .iter()
        .map(|o| {
            if o.meta.is_full {
                return None;
            }
            let parent = *by_name.get(o.meta.parent.as_deref()?)?;
            o.replaced_base(&objects[parent])
                .is_none()
                .then_some(parent)
        })
        .collect()
}

/// Depth of each object below the first link without a base (`Some`), or `None` for objects on
/// or leading into a cycle. Iterative, memoised: `O(n)`.
fn depths(parent: &[Option<usize>]) -> Vec<Option<usize>> {
    #[derive(Clone, Copy)]
    enum State {
        Unvisited,
        OnPath,
        Done(Option<usize>),
    }
    /// How a walk up the links ended.
    enum Stop {
        /// At a node without a base: the last node of the path has depth 0.
        Root,
        /// Below a node of known depth.
        Below(usize),
        /// In a cycle, or below a node on or leading into one.
        Cycle,
    }
    let mut state = vec![State::Unvisited; parent.len()];
    let mut path = Vec::new();
    for start in 0..parent.len() {
        path.clear();
        let mut current = Some(start);
        let stop = loop {
            let Some(node) = current else {
                break Stop::Root;
            };
            match state[node] {
                State::Done(Some(depth)) => break Stop::Below(depth),
                State::Done(None) | State::OnPath => break Stop::Cycle,
                State::Unvisited => {}
            }
            state[node] = State::OnPath;
            path.push(node);
            current = parent[node];
        };
        let mut depth = match stop {
            Stop::Root => Some(0),
            Stop::Below(depth) => Some(depth + 1),
            Stop::Cycle => None,
        };
        for &node in path.iter().rev() {
            state[node] = State::Done(depth);
            depth = depth.map(|d| d + 1);
        }
    }
    state
        .into_iter()
        .map(|s| match s {
            State::Done(depth) => depth,
            // Unreachable: every node was the start of a finished walk.
            State::Unvisited | State::OnPath => None,
        })
        .collect()
}

/// The reason an object is kept on its own account, before bases and ages are considered.
fn own_reason(
    object: &RemoteSnapshot,
    depth: Option<usize>,
    input: &PruneInput,
) -> Option<KeepReason> {
    let name = object.name.as_str();
    let facts = input.facts.get(name);
    if let Some(until) = facts
        .and_then(|f| f.retain_until)
        .filter(|&until| until > input.now)
    {
        return Some(KeepReason::LockedUntil(until));
    }
    if facts.is_some_and(|f| f.legal_hold) {
        return Some(KeepReason::LegalHold);
    }
    if input.in_progress.contains(name) {
        return Some(KeepReason::InProgress);
    }
    if let Some(reason) = input.preserved.get(name) {
        return Some(KeepReason::Preserved(reason.clone()));
    }
    if input.time_unknown.contains(name) {
        return Some(KeepReason::TimeUnknown);
    }
    if facts.is_none() {
        return Some(KeepReason::NoFacts);
    }
    if depth.is_none() {
        return Some(KeepReason::InCycle);
    }
    None
}

/// `(remaining seconds, GiB-days)` when `object` is younger than its class's minimum storage
/// duration.
fn early(object: &RemoteSnapshot, facts: &ObjectFacts, now: u64) -> Option<(String, u64, f64)> {
    let class = facts.storage_class.as_deref().unwrap_or("STANDARD");
    let minimum = min_storage_days(class) * DAY;
    let age = facts
        .last_modified
        .map_or(0, |modified| now.saturating_sub(modified));
    let remaining = minimum.checked_sub(age).filter(|&r| r > 0)?;
    let gib_days = object.object_size as f64 / GIB * (remaining as f64 / DAY as f64);
    Some((class.to_owned(), remaining, gib_days))
}

/// Marks `start` kept for `reason`, then every unmarked object it needs as "base of" it.
/// Stops at the first marked one: its own bases are marked, or will be when its walk runs.
fn keep_with_bases(
    start: usize,
    reason: KeepReason,
    objects: &[RemoteSnapshot],
    parent: &[Option<usize>],
    kept: &mut [Option<KeepReason>],
) {
    kept[start] = Some(reason);
    walk_bases(start, objects, parent, kept);
}

fn walk_bases(
    start: usize,
    objects: &[RemoteSnapshot],
    parent: &[Option<usize>],
    kept: &mut [Option<KeepReason>],
) {
    let mut current = parent[start];
    while let Some(node) = current {
        if kept[node].is_some() {
            break;
        }
        kept[node] = Some(KeepReason::BaseOf(objects[start].name.clone()));
        current = parent[node];
    }
}

/// Why each object stays (`None`: it goes), and the early-deletion charge of each object that
/// goes (invariants 1 and 2).
fn judge(
    objects: &[RemoteSnapshot],
    parent: &[Option<usize>],
    depth: &[Option<usize>],
    input: &PruneInput,
) -> (Vec<Option<KeepReason>>, Vec<f64>) {
    // Objects kept on their own account, then everything they need.
    let mut kept: Vec<Option<KeepReason>> = objects
        .iter()
        .zip(depth)
        .map(|(object, &d)| own_reason(object, d, input))
        .collect();
    for i in 0..objects.len() {
        if kept[i].is_some() {
            walk_bases(i, objects, parent, &mut kept);
        }
    }
    // Then the objects too young to delete without a charge, unless that is allowed; an early
    // deletion's charge is remembered for the plan.
    let mut charge = vec![0.0; objects.len()];
    for i in 0..objects.len() {
        if kept[i].is_some() {
            continue;
        }
        let Some(facts) = input.facts.get(&objects[i].name) else {
            continue;
        };
        if let Some((storage_class, remaining_secs, gib_days)) =
            early(&objects[i], facts, input.now)
        {
            if input.allow_early_delete {
                charge[i] = gib_days;
            } else {
                let reason = KeepReason::TooYoung {
                    storage_class,
                    remaining_secs,
                    gib_days,
                };
                keep_with_bases(i, reason, objects, parent, &mut kept);
            }
        }
    }
    (kept, charge)
}

/// [`plan_prune`] with a batch limit of `limit` keys (tests use small ones).
fn plan_with_limit(index: &RemoteIndex, input: &PruneInput, limit: usize) -> PrunePlan {
    let limit = limit.max(1);
    let objects = index.as_slice();
    let by_name: HashMap<&str, usize> = objects
        .iter()
        .enumerate()
        .map(|(i, o)| (o.name.as_str(), i))
        .collect();
    let parent = links(objects, &by_name);
    let depth = depths(&parent);
    let (kept, charge) = judge(objects, &parent, &depth, input);

    // Heights among the deleted: children before parents is depth descending, and every
    // deleted object has a depth (objects on or leading into cycles are kept).
    let mut doomed: Vec<usize> = (0..objects.len()).filter(|&i| kept[i].is_none()).collect();
    doomed.sort_by_key(|&i| std::cmp::Reverse(depth[i]));
    let mut height = vec![0usize; objects.len()];
    for &i in &doomed {
        if let Some(p) = parent[i].filter(|&p| kept[p].is_none()) {
            height[p] = height[p].max(height[i] + 1);
        }
    }
    let levels = doomed.iter().map(|&i| height[i] + 2).max().unwrap_or(0);
    let mut layers: Vec<Vec<Deletion>> = vec![Vec::new(); levels];
    let mut totals = PruneTotals::default();
    doomed.sort_unstable();
    for &i in &doomed {
        let object = &objects[i];
        let reason = input
            .expire_reasons
            .get(&object.name)
            .map_or(NOT_PRESERVED, String::as_str);
        layers[height[i]].push(Deletion {
            key: object.key.clone(),
            version_id: None,
            target: Target::Object(object.name.clone()),
            reason: reason.to_owned(),
            bytes: object.object_size,
            early_delete_gib_days: charge[i],
        });
        totals.objects += 1;
        totals.bytes_freed += object.object_size;
        totals.early_delete_gib_days += charge[i];
        let seals: BTreeSet<&String> = input
            .facts
            .get(&object.name)
            .map(|f| f.seal_keys.iter().collect())
            .unwrap_or_default();
        for seal in seals {
            layers[height[i] + 1].push(Deletion {
                key: seal.clone(),
                version_id: None,
                target: Target::Seal(object.name.clone()),
                reason: format!("seal of {}", object.name),
                bytes: 0,
                early_delete_gib_days: 0.0,
            });
            totals.seals += 1;
        }
    }

    let needed_seals: HashSet<&str> = objects
        .iter()
        .zip(&kept)
        .filter(|(_, k)| k.is_some())
        .filter_map(|(o, _)| input.facts.get(&o.name))
        .flat_map(|f| f.seal_keys.iter().map(String::as_str))
        .collect();
    // A kept object without facts has seals nobody listed: no seal version is provably unneeded.
    let seals_known = objects
        .iter()
        .zip(&kept)
        .all(|(o, k)| k.is_none() || input.facts.contains_key(&o.name));
    let (versions, keep_versions) =
        plan_versions(&input.versions, &needed_seals, seals_known, input.now);
    totals.versions = versions.len();
    layers.push(versions);

    let delete = layers
        .into_iter()
        .flat_map(|layer| {
            let mut layer = layer.into_iter().peekable();
            let mut batches = Vec::new();
            while layer.peek().is_some() {
                batches.push(Batch {
                    deletions: layer.by_ref().take(limit).collect(),
                });
            }
            batches
        })
        .collect();
    let keep: Vec<(String, KeepReason)> = objects
        .iter()
        .zip(kept)
        .filter_map(|(o, k)| k.map(|k| (o.name.clone(), k)))
        .collect();
    totals.kept = keep.len();
    PrunePlan {
        delete,
        keep,
        keep_versions,
        totals,
    }
}

/// The noncurrent versions to delete, and the lock and seal versions kept (invariant 5).
fn plan_versions(
    versions: &[ObjectVersion],
    needed_seals: &HashSet<&str>,
    seals_known: bool,
    now: u64,
) -> (Vec<Deletion>, Vec<KeptVersion>) {
    let mut delete = Vec::new();
    let mut keep = Vec::new();
    // Keys whose newest data version was seen already (versions come newest first per key).
    let mut data_seen: HashSet<&str> = HashSet::new();
    for version in versions {
        let newest_data = !version.is_delete_marker && data_seen.insert(version.key.as_str());
        if version.is_latest || version.kind == VersionKind::Other {
            continue;
        }
        let reason = if let Some(until) = version.retain_until.filter(|&until| until > now) {
            Err(KeepReason::LockedUntil(until))
        } else {
            match version.kind {
                VersionKind::Lock => Ok("old lock record"),
                VersionKind::Seal if version.is_delete_marker => Ok("noncurrent delete marker"),
                VersionKind::Seal if newest_data && needed_seals.contains(version.key.as_str()) => {
                    Err(KeepReason::SealOfKept)
                }
                VersionKind::Seal if !seals_known => Err(KeepReason::SealsUnknown),
                VersionKind::Seal => Ok("replaced seal"),
                VersionKind::Other => continue,
            }
        };
        match reason {
            Ok(reason) => delete.push(Deletion {
                key: version.key.clone(),
                version_id: Some(version.version_id.clone()),
                target: Target::Version(version.kind),
                reason: reason.to_owned(),
                bytes: 0,
                early_delete_gib_days: 0.0,
            }),
            Err(reason) => keep.push(KeptVersion {
                key: version.key.clone(),
                version_id: version.version_id.clone(),
                reason,
            }),
        }
    }
    (delete, keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::ObjectMeta;

    const NOW: u64 = 1_800_000_000;
    const GIB_BYTES: u64 = 1 << 30;

    /// `(name, parent)`: a parent of `"FULL"` marks a full, `""` an incremental without one.
    fn index(spec: &[(&str, &str)]) -> RemoteIndex {
        RemoteIndex::new(
            spec.iter()
                .map(|&(name, parent)| RemoteSnapshot {
                    key: format!("b/{name}"),
                    name: name.to_owned(),
                    object_size: GIB_BYTES,
                    meta: ObjectMeta {
                        is_full: parent == "FULL",
                        parent: (parent != "FULL" && !parent.is_empty()).then(|| parent.to_owned()),
                        ..ObjectMeta::default()
                    },
                    etag: None,
                })
                .collect(),
        )
    }

    /// Facts for every object: STANDARD, a year old, one seal `s/<name>`.
    fn input(index: &RemoteIndex) -> PruneInput {
        PruneInput {
            facts: index
                .iter()
                .map(|o| {
                    let facts = ObjectFacts {
                        last_modified: Some(NOW - 365 * DAY),
                        seal_keys: vec![format!("s/{}", o.name)],
                        ..ObjectFacts::default()
                    };
                    (o.name.clone(), facts)
                })
                .collect(),
            now: NOW,
            ..PruneInput::default()
        }
    }

    fn preserve(input: &mut PruneInput, names: &[&str]) {
        for name in names {
            input
                .preserved
                .insert((*name).to_owned(), "daily".to_owned());
        }
    }

    /// The plan's batches as key lists, and its keep list as `name: reason` strings.
    fn shape(plan: &PrunePlan) -> (Vec<Vec<&str>>, Vec<String>) {
        let batches = plan
            .delete
            .iter()
            .map(|b| b.deletions.iter().map(|d| d.key.as_str()).collect())
            .collect();
        let keep = plan.keep.iter().map(|(n, r)| format!("{n}: {r}")).collect();
        (batches, keep)
    }

    #[test]
    fn unpreserved_objects_go_and_what_a_preserved_one_needs_stays() {
        let index = index(&[
            ("p@a", "FULL"),
            ("p@b", "p@a"),
            ("p@c", "p@b"),
            ("p@d", "p@a"),
            ("p@e", "p@d"),
        ]);
        let mut input = input(&index);
        preserve(&mut input, &["p@c"]);
        input
            .expire_reasons
            .insert("p@e".into(), "not preserved by policy: no interval".into());
        let plan = plan_prune(&index, &input);
        let (batches, keep) = shape(&plan);
        assert_eq!(
            batches,
            [vec!["b/p@e"], vec!["b/p@d", "s/p@e"], vec!["s/p@d"]]
        );
        assert_eq!(
            keep,
            [
                "p@a: base of p@c",
                "p@b: base of p@c",
                "p@c: preserved: daily"
            ]
        );
        let reasons: Vec<_> = plan.deletions().map(|d| d.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "not preserved by policy: no interval",
                NOT_PRESERVED,
                "seal of p@e",
                "seal of p@d"
            ]
        );
        assert_eq!(
            plan.totals,
            PruneTotals {
                objects: 2,
                seals: 2,
                versions: 0,
                bytes_freed: 2 * GIB_BYTES,
                early_delete_gib_days: 0.0,
                kept: 3,
            }
        );
    }

    #[test]
    fn a_chain_is_deleted_leaves_first_one_level_per_batch_seals_after_their_objects() {
        let index = index(&[
            ("p@1", "FULL"),
            ("p@2", "p@1"),
            ("p@3", "p@2"),
            ("p@4", "p@3"),
        ]);
        let plan = plan_prune(&index, &input(&index));
        let (batches, keep) = shape(&plan);
        assert_eq!(
            batches,
            [
                vec!["b/p@4"],
                vec!["b/p@3", "s/p@4"],
                vec!["b/p@2", "s/p@3"],
                vec!["b/p@1", "s/p@2"],
                vec!["s/p@1"],
            ]
        );
        assert!(keep.is_empty());
    }

    #[test]
    fn wide_levels_are_split_at_the_batch_limit() {
        let index = index(&[
            ("p@a", "FULL"),
            ("p@b", "p@a"),
            ("p@c", "p@a"),
            ("p@d", "p@a"),
            ("p@e", "p@a"),
            ("p@f", "p@a"),
        ]);
        let plan = plan_with_limit(&index, &input(&index), 2);
        let (batches, _) = shape(&plan);
        assert_eq!(
            batches,
            [
                vec!["b/p@b", "b/p@c"],
                vec!["b/p@d", "b/p@e"],
                vec!["b/p@f"],
                vec!["b/p@a", "s/p@b"],
                vec!["s/p@c", "s/p@d"],
                vec!["s/p@e", "s/p@f"],
                vec!["s/p@a"],
            ]
        );
    }

    #[test]
    fn object_lock_retention_and_legal_hold_keep_an_object_and_its_bases() {
        let index = index(&[
            ("p@a", "FULL"),
            ("p@b", "p@a"),
            ("p@c", "p@b"),
            ("p@d", "FULL"),
            ("p@e", "FULL"),
        ]);
        let mut input = input(&index);
        let facts = |name: &str, input: &mut PruneInput| input.facts.get_mut(name).cloned();
        let mut c = facts("p@c", &mut input).unwrap();
        c.retain_until = Some(NOW + 1);
        input.facts.insert("p@c".into(), c);
        // Retention that ended is no retention.
        let mut d = facts("p@d", &mut input).unwrap();
        d.retain_until = Some(NOW);
        input.facts.insert("p@d".into(), d);
        let mut e = facts("p@e", &mut input).unwrap();
        e.legal_hold = true;
        input.facts.insert("p@e".into(), e);
        let plan = plan_prune(&index, &input);
        let (batches, keep) = shape(&plan);
        assert_eq!(batches, [vec!["b/p@d"], vec!["s/p@d"]]);
        assert_eq!(
            keep,
            [
                "p@a: base of p@c",
                "p@b: base of p@c",
                "p@c: locked until 2027-01-15T08:00:01Z",
                "p@e: under legal hold",
            ]
        );
    }

    #[test]
    fn minimum_storage_durations() {
        let table = [
            ("STANDARD", 0),
            ("STANDARD_IA", 30),
            ("ONEZONE_IA", 30),
            ("INTELLIGENT_TIERING", 0),
            ("GLACIER_IR", 90),
            ("GLACIER", 90),
            ("DEEP_ARCHIVE", 180),
            ("REDUCED_REDUNDANCY", 0),
            ("SOMETHING_NEW", 0),
        ];
        for (class, days) in table {
            assert_eq!(min_storage_days(class), days, "{class}");
        }
    }

    #[test]
    fn young_objects_are_kept_with_their_cost_unless_early_deletion_is_allowed() {
        let index = index(&[("p@a", "FULL"), ("p@b", "p@a"), ("p@c", "FULL")]);
        let mut input = input(&index);
        for (name, class, age_days) in [
            ("p@b", "STANDARD_IA", 10),
            ("p@a", "DEEP_ARCHIVE", 200),
            ("p@c", "GLACIER", 89),
        ] {
            let facts = input.facts.get_mut(name).unwrap();
            facts.storage_class = Some(class.to_owned());
            facts.last_modified = Some(NOW - age_days * DAY);
        }
        let plan = plan_prune(&index, &input);
        let (batches, keep) = shape(&plan);
        assert!(batches.is_empty(), "{batches:?}");
        assert_eq!(
            keep,
            [
                "p@a: base of p@b",
                "p@b: too young for STANDARD_IA (20.0 days left): deleting now would cost 20.00 GiB-days",
                "p@c: too young for GLACIER (1.0 days left): deleting now would cost 1.00 GiB-days",
            ]
        );

        input.allow_early_delete = true;
        let plan = plan_prune(&index, &input);
        let charged: Vec<_> = plan
            .deletions()
            .map(|d| (d.key.as_str(), d.early_delete_gib_days))
            .collect();
        assert_eq!(
            charged,
            [
                ("b/p@b", 20.0),
                ("b/p@c", 1.0),
                ("b/p@a", 0.0),
                ("s/p@b", 0.0),
                ("s/p@c", 0.0),
                ("s/p@a", 0.0)
            ]
        );
        assert!((plan.totals.early_delete_gib_days - 21.0).abs() < 1e-9);

        // An unknown age counts as just written: the whole minimum is charged.
        input.allow_early_delete = false;
        input.facts.get_mut("p@c").unwrap().last_modified = None;
        let plan = plan_prune(&index, &input);
        assert_eq!(
            plan.keep[2].1.to_string(),
            "too young for GLACIER (90.0 days left): deleting now would cost 90.00 GiB-days"
        );
    }

    #[test]
    fn what_cannot_be_judged_is_kept() {
        let index = index(&[
            ("p@a", "FULL"),
            ("p@b", "p@a"),
            ("p@c", "FULL"),
            ("p@d", "FULL"),
            ("p@e", "FULL"),
            ("p@x", "p@y"),
            ("p@y", "p@x"),
            ("p@z", "p@y"),
            ("p@s", "p@s"),
        ]);
        let mut input = input(&index);
        input.time_unknown.insert("p@b".into());
        input.in_progress.insert("p@c".into());
        input.facts.remove("p@d");
        let plan = plan_prune(&index, &input);
        let (batches, keep) = shape(&plan);
        assert_eq!(batches, [vec!["b/p@e"], vec!["s/p@e"]]);
        assert_eq!(
            keep,
            [
                "p@a: base of p@b",
                "p@b: time unknown: never pruned",
                "p@c: being written",
                "p@d: retention and age unknown",
                "p@s: in a cycle of parent links",
                "p@x: in a cycle of parent links",
                "p@y: in a cycle of parent links",
                "p@z: in a cycle of parent links",
            ]
        );
    }

    /// Issue 14's "missing object in the middle": the links that exist are kept.
    #[test]
    fn a_broken_chain_keeps_the_links_that_exist() {
        let index = index(&[
            ("p@a", "FULL"),
            ("p@b", "p@a"),
            ("p@d", "p@c"),
            ("p@e", "p@d"),
            ("p@f", ""),
        ]);
        let mut input = input(&index);
        preserve(&mut input, &["p@e"]);
        let plan = plan_prune(&index, &input);
        let (batches, keep) = shape(&plan);
        assert_eq!(
            batches,
            [
                vec!["b/p@b", "b/p@f"],
                vec!["b/p@a", "s/p@b", "s/p@f"],
                vec!["s/p@a"]
            ]
        );
        assert_eq!(keep, ["p@d: base of p@e", "p@e: preserved: daily"]);
    }

    /// A base replaced by a backup of another snapshot of its name is not what its old
    /// incrementals need; a base of the same snapshot (guids agree, or unknown) is.
    #[test]
    fn guids_decide_which_object_a_link_names() {
        let mut index_objects: Vec<RemoteSnapshot> = index(&[
            ("p@a", "FULL"),
            ("p@b", "p@a"),
            ("p@c", "p@b"),
            ("p@d", "p@a"),
        ])
        .iter()
        .cloned()
        .collect();
        for (object, (guid, parent_guid)) in index_objects.iter_mut().zip([
            (Some(1), None),
            (Some(20), Some(1)),
            (Some(3), Some(2)),
            (Some(4), None),
        ]) {
            object.meta.guid = guid;
            object.meta.parent_guid = parent_guid;
        }
        let index = RemoteIndex::new(index_objects);
        let mut input = input(&index);
        preserve(&mut input, &["p@c", "p@d"]);
        let plan = plan_prune(&index, &input);
        let (batches, keep) = shape(&plan);
        assert_eq!(batches, [vec!["b/p@b"], vec!["s/p@b"]]);
        assert_eq!(
            keep,
            [
                "p@a: base of p@d",
                "p@c: preserved: daily",
                "p@d: preserved: daily"
            ]
        );
    }

    #[test]
    fn own_reasons_come_before_base_of() {
        let index = index(&[("p@a", "FULL"), ("p@b", "p@a"), ("p@c", "p@b")]);
        let mut input = input(&index);
        preserve(&mut input, &["p@a", "p@c"]);
        input.facts.get_mut("p@b").unwrap().retain_until = Some(NOW + DAY);
        let plan = plan_prune(&index, &input);
        let (_, keep) = shape(&plan);
        assert_eq!(
            keep,
            [
                "p@a: preserved: daily",
                "p@b: locked until 2027-01-16T08:00:00Z",
                "p@c: preserved: daily"
            ]
        );
    }

    fn version(
        key: &str,
        id: &str,
        latest: bool,
        marker: bool,
        kind: VersionKind,
    ) -> ObjectVersion {
        ObjectVersion {
            key: key.to_owned(),
            version_id: id.to_owned(),
            is_latest: latest,
            is_delete_marker: marker,
            retain_until: None,
            kind,
        }
    }

    #[test]
    fn noncurrent_versions_nothing_needs_go_last_and_hidden_seals_of_kept_objects_stay() {
        use VersionKind::{Lock, Other, Seal};
        let index = index(&[("p@a", "FULL"), ("p@b", "FULL")]);
        let mut input = input(&index);
        preserve(&mut input, &["p@a"]);
        let mut locked = version("s/p@old", "v9", false, false, Seal);
        locked.retain_until = Some(NOW + 1);
        input.versions = vec![
            version("l/ds", "v3", true, false, Lock),
            version("l/ds", "v2", false, true, Lock),
            version("l/ds", "v1", false, false, Lock),
            // The kept object's seal, hidden behind a planted delete marker.
            version("s/p@a", "v5", true, true, Seal),
            version("s/p@a", "v4", false, false, Seal),
            version("s/p@a", "v3", false, false, Seal),
            // A seal no object names any more (removed by a later backup).
            version("s/p@old", "v8", true, true, Seal),
            version("s/p@old", "v7", false, false, Seal),
            locked,
            // Backup objects' versions are never touched, hidden or not.
            version("b/p@a", "v2", true, true, Other),
            version("b/p@a", "v1", false, false, Other),
        ];
        let plan = plan_prune(&index, &input);
        let last = plan.delete.last().unwrap();
        let deleted: Vec<_> = last
            .deletions
            .iter()
            .map(|d| {
                format!(
                    "{} {} {}",
                    d.key,
                    d.version_id.as_deref().unwrap(),
                    d.reason
                )
            })
            .collect();
        assert_eq!(
            deleted,
            [
                "l/ds v2 old lock record",
                "l/ds v1 old lock record",
                "s/p@a v3 replaced seal",
                "s/p@old v7 replaced seal",
            ]
        );
        let kept: Vec<_> = plan
            .keep_versions
            .iter()
            .map(|k| format!("{} {} {}", k.key, k.version_id, k.reason))
            .collect();
        assert_eq!(
            kept,
            [
                "s/p@a v4 seal of a kept object",
                "s/p@old v9 locked until 2027-01-15T08:00:01Z"
            ]
        );
        assert_eq!(plan.totals.versions, 4);
        // The object batches come first: p@b, then its seal.
        assert_eq!(plan.delete.len(), 3);
        assert_eq!(plan.delete[0].deletions[0].key, "b/p@b");

        // A kept object without facts: its seals are unknown, so no seal data version goes.
        input.facts.remove("p@a");
        let plan = plan_prune(&index, &input);
        let deleted: Vec<_> = plan
            .deletions()
            .filter(|d| d.version_id.is_some())
            .map(|d| d.reason.as_str())
            .collect();
        assert_eq!(deleted, ["old lock record", "old lock record"]);
        assert_eq!(
            plan.keep_versions[0].reason.to_string(),
            "a kept object's seals are unknown"
        );
    }

    /// 100,000 objects in one chain and in one wide tree: iterative, `O(n log n)`.
    #[test]
    fn a_hundred_thousand_objects_plan_without_recursion() {
        const N: usize = 100_000;
        let names: Vec<String> = (0..N).map(|i| format!("p@s{i:06}")).collect();
        for wide in [false, true] {
            let spec: Vec<(&str, &str)> = names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let parent = match i {
                        0 => "FULL",
                        _ if wide => names[0].as_str(),
                        _ => names[i - 1].as_str(),
                    };
                    (name.as_str(), parent)
                })
                .collect();
            let index = index(&spec);
            let mut input = input(&index);
            // Keep the middle: in the chain, everything before it stays too.
            preserve(&mut input, &[names[N / 2].as_str()]);
            let plan = plan_prune(&index, &input);
            let kept = if wide { 2 } else { N / 2 + 1 };
            assert_eq!(plan.totals.kept, kept);
            assert_eq!(plan.totals.objects, N - kept);
            assert_eq!(plan.totals.seals, N - kept);
            if wide {
                // Leaves of one level, then their seals.
                assert_eq!(
                    plan.delete.len(),
                    2 * (N - kept).div_ceil(DELETE_BATCH_LIMIT)
                );
            } else {
                assert_eq!(plan.delete.len(), N - kept + 1);
            }
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// One generated object: `(full, parent, guid mode, flags)`; a parent index past the
        /// end names a missing object.
        type Spec = (bool, usize, u8, u8);

        /// Whether each object can be restored: healthy and, for z3's, sealed.
        fn restorable(objects: &[RemoteSnapshot], seals: &BTreeSet<String>) -> BTreeSet<String> {
            let index = RemoteIndex::new(objects.to_vec()).with_seals(seals.iter().map(|key| {
                let (name, token) = key["s/".len()..].rsplit_once('@').unwrap();
                (name.to_owned(), Some(token.to_owned()))
            }));
            index
                .iter()
                .filter(|o| {
                    index.health(&o.name).is_some_and(|h| h.is_healthy())
                        && !index.is_unsealed(&o.name)
                })
                .map(|o| o.name.clone())
                .collect()
        }

        fn build(specs: &[Spec], allow_early: bool) -> (RemoteIndex, PruneInput) {
            let n = specs.len();
            let name = |i: usize| format!("p@s{i:02}");
            let objects: Vec<RemoteSnapshot> = specs
                .iter()
                .enumerate()
                .map(|(i, &(full, parent, guid_mode, _))| RemoteSnapshot {
                    key: format!("b/{}", name(i)),
                    name: name(i),
                    object_size: 1 << 20,
                    meta: ObjectMeta {
                        is_full: full,
                        parent: Some(name(parent)),
                        guid: Some(i as u64),
                        // Mostly the parent's guid; sometimes another (a replaced base) or none.
                        parent_guid: match guid_mode % 4 {
                            0 => None,
                            1 => Some(999),
                            _ => (parent < n).then_some(parent as u64),
                        },
                        upload: Some(format!("t{i}")),
                        ..ObjectMeta::default()
                    },
                    etag: None,
                })
                .collect();
            let index = RemoteIndex::new(objects);
            let mut input = PruneInput {
                now: NOW,
                allow_early_delete: allow_early,
                ..PruneInput::default()
            };
            for (i, &(_, _, _, flags)) in specs.iter().enumerate() {
                let name = name(i);
                if flags % 16 == 1 {
                    continue; // no facts
                }
                let young = flags % 8 == 2;
                input.facts.insert(
                    name.clone(),
                    ObjectFacts {
                        retain_until: (flags % 16 == 3).then_some(NOW + 1),
                        legal_hold: flags % 32 == 4,
                        storage_class: Some("STANDARD_IA".into()),
                        last_modified: Some(if young { NOW - DAY } else { NOW - 60 * DAY }),
                        seal_keys: vec![format!("s/{name}@t{i}")],
                    },
                );
                if flags % 4 == 0 {
                    input.preserved.insert(name.clone(), "kept".into());
                }
                if flags % 32 == 5 {
                    input.in_progress.insert(name.clone());
                }
                if flags % 32 == 6 {
                    input.time_unknown.insert(name.clone());
                }
            }
            (index, input)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            /// Whatever prefix of the batches ran, and whatever part of the next one, every
            /// object still present that was restorable before still is; after the whole plan,
            /// everything preserved, locked or being written is present; batches respect the
            /// limit, and every object is either kept or deleted once.
            #[test]
            fn any_interrupted_prune_leaves_every_remaining_object_as_restorable_as_before(
                specs in proptest::collection::vec(
                    (proptest::bool::weighted(0.3), 0usize..26, 0u8..4, 0u8..64), 1..24),
                allow_early in proptest::bool::ANY,
                limit in 1usize..5,
                masks in proptest::collection::vec(proptest::num::u64::ANY, 4),
            ) {
                let (index, input) = build(&specs, allow_early);
                let plan = plan_with_limit(&index, &input, limit);
                let objects = index.as_slice();
                let all_seals: BTreeSet<String> =
                    input.facts.values().flat_map(|f| f.seal_keys.clone()).collect();
                let before = restorable(objects, &all_seals);

                // Partition: every object kept or deleted, exactly once; batches within limit.
                let mut seen: Vec<&str> = plan.keep.iter().map(|(n, _)| n.as_str()).collect();
                seen.extend(plan.deletions().filter_map(|d| match &d.target {
                    Target::Object(name) => Some(name.as_str()),
                    _ => None,
                }));
                seen.sort_unstable();
                let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
                prop_assert_eq!(seen, names);
                prop_assert!(plan.delete.iter().all(|b| !b.deletions.is_empty() && b.deletions.len() <= limit));

                // What must stay, stays.
                let kept: BTreeSet<&str> = plan.keep.iter().map(|(n, _)| n.as_str()).collect();
                for o in objects {
                    let facts = input.facts.get(&o.name);
                    let must = input.preserved.contains_key(&o.name)
                        || input.in_progress.contains(&o.name)
                        || input.time_unknown.contains(&o.name)
                        || facts.is_none_or(|f| f.retain_until.is_some() || f.legal_hold)
                        || (!allow_early && facts.is_some_and(|f| f.last_modified == Some(NOW - DAY)));
                    prop_assert!(!must || kept.contains(o.name.as_str()), "{} deleted", o.name);
                }

                // Crash at any point: batches before `k` done, any subset of batch `k` done.
                let mut gone: BTreeSet<&str> = BTreeSet::new();
                for batch in &plan.delete {
                    let count = batch.deletions.len();
                    let mut subsets: Vec<Vec<bool>> = masks
                        .iter()
                        .map(|m| (0..count).map(|j| m >> (j % 64) & 1 == 1).collect())
                        .collect();
                    subsets.push(vec![true; count]);
                    // Every single deletion of the batch alone, too.
                    subsets.extend((0..count).map(|j| (0..count).map(|x| x == j).collect()));
                    for subset in &subsets {
                        let mut state = gone.clone();
                        state.extend(
                            batch.deletions.iter().zip(subset).filter(|(_, s)| **s).map(|(d, _)| d.key.as_str()),
                        );
                        let present: Vec<RemoteSnapshot> = objects
                            .iter()
                            .filter(|o| !state.contains(o.key.as_str()))
                            .cloned()
                            .collect();
                        let seals: BTreeSet<String> = all_seals
                            .iter()
                            .filter(|s| !state.contains(s.as_str()))
                            .cloned()
                            .collect();
                        let after = restorable(&present, &seals);
                        for o in &present {
                            prop_assert!(
                                !before.contains(&o.name) || after.contains(&o.name),
                                "{} no longer restorable after {:?}", o.name, state
                            );
                        }
                    }
                    gone.extend(batch.deletions.iter().map(|d| d.key.as_str()));
                }
            }
        }
    }
}

//! Which object a new backup is based on when a policy shapes the backups as a tree (btrfs2s3's
//! idea): the longest timeframe gives fulls, each shorter one incrementals on the current backup
//! of the next longer one.

use std::collections::HashMap;

use jiff::Timestamp;

use crate::retention::calendar::{Calendar, Ordinals, Timeframe};
use crate::retention::policy::Policy;

/// A usable backup the new one may be based on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// Its name (as the caller names objects, e.g. `dataset@snapshot`).
    pub name: String,
    /// Its snapshot's time.
    pub time: Timestamp,
    /// The object it is an incremental on; `None` for a full.
    pub parent: Option<String>,
}

/// What a new backup is sent as.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Base {
    /// A full stream.
    Full,
    /// An incremental on `parent` (`zfs send -i PARENT SNAP`).
    Incremental {
        /// The backup it is based on.
        parent: String,
    },
}

/// The decision for a new backup, with the facts behind it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BaseDecision {
    /// Full or incremental, and on what.
    pub base: Base,
    /// The timeframe whose current interval the new backup is the first of (`None`: none, it is
    /// a plain leaf of the shortest timeframe).
    pub represents: Option<Timeframe>,
    /// How many objects a restore of the new backup receives (a full: 1).
    pub depth: usize,
    /// Why, for the operator: `first of monthly 2026-12: on yearly 2026 (tank@y)`.
    pub reason: String,
}

/// Chooses the base of a new backup of the snapshot `name` taken at `time`.
///
/// Let the configured timeframes, longest first, be levels 0, 1, …, k − 1, and the
/// *representative* of an interval the earliest backup in it (equal times ordered by name).
///
/// 1. The new backup's level is the longest timeframe whose interval around `time` has no
///    representative yet: it becomes that interval's first backup. Level 0 is a full.
/// 2. Otherwise (every interval already has one) it represents nothing and is shaped like a
///    backup of the shortest timeframe (level k − 1), so it adds no depth.
/// 3. A backup of level j ≥ 1 is an incremental on the representative of its level j − 1
///    interval: monthly on the current yearly, daily on the current monthly (or weekly, when
///    weeks are configured), hourly on the current daily.
/// 4. **Depth bound.** The parent must be restorable in at most j links (so the new backup in
///    j + 1 ≤ k). A representative that is deeper (history written by another policy, a linear
///    chain, a pruned original) is passed over for the next longer level's representative, and a
///    full is made when none fits. So a restore never receives more than k objects, whatever the
///    bucket held before; the reason says which fallback was taken.
///
/// `backups` must be usable (restorable) backups of snapshots older than the new one; backups
/// whose time is after `time`, or that name the new snapshot, are ignored. A backup whose chain
/// leaves `backups` (a parent not listed) or loops is never used as a base. A policy without
/// timeframes makes a full.
///
/// `O(n)` conversions plus `O(k · n)` for the depth of at most k candidates.
#[must_use]
pub fn choose_base(
    policy: &Policy,
    backups: &[Backup],
    name: &str,
    time: Timestamp,
    calendar: &Calendar,
) -> BaseDecision {
    let levels: Vec<Timeframe> = policy.timeframes().map(|(tf, _)| tf).collect();
    let Some(&shortest) = levels.last() else {
        return full(None, 1, "the policy has no timeframes: full".to_string());
    };
    let here: Ordinals = calendar.ordinals(time);
    let mut representatives: Vec<Option<&Backup>> = vec![None; levels.len()];
    for backup in backups {
        if backup.time > time || backup.name == name {
            continue;
        }
        let ordinals = calendar.ordinals(backup.time);
        for (level, timeframe) in levels.iter().enumerate() {
            if ordinals[timeframe.index()] != here[timeframe.index()] {
                continue;
            }
            let slot = &mut representatives[level];
            if slot.is_none_or(|rep| (backup.time, &backup.name) < (rep.time, &rep.name)) {
                *slot = Some(backup);
            }
        }
    }
    let label = |level: usize, at: Timestamp| {
        format!("{} {}", levels[level], calendar.label(levels[level], at))
    };

    let first_empty = representatives.iter().position(Option::is_none);
    let (level, head) = if let Some(level) = first_empty {
        (level, format!("first of {}", label(level, time)))
    } else {
        let rep = representatives[levels.len() - 1].map_or("", |b| b.name.as_str());
        let interval = calendar.label(shortest, time);
        (
            levels.len() - 1,
            format!("{shortest} {interval} already has {rep}"),
        )
    };
    let represents = first_empty.map(|level| levels[level]);
    if level == 0 {
        let why = if represents.is_some() {
            format!("{head}: full")
        } else {
            format!("{head}; with one timeframe every backup is a full")
        };
        return full(represents, 1, why);
    }

    let parents: HashMap<&str, Option<&str>> = backups
        .iter()
        .map(|b| (b.name.as_str(), b.parent.as_deref()))
        .collect();
    let mut passed_over: Vec<String> = Vec::new();
    for parent_level in (0..level).rev() {
        let Some(rep) = representatives[parent_level] else {
            continue;
        };
        match depth(&parents, &rep.name) {
            Some(d) if d <= level => {
                let mut reason = format!("{head}: ");
                for skipped in &passed_over {
                    reason.push_str(skipped);
                    reason.push_str(", so ");
                }
                reason.push_str("on ");
                reason.push_str(&label(parent_level, rep.time));
                reason.push_str(" (");
                reason.push_str(&rep.name);
                reason.push(')');
                return BaseDecision {
                    base: Base::Incremental {
                        parent: rep.name.clone(),
                    },
                    represents,
                    depth: d + 1,
                    reason,
                };
            }
            Some(d) => passed_over.push(format!(
                "{} ({}) is {d} links deep",
                label(parent_level, rep.time),
                rep.name
            )),
            None => passed_over.push(format!(
                "{} ({}) has no complete chain",
                label(parent_level, rep.time),
                rep.name
            )),
        }
    }
    let mut reason = format!("{head}: ");
    for skipped in &passed_over {
        reason.push_str(skipped);
        reason.push_str(", ");
    }
    reason.push_str("no base within the depth bound: full");
    full(represents, 1, reason)
}

/// The backups future ones may be based on, to protect from local deletion (z3 holds their
/// snapshots): for each timeframe but the shortest, the representative of the interval that
/// holds the newest backup (the earliest backup in it), and the newest backup itself (the base
/// when a later snapshot's time is unknown). Sorted, without duplicates.
///
/// Later snapshots fall in the newest backup's intervals or in later ones; in a later interval
/// the new backup becomes that interval's representative, based on a longer timeframe's
/// current representative, which is in this set. So a base outside the set is never chosen
/// while the clock moves forward.
#[must_use]
pub fn future_bases(policy: &Policy, backups: &[Backup], calendar: &Calendar) -> Vec<String> {
    let Some(newest) = backups
        .iter()
        .max_by(|a, b| (a.time, &a.name).cmp(&(b.time, &b.name)))
    else {
        return Vec::new();
    };
    let here = calendar.ordinals(newest.time);
    let levels: Vec<Timeframe> = policy.timeframes().map(|(tf, _)| tf).collect();
    let mut bases = vec![newest.name.clone()];
    for timeframe in levels.iter().take(levels.len().saturating_sub(1)) {
        let representative = backups
            .iter()
            .filter(|b| calendar.ordinals(b.time)[timeframe.index()] == here[timeframe.index()])
            .min_by(|a, b| (a.time, &a.name).cmp(&(b.time, &b.name)));
        if let Some(rep) = representative {
            bases.push(rep.name.clone());
        }
    }
    bases.sort();
    bases.dedup();
    bases
}

/// A full decision.
fn full(represents: Option<Timeframe>, depth: usize, reason: String) -> BaseDecision {
    BaseDecision {
        base: Base::Full,
        represents,
        depth,
        reason,
    }
}

/// How many objects a restore of `name` receives: 1 for a full, one more per parent link.
/// `None` when the chain leaves the listed backups or loops.
pub(crate) fn depth(parents: &HashMap<&str, Option<&str>>, name: &str) -> Option<usize> {
    let mut current = name;
    for links in 1..=parents.len() {
        match parents.get(current)? {
            None => return Some(links),
            Some(parent) => current = parent,
        }
    }
    None
}

//! Which snapshots (or backup objects) a policy preserves at `now`, and why.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::Timestamp;

use crate::prune::PruneInput;
use crate::retention::calendar::{Calendar, Ordinals};
use crate::retention::policy::Policy;

/// One snapshot or object to judge: its name and its time, if known (see
/// [`snapshot_time`](crate::retention::snapshot_time)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The name; `dataset@snapshot` when the result feeds [`PruneInput`].
    pub name: String,
    /// The time; `None` when neither the name nor a `creation` tells it.
    pub time: Option<Timestamp>,
}

/// The reason of the newest item, which is always preserved.
pub const NEWEST: &str = "newest";

/// The reason of an item whose time lies after `now` (a clock that is wrong somewhere).
pub const AFTER_NOW: &str = "time after now";

/// The verdict on one item.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Verdict {
    /// Preserved, for these reasons (`yearly 2026`, `daily 2026-12-03`, `newest`), longest
    /// timeframe first.
    Preserved(Vec<String>),
    /// Not preserved, and why.
    Expired(String),
    /// The time is unknown: never pruned.
    TimeUnknown,
}

/// The verdicts on a list of items, in the order they were given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preservation {
    /// One `(name, verdict)` per item given.
    pub verdicts: Vec<(String, Verdict)>,
}

impl Preservation {
    /// The verdict on `name` (the first, if the name was given twice).
    #[must_use]
    pub fn verdict(&self, name: &str) -> Option<&Verdict> {
        self.verdicts
            .iter()
            .find_map(|(n, v)| (n == name).then_some(v))
    }

    /// The preserved items, each with its reasons joined by `, `.
    #[must_use]
    pub fn preserved(&self) -> BTreeMap<String, String> {
        self.verdicts
            .iter()
            .filter_map(|(name, verdict)| match verdict {
                Verdict::Preserved(reasons) => Some((name.clone(), reasons.join(", "))),
                _ => None,
            })
            .collect()
    }

    /// The expired items, each with why the policy did not preserve it.
    #[must_use]
    pub fn expire_reasons(&self) -> BTreeMap<String, String> {
        self.verdicts
            .iter()
            .filter_map(|(name, verdict)| match verdict {
                Verdict::Expired(reason) => Some((name.clone(), reason.clone())),
                _ => None,
            })
            .collect()
    }

    /// The items whose time is unknown.
    #[must_use]
    pub fn time_unknown(&self) -> BTreeSet<String> {
        self.verdicts
            .iter()
            .filter(|(_, verdict)| *verdict == Verdict::TimeUnknown)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Writes the policy's part of a prune plan's input: `preserved`, `expire_reasons` and
    /// `time_unknown` (replacing what they held). Names must be `dataset@snapshot`.
    pub fn fill(&self, input: &mut PruneInput) {
        input.preserved = self.preserved();
        input.expire_reasons = self.expire_reasons();
        input.time_unknown = self.time_unknown();
    }
}

/// Which of `items` `policy` preserves at `now` on `calendar`.
///
/// The rules (btrbk's and btrfs2s3's `preserve`):
///
/// - For each configured timeframe with count N, the *kept intervals* are the current one (the
///   interval `now` falls in) and the N − 1 before it, counted on the calendar whether or not any
///   snapshot falls in them (`*`: every interval up to the current one). So `14d` keeps today and
///   the 13 days before, and after a three-week gap none of the older dailies.
/// - In each kept interval, the first (oldest) item represents the interval and is preserved;
///   equal times are ordered by name.
/// - The newest item is always preserved ([`NEWEST`]), whatever the policy says, and so is any
///   item whose time lies after `now` ([`AFTER_NOW`]).
/// - An item without a time is never pruned ([`Verdict::TimeUnknown`]).
/// - Every other item expires, with the reason: the interval it lies in and the item that
///   represents that interval (shortest timeframe first), or that it is older than every kept
///   interval.
///
/// The cost is one time zone conversion per item and a sort: `O(n log n)`.
#[must_use]
pub fn preserve(
    policy: &Policy,
    items: &[Item],
    now: Timestamp,
    calendar: &Calendar,
) -> Preservation {
    let mut timed: Vec<(usize, Timestamp, Ordinals)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| item.time.map(|t| (i, t, calendar.ordinals(t))))
        .collect();
    timed.sort_by(|a, b| (a.1, &items[a.0].name).cmp(&(b.1, &items[b.0].name)));
    let now_ordinals = calendar.ordinals(now);

    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); items.len()];
    let mut expiry: Vec<Option<String>> = vec![None; items.len()];
    for (timeframe, keep) in policy.timeframes() {
        let index = timeframe.index();
        // The first item seen (in time order) of each interval.
        let mut first: HashMap<i64, usize> = HashMap::new();
        for &(i, time, ordinals) in &timed {
            let ordinal = ordinals[index];
            if time > now || !keep.covers(now_ordinals[index] - ordinal) {
                continue;
            }
            match first.get(&ordinal) {
                None => {
                    first.insert(ordinal, i);
                    reasons[i].push(format!("{timeframe} {}", calendar.label(timeframe, time)));
                }
                Some(&representative) => {
                    // Timeframes come longest first: a shorter one overwrites, so the reason names
                    // the finest interval the item lies in.
                    expiry[i] = Some(format!(
                        "{timeframe} {} is kept by {}",
                        calendar.label(timeframe, time),
                        items[representative].name
                    ));
                }
            }
        }
    }
    if let Some(&(newest, _, _)) = timed.last() {
        reasons[newest].push(NEWEST.to_string());
    }
    for &(i, time, _) in &timed {
        if time > now {
            reasons[i].push(AFTER_NOW.to_string());
        }
    }

    let verdicts = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let verdict =
                if item.time.is_none() {
                    Verdict::TimeUnknown
                } else if !reasons[i].is_empty() {
                    Verdict::Preserved(std::mem::take(&mut reasons[i]))
                } else {
                    Verdict::Expired(expiry[i].take().unwrap_or_else(|| {
                        "older than every interval the policy keeps".to_string()
                    }))
                };
            (item.name.clone(), verdict)
        })
        .collect();
    Preservation { verdicts }
}

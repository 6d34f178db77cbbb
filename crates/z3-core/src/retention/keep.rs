//! [`keep_until`]: how long a backup must stay undeletable (Object Lock's retain-until) so that
//! neither it nor any backup the policy's tree may build on it expires first.

use jiff::Timestamp;

use std::collections::{HashMap, HashSet, VecDeque};

use crate::remote::RemoteIndex;

use crate::retention::calendar::{Calendar, Timeframe};
use crate::retention::policy::{Keep, Policy};
use crate::retention::preserve::Item;

/// The latest time the policy may still need the backup of a snapshot taken at `time`, which
/// is the first backup of its `represents` interval (`None`: a plain leaf, treated as the first
/// of its shortest-timeframe interval). `None` when a timeframe keeps every interval (`*`):
/// forever.
///
/// A backup that is the first of its interval in timeframe L stays preserved until `N_L` further
/// intervals of L began, and a descendant of timeframe j until `N_j` intervals of j after its
/// own. Where is the last descendant? A child of timeframe j lies in its parent's interval of
/// the next longer timeframe, so the subtree lies before the *span end* E: the end of the L
/// interval, then, for each shorter timeframe j in turn, the end of the j interval holding
/// E's last instant. Intervals nest except weeks, which cross month and year boundaries (a
/// weekly built on June's monthly may carry dailies from July), which is why E can pass the L
/// interval's end. The answer is, over every timeframe j no longer than L, the start of interval
/// `ordinal_j(last instant before E) + N_j`. A base's span contains its children's spans, so a
/// base never expires before a backup built on it.
///
/// `O(k · log)`: interval starts are found by bisection on the (monotonic) interval ordinals,
/// so DST and month lengths need no special cases.
#[must_use]
pub fn keep_until(
    policy: &Policy,
    calendar: &Calendar,
    time: Timestamp,
    represents: Option<Timeframe>,
) -> Option<Timestamp> {
    let levels: Vec<(Timeframe, Keep)> = policy.timeframes().collect();
    let &(shortest, _) = levels.last()?;
    let level = represents.unwrap_or(shortest);
    let ordinal = |tf: Timeframe, at: Timestamp| calendar.ordinals(at)[tf.index()];
    let before = |at: Timestamp| at.checked_sub(jiff::SignedDuration::from_secs(1)).ok();
    let mut end = start_of(calendar, level, ordinal(level, time) + 1, time);
    for &(timeframe, _) in &levels {
        if timeframe.index() < level.index() {
            let last = before(end)?;
            end = end.max(start_of(
                calendar,
                timeframe,
                ordinal(timeframe, last) + 1,
                last,
            ));
        }
    }
    let last_instant = before(end)?;
    let mut latest = time;
    for (timeframe, keep) in levels {
        if timeframe.index() > level.index() {
            continue; // longer than the represented timeframe
        }
        let Keep::Last(n) = keep else {
            return None;
        };
        let until = start_of(
            calendar,
            timeframe,
            ordinal(timeframe, last_instant) + i64::from(n),
            last_instant,
        );
        latest = latest.max(until);
    }
    Some(latest)
}

/// The Object Lock retain-until each of `items` (backups of one dataset) needs as the bucket
/// stands: [`keep_until`] of its time, as the first backup of the longest timeframe whose
/// interval it is the first of among `items` (equal times ordered by name, as
/// [`preserve`](crate::retention::preserve) orders them). `None`: forever, because a timeframe
/// keeps every interval or the item's time is unknown (such a backup is never pruned). In
/// `items`' order.
///
/// A backup written as a leaf may later become its interval's first (the one before it was
/// deleted by hand, or was never written): its retention, set when it was written, is then
/// shorter than the policy now keeps it, and this is what prune extends it to. Within one
/// interval of any timeframe the first item's date is never earlier than any other item's, so
/// a base (always the first of a longer interval holding its children) outlives what builds on
/// it.
///
/// `O(n log n + n · k · log)`.
#[must_use]
pub fn lock_dates(
    policy: &Policy,
    items: &[Item],
    calendar: &Calendar,
) -> Vec<(String, Option<Timestamp>)> {
    let mut timed: Vec<(usize, Timestamp)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| item.time.map(|t| (i, t)))
        .collect();
    timed.sort_by(|a, b| (a.1, &items[a.0].name).cmp(&(b.1, &items[b.0].name)));
    let mut represents: Vec<Option<Timeframe>> = vec![None; items.len()];
    // Timeframes come longest first: the first one an item is the first of is its longest.
    for (timeframe, _) in policy.timeframes() {
        let mut seen: HashSet<i64> = HashSet::new();
        for &(i, time) in &timed {
            let ordinal = calendar.ordinals(time)[timeframe.index()];
            if seen.insert(ordinal) && represents[i].is_none() {
                represents[i] = Some(timeframe);
            }
        }
    }
    items
        .iter()
        .zip(represents)
        .map(|(item, represents)| {
            let date = item
                .time
                .and_then(|time| keep_until(policy, calendar, time, represents));
            (item.name.clone(), date)
        })
        .collect()
}

/// Raises every backup's lock date to the latest date of the backups built on it, transitively
/// along the `parent`s of `index`'s objects, so that no base unlocks before a backup that needs
/// it, whatever shaped the chain (a step whose time was unknown, history from before the
/// policy). `dates` maps names (`ds@snap`) to dates, `None` meaning forever (which wins over
/// any date); names without an entry are left out, and objects in a loop are left as they are.
///
/// `O(n)`: children before parents, each link followed once.
pub fn extend_to_children<S: std::hash::BuildHasher>(
    index: &RemoteIndex,
    dates: &mut HashMap<String, Option<Timestamp>, S>,
) {
    let parents: HashMap<String, String> = dates
        .keys()
        .filter_map(|name| {
            let parent = index
                .get(name)
                .filter(|o| !o.meta.is_full)
                .and_then(|o| o.meta.parent.as_ref())
                .filter(|parent| dates.contains_key(*parent))?;
            Some((name.clone(), parent.clone()))
        })
        .collect();
    let mut children: HashMap<&str, usize> = HashMap::new();
    for parent in parents.values() {
        *children.entry(parent).or_default() += 1;
    }
    let names: Vec<String> = dates.keys().cloned().collect();
    let mut ready: VecDeque<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !children.contains_key(n))
        .collect();
    while let Some(name) = ready.pop_front() {
        let Some(parent) = parents.get(name) else {
            continue;
        };
        let child = dates[name];
        let slot = dates
            .get_mut(parent)
            .expect("parents only names dated objects");
        *slot = match (*slot, child) {
            (None, _) | (_, None) => None,
            (Some(a), Some(b)) => Some(a.max(b)),
        };
        let left = children.get_mut(parent.as_str()).expect("counted above");
        *left -= 1;
        if *left == 0 {
            ready.push_back(parent);
        }
    }
}

/// The first instant at or after `from` whose `timeframe` ordinal is at least `target`.
fn start_of(calendar: &Calendar, timeframe: Timeframe, target: i64, from: Timestamp) -> Timestamp {
    let ordinal = |at: Timestamp| calendar.ordinals(at)[timeframe.index()];
    let mut low = from.as_second();
    if ordinal(from) >= target {
        return from;
    }
    // An upper bound: each interval is at most about a year and a day long.
    let mut step: i64 = 3600;
    let mut high = low + step;
    while Timestamp::from_second(high).is_ok_and(|at| ordinal(at) < target) {
        low = high;
        step = step.saturating_mul(2);
        high = low.saturating_add(step);
    }
    let Ok(mut high_at) = Timestamp::from_second(high) else {
        return Timestamp::MAX;
    };
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        let at = Timestamp::from_second(mid).unwrap_or(high_at);
        if ordinal(at) >= target {
            high = mid;
            high_at = at;
        } else {
            low = mid;
        }
    }
    high_at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn a_yearly_full_outlives_the_monthlies_and_dailies_it_may_carry() {
        let calendar = Calendar::default();
        let policy = Policy::parse("1y 12m 14d").unwrap();
        // The first backup of 2026: its December monthly is kept 12 months, until 2027-12.
        assert_eq!(
            keep_until(
                &policy,
                &calendar,
                at("2026-01-01T06:00:00Z"),
                Some(Timeframe::Yearly)
            ),
            Some(at("2027-12-01T00:00:00Z"))
        );
        // A monthly of November 2026: its last daily (Nov 30) is kept 14 days, the monthly
        // itself 12 months: until 2027-11-01.
        assert_eq!(
            keep_until(
                &policy,
                &calendar,
                at("2026-11-01T06:00:00Z"),
                Some(Timeframe::Monthly)
            ),
            Some(at("2027-11-01T00:00:00Z"))
        );
        // A daily: 14 days from its day, the day included.
        assert_eq!(
            keep_until(
                &policy,
                &calendar,
                at("2026-11-05T06:00:00Z"),
                Some(Timeframe::Daily)
            ),
            Some(at("2026-11-19T00:00:00Z"))
        );
        // A leaf counts as its day's first.
        assert_eq!(
            keep_until(&policy, &calendar, at("2026-11-05T18:00:00Z"), None),
            Some(at("2026-11-19T00:00:00Z"))
        );
        // `*`: forever.
        let all = Policy::parse("*y 14d").unwrap();
        assert_eq!(
            keep_until(
                &all,
                &calendar,
                at("2026-01-01T06:00:00Z"),
                Some(Timeframe::Yearly)
            ),
            None
        );
    }

    #[test]
    fn intervals_are_civil_in_the_calendars_zone() {
        // Berlin: 2026-03-29 has 23 hours; the day after the 28th starts at 23:00 UTC.
        let berlin = Calendar::new(
            jiff::tz::TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap(),
            jiff::civil::Weekday::Monday,
        );
        let policy = Policy::parse("2d").unwrap();
        assert_eq!(
            keep_until(
                &policy,
                &berlin,
                at("2026-03-28T12:00:00Z"),
                Some(Timeframe::Daily)
            ),
            Some(at("2026-03-29T22:00:00Z")),
            "the 30th begins at 00:00 CEST"
        );
    }

    #[test]
    fn lock_dates_follow_what_each_backup_is_the_first_of() {
        let calendar = Calendar::default();
        let policy = Policy::parse("1y 12m 14d").unwrap();
        let item = |name: &str, time: Option<&str>| Item {
            name: name.to_owned(),
            time: time.map(at),
        };
        let items = [
            item("p@jan-2", Some("2026-01-02T06:00:00Z")),
            item("p@jan-1", Some("2026-01-01T06:00:00Z")),
            item("p@jan-1-late", Some("2026-01-01T18:00:00Z")),
            item("p@feb-1", Some("2026-02-01T06:00:00Z")),
            item("p@orig", None),
        ];
        let dates: Vec<(String, Option<Timestamp>)> = lock_dates(&policy, &items, &calendar);
        let date = |name: &str| dates.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(dates.len(), items.len());
        assert_eq!(dates[0].0, "p@jan-2", "in the order given");
        assert_eq!(
            date("p@jan-1"),
            Some(at("2027-12-01T00:00:00Z")),
            "the yearly"
        );
        assert_eq!(
            date("p@feb-1"),
            Some(at("2027-02-01T00:00:00Z")),
            "a monthly"
        );
        assert_eq!(date("p@jan-2"), Some(at("2026-01-16T00:00:00Z")), "a daily");
        assert_eq!(
            date("p@jan-1-late"),
            Some(at("2026-01-15T00:00:00Z")),
            "a leaf lives as long as its day's first daily would"
        );
        assert_eq!(date("p@orig"), None, "time unknown: forever");
        // The yearly deleted by hand: the late one of that day is now the year's first.
        let without: Vec<Item> = items
            .iter()
            .filter(|i| i.name != "p@jan-1")
            .cloned()
            .collect();
        let dates = lock_dates(&policy, &without, &calendar);
        assert_eq!(
            dates.iter().find(|(n, _)| n == "p@jan-1-late").unwrap().1,
            Some(at("2027-12-01T00:00:00Z"))
        );
    }

    #[test]
    fn bases_are_raised_to_their_latest_descendant() {
        use crate::remote::{ObjectMeta, RemoteSnapshot};
        let object = |name: &str, parent: Option<&str>| RemoteSnapshot {
            key: format!("z/{name}"),
            name: name.to_owned(),
            object_size: 1,
            meta: ObjectMeta {
                is_full: parent.is_none(),
                parent: parent.map(str::to_owned),
                ..ObjectMeta::default()
            },
            etag: None,
        };
        let index = RemoteIndex::new(vec![
            object("p@full", None),
            object("p@a", Some("p@full")),
            object("p@b", Some("p@a")),
            object("p@c", Some("p@full")),
            object("p@loop1", Some("p@loop2")),
            object("p@loop2", Some("p@loop1")),
            object("p@orphan", Some("p@gone")),
        ]);
        let day = |d: u32| Some(at(&format!("2026-01-{d:02}T00:00:00Z")));
        let mut dates: HashMap<String, Option<Timestamp>> = [
            ("p@full", day(5)),
            ("p@a", day(3)),
            ("p@b", day(20)),
            ("p@c", day(9)),
            ("p@loop1", day(1)),
            ("p@loop2", day(2)),
            ("p@orphan", day(4)),
        ]
        .into_iter()
        .map(|(n, d)| (n.to_owned(), d))
        .collect();
        extend_to_children(&index, &mut dates);
        assert_eq!(dates["p@b"], day(20));
        assert_eq!(dates["p@a"], day(20), "raised to its child");
        assert_eq!(dates["p@full"], day(20), "and transitively");
        assert_eq!(dates["p@c"], day(9));
        assert_eq!((dates["p@loop1"], dates["p@loop2"]), (day(1), day(2)));
        assert_eq!(dates["p@orphan"], day(4));
        // Forever wins.
        dates.insert("p@c".into(), None);
        extend_to_children(&index, &mut dates);
        assert_eq!(dates["p@full"], None);
        assert_eq!(dates["p@a"], day(20));
    }

    /// The bound holds against `preserve`: at any moment before `keep_until`, the policy still
    /// preserves the first backup of the represented interval.
    #[test]
    fn preserve_keeps_the_representative_until_then() {
        use crate::retention::{Item, preserve};
        let calendar = Calendar::default();
        let policy = Policy::parse("1y 3m 5d").unwrap();
        let first = at("2026-02-01T06:00:00Z");
        let until = keep_until(&policy, &calendar, first, Some(Timeframe::Monthly)).unwrap();
        let items = [
            Item {
                name: "p@first".into(),
                time: Some(first),
            },
            Item {
                name: "p@later".into(),
                time: Some(at("2026-02-10T06:00:00Z")),
            },
        ];
        let mut now = at("2026-02-11T00:00:00Z");
        let mut kept_to = now;
        while now < until {
            // The newest is always kept; add a newer item so "newest" is not what keeps it.
            let mut all = items.to_vec();
            all.push(Item {
                name: "p@now".into(),
                time: Some(now),
            });
            let verdict = preserve(&policy, &all, now, &calendar);
            if matches!(
                verdict.verdict("p@first"),
                Some(crate::retention::Verdict::Preserved(_))
            ) {
                kept_to = now;
            }
            now = now
                .checked_add(jiff::SignedDuration::from_hours(24 * 7))
                .unwrap();
        }
        // Preserved as a monthly through April 2026 (3 months); keep_until is later (its last
        // daily descendant), never earlier.
        assert!(kept_to >= at("2026-04-20T00:00:00Z"), "{kept_to}");
        assert!(until >= kept_to);
    }
}

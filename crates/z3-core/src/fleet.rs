//! `z3 status --all`: one summary per dataset found in the bucket, for operators who back up
//! many datasets and want one screen (or one JSON document for monitoring) that says which are
//! current and healthy.
//!
//! The input is every backup object under the key prefix, whatever its snapshot name, with its
//! last-modified time; objects are grouped by the dataset part of their name (`ds` of `ds@snap`).
//! Health is computed per dataset over all of its objects (unlike `z3 status`, no snapshot
//! prefix narrows the listing, so a parent with another prefix is not missing).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::remote::{RemoteIndex, RemoteSnapshot};

/// One backup object and when it was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetObject {
    /// The object.
    pub object: RemoteSnapshot,
    /// Its last-modified time, in seconds since the Unix epoch, when the store reports one.
    pub last_modified: Option<i64>,
}

/// The state of one dataset's backups.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DatasetSummary {
    /// The dataset, as named in the object keys.
    pub dataset: String,
    /// How many backup objects it has.
    pub objects: usize,
    /// Their total size as stored (compressed, encrypted), in bytes.
    pub bytes: u64,
    /// The snapshot (without `dataset@`) of the most recently stored object.
    pub newest: Option<String>,
    /// When that object was stored, in seconds since the Unix epoch.
    pub newest_at: Option<i64>,
    /// Seconds from `newest_at` to now (never negative).
    pub age_secs: Option<i64>,
    /// How many objects a restore of the newest receives (1 for a full); `None` when its chain
    /// is broken.
    pub depth: Option<usize>,
    /// Whether every object's chain reaches a full backup.
    pub healthy: bool,
    /// How many objects have a broken chain.
    pub broken: usize,
}

/// Groups `objects` by dataset and summarises each, sorted by dataset name; `now` is seconds
/// since the Unix epoch.
#[must_use]
pub fn summarize(objects: Vec<FleetObject>, now: i64) -> Vec<DatasetSummary> {
    let mut by_dataset: BTreeMap<String, Vec<FleetObject>> = BTreeMap::new();
    for item in objects {
        let dataset = item
            .object
            .name
            .split_once('@')
            .map_or(item.object.name.as_str(), |(dataset, _)| dataset)
            .to_owned();
        by_dataset.entry(dataset).or_default().push(item);
    }
    by_dataset
        .into_iter()
        .map(|(dataset, items)| summarize_one(dataset, items, now))
        .collect()
}

fn summarize_one(dataset: String, items: Vec<FleetObject>, now: i64) -> DatasetSummary {
    let newest = items
        .iter()
        .max_by(|a, b| (a.last_modified, &a.object.name).cmp(&(b.last_modified, &b.object.name)))
        .map(|item| (item.object.name.clone(), item.last_modified));
    let bytes = items.iter().map(|item| item.object.object_size).sum();
    let count = items.len();
    let index = RemoteIndex::new(items.into_iter().map(|item| item.object).collect());
    let broken = index.health_map().broken().count();
    let depth = newest
        .as_ref()
        .and_then(|(name, _)| index.restore_depth(name));
    DatasetSummary {
        dataset,
        objects: count,
        bytes,
        newest: newest
            .as_ref()
            .and_then(|(name, _)| index.get(name))
            .map(|object| object.short_name().to_owned()),
        newest_at: newest.as_ref().and_then(|(_, at)| *at),
        age_secs: newest
            .as_ref()
            .and_then(|(_, at)| *at)
            .map(|at| (now - at).max(0)),
        depth,
        healthy: broken == 0,
        broken,
    }
}

/// A duration for a table cell: `45s`, `12m`, `5h 3m`, `3d 4h`.
#[must_use]
pub fn age(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// The `z3 status --all` table: a title row, then one line per dataset; columns left-aligned
/// and padded, joined by `" | "`.
#[must_use]
pub fn render_fleet(rows: &[DatasetSummary]) -> String {
    const HEADERS: [&str; 7] = [
        "DATASET", "NEWEST", "AGE", "DEPTH", "HEALTH", "OBJECTS", "SIZE",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|row| {
            [
                row.dataset.clone(),
                row.newest.clone().unwrap_or_else(|| "-".into()),
                row.age_secs.map_or_else(|| "-".into(), age),
                row.depth.map_or_else(|| "-".into(), |d| d.to_string()),
                if row.healthy {
                    "ok".to_owned()
                } else {
                    format!("{} broken", row.broken)
                },
                row.objects.to_string(),
                crate::humanize::humanize(row.bytes),
            ]
        })
        .collect();
    let mut widths = HEADERS.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in std::iter::once(HEADERS.map(str::to_owned)).chain(cells) {
        let padded: Vec<String> = line
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", padded.join(" | ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::ObjectMeta;

    fn object(name: &str, parent: Option<&str>, size: u64, at: i64) -> FleetObject {
        FleetObject {
            object: RemoteSnapshot {
                key: format!("z3/{name}"),
                name: name.to_owned(),
                object_size: size,
                meta: ObjectMeta {
                    is_full: parent.is_none(),
                    parent: parent.map(str::to_owned),
                    ..ObjectMeta::default()
                },
                etag: None,
            },
            last_modified: Some(at),
        }
    }

    #[test]
    fn one_row_per_dataset_with_newest_depth_and_health() {
        let rows = summarize(
            vec![
                object("tank/b@1", None, 10, 100),
                object("tank/a@d1", None, 1000, 100),
                object("tank/a@d2", Some("tank/a@d1"), 10, 200),
                object("tank/a@d3", Some("tank/a@d2"), 10, 300),
                // A tree: a daily on the full, stored later than the linear link above.
                object("tank/a@m1", Some("tank/a@d1"), 5, 400),
                object("tank/b@2", Some("tank/b@gone"), 7, 500),
            ],
            4000,
        );
        assert_eq!(rows.len(), 2);
        let a = &rows[0];
        assert_eq!(a.dataset, "tank/a");
        assert_eq!(a.objects, 4);
        assert_eq!(a.bytes, 1025);
        assert_eq!(a.newest.as_deref(), Some("m1"));
        assert_eq!(a.newest_at, Some(400));
        assert_eq!(a.age_secs, Some(3600));
        assert_eq!(a.depth, Some(2));
        assert!(a.healthy);
        let b = &rows[1];
        assert_eq!(b.newest.as_deref(), Some("2"));
        assert_eq!(b.depth, None, "the newest's parent is missing");
        assert!(!b.healthy);
        assert_eq!(b.broken, 1);
    }

    #[test]
    fn the_newest_by_time_even_when_names_sort_otherwise_and_age_is_never_negative() {
        let rows = summarize(
            vec![
                object("p/fs@zzz", None, 1, 50),
                object("p/fs@aaa", Some("p/fs@zzz"), 1, 60),
            ],
            10,
        );
        assert_eq!(rows[0].newest.as_deref(), Some("aaa"));
        assert_eq!(rows[0].age_secs, Some(0), "clock skew: stored after now");
        assert_eq!(rows[0].depth, Some(2));
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(-5), "0s");
        assert_eq!(age(59), "59s");
        assert_eq!(age(60), "1m");
        assert_eq!(age(3 * 3600 + 7 * 60), "3h 7m");
        assert_eq!(age(2 * 86_400 + 5 * 3600 + 59), "2d 5h");
    }

    #[test]
    fn table_is_aligned() {
        let rows = summarize(
            vec![
                object("tank/data@daily-1", None, 3 << 20, 0),
                object("t/b@x", Some("t/b@y"), 1 << 20, 0),
            ],
            90_000,
        );
        let table = render_fleet(&rows);
        let expected = "\
DATASET   | NEWEST  | AGE   | DEPTH | HEALTH   | OBJECTS | SIZE
t/b       | x       | 1d 1h | -     | 1 broken | 1       | 1 M
tank/data | daily-1 | 1d 1h | 1     | ok       | 1       | 3 M
";
        assert_eq!(table, expected);
    }
}

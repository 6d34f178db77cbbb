//! The `z3 status` report: local snapshots and backup objects side by side (docs/compatibility.md,
//! "Status output").
//!
//! The rows and the table layout copy the original exactly, because people compare the output
//! of both tools. Unlike the original, objects without metadata or with a `parent` lacking `@`
//! get a row instead of crashing the command (docs/compatibility.md, bug 5).

use std::fmt;

use crate::humanize::humanize;
use crate::remote::{RemoteIndex, RemoteSnapshot};
use crate::snapshot::{LocalChain, LocalEntry};

/// What a status row describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RowKind {
    /// A full backup object.
    Full,
    /// An incremental backup object.
    Incremental,
    /// A local snapshot with no backup object.
    Missing,
}

impl RowKind {
    /// The TYPE cell text.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Incremental => "incremental",
            Self::Missing => "missing",
        }
    }
}

impl fmt::Display for RowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the status table, as data (for `--json` style output) before formatting.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatusRow {
    /// Snapshot name without `dataset@`.
    pub name: String,
    /// Parent name without `dataset@`; `None` for fulls and missing rows.
    pub parent: Option<String>,
    /// Full, incremental, or only local.
    pub kind: RowKind,
    /// `ok`, the broken reason, or `unsealed` (a healthy chain link written by z3 whose seal is
    /// missing); `None` for missing rows.
    pub health: Option<String>,
    /// Whether the snapshot exists locally.
    pub local: bool,
    /// The local snapshot of that name is not the one in the bucket: the object records another
    /// `guid` (the snapshot was destroyed and re-created). Shown as `guid mismatch`.
    pub guid_mismatch: bool,
    /// The `size` metadata (uncompressed estimate), if any.
    pub size: Option<u64>,
}

impl StatusRow {
    /// The six cells in table order, as the original printed them.
    fn cells(&self) -> [String; 6] {
        let missing = self.kind == RowKind::Missing;
        let parent = match (&self.parent, missing) {
            (_, true) => "-".to_owned(),
            (Some(parent), false) => parent.clone(),
            (None, false) => String::new(),
        };
        let health = match (&self.health, missing) {
            (Some(health), _) => health.clone(),
            (None, true) => "-".to_owned(),
            (None, false) => String::new(),
        };
        let local = match (self.local, self.guid_mismatch) {
            (true, true) => "guid mismatch",
            (true, false) => "ok",
            (false, _) => "missing",
        };
        [
            self.name.clone(),
            parent,
            self.kind.as_str().to_owned(),
            health,
            local.to_owned(),
            self.size.map(humanize).unwrap_or_default(),
        ]
    }
}

/// Column titles of the table.
const HEADERS: [&str; 6] = ["NAME", "PARENT", "TYPE", "HEALTH", "LOCAL STATE", "SIZE"];

/// Pairs local snapshots with backup objects, in the original's order: every local snapshot in
/// list order with its object (if any), then the objects without a local snapshot, by name.
#[must_use]
pub fn pair_list<'a>(
    local: &'a LocalChain,
    remote: &'a RemoteIndex,
) -> Vec<(Option<&'a LocalEntry>, Option<&'a RemoteSnapshot>)> {
    let mut pairs: Vec<_> = local
        .entries()
        .iter()
        .map(|entry| (Some(entry), remote.get(&entry.snapshot.name.to_string())))
        .collect();
    pairs.extend(
        remote
            .iter()
            .filter(|object| !local.contains(&object.name))
            .map(|object| (None, Some(object))),
    );
    pairs
}

/// The status rows, sorted as the original sorted its cell tuples (by NAME first).
#[must_use]
pub fn status_rows(local: &LocalChain, remote: &RemoteIndex) -> Vec<StatusRow> {
    let mut rows: Vec<StatusRow> = pair_list(local, remote)
        .into_iter()
        .filter_map(|pair| match pair {
            (_, Some(object)) => Some(StatusRow {
                name: object.short_name().to_owned(),
                parent: if object.meta.is_full {
                    None
                } else {
                    object.parent_short_name().map(str::to_owned)
                },
                kind: if object.meta.is_full {
                    RowKind::Full
                } else {
                    RowKind::Incremental
                },
                health: remote.health(&object.name).map(|health| {
                    if health.is_healthy() && remote.is_unsealed(&object.name) {
                        "unsealed".to_owned()
                    } else {
                        health.to_string()
                    }
                }),
                local: pair.0.is_some(),
                guid_mismatch: pair
                    .0
                    .zip(object.meta.guid)
                    .is_some_and(|(entry, guid)| entry.snapshot.guid != guid),
                size: object.meta.size,
            }),
            (Some(entry), None) => Some(StatusRow {
                name: entry.snapshot.name.snapshot().to_string(),
                parent: None,
                kind: RowKind::Missing,
                health: None,
                local: true,
                guid_mismatch: false,
                size: None,
            }),
            (None, None) => None,
        })
        .collect();
    rows.sort_by_cached_key(StatusRow::cells);
    rows
}

/// The line above the table: `backup status for <ds>@<prefix>* on <bucket>/<raw prefix>`.
///
/// The prefix is shown as typed, not normalised, as in the original.
#[must_use]
pub fn header_line(
    dataset: &str,
    snapshot_prefix: &str,
    bucket: &str,
    raw_s3_prefix: &str,
) -> String {
    format!("backup status for {dataset}@{snapshot_prefix}* on {bucket}/{raw_s3_prefix}")
}

/// Renders the table: a title row, then one line per row; every column left-aligned and padded
/// to its widest cell (trailing padding kept), cells joined by `" | "`, each line ending in `\n`.
#[must_use]
pub fn render_table(rows: &[StatusRow]) -> String {
    let cells: Vec<[String; 6]> = rows.iter().map(StatusRow::cells).collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut push_line = |line: &[&str]| {
        for (i, (cell, width)) in line.iter().zip(widths).enumerate() {
            if i > 0 {
                out.push_str(" | ");
            }
            out.push_str(cell);
            let pad = width - cell.chars().count();
            out.extend(std::iter::repeat_n(' ', pad));
        }
        out.push('\n');
    };
    push_line(&HEADERS);
    for row in &cells {
        push_line(&row.each_ref().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_kind_text_and_serde() {
        for (kind, text) in [
            (RowKind::Full, "full"),
            (RowKind::Incremental, "incremental"),
            (RowKind::Missing, "missing"),
        ] {
            assert_eq!(kind.to_string(), text);
            assert_eq!(kind.as_str(), text);
        }
    }

    #[test]
    fn empty_table_is_just_the_title_row() {
        assert_eq!(
            render_table(&[]),
            "NAME | PARENT | TYPE | HEALTH | LOCAL STATE | SIZE\n"
        );
    }

    #[test]
    fn header_keeps_raw_prefix() {
        assert_eq!(
            header_line("pool/fs", "snap_", "mybucket", "enc"),
            "backup status for pool/fs@snap_* on mybucket/enc"
        );
    }

    #[test]
    fn real_run_example_of_the_spec() {
        let row = |name: &str, parent: Option<&str>| StatusRow {
            name: name.to_owned(),
            parent: parent.map(str::to_owned),
            kind: if parent.is_some() {
                RowKind::Incremental
            } else {
                RowKind::Full
            },
            health: Some("ok".to_owned()),
            local: true,
            guid_mismatch: false,
            size: Some(12_582_912),
        };
        let rows = [
            row("zfs-auto-snap:daily-2024-01-01", None),
            row(
                "zfs-auto-snap:daily-2024-01-02",
                Some("zfs-auto-snap:daily-2024-01-01"),
            ),
            row(
                "zfs-auto-snap:daily-2024-01-03",
                Some("zfs-auto-snap:daily-2024-01-02"),
            ),
        ];
        let expected = "\
NAME                           | PARENT                         | TYPE        | HEALTH | LOCAL STATE | SIZE
zfs-auto-snap:daily-2024-01-01 |                                | full        | ok     | ok          | 12 M
zfs-auto-snap:daily-2024-01-02 | zfs-auto-snap:daily-2024-01-01 | incremental | ok     | ok          | 12 M
zfs-auto-snap:daily-2024-01-03 | zfs-auto-snap:daily-2024-01-02 | incremental | ok     | ok          | 12 M
";
        assert_eq!(render_table(&rows), expected);
    }
}

//! Pure parsers over the text `zfs` prints, tested on captured output of both dialects.
//!
//! Nothing here runs a process. [`ZfsCli`](crate::ZfsCli) feeds these functions the stdout and
//! stderr it captured, and the fake reuses [`error_kind_for`] so that both implementations
//! classify the same stderr text the same way. Every parser is total: arbitrary input gives
//! `Ok` or a [`ParseError`], never a panic (a proptest checks this).
//!
//! Formats (docs/compatibility.md, "What `zfs` prints"):
//! * `-H` output has one record per line and fields separated by a single TAB. Names may
//!   contain spaces, so lines are split on TAB only.
//! * OpenZFS `zfs list -H -p -o name,guid,createtxg` prints `name TAB guid TAB createtxg`.
//! * zfs-fuse lacks `list -p`, and its `guid` without `-p` is abbreviated (`14.4E`), so the
//!   legacy path reads `zfs get -H -p -o name,property,value guid,createtxg` triples instead.
//! * `zfs send -nvP` prints `full`/`incremental` lines and a final `size` line.
//! * `zfs list -H -p -t bookmark -o name,guid,createtxg,creation` (OpenZFS only) prints
//!   `pool/fs#bm TAB guid TAB createtxg TAB creation`.
//! * z3's hold markers are read with `zfs get -H -p -d 1 -s local -o name,property,value
//!   z3:hold:<tag> <fs>` on both dialects ([`held_snapshots`]).

use crate::error::{ErrorKind, Subject};

/// A snapshot row as `zfs` printed it, before name validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSnapshot {
    /// The full name `dataset@snapshot`, exactly as printed.
    pub name: String,
    /// The `guid` property.
    pub guid: u64,
    /// The `createtxg` property.
    pub createtxg: u64,
    /// The `creation` property in Unix seconds; `None` when the row did not carry it.
    pub creation: Option<i64>,
}

/// A bookmark row as `zfs list -t bookmark` printed it, before name validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBookmark {
    /// The full name `dataset#bookmark`, exactly as printed.
    pub name: String,
    /// The `guid` property: the guid of the snapshot the bookmark was made from.
    pub guid: u64,
    /// The `createtxg` property: that snapshot's createtxg.
    pub createtxg: u64,
    /// The `creation` property in Unix seconds: that snapshot's creation time.
    pub creation: Option<i64>,
}

/// Output that does not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number in the parsed text (0 when the problem is not tied to one line).
    pub line: usize,
    /// Lowercase description, quoting the offending text.
    pub message: String,
}

fn parse_err(line: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        line,
        message: message.into(),
    }
}

/// Parses a decimal `u64` field; `what` names it in the error.
fn number(line: usize, what: &str, text: &str) -> Result<u64, ParseError> {
    text.parse::<u64>()
        .map_err(|_| parse_err(line, format!("{what} is not an unsigned integer: {text:?}")))
}

/// Parses a `creation` value in Unix seconds (`-p`); `-` (does not apply) gives `None`.
fn creation(line: usize, text: &str) -> Result<Option<i64>, ParseError> {
    if text == "-" {
        return Ok(None);
    }
    text.parse::<i64>().map(Some).map_err(|_| {
        parse_err(
            line,
            format!("creation is not a number of seconds: {text:?}"),
        )
    })
}

/// Lines without their line terminator (`\n` or `\r\n`), numbered from 1, empty ones skipped.
fn records(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
        .filter(|(_, l)| !l.trim().is_empty())
}

/// Parses `zfs list -H -p -t snapshot -o name,guid,createtxg,creation` output (OpenZFS).
///
/// Rows keep their order (the command sorts by `createtxg`). The zfs-fuse banner
/// `no datasets available` (printed on stdout when nothing matched) is skipped. Rows of three
/// fields (`name,guid,createtxg`, without `creation`) are accepted with `creation: None`.
///
/// # Errors
/// [`ParseError`] for a row that does not have three or four TAB-separated fields, a name
/// without `@`, a number that is not a `u64` (such as `14.4E`, zfs-fuse's `guid` without
/// `-p`), or a `creation` that is not in seconds (such as `Thu Nov 26 23:17 2026`, without `-p`).
pub fn snapshot_list(stdout: &str) -> Result<Vec<RawSnapshot>, ParseError> {
    list_rows(stdout, '@', "snapshot")?
        .into_iter()
        .map(|(name, guid, createtxg, creation)| {
            Ok(RawSnapshot {
                name,
                guid,
                createtxg,
                creation,
            })
        })
        .collect()
}

/// Parses `zfs list -H -p -t bookmark -o name,guid,createtxg,creation` output (OpenZFS ≥0.6.4;
/// zfs-fuse has no bookmarks). Same rules as [`snapshot_list`], with `#` in place of `@`.
///
/// # Errors
/// As for [`snapshot_list`]; a name without `#` is not a bookmark.
pub fn bookmark_list(stdout: &str) -> Result<Vec<RawBookmark>, ParseError> {
    list_rows(stdout, '#', "bookmark")?
        .into_iter()
        .map(|(name, guid, createtxg, creation)| {
            Ok(RawBookmark {
                name,
                guid,
                createtxg,
                creation,
            })
        })
        .collect()
}

type ListRow = (String, u64, u64, Option<i64>);

/// `name TAB guid TAB createtxg [TAB creation]` rows whose name contains `delimiter`.
fn list_rows(stdout: &str, delimiter: char, what: &str) -> Result<Vec<ListRow>, ParseError> {
    let mut out = Vec::new();
    for (n, line) in records(stdout) {
        if line == "no datasets available" {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let (name, guid, createtxg, created) = match fields.as_slice() {
            [name, guid, createtxg] => (name, guid, createtxg, None),
            [name, guid, createtxg, created] => (name, guid, createtxg, Some(*created)),
            _ => {
                return Err(parse_err(
                    n,
                    format!(
                        "expected name, guid, createtxg and creation separated by tabs: {line:?}"
                    ),
                ));
            }
        };
        if !name.contains(delimiter) {
            return Err(parse_err(n, format!("not a {what} name: {name:?}")));
        }
        out.push((
            (*name).to_owned(),
            number(n, "guid", guid)?,
            number(n, "createtxg", createtxg)?,
            match created {
                Some(text) => creation(n, text)?,
                None => None,
            },
        ));
    }
    Ok(out)
}

/// Parses `zfs get -H -p -d 1 -o name,property,value guid,createtxg,creation <fs>` output
/// (zfs-fuse).
///
/// `get -d 1` also reports the filesystem itself and its direct children (zfs-fuse has no
/// `get -t snapshot`), so rows whose name has no `@` are dropped. The remaining rows are
/// grouped by name and sorted by `createtxg`; other properties are ignored. A snapshot
/// without a `creation` row gets `creation: None`.
///
/// # Errors
/// [`ParseError`] for a row that is not three TAB-separated fields, a value that is not a
/// `u64`, or a snapshot that lacks `guid` or `createtxg`.
pub fn snapshot_properties(stdout: &str) -> Result<Vec<RawSnapshot>, ParseError> {
    // (name, guid, createtxg, creation, line of first appearance), in order of first appearance.
    type Partial = (String, Option<u64>, Option<u64>, Option<i64>, usize);
    let mut rows: Vec<Partial> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for (n, line) in records(stdout) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, property, value] = fields.as_slice() else {
            return Err(parse_err(
                n,
                format!("expected name, property and value separated by tabs: {line:?}"),
            ));
        };
        if !name.contains('@') {
            continue;
        }
        let slot = *index.entry((*name).to_owned()).or_insert_with(|| {
            rows.push(((*name).to_owned(), None, None, None, n));
            rows.len() - 1
        });
        match *property {
            "guid" => rows[slot].1 = Some(number(n, "guid", value)?),
            "createtxg" => rows[slot].2 = Some(number(n, "createtxg", value)?),
            "creation" => rows[slot].3 = creation(n, value)?,
            _ => {}
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for (name, guid, createtxg, creation, n) in rows {
        let (Some(guid), Some(createtxg)) = (guid, createtxg) else {
            return Err(parse_err(
                n,
                format!("snapshot {name:?} lacks its guid or createtxg"),
            ));
        };
        out.push(RawSnapshot {
            name,
            guid,
            createtxg,
            creation,
        });
    }
    // Stable: snapshots with equal createtxg (impossible in one dataset) keep their order.
    out.sort_by_key(|s| s.createtxg);
    Ok(out)
}

/// Parses the dry-run estimate of `zfs send -nvP`: the `size` line if present, otherwise
/// the bytes of the last `full`/`incremental` line.
///
/// Handles every layout of docs/compatibility.md, "`zfs send` size estimates": the resume-token
/// preamble (`resume token contents:`, `nvlist version: 0` and indented `key = value` lines),
/// the 2.x warning line, OpenZFS ≤0.8 resume output without a `size` line, and the 0.7.x
/// zero-size lines that drop the bytes field (`full TAB name`, `incremental TAB from TAB to`),
/// which mean 0. Values are parsed as `u64`: 2.x can print absurd estimates such as
/// `18446744073614344448` for resumed incrementals, which are returned as they are (callers
/// clamp part sizes anyway).
///
/// Returns `Ok(None)` when the text holds no estimate line at all (for example when ≤0.6.4
/// printed it to the other stream).
///
/// # Errors
/// [`ParseError`] for an estimate line whose byte count is not a `u64` or that has the
/// wrong number of fields.
pub fn send_estimate(text: &str) -> Result<Option<u64>, ParseError> {
    let mut size = None;
    let mut last = None;
    for (n, line) in records(text) {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields[0] {
            "full" => match fields.len() {
                2 => last = Some(0),
                3 => last = Some(number(n, "estimated size", fields[2])?),
                _ => return Err(parse_err(n, format!("malformed estimate line: {line:?}"))),
            },
            "incremental" => match fields.len() {
                3 => last = Some(0),
                4 => last = Some(number(n, "estimated size", fields[3])?),
                _ => return Err(parse_err(n, format!("malformed estimate line: {line:?}"))),
            },
            _ => {
                // `size` carries no name, so any whitespace may separate it from the number.
                if let Some(rest) = line.strip_prefix("size")
                    && rest.starts_with(char::is_whitespace)
                {
                    size = Some(number(n, "total estimated size", rest.trim())?);
                }
            }
        }
    }
    Ok(size.or(last))
}

/// Parses `zfs get -H -p -d 1 -s local -o name,property,value <property> <fs>`: the names of
/// the snapshots on which `property` is set locally, in the order printed.
///
/// Rows of the filesystem itself or its children (no `@`), of another property, and rows whose
/// value is `-` (not set; printed when `-s local` is missing) are dropped. z3 asks with
/// `-s local` because snapshots *inherit* user properties from their filesystem (captured on
/// zfs-fuse: `pool/fs@a z3:other x inherited from pool/fs`, TAB-separated), and only a marker set on the
/// snapshot itself means z3 held it.
///
/// # Errors
/// [`ParseError`] for a row that is not three TAB-separated fields.
pub fn held_snapshots(stdout: &str, property: &str) -> Result<Vec<String>, ParseError> {
    let mut out = Vec::new();
    for (n, line) in records(stdout) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, prop, value] = fields.as_slice() else {
            return Err(parse_err(
                n,
                format!("expected name, property and value separated by tabs: {line:?}"),
            ));
        };
        if name.contains('@') && *prop == property && *value != "-" {
            out.push((*name).to_owned());
        }
    }
    Ok(out)
}

/// Parses the single value printed by `zfs get -H -p -o value <property> <name>`.
///
/// # Errors
/// [`ParseError`] when the output is not exactly one unsigned integer (`-` means the property
/// does not apply).
pub fn property_u64(stdout: &str) -> Result<u64, ParseError> {
    let mut lines = records(stdout);
    let Some((n, value)) = lines.next() else {
        return Err(parse_err(0, "empty output, expected one value"));
    };
    if let Some((extra, _)) = lines.next() {
        return Err(parse_err(extra, "more than one value"));
    }
    number(n, "property value", value.trim())
}

/// Parses `zfs get -H -p -o value referenced,compressratio <snapshot>` into the snapshot's
/// logical (uncompressed) size: `referenced × compressratio`, rounded up. `referenced` is the
/// compressed size on disk, while `zfs send` streams the data uncompressed, so a 2:1 compressed
/// dataset sends twice its `referenced`. zfs-fuse prints the ratio as `1.50x` even with `-p`,
/// OpenZFS as `1.50`; a ratio that is missing (`-`), unparsable or below 1 counts as 1.
///
/// # Errors
/// [`ParseError`] when `referenced` is not an unsigned integer or a line is missing.
pub fn logical_size(stdout: &str) -> Result<u64, ParseError> {
    let mut lines = records(stdout);
    let Some((n, referenced)) = lines.next() else {
        return Err(parse_err(
            0,
            "empty output, expected referenced and compressratio",
        ));
    };
    let referenced = number(n, "referenced", referenced.trim())?;
    let Some((_, ratio)) = lines.next() else {
        return Err(parse_err(n + 1, "compressratio is missing"));
    };
    let ratio = ratio
        .trim()
        .trim_end_matches(['x', 'X'])
        .parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r >= 1.0)
        .unwrap_or(1.0);
    // Ratios have two decimals; f64 is exact enough far beyond any dataset size.
    #[allow(
        clippy::cast_sign_loss,
        clippy::cast_possible_truncation,
        clippy::cast_precision_loss
    )]
    let logical = (referenced as f64 * ratio).ceil() as u64;
    Ok(logical.max(referenced))
}

/// The meaning of a failed command's stderr, as far as z3 cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StderrClass {
    /// Something does not exist. `name` is the object `zfs` named, when it named one
    /// (`cannot open 'pool/x': dataset does not exist` gives `pool/x`; zfs-fuse's
    /// `incremental source (@zz) does not exist` gives `@zz`).
    NotFound {
        /// The missing dataset or snapshot as printed.
        name: Option<String>,
    },
    /// A usage error naming an unknown option (`invalid option 'p'`): an older `zfs`.
    InvalidOption,
    /// A usage error naming an unknown type (`invalid type 'snap'`): an older `zfs`.
    InvalidType,
    /// The receiver rejected the stream (bad magic, checksum, truncated, empty).
    InvalidStream,
    /// `zfs hold`: the snapshot already carries this tag (`tag already exists on this dataset`).
    HoldExists,
    /// `zfs release`: the snapshot does not carry this tag (`no such tag on this dataset`).
    NoSuchHold,
    /// `zfs destroy` of a held snapshot (or a filesystem with one): `dataset is busy`.
    Busy,
    /// A subcommand this `zfs` does not know (`unrecognized command 'bookmark'`, zfs-fuse).
    UnknownCommand,
    /// Not root and not delegated: `Permission denied the ZFS utilities must be run as root.`,
    /// `cannot open '/dev/zfs': Permission denied`, `cannot hold: permission denied`.
    PermissionDenied,
    /// Anything else.
    Other,
}

impl StderrClass {
    /// True for the usage errors that reveal an older `zfs` dialect, on which the caller falls
    /// back to the legacy command.
    #[must_use]
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            Self::InvalidOption | Self::InvalidType | Self::UnknownCommand
        )
    }
}

/// Reasons `zfs receive` gives for a stream it cannot use (OpenZFS 0.6–2.x and zfs-fuse).
const STREAM_ERRORS: [&str; 6] = [
    "invalid stream",
    "invalid backup stream",
    "incomplete stream",
    "checksum mismatch",
    "failed to read from stream",
    "bad magic number",
];

/// Classifies the stderr of a failed `zfs` command.
#[must_use]
pub fn classify_stderr(stderr: &str) -> StderrClass {
    // Usage errors come first: the usage text that follows them never says "does not exist",
    // but the check order keeps the classification obvious.
    if stderr.lines().any(|l| l.starts_with("invalid option")) {
        return StderrClass::InvalidOption;
    }
    if stderr.lines().any(|l| l.starts_with("invalid type")) {
        return StderrClass::InvalidType;
    }
    if stderr
        .lines()
        .any(|l| l.starts_with("unrecognized command"))
    {
        return StderrClass::UnknownCommand;
    }
    // Before "does not exist": these name the tag, not a missing object.
    if stderr.contains("tag already exists on this dataset") {
        return StderrClass::HoldExists;
    }
    if stderr.contains("no such tag on this dataset") {
        return StderrClass::NoSuchHold;
    }
    if stderr.contains("dataset is busy") {
        return StderrClass::Busy;
    }
    let lower = stderr.to_ascii_lowercase();
    if lower.contains("permission denied") || lower.contains("must be run as root") {
        return StderrClass::PermissionDenied;
    }
    if let Some(line) = stderr
        .lines()
        .find(|l| l.contains("does not exist") || l.contains("no such pool or dataset"))
    {
        return StderrClass::NotFound {
            name: missing_name(line),
        };
    }
    if STREAM_ERRORS.iter().any(|s| stderr.contains(s)) {
        return StderrClass::InvalidStream;
    }
    StderrClass::Other
}

/// Extracts the object name from one "does not exist" line, for every wording `zfs` uses.
fn missing_name(line: &str) -> Option<String> {
    let between = |start: &str, end: &str| -> Option<String> {
        let from = line.find(start)? + start.len();
        let len = line[from..].find(end)?;
        Some(line[from..from + len].to_owned())
    };
    between("cannot open '", "': ")
        .or_else(|| between("destination '", "' does not exist"))
        .or_else(|| between("could not send ", ": does not exist"))
        .or_else(|| between("incremental source (", ") does not exist"))
        .or_else(|| between("specified fs (", ") does not exist"))
}

/// The [`ErrorKind`] for a failed command's stderr, given what the command was about.
#[must_use]
pub fn error_kind_for(stderr: &str, subject: Subject) -> ErrorKind {
    match classify_stderr(stderr) {
        StderrClass::NotFound { name } => match (subject, name) {
            (Subject::Dataset, _) => ErrorKind::DatasetNotFound,
            (Subject::Snapshot, Some(name)) if !name.contains('@') => ErrorKind::DatasetNotFound,
            (Subject::Snapshot, _) => ErrorKind::SnapshotNotFound,
        },
        StderrClass::InvalidStream => ErrorKind::InvalidStream,
        StderrClass::Busy => ErrorKind::Busy,
        StderrClass::UnknownCommand => ErrorKind::Unsupported,
        StderrClass::PermissionDenied => ErrorKind::PermissionDenied,
        StderrClass::HoldExists
        | StderrClass::NoSuchHold
        | StderrClass::InvalidOption
        | StderrClass::InvalidType
        | StderrClass::Other => ErrorKind::CommandFailed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logical_size_is_referenced_times_compressratio_in_both_dialects() {
        // zfs-fuse keeps the `x` with -p (docs/compatibility.md, "`zfs list` and `zfs get`");
        // OpenZFS prints the bare number.
        assert_eq!(logical_size("90112\n1.00x\n"), Ok(90_112));
        assert_eq!(logical_size("90112\n1.00\n"), Ok(90_112));
        // A 2:1 compressed 60 GiB dataset sends 120 GiB.
        assert_eq!(logical_size("64424509440\n2.00x\n"), Ok(128_849_018_880));
        assert_eq!(logical_size("1000\n1.37\n"), Ok(1370));
        assert_eq!(logical_size("1001\n1.5x\n"), Ok(1502), "rounded up");
        // A missing or odd ratio counts as 1: never below `referenced`.
        for ratio in ["-", "abc", "0.50", "NaN", "inf"] {
            assert_eq!(
                logical_size(&format!("4096\n{ratio}\n")),
                Ok(4096),
                "{ratio}"
            );
        }
        assert!(logical_size("").is_err());
        assert!(logical_size("4096\n").is_err());
        assert!(logical_size("-\n1.00x\n").is_err());
    }
    use proptest::prelude::*;

    fn raw(name: &str, guid: u64, createtxg: u64) -> RawSnapshot {
        RawSnapshot {
            name: name.into(),
            guid,
            createtxg,
            creation: None,
        }
    }

    fn raw_at(name: &str, guid: u64, createtxg: u64, creation: i64) -> RawSnapshot {
        RawSnapshot {
            creation: Some(creation),
            ..raw(name, guid, createtxg)
        }
    }

    // ---- zfs list -Hp (OpenZFS) ----

    #[test]
    fn modern_list_rows() {
        // docs/compatibility.md, "`zfs list` and `zfs get`": the three columns we request.
        let out = "pool/fs@a\t16655346559538300140\t11\npool/fs@b\t17932715693616688049\t16\n";
        assert_eq!(
            snapshot_list(out).unwrap(),
            vec![
                raw("pool/fs@a", 16_655_346_559_538_300_140, 11),
                raw("pool/fs@b", 17_932_715_693_616_688_049, 16),
            ]
        );
    }

    #[test]
    fn modern_list_rows_with_creation() {
        // docs/compatibility.md, "`zfs list` and `zfs get`": OpenZFS 2.x
        // `list -H -p -o name,guid,createtxg,creation`, with the values of fxpool/src@a and @b
        // read with `zfs get -Hp` on zfs-fuse.
        let out = "pool/fs@a\t16655346559538300140\t11\t1795735040\n\
                   pool/fs@b\t17932715693616688049\t16\t1795735041\n";
        assert_eq!(
            snapshot_list(out).unwrap(),
            vec![
                raw_at("pool/fs@a", 16_655_346_559_538_300_140, 11, 1_795_735_040),
                raw_at("pool/fs@b", 17_932_715_693_616_688_049, 16, 1_795_735_041),
            ]
        );
        // Without -p, creation is a date (captured on zfs-fuse): not seconds, refused.
        let e = snapshot_list("fxpool/src@a\t1\t11\tThu Nov 26 23:17 2026\n").unwrap_err();
        assert!(e.message.contains("creation"), "{e}");
        // `-` (does not apply) is no time.
        assert_eq!(
            snapshot_list("p/fs@a\t1\t2\t-\n").unwrap(),
            vec![raw("p/fs@a", 1, 2)]
        );
    }

    #[test]
    fn modern_list_names_with_spaces_and_colons() {
        let out = "fxpool/src@sp ace\t1\t30\r\np1 with/ spaces d1@co:lon-da_sh.dot\t2\t31\n";
        let rows = snapshot_list(out).unwrap();
        assert_eq!(rows[0].name, "fxpool/src@sp ace");
        assert_eq!(rows[1].name, "p1 with/ spaces d1@co:lon-da_sh.dot");
    }

    #[test]
    fn modern_list_empty_and_banner() {
        assert_eq!(snapshot_list("").unwrap(), vec![]);
        // zfs-fuse prints the banner on stdout when nothing matched and -H is absent.
        assert_eq!(snapshot_list("no datasets available\n").unwrap(), vec![]);
    }

    #[test]
    fn modern_list_rejects_abbreviated_guid_and_bad_rows() {
        // zfs-fuse `list` without -p (docs/compatibility.md, "zfs-fuse 0.7"): guid abbreviated to 14.4E.
        let e = snapshot_list("fxpool/src@a\t14.4E\t11\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("14.4E"), "{e}");
        // Space-separated rows (as GitHub pastes show them) are not TAB-separated rows.
        assert!(snapshot_list("pool/fs@a 1 2\n").is_err());
        assert!(snapshot_list("pool/fs\t1\t2\n").is_err());
        assert!(snapshot_list("pool/fs@a\t1\t2\t3\t4\n").is_err());
        assert!(snapshot_list("pool/fs@a\t-1\t2\n").is_err());
    }

    // ---- zfs get -Hp triples (zfs-fuse) ----

    #[test]
    fn legacy_get_triples_drop_filesystems_and_sort_by_createtxg() {
        // Shape of zfs-fuse's `zfs get -H -p -r -o name,property,value guid` (docs/compatibility.md,
        // "`zfs list` and `zfs get`"), with
        // createtxg rows added as `get -d 1 … guid,createtxg` prints them (captured on zt).
        let out = "fxpool/src\tguid\t2022835183268112203\n\
                   fxpool/src\tcreatetxg\t6\n\
                   fxpool/src@b\tguid\t17932715693616688049\n\
                   fxpool/src@b\tcreatetxg\t16\n\
                   fxpool/src@a\tguid\t16655346559538300140\n\
                   fxpool/src@a\tcreatetxg\t11\n\
                   fxpool/src/child\tguid\t12139964527244761069\n\
                   fxpool/src/child\tcreatetxg\t20\n\
                   fxpool/src@sp ace\tguid\t2579210342713212566\n\
                   fxpool/src@sp ace\tcreatetxg\t21\n";
        assert_eq!(
            snapshot_properties(out).unwrap(),
            vec![
                raw("fxpool/src@a", 16_655_346_559_538_300_140, 11),
                raw("fxpool/src@b", 17_932_715_693_616_688_049, 16),
                raw("fxpool/src@sp ace", 2_579_210_342_713_212_566, 21),
            ]
        );
    }

    #[test]
    fn legacy_get_reads_creation() {
        // Captured on zfs-fuse 0.7 (this machine):
        // `zfs get -H -p -d 1 -o name,property,value guid,createtxg,creation,z3:hold z3t84077/hx`.
        let out = "z3t84077/hx\tguid\t7481612623804936804\n\
                   z3t84077/hx\tcreatetxg\t7\n\
                   z3t84077/hx\tcreation\t1796425930\n\
                   z3t84077/hx\tz3:hold\t-\n\
                   z3t84077/hx@a\tguid\t12211021990922875271\n\
                   z3t84077/hx@a\tcreatetxg\t43\n\
                   z3t84077/hx@a\tcreation\t1796425946\n\
                   z3t84077/hx@a\tz3:hold\tz3\n\
                   z3t84077/hx@b\tguid\t366513746189081290\n\
                   z3t84077/hx@b\tcreatetxg\t48\n\
                   z3t84077/hx@b\tcreation\t1796425946\n\
                   z3t84077/hx@b\tz3:hold\t-\n\
                   z3t84077/hx@sp ace\tguid\t14928776941396195932\n\
                   z3t84077/hx@sp ace\tcreatetxg\t53\n\
                   z3t84077/hx@sp ace\tcreation\t1796425946\n\
                   z3t84077/hx@sp ace\tz3:hold\t-\n";
        assert_eq!(
            snapshot_properties(out).unwrap(),
            vec![
                raw_at(
                    "z3t84077/hx@a",
                    12_211_021_990_922_875_271,
                    43,
                    1_796_425_946
                ),
                raw_at("z3t84077/hx@b", 366_513_746_189_081_290, 48, 1_796_425_946),
                raw_at(
                    "z3t84077/hx@sp ace",
                    14_928_776_941_396_195_932,
                    53,
                    1_796_425_946
                ),
            ]
        );
        // `get` without -p prints a date (captured on zfs-fuse): refused, never guessed.
        assert!(
            snapshot_properties(
                "fxpool/src@a\tguid\t1\nfxpool/src@a\tcreatetxg\t11\nfxpool/src@a\tcreation\tThu Nov 26 23:17 2026\n"
            )
            .is_err()
        );
    }

    // ---- bookmarks and hold markers ----

    #[test]
    fn bookmark_rows() {
        // OpenZFS `zfs list -H -p -t bookmark -o name,guid,createtxg,creation -s createtxg -d 1`:
        // the layout of `list -Hp` (docs/compatibility.md, "`zfs list` and `zfs get`") with `#`
        // names; a bookmark reports the guid, createtxg and creation of its snapshot.
        let out = "pool/fs#a\t16655346559538300140\t11\t1795735040\n\
                   pool/fs#sp ace\t17932715693616688049\t16\t1795735041\n";
        let rows = bookmark_list(out).unwrap();
        assert_eq!(
            rows,
            vec![
                RawBookmark {
                    name: "pool/fs#a".into(),
                    guid: 16_655_346_559_538_300_140,
                    createtxg: 11,
                    creation: Some(1_795_735_040),
                },
                RawBookmark {
                    name: "pool/fs#sp ace".into(),
                    guid: 17_932_715_693_616_688_049,
                    createtxg: 16,
                    creation: Some(1_795_735_041),
                },
            ]
        );
        assert!(bookmark_list("pool/fs@a\t1\t2\t3\n").is_err(), "a snapshot");
        assert!(bookmark_list("pool/fs#a\t1\n").is_err());
        assert_eq!(bookmark_list("").unwrap(), vec![]);
    }

    #[test]
    fn held_snapshot_markers() {
        // Captured on zfs-fuse 0.7: `zfs get -H -p -d 1 -s local -o name,property,value
        // z3:hold:z3 z3t84077/hx`.
        let out = "z3t84077/hx@a\tz3:hold:z3\ton\nz3t84077/hx@sp ace\tz3:hold:z3\ton\n";
        assert_eq!(
            held_snapshots(out, "z3:hold:z3").unwrap(),
            ["z3t84077/hx@a", "z3t84077/hx@sp ace"]
        );
        // Without -s local the filesystem and unset snapshots print `-` (captured), and an
        // inherited value would count; the parser drops `-`, other properties and non-snapshots.
        let out = "z3t84077/hx\tz3:hold:z3\ton\n\
                   z3t84077/hx@a\tz3:hold:z3\t-\n\
                   z3t84077/hx@b\tz3:hold:other\ton\n\
                   z3t84077/hx@c\tz3:hold:z3\ton\n";
        assert_eq!(
            held_snapshots(out, "z3:hold:z3").unwrap(),
            ["z3t84077/hx@c"]
        );
        assert!(held_snapshots("z3t84077/hx@a\ton\n", "z3:hold:z3").is_err());
        assert_eq!(
            held_snapshots("", "z3:hold:z3").unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn classify_hold_release_destroy_and_bookmark_errors() {
        // zfs-fuse 0.7, captured on this machine (exit 1 each).
        let fuse_hold_twice = "cannot hold 'z3t84077/hx@a': tag already exists on this dataset";
        let fuse_release_none =
            "cannot release 'nosuch' from 'z3t84077/hx@a': no such tag on this dataset";
        let fuse_destroy = "cannot destroy 'z3t84077/hx@a': dataset is busy";
        // OpenZFS (salt's test fixtures, zettarepl's parser of `zfs destroy`).
        let zol_hold_twice =
            "cannot hold snapshot 'myzpool/mydataset@baseline': tag already exists on this dataset";
        let zol_release_none = "cannot release hold from snapshot 'myzpool/mydataset@baseline': no such tag on this dataset";
        let zol_destroy = "cannot destroy snapshot pool/fs@a: dataset is busy";
        for text in [fuse_hold_twice, zol_hold_twice] {
            assert_eq!(classify_stderr(text), StderrClass::HoldExists, "{text}");
        }
        for text in [fuse_release_none, zol_release_none] {
            assert_eq!(classify_stderr(text), StderrClass::NoSuchHold, "{text}");
        }
        for text in [fuse_destroy, zol_destroy] {
            assert_eq!(classify_stderr(text), StderrClass::Busy, "{text}");
            assert_eq!(error_kind_for(text, Subject::Snapshot), ErrorKind::Busy);
        }
        // zfs-fuse: hold or release of a missing snapshot, and release from an existing
        // snapshot that has no hold at all (it says "does not exist" there too).
        for text in [
            "cannot hold 'z3t84077/hx@missing': dataset does not exist",
            "cannot release 'z3' from 'z3t84077/hx@missing': dataset does not exist",
            "cannot release 'z3' from 'z3t84077/hx@b': dataset does not exist",
        ] {
            assert_eq!(
                error_kind_for(text, Subject::Snapshot),
                ErrorKind::SnapshotNotFound,
                "{text}"
            );
        }
        assert_eq!(
            error_kind_for(
                "cannot open 'z3t84077/nods': dataset does not exist",
                Subject::Snapshot
            ),
            ErrorKind::DatasetNotFound
        );
        // zfs-fuse has no bookmarks (captured, exit 2 each).
        let no_command = "unrecognized command 'bookmark'\nusage: zfs command args ...\nwhere 'command' is one of the following:\n";
        assert_eq!(classify_stderr(no_command), StderrClass::UnknownCommand);
        assert!(classify_stderr(no_command).is_unsupported());
        assert_eq!(
            error_kind_for(no_command, Subject::Snapshot),
            ErrorKind::Unsupported
        );
        let no_type = "invalid type 'bookmark'\nusage:\n\tlist [-rH][-d max] [-o property[,...]] [-t type[,...]] [-s property] ...\n";
        assert!(classify_stderr(no_type).is_unsupported());
        // OpenZFS `zfs bookmark` (source of zfs_main.c, 0.8–2.x).
        assert_eq!(
            error_kind_for(
                "cannot create bookmark 'pool/fs#bm': bookmark exists",
                Subject::Snapshot
            ),
            ErrorKind::CommandFailed
        );
    }

    #[test]
    fn legacy_get_ignores_other_properties_and_requires_both() {
        let out = "p/fs@a\tguid\t5\np/fs@a\tused\t90112\np/fs@a\tcreatetxg\t7\n";
        assert_eq!(snapshot_properties(out).unwrap(), vec![raw("p/fs@a", 5, 7)]);
        let e = snapshot_properties("p/fs@a\tguid\t5\n").unwrap_err();
        assert!(e.message.contains("p/fs@a"), "{e}");
        // `get` without -p (docs/compatibility.md, "zfs-fuse 0.7") abbreviates the guid.
        assert!(snapshot_properties("fxpool/src@a\tguid\t14.4E\n").is_err());
        // The four-column layout (with source) is not what we request.
        assert!(snapshot_properties("fxpool/src@a\tguid\t1\t-\n").is_err());
        assert_eq!(snapshot_properties("").unwrap(), vec![]);
    }

    // ---- zfs send -nvP ----

    #[test]
    fn estimate_full_0_7() {
        // zrepl fullNoToken (ZoL 0.7.x).
        let out = "full\tzroot/test/a@3\t10518512\nsize\t10518512\n";
        assert_eq!(send_estimate(out).unwrap(), Some(10_518_512));
    }

    #[test]
    fn estimate_full_freebsd_and_spaces() {
        let out = "full\tzroot/usr/home@hourly-2019-06-17-08\t29487181256\nsize\t29487181256\n";
        assert_eq!(send_estimate(out).unwrap(), Some(29_487_181_256));
        let out = "full\tpool1/otherjob/ds with spaces@blaffoo\t12912\nsize\t12912\n";
        assert_eq!(send_estimate(out).unwrap(), Some(12912));
    }

    #[test]
    fn estimate_zero_size_layouts_without_bytes() {
        // zrepl fullZeroSized_0_7_12 and incZeroSized_0_7_12.
        assert_eq!(
            send_estimate("full\tp1 with/ spaces d1@2 with space\n").unwrap(),
            Some(0)
        );
        let inc = "incremental\tp1 with/ spaces d1@1 with space\tp1 with/ spaces d1@2 with space\n";
        assert_eq!(send_estimate(inc).unwrap(), Some(0));
    }

    #[test]
    fn estimate_incremental_0_7_and_2_x() {
        // zrepl incNoToken (0.7.11, short from).
        let out = "incremental\t1\tzroot/test/a@2\t10511856\nsize\t10511856\n";
        assert_eq!(send_estimate(out).unwrap(), Some(10_511_856));
        // zfs_autobackup#322 (2.4.1, full from).
        let out = "incremental\tssdtank@REMOTE-20260518110001\tssdtank@REMOTE-20260518120001\t624\nsize\t624\n";
        assert_eq!(send_estimate(out).unwrap(), Some(624));
        // 2.x layout from the source.
        let out = "incremental\tpool/fs@a\tpool/fs@b\t4096\nsize\t4096\n";
        assert_eq!(send_estimate(out).unwrap(), Some(4096));
    }

    #[test]
    fn estimate_2_x_warning_line_is_ignored() {
        let out = "Warning: incremental source didn't specify type, assuming snapshot. Use '@' or '#' prefix to avoid ambiguity.\n\
                   incremental\tpool/fs@a\tpool/fs@b\t77\nsize\t77\n";
        assert_eq!(send_estimate(out).unwrap(), Some(77));
    }

    #[test]
    fn estimate_multi_line_uses_size_line() {
        // sanoid#291 (-I, 0.7.x); TABs restored as syncoid logged them (^I).
        let out = "incremental\tautosnap_2018-11-21_15:00:00_hourly\trpool/srv/vms/nas1.domain.net@autosnap_2018-11-21_16:00:00_hourly\t624\n\
                   incremental\tautosnap_2018-11-21_16:00:00_hourly\trpool/srv/vms/nas1.domain.net@autosnap_2018-11-21_17:00:00_hourly\t624\n\
                   incremental\tautosnap_2018-11-21_17:00:00_hourly\trpool/srv/vms/nas1.domain.net@autosnap_2018-11-21_18:00:00_hourly\t624\n\
                   size\t1872\n";
        assert_eq!(send_estimate(out).unwrap(), Some(1872));
        // The GitHub paste of the same block separates `size` with spaces.
        assert_eq!(send_estimate("size    1872\n").unwrap(), Some(1872));
    }

    #[test]
    fn estimate_resume_token_preamble_without_size_line() {
        // zrepl fullSend (0.7.x): no size line.
        let out = "resume token contents:\nnvlist version: 0\n\tobject = 0x2\n\toffset = 0x4c0000\n\
                   \tbytes = 0x4e4228\n\ttoguid = 0x52f9c212c71e60cd\n\ttoname = zroot/test/a@1\n\
                   full\tzroot/test/a@1\t5389768\n";
        assert_eq!(send_estimate(out).unwrap(), Some(5_389_768));
        // zrepl incSend / incSendBookmark.
        assert_eq!(
            send_estimate("incremental\tzroot/test/a@1\tzroot/test/a@2\t5383936\n").unwrap(),
            Some(5_383_936)
        );
        assert_eq!(
            send_estimate("incremental\tzroot/test/a#1\tzroot/test/a@2\t5383312\n").unwrap(),
            Some(5_383_312)
        );
    }

    #[test]
    fn estimate_resume_token_2_x_with_size_line() {
        // zfs-auto-mirror#12 (2.x); names as redacted in the issue, TABs restored.
        let out = "resume token contents:\nnvlist version: 0\n        fromguid = 0x48b30805fc767ab2\n\
                   \tobject = 0xa742\n\ttoname = .../...@backup_daily-2022-01-04-0125\n\tcompressok = 1\n\
                   incremental\t.../...@backup_daily-2022-01-03-1609\t.../...@backup_daily-2022-01-04-0125\t1599981784\n\
                   size\t1599981784\n";
        assert_eq!(send_estimate(out).unwrap(), Some(1_599_981_784));
    }

    #[test]
    fn estimate_absurd_u64_and_overflow() {
        // openzfs/zfs#12265.
        let out =
            "incremental\tpool/fs@a\tpool/fs@b\t18446744073614344448\nsize\t18446744073614344448\n";
        assert_eq!(
            send_estimate(out).unwrap(),
            Some(18_446_744_073_614_344_448)
        );
        assert!(send_estimate("size\t18446744073709551616\n").is_err());
        assert!(send_estimate("full\tpool/fs@a\t1.01M\n").is_err());
        assert!(send_estimate("full\n").is_err());
    }

    #[test]
    fn estimate_absent() {
        assert_eq!(send_estimate("").unwrap(), None);
        // The human-readable form (docs/compatibility.md, "`zfs send` size estimates") is not parsed.
        let human = "full send of testpool/fs@snap1 estimated size is 1.01M\ntotal estimated size is 1.01M\n";
        assert_eq!(send_estimate(human).unwrap(), None);
        // zfs-fuse's hidden -v output (same section).
        assert_eq!(
            send_estimate("sending from @a to fxpool/src@b\n").unwrap(),
            None
        );
        // `sizeX` is not the size line.
        assert_eq!(send_estimate("sizes\t5\n").unwrap(), None);
    }

    #[test]
    fn property_value() {
        assert_eq!(property_u64("647168\n").unwrap(), 647_168);
        assert!(property_u64("-\n").is_err());
        assert!(property_u64("").is_err());
        assert!(property_u64("1\n2\n").is_err());
        assert!(property_u64("632K\n").is_err());
    }

    // ---- stderr classification ----

    fn not_found(name: &str) -> StderrClass {
        StderrClass::NotFound {
            name: Some(name.into()),
        }
    }

    #[test]
    fn classify_not_found_texts() {
        for (text, name) in [
            (
                "cannot open 'fxpool/nonexistent': dataset does not exist",
                "fxpool/nonexistent",
            ),
            (
                "cannot open 'pool/fs@nonexistent': dataset does not exist",
                "pool/fs@nonexistent",
            ),
            ("cannot open 'tank/x': no such pool or dataset", "tank/x"),
            (
                "WARNING: could not send fxpool/src@zz: does not exist",
                "fxpool/src@zz",
            ),
            (
                "warning: cannot send 'fxpool/src@c': incremental source (@zz) does not exist",
                "@zz",
            ),
            (
                "WARNING: could not send fxpool/src@c:\nincremental source (fxpool/src@zz) does not exist",
                "fxpool/src@zz",
            ),
            (
                "cannot receive incremental stream: destination 'pool/x' does not exist",
                "pool/x",
            ),
            (
                "cannot receive: specified fs (fxpool/rtree) does not exist",
                "fxpool/rtree",
            ),
            (
                "cannot open 'fxpool/noparent/child': dataset does not exist\ncannot receive new filesystem stream: dataset does not exist",
                "fxpool/noparent/child",
            ),
        ] {
            assert_eq!(classify_stderr(text), not_found(name), "{text}");
        }
    }

    #[test]
    fn classify_usage_errors() {
        let list = "invalid option 'p'\nusage:\n\tlist [-rH][-d max] [-o property[,...]] [-t type[,...]] [-s property] ...\n";
        assert_eq!(classify_stderr(list), StderrClass::InvalidOption);
        assert!(classify_stderr(list).is_unsupported());
        let send = "invalid option 'n'\nusage:\n\tsend [-RDp] [-[iI] snapshot] <snapshot>\n\nFor the property list, run: zfs set|get\n";
        assert_eq!(classify_stderr(send), StderrClass::InvalidOption);
        assert_eq!(
            classify_stderr("invalid type 'snap'\nusage: …"),
            StderrClass::InvalidType
        );
        // A bad property is a usage error too, but not one that selects the legacy dialect.
        assert_eq!(
            classify_stderr("bad property list: invalid property 'written'\nusage: …"),
            StderrClass::Other
        );
    }

    #[test]
    fn classify_stream_errors() {
        for text in [
            "cannot receive: invalid stream (bad magic number)",
            "cannot receive incremental stream: invalid stream (checksum mismatch)",
            "cannot receive incremental stream: invalid backup stream",
            "cannot receive new filesystem stream: incomplete stream",
            "cannot receive incremental stream: checksum mismatch or incomplete stream",
            "cannot receive: failed to read from stream",
        ] {
            assert_eq!(classify_stderr(text), StderrClass::InvalidStream, "{text}");
        }
    }

    /// Issue 15, point 5: `zfs` run by a user who is not root says so in several wordings.
    #[test]
    fn not_root_is_permission_denied() {
        for text in [
            "Permission denied the ZFS utilities must be run as root.",
            "cannot open '/dev/zfs': Permission denied",
            "cannot hold snapshot 'pool/fs@s1': permission denied",
            // zfs-fuse, whose daemon's socket only root may use.
            "connect: Permission denied\ninternal error: failed to initialize ZFS library",
        ] {
            assert_eq!(
                classify_stderr(text),
                StderrClass::PermissionDenied,
                "{text}"
            );
            let err = crate::Error::from_failure(
                crate::CommandFailure {
                    command: "zfs list -t snapshot pool/fs".into(),
                    code: Some(1),
                    status: "exit status: 1".into(),
                    stderr: text.into(),
                },
                Subject::Dataset,
            );
            assert_eq!(err.kind(), ErrorKind::PermissionDenied);
            let line = err.to_string();
            assert!(line.contains(text), "{line}");
            assert!(
                line.ends_with("run z3 as root, or delegate with `zfs allow`"),
                "{line}"
            );
        }
    }

    #[test]
    fn classify_other_errors() {
        for text in [
            "cannot receive new filesystem stream: destination 'fxpool/dst' exists\nmust specify -F to overwrite it",
            "cannot receive incremental stream: most recent snapshot of fxpool/dst does not\nmatch incremental source",
            "cannot restore to fxpool/dst3@b: destination already exists",
            "warning: cannot send 'pool/fs@b': Broken pipe",
            "",
        ] {
            assert_eq!(classify_stderr(text), StderrClass::Other, "{text}");
        }
    }

    #[test]
    fn error_kinds_depend_on_subject() {
        let ds = "cannot open 'pool/fs': dataset does not exist";
        let snap = "cannot open 'pool/fs@zz': dataset does not exist";
        assert_eq!(
            error_kind_for(ds, Subject::Dataset),
            ErrorKind::DatasetNotFound
        );
        assert_eq!(
            error_kind_for(ds, Subject::Snapshot),
            ErrorKind::DatasetNotFound
        );
        assert_eq!(
            error_kind_for(snap, Subject::Snapshot),
            ErrorKind::SnapshotNotFound
        );
        assert_eq!(
            error_kind_for(
                "warning: cannot send 'fxpool/src@c': incremental source (@zz) does not exist",
                Subject::Snapshot
            ),
            ErrorKind::SnapshotNotFound
        );
        assert_eq!(
            error_kind_for(
                "cannot receive: failed to read from stream",
                Subject::Snapshot
            ),
            ErrorKind::InvalidStream
        );
        assert_eq!(
            error_kind_for("invalid option 'n'", Subject::Snapshot),
            ErrorKind::CommandFailed
        );
    }

    proptest! {
        #[test]
        fn parsers_never_panic(text in ".*") {
            let _ = snapshot_list(&text);
            let _ = snapshot_properties(&text);
            let _ = send_estimate(&text);
            let _ = property_u64(&text);
            let _ = classify_stderr(&text);
            let _ = bookmark_list(&text);
            let _ = held_snapshots(&text, "z3:hold:z3");
        }

        #[test]
        fn parsers_never_panic_on_tabbed_lines(
            lines in proptest::collection::vec(
                proptest::collection::vec("(full|incremental|size|[a-z@/ ]{0,8}|[0-9]{1,21}|-)", 0..5),
                0..6,
            )
        ) {
            let text: String = lines.iter().map(|f| f.join("\t") + "\n").collect();
            let _ = snapshot_list(&text);
            let _ = snapshot_properties(&text);
            let _ = send_estimate(&text);
            let _ = property_u64(&text);
            let _ = classify_stderr(&text);
            let _ = bookmark_list(&text);
            let _ = held_snapshots(&text, "z3:hold:z3");
        }

        #[test]
        fn modern_list_round_trips(rows in proptest::collection::vec(
            ("[a-z][a-z0-9 ]{0,8}(/[a-z0-9:. -]{1,8}){0,2}@[a-z0-9:. -]{1,8}", any::<u64>(), any::<u64>(), any::<i64>()), 0..8)
        ) {
            let text: String = rows.iter().map(|(n, g, t, c)| [n.clone(), g.to_string(), t.to_string(), c.to_string()].join("\t") + "\n").collect();
            let parsed = snapshot_list(&text).unwrap();
            prop_assert_eq!(parsed.len(), rows.len());
            for (p, (n, g, t, c)) in parsed.iter().zip(&rows) {
                prop_assert_eq!(&p.name, n);
                prop_assert_eq!(p.guid, *g);
                prop_assert_eq!(p.createtxg, *t);
                prop_assert_eq!(p.creation, Some(*c));
            }
        }
    }
}

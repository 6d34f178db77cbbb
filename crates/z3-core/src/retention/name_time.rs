//! A snapshot's time: the time written in its name when a name format is configured and the name
//! matches, otherwise its ZFS `creation` property, otherwise unknown.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;

/// Where a snapshot's time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum TimeSource {
    /// Parsed from the snapshot's name with the configured [`NameFormat`].
    Name,
    /// The snapshot's ZFS `creation` property, as the caller gave it.
    Creation,
}

/// How snapshot names carry their time.
///
/// Built in:
///
/// - **zfs-auto-snap** (`zfs-auto-snap_daily-2026-12-04-1200`, `zfs-auto-snap-2026-12-04-1200`
///   without a label; any label, e.g. `frequent`, `hourly`, `daily`, `weekly`, `monthly`):
///   zfs-auto-snapshot 1.1.0 and later stamp names with `date --utc +%F-%H%M`, so these names
///   are UTC; it has no option to change that. `zfs-auto-snap-local` reads them in the
///   calendar's zone instead, for names written by 1.0.x (which used local time) or by forks
///   that stamp local time. Only the default prefix and `_` separator are built in; names made
///   with `--prefix`, `--sep` or another date format need a custom pattern (for example
///   `utc:-%Y-%m-%d-%H%M`).
/// - **sanoid** (`autosnap_2026-12-04_12:00:00_daily`, any label): sanoid stamps names with the
///   host's local time (Perl's `localtime`), read in the calendar's zone; set the calendar's
///   zone to the host's.
/// - **custom**: a strftime-style pattern with `%Y` (4 digits), `%m`, `%d`, `%H`, `%M`, `%S` (2
///   digits each; the date is required, a missing time of day is midnight) and `%%`, everything
///   else literal. Any text may come before the pattern, none after it: `%Y%m%d` matches
///   `backup-20261204`. A pattern that starts with a field does not match after a digit
///   (`backup-2026120412` is not year 2612): write the separator into the pattern (`-%Y%m%d`)
///   when the text before it ends in a digit. Read in the calendar's zone; the spec
///   `utc:PATTERN` reads it as UTC.
///
/// A name that does not match, or whose date does not exist (February 30, hour 24), has no time
/// from its name: never a guess. A local time that a DST change skipped or repeated is resolved as
/// RFC 5545 does (the later offset for a skipped time, the earlier for a repeated one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameFormat {
    /// zfs-auto-snapshot's names.
    ZfsAutoSnap {
        /// Names carry the calendar zone's time (zfs-auto-snapshot 1.0.x, some forks), not UTC.
        local_time: bool,
    },
    /// sanoid's names, in local time.
    Sanoid,
    /// A user's pattern.
    Custom {
        /// The pattern.
        pattern: NamePattern,
        /// Names carry UTC, not the calendar zone's time.
        utc: bool,
    },
}

/// A parsed strftime-style pattern of fixed-width fields and literal text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePattern {
    pieces: Vec<Piece>,
    /// The length in bytes of every name that matches.
    len: usize,
    /// The pattern as written, for display.
    source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Field(Field),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

impl Field {
    fn width(self) -> usize {
        if self == Field::Year { 4 } else { 2 }
    }
}

/// Why a name format was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameFormatError {
    /// A `%` directive other than `%Y %m %d %H %M %S %%`.
    #[error(
        "name format `{format}`: unknown directive `{directive}` (known: %Y %m %d %H %M %S %%)"
    )]
    UnknownDirective {
        /// The pattern.
        format: String,
        /// The directive, e.g. `%b`.
        directive: String,
    },
    /// A directive used twice.
    #[error("name format `{format}`: `{directive}` appears twice")]
    Repeated {
        /// The pattern.
        format: String,
        /// The directive.
        directive: String,
    },
    /// The date is incomplete.
    #[error("name format `{format}`: needs %Y, %m and %d (a snapshot's date)")]
    NoDate {
        /// The pattern.
        format: String,
    },
}

impl NamePattern {
    /// Parses a strftime-style pattern.
    ///
    /// # Errors
    ///
    /// [`NameFormatError`] for an unknown or repeated directive, a trailing `%`, or a pattern
    /// without `%Y`, `%m` and `%d`.
    pub fn parse(pattern: &str) -> Result<NamePattern, NameFormatError> {
        let mut pieces: Vec<Piece> = Vec::new();
        let mut literal = String::new();
        let mut seen = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                literal.push(c);
                continue;
            }
            let next = chars.next();
            let field = match next {
                Some('%') => {
                    literal.push('%');
                    continue;
                }
                Some('Y') => Field::Year,
                Some('m') => Field::Month,
                Some('d') => Field::Day,
                Some('H') => Field::Hour,
                Some('M') => Field::Minute,
                Some('S') => Field::Second,
                other => {
                    return Err(NameFormatError::UnknownDirective {
                        format: pattern.to_string(),
                        directive: other.map_or_else(|| "%".to_string(), |c| format!("%{c}")),
                    });
                }
            };
            if seen.contains(&field) {
                return Err(NameFormatError::Repeated {
                    format: pattern.to_string(),
                    directive: format!("%{}", next.unwrap_or('%')),
                });
            }
            seen.push(field);
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Field(field));
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        if ![Field::Year, Field::Month, Field::Day]
            .iter()
            .all(|f| seen.contains(f))
        {
            return Err(NameFormatError::NoDate {
                format: pattern.to_string(),
            });
        }
        let len = pieces
            .iter()
            .map(|p| match p {
                Piece::Literal(s) => s.len(),
                Piece::Field(f) => f.width(),
            })
            .sum();
        Ok(NamePattern {
            pieces,
            len,
            source: pattern.to_string(),
        })
    }

    /// The civil date-time in `name`, when the pattern matches its end (any text before).
    #[must_use]
    pub fn civil(&self, name: &str) -> Option<DateTime> {
        let start = name.len().checked_sub(self.len)?;
        let mut rest = name.get(start..)?;
        // A field at the pattern's start must not continue a number of the name: `%Y%m%d` on
        // `backup-2026120412` would read year 2612. No match rather than a guess.
        if matches!(self.pieces.first(), Some(Piece::Field(_)))
            && name[..start].ends_with(|c: char| c.is_ascii_digit())
        {
            return None;
        }
        let mut values = [None::<i16>; 6];
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => rest = rest.strip_prefix(text.as_str())?,
                Piece::Field(field) => {
                    let digits = rest.get(..field.width())?;
                    if !digits.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    values[*field as usize] = Some(digits.parse().ok()?);
                    rest = &rest[field.width()..];
                }
            }
        }
        let small = |i: usize| i8::try_from(values[i].unwrap_or(0)).ok();
        let date = Date::new(values[0]?, small(1)?, small(2)?).ok()?;
        let time = Time::new(small(3)?, small(4)?, small(5)?, 0).ok()?;
        Some(DateTime::from_parts(date, time))
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl NameFormat {
    /// Parses a name format setting: `zfs-auto-snap`, `zfs-auto-snap-local`, `sanoid`,
    /// `utc:PATTERN` or `PATTERN` (see [`NameFormat`]).
    ///
    /// # Errors
    ///
    /// [`NameFormatError`] when the pattern is invalid.
    pub fn parse(spec: &str) -> Result<NameFormat, NameFormatError> {
        Ok(match spec {
            "zfs-auto-snap" => NameFormat::ZfsAutoSnap { local_time: false },
            "zfs-auto-snap-local" => NameFormat::ZfsAutoSnap { local_time: true },
            "sanoid" => NameFormat::Sanoid,
            _ => match spec.strip_prefix("utc:") {
                Some(pattern) => NameFormat::Custom {
                    pattern: NamePattern::parse(pattern)?,
                    utc: true,
                },
                None => NameFormat::Custom {
                    pattern: NamePattern::parse(spec)?,
                    utc: false,
                },
            },
        })
    }

    /// The time in a short snapshot name (`daily-2026-12-04`, without `dataset@`), read in
    /// `local` where the format carries local time; `None` when the name does not match.
    #[must_use]
    pub fn time_of(&self, name: &str, local: &TimeZone) -> Option<Timestamp> {
        let (civil, utc) = match self {
            NameFormat::ZfsAutoSnap { local_time } => (zfs_auto_snap(name)?, !local_time),
            NameFormat::Sanoid => (sanoid(name)?, false),
            NameFormat::Custom { pattern, utc } => (pattern.civil(name)?, *utc),
        };
        let zone = if utc { &TimeZone::UTC } else { local };
        zone.to_ambiguous_timestamp(civil).compatible().ok()
    }
}

impl FromStr for NameFormat {
    type Err = NameFormatError;

    fn from_str(spec: &str) -> Result<NameFormat, NameFormatError> {
        NameFormat::parse(spec)
    }
}

impl fmt::Display for NameFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameFormat::ZfsAutoSnap { local_time: false } => f.write_str("zfs-auto-snap"),
            NameFormat::ZfsAutoSnap { local_time: true } => f.write_str("zfs-auto-snap-local"),
            NameFormat::Sanoid => f.write_str("sanoid"),
            NameFormat::Custom { pattern, utc: true } => write!(f, "utc:{pattern}"),
            NameFormat::Custom {
                pattern,
                utc: false,
            } => write!(f, "{pattern}"),
        }
    }
}

/// The date of a zfs-auto-snap name, parsed once.
static DATE: LazyLock<NamePattern> = LazyLock::new(|| fixed_pattern("-%Y-%m-%d-%H%M"));

/// The date and time of a sanoid name, parsed once.
static STAMP: LazyLock<NamePattern> = LazyLock::new(|| fixed_pattern("%Y-%m-%d_%H:%M:%S"));

/// `zfs-auto-snap[_LABEL]-YYYY-MM-DD-HHMM`.
fn zfs_auto_snap(name: &str) -> Option<DateTime> {
    const DATE_LEN: usize = "-2026-12-04-1200".len();
    let head = name.get(..name.len().checked_sub(DATE_LEN)?)?;
    let label_ok = match head.strip_prefix("zfs-auto-snap") {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('_')
            .is_some_and(|label| !label.is_empty()),
        None => false,
    };
    if !label_ok {
        return None;
    }
    DATE.civil(&name[head.len()..])
}

/// `autosnap_YYYY-MM-DD_HH:MM:SS_LABEL`.
fn sanoid(name: &str) -> Option<DateTime> {
    const STAMP_LEN: usize = "2026-12-04_12:00:00".len();
    let rest = name.strip_prefix("autosnap_")?;
    let stamp = rest.get(..STAMP_LEN)?;
    let label = rest[STAMP_LEN..].strip_prefix('_')?;
    if label.is_empty() {
        return None;
    }
    STAMP.civil(stamp)
}

/// A built-in pattern; each is valid, so the fallback is never taken.
fn fixed_pattern(pattern: &str) -> NamePattern {
    NamePattern::parse(pattern).unwrap_or_else(|_| NamePattern {
        pieces: Vec::new(),
        len: usize::MAX,
        source: String::new(),
    })
}

/// A snapshot's time and where it came from.
///
/// With a name format configured, a matching name wins over `creation`: names are what the
/// snapshot tool meant (and what an imported or re-received snapshot still carries when its
/// `creation` is the day it was received). Otherwise `creation` (Unix seconds) is used when
/// given. `None` means the time is unknown: such a snapshot is never pruned.
#[must_use]
pub fn snapshot_time(
    name: &str,
    creation: Option<i64>,
    format: Option<&NameFormat>,
    local: &TimeZone,
) -> Option<(Timestamp, TimeSource)> {
    if let Some(time) = format.and_then(|format| format.time_of(name, local)) {
        return Some((time, TimeSource::Name));
    }
    creation
        .and_then(|secs| Timestamp::from_second(secs).ok())
        .map(|time| (time, TimeSource::Creation))
}

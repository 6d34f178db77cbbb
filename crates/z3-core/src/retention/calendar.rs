//! Timeframes and their intervals: which hour, day, week, month or year an instant falls in, on
//! the calendar of a configured time zone and week start.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::{DateTime, Weekday};
use jiff::tz::TimeZone;

/// A timeframe of a retention policy, shortest first (so `Hourly < Yearly`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Timeframe {
    /// Hours of the local clock (`h`).
    Hourly,
    /// Calendar days (`d`).
    Daily,
    /// Weeks starting on the calendar's week start (`w`).
    Weekly,
    /// Calendar months (`m`).
    Monthly,
    /// Calendar years (`y`).
    Yearly,
}

impl Timeframe {
    /// Every timeframe, longest first: the order a policy is written and a backup tree is shaped.
    pub const LONGEST_FIRST: [Timeframe; 5] = [
        Timeframe::Yearly,
        Timeframe::Monthly,
        Timeframe::Weekly,
        Timeframe::Daily,
        Timeframe::Hourly,
    ];

    /// The unit letter of the timeframe in a `PRESERVE` value.
    #[must_use]
    pub fn unit(self) -> char {
        match self {
            Timeframe::Hourly => 'h',
            Timeframe::Daily => 'd',
            Timeframe::Weekly => 'w',
            Timeframe::Monthly => 'm',
            Timeframe::Yearly => 'y',
        }
    }

    /// The timeframe a unit letter names.
    #[must_use]
    pub fn from_unit(unit: char) -> Option<Timeframe> {
        Timeframe::LONGEST_FIRST
            .into_iter()
            .find(|tf| tf.unit() == unit)
    }

    /// Position in an array indexed by timeframe (shortest first).
    pub(super) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Timeframe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Timeframe::Hourly => "hourly",
            Timeframe::Daily => "daily",
            Timeframe::Weekly => "weekly",
            Timeframe::Monthly => "monthly",
            Timeframe::Yearly => "yearly",
        })
    }
}

/// The calendar intervals are counted on: a time zone and the first day of the week.
///
/// The default is UTC and Monday (ISO 8601). UTC, not the machine's zone, because a decision must
/// not depend on which host runs it: a prune started from another machine, or after a host moved,
/// must keep exactly what the backup host would. Operators whose "days" are local days, or whose
/// snapshot names carry local times (sanoid), set their zone explicitly.
///
/// Change the zone of a dataset with care: its intervals move with it. A yearly backup taken at
/// midnight on January 1 in Berlin lies on December 31 in UTC, so after a switch from Berlin to
/// UTC it no longer represents the new year and the policy may stop preserving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// The zone whose civil time defines hours, days, weeks, months and years.
    pub time_zone: TimeZone,
    /// The first day of a week.
    pub week_start: Weekday,
}

/// `WEEK_START`: a weekday's English name or its first three letters, any case.
#[must_use]
pub fn parse_week_start(value: &str) -> Option<Weekday> {
    const DAYS: [(&str, Weekday); 7] = [
        ("monday", Weekday::Monday),
        ("tuesday", Weekday::Tuesday),
        ("wednesday", Weekday::Wednesday),
        ("thursday", Weekday::Thursday),
        ("friday", Weekday::Friday),
        ("saturday", Weekday::Saturday),
        ("sunday", Weekday::Sunday),
    ];
    let value = value.trim().to_ascii_lowercase();
    DAYS.iter()
        .find(|(name, _)| value.len() >= 3 && name.starts_with(value.as_str()))
        .map(|&(_, day)| day)
}

impl Default for Calendar {
    fn default() -> Self {
        Calendar {
            time_zone: TimeZone::UTC,
            week_start: Weekday::Monday,
        }
    }
}

/// One interval of one timeframe. Consecutive intervals have consecutive ordinals, so "the last N
/// intervals" is a subtraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    /// The timeframe.
    pub timeframe: Timeframe,
    /// The interval's number: the year; months, days or weeks since an epoch; or the hour.
    pub ordinal: i64,
}

/// The intervals of one instant in every timeframe, indexed by [`Timeframe`] (shortest first).
pub(super) type Ordinals = [i64; 5];

impl Calendar {
    /// A calendar in `time_zone` with weeks starting on `week_start`.
    #[must_use]
    pub fn new(time_zone: TimeZone, week_start: Weekday) -> Self {
        Calendar {
            time_zone,
            week_start,
        }
    }

    /// The interval of `timeframe` that `at` falls in.
    ///
    /// Days, weeks, months and years are civil: a day of 23 or 25 hours (a DST change) is one
    /// day. Hours are the hours of the local clock as they happen: the hour repeated when clocks
    /// fall back is two intervals, and the hour skipped when they spring forward is none.
    #[must_use]
    pub fn interval(&self, timeframe: Timeframe, at: Timestamp) -> Interval {
        Interval {
            timeframe,
            ordinal: self.ordinals(at)[timeframe.index()],
        }
    }

    /// The ordinals of `at` in every timeframe, from one time zone conversion.
    pub(super) fn ordinals(&self, at: Timestamp) -> Ordinals {
        let dt = self.time_zone.to_datetime(at);
        let day = days_from_civil(i64::from(dt.year()), dt.month(), dt.day());
        // The local hour began `minute:second` ago on the local clock; counting from that
        // instant keeps the two hours of a fall-back night apart.
        let into_hour = i64::from(dt.minute()) * 60 + i64::from(dt.second());
        let hour = (at.as_second() - into_hour).div_euclid(3600);
        // A week's ordinal is its first day's number divided by seven: all first days are
        // congruent modulo seven, so consecutive weeks get consecutive ordinals.
        let week = (day - self.days_into_week(day)).div_euclid(7);
        let month = i64::from(dt.year()) * 12 + i64::from(dt.month()) - 1;
        [hour, day, week, month, i64::from(dt.year())]
    }

    /// How many days `day` (days since 1970-01-01) lies after its week's first day.
    fn days_into_week(&self, day: i64) -> i64 {
        // 1970-01-01 was a Thursday: Monday-zero offset 3.
        let weekday = (day + 3).rem_euclid(7);
        (weekday - i64::from(self.week_start.to_monday_zero_offset())).rem_euclid(7)
    }

    /// A human name of the interval of `timeframe` that `at` falls in: `2026` (year), `2026-11`
    /// (month), `2026-11-30` (the week's first day), `2026-12-03` (day), `2026-12-03 13:00+01:00`
    /// (hour, with the offset that tells the two hours of a fall-back night apart).
    #[must_use]
    pub fn label(&self, timeframe: Timeframe, at: Timestamp) -> String {
        let dt = self.time_zone.to_datetime(at);
        match timeframe {
            Timeframe::Yearly => format!("{:04}", dt.year()),
            Timeframe::Monthly => format!("{:04}-{:02}", dt.year(), dt.month()),
            Timeframe::Weekly => {
                let day = days_from_civil(i64::from(dt.year()), dt.month(), dt.day());
                let (y, m, d) = civil_from_days(day - self.days_into_week(day));
                format!("{y:04}-{m:02}-{d:02}")
            }
            Timeframe::Daily => format!("{:04}-{:02}-{:02}", dt.year(), dt.month(), dt.day()),
            Timeframe::Hourly => {
                let offset = self.time_zone.to_offset(at);
                format!("{} {:02}:00{offset}", date_of(dt), dt.hour())
            }
        }
    }
}

/// `YYYY-MM-DD` of a civil date-time.
fn date_of(dt: DateTime) -> String {
    format!("{:04}-{:02}-{:02}", dt.year(), dt.month(), dt.day())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1..=12, day 1..=31).
pub(super) fn days_from_civil(year: i64, month: i8, day: i8) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day number (days since 1970-01-01).
pub(super) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

//! Table tests of the retention decisions: intervals, time zones, DST, names, preservation, the
//! tree's depth bound and the linear rebase rule.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use proptest::prelude::*;

use super::*;
use crate::prune::PruneInput;

const BERLIN: &str = "CET-1CEST,M3.5.0,M10.5.0/3";
const NEW_YORK: &str = "EST5EDT,M3.2.0,M11.1.0";

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn zone(posix: &str) -> TimeZone {
    TimeZone::posix(posix).unwrap()
}

fn utc() -> Calendar {
    Calendar::default()
}

fn items(list: &[(&str, &str)]) -> Vec<Item> {
    list.iter()
        .map(|(name, time)| Item {
            name: (*name).to_string(),
            time: Some(ts(time)),
        })
        .collect()
}

fn kept(p: &Preservation) -> Vec<String> {
    p.preserved().into_keys().collect()
}

#[test]
fn policy_parses_any_order_and_prints_canonically() {
    let cases = [
        ("1y 12m 8w 14d 24h", "1y 12m 8w 14d 24h"),
        ("24h 14d 8w 12m 1y", "1y 12m 8w 14d 24h"),
        ("  7d\t*m ", "*m 7d"),
        ("*y", "*y"),
    ];
    for (input, canonical) in cases {
        assert_eq!(
            Policy::parse(input).unwrap().to_string(),
            canonical,
            "{input}"
        );
    }
    let p = Policy::parse("1y 12m 8w 14d 24h").unwrap();
    assert_eq!(p.len(), 5);
    assert_eq!(p.keep(Timeframe::Weekly), Some(Keep::Last(8)));
    assert_eq!(Policy::parse("3m").unwrap().keep(Timeframe::Daily), None);
}

#[test]
fn policy_errors_name_the_token() {
    let cases: [(&str, PolicyError); 10] = [
        ("", PolicyError::Empty),
        ("   ", PolicyError::Empty),
        ("14d 7x", PolicyError::UnknownUnit { token: "7x".into() }),
        (
            "14D",
            PolicyError::UnknownUnit {
                token: "14D".into(),
            },
        ),
        (
            "14d 1y 7d",
            PolicyError::Duplicate {
                token: "7d".into(),
                timeframe: Timeframe::Daily,
            },
        ),
        ("0d", PolicyError::Zero { token: "0d".into() }),
        ("d", PolicyError::Invalid { token: "d".into() }),
        (
            "-3d",
            PolicyError::Invalid {
                token: "-3d".into(),
            },
        ),
        ("14", PolicyError::Invalid { token: "14".into() }),
        (
            "99999999999999999999d",
            PolicyError::TooLarge {
                token: "99999999999999999999d".into(),
            },
        ),
    ];
    for (input, error) in cases {
        assert_eq!(Policy::parse(input), Err(error), "{input}");
    }
    let message = Policy::parse("14d 3q").unwrap_err().to_string();
    assert!(message.contains("`3q`"), "{message}");
}

#[test]
#[allow(clippy::too_many_lines)] // one table and its label checks
fn interval_boundaries() {
    let cal = utc();
    let sunday = Calendar::new(TimeZone::UTC, Weekday::Sunday);
    // (timeframe, calendar, a, b, same interval?)
    let cases = [
        (
            Timeframe::Yearly,
            &cal,
            "2025-12-31T23:59:59Z",
            "2026-01-01T00:00:00Z",
            false,
        ),
        (
            Timeframe::Yearly,
            &cal,
            "2026-01-01T00:00:00Z",
            "2026-12-31T23:59:59Z",
            true,
        ),
        (
            Timeframe::Monthly,
            &cal,
            "2026-11-30T23:59:59Z",
            "2026-12-01T00:00:00Z",
            false,
        ),
        (
            Timeframe::Monthly,
            &cal,
            "2026-02-01T00:00:00Z",
            "2026-02-28T23:00:00Z",
            true,
        ),
        (
            Timeframe::Daily,
            &cal,
            "2026-12-03T23:59:59Z",
            "2026-12-04T00:00:00Z",
            false,
        ),
        (
            Timeframe::Hourly,
            &cal,
            "2026-12-03T12:00:00Z",
            "2026-12-03T12:59:59Z",
            true,
        ),
        (
            Timeframe::Hourly,
            &cal,
            "2026-12-03T12:59:59Z",
            "2026-12-03T13:00:00Z",
            false,
        ),
        // 2026-12-06 is a Sunday, 2026-12-07 a Monday.
        (
            Timeframe::Weekly,
            &cal,
            "2026-12-06T12:00:00Z",
            "2026-12-07T00:00:00Z",
            false,
        ),
        (
            Timeframe::Weekly,
            &cal,
            "2026-12-05T12:00:00Z",
            "2026-12-06T00:00:00Z",
            true,
        ),
        (
            Timeframe::Weekly,
            &sunday,
            "2026-12-05T12:00:00Z",
            "2026-12-06T00:00:00Z",
            false,
        ),
        (
            Timeframe::Weekly,
            &sunday,
            "2026-12-06T00:00:00Z",
            "2026-12-07T00:00:00Z",
            true,
        ),
        // A week across a new year is one week.
        (
            Timeframe::Weekly,
            &cal,
            "2026-12-31T00:00:00Z",
            "2027-01-03T00:00:00Z",
            true,
        ),
    ];
    for (tf, cal, a, b, same) in cases {
        let (ia, ib) = (cal.interval(tf, ts(a)), cal.interval(tf, ts(b)));
        assert_eq!(ia == ib, same, "{tf} {a} {b}");
        if !same {
            assert_eq!(ib.ordinal - ia.ordinal, 1, "consecutive: {tf} {a} {b}");
        }
    }
    assert_eq!(
        cal.label(Timeframe::Weekly, ts("2026-12-03T10:00:00Z")),
        "2026-11-30"
    );
    assert_eq!(
        sunday.label(Timeframe::Weekly, ts("2026-12-03T10:00:00Z")),
        "2026-11-29"
    );
    assert_eq!(
        cal.label(Timeframe::Monthly, ts("2026-12-03T10:00:00Z")),
        "2026-12"
    );
    assert_eq!(
        cal.label(Timeframe::Hourly, ts("2026-12-03T10:20:00Z")),
        "2026-12-03 10:00+00"
    );
}

#[test]
fn civil_day_numbers_round_trip() {
    for day in [-800_000, -1, 0, 1, 20_000, 20_819, 2_000_000] {
        let (y, m, d) = calendar::civil_from_days(day);
        assert_eq!(
            calendar::days_from_civil(y, m as i8, d as i8),
            day,
            "{y}-{m}-{d}"
        );
    }
    assert_eq!(calendar::days_from_civil(2026, 12, 4), 20_791);
}

#[test]
fn dst_days_are_one_day_and_fall_back_hours_are_two() {
    let berlin = Calendar::new(zone(BERLIN), Weekday::Monday);
    // Spring forward: 2026-03-29 has 23 hours (00:00 CET = 23:00Z the day before).
    let spring = [
        "2026-03-28T23:00:00Z",
        "2026-03-29T00:59:59Z",
        "2026-03-29T01:00:00Z",
        "2026-03-29T21:59:59Z",
    ];
    let days: Vec<i64> = spring
        .iter()
        .map(|t| berlin.interval(Timeframe::Daily, ts(t)).ordinal)
        .collect();
    assert!(days.iter().all(|d| *d == days[0]), "{days:?}");
    assert_eq!(
        berlin
            .interval(Timeframe::Daily, ts("2026-03-29T22:00:00Z"))
            .ordinal,
        days[0] + 1
    );
    // 01:30 CET and 03:30 CEST are consecutive hours.
    let before = berlin.interval(Timeframe::Hourly, ts("2026-03-29T00:30:00Z"));
    let after = berlin.interval(Timeframe::Hourly, ts("2026-03-29T01:30:00Z"));
    assert_eq!(after.ordinal - before.ordinal, 1);
    // Fall back: 2026-10-25 has 25 hours, 22:00Z the day before to 23:00Z.
    let fall = [
        "2026-10-24T22:00:00Z",
        "2026-10-25T00:30:00Z",
        "2026-10-25T01:30:00Z",
        "2026-10-25T22:59:59Z",
    ];
    let days: Vec<i64> = fall
        .iter()
        .map(|t| berlin.interval(Timeframe::Daily, ts(t)).ordinal)
        .collect();
    assert!(days.iter().all(|d| *d == days[0]), "{days:?}");
    assert_eq!(
        berlin
            .interval(Timeframe::Daily, ts("2026-10-25T23:00:00Z"))
            .ordinal,
        days[0] + 1
    );
    // 02:10 CEST (00:10Z) and 02:10 CET (01:10Z) are two hourly intervals.
    let first = berlin.interval(Timeframe::Hourly, ts("2026-10-25T00:10:00Z"));
    let second = berlin.interval(Timeframe::Hourly, ts("2026-10-25T01:10:00Z"));
    assert_eq!(second.ordinal - first.ordinal, 1);
    assert_eq!(
        berlin.label(Timeframe::Hourly, ts("2026-10-25T00:10:00Z")),
        "2026-10-25 02:00+02"
    );
    assert_eq!(
        berlin.label(Timeframe::Hourly, ts("2026-10-25T01:10:00Z")),
        "2026-10-25 02:00+01"
    );

    // Preserved: with 24h both 02:10s are kept, each the first of its hour.
    let list = items(&[
        ("a", "2026-10-25T00:10:00Z"),
        ("b", "2026-10-25T00:40:00Z"),
        ("c", "2026-10-25T01:10:00Z"),
        ("d", "2026-10-25T01:40:00Z"),
        ("e", "2026-10-25T03:00:00Z"),
    ]);
    let p = preserve(
        &Policy::parse("24h").unwrap(),
        &list,
        ts("2026-10-25T03:30:00Z"),
        &berlin,
    );
    assert_eq!(kept(&p), ["a", "c", "e"]);
    // And with 2d the whole 25-hour day is one: only its first and the newest.
    let p = preserve(
        &Policy::parse("2d").unwrap(),
        &list,
        ts("2026-10-25T22:30:00Z"),
        &berlin,
    );
    assert_eq!(kept(&p), ["a", "e"]);
}

#[test]
fn same_instants_fall_on_different_days_by_zone() {
    let list = items(&[
        ("a", "2026-12-04T02:00:00Z"),
        ("b", "2026-12-04T06:00:00Z"),
        ("c", "2026-12-04T07:00:00Z"),
    ]);
    let policy = Policy::parse("3d").unwrap();
    let now = ts("2026-12-04T12:00:00Z");
    assert_eq!(kept(&preserve(&policy, &list, now, &utc())), ["a", "c"]);
    let new_york = Calendar::new(zone(NEW_YORK), Weekday::Monday);
    // In New York "a" is 2026-12-03 21:00 and "b" 2026-12-04 01:00: the first of its day.
    let p = preserve(&policy, &list, now, &new_york);
    assert_eq!(kept(&p), ["a", "b", "c"]);
    assert_eq!(
        p.verdict("a"),
        Some(&Verdict::Preserved(vec!["daily 2026-12-03".into()]))
    );
}

#[test]
fn week_start_decides_which_snapshot_represents_a_week() {
    // Sat 12-05, Sun 12-06, Mon 12-07, Tue 12-08.
    let list = items(&[
        ("sat", "2026-12-05T12:00:00Z"),
        ("sun", "2026-12-06T12:00:00Z"),
        ("mon", "2026-12-07T12:00:00Z"),
        ("tue", "2026-12-08T12:00:00Z"),
    ]);
    let policy = Policy::parse("4w").unwrap();
    let now = ts("2026-12-08T13:00:00Z");
    assert_eq!(
        kept(&preserve(&policy, &list, now, &utc())),
        ["mon", "sat", "tue"]
    );
    let sunday = Calendar::new(TimeZone::UTC, Weekday::Sunday);
    let p = preserve(&policy, &list, now, &sunday);
    assert_eq!(kept(&p), ["sat", "sun", "tue"]);
    assert_eq!(
        p.verdict("mon"),
        Some(&Verdict::Expired("weekly 2026-12-06 is kept by sun".into()))
    );
}

#[test]
fn current_interval_counts_and_first_of_month_and_year() {
    let list = items(&[
        ("dec31", "2025-12-31T23:59:59Z"),
        ("jan1", "2026-01-01T00:00:00Z"),
        ("jan2", "2026-01-02T00:00:00Z"),
        ("feb1", "2026-02-01T00:00:00Z"),
        ("feb2", "2026-02-02T00:00:00Z"),
    ]);
    let now = ts("2026-02-03T00:00:00Z");
    let cases = [
        ("1m", vec!["feb1", "feb2"]),
        ("2m", vec!["feb1", "feb2", "jan1"]),
        ("3m", vec!["dec31", "feb1", "feb2", "jan1"]),
        ("1y", vec!["feb2", "jan1"]),
        ("2y", vec!["dec31", "feb2", "jan1"]),
        ("*m", vec!["dec31", "feb1", "feb2", "jan1"]),
    ];
    for (policy, expected) in cases {
        let p = preserve(&Policy::parse(policy).unwrap(), &list, now, &utc());
        assert_eq!(kept(&p), expected, "{policy}");
    }
}

#[test]
fn newest_and_unknown_times_are_always_kept() {
    let mut list = items(&[
        ("old", "2020-01-01T00:00:00Z"),
        ("older", "2019-01-01T00:00:00Z"),
    ]);
    list.push(Item {
        name: "original-z3".into(),
        time: None,
    });
    let p = preserve(
        &Policy::parse("1d").unwrap(),
        &list,
        ts("2026-12-04T00:00:00Z"),
        &utc(),
    );
    assert_eq!(
        p.verdict("old"),
        Some(&Verdict::Preserved(vec![NEWEST.into()]))
    );
    assert_eq!(
        p.verdict("older"),
        Some(&Verdict::Expired(
            "older than every interval the policy keeps".into()
        ))
    );
    assert_eq!(p.verdict("original-z3"), Some(&Verdict::TimeUnknown));

    let mut input = PruneInput::default();
    p.fill(&mut input);
    assert_eq!(input.preserved.keys().collect::<Vec<_>>(), ["old"]);
    assert_eq!(
        input.time_unknown.iter().collect::<Vec<_>>(),
        ["original-z3"]
    );
    assert_eq!(input.expire_reasons.keys().collect::<Vec<_>>(), ["older"]);

    // Nothing but unknown times: nothing expires.
    let only = [Item {
        name: "x".into(),
        time: None,
    }];
    let p = preserve(
        &Policy::parse("1d").unwrap(),
        &only,
        ts("2026-12-04T00:00:00Z"),
        &utc(),
    );
    assert!(p.expire_reasons().is_empty() && p.preserved().is_empty());
}

#[test]
fn times_after_now_are_kept() {
    let list = items(&[
        ("a", "2026-12-04T00:00:00Z"),
        ("b", "2026-12-05T00:00:00Z"),
        ("c", "2026-12-06T00:00:00Z"),
    ]);
    let p = preserve(
        &Policy::parse("1d").unwrap(),
        &list,
        ts("2026-12-04T12:00:00Z"),
        &utc(),
    );
    assert_eq!(kept(&p), ["a", "b", "c"]);
    assert_eq!(
        p.verdict("b"),
        Some(&Verdict::Preserved(vec![AFTER_NOW.into()]))
    );
}

#[test]
fn gaps_expire_what_no_kept_interval_covers() {
    // Dailies in January, then nothing until June.
    let mut list = Vec::new();
    for day in 1..=31 {
        list.push((
            format!("jan{day:02}"),
            format!("2026-01-{day:02}T00:00:00Z"),
        ));
    }
    for day in 10..=15 {
        list.push((
            format!("jun{day:02}"),
            format!("2026-06-{day:02}T00:00:00Z"),
        ));
    }
    let list: Vec<Item> = list
        .iter()
        .map(|(n, t)| Item {
            name: n.clone(),
            time: Some(ts(t)),
        })
        .collect();
    let p = preserve(
        &Policy::parse("14d 4w 3m").unwrap(),
        &list,
        ts("2026-06-15T12:00:00Z"),
        &utc(),
    );
    let preserved = kept(&p);
    assert_eq!(
        preserved,
        ["jun10", "jun11", "jun12", "jun13", "jun14", "jun15"]
    );
    assert_eq!(p.expire_reasons().len(), 31);
    // 6 months keep January's first.
    let p = preserve(
        &Policy::parse("14d 6m").unwrap(),
        &list,
        ts("2026-06-15T12:00:00Z"),
        &utc(),
    );
    assert_eq!(
        p.verdict("jan01"),
        Some(&Verdict::Preserved(vec!["monthly 2026-01".into()]))
    );
    assert_eq!(
        p.verdict("jan02"),
        Some(&Verdict::Expired("monthly 2026-01 is kept by jan01".into()))
    );
}

/// Daily snapshots for 2026 at 00:00 UTC and hourly ones for its last two days, named as
/// zfs-auto-snap names them, timed from their names.
fn simulated_year() -> Vec<Item> {
    let format = NameFormat::parse("zfs-auto-snap").unwrap();
    let mut names = Vec::new();
    let start = ts("2026-01-01T00:00:00Z");
    for day in 0..365 {
        let t = start + jiff::SignedDuration::from_hours(24 * day);
        let dt = TimeZone::UTC.to_datetime(t);
        names.push(format!("zfs-auto-snap_daily-{}-0000", dt.date()));
        if day >= 363 {
            for hour in 1..24 {
                names.push(format!("zfs-auto-snap_hourly-{}-{hour:02}00", dt.date()));
            }
        }
    }
    names
        .into_iter()
        .map(|name| {
            let time = snapshot_time(&name, Some(0), Some(&format), &TimeZone::UTC);
            assert_eq!(time.map(|t| t.1), Some(TimeSource::Name), "{name}");
            Item {
                name,
                time: time.map(|t| t.0),
            }
        })
        .collect()
}

#[test]
fn a_simulated_year_keeps_exactly_the_expected_snapshots() {
    let list = simulated_year();
    assert_eq!(list.len(), 365 + 46);
    let policy = Policy::parse("1y 12m 8w 14d 24h").unwrap();
    let p = preserve(&policy, &list, ts("2026-12-31T23:30:00Z"), &utc());
    let count = |prefix: &str| {
        p.preserved()
            .values()
            .filter(|reasons| reasons.split(", ").any(|r| r.starts_with(prefix)))
            .count()
    };
    assert_eq!(count("yearly"), 1);
    assert_eq!(count("monthly"), 12);
    assert_eq!(count("weekly"), 8);
    assert_eq!(count("daily"), 14);
    assert_eq!(count("hourly"), 24);
    // 12 first-of-months (the yearly among them), 8 Mondays from 11-09 (none a first of month),
    // 14 days from 12-18 (two of them Mondays), 23 hourlies of 12-31 (its 00:00 is a daily).
    assert_eq!(p.preserved().len(), 12 + 8 + 12 + 23);
    assert_eq!(p.expire_reasons().len(), list.len() - 55);
    assert!(p.time_unknown().is_empty());
    assert_eq!(
        p.preserved()["zfs-auto-snap_daily-2026-01-01-0000"],
        "yearly 2026, monthly 2026-01"
    );
    assert_eq!(
        p.preserved()["zfs-auto-snap_daily-2026-12-28-0000"],
        "weekly 2026-12-28, daily 2026-12-28"
    );
    assert_eq!(
        p.preserved()["zfs-auto-snap_hourly-2026-12-31-2300"],
        "hourly 2026-12-31 23:00+00, newest"
    );
    assert_eq!(
        p.expire_reasons()["zfs-auto-snap_hourly-2026-12-30-0500"],
        "daily 2026-12-30 is kept by zfs-auto-snap_daily-2026-12-30-0000"
    );
}

#[test]
fn a_hundred_thousand_items_complete() {
    let start = ts("2015-01-01T00:00:00Z");
    let list: Vec<Item> = (0..100_000)
        .map(|i| Item {
            name: format!("s{i:06}"),
            time: Some(start + jiff::SignedDuration::from_secs(i * 3000)),
        })
        .collect();
    let now = list[99_999].time.unwrap();
    let p = preserve(
        &Policy::parse("*y 12m 8w 14d 24h").unwrap(),
        &list,
        now,
        &Calendar::new(zone(BERLIN), Weekday::Monday),
    );
    assert_eq!(p.verdicts.len(), 100_000);
    assert!(p.preserved().len() < 100);
}

#[test]
fn zfs_auto_snap_names() {
    let berlin = zone(BERLIN);
    let utc_format = NameFormat::parse("zfs-auto-snap").unwrap();
    let local_format = NameFormat::parse("zfs-auto-snap-local").unwrap();
    let cases: [(&str, Option<&str>); 12] = [
        (
            "zfs-auto-snap_daily-2026-12-04-1200",
            Some("2026-12-04T12:00:00Z"),
        ),
        (
            "zfs-auto-snap_frequent-2026-12-04-1215",
            Some("2026-12-04T12:15:00Z"),
        ),
        (
            "zfs-auto-snap_hourly-2026-12-04-0100",
            Some("2026-12-04T01:00:00Z"),
        ),
        (
            "zfs-auto-snap_weekly-2026-12-04-1200",
            Some("2026-12-04T12:00:00Z"),
        ),
        (
            "zfs-auto-snap_monthly-2026-12-01-0000",
            Some("2026-12-01T00:00:00Z"),
        ),
        (
            "zfs-auto-snap_yearly-2026-01-01-0000",
            Some("2026-01-01T00:00:00Z"),
        ),
        (
            "zfs-auto-snap-2026-12-04-1200",
            Some("2026-12-04T12:00:00Z"),
        ),
        ("zfs-auto-snap_daily-2026-02-30-1200", None),
        ("zfs-auto-snap_daily-2026-12-04-2400", None),
        ("zfs-auto-snap_-2026-12-04-1200", None),
        ("autosnap_daily-2026-12-04-1200", None),
        ("zfs-auto-snap_daily-2026-12-04-12", None),
    ];
    for (name, expected) in cases {
        assert_eq!(
            utc_format.time_of(name, &berlin),
            expected.map(ts),
            "{name}"
        );
    }
    // Read as local time (zfs-auto-snapshot 1.0.x) the same name is Berlin time.
    assert_eq!(
        local_format.time_of("zfs-auto-snap_daily-2026-12-04-1200", &berlin),
        Some(ts("2026-12-04T11:00:00Z"))
    );
}

#[test]
fn sanoid_names_are_local_time() {
    let berlin = zone(BERLIN);
    let format = NameFormat::parse("sanoid").unwrap();
    let cases: [(&str, Option<&str>); 9] = [
        (
            "autosnap_2026-12-04_12:00:00_daily",
            Some("2026-12-04T11:00:00Z"),
        ),
        (
            "autosnap_2026-07-04_12:00:00_hourly",
            Some("2026-07-04T10:00:00Z"),
        ),
        (
            "autosnap_2026-12-04_12:15:00_frequently",
            Some("2026-12-04T11:15:00Z"),
        ),
        (
            "autosnap_2026-12-04_00:00:00_yearly",
            Some("2026-12-03T23:00:00Z"),
        ),
        // Repeated at fall-back: the earlier (CEST) reading.
        (
            "autosnap_2026-10-25_02:30:00_hourly",
            Some("2026-10-25T00:30:00Z"),
        ),
        ("autosnap_2026-02-30_12:00:00_daily", None),
        ("autosnap_2026-12-04_12:00:00_", None),
        ("autosnap_2026-12-04_12:00:00", None),
        ("syncoid_host_2026-12-04:12:00:00", None),
    ];
    for (name, expected) in cases {
        assert_eq!(format.time_of(name, &berlin), expected.map(ts), "{name}");
    }
}

#[test]
fn custom_formats() {
    let berlin = zone(BERLIN);
    let cases: [(&str, &str, Option<&str>); 14] = [
        ("%Y%m%d", "backup-20261204", Some("2026-12-03T23:00:00Z")),
        // A digit before a pattern that starts with a field: the number would be read at the
        // wrong place (year 2612 from `...2026120412`), so no time from the name.
        ("utc:%Y%m%d", "backup-2026120412", None),
        ("utc:%Y%m%d", "v220261204", None),
        // Any other text before it is fine, a digit before a literal too.
        ("utc:-%Y%m%d", "v2-20261204", Some("2026-12-04T00:00:00Z")),
        (
            "utc:%Y%m%d",
            "backup-20261204",
            Some("2026-12-04T00:00:00Z"),
        ),
        (
            "utc:daily-%Y-%m-%dT%H:%M:%S",
            "daily-2026-12-04T12:34:56",
            Some("2026-12-04T12:34:56Z"),
        ),
        (
            "utc:daily-%Y-%m-%dT%H:%M:%S",
            "x-daily-2026-12-04T12:34:56",
            Some("2026-12-04T12:34:56Z"),
        ),
        (
            "utc:daily-%Y-%m-%dT%H:%M:%S",
            "weekly-2026-12-04T12:34:56",
            None,
        ),
        (
            "utc:daily-%Y-%m-%dT%H:%M:%S",
            "daily-2026-12-04T12:34:56-extra",
            None,
        ),
        (
            "utc:%d.%m.%Y",
            "snap-04.12.2026",
            Some("2026-12-04T00:00:00Z"),
        ),
        ("utc:%Y%m%d", "snap-20260230", None),
        // zfs-auto-snapshot run with `--prefix=backup --sep=.`, as the NameFormat docs advise.
        (
            "utc:-%Y-%m-%d-%H%M",
            "backup.daily-2026-12-04-1215",
            Some("2026-12-04T12:15:00Z"),
        ),
        ("utc:%Y%m%d", "snap-2026120x", None),
        (
            "utc:100%%-%Y%m%d",
            "100%-20261204",
            Some("2026-12-04T00:00:00Z"),
        ),
    ];
    for (spec, name, expected) in cases {
        let format = NameFormat::parse(spec).unwrap();
        assert_eq!(
            format.time_of(name, &berlin),
            expected.map(ts),
            "{spec} {name}"
        );
        assert_eq!(format.to_string(), spec);
    }
    // Multi-byte text before the pattern never splits a character.
    let format = NameFormat::parse("utc:%Y%m%d").unwrap();
    assert_eq!(format.time_of("é", &berlin), None);
    assert_eq!(
        format.time_of("ü20261204", &berlin),
        Some(ts("2026-12-04T00:00:00Z"))
    );

    let errors = [
        ("%Y-%m", "needs %Y, %m and %d"),
        ("%Y%m%d%b", "unknown directive `%b`"),
        ("%Y%m%d%", "unknown directive `%`"),
        ("%Y%m%d%Y", "`%Y` appears twice"),
    ];
    for (spec, message) in errors {
        let error = NameFormat::parse(spec).unwrap_err().to_string();
        assert!(error.contains(message), "{spec}: {error}");
    }
}

#[test]
fn snapshot_time_prefers_a_matching_name_then_creation() {
    let format = NameFormat::parse("zfs-auto-snap").unwrap();
    let creation = ts("2027-01-01T00:00:00Z").as_second();
    let cases = [
        (
            "zfs-auto-snap_daily-2026-12-04-1200",
            Some(creation),
            Some(&format),
            Some(("2026-12-04T12:00:00Z", TimeSource::Name)),
        ),
        (
            "manual",
            Some(creation),
            Some(&format),
            Some(("2027-01-01T00:00:00Z", TimeSource::Creation)),
        ),
        (
            "zfs-auto-snap_daily-2026-12-04-1200",
            Some(creation),
            None,
            Some(("2027-01-01T00:00:00Z", TimeSource::Creation)),
        ),
        ("manual", None, Some(&format), None),
        ("zfs-auto-snap_daily-2026-12-04-1200", None, None, None),
    ];
    for (name, creation, format, expected) in cases {
        assert_eq!(
            snapshot_time(name, creation, format, &TimeZone::UTC),
            expected.map(|(t, s)| (ts(t), s)),
            "{name}"
        );
    }
}

fn backup(name: &str, time: &str, parent: Option<&str>) -> Backup {
    Backup {
        name: name.into(),
        time: ts(time),
        parent: parent.map(Into::into),
    }
}

#[test]
fn tree_bases_follow_the_timeframes() {
    let policy = Policy::parse("1y 12m 14d 24h").unwrap();
    let cal = utc();
    let existing = vec![
        backup("y", "2026-01-01T00:00:00Z", None),
        backup("m12", "2026-12-01T00:00:00Z", Some("y")),
        backup("d4", "2026-12-04T00:00:00Z", Some("m12")),
        backup("h13", "2026-12-04T13:00:00Z", Some("d4")),
    ];
    let cases = [
        (
            "2027-01-01T00:00:00Z",
            Base::Full,
            Some(Timeframe::Yearly),
            1,
            "first of yearly 2027: full",
        ),
        (
            "2026-12-05T00:00:00Z",
            Base::Incremental {
                parent: "m12".into(),
            },
            Some(Timeframe::Daily),
            3,
            "first of daily 2026-12-05: on monthly 2026-12 (m12)",
        ),
        (
            "2026-12-04T14:00:00Z",
            Base::Incremental {
                parent: "d4".into(),
            },
            Some(Timeframe::Hourly),
            4,
            "first of hourly 2026-12-04 14:00+00: on daily 2026-12-04 (d4)",
        ),
        (
            "2026-12-04T13:30:00Z",
            Base::Incremental {
                parent: "d4".into(),
            },
            None,
            4,
            "hourly 2026-12-04 13:00+00 already has h13: on daily 2026-12-04 (d4)",
        ),
    ];
    for (time, base, represents, depth, reason) in cases {
        let decision = choose_base(&policy, &existing, "new", ts(time), &cal);
        assert_eq!(decision.base, base, "{time}");
        assert_eq!(decision.represents, represents, "{time}");
        assert_eq!(decision.depth, depth, "{time}");
        assert_eq!(decision.reason, reason, "{time}");
    }
    // A new month: monthly on the yearly.
    let d = choose_base(
        &policy,
        &existing[..1],
        "new",
        ts("2026-12-01T00:00:00Z"),
        &cal,
    );
    assert_eq!(d.base, Base::Incremental { parent: "y".into() });
    assert_eq!(d.reason, "first of monthly 2026-12: on yearly 2026 (y)");
    // Nothing yet: a full.
    let d = choose_base(&policy, &[], "new", ts("2026-12-01T00:00:00Z"), &cal);
    assert_eq!((d.base, d.depth), (Base::Full, 1));
    // One timeframe: every backup is a full.
    let d = choose_base(
        &Policy::parse("14d").unwrap(),
        &existing,
        "new",
        ts("2026-12-04T15:00:00Z"),
        &cal,
    );
    assert_eq!(d.base, Base::Full);
    assert_eq!(
        d.reason,
        "daily 2026-12-04 already has d4; with one timeframe every backup is a full"
    );
}

#[test]
fn tree_falls_back_when_the_intended_parent_is_too_deep_or_broken() {
    let policy = Policy::parse("1y 12m 14d").unwrap();
    let cal = utc();
    // Linear history: the month's first backup is 3 links deep.
    let linear = vec![
        backup("a", "2026-11-01T00:00:00Z", None),
        backup("b", "2026-11-15T00:00:00Z", Some("a")),
        backup("c", "2026-12-01T00:00:00Z", Some("b")),
    ];
    let d = choose_base(&policy, &linear, "new", ts("2026-12-02T00:00:00Z"), &cal);
    assert_eq!(d.base, Base::Incremental { parent: "a".into() });
    assert_eq!(d.depth, 2);
    assert_eq!(
        d.reason,
        "first of daily 2026-12-02: monthly 2026-12 (c) is 3 links deep, so on yearly 2026 (a)"
    );
    // A broken chain (parent not listed) is never a base; nothing else fits: a full.
    let broken = vec![backup("y", "2026-01-01T00:00:00Z", Some("gone"))];
    let d = choose_base(&policy, &broken, "new", ts("2026-12-02T00:00:00Z"), &cal);
    assert_eq!(d.base, Base::Full);
    assert_eq!(
        d.reason,
        "first of monthly 2026-12: yearly 2026 (y) has no complete chain, no base within the depth bound: full"
    );
    // A loop is never a base either.
    let looped = vec![
        backup("p", "2026-01-01T00:00:00Z", Some("q")),
        backup("q", "2026-01-02T00:00:00Z", Some("p")),
    ];
    let d = choose_base(&policy, &looped, "new", ts("2026-12-02T00:00:00Z"), &cal);
    assert_eq!(d.base, Base::Full);
    // Backups after the new snapshot, and the snapshot itself, are ignored.
    let later = vec![
        backup("later", "2027-01-01T00:00:00Z", None),
        backup("new", "2026-01-01T00:00:00Z", None),
    ];
    let d = choose_base(&policy, &later, "new", ts("2026-12-02T00:00:00Z"), &cal);
    assert_eq!(d.reason, "first of yearly 2026: full");
}

/// Runs a sequence of backups through [`choose_base`], appending each, and checks every restore
/// depth (walked through the parent links) against the number of timeframes.
fn simulate(policy: &Policy, cal: &Calendar, times: &[Timestamp]) -> usize {
    let mut backups: Vec<Backup> = Vec::new();
    let mut deepest = 0;
    for (i, time) in times.iter().enumerate() {
        let name = format!("s{i:05}");
        let d = choose_base(policy, &backups, &name, *time, cal);
        let parent = match d.base {
            Base::Full => None,
            Base::Incremental { parent } => Some(parent),
        };
        backups.push(Backup {
            name: name.clone(),
            time: *time,
            parent,
        });
        let parents: HashMap<&str, Option<&str>> = backups
            .iter()
            .map(|b| (b.name.as_str(), b.parent.as_deref()))
            .collect();
        let walked = tree::depth(&parents, &name).unwrap();
        assert_eq!(walked, d.depth, "{}", d.reason);
        assert!(
            walked <= policy.len(),
            "{} links > {}: {}",
            walked,
            policy.len(),
            d.reason
        );
        deepest = deepest.max(walked);
    }
    deepest
}

#[test]
fn a_simulated_year_of_backups_restores_in_at_most_four_links() {
    let policy = Policy::parse("1y 12m 14d 24h").unwrap();
    let times: Vec<Timestamp> = simulated_year()
        .into_iter()
        .filter_map(|i| i.time)
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(simulate(&policy, &utc(), &sorted), 4);
    let policy = Policy::parse("1y 12m 8w 14d 24h").unwrap();
    let berlin = Calendar::new(zone(BERLIN), Weekday::Sunday);
    assert_eq!(simulate(&policy, &berlin, &sorted), 5);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn tree_depth_never_exceeds_the_timeframes(
        steps in proptest::collection::vec(60i64..(40 * 86_400), 1..120),
        mask in 1u8..32,
        sunday in any::<bool>(),
    ) {
        let mut policy = Policy::default();
        for (bit, tf) in Timeframe::LONGEST_FIRST.into_iter().enumerate() {
            if mask & (1 << bit) != 0 {
                policy = policy.with(tf, Keep::Last(3));
            }
        }
        let week_start = if sunday { Weekday::Sunday } else { Weekday::Monday };
        let cal = Calendar::new(zone(NEW_YORK), week_start);
        let mut t = ts("2026-01-01T00:00:00Z");
        let times: Vec<Timestamp> = steps
            .iter()
            .map(|s| {
                t += jiff::SignedDuration::from_secs(*s);
                t
            })
            .collect();
        simulate(&policy, &cal, &times);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The invariants prune relies on, on random histories and policies: the newest timed item
    /// is kept; an item without a time is never expired; each timeframe keeps at most N
    /// intervals, each by one item; and preserving only what was kept, at the same `now`, keeps
    /// all of it (a second prune deletes nothing more).
    #[test]
    fn preservation_is_stable_and_keeps_the_newest(
        offsets in proptest::collection::vec(proptest::option::weighted(0.9, 0i64..(400 * 86_400)), 0..150),
        counts in proptest::collection::vec(0u32..5, 5),
        berlin in any::<bool>(),
    ) {
        let mut policy = Policy::default();
        for (tf, n) in Timeframe::LONGEST_FIRST.into_iter().zip(&counts) {
            if *n > 0 {
                policy = policy.with(tf, Keep::Last(*n));
            }
        }
        let cal = if berlin { Calendar::new(zone(BERLIN), Weekday::Monday) } else { utc() };
        let start = ts("2026-01-01T00:00:00Z");
        let list: Vec<Item> = offsets
            .iter()
            .enumerate()
            .map(|(i, offset)| Item {
                name: format!("s{i:03}"),
                time: offset.map(|o| start + jiff::SignedDuration::from_secs(o)),
            })
            .collect();
        let now = start + jiff::SignedDuration::from_hours(380 * 24);
        let p = preserve(&policy, &list, now, &cal);

        let newest = list
            .iter()
            .filter_map(|i| i.time.map(|t| (t, &i.name)))
            .max();
        if let Some((_, name)) = newest {
            let kept_newest = matches!(p.verdict(name), Some(Verdict::Preserved(r)) if r.iter().any(|r| r == NEWEST));
            prop_assert!(kept_newest, "{name}");
        }
        for item in &list {
            if item.time.is_none() {
                prop_assert_eq!(p.verdict(&item.name), Some(&Verdict::TimeUnknown));
            }
        }
        for (tf, keep) in policy.timeframes() {
            let Keep::Last(n) = keep else { continue };
            let prefix = format!("{tf} ");
            let mut labels: Vec<&str> = p
                .verdicts
                .iter()
                .filter_map(|(_, v)| match v {
                    Verdict::Preserved(reasons) => Some(reasons),
                    _ => None,
                })
                .flatten()
                .filter(|r| r.starts_with(&prefix))
                .map(String::as_str)
                .collect();
            let total = labels.len();
            labels.sort_unstable();
            labels.dedup();
            prop_assert_eq!(labels.len(), total, "one item per {} interval", tf);
            prop_assert!(total <= n as usize, "{} {} intervals > {}", total, tf, n);
        }

        let survivors: Vec<Item> = list
            .iter()
            .filter(|i| !matches!(p.verdict(&i.name), Some(Verdict::Expired(_))))
            .cloned()
            .collect();
        let again = preserve(&policy, &survivors, now, &cal);
        prop_assert!(again.expire_reasons().is_empty(), "{:?}", again.expire_reasons());
        prop_assert_eq!(again.preserved(), p.preserved());
    }
}

#[test]
fn rebase_rule_parsers() {
    assert_eq!(parse_max_chain("none"), Ok(None));
    assert_eq!(
        parse_max_chain(" 30 ")
            .unwrap()
            .map(std::num::NonZeroUsize::get),
        Some(30)
    );
    for bad in ["0", "-1", "+3", "x", "", "1e3"] {
        assert_eq!(
            parse_max_chain(bad),
            Err(RebaseError::MaxChain {
                value: bad.trim().into()
            }),
            "{bad}"
        );
    }
    let cases = [
        ("30d", Some(30 * 86_400)),
        ("12h", Some(12 * 3600)),
        ("2w", Some(14 * 86_400)),
        ("none", None),
    ];
    for (value, secs) in cases {
        assert_eq!(
            parse_full_every(value),
            Ok(secs.map(Duration::from_secs)),
            "{value}"
        );
    }
    for bad in [
        "30",
        "d",
        "0d",
        "30m",
        "1.5d",
        "-3d",
        "99999999999999999999w",
    ] {
        assert!(parse_full_every(bad).is_err(), "{bad}");
    }
    assert_eq!(
        RebaseRule::default()
            .max_chain
            .map(std::num::NonZeroUsize::get),
        Some(DEFAULT_MAX_CHAIN)
    );
    assert_eq!(RebaseRule::default().full_every, None);
}

#[test]
fn linear_base_rebases_on_length_and_age() {
    let rule = RebaseRule {
        max_chain: std::num::NonZeroUsize::new(3),
        full_every: Some(Duration::from_hours(30 * 24)),
    };
    let full_time = Some(ts("2026-12-01T00:00:00Z"));
    let tip = |links, full_time| ChainTip {
        name: "tank@s",
        links,
        full_time,
    };
    let cases = [
        (
            None,
            "2026-12-02T00:00:00Z",
            Base::Full,
            "no backup to build on: full",
        ),
        (
            Some(tip(1, full_time)),
            "2026-12-02T00:00:00Z",
            Base::Incremental {
                parent: "tank@s".into(),
            },
            "incremental on tank@s (chain of 2 links)",
        ),
        (
            Some(tip(2, full_time)),
            "2026-12-02T00:00:00Z",
            Base::Incremental {
                parent: "tank@s".into(),
            },
            "incremental on tank@s (chain of 3 links)",
        ),
        (
            Some(tip(3, full_time)),
            "2026-12-02T00:00:00Z",
            Base::Full,
            "the chain to tank@s has 3 links and MAX_CHAIN is 3: full",
        ),
        (
            Some(tip(1, full_time)),
            "2026-12-31T00:00:00Z",
            Base::Full,
            "the chain's full is 30.0 days old and FULL_EVERY is 30.0 days: full",
        ),
        (
            Some(tip(1, full_time)),
            "2026-12-30T23:59:59Z",
            Base::Incremental {
                parent: "tank@s".into(),
            },
            "incremental on tank@s (chain of 2 links)",
        ),
        // Unknown age: only length cuts the chain.
        (
            Some(tip(1, None)),
            "2036-01-01T00:00:00Z",
            Base::Incremental {
                parent: "tank@s".into(),
            },
            "incremental on tank@s (chain of 2 links)",
        ),
    ];
    for (tip, time, base, reason) in cases {
        let d = linear_base(&rule, tip.as_ref(), ts(time));
        assert_eq!((d.base, d.reason.as_str()), (base, reason), "{time}");
    }
    let unbounded = RebaseRule {
        max_chain: None,
        full_every: None,
    };
    let d = linear_base(
        &unbounded,
        Some(&tip(1_000_000, full_time)),
        ts("2030-01-01T00:00:00Z"),
    );
    assert_eq!(
        d.base,
        Base::Incremental {
            parent: "tank@s".into()
        }
    );
}

#[test]
fn week_starts_parse_by_name_or_abbreviation() {
    use super::calendar::parse_week_start;
    use jiff::civil::Weekday;
    assert_eq!(parse_week_start("Sunday"), Some(Weekday::Sunday));
    assert_eq!(parse_week_start(" mon "), Some(Weekday::Monday));
    assert_eq!(parse_week_start("SAT"), Some(Weekday::Saturday));
    assert_eq!(parse_week_start("su"), None, "too short to be sure");
    assert_eq!(parse_week_start("funday"), None);
}

#[test]
fn future_bases_are_the_current_representatives_and_the_newest() {
    use super::{Backup, Calendar, Policy, future_bases};
    let at = |d: &str| format!("{d}T06:00:00Z").parse::<jiff::Timestamp>().unwrap();
    let backup = |d: &str, parent: Option<&str>| Backup {
        name: format!("p@{d}"),
        time: at(d),
        parent: parent.map(|p| format!("p@{p}")),
    };
    let backups = [
        backup("2025-12-30", None),
        backup("2026-01-01", None),
        backup("2026-02-01", Some("2026-01-01")),
        backup("2026-03-01", Some("2026-01-01")),
        backup("2026-03-02", Some("2026-03-01")),
        backup("2026-03-03", Some("2026-03-01")),
    ];
    let policy = Policy::parse("1y 12m 30d").unwrap();
    assert_eq!(
        future_bases(&policy, &backups, &Calendar::default()),
        ["p@2026-01-01", "p@2026-03-01", "p@2026-03-03"]
    );
    // One timeframe: every backup is a full; only the newest matters.
    let days = Policy::parse("7d").unwrap();
    assert_eq!(
        future_bases(&days, &backups, &Calendar::default()),
        ["p@2026-03-03"]
    );
    assert!(future_bases(&policy, &[], &Calendar::default()).is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Object Lock dates (`lock_dates`) never end while the policy still preserves a backup
    /// for one of its timeframes, and inside any interval of any timeframe the first backup's
    /// date is the latest: a base never unlocks before what builds on it.
    #[test]
    fn lock_dates_cover_preservation_and_bases_outlive_children(
        offsets in proptest::collection::vec(proptest::option::weighted(0.9, 0i64..(400 * 86_400)), 1..80),
        counts in proptest::collection::vec(0u32..4, 5),
        later in 0i64..(800 * 86_400),
        berlin in any::<bool>(),
    ) {
        let mut policy = Policy::default();
        for (tf, n) in Timeframe::LONGEST_FIRST.into_iter().zip(&counts) {
            if *n > 0 {
                policy = policy.with(tf, Keep::Last(*n));
            }
        }
        let cal = if berlin { Calendar::new(zone(BERLIN), Weekday::Monday) } else { utc() };
        let start = ts("2026-01-01T00:00:00Z");
        let list: Vec<Item> = offsets
            .iter()
            .enumerate()
            .map(|(i, offset)| Item {
                name: format!("s{i:03}"),
                time: offset.map(|o| start + jiff::SignedDuration::from_secs(o)),
            })
            .collect();
        let dates = lock_dates(&policy, &list, &cal);
        prop_assert_eq!(dates.len(), list.len());
        let now = start + jiff::SignedDuration::from_secs(later);
        let preservation = preserve(&policy, &list, now, &cal);
        for ((item, (name, date)), (_, verdict)) in list.iter().zip(&dates).zip(&preservation.verdicts) {
            prop_assert_eq!(&item.name, name);
            if item.time.is_none() {
                prop_assert!(date.is_none());
            }
            if let (Verdict::Preserved(reasons), Some(date)) = (verdict, date) {
                let by_policy = reasons.iter().any(|r| r != NEWEST && r != AFTER_NOW);
                prop_assert!(!by_policy || *date > now, "{name} preserved ({reasons:?}) at {now} but unlocked at {date}");
            }
        }
        // The first item of each interval, per timeframe (longest first).
        let levels: Vec<Timeframe> = policy.timeframes().map(|(tf, _)| tf).collect();
        if levels.is_empty() {
            return Ok(());
        }
        let firsts: Vec<HashMap<i64, usize>> = levels
            .iter()
            .map(|tf| {
                let mut first: HashMap<i64, usize> = HashMap::new();
                for (i, item) in list.iter().enumerate() {
                    let Some(time) = item.time else { continue };
                    let slot = first.entry(cal.ordinals(time)[tf.index()]).or_insert(i);
                    if (time, &item.name) < (list[*slot].time.unwrap(), &list[*slot].name) {
                        *slot = i;
                    }
                }
                first
            })
            .collect();
        for (i, item) in list.iter().enumerate() {
            let Some(time) = item.time else { continue };
            let ordinal = |level: usize| cal.ordinals(time)[levels[level].index()];
            // Its level in the tree: the longest timeframe it is the first of (a leaf: the
            // shortest). Its possible bases are the firsts of its longer timeframes' intervals.
            let level = (0..levels.len())
                .find(|&l| firsts[l][&ordinal(l)] == i)
                .unwrap_or(levels.len() - 1);
            for longer in 0..level {
                let base = firsts[longer][&ordinal(longer)];
                let outlives = match (dates[base].1, dates[i].1) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(a), Some(b)) => a >= b,
                };
                prop_assert!(outlives, "{} unlocks before {} ({})", list[base].name, item.name, levels[longer]);
            }
        }
    }
}

//! Byte counts for humans, in the original's `M`/`G`/`T` format (docs/compatibility.md, "Byte counts"),
//! and [`utc`] times.
//!
//! [`humanize()`] is used for the SIZE column of `z3 status` and the "Successfuly backed up" lines. The format is
//! kept byte-for-byte, quirks included (`1024 M` rather than `1 G`), because users grep it.

/// Formats `bytes` as mebibytes, switching to `G` and then `T` while the value is strictly
/// above 1024; two decimals with trailing zeros and a trailing `.` removed.
///
/// `0` gives `0 M`, 512 KiB `0.5 M`, 1024 MiB `1024 M`, 1025 MiB `1 G`, 50.512 GiB `50.51 G`.
#[must_use]
pub fn humanize(bytes: u64) -> String {
    const UNITS: [&str; 3] = ["M", "G", "T"];
    let mut value = bytes as f64 / (1024.0 * 1024.0);
    let mut unit = 0;
    while value > 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    // Rust's `{:.2}` rounds the exact binary value half-to-even, like Python's `%.2f`.
    let number = format!("{value:.2}");
    let number = number.trim_end_matches('0').trim_end_matches('.');
    format!("{number} {}", UNITS[unit])
}

/// `secs` after the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC), as `z3_mp_cleanup` prints upload
/// times; without a date library: days to civil date after Howard Hinnant's `civil_from_days`.
#[must_use]
pub fn utc(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::{humanize, utc};

    #[test]
    fn utc_matches_known_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_798_382_096), "2026-12-27T14:34:56Z");
        assert_eq!(utc(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    const GIB: u64 = 1024 * MIB;
    const TIB: u64 = 1024 * GIB;

    #[test]
    fn values_from_the_spec() {
        let cases: &[(u64, &str)] = &[
            (0, "0 M"),
            (1234, "0 M"),
            (512 * KIB, "0.5 M"),
            (43 * MIB, "43 M"),
            (1024 * MIB, "1024 M"),
            (1025 * MIB, "1 G"),
            (50 * GIB, "50 G"),
            (50_512 * GIB / 1000, "50.51 G"),
            (1024 * GIB, "1024 G"),
            (2_724 * TIB / 1000, "2.72 T"),
            (3000 * TIB, "3000 T"),
            (6_000_000, "5.72 M"),
            (12_582_912, "12 M"),
            (100 * MIB, "100 M"),
            (u64::MAX, "16777216 T"),
        ];
        for &(bytes, expected) in cases {
            assert_eq!(humanize(bytes), expected, "{bytes}");
        }
    }
}

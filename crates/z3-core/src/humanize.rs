//! Byte counts for humans, in the original's `M`/`G`/`T` format (docs/compatibility.md, "Byte counts").
//!
//! Used for the SIZE column of `z3 status` and the "Successfuly backed up" lines. The format is
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

#[cfg(test)]
mod tests {
    use super::humanize;

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

//! Pure part-size arithmetic: S3's multipart limits, the original z3 sizing rule, and size parsing.

use std::fmt;

/// S3's smallest allowed part (every part but the last): 5 MiB.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's largest allowed part: 5 GiB.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// S3's largest part number, hence the most parts one object can have.
pub const MAX_PARTS: u16 = 10_000;

/// The part size for an upload.
///
/// With an `estimate` of the stream length (z3 always has one from `zfs send -nvP`) this is the
/// original pput rule `int(max(E * 1.05 / 9999, 5 MiB))`: up to 9,999 parts with 5% headroom,
/// because the estimate can be a little low. The result is clamped to [`MAX_PART_SIZE`], which
/// only matters for estimates above ≈ 48.8 TiB, far past S3's 5 TiB object limit.
/// `configured` is ignored in that case, as in the original where `--estimated` and
/// `--chunk-size` are mutually exclusive; the float arithmetic is kept so that part sizes match
/// the original byte for byte (spec §5.1: 50 GiB gives 5,637,708).
///
/// Without an estimate, `configured` is used, clamped to `[MIN_PART_SIZE, MAX_PART_SIZE]`.
#[must_use]
pub fn part_size(estimate: Option<u64>, configured: u64) -> u64 {
    match estimate {
        Some(estimate) => {
            // Same float arithmetic as the Python original; `as u64` truncates like `int()`.
            let raw = estimate as f64 * 1.05 / 9999.0;
            let raw = raw.max(MIN_PART_SIZE as f64);
            // Saturating float-to-int cast, then clamp: never above S3's part limit.
            #[allow(clippy::cast_sign_loss)] // `raw` is at least MIN_PART_SIZE, so positive.
            let size = raw as u64;
            size.clamp(MIN_PART_SIZE, MAX_PART_SIZE)
        }
        None => configured.clamp(MIN_PART_SIZE, MAX_PART_SIZE),
    }
}

/// Why [`parse_size`] rejected its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseSizeError {
    input: String,
}

impl fmt::Display for ParseSizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid size {:?}: expected a whole number of bytes with an optional K, M, G or T suffix",
            self.input
        )
    }
}

impl std::error::Error for ParseSizeError {}

/// Parses a size such as `"256M"`, `"5m"`, `" 1G "`, `"1024"` or `"1T"`.
///
/// Suffixes `K`, `M`, `G`, `T` are powers of 1024 and case-insensitive; surrounding whitespace
/// (and whitespace between number and suffix, which Python's `int()` tolerated) is ignored;
/// a plain number is bytes. This is the original `CHUNK_SIZE` syntax.
///
/// # Errors
/// Empty input, fractions, signs, unknown suffixes and values above `u64::MAX` are rejected.
pub fn parse_size(text: &str) -> Result<u64, ParseSizeError> {
    let err = || ParseSizeError {
        input: text.to_owned(),
    };
    let trimmed = text.trim();
    let (number, shift) = match trimmed.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&trimmed[..trimmed.len() - 1], 10),
        Some('M') => (&trimmed[..trimmed.len() - 1], 20),
        Some('G') => (&trimmed[..trimmed.len() - 1], 30),
        Some('T') => (&trimmed[..trimmed.len() - 1], 40),
        _ => (trimmed, 0),
    };
    let number = number.trim_end();
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let value: u64 = number.parse().map_err(|_| err())?;
    value.checked_mul(1u64 << shift).ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GIB: u64 = 1024 * 1024 * 1024;
    const TIB: u64 = 1024 * GIB;

    #[test]
    fn spec_table() {
        let cases = [
            (0, 5_242_880),
            (49_927_197_257, 5_242_880),
            (50 * GIB, 5_637_708),
            (500 * GIB, 56_377_083),
            (TIB, 115_460_266),
            (2 * TIB, 230_920_533),
            (5 * TIB, 577_301_334),
        ];
        for (estimate, expected) in cases {
            assert_eq!(
                part_size(Some(estimate), 0),
                expected,
                "estimate {estimate}"
            );
        }
    }

    #[test]
    fn estimate_wins_over_configured() {
        assert_eq!(part_size(Some(50 * GIB), 256 << 20), 5_637_708);
    }

    #[test]
    fn huge_estimate_clamped() {
        assert_eq!(part_size(Some(u64::MAX), 0), MAX_PART_SIZE);
        assert_eq!(part_size(Some(100 * TIB), 0), MAX_PART_SIZE);
    }

    #[test]
    fn configured_clamped() {
        assert_eq!(part_size(None, 0), MIN_PART_SIZE);
        assert_eq!(part_size(None, 1), MIN_PART_SIZE);
        assert_eq!(part_size(None, 256 << 20), 256 << 20);
        assert_eq!(part_size(None, 6 * GIB), MAX_PART_SIZE);
    }

    #[test]
    fn parse_size_accepts() {
        let cases = [
            ("256M", 256 << 20),
            ("5m", 5 << 20),
            (" 1G ", GIB),
            ("1024", 1024),
            ("1T", TIB),
            ("1k", 1024),
            ("0", 0),
            ("1 G", GIB),
            ("\t12\n", 12),
            ("16777215T", 16_777_215 * TIB),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_size(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn parse_size_rejects() {
        for text in [
            "",
            " ",
            "M",
            "1.5G",
            "-1",
            "+1",
            "1P",
            "1MB",
            "abc",
            "1 2",
            "16777216T",
            "1e3",
            "G1",
            "99999999999999999999",
        ] {
            assert!(parse_size(text).is_err(), "{text:?} should be rejected");
        }
    }

    #[test]
    fn parse_size_error_names_input() {
        let err = parse_size("12X").unwrap_err();
        assert!(err.to_string().contains("\"12X\""), "{err}");
    }

    proptest! {
        #[test]
        fn part_size_limits(estimate in 0u64..=5 * TIB, configured in any::<u64>()) {
            let size = part_size(Some(estimate), configured);
            prop_assert!(size >= MIN_PART_SIZE);
            prop_assert!(size <= MAX_PART_SIZE);
            // Even a stream 5% longer than estimated fits into S3's part limit.
            let with_headroom = estimate + estimate / 20;
            prop_assert!(with_headroom.div_ceil(size) <= u64::from(MAX_PARTS));
        }

        #[test]
        fn part_size_any_input_in_limits(estimate in any::<Option<u64>>(), configured in any::<u64>()) {
            let size = part_size(estimate, configured);
            prop_assert!((MIN_PART_SIZE..=MAX_PART_SIZE).contains(&size));
        }

        #[test]
        fn parse_size_round_trips(n in 0u64..1 << 20, suffix in prop::sample::select(vec!["", "k", "M", "g", "T"])) {
            let shift = match suffix { "" => 0, "k" => 10, "M" => 20, "g" => 30, _ => 40 };
            prop_assert_eq!(parse_size(&format!(" {n}{suffix} ")), Ok(n << shift));
        }

        #[test]
        fn parse_size_never_panics(text in ".*") {
            let _ = parse_size(&text);
        }
    }
}

//! Pure part-size arithmetic: S3's multipart limits, the original z3 sizing rule, the adaptive
//! [`PartSizer`], and size parsing.

use std::fmt;

use crate::store::PartNumber;

/// One mebibyte, the unit part sizes grow in.
pub const MIB: u64 = 1024 * 1024;
/// S3's smallest allowed part (every part but the last): 5 MiB.
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest allowed part: 5 GiB.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;
/// S3's largest part number, hence the most parts one object can have.
pub const MAX_PARTS: u16 = 10_000;
/// S3's largest object: 5 TiB.
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * MIB;

/// How many parts the constant phase of an estimated upload plans for: the estimate (with 5%
/// headroom) is cut into at most this many parts, and the other 5,000 are left for a stream
/// that outgrows its estimate. The original pput planned for 9,999, so a stream larger than
/// `estimate × 1.05 + ~1.6 GiB` failed; this doubles the part size (and the memory) of the
/// constant phase at most.
pub const CONSTANT_PHASE_PARTS: u64 = 5_000;

/// The default memory budget (`MEMORY_LIMIT`): the most part data an upload or download holds
/// at once, 1 GiB. See [`PartSizer::with_budget`] and [`UploadConfig::memory_limit`](crate::UploadConfig::memory_limit).
pub const DEFAULT_MEMORY_LIMIT: u64 = 1024 * MIB;

/// The smallest memory budget: two parts of [`MIN_PART_SIZE`], one uploading and one filling.
pub const MIN_MEMORY_LIMIT: u64 = 2 * MIN_PART_SIZE;

/// The part size for an upload.
///
/// With an `estimate` of the stream length (z3 always has one from `zfs send -nvP`) this is
/// `int(max(E * 1.05 / 5000, 5 MiB))`: the original pput rule with 5,000 parts instead of
/// 9,999 ([`CONSTANT_PHASE_PARTS`]), with 5% headroom because the estimate can be a little low.
/// The result is clamped to [`MAX_PART_SIZE`], which only matters for estimates above
/// ≈ 23.8 TiB, far past S3's 5 TiB object limit. `configured` is ignored in that case, as in
/// the original where `--estimated` and `--chunk-size` are mutually exclusive; the original's
/// float arithmetic is kept.
///
/// Without an estimate, `configured` is used, clamped to `[MIN_PART_SIZE, MAX_PART_SIZE]`.
///
/// This is the *starting* size: [`PartSizer`] (used by the uploader) keeps it while the stream
/// stays within its estimate and grows it afterwards, or from the start without an estimate.
#[must_use]
pub fn part_size(estimate: Option<u64>, configured: u64) -> u64 {
    match estimate {
        Some(estimate) => estimate_part_size(estimate, MIN_PART_SIZE, MAX_PART_SIZE),
        None => configured.clamp(MIN_PART_SIZE, MAX_PART_SIZE),
    }
}

/// The rule `int(max(E * 1.05 / 5000, min))`, clamped to `max`.
fn estimate_part_size(estimate: u64, min: u64, max: u64) -> u64 {
    // Same float arithmetic as the Python original; `as u64` truncates like `int()`.
    let raw = estimate as f64 * 1.05 / CONSTANT_PHASE_PARTS as f64;
    let raw = raw.max(min as f64);
    // Saturating float-to-int cast, then clamp: never above S3's part limit.
    #[allow(clippy::cast_sign_loss)] // `raw` is at least `min`, so positive.
    let size = raw as u64;
    size.clamp(min, max)
}

/// The stream length up to which a part size derived from `estimate` is kept: `E × 1.05`
/// (saturating), the headroom the original rule reserves.
#[must_use]
pub fn estimate_headroom(estimate: u64) -> u64 {
    // Saturating float-to-int cast; estimates are far below 2^53, where f64 is exact enough.
    #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
    let headroom = (estimate as f64 * 1.05) as u64;
    headroom
}

/// How part sizes may change during one upload ([`UploadConfig::growth`](crate::UploadConfig::growth)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartGrowth {
    /// Sizes follow [`PartSizer`]'s schedule, with every S3 limit expressed in multiples of
    /// `unit`: parts of 5 to 5,120 units that grow in whole units, objects of at most
    /// 5 × 2²⁰ units. `unit` = 1 MiB is S3 ([`PartGrowth::S3`], the default); tests use
    /// `unit` = 1 to run the real schedule with byte-sized parts (5-byte minimum, 5 MiB object
    /// limit) against a [`MemoryStore::with_min_part_size`](crate::MemoryStore::with_min_part_size)`(…, 5)`.
    Adaptive {
        /// Bytes per unit; `0` is rejected by the uploader.
        unit: u64,
    },
    /// Every part is exactly the starting size, not clamped, and an input needing more than
    /// 10,000 parts fails with [`ErrorKind::TooManyParts`](crate::ErrorKind::TooManyParts).
    /// For tests with tiny parts and for callers that need fixed part boundaries.
    Fixed,
}

impl PartGrowth {
    /// Adaptive growth at S3's real scale (1 MiB units).
    pub const S3: Self = Self::Adaptive { unit: MIB };
}

impl Default for PartGrowth {
    fn default() -> Self {
        Self::S3
    }
}

/// Minimum part size, in units.
const MIN_UNITS: u64 = 5;
/// Maximum part size, in units (5 GiB at S3 scale).
const MAX_UNITS: u64 = 5 * 1024;
/// Largest object, in units (5 TiB at S3 scale).
const OBJECT_UNITS: u64 = 5 * 1024 * 1024;

/// Chooses the size of every part of one upload, from the part number and the bytes already
/// uploaded. Pure: the uploader asks it before reading each part.
///
/// S3 allows 10,000 parts of at most 5 GiB and objects of at most 5 TiB, and a stream's
/// length is not known in advance. A fixed part size must therefore be either large (memory:
/// the uploader holds `concurrency + 1` parts) or risk running out of parts. The sizer keeps a
/// start size while it can and then grows along a quadratic curve that reaches S3's 5 TiB
/// within the parts that are left:
///
/// ```text
/// growth phase, part n = k + j:  size = max(start, ⌈(5 TiB − k × start) × j² / Σᵢ₌₁ᴿ i²⌉ MiB)
/// ```
///
/// where `k` parts of the start size came first (the constant phase) and `R = 10,000 − k` are
/// left. Each growth part is at least its share of the curve, and the curve over `R` parts
/// adds up to exactly what is left of 5 TiB, so **every stream up to 5 TiB fits in 10,000
/// parts**, whatever the estimate and however wrong it is. The largest part is about
/// `3 × (5 TiB − k × start) / R`, at most ≈ 3.1 GiB (below S3's 5 GiB) since `R ≥ 5,000`.
///
/// Without an estimate, `k = 0`, and for a 5 MiB start:
///
/// | part n | part size | bytes uploaded through part n |
/// |-------:|----------:|------------------------------:|
/// |      1 |     5 MiB |       5 MiB |
/// |  1,000 |    16 MiB |   ≈ 7.2 GiB |
/// |  2,000 |    63 MiB |    ≈ 43 GiB |
/// |  5,000 |   394 MiB |   ≈ 645 GiB |
/// |  9,000 | 1,274 MiB |   ≈ 3.7 TiB |
/// | 10,000 | 1,573 MiB |   ≈ 5.0 TiB |
///
/// **With an estimate** `E`, the start is `int(max(E × 1.05 / 5000, 5 MiB))` (see
/// [`part_size()`]) and stays constant while the bytes uploaded are below `E × 1.05`
/// ([`estimate_headroom`]): a correctly estimated stream has one part size and predictable
/// memory, at most 5,000 parts. A stream that outgrows its estimate then has `k ≤ 5,001`
/// parts behind it and the curve above for the rest: its parts grow gently at first (a stream
/// 10% over its estimate keeps parts near the start size) and reach 5 TiB by part 10,000.
///
/// Guarantees (property-tested): no non-last part is below 5 MiB or above 5 GiB; sizes never
/// shrink; sizes that grow are whole MiB; any stream of at most 5 TiB needs at most 10,000
/// parts, with or without an estimate; a stream within its estimate's headroom uses the start
/// size only. The uploader refuses a stream that passes 5 TiB
/// ([`ErrorKind::ObjectTooLarge`](crate::ErrorKind::ObjectTooLarge)).
///
/// Memory: the uploader holds at most `concurrency + 1` parts, each at most the current size,
/// and within its memory budget ([`with_budget`](Self::with_budget) keeps the start at most half
/// of it where S3's limits allow).
///
/// [`PartGrowth::Adaptive`] scales all of the above by its `unit` (1 MiB at S3 scale);
/// [`PartGrowth::Fixed`] disables growth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSizer {
    start: u64,
    /// Bytes below which `start` is kept, when there is an estimate.
    headroom: Option<u64>,
    /// `None` for [`PartGrowth::Fixed`].
    unit: Option<u64>,
}

impl PartSizer {
    /// A sizer at S3 scale starting at `start` (clamped to `[5 MiB, 5 GiB]`, and raised to the
    /// original rule's size when `estimate` is given).
    #[must_use]
    pub fn new(start: u64, estimate: Option<u64>) -> Self {
        Self::with_growth(start, estimate, PartGrowth::S3)
    }

    /// A sizer whose constant phase fits a memory budget of `budget` bytes (ADR 5): with an
    /// estimate, the start is at most `budget / 2` (two parts: one uploading, one filling),
    /// unless S3's limits force more. The constant phase then has more than 5,000 parts, as many
    /// as still leave the growth curve room to reach 5 TiB in parts of at most 5 GiB; the start
    /// is the smallest size (in whole units above `budget / 2`) for which that holds. A
    /// configured `start` counts only up to `budget / 2`. Without an estimate, or when the
    /// estimate rule already fits (`E × 1.05 / 5000 ≤ budget / 2`), this is
    /// [`with_growth`](Self::with_growth).
    ///
    /// With 1 GiB, parts stay at or below 512 MiB for estimates up to ≈ 4.6 TiB; a 5 TiB
    /// estimate needs 537 MiB parts, the least S3's 10,000-part limit allows with room for
    /// the stream to outgrow its estimate.
    ///
    /// Pure: the same inputs always give the same schedule (a resumed upload relies on it).
    #[must_use]
    pub fn with_budget(
        start: u64,
        estimate: Option<u64>,
        growth: PartGrowth,
        budget: Option<u64>,
    ) -> Self {
        let plain = Self::with_growth(start, estimate, growth);
        let (Some(budget), Some(_), Some(unit)) = (budget, plain.headroom, plain.unit) else {
            return plain;
        };
        let (min, max) = (MIN_UNITS * unit, MAX_UNITS * unit);
        let cap = (budget / 2).clamp(min, max);
        if plain.start <= cap {
            return plain;
        }
        // The smallest start from the cap up that keeps every later part within S3's limits;
        // the plain start (at most 5,000 constant parts) always does.
        let mut candidate = cap;
        while candidate < plain.start {
            let sizer = Self {
                start: candidate,
                ..plain
            };
            if sizer.growth_fits() {
                return sizer;
            }
            candidate += unit;
        }
        plain
    }

    /// Whether the growth phase after this sizer's constant phase stays within 5 GiB parts and
    /// 10,000 parts in all.
    fn growth_fits(&self) -> bool {
        let (Some(unit), Some(headroom)) = (self.unit, self.headroom) else {
            return true;
        };
        let constant_parts = headroom.div_ceil(self.start);
        if constant_parts >= u64::from(MAX_PARTS) {
            return false;
        }
        let left_parts = u64::from(MAX_PARTS) - constant_parts;
        let left_bytes = (OBJECT_UNITS * unit).saturating_sub(constant_parts * self.start);
        curve_bytes(left_bytes, left_parts, left_parts).div_ceil(unit) * unit <= MAX_UNITS * unit
    }

    /// A sizer with the given growth mode; see [`PartGrowth`]. A `unit` of `0` is treated as `1`.
    #[must_use]
    pub fn with_growth(start: u64, estimate: Option<u64>, growth: PartGrowth) -> Self {
        match growth {
            PartGrowth::Fixed => Self {
                start,
                headroom: None,
                unit: None,
            },
            PartGrowth::Adaptive { unit } => {
                let unit = unit.max(1);
                let (min, max) = (MIN_UNITS * unit, MAX_UNITS * unit);
                let mut start = start.clamp(min, max);
                if let Some(estimate) = estimate {
                    start = start.max(estimate_part_size(estimate, min, max));
                }
                Self {
                    start,
                    headroom: estimate.map(estimate_headroom),
                    unit: Some(unit),
                }
            }
        }
    }

    /// The size of part 1 (and of every part while within the estimate).
    #[must_use]
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The largest object this sizer allows: 5 TiB at S3 scale (also for [`PartGrowth::Fixed`]).
    #[must_use]
    pub fn max_object_size(&self) -> u64 {
        self.unit
            .map_or(MAX_OBJECT_SIZE, |unit| OBJECT_UNITS.saturating_mul(unit))
    }

    /// The size of `part`, given that `uploaded` bytes went into the parts before it.
    #[must_use]
    pub fn size_of(&self, part: PartNumber, uploaded: u64) -> u64 {
        let Some(unit) = self.unit else {
            return self.start;
        };
        // The constant phase: `k` parts of the start size, while below the headroom.
        let constant_parts = match self.headroom {
            Some(headroom) if uploaded < headroom => return self.start,
            Some(headroom) => headroom.div_ceil(self.start),
            None => 0,
        };
        let Some(j) = u64::from(part.get())
            .checked_sub(constant_parts)
            .filter(|&j| j > 0)
        else {
            return self.start;
        };
        let left_parts = u64::from(MAX_PARTS).saturating_sub(constant_parts);
        let left_bytes = (OBJECT_UNITS * unit).saturating_sub(constant_parts * self.start);
        let curve = curve_bytes(left_bytes, left_parts, j).div_ceil(unit) * unit;
        self.start.max(curve).min(MAX_UNITS * unit)
    }
}

/// `⌈total × j² / Σᵢ₌₁ᴿ i²⌉`: the `j`-th of `parts` sizes growing with the square of their
/// number that add up to (at least) `total`.
fn curve_bytes(total: u64, parts: u64, j: u64) -> u64 {
    if parts == 0 {
        return 0;
    }
    let parts = u128::from(parts);
    let squares = parts * (parts + 1) * (2 * parts + 1) / 6;
    let j = u128::from(j);
    let bytes = (u128::from(total) * j * j).div_ceil(squares);
    u64::try_from(bytes).unwrap_or(u64::MAX)
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

    const GIB: u64 = 1024 * MIB;
    const TIB: u64 = 1024 * GIB;

    #[test]
    fn spec_table() {
        // int(max(E × 1.05 / 5000, 5 MiB)): twice the original's (E × 1.05 / 9999) sizes.
        let cases = [
            (0, 5_242_880),
            (24_966_000_000, 5_242_880),
            (49_927_197_257, 10_484_711),
            (50 * GIB, 11_274_289),
            (500 * GIB, 112_742_891),
            (TIB, 230_897_441),
            (2 * TIB, 461_794_883),
            (5 * TIB, 1_154_487_209),
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
        assert_eq!(part_size(Some(50 * GIB), 256 << 20), 11_274_289);
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

    /// Cuts a stream of `len` bytes as the uploader does: the lengths of all parts (the last one
    /// possibly short), stopping after `MAX_PARTS + 1` parts.
    fn simulate(sizer: &PartSizer, len: u64) -> Vec<u64> {
        let mut lengths = Vec::new();
        let mut uploaded = 0;
        let mut part = Some(PartNumber::FIRST);
        while uploaded < len {
            let Some(n) = part else {
                lengths.push(len - uploaded);
                break;
            };
            let size = sizer.size_of(n, uploaded).min(len - uploaded);
            lengths.push(size);
            uploaded += size;
            part = n.next();
        }
        lengths
    }

    /// The guarantees every schedule keeps: non-last parts within S3's limits, lengths never
    /// shrink, and a size other than the start is a whole MiB.
    fn check_schedule(sizer: &PartSizer, len: u64) -> Result<Vec<u64>, TestCaseError> {
        let lengths = simulate(sizer, len);
        let (_, full) = lengths.split_last().unwrap_or((&0, &[]));
        for (i, &size) in full.iter().enumerate() {
            prop_assert!(
                (MIN_PART_SIZE..=MAX_PART_SIZE).contains(&size),
                "part {} is {size}",
                i + 1
            );
            prop_assert!(
                size == sizer.start() || size % MIB == 0,
                "part {} is {size}",
                i + 1
            );
        }
        for pair in full.windows(2) {
            prop_assert!(pair[0] <= pair[1], "shrank: {pair:?}");
        }
        Ok(lengths)
    }

    fn n(part: u16) -> PartNumber {
        PartNumber::new(part).unwrap()
    }

    #[test]
    fn schedule_table() {
        // The table in `PartSizer`'s documentation.
        let sizer = PartSizer::new(MIN_PART_SIZE, None);
        let table = [
            (1, 5),
            (563, 5),
            (564, 6),
            (1000, 16),
            (2000, 63),
            (5000, 394),
            (9000, 1274),
            (10_000, 1573),
        ];
        for (part, mib) in table {
            assert_eq!(sizer.size_of(n(part), 0), mib * MIB, "part {part}");
        }
        let mut total = 0;
        for part in 1..=MAX_PARTS {
            total += sizer.size_of(n(part), total);
            if part == 1000 {
                assert_eq!(total / MIB, 7350, "≈ 7.2 GiB through part 1,000");
            }
        }
        assert!(total >= MAX_OBJECT_SIZE, "10,000 parts hold {total} bytes");
        assert_eq!(total / MIB, 5_249_467, "≈ 5.0 TiB");
    }

    #[test]
    fn estimate_start_is_the_part_size_rule() {
        for estimate in [0, 49_927_197_257, 50 * GIB, TIB, 5 * TIB] {
            let sizer = PartSizer::new(0, Some(estimate));
            assert_eq!(
                sizer.start(),
                part_size(Some(estimate), 0),
                "estimate {estimate}"
            );
            if estimate > 0 {
                let last_byte = estimate_headroom(estimate) - 1;
                assert_eq!(sizer.size_of(PartNumber::MAX, last_byte), sizer.start());
            }
        }
        // A configured start above the rule's wins; below it, the rule wins.
        assert_eq!(PartSizer::new(GIB, Some(50 * GIB)).start(), GIB);
        assert_eq!(
            PartSizer::new(MIN_PART_SIZE, Some(50 * GIB)).start(),
            11_274_289
        );
    }

    #[test]
    fn outgrown_estimate_follows_the_curve() {
        // The issue's case: zfs-fuse estimated 60 GiB from the compressed size, the stream is
        // 120 GiB. With the original rule (9,999 planned parts) it failed every night.
        let estimate = 60 * GIB;
        let sizer = PartSizer::new(0, Some(estimate));
        let headroom = estimate_headroom(estimate);
        let start = sizer.start();
        assert_eq!(start, 13_529_146, "E × 1.05 / 5000");
        let k = headroom.div_ceil(start);
        assert_eq!(k, 5001, "the start is rounded down, so one part more");
        assert_eq!(sizer.size_of(n(8000), headroom - 1), start);
        // Right after the estimate, parts stay at the start size, then grow.
        assert_eq!(sizer.size_of(n(5002), headroom), start);
        assert_eq!(sizer.size_of(n(10_000), headroom), 3107 * MIB);
        for len in [120 * GIB, TIB, MAX_OBJECT_SIZE] {
            let lengths = simulate(&sizer, len);
            assert!(
                lengths.len() <= usize::from(MAX_PARTS),
                "{len}: {} parts",
                lengths.len()
            );
        }
    }

    #[test]
    fn budget_table() {
        // (estimate, budget, start): the budget halves hold up to ≈ 4.6 TiB with 1 GiB.
        let cases = [
            (GIB, GIB, MIN_PART_SIZE),
            (100 * GIB, GIB, part_size(Some(100 * GIB), 0)),
            (2 * TIB, GIB, 461_794_883),
            (3 * TIB, GIB, 512 * MIB),
            (4 * TIB, GIB, 512 * MIB),
            (5 * TIB, GIB, 551 * MIB),
            (5 * TIB, 4 * GIB, part_size(Some(5 * TIB), 0)),
            (TIB, 64 * MIB, 146 * MIB),
            (5 * TIB, MIN_MEMORY_LIMIT, 551 * MIB),
        ];
        // The largest estimate that still gets 512 MiB parts under 1 GiB.
        let halves =
            |e| PartSizer::with_budget(0, Some(e), PartGrowth::S3, Some(GIB)).start() == 512 * MIB;
        let (mut lo, mut hi) = (3 * TIB, 5 * TIB);
        while hi - lo > MIB {
            let mid = lo + (hi - lo) / 2;
            if halves(mid) { lo = mid } else { hi = mid }
        }
        assert_eq!(lo / GIB, 4713, "≈ 4.6 TiB");
        for (estimate, budget, start) in cases {
            let sizer = PartSizer::with_budget(0, Some(estimate), PartGrowth::S3, Some(budget));
            assert_eq!(sizer.start(), start, "estimate {estimate}, budget {budget}");
        }
    }

    #[test]
    fn fixed_and_scaled_growth() {
        let fixed = PartSizer::with_growth(1, Some(TIB), PartGrowth::Fixed);
        assert_eq!(fixed.size_of(PartNumber::MAX, 5 * TIB), 1);
        assert_eq!(fixed.max_object_size(), MAX_OBJECT_SIZE);
        let tiny = PartSizer::with_growth(0, None, PartGrowth::Adaptive { unit: 1 });
        assert_eq!(tiny.start(), 5);
        assert_eq!(tiny.max_object_size(), 5 * MIB);
        assert_eq!(tiny.size_of(n(10_000), 0), 1573);
        assert_eq!(PartSizer::new(0, None).max_object_size(), MAX_OBJECT_SIZE);
        assert_eq!(PartSizer::new(u64::MAX, None).start(), MAX_PART_SIZE);
    }

    proptest! {
        #[test]
        fn any_stream_up_to_5_tib_fits_without_estimate(start in MIN_PART_SIZE..=MAX_PART_SIZE, len in 1..=MAX_OBJECT_SIZE) {
            let sizer = PartSizer::new(start, None);
            prop_assert_eq!(sizer.start(), start);
            let lengths = check_schedule(&sizer, len)?;
            prop_assert!(lengths.len() <= usize::from(MAX_PARTS), "{} parts for {len} bytes", lengths.len());
            prop_assert_eq!(lengths.iter().sum::<u64>(), len);
            prop_assert_eq!(lengths[0], start.min(len));
        }

        #[test]
        fn streams_near_5_tib_fit_without_estimate(start in MIN_PART_SIZE..=MAX_PART_SIZE, short in 0..=TIB) {
            let lengths = check_schedule(&PartSizer::new(start, None), MAX_OBJECT_SIZE - short)?;
            prop_assert!(lengths.len() <= usize::from(MAX_PARTS), "{} parts", lengths.len());
        }

        #[test]
        fn within_estimate_every_part_has_the_start_size(estimate in 0..=5 * TIB, fraction in 0.0..=1.0f64) {
            let sizer = PartSizer::new(part_size(Some(estimate), 0), Some(estimate));
            let limit = estimate_headroom(estimate).clamp(1, MAX_OBJECT_SIZE);
            #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation, clippy::cast_precision_loss)]
            let len = ((limit as f64 * fraction) as u64).clamp(1, limit);
            let lengths = check_schedule(&sizer, len)?;
            prop_assert!(lengths.len() <= usize::from(MAX_PARTS), "{} parts", lengths.len());
            let (_, full) = lengths.split_last().unwrap();
            prop_assert!(full.iter().all(|&size| size == sizer.start()), "{lengths:?}");
        }

        #[test]
        fn outgrown_estimate_keeps_the_limits(estimate in 0..=TIB, len in 1..=MAX_OBJECT_SIZE) {
            check_schedule(&PartSizer::new(part_size(Some(estimate), 0), Some(estimate)), len)?;
        }

        /// Issue 12, point 4: whatever the estimate (0..5 TiB) and however far the stream
        /// outgrows it (up to `min(5 TiB, 8 × estimate + 5 GiB)`), the upload fits in 10,000
        /// parts of 5 MiB to 5 GiB (the last may be shorter).
        #[test]
        fn any_stream_fits_whatever_the_estimate(estimate in 0..=5 * TIB, fraction in 0.0..=1.0f64, configured in 0..=2 * GIB) {
            let sizer = PartSizer::new(part_size(Some(estimate), configured), Some(estimate));
            let longest = MAX_OBJECT_SIZE.min(8 * estimate + 5 * GIB);
            #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation, clippy::cast_precision_loss)]
            let len = ((longest as f64 * fraction) as u64).clamp(1, longest);
            let lengths = check_schedule(&sizer, len)?;
            prop_assert!(lengths.len() <= usize::from(MAX_PARTS), "{} parts for {len} bytes (estimate {estimate})", lengths.len());
            prop_assert_eq!(lengths.iter().sum::<u64>(), len);
        }

        /// The same at the far end: streams within a TiB of 5 TiB, any estimate.
        #[test]
        fn streams_near_5_tib_fit_whatever_the_estimate(estimate in 0..=5 * TIB, short in 0..=TIB) {
            let sizer = PartSizer::new(part_size(Some(estimate), 0), Some(estimate));
            let lengths = check_schedule(&sizer, MAX_OBJECT_SIZE - short)?;
            prop_assert!(lengths.len() <= usize::from(MAX_PARTS), "{} parts (estimate {estimate})", lengths.len());
        }

        /// ADR 5: under any budget, every stream still fits, whatever the estimate and however
        /// far the stream outgrows it.
        #[test]
        fn budgeted_streams_fit(estimate in 0..=5 * TIB, budget in MIN_MEMORY_LIMIT..=8 * GIB, fraction in 0.0..=1.0f64, configured in 0..=2 * GIB) {
            let sizer = PartSizer::with_budget(configured, Some(estimate), PartGrowth::S3, Some(budget));
            let longest = MAX_OBJECT_SIZE.min(8 * estimate + 5 * GIB);
            #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation, clippy::cast_precision_loss)]
            let len = ((longest as f64 * fraction) as u64).clamp(1, longest);
            for len in [len, MAX_OBJECT_SIZE] {
                let lengths = check_schedule(&sizer, len)?;
                prop_assert!(lengths.len() <= usize::from(MAX_PARTS), "{} parts for {len} bytes (estimate {estimate}, budget {budget})", lengths.len());
                prop_assert_eq!(lengths.iter().sum::<u64>(), len);
            }
        }

        /// The budgeted start is never above the plain one, at most half the budget when the
        /// plain one is, and otherwise the least size (in MiB) that keeps the parts in limits.
        #[test]
        fn budgeted_start_is_the_least_that_fits(estimate in 0..=5 * TIB, budget in MIN_MEMORY_LIMIT..=8 * GIB) {
            let plain = PartSizer::new(0, Some(estimate));
            let sizer = PartSizer::with_budget(0, Some(estimate), PartGrowth::S3, Some(budget));
            prop_assert!(sizer.start() <= plain.start());
            if plain.start() <= budget / 2 {
                prop_assert_eq!(sizer, plain);
            } else if sizer.start() > budget / 2 {
                let smaller = PartSizer { start: sizer.start() - MIB, ..sizer };
                prop_assert!(!smaller.growth_fits(), "{} MiB would fit", smaller.start() / MIB);
            }
        }

        #[test]
        fn sizes_never_shrink(start in 0..=2 * MAX_PART_SIZE, estimate in any::<Option<u64>>(), a in 1..=MAX_PARTS, b in 1..=MAX_PARTS, x in 0..=MAX_OBJECT_SIZE, y in 0..=MAX_OBJECT_SIZE) {
            let sizer = PartSizer::new(start, estimate.map(|e| e % (6 * TIB)));
            let (lo, hi) = (n(a.min(b)), n(a.max(b)));
            let size = sizer.size_of(hi, x.max(y));
            prop_assert!(sizer.size_of(lo, x.min(y)) <= size);
            prop_assert!((MIN_PART_SIZE..=MAX_PART_SIZE).contains(&size));
        }

        #[test]
        fn unit_scales_the_whole_schedule(start in 0..=MAX_UNITS * 2, part in 1..=MAX_PARTS, uploaded in 0..=OBJECT_UNITS) {
            let tiny = PartSizer::with_growth(start, None, PartGrowth::Adaptive { unit: 1 });
            let real = PartSizer::new(start * MIB, None);
            prop_assert_eq!(tiny.size_of(n(part), uploaded) * MIB, real.size_of(n(part), uploaded * MIB));
            prop_assert_eq!(tiny.max_object_size() * MIB, real.max_object_size());
        }

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

//! The preservation policy: how many intervals of each timeframe to keep (`PRESERVE = 1y 12m 8w
//! 14d 24h`), parsed from its configuration value.

use std::fmt;
use std::str::FromStr;

use crate::retention::calendar::Timeframe;

/// The largest count a timeframe takes: more than two thousand years of hours. Larger counts are
/// typos, and refusing them keeps all interval arithmetic far from overflow.
pub const MAX_COUNT: u32 = 20_000_000;

/// How many intervals of one timeframe are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Keep {
    /// The last N intervals, the current one included (N ≥ 1).
    Last(u32),
    /// Every interval (`*`): the first snapshot of every hour, day, … ever is kept.
    All,
}

impl Keep {
    /// Whether an interval `back` intervals before the current one (0: the current one) is kept.
    #[must_use]
    pub fn covers(self, back: i64) -> bool {
        match self {
            Keep::All => back >= 0,
            Keep::Last(n) => (0..i64::from(n)).contains(&back),
        }
    }
}

/// A preservation policy: for each timeframe, how many intervals to keep, if any.
///
/// Parsed from tokens `<N><unit>` or `*<unit>` separated by whitespace, in any order; units are
/// `h` (hourly), `d` (daily), `w` (weekly), `m` (monthly) and `y` (yearly). `*` keeps every
/// interval of its timeframe (as in btrbk). A timeframe may appear once; counts are at least 1
/// (leave a timeframe out rather than writing `0d`).
///
/// ```
/// use z3_core::retention::{Keep, Policy, Timeframe};
///
/// let policy: Policy = "14d 1y 12m 8w 24h".parse()?;
/// assert_eq!(policy.keep(Timeframe::Daily), Some(Keep::Last(14)));
/// assert_eq!(policy.to_string(), "1y 12m 8w 14d 24h");
/// assert_eq!("*y 3m".parse::<Policy>()?.keep(Timeframe::Yearly), Some(Keep::All));
/// assert!("14d 7d".parse::<Policy>().is_err());
/// # Ok::<(), z3_core::retention::PolicyError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Indexed by [`Timeframe`], shortest first.
    keep: [Option<Keep>; 5],
}

/// Why a `PRESERVE` value was refused; each names the offending token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Nothing but whitespace.
    #[error("empty retention policy: expected counts of timeframes such as `1y 12m 8w 14d 24h`")]
    Empty,
    /// A token whose unit is not one of `h d w m y`.
    #[error("`{token}`: unknown timeframe unit (expected h, d, w, m or y, as in `14d`)")]
    UnknownUnit {
        /// The token.
        token: String,
    },
    /// A timeframe given twice.
    #[error("`{token}`: the {timeframe} count is given twice")]
    Duplicate {
        /// The second token.
        token: String,
        /// Its timeframe.
        timeframe: Timeframe,
    },
    /// A count of zero.
    #[error("`{token}`: a count of zero keeps nothing; leave the timeframe out instead")]
    Zero {
        /// The token.
        token: String,
    },
    /// A count above [`MAX_COUNT`].
    #[error("`{token}`: count too large (at most {MAX_COUNT})")]
    TooLarge {
        /// The token.
        token: String,
    },
    /// Not a count followed by a unit.
    #[error("`{token}`: expected a count and a unit such as `14d`, or `*` and a unit such as `*m`")]
    Invalid {
        /// The token.
        token: String,
    },
}

impl Policy {
    /// Parses a `PRESERVE` value; see [`Policy`] for the syntax.
    ///
    /// # Errors
    ///
    /// [`PolicyError`] naming the first offending token.
    pub fn parse(value: &str) -> Result<Policy, PolicyError> {
        let mut policy = Policy::default();
        for token in value.split_whitespace() {
            let (timeframe, keep) = parse_token(token)?;
            let slot = &mut policy.keep[timeframe.index()];
            if slot.is_some() {
                return Err(PolicyError::Duplicate {
                    token: token.to_string(),
                    timeframe,
                });
            }
            *slot = Some(keep);
        }
        if policy.is_empty() {
            return Err(PolicyError::Empty);
        }
        Ok(policy)
    }

    /// This policy with `timeframe` kept as `keep` (replacing any earlier setting).
    #[must_use]
    pub fn with(mut self, timeframe: Timeframe, keep: Keep) -> Policy {
        self.keep[timeframe.index()] = Some(keep);
        self
    }

    /// How many intervals of `timeframe` are kept, if the policy names it.
    #[must_use]
    pub fn keep(&self, timeframe: Timeframe) -> Option<Keep> {
        self.keep[timeframe.index()]
    }

    /// The configured timeframes and their counts, longest first.
    pub fn timeframes(&self) -> impl Iterator<Item = (Timeframe, Keep)> + '_ {
        Timeframe::LONGEST_FIRST
            .into_iter()
            .filter_map(|tf| self.keep(tf).map(|keep| (tf, keep)))
    }

    /// How many timeframes are configured: the bound on a policy-shaped backup's restore depth.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keep.iter().flatten().count()
    }

    /// Whether no timeframe is configured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One `<N><unit>` or `*<unit>` token.
fn parse_token(token: &str) -> Result<(Timeframe, Keep), PolicyError> {
    let owned = || token.to_string();
    let mut chars = token.chars();
    let unit = chars
        .next_back()
        .ok_or(PolicyError::Invalid { token: owned() })?;
    let count = chars.as_str();
    if count.is_empty() {
        return Err(PolicyError::Invalid { token: owned() });
    }
    let keep = if count == "*" {
        Keep::All
    } else if count.bytes().all(|b| b.is_ascii_digit()) {
        // Only digits: a parse failure is an overflow.
        let n: u64 = count.parse().unwrap_or(u64::MAX);
        match u32::try_from(n) {
            Ok(0) => return Err(PolicyError::Zero { token: owned() }),
            Ok(n) if n <= MAX_COUNT => Keep::Last(n),
            _ => return Err(PolicyError::TooLarge { token: owned() }),
        }
    } else {
        return Err(PolicyError::Invalid { token: owned() });
    };
    if unit.is_ascii_digit() {
        return Err(PolicyError::Invalid { token: owned() });
    }
    let timeframe =
        Timeframe::from_unit(unit).ok_or(PolicyError::UnknownUnit { token: owned() })?;
    Ok((timeframe, keep))
}

impl FromStr for Policy {
    type Err = PolicyError;

    fn from_str(value: &str) -> Result<Policy, PolicyError> {
        Policy::parse(value)
    }
}

impl fmt::Display for Policy {
    /// The canonical form, longest timeframe first: `1y 12m 8w 14d 24h`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (timeframe, keep)) in self.timeframes().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            match keep {
                Keep::Last(n) => write!(f, "{n}{}", timeframe.unit())?,
                Keep::All => write!(f, "*{}", timeframe.unit())?,
            }
        }
        Ok(())
    }
}

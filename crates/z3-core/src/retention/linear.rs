//! Without a policy, backups form one linear chain; the rebase rule (`MAX_CHAIN`, `FULL_EVERY`)
//! says when the next backup starts a new chain with a full.

use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use jiff::Timestamp;

use crate::retention::tree::Base;

/// The default `MAX_CHAIN`: 500 links.
///
/// Why bounded by default, although the original z3 (and this tool before the rule) grew chains
/// without end: a restore receives every link, so restore time grows with the chain, and one bad
/// link loses everything after it. For an operator's only off-site copy, a bound is what a serious
/// tool should do unasked. Why this large: a full costs a dataset's whole size in upload time and
/// storage, and an upgrade must not turn into a surprise wave of fulls. 500 links are well over
/// a year of daily backups (one extra full a year and a half) and three weeks of hourly ones;
/// hourly users should configure a `PRESERVE` policy, whose tree bounds restores at a handful
/// of links. `MAX_CHAIN = none` restores the old unbounded behaviour.
pub const DEFAULT_MAX_CHAIN: usize = 500;

/// When a linear chain starts over with a full.
///
/// The default is `MAX_CHAIN = 500` ([`DEFAULT_MAX_CHAIN`]) and no `FULL_EVERY`: age alone does
/// not make a chain slower to restore or more fragile, its length does; an age limit is for
/// operators whose compliance asks for periodic fulls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebaseRule {
    /// At most this many objects in a chain, its full included; `None`: unbounded.
    pub max_chain: Option<NonZeroUsize>,
    /// A new full once the chain's full is at least this old; `None`: never for age.
    pub full_every: Option<Duration>,
}

impl Default for RebaseRule {
    fn default() -> Self {
        RebaseRule {
            max_chain: NonZeroUsize::new(DEFAULT_MAX_CHAIN),
            full_every: None,
        }
    }
}

/// Why a `MAX_CHAIN` or `FULL_EVERY` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RebaseError {
    /// `MAX_CHAIN` is not a positive count or `none`.
    #[error("MAX_CHAIN `{value}`: expected a number of links of at least 1, or `none`")]
    MaxChain {
        /// The value.
        value: String,
    },
    /// `FULL_EVERY` is not a count and unit or `none`.
    #[error(
        "FULL_EVERY `{value}`: expected a count and a unit h (hours), d (days) or w (weeks) such as `30d`, or `none`"
    )]
    FullEvery {
        /// The value.
        value: String,
    },
}

/// Parses `MAX_CHAIN`: a count of at least 1 (1 makes every backup a full), or `none` for
/// unbounded chains.
///
/// # Errors
///
/// [`RebaseError::MaxChain`] for anything else, zero included (zero links cannot hold a backup,
/// and "0 means unlimited" is a convention too easy to misread).
pub fn parse_max_chain(value: &str) -> Result<Option<NonZeroUsize>, RebaseError> {
    let value = value.trim();
    if value == "none" {
        return Ok(None);
    }
    value
        .parse::<NonZeroUsize>()
        .ok()
        .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
        .map(Some)
        .ok_or_else(|| RebaseError::MaxChain {
            value: value.to_string(),
        })
}

/// Parses `FULL_EVERY`: `<N>h`, `<N>d` or `<N>w` (N ≥ 1; a day is 24 hours of elapsed time), or
/// `none`.
///
/// # Errors
///
/// [`RebaseError::FullEvery`] for anything else.
pub fn parse_full_every(value: &str) -> Result<Option<Duration>, RebaseError> {
    let value = value.trim();
    if value == "none" {
        return Ok(None);
    }
    let invalid = || RebaseError::FullEvery {
        value: value.to_string(),
    };
    let mut chars = value.chars();
    let unit = match chars.next_back() {
        Some('h') => 3600,
        Some('d') => 86_400,
        Some('w') => 7 * 86_400,
        _ => return Err(invalid()),
    };
    let count = chars.as_str();
    if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let n: u64 = count.parse().map_err(|_| invalid())?;
    match n.checked_mul(unit) {
        Some(secs) if n > 0 => Ok(Some(Duration::from_secs(secs))),
        _ => Err(invalid()),
    }
}

impl RebaseRule {
    /// `MAX_CHAIN` and `FULL_EVERY` as configured, the defaults where unset or empty.
    ///
    /// # Errors
    /// As [`parse_max_chain`] and [`parse_full_every`].
    pub fn from_settings(
        max_chain: Option<&str>,
        full_every: Option<&str>,
    ) -> Result<RebaseRule, RebaseError> {
        fn set(v: Option<&str>) -> Option<&str> {
            v.map(str::trim).filter(|v| !v.is_empty())
        }
        let mut rule = RebaseRule::default();
        if let Some(value) = set(max_chain) {
            rule.max_chain = parse_max_chain(value)?;
        }
        if let Some(value) = set(full_every) {
            rule.full_every = parse_full_every(value)?;
        }
        Ok(rule)
    }
}

/// The end of the current linear chain: the backup the next one would be an incremental on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainTip<'a> {
    /// The tip's name.
    pub name: &'a str,
    /// How many objects a restore of the tip receives, its full included.
    pub links: usize,
    /// The time of the chain's full, if known (the original z3's objects carry none).
    pub full_time: Option<Timestamp>,
}

/// The linear decision for a new backup taken at `time`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinearDecision {
    /// Full, or incremental on the tip.
    pub base: Base,
    /// Why, for the operator.
    pub reason: String,
}

impl fmt::Display for LinearDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Decides whether the next backup (of a snapshot taken at `time`) continues the chain ending at
/// `tip` or starts over with a full.
///
/// A full when there is no tip; when one more link would exceed `max_chain`; or when the chain's
/// full is at least `full_every` older than `time`. A chain whose full's time is unknown is not
/// cut for age (nothing proves it old), only for length.
#[must_use]
pub fn linear_base(
    rule: &RebaseRule,
    tip: Option<&ChainTip<'_>>,
    time: Timestamp,
) -> LinearDecision {
    let Some(tip) = tip else {
        return LinearDecision {
            base: Base::Full,
            reason: "no backup to build on: full".to_string(),
        };
    };
    if let Some(max) = rule.max_chain
        && tip.links >= max.get()
    {
        return LinearDecision {
            base: Base::Full,
            reason: format!(
                "the chain to {} has {} links and MAX_CHAIN is {max}: full",
                tip.name, tip.links
            ),
        };
    }
    if let (Some(every), Some(full_time)) = (rule.full_every, tip.full_time) {
        let age = time.as_second().saturating_sub(full_time.as_second());
        if u64::try_from(age).is_ok_and(|age| age >= every.as_secs()) {
            return LinearDecision {
                base: Base::Full,
                reason: format!(
                    "the chain's full is {} old and FULL_EVERY is {}: full",
                    span(age.unsigned_abs()),
                    span(every.as_secs())
                ),
            };
        }
    }
    LinearDecision {
        base: Base::Incremental {
            parent: tip.name.to_string(),
        },
        reason: format!(
            "incremental on {} (chain of {} links)",
            tip.name,
            tip.links + 1
        ),
    }
}

/// A duration for a reason: whole hours below two days, days with one decimal above.
fn span(secs: u64) -> String {
    if secs < 2 * 86_400 {
        format!("{} hours", secs / 3600)
    } else {
        format!("{:.1} days", secs as f64 / 86_400.0)
    }
}

//! Retention: which snapshots a preservation policy keeps, and how it shapes backups into a tree
//! (issue 14, points 1 and 2).
//!
//! # The policy
//!
//! `PRESERVE = 1y 12m 8w 14d 24h` ([`Policy`]) keeps, for each timeframe, the last N intervals
//! counted back from `now` (the current one included): the current year; this month and the 11
//! before; this week and 7 before; today and 13 days before; this hour and 23 before. In each kept
//! interval the first (oldest) snapshot represents it and is preserved; the newest snapshot is
//! always preserved; a snapshot whose time is unknown is never pruned ([`preserve`]).
//!
//! This is btrfs2s3's reading of a btrbk-style `preserve` value. btrbk itself differs in two
//! ways: it keeps the current interval *and* N before it (`14d` is 15 days there), and its months
//! and years begin on the first week-start day in them (its monthly is "the first weekly of the
//! month"). Here `N` means N intervals, as an operator counts them, and months and years are
//! calendar months and years, so weekly and monthly choices do not depend on each other.
//!
//! Intervals are counted on a [`Calendar`]: a time zone (default UTC) and a week start (default
//! Monday). Days, weeks, months and years are civil (a 23- or 25-hour DST day is one day); hours
//! are the local clock's hours as they happen (the repeated hour of a fall-back night is two).
//!
//! # A snapshot's time
//!
//! [`snapshot_time`] takes a snapshot's short name, its ZFS `creation` (if the caller has it)
//! and an optional [`NameFormat`] (zfs-auto-snap, sanoid or a strftime-style pattern): a name
//! that matches the format wins, `creation` comes next, and otherwise the time is unknown. The
//! original z3's objects carry no time, so without a name format they are never pruned.
//!
//! # The tree
//!
//! With a policy, [`choose_base`] decides what a new backup is sent on: the longest timeframe
//! makes fulls, each shorter one incrementals on the current backup of the next longer one, so a
//! restore receives at most as many objects as the policy has timeframes:
//!
//! ```text
//! 1y 12m 14d 24h         restore depth
//! Y 2026 (full)          1
//! ├── M 2026-11          2
//! │   └── D 11-30        3
//! └── M 2026-12          2
//!     ├── D 12-03        3
//!     └── D 12-04        3
//!         ├── H 13:00    4
//!         └── H 14:00    4
//! ```
//!
//! Expired leaves can always be deleted; a preserved backup keeps only its few ancestors.
//!
//! # Without a policy
//!
//! Backups stay one linear chain, as in the original z3, but bounded: [`linear_base`] starts a new
//! chain with a full after `MAX_CHAIN` links ([`DEFAULT_MAX_CHAIN`]) or once the chain's full is
//! `FULL_EVERY` old ([`RebaseRule`]).
//!
//! # Purity
//!
//! Nothing here reads the clock, the environment or the system's time zone database: `now`
//! and the [`jiff::tz::TimeZone`] are arguments (the caller builds the zone, e.g. from the
//! system database or a POSIX TZ string such as `CET-1CEST,M3.5.0,M10.5.0/3`).

mod calendar;
mod keep;
mod linear;
mod name_time;
mod policy;
mod preserve;
mod shape;
mod tree;

#[cfg(test)]
mod tests;

pub use calendar::{Calendar, Interval, Timeframe, parse_week_start};
pub use keep::{extend_to_children, keep_until, lock_dates};
pub use linear::{
    ChainTip, DEFAULT_MAX_CHAIN, LinearDecision, RebaseError, RebaseRule, linear_base,
    parse_full_every, parse_max_chain,
};
pub use name_time::{NameFormat, NameFormatError, NamePattern, TimeSource, snapshot_time};
pub use policy::{Keep, MAX_COUNT, Policy, PolicyError};
pub use preserve::{AFTER_NOW, Item, NEWEST, Preservation, Verdict, preserve};
pub use shape::{ShapeInput, Shaping, StepReason, shape};
pub use tree::{Backup, Base, BaseDecision, choose_base, future_bases};

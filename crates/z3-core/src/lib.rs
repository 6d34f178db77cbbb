//! Pure domain logic of z3: validated ZFS names, snapshot chains, health checks and planning.
//!
//! z3 backs up ZFS snapshots to S3 as one object per snapshot, full or incremental, and restores
//! them; it is a compatible rewrite of the Python `presslabs/z3`. This crate holds every
//! *decision* z3 makes, and none of the doing:
//!
//! - [`names`]: [`DatasetName`], [`SnapshotName`] and [`FullSnapshotName`], validated with the
//!   OpenZFS rules so bad input is refused before any `zfs` command runs;
//! - [`snapshot`]: [`LocalSnapshot`] and [`LocalChain`], the matching local snapshots each linked
//!   to its incremental base (the previous matching snapshot);
//! - [`remote`] and [`layout`]: [`RemoteIndex`], the backup objects with their
//!   [`ObjectMeta`], and [`KeyLayout`], the key scheme shared with the original tool;
//! - [`seal`]: [`Seal`], the digests and guids written beside each object, and [`judge`], which
//!   says whether an object may be trusted;
//! - [`health`]: whether each object's parent chain reaches a full backup ([`Health`]);
//! - [`plan`]: [`plan_backup`] and [`plan_restore`], which snapshots to send or receive, and how;
//! - [`fleet`]: [`fleet::summarize`], one row per dataset in the bucket for `z3 status --all`;
//! - [`status`] and [`humanize()`]: the `z3 status` table, byte for byte as the original printed it;
//! - [`verify`]: which objects `z3 verify` reads, and whether each one's chain holds;
//! - [`prune`]: [`plan_prune`], which objects (and seals, and noncurrent versions) `z3 prune`
//!   deletes, leaves first in crash-safe batches, and why each other object stays;
//! - [`retention`]: the `PRESERVE` policy ([`Policy`]): which snapshots it keeps ([`preserve`]),
//!   a snapshot's time from its name or `creation` ([`snapshot_time`]), which backup a new one
//!   is based on so restores stay a few links deep ([`choose_base`]), and the linear rebase rule
//!   ([`linear_base`]);
//! - [`sync`]: [`plan_sync`], what `z3_ssh_sync` sends between two hosts.
//!
//! # Example
//!
//! A first backup into an empty bucket starts with a full stream, then incrementals
//! (the original crashed here instead; issues #26 and #35):
//!
//! ```
//! use z3_core::{
//!     plan_backup, BackupRequest, DatasetName, FullSnapshotName, LocalChain, LocalSnapshot,
//!     RemoteIndex, StepKind,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dataset = DatasetName::new("tank/data")?;
//! let listed: Vec<LocalSnapshot> = ["daily-1", "manual", "daily-2"]
//!     .iter()
//!     .zip(1..)
//!     .map(|(snap, txg)| {
//!         Ok(LocalSnapshot {
//!             name: FullSnapshotName::parse(&format!("tank/data@{snap}"))?,
//!             guid: txg,
//!             createtxg: txg,
//!             creation: None,
//!         })
//!     })
//!     .collect::<Result<_, z3_core::NameError>>()?;
//! // Only snapshots starting with the prefix take part; "manual" is skipped.
//! let local = LocalChain::new(&listed, "daily-");
//! let remote = RemoteIndex::new(Vec::new());
//!
//! let plan = plan_backup(&BackupRequest {
//!     dataset: &dataset,
//!     snapshot_prefix: "daily-",
//!     local: &local,
//!     remote: &remote,
//!     target: None,
//!     full: false,
//!     overwrite_other: false,
//! })?;
//!
//! assert_eq!(plan.steps.len(), 2);
//! assert_eq!(plan.steps[0].kind, StepKind::Full);
//! assert_eq!(plan.steps[1].snapshot.to_string(), "tank/data@daily-2");
//! assert_eq!(
//!     plan.steps[1].kind,
//!     StepKind::Incremental { parent: FullSnapshotName::parse("tank/data@daily-1")? }
//! );
//! # Ok(())
//! # }
//! ```
//!
//! # Why sans-IO?
//!
//! Nothing here runs `zfs`, talks to S3, reads the environment or the clock. Callers gather the
//! facts (a `zfs list`, an S3 listing with metadata), hand them over as values, and get plain
//! data back: a plan, a health map, a table. The reasons:
//!
//! - **Compatibility is testable.** The original's behaviour is pinned by its test suite
//!   (fixtures of eight objects, expected commands and messages). Each of those scenarios is a
//!   table row here, run in microseconds, without a pool or a bucket.
//! - **Dry runs tell the truth.** `--dry-run` prints the same plan a real run executes; the
//!   original's dry run still ran `zfs send` and claimed success.
//! - **Edge cases are cheap to cover.** A 100,000-link chain, cycles in `parent` metadata,
//!   objects without metadata: property tests throw thousands of such inputs at the planners,
//!   which would be impractical against real services.
//!
//! The IO lives in `z3-zfs`, `z3-s3` and `z3-codec`, and the orchestration in `z3-cli`.

#![deny(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod check;
pub mod fleet;
pub mod health;
pub mod humanize;
pub mod layout;
pub mod lock;
pub mod names;
pub mod plan;
pub mod prune;
pub mod remote;
pub mod retention;
pub mod seal;
pub mod snapshot;
pub mod status;
pub mod sync;
pub mod verify;

pub use health::{Health, HealthMap, Reason};
pub use humanize::humanize;
pub use layout::KeyLayout;
pub use lock::{Holder, LockParseError, LockRecord};
pub use names::{DatasetName, FullSnapshotName, NameError, SnapshotName};
pub use plan::{
    BackupPlan, BackupRequest, BackupStep, PlanError, RestorePlan, RestoreRequest, RestoreStep,
    StepKind, WriteMode, plan_backup, plan_restore,
};
pub use prune::{
    Batch, DELETE_BATCH_LIMIT, Deletion, KeepReason, KeptVersion, ObjectFacts, ObjectVersion,
    PruneInput, PrunePlan, PruneTotals, Target, VersionKind, min_storage_days, plan_prune,
};
pub use remote::{ObjectMeta, RemoteIndex, RemoteSnapshot};
pub use retention::{
    Base, BaseDecision, Calendar, Keep, NameFormat, Policy, PolicyError, RebaseRule, Timeframe,
    choose_base, linear_base, preserve, snapshot_time,
};
pub use seal::{Digest, DigestMismatch, Seal, SealCheck, UntrustedObject, judge};
pub use snapshot::{LocalChain, LocalEntry, LocalSnapshot};
pub use status::{RowKind, StatusRow};
pub use sync::{SyncError, SyncPlan, plan_sync};

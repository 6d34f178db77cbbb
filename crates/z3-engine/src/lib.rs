//! The z3 engine: `status`, `backup`, `restore` and `verify` of ZFS snapshots in S3 as library
//! calls, on the traits of the crates below it ([`z3_zfs::Zfs`], [`z3_s3::ObjectStore`]) and
//! the decisions of [`z3_core`].
//!
//! An [`Engine`] serves one dataset: give it a `Zfs` (the real `z3_zfs::ZfsCli` or the
//! in-memory fake), an `ObjectStore` bound to the bucket (`z3_s3::AwsStore`, or
//! `z3_s3::MemoryStore`, or your own) and an [`EngineConfig`]; then call a command with its
//! options. Each command returns a typed report ([`BackupReport`], [`RestoreReport`], …) and
//! sends [`Event`]s to the [`Events`] you pass while it runs (or [`NoEvents`]); it fails with an
//! [`Error`] whose kind says what went wrong. Progress goes to a [`Progress`] you implement (or
//! [`NoProgress`]); a stop request is an [`Interrupt`] you trigger; the time comes from a
//! [`Clock`] ([`SystemClock`] unless you set one). [`sync::Sync`] pushes or pulls snapshots
//! between two `Zfs` sides; [`cleanup::cleanup`] aborts stale multipart uploads. With a
//! [`MetaCache`] ([`Engine::with_meta_cache`]), `status` HEADs only the objects that are new or
//! changed since its last run ([`meta_cache`]). The engine reads
//! no environment and no configuration file, installs no signal handler and sets no allocator.
//!
//! Needs a multi-threaded Tokio runtime. Stable so far: the types named here; 0.x versions may
//! change any of them.
//!
//! ```no_run
//! use std::sync::Arc;
//! use z3_codec::{Compressor, Encoding};
//! use z3_core::{DatasetName, SnapshotName};
//! use z3_engine::{BackupOptions, Engine, EngineConfig, NoEvents, NoProgress, RestoreOptions};
//!
//! async fn backup_then_restore(store: Arc<dyn z3_s3::ObjectStore>) -> anyhow::Result<()> {
//!     let zfs = Arc::new(z3_zfs::ZfsCli::new());
//!     let config = EngineConfig::new("my-bucket", "z3-backup/", DatasetName::new("tank/data")?);
//!     let engine = Engine::new(zfs, store, config).with_progress(Arc::new(NoProgress));
//!     let encoding = Encoding { compressor: Compressor::parse("zstd", "")?, encryption: None };
//!     let report = engine.backup(&BackupOptions::new(encoding), &mut NoEvents).await?;
//!     for snapshot in &report.snapshots {
//!         println!("{} -> {} ({} bytes)", snapshot.snapshot, snapshot.url, snapshot.bytes_stored);
//!     }
//!     let target = RestoreOptions::new(SnapshotName::new("zfs-auto-snap:daily-2026-12-04")?);
//!     engine.restore(&target, &mut NoEvents).await?;
//!     Ok(())
//! }
//! ```
//!
//! The guarantees (docs/reliability.md): a failed or interrupted backup never looks like a
//! valid one; an object is written together with its seal (the BLAKE3 digest of its stream),
//! and a restore hands `zfs receive` the end of a stream only after its digest matched; no
//! command replaces a backup that others depend on.

/// The version of z3 and the commit it was built from: `0.1.0 (1a2b3c4d5e6f)`, `-dirty` when the
/// checkout had uncommitted changes, `unknown` outside a checkout (see `build.rs`).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("Z3_COMMIT"), ")");

pub mod cancel;
pub mod cleanup;
pub mod clock;
pub mod config;
mod engine;
mod error;
pub mod fleet;
pub mod journal;
pub mod json;
pub mod lock;
pub mod meta_cache;
pub mod metrics;
pub mod progress;
pub mod receive;
pub mod report;
mod seal;
pub mod sync;

pub use cancel::Interrupt;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    BackupOptions, BoxError, EngineConfig, KeySource, NoKeys, PruneOptions, RestoreOptions,
    Retention, SMALL_OBJECTS_STORAGE_CLASS, SendFlagChoice, SettingError, StatusOptions,
    VerifyOptions, encoding_from_settings,
};
pub use engine::{Engine, KeyChanged};
pub use error::{Detail, Diverged, Error};
pub use meta_cache::{FileMetaCache, MemoryMetaCache, MetaCache};
pub use progress::{NoProgress, Progress, ProgressReader, RecordingProgress, Transfer};
pub use report::{
    BackupReport, Event, Events, Kind, NewestBackup, NoEvents, ObjectVerification, PruneReport,
    Pruned, RecordedEvents, RestoreReport, SnapshotBackup, SnapshotRestore, StatusReport, Verdict,
    VerifyReport,
};

/// A request the engine refuses before doing anything: bad input that the caller can fix (the
/// z3 binaries exit with status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

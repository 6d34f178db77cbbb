//! The `z3` subcommands on [`z3_engine::Engine`]: the command line's arguments and settings
//! become the engine's typed options (names and the compressor parsed here, once), and the
//! engine's progress becomes terminal bars.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use z3_codec::Encoding;
use z3_core::SnapshotName;
use z3_engine::{BackupOptions, EngineConfig, RestoreOptions, StatusOptions, VerifyOptions};
use z3_s3::ObjectStore;
use z3_zfs::Zfs;

pub use z3_engine::{Console, KeyChanged, Outcome};

use crate::args::{BackupArgs, RestoreArgs, StatusArgs, VerifyArgs};
use crate::config::Settings;
use crate::exit::UsageError;
use crate::interrupt::Interrupt;
use crate::progress::{Bars, ProgressMode};

/// The IO edges and the settings of one `z3` invocation.
#[derive(Debug, Clone)]
pub struct Engine {
    zfs: Arc<dyn Zfs>,
    store: Arc<dyn ObjectStore>,
    settings: Settings,
    progress: ProgressMode,
    interrupt: Interrupt,
    lock_ttl: Option<Duration>,
}

impl Engine {
    /// Wires an engine; production passes `ZfsCli` and `AwsStore`, tests `FakeZfs` and `MemoryStore`.
    #[must_use]
    pub fn new(zfs: Arc<dyn Zfs>, store: Arc<dyn ObjectStore>, settings: Settings) -> Self {
        Self {
            zfs,
            store,
            settings,
            progress: ProgressMode::Auto,
            interrupt: Interrupt::new(),
            lock_ttl: None,
        }
    }

    /// When to draw progress bars (default: when stderr is a terminal).
    #[must_use]
    pub fn with_progress(mut self, progress: ProgressMode) -> Self {
        self.progress = progress;
        self
    }

    /// Stops backups and restores cleanly when `interrupt` fires (the binaries pass the one their
    /// SIGINT/SIGTERM handlers trigger).
    #[must_use]
    pub fn with_interrupt(mut self, interrupt: Interrupt) -> Self {
        self.interrupt = interrupt;
        self
    }

    /// How long the backup lock holds without renewal (default 15 minutes; tests use less).
    #[must_use]
    pub fn with_lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = Some(ttl);
        self
    }

    /// The settings in use.
    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The library engine for the configured dataset.
    fn engine(&self) -> Result<z3_engine::Engine> {
        let s = &self.settings;
        let config = EngineConfig {
            bucket: s.bucket.clone(),
            s3_prefix_raw: s.s3_prefix_raw.clone(),
            layout: s.layout.clone(),
            dataset: s.require_dataset()?.clone(),
            snapshot_prefix: s.snapshot_prefix.clone(),
            compressors: s.compressors.clone(),
            keys: Arc::new(s.age.clone()),
            concurrency: s.concurrency,
            chunk_size: s.chunk_size,
            retry: s.retry.clone(),
            storage_class: s.storage_class.clone(),
        };
        let mut engine =
            z3_engine::Engine::new(Arc::clone(&self.zfs), Arc::clone(&self.store), config)
                .with_progress(Arc::new(Bars(self.progress)))
                .with_interrupt(self.interrupt.clone());
        if let Some(ttl) = self.lock_ttl {
            engine = engine.with_lock_ttl(ttl);
        }
        Ok(engine)
    }

    /// `z3 status`.
    ///
    /// # Errors
    /// See [`z3_engine::Engine::status`].
    pub async fn status(&self, args: &StatusArgs, console: &mut Console<'_>) -> Result<Outcome> {
        let options = StatusOptions { json: args.json };
        self.engine()?.status(&options, console).await
    }

    /// `z3 backup`.
    ///
    /// # Errors
    /// An unusable compressor or age recipient (usage errors); see [`z3_engine::Engine::backup`].
    pub async fn backup(&self, args: &BackupArgs, console: &mut Console<'_>) -> Result<Outcome> {
        let engine = self.engine()?;
        let s = &self.settings;
        let compressor = s
            .compressors
            .parse(&s.compressor, &s.gpg_recipient)
            .map_err(|e| UsageError(format!("invalid COMPRESSOR: {e}")))?;
        let encoding = Encoding {
            compressor,
            encryption: s.age.recipients()?,
        };
        let options = BackupOptions {
            snapshot: args
                .snapshot
                .as_deref()
                .map(SnapshotName::new)
                .transpose()?,
            full: args.full,
            overwrite_other_snapshot: args.overwrite_other_snapshot,
            dry_run: args.dry_run,
            parseable: args.parseable,
            break_lock: args.break_lock,
            encoding,
        };
        engine.backup(&options, console).await
    }

    /// `z3 restore`.
    ///
    /// # Errors
    /// See [`z3_engine::Engine::restore`].
    pub async fn restore(&self, args: &RestoreArgs, console: &mut Console<'_>) -> Result<Outcome> {
        let engine = self.engine()?;
        let options = RestoreOptions {
            snapshot: SnapshotName::new(&args.snapshot)?,
            force: args.force,
            dry_run: args.dry_run,
            allow_unsealed: args.allow_unsealed,
        };
        engine.restore(&options, console).await
    }

    /// `z3 verify`.
    ///
    /// # Errors
    /// See [`z3_engine::Engine::verify`].
    pub async fn verify(&self, args: &VerifyArgs, console: &mut Console<'_>) -> Result<Outcome> {
        let engine = self.engine()?;
        let options = VerifyOptions {
            snapshot: args
                .snapshot
                .as_deref()
                .map(SnapshotName::new)
                .transpose()?,
            sample: args.sample,
        };
        engine.verify(&options, console).await
    }
}

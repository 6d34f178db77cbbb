//! The `z3` subcommands on [`z3_engine::Engine`]: the command line's arguments and settings
//! become the engine's typed options (names and the compressor parsed here, once), and the
//! engine's progress becomes terminal bars.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use z3_codec::Encoding;
use z3_core::SnapshotName;
use z3_core::fleet::render_fleet;
use z3_core::humanize::humanize;
use z3_engine::{
    BackupOptions, EngineConfig, Event, PruneOptions, RestoreOptions, StatusOptions, VerifyOptions,
};
use z3_s3::ObjectStore;
use z3_zfs::Zfs;

pub use z3_engine::KeyChanged;

pub use crate::console::Console;
use crate::console::{Render, Rendered};

use crate::args::{BackupArgs, PruneArgs, RestoreArgs, StatusArgs, VerifyArgs};
use crate::config::{ConfigError, Settings};
use crate::exit::ExitStatus;
use crate::interrupt::Interrupt;
use crate::progress::{Bars, ProgressMode};

/// What a command found, beyond success or failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything as expected.
    Done,
    /// `status` found unhealthy backups, or `verify` a failed object.
    HealthProblems,
}

impl Outcome {
    /// [`Outcome::Done`] when `healthy`, else [`Outcome::HealthProblems`].
    #[must_use]
    pub fn of_health(healthy: bool) -> Self {
        if healthy {
            Self::Done
        } else {
            Self::HealthProblems
        }
    }
}

/// A command's report, and what it says beyond success.
trait Reported: serde::Serialize {
    fn outcome(&self) -> Outcome {
        Outcome::Done
    }
}

impl Reported for z3_engine::BackupReport {}
impl Reported for z3_engine::RestoreReport {}
impl Reported for z3_engine::PruneReport {}
impl Reported for z3_engine::VerifyReport {
    fn outcome(&self) -> Outcome {
        Outcome::of_health(self.passed())
    }
}

impl From<Outcome> for ExitStatus {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Done => Self::Success,
            Outcome::HealthProblems => Self::Integrity,
        }
    }
}

/// The engine's events as the original z3's lines: results on stdout (flushed one by one, so
/// a long backup reports each snapshot as it is done), notes on stderr.
struct Lines<'c, 'w> {
    console: &'c mut Console<'w>,
    /// `backup --parseable`: `name\0estimated-bytes` instead of the sentence.
    parseable: bool,
}

impl Render for Lines<'_, '_> {
    fn render(&mut self, event: Event) -> std::io::Result<()> {
        let out = &mut *self.console.out;
        match event {
            Event::Note { text } => return writeln!(self.console.err, "{text}"),
            Event::BackedUp(b) if b.dry_run => writeln!(out, "{}", b.plan_line())?,
            Event::BackedUp(b) if self.parseable => {
                writeln!(out, "{}\0{}", b.snapshot, b.estimated_bytes)?;
            }
            // The original's exact wording, misspelling included: scripts grep for it.
            Event::BackedUp(b) => writeln!(
                out,
                "Successfuly backed up {}: {}.",
                b.snapshot,
                humanize(b.estimated_bytes)
            )?,
            Event::Restored(r) if r.dry_run => writeln!(out, "{}", r.plan_line())?,
            Event::Restored(r) => match &r.file {
                Some(file) => writeln!(out, "Wrote {} to {}.", r.snapshot, file.display())?,
                None => writeln!(out, "Restored {}.", r.snapshot)?,
            },
            Event::Verified(v) => writeln!(out, "{}", v.line())?,
            Event::Pruned(p) => writeln!(out, "{}", p.line())?,
            Event::Kept { name, reason } => writeln!(out, "keep {name}: {reason}")?,
            // Events added later are for embedders; z3 shows nothing for them.
            _ => return Ok(()),
        }
        out.flush()
    }
}

/// `--json`: each event as a JSON line on stdout, notes included (docs/json.md).
struct Json<'c, 'w>(&'c mut Console<'w>);

impl Render for Json<'_, '_> {
    fn render(&mut self, event: Event) -> std::io::Result<()> {
        z3_engine::json::write_line(&mut *self.0.out, &event)
    }
}

/// How new backups are encoded: `COMPRESSOR` (with the `[compressor:NAME]` definitions) and the
/// age recipients, parsed once, at the edge.
///
/// # Errors
/// [`ConfigError::Invalid`] naming `COMPRESSOR` or the age setting at fault (a usage error).
pub fn encoding(s: &Settings) -> Result<Encoding, ConfigError> {
    let (all, name, gpg, age) = (&s.compressors, &s.compressor, &s.gpg_recipient, &s.age);
    Ok(z3_engine::encoding_from_settings(all, name, gpg, age)?)
}

/// The IO edges and the settings of one `z3` invocation.
#[derive(Debug, Clone)]
pub struct Engine {
    zfs: Arc<dyn Zfs>,
    store: Arc<dyn ObjectStore>,
    settings: Settings,
    progress: ProgressMode,
    interrupt: Interrupt,
    lock_ttl: Option<Duration>,
    encoding: Option<Encoding>,
    clock: Option<Arc<dyn z3_engine::Clock>>,
    meta_cache: Option<Arc<dyn z3_engine::MetaCache>>,
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
            encoding: None,
            clock: None,
            meta_cache: None,
        }
    }

    /// The status cache `status` reads and updates unless `--no-cache` (default: none).
    #[must_use]
    pub fn with_meta_cache(mut self, cache: Option<Arc<dyn z3_engine::MetaCache>>) -> Self {
        self.meta_cache = cache;
        self
    }

    /// [`Engine::engine`] for `status`: with the status cache unless `--no-cache`.
    fn status_engine(&self, args: &StatusArgs) -> Result<z3_engine::Engine> {
        let cache = self.meta_cache.clone().filter(|_| !args.no_cache);
        Ok((cache.into_iter()).fold(self.engine()?, z3_engine::Engine::with_meta_cache))
    }

    /// The clock for the lock, retention and prune (default: the system's; tests fix it).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn z3_engine::Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// How backups encode, parsed already (by [`crate::run`], before connecting); without it
    /// `backup` parses the settings itself.
    #[must_use]
    pub fn with_encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = Some(encoding);
        self
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
            transfer: s.transfer.clone(),
            storage_class: s.storage_class.clone(),
            retention: s.retention.clone(),
            rebase: s.rebase,
        };
        let mut engine =
            z3_engine::Engine::new(Arc::clone(&self.zfs), Arc::clone(&self.store), config)
                .with_progress(Arc::new(Bars(self.progress)))
                .with_interrupt(self.interrupt.clone());
        if let Some(ttl) = self.lock_ttl {
            engine = engine.with_lock_ttl(ttl);
        }
        if let Some(clock) = &self.clock {
            engine = engine.with_clock(Arc::clone(clock));
        }
        Ok(engine)
    }

    /// `z3 status`.
    ///
    /// # Errors
    /// See [`z3_engine::Engine::status`].
    pub async fn status(&self, args: &StatusArgs, console: &mut Console<'_>) -> Result<Outcome> {
        if args.all {
            return self.status_all(args, console).await;
        }
        let options = StatusOptions::default();
        let report = self.status_engine(args)?.status(&options).await?;
        if args.json {
            // The report as it is: today's keys, plus `s3_prefix_raw` and `schema`.
            z3_engine::json::write_document(&mut *console.out, &report)?;
        } else {
            write!(console.out, "{}", report.to_text())?;
        }
        for note in report.notes() {
            writeln!(console.err, "z3: note: {note}")?;
        }
        Ok(Outcome::of_health(report.healthy))
    }

    /// `z3 status --check`: the verdict on the dataset's backups at the system clock's now.
    ///
    /// # Errors
    /// Anything `status` fails on.
    pub async fn check(&self, args: &StatusArgs) -> Result<z3_core::check::Check> {
        let report = self
            .status_engine(args)?
            .status(&StatusOptions::default())
            .await?;
        let (warn, crit) = (args.warn_age, args.crit_age);
        let now = z3_engine::Clock::unix_secs(&z3_engine::SystemClock);
        Ok(report.check(now, z3_core::check::Thresholds { warn, crit }))
    }

    /// `z3 status --all`: a row per dataset in the bucket, or the report as JSON.
    async fn status_all(&self, args: &StatusArgs, console: &mut Console<'_>) -> Result<Outcome> {
        let s = &self.settings;
        let locked = z3_engine::Retention::locks(s.retention.as_ref());
        let store = z3_engine::fleet::read_view(Arc::clone(&self.store), locked);
        let (now, cache) = (SystemTime::now(), self.meta_cache.as_deref());
        let cache = cache.filter(|_| !args.no_cache);
        let report =
            z3_engine::fleet::status_all(&store, &s.layout, &s.transfer.retry, now, cache).await?;
        if args.json {
            z3_engine::json::write_document(&mut *console.out, &report)?;
        } else {
            writeln!(
                console.out,
                "backup status of every dataset on {}/{}",
                s.bucket, s.s3_prefix_raw
            )?;
            write!(console.out, "{}", render_fleet(&report.datasets))?;
        }
        Ok(Outcome::of_health(report.healthy))
    }

    /// `z3 backup`.
    ///
    /// # Errors
    /// An unusable compressor or age recipient (usage errors); see [`z3_engine::Engine::backup`].
    pub async fn backup(&self, args: &BackupArgs, console: &mut Console<'_>) -> Result<Outcome> {
        let engine = self.engine()?;
        let encoding = match &self.encoding {
            Some(encoding) => encoding.clone(),
            None => encoding(&self.settings)?,
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
            break_lock: args.break_lock,
            encoding,
            send_flags: if args.raw {
                self.settings.send_flags.with_raw()
            } else {
                self.settings.send_flags
            },
            metrics_dir: args.metrics_dir.clone(),
            no_resume: args.no_resume,
        };
        let json = (args.json, args.parseable);
        self.reported(console, json, "backup", async |events| {
            engine.backup(&options, events).await
        })
        .await?;
        Ok(Outcome::Done)
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
            target_dataset: args
                .target_dataset
                .as_deref()
                .map(z3_core::DatasetName::new)
                .transpose()?,
            to_dir: args.to_dir.clone(),
        };
        self.reported(console, (args.json, false), "restore", async |events| {
            engine.restore(&options, events).await
        })
        .await?;
        Ok(Outcome::Done)
    }

    /// `z3 prune`.
    ///
    /// # Errors
    /// See [`z3_engine::Engine::prune`].
    pub async fn prune(&self, args: &PruneArgs, console: &mut Console<'_>) -> Result<Outcome> {
        let engine = self.engine()?;
        let options = PruneOptions::new()
            .dry_run(args.dry_run)
            .allow_early_delete(args.allow_early_delete)
            .break_lock(args.break_lock);
        let report = self
            .reported(console, (args.json, false), "prune", async |events| {
                engine.prune(&options, events).await
            })
            .await?;
        if !args.json {
            writeln!(console.out, "{}", report.summary())?;
        }
        Ok(Outcome::Done)
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
        let report = self
            .reported(console, (args.json, false), "verify", async |events| {
                engine.verify(&options, events).await
            })
            .await?;
        if let Some(summary) = report.summary().filter(|_| !args.json) {
            writeln!(console.out, "{summary}")?;
        }
        Ok(report.outcome())
    }

    /// Runs one command with its events as lines, or with `--json` (`json.0`) as JSON lines
    /// closed by the `finished` line, which carries the exit code and the report or the error;
    /// `json.1` is `backup --parseable`.
    async fn reported<R: Reported>(
        &self,
        console: &mut Console<'_>,
        json: (bool, bool),
        command: &str,
        run: impl AsyncFnOnce(&mut dyn z3_engine::Events) -> Result<R, z3_engine::Error>,
    ) -> Result<R> {
        let render: Box<dyn Render + '_> = if json.0 {
            Box::new(Json(&mut *console))
        } else {
            Box::new(Lines {
                console,
                parseable: json.1,
            })
        };
        let mut sink = Rendered::new(render);
        let result = run(&mut sink).await;
        let failed = sink.failed.take();
        drop(sink);
        let dataset = self.settings.dataset.as_ref().map(AsRef::as_ref);
        let out = &mut *console.out;
        match (result, failed) {
            (Err(_), Some(write)) => Err(write.into()),
            (Ok(report), _) if json.0 => {
                let code = ExitStatus::from(report.outcome()) as u8;
                z3_engine::json::finished(out, command, dataset, code, Ok(&report))?;
                Ok(report)
            }
            (Err(err), _) if json.0 => {
                let message = err.to_string();
                let code = err.exit_code();
                z3_engine::json::finished::<R>(out, command, dataset, code, Err(&message))?;
                Err(err.into())
            }
            (result, _) => Ok(result?),
        }
    }
}

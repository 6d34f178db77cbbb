//! What an [`Engine`](crate::Engine) is configured with, and the options of each command: typed
//! values, parsed and validated by the caller (the z3 binaries read them from flags, the
//! environment and `/etc/z3_backup/z3.conf`; an embedder from wherever it likes).

use std::fmt;
use std::sync::Arc;

use z3_codec::{AgeIdentities, Compressors, Encoding};
use z3_core::{DatasetName, KeyLayout, SnapshotName};
use z3_s3::{RetryConfig, Transfer};

/// A boxed error from a caller-supplied source (e.g. an unreadable key file); kept whole, so
/// the caller can recognise its own error types in the chain of the engine's error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where restores and verifies get the age identities that decrypt encrypted backups. Asked
/// only when an object to be read is encrypted: a restore host of unencrypted backups needs no
/// secret key.
pub trait KeySource: Send + Sync + fmt::Debug {
    /// The identities, or `None` when none are configured.
    ///
    /// # Errors
    /// The keys are configured but cannot be read.
    fn identities(&self) -> Result<Option<AgeIdentities>, BoxError>;
}

/// No keys: encrypted backups cannot be read (the engine says which setting is missing).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoKeys;

impl KeySource for NoKeys {
    fn identities(&self) -> Result<Option<AgeIdentities>, BoxError> {
        Ok(None)
    }
}

/// Key files as configured: read when an encrypted object is met, an unusable one named in an
/// [`InvalidInput`](crate::Error::InvalidInput) error.
impl KeySource for z3_codec::AgeKeys {
    fn identities(&self) -> Result<Option<AgeIdentities>, BoxError> {
        z3_codec::AgeKeys::identities(self).map_err(Into::into)
    }
}

/// One dataset's backups: where they live and how they are written and read.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The bucket (for messages and URLs; the store is already bound to it).
    pub bucket: String,
    /// The key prefix exactly as configured (shown by `status`).
    pub s3_prefix_raw: String,
    /// The normalised key layout.
    pub layout: KeyLayout,
    /// The dataset whose snapshots are backed up and restored.
    pub dataset: DatasetName,
    /// Only snapshots whose name after `@` starts with this are considered.
    pub snapshot_prefix: String,
    /// Built-in and custom compressors, to decode what each object's metadata names.
    pub compressors: Compressors,
    /// The age identities for encrypted objects, read only when needed.
    pub keys: Arc<dyn KeySource>,
    /// Parts in flight (uploads; downloads use at most 8), the part size without an estimate,
    /// the retry policy of every request, and the memory budget (`MEMORY_LIMIT`) of every
    /// upload and download.
    pub transfer: Transfer,
    /// Storage class of new objects.
    pub storage_class: String,
    /// How backups are kept and shaped (`PRESERVE` and friends); without one, `prune`
    /// refuses and backups form linear chains.
    pub retention: Option<Retention>,
    /// Without `retention`: when a linear chain starts over with a full (`MAX_CHAIN`,
    /// `FULL_EVERY`).
    pub rebase: z3_core::retention::RebaseRule,
}

/// A retention policy and how it reads time: which backups `prune` keeps, and which base a
/// new backup gets ([`z3_core::retention`]).
#[derive(Debug, Clone)]
pub struct Retention {
    /// How many of each timeframe to keep (`PRESERVE`).
    pub policy: z3_core::retention::Policy,
    /// How to read a time from a snapshot name (`NAME_FORMAT`); otherwise the snapshot's
    /// `creation`, as recorded in the object's metadata.
    pub name_format: Option<z3_core::retention::NameFormat>,
    /// The time zone and week start that define intervals.
    pub calendar: z3_core::retention::Calendar,
    /// `STORAGE_CLASS_YEARLY` … `STORAGE_CLASS_HOURLY`: the storage class of a backup that is
    /// the first of its interval in that timeframe (the longest it is the first of); others
    /// get `S3_STORAGE_CLASS`.
    pub storage_classes: Vec<(z3_core::retention::Timeframe, String)>,
    /// `OBJECT_LOCK`: write every object and seal with an Object Lock retention of this mode,
    /// until the policy lets it go (the bucket must have Object Lock on); `None`: no retention.
    pub object_lock: Option<z3_s3::RetentionMode>,
}

/// The per-timeframe storage class settings, longest timeframe first.
pub const STORAGE_CLASS_KEYS: [&str; 5] = [
    "STORAGE_CLASS_YEARLY",
    "STORAGE_CLASS_MONTHLY",
    "STORAGE_CLASS_WEEKLY",
    "STORAGE_CLASS_DAILY",
    "STORAGE_CLASS_HOURLY",
];

/// A setting that cannot be used: which, its value, and why (z3 exits 2 naming it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {setting} '{value}': {reason}")]
pub struct SettingError {
    /// The setting, e.g. `PRESERVE`.
    pub setting: &'static str,
    /// Its value.
    pub value: String,
    /// What is wrong.
    pub reason: String,
}

impl SettingError {
    fn new(setting: &'static str, value: &str, reason: impl fmt::Display) -> Self {
        Self {
            setting,
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// How new backups are encoded, from the settings: `COMPRESSOR` among `compressors` (with the
/// `gpg` compressor's recipient) and the age keys' recipients.
///
/// # Errors
/// [`SettingError`] naming `COMPRESSOR` or the age setting at fault.
pub fn encoding_from_settings(
    compressors: &Compressors,
    compressor: &str,
    gpg_recipient: &str,
    age: &z3_codec::AgeKeys,
) -> Result<z3_codec::Encoding, SettingError> {
    let compressor = compressors
        .parse(compressor, gpg_recipient)
        .map_err(|e| SettingError::new("COMPRESSOR", compressor, e))?;
    let encryption = age
        .recipients()
        .map_err(|e| SettingError::new(e.setting, &e.value, e.reason))?;
    Ok(z3_codec::Encoding {
        compressor,
        encryption,
    })
}

impl Retention {
    /// Whether `retention` writes objects under Object Lock (`OBJECT_LOCK`): the bucket is then
    /// read through [`z3_s3::Unhidden`], so a backup behind a delete marker still counts.
    #[must_use]
    pub fn locks(retention: Option<&Self>) -> bool {
        retention.is_some_and(|r| r.object_lock.is_some())
    }

    /// `PRESERVE`, `NAME_FORMAT`, `WEEK_START` and `OBJECT_LOCK` as configured, with the time
    /// zone the caller resolved (the engine reads no tz database); `None` without `PRESERVE`.
    ///
    /// # Errors
    /// [`SettingError`] naming the setting at fault; `OBJECT_LOCK` without `PRESERVE`.
    pub fn from_settings(
        preserve: Option<&str>,
        name_format: Option<&str>,
        time_zone: Option<jiff::tz::TimeZone>,
        [week_start, lock_text]: [Option<&str>; 2],
        classes: [Option<&str>; 5],
    ) -> Result<Option<Self>, SettingError> {
        fn set(v: Option<&str>) -> Option<&str> {
            v.map(str::trim).filter(|v| !v.is_empty())
        }
        let mut storage_classes = Vec::new();
        let timeframes = z3_core::retention::Timeframe::LONGEST_FIRST;
        for ((timeframe, key), class) in timeframes.into_iter().zip(STORAGE_CLASS_KEYS).zip(classes)
        {
            let Some(class) = set(class) else { continue };
            if set(preserve).is_none() {
                return Err(SettingError::new(
                    key,
                    class,
                    "needs PRESERVE: only a policy says which backups are yearly, monthly, …",
                ));
            }
            if !class
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(SettingError::new(
                    key,
                    class,
                    "not a storage class name, e.g. DEEP_ARCHIVE",
                ));
            }
            storage_classes.push((timeframe, class.to_ascii_uppercase()));
        }
        let object_lock = match set(lock_text) {
            Some(mode) => Some(z3_s3::RetentionMode::parse(mode).ok_or_else(|| {
                SettingError::new("OBJECT_LOCK", mode, "expected governance or compliance")
            })?),
            None => None,
        };
        let Some(preserve) = set(preserve) else {
            return match object_lock {
                Some(_) => Err(SettingError::new(
                    "OBJECT_LOCK",
                    set(lock_text).unwrap_or_default(),
                    "needs PRESERVE: the policy decides how long each backup stays locked",
                )),
                None => Ok(None),
            };
        };
        let policy = z3_core::retention::Policy::parse(preserve)
            .map_err(|e| SettingError::new("PRESERVE", preserve, e))?;
        let mut retention = Self::new(policy);
        if let Some(format) = set(name_format) {
            retention.name_format = Some(
                z3_core::retention::NameFormat::parse(format)
                    .map_err(|e| SettingError::new("NAME_FORMAT", format, e))?,
            );
        }
        if let Some(zone) = time_zone {
            retention.calendar.time_zone = zone;
        }
        retention.object_lock = object_lock;
        retention.storage_classes = storage_classes;
        if let Some(day) = set(week_start) {
            retention.calendar.week_start =
                z3_core::retention::parse_week_start(day).ok_or_else(|| {
                    SettingError::new("WEEK_START", day, "expected a weekday, e.g. monday")
                })?;
        }
        Ok(Some(retention))
    }

    /// `policy`, with times from `creation` in UTC, weeks starting on Monday.
    #[must_use]
    pub fn new(policy: z3_core::retention::Policy) -> Self {
        Self {
            policy,
            name_format: None,
            calendar: z3_core::retention::Calendar::default(),
            object_lock: None,
            storage_classes: Vec::new(),
        }
    }
}

impl EngineConfig {
    /// A configuration with z3's defaults for `dataset` in `bucket`, keys under `prefix`
    /// (normalised as z3 does: `"z3-backup"` and `"z3-backup/"` are the same prefix).
    #[must_use]
    pub fn new(bucket: impl Into<String>, prefix: &str, dataset: DatasetName) -> Self {
        Self {
            bucket: bucket.into(),
            s3_prefix_raw: prefix.to_owned(),
            layout: KeyLayout::new(prefix),
            dataset,
            snapshot_prefix: "zfs-auto-snap:daily".to_owned(),
            compressors: Compressors::builtin(),
            keys: Arc::new(NoKeys),
            transfer: Transfer {
                concurrency: 32,
                chunk_size: 256 << 20,
                retry: RetryConfig::default(),
                memory_limit: z3_s3::DEFAULT_MEMORY_LIMIT,
            },
            storage_class: "STANDARD_IA".to_owned(),
            retention: None,
            rebase: z3_core::retention::RebaseRule::default(),
        }
    }
}

/// Which optional `zfs send` flags ([`z3_zfs::SendFlags`]) a new chain is sent with
/// (`SEND_FLAGS`, `backup --raw`). Only a full adopts them: an incremental is always sent with
/// the flags recorded in its chain's objects, since `zfs receive` refuses some changes along a
/// chain (`-L`, `-w`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SendFlagChoice {
    /// A plain `zfs send`, as the original z3 did (the default: it restores on any zfs).
    #[default]
    Plain,
    /// `-c -L -e`, each where the local zfs has it (OpenZFS 0.7 and later have all three).
    Auto,
    /// Exactly these; a zfs that lacks one of them is an error, never silently a plain send
    /// (for `-w`, that would send a natively encrypted dataset decrypted).
    Exactly(z3_zfs::SendFlags),
}

impl SendFlagChoice {
    /// Parses `SEND_FLAGS`: `none` (or empty), `auto`, or letters of `w c L e` (`cLe`, also
    /// written `-c -L -e`).
    ///
    /// # Errors
    /// [`SettingError`] naming `SEND_FLAGS` and the letter at fault.
    pub fn from_setting(text: &str) -> Result<Self, SettingError> {
        let trimmed = text.trim();
        match trimmed.to_ascii_lowercase().as_str() {
            "" | "none" | "off" => return Ok(Self::Plain),
            "auto" => return Ok(Self::Auto),
            _ => {}
        }
        let letters: String = trimmed
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-' && *c != ',')
            .collect();
        let flags = z3_zfs::SendFlags::from_metadata(&letters).map_err(|why| {
            SettingError::new(
                "SEND_FLAGS",
                text,
                format!("{why}; expected none, auto, or letters of w, c, L, e (e.g. cLe)"),
            )
        })?;
        Ok(if flags.is_empty() {
            Self::Plain
        } else {
            Self::Exactly(flags)
        })
    }

    /// This choice with `-w` added (`backup --raw`).
    #[must_use]
    pub fn with_raw(self) -> Self {
        let raw = z3_zfs::SendFlags {
            raw: true,
            ..z3_zfs::SendFlags::NONE
        };
        match self {
            Self::Plain | Self::Auto => Self::Exactly(raw),
            Self::Exactly(flags) => Self::Exactly(flags.with(raw)),
        }
    }

    /// The flags to ask the local zfs about.
    #[must_use]
    pub fn wanted(self) -> z3_zfs::SendFlags {
        match self {
            Self::Plain => z3_zfs::SendFlags::NONE,
            Self::Auto => z3_zfs::SendFlags {
                raw: false,
                ..z3_zfs::SendFlags::ALL
            },
            Self::Exactly(flags) => flags,
        }
    }
}

/// `status`: no options yet (the report is rendered by the caller).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StatusOptions {}

/// `backup`: what to back up and how.
#[derive(Debug, Clone)]
#[allow(clippy::struct_excessive_bools)] // independent switches, as on the command line
pub struct BackupOptions {
    /// Back up up to this snapshot (default: the newest matching the prefix).
    pub snapshot: Option<SnapshotName>,
    /// Start a new chain with a full backup.
    pub full: bool,
    /// Allow replacing the object of another snapshot of the same name (never one with
    /// dependents).
    pub overwrite_other_snapshot: bool,
    /// Say what would be uploaded; upload nothing, take no lock.
    pub dry_run: bool,
    /// Take the dataset's lock even if another run holds it.
    pub break_lock: bool,
    /// Compressor and encryption of new objects.
    pub encoding: Encoding,
    /// The `zfs send` flags of new chains (incrementals keep their chain's).
    pub send_flags: SendFlagChoice,
    /// Write the run's Prometheus metrics into this directory after it ([`crate::metrics`]);
    /// not in a dry run.
    pub metrics_dir: Option<std::path::PathBuf>,
    /// Abort an interrupted upload of the snapshot instead of resuming it
    /// ([`crate::journal`]); the backup starts over.
    pub no_resume: bool,
}

impl BackupOptions {
    /// Back up the newest snapshot with `encoding`, incrementally where possible.
    #[must_use]
    pub fn new(encoding: Encoding) -> Self {
        Self {
            snapshot: None,
            full: false,
            overwrite_other_snapshot: false,
            dry_run: false,
            break_lock: false,
            encoding,
            send_flags: SendFlagChoice::Plain,
            metrics_dir: None,
            no_resume: false,
        }
    }
}

/// `prune`: how.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PruneOptions {
    /// Say what would be deleted; delete nothing (and take no lock).
    pub dry_run: bool,
    /// Delete objects younger than their storage class's minimum storage duration too (S3
    /// charges the rest of that duration; the report says how much).
    pub allow_early_delete: bool,
    /// Remove another run's lock first (`--break-lock`).
    pub break_lock: bool,
}

impl PruneOptions {
    /// A real prune, by the rules, without breaking locks.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Only say what would be deleted.
    #[must_use]
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Also delete objects younger than their storage class's minimum storage duration.
    #[must_use]
    pub fn allow_early_delete(mut self, allow: bool) -> Self {
        self.allow_early_delete = allow;
        self
    }

    /// Remove another run's lock first.
    #[must_use]
    pub fn break_lock(mut self, break_lock: bool) -> Self {
        self.break_lock = break_lock;
        self
    }
}

/// The storage class of seals and lock records, whatever `STORAGE_CLASS` backups use: restore
/// reads every seal of a chain before the first byte, and the lock is rewritten every few
/// minutes, so neither may sit in an archive tier or carry a minimum storage duration.
pub const SMALL_OBJECTS_STORAGE_CLASS: &str = "STANDARD";

/// `restore`: which snapshot and how.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The snapshot to restore (with whatever it needs before it).
    pub snapshot: SnapshotName,
    /// `zfs receive -F`.
    pub force: bool,
    /// Say what would be received; receive nothing.
    pub dry_run: bool,
    /// Restore objects without a seal (no digest check), with a warning.
    pub allow_unsealed: bool,
    /// Receive into this dataset instead of the configured one (same snapshot names); its own
    /// snapshots decide where the chain starts.
    pub target_dataset: Option<DatasetName>,
    /// Write each link's decoded, verified stream to a file in this directory, in receive
    /// order, instead of receiving it (no ZFS needed).
    pub to_dir: Option<std::path::PathBuf>,
}

impl RestoreOptions {
    /// Restore `snapshot`, checked, without `-F`.
    #[must_use]
    pub fn new(snapshot: SnapshotName) -> Self {
        Self {
            snapshot,
            force: false,
            dry_run: false,
            allow_unsealed: false,
            target_dataset: None,
            to_dir: None,
        }
    }
}

/// `verify`: which backups to read back.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// This snapshot's chain; `None` for every backup of the dataset.
    pub snapshot: Option<SnapshotName>,
    /// Download only this percentage of the objects (chains and seals are always checked).
    pub sample: Option<f64>,
}

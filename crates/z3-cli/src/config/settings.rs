//! Raw values resolved into typed [`Settings`], with errors that name the key.

use std::path::PathBuf;

use z3_codec::Compressors;
use z3_core::{DatasetName, KeyLayout};
use z3_s3::{S3Config, S3Settings, StaticCredentials, Transfer};

use z3_core::retention::RebaseRule;
use z3_engine::Retention;

use super::keys::AgeSettings;
use super::sources::RawConfig;
use super::{ConfigError, DEFAULT_COMPRESSOR};

/// Resolved, typed settings shared by every command. `Debug` shows no secret: `S3Config`'s
/// redacts the S3 secret, and the age settings are public keys and paths.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The bucket.
    pub bucket: String,
    /// The key prefix exactly as configured (shown by `status`).
    pub s3_prefix_raw: String,
    /// The normalised key layout.
    pub layout: KeyLayout,
    /// The dataset, when one is configured (status/backup/restore require it).
    pub dataset: Option<DatasetName>,
    /// Only snapshots whose name after `@` starts with this are considered.
    pub snapshot_prefix: String,
    /// Compressor name for new backups (`zstd`, `pigz1`, `gpg`, `none`, a configured one, …).
    pub compressor: String,
    /// Built-in and `[compressor:NAME]` compressors.
    pub compressors: Compressors,
    /// age keys and files.
    pub age: AgeSettings,
    /// gpg recipient for the `gpg` compressor.
    pub gpg_recipient: String,
    /// `CONCURRENCY`, `CHUNK_SIZE`, `MAX_RETRIES` and `MEMORY_LIMIT`, checked.
    pub transfer: Transfer,
    /// Storage class of new objects.
    pub storage_class: String,
    /// How to reach S3.
    pub s3: S3Config,
    /// The zfs program.
    pub zfs_command: Option<PathBuf>,
    /// `PRESERVE` with `NAME_FORMAT`, `TIME_ZONE` and `WEEK_START`; `None` without `PRESERVE`.
    pub retention: Option<Retention>,
    /// `MAX_CHAIN` and `FULL_EVERY`: when a linear chain (no `PRESERVE`) starts over.
    pub rebase: RebaseRule,
    /// `SEND_FLAGS`: the `zfs send` flags of new chains.
    pub send_flags: z3_engine::SendFlagChoice,
}

/// The most parts or ranges in flight: `CONCURRENCY`, `pput --concurrency`, `z3_get --concurrency`.
pub use z3_s3::MAX_CONCURRENCY;

impl Settings {
    /// Validates raw values into settings.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first key that is missing or invalid; a dataset name that ZFS would refuse.
    pub fn resolve(raw: RawConfig) -> Result<Self, ConfigError> {
        let retention = retention(&raw)?;
        let age = super::keys::from_raw(&raw);
        let bucket = raw
            .bucket
            .filter(|b| !b.trim().is_empty())
            .ok_or(ConfigError::Missing { key: "BUCKET" })?;
        let credentials = match (raw.s3_key_id.filter(|s| !s.is_empty()), raw.s3_secret) {
            (Some(access_key_id), Some(secret_access_key)) if !secret_access_key.is_empty() => {
                Some(StaticCredentials {
                    access_key_id,
                    secret_access_key,
                })
            }
            (Some(_), _) => return Err(ConfigError::Missing { key: "S3_SECRET" }),
            (None, _) => None,
        };
        let s3_prefix_raw = raw.s3_prefix.unwrap_or_else(|| "z3-backup/".into());
        let dataset = match raw.filesystem.filter(|f| !f.is_empty()) {
            Some(fs) => Some(DatasetName::new(&fs).map_err(|e| ConfigError::Invalid {
                key: "FILESYSTEM",
                value: fs.clone(),
                reason: e.reason,
            })?),
            None => None,
        };
        let transfer = z3_s3::Transfer::from_settings(&z3_s3::TransferSettings {
            concurrency: raw.concurrency.as_deref(),
            chunk_size: raw.chunk_size.as_deref(),
            max_retries: raw.max_retries.as_deref(),
            memory_limit: raw.memory_limit.as_deref(),
        })
        .map_err(|(key, value, reason)| ConfigError::Invalid { key, value, reason })?;
        let s3 = S3Config::from_settings(
            bucket.clone(),
            credentials,
            &S3Settings {
                endpoint: raw.s3_endpoint.as_deref(),
                host: raw.host.as_deref(),
                aws_endpoint_url: raw.aws_endpoint_url.as_deref(),
                regions: [&raw.s3_region, &raw.aws_region, &raw.aws_default_region]
                    .map(Option::as_deref),
                path_style: raw.s3_path_style.as_deref(),
                timeout: raw.s3_timeout.as_deref(),
                sse: [raw.sse.as_deref(), raw.sse_kms_key_id.as_deref()],
                bwlimit: raw.bwlimit.as_deref(),
            },
        )
        .map_err(|(key, value, reason)| ConfigError::Invalid { key, value, reason })?;
        Ok(Self {
            bucket,
            layout: KeyLayout::new(&s3_prefix_raw),
            s3_prefix_raw,
            dataset,
            snapshot_prefix: raw
                .snapshot_prefix
                .unwrap_or_else(|| "zfs-auto-snap:daily".into()),
            compressor: raw.compressor.unwrap_or_else(|| DEFAULT_COMPRESSOR.into()),
            compressors: Compressors::builtin(),
            age,
            gpg_recipient: raw.gpg_recipient.unwrap_or_else(|| "z3_backup".into()),
            transfer,
            storage_class: raw.s3_storage_class.unwrap_or_else(|| "STANDARD_IA".into()),
            s3,
            zfs_command: raw.zfs_command.filter(|z| !z.is_empty()).map(PathBuf::from),
            retention,
            rebase: RebaseRule::from_settings(raw.max_chain.as_deref(), raw.full_every.as_deref())
                .map_err(|e| ConfigError::Rule(e.to_string()))?,
            send_flags: z3_engine::SendFlagChoice::from_setting(
                raw.send_flags.as_deref().unwrap_or_default(),
            )?,
        })
    }

    /// The dataset, or the usage error telling how to give one.
    ///
    /// # Errors
    /// [`ConfigError::Missing`] for `FILESYSTEM`.
    pub fn require_dataset(&self) -> Result<&DatasetName, ConfigError> {
        self.dataset
            .as_ref()
            .ok_or(ConfigError::Missing { key: "FILESYSTEM" })
    }
}

/// `PRESERVE`, `NAME_FORMAT`, `TIME_ZONE` (a zone name from the system's tz database, a POSIX
/// TZ string, or `UTC`, the default) and `WEEK_START` (default Monday).
fn retention(raw: &RawConfig) -> Result<Option<Retention>, ConfigError> {
    let zone = match raw
        .time_zone
        .as_deref()
        .map(str::trim)
        .filter(|z| !z.is_empty())
    {
        Some(zone) => Some(
            jiff::tz::TimeZone::get(zone)
                .or_else(|_| jiff::tz::TimeZone::posix(zone))
                .map_err(|_| ConfigError::Invalid {
                    key: "TIME_ZONE",
                    value: zone.to_owned(),
                    reason: "not a time zone name (e.g. Europe/Berlin) or POSIX TZ string".into(),
                })?,
        ),
        None => None,
    };
    let (preserve, format, week) = (&raw.preserve, &raw.name_format, &raw.week_start);
    Ok(Retention::from_settings(
        preserve.as_deref(),
        format.as_deref(),
        zone,
        [week.as_deref(), raw.object_lock.as_deref()],
        [
            &raw.storage_class_yearly,
            &raw.storage_class_monthly,
            &raw.storage_class_weekly,
            &raw.storage_class_daily,
            &raw.storage_class_hourly,
        ]
        .map(Option::as_deref),
    )?)
}

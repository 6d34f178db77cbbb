//! Configuration: built-in defaults < `/etc/z3_backup/z3.conf` `[main]` < environment < `[fs:<dataset>]` < flags.
//!
//! This reproduces the original z3's sources and precedence (docs/compatibility.md, "Configuration and
//! precedence"), with figment doing the layering:
//! - the INI file's keys are case-insensitive; environment variables are read only by their exact upper-case names;
//! - the `[fs:<dataset>]` section overrides only `SNAPSHOT_PREFIX` and `COMPRESSOR`, and it beats the environment,
//!   exactly as the original does (its README claims otherwise);
//! - `BUCKET`, `S3_KEY_ID` and `S3_SECRET` never come from flags, so secrets stay out of `ps` output.
//!
//! Raw values are plain strings; [`Settings::resolve`] turns them into typed settings with errors that name the key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use figment::providers::Serialized;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};
use z3_codec::{AgeIdentities, AgeRecipients, Compressors, CustomCompressor, SecretString};
use z3_core::{DatasetName, KeyLayout};
use z3_s3::{RetryConfig, S3Config, StaticCredentials};
use zeroize::Zeroizing;

/// The system-wide configuration file of the original z3.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/z3_backup/z3.conf";

/// Every key z3 reads, by its upper-case name (environment variable and INI key).
pub const KEYS: &[&str] = &[
    "BUCKET",
    "S3_KEY_ID",
    "S3_SECRET",
    "S3_PREFIX",
    "FILESYSTEM",
    "SNAPSHOT_PREFIX",
    "COMPRESSOR",
    "GPG_RECIPIENT",
    "CONCURRENCY",
    "CHUNK_SIZE",
    "MAX_RETRIES",
    "S3_TIMEOUT",
    "S3_STORAGE_CLASS",
    "HOST",
    "S3_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "S3_REGION",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "S3_PATH_STYLE",
    "ZFS_COMMAND",
    "AGE_RECIPIENTS",
    "AGE_RECIPIENTS_FILE",
    "AGE_IDENTITY_FILE",
    "AGE_PASSPHRASE_FILE",
];

/// The compressor of new backups unless configured: in-process zstd at level 3, chosen on
/// `cargo xtask bench codecs` (docs/codecs.md). `COMPRESSOR=pigz1` writes what the original z3
/// can restore.
pub const DEFAULT_COMPRESSOR: &str = "zstd";

/// Keys a `[fs:<dataset>]` section may override (docs/compatibility.md, "Configuration and precedence").
const SECTION_KEYS: &[&str] = &["SNAPSHOT_PREFIX", "COMPRESSOR"];

/// A configuration problem: always a usage error (exit code 2), naming the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read or parsed.
    #[error("cannot read config file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong (with the line, when the parser knows it).
        message: String,
    },
    /// A required key is unset.
    #[error(
        "{key} is not set (set it in the environment or in the [main] section of {DEFAULT_CONFIG_PATH})"
    )]
    Missing {
        /// The key.
        key: &'static str,
    },
    /// A key has a value that does not parse.
    #[error("invalid {key} '{value}': {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// The offending value.
        value: String,
        /// Why it is wrong.
        reason: String,
    },
    /// Figment failed to merge the layers.
    #[error("invalid configuration: {0}")]
    Figment(String),
}

/// Raw, unvalidated values by lower-case key, after layering.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct RawConfig {
    /// `BUCKET`.
    pub bucket: Option<String>,
    /// `S3_KEY_ID`.
    pub s3_key_id: Option<String>,
    /// `S3_SECRET`.
    pub s3_secret: Option<String>,
    /// `S3_PREFIX`.
    pub s3_prefix: Option<String>,
    /// `FILESYSTEM`.
    pub filesystem: Option<String>,
    /// `SNAPSHOT_PREFIX`.
    pub snapshot_prefix: Option<String>,
    /// `COMPRESSOR`.
    pub compressor: Option<String>,
    /// `GPG_RECIPIENT`.
    pub gpg_recipient: Option<String>,
    /// `CONCURRENCY`.
    pub concurrency: Option<String>,
    /// `CHUNK_SIZE`.
    pub chunk_size: Option<String>,
    /// `MAX_RETRIES`.
    pub max_retries: Option<String>,
    /// `S3_TIMEOUT`: seconds allowed for one attempt of a small S3 request.
    pub s3_timeout: Option<String>,
    /// `S3_STORAGE_CLASS`.
    pub s3_storage_class: Option<String>,
    /// `HOST`.
    pub host: Option<String>,
    /// `S3_ENDPOINT`.
    pub s3_endpoint: Option<String>,
    /// `AWS_ENDPOINT_URL`.
    pub aws_endpoint_url: Option<String>,
    /// `S3_REGION`.
    pub s3_region: Option<String>,
    /// `AWS_REGION`.
    pub aws_region: Option<String>,
    /// `AWS_DEFAULT_REGION`.
    pub aws_default_region: Option<String>,
    /// `S3_PATH_STYLE`.
    pub s3_path_style: Option<String>,
    /// `ZFS_COMMAND`: the zfs program (default `zfs` on PATH).
    pub zfs_command: Option<String>,
    /// `AGE_RECIPIENTS`: age public keys new backups are encrypted to.
    pub age_recipients: Option<String>,
    /// `AGE_RECIPIENTS_FILE`: a file of age public keys, one per line.
    pub age_recipients_file: Option<String>,
    /// `AGE_IDENTITY_FILE`: age secret keys for restores.
    pub age_identity_file: Option<String>,
    /// `AGE_PASSPHRASE_FILE`: a file whose first line is the age passphrase.
    pub age_passphrase_file: Option<String>,
}

/// Values given as flags; they win over every other source.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FlagOverrides {
    /// `--s3-prefix`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_prefix: Option<String>,
    /// `--dataset` / `--filesystem`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<String>,
    /// `--snapshot-prefix`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_prefix: Option<String>,
    /// `--compressor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compressor: Option<String>,
    /// `--gpg-recipient`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpg_recipient: Option<String>,
    /// `--endpoint`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    /// `--age-recipient` (repeatable; joined with spaces).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_recipients: Option<String>,
    /// `--age-recipients-file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_recipients_file: Option<String>,
    /// `--age-identity`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_identity_file: Option<String>,
    /// `--age-passphrase-file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_passphrase_file: Option<String>,
}

/// The built-in defaults: the original's `z3/z3.conf` plus its argparse fallbacks (docs/compatibility.md,
/// "Configuration and precedence", items 5 and 6).
fn defaults() -> Dict {
    [
        ("concurrency", "32"),
        ("chunk_size", "256M"),
        ("max_retries", "3"),
        ("compressor", DEFAULT_COMPRESSOR),
        ("s3_storage_class", "STANDARD_IA"),
        ("snapshot_prefix", "zfs-auto-snap:daily"),
        ("s3_prefix", "z3-backup/"),
        ("gpg_recipient", "z3_backup"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Value::from(v)))
    .collect()
}

/// A parsed INI file: section name (lower-case) to upper-cased key to value.
#[derive(Debug, Clone, Default)]
pub struct IniFile {
    path: Option<PathBuf>,
    sections: BTreeMap<String, BTreeMap<String, String>>,
}

impl IniFile {
    /// Reads `path`. A missing file is an error only when `required` (it was named explicitly).
    ///
    /// # Errors
    /// [`ConfigError::File`] when the file cannot be read or is not valid INI.
    pub fn load(path: &Path, required: bool) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Self::default());
            }
            Err(err) => {
                return Err(ConfigError::File {
                    path: path.to_owned(),
                    message: err.to_string(),
                });
            }
        };
        Self::parse(&text, Some(path))
    }

    /// Parses INI text. Keys are case-insensitive (stored upper-case), section names keep their case
    /// except for the `fs:` tag, as in Python's configparser.
    ///
    /// # Errors
    /// [`ConfigError::File`] naming the line that does not parse.
    pub fn parse(text: &str, path: Option<&Path>) -> Result<Self, ConfigError> {
        let ini = ini::Ini::load_from_str_opt(
            text,
            ini::ParseOption {
                enabled_quote: false,
                enabled_escape: false,
                enabled_indented_mutiline_value: true,
                enabled_preserve_key_leading_whitespace: false,
            },
        )
        .map_err(|err| ConfigError::File {
            path: path.map_or_else(|| PathBuf::from("<config>"), Path::to_owned),
            message: err.to_string(),
        })?;
        let mut sections = BTreeMap::new();
        for (name, props) in &ini {
            let Some(name) = name else { continue };
            let entry: &mut BTreeMap<String, String> =
                sections.entry(name.trim().to_owned()).or_default();
            for (key, value) in props {
                entry.insert(key.trim().to_ascii_uppercase(), value.trim().to_owned());
            }
        }
        Ok(Self {
            path: path.map(Path::to_owned),
            sections,
        })
    }

    /// The `[compressor:NAME]` sections: operator-defined compressors with `COMPRESS` and
    /// `DECOMPRESS` commands, split into argument vectors as a shell would split them (quotes
    /// work), but never run through a shell.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the section that is incomplete, cannot be split or
    /// reuses a built-in name.
    pub fn compressors(&self) -> Result<Compressors, ConfigError> {
        let mut compressors = Compressors::builtin();
        for (section, props) in &self.sections {
            let Some(name) = section
                .split_once(':')
                .filter(|(tag, _)| tag.trim().eq_ignore_ascii_case("compressor"))
                .map(|(_, name)| name.trim())
            else {
                continue;
            };
            let invalid = |reason: String| ConfigError::Invalid {
                key: "[compressor:NAME]",
                value: section.clone(),
                reason,
            };
            let command = |key: &str| -> Result<Vec<String>, ConfigError> {
                let text = props.get(key).map(String::as_str).unwrap_or_default();
                shell_words::split(text)
                    .map_err(|e| invalid(format!("cannot split {key} = {text}: {e}")))
            };
            for key in props.keys() {
                if key != "COMPRESS" && key != "DECOMPRESS" {
                    return Err(invalid(format!(
                        "unknown key {key} (expected COMPRESS and DECOMPRESS)"
                    )));
                }
            }
            let custom = CustomCompressor::new(name, command("COMPRESS")?, command("DECOMPRESS")?)
                .map_err(|e| invalid(e.to_string()))?;
            compressors.add(custom);
        }
        Ok(compressors)
    }

    /// A figment provider for one section, limited to `keys` when given.
    fn section(&self, name: &str, keys: Option<&'static [&'static str]>) -> IniSection {
        let values = self
            .sections
            .get(name)
            .map(|props| {
                props
                    .iter()
                    .filter(|(k, _)| {
                        KEYS.contains(&k.as_str())
                            && keys.is_none_or(|keys| keys.contains(&k.as_str()))
                    })
                    .map(|(k, v)| (k.to_ascii_lowercase(), Value::from(v.clone())))
                    .collect()
            })
            .unwrap_or_default();
        IniSection {
            label: match &self.path {
                Some(path) => format!("{} [{name}]", path.display()),
                None => format!("[{name}]"),
            },
            values,
        }
    }
}

/// One INI section as a figment provider.
#[derive(Debug)]
struct IniSection {
    label: String,
    values: Dict,
}

impl Provider for IniSection {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.label.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.values.clone()))
    }
}

/// The environment, read only by the exact upper-case names in [`KEYS`] (the original is case-sensitive).
#[derive(Debug)]
struct UpperEnv {
    values: Dict,
}

impl UpperEnv {
    fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let values = vars
            .into_iter()
            .filter(|(k, _)| KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.to_ascii_lowercase(), Value::from(v)))
            .collect();
        Self { values }
    }
}

impl Provider for UpperEnv {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable(s)")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.values.clone()))
    }
}

/// Layers every source in the original's order and returns the raw values.
///
/// `env` is the process environment (a parameter so tests can pass their own).
///
/// # Errors
/// [`ConfigError::Figment`] if the layers cannot be merged (should not happen with string values).
pub fn layer(
    file: &IniFile,
    env: impl IntoIterator<Item = (String, String)>,
    flags: &FlagOverrides,
) -> Result<RawConfig, ConfigError> {
    let env = UpperEnv::from_vars(env);
    let base = Figment::new()
        .merge(Serialized::defaults(defaults()))
        .merge(file.section("main", None))
        .merge(env);
    // The section to consult depends on the effective dataset, which flags may change.
    let base_raw: RawConfig = base
        .extract()
        .map_err(|e| ConfigError::Figment(e.to_string()))?;
    let filesystem = flags.filesystem.clone().or(base_raw.filesystem);
    let mut layered = base;
    if let Some(fs) = &filesystem {
        layered = layered.merge(file.section(&format!("fs:{fs}"), Some(SECTION_KEYS)));
    }
    layered
        .merge(Serialized::defaults(flags))
        .extract()
        .map_err(|e| ConfigError::Figment(e.to_string()))
}

/// Resolved, typed settings shared by every command.
#[derive(Clone)]
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
    /// Parallel part transfers.
    pub concurrency: usize,
    /// Part size when there is no estimate.
    pub chunk_size: u64,
    /// Retry policy for parts.
    pub retry: RetryConfig,
    /// Storage class of new objects.
    pub storage_class: String,
    /// How to reach S3.
    pub s3: S3Config,
    /// The zfs program.
    pub zfs_command: Option<PathBuf>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // S3Config's own Debug redacts the secret.
        f.debug_struct("Settings")
            .field("bucket", &self.bucket)
            .field("s3_prefix_raw", &self.s3_prefix_raw)
            .field("dataset", &self.dataset)
            .field("snapshot_prefix", &self.snapshot_prefix)
            .field("compressor", &self.compressor)
            .field("concurrency", &self.concurrency)
            .field("chunk_size", &self.chunk_size)
            .field("storage_class", &self.storage_class)
            .field("s3", &self.s3)
            .finish_non_exhaustive()
    }
}

/// The most parts or ranges in flight: `CONCURRENCY`, `pput --concurrency`, `z3_get --concurrency`.
pub const MAX_CONCURRENCY: usize = 1024;
/// The longest `S3_TIMEOUT`: one day, in seconds.
pub const MAX_S3_TIMEOUT_SECS: u64 = 86_400;

fn parse_number<T: std::str::FromStr>(key: &'static str, value: &str) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|e: T::Err| ConfigError::Invalid {
            key,
            value: value.to_owned(),
            reason: e.to_string(),
        })
}

/// `CHUNK_SIZE`: a size of at most 5G (S3's largest part).
fn parse_chunk_size(text: &str) -> Result<u64, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        key: "CHUNK_SIZE",
        value: text.to_owned(),
        reason,
    };
    let size = z3_s3::parse_size(text).map_err(|e| invalid(e.to_string()))?;
    if size > z3_s3::MAX_PART_SIZE {
        return Err(invalid("must be at most 5G (S3's largest part)".into()));
    }
    Ok(size)
}

/// `S3_TIMEOUT`: whole seconds, at least 1; unset keeps [`S3Config`]'s default.
fn parse_timeout(value: Option<&str>) -> Result<Option<std::time::Duration>, ConfigError> {
    let Some(text) = value else {
        return Ok(S3Config::default().operation_timeout);
    };
    let seconds: u64 = parse_number("S3_TIMEOUT", text)?;
    if seconds == 0 || seconds > MAX_S3_TIMEOUT_SECS {
        return Err(ConfigError::Invalid {
            key: "S3_TIMEOUT",
            value: text.to_owned(),
            reason: format!("must be between 1 and {MAX_S3_TIMEOUT_SECS} (seconds)"),
        });
    }
    Ok(Some(std::time::Duration::from_secs(seconds)))
}

fn parse_bool(key: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Invalid {
            key,
            value: value.to_owned(),
            reason: "expected true or false".into(),
        }),
    }
}

/// Turns the original's `HOST` (a bare host name, maybe with a port) or a URL into an endpoint URL.
fn endpoint_from_host(host: &str) -> String {
    if host.contains("://") {
        host.to_owned()
    } else {
        format!("https://{host}")
    }
}

/// The age settings, as configured; keys and files are read only by the command that needs them
/// (a backup host needs no secret key, a restore host no recipients).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgeSettings {
    /// `AGE_RECIPIENTS` / `--age-recipient`: public keys.
    pub recipients: Vec<String>,
    /// `AGE_RECIPIENTS_FILE` / `--age-recipients-file`.
    pub recipients_file: Option<PathBuf>,
    /// `AGE_IDENTITY_FILE` / `--age-identity`.
    pub identity_file: Option<PathBuf>,
    /// `AGE_PASSPHRASE_FILE` / `--age-passphrase-file`.
    pub passphrase_file: Option<PathBuf>,
}

impl AgeSettings {
    fn from_raw(raw: &RawConfig) -> Self {
        Self {
            recipients: raw
                .age_recipients
                .as_deref()
                .map(|list| {
                    list.split(|c: char| c == ',' || c.is_whitespace())
                        .filter(|k| !k.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            recipients_file: non_empty_path(raw.age_recipients_file.as_deref()),
            identity_file: non_empty_path(raw.age_identity_file.as_deref()),
            passphrase_file: non_empty_path(raw.age_passphrase_file.as_deref()),
        }
    }

    /// The configured recipients for a message, with anything that is (or looks like) an age
    /// secret key replaced: a secret key given where a public key belongs is never echoed.
    fn shown_recipients(&self) -> String {
        self.recipients
            .iter()
            .map(|key| {
                if z3_codec::is_age_secret_key(key) {
                    "AGE-SECRET-KEY-1… (not shown)"
                } else {
                    key.as_str()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Who new backups are encrypted to; `None` when nothing is configured (no encryption).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key whose value or file is unusable, or when both
    /// public keys and a passphrase are set.
    pub fn recipients(&self) -> Result<Option<AgeRecipients>, ConfigError> {
        let invalid =
            |key: &'static str, value: String, err: z3_codec::Error| ConfigError::Invalid {
                key,
                value,
                reason: err.to_string(),
            };
        let mut keys = None;
        if !self.recipients.is_empty() {
            keys = Some(
                AgeRecipients::parse(&self.recipients)
                    .map_err(|e| invalid("AGE_RECIPIENTS", self.shown_recipients(), e))?,
            );
        }
        if let Some(path) = &self.recipients_file {
            let from_file = AgeRecipients::from_file(path)
                .map_err(|e| invalid("AGE_RECIPIENTS_FILE", path.display().to_string(), e))?;
            keys = Some(match keys {
                Some(keys) => keys
                    .merge(from_file)
                    .map_err(|e| invalid("AGE_RECIPIENTS_FILE", path.display().to_string(), e))?,
                None => from_file,
            });
        }
        match (&self.passphrase_file, keys) {
            (Some(path), Some(_)) => Err(ConfigError::Invalid {
                key: "AGE_PASSPHRASE_FILE",
                value: path.display().to_string(),
                reason: "encrypt either to public keys (AGE_RECIPIENTS, AGE_RECIPIENTS_FILE) or to a passphrase, not both".into(),
            }),
            (Some(path), None) => Ok(Some(AgeRecipients::passphrase(read_passphrase(path)?))),
            (None, keys) => Ok(keys),
        }
    }

    /// What restores decrypt with: the identity file and/or the passphrase; `None` when neither
    /// is configured.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key whose file is unusable.
    pub fn identities(&self) -> Result<Option<AgeIdentities>, ConfigError> {
        let from_file = match &self.identity_file {
            Some(path) => Some(
                AgeIdentities::from_files(std::slice::from_ref(path)).map_err(|e| {
                    ConfigError::Invalid {
                        key: "AGE_IDENTITY_FILE",
                        value: path.display().to_string(),
                        reason: e.to_string(),
                    }
                })?,
            ),
            None => None,
        };
        let from_passphrase = match &self.passphrase_file {
            Some(path) => Some(AgeIdentities::passphrase(read_passphrase(path)?)),
            None => None,
        };
        Ok(match (from_file, from_passphrase) {
            (Some(file), Some(passphrase)) => Some(file.merge(passphrase)),
            (file, passphrase) => file.or(passphrase),
        })
    }
}

/// Restores and verifies read the keys through this, only when an object is encrypted; the
/// error stays a [`ConfigError`] (a usage error naming the key).
impl z3_engine::KeySource for AgeSettings {
    fn identities(&self) -> Result<Option<AgeIdentities>, z3_engine::BoxError> {
        AgeSettings::identities(self).map_err(Into::into)
    }
}

/// The first line of a passphrase file (without its line end).
fn read_passphrase(path: &Path) -> Result<SecretString, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        key: "AGE_PASSPHRASE_FILE",
        value: path.display().to_string(),
        reason,
    };
    // The whole file is wiped when dropped; the passphrase lives on only in the SecretString,
    // which zeroizes it when the last holder drops it.
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?);
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(invalid("the file's first line is empty".into()));
    }
    Ok(SecretString::from(line.to_owned()))
}

fn non_empty_path(value: Option<&str>) -> Option<PathBuf> {
    value.filter(|v| !v.trim().is_empty()).map(PathBuf::from)
}

impl Settings {
    /// Validates raw values into settings.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first key that is missing or invalid; a dataset name that ZFS would refuse.
    pub fn resolve(raw: RawConfig) -> Result<Self, ConfigError> {
        let age = AgeSettings::from_raw(&raw);
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
        let concurrency: usize =
            parse_number("CONCURRENCY", raw.concurrency.as_deref().unwrap_or("32"))?;
        if concurrency == 0 || concurrency > MAX_CONCURRENCY {
            return Err(ConfigError::Invalid {
                key: "CONCURRENCY",
                value: concurrency.to_string(),
                reason: format!("must be between 1 and {MAX_CONCURRENCY}"),
            });
        }
        let chunk_text = raw.chunk_size.unwrap_or_else(|| "256M".into());
        let chunk_size = parse_chunk_size(&chunk_text)?;
        let max_attempts: u32 =
            parse_number("MAX_RETRIES", raw.max_retries.as_deref().unwrap_or("3"))?;
        if max_attempts == 0 {
            return Err(ConfigError::Invalid {
                key: "MAX_RETRIES",
                value: "0".into(),
                reason: "must be at least 1 (it counts attempts)".into(),
            });
        }
        let operation_timeout = parse_timeout(raw.s3_timeout.as_deref())?;
        let endpoint = raw
            .s3_endpoint
            .or_else(|| raw.host.as_deref().map(endpoint_from_host))
            .or(raw.aws_endpoint_url)
            .filter(|e| !e.is_empty());
        let path_style = match raw.s3_path_style {
            Some(value) => parse_bool("S3_PATH_STYLE", &value)?,
            // S3-compatible servers reached by IP or custom host name rarely do virtual-host buckets.
            None => endpoint.is_some(),
        };
        // With a custom endpoint the region is only a signing scope: never ask the instance
        // metadata service (a network call outside the endpoint) for it.
        let region = [raw.s3_region, raw.aws_region, raw.aws_default_region]
            .into_iter()
            .flatten()
            .find(|r| !r.is_empty())
            .or_else(|| endpoint.is_some().then(|| "us-east-1".to_owned()));
        let s3 = S3Config {
            bucket: bucket.clone(),
            region,
            endpoint,
            force_path_style: path_style,
            credentials,
            operation_timeout,
            ..S3Config::default()
        };
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
            concurrency,
            chunk_size,
            retry: RetryConfig {
                max_attempts,
                ..RetryConfig::default()
            },
            storage_class: raw.s3_storage_class.unwrap_or_else(|| "STANDARD_IA".into()),
            s3,
            zfs_command: raw.zfs_command.filter(|z| !z.is_empty()).map(PathBuf::from),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const CONF: &str = "[main]\nBUCKET=from-file\nFILESYSTEM=pool/fs\nsnapshot_prefix=file-prefix\nCOMPRESSOR=pigz4\nS3_PREFIX=file/\n\n[fs:pool/fs]\nSNAPSHOT_PREFIX=section-prefix\nCONCURRENCY=2\n\n[fs:tank/ham]\nSNAPSHOT_PREFIX=weekly-non-spam\nCOMPRESSOR=none\n";

    #[test]
    fn defaults_apply_without_any_source() {
        let raw = layer(&IniFile::default(), env(&[]), &FlagOverrides::default()).unwrap();
        assert_eq!(raw.snapshot_prefix.as_deref(), Some("zfs-auto-snap:daily"));
        // z3's default is zstd (docs/codecs.md); the original's was pigz1.
        assert_eq!(raw.compressor.as_deref(), Some("zstd"));
        assert_eq!(raw.s3_prefix.as_deref(), Some("z3-backup/"));
        assert_eq!(raw.concurrency.as_deref(), Some("32"));
        assert_eq!(raw.s3_storage_class.as_deref(), Some("STANDARD_IA"));
        assert!(raw.bucket.is_none());
    }

    #[test]
    fn section_beats_environment_which_beats_main() {
        // docs/compatibility.md, "Configuration and precedence": with SNAPSHOT_PREFIX exported and
        // [fs:pool/fs] setting it, the section wins.
        let file = IniFile::parse(CONF, None).unwrap();
        let raw = layer(
            &file,
            env(&[("SNAPSHOT_PREFIX", "env-prefix"), ("BUCKET", "from-env")]),
            &FlagOverrides::default(),
        )
        .unwrap();
        assert_eq!(raw.snapshot_prefix.as_deref(), Some("section-prefix"));
        assert_eq!(raw.bucket.as_deref(), Some("from-env"));
        // Other keys of a section are ignored, as in the original.
        assert_eq!(raw.concurrency.as_deref(), Some("32"));
        // COMPRESSOR comes from [main] since the section does not set it.
        assert_eq!(raw.compressor.as_deref(), Some("pigz4"));
    }

    #[test]
    fn flags_beat_everything_and_pick_the_section() {
        let file = IniFile::parse(CONF, None).unwrap();
        let flags = FlagOverrides {
            filesystem: Some("tank/ham".into()),
            ..FlagOverrides::default()
        };
        let raw = layer(&file, env(&[("FILESYSTEM", "pool/fs")]), &flags).unwrap();
        assert_eq!(raw.filesystem.as_deref(), Some("tank/ham"));
        assert_eq!(raw.snapshot_prefix.as_deref(), Some("weekly-non-spam"));
        assert_eq!(raw.compressor.as_deref(), Some("none"));

        let flags = FlagOverrides {
            snapshot_prefix: Some("cli".into()),
            compressor: Some("pigz1".into()),
            ..FlagOverrides::default()
        };
        let raw = layer(&file, env(&[]), &flags).unwrap();
        assert_eq!(raw.snapshot_prefix.as_deref(), Some("cli"));
        assert_eq!(raw.compressor.as_deref(), Some("pigz1"));
    }

    #[test]
    fn environment_names_are_case_sensitive() {
        let raw = layer(
            &IniFile::default(),
            env(&[("bucket", "lower"), ("Bucket", "mixed")]),
            &FlagOverrides::default(),
        )
        .unwrap();
        assert!(raw.bucket.is_none());
    }

    #[test]
    // figment::Error is large; that is the test helper's signature, not ours.
    #[allow(clippy::result_large_err)]
    fn figment_jail_reads_the_process_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("BUCKET", "jailed");
            jail.set_env("CONCURRENCY", "7");
            let raw = layer(
                &IniFile::default(),
                std::env::vars(),
                &FlagOverrides::default(),
            )
            .map_err(|e| e.to_string())?;
            let settings = Settings::resolve(raw).map_err(|e| e.to_string())?;
            assert_eq!(settings.bucket, "jailed");
            assert_eq!(settings.concurrency, 7);
            Ok(())
        });
    }

    #[test]
    fn malformed_file_names_the_file() {
        let err = IniFile::parse("[main\nBUCKET=x\n", Some(Path::new("/etc/z3.conf"))).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read config file /etc/z3.conf:"),
            "{err}"
        );
    }

    #[test]
    fn missing_default_file_is_fine_but_an_explicit_one_is_not() {
        assert!(IniFile::load(Path::new("/nonexistent/z3.conf"), false).is_ok());
        let err = IniFile::load(Path::new("/nonexistent/z3.conf"), true).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/z3.conf"), "{err}");
    }

    fn resolve(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::resolve(layer(
            &IniFile::default(),
            env(pairs),
            &FlagOverrides::default(),
        )?)
    }

    #[test]
    fn resolve_checks_required_and_typed_keys() {
        let err = resolve(&[]).unwrap_err();
        assert!(err.to_string().starts_with("BUCKET is not set"), "{err}");
        let err = resolve(&[("BUCKET", "b"), ("S3_KEY_ID", "AKIA")]).unwrap_err();
        assert!(err.to_string().starts_with("S3_SECRET is not set"), "{err}");
        let err = resolve(&[("BUCKET", "b"), ("CONCURRENCY", "lots")]).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid CONCURRENCY 'lots'"),
            "{err}"
        );
        let err = resolve(&[("BUCKET", "b"), ("CHUNK_SIZE", "1Q")]).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid CHUNK_SIZE '1Q'"),
            "{err}"
        );
        let err = resolve(&[("BUCKET", "b"), ("FILESYSTEM", "pool/bad name!")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid FILESYSTEM 'pool/bad name!': invalid character '!' in name"
        );
    }

    #[test]
    fn endpoint_sources_and_path_style() {
        let s = resolve(&[("BUCKET", "b")]).unwrap();
        assert_eq!(s.s3.endpoint, None);
        assert!(!s.s3.force_path_style);
        let s = resolve(&[("BUCKET", "b"), ("HOST", "s3.wasabisys.com")]).unwrap();
        assert_eq!(s.s3.endpoint.as_deref(), Some("https://s3.wasabisys.com"));
        assert!(s.s3.force_path_style);
        let s = resolve(&[
            ("BUCKET", "b"),
            ("HOST", "ignored.example"),
            ("S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("S3_PATH_STYLE", "false"),
        ])
        .unwrap();
        assert_eq!(s.s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(!s.s3.force_path_style);
        let s = resolve(&[("BUCKET", "b"), ("AWS_ENDPOINT_URL", "http://localhost:1")]).unwrap();
        assert_eq!(s.s3.endpoint.as_deref(), Some("http://localhost:1"));
        assert_eq!(s.s3.region.as_deref(), Some("us-east-1"));
        let s = resolve(&[("BUCKET", "b"), ("AWS_REGION", "eu-west-3")]).unwrap();
        assert_eq!(s.s3.region.as_deref(), Some("eu-west-3"));
        let s = resolve(&[
            ("BUCKET", "b"),
            ("S3_REGION", "eu-central-2"),
            ("AWS_REGION", "x"),
        ])
        .unwrap();
        assert_eq!(s.s3.region.as_deref(), Some("eu-central-2"));
        // Plain AWS without a region: the SDK's chain decides.
        assert_eq!(resolve(&[("BUCKET", "b")]).unwrap().s3.region, None);
    }

    #[test]
    fn s3_timeout_sets_the_attempt_timeout_of_small_requests() {
        use std::time::Duration;
        let s = resolve(&[("BUCKET", "b")]).unwrap();
        assert_eq!(s.s3.operation_timeout, Some(Duration::from_mins(1)));
        let s = resolve(&[("BUCKET", "b"), ("S3_TIMEOUT", "2")]).unwrap();
        assert_eq!(s.s3.operation_timeout, Some(Duration::from_secs(2)));
        let file = IniFile::parse("[main]\nBUCKET=b\ns3_timeout=7\n", None).unwrap();
        let raw = layer(&file, env(&[]), &FlagOverrides::default()).unwrap();
        let s = Settings::resolve(raw).unwrap();
        assert_eq!(s.s3.operation_timeout, Some(Duration::from_secs(7)));
        for bad in ["0", "1.5", "soon"] {
            let err = resolve(&[("BUCKET", "b"), ("S3_TIMEOUT", bad)]).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("invalid S3_TIMEOUT '{bad}'")),
                "{err}"
            );
        }
    }

    #[test]
    fn settings_debug_never_shows_the_secret() {
        let s = resolve(&[
            ("BUCKET", "b"),
            ("S3_KEY_ID", "AKIAEXAMPLE"),
            ("S3_SECRET", "very-secret-value"),
        ])
        .unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("very-secret-value"), "{shown}");
    }

    #[test]
    fn compressor_sections_become_argument_vectors() {
        let ini = IniFile::parse(
            "[main]\nBUCKET=b\n\n[compressor:LZ4]\nCOMPRESS = lz4 -1 -c\ndecompress = lz4 -d -c\n\n\
             [compressor:xz-fast]\nCOMPRESS = /opt/bin/xz -0 \"--memlimit=1 GiB\"\nDECOMPRESS = xz -d\n",
            None,
        )
        .unwrap();
        let compressors = ini.compressors().unwrap();
        let lz4 = compressors.parse("lz4", "").unwrap();
        assert_eq!(lz4.metadata_name(), Some("lz4"));
        let Some(z3_codec::Stage::External(encoder)) = lz4.encoder() else {
            panic!("a program");
        };
        assert_eq!(
            (encoder.program(), encoder.args()),
            ("lz4", &["-1".to_owned(), "-c".to_owned()][..])
        );
        let xz = compressors.parse("XZ-FAST", "").unwrap();
        let Some(z3_codec::Stage::External(encoder)) = xz.encoder() else {
            panic!("a program");
        };
        assert_eq!(encoder.args(), ["-0", "--memlimit=1 GiB"]);
        let decoder = compressors.decoder_for(Some("xz-fast")).unwrap().unwrap();
        assert_eq!(z3_codec::Codec::describe(&decoder), "xz -d");
    }

    #[test]
    fn bad_compressor_sections_are_named() {
        for (text, expect) in [
            ("[compressor:pigz1]\nCOMPRESS=a\nDECOMPRESS=b\n", "built-in"),
            (
                "[compressor:zstd-long]\nCOMPRESS=a\nDECOMPRESS=b\n",
                "reserved",
            ),
            ("[compressor:lz4]\nCOMPRESS=lz4\n", "DECOMPRESS"),
            (
                "[compressor:lz4]\nCOMPRESS=lz4 'open\nDECOMPRESS=x\n",
                "cannot split COMPRESS",
            ),
            (
                "[compressor:a b]\nCOMPRESS=x\nDECOMPRESS=y\n",
                "ASCII letters",
            ),
            (
                "[compressor:lz4]\nCOMPRESS=x\nDECOMPRESS=y\nLEVEL=3\n",
                "unknown key LEVEL",
            ),
        ] {
            let err = IniFile::parse(text, None)
                .unwrap()
                .compressors()
                .unwrap_err();
            let message = err.to_string();
            assert!(message.contains("[compressor:NAME]"), "{message}");
            assert!(message.contains(expect), "{text:?}: {message}");
        }
    }

    #[test]
    fn age_settings_come_from_every_source_and_files_are_read_lazily() {
        let file = IniFile::parse(
            "[main]\nBUCKET=b\nAGE_IDENTITY_FILE=/nonexistent/key.txt\n",
            None,
        )
        .unwrap();
        let key = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
        let raw = layer(
            &file,
            env(&[("AGE_RECIPIENTS", &format!("{key}, {key}"))]),
            &FlagOverrides::default(),
        )
        .unwrap();
        let settings = Settings::resolve(raw).unwrap();
        assert_eq!(settings.age.recipients, [key, key]);
        assert!(settings.age.recipients().unwrap().is_some());
        // The identity file is only read by restores: a backup host needs no secret key.
        let err = settings.age.identities().unwrap_err().to_string();
        assert!(
            err.contains("AGE_IDENTITY_FILE") && err.contains("/nonexistent/key.txt"),
            "{err}"
        );

        let raw = layer(
            &IniFile::default(),
            env(&[("BUCKET", "b"), ("AGE_RECIPIENTS", "age1bogus")]),
            &FlagOverrides::default(),
        )
        .unwrap();
        let err = Settings::resolve(raw)
            .unwrap()
            .age
            .recipients()
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid AGE_RECIPIENTS 'age1bogus'"),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        let pass = dir.path().join("pass");
        std::fs::write(&pass, "s3cret words\nignored\n").unwrap();
        let both = AgeSettings {
            recipients: vec![key.into()],
            passphrase_file: Some(pass.clone()),
            ..AgeSettings::default()
        };
        assert!(
            both.recipients()
                .unwrap_err()
                .to_string()
                .contains("not both")
        );
        let only = AgeSettings {
            passphrase_file: Some(pass),
            ..AgeSettings::default()
        };
        assert_eq!(only.recipients().unwrap().unwrap().describe(), "passphrase");
        assert_eq!(only.identities().unwrap().unwrap().describe(), "passphrase");
        assert!(AgeSettings::default().recipients().unwrap().is_none());
        assert!(AgeSettings::default().identities().unwrap().is_none());
    }

    #[test]
    fn a_secret_key_in_age_recipients_is_refused_and_never_echoed() {
        // A syntactically valid secret key (not one anyone uses).
        let secret = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX";
        let public = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
        let raw = layer(
            &IniFile::default(),
            env(&[
                ("BUCKET", "b"),
                ("AGE_RECIPIENTS", &format!("{public} {secret}")),
            ]),
            &FlagOverrides::default(),
        )
        .unwrap();
        let settings = Settings::resolve(raw).unwrap();
        // Echoed the whole value (the secret key) before.
        let err = settings.age.recipients().unwrap_err().to_string();
        assert!(err.starts_with("invalid AGE_RECIPIENTS"), "{err}");
        assert!(err.contains("is an age secret key"), "{err}");
        assert!(!err.contains(&secret[15..]), "{err}");
        assert!(err.contains(public), "{err}");
    }

    #[test]
    fn no_child_process_inherits_a_secret_setting() {
        // z3-zfs (zfs, ssh, sudo) and z3-codec (compressors, gpg) remove the same names.
        assert_eq!(z3_zfs::CHILD_ENV_REMOVED, z3_codec::CHILD_ENV_REMOVED);
        for key in KEYS {
            let secret =
                key.contains("SECRET") || key.contains("KEY_ID") || key.starts_with("AGE_");
            if secret {
                assert!(
                    z3_zfs::CHILD_ENV_REMOVED.contains(key),
                    "{key} reaches children"
                );
            }
        }
    }
}

//! Where raw configuration values come from: built-in defaults, the INI file (its `[main]` and
//! `[fs:<dataset>]` sections), the upper-case environment and flags, layered with figment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::Serialized;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};
use z3_codec::{Compressors, CustomCompressor};

use super::{ConfigError, DEFAULT_COMPRESSOR, DEFAULT_CONFIG_PATH, KEYS, SECTION_KEYS};

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
    /// `MEMORY_LIMIT`: the most part data held at once.
    pub memory_limit: Option<String>,
    /// `MAX_RETRIES`.
    pub max_retries: Option<String>,
    /// `S3_TIMEOUT`: seconds allowed for one attempt of a small S3 request.
    pub s3_timeout: Option<String>,
    /// `BWLIMIT`: bytes per second to and from S3.
    pub bwlimit: Option<String>,
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
    /// `SEND_FLAGS`: `none`, `auto` or letters of `w c L e` (new chains only).
    pub send_flags: Option<String>,
    /// `AGE_RECIPIENTS`: age public keys new backups are encrypted to.
    pub age_recipients: Option<String>,
    /// `AGE_RECIPIENTS_FILE`: a file of age public keys, one per line.
    pub age_recipients_file: Option<String>,
    /// `AGE_IDENTITY_FILE`: age secret keys for restores.
    pub age_identity_file: Option<String>,
    /// `AGE_PASSPHRASE_FILE`: a file whose first line is the age passphrase.
    pub age_passphrase_file: Option<String>,
    /// `SSE`: server-side encryption of every object written, `AES256` or `aws:kms`.
    pub sse: Option<String>,
    /// `SSE_KMS_KEY_ID`: the KMS key for `SSE=aws:kms`.
    pub sse_kms_key_id: Option<String>,
    /// `PRESERVE`: the retention policy, e.g. `1y 12m 8w 14d`.
    pub preserve: Option<String>,
    /// `NAME_FORMAT`: how snapshot names carry their time (`zfs-auto-snap`, `sanoid`, a pattern).
    pub name_format: Option<String>,
    /// `TIME_ZONE`: the zone whose days the policy counts (default UTC).
    pub time_zone: Option<String>,
    /// `WEEK_START`: the first day of a week (default Monday).
    pub week_start: Option<String>,
    /// `MAX_CHAIN`: links in a linear chain before a new full (default 500, `none`).
    pub max_chain: Option<String>,
    /// `FULL_EVERY`: a new full once a linear chain's full is this old (`30d`; default none).
    pub full_every: Option<String>,
    /// `OBJECT_LOCK`: `governance` or `compliance` retention on every backup (needs `PRESERVE`).
    pub object_lock: Option<String>,
    /// `STORAGE_CLASS_YEARLY`: the class of a year's first backup (needs `PRESERVE`).
    pub storage_class_yearly: Option<String>,
    /// `STORAGE_CLASS_MONTHLY`.
    pub storage_class_monthly: Option<String>,
    /// `STORAGE_CLASS_WEEKLY`.
    pub storage_class_weekly: Option<String>,
    /// `STORAGE_CLASS_DAILY`.
    pub storage_class_daily: Option<String>,
    /// `STORAGE_CLASS_HOURLY`.
    pub storage_class_hourly: Option<String>,
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
    /// `--bwlimit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bwlimit: Option<String>,
}

/// The built-in defaults: the original's `z3/z3.conf` plus its argparse fallbacks (docs/compatibility.md,
/// "Configuration and precedence", items 5 and 6).
pub(super) fn defaults() -> Dict {
    [
        ("concurrency", "32"),
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
                let message = match err.kind() {
                    std::io::ErrorKind::NotFound => format!(
                        "no such file: fix the path given with --config or Z3_CONFIG, or unset both to use {DEFAULT_CONFIG_PATH}"
                    ),
                    _ => err.to_string(),
                };
                let path = path.to_owned();
                return Err(ConfigError::File { path, message });
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
            let keys = props.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            let custom = CustomCompressor::from_section(name, keys).map_err(|reason| {
                ConfigError::Invalid {
                    key: "[compressor:NAME]",
                    value: section.clone(),
                    reason,
                }
            })?;
            compressors.add(custom);
        }
        Ok(compressors)
    }

    /// A figment provider for one section, limited to `keys` when given.
    /// The datasets that have an `[fs:<dataset>]` section, sorted (`z3 backup --all`).
    #[must_use]
    pub fn datasets(&self) -> Vec<String> {
        self.sections
            .keys()
            .filter_map(|name| name.strip_prefix("fs:"))
            .map(|name| name.trim().to_owned())
            .collect()
    }

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

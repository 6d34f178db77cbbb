//! The age keys, as configured: [`z3_codec::AgeKeys`] (recipients for backups, identities and
//! passphrases for restores, each read only by the command that needs it) from the raw values.

use std::path::PathBuf;

use super::ConfigError;
use super::sources::RawConfig;

/// The age settings (`AGE_RECIPIENTS`, `AGE_RECIPIENTS_FILE`, `AGE_IDENTITY_FILE`,
/// `AGE_PASSPHRASE_FILE`); z3-engine reads its identities as a `KeySource`.
pub type AgeSettings = z3_codec::AgeKeys;

/// The age settings of `raw`: public keys split at commas and whitespace, empty paths unset.
pub(super) fn from_raw(raw: &RawConfig) -> AgeSettings {
    AgeSettings {
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

impl From<z3_codec::AgeKeyError> for ConfigError {
    fn from(err: z3_codec::AgeKeyError) -> Self {
        ConfigError::Invalid {
            key: err.setting,
            value: err.value,
            reason: err.reason,
        }
    }
}

impl From<z3_engine::SettingError> for ConfigError {
    fn from(err: z3_engine::SettingError) -> Self {
        ConfigError::Invalid {
            key: err.setting,
            value: err.value,
            reason: err.reason,
        }
    }
}

fn non_empty_path(value: Option<&str>) -> Option<PathBuf> {
    value.filter(|v| !v.trim().is_empty()).map(PathBuf::from)
}

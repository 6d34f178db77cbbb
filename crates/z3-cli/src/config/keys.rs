//! The age keys, as configured: [`z3_codec::AgeKeys`] (recipients for backups, identities and
//! passphrases for restores, each read only by the command that needs it) from the raw values.

use super::ConfigError;
use super::sources::RawConfig;

/// The age settings (`AGE_RECIPIENTS`, `AGE_RECIPIENTS_FILE`, `AGE_IDENTITY_FILE`,
/// `AGE_PASSPHRASE_FILE`); z3-engine reads its identities as a `KeySource`.
pub type AgeSettings = z3_codec::AgeKeys;

/// The age settings of `raw` ([`z3_codec::AgeKeys::from_settings`]).
pub(super) fn from_raw(raw: &RawConfig) -> AgeSettings {
    AgeSettings::from_settings(
        raw.age_recipients.as_deref(),
        raw.age_recipients_file.as_deref(),
        raw.age_identity_file.as_deref(),
        raw.age_passphrase_file.as_deref(),
    )
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

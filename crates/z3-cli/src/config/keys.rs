//! The age keys, as configured: recipients for backups, identities and passphrases for restores,
//! each read only by the command that needs it.

use std::path::{Path, PathBuf};

use z3_codec::{AgeIdentities, AgeRecipients, SecretString};
use zeroize::Zeroizing;

use super::ConfigError;
use super::sources::RawConfig;

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
    pub(super) fn from_raw(raw: &RawConfig) -> Self {
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

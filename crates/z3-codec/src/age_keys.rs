//! [`AgeKeys`]: where age keys come from (public keys, key files, a passphrase file), read only
//! by the operation that needs them: a backup host needs no secret key, a restore host no
//! recipients. Errors name the setting at fault ([`AgeKeyError`]) and never echo a secret.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::{AgeIdentities, AgeRecipients, SecretString, is_age_secret_key};

/// The age key settings, as configured (z3's `AGE_RECIPIENTS`, `AGE_RECIPIENTS_FILE`,
/// `AGE_IDENTITY_FILE`, `AGE_PASSPHRASE_FILE`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgeKeys {
    /// Public keys (`age1…`, `ssh-ed25519 …`).
    pub recipients: Vec<String>,
    /// A file of public keys, one per line.
    pub recipients_file: Option<PathBuf>,
    /// A file of secret keys, for restores.
    pub identity_file: Option<PathBuf>,
    /// A file whose first line is the passphrase (for backups and restores).
    pub passphrase_file: Option<PathBuf>,
}

impl AgeKeys {
    /// The settings as configured: public keys split at commas and whitespace; empty paths
    /// unset.
    #[must_use]
    pub fn from_settings(
        recipients: Option<&str>,
        recipients_file: Option<&str>,
        identity_file: Option<&str>,
        passphrase_file: Option<&str>,
    ) -> Self {
        let path = |value: Option<&str>| value.filter(|v| !v.trim().is_empty()).map(PathBuf::from);
        Self {
            recipients: recipients
                .map(|list| {
                    list.split(|c: char| c == ',' || c.is_whitespace())
                        .filter(|k| !k.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            recipients_file: path(recipients_file),
            identity_file: path(identity_file),
            passphrase_file: path(passphrase_file),
        }
    }
}

/// An unusable age setting: which one, its value (a path, or the public keys with anything
/// that looks like a secret key replaced), and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {setting} '{value}': {reason}")]
pub struct AgeKeyError {
    /// The setting's name, e.g. `AGE_RECIPIENTS_FILE`.
    pub setting: &'static str,
    /// Its value as shown to people.
    pub value: String,
    /// What is wrong.
    pub reason: String,
}

impl AgeKeys {
    /// Who new backups are encrypted to; `None` when nothing is configured (no encryption).
    ///
    /// # Errors
    /// [`AgeKeyError`] naming the setting whose value or file is unusable, or
    /// `AGE_PASSPHRASE_FILE` when public keys are configured too.
    pub fn recipients(&self) -> Result<Option<AgeRecipients>, AgeKeyError> {
        let invalid = |setting, value: String, err: crate::Error| AgeKeyError {
            setting,
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
            let shown = || path.display().to_string();
            let from_file = AgeRecipients::from_file(path)
                .map_err(|e| invalid("AGE_RECIPIENTS_FILE", shown(), e))?;
            keys = Some(match keys {
                Some(keys) => keys
                    .merge(from_file)
                    .map_err(|e| invalid("AGE_RECIPIENTS_FILE", shown(), e))?,
                None => from_file,
            });
        }
        match (&self.passphrase_file, keys) {
            (Some(path), Some(_)) => Err(AgeKeyError {
                setting: "AGE_PASSPHRASE_FILE",
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
    /// [`AgeKeyError`] naming the setting whose file is unusable.
    pub fn identities(&self) -> Result<Option<AgeIdentities>, AgeKeyError> {
        let from_file = match &self.identity_file {
            Some(path) => Some(
                AgeIdentities::from_files(std::slice::from_ref(path)).map_err(|e| AgeKeyError {
                    setting: "AGE_IDENTITY_FILE",
                    value: path.display().to_string(),
                    reason: e.to_string(),
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

    /// The configured public keys for a message, with anything that is (or looks like) an age
    /// secret key replaced: a secret key given where a public key belongs is never echoed.
    fn shown_recipients(&self) -> String {
        self.recipients
            .iter()
            .map(|key| {
                if is_age_secret_key(key) {
                    "AGE-SECRET-KEY-1… (not shown)"
                } else {
                    key.as_str()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The first line of a passphrase file (without its line end).
fn read_passphrase(path: &Path) -> Result<SecretString, AgeKeyError> {
    let invalid = |reason: String| AgeKeyError {
        setting: "AGE_PASSPHRASE_FILE",
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

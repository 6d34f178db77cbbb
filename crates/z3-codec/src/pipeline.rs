//! Whole pipelines: what a backup applies to a `zfs send` stream (compress, then encrypt) and
//! what a restore applies to an object, chosen from the object's own metadata.

use crate::age::{AgeCodec, AgeIdentities, AgeRecipients};
use crate::compressor::{Compressor, Compressors, Stage};
use crate::error::{Error, ErrorKind};
use crate::{BoxedReader, Codec};

/// The value of the `encryption` metadata of objects encrypted with age.
pub const ENCRYPTION_AGE: &str = "age";

/// Feeds `input` through `stages` in order and returns the last one's output.
///
/// # Errors
/// The first stage that cannot start ([`Codec::apply`]).
pub fn apply_all(stages: &[Stage], input: BoxedReader) -> Result<BoxedReader, Error> {
    stages
        .iter()
        .try_fold(input, |stream, stage| stage.apply(stream))
}

/// The stages for messages and dry runs: `zstd -3 -T2 (in-process) | age -e to … (in-process)`.
#[must_use]
pub fn describe_all(stages: &[Stage]) -> String {
    stages
        .iter()
        .map(Codec::describe)
        .collect::<Vec<_>>()
        .join(" | ")
}

/// How a backup encodes its stream: the compressor, then age encryption if recipients are set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    /// The compressor (recorded as `compressor` metadata).
    pub compressor: Compressor,
    /// Who can decrypt; `None` stores the compressed stream as is.
    pub encryption: Option<AgeRecipients>,
}

impl Encoding {
    /// The backup stages, in order: compression first (encrypted data does not compress).
    #[must_use]
    pub fn stages(&self) -> Vec<Stage> {
        self.compressor
            .encoder()
            .into_iter()
            .chain(
                self.encryption
                    .clone()
                    .map(|recipients| Stage::Age(AgeCodec::encrypt(recipients))),
            )
            .collect()
    }

    /// The `compressor` metadata to record.
    #[must_use]
    pub fn compressor_metadata(&self) -> Option<&str> {
        self.compressor.metadata_name()
    }

    /// The `encryption` metadata to record: `age`, or nothing.
    #[must_use]
    pub fn encryption_metadata(&self) -> Option<&'static str> {
        self.encryption.as_ref().map(|_| ENCRYPTION_AGE)
    }
}

/// Whether an object with this `encryption` metadata needs an age identity to restore.
///
/// # Errors
/// [`ErrorKind::UnknownEncryption`] naming a value other than `age` (or `none`).
pub fn is_encrypted(encryption: Option<&str>) -> Result<bool, Error> {
    match encryption.map(str::to_ascii_lowercase).as_deref() {
        None | Some("none") => Ok(false),
        Some(ENCRYPTION_AGE) => Ok(true),
        Some(_) => Err(Error::new(ErrorKind::UnknownEncryption {
            name: encryption.unwrap_or_default().to_owned(),
        })),
    }
}

/// What a restore can decode with: the configured compressors and the age identities, if any.
#[derive(Debug, Clone, Default)]
pub struct Decoding {
    /// Built-in and configured compressors.
    pub compressors: Compressors,
    /// Identities for age-encrypted objects.
    pub identities: Option<AgeIdentities>,
}

impl Decoding {
    /// The restore stages for an object with this `compressor` and `encryption` metadata:
    /// decryption first, then decompression.
    ///
    /// # Errors
    /// [`ErrorKind::UnknownCodec`] or [`ErrorKind::UnknownEncryption`] naming an unknown value;
    /// [`ErrorKind::NoIdentity`] for an encrypted object when no identity is configured. All of
    /// them before any byte is read, so nothing reaches `zfs receive`.
    pub fn stages_for(
        &self,
        compressor: Option<&str>,
        encryption: Option<&str>,
    ) -> Result<Vec<Stage>, Error> {
        let decompress = self.compressors.decoder_for(compressor)?;
        let decrypt = if is_encrypted(encryption)? {
            let identities = self
                .identities
                .clone()
                .ok_or_else(|| Error::new(ErrorKind::NoIdentity))?;
            Some(Stage::Age(AgeCodec::decrypt(identities)))
        } else {
            None
        };
        Ok(decrypt.into_iter().chain(decompress).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_missing_keys_fail_before_any_stage_runs() {
        let decoding = Decoding::default();
        assert!(decoding.stages_for(None, None).unwrap().is_empty());
        assert!(decoding.stages_for(None, Some("none")).unwrap().is_empty());
        let err = decoding.stages_for(Some("zstd"), Some("age")).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::NoIdentity);
        let err = decoding.stages_for(None, Some("rot13")).unwrap_err();
        assert_eq!(
            err.kind(),
            &ErrorKind::UnknownEncryption {
                name: "rot13".into()
            }
        );
        assert!(err.to_string().contains("\"rot13\""), "{err}");
        let err = decoding.stages_for(Some("lz4"), None).unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::UnknownCodec { .. }));
        let stages = decoding.stages_for(Some("pigz1"), None).unwrap();
        assert_eq!(describe_all(&stages), "gzip -d (in-process)");
    }

    #[test]
    fn plain_encodings_record_no_encryption() {
        let encoding = Encoding {
            compressor: Compressor::Zstd { level: 3 },
            encryption: None,
        };
        assert_eq!(encoding.compressor_metadata(), Some("zstd"));
        assert_eq!(encoding.encryption_metadata(), None);
        assert_eq!(encoding.stages().len(), 1);
    }
}

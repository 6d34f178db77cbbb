//! The compressors of the original z3 and the mapping between their names, their stages and object metadata.

use std::fmt;

use crate::error::{Error, ErrorKind};
use crate::external::ExternalCodec;

/// A compressor the original z3 knows (spec §7). Its name is recorded in each object's `compressor` metadata,
/// and restore picks the decoder from that metadata, not from the current configuration, so chains with mixed
/// compressors restore correctly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compressor {
    /// No stage; no `compressor` metadata is written.
    None,
    /// `pigz -1 --blocksize 4096`, the original's default.
    Pigz1,
    /// `pigz -4 --blocksize 4096`.
    Pigz4,
    /// Public-key encryption with `gpg -e` for `recipient` (gpg compresses as the key's preferences say).
    Gpg {
        /// The key to encrypt to (`GPG_RECIPIENT`, default `z3_backup` in the original).
        recipient: String,
    },
}

impl Compressor {
    /// Parses a compressor name: `none`, `pigz1`, `pigz4` or `gpg`, in any case. `gpg` encrypts to `gpg_recipient`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::UnknownCodec`] naming `name` for any other name. (The original silently wrote unknown names
    /// into the metadata without running a filter; z3 refuses them instead.)
    pub fn parse(name: &str, gpg_recipient: &str) -> Result<Self, Error> {
        let known = [
            ("none", Self::None),
            ("pigz1", Self::Pigz1),
            ("pigz4", Self::Pigz4),
            (
                "gpg",
                Self::Gpg {
                    recipient: gpg_recipient.to_owned(),
                },
            ),
        ];
        known
            .into_iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|(_, compressor)| compressor)
            .ok_or_else(|| unknown(name))
    }

    /// The name: `none`, `pigz1`, `pigz4` or `gpg`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.metadata_name().unwrap_or("none")
    }

    /// The value of the `compressor` metadata: `None` for [`Compressor::None`], which writes no metadata.
    #[must_use]
    pub fn metadata_name(&self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::Pigz1 => Some("pigz1"),
            Self::Pigz4 => Some("pigz4"),
            Self::Gpg { .. } => Some("gpg"),
        }
    }

    /// The backup stage (between `zfs send` and the upload); `None` for [`Compressor::None`].
    ///
    /// `--blocksize` is in KiB, so pigz compresses 4 MiB blocks, as the original did.
    #[must_use]
    pub fn encoder(&self) -> Option<ExternalCodec> {
        let pigz = |level: &str| {
            let args = [level, "--blocksize", "4096"].map(String::from).to_vec();
            ExternalCodec::new(self.name(), "pigz", args)
        };
        match self {
            Self::None => None,
            Self::Pigz1 => Some(pigz("-1")),
            Self::Pigz4 => Some(pigz("-4")),
            Self::Gpg { recipient } => {
                let args = ["--batch", "-e", "-r", recipient]
                    .map(String::from)
                    .to_vec();
                Some(ExternalCodec::new("gpg", "gpg", args))
            }
        }
    }

    /// The restore stage for data this compressor wrote; the same as [`decoder_for`] its metadata name.
    #[must_use]
    pub fn decoder(&self) -> Option<ExternalCodec> {
        match self {
            Self::None => None,
            Self::Pigz1 | Self::Pigz4 => Some(pigz_decoder(self.name())),
            Self::Gpg { .. } => Some(gpg_decoder()),
        }
    }
}

impl fmt::Display for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The restore stage for an object whose `compressor` metadata is `metadata`.
///
/// Absent metadata (and `none`) means no stage; `pigz1` and `pigz4` decode with `pigz -d`, `gpg` with
/// `gpg --batch -d`. Names are matched in any case.
///
/// # Errors
///
/// [`ErrorKind::UnknownCodec`] naming the value for anything else, so that a restore fails before any byte reaches
/// `zfs receive` rather than feeding it data it cannot read.
pub fn decoder_for(metadata: Option<&str>) -> Result<Option<ExternalCodec>, Error> {
    let Some(name) = metadata else {
        return Ok(None);
    };
    // The recipient only matters for encoding.
    Ok(Compressor::parse(name, "")?.decoder())
}

fn pigz_decoder(name: &str) -> ExternalCodec {
    ExternalCodec::new(name, "pigz", vec!["-d".into()])
}

fn gpg_decoder() -> ExternalCodec {
    ExternalCodec::new("gpg", "gpg", vec!["--batch".into(), "-d".into()])
}

fn unknown(name: &str) -> Error {
    Error::new(ErrorKind::UnknownCodec {
        name: name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Codec;

    fn check_parse(name: &str, expect: Option<Compressor>) {
        match (Compressor::parse(name, "z3_backup"), expect) {
            (Ok(got), Some(expect)) => assert_eq!(got, expect, "{name}"),
            (Err(err), None) => {
                assert_eq!(
                    err.kind(),
                    &ErrorKind::UnknownCodec {
                        name: name.to_owned()
                    }
                );
                assert!(err.to_string().contains(&format!("\"{name}\"")), "{err}");
            }
            (got, expect) => panic!("parse({name:?}) = {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn parse_known_names_in_any_case() {
        check_parse("none", Some(Compressor::None));
        check_parse("NONE", Some(Compressor::None));
        check_parse("pigz1", Some(Compressor::Pigz1));
        check_parse("PiGz4", Some(Compressor::Pigz4));
        check_parse(
            "gpg",
            Some(Compressor::Gpg {
                recipient: "z3_backup".into(),
            }),
        );
        check_parse(
            "GPG",
            Some(Compressor::Gpg {
                recipient: "z3_backup".into(),
            }),
        );
    }

    #[test]
    fn parse_rejects_unknown_names() {
        check_parse("", None);
        check_parse("pigz", None);
        check_parse("pigz9", None);
        check_parse(" pigz1", None);
        check_parse("zstd", None);
    }

    fn check_stage(codec: Option<ExternalCodec>, expect: Option<&str>) {
        let described = codec.map(|codec| codec.describe());
        assert_eq!(described.as_deref(), expect);
    }

    #[test]
    fn encoders_match_the_original_command_lines() {
        check_stage(Compressor::None.encoder(), None);
        check_stage(
            Compressor::Pigz1.encoder(),
            Some("pigz -1 --blocksize 4096"),
        );
        check_stage(
            Compressor::Pigz4.encoder(),
            Some("pigz -4 --blocksize 4096"),
        );
        let gpg = Compressor::Gpg {
            recipient: "Backup Key <b@example.invalid>".into(),
        };
        let encoder = gpg.encoder().unwrap();
        assert_eq!(
            encoder.args(),
            ["--batch", "-e", "-r", "Backup Key <b@example.invalid>"]
        );
        assert_eq!(encoder.name(), "gpg");
    }

    #[test]
    fn metadata_names_and_display() {
        let gpg = Compressor::Gpg {
            recipient: "r".into(),
        };
        assert_eq!(Compressor::None.metadata_name(), None);
        assert_eq!(Compressor::Pigz1.metadata_name(), Some("pigz1"));
        assert_eq!(Compressor::Pigz4.metadata_name(), Some("pigz4"));
        assert_eq!(gpg.metadata_name(), Some("gpg"));
        assert_eq!(Compressor::None.to_string(), "none");
        assert_eq!(Compressor::Pigz4.to_string(), "pigz4");
        assert_eq!(Compressor::Pigz1.encoder().unwrap().name(), "pigz1");
    }

    #[test]
    fn decoder_for_metadata() {
        check_stage(decoder_for(None).unwrap(), None);
        check_stage(decoder_for(Some("none")).unwrap(), None);
        check_stage(decoder_for(Some("pigz1")).unwrap(), Some("pigz -d"));
        check_stage(decoder_for(Some("pigz4")).unwrap(), Some("pigz -d"));
        check_stage(decoder_for(Some("gpg")).unwrap(), Some("gpg --batch -d"));
        check_stage(decoder_for(Some("PIGZ1")).unwrap(), Some("pigz -d"));
    }

    #[test]
    fn decoder_for_unknown_metadata_names_the_value() {
        for value in ["zstd", "", "openssl"] {
            let err = decoder_for(Some(value)).unwrap_err();
            assert_eq!(
                err.kind(),
                &ErrorKind::UnknownCodec {
                    name: value.to_owned()
                }
            );
            assert!(err.to_string().contains(&format!("\"{value}\"")), "{err}");
        }
    }

    #[test]
    fn every_compressor_round_trips_through_its_metadata_name() {
        for compressor in [Compressor::None, Compressor::Pigz1, Compressor::Pigz4] {
            let decoder = decoder_for(compressor.metadata_name()).unwrap();
            assert_eq!(decoder, compressor.decoder());
        }
    }
}

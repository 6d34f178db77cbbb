//! The compressors of the original z3 and the mapping between their names, their stages and object metadata.

use std::collections::BTreeMap;
use std::fmt;

use crate::age::AgeCodec;
use crate::error::{Error, ErrorKind};
use crate::external::ExternalCodec;
use crate::inproc::InProcessCodec;
use crate::{BoxedReader, Codec};

/// The zstd level of the name `zstd` (zstd's own default).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// The gzip level of the name `gzip`.
pub const DEFAULT_GZIP_LEVEL: u32 = 6;

/// Name families kept for built-in compressors (`zstd42` is a typo, not a new compressor).
const RESERVED: &[&str] = &["none", "zstd", "gzip", "pigz", "gpg", "age"];

/// One stage of a backup or restore pipeline: a program or an in-process codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// A filter program (`pigz`, `gpg`).
    External(ExternalCodec),
    /// zstd or gzip inside the process.
    InProcess(InProcessCodec),
    /// age encryption or decryption inside the process.
    Age(AgeCodec),
}

impl Codec for Stage {
    fn name(&self) -> &str {
        match self {
            Self::External(codec) => codec.name(),
            Self::InProcess(codec) => codec.name(),
            Self::Age(codec) => codec.name(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::External(codec) => codec.describe(),
            Self::InProcess(codec) => codec.describe(),
            Self::Age(codec) => codec.describe(),
        }
    }

    fn apply(&self, input: BoxedReader) -> Result<BoxedReader, Error> {
        match self {
            Self::External(codec) => codec.apply(input),
            Self::InProcess(codec) => codec.apply(input),
            Self::Age(codec) => codec.apply(input),
        }
    }
}

/// A compressor the original z3 knows (docs/compatibility.md, "Compressors"). Its name is recorded in each
/// object's `compressor` metadata, and restore picks the decoder from that metadata, not from the current
/// configuration, so chains with mixed compressors restore correctly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compressor {
    /// No stage; no `compressor` metadata is written.
    None,
    /// `pigz -1 --blocksize 4096`, the original's default.
    Pigz1,
    /// `pigz -4 --blocksize 4096`.
    Pigz4,
    /// In-process zstd at `level`, multi-threaded; metadata `zstd`.
    Zstd {
        /// 1–19 (`zstd` alone is [`DEFAULT_ZSTD_LEVEL`]).
        level: i32,
    },
    /// In-process gzip at [`DEFAULT_GZIP_LEVEL`]; metadata `gzip`. Restorable by any gzip.
    Gzip,
    /// Public-key encryption with `gpg -e` for `recipient` (gpg compresses as the key's preferences say).
    Gpg {
        /// The key to encrypt to (`GPG_RECIPIENT`, default `z3_backup` in the original).
        recipient: String,
    },
    /// Programs from a `[compressor:NAME]` config section; metadata `NAME`.
    Custom(CustomCompressor),
}

/// A compressor the operator defined: a program (with arguments) that compresses stdin to stdout,
/// and one that reverses it. Neither runs through a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomCompressor {
    name: String,
    compress: Vec<String>,
    decompress: Vec<String>,
}

impl CustomCompressor {
    /// A compressor called `name` (recorded in each object's metadata, in lower case) running the
    /// `compress` and `decompress` argument vectors (program first).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidCustom`] if the name is a built-in one or not made of ASCII letters,
    /// digits, `.`, `_` and `-`, or if a command is empty.
    pub fn new(name: &str, compress: Vec<String>, decompress: Vec<String>) -> Result<Self, Error> {
        let invalid = |reason: &str| {
            Err(Error::new(ErrorKind::InvalidCustom {
                name: name.to_owned(),
                reason: reason.to_owned(),
            }))
        };
        let lower = name.to_ascii_lowercase();
        if lower.is_empty()
            || !lower
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return invalid("a name is ASCII letters, digits, '.', '_' and '-'");
        }
        if Compressor::parse(&lower, "").is_ok()
            || RESERVED.iter().any(|family| lower.starts_with(family))
        {
            return invalid("that is a built-in compressor or reserved for one");
        }
        if compress.is_empty() || decompress.is_empty() {
            return invalid("it needs both a COMPRESS and a DECOMPRESS command");
        }
        Ok(Self {
            name: lower,
            compress,
            decompress,
        })
    }

    /// A `[compressor:NAME]` section of the config file, its keys upper-cased: `COMPRESS` and
    /// `DECOMPRESS`, each a command line split into words the way a POSIX shell splits them
    /// (quotes, escapes; no expansion, and no shell ever runs it).
    ///
    /// # Errors
    /// Why the section is unusable: another key, an unsplittable line, or [`Self::new`]'s
    /// reasons.
    pub fn from_section<'a>(
        name: &str,
        keys: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let (mut compress, mut decompress) = (Vec::new(), Vec::new());
        for (key, text) in keys {
            let words = shell_words::split(text)
                .map_err(|e| format!("cannot split {key} = {text}: {e}"))?;
            match key {
                "COMPRESS" => compress = words,
                "DECOMPRESS" => decompress = words,
                _ => {
                    return Err(format!(
                        "unknown key {key} (expected COMPRESS and DECOMPRESS)"
                    ));
                }
            }
        }
        Self::new(name, compress, decompress).map_err(|e| e.to_string())
    }

    /// The name, in lower case.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    fn stage(&self, argv: &[String]) -> Stage {
        Stage::External(ExternalCodec::new(
            self.name.clone(),
            argv[0].clone(),
            argv[1..].to_vec(),
        ))
    }
}

/// The compressors a configuration knows: the built-in ones and the operator's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compressors {
    custom: BTreeMap<String, CustomCompressor>,
}

impl Compressors {
    /// The built-in compressors only.
    #[must_use]
    pub fn builtin() -> Self {
        Self::default()
    }

    /// Adds an operator-defined compressor (its name is already checked not to be built-in).
    pub fn add(&mut self, custom: CustomCompressor) {
        self.custom.insert(custom.name.clone(), custom);
    }

    /// The operator-defined compressors, by name.
    pub fn custom(&self) -> impl Iterator<Item = &CustomCompressor> {
        self.custom.values()
    }

    /// Parses a compressor name: a built-in one ([`Compressor::parse`]) or a configured one.
    ///
    /// # Errors
    /// [`ErrorKind::UnknownCodec`] naming `name` when neither knows it.
    pub fn parse(&self, name: &str, gpg_recipient: &str) -> Result<Compressor, Error> {
        Compressor::parse(name, gpg_recipient).or_else(|err| {
            self.custom
                .get(&name.to_ascii_lowercase())
                .map(|custom| Compressor::Custom(custom.clone()))
                .ok_or(err)
        })
    }

    /// The restore stage for an object whose `compressor` metadata is `metadata`: as
    /// [`decoder_for`], and configured compressors by their name.
    ///
    /// # Errors
    /// [`ErrorKind::UnknownCodec`] naming the value when no compressor has that name.
    pub fn decoder_for(&self, metadata: Option<&str>) -> Result<Option<Stage>, Error> {
        let Some(name) = metadata else {
            return Ok(None);
        };
        Ok(self.parse(name, "")?.decoder())
    }
}

impl Compressor {
    /// Parses a compressor name, in any case: `none`, `zstd` (level 3), `zstd1` … `zstd19`,
    /// `gzip`, `pigz1`, `pigz4` or `gpg`. `gpg` encrypts to `gpg_recipient`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::UnknownCodec`] naming `name` for any other name. (The original silently wrote unknown names
    /// into the metadata without running a filter; z3 refuses them instead.)
    pub fn parse(name: &str, gpg_recipient: &str) -> Result<Self, Error> {
        let lower = name.to_ascii_lowercase();
        if let Some(level) = lower.strip_prefix("zstd") {
            return match level {
                "" => Ok(Self::Zstd {
                    level: DEFAULT_ZSTD_LEVEL,
                }),
                _ if level.starts_with('0') || level.starts_with('+') => Err(unknown(name)),
                _ => match level.parse::<i32>() {
                    Ok(level @ 1..=19) => Ok(Self::Zstd { level }),
                    _ => Err(unknown(name)),
                },
            };
        }
        match lower.as_str() {
            "none" => Ok(Self::None),
            "gzip" => Ok(Self::Gzip),
            "pigz1" => Ok(Self::Pigz1),
            "pigz4" => Ok(Self::Pigz4),
            "gpg" => Ok(Self::Gpg {
                recipient: gpg_recipient.to_owned(),
            }),
            _ => Err(unknown(name)),
        }
    }

    /// Checks a name given before the configuration is read (`backup --compressor`): a
    /// built-in name ([`parse`](Self::parse)) or one that could name a `[compressor:NAME]`
    /// section, which the backup checks against the configuration when it starts.
    ///
    /// # Errors
    /// Why the name can be neither, naming it.
    pub fn check_name(name: &str) -> Result<(), Error> {
        match Self::parse(name, "") {
            Ok(_) => Ok(()),
            Err(_) if CustomCompressor::new(name, vec!["x".into()], vec!["x".into()]).is_ok() => {
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    /// The name for logs and messages: `none`, `zstd`, `gzip`, `pigz1`, `pigz4`, `gpg` or a
    /// configured compressor's name.
    #[must_use]
    pub fn name(&self) -> &str {
        self.metadata_name().unwrap_or("none")
    }

    /// The value of the `compressor` metadata: `None` for [`Compressor::None`], which writes no metadata.
    #[must_use]
    pub fn metadata_name(&self) -> Option<&str> {
        match self {
            Self::Custom(custom) => Some(&custom.name),
            Self::None => None,
            Self::Pigz1 => Some("pigz1"),
            Self::Pigz4 => Some("pigz4"),
            Self::Zstd { .. } => Some("zstd"),
            Self::Gzip => Some("gzip"),
            Self::Gpg { .. } => Some("gpg"),
        }
    }

    /// The backup stage (between `zfs send` and the upload); `None` for [`Compressor::None`].
    ///
    /// pigz's `--blocksize` is in KiB, so it compresses 4 MiB blocks, as the original did. zstd
    /// uses one worker thread per CPU.
    #[must_use]
    pub fn encoder(&self) -> Option<Stage> {
        let pigz = |level: &str| {
            let args = [level, "--blocksize", "4096"].map(String::from).to_vec();
            Stage::External(ExternalCodec::new(self.name(), "pigz", args))
        };
        match self {
            Self::None => None,
            Self::Pigz1 => Some(pigz("-1")),
            Self::Pigz4 => Some(pigz("-4")),
            Self::Zstd { level } => Some(Stage::InProcess(InProcessCodec::ZstdEncode {
                level: *level,
                threads: zstd_threads(),
            })),
            Self::Gzip => Some(Stage::InProcess(InProcessCodec::GzipEncode {
                level: DEFAULT_GZIP_LEVEL,
            })),
            Self::Gpg { recipient } => {
                let args = ["--batch", "-e", "-r", recipient]
                    .map(String::from)
                    .to_vec();
                Some(Stage::External(ExternalCodec::new("gpg", "gpg", args)))
            }
            Self::Custom(custom) => Some(custom.stage(&custom.compress)),
        }
    }

    /// The restore stage for data this compressor wrote; the same as [`decoder_for`] its
    /// metadata name. gzip and pigz output are decoded in-process (no pigz needed), gpg by `gpg`.
    #[must_use]
    pub fn decoder(&self) -> Option<Stage> {
        match self {
            Self::None => None,
            Self::Pigz1 | Self::Pigz4 | Self::Gzip => {
                Some(Stage::InProcess(InProcessCodec::GzipDecode))
            }
            Self::Zstd { .. } => Some(Stage::InProcess(InProcessCodec::ZstdDecode)),
            Self::Gpg { .. } => Some(Stage::External(gpg_decoder())),
            Self::Custom(custom) => Some(custom.stage(&custom.decompress)),
        }
    }
}

/// The most zstd workers: 4 compress at level 3 faster than any uplink z3 feeds, and zstd's
/// buffer pool grows with the workers (≈ 115 MiB measured with 2 workers at level 3, in
/// `cargo xtask bench memory`): memory the budget (`MEMORY_LIMIT`) does not count.
pub const MAX_ZSTD_WORKERS: u32 = 4;

/// One zstd worker per CPU, at most [`MAX_ZSTD_WORKERS`] (never 0: single-threaded zstd is
/// another encoding, and resuming an upload relies on the threaded one).
fn zstd_threads() -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    u32::try_from(cpus).map_or(MAX_ZSTD_WORKERS, |n| n.clamp(1, MAX_ZSTD_WORKERS))
}

impl fmt::Display for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The restore stage for an object whose `compressor` metadata is `metadata`.
///
/// Absent metadata (and `none`) means no stage; `pigz1`, `pigz4` and `gzip` decode with the in-process gzip
/// decoder, `zstd` with the in-process zstd decoder, `gpg` with `gpg --batch -d`. Names are matched in any case.
///
/// # Errors
///
/// [`ErrorKind::UnknownCodec`] naming the value for anything else, so that a restore fails before any byte reaches
/// `zfs receive` rather than feeding it data it cannot read.
pub fn decoder_for(metadata: Option<&str>) -> Result<Option<Stage>, Error> {
    let Some(name) = metadata else {
        return Ok(None);
    };
    // The recipient only matters for encoding.
    Ok(Compressor::parse(name, "")?.decoder())
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
        check_parse("zstd0", None);
        check_parse("zstd20", None);
        check_parse("zstd-1", None);
        check_parse("zstd+3", None);
        check_parse("zstd03", None);
        check_parse("lz4", None);
    }

    #[test]
    fn parse_zstd_levels_and_gzip() {
        check_parse(
            "zstd",
            Some(Compressor::Zstd {
                level: DEFAULT_ZSTD_LEVEL,
            }),
        );
        check_parse("ZSTD1", Some(Compressor::Zstd { level: 1 }));
        check_parse("zstd19", Some(Compressor::Zstd { level: 19 }));
        check_parse("Gzip", Some(Compressor::Gzip));
    }

    fn check_stage(codec: Option<Stage>, expect: Option<&str>) {
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
        let Some(Stage::External(encoder)) = gpg.encoder() else {
            panic!("gpg is a program");
        };
        assert_eq!(
            encoder.args(),
            ["--batch", "-e", "-r", "Backup Key <b@example.invalid>"]
        );
        assert_eq!(encoder.name(), "gpg");
        check_stage(Compressor::Gzip.encoder(), Some("gzip -6 (in-process)"));
        let zstd = Compressor::Zstd { level: 1 }.encoder().unwrap();
        assert!(
            zstd.describe().starts_with("zstd -1 -T"),
            "{}",
            zstd.describe()
        );
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
        let gzip = Some("gzip -d (in-process)");
        check_stage(decoder_for(Some("pigz1")).unwrap(), gzip);
        check_stage(decoder_for(Some("pigz4")).unwrap(), gzip);
        check_stage(decoder_for(Some("gzip")).unwrap(), gzip);
        check_stage(decoder_for(Some("PIGZ1")).unwrap(), gzip);
        check_stage(
            decoder_for(Some("zstd")).unwrap(),
            Some("zstd -d (in-process)"),
        );
        check_stage(decoder_for(Some("gpg")).unwrap(), Some("gpg --batch -d"));
    }

    #[test]
    fn decoder_for_unknown_metadata_names_the_value() {
        for value in ["lz4", "", "openssl", "zstd99"] {
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
        for compressor in [
            Compressor::None,
            Compressor::Pigz1,
            Compressor::Pigz4,
            Compressor::Gzip,
            Compressor::Zstd { level: 7 },
        ] {
            let decoder = decoder_for(compressor.metadata_name()).unwrap();
            assert_eq!(decoder, compressor.decoder());
        }
    }
}

//! Seals: what z3 knows about a backup object once its stream has ended (ADR 3).
//!
//! S3 user metadata is fixed when an upload starts, before the stream's digest is known. So z3
//! writes a small *seal* object per backup, `<prefix>.z3-seals/<dataset>@<snapshot>`, holding
//! the BLAKE3 digest and length of the raw `zfs send` stream, the digest and length of the stored
//! object (after compression and encryption), the snapshot's guids and codecs. The seal is
//! written after the last part is uploaded and *before* `CompleteMultipartUpload`: if writing it
//! fails, the upload is aborted, so every object z3 completes has a seal. If the completion fails
//! after it, the previous seal is put back (or ours removed); should that fail too, the seal
//! describes no object and is ignored, or disagrees with the old object, which is then refused.
//!
//! [`judge`] compares an object with its seal; restore and `z3 verify` then compare the bytes.
//! The text format is `key=value` lines, first line `z3-seal=1`, unknown keys ignored.

use std::fmt;

use crate::remote::RemoteSnapshot;

/// Format marker, the first line of every seal.
const FORMAT_LINE: &str = "z3-seal=1";

/// A BLAKE3 digest with the length of what it covers.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest {
    /// Bytes digested.
    pub len: u64,
    /// The 32-byte BLAKE3 hash.
    pub blake3: [u8; 32],
}

impl Digest {
    /// The hash as 64 lower-case hex digits.
    #[must_use]
    pub fn hex(&self) -> String {
        use fmt::Write;
        self.blake3
            .iter()
            .fold(String::with_capacity(64), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
    }

    /// The first 12 hex digits, for messages.
    #[must_use]
    pub fn short(&self) -> String {
        self.hex()[..12].to_owned()
    }

    fn parse_hex(text: &str) -> Option<[u8; 32]> {
        let text = text.as_bytes();
        if text.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
            let digit = |c: u8| (c as char).to_digit(16);
            *byte = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
        }
        Some(out)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blake3:{} ({} bytes)", self.hex(), self.len)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blake3 {}… of {} bytes", self.short(), self.len)
    }
}

/// The seal of one backup object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    /// The snapshot (`ds@snap`) the object holds.
    pub snapshot: String,
    /// The snapshot's guid.
    pub guid: Option<u64>,
    /// The incremental base's guid.
    pub parent_guid: Option<u64>,
    /// The raw `zfs send` stream: what `zfs receive` must get.
    pub stream: Digest,
    /// The object's bytes as stored (after compression and encryption).
    pub object: Digest,
    /// The compressor metadata value, if any.
    pub compressor: Option<String>,
    /// The encryption metadata value, if any.
    pub encryption: Option<String>,
}

/// A seal that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed seal: {0}")]
pub struct SealParseError(String);

impl Seal {
    /// The seal as stored: `key=value` lines.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut lines = vec![
            FORMAT_LINE.to_owned(),
            format!("snapshot={}", self.snapshot),
        ];
        if let Some(guid) = self.guid {
            lines.push(format!("guid={guid}"));
        }
        if let Some(guid) = self.parent_guid {
            lines.push(format!("parent-guid={guid}"));
        }
        lines.push(format!("stream-bytes={}", self.stream.len));
        lines.push(format!("stream-blake3={}", self.stream.hex()));
        lines.push(format!("object-bytes={}", self.object.len));
        lines.push(format!("object-blake3={}", self.object.hex()));
        if let Some(compressor) = &self.compressor {
            lines.push(format!("compressor={compressor}"));
        }
        if let Some(encryption) = &self.encryption {
            lines.push(format!("encryption={encryption}"));
        }
        let mut text = lines.join("\n");
        text.push('\n');
        text
    }

    /// Reads a seal written by [`Seal::to_text`]. Unknown keys are ignored (newer versions may
    /// add some); the digests, lengths and snapshot are required.
    ///
    /// # Errors
    /// [`SealParseError`] naming the first problem.
    pub fn parse(text: &str) -> Result<Self, SealParseError> {
        let mut lines = text.lines();
        if lines.next().map(str::trim_end) != Some(FORMAT_LINE) {
            return Err(SealParseError(format!(
                "the first line is not '{FORMAT_LINE}'"
            )));
        }
        let mut snapshot = None;
        let (mut guid, mut parent_guid) = (None, None);
        let (mut stream_len, mut stream_hash, mut object_len, mut object_hash) =
            (None, None, None, None);
        let (mut compressor, mut encryption) = (None, None);
        for line in lines.filter(|l| !l.trim().is_empty()) {
            let Some((key, value)) = line.split_once('=') else {
                return Err(SealParseError(format!("line '{line}' has no '='")));
            };
            let number = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| SealParseError(format!("{key} '{v}' is not a number")))
            };
            let hash = |v: &str| {
                Digest::parse_hex(v)
                    .ok_or_else(|| SealParseError(format!("{key} '{v}' is not 64 hex digits")))
            };
            match key {
                "snapshot" => snapshot = Some(value.to_owned()),
                "guid" => guid = Some(number(value)?),
                "parent-guid" => parent_guid = Some(number(value)?),
                "stream-bytes" => stream_len = Some(number(value)?),
                "stream-blake3" => stream_hash = Some(hash(value)?),
                "object-bytes" => object_len = Some(number(value)?),
                "object-blake3" => object_hash = Some(hash(value)?),
                "compressor" => compressor = Some(value.to_owned()),
                "encryption" => encryption = Some(value.to_owned()),
                _ => {}
            }
        }
        let missing = |what: &str| SealParseError(format!("no {what}"));
        Ok(Self {
            snapshot: snapshot.ok_or_else(|| missing("snapshot"))?,
            guid,
            parent_guid,
            stream: Digest {
                len: stream_len.ok_or_else(|| missing("stream-bytes"))?,
                blake3: stream_hash.ok_or_else(|| missing("stream-blake3"))?,
            },
            object: Digest {
                len: object_len.ok_or_else(|| missing("object-bytes"))?,
                blake3: object_hash.ok_or_else(|| missing("object-blake3"))?,
            },
            compressor,
            encryption,
        })
    }
}

/// What the bucket says about an object's seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealCheck {
    /// The seal matches the object's name, guids, codecs and size: its digests can be checked.
    Sealed(Seal),
    /// Written by the original z3 (no `guid` metadata) and never sealed: no digest to check.
    Legacy,
    /// Written by z3 (it has a `guid`) but without a seal: the seal was deleted, or the object
    /// was written by a z3 before seals existed. Its bytes cannot be checked.
    Unsealed,
    /// A seal exists but describes another object (named field: seal value vs object value),
    /// e.g. the object was replaced after sealing, or the seal is an orphan of a failed upload.
    Mismatch(String),
    /// A seal exists but cannot be read.
    Unreadable(String),
}

impl SealCheck {
    /// Whether restore may use the object without being told to accept unchecked bytes.
    #[must_use]
    pub fn is_trusted(&self) -> bool {
        matches!(self, Self::Sealed(_) | Self::Legacy)
    }

    /// A short word for tables: `sealed`, `legacy`, `unsealed`, `seal mismatch`, `bad seal`.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Self::Sealed(_) => "sealed",
            Self::Legacy => "legacy",
            Self::Unsealed => "unsealed",
            Self::Mismatch(_) => "seal mismatch",
            Self::Unreadable(_) => "bad seal",
        }
    }
}

impl fmt::Display for SealCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sealed(seal) => write!(f, "sealed (stream {})", seal.stream),
            Self::Legacy => f.write_str("written by the original z3: no digest to check"),
            Self::Unsealed => f.write_str(
                "written by z3 but has no seal: its digest is unknown, so its bytes cannot be checked",
            ),
            Self::Mismatch(why) => write!(f, "its seal describes another object ({why})"),
            Self::Unreadable(why) => write!(f, "its seal cannot be read ({why})"),
        }
    }
}

/// Compares `object` with the seal text found for it (`None`: no seal object).
#[must_use]
pub fn judge(object: &RemoteSnapshot, seal_text: Option<&str>) -> SealCheck {
    let Some(text) = seal_text else {
        return if object.meta.guid.is_some() {
            SealCheck::Unsealed
        } else {
            SealCheck::Legacy
        };
    };
    let seal = match Seal::parse(text) {
        Ok(seal) => seal,
        Err(err) => return SealCheck::Unreadable(err.0),
    };
    let show = |v: Option<u64>| v.map_or_else(|| "none".to_owned(), |v| v.to_string());
    let meta = &object.meta;
    let mut differences = Vec::new();
    if seal.snapshot != object.name {
        differences.push(format!("snapshot {} vs {}", seal.snapshot, object.name));
    }
    if seal.guid != meta.guid {
        differences.push(format!("guid {} vs {}", show(seal.guid), show(meta.guid)));
    }
    if seal.parent_guid != meta.parent_guid {
        differences.push(format!(
            "parent guid {} vs {}",
            show(seal.parent_guid),
            show(meta.parent_guid)
        ));
    }
    if seal.object.len != object.object_size {
        differences.push(format!(
            "size {} vs {} bytes",
            seal.object.len, object.object_size
        ));
    }
    if seal.compressor != meta.compressor {
        differences.push(format!(
            "compressor {} vs {}",
            seal.compressor.as_deref().unwrap_or("none"),
            meta.compressor.as_deref().unwrap_or("none")
        ));
    }
    if seal.encryption != meta.encryption {
        differences.push(format!(
            "encryption {} vs {}",
            seal.encryption.as_deref().unwrap_or("none"),
            meta.encryption.as_deref().unwrap_or("none")
        ));
    }
    if differences.is_empty() {
        SealCheck::Sealed(seal)
    } else {
        SealCheck::Mismatch(format!("seal vs object: {}", differences.join(", ")))
    }
}

/// A digest that did not come out as sealed: the object's bytes are not what was backed up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} of {key} does not match its seal: expected {expected}, got {actual}")]
pub struct DigestMismatch {
    /// The object key.
    pub key: String,
    /// `the zfs stream` or `the stored object`.
    pub what: &'static str,
    /// From the seal.
    pub expected: Digest,
    /// Computed.
    pub actual: Digest,
}

/// An object that may not be restored as it is (exit status 3, like a broken chain).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot restore {snapshot}: {key} is {check_label}: {check}{hint}")]
pub struct UntrustedObject {
    /// `ds@snap`.
    pub snapshot: String,
    /// The object key.
    pub key: String,
    /// [`SealCheck::label`].
    pub check_label: &'static str,
    /// The verdict.
    pub check: SealCheck,
    /// How to proceed anyway, if at all.
    pub hint: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::ObjectMeta;

    fn digest(seed: u8, len: u64) -> Digest {
        Digest {
            len,
            blake3: [seed; 32],
        }
    }

    fn object() -> RemoteSnapshot {
        RemoteSnapshot {
            key: "p/pool/fs@s2".into(),
            name: "pool/fs@s2".into(),
            object_size: 100,
            meta: ObjectMeta {
                size: Some(300),
                is_full: false,
                parent: Some("pool/fs@s1".into()),
                compressor: Some("zstd".into()),
                encryption: None,
                guid: Some(22),
                parent_guid: Some(11),
                upload: None,
                created: None,
                send_flags: None,
            },
            etag: None,
        }
    }

    fn seal() -> Seal {
        Seal {
            snapshot: "pool/fs@s2".into(),
            guid: Some(22),
            parent_guid: Some(11),
            stream: digest(0xab, 300),
            object: digest(0x01, 100),
            compressor: Some("zstd".into()),
            encryption: None,
        }
    }

    #[test]
    fn text_round_trips_and_is_readable() {
        let text = seal().to_text();
        assert!(
            text.starts_with("z3-seal=1\nsnapshot=pool/fs@s2\nguid=22\n"),
            "{text}"
        );
        assert!(text.contains(&format!("stream-blake3={}\n", "ab".repeat(32))));
        assert_eq!(Seal::parse(&text).unwrap(), seal());
        // Unknown keys are for newer versions; blank lines are harmless.
        let extended = format!("{text}\nfuture-key=1\n");
        assert_eq!(Seal::parse(&extended).unwrap(), seal());
        // Names with '=' and spaces survive: only the first '=' splits.
        let odd = Seal {
            snapshot: "pool/my fs@a=b".into(),
            ..seal()
        };
        assert_eq!(Seal::parse(&odd.to_text()).unwrap(), odd);
    }

    #[test]
    fn malformed_seals_say_what_is_wrong() {
        let text = seal().to_text();
        let cases = [
            (String::new(), "the first line is not 'z3-seal=1'"),
            (text.replace("z3-seal=1", "z3-seal=2"), "first line"),
            (
                text.replace("stream-bytes=300", "stream-bytes=x"),
                "stream-bytes 'x' is not a number",
            ),
            (
                text.replace(&"ab".repeat(32), "abc"),
                "stream-blake3 'abc' is not 64 hex digits",
            ),
            (
                text.replace(&"01".repeat(32), &"zz".repeat(32)),
                "object-blake3",
            ),
            (text.replace("snapshot=pool/fs@s2\n", ""), "no snapshot"),
            (format!("{text}garbage\n"), "line 'garbage' has no '='"),
        ];
        for (input, expected) in cases {
            let err = Seal::parse(&input).unwrap_err().to_string();
            assert!(err.contains(expected), "{input:?}: {err}");
        }
    }

    #[test]
    fn judge_table() {
        let text = seal().to_text();
        assert_eq!(judge(&object(), Some(&text)), SealCheck::Sealed(seal()));
        assert_eq!(judge(&object(), None), SealCheck::Unsealed);
        let mut legacy = object();
        legacy.meta.guid = None;
        legacy.meta.parent_guid = None;
        assert_eq!(judge(&legacy, None), SealCheck::Legacy);
        assert!(matches!(
            judge(&object(), Some("nonsense")),
            SealCheck::Unreadable(_)
        ));

        let mut other = object();
        other.object_size = 101;
        other.meta.guid = Some(23);
        other.meta.encryption = Some("age".into());
        let SealCheck::Mismatch(why) = judge(&other, Some(&text)) else {
            panic!("expected a mismatch")
        };
        assert_eq!(
            why,
            "seal vs object: guid 22 vs 23, size 100 vs 101 bytes, encryption none vs age"
        );
        let mut renamed = object();
        renamed.name = "pool/fs@s3".into();
        assert!(
            matches!(judge(&renamed, Some(&text)), SealCheck::Mismatch(w) if w.contains("snapshot pool/fs@s2 vs pool/fs@s3"))
        );
        assert!(SealCheck::Sealed(seal()).is_trusted() && SealCheck::Legacy.is_trusted());
        assert!(!SealCheck::Unsealed.is_trusted());
    }

    #[test]
    fn digests_print_short_and_long() {
        let d = digest(0xab, 7);
        assert_eq!(d.to_string(), "blake3 abababababab… of 7 bytes");
        assert_eq!(
            format!("{d:?}"),
            format!("blake3:{} (7 bytes)", "ab".repeat(32))
        );
    }
}

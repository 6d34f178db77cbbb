//! Hold tags: what z3 accepts as a `zfs hold` tag, and the user property that marks a
//! snapshot z3 held.
//!
//! zfs-fuse 0.7 can place and release holds but cannot list them (`zfs holds` needs a Python
//! helper Debian does not ship: `internal error: /usr/lib/zfs/pyzfs.py not found`, exit 255).
//! So [`ZfsCli`](crate::ZfsCli) also marks every snapshot it holds with the user property
//! `z3:hold:<tag>=on`, set before the hold and cleared after the release: the marked
//! snapshots are then listed with one `zfs get` on both dialects. Because of that order the
//! marks are a superset of z3's holds (a crash between the two steps leaves a mark without a
//! hold, never a hold without a mark), so a hold z3 placed is never forgotten, and releasing a
//! marked snapshot that is not held is harmless ([`Zfs::release`](crate::Zfs::release) is
//! idempotent).

use crate::error::{Error, ErrorKind};

/// The longest hold tag z3 accepts, in bytes. ZFS allows 255 (zfs-fuse: 256 gives
/// `tag too long`), but the tag is also part of the marker property's name, whose limit is
/// 255 bytes as well; 200 leaves room for the `z3:hold:` prefix.
pub const MAX_HOLD_TAG_LEN: usize = 200;

/// The user property that marks a snapshot held by z3 with `tag`.
const HOLD_PROPERTY_PREFIX: &str = "z3:hold:";

/// The value the marker property is set to.
pub(crate) const HOLD_PROPERTY_VALUE: &str = "on";

/// The name of the user property marking a snapshot that z3 holds with `tag`:
/// `z3:hold:<tag>`.
#[must_use]
pub fn hold_property(tag: &str) -> String {
    format!("{HOLD_PROPERTY_PREFIX}{tag}")
}

/// Checks a hold tag before any `zfs` runs.
///
/// Accepted: 1 to [`MAX_HOLD_TAG_LEN`] bytes of ASCII letters, digits, `-`, `_`, `.` and `:`,
/// not starting with `-` (it would read as an option) or `.` (OpenZFS's own temporary holds,
/// such as `zfs send`'s, begin with a dot). That is the character set of ZFS user property
/// names, so the tag can be part of the marker property's name. ZFS itself accepts almost any
/// tag (zfs-fuse took `bad tag!`, `a,b` and `ü`), and an empty one on zfs-fuse, which then
/// cannot be released: refusing them here keeps every hold z3 places releasable.
///
/// # Errors
/// [`ErrorKind::InvalidName`] naming the rule that `tag` breaks.
pub fn validate_hold_tag(tag: &str) -> Result<(), Error> {
    let refuse = |reason: &str| {
        Err(Error::new(
            ErrorKind::InvalidName,
            format!("invalid hold tag {tag:?}: {reason}"),
        ))
    };
    if tag.is_empty() {
        return refuse("empty");
    }
    if tag.len() > MAX_HOLD_TAG_LEN {
        return refuse(&format!("longer than {MAX_HOLD_TAG_LEN} bytes"));
    }
    if tag.starts_with('-') || tag.starts_with('.') {
        return refuse("must not start with '-' or '.'");
    }
    if let Some(c) = tag
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return refuse(&format!(
            "character {c:?} is not allowed (letters, digits, '-', '_', '.', ':')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_z3_accepts() {
        for tag in ["z3", "z3-backup", "z3:pool_fs.v2", "Z3", &"a".repeat(200)] {
            assert!(validate_hold_tag(tag).is_ok(), "{tag}");
        }
        assert_eq!(hold_property("z3"), "z3:hold:z3");
    }

    #[test]
    fn tags_z3_refuses() {
        for tag in [
            "",
            "-x",
            ".send-1-2",
            "bad tag!",
            "sp ace",
            "a,b",
            "ü",
            "a/b",
            "a@b",
            "a#b",
            "a=b",
            "tab\there",
            &"a".repeat(201),
        ] {
            let e = validate_hold_tag(tag).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidName, "{tag:?}");
            assert!(e.to_string().starts_with("invalid hold tag"), "{e}");
        }
    }
}

//! [`SendFlags`]: the optional `zfs send` flags of OpenZFS that change what a stream carries.
//!
//! - `-w` (`--raw`, OpenZFS ≥ 0.8): blocks as stored on disk; a natively encrypted dataset stays
//!   encrypted with its own key (and restores as an encrypted dataset). Implies `-c -L -e`.
//! - `-c` (`--compressed`, ≥ 0.7): blocks compressed on disk stay compressed, saving CPU twice.
//! - `-L` (`--large-block`, ≥ 0.6.5): records above 128 KiB stay whole. Must stay the same
//!   along a chain: `zfs receive` refuses an incremental without `-L` on top of one with it
//!   ("incremental send stream requires -L (--large-block), to match previous receive").
//! - `-e` (`--embed`, ≥ 0.6.5): tiny blocks embedded in block pointers stay so.
//!
//! zfs-fuse 0.7 has none of them: it answers each with `invalid option 'w'` and its usage, exit 2.
//! The flags are decided per chain (its full's) and recorded in the object's metadata as
//! [`SendFlags::to_metadata`] letters.

use std::fmt;

/// A set of optional `zfs send` flags; [`SendFlags::NONE`] is a plain `zfs send`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[allow(clippy::struct_excessive_bools)] // four independent zfs options
pub struct SendFlags {
    /// `-w`: raw (encrypted datasets stay encrypted). Implies the other three.
    pub raw: bool,
    /// `-c`: compressed blocks stay compressed.
    pub compressed: bool,
    /// `-L`: large blocks stay large.
    pub large_blocks: bool,
    /// `-e`: embedded blocks stay embedded.
    pub embedded: bool,
}

/// Each flag: its letter (the `zfs send` option and the metadata spelling) and its field.
type IsSet = fn(&SendFlags) -> bool;
type Set = fn(&mut SendFlags);

const LETTERS: [(char, IsSet, Set); 4] = [
    ('w', |f| f.raw, |f| f.raw = true),
    ('c', |f| f.compressed, |f| f.compressed = true),
    ('L', |f| f.large_blocks, |f| f.large_blocks = true),
    ('e', |f| f.embedded, |f| f.embedded = true),
];

impl SendFlags {
    /// A plain `zfs send`.
    pub const NONE: Self = Self {
        raw: false,
        compressed: false,
        large_blocks: false,
        embedded: false,
    };

    /// Every flag.
    pub const ALL: Self = Self {
        raw: true,
        compressed: true,
        large_blocks: true,
        embedded: true,
    };

    /// No flag set.
    #[must_use]
    pub fn is_empty(self) -> bool {
        self == Self::NONE
    }

    /// What the stream carries: `-w` implies `-c -L -e`.
    #[must_use]
    pub fn effective(self) -> Self {
        if self.raw { Self::ALL } else { self }
    }

    /// The `zfs send` options, one per flag, in a fixed order (`-w -c -L -e`).
    #[must_use]
    pub fn args(self) -> Vec<&'static str> {
        const ARGS: [&str; 4] = ["-w", "-c", "-L", "-e"];
        LETTERS
            .iter()
            .zip(ARGS)
            .filter(|((_, is_set, _), _)| is_set(&self))
            .map(|(_, arg)| arg)
            .collect()
    }

    /// The flags set in `self` or in `other`.
    #[must_use]
    pub fn with(self, other: Self) -> Self {
        Self {
            raw: self.raw || other.raw,
            compressed: self.compressed || other.compressed,
            large_blocks: self.large_blocks || other.large_blocks,
            embedded: self.embedded || other.embedded,
        }
    }

    /// The flags set in both.
    #[must_use]
    pub fn both(self, other: Self) -> Self {
        self.without(self.without(other))
    }

    /// The flags set in `self` but not in `other`.
    #[must_use]
    pub fn without(self, other: Self) -> Self {
        Self {
            raw: self.raw && !other.raw,
            compressed: self.compressed && !other.compressed,
            large_blocks: self.large_blocks && !other.large_blocks,
            embedded: self.embedded && !other.embedded,
        }
    }

    /// The metadata spelling: the letters of the flags set, e.g. `cLe`; empty for none.
    #[must_use]
    pub fn to_metadata(self) -> String {
        LETTERS
            .iter()
            .filter(|(_, is_set, _)| is_set(&self))
            .map(|(letter, _, _)| *letter)
            .collect()
    }

    /// Parses [`SendFlags::to_metadata`]'s spelling (any order, no repeats).
    ///
    /// # Errors
    /// A letter that is not one of `w`, `c`, `L`, `e`, or a repeated one, as a reason.
    pub fn from_metadata(text: &str) -> Result<Self, String> {
        let mut flags = Self::NONE;
        for c in text.trim().chars() {
            let Some((_, is_set, set)) = LETTERS.iter().find(|(letter, _, _)| *letter == c) else {
                return Err(format!("'{c}' is not a zfs send flag (w, c, L, e)"));
            };
            if is_set(&flags) {
                return Err(format!("'{c}' is repeated"));
            }
            set(&mut flags);
        }
        Ok(flags)
    }
}

impl fmt::Display for SendFlags {
    /// `-w -c` style, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&self.args().join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_set() -> Vec<SendFlags> {
        (0..16u8)
            .map(|bits| SendFlags {
                raw: bits & 1 != 0,
                compressed: bits & 2 != 0,
                large_blocks: bits & 4 != 0,
                embedded: bits & 8 != 0,
            })
            .collect()
    }

    #[test]
    fn metadata_round_trips_for_every_set_and_rejects_the_rest() {
        for flags in every_set() {
            let text = flags.to_metadata();
            assert_eq!(SendFlags::from_metadata(&text), Ok(flags), "{text:?}");
            assert_eq!(flags.args().len(), text.len());
        }
        assert_eq!(SendFlags::from_metadata("eLcw"), Ok(SendFlags::ALL));
        assert_eq!(SendFlags::from_metadata(""), Ok(SendFlags::NONE));
        assert!(
            SendFlags::from_metadata("l").is_err(),
            "case matters: -l is not -L"
        );
        assert!(SendFlags::from_metadata("cc").is_err());
        assert!(SendFlags::from_metadata("R").is_err());
    }

    #[test]
    fn args_are_in_a_fixed_order_and_raw_implies_the_rest() {
        let flags = SendFlags {
            embedded: true,
            compressed: true,
            ..SendFlags::NONE
        };
        assert_eq!(flags.args(), ["-c", "-e"]);
        assert_eq!(flags.to_string(), "-c -e");
        assert_eq!(SendFlags::NONE.to_string(), "none");
        let raw = SendFlags {
            raw: true,
            ..SendFlags::NONE
        };
        assert_eq!(raw.effective(), SendFlags::ALL);
        assert_eq!(flags.effective(), flags);
        assert_eq!(SendFlags::ALL.without(flags).to_metadata(), "wL");
        assert_eq!(SendFlags::ALL.without(flags).with(flags), SendFlags::ALL);
        assert_eq!(SendFlags::ALL.both(flags), flags);
        assert_eq!(raw.both(flags), SendFlags::NONE);
    }
}

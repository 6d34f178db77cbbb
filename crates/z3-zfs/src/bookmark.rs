//! Bookmark names and listed bookmarks (OpenZFS only; zfs-fuse 0.7 has none).
//!
//! A bookmark `pool/fs#name` records the guid, createtxg and creation time of the snapshot it
//! was made from, and survives that snapshot's destruction. It can be the base of an
//! incremental send (`zfs send -i pool/fs#name pool/fs@later`), never the target of one.

use std::fmt;

use z3_core::names::MAX_NAME_LEN;
use z3_core::{DatasetName, FullSnapshotName, SnapshotName};

use crate::error::{Error, ErrorKind};

/// A validated bookmark name, `dataset#bookmark`.
///
/// The short name follows the same rules as a snapshot's (OpenZFS checks both with
/// `zfs_component_namecheck`), so it is kept as a [`SnapshotName`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FullBookmarkName {
    dataset: DatasetName,
    name: SnapshotName,
}

impl FullBookmarkName {
    /// Joins a dataset and a short bookmark name.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] when `dataset#name` is longer than ZFS allows.
    pub fn new(dataset: DatasetName, name: SnapshotName) -> Result<Self, Error> {
        let len = dataset.as_str().len() + 1 + name.as_str().len();
        if len > MAX_NAME_LEN {
            return Err(Error::new(
                ErrorKind::InvalidName,
                format!(
                    "invalid bookmark name '{dataset}#{name}': longer than {MAX_NAME_LEN} bytes"
                ),
            ));
        }
        Ok(Self { dataset, name })
    }

    /// The bookmark named like `snapshot`, in the same dataset: `pool/fs@a` gives `pool/fs#a`.
    #[must_use]
    pub fn of(snapshot: &FullSnapshotName) -> Self {
        // Same length as the snapshot's full name, which is within the limit.
        Self {
            dataset: snapshot.dataset().clone(),
            name: snapshot.snapshot().clone(),
        }
    }

    /// Parses `dataset#bookmark`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] when there is no `#` or either part is invalid.
    pub fn parse(name: &str) -> Result<Self, Error> {
        let invalid = |reason: String| {
            Error::new(
                ErrorKind::InvalidName,
                format!("invalid bookmark name {name:?}: {reason}"),
            )
        };
        let (dataset, short) = name
            .split_once('#')
            .ok_or_else(|| invalid("missing '#'".to_owned()))?;
        let dataset = DatasetName::new(dataset).map_err(|e| invalid(e.to_string()))?;
        let short = SnapshotName::new(short).map_err(|e| invalid(e.to_string()))?;
        Self::new(dataset, short)
    }

    /// The dataset the bookmark belongs to.
    #[must_use]
    pub fn dataset(&self) -> &DatasetName {
        &self.dataset
    }

    /// The short name after `#`.
    #[must_use]
    pub fn name(&self) -> &SnapshotName {
        &self.name
    }
}

impl fmt::Display for FullBookmarkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.dataset, self.name)
    }
}

/// One bookmark of a dataset, as [`Zfs::list_bookmarks`](crate::Zfs::list_bookmarks) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalBookmark {
    /// `dataset#bookmark`.
    pub name: FullBookmarkName,
    /// The guid of the snapshot it was made from: an incremental stream sent from the bookmark
    /// applies on a receiver whose latest snapshot has this guid.
    pub guid: u64,
    /// That snapshot's createtxg.
    pub createtxg: u64,
    /// That snapshot's creation time in Unix seconds, `None` when not reported.
    pub creation: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_display_and_of() {
        let b = FullBookmarkName::parse("pool/fs#sp ace").unwrap();
        assert_eq!(b.dataset().as_str(), "pool/fs");
        assert_eq!(b.name().as_str(), "sp ace");
        assert_eq!(b.to_string(), "pool/fs#sp ace");
        let s = FullSnapshotName::parse("pool/fs@a").unwrap();
        assert_eq!(FullBookmarkName::of(&s).to_string(), "pool/fs#a");
    }

    #[test]
    fn parse_refuses_bad_names() {
        for name in [
            "pool/fs",
            "pool/fs@a",
            "pool/fs#",
            "#a",
            "pool/fs#a#b",
            "pool/fs#a@b",
            "pool/fs#a/b",
        ] {
            let e = FullBookmarkName::parse(name).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidName, "{name}");
        }
        let long = format!("pool/{}#{}", "d".repeat(200), "b".repeat(60));
        assert_eq!(
            FullBookmarkName::parse(&long).unwrap_err().kind(),
            ErrorKind::InvalidName
        );
    }
}

//! Local snapshots as `zfs` reports them, and the prefix-filtered local chain.
//!
//! The original z3 never asks ZFS which snapshot an incremental stream is based on: it takes
//! the local snapshots in `zfs list` order, keeps those whose short name starts with
//! `SNAPSHOT_PREFIX`, and treats each kept snapshot as the child of the previous kept one
//! (docs/compatibility.md, "Local snapshot chain"). [`LocalChain`] is that list, computed once so
//! that backup, restore and status all agree on it.

use std::collections::HashMap;

use crate::names::{DatasetName, FullSnapshotName};

/// One snapshot of the local pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSnapshot {
    /// `dataset@snapshot`.
    pub name: FullSnapshotName,
    /// The snapshot's `guid` property: identical on every pool that received it.
    pub guid: u64,
    /// The transaction group that created it: orders snapshots of one dataset.
    pub createtxg: u64,
    /// The `creation` property in Unix seconds, `None` when it was not reported. Its
    /// resolution is one second, so order snapshots by `createtxg`, never by this.
    pub creation: Option<i64>,
}

/// A matching local snapshot together with its incremental base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEntry {
    /// The snapshot itself.
    pub snapshot: LocalSnapshot,
    /// The previous matching snapshot of the same list, i.e. the base an incremental
    /// `zfs send -i` of this snapshot uses. `None` for the oldest matching snapshot.
    pub parent: Option<FullSnapshotName>,
}

impl LocalEntry {
    /// The full name `dataset@snapshot` of this entry.
    #[must_use]
    pub fn name(&self) -> &FullSnapshotName {
        &self.snapshot.name
    }
}

/// The matching local snapshots of one dataset, oldest first, each linked to the previous one.
///
/// Lookups by name are `O(1)`: restore planning asks "is this present locally?" once per
/// chain link, and chains can be long when nobody takes periodic full backups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalChain {
    entries: Vec<LocalEntry>,
    /// Full name text (`ds@snap`) to position in `entries`.
    index: HashMap<String, usize>,
}

impl LocalChain {
    /// Builds the chain from `snapshots` in `zfs list` order (createtxg order, one dataset).
    ///
    /// Keeps the snapshots whose short name (after `@`) starts with `prefix`; each kept entry's
    /// parent is the previous kept one (docs/compatibility.md, "Local snapshot chain"), so
    /// non-matching snapshots in between (such as the fixture's `funky_name`) are skipped rather
    /// than breaking the chain.
    ///
    /// The list is trusted to hold a single dataset, as the original did after filtering;
    /// use [`LocalChain::for_dataset`] when it may hold several. A repeated full name is
    /// kept only once (the first time), since ZFS cannot list the same snapshot twice.
    #[must_use]
    pub fn new(snapshots: &[LocalSnapshot], prefix: &str) -> Self {
        Self::build(snapshots.iter(), prefix)
    }

    /// Like [`LocalChain::new`], but first drops snapshots of datasets other than `dataset`.
    ///
    /// `zfs list -t snapshot` without a dataset argument reports every dataset of every pool,
    /// and child datasets must not be mixed into the parent's chain.
    #[must_use]
    pub fn for_dataset(snapshots: &[LocalSnapshot], dataset: &DatasetName, prefix: &str) -> Self {
        Self::build(
            snapshots.iter().filter(|s| s.name.dataset() == dataset),
            prefix,
        )
    }

    fn build<'a>(snapshots: impl Iterator<Item = &'a LocalSnapshot>, prefix: &str) -> Self {
        let mut chain = Self::default();
        for snapshot in snapshots {
            if !snapshot.name.snapshot().as_str().starts_with(prefix) {
                continue;
            }
            let key = snapshot.name.to_string();
            if chain.index.contains_key(&key) {
                continue;
            }
            let parent = chain.entries.last().map(|e| e.snapshot.name.clone());
            chain.index.insert(key, chain.entries.len());
            chain.entries.push(LocalEntry {
                snapshot: snapshot.clone(),
                parent,
            });
        }
        chain
    }

    /// All entries, oldest first.
    #[must_use]
    pub fn entries(&self) -> &[LocalEntry] {
        &self.entries
    }

    /// The newest matching snapshot: the default target of `z3 backup`.
    #[must_use]
    pub fn latest(&self) -> Option<&LocalEntry> {
        self.entries.last()
    }

    /// The entry named `name`, if it is among the matching snapshots.
    #[must_use]
    pub fn get(&self, name: &FullSnapshotName) -> Option<&LocalEntry> {
        self.find(&name.to_string())
    }

    /// The entry whose full name text is `full_name` (`"ds@snap"`).
    ///
    /// Takes text because S3 metadata carries names as unvalidated strings.
    #[must_use]
    pub fn find(&self, full_name: &str) -> Option<&LocalEntry> {
        self.position(full_name).map(|i| &self.entries[i])
    }

    /// The position of `full_name` in [`LocalChain::entries`].
    #[must_use]
    pub fn position(&self, full_name: &str) -> Option<usize> {
        self.index.get(full_name).copied()
    }

    /// Whether a matching local snapshot has the full name text `full_name` (`"ds@snap"`).
    #[must_use]
    pub fn contains(&self, full_name: &str) -> bool {
        self.index.contains_key(full_name)
    }

    /// Whether no local snapshot matched.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many local snapshots matched.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snaps(names: &[&str]) -> Vec<LocalSnapshot> {
        names
            .iter()
            .zip(1..)
            .map(|(n, txg)| LocalSnapshot {
                name: FullSnapshotName::parse(n).unwrap(),
                guid: txg * 1000,
                createtxg: txg,
                creation: None,
            })
            .collect()
    }

    fn pairs(chain: &LocalChain) -> Vec<(String, Option<String>)> {
        chain
            .entries()
            .iter()
            .map(|e| {
                (
                    e.name().to_string(),
                    e.parent.as_ref().map(ToString::to_string),
                )
            })
            .collect()
    }

    #[test]
    fn skips_non_matching_and_links_to_previous_kept() {
        let chain = LocalChain::new(&snaps(&["p/fs@a_1", "p/fs@other", "p/fs@a_2"]), "a_");
        assert_eq!(
            pairs(&chain),
            vec![
                ("p/fs@a_1".to_owned(), None),
                ("p/fs@a_2".to_owned(), Some("p/fs@a_1".to_owned())),
            ]
        );
        assert_eq!(chain.len(), 2);
        assert_eq!(chain.latest().unwrap().name().to_string(), "p/fs@a_2");
        assert!(chain.contains("p/fs@a_1"));
        assert!(!chain.contains("p/fs@other"));
        assert_eq!(chain.position("p/fs@a_2"), Some(1));
        let name = FullSnapshotName::parse("p/fs@a_2").unwrap();
        assert_eq!(chain.get(&name).unwrap().snapshot.createtxg, 3);
    }

    #[test]
    fn empty_prefix_keeps_everything_and_empty_input_is_empty() {
        assert_eq!(LocalChain::new(&snaps(&["p@x", "p@y"]), "").len(), 2);
        let empty = LocalChain::new(&[], "a");
        assert!(empty.is_empty());
        assert!(empty.latest().is_none());
    }

    #[test]
    fn for_dataset_excludes_other_and_child_datasets() {
        let all = snaps(&["p@s1", "p/fs@s1", "p/fs/child@s2", "p/fs@s3"]);
        let ds = DatasetName::new("p/fs").unwrap();
        let chain = LocalChain::for_dataset(&all, &ds, "s");
        assert_eq!(
            pairs(&chain),
            vec![
                ("p/fs@s1".to_owned(), None),
                ("p/fs@s3".to_owned(), Some("p/fs@s1".to_owned())),
            ]
        );
    }

    #[test]
    fn duplicate_names_are_kept_once() {
        let chain = LocalChain::new(&snaps(&["p@s1", "p@s1", "p@s2"]), "s");
        assert_eq!(chain.len(), 2);
        assert_eq!(
            chain.entries()[1].parent.as_ref().unwrap().to_string(),
            "p@s1"
        );
    }
}

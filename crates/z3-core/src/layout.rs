//! Where snapshots live in the bucket: `<prefix><dataset>@<snapshot>` (spec §3.1).
//!
//! The key scheme is the compatibility contract with the original z3: a backup written by one
//! tool is found and restored by the other only if both build keys identically, so the
//! normalisation quirks below are kept on purpose.

use crate::names::{DatasetName, FullSnapshotName};

/// The normalised `--s3-prefix` / `S3_PREFIX`, and the keys derived from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyLayout {
    prefix: String,
}

impl KeyLayout {
    /// Normalises `raw_prefix` to end with exactly one `/`: all trailing slashes are removed,
    /// then one is added, so `enc///` becomes `enc/`.
    ///
    /// An empty prefix (or one made only of slashes) becomes `/`, so keys start with `/`. That
    /// is odd, but it is what the original did, and changing it would hide existing backups made
    /// with `S3_PREFIX=""`.
    #[must_use]
    pub fn new(raw_prefix: &str) -> Self {
        let mut prefix = raw_prefix.trim_end_matches('/').to_owned();
        prefix.push('/');
        Self { prefix }
    }

    /// The normalised prefix, always ending with `/`.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The object key of a snapshot: prefix + `ds@snap`.
    #[must_use]
    pub fn key(&self, name: &FullSnapshotName) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The listing prefix for one dataset and snapshot prefix: prefix + `ds@` + `snapshot_prefix`.
    ///
    /// Listing with it returns exactly the objects z3 considers, so a parent outside it (another
    /// snapshot prefix) counts as missing, as in the original.
    #[must_use]
    pub fn list_prefix(&self, dataset: &DatasetName, snapshot_prefix: &str) -> String {
        format!("{}{dataset}@{snapshot_prefix}", self.prefix)
    }

    /// The key of the backup lock of `dataset`: prefix + `.z3-locks/` + dataset. No listing of
    /// snapshots (prefix + `ds@…`) can contain it, since pool names begin with a letter; the
    /// original z3 never sees it either.
    #[must_use]
    pub fn lock_key(&self, dataset: &DatasetName) -> String {
        format!("{}.z3-locks/{dataset}", self.prefix)
    }

    /// The key of the seal of `name` (see [`crate::seal`]): prefix + `.z3-seals/` + `ds@snap`.
    /// Outside every snapshot listing, like the lock.
    #[must_use]
    pub fn seal_key(&self, name: &str) -> String {
        format!("{}{SEALS_DIR}{name}", self.prefix)
    }

    /// The listing prefix of the seals of one dataset and snapshot prefix.
    #[must_use]
    pub fn seal_list_prefix(&self, dataset: &DatasetName, snapshot_prefix: &str) -> String {
        format!("{}{SEALS_DIR}{dataset}@{snapshot_prefix}", self.prefix)
    }

    /// The snapshot name (`ds@snap`) a seal key belongs to.
    #[must_use]
    pub fn name_of_seal<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.prefix.as_str())?
            .strip_prefix(SEALS_DIR)
    }

    /// The snapshot name (`ds@snap`) of `key`: the key minus the prefix, or `None` if the key is
    /// not under the prefix.
    #[must_use]
    pub fn name_of<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.prefix.as_str())
    }
}

/// Where seals live, below the prefix.
const SEALS_DIR: &str = ".z3-seals/";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_table() {
        let cases = [
            ("z3-backup/", "z3-backup/"),
            ("z3-backup", "z3-backup/"),
            ("enc///", "enc/"),
            ("a/b", "a/b/"),
            ("/abs/", "/abs/"),
            ("", "/"),
            ("///", "/"),
        ];
        for (raw, expected) in cases {
            assert_eq!(KeyLayout::new(raw).prefix(), expected, "{raw:?}");
        }
    }

    #[test]
    fn keys_and_names() {
        let layout = KeyLayout::new("z3-backup");
        let name = FullSnapshotName::parse("pool/fs@zfs-auto-snap:daily-2024-01-01").unwrap();
        let key = layout.key(&name);
        assert_eq!(key, "z3-backup/pool/fs@zfs-auto-snap:daily-2024-01-01");
        assert_eq!(
            layout.name_of(&key),
            Some("pool/fs@zfs-auto-snap:daily-2024-01-01")
        );
        assert_eq!(layout.name_of("other/pool/fs@x"), None);
        let ds = DatasetName::new("pool/fs").unwrap();
        assert_eq!(
            layout.list_prefix(&ds, "zfs-auto-snap:daily"),
            "z3-backup/pool/fs@zfs-auto-snap:daily"
        );
        assert_eq!(
            KeyLayout::new("").key(&name),
            "/pool/fs@zfs-auto-snap:daily-2024-01-01"
        );
    }
}

//! Where snapshots live in the bucket: `<prefix><dataset>@<snapshot>` (docs/compatibility.md, "Key layout").
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

    /// The key of the journal of an interrupted upload of `name`, kept so that the next backup
    /// can resume it (ADR 4): prefix + `.z3-journal/` + `ds@snap`. Outside every snapshot
    /// listing, like the lock and the seals.
    #[must_use]
    pub fn journal_key(&self, name: &FullSnapshotName) -> String {
        format!("{}{JOURNAL_DIR}{name}", self.prefix)
    }

    /// The listing prefix of every journal under this prefix.
    #[must_use]
    pub fn journal_prefix(&self) -> String {
        format!("{}{JOURNAL_DIR}", self.prefix)
    }

    /// The key of the seal of `name` (see [`crate::seal`]): prefix + `.z3-seals/` + `ds@snap`,
    /// followed by `@<upload>` for objects that record the token of the upload that made them
    /// (every object z3 writes since per-upload seals; see ADR 3). Outside every snapshot
    /// listing, like the lock.
    ///
    /// One seal per upload means a seal is never overwritten: a re-upload's seal goes to a new
    /// key before its completion, and the object in place keeps naming its own seal until the
    /// completion replaces it, so object and seal agree after a crash at any point. A snapshot
    /// name has one `@`, so the token after a second one is unambiguous.
    #[must_use]
    pub fn seal_key(&self, name: &str, upload: Option<&str>) -> String {
        match upload {
            Some(token) => format!("{}{SEALS_DIR}{name}@{token}", self.prefix),
            None => format!("{}{SEALS_DIR}{name}", self.prefix),
        }
    }

    /// The key of the seal `object` names: [`Self::seal_key`] with its upload token.
    #[must_use]
    pub fn seal_key_of(&self, object: &crate::RemoteSnapshot) -> String {
        self.seal_key(&object.name, object.meta.upload.as_deref())
    }

    /// The listing prefix of the seals of one dataset and snapshot prefix.
    #[must_use]
    pub fn seal_list_prefix(&self, dataset: &DatasetName, snapshot_prefix: &str) -> String {
        format!("{}{SEALS_DIR}{dataset}@{snapshot_prefix}", self.prefix)
    }

    /// The snapshot name (`ds@snap`) and upload token (if any) a seal key belongs to.
    #[must_use]
    pub fn name_of_seal<'a>(&self, key: &'a str) -> Option<(&'a str, Option<&'a str>)> {
        let id = key
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(SEALS_DIR)?;
        let at = id.find('@')?;
        Some(match id[at + 1..].rfind('@') {
            Some(second) => (&id[..at + 1 + second], Some(&id[at + 2 + second..])),
            None => (id, None),
        })
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
/// Where the journals of interrupted uploads live, below the prefix.
const JOURNAL_DIR: &str = ".z3-journal/";

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
        assert_eq!(
            layout.journal_key(&name),
            "z3-backup/.z3-journal/pool/fs@zfs-auto-snap:daily-2024-01-01"
        );
        assert!(
            layout
                .journal_key(&name)
                .starts_with(&layout.journal_prefix())
        );
        assert!(
            !layout
                .journal_key(&name)
                .starts_with(&layout.list_prefix(&ds, ""))
        );
    }

    #[test]
    fn seal_keys_round_trip_with_and_without_an_upload_token() {
        let layout = KeyLayout::new("z3-backup/");
        let legacy = layout.seal_key("pool/fs@daily 1", None);
        assert_eq!(legacy, "z3-backup/.z3-seals/pool/fs@daily 1");
        assert_eq!(
            layout.name_of_seal(&legacy),
            Some(("pool/fs@daily 1", None))
        );
        let per_upload = layout.seal_key("pool/fs@daily:1", Some("0123abcd"));
        assert_eq!(per_upload, "z3-backup/.z3-seals/pool/fs@daily:1@0123abcd");
        assert_eq!(
            layout.name_of_seal(&per_upload),
            Some(("pool/fs@daily:1", Some("0123abcd")))
        );
        let ds = DatasetName::new("pool/fs").unwrap();
        assert!(per_upload.starts_with(&layout.seal_list_prefix(&ds, "daily")));
        assert_eq!(layout.name_of_seal("z3-backup/pool/fs@x"), None);
        assert_eq!(layout.name_of_seal("z3-backup/.z3-seals/no-at"), None);
    }
}

//! The backup as seen in the bucket: one object per snapshot, with its user metadata.
//!
//! z3 keeps no manifest: everything it knows about an object is in four `x-amz-meta-*` headers
//! (docs/compatibility.md, "Object metadata"). [`ObjectMeta`] reads and writes them in the exact
//! form the original used, so that both tools can restore each other's backups.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::health::{self, Health, HealthMap};

/// Metadata key of the uncompressed stream size estimate.
pub const META_SIZE: &str = "size";
/// Metadata key marking full backups (value `true`).
pub const META_IS_FULL: &str = "isfull";
/// Legacy spelling of [`META_IS_FULL`], written by z3 up to 0.1.15 and still honoured.
pub const META_IS_FULL_LEGACY: &str = "is_full";
/// Metadata key holding the full name (`ds@snap`) of an incremental's base.
pub const META_PARENT: &str = "parent";
/// Metadata key naming the compressor the stream went through (`pigz1`, `pigz4`, `gpg`).
pub const META_COMPRESSOR: &str = "compressor";

/// Metadata key naming the encryption applied after compression (`age`); z3 only, the original
/// z3 never wrote it.
pub const META_ENCRYPTION: &str = "encryption";

/// Metadata key holding the snapshot's ZFS `guid` (z3 only): identifies the snapshot itself, not
/// just its name, so a destroyed and re-created snapshot of the same name is told apart.
pub const META_GUID: &str = "guid";
/// Metadata key holding the incremental base's ZFS `guid` (z3 only).
pub const META_PARENT_GUID: &str = "parent-guid";
/// Metadata key holding the snapshot's ZFS `creation` time, Unix seconds (z3 only): the time a
/// retention policy judges the backup by, with no local snapshot to ask.
pub const META_CREATED: &str = "created";
/// Metadata key holding the random token of the upload that made the object (z3 only, written
/// by the uploader itself): it names the object's seal, and tells z3 whether an object is the
/// one its own completion made when the completion's answer was lost.
pub const META_UPLOAD: &str = "z3-upload";
/// Metadata key holding the optional `zfs send` flags the stream was made with, as letters
/// (`w`, `c`, `L`, `e`; z3 only, written only when there are some): a chain's incrementals
/// are sent with its full's flags, and restore refuses flags the local zfs cannot receive.
pub const META_SEND_FLAGS: &str = "send-flags";

/// The z3 user metadata of one object.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ObjectMeta {
    /// `zfs send -nvP` estimate of the uncompressed stream, in bytes.
    pub size: Option<u64>,
    /// Whether the object is a full stream; otherwise it is an incremental.
    pub is_full: bool,
    /// Full name (`ds@snap`) of the incremental base, as written (never validated).
    pub parent: Option<String>,
    /// Compressor the stream went through; `None` means stored as sent.
    pub compressor: Option<String>,
    /// Encryption applied after compression (`age`); `None` means not encrypted by z3.
    pub encryption: Option<String>,
    /// The snapshot's `guid` when z3 wrote the object; `None` for the original's objects.
    pub guid: Option<u64>,
    /// The base's `guid` for incrementals z3 wrote.
    pub parent_guid: Option<u64>,
    /// The token of the upload that made the object ([`META_UPLOAD`]); `None` for the
    /// original's objects and for z3's before per-upload seals.
    pub upload: Option<String>,
    /// The snapshot's `creation` time (Unix seconds) when z3 wrote the object and knew it.
    pub created: Option<i64>,
    /// The `zfs send` flags as letters ([`META_SEND_FLAGS`]), as written (parsed by whoever
    /// sends or receives); `None` for a plain send and for the original's objects.
    pub send_flags: Option<String>,
}

impl ObjectMeta {
    /// Reads S3 user metadata: keys without `x-amz-meta-` (compared case-insensitively, since
    /// S3 servers lower-case them anyway).
    ///
    /// `is_full` holds iff `isfull` or the legacy `is_full` is exactly `"true"`; anything else,
    /// including `isfull=false` and no metadata at all, means incremental (docs/compatibility.md,
    /// "Object metadata").
    /// An unparsable `size` becomes `None`, since it is only shown to humans. Unknown keys are
    /// ignored.
    #[must_use]
    pub fn from_map(map: &BTreeMap<String, String>) -> Self {
        let mut meta = Self::default();
        for (key, value) in map {
            match key.to_ascii_lowercase().as_str() {
                META_SIZE => meta.size = value.trim().parse().ok(),
                META_IS_FULL | META_IS_FULL_LEGACY => meta.is_full |= value == "true",
                META_PARENT => meta.parent = Some(value.clone()),
                META_COMPRESSOR => meta.compressor = Some(value.clone()),
                META_ENCRYPTION => meta.encryption = Some(value.clone()),
                META_GUID => meta.guid = value.trim().parse().ok(),
                META_PARENT_GUID => meta.parent_guid = value.trim().parse().ok(),
                META_UPLOAD => meta.upload = Some(value.clone()),
                META_CREATED => meta.created = value.trim().parse().ok(),
                META_SEND_FLAGS => meta.send_flags = Some(value.clone()),
                _ => {}
            }
        }
        meta
    }

    /// The metadata to write: `size` (if known), `isfull=true` for fulls only, `parent` (if
    /// any) and `compressor` (if any), exactly as the original `pput --meta` calls did, plus
    /// `encryption` (if any), which only z3 writes.
    #[must_use]
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        if let Some(size) = self.size {
            map.insert(META_SIZE.to_owned(), size.to_string());
        }
        if self.is_full {
            map.insert(META_IS_FULL.to_owned(), "true".to_owned());
        }
        if let Some(parent) = &self.parent {
            map.insert(META_PARENT.to_owned(), parent.clone());
        }
        if let Some(compressor) = &self.compressor {
            map.insert(META_COMPRESSOR.to_owned(), compressor.clone());
        }
        if let Some(encryption) = &self.encryption {
            map.insert(META_ENCRYPTION.to_owned(), encryption.clone());
        }
        if let Some(guid) = self.guid {
            map.insert(META_GUID.to_owned(), guid.to_string());
        }
        if let Some(guid) = self.parent_guid {
            map.insert(META_PARENT_GUID.to_owned(), guid.to_string());
        }
        if let Some(upload) = &self.upload {
            map.insert(META_UPLOAD.to_owned(), upload.clone());
        }
        if let Some(created) = self.created {
            map.insert(META_CREATED.to_owned(), created.to_string());
        }
        if let Some(flags) = self.send_flags.as_ref().filter(|f| !f.is_empty()) {
            map.insert(META_SEND_FLAGS.to_owned(), flags.clone());
        }
        map
    }
}

/// One object of the backup listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RemoteSnapshot {
    /// The full S3 key.
    pub key: String,
    /// The key minus the prefix, e.g. `pool/fs@snap`. Not validated: the bucket may hold
    /// objects that no ZFS name could produce.
    pub name: String,
    /// The object's real length (`Content-Length`); differs from `meta.size` when compressed.
    pub object_size: u64,
    /// The z3 metadata.
    pub meta: ObjectMeta,
    /// The object's ETag as the listing saw it, when known: a replacement of this very object
    /// is made conditional on it (`If-Match`), so an object written meanwhile is never replaced
    /// unseen.
    #[serde(skip)]
    pub etag: Option<String>,
}

/// The part after the first `@`, or the whole text when there is none.
///
/// The original crashed on parents without `@` (docs/compatibility.md, bug 5); showing them whole
/// keeps foreign objects visible instead.
fn short(name: &str) -> &str {
    name.split_once('@').map_or(name, |(_, snapshot)| snapshot)
}

impl RemoteSnapshot {
    /// Whether `self`, an incremental, records a base guid other than the guid of `parent`,
    /// the object its `parent` names: the base object was replaced after `self` was made (a
    /// destroyed and re-created snapshot of the same name, uploaded over it), so `self` no
    /// longer applies on top of what the bucket holds. `Some((recorded, found))` then; `None`
    /// when they agree or either guid is unknown (the original z3 records none).
    #[must_use]
    pub fn replaced_base(&self, parent: &RemoteSnapshot) -> Option<(u64, u64)> {
        match (self.meta.parent_guid, parent.meta.guid) {
            (Some(recorded), Some(found)) if recorded != found => Some((recorded, found)),
            _ => None,
        }
    }

    /// The snapshot name without `dataset@`, or the whole name when it has no `@`.
    #[must_use]
    pub fn short_name(&self) -> &str {
        short(&self.name)
    }

    /// The parent's name without `dataset@` (the whole value when it has no `@`).
    #[must_use]
    pub fn parent_short_name(&self) -> Option<&str> {
        self.meta.parent.as_deref().map(short)
    }
}

/// The listing of one dataset and snapshot prefix, sorted by name, with health precomputed.
///
/// Health is a property of the whole listing (a parent outside it counts as missing), so it is
/// computed once here rather than per query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteIndex {
    objects: Vec<RemoteSnapshot>,
    by_name: HashMap<String, usize>,
    health: HealthMap,
    /// `(ds@snap, upload token)` of every seal, when the seals were listed.
    sealed: Option<HashSet<(String, Option<String>)>>,
}

impl RemoteIndex {
    /// Sorts `objects` by name and computes their health.
    ///
    /// If several objects share a name (impossible for one S3 prefix), only the first is kept.
    #[must_use]
    pub fn new(mut objects: Vec<RemoteSnapshot>) -> Self {
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        objects.dedup_by(|later, earlier| later.name == earlier.name);
        let by_name = objects
            .iter()
            .enumerate()
            .map(|(i, o)| (o.name.clone(), i))
            .collect();
        let health = health::check(&objects);
        Self {
            objects,
            by_name,
            health,
            sealed: None,
        }
    }

    /// Records which seals exist: `(ds@snap, upload token)` of each key of the seal listing
    /// (see [`KeyLayout::name_of_seal`](crate::KeyLayout::name_of_seal)); only presence, the
    /// seals themselves are read when their digests are needed.
    #[must_use]
    pub fn with_seals<I: IntoIterator<Item = (String, Option<String>)>>(
        mut self,
        seals: I,
    ) -> Self {
        self.sealed = Some(seals.into_iter().collect());
        self
    }

    /// Whether `name` is an object written by z3 (it records a `guid`) whose own seal (the one
    /// its upload token names) is missing. Always `false` when the seals were not listed, and
    /// for the original's objects, which have none.
    #[must_use]
    pub fn is_unsealed(&self, name: &str) -> bool {
        match (&self.sealed, self.get(name)) {
            (Some(sealed), Some(object)) => {
                object.meta.guid.is_some()
                    && !sealed.contains(&(name.to_owned(), object.meta.upload.clone()))
            }
            _ => false,
        }
    }

    /// The object named `name` (`ds@snap`).
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&RemoteSnapshot> {
        self.by_name.get(name).map(|&i| &self.objects[i])
    }

    /// All objects, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &RemoteSnapshot> {
        self.objects.iter()
    }

    /// All objects as a slice, sorted by name.
    #[must_use]
    pub fn as_slice(&self) -> &[RemoteSnapshot] {
        &self.objects
    }

    /// Number of objects.
    #[must_use]
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether the listing is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The health of the object named `name`, if it is in the listing.
    #[must_use]
    pub fn health(&self, name: &str) -> Option<&Health> {
        self.health.get(name)
    }

    /// The health of every object.
    #[must_use]
    pub fn health_map(&self) -> &HealthMap {
        &self.health
    }

    /// How many objects a restore of `name` receives: itself and its parents down to a full;
    /// `None` when `name` is not listed or its chain is not healthy.
    #[must_use]
    pub fn restore_depth(&self, name: &str) -> Option<usize> {
        if !self.health(name)?.is_healthy() {
            return None;
        }
        let mut depth = 1;
        let mut current = self.get(name)?;
        while !current.meta.is_full {
            current = self.get(current.meta.parent.as_deref()?)?;
            depth += 1;
            // A healthy chain has no cycle; the bound only guards against a disagreement.
            if depth > self.len() {
                return None;
            }
        }
        Some(depth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn from_map_cases() {
        let cases: &[(&[(&str, &str)], ObjectMeta)] = &[
            (&[], ObjectMeta::default()),
            (
                &[
                    ("isfull", "true"),
                    ("size", "12582912"),
                    ("compressor", "pigz4"),
                ],
                ObjectMeta {
                    size: Some(12_582_912),
                    is_full: true,
                    parent: None,
                    compressor: Some("pigz4".into()),
                    encryption: None,
                    ..ObjectMeta::default()
                },
            ),
            (
                &[("is_full", "true")],
                ObjectMeta {
                    is_full: true,
                    ..ObjectMeta::default()
                },
            ),
            (&[("isfull", "false")], ObjectMeta::default()),
            (&[("isfull", "True")], ObjectMeta::default()),
            (&[("size", "12 M"), ("other", "x")], ObjectMeta::default()),
            (
                &[
                    ("parent", "pool/fs@a"),
                    ("isfull", "false"),
                    ("Size", " 7 "),
                ],
                ObjectMeta {
                    size: Some(7),
                    parent: Some("pool/fs@a".into()),
                    ..ObjectMeta::default()
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(&ObjectMeta::from_map(&map(input)), expected, "{input:?}");
        }
    }

    #[test]
    fn to_map_writes_original_keys_and_round_trips() {
        let full = ObjectMeta {
            size: Some(1234),
            is_full: true,
            parent: None,
            compressor: Some("pigz1".into()),
            encryption: None,
            ..ObjectMeta::default()
        };
        assert_eq!(
            full.to_map(),
            map(&[
                ("size", "1234"),
                ("isfull", "true"),
                ("compressor", "pigz1")
            ])
        );
        let inc = ObjectMeta {
            size: None,
            is_full: false,
            parent: Some("pool/fs@snap_3".into()),
            compressor: None,
            encryption: None,
            ..ObjectMeta::default()
        };
        assert_eq!(inc.to_map(), map(&[("parent", "pool/fs@snap_3")]));
        let sealed = ObjectMeta {
            size: Some(5),
            is_full: true,
            parent: None,
            compressor: Some("zstd".into()),
            encryption: Some("age".into()),
            guid: Some(17_509_345_283_761_234_567),
            parent_guid: None,
            upload: None,
            created: Some(1_795_735_040),
            send_flags: None,
        };
        assert_eq!(
            sealed.to_map(),
            map(&[
                ("size", "5"),
                ("isfull", "true"),
                ("compressor", "zstd"),
                ("encryption", "age"),
                ("guid", "17509345283761234567"),
                ("created", "1795735040")
            ])
        );
        assert_eq!(ObjectMeta::from_map(&sealed.to_map()), sealed);
        for meta in [full, inc, sealed, ObjectMeta::default()] {
            assert_eq!(ObjectMeta::from_map(&meta.to_map()), meta);
        }
    }

    fn object(name: &str, parent: Option<&str>) -> RemoteSnapshot {
        RemoteSnapshot {
            key: format!("z3-backup/{name}"),
            name: name.to_owned(),
            object_size: 1,
            meta: ObjectMeta {
                parent: parent.map(str::to_owned),
                ..ObjectMeta::default()
            },
            etag: None,
        }
    }

    #[test]
    fn short_names_never_panic() {
        let o = object("pool/fs@snap_4_mp", Some("missing_parent"));
        assert_eq!(o.short_name(), "snap_4_mp");
        assert_eq!(o.parent_short_name(), Some("missing_parent"));
        let o = object("no_at_sign", Some("a@b@c"));
        assert_eq!(o.short_name(), "no_at_sign");
        assert_eq!(o.parent_short_name(), Some("b@c"));
        assert_eq!(object("x@", None).short_name(), "");
        assert_eq!(object("x@", None).parent_short_name(), None);
    }

    #[test]
    fn index_sorts_dedups_and_looks_up() {
        let mut dup = object("p@b", None);
        dup.object_size = 99;
        let index = RemoteIndex::new(vec![object("p@c", None), object("p@b", None), dup]);
        let names: Vec<_> = index.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["p@b", "p@c"]);
        assert_eq!(index.len(), 2);
        assert_eq!(index.get("p@b").unwrap().object_size, 1);
        assert!(index.get("p@a").is_none());
        assert_eq!(index.health_map().len(), 2);
        assert!(index.health("p@a").is_none());
        assert!(RemoteIndex::new(Vec::new()).is_empty());
    }
}

//! What `z3 verify` checks without touching ZFS: which objects, and whether their chain holds.
//!
//! The bytes (digests) are checked by the CLI, which downloads; this module decides which
//! objects take part ([`chain_of`], [`sample`]) and checks the chain of each ([`continuity`]):
//! its parent chain reaches a full (the health check), and an incremental's recorded base guid
//! equals the guid of the object it builds on, so a base that was replaced after the
//! incremental was made is found.

use std::collections::{BTreeSet, HashSet};
use std::hash::{BuildHasher, Hasher};

use crate::remote::{RemoteIndex, RemoteSnapshot};

/// The objects a restore of `target` (`ds@snap`) from nothing needs, full first; `None` when
/// there is no such object. A missing parent or a cycle ends the walk (the chain check of the
/// last object reports it).
#[must_use]
pub fn chain_of<'a>(remote: &'a RemoteIndex, target: &str) -> Option<Vec<&'a RemoteSnapshot>> {
    let mut chain = vec![remote.get(target)?];
    let mut seen = HashSet::from([target]);
    while let Some(last) = chain.last() {
        if last.meta.is_full {
            break;
        }
        let Some(parent) = last.meta.parent.as_deref() else {
            break;
        };
        if !seen.insert(parent) {
            break;
        }
        match remote.get(parent) {
            Some(object) => chain.push(object),
            None => break,
        }
    }
    chain.reverse();
    Some(chain)
}

/// Whether `object`'s chain holds: `Err` with the reason if its parents do not reach a full
/// (the status table's health reason) or if it records a base guid other than its base
/// object's guid.
///
/// # Errors
/// The reason, for the report.
pub fn continuity(remote: &RemoteIndex, object: &RemoteSnapshot) -> Result<(), String> {
    // The object's own link first: its message names both guids.
    let parent = object
        .meta
        .parent
        .as_deref()
        .and_then(|name| remote.get(name))
        .filter(|_| !object.meta.is_full);
    if let Some((expected, actual)) = parent.and_then(|parent| object.replaced_base(parent)) {
        return Err(format!(
            "built on guid {expected}, but {} holds guid {actual} (the base was replaced)",
            object.meta.parent.as_deref().unwrap_or_default()
        ));
    }
    match remote.health(&object.name) {
        Some(health) if !health.is_healthy() => Err(format!("broken chain: {health}")),
        _ => Ok(()),
    }
}

/// Picks `percent` of `names` (at least one when any are given, all at 100), spread by
/// `seed`: the same seed picks the same objects.
#[must_use]
pub fn sample<'a>(names: &[&'a str], percent: f64, seed: u64) -> BTreeSet<&'a str> {
    if names.is_empty() {
        return BTreeSet::new();
    }
    let fraction = (percent / 100.0).clamp(0.0, 1.0);
    // At most names.len(), which came from a Vec: the casts cannot truncate.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let count = ((names.len() as f64 * fraction).ceil() as usize).clamp(1, names.len());
    let keyed = std::hash::BuildHasherDefault::<SeededHasher>::default();
    let mut ranked: Vec<(u64, &str)> = names
        .iter()
        .map(|name| {
            let mut hasher = keyed.build_hasher();
            hasher.write_u64(seed);
            hasher.write(name.as_bytes());
            (hasher.finish(), *name)
        })
        .collect();
    ranked.sort_unstable();
    ranked.into_iter().take(count).map(|(_, n)| n).collect()
}

/// FNV-1a with a final mix: stable across Rust versions, unlike `DefaultHasher`.
#[derive(Debug, Default)]
struct SeededHasher(u64);

impl Hasher for SeededHasher {
    fn write(&mut self, bytes: &[u8]) {
        if self.0 == 0 {
            self.0 = 0xcbf2_9ce4_8422_2325;
        }
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        // splitmix64's finaliser, so that neighbouring names land far apart.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::ObjectMeta;

    fn object(
        name: &str,
        parent: Option<&str>,
        guid: u64,
        parent_guid: Option<u64>,
    ) -> RemoteSnapshot {
        RemoteSnapshot {
            key: format!("p/{name}"),
            name: name.into(),
            object_size: 1,
            meta: ObjectMeta {
                is_full: parent.is_none(),
                parent: parent.map(str::to_owned),
                guid: Some(guid),
                parent_guid,
                ..ObjectMeta::default()
            },
            etag: None,
        }
    }

    fn index() -> RemoteIndex {
        RemoteIndex::new(vec![
            object("fs@a", None, 1, None),
            object("fs@b", Some("fs@a"), 2, Some(1)),
            object("fs@c", Some("fs@b"), 3, Some(2)),
            // Built on a b that was later replaced by another snapshot of that name.
            object("fs@d", Some("fs@b"), 4, Some(99)),
            object("fs@x", Some("fs@gone"), 5, Some(6)),
        ])
    }

    #[test]
    fn chains_run_from_the_full_to_the_target() {
        let remote = index();
        let names = |t: &str| {
            chain_of(&remote, t)
                .unwrap()
                .iter()
                .map(|o| o.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names("fs@c"), ["fs@a", "fs@b", "fs@c"]);
        assert_eq!(names("fs@a"), ["fs@a"]);
        assert_eq!(names("fs@x"), ["fs@x"]);
        assert!(chain_of(&remote, "fs@nope").is_none());
        // A cycle ends the walk instead of looping.
        let cyclic = RemoteIndex::new(vec![
            object("fs@p", Some("fs@q"), 1, None),
            object("fs@q", Some("fs@p"), 2, None),
        ]);
        assert_eq!(chain_of(&cyclic, "fs@p").unwrap().len(), 2);
    }

    #[test]
    fn continuity_finds_broken_chains_and_replaced_bases() {
        let remote = index();
        let check = |name: &str| continuity(&remote, remote.get(name).unwrap());
        assert_eq!(check("fs@a"), Ok(()));
        assert_eq!(check("fs@c"), Ok(()));
        assert_eq!(
            check("fs@d"),
            Err("built on guid 99, but fs@b holds guid 2 (the base was replaced)".into())
        );
        assert_eq!(check("fs@x"), Err("broken chain: missing parent".into()));
    }

    #[test]
    fn samples_are_deterministic_sized_and_spread() {
        let owned: Vec<String> = (0..200).map(|i| format!("fs@s{i:03}")).collect();
        let names: Vec<&str> = owned.iter().map(String::as_str).collect();
        assert_eq!(sample(&names, 10.0, 7).len(), 20);
        assert_eq!(sample(&names, 0.1, 7).len(), 1, "at least one");
        assert_eq!(sample(&names, 100.0, 7).len(), 200);
        assert_eq!(sample(&names, 10.0, 7), sample(&names, 10.0, 7));
        assert_ne!(sample(&names, 10.0, 7), sample(&names, 10.0, 8));
        assert!(sample(&[], 50.0, 1).is_empty());
        // Not just the first names in order.
        assert!(sample(&names, 10.0, 7).iter().any(|n| *n > "fs@s100"));
    }
}

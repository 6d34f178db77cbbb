//! Health of the objects in a backup listing: does each one's parent chain reach a full backup?
//!
//! Rules (docs/compatibility.md, "Health"), evaluated for every object of one listing:
//! - a full object is healthy;
//! - an incremental whose `parent` metadata is absent, or names no object of the listing, is
//!   broken with [`Reason::MissingParent`];
//! - an incremental on a cycle of `parent` links is broken with [`Reason::CycleDetected`];
//! - an incremental whose parent is broken is broken with [`Reason::CycleDetected`] if the
//!   parent's reason is a cycle, and with [`Reason::ParentBroken`] otherwise;
//! - z3 only: an incremental that records its base's guid (`parent-guid`) while its parent
//!   object records another `guid` is broken with [`Reason::ParentReplaced`]: the base object
//!   was overwritten by a backup of another snapshot of the same name, so the incremental no
//!   longer applies on top of it. Its descendants are [`Reason::ParentBroken`].
//!
//! The original walked the chain recursively and died with `RecursionError` beyond about 995
//! links (docs/compatibility.md, bug 4). [`check`] walks iteratively with an explicit path and
//! memoises every result, so the whole listing costs `O(n log n)` whatever the chain length.

use std::collections::BTreeMap;
use std::fmt;

use crate::remote::RemoteSnapshot;

/// Why an object is unhealthy. `Display` gives the original's exact reason strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The object's `parent` is absent or not in the listing: `missing parent`.
    MissingParent,
    /// The parent is broken for a reason other than a cycle: `parent broken`.
    ParentBroken,
    /// The object is on, or leads into, a cycle of `parent` links: `cycle detected`.
    CycleDetected,
    /// z3 only: the object records its base's guid, and the object its `parent` names has
    /// another guid (it was replaced after this one was made): `parent replaced`.
    ParentReplaced,
}

impl Reason {
    /// The reason as the original printed it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingParent => "missing parent",
            Self::ParentBroken => "parent broken",
            Self::CycleDetected => "cycle detected",
            Self::ParentReplaced => "parent replaced",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Health of one object. `Display` gives `ok` or the reason, as in the status table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Health {
    /// The parent chain reaches a full object inside the listing.
    Healthy,
    /// Restoring this object from the listing alone is impossible.
    Broken(Reason),
}

impl Health {
    /// Whether the object is [`Health::Healthy`].
    #[must_use]
    pub fn is_healthy(self) -> bool {
        matches!(self, Self::Healthy)
    }

    /// The reason, when broken.
    #[must_use]
    pub fn reason(self) -> Option<Reason> {
        match self {
            Self::Healthy => None,
            Self::Broken(reason) => Some(reason),
        }
    }

    /// The health of a child whose parent has health `self`.
    fn inherited(self) -> Self {
        match self {
            Self::Healthy => Self::Healthy,
            Self::Broken(Reason::CycleDetected) => Self::Broken(Reason::CycleDetected),
            Self::Broken(_) => Self::Broken(Reason::ParentBroken),
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Healthy => f.write_str("ok"),
            Self::Broken(reason) => reason.fmt(f),
        }
    }
}

/// The health of every object of a listing, by object name (`ds@snap`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthMap(BTreeMap<String, Health>);

impl HealthMap {
    /// The health of the object named `name`, if it is in the listing.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Health> {
        self.0.get(name)
    }

    /// All `(name, health)` pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Health)> {
        self.0.iter().map(|(name, health)| (name.as_str(), health))
    }

    /// Number of objects.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the listing was empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The broken objects and their reasons, sorted by name.
    pub fn broken(&self) -> impl Iterator<Item = (&str, Reason)> {
        self.iter()
            .filter_map(|(name, health)| health.reason().map(|r| (name, r)))
    }
}

/// Walk state of one object during [`check`].
#[derive(Clone, Copy)]
enum State {
    Unvisited,
    /// On the path of the walk in progress: meeting it again means a cycle.
    OnPath,
    Done(Health),
}

/// How a walk of [`check`] ended.
enum Stop {
    /// The last node of the path has this health of its own (full, or missing parent).
    Own(Health),
    /// The last node of the path is the child of an object already known to have this health.
    Inherit(Health),
    /// The walk met a node of its own path again.
    Cycle,
}

/// Computes the health of every object in `objects` (docs/compatibility.md, "Health"), iteratively.
///
/// Objects without metadata count as incrementals without a parent, hence
/// [`Reason::MissingParent`]. When two objects share a name, the first one is the one the
/// name refers to (S3 keys are unique, so this only matters for hand-made input).
#[must_use]
pub fn check(objects: &[RemoteSnapshot]) -> HealthMap {
    let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, object) in objects.iter().enumerate() {
        by_name.entry(object.name.as_str()).or_insert(i);
    }
    let mut state = vec![State::Unvisited; objects.len()];
    let mut path: Vec<usize> = Vec::new();

    for &start in by_name.values() {
        path.clear();
        let mut current = start;
        // Follow parent links until we reach something whose health is known or decidable.
        let stop = loop {
            match state[current] {
                State::Done(health) => break Stop::Inherit(health),
                State::OnPath => break Stop::Cycle,
                State::Unvisited => {}
            }
            state[current] = State::OnPath;
            path.push(current);
            let meta = &objects[current].meta;
            if meta.is_full {
                break Stop::Own(Health::Healthy);
            }
            match meta.parent.as_deref().and_then(|p| by_name.get(p)) {
                Some(&parent) if objects[current].replaced_base(&objects[parent]).is_some() => {
                    break Stop::Own(Health::Broken(Reason::ParentReplaced));
                }
                Some(&parent) => current = parent,
                None => break Stop::Own(Health::Broken(Reason::MissingParent)),
            }
        };
        // Unwind the path from its end, each node inheriting from the next one.
        let mut rest = path.as_slice();
        let mut health = match stop {
            Stop::Own(health) => {
                if let Some((&last, init)) = path.split_last() {
                    state[last] = State::Done(health);
                    rest = init;
                }
                health
            }
            Stop::Inherit(health) => health,
            // Every node of the path is on the cycle or leads into it; `inherited` keeps the
            // cycle reason, so they all report it, as the original did.
            Stop::Cycle => Health::Broken(Reason::CycleDetected),
        };
        for &node in rest.iter().rev() {
            health = health.inherited();
            state[node] = State::Done(health);
        }
    }

    HealthMap(
        by_name
            .into_iter()
            .map(|(name, i)| {
                let health = match state[i] {
                    State::Done(health) => health,
                    // Unreachable: every indexed object was the start of a finished walk.
                    State::Unvisited | State::OnPath => Health::Broken(Reason::MissingParent),
                };
                (name.to_owned(), health)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::ObjectMeta;

    /// `(name, parent)`; a parent of `Some("FULL")` marks a full object.
    fn objects(spec: &[(&str, Option<&str>)]) -> Vec<RemoteSnapshot> {
        spec.iter()
            .map(|&(name, parent)| RemoteSnapshot {
                key: name.to_owned(),
                name: name.to_owned(),
                object_size: 0,
                meta: ObjectMeta {
                    is_full: parent == Some("FULL"),
                    parent: parent.filter(|p| *p != "FULL").map(str::to_owned),
                    ..ObjectMeta::default()
                },
                etag: None,
            })
            .collect()
    }

    fn checked(spec: &[(&str, Option<&str>)]) -> Vec<(String, String)> {
        check(&objects(spec))
            .iter()
            .map(|(n, h)| (n.to_owned(), h.to_string()))
            .collect()
    }

    fn expect(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, h)| ((*n).to_owned(), (*h).to_owned()))
            .collect()
    }

    /// The rollback story: `a <- b <- c` backed up, `b` destroyed and re-created, and the new
    /// `b` uploaded over the old object. `c` was made on the old `b`: it no longer applies.
    #[test]
    fn a_replaced_base_breaks_its_incrementals_and_their_descendants() {
        let mut objs = objects(&[
            ("p@a", Some("FULL")),
            ("p@b", Some("p@a")),
            ("p@c", Some("p@b")),
            ("p@d", Some("p@c")),
            ("p@e", Some("p@a")),
        ]);
        let guids: &[(Option<u64>, Option<u64>)] = &[
            (Some(1), None),
            (Some(20), Some(1)), // the new b, on a
            (Some(3), Some(2)),  // c, made on the old b (guid 2)
            (Some(4), Some(3)),
            (None, Some(1)), // an original-z3 style object: no guid of its own
        ];
        for (object, &(guid, parent_guid)) in objs.iter_mut().zip(guids) {
            object.meta.guid = guid;
            object.meta.parent_guid = parent_guid;
        }
        let health: Vec<_> = check(&objs)
            .iter()
            .map(|(n, h)| (n.to_owned(), h.to_string()))
            .collect();
        assert_eq!(
            health,
            expect(&[
                ("p@a", "ok"),
                ("p@b", "ok"),
                ("p@c", "parent replaced"),
                ("p@d", "parent broken"),
                ("p@e", "ok"),
            ])
        );
        // Unknown guids on either side (the original's objects) are never judged.
        objs[1].meta.guid = None;
        assert!(check(&objs).broken().next().is_none());
        objs[1].meta.guid = Some(20);
        objs[2].meta.parent_guid = None;
        assert!(check(&objs).broken().next().is_none());
    }

    #[test]
    fn display_strings_are_the_originals() {
        assert_eq!(Reason::MissingParent.to_string(), "missing parent");
        assert_eq!(Reason::ParentBroken.to_string(), "parent broken");
        assert_eq!(Reason::CycleDetected.to_string(), "cycle detected");
        assert_eq!(Health::Healthy.to_string(), "ok");
        assert_eq!(
            Health::Broken(Reason::CycleDetected).to_string(),
            "cycle detected"
        );
        assert!(Health::Healthy.is_healthy());
        assert!(!Health::Broken(Reason::ParentBroken).is_healthy());
        assert_eq!(
            Health::Broken(Reason::ParentBroken).reason(),
            Some(Reason::ParentBroken)
        );
    }

    /// `(name, parent)` input and `(name, health)` expectations.
    type Case<'a> = (&'a [(&'a str, Option<&'a str>)], &'a [(&'a str, &'a str)]);

    #[test]
    fn table_of_shapes() {
        let cases: &[Case<'_>] = &[
            (&[("f", Some("FULL"))], &[("f", "ok")]),
            (&[("i", None)], &[("i", "missing parent")]),
            (&[("i", Some("gone"))], &[("i", "missing parent")]),
            (
                &[("a", Some("gone")), ("b", Some("a")), ("c", Some("b"))],
                &[
                    ("a", "missing parent"),
                    ("b", "parent broken"),
                    ("c", "parent broken"),
                ],
            ),
            (&[("s", Some("s"))], &[("s", "cycle detected")]),
            (
                &[("x", Some("y")), ("y", Some("x")), ("z", Some("y"))],
                &[
                    ("x", "cycle detected"),
                    ("y", "cycle detected"),
                    ("z", "cycle detected"),
                ],
            ),
            (
                &[("c", Some("b")), ("b", Some("a")), ("a", Some("FULL"))],
                &[("a", "ok"), ("b", "ok"), ("c", "ok")],
            ),
            // A full object's own parent metadata is irrelevant.
            (
                &[("f", Some("FULL")), ("g", Some("f"))],
                &[("f", "ok"), ("g", "ok")],
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(checked(input), expect(expected), "{input:?}");
        }
    }

    #[test]
    fn order_of_input_does_not_matter() {
        let spec = [
            ("a", Some("FULL")),
            ("b", Some("a")),
            ("c", Some("b")),
            ("d", Some("e")),
            ("e", Some("d")),
            ("f", Some("d")),
            ("g", Some("nope")),
            ("h", Some("g")),
        ];
        let forward = check(&objects(&spec));
        let mut reversed = spec;
        reversed.reverse();
        assert_eq!(check(&objects(&reversed)), forward);
        assert_eq!(forward.broken().count(), 5);
    }

    #[test]
    fn duplicate_names_use_the_first() {
        let map = checked(&[("a", Some("FULL")), ("a", None)]);
        assert_eq!(map, expect(&[("a", "ok")]));
    }

    #[test]
    fn long_chain_is_iterative_and_fast() {
        // The original died with RecursionError beyond about 995 links (docs/compatibility.md, bug 4).
        const N: usize = 100_000;
        let mut objs = Vec::with_capacity(N + 1);
        let names: Vec<String> = (0..N).map(|i| format!("p@s{i:06}")).collect();
        for (i, name) in names.iter().enumerate() {
            let parent = if i == 0 {
                "FULL"
            } else {
                names[i - 1].as_str()
            };
            objs.push((name.as_str(), Some(parent)));
        }
        // Worst order for a naive walker: newest first.
        objs.reverse();
        let start = std::time::Instant::now();
        let map = check(&objects(&objs));
        assert_eq!(map.len(), N);
        assert!(map.iter().all(|(_, h)| h.is_healthy()));
        // Break the base: everything above becomes "parent broken".
        objs.pop();
        let map = check(&objects(&objs));
        assert_eq!(
            map.get("p@s000001"),
            Some(&Health::Broken(Reason::MissingParent))
        );
        assert_eq!(
            map.get("p@s099999"),
            Some(&Health::Broken(Reason::ParentBroken))
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(20));
    }

    /// The original's recursive definition, for comparison on small inputs.
    fn reference(objs: &[RemoteSnapshot], name: &str, seen: &mut Vec<String>) -> Health {
        let Some(o) = objs.iter().find(|o| o.name == name) else {
            return Health::Broken(Reason::MissingParent);
        };
        if o.meta.is_full {
            return Health::Healthy;
        }
        if seen.iter().any(|s| s == name) {
            return Health::Broken(Reason::CycleDetected);
        }
        seen.push(name.to_owned());
        let Some(parent) = o.meta.parent.as_deref() else {
            return Health::Broken(Reason::MissingParent);
        };
        if !objs.iter().any(|o| o.name == parent) {
            return Health::Broken(Reason::MissingParent);
        }
        match reference(objs, parent, seen) {
            Health::Healthy => Health::Healthy,
            Health::Broken(Reason::CycleDetected) => Health::Broken(Reason::CycleDetected),
            Health::Broken(_) => Health::Broken(Reason::ParentBroken),
        }
    }

    proptest::proptest! {
        #[test]
        fn matches_recursive_reference(
            links in proptest::collection::vec(proptest::option::of(0usize..12), 0..12),
            fulls in proptest::collection::vec(proptest::bool::weighted(0.25), 12),
        ) {
            let names: Vec<String> = (0..links.len()).map(|i| format!("p@{i}")).collect();
            let objs: Vec<RemoteSnapshot> = links
                .iter()
                .enumerate()
                .map(|(i, link)| RemoteSnapshot {
                    key: names[i].clone(),
                    name: names[i].clone(),
                    object_size: 0,
                    meta: ObjectMeta {
                        is_full: fulls[i],
                        // Indices past the end name objects that are not in the listing.
                        parent: link.map(|p| format!("p@{p}")),
                        ..ObjectMeta::default()
                    },
                    etag: None,
                })
                .collect();
            let map = check(&objs);
            for name in &names {
                let expected = reference(&objs, name, &mut Vec::new());
                proptest::prop_assert_eq!(map.get(name), Some(&expected), "{}", name);
            }
        }
    }
}

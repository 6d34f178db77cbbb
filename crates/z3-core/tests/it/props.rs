//! Property tests of the planners on random chains and random bucket contents.

use proptest::prelude::*;
use z3_core::{
    BackupRequest, Health, LocalChain, PlanError, RemoteIndex, RestoreRequest, StepKind, WriteMode,
    plan_backup, plan_restore,
};

use crate::fixtures::{dataset, local_of, object, snap};

/// What the bucket holds for one name of the random universe.
#[derive(Debug, Clone)]
enum Obj {
    Absent,
    Full,
    /// Incremental whose parent is the previous name (the well-behaved case).
    OnPrevious,
    /// Incremental with an arbitrary parent index (may be missing, may form cycles).
    On(usize),
    NoMetadata,
}

const UNIVERSE: usize = 16;

fn name(i: usize) -> String {
    format!("pool/fs@snap_{i:02}")
}

fn obj() -> impl Strategy<Value = Obj> {
    prop_oneof![
        3 => Just(Obj::Absent),
        2 => Just(Obj::Full),
        4 => Just(Obj::OnPrevious),
        1 => (0..UNIVERSE + 2).prop_map(Obj::On),
        1 => Just(Obj::NoMetadata),
    ]
}

fn bucket(objs: &[Obj]) -> RemoteIndex {
    RemoteIndex::new(
        objs.iter()
            .enumerate()
            .filter_map(|(i, o)| {
                let n = name(i);
                match o {
                    Obj::Absent => None,
                    Obj::Full => Some(object(&n, &[("isfull", "true")])),
                    Obj::OnPrevious => Some(object(
                        &n,
                        &[("parent", &name(i.wrapping_sub(1).min(UNIVERSE + 5)))],
                    )),
                    Obj::On(p) => Some(object(&n, &[("parent", &name(*p))])),
                    Obj::NoMetadata => Some(object(&n, &[])),
                }
            })
            .collect(),
    )
}

/// A random local chain: a subset of the universe, in order.
fn local(present: &[bool]) -> LocalChain {
    let names: Vec<String> = present
        .iter()
        .enumerate()
        .filter(|(_, p)| **p)
        .map(|(i, _)| name(i))
        .collect();
    local_of(&names.iter().map(String::as_str).collect::<Vec<_>>())
}

proptest! {
    #[test]
    fn backup_steps_are_oldest_first_and_each_base_exists(
        objs in proptest::collection::vec(obj(), UNIVERSE),
        present in proptest::collection::vec(any::<bool>(), UNIVERSE),
        target_pick in proptest::option::of(any::<proptest::sample::Index>()),
        full in any::<bool>(),
        overwrite_other in any::<bool>(),
    ) {
        let remote = bucket(&objs);
        let local = local(&present);
        let target = match (&target_pick, local.is_empty()) {
            (Some(pick), false) => {
                let entry = &local.entries()[pick.index(local.len())];
                Some(entry.snapshot.name.snapshot().clone())
            }
            _ => None,
        };
        let result = plan_backup(&BackupRequest {
            dataset: &dataset(),
            snapshot_prefix: "snap_",
            local: &local,
            remote: &remote,
            target: target.as_ref(),
            full,
            overwrite_other,
        });
        let dependents = |name: &str| {
            remote
                .iter()
                .filter(|o| o.name != name && o.meta.parent.as_deref() == Some(name))
                .count()
        };
        let target_pos = match &target {
            Some(t) => local.position(&format!("pool/fs@{t}")),
            None => local.len().checked_sub(1),
        };
        match result {
            Err(PlanError::NothingToBackup { .. }) => prop_assert!(local.is_empty()),
            Err(PlanError::Broken { name, reason }) => {
                prop_assert!(!full);
                prop_assert_eq!(remote.health(&name), Some(&Health::Broken(reason)));
                prop_assert!(local.position(&name) <= target_pos);
            }
            // The fixtures record no guids: every object in the bucket is of an unknown snapshot.
            Err(PlanError::WouldOverwrite { name, bucket, .. }) => {
                prop_assert!(full && !overwrite_other && bucket.is_none());
                prop_assert!(remote.get(&name).is_some());
                prop_assert_eq!(dependents(&name), 0);
            }
            Err(PlanError::WouldOrphan { name, dependents: found, .. }) => {
                prop_assert!(full);
                prop_assert_eq!(found.len(), dependents(&name));
                prop_assert!(!found.is_empty());
            }
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
            Ok(plan) => {
                let target_pos = target_pos.unwrap();
                if full {
                    prop_assert_eq!(plan.steps.len(), 1);
                    prop_assert_eq!(&plan.steps[0].kind, &StepKind::Full);
                }
                if plan.steps.is_empty() {
                    let t = local.entries()[target_pos].snapshot.name.to_string();
                    prop_assert_eq!(remote.health(&t), Some(&Health::Healthy));
                }
                let positions: Vec<usize> = plan
                    .steps
                    .iter()
                    .map(|s| local.position(&s.snapshot.to_string()).unwrap())
                    .collect();
                // Oldest first, consecutive, ending at the target.
                prop_assert!(positions.windows(2).all(|w| w[1] == w[0] + 1));
                prop_assert!(positions.last().is_none_or(|&p| p == target_pos));
                for (k, step) in plan.steps.iter().enumerate() {
                    match (&step.kind, k) {
                        (StepKind::Full, 0) => prop_assert!(full || positions[0] == 0),
                        (StepKind::Full, _) => prop_assert!(false, "full after the first step"),
                        (StepKind::Incremental { parent }, 0) => prop_assert_eq!(
                            remote.health(&parent.to_string()),
                            Some(&Health::Healthy)
                        ),
                        (StepKind::Incremental { parent }, _) => {
                            prop_assert_eq!(parent, &plan.steps[k - 1].snapshot);
                        }
                    }
                    if !full {
                        prop_assert!(remote.get(&step.snapshot.to_string()).is_none());
                    }
                    // Never a key of another snapshot, unless told and nothing builds on it.
                    let name = step.snapshot.to_string();
                    match step.write {
                        WriteMode::Create => prop_assert!(remote.get(&name).is_none()),
                        WriteMode::ReplaceSame => prop_assert!(false, "no guids, no same snapshot"),
                        WriteMode::ReplaceOther { guid } => {
                            prop_assert!(overwrite_other && guid.is_none());
                            prop_assert!(remote.get(&name).is_some());
                            prop_assert_eq!(dependents(&name), 0);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn restore_steps_form_a_chain_from_a_base(
        objs in proptest::collection::vec(obj(), UNIVERSE),
        present in proptest::collection::vec(any::<bool>(), UNIVERSE),
        target in 0..UNIVERSE,
    ) {
        let remote = bucket(&objs);
        let local = local(&present);
        let target_name = name(target);
        let result = plan_restore(&RestoreRequest {
            dataset: &dataset(),
            local: &local,
            remote: &remote,
            target: &snap(&format!("snap_{target:02}")),
        });
        match result {
            Err(PlanError::NoSuchRemoteSnapshot { name }) => {
                prop_assert_eq!(&name, &target_name);
                prop_assert!(remote.get(&name).is_none());
            }
            Err(PlanError::Broken { name, reason }) => {
                // A healthy target always restores; a broken one fails with its own reason.
                prop_assert_eq!(&name, &target_name);
                prop_assert_eq!(remote.health(&name), Some(&Health::Broken(reason)));
            }
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
            Ok(plan) => {
                if local.contains(&target_name) {
                    prop_assert!(plan.steps.is_empty());
                } else {
                    let last = plan.steps.last().unwrap();
                    prop_assert_eq!(last.snapshot.to_string(), target_name);
                }
                for (k, step) in plan.steps.iter().enumerate() {
                    let name = step.snapshot.to_string();
                    let object = remote.get(&name).unwrap();
                    prop_assert!(!local.contains(&name));
                    prop_assert_eq!(&step.key, &object.key);
                    prop_assert_eq!(step.is_full, object.meta.is_full);
                    prop_assert_eq!(step.is_full, k == 0 && object.meta.is_full);
                    if k == 0 && !step.is_full {
                        prop_assert!(local.contains(object.meta.parent.as_deref().unwrap()));
                    }
                    if k > 0 {
                        let previous = plan.steps[k - 1].snapshot.to_string();
                        prop_assert_eq!(object.meta.parent.as_deref(), Some(previous.as_str()));
                    }
                }
            }
        }
    }
}

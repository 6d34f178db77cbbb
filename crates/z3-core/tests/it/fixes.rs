//! The original's bugs (docs/compatibility.md, "Bugs of the original that z3 fixes") with the better
//! behaviour z3 adopts, plus edge cases of the planners that the upstream suite does not cover.

use z3_core::{
    BackupRequest, DatasetName, LocalChain, PlanError, Reason, RemoteIndex, RestoreRequest,
    StepKind, plan_backup, plan_restore,
};

use crate::fixtures::{dataset, full, local_of, object, remote, snap};

fn backup_on(
    local: &LocalChain,
    remote: &RemoteIndex,
    target: Option<&str>,
    full: bool,
) -> Result<z3_core::BackupPlan, PlanError> {
    backup_overwriting(local, remote, target, full, false)
}

/// [`backup_on`] with `--overwrite-other-snapshot` as given.
fn backup_overwriting(
    local: &LocalChain,
    remote: &RemoteIndex,
    target: Option<&str>,
    full: bool,
    overwrite_other: bool,
) -> Result<z3_core::BackupPlan, PlanError> {
    let target = target.map(snap);
    plan_backup(&BackupRequest {
        dataset: &dataset(),
        snapshot_prefix: "snap_",
        local,
        remote,
        target: target.as_ref(),
        full,
        overwrite_other,
    })
}

fn restore_on(
    local: &LocalChain,
    remote: &RemoteIndex,
    target: &str,
) -> Result<z3_core::RestorePlan, PlanError> {
    plan_restore(&RestoreRequest {
        dataset: &dataset(),
        local,
        remote,
        target: &snap(target),
    })
}

fn described(plan: &z3_core::BackupPlan) -> Vec<String> {
    plan.steps
        .iter()
        .map(|s| match &s.kind {
            StepKind::Full => format!("full {}", s.snapshot),
            StepKind::Incremental { parent } => format!("inc {} <- {parent}", s.snapshot),
        })
        .collect()
}

/// Issues #26 and #35: the first incremental run on an empty bucket crashed.
#[test]
fn regression_issue_26_first_run_on_empty_bucket_starts_with_a_full() {
    let local = local_of(&[
        "pool/fs@snap_a",
        "pool/fs@other",
        "pool/fs@snap_b",
        "pool/fs@snap_c",
    ]);
    let plan = backup_on(&local, &RemoteIndex::default(), None, false).unwrap();
    assert_eq!(
        described(&plan),
        [
            "full pool/fs@snap_a",
            "inc pool/fs@snap_b <- pool/fs@snap_a",
            "inc pool/fs@snap_c <- pool/fs@snap_b",
        ]
    );
    // With --snapshot, only the chain up to that snapshot is sent (docs/compatibility.md, "Backup and
    // restore plans").
    let plan = backup_on(&local, &RemoteIndex::default(), Some("snap_b"), false).unwrap();
    assert_eq!(
        described(&plan),
        [
            "full pool/fs@snap_a",
            "inc pool/fs@snap_b <- pool/fs@snap_a"
        ]
    );
}

#[test]
fn ancestors_missing_from_the_bucket_are_sent_from_the_oldest_as_full() {
    // The bucket holds objects of another dataset only: nothing of ours is backed up.
    let remote = RemoteIndex::new(vec![object("pool/other@snap_a", &[("isfull", "true")])]);
    let local = local_of(&["pool/fs@snap_a", "pool/fs@snap_b"]);
    let plan = backup_on(&local, &remote, None, false).unwrap();
    assert_eq!(
        described(&plan),
        [
            "full pool/fs@snap_a",
            "inc pool/fs@snap_b <- pool/fs@snap_a"
        ]
    );
}

#[test]
fn target_already_backed_up_is_an_empty_plan() {
    let local = local_of(&["pool/fs@snap_1_f", "pool/fs@snap_2", "pool/fs@snap_3"]);
    assert!(
        backup_on(&local, &remote(), None, false)
            .unwrap()
            .steps
            .is_empty()
    );
    // The original's --full overwrote regardless. Its objects record no guid, so z3 cannot tell
    // whether the object is this snapshot: it replaces it only when told, as nothing builds on it.
    let err = backup_on(&local, &remote(), None, true).unwrap_err();
    assert!(
        matches!(err, PlanError::WouldOverwrite { ref name, bucket: None, .. } if name == "pool/fs@snap_3"),
        "{err:?}"
    );
    let plan = backup_overwriting(&local, &remote(), None, true, true).unwrap();
    assert_eq!(described(&plan), ["full pool/fs@snap_3"]);
    // snap_2 has a dependent (snap_3): never replaced, whatever the flag.
    let err = backup_overwriting(&local, &remote(), Some("snap_2"), true, true).unwrap_err();
    assert!(matches!(err, PlanError::WouldOrphan { .. }), "{err:?}");
    // A broken target is reported even when it is the latest.
    let local = local_of(&["pool/fs@snap_0"]);
    let err = backup_on(&local, &remote(), None, false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Broken snapshot detected pool/fs@snap_0, reason: 'missing parent'"
    );
}

#[test]
fn named_snapshot_not_found() {
    let local = local_of(&["pool/fs@snap_1_f", "pool/fs@other"]);
    for target in ["other", "snap_42"] {
        let err = backup_on(&local, &remote(), Some(target), false).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "local snapshot pool/fs@{target} not found (or its name does not start with SNAPSHOT_PREFIX \"snap_\")"
            )
        );
        assert!(matches!(err, PlanError::SnapshotNotFound { .. }));
        assert!(!err.is_integrity());
    }
    // A named target on an empty chain is "not found", not "nothing to backup".
    let err = backup_on(&local_of(&[]), &remote(), Some("snap_1_f"), true).unwrap_err();
    assert!(matches!(err, PlanError::SnapshotNotFound { .. }));
}

/// Bug 3 (docs/compatibility.md): with lifecycle expiry the full is gone, but the local base is enough.
#[test]
fn restore_from_local_base_after_the_full_expired() {
    // snap_1 (the full) expired; snap_2..snap_4 remain.
    let remote = RemoteIndex::new(vec![
        object("pool/fs@snap_2", &[("parent", "pool/fs@snap_1")]),
        object("pool/fs@snap_3", &[("parent", "pool/fs@snap_2")]),
        object("pool/fs@snap_4", &[("parent", "pool/fs@snap_3")]),
    ]);
    assert_eq!(
        remote.health("pool/fs@snap_4").unwrap().to_string(),
        "parent broken"
    );
    let steps = |local: &[&str]| -> Vec<String> {
        restore_on(&local_of(local), &remote, "snap_4")
            .unwrap()
            .steps
            .iter()
            .map(|s| s.snapshot.to_string())
            .collect()
    };
    assert_eq!(
        steps(&["pool/fs@snap_1", "pool/fs@snap_2"]),
        ["pool/fs@snap_3", "pool/fs@snap_4"]
    );
    // The base's own object may be gone too: snap_1 is local and only referenced as parent.
    assert_eq!(
        steps(&["pool/fs@snap_1"]),
        ["pool/fs@snap_2", "pool/fs@snap_3", "pool/fs@snap_4"]
    );
    // Without any local base the chain really is broken, with the target's own reason.
    let err = restore_on(&local_of(&[]), &remote, "snap_4").unwrap_err();
    assert!(matches!(
        err,
        PlanError::Broken { ref name, reason: Reason::ParentBroken } if name == "pool/fs@snap_4"
    ));
    let err = restore_on(&local_of(&[]), &remote, "snap_2").unwrap_err();
    assert_eq!(
        err.to_string(),
        "Broken snapshot detected pool/fs@snap_2, reason: 'missing parent'"
    );
}

#[test]
fn restore_stops_at_a_local_snapshot_inside_a_cycle_free_chain_only() {
    // A cycle whose members are not local is broken; one that reaches a local base is not.
    let remote = RemoteIndex::new(vec![
        object("pool/fs@snap_a", &[("parent", "pool/fs@snap_b")]),
        object("pool/fs@snap_b", &[("parent", "pool/fs@snap_a")]),
        object("pool/fs@snap_c", &[("parent", "pool/fs@snap_b")]),
    ]);
    let err = restore_on(&local_of(&[]), &remote, "snap_c").unwrap_err();
    assert_eq!(
        err.to_string(),
        "Broken snapshot detected pool/fs@snap_c, reason: 'cycle detected'"
    );
    let plan = restore_on(&local_of(&["pool/fs@snap_b"]), &remote, "snap_c").unwrap();
    assert_eq!(plan.steps.len(), 1);
    // Self-parent.
    let remote = RemoteIndex::new(vec![object(
        "pool/fs@snap_s",
        &[("parent", "pool/fs@snap_s")],
    )]);
    let err = restore_on(&local_of(&[]), &remote, "snap_s").unwrap_err();
    assert!(matches!(
        err,
        PlanError::Broken {
            reason: Reason::CycleDetected,
            ..
        }
    ));
}

#[test]
fn restore_refuses_objects_whose_names_zfs_would_reject() {
    let remote = RemoteIndex::new(vec![
        object("pool/fs@snap_bad!", &[("isfull", "true")]),
        object("pool/fs@snap_ok", &[("parent", "pool/fs@snap_bad!")]),
    ]);
    let err = restore_on(&local_of(&[]), &remote, "snap_ok").unwrap_err();
    assert!(err.is_integrity());
    assert_eq!(
        err.to_string(),
        "object \"pool/fs@snap_bad!\" in the backup does not have a valid snapshot name"
    );
    assert!(std::error::Error::source(&err).is_some());
}

fn chain_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("pool/fs@snap_{i:06}")).collect()
}

fn long_remote(names: &[String]) -> RemoteIndex {
    RemoteIndex::new(
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                if i == 0 {
                    object(name, &[("isfull", "true")])
                } else {
                    object(name, &[("parent", names[i - 1].as_str())])
                }
            })
            .collect(),
    )
}

/// Bug 4 (docs/compatibility.md): the original died with `RecursionError` beyond about 995 links.
#[test]
fn regression_bug_4_hundred_thousand_links() {
    const N: usize = 100_000;
    let names = chain_names(N);
    let remote = long_remote(&names);
    assert_eq!(remote.health_map().broken().count(), 0);

    let plan = restore_on(&LocalChain::default(), &remote, "snap_099999").unwrap();
    assert_eq!(plan.steps.len(), N);
    assert!(plan.steps[0].is_full);
    assert_eq!(plan.steps[N - 1].snapshot, full("pool/fs@snap_099999"));
    assert!(plan.steps[1..].iter().all(|s| !s.is_full));

    // Backup walking 100,000 local snapshots down to the only backed-up one.
    let local_names: Vec<&str> = names.iter().map(String::as_str).collect();
    let local = local_of(&local_names);
    let only_full = RemoteIndex::new(vec![object(&names[0], &[("isfull", "true")])]);
    let plan = backup_on(&local, &only_full, None, false).unwrap();
    assert_eq!(plan.steps.len(), N - 1);
    assert_eq!(plan.steps[0].parent(), Some(&full(&names[0])));

    // A broken base far down the chain is found and named.
    let broken = RemoteIndex::new(long_remote(&names).iter().skip(1).cloned().collect());
    let err = restore_on(&LocalChain::default(), &broken, "snap_099999").unwrap_err();
    assert_eq!(
        err.to_string(),
        "Broken snapshot detected pool/fs@snap_099999, reason: 'parent broken'"
    );
}

#[test]
fn other_dataset_name_is_used_in_messages() {
    let ds = DatasetName::new("tank/home").unwrap();
    let err = plan_backup(&BackupRequest {
        dataset: &ds,
        snapshot_prefix: "zfs-auto-snap_hourly",
        local: &LocalChain::default(),
        remote: &RemoteIndex::default(),
        target: None,
        full: false,
        overwrite_other: false,
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Nothing to backup for filesystem \"tank/home\". Are you sure SNAPSHOT_PREFIX=\"zfs-auto-snap_hourly\" is correct?"
    );
}

/// A snapshot destroyed and re-created under the same name is another snapshot: the guid z3
/// records in the bucket tells them apart, so nothing is built on the stale object.
#[test]
fn backup_refuses_to_build_on_an_object_of_another_snapshot_with_the_same_name() {
    let local = local_of(&["pool/fs@snap_1", "pool/fs@snap_2"]);
    let local_guid = 0xbeef + 1;
    let stale = RemoteIndex::new(vec![object(
        "pool/fs@snap_1",
        &[("isfull", "true"), ("guid", "12345")],
    )]);
    let err = backup_on(&local, &stale, None, false).unwrap_err();
    assert!(err.is_integrity());
    assert!(
        matches!(err, PlanError::GuidMismatch { ref name, bucket: 12345, local, .. }
            if name == "pool/fs@snap_1" && local == local_guid),
        "{err:?}"
    );
    // The advice works as written: rename, and the old object stays.
    assert!(
        err.to_string()
            .contains("(`zfs rename pool/fs@snap_1 pool/fs@snap_1-2`) and back up again"),
        "{err}"
    );
    // A full does not build on anything, and snap_2's key is free.
    assert_eq!(
        described(&backup_on(&local, &stale, None, true).unwrap()),
        ["full pool/fs@snap_2"]
    );
    // The same snapshot: incremental as usual.
    let same = RemoteIndex::new(vec![object(
        "pool/fs@snap_1",
        &[("isfull", "true"), ("guid", &local_guid.to_string())],
    )]);
    assert_eq!(
        described(&backup_on(&local, &same, None, false).unwrap()),
        ["inc pool/fs@snap_2 <- pool/fs@snap_1"]
    );
    // The original's objects carry no guid: matched by name, as before.
    let legacy = RemoteIndex::new(vec![object("pool/fs@snap_1", &[("isfull", "true")])]);
    assert!(backup_on(&local, &legacy, None, false).is_ok());
}

#[test]
fn restore_refuses_a_local_snapshot_that_is_not_the_one_in_the_bucket() {
    let (g1, g2) = (0xbeef + 1, 0xbeef + 2);
    let chain = |base: u64, target: u64| {
        RemoteIndex::new(vec![
            object(
                "pool/fs@snap_1",
                &[("isfull", "true"), ("guid", &base.to_string())],
            ),
            object(
                "pool/fs@snap_2",
                &[
                    ("parent", "pool/fs@snap_1"),
                    ("guid", &target.to_string()),
                    ("parent-guid", &base.to_string()),
                ],
            ),
        ])
    };
    // The local base is another snap_1: its incremental would not apply.
    let err = restore_on(&local_of(&["pool/fs@snap_1"]), &chain(111, 222), "snap_2").unwrap_err();
    assert!(
        matches!(err, PlanError::GuidMismatch { ref name, bucket: 111, .. } if name == "pool/fs@snap_1"),
        "{err:?}"
    );
    assert!(err.is_integrity());
    // The target exists locally but is another snapshot: not "nothing to do".
    let both = local_of(&["pool/fs@snap_1", "pool/fs@snap_2"]);
    let err = restore_on(&both, &chain(g1, 222), "snap_2").unwrap_err();
    assert!(
        matches!(err, PlanError::GuidMismatch { ref name, bucket: 222, .. } if name == "pool/fs@snap_2"),
        "{err:?}"
    );
    // The same snapshots: restore from the base, or nothing to do.
    let plan = restore_on(&local_of(&["pool/fs@snap_1"]), &chain(g1, g2), "snap_2").unwrap();
    assert_eq!(plan.steps.len(), 1);
    assert!(
        restore_on(&both, &chain(g1, g2), "snap_2")
            .unwrap()
            .steps
            .is_empty()
    );
}

/// A restore onto an older local base (a tree's monthly under newer dailies) says which local
/// snapshots a `zfs receive -F` would destroy; a restore onto the newest destroys none.
#[test]
fn a_restore_onto_an_older_base_names_the_snapshots_it_would_roll_back() {
    let remote = RemoteIndex::new(vec![
        object("pool/fs@snap_1", &[("isfull", "true")]),
        object("pool/fs@snap_5", &[("parent", "pool/fs@snap_1")]),
    ]);
    // Local: snap_1 (the tree's base), then dailies, and one snapshot outside the prefix.
    let listed = crate::fixtures::parse_list(
        "pool/fs@snap_1\npool/fs@snap_2\npool/fs@manual\npool/fs@snap_3",
    );
    let local = LocalChain::for_dataset(&listed, &dataset(), "snap_");
    let plan = restore_on(&local, &remote, "snap_5").unwrap();
    assert_eq!(plan.base.as_deref(), Some("pool/fs@snap_1"));
    let newer: Vec<String> = z3_core::plan::newer_than_base(plan.base.as_deref().unwrap(), &listed)
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(
        newer,
        ["pool/fs@snap_2", "pool/fs@manual", "pool/fs@snap_3"]
    );
    // Onto the newest snapshot: nothing to roll back; from a full: no base at all.
    assert!(z3_core::plan::newer_than_base("pool/fs@snap_3", &listed).is_empty());
    assert!(z3_core::plan::newer_than_base("pool/fs@gone", &listed).is_empty());
    let plan = restore_on(&local_of(&[]), &remote, "snap_5").unwrap();
    assert_eq!(plan.base, None);
    assert_eq!(plan.steps.len(), 2);
}

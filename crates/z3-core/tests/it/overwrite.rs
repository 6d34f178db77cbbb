//! Issue 12: no backup makes a snapshot that was restorable before it ran unrestorable.
//!
//! The plan decides what an upload does to its key ([`WriteMode`]): create a free key, replace a
//! backup of the same snapshot (same guid), or, only when told and only when nothing builds on
//! it, replace a backup of another or an unknown snapshot. Each row is a bucket, a local chain
//! and a request; the expectation is the plan (or the refusal) in one line.

use z3_core::{
    BackupRequest, FullSnapshotName, LocalChain, LocalSnapshot, ObjectMeta, PlanError, RemoteIndex,
    RemoteSnapshot, RestoreRequest, StepKind, WriteMode, plan_backup, plan_restore,
};

use crate::fixtures::{dataset, snap};

/// `(snapshot, guid)`, oldest first.
type Local<'a> = &'a [(&'a str, u64)];
/// `(snapshot, parent or "FULL", guid, parent guid)`; guid 0 means none recorded (the
/// original z3's objects).
type Bucket<'a> = &'a [(&'a str, &'a str, u64, u64)];

fn local(spec: Local<'_>) -> LocalChain {
    let snapshots: Vec<LocalSnapshot> = spec
        .iter()
        .zip(1..)
        .map(|(&(name, guid), txg)| LocalSnapshot {
            name: FullSnapshotName::parse(&format!("pool/fs@{name}")).unwrap(),
            guid,
            createtxg: txg,
            creation: None,
        })
        .collect();
    LocalChain::for_dataset(&snapshots, &dataset(), "snap_")
}

fn bucket(spec: Bucket<'_>) -> RemoteIndex {
    let known = |g: u64| (g != 0).then_some(g);
    RemoteIndex::new(
        spec.iter()
            .map(|&(name, parent, guid, parent_guid)| RemoteSnapshot {
                key: format!("z3-backup/pool/fs@{name}"),
                name: format!("pool/fs@{name}"),
                object_size: 1,
                meta: ObjectMeta {
                    is_full: parent == "FULL",
                    parent: (parent != "FULL").then(|| format!("pool/fs@{parent}")),
                    guid: known(guid),
                    parent_guid: known(parent_guid),
                    ..ObjectMeta::default()
                },
                etag: None,
            })
            .collect(),
    )
}

/// The plan, or the refusal, in one line.
fn backup(
    local: Local<'_>,
    remote: Bucket<'_>,
    target: Option<&str>,
    full: bool,
    overwrite_other: bool,
) -> String {
    let target = target.map(snap);
    let result = plan_backup(&BackupRequest {
        dataset: &dataset(),
        snapshot_prefix: "snap_",
        local: &self::local(local),
        remote: &bucket(remote),
        target: target.as_ref(),
        full,
        overwrite_other,
    });
    match result {
        Ok(plan) => plan
            .steps
            .iter()
            .map(|step| {
                let snapshot = step.snapshot.snapshot();
                let kind = match &step.kind {
                    StepKind::Full => format!("full {snapshot}"),
                    StepKind::Incremental { parent } => {
                        format!("inc {snapshot}<-{}", parent.snapshot())
                    }
                };
                let write = match step.write {
                    WriteMode::Create => "create".to_owned(),
                    WriteMode::ReplaceSame => "replace-same".to_owned(),
                    WriteMode::ReplaceOther { guid } => format!("replace-other {guid:?}"),
                };
                format!("{kind} [{write}]")
            })
            .collect::<Vec<_>>()
            .join("; "),
        Err(err) => {
            assert!(err.is_integrity() || !full, "{err:?} must exit 3");
            let variant = format!("{err:?}");
            let variant = variant.split([' ', '{']).next().unwrap().to_owned();
            format!("refused {variant}: {err}")
        }
    }
}

/// The rollback story: `d1 <- d2 <- d3` backed up; `zfs rollback -r` to d1 and a new d2.
const STORY: Bucket<'_> = &[
    ("snap_d1", "FULL", 1, 0),
    ("snap_d2", "snap_d1", 2, 1),
    ("snap_d3", "snap_d2", 3, 2),
];
const ROLLED_BACK: Local<'_> = &[("snap_d1", 1), ("snap_d2", 20)];

#[test]
fn rollback_and_recreate_never_touches_the_old_chain() {
    // An incremental run would build on the old d2's object: refused, with advice.
    let out = backup(ROLLED_BACK, STORY, None, false, false);
    assert!(
        out.starts_with("refused GuidMismatch: pool/fs@snap_d2: "),
        "{out}"
    );
    assert!(
        out.ends_with(
            "the backup in the bucket and everything built on it stay restorable; give the local \
             snapshot a new name (`zfs rename pool/fs@snap_d2 pool/fs@snap_d2-2`) and back up again"
        ),
        "{out}"
    );
    // The --full the old advice asked for would orphan d3: refused, with or without the flag.
    for flag in [false, true] {
        let out = backup(ROLLED_BACK, STORY, Some("snap_d2"), true, flag);
        assert!(out.starts_with("refused WouldOrphan: "), "{out}");
        assert!(
            out.contains(
                "1 backup(s) build on it (pool/fs@snap_d3), which would become unrestorable"
            ),
            "{out}"
        );
        assert!(
            out.contains("`zfs rename pool/fs@snap_d2 pool/fs@snap_d2-2`"),
            "{out}"
        );
    }
    // Following the advice: the renamed snapshot is new, and builds on d1, which is the same.
    let renamed: Local<'_> = &[("snap_d1", 1), ("snap_d2-2", 20)];
    assert_eq!(
        backup(renamed, STORY, None, false, false),
        "inc snap_d2-2<-snap_d1 [create]"
    );
    assert_eq!(
        backup(renamed, STORY, None, true, false),
        "full snap_d2-2 [create]"
    );
    // The suggested name skips names already taken locally or in the bucket.
    let mut taken = STORY.to_vec();
    taken.push(("snap_d2-2", "snap_d1", 7, 1));
    let out = backup(ROLLED_BACK, &taken, None, false, false);
    assert!(
        out.contains("`zfs rename pool/fs@snap_d2 pool/fs@snap_d2-3`"),
        "{out}"
    );
}

#[test]
fn full_backups_replace_only_the_same_snapshot_or_what_nothing_builds_on() {
    let same: Local<'_> = &[("snap_d1", 1), ("snap_d2", 2), ("snap_d3", 3)];
    let cases: &[(&str, Local<'_>, Option<&str>, bool, &str)] = &[
        // Same guid: a new chain starts there; its dependents need only its content.
        (
            "same, with dependents",
            same,
            Some("snap_d2"),
            false,
            "full snap_d2 [replace-same]",
        ),
        (
            "same, no dependents",
            same,
            None,
            false,
            "full snap_d3 [replace-same]",
        ),
        (
            "same, flag changes nothing",
            same,
            Some("snap_d1"),
            true,
            "full snap_d1 [replace-same]",
        ),
        // A re-created leaf: another snapshot, nothing builds on it.
        (
            "re-created leaf",
            &[("snap_d1", 1), ("snap_d2", 2), ("snap_d3", 30)],
            None,
            false,
            "refused WouldOverwrite",
        ),
        (
            "re-created leaf, flag",
            &[("snap_d1", 1), ("snap_d2", 2), ("snap_d3", 30)],
            None,
            true,
            "full snap_d3 [replace-other Some(3)]",
        ),
        // A re-created base with dependents: never.
        (
            "re-created base",
            &[("snap_d1", 10)],
            None,
            true,
            "refused WouldOrphan",
        ),
        // A free key.
        (
            "new name",
            &[("snap_d1", 1), ("snap_d4", 4)],
            None,
            false,
            "full snap_d4 [create]",
        ),
    ];
    for &(what, local, target, flag, expected) in cases {
        let out = backup(local, STORY, target, true, flag);
        assert!(out.starts_with(expected), "{what}: {out}");
    }
}

#[test]
fn objects_of_the_original_z3_are_never_replaced_unseen() {
    // No guids: z3 cannot tell whether the object is the local snapshot.
    let original: Bucket<'_> = &[("snap_o1", "FULL", 0, 0), ("snap_o2", "snap_o1", 0, 0)];
    let local: Local<'_> = &[("snap_o1", 1), ("snap_o2", 2), ("snap_o3", 3)];
    // Incrementals still build on them by name, as the original did; the new key is free.
    assert_eq!(
        backup(local, original, None, false, false),
        "inc snap_o3<-snap_o2 [create]"
    );
    let out = backup(local, original, Some("snap_o2"), true, false);
    assert!(out.starts_with("refused WouldOverwrite: refusing to overwrite pool/fs@snap_o2 in the bucket: it was made from a snapshot z3 cannot identify"), "{out}");
    assert!(
        out.ends_with("or, to replace that backup (it is lost), add --overwrite-other-snapshot"),
        "{out}"
    );
    assert_eq!(
        backup(local, original, Some("snap_o2"), true, true),
        "full snap_o2 [replace-other None]"
    );
    // o1 has a dependent: never, whatever the flag.
    let out = backup(local, original, Some("snap_o1"), true, true);
    assert!(out.starts_with("refused WouldOrphan"), "{out}");
}

#[test]
fn restore_refuses_a_chain_whose_base_was_replaced_before_downloading() {
    // What the old advice led to: the new d2 (guid 20) uploaded over the old one.
    let replaced: Bucket<'_> = &[
        ("snap_d1", "FULL", 1, 0),
        ("snap_d2", "snap_d1", 20, 1),
        ("snap_d3", "snap_d2", 3, 2),
    ];
    let restore = |local: Local<'_>, target: &str| {
        plan_restore(&RestoreRequest {
            dataset: &dataset(),
            local: &self::local(local),
            remote: &bucket(replaced),
            target: &snap(target),
        })
    };
    let err = restore(&[], "snap_d3").unwrap_err();
    assert!(err.is_integrity());
    assert!(matches!(err, PlanError::BrokenLink { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "Broken snapshot detected pool/fs@snap_d3, reason: 'parent replaced': pool/fs@snap_d3 was \
         made on pool/fs@snap_d2 with guid 2, but the object pool/fs@snap_d2 in the bucket holds guid 20"
    );
    // The status table says so too.
    let index = bucket(replaced);
    let health = |n: &str| index.health(&format!("pool/fs@{n}")).unwrap().to_string();
    assert_eq!(health("snap_d2"), "ok");
    assert_eq!(health("snap_d3"), "parent replaced");
    // The new d2 itself restores.
    assert_eq!(restore(&[], "snap_d2").unwrap().steps.len(), 2);
    // The story as it ends now: the old chain is intact and restores from nothing.
    let plan = plan_restore(&RestoreRequest {
        dataset: &dataset(),
        local: &LocalChain::default(),
        remote: &bucket(STORY),
        target: &snap("snap_d3"),
    })
    .unwrap();
    assert_eq!(plan.steps.len(), 3);
}

//! Every scenario of upstream `_tests/test_snap.py` (docs/compatibility.md, "The original's test suite"),
//! as plans and their commands.

use z3_core::{
    BackupRequest, DatasetName, Health, LocalChain, PlanError, Reason, RestoreRequest, StepKind,
    humanize, plan_backup, plan_restore,
};

use crate::fixtures::{
    PREFIX, ZFS_LIST, backup_commands, dataset, default_local, full, local_of, parse_list, remote,
    restore_commands, snap,
};

fn p(text: &str) -> String {
    text.replace("{p}", PREFIX)
}

#[test]
fn test_humanize() {
    assert_eq!(humanize(43 * 1024 * 1024), "43 M");
    assert_eq!(humanize(50 * 1024 * 1024 * 1024), "50 G");
    assert_eq!(humanize(50_512 * 1024 * 1024 * 1024 / 1000), "50.51 G");
    assert_eq!(humanize(2_724 * 1024 * 1024 * 1024 * 1024 / 1000), "2.72 T");
}

#[test]
fn test_list_snapshots() {
    let names: Vec<_> = remote().iter().map(|o| o.name.clone()).collect();
    assert_eq!(
        names,
        [
            "pool/fs@snap_0",
            "pool/fs@snap_1_f",
            "pool/fs@snap_2",
            "pool/fs@snap_3",
            "pool/fs@snap_4_mp",
            "pool/fs@snap_5",
            "pool/fs@snap_6_cycle",
            "pool/fs@snap_7_cycle",
        ]
    );
    assert!(
        remote()
            .iter()
            .all(|o| o.key == format!("{PREFIX}{}", o.name))
    );
}

#[test]
fn test_healthy_full() {
    let r = remote();
    assert!(r.get("pool/fs@snap_1_f").unwrap().meta.is_full);
    assert_eq!(r.health("pool/fs@snap_1_f"), Some(&Health::Healthy));
}

#[test]
fn test_healthy_incremental() {
    let r = remote();
    assert!(!r.get("pool/fs@snap_3").unwrap().meta.is_full);
    assert!(r.health("pool/fs@snap_3").unwrap().is_healthy());
}

#[test]
fn test_unhealthy_incremental() {
    let r = remote();
    assert!(!r.get("pool/fs@snap_5").unwrap().meta.is_full);
    assert_eq!(
        r.health("pool/fs@snap_5"),
        Some(&Health::Broken(Reason::ParentBroken))
    );
    assert_eq!(
        r.health("pool/fs@snap_5").unwrap().to_string(),
        "parent broken"
    );
    assert_eq!(
        r.health("pool/fs@snap_4_mp").unwrap().to_string(),
        "missing parent"
    );
}

#[test]
fn test_unhealthy_cycle() {
    let r = remote();
    for name in ["pool/fs@snap_7_cycle", "pool/fs@snap_6_cycle"] {
        assert_eq!(r.health(name), Some(&Health::Broken(Reason::CycleDetected)));
        assert_eq!(r.health(name).unwrap().to_string(), "cycle detected");
    }
}

#[test]
fn test_zfs_list() {
    fn pairs(chain: &LocalChain) -> Vec<(String, Option<String>)> {
        chain
            .entries()
            .iter()
            .map(|e| {
                (
                    e.snapshot.name.to_string(),
                    e.parent.as_ref().map(ToString::to_string),
                )
            })
            .collect()
    }
    let own = |pairs: &[(&str, Option<&str>)]| -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(n, p)| ((*n).to_owned(), p.map(str::to_owned)))
            .collect()
    };
    assert_eq!(
        pairs(&default_local()),
        own(&[
            ("pool/fs@snap_0", None),
            ("pool/fs@snap_1_f", Some("pool/fs@snap_0")),
            ("pool/fs@snap_2", Some("pool/fs@snap_1_f")),
            ("pool/fs@snap_3", Some("pool/fs@snap_2")),
            ("pool/fs@snap_8", Some("pool/fs@snap_3")),
            ("pool/fs@snap_9", Some("pool/fs@snap_8")),
        ])
    );
    let pool = LocalChain::for_dataset(
        &parse_list(ZFS_LIST),
        &DatasetName::new("pool").unwrap(),
        "snap_",
    );
    assert_eq!(
        pairs(&pool),
        own(&[
            ("pool@snap_p1", None),
            ("pool@snap_p2", Some("pool@snap_p1"))
        ])
    );
}

#[test]
fn test_pair_list() {
    let local = default_local();
    let r = remote();
    let got: Vec<(Option<String>, Option<String>)> = z3_core::status::pair_list(&local, &r)
        .into_iter()
        .map(|(l, o)| {
            (
                l.map(|e| e.snapshot.name.to_string()),
                o.map(|o| o.name.clone()),
            )
        })
        .collect();
    // Upstream tuples are (s3, local); ours are (local, s3).
    let both = |n: &str| (Some(format!("pool/fs@{n}")), Some(format!("pool/fs@{n}")));
    let local_only = |n: &str| (Some(format!("pool/fs@{n}")), None);
    let s3_only = |n: &str| (None, Some(format!("pool/fs@{n}")));
    assert_eq!(
        got,
        [
            both("snap_0"),
            both("snap_1_f"),
            both("snap_2"),
            both("snap_3"),
            local_only("snap_8"),
            local_only("snap_9"),
            s3_only("snap_4_mp"),
            s3_only("snap_5"),
            s3_only("snap_6_cycle"),
            s3_only("snap_7_cycle"),
        ]
    );
}

/// Runs a backup against the upstream bucket.
fn backup(
    local: &LocalChain,
    target: Option<&str>,
    full: bool,
) -> Result<z3_core::BackupPlan, PlanError> {
    let target = target.map(snap);
    plan_backup(&BackupRequest {
        dataset: &dataset(),
        snapshot_prefix: "snap_",
        local,
        remote: &remote(),
        target: target.as_ref(),
        full,
        // The original overwrote blindly; its objects record no guid, so z3 replaces one only
        // with --overwrite-other-snapshot (issue 12), which these scenarios give with --full.
        overwrite_other: full,
    })
}

fn restore(local: &LocalChain, target: &str) -> Result<z3_core::RestorePlan, PlanError> {
    plan_restore(&RestoreRequest {
        dataset: &dataset(),
        local,
        remote: &remote(),
        target: &snap(target),
    })
}

#[test]
fn backup_scenarios_as_commands() {
    struct Case {
        test: &'static str,
        local: Option<&'static [&'static str]>,
        target: Option<&'static str>,
        full: bool,
        compressor: Option<&'static str>,
        commands: &'static [&'static str],
    }
    let compressed_local: &[&str] = &[
        "pool/fs@snap_1_f",
        "pool/fs@snap_2",
        "pool/fs@snap_3",
        "pool/fs@snap_8",
    ];
    let cases = [
        Case {
            test: "test_backup_latest_full",
            local: None,
            target: None,
            full: true,
            compressor: None,
            commands: &[
                "zfs send -nvP 'pool/fs@snap_9'",
                "zfs send 'pool/fs@snap_9' | pput --quiet --estimated 1234 --meta size=1234 --meta isfull=true {p}pool/fs@snap_9",
            ],
        },
        Case {
            test: "test_backup_full",
            local: None,
            target: Some("snap_3"),
            full: true,
            compressor: None,
            commands: &[
                "zfs send -nvP 'pool/fs@snap_3'",
                "zfs send 'pool/fs@snap_3' | pput --quiet --estimated 1234 --meta size=1234 --meta isfull=true {p}pool/fs@snap_3",
            ],
        },
        Case {
            test: "test_backup_incremental_latest",
            local: None,
            target: None,
            full: false,
            compressor: None,
            commands: &[
                "zfs send -nvP -i 'pool/fs@snap_3' 'pool/fs@snap_8'",
                "zfs send -i 'pool/fs@snap_3' 'pool/fs@snap_8' | pput --quiet --estimated 1234 --meta size=1234 --meta parent=pool/fs@snap_3 {p}pool/fs@snap_8",
                "zfs send -nvP -i 'pool/fs@snap_8' 'pool/fs@snap_9'",
                "zfs send -i 'pool/fs@snap_8' 'pool/fs@snap_9' | pput --quiet --estimated 1234 --meta size=1234 --meta parent=pool/fs@snap_8 {p}pool/fs@snap_9",
            ],
        },
        Case {
            test: "test_backup_incremental_compressed",
            local: Some(compressed_local),
            target: None,
            full: false,
            compressor: Some("pigz1"),
            commands: &[
                "zfs send -nvP -i 'pool/fs@snap_3' 'pool/fs@snap_8'",
                "zfs send -i 'pool/fs@snap_3' 'pool/fs@snap_8' | pigz -1 --blocksize 4096 | pput --quiet --estimated 1234 --meta size=1234 --meta parent=pool/fs@snap_3 --meta compressor=pigz1 {p}pool/fs@snap_8",
            ],
        },
        Case {
            test: "test_backup_full_compressed",
            local: Some(compressed_local),
            target: None,
            full: true,
            compressor: Some("pigz1"),
            commands: &[
                "zfs send -nvP 'pool/fs@snap_8'",
                "zfs send 'pool/fs@snap_8' | pigz -1 --blocksize 4096 | pput --quiet --estimated 1234 --meta size=1234 --meta isfull=true --meta compressor=pigz1 {p}pool/fs@snap_8",
            ],
        },
    ];
    for case in cases {
        let local = case.local.map_or_else(default_local, local_of);
        let plan = backup(&local, case.target, case.full).unwrap();
        let expected: Vec<String> = case.commands.iter().map(|c| p(c)).collect();
        assert_eq!(
            backup_commands(&plan, case.compressor),
            expected,
            "{}",
            case.test
        );
    }
}

#[test]
fn test_backup_incremental_latest_steps() {
    let plan = backup(&default_local(), None, false).unwrap();
    assert_eq!(plan.steps.len(), 2);
    assert_eq!(plan.steps[0].snapshot, full("pool/fs@snap_8"));
    assert_eq!(
        plan.steps[0].kind,
        StepKind::Incremental {
            parent: full("pool/fs@snap_3")
        }
    );
    assert_eq!(plan.steps[1].snapshot, full("pool/fs@snap_9"));
    assert_eq!(plan.steps[1].parent(), Some(&full("pool/fs@snap_8")));
}

#[test]
fn broken_backup_scenarios() {
    let cases: &[(&str, &[&str], &str, &str, Reason)] = &[
        (
            "test_backup_incremental_missing_parent",
            &[
                "pool@p1",
                "pool/fs@snap_1_f",
                "pool/fs@snap_4_mp",
                "pool/fs@snap_5",
            ],
            "Broken snapshot detected pool/fs@snap_5, reason: 'parent broken'",
            "pool/fs@snap_5",
            Reason::ParentBroken,
        ),
        (
            "test_backup_incremental_cycle",
            &[
                "pool@p1",
                "pool/fs@snap_1_f",
                "pool/fs@snap_2",
                "pool/fs@snap_3",
                "pool/fs@snap_6_cycle",
                "pool/fs@snap_7_cycle",
                "pool/fs@snap_8",
            ],
            "Broken snapshot detected pool/fs@snap_7_cycle, reason: 'cycle detected'",
            "pool/fs@snap_7_cycle",
            Reason::CycleDetected,
        ),
    ];
    for (test, listing, text, broken, why) in cases {
        // An error means no plan, hence no commands at all.
        let err = backup(&local_of(listing), None, false).unwrap_err();
        assert_eq!(err.to_string(), *text, "{test}");
        assert!(err.is_integrity(), "{test}");
        assert!(
            matches!(&err, PlanError::Broken { name, reason } if name == broken && reason == why),
            "{test}: {err:?}"
        );
    }
}

#[test]
fn restore_scenarios_as_commands() {
    // (upstream test, local listing, target, --force, commands)
    type Case<'a> = (&'a str, &'a [&'a str], &'a str, bool, &'a [&'a str]);
    let cases: &[Case<'_>] = &[
        (
            "test_restore_full",
            &["pool@p1"],
            "snap_1_f",
            false,
            &["z3_get {p}pool/fs@snap_1_f | pigz -d | zfs recv pool/fs@snap_1_f"],
        ),
        (
            "test_restore_incremental_empty_dataset",
            &[],
            "snap_3",
            false,
            &[
                "z3_get {p}pool/fs@snap_1_f | pigz -d | zfs recv pool/fs@snap_1_f",
                "z3_get {p}pool/fs@snap_2 | zfs recv pool/fs@snap_2",
                "z3_get {p}pool/fs@snap_3 | zfs recv pool/fs@snap_3",
            ],
        ),
        (
            "test_restore_incremental",
            &["pool@p1", "pool/fs@snap_1_f", "pool/fs@snap_2"],
            "snap_3",
            false,
            &["z3_get {p}pool/fs@snap_3 | zfs recv pool/fs@snap_3"],
        ),
        (
            "test_restore_noop",
            &["pool@p1", "pool/fs@snap_1_f", "pool/fs@snap_2"],
            "snap_2",
            false,
            &[],
        ),
        (
            "test_restore_force",
            &["pool@p1", "pool/fs@snap_1_f", "pool/fs@snap_2"],
            "snap_3",
            true,
            &["z3_get {p}pool/fs@snap_3 | zfs recv -F pool/fs@snap_3"],
        ),
    ];
    for (test, listing, target, force, commands) in cases {
        let plan = restore(&local_of(listing), target).unwrap();
        let expected: Vec<String> = commands.iter().map(|c| p(c)).collect();
        assert_eq!(restore_commands(&plan, *force), expected, "{test}");
    }
}

#[test]
fn test_restore_incremental_empty_dataset_steps() {
    let plan = restore(&local_of(&[]), "snap_3").unwrap();
    let steps: Vec<_> = plan
        .steps
        .iter()
        .map(|s| {
            (
                s.snapshot.to_string(),
                s.is_full,
                s.compressor.clone(),
                s.object_size,
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            (
                "pool/fs@snap_1_f".to_owned(),
                true,
                Some("pigz1".to_owned()),
                1234
            ),
            ("pool/fs@snap_2".to_owned(), false, None, 1234),
            ("pool/fs@snap_3".to_owned(), false, None, 1234),
        ]
    );
    assert_eq!(plan.steps[0].key, format!("{PREFIX}pool/fs@snap_1_f"));
}

#[test]
fn test_restore_broken() {
    let local = local_of(&["pool@p1", "pool/fs@snap_1_f", "pool/fs@snap_2"]);
    let err = restore(&local, "snap_4_mp").unwrap_err();
    assert_eq!(
        err.to_string(),
        "Broken snapshot detected pool/fs@snap_4_mp, reason: 'missing parent'"
    );
    assert!(err.is_integrity());
    let err = restore(&local, "snap_7_cycle").unwrap_err();
    assert_eq!(
        err.to_string(),
        "Broken snapshot detected pool/fs@snap_7_cycle, reason: 'cycle detected'"
    );
    let err = restore(&local, "snap_5").unwrap_err();
    assert_eq!(
        err.to_string(),
        "Broken snapshot detected pool/fs@snap_5, reason: 'parent broken'"
    );
}

#[test]
fn restore_of_unknown_snapshot() {
    let err = restore(&local_of(&[]), "snap_42").unwrap_err();
    assert_eq!(
        err.to_string(),
        "no such snapshot \"pool/fs@snap_42\" in the backup"
    );
    assert!(!err.is_integrity());
}

#[test]
fn test_get_latest() {
    let dataset = DatasetName::new("None").unwrap();
    let local = LocalChain::for_dataset(&parse_list("pool@p1"), &dataset, "zfs-auto-snap:daily");
    let err = plan_backup(&BackupRequest {
        dataset: &dataset,
        snapshot_prefix: "zfs-auto-snap:daily",
        local: &local,
        remote: &remote(),
        target: None,
        full: false,
        overwrite_other: false,
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Nothing to backup for filesystem \"None\". Are you sure SNAPSHOT_PREFIX=\"zfs-auto-snap:daily\" is correct?"
    );
    assert!(!err.is_integrity());
}

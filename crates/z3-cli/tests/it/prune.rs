//! `z3 prune` on `FakeZfs` and `MemoryStore`: what the policy no longer preserves goes, leaves
//! first, with its seals; what a kept backup needs, what is too young for its storage class and
//! what lies outside the snapshot prefix stays; every kept snapshot still restores.

use z3_cli::args::{BackupArgs, Command, PruneArgs, StatusArgs};
use z3_cli::exit::ExitStatus;

use crate::engine::{Harness, backup, restore};

/// `snap-YYYY-MM-DD` for `days_ago` days before today (UTC): the policy reads times from names.
fn day(days_ago: i64) -> String {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let date = today.checked_sub(jiff::Span::new().days(days_ago)).unwrap();
    format!("snap-{date}")
}

/// Six daily snapshots in two chains: d5 (full) <- d4 <- d3, then d2 (full) <- d1 <- d0.
async fn two_chains(class: &str) -> Harness {
    let class = class.to_owned();
    let h = Harness::new(move |raw| {
        raw.preserve = Some("3d".into());
        raw.name_format = Some("snap-%Y-%m-%d".into());
        raw.s3_storage_class = Some(class);
        // One attempt per request: the crash tests' failures are final anyway.
        raw.max_retries = Some("1".into());
    });
    for ago in [5, 4, 3] {
        h.snap(&day(ago), &format!("data {ago}"));
    }
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    h.snap(&day(2), "data 2");
    let full = BackupArgs {
        full: true,
        ..backup()
    };
    let run = h.run(Command::Backup(full)).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    for ago in [1, 0] {
        h.snap(&day(ago), &format!("data {ago}"));
    }
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    h
}

fn keys(h: &Harness) -> Vec<String> {
    h.store.objects().into_keys().collect()
}

#[tokio::test]
async fn prune_deletes_the_expired_chain_leaves_first_with_its_seals() {
    let h = two_chains("STANDARD").await;
    let before = keys(&h);
    let dry = h
        .run(Command::Prune(PruneArgs {
            dry_run: true,
            ..PruneArgs::default()
        }))
        .await;
    assert_eq!(dry.status, ExitStatus::Success, "{}", dry.err);
    assert_eq!(keys(&h), before, "a dry run deletes nothing");
    let planned: Vec<&str> = dry
        .out
        .lines()
        .filter(|l| l.starts_with("would delete object"))
        .collect();
    // Leaves first: d3, then d4, then the full d5.
    let order: Vec<String> = [3, 4, 5].iter().map(|&d| day(d)).collect();
    assert_eq!(planned.len(), 3, "{}", dry.out);
    for (line, name) in planned.iter().zip(&order) {
        assert!(line.contains(&format!("pool/fs@{name}:")), "{line}");
    }
    assert!(dry.out.contains("would prune 3 backups"), "{}", dry.out);
    for ago in [0, 1, 2] {
        assert!(
            dry.out
                .contains(&format!("keep pool/fs@{}: preserved", day(ago))),
            "{}",
            dry.out
        );
    }

    let run = h.run(Command::Prune(PruneArgs::default())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    let after = keys(&h);
    for ago in [3, 4, 5] {
        let name = format!("pool/fs@{}", day(ago));
        assert!(
            !after.iter().any(|k| k.contains(&name)),
            "{name} or its seal left: {after:?}"
        );
    }
    for ago in [0, 1, 2] {
        let name = format!("z3-backup/pool/fs@{}", day(ago));
        assert!(after.contains(&name), "{name} gone: {after:?}");
    }
    assert!(
        !after.iter().any(|k| k.contains(".z3-locks/")),
        "lock released"
    );
    // What is left is healthy and restores on another machine.
    let status = h.run(Command::Status(StatusArgs::default())).await;
    assert_eq!(status.status, ExitStatus::Success, "{}", status.out);
    let other = h.other_machine();
    let run = other.run(Command::Restore(restore(&day(0)))).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert_eq!(
        other.zfs.content("pool/fs").as_deref(),
        Some(&b"data 0"[..])
    );
    // Nothing more to prune.
    let again = h.run(Command::Prune(PruneArgs::default())).await;
    assert!(again.out.contains("pruned 0 backups"), "{}", again.out);
}

/// A backup outside the snapshot prefix that builds on an expired one keeps it (and its base);
/// objects younger than `STANDARD_IA`'s 30 days stay unless asked, with the cost said.
#[tokio::test]
async fn prune_keeps_what_others_need_and_what_is_too_young_to_delete_cheaply() {
    let h = two_chains("STANDARD_IA").await;
    let run = h.run(Command::Prune(PruneArgs::default())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert!(run.out.contains("pruned 0 backups"), "{}", run.out);
    assert!(
        run.out.contains(&format!(
            "keep pool/fs@{}: too young for STANDARD_IA",
            day(5)
        )),
        "{}",
        run.out
    );

    // A manual backup based on d4 (outside SNAPSHOT_PREFIX): d4 and d5 must stay.
    h.put(
        "pool/fs@manual",
        &[("parent", &format!("pool/fs@{}", day(4)))],
    );
    let run = h
        .run(Command::Prune(PruneArgs {
            allow_early_delete: true,
            ..PruneArgs::default()
        }))
        .await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert!(run.out.contains("pruned 1 backups"), "{}", run.out);
    assert!(run.out.contains("GiB-days charged"), "{}", run.out);
    assert!(
        run.out
            .contains(&format!("deleted object pool/fs@{}:", day(3))),
        "{}",
        run.out
    );
    assert!(
        run.out
            .contains(&format!("keep pool/fs@{}: base of pool/fs@manual", day(4))),
        "{}",
        run.out
    );
    assert!(
        run.out
            .contains("keep pool/fs@manual: preserved: outside SNAPSHOT_PREFIX")
    );
}

#[tokio::test]
async fn prune_without_a_policy_is_a_usage_error_and_deletes_nothing() {
    let h = Harness::new(|_| {});
    h.snap("snap1", "one");
    assert_eq!(
        h.run(Command::Backup(backup())).await.status,
        ExitStatus::Success
    );
    let before = keys(&h);
    let run = h.run(Command::Prune(PruneArgs::default())).await;
    assert_eq!(run.status, ExitStatus::Usage, "{}", run.err);
    assert!(run.err.contains("PRESERVE"), "{}", run.err);
    assert_eq!(keys(&h), before);
}

/// A prune that crashes after any number of requests leaves every backup it left restorable:
/// status finds every remaining chain intact and every object sealed; a second prune (breaking
/// the dead run's lock) finishes the job.
#[tokio::test]
async fn a_prune_crashing_after_any_request_leaves_every_remaining_backup_restorable() {
    let mut crashed_midway = 0;
    for calls in 0..60 {
        let h = two_chains("STANDARD").await;
        let faulty = std::sync::Arc::new(z3_s3::FaultyStore::new(h.store.clone()));
        faulty.crash_after(calls);
        let crashing = h.with_store(faulty.clone());
        let run = crashing.run(Command::Prune(PruneArgs::default())).await;
        let status = h.run(Command::Status(StatusArgs::default())).await;
        assert_eq!(
            status.status,
            ExitStatus::Success,
            "after {calls} requests: {}{}",
            status.out,
            run.err
        );
        if run.status == ExitStatus::Success {
            // Enough requests for the whole prune: the walk is complete.
            assert!(calls > 0);
            break;
        }
        if keys(&h).len() < 12 {
            crashed_midway += 1;
        }
        let rerun = h
            .run(Command::Prune(PruneArgs {
                break_lock: true,
                ..PruneArgs::default()
            }))
            .await;
        assert_eq!(rerun.status, ExitStatus::Success, "{}", rerun.err);
        let left = keys(&h);
        assert_eq!(left.len(), 6, "three objects and their seals: {left:?}");
    }
    assert!(
        crashed_midway >= 3,
        "crashes hit the deletions {crashed_midway} times"
    );
}

/// Without a name format the policy reads each backup's time from the `created` metadata the
/// backup recorded (the snapshot's ZFS `creation`), so names need not carry dates.
#[tokio::test]
async fn backups_record_the_creation_time_that_prune_judges_them_by() {
    let h = Harness::new(|raw| {
        raw.preserve = Some("2d".into());
        raw.s3_storage_class = Some("STANDARD".into());
    });
    let now = jiff::Timestamp::now().as_second();
    let at = |days: i64| now - days * 86_400;
    for (name, days) in [("snapA", 9), ("snapB", 8)] {
        h.zfs.write("pool/fs", name.to_owned()).unwrap();
        h.zfs
            .snapshot_at(&format!("pool/fs@{name}"), at(days))
            .unwrap();
    }
    assert_eq!(
        h.run(Command::Backup(backup())).await.status,
        ExitStatus::Success
    );
    h.zfs.write("pool/fs", "C".to_owned()).unwrap();
    h.zfs.snapshot_at("pool/fs@snapC", at(1)).unwrap();
    let full = BackupArgs {
        full: true,
        ..backup()
    };
    assert_eq!(
        h.run(Command::Backup(full)).await.status,
        ExitStatus::Success
    );
    let (_, meta, _) = h.store.object("z3-backup/pool/fs@snapA").unwrap();
    assert_eq!(meta.get("created"), Some(&at(9).to_string()));

    let run = h.run(Command::Prune(PruneArgs::default())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert!(run.out.contains("pruned 2 backups"), "{}", run.out);
    let left = keys(&h);
    assert!(
        left.contains(&"z3-backup/pool/fs@snapC".to_owned()),
        "{left:?}"
    );
    assert!(
        !left
            .iter()
            .any(|k| k.contains("snapA") || k.contains("snapB")),
        "{left:?}"
    );
}

//! `z3 prune` on `FakeZfs` and `MemoryStore`: what the policy no longer preserves goes, leaves
//! first, with its seals; what a kept backup needs, what is too young for its storage class and
//! what lies outside the snapshot prefix stays; every kept snapshot still restores.

use z3_cli::args::{BackupArgs, Command, PruneArgs, StatusArgs};
use z3_cli::exit::ExitStatus;

use crate::engine::{Harness, backup, restore};

/// The dates of the snapshots, one backup run each, as a daily timer would make them.
const DAYS: [&str; 7] = [
    "2025-12-10",
    "2025-12-11",
    "2026-01-10",
    "2026-01-11",
    "2026-02-10",
    "2026-02-11",
    "2026-02-12",
];

/// Noon on 2026-02-12 (UTC), the time every prune in these tests runs at.
fn now() -> i64 {
    secs("2026-02-12T12:00:00Z")
}

/// A clock stopped at [`now`].
fn clock() -> std::sync::Arc<z3_engine::ManualClock> {
    std::sync::Arc::new(z3_engine::ManualClock::new(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(now().unsigned_abs()),
    ))
}

fn secs(at: &str) -> i64 {
    at.parse::<jiff::Timestamp>().unwrap().as_second()
}

fn name(date: &str) -> String {
    format!("pool/fs@snap-{date}")
}

/// Backups shaped by `PRESERVE=1y 1m 2d` (times from the `snap-%Y-%m-%d` names): 2025-12-10
/// and 2026-01-10 are the years' fulls; 2025-12-11 and 2026-01-11 dailies on them;
/// 2026-02-10 the February monthly on 2026-01-10; 2026-02-11 and -12 dailies on it. At
/// [`now`] the policy keeps 2026-01-10 (yearly), 2026-02-10 (monthly), 2026-02-11 and -12
/// (daily); 2025-12-10, 2025-12-11 and 2026-01-11 expire. Objects are stored a day before
/// [`now`], in `class`.
async fn tree(class: &str) -> Harness {
    let class = class.to_owned();
    let h = Harness::new(move |raw| {
        raw.preserve = Some("1y 1m 2d".into());
        raw.name_format = Some("snap-%Y-%m-%d".into());
        raw.s3_storage_class = Some(class);
        // One attempt per request: the crash tests' failures are final anyway.
        raw.max_retries = Some("1".into());
    });
    let h = h.with_clock(clock());
    h.store.set_time(now() - 86_400);
    for day in DAYS {
        h.snap(&format!("snap-{day}"), &format!("data {day}"));
        let run = h.run(Command::Backup(backup())).await;
        assert_eq!(run.status, ExitStatus::Success, "{day}: {}", run.err);
    }
    let parent = |day: &str| {
        let (_, meta, _) = h.store.object(&format!("z3-backup/{}", name(day))).unwrap();
        meta.get("parent").cloned()
    };
    assert_eq!(parent("2025-12-11"), Some(name("2025-12-10")));
    assert_eq!(parent("2026-01-10"), None);
    assert_eq!(parent("2026-02-10"), Some(name("2026-01-10")));
    assert_eq!(parent("2026-02-12"), Some(name("2026-02-10")));
    h
}

const EXPIRED: [&str; 3] = ["2025-12-10", "2025-12-11", "2026-01-11"];
const KEPT: [&str; 4] = ["2026-01-10", "2026-02-10", "2026-02-11", "2026-02-12"];

fn keys(h: &Harness) -> Vec<String> {
    h.store.objects().into_keys().collect()
}

#[tokio::test]
async fn prune_deletes_what_the_policy_expired_leaves_first_with_its_seals() {
    let h = tree("STANDARD").await;
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
    assert_eq!(planned.len(), 3, "{}", dry.out);
    // Leaves first: the 2025 full goes after its daily.
    let position = |day: &str| {
        planned
            .iter()
            .position(|l| l.contains(&format!("{}:", name(day))))
            .unwrap_or_else(|| panic!("{day} not planned: {}", dry.out))
    };
    assert!(
        position("2025-12-11") < position("2025-12-10"),
        "{}",
        dry.out
    );
    position("2026-01-11");
    assert!(dry.out.contains("would prune 3 backups"), "{}", dry.out);
    for day in KEPT {
        assert!(
            dry.out.contains(&format!("keep {}: preserved", name(day))),
            "{day}: {}",
            dry.out
        );
    }

    let run = h.run(Command::Prune(PruneArgs::default())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    let after = keys(&h);
    for day in EXPIRED {
        assert!(
            !after.iter().any(|k| k.contains(&name(day))),
            "{day} or its seal left: {after:?}"
        );
    }
    for day in KEPT {
        let key = format!("z3-backup/{}", name(day));
        assert!(after.contains(&key), "{key} gone: {after:?}");
    }
    assert!(
        !after.iter().any(|k| k.contains(".z3-locks/")),
        "lock released"
    );
    // What is left is healthy, and every kept snapshot restores on another machine, through
    // at most three objects (the policy's timeframes).
    let status = h.run(Command::Status(StatusArgs::default())).await;
    assert_eq!(status.status, ExitStatus::Success, "{}", status.out);
    for day in KEPT {
        let other = h.other_machine();
        let run = other
            .run(Command::Restore(restore(&format!("snap-{day}"))))
            .await;
        assert_eq!(run.status, ExitStatus::Success, "{day}: {}", run.err);
        assert!(run.out.lines().count() <= 3, "{}", run.out);
        assert_eq!(
            other.zfs.content("pool/fs").as_deref(),
            Some(format!("data {day}").as_bytes())
        );
    }
    // Nothing more to prune.
    let again = h.run(Command::Prune(PruneArgs::default())).await;
    assert!(again.out.contains("pruned 0 backups"), "{}", again.out);
}

/// A backup outside the snapshot prefix that builds on an expired one keeps it (and its base);
/// objects younger than `STANDARD_IA`'s 30 days stay unless asked, with the cost said.
#[tokio::test]
async fn prune_keeps_what_others_need_and_what_is_too_young_to_delete_cheaply() {
    let h = tree("STANDARD_IA").await;
    let run = h.run(Command::Prune(PruneArgs::default())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert!(run.out.contains("pruned 0 backups"), "{}", run.out);
    assert!(
        run.out.contains(&format!(
            "keep {}: too young for STANDARD_IA",
            name("2025-12-11")
        )),
        "{}",
        run.out
    );

    // A manual backup based on 2025-12-11 (outside SNAPSHOT_PREFIX): it and its full stay.
    h.put("pool/fs@manual", &[("parent", &name("2025-12-11"))]);
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
            .contains(&format!("deleted object {}:", name("2026-01-11"))),
        "{}",
        run.out
    );
    for (day, needs) in [
        ("2025-12-11", "pool/fs@manual"),
        ("2025-12-10", "pool/fs@manual"),
    ] {
        assert!(
            run.out.contains(&format!("keep {}: base of", name(day))),
            "{day} ({needs}): {}",
            run.out
        );
    }
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
        let h = tree("STANDARD").await;
        let faulty = std::sync::Arc::new(z3_s3::FaultyStore::new(h.store.clone()));
        faulty.crash_after(calls);
        let crashing = h.with_store(faulty.clone()).with_clock(clock());
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
        if keys(&h).len() < 14 {
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
        assert_eq!(left.len(), 8, "four objects and their seals: {left:?}");
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

/// A bucket written by the original z3: its objects carry no time and no guid. Without a name
/// format nothing can be proven expired, so a prune deletes nothing and says why; with one, it
/// prunes by the names like any other backups.
#[tokio::test]
async fn prune_of_an_original_z3_bucket_deletes_nothing_it_cannot_prove_unneeded() {
    let h = Harness::new(|raw| {
        raw.preserve = Some("2d".into());
        raw.s3_storage_class = Some("STANDARD".into());
    });
    h.put(
        "pool/fs@snap-2026-01-01",
        &[("isfull", "true"), ("size", "10")],
    );
    h.put(
        "pool/fs@snap-2026-01-02",
        &[("parent", "pool/fs@snap-2026-01-01"), ("size", "10")],
    );
    h.put(
        "pool/fs@snap-2026-01-03",
        &[("is_full", "true"), ("size", "10")],
    );
    let h = h.with_clock(clock());
    let before = keys(&h);
    let run = h.run(Command::Prune(PruneArgs::default())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert_eq!(keys(&h), before);
    assert!(run.out.contains("pruned 0 backups"), "{}", run.out);
    for day in ["01-01", "01-02", "01-03"] {
        assert!(
            run.out
                .contains(&format!("keep pool/fs@snap-2026-{day}: time unknown")),
            "{}",
            run.out
        );
    }

    // With the names' format the times are known: 2026-01-01 and -02 are older than the two
    // days kept, and nothing else needs them (2026-01-03 is a full).
    let named = h.with_settings_of(|s| {
        let mut r = z3_engine::Retention::new(z3_core::retention::Policy::parse("2d").unwrap());
        r.name_format = Some(z3_core::retention::NameFormat::parse("snap-%Y-%m-%d").unwrap());
        s.retention = Some(r);
    });
    let named = named.with_clock(clock());
    let run = named.run(Command::Prune(PruneArgs::default())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert!(run.out.contains("pruned 2 backups"), "{}", run.out);
    assert_eq!(keys(&named), ["z3-backup/pool/fs@snap-2026-01-03"]);
}

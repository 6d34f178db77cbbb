//! Backups shaped by `PRESERVE` (a tree: yearly fulls, monthlies on them, dailies on the
//! monthlies) and by `MAX_CHAIN` without a policy, on `FakeZfs` and `MemoryStore`.

use z3_cli::args::{Command, RestoreArgs};
use z3_cli::exit::ExitStatus;

use crate::engine::{Harness, backup, restore};

fn secs(date: &str) -> i64 {
    format!("{date}T06:00:00Z")
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_second()
}

fn parent_of(h: &Harness, snap: &str) -> Option<String> {
    let (_, meta, _) = h
        .store
        .object(&format!("z3-backup/pool/fs@{snap}"))
        .unwrap();
    meta.get("parent").cloned()
}

#[tokio::test]
async fn a_policy_shapes_backups_into_a_tree_whose_restores_stay_shallow() {
    let h = Harness::new(|raw| raw.preserve = Some("1y 12m 30d".into()));
    let days = [
        "2026-01-01",
        "2026-01-02",
        "2026-01-03",
        "2026-02-01",
        "2026-02-02",
        "2026-03-01",
        "2026-03-02",
        "2026-03-03",
    ];
    for (i, day) in days.iter().enumerate() {
        h.zfs.write("pool/fs", format!("content {i}")).unwrap();
        h.zfs
            .snapshot_at(&format!("pool/fs@snap-{day}"), secs(day))
            .unwrap();
        // One backup per day, as a timer would run it.
        let run = h.run(Command::Backup(backup())).await;
        assert_eq!(run.status, ExitStatus::Success, "{day}: {}", run.err);
    }
    let p = |d: &str| Some(format!("pool/fs@snap-{d}"));
    assert_eq!(
        parent_of(&h, "snap-2026-01-01"),
        None,
        "the yearly is a full"
    );
    assert_eq!(parent_of(&h, "snap-2026-01-02"), p("2026-01-01"));
    assert_eq!(parent_of(&h, "snap-2026-01-03"), p("2026-01-01"));
    assert_eq!(
        parent_of(&h, "snap-2026-02-01"),
        p("2026-01-01"),
        "monthly on yearly"
    );
    assert_eq!(
        parent_of(&h, "snap-2026-02-02"),
        p("2026-02-01"),
        "daily on monthly"
    );
    assert_eq!(parent_of(&h, "snap-2026-03-03"), p("2026-03-01"));

    // The newest restores on another machine through three objects, not eight.
    let other = h.other_machine();
    let run = other
        .run(Command::Restore(restore("snap-2026-03-03")))
        .await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert_eq!(run.out.lines().count(), 3, "{}", run.out);
    assert_eq!(
        other.zfs.content("pool/fs").as_deref(),
        Some(&b"content 7"[..])
    );
    // An earlier daily restores too, into another dataset.
    let run = other
        .run(Command::Restore(RestoreArgs {
            target_dataset: Some("pool/feb".into()),
            ..restore("snap-2026-02-02")
        }))
        .await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert_eq!(
        other.zfs.content("pool/feb").as_deref(),
        Some(&b"content 4"[..])
    );
}

#[tokio::test]
async fn without_a_policy_max_chain_bounds_linear_chains() {
    let h = Harness::new(|raw| raw.max_chain = Some("2".into()));
    for i in 1..=5 {
        h.snap(&format!("snap{i}"), &format!("content {i}"));
    }
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    let parents: Vec<Option<String>> = (1..=5)
        .map(|i| parent_of(&h, &format!("snap{i}")))
        .collect();
    assert_eq!(
        parents,
        [
            None,
            Some("pool/fs@snap1".into()),
            None,
            Some("pool/fs@snap3".into()),
            None
        ]
    );
    // A bad value is a configuration error naming it.
    let mut raw = z3_cli::config::RawConfig {
        bucket: Some("b".into()),
        max_chain: Some("0".into()),
        ..z3_cli::config::RawConfig::default()
    };
    let err = z3_cli::config::Settings::resolve(raw.clone())
        .unwrap_err()
        .to_string();
    assert!(err.contains("MAX_CHAIN") && err.contains("`0`"), "{err}");
    raw.max_chain = None;
    raw.full_every = Some("3 days".into());
    let err = z3_cli::config::Settings::resolve(raw)
        .unwrap_err()
        .to_string();
    assert!(err.contains("FULL_EVERY"), "{err}");
}

/// With a policy, z3 holds the snapshots future backups build on (the current yearly and
/// monthly representatives): a snapshot tool's cleanup cannot destroy them. Once a new year
/// and month begin, the old ones are released and can go.
#[tokio::test]
async fn the_bases_of_future_backups_are_held_and_released_when_no_longer_needed() {
    let h = Harness::new(|raw| raw.preserve = Some("1y 12m 30d".into()));
    let days = ["2026-11-01", "2026-12-01", "2026-12-02", "2026-12-03"];
    for (i, day) in days.iter().enumerate() {
        h.zfs.write("pool/fs", format!("content {i}")).unwrap();
        h.zfs
            .snapshot_at(&format!("pool/fs@snap-{day}"), secs(day))
            .unwrap();
        let run = h.run(Command::Backup(backup())).await;
        assert_eq!(run.status, ExitStatus::Success, "{day}: {}", run.err);
        assert!(!run.err.contains("warning"), "{}", run.err);
    }
    // The yearly (2026-11-01) and December's monthly (2026-12-01) are held; the daily
    // 2026-12-02, which nothing will build on, is not.
    for held in ["snap-2026-11-01", "snap-2026-12-01"] {
        let err = h
            .zfs
            .destroy_snapshot(&format!("pool/fs@{held}"))
            .unwrap_err();
        assert_eq!(err.kind(), z3_zfs::ErrorKind::Busy, "{held}: {err}");
    }
    h.zfs.destroy_snapshot("pool/fs@snap-2026-12-02").unwrap();

    // A new year: the 2027 full becomes the base; 2026's yearly and monthly are released.
    h.zfs.write("pool/fs", "next year".to_owned()).unwrap();
    h.zfs
        .snapshot_at("pool/fs@snap-2027-01-01", secs("2027-01-01"))
        .unwrap();
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    h.zfs.destroy_snapshot("pool/fs@snap-2026-11-01").unwrap();
    h.zfs.destroy_snapshot("pool/fs@snap-2026-12-01").unwrap();
    let err = h
        .zfs
        .destroy_snapshot("pool/fs@snap-2027-01-01")
        .unwrap_err();
    assert_eq!(err.kind(), z3_zfs::ErrorKind::Busy);
}

/// `STORAGE_CLASS_YEARLY`/`_MONTHLY`: the year's full and the months' first backups go to
/// their classes, other backups to `S3_STORAGE_CLASS`, seals to STANDARD; a dry run says which.
#[tokio::test]
async fn each_timeframe_writes_its_storage_class() {
    let h = Harness::new(|raw| {
        raw.preserve = Some("1y 12m 30d".into());
        raw.storage_class_yearly = Some("deep_archive".into());
        raw.storage_class_monthly = Some("GLACIER_IR".into());
    });
    for (i, day) in ["2026-01-01", "2026-01-02", "2026-02-01", "2026-02-02"]
        .iter()
        .enumerate()
    {
        h.zfs.write("pool/fs", format!("content {i}")).unwrap();
        h.zfs
            .snapshot_at(&format!("pool/fs@snap-{day}"), secs(day))
            .unwrap();
    }
    let run = h
        .run(Command::Backup(z3_cli::args::BackupArgs {
            dry_run: true,
            ..backup()
        }))
        .await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert!(
        run.out.lines().next().unwrap().ends_with("(DEEP_ARCHIVE)"),
        "{}",
        run.out
    );
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    let class = |snap: &str| {
        h.store
            .object(&format!("z3-backup/pool/fs@snap-{snap}"))
            .unwrap()
            .2
    };
    assert_eq!(
        class("2026-01-01").as_deref(),
        Some("DEEP_ARCHIVE"),
        "the yearly"
    );
    assert_eq!(
        class("2026-02-01").as_deref(),
        Some("GLACIER_IR"),
        "a monthly"
    );
    assert_eq!(
        class("2026-01-02").as_deref(),
        Some("STANDARD_IA"),
        "a daily"
    );
    assert_eq!(class("2026-02-02").as_deref(), Some("STANDARD_IA"));
    let seals = z3_s3::ObjectStore::list(&h.store, "z3-backup/.z3-seals/")
        .await
        .unwrap();
    assert_eq!(seals.len(), 4);
    for seal in seals {
        let class = h.store.object(&seal.key).unwrap().2;
        assert_eq!(class.as_deref(), Some("STANDARD"), "{}", seal.key);
    }

    // Without PRESERVE, a per-timeframe class is refused naming its key.
    let raw = z3_cli::config::RawConfig {
        bucket: Some("b".into()),
        storage_class_daily: Some("GLACIER".into()),
        ..z3_cli::config::RawConfig::default()
    };
    let err = z3_cli::config::Settings::resolve(raw)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("invalid STORAGE_CLASS_DAILY 'GLACIER': needs PRESERVE"),
        "{err}"
    );
}

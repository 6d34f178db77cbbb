//! `OBJECT_LOCK`: backups and seals written under Object Lock retention until the policy lets
//! them go, extended by prune, deleted version by version; on `FakeZfs` and a `MemoryStore`
//! with versioning and Object Lock (the same runs on SeaweedFS are in `e2e`).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use z3_cli::args::{Command, PruneArgs};
use z3_cli::exit::ExitStatus;
use z3_s3::{ErrorKind, MemoryStore, ObjectStore, RetentionMode};

use crate::engine::{Harness, backup};

fn secs(at: &str) -> i64 {
    at.parse::<jiff::Timestamp>().unwrap().as_second()
}

fn key(date: &str) -> String {
    format!("z3-backup/pool/fs@snap-{date}")
}

/// A harness with `PRESERVE=1y 12m 14d`, times from the names, `OBJECT_LOCK=governance`, class
/// STANDARD, on a
/// bucket with Object Lock, its clock (and the bucket's) at `now`.
fn locked(now: &str) -> (Harness, Arc<z3_engine::ManualClock>) {
    let h = Harness::new(|raw| {
        raw.preserve = Some("1y 12m 14d".into());
        raw.name_format = Some("snap-%Y-%m-%d".into());
        // No minimum storage duration in the way of prune.
        raw.s3_storage_class = Some("STANDARD".into());
    })
    .with_settings_of(|s| {
        s.retention.as_mut().unwrap().object_lock = Some(RetentionMode::Governance);
    })
    .with_memory_store(MemoryStore::with_object_lock("bkt", None));
    let clock = Arc::new(z3_engine::ManualClock::new(
        UNIX_EPOCH + Duration::from_secs(secs(now).unsigned_abs()),
    ));
    h.store.set_time(secs(now));
    (h.with_clock(clock.clone()), clock)
}

/// The retain-until date of `key`'s current version.
async fn retain_until(store: &MemoryStore, key: &str) -> Option<i64> {
    let info = store.head(key).await.unwrap();
    assert!(
        info.retain_until.is_none() || info.retention_mode == Some(RetentionMode::Governance),
        "{key}: {info:?}"
    );
    info.retain_until
}

/// The seal keys of `name` (`pool/fs@snap-…`).
async fn seals(store: &MemoryStore, name: &str) -> Vec<String> {
    store
        .list(&format!("z3-backup/.z3-seals/{name}@"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect()
}

#[tokio::test]
async fn each_backup_and_its_seal_are_locked_until_the_policy_lets_them_go() {
    let (h, _) = locked("2026-03-02T18:00:00Z");
    for day in [
        "2026-01-01",
        "2026-01-02",
        "2026-02-01",
        "2026-03-01",
        "2026-03-02",
    ] {
        h.snap(&format!("snap-{day}"), &format!("data {day}"));
    }
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    let expect = [
        // The year's full carries December's monthly, kept 12 months: until 2027-12-01.
        ("2026-01-01", "2027-12-01T00:00:00Z"),
        // A daily of January is kept 14 days, which ended before now: one day from now.
        ("2026-01-02", "2026-03-03T18:00:00Z"),
        ("2026-02-01", "2027-02-01T00:00:00Z"),
        ("2026-03-01", "2027-03-01T00:00:00Z"),
        ("2026-03-02", "2026-03-16T00:00:00Z"),
    ];
    for (day, until) in expect {
        let until = Some(secs(until));
        assert_eq!(retain_until(&h.store, &key(day)).await, until, "{day}");
        let seals = seals(&h.store, &format!("pool/fs@snap-{day}")).await;
        assert_eq!(seals.len(), 1, "{day}");
        assert_eq!(
            retain_until(&h.store, &seals[0]).await,
            until,
            "seal of {day}"
        );
    }
    // The lock record carries no retention.
    let versions = h.store.list_versions("z3-backup/.z3-locks/").await.unwrap();
    assert!(!versions.is_empty());
    for version in versions.iter().filter(|v| !v.is_delete_marker) {
        let info = h
            .store
            .head_version(&version.key, &version.version_id)
            .await
            .unwrap();
        assert_eq!(info.retain_until, None, "{version:?}");
    }
    // A delete of a locked version is refused; a plain delete only hides it.
    let info = h.store.head(&key("2026-01-01")).await.unwrap();
    let version = info.version_id.unwrap();
    let err = h
        .store
        .delete_version(&key("2026-01-01"), &version)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
}

#[tokio::test]
async fn object_lock_on_a_bucket_without_it_is_refused_before_anything_is_written() {
    let (h, _) = locked("2026-03-02T18:00:00Z");
    let h = h.with_memory_store(MemoryStore::versioned("bkt"));
    h.snap("snap-2026-03-01", "data");
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Usage, "{}", run.err);
    assert!(
        run.err.contains("OBJECT_LOCK=governance") && run.err.contains("s3://bkt"),
        "{}",
        run.err
    );
    assert!(
        h.store.list("").await.unwrap().is_empty(),
        "nothing written"
    );
    let run = h.run(Command::Prune(PruneArgs::default())).await;
    assert_eq!(run.status, ExitStatus::Usage, "{}", run.err);
}

#[tokio::test]
async fn prune_deletes_every_version_of_what_expired_extends_what_it_keeps_and_clears_old_lock_records()
 {
    // Backups written before OBJECT_LOCK was turned on carry no retention.
    let (h, clock) = locked("2026-03-02T18:00:00Z");
    let plain = h.with_settings_of(|s| s.retention.as_mut().unwrap().object_lock = None);
    for day in [
        "2026-01-01",
        "2026-01-02",
        "2026-02-01",
        "2026-03-01",
        "2026-03-02",
    ] {
        plain.snap(&format!("snap-{day}"), &format!("data {day}"));
        let run = plain.run(Command::Backup(backup())).await;
        assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    }
    assert_eq!(retain_until(&h.store, &key("2026-01-01")).await, None);
    let lock_versions = |h: &Harness| {
        let store = h.store.clone();
        async move {
            store
                .list_versions("z3-backup/.z3-locks/")
                .await
                .unwrap()
                .len()
        }
    };
    assert!(
        lock_versions(&h).await >= 10,
        "two per run: record and marker"
    );

    let run = h.run(Command::Prune(PruneArgs::default())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    // January's daily expired and is gone, every version of it.
    let gone = key("2026-01-02");
    assert!(
        h.store
            .list_versions(&gone)
            .await
            .unwrap()
            .iter()
            .all(|v| v.key != gone),
        "{}",
        run.out
    );
    // What it keeps is now locked as the policy needs, seals included.
    assert_eq!(
        retain_until(&h.store, &key("2026-01-01")).await,
        Some(secs("2027-12-01T00:00:00Z"))
    );
    let seal = &seals(&h.store, "pool/fs@snap-2026-01-01").await[0];
    assert_eq!(
        retain_until(&h.store, seal).await,
        Some(secs("2027-12-01T00:00:00Z"))
    );
    assert!(run.err.contains("extended the Object Lock"), "{}", run.err);
    // Old lock records went; the current state (a marker or a record) stays.
    assert!(lock_versions(&h).await <= 2, "{}", run.out);

    // A second prune at the same time changes nothing.
    let run = h.run(Command::Prune(PruneArgs::default())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert!(!run.err.contains("extended"), "{}", run.err);

    h.snap("snap-2026-03-03", "data 2026-03-03");
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    // March's second daily is locked until 2026-03-16 00:00, when the policy lets it go. Five
    // minutes later, with the bucket's clock ten minutes behind (S3 refuses requests skewed by
    // more than fifteen), prune keeps it rather than have the delete refused…
    clock.advance(Duration::from_secs(
        (secs("2026-03-16T00:05:00Z") - secs("2026-03-02T18:00:00Z")).unsigned_abs(),
    ));
    h.store.set_time(secs("2026-03-15T23:55:00Z"));
    let run = h.run(Command::Prune(PruneArgs::default())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert!(
        h.store.head(&key("2026-03-02")).await.is_ok(),
        "{}",
        run.out
    );
    // …and deletes it once the skew allowance has passed.
    clock.advance(Duration::from_mins(20));
    h.store.set_time(secs("2026-03-16T00:15:00Z"));
    let run = h.run(Command::Prune(PruneArgs::default())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert!(
        h.store.head(&key("2026-03-02")).await.is_err(),
        "{}",
        run.out
    );
}

#[tokio::test]
async fn a_backup_hidden_behind_a_delete_marker_is_shown_and_restored() {
    let (h, _) = locked("2026-03-02T18:00:00Z");
    for day in ["2026-03-01", "2026-03-02"] {
        h.snap(&format!("snap-{day}"), &format!("data {day}"));
    }
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    // Stolen credentials delete the full: on a versioned bucket, a delete marker.
    h.store.delete(&key("2026-03-01")).await.unwrap();
    assert!(h.store.head(&key("2026-03-01")).await.is_err());

    let run = h
        .run(Command::Status(z3_cli::args::StatusArgs::default()))
        .await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert!(run.out.contains("snap-2026-03-01"), "{}", run.out);
    assert!(
        run.err
            .contains("pool/fs@snap-2026-03-01 is hidden behind a delete marker"),
        "{}",
        run.err
    );
    // The bucket-wide summary counts it too.
    let run = h
        .run(Command::Status(z3_cli::args::StatusArgs {
            all: true,
            ..z3_cli::args::StatusArgs::default()
        }))
        .await;
    assert_eq!(run.status, ExitStatus::Success, "{}{}", run.out, run.err);
    let other = h.other_machine();
    let run = other
        .run(Command::Restore(crate::engine::restore("snap-2026-03-02")))
        .await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert_eq!(
        other.zfs.content("pool/fs").as_deref(),
        Some(&b"data 2026-03-02"[..])
    );
    // Without OBJECT_LOCK the bucket is read as it lists: the chain looks broken.
    let plain = other.with_settings_of(|s| s.retention.as_mut().unwrap().object_lock = None);
    let run = plain
        .run(Command::Status(z3_cli::args::StatusArgs::default()))
        .await;
    assert_ne!(run.status, ExitStatus::Success, "{}", run.out);
}

/// Under `OBJECT_LOCK` the bucket is read through a view that shows objects hidden behind a
/// delete marker; the lock must not be. Another run holds the lock when ours tries to create
/// it and releases it (on a versioned bucket: a delete marker) before ours reads it: the lock
/// is free, and the backup takes it instead of failing with "another run holds the lock".
#[tokio::test]
async fn a_lock_released_between_our_create_and_our_read_is_free_not_held_behind_its_marker() {
    let now = "2026-03-02T18:00:00Z";
    let (h, clock) = locked(now);
    h.snap("snap-2026-03-02", "data 2026-03-02");
    let lock_key = "z3-backup/.z3-locks/pool/fs";
    let at = secs(now).unsigned_abs();
    let holder = z3_core::LockRecord {
        owner: "another-run".into(),
        host: "elsewhere".into(),
        pid: 4242,
        acquired: at,
        expires: at + 900,
        process: None,
    };
    h.store
        .insert(lock_key, holder.to_text(), &z3_s3::PutOptions::default());
    let faults = z3_s3::FaultyStore::new(h.store.clone());
    // The holder releases just before our first read of the lock.
    faults.write_before(z3_s3::Op::Head, 1, lock_key, None);
    let racing = h.with_store(Arc::new(faults.clone())).with_clock(clock);
    let run = racing.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert!(faults.calls(z3_s3::Op::Head) >= 1, "the lock was read");
    assert!(
        h.store.head(&key("2026-03-02")).await.is_ok(),
        "the backup was written"
    );
    // Our own lock was released too: only delete markers and old records remain.
    assert!(h.store.head(lock_key).await.is_err());
}

//! `OBJECT_LOCK` on zfs-fuse and a SeaweedFS bucket with Object Lock: backups and seals are
//! locked (a delete of a locked version is refused), a delete marker planted over a backup
//! does not stop `status` from showing it or `restore` from receiving it, and prune clears the
//! old lock records.

use std::time::Duration;

use z3_s3::{AwsStore, ErrorKind, ObjectStore, RetentionMode};

use crate::support::{RealEnv, stderr, stdout, zfs};

/// The Object Lock bucket `<bucket>-lock`, created on first use (SeaweedFS may take a moment
/// to make a new bucket usable).
async fn lock_bucket(env: &RealEnv) -> (String, AwsStore) {
    let bucket = format!("{}-lock", env.bucket);
    let store = AwsStore::connect(env.s3_config(&bucket)).await.unwrap();
    for attempt in 0.. {
        match store.check_bucket().await {
            Ok(()) => break,
            Err(err)
                if attempt < 40
                    && (err.kind() == ErrorKind::NoSuchBucket || err.is_retryable()) =>
            {
                let _ = store
                    .client()
                    .create_bucket()
                    .bucket(&bucket)
                    .object_lock_enabled_for_bucket(true)
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(err) => panic!("lock bucket {bucket} unusable: {err}"),
        }
    }
    (bucket, store)
}

#[tokio::test]
async fn locked_backups_survive_a_delete_and_a_planted_delete_marker_does_not_stop_a_restore() {
    let Some(env) = RealEnv::get(
        "locked_backups_survive_a_delete_and_a_planted_delete_marker_does_not_stop_a_restore",
    ) else {
        return;
    };
    let (bucket, store) = lock_bucket(&env).await;
    let ds = env.dataset("objlock");
    ds.write_random("one.bin", 200_000, 1);
    ds.snapshot("snap1");
    ds.write_random("two.bin", 200_000, 2);
    ds.snapshot("snap2");
    let settings = [
        ("BUCKET", bucket.as_str()),
        ("PRESERVE", "1y 12m 14d"),
        ("OBJECT_LOCK", "governance"),
    ];
    let out = env.z3_with(&ds, &["backup"], &settings);
    assert!(out.status.success(), "{}", stderr(&out));

    // Both objects and their seals are locked, in governance mode, into the future.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .cast_signed();
    let full = ds.key("snap1");
    let info = store.head(&full).await.unwrap();
    assert_eq!(
        info.retention_mode,
        Some(RetentionMode::Governance),
        "{info:?}"
    );
    assert!(info.retain_until.unwrap() > now + 300 * 86_400, "{info:?}");
    let seals = store
        .list(&format!("{}.z3-seals/", ds.prefix))
        .await
        .unwrap();
    assert_eq!(seals.len(), 2, "{seals:?}");
    for seal in &seals {
        let info = store.head(&seal.key).await.unwrap();
        assert!(info.retain_until.is_some_and(|t| t > now), "{info:?}");
    }
    // Deleting the locked version is refused.
    let version = info.version_id.clone().unwrap();
    let err = store.delete_version(&full, &version).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");

    // Stolen credentials can still hide the full behind a delete marker…
    store.delete(&full).await.unwrap();
    assert!(store.head(&full).await.is_err(), "hidden from a plain HEAD");
    // …but status shows it, and restore receives it.
    let out = env.z3_with(&ds, &["status"], &settings);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("snap1"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("hidden behind a delete marker") || stdout(&out).contains("hidden"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let target = format!("{}-copy", ds.name);
    let out = env.z3_with(
        &ds,
        &["restore", "snap2", "--target-dataset", &target],
        &settings,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mountpoint = zfs(&["get", "-H", "-o", "value", "mountpoint", &target]);
    for file in ["one.bin", "two.bin"] {
        let restored = std::fs::read(format!("{}/{file}", mountpoint.trim())).unwrap();
        let original = std::fs::read(ds.mountpoint().join(file)).unwrap();
        assert!(restored == original, "{file} differs");
    }
    crate::support::destroy_retrying(&target).unwrap();

    // Prune keeps both (the policy preserves them), removes old lock records, and deletes
    // nothing that is locked.
    let lock_key = format!("{}.z3-locks/{}", ds.prefix, ds.name);
    for _ in 0..2 {
        let out = env.z3_with(&ds, &["backup"], &settings);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let before = store.list_versions(&lock_key).await.unwrap().len();
    assert!(before >= 6, "three backups took the lock: {before}");
    let out = env.z3_with(&ds, &["prune"], &settings);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = store.list_versions(&lock_key).await.unwrap().len();
    assert!(after <= 2, "{after} lock versions left\n{}", stdout(&out));
    assert!(store.head_version(&full, &version).await.is_ok());

    // OBJECT_LOCK on the plain bucket is refused before anything is written.
    let plain = env.dataset("objlock-plain");
    plain.write("f.txt", "x");
    plain.snapshot("snap1");
    let out = env.z3_with(
        &plain,
        &["backup"],
        &[("PRESERVE", "14d"), ("OBJECT_LOCK", "governance")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("OBJECT_LOCK"), "{}", stderr(&out));
    assert!(
        env.store()
            .await
            .list(&plain.prefix)
            .await
            .unwrap()
            .is_empty()
    );
}

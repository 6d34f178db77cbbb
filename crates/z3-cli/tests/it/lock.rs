//! The backup lock's races, decided by the server's conditional requests: another run's write
//! lands between our read and our write (`FaultyStore::write_before`).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use z3_cli::lock::{LockRequest, LockedError, acquire};
use z3_core::LockRecord;
use z3_s3::{FaultyStore, MemoryStore, ObjectStore, Op, PutOptions};

const KEY: &str = "z3-backup/.z3-locks/pool/fs";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn record(owner: &str, expires: u64) -> Bytes {
    LockRecord {
        owner: owner.into(),
        host: format!("{owner}-host"),
        pid: 7,
        acquired: now() - 60,
        expires,
        process: None,
    }
    .to_text()
    .into()
}

fn request(ttl: Duration) -> LockRequest<'static> {
    LockRequest {
        key: KEY,
        url: "s3://bucket/z3-backup/.z3-locks/pool/fs",
        what: "pool/fs",
        ttl,
        break_lock: false,
    }
}

fn store() -> Arc<FaultyStore<MemoryStore>> {
    Arc::new(FaultyStore::new(MemoryStore::new("bucket")))
}

fn holder(store: &FaultyStore<MemoryStore>) -> Option<String> {
    store
        .inner()
        .object(KEY)
        .map(|(data, _, _)| String::from_utf8_lossy(&data).into_owned())
}

#[tokio::test]
async fn two_runs_racing_for_a_stale_lock_one_wins() {
    // Both runs read the stale record; run B takes it over right after run A's read (before
    // A acts on it). A's takeover must fail its If-Match: A is refused, B's lock stays.
    let store = store();
    store
        .inner()
        .insert(KEY, record("stale", now() - 10), &PutOptions::default());
    // GET 1 is A's read of the stale record.
    store.write_after(Op::GetRange, 1, KEY, Some(record("run-b", now() + 3600)));
    let dyn_store: Arc<dyn ObjectStore> = store.clone();
    let mut err_out = Vec::new();
    let result = acquire(
        &dyn_store,
        &request(Duration::from_mins(15)),
        CancellationToken::new(),
        &mut err_out,
    )
    .await;
    let err = result.expect_err("run A must not hold the lock run B took");
    assert!(err.is::<LockedError>(), "{err:#}");
    assert!(format!("{err:#}").contains("run-b-host"), "{err:#}");
    assert!(holder(&store).unwrap().contains("owner=run-b"));
}

#[tokio::test]
async fn a_renewal_after_the_lock_was_broken_and_retaken_fails_and_writes_nothing() {
    // Between the renewal's owner check and its write, another run breaks the lock and takes
    // it: the renewal's If-Match fails, the run learns it lost the lock, the new lock stays.
    let store = store();
    let dyn_store: Arc<dyn ObjectStore> = store.clone();
    let lost = CancellationToken::new();
    let held = acquire(
        &dyn_store,
        &request(Duration::from_millis(300)),
        lost.clone(),
        &mut Vec::new(),
    )
    .await
    .unwrap();
    // Put 1 was our create; put 2 is the first renewal.
    store.write_before(Op::Put, 2, KEY, Some(record("breaker", now() + 3600)));
    tokio::time::timeout(Duration::from_mins(1), lost.cancelled())
        .await
        .expect("the run did not notice it lost the lock");
    assert!(holder(&store).unwrap().contains("owner=breaker"));
    held.release().await;
    assert!(
        holder(&store).unwrap().contains("owner=breaker"),
        "release left the new holder's lock alone"
    );
}

#[tokio::test]
async fn a_renewal_cannot_bring_back_a_released_lock() {
    // The lock is deleted (broken with --break-lock, or released) between the renewal's owner
    // check and its write: the renewal fails instead of creating the lock again.
    let store = store();
    let dyn_store: Arc<dyn ObjectStore> = store.clone();
    let lost = CancellationToken::new();
    let _held = acquire(
        &dyn_store,
        &request(Duration::from_millis(300)),
        lost.clone(),
        &mut Vec::new(),
    )
    .await
    .unwrap();
    store.write_before(Op::Put, 2, KEY, None);
    tokio::time::timeout(Duration::from_mins(1), lost.cancelled())
        .await
        .expect("the run did not notice it lost the lock");
    assert_eq!(holder(&store), None, "the renewal brought the lock back");
}

#[tokio::test]
async fn a_release_racing_a_takeover_leaves_the_new_holder_alone() {
    // Between the release's owner check and its delete, another run takes the lock: the
    // delete's If-Match fails and the other run's lock stays.
    let store = store();
    let dyn_store: Arc<dyn ObjectStore> = store.clone();
    let held = acquire(
        &dyn_store,
        &request(Duration::from_mins(15)),
        CancellationToken::new(),
        &mut Vec::new(),
    )
    .await
    .unwrap();
    store.write_before(Op::Delete, 1, KEY, Some(record("next-run", now() + 3600)));
    held.release().await;
    assert!(holder(&store).unwrap().contains("owner=next-run"));
}

#[tokio::test]
async fn a_release_after_renewals_deletes_the_renewed_lock() {
    // The release uses the ETag of the last renewal, so it deletes our (renewed) lock.
    let store = store();
    let dyn_store: Arc<dyn ObjectStore> = store.clone();
    let held = acquire(
        &dyn_store,
        &request(Duration::from_millis(300)),
        CancellationToken::new(),
        &mut Vec::new(),
    )
    .await
    .unwrap();
    // Wait for two renewals (every 100 ms).
    tokio::time::timeout(Duration::from_secs(30), async {
        while store.calls(Op::Put) < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the lock was not renewed");
    held.release().await;
    assert_eq!(holder(&store), None);
}

#[tokio::test]
async fn a_record_replaced_while_it_is_read_counts_as_held() {
    // A stale record is replaced by a live one two bytes longer (a longer `acquired`) between
    // HEAD and GET: read to the old length, the new record loses the last digit of `expires`
    // (and its newline), which parses as a time in 1975. That torn read must count as held.
    let store = store();
    store
        .inner()
        .insert(KEY, record("stale", now() - 10), &PutOptions::default());
    let live = LockRecord {
        owner: "stale".into(),
        host: "stale-host".into(),
        pid: 7,
        acquired: now() * 100,
        expires: now() + 3600,
        process: None,
    };
    store.write_before(Op::GetRange, 1, KEY, Some(Bytes::from(live.to_text())));
    let dyn_store: Arc<dyn ObjectStore> = store.clone();
    let err = acquire(
        &dyn_store,
        &request(Duration::from_mins(15)),
        CancellationToken::new(),
        &mut Vec::new(),
    )
    .await
    .expect_err("a record changed during the read is held");
    assert!(err.is::<LockedError>(), "{err:#}");
    assert!(
        holder(&store)
            .unwrap()
            .contains(&format!("acquired={}", live.acquired))
    );
}

/// The lock record under `key` of a real store, if any.
async fn real_holder(store: &dyn ObjectStore, key: &str) -> Option<String> {
    let info = store.head(key).await.ok()?;
    let body = store.get_range(key, 0..info.size).await.unwrap();
    Some(String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn on_seaweedfs_racing_takeover_and_renewal_after_a_break_keep_one_holder() {
    let Some(env) = crate::support::RealEnv::get("lock races on SeaweedFS") else {
        return;
    };
    let store = Arc::new(FaultyStore::new(env.store().await));
    let dyn_store: Arc<dyn ObjectStore> = store.clone();
    let key = format!("lock-races-{}/.z3-locks/pool/fs", std::process::id());
    let request = |ttl| LockRequest {
        key: &key,
        ..request(ttl)
    };

    // Two runs racing for a stale lock: B's takeover lands right after A's read.
    store
        .put(&key, record("stale", now() - 10), &PutOptions::default())
        .await
        .unwrap();
    let gets = store.calls(Op::GetRange);
    store.write_after(
        Op::GetRange,
        gets + 1,
        &key,
        Some(record("run-b", now() + 3600)),
    );
    let err = acquire(
        &dyn_store,
        &request(Duration::from_mins(15)),
        CancellationToken::new(),
        &mut Vec::new(),
    )
    .await
    .expect_err("run A must not hold the lock run B took");
    assert!(err.is::<LockedError>(), "{err:#}");
    assert!(
        real_holder(&*store, &key)
            .await
            .unwrap()
            .contains("owner=run-b")
    );
    store.delete(&key).await.unwrap();

    // A renewal after the lock was broken and taken by another run fails and writes nothing.
    let lost = CancellationToken::new();
    let held = acquire(
        &dyn_store,
        &request(Duration::from_millis(300)),
        lost.clone(),
        &mut Vec::new(),
    )
    .await
    .unwrap();
    let puts = store.calls(Op::Put);
    store.write_before(
        Op::Put,
        puts + 1,
        &key,
        Some(record("breaker", now() + 3600)),
    );
    tokio::time::timeout(Duration::from_mins(1), lost.cancelled())
        .await
        .expect("the run did not notice it lost the lock");
    held.release().await;
    assert!(
        real_holder(&*store, &key)
            .await
            .unwrap()
            .contains("owner=breaker")
    );

    // Release racing a takeover leaves the new holder alone.
    store.delete(&key).await.unwrap();
    let held = acquire(
        &dyn_store,
        &request(Duration::from_mins(15)),
        CancellationToken::new(),
        &mut Vec::new(),
    )
    .await
    .unwrap();
    let deletes = store.calls(Op::Delete);
    store.write_before(
        Op::Delete,
        deletes + 1,
        &key,
        Some(record("next-run", now() + 3600)),
    );
    held.release().await;
    assert!(
        real_holder(&*store, &key)
            .await
            .unwrap()
            .contains("owner=next-run")
    );
    store.delete(&key).await.unwrap();
}

/// A rerun right after a crash (`kill -9`, OOM, reboot) takes the dead run's lock at once
/// instead of waiting up to 15 minutes for it to expire: the record names the machine, the
/// boot and the holder's start time, so a pid reused by another process does not keep it
/// held, and a live holder (or one on another machine) still does.
#[tokio::test]
async fn a_lock_whose_holder_on_this_machine_is_gone_is_taken_at_once() {
    let here = z3_engine::lock::this_process().expect("this machine has a machine id");
    assert_eq!(
        z3_engine::lock::process_start(std::process::id()),
        Some(here.start)
    );
    let fresh = |holder: Option<z3_core::Holder>| -> Bytes {
        LockRecord {
            owner: "crashed".into(),
            host: "here".into(),
            pid: std::process::id(),
            acquired: now() - 60,
            expires: now() + 3600,
            process: holder,
        }
        .to_text()
        .into()
    };
    let machine = here.machine.clone();
    let take = |body: Bytes| {
        let machine = machine.clone();
        async move {
            let store = store();
            store.inner().insert(KEY, body, &PutOptions::default());
            let dyn_store: Arc<dyn ObjectStore> = store.clone();
            let mut err_out = Vec::new();
            let result = acquire(
                &dyn_store,
                &request(Duration::from_mins(15)),
                CancellationToken::new(),
                &mut err_out,
            )
            .await;
            let taken = match result {
                Ok(lock) => {
                    let ours = holder(&store).unwrap();
                    assert!(ours.contains(&format!("machine={machine}")), "{ours}");
                    lock.release().await;
                    true
                }
                Err(err) => {
                    assert!(err.is::<LockedError>(), "{err:#}");
                    false
                }
            };
            (taken, String::from_utf8(err_out).unwrap())
        }
    };
    let reused = z3_core::Holder {
        start: here.start + 1,
        ..here.clone()
    };
    let (taken, notes) = take(fresh(Some(reused))).await;
    assert!(taken, "the pid now belongs to another process: {notes}");
    assert!(notes.contains("taking over the abandoned lock"), "{notes}");
    let rebooted = z3_core::Holder {
        boot: "another-boot".into(),
        ..here.clone()
    };
    assert!(
        take(fresh(Some(rebooted))).await.0,
        "written before a reboot"
    );
    // This very process holds it: alive.
    assert!(!take(fresh(Some(here.clone()))).await.0);
    // Another machine, or a record without a holder: only expiry frees it.
    let elsewhere = z3_core::Holder {
        machine: "another-machine".into(),
        ..here.clone()
    };
    assert!(!take(fresh(Some(elsewhere))).await.0);
    assert!(!take(fresh(None)).await.0);
}

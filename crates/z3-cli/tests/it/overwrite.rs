//! Issue 12, points 1 and 3(a) on the fakes: the server enforces what the plan decided (a free
//! key must still be free when the upload completes), and a completed replacement whose
//! checksum cannot be confirmed is kept rather than leaving nothing.

use std::sync::Arc;

use z3_cli::args::{BackupArgs, Command};
use z3_cli::exit::ExitStatus;
use z3_s3::{ChecksumReply, ErrorKind, FaultyStore, Op, PutOptions};

use crate::engine::{Harness, backup, restore};

/// Another writer (say the original z3, which takes no lock) puts an object under the key
/// after z3 listed the bucket: the conditional completion (`If-None-Match: *`) refuses to
/// replace it, z3 exits 3, and the other object stays.
#[tokio::test]
async fn a_key_taken_after_the_listing_is_not_overwritten() {
    let h = Harness::new(|_| {});
    h.snap("snap1", "one");
    let key = "z3-backup/pool/fs@snap1";
    h.store
        .insert(key, b"someone else's".to_vec(), &PutOptions::default());
    // The listing does not see it yet (it arrived between LIST and HEAD, so to speak).
    let faulty = FaultyStore::new(h.store.clone());
    faulty.fail_key(key, Some(Op::Head), 1, ErrorKind::NotFound);
    let run = h
        .with_store(Arc::new(faulty))
        .run(Command::Backup(backup()))
        .await;
    assert_eq!(run.status, ExitStatus::Integrity, "{}", run.err);
    assert!(
        run.err
            .contains("s3://bkt/z3-backup/pool/fs@snap1 changed since z3 listed it (another writer?); nothing was overwritten"),
        "{}",
        run.err
    );
    assert_eq!(&h.store.object(key).unwrap().0[..], b"someone else's");
    assert_eq!(h.store.open_uploads(), 0);
}

/// A `--full` re-upload of a snapshot already backed up completes (replacing the old object),
/// then the server reports a checksum that does not match: the old object is gone either way,
/// so the new one is kept (it has its seal; restore checks it) instead of leaving nothing.
#[tokio::test]
async fn an_unconfirmed_replacement_is_kept_not_deleted() {
    let h = Harness::new(|_| {});
    h.snap("snap1", "one");
    assert_eq!(
        h.run(Command::Backup(backup())).await.status,
        ExitStatus::Success
    );
    let faulty = FaultyStore::new(h.store.clone());
    faulty.checksum_reply(Op::CompleteMultipart, ChecksumReply::Wrong);
    let run = h
        .with_store(Arc::new(faulty.clone()))
        .run(Command::Backup(BackupArgs {
            full: true,
            ..backup()
        }))
        .await;
    assert_eq!(run.status, ExitStatus::Error, "{}", run.err);
    assert!(
        run.err
            .contains("was kept: it replaced the previous object, which is gone either way"),
        "{}",
        run.err
    );
    assert_eq!(faulty.calls(Op::Delete), 1, "only the lock was deleted");
    let other = h.other_machine();
    let restored = other.run(Command::Restore(restore("snap1"))).await;
    assert_eq!(restored.status, ExitStatus::Success, "{}", restored.err);
    assert_eq!(other.zfs.content("pool/fs").as_deref(), Some(&b"one"[..]));

    // A first upload (the key was free) is still deleted on a mismatch: nothing is lost.
    let h = Harness::new(|_| {});
    h.snap("snap1", "one");
    let faulty = FaultyStore::new(h.store.clone());
    faulty.checksum_reply(Op::CompleteMultipart, ChecksumReply::Wrong);
    let run = h
        .with_store(Arc::new(faulty))
        .run(Command::Backup(backup()))
        .await;
    assert_eq!(run.status, ExitStatus::Error, "{}", run.err);
    assert!(run.err.contains("was deleted"), "{}", run.err);
    assert!(h.store.object("z3-backup/pool/fs@snap1").is_none());
}

//! Seals and the end-to-end stream digest (ADR 3) on `FakeZfs` and `MemoryStore`.

use z3_cli::args::{Command, RestoreArgs, StatusArgs};
use z3_cli::exit::ExitStatus;
use z3_core::Seal;
use z3_s3::{ErrorKind, FaultyStore, ObjectStore, Op, PutOptions};

use crate::engine::{Harness, backup, restore};

const SEAL1: &str = "z3-backup/.z3-seals/pool/fs@snap1";
const OBJ1: &str = "z3-backup/pool/fs@snap1";
const OBJ2: &str = "z3-backup/pool/fs@snap2";

fn seal_of(h: &Harness, key: &str) -> Seal {
    let (body, _, _) = h.store.object(key).expect("the seal exists");
    Seal::parse(std::str::from_utf8(&body).unwrap()).unwrap()
}

/// Two snapshots backed up with COMPRESSOR=none: the objects are the raw streams.
async fn backed_up_pair() -> Harness {
    let h = Harness::new(|_| {});
    h.snap("snap1", "one");
    h.snap("snap2", "two");
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    h
}

/// Replaces an object's bytes, keeping its metadata and length (bit rot, or a swap).
fn tamper(h: &Harness, key: &str, edit: impl FnOnce(&mut Vec<u8>)) {
    let (data, metadata, _) = h.store.object(key).unwrap();
    let mut data = data.to_vec();
    edit(&mut data);
    h.store.insert(
        key,
        data,
        &PutOptions {
            metadata,
            ..PutOptions::default()
        },
    );
}

#[tokio::test]
async fn every_object_gets_a_seal_with_the_digests_of_stream_and_object() {
    let h = backed_up_pair().await;
    for (snap, parent_guid) in [("snap1", None), ("snap2", Some("pool/fs@snap1"))] {
        let key = format!("z3-backup/pool/fs@{snap}");
        let (object, meta, _) = h.store.object(&key).unwrap();
        let seal = seal_of(&h, &format!("z3-backup/.z3-seals/pool/fs@{snap}"));
        assert_eq!(seal.snapshot, format!("pool/fs@{snap}"));
        // COMPRESSOR=none: the object is the stream, so both digests are of the same bytes.
        let digest = *blake3::hash(&object).as_bytes();
        assert_eq!(
            (seal.stream.blake3, seal.stream.len),
            (digest, object.len() as u64)
        );
        assert_eq!(seal.object, seal.stream);
        assert_eq!(seal.guid.map(|g| g.to_string()), meta.get("guid").cloned());
        assert_eq!(
            seal.parent_guid.map(|g| g.to_string()),
            meta.get("parent-guid").cloned()
        );
        assert_eq!(seal.parent_guid.is_some(), parent_guid.is_some());
    }
    // Seals live outside the snapshot listing: status shows two healthy rows.
    let run = h.run(Command::Status(StatusArgs { json: false })).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    for snap in ["snap1", "snap2"] {
        let row = run.out.lines().find(|l| l.starts_with(snap)).unwrap();
        assert!(
            !row.contains("unsealed") && row.contains("ok"),
            "{}",
            run.out
        );
    }
    assert!(!run.out.contains("z3-seals"), "{}", run.out);
}

#[tokio::test]
async fn compressed_objects_seal_the_raw_stream_and_the_stored_bytes_apart() {
    let h = Harness::new(|raw| raw.compressor = Some("zstd".into()));
    h.snap("snap1", &"compressible ".repeat(10_000));
    assert_eq!(
        h.run(Command::Backup(backup())).await.status,
        ExitStatus::Success
    );
    let (object, _, _) = h.store.object(OBJ1).unwrap();
    let seal = seal_of(&h, SEAL1);
    assert_eq!(seal.compressor.as_deref(), Some("zstd"));
    assert_eq!(seal.object.blake3, *blake3::hash(&object).as_bytes());
    assert_eq!(seal.object.len, object.len() as u64);
    assert!(seal.stream.len > 10 * seal.object.len, "{seal:?}");
    // The restore recomputes the stream digest after decompression and it matches.
    h.zfs.destroy_dataset("pool/fs").unwrap();
    let run = h.run(Command::Restore(restore("snap1"))).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
}

#[tokio::test]
async fn a_seal_that_cannot_be_written_aborts_the_upload() {
    let h = Harness::new(|_| {});
    let faulty = FaultyStore::new(h.store.clone());
    // Every attempt to write the seal fails (the retries included).
    faulty.fail_key(SEAL1, 10, ErrorKind::AccessDenied);
    let h = h.with_store(std::sync::Arc::new(faulty.clone()));
    h.snap("snap1", "one");
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Error, "{}", run.err);
    assert!(
        run.err
            .contains("backup of pool/fs@snap1 failed, upload aborted"),
        "{}",
        run.err
    );
    assert!(
        run.err
            .contains("writing the seal z3-backup/.z3-seals/pool/fs@snap1"),
        "{}",
        run.err
    );
    assert!(h.store.object(OBJ1).is_none(), "no object without a seal");
    assert_eq!(h.store.open_uploads(), 0);
    assert_eq!(faulty.calls(Op::CompleteMultipart), 0);
}

#[tokio::test]
async fn a_corrupt_object_is_refused_before_zfs_receive_sees_its_end() {
    let h = backed_up_pair().await;
    // Same length, same metadata, one flipped byte: only the digest can tell.
    tamper(&h, OBJ2, |data| {
        let middle = data.len() / 2;
        data[middle] ^= 0x40;
    });
    h.zfs.destroy_dataset("pool/fs").unwrap();
    let run = h.run(Command::Restore(restore("snap2"))).await;
    assert_eq!(run.status, ExitStatus::Integrity, "{}", run.err);
    assert!(
        run.err.contains(
            "the zfs stream of z3-backup/pool/fs@snap2 does not match its seal: expected blake3 "
        ),
        "{}",
        run.err
    );
    assert!(
        run.err
            .contains("zfs receive was killed before it saw the end of the stream"),
        "{}",
        run.err
    );
    // snap1 was fine and committed; snap2 was not.
    assert_eq!(h.zfs.snapshot_names("pool/fs"), ["snap1"]);
}

#[tokio::test]
async fn a_swapped_object_is_refused_by_its_seal() {
    let h = backed_up_pair().await;
    // Someone with write access copies snap1's bytes and metadata over snap2.
    let (data, metadata, _) = h.store.object(OBJ1).unwrap();
    h.store.insert(
        OBJ2,
        data,
        &PutOptions {
            metadata,
            ..PutOptions::default()
        },
    );
    h.zfs.destroy_dataset("pool/fs").unwrap();
    let run = h.run(Command::Restore(restore("snap2"))).await;
    // snap2 now claims to be a full: the chain is fine, the seal is not.
    assert_eq!(run.status, ExitStatus::Integrity, "{}", run.err);
    assert!(
        run.err.contains("cannot restore pool/fs@snap2: z3-backup/pool/fs@snap2 is seal mismatch: its seal describes another object (seal vs object: guid "),
        "{}",
        run.err
    );
    assert!(
        h.zfs.snapshot_names("pool/fs").is_empty(),
        "nothing received"
    );
}

#[tokio::test]
async fn an_unsealed_object_is_refused_unless_allowed_and_status_says_so() {
    let h = backed_up_pair().await;
    h.store
        .delete("z3-backup/.z3-seals/pool/fs@snap2")
        .await
        .unwrap();

    let run = h.run(Command::Status(StatusArgs { json: false })).await;
    assert_eq!(run.status, ExitStatus::Integrity, "{}", run.out);
    let row = run.out.lines().find(|l| l.starts_with("snap2")).unwrap();
    assert!(row.contains("unsealed"), "{}", run.out);

    h.zfs.destroy_dataset("pool/fs").unwrap();
    let run = h.run(Command::Restore(restore("snap2"))).await;
    assert_eq!(run.status, ExitStatus::Integrity, "{}", run.err);
    assert!(run.err.contains(
        "cannot restore pool/fs@snap2: z3-backup/pool/fs@snap2 is unsealed: written by z3 but has no seal"
    ), "{}", run.err);
    assert!(
        run.err
            .contains("`z3 restore --allow-unsealed` restores it without the check"),
        "{}",
        run.err
    );
    assert!(
        h.zfs.snapshot_names("pool/fs").is_empty(),
        "refused before anything was received"
    );

    let run = h
        .run(Command::Restore(RestoreArgs {
            allow_unsealed: true,
            ..restore("snap2")
        }))
        .await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert!(
        run.err
            .contains("warning: restoring z3-backup/pool/fs@snap2 unchecked (--allow-unsealed)"),
        "{}",
        run.err
    );
    assert_eq!(h.zfs.content("pool/fs").as_deref(), Some(&b"two"[..]));
}

#[tokio::test]
async fn objects_of_the_original_z3_restore_unchecked_with_a_note() {
    let h = backed_up_pair().await;
    // What the original wrote: no guid, no seal.
    for (key, seal) in [(OBJ1, SEAL1), (OBJ2, "z3-backup/.z3-seals/pool/fs@snap2")] {
        let (data, mut metadata, _) = h.store.object(key).unwrap();
        metadata.remove("guid");
        metadata.remove("parent-guid");
        h.store.insert(
            key,
            data,
            &PutOptions {
                metadata,
                ..PutOptions::default()
            },
        );
        h.store.delete(seal).await.unwrap();
    }
    let run = h.run(Command::Status(StatusArgs { json: false })).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.out);
    assert!(!run.out.contains("unsealed"), "{}", run.out);
    h.zfs.destroy_dataset("pool/fs").unwrap();
    let run = h.run(Command::Restore(restore("snap2"))).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert!(
        run.err.contains(
            "note: z3-backup/pool/fs@snap1 was written by the original z3 and has no digest"
        ),
        "{}",
        run.err
    );
}

#[tokio::test]
async fn an_orphan_seal_of_a_failed_upload_does_not_make_a_backup() {
    let h = Harness::new(|_| {});
    let faulty = FaultyStore::new(h.store.clone());
    // The seal is written, then every completion fails: the upload is aborted.
    faulty.fail(Op::CompleteMultipart, 10, ErrorKind::AccessDenied);
    let failing = h.with_store(std::sync::Arc::new(faulty));
    failing.snap("snap1", "one");
    let run = failing.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Error, "{}", run.err);
    assert!(h.store.object(SEAL1).is_some(), "the seal went in first");
    assert!(h.store.object(OBJ1).is_none());
    assert_eq!(h.store.open_uploads(), 0);
    // Status lists no backup; the next backup overwrites the orphan seal.
    let run = failing
        .run(Command::Status(StatusArgs { json: false }))
        .await;
    assert!(
        run.out
            .lines()
            .any(|l| l.starts_with("snap1") && l.contains("missing")),
        "{}",
        run.out
    );
    let retry = failing.with_store(std::sync::Arc::new(h.store.clone()));
    let run = retry.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    let (object, _, _) = h.store.object(OBJ1).unwrap();
    assert_eq!(
        seal_of(&h, SEAL1).object.blake3,
        *blake3::hash(&object).as_bytes()
    );
}

//! Seals and the end-to-end stream digest (ADR 3) on `FakeZfs` and `MemoryStore`.

use z3_cli::args::{BackupArgs, Command, RestoreArgs, StatusArgs, VerifyArgs};
use z3_cli::exit::ExitStatus;
use z3_core::Seal;
use z3_s3::{ErrorKind, FaultyStore, ObjectStore, Op, PutOptions};

use crate::engine::{Harness, age_key, backup, restore};

/// Where the seals of snap1 begin: each upload's seal is `<this>@<upload token>`.
const SEAL1: &str = "z3-backup/.z3-seals/pool/fs@snap1";
const OBJ1: &str = "z3-backup/pool/fs@snap1";
const OBJ2: &str = "z3-backup/pool/fs@snap2";

/// The key of the seal the object at `object_key` names (its upload token).
fn seal_key(h: &Harness, object_key: &str) -> String {
    let (_, meta, _) = h.store.object(object_key).expect("the object exists");
    let token = meta
        .get("z3-upload")
        .expect("the object records its upload token");
    let name = object_key.strip_prefix("z3-backup/").unwrap();
    format!("z3-backup/.z3-seals/{name}@{token}")
}

/// Every seal key of `pool/fs@<snap>`.
fn seals_of(h: &Harness, snap: &str) -> Vec<String> {
    let name = format!("z3-backup/.z3-seals/pool/fs@{snap}");
    h.store
        .objects()
        .into_keys()
        .filter(|k| k == &name || k.starts_with(&format!("{name}@")))
        .collect()
}

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
        let seal = seal_of(&h, &seal_key(&h, &key));
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
    let run = h.run(Command::Status(StatusArgs::default())).await;
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
    let seal = seal_of(&h, &seal_key(&h, OBJ1));
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
    faulty.fail_key(SEAL1, Some(Op::Put), 10, ErrorKind::AccessDenied);
    let h = h.with_store(std::sync::Arc::new(faulty.clone()));
    h.snap("snap1", "one");
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Error, "{}", run.err);
    assert!(
        run.err.contains(
            "backup of pool/fs@snap1 failed: the upload (id memory-upload-1) was aborted"
        ),
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
    // snap2 now claims to be a full: the chain is fine, the seal is not: the copied metadata
    // names snap1's upload, which has no seal under snap2's name.
    assert_eq!(run.status, ExitStatus::Integrity, "{}", run.err);
    assert!(
        run.err
            .contains("cannot restore pool/fs@snap2: z3-backup/pool/fs@snap2 is unsealed"),
        "{}",
        run.err
    );
    // Its own seal copied along under snap2's name does not help: it describes snap1.
    let copied = seal_key(&h, OBJ2);
    let (seal1, _, _) = h.store.object(&seal_key(&h, OBJ1)).unwrap();
    h.store.insert(copied, seal1, &PutOptions::default());
    let run = h.run(Command::Restore(restore("snap2"))).await;
    assert_eq!(run.status, ExitStatus::Integrity, "{}", run.err);
    assert!(
        run.err.contains("cannot restore pool/fs@snap2: z3-backup/pool/fs@snap2 is seal mismatch: its seal describes another object"),
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
    h.store.delete(&seal_key(&h, OBJ2)).await.unwrap();

    let run = h.run(Command::Status(StatusArgs::default())).await;
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
    for key in [OBJ1, OBJ2] {
        let seal = seal_key(&h, key);
        let (data, mut metadata, _) = h.store.object(key).unwrap();
        metadata.remove("guid");
        metadata.remove("parent-guid");
        metadata.remove("z3-upload");
        h.store.insert(
            key,
            data,
            &PutOptions {
                metadata,
                ..PutOptions::default()
            },
        );
        h.store.delete(&seal).await.unwrap();
    }
    let run = h.run(Command::Status(StatusArgs::default())).await;
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
async fn a_failed_completion_leaves_no_object_and_the_next_backup_removes_its_seal() {
    let h = Harness::new(|_| {});
    let faulty = FaultyStore::new(h.store.clone());
    // The seal is written, then every completion fails: the upload is aborted.
    faulty.fail(Op::CompleteMultipart, 10, ErrorKind::AccessDenied);
    let failing = h.with_store(std::sync::Arc::new(faulty.clone()));
    failing.snap("snap1", "one");
    let run = failing.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Error, "{}", run.err);
    assert!(faulty.calls(Op::Put) >= 2, "the lock and the seal went in");
    // The seal of the upload that never completed stays, named by nothing: harmless.
    assert_eq!(seals_of(&h, "snap1").len(), 1);
    assert!(h.store.object(OBJ1).is_none());
    assert_eq!(h.store.open_uploads(), 0);
    let run = failing.run(Command::Status(StatusArgs::default())).await;
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
        seal_of(&h, &seal_key(&h, OBJ1)).object.blake3,
        *blake3::hash(&object).as_bytes()
    );
    assert_eq!(
        seals_of(&h, "snap1"),
        [seal_key(&h, OBJ1)],
        "the orphan seal was removed"
    );
}

/// `backup --full` of a snapshot already in the bucket writes a new seal beside the old one;
/// when its completion fails, the old object stays and so does its seal: it still restores.
#[tokio::test]
async fn a_failed_re_upload_leaves_the_previous_backup_restorable() {
    let h = Harness::new(|_| {});
    h.snap("snap1", "one");
    assert_eq!(
        h.run(Command::Backup(backup())).await.status,
        ExitStatus::Success
    );
    let before = seal_key(&h, OBJ1);
    let faulty = FaultyStore::new(h.store.clone());
    faulty.fail(Op::CompleteMultipart, 10, ErrorKind::AccessDenied);
    // Another compressor: the new object would differ in size and digest.
    let failing = Harness::with_settings_of(&h, |s| s.compressor = "zstd".into())
        .with_store(std::sync::Arc::new(faulty));
    let full = BackupArgs {
        full: true,
        ..backup()
    };
    let run = failing.run(Command::Backup(full)).await;
    assert_eq!(run.status, ExitStatus::Error, "{}", run.err);
    assert_eq!(seal_key(&h, OBJ1), before, "the old object is in place");
    assert!(h.store.object(&before).is_some(), "with its seal");
    h.zfs.destroy_dataset("pool/fs").unwrap();
    let run = h.run(Command::Restore(restore("snap1"))).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
}

fn verify_all() -> Command {
    Command::Verify(VerifyArgs {
        all: true,
        ..VerifyArgs::default()
    })
}

fn line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no line for {name} in {out}"))
}

#[tokio::test]
async fn verify_reads_every_object_back_and_never_touches_zfs() {
    let h = backed_up_pair().await;
    let zfs_calls = h.zfs.calls().len();
    let run = h.run(verify_all()).await;
    assert_eq!(run.status, ExitStatus::Success, "{}{}", run.out, run.err);
    assert!(
        line(&run.out, "pool/fs@snap1").starts_with("ok       pool/fs@snap1  full  stream "),
        "{}",
        run.out
    );
    assert!(
        line(&run.out, "pool/fs@snap2").starts_with("ok       pool/fs@snap2  incremental  stream "),
        "{}",
        run.out
    );
    assert!(
        run.out
            .ends_with("verified 2 objects of pool/fs: 2 ok, 0 failed, 0 not downloaded\n"),
        "{}",
        run.out
    );
    assert_eq!(
        h.zfs.calls().len(),
        zfs_calls,
        "verify ran zfs: {:?}",
        h.zfs.calls()
    );
}

#[tokio::test]
async fn verify_names_the_corrupt_object_and_exits_3() {
    let h = backed_up_pair().await;
    tamper(&h, OBJ1, |data| {
        let last = data.len() - 1;
        data[last] ^= 1;
    });
    let run = h.run(verify_all()).await;
    assert_eq!(run.status, ExitStatus::Integrity, "{}", run.out);
    let bad = line(&run.out, "pool/fs@snap1");
    assert!(bad.starts_with("FAILED   pool/fs@snap1  full  the stored object does not match its seal: expected blake3 "), "{bad}");
    assert!(
        bad.contains("; the zfs stream does not match its seal"),
        "{bad}"
    );
    assert!(
        line(&run.out, "pool/fs@snap2").starts_with("ok "),
        "{}",
        run.out
    );
    assert!(
        run.out.contains(": 1 ok, 1 failed, 0 not downloaded"),
        "{}",
        run.out
    );
}

#[tokio::test]
async fn verify_finds_a_replaced_base_by_its_guid() {
    let h = backed_up_pair().await;
    // snap1 replaced by another snapshot of the same name (new guid, new seal): snap2 was
    // built on the old one.
    let (data, mut metadata, _) = h.store.object(OBJ1).unwrap();
    metadata.insert("guid".into(), "777".into());
    h.store.insert(
        OBJ1,
        data,
        &PutOptions {
            metadata,
            ..PutOptions::default()
        },
    );
    let mut seal = seal_of(&h, &seal_key(&h, OBJ1));
    seal.guid = Some(777);
    h.store
        .insert(seal_key(&h, OBJ1), seal.to_text(), &PutOptions::default());
    let run = h.run(verify_all()).await;
    assert_eq!(run.status, ExitStatus::Integrity, "{}", run.out);
    assert!(
        line(&run.out, "pool/fs@snap1").starts_with("ok "),
        "{}",
        run.out
    );
    let guid2 = seal_of(&h, &seal_key(&h, OBJ2)).parent_guid.unwrap();
    assert_eq!(
        line(&run.out, "pool/fs@snap2"),
        format!(
            "FAILED   pool/fs@snap2  incremental  built on guid {guid2}, but pool/fs@snap1 holds guid 777 (the base was replaced)"
        )
    );
}

#[tokio::test]
async fn verify_of_one_snapshot_checks_its_chain_and_samples_spot_check() {
    let h = backed_up_pair().await;
    h.snap("snap3", "three");
    h.snap("snap4", "four");
    assert_eq!(
        h.run(Command::Backup(backup())).await.status,
        ExitStatus::Success
    );
    let run = h
        .run(Command::Verify(VerifyArgs {
            snapshot: Some("snap2".into()),
            ..VerifyArgs::default()
        }))
        .await;
    assert_eq!(run.status, ExitStatus::Success, "{}{}", run.out, run.err);
    assert!(
        run.out
            .ends_with("verified 2 objects of pool/fs: 2 ok, 0 failed, 0 not downloaded\n"),
        "{}",
        run.out
    );

    let run = h
        .run(Command::Verify(VerifyArgs {
            all: true,
            sample: Some(50.0),
            ..VerifyArgs::default()
        }))
        .await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.out);
    assert!(
        run.out.ends_with(
            "verified 4 objects of pool/fs: 2 ok, 0 failed, 2 not downloaded (sample 50%)\n"
        ),
        "{}",
        run.out
    );
    assert_eq!(
        run.out
            .matches("chain ok; bytes not in this sample")
            .count(),
        2,
        "{}",
        run.out
    );

    let run = h
        .run(Command::Verify(VerifyArgs {
            snapshot: Some("nope".into()),
            ..VerifyArgs::default()
        }))
        .await;
    assert_eq!(run.status, ExitStatus::Error);
    assert!(
        run.err
            .contains("there is no backup of pool/fs@nope under s3://bkt/z3-backup/"),
        "{}",
        run.err
    );
}

#[tokio::test]
async fn verify_checks_encrypted_objects_with_or_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (public, identity) = age_key(dir.path(), "key.txt");
    let h = Harness::new(|raw| raw.age_recipients = Some(public.clone()));
    h.snap("snap1", "secret one");
    assert_eq!(
        h.run(Command::Backup(backup())).await.status,
        ExitStatus::Success
    );
    // Without the key: the stored bytes against the seal.
    let run = h.run(verify_all()).await;
    assert_eq!(run.status, ExitStatus::Success, "{}{}", run.out, run.err);
    assert!(
        line(&run.out, "pool/fs@snap1").contains("stored bytes match the seal"),
        "{}",
        run.out
    );
    // With it: the decrypted stream too.
    let keyed = h.other_machine_with(|s| s.age.identity_file = Some(identity.clone()));
    let run = keyed.run(verify_all()).await;
    assert_eq!(run.status, ExitStatus::Success, "{}{}", run.out, run.err);
    assert!(
        line(&run.out, "pool/fs@snap1").starts_with("ok       pool/fs@snap1  full  stream "),
        "{}",
        run.out
    );
    // A flipped byte in the ciphertext fails either way.
    tamper(&h, OBJ1, |data| {
        let middle = data.len() / 2;
        data[middle] ^= 1;
    });
    for host in [&h, &keyed] {
        let run = host.run(verify_all()).await;
        assert_eq!(run.status, ExitStatus::Integrity, "{}", run.out);
        assert!(
            line(&run.out, "pool/fs@snap1").starts_with("FAILED "),
            "{}",
            run.out
        );
    }
}

/// Issue 12, point 3(b): the backup's requests, in order, are the lock, the multipart upload
/// and its parts, the seal (a key of its own), the completion, the read-back, the removal of
/// older seals and the lock's release. A crash after any of them leaves the bucket consistent:
/// every object has the seal it names, whatever it restores is byte-exact, and a rerun
/// finishes with exactly one seal, the object's own. Walked for a first backup (the key is
/// free) and for a `--full` re-upload of the same snapshot with another compressor (the key
/// holds the previous backup, which must stay restorable until it is replaced).
#[tokio::test]
async fn a_crash_after_any_request_of_a_backup_leaves_object_and_seal_in_agreement() {
    async fn setup(replace: bool) -> Harness {
        let h = Harness::new(|_| {});
        h.snap("snap1", "one");
        if replace {
            let run = h.run(Command::Backup(backup())).await;
            assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
        }
        Harness::with_settings_of(&h, |s| {
            s.compressor = "zstd".into();
            // A crashed client sends nothing more: retries would only slow the walk down.
            s.transfer.retry.max_attempts = 1;
        })
    }
    let args = |replace: bool| BackupArgs {
        full: replace,
        break_lock: true,
        ..backup()
    };
    for replace in [false, true] {
        let steps = {
            let h = setup(replace).await;
            let faulty = FaultyStore::new(h.store.clone());
            let run = h
                .with_store(std::sync::Arc::new(faulty.clone()))
                .run(Command::Backup(args(replace)))
                .await;
            assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
            faulty.total_calls()
        };
        assert!(steps >= 8, "{steps} requests");
        for crash in 0..steps {
            let what = format!("replace {replace}, crash after request {crash} of {steps}");
            let h = setup(replace).await;
            let faulty = FaultyStore::new(h.store.clone());
            faulty.crash_after(crash);
            let run = h
                .with_store(std::sync::Arc::new(faulty))
                .run(Command::Backup(args(replace)))
                .await;
            // Past the completion only best-effort clean-up is left: the run may succeed.
            if run.status == ExitStatus::Success {
                assert!(h.store.object(OBJ1).is_some(), "{what}");
            }

            let status = h.run(Command::Status(StatusArgs::default())).await;
            assert_eq!(status.status, ExitStatus::Success, "{what}: {}", status.out);
            assert!(!status.out.contains("unsealed"), "{what}: {}", status.out);
            if h.store.object(OBJ1).is_some() {
                let other = h.other_machine();
                let restored = other.run(Command::Restore(restore("snap1"))).await;
                assert_eq!(
                    restored.status,
                    ExitStatus::Success,
                    "{what}: {}",
                    restored.err
                );
                assert_eq!(
                    other.zfs.content("pool/fs").as_deref(),
                    Some(&b"one"[..]),
                    "{what}"
                );
            } else {
                assert!(!replace, "{what}: the previous backup is gone");
            }

            let rerun = h.run(Command::Backup(args(replace))).await;
            assert_eq!(rerun.status, ExitStatus::Success, "{what}: {}", rerun.err);
            assert_eq!(seals_of(&h, "snap1"), [seal_key(&h, OBJ1)], "{what}");
        }
    }
}

/// Moves an object to another storage class, as a lifecycle rule does (same bytes, metadata
/// and ETag).
fn move_to_class(h: &Harness, key: &str, class: &str) {
    let (data, metadata, _) = h.store.object(key).unwrap();
    h.store.insert(
        key,
        data,
        &PutOptions {
            metadata,
            storage_class: Some(class.to_owned()),
            ..PutOptions::default()
        },
    );
}

/// The packaged daily `verify --all --sample 5` must not cry corruption over backups that a
/// policy put into an archive class: S3 refuses to read them (`InvalidObjectState`), which
/// says nothing about their bytes. Their chain and seal are checked; the sample is drawn from
/// the readable ones; real damage elsewhere still fails.
#[tokio::test]
async fn verify_checks_archived_objects_without_downloading_them() {
    let h = backed_up_pair().await;
    move_to_class(&h, OBJ1, "DEEP_ARCHIVE");
    assert_eq!(
        h.store.get_range(OBJ1, 0..1).await.unwrap_err().kind(),
        ErrorKind::Archived,
        "the fake refuses reads in an archive class, as S3 does"
    );
    let sampled = |percent| {
        Command::Verify(VerifyArgs {
            all: true,
            sample: Some(percent),
            ..VerifyArgs::default()
        })
    };
    for command in [verify_all(), sampled(100.0), sampled(5.0)] {
        let run = h.run(command).await;
        assert_eq!(run.status, ExitStatus::Success, "{}{}", run.out, run.err);
        let full = line(&run.out, "pool/fs@snap1");
        assert!(
            full.starts_with("chain ") && full.contains("in DEEP_ARCHIVE: not downloaded"),
            "{full}"
        );
        // The one readable object is always the one downloaded, even at 5%.
        assert!(
            line(&run.out, "pool/fs@snap2").starts_with("ok "),
            "{}",
            run.out
        );
        assert!(
            run.err
                .contains("1 of 2 objects are in an archive storage class"),
            "{}",
            run.err
        );
    }
    // Naming the incremental verifies its chain, the archived full included, the same way.
    let run = h
        .run(Command::Verify(VerifyArgs {
            snapshot: Some("snap2".into()),
            ..VerifyArgs::default()
        }))
        .await;
    assert_eq!(run.status, ExitStatus::Success, "{}{}", run.out, run.err);
    // Damage to a readable object is still found.
    tamper(&h, OBJ2, |data| data[0] ^= 1);
    let run = h.run(verify_all()).await;
    assert_eq!(run.status, ExitStatus::Integrity, "{}", run.out);
    assert!(
        line(&run.out, "pool/fs@snap2").starts_with("FAILED "),
        "{}",
        run.out
    );
}

/// A class the listing did not show (an Intelligent-Tiering archive tier): the read itself is
/// refused with `InvalidObjectState`; that is no corruption either.
#[tokio::test]
async fn a_read_refused_as_archived_is_not_a_failed_object() {
    let h = backed_up_pair().await;
    let faulty = FaultyStore::new(h.store.clone());
    faulty.fail_key(OBJ1, Some(Op::GetRange), 1, ErrorKind::Archived);
    let run = h
        .with_store(std::sync::Arc::new(faulty))
        .run(verify_all())
        .await;
    assert_eq!(run.status, ExitStatus::Success, "{}{}", run.out, run.err);
    let full = line(&run.out, "pool/fs@snap1");
    assert!(
        full.starts_with("chain ") && full.contains("InvalidObjectState"),
        "{full}"
    );
    assert!(
        line(&run.out, "pool/fs@snap2").starts_with("ok "),
        "{}",
        run.out
    );
}

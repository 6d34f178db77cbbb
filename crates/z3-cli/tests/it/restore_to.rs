//! `z3 restore --target-dataset` and `--to-dir`, and the refusal to roll back local snapshots
//! newer than a restore's base, on `FakeZfs` and `MemoryStore`.

use tokio::io::AsyncWriteExt;
use z3_cli::args::{Command, RestoreArgs};
use z3_cli::exit::ExitStatus;
use z3_s3::PutOptions;

use crate::engine::{Harness, backup, restore};

fn restore_into(snapshot: &str, dataset: &str) -> RestoreArgs {
    RestoreArgs {
        target_dataset: Some(dataset.into()),
        ..restore(snapshot)
    }
}

#[tokio::test]
async fn a_chain_restores_into_another_dataset_and_continues_there() {
    let h = Harness::new(|_| {});
    h.snap("snap1", "one");
    h.snap("snap2", "two");
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);

    let run = h
        .run(Command::Restore(restore_into("snap2", "pool/copy")))
        .await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert_eq!(
        run.out,
        "Restored pool/copy@snap1.\nRestored pool/copy@snap2.\n"
    );
    assert_eq!(h.zfs.snapshot_names("pool/copy"), ["snap1", "snap2"]);
    assert_eq!(h.zfs.content("pool/copy").as_deref(), Some(&b"two"[..]));
    // The source is untouched.
    assert_eq!(h.zfs.snapshot_names("pool/fs"), ["snap1", "snap2"]);

    // A later backup continues the copy from its own newest snapshot.
    h.snap("snap3", "three");
    assert_eq!(
        h.run(Command::Backup(backup())).await.status,
        ExitStatus::Success
    );
    let run = h
        .run(Command::Restore(restore_into("snap3", "pool/copy")))
        .await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert_eq!(run.out, "Restored pool/copy@snap3.\n");
    assert_eq!(h.zfs.content("pool/copy").as_deref(), Some(&b"three"[..]));

    // A bad name is refused before anything happens.
    let run = h
        .run(Command::Restore(restore_into("snap3", "pool/bad%name")))
        .await;
    assert_eq!(run.status, ExitStatus::Usage, "{}", run.err);
}

/// The destination has a snapshot newer than the base the restore would start from: refused,
/// naming it and the ways out; `--force` says what `zfs receive -F` destroys.
#[tokio::test]
async fn a_restore_that_would_roll_back_newer_local_snapshots_is_refused_without_force() {
    let h = Harness::new(|_| {});
    h.snap("snap1", "one");
    h.snap("snap2", "two");
    assert_eq!(
        h.run(Command::Backup(backup())).await.status,
        ExitStatus::Success
    );
    // Another host restored snap1 and has since taken a snapshot of its own.
    let other = h.other_machine();
    let run = other.run(Command::Restore(restore("snap1"))).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    other.zfs.write("pool/fs", "local work").unwrap();
    other.zfs.snapshot("pool/fs@mine").unwrap();

    let calls_before = other.zfs.calls().len();
    let run = other.run(Command::Restore(restore("snap2"))).await;
    assert_eq!(run.status, ExitStatus::Usage, "{}", run.err);
    for needle in [
        "pool/fs@mine",
        "--target-dataset",
        "--force",
        "pool/fs@snap1",
    ] {
        assert!(run.err.contains(needle), "{needle}: {}", run.err);
    }
    assert!(
        !other.zfs.calls()[calls_before..]
            .iter()
            .any(|c| c.starts_with("receive")),
        "nothing received"
    );
    assert_eq!(other.zfs.snapshot_names("pool/fs"), ["snap1", "mine"]);

    let run = other
        .run(Command::Restore(RestoreArgs {
            force: true,
            ..restore("snap2")
        }))
        .await;
    assert!(
        run.err.contains(
            "warning: --force: zfs receive -F rolls pool/fs back to @snap1, destroying pool/fs@mine"
        ),
        "{}",
        run.err
    );
}

#[tokio::test]
async fn to_dir_writes_verified_streams_in_receive_order_and_removes_a_corrupt_one() {
    let h = Harness::new(|_| {});
    h.snap("snap1", "one");
    h.snap("snap2", "two");
    assert_eq!(
        h.run(Command::Backup(backup())).await.status,
        ExitStatus::Success
    );
    let dir = tempfile::tempdir().unwrap();
    let to_dir = |snapshot: &str| RestoreArgs {
        to_dir: Some(dir.path().to_owned()),
        ..restore(snapshot)
    };

    let calls_before = h.zfs.calls().len();
    let run = h.run(Command::Restore(to_dir("snap2"))).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    let first = dir.path().join("001-snap1.zfs");
    let second = dir.path().join("002-snap2.zfs");
    assert_eq!(
        run.out,
        format!(
            "Wrote pool/fs@snap1 to {}.\nWrote pool/fs@snap2 to {}.\n",
            first.display(),
            second.display()
        )
    );
    assert!(
        h.zfs.calls()[calls_before..].is_empty(),
        "no zfs command: {:?}",
        &h.zfs.calls()[calls_before..]
    );
    // The files are the streams: received in order, they rebuild the dataset elsewhere.
    let other = h.other_machine();
    for (file, snapshot) in [(&first, "pool/x@snap1"), (&second, "pool/x@snap2")] {
        let stream = std::fs::read(file).unwrap();
        let target = z3_core::FullSnapshotName::parse(snapshot).unwrap();
        let mut sink =
            z3_zfs::Zfs::receive(&other.zfs, &target, &z3_zfs::ReceiveOptions::default())
                .await
                .unwrap();
        sink.write_all(&stream).await.unwrap();
        sink.finish().await.unwrap();
    }
    assert_eq!(other.zfs.content("pool/x").as_deref(), Some(&b"two"[..]));

    // Never overwritten.
    let run = h.run(Command::Restore(to_dir("snap2"))).await;
    assert_eq!(run.status, ExitStatus::Usage, "{}", run.err);
    assert!(run.err.contains("exists already"), "{}", run.err);

    // A flipped byte in snap2's object: snap1's file is written, snap2's removed, exit 3.
    std::fs::remove_file(&first).unwrap();
    std::fs::remove_file(&second).unwrap();
    let key = "z3-backup/pool/fs@snap2";
    let (mut body, meta, _) = h.store.object(key).unwrap();
    let mut bytes = body.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    body = bytes.into();
    h.store.insert(
        key,
        body,
        &PutOptions {
            metadata: meta,
            ..PutOptions::default()
        },
    );
    let run = h.run(Command::Restore(to_dir("snap2"))).await;
    assert_eq!(run.status, ExitStatus::Integrity, "{}", run.err);
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["001-snap1.zfs"]);
}

//! The conformance checks against `ZfsCli` on a real pool, gated on `Z3_TEST_ZPOOL`.
//!
//! Each run creates `<pool>/z3zfs-<unique>` and destroys it (recursively) afterwards, also
//! when a check panics. The pool itself is never modified otherwise.

use std::time::{SystemTime, UNIX_EPOCH};

use z3_core::{DatasetName, FullSnapshotName};
use z3_zfs::conformance::{self, CliScratch, Scratch};
use z3_zfs::{ErrorKind, EstimateMethod, Zfs, ZfsCli};

/// Destroys the scratch dataset on drop, even during a panic.
struct Cleanup {
    scratch: CliScratch,
    root: DatasetName,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Err(e) = self.scratch.destroy_blocking(&self.root) {
            eprintln!("cleanup of {} failed: {e}", self.root);
        }
    }
}

async fn scratch_root(tag: &str) -> Option<(Cleanup, DatasetName)> {
    let Ok(pool) = std::env::var("Z3_TEST_ZPOOL") else {
        eprintln!("skipping: set Z3_TEST_ZPOOL to a scratch pool to run real zfs tests");
        return None;
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let root = DatasetName::new(&format!(
        "{pool}/z3zfs-{tag}-{}-{nanos}",
        std::process::id()
    ))
    .unwrap();
    let scratch = CliScratch::new();
    scratch.create_dataset(&root).await.unwrap();
    Some((
        Cleanup {
            scratch,
            root: root.clone(),
        },
        root,
    ))
}

/// Whether this `zfs` has `send -n` (OpenZFS) or not (zfs-fuse), asked directly.
async fn has_dry_run(snapshot: &FullSnapshotName) -> bool {
    let out = tokio::process::Command::new("zfs")
        .args(["send", "-nvP", &snapshot.to_string()])
        .env("LC_ALL", "C")
        .output()
        .await
        .unwrap();
    !String::from_utf8_lossy(&out.stderr).contains("invalid option 'n'")
}

#[tokio::test]
async fn conformance_on_real_zfs() {
    let Some((_cleanup, root)) = scratch_root("conf").await else {
        return;
    };
    let zfs = ZfsCli::new();
    let method = conformance::run_all(&zfs, &CliScratch::new(), &root).await;
    let probe = FullSnapshotName::parse(&format!("{root}/estimate@a")).unwrap();
    let openzfs = has_dry_run(&probe).await;
    let expected = if openzfs {
        EstimateMethod::DryRun
    } else {
        EstimateMethod::Referenced
    };
    assert_eq!(method, expected);
    // zfs-fuse has neither `send -n` nor bookmarks; OpenZFS (≥0.8) has both. `run_all` ran the
    // bookmark check once; a second run on a fresh dataset says which way it went.
    let again = DatasetName::new(&format!("{root}/again")).unwrap();
    CliScratch::new().create_dataset(&again).await.unwrap();
    assert_eq!(
        conformance::bookmarks(&zfs, &CliScratch::new(), &again).await,
        openzfs
    );
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    conformance::creation_times(&zfs, &CliScratch::new(), &root, now).await;
}

#[tokio::test]
async fn real_errors_carry_zfs_stderr() {
    let Some((_cleanup, root)) = scratch_root("err").await else {
        return;
    };
    let zfs = ZfsCli::new();
    let scratch = CliScratch::new();
    let ds = DatasetName::new(&format!("{root}/src")).unwrap();
    scratch.create_dataset(&ds).await.unwrap();
    let a = FullSnapshotName::parse(&format!("{ds}@a")).unwrap();
    scratch.snapshot(&a).await.unwrap();

    // A missing snapshot: the spawn succeeds, the stream fails with zfs's own words.
    let missing = FullSnapshotName::parse(&format!("{ds}@zz")).unwrap();
    let e = conformance::send_to_vec(&zfs, None, &missing)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SnapshotNotFound, "{e}");
    let failure = e.command().unwrap();
    assert_eq!(failure.code, Some(1));
    assert!(failure.command.starts_with("zfs send "), "{failure:?}");
    assert!(failure.stderr.contains(&format!("{ds}@zz")), "{failure:?}");
    assert!(e.to_string().contains("does not exist"), "{e}");

    // Garbage into receive.
    let target = FullSnapshotName::parse(&format!("{root}/garbage@x")).unwrap();
    let e = conformance::receive_from_slice(&zfs, &target, false, &[0x55; 1000])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidStream, "{e}");
    assert!(e.stderr().unwrap().contains("invalid stream"), "{e}");
    assert!(e.command().unwrap().command.starts_with("zfs receive "));

    // Listing a missing dataset and asking whether it exists.
    let gone = DatasetName::new(&format!("{root}/gone")).unwrap();
    let e = zfs.list_snapshots(&gone).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DatasetNotFound, "{e}");
    assert!(!zfs.dataset_exists(&gone).await.unwrap());

    // A program that does not exist.
    let e = ZfsCli::with_program("/nonexistent/zfs")
        .dataset_exists(&gone)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Spawn);
}

/// The send flags this `zfs` accepts, probed on a real snapshot: none on zfs-fuse (it has no
/// `send -n`, nor any of the flags), at least `-c -L -e` on an OpenZFS with a dry run (0.7+).
#[tokio::test]
async fn send_flags_are_probed_on_real_zfs() {
    let Some((_cleanup, root)) = scratch_root("flags").await else {
        return;
    };
    let scratch = CliScratch::new();
    let ds = DatasetName::new(&format!("{root}/src")).unwrap();
    scratch.create_dataset(&ds).await.unwrap();
    let a = FullSnapshotName::parse(&format!("{ds}@a")).unwrap();
    scratch.snapshot(&a).await.unwrap();
    let zfs = ZfsCli::new();
    let supported = zfs
        .supported_send_flags(&a, z3_zfs::SendFlags::ALL)
        .await
        .unwrap();
    if has_dry_run(&a).await {
        assert!(
            supported.compressed && supported.large_blocks && supported.embedded,
            "{supported}"
        );
    } else {
        assert!(supported.is_empty(), "zfs-fuse: {supported}");
        // And a send with a flag fails as zfs's usage error, before any byte.
        let flags = z3_zfs::SendFlags::from_metadata("c").unwrap();
        let failed = match zfs.send_with_flags(None, &a, flags).await {
            Err(_) => true,
            Ok(mut stream) => {
                let mut bytes = Vec::new();
                tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut bytes)
                    .await
                    .is_err()
            }
        };
        assert!(failed, "zfs-fuse sent with -c");
    }
    // What it can receive is probed on a name that does not exist, and agrees.
    let missing = FullSnapshotName::parse(&format!("{ds}@never-made")).unwrap();
    let receivable = zfs
        .receivable_send_flags(&missing, z3_zfs::SendFlags::ALL)
        .await
        .unwrap();
    assert_eq!(receivable, supported);
}

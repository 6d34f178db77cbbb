//! Resume after `kill -9` (issue 16 point 1, ADR 4), end to end: the real `z3` binary on a
//! zfs-fuse pool and SeaweedFS is killed with SIGKILL when about 30%, 60% and 99% of its parts
//! are stored, and run again at once. The rerun takes over the dead run's lock without waiting,
//! sends only the parts the journal does not name (counted from the uploader's per-part log
//! lines), and the object restores byte-exact. A snapshot re-created under the same name
//! (another guid) starts over instead.
//!
//! The promise: a killed run leaves no object and no seal (nothing that looks like a backup),
//! only an open upload and the journal naming it; the rerun completes an object of its own
//! stream only, and leaves no open upload and no journal behind.

use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use z3_s3::{AwsStore, ObjectStore};

use crate::support::{RealEnv, TestDataset, assert_no_open_uploads, journal_of, stderr};

/// Settings of the killed run: one part in flight, paced, so parts are stored one by one.
const SLOW: [(&str, &str); 3] = [
    ("CONCURRENCY", "1"),
    ("BWLIMIT", "10M"),
    ("COMPRESSOR", "zstd"),
];
/// The rerun: the same stream settings, at full speed, logging every part it stores.
const RERUN: [(&str, &str); 2] = [
    ("COMPRESSOR", "zstd"),
    ("RUST_LOG", "warn,z3_s3::upload=debug"),
];
/// 44.5 MiB of incompressible data: 9 parts, 8 of 5 MiB and a last one of about 4.7 MiB, which
/// takes about half a second at `BWLIMIT=10M`: time to kill the run at "99%" (8 parts stored)
/// before it completes.
const DATA: usize = 89 << 19;

/// The killing tests take turns: zfs-fuse once deadlocked (every daemon thread waiting) while two
/// of them ran at once.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A stand-in `zfs` in `dir` whose `send` runs the real `zfs send` into a file first and then
/// streams the file: the same bytes, but killing z3 never interrupts zfs-fuse mid-send (the
/// suspect of that deadlock). Every other call goes to the real zfs. Arguments pass as `"$@"`.
fn buffered_zfs(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let wrapper = dir.join("zfs");
    let stream = dir.join("stream");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh
if [ \"$1\" = send ]; then
  case \" $* \" in *\" -n\"*) exec zfs \"$@\";; esac
  zfs \"$@\" > '{}' || exit 1
  exec cat '{}'
fi
exec zfs \"$@\"
",
            stream.display(),
            stream.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

/// Starts `z3 backup` and kills it with SIGKILL once `parts` parts of its upload are stored.
/// Returns how many are stored after the kill (`ListParts`).
async fn kill_after_parts(
    env: &RealEnv,
    ds: &TestDataset,
    store: &AwsStore,
    parts: usize,
) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let zfs = buffered_zfs(dir.path());
    let mut settings = SLOW.to_vec();
    settings.push(("ZFS_COMMAND", zfs.to_str().unwrap()));
    let mut child: Child = env
        .z3_command(ds, &["backup"], &settings)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let key = ds.key("snap-1");
    let deadline = Instant::now() + Duration::from_mins(2);
    let stored = loop {
        assert!(
            Instant::now() < deadline,
            "the upload never reached {parts} parts"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "z3 finished before it was killed"
        );
        let open = store.list_multipart_uploads(&key).await.unwrap();
        if let Some(upload) = open.first() {
            let stored = store
                .list_parts(&key, &upload.upload_id)
                .await
                .map_or(0, |p| p.len());
            if stored >= parts {
                break stored;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    child.kill().unwrap(); // SIGKILL: no cleanup of any kind
    child.wait().unwrap();
    // A part may have landed between the last look and the kill.
    let open = store.list_multipart_uploads(&key).await.unwrap();
    let after = store
        .list_parts(&key, &open[0].upload_id)
        .await
        .unwrap()
        .len();
    assert!(after >= stored);
    after
}

/// Parts the journal of `snap-1` names, if there is one.
async fn journaled(store: &AwsStore, ds: &TestDataset) -> Option<usize> {
    Some(journal_of(store, ds, "snap-1").await?.parts.len())
}

/// The number of parts of the object, from its `"…-N"` ETag.
async fn object_parts(store: &AwsStore, ds: &TestDataset) -> usize {
    let etag = store.head(&ds.key("snap-1")).await.unwrap().etag.unwrap();
    etag.trim_matches('"')
        .rsplit_once('-')
        .unwrap()
        .1
        .parse()
        .unwrap()
}

fn parts_sent(out: &Output) -> usize {
    stderr(out)
        .lines()
        .filter(|l| l.contains("part stored"))
        .count()
}

async fn assert_clean(store: &AwsStore, ds: &TestDataset) {
    assert_no_open_uploads(store, &ds.prefix).await;
    assert_eq!(journaled(store, ds).await, None, "the journal is removed");
}

/// Destroys the dataset, restores `snap-1`, and compares the files.
fn assert_restores(
    env: &RealEnv,
    ds: &TestDataset,
    expected: &std::collections::BTreeMap<String, Vec<u8>>,
) {
    ds.destroy();
    let out = env.z3(ds, &["restore", "snap-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(ds.files() == *expected, "the restored files differ");
}

#[tokio::test]
async fn a_killed_backup_resumes_where_it_stopped() {
    let Some(env) = RealEnv::get("a_killed_backup_resumes_where_it_stopped") else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().await;
    let store = env.store().await;
    // 30%, 60% and 99% of 9 parts.
    for (percent, parts) in [(30u64, 3), (60, 6), (99, 8)] {
        let ds = env.dataset(&format!("resume{percent}"));
        ds.write_random("big.bin", DATA, percent);
        ds.snapshot("snap-1");
        let expected = ds.files();
        let stored = kill_after_parts(&env, &ds, &store, parts).await;
        // A killed run leaves nothing that looks like a backup.
        assert!(
            store.head(&ds.key("snap-1")).await.is_err(),
            "{percent}%: no object"
        );
        let journaled = journaled(&store, &ds).await.expect("a journal");
        assert!(
            journaled <= stored,
            "{percent}%: the journal names {journaled} parts, {stored} are stored"
        );

        let out = env.z3_with(&ds, &["backup"], &RERUN);
        assert!(out.status.success(), "{percent}%: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("taking over the abandoned lock"),
            "{percent}%: {err}"
        );
        let total = object_parts(&store, &ds).await;
        assert_eq!(
            parts_sent(&out),
            total - journaled,
            "{percent}%: the rerun sends exactly the parts the journal does not name"
        );
        assert!(
            err.contains(&format!("{journaled} parts were already stored")),
            "{percent}%: {err}"
        );
        if percent == 99 {
            assert!(journaled > 0, "99%: the journal names stored parts");
        }
        assert_clean(&store, &ds).await;
        assert_restores(&env, &ds, &expected);
    }
}

#[tokio::test]
async fn a_killed_backup_of_a_snapshot_re_created_since_starts_over() {
    let Some(env) = RealEnv::get("a_killed_backup_of_a_snapshot_re_created_since_starts_over")
    else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().await;
    let store = env.store().await;
    let ds = env.dataset("resumeguid");
    ds.write_random("big.bin", DATA, 5);
    ds.snapshot("snap-1");
    kill_after_parts(&env, &ds, &store, 5).await;
    assert!(journaled(&store, &ds).await.is_some());
    // The same name, another snapshot: another guid and other bytes.
    crate::support::zfs(&["destroy", &format!("{}@snap-1", ds.name)]);
    ds.write_random("big.bin", DATA, 6);
    ds.snapshot("snap-1");
    let expected = ds.files();

    let out = env.z3_with(&ds, &["backup"], &RERUN);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("already stored"), "{}", stderr(&out));
    assert_eq!(
        parts_sent(&out),
        object_parts(&store, &ds).await,
        "every part anew"
    );
    assert_clean(&store, &ds).await;
    assert_restores(&env, &ds, &expected);
}

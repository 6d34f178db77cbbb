//! Many datasets and restores elsewhere on zfs-fuse and SeaweedFS: `backup --all` with one
//! broken dataset backs up the others; `restore --target-dataset` and `--to-dir`.

use std::process::Stdio;

use crate::support::{RealEnv, stderr, stdout, zfs};

/// Two configured datasets and one that does not exist: the two are backed up, the missing one
/// fails with its own line, and the exit code is its (1).
#[tokio::test]
async fn backup_all_with_one_broken_dataset_backs_up_the_others() {
    let Some(env) = RealEnv::get("backup_all_with_one_broken_dataset_backs_up_the_others") else {
        return;
    };
    let a = env.dataset("all-a");
    let b = env.dataset("all-b");
    for ds in [&a, &b] {
        ds.write("f.txt", &ds.name);
        ds.snapshot("snap1");
    }
    let missing = format!("{}/all-missing-{}", env.pool, std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("z3.conf");
    std::fs::write(
        &conf,
        format!("[fs:{}]\n[fs:{missing}]\n[fs:{}]\n", a.name, b.name),
    )
    .unwrap();
    let conf = conf.display().to_string();
    let out = env.z3_with(&a, &["backup", "--all"], &[("Z3_CONFIG", conf.as_str())]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let summary = stdout(&out);
    assert!(
        summary.contains(&format!("{}: ok (exit 0)", a.name)),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("{}: ok (exit 0)", b.name)),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("{missing}: failed (exit 1)")),
        "{summary}"
    );
    assert!(
        stderr(&out).contains(&format!("z3: error: {missing}:")),
        "{}",
        stderr(&out)
    );
    // Both backups are real (under the one key prefix of the run): each restores elsewhere
    // byte-exact.
    for ds in [&a, &b] {
        let target = format!("{}-copy", ds.name);
        let out = env.z3_with(
            ds,
            &["restore", "snap1", "--target-dataset", &target],
            &[("S3_PREFIX", a.prefix.as_str())],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let mountpoint = zfs(&["get", "-H", "-o", "value", "mountpoint", &target]);
        let restored = std::fs::read_to_string(format!("{}/f.txt", mountpoint.trim())).unwrap();
        assert_eq!(restored, ds.name);
        crate::support::destroy_retrying(&target).unwrap();
    }
}

/// `restore --to-dir`: one verified stream file per object, in receive order, that plain
/// `zfs receive` turns back into the dataset.
#[tokio::test]
async fn restore_to_a_directory_writes_streams_zfs_receive_accepts() {
    let Some(env) = RealEnv::get("restore_to_a_directory_writes_streams_zfs_receive_accepts")
    else {
        return;
    };
    let ds = env.dataset("todir");
    ds.write_random("one.bin", 300_000, 1);
    ds.snapshot("snap1");
    ds.write_random("two.bin", 300_000, 2);
    ds.snapshot("snap2");
    let out = env.z3(&ds, &["backup"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = ds.files();

    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().display().to_string();
    let out = env.z3(&ds, &["restore", "snap2", "--to-dir", &to]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["001-snap1.zfs", "002-snap2.zfs"]);

    let target = format!("{}-fromdir", ds.name);
    for (file, snap) in [("001-snap1.zfs", "snap1"), ("002-snap2.zfs", "snap2")] {
        let stream = std::fs::File::open(dir.path().join(file)).unwrap();
        let received = std::process::Command::new("zfs")
            .args(["receive", &format!("{target}@{snap}")])
            .stdin(Stdio::from(stream))
            .output()
            .unwrap();
        assert!(received.status.success(), "{file}: {received:?}");
    }
    let mountpoint = zfs(&["get", "-H", "-o", "value", "mountpoint", &target]);
    for (name, bytes) in &expected {
        let restored = std::fs::read(format!("{}/{name}", mountpoint.trim())).unwrap();
        assert!(&restored == bytes, "{name} differs");
    }
    crate::support::destroy_retrying(&target).unwrap();
}

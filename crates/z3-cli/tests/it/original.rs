//! The original Python z3 (PyPI `z3==0.2.0` with `boto==2.49.0`, which `cargo xtask ci`
//! installs) reads what z3 writes, on zfs-fuse and SeaweedFS: its `status` shows a
//! policy-shaped tree as healthy, with each backup's real parent, and its `restore` follows
//! `parent` links that skip snapshots (yearly full ← monthly ← daily ← hourly), byte-exact.
//!
//! The original is configured as its README says, through the environment (`BUCKET`,
//! `S3_KEY_ID`, `S3_SECRET`, `HOST`, `S3_PREFIX`, `FILESYSTEM`, `SNAPSHOT_PREFIX`; its one
//! config file is the fixed `/etc/z3_backup/z3.conf`, which a test must not write), plus two
//! adapters, neither touching its code:
//! - boto 2's own config file (`BOTO_CONFIG`) for what the original has no key for: the port
//!   (`[Credentials] s3_port`), plain HTTP (`[Boto] is_secure`) and path-style requests
//!   (`[s3] calling_format`);
//! - zfs-fuse has neither `zfs list -t snap` nor the `written` property that the original's one
//!   listing asks for, so a `zfs` wrapper answers that listing in zfs-fuse's dialect and passes
//!   every other command through unchanged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{RealEnv, TestDataset, output_within, stderr, stdout, zfs};

/// Where the original is installed (`Z3_TEST_ORIGINAL_Z3`), or `None` after saying why; a
/// failure when `Z3_REQUIRE_INTEGRATION` is set.
fn original_z3(test: &str) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("Z3_TEST_ORIGINAL_Z3").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    assert!(
        std::env::var_os("Z3_REQUIRE_INTEGRATION").is_none(),
        "{test}: Z3_REQUIRE_INTEGRATION is set but Z3_TEST_ORIGINAL_Z3 is not"
    );
    eprintln!("skipping {test}: run through `cargo xtask ci` (needs Z3_TEST_ORIGINAL_Z3)");
    None
}

/// The real `zfs` on PATH.
fn real_zfs() -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("zfs"))
        .find(|path| path.exists())
        .expect("zfs on PATH")
}

/// The original's `ARGS` for `dataset`, configured through the environment as its README says
/// (plus the two adapters of the module doc, written into `dir`).
fn original(env: &RealEnv, install: &Path, dir: &Path, ds: &TestDataset, args: &[&str]) -> Output {
    let (host, port) = env
        .endpoint
        .trim_start_matches("http://")
        .rsplit_once(':')
        .expect("the endpoint is http://HOST:PORT");
    let boto = dir.join("boto.cfg");
    std::fs::write(
        &boto,
        format!(
            "[Boto]\nis_secure = False\n\
             [Credentials]\ns3_port = {port}\n\
             [s3]\ncalling_format = boto.s3.connection.OrdinaryCallingFormat\n"
        ),
    )
    .unwrap();
    let shims = dir.join("bin");
    std::fs::create_dir_all(&shims).unwrap();
    let wrapper = shims.join("zfs");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n\
             if [ \"$*\" = \"list -Ht snap -o name,used,refer,mountpoint,written\" ]; then\n\
             \x20 {zfs} list -H -t snapshot -o name,used,refer,mountpoint | sed 's/$/\\t-/'\n\
             \x20 exit $?\n\
             fi\n\
             exec {zfs} \"$@\"\n",
            zfs = real_zfs().display()
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&wrapper).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&wrapper, perms).unwrap();
    let path = std::env::join_paths([shims, install.join("bin")].into_iter().chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let mut cmd = Command::new(install.join("bin/z3"));
    cmd.args(args)
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir)
        .env("PYTHONPATH", install.join("lib/python2.7/site-packages"))
        .env("BOTO_CONFIG", &boto)
        .env("HOST", host)
        .env("BUCKET", &env.bucket)
        .env("S3_KEY_ID", &env.key_id)
        .env("S3_SECRET", &env.secret)
        .env("FILESYSTEM", &ds.name)
        .env("S3_PREFIX", &ds.prefix)
        .env("SNAPSHOT_PREFIX", "snap");
    let output = output_within(&mut cmd);
    eprintln!(
        "$ original z3 {} -> {:?}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        output.status.code(),
        stdout(&output),
        stderr(&output)
    );
    output
}

/// The rows of the original's `status` table by name: `[parent, type, health, local state,
/// size]`, each cell trimmed. The first two lines (the title and the header) are checked.
fn status_rows(out: &Output) -> BTreeMap<String, Vec<String>> {
    let text = stdout(out);
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .is_some_and(|title| title.starts_with("backup status for ")),
        "{text}"
    );
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split('|')
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        ["NAME", "PARENT", "TYPE", "HEALTH", "LOCAL STATE", "SIZE"],
        "{text}"
    );
    lines
        .map(|line| {
            let mut cells = line.split('|').map(|cell| cell.trim().to_owned());
            let name = cells.next().unwrap();
            (name, cells.collect())
        })
        .collect()
}

/// The files of snapshot `snap` of `ds`, read through a clone (zfs-fuse has no `.zfs/snapshot`
/// directory); the clone is destroyed again.
fn files_at(ds: &TestDataset, snap: &str) -> BTreeMap<String, Vec<u8>> {
    let view = TestDataset {
        name: format!("{}-view", ds.name),
        prefix: String::new(),
    };
    zfs(&["clone", &format!("{}@{snap}", ds.name), &view.name]);
    let files = view.files();
    view.destroy();
    files
}

#[tokio::test]
async fn the_original_z3_restores_a_policy_shaped_tree_link() {
    let test = "the_original_z3_restores_a_policy_shaped_tree_link";
    let Some(env) = RealEnv::get(test) else {
        return;
    };
    let Some(install) = original_z3(test) else {
        return;
    };
    let ds = env.dataset("orig");
    for i in 1..=3u8 {
        ds.write_random(&format!("f{i}.bin"), 150_000, u64::from(i));
        ds.snapshot(&format!("snap{i}"));
    }
    let files = ds.files();
    // All three snapshots fall in one hour: snap1 is the year's (and day's, hour's) first, a
    // full; snap2 and snap3 are leaves on it. So snap3's parent skips snap2.
    let policy = [("PRESERVE", "1y 12m 14d 24h")];
    let out = env.z3_with(&ds, &["backup"], &policy);
    assert!(out.status.success(), "{}", stderr(&out));
    let store = env.store().await;
    let meta = z3_s3::ObjectStore::head(&store, &ds.key("snap3"))
        .await
        .unwrap()
        .metadata;
    assert_eq!(
        meta.get("parent").map(String::as_str),
        Some(format!("{}@snap1", ds.name).as_str()),
        "a tree link: {meta:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = original(&env, &install, dir.path(), &ds, &["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = status_rows(&out);
    assert_eq!(rows["snap1"][..4], ["", "full", "ok", "ok"]);
    assert_eq!(rows["snap3"][..4], ["snap1", "incremental", "ok", "ok"]);

    // The dataset is lost; the original restores the newest through the tree link.
    crate::support::destroy_retrying(&ds.name).unwrap();
    let out = original(&env, &install, dir.path(), &ds, &["restore", "snap3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let snapshots = zfs(&["list", "-H", "-o", "name", "-t", "snapshot", "-r", &ds.name]);
    assert_eq!(
        snapshots.lines().collect::<Vec<_>>(),
        [format!("{}@snap1", ds.name), format!("{}@snap3", ds.name)],
        "snap1 then snap3 on it; snap2 skipped"
    );
    assert!(ds.files() == files, "the restored files differ");
}

/// Snapshots over two months, in time order, and the parent `PRESERVE = 1y 12m 14d 24h` gives
/// each when every one is backed up right after it is taken: the year's first is a full, the
/// month's first builds on it, the day's first on the month's, and the hour's first on the
/// day's. Of the seven incrementals, three build on the previous snapshot and four skip some.
const TREE: [(&str, Option<&str>); 8] = [
    ("snap-2026-10-01-0000", None),
    ("snap-2026-10-02-0000", Some("snap-2026-10-01-0000")),
    ("snap-2026-10-15-0000", Some("snap-2026-10-01-0000")),
    ("snap-2026-11-01-0000", Some("snap-2026-10-01-0000")),
    ("snap-2026-11-02-0000", Some("snap-2026-11-01-0000")),
    ("snap-2026-11-03-0000", Some("snap-2026-11-01-0000")),
    ("snap-2026-11-03-0600", Some("snap-2026-11-03-0000")),
    ("snap-2026-11-03-1200", Some("snap-2026-11-03-0000")),
];

/// Five minutes after the time in a `snap-YYYY-MM-DD-HH00` name, as RFC 3339 (for `Z3_NOW`).
fn clock_after(snap: &str) -> String {
    format!("{}T{}:05:00Z", &snap[5..15], &snap[16..18])
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one story, told in order
async fn the_original_z3_restores_a_yearly_monthly_daily_hourly_tree_byte_exact() {
    let test = "the_original_z3_restores_a_yearly_monthly_daily_hourly_tree_byte_exact";
    let Some(env) = RealEnv::get(test) else {
        return;
    };
    let Some(install) = original_z3(test) else {
        return;
    };
    let ds = env.dataset("orig-tree");

    // Each snapshot rewrites one file, adds one and names itself in a third; each is backed up
    // as a timer would do it, right after it is taken, with pigz1 (which the original decodes
    // with `pigz -d`).
    let mut states = BTreeMap::new();
    for (seed, (snap, _)) in (1u64..).zip(TREE) {
        ds.write_random("data.bin", 200_000, seed);
        ds.write_random(&format!("{snap}.bin"), 40_000, seed + 100);
        ds.write("when.txt", snap);
        ds.snapshot(snap);
        states.insert(snap, ds.files());
        let now = clock_after(snap);
        let policy = [
            ("PRESERVE", "1y 12m 14d 24h"),
            ("NAME_FORMAT", "snap-%Y-%m-%d-%H%M"),
            ("COMPRESSOR", "pigz1"),
            ("Z3_NOW", now.as_str()),
        ];
        let out = env.z3_with(&ds, &["backup"], &policy);
        assert!(out.status.success(), "{snap}: {}", stderr(&out));
        assert_eq!(
            stdout(&out).lines().count(),
            1,
            "{snap} alone is new: {}",
            stdout(&out)
        );
    }

    // What z3 wrote: the tree, in the original's metadata.
    let store = env.store().await;
    let full = |snap: &str| format!("{}@{snap}", ds.name);
    let mut parents = BTreeMap::new();
    for (snap, parent) in TREE {
        let meta = z3_s3::ObjectStore::head(&store, &ds.key(snap))
            .await
            .unwrap()
            .metadata;
        assert_eq!(
            meta.get("parent").cloned(),
            parent.map(full),
            "{snap}: {meta:?}"
        );
        assert_eq!(
            meta.get("isfull").is_some_and(|value| value == "true"),
            parent.is_none(),
            "{snap}: {meta:?}"
        );
        assert_eq!(
            meta.get("compressor").map(String::as_str),
            Some("pigz1"),
            "{snap}"
        );
        parents.insert(snap, parent);
    }
    // The newest backup's chain has four objects, and not one of its links is to the snapshot
    // taken just before: a tree, not a chain.
    let newest = TREE[TREE.len() - 1].0;
    let mut chain = vec![newest];
    while let Some(parent) = parents[chain[chain.len() - 1]] {
        chain.push(parent);
    }
    chain.reverse();
    assert_eq!(
        chain,
        [
            "snap-2026-10-01-0000",
            "snap-2026-11-01-0000",
            "snap-2026-11-03-0000",
            "snap-2026-11-03-1200"
        ]
    );
    let order: Vec<&str> = TREE.iter().map(|(snap, _)| *snap).collect();
    for link in chain.windows(2) {
        let previous = order[order.iter().position(|s| *s == link[1]).unwrap() - 1];
        assert_ne!(link[0], previous, "{} skips {previous}", link[1]);
    }
    // z3's own records lie under the same prefix: a seal per backup, and while a backup runs
    // (here: one on another host, as z3 records it), the dataset's lock.
    let layout = z3_core::KeyLayout::new(&ds.prefix);
    let lock = layout.lock_key(&z3_core::DatasetName::new(&ds.name).unwrap());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let record = z3_core::LockRecord {
        owner: "another-run".into(),
        host: "another-host".into(),
        pid: 7,
        acquired: started,
        expires: started + 3600,
        process: None,
    };
    z3_s3::ObjectStore::put(
        &store,
        &lock,
        record.to_text().into(),
        &z3_s3::PutOptions::default(),
    )
    .await
    .unwrap();
    let mut keys: Vec<String> = z3_s3::ObjectStore::list(&store, &ds.prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.key)
        .collect();
    keys.retain(|key| *key != lock && !TREE.iter().any(|(snap, _)| *key == ds.key(snap)));
    assert_eq!(
        keys.len(),
        TREE.len(),
        "a seal per backup, nothing else: {keys:?}"
    );
    assert!(
        keys.iter()
            .all(|key| key.starts_with(&format!("{}.z3-seals/", ds.prefix))),
        "{keys:?}"
    );

    // The original's status: every backup once (the seals and the lock are no rows),
    // its real parent, healthy, present locally.
    let dir = tempfile::tempdir().unwrap();
    let out = original(&env, &install, dir.path(), &ds, &["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = status_rows(&out);
    assert_eq!(
        rows.keys().map(String::as_str).collect::<Vec<_>>(),
        order,
        "{}",
        stdout(&out)
    );
    for (snap, parent) in TREE {
        let kind = if parent.is_some() {
            "incremental"
        } else {
            "full"
        };
        assert_eq!(
            rows[snap][..4],
            [parent.unwrap_or_default(), kind, "ok", "ok"],
            "{snap}"
        );
    }

    // The dataset is lost. The original restores the newest backup through its four objects,
    // decompressing each with pigz, and receives nothing else (z3's lock does not stop it: it
    // knows no lock).
    crate::support::destroy_retrying(&ds.name).unwrap();
    let out = original(&env, &install, dir.path(), &ds, &["restore", newest]);
    assert!(out.status.success(), "{}", stderr(&out));
    let snapshots = zfs(&["list", "-H", "-o", "name", "-t", "snapshot", "-r", &ds.name]);
    assert_eq!(
        snapshots.lines().collect::<Vec<_>>(),
        chain.iter().map(|snap| full(snap)).collect::<Vec<_>>(),
        "the chain, in order, and no other snapshot"
    );
    assert!(ds.files() == states[newest], "the restored files differ");
    for snap in &chain {
        assert!(
            files_at(&ds, snap) == states[snap],
            "the restored {snap} differs from the one backed up"
        );
    }

    // Its status now: the four restored are local again, the others only in the bucket; every
    // backup is still healthy.
    let out = original(&env, &install, dir.path(), &ds, &["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = status_rows(&out);
    for (snap, _) in TREE {
        let local = if chain.contains(&snap) {
            "ok"
        } else {
            "missing"
        };
        assert_eq!(rows[snap][2..4], ["ok", local], "{snap}");
    }
    z3_s3::ObjectStore::delete(&store, &lock).await.unwrap();
}

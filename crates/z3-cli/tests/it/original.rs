//! The original Python z3 (PyPI `z3==0.2.0` with `boto==2.49.0`, which `cargo xtask ci`
//! installs) reads what z3 writes: its `status` shows a policy-shaped tree as healthy, and its
//! `restore` follows a `parent` that skips snapshots (the tree's link from a leaf to the day's
//! first backup), byte-exact, on zfs-fuse and SeaweedFS.
//!
//! Two adapters, neither touching the original's code: boto 2 reaches an endpoint only through
//! `HOST` on the default port, so a boto config makes SeaweedFS's port its (plain HTTP) proxy;
//! and zfs-fuse has neither `zfs list -t snap` nor the `written` property the original's one
//! listing asks for, so a `zfs` wrapper answers that listing in zfs-fuse's dialect and passes
//! every other command through unchanged.

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
    let port = env.endpoint.rsplit(':').next().unwrap();
    let boto = dir.join("boto.cfg");
    std::fs::write(
        &boto,
        format!(
            "[Boto]\nis_secure = False\nproxy = 127.0.0.1\nproxy_port = {port}\n\
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
        .env("HOST", "127.0.0.1")
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
    let rows: Vec<Vec<String>> = stdout(&out)
        .lines()
        .skip(2)
        .map(|line| line.split('|').map(|c| c.trim().to_owned()).collect())
        .collect();
    let row = |name: &str| rows.iter().find(|r| r[0] == name).cloned().unwrap();
    assert_eq!(row("snap1")[2..4], ["full", "ok"]);
    assert_eq!(row("snap3")[1..4], ["snap1", "incremental", "ok"]);

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

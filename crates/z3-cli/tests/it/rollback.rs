//! Issue 12's rollback story on the real pool and server: a chain `snap-d1 <- snap-d2 <- snap-d3`
//! is backed up; the operator rolls back to `snap-d1` and takes a new `snap-d2`. No command may
//! make the old `snap-d3` unrestorable: the advice z3 gives works as written, and afterwards
//! both the old chain and the new snapshot restore byte-exact.

use z3_s3::ObjectStore;

use crate::support::{RealEnv, assert_no_open_uploads, stderr, zfs};

#[tokio::test]
async fn rollback_and_recreated_name_keep_the_old_chain_restorable() {
    let Some(env) = RealEnv::get("rollback_and_recreated_name_keep_the_old_chain_restorable")
    else {
        return;
    };
    let ds = env.dataset("rollback");
    for (i, snap) in ["snap-d1", "snap-d2", "snap-d3"].iter().enumerate() {
        ds.write_random(&format!("gen-{i}.bin"), 1 << 20, i as u64 + 1);
        ds.snapshot(snap);
        let out = env.z3(&ds, &["backup"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let old_d3 = ds.files();
    let store = env.store().await;
    let old_d2 = store.head(&ds.key("snap-d2")).await.unwrap();

    // Roll back and re-create snap-d2 with other content.
    zfs(&["rollback", "-r", &format!("{}@snap-d1", ds.name)]);
    ds.write_random("gen-new.bin", 1 << 20, 99);
    ds.snapshot("snap-d2");
    let new_d2 = ds.files();

    // An incremental run would build on the old snap-d2's object: refused, exit 3, with advice.
    let out = env.z3(&ds, &["backup"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let advice = stderr(&out);
    let rename = format!("zfs rename {0}@snap-d2 {0}@snap-d2-2", ds.name);
    assert!(advice.contains(&format!("(`{rename}`)")), "{advice}");

    // What the old advice said (--full) would orphan snap-d3: refused, flag or not.
    for extra in [&[][..], &["--overwrite-other-snapshot"][..]] {
        let mut args = vec!["backup", "--full", "--snapshot", "snap-d2"];
        args.extend_from_slice(extra);
        let out = env.z3(&ds, &args);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!(
                "1 backup(s) build on it ({}@snap-d3), which would become unrestorable",
                ds.name
            )),
            "{}",
            stderr(&out)
        );
    }
    let still = store.head(&ds.key("snap-d2")).await.unwrap();
    assert_eq!(
        still.etag, old_d2.etag,
        "the old snap-d2 object was replaced"
    );

    // Follow the advice word for word, then back up.
    let words: Vec<&str> = rename.split(' ').collect();
    zfs(&words[1..]);
    let out = env.z3(&ds, &["backup"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.z3(&ds, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // The old chain restores byte-exact...
    ds.destroy();
    let out = env.z3(&ds, &["restore", "snap-d3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ds.files(), old_d3);
    // ...and so does the renamed new snapshot.
    ds.destroy();
    let out = env.z3(&ds, &["restore", "snap-d2-2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ds.files(), new_d2);
    assert_no_open_uploads(&store, &ds.prefix).await;
}

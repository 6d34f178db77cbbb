//! The end-to-end cycle on moto's S3 server (issue 12, point 3): a second server that behaves
//! differently from SeaweedFS where it matters to completions. moto 5 answers
//! `CompleteMultipartUploadResponse` where the SDK expects `CompleteMultipartUploadResult` (the
//! completion happened, its answer is unreadable), validates no part checksums and checks no
//! signatures. z3 settles each completion by reading the key back (our upload token and length)
//! and checks the object's CRC32C as it does everywhere; see docs/s3-compat.md for what moto
//! cannot guarantee.

use crate::support::{RealEnv, stderr, stdout};

#[tokio::test]
async fn backup_incremental_status_verify_destroy_restore_on_moto() {
    let name = "backup_incremental_status_verify_destroy_restore_on_moto";
    let Some(env) = RealEnv::get(name).and_then(|env| env.on_moto(name)) else {
        return;
    };
    let ds = env.dataset("moto");
    ds.write_random("big.bin", 12 << 20, 7);
    ds.snapshot("snap-1");
    let out = env.z3_with(&ds, &["backup"], &[("CHUNK_SIZE", "5M")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("Successfuly backed up {}@snap-1: ", ds.name)),
        "{}",
        stdout(&out)
    );
    ds.write("more.txt", "more data\n");
    ds.snapshot("snap-2");
    let expected = ds.files();
    let out = env.z3_with(&ds, &["backup"], &[("COMPRESSOR", "zstd")]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = env.z3(&ds, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[2].starts_with("snap-1 |        | full        | ok     | ok"),
        "{text}"
    );
    assert!(
        lines[3].starts_with("snap-2 | snap-1 | incremental | ok     | ok"),
        "{text}"
    );

    let out = env.z3(&ds, &["verify", "--all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(": 2 ok, 0 failed"),
        "{}",
        stdout(&out)
    );

    ds.destroy();
    let out = env.z3(&ds, &["restore", "snap-2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ds.files(), expected);
}

//! Faults on the wire: the binaries talk to SeaweedFS through the fault proxy.

use std::time::Duration;

use z3_s3::ObjectStore as _;

use crate::proxy::{Fault, Op, Proxy, Rule};
use crate::support::{RealEnv, TestDataset, assert_no_open_uploads, stderr, stdout};
use crate::{
    assert_absent, assert_clear_failure, pput, prefix, pseudo_random, read_back, tally, z3_get,
};

/// 12 MiB in 5 MiB parts: three parts, the last one short.
const DATA: usize = 12 << 20;

/// Uploads `DATA` bytes with `pput` through `proxy` and asserts they arrived exactly and nothing
/// is left open; returns the key.
async fn pput_succeeds(env: &RealEnv, proxy: &Proxy, name: &str, extra: &[(&str, &str)]) {
    let prefix = prefix(name);
    let key = format!("{prefix}object");
    let data = pseudo_random(DATA, 11);
    let mut vars = vec![("CHUNK_SIZE", "5M")];
    vars.extend_from_slice(extra);
    let out = pput(env, &proxy.endpoint(), &key, &data, &vars);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("{\"status\": \"success\", \"etag\": "),
        "{}",
        stdout(&out)
    );
    let store = env.store().await;
    assert!(read_back(&store, &key).await == data, "{key} differs");
    assert_no_open_uploads(&store, &prefix).await;
    tally(name, proxy.finish(), 1);
}

/// A dataset with 12 MiB of incompressible data and a text file, snapshot `snap-1`, backed up
/// directly (no proxy) when `backed_up`.
fn source_dataset(env: &RealEnv, name: &str, backed_up: bool) -> TestDataset {
    let ds = env.dataset(name);
    ds.write_random("big.bin", DATA, 5);
    ds.write("note.txt", "fault injection\n");
    ds.snapshot("snap-1");
    if backed_up {
        let out = env.z3_with(&ds, &["backup"], &[("CHUNK_SIZE", "5M")]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    ds
}

/// Destroys `ds`, restores `snap-1` through `endpoint`, and compares every file with `expected`.
fn restore_matches(
    env: &RealEnv,
    ds: &TestDataset,
    endpoint: &str,
    expected: &std::collections::BTreeMap<String, Vec<u8>>,
) {
    ds.destroy();
    let out = env.z3_with(ds, &["restore", "snap-1"], &[("S3_ENDPOINT", endpoint)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(&ds.files() == expected, "restored files differ");
}

/// `503 SlowDown` on two part uploads: retried with backoff, the object is exact.
#[tokio::test]
async fn slow_down_on_upload_part_is_retried() {
    let Some(env) = RealEnv::get("slow_down_on_upload_part_is_retried") else {
        return;
    };
    let proxy = Proxy::start(&env.endpoint);
    proxy.inject(Rule::new(Op::UploadPart, Fault::SlowDown, 2));
    pput_succeeds(&env, &proxy, "slow_down_on_upload_part_is_retried", &[]).await;
    assert!(proxy.seen(Op::UploadPart) >= 5);
}

/// `503 SlowDown` on `CreateMultipartUpload` during a backup, then on ranged GETs during the
/// restore: both retried, the restored files are exact.
#[tokio::test]
async fn slow_down_on_create_and_range_gets_is_retried() {
    let Some(env) = RealEnv::get("slow_down_on_create_and_range_gets_is_retried") else {
        return;
    };
    let ds = source_dataset(&env, "slowdown", false);
    let expected = ds.files();
    let proxy = Proxy::start(&env.endpoint);
    proxy.inject(Rule::new(Op::CreateMultipart, Fault::SlowDown, 1).on_path(&ds.prefix));
    let out = env.z3_with(
        &ds,
        &["backup"],
        &[("S3_ENDPOINT", &proxy.endpoint()), ("CHUNK_SIZE", "5M")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(proxy.seen(Op::CreateMultipart), 2);
    proxy.inject(Rule::new(Op::GetRange, Fault::SlowDown, 2));
    restore_matches(&env, &ds, &proxy.endpoint(), &expected);
    assert_no_open_uploads(&env.store().await, &ds.prefix).await;
    tally(
        "slow_down_on_create_and_range_gets_is_retried",
        proxy.finish(),
        1,
    );
}

/// `503 SlowDown` on `z3_get`'s ranged GETs: retried, the output is exact.
#[tokio::test]
async fn slow_down_on_z3_get_ranges_is_retried() {
    let Some(env) = RealEnv::get("slow_down_on_z3_get_ranges_is_retried") else {
        return;
    };
    get_through_faults(
        &env,
        "slow_down_on_z3_get_ranges_is_retried",
        Rule::new(Op::GetRange, Fault::SlowDown, 2),
    )
    .await;
}

/// Stores `DATA` bytes directly, reads them back with `z3_get` through a proxy with `rule`, and
/// compares.
async fn get_through_faults(env: &RealEnv, name: &str, rule: Rule) {
    let prefix = prefix(name);
    let key = format!("{prefix}object");
    let data = pseudo_random(DATA, 13);
    let out = pput(env, &env.endpoint, &key, &data, &[("CHUNK_SIZE", "5M")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let proxy = Proxy::start(&env.endpoint);
    proxy.inject(rule);
    let out = z3_get(env, &proxy.endpoint(), &key, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout == data, "z3_get output differs");
    assert_no_open_uploads(&env.store().await, &prefix).await;
    tally(name, proxy.finish(), 1);
}

/// `500 InternalError` on every attempt of a part: the upload fails with one line naming the
/// error, is aborted, and leaves no object.
#[tokio::test]
async fn internal_error_on_every_part_attempt_fails_and_aborts() {
    let Some(env) = RealEnv::get("internal_error_on_every_part_attempt_fails_and_aborts") else {
        return;
    };
    let prefix = prefix("internal-error");
    let key = format!("{prefix}object");
    let proxy = Proxy::start(&env.endpoint);
    // One part at a time, three attempts each: the first part fails three times.
    proxy.inject(Rule::new(Op::UploadPart, Fault::InternalError, 3));
    let out = pput(
        &env,
        &proxy.endpoint(),
        &key,
        &pseudo_random(DATA, 17),
        &[
            ("CHUNK_SIZE", "5M"),
            ("CONCURRENCY", "1"),
            ("MAX_RETRIES", "3"),
        ],
    );
    assert_clear_failure(
        &out,
        "pput",
        1,
        &[
            &format!("upload to {}/{key} failed", env.bucket),
            "InternalError",
            "HTTP 500",
        ],
    );
    assert_eq!(stdout(&out), "");
    assert_eq!(proxy.seen(Op::Abort), 1);
    let store = env.store().await;
    assert_absent(&store, &key).await;
    assert_no_open_uploads(&store, &prefix).await;
    tally(
        "internal_error_on_every_part_attempt_fails_and_aborts",
        proxy.finish(),
        0,
    );
}

/// The connection reset after 1 MiB of a part's body, twice: the parts are sent again.
#[tokio::test]
async fn connection_reset_mid_part_body_is_retried() {
    let Some(env) = RealEnv::get("connection_reset_mid_part_body_is_retried") else {
        return;
    };
    let proxy = Proxy::start(&env.endpoint);
    proxy.inject(Rule::new(
        Op::UploadPart,
        Fault::ResetRequestBody(1 << 20),
        2,
    ));
    pput_succeeds(
        &env,
        &proxy,
        "connection_reset_mid_part_body_is_retried",
        &[],
    )
    .await;
}

/// The connection reset after 1 MiB of a range's body, twice: `z3_get` resumes.
#[tokio::test]
async fn connection_reset_mid_range_body_is_resumed() {
    let Some(env) = RealEnv::get("connection_reset_mid_range_body_is_resumed") else {
        return;
    };
    get_through_faults(
        &env,
        "connection_reset_mid_range_body_is_resumed",
        Rule::new(Op::GetRange, Fault::ResetResponseBody(1 << 20), 2),
    )
    .await;
}

/// Range bodies cut short (a clean close before `Content-Length`) during a restore and during
/// `z3_get`: resumed from the first missing byte, both exact.
#[tokio::test]
async fn truncated_range_bodies_are_resumed_by_restore_and_z3_get() {
    let Some(env) = RealEnv::get("truncated_range_bodies_are_resumed_by_restore_and_z3_get") else {
        return;
    };
    let ds = source_dataset(&env, "truncated", true);
    let expected = ds.files();
    let store = env.store().await;
    let object = read_back(&store, &ds.key("snap-1")).await;
    let proxy = Proxy::start(&env.endpoint);
    proxy.inject(Rule::new(
        Op::GetRange,
        Fault::TruncateResponseBody(3 << 20),
        2,
    ));
    restore_matches(&env, &ds, &proxy.endpoint(), &expected);
    proxy.inject(Rule::new(Op::GetRange, Fault::TruncateResponseBody(100), 2).after(2));
    let out = z3_get(&env, &proxy.endpoint(), &ds.key("snap-1"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout == object, "z3_get output differs");
    tally(
        "truncated_range_bodies_are_resumed_by_restore_and_z3_get",
        proxy.finish(),
        2,
    );
}

/// A restore meets an object in an archive tier (`403 InvalidObjectState` on its first range):
/// no retry storm, nothing received, and the message says how to restore it from the archive.
#[tokio::test]
async fn an_archived_object_fails_the_restore_with_advice() {
    let Some(env) = RealEnv::get("an_archived_object_fails_the_restore_with_advice") else {
        return;
    };
    let ds = source_dataset(&env, "archived", true);
    let proxy = Proxy::start(&env.endpoint);
    proxy.inject(
        Rule::new(Op::GetRange, Fault::Archived, 1).on_path(&format!("{}{}", ds.prefix, ds.name)),
    );
    ds.destroy();
    let out = env.z3_with(
        &ds,
        &["restore", "snap-1"],
        &[("S3_ENDPOINT", &proxy.endpoint())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    for needle in [
        "archive storage class",
        "restore-object",
        &ds.key("snap-1"),
        "InvalidObjectState",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    let listed = std::process::Command::new("zfs")
        .args(["list", "-H", "-o", "name", &format!("{}@snap-1", ds.name)])
        .output()
        .unwrap();
    assert!(!listed.status.success(), "snap-1 was received: {listed:?}");
    let injected = proxy.finish();
    // Refused once: a retry of that range would have succeeded and restored the dataset.
    assert_eq!(injected, 1);
    tally(
        "an_archived_object_fails_the_restore_with_advice",
        injected,
        0,
    );
}

/// `CompleteMultipartUpload` fails once with `500 InternalError`: retried, the object is exact.
#[tokio::test]
async fn complete_failing_once_is_retried() {
    let Some(env) = RealEnv::get("complete_failing_once_is_retried") else {
        return;
    };
    let proxy = Proxy::start(&env.endpoint);
    proxy.inject(Rule::new(Op::Complete, Fault::InternalError, 1));
    pput_succeeds(&env, &proxy, "complete_failing_once_is_retried", &[]).await;
    assert_eq!(proxy.seen(Op::Complete), 2);
}

/// The server completes the upload but the response is lost. SeaweedFS completes a retried
/// completion again (AWS may answer `NoSuchUpload` instead, the next test): the object is exact.
#[tokio::test]
async fn lost_complete_response_is_completed_again() {
    let Some(env) = RealEnv::get("lost_complete_response_is_completed_again") else {
        return;
    };
    let proxy = Proxy::start(&env.endpoint);
    proxy.inject(Rule::new(Op::Complete, Fault::DropResponse, 1));
    pput_succeeds(
        &env,
        &proxy,
        "lost_complete_response_is_completed_again",
        &[],
    )
    .await;
    assert_eq!(proxy.seen(Op::Complete), 2);
}

/// The completion's response is lost and its retry answered `NoSuchUpload` (as AWS does once
/// the upload is completed): the object is accepted because it carries our upload token and
/// length (and then its composite CRC32C is checked), and it restores exactly.
#[tokio::test]
async fn lost_complete_response_is_confirmed_by_the_checksum() {
    let Some(env) = RealEnv::get("lost_complete_response_is_confirmed_by_the_checksum") else {
        return;
    };
    let ds = source_dataset(&env, "lostcomplete", false);
    let expected = ds.files();
    let proxy = Proxy::start(&env.endpoint);
    proxy.inject(Rule::new(Op::Complete, Fault::DropResponse, 1));
    proxy.inject(Rule::new(Op::Complete, Fault::NoSuchUpload, 1));
    let out = env.z3_with(
        &ds,
        &["backup"],
        &[("S3_ENDPOINT", &proxy.endpoint()), ("CHUNK_SIZE", "5M")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the object carries our upload token and length: it completed"),
        "{}",
        stderr(&out)
    );
    assert_no_open_uploads(&env.store().await, &ds.prefix).await;
    restore_matches(&env, &ds, &env.endpoint, &expected);
    tally(
        "lost_complete_response_is_confirmed_by_the_checksum",
        proxy.finish(),
        1,
    );
}

/// The completion never reaches the server (reset before its body) and the retry is answered
/// `NoSuchUpload`: the key holds no object with our upload token, so the backup fails, the
/// upload is aborted, and nothing claims to be the backup.
#[tokio::test]
async fn lost_complete_request_is_not_taken_for_success() {
    let Some(env) = RealEnv::get("lost_complete_request_is_not_taken_for_success") else {
        return;
    };
    let ds = source_dataset(&env, "lostrequest", false);
    let proxy = Proxy::start(&env.endpoint);
    proxy.inject(Rule::new(Op::Complete, Fault::ResetRequestBody(0), 1));
    proxy.inject(Rule::new(Op::Complete, Fault::NoSuchUpload, 1));
    let out = env.z3_with(
        &ds,
        &["backup"],
        &[("S3_ENDPOINT", &proxy.endpoint()), ("CHUNK_SIZE", "5M")],
    );
    assert_clear_failure(
        &out,
        "z3",
        1,
        &[
            &format!("backup of {}@snap-1 failed", ds.name),
            "was aborted",
            "NoSuchUpload",
        ],
    );
    assert_eq!(proxy.seen(Op::Abort), 1);
    let store = env.store().await;
    assert_absent(&store, &ds.key("snap-1")).await;
    assert_no_open_uploads(&store, &ds.prefix).await;
    tally(
        "lost_complete_request_is_not_taken_for_success",
        proxy.finish(),
        0,
    );
}

/// `NoSuchUpload` on the *first* completion attempt is an error, not a lost response: the
/// upload is aborted and no object appears.
#[tokio::test]
async fn no_such_upload_on_the_first_completion_fails() {
    let Some(env) = RealEnv::get("no_such_upload_on_the_first_completion_fails") else {
        return;
    };
    let prefix = prefix("first-no-such-upload");
    let key = format!("{prefix}object");
    let proxy = Proxy::start(&env.endpoint);
    proxy.inject(Rule::new(Op::Complete, Fault::NoSuchUpload, 1));
    let out = pput(
        &env,
        &proxy.endpoint(),
        &key,
        &pseudo_random(DATA, 19),
        &[("CHUNK_SIZE", "5M")],
    );
    assert_clear_failure(
        &out,
        "pput",
        1,
        &[
            &format!("upload to {}/{key} failed", env.bucket),
            "NoSuchUpload",
        ],
    );
    let store = env.store().await;
    assert_absent(&store, &key).await;
    assert_no_open_uploads(&store, &prefix).await;
    tally(
        "no_such_upload_on_the_first_completion_fails",
        proxy.finish(),
        0,
    );
}

/// Small requests answered after the client's timeout (`S3_TIMEOUT=1`, answers 3 s late):
/// a late completion and a late `HEAD` of `z3_get` are retried; both results are exact.
#[tokio::test]
async fn responses_delayed_past_the_timeout_are_retried() {
    let Some(env) = RealEnv::get("responses_delayed_past_the_timeout_are_retried") else {
        return;
    };
    let late = Fault::DelayResponse(Duration::from_secs(3));
    let proxy = Proxy::start(&env.endpoint);
    proxy.inject(Rule::new(Op::Complete, late, 1));
    pput_succeeds(
        &env,
        &proxy,
        "responses_delayed_past_the_timeout_are_retried",
        &[("S3_TIMEOUT", "1")],
    )
    .await;
    assert_eq!(proxy.seen(Op::Complete), 2);

    let prefix = prefix("late-head");
    let key = format!("{prefix}object");
    let out = pput(&env, &env.endpoint, &key, b"small object\n", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    proxy.inject(Rule::new(Op::Head, late, 1));
    let out = z3_get(&env, &proxy.endpoint(), &key, &[("S3_TIMEOUT", "1")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"small object\n");
    assert_eq!(proxy.seen(Op::Head), 2);
    tally(
        "responses_delayed_past_the_timeout_are_retried (HEAD of z3_get)",
        proxy.finish() - 1,
        1,
    );
}

/// `CreateMultipartUpload` answered after the client's timeout: the server created an upload
/// the client never heard of, and the retry creates a second one. The object is exact, and the
/// first upload must not be left open.
#[tokio::test]
async fn create_response_delayed_past_the_timeout_leaves_no_upload_open() {
    let Some(env) = RealEnv::get("create_response_delayed_past_the_timeout_leaves_no_upload_open")
    else {
        return;
    };
    let proxy = Proxy::start(&env.endpoint);
    let late = Fault::DelayResponse(Duration::from_secs(3));
    proxy.inject(Rule::new(Op::CreateMultipart, late, 1));
    pput_succeeds(
        &env,
        &proxy,
        "create_response_delayed_past_the_timeout_leaves_no_upload_open",
        &[("S3_TIMEOUT", "1")],
    )
    .await;
    assert_eq!(proxy.seen(Op::CreateMultipart), 2);
}

/// Every read of the bucket retries: `503 SlowDown` on the first LIST, and a `503` and a
/// connection reset on the n-th HEADs, during `status`, `backup`, `verify` and `restore`. Each
/// command succeeds (it failed on the first LIST before); the restored files are exact.
#[tokio::test]
async fn slow_down_and_resets_on_list_and_head_are_retried() {
    let name = "slow_down_and_resets_on_list_and_head_are_retried";
    let Some(env) = RealEnv::get(name) else {
        return;
    };
    let ds = env.dataset("readfaults");
    ds.write_random("big.bin", 1 << 20, 9);
    ds.snapshot("snap-1");
    for i in 2..=3 {
        ds.write(&format!("f{i}.txt"), &format!("file {i}\n"));
        ds.snapshot(&format!("snap-{i}"));
    }
    let out = env.z3(&ds, &["backup"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let proxy = Proxy::start(&env.endpoint);
    let endpoint = proxy.endpoint();
    let through_faults = |args: &[&str]| {
        proxy.inject(Rule::new(Op::List, Fault::SlowDown, 1));
        proxy.inject(Rule::new(Op::Head, Fault::SlowDown, 1).after(1));
        proxy.inject(Rule::new(Op::Head, Fault::ResetRequestBody(0), 1).after(2));
        let out = env.z3_with(&ds, args, &[("S3_ENDPOINT", &endpoint)]);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        // Every rule fired: the command met its faults and got through them.
        proxy.finish();
        out
    };

    let out = through_faults(&["status"]);
    assert!(stdout(&out).contains("snap-3"), "{}", stdout(&out));
    ds.write("f4.txt", "file 4\n");
    ds.snapshot("snap-4");
    through_faults(&["backup"]);
    let out = through_faults(&["verify", "--all"]);
    assert!(stdout(&out).contains("snap-4"), "{}", stdout(&out));
    let expected = ds.files();
    ds.destroy();
    through_faults(&["restore", "snap-4"]);
    assert!(ds.files() == expected, "restored files differ");
    assert!(proxy.seen(Op::Head) >= 12, "{} HEADs", proxy.seen(Op::Head));
    assert_no_open_uploads(&env.store().await, &ds.prefix).await;
    tally(name, proxy.finish(), 4);
}

/// `503 SlowDown` on `z3_mp_cleanup`'s first `ListMultipartUploads`: retried; the stale upload
/// is aborted as without the fault.
#[tokio::test]
async fn slow_down_on_list_multipart_uploads_is_retried_by_cleanup() {
    let name = "slow_down_on_list_multipart_uploads_is_retried_by_cleanup";
    let Some(env) = RealEnv::get(name) else {
        return;
    };
    let prefix = prefix(name);
    let store = env.store().await;
    store
        .create_multipart(
            &format!("{prefix}pool/fs@left-open"),
            &z3_s3::PutOptions::default(),
        )
        .await
        .unwrap();
    let proxy = Proxy::start(&env.endpoint);
    proxy.inject(Rule::new(Op::ListUploads, Fault::SlowDown, 1));
    let out = env
        .command(env!("CARGO_BIN_EXE_z3_mp_cleanup"))
        .env("S3_ENDPOINT", proxy.endpoint())
        .args(["--prefix", &prefix, "--max-age", "0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("X | {prefix}pool/fs@left-open | 20")),
        "{}",
        stdout(&out)
    );
    assert_eq!(proxy.seen(Op::ListUploads), 2);
    assert_no_open_uploads(&store, &prefix).await;
    tally(name, proxy.finish(), 0);
}

//! `z3_mp_cleanup` on `MemoryStore` (ages by moving "now") and end to end on SeaweedFS.

use std::time::{Duration, SystemTime};

use z3_cli::cleanup::cleanup;
use z3_s3::{ErrorKind, FaultyStore, MemoryStore, ObjectStore, Op, PutOptions, RetryConfig};

use crate::support::{RealEnv, stderr, stdout};

const DAY: Duration = Duration::from_hours(24);

fn retry() -> RetryConfig {
    RetryConfig {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
    }
}

#[tokio::test]
async fn old_uploads_are_aborted_young_ones_and_objects_left_alone() {
    let store = MemoryStore::new("bkt");
    store.insert(
        "z3/pool/fs@done",
        b"a finished backup".to_vec(),
        &PutOptions::default(),
    );
    let old = store
        .create_multipart("z3/pool/fs@old", &PutOptions::default())
        .await
        .unwrap();
    store
        .create_multipart("other/key", &PutOptions::default())
        .await
        .unwrap();
    // Seen two days later, both are old; a dry run aborts nothing.
    let later = SystemTime::now() + 2 * DAY;
    let mut out = Vec::new();
    let report = cleanup(&store, "", DAY, true, later, &retry(), &mut out)
        .await
        .unwrap();
    assert_eq!((report.open, report.stale, report.aborted), (2, 2, 0));
    assert_eq!(store.open_uploads(), 2);
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.starts_with("A | key | initiated\nX | other/key | 20"),
        "{text}"
    );
    assert!(text.contains("\nX | z3/pool/fs@old | 20"), "{text}");

    // Only under a prefix, for real.
    let mut out = Vec::new();
    let report = cleanup(&store, "z3/", DAY, false, later, &retry(), &mut out)
        .await
        .unwrap();
    assert_eq!((report.open, report.stale, report.aborted), (1, 1, 1));
    let open = store.list_multipart_uploads("").await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].key, "other/key");
    assert!(
        store
            .list_multipart_uploads("z3/")
            .await
            .unwrap()
            .iter()
            .all(|u| u.upload_id != old)
    );
    assert!(
        store.object("z3/pool/fs@done").is_some(),
        "objects are never touched"
    );

    // Seen now, the remaining upload is younger than a day: listed, not marked.
    let mut out = Vec::new();
    let report = cleanup(
        &store,
        "",
        DAY,
        false,
        SystemTime::now(),
        &retry(),
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!((report.open, report.stale, report.aborted), (1, 0, 0));
    assert!(
        String::from_utf8(out)
            .unwrap()
            .contains("\n  | other/key | ")
    );
    assert_eq!(store.open_uploads(), 1);
}

#[tokio::test]
async fn a_failing_abort_is_reported_and_the_others_still_run() {
    let store = FaultyStore::new(MemoryStore::new("bkt"));
    store
        .inner()
        .create_multipart("a", &PutOptions::default())
        .await
        .unwrap();
    store
        .inner()
        .create_multipart("b", &PutOptions::default())
        .await
        .unwrap();
    store.fail_key("a", None, 5, ErrorKind::AccessDenied);
    let mut out = Vec::new();
    let later = SystemTime::now() + DAY;
    let report = cleanup(&store, "", DAY, false, later, &retry(), &mut out)
        .await
        .unwrap();
    assert_eq!((report.stale, report.aborted, report.failed), (2, 1, 1));
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("  cannot abort a ("), "{text}");
    assert_eq!(
        store.inner().list_multipart_uploads("").await.unwrap()[0].key,
        "a"
    );
    assert_eq!(store.calls(Op::AbortMultipart), 2);
}

#[tokio::test]
async fn the_command_aborts_a_stale_upload_on_seaweedfs() {
    let Some(env) = RealEnv::get("the_command_aborts_a_stale_upload_on_seaweedfs") else {
        return;
    };
    let store = env.store().await;
    let prefix = format!("cleanup-{}/", std::process::id());
    store
        .create_multipart(
            &format!("{prefix}pool/fs@left-open"),
            &PutOptions::default(),
        )
        .await
        .unwrap();
    let run = |args: &[&str]| {
        env.command(env!("CARGO_BIN_EXE_z3_mp_cleanup"))
            .args(["--prefix", &prefix])
            .args(args)
            .output()
            .unwrap()
    };
    // A day's threshold keeps a fresh upload; a dry run with 0 days only marks it.
    let out = run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("\n  | {prefix}pool/fs@left-open | 20")),
        "{}",
        stdout(&out)
    );
    let out = run(&["--max-age", "0", "--dry"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).ends_with(&format!(
            "would abort 1 of 1 unfinished uploads in {} started at least 0 day(s) ago\n",
            env.bucket
        )),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        store.list_multipart_uploads(&prefix).await.unwrap().len(),
        1
    );
    // The same as JSON lines: the upload, then the finished line with the counts.
    let out = run(&["--max-age", "0", "--dry", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = crate::json::lines(&stdout(&out));
    assert_eq!(lines.len(), 2, "{}", stdout(&out));
    assert_eq!(lines[0]["event"], "upload");
    assert_eq!(lines[0]["key"], format!("{prefix}pool/fs@left-open"));
    assert_eq!(lines[0]["action"]["action"], "abort");
    let started = lines[0]["initiated"].as_u64().expect("Unix seconds");
    assert!(started > 1_700_000_000, "{started}");
    assert_eq!(lines[1]["event"], "finished");
    assert_eq!(lines[1]["command"], "cleanup");
    assert_eq!(lines[1]["exit_code"], 0);
    assert_eq!(lines[1]["report"]["stale"], 1);
    assert_eq!(lines[1]["report"]["aborted"], 0);
    let out = run(&["--max-age", "0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("X | {prefix}pool/fs@left-open | 20")),
        "{}",
        stdout(&out)
    );
    assert!(
        store
            .list_multipart_uploads(&prefix)
            .await
            .unwrap()
            .is_empty()
    );
}

fn lock_text(expires: SystemTime) -> Vec<u8> {
    let secs = |t: SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    z3_core::LockRecord {
        owner: "0123".into(),
        host: "db-1".into(),
        pid: 4242,
        acquired: secs(expires) - 900,
        expires: secs(expires),
        process: None,
    }
    .to_text()
    .into_bytes()
}

#[tokio::test]
async fn uploads_covered_by_a_live_backup_lock_are_never_aborted() {
    let store = FaultyStore::new(MemoryStore::new("bkt"));
    let inner = store.inner();
    for key in [
        "z3/pool/fs@running",
        "z3/pool/torn@x",
        "z3/pool/unreadable@x",
        "z3/pool/expired@x",
        "z3/pool/free@x",
        "z3/pool/fs/child@y",
    ] {
        inner
            .create_multipart(key, &PutOptions::default())
            .await
            .unwrap();
    }
    // A backup that has been running for 8 days holds its lock and renews it.
    let later = SystemTime::now() + 8 * DAY;
    let opts = PutOptions::default();
    inner.insert(
        "z3/.z3-locks/pool/fs",
        lock_text(later + Duration::from_mins(10)),
        &opts,
    );
    inner.insert(
        "z3/.z3-locks/pool/torn",
        b"owner=0123\nhost=db-".to_vec(),
        &opts,
    );
    inner.insert("z3/.z3-locks/pool/unreadable", lock_text(later), &opts);
    store.fail_key(
        "z3/.z3-locks/pool/unreadable",
        None,
        10,
        ErrorKind::AccessDenied,
    );
    inner.insert("z3/.z3-locks/pool/expired", lock_text(later - DAY), &opts);

    let mut out = Vec::new();
    let report = cleanup(&store, "z3/", 7 * DAY, false, later, &retry(), &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        (report.open, report.stale, report.locked, report.aborted),
        (6, 3, 3, 3),
        "{text}"
    );
    let left: Vec<String> = inner
        .list_multipart_uploads("")
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.key)
        .collect();
    assert_eq!(
        left,
        [
            "z3/pool/fs@running",
            "z3/pool/torn@x",
            "z3/pool/unreadable@x"
        ],
        "{text}"
    );
    assert!(text.contains("\nL | z3/pool/fs@running | 20"), "{text}");
    assert!(
        text.contains(
            "  kept: a backup may still be writing it; the live backup lock s3://bkt/z3/.z3-locks/pool/fs covers it: host db-1 (pid 4242)"
        ),
        "{text}"
    );
    assert!(text.contains("\nL | z3/pool/torn@x | 20"), "{text}");
    assert!(
        text.contains("z3/.z3-locks/pool/torn covers it and cannot be parsed"),
        "{text}"
    );
    assert!(
        text.contains("z3/.z3-locks/pool/unreadable may cover it and cannot be read"),
        "{text}"
    );
    assert!(text.contains("\nX | z3/pool/expired@x | 20"), "{text}");
    assert!(text.contains("\nX | z3/pool/free@x | 20"), "{text}");
    // The child dataset has its own lock key (none here); its parent's lock does not cover it.
    assert!(text.contains("\nX | z3/pool/fs/child@y | 20"), "{text}");
    // Locks are objects and are never touched.
    assert!(inner.object("z3/.z3-locks/pool/expired").is_some());
}

#[test]
fn the_default_max_age_is_a_week() {
    use clap::Parser;
    let args = z3_cli::cleanup::CleanupArgs::try_parse_from(["z3_mp_cleanup"]).unwrap();
    assert!(
        (args.max_age - 7.0).abs() < f64::EPSILON,
        "{}",
        args.max_age
    );
}

#[tokio::test]
async fn the_command_keeps_an_upload_under_a_live_lock_on_seaweedfs() {
    let Some(env) = RealEnv::get("the_command_keeps_an_upload_under_a_live_lock_on_seaweedfs")
    else {
        return;
    };
    let store = env.store().await;
    let prefix = format!("cleanup-lock-{}/", std::process::id());
    for key in ["pool/busy@running", "pool/idle@left-open"] {
        store
            .create_multipart(&format!("{prefix}{key}"), &PutOptions::default())
            .await
            .unwrap();
    }
    // The lock of a backup still running: it expires in an hour.
    store
        .put(
            &format!("{prefix}.z3-locks/pool/busy"),
            lock_text(SystemTime::now() + Duration::from_hours(1)).into(),
            &PutOptions::default(),
        )
        .await
        .unwrap();
    let out = env
        .command(env!("CARGO_BIN_EXE_z3_mp_cleanup"))
        .args(["--prefix", &prefix, "--max-age", "0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("\nL | {prefix}pool/busy@running | 20")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "the live backup lock s3://{}/{prefix}.z3-locks/pool/busy covers it: host db-1 (pid 4242)",
            env.bucket
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("\nX | {prefix}pool/idle@left-open | 20")),
        "{text}"
    );
    assert!(
        text.ends_with("; kept 1 old upload(s) covered by a live backup lock\n"),
        "{text}"
    );
    let left = store.list_multipart_uploads(&prefix).await.unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].key, format!("{prefix}pool/busy@running"));
    store
        .abort_multipart(&left[0].key, &left[0].upload_id)
        .await
        .unwrap();
    store
        .delete(&format!("{prefix}.z3-locks/pool/busy"))
        .await
        .unwrap();
}

/// ADR 4: an upload an interrupted backup journaled is kept until the resume window (7 days)
/// has passed, whatever `--max-age` says; then it is aborted and its journal deleted. A journal
/// naming another upload of the key does not protect this one.
#[tokio::test]
async fn journaled_uploads_are_kept_for_the_resume_window_then_aborted_with_the_journal() {
    let store = MemoryStore::new("bkt");
    let opts = PutOptions::default();
    let journaled = store
        .create_multipart("z3/pool/fs@s1", &opts)
        .await
        .unwrap();
    let other = store
        .create_multipart("z3/pool/fs@s2", &opts)
        .await
        .unwrap();
    let journal = |key: &str, id: &z3_s3::UploadId| {
        let identity = z3_engine::journal::Identity {
            key: key.to_owned(),
            guid: 1,
            parent_guid: None,
            send_flags: String::new(),
            encoding: "none".into(),
            part_size: 5 << 20,
            estimate: 1 << 30,
            memory_limit: 1 << 30,
        };
        let open = z3_s3::OpenUpload {
            upload_id: id.clone(),
            token: "t".into(),
            parts: Vec::new(),
        };
        serde_json::to_vec(&z3_engine::journal::Journal::new(identity, &open)).unwrap()
    };
    store.insert(
        "z3/.z3-journal/pool/fs@s1",
        journal("z3/pool/fs@s1", &journaled),
        &opts,
    );
    // The journal of s2 names an upload that is gone: it does not cover the open one.
    store.insert(
        "z3/.z3-journal/pool/fs@s2",
        journal("z3/pool/fs@s2", &z3_s3::UploadId::new("gone")),
        &opts,
    );
    let _ = other;

    // Two days later, with --max-age 1: the journaled upload is kept, the other aborted.
    let mut out = Vec::new();
    let report = cleanup(
        &store,
        "z3/",
        DAY,
        false,
        SystemTime::now() + 2 * DAY,
        &retry(),
        &mut out,
    )
    .await
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!((report.journaled, report.aborted), (1, 1), "{text}");
    assert!(text.contains("\nJ | z3/pool/fs@s1 | 20"), "{text}");
    assert!(
        text.contains("  kept: the journal s3://bkt/z3/.z3-journal/pool/fs@s1 names it"),
        "{text}"
    );
    assert!(text.contains("\nX | z3/pool/fs@s2 | 20"), "{text}");
    assert_eq!(store.open_uploads(), 1);

    // Eight days later the window has passed: aborted, and its journal deleted.
    let mut out = Vec::new();
    let report = cleanup(
        &store,
        "z3/",
        DAY,
        false,
        SystemTime::now() + 8 * DAY,
        &retry(),
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!((report.journaled, report.aborted), (0, 1));
    assert_eq!(store.open_uploads(), 0);
    assert!(store.object("z3/.z3-journal/pool/fs@s1").is_none());
}

//! Issue 15, point 5: every error a first-time user can hit, one test each, in the order a
//! first run meets them. Each message is one line that names the cause and the fix, keeps its
//! exit code, and never prints a credential.

use std::sync::Arc;

use assert_cmd::Command;
use z3_cli::args::{Command as Z3Command, StatusArgs};
use z3_cli::exit::ExitStatus;
use z3_s3::MemoryStore;
use z3_zfs::ZfsCli;

use crate::engine::{Harness, Run, backup, now};

const SECRET: &str = "first-errors-secret-never-printed";

/// `z3` with nothing of this machine's environment but `PATH`.
fn z3(envs: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = Command::cargo_bin("z3").unwrap();
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(envs.iter().copied())
        .args(args);
    let out = cmd.output().unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

/// One line, starting as every error does, without the secret; then every `needle`.
fn check_line(err: &str, needles: &[&str]) {
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!err.contains(SECRET), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} not in: {err}");
    }
}

fn status() -> Z3Command {
    Z3Command::Status(StatusArgs::default())
}

fn check_run(run: &Run, status: ExitStatus, needles: &[&str]) {
    assert_eq!(run.status, status, "{}", run.err);
    check_line(&run.err, needles);
}

#[test]
fn a_named_config_file_that_is_missing_says_which_and_how_to_fix_it() {
    let fix = "no such file: fix the path given with --config or Z3_CONFIG, or unset both to use /etc/z3_backup/z3.conf";
    let (code, err) = z3(&[], &["--config", "/nonexistent/z3/z3.conf", "status"]);
    assert_eq!(code, Some(2), "{err}");
    check_line(&err, &["z3: error: ", "/nonexistent/z3/z3.conf", fix]);
    let (code, err) = z3(&[("Z3_CONFIG", "/nonexistent/z3/env.conf")], &["status"]);
    assert_eq!(code, Some(2), "{err}");
    check_line(&err, &["/nonexistent/z3/env.conf", fix]);
}

#[test]
fn no_bucket_says_where_to_set_it() {
    let needles = [
        "BUCKET is not set: add `BUCKET = <name>` to the [main] section of /etc/z3_backup/z3.conf",
        "or set BUCKET in the environment",
    ];
    // A config file without BUCKET.
    let (code, err) = z3(&[("Z3_CONFIG", "/dev/null")], &["status"]);
    assert_eq!(code, Some(2), "{err}");
    check_line(&err, &needles);
    // No config file at all: the default one is absent (on this machine) and nothing else sets it.
    if std::path::Path::new("/etc/z3_backup/z3.conf").exists() {
        eprintln!("skipping the default-file half: /etc/z3_backup/z3.conf exists here");
        return;
    }
    let (code, err) = z3(&[], &["status"]);
    assert_eq!(code, Some(2), "{err}");
    check_line(&err, &needles);
}

#[test]
fn an_unreachable_endpoint_names_it_and_the_setting() {
    // Bind and drop to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let env = [
        ("Z3_CONFIG", "/dev/null"),
        ("BUCKET", "first-errors"),
        ("S3_ENDPOINT", endpoint.as_str()),
        ("S3_KEY_ID", "AKIAFIRSTERRORS"),
        ("S3_SECRET", SECRET),
        ("MAX_RETRIES", "1"),
    ];
    let (code, err) = z3(&env, &["status", "--dataset", "pool/fs"]);
    assert_eq!(code, Some(1), "{err}");
    check_line(
        &err,
        &[
            &format!("cannot reach the S3 endpoint {endpoint} (connection refused)"),
            "check S3_ENDPOINT (or --endpoint) and that the S3 server is running",
        ],
    );
    assert!(
        err.trim_end().ends_with("running"),
        "the fix ends the line: {err}"
    );
}

#[tokio::test]
async fn wrong_credentials_name_the_settings_not_their_values() {
    let h = Harness::new(|raw| {
        raw.s3_key_id = Some("AKIAFIRSTERRORS".into());
        raw.s3_secret = Some(SECRET.into());
    });
    h.store.deny_access(true);
    let run = h.run(status()).await;
    check_run(
        &run,
        ExitStatus::Error,
        &[
            "access denied, S3 refused the credentials (InvalidAccessKeyId)",
            "check S3_KEY_ID and S3_SECRET (not printed)",
        ],
    );
}

#[tokio::test]
async fn a_missing_bucket_says_create_it_or_fix_bucket() {
    let h = Harness::new(|_| {});
    let h = h.with_memory_store(MemoryStore::without_bucket("bkt"));
    let run = h.run(status()).await;
    check_run(
        &run,
        ExitStatus::Error,
        &[
            "the bucket 'bkt' does not exist",
            "create the bucket, or fix BUCKET",
        ],
    );
}

#[tokio::test]
async fn a_missing_dataset_says_check_filesystem() {
    let h = Harness::new(|raw| raw.filesystem = Some("pool/nope".into()));
    let run = h.run(Z3Command::Backup(backup())).await;
    check_run(
        &run,
        ExitStatus::Error,
        &["dataset pool/nope does not exist: check FILESYSTEM (or --dataset) against `zfs list`"],
    );
}

#[tokio::test]
async fn no_matching_snapshot_names_snapshot_prefix() {
    // The original's message, kept word for word: scripts match on it (docs/compatibility.md).
    let h = Harness::new(|raw| raw.snapshot_prefix = Some("daily".into()));
    h.snap("snap1", "one");
    let run = h.run(Z3Command::Backup(backup())).await;
    check_run(
        &run,
        ExitStatus::Error,
        &[
            "Nothing to backup for filesystem \"pool/fs\"",
            "SNAPSHOT_PREFIX=\"daily\"",
        ],
    );
}

#[tokio::test]
async fn zfs_not_installed_says_install_it_or_set_zfs_command() {
    let h = Harness::new(|_| {});
    let h = h.with_zfs(Arc::new(ZfsCli::with_program("/nonexistent/z3/zfs")));
    let run = h.run(Z3Command::Backup(backup())).await;
    check_run(
        &run,
        ExitStatus::Error,
        &[
            "`/nonexistent/z3/zfs` not found",
            "install ZFS (e.g. zfsutils-linux), or set ZFS_COMMAND to the zfs program's path",
        ],
    );
}

#[tokio::test]
async fn zfs_as_a_user_says_run_as_root() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("zfs");
    // What OpenZFS prints to a user without /dev/zfs access.
    std::fs::write(
        &program,
        "#!/bin/sh\necho 'Permission denied the ZFS utilities must be run as root.' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let h = Harness::new(|_| {});
    let h = h.with_zfs(Arc::new(ZfsCli::with_program(program)));
    let run = h.run(Z3Command::Backup(backup())).await;
    check_run(
        &run,
        ExitStatus::Error,
        &[
            "must be run as root",
            "run z3 as root, or delegate with `zfs allow`",
        ],
    );
}

#[tokio::test]
async fn a_missing_compressor_program_says_install_it_or_change_compressor() {
    let ini = z3_cli::config::IniFile::parse(
        "[compressor:px]\nCOMPRESS = /nonexistent/z3/pigz -1\nDECOMPRESS = /nonexistent/z3/pigz -d\n",
        None,
    )
    .unwrap();
    let compressors = ini.compressors().unwrap();
    let h = Harness::new(|raw| raw.compressor = Some("px".into()));
    let h = h.other_machine_with(|s| s.compressors = compressors.clone());
    h.zfs.create_dataset("pool/fs").unwrap();
    h.snap("snap1", "one");
    let run = h.run(Z3Command::Backup(backup())).await;
    check_run(
        &run,
        ExitStatus::Error,
        &[
            "program `/nonexistent/z3/pigz` not found on PATH: install it",
            "set COMPRESSOR to a built-in one such as zstd",
        ],
    );
}

#[tokio::test]
async fn a_missing_age_key_file_names_the_setting_and_the_fix() {
    let h = Harness::new(|raw| {
        raw.age_recipients_file = Some("/nonexistent/z3/recipients.txt".into());
    });
    h.snap("snap1", "one");
    let run = h.run(Z3Command::Backup(backup())).await;
    check_run(
        &run,
        ExitStatus::Usage,
        &[
            "AGE_RECIPIENTS_FILE '/nonexistent/z3/recipients.txt'",
            "no such file: fix the path, or write the public keys into it",
        ],
    );
}

#[tokio::test]
async fn a_held_lock_names_the_holder_and_break_lock() {
    let h = Harness::new(|_| {});
    h.snap("snap1", "one");
    h.foreign_lock(now() + 3600);
    let run = h.run(Z3Command::Backup(backup())).await;
    check_run(
        &run,
        ExitStatus::Locked,
        &["other-host (pid 7)", "--break-lock"],
    );
}

//! End to end: the real `z3` binary against a real zfs-fuse pool and a real SeaweedFS server.

use std::os::unix::fs::PermissionsExt;

use z3_s3::ObjectStore;

use crate::support::{RealEnv, assert_no_open_uploads, stderr, stdout, zfs};

/// The main cycle: automatic first full, incremental, status, destroy, restore, byte-identical files.
#[tokio::test]
async fn backup_incremental_status_destroy_restore() {
    let Some(env) = RealEnv::get("backup_incremental_status_destroy_restore") else {
        return;
    };
    let ds = env.dataset("cycle");
    ds.write_random("big.bin", 7 << 20, 1);
    ds.write("hello.txt", "hello z3\n");
    ds.snapshot("snap-1");

    // First run on an empty bucket: a full on its own (original bugs #26/#35 crashed here).
    let out = env.z3(&ds, &["backup"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with(&format!("Successfuly backed up {}@snap-1: ", ds.name))
            && text.ends_with(" M.\n"),
        "{text}"
    );

    std::fs::create_dir(ds.mountpoint().join("dir")).unwrap();
    ds.write("dir/more.txt", "more data\n");
    ds.write_random("big.bin", 3 << 20, 2);
    ds.snapshot("snap-2");
    let expected = ds.files();

    let out = env.z3_with(&ds, &["backup"], &[("COMPRESSOR", "pigz1")]);
    assert!(out.status.success());
    assert!(
        stdout(&out).starts_with(&format!("Successfuly backed up {}@snap-2: ", ds.name)),
        "{}",
        stdout(&out)
    );
    // Nothing left to do: exit 0, nothing on stdout.
    let out = env.z3(&ds, &["backup"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "");

    let out = env.z3(&ds, &["status"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "backup status for {}@snap* on {}/{}",
            ds.name, env.bucket, ds.prefix
        )
    );
    assert!(lines[1].starts_with("NAME   | PARENT | TYPE        | HEALTH | LOCAL STATE | SIZE"));
    assert!(lines[2].starts_with("snap-1 |        | full        | ok     | ok          |"));
    assert!(lines[3].starts_with("snap-2 | snap-1 | incremental | ok     | ok          |"));
    assert_eq!(lines.len(), 4);

    let store = env.store().await;
    let meta = store.head(&ds.key("snap-2")).await.unwrap().metadata;
    assert_eq!(
        meta.get("parent").map(String::as_str),
        Some(format!("{}@snap-1", ds.name).as_str())
    );
    assert_eq!(meta.get("compressor").map(String::as_str), Some("pigz1"));
    let meta = store.head(&ds.key("snap-1")).await.unwrap().metadata;
    assert_eq!(meta.get("isfull").map(String::as_str), Some("true"));

    ds.destroy();
    let out = env.z3(&ds, &["restore", "snap-2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ds.files(), expected);
    let snaps = zfs(&["list", "-H", "-t", "snapshot", "-o", "name", "-r", &ds.name]);
    assert_eq!(
        snaps.lines().collect::<Vec<_>>(),
        [format!("{}@snap-1", ds.name), format!("{}@snap-2", ds.name)]
    );
    // Restoring what is already there is a no-op.
    let out = env.z3(&ds, &["restore", "snap-2"]);
    assert!(out.status.success());
    assert_no_open_uploads(&store, &ds.prefix).await;
}

/// zstd → pigz1 → none → gzip → zstd19: each object is decoded by its own metadata, pigz's output
/// in-process.
#[tokio::test]
async fn mixed_compressor_chain_restores() {
    let Some(env) = RealEnv::get("mixed_compressor_chain_restores") else {
        return;
    };
    let ds = env.dataset("mixed");
    let chain = ["zstd", "pigz1", "none", "gzip", "zstd19"];
    for (i, compressor) in chain.iter().enumerate() {
        ds.write(
            &format!("file-{i}.txt"),
            &format!("generation {i}\n").repeat(10_000),
        );
        ds.snapshot(&format!("snap-{i}"));
        let out = env.z3(&ds, &["backup", "--compressor", compressor]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let expected = ds.files();
    let store = env.store().await;
    let compressors: Vec<Option<String>> = futures_collect(&store, &ds, chain.len()).await;
    let zstd = Some("zstd".to_owned());
    assert_eq!(
        compressors,
        [
            zstd.clone(),
            Some("pigz1".to_owned()),
            None,
            Some("gzip".to_owned()),
            zstd
        ]
    );

    ds.destroy();
    let out = env.z3(&ds, &["restore", "snap-4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ds.files(), expected);
}

/// zstd + age on the real pool and server: full then incremental, objects are age files that only
/// the identity opens, a restore without it is refused before receiving, and with it is exact.
#[tokio::test]
async fn zstd_and_age_backup_restores_with_the_identity() {
    use age::secrecy::ExposeSecret;
    let Some(env) = RealEnv::get("zstd_and_age_backup_restores_with_the_identity") else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let identity = age::x25519::Identity::generate();
    let identity_file = keys.path().join("backup-key.txt");
    std::fs::write(
        &identity_file,
        format!("{}\n", identity.to_string().expose_secret()),
    )
    .unwrap();
    let public = identity.to_public().to_string();
    let ds = env.dataset("sealed");
    for i in 0..2 {
        ds.write(
            &format!("secret-{i}.txt"),
            &format!("confidential {i}\n").repeat(20_000),
        );
        ds.snapshot(&format!("snap-{i}"));
        let out = env.z3(
            &ds,
            &["backup", "--compressor", "zstd", "--age-recipient", &public],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let expected = ds.files();
    let store = env.store().await;
    for i in 0..2 {
        let key = ds.key(&format!("snap-{i}"));
        let info = store.head(&key).await.unwrap();
        assert_eq!(
            info.metadata.get("encryption").map(String::as_str),
            Some("age")
        );
        assert_eq!(
            info.metadata.get("compressor").map(String::as_str),
            Some("zstd")
        );
        let body = store.get_range(&key, 0..info.size).await.unwrap();
        assert!(body.starts_with(b"age-encryption.org/v1\n"), "{key}");
        assert!(
            !body.windows(12).any(|w| w == b"confidential"),
            "{key} holds plaintext"
        );
    }

    ds.destroy();
    let out = env.z3(&ds, &["restore", "snap-1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--age-identity"), "{}", stderr(&out));
    let out = env.z3(
        &ds,
        &[
            "restore",
            "snap-1",
            "--age-identity",
            identity_file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ds.files(), expected);
}

async fn futures_collect(
    store: &z3_s3::AwsStore,
    ds: &crate::support::TestDataset,
    n: usize,
) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for i in 0..n {
        let info = store.head(&ds.key(&format!("snap-{i}"))).await.unwrap();
        out.push(info.metadata.get("compressor").cloned());
    }
    out
}

/// `--force` rolls a modified dataset back; without it zfs receive refuses and z3 says so.
#[tokio::test]
async fn restore_force_rolls_back_local_changes() {
    let Some(env) = RealEnv::get("restore_force_rolls_back_local_changes") else {
        return;
    };
    let ds = env.dataset("force");
    ds.write("a.txt", "one\n");
    ds.snapshot("snap-1");
    assert!(env.z3(&ds, &["backup"]).status.success());
    ds.write("a.txt", "two\n");
    ds.snapshot("snap-2");
    assert!(env.z3(&ds, &["backup"]).status.success());
    let expected = ds.files();

    ds.destroy();
    assert!(env.z3(&ds, &["restore", "snap-1"]).status.success());
    ds.write("local-change.txt", "diverged\n");

    let out = env.z3(&ds, &["restore", "snap-2"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("restore of {}@snap-2", ds.name)),
        "{err}"
    );
    assert!(err.contains("modified since most recent snapshot"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let out = env.z3(&ds, &["restore", "snap-2", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ds.files(), expected);
}

/// A chain whose middle object is gone is refused by restore and backup, with exit code 3.
#[tokio::test]
async fn broken_chain_is_refused() {
    let Some(env) = RealEnv::get("broken_chain_is_refused") else {
        return;
    };
    let ds = env.dataset("broken");
    for i in 1..=3 {
        ds.write("f.txt", &format!("{i}\n"));
        ds.snapshot(&format!("snap-{i}"));
    }
    assert!(env.z3(&ds, &["backup"]).status.success());
    let store = env.store().await;
    store.delete(&ds.key("snap-2")).await.unwrap();

    let out = env.z3(&ds, &["status"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stdout(&out).contains("snap-3 | snap-2 | incremental | missing parent |"));

    ds.destroy();
    let out = env.z3(&ds, &["restore", "snap-3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        stderr(&out).trim_end(),
        format!(
            "z3: error: Broken snapshot detected {}@snap-3, reason: 'missing parent'",
            ds.name
        )
    );
    // Nothing was received.
    let listed = std::process::Command::new("zfs")
        .args(["list", "-H", "-o", "name", &ds.name])
        .output()
        .unwrap();
    assert!(!listed.status.success());
}

/// `zfs send` dying mid-stream: z3 fails and no object appears; the upload stays open with its
/// journal (ADR 4), and the next run resumes it and leaves no upload open.
#[tokio::test]
async fn failing_zfs_send_leaves_no_object_and_the_next_run_resumes() {
    let Some(env) = RealEnv::get("failing_zfs_send_leaves_no_object_and_the_next_run_resumes")
    else {
        return;
    };
    let ds = env.dataset("sendfail");
    ds.write_random("big.bin", 12 << 20, 7);
    ds.snapshot("snap-1");

    // A stand-in zfs that cuts real `zfs send` streams after 6,000,000 bytes and fails, like a
    // send killed mid-stream. Estimates (-n) and everything else go to the real zfs.
    let dir = tempfile::tempdir().unwrap();
    let wrapper = stand_in_zfs(dir.path(), "exit 1");

    let out = env.z3_with(
        &ds,
        &["backup"],
        &[("ZFS_COMMAND", wrapper.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("backup of {}@snap-1 failed", ds.name)),
        "{err}"
    );
    assert!(err.contains("zfs send"), "{err}");
    assert_eq!(stdout(&out), "");

    let store = env.store().await;
    let head = store.head(&ds.key("snap-1")).await;
    assert!(
        head.as_ref()
            .is_err_and(|e| e.kind() == z3_s3::ErrorKind::NotFound),
        "{head:?}"
    );
    assert!(
        err.contains("left open for the next run to resume"),
        "{err}"
    );
    assert_eq!(
        store
            .list_multipart_uploads(&ds.prefix)
            .await
            .unwrap()
            .len(),
        1
    );

    // The real zfs then backs it up fine, resuming that upload.
    let out = env.z3(&ds, &["backup"]);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("parts were already stored"),
        "{}",
        stderr(&out)
    );
    assert_no_open_uploads(&store, &ds.prefix).await;
}

/// A missing bucket and a wrong secret: one line each, exit 1, the secret never printed.
#[tokio::test]
async fn missing_bucket_and_wrong_credentials_are_one_line_errors() {
    let Some(env) = RealEnv::get("missing_bucket_and_wrong_credentials_are_one_line_errors") else {
        return;
    };
    let ds = env.dataset("badcfg");
    let out = env.z3_with(&ds, &["status"], &[("BUCKET", "z3-no-such-bucket")]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("z3: error: "), "{err}");
    assert!(err.contains("z3-no-such-bucket"), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    assert!(err.contains("create the bucket, or fix BUCKET"), "{err}");

    let out = env.z3_with(
        &ds,
        &["status"],
        &[("S3_SECRET", "wrong-secret-do-not-print")],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.to_lowercase().contains("access denied"), "{err}");
    assert!(err.contains("check S3_KEY_ID and S3_SECRET"), "{err}");
    assert!(!err.contains("wrong-secret-do-not-print"), "{err}");
    assert!(!err.contains(&env.secret), "{err}");
}

/// SIGINT (then SIGTERM) in the middle of a backup whose `zfs send` has stalled: no object
/// appears, the upload is left open for the next run with a journal naming it (ADR 4), the
/// stand-in send is killed, and z3 exits 128 + signal.
#[tokio::test]
async fn a_signal_during_backup_leaves_a_journaled_upload_and_no_object() {
    let Some(env) = RealEnv::get("a_signal_during_backup_leaves_a_journaled_upload_and_no_object")
    else {
        return;
    };
    let ds = env.dataset("signal");
    ds.write_random("big.bin", 12 << 20, 9);
    ds.snapshot("snap-1");
    // A stand-in zfs whose send delivers 6,000,000 bytes and then hangs (the shell becomes the
    // `sleep`, so killing z3's child ends it).
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("send.pid");
    let wrapper = stand_in_zfs(
        dir.path(),
        &format!("echo $$ > '{}'\n  exec sleep 300", pid_file.display()),
    );
    let store = env.store().await;
    // The third run has its stderr closed: the message fails to print, the cleanup must not.
    for (signal, code, closed_stderr) in [
        (libc_signal::SIGINT, 130, false),
        (libc_signal::SIGTERM, 143, false),
        (libc_signal::SIGINT, 130, true),
    ] {
        let mut child = Reaped(
            env.z3_command(
                &ds,
                &["backup", "--compressor", "none"],
                &[
                    ("ZFS_COMMAND", wrapper.to_str().unwrap()),
                    ("CHUNK_SIZE", "5M"),
                ],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        );
        if closed_stderr {
            drop(child.0.stderr.take());
        }
        // The stand-in send has stalled (it wrote its pid) and the upload is open. The pid file
        // of the run before is gone, and the upload may be its (a resumed one): wait for both.
        let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
        while std::fs::read_to_string(&pid_file).map_or(true, |pid| !pid.ends_with('\n')) {
            assert!(
                std::time::Instant::now() < deadline,
                "the send never stalled"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        wait_for_upload(&store, &ds.prefix).await;
        let pid = child.0.id().to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
        let out = child.wait_with_output();
        let err = stderr(&out);
        eprintln!("{err}");
        assert_eq!(out.status.code(), Some(code), "{err}");
        let name = if code == 130 { "SIGINT" } else { "SIGTERM" };
        if !closed_stderr {
            assert!(err.contains(&format!("interrupted by {name}")), "{err}");
            assert!(
                err.contains("left open for the next run to resume"),
                "{err}"
            );
        }
        let head = store.head(&ds.key("snap-1")).await;
        assert!(
            head.as_ref()
                .is_err_and(|e| e.kind() == z3_s3::ErrorKind::NotFound),
            "{head:?}"
        );
        // The one open upload is the one the journal names (ADR 4): each run resumes it.
        crate::support::assert_one_journaled_upload(&store, &ds, "snap-1").await;
        // The stand-in `zfs send` (z3's child, now a `sleep`) was killed, not left behind.
        let send = std::fs::read_to_string(&pid_file).unwrap();
        std::fs::remove_file(&pid_file).unwrap();
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", send.trim()));
        assert!(
            stat.as_ref().map_or(true, |s| s.contains(") Z ")),
            "zfs send still running: {stat:?}"
        );
    }
    // And the real zfs backs it up fine afterwards, resuming the journaled upload.
    assert!(env.z3(&ds, &["backup"]).status.success());
    assert_no_open_uploads(&store, &ds.prefix).await;
}

/// A stand-in `zfs` in `dir`: estimates (`-n`) and every command but `send` go to the real
/// zfs; `send` passes the first 6,000,000 bytes of the real stream and then runs `after_send`
/// (shell text, e.g. `exit 1` for a send that fails, `exec sleep 300` for one that hangs).
fn stand_in_zfs(dir: &std::path::Path, after_send: &str) -> std::path::PathBuf {
    let wrapper = dir.join("zfs");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \" $* \" in *\" -n\"*) exec zfs \"$@\";; esac\nif [ \"$1\" = send ]; then\n  zfs \"$@\" | head -c 6000000\n  {after_send}\nfi\nexec zfs \"$@\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

/// Waits up to a minute until a multipart upload is open under `prefix`: the backup is under way.
async fn wait_for_upload(store: &z3_s3::AwsStore, prefix: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
    while store
        .list_multipart_uploads(prefix)
        .await
        .unwrap()
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the upload never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A child process that is killed if the test fails before it is waited for.
struct Reaped(std::process::Child);

impl Reaped {
    /// Waits up to a minute (then the test fails and the child is killed).
    fn wait_with_output(mut self) -> std::process::Output {
        let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
        while self.0.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "z3 did not exit within a minute of the signal"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let child = std::mem::replace(
            &mut self.0,
            std::process::Command::new("true").spawn().unwrap(),
        );
        child.wait_with_output().unwrap()
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Signal numbers for `kill -N`.
mod libc_signal {
    pub(crate) const SIGINT: i32 = 2;
    pub(crate) const SIGTERM: i32 = 15;
}

/// ZFS allows spaces and ':' in names: they go through zfs, S3 keys, metadata and back without a
/// shell ever seeing them.
#[tokio::test]
async fn names_with_spaces_and_colons_work_end_to_end() {
    let Some(env) = RealEnv::get("names_with_spaces_and_colons_work_end_to_end") else {
        return;
    };
    let ds = env.dataset("my data: x");
    ds.write("first.txt", "one\n");
    ds.snapshot("snap daily:1");
    ds.write("second file.txt", &"two\n".repeat(1000));
    ds.snapshot("snap daily:2");
    let out = env.z3(&ds, &["backup"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("Successfuly backed up {}@snap daily:2", ds.name)),
        "{}",
        stdout(&out)
    );
    let out = env.z3(&ds, &["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("snap daily:2"), "{}", stdout(&out));
    let store = env.store().await;
    let info = store.head(&ds.key("snap daily:2")).await.unwrap();
    assert_eq!(
        info.metadata.get("parent").map(String::as_str),
        Some(format!("{}@snap daily:1", ds.name).as_str())
    );
    let expected = ds.files();
    ds.destroy();
    let out = env.z3(&ds, &["restore", "snap daily:2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ds.files(), expected);
}

/// Arguments, extra environment, whether the run succeeds.
type SecretRun<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, bool);

/// Neither the secret key nor an age identity shows up in any output, even with every log
/// level on (z3's `-vvv` and the SDK's own tracing through `RUST_LOG=trace`), in success and failure.
#[tokio::test]
async fn secrets_never_appear_in_output_even_at_trace_level() {
    use age::secrecy::ExposeSecret;
    let Some(env) = RealEnv::get("secrets_never_appear_in_output_even_at_trace_level") else {
        return;
    };
    let ds = env.dataset("secrets");
    ds.write("a.txt", "data\n");
    ds.snapshot("snap-1");
    let keys = tempfile::tempdir().unwrap();
    let identity = age::x25519::Identity::generate();
    let identity_file = keys.path().join("key.txt");
    let secret_key = identity.to_string().expose_secret().to_owned();
    std::fs::write(&identity_file, format!("{secret_key}\n")).unwrap();
    let public = identity.to_public().to_string();
    let identity_arg = identity_file.to_str().unwrap();
    let trace = [("RUST_LOG", "trace")];
    let runs: Vec<SecretRun<'_>> = vec![
        (vec!["-vvv", "status"], trace.to_vec(), true),
        (
            vec!["-vvv", "backup", "--age-recipient", &public],
            trace.to_vec(),
            true,
        ),
        (
            vec![
                "-vvv",
                "restore",
                "--dry-run",
                "--age-identity",
                identity_arg,
                "snap-1",
            ],
            trace.to_vec(),
            true,
        ),
        // A wrong secret: the failure message must not quote it either.
        (
            vec!["-vvv", "status"],
            vec![("RUST_LOG", "trace"), ("S3_SECRET", "wrong-secret-Zq8vX2")],
            false,
        ),
    ];
    for (args, extra, ok) in runs {
        let out = env.z3_with(&ds, &args, &extra);
        assert_eq!(out.status.success(), ok, "{args:?}: {}", stderr(&out));
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            all.contains("TRACE") || all.contains("DEBUG"),
            "{args:?}: no log output"
        );
        for secret in [
            env.secret.as_str(),
            "wrong-secret-Zq8vX2",
            secret_key.as_str(),
        ] {
            assert!(!all.contains(secret), "{args:?} printed a secret");
        }
    }
}

/// Two `z3 backup` processes for one dataset on the real server: the second exits 4 naming the
/// first; once the first is stopped (SIGINT) its lock is gone and a backup goes through.
#[tokio::test]
async fn a_second_concurrent_backup_is_refused_by_the_lock() {
    let Some(env) = RealEnv::get("a_second_concurrent_backup_is_refused_by_the_lock") else {
        return;
    };
    let ds = env.dataset("locked");
    ds.write_random("big.bin", 12 << 20, 3);
    ds.snapshot("snap-1");
    let dir = tempfile::tempdir().unwrap();
    let wrapper = stand_in_zfs(dir.path(), "exec sleep 300");
    let store = env.store().await;
    let first = Reaped(
        env.z3_command(
            &ds,
            &["backup", "--compressor", "none"],
            &[("ZFS_COMMAND", wrapper.to_str().unwrap())],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap(),
    );
    wait_for_upload(&store, &ds.prefix).await;
    let lock_key = format!("{}.z3-locks/{}", ds.prefix, ds.name);
    assert!(
        store.head(&lock_key).await.is_ok(),
        "no lock object at {lock_key}"
    );

    let second = env.z3(&ds, &["backup"]);
    assert_eq!(second.status.code(), Some(4), "{}", stderr(&second));
    let err = stderr(&second);
    assert!(
        err.contains(&format!("pid {}", first.0.id())) && err.contains("--break-lock"),
        "{err}"
    );

    let pid = first.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = first.wait_with_output();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let gone = store.head(&lock_key).await;
    assert!(
        gone.as_ref()
            .is_err_and(|e| e.kind() == z3_s3::ErrorKind::NotFound),
        "lock left behind: {gone:?}"
    );
    let out = env.z3(&ds, &["backup"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        store.head(&lock_key).await.is_err(),
        "lock left after success"
    );
}

/// The seal holds the BLAKE3 of exactly what `zfs send` writes; `z3 verify` reads it back; a
/// flipped byte in the bucket is named by verify and refused by restore before zfs receive
/// commits (on zfs-fuse: our digest message, not zfs's checksum error, and no snapshot).
#[tokio::test]
async fn seals_hold_the_send_stream_digest_and_corruption_is_never_received() {
    let Some(env) =
        RealEnv::get("seals_hold_the_send_stream_digest_and_corruption_is_never_received")
    else {
        return;
    };
    let ds = env.dataset("sealed");
    ds.write_random("data.bin", 3 << 20, 77);
    ds.snapshot("snap-1");
    let out = env.z3(&ds, &["backup"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let sent = std::process::Command::new("zfs")
        .args(["send", &format!("{}@snap-1", ds.name)])
        .output()
        .unwrap();
    assert!(sent.status.success());
    let store = env.store().await;
    let token = store.head(&ds.key("snap-1")).await.unwrap().metadata["z3-upload"].clone();
    let seal_key = format!("{}.z3-seals/{}@snap-1@{token}", ds.prefix, ds.name);
    let text = store.get_range(&seal_key, 0..4096).await.unwrap();
    let seal = z3_core::Seal::parse(std::str::from_utf8(&text).unwrap()).unwrap();
    assert_eq!(seal.stream.len, sent.stdout.len() as u64);
    assert_eq!(seal.stream.blake3, *blake3::hash(&sent.stdout).as_bytes());

    let out = env.z3(&ds, &["verify", "--all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(": 1 ok, 0 failed, 0 not downloaded"),
        "{}",
        stdout(&out)
    );

    // Bit rot in the bucket: same length, same metadata.
    let key = ds.key("snap-1");
    let info = store.head(&key).await.unwrap();
    let mut body = store.get_range(&key, 0..info.size).await.unwrap().to_vec();
    let middle = body.len() / 2;
    body[middle] ^= 0x10;
    let options = z3_s3::PutOptions {
        metadata: info.metadata.clone(),
        ..z3_s3::PutOptions::default()
    };
    store.put(&key, body.into(), &options).await.unwrap();

    let out = env.z3(&ds, &["verify", "snap-1"]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(
        stdout(&out).starts_with(&format!(
            "FAILED   {}@snap-1  full  the stored object does not match its seal",
            ds.name
        )),
        "{}",
        stdout(&out)
    );

    ds.destroy();
    let out = env.z3(&ds, &["restore", "snap-1"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("the zfs stream of {key} does not match its seal")),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let listed = std::process::Command::new("zfs")
        .args([
            "list", "-H", "-t", "snapshot", "-o", "name", "-r", &env.pool,
        ])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&listed.stdout).contains(&format!("{}@snap-1", ds.name)),
        "the corrupt stream was committed"
    );
    assert_no_open_uploads(&store, &ds.prefix).await;
}

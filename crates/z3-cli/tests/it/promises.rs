//! Issue 12, end to end: exit statuses that tell the truth when stdout is closed, signals that
//! stop a restore whose `zfs receive` stopped reading, and child processes that never see a
//! secret.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{RealEnv, stderr, zfs};

/// Runs `cmd` with its stdout a pipe whose read end is closed before the program writes, and
/// `input` on stdin.
pub(crate) fn with_closed_stdout(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stdin = child.stdin.take().unwrap();
    // The program may exit (or stop reading) before it reads everything.
    let _ = stdin.write_all(input);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "$ {} {:?} (stdout closed) -> {:?}\n{}",
        cmd.get_program().display(),
        cmd.get_args().collect::<Vec<_>>(),
        out.status.code(),
        stderr(&out)
    );
    out
}

fn assert_fails_cleanly(out: &Output, what: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{what}: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert_eq!(err.lines().count(), 1, "{what}: {err}");
}

/// Each command that could not write its results exits 1 with one line; `status` exits 0.
#[tokio::test]
async fn a_closed_stdout_fails_every_command_but_status() {
    let Some(env) = RealEnv::get("a_closed_stdout_fails_every_command_but_status") else {
        return;
    };
    let ds = env.dataset("closedout");
    ds.write_random("a.bin", 1 << 20, 41);
    ds.snapshot("snap-1");

    // Before: exit 0, though nobody learnt that the backup happened.
    let out = with_closed_stdout(&mut env.z3_command(&ds, &["backup"], &[]), b"");
    assert_fails_cleanly(&out, "backup");
    assert!(
        stderr(&out).contains("standard output was closed before the results were written"),
        "{}",
        stderr(&out)
    );
    // The backup itself is whole (only its report was lost).
    let out = env.z3(&ds, &["backup"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = with_closed_stdout(&mut env.z3_command(&ds, &["status"], &[]), b"");
    assert_eq!(out.status.code(), Some(0), "status: {}", stderr(&out));
    assert_eq!(stderr(&out), "");

    let out = with_closed_stdout(&mut env.z3_command(&ds, &["verify", "--all"], &[]), b"");
    assert_fails_cleanly(&out, "verify");

    ds.destroy();
    let out = with_closed_stdout(&mut env.z3_command(&ds, &["restore", "snap-1"], &[]), b"");
    assert_fails_cleanly(&out, "restore");

    let key = format!("{}pput-closed", ds.prefix);
    let out = with_closed_stdout(
        env.command(env!("CARGO_BIN_EXE_pput"))
            .args(["--quiet", &key]),
        b"some bytes",
    );
    assert_fails_cleanly(&out, "pput");
    assert!(
        stderr(&out).contains("was uploaded, but its result line could not be written"),
        "{}",
        stderr(&out)
    );

    let out = with_closed_stdout(
        env.command(env!("CARGO_BIN_EXE_z3_get"))
            .args(["--quiet", &key]),
        b"",
    );
    assert_fails_cleanly(&out, "z3_get");
}

/// A child that is killed if the test fails before it exited.
struct Reaped(Child);

impl Reaped {
    /// Waits up to `bound`; `None` if the child is still running then.
    fn wait_for(&mut self, bound: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to a minute for `path` to hold a line.
fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text.trim().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` is gone (or a zombie).
/// Whether process `pid` is gone (or a zombie) within 5 s: SIGKILL is delivered
/// asynchronously, so on a busy machine the receiver z3 killed may still be dying when z3 exits.
fn is_gone(pid: &str) -> bool {
    let dead = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !dead() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// A stand-in `zfs` in `dir` whose `receive` writes its pid and then never reads its input
/// (a stalled pool, a hung disk); everything else goes to the real zfs.
fn stalled_receive_zfs(dir: &Path, pid_file: &Path) -> PathBuf {
    let wrapper = dir.join("zfs");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ \"$1\" = receive ]; then\n  echo $$ > '{}'\n  exec sleep 300\nfi\nexec zfs \"$@\"\n",
            pid_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

/// SIGTERM / SIGINT while `zfs receive` stopped reading (our write to it blocks): the restore
/// stops within 20 s with 143 / 130, the receiver is killed, nothing is committed.
#[test]
fn a_signal_stops_a_restore_whose_receiver_stopped_reading() {
    let Some(env) = RealEnv::get("a_signal_stops_a_restore_whose_receiver_stopped_reading") else {
        return;
    };
    let ds = env.dataset("stalledrecv");
    // Far more than the 1 MiB pipe plus the 5 MiB the pump holds before writing.
    ds.write_random("big.bin", 24 << 20, 43);
    ds.snapshot("snap-1");
    let out = env.z3(&ds, &["backup"]);
    assert!(out.status.success(), "{}", stderr(&out));
    ds.destroy();
    for (signal, code) in [("-TERM", 143), ("-INT", 130)] {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("receive.pid");
        let wrapper = stalled_receive_zfs(dir.path(), &pid_file);
        let mut child = Reaped(
            env.z3_command(
                &ds,
                &["restore", "snap-1"],
                &[("ZFS_COMMAND", wrapper.to_str().unwrap())],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        );
        let receiver = wait_for_file(&pid_file);
        // Let the pipe fill and the write block (the restore has nowhere else to wait).
        std::thread::sleep(Duration::from_secs(2));
        assert!(child.0.try_wait().unwrap().is_none(), "z3 exited early");
        let status = Command::new("kill")
            .args([signal, &child.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        // Before: z3 waited on the blocked write until the receiver's `sleep 300` ended.
        let exited = child.wait_for(Duration::from_secs(20));
        let mut err = String::new();
        if let Some(mut pipe) = child.0.stderr.take() {
            std::io::Read::read_to_string(&mut pipe, &mut err).unwrap();
        }
        let exited = exited.unwrap_or_else(|| panic!("z3 ignored {signal} for 20 s: {err}"));
        assert_eq!(exited.code(), Some(code), "{err}");
        assert!(
            err.contains("was killed before it committed anything"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(is_gone(&receiver), "zfs receive {receiver} still running");
        let listed = Command::new("zfs")
            .args(["list", "-H", "-o", "name", &ds.name])
            .output()
            .unwrap();
        assert!(!listed.status.success(), "{} was created", ds.name);
    }
    // The real zfs then restores it.
    let out = env.z3(&ds, &["restore", "snap-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let _ = zfs(&["list", &ds.name]);
}

/// A stand-in `zfs` and a `[compressor:dump]` that write their environment to files: a backup
/// with S3 credentials, AWS session variables and age settings in z3's environment hands none
/// of them (names or values) to either child.
#[test]
fn child_processes_get_no_secret_in_their_environment() {
    let Some(env) = RealEnv::get("child_processes_get_no_secret_in_their_environment") else {
        return;
    };
    let ds = env.dataset("secretenv");
    ds.write_random("a.bin", 1 << 20, 47);
    ds.snapshot("snap-1");
    let dir = tempfile::tempdir().unwrap();
    let script = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    };
    let zfs_dump = script(
        "zfs",
        format!(
            "#!/bin/sh\nenv > '{}/zfs-env-'$$\nexec zfs \"$@\"\n",
            dir.path().display()
        ),
    );
    let compress = script(
        "dump-compress",
        format!(
            "#!/bin/sh\nenv > '{}/compressor-env'\nexec cat\n",
            dir.path().display()
        ),
    );
    let config = dir.path().join("z3.conf");
    std::fs::write(
        &config,
        format!(
            "[compressor:dump]\nCOMPRESS = {}\nDECOMPRESS = cat\n",
            compress.display()
        ),
    )
    .unwrap();
    let identity = dir.path().join("marker-identity-file");
    let secrets = [
        ("AWS_SECRET_ACCESS_KEY", "marker-aws-secret-value"),
        ("AWS_SESSION_TOKEN", "marker-aws-session-value"),
        (
            "AGE_RECIPIENTS",
            "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
        ),
        ("AGE_IDENTITY_FILE", identity.to_str().unwrap()),
    ];
    let mut extra = vec![
        ("ZFS_COMMAND", zfs_dump.to_str().unwrap()),
        ("Z3_CONFIG", config.to_str().unwrap()),
    ];
    extra.extend(secrets);
    let out = env.z3_with(&ds, &["backup", "--compressor", "dump"], &extra);
    assert!(out.status.success(), "{}", stderr(&out));

    let mut dumps = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with("-env") && !name.starts_with("zfs-env-") {
            continue;
        }
        dumps += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        // Before: every one of these was inherited.
        for (i, needle) in [
            env.secret.as_str(),
            env.key_id.as_str(),
            "S3_SECRET",
            "S3_KEY_ID",
            "AGE_",
        ]
        .into_iter()
        .chain(secrets.iter().flat_map(|(k, v)| [*k, *v]))
        .enumerate()
        {
            // Neither the value nor the dump is printed: they hold the test's credentials.
            assert!(
                !text.contains(needle),
                "{name} holds secret #{i} of the list"
            );
        }
        // The rest of the environment is passed on.
        assert!(text.contains("PATH="), "{name} has no PATH");
    }
    assert!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .any(|e| e.unwrap().file_name() == "compressor-env"),
        "the compressor never ran"
    );
    assert!(dumps >= 3, "zfs ran {} times", dumps - 1);
}

//! `z3_ssh_sync` end to end: a real `sshd` started by the test on 127.0.0.1 with throw-away host
//! and user keys, pushing and pulling between datasets of the zfs-fuse pool.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{RealEnv, TestDataset, stderr, stdout, zfs};

const SSHD: &str = "/usr/sbin/sshd";

/// An `sshd` of the test's own, stopped (by its PID) on drop.
struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Sshd {
    fn start() -> Self {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: `cargo xtask ci` installs openssh-server"
        );
        let dir = tempfile::tempdir().unwrap();
        let keygen = |file: &str| {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "z3-test", "-f"])
                .arg(dir.path().join(file))
                .status()
                .unwrap();
            assert!(status.success(), "ssh-keygen failed");
        };
        keygen("host_key");
        keygen("user_key");
        std::fs::copy(
            dir.path().join("user_key.pub"),
            dir.path().join("authorized_keys"),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\nPubkeyAuthentication yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nLogLevel ERROR\n",
            dir = dir.path().display()
        );
        std::fs::write(dir.path().join("sshd_config"), config).unwrap();
        let host_key = std::fs::read_to_string(dir.path().join("host_key.pub")).unwrap();
        std::fs::write(
            dir.path().join("known_hosts"),
            format!("[127.0.0.1]:{port} {host_key}"),
        )
        .unwrap();
        // The privilege separation directory, which Debian creates at boot.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let sshd = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        sshd
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// `z3_ssh_sync` with the ssh flags that reach this server, then `args`.
    fn sync(&self, args: &[&str]) -> Output {
        let output = self.sync_command(args).output().unwrap();
        eprintln!(
            "$ z3_ssh_sync {} -> {:?}\n--- stdout\n{}--- stderr\n{}",
            args.join(" "),
            output.status.code(),
            stdout(&output),
            stderr(&output)
        );
        output
    }

    /// The command [`Sshd::sync`] runs, not started.
    fn sync_command(&self, args: &[&str]) -> Command {
        let known = format!("UserKnownHostsFile={}", self.path("known_hosts").display());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_z3_ssh_sync"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("Z3_CONFIG", "/dev/null")
            .args(["--ssh-port", &self.port.to_string(), "--ssh-identity"])
            .arg(self.path("user_key"))
            .args(["--ssh-option", &known])
            .args(["--ssh-option", "StrictHostKeyChecking=yes"])
            .args(["--ssh-option", "BatchMode=yes"])
            .args(["--ssh-option", "IdentitiesOnly=yes"])
            .args(["--snapshot-prefix", "snap-"])
            .args(args)
            .arg("root@127.0.0.1");
        cmd
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn snapshots(dataset: &str) -> Vec<String> {
    zfs(&["list", "-H", "-t", "snapshot", "-o", "name", "-r", dataset])
        .lines()
        .filter_map(|l| l.split_once('@').map(|(_, s)| s.to_owned()))
        .collect()
}

/// A dataset name that does not exist yet (the sync creates it), destroyed at the end.
fn not_yet(env: &RealEnv, name: &str) -> TestDataset {
    TestDataset {
        name: format!("{}/{name} {}", env.pool, std::process::id()),
        prefix: String::new(),
    }
}

#[test]
fn push_full_then_incremental_then_noop_pull_and_dry_run_over_real_ssh() {
    let Some(env) =
        RealEnv::get("push_full_then_incremental_then_noop_pull_and_dry_run_over_real_ssh")
    else {
        return;
    };
    let sshd = Sshd::start();
    let src = env.dataset("sync-src");
    // The destination's name needs quoting for the remote shell.
    let dst = not_yet(&env, "sync dst");
    src.write_random("a.bin", 1 << 20, 1);
    src.snapshot("snap-1");
    src.write("b.txt", "second\n");
    src.snapshot("snap-2");
    let remote = [
        "--dataset",
        src.name.as_str(),
        "--remote-dataset",
        dst.name.as_str(),
    ];

    // Empty destination: the latest snapshot, full.
    let out = sshd.sync(&remote);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!(
            "Sent {}@snap-2 (full) to root@127.0.0.1:{}@snap-2: ",
            src.name, dst.name
        )),
        "{}",
        stdout(&out)
    );
    assert_eq!(snapshots(&dst.name), ["snap-2"]);
    // What operators do with a replica: reading it must not "modify" it (atime), or the next
    // incremental is refused (see a_failing_remote_receive_fails_the_sync).
    zfs(&["set", "readonly=on", &dst.name]);
    assert_eq!(dst.files(), src.files());

    // Two more: each sent incrementally.
    src.write_random("c.bin", 1 << 20, 2);
    src.snapshot("snap-3");
    src.write("b.txt", "changed\n");
    src.snapshot("snap-4");
    let out = sshd.sync(&remote);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 2, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("@snap-4 (incremental from snap-3) to root@127.0.0.1:"),
        "{}",
        stdout(&out)
    );
    assert_eq!(snapshots(&dst.name), ["snap-2", "snap-3", "snap-4"]);
    assert_eq!(dst.files(), src.files());

    // Up to date (the remote zfs through sudo this time).
    let out = sshd.sync(&[&remote[..], &["--sudo"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "Nothing to do here.\n");
    assert_eq!(stdout(&out), "");

    // A dry run sends nothing.
    src.snapshot("snap-5");
    let out = sshd.sync(&[&remote[..], &["--dry-run"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "would send {}@snap-5 (incremental from snap-4) to root@127.0.0.1:{}@snap-5\n",
            src.name, dst.name
        )
    );
    assert_eq!(snapshots(&dst.name), ["snap-2", "snap-3", "snap-4"]);

    // Pull the remote dataset into a third one here.
    let back = not_yet(&env, "sync back");
    let out = sshd.sync(&[
        "--pull",
        "--dataset",
        &back.name,
        "--remote-dataset",
        &dst.name,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(snapshots(&back.name), ["snap-4"]);
    assert_eq!(back.files(), dst.files());
}

/// A remote `zfs receive` that fails (the destination was modified since its latest snapshot)
/// fails the command with zfs's message; nothing is committed.
#[test]
fn a_failing_remote_receive_fails_the_sync() {
    let Some(env) = RealEnv::get("a_failing_remote_receive_fails_the_sync") else {
        return;
    };
    let sshd = Sshd::start();
    let src = env.dataset("sync-fail-src");
    let dst = not_yet(&env, "sync-fail-dst");
    src.write("a.txt", "one\n");
    src.snapshot("snap-1");
    let remote = [
        "--dataset",
        src.name.as_str(),
        "--remote-dataset",
        dst.name.as_str(),
    ];
    assert!(sshd.sync(&remote).status.success());
    src.write("a.txt", "two\n");
    src.snapshot("snap-2");
    dst.write("local-change.txt", "diverged\n");
    let out = sshd.sync(&remote);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.starts_with(&format!("z3_ssh_sync: error: sending {}@snap-2 (incremental from snap-1) to root@127.0.0.1:{}@snap-2 failed", src.name, dst.name)), "{err}");
    assert!(err.contains("modified since most recent snapshot"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(snapshots(&dst.name), ["snap-1"]);
}

/// A sync whose stdout is closed cannot report what it sent: exit 1, one line, no panic (it
/// exited 0 before). The snapshot itself was sent.
#[test]
fn a_closed_stdout_fails_the_sync() {
    let Some(env) = RealEnv::get("a_closed_stdout_fails_the_sync") else {
        return;
    };
    let sshd = Sshd::start();
    let src = env.dataset("sync-closed-src");
    let dst = not_yet(&env, "sync-closed-dst");
    src.write("a.txt", "one\n");
    src.snapshot("snap-1");
    let remote = [
        "--dataset",
        src.name.as_str(),
        "--remote-dataset",
        dst.name.as_str(),
    ];
    let out = crate::promises::with_closed_stdout(&mut sshd.sync_command(&remote), b"");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("standard output was closed before the results were written"),
        "{err}"
    );
    assert_eq!(snapshots(&dst.name), ["snap-1"]);
}

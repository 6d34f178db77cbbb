//! Faults in the processes around z3: `zfs send` killed, `zfs receive` failing, the receiving
//! pool full, and the S3 server killed mid-upload and restarted.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use z3_s3::{AwsStore, ObjectStore};

use crate::support::{RealEnv, TestDataset, assert_no_open_uploads, stderr, zfs};
use crate::{Reaped, assert_absent, assert_clear_failure, plumbing, prefix, pseudo_random};
use crate::{read_back, tally};

/// A stand-in `zfs` in `dir`: estimates (`-n`) and every other command go to the real zfs;
/// `send` is cut after 6,000,000 bytes and then runs `after_send`; `receive`, when
/// `receive` is given, runs that shell text instead of the real one.
fn stand_in_zfs(dir: &Path, after_send: &str, receive: Option<&str>) -> PathBuf {
    let wrapper = dir.join("zfs");
    let receive = receive.map_or(String::new(), |text| {
        format!("if [ \"$1\" = receive ]; then\n  {text}\nfi\n")
    });
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \" $* \" in *\" -n\"*) exec zfs \"$@\";; esac\nif [ \"$1\" = send ]; then\n  zfs \"$@\" | head -c 6000000\n  {after_send}\nfi\n{receive}exec zfs \"$@\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

/// Whether `name` (a dataset or snapshot) exists.
fn exists(name: &str) -> bool {
    Command::new("zfs")
        .args(["list", "-H", "-o", "name", "-t", "all", name])
        .env("LC_ALL", "C")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// `zfs send` killed (SIGKILL) after 6,000,000 bytes: the backup fails naming the snapshot and
/// `zfs send`, no object appears, and the upload is left open with a journal naming its stored
/// part (ADR 4); the next backup resumes it, and leaves no upload and no journal behind.
#[tokio::test]
async fn zfs_send_killed_mid_stream_leaves_no_object_and_a_journaled_upload() {
    let Some(env) =
        RealEnv::get("zfs_send_killed_mid_stream_leaves_no_object_and_a_journaled_upload")
    else {
        return;
    };
    let ds = env.dataset("sendkilled");
    ds.write_random("big.bin", 12 << 20, 23);
    ds.snapshot("snap-1");
    let dir = tempfile::tempdir().unwrap();
    let wrapper = stand_in_zfs(dir.path(), "kill -KILL $$", None);
    let out = env.z3_with(
        &ds,
        &["backup", "--compressor", "none"],
        &[
            ("ZFS_COMMAND", wrapper.to_str().unwrap()),
            ("CHUNK_SIZE", "5M"),
        ],
    );
    assert_clear_failure(
        &out,
        "z3",
        1,
        &[
            &format!("backup of {}@snap-1 failed", ds.name),
            "left open for the next run to resume (1 of its parts journaled)",
            "zfs send",
            "SIGKILL",
        ],
    );
    let store = env.store().await;
    assert_absent(&store, &ds.key("snap-1")).await;
    crate::support::assert_one_journaled_upload(&store, &ds, "snap-1").await;
    let out = env.z3(&ds, &["backup"]);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("1 parts were already stored"),
        "{}",
        stderr(&out)
    );
    assert_no_open_uploads(&store, &ds.prefix).await;
    assert!(
        crate::support::journal_of(&store, &ds, "snap-1")
            .await
            .is_none()
    );
    tally(
        "zfs_send_killed_mid_stream_leaves_no_object_and_a_journaled_upload",
        1,
        0,
    );
}

/// `zfs receive` reads 1,000,000 bytes and fails: the restore fails naming the snapshot and
/// zfs's message, nothing is committed; with the real zfs the restore is exact.
#[tokio::test]
async fn failing_zfs_receive_commits_nothing() {
    let Some(env) = RealEnv::get("failing_zfs_receive_commits_nothing") else {
        return;
    };
    let ds = env.dataset("recvfail");
    ds.write_random("big.bin", 12 << 20, 29);
    ds.write("note.txt", "receive me\n");
    ds.snapshot("snap-1");
    assert!(env.z3(&ds, &["backup"]).status.success());
    let expected = ds.files();
    ds.destroy();
    let dir = tempfile::tempdir().unwrap();
    let wrapper = stand_in_zfs(
        dir.path(),
        "exit 1",
        Some(
            "head -c 1000000 > /dev/null\n  echo 'cannot receive: injected failure' >&2\n  exit 1",
        ),
    );
    let out = env.z3_with(
        &ds,
        &["restore", "snap-1"],
        &[("ZFS_COMMAND", wrapper.to_str().unwrap())],
    );
    assert_clear_failure(
        &out,
        "z3",
        1,
        &[
            &format!("restore of {}@snap-1", ds.name),
            "injected failure",
        ],
    );
    assert!(
        !exists(&ds.name),
        "{} exists after a failed receive",
        ds.name
    );
    let out = env.z3(&ds, &["restore", "snap-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(ds.files() == expected, "restored files differ");
    tally("failing_zfs_receive_commits_nothing", 1, 1);
}

/// A small file-backed pool of this test's own, destroyed on drop.
struct SmallPool {
    name: String,
    _dir: tempfile::TempDir,
}

impl SmallPool {
    fn create(megabytes: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("small.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(megabytes << 20)
            .unwrap();
        let name = format!("z3full{}", std::process::id());
        let mountpoint = dir.path().join("mnt");
        let status = Command::new("zpool")
            .arg("create")
            .arg("-m")
            .arg(&mountpoint)
            .arg(&name)
            .arg(&image)
            .status()
            .unwrap();
        assert!(status.success(), "zpool create {name} failed");
        Self { name, _dir: dir }
    }

    fn available(&self) -> u64 {
        zfs(&["get", "-H", "-p", "-o", "value", "available", &self.name])
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for SmallPool {
    fn drop(&mut self) {
        // zfs-fuse unmounts asynchronously and reports the pool busy meanwhile.
        for _ in 0..50 {
            let ok = Command::new("zpool")
                .args(["destroy", "-f", &self.name])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("could not destroy pool {}", self.name);
    }
}

/// The receiving pool fills up mid-restore: the restore fails with zfs's message and no
/// snapshot is committed. A copy of the data keeps 60% of the pool busy while a backup of the
/// same size is received next to it.
#[tokio::test]
async fn full_receiving_pool_fails_cleanly() {
    let Some(env) = RealEnv::get("full_receiving_pool_fails_cleanly") else {
        return;
    };
    let pool = SmallPool::create(96);
    let size = usize::try_from(pool.available() * 6 / 10).unwrap();
    let ds = TestDataset {
        name: format!("{}/src", pool.name),
        prefix: prefix("full-pool"),
    };
    zfs(&["create", &ds.name]);
    ds.write_random("big.bin", size, 31);
    ds.snapshot("snap-1");
    let extra = [("COMPRESSOR", "none"), ("CHUNK_SIZE", "5M")];
    let out = env.z3_with(&ds, &["backup"], &extra);
    assert!(out.status.success(), "{}", stderr(&out));
    // The source stays on the pool; the backup is copied to the key of another dataset
    // (zfs-fuse cannot rename a mounted dataset), and that one is restored next to it.
    let target = TestDataset {
        name: format!("{}/dst", pool.name),
        prefix: ds.prefix.clone(),
    };
    let store = env.store().await;
    store
        .client()
        .copy_object()
        .bucket(&env.bucket)
        .copy_source(format!(
            "{}/{}",
            env.bucket,
            ds.key("snap-1").replace('@', "%40")
        ))
        .key(target.key("snap-1"))
        .send()
        .await
        .unwrap();
    // A copy under another name has no seal of its own (z3 refuses it by default, exit 3).
    let out = env.z3_with(&target, &["restore", "snap-1"], &extra);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("is unsealed"), "{}", stderr(&out));
    let out = env.z3_with(&target, &["restore", "--allow-unsealed", "snap-1"], &extra);
    assert_clear_failure(
        &out,
        "z3",
        1,
        &[
            &format!("restore of {}@snap-1", target.name),
            "zfs receive",
            "out of space",
        ],
    );
    assert!(
        !exists(&format!("{}@snap-1", target.name)),
        "a partial snapshot was committed"
    );
    assert_no_open_uploads(&store, &ds.prefix).await;
    tally("full_receiving_pool_fails_cleanly", 1, 0);
}

/// A `weed mini` of this test's own, on free ports, with its own data directory.
struct OwnWeed {
    binary: PathBuf,
    dir: PathBuf,
    base: u16,
    config: PathBuf,
    child: Option<Child>,
}

impl OwnWeed {
    /// The `weed` binary: `Z3_TEST_WEED`, `PATH`, or the venv `cargo xtask services` installs.
    fn binary() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("Z3_TEST_WEED") {
            return Some(PathBuf::from(path));
        }
        let on_path = std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("weed"))
                .find(|candidate| candidate.is_file())
        });
        on_path.or_else(|| {
            let venv =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/venv/bin/weed");
            venv.is_file().then_some(venv)
        })
    }

    fn start(binary: PathBuf, dir: &Path, env: &RealEnv) -> Self {
        let config = dir.join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"admin","credentials":[{{"accessKey":"{}","secretKey":"{}"}}],"actions":["Admin","Read","List","Tagging","Write"]}}]}}"#,
                env.key_id, env.secret
            ),
        )
        .unwrap();
        let mut weed = Self {
            binary,
            dir: dir.join("data"),
            base: free_port_block(10),
            config,
            child: None,
        };
        std::fs::create_dir_all(&weed.dir).unwrap();
        weed.run();
        weed
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.base)
    }

    /// Starts the server (again) and waits until S3 answers.
    fn run(&mut self) {
        let port = |i: u16| (self.base + i).to_string();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("weed.log"))
            .unwrap();
        let names = [
            "s3.port",
            "s3.port.grpc",
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "admin.port",
            "admin.port.grpc",
        ];
        let mut cmd = Command::new(&self.binary);
        cmd.arg("mini")
            .arg(format!("-dir={}", self.dir.display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
            ]);
        for (i, name) in (0..).zip(names) {
            cmd.arg(format!("-{name}={}", port(i)));
        }
        let child = cmd
            .args([
                "-webdav=false",
                "-admin.ui=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ])
            .arg("-s3.autoCreateBucket=false")
            .arg(format!("-s3.config={}", self.config.display()))
            .arg(format!(
                "-s3.localSocket={}",
                self.dir.join("s3.sock").display()
            ))
            .arg(format!(
                "-filer.localSocket={}",
                self.dir.join("filer.sock").display()
            ))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.base).into();
        let deadline = Instant::now() + Duration::from_mins(1);
        while !http_answers(addr) {
            assert!(Instant::now() < deadline, "own SeaweedFS did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL, and reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnWeed {
    fn drop(&mut self) {
        self.kill();
    }
}

fn http_answers(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(std::io::Read::read(&mut stream, &mut buf), Ok(n) if n > 0 && buf.starts_with(b"HTTP/"))
}

/// `count` consecutive free ports on 127.0.0.1, probed from a base derived from the pid.
fn free_port_block(count: u16) -> u16 {
    let start = 41_000 + u16::try_from(std::process::id() % 997).unwrap() * 16;
    (0..200u16)
        .map(|i| 20_000 + (start - 20_000 + i * 37) % 40_000)
        .find(|&base| (0..count).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()))
        .expect("no block of free ports on 127.0.0.1")
}

/// Creates `bucket` on a freshly started server, retrying while it settles.
async fn create_bucket(store: &AwsStore, bucket: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match store.client().create_bucket().bucket(bucket).send().await {
            Ok(_) => return,
            Err(err) => {
                assert!(Instant::now() < deadline, "create bucket: {err:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Waits until a multipart upload is open under `prefix`.
async fn wait_for_upload(store: &AwsStore, prefix: &str) {
    let deadline = Instant::now() + Duration::from_mins(1);
    while store
        .list_multipart_uploads(prefix)
        .await
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the upload never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SeaweedFS killed (SIGKILL) while `pput` is mid-upload and restarted on the same data: the
/// upload either completes with the exact bytes (its parts are retried across the restart) or
/// fails with one line; afterwards no upload is open and no other object exists.
#[tokio::test]
async fn s3_server_killed_mid_upload_and_restarted() {
    let Some(env) = RealEnv::get("s3_server_killed_mid_upload_and_restarted") else {
        return;
    };
    let Some(binary) = OwnWeed::binary() else {
        assert!(
            std::env::var_os("Z3_REQUIRE_INTEGRATION").is_none(),
            "no weed binary (set Z3_TEST_WEED)"
        );
        eprintln!("skipping: no weed binary");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut weed = OwnWeed::start(binary, dir.path(), &env);
    let own = RealEnv {
        endpoint: weed.endpoint(),
        bucket: format!("z3-faults-{}", std::process::id()),
        ..env.clone()
    };
    let store = own.store().await;
    create_bucket(&store, &own.bucket).await;

    let prefix = prefix("server-killed");
    let key = format!("{prefix}object");
    let data = pseudo_random(12 << 20, 37);
    let mut child = Reaped(
        plumbing(
            &own,
            env!("CARGO_BIN_EXE_pput"),
            &own.endpoint,
            &["--quiet", &key],
            &[("CHUNK_SIZE", "5M"), ("MAX_RETRIES", "10")],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let mut stdin = child.0.stdin.take().unwrap();
    stdin.write_all(&data[..6 << 20]).unwrap();
    wait_for_upload(&store, &prefix).await;
    weed.kill();
    let rest = data[6 << 20..].to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&rest);
    });
    weed.run();
    let out = child.wait_with_output(Duration::from_mins(2));
    writer.join().unwrap();
    eprintln!("$ pput -> {:?}\n{}", out.status.code(), stderr(&out));
    // A new client: the old one's pooled connections died with the server.
    let store = own.store().await;
    if out.status.success() {
        assert!(read_back(&store, &key).await == data, "{key} differs");
    } else {
        assert_clear_failure(
            &out,
            "pput",
            1,
            &[&format!("upload to {}/{key} failed", own.bucket)],
        );
        assert_absent(&store, &key).await;
    }
    assert_no_open_uploads(&store, &prefix).await;
    let listed = store.list(&prefix).await.unwrap();
    assert!(listed.len() <= 1, "{listed:?}");
    tally(
        "s3_server_killed_mid_upload_and_restarted",
        1,
        usize::from(out.status.success()),
    );
}

//! Harness for the end-to-end suite: the real pool and S3 server that `cargo xtask ci` starts.
//!
//! Tests read `Z3_TEST_ZPOOL` and `Z3_TEST_S3_{ENDPOINT,KEY_ID,SECRET,BUCKET}`. Without them they skip,
//! unless `Z3_REQUIRE_INTEGRATION` is set (as in CI), where skipping would hide a broken setup.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use z3_s3::{AwsStore, ObjectStore, S3Config, StaticCredentials};

/// The `XDG_CACHE_HOME` of the binaries this test process runs: their status cache files stay
/// out of the real cache directories.
pub(crate) fn test_cache_dir() -> PathBuf {
    std::env::temp_dir().join(format!("z3-it-cache-{}", std::process::id()))
}

/// The services under test.
#[derive(Debug, Clone)]
pub(crate) struct RealEnv {
    pub(crate) pool: String,
    pub(crate) endpoint: String,
    pub(crate) key_id: String,
    pub(crate) secret: String,
    pub(crate) bucket: String,
}

impl RealEnv {
    /// The services, or `None` (after saying why) when the suite is not configured.
    pub(crate) fn get(test: &str) -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let (Some(pool), Some(endpoint), Some(key_id), Some(secret), Some(bucket)) = (
            var("Z3_TEST_ZPOOL"),
            var("Z3_TEST_S3_ENDPOINT"),
            var("Z3_TEST_S3_KEY_ID"),
            var("Z3_TEST_S3_SECRET"),
            var("Z3_TEST_S3_BUCKET"),
        ) {
            return Some(Self {
                pool,
                endpoint,
                key_id,
                secret,
                bucket,
            });
        }
        assert!(
            std::env::var_os("Z3_REQUIRE_INTEGRATION").is_none(),
            "{test}: Z3_REQUIRE_INTEGRATION is set but the Z3_TEST_* variables are not"
        );
        eprintln!(
            "skipping {test}: run through `cargo xtask ci` (needs Z3_TEST_ZPOOL and Z3_TEST_S3_*)"
        );
        None
    }

    /// The same pool with moto's S3 server (`Z3_TEST_MOTO_ENDPOINT`, same bucket name, any
    /// credentials) instead of SeaweedFS; `None` (after saying why) when it is not configured,
    /// a failure when `Z3_REQUIRE_INTEGRATION` is set.
    #[allow(dead_code)] // tests/faults shares this file and runs on SeaweedFS only
    pub(crate) fn on_moto(&self, test: &str) -> Option<Self> {
        if let Some(endpoint) = std::env::var("Z3_TEST_MOTO_ENDPOINT")
            .ok()
            .filter(|v| !v.is_empty())
        {
            return Some(Self {
                endpoint,
                ..self.clone()
            });
        }
        assert!(
            std::env::var_os("Z3_REQUIRE_INTEGRATION").is_none(),
            "{test}: Z3_REQUIRE_INTEGRATION is set but Z3_TEST_MOTO_ENDPOINT is not"
        );
        eprintln!("skipping {test}: run through `cargo xtask ci` (needs Z3_TEST_MOTO_ENDPOINT)");
        None
    }

    /// A fresh dataset `<pool>/<name>-<n>`, destroyed when dropped.
    pub(crate) fn dataset(&self, name: &str) -> TestDataset {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let full = format!("{}/{name}-{}-{n}", self.pool, std::process::id());
        zfs(&["create", &full]);
        TestDataset {
            name: full.clone(),
            prefix: format!("e2e-{}-{n}-{name}/", std::process::id()),
        }
    }

    /// An S3 client for checking what the tests left in the bucket.
    pub(crate) async fn store(&self) -> AwsStore {
        AwsStore::connect(self.s3_config(&self.bucket))
            .await
            .unwrap()
    }

    pub(crate) fn s3_config(&self, bucket: &str) -> S3Config {
        S3Config {
            bucket: bucket.to_owned(),
            region: Some("us-east-1".into()),
            endpoint: Some(self.endpoint.clone()),
            force_path_style: true,
            credentials: Some(StaticCredentials {
                access_key_id: self.key_id.clone(),
                secret_access_key: self.secret.clone(),
            }),
            ..S3Config::default()
        }
    }

    /// `z3 ARGS` for `dataset`, configured through the environment only.
    pub(crate) fn z3(&self, dataset: &TestDataset, args: &[&str]) -> Output {
        self.z3_with(dataset, args, &[])
    }

    /// `z3 ARGS` with extra environment variables.
    pub(crate) fn z3_with(
        &self,
        dataset: &TestDataset,
        args: &[&str],
        extra: &[(&str, &str)],
    ) -> Output {
        let output = output_within(&mut self.z3_command(dataset, args, extra));
        eprintln!(
            "$ z3 {} -> {:?}\n--- stdout\n{}--- stderr\n{}",
            args.join(" "),
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// `program` with a clean environment holding only `PATH`, no config file, and this S3
    /// server's bucket, credentials and endpoint; not started.
    pub(crate) fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("Z3_CONFIG", "/dev/null")
            // The status cache in a directory of this test run, not /var/cache/z3 or ~/.cache.
            .env("XDG_CACHE_HOME", test_cache_dir())
            .env("BUCKET", &self.bucket)
            .env("S3_KEY_ID", &self.key_id)
            .env("S3_SECRET", &self.secret)
            .env("S3_ENDPOINT", &self.endpoint);
        cmd
    }

    /// The `z3 ARGS` command, configured through the environment only, not started.
    pub(crate) fn z3_command(
        &self,
        dataset: &TestDataset,
        args: &[&str],
        extra: &[(&str, &str)],
    ) -> Command {
        let mut cmd = self.command(env!("CARGO_BIN_EXE_z3"));
        cmd.args(args)
            .env("FILESYSTEM", &dataset.name)
            .env("S3_PREFIX", &dataset.prefix)
            .env("SNAPSHOT_PREFIX", "snap")
            .env("COMPRESSOR", "none");
        for (key, value) in extra {
            cmd.env(key, value);
        }
        cmd
    }
}

/// A dataset of the test pool plus its own key prefix.
#[derive(Debug)]
pub(crate) struct TestDataset {
    pub(crate) name: String,
    pub(crate) prefix: String,
}

impl TestDataset {
    pub(crate) fn mountpoint(&self) -> PathBuf {
        PathBuf::from(zfs(&["get", "-H", "-o", "value", "mountpoint", &self.name]).trim())
    }

    pub(crate) fn snapshot(&self, snap: &str) {
        zfs(&["snapshot", &format!("{}@{snap}", self.name)]);
    }

    /// `zfs destroy -r`, retried while zfs-fuse still reports the dataset busy (it unmounts
    /// asynchronously).
    pub(crate) fn destroy(&self) {
        destroy_retrying(&self.name).unwrap();
    }

    pub(crate) fn key(&self, snap: &str) -> String {
        format!("{}{}@{snap}", self.prefix, self.name)
    }

    /// Writes `len` pseudo-random (incompressible) bytes to `file`.
    pub(crate) fn write_random(&self, file: &str, len: usize, seed: u64) {
        let mut state = seed | 1;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        std::fs::write(self.mountpoint().join(file), data).unwrap();
    }

    pub(crate) fn write(&self, file: &str, text: &str) {
        std::fs::write(self.mountpoint().join(file), text).unwrap();
    }

    /// Every file's content, by relative path.
    pub(crate) fn files(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        collect(&self.mountpoint(), &self.mountpoint(), &mut out);
        out
    }
}

impl Drop for TestDataset {
    fn drop(&mut self) {
        let _ = destroy_retrying(&self.name);
    }
}

/// Releases the holds z3 put on snapshots under `name` (a policy holds the bases of future
/// backups), found by the `z3:hold:<tag>` user property z3 marks them with; errors are ignored.
pub(crate) fn release_z3_holds(name: &str) {
    let Ok(listing) = Command::new("zfs")
        .args([
            "get",
            "-H",
            "-o",
            "name,property",
            "-s",
            "local",
            "-r",
            "all",
            name,
        ])
        .env("LC_ALL", "C")
        .output()
    else {
        return;
    };
    for line in String::from_utf8_lossy(&listing.stdout).lines() {
        if let Some((snapshot, property)) = line.split_once('\t')
            && let Some(tag) = property.strip_prefix("z3:hold:")
        {
            let _ = Command::new("zfs")
                .args(["release", tag, snapshot])
                .env("LC_ALL", "C")
                .output();
        }
    }
}

/// `zfs destroy -r name` after releasing z3's holds, retried while zfs-fuse says busy.
pub(crate) fn destroy_retrying(name: &str) -> Result<(), String> {
    release_z3_holds(name);
    let mut last = String::new();
    for _ in 0..50 {
        let output = Command::new("zfs")
            .args(["destroy", "-r", name])
            .env("LC_ALL", "C")
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            return Ok(());
        }
        last = String::from_utf8_lossy(&output.stderr).into_owned();
        if last.contains("does not exist") {
            return Ok(());
        }
        if !last.contains("busy") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Err(format!("zfs destroy -r {name} failed: {last}"))
}

fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(root, &path, out);
        } else {
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            out.insert(rel, std::fs::read(&path).unwrap());
        }
    }
}

/// Runs `zfs ARGS` and returns stdout; panics with stderr on failure.
pub(crate) fn zfs(args: &[&str]) -> String {
    let output = output_within(Command::new("zfs").args(args).env("LC_ALL", "C"));
    assert!(
        output.status.success(),
        "zfs {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// How long one command of the suite may run before it counts as hung.
const HANG_LIMIT: std::time::Duration = std::time::Duration::from_mins(5);

/// Runs `cmd` to completion like [`Command::output`], but a command still running after
/// [`HANG_LIMIT`] fails the test with a process listing (who waits on what) instead of hanging
/// the suite: a hang in CI then names its cause. The command is killed first.
pub(crate) fn output_within(cmd: &mut Command) -> Output {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {}: {err}", cmd.get_program().display()));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > HANG_LIMIT {
            let listing = Command::new("ps")
                .args(["-eo", "pid,ppid,stat,wchan:24,etime,args"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} {:?} still ran after {HANG_LIMIT:?}; killed. Processes then:\n{listing}",
                cmd.get_program().display(),
                cmd.get_args().collect::<Vec<_>>()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The journal of an interrupted backup of `dataset@snap`, if there is one (ADR 4).
#[allow(dead_code)] // not every test binary that includes this file resumes
pub(crate) async fn journal_of(
    store: &AwsStore,
    dataset: &TestDataset,
    snap: &str,
) -> Option<z3_engine::journal::Journal> {
    let key = format!("{}.z3-journal/{}@{snap}", dataset.prefix, dataset.name);
    let retry = z3_s3::RetryConfig::default();
    let body = z3_s3::read_small(store, &key, 4 << 20, &retry)
        .await
        .unwrap()?;
    Some(z3_engine::journal::Journal::parse(&body).expect("a journal z3 can read"))
}

/// The one open upload under the dataset's prefix is the one the journal of `dataset@snap`
/// names.
#[allow(dead_code)] // not every test binary that includes this file resumes
pub(crate) async fn assert_one_journaled_upload(
    store: &AwsStore,
    dataset: &TestDataset,
    snap: &str,
) {
    let journal = journal_of(store, dataset, snap).await.expect("a journal");
    let open = store.list_multipart_uploads(&dataset.prefix).await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(
        open[0].upload_id.as_str(),
        journal.upload_id,
        "the journal names the open upload"
    );
}

/// No open multipart upload under `prefix`.
pub(crate) async fn assert_no_open_uploads(store: &AwsStore, prefix: &str) {
    let open = store.list_multipart_uploads(prefix).await.unwrap();
    assert!(open.is_empty(), "open multipart uploads left: {open:?}");
}

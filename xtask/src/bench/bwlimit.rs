//! `cargo xtask bench bwlimit`: does `BWLIMIT` hold? `pput` uploads and `z3_get` downloads
//! incompressible data through SeaweedFS on 127.0.0.1 at several limits (4 parts in flight, as
//! a real backup has several), and the achieved rate (bytes over wall time, start to exit) is
//! compared with the limit. The target is within 10% of it; a miss prints `MISSED` but does not
//! fail the command, like the other suites. Each run moves about `SECONDS` worth of data at its
//! limit, so connection setup is a small part of the time.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::{Machine, Options, Suite, first_line, git_commit, step, write_doc_section};
use crate::services::{self, Services};

/// The limits measured, in MiB/s.
const LIMITS_MIB: &[u64] = &[2, 8, 32];
/// How long each run should take at its limit.
const SECONDS: u64 = 6;
/// The allowed deviation of the achieved rate from the limit.
const TOLERANCE: f64 = 0.10;

/// One direction at one limit.
struct Measured {
    limit_mib: u64,
    direction: &'static str,
    bytes: u64,
    secs: f64,
}

impl Measured {
    fn rate_mib(&self) -> f64 {
        self.bytes as f64 / self.secs / (1024.0 * 1024.0)
    }

    fn deviation(&self) -> f64 {
        self.rate_mib() / self.limit_mib as f64 - 1.0
    }
}

/// Runs the suite.
pub(crate) fn bwlimit(root: &Path, options: &Options) -> Result<()> {
    let release = super::release_dir(root, options, &["--bins"])?;
    let weed = services::ensure_weed(root)?;
    let mut machine = Machine::probe()?;
    machine.versions = vec![
        ("pput", first_line(&release.join("pput"), &["--version"])?),
        ("SeaweedFS", first_line(&weed, &["version"])?),
        ("z3 commit", git_commit(root)),
    ];
    step("starting SeaweedFS on 127.0.0.1");
    let services = Services::start_s3_only(root, &weed)?;
    let dir = services.workdir().to_path_buf();
    let mut results = Vec::new();
    for &limit_mib in LIMITS_MIB {
        let bytes = limit_mib * 1024 * 1024 * SECONDS;
        let data = dir.join(format!("bw-{limit_mib}.bin"));
        make_data(&data, bytes)?;
        let key = format!("bwlimit/{limit_mib}M");
        let limit = format!("{limit_mib}M");
        let z3 = |program: &str| {
            let mut cmd = Command::new(release.join(program));
            cmd.env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("BUCKET", &services.env.bucket)
                .env("S3_KEY_ID", &services.env.key_id)
                .env("S3_SECRET", &services.env.secret)
                .env("S3_ENDPOINT", &services.env.s3_endpoint)
                .env("S3_REGION", "us-east-1")
                .env("Z3_CONFIG", "/dev/null")
                .env("BWLIMIT", &limit)
                .args(["-s", "8M", "--concurrency", "4", "--quiet", &key]);
            cmd
        };
        step(&format!(
            "upload and download of {} MiB at BWLIMIT={limit}",
            bytes >> 20
        ));
        let mut upload = z3("pput");
        upload.stdin(File::open(&data)?).stdout(Stdio::null());
        results.push(Measured {
            limit_mib,
            direction: "upload (pput)",
            bytes,
            secs: timed(upload, "pput")?,
        });
        let copy = dir.join(format!("bw-{limit_mib}.out"));
        let mut download = z3("z3_get");
        download.stdout(File::create(&copy)?);
        results.push(Measured {
            limit_mib,
            direction: "download (z3_get)",
            bytes,
            secs: timed(download, "z3_get")?,
        });
        if fs::read(&copy)? != fs::read(&data)? {
            bail!("the download at {limit} differs from the upload");
        }
        fs::remove_file(&copy)?;
        fs::remove_file(&data)?;
    }
    drop(services);
    let report = report(&machine, &results);
    println!("\n{report}");
    if options.write_doc {
        let path = root.join(super::DOC_PATH);
        write_doc_section(&path, Suite::Bwlimit, &report)?;
        eprintln!("xtask: wrote {}", path.display());
    }
    Ok(())
}

/// `bytes` of incompressible data (from the kernel's generator) in `path`.
fn make_data(path: &Path, bytes: u64) -> Result<()> {
    let mut random = File::open("/dev/urandom")?.take(bytes);
    let mut out = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let copied = std::io::copy(&mut random, &mut out)?;
    out.flush()?;
    if copied != bytes {
        bail!("made {copied} of {bytes} bytes of data");
    }
    Ok(())
}

/// Wall seconds of `cmd`, which must succeed.
fn timed(mut cmd: Command, what: &str) -> Result<f64> {
    let start = Instant::now();
    let status = cmd.status().with_context(|| format!("starting {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(start.elapsed().as_secs_f64())
}

fn report(machine: &Machine, results: &[Measured]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## BWLIMIT\n\n{} on {} ({} CPUs). `pput` and `z3_get` (release, `-s 8M --concurrency 4`) \
         through SeaweedFS on 127.0.0.1 with `BWLIMIT` set; rate = bytes / wall time of the \
         process. Target: within {:.0}% of the limit.\n",
        machine.date,
        machine.cpu_model,
        machine.cpus,
        TOLERANCE * 100.0
    );
    let _ = writeln!(
        out,
        "| limit | direction | bytes | seconds | rate | off by | |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for r in results {
        let verdict = if r.deviation().abs() <= TOLERANCE {
            "ok"
        } else {
            "MISSED"
        };
        let _ = writeln!(
            out,
            "| {} MiB/s | {} | {} MiB | {:.2} | {:.2} MiB/s | {:+.1}% | {verdict} |",
            r.limit_mib,
            r.direction,
            r.bytes >> 20,
            r.secs,
            r.rate_mib(),
            r.deviation() * 100.0
        );
    }
    let _ = writeln!(out);
    for (tool, version) in &machine.versions {
        let _ = writeln!(out, "- {tool}: {version}");
    }
    out
}

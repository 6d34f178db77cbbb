//! `cargo xtask bench status`: what the status cache saves on a fleet-sized bucket.
//!
//! Starts SeaweedFS on 127.0.0.1, PUTs `--objects` small objects (100,000 by default) with valid
//! z3 metadata (a full and a chain of incrementals per dataset, 100 datasets) 64 at a time, then
//! times the release `z3` binary: `status --all` and the `status` of one dataset, each with
//! `--no-cache` (one HEAD per object, as before the cache), cold (no cache file: one HEAD per
//! object, and the file written) and warm (a second run: the listing only), taking turns. Every run's JSON
//! output (ages left out, they move with the clock) must be the same in all three modes, or the
//! command fails. The warm `status --all` target is 3 seconds; a miss prints `MISSED`.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{
    Machine, Options, Suite, busy_warning, first_line, git_commit, load_average, step,
    write_doc_section,
};
use crate::services::{self, ServiceEnv, Services};

/// Datasets the objects are spread over.
const DATASETS: usize = 100;
/// PUTs in flight while seeding.
const PUT_CONCURRENCY: usize = 64;
/// The key prefix of the seeded objects.
const PREFIX: &str = "z3bench/";
/// The warm `status --all` target, in seconds.
const WARM_TARGET_SECS: f64 = 3.0;

/// One way of running status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `--no-cache`: one HEAD per object.
    NoCache,
    /// The cache directory removed before each run.
    Cold,
    /// After a run that wrote the cache.
    Warm,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::NoCache, Mode::Cold, Mode::Warm];
}

/// The medians of one command in each mode.
struct Measured {
    what: &'static str,
    objects: usize,
    secs: [f64; 3],
    /// The size of the command's cache file after the warm runs.
    cache_bytes: u64,
}

/// Runs the suite.
pub(crate) fn status(root: &Path, options: &Options) -> Result<()> {
    let release = super::release_dir(root, options, &["--bin", "z3"])?;
    let z3 = release.join("z3");
    let weed = services::ensure_weed(root)?;
    let mut machine = Machine::probe()?;
    machine.versions = vec![
        ("z3", first_line(&z3, &["--version"])?),
        ("SeaweedFS", first_line(&weed, &["version"])?),
        ("z3 commit", git_commit(root)),
    ];
    if let Some(warning) = busy_warning(&machine.load_before, machine.cpus) {
        machine.notes.push(warning);
    }
    step("starting SeaweedFS on 127.0.0.1");
    let services = Services::start_s3_only(root, &weed)?;
    let dir = services.workdir().to_path_buf();
    let objects = options.objects;
    step(&format!(
        "PUT {objects} objects over {DATASETS} datasets, {PUT_CONCURRENCY} at once"
    ));
    let started = Instant::now();
    seed(&services.env, objects)?;
    let seed_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "seeded in {seed_secs:.1} s ({:.0} PUT/s)",
        objects as f64 / seed_secs
    );
    let runner = Runner::new(&z3, &services.env, &dir)?;
    let per_dataset = objects.div_ceil(DATASETS);
    let mut results = Vec::new();
    for (what, dataset, count) in [
        ("`z3 status --all`", None, objects),
        (
            "`z3 status` (one dataset)",
            Some(dataset_name(0)),
            per_dataset,
        ),
    ] {
        step(&format!("{what}: --no-cache, cold, warm"));
        results.push(runner.measure(what, dataset.as_deref(), count, options.rounds)?);
    }
    machine.load_after = load_average();
    drop(services);
    let report = report(&machine, &results, objects, seed_secs, options.rounds);
    println!("\n{report}");
    if options.write_doc {
        let path = root.join(super::DOC_PATH);
        write_doc_section(&path, Suite::Status, &report)?;
        eprintln!("xtask: wrote {}", path.display());
    }
    Ok(())
}

fn dataset_name(index: usize) -> String {
    format!("pool/ds{index:03}")
}

/// The key and metadata of object `i`: dataset `i % DATASETS`, the chain's `i / DATASETS`th
/// snapshot (a full first, then incrementals, each on the one before).
fn object(i: usize) -> (String, Vec<(&'static str, String)>) {
    let (dataset, n) = (dataset_name(i % DATASETS), i / DATASETS);
    let snapshot = |n: usize| format!("{dataset}@snap-{n:05}");
    let mut meta = vec![
        ("size", "1048576".to_owned()),
        ("compressor", "zstd".to_owned()),
    ];
    if n == 0 {
        meta.push(("isfull", "true".to_owned()));
    } else {
        meta.push(("parent", snapshot(n - 1)));
    }
    (format!("{PREFIX}{}", snapshot(n)), meta)
}

/// PUTs `objects` tiny objects with z3 metadata, `PUT_CONCURRENCY` at once; each PUT is
/// retried a few times (the server may stall while it grows a volume).
fn seed(env: &ServiceEnv, objects: usize) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = Arc::new(services::s3_client(env));
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..PUT_CONCURRENCY {
            let (client, next, bucket) =
                (Arc::clone(&client), Arc::clone(&next), env.bucket.clone());
            workers.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= objects {
                        return Ok::<(), anyhow::Error>(());
                    }
                    let (key, meta) = object(i);
                    let mut attempt = 0;
                    loop {
                        let mut put = client
                            .put_object()
                            .bucket(&bucket)
                            .key(&key)
                            .body(aws_sdk_s3::primitives::ByteStream::from_static(b"z3"));
                        for (name, value) in &meta {
                            put = put.metadata(*name, value);
                        }
                        match put.send().await {
                            Ok(_) => break,
                            Err(err) if attempt < 5 => {
                                attempt += 1;
                                let _ = err;
                                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                            }
                            Err(err) => {
                                let text = aws_sdk_s3::error::DisplayErrorContext(&err);
                                bail!("PUT {key}: {text}");
                            }
                        }
                    }
                }
            });
        }
        while let Some(done) = workers.join_next().await {
            done??;
        }
        Ok(())
    })
}

/// Runs the release `z3` against the server, with its cache in a directory of its own.
struct Runner {
    z3: PathBuf,
    env: ServiceEnv,
    cache: PathBuf,
    zfs_stub: PathBuf,
}

impl Runner {
    fn new(z3: &Path, env: &ServiceEnv, dir: &Path) -> Result<Self> {
        // No pool: `status` of one dataset asks `zfs` for local snapshots, and a dataset that
        // does not exist has none. This stand-in answers as `zfs` does for a missing dataset.
        let zfs_stub = dir.join("zfs-missing-dataset");
        fs::write(
            &zfs_stub,
            "#!/bin/sh\nfor a; do last=$a; done\necho \"cannot open '$last': dataset does not exist\" >&2\nexit 1\n",
        )?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(&zfs_stub, fs::Permissions::from_mode(0o755))?;
        }
        Ok(Self {
            z3: z3.to_owned(),
            env: env.clone(),
            cache: dir.join("xdg-cache"),
            zfs_stub,
        })
    }

    /// Wall seconds and the JSON output (ages removed) of one run.
    fn run(&self, dataset: Option<&str>, mode: Mode) -> Result<(f64, serde_json::Value)> {
        if mode == Mode::Cold && self.cache.exists() {
            fs::remove_dir_all(&self.cache)?;
        }
        let mut cmd = Command::new(&self.z3);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("Z3_CONFIG", "/dev/null")
            .env("XDG_CACHE_HOME", &self.cache)
            .env("BUCKET", &self.env.bucket)
            .env("S3_KEY_ID", &self.env.key_id)
            .env("S3_SECRET", &self.env.secret)
            .env("S3_ENDPOINT", &self.env.s3_endpoint)
            .env("S3_REGION", "us-east-1")
            .env("S3_PREFIX", PREFIX)
            .env("SNAPSHOT_PREFIX", "snap-")
            .env("ZFS_COMMAND", &self.zfs_stub)
            .args(["status", "--json"]);
        match dataset {
            Some(dataset) => cmd.env("FILESYSTEM", dataset),
            None => cmd.arg("--all"),
        };
        if mode == Mode::NoCache {
            cmd.arg("--no-cache");
        }
        let start = Instant::now();
        let out = cmd.output().context("starting z3")?;
        let secs = start.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!(
                "z3 status failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let mut json: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("z3 status --json output")?;
        strip_ages(&mut json);
        Ok((secs, json))
    }

    /// The medians over `rounds` runs in each mode; fails when the modes disagree.
    fn measure(
        &self,
        what: &'static str,
        dataset: Option<&str>,
        objects: usize,
        rounds: usize,
    ) -> Result<Measured> {
        // The modes take turns (no cache, cold, warm, no cache, …), so drifting load and a
        // server that grows warmer hit each alike; warm follows the cold run that wrote its file.
        let mut samples: [Vec<f64>; 3] = Default::default();
        let mut first: Option<serde_json::Value> = None;
        for _ in 0..rounds {
            for (slot, mode) in Mode::ALL.into_iter().enumerate() {
                let (took, json) = self.run(dataset, mode)?;
                eprintln!("{what} {mode:?}: {took:.2} s");
                match &first {
                    None => first = Some(json),
                    Some(expected) if *expected != json => {
                        bail!("{what}: the {mode:?} output differs from the --no-cache one")
                    }
                    Some(_) => {}
                }
                samples[slot].push(took);
            }
        }
        let secs = samples.map(|mut s| median(&mut s));
        Ok(Measured {
            what,
            objects,
            secs,
            cache_bytes: self.cache_bytes(),
        })
    }

    /// The size of the cache files there are (the cold runs start without any).
    fn cache_bytes(&self) -> u64 {
        fs::read_dir(self.cache.join("z3"))
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum()
    }
}

/// Removes `age_secs` (it grows with the clock between runs) everywhere in `json`.
fn strip_ages(json: &mut serde_json::Value) {
    match json {
        serde_json::Value::Object(map) => {
            map.remove("age_secs");
            map.values_mut().for_each(strip_ages);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_ages),
        _ => {}
    }
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn report(
    machine: &Machine,
    results: &[Measured],
    objects: usize,
    seed_secs: f64,
    rounds: usize,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Status cache\n\n`z3 status` on {objects} objects ({DATASETS} datasets, {} objects each, \
         tiny bodies with z3 metadata; PUT {PUT_CONCURRENCY} at once in {seed_secs:.0} s) in \
         SeaweedFS on 127.0.0.1; the release binary, wall time of the process, median of each \
         mode's runs. *No cache* is `--no-cache`: one HEAD per object, as every status did before \
         the cache. *Cold* has no cache file: one HEAD per object, then the file is written. \
         *Warm* is the next run: the listing only. All three printed the same JSON (ages aside). \
         Target: warm `status --all` within {WARM_TARGET_SECS:.0} s, cold no slower per object than no cache.\n\n\
         Run with `cargo xtask bench status --objects {objects} --rounds {rounds}`.\n",
        objects.div_ceil(DATASETS)
    );
    let _ = writeln!(
        out,
        "| command | objects | no cache | cold | warm | µs per object (no cache / cold / warm) | cache file | |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for r in results {
        let per = |secs: f64| secs * 1e6 / r.objects.max(1) as f64;
        let [none, cold, warm] = r.secs;
        let verdict = if r.objects < objects {
            "" // the target is the fleet's
        } else if warm <= WARM_TARGET_SECS && cold <= none * 1.10 {
            "ok"
        } else {
            "MISSED"
        };
        let _ = writeln!(
            out,
            "| {} | {} | {none:.2} s | {cold:.2} s | {warm:.2} s | {:.0} / {:.0} / {:.0} | {:.1} MiB | {verdict} |",
            r.what,
            r.objects,
            per(none),
            per(cold),
            per(warm),
            r.cache_bytes as f64 / (1024.0 * 1024.0)
        );
    }
    let _ = writeln!(out);
    machine.write_latest_run(&mut out);
    out
}

//! `cargo xtask bench codecs`: z3's in-process compressors and age encryption against the `zstd`,
//! `pigz` and `age` programs.
//!
//! Two inputs: a tar of `/usr/lib` and `/usr/share` (mixed binaries and text, cut to `--mib`), and a real
//! `zfs send` stream of a zfs-fuse dataset holding the first part of that tar unpacked. Each filter reads the
//! input file on stdin and writes to a pipe that xtask drains and counts (so the drain is not the filter's
//! CPU); GNU time reports each filter's own CPU and peak RSS. Filters take turns, `--rounds` times; medians.
//! z3's stages run through `examples/codec_pipe.rs`, the same `Codec` code `z3 backup` and `restore` run.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::{
    GNU_TIME, Machine, Options, Suite, TIME_FORMAT, busy_warning, deb_version, first_line,
    git_commit, load_average, median, parse_time_report, settle_load, step, write_doc_section,
};
use crate::services::{self, Services, run};

const ZSTD: &str = "/usr/bin/zstd";
const PIGZ: &str = "/usr/bin/pigz";
const TAR: &str = "/usr/bin/tar";
const AGE: &str = "/usr/bin/age";
const AGE_KEYGEN: &str = "/usr/bin/age-keygen";
/// Debian package providing each program the suite runs.
const PACKAGES: &[(&str, &str)] = &[
    ("zstd", ZSTD),
    ("pigz", PIGZ),
    ("age", AGE),
    ("time", GNU_TIME),
];
/// The zfs send input is at most this many MiB (zfs-fuse writes the unpacked files slowly).
const ZFS_MIB: u32 = 512;

/// One filter under test.
#[derive(Debug, Clone)]
struct Filter {
    label: String,
    program: PathBuf,
    args: Vec<String>,
}

fn filter(label: &str, program: &Path, args: &[&str]) -> Filter {
    Filter {
        label: label.to_owned(),
        program: program.to_path_buf(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
    }
}

/// One timed run.
#[derive(Debug, Clone, Copy)]
struct Run {
    secs: f64,
    cpu_secs: f64,
    rss_kib: f64,
    out_bytes: u64,
}

/// Medians of one filter's runs.
#[derive(Debug, Clone)]
struct Row {
    label: String,
    mib_per_s: f64,
    cpu_per_gib: f64,
    ratio: f64,
    rss_mib: f64,
    runs: Vec<f64>,
}

pub(crate) fn codecs(root: &Path, options: &Options) -> Result<()> {
    step("building the codec_pipe example (release)");
    run(crate::cargo().args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "z3-examples",
        "--example",
        "codec_pipe",
    ]))?;
    let pipe = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("release/examples/codec_pipe");

    step("installing missing tools");
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(_, program)| !Path::new(program).exists())
        .map(|(package, _)| *package)
        .collect();
    services::apt_install(&missing)?;
    let weed = services::ensure_weed(root)?;

    step("starting zfs-fuse and a pool");
    let services = Services::start(root, &weed)?;
    let dir = services.workdir().to_path_buf();
    let tar = dir.join("mixed.tar");
    step(&format!(
        "making {} MiB of tar from /usr/lib and /usr/share",
        options.mib
    ));
    make_tar(&tar, u64::from(options.mib) << 20)?;
    let zfs_mib = options.mib.min(ZFS_MIB);
    step(&format!(
        "making a zfs send stream of ~{zfs_mib} MiB of unpacked files"
    ));
    let stream = dir.join("zfs.stream");
    make_zfs_stream(&services, &tar, u64::from(zfs_mib) << 20, &stream)?;

    settle_load();
    let mut machine = Machine::probe()?;
    machine.versions = vec![
        ("zstd", first_line(Path::new(ZSTD), &["--version"])?),
        ("pigz", first_line(Path::new(PIGZ), &["--version"])?),
        (
            "age",
            format!("age {}", first_line(Path::new(AGE), &["--version"])?),
        ),
        (
            "GNU time",
            format!("Debian package time {}", deb_version("time")),
        ),
        ("z3 commit", git_commit(root)),
    ];
    if let Some(warning) = busy_warning(&machine.load_before, machine.cpus) {
        eprintln!("xtask: {warning}");
        machine.notes.push(warning);
    }

    let mut sections = Vec::new();
    for (name, input) in [
        ("tar of /usr/lib and /usr/share", &tar),
        ("zfs send stream", &stream),
    ] {
        sections.push(measure(&pipe, name, input, &dir, options.rounds)?);
    }
    let age = measure_age(&pipe, &tar, &dir, options.rounds)?;
    machine.load_after = load_average();
    drop(services);

    let report = report(&machine, options, &sections, &age);
    println!("\n{report}");
    if options.write_doc {
        let path = root.join(super::DOC_PATH);
        write_doc_section(&path, Suite::Codecs, &report)?;
        eprintln!("xtask: wrote {}", path.display());
    }
    Ok(())
}

/// Compresses and decompresses one input with every filter.
fn measure<'a>(
    pipe: &Path,
    name: &'a str,
    input: &Path,
    dir: &Path,
    rounds_wanted: usize,
) -> Result<Section<'a>> {
    step(&format!("{name}: compressing"));
    let encoders = [
        filter(
            "z3 zstd1 (in-process, 2 threads)",
            pipe,
            &["encode", "zstd1"],
        ),
        filter("zstd -1 -T2", Path::new(ZSTD), &["-1", "-T2", "-c"]),
        filter("z3 zstd (level 3, in-process)", pipe, &["encode", "zstd"]),
        filter(
            "z3 zstd + both seal digests (what z3 backup runs)",
            pipe,
            &["encode-sealed", "zstd"],
        ),
        filter("zstd -3 -T2", Path::new(ZSTD), &["-3", "-T2", "-c"]),
        filter(
            "z3 none + both seal digests (BLAKE3 alone)",
            pipe,
            &["encode-sealed", "none"],
        ),
        filter("z3 gzip (level 6, in-process)", pipe, &["encode", "gzip"]),
        filter(
            "pigz -1 (z3 pigz1)",
            Path::new(PIGZ),
            &["-1", "--blocksize", "4096", "-c"],
        ),
    ];
    let enc = rounds(&encoders, input, dir, rounds_wanted)?;
    step(&format!(
        "{name}: checking every in-process encoder against the programs"
    ));
    cross_check(pipe, input, dir)?;
    step(&format!("{name}: decompressing"));
    let zst = dir.join("input.zst");
    let gz = dir.join("input.gz");
    save_output(
        &filter("", Path::new(ZSTD), &["-1", "-T2", "-c"]),
        input,
        &zst,
    )?;
    save_output(
        &filter("", Path::new(PIGZ), &["-1", "--blocksize", "4096", "-c"]),
        input,
        &gz,
    )?;
    let decoders = [
        (
            filter("z3 zstd -d (in-process)", pipe, &["decode", "zstd"]),
            &zst,
        ),
        (filter("zstd -d", Path::new(ZSTD), &["-d", "-c"]), &zst),
        (
            filter(
                "z3 gzip -d of pigz1 output (in-process)",
                pipe,
                &["decode", "pigz1"],
            ),
            &gz,
        ),
        (filter("pigz -d", Path::new(PIGZ), &["-d", "-c"]), &gz),
    ];
    let dec = decode_rounds(&decoders, input, dir, rounds_wanted)?;
    Ok((name, fs::metadata(input)?.len(), enc, dec))
}

/// age encryption and decryption of the tar (encryption speed does not depend on the data).
fn measure_age(pipe: &Path, input: &Path, dir: &Path, rounds_wanted: usize) -> Result<AgeSection> {
    step("age: a throw-away key");
    let key = dir.join("age-key.txt");
    fs::remove_file(&key).ok();
    run(Command::new(AGE_KEYGEN).arg("-o").arg(&key))?;
    let recipient = first_line(Path::new(AGE_KEYGEN), &["-y", &key.to_string_lossy()])?;
    let key_arg = key.to_string_lossy().into_owned();
    step("age: checking that each side reads the other's files");
    let sealed = dir.join("check.age");
    let opened = dir.join("check.out");
    for (encrypt, decrypt) in [
        (
            filter("z3 age -e", pipe, &["encrypt", &recipient]),
            filter("age -d", Path::new(AGE), &["-d", "-i", &key_arg]),
        ),
        (
            filter("age -e", Path::new(AGE), &["-r", &recipient]),
            filter("z3 age -d", pipe, &["decrypt", &key_arg]),
        ),
    ] {
        save_output(&encrypt, input, &sealed)?;
        save_output(&decrypt, &sealed, &opened)?;
        if !same_file(input, &opened)? {
            bail!(
                "{} output decrypted by {} differs from the input",
                encrypt.label,
                decrypt.label
            );
        }
    }
    fs::remove_file(&opened).ok();
    step("age: encrypting");
    let encrypters = [
        filter("z3 age -e (in-process)", pipe, &["encrypt", &recipient]),
        filter(
            "age -r (the age program)",
            Path::new(AGE),
            &["-r", &recipient],
        ),
    ];
    let enc = rounds(&encrypters, input, dir, rounds_wanted)?;
    step("age: decrypting");
    let decrypters = [
        (
            filter("z3 age -d (in-process)", pipe, &["decrypt", &key_arg]),
            &sealed,
        ),
        (
            filter(
                "age -d (the age program)",
                Path::new(AGE),
                &["-d", "-i", &key_arg],
            ),
            &sealed,
        ),
    ];
    let dec = decode_rounds(&decrypters, input, dir, rounds_wanted)?;
    fs::remove_file(&sealed).ok();
    Ok((fs::metadata(input)?.len(), enc, dec))
}

/// The first `bytes` of `tar -c /usr/lib /usr/share` (unreadable files are skipped).
fn make_tar(path: &Path, bytes: u64) -> Result<()> {
    let mut child = Command::new(TAR)
        .args([
            "-c",
            "--ignore-failed-read",
            "-f",
            "-",
            "-C",
            "/",
            "usr/lib",
            "usr/share",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting tar")?;
    let mut out = child
        .stdout
        .take()
        .context("tar has no stdout")?
        .take(bytes);
    let mut file = File::create(path)?;
    let copied = std::io::copy(&mut out, &mut file)?;
    drop(out);
    let _ = child.kill();
    let _ = child.wait();
    if copied < bytes {
        eprintln!("xtask: /usr/lib and /usr/share only gave {copied} bytes");
    }
    Ok(())
}

/// Unpacks the first `bytes` of the tar into a fresh dataset, snapshots it and saves `zfs send`.
fn make_zfs_stream(services: &Services, tar: &Path, bytes: u64, stream: &Path) -> Result<()> {
    let dataset = format!("{}/bench", services.env.pool);
    run(Command::new("zfs").args(["create", &dataset]))?;
    let mountpoint = String::from_utf8(
        Command::new("zfs")
            .args(["get", "-H", "-o", "value", "mountpoint", &dataset])
            .output()?
            .stdout,
    )?
    .trim()
    .to_owned();
    let mut untar = Command::new(TAR)
        .args(["-x", "-f", "-", "-C", &mountpoint])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting tar -x")?;
    {
        let mut stdin = untar.stdin.take().context("tar has no stdin")?;
        let mut part = File::open(tar)?.take(bytes);
        // tar complains about the cut-off last member; what it unpacked is all we need.
        let _ = std::io::copy(&mut part, &mut stdin);
    }
    let _ = untar.wait();
    run(Command::new("zfs").args(["snapshot", &format!("{dataset}@bench")]))?;
    let out = File::create(stream)?;
    run(Command::new("zfs")
        .args(["send", &format!("{dataset}@bench")])
        .stdout(out))?;
    Ok(())
}

/// Runs `filter` on `input` under GNU time; its stdout is drained (and saved to `save`, if given) by us.
fn timed(filter: &Filter, input: &Path, dir: &Path, save: Option<&Path>) -> Result<Run> {
    let report = dir.join("codec.time");
    let mut cmd = Command::new(GNU_TIME);
    cmd.args(["-f", TIME_FORMAT, "-o"])
        .arg(&report)
        .arg("--")
        .arg(&filter.program)
        .args(&filter.args)
        .stdin(File::open(input).with_context(|| format!("opening {}", input.display()))?)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", filter.label))?;
    let mut stdout = child.stdout.take().context("no stdout")?;
    let mut sink: Box<dyn Write> = match save {
        Some(path) => Box::new(std::io::BufWriter::new(File::create(path)?)),
        None => Box::new(std::io::sink()),
    };
    let mut buf = vec![0; 1 << 20];
    let mut out_bytes = 0;
    loop {
        let n = stdout.read(&mut buf)?;
        if n == 0 {
            break;
        }
        out_bytes += n as u64;
        sink.write_all(&buf[..n])?;
    }
    sink.flush()?;
    let status = child.wait()?;
    let secs = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!("{} failed: {status}", filter.label);
    }
    let (cpu_secs, rss_kib) = parse_time_report(&fs::read_to_string(&report)?)?;
    Ok(Run {
        secs,
        cpu_secs,
        rss_kib,
        out_bytes,
    })
}

fn save_output(filter: &Filter, input: &Path, out: &Path) -> Result<()> {
    timed(
        filter,
        input,
        out.parent().unwrap_or(Path::new(".")),
        Some(out),
    )
    .map(|_| ())
}

/// Every filter `rounds` times, taking turns.
fn rounds(
    filters: &[Filter],
    input: &Path,
    dir: &Path,
    rounds: usize,
) -> Result<Vec<(Filter, Vec<Run>)>> {
    let mut out: Vec<(Filter, Vec<Run>)> =
        filters.iter().map(|f| (f.clone(), Vec::new())).collect();
    for round in 1..=rounds {
        for (filter, runs) in &mut out {
            let sample = timed(filter, input, dir, None)?;
            eprintln!(
                "xtask: round {round}/{rounds}: {:<40} {:>7.1} MiB/s {:>5.2} CPU-s/GiB",
                filter.label,
                mib(fs::metadata(input)?.len()) / sample.secs,
                sample.cpu_secs / (mib(fs::metadata(input)?.len()) / 1024.0)
            );
            runs.push(sample);
        }
    }
    Ok(out)
}

fn decode_rounds(
    filters: &[(Filter, &PathBuf)],
    original: &Path,
    dir: &Path,
    rounds: usize,
) -> Result<Vec<(Filter, Vec<Run>)>> {
    let expected = fs::metadata(original)?.len();
    let mut out: Vec<(Filter, Vec<Run>)> = filters
        .iter()
        .map(|(f, _)| (f.clone(), Vec::new()))
        .collect();
    for round in 1..=rounds {
        for ((filter, runs), (_, input)) in out.iter_mut().zip(filters) {
            let sample = timed(filter, input, dir, None)?;
            if sample.out_bytes != expected {
                bail!(
                    "{} gave {} bytes, expected {expected}",
                    filter.label,
                    sample.out_bytes
                );
            }
            eprintln!(
                "xtask: round {round}/{rounds}: {:<40} {:>7.1} MiB/s",
                filter.label,
                mib(expected) / sample.secs
            );
            runs.push(sample);
        }
    }
    Ok(out)
}

/// z3's encoders' output, read by the programs, equals the input; and z3 reads the programs' output.
fn cross_check(pipe: &Path, input: &Path, dir: &Path) -> Result<()> {
    let packed = dir.join("check.packed");
    let unpacked = dir.join("check.out");
    for (ours, theirs) in [
        (
            filter("z3 zstd1", pipe, &["encode", "zstd1"]),
            filter("zstd -d", Path::new(ZSTD), &["-d", "-c"]),
        ),
        (
            filter("z3 gzip", pipe, &["encode", "gzip"]),
            filter("pigz -d", Path::new(PIGZ), &["-d", "-c"]),
        ),
    ] {
        save_output(&ours, input, &packed)?;
        save_output(&theirs, &packed, &unpacked)?;
        if !same_file(input, &unpacked)? {
            bail!(
                "{} output decoded by {} differs from the input",
                ours.label,
                theirs.label
            );
        }
    }
    fs::remove_file(&packed).ok();
    fs::remove_file(&unpacked).ok();
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> Result<bool> {
    Ok(Command::new("cmp")
        .arg("--silent")
        .arg(a)
        .arg(b)
        .status()?
        .success())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

fn rows(results: &[(Filter, Vec<Run>)], input_bytes: u64, ratio_of: Option<u64>) -> Vec<Row> {
    results
        .iter()
        .map(|(filter, runs)| {
            let of = |f: fn(&Run) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
            let rates: Vec<f64> = runs.iter().map(|r| mib(input_bytes) / r.secs).collect();
            Row {
                label: filter.label.clone(),
                mib_per_s: median(&rates),
                cpu_per_gib: of(|r| r.cpu_secs) / (mib(input_bytes) / 1024.0),
                ratio: runs.first().map_or(f64::NAN, |r| {
                    r.out_bytes as f64 / ratio_of.unwrap_or(input_bytes) as f64
                }),
                rss_mib: runs.iter().map(|r| r.rss_kib).fold(0.0, f64::max) / 1024.0,
                runs: rates,
            }
        })
        .collect()
}

fn table(out: &mut String, rows: &[Row], with_ratio: bool) {
    if with_ratio {
        let _ = writeln!(
            out,
            "| filter | MiB/s (of input) | CPU-s/GiB | output/input | peak RSS MiB | runs, MiB/s |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---|");
    } else {
        let _ = writeln!(
            out,
            "| filter | MiB/s (of output) | CPU-s/GiB | peak RSS MiB | runs, MiB/s |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---|");
    }
    for row in rows {
        let runs = row
            .runs
            .iter()
            .map(|r| format!("{r:.1}"))
            .collect::<Vec<_>>()
            .join(", ");
        if with_ratio {
            let _ = writeln!(
                out,
                "| {} | {:.1} | {:.2} | {:.3} | {:.0} | {runs} |",
                row.label, row.mib_per_s, row.cpu_per_gib, row.ratio, row.rss_mib
            );
        } else {
            let _ = writeln!(
                out,
                "| {} | {:.1} | {:.2} | {:.0} | {runs} |",
                row.label, row.mib_per_s, row.cpu_per_gib, row.rss_mib
            );
        }
    }
    let _ = writeln!(out);
}

fn find<'a>(rows: &'a [Row], prefix: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.label.starts_with(prefix))
}

/// Input size, encryption runs, decryption runs.
type AgeSection = (u64, Vec<(Filter, Vec<Run>)>, Vec<(Filter, Vec<Run>)>);

type Section<'a> = (
    &'a str,
    u64,
    Vec<(Filter, Vec<Run>)>,
    Vec<(Filter, Vec<Run>)>,
);

fn report(
    machine: &Machine,
    options: &Options,
    sections: &[Section<'_>],
    age: &AgeSection,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Codecs: in-process zstd, gzip and age against the zstd, pigz and age programs\n"
    );
    let _ = writeln!(
        out,
        "Run with `cargo xtask bench codecs --rounds {}`.\n",
        options.rounds
    );
    let _ = writeln!(
        out,
        "Each filter reads the input file on stdin; its output goes through a pipe that xtask drains (not counted). \
**MiB/s** is input MiB over the filter's wall time for compressors, output MiB (the original size) for \
decompressors; **CPU-s/GiB** the filter's user + system time (GNU time) per GiB of uncompressed data; \
**output/input** the compression ratio. z3's stages run as `examples/codec_pipe.rs` (the `Codec` code \
`z3 backup` runs); every in-process encoder's output is decoded by the program (`zstd -d`, `pigz -d`, `age -d`) and \
compared with the input, `age -e` output decrypted by z3 likewise, and every decoder's output length is checked. \
Medians of the rounds; filters take turns.\n"
    );
    machine.write_latest_run(&mut out);
    let mut targets = Vec::new();
    for (name, bytes, enc, dec) in sections {
        let _ = writeln!(out, "#### {name} ({:.0} MiB)\n", mib(*bytes));
        let enc_rows = rows(enc, *bytes, None);
        table(&mut out, &enc_rows, true);
        let dec_rows = rows(dec, *bytes, None);
        table(&mut out, &dec_rows, false);
        if let (Some(ours), Some(cli), Some(pigz)) = (
            find(&enc_rows, "z3 zstd1"),
            find(&enc_rows, "zstd -1"),
            find(&enc_rows, "pigz -1"),
        ) {
            let vs_cli = ours.mib_per_s / cli.mib_per_s;
            let vs_pigz = ours.mib_per_s / pigz.mib_per_s;
            targets.push((
                format!("{name}: in-process zstd ≥ 0.9× `zstd -1 -T2`"),
                format!("{vs_cli:.2}×"),
                vs_cli >= 0.9,
            ));
            targets.push((
                format!("{name}: in-process zstd ≥ 3× `pigz -1`"),
                format!("{vs_pigz:.2}×"),
                vs_pigz >= 3.0,
            ));
            targets.push((
                format!("{name}: ratio equal or better than `zstd -1 -T2`"),
                format!("{:.4} vs {:.4}", ours.ratio, cli.ratio),
                ours.ratio <= cli.ratio * 1.001,
            ));
        }
    }
    let (age_bytes, age_enc, age_dec) = age;
    let _ = writeln!(
        out,
        "#### age encryption of the tar ({:.0} MiB, X25519 recipient)\n",
        mib(*age_bytes)
    );
    let enc_rows = rows(age_enc, *age_bytes, None);
    table(&mut out, &enc_rows, true);
    table(&mut out, &rows(age_dec, *age_bytes, None), false);
    if let Some(ours) = find(&enc_rows, "z3 age") {
        let gib = ours.mib_per_s / 1024.0;
        targets.push((
            "age encryption ≥ 1 GiB/s".to_owned(),
            format!("{gib:.2} GiB/s"),
            gib >= 1.0,
        ));
    }
    let _ = writeln!(out, "#### Targets\n");
    for (text, measured, met) in &targets {
        let _ = writeln!(
            out,
            "- **{}** {text}: {measured}",
            if *met { "PASS" } else { "MISSED" }
        );
    }
    out
}

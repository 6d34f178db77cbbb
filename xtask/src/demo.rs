//! `cargo xtask demo`: one real backup/restore cycle on zfs-fuse and SeaweedFS, narrated step by step.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::services::{Services, ensure_tools, run};

/// Runs the cycle: full backup, incremental backups (pigz, then zstd + age), status, destroy,
/// restore, compare.
pub(crate) fn run_demo(root: &Path) -> Result<()> {
    say("building z3");
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root)
            .args(["build", "--quiet", "-p", "z3-cli", "--bin", "z3"]),
    )?;
    let z3 = root.join("target/debug/z3");

    say("installing (if needed) and starting zfs-fuse and SeaweedFS on 127.0.0.1");
    let weed = ensure_tools(root)?;
    let services = Services::start(root, &weed)?;
    let env = &services.env;
    let dataset = format!("{}/demo", env.pool);
    let snap = |n: u32| format!("zfs-auto-snap:daily-2026-11-{n:02}");
    let demo = Demo {
        z3,
        vars: vec![
            ("BUCKET", env.bucket.clone()),
            ("S3_KEY_ID", env.key_id.clone()),
            ("S3_SECRET", env.secret.clone()),
            ("S3_ENDPOINT", env.s3_endpoint.clone()),
            ("FILESYSTEM", dataset.clone()),
            ("Z3_CONFIG", "/dev/null".into()),
        ],
    };

    say(&format!("creating dataset {dataset} with some files"));
    zfs(&["create", &dataset])?;
    let mount = PathBuf::from(zfs(&["get", "-H", "-o", "value", "mountpoint", &dataset])?.trim());
    fs::write(mount.join("README"), "z3 demo data\n")?;
    fs::write(mount.join("random.bin"), pseudo_random(6 << 20, 42))?;
    zfs(&["snapshot", &format!("{dataset}@{}", snap(1))])?;

    say("first backup: the bucket is empty, so z3 sends a full stream (uncompressed)");
    demo.z3(&["backup", "--compressor", "none"])?;

    say("changing files and taking another snapshot");
    fs::create_dir_all(mount.join("docs"))?;
    fs::write(mount.join("docs/notes.txt"), "second day\n".repeat(1000))?;
    fs::write(mount.join("random.bin"), pseudo_random(3 << 20, 7))?;
    zfs(&["snapshot", &format!("{dataset}@{}", snap(2))])?;

    say(
        "second backup: an incremental from the first, compressed with pigz (each object records its own compressor)",
    );
    demo.z3(&["backup", "--compressor", "pigz1"])?;

    say("an age key pair: the backup host gets the public key only");
    let key = services.workdir().join("restore-key.txt");
    fs::remove_file(&key).ok();
    run(Command::new("age-keygen").arg("-o").arg(&key))?; // prints the public key
    let recipient = String::from_utf8(
        Command::new("age-keygen")
            .arg("-y")
            .arg(&key)
            .output()
            .context("running age-keygen -y")?
            .stdout,
    )?
    .trim()
    .to_owned();

    fs::write(
        mount.join("docs/secret.txt"),
        "third day, confidential\n".repeat(500),
    )?;
    zfs(&["snapshot", &format!("{dataset}@{}", snap(3))])?;
    let before = tree(&mount)?;
    say("third backup: zstd (the default compressor), then age-encrypted to the public key");
    demo.z3(&["backup", "--age-recipient", &recipient])?;

    say("status: three backups, healthy, present locally");
    demo.z3(&["status"])?;

    say(
        "verify: read every object back against its seal (BLAKE3 of the zfs stream), without ZFS and without the secret key",
    );
    demo.z3(&["verify", "--all"])?;

    say(&format!("destroying {dataset} (the disaster)"));
    destroy(&dataset)?;

    say("restore without the secret key: refused before anything is received");
    if demo.z3(&["restore", &snap(3)]).is_ok() {
        bail!("a restore of an encrypted backup without its key succeeded");
    }
    let key_arg = key.to_string_lossy().into_owned();
    say("restore with the key: dry run first (each object's own decoders), then for real");
    demo.z3(&["restore", "--dry-run", "--age-identity", &key_arg, &snap(3)])?;
    demo.z3(&["restore", "--age-identity", &key_arg, &snap(3)])?;

    let mount = PathBuf::from(zfs(&["get", "-H", "-o", "value", "mountpoint", &dataset])?.trim());
    let after = tree(&mount)?;
    if before != after {
        bail!("restored files differ from the originals");
    }
    say(&format!(
        "restored {} files, byte-identical to the originals; snapshots now: {}",
        after.len(),
        zfs(&["list", "-H", "-t", "snapshot", "-o", "name", "-r", &dataset])?
            .lines()
            .collect::<Vec<_>>()
            .join(", ")
    ));
    drop(services);
    say("demo finished; services stopped");
    Ok(())
}

struct Demo {
    z3: PathBuf,
    vars: Vec<(&'static str, String)>,
}

impl Demo {
    fn z3(&self, args: &[&str]) -> Result<()> {
        println!("$ z3 {}", args.join(" "));
        let status = Command::new(&self.z3)
            .args(args)
            .envs(self.vars.iter().map(|(k, v)| (*k, v.as_str())))
            .status()
            .context("running z3")?;
        if !status.success() {
            bail!("z3 {} failed: {status}", args.join(" "));
        }
        Ok(())
    }
}

fn say(what: &str) {
    println!("\n== {what}");
}

fn zfs(args: &[&str]) -> Result<String> {
    println!("$ zfs {}", args.join(" "));
    let out = Command::new("zfs").args(args).env("LC_ALL", "C").output()?;
    if !out.status.success() {
        bail!(
            "zfs {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `zfs destroy -r`, retried while zfs-fuse still reports the dataset busy (it unmounts asynchronously).
fn destroy(dataset: &str) -> Result<()> {
    for _ in 0..50 {
        match zfs(&["destroy", "-r", dataset]) {
            Ok(_) => return Ok(()),
            Err(err) if err.to_string().contains("busy") => {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Err(err) => return Err(err),
        }
    }
    bail!("{dataset} stayed busy")
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Every file under `root` with its content.
fn tree(root: &Path) -> Result<BTreeMap<PathBuf, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root)?.to_path_buf();
                out.insert(rel, fs::read(&path)?);
            }
        }
    }
    Ok(out)
}

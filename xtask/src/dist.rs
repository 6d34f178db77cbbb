//! `cargo xtask dist`: the Debian package, `target/dist/z3_<version>_<arch>.deb`.
//!
//! Built with `dpkg-deb` from a staged tree (no cargo-deb to install): the five release
//! binaries, man pages and bash/zsh/fish completions generated from the clap definitions
//! (`crates/z3-cli/examples/dist_assets.rs`), the commented `/etc/z3_backup/z3.conf` (a
//! conffile, mode 0600) and the systemd units of `packaging/systemd`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::services::run;

/// The binaries the package installs.
pub(crate) const BINARIES: [&str; 5] = ["z3", "pput", "z3_get", "z3_ssh_sync", "z3_mp_cleanup"];

/// Builds the package and returns its path.
pub(crate) fn dist(root: &Path) -> Result<PathBuf> {
    let version = workspace_version(root)?;
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?;
    run(crate::cargo().args(["build", "--release", "-p", "z3-cli", "--bins"]))?;
    let dist = root.join("target/dist");
    let stage = dist.join("stage");
    if stage.exists() {
        fs::remove_dir_all(&stage)?;
    }
    let assets = dist.join("assets");
    run(crate::cargo()
        .args([
            "run",
            "--quiet",
            "-p",
            "z3-cli",
            "--example",
            "dist_assets",
            "--",
        ])
        .arg(&assets))?;

    for binary in BINARIES {
        let to = stage.join("usr/bin").join(binary);
        copy(&root.join("target/release").join(binary), &to, 0o755)?;
        // The release profile keeps debug info for profiling; the package does not need it.
        run(Command::new("strip").arg("--strip-debug").arg(&to))?;
    }
    for page in fs::read_dir(assets.join("man"))? {
        let page = page?.path();
        let name = page.file_name().context("a man page without a name")?;
        let to = stage
            .join("usr/share/man/man1")
            .join(format!("{}.gz", name.to_string_lossy()));
        fs::create_dir_all(to.parent().context("no parent")?)?;
        // gzip -9n: no name or time stamp in the header, so the package is reproducible.
        let gz = Command::new("gzip")
            .args(["-9n", "-c"])
            .arg(&page)
            .stderr(Stdio::inherit())
            .output()
            .context("running gzip")?;
        if !gz.status.success() {
            bail!("gzip {} failed", page.display());
        }
        fs::write(&to, gz.stdout)?;
        set_mode(&to, 0o644)?;
    }
    for binary in BINARIES {
        let completions = [
            (
                format!("bash/{binary}.bash"),
                format!("usr/share/bash-completion/completions/{binary}"),
            ),
            (
                format!("zsh/_{binary}"),
                format!("usr/share/zsh/vendor-completions/_{binary}"),
            ),
            (
                format!("fish/{binary}.fish"),
                format!("usr/share/fish/vendor_completions.d/{binary}.fish"),
            ),
        ];
        for (from, to) in completions {
            copy(&assets.join(from), &stage.join(to), 0o644)?;
        }
    }
    copy(
        &root.join("packaging/z3.conf"),
        &stage.join("etc/z3_backup/z3.conf"),
        0o600,
    )?;
    for unit in fs::read_dir(root.join("packaging/systemd"))? {
        let unit = unit?.path();
        let name = unit.file_name().context("a unit without a name")?;
        copy(&unit, &stage.join("lib/systemd/system").join(name), 0o644)?;
    }
    let doc = stage.join("usr/share/doc/z3");
    copy(&root.join("README.md"), &doc.join("README.md"), 0o644)?;
    fs::write(
        doc.join("copyright"),
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: z3\n\nFiles: *\nLicense: MIT or Apache-2.0\n",
    )?;

    write_control(&stage, &version, &arch)?;
    let deb = dist.join(format!("z3_{version}_{arch}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&stage)
        .arg(&deb))?;
    eprintln!("xtask: built {}", deb.display());
    Ok(deb)
}

/// `DEBIAN/control` and `DEBIAN/conffiles` of the staged tree.
fn write_control(stage: &Path, version: &str, arch: &str) -> Result<()> {
    let debian = stage.join("DEBIAN");
    fs::create_dir_all(&debian)?;
    let installed_kib = disk_usage_kib(stage)?;
    fs::write(
        debian.join("control"),
        format!(
            "Package: z3\n\
             Version: {version}\n\
             Architecture: {arch}\n\
             Maintainer: z3 developers <z3@example.invalid>\n\
             Section: admin\n\
             Priority: optional\n\
             Installed-Size: {installed_kib}\n\
             Depends: libc6\n\
             Recommends: zfsutils-linux | zfs-fuse\n\
             Suggests: pigz, gnupg, age\n\
             Description: back up ZFS snapshots to S3-compatible object storage\n \
             z3 sends ZFS snapshots to S3 (full and incremental, compressed and optionally\n \
             encrypted), checks their chains, restores them, and prunes them by a retention\n \
             policy. Compatible with the buckets of the original Python z3.\n"
        ),
    )?;
    fs::write(debian.join("conffiles"), "/etc/z3_backup/z3.conf\n")?;
    Ok(())
}

/// `version` of `[workspace.package]` in the root Cargo.toml.
fn workspace_version(root: &Path) -> Result<String> {
    let manifest = fs::read_to_string(root.join("Cargo.toml"))?;
    manifest
        .lines()
        .skip_while(|line| line.trim() != "[workspace.package]")
        .find_map(|line| {
            let value = line
                .trim()
                .strip_prefix("version")?
                .trim()
                .strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_owned())
        })
        .context("no version in [workspace.package] of Cargo.toml")
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(to.parent().context("no parent")?)?;
    fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    set_mode(to, mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// What `du -sk` says of `dir`, for `Installed-Size`.
fn disk_usage_kib(dir: &Path) -> Result<String> {
    let out = output(Command::new("du").arg("-sk").arg(dir))?;
    Ok(out.split_whitespace().next().unwrap_or("0").to_owned())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Installs `deb` and checks what an operator meets first: `--version`, `man z3`,
/// `man z3-backup` and `man pput` render, the bash completion loads, and `systemd-analyze
/// verify` accepts every unit (templates as an instance). Then purges the package again, so
/// the machine is left as it was.
pub(crate) fn install_check(deb: &Path) -> Result<()> {
    run(Command::new("dpkg").arg("-i").arg(deb))?;
    let checked = check_installed();
    run(Command::new("dpkg").args(["--purge", "z3"]))?;
    checked
}

fn check_installed() -> Result<()> {
    let version = output(Command::new("/usr/bin/z3").arg("--version"))?;
    eprintln!("xtask: installed {version}");
    for page in [
        "z3",
        "z3-backup",
        "z3-prune",
        "pput",
        "z3_get",
        "z3_ssh_sync",
        "z3_mp_cleanup",
    ] {
        let text = output(
            Command::new("man")
                .args(["-P", "cat", page])
                .env("MANWIDTH", "80"),
        )?;
        if !text.contains("NAME") || !text.contains(&page.replace('-', " ")) && !text.contains(page)
        {
            bail!("man {page} did not render:\n{text}");
        }
    }
    let complete = output(Command::new("bash").args([
        "-c",
        "source /usr/share/bash-completion/completions/z3 && complete -p z3",
    ]))?;
    if !complete.contains("z3") {
        bail!("the bash completion did not register: {complete}");
    }
    let mut units = Vec::new();
    for unit in fs::read_dir("/lib/systemd/system")? {
        let name = unit?.file_name().to_string_lossy().into_owned();
        if name.starts_with("z3-") {
            // A template is verified as an instance: dataset tank/data, escaped as systemd does.
            units.push(name.replace("@.", "@tank-data."));
        }
    }
    units.sort();
    if units.len() < 10 {
        bail!("expected 10 units, found {units:?}");
    }
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .context("running systemd-analyze")?;
    let said = String::from_utf8_lossy(&verify.stderr);
    if !verify.status.success() || said.lines().any(|l| l.contains("z3")) {
        bail!("systemd-analyze verify {units:?} failed:\n{said}");
    }
    eprintln!(
        "xtask: package checked: man pages, bash completion, {} units",
        units.len()
    );
    Ok(())
}

//! Project automation, matklad-style: `cargo xtask ci | demo | services | tidy | bench`.
//!
//! - `ci`: formatting, clippy, then the whole test suite against real zfs-fuse and SeaweedFS that this
//!   program installs (if missing), starts on 127.0.0.1 and stops again, then the docs.
//! - `demo`: a real backup/restore cycle for a newcomer, printing each step.
//! - `services`: starts the services and prints the environment for running tests by hand, until Enter.
//! - `dist [--install-check]`: the Debian package (`target/dist/z3_<version>_<arch>.deb`); with
//!   `--install-check`, installs it, checks man pages, completion and units, and purges it.
//! - `bench [transfer|codecs|bwlimit|status|memory]`: measures `pput` and `z3_get` against aws-cli and rclone on
//!   a local SeaweedFS (and the codecs, `BWLIMIT`, `z3 status` with its cache, and the peak memory of `pput` and
//!   `z3 backup`) and writes the results to `docs/benchmarks.md`.

mod bench;
mod demo;
mod dist;
mod services;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Result, bail};

use crate::services::{Services, ensure_tools, run};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("demo") => demo::run_demo(&project_root()),
        Some("services") => services_shell(),
        Some("tidy") => tidy::check(&project_root()),
        Some("bench") => bench::run_bench(&project_root(), &args[1..]),
        Some("dist") => dist::dist(&project_root()).and_then(|deb| {
            if args.get(1).map(String::as_str) == Some("--install-check") {
                dist::install_check(&deb)
            } else {
                Ok(())
            }
        }),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci|demo|services|tidy|bench [transfer|codecs|bwlimit|status|memory]|dist [--install-check]>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives one level below it).
fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(project_root());
    cmd
}

/// `cargo xtask ci`: the one command CI and developers run.
fn ci() -> Result<()> {
    let root = project_root();
    step("cargo fmt --check");
    run(cargo().args(["fmt", "--all", "--check"]))?;
    step("tidy");
    tidy::check(&root)?;
    step("cargo clippy");
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    step("cargo deny check licenses bans sources (deny.toml)");
    let deny = services::ensure_cargo_deny(&root)?;
    run(Command::new(&deny).current_dir(&root).args([
        "check",
        "--hide-inclusion-graph",
        "licenses",
        "bans",
        "sources",
    ]))?;
    step("cargo deny check advisories (offline RustSec snapshot, ../shared/rustsec)");
    services::ensure_advisory_db(&root)?;
    // `--offline` keeps cargo-deny from fetching the database; cargo metadata then needs every
    // crate of the lock file (all platforms) on disk, which `cargo fetch` makes sure of.
    run(cargo().args(["fetch", "--quiet"]))?;
    run(Command::new(&deny).current_dir(&root).args([
        "--offline",
        "check",
        "--hide-inclusion-graph",
        "advisories",
    ]))?;
    step("build tests");
    run(cargo().args(["test", "--workspace", "--no-run"]))?;

    step("install and start zfs-fuse, SeaweedFS and moto");
    let weed = ensure_tools(&root)?;
    let moto = services::ensure_moto(&root)?;
    let original = services::ensure_original_z3(&root)?;
    let mut services = Services::start(&root, &weed)?;
    services.start_moto(&moto)?;
    services.env.original_z3 = Some(original);
    step("cargo test (with the real services)");
    let mut test = cargo();
    test.args(["test", "--workspace"])
        .env("Z3_REQUIRE_INTEGRATION", "1");
    for (key, value) in services.env.test_vars() {
        test.env(key, value);
    }
    let tested = run(&mut test);
    drop(services);
    tested?;

    step("examples (offline, each run to its end)");
    run_examples()?;

    step("cargo doc");
    run(cargo()
        .args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings"))?;
    step("Debian package: build, install, check man pages, completion and units, purge");
    dist::install_check(&dist::dist(&root)?)?;
    step("ci passed");
    Ok(())
}

/// The examples that run on their own (offline, no arguments). `codec_pipe` is a filter the
/// benchmarks drive with input; it is built by `cargo test` but not run here.
const SELF_CONTAINED_EXAMPLES: [&str; 3] = ["backup_restore", "embed", "plan"];

/// Runs the self-contained examples: they assert what they show, so an example that no longer
/// works fails CI.
fn run_examples() -> Result<()> {
    for name in SELF_CONTAINED_EXAMPLES {
        run(cargo().args(["run", "--quiet", "-p", "z3-examples", "--example", name]))?;
    }
    Ok(())
}

/// `cargo xtask services`: start the services and wait, for running tests by hand.
fn services_shell() -> Result<()> {
    let root = project_root();
    let weed = ensure_tools(&root)?;
    let moto = services::ensure_moto(&root)?;
    let original = services::ensure_original_z3(&root)?;
    let mut services = Services::start(&root, &weed)?;
    services.start_moto(&moto)?;
    services.env.original_z3 = Some(original);
    for (key, value) in services.env.test_vars() {
        println!("export {key}={value}");
    }
    println!("# pool mounted at {}", services.mountpoint().display());
    eprintln!("xtask: services running; press Enter to stop them");
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        bail!("stdin closed");
    }
    Ok(())
}

fn step(what: &str) {
    eprintln!("\n== xtask: {what}");
}

#[cfg(test)]
mod tests {
    /// A new example is either run by CI or named here as one that needs input.
    #[test]
    fn every_example_is_run_or_known_to_need_input() {
        let dir = super::project_root().join("examples/examples");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            assert!(
                super::SELF_CONTAINED_EXAMPLES.contains(&name.as_str()) || name == "codec_pipe",
                "examples/examples/{name}.rs is not run by `cargo xtask ci`: add it to SELF_CONTAINED_EXAMPLES"
            );
        }
    }
}

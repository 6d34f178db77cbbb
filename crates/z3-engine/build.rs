//! Records the commit z3 is built from, for `z3 --version` ([`VERSION`](crate::VERSION)):
//! `Z3_COMMIT` from the environment when a packager sets it, else `git rev-parse --short=12
//! HEAD` with `-dirty` for uncommitted changes, else `unknown` (a build outside a checkout).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=Z3_COMMIT");
    let commit = std::env::var("Z3_COMMIT").ok().or_else(|| {
        if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
            for watched in ["HEAD", "refs", "packed-refs", "index"] {
                println!("cargo:rerun-if-changed={dir}/{watched}");
            }
        }
        let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
        let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some();
        Some(if dirty {
            format!("{commit}-dirty")
        } else {
            commit
        })
    });
    println!(
        "cargo:rustc-env=Z3_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".to_owned())
    );
}

//! Tidy checks, run by `cargo xtask ci` and as a plain `#[test]`: every Rust file starts with a `//!` doc line.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// Fails listing every `.rs` file under `crates/`, `xtask/` and `examples/` that lacks a leading `//!` line.
pub(crate) fn check(root: &Path) -> Result<()> {
    let mut files = Vec::new();
    for dir in ["crates", "xtask", "examples"] {
        collect(&root.join(dir), &mut files)?;
    }
    let offenders: Vec<String> = files
        .iter()
        .filter(|path| {
            fs::read_to_string(path).map_or(true, |text| !text.trim_start().starts_with("//!"))
        })
        .map(|path| {
            path.strip_prefix(root)
                .unwrap_or(path)
                .display()
                .to_string()
        })
        .collect();
    if !offenders.is_empty() {
        bail!(
            "these files do not start with a `//!` doc line:\n  {}",
            offenders.join("\n  ")
        );
    }
    Ok(())
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n == "target" || n == "fixtures")
            {
                continue;
            }
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn tidy() {
        super::check(&crate::project_root()).unwrap();
    }
}

//! Tidy checks, run by `cargo xtask tidy`, by `cargo xtask ci` and as a plain `#[test]`.
//!
//! - every Rust file starts with a `//!` doc line;
//! - no library depends on clap, indicatif, figment, tracing-subscriber or tikv-jemallocator
//!   ([`deps`]);
//! - no library prints: no `println!`, `eprintln!`, `print!`, `eprint!` or `dbg!` outside binaries and
//!   tests ([`prints`]);
//! - no module cycles within a crate, except the allowed ones being removed ([`cycles`]);
//! - comments cite only documents inside the repository ([`citations`]);
//! - z3-cli stays thin: at most [`CLI_CODE_LINES`] lines of code outside its tests.

mod citations;
mod cycles;
mod deps;
mod lexer;
mod prints;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// Runs every check and fails with all their findings.
pub(crate) fn check(root: &Path) -> Result<()> {
    let mut failures = Vec::new();
    let results = [
        doc_headers(root),
        deps::check(&mut crate::cargo()),
        no_prints(root),
        cycles::check(root),
        no_outside_citations(root),
        cli_size(root),
    ];
    for result in results {
        if let Err(err) = result {
            failures.push(format!("{err:#}"));
        }
    }
    if !failures.is_empty() {
        bail!("tidy found problems:\n{}", failures.join("\n"));
    }
    Ok(())
}

/// The most lines of code z3-cli may have outside its tests (issue 13): blank lines and lines
/// that are only a comment do not count.
const CLI_CODE_LINES: usize = 2_500;

/// Fails when z3-cli's code outside its tests grows past [`CLI_CODE_LINES`].
fn cli_size(root: &Path) -> Result<()> {
    let mut files = Vec::new();
    collect(&root.join("crates/z3-cli/src"), &mut files)?;
    let mut total = 0;
    for file in files {
        total += code_lines(&fs::read_to_string(&file)?);
    }
    if total > CLI_CODE_LINES {
        bail!(
            "z3-cli has {total} lines of code outside its tests, more than {CLI_CODE_LINES}: move what is not flags, configuration, rendering or exit codes into a library"
        );
    }
    Ok(())
}

/// Lines of code before the file's test module (`#[cfg(test)]` at column 0; test modules come
/// last in this repository), without blank lines and lines that are only a comment.
fn code_lines(text: &str) -> usize {
    text.lines()
        .take_while(|line| !line.starts_with("#[cfg(test)]"))
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("//"))
        .count()
}

/// Fails listing every `.rs` file under `crates/`, `xtask/` and `examples/` that lacks a leading `//!` line.
fn doc_headers(root: &Path) -> Result<()> {
    let offenders: Vec<String> = workspace_files(root)?
        .iter()
        .filter(|path| {
            fs::read_to_string(path).map_or(true, |text| !text.trim_start().starts_with("//!"))
        })
        .map(|path| relative(root, path))
        .collect();
    if !offenders.is_empty() {
        bail!(
            "these files do not start with a `//!` doc line:\n  {}",
            offenders.join("\n  ")
        );
    }
    Ok(())
}

/// Fails naming every print in the libraries: `crates/*/src` without `main.rs` and `bin/`.
fn no_prints(root: &Path) -> Result<()> {
    let mut offenders = Vec::new();
    let mut crates = fs::read_dir(root.join("crates"))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?;
    crates.sort();
    for krate in crates {
        let src = krate.join("src");
        let mut files = Vec::new();
        collect(&src, &mut files)?;
        for file in files {
            let inside = file.strip_prefix(&src).unwrap_or(&file);
            if inside == Path::new("main.rs") || inside.starts_with("bin") {
                continue;
            }
            for (line, name) in prints::offences(&fs::read_to_string(&file)?) {
                offenders.push(format!("{}:{line}: {name}!", relative(root, &file)));
            }
        }
    }
    if !offenders.is_empty() {
        bail!(
            "libraries print (write to the writer the caller hands in instead):\n  {}",
            offenders.join("\n  ")
        );
    }
    Ok(())
}

/// Fails naming every comment that cites a document outside the repository.
fn no_outside_citations(root: &Path) -> Result<()> {
    let mut offenders = Vec::new();
    for file in workspace_files(root)? {
        for (line, pattern) in citations::offences(&fs::read_to_string(&file)?) {
            offenders.push(format!("{}:{line}: `{pattern}`", relative(root, &file)));
        }
    }
    if !offenders.is_empty() {
        bail!(
            "comments cite documents outside the repository (cite docs/compatibility.md's sections instead):\n  {}",
            offenders.join("\n  ")
        );
    }
    Ok(())
}

/// Every `.rs` file under `crates/`, `xtask/` and `examples/`.
fn workspace_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for dir in ["crates", "xtask", "examples"] {
        collect(&root.join(dir), &mut files)?;
    }
    Ok(files)
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Every `.rs` file under `dir`, without `target/` and `fixtures/` directories.
fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let mut paths = fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?;
    paths.sort();
    for path in paths {
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

    #[test]
    fn code_lines_skip_blanks_comments_and_the_test_module() {
        let text = "//! doc\n\nuse x;\n    // note\nfn f() {}\n#[cfg(test)]\nmod tests {}\n";
        assert_eq!(super::code_lines(text), 2);
        assert_eq!(super::code_lines("fn a() {}\nfn b() {}\n"), 2);
    }
}

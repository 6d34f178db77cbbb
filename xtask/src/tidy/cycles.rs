//! No module cycles inside a crate: the top-level modules of each crate (a file `src/x.rs` or a directory
//! `src/x/`) form a graph by their `crate::x` references, and that graph has to be acyclic, so that every
//! module can be understood (and moved to another crate) together with what it uses and nothing that uses it.
//!
//! References are `crate::x` paths in code (in `use` or inline, `crate::{x, y::z}` groups included);
//! comments, doc links, literals and test modules do not count, nor do items of the crate root
//! (`crate::Item`, even when it is a re-export).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::lexer;

/// The cycles that exist today, each as its crate and the exact set of modules in it. A changed or new
/// cycle fails, and so does an entry here whose cycle is gone or changed (update the list then).
const ALLOWED: &[(&str, &[&str])] = &[
    // issue 13: to be removed. `health` walks `remote::RemoteSnapshot`s; `remote`'s index keeps their
    // `health::HealthMap`.
    ("z3-core", &["health", "remote"]),
    // issue 13: to be removed. `part_size` counts in `store::PartNumber`; `store::PartNumber::MAX` is
    // `part_size::MAX_PARTS`.
    ("z3-s3", &["part_size", "store"]),
    // issue 13: to be removed. `parse` builds `error::ErrorKind`s; `error` classifies stderr with
    // `parse::error_kind_for`.
    ("z3-zfs", &["error", "parse"]),
];

/// A graph of modules: each module and the modules it refers to.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// Checks every crate of the workspace (`crates/*`, `xtask`, `examples`) against [`ALLOWED`].
pub(crate) fn check(root: &Path) -> Result<()> {
    let mut dirs = vec![root.join("xtask"), root.join("examples")];
    for entry in fs::read_dir(root.join("crates")).context("reading crates/")? {
        dirs.push(entry?.path());
    }
    dirs.sort();
    let mut crates = Vec::new();
    for dir in dirs.iter().filter(|d| d.join("Cargo.toml").is_file()) {
        crates.push((package_name(dir)?, graph(&modules(&dir.join("src"))?)));
    }
    let problems = offences(&crates, ALLOWED);
    if !problems.is_empty() {
        bail!("module cycles:\n  {}", problems.join("\n  "));
    }
    Ok(())
}

/// Every cycle of `crates` (name and module graph) that `allowed` does not list, and every entry of
/// `allowed` that matches no cycle.
fn offences(crates: &[(String, Graph)], allowed: &[(&str, &[&str])]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut found = Vec::new();
    for (name, graph) in crates {
        for component in components(graph) {
            let listed = allowed
                .iter()
                .any(|(c, set)| c == name && same_modules(set, &component));
            if !listed {
                problems.push(format!(
                    "{name}: {} (modules in the cycle: {})",
                    cycle(graph, &component).join(" -> "),
                    component.join(", ")
                ));
            }
            found.push((name.as_str(), component));
        }
    }
    for (name, set) in allowed {
        let present = found
            .iter()
            .any(|(c, component)| c == name && same_modules(set, component));
        if !present {
            problems.push(format!(
                "{name}: the allowed cycle {{{}}} no longer exists as listed (gone or changed); update ALLOWED in xtask/src/tidy/cycles.rs",
                set.join(", ")
            ));
        }
    }
    problems
}

/// Whether an allowed set and a component (sorted) hold the same modules, in any order.
fn same_modules(allowed: &[&str], component: &[String]) -> bool {
    let mut allowed = allowed.to_vec();
    allowed.sort_unstable();
    allowed
        .iter()
        .copied()
        .eq(component.iter().map(String::as_str))
}

/// The `name` of the `[package]` of the manifest in `dir`.
fn package_name(dir: &Path) -> Result<String> {
    let manifest = dir.join("Cargo.toml");
    let text =
        fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
    text.lines()
        .skip_while(|line| line.trim() != "[package]")
        .find_map(|line| {
            let value = line
                .trim()
                .strip_prefix("name")?
                .trim_start()
                .strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_string())
        })
        .with_context(|| format!("{} has no package name", manifest.display()))
}

/// The top-level modules of the crate whose sources are in `src`, each with the text of its files.
/// The crate roots (`lib.rs`, `main.rs`) and the binaries (`bin/`) are not modules.
fn modules(src: &Path) -> Result<BTreeMap<String, Vec<String>>> {
    let mut modules: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if !src.is_dir() {
        return Ok(modules);
    }
    for entry in fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let path = entry?.path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let mut files = Vec::new();
        if path.is_dir() && stem != "bin" {
            super::collect(&path, &mut files)?;
        } else if path.extension().is_some_and(|e| e == "rs") && !["lib", "main"].contains(&stem) {
            files.push(path.clone());
        }
        for file in files {
            let text =
                fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            modules.entry(stem.to_string()).or_default().push(text);
        }
    }
    Ok(modules)
}

/// The graph of `modules` (module name to the texts of its files) by their `crate::` references.
fn graph(modules: &BTreeMap<String, Vec<String>>) -> Graph {
    modules
        .iter()
        .map(|(module, texts)| {
            let uses = texts
                .iter()
                .map(|text| lexer::without_test_modules(&lexer::split(text).code))
                .flat_map(|code| references(&code))
                .filter(|other| other != module && modules.contains_key(other))
                .collect();
            (module.clone(), uses)
        })
        .collect()
}

/// The first path segment after each `crate::` in `code`, the members of `crate::{…}` groups included.
fn references(code: &str) -> BTreeSet<String> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        if code[..at].chars().next_back().is_some_and(ident) {
            continue; // `z3_crate::`, not ours
        }
        let rest = code[at + "crate::".len()..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level members of the group: split at commas outside nested braces.
            let mut depth = 0usize;
            let mut start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        found.insert(leading_ident(&group[start..i]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.insert(leading_ident(&group[start..i]));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(leading_ident(rest));
        }
    }
    found.remove("");
    found
}

fn leading_ident(text: &str) -> String {
    text.trim_start()
        .chars()
        .take_while(|&c| c.is_alphanumeric() || c == '_')
        .collect()
}

/// The strongly connected components of `graph` with more than one module (Tarjan), each sorted.
fn components(graph: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        out: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, node: &'g str) {
            let index = self.index.len();
            self.index.insert(node, index);
            self.low.insert(node, index);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph.get(node).into_iter().flatten() {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(member) = self.stack.pop() {
                    self.on_stack.remove(member);
                    component.push(member.to_string());
                    if member == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.out.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for node in graph.keys() {
        if !tarjan.index.contains_key(node.as_str()) {
            tarjan.visit(node);
        }
    }
    tarjan.out.sort();
    tarjan.out
}

/// A shortest cycle through the first module of `component`, for the message: `a -> b -> a`.
fn cycle(graph: &Graph, component: &[String]) -> Vec<String> {
    let start = &component[0];
    let mut reached_from: BTreeMap<&String, &String> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for next in graph.get(node).into_iter().flatten() {
            if !component.contains(next) || reached_from.contains_key(next) {
                continue;
            }
            reached_from.insert(next, node);
            if next == start {
                let mut path = vec![start.clone()];
                let mut at = node;
                while at != start {
                    path.push(at.clone());
                    at = reached_from[at];
                }
                path.push(start.clone());
                path.reverse();
                return path;
            }
            queue.push_back(next);
        }
    }
    component.to_vec()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{components, cycle, graph, offences, references};

    fn modules(files: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
        let mut modules: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (module, text) in files {
            modules
                .entry((*module).to_string())
                .or_default()
                .push((*text).to_string());
        }
        modules
    }

    #[test]
    fn references_cover_uses_groups_and_inline_paths() {
        let code = "use crate::a::{X, Y};\nuse crate::{b, c::d, e::{f, g}};\nfn f() { crate::h::run(); }\n\
                    use z3_crate::z;\nuse crate::Item;";
        let found: Vec<String> = references(code).into_iter().collect();
        assert_eq!(found, ["Item", "a", "b", "c", "e", "h"]);
    }

    #[test]
    fn an_acyclic_crate_has_no_components() {
        let graph = graph(&modules(&[
            (
                "engine",
                "use crate::exit::Status;\n/// See [`crate::sync`].\nfn f() {}",
            ),
            ("exit", "use crate::config;"),
            ("config", "use crate::Item; // crate::engine"),
            ("sync", "use crate::{engine, exit};"),
        ]));
        assert!(components(&graph).is_empty(), "{graph:?}");
    }

    #[test]
    fn a_cycle_is_found_and_named() {
        let graph = graph(&modules(&[
            ("engine", "use crate::exit::Status;"),
            ("exit", "fn f() { crate::sync::run() }"),
            ("sync", "use crate::{engine::Engine, config};"),
            ("config", ""),
            ("verify", "use crate::engine;"),
        ]));
        let found = components(&graph);
        assert_eq!(found, [["engine", "exit", "sync"]]);
        assert_eq!(
            cycle(&graph, &found[0]),
            ["engine", "exit", "sync", "engine"]
        );
    }

    #[test]
    fn only_listed_cycles_pass_and_stale_entries_fail() {
        let cyclic = graph(&modules(&[
            ("a", "use crate::b;"),
            ("b", "use crate::a;"),
            ("c", ""),
        ]));
        let acyclic = graph(&modules(&[
            ("a", "use crate::b;"),
            ("b", ""),
            ("c", "use crate::a;"),
        ]));
        let crates = [("one".to_string(), cyclic), ("two".to_string(), acyclic)];
        assert!(offences(&crates, &[("one", &["b", "a"])]).is_empty());
        assert_eq!(
            offences(&crates, &[]),
            ["one: a -> b -> a (modules in the cycle: a, b)"]
        );
        assert_eq!(
            offences(&crates, &[("one", &["a", "b"]), ("two", &["a", "c"])]),
            [
                "two: the allowed cycle {a, c} no longer exists as listed (gone or changed); update ALLOWED in xtask/src/tidy/cycles.rs"
            ]
        );
    }
}
